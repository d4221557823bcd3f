//! Accuracy of a subnet on a data split.

use crate::mlfs::classifier::ClassifierSupernet;
use crate::model::packing::TokenLayout;
use crate::model::tokenizer::ids_tensor;
use crate::model::SubnetSpec;
use crate::train::data::Split;
use anyhow::Result;

/// Examples per evaluation batch.
pub const EVAL_BATCH: usize = 64;

/// Predicted class ids of every example of `split` under subnet `spec`.
pub fn predict_split(
    net: &ClassifierSupernet,
    split: &Split,
    spec: &SubnetSpec,
    pad_id: u32,
) -> Result<Vec<u32>> {
    let mut preds = Vec::with_capacity(split.len());
    // Sorting by length keeps padding small; predictions are put back in the original order.
    let mut order: Vec<usize> = (0..split.len()).collect();
    order.sort_by_key(|&i| split.ids[i].len());
    let mut by_index = vec![0u32; split.len()];
    for chunk in order.chunks(EVAL_BATCH) {
        let (batch, _) = split.batch(chunk, pad_id);
        let device = net.encoder.device();
        let ids = ids_tensor(&batch, device)?;
        let layout = TokenLayout::of_batch(&batch, device)?;
        let logits = net.forward(&ids, &layout, spec, None)?.logits.detach();
        let p = logits.argmax(candle_core::D::Minus1)?.to_vec1::<u32>()?;
        for (&i, &c) in chunk.iter().zip(&p) {
            by_index[i] = c;
        }
    }
    preds.extend(by_index);
    Ok(preds)
}

/// Fraction of correct predictions of subnet `spec` on `split`.
pub fn split_accuracy(
    net: &ClassifierSupernet,
    split: &Split,
    spec: &SubnetSpec,
    pad_id: u32,
) -> Result<f64> {
    let preds = predict_split(net, split, spec, pad_id)?;
    let correct = preds
        .iter()
        .zip(&split.labels)
        .filter(|(p, l)| p == l)
        .count();
    Ok(correct as f64 / split.len().max(1) as f64)
}
