//! The head loss's row-wise part as one CUDA kernel: for each position, the softmaxes of the
//! student's (and teacher's) logits, cross-entropy, KL, whether the argmax is the target, and
//! the logits' gradient, written in the products' dtype. The tensor-op version made about thirty
//! passes over the `[rows, vocabulary]` logits (a 50-million-value f32 temporary each at
//! 1024 × 49,152); this reads them three times and writes the gradient once.

use crate::model::nvrtc::CompiledPtx;
use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::{LaunchConfig, PushKernelArg};
use candle_core::cuda_backend::WrapErr;
use candle_core::{CudaStorage, DType, Device, Result, Storage, Tensor};

const MODULE: &str = "mlfs_head_loss";
const THREADS: u32 = 1024;

const SOURCE: &str = r#"
// NVRTC compiles without the math headers: −∞ by its bits.
#define NEG_INF __int_as_float(0xff800000)
__device__ __forceinline__ float load(const void* p, unsigned long long i, int bf16) {
    if (bf16) return __uint_as_float(((unsigned int)((const unsigned short*)p)[i]) << 16);
    return ((const float*)p)[i];
}
__device__ __forceinline__ void store(void* p, unsigned long long i, float f, int bf16) {
    if (bf16) {
        unsigned int u = __float_as_uint(f);
        unsigned int h = ((u & 0x7fffffffu) > 0x7f800000u) ? 0x7fc0u
                       : (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
        ((unsigned short*)p)[i] = (unsigned short)h;
    } else {
        ((float*)p)[i] = f;
    }
}
// Block-wide reductions over 1024 threads (32 warps) through shared memory.
__device__ float block_sum(float v, float* shared) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    __syncthreads();
    if (lane == 0) shared[warp] = v;
    __syncthreads();
    v = lane < (blockDim.x >> 5) ? shared[lane] : 0.0f;
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ float block_max(float v, float* shared) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    __syncthreads();
    if (lane == 0) shared[warp] = v;
    __syncthreads();
    v = lane < (blockDim.x >> 5) ? shared[lane] : NEG_INF;
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}
// The first index holding the maximum (ties go to the lower index).
__device__ unsigned int block_argmax(float v, unsigned int i, float* shared, unsigned int* idx) {
    for (int o = 16; o > 0; o >>= 1) {
        float ov = __shfl_xor_sync(0xffffffffu, v, o);
        unsigned int oi = __shfl_xor_sync(0xffffffffu, i, o);
        if (ov > v || (ov == v && oi < i)) { v = ov; i = oi; }
    }
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    __syncthreads();
    if (lane == 0) { shared[warp] = v; idx[warp] = i; }
    __syncthreads();
    v = lane < (blockDim.x >> 5) ? shared[lane] : NEG_INF;
    i = lane < (blockDim.x >> 5) ? idx[lane] : 0xffffffffu;
    for (int o = 16; o > 0; o >>= 1) {
        float ov = __shfl_xor_sync(0xffffffffu, v, o);
        unsigned int oi = __shfl_xor_sync(0xffffffffu, i, o);
        if (ov > v || (ov == v && oi < i)) { v = ov; i = oi; }
    }
    return i;
}
// One block per row. z: student logits, u: teacher logits (or null), both [rows, v] in f32 or
// bf16; g: the logits' gradient [rows, v] in the same dtype; stats: [rows, 3] = (ce, kl, hit),
// each times the row's mask. g = s·m·((1−α)(softmax(z) − e_y) + α·T·(softmax(z/T) − softmax(u/T))).
extern "C" __global__ void head_loss_rows(const void* z, const void* u, const unsigned int* ids,
                                          const float* mask, void* g, float* stats,
                                          unsigned long long v, float alpha, float t,
                                          float scale, int bf16) {
    __shared__ float shared[32];
    __shared__ unsigned int idx[32];
    unsigned long long row = blockIdx.x;
    unsigned long long base = row * v;
    unsigned int y = ids[row];
    float m = mask[row];
    int teacher = u != 0 && alpha > 0.0f;
    float zmax = NEG_INF, umax = NEG_INF;
    unsigned int zarg = 0xffffffffu;
    for (unsigned long long i = threadIdx.x; i < v; i += blockDim.x) {
        float zi = load(z, base + i, bf16);
        if (zi > zmax) { zmax = zi; zarg = (unsigned int)i; }
        if (teacher) umax = fmaxf(umax, load(u, base + i, bf16));
    }
    unsigned int best = block_argmax(zmax, zarg, shared, idx);
    zmax = block_max(zmax, shared);
    if (teacher) umax = block_max(umax, shared);
    float sz = 0.0f, szt = 0.0f, sut = 0.0f;
    for (unsigned long long i = threadIdx.x; i < v; i += blockDim.x) {
        float zi = load(z, base + i, bf16);
        sz += expf(zi - zmax);
        if (teacher) {
            szt += expf((zi - zmax) / t);
            sut += expf((load(u, base + i, bf16) - umax) / t);
        }
    }
    sz = block_sum(sz, shared);
    float lse_z = zmax + logf(sz), lse_zt = 0.0f, lse_ut = 0.0f;
    if (teacher) {
        szt = block_sum(szt, shared);
        sut = block_sum(sut, shared);
        lse_zt = zmax / t + logf(szt);
        lse_ut = umax / t + logf(sut);
    }
    float kl = 0.0f, zy = 0.0f, w = scale * m;
    for (unsigned long long i = threadIdx.x; i < v; i += blockDim.x) {
        float zi = load(z, base + i, bf16);
        float gi = (1.0f - alpha) * (expf(zi - lse_z) - (i == y ? 1.0f : 0.0f));
        if (i == y) zy = zi;
        if (teacher) {
            float log_pt = load(u, base + i, bf16) / t - lse_ut;
            float log_qt = zi / t - lse_zt;
            float pt = expf(log_pt);
            kl += pt * (log_pt - log_qt);
            gi += alpha * t * (expf(log_qt) - pt);
        }
        store(g, base + i, gi * w, bf16);
    }
    kl = block_sum(kl, shared);
    zy = block_sum(zy, shared);
    if (threadIdx.x == 0) {
        stats[row * 3 + 0] = (lse_z - zy) * m;
        stats[row * 3 + 1] = kl * m;
        stats[row * 3 + 2] = (best == y ? 1.0f : 0.0f) * m;
    }
}
"#;

/// The kernels' PTX (compiled once per process).
fn ptx() -> Result<&'static str> {
    static PTX: CompiledPtx = CompiledPtx::new();
    crate::model::nvrtc::ptx(&PTX, SOURCE, "the head-loss kernel")
}

/// A plain GPU tensor's storage, or an error naming `what`.
fn plain<'a>(storage: &'a Storage, t: &Tensor, what: &str) -> Result<&'a CudaStorage> {
    match (storage, t.layout().contiguous_offsets()) {
        (Storage::Cuda(s), Some((0, _))) => Ok(s),
        _ => candle_core::bail!("head-loss kernel: {what} must be a plain tensor on the GPU"),
    }
}

/// The loss weights of one call.
pub struct RowWeights {
    /// α: the cross-entropy gets `1 − α`.
    pub alpha: f64,
    pub temperature: f64,
    /// Applied to every gradient (one over the scored positions).
    pub scale: f64,
}

/// For student logits `z` `[rows, V]` (f32 or bf16), optional teacher logits `u` (same), target
/// ids `[rows]` (u32) and row mask `[rows]` (f32): the logits' gradient (in `z`'s dtype) and the
/// per-row `(ce, kl, hit)` `[rows, 3]` (f32), both masked.
pub fn head_loss_rows(
    z: &Tensor,
    u: Option<&Tensor>,
    ids: &Tensor,
    mask: &Tensor,
    w: &RowWeights,
) -> Result<(Tensor, Tensor)> {
    let (rows, v) = z.dims2()?;
    let bf16 = match z.dtype() {
        DType::BF16 => 1i32,
        DType::F32 => 0,
        other => candle_core::bail!("head-loss kernel: logits in {other:?}"),
    };
    if let Some(u) = u {
        if u.dims2()? != (rows, v) || u.dtype() != z.dtype() {
            candle_core::bail!("head-loss kernel: teacher logits do not match the student's");
        }
    }
    let device = z.device();
    let Device::Cuda(dev) = device else {
        candle_core::bail!("head-loss kernel: the logits are not on a GPU")
    };
    let (z, ids, mask) = (z.contiguous()?, ids.contiguous()?, mask.contiguous()?);
    let u = u.map(|u| u.contiguous()).transpose()?;
    // Fresh outputs the kernel fills: the gradient everywhere, the statistics row by row.
    let g = Tensor::zeros((rows, v), z.dtype(), device)?;
    let stats = Tensor::zeros((rows, 3), DType::F32, device)?;
    let func = dev.get_or_load_custom_func("head_loss_rows", MODULE, ptx()?)?;
    let (zs, _) = z.storage_and_layout();
    let (is, _) = ids.storage_and_layout();
    let (ms, _) = mask.storage_and_layout();
    let (gs, _) = g.storage_and_layout();
    let (ss, _) = stats.storage_and_layout();
    let us = u.as_ref().map(|u| u.storage_and_layout().0);
    let (zc, ic) = (plain(&zs, &z, "the logits")?, plain(&is, &ids, "the ids")?);
    let (mc, gc) = (
        plain(&ms, &mask, "the mask")?,
        plain(&gs, &g, "the gradient")?,
    );
    let sc = plain(&ss, &stats, "the statistics")?;
    let uc = match (&us, &u) {
        (Some(s), Some(t)) => Some(plain(s, t, "the teacher logits")?),
        _ => None,
    };
    let (alpha, t, scale) = (w.alpha as f32, w.temperature as f32, w.scale as f32);
    let v64 = v as u64;
    let cfg = LaunchConfig {
        grid_dim: (rows as u32, 1, 1),
        block_dim: (THREADS, 1, 1),
        shared_mem_bytes: 0,
    };
    let null: u64 = 0;
    let mut b = func.builder();
    macro_rules! slice_arg {
        ($s:expr) => {
            match $s.dtype() {
                DType::BF16 => {
                    b.arg($s.as_cuda_slice::<half::bf16>()?);
                }
                _ => {
                    b.arg($s.as_cuda_slice::<f32>()?);
                }
            }
        };
    }
    slice_arg!(zc);
    match uc {
        Some(uc) => slice_arg!(uc),
        None => {
            b.arg(&null);
        }
    }
    b.arg(ic.as_cuda_slice::<u32>()?);
    b.arg(mc.as_cuda_slice::<f32>()?);
    slice_arg!(gc);
    b.arg(sc.as_cuda_slice::<f32>()?);
    b.arg(&v64).arg(&alpha).arg(&t).arg(&scale).arg(&bf16);
    // SAFETY: z, u and g hold rows·v values of the dtype `bf16` names, ids and mask `rows`,
    // stats rows·3 (all plain, checked above); block r reads row r and writes row r of g and
    // stats. g and stats are fresh tensors nothing else refers to yet.
    unsafe { b.launch(cfg) }.w()?;
    drop((zs, is, ms, gs, ss, us));
    Ok((g, stats))
}
