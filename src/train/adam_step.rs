//! The settings of one AdamW update, shared by the CPU's and the GPU's one-pass steps.

/// The settings of one fused step (the CPU's and the GPU's).
pub struct FusedStep {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub lr: f64,
    pub bc1: f64,
    pub bc2: f64,
    /// Clipping factor applied to the gradient.
    pub grad_scale: f64,
    /// `1 − lr·weight_decay` for decayed parameters, else 1.
    pub decay: f64,
}
