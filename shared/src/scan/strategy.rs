//! Scan strategies: which leaves of a plot a scan scores (the reference miner's
//! strategies, section 3.5 of the spec), and their text form.

use std::fmt;
use std::ops::Range;
use std::str::FromStr;

/// Which leaves of each plot are scored.
///
/// Its text form (configuration files, logs) is `full`, `deadline`, `sampling[:S]` (S
/// defaults to the reference miner's 10 000) or `cache-friendly[:B:P]` (defaults 8192:8192).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScanStrategy {
    /// Every leaf, `0..N`.
    Full,
    /// `samples` leaves spread evenly: all of them when `samples ≥ N`, else
    /// `trunc(i × (N / S))` for `i in 0..S` in double arithmetic (reference `Sampling(S)`).
    Sampling {
        /// S (> 0; 0 scans nothing).
        samples: u64,
    },
    /// Blocks of `block` leaves, `per_block` leaves spread evenly in each (reference
    /// `CacheFriendly(B, P)`).
    CacheFriendly {
        /// B (> 0).
        block: u64,
        /// P (0 < P ≤ B).
        per_block: u64,
    },
    /// As many leaves as fit before the deadline, in file order, plot after plot; the best
    /// so far when time runs out. Without a deadline it is a full scan.
    Deadline,
}

impl ScanStrategy {
    /// Number of positions this strategy visits in a plot of `n` leaves.
    pub fn positions(&self, n: u64) -> u64 {
        match *self {
            ScanStrategy::Full | ScanStrategy::Deadline => n,
            ScanStrategy::Sampling { samples } => samples.min(n),
            ScanStrategy::CacheFriendly { block, per_block } => {
                if block == 0 || per_block == 0 {
                    return 0;
                }
                let full = n / block;
                let rest = n % block;
                full * per_block.min(block) + per_block.min(rest)
            }
        }
    }

    /// The leaf indices this strategy visits in a plot of `n` leaves, in visit order
    /// (for tests and callers that want the set; scanning computes them on the fly).
    pub fn indices(&self, n: u64) -> Vec<u64> {
        let mut out = Vec::new();
        for_each_index(self, n, 0..self.positions(n), |i| out.push(i));
        out
    }
}

impl fmt::Display for ScanStrategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ScanStrategy::Full => f.write_str("full"),
            ScanStrategy::Deadline => f.write_str("deadline"),
            ScanStrategy::Sampling { samples } => write!(f, "sampling:{samples}"),
            ScanStrategy::CacheFriendly { block, per_block } => {
                write!(f, "cache-friendly:{block}:{per_block}")
            }
        }
    }
}

/// A scan strategy name that is not one of the forms [`ScanStrategy`] documents.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid scan strategy {0:?}: expected full, deadline, sampling[:S] or cache-friendly[:B:P] \
     (S, B, P > 0, P <= B)"
)]
pub struct ParseScanStrategyError(pub String);

impl FromStr for ScanStrategy {
    type Err = ParseScanStrategyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = || ParseScanStrategyError(s.to_owned());
        let num = |p: &str| p.parse::<u64>().ok().filter(|n| *n > 0).ok_or_else(invalid);
        match s.split(':').collect::<Vec<_>>().as_slice() {
            ["full"] => Ok(ScanStrategy::Full),
            ["deadline"] => Ok(ScanStrategy::Deadline),
            ["sampling"] => Ok(ScanStrategy::Sampling { samples: 10_000 }),
            ["sampling", n] => Ok(ScanStrategy::Sampling { samples: num(n)? }),
            ["cache-friendly"] => Ok(ScanStrategy::CacheFriendly {
                block: 8192,
                per_block: 8192,
            }),
            ["cache-friendly", b, p] => {
                let (block, per_block) = (num(b)?, num(p)?);
                if per_block > block {
                    return Err(invalid());
                }
                Ok(ScanStrategy::CacheFriendly { block, per_block })
            }
            _ => Err(invalid()),
        }
    }
}

impl serde::Serialize for ScanStrategy {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for ScanStrategy {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Call `f` with the leaf index of each strategy position in `positions`, in order.
pub(super) fn for_each_index(
    strategy: &ScanStrategy,
    n: u64,
    positions: Range<u64>,
    mut f: impl FnMut(u64),
) {
    match *strategy {
        ScanStrategy::Full | ScanStrategy::Deadline => positions.for_each(f),
        ScanStrategy::Sampling { samples } => {
            if samples >= n {
                positions.for_each(f);
            } else {
                let step = n as f64 / samples as f64;
                for i in positions {
                    f((i as f64 * step) as u64);
                }
            }
        }
        ScanStrategy::CacheFriendly { block, per_block } => {
            if block == 0 || per_block == 0 {
                return;
            }
            let take = per_block.min(block);
            let full_blocks = n / block;
            for pos in positions {
                let (b, j) = (pos / take, pos % take);
                let start = b * block;
                let actual = if b < full_blocks { block } else { n - start };
                let k = per_block.min(actual);
                if k >= actual {
                    f(start + j);
                } else {
                    f(start + (j as f64 * (actual as f64 / k as f64)) as u64);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strategy_text_form_round_trips_and_rejects_bad_values() {
        for s in ["deadline", "full", "sampling:5", "cache-friendly:100:10"] {
            assert_eq!(s.parse::<ScanStrategy>().unwrap().to_string(), s);
        }
        assert_eq!(
            "sampling".parse::<ScanStrategy>().unwrap(),
            ScanStrategy::Sampling { samples: 10_000 }
        );
        for bad in [
            "cache-friendly:10:100",
            "sampling:0",
            "random",
            "full:1",
            "",
        ] {
            let err = bad.parse::<ScanStrategy>().unwrap_err();
            assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
        }
    }
}
