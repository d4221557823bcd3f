//! Decoder measurements: validation loss / perplexity / top-1 in batches, size and latency,
//! and `lm-palette.csv`.

use crate::mlfs::scaling::{decoder_params, decoder_params_total};
use crate::model::llama::generate;
use crate::model::llama::LlamaDecoder;
use crate::model::SubnetSpec;
use crate::train::config::{DecoderConfig, RunConfig};
use crate::train::decoder::metrics::evaluate_blocks;
use crate::train::decoder::DecoderTask;
use crate::train::protocol::{DecoderEntry, TrainEvent};
use crate::train::task::Task;
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

/// Size, validation metrics and batch-1 latency of one decoder subnet.
pub fn measure_entry(
    net: &LlamaDecoder,
    role: &str,
    spec: &SubnetSpec,
    adapters: bool,
    valid_blocks: &[Vec<u32>],
    config: &RunConfig,
    lm: &DecoderConfig,
) -> Result<DecoderEntry> {
    let shape = net.shape();
    let m = evaluate_blocks(net, spec, adapters, valid_blocks, config.batch_size)?;
    // A handful of runs: one decoder latency run costs a prefill plus dozens of cached steps.
    let runs = config.palette.latency_runs.clamp(3, 5);
    let lat = generate::measure(net, spec, lm.latency_prompt, lm.latency_new_tokens, runs)?;
    let non_embedding = decoder_params(spec, &shape);
    let total = decoder_params_total(spec, &shape, net.config.vocab_size, net.lm_head.is_none());
    Ok(DecoderEntry {
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

/// Measures the teacher and the reported subnets of a trained decoder (size, validation,
/// latency) into `run_dir/lm-palette.csv`, handing each entry on as it is known;
/// `on_entry` returning false stops early (the file then holds what was measured).
pub fn measure_palette(
    task: &DecoderTask,
    config: &RunConfig,
    run_dir: &Path,
    on_entry: &mut dyn FnMut(&DecoderEntry) -> bool,
) -> Result<PathBuf> {
    let mut subjects = vec![("teacher".to_string(), task.space.maxnet(), false)];
    subjects.extend(task.report_subnets().into_iter().map(|(r, s)| (r, s, true)));
    let mut entries = Vec::new();
    for (role, spec, adapters) in subjects {
        let net = if adapters {
            task.net.net()
        } else {
            &task.net.teacher.decoder
        };
        let valid = &task.valid_blocks;
        let e = measure_entry(net, &role, &spec, adapters, valid, config, &task.settings)?;
        let go_on = on_entry(&e);
        entries.push(e);
        if !go_on {
            break;
        }
    }
    let path = run_dir.join("lm-palette.csv");
    write_csv(&path, &entries)?;
    Ok(path)
}

/// Measures a decoder run's subnets, sending `DecoderMeasured` events; `keep_going` is asked after
/// each entry.
pub fn measure_with_events(
    task: &DecoderTask,
    config: &RunConfig,
    run_dir: &Path,
    send: &dyn Fn(TrainEvent),
    keep_going: &dyn Fn() -> bool,
) -> Result<Vec<DecoderEntry>> {
    let mut entries = Vec::new();
    let mut on_entry = |e: &DecoderEntry| {
        send(TrainEvent::DecoderMeasured(e.clone()));
        entries.push(e.clone());
        keep_going()
    };
    let path = measure_palette(task, config, run_dir, &mut on_entry)?;
    send(TrainEvent::log(
        "info",
        format!("decoder measurements written to {}", path.display()),
    ));
    Ok(entries)
}

/// Writes the measured entries as CSV (atomically).
pub fn write_csv(path: &Path, entries: &[DecoderEntry]) -> Result<()> {
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

/// Reads `lm-palette.csv` back (the subnet column is quoted: it holds commas).
pub fn read_csv(path: &Path) -> Result<Vec<DecoderEntry>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{}: cannot read", path.display()))?;
    let mut out = Vec::new();
    for (i, line) in text
        .lines()
        .enumerate()
        .skip(1)
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let bad = || anyhow::anyhow!("{}:{}: malformed row", path.display(), i + 1);
        let (role, rest) = line.split_once(",\"").ok_or_else(bad)?;
        let (subnet, rest) = rest.split_once("\",").ok_or_else(bad)?;
        let f: Vec<&str> = rest.split(',').collect();
        if f.len() != 12 {
            return Err(bad());
        }
        let n = |k: usize| f[k].parse::<usize>().map_err(|_| bad());
        let x = |k: usize| f[k].parse::<f64>().map_err(|_| bad());
        out.push(DecoderEntry {
            role: role.to_string(),
            subnet: subnet.to_string(),
            layers: n(0)?,
            heads: n(1)?,
            kv_heads: n(2)?,
            ffn: n(3)?,
            params_total: n(4)?,
            params_non_embedding: n(5)?,
            size_bytes: n(6)?,
            val_loss: x(7)?,
            perplexity: x(8)?,
            top1_accuracy: x(9)?,
            prefill_ms: x(10)?,
            decode_tokens_per_s: x(11)?,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_round_trips() {
        let entry = DecoderEntry {
            role: "student".into(),
            subnet: "layers=0,2,29;heads=6;ffn=1024".into(),
            layers: 3,
            heads: 6,
            kv_heads: 2,
            ffn: 1024,
            params_total: 1000,
            params_non_embedding: 400,
            size_bytes: 2000,
            val_loss: 3.4412,
            perplexity: 31.226,
            top1_accuracy: 0.4125,
            prefill_ms: 812.25,
            decode_tokens_per_s: 25.5,
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lm-palette.csv");
        write_csv(&path, std::slice::from_ref(&entry)).unwrap();
        assert_eq!(read_csv(&path).unwrap(), vec![entry]);
        std::fs::write(&path, "header\nstudent,broken\n").unwrap();
        assert!(format!("{:#}", read_csv(&path).unwrap_err()).contains("lm-palette.csv:2"));
    }
}
