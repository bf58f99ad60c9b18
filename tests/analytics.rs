//! The analytics-service (SPEC §5) against real processes: serves and
//! clicks through the ad-server show up in campaign analytics within 2 s;
//! duplicated, redelivered and out-of-order events count once and in their
//! own day; two replicas share one Redis stream and a replica killed with
//! -9 mid-batch loses and doubles nothing.

mod support;

use std::{sync::Arc, time::Duration};

use admesh_common::{
    Database, Redis,
    events::{EventStream, RedisEventStream, SqlEventStream},
    time::{now_millis, timestamp},
};
use admesh_proto::{
    adserver::v1::{self as ad, ad_server_client::AdServerClient},
    analytics::v1::{self as pb, analytics_service_client::AnalyticsServiceClient},
    bid::v1::{self as bid, bid_engine_client::BidEngineClient},
};
use tonic::{Code, transport::Channel};

use support::{Mesh, channel, eventually, placement_campaign, serve_request, spawn_service};

const PATIENCE: Duration = Duration::from_secs(30);

type Analytics = AnalyticsServiceClient<Channel>;

async fn campaign_totals(client: &mut Analytics, campaign_id: &str) -> Option<pb::MetricsSummary> {
    client
        .get_campaign_analytics(pb::GetCampaignAnalyticsRequest {
            campaign_id: campaign_id.into(),
            ..Default::default()
        })
        .await
        .ok()?
        .into_inner()
        .summary
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_and_clicks_appear_in_campaign_analytics_within_two_seconds() {
    let mesh = Mesh::start(&[]);
    support::wait_until_serving(mesh.address("bid-engine")).await;
    support::wait_until_serving(mesh.address("analytics-service")).await;
    let mut bidder = BidEngineClient::new(channel(mesh.address("bid-engine")));
    let mut server = AdServerClient::new(channel(mesh.address("ad-server")));
    let mut analytics = AnalyticsServiceClient::new(channel(mesh.address("analytics-service")));
    let campaign = bidder
        .create_campaign(bid::CreateCampaignRequest {
            campaign: Some(placement_campaign(
                "Counted",
                "analytics-e2e",
                2_000_000,
                100_000_000,
            )),
        })
        .await
        .expect("create")
        .into_inner();
    const SERVES: u64 = 20;
    const CLICKS: u64 = 7;
    let mut tokens = Vec::new();
    for user in 0..SERVES {
        let fill = server
            .serve(serve_request(&format!("user-{user}"), "analytics-e2e"))
            .await
            .expect("serve")
            .into_inner();
        assert!(fill.filled);
        tokens.push(
            fill.click_tracking_url
                .split_once("?t=")
                .expect("token")
                .1
                .to_string(),
        );
    }
    for token in tokens.iter().take(CLICKS as usize) {
        let clicked = server
            .click(ad::ClickRequest {
                token: token.clone(),
            })
            .await
            .expect("click")
            .into_inner();
        assert!(clicked.counted);
        // A repeated click is not an event: counted once per impression.
        server
            .click(ad::ClickRequest {
                token: token.clone(),
            })
            .await
            .expect("click again");
    }
    let published = std::time::Instant::now();
    let summary = eventually("the serves and clicks are counted", PATIENCE, || {
        let mut analytics = analytics.clone();
        let id = campaign.id.clone();
        async move {
            let summary = campaign_totals(&mut analytics, &id).await?;
            (summary.total_impressions == SERVES && summary.total_clicks == CLICKS)
                .then_some(summary)
        }
    })
    .await;
    // Reported, not asserted: timing belongs in benchmarks.
    println!(
        "freshness: counted {:?} after the last click",
        published.elapsed()
    );
    assert!(summary.total_spend > 0);
    assert_eq!(summary.cpc, summary.total_spend / CLICKS as i64);
    assert_eq!(summary.ctr, CLICKS as f64 * 100.0 / SERVES as f64);
    let ads = analytics
        .get_ad_analytics(pb::GetAdAnalyticsRequest {
            ad_id: campaign.ads[0].id.clone(),
            timeframe: "1h".into(),
        })
        .await
        .expect("ad analytics")
        .into_inner()
        .analytics;
    assert_eq!(ads.len(), 1);
    assert_eq!(
        (ads[0].click_count, ads[0].last_hour, ads[0].impressions),
        (CLICKS, CLICKS, SERVES)
    );
    let top = analytics
        .top_campaigns(pb::TopCampaignsRequest {
            rank_by: pb::RankBy::Clicks as i32,
            ..Default::default()
        })
        .await
        .expect("top")
        .into_inner()
        .campaigns;
    assert!(
        top.iter()
            .any(|row| row.campaign_id == campaign.id && row.clicks == CLICKS)
    );

    // Bad input names the field.
    for (request, field) in [
        (
            pb::GetCampaignAnalyticsRequest {
                campaign_id: campaign.id.clone(),
                start_date: "2026-02-01".into(),
                end_date: "2026-01-01".into(),
            },
            "end_date:",
        ),
        (
            pb::GetCampaignAnalyticsRequest {
                campaign_id: campaign.id.clone(),
                start_date: "2024-01-01".into(),
                end_date: "2026-01-01".into(),
            },
            "end_date:",
        ),
        (
            pb::GetCampaignAnalyticsRequest {
                campaign_id: campaign.id.clone(),
                start_date: "01/02/2026".into(),
                end_date: String::new(),
            },
            "start_date:",
        ),
    ] {
        let error = analytics
            .get_campaign_analytics(request)
            .await
            .expect_err("bad");
        assert_eq!(error.code(), Code::InvalidArgument);
        assert!(error.message().starts_with(field), "{}", error.message());
    }
    let error = analytics
        .get_campaign_analytics(pb::GetCampaignAnalyticsRequest {
            campaign_id: "no-such-campaign".into(),
            ..Default::default()
        })
        .await
        .expect_err("unknown");
    assert_eq!(error.code(), Code::NotFound);
    let error = analytics
        .get_ad_analytics(pb::GetAdAnalyticsRequest {
            ad_id: String::new(),
            timeframe: "2w".into(),
        })
        .await
        .expect_err("bad timeframe");
    assert!(error.message().starts_with("timeframe:"));
}

/// An impression and a click for `campaign` at `time`.
fn events(campaign: &str, serial: usize, time: i64, spend: i64) -> [pb::AdEvent; 2] {
    let impression_id = format!("{campaign}-imp-{serial}");
    let base = pb::AdEvent {
        time: Some(timestamp(time)),
        user_id: format!("user-{serial}"),
        campaign_id: campaign.into(),
        ad_id: format!("{campaign}-ad"),
        placement_id: "home".into(),
        impression_id: impression_id.clone(),
        ..Default::default()
    };
    [
        pb::AdEvent {
            // The ad-server's impressions carry their impression id as event
            // id; other publishers' may not: both are found for clicks.
            event_id: if serial.is_multiple_of(2) {
                impression_id.clone()
            } else {
                format!("{impression_id}-i")
            },
            event_type: pb::EventType::Impression as i32,
            bid_price: spend * 1000,
            spend,
            ..base.clone()
        },
        pb::AdEvent {
            event_id: format!("{impression_id}-c"),
            event_type: pb::EventType::Click as i32,
            time: Some(timestamp(time + 1_000)),
            ..base
        },
    ]
}

async fn ingest_status(client: &mut Analytics) -> Option<pb::IngestStatus> {
    Some(
        client
            .get_ingest_status(pb::GetIngestStatusRequest {})
            .await
            .ok()?
            .into_inner(),
    )
}

async fn wait_for_counted(client: &Analytics, expected: u64) -> pb::IngestStatus {
    eventually("every unique event counted", PATIENCE, || {
        let mut client = client.clone();
        async move {
            let status = ingest_status(&mut client).await?;
            (status.events_counted >= expected && status.lag == 0 && status.pending == 0)
                .then_some(status)
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicates_and_out_of_order_events_count_once_in_their_own_day() {
    let data = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", data.path().join("analytics.db").display());
    let database = Database::connect_and_migrate(&url, 2).await.expect("db");
    let stream = Arc::new(SqlEventStream::new(database.clone()));
    count_duplicates_and_out_of_order_events(stream, vec![("ADMESH_DATABASE__URL", url)]).await;
}

/// The cluster profile: PostgreSQL takes batches without `ON CONFLICT`
/// first and records a batch with a duplicate again, skipping it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicates_and_out_of_order_events_count_once_in_their_own_day_on_postgres() {
    let postgres = support::TestPostgres::create().await;
    let stream_key = format!("admesh:test-events:{}", uuid::Uuid::new_v4().simple());
    let redis = Redis::connect(&support::redis_url()).await.expect("redis");
    let stream = Arc::new(RedisEventStream::with_key(redis, &stream_key));
    count_duplicates_and_out_of_order_events(
        stream,
        vec![
            ("ADMESH_DATABASE__URL", postgres.url.clone()),
            ("ADMESH_REDIS__URL", support::redis_url()),
            ("ADMESH_REDIS__EVENTS_STREAM", stream_key),
        ],
    )
    .await;
    postgres.drop_database().await;
}

async fn count_duplicates_and_out_of_order_events(
    stream: Arc<dyn EventStream>,
    environment: Vec<(&str, String)>,
) {
    let day = 86_400_000;
    let today = now_millis() / day * day;
    // Published out of order: today first, then yesterday's last minute;
    // then everything again (a redelivery) and a click whose impression is
    // three days older than the attribution window allows.
    let mut published = Vec::new();
    published.extend(events("ooo", 1, today + 60_000, 900));
    published.extend(events("ooo", 2, today - 60_000, 800));
    stream.append(&published).await.expect("append");
    stream.append(&published).await.expect("append again");
    let [_, mut stale_click] = events("ooo", 3, today - 3 * day, 0);
    stale_click.impression_id = "ooo-imp-2".into();
    stream.append(&[stale_click]).await.expect("append stale");
    // An event of no known type is skipped, not counted as a click.
    let [mut unknown, _] = events("ooo", 4, today, 0);
    unknown.event_type = 9;
    stream
        .append(&[unknown])
        .await
        .expect("append unknown type");

    let (_service, address) = spawn_service(
        "analytics-service",
        "ADMESH_ANALYTICS__LISTEN",
        &environment,
    );
    support::wait_until_serving(address).await;
    let client = AnalyticsServiceClient::new(channel(address));
    let status = wait_for_counted(&client, 5).await;
    assert_eq!(status.events_counted, 5);
    assert_eq!(status.duplicates_dropped, 4);
    assert_eq!(status.unattributed_clicks, 1);

    let analytics = client
        .clone()
        .get_campaign_analytics(pb::GetCampaignAnalyticsRequest {
            campaign_id: "ooo".into(),
            ..Default::default()
        })
        .await
        .expect("analytics")
        .into_inner();
    let summary = analytics.summary.expect("summary");
    assert_eq!(
        (
            summary.total_impressions,
            summary.total_clicks,
            summary.total_spend
        ),
        (2, 2, 1_700)
    );
    assert_eq!(summary.cpm, 850_000);
    let days: Vec<(u64, u64, i64)> = analytics
        .daily_metrics
        .iter()
        .map(|row| (row.impressions, row.clicks, row.spend))
        .collect();
    assert_eq!(days.len(), 7, "one row per day, zero rows included");
    assert_eq!(days[5], (1, 1, 800), "yesterday's events in yesterday");
    assert_eq!(days[6], (1, 1, 900));

    // Per-ad rolling windows (minute and hour aggregates) in this dialect:
    // a click and its impression three days, five hours and ten minutes ago.
    let now = now_millis();
    let mut windowed = Vec::new();
    for (serial, ago) in [(20, 3 * day), (21, 5 * 3_600_000), (22, 10 * 60_000)] {
        windowed.extend(events("win", serial, now - ago, 100));
    }
    stream.append(&windowed).await.expect("append windowed");
    wait_for_counted(&client, 11).await;
    for (timeframe, clicks, impressions) in [("1h", 1, 1), ("24h", 2, 2), ("7d", 3, 3)] {
        let ads = client
            .clone()
            .get_ad_analytics(pb::GetAdAnalyticsRequest {
                ad_id: "win-ad".into(),
                timeframe: timeframe.into(),
            })
            .await
            .expect("ad analytics")
            .into_inner()
            .analytics;
        assert_eq!(ads.len(), 1, "{timeframe}");
        assert_eq!(
            (
                ads[0].click_count,
                ads[0].last_hour,
                ads[0].last_day,
                ads[0].impressions
            ),
            (clicks, 1, 2, impressions),
            "{timeframe}"
        );
    }
}

/// A cluster-profile analytics-service process on `postgres` and its own
/// stream key.
fn cluster_replica(postgres: &str, stream_key: &str) -> (support::Process, std::net::SocketAddr) {
    spawn_service(
        "analytics-service",
        "ADMESH_ANALYTICS__LISTEN",
        &[
            ("ADMESH_DATABASE__URL", postgres.to_string()),
            ("ADMESH_REDIS__URL", support::redis_url()),
            ("ADMESH_REDIS__EVENTS_STREAM", stream_key.to_string()),
            ("ADMESH_ANALYTICS__CLAIM_IDLE_MS", "500".to_string()),
            ("ADMESH_ANALYTICS__BATCH_SIZE", "200".to_string()),
        ],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_and_a_kill_9_mid_batch_count_every_event_exactly_once() {
    let postgres = support::TestPostgres::create().await;
    let database = Database::connect_and_migrate(&postgres.url, 2)
        .await
        .expect("pg");
    let stream_key = format!("admesh:test-events:{}", uuid::Uuid::new_v4().simple());
    let redis = Redis::connect(&support::redis_url()).await.expect("redis");
    let stream: Arc<dyn EventStream> = Arc::new(RedisEventStream::with_key(redis, &stream_key));

    let (mut first, first_address) = cluster_replica(&postgres.url, &stream_key);
    let (_second, second_address) = cluster_replica(&postgres.url, &stream_key);
    support::wait_until_serving(first_address).await;
    support::wait_until_serving(second_address).await;

    const SERIALS: usize = 3_000;
    let now = now_millis();
    let all: Vec<pb::AdEvent> = (0..SERIALS)
        .flat_map(|serial| {
            events(
                if serial % 2 == 0 { "even" } else { "odd" },
                serial,
                now,
                1_000,
            )
        })
        .collect();
    // Half now; kill one replica while it works; the rest, some twice.
    stream.append(&all[..all.len() / 2]).await.expect("append");
    let client = AnalyticsServiceClient::new(channel(second_address));
    eventually("counting has started", PATIENCE, || {
        let mut client = client.clone();
        async move { (ingest_status(&mut client).await?.events_counted > 0).then_some(()) }
    })
    .await;
    first.kill();
    stream.append(&all[all.len() / 2..]).await.expect("append");
    stream.append(&all[..500]).await.expect("redeliver some");
    let (_restarted, restarted_address) = cluster_replica(&postgres.url, &stream_key);
    support::wait_until_serving(restarted_address).await;

    let status = wait_for_counted(&client, all.len() as u64).await;
    assert_eq!(
        status.events_counted,
        all.len() as u64,
        "no event lost or counted twice"
    );
    let mut client = client;
    for campaign in ["even", "odd"] {
        let summary = campaign_totals(&mut client, campaign)
            .await
            .expect("summary");
        let expected = (SERIALS / 2) as u64;
        assert_eq!(
            (
                summary.total_impressions,
                summary.total_clicks,
                summary.total_spend
            ),
            (expected, expected, expected as i64 * 1_000),
            "{campaign}"
        );
    }
    let (logged,): (i64,) = admesh_common::on_pool!(&database, pool =>
        sqlx::query_as("SELECT COUNT(*) FROM events_log").fetch_one(pool).await)
    .expect("count log");
    assert_eq!(logged, all.len() as i64);
    database.close().await;
    postgres.drop_database().await;
}
