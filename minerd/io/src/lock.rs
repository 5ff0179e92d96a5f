//! The data-directory lock: one process per data directory.
//!
//! The lock file (`<dataDirectory>/minerd.lock` for the daemon, `devnet.lock` in a devnet
//! node's data dir) is held with an exclusive `flock` for the process's lifetime and holds
//! its pid (for humans). The kernel drops the lock when the process dies, so a lock
//! file left by a crash never blocks the next start; a clean exit also removes the file.
//! The file is created 0600 and never opened through a symbolic link (`O_NOFOLLOW`): taking
//! the lock truncates it, which must not truncate whatever a planted link points to.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use fs4::FileExt;

/// Why the lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process holds the lock.
    #[error(
        "another minerd is already running on data directory {dir} (lock {path} held{pid}); \
         stop it first or pass a different --data-dir"
    )]
    Held {
        /// The data directory.
        dir: PathBuf,
        /// The lock file.
        path: PathBuf,
        /// `" by pid N"` when the file names one.
        pid: String,
    },
    /// The lock file cannot be created or locked.
    #[error("cannot create or lock {path}")]
    Io {
        /// The lock file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// A held data-directory lock; dropping it removes the file and releases the lock.
#[derive(Debug)]
pub struct DataDirLock {
    file: File,
    path: PathBuf,
}

impl DataDirLock {
    /// Takes the lock at `path` (creating the parent directory), or says who holds it.
    pub fn acquire(path: &Path) -> Result<Self, LockError> {
        let io = |source| LockError::Io {
            path: path.to_owned(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)
            .map_err(io)?;
        match FileExt::try_lock(&file) {
            Ok(()) => {}
            Err(fs4::TryLockError::WouldBlock) => {
                let pid = std::fs::read_to_string(path)
                    .ok()
                    .and_then(|s| s.trim().parse::<u32>().ok())
                    .map(|p| format!(" by pid {p}"))
                    .unwrap_or_default();
                return Err(LockError::Held {
                    dir: path.parent().map(Path::to_owned).unwrap_or_default(),
                    path: path.to_owned(),
                    pid,
                });
            }
            Err(fs4::TryLockError::Error(e)) => return Err(io(e)),
        }
        file.set_len(0).map_err(io)?;
        writeln!(file, "{}", std::process::id()).map_err(io)?;
        file.sync_all().map_err(io)?;
        Ok(Self {
            file,
            path: path.to_owned(),
        })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for DataDirLock {
    fn drop(&mut self) {
        // Remove while still holding the lock, so no other daemon can take the old inode.
        if let Err(e) = std::fs::remove_file(&self.path) {
            tracing::warn!(path = %self.path.display(), error = %e, "cannot remove lock file");
        }
        let _ = FileExt::unlock(&self.file);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_is_refused_and_drop_cleans_up() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d/minerd.lock");
        let first = DataDirLock::acquire(&path).unwrap();
        let err = DataDirLock::acquire(&path).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("another minerd is already running"), "{msg}");
        assert!(
            msg.contains(&format!("pid {}", std::process::id())),
            "{msg}"
        );
        drop(first);
        assert!(!path.exists());
        let again = DataDirLock::acquire(&path).unwrap();
        assert_eq!(again.path(), path);
    }

    #[test]
    fn a_symbolic_link_at_the_lock_path_is_refused_and_its_target_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim.txt");
        std::fs::write(&victim, "precious").unwrap();
        let path = dir.path().join("minerd.lock");
        std::os::unix::fs::symlink(&victim, &path).unwrap();
        let err = DataDirLock::acquire(&path).unwrap_err();
        assert!(matches!(err, LockError::Io { .. }), "{err}");
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
    }

    #[test]
    fn stale_lock_file_without_holder_is_taken() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("minerd.lock");
        std::fs::write(&path, "999999\n").unwrap();
        let lock = DataDirLock::acquire(&path).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap().trim(),
            std::process::id().to_string()
        );
        drop(lock);
    }
}
