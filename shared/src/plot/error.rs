//! Errors of plot loading, creation and checking.

use std::path::PathBuf;

use super::cache::CacheError;
use crate::hash::Hash32;
use crate::regular_file::FileIoError;

/// Why a plot could not be loaded, created or checked.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    /// The plot file does not exist.
    #[error("plot file {path} not found")]
    NotFound {
        /// The path that was looked up.
        path: PathBuf,
    },
    /// An I/O operation on a plot file failed.
    #[error(transparent)]
    Io(FileIoError),
    /// Reading leaves failed: the disk reported an error, or the file is shorter than when
    /// it was opened (truncated or replaced under the miner).
    #[error("reading {len} bytes at offset {offset} of {path}")]
    Read {
        /// The plot file.
        path: PathBuf,
        /// Byte offset of the read.
        offset: u64,
        /// Bytes asked for.
        len: u64,
        /// The underlying error (`UnexpectedEof` when the file shrank).
        #[source]
        source: std::io::Error,
    },
    /// The file is shorter than a header.
    #[error("plot file too small: {len} bytes, a header alone is 121")]
    TooSmall {
        /// Actual file length.
        len: u64,
    },
    /// The header bytes given to the decoder are not exactly 121 bytes.
    #[error("plot header must be 121 bytes, got {len}")]
    HeaderLength {
        /// Length received.
        len: usize,
    },
    /// The file does not start with `SPTP`.
    #[error("bad plot magic {found:02x?} (expected \"SPTP\")")]
    BadMagic {
        /// The four bytes found.
        found: [u8; 4],
    },
    /// The format version is not 1.
    #[error("unsupported plot format version {version}")]
    UnsupportedVersion {
        /// The version byte found.
        version: u8,
    },
    /// The leaf count is zero or negative.
    #[error("invalid leaf count {count}")]
    InvalidLeafCount {
        /// The signed count as stored.
        count: i64,
    },
    /// The leaf size is zero or negative.
    #[error("invalid leaf size {size}")]
    InvalidLeafSize {
        /// The signed size as stored.
        size: i32,
    },
    /// The checksum field is all zero (the reference's "never computed" marker).
    #[error("plot header checksum is missing (all zero)")]
    ChecksumMissing,
    /// The checksum does not match the header body.
    #[error("plot header checksum mismatch")]
    ChecksumMismatch {
        /// `H(first 89 bytes)`.
        expected: Hash32,
        /// The stored checksum.
        found: Hash32,
    },
    /// The leaf size is valid for the reference loader but not 32, the only size plots use.
    #[error("unsupported leaf size {size} (only 32 is supported)")]
    UnsupportedLeafSize {
        /// The stored leaf size.
        size: u32,
    },
    /// The stored tree height disagrees with the leaf count.
    #[error("header tree height {found} does not match {expected} for {leaf_count} leaves")]
    TreeHeightMismatch {
        /// The leaf count.
        leaf_count: u64,
        /// ⌈log₂ N⌉.
        expected: u64,
        /// The stored height.
        found: u64,
    },
    /// `121 + N·leaf_size` does not fit in 64 bits (or in this machine's address space).
    #[error("plot size overflows for {leaf_count} leaves")]
    SizeOverflow {
        /// The leaf count.
        leaf_count: u64,
    },
    /// The file is shorter than its header says.
    #[error("plot truncated: {actual} bytes, header needs {expected}")]
    Truncated {
        /// Length implied by the header.
        expected: u64,
        /// Actual length.
        actual: u64,
    },
    /// The destination of a new plot already exists.
    #[error("{path} already exists")]
    AlreadyExists {
        /// The existing path.
        path: PathBuf,
    },
    /// A create request is unusable (zero leaves, no file name, …).
    #[error("invalid plot request: {reason}")]
    InvalidRequest {
        /// What is wrong.
        reason: String,
    },
    /// The operation was cancelled; nothing was left behind.
    #[error("cancelled")]
    Cancelled,
    /// A Merkle cache could not be built, written or used.
    #[error("merkle cache")]
    Cache(#[from] CacheError),
}

impl PlotError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io(FileIoError::new(op, path, source))
    }
}
