//! Merkle proofs for plot leaves, reading only what the proof needs.
//!
//! For each level k of the path, the sibling is one of:
//! - the padding of the path node, when the path node is the unpaired last node of level k;
//! - a cached node, when a [`MerkleCache`] holds level k;
//! - otherwise the root of the sibling's aligned leaf range `[j·2^k, (j+1)·2^k)`, folded
//!   from a zero-copy slice of the plot (in parallel for large ranges).
//!
//! With the default cache (levels `c..H`) every sibling below `c` lies inside the leaf's
//! level-`c` subtree, so a proof reads at most `2^c` leaves. Without a cache the sibling
//! ranges are disjoint: at most about N leaves are read once, never the whole plot several
//! times. Every proof is verified strictly (decisions D2) before it is returned.

use rayon::prelude::*;

use crate::cache::MerkleCache;
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
}

/// Build and strictly verify the Merkle path of leaf `index`. `cache` should have been
/// validated against the plot ([`MerkleCache::validate`]); a cache of the wrong shape is an
/// error, and wrong cached values make the verification fail.
pub fn build_proof(
    plot: &PlotFile,
    cache: Option<&MerkleCache>,
    index: u64,
) -> Result<MerklePath, ProveError> {
    let n = plot.leaf_count();
    let leaf = plot.leaf(index).ok_or(ProveError::IndexOutOfRange {
        index,
        leaf_count: n,
    })?;
    let height = tree_height(n);
    if let Some(cache) = cache {
        check_cache_shape(cache, n, height)?;
    }
    let mut siblings = Vec::with_capacity(height as usize);
    let mut sibling_is_right = Vec::with_capacity(height as usize);
    let mut node = leaf_node(&leaf);
    for level in 0..height {
        let position = index >> level;
        let is_right = position & 1 == 0;
        let j = position ^ 1;
        let sibling = if j >= level_size(n, level) {
            padding_node(&node)
        } else if let Some(cached) = cache.and_then(|c| c.node(level, j)) {
            *cached
        } else {
            range_root(plot, j << level, level)
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

/// The level-`level` node whose leaves start at `start` (aligned to `2^level`).
fn range_root(plot: &PlotFile, start: u64, level: u32) -> Hash32 {
    let end = start.saturating_add(1u64 << level);
    if level <= PAR_LEVEL {
        return subtree_root(plot.leaves(start..end), level).unwrap_or_default();
    }
    let leaves = plot.leaves(start..end);
    let parts: Vec<(Hash32, u64)> = leaves
        .par_chunks(1 << PAR_LEVEL)
        .map(|chunk| {
            let node = subtree_root(chunk, PAR_LEVEL).unwrap_or_default();
            (node, chunk.len() as u64)
        })
        .collect();
    let mut folder = MerkleFolder::new();
    for (node, covered) in parts {
        folder.push_node_at(PAR_LEVEL, node, covered);
    }
    // Never empty (the sibling exists), so the fold yields a node; a default here could only
    // come from a bug and would fail the strict verification.
    folder.finish_at_level(level).unwrap_or_default()
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
