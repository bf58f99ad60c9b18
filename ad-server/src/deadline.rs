//! The bid-engine call's time budget: min(configured bound, the caller's
//! remaining gRPC deadline).

use std::time::Duration;

use admesh_common::deadline::parse_grpc_timeout;

/// The budget for the bid call given the caller's `grpc-timeout` header.
pub fn bid_budget(bound: Duration, caller_timeout: Option<&str>) -> Duration {
    caller_timeout
        .and_then(parse_grpc_timeout)
        .map_or(bound, |remaining| remaining.min(bound))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_is_the_smaller_of_bound_and_caller_deadline() {
        let bound = Duration::from_millis(50);
        assert_eq!(bid_budget(bound, None), bound);
        assert_eq!(bid_budget(bound, Some("10m")), Duration::from_millis(10));
        assert_eq!(bid_budget(bound, Some("5S")), bound);
        assert_eq!(bid_budget(bound, Some("garbage")), bound);
    }
}
