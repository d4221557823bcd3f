//! Bounds on the sizes a model file may declare, checked before anything is reserved: model
//! files come from the internet, and `num_hidden_layers: 10^12` must be an error, not an attempt
//! to allocate terabytes. The bounds are far above any released model (Llama 3.1 405B: 126
//! layers, hidden 16,384, FFN 53,248, 128k positions; Gemma 3: 262k vocabulary).

use anyhow::{bail, Result};
use std::path::Path;

/// Most transformer layers.
pub const MAX_LAYERS: usize = 1024;
/// Widest hidden, attention or FFN dimension.
pub const MAX_WIDTH: usize = 1 << 18;
/// Most attention heads.
pub const MAX_HEADS: usize = 4096;
/// Largest vocabulary.
pub const MAX_VOCAB: usize = 1 << 22;
/// Most positions.
pub const MAX_POSITIONS: usize = 1 << 21;

/// Checks named sizes against their bounds: `(field, value, bound)`.
pub fn check_sizes(sizes: &[(&str, usize, usize)]) -> Result<()> {
    for &(field, value, bound) in sizes {
        if value > bound {
            bail!("{field} = {value} is larger than any model this studio reads (at most {bound})");
        }
    }
    Ok(())
}

/// A config's optional per-layer list (`layer_heads`…): one value per layer, each in 1..=bound.
pub fn check_layer_list(
    field: &str,
    list: Option<&[usize]>,
    layers: usize,
    bound: usize,
) -> Result<()> {
    let Some(list) = list else { return Ok(()) };
    if list.len() != layers {
        bail!("{field} has {} values for {layers} layers", list.len());
    }
    if let Some((i, v)) = list.iter().enumerate().find(|(_, &v)| v == 0 || v > bound) {
        bail!("{field}: layer {i} has {v}, outside 1..={bound}");
    }
    Ok(())
}

/// A weights file must hold at least a byte per parameter its config declares (no stored dtype
/// is smaller): a config that claims more is refused before its weights are read.
pub fn check_params_fit(params: usize, weights: &Path) -> Result<()> {
    let bytes = std::fs::metadata(weights).map_or(0, |m| m.len());
    if params as u64 > bytes {
        bail!(
            "{}: config.json declares {params} parameters but this file holds only {bytes} bytes",
            crate::files::shown(weights)
        );
    }
    Ok(())
}

/// Elements of a tensor of `dims`, or `None` when the product overflows.
pub fn element_count(dims: &[usize]) -> Option<usize> {
    dims.iter().try_fold(1usize, |n, &d| n.checked_mul(d))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_beyond_bounds_and_overflowing_shapes_are_refused() {
        check_sizes(&[("num_hidden_layers", 12, MAX_LAYERS)]).unwrap();
        let e = check_sizes(&[("num_hidden_layers", 1_000_000_000_000, MAX_LAYERS)]).unwrap_err();
        assert!(
            e.to_string().contains("num_hidden_layers = 1000000000000"),
            "{e}"
        );
        assert_eq!(element_count(&[3, 4]), Some(12));
        assert_eq!(element_count(&[1 << 40, 1 << 40]), None);
    }
}
