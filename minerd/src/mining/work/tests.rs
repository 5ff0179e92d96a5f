//! One epoch's work on tiny real plots.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use spacetime::block::Transaction;
use spacetime::cache::MerkleCache;
use spacetime::consensus::epoch_challenge;
use spacetime::keys::MinerKey;
use spacetime::plot::{create_plot, CacheLevels, CreatePlot, PlotFile};
use spacetime::scan::ScanStrategy;
use spacetime::validate::{validate_block, ChainContext};
use spacetime::wire::NewEpoch;
use uuid::Uuid;

use super::*;
use crate::plots::FarmedPlot;

/// A plot of `2^10` leaves for `key` in `dir`, with its cache loaded.
pub(crate) fn tiny_plot(dir: &std::path::Path, key: &MinerKey, seed: u8) -> FarmedPlot {
    let created = create_plot(
        &CreatePlot {
            path: dir.join(format!("p{seed}.plot")),
            miner_pk: key.public_key(),
            seed: [seed; 32],
            leaf_count: 1 << 10,
            cache: CacheLevels::TopLevels(4),
            threads: Some(1),
        },
        &mut |_| {},
        &AtomicBool::new(false),
    )
    .unwrap();
    let file = PlotFile::open(&created.path).unwrap();
    let cache = created
        .cache_path
        .map(|p| Arc::new(MerkleCache::read(&p).unwrap()));
    FarmedPlot {
        id: Uuid::new_v4(),
        file: Arc::new(file),
        cache,
    }
}

fn epoch(difficulty: u64) -> NewEpoch {
    let tip = [3; 32];
    NewEpoch {
        epoch: 9,
        tip_hash: tip,
        tip_height: 4,
        difficulty,
        challenge: epoch_challenge(&tip, 9),
        deadline_unix_ms: super::super::epoch::unix_millis() + 10_000,
    }
}

fn input(plots: Vec<FarmedPlot>, key: &Arc<MinerKey>, e: NewEpoch) -> WorkInput {
    WorkInput {
        epoch: e,
        epoch_start_unix: unix_secs(),
        plots: Arc::new(plots),
        strategy: ScanStrategy::Full,
        scan_deadline: Instant::now() + Duration::from_secs(10),
        cancel: Arc::new(AtomicBool::new(false)),
        key: key.clone(),
        transactions: Vec::new(),
        monitor: true,
        pool: None,
    }
}

fn signed_tx(fee: u64) -> Transaction {
    let sender = MinerKey::from_secret_bytes(&[5; 32]);
    let mut tx = Transaction {
        version: 1,
        sender: sender.miner_id(),
        recipient: MinerKey::from_secret_bytes(&[6; 32]).miner_id(),
        amount: 10,
        nonce: fee,
        fee,
        signature: [0; 64],
    };
    tx.sign(&sender);
    tx
}

#[test]
fn a_winning_proof_gives_a_block_that_passes_the_node_rules() {
    let dir = tempfile::tempdir().unwrap();
    let key = Arc::new(MinerKey::from_secret_bytes(&[1; 32]));
    let plots = vec![
        tiny_plot(dir.path(), &key, 1),
        tiny_plot(dir.path(), &key, 2),
    ];
    let e = epoch(1);
    let mut inp = input(plots, &key, e);
    inp.transactions = vec![signed_tx(3), signed_tx(1)];
    let WorkOutcome::Found(found) = run(inp) else {
        panic!("expected a proof");
    };
    assert_eq!(found.leaves_scanned, 2 << 10);
    let block = found.block.expect("difficulty 1 always wins").unwrap();
    assert_eq!(block.transactions.len(), 2);
    assert_eq!(block.header.height, 5);
    assert_eq!(block.header.proof_score, found.score);
    let ctx = ChainContext::for_epoch(&e, unix_secs(), unix_secs());
    validate_block(&block, &ctx).unwrap();
}

#[test]
fn a_losing_proof_is_still_verified_and_submitted_without_a_block() {
    let dir = tempfile::tempdir().unwrap();
    let key = Arc::new(MinerKey::from_secret_bytes(&[1; 32]));
    let e = epoch(u64::MAX / 2);
    let WorkOutcome::Found(found) = run(input(vec![tiny_plot(dir.path(), &key, 1)], &key, e))
    else {
        panic!("expected a proof");
    };
    assert!(found.block.is_none());
    spacetime::validate::verify_block_proof(
        &found.proof,
        &e.challenge,
        &found.proof.to_merkle_path().computed_root().unwrap(),
        &found.score,
        None,
        &key.miner_id(),
    )
    .unwrap();
}

#[test]
fn a_plot_of_another_key_fails_self_verification() {
    let dir = tempfile::tempdir().unwrap();
    let other = MinerKey::from_secret_bytes(&[2; 32]);
    let key = Arc::new(MinerKey::from_secret_bytes(&[1; 32]));
    let outcome = run(input(
        vec![tiny_plot(dir.path(), &other, 1)],
        &key,
        epoch(1),
    ));
    let WorkOutcome::Failed { reason } = outcome else {
        panic!("expected a failure, got {outcome:?}");
    };
    assert!(reason.contains("fails verification"), "{reason}");
    assert!(reason.contains("p1.plot"), "{reason}");
}

#[test]
fn no_plots_or_cancelled_work_gives_no_leaf() {
    let dir = tempfile::tempdir().unwrap();
    let key = Arc::new(MinerKey::from_secret_bytes(&[1; 32]));
    let WorkOutcome::NoLeaf { reason } = run(input(vec![], &key, epoch(1))) else {
        panic!("expected no leaf");
    };
    assert_eq!(reason, "no valid plots");
    let inp = input(vec![tiny_plot(dir.path(), &key, 1)], &key, epoch(1));
    inp.cancel.store(true, std::sync::atomic::Ordering::Relaxed);
    let WorkOutcome::NoLeaf { reason } = run(inp) else {
        panic!("expected no leaf");
    };
    assert_eq!(reason, "abandoned");
}

#[test]
fn an_invalid_transaction_does_not_cost_the_block() {
    let dir = tempfile::tempdir().unwrap();
    let key = Arc::new(MinerKey::from_secret_bytes(&[1; 32]));
    let e = epoch(1);
    let mut bad = signed_tx(2);
    bad.amount += 1; // breaks the signature
    let mut inp = input(vec![tiny_plot(dir.path(), &key, 1)], &key, e);
    inp.transactions = vec![bad];
    let WorkOutcome::Found(found) = run(inp) else {
        panic!("expected a proof");
    };
    let block = found.block.unwrap().unwrap();
    assert!(block.transactions.is_empty());
}
