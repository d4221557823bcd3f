//! Classifying texts with an exported subnet: what `predict` prints and Try it shows.

use crate::export::classifier::DenseClassifier;
use crate::model::packing::TokenLayout;
use crate::model::tokenizer::ids_tensor;
use anyhow::{Context, Result};

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
