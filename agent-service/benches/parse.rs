//! Offline parse latency: every supported command's examples plus longer,
//! politer and noisier phrasings, parsed one at a time; each parse timed
//! into an HDR histogram. Target: p99 under 1 ms.
//!
//! `cargo bench -p admesh-agent-service --bench parse`

use std::time::Instant;

use admesh_agent_service::{intent::CATALOGUE, parser::parse};
use hdrhistogram::Histogram;

const EXTRA: &[&str] = &[
    "Could you please be so kind as to change the priority to five for every single ad in the \"Puzzle Adventure\" family that has been waiting for longer than twenty five minutes, thanks a lot",
    "what is the click-through rate of campaign Summer Sneakers over the last 7 days?",
    "show me errors from the queue-service in the past 2 hours",
    "bake me a cake",
    "'; DROP TABLE ad_jobs; --",
];

fn main() {
    let mut sentences: Vec<&str> = CATALOGUE
        .iter()
        .flat_map(|command| command.examples.iter().copied())
        .collect();
    sentences.extend_from_slice(EXTRA);
    let rounds = 5_000;
    // Warm caches and the allocator.
    for sentence in &sentences {
        let _ = std::hint::black_box(parse(sentence));
    }
    let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram");
    let started = Instant::now();
    for _ in 0..rounds {
        for sentence in &sentences {
            let at = Instant::now();
            let _ = std::hint::black_box(parse(std::hint::black_box(sentence)));
            histogram.saturating_record(at.elapsed().as_nanos() as u64);
        }
    }
    let elapsed = started.elapsed();
    let parses = rounds * sentences.len();
    println!(
        "{parses} parses of {} sentences: p50 {:.1} µs, p99 {:.1} µs, p99.9 {:.1} µs, max {:.1} µs; {:.0} commands/s on one core",
        sentences.len(),
        histogram.value_at_quantile(0.50) as f64 / 1000.0,
        histogram.value_at_quantile(0.99) as f64 / 1000.0,
        histogram.value_at_quantile(0.999) as f64 / 1000.0,
        histogram.max() as f64 / 1000.0,
        parses as f64 / elapsed.as_secs_f64(),
    );
}
