//! Inference attention on the CPU in one pass through OpenBLAS: per sequence and head, the
//! scores product, the masked softmax and the context product, read straight from the
//! heads' strided views and written into `[B·T, H·hs]`.
//!
//! In candle ops the same work is about ten tensor ops (head splits, scale, mask, softmax,
//! transposes), each allocating and walking its tensor, and candle hands even 32 × 32 products
//! to rayon's pool. Measured alone on a batch-1 minnet it is a small gain (0.206 → 0.201 ms,
//! 2-core AMD EPYC, interleaved A/B).

use super::blas::{sgemm, CBLAS_NO_TRANS, CBLAS_TRANS};
use super::ops::softmax_row_in_place;
use candle_core::{DType, Device, Result, Storage, Tensor};

/// A rank-4 f32 CPU view `[B, H, T, hs]` whose rows are contiguous: its values and strides.
struct HeadsView<'a> {
    values: &'a [f32],
    start: usize,
    dims: [usize; 4],
    strides: [usize; 4],
}

impl HeadsView<'_> {
    /// Offset of row 0 of head `h` of sequence `b`.
    fn offset(&self, b: usize, h: usize) -> usize {
        self.start + b * self.strides[0] + h * self.strides[1]
    }

    /// Whether every value the view addresses lies inside its storage.
    fn in_bounds(&self) -> bool {
        let last: usize = (0..4)
            .map(|i| (self.dims[i].saturating_sub(1)) * self.strides[i])
            .sum();
        self.dims.iter().all(|&d| d > 0) && self.start + last < self.values.len()
    }
}

/// Whether this path takes `t`: untracked f32 on the CPU, rank 4, unit stride along the head
/// dimension.
fn qualifies(t: &Tensor) -> bool {
    matches!(t.device(), Device::Cpu)
        && t.dtype() == DType::F32
        && !t.track_op()
        && t.rank() == 4
        && t.stride()[3] == 1
}

/// Runs `f` on the views of `q`, `k`, `v` (each [`qualifies`]) when they lie in their storage.
fn with_views<R>(tensors: [&Tensor; 3], f: impl FnOnce([HeadsView<'_>; 3]) -> R) -> Option<R> {
    let guards = tensors.map(|t| t.storage_and_layout());
    let mut views = Vec::with_capacity(3);
    for (storage, layout) in &guards {
        let Storage::Cpu(cpu) = &**storage else {
            return None;
        };
        let values = cpu.as_slice::<f32>().ok()?;
        let dims: [usize; 4] = layout.dims().try_into().ok()?;
        let strides: [usize; 4] = layout.stride().try_into().ok()?;
        let view = HeadsView {
            values,
            start: layout.start_offset(),
            dims,
            strides,
        };
        if !view.in_bounds() {
            return None;
        }
        views.push(view);
    }
    let [q, k, v]: [HeadsView<'_>; 3] = views.try_into().ok()?;
    Some(f([q, k, v]))
}

/// An additive mask broadcastable to `[B, 1, T, S]` (`[B|1, 1, T|1, S]`), read to the host.
struct Mask {
    values: Vec<f32>,
    per_sequence: bool,
    per_query: bool,
    keys: usize,
}

impl Mask {
    fn read(mask: &Tensor, b: usize, t: usize, s: usize) -> Result<Option<Self>> {
        let Ok((mb, mh, mt, ms)) = mask.dims4() else {
            return Ok(None);
        };
        if mh != 1 || ms != s || !(mb == 1 || mb == b) || !(mt == 1 || mt == t) {
            return Ok(None);
        }
        let values = mask.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
        Ok(Some(Self {
            values,
            per_sequence: mb == b && b > 1,
            per_query: mt == t && t > 1,
            keys: s,
        }))
    }

    /// The mask row of query `i` of sequence `b`.
    fn row(&self, b: usize, i: usize, t: usize) -> &[f32] {
        let mt = if self.per_query { t } else { 1 };
        let bi = if self.per_sequence { b } else { 0 };
        let ii = if self.per_query { i } else { 0 };
        let start = (bi * mt + ii) * self.keys;
        &self.values[start..start + self.keys]
    }
}

/// `softmax(q·kᵀ/√hs + mask)·v` for views `q` `[B, Hq, T, hs]`, `k`, `v` `[B, Hkv, S, hs]`
/// (GQA when Hkv < Hq); returns the context `[B·T, Hq·hs]`, or `None` when it does not apply
/// (no OpenBLAS, tracked or non-f32 inputs, another device, an unexpected mask shape), so
/// the caller runs candle's ops.
pub fn attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    mask_add: Option<&Tensor>,
) -> Result<Option<Tensor>> {
    let Some(sgemm) = sgemm() else {
        return Ok(None);
    };
    // Before anything is read: training (tracked) and GPU inputs go to candle's ops at once.
    if ![q, k, v].into_iter().all(qualifies) {
        return Ok(None);
    }
    let (Ok((b, hq, t, hs)), Ok((b2, hkv, s, hs2))) = (q.dims4(), k.dims4()) else {
        return Ok(None);
    };
    if b != b2 || hs != hs2 || v.dims() != k.dims() || hkv == 0 || hq % hkv != 0 {
        return Ok(None);
    }
    let mask = match mask_add {
        Some(m) => match Mask::read(m, b, t, s)? {
            Some(mask) => Some(mask),
            None => return Ok(None),
        },
        None => None,
    };
    let width = hq * hs;
    let group = hq / hkv;
    let scale = 1.0 / (hs as f32).sqrt();
    let mut out = vec![0f32; b * t * width];
    let mut scores = vec![0f32; t * s];
    let done = with_views([q, k, v], |[qv, kv, vv]| {
        for bi in 0..b {
            for h in 0..hq {
                let kh = h / group;
                // SAFETY: every view was checked to lie inside its storage (`in_bounds`);
                // rows are `strides[2]` apart with unit stride inside; `scores` holds t·s
                // values and `out` the context rows `width` apart.
                unsafe {
                    sgemm.call(
                        CBLAS_NO_TRANS,
                        CBLAS_TRANS,
                        (t, s, hs),
                        scale,
                        (qv.values.as_ptr().add(qv.offset(bi, h)), qv.strides[2]),
                        (kv.values.as_ptr().add(kv.offset(bi, kh)), kv.strides[2]),
                        0.0,
                        (scores.as_mut_ptr(), s),
                    );
                }
                for (i, row) in scores.chunks_exact_mut(s).enumerate() {
                    if let Some(m) = &mask {
                        row.iter_mut()
                            .zip(m.row(bi, i, t))
                            .for_each(|(x, &a)| *x += a);
                    }
                    softmax_row_in_place(row);
                }
                // SAFETY: as above; the context of head h goes to columns h·hs.. of its rows.
                unsafe {
                    sgemm.call(
                        CBLAS_NO_TRANS,
                        CBLAS_NO_TRANS,
                        (t, hs, s),
                        1.0,
                        (scores.as_ptr(), s),
                        (vv.values.as_ptr().add(vv.offset(bi, kh)), vv.strides[2]),
                        0.0,
                        (out.as_mut_ptr().add(bi * t * width + h * hs), width),
                    );
                }
            }
        }
    });
    if done.is_none() {
        return Ok(None);
    }
    Tensor::from_vec(out, (b * t, width), q.device()).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::attention::{attend_heads, causal_mask, padding_mask, split_heads};

    fn candle_attention(q: &Tensor, k: &Tensor, v: &Tensor, mask: Option<&Tensor>) -> Tensor {
        // A tracked copy sends attend_heads down candle's own ops.
        let track = |t: &Tensor| {
            candle_core::Var::from_tensor(&t.contiguous().unwrap())
                .unwrap()
                .as_tensor()
                .clone()
        };
        attend_heads(&track(q), &track(k), &track(v), mask, None).unwrap()
    }

    /// Padding mask over two sequences, heads read from `[B, T, H·hs]` as strided views.
    #[test]
    fn padded_strided_heads_equal_candles_attention() {
        let d = Device::Cpu;
        let (b, t, h, hs) = (2, 7, 3, 8);
        let x = |seed: f64| {
            Tensor::arange(0f32, (b * t * h * hs) as f32, &d)
                .unwrap()
                .affine(0.37, seed)
                .unwrap()
                .sin()
                .unwrap()
                .reshape((b, t, h * hs))
                .unwrap()
        };
        let (q, k, v) = (x(0.1), x(0.7), x(1.3));
        let mask = Tensor::from_vec(
            vec![1u32, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0],
            (b, t),
            &d,
        )
        .unwrap();
        let mask = padding_mask(&mask).unwrap();
        let view = |x: &Tensor| x.reshape((b, t, h, hs)).unwrap().transpose(1, 2).unwrap();
        let Some(ours) = attention(&view(&q), &view(&k), &view(&v), Some(&mask)).unwrap() else {
            assert!(
                crate::model::blas::library().is_none(),
                "library loaded but not used"
            );
            return;
        };
        let split = |x: &Tensor| split_heads(x, h, hs).unwrap();
        let theirs = candle_attention(&split(&q), &split(&k), &split(&v), Some(&mask));
        assert_eq!(ours.dims(), theirs.dims());
        let diff = crate::util::max_abs_diff(&ours, &theirs).unwrap();
        assert!(diff < 1e-5, "{diff}");
    }

    /// Causal mask after cached positions, grouped query heads (GQA).
    #[test]
    fn causal_grouped_heads_equal_candles_attention() {
        let d = Device::Cpu;
        let (b, hq, hkv, t, past, hs) = (1, 6, 2, 3, 4, 16);
        let s = past + t;
        let x = |heads: usize, len: usize, seed: f64| {
            Tensor::arange(0f32, (b * heads * len * hs) as f32, &d)
                .unwrap()
                .affine(0.11, seed)
                .unwrap()
                .cos()
                .unwrap()
                .reshape((b, heads, len, hs))
                .unwrap()
        };
        let (q, k, v) = (x(hq, t, 0.2), x(hkv, s, 0.5), x(hkv, s, 0.9));
        let mask = causal_mask(t, past, &d).unwrap();
        let Some(ours) = attention(&q, &k, &v, Some(&mask)).unwrap() else {
            assert!(
                crate::model::blas::library().is_none(),
                "library loaded but not used"
            );
            return;
        };
        let theirs = candle_attention(&q, &k, &v, Some(&mask));
        let diff = crate::util::max_abs_diff(&ours, &theirs).unwrap();
        assert!(diff < 1e-5, "{diff}");
        // A mask of another shape is left to candle.
        let odd = Tensor::zeros((1, 2, t, s), DType::F32, &d).unwrap();
        assert!(attention(&q, &k, &v, Some(&odd)).unwrap().is_none());
    }
}
