//! The work of one epoch, run on a blocking thread (decisions D5 steps 1 and 3): scan every
//! farmed plot for the best score before the scan deadline, build the Merkle proof of the
//! best leaf (with the plot's cache), verify it with the node's own strict rules (D2), and,
//! when the score is below the target, build, sign and validate the block.
//!
//! Synchronous and free of I/O other than reading the plots, so it is tested directly.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use spacetime::block::{Block, BlockProof, Transaction};
use spacetime::consensus::{difficulty_to_target, is_below_target, BlockTemplate};
use spacetime::hash::Hash32;
use spacetime::keys::MinerKey;
use spacetime::prove::build_proof;
use spacetime::scan::{scan_plots, ScanOutcome, ScanStrategy};
use spacetime::validate::{validate_block, verify_block_proof, BlockError, ChainContext};
use spacetime::wire::NewEpoch;
use uuid::Uuid;

use crate::plots::FarmedSet;

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
    /// Set when the epoch is abandoned.
    pub cancel: Arc<AtomicBool>,
    /// Signs the block.
    pub key: Arc<MinerKey>,
    /// Candidate transactions (already in block order).
    pub transactions: Vec<Transaction>,
    /// Report per-plot scan rates and slow plots.
    pub monitor: bool,
    /// Rayon pool sized by `maxConcurrentProofs` (`None`: the global pool).
    pub pool: Option<Arc<rayon::ThreadPool>>,
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
    /// The proof, verified against the epoch challenge.
    pub proof: BlockProof,
    /// When the proof was ready.
    pub ready_at: Instant,
    /// Leaves scored.
    pub leaves_scanned: u64,
    /// `Some` when the score is below the target: the validated block, or why building it
    /// failed.
    pub block: Option<Result<Block, BlockError>>,
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

/// Unix seconds now.
pub fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Runs the epoch's work (blocking).
pub fn run(input: WorkInput) -> WorkOutcome {
    match input.pool.clone() {
        Some(pool) => pool.install(|| run_inner(&input)),
        None => run_inner(&input),
    }
}

fn run_inner(input: &WorkInput) -> WorkOutcome {
    let epoch = &input.epoch;
    if input.plots.is_empty() {
        return WorkOutcome::NoLeaf {
            reason: "no valid plots".into(),
        };
    }
    let files: Vec<&spacetime::plot::PlotFile> = input.plots.iter().map(|p| &*p.file).collect();
    let started = Instant::now();
    let outcome = scan_plots(
        &files,
        &epoch.challenge,
        &input.strategy,
        Some(input.scan_deadline),
        &input.cancel,
    );
    report_scan(input, &outcome, started.elapsed());
    let Some(best) = outcome.best else {
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
    };
    let Some(plot) = input.plots.get(best.plot) else {
        return WorkOutcome::Failed {
            reason: format!("scan returned plot #{} of {}", best.plot, input.plots.len()),
        };
    };
    let path = plot.file.path().to_path_buf();
    let proof_started = Instant::now();
    let merkle = match build_proof(&plot.file, plot.cache.as_deref(), best.index) {
        Ok(p) => p,
        Err(e) => {
            return WorkOutcome::Failed {
                reason: format!("proof from plot {}: {e}", path.display()),
            }
        }
    };
    let proof_time = proof_started.elapsed();
    if proof_time > SLOW_PROOF {
        tracing::warn!(
            plot = %path.display(), elapsed = ?proof_time, cached = plot.cache.is_some(),
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
        return WorkOutcome::Failed {
            reason: format!(
                "own proof from plot {} fails verification: {e}",
                path.display()
            ),
        };
    }
    let ready_at = Instant::now();
    let wins = difficulty_to_target(epoch.difficulty)
        .map(|target| is_below_target(&best.score, &target))
        .unwrap_or(false);
    let block = wins.then(|| {
        build_block(
            epoch,
            input.epoch_start_unix,
            header.merkle_root,
            &proof,
            &input.transactions,
            &input.key,
        )
    });
    WorkOutcome::Found(Box::new(Found {
        plot_id: plot.id,
        plot_path: path,
        leaf_index: best.index,
        score: best.score,
        proof,
        ready_at,
        leaves_scanned: outcome.leaves_scanned,
        block,
    }))
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
        tracing::debug!(
            plot = %path, leaves = stats.leaves_scanned, elapsed = ?stats.elapsed,
            leaves_per_sec = *rate as u64, "plot scanned"
        );
        if outcome.timed_out && stats.leaves_scanned < wanted {
            tracing::warn!(
                plot = %path, scanned = stats.leaves_scanned, wanted, epoch = input.epoch.epoch,
                "slow plot: not fully scanned before the deadline"
            );
        } else if input.plots.len() >= 2 && stats.leaves_scanned > 0 && *rate * 4.0 < median {
            tracing::warn!(
                plot = %path, leaves_per_sec = *rate as u64, median_leaves_per_sec = median as u64,
                "slow plot: scans at under a quarter of the other plots' rate"
            );
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;
