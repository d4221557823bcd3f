//! The Pareto tab's Search section: the budget (the budget control's value), evaluations,
//! Start / Stop; while it runs, the generation, the evaluations and the best candidate so far
//! (the candidates are drawn faintly on the latency chart); then each verified subnet's
//! predicted against measured latency, and the answer. The search runs off the UI thread
//! through the job runner and reports plain data on a channel.

use super::jobs::{Job, Jobs};
use crate::eval::pareto::CostBudget;
use crate::search::budget::Budget;
use crate::search::driver::{Candidate, SearchEvent, SearchOptions, SearchResult};
use crate::search::subject::Measured;
use crossbeam_channel::{unbounded, Receiver};
use egui::{RichText, Ui};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// A verified subnet as the panel lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedLine {
    pub measured: Measured,
    pub predicted_latency_ms: f64,
    pub over_budget: bool,
}

/// The search section's state.
pub struct SearchPanel {
    /// Candidates to estimate.
    pub evaluations: usize,
    /// Searched candidates measured at the end.
    pub top_k: usize,
    job: Option<Job<SearchResult>>,
    events: Option<Receiver<SearchEvent>>,
    stop: Arc<AtomicBool>,
    /// The run the shown search belongs to.
    pub run_dir: Option<PathBuf>,
    pub budget: Option<Budget>,
    pub generation: usize,
    pub candidates: Vec<Candidate>,
    pub best: Option<Candidate>,
    pub verified: Vec<VerifiedLine>,
    pub note: String,
    pub result: Option<SearchResult>,
    pub error: Option<String>,
    /// Set when a search wrote new palette rows: the window reloads the run's palette.
    pub palette_changed: bool,
    /// When the shown search started (its ETA counts from there).
    pub started_at: Option<std::time::Instant>,
}

impl Default for SearchPanel {
    fn default() -> Self {
        Self {
            evaluations: 300,
            top_k: 8,
            job: None,
            events: None,
            stop: Arc::new(AtomicBool::new(false)),
            run_dir: None,
            budget: None,
            generation: 0,
            candidates: Vec::new(),
            best: None,
            verified: Vec::new(),
            note: String::new(),
            result: None,
            error: None,
            palette_changed: false,
            started_at: None,
        }
    }
}

/// The search budget the budget control holds: its latency limit, else its size limit in the
/// size axis's unit (millions of parameters or MB).
pub fn budget_of(budget: &CostBudget, size_in_mb: bool) -> Option<Budget> {
    match (budget.latency_ms, budget.size) {
        (Some(ms), _) => Some(Budget::LatencyMs(ms)),
        (None, Some(s)) if size_in_mb => Some(Budget::SizeMb(s)),
        (None, Some(s)) => Some(Budget::ParamsM(s)),
        (None, None) => None,
    }
}

impl SearchPanel {
    /// True while a search runs.
    pub fn is_running(&self) -> bool {
        self.job.is_some()
    }

    /// The candidates of the shown search for `run_dir` (none for another run).
    pub fn candidates_of(&self, run_dir: Option<&Path>) -> &[Candidate] {
        if run_dir.is_some() && self.run_dir.as_deref() == run_dir {
            &self.candidates
        } else {
            &[]
        }
    }

    /// Starts a search of the run in `run_dir` under `budget`.
    pub fn start(&mut self, run_dir: &Path, budget: Budget, jobs: &Jobs) {
        let (tx, rx) = unbounded();
        let stop = Arc::new(AtomicBool::new(false));
        let mut options = SearchOptions::new(budget);
        options.evaluations = self.evaluations.max(1);
        options.top_k = self.top_k.max(1);
        let dir = run_dir.to_path_buf();
        let stop_flag = stop.clone();
        let wake = jobs.wake();
        let job = jobs.spawn("search", move || {
            let send = move |e: SearchEvent| {
                let _ = tx.send(e);
                if let Some(w) = &wake {
                    w();
                }
            };
            crate::runs::search::run_search(&dir, &options, send, move || {
                !stop_flag.load(Ordering::Relaxed)
            })
        });
        *self = Self {
            evaluations: self.evaluations,
            top_k: self.top_k,
            job: Some(job),
            events: Some(rx),
            stop,
            run_dir: Some(run_dir.to_path_buf()),
            budget: Some(budget),
            note: "starting the search…".into(),
            started_at: Some(std::time::Instant::now()),
            ..Self::default()
        };
    }

    /// Takes the search's news of this frame; never blocks.
    pub fn poll(&mut self) {
        if let Some(rx) = &self.events {
            while let Ok(event) = rx.try_recv() {
                match event {
                    SearchEvent::Note(line) => self.note = line,
                    SearchEvent::Evaluated(c) => self.candidates.push(c),
                    SearchEvent::Generation {
                        generation, best, ..
                    } => {
                        self.generation = generation + 1;
                        self.best = best;
                    }
                    SearchEvent::Verified {
                        measured,
                        predicted_latency_ms,
                        over_budget,
                    } => {
                        self.verified.push(VerifiedLine {
                            measured,
                            predicted_latency_ms,
                            over_budget,
                        });
                        self.palette_changed = true;
                    }
                }
            }
        }
        if let Some(result) = self.job.as_mut().and_then(Job::try_take) {
            self.job = None;
            match result {
                Ok(r) => {
                    self.note = r.summary();
                    self.result = Some(r);
                }
                Err(e) => self.error = Some(format!("{e:#}")),
            }
            self.palette_changed = true;
        }
    }

    /// Draws the section for the open run; `budget` is the budget control's search budget.
    pub fn ui(&mut self, ui: &mut Ui, run_dir: Option<&Path>, budget: Option<Budget>, jobs: &Jobs) {
        self.poll();
        // Closed until asked for (one line above the charts); open while a search has news.
        let shown =
            self.run_dir.as_deref() == run_dir && (self.is_running() || self.result.is_some());
        egui::CollapsingHeader::new("Search under a budget")
            .id_salt("search-section")
            .default_open(false)
            .open(shown.then_some(true))
            .show(ui, |ui| {
                ui.horizontal(|ui| {
                    let l = ui.label("Evaluations");
                    ui.add(egui::DragValue::new(&mut self.evaluations).range(10..=100_000))
                        .labelled_by(l.id)
                        .on_hover_text("Candidates estimated on a fixed subset of the dev split");
                    let l = ui.label("Measure top");
                    ui.add(egui::DragValue::new(&mut self.top_k).range(1..=64))
                        .labelled_by(l.id)
                        .on_hover_text("Searched candidates measured as palette rows at the end (the best uniform ones are measured beside them)");
                    let can_start = run_dir.is_some() && budget.is_some() && !self.is_running();
                    let why = match (run_dir, budget) {
                        (None, _) => "Open or train a run first",
                        (_, None) => "Set a latency or size budget above: the search finds the best subnet within it",
                        _ => "Search the per-layer space for the best subnet within the budget; a stopped search resumes",
                    };
                    let start = ui.add_enabled(can_start, egui::Button::new("Start search"));
                    if start.on_hover_text(why).on_disabled_hover_text(why).clicked() {
                        if let (Some(dir), Some(b)) = (run_dir, budget) {
                            self.start(dir, b, jobs);
                        }
                    }
                    if ui
                        .add_enabled(self.is_running(), egui::Button::new("Stop search"))
                        .on_hover_text("Stop at the end of this generation; Start continues it")
                        .clicked()
                    {
                        self.stop.store(true, Ordering::Relaxed);
                    }
                    if self.is_running() {
                        ui.spinner();
                    }
                });
                self.status(ui, run_dir);
            });
    }

    fn status(&self, ui: &mut Ui, run_dir: Option<&Path>) {
        if self.run_dir.as_deref() != run_dir || self.run_dir.is_none() {
            return;
        }
        if let Some(b) = &self.budget {
            let done = self.candidates.len();
            let mut line = format!(
                "{} · generation {} · {} of {} candidates evaluated",
                b, self.generation, done, self.evaluations
            );
            // At the pace so far (a resumed search's replayed candidates make it hopeful).
            let running = self.job.is_some() && done < self.evaluations;
            if let (true, Some(started)) = (running && done > 0, self.started_at) {
                let left = started
                    .elapsed()
                    .mul_f64((self.evaluations - done) as f64 / done as f64);
                line.push_str(&format!(
                    " · ETA {} (then the top candidates are measured)",
                    super::run_view::format_duration(left)
                ));
            }
            if self.job.is_some() && !self.verified.is_empty() {
                line.push_str(&format!(" · {} subnets measured", self.verified.len()));
            }
            ui.label(line);
        }
        if let Some(best) = &self.best {
            ui.label(format!(
                "Best so far (estimated): {} — {:.4}, predicted {:.3} ms",
                best.subnet, best.estimate, best.predicted_latency_ms
            ));
        }
        if !self.verified.is_empty() {
            // A few rows high: the charts below stay in view.
            egui::ScrollArea::vertical()
                .id_salt("search-verified-scroll")
                .max_height(150.0)
                .show(ui, |ui| {
                    egui::Grid::new("search-verified")
                        .striped(true)
                        .show(ui, |ui| {
                            for h in [
                                "Measured",
                                "Role",
                                "Predicted (ms)",
                                "Measured (ms)",
                                "Error",
                                "Quality",
                                "",
                            ] {
                                ui.label(RichText::new(h).strong());
                            }
                            ui.end_row();
                            for v in &self.verified {
                                let m = &v.measured;
                                ui.label(
                                    m.subnet
                                        .parse::<crate::model::SubnetSpec>()
                                        .map_or(m.subnet.clone(), |s| s.shape()),
                                )
                                .on_hover_text(&m.subnet);
                                ui.label(&m.role);
                                ui.label(format!("{:.3}", v.predicted_latency_ms));
                                ui.label(format!("{:.3}", m.latency_median_ms));
                                let error = 100.0 * (v.predicted_latency_ms - m.latency_median_ms)
                                    / m.latency_median_ms.max(1e-9);
                                ui.label(format!("{error:+.1} %"));
                                ui.label(format!("{:.4}", m.value));
                                if v.over_budget {
                                    ui.colored_label(ui.visuals().error_fg_color, "over budget");
                                } else {
                                    ui.label("");
                                }
                                ui.end_row();
                            }
                        });
                });
        }
        if let Some(e) = &self.error {
            ui.colored_label(ui.visuals().error_fg_color, format!("Search: {e}"));
        } else if !self.note.is_empty() {
            ui.weak(&self.note);
        }
    }
}
