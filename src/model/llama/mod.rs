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
            let decoder = LlamaDecoder::from_store(&g.config, &g.store.to_device(device)?)?;
            return Ok(Self {
                source: path.into(),
                decoder,
                tokenizer: TextTokenizer::from_tokenizer(g.tokenizer, 0),
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
        if !weights.is_file() {
            bail!("{}: file is missing", weights.display());
        }
        let config = LlamaConfig::from_file(&config_path)?;
        let store =
            crate::model::weights::WeightStore::load(&weights, &["model."])?.to_device(device)?;
        let decoder = LlamaDecoder::from_store(&config, &store)?;
        let tokenizer = TextTokenizer::from_dir(path, 0)?;
        Ok(Self {
            source: path.into(),
            decoder,
            tokenizer,
        })
    }
}

/// True when `path` holds a decoder (a GGUF file, or a folder whose config says llama).
pub fn is_decoder(path: &Path) -> bool {
    if path.extension().is_some_and(|e| e == "gguf") {
        return true;
    }
    std::fs::read_to_string(path.join("config.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| {
            v.get("model_type")
                .and_then(|m| m.as_str())
                .map(|m| m == "llama")
        })
        .unwrap_or(false)
}
