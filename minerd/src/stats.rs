//! Shared mining and node-link status: written by the node link and the mining loop, read by
//! `GetStatus`.
//!
//! One small mutex-protected [`StatsSnapshot`]; writers hold it for a few field updates only,
//! readers copy it out. The counters of this run start at zero; the lifetime counters add
//! them to the totals of earlier runs, persisted in `<dataDirectory>/counters.json`
//! ([`CountersFile`]: written every few seconds while they change, and at shutdown).

use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// State of the connection to the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkState {
    /// No node link runs in this daemon (no mining loop).
    Disabled,
    /// Not connected; the next attempt is scheduled.
    Disconnected,
    /// Connecting or handshaking.
    Connecting,
    /// Connected, handshake complete.
    Connected,
    /// `maxConnectionRetries` consecutive failures; still retrying at the capped interval.
    Unreachable,
}

/// The node link as GetStatus reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkStatus {
    /// Current state.
    pub state: LinkState,
    /// `host:port` of the node.
    pub address: String,
    /// Last connection or protocol error since the last successful connect.
    pub last_error: Option<String>,
    /// When the current connection came up.
    pub connected_since: Option<SystemTime>,
    /// Consecutive failed attempts.
    pub failed_attempts: u32,
    /// The node's user agent from its handshake.
    pub peer_user_agent: Option<String>,
}

/// The epoch the node announced last.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EpochInfo {
    /// Epoch number.
    pub epoch: u64,
    /// Height of the tip it builds on.
    pub tip_height: u64,
    /// Hash of that tip.
    pub tip_hash: [u8; 32],
    /// The challenge.
    pub challenge: [u8; 32],
    /// Block difficulty.
    pub difficulty: u64,
    /// Deadline for proofs and blocks, Unix milliseconds.
    pub deadline_unix_ms: i64,
    /// When the challenge arrived.
    pub received_at: SystemTime,
}

/// Mining counters since start (camelCase fields in `counters.json`; a missing field is 0).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Counters {
    /// NewEpoch messages received.
    pub challenges_received: u64,
    /// Proofs built and self-verified.
    pub proofs_generated: u64,
    /// Proofs sent.
    pub proofs_submitted: u64,
    /// Blocks built and sent.
    pub blocks_won: u64,
    /// Own blocks accepted by the node.
    pub blocks_accepted: u64,
    /// Epochs whose proof or block was too late to send.
    pub late_epochs: u64,
    /// Epochs without a proof.
    pub missed_epochs: u64,
}

impl Counters {
    /// Field-wise sum (saturating).
    pub fn plus(&self, o: &Counters) -> Counters {
        Counters {
            challenges_received: self
                .challenges_received
                .saturating_add(o.challenges_received),
            proofs_generated: self.proofs_generated.saturating_add(o.proofs_generated),
            proofs_submitted: self.proofs_submitted.saturating_add(o.proofs_submitted),
            blocks_won: self.blocks_won.saturating_add(o.blocks_won),
            blocks_accepted: self.blocks_accepted.saturating_add(o.blocks_accepted),
            late_epochs: self.late_epochs.saturating_add(o.late_epochs),
            missed_epochs: self.missed_epochs.saturating_add(o.missed_epochs),
        }
    }
}

/// Progress of the scan of one epoch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EpochScan {
    /// Epoch number.
    pub epoch: u64,
    /// Leaves scored so far.
    pub leaves_scanned: u64,
    /// Leaves the scan scores if it runs to the end.
    pub leaves_total: u64,
    /// Rate.
    pub leaves_per_sec: f64,
    /// Time left, once known.
    pub eta: Option<Duration>,
    /// Leaves of the farmed plots.
    pub leaves_farmed: u64,
    /// The scan ended (last report of the epoch).
    pub finished: bool,
}

/// The lifetime counters on disk: `<dataDirectory>/counters.json`, camelCase fields of
/// [`Counters`], written atomically.
#[derive(Debug, Clone)]
pub struct CountersFile {
    path: std::path::PathBuf,
}

impl CountersFile {
    /// The file in `data_dir`.
    pub fn in_dir(data_dir: &std::path::Path) -> Self {
        Self {
            path: data_dir.join("counters.json"),
        }
    }

    /// The totals of earlier runs; a missing file is zero, an unreadable or corrupt one is
    /// logged and counts as zero (it is replaced at the next write).
    pub fn read(&self) -> Counters {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Counters::default(),
            Err(e) => {
                tracing::warn!(path = %self.path.display(), error = %e, "cannot read the lifetime counters; starting them at zero");
                return Counters::default();
            }
        };
        match serde_json::from_str::<Counters>(&text) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(path = %self.path.display(), error = %e, "corrupt lifetime counters; starting them at zero");
                Counters::default()
            }
        }
    }

    /// The file.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// Writes `c` atomically.
    pub fn write(&self, c: &Counters) -> std::io::Result<()> {
        let bytes = serde_json::to_vec_pretty(c).map_err(std::io::Error::other)?;
        spacetime::atomic_file::write_atomic(&self.path, &bytes)
    }
}

/// Everything the mining side reports.
#[derive(Debug, Clone, PartialEq)]
pub struct StatsSnapshot {
    /// The node link.
    pub link: LinkStatus,
    /// The current epoch, once one was announced.
    pub epoch: Option<EpochInfo>,
    /// Counters.
    pub counters: Counters,
    /// Challenge-to-submission latency of the last submitted proof.
    pub last_proof_latency: Option<Duration>,
    /// Totals of earlier runs (the lifetime counters are these plus `counters`).
    pub lifetime_base: Counters,
    /// Expected time to win at the current difficulty with the leaves scored last epoch.
    pub expected_time_to_win: Option<Duration>,
    /// The scan of the current epoch, while it runs.
    pub scan: Option<EpochScan>,
    /// The last finished scan (effective farm size).
    pub last_scan: Option<EpochScan>,
    /// The recent scanned epochs and the farm-size warning.
    pub farm: crate::farm_size::FarmSizeMonitor,
    /// Leaves each plot (by id) scored in the last finished scan; plots not scanned are
    /// absent. Shared, replaced as a whole per scan: a status snapshot copies a pointer, and
    /// the per-directory totals are computed once per scan ([`crate::plots::PlotManager::dir_summaries_scanned`]).
    pub last_scan_by_plot: std::sync::Arc<std::collections::BTreeMap<uuid::Uuid, u64>>,
}

impl StatsSnapshot {
    /// Counters over the data directory's lifetime, this run included.
    pub fn lifetime(&self) -> Counters {
        self.lifetime_base.plus(&self.counters)
    }
}

/// Counts proofs being generated, so that background work (plot jobs) can step aside while
/// the miner races a deadline. Cheap to clone; all clones share the count.
#[derive(Debug, Clone, Default)]
pub struct ProvingGate {
    active: Arc<AtomicUsize>,
}

/// Marks a proof in progress until dropped.
#[derive(Debug)]
pub struct ProvingGuard {
    active: Arc<AtomicUsize>,
}

impl Drop for ProvingGuard {
    fn drop(&mut self) {
        self.active.fetch_sub(1, Ordering::SeqCst);
    }
}

impl ProvingGate {
    /// Marks a proof in progress (scan, Merkle proof, block) until the guard is dropped.
    pub fn enter(&self) -> ProvingGuard {
        self.active.fetch_add(1, Ordering::SeqCst);
        ProvingGuard {
            active: self.active.clone(),
        }
    }

    /// Whether a proof is in progress.
    pub fn is_active(&self) -> bool {
        self.active.load(Ordering::SeqCst) > 0
    }

    /// Blocks the calling (non-async) thread while a proof is in progress, for at most `max`
    /// or until `cancel` is set. Returns how long it waited.
    pub fn wait_idle(&self, max: Duration, cancel: &AtomicBool) -> Duration {
        let start = Instant::now();
        while self.is_active() && start.elapsed() < max && !cancel.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(2));
        }
        start.elapsed()
    }
}

/// The shared status; cheap to clone.
#[derive(Debug, Clone)]
pub struct MiningStats {
    inner: Arc<Mutex<StatsSnapshot>>,
    proving: ProvingGate,
    observations: Observations,
}

impl MiningStats {
    /// Fresh status: link [`LinkState::Disabled`] to `address`, no epoch, zero counters.
    pub fn new(address: String) -> Self {
        Self {
            inner: Arc::new(Mutex::new(StatsSnapshot {
                link: LinkStatus {
                    state: LinkState::Disabled,
                    address,
                    last_error: None,
                    connected_since: None,
                    failed_attempts: 0,
                    peer_user_agent: None,
                },
                epoch: None,
                counters: Counters::default(),
                last_proof_latency: None,
                lifetime_base: Counters::default(),
                expected_time_to_win: None,
                scan: None,
                last_scan: None,
                farm: Default::default(),
                last_scan_by_plot: Default::default(),
            })),
            proving: ProvingGate::default(),
            observations: Observations::default(),
        }
    }

    /// Marks a proof in progress until the guard is dropped: plot jobs pause meanwhile, so
    /// that plotting never delays a proof. The mining loop holds it around scan and prove.
    pub fn begin_proving(&self) -> ProvingGuard {
        self.proving.enter()
    }

    /// The gate plot jobs wait on.
    pub fn proving_gate(&self) -> ProvingGate {
        self.proving.clone()
    }

    /// A copy of the current status.
    pub fn snapshot(&self) -> StatsSnapshot {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Updates the status under the lock (keep `f` short: no I/O, no awaits).
    pub fn update<R>(&self, f: impl FnOnce(&mut StatsSnapshot) -> R) -> R {
        f(&mut self.inner.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Records a new epoch: sets it current and counts the challenge.
    pub fn record_epoch(&self, epoch: EpochInfo) {
        self.update(|s| {
            s.epoch = Some(epoch);
            s.counters.challenges_received += 1;
        });
    }

    /// Sets the link state; `Connected` clears the error and failure count and stamps the
    /// time, other states keep the last error.
    /// What the metrics record as it happens (histograms, scanned leaves, node connects).
    pub fn observations(&self) -> &Observations {
        &self.observations
    }

    pub fn set_link_state(&self, state: LinkState, error: Option<String>) {
        self.update(|s| {
            s.link.state = state;
            match state {
                LinkState::Connected => {
                    self.observations.node_connects.inc();
                    s.link.last_error = None;
                    s.link.failed_attempts = 0;
                    s.link.connected_since = Some(SystemTime::now());
                }
                LinkState::Disabled
                | LinkState::Disconnected
                | LinkState::Connecting
                | LinkState::Unreachable => {
                    s.link.connected_since = None;
                    s.link.peer_user_agent = None;
                    if error.is_some() {
                        s.link.last_error = error;
                    }
                }
            }
        });
    }
}

/// Values recorded as they happen. Cheap to clone (shared).
#[derive(Debug, Clone)]
pub struct Observations {
    /// Challenge received → proof (and block) sent, seconds.
    pub challenge_to_submission: Histogram,
    /// Time to scan one plot for one challenge, seconds.
    pub plot_scan: Histogram,
    /// Leaves scored, all epochs.
    pub leaves_scanned: Counter,
    /// Leaves scored in the last finished scan.
    pub epoch_leaves_scanned: Arc<AtomicU64>,
    /// Leaves of the plots given to the last scan.
    pub epoch_leaves_farmed: Arc<AtomicU64>,
    /// Handshakes completed with the node.
    pub node_connects: Counter,
}

impl Default for Observations {
    fn default() -> Self {
        Self {
            // 10 ms .. ~41 s: an epoch's work is bounded by the proof timeout (default 60 s).
            challenge_to_submission: Histogram::new([
                0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 60.0,
            ]),
            plot_scan: Histogram::new([
                0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ]),
            leaves_scanned: Counter::default(),
            epoch_leaves_scanned: Arc::default(),
            epoch_leaves_farmed: Arc::default(),
            node_connects: Counter::default(),
        }
    }
}

impl Observations {
    /// Records one finished scan: per-plot times (plots that were scanned) and leaf totals.
    pub fn record_scan(
        &self,
        per_plot: impl IntoIterator<Item = Duration>,
        leaves: u64,
        farmed: u64,
    ) {
        for t in per_plot {
            self.plot_scan.observe(t.as_secs_f64());
        }
        self.leaves_scanned.inc_by(leaves);
        self.epoch_leaves_scanned
            .store(leaves, AtomicOrdering::Relaxed);
        self.epoch_leaves_farmed
            .store(farmed, AtomicOrdering::Relaxed);
    }

    /// Records a submitted proof's challenge-to-submission latency.
    pub fn record_submission(&self, latency: Duration) {
        self.challenge_to_submission.observe(latency.as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_transitions_keep_and_clear_errors() {
        let stats = MiningStats::new("127.0.0.1:8333".into());
        assert_eq!(stats.snapshot().link.state, LinkState::Disabled);
        stats.update(|s| s.link.failed_attempts = 3);
        stats.set_link_state(LinkState::Disconnected, Some("refused".into()));
        stats.set_link_state(LinkState::Connecting, None);
        let s = stats.snapshot();
        assert_eq!(s.link.last_error.as_deref(), Some("refused"));
        assert_eq!(s.link.failed_attempts, 3);
        stats.set_link_state(LinkState::Connected, None);
        let s = stats.snapshot();
        assert_eq!(s.link.last_error, None);
        assert_eq!(s.link.failed_attempts, 0);
        assert!(s.link.connected_since.is_some());
    }

    #[test]
    fn proving_gate_counts_guards_and_waits_boundedly() {
        let stats = MiningStats::new(String::new());
        let gate = stats.proving_gate();
        assert!(!gate.is_active());
        let a = stats.begin_proving();
        let b = stats.begin_proving();
        drop(a);
        assert!(gate.is_active());
        let cancel = AtomicBool::new(false);
        let waited = gate.wait_idle(Duration::from_millis(30), &cancel);
        assert!(waited >= Duration::from_millis(30));
        cancel.store(true, Ordering::Relaxed);
        assert!(gate.wait_idle(Duration::from_secs(10), &cancel) < Duration::from_secs(1));
        drop(b);
        assert!(!gate.is_active());
        cancel.store(false, Ordering::Relaxed);
        assert!(gate.wait_idle(Duration::from_secs(10), &cancel) < Duration::from_millis(50));
    }

    #[test]
    fn lifetime_counters_add_earlier_runs_and_survive_a_rewrite() {
        let dir = tempfile::tempdir().unwrap();
        let file = CountersFile::in_dir(dir.path());
        assert_eq!(file.read(), Counters::default());
        let earlier = Counters {
            challenges_received: 5,
            blocks_won: 2,
            ..Counters::default()
        };
        file.write(&earlier).unwrap();
        let stats = MiningStats::new(String::new());
        stats.update(|s| {
            s.lifetime_base = file.read();
            s.counters.challenges_received = 1;
        });
        let life = stats.snapshot().lifetime();
        assert_eq!((life.challenges_received, life.blocks_won), (6, 2));
        std::fs::write(dir.path().join("counters.json"), b"garbage").unwrap();
        assert_eq!(file.read(), Counters::default());
    }

    #[test]
    fn a_crash_at_any_step_of_a_write_leaves_the_old_or_the_new_counters() {
        use spacetime::atomic_file::{crash_points::crashed, remove_stale_temporaries, Step};
        let dir = tempfile::tempdir().unwrap();
        let file = CountersFile::in_dir(dir.path());
        for (i, step) in Step::ALL.into_iter().enumerate() {
            let old = Counters {
                blocks_won: i as u64,
                ..Counters::default()
            };
            let new = Counters {
                blocks_won: 100 + i as u64,
                ..Counters::default()
            };
            file.write(&old).unwrap();
            crashed(step, || file.write(&new)).unwrap_err();
            let expected = if step == Step::Renamed { new } else { old };
            assert_eq!(file.read(), expected, "{step:?}");
            remove_stale_temporaries(file.path());
            assert_eq!(
                std::fs::read_dir(dir.path()).unwrap().count(),
                1,
                "{step:?}"
            );
        }
    }

    #[test]
    fn record_epoch_counts_challenges() {
        let stats = MiningStats::new(String::new());
        for e in 1..=2 {
            stats.record_epoch(EpochInfo {
                epoch: e,
                tip_height: e - 1,
                tip_hash: [0; 32],
                challenge: [e as u8; 32],
                difficulty: 1,
                deadline_unix_ms: 0,
                received_at: SystemTime::now(),
            });
        }
        let s = stats.snapshot();
        assert_eq!(s.counters.challenges_received, 2);
        assert_eq!(s.epoch.unwrap().epoch, 2);
    }
}
