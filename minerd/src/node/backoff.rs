//! Reconnect backoff (decisions D3): exponential from a base, capped, with jitter.
//!
//! Attempt `n` (1 = the first retry) waits `min(cap, base · 2^(n−1))`, then "equal jitter"
//! keeps half of that and draws the other half at random, so many miners that lost the same
//! node do not come back in lock step. Once a node counts as unreachable the delay stays at
//! the cap (still jittered).

use std::time::Duration;

/// The backoff schedule; timings are plain values so tests run in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Delay before the first retry (`connectionRetryIntervalSeconds`).
    pub base: Duration,
    /// Largest delay (never below `base`).
    pub cap: Duration,
}

/// Default cap of the reconnect delay.
pub const DEFAULT_CAP: Duration = Duration::from_secs(60);

impl Backoff {
    /// The delay before retry `attempt` (1-based; 0 is treated as 1), before jitter.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let cap = self.cap.max(self.base);
        let exp = attempt.saturating_sub(1).min(32);
        self.base
            .checked_mul(1u32 << exp.min(31))
            .map_or(cap, |d| d.min(cap))
    }

    /// The delay before retry `attempt` with jitter `jitter` in `[0, 1)`: half the ceiling
    /// plus `jitter` times the other half.
    pub fn delay(&self, attempt: u32, jitter: f64) -> Duration {
        let ceiling = self.ceiling(attempt);
        let half = ceiling / 2;
        half + (ceiling - half).mul_f64(jitter.clamp(0.0, 1.0))
    }

    /// The capped delay used once the node is unreachable, with jitter.
    pub fn capped(&self, jitter: f64) -> Duration {
        self.delay(u32::MAX, jitter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn doubles_from_the_base_up_to_the_cap() {
        let b = Backoff {
            base: MS(100),
            cap: MS(1000),
        };
        let ceilings: Vec<_> = (1..=6).map(|n| b.ceiling(n)).collect();
        assert_eq!(
            ceilings,
            [MS(100), MS(200), MS(400), MS(800), MS(1000), MS(1000)]
        );
        assert_eq!(b.ceiling(0), MS(100));
        assert_eq!(b.ceiling(u32::MAX), MS(1000));
        assert_eq!(b.capped(0.0), MS(500));
    }

    #[test]
    fn jitter_stays_between_half_and_the_ceiling() {
        let b = Backoff {
            base: MS(100),
            cap: MS(1000),
        };
        assert_eq!(b.delay(3, 0.0), MS(200));
        assert_eq!(b.delay(3, 0.5), MS(300));
        assert!(b.delay(3, 0.999_999) <= MS(400));
        // Out-of-range jitter is clamped.
        assert_eq!(b.delay(3, 7.0), MS(400));
        assert_eq!(b.delay(3, -1.0), MS(200));
    }

    #[test]
    fn a_base_above_the_cap_wins_and_huge_bases_do_not_overflow() {
        let b = Backoff {
            base: Duration::from_secs(90),
            cap: DEFAULT_CAP,
        };
        assert_eq!(b.ceiling(1), Duration::from_secs(90));
        assert_eq!(b.ceiling(10), Duration::from_secs(90));
        let huge = Backoff {
            base: Duration::from_secs(u64::MAX / 4),
            cap: Duration::from_secs(u64::MAX / 2),
        };
        assert_eq!(huge.ceiling(40), Duration::from_secs(u64::MAX / 2));
    }
}
