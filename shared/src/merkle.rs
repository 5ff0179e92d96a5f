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

// The node hashes are compression shapes (`compress`), below both this tree and the SHA-256
// kernel that runs it; they are re-exported here, where the tree's readers look for them.
pub use crate::compress::{internal_node, leaf_node, padded_parent, padding_node};
use crate::hash::Hash32;
use crate::kernel::Kernels;

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
///
/// A folder can also record every node it produces from a given level up
/// ([`MerkleFolder::with_capture`]), which is how plot creation builds the `.cache` levels
/// in the same pass.
#[derive(Debug, Clone, Default)]
pub struct MerkleFolder {
    /// `pending[k]` is a level-k node still waiting for its right sibling.
    pending: Vec<Option<Hash32>>,
    count: u64,
    /// Lowest captured level and the captured nodes per level (index order), if capturing.
    capture: Option<(u32, Vec<Vec<Hash32>>)>,
}

impl MerkleFolder {
    /// An empty folder.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty folder that records every node landing on level `from_level` or above,
    /// in index order per level (see [`MerkleFolder::finish_capturing`]).
    pub fn with_capture(from_level: u32) -> Self {
        Self {
            capture: Some((from_level, Vec::new())),
            ..Self::default()
        }
    }

    /// Number of leaves pushed so far.
    pub fn leaf_count(&self) -> u64 {
        self.count
    }

    /// Push the next leaf (hashes it to its leaf node first).
    pub fn push_leaf(&mut self, leaf: &[u8; 32]) {
        self.push_leaf_node(leaf_node(leaf));
    }

    /// Push the next leaves, in order. Equivalent to [`MerkleFolder::push_leaf`] on each,
    /// but aligned runs of 64 leaves are folded in a local array first (one stack update
    /// per 64 leaves), unless levels below 6 are being captured.
    pub fn push_leaves(&mut self, leaves: &[[u8; 32]]) {
        let group = 1usize << GROUP_LEVEL;
        let grouped = self
            .capture
            .as_ref()
            .is_none_or(|(from, _)| *from > GROUP_LEVEL);
        let mut rest = leaves;
        if grouped {
            while let Some((first, tail)) = rest.split_first() {
                if self.count.is_multiple_of(group as u64) {
                    break;
                }
                self.push_leaf(first);
                rest = tail;
            }
            let whole = rest.len() / group * group;
            let mut roots = [[0u8; 32]; GROUPS_PER_PASS];
            for run in rest[..whole].chunks(group * GROUPS_PER_PASS) {
                let roots = &mut roots[..run.len() / group];
                group_roots(run, roots);
                for root in roots.iter() {
                    self.push_node_at(GROUP_LEVEL, *root, group as u64);
                }
            }
            rest = &rest[whole..];
        }
        for leaf in rest {
            self.push_leaf(leaf);
        }
    }

    /// Push the next level-0 node.
    pub fn push_leaf_node(&mut self, node: Hash32) {
        self.count += 1;
        self.push_at(0, node);
    }

    /// Push the next node of an aligned level-`level` run (used to merge subtrees that were
    /// folded separately, e.g. by parallel workers). Every pushed node but the last must
    /// cover exactly `2^level` leaves; the last may cover fewer if it was folded to exactly
    /// `level` with padding (see [`MerkleFolder::finish_at_level`]).
    pub fn push_node_at(&mut self, level: u32, node: Hash32, leaves_covered: u64) {
        self.count += leaves_covered;
        self.push_at(level as usize, node);
    }

    fn push_at(&mut self, mut level: usize, mut node: Hash32) {
        loop {
            if let Some((from, levels)) = &mut self.capture {
                let from = *from as usize;
                if level >= from {
                    let slot = level - from;
                    if levels.len() <= slot {
                        levels.resize_with(slot + 1, Vec::new);
                    }
                    levels[slot].push(node);
                }
            }
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

    /// Pad every lone node below `level` and return the level-`level` node.
    fn close_to(&mut self, level: u32) -> Option<Hash32> {
        if self.count == 0 {
            return None;
        }
        for below in 0..level as usize {
            if let Some(lone) = self.pending.get_mut(below).and_then(Option::take) {
                self.push_at(below + 1, padded_parent(&lone));
            }
        }
        let top = self.pending.get_mut(level as usize).and_then(Option::take);
        // Anything left above `level` means more than 2^level leaves were pushed.
        if self.pending.iter().any(Option::is_some) {
            return None;
        }
        top
    }

    /// The root of everything pushed, or `None` when nothing was pushed.
    pub fn finish(mut self) -> Option<Hash32> {
        let height = tree_height(self.count);
        self.close_to(height)
    }

    /// The level-`level` node of an aligned subtree folded on its own: every lone node is
    /// padded up to exactly `level` (reference section 2.3). `None` when nothing was pushed
    /// or more than `2^level` leaves were.
    pub fn finish_at_level(mut self, level: u32) -> Option<Hash32> {
        self.close_to(level)
    }

    /// Like [`MerkleFolder::finish`], also returning the captured levels (index 0 = the
    /// capture's first level; the root's level is included).
    pub fn finish_capturing(mut self) -> (Option<Hash32>, Vec<Vec<Hash32>>) {
        let height = tree_height(self.count);
        let root = self.close_to(height);
        let levels = self.capture.take().map(|(_, l)| l).unwrap_or_default();
        (root, levels)
    }

    /// Like [`MerkleFolder::finish_at_level`], also returning the captured levels.
    pub fn finish_at_level_capturing(mut self, level: u32) -> (Option<Hash32>, Vec<Vec<Hash32>>) {
        let node = self.close_to(level);
        let levels = self.capture.take().map(|(_, l)| l).unwrap_or_default();
        (node, levels)
    }
}

/// Level of the groups [`MerkleFolder::push_leaves`] folds locally (64 leaves).
const GROUP_LEVEL: u32 = 6;

/// Groups folded side by side in one pass: every level down to the group roots then has at
/// least 16 nodes, so each kernel call fills all 16 lanes of the widest backend.
const GROUPS_PER_PASS: usize = 16;

/// The level-6 nodes of consecutive full aligned groups of 64 leaves (`leaves.len() =
/// 64 × out.len()`, at most [`GROUPS_PER_PASS`] groups; no padding inside): the leaf-node
/// kernel over all of them, then the internal-node kernel level by level across the groups
/// (level k of consecutive aligned groups is one contiguous run of pairs).
fn group_roots(leaves: &[[u8; 32]], out: &mut [Hash32]) {
    let kernels = Kernels::active();
    let mut nodes = [[0u8; 32]; 64 * GROUPS_PER_PASS];
    let mut parents = [[0u8; 32]; 32 * GROUPS_PER_PASS];
    let mut len = leaves.len();
    kernels.leaf_nodes(leaves, &mut nodes[..len]);
    while len > out.len() {
        kernels.internal_nodes(&nodes[..len], &mut parents[..len / 2]);
        nodes[..len / 2].copy_from_slice(&parents[..len / 2]);
        len /= 2;
    }
    out.copy_from_slice(&nodes[..len]);
}

/// The level-`level` node over `leaves`, an aligned run of at most `2^level` leaves folded
/// on its own with padding up to exactly `level` (reference section 2.3).
/// `None` when `leaves` is empty or longer than `2^level`.
pub fn subtree_root(leaves: &[[u8; 32]], level: u32) -> Option<Hash32> {
    let mut folder = MerkleFolder::new();
    folder.push_leaves(leaves);
    folder.finish_at_level(level)
}

/// Root of a tree over `leaves` (in memory; for small trees and tests).
pub fn root_of_leaves(leaves: &[[u8; 32]]) -> Option<Hash32> {
    let mut folder = MerkleFolder::new();
    folder.push_leaves(leaves);
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
    use crate::hash::{sha256, sha256_concat};

    #[test]
    fn fast_node_hashes_match_their_definitions() {
        let a = sha256(b"a");
        let b = sha256(b"b");
        assert_eq!(leaf_node(&a), sha256_concat(&[&[0], &a]));
        assert_eq!(internal_node(&a, &b), sha256_concat(&[&[1], &a, &b]));
        assert_eq!(
            padding_node(&a),
            sha256_concat(&[&[1], b"MERKLE_PADDING", &a])
        );
    }

    #[test]
    fn subtree_root_pads_to_its_exact_level() {
        let leaves: Vec<[u8; 32]> = (0..5u64).map(|i| sha256(&i.to_le_bytes())).collect();
        // The right-edge subtree {4} of a 5-leaf tree, at level 2, is padded twice.
        let l4 = leaf_node(&leaves[4]);
        let expected = padded_parent(&padded_parent(&l4));
        assert_eq!(subtree_root(&leaves[4..], 2), Some(expected));
        assert_eq!(subtree_root(&leaves, 3), root_of_leaves(&leaves));
        assert_eq!(
            subtree_root(&leaves, 2),
            None,
            "5 leaves do not fit level 2"
        );
        assert_eq!(subtree_root(&[], 2), None);
    }

    #[test]
    fn capture_records_every_level_in_order() {
        let leaves: Vec<[u8; 32]> = (0..11u64).map(|i| sha256(&i.to_le_bytes())).collect();
        let mut folder = MerkleFolder::with_capture(1);
        for leaf in &leaves {
            folder.push_leaf(leaf);
        }
        let (root, levels) = folder.finish_capturing();
        let mut level: Vec<Hash32> = leaves.iter().map(leaf_node).collect();
        let mut expected = Vec::new();
        while level.len() > 1 {
            level = level
                .chunks(2)
                .map(|p| {
                    if p.len() == 2 {
                        internal_node(&p[0], &p[1])
                    } else {
                        padded_parent(&p[0])
                    }
                })
                .collect();
            expected.push(level.clone());
        }
        assert_eq!(levels, expected);
        assert_eq!(root, Some(level[0]));
    }

    #[test]
    fn heights_follow_ceil_log2() {
        let cases = [
            (1, 0),
            (2, 1),
            (3, 2),
            (4, 2),
            (5, 3),
            (8, 3),
            (9, 4),
            (3_276_800, 22),
        ];
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
            assert_eq!(
                root_of_leaves(&leaves).unwrap(),
                naive_root(&leaves),
                "N = {n}"
            );
        }
    }

    #[test]
    fn grouped_pushes_equal_single_pushes() {
        // Over 2 × 16 groups: full passes of 16 groups, a partial pass, and a tail.
        let leaves: Vec<[u8; 32]> = (0..2600u64).map(|i| sha256(&i.to_le_bytes())).collect();
        for split in [0usize, 1, 63, 64, 65, 130, 1024, 1100, 2599, 2600] {
            for from in [1u32, 6, 7, 11] {
                let mut one = MerkleFolder::with_capture(from);
                leaves.iter().for_each(|l| one.push_leaf(l));
                let mut many = MerkleFolder::with_capture(from);
                many.push_leaves(&leaves[..split]);
                many.push_leaves(&leaves[split..]);
                assert_eq!(
                    one.finish_capturing(),
                    many.finish_capturing(),
                    "split {split}"
                );
            }
        }
    }

    #[test]
    fn empty_tree_has_no_root() {
        assert_eq!(root_of_leaves(&[]), None);
    }
}
