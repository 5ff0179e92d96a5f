//! The devnet chain in memory ([`Chain`]: headers by height and hash, included transactions,
//! the next difficulty, the newest block bodies) and, in [`store`], the append-only chain
//! file that lets a restarted node resume where it stopped and that holds every older body
//! (decisions R8: the memory a chain costs is its headers and transaction hashes, not its
//! blocks).

pub mod checkpoint;
pub mod store;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet, VecDeque};
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use spacetime::block::{tx_root, Block, BlockHeader};
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

/// Block bodies kept in memory by default: the newest 64 (the rest are read from the file).
pub const DEFAULT_BLOCKS_IN_MEMORY: usize = 64;

/// Where a block's bytes are in the chain file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordLocation {
    /// Offset of the block's encoding (after its record header).
    pub offset: u64,
    /// Its length.
    pub len: u32,
}

/// Where to get a block: in memory, or in the chain file (read it with
/// [`read_stored_block`], off the node's lock).
#[derive(Debug)]
pub enum StoredBlock<'a> {
    /// The body is in memory.
    Memory(&'a Block),
    /// The body is in the chain file.
    File {
        /// The chain file, opened for reading.
        file: Arc<File>,
        /// Where the block is.
        at: RecordLocation,
        /// Its header hash, to check what is read.
        hash: Hash32,
    },
}

/// The chain kept in memory: every header, an index by hash, the hashes of every included
/// transaction, the difficulty rule, the genesis block and the newest bodies (at most
/// `max_bodies`, once the older ones are in the chain file).
#[derive(Debug)]
pub struct Chain {
    headers: Vec<BlockHeader>,
    /// Where each block is in the chain file (`None`: only in memory).
    locations: Vec<Option<RecordLocation>>,
    genesis: Block,
    /// The newest bodies, up to and including the tip.
    recent: VecDeque<Block>,
    max_bodies: usize,
    file: Option<Arc<File>>,
    by_hash: HashMap<Hash32, u64>,
    txs: HashSet<Hash32>,
    adjuster: DifficultyAdjuster,
}

impl Chain {
    /// A chain holding only `genesis` (checked by the caller).
    pub fn new(genesis: Block, adjustment: DifficultyAdjustmentConfig) -> Result<Self, ChainError> {
        let mut chain = Chain {
            headers: Vec::new(),
            locations: Vec::new(),
            genesis: genesis.clone(),
            recent: VecDeque::new(),
            max_bodies: DEFAULT_BLOCKS_IN_MEMORY,
            file: None,
            by_hash: HashMap::new(),
            txs: HashSet::new(),
            adjuster: DifficultyAdjuster::new(adjustment)?,
        };
        chain.push(genesis);
        Ok(chain)
    }

    /// Reads bodies no longer in memory from `file` (the chain file); the genesis block is
    /// at `genesis_at` in it.
    pub fn attach_file(&mut self, file: File, genesis_at: RecordLocation) {
        self.file = Some(Arc::new(file));
        if let Some(first) = self.locations.first_mut() {
            *first = Some(genesis_at);
        }
    }

    /// Keeps at most `max` block bodies in memory (at least the tip's); older ones stay in
    /// the chain file only.
    pub fn keep_bodies(&mut self, max: usize) {
        self.max_bodies = max.max(1);
        self.evict();
    }

    /// Block bodies held in memory (the genesis block aside).
    pub fn bodies_in_memory(&self) -> usize {
        self.recent.len()
    }

    /// Drops the oldest bodies beyond `max_bodies` that the file holds.
    fn evict(&mut self) {
        while self.recent.len() > self.max_bodies && self.file.is_some() {
            let oldest = self.height() + 1 - self.recent.len() as u64;
            let stored = usize::try_from(oldest)
                .ok()
                .and_then(|h| self.locations.get(h))
                .is_some_and(Option::is_some);
            if !stored {
                break;
            }
            self.recent.pop_front();
        }
    }

    /// The newest block.
    pub fn tip(&self) -> &Block {
        // Never empty: `new` pushes the genesis block, and eviction keeps the tip.
        self.recent.back().unwrap_or(&self.genesis)
    }

    /// Height of the tip.
    pub fn height(&self) -> u64 {
        (self.headers.len() as u64).saturating_sub(1)
    }

    /// The genesis block.
    pub fn genesis(&self) -> &Block {
        &self.genesis
    }

    /// The header at `height`.
    pub fn header_at(&self, height: u64) -> Option<&BlockHeader> {
        usize::try_from(height)
            .ok()
            .and_then(|h| self.headers.get(h))
    }

    /// Where the block at `height` is.
    pub fn find(&self, height: u64) -> Option<StoredBlock<'_>> {
        let h = usize::try_from(height).ok()?;
        if h == 0 {
            return Some(StoredBlock::Memory(&self.genesis));
        }
        let first_recent = self.height() + 1 - self.recent.len() as u64;
        if height >= first_recent {
            return self
                .recent
                .get(usize::try_from(height - first_recent).ok()?)
                .map(StoredBlock::Memory);
        }
        let at = (*self.locations.get(h)?)?;
        Some(StoredBlock::File {
            file: Arc::clone(self.file.as_ref()?),
            at,
            hash: self.headers.get(h)?.hash(),
        })
    }

    /// Where the block with header hash `hash` is.
    pub fn find_by_hash(&self, hash: &Hash32) -> Option<StoredBlock<'_>> {
        self.by_hash.get(hash).and_then(|&h| self.find(h))
    }

    /// The block at `height`, read from the chain file if it is not in memory (blocking:
    /// not under the node's lock on a hot path).
    pub fn block_at(&self, height: u64) -> Option<Block> {
        match self.find(height)? {
            StoredBlock::Memory(b) => Some(b.clone()),
            StoredBlock::File { file, at, hash } => read_stored_block(&file, at, &hash).ok(),
        }
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
            .header_at(tip.height - interval)
            .map_or(tip.timestamp, |h| h.timestamp);
        // Miner clocks differ: a window that appears to end before it starts counts as the
        // shortest possible window.
        let end = tip.timestamp.max(start);
        self.adjuster
            .next_difficulty(tip.difficulty, end, start)
            .unwrap_or(tip.difficulty)
    }

    /// The cheap checks that still bind a block below a verified checkpoint (decisions R8):
    /// it names the tip as its parent, has the next height, and its transactions hash to
    /// its tx root. Signatures, proofs and the consensus rules are not re-checked: the
    /// checkpoint's header hash and chain digest, compared when its height is reached,
    /// vouch that this prefix is the one that passed them.
    pub fn check_linked(&self, block: &Block) -> Result<(), ExtendError> {
        let tip = &self.tip().header;
        let h = &block.header;
        let tip_hash = tip.hash();
        if h.parent_hash != tip_hash {
            return Err(BlockError::ParentMismatch {
                expected: tip_hash,
                actual: h.parent_hash,
            }
            .into());
        }
        if h.height != tip.height.saturating_add(1) {
            return Err(BlockError::HeightMismatch {
                expected: tip.height.saturating_add(1),
                actual: h.height,
            }
            .into());
        }
        let computed = tx_root(&block.transactions);
        if computed != h.tx_root {
            return Err(BlockError::TxRootMismatch {
                computed,
                header: h.tx_root,
            }
            .into());
        }
        Ok(())
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

    /// Appends a validated block to the in-memory chain (kept in memory: it is in no file).
    pub fn push(&mut self, block: Block) {
        let hashes = BlockHashes::of(&block);
        self.push_stored(block, &hashes, None);
    }

    /// Appends a validated block whose hashes were computed beforehand (by
    /// [`BlockHashes::of`], outside the node's lock) and that the chain file holds at `at`
    /// (so its body may leave memory later).
    pub fn push_stored(&mut self, block: Block, hashes: &BlockHashes, at: Option<RecordLocation>) {
        self.by_hash.insert(hashes.block, block.header.height);
        self.txs.extend(hashes.transactions.iter().copied());
        self.headers.push(block.header);
        self.locations.push(at);
        if block.header.height > 0 {
            self.recent.push_back(block);
        }
        self.evict();
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
            self.headers
                .iter()
                .skip(first)
                .take(count)
                .copied()
                .collect(),
        )
    }
}

/// Reads the block at `at` from the chain file and checks that it is the block `hash`.
pub fn read_stored_block(file: &File, at: RecordLocation, hash: &Hash32) -> io::Result<Block> {
    let mut bytes = vec![0u8; at.len as usize];
    file.read_exact_at(&mut bytes, at.offset)?;
    let block = Block::decode(&bytes)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
    if &block.hash() != hash {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "the chain file changed under the node: the block there has another hash",
        ));
    }
    Ok(block)
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
