//! Crash-safe file writes, the one implementation every file that matters goes through
//! (plots, caches, the plot metadata and its failed-check record, the miner key, the devnet
//! chain and epoch counter): write to a hidden temporary name in the destination's
//! directory (created 0600), fsync, rename into place, fsync the directory. A crash leaves
//! either the old file or the new one, plus at worst a `.<name>.tmp-*` file that no loader
//! picks up; [`remove_stale_temporaries`] deletes those at the next start.
//!
//! With the `crash-points` feature (tests only), [`crash_points`] stops a write of this
//! thread at a chosen [`Step`] the way a crash there would: the temporary file stays, nothing
//! after the step happens, and the write returns an error.

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

/// The steps of an atomic write, in order. A crash between two steps leaves the old file
/// (before [`Step::Renamed`]) or the new one (from it on), plus possibly the temporary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Step {
    /// The empty temporary exists.
    Created,
    /// Half of the new bytes are in the temporary.
    HalfWritten,
    /// Every byte is written, not yet fsynced.
    Written,
    /// The temporary is fsynced, not yet renamed.
    Synced,
    /// The temporary has replaced the file; the directory is not yet fsynced.
    Renamed,
}

impl Step {
    /// Every step, in the order a write takes them.
    pub const ALL: [Step; 5] = [
        Step::Created,
        Step::HalfWritten,
        Step::Written,
        Step::Synced,
        Step::Renamed,
    ];
}

#[cfg(any(test, feature = "crash-points"))]
pub mod crash_points {
    //! Simulated crashes for tests: [`crash_at`] makes the next atomic write of this thread
    //! stop at a step as a killed process would (its temporary stays behind, nothing after
    //! the step happens) and return an error saying so.

    use std::cell::RefCell;
    use std::path::{Path, PathBuf};

    use super::Step;

    /// An armed crash: the step, and the only file whose write it stops (any when `None`).
    type Armed = (Step, Option<PathBuf>);

    thread_local! {
        static CRASH_AT: RefCell<Option<Armed>> = const { RefCell::new(None) };
    }

    /// Arms a crash at `step` for the next atomic write of this thread.
    pub fn crash_at(step: Step) {
        CRASH_AT.with(|c| *c.borrow_mut() = Some((step, None)));
    }

    /// Arms a crash at `step` for the next atomic write of `path` by this thread (writes of
    /// other files go through untouched).
    pub fn crash_at_file(path: &Path, step: Step) {
        CRASH_AT.with(|c| *c.borrow_mut() = Some((step, Some(path.to_path_buf()))));
    }

    /// Disarms a crash that did not happen; returns whether one was armed.
    pub fn disarm() -> bool {
        CRASH_AT.with(|c| c.borrow_mut().take()).is_some()
    }

    /// Runs `write` with a crash armed at `step`; panics when the write never reached that
    /// step (it did not go through the atomic writer, or it failed before).
    pub fn crashed<T>(step: Step, write: impl FnOnce() -> T) -> T {
        crash_at(step);
        let out = write();
        assert!(
            !disarm(),
            "the write never reached the crash point {step:?}"
        );
        out
    }

    /// [`crashed`] for the write of `path` only.
    pub fn crashed_writing<T>(path: &Path, step: Step, write: impl FnOnce() -> T) -> T {
        crash_at_file(path, step);
        let out = write();
        assert!(
            !disarm(),
            "the write of {} never reached the crash point {step:?}",
            path.display()
        );
        out
    }

    /// Whether the armed crash is at `step` of the write of `path` (then it is disarmed: it
    /// happens once).
    pub(super) fn hit(step: Step, path: &Path) -> bool {
        CRASH_AT.with(|c| {
            let mut armed = c.borrow_mut();
            let now = armed
                .as_ref()
                .is_some_and(|(s, p)| *s == step && p.as_deref().is_none_or(|p| p == path));
            if now {
                *armed = None;
            }
            now
        })
    }
}

/// Stops the write at `step` when a simulated crash is armed there, leaving the temporary
/// behind as a crash would; otherwise hands `tmp` back.
fn crash_point(step: Step, path: &Path, tmp: NamedTempFile) -> io::Result<NamedTempFile> {
    #[cfg(any(test, feature = "crash-points"))]
    if crash_points::hit(step, path) {
        tmp.into_temp_path().keep().map_err(|e| e.error)?;
        return Err(simulated_crash(step));
    }
    let _ = (step, path);
    Ok(tmp)
}

/// [`crash_point`] after the temporary is gone (renamed into place).
fn crash_point_after(step: Step, path: &Path) -> io::Result<()> {
    #[cfg(any(test, feature = "crash-points"))]
    if crash_points::hit(step, path) {
        return Err(simulated_crash(step));
    }
    let _ = (step, path);
    Ok(())
}

#[cfg(any(test, feature = "crash-points"))]
fn simulated_crash(step: Step) -> io::Error {
    io::Error::other(format!("simulated crash at {step:?}"))
}

/// Whether `name` is a temporary of [`temp_beside`] for the file named `target`:
/// `.<target>.tmp-<random>`.
fn is_temporary_of(name: &str, target: &str) -> bool {
    name.strip_prefix('.')
        .and_then(|n| n.strip_prefix(target))
        .and_then(|n| n.strip_prefix(".tmp-"))
        .is_some_and(|random| {
            !random.is_empty() && random.chars().all(|c| c.is_ascii_alphanumeric())
        })
}

/// Deletes the temporaries an interrupted atomic write of `path` left beside it
/// (`.<name>.tmp-<random>`, regular files only); returns those deleted. Call it at start, while
/// holding the lock that keeps other writers of `path` away.
pub fn remove_stale_temporaries(path: &Path) -> Vec<PathBuf> {
    let Some(target) = path.file_name().and_then(|n| n.to_str()) else {
        return Vec::new();
    };
    let Ok(entries) = std::fs::read_dir(parent_dir(path)) else {
        return Vec::new();
    };
    let mut removed = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let ours = name.to_str().is_some_and(|n| is_temporary_of(n, target));
        if ours && entry.file_type().is_ok_and(|t| t.is_file()) {
            let stale = entry.path();
            if std::fs::remove_file(&stale).is_ok() {
                removed.push(stale);
            }
        }
    }
    removed.sort();
    removed
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
    let tmp = crash_point(Step::Written, path, tmp)?;
    tmp.as_file().sync_all()?;
    let tmp = crash_point(Step::Synced, path, tmp)?;
    if overwrite {
        tmp.persist(path).map_err(|e| e.error)?;
    } else {
        tmp.persist_noclobber(path).map_err(|e| e.error)?;
    }
    crash_point_after(Step::Renamed, path)?;
    sync_dir(&parent_dir(path))
}

/// A temporary beside `path` holding `bytes` (not yet fsynced).
fn write_new_temp(path: &Path, bytes: &[u8]) -> io::Result<NamedTempFile> {
    let mut tmp = crash_point(Step::Created, path, temp_beside(path)?)?;
    let half = bytes.len() / 2;
    tmp.write_all(&bytes[..half])?;
    let mut tmp = crash_point(Step::HalfWritten, path, tmp)?;
    tmp.write_all(&bytes[half..])?;
    Ok(tmp)
}

/// Replaces `path` with `bytes` atomically (the file is created if absent).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    persist(write_new_temp(path, bytes)?, path, true)
}

/// Creates `path` with `bytes` atomically, mode 0600; fails with `AlreadyExists` (and
/// leaves the existing file alone) when `path` exists.
pub fn write_atomic_new(path: &Path, bytes: &[u8]) -> io::Result<()> {
    persist(write_new_temp(path, bytes)?, path, false)
}

#[cfg(test)]
mod tests {
    use super::crash_points::crashed;
    use super::*;

    use crate::test_support::file_names as names;

    #[test]
    fn a_crash_at_any_step_leaves_the_old_or_the_new_file_and_a_temporary_cleaned_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        for step in Step::ALL {
            write_atomic(&path, b"old contents").unwrap();
            let err = crashed(step, || write_atomic(&path, b"new contents, longer")).unwrap_err();
            assert!(err.to_string().contains("simulated crash"), "{err}");
            let now = std::fs::read(&path).unwrap();
            if step == Step::Renamed {
                assert_eq!(now, b"new contents, longer", "{step:?}");
            } else {
                assert_eq!(now, b"old contents", "{step:?}");
                assert_eq!(names(dir.path()).len(), 2, "{step:?}: the temporary stays");
            }
            let removed = remove_stale_temporaries(&path);
            assert_eq!(
                removed.len(),
                usize::from(step != Step::Renamed),
                "{step:?}"
            );
            assert_eq!(names(dir.path()), ["state.json"], "{step:?}");
        }
        // A crash while creating a file that did not exist leaves no file at all.
        let fresh = dir.path().join("key");
        crashed(Step::Synced, || write_atomic_new(&fresh, b"k")).unwrap_err();
        assert!(!fresh.exists());
        remove_stale_temporaries(&fresh);
        write_atomic_new(&fresh, b"k").unwrap();
    }

    #[test]
    fn only_temporaries_of_that_file_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let keep = [
            "state.json",
            ".state.json.tmp-",
            ".state.json.tmp-a/b",
            "state.json.tmp-abc",
            ".other.json.tmp-abcdefgh",
            ".state.json.tmp-abc.d",
        ];
        for n in keep.iter().filter(|n| !n.contains('/')) {
            std::fs::write(dir.path().join(n), b"x").unwrap();
        }
        std::fs::write(dir.path().join(".state.json.tmp-AbCd1234"), b"x").unwrap();
        std::fs::create_dir(dir.path().join(".state.json.tmp-dir12345")).unwrap();
        let removed = remove_stale_temporaries(&dir.path().join("state.json"));
        assert_eq!(removed, [dir.path().join(".state.json.tmp-AbCd1234")]);
        assert!(dir.path().join(".state.json.tmp-dir12345").is_dir());
        assert_eq!(names(dir.path()).len(), 6);
    }
}
