//! The studio's state and the one place that turns user commands into engine commands.

use super::commands::UiCommand;
use super::decoder_panel::DecoderPanel;
use super::dialogs::{DialogPurpose, Dialogs};
use super::export_state::ExportState;
use super::jobs::{Job, Jobs};
use super::log_panel::LogPanel;
use super::overlays::Overlays;
use super::pareto_tab::ParetoTab;
use super::run_view::{RunStatus, RunView};
use super::runs_browser::RunsBrowser;
use super::training_tab::TrainingTab;
use super::try_it::TryIt;
use super::validation::{field_errors, parse_list, TeacherSummary};
use crate::export::decoder_subnet::ExportFormat;
use crate::train::config::RunConfig;
use crate::train::protocol::TrainCmd;
use crate::worker::{spawn, StartRequest, WorkerHandle};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The main area's tabs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tab {
    /// Loss, dev accuracy and learning-rate curves.
    Training,
    /// The subnets' costs against accuracy (a decoder run's measurements instead).
    Pareto,
    /// A trained subnet on the user's own input.
    TryIt,
    /// The runs folder: open, compare and delete runs.
    Runs,
}

/// Everything the window shows: state shared by several panels, and each panel's own state.
/// Panels read it and send [`UiCommand`]s; [`StudioApp::handle`] interprets them.
pub struct StudioApp {
    /// The configuration being edited (and started).
    pub config: RunConfig,
    /// The preset the configuration came from, if any.
    pub preset_path: Option<PathBuf>,
    /// The settings as that preset file holds them (edits since then make it "modified").
    pub preset_config: Option<RunConfig>,
    /// A preset to load once the user agreed to drop the edits made since the last one.
    pub confirm_preset: Option<PathBuf>,
    /// The presets offered in the menu.
    pub presets: Vec<PathBuf>,
    /// The teacher's summary, or why it could not be read.
    pub teacher: Result<TeacherSummary, String>,
    /// Editable text of the search-space lists (depths, heads, ffn, hidden).
    pub space_text: [String; 4],
    /// Editable decoder students, one subnet spec per line.
    pub students_text: String,
    /// Search-space lists that do not parse, and why.
    pub list_errors: BTreeMap<String, String>,
    /// Every invalid field and why (Start stays disabled while any is left).
    pub errors: BTreeMap<String, String>,
    /// The shown run, built from the trainer's events or a run folder.
    pub run: RunView,
    /// The trainer thread, while one runs.
    pub handle: Option<WorkerHandle>,
    /// Folder new runs are created in.
    pub runs_root: PathBuf,
    /// The main area's tab.
    pub tab: Tab,
    /// The selected subnet: one selection for the charts, tables, "Try it" and export.
    pub selection: Option<String>,
    /// The export's state (shown by the Pareto tab and the decoder panel).
    pub export: ExportState,
    export_job: Option<Job<Vec<String>>>,
    /// Dark (else light) theme.
    pub dark: bool,
    /// File dialogs (native in the app, scripted in tests).
    pub dialogs: Box<dyn Dialogs>,
    /// An unfinished run the user may resume.
    pub resume_offer: Option<PathBuf>,
    /// Scroll the configuration panel to the stages' settings on the next frame.
    pub reveal_stages: bool,
    /// GPUs ticked for data parallel (two or more: Start and Resume launch one process each).
    pub parallel_gpus: Vec<usize>,
    /// The GPUs the device picker offers; `None`: this machine's (tests set their own).
    pub gpu_list: Option<Vec<crate::model::device::GpuInfo>>,
    /// Ask before measuring a run's palette again.
    pub confirm_reevaluation: bool,
    /// The window was asked to close while work ran: it closes once the trainer has stopped.
    pub closing: bool,
    /// The last message for the user (loaded preset, opened run, an error).
    pub notice: Option<String>,
    /// Runs one-shot background work (export, "Try it") and wakes the window when it is done.
    pub jobs: Jobs,
    /// Finished runs that can be drawn over the current curves.
    pub overlays: Overlays,
    /// The Training tab's settings.
    pub training: TrainingTab,
    /// The Pareto tab's sort order, size unit and budgets.
    pub pareto: ParetoTab,
    /// The decoder panel's settings (export format).
    pub decoder: DecoderPanel,
    /// The "Try it" box.
    pub try_it: TryIt,
    /// The log panel's settings.
    pub log: LogPanel,
    /// The Runs tab.
    pub runs: RunsBrowser,
    /// The Pareto tab's search under a budget.
    pub search: super::search_panel::SearchPanel,
    /// Follows the runs folder (started with the first frame, which brings the repaint hook).
    pub watcher: Option<super::runs_watch::RunsWatcher>,
    /// The settings panel shown (`None`: shown when the window is wide enough for it and the
    /// charts, 1100 points and more).
    pub settings_open: Option<bool>,
}

/// The space lists as editable text.
fn space_text(config: &RunConfig) -> [String; 4] {
    let join = |v: &[usize]| {
        v.iter()
            .map(|x| x.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    [
        join(&config.space.depths),
        join(&config.space.heads),
        join(&config.space.ffn),
        join(&config.space.hidden),
    ]
}

/// A decoder configuration's students, one per line.
fn students_text(config: &RunConfig) -> String {
    config
        .lm
        .as_ref()
        .map(|lm| lm.students.join("\n"))
        .unwrap_or_default()
}

/// `*.ron` files of a presets folder, sorted.
pub fn list_presets(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == "ron"))
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

impl StudioApp {
    /// A studio on `config`, with the given dialogs and folder for new runs.
    pub fn new(config: RunConfig, dialogs: Box<dyn Dialogs>, runs_root: PathBuf) -> Self {
        let teacher = TeacherSummary::read(&config.teacher);
        let presets_dir = RunConfig::resolve(Path::new("presets"));
        let mut app = Self {
            space_text: space_text(&config),
            students_text: students_text(&config),
            config,
            preset_path: None,
            preset_config: None,
            confirm_preset: None,
            presets: list_presets(&presets_dir),
            teacher,
            list_errors: BTreeMap::new(),
            errors: BTreeMap::new(),
            run: RunView::default(),
            handle: None,
            runs_root,
            tab: Tab::Training,
            selection: None,
            export: ExportState::Idle,
            export_job: None,
            dark: true,
            dialogs,
            resume_offer: None,
            reveal_stages: false,
            parallel_gpus: Vec::new(),
            gpu_list: None,
            confirm_reevaluation: false,
            closing: false,
            notice: None,
            jobs: Jobs::default(),
            overlays: Overlays::default(),
            training: TrainingTab::default(),
            pareto: ParetoTab::default(),
            decoder: DecoderPanel::default(),
            try_it: TryIt::default(),
            log: LogPanel::default(),
            runs: RunsBrowser::default(),
            search: Default::default(),
            watcher: None,
            settings_open: None,
        };
        app.overlays.scan(&app.runs_root);
        app.revalidate();
        app
    }

    /// Recomputes field errors after any edit.
    pub fn revalidate(&mut self) {
        let names = ["space.depths", "space.heads", "space.ffn", "space.hidden"];
        self.list_errors.clear();
        for (i, name) in names.iter().enumerate() {
            match parse_list(&self.space_text[i]) {
                Ok(v) => match i {
                    0 => self.config.space.depths = v,
                    1 => self.config.space.heads = v,
                    2 => self.config.space.ffn = v,
                    _ => self.config.space.hidden = v,
                },
                Err(e) => {
                    self.list_errors.insert(name.to_string(), e);
                }
            }
        }
        if let Some(lm) = self.config.lm.as_mut() {
            lm.students = self
                .students_text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(String::from)
                .collect();
        }
        self.errors = field_errors(&self.config, &self.teacher, &self.list_errors);
    }

    /// Re-reads the teacher summary (after its folder changed).
    pub fn reload_teacher(&mut self) {
        self.teacher = TeacherSummary::read(&self.config.teacher);
        self.revalidate();
    }

    /// Shows `config` in the panel (its list fields as text) and validates it.
    pub fn set_config(&mut self, config: RunConfig) {
        self.space_text = space_text(&config);
        self.students_text = students_text(&config);
        self.config = config;
        self.reload_teacher();
    }

    /// Replaces the configuration with a preset file.
    pub fn load_preset(&mut self, path: &Path) {
        match RunConfig::load(path) {
            Ok(config) => {
                self.preset_config = Some(config.clone());
                self.set_config(config);
                self.preset_path = Some(path.to_path_buf());
                self.notice = Some(format!("loaded preset {}", path.display()));
            }
            Err(e) => self.notice = Some(format!("{e:#}")),
        }
    }

    /// True when the window may close now; otherwise stops the work in progress (a checkpoint
    /// is kept) and says that the window closes when it has stopped.
    pub fn may_close(&mut self) -> bool {
        if self.handle.is_none() {
            return true;
        }
        if !self.closing {
            self.closing = true;
            self.handle(UiCommand::Stop);
            self.notice = Some("stopping: saving a checkpoint, then closing the window…".into());
        }
        false
    }

    /// The settings differ from the preset they were loaded from (or saved as).
    pub fn preset_modified(&self) -> bool {
        self.preset_config
            .as_ref()
            .is_some_and(|p| *p != self.config)
    }

    /// True when Start may be pressed.
    pub fn can_start(&self) -> bool {
        self.errors.is_empty()
            && !self.run.status.is_active()
            && self.run.status != RunStatus::MeasuringPalette
    }

    /// Follows the runs folder from now on (again, when it changed); `wake` repaints.
    pub fn watch_runs(&mut self, wake: impl Fn() + Send + 'static) {
        if self
            .watcher
            .as_ref()
            .is_some_and(|w| w.root == self.runs_root)
        {
            return;
        }
        self.watcher = Some(super::runs_watch::RunsWatcher::start(
            self.runs_root.clone(),
            std::time::Duration::from_secs(1),
            wake,
        ));
    }

    /// Takes the runs watcher's news: rows of the Runs tab, and new lines of the opened run or
    /// a compared one when another process writes it.
    fn poll_runs(&mut self) {
        use super::runs_watch::RunsUpdate;
        let Some(watcher) = &self.watcher else {
            return;
        };
        let own = std::process::id();
        for update in watcher.drain() {
            match update {
                RunsUpdate::Row(row) => {
                    if self.run.run_dir.as_deref() == Some(row.dir.as_path())
                        && self.handle.is_none()
                    {
                        self.run.other_writer = row.writer.filter(|&p| p != own);
                        if self.run.other_writer.is_none() && self.run.status.is_active() {
                            // Its writer is gone without a last word: interrupted.
                            self.run.status = RunStatus::Stopped;
                        }
                    }
                    self.overlays.offer(&row.dir);
                    self.runs.upsert(*row);
                }
                RunsUpdate::Gone(dir) => self.runs.remove(&dir),
                RunsUpdate::Events {
                    dir,
                    from,
                    events,
                    writer,
                } => {
                    let opened = self.run.run_dir.as_deref() == Some(dir.as_path());
                    if opened && self.handle.is_none() {
                        self.run.other_writer = writer.filter(|&p| p != own);
                    }
                    // A view this window's trainer fed has no offset: never followed.
                    let followed =
                        opened && self.handle.is_none() && self.run.metrics_offset.is_some();
                    if followed && !self.run.follow(from, &events) {
                        if let Ok(view) = RunView::from_run_dir(&dir) {
                            let writer = self.run.other_writer;
                            self.run = view;
                            self.run.other_writer = writer;
                        }
                    }
                    self.overlays.follow(&dir, from, &events);
                }
                RunsUpdate::PaletteChanged(dir) => {
                    if self.run.run_dir.as_deref() == Some(dir.as_path()) && self.handle.is_none() {
                        self.run.reload_palettes();
                    }
                }
            }
        }
    }

    /// Drains trainer events, dialog answers and the export's result (never blocks).
    pub fn poll(&mut self) {
        self.poll_runs();
        if let Some(h) = &self.handle {
            let events: Vec<_> = h.events.try_iter().collect();
            for e in events {
                self.run.apply(e);
            }
            if h.is_finished() && h.events.is_empty() {
                // The thread is gone; a run that never said so ended abnormally.
                if self.run.status.is_active() || self.run.status == RunStatus::MeasuringPalette {
                    if self.run.status == RunStatus::MeasuringPalette {
                        self.run.status = RunStatus::Finished;
                    } else {
                        self.run.status =
                            RunStatus::Failed("the trainer stopped without a result".into());
                    }
                }
                self.handle = None;
            }
        }
        while let Some((purpose, answer)) = self.dialogs.poll() {
            match answer {
                Ok(path) => self.on_dialog(purpose, path),
                Err(e) => self.notice = Some(format!("the file dialog failed: {e}")),
            }
        }
        if let Some(result) = self.export_job.as_mut().and_then(Job::try_take) {
            let folder = match &self.export {
                ExportState::Running { folder, .. } => folder.clone(),
                _ => PathBuf::new(),
            };
            self.export = match result {
                Ok(files) => ExportState::Done { folder, files },
                Err(e) => ExportState::Failed(format!("{e:#}")),
            };
            self.export_job = None;
        }
    }

    fn on_dialog(&mut self, purpose: DialogPurpose, answer: Option<PathBuf>) {
        // A cancelled dialog is not an error: nothing changes.
        let Some(path) = answer else { return };
        match purpose {
            DialogPurpose::ExportFolder if self.is_decoder_run() => self.start_decoder_export(path),
            DialogPurpose::ExportFolder => self.start_export(path),
            DialogPurpose::ExportGguf => self.start_decoder_export(path),
            DialogPurpose::OpenPreset => self.handle(UiCommand::LoadPreset(path)),
            DialogPurpose::SavePreset => {
                // The preset is called what its file is: runs made from it carry that name.
                let path = with_extension(&path, "ron");
                let mut config = self.config.clone();
                if let Some(stem) = path.file_stem() {
                    config.name = stem.to_string_lossy().to_string();
                }
                match config.save(&path) {
                    Ok(()) => {
                        self.config = config.clone();
                        self.preset_config = Some(config);
                        self.preset_path = Some(path.clone());
                        self.presets = list_presets(&RunConfig::resolve(Path::new("presets")));
                        self.notice = Some(format!("saved preset {}", path.display()));
                    }
                    Err(e) => self.notice = Some(format!("{e:#}")),
                }
            }
            DialogPurpose::RunFolder => self.open_run(&path),
            DialogPurpose::SavePaletteCsv => {
                let written = match self.is_decoder_run() {
                    true => crate::eval::decoder::write_csv(&path, &self.run.decoder_entries),
                    false => crate::eval::palette::write_csv(&path, &self.run.palette),
                };
                self.report_saved("the palette table", written.map(|()| path));
            }
            DialogPurpose::SaveChart(cost, svg) => {
                let saved = self.save_chart(&path, cost, svg);
                self.report_saved("the chart", saved);
            }
            DialogPurpose::SaveLossChart(svg) => {
                let saved = self.save_loss_chart(&path, svg);
                self.report_saved("the chart", saved);
            }
            DialogPurpose::SaveCurvesCsv => {
                let text = self.run.curves_csv();
                let written = crate::files::write_atomic(&path, text.as_bytes());
                self.report_saved("the curves", written.map(|()| path));
            }
            DialogPurpose::TeacherFolder | DialogPurpose::TeacherFile => {
                self.config.teacher = path;
                self.reload_teacher();
            }
            DialogPurpose::TrainFile => self.config.data.train = path,
            DialogPurpose::DevFile => self.config.data.dev = path,
            DialogPurpose::TestFile => self.config.data.test = path,
        }
        self.revalidate();
    }

    /// Draws the shown run's Pareto chart (with the compared runs' fronts) into a file; the
    /// extension is added when the name lacks it.
    fn save_chart(
        &self,
        path: &Path,
        cost: super::palette_view::Cost,
        svg: bool,
    ) -> anyhow::Result<PathBuf> {
        use crate::eval::figure::{pareto_figure, FigureCost, FigureMarks, FigureSeries};
        let path = with_extension(path, if svg { "svg" } else { "png" });
        let name = |dir: Option<&Path>| {
            dir.and_then(|d| d.file_name())
                .map_or("this run".to_string(), |n| n.to_string_lossy().to_string())
        };
        let current = name(self.run.run_dir.as_deref());
        let axis = match cost {
            super::palette_view::Cost::Latency => FigureCost::Latency,
            super::palette_view::Cost::Size if self.pareto.size_in_mb => FigureCost::SizeMb,
            super::palette_view::Cost::Size => FigureCost::Params,
        };
        if self.is_decoder_run() {
            // The palette's subnets; the teacher is a reference, not on any front.
            let subnets: Vec<_> = (self.run.decoder_entries.iter())
                .filter(|e| e.role != "teacher")
                .cloned()
                .collect();
            let series = [FigureSeries {
                name: &current,
                entries: &subnets,
            }];
            let teacher = (self.run.decoder_entries.iter())
                .find(|e| e.role == "teacher")
                .map(|t| ("teacher", t.val_loss));
            let marks = FigureMarks {
                reference: teacher,
                ..self.figure_marks(cost)
            };
            pareto_figure(
                &path,
                &series,
                axis,
                "Pareto front (validation loss)",
                marks,
            )?;
            return Ok(path);
        }
        let mut series = vec![FigureSeries {
            name: &current,
            entries: &self.run.palette,
        }];
        for (other, view) in self.overlays.shown(self.run.run_dir.as_deref()) {
            if !view.palette.is_empty() {
                series.push(FigureSeries {
                    name: other,
                    entries: &view.palette,
                });
            }
        }
        let marks = self.figure_marks(cost);
        pareto_figure(&path, &series, axis, "Pareto fronts (dev accuracy)", marks)?;
        Ok(path)
    }

    /// The budget on `cost`'s axis and the selection, as the chart on screen shows them.
    fn figure_marks(
        &self,
        cost: super::palette_view::Cost,
    ) -> crate::eval::figure::FigureMarks<'_> {
        let budget = match cost {
            super::palette_view::Cost::Latency => self.pareto.budget.latency_ms,
            super::palette_view::Cost::Size => self.pareto.budget.size,
        };
        crate::eval::figure::FigureMarks {
            reference: None,
            budget,
            selected: self.selection.as_deref(),
        }
    }

    /// Says where `what` was saved, or why it was not.
    fn report_saved(&mut self, what: &str, saved: anyhow::Result<PathBuf>) {
        self.notice = Some(match saved {
            Ok(path) => format!("saved {what} to {}", path.display()),
            Err(e) => format!("{e:#}"),
        });
    }

    /// Draws the smoothed training losses (the compared runs' too) into a PNG or SVG file.
    fn save_loss_chart(&self, path: &Path, svg: bool) -> anyhow::Result<PathBuf> {
        use crate::eval::figure::{curves_figure, CurveSeries};
        let path = with_extension(path, if svg { "svg" } else { "png" });
        let smoothing = self.training.smoothing;
        let smooth = |s: &Vec<[f64; 2]>| super::curves::debiased_ema(s, smoothing);
        let mut curves: Vec<(String, Vec<[f64; 2]>)> = self
            .run
            .losses
            .iter()
            .map(|(role, s)| (role.clone(), smooth(s)))
            .collect();
        for (name, view) in self.overlays.shown(self.run.run_dir.as_deref()) {
            for (role, s) in &view.losses {
                curves.push((format!("{name} · {role}"), smooth(s)));
            }
        }
        let series: Vec<CurveSeries<'_>> = curves
            .iter()
            .map(|(name, points)| CurveSeries { name, points })
            .collect();
        let title = format!("Training loss (smoothing {smoothing:.2})");
        curves_figure(&path, &series, "training loss", &title)?;
        Ok(path)
    }

    /// Shows a finished or stopped run from its folder (curves, palette), ready to export.
    pub fn open_run(&mut self, dir: &Path) {
        if self.run.status.is_active() {
            self.notice = Some("stop the current run before opening another".into());
            return;
        }
        match RunView::from_run_dir(dir) {
            Ok(view) => {
                if let Ok(config) = RunConfig::load(&dir.join("config.ron")) {
                    self.set_config(config);
                    self.preset_path = None;
                    self.preset_config = None;
                }
                self.run = view;
                // A run another process trains: its curves follow the file from here.
                self.run.other_writer = crate::files::lock::live_writer_of(dir)
                    .filter(|&pid| pid != std::process::id());
                self.selection = None;
                self.export = ExportState::Idle;
                self.notice = Some(format!("opened run {}", dir.display()));
            }
            Err(e) => self.notice = Some(format!("{e:#}")),
        }
    }

    /// `runs/<name>-<local date and time>` (`sentiment-quick-2026-11-30_14-05-09`), with a
    /// counter when that folder exists.
    fn new_run_dir(&self) -> PathBuf {
        let stamp = chrono::Local::now().format("%Y-%m-%d_%H-%M-%S");
        let name: String = self
            .config
            .name
            .chars()
            .map(|c| {
                if c.is_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let base = self.runs_root.join(format!("{name}-{stamp}"));
        let mut dir = base.clone();
        let mut n = 2;
        while dir.exists() {
            dir = PathBuf::from(format!("{}-{n}", base.display()));
            n += 1;
        }
        dir
    }

    /// The ranks of a data-parallel run, when two or more GPUs are ticked.
    fn parallel_ranks(&self) -> Option<crate::runs::launch::Ranks> {
        let mut gpus = self.parallel_gpus.clone();
        gpus.sort_unstable();
        gpus.dedup();
        (gpus.len() >= 2).then_some(crate::runs::launch::Ranks::Gpus(gpus))
    }

    /// Interprets one user command.
    pub fn handle(&mut self, cmd: UiCommand) {
        match cmd {
            UiCommand::Start => {
                if !self.can_start() {
                    return;
                }
                let run_dir = self.new_run_dir();
                let config = Box::new(self.config.clone());
                self.begin(match self.parallel_ranks() {
                    Some(ranks) => StartRequest::Launch {
                        ranks,
                        config: Some(config),
                        run_dir,
                    },
                    None => StartRequest::New { config, run_dir },
                });
            }
            UiCommand::ResumeRun(dir) => {
                self.resume_offer = None;
                if !self.run.status.is_active() {
                    self.begin(match self.parallel_ranks() {
                        Some(ranks) => StartRequest::Launch {
                            ranks,
                            config: None,
                            run_dir: dir,
                        },
                        None => StartRequest::Resume { run_dir: dir },
                    });
                }
            }
            UiCommand::PauseOrResume => {
                if let Some(h) = &self.handle {
                    let cmd = match self.run.status {
                        RunStatus::Running => Some(TrainCmd::Pause),
                        RunStatus::Paused => Some(TrainCmd::Resume),
                        _ => None,
                    };
                    if let Some(c) = cmd {
                        let _ = h.commands.send(c);
                    }
                }
            }
            UiCommand::Stop => {
                if let Some(h) = &self.handle {
                    h.stop();
                    if self.run.status.is_active() {
                        self.run.status = RunStatus::Stopping;
                    }
                }
            }
            UiCommand::EvaluatePalette
                if !self.run.palette.is_empty() || !self.run.decoder_entries.is_empty() =>
            {
                // Measuring again replaces rows of a palette the user may want to keep.
                self.confirm_reevaluation = true;
            }
            UiCommand::EvaluatePalette | UiCommand::EvaluatePaletteConfirmed => {
                self.confirm_reevaluation = false;
                if self.handle.is_some() {
                    if let Some(h) = &self.handle {
                        let _ = h.commands.send(TrainCmd::EvaluatePalette(None));
                    }
                } else if let Some(dir) = self.run.run_dir.clone() {
                    let listed = &self.config.palette.subnets;
                    let subnets = (!listed.is_empty()).then(|| listed.clone());
                    self.handle = Some(spawn(
                        StartRequest::Palette {
                            run_dir: dir,
                            subnets,
                        },
                        self.jobs.wake(),
                    ));
                    self.run.status = RunStatus::MeasuringPalette;
                    self.run.metrics_offset = None;
                }
            }
            UiCommand::CancelEvaluatePalette => self.confirm_reevaluation = false,
            UiCommand::Select(s) => self.selection = s,
            UiCommand::Export => {
                if self.is_decoder_run() {
                    self.dialogs.open(match self.decoder.format {
                        ExportFormat::HfFolder => DialogPurpose::ExportFolder,
                        ExportFormat::Gguf(_) => DialogPurpose::ExportGguf,
                    });
                } else if self.selection.is_some() && self.run.run_dir.is_some() {
                    self.dialogs.open(DialogPurpose::ExportFolder);
                }
            }
            // Edits since the last preset are not dropped without asking.
            UiCommand::LoadPreset(p) if self.preset_modified() => self.confirm_preset = Some(p),
            UiCommand::LoadPreset(p) | UiCommand::LoadPresetConfirmed(p) => {
                self.confirm_preset = None;
                self.load_preset(&p)
            }
            UiCommand::CancelLoadPreset => self.confirm_preset = None,
            UiCommand::OpenRun(dir) => {
                self.open_run(&dir);
                if self.run.run_dir.as_deref() == Some(dir.as_path()) {
                    self.tab = Tab::Training;
                }
            }
            UiCommand::Overlay(name, shown) => self.overlays.set_shown(&name, shown),
            UiCommand::DeleteRun(dir) => {
                self.runs.confirm_delete = None;
                if self.run.run_dir.as_deref() == Some(dir.as_path()) && self.handle.is_some() {
                    self.notice = Some("this run is in use: stop it before deleting it".into());
                    return;
                }
                if let Some(pid) = crate::files::lock::writer_of(&dir) {
                    self.notice = Some(format!(
                        "process {pid} is training this run: stop it before deleting it"
                    ));
                    return;
                }
                match super::runs_browser::move_to_trash(&dir) {
                    Ok(to) => {
                        self.notice = Some(format!("moved {} to {}", dir.display(), to.display()))
                    }
                    Err(e) => self.notice = Some(format!("{e:#}")),
                }
                self.runs.scan(&self.runs_root);
                self.overlays.scan(&self.runs_root);
            }
            UiCommand::CancelDeleteRun => self.runs.confirm_delete = None,
            UiCommand::RenameRun(dir, name) => {
                let shown = self.run.run_dir.as_deref() == Some(dir.as_path());
                if shown && self.handle.is_some() {
                    self.notice = Some("this run is in use: stop it before renaming it".into());
                    return;
                }
                if let Some(pid) = crate::files::lock::writer_of(&dir) {
                    self.notice = Some(format!(
                        "process {pid} is training this run: stop it before renaming it"
                    ));
                    return;
                }
                match super::runs_browser::rename_run(&dir, &name) {
                    Ok(to) => {
                        if shown {
                            self.run.run_dir = Some(to.clone());
                            if let Some(csv) = &self.run.palette_csv {
                                self.run.palette_csv = csv.file_name().map(|f| to.join(f));
                            }
                        }
                        self.runs.renamed(&dir, &to);
                        self.notice =
                            Some(format!("renamed {} to {}", dir.display(), to.display()));
                    }
                    Err(e) => self.notice = Some(format!("{e:#}")),
                }
                self.runs.scan(&self.runs_root);
                self.overlays.scan(&self.runs_root);
            }
            UiCommand::OpenRunSettings(dir) => self.open_run_settings(&dir),
            UiCommand::ResumeWithSettings(dir) => self.resume_with_settings(&dir),
            UiCommand::Open(DialogPurpose::SavePreset) => {
                let name = format!("{}.ron", self.config.name);
                self.dialogs.open_named(DialogPurpose::SavePreset, &name)
            }
            UiCommand::Open(purpose) => self.dialogs.open(purpose),
        }
    }

    /// Starts the worker on `request` with a fresh view of the run.
    pub(super) fn begin(&mut self, request: StartRequest) {
        // A resumed run keeps its history (curves from step 1) and shows its own settings.
        let history = match &request {
            StartRequest::Resume { run_dir } => {
                if let Ok(config) = RunConfig::load(&run_dir.join("config.ron")) {
                    self.set_config(config);
                    self.preset_path = None;
                    self.preset_config = None;
                }
                RunView::from_run_dir(run_dir).ok()
            }
            _ => None,
        };
        self.run = RunView {
            status: RunStatus::Starting,
            palette: Vec::new(),
            palette_csv: None,
            divergence: None,
            // Fed by this window's trainer from now on, not by the file.
            metrics_offset: None,
            other_writer: None,
            ..history.unwrap_or_default()
        };
        // The ETA's guess for stages not reached yet: maxnet, minnet and the random subnets,
        // or a decoder's listed students.
        self.run.students_hint = match self.config.lm.as_ref().map(|lm| lm.students.len()) {
            Some(n) if n > 0 => n,
            _ => 2 + self.config.random_subnets,
        };
        self.selection = None;
        self.export = ExportState::Idle;
        self.handle = Some(spawn(request, self.jobs.wake()));
    }

    /// True when the shown run is a decoder run.
    pub fn is_decoder_run(&self) -> bool {
        self.run
            .run_dir
            .as_deref()
            .is_some_and(crate::train::kind::is_decoder_run)
    }

    /// Exports the selected (or default) subnet of the decoder run as a background job.
    fn start_decoder_export(&mut self, target: PathBuf) {
        let Some(run_dir) = self.run.run_dir.clone() else {
            return;
        };
        let (subnet, format, out) = (self.selection.clone(), self.decoder.format, target.clone());
        self.export_job = Some(self.jobs.spawn("export", move || {
            let run = crate::train::DecoderRun::open_trained(&run_dir)?;
            let files = crate::runs::export::export_decoder(&run, subnet.as_deref(), format, &out)?;
            Ok(files
                .iter()
                .map(|f| f.display().to_string())
                .collect::<Vec<String>>())
        }));
        self.export = ExportState::Running {
            subnet: self
                .selection
                .clone()
                .unwrap_or_else(|| "the student".into()),
            folder: target,
        };
    }

    /// Exports the selected subnet of the classifier run, adapters merged, as a background job.
    fn start_export(&mut self, folder: PathBuf) {
        let (Some(subnet), Some(run_dir)) = (self.selection.clone(), self.run.run_dir.clone())
        else {
            return;
        };
        let metrics = self
            .run
            .palette
            .iter()
            .find(|e| e.subnet == subnet)
            .cloned();
        let target = folder.clone();
        let spec_text = subnet.clone();
        let format = self.pareto.format;
        self.export_job = Some(self.jobs.spawn("export", move || {
            crate::export::folder::check_target(&target)?;
            let run = crate::train::ClassifierRun::open_trained(&run_dir)?;
            let teacher = &run.task.space.teacher;
            let spec = crate::model::subnet::resolve_spec(Some(&spec_text), teacher)?;
            let files = crate::runs::export::export_classifier(
                &run,
                &spec,
                metrics.as_ref(),
                format,
                &target,
            )?;
            Ok(files
                .iter()
                .map(|f| f.display().to_string())
                .collect::<Vec<String>>())
        }));
        self.export = ExportState::Running { subnet, folder };
    }
}

/// `path`, with `.ext` added unless it already ends so (a typed name may lack it).
fn with_extension(path: &Path, ext: &str) -> PathBuf {
    match path.extension() {
        Some(e) if e.eq_ignore_ascii_case(ext) => path.to_path_buf(),
        _ => PathBuf::from(format!("{}.{ext}", path.display())),
    }
}
