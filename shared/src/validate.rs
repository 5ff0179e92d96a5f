//! Proof and block validation: the strict proof check of decisions D2 and the block rules
//! of reference section 4.6 (in its order), with the timestamp rules of decisions D9.
//!
//! Block checks, in order:
//! 1. structure: version 1, difficulty > 0;
//! 2. timestamp: ≤ now + 120 s and ≥ epoch start − 120 s (D9);
//! 3. signature: Ed25519 over the block hash by `miner_id` (D1);
//! 4. chain: parent = tip (skipped without a tip), height = tip + 1, difficulty, epoch and
//!    challenge as expected;
//! 5. every transaction: version 1, amount > 0, sender ≠ recipient, values fit i64,
//!    signature by the sender;
//! 6. tx root;
//! 7. proof ([`verify_block_proof`]) against the header's challenge, plot root and score
//!    with target = target(header difficulty).

use thiserror::Error;

use crate::block::{tx_root, Block, BlockProof, Transaction, BLOCK_VERSION, TRANSACTION_VERSION};
use crate::consensus::{difficulty_to_target, genesis_challenge, is_below_target, score};
use crate::hash::{sha256_concat, to_hex, Hash32};
use crate::keys::public_key_of;
use crate::merkle::tree_height;
use crate::plot::{PlotHeader, FORMAT_VERSION};
use crate::wire::NewEpoch;

/// Most seconds a block timestamp may be ahead of the validating node's clock.
pub const MAX_FUTURE_DRIFT_SECS: u64 = 120;
/// Most seconds a block timestamp may be before the start of its epoch (D9).
pub const MAX_EPOCH_LAG_SECS: u64 = 120;

/// Why a block proof is invalid (decisions D2).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ProofError {
    /// The miner id is not an Ed25519 id, so no plot key can be derived from it.
    #[error("miner id tag {tag:#04x} is not 0xED (Ed25519)")]
    UnsupportedMinerId {
        /// The first byte of the miner id.
        tag: u8,
    },
    /// The claimed score is not `H(challenge ‖ leaf)`.
    #[error("claimed score {} differs from H(challenge || leaf) = {}", to_hex(.claimed), to_hex(.computed))]
    ScoreMismatch {
        /// Score carried by the header.
        claimed: Hash32,
        /// Score of the proof's leaf.
        computed: Hash32,
    },
    /// The score is not strictly below the target.
    #[error("score {} is not below target {}", to_hex(.score), to_hex(.target))]
    ScoreNotBelowTarget {
        /// The score.
        score: Hash32,
        /// The target.
        target: Hash32,
    },
    /// The plot format version in the metadata is not 1.
    #[error("plot format version {version} is not supported (expected 1)")]
    UnsupportedPlotVersion {
        /// The version carried.
        version: u8,
    },
    /// The leaf count is 0 or larger than `i64::MAX`.
    #[error("plot leaf count {leaf_count} is outside 1..=i64::MAX")]
    InvalidLeafCount {
        /// The leaf count carried.
        leaf_count: u64,
    },
    /// The leaf index is not below the leaf count.
    #[error("leaf index {index} is not below the plot's leaf count {leaf_count}")]
    IndexOutOfRange {
        /// The leaf index.
        index: u64,
        /// The plot's leaf count.
        leaf_count: u64,
    },
    /// The path does not have `⌈log₂ leaf_count⌉` levels (or siblings and bits differ).
    #[error(
        "Merkle path has {siblings} siblings and {bits} orientation bits; a plot of {leaf_count} leaves needs {expected}"
    )]
    PathLengthMismatch {
        /// `⌈log₂ leaf_count⌉`.
        expected: u32,
        /// Siblings carried.
        siblings: usize,
        /// Orientation bits carried.
        bits: usize,
        /// The plot's leaf count.
        leaf_count: u64,
    },
    /// An orientation bit disagrees with the leaf index.
    #[error("orientation bit at level {level} disagrees with leaf index {index}")]
    OrientationMismatch {
        /// The level (0 = leaf level).
        level: usize,
        /// The leaf index.
        index: u64,
    },
    /// The path does not lead to the plot root.
    #[error("Merkle path leads to {} instead of plot root {}", to_hex(.computed), to_hex(.plot_root))]
    MerkleRootMismatch {
        /// Root the path leads to.
        computed: Hash32,
        /// The expected plot root.
        plot_root: Hash32,
    },
    /// The leaf is not `H(pk ‖ plot_id ‖ i64 index)` for the miner's key.
    #[error("leaf {} at index {index} is not the miner's plot leaf {}", to_hex(.leaf), to_hex(.expected))]
    LeafNotBoundToMiner {
        /// The leaf index.
        index: u64,
        /// The leaf carried.
        leaf: Hash32,
        /// `H(pk ‖ plot_id ‖ i64 index)`.
        expected: Hash32,
    },
    /// `plot_header_hash` is not the hash of the header rebuilt from the proof.
    #[error("plot header hash {} differs from the rebuilt header's {}", to_hex(.claimed), to_hex(.rebuilt))]
    PlotHeaderHashMismatch {
        /// Hash carried in the metadata.
        claimed: Hash32,
        /// Hash of the header rebuilt from (plot_id, leaf_count, 32, height, plot_root).
        rebuilt: Hash32,
    },
}

/// Checks a block proof strictly (decisions D2): score = `H(challenge ‖ leaf)`, score below
/// `target` (when given), leaf index and path shape consistent with the leaf count, the path
/// leads to `plot_root`, the leaf is the miner's own plot leaf, and `plot_header_hash`
/// matches the header rebuilt from the proof. The miner runs this on its own proofs before
/// submitting them.
pub fn verify_block_proof(
    proof: &BlockProof,
    challenge: &Hash32,
    plot_root: &Hash32,
    claimed_score: &Hash32,
    target: Option<&Hash32>,
    miner_id: &[u8; 33],
) -> Result<(), ProofError> {
    let pk = public_key_of(miner_id).ok_or(ProofError::UnsupportedMinerId { tag: miner_id[0] })?;
    let computed = score(challenge, &proof.leaf);
    if &computed != claimed_score {
        return Err(ProofError::ScoreMismatch {
            claimed: *claimed_score,
            computed,
        });
    }
    if let Some(target) = target {
        if !is_below_target(&computed, target) {
            return Err(ProofError::ScoreNotBelowTarget {
                score: computed,
                target: *target,
            });
        }
    }
    let meta = &proof.metadata;
    if meta.version != FORMAT_VERSION {
        return Err(ProofError::UnsupportedPlotVersion {
            version: meta.version,
        });
    }
    let leaf_count = meta.leaf_count;
    if leaf_count == 0 || leaf_count > i64::MAX as u64 {
        return Err(ProofError::InvalidLeafCount { leaf_count });
    }
    let index = proof.leaf_index;
    if index >= leaf_count {
        return Err(ProofError::IndexOutOfRange { index, leaf_count });
    }
    let expected = tree_height(leaf_count);
    if proof.siblings.len() != expected as usize
        || proof.sibling_is_right.len() != expected as usize
    {
        return Err(ProofError::PathLengthMismatch {
            expected,
            siblings: proof.siblings.len(),
            bits: proof.sibling_is_right.len(),
            leaf_count,
        });
    }
    // expected ≤ 63 here, so the shift cannot overflow.
    if let Some(level) = proof
        .sibling_is_right
        .iter()
        .enumerate()
        .position(|(k, &is_right)| is_right != ((index >> k) & 1 == 0))
    {
        return Err(ProofError::OrientationMismatch { level, index });
    }
    let path = proof.to_merkle_path();
    let computed_root = path.computed_root().ok_or(ProofError::PathLengthMismatch {
        expected,
        siblings: proof.siblings.len(),
        bits: proof.sibling_is_right.len(),
        leaf_count,
    })?;
    if &computed_root != plot_root {
        return Err(ProofError::MerkleRootMismatch {
            computed: computed_root,
            plot_root: *plot_root,
        });
    }
    let expected_leaf = sha256_concat(&[&pk, &meta.plot_id, &index.to_le_bytes()]);
    if expected_leaf != proof.leaf {
        return Err(ProofError::LeafNotBoundToMiner {
            index,
            leaf: proof.leaf,
            expected: expected_leaf,
        });
    }
    let rebuilt = PlotHeader::new(meta.plot_id, leaf_count, *plot_root).hash();
    if rebuilt != meta.plot_header_hash {
        return Err(ProofError::PlotHeaderHashMismatch {
            claimed: meta.plot_header_hash,
            rebuilt,
        });
    }
    Ok(())
}

/// Why a transaction breaks the basic rules (reference section 4.6 step 5).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TransactionError {
    /// Version other than 1.
    #[error("transaction version {version} is not supported (expected 1)")]
    UnsupportedVersion {
        /// The version carried.
        version: u8,
    },
    /// Amount 0.
    #[error("transaction amount must be > 0")]
    ZeroAmount,
    /// A value that does not fit the wire's i64.
    #[error("transaction {field} {value} exceeds i64::MAX")]
    ValueOutOfRange {
        /// The field.
        field: &'static str,
        /// Its value.
        value: u64,
    },
    /// Sender and recipient are the same key.
    #[error("transaction sender and recipient are the same")]
    SenderIsRecipient,
    /// The signature is not the sender's over the tx hash.
    #[error("transaction signature is not valid for sender {}", to_hex(.sender))]
    InvalidSignature {
        /// The sender id.
        sender: [u8; 33],
    },
}

/// The basic transaction rules and the sender's signature (also the miner's mempool check,
/// decisions D7).
pub fn validate_transaction(tx: &Transaction) -> Result<(), TransactionError> {
    if tx.version != TRANSACTION_VERSION {
        return Err(TransactionError::UnsupportedVersion {
            version: tx.version,
        });
    }
    if tx.amount == 0 {
        return Err(TransactionError::ZeroAmount);
    }
    for (field, value) in [("amount", tx.amount), ("nonce", tx.nonce), ("fee", tx.fee)] {
        if value > i64::MAX as u64 {
            return Err(TransactionError::ValueOutOfRange { field, value });
        }
    }
    if tx.sender == tx.recipient {
        return Err(TransactionError::SenderIsRecipient);
    }
    if !tx.verify_signature() {
        return Err(TransactionError::InvalidSignature { sender: tx.sender });
    }
    Ok(())
}

/// What the validating node knows about its chain when a block arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainContext {
    /// Hash of the current tip (`None` before any block: the parent check is skipped).
    pub tip_hash: Option<Hash32>,
    /// Height of the current tip; the block must be at `tip_height + 1`.
    pub tip_height: u64,
    /// Difficulty of the block's epoch.
    pub expected_difficulty: u64,
    /// The epoch the block must name.
    pub expected_epoch: u64,
    /// The challenge of that epoch.
    pub expected_challenge: Hash32,
    /// The node's clock, unix seconds.
    pub now_unix: u64,
    /// Start of the expected epoch, unix seconds.
    pub epoch_start_unix: u64,
}

impl ChainContext {
    /// The context a miner checks its own block against (decisions D5): the announced
    /// epoch, with `epoch_start_unix` (e.g. deadline − epoch duration) and its own clock.
    pub fn for_epoch(epoch: &NewEpoch, epoch_start_unix: u64, now_unix: u64) -> Self {
        Self {
            tip_hash: Some(epoch.tip_hash),
            tip_height: epoch.tip_height,
            expected_difficulty: epoch.difficulty,
            expected_epoch: epoch.epoch,
            expected_challenge: epoch.challenge,
            now_unix,
            epoch_start_unix,
        }
    }
}

/// Why a block is invalid. Each variant names the rule and the values that broke it.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BlockError {
    /// Header version other than 1.
    #[error("block version {version} is not supported (expected 1)")]
    UnsupportedVersion {
        /// The version carried.
        version: u8,
    },
    /// Difficulty 0.
    #[error("block difficulty must be > 0")]
    ZeroDifficulty,
    /// Timestamp too far ahead of the node's clock.
    #[error("block timestamp {timestamp} is more than {max_drift_secs} s after now ({now})")]
    TimestampInFuture {
        /// Block timestamp.
        timestamp: u64,
        /// The node's clock.
        now: u64,
        /// Allowed drift.
        max_drift_secs: u64,
    },
    /// Timestamp too far before the start of the block's epoch (D9).
    #[error(
        "block timestamp {timestamp} is more than {max_lag_secs} s before its epoch started ({epoch_start})"
    )]
    TimestampBeforeEpoch {
        /// Block timestamp.
        timestamp: u64,
        /// Epoch start.
        epoch_start: u64,
        /// Allowed lag.
        max_lag_secs: u64,
    },
    /// The header signature is not the miner's over the block hash.
    #[error("block signature is not valid for miner {}", to_hex(.miner_id))]
    InvalidSignature {
        /// The miner id.
        miner_id: [u8; 33],
    },
    /// Parent is not the tip.
    #[error("block parent {} is not the tip {}", to_hex(.actual), to_hex(.expected))]
    ParentMismatch {
        /// The tip hash.
        expected: Hash32,
        /// The block's parent hash.
        actual: Hash32,
    },
    /// Height is not tip + 1.
    #[error("block height {actual} is not tip height + 1 = {expected}")]
    HeightMismatch {
        /// tip height + 1.
        expected: u64,
        /// The block's height.
        actual: u64,
    },
    /// Difficulty is not the expected one.
    #[error("block difficulty {actual} differs from the expected {expected}")]
    DifficultyMismatch {
        /// Expected difficulty.
        expected: u64,
        /// The block's difficulty.
        actual: u64,
    },
    /// Epoch is not the expected one.
    #[error("block epoch {actual} differs from the expected {expected}")]
    EpochMismatch {
        /// Expected epoch.
        expected: u64,
        /// The block's epoch.
        actual: u64,
    },
    /// Challenge is not the expected one.
    #[error("block challenge {} differs from the expected {}", to_hex(.actual), to_hex(.expected))]
    ChallengeMismatch {
        /// Expected challenge.
        expected: Hash32,
        /// The block's challenge.
        actual: Hash32,
    },
    /// A transaction breaks the basic rules.
    #[error("transaction #{index}: {error}")]
    Transaction {
        /// Position in the block.
        index: usize,
        /// What is wrong (part of this error's message, so not a separate source).
        error: TransactionError,
    },
    /// The header's tx root is not the root of the transactions.
    #[error("header tx root {} differs from the transactions' root {}", to_hex(.header), to_hex(.computed))]
    TxRootMismatch {
        /// Root computed from the transactions.
        computed: Hash32,
        /// Root in the header.
        header: Hash32,
    },
    /// The proof is invalid (the proof error is part of this message, not a source).
    #[error("invalid proof: {0}")]
    Proof(ProofError),
    /// A genesis block field differs from its config (reference section 4.7).
    #[error("genesis block field {field} does not match the genesis config")]
    GenesisMismatch {
        /// The field.
        field: &'static str,
    },
}

impl From<ProofError> for BlockError {
    fn from(error: ProofError) -> Self {
        BlockError::Proof(error)
    }
}

/// Validates a block against the chain (reference section 4.6 plus D2 and D9).
pub fn validate_block(block: &Block, ctx: &ChainContext) -> Result<(), BlockError> {
    let h = &block.header;
    // 1. Structure.
    if h.version != BLOCK_VERSION {
        return Err(BlockError::UnsupportedVersion { version: h.version });
    }
    if h.difficulty == 0 {
        return Err(BlockError::ZeroDifficulty);
    }
    // 2. Timestamp.
    if h.timestamp > ctx.now_unix.saturating_add(MAX_FUTURE_DRIFT_SECS) {
        return Err(BlockError::TimestampInFuture {
            timestamp: h.timestamp,
            now: ctx.now_unix,
            max_drift_secs: MAX_FUTURE_DRIFT_SECS,
        });
    }
    if h.timestamp.saturating_add(MAX_EPOCH_LAG_SECS) < ctx.epoch_start_unix {
        return Err(BlockError::TimestampBeforeEpoch {
            timestamp: h.timestamp,
            epoch_start: ctx.epoch_start_unix,
            max_lag_secs: MAX_EPOCH_LAG_SECS,
        });
    }
    // 3. Signature.
    if !h.verify_signature() {
        return Err(BlockError::InvalidSignature {
            miner_id: h.miner_id,
        });
    }
    // 4. Chain state.
    if let Some(tip) = ctx.tip_hash {
        if h.parent_hash != tip {
            return Err(BlockError::ParentMismatch {
                expected: tip,
                actual: h.parent_hash,
            });
        }
    }
    let expected_height = ctx.tip_height.saturating_add(1);
    if h.height != expected_height {
        return Err(BlockError::HeightMismatch {
            expected: expected_height,
            actual: h.height,
        });
    }
    if h.difficulty != ctx.expected_difficulty {
        return Err(BlockError::DifficultyMismatch {
            expected: ctx.expected_difficulty,
            actual: h.difficulty,
        });
    }
    if h.epoch != ctx.expected_epoch {
        return Err(BlockError::EpochMismatch {
            expected: ctx.expected_epoch,
            actual: h.epoch,
        });
    }
    if h.challenge != ctx.expected_challenge {
        return Err(BlockError::ChallengeMismatch {
            expected: ctx.expected_challenge,
            actual: h.challenge,
        });
    }
    // 5. Transactions.
    for (index, tx) in block.transactions.iter().enumerate() {
        validate_transaction(tx).map_err(|error| BlockError::Transaction { index, error })?;
    }
    // 6. Tx root.
    let computed = tx_root(&block.transactions);
    if computed != h.tx_root {
        return Err(BlockError::TxRootMismatch {
            computed,
            header: h.tx_root,
        });
    }
    // 7. Proof.
    verify_header_proof(block, h.difficulty)
}

/// Rule 7 of [`validate_block`] alone: the block's proof, against the header's own
/// challenge, plot root and score, below the target of `difficulty`.
pub fn verify_header_proof(block: &Block, difficulty: u64) -> Result<(), BlockError> {
    let h = &block.header;
    let target = difficulty_to_target(difficulty).map_err(|_| BlockError::ZeroDifficulty)?;
    verify_block_proof(
        &block.proof,
        &h.challenge,
        &h.plot_root,
        &h.proof_score,
        Some(&target),
        &h.miner_id,
    )?;
    Ok(())
}

/// Checks a genesis block against its config: height 0, zero parent, plot root and score;
/// timestamp, difficulty, epoch and challenge from the config; a valid signature; the tx
/// root of its transactions (the reference checks neither of the last two).
pub fn validate_genesis_block(
    block: &Block,
    config: &crate::consensus::GenesisConfig,
) -> Result<(), BlockError> {
    let h = &block.header;
    let checks: [(&'static str, bool); 9] = [
        ("version", h.version == BLOCK_VERSION),
        ("height", h.height == 0),
        ("parent_hash", h.parent_hash == [0; 32]),
        ("timestamp", h.timestamp == config.timestamp_unix),
        ("difficulty", h.difficulty == config.initial_difficulty),
        ("epoch", h.epoch == config.initial_epoch),
        (
            "challenge",
            h.challenge == genesis_challenge(&config.network_id),
        ),
        ("plot_root", h.plot_root == [0; 32]),
        ("proof_score", h.proof_score == [0; 32]),
    ];
    if let Some((field, _)) = checks.iter().find(|(_, ok)| !ok) {
        return Err(BlockError::GenesisMismatch { field });
    }
    if !h.verify_signature() {
        return Err(BlockError::InvalidSignature {
            miner_id: h.miner_id,
        });
    }
    let computed = tx_root(&block.transactions);
    if computed != h.tx_root {
        return Err(BlockError::TxRootMismatch {
            computed,
            header: h.tx_root,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::{BlockHeader, BlockPlotMetadata};
    use crate::consensus::{epoch_challenge, GenesisConfig};
    use crate::keys::MinerKey;
    use crate::merkle::{internal_node, leaf_node, padding_node, MerklePath};

    const N: u64 = 5;
    const SEED: [u8; 32] = [4; 32];

    fn plot_leaves(key: &MinerKey, n: u64) -> Vec<[u8; 32]> {
        (0..n)
            .map(|i| sha256_concat(&[&key.public_key(), &SEED, &i.to_le_bytes()]))
            .collect()
    }

    /// The level-by-level proof definition (reference section 2.4), written plainly.
    fn naive_path(leaves: &[[u8; 32]], index: usize) -> (MerklePath, Hash32) {
        let mut level: Vec<Hash32> = leaves.iter().map(leaf_node).collect();
        let (mut siblings, mut bits, mut idx) = (Vec::new(), Vec::new(), index);
        while level.len() > 1 {
            let sib = idx ^ 1;
            siblings.push(
                level
                    .get(sib)
                    .copied()
                    .unwrap_or_else(|| padding_node(&level[idx])),
            );
            bits.push(idx % 2 == 0);
            level = level
                .chunks(2)
                .map(|p| match p {
                    [l, r] => internal_node(l, r),
                    [l] => internal_node(l, &padding_node(l)),
                    _ => unreachable!(),
                })
                .collect();
            idx /= 2;
        }
        let path = MerklePath {
            leaf: leaves[index],
            index: index as u64,
            siblings,
            sibling_is_right: bits,
        };
        (path, level[0])
    }

    struct Fixture {
        key: MinerKey,
        block: Block,
        ctx: ChainContext,
    }

    fn fixture() -> Fixture {
        let key = MinerKey::from_secret_bytes(&[3; 32]);
        let leaves = plot_leaves(&key, N);
        let tip = [7u8; 32];
        let challenge = epoch_challenge(&tip, 12);
        // The best leaf, as a miner would pick it.
        let best = (0..N as usize)
            .min_by_key(|&i| score(&challenge, &leaves[i]))
            .unwrap();
        let (path, root) = naive_path(&leaves, best);
        let plot_header = PlotHeader::new(SEED, N, root);
        let proof = BlockProof::for_plot(path, &plot_header);
        let alice = MinerKey::from_secret_bytes(&[5; 32]);
        let transactions: Vec<Transaction> = (1..=2u64)
            .map(|i| {
                let mut tx = Transaction {
                    version: 1,
                    sender: [0; 33],
                    recipient: alice.miner_id(),
                    amount: 10 * i,
                    nonce: i,
                    fee: i,
                    signature: [0; 64],
                };
                tx.sign(&key);
                tx
            })
            .collect();
        let now = 1_800_000_000;
        let mut header = BlockHeader {
            version: 1,
            parent_hash: tip,
            height: 11,
            timestamp: now - 5,
            difficulty: 1,
            epoch: 12,
            challenge,
            plot_root: root,
            proof_score: score(&challenge, &leaves[best]),
            tx_root: tx_root(&transactions),
            miner_id: [0; 33],
            signature: [0; 64],
        };
        header.sign(&key);
        let ctx = ChainContext {
            tip_hash: Some(tip),
            tip_height: 10,
            expected_difficulty: 1,
            expected_epoch: 12,
            expected_challenge: challenge,
            now_unix: now,
            epoch_start_unix: now - 8,
        };
        Fixture {
            key,
            block: Block {
                header,
                transactions,
                proof,
            },
            ctx,
        }
    }

    #[test]
    fn a_real_signed_block_passes_and_survives_the_codec() {
        let f = fixture();
        validate_block(&f.block, &f.ctx).unwrap();
        let decoded = Block::decode(&f.block.encode()).unwrap();
        validate_block(&decoded, &f.ctx).unwrap();
        // Without a tip the parent check is skipped.
        let ctx = ChainContext {
            tip_hash: None,
            ..f.ctx
        };
        validate_block(&f.block, &ctx).unwrap();
    }

    /// Applies `corrupt`, re-signs the header when asked, and returns the error.
    fn corrupted(resign: bool, corrupt: impl FnOnce(&mut Block, &mut ChainContext)) -> BlockError {
        let mut f = fixture();
        corrupt(&mut f.block, &mut f.ctx);
        if resign {
            f.block.header.sign(&f.key);
        }
        validate_block(&f.block, &f.ctx).unwrap_err()
    }

    #[test]
    fn each_single_field_corruption_fails_with_its_variant() {
        use BlockError as E;
        use ProofError as P;
        let e = corrupted(true, |b, _| b.header.version = 2);
        assert!(matches!(e, E::UnsupportedVersion { version: 2 }), "{e}");
        let e = corrupted(true, |b, _| b.header.difficulty = 0);
        assert!(matches!(e, E::ZeroDifficulty), "{e}");
        let e = corrupted(true, |b, c| b.header.timestamp = c.now_unix + 121);
        assert!(matches!(e, E::TimestampInFuture { .. }), "{e}");
        // Exactly at the bounds is accepted.
        let mut f = fixture();
        f.block.header.timestamp = f.ctx.now_unix + MAX_FUTURE_DRIFT_SECS;
        f.block.header.sign(&f.key);
        validate_block(&f.block, &f.ctx).unwrap();
        f.block.header.timestamp = f.ctx.epoch_start_unix - MAX_EPOCH_LAG_SECS;
        f.block.header.sign(&f.key);
        validate_block(&f.block, &f.ctx).unwrap();
        let e = corrupted(true, |b, c| b.header.timestamp = c.epoch_start_unix - 121);
        assert!(matches!(e, E::TimestampBeforeEpoch { .. }), "{e}");
        let e = corrupted(false, |b, _| b.header.signature[10] ^= 1);
        assert!(matches!(e, E::InvalidSignature { .. }), "{e}");
        let e = corrupted(false, |b, _| b.header.height += 1);
        assert!(
            matches!(e, E::InvalidSignature { .. }),
            "unsigned change: {e}"
        );
        let e = corrupted(true, |b, _| b.header.parent_hash[0] ^= 1);
        assert!(matches!(e, E::ParentMismatch { .. }), "{e}");
        let e = corrupted(true, |b, _| b.header.height = 12);
        assert!(
            matches!(
                e,
                E::HeightMismatch {
                    expected: 11,
                    actual: 12
                }
            ),
            "{e}"
        );
        let e = corrupted(true, |b, _| b.header.difficulty = 2);
        assert!(
            matches!(
                e,
                E::DifficultyMismatch {
                    expected: 1,
                    actual: 2
                }
            ),
            "{e}"
        );
        let e = corrupted(true, |b, _| b.header.epoch = 13);
        assert!(
            matches!(
                e,
                E::EpochMismatch {
                    expected: 12,
                    actual: 13
                }
            ),
            "{e}"
        );
        let e = corrupted(true, |b, _| b.header.challenge[31] ^= 1);
        assert!(matches!(e, E::ChallengeMismatch { .. }), "{e}");
        let e = corrupted(true, |b, _| b.transactions[1].amount += 1);
        assert!(
            matches!(
                e,
                E::Transaction {
                    index: 1,
                    error: TransactionError::InvalidSignature { .. }
                }
            ),
            "{e}"
        );
        let e = corrupted(true, |b, _| b.transactions[0].amount = 0);
        assert!(
            matches!(
                e,
                E::Transaction {
                    index: 0,
                    error: TransactionError::ZeroAmount
                }
            ),
            "{e}"
        );
        let e = corrupted(true, |b, _| b.transactions.pop().map(drop).unwrap());
        assert!(matches!(e, E::TxRootMismatch { .. }), "{e}");
        let e = corrupted(true, |b, _| b.header.proof_score[0] ^= 1);
        assert!(matches!(e, E::Proof(P::ScoreMismatch { .. })), "{e}");
        let e = corrupted(true, |b, _| b.header.plot_root[0] ^= 1);
        assert!(matches!(e, E::Proof(P::MerkleRootMismatch { .. })), "{e}");
        let e = corrupted(false, |b, _| b.proof.siblings[1][0] ^= 1);
        assert!(matches!(e, E::Proof(P::MerkleRootMismatch { .. })), "{e}");
        let e = corrupted(false, |b, _| b.proof.sibling_is_right[0] ^= true);
        assert!(
            matches!(e, E::Proof(P::OrientationMismatch { level: 0, .. })),
            "{e}"
        );
        let e = corrupted(false, |b, _| b.proof.metadata.plot_header_hash[5] ^= 1);
        assert!(
            matches!(e, E::Proof(P::PlotHeaderHashMismatch { .. })),
            "{e}"
        );
        let e = corrupted(false, |b, _| b.proof.metadata.leaf_count = 6);
        assert!(
            matches!(e, E::Proof(P::PlotHeaderHashMismatch { .. })),
            "{e}"
        );
        let e = corrupted(false, |b, _| b.proof.metadata.leaf_count = 4);
        assert!(
            matches!(e, E::Proof(P::PathLengthMismatch { expected: 2, .. })),
            "{e}"
        );
        let e = corrupted(false, |b, _| b.proof.metadata.plot_id[0] ^= 1);
        assert!(matches!(e, E::Proof(P::LeafNotBoundToMiner { .. })), "{e}");
        let e = corrupted(false, |b, _| b.proof.metadata.version = 2);
        assert!(
            matches!(e, E::Proof(P::UnsupportedPlotVersion { version: 2 })),
            "{e}"
        );
        let e = corrupted(false, |b, _| b.proof.leaf_index = 5);
        assert!(
            matches!(
                e,
                E::Proof(P::IndexOutOfRange {
                    index: 5,
                    leaf_count: 5
                })
            ),
            "{e}"
        );
        // Another miner who signs this block cannot claim its plot.
        let mut f = fixture();
        f.block.header.sign(&MinerKey::from_secret_bytes(&[8; 32]));
        let e = validate_block(&f.block, &f.ctx).unwrap_err();
        assert!(matches!(e, E::Proof(P::LeafNotBoundToMiner { .. })), "{e}");
    }

    #[test]
    fn a_block_built_from_a_new_epoch_validates_against_it() {
        let f = fixture();
        let h = &f.block.header;
        let announced = NewEpoch {
            epoch: h.epoch,
            tip_hash: h.parent_hash,
            tip_height: h.height - 1,
            difficulty: h.difficulty,
            challenge: h.challenge,
            deadline_unix_ms: (f.ctx.now_unix + 2) * 1000,
        };
        let template = crate::consensus::BlockTemplate::for_epoch(&announced, h.timestamp);
        let built = template.build(
            h.plot_root,
            f.block.proof.clone(),
            f.block.transactions.clone(),
            &f.key,
        );
        assert_eq!(built, f.block);
        let ctx = ChainContext::for_epoch(&announced, f.ctx.epoch_start_unix, f.ctx.now_unix);
        assert_eq!(ctx, f.ctx);
        validate_block(&built, &ctx).unwrap();
    }

    #[test]
    fn proof_check_rejects_a_score_at_or_above_target_and_non_ed25519_ids() {
        let f = fixture();
        let h = &f.block.header;
        let check = |target: &Hash32, id: &[u8; 33]| {
            verify_block_proof(
                &f.block.proof,
                &h.challenge,
                &h.plot_root,
                &h.proof_score,
                Some(target),
                id,
            )
        };
        assert_eq!(check(&[0xff; 32], &h.miner_id), Ok(()));
        assert!(matches!(
            check(&h.proof_score, &h.miner_id),
            Err(ProofError::ScoreNotBelowTarget { .. })
        ));
        let mut id = h.miner_id;
        id[0] = 0x02;
        assert_eq!(
            check(&[0xff; 32], &id),
            Err(ProofError::UnsupportedMinerId { tag: 0x02 })
        );
        // Without a target only the structure is checked.
        assert_eq!(
            verify_block_proof(
                &f.block.proof,
                &h.challenge,
                &h.plot_root,
                &h.proof_score,
                None,
                &h.miner_id
            ),
            Ok(())
        );
    }

    #[test]
    fn every_leaf_of_small_plots_verifies_strictly_and_moved_indices_fail() {
        let key = MinerKey::from_secret_bytes(&[3; 32]);
        for n in 1..=9u64 {
            let leaves = plot_leaves(&key, n);
            for i in 0..n as usize {
                let (path, root) = naive_path(&leaves, i);
                let challenge = [1u8; 32];
                let s = score(&challenge, &leaves[i]);
                let header = PlotHeader::new(SEED, n, root);
                let proof =
                    BlockProof::from_merkle_path(path, BlockPlotMetadata::for_plot(&header));
                assert_eq!(
                    verify_block_proof(&proof, &challenge, &root, &s, None, &key.miner_id()),
                    Ok(()),
                    "n = {n}, i = {i}"
                );
                // Claiming another index with the same leaf and path always fails.
                let mut moved = proof.clone();
                moved.leaf_index = (i as u64 + 1) % n;
                if n > 1 {
                    assert!(verify_block_proof(
                        &moved,
                        &challenge,
                        &root,
                        &s,
                        None,
                        &key.miner_id()
                    )
                    .is_err());
                }
            }
        }
    }

    #[test]
    fn genesis_blocks_validate_against_their_config() {
        let signer = MinerKey::generate();
        let cfg = GenesisConfig::devnet(1_700_000_000);
        let block = cfg.build_genesis_block(&signer).unwrap();
        validate_genesis_block(&block, &cfg).unwrap();
        let other = GenesisConfig::mainnet();
        assert!(matches!(
            validate_genesis_block(&block, &other),
            Err(BlockError::GenesisMismatch { field: "timestamp" })
        ));
        let mut bad = block.clone();
        bad.header.signature[0] ^= 1;
        assert!(matches!(
            validate_genesis_block(&bad, &cfg),
            Err(BlockError::InvalidSignature { .. })
        ));
    }

    #[test]
    fn errors_display_the_failing_values() {
        let e = BlockError::HeightMismatch {
            expected: 3,
            actual: 9,
        };
        assert_eq!(e.to_string(), "block height 9 is not tip height + 1 = 3");
        let e = BlockError::Proof(ProofError::ScoreNotBelowTarget {
            score: [0xab; 32],
            target: [0x01; 32],
        });
        assert!(e.to_string().contains("abababab"));
    }
}
