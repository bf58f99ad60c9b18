//! The load: `in_flight` workers, each one request at a time, sharing
//! `connections` HTTP/2 connections; latencies in microseconds into HDR
//! histograms, merged at the end.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    time::{Duration, Instant},
};

use admesh_bid_engine::synthetic::{COUNTRIES, DEVICES, INTERESTS};
use admesh_proto::adserver::v1::{NoFillReason, ServeRequest, ad_server_client::AdServerClient};
use hdrhistogram::Histogram;

use crate::cpu::CpuTimes;

/// The n-th request of a deterministic mix of users and contexts.
pub fn request(n: u64) -> ServeRequest {
    let i = n as usize;
    ServeRequest {
        user_id: format!("user-{}", n % 100_000),
        placement_id: format!("placement-{}", i % 20),
        country_code: COUNTRIES[i % COUNTRIES.len()].to_string(),
        device_type: DEVICES[(i / 3) % DEVICES.len()] as i32,
        age: Some(18 + (i % 50) as u32),
        interests: vec![
            INTERESTS[i % INTERESTS.len()].to_string(),
            INTERESTS[(i / 7) % INTERESTS.len()].to_string(),
        ],
        ..Default::default()
    }
}

#[derive(Debug)]
pub struct Measurement {
    requests: u64,
    pub errors: u64,
    /// Answers without an ad, by `NoFillReason` number: they skip the
    /// auction's winner path, so a run with many of them does not measure
    /// the serve path.
    pub no_fill_reasons: BTreeMap<i32, u64>,
    elapsed: Duration,
    histogram: Histogram<u64>,
    /// This process's CPU (clients and servers alike) over the measured
    /// window, in seconds.
    cpu_seconds: f64,
}

/// The figures of one measurement (or the median of several).
#[derive(Clone, Copy, Debug)]
pub struct Summary {
    pub throughput: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub errors: u64,
    pub no_fills: u64,
    /// CPU of the whole process per request: steadier than throughput on a
    /// shared machine.
    pub cpu_us_per_request: f64,
}

impl Measurement {
    /// "none", or each no-fill reason with its count.
    pub fn no_fill_breakdown(&self) -> String {
        if self.no_fill_reasons.is_empty() {
            return "none".into();
        }
        self.no_fill_reasons
            .iter()
            .map(|(reason, count)| {
                let name = NoFillReason::try_from(*reason)
                    .map_or("unknown", |reason| reason.as_str_name());
                format!("{name} {count}")
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    pub fn throughput(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }

    fn summary(&self) -> Summary {
        let ms = |quantile: f64| self.histogram.value_at_quantile(quantile) as f64 / 1000.0;
        Summary {
            throughput: self.throughput(),
            p50_ms: ms(0.50),
            p99_ms: ms(0.99),
            p999_ms: ms(0.999),
            errors: self.errors,
            no_fills: self.no_fill_reasons.values().sum(),
            cpu_us_per_request: self.cpu_seconds * 1e6 / self.requests.max(1) as f64,
        }
    }

    /// Per figure, the median over `measurements`.
    pub fn median(measurements: &[Measurement]) -> Summary {
        let summaries: Vec<Summary> = measurements.iter().map(Self::summary).collect();
        let median_of = |pick: fn(&Summary) -> f64| {
            let mut values: Vec<f64> = summaries.iter().map(pick).collect();
            values.sort_by(f64::total_cmp);
            values[values.len() / 2]
        };
        Summary {
            throughput: median_of(|s| s.throughput),
            p50_ms: median_of(|s| s.p50_ms),
            p99_ms: median_of(|s| s.p99_ms),
            p999_ms: median_of(|s| s.p999_ms),
            errors: summaries.iter().map(|s| s.errors).sum(),
            no_fills: summaries.iter().map(|s| s.no_fills).sum(),
            cpu_us_per_request: median_of(|s| s.cpu_us_per_request),
        }
    }
}

fn new_histogram() -> anyhow::Result<Histogram<u64>> {
    // 1 µs to 60 s, 3 significant digits.
    Ok(Histogram::new_with_bounds(1, 60_000_000, 3)?)
}

/// Drives `Serve` at `address` for `warmup` (unrecorded) then `duration`.
pub async fn drive(
    address: SocketAddr,
    connections: usize,
    in_flight: usize,
    warmup: Duration,
    duration: Duration,
) -> anyhow::Result<Measurement> {
    let channels = (0..connections)
        .map(|_| admesh_common::lazy_channel(&format!("http://{address}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let start = Instant::now() + warmup;
    let end = start + duration;
    let cpu = tokio::spawn(async move {
        tokio::time::sleep_until(start.into()).await;
        let before = CpuTimes::now()?;
        tokio::time::sleep_until(end.into()).await;
        anyhow::Ok(CpuTimes::now()?.since(before).process)
    });
    let mut workers = Vec::with_capacity(in_flight);
    for worker in 0..in_flight {
        let mut client = AdServerClient::new(channels[worker % connections].clone());
        workers.push(tokio::spawn(async move {
            let mut histogram = new_histogram()?;
            let (mut requests, mut errors) = (0u64, 0u64);
            let mut no_fill_reasons = BTreeMap::<i32, u64>::new();
            let mut n = worker as u64 * 1_000_003;
            loop {
                let sent = Instant::now();
                if sent >= end {
                    break;
                }
                let answer = client.serve(request(n)).await;
                n += 1;
                if sent < start {
                    continue;
                }
                requests += 1;
                match answer {
                    Err(_) => errors += 1,
                    Ok(answer) if !answer.get_ref().filled => {
                        *no_fill_reasons
                            .entry(answer.get_ref().no_fill_reason)
                            .or_default() += 1;
                    }
                    Ok(_) => {}
                }
                histogram.saturating_record(sent.elapsed().as_micros() as u64);
            }
            anyhow::Ok((requests, errors, no_fill_reasons, histogram))
        }));
    }
    let mut total = Measurement {
        requests: 0,
        errors: 0,
        no_fill_reasons: BTreeMap::new(),
        elapsed: duration,
        histogram: new_histogram()?,
        cpu_seconds: 0.0,
    };
    for worker in workers {
        let (requests, errors, no_fill_reasons, histogram) = worker.await??;
        total.requests += requests;
        total.errors += errors;
        for (reason, count) in no_fill_reasons {
            *total.no_fill_reasons.entry(reason).or_default() += count;
        }
        total.histogram.add(histogram)?;
    }
    total.cpu_seconds = cpu.await??;
    Ok(total)
}
