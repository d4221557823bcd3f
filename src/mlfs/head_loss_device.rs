//! The fused head loss on a GPU: the same terms and closed-form gradients as the CPU loops of
//! `head_loss.rs`, computed chunk by chunk with tensor ops that stay on the device. Only the
//! three sums (cross-entropy, KL, hits) come back to the host, once, at the end.

use super::head_loss_terms::{HeadLoss, HeadLossOptions};
use anyhow::Result;
use candle_core::{DType, Tensor, D};

/// Positions projected to the vocabulary at a time (2048 × 49,152 f32 = 400 MB per temporary).
const DEVICE_CHUNK_ROWS: usize = 2048;

/// `log softmax(z / t)` over the last dimension.
fn log_softmax_at(z: &Tensor, t: f64) -> candle_core::Result<Tensor> {
    let z = if t == 1.0 { z.clone() } else { (z / t)? };
    let lse = z.log_sum_exp(D::Minus1)?.unsqueeze(1)?;
    z.broadcast_sub(&lse)
}

/// The device twin of `head_loss` (inputs already checked there).
pub fn head_loss_on_device(
    hidden: &Tensor,
    head: &Tensor,
    targets: &[Option<u32>],
    teacher: Option<(&Tensor, &Tensor)>,
    options: HeadLossOptions,
) -> Result<HeadLoss> {
    let device = hidden.device();
    let (n, _) = hidden.dims2()?;
    let v = head.dim(0)?;
    let w = options.weights;
    let (alpha, t) = (w.kd(), w.temperature);
    let count = targets.iter().flatten().count();
    let scale = 1.0 / count.max(1) as f64;
    let ids: Vec<u32> = targets.iter().map(|y| y.unwrap_or(0)).collect();
    let scored: Vec<f32> = targets.iter().map(|y| y.map_or(0.0, |_| 1.0)).collect();
    let ids = Tensor::from_vec(ids, n, device)?;
    let scored = Tensor::from_vec(scored, (n, 1), device)?;
    let vocab = Tensor::arange(0u32, v as u32, device)?.unsqueeze(0)?;
    let f32 = DType::F32;
    // The products' inputs in the compute dtype, cast once; results come back as f32.
    let c = options.compute;
    let (hidden, head) = (hidden.detach().to_dtype(c)?, head.detach().to_dtype(c)?);
    let head_t = head.t()?;
    let teacher_c = match teacher.filter(|_| alpha > 0.0) {
        Some((th, thead)) => Some((th.detach().to_dtype(c)?, thead.detach().to_dtype(c)?)),
        None => None,
    };
    let mut sums = Tensor::zeros(3, DType::F32, device)?;
    let (mut grad_rows, mut grad_head) = (Vec::new(), None::<Tensor>);
    for start in (0..n).step_by(DEVICE_CHUNK_ROWS) {
        let rows = DEVICE_CHUNK_ROWS.min(n - start);
        let h = hidden.narrow(0, start, rows)?;
        let z = h.matmul(&head_t)?.to_dtype(f32)?;
        let y = ids.narrow(0, start, rows)?.unsqueeze(1)?;
        let m = scored.narrow(0, start, rows)?;
        let log_p = log_softmax_at(&z, 1.0)?;
        let ce = log_p.gather(&y, 1)?.neg()?.mul(&m)?.sum_all()?;
        let hit = z.argmax_keepdim(D::Minus1)?.eq(&y)?.to_dtype(DType::F32)?;
        let hits = hit.mul(&m)?.sum_all()?;
        let onehot = vocab.broadcast_eq(&y)?.to_dtype(DType::F32)?;
        // (1−α)·(softmax(z) − e_y) + α·T·(softmax(z/T) − softmax(u/T)), per scored row.
        let mut g = ((log_p.exp()? - onehot)? * (1.0 - alpha))?;
        let kd = match &teacher_c {
            Some((th, thead)) => {
                let u = th
                    .narrow(0, start, rows)?
                    .matmul(&thead.t()?)?
                    .to_dtype(f32)?;
                let log_pt = log_softmax_at(&u, t)?;
                let log_qt = log_softmax_at(&z, t)?;
                let pt = log_pt.exp()?;
                let kl = (&pt * (&log_pt - &log_qt)?)?.sum_keepdim(D::Minus1)?;
                g = (g + ((log_qt.exp()? - pt)? * (alpha * t))?)?;
                kl.mul(&m)?.sum_all()?
            }
            None => Tensor::zeros((), DType::F32, device)?,
        };
        sums = (sums + Tensor::stack(&[ce, kd, hits], 0)?)?;
        if options.grad_hidden {
            let g = (g.broadcast_mul(&m)? * scale)?.to_dtype(c)?;
            grad_rows.push(g.matmul(&head)?.to_dtype(f32)?);
            if options.grad_head {
                let gh = g.t()?.matmul(&h)?.to_dtype(f32)?;
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
