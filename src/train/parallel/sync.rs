//! The two sums a data-parallel step takes: the step's gradients and losses in one flat buffer
//! after backward, and, before the step, whether any rank was told to stop (with each rank's
//! device memory in use, so rank 0 can report every GPU's).

use super::Collective;
use crate::model::param::Param;
use anyhow::{bail, Context, Result};
use candle_core::{DType, Tensor};

/// Sums `grads` (one slot per optimizer parameter, `None`: no gradient on this rank) and
/// `losses` over every rank, in place. A slot is `Some` after the sum when any rank had it.
pub fn sum_gradients(
    group: &mut dyn Collective,
    params: &[Param],
    grads: &mut Vec<Option<Tensor>>,
    losses: &mut [f64],
) -> Result<()> {
    let device = params
        .first()
        .map(|p| p.var.as_tensor().device().clone())
        .context("a step with no trainable parameters")?;
    grads.resize(params.len(), None);
    // Layout: a presence flag per slot, every slot's values (zeros where absent), the losses.
    let presence: Vec<f32> = grads
        .iter()
        .map(|g| f32::from(u8::from(g.is_some())))
        .collect();
    let mut parts = vec![Tensor::from_vec(presence, params.len(), &device)?];
    for (g, p) in grads.iter().zip(params) {
        let n = p.var.as_tensor().elem_count();
        parts.push(match g {
            Some(g) => g.to_dtype(DType::F32)?.flatten_all()?,
            None => Tensor::zeros(n, DType::F32, &device)?,
        });
    }
    // Each f64 loss as three f32 parts that add back to it exactly (24 + 24 + 5 bits): the
    // decoder's losses are f64 sums, and one rank must log them unchanged.
    let loss_values: Vec<f32> = losses.iter().flat_map(|&l| split_f64(l)).collect();
    parts.push(Tensor::from_vec(loss_values, 3 * losses.len(), &device)?);
    let flat = Tensor::cat(&parts, 0)?;
    drop(parts);
    let summed = group.all_reduce_sum(&flat)?;
    drop(flat);
    if summed.elem_count() != expected_len(params, losses.len()) {
        bail!(
            "the gradient sum came back with {} values",
            summed.elem_count()
        );
    }
    let present = summed.narrow(0, 0, params.len())?.to_vec1::<f32>()?;
    let mut at = params.len();
    for ((slot, p), count) in grads.iter_mut().zip(params).zip(present) {
        let shape = p.var.as_tensor().shape().clone();
        let n = shape.elem_count();
        *slot = if count > 0.0 {
            // A tensor of its own: the fused GPU AdamW takes plain buffers, not views.
            Some(
                summed
                    .narrow(0, at, n)?
                    .reshape(shape)?
                    .force_contiguous()?,
            )
        } else {
            None
        };
        at += n;
    }
    let summed_losses = summed.narrow(0, at, 3 * losses.len())?.to_vec1::<f32>()?;
    for (l, s) in losses.iter_mut().zip(summed_losses.chunks_exact(3)) {
        *l = f64::from(s[0]) + f64::from(s[1]) + f64::from(s[2]);
    }
    Ok(())
}

/// `x` as `[a, b, c]` with `a + b + c == x` in f64 (for finite `x` away from f32's limits).
fn split_f64(x: f64) -> [f32; 3] {
    let a = x as f32;
    let rest = x - f64::from(a);
    let b = rest as f32;
    let c = (rest - f64::from(b)) as f32;
    [a, b, c]
}

fn expected_len(params: &[Param], losses: usize) -> usize {
    params.len()
        + params
            .iter()
            .map(|p| p.var.as_tensor().elem_count())
            .sum::<usize>()
        + 3 * losses
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_loss_split_into_three_f32_adds_back_exactly() {
        for x in [
            1.0999230674057014,
            10.364395383804563,
            1e-7 / 3.0,
            0.0,
            -2.5e3 / 7.0,
        ] {
            let [a, b, c] = super::split_f64(x);
            assert_eq!(f64::from(a) + f64::from(b) + f64::from(c), x);
        }
    }
}

/// What the ranks agreed before a step: stop when any rank was told to, and every rank's
/// device memory in use (MB, rank order).
#[derive(Debug, Clone, PartialEq)]
pub struct Agreement {
    pub stop: bool,
    pub memory_mb: Vec<f64>,
}

/// Sums each rank's stop wish and memory in use over the ranks.
pub fn agree(
    group: &mut dyn Collective,
    stop: bool,
    memory_mb: f64,
    device: &candle_core::Device,
) -> Result<Agreement> {
    let world = group.world_size();
    let mut values = vec![0f32; 1 + world];
    values[0] = f32::from(u8::from(stop));
    values[1 + group.rank()] = memory_mb as f32;
    let flat = Tensor::from_vec(values, 1 + world, device)?;
    let summed = group.all_reduce_sum(&flat)?.to_vec1::<f32>()?;
    if summed.len() != 1 + world {
        bail!("the stop agreement came back with {} values", summed.len());
    }
    Ok(Agreement {
        stop: summed[0] > 0.0,
        memory_mb: summed[1..].iter().map(|&m| f64::from(m)).collect(),
    })
}
