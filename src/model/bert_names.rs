//! The one table of BERT tensor names (Hugging Face's `BertModel`), read by the loader, the
//! merged-weights writer and the ONNX writer. Names are module paths: `.weight` and `.bias`
//! follow them; exports put them under `bert.` (as `BertForSequenceClassification` does).

/// The embeddings' modules.
pub const WORD_EMBEDDINGS: &str = "embeddings.word_embeddings";
pub const POSITION_EMBEDDINGS: &str = "embeddings.position_embeddings";
pub const TOKEN_TYPE_EMBEDDINGS: &str = "embeddings.token_type_embeddings";
pub const EMBEDDINGS_NORM: &str = "embeddings.LayerNorm";
/// The pooler's dense layer (sentence-transformers checkpoints may lack it).
pub const POOLER: &str = "pooler.dense";
/// What exports put before every encoder name.
pub const EXPORT_PREFIX: &str = "bert.";

/// Per-layer modules after `encoder.layer.{i}.`, in the order of [`LayerModule`].
const LAYER_MODULES: [&str; 8] = [
    "attention.self.query",
    "attention.self.key",
    "attention.self.value",
    "attention.output.dense",
    "attention.output.LayerNorm",
    "intermediate.dense",
    "output.dense",
    "output.LayerNorm",
];

/// One module of an encoder layer, named through [`LAYER_MODULES`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerModule {
    Query,
    Key,
    Value,
    AttentionOut,
    AttentionNorm,
    FfnIn,
    FfnOut,
    OutputNorm,
}

impl LayerModule {
    /// The module path in layer `layer` (`encoder.layer.3.attention.self.query`).
    pub fn at(self, layer: usize) -> String {
        format!("encoder.layer.{layer}.{}", LAYER_MODULES[self as usize])
    }

    /// The same under the export prefix (`bert.encoder.layer.3.attention.self.query`).
    pub fn exported(self, layer: usize) -> String {
        format!("{EXPORT_PREFIX}{}", self.at(layer))
    }
}

/// An encoder module's name under the export prefix (`bert.embeddings.LayerNorm`).
pub fn exported(module: &str) -> String {
    format!("{EXPORT_PREFIX}{module}")
}
