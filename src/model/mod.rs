//! The elastic transformers (BERT encoder, Llama decoder): configs, weight loading, tokenizers
//! and batching, subnet specs and slicing Π_Φ, the staged low-rank linear, trainable `Param`s.

pub mod activation;
pub mod attention;
#[cfg(test)]
mod backward_tests;
pub mod bert_names;
pub mod blas;
pub mod blas_attention;
#[cfg(feature = "cuda")]
pub mod cast_cuda;
#[cfg(feature = "cuda")]
pub mod causal_softmax_cuda;
pub mod config;
pub mod device;
pub mod encoder;
pub mod limits;
pub mod linear;
pub mod llama;
pub mod lowrank;
#[cfg(feature = "cuda")]
pub mod nvrtc;
pub mod ops;
pub mod packing;
pub mod param;
pub mod params;
pub mod rms_norm;
pub mod simd;
pub mod subnet;
#[cfg(feature = "cuda")]
pub mod sum_squares_cuda;
#[cfg(feature = "cuda")]
pub mod swiglu_cuda;
pub mod tokenizer;
pub mod weights;
pub mod widths;

use anyhow::{bail, Result};
use std::path::{Path, PathBuf};

pub use config::BertConfig;
pub use encoder::BertEncoder;
pub use subnet::{SubnetSpec, TeacherShape};
pub use tokenizer::{TextTokenizer, TokenBatch};
pub use widths::Widths;

/// A loaded Hugging Face BERT folder: config, weights and tokenizer.
pub struct EncoderTeacher {
    pub dir: PathBuf,
    pub config: BertConfig,
    pub encoder: BertEncoder,
    pub tokenizer: TextTokenizer,
    /// What loading noticed but tolerated (unused tensors, a tokenizer that does not fit).
    pub warnings: Vec<String>,
}

/// Parts of a BERT checkpoint that are not weights MLFS uses: integer buffers and the pooler.
const BERT_LEFTOVERS: &[&str] = &["position_ids", "token_type_ids", "pooler."];

impl EncoderTeacher {
    /// Loads `config.json`, `model.safetensors` and `tokenizer.json`/`vocab.txt` from `dir`.
    pub fn load(dir: &Path) -> Result<Self> {
        Self::load_on(dir, &candle_core::Device::Cpu)
    }

    /// [`Self::load`] with the weights on `device`.
    pub fn load_on(dir: &Path, device: &candle_core::Device) -> Result<Self> {
        if !dir.is_dir() {
            bail!("{}: model folder not found", dir.display());
        }
        let config_path = require_file(dir, "config.json")?;
        let weights_path = require_file(dir, "model.safetensors")?;
        let config = BertConfig::from_file(&config_path)?;
        let store = weights::WeightStore::load(&weights_path, &["bert."])?.to_device(device)?;
        // Before the encoder reserves anything per layer (a readable file that is too small
        // for its config is refused here; an unreadable one above).
        limits::check_params_fit(config.param_count(), &weights_path)?;
        let encoder = BertEncoder::from_store(&config, &store)?;
        let tokenizer = TextTokenizer::from_dir(dir, config.pad_token_id as u32)?;
        let warnings = store
            .unused_warning(BERT_LEFTOVERS)
            .into_iter()
            .chain(
                tokenizer
                    .coverage_warning(config.vocab_size)
                    .map(|w| format!("{}: {w}", dir.display())),
            )
            .collect();
        Ok(Self {
            dir: dir.to_path_buf(),
            config,
            encoder,
            tokenizer,
            warnings,
        })
    }

    /// Parameter count of the whole teacher (embeddings included).
    pub fn param_count(&self) -> usize {
        self.encoder.param_count()
    }

    /// One-line summary for logs and the window.
    pub fn summary(&self) -> String {
        let c = &self.config;
        format!(
            "{}: {} layers, hidden {}, {} heads of {}, FFN {}, {:.1} M parameters",
            self.dir.display(),
            c.num_hidden_layers,
            c.hidden_size,
            c.num_attention_heads,
            c.head_size(),
            c.intermediate_size,
            self.param_count() as f64 / 1e6
        )
    }
}

fn require_file(dir: &Path, name: &str) -> Result<PathBuf> {
    let path = dir.join(name);
    if path.metadata().is_err() {
        bail!("{}: file is missing", crate::files::shown(&path));
    }
    crate::files::require_regular(&path, name)?;
    Ok(path)
}
