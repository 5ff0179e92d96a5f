//! The plot manager: which plots exist, which are farmed, and the jobs that create new ones.
//!
//! * [`registry`]: the in-memory registry behind `plots_metadata.json` (reference format,
//!   written atomically): states, duplicates, directory reconciliation. Synchronous and
//!   unit-tested without a runtime.
//! * [`PlotManager`]: the registry behind a mutex, the periodic directory scan, events, and
//!   the [`FarmedPlots`] watch that the mining loop reads without ever taking the lock.
//!   The lock is never held across file I/O: files are opened (probed) before it is taken,
//!   metadata is written after it is released, and readers (the API) get a snapshot
//!   published on every change, so they never wait for a scan.
//! * [`jobs`]: plot creation jobs with bounded concurrency on blocking threads, and the
//!   background builds of missing Merkle caches (`cache_build`, started with
//!   [`JobManager::start_cache_builds`]).
//!
//! A plot that disappears, fails to load or was made for another miner key is reported
//! (event + state + warning) and excluded, never fatal. Plots with the same seed are farmed
//! once; the others show as duplicates. Whoever adds a plot file outside the job manager
//! (the embedded devnet) can ask for a directory scan now with
//! [`FarmedPlots::request_rescan`] instead of waiting for the next periodic one.

mod cache_build;
pub mod choices;
pub mod dirs;
pub mod follow;
pub mod ids;
pub mod jobs;
pub mod registry;

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use spacetime::cache::{CacheError, MerkleCache};
use spacetime::plot::{check_plot, CheckMode, CheckProgress, CheckReport, PlotFile};
use tokio::sync::{watch, Notify};
use uuid::Uuid;

use crate::error::DaemonError;
use crate::events::{Event, EventBus};
pub use crate::types::{JobOutcome, JobProgress, PlotInfo, PlotState};
pub use dirs::{DirSummary, PlotDirs};
use ids::resolve_id;
pub use jobs::{JobInfo, JobManager, JobSpec, JobState};
pub use registry::Registry;
use registry::{stat_fingerprint, Probe, Summary};

/// A plot the mining loop may scan: open, valid, not a duplicate.
#[derive(Debug, Clone)]
pub struct FarmedPlot {
    /// The plot id.
    pub id: Uuid,
    /// The open (memory-mapped) plot.
    pub file: Arc<PlotFile>,
    /// Its Merkle cache, when present and validated against the header.
    pub cache: Option<Arc<MerkleCache>>,
}

/// The set of farmed plots, replaced as a whole whenever it changes.
pub type FarmedSet = Arc<Vec<FarmedPlot>>;

/// A cheap, lock-free view of the farmed plots for the mining loop.
#[derive(Debug, Clone)]
pub struct FarmedPlots {
    rx: watch::Receiver<FarmedSet>,
    rescan: Arc<Notify>,
}

impl FarmedPlots {
    /// The plots to farm right now.
    pub fn current(&self) -> FarmedSet {
        self.rx.borrow().clone()
    }

    /// Waits until the set changes (e.g. to resume once a first plot appears). Returns
    /// `false` when the plot manager is gone.
    pub async fn changed(&mut self) -> bool {
        self.rx.changed().await.is_ok()
    }

    /// Asks [`watch_directory`] to scan the plot directory now rather than at its next tick
    /// (e.g. right after writing a plot file there). Requests made while a scan runs cause
    /// one more scan; never blocks.
    pub fn request_rescan(&self) {
        self.rescan.notify_one();
    }
}

/// How thoroughly to check a plot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckKind {
    /// Every leaf and the root.
    Full,
    /// A random sample of leaves and their paths.
    Sampled {
        /// Number of samples.
        samples: u64,
        /// RNG seed; `None` = random.
        seed: Option<u64>,
    },
}

/// Prefix of the `id` argument of [`PlotManager::check`] that names a file by its path.
pub const FILE_PREFIX: &str = "file:";

/// Default number of samples of a sampled check.
pub const DEFAULT_CHECK_SAMPLES: u64 = 1000;

/// The kind of check that is run for `asked` on a plot of `leaf_count` leaves: a sampled
/// check whose Merkle paths would together read at least as many leaves as a full check
/// (each path reads the `2^c`-leaf subtree below the cache's lowest level `c`, or about the
/// whole plot without a cache) becomes the full check, which is stronger and no slower.
pub fn effective_check(
    asked: CheckKind,
    leaf_count: u64,
    cache: Option<&MerkleCache>,
) -> CheckKind {
    match asked {
        CheckKind::Full => CheckKind::Full,
        CheckKind::Sampled { samples, .. } => {
            let per_path = cache
                .and_then(|c| 1u64.checked_shl(c.start_level))
                .unwrap_or(leaf_count)
                .min(leaf_count);
            if samples.saturating_mul(per_path) >= leaf_count {
                CheckKind::Full
            } else {
                asked
            }
        }
    }
}

/// The result of [`PlotManager::check`].
#[derive(Debug, Clone)]
pub struct CheckOutcome {
    /// The plot, in its state after the check; `None` for a file that is not registered.
    pub plot: Option<PlotInfo>,
    /// The plot file checked.
    pub path: PathBuf,
    /// What the check found.
    pub report: CheckReport,
    /// What the daemon did about it beyond the plot's state (e.g. a stale cache removed).
    pub notes: Vec<String>,
}

/// What the API reads: replaced as a whole on every registry change.
#[derive(Debug, Default)]
struct View {
    /// Every plot, sorted by path.
    plots: Vec<PlotInfo>,
    summary: Summary,
    /// Totals per plot directory.
    dirs: Vec<DirSummary>,
    /// `dirs` with the leaves of the last scan added, for the scan it was computed from
    /// (a status call must not walk every plot: 1000 plots made it 0.3 ms of CPU each).
    scanned: std::sync::Mutex<Option<(ScanByPlot, Vec<DirSummary>)>>,
}

/// Leaves each plot scored in one scan (see `StatsSnapshot::last_scan_by_plot`).
type ScanByPlot = Arc<std::collections::BTreeMap<uuid::Uuid, u64>>;

/// Owns the registry; cheap to clone.
#[derive(Debug, Clone)]
pub struct PlotManager {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// Held only for in-memory work, never across file I/O.
    registry: Mutex<Registry>,
    /// Serialises metadata writes so that they land in the order of the changes.
    save_lock: Mutex<()>,
    view_tx: watch::Sender<Arc<View>>,
    farmed_tx: watch::Sender<FarmedSet>,
    events: EventBus,
    miner_pk: [u8; 32],
    /// The plot directories (fixed at load; read without the registry lock).
    plot_dirs: PlotDirs,
    /// Wakes the directory watcher for an immediate scan.
    rescan: Arc<Notify>,
}

impl PlotManager {
    /// Loads the metadata (a corrupt file is renamed aside and rebuilt) and registers every
    /// `*.plot` file of the plot directories; plots not made for `miner_pk` are flagged
    /// [`PlotState::WrongKey`]. Blocking: call from a blocking context at start.
    pub fn load(
        metadata_path: &Path,
        plot_dirs: impl Into<PlotDirs>,
        miner_pk: [u8; 32],
        events: EventBus,
    ) -> Result<Self, DaemonError> {
        let plot_dirs = plot_dirs.into();
        // Temporaries of plot jobs (and cache writes) a crash or a kill left behind: no job
        // runs before this point, and the data-dir lock keeps other daemons out.
        for dir in plot_dirs.as_slice() {
            for path in registry::remove_stale_temporaries(dir) {
                tracing::warn!(path = %path.display(), "removed the temporary file of an interrupted plot or cache write");
            }
        }
        let (mut registry, mut changes) =
            Registry::load(metadata_path, plot_dirs.clone(), miner_pk)?;
        changes.extend(registry.reconcile_directory(&[]));
        registry.save_if_dirty()?;
        let (farmed_tx, _) = watch::channel(Arc::new(registry.farmed()));
        let (view_tx, _) = watch::channel(Arc::new(View {
            plots: registry.list(),
            summary: registry.summary(),
            dirs: registry.dir_summaries(),
            scanned: Default::default(),
        }));
        for c in &changes {
            log_event(c);
        }
        let mgr = Self {
            inner: Arc::new(Inner {
                registry: Mutex::new(registry),
                save_lock: Mutex::new(()),
                view_tx,
                farmed_tx,
                events,
                miner_pk,
                plot_dirs,
                rescan: Arc::new(Notify::new()),
            }),
        };
        Ok(mgr)
    }

    fn registry(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.inner
            .registry
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    fn view(&self) -> Arc<View> {
        self.inner.view_tx.borrow().clone()
    }

    /// Runs `f` on the registry (in memory only), publishes the farmed set and the API view,
    /// then, with the registry lock released, saves and emits the events `f` returned.
    fn mutate<R>(
        &self,
        f: impl FnOnce(&mut Registry) -> Result<(R, Vec<Event>), DaemonError>,
    ) -> Result<R, DaemonError> {
        let _saving = self
            .inner
            .save_lock
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let (out, pending) = {
            let mut reg = self.registry();
            let out = f(&mut reg);
            // Save whatever changed even when `f` failed half-way.
            let pending = reg.take_save();
            self.publish(&reg);
            (out, pending)
        };
        let saved = match pending {
            Some(p) => p.write().inspect_err(|_| self.registry().mark_dirty()),
            None => Ok(()),
        };
        let (r, events) = out?;
        saved?;
        for e in events {
            log_event(&e);
            self.inner.events.emit(e);
        }
        Ok(r)
    }

    /// Publishes the farmed set (when it changed) and the API view.
    fn publish(&self, reg: &Registry) {
        let farmed = reg.farmed();
        self.inner.farmed_tx.send_if_modified(|cur| {
            let same = cur.len() == farmed.len()
                && cur.iter().zip(&farmed).all(|(a, b)| {
                    a.id == b.id
                        && Arc::ptr_eq(&a.file, &b.file)
                        && a.cache.as_ref().map(Arc::as_ptr) == b.cache.as_ref().map(Arc::as_ptr)
                });
            if !same {
                *cur = Arc::new(farmed);
            }
            !same
        });
        self.inner.view_tx.send_replace(Arc::new(View {
            plots: reg.list(),
            summary: reg.summary(),
            dirs: reg.dir_summaries(),
            scanned: Default::default(),
        }));
    }

    /// The mining loop's view of the farmed plots.
    pub fn farmed(&self) -> FarmedPlots {
        FarmedPlots {
            rx: self.inner.farmed_tx.subscribe(),
            rescan: self.inner.rescan.clone(),
        }
    }

    /// Every registered plot, sorted by path (a snapshot: never waits for a scan).
    pub fn list(&self) -> Vec<PlotInfo> {
        self.view().plots.clone()
    }

    /// One plot by id or unique id prefix (from the snapshot).
    pub fn get(&self, id: &str) -> Result<PlotInfo, DaemonError> {
        let view = self.view();
        let id = resolve_id(id, view.plots.iter().map(|p| p.id)).map_err(|e| e.for_kind("plot"))?;
        view.plots
            .iter()
            .find(|p| p.id == id)
            .cloned()
            .ok_or_else(|| DaemonError::PlotNotFound { id: id.to_string() })
    }

    /// Whether a registered plot uses `path` (from the snapshot).
    pub fn has_path(&self, path: &Path) -> bool {
        self.view().plots.iter().any(|p| p.path == path)
    }

    /// Reconciles with the plot directory: registers new `*.plot` files, marks vanished ones
    /// missing, reloads changed ones and re-tries those that failed to load. `skip` lists
    /// paths being written by jobs. Blocking (file I/O, without the registry lock).
    pub fn rescan(&self, skip: &[PathBuf]) -> Result<(), DaemonError> {
        let plan = self.registry().scan_plan(skip);
        let found = plan.run();
        self.mutate(|reg| Ok(((), reg.apply_scan(found))))
    }

    /// Registers a plot that a job has just published, under the job's id. Blocking.
    pub fn register_created(
        &self,
        id: Uuid,
        path: &Path,
        cache_path: Option<&Path>,
        cache_disabled: bool,
    ) -> Result<PlotInfo, DaemonError> {
        let probe = Probe::run(path, cache_path, &self.inner.miner_pk);
        self.mutate(|reg| {
            let (_, events) = reg.register_probed(id, path, probe)?;
            if cache_disabled {
                reg.set_cache_disabled(&id);
            }
            let info = reg
                .info(&id)
                .ok_or_else(|| DaemonError::PlotNotFound { id: id.to_string() })?;
            Ok((info, events))
        })
    }

    /// Unregisters a plot, optionally deleting its file and cache. Returns the plot as it
    /// was and the files deleted. Blocking.
    pub fn delete(
        &self,
        id: &str,
        delete_files: bool,
    ) -> Result<(PlotInfo, Vec<PathBuf>), DaemonError> {
        let (id, path, cache_path, plot_dir) = {
            let reg = self.registry();
            let id = reg.resolve(id)?;
            let (path, cache_path, _) = reg
                .paths(&id)
                .ok_or_else(|| DaemonError::PlotNotFound { id: id.to_string() })?;
            (id, path, cache_path, reg.plot_dirs().clone())
        };
        let (deleted, ignore_as) = if delete_files {
            (
                registry::delete_plot_files(&path, cache_path.as_deref(), &plot_dir)?,
                None,
            )
        } else {
            (Vec::new(), Some(stat_fingerprint(&path)))
        };
        self.mutate(|reg| {
            let (info, events) = reg.unregister(&id, ignore_as)?;
            Ok(((info, deleted), events))
        })
    }

    /// Checks a plot on the calling (blocking) thread. A plot whose own data fails is marked
    /// corrupted until its file changes or a full check passes; a full check that passes
    /// returns a corrupted plot to the farm. A cache that does not match a sound plot is a
    /// cache problem: it is removed (proving works without it) and the plot stays valid.
    /// `cancel` stops the check early with [`DaemonError::Cancelled`].
    pub fn check(
        &self,
        id: &str,
        kind: CheckKind,
        progress: &mut dyn FnMut(CheckProgress),
        cancel: &AtomicBool,
    ) -> Result<CheckOutcome, DaemonError> {
        let (id, path, cache_path, state, plot_dir) = {
            let reg = self.registry();
            let id = match id.strip_prefix(FILE_PREFIX) {
                Some(file) => match reg.find_path(Path::new(file)) {
                    Some(id) => id,
                    None => {
                        drop(reg);
                        return self.check_file(Path::new(file), kind, progress, cancel);
                    }
                },
                None => reg.resolve(id)?,
            };
            let info = reg
                .info(&id)
                .ok_or_else(|| DaemonError::PlotNotFound { id: id.to_string() })?;
            (
                id,
                info.path,
                info.cache_path,
                info.state,
                reg.plot_dirs().clone(),
            )
        };
        // Open our own handle so the check never holds the registry lock.
        let file = match PlotFile::open(&path) {
            Ok(f) => f,
            Err(spacetime::plot::PlotError::NotFound { .. }) => {
                return Err(DaemonError::PlotFileMissing {
                    id: id.to_string(),
                    path,
                });
            }
            Err(e) => {
                // A load failure, not a check result: the next scan re-tries it.
                let reason = e.to_string();
                let fp = stat_fingerprint(&path);
                self.mutate(|reg| Ok(((), reg.mark_corrupted(&id, &reason, false, fp))))?;
                return Err(DaemonError::PlotUnreadable {
                    subject: format!("plot {id} cannot be opened"),
                    reason,
                });
            }
        };
        let mut notes = Vec::new();
        // The registered cache, else one that appeared beside the plot since it was loaded.
        let cache_path =
            cache_path.or_else(|| Some(MerkleCache::path_for(&path)).filter(|p| p.exists()));
        // A cache that cannot be decoded is as stale as one that does not validate; one
        // that cannot be read (I/O) is left alone.
        let mut stale_cache = None;
        let cache = match cache_path.as_deref().map(MerkleCache::read) {
            None => None,
            Some(Ok(c)) => Some(c),
            Some(Err(e @ CacheError::Io(_))) => {
                notes.push(format!(
                    "the Merkle cache could not be read ({e}); not used for proofs"
                ));
                None
            }
            Some(Err(e)) => {
                stale_cache = Some(e.to_string());
                None
            }
        };
        let kind = effective_check(kind, file.leaf_count(), cache.as_ref());
        let report = self.run_check(&file, cache.as_ref(), kind, progress, cancel, || {
            format!("checking plot {id}")
        })?;
        drop(file);
        let last = choices::LastCheck {
            at_unix_ms: crate::timefmt::unix_ms(std::time::SystemTime::now()),
            ok: report.plot_ok(),
            full: kind == CheckKind::Full,
            checked: report.leaves_checked.max(report.paths_checked),
        };
        self.mutate(|reg| {
            reg.record_check(&id, last);
            Ok(((), Vec::new()))
        })?;
        if report.cache_ok == Some(false) {
            stale_cache = report.cache_error.clone().or(Some("mismatch".into()));
        }
        let mut refresh = false;
        if let (Some(why), Some(cache_path)) = (stale_cache, cache_path.as_deref()) {
            let what = format!(
                "the Merkle cache {} does not match the plot ({why})",
                cache_path.display()
            );
            let owned = registry::check_owned(cache_path, registry::Owned::Cache, &plot_dir);
            if !report.plot_ok() {
                notes.push(format!("{what}; not used for proofs"));
            } else if let Err(why) = owned {
                tracing::warn!(plot_id = %id, cache = %cache_path.display(), reason = %why, "not removing a registered cache path that is not a cache of ours");
                notes.push(format!(
                    "{what}; not used for proofs, and not removed: {why}"
                ));
            } else {
                match std::fs::remove_file(cache_path) {
                    Ok(()) => {
                        tracing::warn!(plot_id = %id, cache = %cache_path.display(), reason = %why, "removed a stale Merkle cache");
                        notes.push(format!(
                            "{what}: removed; the plot is fine and proofs work without it \
                             (they read more of the plot)"
                        ));
                        refresh = true;
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => refresh = true,
                    Err(e) => notes.push(format!(
                        "{what}; not used for proofs, and it could not be removed: {e}"
                    )),
                }
            }
        }
        if !report.plot_ok() {
            // A wrong-key plot fails every leaf check; it stays reported as what it is.
            if state != PlotState::WrongKey {
                let reason = registry::describe_failure(&report);
                let fp = stat_fingerprint(&path);
                self.mutate(|reg| Ok(((), reg.mark_corrupted(&id, &reason, true, fp))))?;
            }
        } else if (refresh && state != PlotState::Corrupted)
            || (kind == CheckKind::Full && state == PlotState::Corrupted)
        {
            // Re-open it as the scan would. This clears the flag of a failed check, which
            // only a passing full check may do.
            let generation = self.registry().paths(&id).map(|(_, _, g)| g);
            if let Some(generation) = generation {
                let probe = Probe::run(&path, None, &self.inner.miner_pk);
                self.mutate(|reg| Ok(((), reg.apply_probe(&id, generation, probe))))?;
            }
        }
        let plot = self.get(&id.to_string())?;
        if state == PlotState::Corrupted && plot.state == PlotState::Valid {
            notes.push("the full check passed: the plot is farmed again".into());
        }
        Ok(CheckOutcome {
            plot: Some(plot),
            path,
            report,
            notes,
        })
    }

    /// Run one check of an opened plot (`kind` as decided by [`effective_check`]) with this
    /// miner's key; a cancellation maps to [`DaemonError::Cancelled`], and `what` names the
    /// plot in the error of a failed check.
    fn run_check(
        &self,
        file: &PlotFile,
        cache: Option<&MerkleCache>,
        kind: CheckKind,
        progress: &mut dyn FnMut(CheckProgress),
        cancel: &AtomicBool,
        what: impl FnOnce() -> String,
    ) -> Result<CheckReport, DaemonError> {
        let mode = match kind {
            CheckKind::Full => CheckMode::Full {
                miner_pk: Some(self.inner.miner_pk),
            },
            CheckKind::Sampled { samples, seed } => CheckMode::Sampled {
                samples,
                miner_pk: Some(self.inner.miner_pk),
                seed: seed.unwrap_or_else(rand::random),
            },
        };
        check_plot(file, cache, &mode, progress, cancel).map_err(|e| match e {
            spacetime::plot::PlotError::Cancelled => DaemonError::Cancelled,
            other => DaemonError::internal(what(), other),
        })
    }

    /// Checks a plot file that is not registered: reads it (and its cache beside it), changes
    /// nothing. Blocking.
    fn check_file(
        &self,
        path: &Path,
        kind: CheckKind,
        progress: &mut dyn FnMut(CheckProgress),
        cancel: &AtomicBool,
    ) -> Result<CheckOutcome, DaemonError> {
        let file = PlotFile::open(path).map_err(|e| DaemonError::PlotUnreadable {
            subject: format!("{} cannot be opened as a plot", path.display()),
            reason: e.to_string(),
        })?;
        let mut notes = vec!["this file is not registered: the check changed nothing".into()];
        let cache_path = MerkleCache::path_for(path);
        let cache = if cache_path.exists() {
            match MerkleCache::read(&cache_path) {
                Ok(c) => Some(c),
                Err(e) => {
                    notes.push(format!(
                        "the Merkle cache {} is unusable: {e}",
                        cache_path.display()
                    ));
                    None
                }
            }
        } else {
            None
        };
        let kind = effective_check(kind, file.leaf_count(), cache.as_ref());
        let report = self.run_check(&file, cache.as_ref(), kind, progress, cancel, || {
            format!("checking {}", path.display())
        })?;
        if report.cache_ok == Some(false) {
            notes.push(format!(
                "the Merkle cache {} does not match the plot",
                cache_path.display()
            ));
        }
        Ok(CheckOutcome {
            plot: None,
            path: path.to_owned(),
            report,
            notes,
        })
    }

    /// Re-opens plot `id` with the cache just written at `cache_path`, as a scan would, so
    /// that the farmed set and the API use it. A plot changed meanwhile by someone else
    /// (checked, marked corrupted) keeps that change. Returns whether the cache is now in
    /// use. Blocking.
    pub(crate) fn adopt_cache(&self, id: &Uuid, cache_path: &Path) -> Result<bool, DaemonError> {
        // A concurrent change between the probe and its application is retried a few times.
        for _ in 0..3 {
            let Some((path, _, generation)) = self.registry().paths(id) else {
                return Ok(false);
            };
            let probe = Probe::run(&path, Some(cache_path), &self.inner.miner_pk);
            let applied = self.mutate(|reg| {
                if reg.paths(id).map(|(_, _, g)| g) != Some(generation) {
                    return Ok((false, Vec::new()));
                }
                Ok((true, reg.apply_probe(id, generation, probe)))
            })?;
            if applied {
                return Ok(self.registry().info(id).is_some_and(|p| p.cache_in_use));
            }
        }
        Ok(false)
    }

    /// Marks plot `id` corrupted as a failed check does (it stays so until its file changes
    /// or a full check passes). Blocking.
    pub(crate) fn mark_check_failed(&self, id: &Uuid, reason: &str) -> Result<(), DaemonError> {
        let Some((path, _, _)) = self.registry().paths(id) else {
            return Ok(());
        };
        let fp = stat_fingerprint(&path);
        self.mutate(|reg| Ok(((), reg.mark_corrupted(id, reason, true, fp))))
    }

    /// Flushes the metadata file (at shutdown). Blocking.
    pub fn flush(&self) -> Result<(), DaemonError> {
        let _saving = self
            .inner
            .save_lock
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let pending = {
            let mut reg = self.registry();
            reg.mark_dirty();
            reg.take_save()
        };
        match pending {
            Some(p) => p.write().inspect_err(|_| self.registry().mark_dirty()),
            None => Ok(()),
        }
    }

    /// Counts for the status (from the snapshot).
    pub fn summary(&self) -> Summary {
        self.view().summary
    }

    /// Totals per plot directory, in configuration order, then the directories of plots
    /// registered outside them (from the snapshot; free space as of the last directory
    /// scan).
    pub fn dir_summaries(&self) -> Vec<DirSummary> {
        self.view().dirs.clone()
    }

    /// [`PlotManager::dir_summaries`] with the leaves each directory's plots scored in the
    /// scan `scanned`; computed once per view and scan, then served from memory.
    pub fn dir_summaries_scanned(&self, scanned: &ScanByPlot) -> Vec<DirSummary> {
        let view = self.view();
        let mut memo = view.scanned.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((key, dirs)) = &*memo {
            if Arc::ptr_eq(key, scanned) {
                return dirs.clone();
            }
        }
        let mut dirs = view.dirs.clone();
        if !scanned.is_empty() {
            dirs::add_scanned(
                &mut dirs,
                &self.plot_dirs(),
                view.plots
                    .iter()
                    .filter_map(|p| Some((p.path.as_path(), *scanned.get(&p.id)?))),
            );
        }
        *memo = Some((Arc::clone(scanned), dirs.clone()));
        dirs
    }

    /// The configured plot directories (never waits for the registry lock).
    pub fn plot_dirs(&self) -> PlotDirs {
        self.inner.plot_dirs.clone()
    }
}

/// Runs the periodic directory scan until `shutdown`, and a scan at once whenever one is
/// requested through [`FarmedPlots::request_rescan`]; scans on a blocking thread so file
/// opens never stall the runtime.
pub async fn watch_directory(
    plots: PlotManager,
    jobs: JobManager,
    interval: Duration,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await; // the first tick fires at once; the manager has just loaded
    let rescan = plots.inner.rescan.clone();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
            () = rescan.notified() => {
                tracing::debug!("plot directory scan requested");
                tick.reset();
            }
        }
        let plots = plots.clone();
        let skip = jobs.reserved_paths();
        match tokio::task::spawn_blocking(move || plots.rescan(&skip)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "plot directory scan failed"),
            Err(e) => tracing::error!(error = %e, "plot directory scan panicked"),
        }
    }
}

fn log_event(e: &Event) {
    match e {
        Event::PlotAdded(p) if p.state == PlotState::WrongKey => tracing::warn!(
            plot_id = %p.id, path = %p.path.display(), problem = p.problem.as_deref().unwrap_or(""),
            "plot {} was made for another miner key: not farmed", p.path.display()
        ),
        Event::PlotAdded(p) => tracing::info!(
            plot_id = %p.id, path = %p.path.display(), state = p.state.as_str(),
            problem = p.problem.as_deref().unwrap_or(""), "plot registered"
        ),
        Event::PlotRemoved {
            plot_id,
            path,
            files_deleted,
        } => tracing::info!(
            plot_id = %plot_id, path = %path.display(), files_deleted, "plot removed"
        ),
        Event::PlotStateChanged {
            plot_id,
            path,
            old,
            new,
            reason,
        } => tracing::warn!(
            plot_id = %plot_id, path = %path.display(), from = old.as_str(), to = new.as_str(),
            reason = %reason, "plot state changed"
        ),
        other => tracing::debug!(event = ?other, "event"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::ProvingGate;
    use spacetime::plot::{create_plot, CacheLevels, CreatePlot};

    #[test]
    fn a_sampled_check_that_would_read_the_plot_becomes_the_full_check() {
        let sampled = |samples| CheckKind::Sampled {
            samples,
            seed: None,
        };
        // Without a cache one path reads about the whole plot.
        assert_eq!(effective_check(sampled(1), 1 << 20, None), CheckKind::Full);
        let cache = MerkleCache {
            tree_height: 20,
            start_level: 12,
            levels: Vec::new(),
        };
        // 2^12 leaves per path: 255 paths read less than 2^20 leaves, 256 as many.
        assert_eq!(
            effective_check(sampled(255), 1 << 20, Some(&cache)),
            sampled(255)
        );
        assert_eq!(
            effective_check(sampled(256), 1 << 20, Some(&cache)),
            CheckKind::Full
        );
        assert_eq!(effective_check(CheckKind::Full, 8, None), CheckKind::Full);
    }

    const PK: [u8; 32] = [4; 32];

    fn make(path: &Path, seed: u8, cache: CacheLevels) {
        create_plot(
            &CreatePlot {
                path: path.to_owned(),
                miner_pk: PK,
                seed: [seed; 32],
                leaf_count: 256,
                cache,
                threads: Some(1),
            },
            &mut |_| {},
            &AtomicBool::new(false),
        )
        .unwrap();
    }

    fn manager(dir: &Path) -> PlotManager {
        let plot_dir = dir.join("plots");
        std::fs::create_dir_all(&plot_dir).unwrap();
        PlotManager::load(
            &dir.join("plots_metadata.json"),
            &plot_dir,
            PK,
            EventBus::new(),
        )
        .unwrap()
    }

    /// A manager over one cacheless plot `plots/a.plot` in a fresh directory: the directory
    /// (kept alive by the caller), the plot's path, the manager and the plot's id.
    fn one_plot() -> (tempfile::TempDir, PathBuf, PlotManager, Uuid) {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("plots").join("a.plot");
        std::fs::create_dir_all(a.parent().unwrap()).unwrap();
        make(&a, 1, CacheLevels::Disabled);
        let plots = manager(dir.path());
        let id = plots.list()[0].id;
        (dir, a, plots, id)
    }

    fn check(plots: &PlotManager, id: Uuid, kind: CheckKind) -> CheckOutcome {
        plots
            .check(&id.to_string(), kind, &mut |_| {}, &AtomicBool::new(false))
            .unwrap()
    }

    #[test]
    fn a_stale_cache_is_removed_and_the_plot_stays_valid() {
        let dir = tempfile::tempdir().unwrap();
        let plot_dir = dir.path().join("plots");
        std::fs::create_dir_all(&plot_dir).unwrap();
        let a = plot_dir.join("a.plot");
        make(&a, 1, CacheLevels::TopLevels(4));
        // The cache of another plot of the same size: decodes, does not match.
        let other = dir.path().join("other.plot");
        make(&other, 2, CacheLevels::TopLevels(4));
        let cache = MerkleCache::path_for(&a);
        std::fs::copy(MerkleCache::path_for(&other), &cache).unwrap();
        let plots = manager(dir.path());
        let id = plots.list()[0].id;
        assert_eq!(plots.list()[0].state, PlotState::Valid);
        assert!(!plots.list()[0].cache_in_use);
        for kind in [
            CheckKind::Sampled {
                samples: 16,
                seed: Some(1),
            },
            CheckKind::Full,
        ] {
            std::fs::copy(MerkleCache::path_for(&other), &cache).unwrap();
            let out = check(&plots, id, kind);
            assert!(out.report.plot_ok(), "{kind:?}: {:?}", out.report);
            assert_eq!(out.report.cache_ok, Some(false));
            assert_eq!(
                out.plot.as_ref().unwrap().state,
                PlotState::Valid,
                "{kind:?}"
            );
            assert!(
                !out.plot.as_ref().unwrap().cache_in_use
                    && out.plot.as_ref().unwrap().cache_path.is_none()
            );
            assert!(
                out.notes.iter().any(|n| n.contains("removed")),
                "{:?}",
                out.notes
            );
            assert!(!cache.exists(), "the stale cache is dropped");
            assert_eq!(plots.farmed().current().len(), 1);
            assert_eq!(plots.summary().valid, 1);
        }
        // Nothing recorded as corrupted: a restart farms it.
        drop(plots);
        let again = manager(dir.path());
        assert_eq!(again.list()[0].state, PlotState::Valid);
    }

    /// Audit row 2: `check-plot` deleted a `victim.txt` named as `cacheFilePath` in
    /// `plots_metadata.json`. A registered cache path that is not a cache inside the plot
    /// directory is reported, never removed.
    #[test]
    fn a_check_never_deletes_a_cache_path_that_is_not_a_cache_of_ours() {
        let (dir, _a, plots, id) = one_plot();
        drop(plots);
        let meta = dir.path().join("plots_metadata.json");
        for victim in [
            dir.path().join("victim.txt"),
            dir.path().join("plots").join("victim.txt"),
        ] {
            std::fs::write(&victim, b"precious").unwrap();
            let mut entries = spacetime::metadata::load(&meta).unwrap();
            entries[0].cache_file_path = victim.display().to_string();
            spacetime::metadata::save_atomic(&meta, &entries).unwrap();
            let plots = manager(dir.path());
            let out = check(&plots, id, CheckKind::Full);
            assert!(out.report.plot_ok(), "{:?}", out.report);
            assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
            assert!(
                out.notes.iter().any(|n| n.contains("not removed")),
                "{:?}",
                out.notes
            );
        }
    }

    #[test]
    fn a_passing_full_check_returns_a_corrupted_plot_to_the_farm() {
        let (dir, a, plots, id) = one_plot();
        // As a failed check leaves it (e.g. a read error of a flaky disk, since replaced).
        plots
            .mutate(|reg| {
                Ok((
                    (),
                    reg.mark_corrupted(&id, "check failed", true, stat_fingerprint(&a)),
                ))
            })
            .unwrap();
        assert!(plots.farmed().current().is_empty());
        // A sampled check is not enough, even one that drops a stale cache.
        let other = dir.path().join("other.plot");
        make(&other, 2, CacheLevels::TopLevels(4));
        std::fs::copy(MerkleCache::path_for(&other), MerkleCache::path_for(&a)).unwrap();
        let out = check(
            &plots,
            id,
            CheckKind::Sampled {
                samples: 8,
                seed: Some(3),
            },
        );
        assert!(out.report.plot_ok() && out.report.cache_ok == Some(false));
        assert_eq!(out.plot.as_ref().unwrap().state, PlotState::Corrupted);
        assert!(!MerkleCache::path_for(&a).exists());
        let out = check(&plots, id, CheckKind::Full);
        assert!(out.report.passed());
        assert_eq!(out.plot.as_ref().unwrap().state, PlotState::Valid);
        assert!(out.plot.as_ref().unwrap().problem.is_none());
        assert_eq!(plots.farmed().current().len(), 1);
        // And it stays so across a restart (the failed-check record is cleared).
        drop(plots);
        let again = manager(dir.path());
        assert_eq!(again.list()[0].state, PlotState::Valid);
    }

    #[test]
    fn reads_do_not_wait_for_the_registry_lock() {
        let (_dir, a, plots, id) = one_plot();
        // Held as a scan or a save would have held it during file I/O.
        let guard = plots.registry();
        let (tx, rx) = std::sync::mpsc::channel();
        let reader = {
            let plots = plots.clone();
            std::thread::spawn(move || {
                let got = (
                    plots.list().len(),
                    plots.get(&id.to_string()[..8]).map(|p| p.id).ok(),
                    plots.summary().valid,
                    plots.has_path(&a),
                    plots.plot_dirs().as_slice().len(),
                    plots.dir_summaries().len(),
                );
                tx.send(got).unwrap();
            })
        };
        let got = rx.recv_timeout(Duration::from_secs(5));
        drop(guard);
        reader.join().unwrap();
        assert_eq!(
            got.expect("reads answer while the lock is held"),
            (1, Some(id), 1, true, 1, 1)
        );
    }

    #[tokio::test]
    async fn a_requested_rescan_registers_a_new_plot_without_waiting_for_the_interval() {
        let dir = tempfile::tempdir().unwrap();
        let plot_dir = dir.path().join("plots");
        std::fs::create_dir_all(&plot_dir).unwrap();
        let events = EventBus::new();
        let plots = PlotManager::load(
            &dir.path().join("plots_metadata.json"),
            &plot_dir,
            PK,
            events.clone(),
        )
        .unwrap();
        let jobs = JobManager::new(plots.clone(), events, PK, 1, 1, ProvingGate::default());
        let token = tokio_util::sync::CancellationToken::new();
        // An interval no test waits for: only the request can trigger the scan.
        let watcher = tokio::spawn(watch_directory(
            plots.clone(),
            jobs,
            Duration::from_secs(3600),
            token.clone(),
        ));
        let mut farmed = plots.farmed();
        assert!(farmed.current().is_empty());
        create_plot(
            &CreatePlot {
                path: plot_dir.join("new.plot"),
                miner_pk: PK,
                seed: [1; 32],
                leaf_count: 64,
                cache: CacheLevels::Disabled,
                threads: Some(1),
            },
            &mut |_| {},
            &AtomicBool::new(false),
        )
        .unwrap();
        farmed.request_rescan();
        tokio::time::timeout(Duration::from_secs(5), farmed.changed())
            .await
            .expect("the requested scan registers the plot at once");
        assert_eq!(farmed.current().len(), 1);
        token.cancel();
        tokio::time::timeout(Duration::from_secs(5), watcher)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(plots.summary().valid, 1);
    }
}
