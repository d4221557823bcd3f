//! Follows the runs folder as TensorBoard follows a log directory: a thread that, every
//! second, lists the run folders, reads what each `metrics.jsonl` gained since last time (from
//! where it stopped, complete lines only), notices palette files rewritten and which process
//! holds each run, and sends the window plain-data updates. Runs written by another process (a
//! headless `train`, a second studio) thus appear, grow and finish in the Runs tab and in an
//! opened run's charts.

use super::run_view::RunView;
use super::runs_browser::RunRow;
use crate::train::protocol::TrainEvent;
use crossbeam_channel::{Receiver, Sender};
use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// What the watcher tells the window.
#[derive(Debug, Clone)]
pub enum RunsUpdate {
    /// A run folder's row, new or changed.
    Row(Box<RunRow>),
    /// A run folder that is no longer there (deleted, renamed).
    Gone(PathBuf),
    /// Events appended to a run's `metrics.jsonl` since the last update, each with the byte
    /// offset its line ends at (a view that read the file up to some offset takes only what
    /// lies beyond it), and the process writing the run now (if any).
    Events {
        dir: PathBuf,
        from: u64,
        events: Vec<(u64, TrainEvent)>,
        writer: Option<u32>,
    },
    /// A run's palette file was rewritten (rows measured by another process).
    PaletteChanged(PathBuf),
}

/// What the watcher knows of one run folder.
struct Followed {
    view: Result<RunView, String>,
    /// Bytes of `metrics.jsonl` folded in so far (always at a line's end).
    offset: u64,
    /// Lines folded in so far, for error messages.
    lines: usize,
    palettes: Option<SystemTime>,
    writer: Option<u32>,
}

/// The watcher thread's handle; dropping it stops the thread.
pub struct RunsWatcher {
    pub root: PathBuf,
    updates: Receiver<RunsUpdate>,
    stop: Arc<AtomicBool>,
}

impl Drop for RunsWatcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl RunsWatcher {
    /// Starts following `root`, looking every `period`; `wake` is called after each batch of
    /// updates (the window's repaint request).
    pub fn start(root: PathBuf, period: Duration, wake: impl Fn() + Send + 'static) -> Self {
        let (tx, rx) = crossbeam_channel::unbounded();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let folder = root.clone();
        let spawned = std::thread::Builder::new()
            .name("runs-watch".into())
            .spawn(move || {
                let mut followed = HashMap::new();
                while !stopped.load(Ordering::Relaxed) {
                    if look(&folder, &mut followed, &tx) {
                        wake();
                    }
                    std::thread::sleep(period);
                }
            });
        if let Err(e) = spawned {
            // Without the thread the Runs tab still lists runs on Rescan.
            eprintln!("cannot follow {}: {e}", root.display());
        }
        Self {
            root,
            updates: rx,
            stop,
        }
    }

    /// The updates since the last call.
    pub fn drain(&self) -> Vec<RunsUpdate> {
        self.updates.try_iter().collect()
    }
}

/// The newest modification time of a run's palette files.
fn palettes_modified(dir: &Path) -> Option<SystemTime> {
    ["palette.csv", "lm-palette.csv"]
        .iter()
        .filter_map(|f| {
            std::fs::metadata(dir.join(f))
                .and_then(|m| m.modified())
                .ok()
        })
        .max()
}

/// One look at the folder: sends what changed; true when anything did.
fn look(root: &Path, followed: &mut HashMap<PathBuf, Followed>, tx: &Sender<RunsUpdate>) -> bool {
    let dirs = super::runs_browser::run_dirs(root);
    let mut sent = false;
    let gone: Vec<PathBuf> = followed
        .keys()
        .filter(|d| !dirs.contains(d))
        .cloned()
        .collect();
    for dir in gone {
        followed.remove(&dir);
        sent |= tx.send(RunsUpdate::Gone(dir)).is_ok();
    }
    for dir in dirs {
        let writer = crate::files::lock::live_writer_of(&dir);
        let palettes = palettes_modified(&dir);
        let Some(run) = followed.get_mut(&dir) else {
            let run = first_read(&dir, writer, palettes);
            sent |= send_row(tx, &dir, &run);
            followed.insert(dir, run);
            continue;
        };
        let mut changed = run.writer != writer;
        run.writer = writer;
        let from = run.offset;
        match grown(&dir, run) {
            Ok(events) if !events.is_empty() => {
                changed = true;
                sent |= tx
                    .send(RunsUpdate::Events {
                        dir: dir.clone(),
                        from,
                        events,
                        writer,
                    })
                    .is_ok();
            }
            Ok(_) => {}
            Err(reread) => {
                // The file was replaced or cut shorter: read it whole again.
                *run = *reread;
                changed = true;
            }
        }
        if run.palettes != palettes {
            run.palettes = palettes;
            if let Ok(view) = &mut run.view {
                view.reload_palettes();
            }
            sent |= tx.send(RunsUpdate::PaletteChanged(dir.clone())).is_ok();
            changed = true;
        }
        if changed {
            sent |= send_row(tx, &dir, run);
        }
    }
    sent
}

fn send_row(tx: &Sender<RunsUpdate>, dir: &Path, run: &Followed) -> bool {
    let row = RunRow::of(dir, run.view.as_ref(), run.writer);
    tx.send(RunsUpdate::Row(Box::new(row))).is_ok()
}

fn first_read(dir: &Path, writer: Option<u32>, palettes: Option<SystemTime>) -> Followed {
    match RunView::read_live(dir) {
        Ok((view, offset, lines)) => Followed {
            lines,
            view: Ok(view),
            offset,
            palettes,
            writer,
        },
        Err(e) => Followed {
            view: Err(format!("{e:#}")),
            offset: 0,
            lines: 0,
            palettes,
            writer,
        },
    }
}

/// The events `metrics.jsonl` gained since `run.offset` (complete lines only, each with the
/// offset its line ends at), folded into `run.view`; `Err` with a fresh read when the file is
/// shorter than what was read.
fn grown(dir: &Path, run: &mut Followed) -> Result<Vec<(u64, TrainEvent)>, Box<Followed>> {
    let path = dir.join("metrics.jsonl");
    let len = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    if len < run.offset {
        return Err(Box::new(first_read(dir, run.writer, run.palettes)));
    }
    if len == run.offset || run.view.is_err() {
        return Ok(Vec::new());
    }
    let mut added = Vec::new();
    let read = std::fs::File::open(&path).and_then(|mut f| {
        f.seek(SeekFrom::Start(run.offset))?;
        // At most what the file held when asked (a writer may be appending).
        f.take(len - run.offset).read_to_end(&mut added)
    });
    if read.is_err() {
        return Ok(Vec::new());
    }
    // Complete lines only: a line being written waits for the next look.
    let Some(end) = added.iter().rposition(|&b| b == b'\n') else {
        return Ok(Vec::new());
    };
    let mut events = Vec::new();
    let mut line_start = 0usize;
    for (i, line) in added[..=end].split(|&b| b == b'\n').enumerate() {
        let line_end = run.offset + (line_start + line.len() + 1) as u64;
        line_start += line.len() + 1;
        let text = String::from_utf8_lossy(line);
        if text.trim().is_empty() {
            continue;
        }
        let event = serde_json::from_str::<TrainEvent>(&text).unwrap_or_else(|e| {
            TrainEvent::log(
                "warn",
                format!(
                    "{}:{}: invalid event skipped ({e})",
                    crate::files::shown(&path),
                    run.lines + i + 1
                ),
            )
        });
        events.push((line_end.min(run.offset + end as u64 + 1), event));
    }
    run.lines += added[..=end].iter().filter(|&&b| b == b'\n').count();
    run.offset += end as u64 + 1;
    if let Ok(view) = &mut run.view {
        for (_, event) in &events {
            view.apply(event.clone());
        }
    }
    Ok(events)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn event_line(step: usize) -> String {
        let e = TrainEvent::log("info", format!("line {step}"));
        format!("{}\n", serde_json::to_string(&e).unwrap())
    }

    #[test]
    fn a_growing_metrics_file_is_read_from_where_it_stopped_complete_lines_only() {
        let root = tempfile::tempdir().unwrap();
        let (tx, rx) = crossbeam_channel::unbounded();
        let mut followed = HashMap::new();
        assert!(!look(root.path(), &mut followed, &tx), "an empty folder");
        let dir = root.path().join("other-run");
        std::fs::create_dir(&dir).unwrap();
        let metrics = dir.join("metrics.jsonl");
        std::fs::write(&metrics, event_line(1)).unwrap();
        assert!(look(root.path(), &mut followed, &tx));
        let first: Vec<RunsUpdate> = rx.try_iter().collect();
        assert!(matches!(&first[..], [RunsUpdate::Row(r)] if r.name == "other-run"));
        // Another line, and half of a third still being written.
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&metrics)
            .unwrap();
        let third = event_line(3);
        f.write_all(event_line(2).as_bytes()).unwrap();
        f.write_all(&third.as_bytes()[..10]).unwrap();
        f.flush().unwrap();
        look(root.path(), &mut followed, &tx);
        let logged = |updates: &[RunsUpdate]| -> Vec<String> {
            updates
                .iter()
                .filter_map(|u| match u {
                    RunsUpdate::Events { events, .. } => Some(events.clone()),
                    _ => None,
                })
                .flatten()
                .map(|(_, e)| format!("{e:?}"))
                .collect()
        };
        let second: Vec<RunsUpdate> = rx.try_iter().collect();
        let lines = logged(&second);
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(lines[0].contains("line 2"));
        // The third line completed: only it comes, once.
        f.write_all(&third.as_bytes()[10..]).unwrap();
        f.flush().unwrap();
        look(root.path(), &mut followed, &tx);
        let lines = logged(&rx.try_iter().collect::<Vec<_>>());
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(lines[0].contains("line 3"));
        // Nothing new: nothing sent. A folder removed: gone.
        assert!(!look(root.path(), &mut followed, &tx));
        std::fs::remove_dir_all(&dir).unwrap();
        look(root.path(), &mut followed, &tx);
        let last: Vec<RunsUpdate> = rx.try_iter().collect();
        assert!(matches!(&last[..], [RunsUpdate::Gone(d)] if d == &dir));
    }
}
