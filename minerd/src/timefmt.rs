//! Small UTC time helpers on top of `spacetime::metadata::format_utc` (the reference's
//! ISO-8601 form): the compact `yyyyMMddHHmmss` suffix of a corrupt metadata file kept aside,
//! and Unix milliseconds for the API.

use std::time::{SystemTime, UNIX_EPOCH};

/// `2026-01-02T03:04:05.1234567Z` (reference round-trip format, trailing zeros trimmed).
pub fn iso_utc(t: SystemTime) -> String {
    spacetime::metadata::format_utc(t)
}

/// `yyyyMMddHHmmss`, UTC.
pub fn compact_utc(t: SystemTime) -> String {
    iso_utc(t)
        .chars()
        .take("yyyy-MM-ddTHH:mm:ss".len())
        .filter(char::is_ascii_digit)
        .collect()
}

/// Milliseconds since the Unix epoch (negative before it).
pub fn unix_ms(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_millis()).unwrap_or(i64::MAX),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn known_instants() {
        let t = UNIX_EPOCH + Duration::from_secs(1_704_067_200); // 2024-01-01T00:00:00Z
        assert_eq!(iso_utc(t), "2024-01-01T00:00:00Z");
        assert_eq!(compact_utc(t), "20240101000000");
        let t = UNIX_EPOCH + Duration::new(951_782_400 + 3_661, 120_000_000); // 2000-02-29
        assert_eq!(compact_utc(t), "20000229010101");
        assert_eq!(unix_ms(t), 951_786_061_120);
        assert_eq!(unix_ms(UNIX_EPOCH - Duration::from_millis(5)), -5);
    }
}
