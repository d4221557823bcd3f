//! Training tab: loss curves with stage marks and smoothing, dev accuracy, learning rate.

use super::chart_legend::{self, Dash, Entry};
use super::commands::UiCommand;
use super::curves::{debiased_ema, downsample, hover_text, overlay_colour, NamedCurve};
use super::dialogs::DialogPurpose;
use super::overlays::{is_current, Overlays};
use super::run_view::{stage_name, RunView};
use egui::{Color32, Ui};
use egui_plot::{Line, Plot, VLine};
use std::collections::BTreeSet;
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
fn role_dash(series_name: &str) -> Dash {
    if series_name.ends_with("maxnet") {
        Dash::Loose
    } else if series_name.ends_with("minnet") {
        Dash::Dotted
    } else {
        Dash::Dense
    }
}

/// The stage boundaries as grey vertical lines; with a `label_at` height, each stage's name
/// is written there on its line (direct labels: the legend stays for the series). The height
/// comes from the data: a label placed at the plot's top would widen the plot's bounds, frame
/// after frame.
fn stage_lines(plot_ui: &mut egui_plot::PlotUi, run: &RunView, label_at: Option<f64>) {
    for &(x, stage) in &run.stage_marks {
        plot_ui.vline(VLine::new("", x).color(Color32::GRAY).width(1.0));
        if let Some(top) = label_at.filter(|t| t.is_finite()) {
            let name = stage_name(stage);
            let short = name.split(" · ").next().unwrap_or(name);
            plot_ui.text(
                egui_plot::Text::new("", egui_plot::PlotPoint::new(x, top), format!(" {short}"))
                    .anchor(egui::Align2::LEFT_TOP)
                    .color(Color32::GRAY),
            );
        }
    }
}

/// The legend entry of the stage boundaries, when the run has any.
fn stage_entry(run: &RunView) -> Option<Entry> {
    (!run.stage_marks.is_empty())
        .then(|| Entry::new("stage boundary", Color32::GRAY, Dash::Vertical))
}

/// The "Compare runs" row: one labelled checkbox per run folder of the same kind (a decoder's
/// validation loss and a classifier's dev accuracy share no chart), and a refresh button.
fn compare_controls(
    ui: &mut Ui,
    overlays: &mut Overlays,
    runs_root: &Path,
    current: Option<&Path>,
    decoder: bool,
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
                            if is_current(&run.dir, current)
                                || run.decoder.is_some_and(|d| d != decoder)
                            {
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
    /// Series hidden by a click on their legend entry (`chart_legend::key`).
    pub hidden: BTreeSet<String>,
}

impl Default for TrainingTab {
    fn default() -> Self {
        Self {
            smoothing: 0.6,
            log_loss: false,
            hidden: BTreeSet::new(),
        }
    }
}

/// Chart names, for the legends' hidden series.
const LOSS_CHART: &str = "loss";
const DEV_CHART: &str = "dev";
const VALIDATION_CHART: &str = "validation";

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
        let decoder_kind = decoder_config || !run.val_loss.is_empty();
        compare_controls(ui, overlays, runs_root, current, decoder_kind);
        let kinds: Vec<(String, Option<bool>)> = overlays
            .runs
            .iter()
            .map(|r| (r.name.clone(), r.decoder))
            .collect();
        let overlays: Vec<(String, RunView)> = overlays
            .shown(current)
            .filter(|(n, _)| {
                kinds
                    .iter()
                    .any(|(k, d)| k == n && d.is_none_or(|d| d == decoder_kind))
            })
            .map(|(n, v)| (n.to_string(), v.clone()))
            .collect();
        if run.losses.is_empty() && overlays.is_empty() {
            use super::run_view::RunStatus;
            ui.weak(match run.status {
                RunStatus::Starting => {
                    "Loading the teacher and the data; the curves start with the first step."
                }
                RunStatus::Running | RunStatus::Paused | RunStatus::Stopping => {
                    "Training: the first step's losses appear as soon as it ends."
                }
                _ => "No steps yet — press Start (Ctrl+Enter) to train; curves fill live.",
            });
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
        let current_series = run.losses.len();
        let mut series: Vec<NamedCurve<'_>> = run
            .losses
            .iter()
            .map(|(role, s)| (role.clone(), s.as_slice(), debiased_ema(s, smoothing)))
            .collect();
        let mut looks: Vec<(Color32, Dash)> = run
            .losses
            .keys()
            .map(|role| (role_colour(role), Dash::Solid))
            .collect();
        for (i, (name, view)) in overlays.iter().enumerate() {
            for (role, s) in &view.losses {
                let smooth = debiased_ema(s, smoothing);
                series.push((format!("{name} · {role}"), s.as_slice(), smooth));
                looks.push((overlay_colour(i), role_dash(role)));
            }
        }
        let mut entries: Vec<Entry> = series
            .iter()
            .zip(&looks)
            .map(|((name, _, smooth), &(colour, dash))| {
                let last = smooth.last().map_or(0.0, |p| p[1]);
                Entry::new(name.clone(), colour, dash).value(format!("{last:.4}"))
            })
            .collect();
        entries.extend(stage_entry(run));
        let legend_h = chart_legend::show(ui, LOSS_CHART, &entries, &mut self.hidden);
        let hidden = &self.hidden;
        let shown_series: Vec<(NamedCurve<'_>, (Color32, Dash), bool)> = series
            .into_iter()
            .zip(looks)
            .enumerate()
            .filter(|(_, (s, _))| !hidden.contains(&chart_legend::key(LOSS_CHART, &s.0)))
            .map(|(k, (s, look))| (s, look, k < current_series))
            .collect();
        let hover_series: Vec<NamedCurve<'_>> =
            shown_series.iter().map(|(s, _, _)| s.clone()).collect();
        // The stage names sit at the highest point drawn.
        let label_top = shown_series
            .iter()
            .flat_map(|(s, _, _)| s.1.iter().map(|p| p[1]))
            .filter(|v| !self.log_loss || *v > 0.0)
            .map(|v| if self.log_loss { v.log10() } else { v })
            .fold(f64::NEG_INFINITY, f64::max);
        let mut plot = Plot::new("loss-curves")
            .height((loss_h - legend_h).max(120.0))
            .x_axis_label("step")
            .y_axis_label("training loss")
            .label_formatter(|hover| {
                let x = match hover {
                    egui_plot::HoverPosition::NearDataPoint { position, .. }
                    | egui_plot::HoverPosition::Elsewhere { position } => position.x,
                };
                Some(hover_text(x, &hover_series))
            });
        let log = self.log_loss;
        if log {
            // Labels as short as the values need (0.5, 1, 2.5), never cut at the axis' edge.
            plot =
                plot.y_axis_formatter(|mark, _| super::curves::tick_label(10f64.powf(mark.value)));
        }
        let shown = plot.show(ui, |plot_ui| {
            stage_lines(plot_ui, run, Some(label_top));
            for ((name, raw, smooth), (colour, dash), own) in &shown_series {
                let smooth = on_axis(downsample(smooth, DISPLAY_BINS), log);
                if *own {
                    let raw = on_axis(downsample(raw, DISPLAY_BINS), log);
                    plot_ui.line(Line::new("", raw).color(colour.gamma_multiply(0.25)));
                    plot_ui.line(Line::new(name.clone(), smooth).color(*colour).width(2.0));
                } else {
                    // A compared run: its colour; its roles told apart by the dash.
                    plot_ui.line(
                        Line::new(name.clone(), smooth)
                            .color(*colour)
                            .style(dash.line_style())
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
                    ui.vertical(|ui| {
                        validation_loss_chart(ui, run, &overlays, lower, &mut self.hidden)
                    });
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
        let hidden = &mut self.hidden;
        ui.columns(2, |cols| {
            let dev_h = height - loss_h - 20.0;
            dev_accuracy_chart(&mut cols[0], run, &overlays, dev_h, hidden);
            learning_rate_chart(&mut cols[1], run, dev_h);
        });
        cmd
    }
}

/// Classifier runs: dev accuracy per role with a marker on each (sparse) evaluation, the
/// majority-class level, and the compared runs' roles in their colours and dashes.
fn dev_accuracy_chart(
    ui: &mut Ui,
    run: &RunView,
    overlays: &[(String, RunView)],
    height: f32,
    hidden: &mut BTreeSet<String>,
) {
    let series = eval_series(run, overlays, |v| &v.dev_accuracy, role_dash);
    let mut entries = eval_entries(&series);
    if run.majority_accuracy > 0.0 {
        entries.push(
            Entry::new("majority class", Color32::DARK_GRAY, Dash::Solid)
                .value(format!("{:.3}", run.majority_accuracy)),
        );
    }
    let legend_h = chart_legend::show(ui, DEV_CHART, &entries, hidden);
    let shown = |name: &str| !hidden.contains(&chart_legend::key(DEV_CHART, name));
    Plot::new("dev-accuracy")
        .height((height - legend_h).max(120.0))
        .x_axis_label("step")
        .y_axis_label("dev accuracy")
        .include_y(0.4)
        .include_y(1.0)
        .show(ui, |plot_ui| {
            stage_lines(plot_ui, run, None);
            if run.majority_accuracy > 0.0 && shown("majority class") {
                plot_ui.hline(
                    egui_plot::HLine::new("majority class", run.majority_accuracy)
                        .color(Color32::DARK_GRAY),
                );
            }
            draw_eval(plot_ui, &series, &shown, true);
        });
}

/// Decoder runs: validation loss per subnet with points at each evaluation, the teacher as a
/// reference line, and the overlaid runs' curves under their names.
fn validation_loss_chart(
    ui: &mut Ui,
    run: &RunView,
    overlays: &[(String, RunView)],
    height: f32,
    hidden: &mut BTreeSet<String>,
) {
    let teacher = run
        .teacher_val_loss
        .or_else(|| overlays.iter().find_map(|(_, v)| v.teacher_val_loss));
    let series = eval_series(run, overlays, |v| &v.val_loss, |_| Dash::Loose);
    let mut entries = eval_entries(&series);
    if let Some(t) = teacher {
        entries
            .push(Entry::new("teacher", Color32::DARK_GRAY, Dash::Solid).value(format!("{t:.3}")));
    }
    entries.extend(stage_entry(run));
    let legend_h = chart_legend::show(ui, VALIDATION_CHART, &entries, hidden);
    let shown = |name: &str| !hidden.contains(&chart_legend::key(VALIDATION_CHART, name));
    Plot::new("validation-loss")
        .height((height - legend_h).max(120.0))
        .include_y(teacher.map_or(0.0, |t| t - 0.3))
        .x_axis_label("step")
        .y_axis_label("validation loss (nats/token)")
        .show(ui, |plot_ui| {
            let top = series
                .iter()
                .flat_map(|(_, s, _, _)| s.iter().map(|p| p[1]))
                .chain(teacher)
                .fold(f64::NEG_INFINITY, f64::max);
            stage_lines(plot_ui, run, Some(top));
            if let Some(t) = teacher.filter(|_| shown("teacher")) {
                plot_ui.hline(egui_plot::HLine::new("teacher", t).color(Color32::DARK_GRAY));
            }
            draw_eval(plot_ui, &series, &shown, false);
        });
}

/// A series of evaluations as drawn: its name, points, colour and dash.
type EvalSeries<'a> = (String, &'a [[f64; 2]], Color32, Dash);

/// The open run's series of one evaluation (by role, solid) and each compared run's (in its
/// colour, `dash` of the role).
fn eval_series<'a>(
    run: &'a RunView,
    overlays: &'a [(String, RunView)],
    of: fn(&RunView) -> &std::collections::BTreeMap<String, Vec<[f64; 2]>>,
    dash: fn(&str) -> Dash,
) -> Vec<EvalSeries<'a>> {
    let mut series: Vec<EvalSeries<'a>> = of(run)
        .iter()
        .map(|(role, s)| (role.clone(), s.as_slice(), role_colour(role), Dash::Solid))
        .collect();
    for (i, (name, view)) in overlays.iter().enumerate() {
        for (role, s) in of(view) {
            series.push((
                format!("{name} · {role}"),
                s.as_slice(),
                overlay_colour(i),
                dash(role),
            ));
        }
    }
    series
}

/// The legend entries of evaluation series, each with its last value.
fn eval_entries(series: &[EvalSeries<'_>]) -> Vec<Entry> {
    series
        .iter()
        .map(|(name, s, colour, dash)| {
            let last = s.last().map_or(0.0, |p| p[1]);
            Entry::new(name.clone(), *colour, *dash).value(format!("{last:.3}"))
        })
        .collect()
}

/// Draws the shown evaluation series with a marker on each evaluation (they are sparse: a
/// single one shows); `thin_compared` draws compared runs thinner than the open one's.
fn draw_eval(
    plot_ui: &mut egui_plot::PlotUi,
    series: &[EvalSeries<'_>],
    shown: &dyn Fn(&str) -> bool,
    thin_compared: bool,
) {
    for (name, s, colour, dash) in series.iter().filter(|s| shown(&s.0)) {
        let thin = thin_compared && *dash != Dash::Solid;
        plot_ui.line(
            Line::new(name.clone(), s.to_vec())
                .color(*colour)
                .style(dash.line_style())
                .width(if thin { 1.5 } else { 2.0 }),
        );
        plot_ui.points(
            egui_plot::Points::new(name.clone(), s.to_vec())
                .color(*colour)
                .radius(if thin { 2.0 } else { 3.0 }),
        );
    }
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
            stage_lines(plot_ui, run, None);
            plot_ui.line(
                Line::new(
                    "learning rate",
                    downsample(&run.learning_rate, DISPLAY_BINS),
                )
                .width(1.5),
            );
        });
}
