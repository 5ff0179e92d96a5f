//! The plot manager: which plots exist, which are farmed, and the jobs that create new ones.
//!
//! * [`registry`]: the in-memory registry behind `plots_metadata.json` (reference format,
//!   written atomically): states, duplicates, directory reconciliation. Synchronous and
//!   unit-tested without a runtime.
//! * [`PlotManager`]: the registry behind a mutex, the periodic directory scan, events, and
//!   the [`FarmedPlots`] watch that the mining loop reads without ever taking the lock.
//! * [`jobs`]: plot creation jobs with bounded concurrency on blocking threads.
//!
//! A plot that disappears, fails to load or was made for another miner key is reported
//! (event + state + warning) and excluded, never fatal. Plots with the same seed are farmed
//! once; the others show as duplicates. Whoever adds a plot file outside the job manager
//! (the embedded devnet) can ask for a directory scan now with
//! [`FarmedPlots::request_rescan`] instead of waiting for the next periodic one.

pub mod jobs;
pub mod registry;

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use spacetime::cache::MerkleCache;
use spacetime::plot::{check_plot, CheckMode, CheckProgress, CheckReport, PlotFile};
use tokio::sync::{watch, Notify};
use uuid::Uuid;

use crate::error::DaemonError;
use crate::events::{Event, EventBus};
pub use jobs::{JobInfo, JobManager, JobOutcome, JobProgress, JobSpec, JobState};
pub use registry::{PlotInfo, PlotState, Registry};

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

/// Default number of samples of a sampled check.
pub const DEFAULT_CHECK_SAMPLES: u64 = 1000;

/// Owns the registry; cheap to clone.
#[derive(Debug, Clone)]
pub struct PlotManager {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    registry: Mutex<Registry>,
    farmed_tx: watch::Sender<FarmedSet>,
    events: EventBus,
    miner_pk: [u8; 32],
    /// Wakes the directory watcher for an immediate scan.
    rescan: Arc<Notify>,
}

impl PlotManager {
    /// Loads the metadata (a corrupt file is renamed aside and rebuilt) and registers every
    /// `*.plot` file of the plot directory; plots not made for `miner_pk` are flagged
    /// [`PlotState::WrongKey`]. Blocking: call from a blocking context at start.
    pub fn load(
        metadata_path: &Path,
        plot_dir: &Path,
        miner_pk: [u8; 32],
        events: EventBus,
    ) -> Result<Self, DaemonError> {
        let (mut registry, mut changes) = Registry::load(metadata_path, plot_dir, miner_pk)?;
        changes.extend(registry.reconcile_directory(&[]));
        registry.save_if_dirty()?;
        let (farmed_tx, _) = watch::channel(Arc::new(registry.farmed()));
        for c in &changes {
            log_event(c);
        }
        let mgr = Self {
            inner: Arc::new(Inner {
                registry: Mutex::new(registry),
                farmed_tx,
                events,
                miner_pk,
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

    /// Runs `f` on the registry, then saves, publishes the farmed set and emits the events
    /// it returns.
    fn mutate<R>(
        &self,
        f: impl FnOnce(&mut Registry) -> Result<(R, Vec<Event>), DaemonError>,
    ) -> Result<R, DaemonError> {
        let (result, events) = {
            let mut reg = self.registry();
            let out = f(&mut reg);
            // Save whatever changed even when `f` failed half-way.
            let saved = reg.save_if_dirty();
            let farmed = reg.farmed();
            self.inner.farmed_tx.send_if_modified(|cur| {
                let same = cur.len() == farmed.len()
                    && cur.iter().zip(&farmed).all(|(a, b)| {
                        a.id == b.id
                            && Arc::ptr_eq(&a.file, &b.file)
                            && a.cache.as_ref().map(Arc::as_ptr)
                                == b.cache.as_ref().map(Arc::as_ptr)
                    });
                if !same {
                    *cur = Arc::new(farmed);
                }
                !same
            });
            let (r, ev) = out?;
            saved?;
            (r, ev)
        };
        for e in events {
            log_event(&e);
            self.inner.events.emit(e);
        }
        Ok(result)
    }

    /// The mining loop's view of the farmed plots.
    pub fn farmed(&self) -> FarmedPlots {
        FarmedPlots {
            rx: self.inner.farmed_tx.subscribe(),
            rescan: self.inner.rescan.clone(),
        }
    }

    /// Every registered plot, sorted by path.
    pub fn list(&self) -> Vec<PlotInfo> {
        self.registry().list()
    }

    /// One plot by id or unique id prefix.
    pub fn get(&self, id: &str) -> Result<PlotInfo, DaemonError> {
        let reg = self.registry();
        let id = reg.resolve(id)?;
        reg.info(&id)
            .ok_or_else(|| DaemonError::PlotNotFound { id: id.to_string() })
    }

    /// Whether a registered plot uses `path`.
    pub fn has_path(&self, path: &Path) -> bool {
        self.registry().find_path(path).is_some()
    }

    /// Reconciles with the plot directory: registers new `*.plot` files, marks vanished ones
    /// missing, reloads changed ones. `skip` lists paths being written by jobs.
    pub fn rescan(&self, skip: &[PathBuf]) -> Result<(), DaemonError> {
        self.mutate(|reg| Ok(((), reg.reconcile_directory(skip))))
    }

    /// Registers a plot that a job has just published, under the job's id.
    pub fn register_created(
        &self,
        id: Uuid,
        path: &Path,
        cache_path: Option<&Path>,
    ) -> Result<PlotInfo, DaemonError> {
        self.mutate(|reg| reg.register(id, path, cache_path))
    }

    /// Unregisters a plot, optionally deleting its file and cache. Returns the plot as it
    /// was and the files deleted.
    pub fn delete(
        &self,
        id: &str,
        delete_files: bool,
    ) -> Result<(PlotInfo, Vec<PathBuf>), DaemonError> {
        self.mutate(|reg| {
            let id = reg.resolve(id)?;
            reg.remove(&id, delete_files)
        })
    }

    /// Checks a plot on the calling (blocking) thread. A failed check marks the plot
    /// corrupted. `cancel` stops it early with [`DaemonError::Cancelled`].
    pub fn check(
        &self,
        id: &str,
        kind: CheckKind,
        progress: &mut dyn FnMut(CheckProgress),
        cancel: &AtomicBool,
    ) -> Result<(PlotInfo, CheckReport), DaemonError> {
        let (id, path, cache_path, state) = {
            let reg = self.registry();
            let id = reg.resolve(id)?;
            let info = reg
                .info(&id)
                .ok_or_else(|| DaemonError::PlotNotFound { id: id.to_string() })?;
            (id, info.path, info.cache_path, info.state)
        };
        // Open our own handle so the check never holds the registry lock.
        let file = match PlotFile::open(&path) {
            Ok(f) => f,
            Err(spacetime::plot::PlotError::NotFound { .. }) => {
                return Err(DaemonError::FailedPrecondition {
                    reason: format!("plot {id}: file {} is missing", path.display()),
                });
            }
            Err(e) => {
                let reason = e.to_string();
                self.mutate(|reg| Ok(((), reg.mark_corrupted(&id, &reason, true))))?;
                return Err(DaemonError::FailedPrecondition {
                    reason: format!("plot {id} cannot be opened: {reason}"),
                });
            }
        };
        let cache = cache_path
            .as_deref()
            .and_then(|p| MerkleCache::read(p).ok());
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
        let report =
            check_plot(&file, cache.as_ref(), &mode, progress, cancel).map_err(|e| match e {
                spacetime::plot::PlotError::Cancelled => DaemonError::Cancelled,
                other => DaemonError::internal(format!("checking plot {id}"), other),
            })?;
        // A wrong-key plot fails every leaf check; it stays reported as what it is.
        if !report.passed() && state != PlotState::WrongKey {
            let reason = registry::describe_failure(&report);
            self.mutate(|reg| Ok(((), reg.mark_corrupted(&id, &reason, true))))?;
        }
        let info = self.get(&id.to_string())?;
        Ok((info, report))
    }

    /// Flushes the metadata file (at shutdown).
    pub fn flush(&self) -> Result<(), DaemonError> {
        self.registry().save()
    }

    /// Counts for the status.
    pub fn summary(&self) -> registry::Summary {
        self.registry().summary()
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

    const PK: [u8; 32] = [4; 32];

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
        let jobs = JobManager::new(
            plots.clone(),
            events,
            &plot_dir,
            PK,
            1,
            1,
            ProvingGate::default(),
        );
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
