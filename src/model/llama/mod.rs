//! Llama-family decoders (SmolLM2, CodeLlama…): config, GGUF and Hugging Face loading, elastic forward.

pub mod config;
pub mod decoder;
pub mod generate;
pub mod gguf;
pub mod names;
pub mod student;

use crate::model::TextTokenizer;
use anyhow::{bail, Result};
use std::path::{Path, PathBuf};

pub use config::LlamaConfig;
pub use decoder::{KvCache, LlamaDecoder};

/// A loaded decoder teacher with its tokenizer.
pub struct DecoderTeacher {
    pub source: PathBuf,
    pub decoder: LlamaDecoder,
    pub tokenizer: TextTokenizer,
    /// What loading noticed but tolerated (unused tensors, a tokenizer that does not fit).
    pub warnings: Vec<String>,
}

/// Stored tensors of Llama checkpoints that are not weights: rotary tables.
const LLAMA_LEFTOVERS: &[&str] = &["rotary_emb.inv_freq", "rope_freqs"];

/// The loader's warnings: unused tensors, then the tokenizer's fit to the embeddings.
fn load_warnings(
    store: &crate::model::weights::WeightStore,
    tokenizer: &TextTokenizer,
    config: &LlamaConfig,
    path: &Path,
) -> Vec<String> {
    store
        .unused_warning(LLAMA_LEFTOVERS)
        .into_iter()
        .chain(
            tokenizer
                .coverage_warning(config.vocab_size)
                .map(|w| format!("{}: {w}", path.display())),
        )
        .collect()
}

impl DecoderTeacher {
    /// Loads a `.gguf` file or a Hugging Face Llama folder (`config.json`, `model.safetensors`, `tokenizer.json`).
    pub fn load(path: &Path) -> Result<Self> {
        Self::load_on(path, &candle_core::Device::Cpu)
    }

    /// [`Self::load`] with the weights on `device`.
    pub fn load_on(path: &Path, device: &candle_core::Device) -> Result<Self> {
        if path.is_file() {
            let g = gguf::load_gguf(path)?;
            let store = g.store.to_device(device)?;
            let decoder = LlamaDecoder::from_store(&g.config, &store)?;
            let tokenizer = TextTokenizer::from_tokenizer(g.tokenizer, 0);
            let warnings = load_warnings(&store, &tokenizer, &g.config, path);
            return Ok(Self {
                source: path.into(),
                decoder,
                tokenizer,
                warnings,
            });
        }
        if !path.is_dir() {
            bail!("{}: model file or folder not found", path.display());
        }
        let config_path = path.join("config.json");
        if !config_path.is_file() {
            bail!("{}: file is missing", config_path.display());
        }
        let weights = path.join("model.safetensors");
        if weights.metadata().is_err() {
            bail!("{}: file is missing", weights.display());
        }
        crate::files::require_regular(&weights, "model.safetensors")?;
        let config = LlamaConfig::from_file(&config_path)?;
        let store =
            crate::model::weights::WeightStore::load(&weights, &["model."])?.to_device(device)?;
        crate::model::limits::check_params_fit(config.param_count(), &weights)?;
        let decoder = LlamaDecoder::from_store(&config, &store)?;
        let tokenizer = TextTokenizer::from_dir(path, 0)?;
        let warnings = load_warnings(&store, &tokenizer, &config, path);
        Ok(Self {
            source: path.into(),
            decoder,
            tokenizer,
            warnings,
        })
    }
}

/// True when `path` holds a decoder (a GGUF file, or a folder whose config says llama).
pub fn is_decoder(path: &Path) -> bool {
    if path.extension().is_some_and(|e| e == "gguf") {
        return true;
    }
    crate::files::read_text(&path.join("config.json"), "model config")
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| {
            v.get("model_type")
                .and_then(|m| m.as_str())
                .map(|m| m == "llama")
        })
        .unwrap_or(false)
}
