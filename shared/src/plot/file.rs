//! Loading a plot file: every reference loader check (section 1.5) as a typed error, then a
//! read-only memory map so that leaf reads are zero-copy slices of the page cache.

use std::io::Read;
use std::ops::Range;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use super::{plot_file_len, PlotError, PlotHeader, HEADER_LEN, LEAF_LEN};
use crate::merkle::tree_height;
use crate::regular_file::{self, ReadFileError};

/// An open, checked, memory-mapped plot.
///
/// Plots are never modified in place (they are written to a temporary name and renamed),
/// so the mapping stays valid while the file is open. Truncating a mapped plot from outside
/// the miner is the one thing this type cannot defend against (the OS would fault on access).
#[derive(Debug)]
pub struct PlotFile {
    path: PathBuf,
    header: PlotHeader,
    file_len: u64,
    map: Mmap,
}

impl PlotFile {
    /// Open and check a plot: existence, size, header (magic, version, counts, checksum),
    /// leaf size 32, tree height, and that the file holds every leaf. Longer files are
    /// accepted, as by the reference.
    pub fn open(path: &Path) -> Result<Self, PlotError> {
        // A FIFO or device at a plot path is refused at once (never a blocking open).
        let (mut file, file_len) = regular_file::open_regular(path).map_err(|e| match e {
            ReadFileError::Io(e) if e.kind() == std::io::ErrorKind::NotFound => {
                PlotError::NotFound {
                    path: path.to_path_buf(),
                }
            }
            other => PlotError::io("opening", path, other.into_io()),
        })?;
        if file_len < HEADER_LEN as u64 {
            return Err(PlotError::TooSmall { len: file_len });
        }
        let mut bytes = [0u8; HEADER_LEN];
        file.read_exact(&mut bytes)
            .map_err(|e| PlotError::io("reading the header of", path, e))?;
        let header = PlotHeader::decode(&bytes)?;
        if header.leaf_size != LEAF_LEN as u32 {
            return Err(PlotError::UnsupportedLeafSize {
                size: header.leaf_size,
            });
        }
        let expected_height = u64::from(tree_height(header.leaf_count));
        if header.tree_height != expected_height {
            return Err(PlotError::TreeHeightMismatch {
                leaf_count: header.leaf_count,
                expected: expected_height,
                found: header.tree_height,
            });
        }
        let needed = plot_file_len(header.leaf_count)
            .filter(|&len| usize::try_from(len).is_ok())
            .ok_or(PlotError::SizeOverflow {
                leaf_count: header.leaf_count,
            })?;
        if file_len < needed {
            return Err(PlotError::Truncated {
                expected: needed,
                actual: file_len,
            });
        }
        // SAFETY: the mapping is read-only and the file is a plot, which this program never
        // writes in place once it has a final name. Another process truncating the file
        // while it is mapped would fault on access; that is outside what a safe API can
        // prevent and is documented on the type.
        #[allow(unsafe_code)]
        let map = unsafe { Mmap::map(&file) }.map_err(|e| PlotError::io("mapping", path, e))?;
        if (map.len() as u64) < needed {
            // The file shrank between the size check and the mapping.
            return Err(PlotError::Truncated {
                expected: needed,
                actual: map.len() as u64,
            });
        }
        Ok(Self {
            path: path.to_path_buf(),
            header,
            file_len,
            map,
        })
    }

    /// The decoded header.
    pub fn header(&self) -> &PlotHeader {
        &self.header
    }

    /// Number of leaves N.
    pub fn leaf_count(&self) -> u64 {
        self.header.leaf_count
    }

    /// The path the plot was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Length of the file in bytes (may exceed `121 + 32·N`).
    pub fn file_len(&self) -> u64 {
        self.file_len
    }

    /// Leaf `index`, or `None` past the end.
    pub fn leaf(&self, index: u64) -> Option<[u8; 32]> {
        self.leaves(index..index.checked_add(1)?).first().copied()
    }

    /// Leaves `range` as a zero-copy slice of the mapping. The range is clamped to
    /// `0..N`; an inverted range yields an empty slice.
    pub fn leaves(&self, range: Range<u64>) -> &[[u8; 32]] {
        let n = self.header.leaf_count;
        let end = range.end.min(n);
        let start = range.start.min(end);
        // In bounds of the mapping: `121 + 32·N` fits in usize and in the map (checked in
        // `open`), and start <= end <= N.
        let from = HEADER_LEN + start as usize * LEAF_LEN;
        let to = HEADER_LEN + end as usize * LEAF_LEN;
        as_leaves(&self.map[from..to])
    }

    /// Hint the kernel that `range` of leaves will be read sequentially soon.
    pub fn advise_sequential(&self, range: Range<u64>) {
        let n = self.header.leaf_count;
        let end = range.end.min(n);
        let start = range.start.min(end);
        let from = HEADER_LEN + start as usize * LEAF_LEN;
        let len = (end - start) as usize * LEAF_LEN;
        if len > 0 {
            // Advice is only a hint; a failure changes nothing but speed.
            let _ = self.map.advise_range(memmap2::Advice::WillNeed, from, len);
        }
    }
}

/// View a byte slice whose length is a multiple of 32 as leaves, without copying.
fn as_leaves(bytes: &[u8]) -> &[[u8; 32]] {
    debug_assert_eq!(bytes.len() % LEAF_LEN, 0);
    let count = bytes.len() / LEAF_LEN;
    // SAFETY: `[u8; 32]` has alignment 1 and size 32, so any `count * 32` initialised bytes
    // are a valid `[[u8; 32]]` of `count` elements; the result borrows `bytes`, so it cannot
    // outlive the mapping. (`<[u8]>::as_chunks` does this safely but needs Rust 1.88.)
    #[allow(unsafe_code)]
    unsafe {
        std::slice::from_raw_parts(bytes.as_ptr().cast::<[u8; 32]>(), count)
    }
}
