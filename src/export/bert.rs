//! A classifier subnet as a BERT-style folder: merged weights, config with the label names,
//! tokenizer and manifest.

use super::folder::{safetensors_bytes, write_export, ExportFiles};
use super::manifest::storage_report;
use super::merged::{merged_tensors, param_counts, subnet_config};
use crate::mlfs::classifier::ClassifierSupernet;
use crate::model::{SubnetSpec, TextTokenizer};
use anyhow::{Context, Result};
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};

/// Renders every file of a subnet's export in memory; `manifest` gains the parameter counts,
/// the palette's storage and the pooling.
pub fn render_export(
    net: &ClassifierSupernet,
    tokenizer: &TextTokenizer,
    labels: &[String],
    spec: &SubnetSpec,
    manifest: Value,
) -> Result<ExportFiles> {
    let tensors = merged_tensors(net, spec)?;
    let (params_total, params_non_embedding) = param_counts(&tensors);
    let model_safetensors = safetensors_bytes(&tensors)?;
    let config = subnet_config(&net.encoder.config, spec);
    let mut cfg = serde_json::to_value(&config)?;
    if let Some(obj) = cfg.as_object_mut() {
        let id2label: Map<String, Value> = labels
            .iter()
            .enumerate()
            .map(|(i, l)| (i.to_string(), l.clone().into()))
            .collect();
        let label2id: Map<String, Value> = labels
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
    let tokenizer_json = tokenizer
        .inner()
        .to_string(true)
        .map_err(|e| anyhow::anyhow!("cannot serialise the tokenizer: {e}"))?
        .into_bytes();
    let mut manifest = manifest;
    if let Some(obj) = manifest.as_object_mut() {
        obj.insert("params_total".into(), params_total.into());
        obj.insert("params_non_embedding".into(), params_non_embedding.into());
        obj.insert("storage".into(), storage_report(net));
        obj.insert("pooling".into(), "mean".into());
    }
    Ok(ExportFiles {
        model_safetensors,
        config_json: serde_json::to_vec_pretty(&cfg)?,
        tokenizer_json,
        manifest_json: serde_json::to_vec_pretty(&manifest)?,
    })
}

/// Exports subnet `spec` of a trained classifier into `out`; returns the files written.
pub fn export_subnet(
    net: &ClassifierSupernet,
    tokenizer: &TextTokenizer,
    labels: &[String],
    spec: &SubnetSpec,
    manifest: Value,
    out: &Path,
) -> Result<Vec<PathBuf>> {
    spec.validate(&net.encoder.shape())
        .with_context(|| format!("subnet '{spec}' does not fit the teacher"))?;
    let files = render_export(net, tokenizer, labels, spec, manifest)?;
    write_export(out, &files)
}
