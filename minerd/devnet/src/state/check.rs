//! The checks of a block that need no node state ([`check_block`]), run on the blocking
//! pool without the node's lock, cheapest and hardest to forge first.

use spacetime::block::Block;
use spacetime::consensus::MAX_BLOCK_TRANSACTIONS;
use spacetime::hash::{to_hex, Hash32};
use spacetime::validate::{validate_block, verify_header_proof, BlockError, ChainContext};
use spacetime::wire::Rejection;
use thiserror::Error;

impl BlockCheckError {
    /// The refusal of block `hash` for this error, naming the transaction it is about.
    pub(crate) fn rejection(&self, hash: Hash32) -> Rejection {
        match self {
            Self::DuplicateTransaction { index, hash: tx } => {
                Rejection::block_for_transaction(hash, *index, *tx, "is listed twice")
            }
            other => Rejection::block(hash, other.to_string()),
        }
    }
}

/// A block admitted for checking, with the context of the epoch it names.
#[derive(Debug)]
pub(crate) struct PendingBlock {
    /// The block.
    pub block: Block,
    /// The open epoch's context at admission.
    pub ctx: ChainContext,
}

/// A block that passed every rule [`check_block`] can judge without the node state.
#[derive(Debug)]
pub(crate) struct CheckedBlock {
    pub(super) block: Block,
    /// The epoch it was checked against.
    pub(super) epoch: u64,
    /// Its transactions' hashes, in order (each listed once).
    pub(super) tx_hashes: Vec<Hash32>,
}

/// Why [`check_block`] refused a block.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub(crate) enum BlockCheckError {
    /// More transactions than a block may carry (refused before any signature is checked).
    #[error("it carries {count} transactions; a block may carry at most {max}")]
    TooManyTransactions {
        /// Transactions carried.
        count: usize,
        /// [`MAX_BLOCK_TRANSACTIONS`].
        max: usize,
    },
    /// A block rule is broken.
    #[error(transparent)]
    Invalid(#[from] BlockError),
    /// The same transaction is listed twice.
    #[error("transaction #{index} {} is listed twice", to_hex(.hash))]
    DuplicateTransaction {
        /// Position of the second listing.
        index: usize,
        /// The transaction hash.
        hash: Hash32,
    },
}

/// Every check of a block against the epoch context `ctx` that needs no node state, cheapest
/// and hardest to forge first: the transaction count, then the challenge and the proof
/// against the epoch's target (hashes only, and passing them needs a real plot and a
/// winning score), and only then the signatures with every other rule of
/// `validate_block`, and duplicate transactions. Pure CPU work: async callers run it on the
/// blocking pool, without the node's lock.
pub(crate) fn check_block(
    block: Block,
    ctx: &ChainContext,
) -> Result<CheckedBlock, BlockCheckError> {
    let count = block.transactions.len();
    if count > MAX_BLOCK_TRANSACTIONS {
        return Err(BlockCheckError::TooManyTransactions {
            count,
            max: MAX_BLOCK_TRANSACTIONS,
        });
    }
    let h = &block.header;
    if h.challenge != ctx.expected_challenge {
        return Err(BlockError::ChallengeMismatch {
            expected: ctx.expected_challenge,
            actual: h.challenge,
        }
        .into());
    }
    verify_header_proof(&block, ctx.expected_difficulty)?;
    // Duplicate transactions are found with hashes alone: before any signature.
    let mut tx_hashes = Vec::with_capacity(count);
    let mut seen = std::collections::HashSet::with_capacity(count);
    for (index, tx) in block.transactions.iter().enumerate() {
        let hash = tx.hash();
        if !seen.insert(hash) {
            return Err(BlockCheckError::DuplicateTransaction { index, hash });
        }
        tx_hashes.push(hash);
    }
    validate_block(&block, ctx)?;
    Ok(CheckedBlock {
        epoch: ctx.expected_epoch,
        block,
        tx_hashes,
    })
}
