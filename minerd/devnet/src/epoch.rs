//! Timed epochs (decisions D4, D6, D9): the epoch being mined, how proofs are judged
//! against it, and which block wins it.
//!
//! Epoch `e` on tip `T` has challenge `H(T.hash ‖ i64 e)`. Epoch numbers count epochs since
//! genesis: they only grow, empty epochs advance them, and the first epoch on a tip of
//! height `h` is at least `h + 1` (so the first epoch after genesis is 1). During an epoch
//! the node keeps the valid block with the lowest proof score (the first one on a tie); at
//! the deadline that block is appended and the next epoch builds on it, otherwise the next
//! epoch keeps the old tip with a new challenge.
//!
//! The last epoch number started is kept in `<data dir>/epoch` (decimal text, replaced
//! atomically and durably: temporary file, fsync, rename, fsync of the directory) and is
//! stored before the epoch is announced, so that a restarted node never reuses an epoch
//! number, and thus never repeats a challenge, on the same tip. Both calls block: async
//! callers run them with `spawn_blocking`.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use spacetime::block::{Block, BlockHeader, BlockProof};
use spacetime::consensus::{compare_scores, epoch_challenge, score};
use spacetime::hash::Hash32;
use spacetime::validate::{verify_block_proof, ChainContext, ProofError};
use spacetime::wire::NewEpoch;

/// File name of the epoch counter inside the data dir.
pub const EPOCH_FILE: &str = "epoch";

/// Identifies a connection in logs and in the winner record.
pub type PeerId = u64;

/// The block leading an epoch, and who sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// The block (already validated against the epoch).
    pub block: Block,
    /// The connection it came from.
    pub peer: PeerId,
}

/// What [`Epoch::offer`] did with a valid block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    /// The block now leads the epoch.
    Leading,
    /// The same block already leads.
    Duplicate,
    /// Another block has a lower or equal score.
    NotBetter {
        /// The leading block's score.
        best_score: Hash32,
    },
}

/// One epoch of the chain.
#[derive(Debug, Clone)]
pub struct Epoch {
    /// Epochs since genesis.
    pub number: u64,
    /// The tip this epoch builds on.
    pub tip_hash: Hash32,
    /// Its height.
    pub tip_height: u64,
    /// Difficulty of blocks in this epoch.
    pub difficulty: u64,
    /// `H(tip_hash ‖ i64 number)`.
    pub challenge: Hash32,
    /// Start, unix milliseconds.
    pub start_unix_ms: u64,
    /// When proofs and blocks stop being taken, unix milliseconds.
    pub deadline_unix_ms: u64,
    /// Proofs judged valid in this epoch.
    pub proofs: u64,
    /// Valid blocks offered in this epoch.
    pub blocks: u64,
    closed: bool,
    best: Option<Candidate>,
    /// Hashes of the blocks already taken for checking in this epoch (at most
    /// [`MAX_SEEN_BLOCKS`]): a replayed block is dropped before any work is spent on it.
    seen: std::collections::HashSet<Hash32>,
}

/// Distinct blocks per epoch whose hashes are remembered. Reaching it needs that many
/// distinct blocks that each beat the epoch's best score so far; past it, blocks are
/// still judged (never refused for it), only no longer remembered.
pub const MAX_SEEN_BLOCKS: usize = 4096;

impl Epoch {
    /// Epoch `number` on `tip`, starting at `start_unix_ms` and lasting `duration`.
    pub fn begin(
        number: u64,
        tip: &BlockHeader,
        difficulty: u64,
        start_unix_ms: u64,
        duration: Duration,
    ) -> Self {
        let tip_hash = tip.hash();
        let duration_ms = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
        Self {
            number,
            tip_hash,
            tip_height: tip.height,
            difficulty,
            challenge: epoch_challenge(&tip_hash, number),
            start_unix_ms,
            deadline_unix_ms: start_unix_ms.saturating_add(duration_ms),
            proofs: 0,
            blocks: 0,
            closed: false,
            best: None,
            seen: std::collections::HashSet::new(),
        }
    }

    /// Whether a block is worth checking: claiming a score below the leader's (a block that
    /// cannot lead needs no check at all, as the epoch keeps one block; this costs nothing),
    /// and not seen before in this epoch. "Seen" is keyed on the hash of the whole encoding,
    /// not the header hash (which does not cover the proof or the transactions), so a
    /// corrupted copy sent first cannot make the real block look like a replay. Records it.
    pub fn worth_checking(&mut self, block: &Block) -> bool {
        if let Some(best) = &self.best {
            if compare_scores(&block.header.proof_score, &best.block.header.proof_score)
                != std::cmp::Ordering::Less
            {
                return false;
            }
        }
        let digest = spacetime::hash::sha256(&block.encode());
        if self.seen.contains(&digest) {
            return false;
        }
        if self.seen.len() < MAX_SEEN_BLOCKS {
            self.seen.insert(digest);
        }
        true
    }

    /// The NewEpoch message announcing this epoch.
    pub fn announcement(&self) -> NewEpoch {
        NewEpoch {
            epoch: self.number,
            tip_hash: self.tip_hash,
            tip_height: self.tip_height,
            difficulty: self.difficulty,
            challenge: self.challenge,
            deadline_unix_ms: self.deadline_unix_ms,
        }
    }

    /// The context a block of this epoch is validated in, at `now_unix` (seconds).
    pub fn context(&self, now_unix: u64) -> ChainContext {
        ChainContext::for_epoch(&self.announcement(), self.start_unix_ms / 1000, now_unix)
    }

    /// Whether proofs and blocks are still taken at `now_unix_ms`.
    pub fn is_open(&self, now_unix_ms: u64) -> bool {
        !self.closed && now_unix_ms < self.deadline_unix_ms
    }

    /// Stops taking proofs and blocks (the deadline has come).
    pub fn close(&mut self) {
        self.closed = true;
    }

    /// Records a block that passed validation against this epoch; the lowest score leads,
    /// and on equal scores the first block stays.
    pub fn offer(&mut self, block: Block, peer: PeerId) -> Offer {
        self.blocks += 1;
        if let Some(best) = &self.best {
            if best.block.hash() == block.hash() {
                return Offer::Duplicate;
            }
            if compare_scores(&block.header.proof_score, &best.block.header.proof_score)
                != std::cmp::Ordering::Less
            {
                return Offer::NotBetter {
                    best_score: best.block.header.proof_score,
                };
            }
        }
        self.best = Some(Candidate { block, peer });
        Offer::Leading
    }

    /// The leading block, if any.
    pub fn leader(&self) -> Option<&Candidate> {
        self.best.as_ref()
    }

    /// Takes the winner out (at the deadline).
    pub fn take_winner(&mut self) -> Option<Candidate> {
        self.best.take()
    }

    /// Judges a ProofSubmission against this epoch (decisions D9): the height must be
    /// `tip + 1` and the proof must pass the strict check of decisions D2 against this
    /// epoch's challenge, with no target (a proof above the target is still a valid proof).
    /// Returns its score.
    pub fn judge_proof(
        &self,
        block_height: u64,
        miner_id: &[u8; 33],
        proof: &BlockProof,
    ) -> Result<Hash32, SubmissionError> {
        let expected = self.tip_height.saturating_add(1);
        if block_height != expected {
            return Err(SubmissionError::WrongHeight {
                expected,
                actual: block_height,
            });
        }
        check_proof(&self.challenge, miner_id, proof).map_err(SubmissionError::Invalid)
    }
}

/// Strict proof check (decisions D2) against `challenge`; the plot root is the one the
/// path leads to, which the plot header hash in the metadata must then commit to.
pub fn check_proof(
    challenge: &Hash32,
    miner_id: &[u8; 33],
    proof: &BlockProof,
) -> Result<Hash32, ProofError> {
    // A path with mismatched lengths has no root; the check then fails on the path shape.
    let root = proof.to_merkle_path().computed_root().unwrap_or([0; 32]);
    let s = score(challenge, &proof.leaf);
    verify_block_proof(proof, challenge, &root, &s, None, miner_id)?;
    Ok(s)
}

/// Why a ProofSubmission was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubmissionError {
    /// The submission names another height than `tip + 1`.
    #[error("proof is for height {actual}, but the current epoch builds height {expected}")]
    WrongHeight {
        /// tip height + 1.
        expected: u64,
        /// The height named.
        actual: u64,
    },
    /// The proof fails the strict check.
    #[error("invalid proof: {0}")]
    Invalid(ProofError),
}

/// The first epoch to run on `tip` after the epoch `last_started` (0 when none): the next
/// number, and at least `tip.epoch + 1` and `tip.height + 1` (decisions D9).
pub fn next_epoch_number(last_started: u64, tip: &BlockHeader) -> u64 {
    last_started
        .saturating_add(1)
        .max(tip.epoch.saturating_add(1))
        .max(tip.height.saturating_add(1))
}

/// The last epoch number started, kept across restarts.
#[derive(Debug, Clone)]
pub struct EpochCounter {
    path: PathBuf,
}

impl EpochCounter {
    /// The counter in `data_dir`.
    pub fn new(data_dir: &Path) -> Self {
        Self {
            path: data_dir.join(EPOCH_FILE),
        }
    }

    /// The stored number; 0 when there is none. A damaged file reads as 0 (the chain's tip
    /// then sets the floor), with the reason returned for the log.
    pub fn load(&self) -> (u64, Option<String>) {
        match std::fs::read_to_string(&self.path) {
            Ok(text) => match text.trim().parse::<u64>() {
                Ok(n) => (n, None),
                Err(_) => (0, Some(format!("{} is not a number", self.path.display()))),
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound => (0, None),
            Err(e) => (0, Some(format!("cannot read {}: {e}", self.path.display()))),
        }
    }

    /// Stores `number` durably through `spacetime::atomic_file` (a temporary file fsynced,
    /// renamed over the counter, then the directory fsynced), so after a crash the file holds either the
    /// old or the new number, never a torn one, and never an older number once this
    /// returned. The node stores a number before announcing its epoch.
    pub fn store(&self, number: u64) -> io::Result<()> {
        spacetime::atomic_file::write_atomic(&self.path, format!("{number}\n").as_bytes())
    }

    /// The counter file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{header, unchecked_proof};

    fn block_with_score(first_byte: u8, nonce: u8) -> Block {
        let mut h = header(1, 1);
        h.proof_score = [first_byte; 32];
        h.plot_root = [nonce; 32];
        Block {
            header: h,
            transactions: vec![],
            proof: unchecked_proof(),
        }
    }

    #[test]
    fn lowest_score_wins_and_ties_keep_the_first() {
        let mut e = Epoch::begin(1, &header(0, 0), 1, 0, Duration::from_secs(1));
        assert_eq!(e.offer(block_with_score(0x50, 1), 1), Offer::Leading);
        assert_eq!(
            e.offer(block_with_score(0x60, 2), 2),
            Offer::NotBetter {
                best_score: [0x50; 32]
            }
        );
        assert_eq!(e.offer(block_with_score(0x20, 3), 3), Offer::Leading);
        assert_eq!(e.offer(block_with_score(0x20, 3), 3), Offer::Duplicate);
        // Same score, different block: the first one stays.
        assert!(matches!(
            e.offer(block_with_score(0x20, 4), 4),
            Offer::NotBetter { .. }
        ));
        assert_eq!(e.blocks, 5);
        let w = e.take_winner().unwrap();
        assert_eq!((w.peer, w.block.header.proof_score), (3, [0x20; 32]));
        assert!(e.take_winner().is_none());
    }

    #[test]
    fn epochs_open_until_the_deadline_or_close() {
        let tip = header(4, 7);
        let mut e = Epoch::begin(9, &tip, 5, 10_000, Duration::from_millis(500));
        assert_eq!(e.challenge, epoch_challenge(&tip.hash(), 9));
        let a = e.announcement();
        assert_eq!(
            (a.epoch, a.tip_height, a.difficulty, a.deadline_unix_ms),
            (9, 4, 5, 10_500)
        );
        assert!(e.is_open(10_499));
        assert!(!e.is_open(10_500));
        e.close();
        assert!(!e.is_open(10_000));
        let ctx = e.context(11);
        assert_eq!((ctx.expected_epoch, ctx.epoch_start_unix), (9, 10));
    }

    #[test]
    fn epoch_numbers_only_grow_and_respect_the_tip() {
        // First epoch after genesis is 1.
        assert_eq!(next_epoch_number(0, &header(0, 0)), 1);
        // Empty epochs advanced the counter: continue from it.
        assert_eq!(next_epoch_number(7, &header(2, 5)), 8);
        // A fresh counter on a tall chain starts after the tip's epoch and height.
        assert_eq!(next_epoch_number(0, &header(10, 12)), 13);
        assert_eq!(next_epoch_number(0, &header(10, 3)), 11);
    }

    #[test]
    fn wrong_height_is_refused_before_the_proof_is_checked() {
        let e = Epoch::begin(1, &header(0, 0), 1, 0, Duration::from_secs(1));
        let b = block_with_score(1, 1);
        assert_eq!(
            e.judge_proof(5, &[0xED; 33], &b.proof),
            Err(SubmissionError::WrongHeight {
                expected: 1,
                actual: 5
            })
        );
        assert!(matches!(
            e.judge_proof(1, &[0x02; 33], &b.proof),
            Err(SubmissionError::Invalid(ProofError::UnsupportedMinerId {
                tag: 2
            }))
        ));
    }

    #[test]
    fn counter_round_trips_and_tolerates_damage() {
        let dir = tempfile::tempdir().unwrap();
        let c = EpochCounter::new(dir.path());
        assert_eq!(c.load(), (0, None));
        c.store(42).unwrap();
        assert_eq!(c.load(), (42, None));
        std::fs::write(dir.path().join(EPOCH_FILE), "x").unwrap();
        let (n, why) = c.load();
        assert_eq!(n, 0);
        assert!(why.unwrap().contains("not a number"));
    }

    #[test]
    fn counter_store_replaces_whole_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let c = EpochCounter::new(dir.path());
        c.store(7).unwrap();
        assert_eq!(c.load(), (7, None));
        c.store(u64::MAX).unwrap();
        assert_eq!(
            std::fs::read_to_string(c.path()).unwrap(),
            format!("{}\n", u64::MAX)
        );
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [std::ffi::OsString::from(EPOCH_FILE)]);
        // A failure is reported, not swallowed (the node then does not announce).
        let gone = EpochCounter::new(&dir.path().join("missing"));
        assert!(gone.store(1).is_err());
    }

    #[test]
    fn a_crash_at_any_step_of_a_store_leaves_the_old_or_the_new_number() {
        use spacetime::atomic_file::{crash_points::crashed, Step};
        let dir = tempfile::tempdir().unwrap();
        let c = EpochCounter::new(dir.path());
        for (i, step) in Step::ALL.into_iter().enumerate() {
            let old = 10 * i as u64;
            c.store(old).unwrap();
            crashed(step, || c.store(old + 1)).unwrap_err();
            let expected = if step == Step::Renamed { old + 1 } else { old };
            assert_eq!(c.load(), (expected, None), "{step:?}");
        }
    }
}
