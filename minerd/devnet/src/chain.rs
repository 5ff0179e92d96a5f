//! The devnet chain: blocks by height and hash, the next difficulty, and the append-only
//! chain file that lets a restarted node resume where it stopped.
//!
//! `chain.dat` layout (little-endian):
//!
//! | off | size | field                  | rule                                         |
//! |----:|-----:|------------------------|----------------------------------------------|
//! |   0 |    8 | magic                  | `STDEVCH1`                                   |
//! |   8 |    8 | target_block_time_secs | difficulty rule of this chain (decisions D6) |
//! |  16 |    8 | adjustment_interval    |                                              |
//! |  24 |    8 | dampening_factor       |                                              |
//! |  32 |    8 | min_difficulty         |                                              |
//! |  40 |    8 | max_difficulty         |                                              |
//! |  48 |    … | records                | the genesis block first, then one per height |
//!
//! A record is `u32 len ‖ checksum[8] ‖ block[len]`, where `checksum` is the first 8 bytes
//! of SHA-256 of the block bytes and `1 ≤ len ≤ 16 MiB`. A new chain file (header and
//! genesis record) is written to a temporary name, fsynced and renamed, so it is complete or
//! absent; each later block is appended and fsynced before it is announced. At start every
//! record is decoded and re-validated against the chain before it (signature, parent,
//! height, difficulty, epoch and challenge, transactions, tx root, strict proof); the first
//! torn, corrupt or invalid record and everything after it is cut off with a warning, never
//! trusted. The timestamp rules are not re-applied: they judge a block against the clock
//! and the epoch at the moment it arrived, and a block was appended only after passing
//! them, so a node whose clock has stepped back keeps its whole history (the report says
//! how far the tip is ahead of the clock). A file whose header or genesis record is bad is
//! refused (the node will not silently replace a chain).

use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use spacetime::block::{Block, BlockHeader};
use spacetime::consensus::{
    epoch_challenge, genesis_challenge, ConsensusError, DifficultyAdjuster,
    DifficultyAdjustmentConfig, GenesisConfig,
};
use spacetime::hash::{sha256, to_hex, Hash32};
use spacetime::keys::{KeyError, MinerKey};
use spacetime::validate::{
    validate_block, validate_genesis_block, BlockError, ChainContext, MAX_FUTURE_DRIFT_SECS,
};
use thiserror::Error;

/// File name of the chain inside the data dir.
pub const CHAIN_FILE: &str = "chain.dat";
/// File name of the genesis signer key inside the data dir (created with the chain).
pub const GENESIS_KEY_FILE: &str = "genesis.key";
/// First bytes of a chain file.
pub const MAGIC: &[u8; 8] = b"STDEVCH1";
/// Size of the chain file header.
pub const FILE_HEADER_LEN: usize = 48;
/// Largest block record (the reference frame limit).
pub const MAX_RECORD_LEN: u32 = 16 * 1024 * 1024;
const RECORD_HEADER_LEN: usize = 12;

/// Why the chain could not be opened or extended.
#[derive(Debug, Error)]
pub enum ChainError {
    /// Reading or writing a file failed.
    #[error("{action} {path}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The genesis signer key could not be loaded or created.
    #[error("genesis signer key")]
    Key(#[from] KeyError),
    /// The genesis parameters are invalid.
    #[error("cannot build the genesis block")]
    Genesis(#[from] ConsensusError),
    /// The chain file's header is not ours.
    #[error("{path} is not a devnet chain file: {reason}; move it away to start a new chain")]
    BadFile {
        /// The chain file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The chain file belongs to another network.
    #[error(
        "{path} holds a chain of another network (genesis challenge {found}, expected H({network_id:?})); use another data dir"
    )]
    OtherNetwork {
        /// The chain file.
        path: PathBuf,
        /// The configured network id.
        network_id: String,
        /// The stored genesis challenge, hex.
        found: String,
    },
}

impl ChainError {
    fn io(action: &'static str, path: &Path, source: io::Error) -> Self {
        ChainError::Io {
            action,
            path: path.to_path_buf(),
            source,
        }
    }
}

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

/// The append side of `chain.dat`.
#[derive(Debug)]
pub struct ChainStore {
    file: File,
    path: PathBuf,
    len: u64,
}

impl ChainStore {
    /// Appends `block` and fsyncs. On failure the file is cut back to its previous length,
    /// so a failed append never leaves a partial record behind a later one.
    pub fn append(&mut self, block: &Block) -> Result<(), ChainError> {
        let record = encode_record(&block.encode());
        let result = self
            .file
            .seek(SeekFrom::Start(self.len))
            .and_then(|_| self.file.write_all(&record))
            .and_then(|()| self.file.sync_data());
        match result {
            Ok(()) => {
                self.len += record.len() as u64;
                Ok(())
            }
            Err(e) => {
                let _ = self.file.set_len(self.len);
                Err(ChainError::io("appending a block to", &self.path, e))
            }
        }
    }

    /// The chain file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// What [`open`] found in the data dir.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenReport {
    /// A new chain (and genesis key) was created.
    pub created: bool,
    /// Blocks after genesis replayed from the file.
    pub replayed: u64,
    /// A tail that was cut off: its offset, its length and why.
    pub truncated: Option<Truncation>,
    /// The stored difficulty rule differs from the configured one (the stored one wins).
    pub adjustment_differs: bool,
    /// Seconds the tip's timestamp is ahead of the clock `open` was given, when it is ahead
    /// by more than the allowed drift (the clock has probably stepped back; the chain is
    /// kept, since its blocks were valid when they arrived).
    pub tip_ahead_of_clock_secs: Option<u64>,
}

/// A cut-off tail of the chain file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Truncation {
    /// Offset of the first dropped byte.
    pub offset: u64,
    /// Bytes dropped.
    pub dropped: u64,
    /// Why the record at `offset` was not trusted.
    pub reason: String,
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

/// Opens (or creates) the chain in `data_dir`: replays and re-validates every stored block,
/// cutting off a bad tail. `now_unix` is the node's clock.
pub fn open(
    data_dir: &Path,
    params: &GenesisParams,
    now_unix: u64,
) -> Result<(Chain, ChainStore, OpenReport), ChainError> {
    std::fs::create_dir_all(data_dir)
        .map_err(|e| ChainError::io("creating the data dir", data_dir, e))?;
    let path = data_dir.join(CHAIN_FILE);
    let created = match std::fs::symlink_metadata(&path) {
        Ok(_) => false,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            create_chain_file(data_dir, &path, params, now_unix)?;
            true
        }
        Err(e) => return Err(ChainError::io("reading", &path, e)),
    };
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|e| ChainError::io("opening", &path, e))?;
    let file_len = file
        .metadata()
        .map_err(|e| ChainError::io("reading", &path, e))?
        .len();
    let mut reader = BufReader::new(&mut file);
    let mut header = [0u8; FILE_HEADER_LEN];
    reader.read_exact(&mut header).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => ChainError::BadFile {
            path: path.clone(),
            reason: format!("{file_len} bytes is shorter than the {FILE_HEADER_LEN}-byte header"),
        },
        _ => ChainError::io("reading", &path, e),
    })?;
    let adjustment = decode_file_header(&header).map_err(|reason| ChainError::BadFile {
        path: path.clone(),
        reason,
    })?;
    let bad = |reason: String| ChainError::BadFile {
        path: path.clone(),
        reason,
    };
    // The genesis record must be intact: a new file is written atomically.
    let genesis = match read_record(&mut reader) {
        Ok(Some(bytes)) => Block::decode(&bytes)
            .map_err(|e| bad(format!("genesis record does not decode: {e}")))?,
        Ok(None) => return Err(bad("the genesis record is missing".into())),
        Err(RecordError::Io(e)) => return Err(ChainError::io("reading", &path, e)),
        Err(e) => return Err(bad(format!("genesis record: {e}"))),
    };
    if genesis.header.challenge != genesis_challenge(&params.network_id) {
        return Err(ChainError::OtherNetwork {
            path: path.clone(),
            network_id: params.network_id.clone(),
            found: to_hex(&genesis.header.challenge),
        });
    }
    let genesis_config = GenesisConfig {
        timestamp_unix: genesis.header.timestamp,
        initial_difficulty: genesis.header.difficulty,
        ..GenesisConfig::custom(params.network_id.clone(), genesis.header.timestamp)
    };
    validate_genesis_block(&genesis, &genesis_config)
        .map_err(|e| bad(format!("genesis block is invalid: {e}")))?;
    let mut offset = (FILE_HEADER_LEN + RECORD_HEADER_LEN + genesis.encoded_len()) as u64;
    let mut chain = Chain::new(genesis, adjustment)?;
    let mut replayed = 0;
    let mut truncated = None;
    loop {
        let reason = match read_record(&mut reader) {
            Ok(None) => break,
            Ok(Some(bytes)) => match Block::decode(&bytes) {
                Ok(block) => match chain.check_replayed(&block) {
                    Ok(()) => {
                        offset += (RECORD_HEADER_LEN + bytes.len()) as u64;
                        chain.push(block);
                        replayed += 1;
                        continue;
                    }
                    Err(e) => format!(
                        "block at height {} is invalid: {e}",
                        chain.height().saturating_add(1)
                    ),
                },
                Err(e) => format!("record does not decode as a block: {e}"),
            },
            Err(RecordError::Io(e)) => return Err(ChainError::io("reading", &path, e)),
            Err(e) => e.to_string(),
        };
        truncated = Some(Truncation {
            offset,
            dropped: file_len.saturating_sub(offset),
            reason,
        });
        break;
    }
    drop(reader);
    if let Some(t) = &truncated {
        file.set_len(t.offset)
            .and_then(|()| file.sync_all())
            .map_err(|e| ChainError::io("truncating", &path, e))?;
    }
    let ahead = chain.tip().header.timestamp.saturating_sub(now_unix);
    let report = OpenReport {
        created,
        replayed,
        truncated,
        adjustment_differs: adjustment != params.adjustment,
        tip_ahead_of_clock_secs: (ahead > MAX_FUTURE_DRIFT_SECS).then_some(ahead),
    };
    Ok((
        chain,
        ChainStore {
            file,
            path,
            len: offset,
        },
        report,
    ))
}

/// Writes a new chain file holding the header and a freshly signed genesis block.
fn create_chain_file(
    data_dir: &Path,
    path: &Path,
    params: &GenesisParams,
    now_unix: u64,
) -> Result<(), ChainError> {
    let key = MinerKey::load_or_create(&data_dir.join(GENESIS_KEY_FILE))?;
    let config = GenesisConfig {
        initial_difficulty: params.initial_difficulty,
        epoch_duration_secs: params.epoch_duration_secs,
        target_block_time_secs: params.adjustment.target_block_time_secs,
        ..GenesisConfig::custom(params.network_id.clone(), now_unix)
    };
    let genesis = config.build_genesis_block(&key)?;
    let mut bytes = encode_file_header(&params.adjustment).to_vec();
    bytes.extend_from_slice(&encode_record(&genesis.encode()));
    // The caller holds the data-dir lock, so a fixed temporary name cannot collide.
    let tmp = data_dir.join(format!("{CHAIN_FILE}.new"));
    let io = |e| ChainError::io("creating", path, e);
    let mut file = File::create(&tmp).map_err(io)?;
    file.write_all(&bytes).map_err(io)?;
    file.sync_all().map_err(io)?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(io)?;
    File::open(data_dir)
        .and_then(|d| d.sync_all())
        .map_err(io)?;
    Ok(())
}

fn encode_file_header(a: &DifficultyAdjustmentConfig) -> [u8; FILE_HEADER_LEN] {
    let mut out = [0u8; FILE_HEADER_LEN];
    out[..8].copy_from_slice(MAGIC);
    for (i, v) in [
        a.target_block_time_secs,
        a.adjustment_interval,
        a.dampening_factor,
        a.min_difficulty,
        a.max_difficulty,
    ]
    .into_iter()
    .enumerate()
    {
        out[8 + 8 * i..16 + 8 * i].copy_from_slice(&v.to_le_bytes());
    }
    out
}

fn decode_file_header(h: &[u8; FILE_HEADER_LEN]) -> Result<DifficultyAdjustmentConfig, String> {
    if &h[..8] != MAGIC {
        return Err(format!("magic {:?} is not {MAGIC:?}", &h[..8]));
    }
    let field = |i: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&h[8 + 8 * i..16 + 8 * i]);
        u64::from_le_bytes(b)
    };
    let config = DifficultyAdjustmentConfig {
        target_block_time_secs: field(0),
        adjustment_interval: field(1),
        dampening_factor: field(2),
        min_difficulty: field(3),
        max_difficulty: field(4),
    };
    DifficultyAdjuster::new(config).map_err(|e| format!("stored difficulty rule: {e}"))?;
    Ok(config)
}

fn encode_record(block: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(RECORD_HEADER_LEN + block.len());
    out.extend_from_slice(&u32::try_from(block.len()).unwrap_or(u32::MAX).to_le_bytes());
    out.extend_from_slice(&sha256(block)[..8]);
    out.extend_from_slice(block);
    out
}

/// Why a record was not read.
#[derive(Debug, Error)]
enum RecordError {
    #[error("torn record: the file ends inside a record")]
    Torn,
    #[error("record length {0} is outside 1..={MAX_RECORD_LEN}")]
    BadLength(u32),
    #[error("record checksum mismatch")]
    Checksum,
    #[error(transparent)]
    Io(io::Error),
}

/// Reads one record: `Ok(None)` at a clean end of file.
fn read_record(r: &mut impl Read) -> Result<Option<Vec<u8>>, RecordError> {
    let mut head = [0u8; RECORD_HEADER_LEN];
    let got = read_full(r, &mut head)?;
    if got == 0 {
        return Ok(None);
    }
    if got < RECORD_HEADER_LEN {
        return Err(RecordError::Torn);
    }
    let mut len = [0u8; 4];
    len.copy_from_slice(&head[..4]);
    let len = u32::from_le_bytes(len);
    if len == 0 || len > MAX_RECORD_LEN {
        return Err(RecordError::BadLength(len));
    }
    // Read in bounded steps, so a lying length on a short file allocates only what exists.
    let mut bytes = Vec::new();
    let got = r
        .take(u64::from(len))
        .read_to_end(&mut bytes)
        .map_err(RecordError::Io)?;
    if got < len as usize {
        return Err(RecordError::Torn);
    }
    if sha256(&bytes)[..8] != head[4..] {
        return Err(RecordError::Checksum);
    }
    Ok(Some(bytes))
}

/// Reads until `buf` is full or the end of the file; returns the bytes read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> Result<usize, RecordError> {
    let mut at = 0;
    while at < buf.len() {
        match r.read(&mut buf[at..]) {
            Ok(0) => break,
            Ok(n) => at += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(RecordError::Io(e)),
        }
    }
    Ok(at)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::epoch::Epoch;
    use crate::now_unix_ms;
    use crate::test_support::TestMiner;
    use spacetime::consensus::DEVNET_NETWORK_ID;

    fn params(adjustment_interval: u64) -> GenesisParams {
        GenesisParams {
            network_id: DEVNET_NETWORK_ID.into(),
            initial_difficulty: 1,
            epoch_duration_secs: 1,
            adjustment: DifficultyAdjustmentConfig {
                adjustment_interval,
                ..DifficultyAdjustmentConfig::default()
            },
        }
    }

    /// Mines the next block of `chain` in epoch `epoch` and stores it.
    fn mine(chain: &mut Chain, store: &mut ChainStore, miner: &TestMiner, epoch: u64) -> Block {
        let e = Epoch::begin(
            epoch,
            &chain.tip().header,
            chain.next_difficulty(),
            now_unix_ms(),
            Duration::from_secs(1),
        );
        let block = miner.block(&e.announcement(), vec![]);
        chain.check_replayed(&block).unwrap();
        store.append(&block).unwrap();
        chain.push(block.clone());
        block
    }

    fn reopen(dir: &Path) -> (Chain, OpenReport) {
        let (chain, _store, report) = open(dir, &params(100), now_unix_ms() / 1000).unwrap();
        (chain, report)
    }

    #[test]
    fn a_chain_is_created_replayed_and_bad_tails_are_cut_off() {
        let dir = tempfile::tempdir().unwrap();
        let now = now_unix_ms() / 1000;
        let (mut chain, mut store, report) = open(dir.path(), &params(100), now).unwrap();
        assert!(report.created && report.truncated.is_none());
        assert_eq!(chain.height(), 0);
        assert!(dir.path().join(GENESIS_KEY_FILE).exists());
        let genesis = chain.genesis().clone();
        let miner = TestMiner::new(dir.path(), 1);
        let b1 = mine(&mut chain, &mut store, &miner, 1);
        // Epoch 2 was empty.
        let b2 = mine(&mut chain, &mut store, &miner, 3);
        let path = dir.path().join(CHAIN_FILE);
        let good_len = std::fs::metadata(&path).unwrap().len();

        let (replayed, report) = reopen(dir.path());
        assert!(!report.created);
        assert_eq!((report.replayed, report.truncated), (2, None));
        assert_eq!(replayed.tip(), &b2);
        assert_eq!(replayed.genesis(), &genesis);
        assert_eq!(replayed.block_by_hash(&b1.hash()), Some(&b1));

        // A torn record (the file ends inside it) is cut off.
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&[200, 0, 0, 0, 1, 2, 3]).unwrap();
        let (replayed, report) = reopen(dir.path());
        let t = report.truncated.unwrap();
        assert_eq!((t.offset, t.dropped), (good_len, 7));
        assert!(t.reason.contains("torn"), "{}", t.reason);
        assert_eq!(replayed.tip(), &b2);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), good_len);

        // A flipped byte in the last record fails its checksum: that block goes.
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let (replayed, report) = reopen(dir.path());
        assert!(report.truncated.unwrap().reason.contains("checksum"));
        assert_eq!(replayed.tip(), &b1);

        // A well-formed record that does not extend the chain is not trusted either.
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&encode_record(&b1.encode())).unwrap();
        let (replayed, report) = reopen(dir.path());
        let reason = report.truncated.unwrap().reason;
        assert!(reason.contains("height 2 is invalid"), "{reason}");
        assert_eq!(replayed.tip(), &b1);

        // Nor is a record length beyond the limit.
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&[0xFF; 12]).unwrap();
        let (_, report) = reopen(dir.path());
        assert!(report.truncated.unwrap().reason.contains("record length"));
        let (replayed, report) = reopen(dir.path());
        assert_eq!((replayed.tip(), report.truncated), (&b1, None));
    }

    #[test]
    fn a_clock_that_stepped_back_keeps_the_whole_chain() {
        let dir = tempfile::tempdir().unwrap();
        let now = now_unix_ms() / 1000;
        let (mut chain, mut store, _) = open(dir.path(), &params(100), now).unwrap();
        let miner = TestMiner::new(dir.path(), 2);
        mine(&mut chain, &mut store, &miner, 1);
        let b2 = mine(&mut chain, &mut store, &miner, 2);
        drop(store);
        let path = dir.path().join(CHAIN_FILE);
        let len = std::fs::metadata(&path).unwrap().len();

        // The clock is now an hour behind the stored blocks: nothing is cut off.
        let (replayed, _, report) = open(dir.path(), &params(100), now - 3600).unwrap();
        assert_eq!((report.replayed, report.truncated), (2, None));
        assert_eq!(replayed.tip(), &b2);
        assert!(report.tip_ahead_of_clock_secs.unwrap() >= 3600);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), len);

        // With the clock back in step the report is quiet, and the chain is intact.
        let (replayed, report) = reopen(dir.path());
        assert_eq!((report.replayed, report.tip_ahead_of_clock_secs), (2, None));
        assert_eq!(replayed.tip(), &b2);
    }

    #[test]
    fn a_bad_header_or_another_network_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let now = now_unix_ms() / 1000;
        drop(open(dir.path(), &params(100), now).unwrap());
        let other = GenesisParams {
            network_id: "other-net".into(),
            ..params(100)
        };
        assert!(matches!(
            open(dir.path(), &other, now),
            Err(ChainError::OtherNetwork { .. })
        ));
        // The stored difficulty rule wins over the configured one, and says so.
        let (_, _, report) = open(dir.path(), &params(7), now).unwrap();
        assert!(report.adjustment_differs);
        assert_eq!(report.replayed, 0);
        let path = dir.path().join(CHAIN_FILE);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[0] = b'X';
        std::fs::write(&path, &bytes).unwrap();
        let err = open(dir.path(), &params(100), now).unwrap_err();
        assert!(err.to_string().contains("magic"), "{err}");
        bytes[0] = b'S';
        std::fs::write(&path, &bytes[..FILE_HEADER_LEN + 5]).unwrap();
        let err = open(dir.path(), &params(100), now).unwrap_err();
        assert!(err.to_string().contains("genesis record"), "{err}");
    }

    #[test]
    fn random_tails_never_panic_and_are_never_trusted() {
        use rand::{Rng, SeedableRng};
        let dir = tempfile::tempdir().unwrap();
        let now = now_unix_ms() / 1000;
        let (genesis, _, _) = open(dir.path(), &params(100), now).unwrap();
        let path = dir.path().join(CHAIN_FILE);
        let clean = std::fs::read(&path).unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for round in 0..150 {
            let mut bytes = clean.clone();
            let n = rng.gen_range(1..600);
            let mut tail: Vec<u8> = (0..n).map(|_| rng.gen()).collect();
            // Half the tails carry a plausible length, so the body and checksum paths run.
            if round % 2 == 0 && tail.len() >= 4 {
                let len = rng.gen_range(1..700u32);
                tail[..4].copy_from_slice(&len.to_le_bytes());
            }
            // Some carry a correct checksum over random bytes, so the decoder runs.
            if round % 3 == 0 {
                tail = encode_record(&tail);
            }
            bytes.extend_from_slice(&tail);
            std::fs::write(&path, &bytes).unwrap();
            let (chain, _, report) = open(dir.path(), &params(100), now).unwrap();
            assert_eq!(chain.tip(), genesis.tip(), "round {round}");
            let t = report.truncated.expect("a random tail is cut off");
            assert_eq!(t.offset, clean.len() as u64);
            assert_eq!(std::fs::metadata(&path).unwrap().len(), clean.len() as u64);
        }
    }

    fn synthetic(height: u64, timestamp: u64, difficulty: u64) -> Block {
        let miner = MinerKey::from_secret_bytes(&[1; 32]);
        let mut genesis = GenesisConfig {
            initial_difficulty: difficulty,
            ..GenesisConfig::custom(DEVNET_NETWORK_ID, timestamp)
        }
        .build_genesis_block(&miner)
        .unwrap();
        genesis.header.height = height;
        genesis
    }

    #[test]
    fn difficulty_adjusts_only_at_the_interval_by_the_reference_rule() {
        let adjustment = DifficultyAdjustmentConfig {
            target_block_time_secs: 10,
            adjustment_interval: 2,
            ..DifficultyAdjustmentConfig::default()
        };
        let mut chain = Chain::new(synthetic(0, 1000, 100), adjustment).unwrap();
        assert_eq!(chain.next_difficulty(), 100);
        chain.push(synthetic(1, 1001, 100));
        assert_eq!(
            chain.next_difficulty(),
            100,
            "height 1 is not an adjustment point"
        );
        chain.push(synthetic(2, 1002, 100));
        // Two blocks in 2 s instead of 20 s: raw 1000, dampened 100 + 900/4 = 325.
        let expected = DifficultyAdjuster::new(adjustment)
            .unwrap()
            .next_difficulty(100, 1002, 1000)
            .unwrap();
        assert_eq!(expected, 325);
        assert_eq!(chain.next_difficulty(), 325);
        chain.push(synthetic(3, 1003, 325));
        assert_eq!(chain.next_difficulty(), 325);
        // Slow blocks (40 s for a 20 s window) lower it; a clock that runs backwards
        // counts as the shortest window instead of failing.
        chain.push(synthetic(4, 1042, 325));
        assert!(chain.next_difficulty() < 325);
        chain.push(synthetic(5, 1043, 300));
        chain.push(synthetic(6, 900, 300));
        assert!(chain.next_difficulty() > 300);
    }

    #[test]
    fn headers_follow_the_locator_and_stop() {
        let adjustment = DifficultyAdjustmentConfig::default();
        let mut chain = Chain::new(synthetic(0, 1000, 1), adjustment).unwrap();
        let blocks: Vec<Block> = (1..=4).map(|h| synthetic(h, 1000 + h, 1)).collect();
        for b in &blocks {
            chain.push(b.clone());
        }
        let all = chain.headers_after(&[0; 32], None, 100).unwrap();
        assert_eq!(all.len(), 5);
        let after1 = chain.headers_after(&blocks[0].hash(), None, 2).unwrap();
        assert_eq!(after1, vec![blocks[1].header, blocks[2].header]);
        let stop = chain
            .headers_after(&blocks[0].hash(), Some(&blocks[1].hash()), 10)
            .unwrap();
        assert_eq!(stop, vec![blocks[1].header]);
        assert!(chain.headers_after(&[7; 32], None, 10).is_none());
        // A stop block before the locator, or unknown, does not stop the walk.
        for stop in [blocks[0].hash(), [9; 32]] {
            let after2 = chain
                .headers_after(&blocks[1].hash(), Some(&stop), 10)
                .unwrap();
            assert_eq!(after2, vec![blocks[2].header, blocks[3].header]);
        }
        // The stop block itself is the last header, even with room for more.
        let to3 = chain
            .headers_after(&[0; 32], Some(&blocks[2].hash()), 10)
            .unwrap();
        assert_eq!(to3.len(), 4);
        assert_eq!(to3[3], blocks[2].header);
        assert_eq!(
            chain.headers_after(&blocks[3].hash(), None, 10).unwrap(),
            vec![]
        );
    }
}
