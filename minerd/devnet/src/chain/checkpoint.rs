//! The verified checkpoint (`chain.verified`, decisions R8): the height, header hash and
//! chain digest of the newest block this node has fully validated, so a restart can accept
//! the blocks up to it with the cheap checks only.
//!
//! Layout (88 bytes, little-endian):
//!
//! | off | size | field        | rule                                                |
//! |----:|-----:|--------------|-----------------------------------------------------|
//! |   0 |    8 | magic        | `STDEVCK1`                                          |
//! |   8 |    8 | height       | of the checkpointed block                           |
//! |  16 |   32 | header hash  | of the block at `height`                            |
//! |  48 |   32 | chain digest | [`fold_digest`] over every block after genesis      |
//! |  80 |    8 | checksum     | first 8 bytes of SHA-256 of bytes 0..80             |
//!
//! The header hash does not cover the signatures or the proof bytes; the chain digest
//! covers every byte of every stored block up to `height`, so a checkpoint that matches
//! binds the whole file prefix it vouches for. Written with the atomic writer only.

use std::io;
use std::path::Path;

use spacetime::hash::{sha256, sha256_concat, Hash32};

/// File name of the checkpoint inside the data dir.
pub const CHECKPOINT_FILE: &str = "chain.verified";
/// First bytes of a checkpoint file.
pub const CHECKPOINT_MAGIC: &[u8; 8] = b"STDEVCK1";
/// Size of a checkpoint file.
pub const CHECKPOINT_LEN: usize = 88;
/// The node rewrites the checkpoint when an appended block's height is a multiple of this
/// (and after every start): at most this many blocks get the full check again at the next
/// start.
pub const CHECKPOINT_EVERY: u64 = 64;

/// A fully validated chain prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkpoint {
    /// Height of its newest block.
    pub height: u64,
    /// Header hash of that block.
    pub hash: Hash32,
    /// Chain digest up to that block.
    pub digest: Hash32,
}

/// The chain digest after a block whose stored bytes hash to `block_sha256`, given the
/// digest before it (all zeros for the genesis block alone).
pub fn fold_digest(digest: &Hash32, block_sha256: &Hash32) -> Hash32 {
    sha256_concat(&[digest, block_sha256])
}

impl Checkpoint {
    /// Encodes the checkpoint file.
    pub fn encode(&self) -> [u8; CHECKPOINT_LEN] {
        let mut out = [0u8; CHECKPOINT_LEN];
        out[..8].copy_from_slice(CHECKPOINT_MAGIC);
        out[8..16].copy_from_slice(&self.height.to_le_bytes());
        out[16..48].copy_from_slice(&self.hash);
        out[48..80].copy_from_slice(&self.digest);
        let sum = sha256(&out[..80]);
        out[80..].copy_from_slice(&sum[..8]);
        out
    }

    /// Decodes a checkpoint file; the error says what is wrong with it.
    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        if bytes.len() != CHECKPOINT_LEN {
            return Err(format!("{} bytes, expected {CHECKPOINT_LEN}", bytes.len()));
        }
        if &bytes[..8] != CHECKPOINT_MAGIC {
            return Err(format!(
                "magic {:?} is not {CHECKPOINT_MAGIC:?}",
                &bytes[..8]
            ));
        }
        if sha256(&bytes[..80])[..8] != bytes[80..] {
            return Err("checksum mismatch".into());
        }
        let mut height = [0u8; 8];
        height.copy_from_slice(&bytes[8..16]);
        let mut hash = [0u8; 32];
        hash.copy_from_slice(&bytes[16..48]);
        let mut digest = [0u8; 32];
        digest.copy_from_slice(&bytes[48..80]);
        Ok(Checkpoint {
            height: u64::from_le_bytes(height),
            hash,
            digest,
        })
    }

    /// Reads the checkpoint in `data_dir`: `Ok(None)` when there is none, `Err` (a reason)
    /// when it cannot be read or does not decode.
    pub fn load(data_dir: &Path) -> Result<Option<Self>, String> {
        let path = data_dir.join(CHECKPOINT_FILE);
        match std::fs::read(&path) {
            Ok(bytes) => Self::decode(&bytes).map(Some),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("cannot read {}: {e}", path.display())),
        }
    }

    /// Writes the checkpoint in `data_dir` atomically.
    pub fn store(&self, data_dir: &Path) -> io::Result<()> {
        spacetime::atomic_file::write_atomic(&data_dir.join(CHECKPOINT_FILE), &self.encode())
    }
}
