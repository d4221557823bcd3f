//! Writing an exported subnet folder: all files or nothing, with clear errors.

use anyhow::{bail, Context, Result};
use candle_core::Tensor;
use std::path::{Path, PathBuf};

/// The files of one export, rendered in memory before anything touches the disk.
pub struct ExportFiles {
    /// The model file's name: `model.safetensors` or `model.onnx`.
    pub model_file: &'static str,
    pub model: Vec<u8>,
    pub config_json: Vec<u8>,
    pub tokenizer_json: Vec<u8>,
    pub manifest_json: Vec<u8>,
}

impl ExportFiles {
    /// Every file as (name, bytes).
    fn list(&self) -> [(&'static str, &[u8]); 4] {
        [
            (self.model_file, &self.model),
            ("config.json", &self.config_json),
            ("tokenizer.json", &self.tokenizer_json),
            ("manifest.json", &self.manifest_json),
        ]
    }
}

/// safetensors bytes of f32 tensors.
pub fn safetensors_bytes(tensors: &[(String, Tensor)]) -> Result<Vec<u8>> {
    let mut raw: Vec<(String, Vec<u8>, Vec<usize>)> = Vec::with_capacity(tensors.len());
    for (name, t) in tensors {
        let values = t
            .to_dtype(candle_core::DType::F32)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        raw.push((
            name.clone(),
            values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            t.dims().to_vec(),
        ));
    }
    let views = raw
        .iter()
        .map(|(n, b, s)| {
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b)
                .map(|v| (n.clone(), v))
                .map_err(|e| anyhow::anyhow!("tensor '{n}': {e}"))
        })
        .collect::<Result<Vec<_>>>()?;
    safetensors::tensor::serialize(views, None)
        .map_err(|e| anyhow::anyhow!("cannot serialise tensors: {e}"))
}

/// The staging folder an interrupted export left inside its target (before exports staged
/// beside it): nothing a user wrote, removed on retry.
const STALE_INNER_STAGING: &str = ".mlfs-export.partial";

/// Checks that `out` can receive an export: an empty folder, or a new one in an existing parent.
pub fn check_target(out: &Path) -> Result<()> {
    if out.exists() {
        if !out.is_dir() {
            bail!("{}: exists and is not a folder", out.display());
        }
        let entries = std::fs::read_dir(out)
            .with_context(|| format!("{}: cannot read folder", out.display()))?;
        let mut entries = entries.filter(|e| {
            e.as_ref()
                .map_or(true, |e| e.file_name() != STALE_INNER_STAGING)
        });
        if entries.next().is_some() {
            bail!(
                "{}: folder is not empty; choose an empty or new folder",
                out.display()
            );
        }
    } else {
        existing_parent(out)?;
    }
    Ok(())
}

/// The folder a new `out` goes into; an error naming both when that folder does not exist.
pub fn existing_parent(out: &Path) -> Result<&Path> {
    let parent = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if !parent.is_dir() {
        bail!(
            "{}: the parent folder {} does not exist",
            out.display(),
            parent.display()
        );
    }
    Ok(parent)
}

/// Writes the files into `out` through a staging folder; on any failure nothing is left behind.
pub fn write_export(out: &Path, files: &ExportFiles) -> Result<Vec<PathBuf>> {
    check_target(out)?;
    let existed = out.exists();
    if existed {
        std::fs::remove_dir_all(out.join(STALE_INNER_STAGING)).ok();
    }
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_else(|| "export".into());
    // Beside the target, never inside it: an interrupted export leaves the target as it was,
    // and the next attempt replaces the leftover staging folder.
    let staging = existing_parent(out)?.join(format!(".{name}.mlfs-export.partial"));
    if staging.exists() {
        std::fs::remove_dir_all(&staging).with_context(|| {
            format!(
                "{}: cannot remove a stale staging folder",
                staging.display()
            )
        })?;
    }
    let result = stage_and_move(out, &staging, existed, files);
    if result.is_err() {
        std::fs::remove_dir_all(&staging).ok();
        if existed {
            // The folder was empty before: whatever is in it now is ours.
            for (file, _) in files.list() {
                std::fs::remove_file(out.join(file)).ok();
            }
        } else {
            std::fs::remove_dir_all(out).ok();
        }
    }
    result
}

fn stage_and_move(
    out: &Path,
    staging: &Path,
    existed: bool,
    files: &ExportFiles,
) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(staging)
        .with_context(|| format!("{}: cannot write into this folder", out.display()))?;
    let list = files.list();
    for (file, bytes) in list {
        let path = staging.join(file);
        std::fs::write(&path, bytes)
            .with_context(|| format!("{}: cannot write {file}", out.display()))?;
    }
    let mut written = Vec::new();
    if existed {
        for (file, _) in list {
            std::fs::rename(staging.join(file), out.join(file))
                .with_context(|| format!("{}: cannot move {file} into place", out.display()))?;
            written.push(out.join(file));
        }
        std::fs::remove_dir_all(staging).ok();
    } else {
        std::fs::rename(staging, out)
            .with_context(|| format!("{}: cannot move the export into place", out.display()))?;
        written = list.iter().map(|(f, _)| out.join(f)).collect();
    }
    Ok(written)
}
