//! The data a run was started on (sizes and SHA-256 of its files), written when the run is
//! created and checked when it resumes: continuing on changed data would silently mix two
//! trainings in one run.

use super::config::RunConfig;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

const FILE: &str = "data.json";

/// One data file (or each file below a data folder) as it was.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataFile {
    pub path: PathBuf,
    pub bytes: u64,
    pub sha256: String,
}

/// The files of a run's training, dev and test data.
pub fn record(config: &RunConfig) -> Result<Vec<DataFile>> {
    let mut out = Vec::new();
    let d = &config.data;
    for path in [&d.train, &d.dev, &d.test] {
        let path = RunConfig::resolve(path);
        let mut files = vec![path.clone()];
        if path.is_dir() {
            files = std::fs::read_dir(&path)
                .with_context(|| format!("{}: cannot read folder", path.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file())
                .collect();
            files.sort();
        }
        for file in files.into_iter().filter(|f| f.is_file()) {
            if out.iter().any(|r: &DataFile| r.path == file) {
                continue;
            }
            let bytes = std::fs::read(&file)
                .with_context(|| format!("{}: cannot read data file", file.display()))?;
            let sha256 = format!("{:x}", Sha256::digest(&bytes));
            out.push(DataFile {
                path: file,
                bytes: bytes.len() as u64,
                sha256,
            });
        }
    }
    Ok(out)
}

/// Writes the record of `config`'s data into the run folder.
pub fn save(run_dir: &Path, config: &RunConfig) -> Result<()> {
    let json = serde_json::to_vec_pretty(&record(config)?)?;
    crate::files::write_atomic(&run_dir.join(FILE), &json)
}

/// Checks the data against the record made when the run started (runs from before records
/// were kept have none and pass).
pub fn check(run_dir: &Path, config: &RunConfig) -> Result<()> {
    let path = run_dir.join(FILE);
    if path.symlink_metadata().is_err() {
        return Ok(());
    }
    let text = crate::files::read_text(&path, "data record")?;
    let then: Vec<DataFile> = serde_json::from_str(&text)
        .with_context(|| format!("{}: invalid data record", path.display()))?;
    let now = record(config)?;
    for old in &then {
        match now.iter().find(|f| f.path == old.path) {
            Some(f) if f == old => {}
            Some(f) => bail!(
                "{}: changed since the run started ({} bytes then, {} now); resume with \
                 --allow-changed-data to continue on it anyway",
                old.path.display(),
                old.bytes,
                f.bytes
            ),
            None => bail!(
                "{}: the run started on this file and it is gone; resume with \
                 --allow-changed-data to continue without it",
                old.path.display()
            ),
        }
    }
    Ok(())
}
