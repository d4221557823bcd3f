//! Rewiring (DynaBERT): reorder heads and FFN neurons by importance so front slicing keeps the best.

use super::classifier::ClassifierSupernet;
use crate::model::encoder::LayerGates;
use anyhow::{Context, Result};
use candle_core::{DType, Tensor, Var};
use serde::{Deserialize, Serialize};

/// A layer's new order: `heads[new] = old head`, `ffn[new] = old neuron`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerOrder {
    pub heads: Vec<usize>,
    pub ffn: Vec<usize>,
}

/// Indices sorted by descending score; ties keep their original order.
pub fn order_by_score(scores: &[f32]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    idx
}

/// One labelled batch: ids `[B, T]`, mask `[B, T]`, labels `[B]`.
pub type LabelledBatch = (Tensor, Tensor, Tensor);

/// |∂L/∂gate| summed over batches: the importance of each head and FFN neuron of every layer.
pub fn importance(
    net: &ClassifierSupernet,
    batches: &[LabelledBatch],
) -> Result<Vec<(Vec<f32>, Vec<f32>)>> {
    let shape = net.encoder.shape();
    let device = net.encoder.device();
    let maxnet = crate::model::SubnetSpec::maxnet(&shape);
    let mut totals: Vec<(Vec<f32>, Vec<f32>)> = (0..shape.layers)
        .map(|_| (vec![0.0; shape.heads], vec![0.0; shape.ffn]))
        .collect();
    for (ids, mask, labels) in batches {
        let head_vars: Vec<Var> = (0..shape.layers)
            .map(|_| Var::ones(shape.heads, DType::F32, device))
            .collect::<candle_core::Result<_>>()?;
        let ffn_vars: Vec<Var> = (0..shape.layers)
            .map(|_| Var::ones(shape.ffn, DType::F32, device))
            .collect::<candle_core::Result<_>>()?;
        let gates: Vec<LayerGates> = head_vars
            .iter()
            .zip(&ffn_vars)
            .map(|(h, f)| LayerGates {
                heads: h.as_tensor().clone(),
                ffn: f.as_tensor().clone(),
            })
            .collect();
        let out = net.forward(ids, mask, &maxnet, Some(&gates))?;
        let loss = super::distill::cross_entropy(&out.logits, labels)?;
        let grads = loss.backward()?;
        for (l, total) in totals.iter_mut().enumerate() {
            let gh = grads
                .get(head_vars[l].as_tensor())
                .context("no gradient for head gates")?;
            let gf = grads
                .get(ffn_vars[l].as_tensor())
                .context("no gradient for FFN gates")?;
            for (t, g) in total.0.iter_mut().zip(gh.abs()?.to_vec1::<f32>()?) {
                *t += g;
            }
            for (t, g) in total.1.iter_mut().zip(gf.abs()?.to_vec1::<f32>()?) {
                *t += g;
            }
        }
    }
    Ok(totals)
}

/// Applies per-layer orders to the teacher weights and every adapter (a pure permutation).
pub fn apply(net: &mut ClassifierSupernet, orders: &[LayerOrder]) -> Result<()> {
    let hs = net.encoder.config.head_size();
    for (layer, order) in net.encoder.layers.iter_mut().zip(orders) {
        let rows: Vec<usize> = order
            .heads
            .iter()
            .flat_map(|&h| h * hs..(h + 1) * hs)
            .collect();
        layer.query.permute_out(&rows)?;
        layer.key.permute_out(&rows)?;
        layer.value.permute_out(&rows)?;
        layer.attn_out.permute_in(&rows)?;
        layer.ffn_in.permute_out(&order.ffn)?;
        layer.ffn_out.permute_in(&order.ffn)?;
    }
    Ok(())
}

/// Scores heads and neurons on `batches` and reorders the supernet; returns the orders applied.
pub fn rewire(net: &mut ClassifierSupernet, batches: &[LabelledBatch]) -> Result<Vec<LayerOrder>> {
    let scores = importance(net, batches)?;
    let orders: Vec<LayerOrder> = scores
        .iter()
        .map(|(h, f)| LayerOrder {
            heads: order_by_score(h),
            ffn: order_by_score(f),
        })
        .collect();
    apply(net, &orders)?;
    Ok(orders)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_is_descending_and_stable() {
        assert_eq!(order_by_score(&[0.1, 0.5, 0.5, 0.0]), vec![1, 2, 0, 3]);
    }
}
