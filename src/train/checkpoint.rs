//! Atomic checkpoints with a completeness marker: everything a resume needs.

use crate::mlfs::rewire::LayerOrder;
use crate::model::weights::{save_f32, WeightStore};
use anyhow::{bail, Context, Result};
use candle_core::Tensor;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
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
}

/// A checkpoint read back: its state, its tensors by name, and its folder.
pub type LoadedCheckpoint = (CheckpointState, HashMap<String, Tensor>, PathBuf);

/// Folder of all checkpoints of a run.
pub fn checkpoints_dir(run_dir: &Path) -> PathBuf {
    run_dir.join("checkpoints")
}

/// Writes a checkpoint into a temp folder, marks it complete, then renames it into place.
pub fn save(
    run_dir: &Path,
    state: &CheckpointState,
    tensors: &[(String, Tensor)],
) -> Result<PathBuf> {
    let root = checkpoints_dir(run_dir);
    std::fs::create_dir_all(&root)
        .with_context(|| format!("{}: cannot create checkpoint folder", root.display()))?;
    let name = format!("step-{:08}", state.global_step);
    let final_dir = root.join(&name);
    let tmp_dir = root.join(format!("{name}.partial"));
    if tmp_dir.exists() {
        std::fs::remove_dir_all(&tmp_dir).ok();
    }
    std::fs::create_dir_all(&tmp_dir)
        .with_context(|| format!("{}: cannot create checkpoint", tmp_dir.display()))?;
    save_f32(&tmp_dir.join(TENSORS), tensors)?;
    let json = serde_json::to_vec_pretty(state)?;
    crate::util::write_atomic(&tmp_dir.join(STATE), &json)?;
    crate::util::write_atomic(&tmp_dir.join(MARKER), b"ok\n")?;
    if final_dir.exists() {
        std::fs::remove_dir_all(&final_dir).ok();
    }
    std::fs::rename(&tmp_dir, &final_dir)
        .with_context(|| format!("{}: cannot move checkpoint into place", final_dir.display()))?;
    prune(&root)?;
    Ok(final_dir)
}

fn complete_checkpoints(root: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(root)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.join(MARKER).is_file() && !p.to_string_lossy().ends_with(".partial"))
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found
}

fn prune(root: &Path) -> Result<()> {
    let all = complete_checkpoints(root);
    if all.len() > KEEP {
        for old in &all[..all.len() - KEEP] {
            std::fs::remove_dir_all(old).ok();
        }
    }
    Ok(())
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
    let text = std::fs::read_to_string(&state_path)
        .with_context(|| format!("{}: cannot read checkpoint state", state_path.display()))?;
    let state: CheckpointState = serde_json::from_str(&text)
        .with_context(|| format!("{}: invalid checkpoint state", state_path.display()))?;
    let tensors = WeightStore::load(&dir.join(TENSORS), &[])?.into_tensors();
    Ok((state, tensors))
}
