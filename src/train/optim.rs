//! AdamW whose moments can be saved and restored (candle-nn's cannot), with global-norm clipping.

use super::adam_step::FusedStep;
use crate::model::param::Param;
use anyhow::Result;
use candle_core::backprop::GradStore;
use candle_core::Tensor;
use std::collections::HashMap;

/// Decoupled-weight-decay Adam over a fixed list of parameters.
pub struct AdamW {
    pub params: Vec<Param>,
    pub first_moment: Vec<Tensor>,
    pub second_moment: Vec<Tensor>,
    /// Steps taken (for bias correction).
    pub t: usize,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

impl AdamW {
    /// Zero moments for `params`.
    pub fn new(params: Vec<Param>, weight_decay: f64) -> Result<Self> {
        let zeros = |p: &Param| p.var.as_tensor().zeros_like();
        let first_moment = params
            .iter()
            .map(zeros)
            .collect::<candle_core::Result<_>>()?;
        let second_moment = params
            .iter()
            .map(zeros)
            .collect::<candle_core::Result<_>>()?;
        Ok(Self {
            params,
            first_moment,
            second_moment,
            t: 0,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay,
        })
    }

    /// Adds this backward pass's gradients of our parameters into `acc` (one slot per parameter).
    ///
    /// Each subnet's loss is back-propagated on its own and accumulated here, so only one
    /// subnet's graph is alive at a time; the summed gradient is the same as one backward
    /// of the summed loss.
    pub fn accumulate(&self, grads: &GradStore, acc: &mut Vec<Option<Tensor>>) -> Result<()> {
        acc.resize(self.params.len(), None);
        for (slot, p) in acc.iter_mut().zip(&self.params) {
            if let Some(g) = grads.get(p.var.as_tensor()) {
                // Detached: a gradient may still carry candle's graph of the forward pass.
                let g = g.detach();
                *slot = Some(match slot.take() {
                    Some(prev) => (prev + g)?,
                    None => g,
                });
            }
        }
        Ok(())
    }

    /// Adds a gradient computed outside candle's backward pass (e.g. a fused loss head) to the
    /// slot of the parameter `var`; ignored when `var` is not one of ours.
    pub fn add_grad(
        &self,
        var: &Tensor,
        grad: Tensor,
        acc: &mut Vec<Option<Tensor>>,
    ) -> Result<()> {
        acc.resize(self.params.len(), None);
        if let Some(i) = self.slot_of(var) {
            acc[i] = Some(match acc[i].take() {
                Some(prev) => (prev + grad)?,
                None => grad,
            });
        }
        Ok(())
    }

    /// Adds `rows` `[N, d]` into rows `ids` `[N]` of the gradient slot of `var` `[V, d]`: an
    /// embedding lookup's gradient, without the zero matrix the lookup's backward fills and
    /// the sum with the slot (two more matrices of `var`'s size at the end of a step, 400 MB
    /// each for SmolLM2-1.7B's tied embeddings). Ignored when `var` is not one of ours.
    pub fn add_grad_rows(
        &self,
        var: &Tensor,
        ids: &Tensor,
        rows: &Tensor,
        acc: &mut Vec<Option<Tensor>>,
    ) -> Result<()> {
        acc.resize(self.params.len(), None);
        if let Some(i) = self.slot_of(var) {
            let base = match acc[i].take() {
                Some(prev) => prev,
                None => var.zeros_like()?,
            };
            acc[i] = Some(base.index_add(ids, &rows.detach(), 0)?);
        }
        Ok(())
    }

    /// The index of parameter `var` in [`Self::params`].
    fn slot_of(&self, var: &Tensor) -> Option<usize> {
        self.params
            .iter()
            .position(|p| p.var.as_tensor().id() == var.id())
    }

    /// Global L2 norm of accumulated gradients.
    pub fn grad_norm(grads: &[Option<Tensor>]) -> Result<f64> {
        let on_gpu = grads.iter().flatten().any(|g| !g.device().is_cpu());
        if on_gpu {
            // One read-back for all parameters: a sync per parameter stalls the GPU's queue.
            let sums = grads
                .iter()
                .flatten()
                .map(gpu_square_sum_parts)
                .collect::<candle_core::Result<Vec<_>>>()?;
            let total = Tensor::cat(&sums, 0)?.sum_all()?.to_scalar::<f64>()?;
            return Ok(total.sqrt());
        }
        let all: Vec<&Tensor> = grads.iter().flatten().collect();
        Ok(super::optim_cpu::sum_of_squares(&all)?.sqrt())
    }

    /// One update at learning rate `lr`, gradients clipped to `clip` global norm (0: off).
    /// Returns the gradient norm before clipping.
    pub fn step(&mut self, grads: &[Option<Tensor>], lr: f64, clip: f64) -> Result<f64> {
        let norm = Self::grad_norm(grads)?;
        let factor = if clip > 0.0 && norm > clip {
            clip / norm
        } else {
            1.0
        };
        self.t += 1;
        let bc1 = 1.0 - self.beta1.powi(self.t as i32);
        let bc2 = 1.0 - self.beta2.powi(self.t as i32);
        for (i, p) in self.params.iter().enumerate() {
            let Some(g) = grads.get(i).and_then(|g| g.as_ref()) else {
                continue;
            };
            let decay = if p.decay && self.weight_decay > 0.0 {
                1.0 - lr * self.weight_decay
            } else {
                1.0
            };
            let step = FusedStep {
                beta1: self.beta1,
                beta2: self.beta2,
                eps: self.eps,
                lr,
                bc1,
                bc2,
                grad_scale: factor,
                decay,
            };
            let (m, v) = (&self.first_moment[i], &self.second_moment[i]);
            #[cfg(feature = "cuda")]
            if p.var.as_tensor().device().is_cuda() {
                super::optim_cuda::fused_step(p.var.as_tensor(), g, m, v, &step)?;
                continue;
            }
            let (w, m, v) = super::optim_cpu::fused_step(p.var.as_tensor(), g, m, v, &step)?;
            p.var.set(&w)?;
            self.first_moment[i] = m;
            self.second_moment[i] = v;
        }
        Ok(norm)
    }

    /// Moments by parameter name, for checkpoints.
    pub fn state(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        for (i, p) in self.params.iter().enumerate() {
            out.push((format!("adam.m.{}", p.name), self.first_moment[i].clone()));
            out.push((format!("adam.v.{}", p.name), self.second_moment[i].clone()));
        }
        out
    }

    /// Restores moments saved by [`Self::state`].
    pub fn load_state(&mut self, tensors: &HashMap<String, Tensor>, t: usize) -> Result<()> {
        for (i, p) in self.params.iter().enumerate() {
            for (prefix, slot) in [
                ("m", &mut self.first_moment[i]),
                ("v", &mut self.second_moment[i]),
            ] {
                let name = format!("adam.{prefix}.{}", p.name);
                let saved = tensors
                    .get(&name)
                    .ok_or_else(|| anyhow::anyhow!("optimizer moment '{name}' is missing"))?;
                if saved.dims() != slot.dims() {
                    anyhow::bail!("optimizer moment '{name}' has the wrong shape");
                }
                // Stored moments load on the CPU; the parameters may be on a GPU.
                *slot = saved.to_device(p.var.device())?;
            }
        }
        self.t = t;
        Ok(())
    }
}

/// Linear warm-up to `peak` over `warmup` steps, then linear decay to 0 at `total`.
pub fn learning_rate(step: usize, total: usize, warmup: usize, peak: f64) -> f64 {
    if total == 0 {
        return 0.0;
    }
    if step < warmup {
        return peak * (step + 1) as f64 / warmup as f64;
    }
    let remaining = total.saturating_sub(step) as f64;
    let span = total.saturating_sub(warmup).max(1) as f64;
    peak * remaining / span
}

/// Partial sums of a gradient's squares on the GPU, as f64 (one fused pass where it applies).
fn gpu_square_sum_parts(g: &Tensor) -> candle_core::Result<Tensor> {
    #[cfg(feature = "cuda")]
    if g.dtype() == candle_core::DType::F32 && g.device().is_cuda() {
        return crate::model::sum_squares_cuda::sum_squares_partials(g)?
            .to_dtype(candle_core::DType::F64);
    }
    crate::model::ops::sum_all_parallel(&g.sqr()?)?
        .to_dtype(candle_core::DType::F64)?
        .reshape(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    #[test]
    fn adamw_first_step_matches_the_formula() {
        // After one step Adam moves each weight by lr·sign(g) (bias-corrected m/√v = ±1).
        let var = Var::new(&[1.0f32, -2.0], &Device::Cpu).unwrap();
        let params = vec![Param {
            name: "w".into(),
            var: var.clone(),
            decay: true,
        }];
        let mut opt = AdamW::new(params, 0.1).unwrap();
        let loss = (var.as_tensor() * Tensor::new(&[3.0f32, -0.5], &Device::Cpu).unwrap())
            .unwrap()
            .sum_all()
            .unwrap();
        let grads = loss.backward().unwrap();
        let mut acc = Vec::new();
        opt.accumulate(&grads, &mut acc).unwrap();
        opt.step(&acc, 0.01, 0.0).unwrap();
        let w = var.as_tensor().to_vec1::<f32>().unwrap();
        let expect = [1.0 * (1.0 - 0.001) - 0.01, -2.0 * (1.0 - 0.001) + 0.01];
        for (a, b) in w.iter().zip(expect) {
            assert!((*a as f64 - b).abs() < 1e-5, "{a} vs {b}");
        }
    }

    #[test]
    fn schedule_warms_up_then_decays() {
        assert!((learning_rate(0, 100, 10, 1.0) - 0.1).abs() < 1e-12);
        assert!((learning_rate(9, 100, 10, 1.0) - 1.0).abs() < 1e-12);
        assert!((learning_rate(55, 100, 10, 1.0) - 0.5).abs() < 1e-12);
        assert_eq!(learning_rate(100, 100, 10, 1.0), 0.0);
    }
}
