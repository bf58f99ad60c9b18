//! `analytics-bench`: events per second ingested end to end — published to
//! the event stream, counted in SQL — with the totals checked exact.
//!
//! `cargo run --release -p admesh-loadgen --bin analytics-bench -- --events 200000`
//! (embedded: SQLite and its SQL stream), or with `--postgres-url … --redis-url …`
//! (cluster: PostgreSQL and a Redis Stream; the database should be empty).
//!
//! The events (an impression and, for every fourth, a click) are published
//! first, then the analytics-service starts and drains them; the figure is
//! events counted per second from its start to the exact total. Bounded by
//! `--timeout-seconds`; everything listens on 127.0.0.1.

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use admesh_common::{
    Database, MeshConfig, Redis, ServiceContext,
    events::{EventStream, RedisEventStream, SqlEventStream},
    time::{now_millis, timestamp},
};
use admesh_proto::analytics::v1::{self as pb, analytics_service_client::AnalyticsServiceClient};
use anyhow::Context;
use clap::Parser;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Parser)]
#[command(about = "Analytics ingest throughput, exact totals")]
struct Args {
    /// Impressions to publish (plus a click for every fourth).
    #[arg(long, default_value_t = 200_000)]
    impressions: usize,
    /// Campaigns the events spread over.
    #[arg(long, default_value_t = 100)]
    campaigns: usize,
    /// Events per consumer transaction.
    #[arg(long, default_value_t = 10_000)]
    batch_size: usize,
    #[arg(long, default_value_t = 300)]
    timeout_seconds: u64,
    /// Cluster profile: an empty PostgreSQL database (needs --redis-url).
    #[arg(long, requires = "redis_url")]
    postgres_url: Option<String>,
    /// Cluster profile: Redis for the stream (needs --postgres-url).
    #[arg(long, requires = "postgres_url")]
    redis_url: Option<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(
        (1..=5_000_000).contains(&args.impressions),
        "--impressions 1..=5000000"
    );
    anyhow::ensure!(
        (1..=10_000).contains(&args.campaigns),
        "--campaigns 1..=10000"
    );
    let data = tempfile::tempdir()?;
    let stream_key = format!("admesh:bench-events:{}", std::process::id());
    let (url, redis) = match (&args.postgres_url, &args.redis_url) {
        (Some(postgres), Some(redis)) => (postgres.clone(), Some(Redis::connect(redis).await?)),
        _ => (
            format!("sqlite://{}", data.path().join("analytics.db").display()),
            None,
        ),
    };
    let profile = if redis.is_some() {
        "cluster"
    } else {
        "embedded"
    };
    let database = Database::connect_and_migrate(&url, 8).await?;
    let stream: Arc<dyn EventStream> = match &redis {
        Some(redis) => Arc::new(RedisEventStream::with_key(redis.clone(), &stream_key)),
        None => Arc::new(SqlEventStream::new(database.clone())),
    };

    let now = now_millis();
    let mut events = Vec::with_capacity(args.impressions + args.impressions / 4);
    let mut expected_spend = 0i64;
    for serial in 0..args.impressions {
        let impression_id = format!("imp-{serial}");
        let spend = 500 + (serial % 1000) as i64;
        expected_spend += spend;
        let base = pb::AdEvent {
            time: Some(timestamp(now - (serial % 3_600_000) as i64)),
            user_id: format!("user-{}", serial % 10_000),
            campaign_id: format!("bench-campaign-{}", serial % args.campaigns),
            ad_id: format!("bench-ad-{}", serial % (args.campaigns * 3)),
            placement_id: "home".into(),
            impression_id: impression_id.clone(),
            ..Default::default()
        };
        events.push(pb::AdEvent {
            event_id: format!("{impression_id}-i"),
            event_type: pb::EventType::Impression as i32,
            bid_price: spend * 1000,
            spend,
            ..base.clone()
        });
        if serial % 4 == 0 {
            events.push(pb::AdEvent {
                event_id: format!("{impression_id}-c"),
                event_type: pb::EventType::Click as i32,
                ..base
            });
        }
    }
    let total = events.len() as u64;
    for chunk in events.chunks(5_000) {
        stream.append(chunk).await.context("publishing")?;
    }
    println!("analytics-bench: {total} events published ({profile} profile), counting…");

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let mut config = MeshConfig::default();
    config.redis.events_stream = stream_key;
    config.analytics.batch_size = args.batch_size;
    let shutdown = CancellationToken::new();
    let context = ServiceContext {
        config: Arc::new(config),
        database: database.clone(),
        redis,
        shutdown: shutdown.clone(),
    };
    let started = Instant::now();
    let server = tokio::spawn(admesh_analytics_service::serve(context, listener));
    let channel =
        tonic::transport::Endpoint::from_shared(format!("http://{address}"))?.connect_lazy();
    let mut client = AnalyticsServiceClient::new(channel);
    let deadline = started + Duration::from_secs(args.timeout_seconds);
    let status = loop {
        anyhow::ensure!(
            Instant::now() < deadline,
            "not counted within --timeout-seconds"
        );
        if let Ok(status) = client
            .get_ingest_status(pb::GetIngestStatusRequest {})
            .await
        {
            let status = status.into_inner();
            if status.events_counted >= total {
                break status;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let seconds = started.elapsed().as_secs_f64();
    let top = client
        .top_campaigns(pb::TopCampaignsRequest {
            limit: 100,
            ..Default::default()
        })
        .await?
        .into_inner()
        .campaigns;
    let counted_spend: i64 = top.iter().map(|row| row.spend).sum();
    let counted_impressions: u64 = top.iter().map(|row| row.impressions).sum();
    println!(
        "counted {} events in {seconds:.2} s: {:.0} events/s; duplicates {}; spend {} (expected {expected_spend}); impressions {counted_impressions}",
        status.events_counted,
        status.events_counted as f64 / seconds,
        status.duplicates_dropped,
        counted_spend,
    );
    anyhow::ensure!(
        status.events_counted == total,
        "counted more than published"
    );
    if args.campaigns <= 100 {
        anyhow::ensure!(counted_spend == expected_spend, "spend is not exact");
        anyhow::ensure!(
            counted_impressions == args.impressions as u64,
            "impressions are not exact"
        );
    }
    shutdown.cancel();
    server.await??;
    Ok(())
}
