//! Crash-safe file writes, the one implementation every file that matters goes through
//! (plots, caches, the plot metadata and its failed-check record, the miner key, the devnet
//! chain and epoch counter): write to a hidden temporary name in the destination's
//! directory (created 0600), fsync, rename into place, fsync the directory. A crash leaves
//! either the old file or the new one, plus at worst a `.<name>.tmp-*` file that no loader
//! picks up.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use tempfile::NamedTempFile;

/// The directory a path lives in (`.` for a bare file name).
pub(crate) fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// A temporary file named `.<file name>.tmp-<random>` beside `path`; it is deleted when
/// dropped unless persisted.
pub(crate) fn temp_beside(path: &Path) -> io::Result<NamedTempFile> {
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    let mut prefix = std::ffi::OsString::from(".");
    prefix.push(name);
    prefix.push(".tmp-");
    tempfile::Builder::new()
        .prefix(&prefix)
        .rand_bytes(8)
        .tempfile_in(parent_dir(path))
}

/// Flush a directory's entries to disk (makes a rename durable). A no-op where directories
/// cannot be opened for syncing.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    match File::open(dir) {
        Ok(d) => d.sync_all().or_else(|e| {
            // Some filesystems refuse fsync on directories; the rename is still atomic.
            if e.kind() == io::ErrorKind::InvalidInput || e.raw_os_error() == Some(libc::EINVAL) {
                Ok(())
            } else {
                Err(e)
            }
        }),
        Err(e) => Err(e),
    }
}

/// Fsync `tmp`, move it to `path` (replacing any existing file when `overwrite`, refusing
/// with `AlreadyExists` otherwise) and fsync the directory.
pub(crate) fn persist(tmp: NamedTempFile, path: &Path, overwrite: bool) -> io::Result<()> {
    tmp.as_file().sync_all()?;
    if overwrite {
        tmp.persist(path).map_err(|e| e.error)?;
    } else {
        tmp.persist_noclobber(path).map_err(|e| e.error)?;
    }
    sync_dir(&parent_dir(path))
}

/// Replaces `path` with `bytes` atomically (the file is created if absent).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut tmp = temp_beside(path)?;
    tmp.write_all(bytes)?;
    persist(tmp, path, true)
}

/// Creates `path` with `bytes` atomically, mode 0600; fails with `AlreadyExists` (and
/// leaves the existing file alone) when `path` exists.
pub fn write_atomic_new(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut tmp = temp_beside(path)?;
    tmp.write_all(bytes)?;
    persist(tmp, path, false)
}
