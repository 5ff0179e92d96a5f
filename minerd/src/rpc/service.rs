//! The `MinerService` handlers: convert the request, call the daemon, convert the reply, map
//! the error with [`super::map_error`]. No logic lives here.

use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use spacetime_proto::pb;
use spacetime_proto::pb::miner_service_server::MinerService;
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use super::convert;
use super::map_error;
use crate::context::Daemon;
use crate::error::DaemonError;
use crate::plots::jobs::{JobResult, JobSpec};
use crate::plots::{CheckKind, DEFAULT_CHECK_SAMPLES};

/// Messages buffered per streaming call before the sender waits (or drops progress).
const STREAM_BUFFER: usize = 32;

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// The service implementation: a handle on the daemon.
#[derive(Debug, Clone)]
pub struct MinerRpc {
    daemon: Arc<Daemon>,
}

impl MinerRpc {
    /// Serves `daemon`.
    pub fn new(daemon: Arc<Daemon>) -> Self {
        Self { daemon }
    }

    fn refuse_if_shutting_down(&self) -> Result<(), Status> {
        if self.daemon.shutdown.is_cancelled() {
            Err(map_error(DaemonError::ShuttingDown))
        } else {
            Ok(())
        }
    }

    async fn blocking<T: Send + 'static>(
        f: impl FnOnce() -> Result<T, DaemonError> + Send + 'static,
    ) -> Result<T, Status> {
        tokio::task::spawn_blocking(f)
            .await
            .map_err(|e| map_error(DaemonError::internal("blocking task", e)))?
            .map_err(map_error)
    }
}

fn job_spec(req: pb::CreatePlotRequest) -> Result<JobSpec, DaemonError> {
    let leaf_count = match (req.leaf_count, req.size_bytes) {
        (0, 0) => {
            return Err(DaemonError::invalid(
                "leaf_count",
                "set leaf_count or size_bytes (exactly one)",
            ))
        }
        (n, 0) => n,
        (0, size) if size >= 32 => size / 32,
        (0, size) => {
            return Err(DaemonError::invalid(
                "size_bytes",
                format!("{size} is smaller than one 32-byte leaf"),
            ))
        }
        (_, _) => {
            return Err(DaemonError::invalid(
                "leaf_count",
                "set leaf_count or size_bytes, not both",
            ))
        }
    };
    let seed = match req.seed.len() {
        0 => None,
        32 => {
            let mut s = [0u8; 32];
            s.copy_from_slice(&req.seed);
            Some(s)
        }
        n => {
            return Err(DaemonError::invalid(
                "seed",
                format!("must be empty or 32 bytes, got {n}"),
            ))
        }
    };
    Ok(JobSpec {
        leaf_count,
        cache_levels: req.cache_levels,
        seed,
        file_name: (!req.file_name.is_empty()).then_some(req.file_name),
        threads: (req.threads > 0).then_some(req.threads as usize),
        output_path: (!req.output_path.is_empty()).then(|| req.output_path.into()),
    })
}

#[tonic::async_trait]
impl MinerService for MinerRpc {
    async fn get_status(
        &self,
        _req: Request<pb::GetStatusRequest>,
    ) -> Result<Response<pb::GetStatusResponse>, Status> {
        let status = self.daemon.status();
        Ok(Response::new(pb::GetStatusResponse {
            status: Some((&status).into()),
        }))
    }

    async fn start_mining(
        &self,
        _req: Request<pb::StartMiningRequest>,
    ) -> Result<Response<pb::StartMiningResponse>, Status> {
        self.refuse_if_shutting_down()?;
        let changed = self.daemon.set_mining(true);
        Ok(Response::new(pb::StartMiningResponse { changed }))
    }

    async fn stop_mining(
        &self,
        _req: Request<pb::StopMiningRequest>,
    ) -> Result<Response<pb::StopMiningResponse>, Status> {
        let changed = self.daemon.set_mining(false);
        Ok(Response::new(pb::StopMiningResponse { changed }))
    }

    type CreatePlotStream = BoxStream<pb::CreatePlotResponse>;

    async fn create_plot(
        &self,
        req: Request<pb::CreatePlotRequest>,
    ) -> Result<Response<Self::CreatePlotStream>, Status> {
        self.refuse_if_shutting_down()?;
        let spec = job_spec(req.into_inner()).map_err(map_error)?;
        let handle = self.daemon.jobs.create(spec).await.map_err(map_error)?;
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        let started = pb::CreatePlotResponse {
            kind: Some(pb::create_plot_response::Kind::Started(
                (&handle.info).into(),
            )),
        };
        // The job belongs to the daemon; this task only relays, and stops when the client
        // goes away.
        tokio::spawn(async move {
            use pb::create_plot_response::Kind;
            let mut progress = handle.progress;
            let mut done = handle.done;
            let mut progress_open = true;
            if tx.send(Ok(started)).await.is_err() {
                return;
            }
            loop {
                tokio::select! {
                    biased;
                    result = async { done.wait_for(Option::is_some).await.ok().and_then(|d| (*d).clone()) } => {
                        let last = match result.as_deref() {
                            Some(JobResult::Done(info)) => {
                                let p = *progress.borrow_and_update();
                                let _ = tx.send(Ok(pb::CreatePlotResponse {
                                    kind: Some(Kind::Progress((&p).into())),
                                })).await;
                                Ok(pb::CreatePlotResponse { kind: Some(Kind::Finished(info.as_ref().into())) })
                            }
                            Some(JobResult::Failed(e)) => Err(Status::internal(format!("plot job failed: {e}"))),
                            Some(JobResult::Cancelled) | None => Err(Status::cancelled("plot job cancelled")),
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
                        let msg = pb::CreatePlotResponse { kind: Some(Kind::Progress((&p).into())) };
                        if tx.send(Ok(msg)).await.is_err() {
                            return;
                        }
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn cancel_plot_job(
        &self,
        req: Request<pb::CancelPlotJobRequest>,
    ) -> Result<Response<pb::CancelPlotJobResponse>, Status> {
        let job = self
            .daemon
            .jobs
            .cancel(&req.into_inner().job_id)
            .await
            .map_err(map_error)?;
        Ok(Response::new(pb::CancelPlotJobResponse {
            job: Some((&job).into()),
        }))
    }

    async fn list_plot_jobs(
        &self,
        _req: Request<pb::ListPlotJobsRequest>,
    ) -> Result<Response<pb::ListPlotJobsResponse>, Status> {
        let jobs = self.daemon.jobs.list().iter().map(Into::into).collect();
        Ok(Response::new(pb::ListPlotJobsResponse { jobs }))
    }

    async fn list_plots(
        &self,
        _req: Request<pb::ListPlotsRequest>,
    ) -> Result<Response<pb::ListPlotsResponse>, Status> {
        let mut all = self.daemon.plots.list();
        all.extend(self.daemon.jobs.creating_plots());
        all.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(Response::new(pb::ListPlotsResponse {
            plots: all.iter().map(Into::into).collect(),
        }))
    }

    async fn get_plot(
        &self,
        req: Request<pb::GetPlotRequest>,
    ) -> Result<Response<pb::GetPlotResponse>, Status> {
        let id = req.into_inner().plot_id;
        let plot = match self.daemon.plots.get(&id) {
            Ok(p) => p,
            // A plot being created is shown too.
            Err(DaemonError::PlotNotFound { .. }) => self
                .daemon
                .jobs
                .creating_plots()
                .into_iter()
                .find(|p| p.id.to_string() == id.trim().to_ascii_lowercase())
                .ok_or_else(|| map_error(DaemonError::PlotNotFound { id }))?,
            Err(e) => return Err(map_error(e)),
        };
        Ok(Response::new(pb::GetPlotResponse {
            plot: Some((&plot).into()),
        }))
    }

    async fn delete_plot(
        &self,
        req: Request<pb::DeletePlotRequest>,
    ) -> Result<Response<pb::DeletePlotResponse>, Status> {
        let req = req.into_inner();
        let plots = self.daemon.plots.clone();
        let (plot, deleted) =
            Self::blocking(move || plots.delete(&req.plot_id, req.delete_files)).await?;
        Ok(Response::new(pb::DeletePlotResponse {
            plot: Some((&plot).into()),
            deleted_files: deleted
                .iter()
                .map(|p| p.to_string_lossy().into_owned())
                .collect(),
        }))
    }

    type CheckPlotStream = BoxStream<pb::CheckPlotResponse>;

    async fn check_plot(
        &self,
        req: Request<pb::CheckPlotRequest>,
    ) -> Result<Response<Self::CheckPlotStream>, Status> {
        self.refuse_if_shutting_down()?;
        let req = req.into_inner();
        let kind = match req.mode {
            Some(pb::check_plot_request::Mode::Full(_)) => CheckKind::Full,
            Some(pb::check_plot_request::Mode::Sampled(s)) => CheckKind::Sampled {
                samples: if s.samples == 0 {
                    DEFAULT_CHECK_SAMPLES
                } else {
                    u64::from(s.samples)
                },
                seed: s.seed,
            },
            None => CheckKind::Sampled {
                samples: DEFAULT_CHECK_SAMPLES,
                seed: None,
            },
        };
        // Resolve now so an unknown id is a plain NOT_FOUND rather than a stream error.
        let id = match (req.plot_id.is_empty(), req.file_path.is_empty()) {
            (false, true) => self
                .daemon
                .plots
                .get(&req.plot_id)
                .map_err(map_error)?
                .id
                .to_string(),
            (true, false) if Path::new(&req.file_path).is_absolute() => {
                format!("{}{}", crate::plots::FILE_PREFIX, req.file_path)
            }
            (true, false) => {
                return Err(map_error(DaemonError::invalid(
                    "file_path",
                    "must be an absolute path",
                )))
            }
            _ => {
                return Err(map_error(DaemonError::invalid(
                    "plot_id",
                    "set plot_id or file_path (exactly one)",
                )))
            }
        };
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        let cancel = Arc::new(AtomicBool::new(false));
        let plots = self.daemon.plots.clone();
        let shutdown = self.daemon.shutdown.clone();
        let finished = tokio_util::sync::CancellationToken::new();
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
            use pb::check_plot_response::Kind;
            let mut on_progress = |p: spacetime::plot::CheckProgress| {
                if tx.is_closed() {
                    // The client went away: nobody wants the result.
                    cancel.store(true, Ordering::SeqCst);
                } else {
                    // Progress is best effort: drop it rather than wait on a slow client.
                    let _ = tx.try_send(Ok(pb::CheckPlotResponse {
                        kind: Some(Kind::Progress(convert::plots::check_progress(p))),
                    }));
                }
            };
            let last = match plots.check(&id, kind, &mut on_progress, &cancel) {
                Ok(outcome) => Ok(pb::CheckPlotResponse {
                    kind: Some(Kind::Report(convert::plots::check_report(&outcome))),
                }),
                Err(e) => Err(map_error(e)),
            };
            let _ = tx.blocking_send(last);
            finished.cancel();
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    type WatchEventsStream = BoxStream<pb::WatchEventsResponse>;

    async fn watch_events(
        &self,
        _req: Request<pb::WatchEventsRequest>,
    ) -> Result<Response<Self::WatchEventsStream>, Status> {
        self.refuse_if_shutting_down()?;
        let mut events = self.daemon.events.subscribe();
        let shutdown = self.daemon.shutdown.clone();
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        tokio::spawn(async move {
            loop {
                let msg = tokio::select! {
                    () = shutdown.cancelled() => {
                        let _ = tx.send(Err(map_error(DaemonError::ShuttingDown))).await;
                        return;
                    }
                    () = tx.closed() => return,
                    r = events.recv() => match r {
                        Ok(env) => convert::events::event(&env),
                        Err(broadcast::error::RecvError::Lagged(n)) => convert::events::lagged(n),
                        Err(broadcast::error::RecvError::Closed) => return,
                    },
                };
                if tx.send(Ok(msg)).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn shutdown(
        &self,
        _req: Request<pb::ShutdownRequest>,
    ) -> Result<Response<pb::ShutdownResponse>, Status> {
        tracing::info!("shutdown requested through the API");
        self.daemon.shutdown.cancel();
        Ok(Response::new(pb::ShutdownResponse {}))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_plot_requests_are_validated() {
        let ok = |r: pb::CreatePlotRequest| job_spec(r).unwrap();
        let err = |r: pb::CreatePlotRequest| job_spec(r).unwrap_err().to_string();
        assert_eq!(
            ok(pb::CreatePlotRequest {
                size_bytes: 1 << 20,
                ..Default::default()
            })
            .leaf_count,
            1 << 15
        );
        let s = ok(pb::CreatePlotRequest {
            leaf_count: 10,
            seed: vec![1; 32],
            cache_levels: Some(0),
            ..Default::default()
        });
        assert_eq!(
            (s.leaf_count, s.seed, s.cache_levels),
            (10, Some([1; 32]), Some(0))
        );
        assert!(err(pb::CreatePlotRequest::default()).contains("leaf_count"));
        assert!(err(pb::CreatePlotRequest {
            leaf_count: 1,
            size_bytes: 64,
            ..Default::default()
        })
        .contains("not both"));
        assert!(err(pb::CreatePlotRequest {
            size_bytes: 31,
            ..Default::default()
        })
        .contains("size_bytes"));
        assert!(err(pb::CreatePlotRequest {
            leaf_count: 1,
            seed: vec![1; 5],
            ..Default::default()
        })
        .contains("seed"));
    }
}
