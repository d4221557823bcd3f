//! Hugging Face `config.json` of a Llama-family decoder, field for field where we need it.

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The subset of a Llama `config.json` the elastic decoder needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LlamaConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    #[serde(default = "default_eps")]
    pub rms_norm_eps: f64,
    #[serde(default = "default_theta")]
    pub rope_theta: f64,
    #[serde(default = "default_positions")]
    pub max_position_embeddings: usize,
    #[serde(default)]
    pub tie_word_embeddings: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head_dim: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bos_token_id: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eos_token_id: Option<u32>,
    /// Each layer's query-head count, for a per-layer model (read from a `deci` GGUF; absent:
    /// every layer has `num_attention_heads`). Key/value heads follow at the global group size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer_heads: Option<Vec<usize>>,
    /// Each layer's FFN width, as `layer_heads` (absent: `intermediate_size` everywhere).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer_intermediate_sizes: Option<Vec<usize>>,
}

fn default_eps() -> f64 {
    1e-5
}
fn default_theta() -> f64 {
    10_000.0
}
fn default_positions() -> usize {
    2048
}

impl LlamaConfig {
    /// Reads and checks a `config.json`; errors name the file.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = crate::files::read_text(path, "model config")?;
        let config: Self = serde_json::from_str(&text)
            .with_context(|| format!("{}: not a valid Llama config.json", path.display()))?;
        config
            .check()
            .with_context(|| format!("{}: inconsistent Llama config", path.display()))?;
        Ok(config)
    }

    /// Width of one attention head.
    pub fn head_size(&self) -> usize {
        self.head_dim
            .unwrap_or(self.hidden_size / self.num_attention_heads.max(1))
    }

    /// The teacher's limits for subnet validation (`heads` counts query heads).
    pub fn shape(&self) -> crate::model::TeacherShape {
        crate::model::TeacherShape {
            layers: self.num_hidden_layers,
            heads: self.num_attention_heads,
            heads_per_kv: self.group_size(),
            head_size: self.head_size(),
            ffn: self.intermediate_size,
            hidden: self.hidden_size,
        }
    }

    /// (query heads, FFN width) of layer `i`.
    pub fn layer_widths(&self, i: usize) -> (usize, usize) {
        let at = |list: &Option<Vec<usize>>, all: usize| {
            list.as_ref().and_then(|l| l.get(i).copied()).unwrap_or(all)
        };
        (
            at(&self.layer_heads, self.num_attention_heads),
            at(&self.layer_intermediate_sizes, self.intermediate_size),
        )
    }

    /// True when some layer is narrower than the widest (a per-layer export).
    pub fn is_per_layer(&self) -> bool {
        !self.full_spec().is_uniform()
    }

    /// Every layer at its own width: the whole model as a subnet spec.
    pub fn full_spec(&self) -> crate::model::SubnetSpec {
        crate::model::SubnetSpec::whole_model(self.num_hidden_layers, |i| self.layer_widths(i))
    }

    /// Weights of the whole decoder (every layer at its own width, embeddings, final norm).
    pub fn param_count(&self) -> usize {
        let shape = self.shape();
        crate::model::params::decoder_params_total(
            &self.full_spec(),
            &shape,
            self.vocab_size,
            self.tie_word_embeddings,
        )
    }

    /// Query heads sharing one key/value head.
    pub fn group_size(&self) -> usize {
        self.num_attention_heads / self.num_key_value_heads.max(1)
    }

    /// Checks the shape fields are consistent.
    pub fn check(&self) -> Result<()> {
        use crate::model::limits::*;
        check_sizes(&[
            ("num_hidden_layers", self.num_hidden_layers, MAX_LAYERS),
            ("hidden_size", self.hidden_size, MAX_WIDTH),
            ("intermediate_size", self.intermediate_size, MAX_WIDTH),
            ("num_attention_heads", self.num_attention_heads, MAX_HEADS),
            ("num_key_value_heads", self.num_key_value_heads, MAX_HEADS),
            ("head_dim", self.head_dim.unwrap_or(0), MAX_WIDTH),
            ("vocab_size", self.vocab_size, MAX_VOCAB),
            (
                "max_position_embeddings",
                self.max_position_embeddings,
                MAX_POSITIONS,
            ),
        ])?;
        check_layer_list(
            "layer_heads",
            self.layer_heads.as_deref(),
            self.num_hidden_layers,
            self.num_attention_heads,
        )?;
        check_layer_list(
            "layer_intermediate_sizes",
            self.layer_intermediate_sizes.as_deref(),
            self.num_hidden_layers,
            self.intermediate_size,
        )?;
        let group = self.group_size().max(1);
        if let Some((i, h)) = (self.layer_heads.iter().flatten())
            .enumerate()
            .find(|(_, &h)| !h.is_multiple_of(group))
        {
            bail!("layer {i} has {h} query heads, not whole groups of {group} per key/value head");
        }
        for (field, id) in [
            ("bos_token_id", self.bos_token_id),
            ("eos_token_id", self.eos_token_id),
        ] {
            if let Some(id) = id.filter(|&id| id as usize >= self.vocab_size) {
                bail!(
                    "{field} {id} is outside the vocabulary of {}",
                    self.vocab_size
                );
            }
        }
        if self.hidden_size == 0
            || self.num_hidden_layers == 0
            || self.num_attention_heads == 0
            || self.num_key_value_heads == 0
        {
            bail!("hidden_size, num_hidden_layers and head counts must be positive");
        }
        if !self
            .num_attention_heads
            .is_multiple_of(self.num_key_value_heads)
        {
            bail!(
                "num_attention_heads {} is not a multiple of num_key_value_heads {}",
                self.num_attention_heads,
                self.num_key_value_heads
            );
        }
        if self.head_dim.is_none() && !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            bail!(
                "hidden_size {} is not a multiple of num_attention_heads {}",
                self.hidden_size,
                self.num_attention_heads
            );
        }
        Ok(())
    }
}
