//! Plot creation: parallel leaf generation, the Merkle root (and cache levels) folded in
//! memory while the leaves stream to disk, then an atomic publish.
//!
//! Leaves are produced in aligned chunks of `2^CHUNK_LEVEL`; each chunk is folded to its
//! level-`CHUNK_LEVEL` node by a worker thread (the last, partial chunk is padded up to
//! exactly that level, reference section 2.3), and the chunk nodes are merged in index
//! order by one [`MerkleFolder`], which also captures the cache levels. Workers pull chunk
//! indices from a queue (no barriers), a single writer thread streams finished leaves to
//! disk (see `writer.rs`), and at most a fixed window of chunks is in flight, so memory
//! stays at a few tens of MiB whatever the plot size.
//!
//! The plot is written to `.<name>.tmp-<random>` beside its final path with a zero header,
//! the header is written last, the file is fsynced and then linked into place without
//! replacing anything; the cache file follows the same path. Any error or a cancellation
//! drops the temporary files.

use std::collections::BTreeMap;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Mutex};
use std::time::{Duration, Instant};

use super::cache::{check_cache_size, MerkleCache};
use super::writer::LeafWriter;
use super::{plot_file_len, LeafGenerator, PlotError, PlotHeader, HEADER_LEN};
use crate::atomic_file;
use crate::hash::Hash32;
use crate::merkle::{tree_height, MerkleFolder};

/// Leaves per work chunk: `2^14` leaves = 512 KiB.
const CHUNK_LEVEL: u32 = 14;
/// Chunks in flight per worker thread (the window between the merge and the workers).
const CHUNKS_PER_THREAD: usize = 8;
/// Minimum time between two progress reports.
const PROGRESS_INTERVAL: Duration = Duration::from_millis(200);

/// The lowest cache level stored by default: a proof then reads at most `2^12` leaves
/// (128 KiB, under a millisecond of hashing) of the plot, and the cache holds about
/// `N / 2^11` nodes, 1/2048 of the plot (2 MiB for a 4 GiB plot).
pub const DEFAULT_CACHE_LEVEL: u32 = 12;

/// Which Merkle levels the `.cache` file beside a new plot holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CacheLevels {
    /// Levels `12..H` ([`DEFAULT_CACHE_LEVEL`]; fewer when the tree is lower), so that a
    /// proof reads at most `2^12` leaves: sized for proof speed, still the reference format.
    #[default]
    Default,
    /// The reference meaning of `--cache-levels K`: the K levels directly below the root,
    /// `max(1, H−K)..H`. `TopLevels(0)` writes no cache.
    TopLevels(u32),
    /// No cache file.
    Disabled,
}

impl CacheLevels {
    /// The lowest stored level for a tree of height `height`, or `None` when no cache file
    /// is written (as in the reference, never for `height ≤ 1`).
    pub fn start_level(&self, height: u32) -> Option<u32> {
        if height <= 1 {
            return None;
        }
        match *self {
            CacheLevels::Default => Some(DEFAULT_CACHE_LEVEL.clamp(1, height - 1)),
            CacheLevels::TopLevels(0) | CacheLevels::Disabled => None,
            CacheLevels::TopLevels(k) => Some(height.saturating_sub(k).max(1)),
        }
    }
}

/// A request to create one plot.
#[derive(Debug, Clone)]
pub struct CreatePlot {
    /// Final path of the plot (`*.plot`); must not exist.
    pub path: PathBuf,
    /// The miner's 32-byte public key (the plot key).
    pub miner_pk: [u8; 32],
    /// The plot seed (the plot id).
    pub seed: [u8; 32],
    /// Number of leaves N (the plot holds `32·N` bytes of leaves).
    pub leaf_count: u64,
    /// Cache levels to write beside the plot.
    pub cache: CacheLevels,
    /// Worker threads; `None` = all cores.
    pub threads: Option<usize>,
}

/// Progress of a plot creation, reported a few times per second.
#[derive(Debug, Clone, PartialEq)]
pub struct PlotProgress {
    /// Leaves generated and handed to the writer.
    pub leaves_done: u64,
    /// N.
    pub leaves_total: u64,
    /// Bytes of plot data produced so far (header included).
    pub bytes_written: u64,
    /// Average rate since the start.
    pub leaves_per_sec: f64,
    /// Estimated time left, once a rate is known.
    pub eta: Option<Duration>,
}

/// A plot that was created and published.
#[derive(Debug, Clone)]
pub struct CreatedPlot {
    /// The final plot path.
    pub path: PathBuf,
    /// The cache file, if one was written.
    pub cache_path: Option<PathBuf>,
    /// The header written.
    pub header: PlotHeader,
    /// Wall time of the whole creation.
    pub elapsed: Duration,
}

/// One computed chunk: its leaves, its level-`target` node and its captured cache nodes.
struct Chunk {
    leaves: Vec<[u8; 32]>,
    node: Option<Hash32>,
    captured: Vec<Vec<Hash32>>,
}

/// Create a plot as described by `req`. See the module docs for the on-disk protocol.
/// `progress` is called at most every 200 ms and once at the end; `cancel` is checked
/// between batches and yields [`PlotError::Cancelled`] with nothing left behind.
pub fn create_plot(
    req: &CreatePlot,
    progress: &mut dyn FnMut(&PlotProgress),
    cancel: &AtomicBool,
) -> Result<CreatedPlot, PlotError> {
    create_plot_yielding(req, progress, cancel, &|| {})
}

/// [`create_plot`] whose hashing threads call `yield_now` before every chunk (`2^14`
/// leaves, about a millisecond of hashing): a caller that blocks in it pauses plotting
/// within a chunk, e.g. while a proof is being built, so plot jobs can use every core.
pub fn create_plot_yielding(
    req: &CreatePlot,
    progress: &mut dyn FnMut(&PlotProgress),
    cancel: &AtomicBool,
    yield_now: &(dyn Fn() + Sync),
) -> Result<CreatedPlot, PlotError> {
    let started = Instant::now();
    let n = req.leaf_count;
    if n == 0 {
        return Err(PlotError::InvalidRequest {
            reason: "a plot needs at least one leaf".into(),
        });
    }
    let total_len = plot_file_len(n)
        .filter(|&len| usize::try_from(len).is_ok())
        .ok_or(PlotError::SizeOverflow { leaf_count: n })?;
    if req.path.file_name().is_none() {
        return Err(PlotError::InvalidRequest {
            reason: format!("{} has no file name", req.path.display()),
        });
    }
    let height = tree_height(n);
    let cache_start = req.cache.start_level(height);
    if let Some(start) = cache_start {
        check_cache_size(n, start, height)?;
    }
    let dir = atomic_file::parent_dir(&req.path);
    std::fs::create_dir_all(&dir).map_err(|e| PlotError::io("creating directory", &dir, e))?;
    if req.path.exists() {
        return Err(PlotError::AlreadyExists {
            path: req.path.clone(),
        });
    }
    let threads = req
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .clamp(1, 1024);

    let tmp = atomic_file::temp_beside(&req.path)
        .map_err(|e| PlotError::io("creating a temporary file beside", &req.path, e))?;
    let tmp_path = tmp.path().to_path_buf();
    let file = tmp.as_file();
    let write_err = |e| PlotError::io("writing", &tmp_path, e);

    // Single chunk: fold straight to the root. Several: chunk nodes at CHUNK_LEVEL.
    let chunk_len = 1u64 << CHUNK_LEVEL;
    let chunk_count = n.div_ceil(chunk_len);
    let target = if chunk_count == 1 {
        height
    } else {
        CHUNK_LEVEL
    };
    // Cache levels start..height; chunks capture from `start`, the merge folder above them.
    let cache_from = cache_start.unwrap_or(u32::MAX);
    let mut cache_levels: Vec<Vec<Hash32>> =
        vec![Vec::new(); cache_start.map_or(0, |s| (height - s) as usize)];
    let merge_from = cache_from.max(target + 1);
    let mut merger = MerkleFolder::with_capture(merge_from);
    let mut single_root = None;

    let gen = LeafGenerator::new(&req.miner_pk, &req.seed);
    let window = (CHUNKS_PER_THREAD * threads).clamp(4, 256);
    let mut last_report: Option<Instant> = None;

    // A pipeline without barriers: `threads` workers take chunk indices from a queue and
    // return finished chunks; this thread merges them in index order and hands their leaves
    // to one writer thread. At most `window` chunks are handed out ahead of the merge and
    // the writer may lag by at most `window` chunks, so memory is bounded by the window
    // (a few tens of MiB) whatever the plot size.
    let (jobs, job_queue) = mpsc::sync_channel::<u64>(window);
    let job_queue = Mutex::new(job_queue);
    let (finished, results) = mpsc::channel::<(u64, Chunk)>();
    let (to_writer, from_main) = mpsc::sync_channel::<Vec<[u8; 32]>>(window);
    let spare: Mutex<Vec<Vec<[u8; 32]>>> = Mutex::new(Vec::new());
    let written = std::thread::scope(|scope| -> Result<u64, PlotError> {
        let writer = scope.spawn(|| -> std::io::Result<u64> {
            let mut out = LeafWriter::new(file, &tmp_path, &[0u8; HEADER_LEN]);
            for leaves in from_main {
                out.append(leaves.as_flattened())?;
                lock(&spare).push(leaves);
            }
            out.finish()
        });
        for i in 0..threads {
            let finished = finished.clone();
            let (job_queue, spare, gen) = (&job_queue, &spare, &gen);
            std::thread::Builder::new()
                .name(format!("plotter-{i}"))
                .spawn_scoped(scope, move || loop {
                    yield_now();
                    let next = lock(job_queue).recv();
                    let Ok(index) = next else {
                        break; // no more work (finished or cancelled)
                    };
                    let buf = lock(spare).pop().unwrap_or_default();
                    let chunk = build_chunk(gen, n, index, target, cache_from, buf);
                    if finished.send((index, chunk)).is_err() {
                        break;
                    }
                })
                .map_err(|e| PlotError::io("starting a plotting thread for", &req.path, e))?;
        }
        drop(finished);
        let mut handed_out = 0u64;
        while handed_out < chunk_count.min(window as u64) {
            // Never blocks: the queue holds `window` jobs.
            let _ = jobs.send(handed_out);
            handed_out += 1;
        }
        let mut out_of_order: BTreeMap<u64, Chunk> = BTreeMap::new();
        let mut merged = 0u64;
        while merged < chunk_count {
            if cancel.load(Ordering::Relaxed) {
                return Err(PlotError::Cancelled);
            }
            let Ok((index, chunk)) = results.recv() else {
                return Err(PlotError::InvalidRequest {
                    reason: "internal error: the plotting threads stopped".into(),
                });
            };
            out_of_order.insert(index, chunk);
            while let Some(chunk) = out_of_order.remove(&merged) {
                let node = chunk.node.ok_or_else(internal_error)?;
                if chunk_count == 1 {
                    single_root = Some(node);
                } else {
                    merger.push_node_at(target, node, chunk.leaves.len() as u64);
                }
                for (level, nodes) in cache_levels.iter_mut().zip(chunk.captured) {
                    level.extend(nodes);
                }
                if to_writer.send(chunk.leaves).is_err() {
                    // The writer failed; its result below says why.
                    merged = chunk_count;
                    break;
                }
                merged += 1;
                if handed_out < chunk_count {
                    let _ = jobs.send(handed_out);
                    handed_out += 1;
                }
            }
            let done = (merged * chunk_len).min(n);
            let now = Instant::now();
            if done < n && last_report.is_none_or(|t| now - t >= PROGRESS_INTERVAL) {
                last_report = Some(now);
                progress(&progress_at(done, n, started.elapsed()));
            }
        }
        drop(jobs);
        drop(to_writer);
        match writer.join() {
            Ok(result) => result.map_err(write_err),
            Err(_) => Err(PlotError::InvalidRequest {
                reason: "internal error: the plot writer thread panicked".into(),
            }),
        }
    })?;
    if written != total_len {
        return Err(internal_error());
    }

    let root = if chunk_count == 1 {
        single_root
    } else {
        let (root, captured) = merger.finish_capturing();
        let offset = (merge_from.saturating_sub(cache_from)) as usize;
        for (level, nodes) in cache_levels.iter_mut().skip(offset).zip(captured) {
            *level = nodes;
        }
        root
    }
    .ok_or_else(internal_error)?;
    progress(&progress_at(n, n, started.elapsed()));

    let header = PlotHeader::new(req.seed, n, root);
    file.write_all_at(&header.encode(), 0).map_err(write_err)?;

    let cache = cache_start.map(|start| MerkleCache {
        tree_height: height,
        start_level: start,
        levels: cache_levels,
    });
    let cache_path = MerkleCache::path_for(&req.path);
    let cache_tmp = match &cache {
        Some(cache) => {
            let bytes = cache.encode()?;
            let mut tmp = atomic_file::temp_beside(&cache_path)
                .map_err(|e| PlotError::io("creating a temporary file beside", &cache_path, e))?;
            std::io::Write::write_all(&mut tmp, &bytes)
                .map_err(|e| PlotError::io("writing", tmp.path(), e))?;
            tmp.as_file()
                .sync_all()
                .map_err(|e| PlotError::io("syncing", tmp.path(), e))?;
            Some(tmp)
        }
        None => None,
    };
    if cancel.load(Ordering::Relaxed) {
        return Err(PlotError::Cancelled);
    }
    atomic_file::persist(tmp, &req.path, false).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            PlotError::AlreadyExists {
                path: req.path.clone(),
            }
        } else {
            PlotError::io("publishing", &req.path, e)
        }
    })?;
    if let Some(tmp) = cache_tmp {
        atomic_file::persist(tmp, &cache_path, true)
            .map_err(|e| PlotError::io("publishing", &cache_path, e))?;
    }
    Ok(CreatedPlot {
        path: req.path.clone(),
        cache_path: cache.map(|_| cache_path),
        header,
        elapsed: started.elapsed(),
    })
}

/// Lock a mutex, ignoring poisoning (the protected data is a queue or a buffer pool, which
/// a panicking thread cannot leave inconsistent).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A fold that cannot come out empty did: a bug, reported rather than written to disk.
fn internal_error() -> PlotError {
    PlotError::InvalidRequest {
        reason: "internal error: a Merkle fold produced no node".into(),
    }
}

fn progress_at(done: u64, total: u64, elapsed: Duration) -> PlotProgress {
    let secs = elapsed.as_secs_f64();
    let rate = if secs > 0.0 { done as f64 / secs } else { 0.0 };
    let eta = (rate > 0.0).then(|| Duration::from_secs_f64((total - done) as f64 / rate));
    PlotProgress {
        leaves_done: done,
        leaves_total: total,
        bytes_written: HEADER_LEN as u64 + done * 32,
        leaves_per_sec: rate,
        eta,
    }
}

/// Generate chunk `index` into `buf` and fold it to level `target`, recording the nodes of
/// levels `capture_from..` on the way.
fn build_chunk(
    gen: &LeafGenerator,
    n: u64,
    index: u64,
    target: u32,
    capture_from: u32,
    mut buf: Vec<[u8; 32]>,
) -> Chunk {
    let start = index << CHUNK_LEVEL;
    let len = (n - start).min(1 << CHUNK_LEVEL) as usize;
    buf.resize(len, [0u8; 32]);
    gen.fill(start, &mut buf);
    let mut folder = MerkleFolder::with_capture(capture_from);
    folder.push_leaves(&buf);
    let (node, captured) = folder.finish_at_level_capturing(target);
    Chunk {
        leaves: buf,
        node,
        captured,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::atomic_file::{crash_points::crashed_writing, remove_stale_temporaries, Step};
    use crate::plot::PlotFile;

    /// A plot is published only whole: a crash at any step of publishing the plot (its
    /// bytes are written by the plot writer, so the steps start at `Written`) leaves no
    /// `.plot`, or the complete one; one while publishing its cache leaves the plot and no
    /// cache, or both. Temporaries are removed at the next start.
    #[test]
    fn a_crash_while_publishing_leaves_no_plot_or_a_whole_one() {
        let steps = [Step::Written, Step::Synced, Step::Renamed];
        for cache in [false, true] {
            for step in steps {
                let dir = tempfile::tempdir().unwrap();
                let path = dir.path().join("a.plot");
                let req = CreatePlot {
                    path: path.clone(),
                    miner_pk: [3; 32],
                    seed: [4; 32],
                    leaf_count: 256,
                    cache: CacheLevels::TopLevels(3),
                    threads: Some(1),
                };
                let cache_path = MerkleCache::path_for(&path);
                let target = if cache { &cache_path } else { &path };
                crashed_writing(target, step, || {
                    create_plot(&req, &mut |_| {}, &AtomicBool::new(false))
                })
                .unwrap_err();
                let plot_there = cache || step == Step::Renamed;
                assert_eq!(path.exists(), plot_there, "cache {cache} {step:?}");
                if plot_there {
                    let plot = PlotFile::open(&path).unwrap();
                    assert_eq!(plot.leaf_count(), 256);
                }
                assert_eq!(cache_path.exists(), cache && step == Step::Renamed);
                let temps = remove_stale_temporaries(&path).len()
                    + remove_stale_temporaries(&cache_path).len();
                // The plot's temporary is dropped by the failed job itself unless the
                // crash was in its own publishing.
                assert!(temps <= 2, "cache {cache} {step:?}");
                let left: Vec<_> = std::fs::read_dir(dir.path())
                    .unwrap()
                    .map(|e| e.unwrap().file_name().into_string().unwrap())
                    .filter(|n| n.contains(".tmp-"))
                    .collect();
                assert!(left.is_empty(), "{left:?}");
            }
        }
    }
}
