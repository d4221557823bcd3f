//! The Runs tab: every run folder under the runs folder as a sortable table (name, kind,
//! preset, started, duration, status, best result, front size), with open, overlay and delete.

use super::commands::UiCommand;
use super::run_view::{format_duration, RunStatus, RunView};
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
    /// Best dev accuracy (classifier, higher is better) or validation loss (decoder, lower):
    /// the palette's best subnet, else the training-time evaluations' best.
    pub best: Option<f64>,
    /// The best comes from the palette (else from evaluations during training).
    pub best_from_palette: bool,
    /// Subnets on the palette's (parameters, quality) front.
    pub front_size: usize,
    /// Why the folder could not be read, if it could not.
    pub error: Option<String>,
    /// It stopped after a checkpoint and no process holds it: Resume continues it.
    pub resumable: bool,
    /// The process training or measuring it now, if any.
    pub writer: Option<u32>,
}

impl RunRow {
    /// Reads a run folder's configuration, events and palette.
    pub fn read(dir: &Path) -> Self {
        let view = RunView::from_run_dir(dir).map_err(|e| format!("{e:#}"));
        Self::of(dir, view.as_ref(), crate::files::lock::live_writer_of(dir))
    }

    /// The row of a run folder whose events made `view` (or could not be read); `writer` is
    /// the process training or measuring it now, if any.
    pub fn of(dir: &Path, view: Result<&RunView, &String>, writer: Option<u32>) -> Self {
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        let config = crate::train::config::RunConfig::load(&dir.join("config.ron")).ok();
        // When the run's files were created (birth time where the filesystem keeps it; a
        // resume with new settings rewrites config.ron, so its modification time is not it).
        let started = ["metrics.jsonl", "config.ron"]
            .iter()
            .filter_map(|f| std::fs::metadata(dir.join(f)).ok())
            .filter_map(|m| m.created().or_else(|_| m.modified()).ok())
            .min();
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
            best_from_palette: false,
            front_size: 0,
            error: None,
            resumable: false,
            writer,
        };
        match view {
            Ok(view) => {
                row.status = status_word(view, writer);
                row.resumable = writer.is_none()
                    && view.divergence.is_none()
                    && view.checkpoint_step.is_some()
                    && !matches!(view.status, RunStatus::Finished)
                    && !dir.join("supernet.safetensors").is_file();
                row.duration =
                    (view.train_seconds > 0.0).then(|| Duration::from_secs_f64(view.train_seconds));
                let decoder = row.kind == "decoder";
                let palette_best = palette_best(view, decoder);
                row.best_from_palette = palette_best.is_some();
                row.best = palette_best.or_else(|| best_result(view, decoder));
                row.front_size = if decoder {
                    crate::eval::decoder::decoder_fronts(&view.decoder_entries).0
                } else {
                    crate::eval::palette::fronts(&view.palette).0
                }
                .iter()
                .filter(|&&on| on)
                .count();
            }
            Err(e) => {
                row.status = "unreadable".into();
                row.error = Some(e.clone());
            }
        }
        row
    }
}

/// The run's state in a few words, from its replayed events and the process writing it.
fn status_word(view: &RunView, writer: Option<u32>) -> String {
    let this_process = writer == Some(std::process::id());
    match (&view.status, writer) {
        (RunStatus::MeasuringPalette, Some(_)) if !this_process => {
            return "measuring (other process)".into()
        }
        (_, Some(_)) if !this_process => {
            return format!(
                "training (other process) {}/{}",
                view.global_step, view.total_steps
            )
        }
        (s, Some(_)) if s.is_active() || *s == RunStatus::MeasuringPalette => {
            return "training (this window)".into()
        }
        _ => {}
    }
    match &view.status {
        RunStatus::Finished => "finished".into(),
        _ if view.divergence.is_some() => "diverged".into(),
        RunStatus::Failed(_) => "failed".into(),
        _ if view.global_step == 0 => "not started".into(),
        _ => format!("stopped at {}/{}", view.global_step, view.total_steps),
    }
}

/// The palette's best measured subnet: highest dev accuracy, or a decoder's lowest validation
/// loss (the teacher is a reference, not a subnet).
fn palette_best(view: &RunView, decoder: bool) -> Option<f64> {
    if decoder {
        view.decoder_entries
            .iter()
            .filter(|e| e.role != "teacher" && e.val_loss.is_finite())
            .map(|e| e.val_loss)
            .reduce(f64::min)
    } else {
        view.palette
            .iter()
            .filter(|e| e.role != "teacher" && e.dev_accuracy.is_finite())
            .map(|e| e.dev_accuracy)
            .reduce(f64::max)
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

/// The run folders under `root` (those with a `metrics.jsonl`), sorted.
pub fn run_dirs(root: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.join("metrics.jsonl").is_file())
                .collect()
        })
        .unwrap_or_default();
    dirs.sort();
    dirs
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
        let dirs = run_dirs(root);
        self.rows = dirs.iter().map(|d| RunRow::read(d)).collect();
        // Runs ticked for the diff that are gone (renamed or deleted elsewhere) are unticked.
        self.diff.retain(|d| dirs.contains(d));
        self.sort_rows();
    }

    /// Puts a row read again (by the runs watcher) in place of the old one, or adds it.
    pub fn upsert(&mut self, row: RunRow) {
        match self.rows.iter_mut().find(|r| r.dir == row.dir) {
            Some(old) => *old = row,
            None => self.rows.push(row),
        }
        self.sort_rows();
    }

    /// A run folder now under another name: the settings diff follows it.
    pub fn renamed(&mut self, from: &Path, to: &Path) {
        for d in &mut self.diff {
            if d == from {
                *d = to.to_path_buf();
            }
        }
    }

    /// Drops the row of a folder that is gone.
    pub fn remove(&mut self, dir: &Path) {
        self.rows.retain(|r| r.dir != dir);
        self.diff.retain(|d| d != dir);
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
                // Accuracies and losses are not one scale: by kind, then better first (a
                // loss counts as its negative), runs without a figure last.
                RunColumn::Best => {
                    let merit = |r: &RunRow| match (r.best, r.kind) {
                        (Some(v), "decoder") => -v,
                        (Some(v), _) => v,
                        (None, _) => f64::NEG_INFINITY,
                    };
                    a.kind.cmp(b.kind).then(merit(a).total_cmp(&merit(b)))
                }
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
        // What a user acts on first (status, result, overlay, actions), then the details: in a
        // narrow window the table scrolls sideways over the details only.
        let headers = [
            (RunColumn::Name, "Run"),
            (RunColumn::Status, "Status"),
            (RunColumn::Best, "Best"),
            (RunColumn::Front, "Front"),
        ];
        let details = [
            (RunColumn::Kind, "Kind"),
            (RunColumn::Preset, "Preset"),
            (RunColumn::Started, "Started"),
            (RunColumn::Duration, "Training time"),
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
                    .num_columns(headers.len() + details.len() + 3)
                    .show(ui, |ui| {
                        let mut header = |ui: &mut Ui, col: RunColumn, name: &str| {
                            let arrow = match (self.sort == col, self.ascending) {
                                (true, true) => " (asc)",
                                (true, false) => " (desc)",
                                (false, _) => "",
                            };
                            let tip = match col {
                                RunColumn::Best => "The palette's best subnet: dev accuracy (classifier) or validation loss (decoder); sorts by kind, best first".to_string(),
                                RunColumn::Front => "Subnets on the palette's size–quality Pareto front".to_string(),
                                RunColumn::Started => "When the run's files were created".to_string(),
                                _ => format!("Sort by {name}"),
                            };
                            if ui.button(format!("{name}{arrow}")).on_hover_text(tip).clicked() {
                                self.ascending = self.sort == col && !self.ascending;
                                self.sort = col;
                                self.sort_rows();
                            }
                        };
                        for (col, name) in headers {
                            header(ui, col, name);
                        }
                        ui.label("Overlay");
                        ui.label("Diff");
                        ui.label("");
                        for (col, name) in details {
                            header(ui, col, name);
                        }
                        ui.end_row();
                        for row in &self.rows {
                            let asked = run_row(ui, row, overlaid, &mut self.diff, &mut self.renaming, &mut self.confirm_delete);
                            if asked.is_some() {
                                cmd = asked;
                            }
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

/// Shortens a long run name for its cell (the whole name is the button's hover).
fn short_name(name: &str) -> String {
    const MAX: usize = 34;
    if name.chars().count() <= MAX {
        return name.to_string();
    }
    let head: String = name.chars().take(MAX - 1).collect();
    format!("{head}…")
}

/// One run's row: open, status, best, front, overlay, diff, actions, then the details.
fn run_row(
    ui: &mut Ui,
    row: &RunRow,
    overlaid: &[String],
    diff: &mut Vec<PathBuf>,
    renaming: &mut Option<(PathBuf, String)>,
    confirm_delete: &mut Option<PathBuf>,
) -> Option<UiCommand> {
    let mut cmd = None;
    let open = ui
        .button(short_name(&row.name))
        .on_hover_text(match &row.error {
            Some(e) => format!("Cannot read: {e}"),
            None => format!(
                "Open {}: curves, palette, Try it and export",
                row.dir.display()
            ),
        });
    if open.clicked() {
        cmd = Some(UiCommand::OpenRun(row.dir.clone()));
    }
    ui.label(&row.status);
    let during = if row.best_from_palette {
        ""
    } else {
        " (training eval)"
    };
    ui.label(match (row.best, row.kind) {
        (Some(v), "decoder") => format!("loss {v:.3}{during}"),
        (Some(v), _) => format!("dev {v:.4}{during}"),
        (None, _) => String::new(),
    })
    .on_hover_text(if row.best_from_palette {
        "The palette's best measured subnet"
    } else {
        "No palette yet: the best evaluation during training"
    });
    ui.label(row.front_size.to_string());
    let mut shown = overlaid.contains(&row.name);
    let overlay = ui
        .checkbox(&mut shown, "")
        .on_hover_text("Draw this run's curves over the current run's");
    if overlay.changed() {
        cmd = Some(UiCommand::Overlay(row.name.clone(), shown));
    }
    let mut ticked = diff.contains(&row.dir);
    let tick = ui
        .checkbox(&mut ticked, "")
        .on_hover_text("Tick two runs to compare their settings");
    if tick.changed() {
        diff.retain(|d| d != &row.dir);
        if ticked {
            diff.push(row.dir.clone());
            // The two most recently ticked.
            if diff.len() > 2 {
                diff.remove(0);
            }
        }
    }
    // One narrow menu instead of three buttons.
    ui.menu_button("Actions", |ui| {
        let resume = ui
            .add_enabled(row.resumable, egui::Button::new("Resume"))
            .on_hover_text("Continue this run from its last checkpoint (its own settings)")
            .on_disabled_hover_text(
                "Only a stopped run with a checkpoint, held by no process, resumes",
            );
        if resume.clicked() {
            cmd = Some(UiCommand::ResumeRun(row.dir.clone()));
            ui.close();
        }
        if ui
            .button("Rename…")
            .on_hover_text("Give this run folder another name")
            .clicked()
        {
            *renaming = Some((row.dir.clone(), row.name.clone()));
            ui.close();
        }
        if ui
            .button("Delete…")
            .on_hover_text("Move this run folder to the runs folder's .trash (asks first)")
            .clicked()
        {
            *confirm_delete = Some(row.dir.clone());
            ui.close();
        }
    })
    .response
    .on_hover_text("Resume, rename or delete this run");
    ui.label(row.kind);
    ui.label(&row.preset);
    ui.label(row.started.map(local_time).unwrap_or_default());
    ui.label(row.duration.map(format_duration).unwrap_or_default());
    ui.end_row();
    cmd
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
