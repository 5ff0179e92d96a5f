//! Node state tests: admission, check order, epochs, transactions.

use std::time::Duration;

use spacetime::consensus::DifficultyAdjustmentConfig;
use spacetime::validate::{ProofError, TransactionError};
use spacetime::wire::MAX_FRAME_LENGTH;

use spacetime::consensus::MAX_BLOCK_TRANSACTIONS;
use spacetime::validate::BlockError;

use super::check::BlockCheckError;
use super::*;
use crate::chain::{self, GenesisParams};
use crate::test_support::{signed_tx, TestMiner};

const ADDR: &str = "127.0.0.1:9";

/// A node state on a new chain in `dir`, in epoch 1, open for `epoch` from now.
fn state(dir: &std::path::Path, epoch: Duration) -> NodeState {
    let params = GenesisParams {
        network_id: spacetime::consensus::DEVNET_NETWORK_ID.into(),
        initial_difficulty: 1,
        epoch_duration_secs: 1,
        adjustment: DifficultyAdjustmentConfig::default(),
    };
    let (chain, _, _) = chain::open(dir, &params, now_unix_ms() / 1000).unwrap();
    let e = Epoch::begin(
        1,
        &chain.tip().header,
        chain.next_difficulty(),
        now_unix_ms(),
        epoch,
    );
    NodeState::new(chain, e, Mempool::new(10, 10), MAX_FRAME_LENGTH)
}

fn admitted(st: &mut NodeState, block: Block) -> PendingBlock {
    match st.handle(
        1,
        ADDR.parse().unwrap(),
        Message::NewBlock(block),
        now_unix_ms(),
    ) {
        Step::CheckBlock(p) => *p,
        other => panic!("block not admitted: {other:?}"),
    }
}

#[test]
fn too_many_transactions_are_refused_before_any_signature_is_checked() {
    let dir = tempfile::tempdir().unwrap();
    let mut st = state(dir.path(), Duration::from_secs(30));
    let miner = TestMiner::new(dir.path(), 1);
    // Unsigned transactions: a signature check would fail on the first one.
    let tx = signed_tx(5, 1);
    let txs: Vec<Transaction> = (0..=MAX_BLOCK_TRANSACTIONS as u64)
        .map(|nonce| Transaction {
            nonce,
            signature: [0; 64],
            ..tx
        })
        .collect();
    let block = miner.block(&st.epoch.announcement(), txs);
    let p = admitted(&mut st, block);
    assert_eq!(
        check_block(p.block, &p.ctx).unwrap_err(),
        BlockCheckError::TooManyTransactions {
            count: MAX_BLOCK_TRANSACTIONS + 1,
            max: MAX_BLOCK_TRANSACTIONS
        }
    );
}

#[test]
fn the_proof_is_checked_before_transaction_signatures() {
    let dir = tempfile::tempdir().unwrap();
    let mut st = state(dir.path(), Duration::from_secs(30));
    let miner = TestMiner::new(dir.path(), 2);
    let mut forged = signed_tx(5, 1);
    forged.amount = 6;
    let mut block = miner.block(&st.epoch.announcement(), vec![forged]);
    // A wrong leaf breaks the proof (and the header signature does not cover it).
    block.proof.leaf[0] ^= 1;
    let p = admitted(&mut st, block);
    let err = check_block(p.block, &p.ctx).unwrap_err();
    assert!(
        matches!(
            err,
            BlockCheckError::Invalid(BlockError::Proof(ProofError::ScoreMismatch { .. }))
        ),
        "{err:?}"
    );
    // With the proof intact the forged transaction is what fails.
    let block = miner.block(&st.epoch.announcement(), vec![forged]);
    let p = admitted(&mut st, block);
    assert!(matches!(
        check_block(p.block, &p.ctx).unwrap_err(),
        BlockCheckError::Invalid(BlockError::Transaction {
            index: 0,
            error: TransactionError::InvalidSignature { .. }
        })
    ));
    // A transaction listed twice is caught too.
    let tx = signed_tx(5, 1);
    let block = miner.block(&st.epoch.announcement(), vec![tx, tx]);
    let p = admitted(&mut st, block);
    assert!(matches!(
        check_block(p.block, &p.ctx).unwrap_err(),
        BlockCheckError::DuplicateTransaction { index: 1, .. }
    ));
}

#[test]
fn a_block_checked_while_its_epoch_ended_is_not_offered() {
    let dir = tempfile::tempdir().unwrap();
    let mut st = state(dir.path(), Duration::from_secs(30));
    let addr = ADDR.parse().unwrap();
    let miner = TestMiner::new(dir.path(), 3);
    let tx = signed_tx(5, 1);
    let block = miner.block(&st.epoch.announcement(), vec![tx]);
    let p = admitted(&mut st, block.clone());
    let checked = check_block(p.block, &p.ctx).unwrap();
    assert_eq!(checked.tx_hashes, [tx.hash()]);
    // The next epoch started while the block was checked: it is late, not offered.
    st.start_epoch(2, now_unix_ms(), Duration::from_secs(30));
    assert_eq!(
        st.offer_block(1, addr, checked, now_unix_ms()),
        Outcome::default()
    );
    assert!(st.epoch.leader().is_none());
    assert_eq!(st.epoch.blocks, 0);

    // Checked and offered in the same open epoch, it leads.
    let block = miner.block(&st.epoch.announcement(), vec![tx]);
    let p = admitted(&mut st, block.clone());
    let checked = check_block(p.block, &p.ctx).unwrap();
    assert_eq!(
        st.offer_block(1, addr, checked, now_unix_ms()),
        Outcome::default()
    );
    assert_eq!(st.epoch.leader().map(|c| &c.block), Some(&block));

    // The same epoch, closed at its deadline while a block was checked: late as well.
    let other = TestMiner::new(dir.path(), 4);
    // (Without a leader, so that this block is worth checking whatever its score.)
    st.epoch.take_winner();
    let block = other.block(&st.epoch.announcement(), vec![]);
    let p = admitted(&mut st, block);
    let checked = check_block(p.block, &p.ctx).unwrap();
    st.epoch.close();
    st.offer_block(2, addr, checked, now_unix_ms());
    assert_eq!(st.epoch.blocks, 1);
}

#[test]
fn a_transaction_is_checked_outside_the_lock_then_added_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut st = state(dir.path(), Duration::from_secs(30));
    let addr: SocketAddr = ADDR.parse().unwrap();
    let tx = signed_tx(5, 1);
    // The locked step does no signature work: it hands the transaction back.
    assert!(matches!(
        st.handle(1, addr, Message::Transaction(tx), now_unix_ms()),
        Step::CheckTransaction(t) if t == tx
    ));
    assert_eq!(st.add_transaction(1, addr, tx), Outcome::default());
    assert_eq!(st.add_transaction(1, addr, tx), Outcome::default());
    assert_eq!(st.mempool.len(), 1);
}
