//! The daemon: its shared state ([`Daemon`]), the seam to the mining loop
//! ([`MiningContext`]), and [`run`], which starts everything and drains it at shutdown.
//!
//! State is owned by a few cheap-to-clone managers rather than one big lock: the plot
//! manager and job manager (plots), [`MiningStats`] (what the mining side reports),
//! [`EventBus`] (the event feed) and a `watch<bool>` (mining enabled). The gRPC handlers call
//! the methods below; the mining loop gets a [`MiningContext`].
//!
//! Start-up order: data directory, lock, key, plots, control API, directory watcher, mining,
//! readiness (`READY=1` to systemd). Shutdown order: stop mining, cancel plot jobs, stop the
//! API, flush the metadata, remove the socket, release the lock, each bounded in time.

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context as _;
use spacetime::keys::MinerKey;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::events::{Event, EventBus};
use crate::plots::registry::Summary;
use crate::plots::{self, FarmedPlots, JobManager, PlotManager};
use crate::shutdown::{drain, GRACE};
use crate::stats::{LinkState, MiningStats, StatsSnapshot};
use spacetime_io::DataDirLock;

/// Version of this daemon.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Everything the mining loop and the node link need from the daemon.
///
/// The mining loop (in `crate::mining`) reads plots and the enabled flag, and reports through
/// `stats` (link state, epoch, counters, latency) and `events` (challenge, proof, block,
/// node events). It must stop promptly when its shutdown token is cancelled.
#[derive(Debug, Clone)]
pub struct MiningContext {
    /// The effective configuration (node address and port, network id, timeouts, scan
    /// strategy, devnet section).
    pub config: Arc<Config>,
    /// The miner key (plot key = `key.public_key()`, miner id = `key.miner_id()`).
    pub key: Arc<MinerKey>,
    /// Shared status read by `GetStatus`.
    pub stats: MiningStats,
    /// The event bus read by `WatchEvents`.
    pub events: EventBus,
    /// `true` while the operator wants mining (StartMining/StopMining, `autoStartMining`).
    /// When it turns `false`, abandon the current epoch and send nothing until it is `true`.
    pub mining_enabled: watch::Receiver<bool>,
    /// The valid, de-duplicated plots to scan (lock-free; `changed()` wakes on updates).
    pub plots: FarmedPlots,
}

/// What mining is doing, as derived for the status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MiningState {
    /// Disabled by the operator.
    Stopped,
    /// Enabled, no node link.
    WaitingForNode,
    /// Enabled, connected, no valid plot.
    WaitingForPlots,
    /// Enabled, connected, has plots.
    Active,
}

/// A status snapshot in domain terms (the RPC layer converts it).
#[derive(Debug, Clone)]
pub struct DaemonStatus {
    /// Daemon version.
    pub version: &'static str,
    /// Network id.
    pub network_id: String,
    /// Miner public key.
    pub public_key: [u8; 32],
    /// Miner id (`0xED || pk`).
    pub miner_id: [u8; 33],
    /// Start time.
    pub started_at: SystemTime,
    /// Time since start.
    pub uptime: Duration,
    /// Operator's switch.
    pub mining_enabled: bool,
    /// Derived state.
    pub mining_state: MiningState,
    /// Node link, epoch, counters, latency.
    pub mining: StatsSnapshot,
    /// Plot totals.
    pub plots: Summary,
    /// Queued and running plot jobs.
    pub plot_jobs: usize,
    /// Shutdown has begun.
    pub shutting_down: bool,
    /// Counters over the data directory's lifetime.
    pub lifetime: crate::stats::Counters,
}

/// The daemon's shared state.
#[derive(Debug)]
pub struct Daemon {
    /// Effective configuration.
    pub config: Arc<Config>,
    /// Miner key.
    pub key: Arc<MinerKey>,
    /// Registered plots.
    pub plots: PlotManager,
    /// Plot jobs.
    pub jobs: JobManager,
    /// Mining status.
    pub stats: MiningStats,
    /// Event feed.
    pub events: EventBus,
    /// Cancelled when shutdown begins.
    pub shutdown: CancellationToken,
    mining_tx: watch::Sender<bool>,
    started_at: SystemTime,
    started: Instant,
}

impl Daemon {
    /// Assembles the daemon from its parts (no I/O).
    pub fn new(
        config: Arc<Config>,
        key: Arc<MinerKey>,
        plots: PlotManager,
        jobs: JobManager,
        stats: MiningStats,
        events: EventBus,
        shutdown: CancellationToken,
    ) -> Self {
        let (mining_tx, _) = watch::channel(config.auto_start_mining);
        Self {
            config,
            key,
            plots,
            jobs,
            stats,
            events,
            shutdown,
            mining_tx,
            started_at: SystemTime::now(),
            started: Instant::now(),
        }
    }

    /// Enables or disables mining; returns whether the value changed.
    pub fn set_mining(&self, enabled: bool) -> bool {
        let changed = self.mining_tx.send_if_modified(|cur| {
            let changed = *cur != enabled;
            *cur = enabled;
            changed
        });
        if changed {
            tracing::info!(
                enabled,
                "mining {}",
                if enabled { "enabled" } else { "disabled" }
            );
            self.events.emit(Event::MiningToggled { enabled });
        }
        changed
    }

    /// Whether mining is enabled.
    pub fn mining_enabled(&self) -> bool {
        *self.mining_tx.borrow()
    }

    /// The seam handed to the mining loop.
    pub fn mining_context(&self) -> MiningContext {
        MiningContext {
            config: self.config.clone(),
            key: self.key.clone(),
            stats: self.stats.clone(),
            events: self.events.clone(),
            mining_enabled: self.mining_tx.subscribe(),
            plots: self.plots.farmed(),
        }
    }

    /// The current status.
    pub fn status(&self) -> DaemonStatus {
        let mining = self.stats.snapshot();
        let plots = self.plots.summary();
        let enabled = self.mining_enabled();
        let mining_state = if !enabled {
            MiningState::Stopped
        } else if mining.link.state != LinkState::Connected {
            MiningState::WaitingForNode
        } else if plots.valid == 0 {
            MiningState::WaitingForPlots
        } else {
            MiningState::Active
        };
        DaemonStatus {
            version: VERSION,
            network_id: self.config.network_id.clone(),
            public_key: self.key.public_key(),
            miner_id: self.key.miner_id(),
            started_at: self.started_at,
            uptime: self.started.elapsed(),
            mining_enabled: enabled,
            mining_state,
            plots,
            plot_jobs: self.jobs.count(),
            shutting_down: self.shutdown.is_cancelled(),
            lifetime: mining.lifetime(),
            mining,
        }
    }
}

/// Creates a directory (and parents) with mode 0700 when it does not exist yet.
fn ensure_private_dir(dir: &Path) -> anyhow::Result<()> {
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("creating directory {}", dir.display()))?;
    }
    Ok(())
}

/// Tells systemd (when started by it) about a state change; a no-op otherwise.
fn notify_systemd(state: &[sd_notify::NotifyState<'_>]) {
    if std::env::var_os("NOTIFY_SOCKET").is_some() {
        if let Err(e) = sd_notify::notify(state) {
            tracing::warn!(error = %e, "cannot notify systemd");
        }
    }
}

/// Runs the daemon until `shutdown` is cancelled (by a signal, the Shutdown RPC or a test),
/// then drains. Binds what the configuration says (TCP port 0 is fine) and logs every bound
/// address on a line containing "listening".
pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let config = Arc::new(config);
    ensure_private_dir(&config.data_directory)?;
    let lock = DataDirLock::acquire(&config.lock_path())?;
    std::fs::create_dir_all(&config.plot_directory).with_context(|| {
        format!(
            "creating plot directory {}",
            config.plot_directory.display()
        )
    })?;

    let key_path = config.private_key_path.clone();
    let key = tokio::task::spawn_blocking(move || MinerKey::load_or_create(&key_path))
        .await
        .context("loading the miner key")??;
    let key = Arc::new(key);
    let pk = key.public_key();
    tracing::info!(
        public_key = %hex::encode(pk), key_file = %config.private_key_path.display(),
        network = %config.network_id, "minerd {VERSION} starting"
    );

    let events = EventBus::new();
    let plots = {
        let (meta, dir, ev) = (
            config.plot_metadata_path.clone(),
            config.plot_directory.clone(),
            events.clone(),
        );
        tokio::task::spawn_blocking(move || PlotManager::load(&meta, &dir, pk, ev))
            .await
            .context("loading plots")??
    };
    let summary = plots.summary();
    tracing::info!(
        total = summary.total, valid = summary.valid, corrupted = summary.corrupted,
        missing = summary.missing, duplicate = summary.duplicate, bytes = summary.farmed_bytes,
        dir = %config.plot_directory.display(), "plots loaded"
    );
    // In devnet mode the embedded miner creates its own small plot when there is none.
    if summary.valid == 0 && !config.devnet.enabled {
        tracing::warn!("no valid plot: create one with `minerctl create-plot --size 100MiB`");
    }
    let stats = MiningStats::new(config.node_endpoint());
    let counters_file = crate::stats::CountersFile::in_dir(&config.data_directory);
    {
        let f = counters_file.clone();
        let base = tokio::task::spawn_blocking(move || f.read()).await?;
        stats.update(|s| s.lifetime_base = base);
    }
    let jobs = JobManager::new(
        plots.clone(),
        events.clone(),
        &config.plot_directory,
        pk,
        config.max_concurrent_plot_jobs as usize,
        plots::jobs::default_plot_threads(config.plot_threads),
        stats.proving_gate(),
    );
    if config.build_missing_caches {
        jobs.start_cache_builds();
    }
    let daemon = Arc::new(Daemon::new(
        config.clone(),
        key,
        plots.clone(),
        jobs.clone(),
        stats,
        events,
        shutdown.clone(),
    ));

    let servers = crate::rpc::serve(daemon.clone(), shutdown.clone()).await?;
    let metrics = match config.metrics_address {
        Some(addr) => Some(crate::metrics::serve(addr, daemon.clone()).await?),
        None => None,
    };

    let watcher = tokio::spawn(plots::watch_directory(
        plots.clone(),
        jobs.clone(),
        Duration::from_secs(config.plot_scan_interval_seconds),
        shutdown.clone(),
    ));
    let counters_task = tokio::spawn(persist_counters(
        daemon.stats.clone(),
        counters_file.clone(),
        shutdown.clone(),
    ));
    let mining_token = shutdown.child_token();
    let mining = crate::mining::spawn_mining(daemon.mining_context(), mining_token.clone());
    if mining.is_none() {
        tracing::info!("no mining loop in this build: the daemon manages plots only");
    }

    notify_systemd(&[sd_notify::NotifyState::Ready]);
    tracing::info!("minerd ready");
    shutdown.cancelled().await;

    // Drain, each step bounded.
    let begun = Instant::now();
    notify_systemd(&[sd_notify::NotifyState::Stopping]);
    tracing::info!("shutting down");
    daemon.set_mining(false);
    mining_token.cancel();
    if let Some(handle) = mining {
        drain("mining loop", GRACE, async {
            if let Err(e) = handle.await {
                tracing::error!(error = %e, "mining loop panicked");
            }
        })
        .await;
    }
    drain("plot jobs", GRACE, jobs.shutdown()).await;
    let _ = counters_task.await;
    {
        let life = daemon.stats.snapshot().lifetime();
        let f = counters_file.clone();
        match tokio::task::spawn_blocking(move || f.write(&life)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::error!(error = %e, "cannot write the lifetime counters at shutdown")
            }
            Err(e) => tracing::error!(error = %e, "writing the lifetime counters panicked"),
        }
    }
    let _ = watcher.await;
    servers.stop().await;
    if let Some(m) = metrics {
        m.stop().await;
    }
    if let Err(e) = tokio::task::spawn_blocking(move || plots.flush()).await? {
        tracing::error!(error = %e, "cannot write the plot metadata at shutdown");
    }
    drop(lock);
    tracing::info!(elapsed = ?begun.elapsed(), "minerd stopped");
    Ok(())
}

/// How often the lifetime counters are written while they change.
const COUNTERS_INTERVAL: Duration = Duration::from_secs(2);

/// Writes the lifetime counters whenever they changed, every [`COUNTERS_INTERVAL`], until
/// shutdown (the final write happens after mining stopped).
async fn persist_counters(
    stats: MiningStats,
    file: crate::stats::CountersFile,
    shutdown: CancellationToken,
) {
    let mut written = stats.snapshot().counters;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(COUNTERS_INTERVAL) => {}
        }
        let snap = stats.snapshot();
        if snap.counters == written {
            continue;
        }
        let life = snap.lifetime();
        let f = file.clone();
        match tokio::task::spawn_blocking(move || f.write(&life)).await {
            Ok(Ok(())) => written = snap.counters,
            Ok(Err(e)) => tracing::warn!(error = %e, "cannot write the lifetime counters"),
            Err(e) => tracing::warn!(error = %e, "writing the lifetime counters panicked"),
        }
    }
}

/// Sets mode 0600 on a file the daemon created for its owner only.
pub(crate) fn set_owner_only(path: &Path) -> std::io::Result<()> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
}

#[cfg(test)]
mod tests {
    use super::*;
    use spacetime_proto::client::{connect, Target};
    use spacetime_proto::pb;

    #[tokio::test]
    async fn run_serves_the_api_and_drains_cleanly() {
        let home = tempfile::tempdir().unwrap();
        let mut config = Config::defaults_for_home(home.path()).unwrap();
        config.auto_start_mining = false;
        config.listen_tcp = Some("127.0.0.1:0".parse().unwrap());
        let socket = config.control_socket.clone();
        let lock = config.lock_path();
        let token = CancellationToken::new();
        let daemon = tokio::spawn(run(config, token.clone()));

        let mut client = None;
        for _ in 0..500 {
            if let Ok(c) = connect(&Target::Unix(socket.clone())).await {
                client = Some(c);
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let mut client = client.expect("the daemon listens");
        let status = client
            .get_status(pb::GetStatusRequest {})
            .await
            .unwrap()
            .into_inner()
            .status
            .unwrap();
        assert_eq!(status.version, VERSION);
        assert!(!status.mining_enabled);
        assert_eq!(status.miner_public_key.len(), 32);
        assert!(lock.exists());
        let mode = std::fs::metadata(&socket).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);

        client.shutdown(pb::ShutdownRequest {}).await.unwrap();
        tokio::time::timeout(Duration::from_secs(20), daemon)
            .await
            .expect("drains in time")
            .unwrap()
            .unwrap();
        assert!(token.is_cancelled());
        assert!(!socket.exists());
        assert!(!lock.exists());
        assert!(home.path().join(".spacetime/plots_metadata.json").exists());
    }
}
