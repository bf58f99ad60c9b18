//! The cluster profile on one machine, every part its own OS process on
//! loopback ports: real PostgreSQL and Redis; two each of bid-engine,
//! queue-service and analytics-service; three ad-processors; one
//! ad-server and one edge, which balance over the replicas. Serves, clicks
//! and job submissions go through the edge's REST API. Then one replica of
//! each kind is killed with SIGKILL, the traffic goes on, and the same
//! holds: no budget overspent, every job processed exactly once, analytics
//! totals exact.

mod support;

use std::time::Duration;

use admesh_proto::bid::v1::{BidRequest, NoBidReason, bid_engine_client::BidEngineClient};
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::{Process, TestPostgres, redis_url, spawn_service, wait_until_serving};

/// First price: every impression costs bid / 1000.
const BID: i64 = 2_000_000;
const SPEND: i64 = 2_000;
/// The daily budget covers exactly this many impressions.
const BUDGET_IMPRESSIONS: i64 = 50;
const PLACEMENT: &str = "cluster-placement";
const ADMIN_PASSWORD: &str = "cluster-test-admin-password";

struct Rest {
    base: String,
    http: reqwest::Client,
    token: String,
}

impl Rest {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.body(body.to_string());
        }
        match request.send().await {
            Ok(response) => {
                let status = response.status();
                let body = response.json().await.unwrap_or(Value::Null);
                (status, body)
            }
            Err(error) => (
                StatusCode::BAD_GATEWAY,
                json!({"transport": error.to_string()}),
            ),
        }
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.call(reqwest::Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }
}

/// What the traffic achieved, to compare with what the mesh recorded.
#[derive(Debug, Default)]
struct Tally {
    fills: i64,
    clicks: i64,
    budget_exhausted: bool,
    jobs: Vec<String>,
}

/// `count` serves through the edge (distinct users), clicking every other
/// fill by following its tracking URL.
async fn serve_and_click(rest: &Rest, tally: &mut Tally, count: usize, round: &str) {
    for n in 0..count {
        let (status, body) = rest
            .get(&format!(
                "/serve?userId={round}-user-{n}&placementId={PLACEMENT}&countryCode=US&deviceType=mobile"
            ))
            .await;
        if status != StatusCode::OK {
            continue;
        }
        if body["filled"] != true {
            if body["noFillReason"] == "NO_FILL_REASON_BUDGET_EXHAUSTED" {
                tally.budget_exhausted = true;
            }
            continue;
        }
        tally.fills += 1;
        if tally.fills % 2 == 0 {
            let url = body["clickTrackingUrl"].as_str().expect("click url");
            let path = &url[url.find("/v1/click").expect("click path")..];
            let response = rest
                .http
                .get(format!("{}{path}", rest.base))
                .send()
                .await
                .expect("click");
            assert_eq!(response.status(), StatusCode::FOUND, "the click redirects");
            tally.clicks += 1;
        }
    }
}

/// Submits `count` jobs through the edge, retrying a submission that did
/// not reach a live replica.
async fn submit_jobs(rest: &Rest, tally: &mut Tally, count: usize, round: &str) {
    for n in 0..count {
        let body = json!({
            "title": format!("Cluster ad {round}-{n}"),
            "gameFamily": "Cluster",
            "callToAction": "Play now",
            "priority": 1 + (n % 5),
        });
        let id = support::eventually("a job submission", Duration::from_secs(30), || async {
            let (status, answer) = rest.post("/api/v1/ads", body.clone()).await;
            (status == StatusCode::CREATED).then(|| answer["adId"].as_str().map(str::to_owned))?
        })
        .await;
        tally.jobs.push(id);
    }
}

/// Polls a bid-engine replica with a floor above the bid (nothing is
/// charged) until it knows the campaign.
async fn wait_until_known(address: std::net::SocketAddr) {
    let bidder = BidEngineClient::new(support::channel(address));
    support::eventually(
        "the campaign reaches the replica",
        Duration::from_secs(30),
        || {
            let mut bidder = bidder.clone();
            async move {
                let answer = bidder
                    .bid(BidRequest {
                        user_id: "probe".into(),
                        placement_id: PLACEMENT.into(),
                        country_code: "US".into(),
                        device_type: 1,
                        floor_cpm: BID + 1,
                        ..Default::default()
                    })
                    .await
                    .ok()?
                    .into_inner();
                (answer.no_bid_reason == NoBidReason::BelowFloor as i32).then_some(())
            }
        },
    )
    .await;
}

/// Every job reached COMPLETED with exactly one `completed` audit event,
/// and no job anywhere in the database completed twice.
async fn assert_each_job_processed_once(
    rest: &Rest,
    tally: &Tally,
    database_url: &str,
    logs: &dyn Fn() -> String,
) {
    for id in &tally.jobs {
        let mut last = Value::Null;
        let completed = tokio::time::timeout(Duration::from_secs(90), async {
            loop {
                let (status, job) = rest.get(&format!("/api/v1/ads/{id}")).await;
                if status == StatusCode::OK && job["status"] == "JOB_STATUS_COMPLETED" {
                    return;
                }
                last = job;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await;
        if completed.is_err() {
            let (_, events) = rest.get(&format!("/api/v1/ads/{id}/events")).await;
            panic!(
                "job {id} never completed: {last}\naudit trail: {events}\nlogs:\n{}",
                logs()
            );
        }
        // A call may still meet the killed replica once before the edge's
        // balancer drops it; and a finished job is readable from Redis a
        // moment before its SQL audit row commits.
        let events = support::eventually(
            "the job's completion in its audit trail",
            Duration::from_secs(30),
            || async {
                let (status, events) = rest.get(&format!("/api/v1/ads/{id}/events")).await;
                let completed = events["events"]
                    .as_array()
                    .is_some_and(|all| all.iter().any(|event| event["kind"] == "completed"));
                (status == StatusCode::OK && completed).then_some(events)
            },
        )
        .await;
        let completions = events["events"]
            .as_array()
            .expect("events")
            .iter()
            .filter(|event| event["kind"] == "completed")
            .count();
        assert_eq!(completions, 1, "job {id}: {events}");
    }
    let pool = sqlx::PgPool::connect(database_url).await.expect("postgres");
    let twice: Vec<(String,)> = sqlx::query_as(
        "SELECT ad_id FROM job_events WHERE kind = 'completed' GROUP BY ad_id HAVING COUNT(*) > 1",
    )
    .fetch_all(&pool)
    .await
    .expect("query");
    assert!(twice.is_empty(), "completed twice: {twice:?}");
    pool.close().await;
}

async fn assert_budget_and_analytics(rest: &Rest, tally: &Tally, campaign_id: &str) {
    // Each fill charged once: the spend is exactly the fills' (and never
    // past the budget). Spend is written behind, so it is polled.
    let expected_spend = tally.fills * SPEND;
    assert!(
        tally.fills <= BUDGET_IMPRESSIONS,
        "more fills than the budget pays for: {tally:?}"
    );
    support::eventually(
        "spend matches the fills",
        Duration::from_secs(30),
        || async {
            let (_, campaign) = rest.get(&format!("/v1/campaigns/{campaign_id}")).await;
            let spent: i64 = campaign["spentToday"].as_str()?.parse().ok()?;
            assert!(spent <= BUDGET_IMPRESSIONS * SPEND, "overspent: {campaign}");
            (spent == expected_spend).then_some(())
        },
    )
    .await;

    let today = admesh_common::time::timestamp(admesh_common::time::now_millis()).to_string();
    let today = &today[..10];
    let path = format!("/analytics/campaign/{campaign_id}?startDate={today}&endDate={today}");
    let expected = (
        tally.fills.to_string(),
        tally.clicks.to_string(),
        expected_spend.to_string(),
    );
    let mut last = Value::Null;
    let exact = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let (status, analytics) = rest.get(&path).await;
            if status == StatusCode::OK {
                let summary = &analytics["summary"];
                let got = (
                    summary["totalImpressions"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                    summary["totalClicks"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                    summary["totalSpend"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                );
                if got == expected {
                    return;
                }
                last = analytics;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert!(
        exact.is_ok(),
        "analytics never matched {expected:?}: {last}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_of_processes_keeps_its_guarantees_through_sigkills() {
    let postgres = TestPostgres::create().await;
    let unique = uuid::Uuid::new_v4().simple().to_string();
    let shared = vec![
        ("ADMESH_DATABASE__URL", postgres.url.clone()),
        ("ADMESH_REDIS__URL", redis_url()),
        (
            "ADMESH_REDIS__QUEUE_PREFIX",
            format!("{{admesh:queue:{unique}}}"),
        ),
        (
            "ADMESH_REDIS__EVENTS_STREAM",
            format!("admesh:events:{unique}"),
        ),
        ("ADMESH_BID_ENGINE__AUCTION", "first_price".to_string()),
        ("ADMESH_QUEUE__LEASE_TIMEOUT_SECS", "3".to_string()),
        ("ADMESH_ANALYTICS__CLAIM_IDLE_MS", "1000".to_string()),
    ];
    let with = |extra: &[(&'static str, String)]| {
        let mut env = shared.clone();
        env.extend(extra.iter().cloned());
        env
    };
    let url = |address: std::net::SocketAddr| format!("http://{address}");

    let (bid_a, bid_a_address) = spawn_service("bid-engine", "ADMESH_BID_ENGINE__LISTEN", &shared);
    let (mut bid_b, bid_b_address) =
        spawn_service("bid-engine", "ADMESH_BID_ENGINE__LISTEN", &shared);
    let (queue_a, queue_a_address) =
        spawn_service("queue-service", "ADMESH_QUEUE__LISTEN", &shared);
    let (mut queue_b, queue_b_address) =
        spawn_service("queue-service", "ADMESH_QUEUE__LISTEN", &shared);
    let (analytics_a, analytics_a_address) =
        spawn_service("analytics-service", "ADMESH_ANALYTICS__LISTEN", &shared);
    let (mut analytics_b, analytics_b_address) =
        spawn_service("analytics-service", "ADMESH_ANALYTICS__LISTEN", &shared);
    let bid_engines = format!("{},{}", url(bid_a_address), url(bid_b_address));
    let (ad_server, ad_address) = spawn_service(
        "ad-server",
        "ADMESH_AD_SERVER__LISTEN",
        &with(&[
            ("ADMESH_AD_SERVER__BID_ENGINE_URL", bid_engines.clone()),
            ("ADMESH_AD_SERVER__CLICK_SECRET", format!("secret-{unique}")),
            // Loaded CI machines: a slow bid must not turn into a no-fill.
            ("ADMESH_AD_SERVER__BID_TIMEOUT_MS", "5000".to_string()),
        ]),
    );
    let (edge, edge_address) = spawn_service(
        "edge",
        "ADMESH_EDGE__LISTEN",
        &with(&[
            ("ADMESH_ADMIN_PASSWORD", ADMIN_PASSWORD.to_string()),
            ("ADMESH_EDGE__AD_SERVER_URL", url(ad_address)),
            ("ADMESH_EDGE__BID_ENGINE_URL", bid_engines),
            (
                "ADMESH_EDGE__QUEUE_URL",
                format!("{},{}", url(queue_a_address), url(queue_b_address)),
            ),
            (
                "ADMESH_EDGE__ANALYTICS_URL",
                format!("{},{}", url(analytics_a_address), url(analytics_b_address)),
            ),
        ]),
    );
    for address in [
        bid_a_address,
        bid_b_address,
        queue_a_address,
        queue_b_address,
        analytics_a_address,
        analytics_b_address,
        ad_address,
    ] {
        wait_until_serving(address).await;
    }
    // Two processors on the first queue-service, one on the second (a
    // processor acknowledges to the replica that leased it the job).
    let processor = |queue: std::net::SocketAddr, id: &str| {
        Process::spawn(
            &[
                "processor",
                "--queue-url",
                &url(queue),
                "--processor-id",
                id,
                "--work-ms",
                "100",
            ],
            &[],
        )
    };
    let processor_1 = processor(queue_a_address, "p1");
    let mut processor_2 = processor(queue_a_address, "p2");
    let _processor_3 = processor(queue_b_address, "p3");

    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let base = format!("http://{edge_address}");
    let token = support::edge_login(&http, &base, "admin", ADMIN_PASSWORD).await;
    let rest = Rest { base, http, token };

    let (status, campaign) = rest
        .post(
            "/v1/campaigns",
            json!({
                "name": format!("Cluster {unique}"),
                "advertiserId": "adv-cluster",
                "bidPrice": BID.to_string(),
                "dailyBudget": (BUDGET_IMPRESSIONS * SPEND).to_string(),
                "targeting": {"placements": [PLACEMENT]},
                "ads": [{"title": "Cluster ad", "imageUrl": "https://cdn.example.com/c.jpg", "redirectUrl": "https://example.com/cluster"}]
            }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{campaign}");
    let campaign_id = campaign["id"].as_str().expect("id").to_string();
    wait_until_known(bid_a_address).await;
    wait_until_known(bid_b_address).await;

    // Everything up: traffic through the edge.
    let mut tally = Tally::default();
    serve_and_click(&rest, &mut tally, 30, "before").await;
    submit_jobs(&rest, &mut tally, 30, "before").await;
    assert!(tally.fills > 0, "{tally:?}");
    assert_budget_and_analytics(&rest, &tally, &campaign_id).await;

    // One replica of each kind dies without warning, a processor too.
    bid_b.kill();
    queue_b.kill();
    analytics_b.kill();
    processor_2.kill();

    // The survivors carry on until the budget runs out.
    submit_jobs(&rest, &mut tally, 30, "after").await;
    let mut round = 0;
    while !tally.budget_exhausted {
        round += 1;
        assert!(round <= 20, "the budget never ran out: {tally:?}");
        serve_and_click(&rest, &mut tally, 20, &format!("after-{round}")).await;
    }
    assert_eq!(
        tally.fills, BUDGET_IMPRESSIONS,
        "every impression the budget pays for, no more"
    );
    assert_budget_and_analytics(&rest, &tally, &campaign_id).await;
    let prefix = format!("{{admesh:queue:{unique}}}");
    let logs = || {
        let redis_state = (|| -> redis::RedisResult<String> {
            let client = redis::Client::open(redis_url())?;
            let mut connection = client.get_connection()?;
            let leases: Vec<(String, f64)> = redis::cmd("ZRANGE")
                .arg(format!("{prefix}:leases"))
                .arg(0)
                .arg(-1)
                .arg("WITHSCORES")
                .query(&mut connection)?;
            Ok(format!(
                "leases now={} {leases:?}",
                admesh_common::time::now_millis()
            ))
        })()
        .unwrap_or_else(|error| error.to_string());
        std::iter::once(redis_state)
            .chain(
                [&queue_a, &processor_1]
                    .iter()
                    .flat_map(|process| process.stdout())
                    .filter(|line| !line.contains("\"INFO\"")),
            )
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_each_job_processed_once(&rest, &tally, &postgres.url, &logs).await;

    drop((bid_a, queue_a, analytics_a, ad_server, edge, processor_1));
    postgres.drop_database().await;
}
