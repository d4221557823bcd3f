//! Small file helpers shared by checkpoints, exports and presets.

use anyhow::{Context, Result};
use std::path::Path;

/// Reads a text file with one entry per line (or a JSONL file of `{"text": …}` objects).
pub fn read_texts(path: &Path) -> Result<Vec<String>> {
    let content = crate::files::read_text(path, "texts file")?;
    let jsonl = path.extension().is_some_and(|e| e == "jsonl");
    let mut texts = Vec::new();
    for (i, line) in content.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        if jsonl {
            let value: serde_json::Value = serde_json::from_str(line)
                .with_context(|| format!("{}:{}: invalid JSON", path.display(), i + 1))?;
            let text = value
                .get("text")
                .and_then(|t| t.as_str())
                .with_context(|| format!("{}:{}: no \"text\" string", path.display(), i + 1))?;
            texts.push(text.to_string());
        } else {
            texts.push(line.to_string());
        }
    }
    if texts.is_empty() {
        anyhow::bail!("{}: no texts in file", path.display());
    }
    Ok(texts)
}

/// Resident memory of this process in MB (0 where /proc is unavailable).
pub fn rss_mb() -> usize {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|t| t.split_whitespace().nth(1)?.parse::<usize>().ok())
        .map_or(0, |pages| pages * 4096 / (1024 * 1024))
}

/// Largest absolute elementwise difference of two tensors of one shape.
pub fn max_abs_diff(a: &candle_core::Tensor, b: &candle_core::Tensor) -> candle_core::Result<f32> {
    (a - b)?.abs()?.max_all()?.to_scalar::<f32>()
}

/// A seeded tensor of uniform values in [-1, 1) (unit tests).
/// The text of a panic payload (`panic!` carries a `&str` or a `String`).
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".to_string()
    }
}

/// An error naming `what` when a model's output holds NaN or infinite values (a corrupt or
/// extreme weight, a negative `layer_norm_eps`…): such numbers must never be printed as results.
pub fn ensure_finite<'a>(
    values: impl IntoIterator<Item = &'a f32>,
    what: &str,
) -> anyhow::Result<()> {
    if values.into_iter().all(|v| v.is_finite()) {
        return Ok(());
    }
    anyhow::bail!("{what} holds NaN or infinite values: check the model's weights and config")
}

#[cfg(test)]
pub fn uniform_tensor(shape: (usize, usize), seed: u64) -> candle_core::Tensor {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let v: Vec<f32> = (0..shape.0 * shape.1)
        .map(|_| rng.random_range(-1.0..1.0))
        .collect();
    candle_core::Tensor::from_vec(v, shape, &candle_core::Device::Cpu).unwrap()
}

/// Nearest-rank percentile of sorted samples (NaN when there are none).
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// `x` rounded to `decimals` places: timings carry no more digits than the clock resolves, and
/// the CSV files show them short (the shortest text of the rounded number).
pub fn round_to(x: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    (x * scale).round() / scale
}
