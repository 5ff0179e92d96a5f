//! Opening files we read but do not control (plots, caches, the metadata file, key files)
//! so that a hostile or broken path costs an error, never a hang or unbounded memory.
//!
//! A path may name anything: a FIFO (opening it for reading blocks until a writer
//! appears, so a daemon starting up would hang, deaf to SIGTERM), a character device like
//! `/dev/zero` (reads never end: `std::fs::read` grows its buffer until the process dies),
//! a directory, a socket. So: the file is opened with `O_NONBLOCK` (an open of a FIFO
//! returns at once; the flag changes nothing for a regular file), the open descriptor is
//! checked with `fstat` (no race between the check and the read), and anything that is not
//! a regular file is refused. Reads are bounded by a maximum the caller states and by the
//! size `fstat` reported, so a file that grows while it is read cannot make us read more.
//! Symbolic links are followed: a plot on another disk linked into a plot directory is a
//! normal setup; what the link points to must still be a regular file.

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// An operation on a named file that failed: what was being done, to which file, and the
/// I/O error as its source. The `Io` variant of every file format's error wraps one.
#[derive(Debug, thiserror::Error)]
#[error("{op} {path}")]
pub struct FileIoError {
    /// What was being done (e.g. "reading", "writing").
    pub op: &'static str,
    /// The file concerned.
    pub path: PathBuf,
    /// The underlying error.
    #[source]
    pub source: io::Error,
}

impl FileIoError {
    /// `op` on `path` failed with `source`.
    pub fn new(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Self {
            op,
            path: path.into(),
            source,
        }
    }
}

/// Why a file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadFileError {
    /// Opening, inspecting or reading failed.
    #[error(transparent)]
    Io(#[from] io::Error),
    /// The path names something other than a regular file.
    #[error("not a regular file (it is a {kind})")]
    NotRegular {
        /// What it is: "directory", "FIFO", "character device", ...
        kind: &'static str,
    },
    /// The file is larger than the caller allows.
    #[error("file of {bytes} bytes is larger than the {max} bytes allowed")]
    TooLarge {
        /// Its size.
        bytes: u64,
        /// The limit.
        max: u64,
    },
}

impl ReadFileError {
    /// The I/O error kind, with [`io::ErrorKind::InvalidInput`] for a non-regular file and
    /// [`io::ErrorKind::FileTooLarge`] for an oversized one.
    pub fn kind(&self) -> io::ErrorKind {
        match self {
            ReadFileError::Io(e) => e.kind(),
            ReadFileError::NotRegular { .. } => io::ErrorKind::InvalidInput,
            ReadFileError::TooLarge { .. } => io::ErrorKind::FileTooLarge,
        }
    }

    /// This error as an `io::Error` (for callers whose error type wraps one).
    pub fn into_io(self) -> io::Error {
        match self {
            ReadFileError::Io(e) => e,
            other => io::Error::new(other.kind(), other.to_string()),
        }
    }
}

fn kind_of(ft: std::fs::FileType) -> &'static str {
    if ft.is_dir() {
        "directory"
    } else if ft.is_fifo() {
        "FIFO"
    } else if ft.is_char_device() {
        "character device"
    } else if ft.is_block_device() {
        "block device"
    } else if ft.is_socket() {
        "socket"
    } else {
        "special file"
    }
}

/// Opens `path` for reading if (after following links) it is a regular file; returns the
/// file and its size. Never blocks on a FIFO.
pub fn open_regular(path: &Path) -> Result<(File, u64), ReadFileError> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.file_type().is_file() {
        return Err(ReadFileError::NotRegular {
            kind: kind_of(meta.file_type()),
        });
    }
    Ok((file, meta.len()))
}

/// Reads the whole of `path`, a regular file of at most `max` bytes.
pub fn read_regular(path: &Path, max: u64) -> Result<Vec<u8>, ReadFileError> {
    let (file, len) = open_regular(path)?;
    if len > max {
        return Err(ReadFileError::TooLarge { bytes: len, max });
    }
    let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    // Never more than fstat said (plus one byte, to notice growth), whatever happens to
    // the file meanwhile.
    file.take(len.saturating_add(1)).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(ReadFileError::TooLarge {
            bytes: bytes.len() as u64,
            max,
        });
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn mkfifo(path: &Path) {
        let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: `c` is a valid NUL-terminated path; mkfifo only reads it.
        #[allow(unsafe_code)]
        let rc = unsafe { libc::mkfifo(c.as_ptr(), 0o600) };
        assert_eq!(rc, 0, "mkfifo: {}", io::Error::last_os_error());
    }

    #[test]
    fn a_fifo_is_refused_at_once_without_waiting_for_a_writer() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("x.cache");
        mkfifo(&fifo);
        let started = Instant::now();
        let err = read_regular(&fifo, 1024).unwrap_err();
        assert!(
            matches!(err, ReadFileError::NotRegular { kind: "FIFO" }),
            "{err}"
        );
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn devices_directories_and_links_to_them_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("zero.cache");
        std::os::unix::fs::symlink("/dev/zero", &link).unwrap();
        for (path, kind) in [
            (Path::new("/dev/zero"), "character device"),
            (link.as_path(), "character device"),
            (dir.path(), "directory"),
        ] {
            let err = read_regular(path, u64::MAX).unwrap_err();
            match err {
                ReadFileError::NotRegular { kind: k } => assert_eq!(k, kind, "{path:?}"),
                other => panic!("{path:?}: {other}"),
            }
        }
    }

    /// Audit row 3: `<plot>.cache` linked to /dev/zero grew the daemon to 4 GB and more;
    /// a FIFO there blocked startup forever. Every reader of an untrusted path now answers
    /// at once with an error.
    #[test]
    fn every_reader_refuses_a_fifo_and_dev_zero_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        mkfifo(&fifo);
        let zero = dir.path().join("zero");
        std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
        for path in [&fifo, &zero] {
            let started = Instant::now();
            let cache = crate::cache::MerkleCache::read(path).unwrap_err();
            assert!(cache.to_string().starts_with("reading"), "{cache}");
            let source = std::error::Error::source(&cache).unwrap().to_string();
            assert!(source.contains("not a regular file"), "{source}");
            assert!(crate::metadata::load(path).is_err());
            let plot = crate::plot::PlotFile::open(path).unwrap_err();
            assert!(matches!(plot, crate::plot::PlotError::Io(_)), "{plot}");
            assert!(crate::keys::MinerKey::load(path).is_err());
            assert!(started.elapsed() < Duration::from_secs(5), "{path:?}");
        }
    }

    #[test]
    fn regular_files_and_links_to_them_read_within_the_bound() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a");
        std::fs::write(&file, b"hello").unwrap();
        let link = dir.path().join("b");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        assert_eq!(read_regular(&link, 5).unwrap(), b"hello");
        assert!(matches!(
            read_regular(&file, 4),
            Err(ReadFileError::TooLarge { bytes: 5, max: 4 })
        ));
        assert_eq!(
            read_regular(&dir.path().join("none"), 5)
                .unwrap_err()
                .kind(),
            io::ErrorKind::NotFound
        );
    }
}
