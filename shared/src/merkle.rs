//! The Merkle tree exactly as the reference library (`runcodedad/merkletree`) builds it.
//!
//! | node            | bytes hashed                                   |
//! |-----------------|------------------------------------------------|
//! | leaf node       | `H(0x00 ‖ leaf[32])`                           |
//! | internal node   | `H(0x01 ‖ left[32] ‖ right[32])`               |
//! | padding of X    | `H(0x01 ‖ "MERKLE_PADDING" ‖ X)` (47 bytes in) |
//!
//! Level 0 holds the leaf nodes in index order; level k+1 pairs (0,1), (2,3), … of level k.
//! When a level has an odd count its last node is paired with its own padding hash, decided
//! level by level. The root is the single node of level `height = ⌈log₂ N⌉`.
//!
//! The reference docs say the padding hash has no `0x01` prefix; the reference code has it,
//! and the code is what existing plots were built with.

use crate::hash::{sha256, sha256_concat, Hash32};

/// Domain prefix of a leaf node.
const LEAF_PREFIX: u8 = 0x00;
/// Domain prefix of an internal node (and of a padding node).
const INTERNAL_PREFIX: u8 = 0x01;
/// The marker inside a padding hash.
const PADDING_MARKER: &[u8; 14] = b"MERKLE_PADDING";

/// `H(0x00 ‖ leaf)`: the level-0 node of a leaf.
pub fn leaf_node(leaf: &[u8; 32]) -> Hash32 {
    let mut buf = [0u8; 33];
    buf[0] = LEAF_PREFIX;
    buf[1..].copy_from_slice(leaf);
    sha256(&buf)
}

/// `H(0x01 ‖ left ‖ right)`: the parent of two nodes.
pub fn internal_node(left: &Hash32, right: &Hash32) -> Hash32 {
    let mut buf = [0u8; 65];
    buf[0] = INTERNAL_PREFIX;
    buf[1..33].copy_from_slice(left);
    buf[33..].copy_from_slice(right);
    sha256(&buf)
}

/// `H(0x01 ‖ "MERKLE_PADDING" ‖ node)`: the right sibling of an unpaired last node.
pub fn padding_node(node: &Hash32) -> Hash32 {
    sha256_concat(&[&[INTERNAL_PREFIX], PADDING_MARKER, node])
}

/// Height of a tree of `leaf_count` leaves: `⌈log₂ N⌉` (0 for one leaf).
///
/// # Panics
/// Never; `leaf_count = 0` yields 0 (callers reject empty trees before asking).
pub fn tree_height(leaf_count: u64) -> u32 {
    if leaf_count <= 1 {
        0
    } else {
        64 - (leaf_count - 1).leading_zeros()
    }
}

/// Number of nodes on `level` of a tree of `leaf_count` leaves: `⌈N / 2^level⌉`.
pub fn level_size(leaf_count: u64, level: u32) -> u64 {
    if level >= 64 {
        return u64::from(leaf_count > 0);
    }
    leaf_count.div_ceil(1u64 << level)
}

/// Streaming root computation with O(log N) memory: push level-0 nodes in index order,
/// then [`MerkleFolder::finish`]. Produces exactly the reference root.
#[derive(Debug, Clone, Default)]
pub struct MerkleFolder {
    /// `pending[k]` is a level-k node still waiting for its right sibling.
    pending: Vec<Option<Hash32>>,
    count: u64,
}

impl MerkleFolder {
    /// An empty folder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of leaves pushed so far.
    pub fn leaf_count(&self) -> u64 {
        self.count
    }

    /// Push the next leaf (hashes it to its leaf node first).
    pub fn push_leaf(&mut self, leaf: &[u8; 32]) {
        self.push_leaf_node(leaf_node(leaf));
    }

    /// Push the next level-0 node.
    pub fn push_leaf_node(&mut self, node: Hash32) {
        self.count += 1;
        self.push_at(0, node);
    }

    /// Push the next node of an aligned level-`level` run (used to merge subtrees that were
    /// folded separately, e.g. by parallel workers, each covering `2^level` leaves).
    pub fn push_node_at(&mut self, level: u32, node: Hash32, leaves_covered: u64) {
        self.count += leaves_covered;
        self.push_at(level as usize, node);
    }

    fn push_at(&mut self, mut level: usize, mut node: Hash32) {
        loop {
            if self.pending.len() <= level {
                self.pending.resize(level + 1, None);
            }
            match self.pending[level].take() {
                Some(left) => {
                    node = internal_node(&left, &node);
                    level += 1;
                }
                None => {
                    self.pending[level] = Some(node);
                    return;
                }
            }
        }
    }

    /// The root of everything pushed, or `None` when nothing was pushed.
    pub fn finish(mut self) -> Option<Hash32> {
        if self.count == 0 {
            return None;
        }
        let height = tree_height(self.count) as usize;
        for level in 0..height {
            if let Some(lone) = self.pending.get_mut(level).and_then(Option::take) {
                self.push_at(level + 1, internal_node(&lone, &padding_node(&lone)));
            }
        }
        self.pending.get_mut(height).and_then(Option::take)
    }
}

/// Root of a tree over `leaves` (in memory; for small trees and tests).
pub fn root_of_leaves(leaves: &[[u8; 32]]) -> Option<Hash32> {
    let mut folder = MerkleFolder::new();
    for leaf in leaves {
        folder.push_leaf(leaf);
    }
    folder.finish()
}

/// A Merkle inclusion path, as the reference library lays it out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MerklePath {
    /// The raw 32-byte leaf (not its leaf node).
    pub leaf: [u8; 32],
    /// Index of the leaf in the tree.
    pub index: u64,
    /// Sibling hashes from the leaf level up.
    pub siblings: Vec<Hash32>,
    /// `true` when the sibling at that level is on the right (the path node is a left child).
    pub sibling_is_right: Vec<bool>,
}

impl MerklePath {
    /// The root this path leads to (the reference `MerkleProof.Verify` fold), or `None`
    /// when the sibling and orientation lists differ in length.
    pub fn computed_root(&self) -> Option<Hash32> {
        if self.siblings.len() != self.sibling_is_right.len() {
            return None;
        }
        let mut node = leaf_node(&self.leaf);
        for (sibling, &is_right) in self.siblings.iter().zip(&self.sibling_is_right) {
            node = if is_right {
                internal_node(&node, sibling)
            } else {
                internal_node(sibling, &node)
            };
        }
        Some(node)
    }

    /// Reference-level verification: the fold reaches `root` (index not checked).
    pub fn leads_to(&self, root: &Hash32) -> bool {
        self.computed_root().as_ref() == Some(root)
    }

    /// Strict verification (decisions D2): the fold reaches `root`, `index < leaf_count`,
    /// the path has exactly `⌈log₂ leaf_count⌉` levels, and every orientation bit agrees
    /// with `index`.
    pub fn verify_strict(&self, root: &Hash32, leaf_count: u64) -> bool {
        self.index < leaf_count
            && self.siblings.len() == tree_height(leaf_count) as usize
            && self.orientation_matches_index()
            && self.leads_to(root)
    }

    /// Whether `sibling_is_right[k] == ((index >> k) & 1 == 0)` at every level.
    pub fn orientation_matches_index(&self) -> bool {
        self.sibling_is_right
            .iter()
            .enumerate()
            .all(|(k, &is_right)| k < 64 && is_right == ((self.index >> k) & 1 == 0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heights_follow_ceil_log2() {
        let cases = [(1, 0), (2, 1), (3, 2), (4, 2), (5, 3), (8, 3), (9, 4), (3_276_800, 22)];
        for (n, h) in cases {
            assert_eq!(tree_height(n), h, "N = {n}");
        }
        assert_eq!(tree_height(u64::MAX), 64);
    }

    #[test]
    fn level_sizes_round_up() {
        assert_eq!(level_size(5, 0), 5);
        assert_eq!(level_size(5, 1), 3);
        assert_eq!(level_size(5, 2), 2);
        assert_eq!(level_size(5, 3), 1);
        assert_eq!(level_size(u64::MAX, 64), 1);
    }

    /// The level-by-level definition, written as plainly as possible.
    fn naive_root(leaves: &[[u8; 32]]) -> Hash32 {
        let mut level: Vec<Hash32> = leaves.iter().map(leaf_node).collect();
        while level.len() > 1 {
            level = level
                .chunks(2)
                .map(|pair| match pair {
                    [l, r] => internal_node(l, r),
                    [lone] => internal_node(lone, &padding_node(lone)),
                    _ => unreachable!(),
                })
                .collect();
        }
        level[0]
    }

    #[test]
    fn folder_matches_naive_definition_for_small_trees() {
        for n in 1..=70u64 {
            let leaves: Vec<[u8; 32]> = (0..n).map(|i| sha256(&i.to_le_bytes())).collect();
            assert_eq!(root_of_leaves(&leaves).unwrap(), naive_root(&leaves), "N = {n}");
        }
    }

    #[test]
    fn empty_tree_has_no_root() {
        assert_eq!(root_of_leaves(&[]), None);
    }
}
