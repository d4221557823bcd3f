//! The fused head loss on a GPU: the same terms and closed-form gradients as the CPU loops of
//! `head_loss.rs`, computed chunk by chunk on the device. Only the three sums (cross-entropy,
//! KL, hits) come back to the host, once, at the end.

use super::head_loss_kernel::{head_loss_rows, RowWeights};
use super::head_loss_terms::{HeadLoss, HeadLossOptions};
use crate::model::ops::cast;
use anyhow::Result;
use candle_core::{DType, Tensor};

/// Positions projected to the vocabulary at a time (2048 × 49,152 f32 = 400 MB per temporary).
const DEVICE_CHUNK_ROWS: usize = 2048;

/// The device twin of `head_loss` (inputs already checked there): the products with the head
/// in the compute dtype, the row-wise loss and the logits' gradient in one kernel
/// ([`head_loss_rows`]) per chunk.
pub fn head_loss_on_device(
    hidden: &Tensor,
    head: &Tensor,
    targets: &[Option<u32>],
    teacher: Option<(&Tensor, &Tensor)>,
    options: HeadLossOptions,
) -> Result<HeadLoss> {
    let device = hidden.device();
    let (n, _) = hidden.dims2()?;
    let w = options.weights;
    let count = targets.iter().flatten().count();
    let weights = RowWeights {
        alpha: w.kd(),
        temperature: w.temperature,
        scale: 1.0 / count.max(1) as f64,
    };
    let ids: Vec<u32> = targets.iter().map(|y| y.unwrap_or(0)).collect();
    let scored: Vec<f32> = targets.iter().map(|y| y.map_or(0.0, |_| 1.0)).collect();
    let ids = Tensor::from_vec(ids, n, device)?;
    let scored = Tensor::from_vec(scored, n, device)?;
    let f32 = DType::F32;
    // The products' inputs in the compute dtype, cast once; gradients come back as f32.
    let c = options.compute;
    let (hidden, head) = (cast(&hidden.detach(), c)?, cast(&head.detach(), c)?);
    let head_t = head.t()?;
    let teacher_c = match teacher.filter(|_| weights.alpha > 0.0) {
        Some((th, thead)) => Some((cast(&th.detach(), c)?, cast(&thead.detach(), c)?)),
        None => None,
    };
    let mut sums = Tensor::zeros(3, f32, device)?;
    let (mut grad_rows, mut grad_head) = (Vec::new(), None::<Tensor>);
    for start in (0..n).step_by(DEVICE_CHUNK_ROWS) {
        let rows = DEVICE_CHUNK_ROWS.min(n - start);
        let h = hidden.narrow(0, start, rows)?;
        let z = h.matmul(&head_t)?;
        let u = match &teacher_c {
            Some((th, thead)) => Some(th.narrow(0, start, rows)?.matmul(&thead.t()?)?),
            None => None,
        };
        let (g, stats) = head_loss_rows(
            &z,
            u.as_ref(),
            &ids.narrow(0, start, rows)?,
            &scored.narrow(0, start, rows)?,
            &weights,
        )?;
        sums = sums.add(&stats.sum(0)?)?;
        if options.grad_hidden {
            grad_rows.push(cast(&g.matmul(&head)?, f32)?);
            if options.grad_head {
                let gh = cast(&g.t()?.matmul(&h)?, f32)?;
                grad_head = Some(match grad_head {
                    Some(acc) => (acc + gh)?,
                    None => gh,
                });
            }
        }
    }
    let sums = sums.to_dtype(DType::F64)?.to_vec1::<f64>()?;
    let grad_hidden = match options.grad_hidden {
        true => Some(Tensor::cat(&grad_rows, 0)?),
        false => None,
    };
    Ok(HeadLoss {
        ce_sum: sums[0],
        kd_sum: sums[1],
        hits: sums[2].round() as usize,
        count,
        grad_hidden,
        grad_head: grad_head.filter(|_| options.grad_hidden),
    })
}
