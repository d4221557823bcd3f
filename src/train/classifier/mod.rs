//! The classifier task: a BERT teacher with staged adapters and a trained head, labelled
//! sentences, in-place distillation from the maxnet (logits and projected features), dev
//! accuracy, rewiring before stage 1.

pub mod accuracy;

use super::config::RunConfig;
use super::data::{epoch_order, Dataset};
use super::parallel::{BatchCounts, BatchShare};
use super::protocol::{SubnetAccuracy, TrainEvent};
use super::run::Run;
use super::task::{net_and_space_accessors, EvalPoint, Grads, StepInput, Task};
use crate::mlfs::adapters::AdaptedSupernet;
use crate::mlfs::classifier::ClassifierSupernet;
use crate::mlfs::distill::{combine, cross_entropy, feature_loss, kd_loss, DistillWeights};
use crate::mlfs::rewire::{self, LabelledBatch, LayerOrder};
use crate::mlfs::scaling::active_adapter_params;
use crate::mlfs::space::SearchSpace;
use crate::model::packing::TokenLayout;
use crate::model::tokenizer::{check_token_ids, ids_tensor};
use crate::model::{EncoderTeacher, SubnetSpec, TextTokenizer};
use accuracy::split_accuracy;
use anyhow::{Context, Result};
use candle_core::Tensor;
use std::path::Path;

/// A classifier run.
pub type ClassifierRun = Run<ClassifierTask>;

/// The classifier's supernet, data and tokenizer.
pub struct ClassifierTask {
    pub net: ClassifierSupernet,
    pub data: Dataset,
    pub space: SearchSpace,
    pub pad_id: u32,
    pub tokenizer: TextTokenizer,
    orders: Option<Vec<LayerOrder>>,
    warnings: Vec<String>,
}

impl ClassifierTask {
    /// Token ids, mask and labels of the training examples `idx`.
    fn labelled_batch(&self, idx: &[usize]) -> Result<LabelledBatch> {
        let (batch, labels) = self.data.train.batch(idx, self.pad_id);
        let device = self.net.encoder.device();
        let ids = ids_tensor(&batch, device)?;
        let layout = TokenLayout::of_batch(&batch, device)?;
        let labels = Tensor::from_vec(labels, idx.len(), device)?;
        Ok(LabelledBatch {
            ids,
            layout,
            labels,
        })
    }

    /// The batches importance is estimated on: the first of a seeded order of the training set.
    fn rewire_batches(&self, config: &RunConfig) -> Result<Vec<LabelledBatch>> {
        let order = epoch_order(self.data.train.len(), config.seed, 99, 0);
        order
            .chunks(config.batch_size)
            .take(config.rewire_batches.max(1))
            .map(|idx| self.labelled_batch(idx))
            .collect()
    }
}

impl Task for ClassifierTask {
    type Net = ClassifierSupernet;
    const DISTINCT_STUDENTS: bool = false;
    const EVALUATES_AT_START: bool = false;

    fn build(config: &RunConfig) -> Result<Self> {
        let device = config.resolve_device()?;
        let mut teacher = EncoderTeacher::load_on(&RunConfig::resolve(&config.teacher), &device)?;
        teacher.encoder.set_precision(config.precision)?;
        let positions = teacher.config.max_position_embeddings;
        for (field, len) in [
            ("max_seq_len", config.max_seq_len),
            ("palette.latency_seq_len", config.palette.latency_seq_len),
        ] {
            if len > positions {
                anyhow::bail!(
                    "{field} {len} is longer than the teacher's {positions} positions (max_position_embeddings in its config.json)"
                );
            }
        }
        let data = Dataset::load(&config.data, &teacher.tokenizer, config.max_seq_len)?;
        let train_path = RunConfig::resolve(&config.data.train);
        let splits = [
            (&data.train, &config.data.train),
            (&data.dev, &config.data.dev),
            (&data.test, &config.data.test),
        ];
        for (split, path) in splits {
            let rows = teacher.config.vocab_size;
            check_token_ids(&split.ids, rows, &RunConfig::resolve(path), "example")?;
        }
        let mut warnings = std::mem::take(&mut teacher.warnings);
        warnings.extend(
            teacher
                .tokenizer
                .unknown_warning(&data.train.ids, &train_path),
        );
        let space = SearchSpace::new(teacher.encoder.shape(), &config.space)?;
        let pad_id = teacher.config.pad_token_id as u32;
        let net = ClassifierSupernet::new(
            teacher.encoder,
            data.labels.names.len(),
            config.rank,
            config.lora_alpha,
            config.distill.projection_dim,
            config.distill.projection,
            config.seed,
        )?;
        Ok(Self {
            net,
            data,
            space,
            pad_id,
            tokenizer: teacher.tokenizer,
            orders: None,
            warnings,
        })
    }

    fn warnings(&self) -> &[String] {
        &self.warnings
    }

    fn save_extras(&self, run_dir: &Path) -> Result<()> {
        let labels = serde_json::to_vec_pretty(&self.data.labels)?;
        crate::files::write_atomic(&run_dir.join("labels.json"), &labels)
    }

    net_and_space_accessors!(ClassifierSupernet);

    fn device(&self) -> &candle_core::Device {
        self.net.encoder.device()
    }

    fn train_len(&self) -> usize {
        self.data.train.len()
    }

    fn subnet_size(&self, spec: &SubnetSpec, config: &RunConfig) -> usize {
        active_adapter_params(spec, &self.space.teacher, config.rank)
    }

    /// The maxnet (first student) learns from the labels; every other student from the labels
    /// and from the maxnet's logits and projected hidden states.
    fn batch_counts(&self, batch: &[usize]) -> BatchCounts {
        let train = &self.data.train;
        BatchCounts {
            examples: batch.len(),
            tokens: batch.iter().map(|&i| train.ids[i].len()).sum(),
        }
    }

    fn student_gradients(&self, step: &StepInput<'_>, grads: &mut Grads) -> Result<Vec<f64>> {
        let LabelledBatch {
            ids,
            layout,
            labels,
        } = self.labelled_batch(step.batch)?;
        let weights = DistillWeights::of(&step.config.distill);
        let (maxnet, others) = step
            .students
            .split_first()
            .context("a step without students")?;
        // A rank's share of the whole batch's means (examples for the label losses, tokens
        // for the feature losses); untouched when the batch is whole.
        let share = step.share;
        let part = |t: Tensor, of: f64| -> Result<Tensor> {
            Ok(if share == BatchShare::WHOLE {
                t
            } else {
                (t * of)?
            })
        };
        let max_out = self.net.forward(&ids, &layout, &maxnet.spec, None)?;
        let max_loss = part(cross_entropy(&max_out.logits, &labels)?, share.examples)?;
        let mut losses = vec![max_loss.to_scalar::<f32>()? as f64];
        step.opt
            .accumulate(&(max_loss * maxnet.weight)?.backward()?, grads)?;
        let target_logits = max_out.logits.detach();
        let hidden = &max_out.hidden.hidden_states;
        let target_hidden: Vec<Tensor> = hidden.iter().map(|h| h.detach()).collect();
        drop(max_out);
        for student in others {
            let spec = &student.spec;
            let out = self.net.forward(&ids, &layout, spec, None)?;
            let task = part(cross_entropy(&out.logits, &labels)?, share.examples)?;
            let kd = part(
                kd_loss(&out.logits, &target_logits, weights.temperature)?,
                share.examples,
            )?;
            let mut features = Vec::with_capacity(spec.layers.len());
            for (l, &g) in spec.layers.iter().enumerate() {
                let h_max = &target_hidden[g + 1];
                let proj = self
                    .net
                    .projections
                    .of_layer(g, h_max.dim(1)?, h_max.device())?;
                let h_sub = &out.hidden.hidden_states[l + 1];
                features.push(part(
                    feature_loss(h_sub, h_max, &proj, None)?,
                    share.tokens,
                )?);
            }
            let loss = combine(&task, &kd, &features, weights)?;
            losses.push(loss.to_scalar::<f32>()? as f64);
            step.opt
                .accumulate(&(loss * student.weight)?.backward()?, grads)?;
        }
        Ok(losses)
    }

    fn evaluate(&self, _config: &RunConfig, at: EvalPoint) -> Result<TrainEvent> {
        let mut results = Vec::new();
        for (role, spec) in self.report_subnets() {
            let accuracy = split_accuracy(&self.net, &self.data.dev, &spec, self.pad_id)?;
            results.push(SubnetAccuracy {
                role,
                subnet: spec.to_string(),
                accuracy,
            });
        }
        Ok(TrainEvent::DevEval {
            stage: at.stage,
            global_step: at.global_step,
            results,
        })
    }

    /// Rewires heads and FFN neurons by importance once, before stage 1, when configured.
    fn before_stage(&mut self, config: &RunConfig, stage: usize) -> Result<Option<String>> {
        if stage == 0 || !config.rewire || self.orders.is_some() {
            return Ok(None);
        }
        self.net.set_stage(Some(stage))?;
        let batches = self.rewire_batches(config)?;
        self.orders = Some(rewire::rewire(&mut self.net, &batches)?);
        Ok(Some(format!(
            "rewired heads and FFN neurons by importance on {} batches",
            batches.len()
        )))
    }

    fn orders(&self) -> Option<Vec<LayerOrder>> {
        self.orders.clone()
    }

    fn restore_orders(&mut self, orders: &[LayerOrder]) -> Result<()> {
        rewire::apply(&mut self.net, orders)?;
        self.orders = Some(orders.to_vec());
        Ok(())
    }

    fn majority_accuracy(&self) -> f64 {
        self.data.dev.majority_rate()
    }

    fn metadata(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut m = serde_json::Map::new();
        m.insert("labels".into(), self.data.labels.names.clone().into());
        m
    }
}
