//! OpenBLAS, when the system has it, for the dense inference products of merged subnets.
//!
//! At batch 1 (32 rows) candle's CPU product (the gemm crate) took 3.96 ms for the maxnet's
//! eighteen products where OpenBLAS's `cblas_sgemm` took 2.23 ms (Debian 12's 0.3.21, 2-core AMD
//! EPYC). The library is opened at run time, not linked: without it (or with `MLFS_BLAS=off`)
//! the product falls back to candle's, so nothing about building or running depends on it.
//! `MLFS_BLAS=/path/to/libopenblas.so` picks another build.

use candle_core::{DType, Device, Result, Storage, Tensor};
use std::ffi::c_int;
use std::sync::OnceLock;

/// `cblas_sgemm` (CBLAS's C signature).
type Sgemm = unsafe extern "C" fn(
    order: c_int,
    trans_a: c_int,
    trans_b: c_int,
    m: c_int,
    n: c_int,
    k: c_int,
    alpha: f32,
    a: *const f32,
    lda: c_int,
    b: *const f32,
    ldb: c_int,
    beta: f32,
    c: *mut f32,
    ldc: c_int,
);

const CBLAS_ROW_MAJOR: c_int = 101;
/// CBLAS's code for an operand used as it is.
pub(crate) const CBLAS_NO_TRANS: c_int = 111;
/// CBLAS's code for a transposed operand.
pub(crate) const CBLAS_TRANS: c_int = 112;

/// The opened library (kept open for the process) and its product.
struct Blas {
    _library: libloading::Library,
    sgemm: Sgemm,
    name: String,
}

/// Library names tried in order (OpenBLAS's Debian and upstream sonames).
const CANDIDATES: [&str; 2] = ["libopenblas.so.0", "libopenblas.so"];

fn open(name: &str) -> Option<Blas> {
    // SAFETY: opening OpenBLAS runs only its own initialisers; the symbol is read with the
    // signature CBLAS defines for it.
    unsafe {
        let library = libloading::Library::new(name).ok()?;
        let sgemm = *library.get::<Sgemm>(b"cblas_sgemm\0").ok()?;
        Some(Blas {
            _library: library,
            sgemm,
            name: name.to_string(),
        })
    }
}

fn blas() -> Option<&'static Blas> {
    static BLAS: OnceLock<Option<Blas>> = OnceLock::new();
    BLAS.get_or_init(|| match std::env::var("MLFS_BLAS") {
        Ok(v) if v == "off" || v == "0" => None,
        Ok(path) if !path.is_empty() => open(&path),
        _ => CANDIDATES.iter().find_map(|name| open(name)),
    })
    .as_ref()
}

/// The loaded library's row-major single-precision product, for callers that walk their own
/// (strided) matrices.
#[derive(Clone, Copy)]
pub(crate) struct RowMajorSgemm(Sgemm);

impl RowMajorSgemm {
    /// `C = alpha·op(A)·op(B) + beta·C`, `op(A)` `[m, k]`, `op(B)` `[k, n]`, each matrix given
    /// by its first value and leading dimension.
    ///
    /// # Safety
    /// Each pointer must address a row-major matrix of the given size and leading dimension
    /// inside one allocation; `c` must not overlap `a` or `b`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) unsafe fn call(
        self,
        trans_a: c_int,
        trans_b: c_int,
        (m, n, k): (usize, usize, usize),
        alpha: f32,
        (a, lda): (*const f32, usize),
        (b, ldb): (*const f32, usize),
        beta: f32,
        (c, ldc): (*mut f32, usize),
    ) {
        // SAFETY: the caller's promise; sizes as CBLAS expects them.
        unsafe {
            (self.0)(
                CBLAS_ROW_MAJOR,
                trans_a,
                trans_b,
                m as c_int,
                n as c_int,
                k as c_int,
                alpha,
                a,
                lda as c_int,
                b,
                ldb as c_int,
                beta,
                c,
                ldc as c_int,
            )
        }
    }
}

/// The product of the loaded library, if any.
pub(crate) fn sgemm() -> Option<RowMajorSgemm> {
    blas().map(|b| RowMajorSgemm(b.sgemm))
}

/// The BLAS library in use for inference products, if any (for reports).
pub fn library() -> Option<&'static str> {
    blas().map(|b| b.name.as_str())
}

/// Reads a contiguous f32 CPU tensor's values and hands them to `f`.
fn with_f32<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> Option<R> {
    if t.dtype() != DType::F32 || !t.is_contiguous() {
        return None;
    }
    let (storage, layout) = t.storage_and_layout();
    let Storage::Cpu(cpu) = &*storage else {
        return None;
    };
    let all = cpu.as_slice::<f32>().ok()?;
    let start = layout.start_offset();
    Some(f(all.get(start..start + t.elem_count())?))
}

/// `x · w + bias` for `x` `[M, K]`, `w` `[K, N]` (both contiguous f32 on the CPU, not tracked for
/// gradients) through OpenBLAS; `None` when it does not apply (no library, another device or
/// dtype, a strided input), so the caller uses candle's product.
pub fn linear(x: &Tensor, w: &Tensor, bias: Option<&Tensor>) -> Result<Option<Tensor>> {
    product(x, false, w, false, bias)
}

/// `x · wᵀ` for `x` `[M, K]`, `w` `[N, K]` (a weight as stored), as [`linear`].
pub fn matmul_t(x: &Tensor, w: &Tensor) -> Result<Option<Tensor>> {
    product(x, false, w, true, None)
}

/// `gᵀ · x` for `g` `[M, N]`, `x` `[M, K]`: a weight's gradient `[N, K]`, as [`linear`].
pub fn t_matmul(g: &Tensor, x: &Tensor) -> Result<Option<Tensor>> {
    product(g, true, x, false, None)
}

/// `x · w`: OpenBLAS where [`linear`] applies, else candle's product.
pub fn matmul_or_candle(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    match linear(x, w, None)? {
        Some(y) => Ok(y),
        None => x.matmul(w),
    }
}

/// `x · wᵀ`: OpenBLAS where [`matmul_t`] applies, else candle's product.
pub fn matmul_t_or_candle(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    match matmul_t(x, w)? {
        Some(y) => Ok(y),
        None => x.matmul(&w.t()?),
    }
}

/// `gᵀ · x`: OpenBLAS where [`t_matmul`] applies, else candle's product.
pub fn t_matmul_or_candle(g: &Tensor, x: &Tensor) -> Result<Tensor> {
    match t_matmul(g, x)? {
        Some(y) => Ok(y),
        None => g.t()?.matmul(x),
    }
}

fn product(
    x: &Tensor,
    x_transposed: bool,
    w: &Tensor,
    w_transposed: bool,
    bias: Option<&Tensor>,
) -> Result<Option<Tensor>> {
    let Some(blas) = blas() else {
        return Ok(None);
    };
    if !matches!(x.device(), Device::Cpu) || x.track_op() || w.track_op() || x.rank() != 2 {
        return Ok(None);
    }
    let (m, k) = match x.dims2()? {
        (rows, cols) if x_transposed => (cols, rows),
        dims => dims,
    };
    let (trans_x, ldx) = if x_transposed {
        (CBLAS_TRANS, m)
    } else {
        (CBLAS_NO_TRANS, k)
    };
    let (k2, n) = match w.dims2()? {
        (rows, cols) if w_transposed => (cols, rows),
        dims => dims,
    };
    if k != k2 || m == 0 || n == 0 || k == 0 {
        return Ok(None);
    }
    let (trans_w, ldw) = if w_transposed {
        (CBLAS_TRANS, k)
    } else {
        (CBLAS_NO_TRANS, n)
    };
    // The output starts as the bias on every row, and the product is added to it (beta = 1).
    let mut out = vec![0f32; m * n];
    let beta = match bias {
        Some(b) => {
            let filled = with_f32(b, |b| {
                if b.len() != n {
                    return false;
                }
                out.chunks_exact_mut(n)
                    .for_each(|row| row.copy_from_slice(b));
                true
            });
            if filled != Some(true) {
                return Ok(None);
            }
            1.0
        }
        None => 0.0,
    };
    let done = with_f32(x, |xs| {
        with_f32(w, |ws| {
            // SAFETY: `xs` holds m·k values, `ws` k·n, `out` m·n, all row-major and contiguous,
            // as the transposes and leading dimensions passed say.
            unsafe {
                RowMajorSgemm(blas.sgemm).call(
                    trans_x,
                    trans_w,
                    (m, n, k),
                    1.0,
                    (xs.as_ptr(), ldx),
                    (ws.as_ptr(), ldw),
                    beta,
                    (out.as_mut_ptr(), n),
                )
            }
        })
    })
    .flatten();
    if done.is_none() {
        return Ok(None);
    }
    Tensor::from_vec(out, (m, n), x.device()).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whatever path runs (OpenBLAS where installed, else none), the values are candle's.
    #[test]
    fn blas_linear_equals_candles_product_plus_bias() {
        let d = Device::Cpu;
        let x = Tensor::randn(0f32, 1.0, (32, 384), &d).unwrap();
        let w = Tensor::randn(0f32, 1.0, (384, 200), &d).unwrap();
        let b = Tensor::randn(0f32, 1.0, 200, &d).unwrap();
        let want = x.matmul(&w).unwrap().broadcast_add(&b).unwrap();
        match linear(&x, &w, Some(&b)).unwrap() {
            Some(got) => {
                let diff = crate::util::max_abs_diff(&got, &want).unwrap();
                assert!(diff < 1e-3, "{diff}");
                assert!(library().is_some());
            }
            None => assert!(library().is_none(), "library loaded but not used"),
        }
        // A strided (transposed) input is left to candle; the stored weight goes as it is.
        let wt = Tensor::randn(0f32, 1.0, (200, 384), &d).unwrap();
        assert!(linear(&x, &wt.t().unwrap(), None).unwrap().is_none());
        if let Some(got) = matmul_t(&x, &wt).unwrap() {
            let want = x.matmul(&wt.t().unwrap()).unwrap();
            let diff = crate::util::max_abs_diff(&got, &want).unwrap();
            assert!(diff < 1e-3, "{diff}");
        }
        let g = Tensor::randn(0f32, 1.0, (32, 200), &d).unwrap();
        if let Some(got) = t_matmul(&g, &x).unwrap() {
            assert_eq!(got.dims(), [200, 384]);
            let want = g.t().unwrap().matmul(&x).unwrap();
            let diff = crate::util::max_abs_diff(&got, &want).unwrap();
            assert!(diff < 1e-3, "{diff}");
        }
    }

    /// A trainable product through OpenBLAS has candle's value and gradients for x and w.
    #[test]
    fn trainable_product_has_candles_value_and_gradients() {
        let d = Device::Cpu;
        let x = candle_core::Var::randn(0f32, 1.0, (48, 96), &d).unwrap();
        let w = candle_core::Var::randn(0f32, 1.0, (64, 96), &d).unwrap();
        let weights = Tensor::randn(0f32, 1.0, (48, 64), &d).unwrap();
        let Some(ours) = crate::model::ops::blas_trainable_matmul_t(&x, &w).unwrap() else {
            assert!(library().is_none(), "library loaded but not used");
            return;
        };
        let theirs = x.matmul(&w.t().unwrap()).unwrap();
        assert!(crate::util::max_abs_diff(&ours, &theirs).unwrap() < 1e-3);
        let loss = |y: &Tensor| (y * &weights).unwrap().sum_all().unwrap();
        let g_ours = loss(&ours).backward().unwrap();
        let g_theirs = loss(&theirs).backward().unwrap();
        for v in [x.as_tensor(), w.as_tensor()] {
            let a = g_ours.get(v).unwrap();
            let b = g_theirs.get(v).unwrap();
            assert_eq!(a.dims(), b.dims());
            assert!(crate::util::max_abs_diff(a, b).unwrap() < 1e-3);
        }
    }

    /// CI and `scripts/test.sh` install OpenBLAS and set `MLFS_EXPECT_BLAS`: there it must load.
    #[test]
    fn openblas_loads_where_the_test_script_installed_it() {
        if std::env::var_os("MLFS_EXPECT_BLAS").is_some() {
            assert!(
                library().is_some(),
                "OpenBLAS was installed but did not load"
            );
        }
    }
}
