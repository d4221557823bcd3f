//! The weight-shared super-transformer for decoders: the frozen teacher whose linears carry the
//! staged adapters (adapter mode), or a fully trained copy of the students' layers
//! (`train_base_weights`), plus the feature projections P^m.

use super::adapters::{adapted_mut, named_adapted, AdaptedSupernet};
use super::config::DistillConfig;
use super::projection::Projections;
use crate::model::linear::ElasticLinear;
use crate::model::llama::student::{trainable_student, StudentInit};
use crate::model::llama::{DecoderTeacher, LlamaDecoder};
use crate::model::lowrank::StagedLowRank;
use crate::model::param::Param;
use crate::model::SubnetSpec;
use anyhow::Result;
use candle_core::Var;
use rand::rngs::StdRng;
use rand::SeedableRng;

/// How a decoder supernet's students train.
#[derive(Debug, Clone, Copy)]
pub struct DecoderTraining {
    /// Train every weight of the students instead of the staged adapters.
    pub train_base_weights: bool,
    /// Where fully trained students start.
    pub init: StudentInit,
    pub rank: usize,
    pub lora_alpha: f64,
    pub seed: u64,
}

/// Teacher (+ adapters) or trained student copy, and the projections.
pub struct DecoderSupernet {
    /// The frozen teacher; in adapter mode its linears also carry the staged adapters.
    pub teacher: DecoderTeacher,
    /// The fully trained student and its parameters (`train_base_weights`).
    pub student: Option<(LlamaDecoder, Vec<Param>)>,
    pub projections: Projections,
}

impl DecoderSupernet {
    /// Adapters on the layers the students use (all layers when they are sampled), or a
    /// trainable copy of those layers; then the projections. Seeded.
    pub fn new(
        mut teacher: DecoderTeacher,
        students: &[SubnetSpec],
        training: DecoderTraining,
        distill: &DistillConfig,
    ) -> Result<Self> {
        let shape = teacher.decoder.shape();
        let used_layers: Vec<usize> = if students.is_empty() {
            (0..shape.layers).collect()
        } else {
            let mut l: Vec<usize> = students.iter().flat_map(|s| s.layers.clone()).collect();
            l.sort_unstable();
            l.dedup();
            l
        };
        let mut rng = StdRng::seed_from_u64(training.seed);
        let device = teacher.decoder.device().clone();
        let student = if training.train_base_weights {
            Some(trainable_student(
                &teacher.decoder,
                &used_layers,
                training.init,
                training.seed,
            )?)
        } else {
            for &l in &used_layers {
                for lin in teacher.decoder.layers[l].linears_mut() {
                    let (out, inp) = lin.dims();
                    let (rank, alpha) = (training.rank, training.lora_alpha);
                    let lora = StagedLowRank::new(out, inp, rank, alpha, &mut rng, &device)?;
                    lin.lora = Some(lora);
                }
            }
            None
        };
        let projections = Projections::new(
            shape.layers,
            (shape.hidden, distill.projection_dim),
            distill.projection,
            &mut rng,
            &device,
        )?;
        Ok(Self {
            teacher,
            student,
            projections,
        })
    }

    /// The decoder the students run on: the full-training copy, or the teacher with adapters.
    pub fn net(&self) -> &LlamaDecoder {
        match &self.student {
            Some((s, _)) => s,
            None => &self.teacher.decoder,
        }
    }

    /// True when the students' base weights (and output matrix) train.
    pub fn trains_base_weights(&self) -> bool {
        self.student.is_some()
    }
}

impl AdaptedSupernet for DecoderSupernet {
    fn projections(&self) -> &Projections {
        &self.projections
    }

    fn adapted_linears(&self) -> Vec<(String, &ElasticLinear)> {
        named_adapted(
            self.teacher
                .decoder
                .layers
                .iter()
                .map(|layer| layer.linears()),
        )
    }

    fn adapted_linears_mut(&mut self) -> Vec<&mut ElasticLinear> {
        adapted_mut(
            self.teacher
                .decoder
                .layers
                .iter_mut()
                .map(|layer| layer.linears_mut()),
        )
    }

    /// A fully trained student's weights train in every stage.
    fn other_trainable(&self) -> Vec<Param> {
        match &self.student {
            Some((_, params)) => params.to_vec(),
            None => Vec::new(),
        }
    }

    fn other_state(&self) -> Vec<(String, Var)> {
        let params = self.student.iter().flat_map(|(_, params)| params);
        params.map(|p| (p.name.clone(), p.var.clone())).collect()
    }
}
