//! The language-model head's loss, fused and chunked: next-token cross-entropy and
//! `T²·KL(teacher ‖ student)` with their gradients in closed form.
//!
//! Logits over a 49k vocabulary are the largest tensors of a decoder step (8 × 128 × 49,152
//! floats = 200 MB each); going through candle's autograd would keep several of them alive.
//! Here each chunk of positions is projected, scored and differentiated, then dropped: only the
//! gradient with respect to the final hidden states (and to the head, when it trains) remains.

use super::distill::{combine, DistillWeights};
pub use super::head_loss_terms::{HeadLoss, HeadLossOptions};
use anyhow::{bail, Result};
use candle_core::Tensor;
use rayon::prelude::*;

/// Positions projected to the vocabulary at a time.
const CHUNK_ROWS: usize = 128;

/// One position's terms: cross-entropy, KL and hit; writes the logit gradient when asked.
///
/// Two exponentials per vocabulary entry at T = 1: the student's softmax (kept in the gradient
/// row) and the teacher's (kept in place of its logits, which are consumed).
fn row_terms(
    z: &[f32],
    target: u32,
    teacher: Option<&mut [f32]>,
    alpha: f32,
    temperature: f32,
    grad: Option<(&mut [f32], f32)>,
) -> (f64, f64, bool) {
    let (mut max, mut arg) = (f32::NEG_INFINITY, 0usize);
    for (i, &v) in z.iter().enumerate() {
        if v > max {
            (max, arg) = (v, i);
        }
    }
    let y = target as usize;
    let mut grad = grad;
    // log Σ exp(z); with a gradient row, exp(z − max) is kept there (normalised below).
    let sum: f64 = match grad.as_mut() {
        Some((g, _)) => g
            .iter_mut()
            .zip(z)
            .map(|(gi, &v)| {
                *gi = (v - max).exp();
                *gi as f64
            })
            .sum(),
        None => z.iter().map(|&v| (v - max).exp() as f64).sum(),
    };
    let lse = max as f64 + sum.ln();
    let ce = lse - z[y] as f64;
    let inv_t = 1.0 / temperature;
    let mut kd = 0.0f64;
    let mut teacher_probs: Option<&[f32]> = None;
    if let Some(u) = teacher {
        let lse_zt = if temperature == 1.0 {
            lse
        } else {
            log_sum_exp(z, inv_t)
        };
        // One pass: e = exp(u/T − m), Σe and Σ e·(u − z)/T; then p = e / Σe in place.
        let m = u.iter().fold(f32::NEG_INFINITY, |a, &x| a.max(x * inv_t));
        let (mut sum_u, mut dot) = (0f64, 0f64);
        for (ui, &zi) in u.iter_mut().zip(z) {
            let e = (*ui * inv_t - m).exp();
            sum_u += e as f64;
            dot += e as f64 * ((*ui - zi) * inv_t) as f64;
            *ui = e;
        }
        let lse_ut = m as f64 + sum_u.ln();
        // KL(p‖q) = Σ p (u − z)/T − lse_u + lse_z, since Σ p = 1.
        kd = dot / sum_u - lse_ut + lse_zt;
        let inv = (1.0 / sum_u) as f32;
        u.iter_mut().for_each(|p| *p *= inv);
        teacher_probs = Some(u);
    }
    if let Some((g, scale)) = grad {
        let inv = (1.0 / sum) as f32;
        let ce_w = 1.0 - alpha;
        match teacher_probs {
            Some(p) if temperature == 1.0 => {
                // (1−α)(s − e_y) + α(s − p) = s − (1−α)e_y − αp.
                for (gi, &pi) in g.iter_mut().zip(p) {
                    *gi = (*gi * inv - alpha * pi) * scale;
                }
            }
            Some(p) => {
                let lse_zt = log_sum_exp(z, inv_t);
                for ((gi, &pi), &zi) in g.iter_mut().zip(p).zip(z) {
                    let s_t = ((zi * inv_t) as f64 - lse_zt).exp() as f32;
                    // d(T²·KL)/dz = T·(softmax(z/T) − softmax(u/T)).
                    *gi = (ce_w * *gi * inv + alpha * temperature * (s_t - pi)) * scale;
                }
            }
            None => g.iter_mut().for_each(|gi| *gi *= ce_w * inv * scale),
        }
        g[y] -= ce_w * scale;
    }
    (ce, kd, arg == y)
}

fn log_sum_exp(v: &[f32], scale: f32) -> f64 {
    let max = v.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x * scale));
    let sum: f64 = v.iter().map(|&x| (x * scale - max).exp() as f64).sum();
    max as f64 + sum.ln()
}

/// Scores hidden states `[N, d]` through `head` `[V, d]` against `targets` (one per row; `None`
/// rows are not scored), optionally distilling from a teacher's `(hidden [N, d_t], head [V, d_t])`.
/// On the CPU row by row in host loops; on a GPU chunk by chunk in tensor ops on the device.
pub fn head_loss(
    hidden: &Tensor,
    head: &Tensor,
    targets: &[Option<u32>],
    teacher: Option<(&Tensor, &Tensor)>,
    options: HeadLossOptions,
) -> Result<HeadLoss> {
    let (n, _) = hidden.dims2()?;
    let v = head.dim(0)?;
    if targets.len() != n {
        bail!("{} targets for {n} positions", targets.len());
    }
    if let Some(bad) = targets.iter().flatten().find(|&&y| y as usize >= v) {
        bail!("token id {bad} is outside the model's vocabulary of {v}");
    }
    let w = options.weights;
    if w.kd() > 0.0 && teacher.is_none() {
        bail!("distillation weight {} without a teacher", w.kd());
    }
    #[cfg(feature = "cuda")]
    if !hidden.device().is_cpu() {
        return super::head_loss_device::head_loss_on_device(
            hidden, head, targets, teacher, options,
        );
    }
    let count = targets.iter().flatten().count();
    let scale = 1.0 / count.max(1) as f32;
    let (alpha, temperature) = (w.kd() as f32, w.temperature as f32);
    let hidden = hidden.detach();
    let head = head.detach();
    let head_t = head.t()?;
    let mut out = HeadLoss {
        ce_sum: 0.0,
        kd_sum: 0.0,
        hits: 0,
        count,
        grad_hidden: None,
        grad_head: None,
    };
    let mut grad_rows = Vec::new();
    let mut grad_head: Option<Tensor> = None;
    for start in (0..n).step_by(CHUNK_ROWS) {
        let rows = CHUNK_ROWS.min(n - start);
        let h = hidden.narrow(0, start, rows)?;
        let z = h.matmul(&head_t)?.flatten_all()?.to_vec1::<f32>()?;
        let mut u = match (teacher, w.kd() > 0.0) {
            (Some((th, thead)), true) => Some(
                th.detach()
                    .narrow(0, start, rows)?
                    .matmul(&thead.detach().t()?)?
                    .flatten_all()?
                    .to_vec1::<f32>()?,
            ),
            _ => None,
        };
        let chunk_targets = &targets[start..start + rows];
        let mut g = if options.grad_hidden {
            vec![0f32; rows * v]
        } else {
            Vec::new()
        };
        // Per-row views: the teacher's logits and the gradient row, when present.
        let u_rows: Vec<Option<&mut [f32]>> = match u.as_mut() {
            Some(u) => u.chunks_mut(v).map(Some).collect(),
            None => (0..rows).map(|_| None).collect(),
        };
        let g_rows: Vec<Option<&mut [f32]>> = if options.grad_hidden {
            g.chunks_mut(v).map(Some).collect()
        } else {
            (0..rows).map(|_| None).collect()
        };
        let terms: Vec<(f64, f64, bool)> = u_rows
            .into_par_iter()
            .zip(g_rows)
            .enumerate()
            .map(|(r, (u_row, g_row))| match chunk_targets[r] {
                Some(y) => row_terms(
                    &z[r * v..(r + 1) * v],
                    y,
                    u_row,
                    alpha,
                    temperature,
                    g_row.map(|g| (g, scale)),
                ),
                None => (0.0, 0.0, false),
            })
            .collect();
        for (ce, kd, hit) in terms {
            out.ce_sum += ce;
            out.kd_sum += kd;
            out.hits += hit as usize;
        }
        if options.grad_hidden {
            let g = Tensor::from_vec(g, (rows, v), hidden.device())?;
            grad_rows.push(g.matmul(&head)?);
            if options.grad_head {
                let gh = g.t()?.matmul(&h)?;
                grad_head = Some(match grad_head {
                    Some(acc) => (acc + gh)?,
                    None => gh,
                });
            }
        }
    }
    if options.grad_hidden {
        out.grad_hidden = Some(Tensor::cat(&grad_rows, 0)?);
        out.grad_head = grad_head;
    }
    Ok(out)
}

/// Next-token targets of blocks laid out row by row: position t predicts token t + 1; the last
/// position of each block has none.
pub fn next_token_targets(blocks: &[&[u32]]) -> Vec<Option<u32>> {
    blocks
        .iter()
        .flat_map(|b| (0..b.len()).map(move |t| b.get(t + 1).copied()))
        .collect()
}

/// Reference `(1−α)·CE + α·T²·KL` through candle's autograd on full logits (tests only: memory-heavy).
pub fn reference_loss(
    hidden: &Tensor,
    head: &Tensor,
    targets: &[u32],
    teacher_logits: &Tensor,
    w: DistillWeights,
) -> Result<Tensor> {
    let logits = hidden.matmul(&head.t()?)?;
    let labels = Tensor::new(targets, hidden.device())?;
    let ce = candle_nn::loss::cross_entropy(&logits, &labels)?;
    let kd = crate::mlfs::distill::kd_loss(&logits, teacher_logits, w.temperature)?;
    combine(&ce, &kd, &[], w)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Var;

    fn random(shape: (usize, usize), seed: u64) -> Tensor {
        crate::util::uniform_tensor(shape, seed)
    }

    fn weights(alpha: f64, temperature: f64) -> DistillWeights {
        DistillWeights {
            alpha,
            beta: 0.0,
            temperature,
        }
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        crate::util::max_abs_diff(a, b).unwrap()
    }

    #[test]
    fn fused_loss_and_gradients_match_autograd() {
        // 300 positions (three chunks, the last partial), vocabulary 50, width 16.
        let (n, v, d) = (300, 50, 16);
        let hidden = Var::from_tensor(&(random((n, d), 1) * 2.0).unwrap()).unwrap();
        let head = Var::from_tensor(&random((v, d), 2)).unwrap();
        let teacher_h = random((n, d), 3);
        let teacher_head = random((v, d), 4);
        let targets: Vec<u32> = (0..n).map(|i| (i * 7 % v) as u32).collect();
        for (alpha, temperature) in [(0.0, 1.0), (0.9, 1.0), (0.5, 2.0)] {
            let teacher_logits = teacher_h.matmul(&teacher_head.t().unwrap()).unwrap();
            let reference = reference_loss(
                hidden.as_tensor(),
                head.as_tensor(),
                &targets,
                &teacher_logits,
                weights(alpha, temperature),
            )
            .unwrap();
            let grads = reference.backward().unwrap();
            let ours = head_loss(
                hidden.as_tensor(),
                head.as_tensor(),
                &targets.iter().map(|&t| Some(t)).collect::<Vec<_>>(),
                Some((&teacher_h, &teacher_head)),
                HeadLossOptions {
                    weights: weights(alpha, temperature),
                    grad_hidden: true,
                    grad_head: true,
                    compute: candle_core::DType::F32,
                },
            )
            .unwrap();
            let want = reference.to_scalar::<f32>().unwrap() as f64;
            assert!(
                (ours.loss(weights(alpha, temperature)) - want).abs() < 1e-4,
                "loss α={alpha} T={temperature}"
            );
            let gh = grads.get(hidden.as_tensor()).unwrap();
            assert!(
                max_diff(ours.grad_hidden.as_ref().unwrap(), gh) < 1e-5,
                "d/dh α={alpha}"
            );
            let gw = grads.get(head.as_tensor()).unwrap();
            assert!(
                max_diff(ours.grad_head.as_ref().unwrap(), gw) < 1e-5,
                "d/dW α={alpha}"
            );
        }
    }

    #[test]
    fn unscored_positions_get_no_gradient_and_targets_shift_by_one() {
        let blocks: [&[u32]; 2] = [&[5, 6, 7], &[8, 9, 10]];
        assert_eq!(
            next_token_targets(&blocks),
            vec![Some(6), Some(7), None, Some(9), Some(10), None]
        );
        let hidden = random((6, 4), 5);
        let head = random((12, 4), 6);
        let out = head_loss(
            &hidden,
            &head,
            &next_token_targets(&blocks),
            None,
            HeadLossOptions {
                weights: weights(0.0, 1.0),
                grad_hidden: true,
                grad_head: false,
                compute: candle_core::DType::F32,
            },
        )
        .unwrap();
        assert_eq!(out.count, 4);
        let g = out.grad_hidden.unwrap().to_vec2::<f32>().unwrap();
        assert!(g[2].iter().all(|&x| x == 0.0) && g[5].iter().all(|&x| x == 0.0));
        assert!(g[0].iter().any(|&x| x != 0.0));
    }
}
