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
    /// After the drain: seconds of freshness probes under a steady load.
    #[arg(long, default_value_t = 10)]
    freshness_seconds: u64,
    /// Events per second published during the freshness probes.
    #[arg(long, default_value_t = 20_000)]
    load_rate: u64,
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
        // As the ad-server does: UUIDv7 ids, an impression's event id is
        // its impression id.
        let impression_id = admesh_common::ids::new_id();
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
            event_id: impression_id.clone(),
            event_type: pb::EventType::Impression as i32,
            bid_price: spend * 1000,
            spend,
            ..base.clone()
        });
        if serial % 4 == 0 {
            events.push(pb::AdEvent {
                event_id: admesh_common::ids::new_id(),
                event_type: pb::EventType::Click as i32,
                ..base
            });
        }
    }
    let total = events.len() as u64;
    // In the ad-server publisher's batches.
    for chunk in events.chunks(admesh_common::events::PUBLISH_BATCH) {
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
    if args.freshness_seconds > 0 {
        freshness(&args, Arc::clone(&stream), client.clone()).await?;
    }
    shutdown.cancel();
    server.await??;
    Ok(())
}

/// Publishes a steady load and, one at a time, probe impressions of their
/// own campaigns; records how long each probe takes to show up in
/// `GetCampaignAnalytics` (polled every 5 ms).
async fn freshness(
    args: &Args,
    stream: Arc<dyn EventStream>,
    mut client: AnalyticsServiceClient<tonic::transport::Channel>,
) -> anyhow::Result<()> {
    let stop = CancellationToken::new();
    let per_tick = (args.load_rate / 20).max(1) as usize;
    let load_stream = Arc::clone(&stream);
    let load_stop = stop.clone();
    let load = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(50));
        let mut published = 0u64;
        while !load_stop.is_cancelled() {
            tick.tick().await;
            let now = now_millis();
            let batch: Vec<pb::AdEvent> = (0..per_tick)
                .map(|index| pb::AdEvent {
                    event_id: format!("load-{now}-{index}-{published}"),
                    event_type: pb::EventType::Impression as i32,
                    time: Some(timestamp(now)),
                    campaign_id: format!("load-campaign-{}", index % 50),
                    ad_id: "load-ad".into(),
                    impression_id: format!("load-imp-{now}-{index}-{published}"),
                    spend: 1,
                    ..Default::default()
                })
                .collect();
            if load_stream.append(&batch).await.is_ok() {
                published += batch.len() as u64;
            }
        }
        published
    });
    let mut histogram = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000, 3)?;
    let started = Instant::now();
    let mut probe = 0u64;
    while started.elapsed() < Duration::from_secs(args.freshness_seconds) {
        probe += 1;
        let campaign = format!("probe-{}-{probe}", std::process::id());
        let now = now_millis();
        stream
            .append(&[pb::AdEvent {
                event_id: format!("{campaign}-event"),
                event_type: pb::EventType::Impression as i32,
                time: Some(timestamp(now)),
                campaign_id: campaign.clone(),
                ad_id: "probe-ad".into(),
                impression_id: format!("{campaign}-impression"),
                spend: 1,
                ..Default::default()
            }])
            .await?;
        let published = Instant::now();
        loop {
            anyhow::ensure!(
                published.elapsed() < Duration::from_secs(60),
                "a probe never showed up"
            );
            let answer = client
                .get_campaign_analytics(pb::GetCampaignAnalyticsRequest {
                    campaign_id: campaign.clone(),
                    ..Default::default()
                })
                .await;
            if let Ok(answer) = answer
                && answer
                    .into_inner()
                    .summary
                    .is_some_and(|summary| summary.total_impressions == 1)
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        histogram.record((published.elapsed().as_millis() as u64).max(1))?;
    }
    stop.cancel();
    let loaded = load.await?;
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "freshness under {:.0} events/s of load ({} probes): p50 {} ms, p99 {} ms, max {} ms",
        loaded as f64 / seconds,
        histogram.len(),
        histogram.value_at_quantile(0.5),
        histogram.value_at_quantile(0.99),
        histogram.max(),
    );
    Ok(())
}
