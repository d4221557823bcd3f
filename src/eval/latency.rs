//! Latency of a dense model on this machine: batch 1, fixed length, warm-up then timed runs.

use crate::model::packing::TokenLayout;
use anyhow::Result;
use candle_core::{Device, Tensor};
use std::time::Instant;

/// Median and 90th percentile of timed runs, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Latency {
    pub median_ms: f64,
    pub p90_ms: f64,
}

pub use crate::util::percentile;

/// A batch-1 input of `seq_len` real tokens on `device`: `[CLS]`, ordinary word pieces, `[SEP]`.
/// The ids lie in 2000..7000 (BERT's ordinary word pieces), folded into a smaller vocabulary of
/// `vocab` tokens (a small teacher has fewer than 7000).
pub fn probe_input(seq_len: usize, vocab: usize, device: &Device) -> Result<(Tensor, TokenLayout)> {
    let vocab = vocab.max(1) as u32;
    let mut ids: Vec<u32> = (0..seq_len)
        .map(|i| (2000 + (i as u32 * 37) % 5000) % vocab)
        .collect();
    if let Some(first) = ids.first_mut() {
        *first = 101 % vocab;
    }
    if let Some(last) = ids.last_mut() {
        *last = 102 % vocab;
    }
    Ok((
        Tensor::from_vec(ids, (1, seq_len), device)?,
        TokenLayout::packed(&[vec![1; seq_len]], device)?,
    ))
}

/// Untimed runs before the timed ones: what the PyTorch reference does (`--lat-warmup 10`),
/// so that side-by-side figures are measured alike (OpenBLAS's threads, allocator warm).
pub const WARMUP_RUNS: usize = 10;

/// Times `run` `runs` times after `warmup` untimed calls.
pub fn measure(warmup: usize, runs: usize, mut run: impl FnMut() -> Result<()>) -> Result<Latency> {
    for _ in 0..warmup {
        run()?;
    }
    let mut samples = Vec::with_capacity(runs);
    for _ in 0..runs {
        let started = Instant::now();
        run()?;
        samples.push(started.elapsed().as_secs_f64() * 1e3);
    }
    samples.sort_by(|a, b| a.total_cmp(b));
    Ok(Latency {
        median_ms: percentile(&samples, 0.5),
        p90_ms: percentile(&samples, 0.9),
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn percentiles_by_nearest_rank() {
        let v: Vec<f64> = (1..=20).map(f64::from).collect();
        assert_eq!(super::percentile(&v, 0.5), 10.0);
        assert_eq!(super::percentile(&v, 0.9), 18.0);
        assert_eq!(super::percentile(&[3.0], 0.9), 3.0);
    }

    #[test]
    fn the_probe_fits_a_small_vocabulary() {
        let device = candle_core::Device::Cpu;
        let (ids, _) = super::probe_input(64, 1000, &device).unwrap();
        let ids: Vec<u32> = ids.flatten_all().unwrap().to_vec1().unwrap();
        assert!(ids.iter().all(|&i| i < 1000), "{ids:?}");
        // BERT-sized vocabularies get the ordinary word pieces 2000..7000 as before.
        let (ids, _) = super::probe_input(8, 30522, &device).unwrap();
        let ids: Vec<u32> = ids.flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(ids[0], 101);
        assert!(
            ids[1..7].iter().all(|&i| (2000..7000).contains(&i)),
            "{ids:?}"
        );
    }
}
