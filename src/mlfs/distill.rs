//! Task and distillation losses: cross-entropy, T²·KL(maxnet ‖ subnet) and projected feature MSE.

use super::config::DistillConfig;
use candle_core::{DType, Result, Tensor, D};

/// Mean cross-entropy of logits `[B, C]` against label ids `[B]` (u32).
pub fn cross_entropy(logits: &Tensor, labels: &Tensor) -> Result<Tensor> {
    candle_nn::loss::cross_entropy(logits, labels)
}

/// `T² · mean_b KL(softmax(z_t/T) ‖ softmax(z_s/T))`, teacher logits detached.
pub fn kd_loss(student: &Tensor, teacher: &Tensor, temperature: f64) -> Result<Tensor> {
    let teacher = teacher.detach();
    let log_p_t = candle_nn::ops::log_softmax(&(teacher / temperature)?, D::Minus1)?;
    let log_p_s = candle_nn::ops::log_softmax(&(student / temperature)?, D::Minus1)?;
    let p_t = log_p_t.exp()?;
    let kl = (p_t * (log_p_t - log_p_s)?)?.sum(D::Minus1)?.mean_all()?;
    kl * (temperature * temperature)
}

/// Mean over real tokens and the k projected dims of `(h_max P − h_sub P[:d_sub])²`.
///
/// `h_sub` `[…, d_sub]`, `h_max` `[…, d]` (detached here; the same leading dims, flattened to
/// token rows), `proj` `[d, k]`; `mask` (0/1 per row) drops padding rows, `None` counts every
/// row (packed rows are all real tokens).
pub fn feature_loss(
    h_sub: &Tensor,
    h_max: &Tensor,
    proj: &Tensor,
    mask: Option<&Tensor>,
) -> Result<Tensor> {
    let d_sub = h_sub.dim(D::Minus1)?;
    let d = h_max.dim(D::Minus1)?;
    let rows = h_sub.elem_count() / d_sub.max(1);
    let k = proj.dim(1)?;
    let target = h_max.detach().reshape((rows, d))?.matmul(proj)?;
    let ours = h_sub
        .reshape((rows, d_sub))?
        .matmul(&proj.narrow(0, 0, d_sub)?)?;
    let mut sq = (ours - target)?.sqr()?;
    let tokens = match mask {
        Some(mask) => {
            let mask = mask.to_dtype(DType::F32)?.reshape((rows, 1))?;
            sq = sq.broadcast_mul(&mask)?;
            mask.sum_all()?.to_scalar::<f32>()?.max(1.0) as f64
        }
        None => rows.max(1) as f64,
    };
    crate::model::ops::sum_all_parallel(&sq)? / (tokens * k as f64)
}

/// The weights of one subnet's loss terms: `(1−α)·task + α·(KD + β·Σ features)`, KD at T.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DistillWeights {
    pub alpha: f64,
    pub beta: f64,
    pub temperature: f64,
}

impl DistillWeights {
    /// The weights of a run's distillation settings.
    pub fn of(config: &DistillConfig) -> Self {
        Self {
            alpha: config.alpha,
            beta: config.beta,
            temperature: config.temperature,
        }
    }

    /// Weight of the task loss, `1 − α`.
    pub fn task(&self) -> f64 {
        1.0 - self.alpha
    }

    /// Weight of the logit distillation term, `α`.
    pub fn kd(&self) -> f64 {
        self.alpha
    }

    /// Weight of each layer's feature term in the total, `α·β`.
    pub fn feature(&self) -> f64 {
        self.alpha * self.beta
    }
}

/// A loss term the formula weighs and adds: a tensor (with its graph) or an already reduced value.
pub trait LossTerm: Sized + Clone {
    /// `self · w`.
    fn scaled(&self, w: f64) -> anyhow::Result<Self>;
    /// `self + other`.
    fn plus(self, other: Self) -> anyhow::Result<Self>;
}

impl LossTerm for Tensor {
    fn scaled(&self, w: f64) -> anyhow::Result<Self> {
        Ok((self * w)?)
    }
    fn plus(self, other: Self) -> anyhow::Result<Self> {
        Ok((self + other)?)
    }
}

impl LossTerm for f64 {
    fn scaled(&self, w: f64) -> anyhow::Result<Self> {
        Ok(self * w)
    }
    fn plus(self, other: Self) -> anyhow::Result<Self> {
        Ok(self + other)
    }
}

/// `(1−α)·task + α·(kd + β·Σ_l feature_l)`: the one place the terms of a student's loss meet.
pub fn combine<L: LossTerm>(
    task: &L,
    kd: &L,
    features: &[L],
    w: DistillWeights,
) -> anyhow::Result<L> {
    let mut distill = kd.clone();
    for f in features {
        distill = distill.plus(f.scaled(w.beta)?)?;
    }
    task.scaled(w.task())?.plus(distill.scaled(w.kd())?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn t2(v: &[f32], r: usize, c: usize) -> Tensor {
        Tensor::from_slice(v, (r, c), &Device::Cpu).unwrap()
    }

    #[test]
    fn kd_matches_hand_computation() {
        // Teacher p = softmax([0, ln 3]) = [0.25, 0.75]; student q = [0.5, 0.5].
        let teacher = t2(&[0.0, 3f32.ln()], 1, 2);
        let student = t2(&[1.0, 1.0], 1, 2);
        let kl = 0.25 * (0.25f64 / 0.5).ln() + 0.75 * (0.75f64 / 0.5).ln();
        let got = kd_loss(&student, &teacher, 1.0)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!((got as f64 - kl).abs() < 1e-6, "{got} vs {kl}");
        // At T = 2 the logits halve: p = softmax([0, ln3 / 2]) = [1/(1+√3), √3/(1+√3)].
        let s3 = 3f64.sqrt();
        let p = [1.0 / (1.0 + s3), s3 / (1.0 + s3)];
        let kl2 = p[0] * (p[0] / 0.5).ln() + p[1] * (p[1] / 0.5).ln();
        let got = kd_loss(&student, &teacher, 2.0)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(
            (got as f64 - 4.0 * kl2).abs() < 1e-6,
            "{got} vs {}",
            4.0 * kl2
        );
    }

    #[test]
    fn feature_loss_matches_hand_computation() {
        // d = 2, d_sub = 1, k = 1, P = [[1], [2]]; one batch, two tokens, the second padded.
        let proj = t2(&[1.0, 2.0], 2, 1);
        let h_max = Tensor::from_slice(&[1.0f32, 1.0, 9.0, 9.0], (1, 2, 2), &Device::Cpu).unwrap();
        let h_sub = Tensor::from_slice(&[2.0f32, 100.0], (1, 2, 1), &Device::Cpu).unwrap();
        let mask = Tensor::from_slice(&[1u32, 0], (1, 2), &Device::Cpu).unwrap();
        // Token 0: target 1·1 + 1·2 = 3, ours 2·1 = 2 → (2 − 3)² = 1; token 1 masked out.
        let got = feature_loss(&h_sub, &h_max, &proj, Some(&mask))
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!((got - 1.0).abs() < 1e-6, "{got}");
    }

    #[test]
    fn combined_loss_weights() {
        let one = |v: f32| Tensor::new(v, &Device::Cpu).unwrap();
        let w = DistillWeights {
            alpha: 0.9,
            beta: 0.1,
            temperature: 1.0,
        };
        let got = combine(&one(2.0), &one(0.5), &[one(1.0), one(3.0)], w)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        let expected = 0.1 * 2.0 + 0.9 * (0.5 + 0.1 * 4.0);
        assert!((got - expected).abs() < 1e-6);
        let ce = cross_entropy(
            &t2(&[0.0, 3f32.ln()], 1, 2),
            &Tensor::new(&[1u32], &Device::Cpu).unwrap(),
        )
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
        assert!((ce as f64 - (-(0.75f64).ln())).abs() < 1e-6);
    }
}
