//! What the fused LM-head loss takes and gives back, shared by its CPU and GPU versions.

use super::distill::{combine, DistillWeights};
use candle_core::Tensor;

/// How the head loss is weighted and what it returns.
#[derive(Debug, Clone, Copy)]
pub struct HeadLossOptions {
    /// α (the cross-entropy gets `1 − α`) and T, from the run's distillation settings.
    pub weights: DistillWeights,
    /// Return d loss / d hidden.
    pub grad_hidden: bool,
    /// Also return d loss / d head (a trained output matrix).
    pub grad_head: bool,
    /// The dtype of the products with the head on a GPU (bf16 inputs, f32 results and loss
    /// arithmetic); the CPU computes in f32 whatever it says.
    pub compute: candle_core::DType,
}

/// Sums over the scored positions, and the gradients of the mean combined loss.
pub struct HeadLoss {
    pub ce_sum: f64,
    pub kd_sum: f64,
    /// Positions whose argmax is the target.
    pub hits: usize,
    /// Positions scored (those with a target).
    pub count: usize,
    /// `[N, d]`, for the mean of `(1−α)·CE + α·T²·KL`.
    pub grad_hidden: Option<Tensor>,
    /// `[V, d]`.
    pub grad_head: Option<Tensor>,
}

impl HeadLoss {
    /// Mean cross-entropy and mean `T²·KL` over the scored positions.
    pub fn terms(&self, temperature: f64) -> (f64, f64) {
        let n = self.count.max(1) as f64;
        (self.ce_sum / n, temperature * temperature * self.kd_sum / n)
    }

    /// The combined loss of these terms (no feature terms), by the distillation formula.
    pub fn loss(&self, w: DistillWeights) -> f64 {
        let (task, kd) = self.terms(w.temperature);
        combine(&task, &kd, &[], w).unwrap_or(f64::NAN)
    }
}
