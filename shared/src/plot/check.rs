//! Plot verification: a full check (header and size at open, the Merkle root recomputed,
//! every leaf regenerated when the miner key is known) and a fast sampled check (random
//! leaves regenerated and their Merkle paths verified to the root).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rayon::prelude::*;

use super::cache::MerkleCache;
use super::prove::{build_proof, ProveError};
use super::{LeafGenerator, PlotError, PlotFile};
use crate::hash::Hash32;
use crate::merkle::{subtree_root, tree_height, MerkleFolder};

/// Leaves per work chunk of the full check.
const CHUNK_LEVEL: u32 = 16;
/// Sample indices drawn (and held) per round of a sampled check: 512 KiB of indices.
const SAMPLE_ROUND: u64 = 1 << 16;
/// Minimum time between two progress reports.
const PROGRESS_INTERVAL: Duration = Duration::from_millis(200);

/// What to verify.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckMode {
    /// Recompute the root from every leaf; with the key, regenerate every leaf too.
    Full {
        /// The miner key the plot was made with, to regenerate leaves.
        miner_pk: Option<[u8; 32]>,
    },
    /// Check `samples` random leaves (all of them if the plot is smaller): each one's Merkle
    /// path is built and verified to the header root, and with the key the leaf is
    /// regenerated. `seed` makes the choice reproducible. Paths are cheap with a valid
    /// cache; without one each path reads about half the plot.
    Sampled {
        /// How many leaves.
        samples: u64,
        /// The miner key, to regenerate leaves.
        miner_pk: Option<[u8; 32]>,
        /// RNG seed for the sample.
        seed: u64,
    },
}

/// Progress of a check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckProgress {
    /// Leaves (full) or samples (sampled) done.
    pub done: u64,
    /// Total to do.
    pub total: u64,
}

/// What a check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckReport {
    /// N.
    pub leaf_count: u64,
    /// Leaves examined (read and hashed).
    pub leaves_checked: u64,
    /// Whether leaves were regenerated from the miner key.
    pub leaves_regenerated: bool,
    /// Leaves that differ from `H(pk ‖ seed ‖ index)` (0 when not regenerated).
    pub bad_leaves: u64,
    /// The lowest such index.
    pub first_bad_leaf: Option<u64>,
    /// Full check: the root recomputed from the leaves.
    pub computed_root: Option<Hash32>,
    /// Full check: whether it equals the header root.
    pub root_ok: Option<bool>,
    /// Sampled check: paths built and verified.
    pub paths_checked: u64,
    /// Sampled check: paths that failed to verify.
    pub bad_paths: u64,
    /// The lowest index whose path failed.
    pub first_bad_path: Option<u64>,
    /// Whether the given cache matches the plot (`None` when no cache was given).
    pub cache_ok: Option<bool>,
    /// Why the cache was rejected.
    pub cache_error: Option<String>,
    /// Wall time.
    pub elapsed: Duration,
}

impl CheckReport {
    /// Whether everything checked passed, the given cache included.
    pub fn passed(&self) -> bool {
        self.plot_ok() && self.cache_ok != Some(false)
    }

    /// Whether the plot's own data passed (leaves, paths, root). A cache that does not match
    /// is a problem of the cache file, which proving ignores, not of the plot: see
    /// [`CheckReport::cache_ok`].
    pub fn plot_ok(&self) -> bool {
        self.bad_leaves == 0 && self.bad_paths == 0 && self.root_ok != Some(false)
    }
}

/// Check an open plot (its header and size were checked by [`PlotFile::open`]).
pub fn check_plot(
    plot: &PlotFile,
    cache: Option<&MerkleCache>,
    mode: &CheckMode,
    progress: &mut dyn FnMut(CheckProgress),
    cancel: &AtomicBool,
) -> Result<CheckReport, PlotError> {
    let started = Instant::now();
    let header = plot.header();
    let cache_result = cache.map(|c| c.validate(header));
    let mut report = CheckReport {
        leaf_count: plot.leaf_count(),
        leaves_checked: 0,
        leaves_regenerated: false,
        bad_leaves: 0,
        first_bad_leaf: None,
        computed_root: None,
        root_ok: None,
        paths_checked: 0,
        bad_paths: 0,
        first_bad_path: None,
        cache_ok: cache_result.as_ref().map(Result::is_ok),
        cache_error: cache_result
            .as_ref()
            .and_then(|r| r.as_ref().err())
            .map(|e| e.to_string()),
        elapsed: Duration::ZERO,
    };
    let valid_cache = cache.filter(|_| report.cache_ok == Some(true));
    match mode {
        CheckMode::Full { miner_pk } => {
            full_check(plot, miner_pk.as_ref(), &mut report, progress, cancel)?
        }
        CheckMode::Sampled {
            samples,
            miner_pk,
            seed,
        } => sampled_check(
            plot,
            valid_cache,
            *samples,
            miner_pk.as_ref(),
            *seed,
            &mut report,
            progress,
            cancel,
        )?,
    }
    report.elapsed = started.elapsed();
    Ok(report)
}

fn full_check(
    plot: &PlotFile,
    miner_pk: Option<&[u8; 32]>,
    report: &mut CheckReport,
    progress: &mut dyn FnMut(CheckProgress),
    cancel: &AtomicBool,
) -> Result<(), PlotError> {
    let header = plot.header();
    let n = plot.leaf_count();
    let gen = miner_pk.map(|pk| LeafGenerator::new(pk, &header.seed));
    let chunk_len = 1u64 << CHUNK_LEVEL;
    let chunks = n.div_ceil(chunk_len);
    let target = if chunks == 1 {
        tree_height(n)
    } else {
        CHUNK_LEVEL
    };
    let batch = (4 * rayon::current_num_threads() as u64).max(4);
    let mut merger = MerkleFolder::new();
    let mut single = None;
    let mut last_report = Instant::now();
    let mut c = 0;
    while c < chunks {
        if cancel.load(Ordering::Relaxed) {
            return Err(PlotError::Cancelled);
        }
        let end = (c + batch).min(chunks);
        let results: Vec<(Option<Hash32>, u64, u64, Option<u64>)> = (c..end)
            .into_par_iter()
            .map(|chunk| {
                let start = chunk * chunk_len;
                let mut leaves = Vec::new();
                plot.read_range(start..start + chunk_len, &mut leaves)?;
                let (mut bad, mut first_bad) = (0u64, None);
                if let Some(gen) = &gen {
                    let mut expected = vec![[0u8; 32]; leaves.len()];
                    gen.fill(start, &mut expected);
                    for ((i, leaf), want) in (start..).zip(&leaves).zip(&expected) {
                        if leaf != want {
                            bad += 1;
                            first_bad.get_or_insert(i);
                        }
                    }
                }
                Ok((
                    subtree_root(&leaves, target),
                    leaves.len() as u64,
                    bad,
                    first_bad,
                ))
            })
            .collect::<Result<_, PlotError>>()?;
        for (node, covered, bad, first_bad) in results {
            let node = node.ok_or_else(|| PlotError::InvalidRequest {
                reason: "internal error: empty chunk in plot check".into(),
            })?;
            if chunks == 1 {
                single = Some(node);
            } else {
                merger.push_node_at(target, node, covered);
            }
            report.leaves_checked += covered;
            report.bad_leaves += bad;
            if report.first_bad_leaf.is_none() {
                report.first_bad_leaf = first_bad;
            }
        }
        c = end;
        if last_report.elapsed() >= PROGRESS_INTERVAL || c == chunks {
            last_report = Instant::now();
            progress(CheckProgress {
                done: report.leaves_checked,
                total: n,
            });
        }
    }
    let root = if chunks == 1 { single } else { merger.finish() };
    report.leaves_regenerated = gen.is_some();
    report.computed_root = root;
    report.root_ok = Some(root == Some(header.merkle_root));
    Ok(())
}

#[allow(clippy::too_many_arguments)] // internal helper: one call site, all inputs distinct
fn sampled_check(
    plot: &PlotFile,
    cache: Option<&MerkleCache>,
    samples: u64,
    miner_pk: Option<&[u8; 32]>,
    seed: u64,
    report: &mut CheckReport,
    progress: &mut dyn FnMut(CheckProgress),
    cancel: &AtomicBool,
) -> Result<(), PlotError> {
    let n = plot.leaf_count();
    let gen = miner_pk.map(|pk| LeafGenerator::new(pk, &plot.header().seed));
    // The sample is drawn and checked in bounded rounds, never materialised whole: a
    // request of `u32::MAX` samples (or "every leaf" of a sparse 2^33-leaf plot) must cost
    // time the caller can cancel, not memory the daemon does not have. Each round is sorted
    // for locality; the indices drawn for a seed are the same as one global draw.
    let total = samples.min(n);
    let every_leaf = samples >= n;
    let mut rng = StdRng::seed_from_u64(seed);
    let mut drawn = 0u64;
    let mut last_report = Instant::now();
    while drawn < total {
        if cancel.load(Ordering::Relaxed) {
            return Err(PlotError::Cancelled);
        }
        let len = (total - drawn).min(SAMPLE_ROUND);
        let mut indices: Vec<u64> = if every_leaf {
            (drawn..drawn + len).collect()
        } else {
            (0..len).map(|_| rng.gen_range(0..n)).collect()
        };
        drawn += len;
        indices.sort_unstable();
        for batch in indices.chunks(64) {
            if cancel.load(Ordering::Relaxed) {
                return Err(PlotError::Cancelled);
            }
            let results: Vec<(u64, bool, bool)> = batch
                .par_iter()
                .map(|&i| {
                    let leaf_ok = match (&gen, plot.leaf(i)?) {
                        (Some(gen), Some(leaf)) => gen.leaf(i) == leaf,
                        _ => true,
                    };
                    let path_ok = match build_proof(plot, cache, i) {
                        Ok(_) => true,
                        Err(ProveError::Read { reason, .. }) => {
                            // A read error is the plot's failure, not a bad path.
                            return Err(PlotError::io(
                                "reading",
                                plot.path(),
                                std::io::Error::other(reason),
                            ));
                        }
                        Err(_) => false,
                    };
                    Ok((i, leaf_ok, path_ok))
                })
                .collect::<Result<_, PlotError>>()?;
            for (i, leaf_ok, path_ok) in results {
                report.leaves_checked += 1;
                report.paths_checked += 1;
                if !leaf_ok {
                    report.bad_leaves += 1;
                    report.first_bad_leaf = Some(report.first_bad_leaf.map_or(i, |f| f.min(i)));
                }
                if !path_ok {
                    report.bad_paths += 1;
                    report.first_bad_path = Some(report.first_bad_path.map_or(i, |f| f.min(i)));
                }
            }
            if last_report.elapsed() >= PROGRESS_INTERVAL || report.leaves_checked == total {
                last_report = Instant::now();
                progress(CheckProgress {
                    done: report.leaves_checked,
                    total,
                });
            }
        }
    }
    report.leaves_regenerated = gen.is_some();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Audit row 4: `CheckPlot{samples: u32::MAX}` on a sparse 256 GiB plot allocated the
    /// whole 34 GB sample up front and the daemon aborted. The sample is now drawn in
    /// bounded rounds, so the request costs only (cancellable) time: here it is cancelled
    /// before the first round and returns at once.
    #[test]
    fn a_huge_sample_of_a_huge_sparse_plot_allocates_nothing_up_front() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sparse.plot");
        let n = 1u64 << 33; // 256 GiB of leaves, never written
        let header = super::super::PlotHeader::new([1; 32], n, [2; 32]);
        std::fs::write(&path, header.encode()).unwrap();
        let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        f.set_len(super::super::plot_file_len(n).unwrap()).unwrap();
        drop(f);
        let plot = PlotFile::open(&path).unwrap();
        for samples in [u64::from(u32::MAX), u64::MAX] {
            let cancel = AtomicBool::new(true);
            let started = Instant::now();
            let mode = CheckMode::Sampled {
                samples,
                miner_pk: Some([3; 32]),
                seed: 1,
            };
            let r = check_plot(&plot, None, &mode, &mut |_| {}, &cancel);
            assert!(matches!(r, Err(PlotError::Cancelled)), "{r:?}");
            assert!(started.elapsed() < Duration::from_secs(10));
        }
    }

    #[test]
    fn a_mismatched_cache_fails_the_check_but_not_the_plot() {
        let mut r = CheckReport {
            leaf_count: 8,
            leaves_checked: 8,
            leaves_regenerated: true,
            bad_leaves: 0,
            first_bad_leaf: None,
            computed_root: None,
            root_ok: Some(true),
            paths_checked: 0,
            bad_paths: 0,
            first_bad_path: None,
            cache_ok: Some(false),
            cache_error: Some("stale".into()),
            elapsed: Duration::ZERO,
        };
        assert!(r.plot_ok() && !r.passed());
        r.cache_ok = Some(true);
        assert!(r.plot_ok() && r.passed());
        r.root_ok = Some(false);
        assert!(!r.plot_ok() && !r.passed());
    }
}
