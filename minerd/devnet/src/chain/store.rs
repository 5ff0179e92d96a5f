//! The chain file: created with the genesis block, appended to and fsynced before a block
//! is announced, replayed and re-validated at start.
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
//! absent; each later block is appended and fsynced before it is announced. At start the
//! records up to a matching verified checkpoint ([`super::checkpoint`]) are decoded and
//! checked for linkage and tx root only; every later record (every record, when the
//! checkpoint is missing or does not match) is decoded and re-validated against the chain
//! before it (signature, parent, height, difficulty, epoch and challenge, transactions, tx
//! root, strict proof); the first torn, corrupt or invalid record and everything after it is
//! cut off with a warning, never trusted. The timestamp rules are not re-applied: they judge a block against the clock
//! and the epoch at the moment it arrived, and a block was appended only after passing
//! them, so a node whose clock has stepped back keeps its whole history (the report says
//! how far the tip is ahead of the clock). A file whose header or genesis record is bad is
//! refused (the node will not silently replace a chain).

use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use spacetime::block::Block;
use spacetime::consensus::{
    genesis_challenge, ConsensusError, DifficultyAdjuster, DifficultyAdjustmentConfig,
    GenesisConfig,
};
use spacetime::hash::{sha256, to_hex, Hash32};
use spacetime::keys::{KeyError, MinerKey};
use spacetime::validate::{validate_genesis_block, MAX_FUTURE_DRIFT_SECS};
use thiserror::Error;

use super::checkpoint::{fold_digest, Checkpoint, CHECKPOINT_EVERY};
use super::{BlockHashes, Chain, GenesisParams, RecordLocation};

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
pub(super) const RECORD_HEADER_LEN: usize = 12;

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

/// The append side of `chain.dat`.
#[derive(Debug)]
pub struct ChainStore {
    file: File,
    path: PathBuf,
    len: u64,
    data_dir: PathBuf,
    /// The newest stored block as a checkpoint (written every [`CHECKPOINT_EVERY`] blocks).
    tip: Checkpoint,
}

impl ChainStore {
    /// Appends `block` and fsyncs; returns where its bytes are. On failure the file is cut
    /// back to its previous length, so a failed append never leaves a partial record behind
    /// a later one.
    /// Every [`CHECKPOINT_EVERY`] heights it also rewrites the verified checkpoint (a block
    /// is appended only after passing every rule); a failure there is only logged.
    pub fn append(&mut self, block: &Block) -> Result<RecordLocation, ChainError> {
        let bytes = block.encode();
        let record = encode_record(&bytes);
        let at = RecordLocation {
            offset: self.len + RECORD_HEADER_LEN as u64,
            len: (record.len() - RECORD_HEADER_LEN) as u32,
        };
        let result = self
            .file
            .seek(SeekFrom::Start(self.len))
            .and_then(|_| self.file.write_all(&record))
            .and_then(|()| self.file.sync_data());
        match result {
            Ok(()) => {
                self.len += record.len() as u64;
                self.tip = Checkpoint {
                    height: block.header.height,
                    hash: block.hash(),
                    digest: fold_digest(&self.tip.digest, &sha256(&bytes)),
                };
                if self.tip.height.is_multiple_of(CHECKPOINT_EVERY) {
                    if let Err(e) = self.write_checkpoint() {
                        tracing::warn!(error = %e, height = self.tip.height, "cannot write the verified checkpoint; the next start validates more of the chain");
                    }
                }
                Ok(at)
            }
            Err(e) => {
                let _ = self.file.set_len(self.len);
                Err(ChainError::io("appending a block to", &self.path, e))
            }
        }
    }

    /// Records the newest stored block as the verified checkpoint (atomically).
    pub fn write_checkpoint(&mut self) -> io::Result<()> {
        self.tip.store(&self.data_dir)
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
    /// Of those, the blocks given every check (signatures and proofs included).
    pub verified: u64,
    /// Of those, the blocks accepted on the verified checkpoint with the cheap checks only.
    pub trusted: u64,
    /// Why a checkpoint file was not trusted (the whole file was validated instead).
    pub checkpoint_ignored: Option<String>,
    /// Why the checkpoint could not be written after the replay.
    pub checkpoint_error: Option<String>,
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

/// Opens (or creates) the chain in `data_dir`: replays the stored blocks, cutting off a bad
/// tail. The blocks up to a matching verified checkpoint get the cheap checks only, every
/// later one (or every one, without a matching checkpoint) is re-validated; the tip is then
/// recorded as the checkpoint. `now_unix` is the node's clock.
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
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|e| ChainError::io("opening", &path, e))?;
    let file_len = file
        .metadata()
        .map_err(|e| ChainError::io("reading", &path, e))?
        .len();
    let mut reader = BufReader::new(&file);
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
        Ok(Some((bytes, _))) => Block::decode(&bytes)
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
    let genesis_at = RecordLocation {
        offset: (FILE_HEADER_LEN + RECORD_HEADER_LEN) as u64,
        len: genesis.encoded_len() as u32,
    };
    drop(reader);
    let start = Start {
        file: &file,
        path: &path,
        genesis: &genesis,
        adjustment,
        genesis_at,
    };
    let (loaded, mut checkpoint_ignored) = match Checkpoint::load(data_dir) {
        Ok(c) => (c, None),
        Err(reason) => (None, Some(reason)),
    };
    let mut pass = None;
    if let Some(c) = &loaded {
        match replay(&start, Some(c))? {
            Ok(r) => pass = Some(r),
            Err(reason) => checkpoint_ignored = Some(reason),
        }
    }
    let trusted = match (&pass, &loaded) {
        (Some(_), Some(c)) => c.height,
        _ => 0,
    };
    let r = match pass {
        Some(r) => r,
        None => replay(&start, None)?.map_err(bad)?,
    };
    if let Some(t) = &r.truncated {
        file.set_len(t.offset)
            .and_then(|()| file.sync_all())
            .map_err(|e| ChainError::io("truncating", &path, e))?;
    }
    let chain = r.chain;
    let ahead = chain.tip().header.timestamp.saturating_sub(now_unix);
    let tip = Checkpoint {
        height: chain.height(),
        hash: chain.tip().hash(),
        digest: r.digest,
    };
    let mut store = ChainStore {
        file,
        path,
        len: r.offset,
        data_dir: data_dir.to_path_buf(),
        tip,
    };
    // The whole chain is validated now: record it, so the next start trusts it.
    let checkpoint_error = if loaded == Some(tip) {
        None
    } else {
        store.write_checkpoint().err().map(|e| e.to_string())
    };
    let report = OpenReport {
        created,
        replayed: r.replayed,
        verified: r.verified,
        trusted,
        checkpoint_ignored,
        checkpoint_error,
        truncated: r.truncated,
        adjustment_differs: adjustment != params.adjustment,
        tip_ahead_of_clock_secs: (ahead > MAX_FUTURE_DRIFT_SECS).then_some(ahead),
    };
    Ok((chain, store, report))
}

/// What every replay pass starts from: the chain file and its checked genesis block.
struct Start<'a> {
    file: &'a File,
    path: &'a Path,
    genesis: &'a Block,
    adjustment: DifficultyAdjustmentConfig,
    genesis_at: RecordLocation,
}

/// The chain one replay pass rebuilt.
struct Replayed {
    chain: Chain,
    /// End of the last good record.
    offset: u64,
    replayed: u64,
    verified: u64,
    digest: Hash32,
    truncated: Option<Truncation>,
}

/// Replays the records after genesis. With `trusted`, the blocks up to its height get only
/// [`Chain::check_linked`] and the block at its height must match its hash and digest;
/// `Ok(Err(reason))` says the checkpoint does not match the file (nothing was changed).
/// Without it every block gets [`Chain::check_replayed`] and a bad tail is reported in
/// `truncated` (for the caller to cut off).
fn replay(
    s: &Start<'_>,
    trusted: Option<&Checkpoint>,
) -> Result<Result<Replayed, String>, ChainError> {
    let io_err = |action, e| ChainError::io(action, s.path, e);
    let mut chain = Chain::new(s.genesis.clone(), s.adjustment)?;
    chain.attach_file(
        s.file.try_clone().map_err(|e| io_err("opening", e))?,
        s.genesis_at,
    );
    let file_len = s.file.metadata().map_err(|e| io_err("reading", e))?.len();
    let mut offset = s.genesis_at.offset + u64::from(s.genesis_at.len);
    let mut reader = BufReader::new(s.file);
    reader
        .seek(SeekFrom::Start(offset))
        .map_err(|e| io_err("reading", e))?;
    let mut digest = [0u8; 32];
    if let Some(c) = trusted.filter(|c| c.height == 0) {
        if c.hash != s.genesis.hash() || c.digest != digest {
            return Ok(Err("the checkpoint does not name this genesis block".into()));
        }
    }
    let (mut replayed, mut verified) = (0, 0);
    let mut truncated = None;
    loop {
        let height = chain.height().saturating_add(1);
        let below = trusted.is_some_and(|c| height <= c.height);
        let reason = match read_record(&mut reader) {
            Ok(None) => break,
            Ok(Some((bytes, sum))) => match Block::decode(&bytes) {
                Ok(block) => match if below {
                    chain.check_linked(&block)
                } else {
                    chain.check_replayed(&block)
                } {
                    Ok(()) => {
                        let hashes = BlockHashes::of(&block);
                        digest = fold_digest(&digest, &sum);
                        if let Some(c) = trusted.filter(|c| c.height == height) {
                            if hashes.block != c.hash || digest != c.digest {
                                return Ok(Err(format!(
                                    "the block at the checkpoint height {height} is not the checkpointed one"
                                )));
                            }
                        }
                        let at = RecordLocation {
                            offset: offset + RECORD_HEADER_LEN as u64,
                            len: bytes.len() as u32,
                        };
                        offset = at.offset + u64::from(at.len);
                        chain.push_stored(block, &hashes, Some(at));
                        replayed += 1;
                        verified += u64::from(!below);
                        continue;
                    }
                    Err(e) => format!("block at height {height} is invalid: {e}"),
                },
                Err(e) => format!("record does not decode as a block: {e}"),
            },
            Err(RecordError::Io(e)) => return Err(io_err("reading", e)),
            Err(e) => e.to_string(),
        };
        if below {
            return Ok(Err(format!("below the checkpoint height: {reason}")));
        }
        truncated = Some(Truncation {
            offset,
            dropped: file_len.saturating_sub(offset),
            reason,
        });
        break;
    }
    if let Some(c) = trusted.filter(|c| c.height > chain.height()) {
        return Ok(Err(format!(
            "the checkpoint height {} is past the file's last block {}",
            c.height,
            chain.height()
        )));
    }
    Ok(Ok(Replayed {
        chain,
        offset,
        replayed,
        verified,
        digest,
        truncated,
    }))
}

/// Writes a new chain file holding the header and a freshly signed genesis block.
pub(super) fn create_chain_file(
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
    spacetime::atomic_file::write_atomic(path, &bytes)
        .map_err(|e| ChainError::io("creating", path, e))
}

pub(super) fn encode_file_header(a: &DifficultyAdjustmentConfig) -> [u8; FILE_HEADER_LEN] {
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

pub(super) fn decode_file_header(
    h: &[u8; FILE_HEADER_LEN],
) -> Result<DifficultyAdjustmentConfig, String> {
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

pub(super) fn encode_record(block: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(RECORD_HEADER_LEN + block.len());
    out.extend_from_slice(&u32::try_from(block.len()).unwrap_or(u32::MAX).to_le_bytes());
    out.extend_from_slice(&sha256(block)[..8]);
    out.extend_from_slice(block);
    out
}

/// Why a record was not read.
#[derive(Debug, Error)]
pub(super) enum RecordError {
    #[error("torn record: the file ends inside a record")]
    Torn,
    #[error("record length {0} is outside 1..={MAX_RECORD_LEN}")]
    BadLength(u32),
    #[error("record checksum mismatch")]
    Checksum,
    #[error(transparent)]
    Io(io::Error),
}

/// Reads one record and the SHA-256 of its block bytes: `Ok(None)` at a clean end of file.
pub(super) fn read_record(r: &mut impl Read) -> Result<Option<(Vec<u8>, Hash32)>, RecordError> {
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
    let sum = sha256(&bytes);
    if sum[..8] != head[4..] {
        return Err(RecordError::Checksum);
    }
    Ok(Some((bytes, sum)))
}

/// Reads until `buf` is full or the end of the file; returns the bytes read.
pub(super) fn read_full(r: &mut impl Read, buf: &mut [u8]) -> Result<usize, RecordError> {
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
