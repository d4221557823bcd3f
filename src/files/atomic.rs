//! Atomic replacement of a file: a temporary file created exclusively under an unpredictable
//! name beside the target, written, synced, then renamed over the target.
//!
//! A fixed temporary name (`x.tmp`) opened with create-and-truncate writes through a link that
//! someone planted there; `tempfile` creates with `O_EXCL` under a random name, and `rename`
//! replaces a link at the final path instead of following it.

use super::shown;
use anyhow::{Context, Result};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// The folder `path` is written into (`.` for a bare file name).
pub fn folder_of(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// A new, empty temporary file beside `path` (mode 0644 less the umask), removed when dropped
/// unless persisted with [`persist`].
pub fn temp_beside(path: &Path) -> Result<tempfile::NamedTempFile> {
    temp_beside_ending(path, ".tmp")
}

/// [`temp_beside`] with a name ending in `suffix` (writers that pick a format by extension).
pub fn temp_beside_ending(path: &Path, suffix: &str) -> Result<tempfile::NamedTempFile> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".into());
    tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(suffix)
        .permissions(std::fs::Permissions::from_mode(0o644))
        .tempfile_in(folder_of(path))
        .with_context(|| format!("{}: cannot create a file in this folder", shown(path)))
}

/// Syncs `tmp` and renames it to `path`, then syncs the folder so the rename survives a crash.
/// A file replaced keeps its permission bits (a preset made private stays private).
pub fn persist(tmp: tempfile::NamedTempFile, path: &Path) -> Result<()> {
    if let Ok(old) = path.symlink_metadata() {
        if old.is_file() {
            let _ = tmp.as_file().set_permissions(old.permissions());
        }
    }
    tmp.as_file()
        .sync_all()
        .with_context(|| format!("{}: cannot write file", shown(path)))?;
    tmp.persist(path)
        .map_err(|e| e.error)
        .with_context(|| format!("{}: cannot move into place", shown(path)))?;
    if let Ok(folder) = std::fs::File::open(folder_of(path)) {
        // Best effort: some filesystems refuse to sync a folder, and the data is already safe.
        let _ = folder.sync_all();
    }
    Ok(())
}

/// Removes the temporary files that killed writers left in `dir`: regular files named as
/// [`temp_beside`] names them (`.NAME.XXXXXX.tmp`, six random characters), nothing else.
pub fn remove_stale_temps(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.filter_map(|e| e.ok()) {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let ours = name
            .strip_prefix('.')
            .and_then(|n| n.strip_suffix(".tmp"))
            .and_then(|n| n.rsplit_once('.'))
            .is_some_and(|(stem, random)| {
                !stem.is_empty()
                    && random.len() == 6
                    && random.chars().all(|c| c.is_ascii_alphanumeric())
            });
        if ours && entry.file_type().is_ok_and(|t| t.is_file()) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Writes `bytes` to `path` so that readers see the old file or the whole new one, never half.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut tmp = temp_beside(path)?;
    tmp.write_all(bytes)
        .with_context(|| format!("{}: cannot write file", shown(path)))?;
    persist(tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_at_the_final_path_is_replaced_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "secret").unwrap();
        let target = dir.path().join("config.ron");
        std::os::unix::fs::symlink(&victim, &target).unwrap();
        write_atomic(&target, b"new").unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "secret");
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "new");
        assert!(!target.symlink_metadata().unwrap().file_type().is_symlink());
    }

    #[test]
    fn planted_links_at_the_old_temporary_names_are_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "secret").unwrap();
        let target = dir.path().join("palette.csv");
        for planted in ["palette.csv.tmp", ".palette.csv.tmp", "palette.tmp"] {
            std::os::unix::fs::symlink(&victim, dir.path().join(planted)).unwrap();
        }
        write_atomic(&target, b"rows").unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "secret");
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "rows");
        // Nothing left behind but the file and the planted links.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 5);
    }

    #[test]
    fn stale_temporary_files_are_removed_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let stale = temp_beside(&dir.path().join("supernet.safetensors")).unwrap();
        let (_, stale_path) = stale.keep().unwrap();
        for keep in [".notes.tmp", "config.ron", ".a.b.tmp", ".x.abcdefg.tmp"] {
            std::fs::write(dir.path().join(keep), "mine").unwrap();
        }
        remove_stale_temps(dir.path());
        assert!(!stale_path.exists());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 4);
    }

    #[test]
    fn a_replaced_file_keeps_its_mode() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("private.ron");
        std::fs::write(&target, "old").unwrap();
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o600)).unwrap();
        write_atomic(&target, b"new").unwrap();
        let mode = std::fs::metadata(&target).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn files_are_readable_by_others_as_the_umask_allows() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("a.json");
        write_atomic(&target, b"{}").unwrap();
        let mode = std::fs::metadata(&target).unwrap().permissions().mode() & 0o777;
        // The usual umask 022 gives 0644; whatever the umask, never more than 0644.
        assert_eq!(mode & !0o644, 0, "mode {mode:o}");
        assert_ne!(mode & 0o600, 0, "mode {mode:o}");
    }
}
