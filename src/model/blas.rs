//! OpenBLAS (or another CBLAS), when the system has it, for every f32 CPU matrix product.
//!
//! At batch 1 (32 rows) candle's CPU product (the gemm crate) took 3.96 ms for the maxnet's
//! eighteen products where OpenBLAS's `cblas_sgemm` took 2.23 ms (Debian 12's 0.3.21, 2-core AMD
//! EPYC). The library is opened at run time, not linked: without it (or with `MLFS_BLAS=off`)
//! the product falls back to candle's, so nothing about building or running depends on it.
//! `MLFS_BLAS=/path/to/lib.so` picks another build: any library exporting `cblas_sgemm`
//! (OpenBLAS, oneMKL's `libmkl_rt.so`) or `scipy_cblas_sgemm` (PyPI's `scipy-openblas32`).
//!
//! Opening it also installs a hook in the vendored candle-core (vendor/README.md), so candle's
//! own f32 products — training attention, the LM head's chunks, adapters, candle's backward of
//! any product — reach the same library instead of the gemm crate: one product engine and one
//! thread pool for the large products (on a 2-core Xeon the gemm crate's rayon workers and
//! OpenBLAS's threads took turns yielding the same cores).

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
    /// OpenBLAS's report of itself (`openblas_get_config`, `openblas_get_corename`) and its
    /// thread count, where the library has them.
    details: String,
}

/// Who runs a large product's threads.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Threads {
    /// rayon's workers, each part one single-threaded library call (the library's own threads
    /// are set to 1): one thread pool for products and our parallel loops.
    Rayon,
    /// The library's own threads (OpenBLAS's pthreads server), rayon for the rest.
    Library,
}

/// `MLFS_BLAS_THREADS=library` or `rayon` (the default).
pub fn threads() -> Threads {
    static MODE: OnceLock<Threads> = OnceLock::new();
    *MODE.get_or_init(|| match std::env::var("MLFS_BLAS_THREADS").as_deref() {
        Ok("library") => Threads::Library,
        _ => Threads::Rayon,
    })
}

/// Runs `f` on one of rayon's workers when products split over them ([`Threads::Rayon`]) and
/// the caller is not one already: each split product's parts then run inline and by work
/// stealing, instead of every product being handed into the pool from outside and waited for
/// (a sleeping caller woken once per product).
pub fn on_product_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    if threads() == Threads::Rayon && rayon::current_thread_index().is_none() {
        return rayon::scope(|_| f());
    }
    f()
}

/// Library names tried in order (OpenBLAS's Debian and upstream sonames).
const CANDIDATES: [&str; 2] = ["libopenblas.so.0", "libopenblas.so"];

/// Symbol prefixes: plain CBLAS, and PyPI's scipy-openblas builds, which prefix every symbol.
const PREFIXES: [&str; 2] = ["", "scipy_"];

fn open(name: &str) -> Option<Blas> {
    // SAFETY: opening the library runs only its own initialisers; each symbol is read with the
    // signature CBLAS (or OpenBLAS, for its reports) defines for it.
    unsafe {
        let library = libloading::Library::new(name).ok()?;
        let (prefix, sgemm) = PREFIXES.iter().find_map(|p| {
            let symbol = format!("{p}cblas_sgemm\0");
            library
                .get::<Sgemm>(symbol.as_bytes())
                .ok()
                .map(|f| (*p, *f))
        })?;
        let text = |symbol: &str| -> Option<String> {
            let symbol = format!("{prefix}{symbol}\0");
            let f = library
                .get::<unsafe extern "C" fn() -> *const std::ffi::c_char>(symbol.as_bytes())
                .ok()?;
            let p = f();
            (!p.is_null()).then(|| {
                std::ffi::CStr::from_ptr(p)
                    .to_string_lossy()
                    .trim()
                    .to_string()
            })
        };
        if threads() == Threads::Rayon {
            // One thread inside each rayon part: OpenBLAS's setter, or oneMKL's.
            let setters = [
                format!("{prefix}openblas_set_num_threads\0"),
                "MKL_Set_Num_Threads\0".into(),
            ];
            for set in setters {
                if let Ok(f) = library.get::<unsafe extern "C" fn(c_int)>(set.as_bytes()) {
                    f(1);
                }
            }
        }
        let threads = library
            .get::<unsafe extern "C" fn() -> c_int>(
                format!("{prefix}openblas_get_num_threads\0").as_bytes(),
            )
            .ok()
            .map(|f| f());
        let details = [
            text("openblas_get_config"),
            text("openblas_get_corename").map(|c| format!("core {c}")),
            threads.map(|t| format!("{t} threads")),
        ]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(", ");
        Some(Blas {
            _library: library,
            sgemm,
            name: name.to_string(),
            details,
        })
    }
}

fn blas() -> Option<&'static Blas> {
    static BLAS: OnceLock<Option<Blas>> = OnceLock::new();
    BLAS.get_or_init(|| {
        let opened = match std::env::var("MLFS_BLAS") {
            Ok(v) if v == "off" || v == "0" => None,
            Ok(path) if !path.is_empty() => open(&path),
            _ => CANDIDATES.iter().find_map(|name| open(name)),
        };
        // MLFS_BLAS_CANDLE=off leaves candle's own products to the gemm crate (to profile
        // the difference).
        let hook = std::env::var("MLFS_BLAS_CANDLE").map_or(true, |v| v != "off");
        if opened.is_some() && hook {
            candle_core::cpu_backend::set_f32_gemm(candle_product);
        }
        opened
    })
    .as_ref()
}

/// Opens the library (if any) now, so that candle's products use it from the first one.
pub fn init() {
    blas();
}

/// How a matrix of `rows × cols` with row stride `rs` and column stride `cs` is passed to a
/// row-major CBLAS: as it is (`lda` = row stride) or transposed (`lda` = column stride); `None`
/// for a layout with no unit stride.
fn cblas_operand(rows: usize, cols: usize, rs: usize, cs: usize) -> Option<(c_int, usize)> {
    if (cs == 1 || cols == 1) && (rows == 1 || rs >= cols) {
        return Some((CBLAS_NO_TRANS, if rows == 1 { cols } else { rs }));
    }
    if (rs == 1 || rows == 1) && (cols == 1 || cs >= rows) {
        return Some((CBLAS_TRANS, if cols == 1 { rows } else { cs }));
    }
    None
}

/// How many of candle's products went through the hook (for tests and reports).
static HOOKED_PRODUCTS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// The number of candle products the library has computed so far.
pub fn hooked_products() -> usize {
    HOOKED_PRODUCTS.load(std::sync::atomic::Ordering::Relaxed)
}

/// candle's f32 CPU products, through the loaded library (installed as candle-core's hook).
///
/// # Safety
/// As [`candle_core::cpu_backend::F32Gemm`]: the call's pointers cover its sizes and strides.
unsafe fn candle_product(call: &candle_core::cpu_backend::F32GemmCall) -> bool {
    let Some(blas) = blas() else {
        return false;
    };
    let fits = |v: usize| v <= c_int::MAX as usize;
    let (m, n, k) = (call.m, call.n, call.k);
    if m == 0 || n == 0 || k == 0 || ![m, n, k].into_iter().all(fits) {
        return false;
    }
    let Some((ta, lda)) = cblas_operand(m, k, call.lhs_rs, call.lhs_cs) else {
        return false;
    };
    let Some((tb, ldb)) = cblas_operand(k, n, call.rhs_rs, call.rhs_cs) else {
        return false;
    };
    if !fits(lda) || !fits(ldb) {
        return false;
    }
    HOOKED_PRODUCTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let sgemm = RowMajorSgemm(blas.sgemm);
    let (lhs, rhs, dst) = (
        SharedPtr(call.lhs.cast_mut()),
        SharedPtr(call.rhs.cast_mut()),
        SharedPtr(call.dst),
    );
    let (lhs_batch, rhs_batch) = (call.lhs_batch, call.rhs_batch);
    // Batch step `s`, split over rayon's workers itself or not.
    let step = move |s: usize, split: bool| {
        // SAFETY: the caller's promise: each step's matrices lie at these offsets, and each
        // step writes its own output matrix.
        unsafe {
            let a = (lhs.get().add(s * lhs_batch).cast_const(), lda);
            let b = (rhs.get().add(s * rhs_batch).cast_const(), ldb);
            let c = (dst.get().add(s * m * n), n);
            if split {
                sgemm.call(ta, tb, (m, n, k), 1.0, a, b, 0.0, c)
            } else {
                sgemm.call_serial(ta, tb, (m, n, k), 1.0, a, b, 0.0, c)
            }
        }
    };
    let workers = rayon::current_num_threads();
    if threads() == Threads::Rayon && call.batch >= workers && workers > 1 {
        // Whole matrices per worker: attention's heads are too small to split well.
        use rayon::prelude::*;
        (0..call.batch).into_par_iter().for_each(|s| step(s, false));
    } else {
        (0..call.batch).for_each(|s| step(s, true));
    }
    true
}

/// The loaded library's row-major single-precision product, for callers that walk their own
/// (strided) matrices.
#[derive(Clone, Copy)]
pub(crate) struct RowMajorSgemm(Sgemm);

/// A pointer handed to rayon's workers: each writes a part of `c` none of the others touch.
#[derive(Clone, Copy)]
struct SharedPtr<T>(*mut T);
// SAFETY: only used for disjoint parts of one output, and read-only inputs.
unsafe impl<T> Send for SharedPtr<T> {}
unsafe impl<T> Sync for SharedPtr<T> {}

impl<T> SharedPtr<T> {
    /// The pointer (a method, so closures capture the whole `Send` wrapper, not its field).
    fn get(self) -> *mut T {
        self.0
    }
}

/// Products below this many multiply-adds run on one thread (OpenBLAS's own threshold for
/// threading its sgemm is 4·65536).
const PARALLEL_MIN_MACS: usize = 1 << 18;

impl RowMajorSgemm {
    /// `C = alpha·op(A)·op(B) + beta·C`, `op(A)` `[m, k]`, `op(B)` `[k, n]`, each matrix given
    /// by its first value and leading dimension. With [`Threads::Rayon`] a large product is
    /// split along its longer output side over rayon's workers, each part one single-threaded
    /// library call.
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
        let workers = match threads() {
            Threads::Rayon => rayon::current_num_threads(),
            Threads::Library => 1,
        };
        let side = m.max(n);
        if workers < 2 || m * n * k < PARALLEL_MIN_MACS || side < 2 * workers {
            // SAFETY: the caller's promise.
            unsafe {
                self.call_serial(
                    trans_a,
                    trans_b,
                    (m, n, k),
                    alpha,
                    (a, lda),
                    (b, ldb),
                    beta,
                    (c, ldc),
                )
            };
            return;
        }
        let part = side.div_ceil(workers);
        let (a, b, c) = (
            SharedPtr(a.cast_mut()),
            SharedPtr(b.cast_mut()),
            SharedPtr(c),
        );
        use rayon::prelude::*;
        (0..workers).into_par_iter().for_each(move |p| {
            let start = p * part;
            let len = part.min(side.saturating_sub(start));
            if len == 0 {
                return;
            }
            // Part p covers rows (or columns) start..start+len of C; A's rows or B's columns
            // move with them.
            let (a, b, c) = (a.get().cast_const(), b.get().cast_const(), c.get());
            let along_rows = m >= n;
            // SAFETY: every offset stays inside the caller's matrices.
            let (sizes, a_p, b_p, c_p) = unsafe {
                if along_rows {
                    let a_p = match trans_a == CBLAS_NO_TRANS {
                        true => a.add(start * lda),
                        false => a.add(start),
                    };
                    ((len, n, k), a_p, b, c.add(start * ldc))
                } else {
                    let b_p = match trans_b == CBLAS_NO_TRANS {
                        true => b.add(start),
                        false => b.add(start * ldb),
                    };
                    ((m, len, k), a, b_p, c.add(start))
                }
            };
            // SAFETY: the part is a product of matrices inside the caller's, and writes only
            // its own rows or columns of C.
            unsafe {
                self.call_serial(
                    trans_a,
                    trans_b,
                    sizes,
                    alpha,
                    (a_p, lda),
                    (b_p, ldb),
                    beta,
                    (c_p, ldc),
                )
            };
        });
    }

    /// [`Self::call`] as one library call on the calling thread.
    ///
    /// # Safety
    /// As [`Self::call`].
    #[allow(clippy::too_many_arguments)]
    unsafe fn call_serial(
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

/// The BLAS library in use for the products, if any (for reports).
pub fn library() -> Option<&'static str> {
    blas().map(|b| b.name.as_str())
}

/// One line for reports: the library, its build and core, and its thread count.
pub fn describe() -> String {
    match blas() {
        Some(b) if b.details.is_empty() => b.name.clone(),
        Some(b) => format!("{} ({})", b.name, b.details),
        None => "none (candle's gemm crate)".into(),
    }
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

    /// `a · b` in f64 by the definition, for any layout candle hands over.
    fn naive_product(a: &Tensor, b: &Tensor) -> Vec<f64> {
        let a = a.to_dtype(DType::F64).unwrap().contiguous().unwrap();
        let b = b.to_dtype(DType::F64).unwrap().contiguous().unwrap();
        let (m, k) = (a.dim(a.rank() - 2).unwrap(), a.dim(a.rank() - 1).unwrap());
        let n = b.dim(b.rank() - 1).unwrap();
        let av = a.flatten_all().unwrap().to_vec1::<f64>().unwrap();
        let bv = b.flatten_all().unwrap().to_vec1::<f64>().unwrap();
        let batch = av.len() / (m * k);
        let mut out = Vec::with_capacity(batch * m * n);
        for s in 0..batch {
            for i in 0..m {
                for j in 0..n {
                    let dot = (0..k)
                        .map(|p| av[s * m * k + i * k + p] * bv[s * k * n + p * n + j])
                        .sum();
                    out.push(dot);
                }
            }
        }
        out
    }

    /// candle's `matmul` on the layouts our models hand it (plain, transposed, column-sliced,
    /// batched heads, a broadcast batch, single rows and columns, no unit stride) equals the
    /// product by its definition, and goes through the library whenever one is loaded.
    #[test]
    fn candles_products_through_the_hook_equal_the_definition() {
        init();
        let r = |shape: &[usize], seed: u64| {
            crate::util::uniform_tensor((1, shape.iter().product::<usize>()), seed)
                .reshape(shape)
                .unwrap()
        };
        let w = r(&[40, 70], 2);
        let heads = r(&[2, 3, 16, 8], 3);
        let cases: Vec<(&str, Tensor, Tensor, bool)> = vec![
            ("plain", r(&[5, 7], 1), r(&[7, 9], 4), true),
            ("rhs transposed", r(&[5, 70], 5), w.t().unwrap(), true),
            (
                "lhs transposed",
                r(&[7, 5], 6).t().unwrap(),
                r(&[7, 9], 7),
                true,
            ),
            (
                "column slice",
                r(&[6, 33], 8),
                w.narrow(0, 0, 20)
                    .unwrap()
                    .narrow(1, 0, 33)
                    .unwrap()
                    .t()
                    .unwrap(),
                true,
            ),
            (
                "heads q·kᵀ",
                heads.clone(),
                heads.transpose(2, 3).unwrap(),
                true,
            ),
            (
                "broadcast batch",
                r(&[3, 4, 7], 9),
                r(&[7, 5], 10)
                    .unsqueeze(0)
                    .unwrap()
                    .expand((3, 7, 5))
                    .unwrap(),
                true,
            ),
            ("one row", r(&[1, 7], 11), r(&[7, 9], 12), true),
            ("one column", r(&[5, 7], 13), r(&[7, 1], 14), true),
            (
                "no unit stride",
                // Every other value of each row: strides (14, 2).
                r(&[5, 7, 2], 15)
                    .narrow(2, 0, 1)
                    .unwrap()
                    .squeeze(2)
                    .unwrap(),
                r(&[7, 3], 16),
                false,
            ),
        ];
        for (name, a, b, blas_takes_it) in cases {
            let before = hooked_products();
            let got = a.matmul(&b).unwrap();
            let counted = hooked_products() - before;
            let got = got.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let want = naive_product(&a, &b);
            assert_eq!(got.len(), want.len(), "{name}");
            let diff = got
                .iter()
                .zip(&want)
                .map(|(g, w)| (*g as f64 - w).abs())
                .fold(0.0, f64::max);
            assert!(diff < 1e-4, "{name}: max diff {diff}");
            // Other tests' products may run meanwhile, so only "at least one" can be asserted.
            if library().is_some() && blas_takes_it {
                assert!(counted >= 1, "{name} did not reach the library");
            }
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
