//! Error rates and latency against the SLOs, read from each service's own
//! Prometheus metrics (`GET /metrics` on its gRPC port, what Prometheus
//! scrapes): RPC counts by code and the latency histogram. Between two
//! diagnoses the figures cover the time since the last one; the first time,
//! since the service started.

use std::collections::BTreeMap;
use std::time::Duration;

/// What a service is held to.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Objective {
    pub p99: Duration,
    /// Share of RPCs that may fail on the service's side.
    pub error_rate: f64,
}

/// The SLOs (seed 003: serving p99 < 200 ms, bidding p95 < 50 ms).
pub fn objective(service: &str) -> Objective {
    let p99 = match service {
        "ad-server" => Duration::from_millis(200),
        "bid-engine" => Duration::from_millis(50),
        _ => Duration::from_millis(500),
    };
    Objective {
        p99,
        error_rate: 0.01,
    }
}

/// Codes that mean the service failed (not the caller).
const SERVER_ERRORS: &[&str] = &[
    "UNKNOWN",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "DEADLINE_EXCEEDED",
];

/// RPCs that are not traffic: probes, reflection, and the queue's
/// long-lived dispatch stream (its duration is the stream's life).
const NOT_TRAFFIC: &[&str] = &["Check", "Watch", "ServerReflectionInfo", "Process"];

/// Cumulative counts for one service.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Snapshot {
    pub total: f64,
    pub errors: f64,
    /// Upper bound (seconds; `f64::INFINITY` last) → RPCs at or under it.
    pub buckets: Vec<(f64, f64)>,
}

fn labels(text: &str) -> BTreeMap<&str, &str> {
    let mut labels = BTreeMap::new();
    let mut rest = text;
    while let Some((key, after)) = rest.split_once("=\"") {
        let Some((value, tail)) = after.split_once('"') else {
            break;
        };
        labels.insert(key.trim_start_matches(',').trim(), value);
        rest = tail;
    }
    labels
}

/// The RPC figures of `service` in a Prometheus text exposition.
pub fn parse(exposition: &str, service: &str) -> Snapshot {
    let mut snapshot = Snapshot::default();
    let mut buckets: BTreeMap<u64, (f64, f64)> = BTreeMap::new();
    for line in exposition.lines().filter(|line| !line.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        let Some((name, rest)) = series.split_once('{') else {
            continue;
        };
        let labels = labels(rest.trim_end_matches('}'));
        if labels.get("service") != Some(&service)
            || labels
                .get("method")
                .is_some_and(|method| NOT_TRAFFIC.contains(method))
        {
            continue;
        }
        match name {
            "admesh_grpc_server_requests_total" => {
                snapshot.total += value;
                if labels
                    .get("code")
                    .is_some_and(|code| SERVER_ERRORS.contains(code))
                {
                    snapshot.errors += value;
                }
            }
            "admesh_grpc_server_duration_seconds_bucket" => {
                let le = match labels.get("le") {
                    Some(&"+Inf") => f64::INFINITY,
                    Some(le) => match le.parse::<f64>() {
                        Ok(le) => le,
                        Err(_) => continue,
                    },
                    None => continue,
                };
                // Keyed by the bound's bits: bounds are positive, so the
                // order of the bits is the order of the bounds.
                let entry = buckets.entry(le.to_bits()).or_insert((le, 0.0));
                entry.1 += value;
            }
            _ => {}
        }
    }
    snapshot.buckets = buckets.into_values().collect();
    snapshot
}

/// What happened between `before` and `now` (all of `now` when there is
/// no `before`, or the service restarted and its counters began again).
pub fn since(now: &Snapshot, before: Option<&Snapshot>) -> Snapshot {
    let Some(before) = before.filter(|before| before.total <= now.total) else {
        return now.clone();
    };
    Snapshot {
        total: now.total - before.total,
        errors: (now.errors - before.errors).max(0.0),
        buckets: now
            .buckets
            .iter()
            .map(|(le, count)| {
                let earlier = before
                    .buckets
                    .iter()
                    .find(|(other, _)| other == le)
                    .map_or(0.0, |(_, c)| *c);
                (*le, (count - earlier).max(0.0))
            })
            .collect(),
    }
}

impl Snapshot {
    pub fn error_rate(&self) -> Option<f64> {
        (self.total > 0.0).then(|| self.errors / self.total)
    }

    /// The bucket bound under which 99 % of the RPCs finished; `None`
    /// without RPCs, or when the 99th percentile is past the last finite
    /// bound.
    pub fn p99(&self) -> Option<Duration> {
        let count = self.buckets.last().map(|(_, count)| *count)?;
        if count <= 0.0 {
            return None;
        }
        let wanted = count * 0.99;
        self.buckets
            .iter()
            .find(|(_, at_or_under)| *at_or_under >= wanted)
            .and_then(|(le, _)| le.is_finite().then(|| Duration::from_secs_f64(*le)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXPOSITION: &str = r#"# TYPE admesh_grpc_server_requests_total counter
admesh_grpc_server_requests_total{service="bid-engine",method="Bid",code="OK"} 97
admesh_grpc_server_requests_total{service="bid-engine",method="Bid",code="UNAVAILABLE"} 2
admesh_grpc_server_requests_total{service="bid-engine",method="Bid",code="INVALID_ARGUMENT"} 1
admesh_grpc_server_requests_total{service="bid-engine",method="Check",code="OK"} 500
admesh_grpc_server_requests_total{service="ad-server",method="Serve",code="OK"} 40
admesh_grpc_server_duration_seconds_bucket{service="bid-engine",method="Bid",code="OK",le="0.001"} 90
admesh_grpc_server_duration_seconds_bucket{service="bid-engine",method="Bid",code="OK",le="0.01"} 96
admesh_grpc_server_duration_seconds_bucket{service="bid-engine",method="Bid",code="OK",le="0.1"} 97
admesh_grpc_server_duration_seconds_bucket{service="bid-engine",method="Bid",code="OK",le="+Inf"} 97
admesh_grpc_server_duration_seconds_bucket{service="bid-engine",method="Bid",code="UNAVAILABLE",le="0.001"} 2
admesh_grpc_server_duration_seconds_bucket{service="bid-engine",method="Bid",code="UNAVAILABLE",le="0.01"} 2
admesh_grpc_server_duration_seconds_bucket{service="bid-engine",method="Bid",code="UNAVAILABLE",le="0.1"} 3
admesh_grpc_server_duration_seconds_bucket{service="bid-engine",method="Bid",code="UNAVAILABLE",le="+Inf"} 3
"#;

    #[test]
    fn error_rates_count_server_failures_of_real_traffic_only() {
        let bids = parse(EXPOSITION, "bid-engine");
        assert_eq!(bids.total, 100.0, "health checks are not traffic");
        assert_eq!(bids.errors, 2.0, "INVALID_ARGUMENT is the caller's");
        assert_eq!(bids.error_rate(), Some(0.02));
        assert_eq!(parse(EXPOSITION, "ad-server").error_rate(), Some(0.0));
        assert_eq!(parse(EXPOSITION, "edge").error_rate(), None, "not measured");
    }

    #[test]
    fn p99_is_the_bucket_bound_holding_99_percent() {
        let bids = parse(EXPOSITION, "bid-engine");
        assert_eq!(bids.buckets.len(), 4);
        assert_eq!(bids.p99(), Some(Duration::from_millis(100)));
    }

    #[test]
    fn figures_since_the_last_look_subtract_it() {
        let now = parse(EXPOSITION, "bid-engine");
        let before = Snapshot {
            total: 50.0,
            errors: 2.0,
            buckets: vec![
                (0.001, 49.0),
                (0.01, 50.0),
                (0.1, 50.0),
                (f64::INFINITY, 50.0),
            ],
        };
        let window = since(&now, Some(&before));
        assert_eq!(window.total, 50.0);
        assert_eq!(window.error_rate(), Some(0.0));
        let restarted = Snapshot {
            total: 1_000.0,
            ..Default::default()
        };
        assert_eq!(since(&now, Some(&restarted)), now, "a restart starts over");
    }
}
