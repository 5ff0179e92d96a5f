//! The daemon's event bus: every notable thing that happens is an [`Event`], broadcast to all
//! `WatchEvents` subscribers (and logged by whoever emits it).
//!
//! Emitting never blocks and never fails: with no subscriber the event is dropped, and a
//! subscriber that falls more than [`CAPACITY`] events behind is told how many it missed.
//! Every event gets a sequence number (increasing by one from 1) and a wall-clock time.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::sync::broadcast;
use uuid::Uuid;

use crate::types::{JobOutcome, JobProgress, PlotInfo, PlotState};

/// Events buffered per subscriber before it counts as lagging.
pub const CAPACITY: usize = 1024;

/// What was late in an epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LateWhat {
    /// The proof submission.
    Proof,
    /// The won block.
    Block,
}

impl LateWhat {
    /// `"proof"` or `"block"`.
    pub fn as_str(self) -> &'static str {
        match self {
            LateWhat::Proof => "proof",
            LateWhat::Block => "block",
        }
    }
}

/// Something that happened in the daemon.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The node announced a new epoch (NewEpoch).
    ChallengeReceived {
        /// Epoch number.
        epoch: u64,
        /// The challenge.
        challenge: [u8; 32],
        /// Block difficulty.
        difficulty: u64,
        /// Height of the tip the epoch builds on.
        tip_height: u64,
        /// Deadline, Unix milliseconds.
        deadline_unix_ms: i64,
    },
    /// A proof was built and self-verified.
    ProofFound {
        /// Epoch number.
        epoch: u64,
        /// Its score (lower is better).
        score: [u8; 32],
        /// The plot it comes from.
        plot_id: Uuid,
        /// Leaf index in that plot.
        leaf_index: u64,
        /// Challenge to verified proof.
        latency: Duration,
    },
    /// A proof was sent to the node.
    ProofSubmitted {
        /// Epoch number.
        epoch: u64,
        /// Its score.
        score: [u8; 32],
        /// Height it was submitted for (tip height + 1).
        block_height: u64,
        /// Challenge to submission.
        latency: Duration,
    },
    /// A winning block was built and sent.
    BlockWon {
        /// Epoch number.
        epoch: u64,
        /// Block height.
        height: u64,
        /// Block hash.
        block_hash: [u8; 32],
        /// Transactions included.
        transactions: u32,
    },
    /// The node accepted one of this miner's blocks.
    BlockAccepted {
        /// Block height.
        height: u64,
        /// Block hash.
        block_hash: [u8; 32],
    },
    /// A proof or block would have missed the deadline and was not sent.
    EpochLate {
        /// Epoch number.
        epoch: u64,
        /// By how much.
        late_by: Duration,
        /// Proof or block.
        what: LateWhat,
    },
    /// An epoch ended with no proof from this miner.
    EpochMissed {
        /// Epoch number.
        epoch: u64,
        /// Why.
        reason: String,
    },
    /// Progress of an epoch's scan (about once a second, and when the work ended).
    EpochScan(crate::stats::EpochScan),
    /// The farm-size warning was raised (`Some`, with its figures) or cleared (`None`).
    FarmSizeChanged(Option<crate::farm_size::FarmSizeWarning>),
    /// A plot was registered.
    PlotAdded(Box<PlotInfo>),
    /// A plot was unregistered.
    PlotRemoved {
        /// Its id.
        plot_id: Uuid,
        /// Its path.
        path: std::path::PathBuf,
        /// Whether its files were deleted.
        files_deleted: bool,
    },
    /// A plot changed state.
    PlotStateChanged {
        /// Its id.
        plot_id: Uuid,
        /// Its path.
        path: std::path::PathBuf,
        /// Before.
        old: PlotState,
        /// After.
        new: PlotState,
        /// Why (empty when it became valid).
        reason: String,
    },
    /// Progress of a plot job.
    PlotJobProgress {
        /// The job (and future plot) id.
        job_id: Uuid,
        /// Its progress.
        progress: JobProgress,
    },
    /// A plot job ended.
    PlotJobFinished {
        /// The job id.
        job_id: Uuid,
        /// Final plot path.
        path: std::path::PathBuf,
        /// How it ended.
        outcome: JobOutcome,
        /// The error, for a failed job.
        error: Option<String>,
        /// How long it ran.
        elapsed: Duration,
    },
    /// The node link came up.
    NodeConnected {
        /// `host:port`.
        address: String,
        /// The node's user agent.
        user_agent: String,
    },
    /// The node link went down.
    NodeDisconnected {
        /// `host:port`.
        address: String,
        /// Why.
        reason: String,
    },
    /// Mining was enabled or disabled.
    MiningToggled {
        /// The new value.
        enabled: bool,
    },
}

/// An event with its position in the feed and its time.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    /// 1 for the first event since start, then +1 per event.
    pub sequence: u64,
    /// When it was emitted.
    pub time: SystemTime,
    /// The event.
    pub event: Event,
}

/// The broadcast bus; cheap to clone.
#[derive(Debug, Clone)]
pub struct EventBus {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    tx: broadcast::Sender<Arc<Envelope>>,
    // Held while numbering and sending, so sequence order is delivery order.
    seq: Mutex<u64>,
    emitted: AtomicU64,
}

impl Default for EventBus {
    fn default() -> Self {
        Self::new()
    }
}

impl EventBus {
    /// A bus buffering [`CAPACITY`] events per subscriber.
    pub fn new() -> Self {
        let (tx, _) = broadcast::channel(CAPACITY);
        Self {
            inner: Arc::new(Inner {
                tx,
                seq: Mutex::new(0),
                emitted: AtomicU64::new(0),
            }),
        }
    }

    /// Publishes an event to every current subscriber. Never blocks.
    pub fn emit(&self, event: Event) {
        let mut seq = self.inner.seq.lock().unwrap_or_else(|e| e.into_inner());
        *seq += 1;
        let env = Envelope {
            sequence: *seq,
            time: SystemTime::now(),
            event,
        };
        // An error only means "no subscriber right now".
        let _ = self.inner.tx.send(Arc::new(env));
        self.inner.emitted.fetch_add(1, Ordering::Relaxed);
    }

    /// A receiver of every event emitted from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Envelope>> {
        self.inner.tx.subscribe()
    }

    /// Events emitted since start.
    pub fn emitted(&self) -> u64 {
        self.inner.emitted.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn subscribers_see_events_in_order_with_sequence_numbers() {
        let bus = EventBus::new();
        bus.emit(Event::MiningToggled { enabled: false }); // nobody listening: dropped
        let mut rx = bus.subscribe();
        bus.emit(Event::MiningToggled { enabled: true });
        bus.emit(Event::EpochMissed {
            epoch: 3,
            reason: "no valid plots".into(),
        });
        let a = rx.recv().await.unwrap();
        let b = rx.recv().await.unwrap();
        assert_eq!(a.sequence, 2);
        assert_eq!(b.sequence, 3);
        assert_eq!(a.event, Event::MiningToggled { enabled: true });
        assert_eq!(bus.emitted(), 3);
    }

    #[tokio::test]
    async fn a_slow_subscriber_learns_how_many_it_missed() {
        let bus = EventBus::new();
        let mut rx = bus.subscribe();
        for _ in 0..CAPACITY + 5 {
            bus.emit(Event::MiningToggled { enabled: true });
        }
        match rx.recv().await {
            Err(broadcast::error::RecvError::Lagged(n)) => assert_eq!(n, 5),
            other => panic!("expected lag, got {other:?}"),
        }
    }
}
