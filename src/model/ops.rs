//! Fused CPU ops with the backward passes MLFS needs: gradients flow to activations only,
//! never to frozen teacher tensors (candle's own matmul backward would compute both sides).

use candle_core::{bail, CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor, D};

/// `x · Wᵀ` for a frozen `W` ([out, in], possibly a sliced view): gradient to `x` only.
pub fn frozen_matmul_t(x: &Tensor, weight: &Tensor) -> Result<Tensor> {
    let y = x.detach().matmul(&weight.t()?)?;
    if !x.track_op() {
        return Ok(y);
    }
    x.apply_op2(
        &y,
        FrozenLinearGrad {
            weight: weight.clone(),
        },
    )
}

/// Passes a precomputed product through and routes its gradient to the input only.
struct FrozenLinearGrad {
    weight: Tensor,
}

impl CustomOp2 for FrozenLinearGrad {
    fn name(&self) -> &'static str {
        "frozen-linear"
    }

    fn cpu_fwd(
        &self,
        _s1: &CpuStorage,
        _l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let values = contiguous_f32(s2, l2, "frozen-linear")?;
        Ok((CpuStorage::F32(values.to_vec()), l2.shape().clone()))
    }

    fn bwd(
        &self,
        _x: &Tensor,
        _y: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        Ok((Some(grad.matmul(&self.weight)?), None))
    }
}

fn contiguous_f32<'a>(s: &'a CpuStorage, l: &Layout, op: &str) -> Result<&'a [f32]> {
    let data = match s {
        CpuStorage::F32(v) => v.as_slice(),
        _ => bail!("{op}: only f32 is supported"),
    };
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&data[a..b]),
        None => bail!("{op}: input must be contiguous"),
    }
}

/// Softmax over the last dimension with a backward pass.
pub fn softmax_last_dim(x: &Tensor) -> Result<Tensor> {
    x.contiguous()?.apply_op1(Softmax)
}

struct Softmax;

impl CustomOp1 for Softmax {
    fn name(&self) -> &'static str {
        "softmax"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let src = contiguous_f32(s, l, "softmax")?;
        let n = l.dims().last().copied().unwrap_or(1).max(1);
        let mut out = vec![0f32; src.len()];
        for (row, dst) in src.chunks_exact(n).zip(out.chunks_exact_mut(n)) {
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let mut sum = 0f32;
            for (d, &v) in dst.iter_mut().zip(row) {
                *d = (v - max).exp();
                sum += *d;
            }
            let inv = 1.0 / sum;
            dst.iter_mut().for_each(|d| *d *= inv);
        }
        Ok((CpuStorage::F32(out), l.shape().clone()))
    }

    fn bwd(&self, _x: &Tensor, y: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let dot = (grad * y)?.sum_keepdim(D::Minus1)?;
        Ok(Some((y * grad.broadcast_sub(&dot)?)?))
    }
}

/// Which normalisation a frozen norm layer applies.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum NormKind {
    /// BERT's LayerNorm: centre, scale, then γ and β.
    Layer,
    /// Llama's RMSNorm: scale by the root mean square, then γ.
    Rms,
}

/// Normalisation over the last dimension with frozen (sliced) γ and optional β; gradient to x only.
pub fn frozen_norm(
    x: &Tensor,
    gamma: &Tensor,
    beta: Option<&Tensor>,
    eps: f64,
    kind: NormKind,
) -> Result<Tensor> {
    let width = x.dim(D::Minus1)?;
    let gamma_v = gamma.to_vec1::<f32>()?;
    let beta_v = match beta {
        Some(b) => b.to_vec1::<f32>()?,
        None => vec![0.0; width],
    };
    if gamma_v.len() != width || beta_v.len() != width {
        bail!(
            "norm width mismatch: input {width}, gamma {}, beta {}",
            gamma_v.len(),
            beta_v.len()
        );
    }
    x.contiguous()?.apply_op1(FrozenNorm {
        gamma: gamma.clone(),
        gamma_v,
        beta_v,
        eps: eps as f32,
        kind,
    })
}

struct FrozenNorm {
    gamma: Tensor,
    gamma_v: Vec<f32>,
    beta_v: Vec<f32>,
    eps: f32,
    kind: NormKind,
}

impl CustomOp1 for FrozenNorm {
    fn name(&self) -> &'static str {
        "frozen-norm"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let src = contiguous_f32(s, l, "frozen-norm")?;
        let n = self.gamma_v.len();
        let mut out = vec![0f32; src.len()];
        for (row, dst) in src.chunks_exact(n).zip(out.chunks_exact_mut(n)) {
            let mean = match self.kind {
                NormKind::Layer => row.iter().sum::<f32>() / n as f32,
                NormKind::Rms => 0.0,
            };
            let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / n as f32;
            let inv = 1.0 / (var + self.eps).sqrt();
            for i in 0..n {
                dst[i] = (row[i] - mean) * inv * self.gamma_v[i] + self.beta_v[i];
            }
        }
        Ok((CpuStorage::F32(out), l.shape().clone()))
    }

    fn bwd(&self, x: &Tensor, _y: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let centred = match self.kind {
            NormKind::Layer => x.broadcast_sub(&x.mean_keepdim(D::Minus1)?)?,
            NormKind::Rms => x.clone(),
        };
        let inv_std = (centred.sqr()?.mean_keepdim(D::Minus1)? + self.eps as f64)?
            .sqrt()?
            .recip()?;
        let x_hat = centred.broadcast_mul(&inv_std)?;
        let g = grad.broadcast_mul(&self.gamma)?;
        let proj = (&g * &x_hat)?.mean_keepdim(D::Minus1)?;
        let mut inner = (&g - x_hat.broadcast_mul(&proj)?)?;
        if self.kind == NormKind::Layer {
            inner = inner.broadcast_sub(&g.mean_keepdim(D::Minus1)?)?;
        }
        Ok(Some(inner.broadcast_mul(&inv_std)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    fn close(a: &Tensor, b: &Tensor, tol: f32) {
        let d = crate::util::max_abs_diff(a, b).unwrap();
        assert!(d < tol, "max diff {d}");
    }

    #[test]
    fn fused_ops_match_candle_reference_in_value_and_gradient() {
        let x = Var::from_tensor(
            &Tensor::arange(0f32, 24.0, &Device::Cpu)
                .unwrap()
                .reshape((4, 6))
                .unwrap()
                .sin()
                .unwrap(),
        )
        .unwrap();
        let gamma = Tensor::new(&[1.0f32, 0.5, 2.0, -1.0, 0.3, 1.2], &Device::Cpu).unwrap();
        let beta = Tensor::new(&[0.1f32, 0.0, -0.2, 0.3, 0.0, 0.5], &Device::Cpu).unwrap();
        let weights = Tensor::arange(0f32, 24.0, &Device::Cpu)
            .unwrap()
            .reshape((4, 6))
            .unwrap()
            .cos()
            .unwrap();

        // Each fused op against candle's composite reference: values, then input gradients.
        let pairs = [
            (
                frozen_norm(x.as_tensor(), &gamma, Some(&beta), 1e-5, NormKind::Layer).unwrap(),
                candle_nn::ops::layer_norm_slow(x.as_tensor(), &gamma, &beta, 1e-5).unwrap(),
            ),
            (
                frozen_norm(x.as_tensor(), &gamma, None, 1e-5, NormKind::Rms).unwrap(),
                candle_nn::ops::rms_norm_slow(x.as_tensor(), &gamma, 1e-5).unwrap(),
            ),
            (
                softmax_last_dim(x.as_tensor()).unwrap(),
                candle_nn::ops::softmax(x.as_tensor(), D::Minus1).unwrap(),
            ),
        ];
        let input_grad = |y: &Tensor| {
            let grads = (y * &weights)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            grads.get(x.as_tensor()).unwrap().clone()
        };
        for (ours, reference) in pairs {
            close(&ours, &reference, 1e-5);
            close(&input_grad(&ours), &input_grad(&reference), 1e-4);
        }
    }
}
