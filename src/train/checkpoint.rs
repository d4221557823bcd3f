//! Atomic checkpoints with a completeness marker: everything a resume needs.

use crate::files::shown;
use crate::mlfs::rewire::LayerOrder;
use crate::model::weights::{save_f32, WeightStore};
use anyhow::{bail, Context, Result};
use candle_core::Tensor;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

const MARKER: &str = "COMPLETE";
const TENSORS: &str = "state.safetensors";
const STATE: &str = "state.json";
/// Checkpoints kept on disk (older ones are removed after a new one is complete).
const KEEP: usize = 2;

/// The scalar part of a checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointState {
    /// Optimizer steps completed; the run continues at this global step.
    pub global_step: usize,
    /// The stage the optimizer moments belong to (if any were saved).
    pub optimizer_stage: Option<usize>,
    /// Adam's step count for bias correction.
    pub optimizer_t: usize,
    /// Rewiring orders applied to the teacher, if rewiring has happened.
    pub orders: Option<Vec<LayerOrder>>,
    /// The stage budgets the run had when this was saved (absent in older checkpoints): a resume
    /// checks that `config.ron` was not edited to move steps already taken into another stage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage_steps: Option<Vec<usize>>,
}

/// A checkpoint read back: its state, its tensors by name, and its folder.
pub type LoadedCheckpoint = (CheckpointState, HashMap<String, Tensor>, PathBuf);

/// Folder of all checkpoints of a run.
pub fn checkpoints_dir(run_dir: &Path) -> PathBuf {
    run_dir.join("checkpoints")
}

/// A folder of the run that we create and prune: never a symbolic link, so pruning and
/// writing stay inside the run folder.
fn real_folder(path: &Path) -> Result<()> {
    match path.symlink_metadata() {
        Ok(m) if m.file_type().is_symlink() => bail!(
            "{}: is a symbolic link; checkpoints are only written inside the run folder",
            shown(path)
        ),
        Ok(m) if !m.is_dir() => bail!("{}: exists and is not a folder", shown(path)),
        Ok(_) => Ok(()),
        Err(_) => std::fs::DirBuilder::new()
            .mode(0o755)
            .create(path)
            .with_context(|| format!("{}: cannot create checkpoint folder", shown(path))),
    }
}

/// Writes a checkpoint into a fresh temporary folder (unpredictable name, created exclusively),
/// marks it complete, then renames it into place and prunes the oldest.
pub fn save(
    run_dir: &Path,
    state: &CheckpointState,
    tensors: &[(String, Tensor)],
) -> Result<PathBuf> {
    let root = checkpoints_dir(run_dir);
    real_folder(&root)?;
    let name = format!("step-{:08}", state.global_step);
    let final_dir = root.join(&name);
    let tmp_dir = tempfile::Builder::new()
        .prefix(&format!("{name}."))
        .suffix(PARTIAL)
        .permissions(std::fs::Permissions::from_mode(0o755))
        .tempdir_in(&root)
        .with_context(|| format!("{}: cannot create checkpoint", shown(&root)))?;
    save_f32(&tmp_dir.path().join(TENSORS), tensors)?;
    let json = serde_json::to_vec_pretty(state)?;
    crate::files::write_atomic(&tmp_dir.path().join(STATE), &json)?;
    crate::files::write_atomic(&tmp_dir.path().join(MARKER), b"ok\n")?;
    // The same step saved again (stopped, resumed, stopped at once): the old one is moved
    // aside first and removed only once the new one is in place, so a kill in between leaves
    // one of them (a link planted there is moved itself, never followed).
    let aside = root.join(format!("{name}.replaced{PARTIAL}"));
    let replaced =
        final_dir.symlink_metadata().is_ok() && std::fs::rename(&final_dir, &aside).is_ok();
    let tmp_path = tmp_dir.keep();
    std::fs::rename(&tmp_path, &final_dir)
        .with_context(|| format!("{}: cannot move checkpoint into place", shown(&final_dir)))?;
    if replaced {
        if aside.symlink_metadata().is_ok_and(|m| m.is_dir()) {
            std::fs::remove_dir_all(&aside).ok();
        } else {
            std::fs::remove_file(&aside).ok();
        }
    }
    // Checked again right before pruning: the folder may have been swapped for a link.
    real_folder(&root)?;
    prune(&root);
    Ok(final_dir)
}

/// Suffix of a checkpoint folder still being written (or left by a killed run).
const PARTIAL: &str = ".partial";

/// Checkpoint folders directly inside `root` (real folders, not links), complete ones only
/// unless `partial`.
fn checkpoint_folders(root: &Path, partial: bool) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(root) else {
        return Vec::new();
    };
    let mut found: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name.starts_with("step-") && name.ends_with(PARTIAL) == partial
        })
        .map(|e| e.path())
        .filter(|p| partial || p.join(MARKER).symlink_metadata().is_ok_and(|m| m.is_file()))
        .collect();
    found.sort();
    found
}

fn complete_checkpoints(root: &Path) -> Vec<PathBuf> {
    checkpoint_folders(root, false)
}

/// Removes all but the newest [`KEEP`] complete checkpoints and any partial one a killed run
/// left; only real folders inside the run's own checkpoint folder are touched.
fn prune(root: &Path) {
    let all = complete_checkpoints(root);
    if all.len() > KEEP {
        for old in &all[..all.len() - KEEP] {
            std::fs::remove_dir_all(old).ok();
        }
    }
    for stale in checkpoint_folders(root, true) {
        std::fs::remove_dir_all(stale).ok();
    }
}

/// The latest complete checkpoint of a run that reads back, with a line for each newer one
/// that did not (a corrupt file falls back to the intact checkpoint before it).
pub fn latest(run_dir: &Path) -> Result<Option<(LoadedCheckpoint, Vec<String>)>> {
    let mut skipped = Vec::new();
    for dir in complete_checkpoints(&checkpoints_dir(run_dir))
        .into_iter()
        .rev()
    {
        match read(&dir) {
            Ok((state, tensors)) => return Ok(Some(((state, tensors, dir), skipped))),
            Err(e) => skipped.push(format!("{e:#}")),
        }
    }
    if let Some(first) = skipped.first() {
        bail!("no checkpoint of {} reads back: {first}", run_dir.display());
    }
    Ok(None)
}

/// Global steps of the complete checkpoints on disk, oldest first.
pub fn complete_steps(run_dir: &Path) -> Vec<usize> {
    complete_checkpoints(&checkpoints_dir(run_dir))
        .iter()
        .filter_map(|d| d.file_name()?.to_str()?.strip_prefix("step-")?.parse().ok())
        .collect()
}

fn read(dir: &Path) -> Result<(CheckpointState, HashMap<String, Tensor>)> {
    let state_path = dir.join(STATE);
    let text = crate::files::read_text(&state_path, "checkpoint state")?;
    let state: CheckpointState = serde_json::from_str(&text)
        .with_context(|| format!("{}: invalid checkpoint state", state_path.display()))?;
    let tensors = WeightStore::load(&dir.join(TENSORS), &[])?.into_tensors();
    Ok((state, tensors))
}
