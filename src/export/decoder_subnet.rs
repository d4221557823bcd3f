//! Export of a decoder supernet's subnet in the chosen format (Hugging Face folder or GGUF).

use super::decoder::{export_gguf, export_hf, tokenizer_metadata, GgufType};
use crate::mlfs::decoder::DecoderSupernet;
use crate::model::SubnetSpec;
use anyhow::{bail, Result};
use std::path::{Path, PathBuf};

/// What a decoder export writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    /// A Hugging Face Llama folder.
    HfFolder,
    /// A llama.cpp GGUF file.
    Gguf(GgufType),
}

impl ExportFormat {
    /// Parses `hf`, `gguf-f16` or `gguf-f32`.
    pub fn parse(text: &str) -> Result<Self> {
        Ok(match text {
            "hf" => Self::HfFolder,
            "gguf-f16" | "gguf" => Self::Gguf(GgufType::F16),
            "gguf-f32" => Self::Gguf(GgufType::F32),
            other => bail!("unknown export format '{other}' (hf, gguf-f16, gguf-f32)"),
        })
    }
}

/// Exports subnet `spec` of a trained decoder supernet (adapters merged) in `format`.
pub fn export_subnet(
    net: &DecoderSupernet,
    spec: &SubnetSpec,
    manifest: serde_json::Value,
    format: ExportFormat,
    out: &Path,
) -> Result<Vec<PathBuf>> {
    let teacher = &net.teacher;
    match format {
        ExportFormat::HfFolder => export_hf(net.net(), &teacher.tokenizer, spec, manifest, out),
        ExportFormat::Gguf(kind) => {
            let meta = tokenizer_metadata(&teacher.source)?;
            let run = manifest["run"].as_str().unwrap_or("mlfs");
            let name = format!("{run} {spec}");
            Ok(vec![export_gguf(net.net(), spec, &meta, &name, kind, out)?])
        }
    }
}
