//! `durable` owns writing a whole file so that a crash leaves either the old file or
//! the complete new one, never a torn or empty one: the bytes go to a temporary
//! name, are synced, renamed into place, and the directory is synced. A guard
//! removes the temporary file on every error path. Used for segments, keys,
//! certificates and credentials alike.

use std::io::Write as _;
use std::path::Path;

/// Removes a temporary file on every path that does not rename it into place.
struct TempFile<'a>(&'a Path, bool);

impl Drop for TempFile<'_> {
    fn drop(&mut self) {
        if !self.1 {
            let _ = std::fs::remove_file(self.0);
        }
    }
}

/// Writes `data` to `tmp` (created with `mode`), syncs it, renames it to `path` and
/// syncs the directory.
pub fn write_via(tmp: &Path, path: &Path, data: &[u8], mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut guard = TempFile(tmp, false);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(tmp)?;
    f.write_all(data)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(tmp, path)?;
    guard.1 = true;
    std::fs::File::open(path.parent().unwrap_or(Path::new(".")))?.sync_all()
}

/// `write_via` with the temporary file beside `path` (`<path>.tmp`).
pub fn write(path: &Path, data: &[u8], mode: u32) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    write_via(Path::new(&tmp), path, data, mode)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn a_failed_write_leaves_the_old_file_and_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secrets.key");
        write(&path, b"first", 0o600).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"first");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // A directory in the temporary file's place makes the write fail.
        let tmp = dir.path().join("secrets.key.tmp");
        std::fs::create_dir(&tmp).unwrap();
        assert!(write(&path, b"second", 0o600).is_err());
        assert_eq!(std::fs::read(&path).unwrap(), b"first");
        std::fs::remove_dir(&tmp).unwrap();
        // A rename that fails (the target is a non-empty directory) removes the
        // temporary file it wrote.
        let blocked = dir.path().join("blocked");
        std::fs::create_dir(&blocked).unwrap();
        std::fs::write(blocked.join("x"), b"x").unwrap();
        assert!(write(&blocked, b"data", 0o644).is_err());
        assert!(!dir.path().join("blocked.tmp").exists());
    }
}
