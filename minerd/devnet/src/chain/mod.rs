//! The devnet chain in memory ([`Chain`]: blocks by height and hash, included transactions,
//! the next difficulty) and, in [`store`], the append-only chain file that lets a restarted
//! node resume where it stopped.

pub mod store;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};

use spacetime::block::{Block, BlockHeader};
use spacetime::consensus::{epoch_challenge, DifficultyAdjuster, DifficultyAdjustmentConfig};
use spacetime::hash::Hash32;
use spacetime::validate::{validate_block, BlockError, ChainContext};
use thiserror::Error;

pub use store::{
    open, ChainError, ChainStore, OpenReport, Truncation, CHAIN_FILE, GENESIS_KEY_FILE,
};

/// Why a block cannot extend the chain (replay) or why a request names no block.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ExtendError {
    /// A block rule is broken.
    #[error(transparent)]
    Invalid(#[from] BlockError),
    /// The block's epoch does not come after its parent's.
    #[error("block epoch {epoch} is not after its parent's epoch {parent_epoch}")]
    EpochNotAfterParent {
        /// The block's epoch.
        epoch: u64,
        /// The parent's epoch.
        parent_epoch: u64,
    },
    /// The block's epoch is below its height (decisions D9: epoch ≥ height).
    #[error("block epoch {epoch} is below its height {height}")]
    EpochBelowHeight {
        /// The block's epoch.
        epoch: u64,
        /// Its height.
        height: u64,
    },
}

/// The chain kept in memory: every block, an index by hash, the hashes of every included
/// transaction, and the difficulty rule.
#[derive(Debug)]
pub struct Chain {
    blocks: Vec<Block>,
    by_hash: HashMap<Hash32, u64>,
    txs: HashSet<Hash32>,
    adjuster: DifficultyAdjuster,
}

impl Chain {
    /// A chain holding only `genesis` (checked by the caller).
    pub fn new(genesis: Block, adjustment: DifficultyAdjustmentConfig) -> Result<Self, ChainError> {
        let mut chain = Chain {
            blocks: Vec::new(),
            by_hash: HashMap::new(),
            txs: HashSet::new(),
            adjuster: DifficultyAdjuster::new(adjustment)?,
        };
        chain.push(genesis);
        Ok(chain)
    }

    /// The newest block.
    pub fn tip(&self) -> &Block {
        // `blocks` is never empty: `new` pushes the genesis block.
        &self.blocks[self.blocks.len() - 1]
    }

    /// Height of the tip.
    pub fn height(&self) -> u64 {
        self.tip().header.height
    }

    /// The genesis block.
    pub fn genesis(&self) -> &Block {
        &self.blocks[0]
    }

    /// The block at `height`.
    pub fn block_at(&self, height: u64) -> Option<&Block> {
        usize::try_from(height)
            .ok()
            .and_then(|h| self.blocks.get(h))
    }

    /// The block with header hash `hash`.
    pub fn block_by_hash(&self, hash: &Hash32) -> Option<&Block> {
        self.by_hash.get(hash).and_then(|&h| self.block_at(h))
    }

    /// Whether a transaction with this hash is in a block.
    pub fn contains_tx(&self, tx_hash: &Hash32) -> bool {
        self.txs.contains(tx_hash)
    }

    /// The difficulty rule.
    pub fn adjustment(&self) -> &DifficultyAdjustmentConfig {
        self.adjuster.config()
    }

    /// Difficulty of the next block (decisions D6): the tip's, except when the tip height
    /// is a multiple of the adjustment interval; then the reference rule over the last
    /// interval, from the timestamp of block `tip − interval` to the tip's.
    pub fn next_difficulty(&self) -> u64 {
        let tip = &self.tip().header;
        if !self.adjuster.should_adjust(tip.height) {
            return tip.difficulty;
        }
        let interval = self.adjuster.config().adjustment_interval;
        let start = self
            .block_at(tip.height - interval)
            .map_or(tip.timestamp, |b| b.header.timestamp);
        // Miner clocks differ: a window that appears to end before it starts counts as the
        // shortest possible window.
        let end = tip.timestamp.max(start);
        self.adjuster
            .next_difficulty(tip.difficulty, end, start)
            .unwrap_or(tip.difficulty)
    }

    /// Checks `block` as the next block of a replayed chain: every rule of
    /// `validate_block` but the timestamp rules, with the epoch and challenge the block
    /// names (its epoch must come after its parent's and be at least its height) and the
    /// difficulty this chain expects.
    ///
    /// The timestamp rules judge a block against the clock and the epoch start at the
    /// moment it arrived, neither of which is recorded; the block passed them then. Applying
    /// "at most 120 s ahead of now" again would cut valid history off whenever the node's
    /// clock steps back, so neither rule is applied here.
    pub fn check_replayed(&self, block: &Block) -> Result<(), ExtendError> {
        let tip = &self.tip().header;
        let h = &block.header;
        if h.epoch <= tip.epoch {
            return Err(ExtendError::EpochNotAfterParent {
                epoch: h.epoch,
                parent_epoch: tip.epoch,
            });
        }
        if h.epoch < h.height {
            return Err(ExtendError::EpochBelowHeight {
                epoch: h.epoch,
                height: h.height,
            });
        }
        let ctx = ChainContext {
            tip_hash: Some(tip.hash()),
            tip_height: tip.height,
            expected_difficulty: self.next_difficulty(),
            expected_epoch: h.epoch,
            expected_challenge: epoch_challenge(&tip.hash(), h.epoch),
            // The block's own timestamp as "now" and as the epoch start makes both
            // timestamp rules hold trivially (see above); every other rule still applies.
            now_unix: h.timestamp,
            epoch_start_unix: h.timestamp,
        };
        validate_block(block, &ctx)?;
        Ok(())
    }

    /// Appends a validated block to the in-memory chain.
    pub fn push(&mut self, block: Block) {
        let hashes = BlockHashes::of(&block);
        self.push_hashed(block, &hashes);
    }

    /// [`Chain::push`] with the hashes computed beforehand (by [`BlockHashes::of`], outside
    /// the node's lock).
    pub fn push_hashed(&mut self, block: Block, hashes: &BlockHashes) {
        self.by_hash.insert(hashes.block, block.header.height);
        self.txs.extend(hashes.transactions.iter().copied());
        self.blocks.push(block);
    }

    /// Up to `max` headers after the block `locator` (from genesis when `locator` is all
    /// zeros), stopping after `stop` when it is reached. `None` when `locator` is unknown.
    pub fn headers_after(
        &self,
        locator: &Hash32,
        stop: Option<&Hash32>,
        max: usize,
    ) -> Option<Vec<BlockHeader>> {
        let first = if locator == &[0u8; 32] {
            0
        } else {
            self.by_hash.get(locator)? + 1
        };
        // The stop block's height from the index, so no header is hashed on the way (this
        // runs under the node's lock, for up to MAX_HEADERS headers).
        let last = stop
            .and_then(|s| self.by_hash.get(s))
            .filter(|&&h| h >= first)
            .map_or(u64::MAX, |&h| h);
        let first = usize::try_from(first).ok()?;
        let count = usize::try_from(last.saturating_sub(first as u64))
            .unwrap_or(usize::MAX)
            .saturating_add(1)
            .min(max);
        Some(
            self.blocks
                .iter()
                .skip(first)
                .take(count)
                .map(|b| b.header)
                .collect(),
        )
    }
}

/// A block's header hash and its transactions' hashes, computed once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockHashes {
    /// The header hash.
    pub block: Hash32,
    /// The transaction hashes, in block order.
    pub transactions: Vec<Hash32>,
}

impl BlockHashes {
    /// Hashes `block` (up to a thousand transactions: worth doing outside a lock).
    pub fn of(block: &Block) -> Self {
        Self {
            block: block.hash(),
            transactions: block.transactions.iter().map(|tx| tx.hash()).collect(),
        }
    }
}

/// The genesis parameters of a new chain.
#[derive(Debug, Clone)]
pub struct GenesisParams {
    /// Network id.
    pub network_id: String,
    /// Genesis difficulty.
    pub initial_difficulty: u64,
    /// Epoch length in whole seconds (1..=3600; recorded in the genesis config only).
    pub epoch_duration_secs: u64,
    /// Difficulty rule.
    pub adjustment: DifficultyAdjustmentConfig,
}
