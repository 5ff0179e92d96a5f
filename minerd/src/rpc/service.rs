//! The `MinerService` handlers: convert the request, call the daemon, convert the reply, map
//! the error with [`super::map_error`]. No logic lives here.

use std::pin::Pin;
use std::sync::Arc;

use spacetime_proto::pb;
use spacetime_proto::pb::miner_service_server::MinerService;
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status};

use super::convert;
use super::convert::requests::CheckTarget;
use super::map_error;
use crate::context::Daemon;
use crate::error::DaemonError;

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
        let spec = convert::requests::job_spec(req.into_inner()).map_err(map_error)?;
        let (info, updates) = self
            .daemon
            .jobs
            .create_followed(spec)
            .await
            .map_err(map_error)?;
        let started = convert::plots::job_started(&info);
        let updates = updates.map(|u| u.map(convert::plots::job_update).map_err(map_error));
        Ok(Response::new(Box::pin(
            tokio_stream::once(Ok(started)).chain(updates),
        )))
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
        let kind = convert::requests::check_kind(req.mode);
        // Resolve now so an unknown id is a plain NOT_FOUND rather than a stream error.
        let id =
            match convert::requests::check_target(req.plot_id, req.file_path).map_err(map_error)? {
                CheckTarget::Plot(id) => self
                    .daemon
                    .plots
                    .get(&id)
                    .map_err(map_error)?
                    .id
                    .to_string(),
                CheckTarget::File(path) => format!("{}{path}", crate::plots::FILE_PREFIX),
            };
        let updates = self
            .daemon
            .plots
            .check_followed(id, kind, self.daemon.shutdown.clone());
        let updates = updates.map(|u| u.map(convert::plots::check_update).map_err(map_error));
        Ok(Response::new(Box::pin(updates)))
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
