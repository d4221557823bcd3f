//! A log file appended to line by line: never through a link, each line in one `write`.

use super::shown;
use anyhow::{Context, Result};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// An open append-only file.
pub struct AppendFile {
    file: std::fs::File,
}

impl AppendFile {
    /// Opens (or creates, mode 0644 less the umask) `path` for appending; a link at `path` is
    /// refused (`O_NOFOLLOW`), so a planted `metrics.jsonl -> ~/.bashrc` is never written.
    pub fn open(path: &Path) -> Result<Self> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o644)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(path)
            .with_context(|| {
                if path
                    .symlink_metadata()
                    .is_ok_and(|m| m.file_type().is_symlink())
                {
                    format!("{}: is a symbolic link; not written through", shown(path))
                } else {
                    format!("{}: cannot open for appending", shown(path))
                }
            })?;
        Ok(Self { file })
    }

    /// Appends `line` and a newline in one write, so a kill leaves whole lines or none.
    pub fn append_line(&mut self, line: &str) -> std::io::Result<()> {
        let mut bytes = Vec::with_capacity(line.len() + 1);
        bytes.extend_from_slice(line.as_bytes());
        bytes.push(b'\n');
        self.file.write_all(&bytes)
    }
}

/// Cuts a torn last line (one without its newline: the writer was killed mid-write) off the
/// end of `path`; returns how many bytes were dropped (0 when the file ends cleanly or is absent).
pub fn drop_torn_tail(path: &Path) -> Result<usize> {
    if path.symlink_metadata().is_ok_and(|m| !m.is_file()) {
        // A link or something else planted there: never read or cut through it (appending
        // refuses it too, with a warning).
        return Ok(0);
    }
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e).with_context(|| format!("{}: cannot read", shown(path))),
    };
    if bytes.is_empty() || bytes.ends_with(b"\n") {
        return Ok(0);
    }
    let keep = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let file = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .with_context(|| format!("{}: cannot repair", shown(path)))?;
    file.set_len(keep as u64)
        .and_then(|_| file.sync_all())
        .with_context(|| format!("{}: cannot repair", shown(path)))?;
    Ok(bytes.len() - keep)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_whole_lines_and_refuses_a_link() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("metrics.jsonl");
        let mut f = AppendFile::open(&log).unwrap();
        f.append_line("{\"a\":1}").unwrap();
        f.append_line("{\"a\":2}").unwrap();
        assert_eq!(
            std::fs::read_to_string(&log).unwrap(),
            "{\"a\":1}\n{\"a\":2}\n"
        );

        let victim = dir.path().join("victim");
        std::fs::write(&victim, "keep").unwrap();
        let linked = dir.path().join("linked.jsonl");
        std::os::unix::fs::symlink(&victim, &linked).unwrap();
        let err = AppendFile::open(&linked).err().unwrap();
        assert!(format!("{err:#}").contains("symbolic link"), "{err:#}");
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
    }

    #[test]
    fn a_torn_last_line_is_cut_off() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("metrics.jsonl");
        std::fs::write(&log, "{\"a\":1}\n{\"a\":2}\n{\"a\":").unwrap();
        assert_eq!(drop_torn_tail(&log).unwrap(), 5);
        assert_eq!(
            std::fs::read_to_string(&log).unwrap(),
            "{\"a\":1}\n{\"a\":2}\n"
        );
        assert_eq!(drop_torn_tail(&log).unwrap(), 0);
        assert_eq!(drop_torn_tail(&dir.path().join("absent")).unwrap(), 0);
    }
}
