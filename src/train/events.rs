//! The run's event log: every event goes to `metrics.jsonl` and then to the caller's sink.

use super::protocol::TrainEvent;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Appends events to a run folder's `metrics.jsonl` (opened on first use).
pub struct EventLog {
    path: PathBuf,
    file: Option<std::fs::File>,
}

impl EventLog {
    /// A log for the run in `run_dir`.
    pub fn new(run_dir: &Path) -> Self {
        Self {
            path: run_dir.join("metrics.jsonl"),
            file: None,
        }
    }

    /// Writes `event` as one JSON line (best effort: a full disk must not stop training) and
    /// hands it to `sink`.
    pub fn emit(&mut self, event: TrainEvent, sink: &mut dyn FnMut(TrainEvent)) {
        if self.file.is_none() {
            self.file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)
                .ok();
        }
        if let (Some(file), Ok(line)) = (self.file.as_mut(), serde_json::to_string(&event)) {
            let _ = writeln!(file, "{line}");
        }
        sink(event);
    }
}
