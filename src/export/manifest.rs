//! The `manifest.json` of every export: where the subnet came from and how it was trained.

use crate::mlfs::adapters::AdaptedSupernet;
use crate::mlfs::classifier::ClassifierSupernet;
use crate::model::SubnetSpec;
use crate::train::config::RunConfig;
use serde_json::{json, Map, Value};

/// The fields every export's manifest carries (run, teacher, subnet, MLFS settings, whether
/// the teacher was rewired), plus the kind-specific `extra` ones.
pub fn manifest(
    config: &RunConfig,
    spec: &SubnetSpec,
    rewired: bool,
    extra: Map<String, Value>,
) -> Value {
    let c = config;
    let mut m = json!({
        "created_by": format!("mlfs-studio {}", env!("CARGO_PKG_VERSION")),
        "run": c.name,
        "teacher": c.teacher.display().to_string(),
        "subnet": spec.to_string(),
        "layers_kept_from_teacher": spec.layers,
        // Each kept layer's widths, in the exported model's layer order.
        "layer_widths": (0..spec.layers.len())
            .map(|i| {
                let (heads, ffn) = spec.layer_widths(i);
                json!({ "teacher_layer": spec.layers[i], "heads": heads, "ffn": ffn })
            })
            .collect::<Vec<_>>(),
        "mlfs": {
            "rank": c.rank, "lora_alpha": c.lora_alpha, "gamma": c.gamma,
            "distill": c.distill, "random_subnets": c.random_subnets,
            "stages": c.stages, "rewired": rewired, "seed": c.seed,
        },
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
