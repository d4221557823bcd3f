//! Rewiring (DynaBERT): reorder heads and FFN neurons by importance so front slicing keeps the best.

use super::classifier::ClassifierSupernet;
use crate::model::encoder::LayerGates;
use crate::model::packing::TokenLayout;
use anyhow::{Context, Result};
use candle_core::{DType, Tensor, Var};
use serde::{Deserialize, Serialize};

/// A layer's new order: `heads[new] = old head`, `ffn[new] = old neuron`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerOrder {
    pub heads: Vec<usize>,
    pub ffn: Vec<usize>,
}

/// Checks that `orders` (read from a checkpoint or `supernet.json`) fit a teacher of `layers`
/// layers with `heads` heads and `ffn` neurons each: one order per layer, each a permutation.
pub fn check_orders(orders: &[LayerOrder], layers: usize, heads: usize, ffn: usize) -> Result<()> {
    if orders.len() != layers {
        anyhow::bail!(
            "rewiring orders are given for {} layers, the teacher has {layers}",
            orders.len()
        );
    }
    let is_permutation = |order: &[usize], n: usize| {
        let mut seen = vec![false; n];
        order.len() == n
            && order
                .iter()
                .all(|&i| i < n && !std::mem::replace(&mut seen[i], true))
    };
    for (layer, order) in orders.iter().enumerate() {
        if !is_permutation(&order.heads, heads) {
            anyhow::bail!(
                "layer {layer}'s head order is not an order of the teacher's {heads} heads"
            );
        }
        if !is_permutation(&order.ffn, ffn) {
            anyhow::bail!(
                "layer {layer}'s FFN order is not an order of the teacher's {ffn} neurons"
            );
        }
    }
    Ok(())
}

/// Indices sorted by descending score; ties keep their original order.
pub fn order_by_score(scores: &[f32]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    idx
}

/// One labelled batch of the training set.
pub struct LabelledBatch {
    /// Token ids `[B, T]`.
    pub ids: Tensor,
    /// Where the real tokens are.
    pub layout: TokenLayout,
    /// Class ids `[B]`.
    pub labels: Tensor,
}

/// Gates of 1 on every layer's heads (or KV groups) and FFN neurons, as variables, and the sums
/// of |∂L/∂gate| they collect over batches.
pub struct GateSet {
    heads: Vec<Var>,
    ffn: Vec<Var>,
    /// Per layer: summed |gradient| of each head gate and each FFN gate.
    pub totals: Vec<(Vec<f32>, Vec<f32>)>,
}

impl GateSet {
    /// Zero totals for `layers` layers of `heads` head gates and `ffn` neuron gates.
    pub fn new(layers: usize, heads: usize, ffn: usize) -> Self {
        Self {
            heads: Vec::new(),
            ffn: Vec::new(),
            totals: (0..layers)
                .map(|_| (vec![0.0; heads], vec![0.0; ffn]))
                .collect(),
        }
    }

    /// Fresh gates of 1 for one batch's forward pass.
    pub fn gates(&mut self, device: &candle_core::Device) -> Result<Vec<LayerGates>> {
        let ones = |n: usize| Var::ones(n, DType::F32, device);
        self.heads = self
            .totals
            .iter()
            .map(|(h, _)| ones(h.len()))
            .collect::<candle_core::Result<_>>()?;
        self.ffn = self
            .totals
            .iter()
            .map(|(_, f)| ones(f.len()))
            .collect::<candle_core::Result<_>>()?;
        Ok(self
            .heads
            .iter()
            .zip(&self.ffn)
            .map(|(h, f)| LayerGates {
                heads: h.as_tensor().clone(),
                ffn: f.as_tensor().clone(),
            })
            .collect())
    }

    /// Adds |∂L/∂gate| of the last batch's gates.
    pub fn add(&mut self, grads: &candle_core::backprop::GradStore) -> Result<()> {
        for (l, total) in self.totals.iter_mut().enumerate() {
            let gh = grads
                .get(self.heads[l].as_tensor())
                .context("no gradient for the head gates")?;
            let gf = grads
                .get(self.ffn[l].as_tensor())
                .context("no gradient for the FFN gates")?;
            add_abs(&mut total.0, gh)?;
            add_abs(&mut total.1, gf)?;
        }
        Ok(())
    }
}

fn add_abs(total: &mut [f32], grad: &Tensor) -> Result<()> {
    let values = grad.abs()?.to_dtype(DType::F32)?.to_vec1::<f32>()?;
    for (t, g) in total.iter_mut().zip(values) {
        *t += g;
    }
    Ok(())
}

/// |∂L/∂gate| summed over batches: the importance of each head and FFN neuron of every layer.
pub fn importance(
    net: &ClassifierSupernet,
    batches: &[LabelledBatch],
) -> Result<Vec<(Vec<f32>, Vec<f32>)>> {
    let shape = net.encoder.shape();
    let maxnet = crate::model::SubnetSpec::maxnet(&shape);
    let mut gates = GateSet::new(shape.layers, shape.heads, shape.ffn);
    for batch in batches {
        let layer_gates = gates.gates(net.encoder.device())?;
        let out = net.forward(&batch.ids, &batch.layout, &maxnet, Some(&layer_gates))?;
        let loss = super::distill::cross_entropy(&out.logits, &batch.labels)?;
        gates.add(&loss.backward()?)?;
    }
    Ok(gates.totals)
}

/// Applies per-layer orders to the teacher weights and every adapter (a pure permutation).
pub fn apply(net: &mut ClassifierSupernet, orders: &[LayerOrder]) -> Result<()> {
    let c = &net.encoder.config;
    check_orders(
        orders,
        c.num_hidden_layers,
        c.num_attention_heads,
        c.intermediate_size,
    )?;
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

/// Per-layer orders from importance scores, most important first; `heads` maps the head
/// scores' order to the query-head order (the identity for encoders).
pub fn orders_from(
    scores: &[(Vec<f32>, Vec<f32>)],
    heads: impl Fn(Vec<usize>) -> Vec<usize>,
) -> Vec<LayerOrder> {
    scores
        .iter()
        .map(|(h, f)| LayerOrder {
            heads: heads(order_by_score(h)),
            ffn: order_by_score(f),
        })
        .collect()
}

/// Scores heads and neurons on `batches` and reorders the supernet; returns the orders applied.
pub fn rewire(net: &mut ClassifierSupernet, batches: &[LabelledBatch]) -> Result<Vec<LayerOrder>> {
    let orders = orders_from(&importance(net, batches)?, |h| h);
    apply(net, &orders)?;
    Ok(orders)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_must_cover_every_layer_and_be_permutations() {
        let order = |h: Vec<usize>, f: Vec<usize>| LayerOrder { heads: h, ffn: f };
        let good = vec![order(vec![1, 0], vec![2, 0, 1]); 3];
        check_orders(&good, 3, 2, 3).unwrap();
        let short = &good[..1];
        let e = format!("{:#}", check_orders(short, 3, 2, 3).unwrap_err());
        assert!(e.contains("1 layers, the teacher has 3"), "{e}");
        let repeated = vec![order(vec![0, 0], vec![2, 0, 1]); 3];
        assert!(check_orders(&repeated, 3, 2, 3).is_err());
        let outside = vec![order(vec![1, 0], vec![3, 0, 1]); 3];
        assert!(check_orders(&outside, 3, 2, 3).is_err());
    }

    #[test]
    fn order_is_descending_and_stable() {
        assert_eq!(order_by_score(&[0.1, 0.5, 0.5, 0.0]), vec![1, 2, 0, 3]);
    }
}
