//! Scaled dot-product attention over a subnet's kept heads, shared by encoder and decoder.

use super::ops::softmax_last_dim;
use candle_core::{Result, Tensor};

/// Attention of `q` `[B, T, hq·hs]` over `k`, `v` `[B, S, hkv·hs]` (GQA when hkv < hq).
///
/// `mask_add` is broadcast onto the scores `[B, hq, T, S]` (0 = keep, large negative = drop).
/// Returns the context `[B·T, hq·hs]`.
pub fn attend(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    q_heads: usize,
    kv_heads: usize,
    head_size: usize,
    mask_add: Option<&Tensor>,
) -> Result<Tensor> {
    let (b, t, _) = q.dims3()?;
    let s = k.dim(1)?;
    let q = q
        .reshape((b, t, q_heads, head_size))?
        .transpose(1, 2)?
        .contiguous()?;
    let k = repeat_kv(
        k.reshape((b, s, kv_heads, head_size))?.transpose(1, 2)?,
        q_heads / kv_heads,
    )?;
    let v = repeat_kv(
        v.reshape((b, s, kv_heads, head_size))?.transpose(1, 2)?,
        q_heads / kv_heads,
    )?;
    let scale = 1.0 / (head_size as f64).sqrt();
    let mut scores = (q.matmul(&k.t()?)? * scale)?;
    if let Some(mask) = mask_add {
        scores = scores.broadcast_add(mask)?;
    }
    let probs = softmax_last_dim(&scores)?;
    let ctx = probs.matmul(&v)?;
    ctx.transpose(1, 2)?.reshape((b * t, q_heads * head_size))
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
