//! Scanning plots for the best (lowest) score of a challenge.
//!
//! `score = H(challenge ‖ leaf)`: one 64-byte block plus the constant padding block, hashed
//! by the multi-buffer score kernel ([`crate::kernel`]), which precomputes the rounds that
//! read only the challenge. The index sets are exactly the reference strategies (section
//! 3.5, IEEE double arithmetic where the reference uses it).
//!
//! Reading: plots are read with positioned reads, never mapped (a shrinking file is an
//! error on that plot, not a crash: [`PlotScanStats::error`]). For `full` and `deadline`,
//! each device's (`st_dev`) plots are read in file order, the devices in turn. A farm that
//! fits in memory is read through the page cache in 512 KiB chunks, each by the pool thread
//! that hashes it (the copy lands in that core's cache right before it is hashed), with the
//! kernel's read-ahead asked for 8 MiB ahead. One larger than half the RAM, which the cache
//! cannot hold anyway, is read with direct reads of whole 2 MiB blocks (into huge pages) by
//! four reader threads per device, which hand each block's whole leaves to the hashing
//! threads through a bounded queue and score the leaves cut by block boundaries themselves,
//! so the disk streams while the cores hash ([`PlotReads`], `direct.rs`). Sampling strategies read only
//! the leaves they score, in work items that all threads pull from one queue. A deadline
//! stops the scan with the best found so far; the cancel flag is checked between chunks.
//!
//! Scoring: the score kernel only reports which leaves may beat the plot's best so far
//! ([`Kernels::score_candidates`]), and those few are rescored exactly.
//!
//! Tie-break: lowest score, then lowest plot id (seed), then lowest index, so the result
//! does not depend on thread timing.

use std::cmp::Ordering as CmpOrdering;
use std::collections::HashMap;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Mutex};
use std::time::{Duration, Instant};

use crate::compress::hash_64;
use crate::hash::Hash32;
use crate::kernel::{score_prefix, Kernels, ScoreContext};
use crate::plot::{PlotError, PlotFile};

mod direct;
mod strategy;
pub use direct::{direct_read_rate, PlotReads};
use direct::{Blocks, ChunkBuf, DirectFile};
use strategy::for_each_index;
pub use strategy::{ParseScanStrategyError, ScanStrategy};

/// Strategy positions per work item of the sampling strategies.
const ITEM_LEN: u64 = 1 << 14;
/// Leaves per read of a full scan through the page cache: 16 Ki leaves = 512 KiB, small
/// enough that the chunk a thread has just copied is still in its core's cache when it
/// hashes it, large enough that the read's system call is a small part of the chunk's
/// time.
const CACHED_CHUNK_LEN: u64 = 1 << 14;
/// Readers per device with direct reads: four 2 MiB requests in flight (`direct::BLOCK`).
/// Measured on this project's benchmark machine (a virtual disk): 3.2 to 3.4 GB/s, where
/// reads off the 2 MiB alignment or into 4 KiB pages stayed at 1.7 to 1.9 GB/s in every
/// configuration tried (decisions E3).
const DIRECT_READERS: usize = 4;
/// How far ahead of its position a reader asks the kernel to read, in leaves (8 MiB).
const READ_AHEAD_LEN: u64 = 1 << 18;
/// Scores per kernel call.
const SCORE_BATCH: usize = 256;

/// `H(challenge ‖ leaf)`: the score of a leaf (lower is better).
#[inline]
pub fn score(challenge: &Hash32, leaf: &[u8; 32]) -> Hash32 {
    let mut block = [0u8; 64];
    block[..32].copy_from_slice(challenge);
    block[32..].copy_from_slice(leaf);
    hash_64(&block)
}

/// A winning leaf.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    /// Index into the `plots` slice given to [`scan_plots`].
    pub plot: usize,
    /// Leaf index in that plot.
    pub index: u64,
    /// The leaf.
    pub leaf: [u8; 32],
    /// Its score.
    pub score: Hash32,
}

/// Per-plot figures of one scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlotScanStats {
    /// Index into the `plots` slice.
    pub plot: usize,
    /// Leaves scored in this plot.
    pub leaves_scanned: u64,
    /// Time from the start of the scan until this plot's last leaf was scored.
    pub elapsed: Duration,
    /// This plot's best leaf (the fallback when a better plot cannot give a valid proof).
    /// `None` when reading the plot failed.
    pub best: Option<Candidate>,
    /// Why reading this plot failed (I/O error, file truncated under the miner): the plot
    /// was not fully scanned and gives no candidate.
    pub error: Option<String>,
}

/// The result of [`scan_plots`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanOutcome {
    /// The best leaf over all plots, if any leaf was scored.
    pub best: Option<Candidate>,
    /// Leaves scored in total.
    pub leaves_scanned: u64,
    /// The deadline passed before every leaf of the strategy was scored.
    pub timed_out: bool,
    /// The scan was cancelled before it finished.
    pub cancelled: bool,
    /// One entry per plot, in `plots` order.
    pub per_plot: Vec<PlotScanStats>,
}

/// Score `plots` for `challenge` with `strategy`, on the current rayon pool, stopping at
/// `deadline` or when `cancel` is set (checked between chunks of at most 128 Ki leaves).
pub fn scan_plots(
    plots: &[&PlotFile],
    challenge: &Hash32,
    strategy: &ScanStrategy,
    deadline: Option<Instant>,
    cancel: &AtomicBool,
) -> ScanOutcome {
    scan_plots_observed(
        plots,
        challenge,
        strategy,
        deadline,
        cancel,
        &AtomicU64::new(0),
    )
}

/// [`scan_plots`] that adds the leaves it scores to `progress` as it goes (after each
/// chunk or work item), so that another thread can report the scan's progress while it
/// runs.
pub fn scan_plots_observed(
    plots: &[&PlotFile],
    challenge: &Hash32,
    strategy: &ScanStrategy,
    deadline: Option<Instant>,
    cancel: &AtomicBool,
    progress: &AtomicU64,
) -> ScanOutcome {
    scan_plots_reading(
        plots,
        challenge,
        strategy,
        deadline,
        cancel,
        progress,
        PlotReads::Auto,
    )
}

/// [`scan_plots_observed`] with the way full and deadline scans read their plots chosen
/// by the caller (the others read only the leaves they score, through the page cache).
pub fn scan_plots_reading(
    plots: &[&PlotFile],
    challenge: &Hash32,
    strategy: &ScanStrategy,
    deadline: Option<Instant>,
    cancel: &AtomicBool,
    progress: &AtomicU64,
    reads: PlotReads,
) -> ScanOutcome {
    let bytes = plots.iter().map(|p| p.leaf_count() * 32).sum();
    let shared = Shared {
        direct: reads.direct_for(bytes),
        plots,
        progress,
        ctx: ScoreContext::new(challenge),
        kernels: Kernels::active(),
        strategy: *strategy,
        deadline,
        cancel,
        started: Instant::now(),
        timed_out: AtomicBool::new(false),
        cancelled: AtomicBool::new(false),
        scanned: plots.iter().map(|_| AtomicU64::new(0)).collect(),
        finished_ns: plots.iter().map(|_| AtomicU64::new(0)).collect(),
        bests: Mutex::new(vec![None; plots.len()]),
        errors: Mutex::new(vec![None; plots.len()]),
    };
    let complete = match strategy {
        ScanStrategy::Full | ScanStrategy::Deadline => sequential_scan(&shared),
        _ => sampled_scan(&shared),
    };
    shared.outcome(complete)
}

/// State of one scan, shared by its readers and hashers.
struct Shared<'a> {
    plots: &'a [&'a PlotFile],
    /// Leaves scored so far, for an observer.
    progress: &'a AtomicU64,
    ctx: ScoreContext,
    kernels: Kernels,
    /// Full scans read direct ([`PlotReads`]).
    direct: bool,
    strategy: ScanStrategy,
    deadline: Option<Instant>,
    cancel: &'a AtomicBool,
    started: Instant,
    timed_out: AtomicBool,
    cancelled: AtomicBool,
    scanned: Vec<AtomicU64>,
    finished_ns: Vec<AtomicU64>,
    /// Best per plot: the overall best is the best of these.
    bests: Mutex<Vec<Option<Candidate>>>,
    errors: Mutex<Vec<Option<String>>>,
}

/// A best leaf of a range: index, leaf, score.
type Best = Option<(u64, [u8; 32], Hash32)>;

impl Shared<'_> {
    /// Whether to stop: cancelled or past the deadline (recorded).
    fn should_stop(&self) -> bool {
        if self.cancel.load(Ordering::Relaxed) {
            self.cancelled.store(true, Ordering::Relaxed);
            return true;
        }
        if self.deadline.is_some_and(|d| Instant::now() >= d) {
            self.timed_out.store(true, Ordering::Relaxed);
            return true;
        }
        false
    }

    fn failed(&self, p: usize) -> bool {
        lock(&self.errors)[p].is_some()
    }

    fn fail(&self, p: usize, error: &PlotError) {
        let mut message = error.to_string();
        let mut source = std::error::Error::source(error);
        while let Some(s) = source {
            message.push_str(": ");
            message.push_str(&s.to_string());
            source = s.source();
        }
        lock(&self.errors)[p].get_or_insert(message);
    }

    /// Record `count` scored leaves of plot `p` and their best.
    fn done(&self, p: usize, count: u64, best: Best, local: &mut [Option<Candidate>]) {
        if let Some((index, leaf, score)) = best {
            let candidate = Candidate {
                plot: p,
                index,
                leaf,
                score,
            };
            if local[p].is_none_or(|b| better(&candidate, &b, self.plots)) {
                local[p] = Some(candidate);
            }
        }
        self.count(p, count);
    }

    /// Score and record one leaf of plot `p` on its own (a leaf cut by the boundary of two
    /// direct-read blocks).
    fn done_single(&self, p: usize, index: u64, leaf: [u8; 32]) {
        let candidate = Candidate {
            plot: p,
            index,
            leaf,
            score: score(self.ctx.challenge(), &leaf),
        };
        {
            let mut bests = lock(&self.bests);
            if bests[p].is_none_or(|b| better(&candidate, &b, self.plots)) {
                bests[p] = Some(candidate);
            }
        }
        self.count(p, 1);
    }

    fn count(&self, p: usize, count: u64) {
        self.scanned[p].fetch_add(count, Ordering::Relaxed);
        self.progress.fetch_add(count, Ordering::Relaxed);
        let ns = u64::try_from(self.started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.finished_ns[p].fetch_max(ns, Ordering::Relaxed);
    }

    /// Merge a worker's per-plot bests.
    fn merge(&self, local: Vec<Option<Candidate>>) {
        if local.iter().all(Option::is_none) {
            return;
        }
        let mut guard = lock(&self.bests);
        for (slot, candidate) in guard.iter_mut().zip(local) {
            if let Some(c) = candidate {
                if slot.is_none_or(|b| better(&c, &b, self.plots)) {
                    *slot = Some(c);
                }
            }
        }
    }

    fn outcome(self, complete: bool) -> ScanOutcome {
        let plots = self.plots;
        let errors = self.errors.into_inner().unwrap_or_else(|e| e.into_inner());
        let mut bests = self.bests.into_inner().unwrap_or_else(|e| e.into_inner());
        for (best, error) in bests.iter_mut().zip(&errors) {
            if error.is_some() {
                *best = None;
            }
        }
        let best =
            bests
                .iter()
                .flatten()
                .copied()
                .reduce(|a, b| if better(&b, &a, plots) { b } else { a });
        let per_plot: Vec<PlotScanStats> = (0..plots.len())
            .zip(bests)
            .zip(errors)
            .map(|((p, best), error)| PlotScanStats {
                plot: p,
                leaves_scanned: self.scanned[p].load(Ordering::Relaxed),
                elapsed: Duration::from_nanos(self.finished_ns[p].load(Ordering::Relaxed)),
                best,
                error,
            })
            .collect();
        let leaves_scanned = per_plot.iter().map(|s| s.leaves_scanned).sum();
        ScanOutcome {
            best,
            leaves_scanned,
            timed_out: self.timed_out.load(Ordering::Relaxed) && !complete,
            cancelled: self.cancelled.load(Ordering::Relaxed) && !complete,
            per_plot,
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A chunk read by a reader, waiting for a hasher.
struct ReadChunk {
    plot: usize,
    first: u64,
    leaves: ChunkBuf,
}

/// Full and deadline scans, device by device, each device's plots in file order. Returns
/// whether every leaf was scored.
fn sequential_scan(shared: &Shared<'_>) -> bool {
    let plots = shared.plots;
    // Plots per device, in `plots` order.
    let mut devices: Vec<Vec<usize>> = Vec::new();
    let mut ids: Vec<u64> = Vec::new();
    for (p, plot) in plots.iter().enumerate() {
        match ids.iter().position(|d| *d == plot.device()) {
            Some(i) => devices[i].push(p),
            None => {
                ids.push(plot.device());
                devices.push(vec![p]);
            }
        }
    }
    let total: u64 = plots.iter().map(|p| p.leaf_count()).sum();
    if total == 0 {
        return true;
    }
    if shared.direct {
        reader_scan(shared, &devices);
    } else {
        own_reads_scan(shared, &devices);
    }
    let scanned: u64 = shared
        .scanned
        .iter()
        .map(|c| c.load(Ordering::Relaxed))
        .sum();
    scanned == total
}

/// Through the page cache: every pool thread reads the chunks it hashes, so each chunk is
/// copied out of the page cache into the cache of the core that hashes it right away, with
/// no thread in between to hand it over (or to compete with the hashers for the cores).
/// Threads take the devices in turn, so that every disk of a farm read for the first time
/// streams at once; the kernel's read-ahead, asked for well ahead of each read, keeps the
/// disk busy while they hash.
fn own_reads_scan(shared: &Shared<'_>, devices: &[Vec<usize>]) {
    let plots = shared.plots;
    let cursors: Vec<Mutex<Cursor>> = devices.iter().map(|_| Mutex::default()).collect();
    let turn = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let hasher = || {
        let mut local: Vec<Option<Candidate>> = vec![None; plots.len()];
        let mut buf: Vec<[u8; 32]> = Vec::new();
        loop {
            if stop.load(Ordering::Relaxed) || shared.should_stop() {
                stop.store(true, Ordering::Relaxed);
                break;
            }
            let start = turn.fetch_add(1, Ordering::Relaxed);
            let claimed = (0..devices.len()).find_map(|k| {
                let d = (start + k) % devices.len();
                claim(shared, &devices[d], &cursors[d], CACHED_CHUNK_LEN).map(|c| (d, c))
            });
            let Some((d, (at, first, end))) = claimed else {
                break; // every chunk of every device is claimed
            };
            let p = devices[d][at];
            let plot = plots[p];
            if first == 0 {
                plot.advise_sequential();
                plot.advise_willneed(0..READ_AHEAD_LEN);
            }
            let ahead = first + READ_AHEAD_LEN;
            plot.advise_willneed(ahead..ahead + (end - first));
            match plot.read_range(first..end, &mut buf) {
                Ok(()) => {
                    let best = best_of(shared, &buf, bound_of(&local[p]), |k| first + k as u64);
                    shared.done(p, buf.len() as u64, best, &mut local);
                }
                Err(e) => shared.fail(p, &e),
            }
        }
        shared.merge(local);
    };
    on_threads(rayon::current_num_threads(), hasher);
}

/// Direct reads: [`DIRECT_READERS`] reader threads per device (they mostly wait for the
/// device, which copies straight into their buffers), every pool thread hashing the chunks
/// they hand over through a bounded queue.
fn reader_scan(shared: &Shared<'_>, devices: &[Vec<usize>]) {
    let plots = shared.plots;
    let hashers = rayon::current_num_threads().max(1);
    let buffers = 2 * hashers + 2 * DIRECT_READERS * devices.len();
    let cursors: Vec<Mutex<Cursor>> = devices.iter().map(|_| Mutex::default()).collect();
    let (free_tx, free_rx) = mpsc::channel::<ChunkBuf>();
    for _ in 0..buffers {
        // Allocated lazily by the readers (a small plot needs only one short buffer).
        let _ = free_tx.send(ChunkBuf::default());
    }
    let free_rx = Mutex::new(free_rx);
    let (work_tx, work_rx) = mpsc::channel::<ReadChunk>();
    let work_rx = Mutex::new(work_rx);
    let stop = AtomicBool::new(false);
    let cuts = Mutex::new(HashMap::new());

    std::thread::scope(|scope| {
        for (list, cursor) in devices.iter().zip(&cursors) {
            for _ in 0..DIRECT_READERS {
                let work_tx = work_tx.clone();
                let (free_tx, free_rx, stop, cuts) = (&free_tx, &free_rx, &stop, &cuts);
                scope.spawn(move || {
                    read_plots(
                        shared,
                        list,
                        cursor,
                        (free_tx, free_rx),
                        &work_tx,
                        stop,
                        cuts,
                    )
                });
            }
        }
        drop(work_tx);
        let hasher = || {
            let mut local: Vec<Option<Candidate>> = vec![None; plots.len()];
            loop {
                let Ok(chunk) = lock(&work_rx).recv() else {
                    break;
                };
                if !stop.load(Ordering::Relaxed) && shared.should_stop() {
                    stop.store(true, Ordering::Relaxed);
                }
                if !stop.load(Ordering::Relaxed) {
                    let leaves = chunk.leaves.leaves();
                    let first = chunk.first;
                    let bound = bound_of(&local[chunk.plot]);
                    let best = best_of(shared, leaves, bound, |k| first + k as u64);
                    shared.done(chunk.plot, leaves.len() as u64, best, &mut local);
                }
                // Back to the readers (they may be waiting for it).
                let _ = free_tx.send(chunk.leaves);
            }
            shared.merge(local);
        };
        on_threads(hashers, hasher);
    });
}

/// The next chunk of a device's plots (`list`, in file order, failed plots skipped): its
/// position in `list`, first leaf and end; `None` when every chunk is claimed.
fn claim(
    shared: &Shared<'_>,
    list: &[usize],
    cursor: &Mutex<Cursor>,
    chunk_len: u64,
) -> Option<(usize, u64, u64)> {
    let mut c = lock(cursor);
    loop {
        let &p = list.get(c.at)?;
        let n = shared.plots[p].leaf_count();
        if c.first >= n || shared.failed(p) {
            (c.at, c.first) = (c.at + 1, 0);
            continue;
        }
        let first = c.first;
        c.first = (first + chunk_len).min(n);
        return Some((c.at, first, c.first));
    }
}

/// Where a device's readers are: the next chunk to claim is leaf `first` (for direct reads:
/// block `first`) of the plot at `list[at]` of that device.
#[derive(Debug, Default)]
struct Cursor {
    at: usize,
    first: u64,
}

/// Halves of leaves cut by the boundary of two blocks, by (plot, leaf index): the bytes so
/// far and how many there are.
type Cuts = Mutex<HashMap<(usize, u64), ([u8; 32], usize)>>;

/// One of a device's direct readers: claims the device's blocks in file order, plot after
/// plot, reads each and hands the leaves wholly inside it to the hashers, until done or
/// stopped; it scores the leaves cut by block boundaries itself, once both halves are read
/// ([`join_cuts`]). With several readers several requests are in flight, so the device
/// never waits for a reader to be scheduled again after a read completes. A filesystem that
/// refuses direct reads gets the same blocks through the page cache.
fn read_plots(
    shared: &Shared<'_>,
    list: &[usize],
    cursor: &Mutex<Cursor>,
    free: (&mpsc::Sender<ChunkBuf>, &Mutex<mpsc::Receiver<ChunkBuf>>),
    work: &mpsc::Sender<ReadChunk>,
    stop: &AtomicBool,
    cuts: &Cuts,
) {
    // The plot this reader last read (its position in `list`) and its direct descriptor.
    let mut open: Option<(usize, Option<DirectFile>)> = None;
    loop {
        if stop.load(Ordering::Relaxed) || shared.should_stop() {
            stop.store(true, Ordering::Relaxed);
            return;
        }
        let Ok(mut buf) = lock(free.1).recv() else {
            return;
        };
        let Some((at, k)) = claim_block(shared, list, cursor) else {
            return; // every block of the device is claimed
        };
        let p = list[at];
        let plot = shared.plots[p];
        if open.as_ref().is_none_or(|(i, _)| *i != at) {
            open = Some((at, DirectFile::open(plot)));
        }
        let direct = open.as_ref().and_then(|(_, d)| d.as_ref());
        let mut read = direct.map(|d| d.read_block(plot, k, &mut buf));
        if read
            .as_ref()
            .is_some_and(|r| r.as_ref().is_err_and(direct::is_unsupported))
        {
            // The filesystem refused the direct read: the page cache from here on.
            open = Some((at, None));
            read = None;
        }
        let read = read.unwrap_or_else(|| buf.read_block_cached(plot, k));
        if let Err(e) = read {
            shared.fail(p, &e);
            // The buffer goes back: failing plots must not use up the readers' buffers.
            let _ = free.0.send(buf);
            continue;
        }
        join_cuts(shared, cuts, p, k, buf.block());
        let chunk = ReadChunk {
            plot: p,
            first: Blocks::of(plot).whole(k).start,
            leaves: buf,
        };
        if work.send(chunk).is_err() {
            return;
        }
    }
}

/// Adds the halves of cut leaves that block `k` of plot `p` holds (the tail of the leaf cut
/// at its start, the head of the one cut at its end) and scores each leaf whose other half
/// was already there.
fn join_cuts(shared: &Shared<'_>, cuts: &Cuts, p: usize, k: u64, block: &[u8]) {
    let blocks = Blocks::of(shared.plots[p]);
    let mut halves = Vec::with_capacity(2);
    if let Some((index, head)) = k
        .checked_sub(1)
        .and_then(|before| blocks.cut_at_end(before))
    {
        halves.push((index, head, &block[..32 - head]));
    }
    if let Some((index, head)) = blocks.cut_at_end(k) {
        halves.push((index, 0, &block[block.len() - head..]));
    }
    for (index, at, bytes) in halves {
        let whole = {
            let mut cuts = lock(cuts);
            let entry = cuts.entry((p, index)).or_insert(([0u8; 32], 0));
            entry.0[at..at + bytes.len()].copy_from_slice(bytes);
            entry.1 += bytes.len();
            if entry.1 == 32 {
                cuts.remove(&(p, index)).map(|(leaf, _)| leaf)
            } else {
                None
            }
        };
        if let Some(leaf) = whole {
            shared.done_single(p, index, leaf);
        }
    }
}

/// The next block of a device's plots (`list`, in file order, failed plots skipped): its
/// plot's position in `list` and the block number; `None` when every block is claimed.
fn claim_block(
    shared: &Shared<'_>,
    list: &[usize],
    cursor: &Mutex<Cursor>,
) -> Option<(usize, u64)> {
    let mut c = lock(cursor);
    loop {
        let &p = list.get(c.at)?;
        if c.first >= Blocks::of(shared.plots[p]).count() || shared.failed(p) {
            (c.at, c.first) = (c.at + 1, 0);
            continue;
        }
        let k = c.first;
        c.first += 1;
        return Some((c.at, k));
    }
}

/// Sampling and cache-friendly scans: work items of strategy positions, every thread
/// reading and hashing its own. Returns whether every position was scored.
fn sampled_scan(shared: &Shared<'_>) -> bool {
    let plots = shared.plots;
    let mut items: Vec<(usize, Range<u64>)> = Vec::new();
    for (p, plot) in plots.iter().enumerate() {
        let positions = shared.strategy.positions(plot.leaf_count());
        let mut at = 0;
        while at < positions {
            let end = (at + ITEM_LEN).min(positions);
            items.push((p, at..end));
            at = end;
        }
    }
    let next = AtomicUsize::new(0);
    let worker = || {
        let mut local: Vec<Option<Candidate>> = vec![None; plots.len()];
        let mut indices = Vec::new();
        let mut leaves = Vec::new();
        loop {
            if shared.should_stop() {
                break;
            }
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some((p, range)) = items.get(i).cloned() else {
                break;
            };
            if shared.failed(p) {
                continue;
            }
            let plot = plots[p];
            let count = range.end - range.start;
            indices.clear();
            for_each_index(&shared.strategy, plot.leaf_count(), range, |i| {
                indices.push(i)
            });
            match read_indices(plot, &indices, &mut leaves) {
                Ok(()) => {
                    let best = best_of(shared, &leaves, bound_of(&local[p]), |k| indices[k]);
                    shared.done(p, count, best, &mut local);
                }
                Err(e) => shared.fail(p, &e),
            }
        }
        shared.merge(local);
    };
    on_threads(rayon::current_num_threads().min(items.len()), worker);
    next.load(Ordering::Relaxed) >= items.len()
}

/// Runs `work` on `threads` threads of the current rayon pool at once (at least one: the
/// calling thread), and returns when every one has finished.
fn on_threads(threads: usize, work: impl Fn() + Sync) {
    rayon::scope(|s| {
        for _ in 1..threads.max(1) {
            s.spawn(|_| work());
        }
        work();
    });
}

/// The leaves at `indices` (ascending) into `out`: one read of their span when they are
/// dense, else one read each.
fn read_indices(
    plot: &PlotFile,
    indices: &[u64],
    out: &mut Vec<[u8; 32]>,
) -> Result<(), PlotError> {
    let (Some(&first), Some(&last)) = (indices.first(), indices.last()) else {
        out.clear();
        return Ok(());
    };
    let span = last - first + 1;
    if span <= 4 * indices.len() as u64 + 2048 {
        let mut range = Vec::new();
        plot.read_range(first..last + 1, &mut range)?;
        out.clear();
        out.extend(indices.iter().map(|&i| range[(i - first) as usize]));
        return Ok(());
    }
    out.clear();
    out.resize(indices.len(), [0u8; 32]);
    for (leaf, &i) in out.iter_mut().zip(indices) {
        plot.read_leaves(i, std::slice::from_mut(leaf))?;
    }
    Ok(())
}

/// The bound below which a leaf may beat `best` (a plot's best so far): its score's first
/// 8 bytes, or everything when there is none yet.
fn bound_of(best: &Option<Candidate>) -> u64 {
    best.map_or(u64::MAX, |c| score_prefix(&c.score))
}

/// The best of `leaves` (`leaves[k]` is the leaf at index `index(k)`; first on ties) among
/// those whose score's first 8 bytes are at most `bound`, `None` when no leaf is.
///
/// The score kernel only says which leaves may be within the bound ([`Kernels::
/// score_candidates`], compared in registers); those few are rescored exactly here. The
/// bound tightens with each better leaf found, so after the first batch of a plot almost
/// no leaf is a candidate. A batch scored without any bound yet (the first of a plot) gets
/// all its digests from the kernel instead, rather than rescoring every leaf one by one.
fn best_of(
    shared: &Shared<'_>,
    leaves: &[[u8; 32]],
    bound: u64,
    index: impl Fn(usize) -> u64,
) -> Best {
    let mut best: Best = None;
    let mut bound = bound;
    let mut masks = [0u64; SCORE_BATCH / 64];
    let mut scores = [[0u8; 32]; SCORE_BATCH];
    for (c, batch) in leaves.chunks(SCORE_BATCH).enumerate() {
        let at = c * SCORE_BATCH;
        if bound == u64::MAX {
            shared.kernels.scores(&shared.ctx, batch, &mut scores);
            for (i, score) in scores.iter().take(batch.len()).enumerate() {
                if best.is_none_or(|(_, _, b)| *score < b) {
                    best = Some((index(at + i), batch[i], *score));
                }
            }
        } else {
            shared
                .kernels
                .score_candidates(&shared.ctx, batch, bound, &mut masks);
            for (w, &mask) in masks.iter().take(batch.len().div_ceil(64)).enumerate() {
                let mut mask = mask;
                while mask != 0 {
                    let i = 64 * w + mask.trailing_zeros() as usize;
                    mask &= mask - 1;
                    let score = score(shared.ctx.challenge(), &batch[i]);
                    if best.is_none_or(|(_, _, b)| score < b) {
                        best = Some((index(at + i), batch[i], score));
                    }
                }
            }
        }
        if let Some((_, _, s)) = &best {
            bound = bound.min(score_prefix(s));
        }
    }
    best
}

/// Whether `a` beats `b`: lower score, then lower plot id (seed), then lower index.
fn better(a: &Candidate, b: &Candidate, plots: &[&PlotFile]) -> bool {
    let key = |c: &Candidate| (c.score, plots[c.plot].header().seed, c.plot, c.index);
    key(a).cmp(&key(b)) == CmpOrdering::Less
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leaves_cut_by_block_boundaries_are_scored_once_both_halves_are_read_in_any_order() {
        let dir = tempfile::tempdir().unwrap();
        let plot = crate::test_support::plot(dir.path(), "c.plot", 200_000);
        let plots = [&plot];
        let blocks = Blocks::of(&plot);
        let cut: Vec<u64> = (0..blocks.count())
            .filter_map(|k| blocks.cut_at_end(k).map(|(i, _)| i))
            .collect();
        assert_eq!(cut.len(), 3);
        let (cancel, progress) = (AtomicBool::new(false), AtomicU64::new(0));
        let challenge = [9u8; 32];
        let shared = Shared {
            direct: true,
            plots: &plots,
            progress: &progress,
            ctx: ScoreContext::new(&challenge),
            kernels: Kernels::active(),
            strategy: ScanStrategy::Full,
            deadline: None,
            cancel: &cancel,
            started: Instant::now(),
            timed_out: AtomicBool::new(false),
            cancelled: AtomicBool::new(false),
            scanned: vec![AtomicU64::new(0)],
            finished_ns: vec![AtomicU64::new(0)],
            bests: Mutex::new(vec![None]),
            errors: Mutex::new(vec![None]),
        };
        let cuts = Mutex::new(HashMap::new());
        let mut buf = ChunkBuf::default();
        for k in [3, 1, 0, 2] {
            buf.read_block_cached(&plot, k).unwrap();
            join_cuts(&shared, &cuts, 0, k, buf.block());
        }
        assert!(lock(&cuts).is_empty(), "every cut leaf was completed");
        assert_eq!(shared.scanned[0].load(Ordering::Relaxed), 3);
        let expected = cut
            .iter()
            .map(|&i| {
                let leaf = plot.leaf(i).unwrap().unwrap();
                (score(&challenge, &leaf), i, leaf)
            })
            .min()
            .unwrap();
        let best = lock(&shared.bests)[0].unwrap();
        assert_eq!((best.score, best.index, best.leaf), expected);
    }
}
