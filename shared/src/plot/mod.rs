//! Plot files, format v1: header, leaf generation, loading, creation and checking, with
//! the two things read beside a plot's leaves: its Merkle cache file ([`cache`]) and the
//! Merkle proofs built from both ([`prove`]). They are one module because they are one
//! storage engine: creating a plot writes its cache, checking one builds proofs, and the
//! cache and proofs read the plot's header and leaves. Everything above (scanning, the
//! benchmark, block validation) reads plots through here; nothing here reads above.
//!
//! | offset            | size | content                                       |
//! |------------------:|-----:|-----------------------------------------------|
//! | 0                 |  121 | [`PlotHeader`] (89-byte body + 32-byte checksum) |
//! | 121 + 32·i        |   32 | leaf `i = H(pk ‖ seed ‖ i64_le(i))`, i in 0..N |
//!
//! No footer, no padding; the loader accepts (and ignores) bytes past the last leaf, as the
//! reference does. The Merkle cache lives beside the plot in `<plot path>.cache`
//! ([`cache`]).

pub mod cache;
mod check;
mod create;
mod error;
mod file;
mod header;
mod leaves;
pub mod prove;
mod writer;

pub use check::{check_plot, CheckMode, CheckProgress, CheckReport};
pub use create::{
    create_plot, create_plot_yielding, CacheLevels, CreatePlot, CreatedPlot, PlotProgress,
    DEFAULT_CACHE_LEVEL,
};
pub use error::PlotError;
pub use file::PlotFile;
pub use header::PlotHeader;
pub use leaves::LeafGenerator;

/// Size of the plot header in bytes (89-byte body + 32-byte checksum).
pub const HEADER_LEN: usize = 121;
/// Size of one leaf in bytes (the only leaf size the reference creator writes).
pub const LEAF_LEN: usize = 32;
/// The plot format version this crate reads and writes.
pub const FORMAT_VERSION: u8 = 1;
/// The four magic bytes at the start of every plot file.
pub const MAGIC: [u8; 4] = *b"SPTP";

/// Byte offset of leaf `index` in a plot file, or `None` if it overflows.
pub fn leaf_offset(index: u64) -> Option<u64> {
    index
        .checked_mul(LEAF_LEN as u64)
        .and_then(|o| o.checked_add(HEADER_LEN as u64))
}

/// Total length of a plot file of `leaf_count` leaves, or `None` if it overflows `i64`
/// (the reference's integer type for sizes).
pub fn plot_file_len(leaf_count: u64) -> Option<u64> {
    leaf_offset(leaf_count).filter(|&len| i64::try_from(len).is_ok())
}
