//! The progress of an epoch's scan, published while it runs (`Status.scan` and
//! `EpochScan` events).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::events::Event;
use crate::farm_size::EpochFigures;

/// What the scan progress reporter watches.
pub(super) struct ScanWatch {
    pub(super) epoch: u64,
    pub(super) leaves_total: u64,
    pub(super) leaves_farmed: u64,
    pub(super) progress: Arc<AtomicU64>,
    pub(super) started: Instant,
    pub(super) scan_deadline: Instant,
    pub(super) done: Arc<AtomicBool>,
    /// The scan rate the work measured (leaves per second, `f64` bits).
    pub(super) scan_rate: Arc<AtomicU64>,
    /// Set when the epoch was abandoned: its figures say nothing about the farm.
    pub(super) cancel: Arc<AtomicBool>,
}

/// How often the progress of an epoch's scan is published (status and event feed).
const SCAN_REPORT_INTERVAL: Duration = Duration::from_secs(1);

/// Publishes the progress of an epoch's scan every [`SCAN_REPORT_INTERVAL`] while it runs
/// (`Status.scan` and an `EpochScan` event), and once more when the work ended; then clears
/// `Status.scan`. The time estimate is the rest at the measured rate, bounded by the scan
/// deadline (the scan stops there whatever is left).
pub(super) async fn report_scan_progress(
    w: ScanWatch,
    stats: crate::stats::MiningStats,
    events: crate::events::EventBus,
) {
    let snapshot = |w: &ScanWatch| {
        let scanned = w.progress.load(Ordering::Relaxed).min(w.leaves_total);
        let elapsed = w.started.elapsed().as_secs_f64();
        let rate = if elapsed > 0.0 {
            scanned as f64 / elapsed
        } else {
            0.0
        };
        let left = w.leaves_total - scanned;
        let eta = if left == 0 {
            Some(Duration::ZERO)
        } else if rate > 0.0 {
            let by_rate = Duration::from_secs_f64(left as f64 / rate);
            Some(by_rate.min(w.scan_deadline.saturating_duration_since(Instant::now())))
        } else {
            None
        };
        crate::stats::EpochScan {
            epoch: w.epoch,
            leaves_scanned: scanned,
            leaves_total: w.leaves_total,
            leaves_per_sec: rate,
            eta,
            leaves_farmed: w.leaves_farmed,
            finished: false,
        }
    };
    let mut next = Instant::now() + SCAN_REPORT_INTERVAL;
    loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if w.done.load(Ordering::SeqCst) {
            break;
        }
        if Instant::now() >= next {
            next += SCAN_REPORT_INTERVAL;
            let s = snapshot(&w);
            stats.update(|st| st.scan = Some(s));
            events.emit(Event::EpochScan(s));
        }
    }
    let s = crate::stats::EpochScan {
        eta: None,
        finished: true,
        ..snapshot(&w)
    };
    stats.update(|st| {
        if st.scan.is_none_or(|c| c.epoch == w.epoch) {
            st.scan = None;
        }
        st.last_scan = Some(s);
    });
    events.emit(Event::EpochScan(s));
    if !w.cancel.load(Ordering::SeqCst) {
        assess_farm_size(&w, &s, &stats, &events);
    }
}

/// Feeds a finished epoch's figures to the farm-size monitor; logs and reports a change of
/// the warning (raised: warning with the figures; cleared: info).
fn assess_farm_size(
    w: &ScanWatch,
    s: &crate::stats::EpochScan,
    stats: &crate::stats::MiningStats,
    events: &crate::events::EventBus,
) {
    let figures = EpochFigures {
        epoch: w.epoch,
        leaves_farmed: w.leaves_farmed,
        leaves_wanted: w.leaves_total,
        leaves_scanned: s.leaves_scanned,
        leaves_per_sec: f64::from_bits(w.scan_rate.load(Ordering::Relaxed)),
        scan_window: w.scan_deadline.saturating_duration_since(w.started),
    };
    let Some(change) = stats.update(|st| st.farm.record(figures)) else {
        return;
    };
    match &change {
        Some(warning) => tracing::warn!(
            epoch = w.epoch, leaves_farmed = figures.leaves_farmed,
            leaves_wanted = figures.leaves_wanted, leaves_scanned = figures.leaves_scanned,
            leaves_per_sec = figures.leaves_per_sec as u64,
            scan_window_ms = figures.scan_window.as_millis() as u64,
            capacity_leaves = figures.capacity(),
            "{}: add scan speed (faster disks, more cores, plots spread over more disks) or use a sampling scanStrategy",
            warning.describe()
        ),
        None => tracing::info!(
            epoch = w.epoch, leaves_scanned = figures.leaves_scanned,
            "the farm-size warning is cleared: the last epochs scored the whole farm"
        ),
    }
    events.emit(Event::FarmSizeChanged(change));
}
