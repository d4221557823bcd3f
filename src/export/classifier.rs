//! A dense BERT classifier with mean pooling: an exported subnet, loaded like any HF folder.

use super::onnx_weights::read_onnx_weights;
use crate::model::packing::TokenLayout;
use crate::model::weights::WeightStore;
use crate::model::{BertConfig, BertEncoder, TextTokenizer};
use anyhow::{bail, Context, Result};
use candle_core::Tensor;
use std::path::Path;

/// An exported subnet (or any BERT classifier folder with `classifier.*` and mean pooling).
pub struct DenseClassifier {
    pub config: BertConfig,
    pub encoder: BertEncoder,
    pub classifier_weight: Tensor,
    pub classifier_bias: Tensor,
    pub labels: Vec<String>,
    pub tokenizer: Option<TextTokenizer>,
}

/// The weights of an exported folder: `model.safetensors`, or else an ONNX export's
/// `model.onnx` (its initializers), under BERT names without the `bert.` prefix.
pub fn export_store(dir: &Path) -> Result<WeightStore> {
    let weights = dir.join("model.safetensors");
    let onnx = dir.join("model.onnx");
    if weights.is_file() {
        WeightStore::load(&weights, &["bert."])
    } else if onnx.is_file() {
        Ok(WeightStore::from_tensors(
            &onnx,
            read_onnx_weights(&onnx)?,
            &["bert."],
        ))
    } else {
        bail!(
            "{}: file is missing (nor is there a model.onnx)",
            weights.display()
        )
    }
}

/// True when `dir` is an ONNX export (a `model.onnx` and no `model.safetensors`).
pub fn is_onnx_export(dir: &Path) -> bool {
    dir.join("model.onnx").is_file() && dir.join("model.safetensors").symlink_metadata().is_err()
}

impl DenseClassifier {
    /// Builds the classifier from config and named tensors (as written by the exporter).
    pub fn from_tensors(
        config: BertConfig,
        store: &WeightStore,
        labels: Vec<String>,
    ) -> Result<Self> {
        let mut encoder = BertEncoder::from_store(&config, store)?;
        // Only ever run whole and without gradients: products with plain transposed weights.
        for layer in &mut encoder.layers {
            for linear in layer.linears_mut() {
                linear.prepare_inference()?;
            }
        }
        let classes = labels.len();
        let classifier_weight = store.get("classifier.weight", &[classes, config.hidden_size])?;
        let classifier_bias = store.get("classifier.bias", &[classes])?;
        Ok(Self {
            config,
            encoder,
            classifier_weight,
            classifier_bias,
            labels,
            tokenizer: None,
        })
    }

    /// Loads an exported folder: `config.json`, `model.safetensors` (or an ONNX export's
    /// `model.onnx`), `tokenizer.json`.
    pub fn load(dir: &Path) -> Result<Self> {
        Self::load_on(dir, &candle_core::Device::Cpu)
    }

    /// [`Self::load`] with the weights on `device`.
    pub fn load_on(dir: &Path, device: &candle_core::Device) -> Result<Self> {
        let config_path = dir.join("config.json");
        if !config_path.is_file() {
            bail!("{}: file is missing", config_path.display());
        }
        let config = BertConfig::from_file(&config_path)?;
        let raw: serde_json::Value =
            serde_json::from_str(&crate::files::read_text(&config_path, "model config")?)
                .with_context(|| format!("{}: invalid JSON", config_path.display()))?;
        let pooling = raw
            .get("pooling")
            .and_then(|p| p.as_str())
            .unwrap_or("mean");
        if pooling != "mean" {
            bail!(
                "{}: pooling '{pooling}' is not supported (mean)",
                config_path.display()
            );
        }
        let labels =
            id2label(&raw).with_context(|| format!("{}: no id2label", config_path.display()))?;
        let store = export_store(dir)?.to_device(device)?;
        let mut model = Self::from_tensors(config, &store, labels)?;
        model.tokenizer = Some(TextTokenizer::from_dir(
            dir,
            model.config.pad_token_id as u32,
        )?);
        Ok(model)
    }

    /// The device the weights live on.
    pub fn device(&self) -> &candle_core::Device {
        self.encoder.device()
    }

    /// Logits `[B, classes]` of token ids and mask `[B, T]`.
    pub fn logits(&self, ids: &Tensor, mask: &Tensor) -> Result<Tensor> {
        self.logits_of(ids, &TokenLayout::of_mask(mask)?)
    }

    /// Logits `[B, classes]` of token ids `[B, T]` whose real tokens `layout` packs.
    pub fn logits_of(&self, ids: &Tensor, layout: &TokenLayout) -> Result<Tensor> {
        crate::model::blas::on_product_pool(|| {
            // Every layer whole, at its own width (per-layer exports differ by layer).
            let spec = self.config.full_spec();
            let out = self.encoder.forward_rows(ids, layout, &spec, None)?;
            let pooled = layout.mean_pool(out.last())?;
            let scores = crate::model::blas::matmul_t_or_candle(&pooled, &self.classifier_weight)?;
            Ok(scores.broadcast_add(&self.classifier_bias)?)
        })
    }
}

fn id2label(config: &serde_json::Value) -> Option<Vec<String>> {
    let map = config.get("id2label")?.as_object()?;
    let mut pairs: Vec<(usize, String)> = map
        .iter()
        .filter_map(|(k, v)| Some((k.parse().ok()?, v.as_str()?.to_string())))
        .collect();
    pairs.sort();
    let labels: Vec<String> = pairs.into_iter().map(|(_, v)| v).collect();
    (!labels.is_empty()).then_some(labels)
}
