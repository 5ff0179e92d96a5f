//! Conversions between the daemon's domain types and the `spacetime.miner.v1` wire types, one
//! file per API area. Only the RPC layer sees wire types.

pub mod events;
pub mod plots;
pub mod requests;
pub mod status;

use std::time::Duration;

/// Milliseconds of a duration, saturating.
pub fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
