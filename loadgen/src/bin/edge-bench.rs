//! `edge-bench`: `GET /serve` through the REST edge (edge → ad-server →
//! bid-engine, the real services) side by side with a bare axum → tonic
//! echo over the same hops (axum handler → echo front → echo back), both
//! driven by `wrk` (127.0.0.1 only) with the same request mix, alternating
//! within each round.
//!
//! `cargo run --release -p admesh-loadgen --bin edge-bench -- --seconds 10 --rounds 3`
//!
//! Needs `wrk` (Debian: `apt-get install wrk`). Bounded: each measurement
//! stops after `--seconds`; everything stops at the end.

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use admesh_common::{Database, MeshConfig, ServiceContext};
use admesh_loadgen::{cpu::CpuTimes, driver::request, echo::EchoTwoHop, mesh::ServePath};
use admesh_proto::adserver::v1::{ServeRequest, ad_server_client::AdServerClient};
use axum::{Json, Router, extract::Query, extract::State, routing::get};
use clap::Parser;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

#[derive(Debug, Parser)]
#[command(about = "GET /serve through the edge vs. a bare axum → tonic echo, with wrk")]
struct Args {
    #[arg(long, default_value_t = 10_000)]
    campaigns: usize,
    /// Measured seconds per target.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// wrk connections.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// wrk threads.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Rounds; the median is reported.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Drive only this target (`bare`, `edge-echo` or `edge`), e.g. to
    /// profile it alone.
    #[arg(long, value_parser = ["bare", "edge-echo", "edge"])]
    only: Option<String>,
}

/// The same deterministic mix as `admesh-loadgen`, as query strings.
fn query_strings(count: u64) -> Vec<String> {
    (0..count)
        .map(|n| {
            let r = request(n);
            let mut query = format!(
                "userId={}&placementId={}&countryCode={}&deviceType={}",
                r.user_id, r.placement_id, r.country_code, r.device_type
            );
            if let Some(age) = r.age {
                query.push_str(&format!("&age={age}"));
            }
            for interest in &r.interests {
                query.push_str(&format!("&interests={interest}"));
            }
            query
        })
        .collect()
}

fn wrk_script(queries: &[String]) -> String {
    let list: Vec<String> = queries.iter().map(|q| format!("\"/serve?{q}\"")).collect();
    format!(
        "local paths = {{{}}}\nlocal n = 0\nrequest = function()\n  n = n + 1\n  return wrk.format(\"GET\", paths[(n % #paths) + 1])\nend\n",
        list.join(",")
    )
}

/// The baseline's one handler: the query into a `ServeRequest`, one call,
/// the answer as JSON. No auth, limits, descriptors or telemetry.
async fn bare_serve(
    State(client): State<AdServerClient<Channel>>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Json<serde_json::Value>, axum::http::StatusCode> {
    let mut request = ServeRequest::default();
    for (key, value) in pairs {
        match key.as_str() {
            "userId" => request.user_id = value,
            "placementId" => request.placement_id = value,
            "countryCode" => request.country_code = value,
            "deviceType" => request.device_type = value.parse().unwrap_or_default(),
            "age" => request.age = value.parse().ok(),
            "interests" => request.interests.push(value),
            _ => return Err(axum::http::StatusCode::BAD_REQUEST),
        }
    }
    let answer = client
        .clone()
        .serve(request)
        .await
        .map_err(|_| axum::http::StatusCode::BAD_GATEWAY)?
        .into_inner();
    // The whole message, as the edge answers it: a fair comparison.
    Ok(Json(serde_json::json!({
        "filled": answer.filled,
        "noFillReason": "NO_FILL_REASON_UNSPECIFIED",
        "adId": answer.ad_id,
        "campaignId": answer.campaign_id,
        "title": answer.title,
        "imageUrl": answer.image_url,
        "redirectUrl": answer.redirect_url,
        "bidPrice": answer.bid_price.to_string(),
        "impressionId": answer.impression_id,
        "clickTrackingUrl": answer.click_tracking_url,
    })))
}

async fn start_bare(echo_front: SocketAddr, stop: CancellationToken) -> anyhow::Result<SocketAddr> {
    let channel = admesh_loadgen::echo::bare_tonic_channel(echo_front)?;
    let app = Router::new()
        .route("/serve", get(bare_serve))
        .with_state(AdServerClient::new(channel));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(stop.cancelled_owned())
            .await
    });
    Ok(address)
}

async fn start_edge(
    ad_server: SocketAddr,
    stop: CancellationToken,
    dir: &std::path::Path,
    file: &str,
) -> anyhow::Result<SocketAddr> {
    let mut config = MeshConfig::default();
    config.edge.ad_server_url = format!("http://{ad_server}");
    config.edge.admin_password = admesh_common::Secret::new("edge-bench-password");
    let url = format!("sqlite://{}", dir.join(file).display());
    let context = ServiceContext {
        config: Arc::new(config),
        database: Database::connect_and_migrate(&url, 4).await?,
        redis: None,
        shutdown: stop,
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    tokio::spawn(admesh_edge::serve(context, listener));
    Ok(address)
}

/// Polls `GET path` until it answers 200.
async fn wait_ok(address: SocketAddr, path: &str) -> anyhow::Result<()> {
    for _ in 0..300 {
        if let Ok(mut stream) = tokio::net::TcpStream::connect(address).await {
            let request =
                format!("GET {path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n");
            stream.write_all(request.as_bytes()).await?;
            let mut answer = Vec::new();
            stream.read_to_end(&mut answer).await?;
            if answer.starts_with(b"HTTP/1.1 200") {
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("{address}{path} never answered 200")
}

#[derive(Clone, Copy, Debug)]
struct WrkResult {
    requests_per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
    non_2xx: u64,
    requests: u64,
    /// CPU per request of this process (the servers) and of wrk, in µs.
    server_cpu_us: f64,
    wrk_cpu_us: f64,
}

fn parse_latency(text: &str) -> Option<f64> {
    let (number, factor) = if let Some(v) = text.strip_suffix("us") {
        (v, 0.001)
    } else if let Some(v) = text.strip_suffix("ms") {
        (v, 1.0)
    } else if let Some(v) = text.strip_suffix('s') {
        (v, 1000.0)
    } else {
        return None;
    };
    number.parse::<f64>().ok().map(|v| v * factor)
}

fn parse_wrk(output: &str) -> anyhow::Result<WrkResult> {
    let mut result = WrkResult {
        requests_per_sec: 0.0,
        p50_ms: 0.0,
        p99_ms: 0.0,
        non_2xx: 0,
        requests: 0,
        server_cpu_us: 0.0,
        wrk_cpu_us: 0.0,
    };
    for line in output.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["Requests/sec:", value] => result.requests_per_sec = value.parse()?,
            [count, "requests", "in", ..] => result.requests = count.parse()?,
            ["50%", value] => result.p50_ms = parse_latency(value).unwrap_or(0.0),
            ["99%", value] => result.p99_ms = parse_latency(value).unwrap_or(0.0),
            ["Non-2xx", "or", "3xx", "responses:", value] => result.non_2xx = value.parse()?,
            _ => {}
        }
    }
    anyhow::ensure!(
        result.requests_per_sec > 0.0,
        "wrk printed no rate:\n{output}"
    );
    Ok(result)
}

async fn run_wrk(
    args: &Args,
    script: &std::path::Path,
    address: SocketAddr,
) -> anyhow::Result<WrkResult> {
    let mut command = std::process::Command::new("wrk");
    command
        .arg(format!("-t{}", args.threads))
        .arg(format!("-c{}", args.connections))
        .arg(format!("-d{}s", args.seconds))
        .arg("--latency")
        .arg("-s")
        .arg(script)
        .arg(format!("http://{address}"));
    let before = CpuTimes::now()?;
    // wrk runs for the whole measurement; keep it off the runtime's workers.
    let output = tokio::task::spawn_blocking(move || command.output())
        .await?
        .map_err(|error| anyhow::anyhow!("running wrk (apt-get install wrk): {error}"))?;
    let used = CpuTimes::now()?.since(before);
    anyhow::ensure!(
        output.status.success(),
        "wrk failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut result = parse_wrk(&String::from_utf8_lossy(&output.stdout))?;
    let requests = result.requests.max(1) as f64;
    result.server_cpu_us = used.process * 1e6 / requests;
    result.wrk_cpu_us = used.children * 1e6 / requests;
    Ok(result)
}

fn median(values: &mut [WrkResult]) -> WrkResult {
    values.sort_by(|a, b| a.requests_per_sec.total_cmp(&b.requests_per_sec));
    values[values.len() / 2]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(
        (1..=300).contains(&args.seconds),
        "--seconds must be 1..=300"
    );
    anyhow::ensure!((1..=10).contains(&args.rounds), "--rounds must be 1..=10");
    let telemetry = admesh_common::telemetry::init_telemetry(
        "edge-bench",
        &admesh_common::config::TelemetryConfig::default(),
    )?;
    let dir = tempfile::tempdir()?;
    let stop = CancellationToken::new();
    let mesh = ServePath::start(args.campaigns, None).await?;
    let echo = EchoTwoHop::start().await?;
    let edge = start_edge(mesh.ad_server, stop.clone(), dir.path(), "edge.db").await?;
    // The edge alone: the same edge in front of the bare echo, so its own
    // cost shows apart from the serve path's.
    let edge_on_echo = start_edge(echo.front, stop.clone(), dir.path(), "edge-echo.db").await?;
    let bare = start_bare(echo.front, stop.clone()).await?;
    let queries = query_strings(1000);
    let first = format!("/serve?{}", queries[0]);
    wait_ok(edge, &first).await?;
    wait_ok(edge_on_echo, &first).await?;
    wait_ok(bare, &first).await?;
    let script = dir.path().join("serve.lua");
    std::fs::write(&script, wrk_script(&queries))?;
    eprintln!(
        "edge {edge} → ad-server {} → bid-engine; bare axum {bare} → echo {}",
        mesh.ad_server, echo.front
    );

    let targets = [
        ("bare axum → tonic echo, 2 hops", bare),
        ("AdMesh edge → tonic echo, 2 hops", edge_on_echo),
        ("AdMesh edge → Serve, 2 hops", edge),
    ];
    let mut results: Vec<Vec<WrkResult>> = vec![Vec::new(); targets.len()];
    for round in 0..args.rounds {
        // Rotate who goes first, so drift hurts no target more than another.
        for step in 0..targets.len() {
            let which = (step + round) % targets.len();
            let (name, address) = targets[which];
            let short = ["bare", "edge-echo", "edge"][which];
            if args.only.as_deref().is_some_and(|only| only != short) {
                continue;
            }
            let result = run_wrk(&args, &script, address).await?;
            eprintln!(
                "round {} {name}: {:.0} req/s, p99 {:.2} ms, CPU {:.1} µs/req (+ wrk {:.1})",
                round + 1,
                result.requests_per_sec,
                result.p99_ms,
                result.server_cpu_us,
                result.wrk_cpu_us
            );
            results[which].push(result);
        }
    }
    if args.only.is_some() {
        stop.cancel();
        echo.stop();
        mesh.stop().await;
        telemetry.shutdown();
        return Ok(());
    }
    let medians: Vec<WrkResult> = results.iter_mut().map(|r| median(r)).collect();
    println!(
        "\n{} campaigns, wrk -t{} -c{}, {} s per measurement, median of {} rounds\n",
        args.campaigns, args.threads, args.connections, args.seconds, args.rounds
    );
    println!(
        "| target | req/s | p50 ms | p99 ms | non-2xx | CPU µs/req (servers) | CPU µs/req (wrk) |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for ((name, _), result) in targets.iter().zip(&medians) {
        println!(
            "| {name} | {:.0} | {:.2} | {:.2} | {} | {:.1} | {:.1} |",
            result.requests_per_sec,
            result.p50_ms,
            result.p99_ms,
            result.non_2xx,
            result.server_cpu_us,
            result.wrk_cpu_us
        );
    }
    let bare_median = medians[0];
    let all_cpu = |result: &WrkResult| result.server_cpu_us + result.wrk_cpu_us;
    for ((name, _), result) in targets.iter().zip(&medians).skip(1) {
        println!(
            "\n{name} / bare: throughput {:.2}×, p99 {:.2}×; CPU per request (servers \
             and wrk), bare's over this one's: {:.2}×",
            result.requests_per_sec / bare_median.requests_per_sec,
            result.p99_ms / bare_median.p99_ms,
            all_cpu(&bare_median) / all_cpu(result),
        );
    }
    stop.cancel();
    echo.stop();
    mesh.stop().await;
    telemetry.shutdown();
    Ok(())
}
