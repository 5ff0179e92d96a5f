//! The wall clock, read in one place: Unix time in milliseconds and seconds (0 before 1970,
//! saturating far in the future), the units of block timestamps, epoch deadlines and wire
//! messages. Also the calendar date of a day count, for the few places that print dates.

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

/// Days since 1970-01-01 to a proleptic Gregorian date (H. Hinnant's algorithm).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
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
