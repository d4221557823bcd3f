//! Training tab: loss curves with stage marks and smoothing, dev accuracy, learning rate.

use super::commands::UiCommand;
use super::curves::{debiased_ema, downsample, overlay_colour};
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

fn stage_lines(plot_ui: &mut egui_plot::PlotUi, run: &RunView) {
    for &(x, stage) in &run.stage_marks {
        plot_ui.vline(
            VLine::new(stage_name(stage), x)
                .color(Color32::GRAY)
                .width(1.0),
        );
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
}

/// The tab's own settings.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainingTab {
    /// Weight of the debiased exponential moving average (0 = raw curve).
    pub smoothing: f64,
}

impl Default for TrainingTab {
    fn default() -> Self {
        Self { smoothing: 0.6 }
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
        ui.horizontal(|ui| {
            let l = ui.label("Smoothing");
            ui.add(egui::Slider::new(&mut self.smoothing, 0.0..=0.99))
                .labelled_by(l.id)
                .on_hover_text("Debiased exponential moving average over the full series; the raw curve is drawn faintly beneath");
            let has_curves = !run.losses.is_empty();
            if ui
                .add_enabled(has_curves, egui::Button::new("Save curves as CSV…"))
                .on_hover_text("Every curve's raw values: chart, series, step, value")
                .clicked()
            {
                cmd = Some(UiCommand::Open(DialogPurpose::SaveCurvesCsv));
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
        Plot::new("loss-curves")
            .height(loss_h)
            .legend(Legend::default())
            .x_axis_label("step")
            .y_axis_label("training loss")
            .show(ui, |plot_ui| {
                stage_lines(plot_ui, run);
                for (role, series) in &run.losses {
                    let colour = role_colour(role);
                    let raw = downsample(series, DISPLAY_BINS);
                    plot_ui.line(
                        Line::new(format!("{role} (raw)"), raw).color(colour.gamma_multiply(0.25)),
                    );
                    let smooth = downsample(&debiased_ema(series, smoothing), DISPLAY_BINS);
                    let last = series.last().map_or(0.0, |p| p[1]);
                    plot_ui.line(
                        Line::new(format!("{role}: {last:.4}"), smooth)
                            .color(colour)
                            .width(2.0),
                    );
                }
                for (i, (name, view)) in overlays.iter().enumerate() {
                    for (role, series) in &view.losses {
                        let smooth = downsample(&debiased_ema(series, smoothing), DISPLAY_BINS);
                        let last = series.last().map_or(0.0, |p| p[1]);
                        plot_ui.line(
                            Line::new(format!("{name} · {role}: {last:.4}"), smooth)
                                .color(overlay_colour(i))
                                .style(egui_plot::LineStyle::dashed_loose())
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
                ui.allocate_ui(egui::vec2(width * 0.32, lower), |ui| {
                    learning_rate_chart(ui, run, lower)
                });
            });
            return cmd;
        }
        ui.columns(2, |cols| {
            {
                Plot::new("dev-accuracy")
                    .height(height - loss_h - 20.0)
                    .legend(Legend::default().position(egui_plot::Corner::LeftTop))
                    .x_axis_label("step")
                    .y_axis_label("dev accuracy")
                    .include_y(0.4)
                    .include_y(1.05)
                    .show(&mut cols[0], |plot_ui| {
                        stage_lines(plot_ui, run);
                        if run.majority_accuracy > 0.0 {
                            plot_ui.hline(
                                egui_plot::HLine::new("majority class", run.majority_accuracy)
                                    .color(Color32::DARK_GRAY),
                            );
                        }
                        for (role, series) in &run.dev_accuracy {
                            let last = series.last().map_or(0.0, |p| p[1]);
                            plot_ui.line(
                                Line::new(format!("{role}: {last:.3}"), series.clone())
                                    .color(role_colour(role))
                                    .width(2.0),
                            );
                        }
                        for (i, (name, view)) in overlays.iter().enumerate() {
                            for (role, series) in &view.dev_accuracy {
                                plot_ui.line(
                                    Line::new(format!("{name} · {role}"), series.clone())
                                        .color(overlay_colour(i))
                                        .style(egui_plot::LineStyle::dashed_loose())
                                        .width(1.5),
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
            stage_lines(plot_ui, run);
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
        .show(ui, |plot_ui| {
            stage_lines(plot_ui, run);
            plot_ui.line(
                Line::new(
                    "learning rate",
                    downsample(&run.learning_rate, DISPLAY_BINS),
                )
                .width(1.5),
            );
        });
}
