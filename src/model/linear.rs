//! The elastic linear layer: a frozen teacher matrix sliced to any subnet, plus staged adapters.

use super::device::Precision;
use super::lowrank::{StagedLowRank, STAGES};
use super::ops::{cast, frozen_matmul_t, gpu_contiguous, trainable_matmul_t};
use candle_core::{DType, Result, Tensor};

/// `y = x · Π(W)ᵀ + Π(b) + scale · Π^out(B_s) Π^in(A_s) x` for any front slice of a teacher linear.
pub struct ElasticLinear {
    /// The teacher's weight `[d_out, d_in]`, never modified.
    pub weight_pre: Tensor,
    /// `weight_pre` plus the merged adapters of every non-training stage (exact by Proposition 1).
    pub weight_eff: Tensor,
    /// The teacher's bias `[d_out]`, frozen.
    pub bias: Option<Tensor>,
    /// Staged adapters, if this layer is adapted.
    pub lora: Option<StagedLowRank>,
    /// The stage whose adapter pair trains, if any; the others are merged into `weight_eff`.
    pub active_stage: Option<usize>,
    /// The dtype the matrix product runs in (bf16 inputs accumulate in f32 on the GPU).
    pub compute: DType,
    /// `weight_effᵀ` `[d_in, d_out]`, contiguous, for inference of the whole layer: at a few
    /// rows (batch-1 latency) candle's CPU product with a plain right-hand side took half the
    /// time of the transposed view's. Set by [`Self::prepare_inference`].
    pub weight_t: Option<Tensor>,
}

/// `x · wᵀ` in `w`'s dtype (x cast to it and the product cast back): frozen `w` only.
fn frozen_product(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    if x.dtype() == w.dtype() {
        return frozen_matmul_t(x, w);
    }
    cast(&frozen_matmul_t(&cast(x, w.dtype())?, w)?, x.dtype())
}

/// `x · wᵀ` for a trainable `w` (f32 master weights), both cast to `compute` for the product.
fn trainable_product(x: &Tensor, w: &Tensor, compute: DType) -> Result<Tensor> {
    if compute == x.dtype() && compute == w.dtype() {
        if let Some(y) = super::ops::blas_trainable_matmul_t(x, w)? {
            return Ok(y);
        }
        return x.matmul(&gpu_contiguous(w)?.t()?);
    }
    if !x.device().is_cpu() {
        return trainable_matmul_t(x, w, compute);
    }
    let y = x.to_dtype(compute)?.matmul(&w.to_dtype(compute)?.t()?)?;
    y.to_dtype(x.dtype())
}

impl ElasticLinear {
    /// A frozen layer without adapters.
    pub fn new(weight: Tensor, bias: Option<Tensor>) -> Self {
        Self {
            weight_eff: weight.clone(),
            weight_pre: weight,
            bias,
            lora: None,
            active_stage: None,
            compute: DType::F32,
            weight_t: None,
        }
    }

    /// Keeps a contiguous transpose of the weight for whole-layer inference (a dense, merged
    /// model: no adapter trains). Costs the weight's memory once more.
    pub fn prepare_inference(&mut self) -> Result<()> {
        self.weight_t = Some(self.weight_eff.t()?.contiguous()?);
        Ok(())
    }

    /// Runs the product in `precision`; a frozen teacher weight is stored in it too (adapters
    /// and trainable weights stay f32).
    pub fn set_precision(&mut self, precision: Precision) -> Result<()> {
        let dtype = precision.dtype();
        if dtype == self.compute && dtype == self.weight_pre.dtype() {
            return Ok(());
        }
        self.compute = dtype;
        if !self.weight_pre.track_op() {
            self.weight_pre = self.weight_pre.to_dtype(dtype)?;
        }
        self.set_active_stage(self.active_stage)
    }

    /// Output and input width of the full layer.
    pub fn dims(&self) -> (usize, usize) {
        let d = self.weight_pre.dims();
        (d[0], d[1])
    }

    /// Forward of `x` `[N, in_n]` to `[N, out_n]` using the leading `out_n` rows and `in_n` columns.
    pub fn forward(&self, x: &Tensor, out_n: usize) -> Result<Tensor> {
        let in_n = x.dim(1)?;
        if let Some(wt) = &self.weight_t {
            let whole = wt.dims() == [in_n, out_n] && self.active_stage.is_none();
            if whole && !x.track_op() && x.dtype() == wt.dtype() {
                if let Some(y) = super::blas::linear(x, wt, self.bias.as_ref())? {
                    return Ok(y);
                }
                let y = x.matmul(wt)?;
                return match &self.bias {
                    Some(b) => y.broadcast_add(b),
                    None => Ok(y),
                };
            }
        }
        let w = self.weight_eff.narrow(0, 0, out_n)?.narrow(1, 0, in_n)?;
        // A trainable base weight (full fine-tuning) needs candle's own matmul for its gradient.
        let mut y = if w.track_op() {
            trainable_product(x, &w, self.compute)?
        } else {
            frozen_product(x, &w)?
        };
        if let Some(b) = &self.bias {
            y = y.broadcast_add(&b.narrow(0, 0, out_n)?)?;
        }
        if let (Some(lora), Some(stage)) = (&self.lora, self.active_stage) {
            y = (y + lora.delta(stage, x, out_n)?)?;
        }
        Ok(y)
    }

    /// Forward through the teacher's own weight only (no adapters): the distillation teacher.
    pub fn forward_base(&self, x: &Tensor, out_n: usize) -> Result<Tensor> {
        let in_n = x.dim(1)?;
        let w = self.weight_pre.narrow(0, 0, out_n)?.narrow(1, 0, in_n)?;
        let y = frozen_product(x, &w)?;
        match &self.bias {
            Some(b) => y.broadcast_add(&b.narrow(0, 0, out_n)?),
            None => Ok(y),
        }
    }

    /// Forward with or without the adapters.
    pub fn forward_with(&self, x: &Tensor, out_n: usize, adapters: bool) -> Result<Tensor> {
        if adapters {
            self.forward(x, out_n)
        } else {
            self.forward_base(x, out_n)
        }
    }

    /// Makes `stage` the trainable one (or none) and merges every other stage into `weight_eff`.
    pub fn set_active_stage(&mut self, stage: Option<usize>) -> Result<()> {
        self.active_stage = stage;
        // Detached: frozen stages must never receive gradients through the merged weight.
        self.weight_eff = self.merged_weight(|s| Some(s) != stage)?.detach();
        if self.weight_t.is_some() {
            self.prepare_inference()?;
        }
        Ok(())
    }

    /// `W_pre + Σ_{s kept} scale · B_s A_s` over the full matrix.
    /// In the stored weight's dtype; the sum is taken in f32.
    pub fn merged_weight(&self, keep: impl Fn(usize) -> bool) -> Result<Tensor> {
        let dtype = self.weight_pre.dtype();
        let mut w = self.weight_pre.to_dtype(DType::F32)?;
        if let Some(lora) = &self.lora {
            for s in (0..STAGES).filter(|&s| keep(s)) {
                w = (w + lora.dense(s)?)?;
            }
        }
        w.to_dtype(dtype)
    }
}

/// Index tensor of a permutation.
fn index(order: &[usize], device: &candle_core::Device) -> Result<Tensor> {
    let idx: Vec<u32> = order.iter().map(|&i| i as u32).collect();
    Tensor::from_vec(idx, order.len(), device)
}

impl ElasticLinear {
    /// Reorders output units (rows of W, b and every B_s); `order[new] = old`.
    pub fn permute_out(&mut self, order: &[usize]) -> Result<()> {
        let idx = index(order, self.weight_pre.device())?;
        self.weight_pre = self.weight_pre.index_select(&idx, 0)?;
        if let Some(b) = &self.bias {
            self.bias = Some(b.index_select(&idx, 0)?);
        }
        if let Some(lora) = &self.lora {
            for b in &lora.b {
                b.set(&b.as_tensor().index_select(&idx, 0)?)?;
            }
        }
        self.set_active_stage(self.active_stage)
    }

    /// Reorders input units (columns of W and of every A_s); `order[new] = old`.
    pub fn permute_in(&mut self, order: &[usize]) -> Result<()> {
        let idx = index(order, self.weight_pre.device())?;
        self.weight_pre = self.weight_pre.index_select(&idx, 1)?;
        if let Some(lora) = &self.lora {
            for a in &lora.a {
                a.set(&a.as_tensor().index_select(&idx, 1)?)?;
            }
        }
        self.set_active_stage(self.active_stage)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Var;
    use rand::SeedableRng;

    fn random(shape: (usize, usize), seed: u64) -> Tensor {
        crate::util::uniform_tensor(shape, seed)
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        crate::util::max_abs_diff(a, b).unwrap()
    }

    /// A 12×10 layer with rank-3 adapters whose B are non-zero (as after training).
    fn trained_layer() -> ElasticLinear {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let mut lin = ElasticLinear::new(
            random((12, 10), 1),
            Some(random((1, 12), 2).flatten_all().unwrap()),
        );
        let cpu = candle_core::Device::Cpu;
        let lora = StagedLowRank::new(12, 10, 3, 6.0, &mut rng, &cpu).unwrap();
        for (s, b) in lora.b.iter().enumerate() {
            b.set(&random((12, 3), 10 + s as u64)).unwrap();
        }
        lin.lora = Some(lora);
        lin
    }

    #[test]
    fn slicing_a_product_equals_the_product_of_slices() {
        let b = random((12, 3), 5);
        let a = random((3, 10), 6);
        let full = b.matmul(&a).unwrap();
        let sliced_product = full.narrow(0, 0, 7).unwrap().narrow(1, 0, 4).unwrap();
        let product_of_slices = b
            .narrow(0, 0, 7)
            .unwrap()
            .matmul(&a.narrow(1, 0, 4).unwrap())
            .unwrap();
        assert!(max_diff(&sliced_product, &product_of_slices) < 1e-6);
    }

    #[test]
    fn proposition_one_delta_is_the_sum_of_sliced_stage_products() {
        // ΔW_Φ = Σ_s Π_Φ(B_s A_s): the subnet's forward equals a dense layer with that weight,
        // whichever stage is the trainable one (the others are merged into weight_eff).
        let x = random((5, 4), 7);
        for active in [None, Some(0), Some(1), Some(2)] {
            let mut lin = trained_layer();
            lin.set_active_stage(active).unwrap();
            let lora = lin.lora.as_ref().unwrap();
            let mut w = lin
                .weight_pre
                .narrow(0, 0, 7)
                .unwrap()
                .narrow(1, 0, 4)
                .unwrap();
            for s in 0..STAGES {
                let ba = lora
                    .dense(s)
                    .unwrap()
                    .narrow(0, 0, 7)
                    .unwrap()
                    .narrow(1, 0, 4)
                    .unwrap();
                w = (w + ba).unwrap();
            }
            let bias = lin.bias.as_ref().unwrap().narrow(0, 0, 7).unwrap();
            let expected = x
                .matmul(&w.t().unwrap())
                .unwrap()
                .broadcast_add(&bias)
                .unwrap();
            let got = lin.forward(&x, 7).unwrap();
            assert!(max_diff(&got, &expected) < 1e-4, "active stage {active:?}");
        }
    }

    #[test]
    fn only_the_active_stage_receives_gradients() {
        let mut lin = trained_layer();
        lin.set_active_stage(Some(1)).unwrap();
        let x = Var::from_tensor(&random((5, 10), 8)).unwrap();
        let loss = lin
            .forward(x.as_tensor(), 12)
            .unwrap()
            .sqr()
            .unwrap()
            .sum_all()
            .unwrap();
        let grads = loss.backward().unwrap();
        let lora = lin.lora.as_ref().unwrap();
        assert!(grads.get(lora.a[1].as_tensor()).is_some());
        assert!(grads.get(lora.b[1].as_tensor()).is_some());
        for s in [0, 2] {
            assert!(
                grads.get(lora.a[s].as_tensor()).is_none(),
                "stage {s} A got a gradient"
            );
            assert!(
                grads.get(lora.b[s].as_tensor()).is_none(),
                "stage {s} B got a gradient"
            );
        }
        // The input gradient through the frozen matmul equals candle's own matmul gradient.
        let w = lin.weight_eff.clone();
        let x2 = Var::from_tensor(x.as_tensor()).unwrap();
        let plain = x2
            .as_tensor()
            .matmul(&w.t().unwrap())
            .unwrap()
            .broadcast_add(lin.bias.as_ref().unwrap())
            .unwrap();
        let plain = (plain + lora.delta(1, x2.as_tensor(), 12).unwrap()).unwrap();
        let g2 = plain.sqr().unwrap().sum_all().unwrap().backward().unwrap();
        let ours = grads.get(x.as_tensor()).unwrap();
        let theirs = g2.get(x2.as_tensor()).unwrap();
        assert!(max_diff(ours, theirs) < 1e-3);
    }
}
