//! Reading files a user names: only regular files (a FIFO would block forever, a device has no
//! end), text without a byte-order mark, errors that name the file and never quote it.

use super::shown;
use anyhow::{bail, Context, Result};
use std::path::Path;

/// Refuses anything but a regular file (links are followed: a link to a file is fine).
pub fn require_regular(path: &Path, what: &str) -> Result<std::fs::Metadata> {
    let meta =
        std::fs::metadata(path).with_context(|| format!("{}: cannot read {what}", shown(path)))?;
    if meta.is_dir() {
        bail!("{}: is a folder, expected {what}", shown(path));
    }
    if !meta.is_file() {
        bail!(
            "{}: is not a regular file (a pipe, socket or device), expected {what}",
            shown(path)
        );
    }
    Ok(meta)
}

/// The text of a regular file, without a leading UTF-8 byte-order mark (spreadsheets write one).
pub fn read_text(path: &Path, what: &str) -> Result<String> {
    require_regular(path, what)?;
    let bytes =
        std::fs::read(path).with_context(|| format!("{}: cannot read {what}", shown(path)))?;
    let mut text = String::from_utf8(bytes).map_err(|e| {
        anyhow::anyhow!(
            "{}: {what} is not UTF-8 text (invalid byte at offset {})",
            shown(path),
            e.utf8_error().valid_up_to()
        )
    })?;
    if text.starts_with('\u{feff}') {
        text.drain(..'\u{feff}'.len_utf8());
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fifo_is_refused_without_opening_it() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("train.jsonl");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a plain mkfifo call on a path we own.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let err = read_text(&fifo, "data file").unwrap_err();
        assert!(format!("{err:#}").contains("not a regular file"), "{err:#}");
    }

    #[test]
    fn a_byte_order_mark_is_dropped_and_bad_utf8_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.csv");
        std::fs::write(&p, "\u{feff}text,label\n").unwrap();
        assert_eq!(read_text(&p, "data file").unwrap(), "text,label\n");
        std::fs::write(&p, b"ok\xff\xfe").unwrap();
        let err = format!("{:#}", read_text(&p, "data file").unwrap_err());
        assert!(
            err.contains("not UTF-8") && err.contains("offset 2"),
            "{err}"
        );
    }
}
