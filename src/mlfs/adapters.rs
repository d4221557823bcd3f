//! The adapter bookkeeping every supernet shares: the walk over its adapted linears (stage
//! switch, trainable set, named state, loading), written once over "my adapted linears, my
//! projections and my other trained tensors".

use super::projection::Projections;
use crate::model::linear::ElasticLinear;
use crate::model::lowrank::STAGES;
use crate::model::param::Param;
use anyhow::{bail, Context, Result};
use candle_core::{DType, Tensor, Var};
use std::collections::HashMap;

/// What a supernet holds that MLFS trains and stores.
pub trait AdaptedSupernet {
    /// Every linear carrying staged adapters, with its checkpoint name (`adapter.{layer}.{i}`).
    fn adapted_linears(&self) -> Vec<(String, &ElasticLinear)>;
    /// The same linears, mutably, in the same order.
    fn adapted_linears_mut(&mut self) -> Vec<&mut ElasticLinear>;
    /// The maxnet's feature projections P^m.
    fn projections(&self) -> &Projections;
    /// Trained tensors besides adapters and projections (a task head, a student's weights).
    fn other_trainable(&self) -> Vec<Param>;
    /// Every stored tensor besides adapters and projections, by checkpoint name.
    fn other_state(&self) -> Vec<(String, Var)>;

    /// Makes one stage's adapters trainable and merges all others into the frozen weights.
    fn set_stage(&mut self, stage: Option<usize>) -> Result<()> {
        for lin in self.adapted_linears_mut() {
            lin.set_active_stage(stage)?;
        }
        Ok(())
    }

    /// The tensors the optimizer updates in `stage`: its adapter pairs, the others, then the
    /// projections (learnt ones, from stage 1 on).
    fn trainable(&self, stage: usize) -> Vec<Param> {
        let mut out = Vec::new();
        for (name, lin) in self.adapted_linears() {
            if let Some(lora) = &lin.lora {
                for (part, var) in [("a", &lora.a[stage]), ("b", &lora.b[stage])] {
                    out.push(Param {
                        name: format!("{name}.{part}{stage}"),
                        var: var.clone(),
                        decay: true,
                    });
                }
            }
        }
        out.extend(self.other_trainable());
        out.extend(self.projections().trainable(stage));
        out
    }

    /// Every stored variable (all stages' adapters, then the others), by checkpoint name.
    fn stored_vars(&self) -> Vec<(String, Var)> {
        let mut out = Vec::new();
        for (name, lin) in self.adapted_linears() {
            if let Some(lora) = &lin.lora {
                for s in 0..STAGES {
                    out.push((format!("{name}.a{s}"), lora.a[s].clone()));
                    out.push((format!("{name}.b{s}"), lora.b[s].clone()));
                }
            }
        }
        out.extend(self.other_state());
        out.extend(self.projections().state());
        out
    }

    /// Every tensor MLFS stores, by name (what checkpoints and `supernet.safetensors` hold).
    fn named_state(&self) -> Vec<(String, Tensor)> {
        self.stored_vars()
            .into_iter()
            .map(|(name, var)| (name, var.as_tensor().clone()))
            .collect()
    }

    /// Restores tensors saved by [`Self::named_state`]; every name must be there, shapes must match.
    fn load_state(&mut self, tensors: &HashMap<String, Tensor>) -> Result<()> {
        for (name, var) in self.stored_vars() {
            let t = tensors
                .get(&name)
                .with_context(|| format!("tensor '{name}' is missing"))?;
            if t.dims() != var.dims() {
                bail!(
                    "tensor '{name}' has shape {:?}, expected {:?}",
                    t.dims(),
                    var.dims()
                );
            }
            // Stored tensors load on the CPU; the run may be on a GPU.
            var.set(&t.to_dtype(DType::F32)?.to_device(var.device())?)?;
        }
        // Merged weights were computed from the old adapter values: recompute them.
        for lin in self.adapted_linears_mut() {
            lin.set_active_stage(lin.active_stage)?;
        }
        Ok(())
    }
}

/// The adapted linears of `layers` (each layer's linears in order), named `adapter.{layer}.{i}`
/// with `i` the linear's place in its layer: the checkpoint names of both supernets.
pub fn named_adapted<'a, L>(layers: impl Iterator<Item = L>) -> Vec<(String, &'a ElasticLinear)>
where
    L: IntoIterator<Item = &'a ElasticLinear>,
{
    let mut out = Vec::new();
    for (l, linears) in layers.enumerate() {
        for (i, lin) in linears.into_iter().enumerate() {
            if lin.lora.is_some() {
                out.push((format!("adapter.{l}.{i}"), lin));
            }
        }
    }
    out
}

/// The adapted linears of `layers`, mutably, in the order of [`named_adapted`].
pub fn adapted_mut<'a, L>(layers: impl Iterator<Item = L>) -> Vec<&'a mut ElasticLinear>
where
    L: IntoIterator<Item = &'a mut ElasticLinear>,
{
    layers
        .flat_map(IntoIterator::into_iter)
        .filter(|lin| lin.lora.is_some())
        .collect()
}
