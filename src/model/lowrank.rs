//! Staged low-rank adapters (A_s, B_s), s = 0, 1, 2, shared by every subnet (MLFS Proposition 1).

use super::ops::{cast, gpu_contiguous};
use candle_core::{DType, Device, Result, Tensor, Var};
use rand::rngs::StdRng;
use rand_distr::{Distribution, Normal};

/// Number of MLFS stages, each with its own adapter pair.
pub const STAGES: usize = 3;

/// Three rank-r adapter pairs on one `d_out × d_in` matrix; only the active stage trains.
pub struct StagedLowRank {
    /// `A_s ∈ R^{r×d_in}`, Gaussian init.
    pub a: Vec<Var>,
    /// `B_s ∈ R^{d_out×r}`, zero init so training starts at the teacher.
    pub b: Vec<Var>,
    /// `lora_alpha / r`.
    pub scale: f64,
}

impl StagedLowRank {
    /// LoRA initialisation: A ~ N(0, 1/d_in) (Kaiming-like), B = 0.
    pub fn new(
        d_out: usize,
        d_in: usize,
        rank: usize,
        alpha: f64,
        rng: &mut StdRng,
        device: &Device,
    ) -> Result<Self> {
        let std = (1.0 / d_in as f64).sqrt();
        let normal = Normal::new(0.0f32, std as f32).map_err(candle_core::Error::wrap)?;
        let mut a = Vec::with_capacity(STAGES);
        let mut b = Vec::with_capacity(STAGES);
        for _ in 0..STAGES {
            let values: Vec<f32> = (0..rank * d_in).map(|_| normal.sample(rng)).collect();
            a.push(Var::from_tensor(&Tensor::from_vec(
                values,
                (rank, d_in),
                device,
            )?)?);
            b.push(Var::zeros((d_out, rank), DType::F32, device)?);
        }
        Ok(Self {
            a,
            b,
            scale: alpha / rank as f64,
        })
    }

    /// Adapter rank r.
    pub fn rank(&self) -> usize {
        self.a[0].dims()[0]
    }

    /// `scale · Π^out(B_s) · Π^in(A_s) · x` for a batch `x` of shape [N, in_n], tracked for gradients.
    /// The products run in `x`'s dtype (the f32 adapters cast to it, as autocast casts them).
    pub fn delta(&self, stage: usize, x: &Tensor, out_n: usize) -> Result<Tensor> {
        let in_n = x.dim(1)?;
        let a = gpu_contiguous(&self.a[stage].as_tensor().narrow(1, 0, in_n)?)?;
        let a = cast(&a, x.dtype())?;
        let b = cast(&self.b[stage].as_tensor().narrow(0, 0, out_n)?, x.dtype())?;
        let low = x.matmul(&a.t()?)?;
        low.matmul(&b.t()?)? * self.scale
    }

    /// The dense `scale · B_s A_s` of one stage (for merging; never on the training path).
    pub fn dense(&self, stage: usize) -> Result<Tensor> {
        self.b[stage]
            .as_tensor()
            .matmul(self.a[stage].as_tensor())?
            * self.scale
    }
}
