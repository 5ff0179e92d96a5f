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

#[test]
fn expected_time_to_win_follows_difficulty_and_farm() {
    let epoch = Duration::from_secs(10);
    // Difficulty 1: every leaf wins, so every epoch is won.
    assert_eq!(expected_time_to_win(1, 1, epoch), Some(epoch));
    // Difficulty d with L leaves, L << d: about d / L epochs.
    let t = expected_time_to_win(1_000, 1_000_000_000, epoch).unwrap();
    let want = 10.0 * 1e6;
    assert!((t.as_secs_f64() / want - 1.0).abs() < 1e-3, "{t:?}");
    // Twice the leaves, half the time.
    let t2 = expected_time_to_win(2_000, 1_000_000_000, epoch).unwrap();
    assert!((t.as_secs_f64() / t2.as_secs_f64() - 2.0).abs() < 1e-3);
    assert_eq!(expected_time_to_win(0, 5, epoch), None);
    assert_eq!(expected_time_to_win(5, 5, Duration::ZERO), None);
}

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
        proof_deadline: Instant::now() + Duration::from_secs(10),
        cancel: Arc::new(AtomicBool::new(false)),
        key: key.clone(),
        monitor: true,
        plots_at_once: 2,
        scan_rate: Arc::new(std::sync::atomic::AtomicU64::new(0)),
        pool: None,
        progress: Default::default(),
    }
}

/// A transfer signed by a fixed test key.
pub(crate) fn signed_tx(nonce: u64, fee: u64) -> Transaction {
    let sender = MinerKey::from_secret_bytes(&[5; 32]);
    let mut tx = Transaction {
        version: 1,
        sender: sender.miner_id(),
        recipient: MinerKey::from_secret_bytes(&[6; 32]).miner_id(),
        amount: 10,
        nonce,
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
    let inp = input(plots, &key, e);
    let start = inp.epoch_start_unix;
    let rate = inp.scan_rate.clone();
    let WorkOutcome::Found(found) = run(inp) else {
        panic!("expected a proof");
    };
    assert_eq!(found.leaves_scanned, 2 << 10);
    assert!(found.wins, "difficulty 1 always wins");
    assert!(f64::from_bits(rate.load(std::sync::atomic::Ordering::Relaxed)) > 0.0);
    let txs = [signed_tx(3, 3), signed_tx(1, 1)];
    let block = build_block(&e, start, found.plot_root, &found.proof, &txs, &key).unwrap();
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
    assert!(!found.wins);
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
    let mut bad = signed_tx(2, 2);
    bad.amount += 1; // breaks the signature
    let inp = input(vec![tiny_plot(dir.path(), &key, 1)], &key, e);
    let start = inp.epoch_start_unix;
    let WorkOutcome::Found(found) = run(inp) else {
        panic!("expected a proof");
    };
    let block = build_block(&e, start, found.plot_root, &found.proof, &[bad], &key).unwrap();
    assert!(block.transactions.is_empty());
}

#[test]
fn the_work_is_a_proof_in_progress_from_start_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let key = Arc::new(MinerKey::from_secret_bytes(&[1; 32]));
    let plots = vec![tiny_plot(dir.path(), &key, 1)];
    // Occupy the only thread of the work's pool: the work then waits to start, and plot
    // jobs must already see a proof in progress.
    let pool = Arc::new(
        rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap(),
    );
    let (busy_tx, busy_rx) = std::sync::mpsc::channel::<()>();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    pool.spawn(move || {
        busy_tx.send(()).unwrap();
        let _ = release_rx.recv();
    });
    busy_rx.recv().unwrap();
    let stats = crate::stats::MiningStats::new(String::new());
    let gate = stats.proving_gate();
    let mut inp = input(plots, &key, epoch(1));
    inp.pool = Some(pool);
    let worker = std::thread::spawn(move || run_proving(inp, &stats));
    let start = Instant::now();
    while !gate.is_active() {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the work never marked a proof in progress"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(!worker.is_finished());
    release_tx.send(()).unwrap();
    let outcome = worker.join().unwrap();
    assert!(matches!(outcome, WorkOutcome::Found(_)), "{outcome:?}");
    assert!(!gate.is_active(), "the mark ends with the work");
}

/// An epoch whose best leaf over `plots` lies in plot `want` (deterministic: the first
/// epoch number that gives it).
fn epoch_won_by(plots: &[FarmedPlot], want: usize, difficulty: u64) -> NewEpoch {
    let files: Vec<&PlotFile> = plots.iter().map(|p| &*p.file).collect();
    for n in 1..200u64 {
        let tip = [n as u8; 32];
        let challenge = epoch_challenge(&tip, n);
        let out = spacetime::scan::scan_plots(
            &files,
            &challenge,
            &ScanStrategy::Full,
            None,
            &AtomicBool::new(false),
        );
        if out.best.map(|b| b.plot) == Some(want) {
            return NewEpoch {
                epoch: n,
                tip_hash: tip,
                tip_height: n - 1,
                difficulty,
                challenge,
                deadline_unix_ms: super::super::epoch::unix_millis() + 10_000,
            };
        }
    }
    panic!("no epoch is won by plot {want}");
}

#[test]
fn a_bad_best_plot_falls_back_to_the_next_plots_best_leaf() {
    let dir = tempfile::tempdir().unwrap();
    let stranger = MinerKey::from_secret_bytes(&[2; 32]);
    let key = Arc::new(MinerKey::from_secret_bytes(&[1; 32]));
    let plots = vec![
        tiny_plot(dir.path(), &stranger, 1),
        tiny_plot(dir.path(), &key, 2),
    ];
    let own_id = plots[1].id;
    let e = epoch_won_by(&plots, 0, 1);
    for at_once in [1, 2] {
        let mut inp = input(plots.clone(), &key, e);
        inp.plots_at_once = at_once;
        let outcome = run(inp);
        let WorkOutcome::Found(found) = outcome else {
            panic!("expected the second plot's proof, got {outcome:?}");
        };
        assert_eq!(found.plot_id, own_id);
        assert_eq!(found.leaves_scanned, 2 << 10);
        assert!(found.wins);
        spacetime::validate::verify_block_proof(
            &found.proof,
            &e.challenge,
            &found.plot_root,
            &found.score,
            None,
            &key.miner_id(),
        )
        .unwrap();
    }
}

#[test]
fn plots_scanned_one_at_a_time_find_the_same_best_leaf() {
    let dir = tempfile::tempdir().unwrap();
    let key = Arc::new(MinerKey::from_secret_bytes(&[1; 32]));
    let plots: Vec<FarmedPlot> = (1..=3).map(|s| tiny_plot(dir.path(), &key, s)).collect();
    let e = epoch_won_by(&plots, 2, 1);
    let mut found = Vec::new();
    for at_once in [1, 2, 3] {
        let mut inp = input(plots.clone(), &key, e);
        inp.plots_at_once = at_once;
        let WorkOutcome::Found(f) = run(inp) else {
            panic!("expected a proof");
        };
        assert_eq!(f.leaves_scanned, 3 << 10);
        found.push((f.plot_id, f.leaf_index, f.score));
    }
    assert_eq!(found[0].0, plots[2].id);
    assert!(found.windows(2).all(|w| w[0] == w[1]), "{found:?}");
}

#[test]
fn a_proof_that_cannot_finish_in_time_is_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let key = Arc::new(MinerKey::from_secret_bytes(&[1; 32]));
    let mut inp = input(vec![tiny_plot(dir.path(), &key, 1)], &key, epoch(1));
    inp.proof_deadline = Instant::now();
    let outcome = run(inp);
    let WorkOutcome::Failed { reason } = outcome else {
        panic!("expected the plot to be skipped, got {outcome:?}");
    };
    assert!(
        reason.contains("skipped") && reason.contains("p1.plot"),
        "{reason}"
    );
}

#[test]
fn every_disk_is_scanned_at_once_and_sampling_keeps_per_disk_bounds() {
    // Plots on disks 7, 9, 7, 7, 9.
    let devices = [7, 9, 7, 7, 9];
    // Full and deadline: one round; the core reads each disk in file order.
    assert_eq!(scan_rounds(&devices, 1, true), vec![vec![0, 1, 2, 3, 4]]);
    // Sampling, one plot per disk at a time: both disks in every round.
    assert_eq!(
        scan_rounds(&devices, 1, false),
        vec![vec![0, 1], vec![2, 4], vec![3]]
    );
    assert_eq!(
        scan_rounds(&devices, 2, false),
        vec![vec![0, 1, 2, 4], vec![3]]
    );
    assert_eq!(
        scan_rounds(&devices, 0, false),
        scan_rounds(&devices, 1, false)
    );
    assert!(scan_rounds(&[], 1, false).is_empty());
    // Every plot exactly once, whatever the bound.
    for per_disk in 1..=6 {
        let mut all: Vec<usize> = scan_rounds(&devices, per_disk, false)
            .into_iter()
            .flatten()
            .collect();
        all.sort_unstable();
        assert_eq!(all, [0, 1, 2, 3, 4], "{per_disk}");
    }
}

#[test]
fn a_sampling_scan_in_rounds_finds_the_same_best_leaf_as_one_call() {
    let dir = tempfile::tempdir().unwrap();
    let key = Arc::new(MinerKey::from_secret_bytes(&[1; 32]));
    let plots: Vec<FarmedPlot> = (1..=3).map(|s| tiny_plot(dir.path(), &key, s)).collect();
    let e = epoch(5);
    let mut found = Vec::new();
    for at_once in [1, 3] {
        let mut inp = input(plots.clone(), &key, e);
        inp.strategy = ScanStrategy::Sampling { samples: 100 };
        inp.plots_at_once = at_once;
        let WorkOutcome::Found(f) = run(inp) else {
            panic!("expected a proof");
        };
        assert_eq!(f.leaves_scanned, 300);
        found.push((f.plot_id, f.leaf_index, f.score));
    }
    assert_eq!(found[0], found[1]);
}
