//! AdamW on the CPU in one pass over each parameter, spread over rayon's workers.
//!
//! candle's element-wise ops made a dozen single-threaded passes per parameter (scale, add,
//! square, divide, square root…), each allocating a full-size tensor: on `code-slice20-full`
//! (99 M trained weights, 2-core AMD EPYC) the optimizer was about a tenth of a step's samples,
//! all on one core. The arithmetic is the same as those ops', in the same order and in f32, so
//! the updated weights are bit for bit those of the composed ops (test).

use super::adam_step::FusedStep;
use candle_core::{bail, Result, Tensor};
use rayon::prelude::*;

/// Values handed to one worker at a time.
const CHUNK: usize = 1 << 14;

/// Runs `f` on the f32 values of a contiguous CPU tensor, read in place.
fn with_values<R>(t: &Tensor, what: &str, f: impl FnOnce(&[f32]) -> R) -> Result<R> {
    let (storage, layout) = t.storage_and_layout();
    let (candle_core::Storage::Cpu(cpu), Some((a, b))) = (&*storage, layout.contiguous_offsets())
    else {
        bail!("AdamW on the CPU: {what} must be a contiguous CPU tensor");
    };
    let all = cpu.as_slice::<f32>()?;
    match all.get(a..b) {
        Some(values) => Ok(f(values)),
        None => bail!("AdamW on the CPU: {what} lies outside its storage"),
    }
}

/// `(weight, first moment, second moment)` after one step from `grad`.
pub fn fused_step(
    param: &Tensor,
    grad: &Tensor,
    m: &Tensor,
    v: &Tensor,
    s: &FusedStep,
) -> Result<(Tensor, Tensor, Tensor)> {
    let n = param.elem_count();
    for (t, what) in [(grad, "its gradient"), (m, "a moment"), (v, "a moment")] {
        if t.elem_count() != n {
            bail!(
                "AdamW on the CPU: the parameter has {n} values, {what} {}",
                t.elem_count()
            );
        }
    }
    let grad = grad.contiguous()?;
    // The constants as candle's `affine` takes them (f64 cast to f32).
    let c = |x: f64| x as f32;
    let (gscale, b1, one_b1, b2, one_b2) = (
        c(s.grad_scale),
        c(s.beta1),
        c(1.0 - s.beta1),
        c(s.beta2),
        c(1.0 - s.beta2),
    );
    let (inv_bc1, inv_bc2, eps, lr) = (c(1.0 / s.bc1), c(1.0 / s.bc2), c(s.eps), c(s.lr));
    let decay = (s.decay != 1.0).then(|| c(s.decay));
    let (mut w_new, mut m_new, mut v_new) = (vec![0f32; n], vec![0f32; n], vec![0f32; n]);
    with_values(param, "a parameter", |w| {
        with_values(&grad, "a gradient", |g| {
            with_values(m, "a moment", |m| {
                with_values(v, "a moment", |v| {
                    w_new
                        .par_chunks_mut(CHUNK)
                        .zip(m_new.par_chunks_mut(CHUNK))
                        .zip(v_new.par_chunks_mut(CHUNK))
                        .enumerate()
                        .for_each(|(chunk, ((wo, mo), vo))| {
                            let at = chunk * CHUNK;
                            let len = wo.len();
                            let (w, g) = (&w[at..at + len], &g[at..at + len]);
                            let (m, v) = (&m[at..at + len], &v[at..at + len]);
                            for i in 0..len {
                                let gi = g[i] * gscale;
                                let mi = m[i] * b1 + gi * one_b1;
                                let vi = v[i] * b2 + (gi * gi) * one_b2;
                                let update = (mi * inv_bc1) / ((vi * inv_bc2).sqrt() + eps);
                                let wi = match decay {
                                    Some(d) => w[i] * d,
                                    None => w[i],
                                };
                                wo[i] = wi - update * lr;
                                mo[i] = mi;
                                vo[i] = vi;
                            }
                        })
                })
            })
        })
    })????;
    let shape = param.shape().clone();
    let device = param.device();
    Ok((
        Tensor::from_vec(w_new, shape.clone(), device)?,
        Tensor::from_vec(m_new, shape.clone(), device)?,
        Tensor::from_vec(v_new, shape, device)?,
    ))
}

/// Σ g² over every gradient, in f64, spread over rayon's workers.
pub fn sum_of_squares(grads: &[&Tensor]) -> Result<f64> {
    let mut total = 0f64;
    for g in grads {
        let g = g.contiguous()?;
        total += with_values(&g, "a gradient", |values| {
            values
                .par_chunks(CHUNK)
                .map(|c| c.iter().map(|&x| (x as f64) * (x as f64)).sum::<f64>())
                .sum::<f64>()
        })?;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The one-pass step gives exactly what candle's composed ops give (the optimizer's
    /// formula as it was written before), with decay and a clipping factor, over several
    /// workers' chunks.
    #[test]
    fn one_pass_step_equals_candles_composed_ops_bit_for_bit() {
        let n = 3 * CHUNK + 17;
        let r = |seed| {
            crate::util::uniform_tensor((1, n), seed)
                .flatten_all()
                .unwrap()
        };
        let (w, g, m) = (r(1), r(2), (r(3) * 0.1).unwrap());
        let v = (r(4).sqr().unwrap() * 0.01).unwrap();
        let (beta1, beta2, eps, lr, wd, factor) = (0.9, 0.999, 1e-8, 3e-4, 0.01, 0.37);
        let t = 3;
        let bc1 = 1.0 - f64::powi(beta1, t);
        let bc2 = 1.0 - f64::powi(beta2, t);
        let step = FusedStep {
            beta1,
            beta2,
            eps,
            lr,
            bc1,
            bc2,
            grad_scale: factor,
            decay: 1.0 - lr * wd,
        };
        let (w1, m1, v1) = fused_step(&w, &g, &m, &v, &step).unwrap();
        // candle's ops, as the optimizer composed them.
        let gs = (&g * factor).unwrap();
        let m2 = ((&m * beta1).unwrap() + (&gs * (1.0 - beta1)).unwrap()).unwrap();
        let v2 = ((&v * beta2).unwrap() + (gs.sqr().unwrap() * (1.0 - beta2)).unwrap()).unwrap();
        let update =
            ((&m2 / bc1).unwrap() / ((&v2 / bc2).unwrap().sqrt().unwrap() + eps).unwrap()).unwrap();
        let w2 = ((&w * (1.0 - lr * wd)).unwrap() - (update * lr).unwrap()).unwrap();
        for (ours, theirs) in [(w1, w2), (m1, m2), (v1, v2)] {
            let a = ours.to_vec1::<f32>().unwrap();
            let b = theirs.to_vec1::<f32>().unwrap();
            let same = a
                .iter()
                .zip(&b)
                .filter(|(x, y)| x.to_bits() == y.to_bits())
                .count();
            assert_eq!(same, n, "{} of {n} values differ", n - same);
        }
        let norm = sum_of_squares(&[&g]).unwrap();
        let want: f64 = g
            .to_vec1::<f32>()
            .unwrap()
            .iter()
            .map(|&x| x as f64 * x as f64)
            .sum();
        assert!((norm - want).abs() < 1e-9 * want, "{norm} vs {want}");
    }
}
