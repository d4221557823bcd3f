//! Ops with the backward passes MLFS needs: gradients flow to activations only, never to frozen
//! teacher tensors (candle's own matmul backward would compute both sides). On the CPU the
//! softmax and norms are fused loops of ours; on a GPU their forward is candle's kernel and the
//! same hand-written backward is attached with [`with_grad`].

use candle_core::{
    bail, CpuStorage, CustomOp1, CustomOp2, DType, Layout, Result, Shape, Tensor, D,
};

/// A sliced view as a plain tensor on a GPU (candle's cuBLAS products want plain layouts); the
/// view itself on the CPU, whose products take any strides.
pub fn gpu_contiguous(t: &Tensor) -> Result<Tensor> {
    if t.device().is_cpu() {
        return Ok(t.clone());
    }
    t.contiguous()
}

/// The sum of all elements, as candle's `sum_all` but spread over many GPU blocks: candle
/// reduces into each output with one block, so a sum to one value of a large tensor would run
/// on a single multiprocessor. On the CPU it is `sum_all` itself (bit for bit).
pub fn sum_all_parallel(t: &Tensor) -> Result<Tensor> {
    const MIN_ROW: usize = 1024;
    let n = t.elem_count();
    if t.device().is_cpu() || n < 2 * MIN_ROW {
        return t.sum_all();
    }
    // The most rows (at most 4096) that split the elements evenly into rows of ≥ MIN_ROW.
    let rows = (1..=4096.min(n / MIN_ROW))
        .rev()
        .find(|&r| n.is_multiple_of(r))
        .unwrap_or(1);
    t.flatten_all()?
        .reshape((rows, n / rows))?
        .sum(1)?
        .sum_all()
}

/// `t.to_dtype(to)` with its gradient; on a GPU through our vector cast kernels (f32 ↔ bf16).
pub fn cast(t: &Tensor, to: DType) -> Result<Tensor> {
    #[cfg(feature = "cuda")]
    return super::cast_cuda::cast(t, to);
    #[cfg(not(feature = "cuda"))]
    t.to_dtype(to)
}

/// `x · Wᵀ` for a frozen `W` ([out, in], possibly a sliced view): gradient to `x` only.
pub fn frozen_matmul_t(x: &Tensor, weight: &Tensor) -> Result<Tensor> {
    let weight = gpu_contiguous(weight)?;
    let xd = x.detach();
    let y = super::blas::matmul_t_or_candle(&xd, &weight)?;
    let weight = weight.clone();
    with_grad(x, &y, move |grad| {
        super::blas::matmul_or_candle(&grad.detach(), &weight)
    })
}

/// `x · wᵀ` for a trainable f32 `w` on the CPU through OpenBLAS (forward and both gradients);
/// `None` when it does not apply (no library, a strided weight slice), for candle's own product.
pub fn blas_trainable_matmul_t(x: &Tensor, w: &Tensor) -> Result<Option<Tensor>> {
    let (xd, wd) = (x.detach(), w.detach());
    let Some(y) = super::blas::matmul_t(&xd, &wd)? else {
        return Ok(None);
    };
    Ok(Some(LinearGrads::attach(x, w, xd, wd, &y)))
}

/// `x · wᵀ` for a trainable `w` on a GPU, both cast to `compute` for cuBLAS, the result and
/// the gradients in the inputs' dtypes. The weight's gradient is computed as `gᵀ·x`, a plain
/// `[out, in]` matrix: candle's own backward of `x · wᵀ` yields a transposed view, which its
/// cast and gradient sum then walk with strided (slow) kernels.
pub fn trainable_matmul_t(x: &Tensor, w: &Tensor, compute: DType) -> Result<Tensor> {
    let xc = cast(&x.detach(), compute)?;
    let wc = cast(&gpu_contiguous(&w.detach())?, compute)?;
    let y = cast(&xc.matmul(&wc.t()?)?, x.dtype())?;
    if !x.track_op() && !w.track_op() {
        return Ok(y);
    }
    Ok(LinearGrads::attach(x, w, xc, wc, &y))
}

/// The backward of `x · wᵀ` for a trainable `w`, from the compute-dtype input `xc` and weight.
///
/// Attached to the product itself ([`Tensor::attach_backward_op2`]): a custom op's forward
/// would copy the product into a new storage while its graph node held the original until the
/// backward pass (every linear layer's output twice). A weight cast for the product is not
/// kept either: the backward casts the master weight again (one pass over it), so a step holds
/// one layer's compute-dtype weights at a time where keeping them held the whole student's
/// (2.3 GB at SmolLM2-1.7B's shape, more than all its activations).
struct LinearGrads {
    need_x: bool,
    x_dtype: DType,
    w_dtype: DType,
    compute: DType,
    xc: Tensor,
    /// The weight in the compute dtype when it is the weight itself (no cast to drop).
    wc: Option<Tensor>,
}

impl LinearGrads {
    fn attach(x: &Tensor, w: &Tensor, xc: Tensor, wc: Tensor, y: &Tensor) -> Tensor {
        let compute = wc.dtype();
        let grads = Self {
            need_x: x.track_op(),
            x_dtype: x.dtype(),
            w_dtype: w.dtype(),
            compute,
            xc,
            wc: (w.dtype() == compute).then_some(wc),
        };
        x.attach_backward_op2(w, y, std::sync::Arc::new(Box::new(grads)))
    }
}

impl CustomOp2 for LinearGrads {
    fn name(&self) -> &'static str {
        "trainable-matmul-t"
    }

    fn cpu_fwd(
        &self,
        _s1: &CpuStorage,
        _l1: &Layout,
        _s2: &CpuStorage,
        _l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        bail!("trainable-matmul-t: an attached backward has no forward to run")
    }

    fn bwd(
        &self,
        _x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let g = cast(grad, self.compute)?;
        let grad_x = if self.need_x {
            let wc = match &self.wc {
                Some(wc) => wc.clone(),
                None => cast(&gpu_contiguous(&w.detach())?, self.compute)?,
            };
            Some(cast(
                &super::blas::matmul_or_candle(&g, &wc)?,
                self.x_dtype,
            )?)
        } else {
            None
        };
        let gw = super::blas::t_matmul_or_candle(&g, &self.xc)?;
        let grad_w = cast(&gw, self.w_dtype)?;
        Ok((grad_x, Some(grad_w)))
    }
}

/// `value` (computed without a graph) as the result, with `grad(dL/dvalue)` as the gradient
/// that flows to `x`: a hand-written backward for a forward computed by any kernel. The result
/// shares `value`'s storage (no copy; the graph does not hold `value` besides).
pub fn with_grad<F>(x: &Tensor, value: &Tensor, grad: F) -> Result<Tensor>
where
    F: Fn(&Tensor) -> Result<Tensor> + Send + Sync + 'static,
{
    Ok(x.attach_backward_op1(value, std::sync::Arc::new(Box::new(WithGrad { grad }))))
}

/// The gradient to the argument, through `grad`; the forward is attached, never run.
struct WithGrad<F> {
    grad: F,
}

impl<F> CustomOp1 for WithGrad<F>
where
    F: Fn(&Tensor) -> Result<Tensor> + Send + Sync,
{
    fn name(&self) -> &'static str {
        "with-grad"
    }

    fn cpu_fwd(&self, _s: &CpuStorage, _l: &Layout) -> Result<(CpuStorage, Shape)> {
        bail!("with-grad: an attached backward has no forward to run")
    }

    fn bwd(&self, _x: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some((self.grad)(grad)?))
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
    if x.device().is_cpu() {
        return x.contiguous()?.apply_op1(Softmax);
    }
    let y = candle_nn::ops::softmax_last_dim(&x.detach().contiguous()?)?;
    let out = y.clone();
    with_grad(x, &out, move |grad| softmax_grad(&y, grad))
}

/// `dL/dx = y ⊙ (g − Σ g ⊙ y)` for `y = softmax(x)` over the last dimension, in f32 (a row's
/// sum in bf16 would lose its low digits), returned in `y`'s dtype.
fn softmax_grad(y: &Tensor, grad: &Tensor) -> Result<Tensor> {
    let (y32, g32) = (cast(y, DType::F32)?, cast(grad, DType::F32)?);
    let dot = (&g32 * &y32)?.sum_keepdim(D::Minus1)?;
    cast(&(y32 * g32.broadcast_sub(&dot)?)?, y.dtype())
}

struct Softmax;

/// Softmax of one row, in place (the polynomial exp and lane sums vectorise; AVX2 where present).
pub(crate) fn softmax_row_in_place(row: &mut [f32]) {
    super::simd::with_avx2(|| {
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        row.iter_mut()
            .for_each(|x| *x = super::activation::exp(*x - max));
        let inv = 1.0 / super::simd::sum(row);
        row.iter_mut().for_each(|x| *x *= inv);
    })
}

impl CustomOp1 for Softmax {
    fn name(&self) -> &'static str {
        "softmax"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let src = contiguous_f32(s, l, "softmax")?;
        let n = l.dims().last().copied().unwrap_or(1).max(1);
        let mut out = src.to_vec();
        out.chunks_exact_mut(n).for_each(softmax_row_in_place);
        Ok((CpuStorage::F32(out), l.shape().clone()))
    }

    fn bwd(&self, _x: &Tensor, y: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(softmax_grad(y, grad)?))
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
    if !x.device().is_cpu() {
        return device_norm(x, gamma, beta, eps, kind);
    }
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
        let (gamma, beta) = (&self.gamma_v[..], &self.beta_v[..]);
        // Lane sums and AVX2: summed one value at a time, the norms were 13 % of a batch-1
        // minnet's latency.
        super::simd::with_avx2(|| {
            for (row, dst) in src.chunks_exact(n).zip(out.chunks_exact_mut(n)) {
                let mean = match self.kind {
                    NormKind::Layer => super::simd::sum(row) / n as f32,
                    NormKind::Rms => 0.0,
                };
                let var = super::simd::sum_sq_dev(row, mean) / n as f32;
                let inv = 1.0 / (var + self.eps).sqrt();
                for (((d, &x), &g), &b) in dst.iter_mut().zip(row).zip(gamma).zip(beta) {
                    *d = (x - mean) * inv * g + b;
                }
            }
        });
        Ok((CpuStorage::F32(out), l.shape().clone()))
    }

    fn bwd(&self, x: &Tensor, _y: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let eps = self.eps as f64;
        Ok(Some(norm_grad(x, &self.gamma, eps, self.kind, grad)?))
    }
}

/// The norm's gradient with respect to its input `x` (γ, β frozen).
fn norm_grad(
    x: &Tensor,
    gamma: &Tensor,
    eps: f64,
    kind: NormKind,
    grad: &Tensor,
) -> Result<Tensor> {
    let centred = match kind {
        NormKind::Layer => x.broadcast_sub(&x.mean_keepdim(D::Minus1)?)?,
        NormKind::Rms => x.clone(),
    };
    let inv_std = (centred.sqr()?.mean_keepdim(D::Minus1)? + eps)?
        .sqrt()?
        .recip()?;
    let x_hat = centred.broadcast_mul(&inv_std)?;
    let g = grad.broadcast_mul(gamma)?;
    let proj = (&g * &x_hat)?.mean_keepdim(D::Minus1)?;
    let mut inner = (&g - x_hat.broadcast_mul(&proj)?)?;
    if kind == NormKind::Layer {
        inner = inner.broadcast_sub(&g.mean_keepdim(D::Minus1)?)?;
    }
    inner.broadcast_mul(&inv_std)
}

/// The norm on a GPU: candle's fused kernel forward, the same backward as on the CPU.
fn device_norm(
    x: &Tensor,
    gamma: &Tensor,
    beta: Option<&Tensor>,
    eps: f64,
    kind: NormKind,
) -> Result<Tensor> {
    let input = x.detach().contiguous()?;
    let gamma = gamma.detach().contiguous()?;
    let y = match (kind, beta) {
        (NormKind::Layer, Some(b)) => {
            candle_nn::ops::layer_norm(&input, &gamma, &b.detach().contiguous()?, eps as f32)?
        }
        (NormKind::Layer, None) => {
            let zeros = gamma.zeros_like()?;
            candle_nn::ops::layer_norm(&input, &gamma, &zeros, eps as f32)?
        }
        (NormKind::Rms, _) => candle_nn::ops::rms_norm(&input, &gamma, eps as f32)?,
    };
    with_grad(x, &y, move |grad| {
        norm_grad(&input, &gamma, eps, kind, grad)
    })
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
