//! AdamW on an NVIDIA GPU in one kernel per parameter instead of a dozen element-wise ops: the
//! step of a model with a billion trained weights is bound by memory traffic, and this reads the
//! gradient once and reads and writes the parameter and both moments once (28 bytes a weight;
//! the three kernels before it moved 40).

use crate::model::nvrtc::CompiledPtx;
use candle_core::cuda_backend::cudarc::driver::{LaunchConfig, PushKernelArg};
use candle_core::cuda_backend::WrapErr;
use candle_core::{CudaStorage, Result, Storage, Tensor};

const MODULE: &str = "mlfs_adamw";

const SOURCE: &str = r#"
extern "C" __global__ void adam_step(float* p, float* m, float* v, const float* g,
                                     unsigned long long n, float beta1, float beta2,
                                     float gscale, float lr, float bc1, float bc2, float eps,
                                     float decay) {
    unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x;
    if (i >= n) return;
    float gi = g[i] * gscale;
    float mi = beta1 * m[i] + (1.0f - beta1) * gi;
    float vi = beta2 * v[i] + (1.0f - beta2) * (gi * gi);
    m[i] = mi;
    v[i] = vi;
    p[i] = p[i] * decay - lr * ((mi / bc1) / (sqrtf(vi / bc2) + eps));
}
"#;

/// The kernels' PTX (compiled once per process).
fn ptx() -> Result<&'static str> {
    static PTX: CompiledPtx = CompiledPtx::new();
    crate::model::nvrtc::ptx(&PTX, SOURCE, "the AdamW kernel")
}

use super::adam_step::FusedStep;

/// A plain f32 GPU tensor's storage, or an error naming `what`.
fn plain_gpu<'a>(storage: &'a Storage, t: &Tensor, what: &str) -> Result<&'a CudaStorage> {
    match (storage, t.layout().contiguous_offsets()) {
        (Storage::Cuda(s), Some((0, _))) if t.dtype() == candle_core::DType::F32 => Ok(s),
        _ => candle_core::bail!("fused AdamW: {what} must be a plain f32 tensor on the GPU"),
    }
}

/// Updates `param`, `m` and `v` in place from `grad`, in one kernel.
///
/// candle's in-place ops write one tensor; this step writes three, so it takes the storages
/// directly. All four are the optimizer's own (parameter, gradient, moments): no other tensor
/// reads them while the kernel runs, and candle orders the launch on the device's one stream.
pub fn fused_step(
    param: &Tensor,
    grad: &Tensor,
    m: &Tensor,
    v: &Tensor,
    s: &FusedStep,
) -> Result<()> {
    let grad = grad.contiguous()?;
    let n = param.elem_count();
    for (t, what) in [(&grad, "the gradient"), (m, "a moment"), (v, "a moment")] {
        if t.elem_count() != n {
            candle_core::bail!(
                "fused AdamW: {what} has {} values, the parameter {n}",
                t.elem_count()
            );
        }
    }
    let (p_storage, _) = param.storage_and_layout();
    let (m_storage, _) = m.storage_and_layout();
    let (v_storage, _) = v.storage_and_layout();
    let (g_storage, _) = grad.storage_and_layout();
    let p = plain_gpu(&p_storage, param, "a parameter")?;
    let m_s = plain_gpu(&m_storage, m, "a moment")?;
    let v_s = plain_gpu(&v_storage, v, "a moment")?;
    let g_s = plain_gpu(&g_storage, &grad, "a gradient")?;
    let func = p
        .device
        .get_or_load_custom_func("adam_step", MODULE, ptx()?)?;
    let f = |x: f64| x as f32;
    let (beta1, beta2, gscale, lr) = (f(s.beta1), f(s.beta2), f(s.grad_scale), f(s.lr));
    let (bc1, bc2, eps, decay) = (f(s.bc1), f(s.bc2), f(s.eps), f(s.decay));
    let n64 = n as u64;
    let (p, m_s, v_s, g_s) = (
        p.as_cuda_slice::<f32>()?,
        m_s.as_cuda_slice::<f32>()?,
        v_s.as_cuda_slice::<f32>()?,
        g_s.as_cuda_slice::<f32>()?,
    );
    let mut b = func.builder();
    b.arg(p).arg(m_s).arg(v_s).arg(g_s).arg(&n64);
    b.arg(&beta1).arg(&beta2).arg(&gscale).arg(&lr);
    b.arg(&bc1).arg(&bc2).arg(&eps).arg(&decay);
    // SAFETY: all four buffers hold n plain f32 values (checked above); each thread reads and
    // writes its own element of p, m and v and reads its element of g.
    unsafe { b.launch(LaunchConfig::for_num_elems(n as u32)) }.w()?;
    Ok(())
}
