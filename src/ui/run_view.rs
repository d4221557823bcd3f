//! What the window knows about the current run, built only from `TrainEvent`s.

use crate::train::protocol::{DecoderEntry, PaletteEntry, TrainEvent};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The run's life cycle as the window shows it.
#[derive(Debug, Clone, PartialEq)]
pub enum RunStatus {
    Idle,
    Starting,
    Running,
    Paused,
    Stopping,
    MeasuringPalette,
    Finished,
    Stopped,
    Failed(String),
}

impl RunStatus {
    /// True while the trainer thread is working on a run (not on the palette alone).
    pub fn is_active(&self) -> bool {
        matches!(
            self,
            RunStatus::Starting | RunStatus::Running | RunStatus::Paused | RunStatus::Stopping
        )
    }
}

/// One log line.
#[derive(Debug, Clone, PartialEq)]
pub struct LogLine {
    pub level: String,
    pub message: String,
}

/// Full-resolution series and progress of one run.
#[derive(Debug, Clone)]
pub struct RunView {
    pub run_dir: Option<PathBuf>,
    pub status: RunStatus,
    pub total_steps: usize,
    pub global_step: usize,
    pub start_step: usize,
    pub stage: usize,
    pub stage_steps: Vec<usize>,
    pub started_at: Option<Instant>,
    pub paused_for: Duration,
    pub paused_at: Option<Instant>,
    /// When training ended (finished, stopped or failed): the elapsed time stops there.
    pub ended_at: Option<Instant>,
    /// Seconds per trained subnet of the latest steps (the ETA's rate).
    pub recent_subnet_seconds: std::collections::VecDeque<f64>,
    /// Seconds of all training steps logged (every session of a resumed run).
    pub train_seconds: f64,
    /// Subnets trained per step in each stage, where seen (`None`: not reached yet).
    pub stage_students: [Option<usize>; 3],
    /// Subnets a width or depth stage trains per step, from the configuration (maxnet, minnet
    /// and the random ones): the ETA's guess for stages not reached yet.
    pub students_hint: usize,
    /// Loss per role ("maxnet", "minnet", "random subnets") over global steps.
    pub losses: BTreeMap<String, Vec<[f64; 2]>>,
    /// Dev accuracy per role over global steps.
    pub dev_accuracy: BTreeMap<String, Vec<[f64; 2]>>,
    pub learning_rate: Vec<[f64; 2]>,
    /// (global step, stage) where each stage began.
    pub stage_marks: Vec<(f64, usize)>,
    pub palette: Vec<PaletteEntry>,
    pub palette_expected: usize,
    pub palette_csv: Option<PathBuf>,
    pub majority_accuracy: f64,
    /// Where the run computes and in which precision (`cuda:0 Bf16`); empty for older runs.
    pub placement: String,
    /// Ranks training the run (data parallel over GPUs; 1 alone).
    pub world_size: usize,
    /// Each rank's device memory in use at the last step (MB; data-parallel runs only).
    pub devices_mb: Vec<f64>,
    /// Decoder runs: validation loss per role over global steps.
    pub val_loss: BTreeMap<String, Vec<[f64; 2]>>,
    /// Decoder runs: the teacher's validation loss (a reference line).
    pub teacher_val_loss: Option<f64>,
    /// Decoder runs: measured subnets (size, validation metrics, latency).
    pub decoder_entries: Vec<DecoderEntry>,
    pub logs: Vec<LogLine>,
    /// Set when the watchdog stopped the run: why, and the checkpoint step it can resume from.
    pub divergence: Option<Divergence>,
    /// The step of the run's last checkpoint, when one was saved (a stopped run resumes there).
    pub checkpoint_step: Option<usize>,
    /// Bytes of the run's `metrics.jsonl` this view was read from, when it was read from the
    /// file (a watcher's later lines continue it); `None` for a view fed by this window's own
    /// trainer.
    pub metrics_offset: Option<u64>,
    /// Another process training or measuring this run now (its curves come from the file).
    pub other_writer: Option<u32>,
    /// When the palette's measurement began (its ETA counts from there).
    pub palette_started_at: Option<Instant>,
    /// Rows the measurement in progress (or the last one) has sent.
    pub palette_measured: usize,
}

/// A run the watchdog stopped (the studio shows it as a banner with ways out).
#[derive(Debug, Clone, PartialEq)]
pub struct Divergence {
    pub reason: String,
    pub last_good_step: Option<usize>,
}

impl Default for RunView {
    fn default() -> Self {
        Self {
            run_dir: None,
            status: RunStatus::Idle,
            total_steps: 0,
            global_step: 0,
            start_step: 0,
            stage: 0,
            stage_steps: Vec::new(),
            started_at: None,
            paused_for: Duration::ZERO,
            ended_at: None,
            recent_subnet_seconds: std::collections::VecDeque::new(),
            train_seconds: 0.0,
            stage_students: [None; 3],
            students_hint: 0,
            paused_at: None,
            losses: BTreeMap::new(),
            dev_accuracy: BTreeMap::new(),
            learning_rate: Vec::new(),
            stage_marks: Vec::new(),
            palette: Vec::new(),
            palette_expected: 0,
            palette_csv: None,
            majority_accuracy: 0.0,
            placement: String::new(),
            world_size: 1,
            devices_mb: Vec::new(),
            val_loss: BTreeMap::new(),
            teacher_val_loss: None,
            decoder_entries: Vec::new(),
            logs: Vec::new(),
            divergence: None,
            checkpoint_step: None,
            metrics_offset: None,
            other_writer: None,
            palette_started_at: None,
            palette_measured: 0,
        }
    }
}

/// Human name of a stage.
pub fn stage_name(stage: usize) -> &'static str {
    match stage {
        0 => "Stage 0 · full model",
        1 => "Stage 1 · width",
        2 => "Stage 2 · width + depth",
        _ => "Done",
    }
}

impl RunView {
    /// Folds events a watcher read from this run's `metrics.jsonl` (`from`: where its read
    /// began; each event with the offset its line ends at), skipping those the view already
    /// holds. False when the view cannot follow the file: it was not read from it, or lines
    /// between what it read and `from` were never seen (read the run again).
    pub fn follow(&mut self, from: u64, events: &[(u64, TrainEvent)]) -> bool {
        let Some(offset) = self.metrics_offset else {
            return false;
        };
        if from > offset {
            return false;
        }
        for (end, event) in events {
            if *end > offset {
                self.apply(event.clone());
                self.metrics_offset = Some(*end);
            }
        }
        true
    }

    /// Subnets of the palette's measurement done so far (a decoder's kept rows included).
    pub fn palette_done(&self) -> usize {
        self.palette_measured
    }

    /// Time left of the palette's measurement at its pace so far.
    pub fn palette_eta(&self) -> Option<Duration> {
        let done = self.palette_done();
        let left = self.palette_expected.checked_sub(done)?;
        let started = self.palette_started_at?;
        (done > 0).then(|| started.elapsed().mul_f64(left as f64 / done as f64))
    }

    /// The run can be continued from its folder: it stopped (or failed) after a checkpoint,
    /// no other process holds it, and it did not diverge (its banner offers the ways out: the
    /// same settings would diverge again).
    pub fn resumable(&self) -> bool {
        self.other_writer.is_none()
            && self.divergence.is_none()
            && matches!(self.status, RunStatus::Stopped | RunStatus::Failed(_))
            && self.run_dir.is_some()
            && self.checkpoint_step.is_some()
    }

    /// Reads the run folder's palette files again (a search added rows); a file that does
    /// not read keeps the rows shown.
    pub fn reload_palettes(&mut self) {
        let Some(dir) = self.run_dir.clone() else {
            return;
        };
        if let Ok(rows) = crate::eval::decoder::read_csv(&dir.join("lm-palette.csv")) {
            self.decoder_entries = rows;
        }
        if let Ok(rows) = crate::eval::palette::read_csv(&dir.join("palette.csv")) {
            self.palette_expected = rows.len();
            self.palette = rows;
        }
    }

    /// Reads a run folder: its events replayed, its palettes read; a run that was training
    /// when its writer stopped shows as stopped.
    pub fn from_run_dir(dir: &std::path::Path) -> anyhow::Result<Self> {
        let (mut view, _, _) = Self::read_live(dir)?;
        if view.status.is_active() {
            view.status = RunStatus::Stopped;
        }
        Ok(view)
    }

    /// Reads a run folder as it is now, its status as its events left it (a run another
    /// process trains is still training), and the bytes and lines of `metrics.jsonl` read: up
    /// to its last complete line, where a watcher continues.
    pub fn read_live(dir: &std::path::Path) -> anyhow::Result<(Self, u64, usize)> {
        let path = dir.join("metrics.jsonl");
        let text = crate::files::read_text(&path, "run metrics")?;
        let mut view = RunView::default();
        // A last line without its newline is being written, or was cut by a killed writer:
        // left for the next read, and said once here, never a reason to refuse the run.
        let complete = text.rfind('\n').map_or(0, |i| i + 1);
        view.apply_lines(&text[..complete], &path, 1)?;
        let lines = text[..complete].lines().count();
        if !text[complete..].trim().is_empty() {
            let line = lines + 1;
            view.apply(TrainEvent::log(
                "warn",
                format!(
                    "{}:{line}: a torn last line (an interrupted run) was skipped",
                    crate::files::shown(&path)
                ),
            ));
        }
        view.started_at = None;
        view.run_dir = Some(dir.to_path_buf());
        view.reload_palettes_from(dir)?;
        view.metrics_offset = Some(complete as u64);
        Ok((view, complete as u64, lines))
    }

    /// Folds complete lines of `metrics.jsonl` (`path`, the first of them line `first_line`)
    /// into the view.
    pub fn apply_lines(
        &mut self,
        text: &str,
        path: &std::path::Path,
        first_line: usize,
    ) -> anyhow::Result<()> {
        use anyhow::Context;
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let event = serde_json::from_str::<TrainEvent>(line).with_context(|| {
                format!(
                    "{}:{}: invalid event",
                    crate::files::shown(path),
                    first_line + i
                )
            })?;
            self.apply(event);
        }
        Ok(())
    }

    /// Reads `dir`'s palette files into the view (those present).
    fn reload_palettes_from(&mut self, dir: &std::path::Path) -> anyhow::Result<()> {
        let lm_csv = dir.join("lm-palette.csv");
        if lm_csv.is_file() {
            self.decoder_entries = crate::eval::decoder::read_csv(&lm_csv)?;
        }
        let csv = dir.join("palette.csv");
        if csv.is_file() {
            self.palette = crate::eval::palette::read_csv(&csv)?;
            self.palette_expected = self.palette.len();
            self.palette_csv = Some(csv);
        }
        Ok(())
    }

    /// Folds one event into the view.
    pub fn apply(&mut self, event: TrainEvent) {
        match event {
            TrainEvent::RunStarted {
                run_dir,
                total_steps,
                stage_steps,
                start_step,
                majority_accuracy,
                device,
                precision,
                world_size,
            } => {
                self.divergence = None;
                self.world_size = world_size;
                self.devices_mb.clear();
                // A resumed run repeats the steps after its checkpoint: drop their old points.
                self.forget_after(start_step);
                self.placement = format!("{device} {precision}").trim().to_string();
                self.run_dir = Some(PathBuf::from(run_dir));
                self.total_steps = total_steps;
                self.stage_steps = stage_steps;
                self.start_step = start_step;
                self.global_step = start_step;
                self.majority_accuracy = majority_accuracy;
                self.started_at = Some(Instant::now());
                self.ended_at = None;
                self.recent_subnet_seconds.clear();
                self.status = RunStatus::Running;
            }
            TrainEvent::StageStarted {
                stage, global_step, ..
            } => {
                self.stage = stage;
                self.stage_marks.push((global_step as f64, stage));
            }
            TrainEvent::Step {
                stage,
                global_step,
                learning_rate,
                losses,
                seconds,
                devices_mb,
                ..
            } => {
                self.stage = stage;
                self.global_step = global_step;
                if !devices_mb.is_empty() {
                    self.devices_mb = devices_mb;
                }
                let students = losses.len().max(1);
                self.train_seconds += seconds;
                if let Some(slot) = self.stage_students.get_mut(stage) {
                    *slot = Some(students);
                }
                self.recent_subnet_seconds
                    .push_back(seconds / students as f64);
                if self.recent_subnet_seconds.len() > 20 {
                    self.recent_subnet_seconds.pop_front();
                }
                let x = global_step as f64;
                self.learning_rate.push([x, learning_rate]);
                for (i, l) in losses.iter().enumerate() {
                    let role = match (&l.role, i) {
                        (Some(r), _) => r.as_str(),
                        // Listed students come named; an unnamed first one is the maxnet of
                        // a sampled space (a decoder's too, as its validation chart names it).
                        (None, 0) => "maxnet",
                        (None, 1) => "minnet",
                        _ => "random subnets",
                    };
                    let series = self.losses.entry(role.to_string()).or_default();
                    // Random subnets: one point per step, the mean of that step's draws.
                    if i >= 2 && l.role.is_none() && series.last().is_some_and(|p| p[0] == x) {
                        let k = (i - 1) as f64;
                        if let Some(last) = series.last_mut() {
                            last[1] = (last[1] * k + l.loss) / (k + 1.0);
                        }
                    } else {
                        series.push([x, l.loss]);
                    }
                }
            }
            TrainEvent::DevEval {
                global_step,
                results,
                ..
            } => {
                for r in results {
                    self.dev_accuracy
                        .entry(r.role)
                        .or_default()
                        .push([global_step as f64, r.accuracy]);
                }
            }
            TrainEvent::DecoderEval {
                global_step,
                results,
                ..
            } => {
                for r in results {
                    if r.role == "teacher" {
                        self.teacher_val_loss = Some(r.loss);
                    } else {
                        self.val_loss
                            .entry(r.role)
                            .or_default()
                            .push([global_step as f64, r.loss]);
                    }
                }
            }
            TrainEvent::DecoderMeasured(entry) => {
                self.palette_measured += 1;
                match self
                    .decoder_entries
                    .iter_mut()
                    .find(|e| e.role == entry.role && e.subnet == entry.subnet)
                {
                    Some(old) => *old = entry,
                    None => self.decoder_entries.push(entry),
                }
            }
            TrainEvent::Log { level, message } => self.logs.push(LogLine { level, message }),
            TrainEvent::CheckpointSaved { global_step, path } => {
                self.checkpoint_step = Some(global_step);
                self.logs.push(LogLine {
                    level: "info".into(),
                    message: format!("checkpoint at step {global_step}: {path}"),
                })
            }
            TrainEvent::Paused { .. } => {
                self.status = RunStatus::Paused;
                self.paused_at = Some(Instant::now());
            }
            TrainEvent::Resumed { .. } => {
                self.status = RunStatus::Running;
                if let Some(p) = self.paused_at.take() {
                    self.paused_for += p.elapsed();
                }
            }
            TrainEvent::PaletteStarted { count } => {
                // The rows measured before stay shown, each replaced when measured again.
                self.palette_measured = 0;
                self.palette_expected = count;
                self.status = RunStatus::MeasuringPalette;
                self.palette_started_at = Some(Instant::now());
            }
            TrainEvent::PaletteResult(entry) => {
                self.palette_measured += 1;
                match self.palette.iter_mut().find(|e| e.subnet == entry.subnet) {
                    Some(old) => *old = entry,
                    None => self.palette.push(entry),
                }
            }
            TrainEvent::PaletteFinished { csv_path } => {
                // The file holds the whole palette (a partial measurement merges into it).
                if let Ok(rows) = crate::eval::palette::read_csv(std::path::Path::new(&csv_path)) {
                    self.palette = rows;
                }
                self.palette_csv = Some(PathBuf::from(&csv_path));
                self.status = RunStatus::Finished;
                self.logs.push(LogLine {
                    level: "info".into(),
                    message: format!("palette written to {csv_path}"),
                });
            }
            TrainEvent::Finished {
                stopped,
                global_step,
            } => {
                self.global_step = global_step;
                self.ended_at = Some(Instant::now());
                self.status = if stopped {
                    RunStatus::Stopped
                } else {
                    RunStatus::Finished
                };
                let what = if stopped {
                    "stopped (checkpoint kept; resume continues it)"
                } else {
                    "training finished"
                };
                self.logs.push(LogLine {
                    level: "info".into(),
                    message: format!("{what} at step {global_step}"),
                });
            }
            TrainEvent::Diverged {
                reason,
                last_good_step,
                ..
            } => {
                self.logs.push(LogLine {
                    level: "error".into(),
                    message: reason.clone(),
                });
                self.status = RunStatus::Failed(reason.clone());
                self.ended_at = Some(Instant::now());
                self.divergence = Some(Divergence {
                    reason,
                    last_good_step,
                });
            }
            // The worker's report of the same stop adds nothing to the watchdog's event.
            TrainEvent::Failed { error } if self.divergence.is_some() => {
                self.status = RunStatus::Failed(error);
            }
            TrainEvent::Failed { error } => {
                self.ended_at.get_or_insert_with(Instant::now);
                self.logs.push(LogLine {
                    level: "error".into(),
                    message: error.clone(),
                });
                self.status = RunStatus::Failed(error);
            }
        }
    }

    /// Every curve as CSV rows `chart,series,step,value` (loss, dev accuracy, validation loss,
    /// learning rate), raw values.
    pub fn curves_csv(&self) -> String {
        let mut out = String::from("chart,series,step,value\n");
        let charts = [
            ("loss", &self.losses),
            ("dev_accuracy", &self.dev_accuracy),
            ("validation_loss", &self.val_loss),
        ];
        for (chart, series) in charts {
            for (name, points) in series {
                for p in points {
                    out.push_str(&format!("{chart},{name},{},{}\n", p[0], p[1]));
                }
            }
        }
        for p in &self.learning_rate {
            out.push_str(&format!("learning_rate,learning_rate,{},{}\n", p[0], p[1]));
        }
        out
    }

    /// Drops every curve point after global step `step` (kept history before a resume).
    pub fn forget_after(&mut self, step: usize) {
        let x = step as f64;
        let keep = |series: &mut Vec<[f64; 2]>| series.retain(|p| p[0] <= x);
        for series in self
            .losses
            .values_mut()
            .chain(self.dev_accuracy.values_mut())
            .chain(self.val_loss.values_mut())
        {
            keep(series);
        }
        keep(&mut self.learning_rate);
        self.stage_marks.retain(|m| m.0 <= x);
    }

    /// Fraction of the run done, 0..=1.
    pub fn progress(&self) -> f32 {
        if self.total_steps == 0 {
            return 0.0;
        }
        (self.global_step as f32 / self.total_steps as f32).clamp(0.0, 1.0)
    }

    /// Running time excluding pauses.
    pub fn elapsed(&self) -> Duration {
        let Some(start) = self.started_at else {
            return Duration::ZERO;
        };
        let now = self.ended_at.unwrap_or_else(Instant::now);
        let paused_now = self.paused_at.map_or(Duration::ZERO, |p| now - p.min(now));
        (now - start.min(now)).saturating_sub(self.paused_for + paused_now)
    }

    /// Training time left: the recent seconds per trained subnet times the subnets still to
    /// train (each stage's count where seen, else the configuration's for width/depth stages).
    pub fn eta(&self) -> Option<Duration> {
        if self.recent_subnet_seconds.is_empty()
            || self.total_steps <= self.global_step
            || !self.status.is_active()
        {
            return None;
        }
        let rate = self.recent_subnet_seconds.iter().sum::<f64>()
            / self.recent_subnet_seconds.len() as f64;
        let mut stage_start = 0;
        let mut subnets_left = 0usize;
        for (stage, &steps) in self.stage_steps.iter().enumerate() {
            let stage_end = stage_start + steps;
            let left = stage_end.saturating_sub(self.global_step.max(stage_start));
            let seen = self.stage_students.get(stage).copied().flatten();
            let guess = if stage == 0 {
                1
            } else {
                self.students_hint.max(1)
            };
            subnets_left += left * seen.unwrap_or(guess);
            stage_start = stage_end;
        }
        Some(Duration::from_secs_f64(rate * subnets_left as f64))
    }
}

/// `h:mm:ss` or `m:ss`.
pub fn format_duration(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 3600 {
        format!("{}:{:02}:{:02}", s / 3600, (s / 60) % 60, s % 60)
    } else {
        format!("{}:{:02}", s / 60, s % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::protocol::SubnetLoss;

    fn step(stage: usize, global_step: usize, students: usize, seconds: f64) -> TrainEvent {
        let loss = SubnetLoss {
            subnet: "s".into(),
            loss: 1.0,
            weight: 1.0,
            role: None,
        };
        TrainEvent::Step {
            stage,
            step_in_stage: global_step - 1,
            global_step,
            learning_rate: 1e-3,
            losses: vec![loss; students],
            grad_norm: 1.0,
            seconds,
            devices_mb: Vec::new(),
        }
    }

    #[test]
    fn the_eta_counts_each_later_stages_subnets_and_the_clock_stops_at_the_end() {
        let mut view = RunView {
            students_hint: 4,
            ..RunView::default()
        };
        view.apply(TrainEvent::RunStarted {
            run_dir: "r".into(),
            total_steps: 20,
            stage_steps: vec![10, 5, 5],
            start_step: 0,
            majority_accuracy: 0.5,
            device: String::new(),
            precision: String::new(),
            world_size: 1,
        });
        for s in 1..=4 {
            view.apply(step(0, s, 1, 1.0));
        }
        // 1 s per subnet: 6 stage-0 steps of 1 subnet, then 10 steps of 4 subnets.
        assert_eq!(view.eta(), Some(Duration::from_secs(46)));
        view.apply(TrainEvent::Finished {
            global_step: 20,
            stopped: false,
        });
        assert_eq!(view.eta(), None);
        let at_end = view.elapsed();
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(view.elapsed(), at_end);
    }

    #[test]
    fn measuring_again_keeps_the_rows_until_each_is_replaced_and_counts_n_of_n() {
        let mut view = RunView::default();
        for (subnet, acc) in [("a", 0.8), ("b", 0.7), ("c", 0.6)] {
            view.apply(TrainEvent::PaletteResult(PaletteEntry::sample(
                subnet, 1, 1.0, acc,
            )));
        }
        view.apply(TrainEvent::PaletteStarted { count: 3 });
        assert_eq!(view.palette.len(), 3, "the rows measured before stay shown");
        assert_eq!((view.palette_done(), view.palette_expected), (0, 3));
        view.apply(TrainEvent::PaletteResult(PaletteEntry::sample(
            "b", 1, 1.0, 0.75,
        )));
        assert_eq!(view.palette.len(), 3);
        assert_eq!(view.palette[1].dev_accuracy, 0.75, "replaced in place");
        assert_eq!(view.palette_done(), 1);
        assert!(view.palette_eta().is_some());
    }

    #[test]
    fn an_unnamed_first_loss_is_the_maxnet_for_a_decoder_too() {
        let mut view = RunView {
            // A decoder run validated its teacher before the first step.
            teacher_val_loss: Some(2.96),
            ..RunView::default()
        };
        view.apply(step(0, 1, 1, 1.0));
        view.apply(step(1, 2, 3, 1.0));
        let roles: Vec<&String> = view.losses.keys().collect();
        assert_eq!(roles, ["maxnet", "minnet", "random subnets"]);
    }
}
