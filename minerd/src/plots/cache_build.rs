//! Background Merkle cache builds (`buildMissingCaches`).
//!
//! Without a cache a proof reads about the whole plot (seconds for a few GiB), so the mining
//! loop may have to skip the plot near a deadline. Plots written by the reference usually
//! have no cache, and a check removes a stale one. This task watches the plot list (every
//! registry change publishes it: start, directory scan, job, check) and builds the default
//! cache of each valid plot without a usable one: one plot at a time, on a blocking thread
//! with the plot jobs' thread count, pausing while a proof is in progress exactly as plot
//! jobs do. The cache is written atomically beside the plot, then the plot is re-opened
//! through the registry so that the farmed set (and `cache_in_use`) picks it up.
//!
//! A plot whose recomputed root differs from its header is corrupt: it is marked so, as a
//! failed check would. A build that fails otherwise is not retried until the plot's size or
//! root changes (or the daemon restarts). Shutdown cancels a running build between two
//! batches of leaves; the core leaves no temporary file behind.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use spacetime::cache::{build_cache_file, CacheBuildError};
use spacetime::merkle::tree_height;
use spacetime::plot::{CacheLevels, CheckProgress, PlotFile};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::{PlotInfo, PlotManager, PlotState};
use crate::stats::ProvingGate;

/// Longest a build pauses for one proof (as for plot jobs: only protects the build from a
/// stuck guard).
const MAX_PROOF_PAUSE: Duration = Duration::from_secs(60);

/// What identifies a plot's content well enough to know a failed build need not be retried.
type Attempt = (u64, Option<[u8; 32]>);

fn attempt(p: &PlotInfo) -> Attempt {
    (p.size_bytes, p.merkle_root)
}

/// Whether `p` is farmed without a usable cache although its tree is high enough for one.
fn needs_cache(p: &PlotInfo) -> bool {
    p.state == PlotState::Valid
        && !p.cache_in_use
        && !p.cache_disabled
        && p.header.is_some_and(|h| {
            CacheLevels::Default
                .start_level(tree_height(h.leaf_count))
                .is_some()
        })
}

/// How one build ended.
#[derive(Debug)]
enum Built {
    /// Written and taken over by the registry.
    Adopted,
    /// Not to be retried for this content (failed, corrupt, or nothing to build).
    GaveUp,
    /// Shutdown.
    Cancelled,
}

/// Builds missing caches until `stop` is cancelled. `threads`: hashing threads per build.
pub(crate) async fn run(
    plots: PlotManager,
    proving: ProvingGate,
    threads: usize,
    stop: CancellationToken,
) {
    let mut changes = plots.inner.view_tx.subscribe();
    let mut given_up: HashMap<Uuid, Attempt> = HashMap::new();
    loop {
        changes.borrow_and_update();
        let list = plots.list();
        given_up.retain(|id, seen| list.iter().any(|p| p.id == *id && attempt(p) == *seen));
        let next = list
            .into_iter()
            .find(|p| needs_cache(p) && !given_up.contains_key(&p.id));
        let Some(plot) = next else {
            tokio::select! {
                () = stop.cancelled() => return,
                changed = changes.changed() => if changed.is_err() { return },
            }
            continue;
        };
        match build_one(&plots, &plot, &proving, threads, &stop).await {
            Built::Adopted => {}
            Built::GaveUp => {
                given_up.insert(plot.id, attempt(&plot));
            }
            Built::Cancelled => return,
        }
    }
}

async fn build_one(
    plots: &PlotManager,
    plot: &PlotInfo,
    proving: &ProvingGate,
    threads: usize,
    stop: &CancellationToken,
) -> Built {
    let (id, path) = (plot.id, plot.path.clone());
    let leaves = plot.header.map_or(0, |h| h.leaf_count);
    tracing::info!(plot_id = %id, path = %path.display(), leaves, threads, "building a missing Merkle cache");
    let started = Instant::now();
    let cancel = Arc::new(AtomicBool::new(false));
    let mut task = {
        let (cancel, proving, path) = (cancel.clone(), proving.clone(), path.clone());
        tokio::task::spawn_blocking(move || {
            let file = PlotFile::open(&path).map_err(|e| e.to_string())?;
            let mut on_progress = |_: CheckProgress| {
                // Step aside while a proof is being generated: with this thread blocked,
                // no new batch of leaves is hashed.
                if proving.is_active() {
                    let waited = proving.wait_idle(MAX_PROOF_PAUSE, &cancel);
                    tracing::debug!(plot_id = %id, ?waited, "cache build paused for a proof");
                }
            };
            Ok::<_, String>(build_cache_file(
                &file,
                CacheLevels::Default,
                Some(threads),
                &mut on_progress,
                &cancel,
            ))
        })
    };
    let joined = tokio::select! {
        r = &mut task => r,
        () = stop.cancelled() => {
            cancel.store(true, Ordering::SeqCst);
            task.await
        }
    };
    let elapsed = started.elapsed();
    let warn = |error: &dyn std::fmt::Display| {
        tracing::warn!(
            plot_id = %id, path = %path.display(), error = %error,
            "cannot build the Merkle cache; proofs of this plot read the whole plot"
        );
    };
    let (cache_path, cache) = match joined {
        Ok(Ok(Ok(Some(written)))) => written,
        Ok(Ok(Ok(None))) => return Built::GaveUp,
        Ok(Ok(Err(CacheBuildError::Cancelled))) => {
            tracing::info!(plot_id = %id, path = %path.display(), ?elapsed, "Merkle cache build cancelled");
            return Built::Cancelled;
        }
        Ok(Ok(Err(e @ CacheBuildError::RootMismatch { .. }))) => {
            let reason = format!("building its Merkle cache: {e}");
            let plots = plots.clone();
            let done =
                tokio::task::spawn_blocking(move || plots.mark_check_failed(&id, &reason)).await;
            match done {
                Ok(Ok(())) => {}
                Ok(Err(e)) => warn(&e),
                Err(e) => warn(&e),
            }
            return Built::GaveUp;
        }
        Ok(Ok(Err(e))) => {
            warn(&spacetime::error_chain(&e));
            return Built::GaveUp;
        }
        Ok(Err(e)) => {
            warn(&e);
            return Built::GaveUp;
        }
        Err(e) => {
            warn(&format!("the cache builder panicked: {e}"));
            return Built::GaveUp;
        }
    };
    let bytes = cache.encoded_len();
    let adopt = {
        let (plots, path, cache_path) = (plots.clone(), path.clone(), cache_path.clone());
        tokio::task::spawn_blocking(move || {
            let adopted = plots.adopt_cache(&id, &cache_path);
            // The plot was deleted while its cache was being built: leave no orphan cache.
            if matches!(adopted, Ok(false)) && !path.exists() {
                if let Err(e) = std::fs::remove_file(&cache_path) {
                    if e.kind() != std::io::ErrorKind::NotFound {
                        tracing::warn!(cache = %cache_path.display(), error = %e, "cannot remove the cache of a deleted plot");
                    }
                }
            }
            adopted
        })
        .await
    };
    match adopt {
        Ok(Ok(true)) => {
            tracing::info!(
                plot_id = %id, path = %path.display(), cache = %cache_path.display(), bytes,
                ?elapsed, "Merkle cache built: proofs of this plot now read a small subtree"
            );
            Built::Adopted
        }
        Ok(Ok(false)) => {
            warn(&format!(
                "{} was written but the plot changed or went away meanwhile",
                cache_path.display()
            ));
            Built::GaveUp
        }
        Ok(Err(e)) => {
            warn(&e);
            Built::GaveUp
        }
        Err(e) => {
            warn(&e);
            Built::GaveUp
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::EventBus;
    use crate::plots::JobManager;
    use spacetime::cache::MerkleCache;
    use spacetime::plot::{create_plot, CreatePlot};
    use std::path::{Path, PathBuf};

    const PK: [u8; 32] = [6; 32];

    fn make(path: &Path, seed: u8, leaves: u64, cache: CacheLevels) {
        create_plot(
            &CreatePlot {
                path: path.to_owned(),
                miner_pk: PK,
                seed: [seed; 32],
                leaf_count: leaves,
                cache,
                threads: Some(1),
            },
            &mut |_| {},
            &AtomicBool::new(false),
        )
        .unwrap();
    }

    struct Setup {
        _dir: tempfile::TempDir,
        plot_dir: PathBuf,
        metadata: PathBuf,
        plots: PlotManager,
        jobs: JobManager,
    }

    /// A plot manager over a directory holding `a.plot` (no cache) and a job manager.
    fn setup(leaves: u64, gate: ProvingGate) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let plot_dir = dir.path().join("plots");
        std::fs::create_dir_all(&plot_dir).unwrap();
        make(&plot_dir.join("a.plot"), 1, leaves, CacheLevels::Disabled);
        let metadata = dir.path().join("plots_metadata.json");
        let events = EventBus::new();
        let plots = PlotManager::load(&metadata, &plot_dir, PK, events.clone()).unwrap();
        let jobs = JobManager::new(plots.clone(), events, PK, 1, 1, gate);
        Setup {
            _dir: dir,
            plot_dir,
            metadata,
            plots,
            jobs,
        }
    }

    async fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !f() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[tokio::test]
    async fn a_plot_created_with_cache_levels_0_never_gets_a_background_cache() {
        let s = setup(3000, ProvingGate::default());
        // b.plot: created by a job with --cache-levels 0.
        let job = s
            .jobs
            .create(crate::plots::jobs::JobSpec {
                leaf_count: 3000,
                cache_levels: Some(0),
                seed: Some([9; 32]),
                file_name: Some("b.plot".into()),
                threads: Some(1),
                output_path: None,
            })
            .await
            .unwrap();
        let mut done = job.done.clone();
        done.wait_for(Option::is_some).await.unwrap();
        let b = |s: &Setup| {
            s.plots
                .list()
                .into_iter()
                .find(|p| p.path.ends_with("b.plot"))
                .unwrap()
        };
        assert!(b(&s).cache_disabled);
        s.jobs.start_cache_builds();
        // a.plot (no cache, no choice) gets one; b.plot does not.
        wait_for("a's cache", || {
            s.plots
                .list()
                .iter()
                .any(|p| p.path.ends_with("a.plot") && p.cache_in_use)
        })
        .await;
        assert!(!b(&s).cache_in_use);
        assert!(!s.plot_dir.join("b.plot.cache").exists());
        // The choice survives a reload of the registry.
        let reloaded = PlotManager::load(&s.metadata, &s.plot_dir, PK, EventBus::new()).unwrap();
        let b2 = reloaded
            .list()
            .into_iter()
            .find(|p| p.path.ends_with("b.plot"))
            .unwrap();
        assert!(b2.cache_disabled);
    }

    #[tokio::test]
    async fn a_plot_without_cache_gets_one_and_again_after_a_check_drops_a_stale_one() {
        let s = setup(3000, ProvingGate::default());
        let plot = s.plots.list()[0].clone();
        assert!(plot.state == PlotState::Valid && !plot.cache_in_use);
        assert!(s.plots.farmed().current()[0].cache.is_none());
        s.jobs.start_cache_builds();
        wait_for("the cache", || s.plots.list()[0].cache_in_use).await;
        let cache_path = MerkleCache::path_for(&plot.path);
        assert_eq!(s.plots.list()[0].cache_path.as_deref(), Some(&*cache_path));
        let farmed = s.plots.farmed().current();
        let cache = farmed[0]
            .cache
            .as_ref()
            .expect("the mining loop gets the cache");
        assert_eq!(
            cache.start_level,
            CacheLevels::Default.start_level(12).unwrap()
        );
        // The metadata file is saved after the registry shows the cache: poll for it.
        wait_for("the cache path in the metadata file", || {
            std::fs::read_to_string(&s.metadata).is_ok_and(|m| m.contains("a.plot.cache"))
        })
        .await;

        // A check that finds a stale cache removes it; the builder then makes a good one.
        let other = s.plot_dir.join("other.tmp");
        make(&other, 2, 3000, CacheLevels::Default);
        std::fs::copy(MerkleCache::path_for(&other), &cache_path).unwrap();
        std::fs::remove_file(&other).unwrap();
        std::fs::remove_file(MerkleCache::path_for(&other)).unwrap();
        let out = s
            .plots
            .check(
                &plot.id.to_string(),
                crate::plots::CheckKind::Full,
                &mut |_| {},
                &AtomicBool::new(false),
            )
            .unwrap();
        assert_eq!(out.report.cache_ok, Some(false));
        wait_for("the rebuilt cache", || s.plots.list()[0].cache_in_use).await;
        MerkleCache::read(&cache_path)
            .unwrap()
            .validate(&plot.header.unwrap())
            .unwrap();
        s.jobs.shutdown().await;
        assert_eq!(names(&s.plot_dir), ["a.plot", "a.plot.cache"]);
    }

    #[tokio::test]
    async fn builds_pause_while_proving_and_stop_at_shutdown_leaving_nothing() {
        let gate = ProvingGate::default();
        let s = setup(1 << 16, gate.clone());
        let guard = gate.enter();
        s.jobs.start_cache_builds();
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(!s.plots.list()[0].cache_in_use, "built while a proof ran");
        assert_eq!(names(&s.plot_dir), ["a.plot"]);
        // Shutdown with the build paused: cancelled promptly, no cache, no temporary file.
        tokio::time::timeout(Duration::from_secs(5), s.jobs.shutdown())
            .await
            .expect("shutdown stops the build");
        drop(guard);
        assert_eq!(names(&s.plot_dir), ["a.plot"]);
        assert!(!s.plots.list()[0].cache_in_use);
    }

    #[tokio::test]
    async fn a_paused_build_resumes_when_the_proof_ends() {
        let gate = ProvingGate::default();
        let s = setup(1 << 16, gate.clone());
        let guard = gate.enter();
        s.jobs.start_cache_builds();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!s.plots.list()[0].cache_in_use);
        drop(guard);
        wait_for("the cache", || s.plots.list()[0].cache_in_use).await;
        s.jobs.shutdown().await;
    }

    #[tokio::test]
    async fn a_plot_deleted_during_its_build_leaves_no_orphan_cache() {
        let gate = ProvingGate::default();
        let s = setup(1 << 16, gate.clone());
        let guard = gate.enter();
        s.jobs.start_cache_builds();
        // Paused after hashing, before writing; the plot is deleted with its files.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let id = s.plots.list()[0].id.to_string();
        s.plots.delete(&id, true).unwrap();
        drop(guard);
        let mut left = names(&s.plot_dir);
        for _ in 0..50 {
            tokio::time::sleep(Duration::from_millis(20)).await;
            left = names(&s.plot_dir);
        }
        assert!(left.is_empty(), "{left:?}");
        assert!(s.plots.list().is_empty());
        s.jobs.shutdown().await;
    }

    #[tokio::test]
    async fn a_plot_whose_root_does_not_match_is_marked_corrupted() {
        use std::os::unix::fs::FileExt;
        let s = setup(3000, ProvingGate::default());
        let path = s.plot_dir.join("a.plot");
        // A middle leaf: the first and last (compared at load) stay right.
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        let off = 121 + 32 * 1500;
        let mut byte = [0u8; 1];
        f.read_exact_at(&mut byte, off).unwrap();
        f.write_all_at(&[byte[0] ^ 0x80], off).unwrap();
        drop(f);
        let s = Setup {
            plots: PlotManager::load(&s.metadata, &s.plot_dir, PK, EventBus::new()).unwrap(),
            ..s
        };
        let jobs = JobManager::new(
            s.plots.clone(),
            EventBus::new(),
            PK,
            1,
            1,
            ProvingGate::default(),
        );
        assert_eq!(s.plots.list()[0].state, PlotState::Valid);
        jobs.start_cache_builds();
        wait_for("the corrupted state", || {
            s.plots.list()[0].state == PlotState::Corrupted
        })
        .await;
        let problem = s.plots.list()[0].problem.clone().unwrap();
        assert!(problem.contains("Merkle root"), "{problem}");
        assert!(s.plots.farmed().current().is_empty());
        jobs.shutdown().await;
        assert_eq!(names(&s.plot_dir), ["a.plot"]);
    }
}
