//! Training tab: loss curves with stage marks and smoothing, dev accuracy, learning rate.

use super::app::StudioApp;
use super::curves::{debiased_ema, downsample};
use super::run_view::stage_name;
use egui::{Color32, Ui};
use egui_plot::{Legend, Line, Plot, VLine};

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

fn stage_lines(plot_ui: &mut egui_plot::PlotUi, app: &StudioApp) {
    for &(x, stage) in &app.run.stage_marks {
        plot_ui.vline(
            VLine::new(stage_name(stage), x)
                .color(Color32::GRAY)
                .width(1.0),
        );
    }
}

/// Draws the tab.
pub fn show(ui: &mut Ui, app: &mut StudioApp) {
    ui.horizontal(|ui| {
        let l = ui.label("Smoothing");
        ui.add(egui::Slider::new(&mut app.smoothing, 0.0..=0.99))
            .labelled_by(l.id)
            .on_hover_text("Debiased exponential moving average over the full series; the raw curve is drawn faintly beneath");
    });
    if app.run.losses.is_empty() {
        ui.weak("No steps yet — press Start (Ctrl+Enter) to train; curves fill live.");
    }
    let height = (ui.available_height() - 40.0).max(240.0);
    let loss_h = height * 0.55;
    Plot::new("loss-curves")
        .height(loss_h)
        .legend(Legend::default())
        .x_axis_label("step")
        .y_axis_label("training loss")
        .show(ui, |plot_ui| {
            stage_lines(plot_ui, app);
            for (role, series) in &app.run.losses {
                let colour = role_colour(role);
                let raw = downsample(series, DISPLAY_BINS);
                plot_ui.line(
                    Line::new(format!("{role} (raw)"), raw).color(colour.gamma_multiply(0.25)),
                );
                let smooth = downsample(&debiased_ema(series, app.smoothing), DISPLAY_BINS);
                let last = series.last().map_or(0.0, |p| p[1]);
                plot_ui.line(
                    Line::new(format!("{role}: {last:.4}"), smooth)
                        .color(colour)
                        .width(2.0),
                );
            }
        });
    ui.columns(2, |cols| {
        Plot::new("dev-accuracy")
            .height(height - loss_h - 20.0)
            .legend(Legend::default().position(egui_plot::Corner::LeftTop))
            .x_axis_label("step")
            .y_axis_label("dev accuracy")
            .include_y(0.4)
            .include_y(1.05)
            .show(&mut cols[0], |plot_ui| {
                stage_lines(plot_ui, app);
                if app.run.majority_accuracy > 0.0 {
                    plot_ui.hline(
                        egui_plot::HLine::new("majority class", app.run.majority_accuracy)
                            .color(Color32::DARK_GRAY),
                    );
                }
                for (role, series) in &app.run.dev_accuracy {
                    let last = series.last().map_or(0.0, |p| p[1]);
                    plot_ui.line(
                        Line::new(format!("{role}: {last:.3}"), series.clone())
                            .color(role_colour(role))
                            .width(2.0),
                    );
                }
            });
        Plot::new("learning-rate")
            .height(height - loss_h - 20.0)
            .x_axis_label("step")
            .y_axis_label("learning rate")
            .show(&mut cols[1], |plot_ui| {
                stage_lines(plot_ui, app);
                plot_ui.line(
                    Line::new(
                        "learning rate",
                        downsample(&app.run.learning_rate, DISPLAY_BINS),
                    )
                    .width(1.5),
                );
            });
    });
}
