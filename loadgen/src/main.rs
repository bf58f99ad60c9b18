//! `admesh-loadgen`: drives `AdServer/Serve` over real gRPC on 127.0.0.1,
//! many requests in flight over a few HTTP/2 connections, and records every
//! latency in an HDR histogram. In the same run it drives a bare tonic echo
//! over the same two hops (front → back, the same messages, no AdMesh code),
//! the stack's limit, and prints both side by side.
//!
//! `cargo run --release -p admesh-loadgen -- --campaigns 10000 --seconds 10`
//!
//! Bounded: every measurement stops after `--seconds`; everything listens
//! on 127.0.0.1 and stops at the end.

/// As in every AdMesh binary.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use admesh_loadgen::{echo, mesh};

use std::time::Duration;

use clap::Parser;

use admesh_loadgen::driver::{Measurement, drive};

#[derive(Debug, Parser)]
#[command(about = "Serve path vs. a bare tonic echo over the same two hops")]
struct Args {
    /// Campaigns loaded into the bid-engine.
    #[arg(long, default_value_t = 10_000)]
    campaigns: usize,
    /// Measured seconds per target and concurrency.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Unmeasured seconds before each measurement.
    #[arg(long, default_value_t = 2)]
    warmup_seconds: u64,
    /// Requests in flight, one measurement per value.
    #[arg(long, value_delimiter = ',', default_values_t = [1, 64])]
    in_flight: Vec<usize>,
    /// HTTP/2 connections the requests share.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Rounds; targets alternate within a round, the median is reported.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Cluster profile: an empty PostgreSQL database for the campaigns
    /// (needs --redis-url too).
    #[arg(long, requires = "redis_url")]
    postgres_url: Option<String>,
    /// Cluster profile: Redis for budgets and events (needs --postgres-url).
    #[arg(long, requires = "postgres_url")]
    redis_url: Option<String>,
    /// Drive only the serve path (for profiling it alone).
    #[arg(long, conflicts_with = "echo_only")]
    serve_only: bool,
    /// Drive only the echo (for profiling the stack's limit alone).
    #[arg(long)]
    echo_only: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(
        args.seconds > 0 && args.seconds <= 300,
        "--seconds must be 1..=300"
    );
    anyhow::ensure!(
        args.rounds > 0 && args.rounds <= 10,
        "--rounds must be 1..=10"
    );
    anyhow::ensure!(args.connections > 0, "--connections must be at least 1");

    // As in production: JSON logs at info (the spans of every RPC exist).
    let telemetry = admesh_common::telemetry::init_telemetry(
        "admesh-loadgen",
        &admesh_common::config::TelemetryConfig::default(),
    )?;
    let cluster = args.postgres_url.clone().zip(args.redis_url.clone());
    let profile = if cluster.is_some() {
        "cluster"
    } else {
        "embedded"
    };
    let mesh = mesh::ServePath::start(args.campaigns, cluster).await?;
    let echo = echo::EchoTwoHop::start().await?;
    eprintln!(
        "serve path: ad-server {} → bid-engine ({} campaigns); echo: front {} → back",
        mesh.ad_server, args.campaigns, echo.front
    );

    let duration = Duration::from_secs(args.seconds);
    let warmup = Duration::from_secs(args.warmup_seconds);
    let mut results: Vec<(&str, usize, Vec<Measurement>)> = Vec::new();
    for &in_flight in &args.in_flight {
        results.push(("tonic echo, 2 hops", in_flight, Vec::new()));
        results.push(("AdMesh Serve, 2 hops", in_flight, Vec::new()));
    }
    for round in 0..args.rounds {
        for (slot, &in_flight) in args.in_flight.iter().enumerate() {
            // Alternate who goes first, so drift hurts neither side.
            let order: [(usize, std::net::SocketAddr); 2] = if round % 2 == 0 {
                [(0, echo.front), (1, mesh.ad_server)]
            } else {
                [(1, mesh.ad_server), (0, echo.front)]
            };
            for (which, address) in order {
                if (args.serve_only && which == 0) || (args.echo_only && which == 1) {
                    continue;
                }
                let measurement =
                    drive(address, args.connections, in_flight, warmup, duration).await?;
                eprintln!(
                    "round {} {} @{in_flight}: {:.0} req/s, no-fills: {}",
                    round + 1,
                    results[slot * 2 + which].0,
                    measurement.throughput(),
                    measurement.no_fill_breakdown()
                );
                results[slot * 2 + which].2.push(measurement);
            }
        }
    }

    println!(
        "\n{profile} profile, {} campaigns, {} connections, {} s per measurement, median of {} rounds\n",
        args.campaigns, args.connections, args.seconds, args.rounds
    );
    println!(
        "| target | in flight | req/s | p50 ms | p99 ms | p99.9 ms | errors | no-fills | CPU µs/req |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut medians = Vec::new();
    for (name, in_flight, measurements) in &results {
        if measurements.is_empty() {
            continue;
        }
        let median = Measurement::median(measurements);
        println!(
            "| {name} | {in_flight} | {:.0} | {:.3} | {:.3} | {:.3} | {} | {} | {:.1} |",
            median.throughput,
            median.p50_ms,
            median.p99_ms,
            median.p999_ms,
            median.errors,
            median.no_fills,
            median.cpu_us_per_request
        );
        medians.push((*in_flight, median));
    }
    println!();
    for pair in medians.chunks(2) {
        if let [(in_flight, echo), (_, serve)] = pair {
            println!(
                "@{in_flight} in flight: Serve/echo throughput {:.2}×, p99 {:.2}× the echo's; \
                 CPU per request, the echo's over Serve's: {:.2}×",
                serve.throughput / echo.throughput,
                serve.p99_ms / echo.p99_ms,
                echo.cpu_us_per_request / serve.cpu_us_per_request
            );
        }
    }
    echo.stop();
    mesh.stop().await;
    telemetry.shutdown();
    Ok(())
}
