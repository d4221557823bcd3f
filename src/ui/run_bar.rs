//! Top bar: Start, Pause/Resume, Stop, stage, progress, elapsed time and ETA, status.

use super::app::{StudioApp, UiCommand};
use super::run_view::{format_duration, stage_name, RunStatus};
use egui::{Key, KeyboardShortcut, Modifiers, Ui};

const START: KeyboardShortcut = KeyboardShortcut::new(Modifiers::COMMAND, Key::Enter);

/// Keyboard shortcuts (Ctrl+Enter start, Space pause/resume, Escape stop) as commands.
pub fn shortcuts(ui: &mut Ui, app: &StudioApp) -> Option<UiCommand> {
    // Space must not fire while a text field has focus.
    let typing = ui.ctx().memory(|m| m.focused().is_some());
    ui.input_mut(|i| {
        if i.consume_shortcut(&START) {
            Some(UiCommand::Start)
        } else if !typing
            && app.run.status.is_active()
            && i.consume_key(Modifiers::NONE, Key::Space)
        {
            Some(UiCommand::PauseOrResume)
        } else if app.run.status.is_active() && i.consume_key(Modifiers::NONE, Key::Escape) {
            Some(UiCommand::Stop)
        } else {
            None
        }
    })
}

/// Status line text.
pub fn status_text(app: &StudioApp) -> String {
    match &app.run.status {
        RunStatus::Idle if app.errors.is_empty() => "Ready".into(),
        RunStatus::Idle => format!("{} setting(s) to fix before Start", app.errors.len()),
        RunStatus::Starting => "Loading teacher and data…".into(),
        RunStatus::Running => "Training".into(),
        RunStatus::Paused => "Paused".into(),
        RunStatus::Stopping => "Stopping at the next step…".into(),
        RunStatus::MeasuringPalette => format!(
            "Measuring palette {}/{}",
            app.run.palette.len(),
            app.run.palette_expected
        ),
        RunStatus::Finished => "Finished".into(),
        RunStatus::Stopped => "Stopped (resume continues from the checkpoint)".into(),
        RunStatus::Failed(e) => format!("Failed: {e}"),
    }
}

/// Draws the run bar.
pub fn show(ui: &mut Ui, app: &mut StudioApp) -> Option<UiCommand> {
    let mut cmd = None;
    let active = app.run.status.is_active();
    ui.horizontal(|ui| {
        let start = ui.add_enabled(app.can_start(), egui::Button::new("Start"));
        let start = if let Some((field, why)) = app.errors.iter().next() {
            start.on_disabled_hover_text(format!("Fix {field}: {why}"))
        } else {
            start.on_hover_text("Start a new MLFS run with this configuration (Ctrl+Enter)")
        };
        if start.clicked() {
            cmd = Some(UiCommand::Start);
        }
        let label = if app.run.status == RunStatus::Paused {
            "Resume"
        } else {
            "Pause"
        };
        let can_pause = matches!(app.run.status, RunStatus::Running | RunStatus::Paused);
        if ui
            .add_enabled(can_pause, egui::Button::new(label))
            .on_hover_text("Pause or resume training after the current step (Space)")
            .clicked()
        {
            cmd = Some(UiCommand::PauseOrResume);
        }
        let can_stop = active || app.run.status == RunStatus::MeasuringPalette;
        if ui
            .add_enabled(can_stop, egui::Button::new("Stop"))
            .on_hover_text(
                "Stop after the current step; the checkpoint is kept for resume (Escape)",
            )
            .clicked()
        {
            cmd = Some(UiCommand::Stop);
        }
        ui.separator();
        let r = &app.run;
        if r.total_steps > 0 {
            ui.label(stage_name(r.stage));
            ui.label(format!("step {}/{}", r.global_step, r.total_steps));
        }
        let bar = egui::ProgressBar::new(r.progress())
            .desired_width(180.0)
            .show_percentage();
        ui.add(bar).on_hover_text("Progress of the whole run");
        if r.started_at.is_some() {
            ui.label(format!("elapsed {}", format_duration(r.elapsed())));
        }
        if let Some(eta) = r.eta() {
            ui.label(format!("ETA {}", format_duration(eta)));
        }
        ui.separator();
        let status = status_text(app);
        let colour = match app.run.status {
            RunStatus::Failed(_) => ui.visuals().error_fg_color,
            _ => ui.visuals().text_color(),
        };
        ui.label(egui::RichText::new(status).color(colour));
    });
    cmd
}
