//! Time as the database stores it: unix milliseconds, UTC days and hours
//! since the epoch, and conversions to protobuf timestamps.

use std::time::{SystemTime, UNIX_EPOCH};

pub const MILLIS_PER_HOUR: i64 = 3_600_000;
pub const MILLIS_PER_DAY: i64 = 86_400_000;

/// Milliseconds since the unix epoch, now.
pub fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

/// The UTC day (days since 1970-01-01) of a unix-millisecond time.
pub fn utc_day(millis: i64) -> i64 {
    millis.div_euclid(MILLIS_PER_DAY)
}

/// The minute (minutes since the epoch) of a unix-millisecond time.
pub fn utc_minute(millis: i64) -> i64 {
    millis.div_euclid(60_000)
}

/// The hour (hours since the epoch) of a unix-millisecond time.
pub fn utc_hour(millis: i64) -> i64 {
    millis.div_euclid(MILLIS_PER_HOUR)
}

/// A protobuf timestamp of a unix-millisecond time.
pub fn timestamp(millis: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: millis.div_euclid(1000),
        nanos: (millis.rem_euclid(1000) * 1_000_000) as i32,
    }
}

/// Unix milliseconds of a protobuf timestamp.
pub fn millis_of(timestamp: &prost_types::Timestamp) -> i64 {
    timestamp.seconds.saturating_mul(1000) + i64::from(timestamp.nanos / 1_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_and_hours_split_at_utc_midnight() {
        // 2026-11-25T23:59:59.999Z and 2026-11-26T00:00:00Z
        let before = 1_795_651_199_999;
        let after = before + 1;
        assert_eq!(utc_day(after) - utc_day(before), 1);
        assert_eq!(utc_hour(after) - utc_hour(before), 1);
        assert_eq!(utc_day(-1), -1);
    }

    #[test]
    fn timestamps_round_trip() {
        for millis in [0, 1, 999, 1_795_651_199_999, -1] {
            assert_eq!(millis_of(&timestamp(millis)), millis);
        }
    }
}
