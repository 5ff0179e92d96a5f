//! Consensus arithmetic: scores, difficulty ⇄ target, challenges, the difficulty
//! adjustment rule, and the genesis configurations and block.
//!
//! Targets are 32-byte big-endian unsigned integers; a score wins when it is strictly below
//! the target. `target(d) = ⌊(2²⁵⁶ − 1) / d⌋`, computed here with a 256-by-64-bit long
//! division on four `u64` limbs (no bignum dependency).

use std::cmp::Ordering;

use thiserror::Error;

use crate::block::{
    tx_root, Block, BlockHeader, BlockPlotMetadata, BlockProof, Transaction, BLOCK_VERSION,
    TRANSACTION_VERSION,
};
use crate::hash::{sha256, sha256_concat, Hash32};
use crate::keys::{public_key_of, MinerKey};
use crate::wire::NewEpoch;

/// Why a consensus computation was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ConsensusError {
    /// Difficulty must be at least 1.
    #[error("difficulty must be > 0")]
    ZeroDifficulty,
    /// A difficulty-adjustment setting is out of range.
    #[error("difficulty adjustment setting {field} = {value} is invalid: {rule}")]
    InvalidAdjustmentConfig {
        /// The setting.
        field: &'static str,
        /// Its value.
        value: u64,
        /// The rule it breaks.
        rule: &'static str,
    },
    /// The adjustment window ends before it starts.
    #[error("adjustment window ends at {now} before it starts at {start}")]
    WindowEndsBeforeStart {
        /// Window start (unix seconds).
        start: u64,
        /// Window end (unix seconds).
        now: u64,
    },
    /// A genesis configuration breaks a rule.
    #[error("genesis config is invalid: {reason}")]
    InvalidGenesis {
        /// What is wrong.
        reason: String,
    },
}

/// `H(challenge ‖ leaf)`: the score of a leaf (lower is better); defined beside the scanner.
pub use crate::scan::score;

/// Byte-wise lexicographic order on unsigned bytes (big-endian for equal lengths); a
/// prefix is smaller than the longer string (the reference `ScoreComparer`).
pub fn compare_scores(a: &[u8], b: &[u8]) -> Ordering {
    a.cmp(b)
}

/// `score < target`, strictly.
pub fn is_below_target(score: &Hash32, target: &Hash32) -> bool {
    compare_scores(score, target) == Ordering::Less
}

/// `⌊(2²⁵⁶ − 1) / difficulty⌋` as 32 big-endian bytes.
pub fn difficulty_to_target(difficulty: u64) -> Result<Hash32, ConsensusError> {
    if difficulty == 0 {
        return Err(ConsensusError::ZeroDifficulty);
    }
    // Long division of the all-ones 256-bit number, most significant limb first.
    let divisor = u128::from(difficulty);
    let mut remainder: u128 = 0;
    let mut target = [0u8; 32];
    for limb in 0..4 {
        let dividend = (remainder << 64) | u128::from(u64::MAX);
        let quotient = dividend / divisor;
        remainder = dividend % divisor;
        // quotient < 2^64 because remainder < divisor ≤ 2^64 − 1.
        let q = u64::try_from(quotient).unwrap_or(u64::MAX);
        target[limb * 8..limb * 8 + 8].copy_from_slice(&q.to_be_bytes());
    }
    Ok(target)
}

/// The difficulty a target stands for: `min(⌊(2²⁵⁶ − 1) / target⌋, i64::MAX)`, and
/// `i64::MAX` for a zero target (the reference rule; round trip within ±1).
pub fn target_to_difficulty(target: &Hash32) -> u64 {
    const MAX: u64 = i64::MAX as u64;
    let limbs = be_limbs(target);
    if limbs == [0; 4] {
        return MAX;
    }
    // The largest q ≤ i64::MAX with q · target < 2²⁵⁶, i.e. q · target ≤ 2²⁵⁶ − 1.
    let (mut lo, mut hi) = (0u64, MAX);
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        if mul_fits_256(&limbs, mid) {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    lo
}

/// Big-endian bytes to little-endian-ordered limbs (`limbs[0]` least significant).
fn be_limbs(bytes: &Hash32) -> [u64; 4] {
    let mut limbs = [0u64; 4];
    for (i, limb) in limbs.iter_mut().enumerate() {
        let at = 32 - 8 * (i + 1);
        let mut chunk = [0u8; 8];
        chunk.copy_from_slice(&bytes[at..at + 8]);
        *limb = u64::from_be_bytes(chunk);
    }
    limbs
}

/// Whether `limbs · factor` fits in 256 bits.
fn mul_fits_256(limbs: &[u64; 4], factor: u64) -> bool {
    let mut carry: u128 = 0;
    for &limb in limbs {
        let product = u128::from(limb) * u128::from(factor) + carry;
        carry = product >> 64;
    }
    carry == 0
}

/// `H(prev_hash ‖ i64_le(epoch))`: the challenge of `epoch` on the tip `prev_hash`.
pub fn epoch_challenge(prev_hash: &Hash32, epoch: u64) -> Hash32 {
    sha256_concat(&[prev_hash, &epoch.to_le_bytes()])
}

/// `H(UTF-8(network_id))`: the genesis block's challenge.
pub fn genesis_challenge(network_id: &str) -> Hash32 {
    sha256(network_id.as_bytes())
}

/// Settings of the difficulty adjustment rule (reference section 4.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DifficultyAdjustmentConfig {
    /// Seconds a block should take.
    pub target_block_time_secs: u64,
    /// Adjust every this many blocks.
    pub adjustment_interval: u64,
    /// Only `1/dampening` of the raw change is applied.
    pub dampening_factor: u64,
    /// Lowest difficulty.
    pub min_difficulty: u64,
    /// Highest difficulty.
    pub max_difficulty: u64,
}

impl Default for DifficultyAdjustmentConfig {
    /// The reference defaults: 10 s blocks, every 100 blocks, dampening 4, [1, i64::MAX].
    fn default() -> Self {
        Self {
            target_block_time_secs: 10,
            adjustment_interval: 100,
            dampening_factor: 4,
            min_difficulty: 1,
            max_difficulty: i64::MAX as u64,
        }
    }
}

/// The reference `DifficultyAdjuster`, with validated settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DifficultyAdjuster {
    config: DifficultyAdjustmentConfig,
}

impl DifficultyAdjuster {
    /// Validates the settings: all > 0, `min ≤ max ≤ i64::MAX`.
    pub fn new(config: DifficultyAdjustmentConfig) -> Result<Self, ConsensusError> {
        let positive = [
            ("target_block_time_secs", config.target_block_time_secs),
            ("adjustment_interval", config.adjustment_interval),
            ("dampening_factor", config.dampening_factor),
            ("min_difficulty", config.min_difficulty),
            ("max_difficulty", config.max_difficulty),
        ];
        for (field, value) in positive {
            if value == 0 {
                return Err(ConsensusError::InvalidAdjustmentConfig {
                    field,
                    value,
                    rule: "must be > 0",
                });
            }
        }
        if config.max_difficulty > i64::MAX as u64 {
            return Err(ConsensusError::InvalidAdjustmentConfig {
                field: "max_difficulty",
                value: config.max_difficulty,
                rule: "must be <= i64::MAX",
            });
        }
        if config.min_difficulty > config.max_difficulty {
            return Err(ConsensusError::InvalidAdjustmentConfig {
                field: "min_difficulty",
                value: config.min_difficulty,
                rule: "must be <= max_difficulty",
            });
        }
        Ok(Self { config })
    }

    /// The settings.
    pub fn config(&self) -> &DifficultyAdjustmentConfig {
        &self.config
    }

    /// Whether the block at `height` starts a new difficulty window:
    /// `height > 0 && height % interval == 0`.
    pub fn should_adjust(&self, height: u64) -> bool {
        height > 0 && height.is_multiple_of(self.config.adjustment_interval)
    }

    /// The next difficulty after a window that ran from `window_start_unix` to `now_unix`:
    /// `raw = cur · (interval · block_time) / max(now − start, 1)`,
    /// `new = cur + (raw − cur) / dampening` (f64), rounded half to even, clamped to
    /// `[min, max]`.
    pub fn next_difficulty(
        &self,
        current: u64,
        now_unix: u64,
        window_start_unix: u64,
    ) -> Result<u64, ConsensusError> {
        if current == 0 {
            return Err(ConsensusError::ZeroDifficulty);
        }
        if now_unix < window_start_unix {
            return Err(ConsensusError::WindowEndsBeforeStart {
                start: window_start_unix,
                now: now_unix,
            });
        }
        let c = &self.config;
        let actual = (now_unix - window_start_unix).max(1) as f64;
        let target = c.adjustment_interval as f64 * c.target_block_time_secs as f64;
        let cur = current as f64;
        let raw = cur * target / actual;
        let new = (cur + (raw - cur) / c.dampening_factor as f64).round_ties_even();
        Ok(clamp_to_u64(new, c.min_difficulty, c.max_difficulty))
    }
}

/// Clamp a finite or infinite f64 into `[min, max]` without overflowing the cast.
fn clamp_to_u64(value: f64, min: u64, max: u64) -> u64 {
    if value.is_nan() || value <= min as f64 {
        return min;
    }
    if value >= max as f64 {
        return max;
    }
    // In range of u64 here; `as` saturates, and `.clamp` covers f64 rounding of max.
    (value as u64).clamp(min, max)
}

/// A block to be built on an announced epoch, stamped with a time: the epoch fixes the
/// header's parent, height (tip + 1), difficulty, epoch number and challenge (decisions D5
/// step 3); [`BlockTemplate::build`] adds the proof, transactions and signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockTemplate {
    /// The announcement the block answers.
    epoch: NewEpoch,
    /// Block timestamp, unix seconds.
    timestamp: u64,
}

impl BlockTemplate {
    /// The template of a block for the epoch a node announced, stamped `timestamp_unix`.
    pub fn for_epoch(epoch: &NewEpoch, timestamp_unix: u64) -> Self {
        Self {
            epoch: *epoch,
            timestamp: timestamp_unix,
        }
    }

    /// Builds and signs the block: the proof score is `H(challenge ‖ proof.leaf)`, the tx
    /// root is computed from `transactions`, and `miner_id` is `key`'s. Check the result
    /// with `validate::validate_block` before sending it.
    pub fn build(
        &self,
        plot_root: Hash32,
        proof: BlockProof,
        transactions: Vec<Transaction>,
        key: &MinerKey,
    ) -> Block {
        let e = &self.epoch;
        let mut header = BlockHeader {
            version: BLOCK_VERSION,
            parent_hash: e.tip_hash,
            height: e.tip_height.saturating_add(1),
            timestamp: self.timestamp,
            difficulty: e.difficulty,
            epoch: e.epoch,
            challenge: e.challenge,
            plot_root,
            proof_score: score(&e.challenge, &proof.leaf),
            tx_root: tx_root(&transactions),
            miner_id: [0; 33],
            signature: [0; 64],
        };
        header.sign(key);
        Block {
            header,
            transactions,
            proof,
        }
    }
}

/// Most transactions a miner puts in a block (decisions D7, the reference builder's cap).
pub const MAX_BLOCK_TRANSACTIONS: usize = 1000;

/// The transactions a block carries, chosen as the reference builder does: by fee,
/// highest first, then by tx hash ascending (byte-wise), at most `max`. Duplicates (same
/// tx hash) are kept once. Callers pass only transactions that passed
/// `validate::validate_transaction`.
pub fn select_transactions(candidates: &[Transaction], max: usize) -> Vec<Transaction> {
    let mut keyed: Vec<(TxOrderKey, &Transaction)> = candidates
        .iter()
        .map(|tx| (tx_order_key(tx.fee, tx.hash()), tx))
        .collect();
    keyed.sort_by_key(|k| k.0);
    keyed.dedup_by(|a, b| a.0 .1 == b.0 .1);
    keyed.into_iter().take(max).map(|(_, tx)| *tx).collect()
}

/// The block order of transactions, the one every pool and builder sorts by: fee
/// descending, then tx hash ascending (byte-wise). Smaller keys come first.
pub type TxOrderKey = (std::cmp::Reverse<u64>, Hash32);

/// The [`TxOrderKey`] of a transaction with this fee and hash.
pub fn tx_order_key(fee: u64, hash: Hash32) -> TxOrderKey {
    (std::cmp::Reverse(fee), hash)
}

/// One premine allocation of a genesis block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PremineAllocation {
    /// `0xED ‖ pk` of the recipient.
    pub recipient: [u8; 33],
    /// Amount (> 0).
    pub amount: u64,
}

/// A network's genesis parameters (reference section 4.7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenesisConfig {
    /// The network id, also the `network=` word of user agents (D3).
    pub network_id: String,
    /// Genesis timestamp, unix seconds.
    pub timestamp_unix: u64,
    /// Difficulty of the first epochs.
    pub initial_difficulty: u64,
    /// Epoch of the genesis block (0).
    pub initial_epoch: u64,
    /// Length of an epoch in seconds (D4).
    pub epoch_duration_secs: u64,
    /// Target seconds per block, for difficulty adjustment (D6).
    pub target_block_time_secs: u64,
    /// Premine transactions, in this order.
    pub premine: Vec<PremineAllocation>,
}

/// Network id of [`GenesisConfig::mainnet`].
pub const MAINNET_NETWORK_ID: &str = "spacetime-mainnet-v1";
/// Network id of [`GenesisConfig::testnet`].
pub const TESTNET_NETWORK_ID: &str = "spacetime-testnet-v1";
/// Network id of [`GenesisConfig::devnet`].
pub const DEVNET_NETWORK_ID: &str = "spacetime-devnet-local";

impl GenesisConfig {
    /// Mainnet: fixed timestamp 1704067200, difficulty 1 000 000, 30 s epochs and blocks.
    pub fn mainnet() -> Self {
        Self::with(MAINNET_NETWORK_ID, 1_704_067_200, 1_000_000, 30, 30)
    }

    /// Testnet: difficulty 10 000, 30 s epochs and blocks; starts at `now_unix`.
    pub fn testnet(now_unix: u64) -> Self {
        Self::with(TESTNET_NETWORK_ID, now_unix, 10_000, 30, 30)
    }

    /// Local development: difficulty 100, 10 s epochs and blocks; starts at `now_unix`.
    pub fn devnet(now_unix: u64) -> Self {
        Self::with(DEVNET_NETWORK_ID, now_unix, 100, 10, 10)
    }

    /// A custom network with the reference defaults: difficulty 1000, 30 s epochs and
    /// blocks; starts at `now_unix`.
    pub fn custom(network_id: impl Into<String>, now_unix: u64) -> Self {
        Self::with(network_id, now_unix, 1000, 30, 30)
    }

    fn with(
        network_id: impl Into<String>,
        timestamp_unix: u64,
        initial_difficulty: u64,
        epoch_duration_secs: u64,
        target_block_time_secs: u64,
    ) -> Self {
        Self {
            network_id: network_id.into(),
            timestamp_unix,
            initial_difficulty,
            initial_epoch: 0,
            epoch_duration_secs,
            target_block_time_secs,
            premine: Vec::new(),
        }
    }

    /// The reference rules, plus: amounts must be > 0 (the reference accepts 0 and then
    /// fails to build the block), recipients must be Ed25519 ids, integers fit in i64, and
    /// the epoch duration is 1..=3600 s.
    pub fn validate(&self) -> Result<(), ConsensusError> {
        let invalid = |reason: String| Err(ConsensusError::InvalidGenesis { reason });
        if self.network_id.trim().is_empty() {
            return invalid("network id is blank".into());
        }
        if self.network_id.chars().any(char::is_whitespace) {
            return invalid(format!(
                "network id {:?} contains whitespace (it must be one user-agent word)",
                self.network_id
            ));
        }
        const MAX: u64 = i64::MAX as u64;
        for (field, value) in [
            ("timestamp", self.timestamp_unix),
            ("initial difficulty", self.initial_difficulty),
            ("initial epoch", self.initial_epoch),
        ] {
            if value > MAX {
                return invalid(format!("{field} {value} exceeds i64::MAX"));
            }
        }
        if self.initial_difficulty == 0 {
            return invalid("initial difficulty must be > 0".into());
        }
        if !(1..=3600).contains(&self.epoch_duration_secs) {
            return invalid(format!(
                "epoch duration {} s is outside 1..=3600",
                self.epoch_duration_secs
            ));
        }
        if self.target_block_time_secs == 0 {
            return invalid("target block time must be > 0".into());
        }
        for (i, alloc) in self.premine.iter().enumerate() {
            if alloc.amount == 0 || alloc.amount > MAX {
                return invalid(format!(
                    "premine #{i}: amount {} is outside 1..=i64::MAX",
                    alloc.amount
                ));
            }
            if public_key_of(&alloc.recipient).is_none() {
                return invalid(format!("premine #{i}: recipient is not an 0xED key id"));
            }
        }
        Ok(())
    }

    /// The genesis challenge, `H(network_id)`.
    pub fn challenge(&self) -> Hash32 {
        genesis_challenge(&self.network_id)
    }

    /// Builds and signs the genesis block (reference section 4.7, signer per D1): height 0,
    /// zero parent, plot root and score; challenge `H(network_id)`; one premine tx per
    /// allocation (sender 33 zero bytes, nonce 0, fee 0, signed by `signer`); a proof with
    /// a zero leaf, index 0, empty path and metadata (N = 1, zero plot id and header hash).
    pub fn build_genesis_block(&self, signer: &MinerKey) -> Result<Block, ConsensusError> {
        self.validate()?;
        let transactions: Vec<Transaction> = self
            .premine
            .iter()
            .map(|alloc| {
                let mut tx = Transaction {
                    version: TRANSACTION_VERSION,
                    sender: [0; 33],
                    recipient: alloc.recipient,
                    amount: alloc.amount,
                    nonce: 0,
                    fee: 0,
                    signature: [0; 64],
                };
                tx.signature = signer.sign(&tx.hash());
                tx
            })
            .collect();
        let mut header = BlockHeader {
            version: BLOCK_VERSION,
            parent_hash: [0; 32],
            height: 0,
            timestamp: self.timestamp_unix,
            difficulty: self.initial_difficulty,
            epoch: self.initial_epoch,
            challenge: self.challenge(),
            plot_root: [0; 32],
            proof_score: [0; 32],
            tx_root: tx_root(&transactions),
            miner_id: [0; 33],
            signature: [0; 64],
        };
        header.sign(signer);
        Ok(Block {
            header,
            transactions,
            proof: BlockProof {
                leaf: [0; 32],
                leaf_index: 0,
                siblings: Vec::new(),
                sibling_is_right: Vec::new(),
                metadata: BlockPlotMetadata {
                    leaf_count: 1,
                    plot_id: [0; 32],
                    plot_header_hash: [0; 32],
                    version: 1,
                },
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::to_hex;
    use proptest::prelude::*;

    use crate::test_support::vectors;

    #[test]
    fn targets_match_vectors() {
        let v = vectors();
        for (d, hex) in v["targets"].as_object().unwrap() {
            let d: u64 = d.parse().unwrap();
            assert_eq!(
                to_hex(&difficulty_to_target(d).unwrap()),
                hex.as_str().unwrap()
            );
        }
        assert_eq!(difficulty_to_target(0), Err(ConsensusError::ZeroDifficulty));
        let max = difficulty_to_target(u64::MAX).unwrap();
        // (2^256 - 1) / (2^64 - 1) = 2^192 + 2^128 + 2^64 + 1
        assert_eq!(
            to_hex(&max),
            "0000000000000001000000000000000100000000000000010000000000000001"
        );
    }

    #[test]
    fn target_to_difficulty_inverts_within_one() {
        for d in [
            1u64,
            2,
            3,
            7,
            100,
            1000,
            1_000_000,
            123_456_789,
            i64::MAX as u64,
        ] {
            let back = target_to_difficulty(&difficulty_to_target(d).unwrap());
            assert!(back.abs_diff(d) <= 1, "d = {d}, back = {back}");
        }
        assert_eq!(target_to_difficulty(&[0; 32]), i64::MAX as u64);
        assert_eq!(target_to_difficulty(&[0xff; 32]), 1);
        let mut one = [0u8; 32];
        one[31] = 1;
        assert_eq!(target_to_difficulty(&one), i64::MAX as u64);
    }

    #[test]
    fn scores_compare_bytewise_and_below_is_strict() {
        assert_eq!(compare_scores(&[0, 1], &[0, 2]), Ordering::Less);
        assert_eq!(compare_scores(&[1, 0], &[0, 255]), Ordering::Greater);
        assert_eq!(compare_scores(&[1, 2], &[1, 2, 0]), Ordering::Less);
        assert_eq!(compare_scores(&[], &[]), Ordering::Equal);
        let t = [0x55; 32];
        assert!(!is_below_target(&t, &t));
        let mut s = t;
        s[31] = 0x54;
        assert!(is_below_target(&s, &t));
        assert!(!is_below_target(&t, &s));
    }

    #[test]
    fn challenges_and_score_match_vectors() {
        let v = vectors();
        assert_eq!(
            to_hex(&epoch_challenge(&[0; 32], 1)),
            v["challenge"]["prev_zero_epoch_1"].as_str().unwrap()
        );
        assert_eq!(
            to_hex(&genesis_challenge(MAINNET_NETWORK_ID)),
            v["challenge"]["genesis_spacetime-mainnet-v1"]
                .as_str()
                .unwrap()
        );
        let leaf0: [u8; 32] = hex::decode(v["leaves"]["0"].as_str().unwrap())
            .unwrap()
            .try_into()
            .unwrap();
        assert_eq!(
            to_hex(&score(&[0; 32], &leaf0)),
            v["score"]["challenge_zero_leaf0"].as_str().unwrap()
        );
    }

    fn reference_adjuster() -> DifficultyAdjuster {
        DifficultyAdjuster::new(DifficultyAdjustmentConfig::default()).unwrap()
    }

    #[test]
    fn next_difficulty_matches_spec_vectors() {
        let a = reference_adjuster();
        let target = 100 * 10; // interval × block time
        assert_eq!(a.next_difficulty(1000, target / 2, 0).unwrap(), 1250);
        assert_eq!(a.next_difficulty(1000, target * 2, 0).unwrap(), 875);
        // 2 + (4 − 2)/4 = 2.5 → 2 and 3 + (5 − 3)/4 = 3.5 → 4 (half to even).
        assert_eq!(a.next_difficulty(2, target / 2, 0).unwrap(), 2);
        assert_eq!(a.next_difficulty(3, 600, 0).unwrap(), 4);
        // Same window, offset start.
        assert_eq!(
            a.next_difficulty(1000, 10_000 + target, 10_000).unwrap(),
            1000
        );
        // Zero-length window counts as 1 s; clamping at max.
        assert_eq!(
            a.next_difficulty(i64::MAX as u64, 5, 5).unwrap(),
            i64::MAX as u64
        );
        // Very slow window clamps at min.
        assert_eq!(a.next_difficulty(1, u64::MAX / 2, 0).unwrap(), 1);
        assert_eq!(
            a.next_difficulty(0, 1, 0),
            Err(ConsensusError::ZeroDifficulty)
        );
        assert!(matches!(
            a.next_difficulty(5, 1, 2),
            Err(ConsensusError::WindowEndsBeforeStart { .. })
        ));
    }

    #[test]
    fn should_adjust_every_interval_but_not_at_genesis() {
        let a = reference_adjuster();
        assert!(!a.should_adjust(0));
        assert!(!a.should_adjust(99));
        assert!(a.should_adjust(100));
        assert!(a.should_adjust(300));
    }

    #[test]
    fn invalid_adjuster_settings_are_refused() {
        let base = DifficultyAdjustmentConfig::default();
        for cfg in [
            DifficultyAdjustmentConfig {
                dampening_factor: 0,
                ..base
            },
            DifficultyAdjustmentConfig {
                adjustment_interval: 0,
                ..base
            },
            DifficultyAdjustmentConfig {
                min_difficulty: 10,
                max_difficulty: 9,
                ..base
            },
            DifficultyAdjustmentConfig {
                max_difficulty: u64::MAX,
                ..base
            },
        ] {
            assert!(DifficultyAdjuster::new(cfg).is_err(), "{cfg:?}");
        }
    }

    #[test]
    fn genesis_presets_follow_the_spec_table() {
        let m = GenesisConfig::mainnet();
        assert_eq!(
            (
                m.network_id.as_str(),
                m.timestamp_unix,
                m.initial_difficulty
            ),
            (MAINNET_NETWORK_ID, 1_704_067_200, 1_000_000)
        );
        assert_eq!((m.epoch_duration_secs, m.target_block_time_secs), (30, 30));
        let t = GenesisConfig::testnet(42);
        assert_eq!((t.timestamp_unix, t.initial_difficulty), (42, 10_000));
        let d = GenesisConfig::devnet(7);
        assert_eq!(d.network_id, DEVNET_NETWORK_ID);
        assert_eq!((d.initial_difficulty, d.epoch_duration_secs), (100, 10));
        let c = GenesisConfig::custom("x", 1);
        assert_eq!((c.initial_difficulty, c.epoch_duration_secs), (1000, 30));
        for cfg in [m, t, d, c] {
            cfg.validate().unwrap();
            assert_eq!(cfg.initial_epoch, 0);
        }
    }

    #[test]
    fn invalid_genesis_configs_are_refused() {
        let key = MinerKey::generate();
        let mut cfgs = Vec::new();
        cfgs.push(GenesisConfig::custom(" ", 1));
        cfgs.push(GenesisConfig::custom("a b", 1));
        let mut c = GenesisConfig::devnet(1);
        c.initial_difficulty = 0;
        cfgs.push(c);
        let mut c = GenesisConfig::devnet(1);
        c.epoch_duration_secs = 0;
        cfgs.push(c);
        let mut c = GenesisConfig::devnet(1);
        c.premine.push(PremineAllocation {
            recipient: key.miner_id(),
            amount: 0,
        });
        cfgs.push(c);
        let mut c = GenesisConfig::devnet(1);
        c.premine.push(PremineAllocation {
            recipient: [2; 33],
            amount: 5,
        });
        cfgs.push(c);
        for cfg in cfgs {
            assert!(matches!(
                cfg.build_genesis_block(&key),
                Err(ConsensusError::InvalidGenesis { .. })
            ));
        }
    }

    #[test]
    fn genesis_block_is_signed_and_shaped_per_spec() {
        let signer = MinerKey::from_secret_bytes(&[9; 32]);
        let alice = MinerKey::from_secret_bytes(&[1; 32]);
        let mut cfg = GenesisConfig::mainnet();
        cfg.premine.push(PremineAllocation {
            recipient: alice.miner_id(),
            amount: 50,
        });
        let block = cfg.build_genesis_block(&signer).unwrap();
        let h = &block.header;
        assert_eq!((h.version, h.height, h.parent_hash), (1, 0, [0; 32]));
        assert_eq!(h.challenge, genesis_challenge(MAINNET_NETWORK_ID));
        assert_eq!((h.plot_root, h.proof_score), ([0; 32], [0; 32]));
        assert_eq!(h.miner_id, signer.miner_id());
        assert!(h.verify_signature());
        assert_eq!(h.tx_root, tx_root(&block.transactions));
        assert_eq!(block.transactions.len(), 1);
        let tx = &block.transactions[0];
        assert_eq!(
            (tx.sender, tx.amount, tx.nonce, tx.fee),
            ([0; 33], 50, 0, 0)
        );
        assert!(crate::keys::verify_signature(
            &signer.miner_id(),
            &tx.hash(),
            &tx.signature
        ));
        assert_eq!(block.proof.metadata.leaf_count, 1);
        assert!(block.proof.siblings.is_empty());
        // Deterministic: the same signer and config give the same genesis hash.
        assert_eq!(
            cfg.build_genesis_block(&signer).unwrap().hash(),
            block.hash()
        );
        assert_eq!(crate::block::Block::decode(&block.encode()).unwrap(), block);
    }

    #[test]
    fn transactions_are_selected_by_fee_then_hash() {
        let tx = |fee: u64, nonce: u64| Transaction {
            version: 1,
            sender: [1; 33],
            recipient: [2; 33],
            amount: 1,
            nonce,
            fee,
            signature: [0; 64],
        };
        let pool = [tx(1, 0), tx(5, 1), tx(3, 2), tx(5, 3), tx(5, 1)];
        let picked = select_transactions(&pool, 3);
        assert_eq!(picked.len(), 3);
        assert_eq!(picked.iter().map(|t| t.fee).collect::<Vec<_>>(), [5, 5, 3]);
        assert!(picked[0].hash() < picked[1].hash());
        assert_eq!(select_transactions(&pool, MAX_BLOCK_TRANSACTIONS).len(), 4);
        assert!(select_transactions(&[], 10).is_empty());
    }

    proptest! {
        #[test]
        fn target_is_the_floor_quotient(d in 1u64..) {
            let t = difficulty_to_target(d).unwrap();
            // t·d ≤ 2^256 − 1 < (t + 1)·d  ⇔  t·d fits and (t·d + d) overflows.
            let limbs = be_limbs(&t);
            prop_assert!(mul_fits_256(&limbs, d));
            // (t + 1)·d must not fit (t + 1 itself overflows only for d = 1).
            let mut next = limbs;
            let mut carry = true;
            for limb in next.iter_mut() {
                if carry {
                    let (v, c) = limb.overflowing_add(1);
                    *limb = v;
                    carry = c;
                }
            }
            prop_assert!(carry || !mul_fits_256(&next, d));
            let back = target_to_difficulty(&t);
            prop_assert!(back.abs_diff(d.min(i64::MAX as u64)) <= 1);
        }
    }
}
