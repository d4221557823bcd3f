//! The studio window (eframe/egui): configure, run and watch MLFS, compare subnets, export.

pub mod app;
pub mod chart_legend;
pub mod commands;
pub mod config_diff;
pub mod config_panel;
pub mod curves;
pub mod decoder_panel;
pub mod device_picker;
pub mod dialogs;
pub mod divergence;
pub mod export_state;
pub mod jobs;
pub mod layer_chart;
pub mod log_panel;
pub mod overlays;
pub mod palette_view;
pub mod pareto_chart;
pub mod pareto_tab;
pub mod pareto_table;
pub mod run_actions;
pub mod run_bar;
pub mod run_view;
pub mod runs_browser;
pub mod runs_watch;
pub mod search_panel;
pub mod subnet_columns;
pub mod training_tab;
pub mod try_it;
pub mod validation;

use anyhow::{anyhow, Result};
use app::{StudioApp, Tab};
use commands::UiCommand;
use config_panel::ConfigForm;
use jobs::Jobs;
use std::path::PathBuf;

const KEY_PRESET: &str = "mlfs.last_preset";
const KEY_DARK: &str = "mlfs.dark";
const KEY_UNFINISHED: &str = "mlfs.unfinished_run";

impl StudioApp {
    /// The whole window for one frame (also what the UI tests drive).
    pub fn show(&mut self, ui: &mut egui::Ui) {
        let ctx = ui.ctx().clone();
        self.watch_runs(move || ctx.request_repaint());
        self.poll();
        let mut commands: Vec<UiCommand> = Vec::new();
        commands.extend(run_bar::shortcuts(ui, &self.run));
        let mut settings_open = self
            .settings_open
            .unwrap_or_else(|| ui.ctx().content_rect().width() >= 1100.0);
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
                let label = if settings_open {
                    "Hide settings"
                } else {
                    "Show settings"
                };
                if ui
                    .button(label)
                    .on_hover_text("The settings panel on the left (hidden by default in windows narrower than 1100 points)")
                    .clicked()
                {
                    self.settings_open = Some(!settings_open);
                }
            });
            let can_start = self.can_start();
            commands.extend(run_bar::show(ui, &self.run, &self.errors, can_start));
            if let (Some(divergence), Some(dir)) = (&self.run.divergence, &self.run.run_dir) {
                let stopped = !self.run.status.is_active();
                if stopped {
                    commands.extend(divergence::banner(ui, divergence, dir));
                }
            }
            if self.confirm_reevaluation {
                commands.extend(confirm_reevaluation(ui, self.run.palette.len()));
            }
            if let Some(path) = self.confirm_preset.clone() {
                commands.extend(confirm_preset(ui, &path));
            }
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
                    .default_open(self.log.open)
                    .show(ui, |ui| {
                        self.log.ui(ui, &self.run.logs, self.notice.as_deref())
                    });
            });
        // At most 420 points: a long path or a decoder preset's wide fields wrap or scroll
        // inside it rather than widening it for good.
        egui::Panel::left("config-panel")
            .resizable(true)
            .default_size(330.0)
            .max_size(420.0)
            .show_collapsible(ui, &mut settings_open, |ui| {
                // Edits during a run would change nothing: the panel shows the run's settings.
                let running = self.run.status.is_active();
                if running {
                    ui.weak("The running run's settings (read-only until it ends).");
                }
                let preset_modified = self.preset_modified();
                ui.add_enabled_ui(!running, |ui| {
                    let mut form = ConfigForm {
                        config: &mut self.config,
                        space_text: &mut self.space_text,
                        students_text: &mut self.students_text,
                        errors: &self.errors,
                        teacher: &self.teacher,
                        presets: &self.presets,
                        preset_path: self.preset_path.as_deref(),
                        preset_modified,
                        reveal_stages: &mut self.reveal_stages,
                        parallel_gpus: &mut self.parallel_gpus,
                        gpus: match &self.gpu_list {
                            Some(list) => list.as_slice(),
                            None => device_picker::found_gpus(),
                        },
                    };
                    let edit = config_panel::show(ui, &mut form);
                    commands.extend(edit.command);
                    if edit.changed {
                        self.revalidate();
                    }
                });
            });
        let dragged_shut = !settings_open && self.settings_open != Some(false);
        if dragged_shut && ui.ctx().content_rect().width() >= 1100.0 {
            // Dragged closed by its edge in a wide window: it stays closed.
            self.settings_open = Some(false);
        }
        egui::CentralPanel::default().show(ui, |ui| {
            ui.horizontal(|ui| {
                ui.selectable_value(&mut self.tab, Tab::Training, "Training")
                    .on_hover_text("Loss, dev accuracy and learning-rate curves");
                ui.selectable_value(&mut self.tab, Tab::Pareto, "Pareto")
                    .on_hover_text("Size and latency against accuracy for every subnet");
                ui.selectable_value(&mut self.tab, Tab::TryIt, "Try it")
                    .on_hover_text("Run a trained subnet on your own input");
                let runs = ui
                    .selectable_value(&mut self.tab, Tab::Runs, "Runs")
                    .on_hover_text("Every run of the runs folder: open, overlay, delete");
                if runs.clicked() {
                    // Read the folder when the tab opens, not every frame.
                    self.runs.scan(&self.runs_root);
                }
            });
            ui.separator();
            if self.tab == Tab::Pareto {
                self.search_section(ui);
            }
            let selection = self.selection.as_deref();
            // The hovered subnet's layer chart compares against the shown settings' teacher.
            self.pareto.teacher = self.teacher.as_ref().ok().map(|t| t.shape);
            match self.tab {
                Tab::Training => commands.extend(self.training.ui(
                    ui,
                    &self.run,
                    &mut self.overlays,
                    &self.runs_root,
                    self.config.is_decoder(),
                )),
                // Decoder runs have no palette: their measurements take the Pareto tab's place.
                Tab::Pareto if self.config.is_decoder() || !self.run.decoder_entries.is_empty() => {
                    commands.extend(self.decoder.ui(
                        ui,
                        &self.run,
                        selection,
                        &self.export,
                        &mut self.pareto,
                    ))
                }
                Tab::Pareto => {
                    // Runs ticked for comparison (Training or Runs tab) draw their fronts too.
                    let current = self.run.run_dir.as_deref();
                    let compared: Vec<(&str, &[crate::train::protocol::PaletteEntry])> = self
                        .overlays
                        .shown(current)
                        .filter(|(_, v)| !v.palette.is_empty())
                        .map(|(name, v)| (name, v.palette.as_slice()))
                        .collect();
                    let shown = (selection, &self.export);
                    commands.extend(self.pareto.ui(ui, &self.run, shown.0, shown.1, &compared))
                }
                Tab::TryIt => {
                    let decoder = self.config.is_decoder() || !self.run.val_loss.is_empty();
                    let choices: Vec<String> = if self.run.decoder_entries.is_empty() {
                        self.run.palette.iter().map(|e| e.subnet.clone()).collect()
                    } else {
                        (self.run.decoder_entries.iter())
                            .filter(|e| e.role != "teacher")
                            .map(|e| e.subnet.clone())
                            .collect()
                    };
                    commands.extend(self.try_it.ui(
                        ui,
                        self.run.run_dir.as_deref(),
                        selection,
                        &choices,
                        decoder,
                        &self.jobs,
                    ));
                }
                Tab::Runs => {
                    let overlaid: Vec<String> = self
                        .overlays
                        .runs
                        .iter()
                        .filter(|r| r.shown)
                        .map(|r| r.name.clone())
                        .collect();
                    let opened = self.run.run_dir.as_deref();
                    commands.extend(self.runs.ui(ui, &self.runs_root, &overlaid, opened));
                }
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
        let ctx = ui.ctx().clone();
        if ctx.input(|i| i.viewport().close_requested()) && !self.app.may_close() {
            // Training stops at the next step and saves its checkpoint; the window says so and
            // closes when the trainer is done.
            ctx.send_viewport_cmd(egui::ViewportCommand::CancelClose);
        }
        self.app.show(ui);
        if self.app.closing && self.app.handle.is_none() {
            ctx.send_viewport_cmd(egui::ViewportCommand::Close);
        }
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
            // egui's small text (9 points) is too small for the log, paths and the teacher's
            // summary on a laptop screen.
            cc.egui_ctx.all_styles_mut(|style| {
                style
                    .text_styles
                    .insert(egui::TextStyle::Small, egui::FontId::proportional(11.5));
            });
            let wake_ctx = cc.egui_ctx.clone();
            let wake: jobs::Wake = std::sync::Arc::new(move || wake_ctx.request_repaint());
            let jobs = Jobs::new(Some(wake));
            let dialogs = dialogs::RfdDialogs::new(jobs.clone());
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
            app.jobs = jobs;
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

/// Asks before a preset replaces settings edited since the last one was loaded.
fn confirm_preset(ui: &egui::Ui, path: &std::path::Path) -> Option<UiCommand> {
    let mut cmd = None;
    let name = path
        .file_stem()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_default();
    let modal = egui::Modal::new(ui.scope_id().with("confirm-preset")).show(ui.ctx(), |ui| {
        ui.heading("Drop your edits?");
        ui.label(format!(
            "The settings were edited since their preset was loaded. Loading {name} replaces              them; Save preset as… first keeps them."
        ));
        ui.horizontal(|ui| {
            if ui.button(format!("Drop edits and load {name}")).clicked() {
                cmd = Some(UiCommand::LoadPresetConfirmed(path.to_path_buf()));
            }
            if ui.button("Keep editing").clicked() {
                cmd = Some(UiCommand::CancelLoadPreset);
            }
        });
    });
    if modal.should_close() && cmd.is_none() {
        cmd = Some(UiCommand::CancelLoadPreset);
    }
    cmd
}

/// Asks before a palette is measured again: rows are replaced as subnets are measured.
fn confirm_reevaluation(ui: &egui::Ui, rows: usize) -> Option<UiCommand> {
    let mut cmd = None;
    let modal = egui::Modal::new(ui.scope_id().with("confirm-reevaluation")).show(ui.ctx(), |ui| {
        ui.heading("Measure the palette again?");
        ui.label(format!(
            "Each subnet measured replaces its row of the {rows} in palette.csv. Stopping part-way \
             keeps the earlier rows of the subnets not measured yet."
        ));
        ui.horizontal(|ui| {
            if ui.button("Measure again").clicked() {
                cmd = Some(UiCommand::EvaluatePaletteConfirmed);
            }
            if ui.button("Cancel").clicked() {
                cmd = Some(UiCommand::CancelEvaluatePalette);
            }
        });
    });
    if modal.should_close() && cmd.is_none() {
        cmd = Some(UiCommand::CancelEvaluatePalette);
    }
    cmd
}

impl StudioApp {
    /// The Search section above the Pareto tab's charts; a search's new palette rows are read
    /// back into the open run, its candidates handed to the charts.
    fn search_section(&mut self, ui: &mut egui::Ui) {
        let dir = self.run.run_dir.clone();
        if self.run.status.is_active() && !self.search.is_running() {
            ui.weak("Search under a budget: available when the run has finished training and measuring.");
            return;
        }
        let budget = search_panel::budget_of(&self.pareto.budget, self.pareto.size_in_mb);
        self.search.ui(ui, dir.as_deref(), budget, &self.jobs);
        if std::mem::take(&mut self.search.palette_changed) {
            self.run.reload_palettes();
        }
        let shown = self.search.candidates_of(dir.as_deref());
        if shown.len() != self.pareto.search.len() {
            self.pareto.search = shown.to_vec();
        }
    }
}
