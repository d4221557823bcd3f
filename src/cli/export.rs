//! `mlfs-studio export` and `mlfs-studio predict`.

use crate::cli::forward::{batch_tensors, resolve_spec};
use crate::eval::palette::{measure_subnet, read_csv};
use crate::export::classifier::DenseClassifier;
use crate::export::export_subnet;
use crate::train::trainer::Trainer;
use crate::util::read_texts;
use anyhow::{Context, Result};
use std::path::Path;

/// Exports one subnet of a trained run as a standalone folder and lists the files.
pub fn export(run_dir: &Path, subnet: Option<&str>, out: &Path, format: &str) -> Result<()> {
    if crate::train::any::is_lm_run(run_dir) {
        let format = crate::export::lm::ExportFormat::parse(format)?;
        let trainer = crate::lm::LmTrainer::open_trained(run_dir)?;
        let files = crate::export::lm::export_run_subnet(&trainer, subnet, format, out)?;
        println!("exported to {}:", out.display());
        for f in files {
            let bytes = std::fs::metadata(&f).map(|m| m.len()).unwrap_or(0);
            println!("  {} ({} bytes)", f.display(), bytes);
        }
        return Ok(());
    }
    let subnet = subnet.context("--subnet is required for a classifier run")?;
    let trainer = Trainer::open_trained(run_dir)?;
    let spec = resolve_spec(Some(subnet), &trainer.space.teacher)?;
    crate::export::folder::check_target(out)?;
    // Metrics from the palette when it has this subnet, measured now otherwise.
    let known = read_csv(&run_dir.join("palette.csv"))
        .ok()
        .and_then(|rows| rows.into_iter().find(|r| r.subnet == spec.to_string()));
    let metrics = match known {
        Some(m) => m,
        None => measure_subnet(&trainer, &spec)?,
    };
    let files = export_subnet(&trainer, &spec, out, Some(&metrics))?;
    println!(
        "exported {spec} (dev accuracy {:.4}, test accuracy {:.4}) to {}:",
        metrics.dev_accuracy,
        metrics.test_accuracy,
        out.display()
    );
    for f in files {
        let bytes = std::fs::metadata(&f).map(|m| m.len()).unwrap_or(0);
        println!("  {} ({} bytes)", f.display(), bytes);
    }
    Ok(())
}

/// One prediction: the label and every class probability.
#[derive(serde::Serialize)]
pub struct Prediction {
    pub text: String,
    pub label: String,
    pub probabilities: serde_json::Map<String, serde_json::Value>,
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
        let (ids, mask) = batch_tensors(&batch)?;
        let probs =
            candle_nn::ops::softmax_last_dim(&model.logits(&ids, &mask)?)?.to_vec2::<f32>()?;
        for (text, p) in chunk.iter().zip(probs) {
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
            });
        }
    }
    Ok(out)
}

/// Prints one JSON line per text of the file.
pub fn predict(model_dir: &Path, texts_file: &Path) -> Result<()> {
    let model = DenseClassifier::load(model_dir)?;
    let texts = read_texts(texts_file)?;
    for p in predict_texts(&model, &texts)? {
        println!("{}", serde_json::to_string(&p)?);
    }
    Ok(())
}
