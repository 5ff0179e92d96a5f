//! End-to-end tests of the storage engine on real plot files: creation against a naive
//! implementation and the known answers, loading, proofs, scanning and checking.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use spacetime::cache::MerkleCache;
use spacetime::hash::{sha256_concat, Hash32};
use spacetime::merkle::{internal_node, leaf_node, padding_node, tree_height, MerklePath};
use spacetime::plot::{
    check_plot, create_plot, CacheLevels, CheckMode, CreatePlot, PlotError, PlotFile, PlotHeader,
    HEADER_LEN,
};
use spacetime::prove::{build_proof, ProveError};
use spacetime::scan::{scan_plots, scan_plots_reading, score, PlotReads, ScanStrategy};

fn vectors() -> serde_json::Value {
    serde_json::from_str(include_str!("../testdata/vectors.json")).unwrap()
}

fn hex32(v: &serde_json::Value) -> [u8; 32] {
    hex::decode(v.as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap()
}

fn pk() -> [u8; 32] {
    std::array::from_fn(|i| i as u8)
}

fn seed() -> [u8; 32] {
    std::array::from_fn(|i| 32 + i as u8)
}

fn never() -> AtomicBool {
    AtomicBool::new(false)
}

fn make(dir: &Path, name: &str, n: u64, cache: CacheLevels, threads: usize) -> PathBuf {
    let path = dir.join(name);
    create_plot(
        &CreatePlot {
            path: path.clone(),
            miner_pk: pk(),
            seed: seed(),
            leaf_count: n,
            cache,
            threads: Some(threads),
        },
        &mut |_| {},
        &never(),
    )
    .unwrap();
    path
}

/// Every level of the tree, level 0 (leaf nodes) first and the root level last, computed
/// with plain `Sha256` and the level-by-level definition.
fn naive_levels(leaves: &[[u8; 32]]) -> Vec<Vec<Hash32>> {
    let h = |parts: &[&[u8]]| sha256_concat(parts);
    let mut levels = vec![leaves.iter().map(|l| h(&[&[0], l])).collect::<Vec<_>>()];
    while levels.last().unwrap().len() > 1 {
        let next = levels
            .last()
            .unwrap()
            .chunks(2)
            .map(|p| match p {
                [l, r] => h(&[&[1], l, r]),
                [x] => h(&[&[1], x, &h(&[&[1], b"MERKLE_PADDING", x])]),
                _ => unreachable!(),
            })
            .collect();
        levels.push(next);
    }
    levels
}

/// The plot file and cache file a straightforward sequential implementation writes.
fn naive_files(n: u64, cache: CacheLevels) -> (Vec<u8>, Option<Vec<u8>>) {
    let leaves: Vec<[u8; 32]> = (0..n)
        .map(|i| sha256_concat(&[&pk(), &seed(), &i.to_le_bytes()]))
        .collect();
    let levels = naive_levels(&leaves);
    let height = tree_height(n);
    let root = *levels.last().unwrap().first().unwrap();
    let mut plot = PlotHeader::new(seed(), n, root).encode().to_vec();
    for leaf in &leaves {
        plot.extend_from_slice(leaf);
    }
    let cache = cache.start_level(height).map(|start| {
        MerkleCache {
            tree_height: height,
            start_level: start,
            levels: levels[start as usize..height as usize].to_vec(),
        }
        .encode()
        .unwrap()
    });
    (plot, cache)
}

fn assert_matches_naive(n: u64, cache: CacheLevels, threads: usize) {
    let dir = tempfile::tempdir().unwrap();
    let path = make(dir.path(), "p.plot", n, cache, threads);
    let (plot, cache_bytes) = naive_files(n, cache);
    assert!(
        std::fs::read(&path).unwrap() == plot,
        "plot bytes differ for N = {n}, {cache:?}"
    );
    let cache_path = MerkleCache::path_for(&path);
    match cache_bytes {
        Some(bytes) => assert!(
            std::fs::read(&cache_path).unwrap() == bytes,
            "cache bytes differ for N = {n}, {cache:?}"
        ),
        None => assert!(!cache_path.exists()),
    }
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(
        names.iter().all(|n| !n.to_string_lossy().starts_with('.')),
        "temp left: {names:?}"
    );
}

#[test]
fn plots_match_vectors() {
    let v = vectors();
    let dir = tempfile::tempdir().unwrap();
    for n in [1u64, 2, 3, 5, 8] {
        let path = make(
            dir.path(),
            &format!("v{n}.plot"),
            n,
            CacheLevels::Default,
            2,
        );
        let bytes = std::fs::read(&path).unwrap();
        let plot_v = &v[format!("plot_{n}")];
        assert_eq!(
            hex::encode(&bytes[..HEADER_LEN]),
            plot_v["header"].as_str().unwrap()
        );
        assert_eq!(bytes.len(), HEADER_LEN + 32 * n as usize);
        for i in 0..3.min(n) {
            let leaf = &bytes[HEADER_LEN + 32 * i as usize..][..32];
            assert_eq!(
                hex::encode(leaf),
                v["leaves"][i.to_string()].as_str().unwrap()
            );
        }
        let plot = PlotFile::open(&path).unwrap();
        assert_eq!(plot.header().merkle_root, hex32(&plot_v["root"]));
    }
    let five = PlotFile::open(&dir.path().join("v5.plot")).unwrap();
    assert_ne!(
        five.header().merkle_root,
        hex32(&v["plot_5"]["root_if_padding_had_no_0x01_WRONG"])
    );
    assert_eq!(five.header().hash(), hex32(&v["plot_5"]["header_hash"]));
}

#[test]
fn leaf_4_proof_matches_vector() {
    let v = vectors();
    let dir = tempfile::tempdir().unwrap();
    let path = make(dir.path(), "five.plot", 5, CacheLevels::TopLevels(2), 1);
    let plot = PlotFile::open(&path).unwrap();
    let cache = MerkleCache::read(&MerkleCache::path_for(&path)).unwrap();
    cache.validate(plot.header()).unwrap();
    let p = &v["plot_5"]["proof_leaf_4"];
    let expected = MerklePath {
        leaf: hex32(&p["leaf"]),
        index: 4,
        siblings: p["siblings"]
            .as_array()
            .unwrap()
            .iter()
            .map(hex32)
            .collect(),
        sibling_is_right: p["orientation"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b.as_bool().unwrap())
            .collect(),
    };
    assert_eq!(build_proof(&plot, None, 4).unwrap(), expected);
    assert_eq!(build_proof(&plot, Some(&cache), 4).unwrap(), expected);
    assert_eq!(
        leaf_node(&expected.leaf),
        hex32(&v["plot_5"]["intermediate"]["leaf_hash_4"])
    );
    assert_eq!(
        padding_node(&leaf_node(&expected.leaf)),
        expected.siblings[0]
    );
}

#[test]
fn sixteen_leaf_cache_file_matches_vector() {
    let dir = tempfile::tempdir().unwrap();
    let path = make(dir.path(), "s.plot", 16, CacheLevels::TopLevels(2), 2);
    let bytes = std::fs::read(MerkleCache::path_for(&path)).unwrap();
    assert_eq!(
        hex::encode(bytes),
        vectors()["cache_16_leaves_2_levels"].as_str().unwrap()
    );
}

#[test]
fn creation_matches_naive_across_chunk_boundaries() {
    let chunk = 1u64 << 14; // the plotter's chunk size
    for (n, cache) in [
        (chunk - 1, CacheLevels::Default),
        (chunk, CacheLevels::Default),
        (chunk + 1, CacheLevels::TopLevels(3)),
        (2 * chunk + 5, CacheLevels::TopLevels(40)),
        (3 * chunk + 7, CacheLevels::Default),
        (4 * chunk, CacheLevels::Disabled),
    ] {
        assert_matches_naive(n, cache, 2);
    }
    assert_matches_naive(3 * chunk + 7, CacheLevels::TopLevels(9), 1);
}

/// The N = 2 000 000 root of the spec (height 21), built by the parallel plotter.
#[test]
fn two_million_leaf_root_matches_spec() {
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let path = make(dir.path(), "big.plot", 2_000_000, CacheLevels::Disabled, 2);
    let plot = PlotFile::open(&path).unwrap();
    assert_eq!(
        hex::encode(plot.header().merkle_root),
        "7d4cf3aa2a27e1f47a5ec1da446dddba3cd0b5ed2e4185dde7669ed25729f2f4"
    );
    assert_eq!(plot.header().tree_height, 21);
    eprintln!("2M-leaf plot in {:?}", started.elapsed());
}

#[test]
fn every_leaf_proves_for_trees_of_1_to_200_leaves() {
    let dir = tempfile::tempdir().unwrap();
    for n in 1..=200u64 {
        let cache_mode = if n % 2 == 0 {
            CacheLevels::TopLevels(3)
        } else {
            CacheLevels::Default
        };
        let path = make(dir.path(), &format!("t{n}.plot"), n, cache_mode, 1);
        let plot = PlotFile::open(&path).unwrap();
        let cache = MerkleCache::read(&MerkleCache::path_for(&path)).ok();
        if let Some(c) = &cache {
            c.validate(plot.header()).unwrap();
        }
        let root = plot.header().merkle_root;
        for i in 0..n {
            let proof = build_proof(&plot, None, i).unwrap();
            assert!(proof.verify_strict(&root, n));
            assert_eq!(proof.leaf, plot.leaf(i).unwrap().unwrap());
            if let Some(c) = &cache {
                assert_eq!(
                    build_proof(&plot, Some(c), i).unwrap(),
                    proof,
                    "N = {n}, i = {i}"
                );
            }
        }
        assert_eq!(
            build_proof(&plot, None, n),
            Err(ProveError::IndexOutOfRange {
                index: n,
                leaf_count: n
            })
        );
    }
}

#[test]
fn tampering_with_any_byte_of_a_proof_fails() {
    let dir = tempfile::tempdir().unwrap();
    let n = 37;
    let path = make(dir.path(), "t.plot", n, CacheLevels::Default, 1);
    let plot = PlotFile::open(&path).unwrap();
    let root = plot.header().merkle_root;
    for i in [0, 17, 32, 36] {
        let proof = build_proof(&plot, None, i).unwrap();
        for byte in 0..32 {
            let mut p = proof.clone();
            p.leaf[byte] ^= 1;
            assert!(!p.verify_strict(&root, n));
            for s in 0..p.siblings.len() {
                let mut p = proof.clone();
                p.siblings[s][byte] ^= 0x80;
                assert!(!p.verify_strict(&root, n));
            }
        }
        for s in 0..proof.siblings.len() {
            let mut p = proof.clone();
            p.sibling_is_right[s] = !p.sibling_is_right[s];
            assert!(!p.verify_strict(&root, n));
        }
        let mut p = proof.clone();
        p.index ^= 1;
        assert!(!p.verify_strict(&root, n));
        let mut p = proof.clone();
        p.siblings.pop();
        p.sibling_is_right.pop();
        assert!(!p.verify_strict(&root, n));
    }
}

#[test]
fn corrupt_plots_and_caches_make_proofs_fail_not_lie() {
    let dir = tempfile::tempdir().unwrap();
    let path = make(dir.path(), "c.plot", 64, CacheLevels::TopLevels(3), 1);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[HEADER_LEN + 32 * 9] ^= 1;
    std::fs::write(&path, &bytes).unwrap();
    let plot = PlotFile::open(&path).unwrap();
    assert_eq!(
        build_proof(&plot, None, 9),
        Err(ProveError::Verification { index: 9 })
    );
    assert_eq!(
        build_proof(&plot, None, 8),
        Err(ProveError::Verification { index: 8 })
    );
    assert!(
        build_proof(&plot, None, 40).is_err(),
        "leaf 9 feeds a sibling of every path"
    );

    let other = make(dir.path(), "d.plot", 64, CacheLevels::TopLevels(3), 1);
    let plot = PlotFile::open(&other).unwrap();
    let mut cache = MerkleCache::read(&MerkleCache::path_for(&other)).unwrap();
    cache.levels[0][1][0] ^= 1;
    assert!(cache.validate(plot.header()).is_err());
    assert_eq!(
        build_proof(&plot, Some(&cache), 0),
        Err(ProveError::Verification { index: 0 })
    );
    let wrong_shape = MerkleCache {
        tree_height: 7,
        ..cache
    };
    assert!(matches!(
        build_proof(&plot, Some(&wrong_shape), 0),
        Err(ProveError::CacheMismatch { .. })
    ));
}

#[test]
fn loader_rejects_hostile_files() {
    let dir = tempfile::tempdir().unwrap();
    let good = make(dir.path(), "g.plot", 8, CacheLevels::Disabled, 1);
    let bytes = std::fs::read(&good).unwrap();
    let write = |name: &str, data: &[u8]| {
        let p = dir.path().join(name);
        std::fs::write(&p, data).unwrap();
        p
    };
    assert!(matches!(
        PlotFile::open(&dir.path().join("none.plot")),
        Err(PlotError::NotFound { .. })
    ));
    assert!(matches!(
        PlotFile::open(&write("e", &[])),
        Err(PlotError::TooSmall { len: 0 })
    ));
    assert!(matches!(
        PlotFile::open(&write("s", &bytes[..120])),
        Err(PlotError::TooSmall { .. })
    ));
    assert!(matches!(
        PlotFile::open(&write("t", &bytes[..bytes.len() - 1])),
        Err(PlotError::Truncated { .. })
    ));
    let mut zero = bytes.clone();
    zero[..HEADER_LEN].fill(0);
    assert!(matches!(
        PlotFile::open(&write("z", &zero)),
        Err(PlotError::BadMagic { .. })
    ));
    let mut longer = bytes.clone();
    longer.extend_from_slice(&[0xaa; 100]);
    let plot = PlotFile::open(&write("l", &longer)).unwrap();
    assert_eq!(plot.leaf_count(), 8);
    assert_eq!(plot.file_len(), longer.len() as u64);
    assert_eq!(plot.leaf(8).unwrap(), None);
    let mut buf = Vec::new();
    plot.read_range(6..100, &mut buf).unwrap();
    assert_eq!(buf.len(), 2);
    let (from, to) = (5, 3);
    plot.read_range(from..to, &mut buf).unwrap();
    assert_eq!(buf.len(), 0, "inverted range");
    assert!(matches!(
        plot.read_leaves(7, &mut [[0u8; 32]; 2]),
        Err(PlotError::InvalidRequest { .. })
    ));

    let root = PlotFile::open(&good).unwrap().header().merkle_root;
    for n in [i64::MAX as u64, (i64::MAX as u64) / 32, u64::MAX / 64] {
        let header = PlotHeader::new(seed(), n, root);
        let mut data = header.encode().to_vec();
        data.extend_from_slice(&bytes[HEADER_LEN..]);
        let err = PlotFile::open(&write("huge", &data)).unwrap_err();
        assert!(
            matches!(
                err,
                PlotError::SizeOverflow { .. } | PlotError::Truncated { .. }
            ),
            "{err:?}"
        );
    }
    let mut bad_height = PlotHeader::new(seed(), 8, root);
    bad_height.tree_height = 4;
    let mut data = bad_height.encode().to_vec();
    data.extend_from_slice(&bytes[HEADER_LEN..]);
    assert!(matches!(
        PlotFile::open(&write("h", &data)),
        Err(PlotError::TreeHeightMismatch { .. })
    ));
    let mut odd_size = PlotHeader::new(seed(), 8, root);
    odd_size.leaf_size = 16;
    let mut data = odd_size.encode().to_vec();
    data.extend_from_slice(&bytes[HEADER_LEN..]);
    assert!(matches!(
        PlotFile::open(&write("o", &data)),
        Err(PlotError::UnsupportedLeafSize { size: 16 })
    ));
}

#[test]
fn creation_refuses_to_overwrite_and_cancels_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.plot");
    std::fs::write(&path, b"precious").unwrap();
    let mut req = CreatePlot {
        path: path.clone(),
        miner_pk: pk(),
        seed: seed(),
        leaf_count: 10,
        cache: CacheLevels::Default,
        threads: Some(1),
    };
    let err = create_plot(&req, &mut |_| {}, &never()).unwrap_err();
    assert!(matches!(err, PlotError::AlreadyExists { .. }));
    assert_eq!(std::fs::read(&path).unwrap(), b"precious");

    req.path = dir.path().join("y.plot");
    req.leaf_count = 400_000;
    let cancel = AtomicBool::new(false);
    let mut reports = 0;
    let err = create_plot(
        &req,
        &mut |p| {
            reports += 1;
            assert!(p.leaves_done < p.leaves_total);
            cancel.store(true, Ordering::Relaxed);
        },
        &cancel,
    );
    assert!(matches!(err, Err(PlotError::Cancelled)), "{err:?}");
    assert!(reports >= 1);
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        names,
        vec![std::ffi::OsString::from("x.plot")],
        "nothing left behind"
    );

    req.leaf_count = 0;
    assert!(matches!(
        create_plot(&req, &mut |_| {}, &never()),
        Err(PlotError::InvalidRequest { .. })
    ));
    req.leaf_count = u64::MAX / 16;
    assert!(matches!(
        create_plot(&req, &mut |_| {}, &never()),
        Err(PlotError::SizeOverflow { .. })
    ));
}

#[test]
fn progress_reaches_the_total() {
    let dir = tempfile::tempdir().unwrap();
    let mut last = None;
    create_plot(
        &CreatePlot {
            path: dir.path().join("p.plot"),
            miner_pk: pk(),
            seed: seed(),
            leaf_count: 100_000,
            cache: CacheLevels::Default,
            threads: Some(2),
        },
        &mut |p| last = Some(p.clone()),
        &never(),
    )
    .unwrap();
    let last = last.unwrap();
    assert_eq!(last.leaves_done, 100_000);
    assert_eq!(last.bytes_written, 121 + 3_200_000);
}

fn naive_best(plot: &PlotFile, challenge: &Hash32, indices: &[u64]) -> (u64, Hash32) {
    let mut best: Option<(Hash32, u64)> = None;
    for &i in indices {
        let s = score(challenge, &plot.leaf(i).unwrap().unwrap());
        if best.is_none_or(|(b, _)| s < b) {
            best = Some((s, i));
        }
    }
    let (s, i) = best.unwrap();
    (i, s)
}

#[test]
fn scans_find_the_naive_best_for_every_strategy() {
    let dir = tempfile::tempdir().unwrap();
    let path = make(dir.path(), "s.plot", 70_001, CacheLevels::Disabled, 2);
    let plot = PlotFile::open(&path).unwrap();
    let n = plot.leaf_count();
    for (k, strategy) in [
        ScanStrategy::Full,
        ScanStrategy::Deadline,
        ScanStrategy::Sampling { samples: 10_000 },
        ScanStrategy::Sampling { samples: 100_000 },
        ScanStrategy::CacheFriendly {
            block: 8192,
            per_block: 8192,
        },
        ScanStrategy::CacheFriendly {
            block: 8192,
            per_block: 1000,
        },
    ]
    .iter()
    .enumerate()
    {
        let challenge = sha256_concat(&[&[k as u8]]);
        let indices = strategy.indices(n);
        let outcome = scan_plots(&[&plot], &challenge, strategy, None, &never());
        let best = outcome.best.unwrap();
        assert_eq!(
            (best.index, best.score),
            naive_best(&plot, &challenge, &indices),
            "{strategy:?}"
        );
        assert_eq!(best.leaf, plot.leaf(best.index).unwrap().unwrap());
        assert_eq!(outcome.leaves_scanned, indices.len() as u64);
        assert_eq!(outcome.per_plot[0].leaves_scanned, indices.len() as u64);
        assert!(!outcome.timed_out && !outcome.cancelled);
        // Direct reads (farms larger than the page cache) find the same leaf: the plot's
        // leaves start at byte 121, so every chunk is an unaligned span of aligned reads.
        for reads in [PlotReads::Direct, PlotReads::PageCache] {
            let again = scan_plots_reading(
                &[&plot],
                &challenge,
                strategy,
                None,
                &never(),
                &AtomicU64::new(0),
                reads,
            );
            assert_eq!(
                (again.best, again.leaves_scanned),
                (outcome.best, outcome.leaves_scanned),
                "{strategy:?} {reads:?}"
            );
        }
    }
}

#[test]
fn scan_ties_break_by_plot_id_then_index_and_deadlines_stop() {
    let dir = tempfile::tempdir().unwrap();
    let a = make(dir.path(), "a.plot", 1000, CacheLevels::Disabled, 1);
    let b = make(dir.path(), "b.plot", 1000, CacheLevels::Disabled, 1);
    let (a, b) = (PlotFile::open(&a).unwrap(), PlotFile::open(&b).unwrap());
    let challenge = [3u8; 32];
    let outcome = scan_plots(&[&a, &b], &challenge, &ScanStrategy::Full, None, &never());
    assert_eq!(
        outcome.best.unwrap().plot,
        0,
        "identical plots: the first wins"
    );
    let outcome = scan_plots(&[&b, &a], &challenge, &ScanStrategy::Full, None, &never());
    assert_eq!(outcome.best.unwrap().plot, 0);
    assert_eq!(outcome.leaves_scanned, 2000);

    let past = Instant::now() - Duration::from_millis(1);
    let outcome = scan_plots(
        &[&a],
        &challenge,
        &ScanStrategy::Deadline,
        Some(past),
        &never(),
    );
    assert!(outcome.timed_out);
    assert_eq!((outcome.best, outcome.leaves_scanned), (None, 0));
    let cancelled = AtomicBool::new(true);
    let outcome = scan_plots(&[&a], &challenge, &ScanStrategy::Full, None, &cancelled);
    assert!(outcome.cancelled && outcome.best.is_none());
    let far = Instant::now() + Duration::from_secs(60);
    let outcome = scan_plots(
        &[&a],
        &challenge,
        &ScanStrategy::Deadline,
        Some(far),
        &never(),
    );
    assert!(!outcome.timed_out && outcome.leaves_scanned == 1000);
}

#[test]
fn score_matches_vector() {
    let v = vectors();
    let leaf0 = hex32(&v["leaves"]["0"]);
    assert_eq!(
        hex::encode(score(&[0; 32], &leaf0)),
        "026c4d4f76a4a921033b94bb0cc70cd7a78dc5c63184dfd20bf1982aa7f5c0d3"
    );
    let block = &v["block_example"]["header_fields"];
    let leaf4 = hex32(&v["plot_5"]["proof_leaf_4"]["leaf"]);
    assert_eq!(
        score(&hex32(&block["challenge"]), &leaf4),
        hex32(&block["proof_score"])
    );
}

#[test]
fn checks_detect_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let path = make(dir.path(), "k.plot", 100_000, CacheLevels::Default, 2);
    let cache = MerkleCache::read(&MerkleCache::path_for(&path)).unwrap();
    let plot = PlotFile::open(&path).unwrap();
    let full = CheckMode::Full {
        miner_pk: Some(pk()),
    };
    let mut calls = 0;
    let report = check_plot(&plot, Some(&cache), &full, &mut |_| calls += 1, &never()).unwrap();
    assert!(report.passed(), "{report:?}");
    assert!(calls >= 1);
    assert_eq!(
        (report.leaves_checked, report.root_ok),
        (100_000, Some(true))
    );
    let sampled = CheckMode::Sampled {
        samples: 500,
        miner_pk: Some(pk()),
        seed: 7,
    };
    let report = check_plot(&plot, Some(&cache), &sampled, &mut |_| {}, &never()).unwrap();
    assert!(report.passed() && report.paths_checked == 500, "{report:?}");
    drop(plot);

    let mut bytes = std::fs::read(&path).unwrap();
    bytes[HEADER_LEN + 32 * 77_777 + 5] ^= 4;
    std::fs::write(&path, &bytes).unwrap();
    let plot = PlotFile::open(&path).unwrap();
    let report = check_plot(&plot, None, &full, &mut |_| {}, &never()).unwrap();
    assert!(!report.passed());
    assert_eq!(
        (report.bad_leaves, report.first_bad_leaf, report.root_ok),
        (1, Some(77_777), Some(false))
    );
    let report = check_plot(
        &plot,
        None,
        &CheckMode::Full { miner_pk: None },
        &mut |_| {},
        &never(),
    )
    .unwrap();
    assert_eq!((report.bad_leaves, report.root_ok), (0, Some(false)));

    let small = make(dir.path(), "m.plot", 300, CacheLevels::Default, 1);
    let mut bytes = std::fs::read(&small).unwrap();
    bytes[HEADER_LEN + 32 * 123] ^= 1;
    std::fs::write(&small, &bytes).unwrap();
    let plot = PlotFile::open(&small).unwrap();
    let all = CheckMode::Sampled {
        samples: 1000,
        miner_pk: None,
        seed: 1,
    };
    let report = check_plot(&plot, None, &all, &mut |_| {}, &never()).unwrap();
    assert_eq!(
        report.first_bad_path,
        Some(0),
        "every path depends on leaf 123"
    );
    assert!(!report.passed());
    let cancelled = AtomicBool::new(true);
    assert!(matches!(
        check_plot(&plot, None, &full, &mut |_| {}, &cancelled),
        Err(PlotError::Cancelled)
    ));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn parallel_creation_equals_naive(n in 1u64..600, k in 0u32..12, mode in 0u8..3, threads in 1usize..3) {
        let cache = match mode {
            0 => CacheLevels::Default,
            1 => CacheLevels::TopLevels(k),
            _ => CacheLevels::Disabled,
        };
        assert_matches_naive(n, cache, threads);
    }
}

#[test]
fn internal_node_helper_matches_naive() {
    let l = [1u8; 32];
    let r = [2u8; 32];
    assert_eq!(internal_node(&l, &r), sha256_concat(&[&[1], &l, &r]));
}

/// Issue 10 row 1: a farmed plot truncated under the miner. With the old memory map the
/// first scan, proof or check that touched the lost pages killed the process with SIGBUS
/// (this test binary died); now each is an error on that plot and the other plots still
/// scan.
#[test]
fn a_plot_truncated_after_open_is_a_read_error_never_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let n = 100_000;
    let victim_path = make(dir.path(), "victim.plot", n, CacheLevels::Disabled, 2);
    let other_path = dir.path().join("other.plot");
    create_plot(
        &CreatePlot {
            path: other_path.clone(),
            miner_pk: pk(),
            seed: [9; 32],
            leaf_count: 5_000,
            cache: CacheLevels::Disabled,
            threads: Some(2),
        },
        &mut |_| {},
        &never(),
    )
    .unwrap();
    let victim = PlotFile::open(&victim_path).unwrap();
    let other = PlotFile::open(&other_path).unwrap();
    // Drop every page of the victim beyond the first few leaves, as a failing disk or a
    // user's `truncate` would.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&victim_path)
        .unwrap()
        .set_len(HEADER_LEN as u64 + 32 * 10)
        .unwrap();
    victim.evict_from_page_cache();

    for strategy in [
        ScanStrategy::Full,
        ScanStrategy::Deadline,
        ScanStrategy::Sampling { samples: 1000 },
    ] {
        let outcome = scan_plots(&[&victim, &other], &[3; 32], &strategy, None, &never());
        let direct = scan_plots_reading(
            &[&victim, &other],
            &[3; 32],
            &strategy,
            None,
            &never(),
            &AtomicU64::new(0),
            PlotReads::Direct,
        );
        assert!(
            direct.per_plot[0].error.is_some(),
            "{strategy}: direct reads"
        );
        assert_eq!(direct.best, outcome.best, "{strategy}: direct reads");
        let err = outcome.per_plot[0].error.as_deref().expect("victim fails");
        assert!(err.contains("victim.plot"), "{strategy}: {err}");
        assert!(outcome.per_plot[0].best.is_none(), "{strategy}");
        assert!(outcome.per_plot[1].error.is_none(), "{strategy}");
        assert_eq!(
            outcome.per_plot[1].leaves_scanned,
            strategy.positions(5_000),
            "{strategy}"
        );
        assert_eq!(outcome.best.map(|b| b.plot), Some(1), "{strategy}");
    }
    assert!(matches!(
        build_proof(&victim, None, n - 1),
        Err(ProveError::Read { .. })
    ));
    assert!(matches!(
        check_plot(
            &victim,
            None,
            &CheckMode::Full { miner_pk: None },
            &mut |_| {},
            &never()
        ),
        Err(PlotError::Read { .. })
    ));
    let built = spacetime::cache::build_cache(
        &victim,
        CacheLevels::Default,
        Some(1),
        &mut |_| {},
        &never(),
    );
    assert!(matches!(
        built,
        Err(spacetime::cache::CacheBuildError::Read(_))
    ));
}
