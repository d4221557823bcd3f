//! Hugging Face `config.json` of a BERT teacher, field for field where we need it.

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The subset of a Hugging Face BERT `config.json` the elastic encoder needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BertConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    #[serde(default = "default_max_positions")]
    pub max_position_embeddings: usize,
    #[serde(default = "default_type_vocab")]
    pub type_vocab_size: usize,
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    #[serde(default = "default_act")]
    pub hidden_act: String,
    #[serde(default)]
    pub pad_token_id: usize,
    /// Explicit head size, written by our exporter for head-sliced models.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head_size: Option<usize>,
    /// Each layer's head count, written by our exporter for per-layer subnets (absent: every
    /// layer has `num_attention_heads`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer_heads: Option<Vec<usize>>,
    /// Each layer's FFN width, as `layer_heads` (absent: `intermediate_size` everywhere).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer_intermediate_sizes: Option<Vec<usize>>,
}

fn default_max_positions() -> usize {
    512
}
fn default_type_vocab() -> usize {
    2
}
fn default_eps() -> f64 {
    1e-12
}
fn default_act() -> String {
    "gelu".to_string()
}

impl BertConfig {
    /// Reads and checks `config.json`; errors name the file.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = crate::files::read_text(path, "model config")?;
        let config: BertConfig = serde_json::from_str(&text)
            .with_context(|| format!("{}: not a valid BERT config.json", path.display()))?;
        config
            .check()
            .with_context(|| format!("{}: inconsistent BERT config", path.display()))?;
        Ok(config)
    }

    /// Width of one attention head.
    pub fn head_size(&self) -> usize {
        self.head_size
            .unwrap_or(self.hidden_size / self.num_attention_heads.max(1))
    }

    /// Total width of all attention heads (equals hidden size for stock BERT).
    pub fn attention_width(&self) -> usize {
        self.head_size() * self.num_attention_heads
    }

    /// The teacher's limits for subnet validation.
    pub fn shape(&self) -> crate::model::TeacherShape {
        crate::model::TeacherShape {
            layers: self.num_hidden_layers,
            heads: self.num_attention_heads,
            heads_per_kv: 1,
            head_size: self.head_size(),
            ffn: self.intermediate_size,
            hidden: self.hidden_size,
        }
    }

    /// (heads, FFN width) of layer `i`.
    pub fn layer_widths(&self, i: usize) -> (usize, usize) {
        let at = |list: &Option<Vec<usize>>, all: usize| {
            list.as_ref().and_then(|l| l.get(i).copied()).unwrap_or(all)
        };
        (
            at(&self.layer_heads, self.num_attention_heads),
            at(&self.layer_intermediate_sizes, self.intermediate_size),
        )
    }

    /// Every layer at its full width: the whole model as a subnet spec.
    pub fn full_spec(&self) -> crate::model::SubnetSpec {
        crate::model::SubnetSpec::whole_model(self.num_hidden_layers, |i| self.layer_widths(i))
    }

    /// Parameters of the whole encoder (embeddings and their LayerNorm included, no pooler).
    pub fn param_count(&self) -> usize {
        let d = self.hidden_size;
        let embeddings =
            (self.vocab_size + self.max_position_embeddings + self.type_vocab_size + 2) * d;
        // Q, K, V (a×d + a each), attention output (d×a + d), FFN in and out, two LayerNorms.
        let layer = |i: usize| {
            let (heads, f) = self.layer_widths(i);
            let a = heads * self.head_size();
            3 * (a * d + a) + (a * d + d) + (f * d + f) + (f * d + d) + 4 * d
        };
        embeddings + (0..self.num_hidden_layers).map(layer).sum::<usize>()
    }

    fn check(&self) -> Result<()> {
        use crate::model::limits::*;
        check_sizes(&[
            ("num_hidden_layers", self.num_hidden_layers, MAX_LAYERS),
            ("hidden_size", self.hidden_size, MAX_WIDTH),
            ("intermediate_size", self.intermediate_size, MAX_WIDTH),
            ("num_attention_heads", self.num_attention_heads, MAX_HEADS),
            ("head_size", self.head_size.unwrap_or(0), MAX_WIDTH),
            ("vocab_size", self.vocab_size, MAX_VOCAB),
            (
                "max_position_embeddings",
                self.max_position_embeddings,
                MAX_POSITIONS,
            ),
            ("type_vocab_size", self.type_vocab_size, MAX_VOCAB),
        ])?;
        check_layer_list(
            "layer_heads",
            self.layer_heads.as_deref(),
            self.num_hidden_layers,
            MAX_HEADS,
        )?;
        check_layer_list(
            "layer_intermediate_sizes",
            self.layer_intermediate_sizes.as_deref(),
            self.num_hidden_layers,
            MAX_WIDTH,
        )?;
        if self.hidden_size == 0 || self.num_hidden_layers == 0 || self.num_attention_heads == 0 {
            bail!("hidden_size, num_hidden_layers and num_attention_heads must be positive");
        }
        if self.head_size.is_none() && !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            bail!(
                "hidden_size {} is not a multiple of num_attention_heads {}",
                self.hidden_size,
                self.num_attention_heads
            );
        }
        if self.intermediate_size == 0 || self.vocab_size == 0 {
            bail!("intermediate_size and vocab_size must be positive");
        }
        match self.hidden_act.as_str() {
            "gelu" | "gelu_new" | "gelu_pytorch_tanh" | "relu" => Ok(()),
            other => bail!("hidden_act '{other}' is not supported (gelu, gelu_new, relu)"),
        }
    }
}
