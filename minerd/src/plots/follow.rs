//! Plot work followed as a stream, so that callers (the gRPC handlers) only convert what
//! comes out. A plot job: its progress while it runs, then its end; the job belongs to the
//! [`JobManager`](super::JobManager), and a follower that goes away (its stream dropped)
//! stops watching without touching it. A plot check: run here on the blocking pool, with
//! its cancellation wired to daemon shutdown and to the follower going away.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use spacetime::plot::CheckProgress;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;

use super::jobs::{JobFailure, JobHandle, JobInfo, JobManager, JobResult, JobSpec};
use super::{CheckKind, CheckOutcome, PlotManager};
use crate::error::DaemonError;
use crate::types::{JobProgress, PlotInfo};

/// Updates buffered per follower before the relay waits for it.
const FOLLOW_BUFFER: usize = 32;

/// What a followed job reports.
#[derive(Debug, Clone)]
pub enum JobUpdate {
    /// Progress (sent when it changes, and once more just before `Finished`).
    Progress(JobProgress),
    /// The job ended with this plot registered (the last update).
    Finished(Box<PlotInfo>),
}

/// The stream of a job's updates: progress, then `Finished`, or one error last
/// ([`DaemonError::PlotNotWritten`], [`DaemonError::JobFailed`],
/// [`DaemonError::JobCancelled`]).
pub type JobUpdates = ReceiverStream<Result<JobUpdate, DaemonError>>;

impl JobManager {
    /// Creates a job as [`JobManager::create`] does and returns its description with the
    /// stream of its updates (relayed by a task that ends with the job or when the stream is
    /// dropped).
    pub async fn create_followed(
        &self,
        spec: JobSpec,
    ) -> Result<(JobInfo, JobUpdates), DaemonError> {
        let JobHandle {
            info,
            progress,
            done,
        } = self.create(spec).await?;
        let (tx, rx) = mpsc::channel(FOLLOW_BUFFER);
        tokio::spawn(relay(progress, done, tx));
        Ok((info, ReceiverStream::new(rx)))
    }
}

async fn relay(
    mut progress: watch::Receiver<JobProgress>,
    mut done: watch::Receiver<Option<Arc<JobResult>>>,
    tx: mpsc::Sender<Result<JobUpdate, DaemonError>>,
) {
    let mut progress_open = true;
    loop {
        tokio::select! {
            biased;
            result = async { done.wait_for(Option::is_some).await.ok().and_then(|d| (*d).clone()) } => {
                let last = match result.as_deref() {
                    Some(JobResult::Done(info)) => {
                        let p = *progress.borrow_and_update();
                        let _ = tx.send(Ok(JobUpdate::Progress(p))).await;
                        Ok(JobUpdate::Finished(info.clone()))
                    }
                    Some(JobResult::Failed(JobFailure::Write(cause))) => {
                        Err(DaemonError::PlotNotWritten { cause: cause.clone() })
                    }
                    Some(JobResult::Failed(JobFailure::Internal(cause))) => {
                        Err(DaemonError::JobFailed { cause: cause.clone() })
                    }
                    Some(JobResult::Cancelled) | None => Err(DaemonError::JobCancelled),
                };
                let _ = tx.send(last).await;
                return;
            }
            r = progress.changed(), if progress_open => {
                if r.is_err() {
                    progress_open = false; // the writer ended; `done` fires next
                    continue;
                }
                let p = *progress.borrow_and_update();
                if tx.send(Ok(JobUpdate::Progress(p))).await.is_err() {
                    return; // the follower went away
                }
            }
        }
    }
}

/// What a followed check reports.
#[derive(Debug)]
pub enum CheckUpdate {
    /// Progress (best effort: dropped rather than waiting on a slow follower).
    Progress(CheckProgress),
    /// The result (the last update).
    Report(Box<CheckOutcome>),
}

/// The stream of a check's updates: progress, then its report or one error last.
pub type CheckUpdates = ReceiverStream<Result<CheckUpdate, DaemonError>>;

impl PlotManager {
    /// Checks `id` (a plot id, or [`FILE_PREFIX`](super::FILE_PREFIX) and an absolute path)
    /// as [`PlotManager::check`] does, on the blocking pool, and streams its updates. The
    /// check stops early when `shutdown` fires or when the stream is dropped (nobody wants
    /// the result).
    pub fn check_followed(
        &self,
        id: String,
        kind: CheckKind,
        shutdown: CancellationToken,
    ) -> CheckUpdates {
        let plots = self.clone();
        let (tx, rx) = mpsc::channel(FOLLOW_BUFFER);
        let cancel = Arc::new(AtomicBool::new(false));
        let finished = CancellationToken::new();
        {
            // Stop the check when the daemon shuts down. (This task must not hold a sender,
            // or the stream would never end.)
            let cancel = cancel.clone();
            let finished = finished.clone();
            tokio::spawn(async move {
                tokio::select! {
                    () = shutdown.cancelled() => cancel.store(true, Ordering::SeqCst),
                    () = finished.cancelled() => {}
                }
            });
        }
        tokio::task::spawn_blocking(move || {
            let mut on_progress = |p: CheckProgress| {
                if tx.is_closed() {
                    // The follower went away: nobody wants the result.
                    cancel.store(true, Ordering::SeqCst);
                } else {
                    let _ = tx.try_send(Ok(CheckUpdate::Progress(p)));
                }
            };
            let last = plots
                .check(&id, kind, &mut on_progress, &cancel)
                .map(|outcome| CheckUpdate::Report(Box::new(outcome)));
            let _ = tx.blocking_send(last);
            finished.cancel();
        });
        ReceiverStream::new(rx)
    }
}
