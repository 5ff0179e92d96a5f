//! Scanning plots for the best (lowest) score of a challenge.
//!
//! `score = H(challenge ‖ leaf)`: one 64-byte block plus the constant padding block, so two
//! compressions per leaf. The index sets are exactly the reference strategies (section 3.5,
//! IEEE double arithmetic where the reference uses it); leaves are read as contiguous slices
//! of the memory-mapped plots. Work is split into items of consecutive indices (in file
//! order, plots in order) that all threads pull from one queue, so scanning is parallel
//! across plots and within a plot, and a deadline stops it with the best found so far.
//!
//! Tie-break: lowest score, then lowest plot id (seed), then lowest index, so the result
//! does not depend on thread timing.

use std::cmp::Ordering as CmpOrdering;
use std::fmt;
use std::ops::Range;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::compress::{hash_64, hash_64_each, BATCH};
use crate::hash::Hash32;
use crate::plot::PlotFile;

/// Leaves (or strategy positions) per work item: 16 Ki leaves = 512 KiB of reads.
const ITEM_LEN: u64 = 1 << 14;

/// `H(challenge ‖ leaf)`: the score of a leaf (lower is better).
#[inline]
pub fn score(challenge: &Hash32, leaf: &[u8; 32]) -> Hash32 {
    let mut block = [0u8; 64];
    block[..32].copy_from_slice(challenge);
    block[32..].copy_from_slice(leaf);
    hash_64(&block)
}

/// Which leaves of each plot are scored.
///
/// Its text form (configuration files, logs) is `full`, `deadline`, `sampling[:S]` (S
/// defaults to the reference miner's 10 000) or `cache-friendly[:B:P]` (defaults 8192:8192).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScanStrategy {
    /// Every leaf, `0..N`.
    Full,
    /// `samples` leaves spread evenly: all of them when `samples ≥ N`, else
    /// `trunc(i × (N / S))` for `i in 0..S` in double arithmetic (reference `Sampling(S)`).
    Sampling {
        /// S (> 0; 0 scans nothing).
        samples: u64,
    },
    /// Blocks of `block` leaves, `per_block` leaves spread evenly in each (reference
    /// `CacheFriendly(B, P)`).
    CacheFriendly {
        /// B (> 0).
        block: u64,
        /// P (0 < P ≤ B).
        per_block: u64,
    },
    /// As many leaves as fit before the deadline, in file order, plot after plot; the best
    /// so far when time runs out. Without a deadline it is a full scan.
    Deadline,
}

impl ScanStrategy {
    /// Number of positions this strategy visits in a plot of `n` leaves.
    pub fn positions(&self, n: u64) -> u64 {
        match *self {
            ScanStrategy::Full | ScanStrategy::Deadline => n,
            ScanStrategy::Sampling { samples } => samples.min(n),
            ScanStrategy::CacheFriendly { block, per_block } => {
                if block == 0 || per_block == 0 {
                    return 0;
                }
                let full = n / block;
                let rest = n % block;
                full * per_block.min(block) + per_block.min(rest)
            }
        }
    }

    /// The leaf indices this strategy visits in a plot of `n` leaves, in visit order
    /// (for tests and callers that want the set; scanning computes them on the fly).
    pub fn indices(&self, n: u64) -> Vec<u64> {
        let mut out = Vec::new();
        for_each_index(self, n, 0..self.positions(n), |i| out.push(i));
        out
    }
}

impl fmt::Display for ScanStrategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ScanStrategy::Full => f.write_str("full"),
            ScanStrategy::Deadline => f.write_str("deadline"),
            ScanStrategy::Sampling { samples } => write!(f, "sampling:{samples}"),
            ScanStrategy::CacheFriendly { block, per_block } => {
                write!(f, "cache-friendly:{block}:{per_block}")
            }
        }
    }
}

/// A scan strategy name that is not one of the forms [`ScanStrategy`] documents.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid scan strategy {0:?}: expected full, deadline, sampling[:S] or cache-friendly[:B:P] \
     (S, B, P > 0, P <= B)"
)]
pub struct ParseScanStrategyError(pub String);

impl FromStr for ScanStrategy {
    type Err = ParseScanStrategyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = || ParseScanStrategyError(s.to_owned());
        let num = |p: &str| p.parse::<u64>().ok().filter(|n| *n > 0).ok_or_else(invalid);
        match s.split(':').collect::<Vec<_>>().as_slice() {
            ["full"] => Ok(ScanStrategy::Full),
            ["deadline"] => Ok(ScanStrategy::Deadline),
            ["sampling"] => Ok(ScanStrategy::Sampling { samples: 10_000 }),
            ["sampling", n] => Ok(ScanStrategy::Sampling { samples: num(n)? }),
            ["cache-friendly"] => Ok(ScanStrategy::CacheFriendly {
                block: 8192,
                per_block: 8192,
            }),
            ["cache-friendly", b, p] => {
                let (block, per_block) = (num(b)?, num(p)?);
                if per_block > block {
                    return Err(invalid());
                }
                Ok(ScanStrategy::CacheFriendly { block, per_block })
            }
            _ => Err(invalid()),
        }
    }
}

impl serde::Serialize for ScanStrategy {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for ScanStrategy {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
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
    pub best: Option<Candidate>,
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
/// `deadline` or when `cancel` is set (checked between work items of ≤ 16 Ki leaves).
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

/// [`scan_plots`] that adds the leaves it scores to `progress` as it goes (after each work
/// item of at most a few thousand leaves), so that another thread can report the scan's
/// progress while it runs.
pub fn scan_plots_observed(
    plots: &[&PlotFile],
    challenge: &Hash32,
    strategy: &ScanStrategy,
    deadline: Option<Instant>,
    cancel: &AtomicBool,
    progress: &AtomicU64,
) -> ScanOutcome {
    let started = Instant::now();
    // Work items: (plot, range of strategy positions), in file order.
    let mut items: Vec<(usize, Range<u64>)> = Vec::new();
    for (p, plot) in plots.iter().enumerate() {
        let positions = strategy.positions(plot.leaf_count());
        let mut at = 0;
        while at < positions {
            let end = (at + ITEM_LEN).min(positions);
            items.push((p, at..end));
            at = end;
        }
    }
    let next = AtomicUsize::new(0);
    let timed_out = AtomicBool::new(false);
    let cancelled = AtomicBool::new(false);
    let scanned: Vec<AtomicU64> = plots.iter().map(|_| AtomicU64::new(0)).collect();
    let finished_ns: Vec<AtomicU64> = plots.iter().map(|_| AtomicU64::new(0)).collect();
    // Best per plot: the overall best is the best of these.
    let bests: Mutex<Vec<Option<Candidate>>> = Mutex::new(vec![None; plots.len()]);

    let worker = || {
        let mut local: Vec<Option<Candidate>> = vec![None; plots.len()];
        loop {
            if cancel.load(Ordering::Relaxed) {
                cancelled.store(true, Ordering::Relaxed);
                break;
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                timed_out.store(true, Ordering::Relaxed);
                break;
            }
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some((p, range)) = items.get(i).cloned() else {
                break;
            };
            let plot = plots[p];
            let count = range.end - range.start;
            let found = scan_item(plot, challenge, strategy, range);
            if let Some((index, leaf, score)) = found {
                let candidate = Candidate {
                    plot: p,
                    index,
                    leaf,
                    score,
                };
                if local[p].is_none_or(|b| better(&candidate, &b, plots)) {
                    local[p] = Some(candidate);
                }
            }
            scanned[p].fetch_add(count, Ordering::Relaxed);
            progress.fetch_add(count, Ordering::Relaxed);
            let ns = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
            finished_ns[p].fetch_max(ns, Ordering::Relaxed);
        }
        if local.iter().any(Option::is_some) {
            let mut guard = bests.lock().unwrap_or_else(|e| e.into_inner());
            for (slot, candidate) in guard.iter_mut().zip(local) {
                if let Some(c) = candidate {
                    if slot.is_none_or(|b| better(&c, &b, plots)) {
                        *slot = Some(c);
                    }
                }
            }
        }
    };
    let workers = rayon::current_num_threads().min(items.len()).max(1);
    rayon::scope(|s| {
        for _ in 1..workers {
            s.spawn(|_| worker());
        }
        worker();
    });

    let bests = bests.into_inner().unwrap_or_else(|e| e.into_inner());
    let best = bests
        .iter()
        .flatten()
        .copied()
        .reduce(|a, b| if better(&b, &a, plots) { b } else { a });
    let per_plot: Vec<PlotScanStats> = (0..plots.len())
        .zip(bests)
        .map(|(p, best)| PlotScanStats {
            plot: p,
            leaves_scanned: scanned[p].load(Ordering::Relaxed),
            elapsed: Duration::from_nanos(finished_ns[p].load(Ordering::Relaxed)),
            best,
        })
        .collect();
    let leaves_scanned = per_plot.iter().map(|s| s.leaves_scanned).sum();
    let all_done = next.load(Ordering::Relaxed) >= items.len();
    ScanOutcome {
        best,
        leaves_scanned,
        timed_out: timed_out.load(Ordering::Relaxed) && !all_done,
        cancelled: cancelled.load(Ordering::Relaxed) && !all_done,
        per_plot,
    }
}

/// Whether `a` beats `b`: lower score, then lower plot id (seed), then lower index.
fn better(a: &Candidate, b: &Candidate, plots: &[&PlotFile]) -> bool {
    let key = |c: &Candidate| (c.score, plots[c.plot].header().seed, c.plot, c.index);
    key(a).cmp(&key(b)) == CmpOrdering::Less
}

/// Score one work item; the best (first on ties) index, leaf and score.
fn scan_item(
    plot: &PlotFile,
    challenge: &Hash32,
    strategy: &ScanStrategy,
    positions: Range<u64>,
) -> Option<(u64, [u8; 32], Hash32)> {
    let mut batch = ScoreBatch::new(challenge);
    match strategy {
        ScanStrategy::Full | ScanStrategy::Deadline => {
            let leaves = plot.leaves(positions.clone());
            for (index, leaf) in (positions.start..).zip(leaves) {
                batch.push(index, leaf);
            }
        }
        _ => {
            for_each_index(strategy, plot.leaf_count(), positions, |index| {
                if let Some(leaf) = plot.leaves(index..index + 1).first() {
                    batch.push(index, leaf);
                }
            });
        }
    }
    batch.finish()
}

/// Scores leaves a batch at a time (blocks built first, then hashed: see
/// `compress::BATCH`), keeping the first lowest score.
struct ScoreBatch {
    blocks: [[u8; 64]; BATCH],
    indices: [u64; BATCH],
    len: usize,
    best: Option<(u64, [u8; 32], Hash32)>,
    /// The first 8 bytes of the best score as a big-endian integer (max before the first).
    best_prefix: u64,
}

impl ScoreBatch {
    fn new(challenge: &Hash32) -> Self {
        let mut block = [0u8; 64];
        block[..32].copy_from_slice(challenge);
        Self {
            blocks: [block; BATCH],
            indices: [0; BATCH],
            len: 0,
            best: None,
            best_prefix: u64::MAX,
        }
    }

    #[inline]
    fn push(&mut self, index: u64, leaf: &[u8; 32]) {
        self.blocks[self.len][32..].copy_from_slice(leaf);
        self.indices[self.len] = index;
        self.len += 1;
        if self.len == BATCH {
            self.flush();
        }
    }

    fn flush(&mut self) {
        let mut scores = [[0u8; 32]; BATCH];
        hash_64_each(&self.blocks[..self.len], &mut scores[..self.len]);
        let batch = self.blocks.iter().zip(&self.indices).zip(&scores);
        for ((block, &index), score) in batch.take(self.len) {
            // Almost every score loses on its first 8 bytes: compare those as an integer
            // before the full byte-wise comparison.
            if prefix(score) > self.best_prefix {
                continue;
            }
            if self.best.is_none_or(|(_, _, b)| *score < b) {
                self.best_prefix = prefix(score);
                let mut leaf = [0u8; 32];
                leaf.copy_from_slice(&block[32..]);
                self.best = Some((index, leaf, *score));
            }
        }
        self.len = 0;
    }

    fn finish(mut self) -> Option<(u64, [u8; 32], Hash32)> {
        self.flush();
        self.best
    }
}

/// The first 8 bytes of a hash as a big-endian integer (orders like the bytes).
#[inline]
fn prefix(hash: &Hash32) -> u64 {
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&hash[..8]);
    u64::from_be_bytes(bytes)
}

/// Call `f` with the leaf index of each strategy position in `positions`, in order.
fn for_each_index(strategy: &ScanStrategy, n: u64, positions: Range<u64>, mut f: impl FnMut(u64)) {
    match *strategy {
        ScanStrategy::Full | ScanStrategy::Deadline => positions.for_each(f),
        ScanStrategy::Sampling { samples } => {
            if samples >= n {
                positions.for_each(f);
            } else {
                let step = n as f64 / samples as f64;
                for i in positions {
                    f((i as f64 * step) as u64);
                }
            }
        }
        ScanStrategy::CacheFriendly { block, per_block } => {
            if block == 0 || per_block == 0 {
                return;
            }
            let take = per_block.min(block);
            let full_blocks = n / block;
            for pos in positions {
                let (b, j) = (pos / take, pos % take);
                let start = b * block;
                let actual = if b < full_blocks { block } else { n - start };
                let k = per_block.min(actual);
                if k >= actual {
                    f(start + j);
                } else {
                    f(start + (j as f64 * (actual as f64 / k as f64)) as u64);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strategy_text_form_round_trips_and_rejects_bad_values() {
        for s in ["deadline", "full", "sampling:5", "cache-friendly:100:10"] {
            assert_eq!(s.parse::<ScanStrategy>().unwrap().to_string(), s);
        }
        assert_eq!(
            "sampling".parse::<ScanStrategy>().unwrap(),
            ScanStrategy::Sampling { samples: 10_000 }
        );
        for bad in [
            "cache-friendly:10:100",
            "sampling:0",
            "random",
            "full:1",
            "",
        ] {
            let err = bad.parse::<ScanStrategy>().unwrap_err();
            assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
        }
    }
}
