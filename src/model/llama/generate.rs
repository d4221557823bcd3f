//! Greedy decoding with a KV cache, and the decoder's latency figures (prefill, tokens/s).

use super::decoder::{KvCache, LlamaDecoder};
use crate::model::SubnetSpec;
use anyhow::{bail, Result};
use candle_core::{Tensor, D};
use std::time::Instant;

/// Greedy continuation of `prompt` (at least one token): up to `max_new` tokens, ending early
/// at `eos`. Each new token costs one cached step, not a pass over the whole sequence.
pub fn greedy(
    decoder: &LlamaDecoder,
    spec: &SubnetSpec,
    prompt: &[u32],
    max_new: usize,
    eos: Option<u32>,
) -> Result<Vec<u32>> {
    if prompt.is_empty() {
        bail!("the prompt has no tokens");
    }
    let mut cache = KvCache::default();
    let mut out = Vec::with_capacity(max_new);
    let mut next = step(decoder, spec, prompt, &mut cache)?;
    while out.len() < max_new {
        out.push(next);
        if Some(next) == eos || out.len() == max_new {
            break;
        }
        next = step(decoder, spec, &[next], &mut cache)?;
    }
    Ok(out)
}

/// Feeds `ids` after the cached positions and returns the argmax of the last position.
fn step(
    decoder: &LlamaDecoder,
    spec: &SubnetSpec,
    ids: &[u32],
    cache: &mut KvCache,
) -> Result<u32> {
    let input = Tensor::new(ids, decoder.device())?.unsqueeze(0)?;
    let (_, last) = decoder.forward_hidden(&input, spec, true, Some(cache))?;
    let final_row = last.narrow(0, ids.len() - 1, 1)?;
    let logits = decoder.logits(&final_row)?;
    Ok(logits.argmax(D::Minus1)?.flatten_all()?.to_vec1::<u32>()?[0])
}

/// Decoder latency at batch 1: prefill of a prompt and cached decoding.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DecodeLatency {
    /// Median milliseconds to run the prompt and produce the first token.
    pub prefill_ms: f64,
    /// 90th percentile (nearest rank) of the same.
    pub prefill_ms_p90: f64,
    /// Median generated tokens per second after the prefill (cached steps).
    pub decode_tokens_per_s: f64,
}

/// Measures `runs` prefills of `prompt_len` tokens followed by `new_tokens` cached steps
/// (one warm-up run first); medians over the runs.
pub fn measure(
    decoder: &LlamaDecoder,
    spec: &SubnetSpec,
    prompt_len: usize,
    new_tokens: usize,
    runs: usize,
) -> Result<DecodeLatency> {
    let vocab = decoder.config.vocab_size as u32;
    let prompt: Vec<u32> = (0..prompt_len.max(1) as u32)
        .map(|i| (i * 7919 + 13) % vocab)
        .collect();
    let mut prefill = Vec::new();
    let mut per_token = Vec::new();
    for run in 0..=runs.max(1) {
        let mut cache = KvCache::default();
        let started = Instant::now();
        let mut next = step(decoder, spec, &prompt, &mut cache)?;
        let prefill_s = started.elapsed().as_secs_f64();
        let started = Instant::now();
        for _ in 0..new_tokens {
            next = step(decoder, spec, &[next], &mut cache)?;
        }
        let decode_s = started.elapsed().as_secs_f64();
        if run > 0 {
            prefill.push(prefill_s * 1e3);
            per_token.push(decode_s / new_tokens.max(1) as f64);
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    let prefill_ms = median(&mut prefill);
    Ok(DecodeLatency {
        prefill_ms,
        prefill_ms_p90: crate::util::percentile(&prefill, 0.9),
        decode_tokens_per_s: 1.0 / median(&mut per_token).max(1e-9),
    })
}
