//! `mlfs-studio export` and `mlfs-studio predict`.

use crate::eval::palette::{measure_subnet, read_csv};
use crate::export::bert::ClassifierFormat;
use crate::export::classifier::DenseClassifier;
use crate::export::decoder_subnet::ExportFormat;
use crate::model::subnet::resolve_spec;
use crate::runs::export::{export_classifier, export_decoder};
use crate::runs::predict::predict_texts;
use crate::train::kind::is_decoder_run;
use crate::train::run::Placement;
use crate::train::{ClassifierRun, DecoderRun};
use crate::util::read_texts;
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

/// Exports one subnet of a trained run as a standalone folder and lists the files.
pub fn export(
    run_dir: &Path,
    subnet: Option<&str>,
    out: &Path,
    format: &str,
    placement: Placement,
) -> Result<()> {
    if is_decoder_run(run_dir) {
        let format = ExportFormat::parse(format)?;
        let run = DecoderRun::open_trained_on(run_dir, placement)?;
        crate::cli::print_warnings(&run.reader_notes());
        let files = export_decoder(&run, subnet, format, out)?;
        crate::say!("exported to {}:", out.display());
        list_files(&files);
        return Ok(());
    }
    let format = ClassifierFormat::parse(format)?;
    let subnet = subnet.context("--subnet is required for a classifier run")?;
    let run = ClassifierRun::open_trained_on(run_dir, placement)?;
    crate::cli::print_warnings(&run.reader_notes());
    let spec = resolve_spec(Some(subnet), &run.task.space.teacher)?;
    crate::export::folder::check_target(out)?;
    // Metrics from the palette when it has this subnet, measured now otherwise.
    let known = read_csv(&run_dir.join("palette.csv"))
        .ok()
        .and_then(|rows| rows.into_iter().find(|r| r.subnet == spec.to_string()));
    let metrics = match known {
        Some(m) => m,
        None => measure_subnet(&run.task, &run.config.palette, &spec)?,
    };
    let files = export_classifier(&run, &spec, Some(&metrics), format, out)?;
    crate::say!(
        "exported {spec} (dev accuracy {:.4}, test accuracy {:.4}) to {}:",
        metrics.dev_accuracy,
        metrics.test_accuracy,
        out.display()
    );
    list_files(&files);
    Ok(())
}

fn list_files(files: &[PathBuf]) {
    for f in files {
        let bytes = std::fs::metadata(f).map(|m| m.len()).unwrap_or(0);
        crate::say!("  {} ({} bytes)", f.display(), bytes);
    }
}

/// Prints one JSON line per text of the file.
pub fn predict(model_dir: &Path, texts_file: &Path, device: &candle_core::Device) -> Result<()> {
    let model = DenseClassifier::load_on(model_dir, device)?;
    let texts = read_texts(texts_file)?;
    for p in predict_texts(&model, &texts)? {
        crate::say!("{}", serde_json::to_string(&p)?);
    }
    Ok(())
}

/// Prints the batch-1 latency of an exported classifier folder as one JSON line.
pub fn latency(
    model_dir: &Path,
    seq_len: usize,
    runs: usize,
    device: &candle_core::Device,
) -> Result<()> {
    if seq_len == 0 || runs == 0 {
        anyhow::bail!("--seq-len and --runs must be at least 1");
    }
    if runs > crate::train::config::MAX_LATENCY_RUNS {
        anyhow::bail!(
            "--runs {runs}: at most {} timed runs",
            crate::train::config::MAX_LATENCY_RUNS
        );
    }
    let model = DenseClassifier::load_on(model_dir, device)?;
    if seq_len > model.config.max_position_embeddings {
        anyhow::bail!(
            "--seq-len {seq_len}: the model takes at most {} tokens",
            model.config.max_position_embeddings
        );
    }
    let l = crate::eval::palette::dense_latency(&model, seq_len, runs)?;
    let line = serde_json::json!({
        "model": model_dir.display().to_string(),
        "seq_len": seq_len,
        "runs": runs,
        "median_ms": l.median_ms,
        "p90_ms": l.p90_ms,
        "threads": rayon::current_num_threads(),
        "processor": crate::eval::machine::processor(),
        "blas": crate::model::blas::describe(),
    });
    crate::say!("{line}");
    Ok(())
}
