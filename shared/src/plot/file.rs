//! Loading a plot file: every reference loader check (section 1.5) as a typed error; leaves
//! are then read with positioned reads (`pread`), never through a memory map.
//!
//! A mapped file that shrinks under the process (a disk failing, a user truncating a farmed
//! plot) kills the process with SIGBUS on the next access; a read of the same bytes returns
//! an error instead. So every leaf read here is a `pread` into a caller's buffer, and a
//! truncated, overwritten-shorter or failing plot is a [`PlotError::Read`] on that plot
//! (decisions E1). Large sequential reads with kernel read-ahead are as fast as the map was
//! for scanning, and the copy they cost is small next to the hashing.

use std::fs::File;
use std::io::Read;
use std::ops::Range;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

use super::{plot_file_len, PlotError, PlotHeader, HEADER_LEN, LEAF_LEN};
use crate::merkle::tree_height;
use crate::regular_file::{self, ReadFileError};

/// An open, checked plot.
///
/// Plots are never modified in place (they are written to a temporary name and renamed).
/// If another process truncates or rewrites the file while it is open, reads past the new
/// end fail with [`PlotError::Read`]; nothing else happens.
#[derive(Debug)]
pub struct PlotFile {
    path: PathBuf,
    header: PlotHeader,
    file_len: u64,
    /// The device the file lives on (`st_dev`): scans read each device's plots in file order.
    device: u64,
    file: File,
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
        let device = file
            .metadata()
            .map_err(|e| PlotError::io("reading metadata of", path, e))?
            .dev();
        Ok(Self {
            path: path.to_path_buf(),
            header,
            file_len,
            device,
            file,
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

    /// The device (`st_dev`) the plot lives on.
    pub fn device(&self) -> u64 {
        self.device
    }

    /// Leaf `index`; `Ok(None)` past the end, an error when the file cannot be read.
    pub fn leaf(&self, index: u64) -> Result<Option<[u8; 32]>, PlotError> {
        if index >= self.header.leaf_count {
            return Ok(None);
        }
        let mut leaf = [[0u8; 32]; 1];
        self.read_leaves(index, &mut leaf)?;
        Ok(Some(leaf[0]))
    }

    /// Read leaves `first..first + out.len()` into `out` (one positioned read). Reading
    /// past leaf `N` is a [`PlotError::InvalidRequest`]; a failing or shrunk file is a
    /// [`PlotError::Read`].
    pub fn read_leaves(&self, first: u64, out: &mut [[u8; 32]]) -> Result<(), PlotError> {
        let count = out.len() as u64;
        if first
            .checked_add(count)
            .is_none_or(|end| end > self.header.leaf_count)
        {
            return Err(PlotError::InvalidRequest {
                reason: format!(
                    "leaves {first}..+{count} are outside the {} leaves of {}",
                    self.header.leaf_count,
                    self.path.display()
                ),
            });
        }
        if out.is_empty() {
            return Ok(());
        }
        // In range: `121 + 32·N` fits in u64 (checked in `open`).
        let offset = HEADER_LEN as u64 + first * LEAF_LEN as u64;
        let bytes = out.as_flattened_mut();
        self.file
            .read_exact_at(bytes, offset)
            .map_err(|source| PlotError::Read {
                path: self.path.clone(),
                offset,
                len: bytes.len() as u64,
                source,
            })
    }

    /// Leaves `range` (clamped to `0..N`) into `buf`, replacing its contents.
    pub fn read_range(&self, range: Range<u64>, buf: &mut Vec<[u8; 32]>) -> Result<(), PlotError> {
        let n = self.header.leaf_count;
        let end = range.end.min(n);
        let start = range.start.min(end);
        // Only a grown tail is zeroed: a reused buffer of the right size is read into as
        // it is, without first writing every byte of it.
        buf.truncate((end - start) as usize);
        buf.resize((end - start) as usize, [0u8; 32]);
        self.read_leaves(start, buf)
    }

    /// Hint the kernel that `range` of leaves will be read soon (asynchronous read-ahead).
    pub fn advise_willneed(&self, range: Range<u64>) {
        let n = self.header.leaf_count;
        let end = range.end.min(n);
        let start = range.start.min(end);
        if end > start {
            let from = HEADER_LEN as u64 + start * LEAF_LEN as u64;
            let len = std::num::NonZeroU64::new((end - start) * LEAF_LEN as u64);
            // Advice is only a hint; a failure changes nothing but speed.
            let _ = rustix::fs::fadvise(&self.file, from, len, rustix::fs::Advice::WillNeed);
        }
    }

    /// Hint the kernel that the whole file is read sequentially (larger read-ahead).
    pub fn advise_sequential(&self) {
        let _ = rustix::fs::fadvise(&self.file, 0, None, rustix::fs::Advice::Sequential);
    }

    /// The open file (full scans reopen it for direct reads).
    pub(crate) fn as_file(&self) -> &File {
        &self.file
    }

    /// Ask the kernel to drop the file's cached pages (the benchmark's cold scan).
    pub fn evict_from_page_cache(&self) {
        let _ = rustix::fs::fadvise(&self.file, 0, None, rustix::fs::Advice::DontNeed);
    }
}
