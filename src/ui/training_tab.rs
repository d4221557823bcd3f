//! Training tab: loss curves with stage marks and smoothing, dev accuracy, learning rate.

use super::commands::UiCommand;
use super::curves::{debiased_ema, downsample, hover_text, overlay_colour, NamedCurve};
use super::dialogs::DialogPurpose;
use super::overlays::{is_current, Overlays};
use super::run_view::{stage_name, RunView};
use egui::{Color32, Ui};
use egui_plot::{Legend, Line, Plot, VLine};
use std::path::Path;

/// Points handed to the plot per series (the full history stays in the run view).
const DISPLAY_BINS: usize = 400;

fn role_colour(role: &str) -> Color32 {
    match role {
        "maxnet" => Color32::from_rgb(66, 133, 244),
        "minnet" => Color32::from_rgb(234, 67, 53),
        "random subnets" | "medium-1" => Color32::from_rgb(251, 188, 5),
        _ => Color32::from_rgb(52, 168, 83),
    }
}

/// How a compared run's role is drawn (its colour is the run's): maxnet long dashes, minnet
/// dots, the others short dashes.
fn role_dash(series_name: &str) -> egui_plot::LineStyle {
    if series_name.ends_with("maxnet") {
        egui_plot::LineStyle::dashed_loose()
    } else if series_name.ends_with("minnet") {
        egui_plot::LineStyle::dotted_dense()
    } else {
        egui_plot::LineStyle::dashed_dense()
    }
}

/// True when a legend of `rows` entries takes at most half of a chart `height` points tall.
fn legend_fits(rows: usize, height: f32) -> bool {
    rows as f32 * 17.0 + 24.0 <= 0.5 * height
}

/// The stage boundaries; `named` puts them in the legend (the loss chart's, which has room),
/// the smaller charts draw them unnamed.
fn stage_lines(plot_ui: &mut egui_plot::PlotUi, run: &RunView, named: bool) {
    for &(x, stage) in &run.stage_marks {
        let name = if named { stage_name(stage) } else { "" };
        plot_ui.vline(VLine::new(name, x).color(Color32::GRAY).width(1.0));
    }
}

/// The "Compare runs" row: one labelled checkbox per run folder, and a refresh button.
fn compare_controls(
    ui: &mut Ui,
    overlays: &mut Overlays,
    runs_root: &Path,
    current: Option<&Path>,
) {
    egui::CollapsingHeader::new("Compare runs")
        .default_open(!overlays.runs.is_empty())
        .show(ui, |ui| {
            // Many runs scroll in a short strip instead of pushing the charts down.
            egui::ScrollArea::vertical()
                .max_height(64.0)
                .id_salt("compare-runs")
                .show(ui, |ui| {
                    ui.horizontal_wrapped(|ui| {
                        if ui
                            .small_button("Refresh runs")
                            .on_hover_text(format!("List the runs in {}", runs_root.display()))
                            .clicked()
                        {
                            overlays.scan(runs_root);
                        }
                        let mut toggles = Vec::new();
                        for run in &overlays.runs {
                            // The current run is always drawn: no checkbox for it.
                            if is_current(&run.dir, current) {
                                continue;
                            }
                            let mut shown = run.shown;
                            let tip = match &run.view {
                                Some(Err(e)) => e.clone(),
                                _ => format!("Draw {} over the current curves", run.dir.display()),
                            };
                            if ui
                                .checkbox(&mut shown, &run.name)
                                .on_hover_text(tip)
                                .changed()
                            {
                                toggles.push((run.name.clone(), shown));
                            }
                        }
                        for (name, shown) in toggles {
                            overlays.set_shown(&name, shown);
                        }
                        if overlays.runs.is_empty() {
                            ui.weak("No finished runs yet in the runs folder.");
                        }
                    });
                });
        });
}

/// The tab's own settings.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainingTab {
    /// Weight of the debiased exponential moving average (0 = raw curve).
    pub smoothing: f64,
    /// The training-loss axis on a log scale.
    pub log_loss: bool,
}

impl Default for TrainingTab {
    fn default() -> Self {
        Self {
            smoothing: 0.6,
            log_loss: false,
        }
    }
}

/// A series as drawn: log10 of the values on a log axis (values ≤ 0 have no place there).
fn on_axis(points: Vec<[f64; 2]>, log: bool) -> Vec<[f64; 2]> {
    match log {
        true => points
            .into_iter()
            .filter(|p| p[1] > 0.0)
            .map(|p| [p[0], p[1].log10()])
            .collect(),
        false => points,
    }
}

impl TrainingTab {
    /// Draws the tab: `run`'s curves, the `overlays` shown beside them (listed from
    /// `runs_root`); `decoder_config` says the configuration being edited is a decoder run's.
    pub fn ui(
        &mut self,
        ui: &mut Ui,
        run: &RunView,
        overlays: &mut Overlays,
        runs_root: &Path,
        decoder_config: bool,
    ) -> Option<UiCommand> {
        let mut cmd = None;
        // Wrapped: in a narrow window the buttons take a second line instead of widening the
        // charts past the window's edge.
        ui.horizontal_wrapped(|ui| {
            let l = ui.label("Smoothing");
            ui.add(egui::Slider::new(&mut self.smoothing, 0.0..=0.99))
                .labelled_by(l.id)
                .on_hover_text("Debiased exponential moving average over the full series; the raw curve is drawn faintly beneath");
            ui.checkbox(&mut self.log_loss, "Log loss axis")
                .on_hover_text("Training loss on a logarithmic axis (late, small improvements stay visible)");
            let has_curves = !run.losses.is_empty();
            if ui
                .add_enabled(has_curves, egui::Button::new("Save curves as CSV…"))
                .on_hover_text("Every curve's raw values: chart, series, step, value")
                .clicked()
            {
                cmd = Some(UiCommand::Open(DialogPurpose::SaveCurvesCsv));
            }
            let tip = "The smoothed training losses as shown, compared runs included (also in the chart's right-click menu)";
            if ui
                .add_enabled(has_curves, egui::Button::new("Save loss chart as PNG…"))
                .on_hover_text(tip)
                .clicked()
            {
                cmd = Some(UiCommand::Open(DialogPurpose::SaveLossChart(false)));
            }
            if ui
                .add_enabled(has_curves, egui::Button::new("Save loss chart as SVG…"))
                .on_hover_text(tip)
                .clicked()
            {
                cmd = Some(UiCommand::Open(DialogPurpose::SaveLossChart(true)));
            }
        });
        let smoothing = self.smoothing;
        let current = run.run_dir.as_deref();
        compare_controls(ui, overlays, runs_root, current);
        let overlays: Vec<(String, RunView)> = overlays
            .shown(current)
            .map(|(n, v)| (n.to_string(), v.clone()))
            .collect();
        if run.losses.is_empty() && overlays.is_empty() {
            ui.weak("No steps yet — press Start (Ctrl+Enter) to train; curves fill live.");
        }
        let height = (ui.available_height() - 40.0).max(240.0);
        let decoder = !run.val_loss.is_empty()
            || decoder_config
            || overlays.iter().any(|(_, v)| !v.val_loss.is_empty());
        // Decoder runs are compared on validation loss: its chart gets as much height as training loss.
        let loss_h = height * if decoder { 0.45 } else { 0.55 };
        if run.losses.is_empty() && overlays.is_empty() {
            // No empty −0.5…0.5 axes: the message above says what will appear.
            return cmd;
        }
        // Every series in full resolution, raw and smoothed: drawn binned, read on hover.
        let mut series: Vec<NamedCurve<'_>> = run
            .losses
            .iter()
            .map(|(role, s)| (role.clone(), s.as_slice(), debiased_ema(s, smoothing)))
            .collect();
        for (name, view) in &overlays {
            for (role, s) in &view.losses {
                let smooth = debiased_ema(s, smoothing);
                series.push((format!("{name} · {role}"), s.as_slice(), smooth));
            }
        }
        // A legend of a handful of entries; with many compared runs the list above names them.
        // A legend only where it covers at most half the chart (a handful of series in a tall
        // enough chart); hover names every series anyway.
        let rows = series.len() + run.stage_marks.len();
        let legend = legend_fits(rows, loss_h)
            .then(|| Legend::default().position(egui_plot::Corner::RightTop));
        let mut plot = Plot::new("loss-curves")
            .height(loss_h)
            .x_axis_label("step")
            .y_axis_label("training loss")
            .label_formatter(|hover| {
                let x = match hover {
                    egui_plot::HoverPosition::NearDataPoint { position, .. }
                    | egui_plot::HoverPosition::Elsewhere { position } => position.x,
                };
                Some(hover_text(x, &series))
            });
        if let Some(l) = legend {
            plot = plot.legend(l);
        }
        let log = self.log_loss;
        if log {
            plot = plot.y_axis_formatter(|mark, _| format!("{:.3}", 10f64.powf(mark.value)));
        }
        let shown = plot.show(ui, |plot_ui| {
            stage_lines(plot_ui, run, true);
            let current = run.losses.len();
            for (k, (name, raw, smooth)) in series.iter().enumerate() {
                let last = smooth.last().map_or(0.0, |p| p[1]);
                let label = format!("{name}: {last:.4}");
                let smooth = on_axis(downsample(smooth, DISPLAY_BINS), log);
                if k < current {
                    let colour = role_colour(name);
                    let raw = on_axis(downsample(raw, DISPLAY_BINS), log);
                    plot_ui.line(Line::new(label.clone(), raw).color(colour.gamma_multiply(0.25)));
                    plot_ui.line(Line::new(label, smooth).color(colour).width(2.0));
                } else {
                    // A compared run: its colour; its roles told apart by the dash.
                    let run_index = overlays
                        .iter()
                        .position(|(n, _)| name.starts_with(n.as_str()))
                        .unwrap_or(0);
                    plot_ui.line(
                        Line::new(label, smooth)
                            .color(overlay_colour(run_index))
                            .style(role_dash(name))
                            .width(1.5),
                    );
                }
            }
        });
        let lower = height - loss_h - 20.0;
        if decoder {
            // The validation chart is the comparison: it gets two thirds of the width.
            let width = ui.available_width();
            ui.horizontal(|ui| {
                ui.allocate_ui(egui::vec2(width * 0.66, lower), |ui| {
                    validation_loss_chart(ui, run, &overlays, lower)
                });
                shown.response.context_menu(|ui| {
                    let actions = [
                        ("Save chart as PNG…", DialogPurpose::SaveLossChart(false)),
                        ("Save chart as SVG…", DialogPurpose::SaveLossChart(true)),
                        ("Save data as CSV…", DialogPurpose::SaveCurvesCsv),
                    ];
                    for (label, purpose) in actions {
                        if ui.button(label).clicked() {
                            cmd = Some(UiCommand::Open(purpose));
                            ui.close();
                        }
                    }
                });
                ui.allocate_ui(egui::vec2(width * 0.32, lower), |ui| {
                    learning_rate_chart(ui, run, lower)
                });
            });
            return cmd;
        }
        ui.columns(2, |cols| {
            {
                let dev_h = height - loss_h - 20.0;
                // A legend only where its rows fit the chart's height (else hover names them).
                let rows = 1
                    + run.dev_accuracy.len()
                    + overlays
                        .iter()
                        .map(|(_, v)| v.dev_accuracy.len())
                        .sum::<usize>();
                let mut dev_plot = Plot::new("dev-accuracy").height(dev_h);
                if legend_fits(rows, dev_h) {
                    dev_plot =
                        dev_plot.legend(Legend::default().position(egui_plot::Corner::LeftTop));
                }
                dev_plot
                    .x_axis_label("step")
                    .y_axis_label("dev accuracy")
                    .include_y(0.4)
                    .include_y(1.05)
                    .show(&mut cols[0], |plot_ui| {
                        stage_lines(plot_ui, run, false);
                        if run.majority_accuracy > 0.0 {
                            plot_ui.hline(
                                egui_plot::HLine::new("majority class", run.majority_accuracy)
                                    .color(Color32::DARK_GRAY),
                            );
                        }
                        // Evaluations are sparse: a marker on each, so a single one shows.
                        for (role, series) in &run.dev_accuracy {
                            let last = series.last().map_or(0.0, |p| p[1]);
                            let label = format!("{role}: {last:.3}");
                            plot_ui.line(
                                Line::new(label.clone(), series.clone())
                                    .color(role_colour(role))
                                    .width(2.0),
                            );
                            plot_ui.points(
                                egui_plot::Points::new(label, series.clone())
                                    .color(role_colour(role))
                                    .radius(3.0),
                            );
                        }
                        for (i, (name, view)) in overlays.iter().enumerate() {
                            for (role, series) in &view.dev_accuracy {
                                let label = format!("{name} · {role}");
                                plot_ui.line(
                                    Line::new(label.clone(), series.clone())
                                        .color(overlay_colour(i))
                                        .style(role_dash(role))
                                        .width(1.5),
                                );
                                plot_ui.points(
                                    egui_plot::Points::new(label, series.clone())
                                        .color(overlay_colour(i))
                                        .radius(2.0),
                                );
                            }
                        }
                    });
            }
            learning_rate_chart(&mut cols[1], run, height - loss_h - 20.0);
        });
        cmd
    }
}

/// Decoder runs: validation loss per subnet with points at each evaluation, the teacher as a
/// reference line, and the overlaid runs' curves under their names.
fn validation_loss_chart(ui: &mut Ui, run: &RunView, overlays: &[(String, RunView)], height: f32) {
    let teacher = run
        .teacher_val_loss
        .or_else(|| overlays.iter().find_map(|(_, v)| v.teacher_val_loss));
    let highest = run
        .val_loss
        .values()
        .chain(overlays.iter().flat_map(|(_, v)| v.val_loss.values()))
        .flatten()
        .map(|p| p[1])
        .fold(0.0f64, f64::max);
    Plot::new("validation-loss")
        .height(height)
        .include_y(teacher.map_or(0.0, |t| t - 0.3))
        // Headroom above the curves for the legend.
        .include_y(highest * 1.3)
        .legend(Legend::default().position(egui_plot::Corner::RightTop))
        .x_axis_label("step")
        .y_axis_label("validation loss (nats/token)")
        .show(ui, |plot_ui| {
            stage_lines(plot_ui, run, true);
            if let Some(t) = teacher {
                plot_ui.hline(
                    egui_plot::HLine::new(format!("teacher: {t:.3}"), t).color(Color32::DARK_GRAY),
                );
            }
            let mut draw = |name: String, series: &Vec<[f64; 2]>, colour: Color32, dashed: bool| {
                let last = series.last().map_or(0.0, |p| p[1]);
                let label = format!("{name}: {last:.3}");
                let mut line = Line::new(label.clone(), series.clone())
                    .color(colour)
                    .width(2.0);
                if dashed {
                    line = line.style(egui_plot::LineStyle::dashed_loose());
                }
                plot_ui.line(line);
                plot_ui.points(
                    egui_plot::Points::new(label, series.clone())
                        .color(colour)
                        .radius(3.0),
                );
            };
            for (role, series) in &run.val_loss {
                draw(role.clone(), series, role_colour(role), false);
            }
            for (i, (name, view)) in overlays.iter().enumerate() {
                for (role, series) in &view.val_loss {
                    draw(format!("{name} · {role}"), series, overlay_colour(i), true);
                }
            }
        });
}

/// The learning rate over steps, with the stage marks.
fn learning_rate_chart(ui: &mut Ui, run: &RunView, height: f32) {
    Plot::new("learning-rate")
        .height(height)
        .x_axis_label("step")
        .y_axis_label("learning rate")
        // Rates like 0.002 need more than the default's few decimals.
        .y_axis_formatter(|mark, _| format!("{:.1e}", mark.value))
        .show(ui, |plot_ui| {
            stage_lines(plot_ui, run, false);
            plot_ui.line(
                Line::new(
                    "learning rate",
                    downsample(&run.learning_rate, DISPLAY_BINS),
                )
                .width(1.5),
            );
        });
}
