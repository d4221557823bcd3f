//! Validation metrics of a decoder subnet: next-token loss, perplexity, top-1 accuracy.

use crate::mlfs::distill::DistillWeights;
use crate::mlfs::head_loss::{head_loss, next_token_targets, HeadLossOptions};
use crate::model::llama::LlamaDecoder;
use crate::model::SubnetSpec;
use anyhow::Result;
use candle_core::{Tensor, D};

/// Validation metrics over a set of token blocks.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct NextTokenMetrics {
    /// Mean next-token cross-entropy (nats).
    pub loss: f64,
    /// `exp(loss)`.
    pub perplexity: f64,
    /// Fraction of positions whose argmax is the next token.
    pub top1_accuracy: f64,
    /// Predictions scored.
    pub tokens: usize,
}

/// Negative log-likelihood of each next token of a sequence `[T]` (T − 1 values).
pub fn token_nll(
    decoder: &LlamaDecoder,
    spec: &SubnetSpec,
    ids: &[u32],
) -> Result<(Vec<f32>, Vec<bool>)> {
    let input = Tensor::new(ids, decoder.device())?.unsqueeze(0)?;
    let logits = decoder.forward(&input, spec)?.logits.squeeze(0)?;
    let t = ids.len();
    let logits = logits.narrow(0, 0, t - 1)?;
    let log_probs = candle_nn::ops::log_softmax(&logits, D::Minus1)?;
    let targets = Tensor::new(&ids[1..], decoder.device())?;
    let nll = log_probs
        .gather(&targets.unsqueeze(1)?, 1)?
        .squeeze(1)?
        .neg()?
        .to_vec1::<f32>()?;
    let argmax = logits.argmax(D::Minus1)?.to_vec1::<u32>()?;
    let hits = argmax.iter().zip(&ids[1..]).map(|(a, b)| a == b).collect();
    Ok((nll, hits))
}

/// Next-token metrics of a subnet over equal-length blocks, `batch` blocks at a time.
/// `adapters: false` scores the teacher's own weights.
pub fn evaluate_blocks(
    net: &LlamaDecoder,
    spec: &SubnetSpec,
    adapters: bool,
    blocks: &[Vec<u32>],
    batch: usize,
) -> Result<NextTokenMetrics> {
    let (mut ce, mut hits, mut count) = (0f64, 0usize, 0usize);
    for chunk in blocks.chunks(batch.max(1)) {
        let rows: Vec<&[u32]> = chunk.iter().map(|b| b.as_slice()).collect();
        let t = rows[0].len();
        let ids = Tensor::from_vec(rows.concat(), (rows.len(), t), net.device())?;
        let (_, last) = net.forward_hidden(&ids, spec, adapters, None)?;
        let out = head_loss(
            &last.detach(),
            net.head(),
            &next_token_targets(&rows),
            None,
            HeadLossOptions {
                weights: DistillWeights {
                    alpha: 0.0,
                    beta: 0.0,
                    temperature: 1.0,
                },
                grad_hidden: false,
                grad_head: false,
                compute: net.compute_dtype(),
            },
        )?;
        ce += out.ce_sum;
        hits += out.hits;
        count += out.count;
    }
    let loss = ce / count.max(1) as f64;
    Ok(NextTokenMetrics {
        loss,
        perplexity: loss.exp(),
        top1_accuracy: hits as f64 / count.max(1) as f64,
        tokens: count,
    })
}
