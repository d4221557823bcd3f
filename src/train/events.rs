//! The run's event log: every event goes to `metrics.jsonl` and then to the caller's sink.

use super::protocol::TrainEvent;
use crate::files::append::{drop_torn_tail, AppendFile};
use crate::files::shown;
use std::path::{Path, PathBuf};

/// Appends events to a run folder's `metrics.jsonl` (opened on first use).
pub struct EventLog {
    path: PathBuf,
    file: Option<AppendFile>,
    /// Set once the log could not be opened or written: said once, then events only reach the
    /// sink (a full disk must not stop training).
    failed: bool,
}

impl EventLog {
    /// A log for the run in `run_dir`.
    pub fn new(run_dir: &Path) -> Self {
        Self {
            path: run_dir.join("metrics.jsonl"),
            file: None,
            failed: false,
        }
    }

    /// A log that writes nothing (ranks other than 0 of a data-parallel run): events only
    /// reach the sink.
    pub fn silent(run_dir: &Path) -> Self {
        Self {
            path: run_dir.join("metrics.jsonl"),
            file: None,
            failed: true,
        }
    }

    /// Cuts a torn last line (a writer killed mid-line) off the log before a resumed run appends
    /// to it; returns a warning to show when it did.
    pub fn repair(&self) -> anyhow::Result<Option<String>> {
        let dropped = drop_torn_tail(&self.path)?;
        Ok((dropped > 0).then(|| {
            format!(
                "{}: dropped a torn last line ({dropped} bytes) left by an interrupted run",
                shown(&self.path)
            )
        }))
    }

    /// Writes `event` as one JSON line and hands it to `sink`; the first failure to write is
    /// handed on as a warning, so a run whose log cannot be kept says so.
    pub fn emit(&mut self, event: TrainEvent, sink: &mut dyn FnMut(TrainEvent)) {
        let mut problem = None;
        if !self.failed {
            if self.file.is_none() {
                match AppendFile::open(&self.path) {
                    Ok(f) => self.file = Some(f),
                    Err(e) => problem = Some(format!("{e:#}")),
                }
            }
            if let (Some(file), Ok(line)) = (self.file.as_mut(), serde_json::to_string(&event)) {
                if let Err(e) = file.append_line(&line) {
                    problem = Some(format!("{}: cannot write: {e}", shown(&self.path)));
                }
            }
        }
        sink(event);
        if let Some(why) = problem {
            self.failed = true;
            self.file = None;
            sink(TrainEvent::log(
                "warn",
                format!("{why}; events from here on are not kept in the run folder"),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unwritable_log_is_reported_once() {
        let dir = tempfile::tempdir().unwrap();
        // A folder where the log should be: it cannot be opened for appending.
        std::fs::create_dir(dir.path().join("metrics.jsonl")).unwrap();
        let mut log = EventLog::new(dir.path());
        let mut seen = Vec::new();
        for _ in 0..3 {
            log.emit(TrainEvent::log("info", "x"), &mut |e| seen.push(e));
        }
        let warnings = seen
            .iter()
            .filter(|e| matches!(e, TrainEvent::Log { level, .. } if level == "warn"))
            .count();
        assert_eq!(seen.len(), 4);
        assert_eq!(warnings, 1);
    }
}
