//! The Runs tab: every run folder under the runs folder as a sortable table (name, kind,
//! preset, started, duration, status, best result, front size), with open, overlay and delete.

use super::commands::UiCommand;
use super::run_view::{format_duration, RunStatus, RunView};
use crate::eval::pareto::pareto_front;
use egui::Ui;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// What the table shows of one run folder.
#[derive(Debug, Clone)]
pub struct RunRow {
    pub name: String,
    pub dir: PathBuf,
    /// "classifier" or "decoder".
    pub kind: &'static str,
    /// The configuration's name (the preset it came from).
    pub preset: String,
    /// When the run folder was created (its configuration written).
    pub started: Option<SystemTime>,
    /// Time spent in training steps (from its logged step times; copies keep it).
    pub duration: Option<Duration>,
    pub status: String,
    /// Best dev accuracy (classifier, higher is better) or validation loss (decoder, lower).
    pub best: Option<f64>,
    /// Subnets on the (size, dev accuracy) front of the palette.
    pub front_size: usize,
    /// Why the folder could not be read, if it could not.
    pub error: Option<String>,
}

impl RunRow {
    /// Reads a run folder's configuration, events and palette.
    pub fn read(dir: &Path) -> Self {
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        let config = crate::train::config::RunConfig::load(&dir.join("config.ron")).ok();
        let started = std::fs::metadata(dir.join("config.ron"))
            .and_then(|m| m.modified())
            .ok();
        let mut row = Self {
            name,
            dir: dir.to_path_buf(),
            kind: if crate::train::kind::is_decoder_run(dir) {
                "decoder"
            } else {
                "classifier"
            },
            preset: config.as_ref().map(|c| c.name.clone()).unwrap_or_default(),
            started,
            duration: None,
            status: String::new(),
            best: None,
            front_size: 0,
            error: None,
        };
        match RunView::from_run_dir(dir) {
            Ok(view) => {
                row.status = status_word(&view);
                row.duration =
                    (view.train_seconds > 0.0).then(|| Duration::from_secs_f64(view.train_seconds));
                row.best = best_result(&view, row.kind == "decoder");
                let points: Vec<(f64, f64)> = view
                    .palette
                    .iter()
                    .map(|e| (e.params_total as f64, e.dev_accuracy))
                    .collect();
                row.front_size = pareto_front(&points).iter().filter(|&&on| on).count();
            }
            Err(e) => {
                row.status = "unreadable".into();
                row.error = Some(format!("{e:#}"));
            }
        }
        row
    }
}

/// The run's state in one word, from its replayed events.
fn status_word(view: &RunView) -> String {
    match &view.status {
        RunStatus::Finished => "finished".into(),
        _ if view.divergence.is_some() => "diverged".into(),
        RunStatus::Failed(_) => "failed".into(),
        _ if view.global_step == 0 => "not started".into(),
        _ => format!("stopped at {}/{}", view.global_step, view.total_steps),
    }
}

/// The best dev accuracy of any role, or the lowest validation loss of a decoder's students.
fn best_result(view: &RunView, decoder: bool) -> Option<f64> {
    let values = |series: &std::collections::BTreeMap<String, Vec<[f64; 2]>>| {
        series
            .values()
            .flatten()
            .map(|p| p[1])
            .filter(|v| v.is_finite())
            .collect::<Vec<f64>>()
    };
    if decoder {
        values(&view.val_loss).into_iter().reduce(f64::min)
    } else {
        values(&view.dev_accuracy).into_iter().reduce(f64::max)
    }
}

/// Columns the table sorts by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RunColumn {
    Name,
    Kind,
    Preset,
    #[default]
    Started,
    Duration,
    Status,
    Best,
    Front,
}

/// The tab's state: the rows of the last scan, the sort order, a deletion awaiting confirmation.
#[derive(Debug, Default)]
pub struct RunsBrowser {
    pub rows: Vec<RunRow>,
    pub sort: RunColumn,
    /// Sort descending (newest first by default).
    pub ascending: bool,
    /// The run whose deletion waits for the user's confirmation.
    pub confirm_delete: Option<PathBuf>,
    /// Up to two runs ticked for the side-by-side settings diff.
    pub diff: Vec<PathBuf>,
    /// The run being renamed and the name typed so far.
    pub renaming: Option<(PathBuf, String)>,
}

impl RunsBrowser {
    /// Reads every run folder (one with a `metrics.jsonl`) under `root`.
    pub fn scan(&mut self, root: &Path) {
        let dirs: Vec<PathBuf> = std::fs::read_dir(root)
            .map(|rd| {
                rd.filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.join("metrics.jsonl").is_file())
                    .collect()
            })
            .unwrap_or_default();
        self.rows = dirs.iter().map(|d| RunRow::read(d)).collect();
        self.sort_rows();
    }

    fn sort_rows(&mut self) {
        let key = self.sort;
        self.rows.sort_by(|a, b| {
            let ord = match key {
                RunColumn::Name => a.name.cmp(&b.name),
                RunColumn::Kind => a.kind.cmp(b.kind),
                RunColumn::Preset => a.preset.cmp(&b.preset),
                RunColumn::Started => a.started.cmp(&b.started),
                RunColumn::Duration => a.duration.cmp(&b.duration),
                RunColumn::Status => a.status.cmp(&b.status),
                RunColumn::Best => a
                    .best
                    .unwrap_or(f64::NAN)
                    .total_cmp(&b.best.unwrap_or(f64::NAN)),
                RunColumn::Front => a.front_size.cmp(&b.front_size),
            };
            let ord = if self.ascending { ord } else { ord.reverse() };
            // Ties (runs started in the same second) in name order, whatever the direction.
            ord.then_with(|| a.name.cmp(&b.name))
        });
    }

    /// Draws the table; returns what a click asks for. `overlaid` names the runs drawn over
    /// the current one's curves.
    pub fn ui(
        &mut self,
        ui: &mut Ui,
        root: &Path,
        overlaid: &[String],
        opened: Option<&Path>,
    ) -> Option<UiCommand> {
        let mut cmd = None;
        ui.horizontal(|ui| {
            ui.label(format!("{} runs in {}", self.rows.len(), root.display()));
            if ui
                .button("Rescan")
                .on_hover_text("Read the runs folder again")
                .clicked()
            {
                self.scan(root);
            }
        });
        if self.rows.is_empty() {
            ui.weak("No runs yet: a run appears here when it starts.");
            return None;
        }
        let headers = [
            (RunColumn::Name, "Run"),
            (RunColumn::Kind, "Kind"),
            (RunColumn::Preset, "Preset"),
            (RunColumn::Started, "Started"),
            (RunColumn::Duration, "Training time"),
            (RunColumn::Status, "Status"),
            (RunColumn::Best, "Best"),
            (RunColumn::Front, "Front"),
        ];
        // The table takes what it needs, at most 60 % of the height: the settings diff and the
        // opened run's settings show beneath it.
        egui::ScrollArea::both()
            .id_salt("runs-table")
            .auto_shrink([false, true])
            .max_height(ui.available_height() * 0.6)
            .show(ui, |ui| {
                egui::Grid::new("runs-grid")
                    .striped(true)
                    .num_columns(headers.len() + 2)
                    .show(ui, |ui| {
                        for (col, name) in headers {
                            let arrow = match (self.sort == col, self.ascending) {
                                (true, true) => " (asc)",
                                (true, false) => " (desc)",
                                (false, _) => "",
                            };
                            let tip = match col {
                                RunColumn::Best => "Best dev accuracy (classifier) or lowest validation loss (decoder)".to_string(),
                                RunColumn::Front => "Subnets on the palette's size–accuracy Pareto front".to_string(),
                                _ => format!("Sort by {name}"),
                            };
                            if ui.button(format!("{name}{arrow}")).on_hover_text(tip).clicked() {
                                self.ascending = self.sort == col && !self.ascending;
                                self.sort = col;
                                self.sort_rows();
                            }
                        }
                        ui.label("Overlay");
                        ui.label("Diff");
                        ui.label("");
                        ui.end_row();
                        for row in &self.rows {
                            let open = ui
                                .button(&row.name)
                                .on_hover_text(match &row.error {
                                    Some(e) => format!("Cannot read: {e}"),
                                    None => format!("Open {}: curves, palette, Try it and export", row.dir.display()),
                                });
                            if open.clicked() {
                                cmd = Some(UiCommand::OpenRun(row.dir.clone()));
                            }
                            ui.label(row.kind);
                            ui.label(&row.preset);
                            ui.label(row.started.map(local_time).unwrap_or_default());
                            ui.label(row.duration.map(format_duration).unwrap_or_default());
                            ui.label(&row.status);
                            ui.label(match (row.best, row.kind) {
                                (Some(v), "decoder") => format!("loss {v:.3}"),
                                (Some(v), _) => format!("dev {v:.4}"),
                                (None, _) => String::new(),
                            });
                            ui.label(row.front_size.to_string());
                            let mut shown = overlaid.contains(&row.name);
                            let overlay = ui
                                .checkbox(&mut shown, "")
                                .on_hover_text("Draw this run's curves over the current run's");
                            if overlay.changed() {
                                cmd = Some(UiCommand::Overlay(row.name.clone(), shown));
                            }
                            let mut ticked = self.diff.contains(&row.dir);
                            let diff = ui
                                .checkbox(&mut ticked, "")
                                .on_hover_text("Tick two runs to compare their settings");
                            if diff.changed() {
                                self.diff.retain(|d| d != &row.dir);
                                if ticked {
                                    self.diff.push(row.dir.clone());
                                    // The two most recently ticked.
                                    if self.diff.len() > 2 {
                                        self.diff.remove(0);
                                    }
                                }
                            }
                            // One narrow menu instead of two buttons: the table fits a 1500 px window.
                            ui.menu_button("Actions", |ui| {
                                if ui
                                    .button("Rename…")
                                    .on_hover_text("Give this run folder another name")
                                    .clicked()
                                {
                                    self.renaming = Some((row.dir.clone(), row.name.clone()));
                                    ui.close();
                                }
                                if ui
                                    .button("Delete…")
                                    .on_hover_text("Move this run folder to the runs folder's .trash (asks first)")
                                    .clicked()
                                {
                                    self.confirm_delete = Some(row.dir.clone());
                                    ui.close();
                                }
                            })
                            .response
                            .on_hover_text("Rename or delete this run");
                            ui.end_row();
                        }
                    });
            });
        if let [a, b] = self.diff.as_slice() {
            settings_diff(ui, a, b);
        }
        if let Some(dir) = opened {
            opened_settings(ui, dir);
        }
        if let Some(dir) = self.confirm_delete.clone() {
            cmd = confirm_delete(ui, &dir).or(cmd);
        }
        if self.renaming.is_some() {
            cmd = self.rename_dialog(ui).or(cmd);
        }
        cmd
    }

    /// The rename dialog: a name field, Rename and Cancel.
    fn rename_dialog(&mut self, ui: &Ui) -> Option<UiCommand> {
        let (dir, name) = self.renaming.as_mut()?;
        let mut cmd = None;
        let mut close = false;
        let modal = egui::Modal::new(ui.scope_id().with("rename-run")).show(ui.ctx(), |ui| {
            ui.heading("Rename this run");
            let l = ui.label("New name");
            let field = ui.text_edit_singleline(name).labelled_by(l.id);
            let entered = field.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
            ui.horizontal(|ui| {
                if ui.button("Rename").clicked() || entered {
                    cmd = Some(UiCommand::RenameRun(dir.clone(), name.trim().to_string()));
                }
                if ui.button("Cancel").clicked() {
                    close = true;
                }
            });
        });
        if close || cmd.is_some() || modal.should_close() {
            self.renaming = None;
        }
        cmd
    }
}

/// Renames a run folder within its parent; the new name must be a plain, unused folder name.
pub fn rename_run(dir: &Path, new_name: &str) -> anyhow::Result<PathBuf> {
    use anyhow::{bail, Context};
    let bad = new_name.is_empty()
        || new_name.starts_with('.')
        || new_name.contains(['/', '\\'])
        || new_name == "..";
    if bad {
        bail!("'{new_name}' is not a folder name (no slashes, not empty, not hidden)");
    }
    let parent = dir.parent().context("a run folder has a parent")?;
    let target = parent.join(new_name);
    if target.exists() {
        bail!("{}: already exists", target.display());
    }
    std::fs::rename(dir, &target)
        .with_context(|| format!("{}: cannot rename to {}", dir.display(), target.display()))?;
    Ok(target)
}

/// The shown run's own configuration as it was trained, read-only (the panel holds a copy to
/// start new runs from).
fn opened_settings(ui: &mut Ui, dir: &Path) {
    let path = dir.join("config.ron");
    let Ok(text) = crate::files::read_text(&path, "run settings") else {
        return;
    };
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    ui.separator();
    egui::CollapsingHeader::new(format!("Settings of {name} (read-only)"))
        .id_salt("opened-run-settings")
        .show(ui, |ui| {
            egui::ScrollArea::vertical()
                .id_salt("opened-run-settings-text")
                .max_height(240.0)
                .show(ui, |ui| {
                    ui.add(
                        egui::TextEdit::multiline(&mut text.as_str())
                            .code_editor()
                            .desired_width(f32::INFINITY),
                    );
                });
        });
}

/// The settings two runs differ in, side by side.
fn settings_diff(ui: &mut Ui, a: &Path, b: &Path) {
    use crate::train::config::RunConfig;
    let name = |p: &Path| {
        p.file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default()
    };
    ui.separator();
    ui.strong(format!("Settings: {} against {}", name(a), name(b)));
    let (ca, cb) = match (
        RunConfig::load(&a.join("config.ron")),
        RunConfig::load(&b.join("config.ron")),
    ) {
        (Ok(ca), Ok(cb)) => (ca, cb),
        (Err(e), _) | (_, Err(e)) => {
            ui.colored_label(ui.visuals().error_fg_color, format!("{e:#}"));
            return;
        }
    };
    let diff = super::config_diff::config_diff(&ca, &cb);
    if diff.is_empty() {
        ui.label("Same settings.");
        return;
    }
    egui::Grid::new("settings-diff")
        .striped(true)
        .show(ui, |ui| {
            ui.strong("setting");
            ui.strong(name(a));
            ui.strong(name(b));
            ui.end_row();
            for (setting, va, vb) in diff {
                ui.monospace(setting);
                ui.monospace(va);
                ui.monospace(vb);
                ui.end_row();
            }
        });
}

/// Asks before a run folder goes to the trash.
fn confirm_delete(ui: &Ui, dir: &Path) -> Option<UiCommand> {
    let mut cmd = None;
    let modal = egui::Modal::new(ui.scope_id().with("confirm-delete")).show(ui.ctx(), |ui| {
        ui.heading("Delete this run?");
        ui.label(format!(
            "{} moves to the runs folder's .trash (delete it there for good).",
            dir.display()
        ));
        ui.horizontal(|ui| {
            if ui.button("Move to trash").clicked() {
                cmd = Some(UiCommand::DeleteRun(dir.to_path_buf()));
            }
            if ui.button("Keep it").clicked() {
                cmd = Some(UiCommand::CancelDeleteRun);
            }
        });
    });
    if modal.should_close() && cmd.is_none() {
        cmd = Some(UiCommand::CancelDeleteRun);
    }
    cmd
}

/// `2026-11-30 14:05` in the local time zone.
fn local_time(t: SystemTime) -> String {
    chrono::DateTime::<chrono::Local>::from(t)
        .format("%Y-%m-%d %H:%M")
        .to_string()
}

/// Moves a run folder into `<runs folder>/.trash/` (a name already there gets a counter).
pub fn move_to_trash(dir: &Path) -> anyhow::Result<PathBuf> {
    use anyhow::Context;
    let parent = dir.parent().context("a run folder has a parent")?;
    let trash = parent.join(".trash");
    if trash
        .symlink_metadata()
        .is_ok_and(|m| m.file_type().is_symlink())
    {
        anyhow::bail!(
            "{}: is a symbolic link; runs are only moved into a real trash folder",
            crate::files::shown(&trash)
        );
    }
    std::fs::create_dir_all(&trash)
        .with_context(|| format!("{}: cannot create the trash folder", trash.display()))?;
    let name = dir.file_name().context("a run folder has a name")?;
    let mut target = trash.join(name);
    let mut n = 2;
    while target.exists() {
        target = trash.join(format!("{}-{n}", name.to_string_lossy()));
        n += 1;
    }
    std::fs::rename(dir, &target)
        .with_context(|| format!("{}: cannot move to {}", dir.display(), target.display()))?;
    Ok(target)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rename_takes_plain_unused_names_only() {
        let root = tempfile::tempdir().unwrap();
        let run = root.path().join("sentiment-quick-2026-11-30_12-00-00");
        std::fs::create_dir(&run).unwrap();
        std::fs::create_dir(root.path().join("taken")).unwrap();
        for bad in ["", ".hidden", "a/b", "..", "taken"] {
            assert!(rename_run(&run, bad).is_err(), "{bad:?} accepted");
        }
        assert!(run.is_dir(), "a refused rename moved the folder");
        let renamed = rename_run(&run, "gamma-sweep").unwrap();
        assert_eq!(renamed, root.path().join("gamma-sweep"));
        assert!(renamed.is_dir() && !run.exists());
        let trashed = move_to_trash(&renamed).unwrap();
        assert_eq!(trashed, root.path().join(".trash").join("gamma-sweep"));
    }
}
