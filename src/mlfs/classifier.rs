//! The weight-shared super-transformer for classification: frozen BERT teacher, staged
//! adapters, a fully trained task head and the maxnet's feature projections P^m.

use super::adapters::{adapted_mut, named_adapted, AdaptedSupernet};
use super::config::ProjectionKind;
use super::projection::Projections;
use crate::model::encoder::{BertEncoder, EncoderOutput, LayerGates};
use crate::model::linear::ElasticLinear;
use crate::model::lowrank::StagedLowRank;
use crate::model::ops::gpu_contiguous;
use crate::model::packing::TokenLayout;
use crate::model::param::Param;
use crate::model::SubnetSpec;
use anyhow::{Context, Result};
use candle_core::{DType, Tensor, Var};
use rand::rngs::StdRng;
use rand::SeedableRng;
use rand_distr::{Distribution, Normal};

/// Logits and hidden states of one subnet's forward pass.
pub struct SubnetOutput {
    pub logits: Tensor,
    pub hidden: EncoderOutput,
}

/// Teacher + adapters + head + projections: everything MLFS trains and stores for a classifier.
pub struct ClassifierSupernet {
    pub encoder: BertEncoder,
    /// Classifier `[classes, d]`, sliced on its input side.
    pub head_weight: Var,
    pub head_bias: Var,
    pub projections: Projections,
}

impl ClassifierSupernet {
    /// Attaches fresh staged adapters, head and projections to a loaded teacher (seeded).
    pub fn new(
        mut encoder: BertEncoder,
        classes: usize,
        rank: usize,
        lora_alpha: f64,
        projection_dim: usize,
        projection_kind: ProjectionKind,
        seed: u64,
    ) -> Result<Self> {
        let mut rng = StdRng::seed_from_u64(seed);
        let device = encoder.device().clone();
        for layer in &mut encoder.layers {
            for lin in layer.linears_mut() {
                let (out, inp) = lin.dims();
                let lora = StagedLowRank::new(out, inp, rank, lora_alpha, &mut rng, &device)?;
                lin.lora = Some(lora);
            }
        }
        let d = encoder.config.hidden_size;
        let normal = Normal::new(0.0f32, 0.02).context("normal distribution")?;
        let head: Vec<f32> = (0..classes * d).map(|_| normal.sample(&mut rng)).collect();
        let head_weight = Var::from_tensor(&Tensor::from_vec(head, (classes, d), &device)?)?;
        let head_bias = Var::zeros(classes, DType::F32, &device)?;
        let layers = encoder.layers.len();
        let dims = (d, projection_dim);
        let projections = Projections::new(layers, dims, projection_kind, &mut rng, &device)?;
        Ok(Self {
            encoder,
            head_weight,
            head_bias,
            projections,
        })
    }

    /// Number of classes of the task head.
    pub fn classes(&self) -> usize {
        self.head_weight.dims()[0]
    }

    /// Subnet forward on the real tokens of `layout`: mean pooling over them, then the head
    /// sliced to the subnet's width. Hidden states are the layout's rows `[N, d_sub]`.
    pub fn forward(
        &self,
        ids: &Tensor,
        layout: &TokenLayout,
        spec: &SubnetSpec,
        gates: Option<&[LayerGates]>,
    ) -> Result<SubnetOutput> {
        let hidden = self.encoder.forward_rows(ids, layout, spec, gates)?;
        let logits = self.classify(hidden.last(), layout)?;
        Ok(SubnetOutput { logits, hidden })
    }

    /// Head logits `[B, classes]` from last hidden rows `[N, d_sub]`.
    pub fn classify(&self, last: &Tensor, layout: &TokenLayout) -> Result<Tensor> {
        let d_sub = last.dim(1)?;
        let pooled = layout.mean_pool(last)?;
        let w = gpu_contiguous(&self.head_weight.as_tensor().narrow(1, 0, d_sub)?)?;
        Ok(pooled
            .matmul(&w.t()?)?
            .broadcast_add(self.head_bias.as_tensor())?)
    }
}

impl AdaptedSupernet for ClassifierSupernet {
    fn adapted_linears(&self) -> Vec<(String, &ElasticLinear)> {
        named_adapted(self.encoder.layers.iter().map(|layer| layer.linears()))
    }

    fn adapted_linears_mut(&mut self) -> Vec<&mut ElasticLinear> {
        adapted_mut(
            self.encoder
                .layers
                .iter_mut()
                .map(|layer| layer.linears_mut()),
        )
    }

    fn projections(&self) -> &Projections {
        &self.projections
    }

    /// The task head trains in every stage.
    fn other_trainable(&self) -> Vec<Param> {
        vec![
            Param {
                name: "head.weight".into(),
                var: self.head_weight.clone(),
                decay: true,
            },
            Param {
                name: "head.bias".into(),
                var: self.head_bias.clone(),
                decay: false,
            },
        ]
    }

    fn other_state(&self) -> Vec<(String, Var)> {
        vec![
            ("head.weight".to_string(), self.head_weight.clone()),
            ("head.bias".to_string(), self.head_bias.clone()),
        ]
    }
}
