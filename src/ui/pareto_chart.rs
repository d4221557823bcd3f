//! One Pareto chart (Optuna's conventions): cost against dev accuracy, the front as a step line,
//! dominated points dimmed, over-budget points grey, the best within budget and the selection
//! marked; hovering a point shows its measurements, clicking it selects it.

use super::palette_view::{metrics_text, Cost, PaletteView};
use egui::{Color32, Ui};
use egui_plot::{Legend, Line, MarkerShape, Plot, PlotPoint, Points};

/// Draws one chart of `view` on the `cost` axis; returns the subnet clicked, if any.
pub fn show(
    ui: &mut Ui,
    view: &PaletteView<'_>,
    cost: Cost,
    selection: Option<&str>,
    width: f32,
    height: f32,
) -> Option<String> {
    let entries = view.entries;
    let front = view.front(cost);
    let (id, x_label) = match cost {
        Cost::Size if view.in_mb => ("pareto-size", "size (MB)"),
        Cost::Size => ("pareto-size", "parameters (M)"),
        Cost::Latency => ("pareto-latency", "latency (ms, batch 1)"),
    };
    let xy = |i: usize| view.xy(i, cost);
    let mut front_idx: Vec<usize> = (0..entries.len()).filter(|&i| front[i]).collect();
    front_idx.sort_by(|&a, &b| xy(a)[0].total_cmp(&xy(b)[0]));
    let dominated: Vec<usize> = (0..entries.len())
        .filter(|&i| !front[i] && view.fits[i])
        .collect();
    let infeasible: Vec<usize> = (0..entries.len()).filter(|&i| !view.fits[i]).collect();
    let selected = selection.and_then(|s| entries.iter().position(|e| e.subnet == s));
    // Headroom above the best point keeps the top-left legend clear of every point.
    let (lo, hi) = entries
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), e| {
            (lo.min(e.dev_accuracy), hi.max(e.dev_accuracy))
        });
    let headroom = if hi > lo {
        hi + 0.5 * (hi - lo)
    } else {
        hi + 0.01
    };
    let (front_hover, dominated_hover, infeasible_hover) = (&front_idx, &dominated, &infeasible);
    let response = Plot::new(id)
        .include_y(headroom)
        .width(width)
        .height(height)
        // Top-left stays empty on an accuracy-vs-cost chart: no point hides under the legend.
        .legend(Legend::default().position(egui_plot::Corner::LeftTop))
        .x_axis_label(x_label)
        .y_axis_label("dev accuracy")
        .label_formatter(move |hover| {
            if let egui_plot::HoverPosition::NearDataPoint {
                plot_name, index, ..
            } = hover
            {
                let list = if plot_name.starts_with("Pareto front") {
                    front_hover
                } else if plot_name.starts_with("dominated") {
                    dominated_hover
                } else if plot_name.starts_with("over budget") {
                    infeasible_hover
                } else {
                    return None;
                };
                return list
                    .get(*index)
                    .and_then(|&i| entries.get(i))
                    .map(metrics_text);
            }
            None
        })
        .show(ui, |plot_ui| {
            let stairs: Vec<[f64; 2]> = front_idx
                .iter()
                .enumerate()
                .flat_map(|(k, &i)| {
                    let p = xy(i);
                    let mut v = Vec::new();
                    if k > 0 {
                        v.push([p[0], xy(front_idx[k - 1])[1]]);
                    }
                    v.push(p);
                    v
                })
                .collect();
            plot_ui.line(
                // No band aggregation: the stairs' vertical segments share an x and would be filled.
                Line::new("Pareto front", stairs)
                    .color(Color32::from_rgb(66, 133, 244))
                    .width(2.0)
                    .allow_band(false),
            );
            plot_ui.points(
                Points::new(
                    "Pareto front points",
                    front_idx.iter().map(|&i| xy(i)).collect::<Vec<_>>(),
                )
                .radius(5.0)
                .color(Color32::from_rgb(66, 133, 244)),
            );
            plot_ui.points(
                Points::new(
                    "dominated",
                    dominated.iter().map(|&i| xy(i)).collect::<Vec<_>>(),
                )
                .radius(3.5)
                .color(Color32::from_rgba_unmultiplied(160, 160, 160, 140)),
            );
            if !infeasible.is_empty() {
                plot_ui.points(
                    Points::new(
                        "over budget",
                        infeasible.iter().map(|&i| xy(i)).collect::<Vec<_>>(),
                    )
                    .radius(3.0)
                    .color(Color32::from_rgba_unmultiplied(90, 90, 90, 120)),
                );
            }
            if let Some(b) = view.best {
                plot_ui.points(
                    Points::new("best within budget", vec![xy(b)])
                        .shape(MarkerShape::Diamond)
                        .radius(8.0)
                        .color(Color32::from_rgb(52, 168, 83)),
                );
            }
            if let Some(s) = selected {
                plot_ui.points(
                    Points::new("selected", vec![xy(s)])
                        .shape(MarkerShape::Circle)
                        .filled(false)
                        .radius(9.0)
                        .color(Color32::from_rgb(251, 188, 5)),
                );
            }
        });
    if response.response.clicked() {
        let pointer = response.response.interact_pointer_pos()?;
        let nearest = (0..entries.len())
            .map(|i| {
                let [x, y] = xy(i);
                let p = response
                    .transform
                    .position_from_point(&PlotPoint::new(x, y));
                (i, p.distance(pointer))
            })
            .min_by(|a, b| a.1.total_cmp(&b.1))?;
        if nearest.1 < 12.0 {
            return Some(entries[nearest.0].subnet.clone());
        }
    }
    None
}
