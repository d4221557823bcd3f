//! AdamW on an NVIDIA GPU in three kernels per parameter (first moment, second moment,
//! update) instead of a dozen element-wise ops: the step of a model with a billion trained
//! weights is bound by memory traffic, and this reads and writes each buffer about once.

use candle_core::cuda_backend::cudarc::driver::{LaunchConfig, PushKernelArg};
use candle_core::cuda_backend::cudarc::nvrtc::compile_ptx;
use candle_core::cuda_backend::WrapErr;
use candle_core::{CpuStorage, CudaStorage, InplaceOp2, InplaceOp3, Layout, Result, Tensor};
use std::sync::OnceLock;

const MODULE: &str = "mlfs_adamw";

const SOURCE: &str = r#"
extern "C" __global__ void adam_moment(float* m, const float* g, unsigned long long n,
                                       float beta, float gscale, int square) {
    unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x;
    if (i >= n) return;
    float gi = g[i] * gscale;
    if (square) gi = gi * gi;
    m[i] = beta * m[i] + (1.0f - beta) * gi;
}
extern "C" __global__ void adam_update(float* p, const float* m, const float* v,
                                       unsigned long long n, float lr, float bc1, float bc2,
                                       float eps, float decay) {
    unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x;
    if (i >= n) return;
    p[i] = p[i] * decay - lr * ((m[i] / bc1) / (sqrtf(v[i] / bc2) + eps));
}
"#;

/// The kernels' PTX, compiled once per process with NVRTC.
fn ptx() -> Result<&'static str> {
    static PTX: OnceLock<std::result::Result<String, String>> = OnceLock::new();
    let compiled = PTX.get_or_init(|| {
        compile_ptx(SOURCE)
            .map(|p| p.to_src())
            .map_err(|e| e.to_string())
    });
    compiled
        .as_deref()
        .map_err(|e| candle_core::Error::Msg(format!("cannot compile the AdamW kernels: {e}")))
}

fn plain(l: &Layout, what: &str) -> Result<()> {
    match l.contiguous_offsets() {
        Some((0, _)) => Ok(()),
        _ => candle_core::bail!("fused AdamW: {what} must be a plain tensor"),
    }
}

/// `m ← β·m + (1−β)·(s·g)` (or `(s·g)²` for the second moment), in place.
struct Moment {
    beta: f32,
    grad_scale: f32,
    square: bool,
}

impl InplaceOp2 for Moment {
    fn name(&self) -> &'static str {
        "adam-moment"
    }

    fn cpu_fwd(&self, _: &mut CpuStorage, _: &Layout, _: &CpuStorage, _: &Layout) -> Result<()> {
        candle_core::bail!("the fused AdamW runs on a GPU only")
    }

    fn cuda_fwd(
        &self,
        dst: &mut CudaStorage,
        dst_l: &Layout,
        g: &CudaStorage,
        g_l: &Layout,
    ) -> Result<()> {
        plain(dst_l, "a moment")?;
        plain(g_l, "a gradient")?;
        let n = dst_l.shape().elem_count();
        let func = dst
            .device
            .get_or_load_custom_func("adam_moment", MODULE, ptx()?)?;
        let g = g.as_cuda_slice::<f32>()?;
        let m = dst.as_cuda_slice_mut::<f32>()?;
        let (n64, square) = (n as u64, self.square as i32);
        let mut b = func.builder();
        b.arg(m)
            .arg(g)
            .arg(&n64)
            .arg(&self.beta)
            .arg(&self.grad_scale)
            .arg(&square);
        // SAFETY: both buffers hold n f32 values (checked plain above); the kernel reads g and
        // writes m element by element.
        unsafe { b.launch(LaunchConfig::for_num_elems(n as u32)) }.w()?;
        Ok(())
    }
}

/// `p ← decay·p − lr·m̂/(√v̂ + ε)`, in place.
struct Update {
    lr: f32,
    bc1: f32,
    bc2: f32,
    eps: f32,
    decay: f32,
}

impl InplaceOp3 for Update {
    fn name(&self) -> &'static str {
        "adam-update"
    }

    fn cpu_fwd(
        &self,
        _: &mut CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
    ) -> Result<()> {
        candle_core::bail!("the fused AdamW runs on a GPU only")
    }

    fn cuda_fwd(
        &self,
        dst: &mut CudaStorage,
        dst_l: &Layout,
        m: &CudaStorage,
        m_l: &Layout,
        v: &CudaStorage,
        v_l: &Layout,
    ) -> Result<()> {
        plain(dst_l, "a parameter")?;
        plain(m_l, "a moment")?;
        plain(v_l, "a moment")?;
        let n = dst_l.shape().elem_count();
        let func = dst
            .device
            .get_or_load_custom_func("adam_update", MODULE, ptx()?)?;
        let (m, v) = (m.as_cuda_slice::<f32>()?, v.as_cuda_slice::<f32>()?);
        let p = dst.as_cuda_slice_mut::<f32>()?;
        let n64 = n as u64;
        let mut b = func.builder();
        b.arg(p)
            .arg(m)
            .arg(v)
            .arg(&n64)
            .arg(&self.lr)
            .arg(&self.bc1)
            .arg(&self.bc2);
        b.arg(&self.eps).arg(&self.decay);
        // SAFETY: all three buffers hold n f32 values (checked plain above).
        unsafe { b.launch(LaunchConfig::for_num_elems(n as u32)) }.w()?;
        Ok(())
    }
}

/// The settings of one fused step.
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

/// Updates `param`, `m` and `v` in place from `grad`, in three kernels.
pub fn fused_step(
    param: &Tensor,
    grad: &Tensor,
    m: &Tensor,
    v: &Tensor,
    s: &FusedStep,
) -> Result<()> {
    let grad = grad.contiguous()?;
    let (beta1, beta2, grad_scale) = (s.beta1 as f32, s.beta2 as f32, s.grad_scale as f32);
    m.inplace_op2(
        &grad,
        &Moment {
            beta: beta1,
            grad_scale,
            square: false,
        },
    )?;
    v.inplace_op2(
        &grad,
        &Moment {
            beta: beta2,
            grad_scale,
            square: true,
        },
    )?;
    let update = Update {
        lr: s.lr as f32,
        bc1: s.bc1 as f32,
        bc2: s.bc2 as f32,
        eps: s.eps as f32,
        decay: s.decay as f32,
    };
    param.inplace_op3(m, v, &update)
}
