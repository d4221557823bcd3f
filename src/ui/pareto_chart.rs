//! One Pareto chart (Optuna's conventions): cost against dev accuracy, the front as a step line,
//! dominated points dimmed, over-budget points grey, the best within budget and the selection
//! marked; hovering a point shows its measurements, clicking it selects it.

use super::commands::UiCommand;
use super::curves::overlay_colour;
use super::dialogs::DialogPurpose;
use super::palette_view::{cost_of, Cost, PaletteView, ParetoPoint};
use crate::eval::pareto::pareto_front;
use crate::train::protocol::PaletteEntry;
use egui::{Color32, Pos2, Ui};
use egui_plot::{Legend, Line, MarkerShape, Plot, PlotPoint, Points};

/// Another run's palette drawn for comparison: its name and measured subnets.
pub type ComparedPalette<'a, P = PaletteEntry> = (&'a str, &'a [P]);

/// The staircase through front points sorted by cost (the front's step line).
fn stairs(points: &[[f64; 2]]) -> Vec<[f64; 2]> {
    let mut out = Vec::with_capacity(points.len() * 2);
    for (k, p) in points.iter().enumerate() {
        if k > 0 {
            out.push([p[0], points[k - 1][1]]);
        }
        out.push(*p);
    }
    out
}

/// Another run's front on this chart's axes, sorted by cost.
fn compared_front<P: ParetoPoint>(entries: &[P], cost: Cost, in_mb: bool) -> Vec<[f64; 2]> {
    let points: Vec<(f64, f64)> = entries
        .iter()
        .map(|e| (cost_of(e, cost, in_mb), e.merit()))
        .collect();
    let on = pareto_front(&points);
    let mut front: Vec<[f64; 2]> = entries
        .iter()
        .zip(on)
        .filter(|(_, on)| *on)
        .map(|(e, _)| [cost_of(e, cost, in_mb), e.score()])
        .collect();
    front.sort_by(|a, b| a[0].total_cmp(&b[0]));
    front
}

/// Draws one chart of `view` on the `cost` axis, with the fronts of `compared` runs dashed in
/// their own colours and `reference` (a named score, e.g. the teacher's) as a level line;
/// returns the subnet clicked, if any. `command` receives the context menu's choice; `None`
/// leaves the menu out.
#[allow(clippy::too_many_arguments)]
pub fn show<P: ParetoPoint>(
    ui: &mut Ui,
    view: &PaletteView<'_, P>,
    cost: Cost,
    selection: Option<&str>,
    (width, height): (f32, f32),
    compared: &[ComparedPalette<'_, P>],
    reference: Option<(&str, f64)>,
    command: Option<&mut Option<UiCommand>>,
) -> Option<String> {
    let entries = view.entries;
    let front = view.front(cost);
    let id = chart_id(cost);
    let x_label = match cost {
        Cost::Size if view.in_mb => "size (MB)",
        Cost::Size => "parameters (M)",
        Cost::Latency => "latency (ms, batch 1)",
    };
    let xy = |i: usize| view.xy(i, cost);
    let mut front_idx: Vec<usize> = (0..entries.len()).filter(|&i| front[i]).collect();
    front_idx.sort_by(|&a, &b| xy(a)[0].total_cmp(&xy(b)[0]));
    let dominated: Vec<usize> = (0..entries.len())
        .filter(|&i| !front[i] && view.fits[i])
        .collect();
    let infeasible: Vec<usize> = (0..entries.len()).filter(|&i| !view.fits[i]).collect();
    let selected = selection.and_then(|s| entries.iter().position(|e| e.subnet() == s));
    // Headroom above the best point keeps the top-left legend clear of every point: the
    // legend takes about 17 points a row of the chart's height.
    let accuracies = entries
        .iter()
        .chain(compared.iter().flat_map(|(_, others)| others.iter()))
        .map(|e| e.score())
        .chain(reference.map(|(_, v)| v))
        .filter(|a| a.is_finite());
    let (lo, hi) = accuracies.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), a| {
        (lo.min(a), hi.max(a))
    });
    let legend_rows = 2
        + compared.len()
        + usize::from(cost == Cost::Latency && !view.search.is_empty())
        + usize::from(entries.iter().any(|e| e.role() == "searched"))
        + usize::from(!infeasible.is_empty())
        + usize::from(view.best.is_some())
        + usize::from(selected.is_some())
        + usize::from(reference.is_some())
        + usize::from(view.limit(cost).is_some());
    let share = ((legend_rows as f32 * 17.0 + 24.0) / height.max(1.0)).clamp(0.1, 0.6) as f64;
    let headroom = if hi > lo {
        (hi - share * lo) / (1.0 - share)
    } else {
        hi + 0.01
    };
    let (front_hover, dominated_hover, infeasible_hover) = (&front_idx, &dominated, &infeasible);
    let log_axis = cost == Cost::Latency && view.log_latency;
    let mut plot = Plot::new(id);
    if !log_axis {
        // Steps of powers of 5 (0.2, 1, 5 ms…; 25 M parameters): a range within one power of
        // ten (a few ms, 45-135 M) gets several labelled ticks, not one.
        plot = plot.x_grid_spacer(egui_plot::log_grid_spacer(5));
    }
    if P::LOWER_IS_BETTER {
        // Losses span a few units to a dozen: ticks every 1, 2 or 4 nats keep several labels
        // (the default powers of ten left only "10").
        plot = plot.y_grid_spacer(egui_plot::log_grid_spacer(2));
    }
    if log_axis {
        // The axis holds log10 of the latency: label it in milliseconds.
        plot = plot.x_axis_formatter(|mark, _| super::curves::tick_label(10f64.powf(mark.value)));
    }
    let response = plot
        .include_y(headroom)
        .width(width)
        .height(height)
        // The corner a front leaves empty holds the legend: top-left when higher scores are
        // better (accuracy), top-right when lower are (loss), with headroom above the points.
        .legend(Legend::default().position(if P::LOWER_IS_BETTER {
            egui_plot::Corner::RightTop
        } else {
            egui_plot::Corner::LeftTop
        }))
        .x_axis_label(x_label)
        .y_axis_label(P::SCORE_LABEL)
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
                    .map(|e| e.metrics_text());
            }
            None
        })
        .show(ui, |plot_ui| {
            // Step lines and latency bars go unnamed: the legend lists each front once (by its
            // points, whose hover shows the subnet) and keeps clear of the data.
            for (k, (name, others)) in compared.iter().enumerate() {
                let mut front = compared_front(others, cost, view.in_mb);
                for p in &mut front {
                    p[0] = view.axis_x(cost, p[0]);
                }
                let colour = overlay_colour(k);
                plot_ui.line(
                    Line::new("", stairs(&front))
                        .color(colour)
                        .style(egui_plot::LineStyle::dashed_loose())
                        .width(1.5)
                        .allow_band(false),
                );
                plot_ui.points(
                    Points::new(format!("{name} front"), front)
                        .shape(MarkerShape::Square)
                        .radius(3.5)
                        .color(colour),
                );
            }
            if cost == Cost::Latency {
                // Median to p90 of every subnet: how steady its latency is. A whisker far past
                // the slowest median ends at the chart's edge with an arrowhead (hover: p90).
                let whisker = Color32::from_rgba_unmultiplied(150, 150, 150, 160);
                let mut cut = Vec::new();
                for e in entries {
                    let (y, (median, p90)) = (e.score(), e.latency_ms());
                    let (end, was_cut) = view.whisker_end(p90);
                    let end = view.axis_x(cost, end);
                    plot_ui.line(
                        Line::new("", vec![[view.axis_x(cost, median), y], [end, y]])
                            .color(whisker)
                            .width(1.0)
                            .allow_band(false),
                    );
                    if was_cut {
                        cut.push([end, y]);
                    }
                }
                if !cut.is_empty() {
                    plot_ui.points(
                        Points::new("", cut)
                            .shape(MarkerShape::Right)
                            .radius(4.0)
                            .color(whisker),
                    );
                }
            }
            if let Some(limit) = view.limit(cost) {
                let unit = match cost {
                    Cost::Latency => "ms",
                    Cost::Size if view.in_mb => "MB",
                    Cost::Size => "M params",
                };
                plot_ui.vline(
                    egui_plot::VLine::new(
                        format!("budget {limit} {unit}"),
                        view.axis_x(cost, limit),
                    )
                    .color(Color32::from_rgb(219, 68, 55))
                    .style(egui_plot::LineStyle::dashed_loose())
                    .width(1.5),
                );
            }
            if view.budget.is_set() {
                // The palette's own front, faint: the budget narrows the solid one below.
                let all = view.front_all(cost);
                let mut idx: Vec<usize> = (0..entries.len()).filter(|&i| all[i]).collect();
                idx.sort_by(|&a, &b| xy(a)[0].total_cmp(&xy(b)[0]));
                let points: Vec<[f64; 2]> = idx.iter().map(|&i| xy(i)).collect();
                plot_ui.line(
                    Line::new("", stairs(&points))
                        .color(Color32::from_rgba_unmultiplied(66, 133, 244, 90))
                        .style(egui_plot::LineStyle::dashed_dense())
                        .width(1.5)
                        .allow_band(false),
                );
            }
            let front_points: Vec<[f64; 2]> = front_idx.iter().map(|&i| xy(i)).collect();
            plot_ui.line(
                // No band aggregation: the stairs' vertical segments share an x and would be filled.
                Line::new("", stairs(&front_points))
                    .color(Color32::from_rgb(66, 133, 244))
                    .width(2.0)
                    .allow_band(false),
            );
            plot_ui.points(
                Points::new(
                    "Pareto front",
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
            if cost == Cost::Latency && !view.search.is_empty() {
                // The search's candidates, faint, at their predicted latency and estimated
                // quality, with the front of those within budget.
                let at = |p: &[f64; 2]| [view.axis_x(cost, p[0]), p[1]];
                plot_ui.points(
                    Points::new(
                        "search candidates (predicted, estimated)",
                        view.search.iter().map(at).collect::<Vec<_>>(),
                    )
                    .radius(1.5)
                    .color(Color32::from_rgba_unmultiplied(120, 120, 200, 90)),
                );
                let mut front: Vec<[f64; 2]> = view.search_front.iter().map(at).collect();
                front.sort_by(|a, b| a[0].total_cmp(&b[0]));
                plot_ui.line(
                    Line::new("", stairs(&front))
                        .color(Color32::from_rgba_unmultiplied(120, 120, 200, 160))
                        .style(egui_plot::LineStyle::dashed_dense())
                        .width(1.0)
                        .allow_band(false),
                );
            }
            let searched: Vec<[f64; 2]> = (0..entries.len())
                .filter(|&i| entries[i].role() == "searched")
                .map(xy)
                .collect();
            if !searched.is_empty() {
                plot_ui.points(
                    Points::new("searched", searched)
                        .shape(MarkerShape::Asterisk)
                        .radius(6.0)
                        .color(Color32::from_rgb(171, 71, 188)),
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
            if let Some((name, level)) = reference {
                plot_ui.hline(
                    egui_plot::HLine::new(name, level)
                        .color(Color32::from_rgb(219, 68, 55))
                        .style(egui_plot::LineStyle::dashed_dense())
                        .width(1.0),
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
    if let Some(command) = command {
        response.response.context_menu(|ui| {
            let actions = [
                ("Save chart as PNG…", DialogPurpose::SaveChart(cost, false)),
                ("Save chart as SVG…", DialogPurpose::SaveChart(cost, true)),
                ("Save data as CSV…", DialogPurpose::SavePaletteCsv),
            ];
            for (label, purpose) in actions {
                if ui.button(label).clicked() {
                    *command = Some(UiCommand::Open(purpose));
                    ui.close();
                }
            }
        });
    }
    let positions: Vec<(String, Pos2)> = (0..entries.len())
        .map(|i| {
            let [x, y] = xy(i);
            let p = response
                .transform
                .position_from_point(&PlotPoint::new(x, y));
            (entries[i].subnet().to_string(), p)
        })
        .collect();
    // The hovered point's shape, layer by layer, against the teacher's widths.
    let hovered = response.response.hover_pos().and_then(|pointer| {
        positions
            .iter()
            .map(|(subnet, p)| (subnet, p.distance(pointer)))
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .filter(|n| n.1 < 12.0)
            .and_then(|n| n.0.parse::<crate::model::SubnetSpec>().ok())
    });
    if let (Some(spec), Some(teacher)) = (hovered, view.teacher) {
        response
            .response
            .clone()
            .on_hover_ui_at_pointer(|ui| super::layer_chart::show(ui, &spec, &teacher));
    }
    let clicked = if response.response.clicked() {
        let pointer = response.response.interact_pointer_pos();
        let nearest = pointer.and_then(|pointer| {
            positions
                .iter()
                .map(|(subnet, p)| (subnet, p.distance(pointer)))
                .min_by(|a, b| a.1.total_cmp(&b.1))
        });
        nearest.filter(|n| n.1 < 12.0).map(|n| n.0.clone())
    } else {
        None
    };
    // Kept for the next frame: where each subnet's dot is (tests click them by subnet).
    ui.ctx()
        .data_mut(|d| d.insert_temp(positions_id(id), positions));
    clicked
}

/// The plot's id (its zoom and hover state) for a cost axis.
fn chart_id(cost: Cost) -> &'static str {
    match cost {
        Cost::Size => "pareto-size",
        Cost::Latency => "pareto-latency",
    }
}

fn positions_id(chart: &str) -> egui::Id {
    egui::Id::unique((chart, "point-positions"))
}

/// Where the last frame drew `subnet`'s dot on the chart of `cost`, in screen points.
pub fn point_position(ctx: &egui::Context, cost: Cost, subnet: &str) -> Option<Pos2> {
    let positions: Vec<(String, Pos2)> = ctx.data(|d| d.get_temp(positions_id(chart_id(cost))))?;
    positions
        .into_iter()
        .find(|(s, _)| s == subnet)
        .map(|(_, p)| p)
}
