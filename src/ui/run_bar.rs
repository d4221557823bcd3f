//! Top bar: Start, Pause/Resume, Stop, stage, progress, elapsed time and ETA, status.

use super::commands::UiCommand;
use super::run_view::{format_duration, stage_name, RunStatus, RunView};
use egui::{Key, KeyboardShortcut, Modifiers, Ui};
use std::collections::BTreeMap;

const START: KeyboardShortcut = KeyboardShortcut::new(Modifiers::COMMAND, Key::Enter);

/// Keyboard shortcuts (Ctrl+Enter start, Space pause/resume, Escape stop) as commands.
pub fn shortcuts(ui: &mut Ui, run: &RunView) -> Option<UiCommand> {
    // Space must not fire while a text field has focus.
    let typing = ui.ctx().memory(|m| m.focused().is_some());
    ui.input_mut(|i| {
        if i.consume_shortcut(&START) {
            Some(UiCommand::Start)
        } else if !typing && run.status.is_active() && i.consume_key(Modifiers::NONE, Key::Space) {
            Some(UiCommand::PauseOrResume)
        } else if (run.status.is_active() || run.status == RunStatus::MeasuringPalette)
            && i.consume_key(Modifiers::NONE, Key::Escape)
        {
            Some(UiCommand::Stop)
        } else {
            None
        }
    })
}

/// Status line text; `errors` are the settings to fix before Start.
pub fn status_text(run: &RunView, errors: &BTreeMap<String, String>) -> String {
    if let Some(pid) = run.other_writer {
        if run.status == RunStatus::MeasuringPalette {
            return format!(
                "Measuring its palette in another process (pid {pid}): {} of {} subnets",
                run.palette_done(),
                run.palette_expected
            );
        }
        if run.total_steps > 0 && run.global_step >= run.total_steps {
            return format!(
                "Trained in another process (pid {pid}), which is finishing it (palette, files)"
            );
        }
        return format!(
            "Training in another process (pid {pid}): step {}/{}, curves follow its files",
            run.global_step, run.total_steps
        );
    }
    match &run.status {
        RunStatus::Idle if errors.is_empty() => "Ready".into(),
        RunStatus::Idle => format!("{} setting(s) to fix before Start", errors.len()),
        RunStatus::Starting => "Loading teacher and data…".into(),
        RunStatus::Running => "Training".into(),
        RunStatus::Paused => "Paused".into(),
        RunStatus::Stopping => "Stopping at the next step…".into(),
        RunStatus::MeasuringPalette => {
            let mut text = format!(
                "Measuring palette: {} of {} subnets",
                run.palette_done(),
                run.palette_expected
            );
            if let Some(eta) = run.palette_eta() {
                text.push_str(&format!(" · ETA {}", format_duration(eta)));
            }
            text.push_str(" (Stop keeps the rows measured)");
            text
        }
        RunStatus::Finished => "Finished".into(),
        RunStatus::Stopped if run.checkpoint_step.is_some() => {
            "Stopped (Resume run continues from the checkpoint)".into()
        }
        RunStatus::Stopped => "Stopped before its first checkpoint".into(),
        RunStatus::Failed(e) => format!("Failed: {e}"),
    }
}

/// Draws the run bar for `run`; Start is enabled by `can_start`, else explained by `errors`.
pub fn show(
    ui: &mut Ui,
    run: &RunView,
    errors: &BTreeMap<String, String>,
    can_start: bool,
) -> Option<UiCommand> {
    let mut cmd = None;
    let active = run.status.is_active();
    ui.horizontal(|ui| {
        let start = ui.add_enabled(can_start, egui::Button::new("Start"));
        let start = if !errors.is_empty() {
            // Every problem, not the first of them: each is also marked at its field.
            let list: Vec<String> = errors
                .iter()
                .map(|(field, why)| format!("• {field}: {why}"))
                .collect();
            start.on_disabled_hover_text(format!(
                "Fix {} first (marked in the settings panel):\n{}",
                if errors.len() == 1 {
                    "this setting".to_string()
                } else {
                    format!("these {} settings", errors.len())
                },
                list.join("\n")
            ))
        } else {
            start.on_hover_text("Start a new MLFS run with this configuration (Ctrl+Enter)")
        };
        if start.clicked() {
            cmd = Some(UiCommand::Start);
        }
        let label = if run.status == RunStatus::Paused {
            "Resume"
        } else {
            "Pause"
        };
        let can_pause = matches!(run.status, RunStatus::Running | RunStatus::Paused);
        if ui
            .add_enabled(can_pause, egui::Button::new(label))
            .on_hover_text("Pause or resume training after the current step (Space)")
            .clicked()
        {
            cmd = Some(UiCommand::PauseOrResume);
        }
        if let (true, Some(dir), Some(step)) = (run.resumable(), &run.run_dir, run.checkpoint_step)
        {
            if ui
                .button("Resume run")
                .on_hover_text(format!(
                    "Continue {} from its checkpoint at step {step} (its own settings; history kept)",
                    dir.display()
                ))
                .clicked()
            {
                cmd = Some(UiCommand::ResumeRun(dir.clone()));
            }
        }
        let can_stop = active || run.status == RunStatus::MeasuringPalette;
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
        let r = run;
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
            ui.label(format!("ETA {}", format_duration(eta)))
                .on_hover_text(
                    "Training time left at the recent seconds per trained subnet, counting the \
                 subnets each later stage trains per step (the palette's measurement comes after)",
                );
        }
        if r.world_size > 1 {
            ui.separator();
            ui.label(world_text(r)).on_hover_text(
                "Data parallel: each rank trains the same subnets on its share of every batch; \
                 memory is each device's in use before the last step (rank order)",
            );
        }
        ui.separator();
        let status = status_text(run, errors);
        let colour = match run.status {
            RunStatus::Failed(_) => ui.visuals().error_fg_color,
            _ => ui.visuals().text_color(),
        };
        ui.label(egui::RichText::new(status).color(colour));
    });
    cmd
}

/// "2 GPUs · memory 12.3 | 11.9 GB": the ranks of a data-parallel run and each one's memory.
pub fn world_text(r: &RunView) -> String {
    let unit = if r.placement.starts_with("cuda") {
        "GPUs"
    } else {
        "CPU ranks"
    };
    let mut text = format!("{} {unit}", r.world_size);
    if !r.devices_mb.is_empty() {
        let each: Vec<String> = r
            .devices_mb
            .iter()
            .map(|mb| format!("{:.1}", mb / 1000.0))
            .collect();
        text.push_str(&format!(" · memory {} GB", each.join(" | ")));
    }
    text
}
