//! `softmax(scale · scores + causal mask)` over the last dimension on an NVIDIA GPU, forward and
//! backward in one kernel each (f32 or bf16 scores, f32 arithmetic).
//!
//! In candle ops the attention scores took four passes (scale, a broadcast add of the mask,
//! the softmax) and the graph kept every intermediate `[B, H, T, S]` tensor until the backward
//! pass; on an H200 the mask's broadcast add alone was about a tenth of a SmolLM2-1.7B-shape
//! student's step. Here the mask is the causal one computed from the indices (query `i` of a
//! block starting at position `past` sees keys `0..=past + i`), one warp per row; masked
//! entries are exactly 0, as `exp(-1e9 - max)` was.

use crate::model::nvrtc::CompiledPtx;
use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::{LaunchConfig, PushKernelArg};
use candle_core::cuda_backend::WrapErr;
use candle_core::{
    bail, CpuStorage, CudaStorage, CustomOp1, CustomOp2, DType, Layout, Result, Shape, Tensor,
};
use half::bf16;

const MODULE: &str = "mlfs_causal_softmax";
const THREADS: u32 = 256;
const ROWS_PER_BLOCK: u32 = THREADS / 32;

const SOURCE: &str = concat!(
    crate::model::nvrtc::bf16_load_store!(),
    r#"__device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o > 0; o /= 2) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}
__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o /= 2) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
template <typename T>
__device__ void forward(const T* x, T* y, unsigned int rows, unsigned int cols, unsigned int t,
                        unsigned int past, float scale) {
    unsigned int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    unsigned int lane = threadIdx.x % 32;
    if (row >= rows) return;
    unsigned int seen = past + row % t + 1;
    unsigned int limit = seen < cols ? seen : cols;
    unsigned long long base = (unsigned long long)row * cols;
    float m = __int_as_float(0xff800000);  // -infinity (NVRTC has no math.h)
    for (unsigned int j = lane; j < limit; j += 32) m = fmaxf(m, ld(x, base + j) * scale);
    m = warp_max(m);
    float s = 0.0f;
    for (unsigned int j = lane; j < limit; j += 32) s += expf(ld(x, base + j) * scale - m);
    float inv = 1.0f / warp_sum(s);
    for (unsigned int j = lane; j < cols; j += 32)
        st(y, base + j, j < limit ? expf(ld(x, base + j) * scale - m) * inv : 0.0f);
}
template <typename T>
__device__ void backward(const T* y, const T* g, T* dx, unsigned int rows, unsigned int cols,
                         float scale) {
    unsigned int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    unsigned int lane = threadIdx.x % 32;
    if (row >= rows) return;
    unsigned long long base = (unsigned long long)row * cols;
    float dot = 0.0f;
    for (unsigned int j = lane; j < cols; j += 32) dot += ld(g, base + j) * ld(y, base + j);
    dot = warp_sum(dot);
    for (unsigned int j = lane; j < cols; j += 32) {
        float yj = ld(y, base + j);
        st(dx, base + j, scale * yj * (ld(g, base + j) - dot));
    }
}
extern "C" __global__ void causal_softmax_f32(const float* x, float* y, unsigned int rows,
        unsigned int cols, unsigned int t, unsigned int past, float scale) {
    forward(x, y, rows, cols, t, past, scale);
}
extern "C" __global__ void causal_softmax_bf16(const unsigned short* x, unsigned short* y,
        unsigned int rows, unsigned int cols, unsigned int t, unsigned int past, float scale) {
    forward(x, y, rows, cols, t, past, scale);
}
extern "C" __global__ void causal_softmax_grad_f32(const float* y, const float* g, float* dx,
        unsigned int rows, unsigned int cols, float scale) {
    backward(y, g, dx, rows, cols, scale);
}
extern "C" __global__ void causal_softmax_grad_bf16(const unsigned short* y,
        const unsigned short* g, unsigned short* dx, unsigned int rows, unsigned int cols,
        float scale) {
    backward(y, g, dx, rows, cols, scale);
}
"#
);

fn ptx() -> Result<&'static str> {
    static PTX: CompiledPtx = CompiledPtx::new();
    crate::model::nvrtc::ptx(&PTX, SOURCE, "the causal softmax kernels")
}

/// Whether the fused kernels take `scores`: on a GPU, f32 or bf16, rows that fit 32-bit indices.
pub fn takes(scores: &Tensor) -> bool {
    scores.device().is_cuda()
        && matches!(scores.dtype(), DType::F32 | DType::BF16)
        && scores.rank() == 4
        && u32::try_from(scores.elem_count()).is_ok()
}

/// `softmax(scale · scores + causal mask)` of `scores` `[B, H, T, S]` (queries at positions
/// `past..past + T`, keys at `0..S`), with its gradient to `scores`.
pub fn causal_softmax(scores: &Tensor, scale: f64, past: usize) -> Result<Tensor> {
    let (_, _, t, _) = scores.dims4()?;
    let x = scores.detach().contiguous()?;
    let fwd = Forward {
        t: u32::try_from(t).map_err(|_| candle_core::Error::Msg("too many queries".into()))?,
        past: u32::try_from(past).map_err(|_| candle_core::Error::Msg("past too long".into()))?,
        scale: scale as f32,
    };
    let y = x.apply_op1_no_bwd(&fwd)?;
    let probs = y.clone();
    crate::model::ops::with_grad(scores, &y, move |grad| {
        let grad = crate::model::cast_cuda::cast(&grad.contiguous()?, probs.dtype())?;
        probs.apply_op2_no_bwd(
            &grad,
            &Backward {
                scale: scale as f32,
            },
        )
    })
}

struct Forward {
    t: u32,
    past: u32,
    scale: f32,
}

/// Rows, columns and a launch of one warp per row.
fn rows_cols(l: &Layout) -> Result<(u32, u32, LaunchConfig)> {
    let cols = l.dims().last().copied().unwrap_or(1);
    let rows = l.shape().elem_count() / cols.max(1);
    let (rows, cols) = (rows as u32, cols as u32);
    let cfg = LaunchConfig {
        grid_dim: (rows.div_ceil(ROWS_PER_BLOCK).max(1), 1, 1),
        block_dim: (THREADS, 1, 1),
        shared_mem_bytes: 0,
    };
    Ok((rows, cols, cfg))
}

fn plain(l: &Layout, what: &str) -> Result<(usize, usize)> {
    match l.contiguous_offsets() {
        Some(offsets) => Ok(offsets),
        None => bail!("{what}: the scores must be contiguous"),
    }
}

impl CustomOp1 for Forward {
    fn name(&self) -> &'static str {
        "causal-softmax"
    }

    fn cpu_fwd(&self, _: &CpuStorage, _: &Layout) -> Result<(CpuStorage, Shape)> {
        bail!("the fused causal softmax runs on a GPU only")
    }

    fn cuda_fwd(&self, s: &CudaStorage, l: &Layout) -> Result<(CudaStorage, Shape)> {
        let (start, end) = plain(l, "causal softmax")?;
        let (rows, cols, cfg) = rows_cols(l)?;
        let dev = &s.device;
        let n = end - start;
        macro_rules! launch {
            ($ty:ty, $name:literal) => {{
                let src = s.as_cuda_slice::<$ty>()?.slice(start..end);
                // SAFETY: every value of every row is written by the kernel.
                let out = unsafe { dev.alloc::<$ty>(n) }?;
                let func = dev.get_or_load_custom_func($name, MODULE, ptx()?)?;
                let mut b = func.builder();
                b.arg(&src).arg(&out).arg(&rows).arg(&cols);
                b.arg(&self.t).arg(&self.past).arg(&self.scale);
                // SAFETY: src and out hold rows × cols values; one warp per row.
                unsafe { b.launch(cfg) }.w()?;
                CudaStorage::wrap_cuda_slice(out, dev.clone())
            }};
        }
        let out = match s.dtype() {
            DType::F32 => launch!(f32, "causal_softmax_f32"),
            DType::BF16 => launch!(bf16, "causal_softmax_bf16"),
            other => bail!("causal softmax: f32 or bf16 scores, not {other:?}"),
        };
        Ok((out, l.shape().clone()))
    }
}

struct Backward {
    scale: f32,
}

impl CustomOp2 for Backward {
    fn name(&self) -> &'static str {
        "causal-softmax-grad"
    }

    fn cpu_fwd(
        &self,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        bail!("the fused causal softmax runs on a GPU only")
    }

    fn cuda_fwd(
        &self,
        y: &CudaStorage,
        yl: &Layout,
        g: &CudaStorage,
        gl: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        let (ys, ye) = plain(yl, "causal softmax gradient")?;
        let (gs, ge) = plain(gl, "causal softmax gradient")?;
        if yl.dims() != gl.dims() {
            bail!(
                "causal softmax gradient: {:?} against {:?}",
                gl.dims(),
                yl.dims()
            )
        }
        let (rows, cols, cfg) = rows_cols(yl)?;
        let dev = &y.device;
        let n = ye - ys;
        macro_rules! launch {
            ($ty:ty, $name:literal) => {{
                let yv = y.as_cuda_slice::<$ty>()?.slice(ys..ye);
                let gv = g.as_cuda_slice::<$ty>()?.slice(gs..ge);
                // SAFETY: every value is written by the kernel.
                let out = unsafe { dev.alloc::<$ty>(n) }?;
                let func = dev.get_or_load_custom_func($name, MODULE, ptx()?)?;
                let mut b = func.builder();
                b.arg(&yv)
                    .arg(&gv)
                    .arg(&out)
                    .arg(&rows)
                    .arg(&cols)
                    .arg(&self.scale);
                // SAFETY: y, g and out hold rows × cols values; one warp per row.
                unsafe { b.launch(cfg) }.w()?;
                CudaStorage::wrap_cuda_slice(out, dev.clone())
            }};
        }
        if y.dtype() != g.dtype() {
            bail!(
                "causal softmax gradient: {:?} against {:?}",
                g.dtype(),
                y.dtype()
            )
        }
        let out = match y.dtype() {
            DType::F32 => launch!(f32, "causal_softmax_grad_f32"),
            DType::BF16 => launch!(bf16, "causal_softmax_grad_bf16"),
            other => bail!("causal softmax gradient: f32 or bf16, not {other:?}"),
        };
        Ok((out, yl.shape().clone()))
    }
}
