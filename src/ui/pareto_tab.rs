//! Pareto tab: size and latency vs dev accuracy, linked selection, budgets, the subnets table, export.

use super::app::{Column, ExportState, StudioApp, UiCommand};
use super::run_view::RunStatus;
use crate::eval::pareto::pareto_front;
use crate::train::protocol::PaletteEntry;
use egui::{Color32, RichText, Ui};
use egui_plot::{Legend, Line, MarkerShape, Plot, PlotPoint, Points};

/// Which cost a chart puts on its x axis.
#[derive(Clone, Copy)]
enum Cost {
    Size,
    Latency,
}

fn cost_of(e: &PaletteEntry, cost: Cost, in_mb: bool) -> f64 {
    match cost {
        Cost::Size if in_mb => e.size_bytes as f64 / 1e6,
        Cost::Size => e.params_total as f64 / 1e6,
        Cost::Latency => e.latency_ms_median,
    }
}

/// True when an entry fits the optional latency and size budgets.
pub fn within_budget(e: &PaletteEntry, latency_ms: Option<f64>, size_mb: Option<f64>) -> bool {
    latency_ms.is_none_or(|b| e.latency_ms_median <= b)
        && size_mb.is_none_or(|b| e.size_bytes as f64 / 1e6 <= b)
}

/// The most accurate (dev) subnet within budget.
pub fn best_within_budget(
    entries: &[PaletteEntry],
    latency_ms: Option<f64>,
    size_mb: Option<f64>,
) -> Option<usize> {
    entries
        .iter()
        .enumerate()
        .filter(|(_, e)| within_budget(e, latency_ms, size_mb))
        .max_by(|a, b| a.1.dev_accuracy.total_cmp(&b.1.dev_accuracy))
        .map(|(i, _)| i)
}

fn metrics_text(e: &PaletteEntry) -> String {
    format!(
        "{}\nlayers {} · heads {} · FFN {} · hidden {}\nparameters {:.2} M ({:.2} M non-embedding)\nsize {:.2} MB\nlatency {:.3} ms median, {:.3} ms p90\ndev accuracy {:.4} · test accuracy {:.4}",
        e.subnet, e.layers, e.heads, e.ffn, e.hidden, e.params_total as f64 / 1e6, e.params_non_embedding as f64 / 1e6,
        e.size_bytes as f64 / 1e6, e.latency_ms_median, e.latency_ms_p90, e.dev_accuracy, e.test_accuracy
    )
}

/// One chart; returns the subnet clicked, if any.
fn chart(ui: &mut Ui, app: &mut StudioApp, cost: Cost, width: f32, height: f32) -> Option<String> {
    let entries = &app.run.palette;
    let feasible: Vec<bool> = entries
        .iter()
        .map(|e| within_budget(e, app.budget_latency_ms, app.budget_size_mb))
        .collect();
    // Infeasible points are excluded from the front (Optuna's convention).
    let pts: Vec<(f64, f64)> = entries
        .iter()
        .zip(&feasible)
        .map(|(e, &ok)| {
            if ok {
                (cost_of(e, cost, app.size_in_mb), e.dev_accuracy)
            } else {
                (f64::NAN, f64::NAN)
            }
        })
        .collect();
    let front = pareto_front(&pts);
    let budgeted = app.budget_latency_ms.is_some() || app.budget_size_mb.is_some();
    let best =
        best_within_budget(entries, app.budget_latency_ms, app.budget_size_mb).filter(|_| budgeted);
    let (id, x_label) = match cost {
        Cost::Size if app.size_in_mb => ("pareto-size", "size (MB)"),
        Cost::Size => ("pareto-size", "parameters (M)"),
        Cost::Latency => ("pareto-latency", "latency (ms, batch 1)"),
    };
    let xy = |i: usize| {
        [
            cost_of(&entries[i], cost, app.size_in_mb),
            entries[i].dev_accuracy,
        ]
    };
    let mut front_idx: Vec<usize> = (0..entries.len()).filter(|&i| front[i]).collect();
    front_idx.sort_by(|&a, &b| xy(a)[0].total_cmp(&xy(b)[0]));
    let dominated: Vec<usize> = (0..entries.len())
        .filter(|&i| !front[i] && feasible[i])
        .collect();
    let infeasible: Vec<usize> = (0..entries.len()).filter(|&i| !feasible[i]).collect();
    let selected = app
        .selection
        .as_ref()
        .and_then(|s| entries.iter().position(|e| &e.subnet == s));
    let hover_entries = entries.clone();
    let (front_for_hover, dom_for_hover, inf_for_hover) =
        (front_idx.clone(), dominated.clone(), infeasible.clone());
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
                    &front_for_hover
                } else if plot_name.starts_with("dominated") {
                    &dom_for_hover
                } else if plot_name.starts_with("over budget") {
                    &inf_for_hover
                } else {
                    return None;
                };
                return list.get(*index).map(|&i| metrics_text(&hover_entries[i]));
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
            if let Some(b) = best {
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
                let p = response
                    .transform
                    .position_from_point(&PlotPoint::new(xy(i)[0], xy(i)[1]));
                (i, p.distance(pointer))
            })
            .min_by(|a, b| a.1.total_cmp(&b.1))?;
        if nearest.1 < 12.0 {
            return Some(entries[nearest.0].subnet.clone());
        }
    }
    None
}

fn sort_entries(entries: &mut [(usize, PaletteEntry)], column: Column, descending: bool) {
    entries.sort_by(|(_, a), (_, b)| {
        let ord = match column {
            Column::Subnet => a.subnet.cmp(&b.subnet),
            Column::Layers => a.layers.cmp(&b.layers),
            Column::Heads => a.heads.cmp(&b.heads),
            Column::Ffn => a.ffn.cmp(&b.ffn),
            Column::Params => a.params_total.cmp(&b.params_total),
            Column::Size => a.size_bytes.cmp(&b.size_bytes),
            Column::Latency => a.latency_ms_median.total_cmp(&b.latency_ms_median),
            Column::DevAccuracy => a.dev_accuracy.total_cmp(&b.dev_accuracy),
            Column::TestAccuracy => a.test_accuracy.total_cmp(&b.test_accuracy),
        };
        if descending {
            ord.reverse()
        } else {
            ord
        }
    });
}

fn table(ui: &mut Ui, app: &mut StudioApp) -> Option<UiCommand> {
    let mut cmd = None;
    let entries = &app.run.palette;
    let sizes: Vec<(f64, f64)> = entries
        .iter()
        .map(|e| (e.params_total as f64, e.dev_accuracy))
        .collect();
    let lats: Vec<(f64, f64)> = entries
        .iter()
        .map(|e| (e.latency_ms_median, e.dev_accuracy))
        .collect();
    let (size_front, lat_front) = (pareto_front(&sizes), pareto_front(&lats));
    let mut rows: Vec<(usize, PaletteEntry)> = entries.iter().cloned().enumerate().collect();
    sort_entries(&mut rows, app.sort.0, app.sort.1);
    let headers = [
        (Column::Subnet, "Subnet"),
        (Column::Layers, "Layers"),
        (Column::Heads, "Heads"),
        (Column::Ffn, "FFN"),
        (Column::Params, "Params (M)"),
        (Column::Size, "Size (MB)"),
        (Column::Latency, "Latency (ms)"),
        (Column::DevAccuracy, "Dev acc"),
        (Column::TestAccuracy, "Test acc"),
    ];
    egui::ScrollArea::both()
        .id_salt("subnets-table")
        .auto_shrink([false, false])
        .show(ui, |ui| {
            egui::Grid::new("subnets-grid")
                .striped(true)
                .num_columns(10)
                .show(ui, |ui| {
                    for (col, name) in headers {
                        let arrow = if app.sort.0 == col {
                            if app.sort.1 {
                                " (desc)"
                            } else {
                                " (asc)"
                            }
                        } else {
                            ""
                        };
                        if ui
                            .button(format!("{name}{arrow}"))
                            .on_hover_text(format!("Sort by {name}"))
                            .clicked()
                        {
                            app.sort = if app.sort.0 == col {
                                (col, !app.sort.1)
                            } else {
                                (col, true)
                            };
                        }
                    }
                    ui.label("Fronts");
                    ui.end_row();
                    for (i, e) in &rows {
                        let selected = app.selection.as_deref() == Some(e.subnet.as_str());
                        if ui
                            .selectable_label(selected, RichText::new(&e.subnet).monospace())
                            .on_hover_text(metrics_text(e))
                            .clicked()
                        {
                            cmd = Some(UiCommand::Select(if selected {
                                None
                            } else {
                                Some(e.subnet.clone())
                            }));
                        }
                        ui.label(e.layers.to_string());
                        ui.label(e.heads.to_string());
                        ui.label(e.ffn.to_string());
                        ui.label(format!("{:.2}", e.params_total as f64 / 1e6));
                        ui.label(format!("{:.2}", e.size_bytes as f64 / 1e6));
                        ui.label(format!("{:.3}", e.latency_ms_median));
                        ui.label(format!("{:.4}", e.dev_accuracy));
                        ui.label(format!("{:.4}", e.test_accuracy));
                        let marks = format!(
                            "{}{}",
                            if size_front[*i] { "size " } else { "" },
                            if lat_front[*i] { "latency" } else { "" }
                        );
                        ui.label(marks);
                        ui.end_row();
                    }
                });
        });
    cmd
}

fn budget(ui: &mut Ui, label: &str, value: &mut Option<f64>, default: f64, tip: &str) {
    let mut on = value.is_some();
    if ui.checkbox(&mut on, label).on_hover_text(tip).changed() {
        *value = on.then_some(default);
    }
    if let Some(v) = value {
        let l = ui.label("max");
        ui.add(egui::DragValue::new(v).speed(0.05).range(0.0..=1e6))
            .labelled_by(l.id)
            .on_hover_text(tip);
    }
}

/// Draws the tab.
pub fn show(ui: &mut Ui, app: &mut StudioApp) -> Option<UiCommand> {
    if app.config.is_lm() || !app.run.lm_entries.is_empty() {
        return super::decoder_panel::show(ui, app);
    }
    let mut cmd = None;
    ui.horizontal(|ui| {
        let can_eval = app.run.run_dir.is_some()
            && !app.run.status.is_active()
            && app.run.status != RunStatus::MeasuringPalette;
        if ui
            .add_enabled(can_eval, egui::Button::new("Re-evaluate palette"))
            .on_hover_text("Measure accuracy, size and latency of every subnet again")
            .clicked()
        {
            cmd = Some(UiCommand::EvaluatePalette);
        }
        ui.checkbox(&mut app.size_in_mb, "Size in MB")
            .on_hover_text("Size axis: exported bytes instead of parameters");
        budget(
            ui,
            "Latency budget (ms)",
            &mut app.budget_latency_ms,
            1.0,
            "Grey out subnets slower than this and mark the best one within budget",
        );
        budget(
            ui,
            "Size budget (MB)",
            &mut app.budget_size_mb,
            40.0,
            "Grey out subnets larger than this and mark the best one within budget",
        );
    });
    if app.run.palette.is_empty() {
        let why = if app.run.status == RunStatus::MeasuringPalette {
            "Measuring the palette — points appear as each subnet is measured."
        } else {
            "No subnet evaluated yet — the palette is measured when training ends, or press Re-evaluate palette."
        };
        ui.weak(why);
    } else {
        let width = (ui.available_width() - 16.0) / 2.0;
        let height = (ui.available_height() * 0.5).max(220.0);
        ui.horizontal(|ui| {
            for cost in [Cost::Size, Cost::Latency] {
                if let Some(s) = chart(ui, app, cost, width, height) {
                    cmd = Some(UiCommand::Select(Some(s)));
                }
            }
        });
        if let Some(best) =
            best_within_budget(&app.run.palette, app.budget_latency_ms, app.budget_size_mb)
        {
            if app.budget_latency_ms.is_some() || app.budget_size_mb.is_some() {
                ui.label(format!(
                    "Best within budget: {} (dev {:.4})",
                    app.run.palette[best].subnet, app.run.palette[best].dev_accuracy
                ));
            }
        }
    }
    ui.horizontal(|ui| {
        let can_export =
            app.selection.is_some() && !matches!(app.export, ExportState::Running { .. });
        if ui
            .add_enabled(can_export, egui::Button::new("Export selected…"))
            .on_hover_text(
                "Write the selected subnet, adapters merged, as a standalone model folder",
            )
            .clicked()
        {
            cmd = Some(UiCommand::Export);
        }
        match &app.selection {
            Some(s) => ui.label(format!("selected: {s}")),
            None => ui.weak("select a subnet in a chart or the table"),
        };
    });
    export_status(ui, &app.export);
    ui.separator();
    if let Some(c) = table(ui, app) {
        cmd = Some(c);
    }
    cmd
}

/// The export's progress, its files or its error.
pub fn export_status(ui: &mut Ui, export: &ExportState) {
    match export {
        ExportState::Idle => {}
        ExportState::Running { subnet, folder } => {
            ui.horizontal(|ui| {
                ui.spinner();
                ui.label(format!("Exporting {subnet} to {}…", folder.display()));
            });
        }
        ExportState::Done { folder, files } => {
            ui.label(
                RichText::new(format!(
                    "Exported to {}: {}",
                    folder.display(),
                    files
                        .iter()
                        .filter_map(|f| std::path::Path::new(f).file_name())
                        .map(|f| f.to_string_lossy().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
                .color(Color32::from_rgb(52, 168, 83)),
            );
        }
        ExportState::Failed(e) => {
            ui.label(
                RichText::new(format!("Export failed: {e}")).color(ui.visuals().error_fg_color),
            );
        }
    }
}
