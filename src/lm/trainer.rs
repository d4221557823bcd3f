//! The decoder training loop: a frozen teacher, students trained through staged adapters or in
//! full, distillation on next-token distributions, validation loss, checkpoints, measurements.

use super::loss::next_token_targets;
use super::metrics::{evaluate_blocks, measure_entry, write_csv};
use super::step::{student_gradients, StudentStep, TeacherSignal};
use crate::cli::forward::resolve_spec;
use crate::eval::lm::{read_corpus, token_blocks};
use crate::mlfs::sampler::sample_step;
use crate::mlfs::scaling::{active_adapter_params_swiglu, decoder_params, gradient_scale};
use crate::mlfs::space::SearchSpace;
use crate::mlfs::supernet::{orthonormal, unit_columns, Param};
use crate::model::llama::student::{trainable_student, StudentInit};
use crate::model::llama::{DecoderTeacher, LlamaDecoder};
use crate::model::lowrank::{StagedLowRank, STAGES};
use crate::model::SubnetSpec;
use crate::train::checkpoint::{self, CheckpointState};
use crate::train::config::{LmConfig, ProjectionKind, RunConfig};
use crate::train::data::epoch_order;
use crate::train::events::EventLog;
use crate::train::optim::{learning_rate, AdamW};
use crate::train::protocol::{LmEvalResult, SubnetLoss, TrainEvent};
use crate::train::stage_loop::{run_stages, stage_steps, StagedRun};
use crate::train::trainer::{steps_per_epoch, Control};
use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor, Var};
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// What a decoder run stores beside `supernet.safetensors`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct LmMeta {
    pub teacher: PathBuf,
    pub train_base_weights: bool,
    pub init: StudentInit,
    pub rank: usize,
    pub lora_alpha: f64,
}

/// One decoder run: configuration, folder, teacher, students, data and position.
pub struct LmTrainer {
    pub config: RunConfig,
    pub lm: LmConfig,
    pub run_dir: PathBuf,
    /// The frozen teacher; in adapter mode its linears also carry the staged adapters.
    pub teacher: DecoderTeacher,
    /// The fully trained student and its parameters (`train_base_weights`).
    pub student: Option<(LlamaDecoder, Vec<Param>)>,
    /// P^m per teacher layer (empty for the identity option).
    pub projections: Vec<Var>,
    pub space: SearchSpace,
    /// The listed students (empty: sandwich sampling from the space).
    pub fixed_students: Vec<SubnetSpec>,
    pub train_blocks: Vec<Vec<u32>>,
    pub valid_blocks: Vec<Vec<u32>>,
    pub stage_steps: Vec<usize>,
    pub global_step: usize,
    optimizer: Option<(usize, AdamW)>,
    log: EventLog,
}

impl LmTrainer {
    /// Prepares a new decoder run in `run_dir` (created; must not already hold a run).
    pub fn create(config: RunConfig, run_dir: &Path) -> Result<Self> {
        crate::train::trainer::check_new_run(&config, run_dir)?;
        let trainer = Self::build(config, run_dir)?;
        trainer.config.save(&run_dir.join("config.ron"))?;
        Ok(trainer)
    }

    /// Reopens a decoder run from its latest complete checkpoint.
    pub fn resume(run_dir: &Path) -> Result<Self> {
        let config = RunConfig::load(&run_dir.join("config.ron"))?;
        let mut trainer = Self::build(config, run_dir)?;
        if let Some((state, tensors, dir)) = checkpoint::latest(run_dir)? {
            trainer
                .load_state(&tensors)
                .with_context(|| format!("{}: checkpoint does not fit this run", dir.display()))?;
            trainer.global_step = state.global_step;
            let (stage, _) = trainer.position();
            trainer.set_stage(Some(stage.min(2)))?;
            if let Some(stage) = state.optimizer_stage {
                let mut opt = AdamW::new(trainer.trainable(stage), trainer.config.weight_decay)?;
                opt.load_state(&tensors, state.optimizer_t)?;
                trainer.optimizer = Some((stage, opt));
            }
        }
        Ok(trainer)
    }

    /// Opens a finished (or stopped) run for evaluation and export: adapters merged.
    pub fn open_trained(run_dir: &Path) -> Result<Self> {
        let config = RunConfig::load(&run_dir.join("config.ron"))?;
        let mut trainer = Self::build(config, run_dir)?;
        let weights = run_dir.join("supernet.safetensors");
        if weights.is_file() {
            let tensors = crate::model::weights::WeightStore::load(&weights, &[])?.into_tensors();
            trainer
                .load_state(&tensors)
                .with_context(|| format!("{}: does not fit this run", weights.display()))?;
            trainer.global_step = trainer.total_steps();
        } else if let Some((state, tensors, dir)) = checkpoint::latest(run_dir)? {
            trainer
                .load_state(&tensors)
                .with_context(|| format!("{}: checkpoint does not fit this run", dir.display()))?;
            trainer.global_step = state.global_step;
        } else {
            bail!(
                "{}: no trained weights and no checkpoint yet",
                run_dir.display()
            );
        }
        trainer.set_stage(None)?;
        Ok(trainer)
    }

    fn build(config: RunConfig, run_dir: &Path) -> Result<Self> {
        let lm = config
            .lm
            .clone()
            .context("not a decoder run: the configuration has no `lm` section")?;
        let teacher_path = RunConfig::resolve(&config.teacher);
        if !teacher_path.exists() {
            bail!(
                "{}: teacher not found (the SmolLM2 teacher is fetched by scripts/fetch-smollm2.sh)",
                teacher_path.display()
            );
        }
        let mut teacher = DecoderTeacher::load(&teacher_path)?;
        let shape = teacher.decoder.shape();
        let space = SearchSpace::new(shape, &config.space)?;
        let fixed_students = lm
            .students
            .iter()
            .map(|s| resolve_spec(Some(s), &shape).context("lm.students"))
            .collect::<Result<Vec<_>>>()?;
        let used_layers: Vec<usize> = if fixed_students.is_empty() {
            (0..shape.layers).collect()
        } else {
            let mut l: Vec<usize> = fixed_students
                .iter()
                .flat_map(|s| s.layers.clone())
                .collect();
            l.sort_unstable();
            l.dedup();
            l
        };
        let eos = teacher.decoder.config.eos_token_id;
        let block = config.max_seq_len;
        let train_path = RunConfig::resolve(&config.data.train);
        let train_blocks = token_blocks(&read_corpus(&train_path)?, &teacher.tokenizer, block, eos)
            .with_context(|| format!("{}: training data", train_path.display()))?;
        let valid_path = RunConfig::resolve(&config.data.dev);
        let mut valid_blocks =
            token_blocks(&read_corpus(&valid_path)?, &teacher.tokenizer, block, eos)
                .with_context(|| format!("{}: validation data", valid_path.display()))?;
        valid_blocks.truncate(lm.eval_blocks);
        let mut rng = StdRng::seed_from_u64(config.seed);
        let student = if lm.train_base_weights {
            Some(trainable_student(
                &teacher.decoder,
                &used_layers,
                lm.init,
                config.seed,
            )?)
        } else {
            for &l in &used_layers {
                for lin in teacher.decoder.layers[l].linears_mut() {
                    let (out, inp) = lin.dims();
                    lin.lora = Some(StagedLowRank::new(
                        out,
                        inp,
                        config.rank,
                        config.lora_alpha,
                        &mut rng,
                    )?);
                }
            }
            None
        };
        let d = shape.hidden;
        let projections = match config.distill.projection {
            ProjectionKind::Identity => Vec::new(),
            _ => (0..shape.layers)
                .map(|_| {
                    Ok(Var::from_tensor(&orthonormal(
                        d,
                        config.distill.projection_dim,
                        &mut rng,
                    )?)?)
                })
                .collect::<Result<Vec<_>>>()?,
        };
        let stage_steps = stage_steps(&config, train_blocks.len());
        Ok(Self {
            lm,
            log: EventLog::new(run_dir),
            run_dir: run_dir.to_path_buf(),
            teacher,
            student,
            projections,
            space,
            fixed_students,
            train_blocks,
            valid_blocks,
            stage_steps,
            global_step: 0,
            optimizer: None,
            config,
        })
    }

    /// The decoder the students run on: the full-training copy, or the teacher with adapters.
    pub fn net(&self) -> &LlamaDecoder {
        match &self.student {
            Some((s, _)) => s,
            None => &self.teacher.decoder,
        }
    }

    /// Total optimizer steps of the run.
    pub fn total_steps(&self) -> usize {
        self.stage_steps.iter().sum()
    }

    /// (stage, step within stage) of the next step; stage 3 when complete.
    pub fn position(&self) -> (usize, usize) {
        crate::train::trainer::position_of(self.global_step, &self.stage_steps)
    }

    /// Activates one stage's adapters (merging the others); no-op for full training.
    pub fn set_stage(&mut self, stage: Option<usize>) -> Result<()> {
        if self.student.is_none() {
            for layer in &mut self.teacher.decoder.layers {
                for lin in layer.linears_mut() {
                    if lin.lora.is_some() {
                        lin.set_active_stage(stage)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// The tensors the optimizer updates in `stage`.
    pub fn trainable(&self, stage: usize) -> Vec<Param> {
        let mut out = Vec::new();
        match &self.student {
            Some((_, params)) => out.extend(params.iter().map(|p| Param {
                name: p.name.clone(),
                var: p.var.clone(),
                decay: p.decay,
            })),
            None => {
                for (name, a, b) in self.adapters(stage) {
                    out.push(Param {
                        name: format!("{name}.a{stage}"),
                        var: a,
                        decay: true,
                    });
                    out.push(Param {
                        name: format!("{name}.b{stage}"),
                        var: b,
                        decay: true,
                    });
                }
            }
        }
        if stage >= 1 && self.config.distill.projection == ProjectionKind::UnitNorm {
            for (l, p) in self.projections.iter().enumerate() {
                out.push(Param {
                    name: format!("projection.{l}"),
                    var: p.clone(),
                    decay: false,
                });
            }
        }
        out
    }

    /// `(name, A_s, B_s)` of every adapted linear.
    fn adapters(&self, stage: usize) -> Vec<(String, Var, Var)> {
        let mut out = Vec::new();
        for (l, layer) in self.teacher.decoder.layers.iter().enumerate() {
            for (i, lin) in [
                &layer.q,
                &layer.k,
                &layer.v,
                &layer.o,
                &layer.gate,
                &layer.up,
                &layer.down,
            ]
            .iter()
            .enumerate()
            {
                if let Some(lora) = &lin.lora {
                    out.push((
                        format!("adapter.{l}.{i}"),
                        lora.a[stage].clone(),
                        lora.b[stage].clone(),
                    ));
                }
            }
        }
        out
    }

    /// Every tensor the run trains and stores, by name.
    pub fn named_state(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        match &self.student {
            Some((_, params)) => out.extend(
                params
                    .iter()
                    .map(|p| (p.name.clone(), p.var.as_tensor().clone())),
            ),
            None => {
                for s in 0..STAGES {
                    for (name, a, b) in self.adapters(s) {
                        out.push((format!("{name}.a{s}"), a.as_tensor().clone()));
                        out.push((format!("{name}.b{s}"), b.as_tensor().clone()));
                    }
                }
            }
        }
        for (l, p) in self.projections.iter().enumerate() {
            out.push((format!("projection.{l}"), p.as_tensor().clone()));
        }
        out
    }

    fn load_state(&mut self, tensors: &HashMap<String, Tensor>) -> Result<()> {
        let mut vars: Vec<(String, Var)> = Vec::new();
        match &self.student {
            Some((_, params)) => {
                vars.extend(params.iter().map(|p| (p.name.clone(), p.var.clone())))
            }
            None => {
                for s in 0..STAGES {
                    for (name, a, b) in self.adapters(s) {
                        vars.push((format!("{name}.a{s}"), a));
                        vars.push((format!("{name}.b{s}"), b));
                    }
                }
            }
        }
        vars.extend(
            self.projections
                .iter()
                .enumerate()
                .map(|(l, p)| (format!("projection.{l}"), p.clone())),
        );
        for (name, var) in vars {
            let t = tensors
                .get(&name)
                .with_context(|| format!("tensor {name} is missing"))?;
            if t.dims() != var.dims() {
                bail!(
                    "tensor {name}: expected shape {:?}, found {:?}",
                    var.dims(),
                    t.dims()
                );
            }
            var.set(&t.to_dtype(DType::F32)?)?;
        }
        Ok(())
    }

    /// The students of one step: the listed ones, or the sandwich (duplicates dropped).
    pub fn step_students(&self, stage: usize) -> Vec<SubnetSpec> {
        if !self.fixed_students.is_empty() {
            return self.fixed_students.clone();
        }
        let mut out: Vec<SubnetSpec> = Vec::new();
        for s in sample_step(
            &self.space,
            stage,
            self.config.random_subnets,
            self.config.seed,
            self.global_step,
        ) {
            if !out.contains(&s) {
                out.push(s);
            }
        }
        out
    }

    /// The subnets reported at each validation: the listed students, or maxnet/minnet/mediums.
    pub fn report_subnets(&self) -> Vec<(String, SubnetSpec)> {
        if self.fixed_students.len() == 1 {
            return vec![("student".into(), self.fixed_students[0].clone())];
        }
        if !self.fixed_students.is_empty() {
            return self
                .fixed_students
                .iter()
                .enumerate()
                .map(|(i, s)| (format!("student-{}", i + 1), s.clone()))
                .collect();
        }
        let mut out = vec![
            ("maxnet".to_string(), self.space.maxnet()),
            ("minnet".to_string(), self.space.minnet(2)),
        ];
        for (i, m) in self.space.mediums().into_iter().enumerate() {
            out.push((format!("medium-{}", i + 1), m));
        }
        out
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
        self.emit(
            TrainEvent::RunStarted {
                run_dir: self.run_dir.display().to_string(),
                total_steps: self.total_steps(),
                stage_steps: self.stage_steps.clone(),
                start_step: self.global_step,
                majority_accuracy: 0.0,
            },
            sink,
        );
        if self.global_step == 0 {
            let (stage, _) = self.position();
            self.set_stage(Some(stage.min(2)))?;
            self.validate(stage.min(2), true, sink)?;
        }
        run_stages(self, control, sink)
    }

    /// Enters a stage: activates its adapters and resets the optimizer.
    pub fn start_stage(&mut self, stage: usize, sink: &mut dyn FnMut(TrainEvent)) -> Result<()> {
        self.set_stage(Some(stage))?;
        self.optimizer = Some((
            stage,
            AdamW::new(self.trainable(stage), self.config.weight_decay)?,
        ));
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

    /// The block indices of one step: the seeded epoch order, batch by batch.
    pub fn step_indices(&self, stage: usize, step_in_stage: usize) -> Vec<usize> {
        let n = self.train_blocks.len();
        let b = self.config.batch_size.min(n);
        let spe = steps_per_epoch(n, b);
        let (epoch, i) = (step_in_stage / spe, step_in_stage % spe);
        let order = epoch_order(n, self.config.seed, stage, epoch);
        let start = i * b;
        order[start..(start + b).min(n)].to_vec()
    }

    /// One optimizer step; returns each student's loss, the gradient norm and the lr.
    pub fn train_step(
        &mut self,
        stage: usize,
        step_in_stage: usize,
    ) -> Result<(Vec<SubnetLoss>, f64, f64)> {
        let idx = self.step_indices(stage, step_in_stage);
        let blocks: Vec<&[u32]> = idx
            .iter()
            .map(|&i| self.train_blocks[i].as_slice())
            .collect();
        let t = self.config.max_seq_len;
        let ids = Tensor::from_vec(blocks.concat(), (blocks.len(), t), &Device::Cpu)?;
        let targets = next_token_targets(&blocks);
        let d = &self.config.distill;
        let (alpha, beta, temperature) = (d.alpha, d.beta, d.temperature);
        let shape = self.space.teacher;
        // The teacher's signal: its own weights, no adapters, nothing tracked.
        let profile = std::env::var_os("MLFS_PROFILE").is_some();
        let clock = Instant::now();
        let lap = |what: &str| {
            if profile {
                eprintln!(
                    "{what}: {:.2} s, rss {} MB",
                    clock.elapsed().as_secs_f64(),
                    crate::util::rss_mb()
                );
            }
        };
        let teacher_out = if alpha > 0.0 {
            Some(
                self.teacher
                    .decoder
                    .forward_hidden(&ids, &self.space.maxnet(), false, None)?,
            )
        } else {
            None
        };
        lap("teacher forward");
        let full = self.student.is_some();
        let size = |s: &SubnetSpec| {
            if full {
                decoder_params(s, &shape)
            } else {
                active_adapter_params_swiglu(s, &shape, self.config.rank)
            }
        };
        let n_max = size(&self.space.maxnet());
        let (_, opt) = self
            .optimizer
            .as_ref()
            .context("optimizer not initialised")?;
        let net = self.net();
        let mut grads = Vec::new();
        let mut losses = Vec::new();
        let fixed = self.report_subnets();
        for spec in self.step_students(stage) {
            // Listed students keep their reported names; sampled ones are named by position.
            let role = (!self.fixed_students.is_empty())
                .then(|| {
                    fixed
                        .iter()
                        .find(|(_, s)| *s == spec)
                        .map(|(r, _)| r.clone())
                })
                .flatten();
            let weight = gradient_scale(n_max, size(&spec), self.config.gamma);
            let step = StudentStep {
                net,
                spec: &spec,
                ids: &ids,
                targets: &targets,
                teacher: teacher_out.as_ref().map(|(hidden, last)| TeacherSignal {
                    hidden,
                    last,
                    head: self.teacher.decoder.head(),
                }),
                projections: &self.projections,
                alpha,
                beta,
                temperature,
                weight,
                train_head: full,
                recompute: self.lm.recompute_activations,
            };
            let loss = student_gradients(&step, opt, &mut grads)?;
            lap("student forward, loss and backward");
            losses.push(SubnetLoss {
                subnet: spec.to_string(),
                loss,
                weight,
                role,
            });
        }
        let stage_cfg = &self.config.stages[stage];
        let steps = self.stage_steps[stage];
        let warmup = (steps as f64 * stage_cfg.warmup_ratio).round() as usize;
        let lr = learning_rate(step_in_stage, steps, warmup, stage_cfg.learning_rate);
        let clip = self.config.grad_clip;
        let (_, opt) = self
            .optimizer
            .as_mut()
            .context("optimizer not initialised")?;
        let grad_norm = opt.step(&grads, lr, clip)?;
        lap("optimizer");
        if self.config.distill.projection == ProjectionKind::UnitNorm {
            self.projections.iter().try_for_each(unit_columns)?;
        }
        Ok((losses, grad_norm, lr))
    }

    /// Validation loss, perplexity and top-1 of the reported subnets (and the teacher first).
    fn validate(
        &mut self,
        stage: usize,
        with_teacher: bool,
        sink: &mut dyn FnMut(TrainEvent),
    ) -> Result<()> {
        let mut results = Vec::new();
        let batch = self.config.batch_size;
        if with_teacher {
            let spec = self.space.maxnet();
            let m = evaluate_blocks(
                &self.teacher.decoder,
                &spec,
                false,
                &self.valid_blocks,
                batch,
            )?;
            results.push(LmEvalResult {
                role: "teacher".into(),
                subnet: spec.to_string(),
                loss: m.loss,
                perplexity: m.perplexity,
                top1_accuracy: m.top1_accuracy,
            });
        }
        for (role, spec) in self.report_subnets() {
            let m = evaluate_blocks(self.net(), &spec, true, &self.valid_blocks, batch)?;
            results.push(LmEvalResult {
                role,
                subnet: spec.to_string(),
                loss: m.loss,
                perplexity: m.perplexity,
                top1_accuracy: m.top1_accuracy,
            });
        }
        self.emit(
            TrainEvent::LmEval {
                stage,
                global_step: self.global_step,
                results,
            },
            sink,
        );
        Ok(())
    }

    /// Measures the teacher and the reported subnets (size, validation, latency) into
    /// `lm-palette.csv`, sending each entry as it is known; `keep_going` false stops early.
    pub fn measure(
        &self,
        on_entry: &mut dyn FnMut(&crate::train::protocol::LmEntry) -> bool,
    ) -> Result<PathBuf> {
        let mut subjects = vec![("teacher".to_string(), self.space.maxnet(), false)];
        subjects.extend(self.report_subnets().into_iter().map(|(r, s)| (r, s, true)));
        let mut entries = Vec::new();
        for (role, spec, adapters) in subjects {
            let net = if adapters {
                self.net()
            } else {
                &self.teacher.decoder
            };
            let e = measure_entry(
                net,
                &role,
                &spec,
                adapters,
                &self.valid_blocks,
                &self.config,
                &self.lm,
            )?;
            let go_on = on_entry(&e);
            entries.push(e);
            if !go_on {
                break;
            }
        }
        let path = self.run_dir.join("lm-palette.csv");
        write_csv(&path, &entries)?;
        Ok(path)
    }
}

impl StagedRun for LmTrainer {
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
        LmTrainer::start_stage(self, stage, sink)
    }
    fn train_step(&mut self, stage: usize, step: usize) -> Result<(Vec<SubnetLoss>, f64, f64)> {
        LmTrainer::train_step(self, stage, step)
    }
    fn evaluate(&mut self, stage: usize, sink: &mut dyn FnMut(TrainEvent)) -> Result<()> {
        self.validate(stage, false, sink)
    }
    fn save_checkpoint(&mut self) -> Result<PathBuf> {
        let mut tensors = self.named_state();
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
            orders: None,
        };
        checkpoint::save(&self.run_dir, &state, &tensors)
    }
    fn finish(&mut self) -> Result<String> {
        self.set_stage(None)?;
        let weights = self.run_dir.join("supernet.safetensors");
        crate::model::weights::save_f32(&weights, &self.named_state())?;
        let meta = LmMeta {
            teacher: RunConfig::resolve(&self.config.teacher),
            train_base_weights: self.lm.train_base_weights,
            init: self.lm.init,
            rank: self.config.rank,
            lora_alpha: self.config.lora_alpha,
        };
        crate::util::write_atomic(
            &self.run_dir.join("supernet.json"),
            &serde_json::to_vec_pretty(&meta)?,
        )?;
        Ok(format!(
            "trained weights saved in {}",
            self.run_dir.display()
        ))
    }
}
