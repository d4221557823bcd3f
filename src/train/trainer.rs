//! The MLFS training loop: stages, sandwich sampling, gradient scaling, distillation, checkpoints.

use super::checkpoint::{self, CheckpointState};
use super::config::RunConfig;
use super::data::{epoch_order, Dataset};
use super::events::EventLog;
use super::optim::{learning_rate, AdamW};
use super::protocol::{SubnetAccuracy, SubnetLoss, TrainEvent};
use super::stage_loop::{run_stages, stage_steps, StagedRun};
use crate::cli::forward::batch_tensors;
use crate::eval::accuracy::split_accuracy;
use crate::mlfs::distill::{combine, cross_entropy, feature_loss, kd_loss, DistillWeights};
use crate::mlfs::rewire::{self, LabelledBatch, LayerOrder};
use crate::mlfs::sampler::sample_step;
use crate::mlfs::scaling::{active_adapter_params, gradient_scale};
use crate::mlfs::space::SearchSpace;
use crate::mlfs::supernet::Supernet;
use crate::model::{EncoderTeacher, SubnetSpec};
use anyhow::{bail, Context, Result};
use candle_core::{Device, Tensor};
use std::path::{Path, PathBuf};

/// What the control callback tells the loop between steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    Stop,
}

/// Called between steps with the global step and a way to emit events; says go on or stop.
pub type Control<'a> = dyn FnMut(usize, &mut dyn FnMut(TrainEvent)) -> Flow + 'a;

/// Trained-supernet metadata stored beside `supernet.safetensors`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct SupernetMeta {
    pub teacher: PathBuf,
    pub labels: Vec<String>,
    pub rank: usize,
    pub lora_alpha: f64,
    pub orders: Option<Vec<LayerOrder>>,
}

/// One run: its configuration, folder, model, data and position.
pub struct Trainer {
    pub config: RunConfig,
    pub run_dir: PathBuf,
    pub net: Supernet,
    pub data: Dataset,
    pub space: SearchSpace,
    pub pad_id: u32,
    pub tokenizer: crate::model::TextTokenizer,
    /// Steps of stages 0, 1, 2 (0 when disabled).
    pub stage_steps: Vec<usize>,
    /// Optimizer steps completed.
    pub global_step: usize,
    orders: Option<Vec<LayerOrder>>,
    optimizer: Option<(usize, AdamW)>,
    log: EventLog,
}

/// Steps in one pass over `n` examples at batch size `b`.
pub fn steps_per_epoch(n: usize, b: usize) -> usize {
    n.div_ceil(b.max(1)).max(1)
}

/// (stage, step within stage) of global step `global_step`; stage 3 when past the end.
pub fn position_of(global_step: usize, stage_steps: &[usize]) -> (usize, usize) {
    let mut left = global_step;
    for (s, &n) in stage_steps.iter().enumerate() {
        if left < n {
            return (s, left);
        }
        left -= n;
    }
    (3, 0)
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

impl Trainer {
    /// Prepares a new run in `run_dir` (created; must not already hold a run).
    pub fn create(config: RunConfig, run_dir: &Path) -> Result<Self> {
        check_new_run(&config, run_dir)?;
        let trainer = Self::build(config, run_dir)?;
        trainer.config.save(&run_dir.join("config.ron"))?;
        let labels = serde_json::to_vec_pretty(&trainer.data.labels)?;
        crate::util::write_atomic(&run_dir.join("labels.json"), &labels)?;
        Ok(trainer)
    }

    /// Reopens a run from its folder and latest complete checkpoint.
    pub fn resume(run_dir: &Path) -> Result<Self> {
        let config = RunConfig::load(&run_dir.join("config.ron"))?;
        let mut trainer = Self::build(config, run_dir)?;
        if let Some((state, tensors, dir)) = checkpoint::latest(run_dir)? {
            if let Some(orders) = &state.orders {
                rewire::apply(&mut trainer.net, orders)?;
            }
            trainer.orders = state.orders.clone();
            trainer
                .net
                .load_state(&tensors)
                .with_context(|| format!("{}: checkpoint does not fit this run", dir.display()))?;
            trainer.global_step = state.global_step;
            if let Some(stage) = state.optimizer_stage {
                let mut opt =
                    AdamW::new(trainer.net.trainable(stage), trainer.config.weight_decay)?;
                opt.load_state(&tensors, state.optimizer_t)?;
                trainer.optimizer = Some((stage, opt));
            }
            let (stage, _) = trainer.position();
            trainer.net.set_stage(Some(stage.min(2)))?;
        }
        Ok(trainer)
    }

    /// Opens a finished (or stopped) run for evaluation: all stages merged, nothing trainable.
    pub fn open_trained(run_dir: &Path) -> Result<Self> {
        let config = RunConfig::load(&run_dir.join("config.ron"))?;
        let mut trainer = Self::build(config, run_dir)?;
        let weights = run_dir.join("supernet.safetensors");
        if weights.is_file() {
            let meta_path = run_dir.join("supernet.json");
            let text = std::fs::read_to_string(&meta_path).with_context(|| {
                format!("{}: cannot read supernet metadata", meta_path.display())
            })?;
            let meta: SupernetMeta = serde_json::from_str(&text)
                .with_context(|| format!("{}: invalid supernet metadata", meta_path.display()))?;
            if let Some(orders) = &meta.orders {
                rewire::apply(&mut trainer.net, orders)?;
            }
            trainer.orders = meta.orders;
            let tensors = crate::model::weights::WeightStore::load(&weights, &[])?.into_tensors();
            trainer
                .net
                .load_state(&tensors)
                .with_context(|| format!("{}: does not fit this run", weights.display()))?;
            trainer.global_step = trainer.total_steps();
        } else if let Some((state, tensors, dir)) = checkpoint::latest(run_dir)? {
            if let Some(orders) = &state.orders {
                rewire::apply(&mut trainer.net, orders)?;
            }
            trainer.orders = state.orders;
            trainer
                .net
                .load_state(&tensors)
                .with_context(|| format!("{}: checkpoint does not fit this run", dir.display()))?;
            trainer.global_step = state.global_step;
        } else {
            bail!(
                "{}: no trained supernet and no checkpoint yet",
                run_dir.display()
            );
        }
        trainer.net.set_stage(None)?;
        Ok(trainer)
    }

    /// Rewiring orders applied so far.
    pub fn orders(&self) -> Option<&[LayerOrder]> {
        self.orders.as_deref()
    }

    fn build(config: RunConfig, run_dir: &Path) -> Result<Self> {
        let teacher = EncoderTeacher::load(&RunConfig::resolve(&config.teacher))?;
        let data = Dataset::load(&config.data, &teacher.tokenizer, config.max_seq_len)?;
        let space = SearchSpace::new(teacher.encoder.shape(), &config.space)?;
        let pad_id = teacher.config.pad_token_id as u32;
        let net = Supernet::new(
            teacher.encoder,
            data.labels.names.len(),
            config.rank,
            config.lora_alpha,
            config.distill.projection_dim,
            config.distill.projection,
            config.seed,
        )?;
        let stage_steps = stage_steps(&config, data.train.len());
        Ok(Self {
            config,
            run_dir: run_dir.to_path_buf(),
            net,
            data,
            space,
            pad_id,
            tokenizer: teacher.tokenizer,
            stage_steps,
            global_step: 0,
            orders: None,
            optimizer: None,
            log: EventLog::new(run_dir),
        })
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

    /// Runs to the end or until `control` says stop; returns true when stopped early.
    pub fn run(
        &mut self,
        control: &mut Control<'_>,
        sink: &mut dyn FnMut(TrainEvent),
    ) -> Result<bool> {
        let majority = self.data.dev.majority_rate();
        self.emit(
            TrainEvent::RunStarted {
                run_dir: self.run_dir.display().to_string(),
                total_steps: self.total_steps(),
                stage_steps: self.stage_steps.clone(),
                start_step: self.global_step,
                majority_accuracy: majority,
            },
            sink,
        );
        run_stages(self, control, sink)
    }

    /// Enters a stage: rewires before stage 1 (once), activates its adapters, resets the optimizer.
    pub fn start_stage(&mut self, stage: usize, sink: &mut dyn FnMut(TrainEvent)) -> Result<()> {
        if stage >= 1 && self.config.rewire && self.orders.is_none() {
            self.net.set_stage(Some(stage))?;
            let batches = self.rewire_batches()?;
            let orders = rewire::rewire(&mut self.net, &batches)?;
            self.orders = Some(orders);
            self.emit(
                TrainEvent::log(
                    "info",
                    format!(
                        "rewired heads and FFN neurons by importance on {} batches",
                        batches.len()
                    ),
                ),
                sink,
            );
        }
        self.net.set_stage(Some(stage))?;
        let params = self.net.trainable(stage);
        self.optimizer = Some((stage, AdamW::new(params, self.config.weight_decay)?));
        self.emit(
            TrainEvent::StageStarted {
                stage,
                global_step: self.global_step,
                steps: self.stage_steps[stage],
            },
            sink,
        );
        Ok(())
    }

    fn rewire_batches(&self) -> Result<Vec<LabelledBatch>> {
        let order = epoch_order(self.data.train.len(), self.config.seed, 99, 0);
        order
            .chunks(self.config.batch_size)
            .take(self.config.rewire_batches.max(1))
            .map(|idx| self.labelled_batch(idx))
            .collect()
    }

    fn labelled_batch(&self, idx: &[usize]) -> Result<LabelledBatch> {
        let (batch, labels) = self.data.train.batch(idx, self.pad_id);
        let (ids, mask) = batch_tensors(&batch)?;
        let labels = Tensor::from_vec(labels, idx.len(), &Device::Cpu)?;
        Ok((ids, mask, labels))
    }

    /// The example indices of one step: the seeded epoch order, batch by batch.
    pub fn step_indices(&self, stage: usize, step_in_stage: usize) -> Vec<usize> {
        let n = self.data.train.len();
        let spe = steps_per_epoch(n, self.config.batch_size);
        let (epoch, b) = (step_in_stage / spe, step_in_stage % spe);
        let order = epoch_order(n, self.config.seed, stage, epoch);
        let start = b * self.config.batch_size;
        order[start..(start + self.config.batch_size).min(n)].to_vec()
    }

    /// One optimizer step of `stage`; returns each subnet's loss, the gradient norm and the lr.
    pub fn train_step(
        &mut self,
        stage: usize,
        step_in_stage: usize,
    ) -> Result<(Vec<SubnetLoss>, f64, f64)> {
        let idx = self.step_indices(stage, step_in_stage);
        let (ids, mask, labels) = self.labelled_batch(&idx)?;
        let specs = sample_step(
            &self.space,
            stage,
            self.config.random_subnets,
            self.config.seed,
            self.global_step,
        );
        let teacher = self.space.teacher;
        let n_max = active_adapter_params(&specs[0], &teacher, self.config.rank);
        let weights = DistillWeights {
            alpha: self.config.distill.alpha,
            beta: self.config.distill.beta,
            temperature: self.config.distill.temperature,
        };
        let (_, opt) = self
            .optimizer
            .as_ref()
            .context("optimizer not initialised")?;
        let mut grads = Vec::new();
        let max_out = self.net.forward(&ids, &mask, &specs[0], None)?;
        let max_loss = cross_entropy(&max_out.logits, &labels)?;
        let mut losses = vec![SubnetLoss {
            subnet: specs[0].to_string(),
            loss: max_loss.to_scalar::<f32>()? as f64,
            weight: 1.0,
            role: None,
        }];
        opt.accumulate(&max_loss.backward()?, &mut grads)?;
        let target_logits = max_out.logits.detach();
        let target_hidden: Vec<Tensor> = max_out
            .hidden
            .hidden_states
            .iter()
            .map(|h| h.detach())
            .collect();
        drop(max_out);
        for spec in &specs[1..] {
            let out = self.net.forward(&ids, &mask, spec, None)?;
            let task = cross_entropy(&out.logits, &labels)?;
            let kd = kd_loss(&out.logits, &target_logits, weights.temperature)?;
            let mut features = Vec::with_capacity(spec.layers.len());
            for (l, &g) in spec.layers.iter().enumerate() {
                let h_sub = &out.hidden.hidden_states[l + 1];
                let h_max = &target_hidden[g + 1];
                let f = match self.net.projection(g) {
                    Some(p) => feature_loss(h_sub, h_max, &p, &mask)?,
                    None => {
                        let d = h_max.dim(2)?;
                        let eye = Tensor::eye(d, candle_core::DType::F32, &Device::Cpu)?;
                        feature_loss(h_sub, h_max, &eye, &mask)?
                    }
                };
                features.push(f);
            }
            let loss = combine(&task, &kd, &features, weights)?;
            let n_j = active_adapter_params(spec, &teacher, self.config.rank);
            let w = gradient_scale(n_max, n_j, self.config.gamma);
            losses.push(SubnetLoss {
                subnet: spec.to_string(),
                loss: loss.to_scalar::<f32>()? as f64,
                weight: w,
                role: None,
            });
            // Gradient scaling: the subnet's loss enters the sum with weight (n₁/nⱼ)^γ.
            opt.accumulate(&(loss * w)?.backward()?, &mut grads)?;
        }
        let stage_cfg = &self.config.stages[stage];
        let steps = self.stage_steps[stage];
        let warmup = (steps as f64 * stage_cfg.warmup_ratio).round() as usize;
        let lr = learning_rate(step_in_stage, steps, warmup, stage_cfg.learning_rate);
        let (_, opt) = self
            .optimizer
            .as_mut()
            .context("optimizer not initialised")?;
        let grad_norm = opt.step(&grads, lr, self.config.grad_clip)?;
        self.net.renormalise_projections()?;
        Ok((losses, grad_norm, lr))
    }

    /// The subnets reported at each dev evaluation: maxnet, minnet and two medium ones.
    pub fn report_subnets(&self) -> Vec<(String, SubnetSpec)> {
        let mut out = vec![
            ("maxnet".to_string(), self.space.maxnet()),
            ("minnet".to_string(), self.space.minnet(2)),
        ];
        for (i, m) in self.space.mediums().into_iter().enumerate() {
            out.push((format!("medium-{}", i + 1), m));
        }
        out
    }

    fn dev_eval(&mut self, stage: usize, sink: &mut dyn FnMut(TrainEvent)) -> Result<()> {
        let mut results = Vec::new();
        for (role, spec) in self.report_subnets() {
            let accuracy = split_accuracy(&self.net, &self.data.dev, &spec, self.pad_id)?;
            results.push(SubnetAccuracy {
                role,
                subnet: spec.to_string(),
                accuracy,
            });
        }
        self.emit(
            TrainEvent::DevEval {
                stage,
                global_step: self.global_step,
                results,
            },
            sink,
        );
        Ok(())
    }

    fn checkpoint_now(&self) -> Result<PathBuf> {
        let mut tensors = self.net.named_state();
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
            orders: self.orders.clone(),
        };
        checkpoint::save(&self.run_dir, &state, &tensors)
    }

    /// Writes the trained supernet (adapters, head, projections) and its metadata.
    pub fn save_supernet(&self) -> Result<()> {
        crate::model::weights::save_f32(
            &self.run_dir.join("supernet.safetensors"),
            &self.net.named_state(),
        )?;
        let meta = SupernetMeta {
            teacher: RunConfig::resolve(&self.config.teacher),
            labels: self.data.labels.names.clone(),
            rank: self.config.rank,
            lora_alpha: self.config.lora_alpha,
            orders: self.orders.clone(),
        };
        crate::util::write_atomic(
            &self.run_dir.join("supernet.json"),
            &serde_json::to_vec_pretty(&meta)?,
        )
    }
}

impl StagedRun for Trainer {
    fn config(&self) -> &RunConfig {
        &self.config
    }
    fn stage_steps(&self) -> &[usize] {
        &self.stage_steps
    }
    fn global_step(&self) -> usize {
        self.global_step
    }
    fn set_global_step(&mut self, step: usize) {
        self.global_step = step;
    }
    fn emit(&mut self, event: TrainEvent, sink: &mut dyn FnMut(TrainEvent)) {
        self.log.emit(event, sink);
    }
    fn start_stage(&mut self, stage: usize, sink: &mut dyn FnMut(TrainEvent)) -> Result<()> {
        Trainer::start_stage(self, stage, sink)
    }
    fn train_step(&mut self, stage: usize, step: usize) -> Result<(Vec<SubnetLoss>, f64, f64)> {
        Trainer::train_step(self, stage, step)
    }
    fn evaluate(&mut self, stage: usize, sink: &mut dyn FnMut(TrainEvent)) -> Result<()> {
        self.dev_eval(stage, sink)
    }
    fn save_checkpoint(&mut self) -> Result<PathBuf> {
        self.checkpoint_now()
    }
    fn finish(&mut self) -> Result<String> {
        self.net.set_stage(None)?;
        self.save_supernet()?;
        Ok(format!(
            "trained supernet saved in {}",
            self.run_dir.display()
        ))
    }
}
