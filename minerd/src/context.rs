//! The daemon's shared state, in one place: [`Daemon`] (what the control API's handlers
//! call), [`MiningContext`] (the seam handed to the mining loop and the node link), the
//! status they derive, and the daemon's version.
//!
//! State is owned by a few cheap-to-clone managers rather than one big lock: the plot
//! manager and job manager (`plots`), [`MiningStats`] (what the mining side reports),
//! [`EventBus`] (the event feed) and a `watch<bool>` (mining enabled). `daemon::run` builds
//! them; `rpc` and `mining` only read this module, never `daemon`, so data flows one way:
//! `daemon` → `rpc`, `mining` → `context` → `plots`, `stats`, `events`.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use spacetime::keys::MinerKey;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::events::{Event, EventBus};
use crate::plots::registry::Summary;
use crate::plots::{FarmedPlots, JobManager, PlotManager};
use crate::stats::{LinkState, MiningStats, StatsSnapshot};

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
    /// The plot jobs (the embedded devnet makes its plot through them, as the API does).
    pub jobs: JobManager,
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
    /// Totals per plot directory.
    pub plot_dirs: Vec<crate::plots::DirSummary>,
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
            jobs: self.jobs.clone(),
        }
    }

    /// Totals per plot directory, with the leaves each scored in the last scan.
    fn plot_dirs(&self, mining: &crate::stats::StatsSnapshot) -> Vec<crate::plots::DirSummary> {
        self.plots.dir_summaries_scanned(&mining.last_scan_by_plot)
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
            plot_dirs: self.plot_dirs(&mining),
            mining,
        }
    }
}
