//! Writing an exported subnet folder: all files or nothing, with clear errors.

use crate::files::shown;
use anyhow::{bail, Context, Result};
use candle_core::Tensor;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
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

/// Ends the names of staging folders, which are created beside the target.
const STAGING_SUFFIX: &str = ".mlfs-export.partial";

/// Checks that `out` can receive an export: an empty folder, or a new one in an existing parent.
/// A symbolic link at `out` is refused (a dangling one would send the export elsewhere).
pub fn check_target(out: &Path) -> Result<()> {
    match out.symlink_metadata() {
        Ok(m) if m.file_type().is_symlink() => {
            bail!("{}: is a symbolic link; choose a real folder", shown(out))
        }
        Ok(m) if !m.is_dir() => bail!("{}: exists and is not a folder", shown(out)),
        Ok(_) => {
            let entries = std::fs::read_dir(out)
                .with_context(|| format!("{}: cannot read folder", shown(out)))?;
            let mut entries = entries.filter(|e| {
                e.as_ref()
                    .map_or(true, |e| e.file_name() != STALE_INNER_STAGING)
            });
            if entries.next().is_some() {
                bail!(
                    "{}: folder is not empty; choose an empty or new folder",
                    shown(out)
                );
            }
        }
        Err(_) => {
            existing_parent(out)?;
        }
    }
    Ok(())
}

/// The folder a new `out` goes into; an error naming both when that folder does not exist.
pub fn existing_parent(out: &Path) -> Result<&Path> {
    let parent = crate::files::atomic::folder_of(out);
    if !parent.is_dir() {
        bail!(
            "{}: the parent folder {} does not exist",
            shown(out),
            shown(parent)
        );
    }
    Ok(parent)
}

/// Staging folders that earlier, interrupted exports to `out` left beside it (real folders
/// only, named by us).
fn stale_staging(parent: &Path, name: &str) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return Vec::new();
    };
    let prefix = format!(".{name}.");
    // Builds before random names used this one.
    let legacy = format!(".{name}{STAGING_SUFFIX}");
    entries
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter(|e| {
            let n = e.file_name();
            let n = n.to_string_lossy();
            // Exactly ours: the prefix, six random characters, the suffix (a target whose
            // name extends this one has its own staging folders).
            *n == legacy
                || n.strip_prefix(&prefix)
                    .and_then(|r| r.strip_suffix(STAGING_SUFFIX))
                    .is_some_and(|r| r.len() == 6 && r.chars().all(|c| c.is_ascii_alphanumeric()))
        })
        .map(|e| e.path())
        .collect()
}

/// Writes the files into `out` through a staging folder beside it, then one rename: the target
/// holds the whole export or is as it was (an empty target folder is replaced by the rename).
pub fn write_export(out: &Path, files: &ExportFiles) -> Result<Vec<PathBuf>> {
    check_target(out)?;
    let parent = existing_parent(out)?;
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_else(|| "export".into());
    for stale in stale_staging(parent, &name) {
        std::fs::remove_dir_all(stale).ok();
    }
    let staging = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(STAGING_SUFFIX)
        .permissions(std::fs::Permissions::from_mode(0o755))
        .tempdir_in(parent)
        .with_context(|| format!("{}: cannot write into this folder", shown(parent)))?;
    let list = files.list();
    for (file, bytes) in list {
        write_new(&staging.path().join(file), bytes)
            .with_context(|| format!("{}: cannot write {file}", shown(out)))?;
    }
    if out.symlink_metadata().is_ok() {
        // An empty folder (check_target said so); an old version's staging folder inside it
        // is the only thing it may hold.
        std::fs::remove_dir_all(out.join(STALE_INNER_STAGING)).ok();
    }
    let staged = staging.keep();
    if let Err(e) = std::fs::rename(&staged, out) {
        std::fs::remove_dir_all(&staged).ok();
        return Err(e).with_context(|| {
            format!(
                "{}: cannot move the export into place (is the folder still empty?)",
                shown(out)
            )
        });
    }
    Ok(list.iter().map(|(f, _)| out.join(f)).collect())
}

/// Creates `path` (which must not exist: `O_EXCL`), writes and syncs it.
fn write_new(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}
