//! A run the watchdog stopped: the error banner and its two ways out (fix the settings, resume
//! from the last good checkpoint with them).

use super::app::StudioApp;
use super::commands::UiCommand;
use super::run_view::Divergence;
use crate::train::config::RunConfig;
use crate::worker::StartRequest;
use anyhow::{bail, Context, Result};
use std::path::Path;

/// The red banner under the run bar; returns what its buttons ask for.
pub fn banner(ui: &mut egui::Ui, divergence: &Divergence, run_dir: &Path) -> Option<UiCommand> {
    let mut cmd = None;
    let error = ui.visuals().error_fg_color;
    egui::Frame::group(ui.style())
        .stroke(egui::Stroke::new(1.5, error))
        .show(ui, |ui| {
            ui.horizontal_wrapped(|ui| {
                ui.label(
                    egui::RichText::new("Training diverged:")
                        .strong()
                        .color(error),
                );
                ui.label(&divergence.reason);
            });
            ui.horizontal(|ui| {
                if ui
                    .button("Open settings")
                    .on_hover_text(
                        "Show this run's settings (stages' learning rates, warm-up, clipping) to \
                         change what made it diverge",
                    )
                    .clicked()
                {
                    cmd = Some(UiCommand::OpenRunSettings(run_dir.to_path_buf()));
                }
                match divergence.last_good_step {
                    Some(step) => {
                        if ui
                            .button(format!("Resume from step {step}"))
                            .on_hover_text(
                                "Continue from the last good checkpoint with the settings in the \
                                 panel (they replace the run's config.ron)",
                            )
                            .clicked()
                        {
                            cmd = Some(UiCommand::ResumeWithSettings(run_dir.to_path_buf()));
                        }
                    }
                    None => {
                        ui.label(
                            "No checkpoint was saved yet: change the settings and Start again.",
                        );
                    }
                }
            });
        });
    cmd
}

impl StudioApp {
    /// Puts the run's own settings in the panel and scrolls it to the stages.
    pub(super) fn open_run_settings(&mut self, run_dir: &Path) {
        match RunConfig::load(&run_dir.join("config.ron")) {
            Ok(config) => {
                if config != self.config {
                    self.set_config(config);
                    self.preset_path = None;
                    self.preset_config = None;
                }
                self.reveal_stages = true;
                self.notice = Some(
                    "change what made the run diverge, then resume: the run continues from its \
                     last good checkpoint with these settings"
                        .into(),
                );
            }
            Err(e) => self.notice = Some(format!("{e:#}")),
        }
    }

    /// Writes the panel's settings into the run (when they differ) and resumes it.
    pub(super) fn resume_with_settings(&mut self, run_dir: &Path) {
        if self.run.status.is_active() {
            return;
        }
        if !self.errors.is_empty() {
            self.notice = Some("fix the settings marked in the panel before resuming".into());
            return;
        }
        match apply_settings(&self.config, run_dir) {
            Ok(changed) => {
                if changed {
                    self.notice = Some(format!(
                        "resuming {} with the panel's settings",
                        run_dir.display()
                    ));
                }
                self.begin(StartRequest::Resume {
                    run_dir: run_dir.to_path_buf(),
                });
            }
            Err(e) => self.notice = Some(format!("{e:#}")),
        }
    }
}

/// Replaces the run's `config.ron` with `config` when it differs in training settings only
/// (teacher and data must stay: the checkpoints belong to them); true when it was rewritten.
fn apply_settings(config: &RunConfig, run_dir: &Path) -> Result<bool> {
    // Never under a process that is training the run (the resume after this takes it again).
    let _lock = crate::files::lock::RunLock::acquire(run_dir)?;
    let path = run_dir.join("config.ron");
    let stored = RunConfig::load(&path)?;
    if stored == *config {
        return Ok(false);
    }
    if stored.teacher != config.teacher || stored.data != config.data {
        bail!(
            "{}: the panel's teacher or data differ from this run's; use Open settings to \
             edit the run's own settings",
            path.display()
        );
    }
    config
        .save(&path)
        .with_context(|| format!("{}: cannot apply the new settings", path.display()))?;
    Ok(true)
}
