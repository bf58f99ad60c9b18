//! The token bucket: `capacity` tokens, refilled at `refill_rate` per
//! second; a request takes one. The arithmetic lives here once; the
//! embedded store runs it in memory and the Redis script mirrors it.

/// What one request's take decided, for the `X-RateLimit-*` headers.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Decision {
    pub allowed: bool,
    pub limit: u32,
    pub remaining: u32,
    /// Seconds until the bucket is full again.
    pub reset_secs: u64,
    /// Seconds until one token is back (0 when allowed).
    pub retry_after_secs: u64,
}

/// A bucket's stored state.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BucketState {
    pub tokens: f64,
    pub updated_ms: i64,
}

/// Refills `state` up to `now_ms` and takes one token if there is one.
pub fn take(
    state: Option<BucketState>,
    capacity: u32,
    refill_rate: f64,
    now_ms: i64,
) -> (BucketState, bool) {
    let capacity = f64::from(capacity);
    let tokens = match state {
        None => capacity,
        Some(state) => {
            let elapsed_ms = (now_ms - state.updated_ms).max(0) as f64;
            (state.tokens + elapsed_ms * refill_rate / 1000.0).min(capacity)
        }
    };
    let allowed = tokens >= 1.0;
    let tokens = if allowed { tokens - 1.0 } else { tokens };
    (
        BucketState {
            tokens,
            updated_ms: now_ms,
        },
        allowed,
    )
}

/// The decision for a bucket left with `tokens` after the take.
pub fn decision(allowed: bool, tokens: f64, capacity: u32, refill_rate: f64) -> Decision {
    let seconds = |missing: f64| (missing.max(0.0) / refill_rate).ceil() as u64;
    Decision {
        allowed,
        limit: capacity,
        remaining: tokens.floor().max(0.0) as u32,
        reset_secs: seconds(f64::from(capacity) - tokens),
        retry_after_secs: if allowed {
            0
        } else {
            seconds(1.0 - tokens).max(1)
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_drains_the_bucket_then_refill_lets_requests_through() {
        let mut state = None;
        let mut allowed = 0;
        for _ in 0..5 {
            let (next, ok) = take(state, 3, 1.0, 1_000);
            state = Some(next);
            allowed += usize::from(ok);
        }
        assert_eq!(allowed, 3, "capacity 3 allows a burst of 3");
        let (next, ok) = take(state, 3, 1.0, 1_500);
        assert!(!ok, "half a token after 500 ms at 1/s");
        let d = decision(ok, next.tokens, 3, 1.0);
        assert_eq!((d.remaining, d.retry_after_secs, d.reset_secs), (0, 1, 3));
        let (next, ok) = take(Some(next), 3, 1.0, 2_000);
        assert!(ok, "a whole token after a second");
        assert!(next.tokens.abs() < 1e-9);
    }

    #[test]
    fn refill_never_exceeds_capacity_and_clock_skew_takes_nothing() {
        let (state, _) = take(None, 2, 100.0, 0);
        let (state, _) = take(Some(state), 2, 100.0, 60_000);
        assert!((state.tokens - 1.0).abs() < 1e-9, "refilled to 2, took 1");
        let (later, ok) = take(Some(state), 2, 100.0, 59_000);
        assert!(ok);
        assert!(later.tokens.abs() < 1e-9, "a clock going back adds nothing");
    }

    #[test]
    fn headers_report_what_is_left() {
        let d = decision(true, 4.6, 10, 2.0);
        assert_eq!(
            (d.limit, d.remaining, d.reset_secs, d.retry_after_secs),
            (10, 4, 3, 0)
        );
    }
}
