//! Rewiring for decoders: reorder each layer's KV groups (with their query heads) and SwiGLU
//! neurons by importance, so that front slicing keeps the most important ones.
//!
//! A decoder subnet keeps whole KV groups (its query heads are a multiple of the group size), so
//! the group is the unit ordered; within a group the query heads keep their order.

use super::rewire::{orders_from, GateSet, LayerOrder};
use crate::model::llama::LlamaDecoder;
use crate::model::ops::frozen_matmul_t;
use crate::model::SubnetSpec;
use anyhow::{bail, Result};
use candle_core::{DType, Tensor};

/// One batch of token blocks `[B, T]` and the next-token target of every position.
pub type TokenBatch = (Tensor, Vec<Option<u32>>);

/// |∂L/∂gate| summed over batches (L: the maxnet's next-token cross-entropy with adapters):
/// per layer, the importance of each KV group and each FFN neuron.
pub fn importance(net: &LlamaDecoder, batches: &[TokenBatch]) -> Result<Vec<(Vec<f32>, Vec<f32>)>> {
    let shape = net.shape();
    let maxnet = SubnetSpec::maxnet(&shape);
    let groups = shape.heads / shape.heads_per_kv;
    let mut gates = GateSet::new(shape.layers, groups, shape.ffn);
    for (ids, targets) in batches {
        let layer_gates = gates.gates(net.device())?;
        let (_, last) = net.forward_gated(ids, &maxnet, layer_gates)?;
        gates.add(&next_token_loss(net, &last, targets)?.backward()?)?;
    }
    Ok(gates.totals)
}

/// Mean cross-entropy of the positions that have a next token; final states `[B·T, d]`.
fn next_token_loss(net: &LlamaDecoder, last: &Tensor, targets: &[Option<u32>]) -> Result<Tensor> {
    let (rows, labels): (Vec<u32>, Vec<u32>) = targets
        .iter()
        .enumerate()
        .filter_map(|(i, t)| t.map(|t| (i as u32, t)))
        .unzip();
    if rows.is_empty() {
        bail!("rewiring: the batches have no next-token targets");
    }
    let device = last.device();
    let n = rows.len();
    let rows = Tensor::from_vec(rows, n, device)?;
    let labels = Tensor::from_vec(labels, n, device)?;
    let hidden = last.index_select(&rows, 0)?;
    let logits = frozen_matmul_t(&hidden, net.head())?.to_dtype(DType::F32)?;
    Ok(candle_nn::loss::cross_entropy(&logits, &labels)?)
}

/// Applies per-layer orders (`heads` in query heads, whole groups moved together) to the
/// decoder's weights and every adapter: a pure permutation, the teacher's function unchanged.
pub fn apply(net: &mut LlamaDecoder, orders: &[LayerOrder]) -> Result<()> {
    let c = &net.config;
    super::rewire::check_orders(
        orders,
        net.layers.len(),
        c.num_attention_heads,
        c.intermediate_size,
    )?;
    let hs = net.config.head_size();
    let per = net.config.group_size();
    for (layer, order) in net.layers.iter_mut().zip(orders) {
        let groups = group_order(&order.heads, per)?;
        let q_rows: Vec<usize> = order
            .heads
            .iter()
            .flat_map(|&h| h * hs..(h + 1) * hs)
            .collect();
        let kv_rows: Vec<usize> = groups.iter().flat_map(|&g| g * hs..(g + 1) * hs).collect();
        layer.q.permute_out(&q_rows)?;
        layer.k.permute_out(&kv_rows)?;
        layer.v.permute_out(&kv_rows)?;
        layer.o.permute_in(&q_rows)?;
        layer.gate.permute_out(&order.ffn)?;
        layer.up.permute_out(&order.ffn)?;
        layer.down.permute_in(&order.ffn)?;
    }
    Ok(())
}

/// The KV-group order a query-head order moves whole groups by; an error if it splits a group.
fn group_order(heads: &[usize], per: usize) -> Result<Vec<usize>> {
    let groups: Vec<usize> = heads.iter().step_by(per.max(1)).map(|&h| h / per).collect();
    let expected: Vec<usize> = groups
        .iter()
        .flat_map(|&g| g * per..(g + 1) * per)
        .collect();
    if expected != heads {
        bail!("rewiring order {heads:?} does not move whole KV groups of {per} heads");
    }
    Ok(groups)
}

/// Query-head order of a KV-group order: each group's heads, in their own order.
fn head_order(groups: &[usize], per: usize) -> Vec<usize> {
    groups
        .iter()
        .flat_map(|&g| g * per..(g + 1) * per)
        .collect()
}

/// Scores KV groups and neurons on `batches` and reorders the decoder; returns the orders.
pub fn rewire(net: &mut LlamaDecoder, batches: &[TokenBatch]) -> Result<Vec<LayerOrder>> {
    let per = net.config.group_size();
    let orders = orders_from(&importance(net, batches)?, |groups| {
        head_order(&groups, per)
    });
    apply(net, &orders)?;
    Ok(orders)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_orders_expand_to_heads_and_back() {
        let heads = head_order(&[2, 0, 1], 3);
        assert_eq!(heads, vec![6, 7, 8, 0, 1, 2, 3, 4, 5]);
        assert_eq!(group_order(&heads, 3).unwrap(), vec![2, 0, 1]);
        let split = group_order(&[0, 3, 1, 2, 4, 5], 3).unwrap_err();
        assert!(split.to_string().contains("whole KV groups"), "{split}");
    }
}
