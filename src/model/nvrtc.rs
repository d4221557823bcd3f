//! Our CUDA kernels' PTX, compiled from source at run time with NVRTC, once per process.

use candle_core::cuda_backend::cudarc::nvrtc::compile_ptx;
use candle_core::Result;
use std::sync::OnceLock;

/// CUDA source of f32 → bf16 rounding to nearest even (a NaN stays a quiet NaN of its sign), as
/// candle's cast rounds: the one definition our kernel sources start with (`concat!`).
macro_rules! bf16_rounding {
    () => {
        r#"
__device__ __forceinline__ unsigned int to_bf16_bits(float f) {
    unsigned int u = __float_as_uint(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return 0x7fc0u | ((u >> 16) & 0x8000u);
    return (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
}
"#
    };
}
pub(crate) use bf16_rounding;

/// [`bf16_rounding`] and `ld` / `st` overloads that read and write f32 or bf16 values (bf16 as
/// `unsigned short`) as f32, for kernels written once for both.
macro_rules! bf16_load_store {
    () => {
        concat!(
            crate::model::nvrtc::bf16_rounding!(),
            r#"__device__ __forceinline__ float ld(const float* p, unsigned long long i) { return p[i]; }
__device__ __forceinline__ float ld(const unsigned short* p, unsigned long long i) {
    return __uint_as_float(((unsigned int)p[i]) << 16);
}
__device__ __forceinline__ void st(float* p, unsigned long long i, float v) { p[i] = v; }
__device__ __forceinline__ void st(unsigned short* p, unsigned long long i, float v) {
    p[i] = (unsigned short)to_bf16_bits(v);
}
"#
        )
    };
}
pub(crate) use bf16_load_store;

/// The compiled result of one kernel source.
pub type CompiledPtx = OnceLock<std::result::Result<String, String>>;

/// The PTX of `source`, compiled on first use and kept in `cell`; `what` names the kernels in
/// the error.
pub fn ptx(cell: &'static CompiledPtx, source: &str, what: &str) -> Result<&'static str> {
    let compiled = cell.get_or_init(|| {
        compile_ptx(source)
            .map(|p| p.to_src())
            .map_err(|e| e.to_string())
    });
    compiled
        .as_deref()
        .map_err(|e| candle_core::Error::Msg(format!("cannot compile {what}: {e}")))
}
