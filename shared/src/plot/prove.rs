//! Merkle proofs for plot leaves, reading only what the proof needs.
//!
//! For each level k of the path, the sibling is one of:
//! - the padding of the path node, when the path node is the unpaired last node of level k;
//! - a cached node, when a [`MerkleCache`] holds level k;
//! - otherwise the root of the sibling's aligned leaf range `[j·2^k, (j+1)·2^k)`, folded
//!   from leaves read from the plot (`pread`, in parallel chunks for large ranges).
//!
//! With the default cache (levels `c..H`) every sibling below `c` lies inside the leaf's
//! level-`c` subtree, so a proof reads at most `2^c` leaves. Without a cache the sibling
//! ranges are disjoint: at most about N leaves are read once, never the whole plot several
//! times. Every proof is verified strictly (decisions D2) before it is returned.
//!
//! [`build_proof_cancellable`] stops at the next sibling or `2^16`-leaf chunk once its
//! cancel flag is set (a miner abandons an epoch's proof when the next epoch arrives);
//! [`proof_read_leaves`] says how many leaves a proof reads, to budget its time.

use std::sync::atomic::{AtomicBool, Ordering};

use rayon::prelude::*;

use super::cache::MerkleCache;
use crate::hash::Hash32;
use crate::merkle::{
    internal_node, leaf_node, level_size, padding_node, subtree_root, tree_height, MerkleFolder,
    MerklePath,
};
use crate::plot::PlotFile;

/// Leaf ranges up to `2^PAR_LEVEL` are folded on one thread.
const PAR_LEVEL: u32 = 16;

/// Why a proof could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProveError {
    /// The index is not a leaf of this plot.
    #[error("leaf index {index} out of range for a plot of {leaf_count} leaves")]
    IndexOutOfRange {
        /// The requested index.
        index: u64,
        /// N.
        leaf_count: u64,
    },
    /// The cache was not built for a tree of this shape.
    #[error("merkle cache does not fit this plot: {reason}")]
    CacheMismatch {
        /// What differs.
        reason: String,
    },
    /// The path built does not verify against the header root: the plot data (or the cache)
    /// is corrupt.
    #[error("proof for leaf {index} does not verify against the plot root")]
    Verification {
        /// The leaf index.
        index: u64,
    },
    /// The plot could not be read (I/O error, or the file shrank under the miner).
    #[error("reading the plot for the proof of leaf {index}: {reason}")]
    Read {
        /// The leaf index.
        index: u64,
        /// The read error, with its causes.
        reason: String,
    },
    /// The cancel flag was set before the proof was finished.
    #[error("proof for leaf {index} cancelled")]
    Cancelled {
        /// The leaf index.
        index: u64,
    },
}

/// At most how many leaves [`build_proof`] reads (and hashes) for one proof of a plot of
/// `leaf_count` leaves: `2^c` with a cache whose lowest level is `c`, all of them without
/// one. Lets a miner budget the proof's time from its measured scan rate.
pub fn proof_read_leaves(leaf_count: u64, cache: Option<&MerkleCache>) -> u64 {
    match cache {
        Some(c) if !c.levels.is_empty() && c.start_level < 64 => {
            (1u64 << c.start_level).min(leaf_count)
        }
        _ => leaf_count,
    }
}

/// Build and strictly verify the Merkle path of leaf `index`. `cache` should have been
/// validated against the plot ([`MerkleCache::validate`]); a cache of the wrong shape is an
/// error, and wrong cached values make the verification fail.
pub fn build_proof(
    plot: &PlotFile,
    cache: Option<&MerkleCache>,
    index: u64,
) -> Result<MerklePath, ProveError> {
    build_proof_cancellable(plot, cache, index, &AtomicBool::new(false))
}

/// [`build_proof`] that gives up with [`ProveError::Cancelled`] once `cancel` is set
/// (checked before each sibling and each `2^16`-leaf chunk of a large sibling range), so
/// an abandoned proof of an uncached plot frees its threads within milliseconds.
pub fn build_proof_cancellable(
    plot: &PlotFile,
    cache: Option<&MerkleCache>,
    index: u64,
    cancel: &AtomicBool,
) -> Result<MerklePath, ProveError> {
    let n = plot.leaf_count();
    let leaf = plot.leaf(index).map_err(|e| read_error(index, &e))?.ok_or(
        ProveError::IndexOutOfRange {
            index,
            leaf_count: n,
        },
    )?;
    let height = tree_height(n);
    if let Some(cache) = cache {
        check_cache_shape(cache, n, height)?;
    }
    let mut siblings = Vec::with_capacity(height as usize);
    let mut sibling_is_right = Vec::with_capacity(height as usize);
    let mut node = leaf_node(&leaf);
    for level in 0..height {
        if cancel.load(Ordering::Relaxed) {
            return Err(ProveError::Cancelled { index });
        }
        let position = index >> level;
        let is_right = position & 1 == 0;
        let j = position ^ 1;
        let sibling = if j >= level_size(n, level) {
            padding_node(&node)
        } else if let Some(cached) = cache.and_then(|c| c.node(level, j)) {
            *cached
        } else {
            range_root(plot, j << level, level, cancel, index)?
        };
        node = if is_right {
            internal_node(&node, &sibling)
        } else {
            internal_node(&sibling, &node)
        };
        siblings.push(sibling);
        sibling_is_right.push(is_right);
    }
    let path = MerklePath {
        leaf,
        index,
        siblings,
        sibling_is_right,
    };
    if path.verify_strict(&plot.header().merkle_root, n) {
        Ok(path)
    } else {
        Err(ProveError::Verification { index })
    }
}

/// A plot read error as a proof error (the message keeps the whole cause chain).
fn read_error(index: u64, e: &crate::plot::PlotError) -> ProveError {
    let mut reason = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        reason.push_str(": ");
        reason.push_str(&s.to_string());
        source = s.source();
    }
    ProveError::Read { index, reason }
}

/// The level-`level` node whose leaves start at `start` (aligned to `2^level`), for the
/// proof of leaf `index`; [`ProveError::Cancelled`] when `cancel` was set before every
/// chunk was folded.
fn range_root(
    plot: &PlotFile,
    start: u64,
    level: u32,
    cancel: &AtomicBool,
    index: u64,
) -> Result<Hash32, ProveError> {
    let end = start.saturating_add(1u64 << level).min(plot.leaf_count());
    let fold = |from: u64, to: u64, level: u32| -> Result<Hash32, ProveError> {
        let mut leaves = Vec::new();
        plot.read_range(from..to, &mut leaves)
            .map_err(|e| read_error(index, &e))?;
        Ok(subtree_root(&leaves, level).unwrap_or_default())
    };
    if level <= PAR_LEVEL {
        return fold(start, end, level);
    }
    let chunk = 1u64 << PAR_LEVEL;
    let parts: Result<Vec<(Hash32, u64)>, ProveError> = (start..end)
        .step_by(chunk as usize)
        .collect::<Vec<u64>>()
        .into_par_iter()
        .map(|from| {
            if cancel.load(Ordering::Relaxed) {
                return Err(ProveError::Cancelled { index });
            }
            let to = (from + chunk).min(end);
            Ok((fold(from, to, PAR_LEVEL)?, to - from))
        })
        .collect();
    let mut folder = MerkleFolder::new();
    for (node, covered) in parts? {
        folder.push_node_at(PAR_LEVEL, node, covered);
    }
    // Never empty (the sibling exists), so the fold yields a node; a default here could only
    // come from a bug and would fail the strict verification.
    Ok(folder.finish_at_level(level).unwrap_or_default())
}

fn check_cache_shape(cache: &MerkleCache, n: u64, height: u32) -> Result<(), ProveError> {
    let mismatch = |reason: String| Err(ProveError::CacheMismatch { reason });
    if cache.tree_height != height {
        return mismatch(format!(
            "cache tree height {} vs plot {height}",
            cache.tree_height
        ));
    }
    for (level, nodes) in (cache.start_level..).zip(&cache.levels) {
        if level >= height || nodes.len() as u64 != level_size(n, level) {
            return mismatch(format!("cache level {level} has the wrong size"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plot::{create_plot, CacheLevels, CreatePlot};

    /// A scratch directory removed on drop (the crate has no tempfile dev-dependency).
    struct Scratch(std::path::PathBuf);

    impl Scratch {
        fn new(tag: &str) -> Self {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            let dir = std::env::temp_dir().join(format!(
                "spacetime-prove-{tag}-{}-{nanos}",
                std::process::id()
            ));
            std::fs::create_dir_all(&dir).unwrap();
            Scratch(dir)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn plot(dir: &Scratch, n: u64, cache: CacheLevels) -> (PlotFile, Option<MerkleCache>) {
        let created = create_plot(
            &CreatePlot {
                path: dir.0.join("p.plot"),
                miner_pk: [4; 32],
                seed: [5; 32],
                leaf_count: n,
                cache,
                threads: Some(1),
            },
            &mut |_| {},
            &AtomicBool::new(false),
        )
        .unwrap();
        let cache = created.cache_path.map(|p| MerkleCache::read(&p).unwrap());
        (PlotFile::open(&created.path).unwrap(), cache)
    }

    #[test]
    fn a_cancelled_proof_stops_and_an_uncancelled_one_matches() {
        let dir = Scratch::new("cancel");
        // Above 2^PAR_LEVEL leaves: the top sibling is folded in parallel chunks.
        let (plot, _) = plot(&dir, (1 << (PAR_LEVEL + 1)) + 3, CacheLevels::Disabled);
        let index = 5;
        assert_eq!(
            build_proof_cancellable(&plot, None, index, &AtomicBool::new(true)),
            Err(ProveError::Cancelled { index })
        );
        let cancelled_mid = AtomicBool::new(true);
        assert_eq!(
            range_root(&plot, 0, PAR_LEVEL + 1, &cancelled_mid, index),
            Err(ProveError::Cancelled { index }),
            "a large sibling range checks the flag per chunk"
        );
        let full = build_proof_cancellable(&plot, None, index, &AtomicBool::new(false)).unwrap();
        assert_eq!(full, build_proof(&plot, None, index).unwrap());
        assert!(full.verify_strict(&plot.header().merkle_root, plot.leaf_count()));
    }

    #[test]
    fn proof_reads_are_bounded_by_the_cache() {
        let dir = Scratch::new("reads");
        let n = 1 << 10;
        let (plot, cache) = plot(&dir, n, CacheLevels::TopLevels(4));
        let cache = cache.expect("a cache was written");
        let expected = 1u64 << cache.start_level;
        assert!(expected < n);
        assert_eq!(proof_read_leaves(n, Some(&cache)), expected);
        assert_eq!(proof_read_leaves(n, None), n);
        assert!(build_proof(&plot, Some(&cache), 7).is_ok());
    }
}
