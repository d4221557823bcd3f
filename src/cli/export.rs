//! `mlfs-studio export` and `mlfs-studio predict`.

use crate::eval::palette::{measure_subnet, read_csv};
use crate::export::bert::ClassifierFormat;
use crate::export::classifier::DenseClassifier;
use crate::export::decoder_subnet::ExportFormat;
use crate::export::manifest::manifest;
use crate::export::{bert, decoder_subnet};
use crate::model::packing::TokenLayout;
use crate::model::subnet::resolve_spec;
use crate::model::tokenizer::ids_tensor;
use crate::model::SubnetSpec;
use crate::train::kind::is_decoder_run;
use crate::train::protocol::PaletteEntry;
use crate::train::run::Placement;
use crate::train::task::Task;
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
        for note in run.reader_notes() {
            crate::note!("warning: {note}");
        }
        let files = export_decoder(&run, subnet, format, out)?;
        crate::say!("exported to {}:", out.display());
        list_files(&files);
        return Ok(());
    }
    let format = ClassifierFormat::parse(format)?;
    let subnet = subnet.context("--subnet is required for a classifier run")?;
    let run = ClassifierRun::open_trained_on(run_dir, placement)?;
    for note in run.reader_notes() {
        crate::note!("warning: {note}");
    }
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

/// Exports `spec` of a trained classifier run as a BERT folder or ONNX model, with its palette
/// metrics.
pub fn export_classifier(
    run: &ClassifierRun,
    spec: &SubnetSpec,
    metrics: Option<&PaletteEntry>,
    format: ClassifierFormat,
    out: &Path,
) -> Result<Vec<PathBuf>> {
    let t = &run.task;
    let mut extra = serde_json::Map::new();
    extra.insert("metrics".into(), serde_json::to_value(metrics)?);
    let manifest = manifest(&run.config, spec, t.orders().is_some(), extra);
    let labels = t.data.labels.display_names();
    bert::export_subnet(&t.net, &t.tokenizer, labels, spec, manifest, format, out)
}

/// Exports `subnet` (default: the run's first reported student) of a trained decoder run.
pub fn export_decoder(
    run: &DecoderRun,
    subnet: Option<&str>,
    format: ExportFormat,
    out: &Path,
) -> Result<Vec<PathBuf>> {
    let t = &run.task;
    let spec = t.subnet_or_student(subnet)?;
    // The run's own measurements, never through a link or from a pipe planted there.
    let csv_path = run.run_dir.join("lm-palette.csv");
    let measured = csv_path
        .symlink_metadata()
        .is_ok_and(|m| m.is_file())
        .then(|| crate::files::read_text(&csv_path, "palette").ok())
        .flatten();
    let mut extra = serde_json::Map::new();
    extra.insert("lm".into(), serde_json::to_value(&run.config.lm)?);
    extra.insert("measurements_csv".into(), measured.into());
    let manifest = manifest(&run.config, &spec, false, extra);
    decoder_subnet::export_subnet(&t.net, &spec, manifest, format, out)
}

/// One prediction: the label and every class probability.
#[derive(serde::Serialize)]
pub struct Prediction {
    pub text: String,
    pub label: String,
    pub probabilities: serde_json::Map<String, serde_json::Value>,
    /// The raw class scores, in label order (what ONNX exports are compared on).
    pub logits: Vec<f32>,
}

/// Predictions of an exported (or any mean-pooled BERT classifier) folder for each text.
pub fn predict_texts(model: &DenseClassifier, texts: &[String]) -> Result<Vec<Prediction>> {
    let tokenizer = model
        .tokenizer
        .as_ref()
        .context("the model folder has no tokenizer")?;
    let mut out = Vec::with_capacity(texts.len());
    for chunk in texts.chunks(64) {
        let batch = tokenizer.encode_batch(chunk, model.config.max_position_embeddings)?;
        let ids = ids_tensor(&batch, model.device())?;
        let logits = model.logits_of(&ids, &TokenLayout::of_batch(&batch, model.device())?)?;
        let probs = candle_nn::ops::softmax_last_dim(&logits)?.to_vec2::<f32>()?;
        crate::util::ensure_finite(probs.iter().flatten(), "the classifier's output")?;
        let logits = logits.to_vec2::<f32>()?;
        for ((text, p), logits) in chunk.iter().zip(probs).zip(logits) {
            let best = p
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .map_or(0, |(i, _)| i);
            let probabilities = model
                .labels
                .iter()
                .zip(&p)
                .map(|(l, v)| (l.clone(), serde_json::json!(v)))
                .collect();
            out.push(Prediction {
                text: text.clone(),
                label: model.labels[best].clone(),
                probabilities,
                logits,
            });
        }
    }
    Ok(out)
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
