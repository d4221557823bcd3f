//! Decoder measurements: validation loss / perplexity / top-1 in batches, size and latency,
//! and `lm-palette.csv`.

use super::rows::{self, PaletteRow};
use crate::model::llama::generate;
use crate::model::params::{decoder_params, decoder_params_total};
use crate::model::SubnetSpec;
use crate::train::config::{listed_subnets, RunConfig};
use crate::train::decoder::metrics::evaluate_blocks;
use crate::train::decoder::DecoderTask;
use crate::train::protocol::{DecoderEntry, TrainEvent};
use crate::train::task::Task;
use crate::util::round_to;
use anyhow::Result;
use std::path::{Path, PathBuf};

/// Size, validation metrics (trained, and cut from the teacher untrained) and batch-1 latency
/// of one decoder subnet; `adapters` false measures the teacher's own weights.
pub fn measure_entry(
    task: &DecoderTask,
    role: &str,
    spec: &SubnetSpec,
    adapters: bool,
    config: &RunConfig,
) -> Result<DecoderEntry> {
    let teacher = &task.net.teacher.decoder;
    let net = if adapters { task.net.net() } else { teacher };
    let (valid, lm) = (&task.valid_blocks, &task.settings);
    let shape = net.shape();
    let m = evaluate_blocks(net, spec, adapters, valid, config.batch_size)?;
    let untrained = if adapters {
        evaluate_blocks(teacher, spec, false, valid, config.batch_size)?.loss
    } else {
        m.loss
    };
    // A handful of runs: one decoder latency run costs a prefill plus dozens of cached steps.
    let runs = config.palette.latency_runs.clamp(3, 5);
    let lat = generate::measure(net, spec, lm.latency_prompt, lm.latency_new_tokens, runs)?;
    let non_embedding = decoder_params(spec, &shape);
    let total = decoder_params_total(spec, &shape, net.config.vocab_size, net.lm_head.is_none());
    Ok(DecoderEntry {
        role: role.to_string(),
        subnet: spec.to_string(),
        layers: spec.layers.len(),
        // The widest layer's; a per-layer subnet's every width is in its spec (`subnet`).
        heads: spec.heads.max(),
        kv_heads: spec.heads.max() / shape.heads_per_kv,
        ffn: spec.ffn.max(),
        params_total: total,
        params_non_embedding: non_embedding,
        size_bytes: total * 2,
        val_loss: m.loss,
        perplexity: m.perplexity,
        top1_accuracy: m.top1_accuracy,
        prefill_ms: round_to(lat.prefill_ms, 3),
        decode_tokens_per_s: round_to(lat.decode_tokens_per_s, 3),
        prefill_ms_p90: round_to(lat.prefill_ms_p90, 3),
        val_loss_untrained: untrained,
    })
}

/// What a decoder run's palette holds, as (role, subnet): the teacher (without adapters),
/// every subnet of a sampled space (roles `maxnet`, `minnet`, `subnet`) or else the run's
/// students, then the run's `palette.subnets` not among them (role `listed`).
pub fn palette_subjects(
    task: &DecoderTask,
    config: &RunConfig,
) -> Result<Vec<(String, SubnetSpec)>> {
    let mut out = vec![("teacher".to_string(), task.space.maxnet())];
    if task.fixed_students.is_empty() {
        let (maxnet, minnet) = (task.space.maxnet(), task.space.minnet(2));
        let mut all = task.space.all();
        if !all.contains(&maxnet) {
            all.push(maxnet.clone());
        }
        for spec in all {
            let role = if spec == maxnet {
                "maxnet"
            } else if spec == minnet {
                "minnet"
            } else {
                "subnet"
            };
            out.push((role.to_string(), spec));
        }
    } else {
        out.extend(task.report_subnets());
    }
    for spec in listed_subnets(config, &task.space.teacher)? {
        if !out.iter().any(|(role, s)| role != "teacher" && *s == spec) {
            out.push(("listed".to_string(), spec));
        }
    }
    Ok(out)
}

/// The subjects a measurement takes: the palette's (`palette_subjects`), or only the subnets
/// of `only` (role `listed` for those outside the palette).
fn subjects_of(
    task: &DecoderTask,
    config: &RunConfig,
    only: Option<&[SubnetSpec]>,
) -> Result<Vec<(String, SubnetSpec)>> {
    let mut subjects = palette_subjects(task, config)?;
    if let Some(list) = only {
        subjects.retain(|(_, s)| list.contains(s));
        for spec in list {
            if !subjects.iter().any(|(_, s)| s == spec) {
                subjects.push(("listed".to_string(), spec.clone()));
            }
        }
    }
    Ok(subjects)
}

/// Measures a decoder run's palette into `run_dir/lm-palette.csv`, handing each entry on as it is
/// known; `on_entry` returning false stops. `only` re-measures those subnets; without it the
/// subjects already in the file are kept, not measured again (a stopped measurement resumes).
/// The file is rewritten atomically after every entry, merged with the rows it had: it is never
/// replaced by a partial palette.
pub fn measure_palette(
    task: &DecoderTask,
    config: &RunConfig,
    run_dir: &Path,
    only: Option<&[SubnetSpec]>,
    on_entry: &mut dyn FnMut(&DecoderEntry, bool) -> bool,
) -> Result<PathBuf> {
    let path = run_dir.join("lm-palette.csv");
    let subjects = subjects_of(task, config, only)?;
    // The teacher's row is the frozen model itself; every other subject runs with the adapters.
    let mut measure =
        |role: &str, spec: &SubnetSpec| measure_entry(task, role, spec, role != "teacher", config);
    rows::measure_into(&path, &subjects, only.is_none(), &mut measure, on_entry)?;
    Ok(path)
}

/// Measures a decoder run's palette with the events of [`rows::with_events`]
/// (`DecoderMeasured` for each row, kept ones too).
pub fn measure_with_events(
    task: &DecoderTask,
    config: &RunConfig,
    run_dir: &Path,
    only: Option<&[SubnetSpec]>,
    send: &dyn Fn(TrainEvent),
    keep_going: &dyn Fn() -> bool,
) -> Result<Vec<DecoderEntry>> {
    let count = subjects_of(task, config, only)?.len();
    rows::with_events(
        count,
        send,
        keep_going,
        TrainEvent::DecoderMeasured,
        |on_row| measure_palette(task, config, run_dir, only, on_row),
    )
}

impl PaletteRow for DecoderEntry {
    /// The teacher and the maxnet share a spec: the role tells their rows apart.
    fn key_of(role: &str, subnet: &str) -> String {
        format!("{role} {subnet}")
    }
    fn set_latency(&mut self, latency: crate::eval::latency::Latency) {
        self.prefill_ms = round_to(latency.median_ms, 3);
        self.prefill_ms_p90 = round_to(latency.p90_ms, 3);
    }
}

/// Front membership of decoder rows on validation loss (lower is better): (parameters front,
/// prefill-latency front). The teacher row is a reference, never on a front.
pub fn decoder_fronts(entries: &[DecoderEntry]) -> (Vec<bool>, Vec<bool>) {
    rows::fronts(entries)
}

/// Writes the measured entries as CSV (atomically).
pub fn write_csv(path: &Path, entries: &[DecoderEntry]) -> Result<()> {
    rows::write(path, entries)
}

/// Reads `lm-palette.csv` back, also after a spreadsheet or Python's `csv` module re-saved it.
pub fn read_csv(path: &Path) -> Result<Vec<DecoderEntry>> {
    rows::read(path)
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
            prefill_ms_p90: 840.5,
            val_loss_untrained: 7.5,
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lm-palette.csv");
        write_csv(&path, std::slice::from_ref(&entry)).unwrap();
        assert_eq!(read_csv(&path).unwrap(), vec![entry.clone()]);
        // As Python's csv module re-saves it: quotes only where a field needs them.
        let resaved = std::fs::read_to_string(&path).unwrap().replace('"', "");
        let resaved = resaved.replacen(&entry.subnet, &format!("\"{}\"", entry.subnet), 1);
        std::fs::write(&path, resaved).unwrap();
        assert_eq!(read_csv(&path).unwrap(), vec![entry]);
        std::fs::write(&path, "role,subnet,layers\nstudent,x,broken\n").unwrap();
        let err = format!("{:#}", read_csv(&path).unwrap_err());
        assert!(err.contains("lm-palette.csv:2: column 'layers'"), "{err}");
    }
}
