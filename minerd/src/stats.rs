//! Shared mining and node-link status: written by the node link and the mining loop, read by
//! `GetStatus`.
//!
//! One small mutex-protected [`StatsSnapshot`]; writers hold it for a few field updates only,
//! readers copy it out. Counters are not persisted (they restart at zero with the daemon).

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

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

/// Mining counters since start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
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

/// Everything the mining side reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// The node link.
    pub link: LinkStatus,
    /// The current epoch, once one was announced.
    pub epoch: Option<EpochInfo>,
    /// Counters.
    pub counters: Counters,
    /// Challenge-to-submission latency of the last submitted proof.
    pub last_proof_latency: Option<Duration>,
}

/// The shared status; cheap to clone.
#[derive(Debug, Clone)]
pub struct MiningStats {
    inner: Arc<Mutex<StatsSnapshot>>,
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
            })),
        }
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
    pub fn set_link_state(&self, state: LinkState, error: Option<String>) {
        self.update(|s| {
            s.link.state = state;
            match state {
                LinkState::Connected => {
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
