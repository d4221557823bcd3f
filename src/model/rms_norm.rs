//! RMSNorm with a trainable γ (students trained in full): candle's fused kernel forward and a
//! hand-written backward for x and γ. candle's autograd over the elementary ops (square, mean,
//! root, reciprocal, two products) took about twenty element-wise passes over the activations
//! each step; this takes eight.

use candle_core::{bail, CpuStorage, CustomOp2, Layout, Result, Shape, Tensor, D};

/// `γ ⊙ x / √(mean(x²) + eps)` over the last dimension, with gradients to `x` and `γ`.
pub fn trainable_rms_norm(x: &Tensor, gamma: &Tensor, eps: f64) -> Result<Tensor> {
    let (xd, gd) = (x.detach().contiguous()?, gamma.detach().contiguous()?);
    let y = candle_nn::ops::rms_norm(&xd, &gd, eps as f32)?;
    if !x.track_op() && !gamma.track_op() {
        return Ok(y);
    }
    let grads: std::sync::Arc<Box<dyn CustomOp2 + Send + Sync>> =
        std::sync::Arc::new(Box::new(RmsNormGrads { eps }));
    Ok(x.attach_backward_op2(gamma, &y, grads))
}

/// The analytic backward, attached to the fused kernel's result.
struct RmsNormGrads {
    eps: f64,
}

impl CustomOp2 for RmsNormGrads {
    fn name(&self) -> &'static str {
        "trainable-rms-norm"
    }

    fn cpu_fwd(
        &self,
        _s1: &CpuStorage,
        _l1: &Layout,
        _s2: &CpuStorage,
        _l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        bail!("trainable-rms-norm: an attached backward has no forward to run")
    }

    /// With x̂ = x·r, r = (mean(x²)+eps)^−½ and h = g ⊙ γ: ∂L/∂γ = Σ_rows g ⊙ x̂ and
    /// ∂L/∂x = r·(h − x̂·mean(h ⊙ x̂)).
    fn bwd(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (x, gamma) = (x.detach(), gamma.detach());
        let r = (x.sqr()?.mean_keepdim(D::Minus1)? + self.eps)?
            .sqrt()?
            .recip()?;
        let x_hat = x.broadcast_mul(&r)?;
        let width = gamma.dim(0)?;
        let grad_gamma = (grad * &x_hat)?.reshape(((), width))?.sum(0)?;
        let h = grad.broadcast_mul(&gamma)?;
        let dot = (&h * &x_hat)?.mean_keepdim(D::Minus1)?;
        let grad_x = (h - x_hat.broadcast_mul(&dot)?)?.broadcast_mul(&r)?;
        Ok((Some(grad_x), Some(grad_gamma)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Var;

    /// Values and both gradients equal candle's autograd over `rms_norm_slow`.
    #[test]
    fn matches_candle_autograd_for_x_and_gamma() {
        let x = crate::util::uniform_tensor((6, 8), 3)
            .reshape((2, 3, 8))
            .unwrap();
        let g = crate::util::uniform_tensor((1, 8), 4).reshape(8).unwrap();
        let w = crate::util::uniform_tensor((6, 8), 5)
            .reshape((2, 3, 8))
            .unwrap();
        let run = |fused: bool| {
            let (xv, gv) = (Var::from_tensor(&x).unwrap(), Var::from_tensor(&g).unwrap());
            let y = if fused {
                trainable_rms_norm(xv.as_tensor(), gv.as_tensor(), 1e-5).unwrap()
            } else {
                candle_nn::ops::rms_norm_slow(xv.as_tensor(), gv.as_tensor(), 1e-5).unwrap()
            };
            let grads = (&y * &w).unwrap().sum_all().unwrap().backward().unwrap();
            let gx = grads.get(xv.as_tensor()).unwrap().clone();
            let gg = grads.get(gv.as_tensor()).unwrap().clone();
            (y, gx, gg)
        };
        let (a, b) = (run(true), run(false));
        let diff = |p: &Tensor, q: &Tensor| crate::util::max_abs_diff(p, q).unwrap();
        assert!(diff(&a.0, &b.0) < 1e-5, "values {}", diff(&a.0, &b.0));
        assert!(diff(&a.1, &b.1) < 1e-4, "x gradients {}", diff(&a.1, &b.1));
        assert!(diff(&a.2, &b.2) < 1e-4, "γ gradients {}", diff(&a.2, &b.2));
    }
}
