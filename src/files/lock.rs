//! The run folder's writer lock: one process at a time trains (or measures into) a run.
//!
//! An advisory lock (`flock` through std's `File::try_lock`) on `RUN/run.lock`, which also holds
//! the holder's process id so that a refused second writer can say who holds it. The kernel
//! drops the lock when the holder exits, however it exits, so a killed run never stays locked.

use super::shown;
use anyhow::{bail, Context, Result};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

const LOCK_FILE: &str = "run.lock";

/// Held while this process writes a run folder; released on drop.
#[derive(Debug)]
pub struct RunLock {
    _file: std::fs::File,
}

fn open_lock_file(run_dir: &Path) -> Result<std::fs::File> {
    let path = run_dir.join(LOCK_FILE);
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&path)
        .with_context(|| format!("{}: cannot open the run's lock file", shown(&path)))
}

/// The process id written in a lock file, if it reads as one (the file holds nothing else).
fn holder(file: &mut std::fs::File) -> Option<u32> {
    let mut text = String::new();
    file.seek(std::io::SeekFrom::Start(0)).ok()?;
    file.take(32).read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

impl RunLock {
    /// Takes the lock of `run_dir` (which must exist), or says which process holds it.
    pub fn acquire(run_dir: &Path) -> Result<Self> {
        let mut file = open_lock_file(run_dir)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let who = holder(&mut file).map_or("another process".to_string(), |pid| {
                    format!("process {pid}")
                });
                bail!(
                    "{}: the run is in use by {who} (training or measuring it); wait for it to \
                     finish or stop it first",
                    shown(run_dir)
                );
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("{}: cannot lock the run", shown(run_dir)));
            }
        }
        let pid = std::process::id().to_string();
        file.set_len(0)
            .and_then(|_| file.seek(std::io::SeekFrom::Start(0)).map(|_| ()))
            .and_then(|_| file.write_all(pid.as_bytes()))
            .with_context(|| format!("{}: cannot write the run's lock file", shown(run_dir)))?;
        Ok(Self { _file: file })
    }
}

/// The process holding `run_dir`'s lock right now, if any (readers use it to warn that what
/// they read may be overtaken by the next checkpoint).
pub fn writer_of(run_dir: &Path) -> Option<u32> {
    let path = run_dir.join(LOCK_FILE);
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .ok()?;
    match file.try_lock_shared() {
        Ok(()) => {
            let _ = file.unlock();
            None
        }
        Err(std::fs::TryLockError::WouldBlock) => Some(holder(&mut file).unwrap_or(0)),
        // Locks unsupported here (some network filesystems): nothing can be said.
        Err(std::fs::TryLockError::Error(_)) => None,
    }
}

/// [`writer_of`] for a watcher that asks every second: the lock is probed only while the
/// process named in the lock file is alive, so that the probe's brief shared lock cannot
/// refuse a trainer starting at that instant on a run nobody holds.
pub fn live_writer_of(run_dir: &Path) -> Option<u32> {
    let text = std::fs::read_to_string(run_dir.join(LOCK_FILE)).ok()?;
    let pid: i32 = text.trim().parse().ok()?;
    if pid <= 0 {
        return None;
    }
    // Signal 0 checks that the process exists (EPERM: it does, as another user's).
    // SAFETY: kill with signal 0 sends nothing; it only reports whether `pid` exists.
    let alive = unsafe { libc::kill(pid, 0) } == 0
        || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
    if alive {
        writer_of(run_dir)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_writer_is_refused_naming_the_holder_and_the_lock_ends_with_it() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(writer_of(dir.path()), None);
        let first = RunLock::acquire(dir.path()).unwrap();
        // flock locks belong to the open file, so a second open in this process is refused too.
        let err = RunLock::acquire(dir.path()).unwrap_err();
        let text = format!("{err:#}");
        assert!(
            text.contains(&format!("process {}", std::process::id())),
            "{text}"
        );
        assert_eq!(writer_of(dir.path()), Some(std::process::id()));
        drop(first);
        assert_eq!(writer_of(dir.path()), None);
        RunLock::acquire(dir.path()).unwrap();
    }
}
