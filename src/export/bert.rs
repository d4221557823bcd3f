//! A classifier subnet as a BERT-style folder: merged weights (safetensors or an ONNX model),
//! config with the label names, tokenizer and manifest.

use super::folder::{safetensors_bytes, write_export, ExportFiles};
use super::manifest::storage_report;
use super::merged::{merged_tensors, param_counts, subnet_config};
use super::onnx_bert::{
    bert_classifier_onnx, ATTENTION_MASK, INPUT_IDS, LAST_HIDDEN_STATE, LOGITS,
};
use super::onnx_graph::OPSET;
use crate::mlfs::classifier::ClassifierSupernet;
use crate::model::{SubnetSpec, TextTokenizer};
use anyhow::{bail, Context, Result};
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};

/// The model file a classifier export writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ClassifierFormat {
    /// `model.safetensors` with Hugging Face BERT names.
    #[default]
    HfFolder,
    /// `model.onnx` (opset 17) for ONNX Runtime and other ONNX runtimes.
    Onnx,
}

impl ClassifierFormat {
    /// Parses `--format` for a classifier run: `hf` or `onnx`.
    pub fn parse(text: &str) -> Result<Self> {
        match text {
            "hf" => Ok(Self::HfFolder),
            "onnx" => Ok(Self::Onnx),
            other => bail!(
                "--format {other}: a classifier run exports `hf` (a BERT folder, the default) \
                 or `onnx` (model.onnx); GGUF is for decoder runs"
            ),
        }
    }

    /// The name shown in the studio's format choice.
    pub fn label(self) -> &'static str {
        match self {
            Self::HfFolder => "Hugging Face folder (safetensors)",
            Self::Onnx => "ONNX (opset 17)",
        }
    }
}

/// Renders every file of a subnet's export in memory; `manifest` gains the parameter counts,
/// the palette's storage, the pooling and the model file's format.
pub fn render_export(
    net: &ClassifierSupernet,
    tokenizer: &TextTokenizer,
    labels: &[String],
    spec: &SubnetSpec,
    manifest: Value,
    format: ClassifierFormat,
) -> Result<ExportFiles> {
    if format == ClassifierFormat::HfFolder && !spec.is_uniform() {
        anyhow::bail!(
            "subnet '{spec}' has per-layer widths, which a Hugging Face BertConfig cannot hold (one head count and one FFN width for all layers): export it with --format onnx"
        );
    }
    let tensors = merged_tensors(net, spec)?;
    let (params_total, params_non_embedding) = param_counts(&tensors);
    let config = subnet_config(&net.encoder.config, spec);
    let (model_file, model) = match format {
        ClassifierFormat::HfFolder => ("model.safetensors", safetensors_bytes(&tensors)?),
        ClassifierFormat::Onnx => (
            "model.onnx",
            bert_classifier_onnx(&config, &tensors, labels, &spec.to_string())?,
        ),
    };
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
        obj.insert("model_file".into(), model_file.into());
        if format == ClassifierFormat::Onnx {
            obj.insert(
                "onnx".into(),
                serde_json::json!({
                    "opset": OPSET,
                    "inputs": {INPUT_IDS: "int64 [batch, sequence]", ATTENTION_MASK: "int64 [batch, sequence], 1 = token, 0 = padding"},
                    "outputs": {LOGITS: format!("float32 [batch, {}]", labels.len()), LAST_HIDDEN_STATE: format!("float32 [batch, sequence, {}]", config.hidden_size)},
                    "token_type_ids": "not an input: every token is type 0, as in training",
                }),
            );
        }
    }
    Ok(ExportFiles {
        model_file,
        model,
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
    format: ClassifierFormat,
    out: &Path,
) -> Result<Vec<PathBuf>> {
    spec.validate(&net.encoder.shape())
        .with_context(|| format!("subnet '{spec}' does not fit the teacher"))?;
    let files = render_export(net, tokenizer, labels, spec, manifest, format)?;
    write_export(out, &files)
}
