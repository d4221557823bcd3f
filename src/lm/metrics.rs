//! Decoder measurements: validation loss / perplexity / top-1 in batches, size and latency,
//! and `lm-palette.csv`.

use super::loss::{head_loss, next_token_targets, HeadLossOptions};
use crate::eval::lm::LmMetrics;
use crate::mlfs::scaling::decoder_params;
use crate::model::llama::generate;
use crate::model::llama::LlamaDecoder;
use crate::model::SubnetSpec;
use crate::train::config::{LmConfig, RunConfig};
use crate::train::protocol::LmEntry;
use anyhow::{Context, Result};
use candle_core::{Device, Tensor};
use std::path::Path;

/// Next-token metrics of a subnet over equal-length blocks, `batch` blocks at a time.
/// `adapters: false` scores the teacher's own weights.
pub fn evaluate_blocks(
    net: &LlamaDecoder,
    spec: &SubnetSpec,
    adapters: bool,
    blocks: &[Vec<u32>],
    batch: usize,
) -> Result<LmMetrics> {
    let (mut ce, mut hits, mut count) = (0f64, 0usize, 0usize);
    for chunk in blocks.chunks(batch.max(1)) {
        let rows: Vec<&[u32]> = chunk.iter().map(|b| b.as_slice()).collect();
        let t = rows[0].len();
        let ids = Tensor::from_vec(rows.concat(), (rows.len(), t), &Device::Cpu)?;
        let (_, last) = net.forward_hidden(&ids, spec, adapters, None)?;
        let out = head_loss(
            &last.detach(),
            net.head(),
            &next_token_targets(&rows),
            None,
            HeadLossOptions {
                alpha: 0.0,
                temperature: 1.0,
                grad_hidden: false,
                grad_head: false,
            },
        )?;
        ce += out.ce_sum;
        hits += out.hits;
        count += out.count;
    }
    let loss = ce / count.max(1) as f64;
    Ok(LmMetrics {
        loss,
        perplexity: loss.exp(),
        top1_accuracy: hits as f64 / count.max(1) as f64,
        tokens: count,
    })
}

/// Size, validation metrics and batch-1 latency of one decoder subnet.
pub fn measure_entry(
    net: &LlamaDecoder,
    role: &str,
    spec: &SubnetSpec,
    adapters: bool,
    valid_blocks: &[Vec<u32>],
    config: &RunConfig,
    lm: &LmConfig,
) -> Result<LmEntry> {
    let shape = net.shape();
    let m = evaluate_blocks(net, spec, adapters, valid_blocks, config.batch_size)?;
    // A handful of runs: one decoder latency run costs a prefill plus dozens of cached steps.
    let runs = config.palette.latency_runs.clamp(3, 5);
    let lat = generate::measure(net, spec, lm.latency_prompt, lm.latency_new_tokens, runs)?;
    let non_embedding = decoder_params(spec, &shape);
    let d = shape.hidden;
    let head = net.lm_head.as_ref().map_or(0, |h| h.elem_count());
    let total = non_embedding + net.embed.elem_count() + head + d;
    Ok(LmEntry {
        role: role.to_string(),
        subnet: spec.to_string(),
        layers: spec.layers.len(),
        heads: spec.heads,
        kv_heads: spec.heads / shape.heads_per_kv,
        ffn: spec.ffn,
        params_total: total,
        params_non_embedding: non_embedding,
        size_bytes: total * 2,
        val_loss: m.loss,
        perplexity: m.perplexity,
        top1_accuracy: m.top1_accuracy,
        prefill_ms: lat.prefill_ms,
        decode_tokens_per_s: lat.decode_tokens_per_s,
    })
}

/// Writes the measured entries as CSV (atomically).
pub fn write_csv(path: &Path, entries: &[LmEntry]) -> Result<()> {
    let mut text = String::from(
        "role,subnet,layers,heads,kv_heads,ffn,params_total,params_non_embedding,size_bytes,\
val_loss,perplexity,top1_accuracy,prefill_ms,decode_tokens_per_s\n",
    );
    for e in entries {
        text.push_str(&format!(
            "{},\"{}\",{},{},{},{},{},{},{},{:.4},{:.3},{:.4},{:.2},{:.2}\n",
            e.role,
            e.subnet,
            e.layers,
            e.heads,
            e.kv_heads,
            e.ffn,
            e.params_total,
            e.params_non_embedding,
            e.size_bytes,
            e.val_loss,
            e.perplexity,
            e.top1_accuracy,
            e.prefill_ms,
            e.decode_tokens_per_s
        ));
    }
    crate::util::write_atomic(path, text.as_bytes())
        .with_context(|| format!("{}: cannot write", path.display()))
}
