//! Reading an exported `model.onnx`'s weights back under their Hugging Face names, so our own
//! engine (`predict`, `latency`) runs the very weights an ONNX runtime runs.

use super::onnx_bert::TRANSPOSED_SUFFIX;
use anyhow::{Context, Result};
use candle_core::Tensor;
use std::collections::HashMap;
use std::path::Path;

/// The model's weight initializers (`bert.*`, `classifier.*`), transposed matrices restored to
/// `[out, in]`; graph constants are left out.
pub fn read_onnx_weights(path: &Path) -> Result<HashMap<String, Tensor>> {
    let model = candle_onnx::read_file(path)
        .with_context(|| format!("{}: not a readable ONNX model", path.display()))?;
    let graph = model
        .graph
        .with_context(|| format!("{}: the ONNX model has no graph", path.display()))?;
    let mut weights = HashMap::new();
    for init in &graph.initializer {
        let name = init.name.as_str();
        if !(name.starts_with("bert.") || name.starts_with("classifier.")) {
            continue;
        }
        let tensor = candle_onnx::eval::get_tensor(init, name)
            .with_context(|| format!("{}: initializer '{name}'", path.display()))?;
        match name.strip_suffix(TRANSPOSED_SUFFIX) {
            Some(base) => weights.insert(base.to_string(), tensor.t()?.contiguous()?),
            None => weights.insert(name.to_string(), tensor),
        };
    }
    if weights.is_empty() {
        anyhow::bail!(
            "{}: no BERT weights among the ONNX model's initializers (not an mlfs-studio export?)",
            path.display()
        );
    }
    Ok(weights)
}
