//! Export of a decoder run's subnet in the chosen format, with its manifest.

use super::decoder::{export_gguf, export_hf, tokenizer_metadata, GgufType};
use crate::cli::forward::resolve_spec;
use crate::lm::LmTrainer;
use anyhow::{bail, Context, Result};
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

/// Exports `subnet` (default: the run's first student) of a trained decoder run.
pub fn export_run_subnet(
    trainer: &LmTrainer,
    subnet: Option<&str>,
    format: ExportFormat,
    out: &Path,
) -> Result<Vec<PathBuf>> {
    let shape = trainer.teacher.decoder.shape();
    let spec = match subnet {
        Some(s) => resolve_spec(Some(s), &shape)?,
        None => trainer
            .report_subnets()
            .first()
            .map(|(_, s)| s.clone())
            .context("the run has no subnet to export")?,
    };
    let c = &trainer.config;
    let measured = std::fs::read_to_string(trainer.run_dir.join("lm-palette.csv")).ok();
    let manifest = serde_json::json!({
        "created_by": format!("mlfs-studio {}", env!("CARGO_PKG_VERSION")),
        "teacher": c.teacher.display().to_string(),
        "subnet": spec.to_string(),
        "layers_kept_from_teacher": spec.layers,
        "run": c.name,
        "lm": c.lm,
        "mlfs": { "rank": c.rank, "lora_alpha": c.lora_alpha, "gamma": c.gamma,
                  "distill": c.distill, "stages": c.stages, "seed": c.seed },
        "measurements_csv": measured,
    });
    let net = trainer.net();
    match format {
        ExportFormat::HfFolder => export_hf(net, &trainer.teacher.tokenizer, &spec, manifest, out),
        ExportFormat::Gguf(kind) => {
            let meta = tokenizer_metadata(&trainer.teacher.source)?;
            let name = format!("{} {}", c.name, spec);
            Ok(vec![export_gguf(net, &spec, &meta, &name, kind, out)?])
        }
    }
}
