//! When a failed job may run again: exponential backoff with jitter, so a
//! burst of failures does not come back as a burst of retries.

/// The first retry waits about this long.
pub const BASE_DELAY_MS: i64 = 1_000;
/// No retry waits longer than this.
pub const MAX_DELAY_MS: i64 = 60_000;

/// The delay before retry number `failed_attempts` (1 after the first
/// failure): `BASE · 2^(n-1)`, capped, then "equal jitter": half fixed, half
/// random, with `jitter` in `[0, 1)`.
pub fn retry_delay_ms(failed_attempts: u32, jitter: f64) -> i64 {
    let exponent = failed_attempts.saturating_sub(1).min(20);
    let delay = BASE_DELAY_MS
        .saturating_mul(1 << exponent)
        .min(MAX_DELAY_MS);
    let half = delay / 2;
    half + (half as f64 * jitter.clamp(0.0, 1.0)) as i64
}

/// A retry delay with a random jitter.
pub fn random_retry_delay_ms(failed_attempts: u32) -> i64 {
    retry_delay_ms(failed_attempts, rand::random::<f64>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_per_attempt_within_their_jitter_band() {
        for attempt in 1..=5u32 {
            let full = BASE_DELAY_MS << (attempt - 1);
            assert_eq!(retry_delay_ms(attempt, 0.0), full / 2);
            assert_eq!(retry_delay_ms(attempt, 1.0), full);
            let random = random_retry_delay_ms(attempt);
            assert!((full / 2..=full).contains(&random), "{random}");
        }
    }

    #[test]
    fn delays_are_capped() {
        assert_eq!(retry_delay_ms(40, 1.0), MAX_DELAY_MS);
        assert_eq!(retry_delay_ms(0, 0.0), BASE_DELAY_MS / 2);
    }
}
