//! The decoder task: a frozen Llama teacher, students trained through staged adapters on its
//! weights or in full, distillation from the teacher's next-token distributions and projected
//! hidden states, validation loss on token blocks.

pub mod metrics;
pub mod step;

use super::config::{DecoderConfig, RunConfig};
use super::data::{epoch_order, read_corpus, token_blocks};
use super::parallel::BatchCounts;
use super::protocol::{DecoderEvalResult, TrainEvent};
use super::run::Run;
use super::task::{net_and_space_accessors, EvalPoint, Grads, StepInput, Task};
use crate::mlfs::adapters::AdaptedSupernet;
use crate::mlfs::decoder::{DecoderSupernet, DecoderTraining};
use crate::mlfs::distill::DistillWeights;
use crate::mlfs::head_loss::next_token_targets;
use crate::mlfs::rewire::LayerOrder;
use crate::mlfs::rewire_decoder::{self, TokenBatch};
use crate::mlfs::scaling::active_adapter_params_swiglu;
use crate::mlfs::space::SearchSpace;
use crate::model::llama::DecoderTeacher;
use crate::model::params::decoder_params;
use crate::model::subnet::resolve_spec;
use crate::model::tokenizer::check_token_ids;
use crate::model::SubnetSpec;
use anyhow::{bail, Context, Result};
use candle_core::Tensor;
use metrics::evaluate_blocks;
use step::{student_gradients, StudentStep, TeacherSignal};

/// A decoder run.
pub type DecoderRun = Run<DecoderTask>;

/// The decoder's supernet, students and token blocks.
pub struct DecoderTask {
    /// The run's decoder settings (its `lm` section).
    pub settings: DecoderConfig,
    pub net: DecoderSupernet,
    pub space: SearchSpace,
    /// The listed students (empty: sandwich sampling from the space).
    pub fixed_students: Vec<SubnetSpec>,
    pub train_blocks: Vec<Vec<u32>>,
    pub valid_blocks: Vec<Vec<u32>>,
    orders: Option<Vec<LayerOrder>>,
    /// Rewiring was asked for but does not apply (fully trained students); said once.
    rewire_skipped: bool,
    warnings: Vec<String>,
}

impl DecoderTask {
    /// The subnet `text` names, checked against the teacher, or the run's first reported
    /// subnet (its student, or the maxnet of a sampled space) when none is named.
    pub fn subnet_or_student(&self, text: Option<&str>) -> Result<SubnetSpec> {
        if text.is_some() {
            return resolve_spec(text, &self.space.teacher);
        }
        let first = self.report_subnets().into_iter().next();
        first.map(|(_, s)| s).context("the run has no subnet")
    }

    /// Token ids `[B, T]` and next-token targets of the training blocks `idx` (all blocks
    /// have the run's length).
    fn token_batch(&self, idx: &[usize]) -> Result<TokenBatch> {
        let blocks: Vec<&[u32]> = idx
            .iter()
            .map(|&i| self.train_blocks[i].as_slice())
            .collect();
        let t = blocks.first().map_or(0, |b| b.len());
        let device = self.net.teacher.decoder.device();
        let ids = Tensor::from_vec(blocks.concat(), (blocks.len(), t), device)?;
        Ok((ids, next_token_targets(&blocks)))
    }

    /// The batches importance is estimated on: the first of a seeded order of the training blocks.
    fn rewire_batches(&self, config: &RunConfig) -> Result<Vec<TokenBatch>> {
        let order = epoch_order(self.train_blocks.len(), config.seed, 99, 0);
        order
            .chunks(config.batch_size.max(1))
            .take(config.rewire_batches.max(1))
            .map(|idx| self.token_batch(idx))
            .collect()
    }
}

impl Task for DecoderTask {
    type Net = DecoderSupernet;
    const DISTINCT_STUDENTS: bool = true;
    const EVALUATES_AT_START: bool = true;

    fn build(config: &RunConfig) -> Result<Self> {
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
        let device = config.resolve_device()?;
        let mut teacher = DecoderTeacher::load_on(&teacher_path, &device)?;
        teacher.decoder.set_precision(config.precision)?;
        let warnings = std::mem::take(&mut teacher.warnings);
        let shape = teacher.decoder.shape();
        let space = SearchSpace::new(shape, &config.space)?;
        let fixed_students = lm
            .students
            .iter()
            .map(|s| resolve_spec(Some(s), &shape).context("lm.students"))
            .collect::<Result<Vec<_>>>()?;
        let eos = teacher.decoder.config.eos_token_id;
        let block = config.max_seq_len;
        let positions = teacher.decoder.config.max_position_embeddings;
        if block > positions {
            bail!(
                "max_seq_len {block} is longer than the teacher's {positions} positions (max_position_embeddings / llama.context_length)"
            );
        }
        let blocks_of = |path: &std::path::Path, what: &str| {
            token_blocks(&read_corpus(path)?, &teacher.tokenizer, block, eos)
                .with_context(|| format!("{}: {what}", path.display()))
        };
        let train_blocks = blocks_of(&RunConfig::resolve(&config.data.train), "training data")?;
        let mut valid_blocks = blocks_of(&RunConfig::resolve(&config.data.dev), "validation data")?;
        valid_blocks.truncate(lm.eval_blocks);
        let rows = teacher.decoder.config.vocab_size;
        for (blocks, path) in [
            (&train_blocks, &config.data.train),
            (&valid_blocks, &config.data.dev),
        ] {
            check_token_ids(blocks, rows, &RunConfig::resolve(path), "block")?;
        }
        let training = DecoderTraining {
            train_base_weights: lm.train_base_weights,
            init: lm.init,
            rank: config.rank,
            lora_alpha: config.lora_alpha,
            seed: config.seed,
        };
        let net = DecoderSupernet::new(teacher, &fixed_students, training, &config.distill)?;
        Ok(Self {
            settings: lm,
            net,
            space,
            fixed_students,
            train_blocks,
            valid_blocks,
            orders: None,
            rewire_skipped: false,
            warnings,
        })
    }

    fn warnings(&self) -> &[String] {
        &self.warnings
    }

    net_and_space_accessors!(DecoderSupernet);

    fn device(&self) -> &candle_core::Device {
        self.net.teacher.decoder.device()
    }

    fn train_len(&self) -> usize {
        self.train_blocks.len()
    }

    fn fixed_students(&self) -> &[SubnetSpec] {
        &self.fixed_students
    }

    /// Adapter parameters a subnet touches, or its weights when the students train in full.
    fn subnet_size(&self, spec: &SubnetSpec, config: &RunConfig) -> usize {
        let shape = self.space.teacher;
        if self.net.trains_base_weights() {
            decoder_params(spec, &shape)
        } else {
            active_adapter_params_swiglu(spec, &shape, config.rank)
        }
    }

    /// Every student learns from the next tokens and from the frozen teacher (its own weights,
    /// no adapters), layer by layer with recomputed activations when configured.
    fn batch_counts(&self, batch: &[usize]) -> BatchCounts {
        // Blocks are all one length: every loss of a block has the same number of terms.
        let tokens = batch.iter().map(|&i| self.train_blocks[i].len()).sum();
        BatchCounts {
            examples: batch.len(),
            tokens,
        }
    }

    fn student_gradients(&self, step: &StepInput<'_>, grads: &mut Grads) -> Result<Vec<f64>> {
        let (ids, targets) = self.token_batch(step.batch)?;
        // Every loss term is a mean over the batch's tokens: a rank's shard weighs its share.
        let share = step.share.tokens;
        let device = self.net.teacher.decoder.device();
        let weights = DistillWeights::of(&step.config.distill);
        let laps = crate::train::laps::Laps::from_env(device);
        let teacher = &self.net.teacher.decoder;
        let teacher_out = if weights.kd() > 0.0 {
            Some(teacher.forward_hidden(&ids, &self.space.maxnet(), false, None)?)
        } else {
            None
        };
        laps.lap("teacher forward");
        let mut losses = Vec::with_capacity(step.students.len());
        for student in step.students {
            let one = StudentStep {
                net: self.net.net(),
                spec: &student.spec,
                ids: &ids,
                targets: &targets,
                teacher: teacher_out.as_ref().map(|(hidden, last)| TeacherSignal {
                    hidden,
                    last,
                    head: teacher.head(),
                }),
                projections: &self.net.projections,
                weights,
                weight: student.weight * share,
                train_head: self.net.trains_base_weights(),
                recompute: self.settings.recompute_activations,
            };
            losses.push(student_gradients(&one, step.opt, grads, &laps)? * share);
            laps.lap("student forward, loss and backward");
        }
        Ok(losses)
    }

    /// Validation loss, perplexity and top-1 of the reported subnets (the teacher first when asked).
    fn evaluate(&self, config: &RunConfig, at: EvalPoint) -> Result<TrainEvent> {
        let batch = config.batch_size;
        let teacher = at
            .with_teacher
            .then(|| ("teacher".to_string(), self.space.maxnet(), false));
        let students = self.report_subnets().into_iter().map(|(r, s)| (r, s, true));
        let mut results = Vec::new();
        for (role, spec, adapters) in teacher.into_iter().chain(students) {
            let net = if adapters {
                self.net.net()
            } else {
                &self.net.teacher.decoder
            };
            let m = evaluate_blocks(net, &spec, adapters, &self.valid_blocks, batch)?;
            results.push(DecoderEvalResult {
                role,
                subnet: spec.to_string(),
                loss: m.loss,
                perplexity: m.perplexity,
                top1_accuracy: m.top1_accuracy,
            });
        }
        Ok(TrainEvent::DecoderEval {
            stage: at.stage,
            global_step: at.global_step,
            results,
        })
    }

    /// Rewires KV groups and FFN neurons by importance once, before stage 1, when configured
    /// (adapter runs only: a fully trained student is a separate copy of the weights).
    fn before_stage(&mut self, config: &RunConfig, stage: usize) -> Result<Option<String>> {
        if stage == 0 || !config.rewire || self.orders.is_some() || self.rewire_skipped {
            return Ok(None);
        }
        if self.net.trains_base_weights() {
            self.rewire_skipped = true;
            return Ok(Some(
                "rewiring skipped: the students train their own copy of the weights".into(),
            ));
        }
        self.net.set_stage(Some(stage))?;
        let batches = self.rewire_batches(config)?;
        let orders = rewire_decoder::rewire(&mut self.net.teacher.decoder, &batches)?;
        self.orders = Some(orders);
        Ok(Some(format!(
            "rewired KV groups and FFN neurons by importance on {} batches",
            batches.len()
        )))
    }

    fn orders(&self) -> Option<Vec<LayerOrder>> {
        self.orders.clone()
    }

    fn restore_orders(&mut self, orders: &[LayerOrder]) -> Result<()> {
        rewire_decoder::apply(&mut self.net.teacher.decoder, orders)?;
        self.orders = Some(orders.to_vec());
        Ok(())
    }

    fn metadata(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut m = serde_json::Map::new();
        m.insert(
            "train_base_weights".into(),
            self.settings.train_base_weights.into(),
        );
        let init = serde_json::to_value(self.settings.init).unwrap_or(serde_json::Value::Null);
        m.insert("init".into(), init);
        m
    }
}
