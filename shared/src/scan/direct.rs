//! Direct (`O_DIRECT`) reads for full scans of farms larger than the page cache.
//!
//! A farm that fits in memory stays in the page cache from one epoch to the next, so its
//! scans read through the cache. A farm larger than that is read from the disk every epoch
//! whatever the cache does, and reading it through the cache only costs CPU (page
//! allocation, LRU churn, a copy of every byte: about 0.2 CPU-seconds per GB here, a fifth
//! of what hashing it takes) and evicts everything else the machine caches. Such scans read
//! each chunk straight into an aligned buffer with one direct read, which the device serves
//! while the hashers work on the previous chunks.

use std::fs::File;
use std::ops::Range;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, MetadataExt};

use crate::plot::{PlotError, PlotFile, HEADER_LEN, LEAF_LEN};

/// Offset, length and memory alignment of direct reads (a multiple of every logical block
/// size in use: 512 and 4096).
const ALIGN: usize = 4096;

/// How a full scan reads its plots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlotReads {
    /// Direct reads when the plots of the scan together are larger than half the RAM (they
    /// cannot stay cached), through the page cache otherwise.
    Auto,
    /// Always through the page cache.
    PageCache,
    /// Always direct, where the filesystem allows it (else through the page cache).
    Direct,
}

impl PlotReads {
    /// Whether a full scan of `bytes` of plots reads them direct.
    pub(super) fn direct_for(self, bytes: u64) -> bool {
        match self {
            PlotReads::PageCache => false,
            PlotReads::Direct => true,
            PlotReads::Auto => memory_bytes().is_some_and(|ram| bytes > ram / 2),
        }
    }
}

/// Total RAM (`MemTotal` of `/proc/meminfo`); `None` where it cannot be read.
fn memory_bytes() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// A reader's reusable chunk buffer: leaves read through the page cache land in `leaves`,
/// direct reads in the aligned `raw` (the leaves are then the bytes `span` of it).
#[derive(Debug, Default)]
pub(super) struct ChunkBuf {
    leaves: Vec<[u8; 32]>,
    raw: Vec<u8>,
    span: Range<usize>,
    direct: bool,
}

impl ChunkBuf {
    /// The leaves of the last read.
    pub(super) fn leaves(&self) -> &[[u8; 32]] {
        if self.direct {
            self.raw[self.span.clone()].as_chunks::<32>().0
        } else {
            &self.leaves
        }
    }

    /// Leaves `range` through the page cache.
    pub(super) fn read_cached(
        &mut self,
        plot: &PlotFile,
        range: Range<u64>,
    ) -> Result<(), PlotError> {
        self.direct = false;
        plot.read_range(range, &mut self.leaves)
    }
}

/// A plot reopened for direct reads.
#[derive(Debug)]
pub(super) struct DirectFile {
    file: File,
}

impl DirectFile {
    /// `plot`'s open file reopened with `O_DIRECT` (through `/proc/self/fd`, so it is the
    /// same file even if the path was replaced since); `None` where the filesystem or OS
    /// does not allow direct reads.
    pub(super) fn open(plot: &PlotFile) -> Option<Self> {
        let proc_path = format!("/proc/self/fd/{}", plot.as_file().as_raw_fd());
        let fd = rustix::fs::open(
            proc_path.as_str(),
            rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECT | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )
        .ok()?;
        let file = File::from(fd);
        let (new, old) = (file.metadata().ok()?, plot.as_file().metadata().ok()?);
        (new.dev() == old.dev() && new.ino() == old.ino()).then_some(Self { file })
    }

    /// Leaves `range` (within `0..N`) into `buf` with one aligned direct read (more if the
    /// OS returns less). A short file is a [`PlotError::Read`] as for every plot read; an
    /// `EINVAL` (direct reads refused after all) too, and the caller falls back to the page
    /// cache for that plot ([`is_unsupported`]).
    pub(super) fn read(
        &self,
        plot: &PlotFile,
        range: Range<u64>,
        buf: &mut ChunkBuf,
    ) -> Result<(), PlotError> {
        let start = HEADER_LEN as u64 + range.start * LEAF_LEN as u64;
        let end = HEADER_LEN as u64 + range.end * LEAF_LEN as u64;
        let from = start / ALIGN as u64 * ALIGN as u64;
        let need = (end - from) as usize;
        let len = need.div_ceil(ALIGN) * ALIGN;
        if buf.raw.len() < len + ALIGN {
            buf.raw.resize(len + ALIGN, 0);
        }
        let at = buf.raw.as_ptr().align_offset(ALIGN);
        let window = &mut buf.raw[at..at + len];
        let mut got = 0;
        while got < need {
            let error = |source| PlotError::Read {
                path: plot.path().to_path_buf(),
                offset: from + got as u64,
                len: (need - got) as u64,
                source,
            };
            match self.file.read_at(&mut window[got..], from + got as u64) {
                Ok(0) => return Err(error(std::io::ErrorKind::UnexpectedEof.into())),
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(error(e)),
            }
        }
        let skip = at + (start - from) as usize;
        buf.span = skip..skip + (end - start) as usize;
        buf.direct = true;
        Ok(())
    }
}

/// Whether a direct read failed because direct I/O is not allowed here (`EINVAL`), not
/// because the plot is unreadable.
pub(super) fn is_unsupported(error: &PlotError) -> bool {
    matches!(error, PlotError::Read { source, .. }
        if source.raw_os_error() == Some(rustix::io::Errno::INVAL.raw_os_error()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plot::{create_plot, CacheLevels, CreatePlot};
    use std::sync::atomic::AtomicBool;

    #[test]
    fn direct_reads_return_the_leaves_of_unaligned_ranges() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.plot");
        let req = CreatePlot {
            path: path.clone(),
            miner_pk: [1; 32],
            seed: [2; 32],
            leaf_count: 10_000,
            cache: CacheLevels::Disabled,
            threads: Some(1),
        };
        create_plot(&req, &mut |_| {}, &AtomicBool::new(false)).unwrap();
        let plot = PlotFile::open(&path).unwrap();
        let Some(direct) = DirectFile::open(&plot) else {
            // tmpfs and some other filesystems refuse O_DIRECT: scans use the page cache.
            eprintln!("no direct reads on {}", dir.path().display());
            return;
        };
        let mut buf = ChunkBuf::default();
        let mut expected = Vec::new();
        for range in [
            0..1,
            0..128,
            3..4100,
            127..128,
            9_000..10_000,
            9_999..10_000,
        ] {
            direct.read(&plot, range.clone(), &mut buf).unwrap();
            plot.read_range(range.clone(), &mut expected).unwrap();
            assert_eq!(buf.leaves(), &expected[..], "{range:?}");
        }
        buf.read_cached(&plot, 5..9).unwrap();
        assert_eq!(buf.leaves().len(), 4);
    }
}
