//! The wall clock, read in one place: Unix time in milliseconds and seconds (0 before 1970,
//! saturating far in the future), the units of block timestamps, epoch deadlines and wire
//! messages.

use std::time::{SystemTime, UNIX_EPOCH};

/// Unix time now, in milliseconds.
pub fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Unix time now, in whole seconds.
pub fn now_unix_secs() -> u64 {
    now_unix_ms() / 1000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn milliseconds_and_seconds_agree_and_are_after_2020() {
        let ms = now_unix_ms();
        let s = now_unix_secs();
        assert!(ms > 1_577_836_800_000, "{ms}");
        assert!(s >= ms / 1000 && s <= ms / 1000 + 1);
    }
}
