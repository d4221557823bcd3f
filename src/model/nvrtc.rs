//! Our CUDA kernels' PTX, compiled from source at run time with NVRTC, once per process.

use candle_core::cuda_backend::cudarc::nvrtc::compile_ptx;
use candle_core::Result;
use std::sync::OnceLock;

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
