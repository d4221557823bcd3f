//! One run skeleton for both kinds: create / resume / open a trained run, the stage loop with
//! pause and stop, the step frame (data order, students, gradient-scale weights, learning-rate
//! schedule, optimizer step), checkpoints and the final save. What differs lives in a [`Task`].

use super::checkpoint::{self, CheckpointState};
use super::config::RunConfig;
use super::data::epoch_order;
use super::data_record;
use super::events::EventLog;
use super::optim::{learning_rate, AdamW};
use super::parallel::{self, sync, BatchShare, Collective};
use super::protocol::{SubnetLoss, TrainEvent};
use super::schedule::{position_of, stage_steps, steps_per_epoch};
use super::task::{EvalPoint, StepInput, Student, Task};
use super::watchdog::{Verdict, Watchdog};

pub use super::placement::Placement;
use crate::files::lock::RunLock;
use crate::mlfs::adapters::AdaptedSupernet;
use crate::mlfs::rewire::LayerOrder;
use crate::mlfs::sampler::sample_step;
use crate::mlfs::scaling::gradient_scale;
use crate::model::weights::{save_f32, WeightStore};
use anyhow::{bail, Context, Result};
use candle_core::Tensor;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// A step's students with their summed gradients (one slot per optimizer parameter) and
/// unweighted losses.
pub struct StepGradients {
    pub students: Vec<Student>,
    pub grads: super::task::Grads,
    pub losses: Vec<f64>,
}

/// What the control callback tells the loop between steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    Stop,
}

/// Called between steps with the global step and a way to emit events; says go on or stop.
pub type Control<'a> = dyn FnMut(usize, &mut dyn FnMut(TrainEvent)) -> Flow + 'a;

/// What a resume may do beyond continuing from the newest checkpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ResumeOptions {
    /// Start from the first step when there is no checkpoint.
    pub restart: bool,
    /// Continue although the data files changed since the run started.
    pub allow_changed_data: bool,
}

/// `supernet.json`, written beside `supernet.safetensors` when a run finishes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SupernetMeta {
    pub teacher: PathBuf,
    pub rank: usize,
    pub lora_alpha: f64,
    /// Rewiring orders applied to the teacher (classifier runs that rewired).
    #[serde(default)]
    pub orders: Option<Vec<LayerOrder>>,
    /// The task's own fields.
    #[serde(flatten)]
    pub task: serde_json::Map<String, serde_json::Value>,
}

/// One run: configuration, folder, task, stage budgets, position, optimizer and event log.
pub struct Run<T: Task> {
    pub config: RunConfig,
    pub run_dir: PathBuf,
    pub task: T,
    /// Steps of stages 0, 1, 2 (0 when disabled).
    pub stage_steps: Vec<usize>,
    /// Optimizer steps completed.
    pub global_step: usize,
    optimizer: Option<(usize, AdamW)>,
    log: EventLog,
    /// Warnings from opening the run, logged when it starts.
    notes: Vec<String>,
    /// Stops a diverging run before it saves anything.
    watchdog: Watchdog,
    /// The run folder's writer lock (training runs only: one writer at a time).
    lock: Option<RunLock>,
    /// The other ranks of a data-parallel run (`None`: this process trains alone).
    /// (In a mutex only so that a run stays `Sync`: the trainer alone ever uses it.)
    group: Option<std::sync::Mutex<Box<dyn Collective>>>,
}

/// Checks a configuration and creates the folder of a new run (which must not hold one).
pub fn check_new_run(config: &RunConfig, run_dir: &Path) -> Result<()> {
    let errors = config.validate();
    if !errors.is_empty() {
        let list: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        bail!("invalid run configuration: {}", list.join("; "));
    }
    if run_dir.join("config.ron").exists() {
        bail!(
            "{}: already holds a run; resume it with --resume or choose another folder",
            run_dir.display()
        );
    }
    std::fs::create_dir_all(run_dir)
        .with_context(|| format!("{}: cannot create run folder", run_dir.display()))
}

/// A run folder's `config.ron`; an error saying what a run folder is when there is none.
fn run_config_path(run_dir: &Path) -> Result<PathBuf> {
    let path = run_dir.join("config.ron");
    if path.symlink_metadata().is_err() {
        bail!(
            "{}: not a run folder (it has no config.ron); give a folder written by `train`",
            crate::files::shown(run_dir)
        );
    }
    Ok(path)
}

impl<T: Task> Run<T> {
    /// Prepares a new run in `run_dir` (created; must not already hold a run).
    pub fn create(config: RunConfig, run_dir: &Path) -> Result<Self> {
        check_new_run(&config, run_dir)?;
        let lock = RunLock::acquire(run_dir)?;
        // Re-checked under the lock: another process may have created a run here meanwhile.
        check_new_run(&config, run_dir)?;
        let mut run = Self::build(config, run_dir)?;
        run.lock = Some(lock);
        // Subnets to measure at the end must fit the teacher: say so now, not after training.
        crate::train::config::listed_subnets(&run.config, &run.task.space().teacher)?;
        run.config.save(&run_dir.join("config.ron"))?;
        run.task.save_extras(run_dir)?;
        data_record::save(run_dir, &run.config)?;
        Ok(run)
    }

    /// Reopens a run from its folder and latest complete checkpoint (from the start if none).
    pub fn resume(run_dir: &Path) -> Result<Self> {
        Self::resume_on(run_dir, Placement::default())
    }

    /// [`Self::resume`] on another device or precision than the run was configured with.
    pub fn resume_on(run_dir: &Path, placement: Placement) -> Result<Self> {
        Self::resume_with(run_dir, placement, ResumeOptions::default())
    }

    /// Reopens a run from its newest checkpoint that reads back. Without one it is an error,
    /// unless `restart` asks to train the run again from its first step; data changed since the
    /// run started is an error unless allowed.
    pub fn resume_with(
        run_dir: &Path,
        placement: Placement,
        options: ResumeOptions,
    ) -> Result<Self> {
        let config_path = run_config_path(run_dir)?;
        let lock = RunLock::acquire(run_dir)?;
        let config = placement.apply(RunConfig::load(&config_path)?);
        if !options.allow_changed_data {
            data_record::check(run_dir, &config)?;
        }
        let restart = options.restart;
        let mut run = Self::build(config, run_dir)?;
        run.lock = Some(lock);
        // Under the lock: no other writer's temporary files can be in flight.
        crate::files::atomic::remove_stale_temps(run_dir);
        if let Some(warning) = run.log.repair()? {
            run.notes.push(warning);
        }
        let latest = checkpoint::latest(run_dir)?;
        if latest.is_none() && !restart {
            bail!(
                "{}: no complete checkpoint to resume from; train it again from the first \
                 step with `train --resume {} --restart`",
                run_dir.display(),
                run_dir.display()
            );
        }
        if let Some(((state, tensors, dir), skipped)) = latest {
            for why in skipped {
                run.notes
                    .push(format!("skipped an unreadable checkpoint: {why}"));
            }
            if run
                .notes
                .iter()
                .any(|n| n.starts_with("skipped an unreadable"))
            {
                run.notes.push(format!("resuming from {}", dir.display()));
            }
            run.continue_from(&state, &tensors, &dir)?;
        }
        Ok(run)
    }

    /// Takes a checkpoint's weights, step, stage and optimizer moments to train on from there.
    fn continue_from(
        &mut self,
        state: &CheckpointState,
        tensors: &HashMap<String, Tensor>,
        dir: &Path,
    ) -> Result<()> {
        let unfit = || format!("{}: checkpoint does not fit this run", dir.display());
        self.check_state(state).with_context(unfit)?;
        self.restore(state.orders.as_deref(), tensors)
            .with_context(unfit)?;
        self.global_step = state.global_step;
        let (stage, _) = self.position();
        self.task.net_mut().set_stage(Some(stage.min(2)))?;
        if let Some(stage) = state.optimizer_stage {
            let params = self.task.net().trainable(stage);
            let mut opt = AdamW::new(params, self.config.weight_decay)?;
            opt.load_state(tensors, state.optimizer_t)?;
            self.optimizer = Some((stage, opt));
        }
        Ok(())
    }

    /// Opens a finished (or stopped) run for evaluation and export: every stage merged.
    pub fn open_trained(run_dir: &Path) -> Result<Self> {
        Self::open_trained_on(run_dir, Placement::default())
    }

    /// [`Self::open_trained`] on another device or precision than the run was configured with.
    pub fn open_trained_on(run_dir: &Path, placement: Placement) -> Result<Self> {
        let config = placement.apply(RunConfig::load(&run_config_path(run_dir)?)?);
        let mut run = Self::build(config, run_dir)?;
        let weights = run_dir.join("supernet.safetensors");
        if weights.is_file() {
            let meta_path = run_dir.join("supernet.json");
            let text = crate::files::read_text(&meta_path, "supernet metadata")?;
            let meta: SupernetMeta = serde_json::from_str(&text)
                .with_context(|| format!("{}: invalid supernet metadata", meta_path.display()))?;
            let tensors = WeightStore::load(&weights, &[])?.into_tensors();
            run.restore(meta.orders.as_deref(), &tensors)
                .with_context(|| format!("{}: does not fit this run", weights.display()))?;
            run.global_step = run.total_steps();
        } else if let Some(((state, tensors, dir), _)) = checkpoint::latest(run_dir)? {
            run.check_state(&state)
                .with_context(|| format!("{}: checkpoint does not fit this run", dir.display()))?;
            run.restore(state.orders.as_deref(), &tensors)
                .with_context(|| format!("{}: checkpoint does not fit this run", dir.display()))?;
            run.global_step = state.global_step;
        } else {
            bail!(
                "{}: no trained supernet and no checkpoint yet",
                run_dir.display()
            );
        }
        run.task.net_mut().set_stage(None)?;
        Ok(run)
    }

    fn build(config: RunConfig, run_dir: &Path) -> Result<Self> {
        let task = T::build(&config)?;
        let notes = task.warnings().to_vec();
        let config_watchdog = config.watchdog.clone();
        let stage_steps = stage_steps(&config, task.train_len());
        if let Some(&n) = stage_steps
            .iter()
            .find(|&&n| n > super::config::MAX_STAGE_STEPS)
        {
            bail!(
                "a stage of {n} steps is more than {} (an Epochs budget on this much data)",
                super::config::MAX_STAGE_STEPS
            );
        }
        Ok(Self {
            config,
            run_dir: run_dir.to_path_buf(),
            task,
            stage_steps,
            global_step: 0,
            optimizer: None,
            log: EventLog::new(run_dir),
            notes,
            watchdog: Watchdog::new(config_watchdog),
            lock: None,
            group: None,
        })
    }

    /// Opens, on a rank other than 0, the run rank 0 created or resumed: its configuration and
    /// the checkpoint of `start_step` (none at step 0), without taking the lock or writing.
    pub fn join(run_dir: &Path, placement: Placement, start_step: usize) -> Result<Self> {
        let config = placement.apply(RunConfig::load(&run_config_path(run_dir)?)?);
        let mut run = Self::build(config, run_dir)?;
        run.log = EventLog::silent(run_dir);
        // Rank 0 said what it noticed already.
        run.notes.clear();
        if start_step == 0 {
            return Ok(run);
        }
        let Some(((state, tensors, dir), _)) = checkpoint::latest(run_dir)? else {
            bail!(
                "{}: rank 0 starts from step {start_step} but this rank finds no checkpoint (is the run folder on a filesystem every rank sees?)",
                run_dir.display()
            );
        };
        if state.global_step != start_step {
            bail!(
                "{}: rank 0 starts from step {start_step}, this rank's newest checkpoint is step {}",
                dir.display(),
                state.global_step
            );
        }
        run.continue_from(&state, &tensors, &dir)?;
        Ok(run)
    }

    /// Trains from here on as one rank of `group`: each step on this rank's shard of the batch,
    /// gradients and losses summed over the ranks; rank 0 alone writes the run's files.
    pub fn set_group(&mut self, group: Box<dyn Collective>) {
        if group.rank() != 0 {
            self.log = EventLog::silent(&self.run_dir);
        }
        self.group = Some(std::sync::Mutex::new(group));
    }

    /// The group this rank sums through, when it has one.
    fn group_mut(&mut self) -> Option<&mut (dyn Collective + 'static)> {
        let group = self.group.as_mut()?;
        // Poisoned only by a panic inside a sum, after which the run is over anyway.
        let boxed = match group.get_mut() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        Some(boxed.as_mut())
    }

    /// This process's rank (0 when training alone).
    pub fn rank(&self) -> usize {
        self.group
            .as_ref()
            .and_then(|g| g.lock().ok().map(|g| g.rank()))
            .unwrap_or(0)
    }

    /// The number of ranks training this run (1 when alone).
    pub fn world_size(&self) -> usize {
        self.group
            .as_ref()
            .and_then(|g| g.lock().ok().map(|g| g.world_size()))
            .unwrap_or(1)
    }

    /// Whether this process writes the run's files (rank 0).
    fn writes(&self) -> bool {
        self.rank() == 0
    }

    /// Checks a checkpoint's scalar state against this run: its step within the run's budget,
    /// its optimizer moments belonging to the stage that step is in, and `config.ron`'s stage
    /// budgets not edited so that steps already taken would count for another stage.
    fn check_state(&self, state: &CheckpointState) -> Result<()> {
        if let Some(saved) = &state.stage_steps {
            let mut start = 0;
            for (s, (&then, &now)) in saved.iter().zip(&self.stage_steps).enumerate() {
                let done = state.global_step.saturating_sub(start).min(then);
                let finished = state.global_step >= start + then;
                if (finished && now != then) || (!finished && done > 0 && now < done) {
                    bail!(
                        "stage {s} had {then} steps when this was saved ({done} taken) and config.ron now gives it {now}: a stage already trained cannot change its budget"
                    );
                }
                start += then;
            }
        }
        let total = self.total_steps();
        if state.global_step > total {
            bail!(
                "it is at step {} but the run has {total} steps (were config.ron's stage budgets shrunk?)",
                state.global_step
            );
        }
        if let Some(stage) = state.optimizer_stage {
            // The moments belong to the stage of the last step taken, or to the next step's
            // stage when the run stopped just as that stage began.
            let stage_of = |g: usize| position_of(g, &self.stage_steps).0;
            let last = state.global_step.checked_sub(1).map(stage_of);
            let next = stage_of(state.global_step);
            if stage > 2 || (last != Some(stage) && next != stage) {
                bail!(
                    "its optimizer state belongs to stage {stage}, but under config.ron's budgets step {} is in stage {next}",
                    state.global_step
                );
            }
            // Adam's step count is the steps taken in that stage (its bias correction uses it).
            let start: usize = self.stage_steps[..stage].iter().sum();
            let taken = state
                .global_step
                .saturating_sub(start)
                .min(self.stage_steps[stage]);
            if state.optimizer_t != taken {
                bail!(
                    "its optimizer has taken {} steps but stage {stage} has had {taken}",
                    state.optimizer_t
                );
            }
        } else if position_of(state.global_step, &self.stage_steps).1 > 0 {
            bail!(
                "it is at step {} inside a stage but holds no optimizer state",
                state.global_step
            );
        }
        Ok(())
    }

    /// Takes the run folder's writer lock unless this run holds it already (a palette
    /// measurement writes into the run, so two at once, or one beside training, are refused).
    pub fn lock_for_writing(&mut self) -> Result<()> {
        if self.lock.is_none() {
            self.lock = Some(RunLock::acquire(&self.run_dir)?);
        }
        Ok(())
    }

    /// Warnings a reader of this run should show: an unfinished run, or one another process is
    /// training right now (what is read is its last complete checkpoint).
    pub fn reader_notes(&self) -> Vec<String> {
        let mut notes = Vec::new();
        let other_writer = match self.lock {
            // Our own lock (a palette measurement): nobody else writes the run.
            Some(_) => None,
            None => crate::files::lock::writer_of(&self.run_dir),
        };
        if let Some(pid) = other_writer {
            notes.push(format!(
                "{}: process {pid} is training this run; using its last complete checkpoint (step {} of {})",
                crate::files::shown(&self.run_dir),
                self.global_step,
                self.total_steps()
            ));
        } else if self.global_step < self.total_steps() {
            notes.push(format!(
                "{}: the run is unfinished (step {} of {}); results are those of its last checkpoint",
                crate::files::shown(&self.run_dir),
                self.global_step,
                self.total_steps()
            ));
        }
        notes
    }

    /// Rewiring first (it permutes the teacher the adapters belong to), then the stored tensors.
    fn restore(
        &mut self,
        orders: Option<&[LayerOrder]>,
        tensors: &HashMap<String, Tensor>,
    ) -> Result<()> {
        if let Some(orders) = orders {
            self.task.restore_orders(orders)?;
        }
        self.task.net_mut().load_state(tensors)
    }

    /// Total optimizer steps of the run.
    pub fn total_steps(&self) -> usize {
        self.stage_steps.iter().sum()
    }

    /// (stage, step within stage) of the next step; stage 3 when the run is complete.
    pub fn position(&self) -> (usize, usize) {
        position_of(self.global_step, &self.stage_steps)
    }

    fn emit(&mut self, event: TrainEvent, sink: &mut dyn FnMut(TrainEvent)) {
        self.log.emit(event, sink);
    }

    /// Runs from the current position to the end or until `control` says stop (checkpoint
    /// kept); returns true when stopped early.
    pub fn run(
        &mut self,
        control: &mut Control<'_>,
        sink: &mut dyn FnMut(TrainEvent),
    ) -> Result<bool> {
        let started = TrainEvent::RunStarted {
            run_dir: self.run_dir.display().to_string(),
            total_steps: self.total_steps(),
            stage_steps: self.stage_steps.clone(),
            start_step: self.global_step,
            majority_accuracy: self.task.majority_accuracy(),
            device: crate::model::device::device_name(self.task.device()),
            precision: format!("{:?}", self.config.precision),
            world_size: self.world_size(),
        };
        self.emit(started, sink);
        for note in std::mem::take(&mut self.notes) {
            self.emit(TrainEvent::log("warn", note), sink);
        }
        if T::EVALUATES_AT_START && self.global_step == 0 && self.writes() {
            let stage = self.position().0.min(2);
            self.task.net_mut().set_stage(Some(stage))?;
            let at = EvalPoint {
                stage,
                global_step: 0,
                with_teacher: true,
            };
            let event = self.task.evaluate(&self.config, at)?;
            self.emit(event, sink);
        }
        loop {
            let (stage, step_in_stage) = self.position();
            if stage >= 3 {
                break;
            }
            if step_in_stage == 0 {
                self.start_stage(stage, sink)?;
            }
            let mut flow = control(self.global_step, &mut |e| sink(e));
            let mut devices_mb = Vec::new();
            let memory = crate::model::device::memory_in_use_mb(self.task.device());
            let device = self.task.device().clone();
            if let Some(group) = self.group_mut() {
                let agreed = sync::agree(group, flow == Flow::Stop, memory, &device)?;
                flow = if agreed.stop {
                    Flow::Stop
                } else {
                    Flow::Continue
                };
                devices_mb = agreed.memory_mb;
            }
            if flow == Flow::Stop {
                self.checkpoint(sink)?;
                let global_step = self.global_step;
                let stopped = TrainEvent::Finished {
                    global_step,
                    stopped: true,
                };
                self.emit(stopped, sink);
                return Ok(true);
            }
            let clock = Instant::now();
            let (losses, grad_norm, learning_rate) = self.train_step(stage, step_in_stage)?;
            self.global_step += 1;
            let global_step = self.global_step;
            // Before anything is logged or saved: a diverged step must not reach a checkpoint.
            match self
                .watchdog
                .check(&losses, grad_norm, (global_step, stage), &self.run_dir)
            {
                Verdict::Stop(why) => {
                    let diverged = TrainEvent::Diverged {
                        global_step,
                        stage,
                        reason: why.clone(),
                        last_good_step: checkpoint::complete_steps(&self.run_dir).last().copied(),
                    };
                    self.emit(diverged, sink);
                    bail!(why);
                }
                Verdict::Warn(why) => self.emit(TrainEvent::log("warn", why), sink),
                Verdict::Fine => {}
            }
            let step = TrainEvent::Step {
                stage,
                step_in_stage,
                global_step,
                learning_rate,
                losses,
                grad_norm,
                seconds: clock.elapsed().as_secs_f64(),
                devices_mb,
            };
            self.emit(step, sink);
            let stage_end = step_in_stage + 1 == self.stage_steps[stage];
            let every = |n: usize| n > 0 && global_step.is_multiple_of(n);
            if (stage_end || every(self.config.eval_every)) && self.writes() {
                let at = EvalPoint {
                    stage,
                    global_step,
                    with_teacher: false,
                };
                let event = self.task.evaluate(&self.config, at)?;
                self.emit(event, sink);
            }
            if stage_end || every(self.config.checkpoint_every) {
                self.checkpoint(sink)?;
            }
        }
        if self.writes() {
            let message = self.finish()?;
            self.emit(TrainEvent::log("info", message), sink);
        }
        let global_step = self.global_step;
        let finished = TrainEvent::Finished {
            global_step,
            stopped: false,
        };
        self.emit(finished, sink);
        Ok(false)
    }

    /// Enters a stage: the task's preparation (rewiring), the stage's adapters, a fresh optimizer.
    pub fn start_stage(&mut self, stage: usize, sink: &mut dyn FnMut(TrainEvent)) -> Result<()> {
        if let Some(message) = self.task.before_stage(&self.config, stage)? {
            self.emit(TrainEvent::log("info", message), sink);
        }
        self.task.net_mut().set_stage(Some(stage))?;
        let params = self.task.net().trainable(stage);
        self.optimizer = Some((stage, AdamW::new(params, self.config.weight_decay)?));
        let started = TrainEvent::StageStarted {
            stage,
            global_step: self.global_step,
            steps: self.stage_steps[stage],
        };
        self.emit(started, sink);
        Ok(())
    }

    /// The example (or block) indices of one step: the seeded epoch order, batch by batch.
    pub fn step_indices(&self, stage: usize, step_in_stage: usize) -> Vec<usize> {
        let n = self.task.train_len();
        let b = self.config.batch_size.min(n);
        let spe = steps_per_epoch(n, b);
        let (epoch, i) = (step_in_stage / spe, step_in_stage % spe);
        let order = epoch_order(n, self.config.seed, stage, epoch);
        let start = i * b;
        order[start..(start + b).min(n)].to_vec()
    }

    /// The students of the next step with their gradient-scale weights: the listed ones, or
    /// the sandwich (maxnet, minnet, random subnets) drawn for this step.
    pub fn students(&self, stage: usize) -> Vec<Student> {
        let fixed = self.task.fixed_students();
        let c = &self.config;
        let mut specs = fixed.to_vec();
        if fixed.is_empty() {
            let space = self.task.space();
            for s in sample_step(space, stage, c.random_subnets, c.seed, self.global_step) {
                if !(T::DISTINCT_STUDENTS && specs.contains(&s)) {
                    specs.push(s);
                }
            }
        }
        let reported = self.task.report_subnets();
        let n_max = self.task.subnet_size(&self.task.space().maxnet(), c);
        let role_of = |spec: &crate::model::SubnetSpec| {
            let listed = reported.iter().find(|(_, s)| s == spec);
            listed.filter(|_| !fixed.is_empty()).map(|(r, _)| r.clone())
        };
        specs
            .into_iter()
            .map(|spec| Student {
                role: role_of(&spec),
                weight: gradient_scale(n_max, self.task.subnet_size(&spec, c), c.gamma),
                spec,
            })
            .collect()
    }

    /// The gradients and losses of the next step of `stage`, before the optimizer takes them:
    /// this rank's shard of the batch, summed over the ranks when there are several (every
    /// rank gets the whole batch's).
    pub fn step_gradients(&mut self, stage: usize, step_in_stage: usize) -> Result<StepGradients> {
        let whole = self.step_indices(stage, step_in_stage);
        let (rank, world) = (self.rank(), self.world_size());
        let batch = &whole[parallel::shard_range(whole.len(), rank, world)];
        let share = if world == 1 {
            BatchShare::WHOLE
        } else {
            BatchShare::of(
                self.task.batch_counts(batch),
                self.task.batch_counts(&whole),
            )
        };
        let students = self.students(stage);
        let (_, opt) = self
            .optimizer
            .as_ref()
            .context("optimizer not initialised")?;
        let mut grads = Vec::new();
        let input = StepInput {
            config: &self.config,
            batch,
            students: &students,
            opt,
            share,
        };
        // Inside rayon's pool: the step's split products then run by work stealing (blas.rs).
        let task = &self.task;
        let mut losses = if batch.is_empty() {
            // A batch smaller than the world: this rank adds nothing but takes part in the sum.
            vec![0.0; students.len()]
        } else {
            crate::model::blas::on_product_pool(|| task.student_gradients(&input, &mut grads))?
        };
        if let Some(group) = self.group.as_mut() {
            let group = match group.get_mut() {
                Ok(g) => g,
                Err(poisoned) => poisoned.into_inner(),
            };
            sync::sum_gradients(group.as_mut(), &opt.params, &mut grads, &mut losses)?;
        }
        Ok(StepGradients {
            students,
            grads,
            losses,
        })
    }

    /// One optimizer step of `stage`; returns each student's loss, the gradient norm and the lr.
    pub fn train_step(
        &mut self,
        stage: usize,
        step_in_stage: usize,
    ) -> Result<(Vec<SubnetLoss>, f64, f64)> {
        let StepGradients {
            students,
            grads,
            losses,
        } = self.step_gradients(stage, step_in_stage)?;
        // The lap's clock starts here, so it times the update itself (gradient norm and AdamW).
        let device = self.task.device().clone();
        let laps = super::laps::Laps::from_env(&device);
        let (grad_norm, lr) = self.apply_gradients(stage, step_in_stage, &grads)?;
        drop(grads);
        laps.lap("optimizer step");
        let losses = students
            .into_iter()
            .zip(losses)
            .map(|(s, loss)| SubnetLoss {
                subnet: s.spec.to_string(),
                loss,
                weight: s.weight,
                role: s.role,
            })
            .collect();
        Ok((losses, grad_norm, lr))
    }

    /// The optimizer's update of step `step_in_stage` of `stage` with `grads` (learning-rate
    /// schedule, clipping); returns the gradient norm and the learning rate.
    pub fn apply_gradients(
        &mut self,
        stage: usize,
        step_in_stage: usize,
        grads: &super::task::Grads,
    ) -> Result<(f64, f64)> {
        let stage_cfg = &self.config.stages[stage];
        let steps = self.stage_steps[stage];
        let warmup = (steps as f64 * stage_cfg.warmup_ratio).round() as usize;
        let lr = learning_rate(step_in_stage, steps, warmup, stage_cfg.learning_rate);
        let clip = self.config.grad_clip;
        let (_, opt) = self
            .optimizer
            .as_mut()
            .context("optimizer not initialised")?;
        let grad_norm = opt.step(grads, lr, clip)?;
        self.task.net().projections().renormalise()?;
        Ok((grad_norm, lr))
    }

    fn checkpoint(&mut self, sink: &mut dyn FnMut(TrainEvent)) -> Result<()> {
        if !self.writes() {
            return Ok(());
        }
        let mut tensors = self.task.net().named_state();
        let (optimizer_stage, optimizer_t) = match &self.optimizer {
            Some((stage, opt)) => {
                tensors.extend(opt.state());
                (Some(*stage), opt.t)
            }
            None => (None, 0),
        };
        let state = CheckpointState {
            global_step: self.global_step,
            optimizer_stage,
            optimizer_t,
            orders: self.task.orders(),
            stage_steps: Some(self.stage_steps.clone()),
        };
        let path = checkpoint::save(&self.run_dir, &state, &tensors)?;
        let saved = TrainEvent::CheckpointSaved {
            global_step: self.global_step,
            path: path.display().to_string(),
        };
        self.emit(saved, sink);
        Ok(())
    }

    /// Merges every stage and writes `supernet.safetensors` and `supernet.json`.
    fn finish(&mut self) -> Result<String> {
        self.task.net_mut().set_stage(None)?;
        let meta = SupernetMeta {
            teacher: RunConfig::resolve(&self.config.teacher),
            rank: self.config.rank,
            lora_alpha: self.config.lora_alpha,
            orders: self.task.orders(),
            task: self.task.metadata(),
        };
        // The metadata first: readers take the weights as the sign of a finished run, so a
        // kill between the two leaves a run that still opens from its last checkpoint.
        crate::files::write_atomic(
            &self.run_dir.join("supernet.json"),
            &serde_json::to_vec_pretty(&meta)?,
        )?;
        save_f32(
            &self.run_dir.join("supernet.safetensors"),
            &self.task.net().named_state(),
        )?;
        Ok(format!(
            "trained supernet saved in {}",
            self.run_dir.display()
        ))
    }
}
