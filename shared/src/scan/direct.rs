//! Direct (`O_DIRECT`) reads for full scans of farms larger than the page cache.
//!
//! A farm that fits in memory stays in the page cache from one epoch to the next, so its
//! scans read through the cache. A farm larger than that is read from the disk every epoch
//! whatever the cache does, and reading it through the cache only costs CPU (page
//! allocation, LRU churn, a copy of every byte: about 0.2 CPU-seconds per GB here, a fifth
//! of what hashing it takes) and evicts everything else the machine caches. Such scans read
//! the plots in [`BLOCK`]s straight into huge-page buffers, one direct read each, which the
//! device serves while the hashers work on the previous blocks.

use std::fs::File;
use std::ops::Range;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::sync::atomic::Ordering;

use crate::plot::{PlotError, PlotFile, HEADER_LEN, LEAF_LEN};

/// Offset and length alignment of direct reads (a multiple of every logical block size in
/// use: 512 and 4096).
const ALIGN: usize = 4096;

/// Bytes per direct read, at offsets that are multiples of it: 2 MiB, one transparent huge
/// page of the read's buffer (which asks the kernel for one, `MADV_HUGEPAGE`). The device
/// then gets each read as one request of one physically contiguous segment, at an offset
/// its backing store is aligned to. On the development machine's virtual disk, four such
/// reads in flight read 3.2 to 3.4 GB/s; the same reads 4 KiB off that alignment, or into
/// buffers of 4 KiB pages (a virtio request takes at most 254 segments), read 1.7 to 1.9.
/// Without huge pages (disabled, or none free) the reads still work, at the lower rate.
pub(super) const BLOCK: usize = 2 << 20;

/// A plot's bytes cut into [`BLOCK`]s at file offsets `k * BLOCK`. The header (121 bytes)
/// makes the leaves straddle the cuts: block `k` holds the leaves [`Blocks::whole`] wholly,
/// and the head of the leaf cut at its end, whose tail opens block `k + 1`.
#[derive(Debug, Clone, Copy)]
pub(super) struct Blocks {
    leaves: u64,
}

impl Blocks {
    pub(super) fn of(plot: &PlotFile) -> Self {
        Self {
            leaves: plot.leaf_count(),
        }
    }

    /// Blocks that hold leaf bytes.
    pub(super) fn count(self) -> u64 {
        if self.leaves == 0 {
            return 0;
        }
        (HEADER_LEN as u64 + self.leaves * LEAF_LEN as u64).div_ceil(BLOCK as u64)
    }

    /// The leaves wholly inside block `k`.
    pub(super) fn whole(self, k: u64) -> Range<u64> {
        let (lo, hi) = (k * BLOCK as u64, (k + 1) * BLOCK as u64);
        let header = HEADER_LEN as u64;
        let first = lo
            .saturating_sub(header)
            .div_ceil(LEAF_LEN as u64)
            .min(self.leaves);
        let end = (hi.saturating_sub(header) / LEAF_LEN as u64).min(self.leaves);
        first.min(end)..end
    }

    /// The leaf cut by the end of block `k` (its first bytes in `k`, the rest in `k + 1`),
    /// and how many of its bytes block `k` holds.
    pub(super) fn cut_at_end(self, k: u64) -> Option<(u64, usize)> {
        let index = self.whole(k).end;
        let start = HEADER_LEN as u64 + index * LEAF_LEN as u64;
        let hi = (k + 1) * BLOCK as u64;
        (index < self.leaves && start < hi).then(|| (index, (hi - start) as usize))
    }

    /// Bytes of block `k` that belong to the plot's leaves, from the block's start.
    fn bytes(self, k: u64) -> usize {
        let end = HEADER_LEN as u64 + self.leaves * LEAF_LEN as u64;
        (end.saturating_sub(k * BLOCK as u64)).min(BLOCK as u64) as usize
    }
}

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

/// A reader's reusable block buffer: a block ([`DirectFile::read_block`]) lands in the
/// huge-page-aligned `raw`; its bytes are then `block` of it, the leaves wholly inside it
/// `span`.
#[derive(Debug, Default)]
pub(super) struct ChunkBuf {
    raw: Vec<u8>,
    span: Range<usize>,
    block: Range<usize>,
}

impl ChunkBuf {
    /// The leaves wholly inside the block last read.
    pub(super) fn leaves(&self) -> &[[u8; 32]] {
        self.raw[self.span.clone()].as_chunks::<32>().0
    }

    /// The bytes of the block last read ([`DirectFile::read_block`]).
    pub(super) fn block(&self) -> &[u8] {
        &self.raw[self.block.clone()]
    }

    /// Block `k` through the page cache, with the same result as
    /// [`DirectFile::read_block`].
    pub(super) fn read_block_cached(&mut self, plot: &PlotFile, k: u64) -> Result<(), PlotError> {
        self.fill_block(plot, k, plot.as_file())
    }

    /// Block `k` read from `file` (direct or not) into the huge-page-aligned window.
    fn fill_block(&mut self, plot: &PlotFile, k: u64, file: &File) -> Result<(), PlotError> {
        let blocks = Blocks::of(plot);
        let from = k * BLOCK as u64;
        let need = blocks.bytes(k);
        let len = need.div_ceil(ALIGN) * ALIGN;
        if self.raw.len() < BLOCK + BLOCK {
            self.raw = vec![0u8; BLOCK + BLOCK];
            let at = self.raw.as_ptr().align_offset(BLOCK);
            advise_huge_pages(&mut self.raw[at..at + BLOCK]);
            // Touch it now, so the page is there (a huge one where the kernel has one)
            // before the first read pins it.
            self.raw[at..at + BLOCK].fill(0);
        }
        let at = self.raw.as_ptr().align_offset(BLOCK);
        let window = &mut self.raw[at..at + len];
        let mut got = 0;
        while got < need {
            let error = |source| PlotError::Read {
                path: plot.path().to_path_buf(),
                offset: from + got as u64,
                len: (need - got) as u64,
                source,
            };
            match file.read_at(&mut window[got..], from + got as u64) {
                Ok(0) => return Err(error(std::io::ErrorKind::UnexpectedEof.into())),
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(error(e)),
            }
        }
        let whole = blocks.whole(k);
        let offset = |leaf: u64| (HEADER_LEN as u64 + leaf * LEAF_LEN as u64 - from) as usize;
        self.span = at + offset(whole.start)..at + offset(whole.end);
        self.block = at..at + need;
        Ok(())
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

    /// Block `k` of `plot` into `buf` with one direct read (more if the OS returns less);
    /// the buffer's leaves are then those wholly inside the block ([`Blocks::whole`]), its
    /// [`ChunkBuf::block`] the block's bytes. A short file is a [`PlotError::Read`] as for
    /// every plot read; an `EINVAL` (direct reads refused after all) too, and the caller
    /// reads the block through the page cache instead ([`is_unsupported`],
    /// [`ChunkBuf::read_block_cached`]).
    pub(super) fn read_block(
        &self,
        plot: &PlotFile,
        k: u64,
        buf: &mut ChunkBuf,
    ) -> Result<(), PlotError> {
        buf.fill_block(plot, k, &self.file)
    }
}

/// The rate at which this engine's direct reads read all of `plot` from the device:
/// [`super::DIRECT_READERS`] threads, each reading the next [`BLOCK`] into its own buffer,
/// nothing hashed (`minerd bench` takes the higher of this and a buffered sequential read
/// as the disk's read rate). `None` where the filesystem refuses direct reads or a read
/// fails. Evict the plot from the page cache first for a figure of the device.
pub fn direct_read_rate(plot: &PlotFile) -> Option<f64> {
    let direct = DirectFile::open(plot)?;
    let blocks = Blocks::of(plot).count();
    let next = std::sync::atomic::AtomicU64::new(0);
    let failed = std::sync::atomic::AtomicBool::new(false);
    let started = std::time::Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..super::DIRECT_READERS {
            scope.spawn(|| {
                let mut buf = ChunkBuf::default();
                loop {
                    let k = next.fetch_add(1, Ordering::Relaxed);
                    if k >= blocks || failed.load(Ordering::Relaxed) {
                        return;
                    }
                    if direct.read_block(plot, k, &mut buf).is_err() {
                        failed.store(true, Ordering::Relaxed);
                        return;
                    }
                }
            });
        }
    });
    let elapsed = started.elapsed().as_secs_f64();
    let bytes = plot.leaf_count() * LEAF_LEN as u64;
    (!failed.load(Ordering::Relaxed) && bytes > 0).then(|| bytes as f64 / elapsed.max(1e-9))
}

/// Asks the kernel to back `region` (page-aligned, a whole number of pages) with
/// transparent huge pages. Only a hint: where THP is off or unavailable nothing changes.
#[allow(unsafe_code)]
fn advise_huge_pages(region: &mut [u8]) {
    // SAFETY: `region` is memory of a live allocation, borrowed mutably for its whole length
    // (the caller passes a page-aligned start and a whole number of pages, so the advice
    // covers no byte outside it); MADV_HUGEPAGE changes only how the kernel backs those
    // pages, never their contents, mapping or validity, and its failure changes nothing.
    let _ = unsafe {
        libc::madvise(
            region.as_mut_ptr().cast(),
            region.len(),
            libc::MADV_HUGEPAGE,
        )
    };
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

    #[test]
    fn blocks_hold_every_leaf_once_whole_or_cut_and_read_the_same_direct_or_cached() {
        let dir = tempfile::tempdir().unwrap();
        // 200 000 leaves = 6.1 MiB: four blocks, three cuts.
        let plot = crate::test_support::plot(dir.path(), "d.plot", 200_000);
        let mut all = Vec::new();
        plot.read_range(0..plot.leaf_count(), &mut all).unwrap();
        let blocks = Blocks::of(&plot);
        assert_eq!(blocks.count(), 4);
        let direct = DirectFile::open(&plot);
        if direct.is_none() {
            // tmpfs and some other filesystems refuse O_DIRECT: scans use the page cache.
            eprintln!("no direct reads on {}", dir.path().display());
        }
        // Rebuild every leaf from the blocks alone: the whole ones, and the cut ones from
        // the head at the end of one block and the tail at the start of the next.
        let mut rebuilt = vec![None; all.len()];
        let mut head: Option<(u64, Vec<u8>)> = None;
        for k in 0..blocks.count() {
            let mut buf = ChunkBuf::default();
            buf.read_block_cached(&plot, k).unwrap();
            let cached = (buf.leaves().to_vec(), buf.block().to_vec());
            if let Some(d) = &direct {
                d.read_block(&plot, k, &mut buf).unwrap();
                assert_eq!(
                    (buf.leaves().to_vec(), buf.block().to_vec()),
                    cached,
                    "block {k}"
                );
            }
            let whole = blocks.whole(k);
            assert_eq!(buf.leaves().len() as u64, whole.end - whole.start);
            for (i, leaf) in whole.clone().zip(buf.leaves()) {
                assert!(
                    rebuilt[i as usize].replace(*leaf).is_none(),
                    "leaf {i} twice"
                );
            }
            if let Some((index, bytes)) = head.take() {
                let mut leaf = [0u8; 32];
                leaf[..bytes.len()].copy_from_slice(&bytes);
                leaf[bytes.len()..].copy_from_slice(&buf.block()[..32 - bytes.len()]);
                assert!(
                    rebuilt[index as usize].replace(leaf).is_none(),
                    "leaf {index} twice"
                );
            }
            if let Some((index, n)) = blocks.cut_at_end(k) {
                assert_eq!(index, whole.end);
                head = Some((index, buf.block()[buf.block().len() - n..].to_vec()));
            }
        }
        assert!(head.is_none());
        let rebuilt: Vec<[u8; 32]> = rebuilt.into_iter().map(Option::unwrap).collect();
        assert_eq!(rebuilt, all);
    }
}
