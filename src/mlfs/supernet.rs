//! The weight-shared super-transformer for classification: frozen teacher, staged adapters,
//! a fully trained task head and the maxnet's feature projections P^m.

use crate::model::encoder::{BertEncoder, EncoderOutput, LayerGates};
use crate::model::lowrank::{StagedLowRank, STAGES};
use crate::model::SubnetSpec;
use crate::train::config::ProjectionKind;
use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor, Var, D};
use rand::rngs::StdRng;
use rand::SeedableRng;
use rand_distr::{Distribution, Normal};
use std::collections::HashMap;

/// A trainable tensor with its checkpoint name and whether weight decay applies.
pub struct Param {
    pub name: String,
    pub var: Var,
    pub decay: bool,
}

/// Logits and hidden states of one subnet's forward pass.
pub struct SubnetOutput {
    pub logits: Tensor,
    pub hidden: EncoderOutput,
}

/// Teacher + adapters + head + projections: everything MLFS trains and stores.
pub struct Supernet {
    pub encoder: BertEncoder,
    /// Classifier `[classes, d]`, sliced on its input side.
    pub head_weight: Var,
    pub head_bias: Var,
    /// One `[d, k]` projection per teacher layer (empty for the identity option).
    pub projections: Vec<Var>,
    pub projection_kind: ProjectionKind,
    pub rank: usize,
    pub lora_alpha: f64,
    /// The stage whose adapters train now, if any.
    pub active_stage: Option<usize>,
}

/// `d × k` matrix with orthonormal columns (Gram–Schmidt on a Gaussian draw).
pub fn orthonormal(d: usize, k: usize, rng: &mut StdRng) -> Result<Tensor> {
    let normal = Normal::new(0.0f64, 1.0).context("normal distribution")?;
    let k_eff = k.min(d);
    let mut cols: Vec<Vec<f64>> = Vec::with_capacity(k);
    for c in 0..k {
        let mut v: Vec<f64> = (0..d).map(|_| normal.sample(rng)).collect();
        if c < k_eff {
            for u in &cols {
                let dot: f64 = v.iter().zip(u).map(|(a, b)| a * b).sum();
                v.iter_mut().zip(u).for_each(|(a, b)| *a -= dot * b);
            }
        }
        let norm = v.iter().map(|a| a * a).sum::<f64>().sqrt().max(1e-12);
        v.iter_mut().for_each(|a| *a /= norm);
        cols.push(v);
    }
    let mut data = vec![0f32; d * k];
    for (c, col) in cols.iter().enumerate() {
        for (r, &x) in col.iter().enumerate() {
            data[r * k + c] = x as f32;
        }
    }
    Ok(Tensor::from_vec(data, (d, k), &Device::Cpu)?)
}

/// Rescales every column of a projection to unit length (keeps P from collapsing).
pub fn unit_columns(p: &Var) -> Result<()> {
    let t = p.as_tensor();
    let norms = t.sqr()?.sum_keepdim(0)?.sqrt()?.clamp(1e-12, f64::MAX)?;
    p.set(&t.broadcast_div(&norms)?)?;
    Ok(())
}

impl Supernet {
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
        for layer in &mut encoder.layers {
            for lin in layer.linears_mut() {
                let (out, inp) = lin.dims();
                lin.lora = Some(StagedLowRank::new(out, inp, rank, lora_alpha, &mut rng)?);
            }
        }
        let d = encoder.config.hidden_size;
        let normal = Normal::new(0.0f32, 0.02).context("normal distribution")?;
        let head: Vec<f32> = (0..classes * d).map(|_| normal.sample(&mut rng)).collect();
        let head_weight = Var::from_tensor(&Tensor::from_vec(head, (classes, d), &Device::Cpu)?)?;
        let head_bias = Var::zeros(classes, DType::F32, &Device::Cpu)?;
        let projections = match projection_kind {
            ProjectionKind::Identity => Vec::new(),
            _ => (0..encoder.layers.len())
                .map(|_| {
                    Ok(Var::from_tensor(&orthonormal(
                        d,
                        projection_dim,
                        &mut rng,
                    )?)?)
                })
                .collect::<Result<Vec<_>>>()?,
        };
        Ok(Self {
            encoder,
            head_weight,
            head_bias,
            projections,
            projection_kind,
            rank,
            lora_alpha,
            active_stage: None,
        })
    }

    /// Number of classes of the task head.
    pub fn classes(&self) -> usize {
        self.head_weight.dims()[0]
    }

    /// Makes one stage's adapters trainable and merges all others into the frozen weights.
    pub fn set_stage(&mut self, stage: Option<usize>) -> Result<()> {
        for layer in &mut self.encoder.layers {
            for lin in layer.linears_mut() {
                lin.set_active_stage(stage)?;
            }
        }
        self.active_stage = stage;
        Ok(())
    }

    /// The tensors the optimizer updates in `stage`: its adapter pairs, the head, and P (stages ≥ 1).
    pub fn trainable(&self, stage: usize) -> Vec<Param> {
        let mut out = Vec::new();
        for (l, layer) in self.encoder.layers.iter().enumerate() {
            for (i, lin) in layer.linears().iter().enumerate() {
                if let Some(lora) = &lin.lora {
                    out.push(Param {
                        name: format!("adapter.{l}.{i}.a{stage}"),
                        var: lora.a[stage].clone(),
                        decay: true,
                    });
                    out.push(Param {
                        name: format!("adapter.{l}.{i}.b{stage}"),
                        var: lora.b[stage].clone(),
                        decay: true,
                    });
                }
            }
        }
        out.push(Param {
            name: "head.weight".into(),
            var: self.head_weight.clone(),
            decay: true,
        });
        out.push(Param {
            name: "head.bias".into(),
            var: self.head_bias.clone(),
            decay: false,
        });
        if stage >= 1 && self.projection_kind == ProjectionKind::UnitNorm {
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

    /// Every tensor MLFS stores (all stages' adapters, head, projections), by name.
    pub fn named_state(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        for (l, layer) in self.encoder.layers.iter().enumerate() {
            for (i, lin) in layer.linears().iter().enumerate() {
                if let Some(lora) = &lin.lora {
                    for s in 0..STAGES {
                        out.push((
                            format!("adapter.{l}.{i}.a{s}"),
                            lora.a[s].as_tensor().clone(),
                        ));
                        out.push((
                            format!("adapter.{l}.{i}.b{s}"),
                            lora.b[s].as_tensor().clone(),
                        ));
                    }
                }
            }
        }
        out.push(("head.weight".into(), self.head_weight.as_tensor().clone()));
        out.push(("head.bias".into(), self.head_bias.as_tensor().clone()));
        for (l, p) in self.projections.iter().enumerate() {
            out.push((format!("projection.{l}"), p.as_tensor().clone()));
        }
        out
    }

    /// Restores tensors saved by [`Self::named_state`]; shapes must match.
    pub fn load_state(&mut self, tensors: &HashMap<String, Tensor>) -> Result<()> {
        let set = |name: &str, var: &Var| -> Result<()> {
            let t = tensors
                .get(name)
                .with_context(|| format!("tensor '{name}' is missing"))?;
            if t.dims() != var.dims() {
                bail!(
                    "tensor '{name}' has shape {:?}, expected {:?}",
                    t.dims(),
                    var.dims()
                );
            }
            var.set(t)?;
            Ok(())
        };
        for (l, layer) in self.encoder.layers.iter().enumerate() {
            for (i, lin) in layer.linears().iter().enumerate() {
                if let Some(lora) = &lin.lora {
                    for s in 0..STAGES {
                        set(&format!("adapter.{l}.{i}.a{s}"), &lora.a[s])?;
                        set(&format!("adapter.{l}.{i}.b{s}"), &lora.b[s])?;
                    }
                }
            }
        }
        set("head.weight", &self.head_weight)?;
        set("head.bias", &self.head_bias)?;
        for (l, p) in self.projections.iter().enumerate() {
            set(&format!("projection.{l}"), p)?;
        }
        self.set_stage(self.active_stage)
    }

    /// Renormalises every projection column to unit length (keeps P from collapsing).
    pub fn renormalise_projections(&self) -> Result<()> {
        if self.projection_kind != ProjectionKind::UnitNorm {
            return Ok(());
        }
        self.projections.iter().try_for_each(unit_columns)
    }

    /// The projection of maxnet layer `g` (`None` for the identity option).
    pub fn projection(&self, g: usize) -> Option<Tensor> {
        self.projections.get(g).map(|p| p.as_tensor().clone())
    }

    /// Subnet forward: mean pooling over real tokens, then the head sliced to the subnet's width.
    pub fn forward(
        &self,
        ids: &Tensor,
        mask: &Tensor,
        spec: &SubnetSpec,
        gates: Option<&[LayerGates]>,
    ) -> Result<SubnetOutput> {
        let hidden = self.encoder.forward_masked(ids, mask, spec, gates)?;
        let logits = self.classify(hidden.last(), mask)?;
        Ok(SubnetOutput { logits, hidden })
    }

    /// Head logits `[B, classes]` from last hidden states `[B, T, d_sub]`.
    pub fn classify(&self, last: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let d_sub = last.dim(2)?;
        let pooled = mean_pool(last, mask)?;
        let w = self.head_weight.as_tensor().narrow(1, 0, d_sub)?;
        Ok(pooled
            .matmul(&w.t()?)?
            .broadcast_add(self.head_bias.as_tensor())?)
    }
}

/// Mean of `h` `[B, T, d]` over the real tokens of `mask` `[B, T]`.
pub fn mean_pool(h: &Tensor, mask: &Tensor) -> Result<Tensor> {
    let m = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
    let summed = h.broadcast_mul(&m)?.sum(1)?;
    let counts = m.sum(1)?.clamp(1.0, f64::MAX)?;
    Ok(summed.broadcast_div(&counts)?)
}

/// Accuracy of argmax predictions against labels.
pub fn accuracy(logits: &Tensor, labels: &[u32]) -> Result<usize> {
    let pred = logits.argmax(D::Minus1)?.to_vec1::<u32>()?;
    Ok(pred.iter().zip(labels).filter(|(p, l)| p == l).count())
}
