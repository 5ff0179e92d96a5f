//! The work of one epoch, run on a blocking thread (decisions D5 steps 1 and 3): scan every
//! farmed plot for the best score before the scan deadline (every disk at once with one
//! reader each, see [`scan_rounds`]; every scan thread hashing), build the Merkle proof of the best leaf
//! (with the plot's cache), verify it with the node's own strict rules (D2), and say whether
//! the score is below the target. The block itself is built by the mining loop when it is
//! sent ([`build_block`]), from the mempool of that moment.
//!
//! When the best leaf's proof fails (a plot made for another key, a corrupt plot or cache),
//! the next plot's best leaf is tried, so one bad plot does not cost the epoch. A plot whose
//! proof cannot finish before the deadline (an uncached plot is read whole; the time is
//! estimated from the measured scan rate) is skipped with a warning, and the proof is
//! cancelled with the epoch.
//!
//! Synchronous and free of I/O other than reading the plots, so it is tested directly.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use spacetime::block::{Block, BlockProof, Transaction};
use spacetime::consensus::{difficulty_to_target, is_below_target, BlockTemplate};
use spacetime::hash::Hash32;
use spacetime::keys::MinerKey;
use spacetime::prove::{build_proof_cancellable, proof_read_leaves, ProveError};
use spacetime::scan::{scan_plots_observed, Candidate, PlotScanStats, ScanOutcome, ScanStrategy};
use spacetime::validate::{validate_block, verify_block_proof, BlockError, ChainContext};
use spacetime::wire::NewEpoch;
use uuid::Uuid;

use super::epoch::proof_time;
use crate::plots::{FarmedPlot, FarmedSet};

/// A plot is compared with the others' scan rate only when it took at least this long and
/// had at least this many leaves: a small plot's rate is dominated by fixed costs (thread
/// start, the first page faults), which says nothing about its disk.
const SLOW_PLOT_MIN_TIME: Duration = Duration::from_millis(250);
/// See [`SLOW_PLOT_MIN_TIME`].
const SLOW_PLOT_MIN_LEAVES: u64 = 1 << 20;

/// Expected time until a win: an epoch of `epoch_len` in which `leaves` leaves are scored
/// against difficulty `difficulty` (target = (2^256 − 1) / difficulty) is won with
/// probability `1 − (1 − 1/difficulty)^leaves`; the expectation is `epoch_len / p`.
pub fn expected_time_to_win(leaves: u64, difficulty: u64, epoch_len: Duration) -> Option<Duration> {
    if leaves == 0 || difficulty == 0 || epoch_len.is_zero() {
        return None;
    }
    let q = 1.0 / difficulty as f64;
    // 1 − (1 − q)^L, computed without cancellation for tiny q.
    let p = if q >= 1.0 {
        1.0
    } else {
        -((leaves as f64) * (-q).ln_1p()).exp_m1()
    };
    if p.is_nan() || p <= 0.0 {
        return None;
    }
    let secs = epoch_len.as_secs_f64() / p;
    (secs.is_finite() && secs < 1e15).then(|| Duration::from_secs_f64(secs))
}

/// A proof build slower than this is reported with the plot's path.
pub const SLOW_PROOF: Duration = Duration::from_secs(1);

/// What one epoch's work needs.
#[derive(Debug)]
pub struct WorkInput {
    /// The epoch.
    pub epoch: NewEpoch,
    /// When the epoch started as far as the block rules care (unix seconds).
    pub epoch_start_unix: u64,
    /// The plots to scan.
    pub plots: FarmedSet,
    /// Which leaves.
    pub strategy: ScanStrategy,
    /// Stop scanning at this instant (keeps time for the proof and sending).
    pub scan_deadline: Instant,
    /// The proof must be ready by this instant to be sent in time: a plot whose proof is
    /// estimated to take longer is skipped.
    pub proof_deadline: Instant,
    /// Set when the epoch is abandoned (stops the scan and the proof).
    pub cancel: Arc<AtomicBool>,
    /// The miner's key (its id is bound into the proof).
    pub key: Arc<MinerKey>,
    /// Report per-plot scan rates and slow plots.
    pub monitor: bool,
    /// Plots per disk scanned at once by the sampling strategies (`maxConcurrentProofs`,
    /// ≥ 1; see [`scan_rounds`]).
    pub plots_at_once: usize,
    /// Scan rate (leaves per second, as `f64` bits; 0 = not measured yet): read to estimate
    /// proof times, updated with this scan's rate.
    pub scan_rate: Arc<AtomicU64>,
    /// Rayon pool of one thread per core (`None`: the global pool).
    pub pool: Option<Arc<rayon::ThreadPool>>,
    /// Leaves scored so far in this epoch (read by the progress reporter).
    pub progress: Arc<AtomicU64>,
}

/// A verified proof, and the block when it wins.
#[derive(Debug)]
pub struct Found {
    /// The plot it comes from.
    pub plot_id: Uuid,
    /// That plot's path.
    pub plot_path: PathBuf,
    /// Leaf index.
    pub leaf_index: u64,
    /// Its score.
    pub score: Hash32,
    /// The plot's Merkle root (the block's plot root).
    pub plot_root: Hash32,
    /// The proof, verified against the epoch challenge.
    pub proof: BlockProof,
    /// When the proof was ready.
    pub ready_at: Instant,
    /// Leaves scored.
    pub leaves_scanned: u64,
    /// The score is below the epoch's target: a block is due.
    pub wins: bool,
}

/// How the work ended.
#[derive(Debug)]
pub enum WorkOutcome {
    /// A proof (and maybe a block).
    Found(Box<Found>),
    /// No leaf was scored (no plots, cancelled, or out of time).
    NoLeaf {
        /// The reason, for the missed-epoch event.
        reason: String,
    },
    /// The best leaf did not give a valid proof (a corrupt plot or cache).
    Failed {
        /// What went wrong, with the plot's path.
        reason: String,
    },
}

pub use spacetime::clock::now_unix_secs as unix_secs;

/// Runs the epoch's work (blocking) as a proof in progress: `stats` marks it from start to
/// end (scan and Merkle proof), so plot jobs pause meanwhile and plotting never delays
/// a proof (issue 4 §5). What the mining loop runs.
pub fn run_proving(input: WorkInput, stats: &crate::stats::MiningStats) -> WorkOutcome {
    let _proving = stats.begin_proving();
    run_with(input, Some(stats))
}

/// Runs the epoch's work (blocking).
pub fn run(input: WorkInput) -> WorkOutcome {
    run_with(input, None)
}

/// Runs the epoch's work (blocking), recording the scan into `stats`' metrics when given.
fn run_with(input: WorkInput, stats: Option<&crate::stats::MiningStats>) -> WorkOutcome {
    match input.pool.clone() {
        Some(pool) => pool.install(|| run_inner(&input, stats)),
        None => run_inner(&input, stats),
    }
}

fn run_inner(input: &WorkInput, stats: Option<&crate::stats::MiningStats>) -> WorkOutcome {
    let epoch = &input.epoch;
    if input.plots.is_empty() {
        return WorkOutcome::NoLeaf {
            reason: "no valid plots".into(),
        };
    }
    let started = Instant::now();
    let outcome = scan_in_groups(input);
    let elapsed = started.elapsed();
    if outcome.leaves_scanned > 0 && !elapsed.is_zero() {
        let rate = outcome.leaves_scanned as f64 / elapsed.as_secs_f64();
        input.scan_rate.store(rate.to_bits(), Ordering::Relaxed);
    }
    report_scan(input, &outcome, elapsed);
    if let (Some(stats), false) = (stats, outcome.cancelled) {
        let by_plot = outcome
            .per_plot
            .iter()
            .filter(|s| s.leaves_scanned > 0)
            .filter_map(|s| Some((input.plots.get(s.plot)?.id, s.leaves_scanned)))
            .collect();
        let by_plot = std::sync::Arc::new(by_plot);
        stats.update(|st| st.last_scan_by_plot = by_plot);
        stats.observations().record_scan(
            outcome
                .per_plot
                .iter()
                .filter(|s| s.leaves_scanned > 0)
                .map(|s| s.elapsed),
            outcome.leaves_scanned,
            input.plots.iter().map(|p| p.file.leaf_count()).sum(),
        );
    }
    if outcome.best.is_none() {
        let reason = if outcome.cancelled {
            "abandoned"
        } else if outcome.timed_out {
            "no leaf scored before the deadline"
        } else {
            "the scan strategy selects no leaf"
        };
        return WorkOutcome::NoLeaf {
            reason: reason.into(),
        };
    }
    // Each plot's best, best first: the next one stands in when a proof fails.
    let mut candidates: Vec<Candidate> = outcome.per_plot.iter().filter_map(|s| s.best).collect();
    candidates.sort_by_key(|c| rank(c, &input.plots));
    let rate = f64::from_bits(input.scan_rate.load(Ordering::Relaxed));
    let mut failures: Vec<String> = Vec::new();
    for best in candidates {
        let Some(plot) = input.plots.get(best.plot) else {
            failures.push(format!(
                "scan returned plot #{} of {}",
                best.plot,
                input.plots.len()
            ));
            continue;
        };
        match prove(input, plot, &best, rate) {
            Ok((proof, ready_at)) => {
                let wins = difficulty_to_target(epoch.difficulty)
                    .map(|target| is_below_target(&best.score, &target))
                    .unwrap_or(false);
                return WorkOutcome::Found(Box::new(Found {
                    plot_id: plot.id,
                    plot_path: plot.file.path().to_path_buf(),
                    leaf_index: best.index,
                    score: best.score,
                    plot_root: plot.file.header().merkle_root,
                    proof,
                    ready_at,
                    leaves_scanned: outcome.leaves_scanned,
                    wins,
                }));
            }
            Err(Attempt::Cancelled) => {
                return WorkOutcome::NoLeaf {
                    reason: "abandoned".into(),
                }
            }
            Err(Attempt::Failed(reason)) => {
                tracing::warn!(epoch = epoch.epoch, error = %reason, "no proof from this plot; trying the next plot's best leaf");
                failures.push(reason);
            }
        }
    }
    WorkOutcome::Failed {
        reason: failures.join("; "),
    }
}

/// Why one candidate gave no proof.
enum Attempt {
    /// The epoch was abandoned.
    Cancelled,
    /// This plot cannot give a proof in time (the reason names the plot).
    Failed(String),
}

/// Builds and checks (D2) the proof of `best`, unless it cannot be ready by the proof
/// deadline at the scan `rate` (leaves per second; 0 = unknown).
fn prove(
    input: &WorkInput,
    plot: &FarmedPlot,
    best: &Candidate,
    rate: f64,
) -> Result<(BlockProof, Instant), Attempt> {
    let epoch = &input.epoch;
    let path = plot.file.path().display();
    let reads = proof_read_leaves(plot.file.leaf_count(), plot.cache.as_deref());
    let estimate = proof_time(reads, rate);
    let proof_started = Instant::now();
    if proof_started + estimate > input.proof_deadline {
        return Err(Attempt::Failed(format!(
            "proof from plot {path} skipped: it reads {reads} leaves (cached: {}), about {estimate:?}, more than the time left",
            plot.cache.is_some()
        )));
    }
    let merkle =
        match build_proof_cancellable(&plot.file, plot.cache.as_deref(), best.index, &input.cancel)
        {
            Ok(p) => p,
            Err(ProveError::Cancelled { .. }) => return Err(Attempt::Cancelled),
            Err(e) => return Err(Attempt::Failed(format!("proof from plot {path}: {e}"))),
        };
    let proof_time = proof_started.elapsed();
    if proof_time > SLOW_PROOF {
        tracing::warn!(
            plot = %path, elapsed = ?proof_time, cached = plot.cache.is_some(),
            "slow proof: building the Merkle path took longer than {SLOW_PROOF:?}"
        );
    }
    let header = plot.file.header();
    let proof = BlockProof::for_plot(merkle, header);
    let miner_id = input.key.miner_id();
    if let Err(e) = verify_block_proof(
        &proof,
        &epoch.challenge,
        &header.merkle_root,
        &best.score,
        None,
        &miner_id,
    ) {
        return Err(Attempt::Failed(format!(
            "own proof from plot {path} fails verification: {e}"
        )));
    }
    Ok((proof, Instant::now()))
}

/// The scan's order of candidates: lower score, then lower plot id (seed), then plot, then
/// leaf index (as `scan_plots` breaks ties).
fn rank(c: &Candidate, plots: &FarmedSet) -> (Hash32, [u8; 32], usize, u64) {
    let seed = plots
        .get(c.plot)
        .map_or([0xFF; 32], |p| p.file.header().seed);
    (c.score, seed, c.plot, c.index)
}

/// The scan's rounds over plots on `devices` (each plot's `st_dev`, in `plots` order), as
/// indices into `plots`: every disk is read at once, each in file order.
///
/// * `full` and `deadline` (`sequential`): one round of every plot; the core reads each
///   disk's plots one after the other, all disks at the same time, so that a disk never
///   waits for another.
/// * sampling strategies: round `r` holds the `r`-th `per_disk` plots of every disk, so
///   that each disk serves at most `per_disk` plots at once (`maxConcurrentProofs`; random
///   reads of several plots make a spinning disk seek) while all disks work together.
pub fn scan_rounds(devices: &[u64], per_disk: usize, sequential: bool) -> Vec<Vec<usize>> {
    if devices.is_empty() {
        return Vec::new();
    }
    if sequential {
        return vec![(0..devices.len()).collect()];
    }
    let per_disk = per_disk.max(1);
    let mut by_disk: Vec<(u64, Vec<usize>)> = Vec::new();
    for (i, d) in devices.iter().enumerate() {
        match by_disk.iter_mut().find(|(x, _)| x == d) {
            Some((_, list)) => list.push(i),
            None => by_disk.push((*d, vec![i])),
        }
    }
    let longest = by_disk.iter().map(|(_, l)| l.len()).max().unwrap_or(0);
    (0..longest.div_ceil(per_disk))
        .map(|r| {
            let mut round: Vec<usize> = by_disk
                .iter()
                .flat_map(|(_, l)| l.iter().skip(r * per_disk).take(per_disk).copied())
                .collect();
            round.sort_unstable();
            round
        })
        .collect()
}

/// Scans the plots in the rounds of [`scan_rounds`], in order, until the deadline or
/// cancellation (each round on every thread of the pool); the figures of all rounds in
/// `plots` order.
fn scan_in_groups(input: &WorkInput) -> ScanOutcome {
    let files: Vec<&spacetime::plot::PlotFile> = input.plots.iter().map(|p| &*p.file).collect();
    let devices: Vec<u64> = files.iter().map(|f| f.device()).collect();
    let sequential = matches!(input.strategy, ScanStrategy::Full | ScanStrategy::Deadline);
    let rounds = scan_rounds(&devices, input.plots_at_once, sequential);
    let scan_started = Instant::now();
    let mut merged = ScanOutcome {
        best: None,
        leaves_scanned: 0,
        timed_out: false,
        cancelled: false,
        per_plot: (0..files.len())
            .map(|plot| PlotScanStats {
                plot,
                leaves_scanned: 0,
                elapsed: Duration::ZERO,
                best: None,
                error: None,
            })
            .collect(),
    };
    for round in rounds {
        if merged.timed_out || merged.cancelled {
            break; // plots never reached keep their zero figures
        }
        let round_offset = scan_started.elapsed();
        let chunk: Vec<&spacetime::plot::PlotFile> = round.iter().map(|&i| files[i]).collect();
        let part = scan_plots_observed(
            &chunk,
            &input.epoch.challenge,
            &input.strategy,
            Some(input.scan_deadline),
            &input.cancel,
            &input.progress,
        );
        let shift = |c: Candidate| Candidate {
            plot: round[c.plot],
            ..c
        };
        merged.leaves_scanned += part.leaves_scanned;
        merged.timed_out |= part.timed_out;
        merged.cancelled |= part.cancelled;
        for s in part.per_plot {
            let plot = round[s.plot];
            merged.per_plot[plot] = PlotScanStats {
                plot,
                // Elapsed from the start of the whole scan, as for one call.
                elapsed: if s.leaves_scanned > 0 {
                    round_offset + s.elapsed
                } else {
                    Duration::ZERO
                },
                best: s.best.map(shift),
                leaves_scanned: s.leaves_scanned,
                error: s.error,
            };
        }
        if let Some(c) = part.best.map(shift) {
            if merged
                .best
                .is_none_or(|b| rank(&c, &input.plots) < rank(&b, &input.plots))
            {
                merged.best = Some(c);
            }
        }
    }
    merged
}

/// Builds, signs and validates the block (D5 step 3). When it fails validation with the
/// transactions, it is rebuilt empty (empty blocks are valid) before giving up.
pub fn build_block(
    epoch: &NewEpoch,
    epoch_start_unix: u64,
    plot_root: Hash32,
    proof: &BlockProof,
    transactions: &[Transaction],
    key: &MinerKey,
) -> Result<Block, BlockError> {
    let now = unix_secs();
    let template = BlockTemplate::for_epoch(epoch, now);
    let ctx = ChainContext::for_epoch(epoch, epoch_start_unix, now);
    let block = template.build(plot_root, proof.clone(), transactions.to_vec(), key);
    match validate_block(&block, &ctx) {
        Ok(()) => Ok(block),
        Err(e) if !transactions.is_empty() => {
            tracing::warn!(error = %e, "own block invalid with its transactions; retrying empty");
            let empty = template.build(plot_root, proof.clone(), Vec::new(), key);
            validate_block(&empty, &ctx).map(|()| empty)
        }
        Err(e) => Err(e),
    }
}

/// Logs per-plot figures and warns about plots that were slower than expected: not fully
/// scanned before the deadline, or much slower per leaf than the others.
fn report_scan(input: &WorkInput, outcome: &ScanOutcome, elapsed: Duration) {
    tracing::debug!(
        epoch = input.epoch.epoch,
        leaves = outcome.leaves_scanned,
        ?elapsed,
        timed_out = outcome.timed_out,
        plots = input.plots.len(),
        "scan finished"
    );
    for stats in &outcome.per_plot {
        if let (Some(error), Some(plot)) = (&stats.error, input.plots.get(stats.plot)) {
            tracing::warn!(
                plot = %plot.file.path().display(), epoch = input.epoch.epoch, %error,
                "plot unreadable: not fully scanned this epoch (truncated, replaced or a failing disk?)"
            );
        }
    }
    if !input.monitor || outcome.cancelled {
        return;
    }
    let rates: Vec<f64> = outcome
        .per_plot
        .iter()
        .map(|s| s.leaves_scanned as f64 / s.elapsed.as_secs_f64().max(1e-6))
        .collect();
    let mut sorted = rates.clone();
    sorted.sort_by(f64::total_cmp);
    let median = sorted.get(sorted.len() / 2).copied().unwrap_or(0.0);
    for (stats, rate) in outcome.per_plot.iter().zip(&rates) {
        let Some(plot) = input.plots.get(stats.plot) else {
            continue;
        };
        let wanted = input.strategy.positions(plot.file.leaf_count());
        let path = plot.file.path().display();
        if stats.error.is_some() {
            continue;
        }
        tracing::debug!(
            plot = %path, leaves = stats.leaves_scanned, elapsed = ?stats.elapsed,
            leaves_per_sec = *rate as u64, "plot scanned"
        );
        if outcome.timed_out && stats.leaves_scanned < wanted {
            tracing::warn!(
                plot = %path, scanned = stats.leaves_scanned, wanted, epoch = input.epoch.epoch,
                "slow plot: not fully scanned before the deadline"
            );
        } else if input.plots.len() >= 2
            && stats.leaves_scanned >= SLOW_PLOT_MIN_LEAVES
            && stats.elapsed >= SLOW_PLOT_MIN_TIME
            && *rate * 4.0 < median
        {
            tracing::warn!(
                plot = %path, leaves_per_sec = *rate as u64, median_leaves_per_sec = median as u64,
                "slow plot: scans at under a quarter of the other plots' rate"
            );
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;
