//! Export of a chosen subnet as an ordinary dense model folder.

pub mod classifier;
pub mod decoder;
pub mod folder;
pub mod lm;
pub mod merged;

use crate::model::SubnetSpec;
use crate::train::protocol::PaletteEntry;
use crate::train::trainer::Trainer;
use anyhow::{Context, Result};
use folder::{safetensors_bytes, write_export, ExportFiles};
use std::path::{Path, PathBuf};

/// Renders every file of a subnet's export in memory.
pub fn render_export(
    trainer: &Trainer,
    spec: &SubnetSpec,
    metrics: Option<&PaletteEntry>,
) -> Result<ExportFiles> {
    let tensors = merged::merged_tensors(&trainer.net, spec)?;
    let (params_total, params_non_embedding) = merged::param_counts(&tensors);
    let model_safetensors = safetensors_bytes(&tensors)?;
    let config = merged::subnet_config(&trainer.net.encoder.config, spec);
    let labels = &trainer.data.labels.names;
    let mut cfg = serde_json::to_value(&config)?;
    if let Some(obj) = cfg.as_object_mut() {
        let id2label: serde_json::Map<String, serde_json::Value> = labels
            .iter()
            .enumerate()
            .map(|(i, l)| (i.to_string(), l.clone().into()))
            .collect();
        let label2id: serde_json::Map<String, serde_json::Value> = labels
            .iter()
            .enumerate()
            .map(|(i, l)| (l.clone(), i.into()))
            .collect();
        obj.insert("model_type".into(), "bert".into());
        obj.insert(
            "architectures".into(),
            serde_json::json!(["BertForSequenceClassification"]),
        );
        obj.insert("num_labels".into(), labels.len().into());
        obj.insert("id2label".into(), id2label.into());
        obj.insert("label2id".into(), label2id.into());
        obj.insert("head_size".into(), config.head_size().into());
        obj.insert("pooling".into(), "mean".into());
        obj.insert("torch_dtype".into(), "float32".into());
    }
    let tokenizer_json = trainer
        .tokenizer
        .inner()
        .to_string(true)
        .map_err(|e| anyhow::anyhow!("cannot serialise the tokenizer: {e}"))?
        .into_bytes();
    let c = &trainer.config;
    let manifest = serde_json::json!({
        "created_by": format!("mlfs-studio {}", env!("CARGO_PKG_VERSION")),
        "teacher": c.teacher.display().to_string(),
        "subnet": spec.to_string(),
        "layers_kept_from_teacher": spec.layers,
        "params_total": params_total,
        "params_non_embedding": params_non_embedding,
        "metrics": metrics,
        "mlfs": {
            "rank": c.rank, "lora_alpha": c.lora_alpha, "gamma": c.gamma,
            "distill": c.distill, "random_subnets": c.random_subnets,
            "stages": c.stages, "rewired": trainer.orders().is_some(), "seed": c.seed,
        },
        "storage": crate::eval::palette::storage_report_value(trainer)?,
        "pooling": "mean",
    });
    Ok(ExportFiles {
        model_safetensors,
        config_json: serde_json::to_vec_pretty(&cfg)?,
        tokenizer_json,
        manifest_json: serde_json::to_vec_pretty(&manifest)?,
    })
}

/// Exports subnet `spec` of a trained run into `out`; returns the files written.
pub fn export_subnet(
    trainer: &Trainer,
    spec: &SubnetSpec,
    out: &Path,
    metrics: Option<&PaletteEntry>,
) -> Result<Vec<PathBuf>> {
    spec.validate(&trainer.space.teacher)
        .with_context(|| format!("subnet '{spec}' does not fit the teacher"))?;
    let files = render_export(trainer, spec, metrics)?;
    write_export(out, &files)
}
