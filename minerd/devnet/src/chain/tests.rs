//! Chain and chain-file tests: replay, truncation, adjustment.

use std::time::Duration;

use std::fs::OpenOptions;
use std::io::Write;

use spacetime::consensus::GenesisConfig;
use spacetime::keys::MinerKey;
use std::path::Path;

use super::checkpoint::{Checkpoint, CHECKPOINT_FILE};
use super::store::*;
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
    let at = store.append(&block).unwrap();
    chain.push_stored(block.clone(), &BlockHashes::of(&block), Some(at));
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
    assert!(matches!(replayed.find_by_hash(&b1.hash()), Some(StoredBlock::Memory(b)) if b == &b1));

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

#[test]
fn a_crash_while_creating_the_chain_leaves_no_chain_or_a_whole_one() {
    use spacetime::atomic_file::{crash_points::crashed, remove_stale_temporaries, Step};
    for step in Step::ALL {
        let dir = tempfile::tempdir().unwrap();
        // The genesis key first, so that the armed crash hits the chain file.
        MinerKey::load_or_create(&dir.path().join(GENESIS_KEY_FILE)).unwrap();
        let now = now_unix_ms() / 1000;
        let err = crashed(step, || open(dir.path(), &params(100), now)).unwrap_err();
        assert!(format!("{err:?}").contains("simulated crash"), "{err:?}");
        let path = dir.path().join(CHAIN_FILE);
        assert_eq!(path.exists(), step == Step::Renamed, "{step:?}");
        remove_stale_temporaries(&path);
        let (chain, _, report) = open(dir.path(), &params(100), now).unwrap();
        assert_eq!(report.created, step != Step::Renamed, "{step:?}");
        assert_eq!((chain.height(), report.truncated), (0, None), "{step:?}");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert!(names.iter().all(|n| !n.contains(".tmp-")), "{names:?}");
    }
}

/// The crash semantics of an append (decisions R7): a block is appended with one write and
/// an fsync, so a crash leaves any prefix of its record; every such prefix is cut off at
/// the next start and the chain resumes at the block before.
#[test]
fn an_append_cut_at_any_byte_resumes_at_the_previous_block() {
    let dir = tempfile::tempdir().unwrap();
    let now = now_unix_ms() / 1000;
    let (mut chain, mut store, _) = open(dir.path(), &params(100), now).unwrap();
    let miner = TestMiner::new(dir.path(), 3);
    let b1 = mine(&mut chain, &mut store, &miner, 1);
    let path = dir.path().join(CHAIN_FILE);
    let before = std::fs::read(&path).unwrap();
    let b2 = mine(&mut chain, &mut store, &miner, 2);
    drop(store);
    let after = std::fs::read(&path).unwrap();
    for cut in before.len()..after.len() {
        std::fs::write(&path, &after[..cut]).unwrap();
        let (replayed, report) = reopen(dir.path());
        assert_eq!(replayed.tip(), &b1, "cut at {cut}");
        let dropped = report.truncated.map_or(0, |t| t.dropped);
        assert_eq!(dropped, (cut - before.len()) as u64, "cut at {cut}");
        assert_eq!(std::fs::read(&path).unwrap(), before, "cut at {cut}");
    }
    std::fs::write(&path, &after).unwrap();
    assert_eq!(reopen(dir.path()).0.tip(), &b2);
}

/// Regression (issue 10, row 10): every block body was held in memory for the node's life
/// (160 KB an epoch with full blocks). Now only the newest `keep_bodies` are, before and
/// after a restart; older blocks are read back from the chain file, byte for byte.
#[test]
fn only_the_newest_bodies_stay_in_memory_and_older_ones_come_from_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let now = now_unix_ms() / 1000;
    let (mut chain, mut store, _) = open(dir.path(), &params(100), now).unwrap();
    chain.keep_bodies(3);
    let miner = TestMiner::new(dir.path(), 4);
    let mined: Vec<Block> = (1..=10)
        .map(|e| mine(&mut chain, &mut store, &miner, e))
        .collect();
    assert_eq!(chain.bodies_in_memory(), 3);
    let check = |chain: &Chain| {
        for (i, block) in mined.iter().enumerate() {
            let height = i as u64 + 1;
            let in_file = matches!(chain.find(height), Some(StoredBlock::File { .. }));
            assert_eq!(in_file, height <= 7, "height {height}");
            assert_eq!(
                chain.block_at(height).as_ref(),
                Some(block),
                "height {height}"
            );
            assert_eq!(chain.header_at(height), Some(&block.header));
        }
        assert_eq!(chain.tip(), mined.last().unwrap());
        assert_eq!(chain.height(), 10);
    };
    check(&chain);
    drop((chain, store));
    let (mut replayed, _, report) = open(dir.path(), &params(100), now).unwrap();
    assert_eq!(report.replayed, 10);
    replayed.keep_bodies(3);
    assert_eq!(replayed.bodies_in_memory(), 3);
    check(&replayed);
    // A chain file changed under the node is an error, never another block.
    let StoredBlock::File { file, at, .. } = replayed.find(2).unwrap() else {
        panic!("height 2 is in the file")
    };
    let err = read_stored_block(&file, at, &mined[0].hash()).unwrap_err();
    assert!(err.to_string().contains("another hash"), "{err}");
}

/// A new chain in `dir` with `n` mined blocks (the store dropped); returns the blocks.
fn mined_chain(dir: &Path, n: u64) -> Vec<Block> {
    let (mut chain, mut store, _) = open(dir, &params(100), now_unix_ms() / 1000).unwrap();
    let miner = TestMiner::new(dir, 1);
    (1..=n)
        .map(|epoch| mine(&mut chain, &mut store, &miner, epoch))
        .collect()
}

#[test]
fn a_restart_trusts_the_verified_checkpoint_and_fully_checks_only_later_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let blocks = mined_chain(dir.path(), 3);
    // The new chain's checkpoint is at genesis: all three blocks get every check.
    let (_, report) = reopen(dir.path());
    assert_eq!(
        (report.replayed, report.verified, report.trusted),
        (3, 3, 0)
    );
    assert_eq!(report.checkpoint_ignored, None);
    let cp = Checkpoint::load(dir.path()).unwrap().unwrap();
    assert_eq!((cp.height, cp.hash), (3, blocks[2].hash()));

    // That start recorded the tip: the next one checks no signature or proof.
    let (chain, report) = reopen(dir.path());
    assert_eq!(
        (report.replayed, report.verified, report.trusted),
        (3, 0, 3)
    );
    assert_eq!((report.checkpoint_ignored, report.truncated), (None, None));
    assert_eq!(chain.tip(), &blocks[2]);
    assert_eq!(chain.block_at(1).as_ref(), Some(&blocks[0]));

    // Blocks appended after the checkpoint get every check at the next start.
    let (mut chain, mut store, _) = open(dir.path(), &params(100), now_unix_ms() / 1000).unwrap();
    let miner = TestMiner::new(dir.path(), 2);
    mine(&mut chain, &mut store, &miner, 4);
    let b5 = mine(&mut chain, &mut store, &miner, 5);
    drop(store);
    let (chain, report) = reopen(dir.path());
    assert_eq!(
        (report.replayed, report.verified, report.trusted),
        (5, 2, 3)
    );
    assert_eq!(chain.tip(), &b5);
}

#[test]
fn a_checkpoint_that_does_not_match_is_ignored_and_the_whole_chain_validated() {
    let dir = tempfile::tempdir().unwrap();
    let blocks = mined_chain(dir.path(), 3);
    reopen(dir.path());
    let good = Checkpoint::load(dir.path()).unwrap().unwrap();
    let cp_path = dir.path().join(CHECKPOINT_FILE);
    let mut flipped = good.encode();
    flipped[20] ^= 1;
    let tampered: Vec<(&str, Vec<u8>)> = vec![
        (
            "another block's hash",
            Checkpoint {
                hash: blocks[0].hash(),
                ..good
            }
            .encode()
            .to_vec(),
        ),
        (
            "another digest",
            Checkpoint {
                digest: [7; 32],
                ..good
            }
            .encode()
            .to_vec(),
        ),
        (
            "a height past the end",
            Checkpoint { height: 9, ..good }.encode().to_vec(),
        ),
        ("a flipped byte", flipped.to_vec()),
        ("garbage", b"not a checkpoint at all".to_vec()),
        ("an empty file", Vec::new()),
    ];
    for (what, bytes) in tampered {
        std::fs::write(&cp_path, &bytes).unwrap();
        let (chain, report) = reopen(dir.path());
        assert!(report.checkpoint_ignored.is_some(), "{what}");
        assert_eq!(
            (report.replayed, report.verified, report.trusted),
            (3, 3, 0),
            "{what}"
        );
        assert_eq!(
            (chain.tip(), &report.truncated),
            (&blocks[2], &None),
            "{what}"
        );
        // The fully validated chain is recorded again.
        assert_eq!(Checkpoint::load(dir.path()), Ok(Some(good)), "{what}");
    }

    // A signature changed below the checkpoint (record checksums recomputed, so only the
    // chain digest notices): the checkpoint is ignored and the full check cuts it off.
    let mut b2 = blocks[1].clone();
    b2.header.signature[0] ^= 1;
    assert!(!b2.header.verify_signature());
    let (genesis, _) = reopen(dir.path());
    let mut file = encode_file_header(&params(100).adjustment).to_vec();
    for b in [genesis.genesis(), &blocks[0], &b2, &blocks[2]] {
        file.extend_from_slice(&encode_record(&b.encode()));
    }
    std::fs::write(dir.path().join(CHAIN_FILE), &file).unwrap();
    let (chain, report) = reopen(dir.path());
    assert!(report.checkpoint_ignored.is_some());
    let reason = report.truncated.unwrap().reason;
    assert!(reason.contains("height 2 is invalid"), "{reason}");
    assert_eq!((chain.tip(), report.trusted), (&blocks[0], 0));
}

#[test]
fn a_missing_checkpoint_means_a_full_validation() {
    let dir = tempfile::tempdir().unwrap();
    let blocks = mined_chain(dir.path(), 2);
    reopen(dir.path());
    // As after a crash before the first checkpoint write: no file, no warning, every check.
    std::fs::remove_file(dir.path().join(CHECKPOINT_FILE)).unwrap();
    let (chain, report) = reopen(dir.path());
    assert_eq!(
        (report.replayed, report.verified, report.trusted),
        (2, 2, 0)
    );
    assert_eq!(report.checkpoint_ignored, None);
    assert_eq!(chain.tip(), &blocks[1]);
    assert!(Checkpoint::load(dir.path()).unwrap().is_some());
}
