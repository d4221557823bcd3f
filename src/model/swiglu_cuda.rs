//! SwiGLU's product `silu(gate) ⊙ up` on an NVIDIA GPU: one kernel forward, one backward
//! (both gradients in one pass), f32 or bf16 values, f32 arithmetic.
//!
//! In candle ops the forward was two passes and the backward about nine (candle's SiLU
//! gradient is built from elementary ops: negation, exponential, addition, reciprocal,
//! products), each reading or writing a `[tokens, FFN width]` tensor; and the graph kept
//! `silu(gate)` as well as gate and up.

use crate::model::nvrtc::CompiledPtx;
use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::{LaunchConfig, PushKernelArg};
use candle_core::cuda_backend::WrapErr;
use candle_core::{
    bail, CpuStorage, CudaStorage, CustomOp2, CustomOp3, DType, Layout, Result, Shape, Tensor,
};
use half::bf16;

const MODULE: &str = "mlfs_swiglu";
const THREADS: u32 = 256;

const SOURCE: &str = concat!(
    crate::model::nvrtc::bf16_load_store!(),
    r#"template <typename T>
__device__ void forward(const T* gate, const T* up, T* out, unsigned long long n) {
    unsigned long long stride = (unsigned long long)gridDim.x * blockDim.x;
    for (unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x;
         i < n; i += stride) {
        float a = ld(gate, i);
        st(out, i, a / (1.0f + expf(-a)) * ld(up, i));
    }
}
// d(up) = g·silu(a); d(gate) = g·up·σ(a)·(1 + a·(1 − σ(a))). Both into `grads`: gate's first.
template <typename T>
__device__ void backward(const T* g, const T* gate, const T* up, T* grads,
                         unsigned long long n) {
    unsigned long long stride = (unsigned long long)gridDim.x * blockDim.x;
    for (unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x;
         i < n; i += stride) {
        float a = ld(gate, i), u = ld(up, i), gi = ld(g, i);
        float s = 1.0f / (1.0f + expf(-a));
        st(grads, i, gi * u * s * (1.0f + a * (1.0f - s)));
        st(grads, n + i, gi * a * s);
    }
}
extern "C" __global__ void swiglu_f32(const float* gate, const float* up, float* out,
                                      unsigned long long n) {
    forward(gate, up, out, n);
}
extern "C" __global__ void swiglu_bf16(const unsigned short* gate, const unsigned short* up,
                                       unsigned short* out, unsigned long long n) {
    forward(gate, up, out, n);
}
extern "C" __global__ void swiglu_grad_f32(const float* g, const float* gate, const float* up,
                                           float* grads, unsigned long long n) {
    backward(g, gate, up, grads, n);
}
extern "C" __global__ void swiglu_grad_bf16(const unsigned short* g,
        const unsigned short* gate, const unsigned short* up, unsigned short* grads,
        unsigned long long n) {
    backward(g, gate, up, grads, n);
}
"#
);

fn ptx() -> Result<&'static str> {
    static PTX: CompiledPtx = CompiledPtx::new();
    crate::model::nvrtc::ptx(&PTX, SOURCE, "the SwiGLU kernels")
}

/// Whether the fused kernels take `gate` and `up`: on a GPU, f32 or bf16, the same shape.
pub fn takes(gate: &Tensor, up: &Tensor) -> bool {
    gate.device().is_cuda()
        && matches!(gate.dtype(), DType::F32 | DType::BF16)
        && gate.dtype() == up.dtype()
        && gate.dims() == up.dims()
}

/// `silu(gate) ⊙ up` with its gradients to both.
pub fn swiglu(gate: &Tensor, up: &Tensor) -> Result<Tensor> {
    let (a, u) = (gate.detach().contiguous()?, up.detach().contiguous()?);
    let out = a.apply_op2_no_bwd(&u, &Forward)?;
    if !gate.track_op() && !up.track_op() {
        return Ok(out);
    }
    let grads: std::sync::Arc<Box<dyn CustomOp2 + Send + Sync>> =
        std::sync::Arc::new(Box::new(Grads { gate: a, up: u }));
    Ok(gate.attach_backward_op2(up, &out, grads))
}

fn launch_config(n: usize) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (n.div_ceil(THREADS as usize).clamp(1, 65_535) as u32, 1, 1),
        block_dim: (THREADS, 1, 1),
        shared_mem_bytes: 0,
    }
}

fn plain(l: &Layout) -> Result<(usize, usize)> {
    match l.contiguous_offsets() {
        Some(offsets) => Ok(offsets),
        None => bail!("swiglu: the inputs must be contiguous"),
    }
}

struct Forward;

impl CustomOp2 for Forward {
    fn name(&self) -> &'static str {
        "swiglu"
    }

    fn cpu_fwd(
        &self,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        bail!("the fused SwiGLU runs on a GPU only")
    }

    fn cuda_fwd(
        &self,
        a: &CudaStorage,
        al: &Layout,
        u: &CudaStorage,
        ul: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        let ((a0, a1), (u0, u1)) = (plain(al)?, plain(ul)?);
        let n = a1 - a0;
        if u1 - u0 != n || a.dtype() != u.dtype() {
            bail!("swiglu: gate and up differ in size or dtype")
        }
        let dev = &a.device;
        let n64 = n as u64;
        macro_rules! launch {
            ($ty:ty, $name:literal) => {{
                let (av, uv) = (
                    a.as_cuda_slice::<$ty>()?.slice(a0..a1),
                    u.as_cuda_slice::<$ty>()?.slice(u0..u1),
                );
                // SAFETY: every value is written by the kernel.
                let out = unsafe { dev.alloc::<$ty>(n) }?;
                let func = dev.get_or_load_custom_func($name, MODULE, ptx()?)?;
                let mut b = func.builder();
                b.arg(&av).arg(&uv).arg(&out).arg(&n64);
                // SAFETY: gate, up and out hold n values; the loop is grid-strided.
                unsafe { b.launch(launch_config(n)) }.w()?;
                CudaStorage::wrap_cuda_slice(out, dev.clone())
            }};
        }
        let out = match a.dtype() {
            DType::F32 => launch!(f32, "swiglu_f32"),
            DType::BF16 => launch!(bf16, "swiglu_bf16"),
            other => bail!("swiglu: f32 or bf16, not {other:?}"),
        };
        Ok((out, al.shape().clone()))
    }
}

/// The backward, attached to the product: gate and up are the inputs it keeps.
struct Grads {
    gate: Tensor,
    up: Tensor,
}

impl CustomOp2 for Grads {
    fn name(&self) -> &'static str {
        "swiglu-grad"
    }

    fn cpu_fwd(
        &self,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        bail!("swiglu: an attached backward has no forward to run")
    }

    fn bwd(
        &self,
        _gate: &Tensor,
        _up: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let g = crate::model::cast_cuda::cast(&grad.contiguous()?, self.gate.dtype())?;
        let both = g.apply_op3_no_bwd(&self.gate, &self.up, &Backward)?;
        Ok((Some(both.get(0)?), Some(both.get(1)?)))
    }
}

struct Backward;

impl CustomOp3 for Backward {
    fn name(&self) -> &'static str {
        "swiglu-backward"
    }

    fn cpu_fwd(
        &self,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        bail!("the fused SwiGLU runs on a GPU only")
    }

    fn cuda_fwd(
        &self,
        g: &CudaStorage,
        gl: &Layout,
        a: &CudaStorage,
        al: &Layout,
        u: &CudaStorage,
        ul: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        let ((g0, g1), (a0, a1), (u0, u1)) = (plain(gl)?, plain(al)?, plain(ul)?);
        let n = a1 - a0;
        if g1 - g0 != n || u1 - u0 != n || g.dtype() != a.dtype() || u.dtype() != a.dtype() {
            bail!("swiglu gradient: the gradient, gate and up differ in size or dtype")
        }
        let dev = &a.device;
        let n64 = n as u64;
        macro_rules! launch {
            ($ty:ty, $name:literal) => {{
                let gv = g.as_cuda_slice::<$ty>()?.slice(g0..g1);
                let av = a.as_cuda_slice::<$ty>()?.slice(a0..a1);
                let uv = u.as_cuda_slice::<$ty>()?.slice(u0..u1);
                // SAFETY: every one of the 2n values is written by the kernel.
                let out = unsafe { dev.alloc::<$ty>(2 * n) }?;
                let func = dev.get_or_load_custom_func($name, MODULE, ptx()?)?;
                let mut b = func.builder();
                b.arg(&gv).arg(&av).arg(&uv).arg(&out).arg(&n64);
                // SAFETY: g, gate and up hold n values, out 2n; the loop is grid-strided.
                unsafe { b.launch(launch_config(n)) }.w()?;
                CudaStorage::wrap_cuda_slice(out, dev.clone())
            }};
        }
        let out = match a.dtype() {
            DType::F32 => launch!(f32, "swiglu_grad_f32"),
            DType::BF16 => launch!(bf16, "swiglu_grad_bf16"),
            other => bail!("swiglu gradient: f32 or bf16, not {other:?}"),
        };
        let mut dims = vec![2];
        dims.extend_from_slice(al.dims());
        Ok((out, Shape::from(dims)))
    }
}
