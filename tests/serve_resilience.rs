//! The ad-server against a bid-engine it cannot trust: a stand-in
//! bid-engine (real gRPC on a real socket) that stalls, fails or answers on
//! command. Serve answers no-fill well inside its 50 ms budget, passes the
//! caller's shorter deadline on, opens its breaker after 5 failures and
//! closes it again; and events buffered while Redis is away are flushed at
//! graceful shutdown.

mod support;

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicU8, Ordering},
    },
    time::{Duration, Instant},
};

use admesh_proto::{
    adserver::v1::{NoFillReason, ServeResponse, ad_server_client::AdServerClient},
    analytics::v1::{AdEvent, AdEventBatch, EventType},
    bid::v1::{
        self as bid,
        bid_engine_server::{BidEngine, BidEngineServer},
    },
};
use prost::Message;
use support::{
    CuttableProxy, Process, TestPostgres, channel, redis_url, serve_request, spawn_service,
    wait_until_serving,
};
use tonic::{Request, Response, Status};

const STALL: u8 = 0;
const FAIL: u8 = 1;
const NO_BID: u8 = 2;
const FILL: u8 = 3;

/// A bid-engine whose behaviour the test sets.
#[derive(Clone)]
struct StandIn {
    mode: Arc<AtomicU8>,
    campaign_id: String,
    /// `tmax_ms` and `grpc-timeout` of the last bid request.
    last_deadline: Arc<Mutex<Option<(u32, String)>>>,
}

#[tonic::async_trait]
impl BidEngine for StandIn {
    async fn bid(
        &self,
        request: Request<bid::BidRequest>,
    ) -> Result<Response<bid::BidResponse>, Status> {
        let timeout = request
            .metadata()
            .get("grpc-timeout")
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let request = request.into_inner();
        *self.last_deadline.lock().expect("lock") = Some((request.tmax_ms, timeout));
        match self.mode.load(Ordering::SeqCst) {
            STALL => {
                tokio::time::sleep(Duration::from_secs(30)).await;
                Err(Status::internal("stalled"))
            }
            FAIL => Err(Status::internal("the stand-in fails on purpose")),
            NO_BID => Ok(Response::new(bid::BidResponse {
                request_id: request.request_id,
                no_bid_reason: bid::NoBidReason::NoMatch as i32,
                ..Default::default()
            })),
            _ => Ok(Response::new(bid::BidResponse {
                request_id: request.request_id,
                filled: true,
                campaign_id: self.campaign_id.clone(),
                ad_id: "stand-in-ad".into(),
                bid_price: 2_000_000,
                spend: 2_000,
                ad_content: Some(bid::AdContent {
                    title: "Stand-in".into(),
                    image_url: "https://cdn.example.com/s.jpg".into(),
                    redirect_url: "https://example.com/s".into(),
                }),
                ..Default::default()
            })),
        }
    }
}

async fn start_stand_in(mode: u8) -> (StandIn, std::net::SocketAddr) {
    let stand_in = StandIn {
        mode: Arc::new(AtomicU8::new(mode)),
        campaign_id: format!("stand-in-{}", uuid::Uuid::new_v4().simple()),
        last_deadline: Arc::new(Mutex::new(None)),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    let service = BidEngineServer::new(stand_in.clone());
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
            .await
    });
    (stand_in, address)
}

fn ad_server(env: Vec<(&'static str, String)>) -> (Process, std::net::SocketAddr) {
    spawn_service("ad-server", "ADMESH_AD_SERVER__LISTEN", &env)
}

async fn timed_serve(
    client: &mut AdServerClient<tonic::transport::Channel>,
) -> (ServeResponse, Duration) {
    let started = Instant::now();
    let answer = client
        .serve(serve_request("user-1", "resilience"))
        .await
        .expect("serve answers, whatever the bid-engine does")
        .into_inner();
    (answer, started.elapsed())
}

/// Generous: the budget is 50 ms; this only catches "waited for the stall".
const WELL_INSIDE: Duration = Duration::from_millis(200);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalling_bid_engine_means_fast_no_fills_and_the_breaker_opens_and_recovers() {
    let (stand_in, bid_address) = start_stand_in(STALL).await;
    let data = tempfile::tempdir().expect("tempdir");
    let (_process, address) = ad_server(vec![
        (
            "ADMESH_DATABASE__URL",
            format!("sqlite://{}", data.path().join("a.db").display()),
        ),
        (
            "ADMESH_AD_SERVER__BID_ENGINE_URL",
            format!("http://{bid_address}"),
        ),
        ("ADMESH_AD_SERVER__BREAKER_COOLDOWN_MS", "300".into()),
    ]);
    wait_until_serving(address).await;
    let mut client = AdServerClient::new(channel(address));

    for attempt in 1..=5 {
        let (answer, took) = timed_serve(&mut client).await;
        assert!(!answer.filled);
        assert_eq!(
            answer.no_fill_reason,
            NoFillReason::Timeout as i32,
            "attempt {attempt}"
        );
        assert!(took < WELL_INSIDE, "a stalled bid took {took:?}");
    }
    let (answer, took) = timed_serve(&mut client).await;
    assert_eq!(answer.no_fill_reason, NoFillReason::CircuitOpen as i32);
    assert!(took < WELL_INSIDE, "an open breaker answered in {took:?}");

    // The bid-engine recovers; after the cool-down one trial closes the circuit.
    stand_in.mode.store(NO_BID, Ordering::SeqCst);
    support::eventually("the breaker closes", Duration::from_secs(10), || {
        let mut client = client.clone();
        async move {
            let (answer, _) = timed_serve(&mut client).await;
            (answer.no_fill_reason == NoFillReason::NoMatch as i32).then_some(())
        }
    })
    .await;
    let (answer, _) = timed_serve(&mut client).await;
    assert_eq!(
        answer.no_fill_reason,
        NoFillReason::NoMatch as i32,
        "closed"
    );

    // The caller's shorter deadline is what the bid-engine is given.
    let mut request = Request::new(serve_request("user-1", "resilience"));
    request.set_timeout(Duration::from_millis(30));
    client.serve(request).await.expect("serve");
    let (tmax_ms, grpc_timeout) = stand_in
        .last_deadline
        .lock()
        .expect("lock")
        .clone()
        .expect("the stand-in saw a bid");
    assert!(tmax_ms <= 30, "tmax_ms {tmax_ms}");
    assert!(
        !grpc_timeout.is_empty(),
        "the bid call carries a grpc-timeout"
    );
    client
        .serve(serve_request("user-1", "resilience"))
        .await
        .expect("serve");
    let (tmax_ms, _) = stand_in
        .last_deadline
        .lock()
        .expect("lock")
        .clone()
        .expect("seen");
    assert_eq!(tmax_ms, 50, "without a caller deadline the bound is 50 ms");

    // Errors count like timeouts.
    stand_in.mode.store(FAIL, Ordering::SeqCst);
    for _ in 0..5 {
        let (answer, _) = timed_serve(&mut client).await;
        assert_eq!(answer.no_fill_reason, NoFillReason::UpstreamError as i32);
    }
    let (answer, _) = timed_serve(&mut client).await;
    assert_eq!(answer.no_fill_reason, NoFillReason::CircuitOpen as i32);

    // Every no-fill is counted by its reason.
    let metrics = reqwest::get(format!("http://{address}/metrics"))
        .await
        .expect("scrape")
        .text()
        .await
        .expect("metrics text");
    for line in [
        r#"admesh_serve_total{result="no_fill",reason="NO_FILL_REASON_TIMEOUT"} 5"#,
        r#"admesh_serve_total{result="no_fill",reason="NO_FILL_REASON_UPSTREAM_ERROR"} 5"#,
        r#"admesh_serve_total{result="fill",reason=""} 0"#,
    ] {
        assert!(metrics.contains(line), "{line} missing from\n{metrics}");
    }
}

/// XRANGE's answer: (entry id, [(field, value)]).
type StreamEntries = Vec<(String, Vec<(String, Vec<u8>)>)>;

/// Impression events of `campaign_id` in the Redis stream.
async fn impressions_in_stream(campaign_id: &str) -> Vec<AdEvent> {
    let mut connection = support::redis_connection().await;
    let entries: StreamEntries = redis::cmd("XRANGE")
        .arg(admesh_common::events::STREAM_KEY)
        .arg("-")
        .arg("+")
        .query_async(&mut connection)
        .await
        .expect("XRANGE");
    entries
        .into_iter()
        .flat_map(|(_, fields)| fields)
        .filter(|(name, _)| name == "b")
        .filter_map(|(_, payload)| AdEventBatch::decode(payload.as_slice()).ok())
        .flat_map(|batch| batch.events)
        .filter(|event| {
            event.campaign_id == campaign_id && event.event_type == EventType::Impression as i32
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_buffered_while_redis_is_away_are_flushed_at_shutdown() {
    let (stand_in, bid_address) = start_stand_in(FILL).await;
    let redis_target = redis_url()
        .trim_start_matches("redis://")
        .parse()
        .expect("TEST_REDIS_URL is redis://host:port");
    let proxy = CuttableProxy::start(redis_target).await;
    proxy.restore();
    let postgres = TestPostgres::create().await;
    let (mut process, address) = ad_server(vec![
        ("ADMESH_DATABASE__URL", postgres.url.clone()),
        ("ADMESH_REDIS__URL", format!("redis://{}", proxy.address)),
        (
            "ADMESH_AD_SERVER__BID_ENGINE_URL",
            format!("http://{bid_address}"),
        ),
    ]);
    wait_until_serving(address).await;
    let mut client = AdServerClient::new(channel(address));

    let mut impression_ids = Vec::new();
    for _ in 0..3 {
        let (answer, _) = timed_serve(&mut client).await;
        assert!(answer.filled);
        impression_ids.push(answer.impression_id);
    }
    support::eventually(
        "events reach the Redis stream",
        Duration::from_secs(10),
        || async { (impressions_in_stream(&stand_in.campaign_id).await.len() == 3).then_some(()) },
    )
    .await;

    // Redis goes away: serving goes on, events wait in the buffer.
    proxy.cut();
    for _ in 0..20 {
        let (answer, took) = timed_serve(&mut client).await;
        assert!(answer.filled, "serving does not wait for the event stream");
        assert!(took < WELL_INSIDE, "a fill took {took:?} with Redis away");
        impression_ids.push(answer.impression_id);
    }
    process.send_sigterm();
    proxy.restore();
    assert!(process.wait_exit(Duration::from_secs(30)).success());

    let mut published: Vec<String> = impressions_in_stream(&stand_in.campaign_id)
        .await
        .into_iter()
        .map(|event| event.impression_id)
        .collect();
    // At-least-once: a retried append may repeat an event (analytics
    // de-duplicates by event id); none may be missing.
    published.sort();
    published.dedup();
    impression_ids.sort();
    assert_eq!(
        published, impression_ids,
        "every impression reached the stream"
    );
    postgres.drop_database().await;
}
