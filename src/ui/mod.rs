//! The studio window (eframe/egui): configure, run and watch MLFS, compare subnets, export.

pub mod app;
pub mod config_panel;
pub mod curves;
pub mod decoder_panel;
pub mod dialogs;
pub mod log_panel;
pub mod overlays;
pub mod pareto_tab;
pub mod run_bar;
pub mod run_view;
pub mod training_tab;
pub mod try_it;
pub mod validation;

use anyhow::{anyhow, Result};
use app::{StudioApp, Tab, UiCommand};
use std::path::PathBuf;

const KEY_PRESET: &str = "mlfs.last_preset";
const KEY_DARK: &str = "mlfs.dark";
const KEY_UNFINISHED: &str = "mlfs.unfinished_run";

impl StudioApp {
    /// The whole window for one frame (also what the UI tests drive).
    pub fn show(&mut self, ui: &mut egui::Ui) {
        self.poll();
        let mut commands: Vec<UiCommand> = Vec::new();
        commands.extend(run_bar::shortcuts(ui, self));
        egui::Panel::top("run-bar").show(ui, |ui| {
            ui.horizontal(|ui| {
                ui.heading("MLFS Studio");
                let theme = if self.dark {
                    "Light theme"
                } else {
                    "Dark theme"
                };
                if ui
                    .button(theme)
                    .on_hover_text("Switch between light and dark theme")
                    .clicked()
                {
                    self.dark = !self.dark;
                }
            });
            commands.extend(run_bar::show(ui, self));
            if let Some(dir) = self.resume_offer.clone() {
                ui.horizontal(|ui| {
                    ui.label(format!("An unfinished run was left in {}.", dir.display()));
                    if ui
                        .button("Resume it")
                        .on_hover_text("Continue from its last complete checkpoint")
                        .clicked()
                    {
                        commands.push(UiCommand::ResumeRun(dir.clone()));
                    }
                    if ui.button("Dismiss").clicked() {
                        self.resume_offer = None;
                    }
                });
            }
        });
        egui::Panel::bottom("log-panel")
            .resizable(true)
            .default_size(110.0)
            .show(ui, |ui| {
                egui::CollapsingHeader::new("Log")
                    .default_open(self.log_open)
                    .show(ui, |ui| log_panel::show(ui, self));
            });
        egui::Panel::left("config-panel")
            .resizable(true)
            .default_size(330.0)
            .show(ui, |ui| {
                commands.extend(config_panel::show(ui, self));
            });
        egui::CentralPanel::default().show(ui, |ui| {
            ui.horizontal(|ui| {
                ui.selectable_value(&mut self.tab, Tab::Training, "Training")
                    .on_hover_text("Loss, dev accuracy and learning-rate curves");
                ui.selectable_value(&mut self.tab, Tab::Pareto, "Pareto")
                    .on_hover_text("Size and latency against accuracy for every subnet");
                ui.selectable_value(&mut self.tab, Tab::TryIt, "Try it")
                    .on_hover_text("Run a trained subnet on your own input");
            });
            ui.separator();
            match self.tab {
                Tab::Training => training_tab::show(ui, self),
                Tab::Pareto => commands.extend(pareto_tab::show(ui, self)),
                Tab::TryIt => commands.extend(try_it::show(ui, self)),
            }
        });
        for c in commands {
            self.handle(c);
        }
        ui.ctx().set_visuals(if self.dark {
            egui::Visuals::dark()
        } else {
            egui::Visuals::light()
        });
        if self.run.status.is_active() {
            // Elapsed time ticks even between events.
            ui.ctx()
                .request_repaint_after(std::time::Duration::from_millis(500));
        }
    }
}

struct StudioWindow {
    app: StudioApp,
}

impl eframe::App for StudioWindow {
    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        self.app.show(ui);
    }

    fn save(&mut self, storage: &mut dyn eframe::Storage) {
        if let Some(p) = &self.app.preset_path {
            storage.set_string(KEY_PRESET, p.display().to_string());
        }
        storage.set_string(KEY_DARK, self.app.dark.to_string());
        let unfinished = match (&self.app.run.run_dir, &self.app.run.status) {
            (Some(dir), s) if s.is_active() || *s == run_view::RunStatus::Stopped => {
                dir.display().to_string()
            }
            _ => String::new(),
        };
        storage.set_string(KEY_UNFINISHED, unfinished);
    }

    fn on_exit(&mut self, _gl: Option<&eframe::glow::Context>) {
        // Dropping the handle stops the run at the next step and keeps its checkpoint.
        self.app.handle.take();
    }
}

/// Opens the studio window on the shipped default: teacher, data and `sentiment-quick` loaded.
pub fn run_studio(open_run: Option<PathBuf>) -> Result<()> {
    let options = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_inner_size([1400.0, 900.0])
            .with_title("MLFS Studio"),
        ..Default::default()
    };
    eframe::run_native(
        "MLFS Studio",
        options,
        Box::new(|cc| {
            let wake_ctx = cc.egui_ctx.clone();
            let wake: std::sync::Arc<dyn Fn() + Send + Sync> =
                std::sync::Arc::new(move || wake_ctx.request_repaint());
            let mut dialogs = dialogs::RfdDialogs::default();
            dialogs.wake = Some(wake.clone());
            let default_preset = crate::train::config::RunConfig::resolve(std::path::Path::new(
                "presets/sentiment-quick.ron",
            ));
            let stored = |key: &str| {
                cc.storage
                    .and_then(|s| s.get_string(key))
                    .filter(|s| !s.is_empty())
            };
            let preset = stored(KEY_PRESET)
                .map(PathBuf::from)
                .filter(|p| p.is_file())
                .unwrap_or(default_preset);
            let mut app =
                StudioApp::new(Default::default(), Box::new(dialogs), PathBuf::from("runs"));
            app.wake = Some(wake);
            app.load_preset(&preset);
            app.dark = stored(KEY_DARK).is_none_or(|d| d == "true");
            app.resume_offer = stored(KEY_UNFINISHED).map(PathBuf::from).filter(|d| {
                d.join("checkpoints").is_dir() && !d.join("supernet.safetensors").is_file()
            });
            if let Some(dir) = &open_run {
                app.open_run(dir);
                app.tab = Tab::Pareto;
            }
            Ok(Box::new(StudioWindow { app }))
        }),
    )
    .map_err(|e| anyhow!("cannot open the studio window: {e}"))
}
