//! Language-model metrics of a decoder subnet: next-token loss, perplexity, top-1 accuracy.

use crate::model::llama::LlamaDecoder;
use crate::model::{SubnetSpec, TextTokenizer};
use anyhow::{bail, Context, Result};
use candle_core::{Device, Tensor, D};
use std::path::Path;

/// Validation metrics over a set of token blocks.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct LmMetrics {
    /// Mean next-token cross-entropy (nats).
    pub loss: f64,
    /// `exp(loss)`.
    pub perplexity: f64,
    /// Fraction of positions whose argmax is the next token.
    pub top1_accuracy: f64,
    /// Predictions scored.
    pub tokens: usize,
}

/// Texts of a JSONL file (`text` field) or of every text file below a folder.
pub fn read_corpus(path: &Path) -> Result<Vec<String>> {
    let mut texts = Vec::new();
    if path.is_dir() {
        let mut files: Vec<_> = std::fs::read_dir(path)
            .with_context(|| format!("{}: cannot read folder", path.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file())
            .collect();
        files.sort();
        for f in files {
            if f.extension().is_some_and(|e| e == "jsonl") {
                texts.extend(crate::util::read_texts(&f)?);
            } else if let Ok(text) = std::fs::read_to_string(&f) {
                if !text.trim().is_empty() {
                    texts.push(text);
                }
            }
        }
    } else {
        texts = crate::util::read_texts(path)?;
    }
    if texts.is_empty() {
        bail!("{}: no text found", path.display());
    }
    Ok(texts)
}

/// Consecutive blocks of `block` tokens: documents tokenised without special tokens, joined by
/// `separator` (the end-of-text token), cut into full blocks (the tail is dropped).
pub fn token_blocks(
    texts: &[String],
    tokenizer: &TextTokenizer,
    block: usize,
    separator: Option<u32>,
) -> Result<Vec<Vec<u32>>> {
    let mut stream = Vec::new();
    for t in texts {
        stream.extend(tokenizer.encode(t, false, usize::MAX)?);
        stream.extend(separator);
    }
    let blocks: Vec<Vec<u32>> = stream.chunks_exact(block).map(|c| c.to_vec()).collect();
    if blocks.is_empty() {
        bail!("the corpus holds fewer than {block} tokens");
    }
    Ok(blocks)
}

/// Negative log-likelihood of each next token of a sequence `[T]` (T − 1 values).
pub fn token_nll(
    decoder: &LlamaDecoder,
    spec: &SubnetSpec,
    ids: &[u32],
) -> Result<(Vec<f32>, Vec<bool>)> {
    let input = Tensor::new(ids, &Device::Cpu)?.unsqueeze(0)?;
    let logits = decoder.forward(&input, spec)?.logits.squeeze(0)?;
    let t = ids.len();
    let logits = logits.narrow(0, 0, t - 1)?;
    let log_probs = candle_nn::ops::log_softmax(&logits, D::Minus1)?;
    let targets = Tensor::new(&ids[1..], &Device::Cpu)?;
    let nll = log_probs
        .gather(&targets.unsqueeze(1)?, 1)?
        .squeeze(1)?
        .neg()?
        .to_vec1::<f32>()?;
    let argmax = logits.argmax(D::Minus1)?.to_vec1::<u32>()?;
    let hits = argmax.iter().zip(&ids[1..]).map(|(a, b)| a == b).collect();
    Ok((nll, hits))
}

/// Loss, perplexity and top-1 accuracy of a subnet over blocks (8 blocks per forward).
pub fn lm_metrics(
    decoder: &LlamaDecoder,
    spec: &SubnetSpec,
    blocks: &[Vec<u32>],
) -> Result<LmMetrics> {
    crate::lm::metrics::evaluate_blocks(decoder, spec, true, blocks, 8)
}
