//! The farm-size warning: whether the farm is larger than this machine can score in one
//! epoch.
//!
//! Every scanned epoch is assessed from its figures ([`EpochFigures`]): the leaves the scan
//! strategy wanted, the leaves scored before the scan deadline, the measured scan rate and
//! the scan window (the time the epoch left for the scan). An epoch is *short* when it did
//! not score every wanted leaf, or when the measured rate times the window is below the
//! wanted leaves. The warning is raised when the latest epoch and at least one other of
//! the last [`WINDOW`] were short (one slow epoch, e.g. a cold page cache after a start, is
//! no verdict), and cleared once [`CLEAR_AFTER`] epochs in a row kept up. Abandoned epochs
//! (mining stopped, a newer epoch) are not assessed.

use std::collections::VecDeque;
use std::time::Duration;

/// Epochs the assessment looks back on.
pub const WINDOW: usize = 5;
/// Epochs in a row that must keep up before a raised warning is cleared.
pub const CLEAR_AFTER: usize = 3;

/// What one scanned epoch did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EpochFigures {
    /// The epoch.
    pub epoch: u64,
    /// Leaves of the farmed plots.
    pub leaves_farmed: u64,
    /// Leaves the scan strategy asked for.
    pub leaves_wanted: u64,
    /// Leaves scored.
    pub leaves_scanned: u64,
    /// The measured scan rate, leaves per second.
    pub leaves_per_sec: f64,
    /// The time the epoch left for the scan.
    pub scan_window: Duration,
}

impl EpochFigures {
    /// Leaves this machine scores in the window at the measured rate.
    pub fn capacity(&self) -> u64 {
        let c = self.leaves_per_sec * self.scan_window.as_secs_f64();
        if c.is_finite() && c > 0.0 {
            c.min(u64::MAX as f64) as u64
        } else {
            0
        }
    }

    /// Whether the epoch could not score the whole farm.
    pub fn short(&self) -> bool {
        self.leaves_scanned < self.leaves_wanted
            || (self.leaves_per_sec > 0.0 && self.capacity() < self.leaves_wanted)
    }
}

/// The warning, with the figures of the latest assessed epoch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FarmSizeWarning {
    /// The latest epoch's figures.
    pub figures: EpochFigures,
    /// Short epochs among the assessed ones.
    pub epochs_short: u32,
    /// Epochs assessed (at most [`WINDOW`]).
    pub epochs_assessed: u32,
}

impl FarmSizeWarning {
    /// One line for the log and `minerctl status`.
    pub fn describe(&self) -> String {
        let f = &self.figures;
        let pct = if f.leaves_wanted == 0 {
            100.0
        } else {
            f.leaves_scanned as f64 * 100.0 / f.leaves_wanted as f64
        };
        format!(
            "the farm is larger than this machine can score in an epoch: epoch {} scored \
             {} of {} leaves ({pct:.1}%); at {:.0} leaves/s in a {} ms scan window it \
             scores about {} ({} of the last {} epochs fell short)",
            f.epoch,
            f.leaves_scanned,
            f.leaves_wanted,
            f.leaves_per_sec,
            f.scan_window.as_millis(),
            f.capacity(),
            self.epochs_short,
            self.epochs_assessed
        )
    }
}

/// The recent epochs and the current verdict.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FarmSizeMonitor {
    recent: VecDeque<EpochFigures>,
    warning: Option<FarmSizeWarning>,
}

impl FarmSizeMonitor {
    /// The warning while raised.
    pub fn warning(&self) -> Option<FarmSizeWarning> {
        self.warning
    }

    /// Assesses one more scanned epoch. Returns `Some(new state)` when the warning was
    /// raised (`Some(Some(w))`) or cleared (`Some(None)`); `None` when it did not change
    /// (a raised warning's figures are updated in place).
    pub fn record(&mut self, f: EpochFigures) -> Option<Option<FarmSizeWarning>> {
        if self.recent.len() == WINDOW {
            self.recent.pop_front();
        }
        self.recent.push_back(f);
        let short = self.recent.iter().filter(|e| e.short()).count();
        let warning = FarmSizeWarning {
            figures: f,
            epochs_short: short as u32,
            epochs_assessed: self.recent.len() as u32,
        };
        let kept_up = self.recent.len() >= CLEAR_AFTER
            && self
                .recent
                .iter()
                .rev()
                .take(CLEAR_AFTER)
                .all(|e| !e.short());
        match self.warning {
            None if f.short() && short >= 2 => {
                self.warning = Some(warning);
                Some(self.warning)
            }
            Some(_) if kept_up => {
                self.warning = None;
                Some(None)
            }
            Some(_) => {
                self.warning = Some(warning);
                None
            }
            None => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn epoch(n: u64, scanned: u64, rate: f64) -> EpochFigures {
        EpochFigures {
            epoch: n,
            leaves_farmed: 1000,
            leaves_wanted: 1000,
            leaves_scanned: scanned,
            leaves_per_sec: rate,
            scan_window: Duration::from_millis(500),
        }
    }

    #[test]
    fn an_epoch_is_short_when_it_missed_leaves_or_the_rate_cannot_cover_the_farm() {
        assert!(!epoch(1, 1000, 4000.0).short());
        assert_eq!(epoch(1, 1000, 4000.0).capacity(), 2000);
        assert!(epoch(1, 999, 4000.0).short());
        // Everything scored, but only by luck of the window: 1900 leaves/s x 0.5 s < 1000.
        assert!(epoch(1, 1000, 1900.0).short());
        // No rate measured: only the leaves count.
        assert!(!epoch(1, 1000, 0.0).short());
    }

    #[test]
    fn raised_after_two_short_epochs_and_cleared_after_three_that_kept_up() {
        let mut m = FarmSizeMonitor::default();
        assert_eq!(
            m.record(epoch(1, 400, 800.0)),
            None,
            "one short epoch is no verdict"
        );
        assert_eq!(m.record(epoch(2, 1000, 4000.0)), None);
        let raised = m.record(epoch(3, 500, 1000.0)).expect("raised").unwrap();
        assert_eq!(raised.figures.epoch, 3);
        assert_eq!((raised.epochs_short, raised.epochs_assessed), (2, 3));
        assert_eq!(raised.figures.capacity(), 500);
        assert!(
            raised.describe().contains("500 of 1000 leaves (50.0%)"),
            "{}",
            raised.describe()
        );
        // Still short: the figures follow, no new event.
        assert_eq!(m.record(epoch(4, 600, 1200.0)), None);
        assert_eq!(m.warning().unwrap().figures.epoch, 4);
        // Two good epochs are not enough; the third clears it.
        assert_eq!(m.record(epoch(5, 1000, 4000.0)), None);
        assert_eq!(m.record(epoch(6, 1000, 4000.0)), None);
        assert!(m.warning().is_some());
        assert_eq!(m.record(epoch(7, 1000, 4000.0)), Some(None));
        assert!(m.warning().is_none());
        // The window forgets old epochs: shorts far apart never raise it.
        let mut m = FarmSizeMonitor::default();
        for n in 0..20 {
            let scanned = if n % 5 == 0 { 10 } else { 1000 };
            assert_eq!(m.record(epoch(n, scanned, 4000.0)), None, "epoch {n}");
        }
    }
}
