//! Running a hot loop compiled for the processor's wider vectors, chosen at run time.

/// Runs `f` compiled for AVX2 and FMA when the processor has them, else as built (SSE2).
///
/// The crate is built for baseline x86-64 so that one binary runs everywhere; the element-wise
/// loops inlined into `f` (norms, activations) get 8-wide vectors this way instead of 4-wide.
#[inline(always)]
pub fn with_avx2<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the processor was just found to have both features.
            return unsafe { run_avx2(f) };
        }
    }
    f()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn run_avx2<R>(f: impl FnOnce() -> R) -> R {
    f()
}

/// Sum of `values` in 16 lanes (vectorises; a plain `iter().sum()` adds one value at a time).
#[inline(always)]
pub fn sum(values: &[f32]) -> f32 {
    let mut lanes = [0f32; 16];
    let chunks = values.chunks_exact(16);
    let tail: f32 = chunks.remainder().iter().sum();
    for chunk in chunks {
        for (lane, &v) in lanes.iter_mut().zip(chunk) {
            *lane += v;
        }
    }
    lanes.iter().sum::<f32>() + tail
}

/// Σ (v − centre)² over `values` in 16 lanes.
#[inline(always)]
pub fn sum_sq_dev(values: &[f32], centre: f32) -> f32 {
    let mut lanes = [0f32; 16];
    let chunks = values.chunks_exact(16);
    let tail: f32 = chunks
        .remainder()
        .iter()
        .map(|v| (v - centre) * (v - centre))
        .sum();
    for chunk in chunks {
        for (lane, &v) in lanes.iter_mut().zip(chunk) {
            *lane += (v - centre) * (v - centre);
        }
    }
    lanes.iter().sum::<f32>() + tail
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The lane sums equal the plain sums (in f64) for lengths around the lane width.
    #[test]
    fn lane_sums_equal_plain_sums() {
        for n in [0usize, 1, 15, 16, 17, 384, 1000] {
            let v: Vec<f32> = (0..n)
                .map(|i| ((i * 7919) % 97) as f32 * 0.01 - 0.3)
                .collect();
            let plain: f64 = v.iter().map(|&x| x as f64).sum();
            let mean = if n == 0 { 0.0 } else { plain / n as f64 };
            let dev: f64 = v.iter().map(|&x| (x as f64 - mean).powi(2)).sum();
            assert!(
                (with_avx2(|| sum(&v)) as f64 - plain).abs() < 1e-4,
                "sum, n = {n}"
            );
            let got = with_avx2(|| sum_sq_dev(&v, mean as f32)) as f64;
            assert!((got - dev).abs() < 1e-4, "squared deviations, n = {n}");
        }
    }
}
