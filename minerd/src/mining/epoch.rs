//! Book-keeping of one epoch: what was done for it and how it ends for the counters.
//!
//! Every announced epoch ends exactly once ([`EpochRecord::settle`]), when a newer epoch
//! arrives or shortly after its deadline:
//! * a proof was submitted: nothing more to count (proofs and blocks counted when sent);
//! * a proof or block was ready too late to send: the epoch was already counted **late**;
//! * mining was disabled for it: abandoned, not counted;
//! * otherwise no proof was computed in time: **missed**, with the reason.

use std::time::{Duration, Instant};

use spacetime::wire::NewEpoch;

use crate::events::{Event, EventBus, LateWhat};
use crate::stats::MiningStats;

/// How long before the deadline a message must leave so that it arrives in time.
pub const SEND_ALLOWANCE: Duration = Duration::from_millis(20);
/// Time kept free before the deadline for building the proof and sending (at most; a
/// quarter of the time left when that is shorter), on top of the plots' proof reserve.
pub const PROOF_MARGIN: Duration = Duration::from_millis(500);
/// Scan rate assumed before one was measured (leaves per second over all scan threads;
/// low, so that the first epoch keeps enough time for an uncached plot's proof).
pub const ASSUMED_SCAN_RATE: f64 = 1_000_000.0;
/// Hashing per leaf of a proof relative to a scan: a leaf node plus about one internal
/// node (three compressions) against a score (two).
const PROOF_COST_PER_LEAF: f64 = 1.5;
/// Time after the deadline at which an unfinished epoch is settled as missed.
pub const SETTLE_GRACE: Duration = Duration::from_millis(500);

pub use spacetime::clock::now_unix_ms as unix_millis;

/// `Some(by how much)` when a message sent at `now_ms` would reach the node after
/// `deadline_ms`, allowing [`SEND_ALLOWANCE`] for the trip.
pub fn lateness(deadline_ms: u64, now_ms: u64) -> Option<Duration> {
    let arrival = now_ms.saturating_add(SEND_ALLOWANCE.as_millis() as u64);
    (arrival >= deadline_ms).then(|| Duration::from_millis(arrival - deadline_ms))
}

/// Estimated time to build a proof that reads `read_leaves` leaves
/// (`spacetime::prove::proof_read_leaves`) at a scan rate of `leaves_per_sec` (0 or
/// unusable: [`ASSUMED_SCAN_RATE`]).
pub fn proof_time(read_leaves: u64, leaves_per_sec: f64) -> Duration {
    let rate = if leaves_per_sec.is_finite() && leaves_per_sec > 0.0 {
        leaves_per_sec
    } else {
        ASSUMED_SCAN_RATE
    };
    Duration::from_secs_f64((read_leaves as f64 * PROOF_COST_PER_LEAF / rate).min(86_400.0))
}

/// The scan budget for an epoch whose deadline is `left` away: stop early enough to build
/// the slowest plot's proof (`proof_reserve`, at most half the time left: a plot whose
/// proof does not fit is skipped by the work) and send it, and never work longer than
/// `timeout`. `None` when there is no time.
pub fn scan_budget(left: Duration, timeout: Duration, proof_reserve: Duration) -> Option<Duration> {
    let margin = PROOF_MARGIN.min(left / 4) + proof_reserve.min(left / 2);
    let budget = left.checked_sub(margin)?.min(timeout);
    (!budget.is_zero()).then_some(budget)
}

/// How an epoch ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settlement {
    /// A proof was submitted.
    Submitted,
    /// Counted late when it happened.
    Late,
    /// Mining was disabled.
    Abandoned,
    /// No proof: counted missed now.
    Missed(String),
}

/// What the miner did for one epoch.
#[derive(Debug, Clone)]
pub struct EpochRecord {
    /// The announcement.
    pub info: NewEpoch,
    /// When it arrived.
    pub received: Instant,
    /// When it arrived, unix seconds.
    pub received_unix: u64,
    /// A scan ran to its end for this epoch (whatever it found): no second attempt.
    pub worked: bool,
    /// A proof was built and verified.
    pub proof_generated: bool,
    /// The proof was sent.
    pub proof_submitted: bool,
    /// Counted late.
    pub late: bool,
    /// Mining was disabled during it (and not enabled again with time to mine).
    pub abandoned: bool,
    /// The latest reason no proof could be computed.
    pub miss_reason: Option<String>,
    /// Already settled.
    pub settled: bool,
}

impl EpochRecord {
    /// A record for an epoch announced now.
    pub fn new(info: NewEpoch) -> Self {
        Self {
            info,
            received: Instant::now(),
            received_unix: unix_millis() / 1000,
            worked: false,
            proof_generated: false,
            proof_submitted: false,
            late: false,
            abandoned: false,
            miss_reason: None,
            settled: false,
        }
    }

    /// Whether `other` announces this same epoch again (e.g. after a reconnect).
    pub fn same_epoch(&self, other: &NewEpoch) -> bool {
        self.info.epoch == other.epoch && self.info.challenge == other.challenge
    }

    /// The epoch start the block rules use: when it was announced (never after the deadline).
    pub fn epoch_start_unix(&self) -> u64 {
        self.received_unix.min(self.info.deadline_unix_ms / 1000)
    }

    /// Counts a late proof or block (the epoch counts once) and emits the event.
    pub fn count_late(
        &mut self,
        what: LateWhat,
        late_by: Duration,
        stats: &MiningStats,
        events: &EventBus,
    ) {
        tracing::warn!(
            epoch = self.info.epoch,
            what = what.as_str(),
            ?late_by,
            "{} ready after the deadline: not sent",
            what.as_str()
        );
        if !self.late {
            self.late = true;
            stats.update(|s| s.counters.late_epochs += 1);
        }
        events.emit(Event::EpochLate {
            epoch: self.info.epoch,
            late_by,
            what,
        });
    }

    /// Ends the epoch for the counters (once; later calls return `None`).
    pub fn settle(&mut self, stats: &MiningStats, events: &EventBus) -> Option<Settlement> {
        if self.settled {
            return None;
        }
        self.settled = true;
        let s = if self.proof_submitted {
            Settlement::Submitted
        } else if self.late {
            Settlement::Late
        } else if self.abandoned {
            Settlement::Abandoned
        } else {
            let reason = self.miss_reason.clone().unwrap_or_else(|| {
                if self.proof_generated {
                    "proof not sent".to_owned()
                } else {
                    "no proof before the deadline".to_owned()
                }
            });
            tracing::info!(epoch = self.info.epoch, reason = %reason, "epoch missed");
            stats.update(|s| s.counters.missed_epochs += 1);
            events.emit(Event::EpochMissed {
                epoch: self.info.epoch,
                reason: reason.clone(),
            });
            Settlement::Missed(reason)
        };
        Some(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn epoch(n: u64) -> NewEpoch {
        NewEpoch {
            epoch: n,
            tip_hash: [1; 32],
            tip_height: n - 1,
            difficulty: 1,
            challenge: [n as u8; 32],
            deadline_unix_ms: unix_millis() + 1000,
        }
    }

    #[test]
    fn lateness_allows_for_the_trip() {
        assert_eq!(lateness(10_000, 9_000), None);
        assert_eq!(lateness(10_000, 9_979), None);
        assert_eq!(lateness(10_000, 9_980), Some(Duration::ZERO));
        assert_eq!(lateness(10_000, 10_480), Some(Duration::from_millis(500)));
        assert_eq!(lateness(0, u64::MAX), Some(Duration::from_millis(u64::MAX)));
    }

    #[test]
    fn scan_budget_keeps_a_margin_and_honours_the_timeout() {
        let s = Duration::from_secs;
        let none = Duration::ZERO;
        assert_eq!(scan_budget(s(10), s(60), none), Some(s(10) - PROOF_MARGIN));
        assert_eq!(scan_budget(s(10), s(3), none), Some(s(3)));
        // Short epochs keep a quarter.
        assert_eq!(
            scan_budget(Duration::from_millis(800), s(60), none),
            Some(Duration::from_millis(600))
        );
        assert_eq!(scan_budget(Duration::ZERO, s(60), none), None);
    }

    #[test]
    fn the_proof_reserve_is_sized_from_the_plot_and_capped() {
        let s = Duration::from_secs;
        // An uncached plot of 2^26 leaves at 2^24 leaves/s: 6 s of proof kept free.
        let reserve = proof_time(1 << 26, (1u64 << 24) as f64);
        assert_eq!(reserve, s(6));
        assert_eq!(
            scan_budget(s(30), s(60), reserve),
            Some(s(24) - PROOF_MARGIN)
        );
        // Never more than half the time left: the scan still runs.
        assert_eq!(scan_budget(s(8), s(60), s(100)), Some(s(4) - PROOF_MARGIN));
        // Unknown rate: the assumed one.
        assert_eq!(proof_time(1_000_000, 0.0), Duration::from_secs_f64(1.5));
        assert_eq!(
            proof_time(1_000_000, f64::NAN),
            Duration::from_secs_f64(1.5)
        );
    }

    #[test]
    fn late_counts_once_per_epoch_and_is_not_missed() {
        let (stats, events) = (MiningStats::new(String::new()), EventBus::new());
        let mut rx = events.subscribe();
        let mut r = EpochRecord::new(epoch(4));
        r.proof_generated = true;
        r.count_late(LateWhat::Proof, Duration::from_millis(3), &stats, &events);
        r.count_late(LateWhat::Block, Duration::from_millis(4), &stats, &events);
        assert_eq!(r.settle(&stats, &events), Some(Settlement::Late));
        assert_eq!(r.settle(&stats, &events), None);
        let c = stats.snapshot().counters;
        assert_eq!((c.late_epochs, c.missed_epochs), (1, 0));
        let first = rx.try_recv().unwrap();
        assert!(matches!(
            first.event,
            Event::EpochLate {
                epoch: 4,
                what: LateWhat::Proof,
                ..
            }
        ));
        assert!(matches!(
            rx.try_recv().unwrap().event,
            Event::EpochLate {
                what: LateWhat::Block,
                ..
            }
        ));
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn an_epoch_without_proof_is_missed_with_its_reason() {
        let (stats, events) = (MiningStats::new(String::new()), EventBus::new());
        let mut rx = events.subscribe();
        let mut r = EpochRecord::new(epoch(2));
        r.miss_reason = Some("no valid plots".into());
        assert_eq!(
            r.settle(&stats, &events),
            Some(Settlement::Missed("no valid plots".into()))
        );
        assert_eq!(stats.snapshot().counters.missed_epochs, 1);
        assert_eq!(
            rx.try_recv().unwrap().event,
            Event::EpochMissed {
                epoch: 2,
                reason: "no valid plots".into()
            }
        );
        // Submitted and abandoned epochs count neither way.
        let mut ok = EpochRecord::new(epoch(3));
        ok.proof_generated = true;
        ok.proof_submitted = true;
        assert_eq!(ok.settle(&stats, &events), Some(Settlement::Submitted));
        let mut off = EpochRecord::new(epoch(5));
        off.abandoned = true;
        assert_eq!(off.settle(&stats, &events), Some(Settlement::Abandoned));
        let c = stats.snapshot().counters;
        assert_eq!((c.late_epochs, c.missed_epochs), (0, 1));
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn a_reannounced_epoch_is_recognised() {
        let e = epoch(7);
        let r = EpochRecord::new(e);
        assert!(r.same_epoch(&e));
        assert!(!r.same_epoch(&epoch(8)));
        assert!(r.epoch_start_unix() <= e.deadline_unix_ms / 1000);
    }
}
