//! Scaled dot-product attention over a subnet's kept heads, shared by encoder and decoder.

use super::ops::softmax_last_dim;
use candle_core::{Result, Tensor};

/// `[B, T, H·hs]` → `[B, H, T, hs]` (contiguous).
pub fn split_heads(x: &Tensor, heads: usize, head_size: usize) -> Result<Tensor> {
    let (b, t, _) = x.dims3()?;
    x.reshape((b, t, heads, head_size))?
        .transpose(1, 2)?
        .contiguous()
}

/// Attention of `q` `[B, Hq, T, hs]` over `k`, `v` `[B, Hkv, S, hs]` (GQA when Hkv < Hq).
///
/// `mask_add` is broadcast onto the scores `[B, Hq, T, S]` (0 = keep, large negative = drop).
/// `causal_past: Some(p)` says the mask is the causal one of queries at `p..p + T`, which a GPU
/// applies inside its fused softmax instead. Returns the context `[B·T, Hq·hs]`.
pub fn attend_heads(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    mask_add: Option<&Tensor>,
    causal_past: Option<usize>,
) -> Result<Tensor> {
    if let Some(ctx) = super::blas_attention::attention(q, k, v, mask_add)? {
        return Ok(ctx);
    }
    // candle's ops below take the heads as plain matrices (a no-op for contiguous ones).
    let q = q.contiguous()?;
    let (b, hq, t, hs) = q.dims4()?;
    let hkv = k.dim(1)?;
    let k = repeat_kv(k.clone(), hq / hkv)?;
    let v = repeat_kv(v.clone(), hq / hkv)?;
    let scale = 1.0 / (hs as f64).sqrt();
    let raw = q.matmul(&k.t()?)?;
    #[cfg(feature = "cuda")]
    if let (Some(past), true) = (causal_past, super::causal_softmax_cuda::takes(&raw)) {
        let probs = super::causal_softmax_cuda::causal_softmax(&raw, scale, past)?;
        let ctx = probs.matmul(&v)?;
        return ctx.transpose(1, 2)?.reshape((b * t, hq * hs));
    }
    let _ = causal_past;
    let mut scores = (raw * scale)?;
    if let Some(mask) = mask_add {
        scores = scores.broadcast_add(mask)?;
    }
    let probs = softmax_last_dim(&scores)?;
    let ctx = probs.matmul(&v)?;
    ctx.transpose(1, 2)?.reshape((b * t, hq * hs))
}

/// Attention of `q` `[B, T, hq·hs]` over `k`, `v` `[B, S, hkv·hs]`; returns `[B·T, hq·hs]`.
pub fn attend(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    q_heads: usize,
    kv_heads: usize,
    head_size: usize,
    mask_add: Option<&Tensor>,
) -> Result<Tensor> {
    // Heads as strided views: the CPU inference path reads them in place; candle's path makes
    // them contiguous.
    let heads = |x: &Tensor, n: usize| -> Result<Tensor> {
        let (b, t, _) = x.dims3()?;
        x.reshape((b, t, n, head_size))?.transpose(1, 2)
    };
    attend_heads(
        &heads(q, q_heads)?,
        &heads(k, kv_heads)?,
        &heads(v, kv_heads)?,
        mask_add,
        None,
    )
}

/// Repeats each key/value head `n_rep` times along the head axis (GQA), `[B, H, S, hs]`.
fn repeat_kv(x: Tensor, n_rep: usize) -> Result<Tensor> {
    if n_rep == 1 {
        return x.contiguous();
    }
    let (b, h, s, hs) = x.dims4()?;
    x.unsqueeze(2)?
        .expand((b, h, n_rep, s, hs))?
        .contiguous()?
        .reshape((b, h * n_rep, s, hs))
}

/// Additive padding mask `[B, 1, 1, S]` from a 0/1 attention mask `[B, S]`.
pub fn padding_mask(attention_mask: &Tensor) -> Result<Tensor> {
    let (b, s) = attention_mask.dims2()?;
    let keep = attention_mask.to_dtype(candle_core::DType::F32)?;
    ((keep - 1.0)? * 1e9)?.reshape((b, 1, 1, s))
}

/// Additive causal mask `[1, 1, T, S]` for `T` new positions after `past` cached ones (S = past + T).
pub fn causal_mask(t: usize, past: usize, device: &candle_core::Device) -> Result<Tensor> {
    let s = past + t;
    let values: Vec<f32> = (0..t)
        .flat_map(|i| (0..s).map(move |j| if j > past + i { -1e9 } else { 0.0 }))
        .collect();
    Tensor::from_vec(values, (1, 1, t, s), device)
}
