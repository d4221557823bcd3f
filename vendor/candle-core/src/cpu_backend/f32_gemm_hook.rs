//! MLFS Studio's change (vendor/README.md): a process-wide hook through which candle's f32
//! CPU matrix products go to an external BLAS that the application opened, instead of the
//! `gemm` crate. Without a hook, or when the hook declines a layout, the `gemm` crate runs.

use std::sync::OnceLock;

/// One batched product `dst[s] = lhs[s] · rhs[s]` for `s < batch`, `lhs[s]` `[m, k]`,
/// `rhs[s]` `[k, n]`, each matrix given by its first element, its batch step and its row and
/// column strides (in elements); `dst` is contiguous `[batch, m, n]`.
#[derive(Clone, Copy, Debug)]
pub struct F32GemmCall {
    pub batch: usize,
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub lhs: *const f32,
    pub lhs_batch: usize,
    pub lhs_rs: usize,
    pub lhs_cs: usize,
    pub rhs: *const f32,
    pub rhs_batch: usize,
    pub rhs_rs: usize,
    pub rhs_cs: usize,
    pub dst: *mut f32,
}

/// Computes the call and returns true, or returns false (having written nothing that matters)
/// when it cannot take the layout, so candle's own kernel runs.
///
/// # Safety
/// The pointers address every element the call's sizes and strides reach.
pub type F32Gemm = unsafe fn(&F32GemmCall) -> bool;

static HOOK: OnceLock<F32Gemm> = OnceLock::new();

/// Installs the hook for the rest of the process; false if one was installed already.
pub fn set_f32_gemm(hook: F32Gemm) -> bool {
    HOOK.set(hook).is_ok()
}

pub(crate) fn f32_gemm() -> Option<F32Gemm> {
    HOOK.get().copied()
}
