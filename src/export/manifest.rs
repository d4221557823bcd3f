//! The `manifest.json` of every export: where the subnet came from and how it was trained.

use crate::mlfs::adapters::AdaptedSupernet;
use crate::mlfs::classifier::ClassifierSupernet;
use crate::model::SubnetSpec;
use serde_json::{json, Map, Value};
use std::path::Path;

/// Where an exported subnet came from: the run's name, its teacher and its training settings
/// (what the manifest prints of the run, and no more).
pub struct Provenance<'a> {
    pub run: &'a str,
    pub teacher: &'a Path,
    /// The MLFS settings as the run folder's config states them.
    pub training: Value,
}

/// The fields every export's manifest carries (run, teacher, subnet with each kept layer's
/// widths, training settings), plus the kind-specific `extra` ones.
pub fn manifest(from: &Provenance, spec: &SubnetSpec, extra: Map<String, Value>) -> Value {
    let mut m = json!({
        "created_by": format!("mlfs-studio {}", env!("CARGO_PKG_VERSION")),
        "run": from.run,
        "teacher": from.teacher.display().to_string(),
        "subnet": spec.to_string(),
        "layers_kept_from_teacher": spec.layers,
        // Each kept layer's widths, in the exported model's layer order.
        "layer_widths": (0..spec.layers.len())
            .map(|i| {
                let (heads, ffn) = spec.layer_widths(i);
                json!({ "teacher_layer": spec.layers[i], "heads": heads, "ffn": ffn })
            })
            .collect::<Vec<_>>(),
        "mlfs": from.training,
    });
    if let Some(obj) = m.as_object_mut() {
        obj.extend(extra);
    }
    m
}

/// Bytes of what MLFS keeps for a classifier's whole palette (teacher + adapters + head +
/// projections), as f32.
pub fn storage_report(net: &ClassifierSupernet) -> Value {
    let teacher_params = net.encoder.param_count();
    let mlfs_params: usize = net.named_state().iter().map(|(_, t)| t.elem_count()).sum();
    json!({
        "teacher_bytes_f32": teacher_params * 4,
        "adapters_head_projections_bytes_f32": mlfs_params * 4,
        "palette_bytes_f32": (teacher_params + mlfs_params) * 4,
    })
}
