//! Plot jobs: plot creation owned by the daemon.
//!
//! A job is queued until one of `maxConcurrentPlotJobs` slots is free, then writes its plot on
//! a blocking thread with `plotThreads` hashing threads (every core by default; the job
//! pauses between chunks while a proof is in progress, so proving still gets the cores). Jobs do not depend on the client that started them: the
//! client only watches. A cancelled or failed job leaves nothing behind (the core writes to a
//! temporary name and publishes with an atomic rename), and a plot is registered only after
//! it was published. At shutdown every job is cancelled and awaited.
//!
//! The job manager also runs the background builds of missing Merkle caches
//! ([`JobManager::start_cache_builds`], see `cache_build`), with the same thread count, the
//! same pause while proving and the same shutdown.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use spacetime::plot::{
    create_plot_yielding, plot_file_len, CacheLevels, CreatePlot, PlotError, PlotProgress,
};
use tokio::sync::{watch, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

use super::dirs::choose_for_new_plot;
use super::ids::resolve_id;
use super::PlotManager;
use crate::error::DaemonError;
use crate::events::{Event, EventBus};
use crate::stats::ProvingGate;
use crate::types::{JobOutcome, JobProgress, PlotInfo, PlotState};

/// Jobs that may wait for a slot; beyond this, new jobs are refused.
pub const MAX_QUEUED_JOBS: usize = 64;
/// Minimum time between two progress events of one job.
const EVENT_INTERVAL: Duration = Duration::from_millis(500);
/// Longest a plot job pauses for one proof (a proof never legitimately takes longer than
/// the proof timeout; this bound only protects plotting from a stuck guard).
const MAX_PROOF_PAUSE: Duration = Duration::from_secs(60);

/// What to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobSpec {
    /// Number of leaves.
    pub leaf_count: u64,
    /// Cache levels: `None` = the core's default, `Some(0)` = no cache, `Some(k)` = top k.
    pub cache_levels: Option<u32>,
    /// Seed; `None` = random.
    pub seed: Option<[u8; 32]>,
    /// File name in the plot directory; `None` = derived from seed and size.
    pub file_name: Option<String>,
    /// Hashing threads; `None` = the configured default.
    pub threads: Option<usize>,
    /// Absolute path of the plot file instead of a name in the plot directory.
    pub output_path: Option<PathBuf>,
}

/// State of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    /// Waiting for a slot.
    Queued,
    /// Writing.
    Running,
    /// Cancellation requested.
    Cancelling,
}

/// A job as the API shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct JobInfo {
    /// Job id = future plot id.
    pub id: Uuid,
    /// Final plot path.
    pub path: PathBuf,
    /// Leaves.
    pub leaf_count: u64,
    /// Requested cache levels (`None` = default).
    pub cache_levels: Option<u32>,
    /// The seed.
    pub seed: [u8; 32],
    /// State.
    pub state: JobState,
    /// When it was accepted.
    pub created_at: SystemTime,
    /// Latest progress.
    pub progress: JobProgress,
}

/// The end of a job.
#[derive(Debug, Clone, PartialEq)]
pub enum JobResult {
    /// The registered plot.
    Done(Box<PlotInfo>),
    /// Why it failed.
    Failed(JobFailure),
    /// Cancelled.
    Cancelled,
}

/// Why a plot job failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobFailure {
    /// The plot could not be written (the disk is full, a directory is not writable, it no
    /// longer fits): a condition of the machine, shown to the caller.
    Write(String),
    /// A fault of the daemon (a panic, a plot written but not registered): logged in full.
    Internal(String),
}

impl JobFailure {
    /// What went wrong, in full.
    pub fn cause(&self) -> &str {
        match self {
            JobFailure::Write(cause) | JobFailure::Internal(cause) => cause,
        }
    }
}

/// What a caller gets for a new job: its description and two watches.
#[derive(Debug)]
pub struct JobHandle {
    /// The job.
    pub info: JobInfo,
    /// Progress updates.
    pub progress: watch::Receiver<JobProgress>,
    /// `Some` once the job ended.
    pub done: watch::Receiver<Option<Arc<JobResult>>>,
}

#[derive(Debug)]
struct Slot {
    info: JobInfo,
    cancel_flag: Arc<AtomicBool>,
    cancel: CancellationToken,
    progress_rx: watch::Receiver<JobProgress>,
    done_rx: watch::Receiver<Option<Arc<JobResult>>>,
}

/// Runs plot jobs; cheap to clone.
#[derive(Debug, Clone)]
pub struct JobManager {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    plots: PlotManager,
    events: EventBus,
    miner_pk: [u8; 32],
    default_threads: usize,
    proving: ProvingGate,
    slots: Arc<Semaphore>,
    jobs: Mutex<BTreeMap<Uuid, Slot>>,
    tasks: TaskTracker,
    closed: AtomicBool,
    /// Stops the background cache builds (at shutdown).
    cache_builds: CancellationToken,
    cache_builds_started: AtomicBool,
}

/// `plotThreads` 0 means every core: plot jobs pause while a proof is in progress (the
/// proving gate), so proving never waits for plotting and no core needs to be kept idle.
pub fn default_plot_threads(configured: u32) -> usize {
    if configured > 0 {
        return configured as usize;
    }
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// Cores of this machine (the limit of `threads`).
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The core's cache choice for a requested number of levels.
fn cache_levels(levels: Option<u32>) -> CacheLevels {
    match levels {
        None => CacheLevels::Default,
        Some(0) => CacheLevels::Disabled,
        Some(k) => CacheLevels::TopLevels(k),
    }
}

/// Checks an explicit output path: absolute, a `.plot` file name, in an existing directory.
fn validate_output_path(path: &Path) -> Result<(), DaemonError> {
    if !path.is_absolute() {
        return Err(DaemonError::invalid(
            "output_path",
            format!("{}: must be an absolute path", path.display()),
        ));
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    validate_file_name(&name).map_err(|_| {
        DaemonError::invalid(
            "output_path",
            format!(
                "{}: the file name must end in .plot, have a stem and not start with a dot",
                path.display()
            ),
        )
    })?;
    match path.parent() {
        Some(dir) if dir.is_dir() => Ok(()),
        _ => Err(DaemonError::invalid(
            "output_path",
            format!("{}: its directory does not exist", path.display()),
        )),
    }
}

fn validate_file_name(name: &str) -> Result<(), DaemonError> {
    let bad = |why: &str| {
        Err(DaemonError::invalid(
            "file_name",
            format!("{name:?}: {why}"),
        ))
    };
    if !name.ends_with(".plot") || name.len() <= ".plot".len() {
        return bad("must end in .plot and have a stem");
    }
    if name.starts_with('.') {
        return bad("must not start with a dot");
    }
    if name.contains('/') || name.contains('\0') || name.len() > 200 {
        return bad("must be a plain file name of at most 200 bytes, without path separators");
    }
    Ok(())
}

impl JobManager {
    /// A job manager writing into the plot directories of `plots` with at most
    /// `max_concurrent` jobs at a time. Jobs pause while `proving` is active.
    pub fn new(
        plots: PlotManager,
        events: EventBus,
        miner_pk: [u8; 32],
        max_concurrent: usize,
        default_threads: usize,
        proving: ProvingGate,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                plots,
                events,
                miner_pk,
                default_threads: default_threads.max(1),
                proving,
                slots: Arc::new(Semaphore::new(max_concurrent.max(1))),
                jobs: Mutex::new(BTreeMap::new()),
                tasks: TaskTracker::new(),
                closed: AtomicBool::new(false),
                cache_builds: CancellationToken::new(),
                cache_builds_started: AtomicBool::new(false),
            }),
        }
    }

    fn jobs(&self) -> std::sync::MutexGuard<'_, BTreeMap<Uuid, Slot>> {
        self.inner.jobs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Validates and queues a job.
    pub async fn create(&self, spec: JobSpec) -> Result<JobHandle, DaemonError> {
        if self.inner.closed.load(Ordering::SeqCst) {
            return Err(DaemonError::ShuttingDown);
        }
        if spec.leaf_count == 0 {
            return Err(DaemonError::invalid(
                "leaf_count",
                "give a leaf count or a size of at least 32 bytes",
            ));
        }
        if plot_file_len(spec.leaf_count).is_none_or(|l| l > i64::MAX as u64) {
            return Err(DaemonError::invalid(
                "leaf_count",
                format!("{} leaves do not fit in a plot file", spec.leaf_count),
            ));
        }
        if let Some(t) = spec.threads {
            let cores = cores();
            if t == 0 || t > cores {
                return Err(DaemonError::invalid(
                    "threads",
                    format!("{t}: must be 1 to {cores}, the cores of this machine"),
                ));
            }
        }
        let seed = spec.seed.unwrap_or_else(rand::random);
        if spec.output_path.is_some() && spec.file_name.is_some() {
            return Err(DaemonError::invalid(
                "output_path",
                "give output_path or file_name, not both",
            ));
        }
        if let Some(n) = &spec.file_name {
            validate_file_name(n)?;
        }
        let path = match &spec.output_path {
            Some(p) => {
                validate_output_path(p)?;
                p.clone()
            }
            None => {
                let name = spec.file_name.clone().unwrap_or_else(|| {
                    format!("plot-{}-{}.plot", hex::encode(&seed[..8]), spec.leaf_count)
                });
                self.choose_dir().await?.join(name)
            }
        };
        {
            // Refused before it is queued (the job checks again when it starts, in case the
            // space went meanwhile).
            let probe = CreatePlot {
                path: path.clone(),
                miner_pk: self.inner.miner_pk,
                seed,
                leaf_count: spec.leaf_count,
                cache: cache_levels(spec.cache_levels),
                threads: None,
            };
            tokio::task::spawn_blocking(move || check_free_space(&probe))
                .await
                .map_err(|e| DaemonError::internal("checking free space", e))?
                .map_err(|reason| DaemonError::NoSpace { reason })?;
        }
        // Off the runtime threads: a stat can block on a slow or hung file system. (The
        // write publishes without replacing, so a file appearing meanwhile is not lost, and
        // a directory that cannot be read fails the job with its own error.)
        let exists = tokio::fs::try_exists(&path).await.unwrap_or(false);
        let id = Uuid::new_v4();
        let (progress_tx, progress_rx) = watch::channel(JobProgress {
            leaves_total: spec.leaf_count,
            ..JobProgress::default()
        });
        let (done_tx, done_rx) = watch::channel(None);
        let cancel = CancellationToken::new();
        let cancel_flag = Arc::new(AtomicBool::new(false));
        let info = JobInfo {
            id,
            path: path.clone(),
            leaf_count: spec.leaf_count,
            cache_levels: spec.cache_levels,
            seed,
            state: JobState::Queued,
            created_at: SystemTime::now(),
            progress: *progress_rx.borrow(),
        };
        {
            let mut jobs = self.jobs();
            if jobs.len() >= MAX_QUEUED_JOBS {
                return Err(DaemonError::QueueFull {
                    max: MAX_QUEUED_JOBS,
                });
            }
            if exists
                || self.inner.plots.has_path(&path)
                || jobs.values().any(|s| s.info.path == path)
            {
                return Err(DaemonError::FileExists { path });
            }
            jobs.insert(
                id,
                Slot {
                    info: info.clone(),
                    cancel_flag: cancel_flag.clone(),
                    cancel: cancel.clone(),
                    progress_rx: progress_rx.clone(),
                    done_rx: done_rx.clone(),
                },
            );
        }
        tracing::info!(job_id = %id, path = %path.display(), leaves = spec.leaf_count, "plot job queued");
        let cache_disabled = spec.cache_levels == Some(0);
        let req = CreatePlot {
            path,
            miner_pk: self.inner.miner_pk,
            seed,
            leaf_count: spec.leaf_count,
            cache: cache_levels(spec.cache_levels),
            threads: Some(spec.threads.unwrap_or(self.inner.default_threads)),
        };
        let this = self.clone();
        self.inner.tasks.spawn(async move {
            let started = Instant::now();
            let result = this
                .run(id, req, cache_disabled, cancel, cancel_flag, progress_tx)
                .await;
            this.finish(id, result, started.elapsed(), done_tx);
        });
        Ok(JobHandle {
            info,
            progress: progress_rx,
            done: done_rx,
        })
    }

    /// The plot directory for a new plot: the one with the most free space, less what the
    /// jobs queued or running there have still to write (so that plots queued one after the
    /// other spread over the disks).
    async fn choose_dir(&self) -> Result<PathBuf, DaemonError> {
        let dirs = self.inner.plots.plot_dirs();
        let pending: Vec<(PathBuf, u64)> = self
            .list()
            .iter()
            .map(|j| {
                let need = bytes_for(j.leaf_count, cache_levels(j.cache_levels));
                (
                    j.path.parent().unwrap_or(Path::new("")).to_owned(),
                    need.saturating_sub(j.progress.bytes_written),
                )
            })
            .collect();
        let (dir, free) = tokio::task::spawn_blocking(move || {
            choose_for_new_plot(&dirs, |d| {
                let promised: u64 = pending
                    .iter()
                    .filter(|(p, _)| p == d)
                    .map(|(_, n)| n)
                    .fold(0, |a, b| a.saturating_add(*b));
                fs4::available_space(d).map(|f| f.saturating_sub(promised))
            })
        })
        .await
        .map_err(|e| DaemonError::internal("choosing a plot directory", e))?
        .map_err(|reason| DaemonError::NoSpace { reason })?;
        tracing::debug!(dir = %dir.display(), free, "plot directory chosen for a new plot");
        Ok(dir)
    }

    async fn run(
        &self,
        id: Uuid,
        req: CreatePlot,
        cache_disabled: bool,
        cancel: CancellationToken,
        cancel_flag: Arc<AtomicBool>,
        progress_tx: watch::Sender<JobProgress>,
    ) -> JobResult {
        let permit = tokio::select! {
            p = self.inner.slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return JobResult::Cancelled, // semaphore closed: shutting down
            },
            () = cancel.cancelled() => return JobResult::Cancelled,
        };
        self.set_state(id, JobState::Running);
        // A job that cannot fit fails now, cleanly, instead of filling the disk first (and
        // starving every other writer of the data directory's disk on the way).
        if let Err(reason) = check_free_space(&req) {
            return JobResult::Failed(JobFailure::Write(reason));
        }
        tracing::info!(job_id = %id, path = %req.path.display(), threads = ?req.threads, "plot job started");
        let events = self.inner.events.clone();
        let proving = self.inner.proving.clone();
        let created = tokio::task::spawn_blocking(move || {
            let mut last_event: Option<Instant> = None;
            // Step aside while a proof (scan, Merkle path, block) is being generated: every
            // hashing thread waits here before its next chunk, so plotting stops within a
            // chunk (about a millisecond) and the proof has every core.
            let yield_now = || {
                if proving.is_active() {
                    let waited = proving.wait_idle(MAX_PROOF_PAUSE, &cancel_flag);
                    tracing::trace!(job_id = %id, ?waited, "plot thread paused for a proof");
                }
            };
            let mut on_progress = |p: &PlotProgress| {
                let jp = JobProgress::from(p);
                progress_tx.send_replace(jp);
                let due = last_event.is_none_or(|t| t.elapsed() >= EVENT_INTERVAL)
                    || p.leaves_done == p.leaves_total;
                if due {
                    last_event = Some(Instant::now());
                    events.emit(Event::PlotJobProgress {
                        job_id: id,
                        progress: jp,
                    });
                }
            };
            let out = create_plot_yielding(&req, &mut on_progress, &cancel_flag, &yield_now);
            drop(permit);
            out
        })
        .await;
        match created {
            Ok(Ok(plot)) => {
                let plots = self.inner.plots.clone();
                let cache = plot.cache_path.clone();
                let path = plot.path.clone();
                match tokio::task::spawn_blocking(move || {
                    plots.register_created(id, &path, cache.as_deref(), cache_disabled)
                })
                .await
                {
                    Ok(Ok(info)) => JobResult::Done(Box::new(info)),
                    Ok(Err(e)) => JobResult::Failed(JobFailure::Internal(format!(
                        "plot written but not registered: {e}"
                    ))),
                    Err(e) => JobResult::Failed(JobFailure::Internal(format!(
                        "registration panicked: {e}"
                    ))),
                }
            }
            Ok(Err(PlotError::Cancelled)) => JobResult::Cancelled,
            Ok(Err(e)) => JobResult::Failed(JobFailure::Write(spacetime::error_chain(&e))),
            Err(e) => JobResult::Failed(JobFailure::Internal(format!("plot writer panicked: {e}"))),
        }
    }

    fn finish(
        &self,
        id: Uuid,
        result: JobResult,
        elapsed: Duration,
        done_tx: watch::Sender<Option<Arc<JobResult>>>,
    ) {
        let slot = self.jobs().remove(&id);
        let path = slot.map(|s| s.info.path).unwrap_or_default();
        let (outcome, error) = match &result {
            JobResult::Done(_) => (JobOutcome::Succeeded, None),
            JobResult::Failed(e) => (JobOutcome::Failed, Some(e.cause().to_owned())),
            JobResult::Cancelled => (JobOutcome::Cancelled, None),
        };
        match &result {
            JobResult::Done(info) => tracing::info!(
                job_id = %id, path = %path.display(), ?elapsed, state = info.state.as_str(),
                "plot job finished"
            ),
            JobResult::Failed(e) => {
                tracing::error!(job_id = %id, path = %path.display(), error = %e.cause(), "plot job failed")
            }
            JobResult::Cancelled => {
                tracing::info!(job_id = %id, path = %path.display(), "plot job cancelled")
            }
        }
        self.inner.events.emit(Event::PlotJobFinished {
            job_id: id,
            path,
            outcome,
            error,
            elapsed,
        });
        done_tx.send_replace(Some(Arc::new(result)));
    }

    fn set_state(&self, id: Uuid, state: JobState) {
        if let Some(s) = self.jobs().get_mut(&id) {
            if s.info.state != JobState::Cancelling {
                s.info.state = state;
            }
        }
    }

    /// Queued and running jobs, oldest first, with current progress.
    pub fn list(&self) -> Vec<JobInfo> {
        let mut v: Vec<JobInfo> = self
            .jobs()
            .values()
            .map(|s| JobInfo {
                progress: *s.progress_rx.borrow(),
                ..s.info.clone()
            })
            .collect();
        v.sort_by_key(|j| j.created_at);
        v
    }

    /// Jobs as "creating" plots for the plot list.
    pub fn creating_plots(&self) -> Vec<PlotInfo> {
        self.list()
            .into_iter()
            .map(|j| PlotInfo {
                id: j.id,
                path: j.path,
                cache_path: None,
                state: PlotState::Creating,
                size_bytes: j.progress.bytes_written,
                header: None,
                merkle_root: None,
                created_at_utc: crate::timefmt::iso_utc(j.created_at),
                problem: None,
                duplicate_of: None,
                cache_in_use: false,
                progress: Some(j.progress),
                cache_levels: 0,
                cache_disabled: j.cache_levels == Some(0),
                last_check: None,
            })
            .collect()
    }

    /// Final paths of the plots being written (the directory scan leaves them alone).
    pub fn reserved_paths(&self) -> Vec<PathBuf> {
        self.jobs().values().map(|s| s.info.path.clone()).collect()
    }

    /// Number of queued and running jobs.
    pub fn count(&self) -> usize {
        self.jobs().len()
    }

    /// Cancels a job and waits until it stopped; returns the job as it was.
    pub async fn cancel(&self, id: &str) -> Result<JobInfo, DaemonError> {
        let (info, mut done) = {
            let mut jobs = self.jobs();
            let id = resolve_id(id, jobs.keys().copied()).map_err(|e| e.for_kind("job"))?;
            let slot = jobs
                .get_mut(&id)
                .ok_or_else(|| DaemonError::JobNotFound { id: id.to_string() })?;
            slot.info.state = JobState::Cancelling;
            slot.cancel_flag.store(true, Ordering::SeqCst);
            slot.cancel.cancel();
            let progress = *slot.progress_rx.borrow();
            let info = JobInfo {
                progress,
                ..slot.info.clone()
            };
            (info, slot.done_rx.clone())
        };
        tracing::info!(job_id = %info.id, "plot job cancellation requested");
        // wait_for fails only if the job task is gone, which also means it stopped.
        let _ = done.wait_for(Option::is_some).await;
        Ok(info)
    }

    /// Starts building, in the background, the Merkle cache of every valid plot that has
    /// none usable (`buildMissingCaches`): one plot at a time, with the plot jobs' thread
    /// count, pausing while a proof is in progress; [`JobManager::shutdown`] stops it. Call
    /// once, from the runtime; later calls do nothing.
    pub fn start_cache_builds(&self) {
        if self.inner.closed.load(Ordering::SeqCst)
            || self.inner.cache_builds_started.swap(true, Ordering::SeqCst)
        {
            return;
        }
        self.inner.tasks.spawn(super::cache_build::run(
            self.inner.plots.clone(),
            self.inner.proving.clone(),
            self.inner.default_threads,
            self.inner.cache_builds.clone(),
        ));
    }

    /// Refuses new jobs, cancels every job and the cache builds and waits for all of them
    /// to stop.
    pub async fn shutdown(&self) {
        self.inner.closed.store(true, Ordering::SeqCst);
        self.inner.cache_builds.cancel();
        for slot in self.jobs().values_mut() {
            slot.info.state = JobState::Cancelling;
            slot.cancel_flag.store(true, Ordering::SeqCst);
            slot.cancel.cancel();
        }
        self.inner.tasks.close();
        self.inner.tasks.wait().await;
    }
}

/// Free space kept on top of what a plot needs: the metadata file and logs must still fit.
const FREE_SPACE_MARGIN: u64 = 64 << 20;

/// Bytes a plot job writes: the plot file and, when one is made, its cache (each cache
/// level `l` of the tree holds `⌈N / 2^l⌉` nodes of 32 bytes).
fn bytes_needed(req: &CreatePlot) -> u64 {
    bytes_for(req.leaf_count, req.cache)
}

/// [`bytes_needed`] of a plot of `leaf_count` leaves with cache choice `cache`.
fn bytes_for(leaf_count: u64, cache: CacheLevels) -> u64 {
    let plot = plot_file_len(leaf_count).unwrap_or(u64::MAX);
    let height = spacetime::merkle::tree_height(leaf_count);
    let cache = cache.start_level(height).map_or(0, |start| {
        (start..height)
            .map(|l| leaf_count.div_ceil(1u64 << l.min(63)).saturating_mul(32))
            .fold(0u64, u64::saturating_add)
    });
    plot.saturating_add(cache)
}

/// Refuses a job whose files do not fit in the free space of its directory.
fn check_free_space(req: &CreatePlot) -> Result<(), String> {
    let dir = req.path.parent().unwrap_or_else(|| Path::new("."));
    let available = fs4::available_space(dir)
        .map_err(|e| format!("cannot read the free space of {}: {e}", dir.display()))?;
    let needed = bytes_needed(req).saturating_add(FREE_SPACE_MARGIN);
    if needed > available {
        return Err(format!(
            "not enough free space in {}: the plot and its cache need {needed} bytes \
             (with a {FREE_SPACE_MARGIN}-byte margin), {available} are available; nothing was written",
            dir.display()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn plots_that_do_not_fit_or_ask_for_too_many_threads_are_refused() {
        let (dir, _plots, jobs, _events) = setup(1).await;
        let spec = |leaves, threads: Option<usize>| JobSpec {
            leaf_count: leaves,
            cache_levels: Some(0),
            seed: None,
            file_name: None,
            threads,
            output_path: None,
        };
        // 2^56 leaves = 2 EiB: no disk has that.
        let e = jobs.create(spec(1 << 56, None)).await.unwrap_err();
        let msg = e.to_string();
        // Both numbers: what it needs and what is available.
        assert!(msg.contains("not enough free space"), "{msg}");
        assert!(
            msg.contains("bytes") && msg.contains("are available"),
            "{msg}"
        );
        let e = jobs.create(spec(64, Some(cores() + 1))).await.unwrap_err();
        assert!(e.to_string().contains("the cores of this machine"), "{e}");
        // An output path must be absolute, a .plot name, in an existing directory.
        for bad in ["rel.plot", "/nonexistent-dir/x.plot"] {
            let mut s = spec(64, None);
            s.output_path = Some(bad.into());
            assert!(jobs.create(s).await.is_err(), "{bad}");
        }
        let mut s = spec(64, None);
        s.output_path = Some(dir.path().join("x.txt"));
        assert!(jobs.create(s).await.is_err());
    }

    async fn setup(max: usize) -> (tempfile::TempDir, PlotManager, JobManager, EventBus) {
        setup_with(max, ProvingGate::default()).await
    }

    async fn setup_with(
        max: usize,
        proving: ProvingGate,
    ) -> (tempfile::TempDir, PlotManager, JobManager, EventBus) {
        let dir = tempfile::tempdir().unwrap();
        let plots_dir = dir.path().join("plots");
        std::fs::create_dir_all(&plots_dir).unwrap();
        let events = EventBus::new();
        let plots = PlotManager::load(
            &dir.path().join("plots_metadata.json"),
            &plots_dir,
            [3; 32],
            events.clone(),
        )
        .unwrap();
        let jobs = JobManager::new(plots.clone(), events.clone(), [3; 32], max, 1, proving);
        (dir, plots, jobs, events)
    }

    #[tokio::test]
    async fn jobs_pause_while_a_proof_is_in_progress() {
        let gate = ProvingGate::default();
        let (_dir, _plots, jobs, _events) = setup_with(1, gate.clone()).await;
        let guard = gate.enter();
        let mut h = jobs.create(spec(1 << 21)).await.unwrap();
        // Paused: progress stops moving and the job does not finish.
        let stalled = async {
            loop {
                let before = h.progress.borrow().leaves_done;
                tokio::time::sleep(Duration::from_millis(400)).await;
                if h.progress.borrow().leaves_done == before {
                    return before;
                }
            }
        };
        let at = tokio::time::timeout(Duration::from_secs(20), stalled)
            .await
            .unwrap();
        assert!(
            at < 1 << 21,
            "the job ran to the end while a proof was in progress"
        );
        assert!(h.done.borrow().is_none());
        drop(guard);
        let done = tokio::time::timeout(Duration::from_secs(60), h.done.wait_for(Option::is_some))
            .await
            .unwrap()
            .unwrap()
            .clone()
            .unwrap();
        assert!(matches!(*done, JobResult::Done(_)), "{done:?}");
    }

    /// Plots queued one after the other spread over the plot directories: each choice counts
    /// what the jobs already queued or running there still have to write.
    #[tokio::test]
    async fn new_plots_spread_over_the_directories_with_the_most_space_left() {
        let gate = ProvingGate::default();
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        for d in [&a, &b] {
            std::fs::create_dir_all(d).unwrap();
        }
        let events = EventBus::new();
        let plots = PlotManager::load(
            &dir.path().join("plots_metadata.json"),
            vec![a.clone(), b.clone()],
            [3; 32],
            events.clone(),
        )
        .unwrap();
        let jobs = JobManager::new(plots, events, [3; 32], 1, 1, gate.clone());
        // A proof in progress holds the first job (one slot: the others queue), so none
        // finishes while the next is placed.
        let guard = gate.enter();
        let mut placed = Vec::new();
        for _ in 0..3 {
            let h = jobs.create(spec(1 << 21)).await.unwrap();
            placed.push(h.info.path.parent().unwrap().to_owned());
        }
        // One file system: equal free space, so only the promised bytes tell them apart.
        assert_eq!(placed, [a.clone(), b.clone(), a.clone()]);
        // An explicit output path is taken as given.
        let mut s = spec(64);
        s.output_path = Some(b.join("mine.plot"));
        assert_eq!(jobs.create(s).await.unwrap().info.path, b.join("mine.plot"));
        drop(guard);
        jobs.shutdown().await;
    }

    fn spec(leaves: u64) -> JobSpec {
        JobSpec {
            leaf_count: leaves,
            cache_levels: Some(0),
            seed: None,
            file_name: None,
            threads: None,
            output_path: None,
        }
    }

    #[tokio::test]
    async fn a_job_writes_registers_and_reports() {
        let (_dir, plots, jobs, events) = setup(1).await;
        let mut rx = events.subscribe();
        let mut h = jobs.create(spec(4096)).await.unwrap();
        let result = h
            .done
            .wait_for(Option::is_some)
            .await
            .unwrap()
            .clone()
            .unwrap();
        let JobResult::Done(info) = &*result else {
            panic!("{result:?}")
        };
        assert_eq!(info.id, h.info.id);
        assert_eq!(info.state, PlotState::Valid);
        assert_eq!(plots.list().len(), 1);
        assert_eq!(jobs.count(), 0);
        assert_eq!(h.progress.borrow().leaves_done, 4096);
        let mut saw_added = false;
        let mut saw_finished = false;
        while let Ok(e) = rx.try_recv() {
            match &e.event {
                Event::PlotAdded(p) => saw_added |= p.id == info.id,
                Event::PlotJobFinished { outcome, .. } => {
                    saw_finished |= *outcome == JobOutcome::Succeeded
                }
                _ => {}
            }
        }
        assert!(saw_added && saw_finished);
        // The same file name again is refused.
        let again = jobs
            .create(JobSpec {
                file_name: Some(
                    info.path
                        .file_name()
                        .unwrap()
                        .to_string_lossy()
                        .into_owned(),
                ),
                ..spec(8)
            })
            .await;
        assert!(matches!(again, Err(DaemonError::FileExists { .. })));
    }

    /// Audit row 12: a job filled the disk before failing. One that cannot fit now fails
    /// at its start with a clear error, and leaves nothing in the plot directory.
    #[tokio::test]
    async fn a_job_larger_than_the_free_space_fails_at_once_and_writes_nothing() {
        let (dir, plots, jobs, _events) = setup(1).await;
        // 2^45 leaves: 1 PiB, more than any disk this test runs on. Refused before it is
        // queued (the job's own check at its start covers space that goes meanwhile).
        let reason = jobs.create(spec(1 << 45)).await.unwrap_err().to_string();
        assert!(reason.contains("not enough free space"), "{reason}");
        assert!(plots.list().is_empty());
        let left: Vec<_> = std::fs::read_dir(dir.path().join("plots"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }

    #[test]
    fn the_space_a_job_needs_counts_the_plot_and_its_cache() {
        let req = |cache| CreatePlot {
            path: PathBuf::from("/x/a.plot"),
            miner_pk: [0; 32],
            seed: [0; 32],
            leaf_count: 1 << 20,
            cache,
            threads: None,
        };
        let plot = plot_file_len(1 << 20).unwrap();
        assert_eq!(bytes_needed(&req(CacheLevels::Disabled)), plot);
        // Levels 18 and 19 of a 2^20-leaf tree: 4 + 2 nodes.
        assert_eq!(bytes_needed(&req(CacheLevels::TopLevels(2))), plot + 6 * 32);
    }

    #[tokio::test]
    async fn queued_job_cancels_and_leaves_nothing() {
        let (dir, plots, jobs, _events) = setup(1).await;
        // A big job holds the only slot; the second waits and is cancelled while queued.
        let big = jobs.create(spec(1 << 22)).await.unwrap();
        let queued = jobs.create(spec(64)).await.unwrap();
        assert_eq!(jobs.list().len(), 2);
        let info = jobs.cancel(&queued.info.id.to_string()).await.unwrap();
        assert_eq!(info.id, queued.info.id);
        jobs.cancel(&big.info.id.to_string()).await.unwrap();
        assert_eq!(jobs.count(), 0);
        assert!(plots.list().is_empty());
        let left: Vec<_> = std::fs::read_dir(dir.path().join("plots"))
            .unwrap()
            .collect();
        assert!(left.is_empty(), "{left:?}");
        assert!(matches!(
            jobs.cancel(&queued.info.id.to_string()).await,
            Err(DaemonError::JobNotFound { .. })
        ));
    }

    #[tokio::test]
    async fn bad_requests_are_refused_and_shutdown_closes() {
        let (_dir, _plots, jobs, _events) = setup(1).await;
        assert!(matches!(
            jobs.create(spec(0)).await,
            Err(DaemonError::InvalidField { .. })
        ));
        for name in ["x.dat", "../x.plot", ".x.plot", ".plot"] {
            let r = jobs
                .create(JobSpec {
                    file_name: Some(name.into()),
                    ..spec(8)
                })
                .await;
            assert!(matches!(r, Err(DaemonError::InvalidField { .. })), "{name}");
        }
        jobs.shutdown().await;
        assert!(matches!(
            jobs.create(spec(8)).await,
            Err(DaemonError::ShuttingDown)
        ));
    }
}
