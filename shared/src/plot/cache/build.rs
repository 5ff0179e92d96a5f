//! Building the Merkle cache of an existing plot (one written without a cache, by the
//! reference, or whose cache was removed as stale).
//!
//! The plot is folded once, exactly as plot creation folds it: aligned chunks of `2^14`
//! leaves (read zero-copy from the mapping) are folded in parallel by a [`MerkleFolder`]
//! that captures the cache levels inside the chunk and pads the last chunk to its level, and
//! the chunk nodes are merged in index order by a capturing folder that records the levels
//! above. The recomputed root must equal the header's root, else the plot is corrupt and no
//! cache is returned. Work proceeds in batches of a few chunks per thread; between batches
//! the progress callback runs (so a caller can pause in it, e.g. while a proof is being
//! built) and the cancel flag is checked.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

use rayon::prelude::*;

use super::{check_cache_size, CacheError, MerkleCache};
use crate::hash::Hash32;
use crate::merkle::{tree_height, MerkleFolder};
use crate::plot::{CacheLevels, CheckProgress, PlotError, PlotFile};

/// Leaves per chunk: `2^14` leaves = 512 KiB, as in plot creation.
const CHUNK_LEVEL: u32 = 14;
/// Chunks per thread in one batch (the work between two progress calls: a few ms).
const CHUNKS_PER_THREAD: u64 = 4;

/// Why a cache could not be built.
#[derive(Debug, thiserror::Error)]
pub enum CacheBuildError {
    /// The root folded from the plot's leaves is not the header's root: the plot is corrupt
    /// (or its header was written for other leaves), and a cache of it would be useless.
    #[error(
        "the Merkle root recomputed from the leaves ({}) differs from the header's ({}): \
         the plot is corrupt",
        hex::encode(computed),
        hex::encode(expected)
    )]
    RootMismatch {
        /// The root in the plot header.
        expected: Hash32,
        /// The root folded from the leaves.
        computed: Hash32,
    },
    /// The plot could not be read (I/O error, or the file shrank under the builder).
    #[error("reading the plot")]
    Read(#[from] PlotError),
    /// The cancel flag was set; nothing was written.
    #[error("cancelled")]
    Cancelled,
    /// The hashing threads could not be started.
    #[error("cannot start {threads} hashing threads")]
    Threads {
        /// Threads asked for.
        threads: usize,
        /// Why.
        #[source]
        source: rayon::ThreadPoolBuildError,
    },
    /// The cache would exceed the format's limit, or could not be written.
    #[error(transparent)]
    Cache(#[from] CacheError),
    /// A fold that cannot come out empty did (a bug, reported rather than written).
    #[error("internal error: {reason}")]
    Internal {
        /// What went wrong.
        reason: &'static str,
    },
}

/// Folds `plot` once and returns its cache holding `levels` (see [`CacheLevels`]), after
/// checking the recomputed root against the header. `None` when the tree is too low for a
/// cache (height ≤ 1) or `levels` asks for none.
///
/// `threads`: hashing threads (`None` = the current rayon pool). `progress` is called after
/// every batch of chunks (leaves done / N); the caller may block in it to pause the build.
/// `cancel` is checked between batches and yields [`CacheBuildError::Cancelled`].
pub fn build_cache(
    plot: &PlotFile,
    levels: CacheLevels,
    threads: Option<usize>,
    progress: &mut dyn FnMut(CheckProgress),
    cancel: &AtomicBool,
) -> Result<Option<MerkleCache>, CacheBuildError> {
    let n = plot.leaf_count();
    let height = tree_height(n);
    let Some(start) = levels.start_level(height) else {
        return Ok(None);
    };
    check_cache_size(n, start, height)?;
    let pool = match threads {
        None => None,
        Some(t) => {
            let threads = t.clamp(1, 1024);
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .thread_name(|i| format!("cache-build-{i}"))
                .build()
                .map_err(|source| CacheBuildError::Threads { threads, source })?;
            Some(pool)
        }
    };
    fold(plot, pool.as_ref(), height, start, progress, cancel)
}

/// [`build_cache`], then write the result atomically to `<plot path>.cache` (replacing any
/// file there) unless cancelled meanwhile. Returns the path written, `None` when no cache
/// applies. A cancelled or failed build leaves no file behind.
pub fn build_cache_file(
    plot: &PlotFile,
    levels: CacheLevels,
    threads: Option<usize>,
    progress: &mut dyn FnMut(CheckProgress),
    cancel: &AtomicBool,
) -> Result<Option<(PathBuf, MerkleCache)>, CacheBuildError> {
    let Some(cache) = build_cache(plot, levels, threads, progress, cancel)? else {
        return Ok(None);
    };
    if cancel.load(Ordering::Relaxed) {
        return Err(CacheBuildError::Cancelled);
    }
    let path = MerkleCache::path_for(plot.path());
    cache.write_atomic(&path)?;
    Ok(Some((path, cache)))
}

/// The fold itself: batches hashed on `pool` (else the current rayon pool), merged and
/// reported on the calling thread.
fn fold(
    plot: &PlotFile,
    pool: Option<&rayon::ThreadPool>,
    height: u32,
    start: u32,
    progress: &mut dyn FnMut(CheckProgress),
    cancel: &AtomicBool,
) -> Result<Option<MerkleCache>, CacheBuildError> {
    let n = plot.leaf_count();
    let chunk_len = 1u64 << CHUNK_LEVEL;
    let chunks = n.div_ceil(chunk_len);
    // One chunk: fold straight to the root. Several: chunk nodes at CHUNK_LEVEL.
    let target = if chunks == 1 { height } else { CHUNK_LEVEL };
    // Chunks capture levels start..=target, the merging folder those above.
    let merge_from = start.max(target + 1);
    let mut merger = MerkleFolder::with_capture(merge_from);
    let mut cache_levels: Vec<Vec<Hash32>> = vec![Vec::new(); (height - start) as usize];
    let mut single_root = None;
    let workers = pool.map_or_else(rayon::current_num_threads, |p| p.current_num_threads());
    let batch = (CHUNKS_PER_THREAD * workers as u64).max(4);
    let mut c = 0;
    while c < chunks {
        if cancel.load(Ordering::Relaxed) {
            return Err(CacheBuildError::Cancelled);
        }
        let end = (c + batch).min(chunks);
        plot.advise_willneed(end * chunk_len..(end + batch) * chunk_len);
        type Folded = (Option<Hash32>, u64, Vec<Vec<Hash32>>);
        let run = || -> Result<Vec<Folded>, PlotError> {
            (c..end)
                .into_par_iter()
                .map(|chunk| {
                    let mut leaves = Vec::new();
                    plot.read_range(chunk * chunk_len..(chunk + 1) * chunk_len, &mut leaves)?;
                    let mut folder = MerkleFolder::with_capture(start);
                    folder.push_leaves(&leaves);
                    let (node, captured) = folder.finish_at_level_capturing(target);
                    Ok((node, leaves.len() as u64, captured))
                })
                .collect()
        };
        let folded = match pool {
            Some(pool) => pool.install(run),
            None => run(),
        }?;
        for (node, covered, captured) in folded {
            let node = node.ok_or(CacheBuildError::Internal {
                reason: "a chunk folded to no node",
            })?;
            if chunks == 1 {
                single_root = Some(node);
            } else {
                merger.push_node_at(target, node, covered);
            }
            for (level, nodes) in cache_levels.iter_mut().zip(captured) {
                level.extend(nodes);
            }
        }
        c = end;
        progress(CheckProgress {
            done: (c * chunk_len).min(n),
            total: n,
        });
    }
    let root = if chunks == 1 {
        single_root
    } else {
        let (root, captured) = merger.finish_capturing();
        let offset = merge_from.saturating_sub(start) as usize;
        for (level, nodes) in cache_levels.iter_mut().skip(offset).zip(captured) {
            *level = nodes;
        }
        root
    }
    .ok_or(CacheBuildError::Internal {
        reason: "the plot folded to no root",
    })?;
    let expected = plot.header().merkle_root;
    if root != expected {
        return Err(CacheBuildError::RootMismatch {
            expected,
            computed: root,
        });
    }
    Ok(Some(MerkleCache {
        tree_height: height,
        start_level: start,
        levels: cache_levels,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plot::{create_plot, CreatePlot};
    use std::os::unix::fs::FileExt;
    use std::path::Path;

    fn make(path: &Path, leaves: u64, cache: CacheLevels) {
        create_plot(
            &CreatePlot {
                path: path.to_owned(),
                miner_pk: [7; 32],
                seed: [leaves as u8; 32],
                leaf_count: leaves,
                cache,
                threads: Some(2),
            },
            &mut |_| {},
            &AtomicBool::new(false),
        )
        .unwrap();
    }

    use crate::test_support::file_names as files;

    #[test]
    fn built_cache_is_byte_identical_to_the_one_plot_creation_writes() {
        let dir = tempfile::tempdir().unwrap();
        // One chunk (single fold to the root) and several chunks with a partial last one.
        for leaves in [1000u64, 3 * (1 << 14) + 777] {
            for levels in [
                CacheLevels::Default,
                CacheLevels::TopLevels(5),
                CacheLevels::TopLevels(40),
            ] {
                let path = dir.path().join(format!("p-{leaves}.plot"));
                make(&path, leaves, levels);
                let cache_path = MerkleCache::path_for(&path);
                let written = std::fs::read(&cache_path).unwrap();
                std::fs::remove_file(&cache_path).unwrap();
                let plot = PlotFile::open(&path).unwrap();
                for threads in [Some(1), Some(3), None] {
                    let mut calls = Vec::new();
                    let (got_path, cache) = build_cache_file(
                        &plot,
                        levels,
                        threads,
                        &mut |p| calls.push(p),
                        &AtomicBool::new(false),
                    )
                    .unwrap()
                    .unwrap();
                    assert_eq!(got_path, cache_path);
                    let built = std::fs::read(&cache_path).unwrap();
                    assert!(
                        built == written,
                        "{leaves} leaves, {levels:?}, {threads:?} threads"
                    );
                    cache.validate(plot.header()).unwrap();
                    let last = calls.last().unwrap();
                    assert_eq!((last.done, last.total), (leaves, leaves));
                }
                drop(plot);
                std::fs::remove_file(&path).unwrap();
                std::fs::remove_file(&cache_path).unwrap();
            }
        }
    }

    #[test]
    fn trees_too_low_or_disabled_give_no_cache() {
        let dir = tempfile::tempdir().unwrap();
        for leaves in [1u64, 2] {
            let path = dir.path().join(format!("{leaves}.plot"));
            make(&path, leaves, CacheLevels::Disabled);
            let plot = PlotFile::open(&path).unwrap();
            let got = build_cache_file(
                &plot,
                CacheLevels::Default,
                Some(1),
                &mut |_| {},
                &AtomicBool::new(false),
            )
            .unwrap();
            assert!(got.is_none(), "{leaves} leaves");
        }
        let path = dir.path().join("1.plot");
        let plot = PlotFile::open(&path).unwrap();
        let none = build_cache(
            &plot,
            CacheLevels::Disabled,
            None,
            &mut |_| {},
            &AtomicBool::new(false),
        );
        assert!(none.unwrap().is_none());
        assert_eq!(files(dir.path()), ["1.plot", "2.plot"]);
    }

    #[test]
    fn a_corrupted_leaf_is_a_root_mismatch_and_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.plot");
        let leaves = (1 << 14) + 5;
        make(&path, leaves, CacheLevels::Disabled);
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        let off = 121 + 32 * 10_000;
        let mut byte = [0u8; 1];
        f.read_exact_at(&mut byte, off).unwrap();
        f.write_all_at(&[byte[0] ^ 1], off).unwrap();
        drop(f);
        let plot = PlotFile::open(&path).unwrap();
        let err = build_cache_file(
            &plot,
            CacheLevels::Default,
            Some(2),
            &mut |_| {},
            &AtomicBool::new(false),
        )
        .unwrap_err();
        match err {
            CacheBuildError::RootMismatch { expected, computed } => {
                assert_eq!(expected, plot.header().merkle_root);
                assert_ne!(computed, expected);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(files(dir.path()), ["bad.plot"]);
    }

    #[test]
    fn cancellation_stops_promptly_and_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.plot");
        let leaves = 12 * (1 << 14);
        make(&path, leaves, CacheLevels::Disabled);
        let plot = PlotFile::open(&path).unwrap();
        // Set before the start.
        let err = build_cache_file(
            &plot,
            CacheLevels::Default,
            Some(1),
            &mut |_| {},
            &AtomicBool::new(true),
        )
        .unwrap_err();
        assert!(matches!(err, CacheBuildError::Cancelled), "{err:?}");
        // Set from the first progress report: the next batch is not started.
        let cancel = AtomicBool::new(false);
        let mut calls = 0u32;
        let mut done = 0;
        let err = build_cache_file(
            &plot,
            CacheLevels::Default,
            Some(1),
            &mut |p| {
                calls += 1;
                done = p.done;
                cancel.store(true, Ordering::Relaxed);
            },
            &cancel,
        )
        .unwrap_err();
        assert!(matches!(err, CacheBuildError::Cancelled), "{err:?}");
        assert_eq!(calls, 1);
        assert!(done < leaves, "stopped after {done} of {leaves} leaves");
        assert_eq!(files(dir.path()), ["c.plot"]);
    }
}
