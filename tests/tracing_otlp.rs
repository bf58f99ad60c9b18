//! One trace across two gRPC hops, exported over OTLP to a real receiver:
//! a caller's W3C `traceparent` reaches the agent-service (hop 1), whose
//! diagnose calls the bid-engine's health service (hop 2) in another
//! process; both processes export their spans with the caller's trace id and
//! the right parent links.

mod support;

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
    trace_service_server::{TraceService, TraceServiceServer},
};
use tonic_health::pb::health_check_response::ServingStatus;

#[derive(Clone, Debug)]
struct ReceivedSpan {
    service: String,
    name: String,
    trace_id: String,
    span_id: String,
    parent_span_id: String,
}

#[derive(Clone, Default)]
struct Receiver {
    spans: Arc<Mutex<Vec<ReceivedSpan>>>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = self
            .spans
            .lock()
            .map_err(|_| tonic::Status::internal("poisoned"))?;
        for resource_spans in request.into_inner().resource_spans {
            let service = resource_spans
                .resource
                .iter()
                .flat_map(|r| r.attributes.iter())
                .find(|kv| kv.key == "service.name")
                .and_then(|kv| kv.value.as_ref())
                .and_then(|v| match &v.value {
                    Some(
                        opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(s),
                    ) => Some(s.clone()),
                    _ => None,
                })
                .unwrap_or_default();
            for scope_spans in resource_spans.scope_spans {
                for span in scope_spans.spans {
                    spans.push(ReceivedSpan {
                        service: service.clone(),
                        name: span.name,
                        trace_id: hex(&span.trace_id),
                        span_id: hex(&span.span_id),
                        parent_span_id: hex(&span.parent_span_id),
                    });
                }
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

/// A real OTLP/gRPC receiver on a loopback port.
async fn start_receiver() -> (Receiver, std::net::SocketAddr) {
    let receiver = Receiver::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind receiver");
    let receiver_address = listener.local_addr().expect("address");
    let server = receiver.clone();
    tokio::spawn(async move {
        let _ = tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(server))
            .serve_with_incoming(tokio_stream_from(listener))
            .await;
    });
    (receiver, receiver_address)
}

impl Receiver {
    /// Waits until `pick` finds what it needs among the received spans.
    async fn wait_for<T>(&self, mut pick: impl FnMut(&[ReceivedSpan]) -> Option<T>) -> T {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let spans = self.spans.lock().map(|s| s.clone()).unwrap_or_default();
            if let Some(found) = pick(&spans) {
                return found;
            }
            assert!(
                Instant::now() < deadline,
                "spans never arrived; received: {spans:#?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rest_call_is_the_parent_of_its_grpc_spans() {
    let (receiver, receiver_address) = start_receiver().await;
    let data = tempfile::tempdir().expect("tempdir");
    let env = |db: &str| {
        vec![
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                format!("http://{receiver_address}"),
            ),
            ("OTEL_BSP_SCHEDULE_DELAY", "100".to_string()),
            (
                "ADMESH_DATABASE__URL",
                format!("sqlite://{}", data.path().join(db).display()),
            ),
        ]
    };
    let (mut bid_engine, bid_address) =
        support::spawn_service("bid-engine", "ADMESH_BID_ENGINE__LISTEN", &env("bid.db"));
    let mut edge_env = env("edge.db");
    edge_env.push((
        "ADMESH_EDGE__BID_ENGINE_URL",
        format!("http://{bid_address}"),
    ));
    edge_env.push((
        "ADMESH_ADMIN_PASSWORD",
        "tracing-admin-password".to_string(),
    ));
    let (mut edge, edge_address) = support::spawn_service("edge", "ADMESH_EDGE__LISTEN", &edge_env);
    support::wait_for_health(bid_address, ServingStatus::Serving).await;

    let http = reqwest::Client::new();
    let token = support::edge_login(
        &http,
        &format!("http://{edge_address}"),
        "admin",
        "tracing-admin-password",
    )
    .await;
    let token = token.as_str();

    let trace_id = "5bf92f3577b34da6a3ce929d0e0e4737";
    let caller_span_id = "10f067aa0ba902b8";
    let listed = http
        .get(format!("http://{edge_address}/v1/campaigns?pageSize=5"))
        .bearer_auth(token)
        .header("traceparent", format!("00-{trace_id}-{caller_span_id}-01"))
        .send()
        .await
        .expect("list campaigns");
    assert_eq!(listed.status(), reqwest::StatusCode::OK);

    let (rest_span, grpc_span) = receiver
        .wait_for(|spans| {
            let rest = spans.iter().find(|s| {
                s.service == "edge" && s.name == "GET /v1/campaigns" && s.trace_id == trace_id
            })?;
            let grpc = spans.iter().find(|s| {
                s.service == "bid-engine"
                    && s.name == "/admesh.bid.v1.BidEngine/ListCampaigns"
                    && s.trace_id == trace_id
            })?;
            Some((rest.clone(), grpc.clone()))
        })
        .await;
    assert_eq!(
        rest_span.parent_span_id, caller_span_id,
        "the REST span is the caller's child"
    );
    assert_eq!(
        grpc_span.parent_span_id, rest_span.span_id,
        "the gRPC span is the REST call's child"
    );
    assert!(edge.terminate().success());
    assert!(bid_engine.terminate().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_spans_two_grpc_hops_and_reaches_the_otlp_receiver() {
    let (receiver, receiver_address) = start_receiver().await;

    let data = tempfile::tempdir().expect("tempdir");
    let common_env = |db: &str| {
        vec![
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                format!("http://{receiver_address}"),
            ),
            ("OTEL_BSP_SCHEDULE_DELAY", "100".to_string()),
            (
                "ADMESH_DATABASE__URL",
                format!("sqlite://{}", data.path().join(db).display()),
            ),
        ]
    };
    let (mut bid_engine, bid_address) = support::spawn_service(
        "bid-engine",
        "ADMESH_BID_ENGINE__LISTEN",
        &common_env("bid.db"),
    );
    let mut agent_env = common_env("agent.db");
    agent_env.push((
        "ADMESH_AGENT__BID_ENGINE_URL",
        format!("http://{bid_address}"),
    ));
    let (mut agent, agent_address) =
        support::spawn_service("agent-service", "ADMESH_AGENT__LISTEN", &agent_env);
    support::wait_for_health(bid_address, ServingStatus::Serving).await;
    support::wait_for_health(agent_address, ServingStatus::Serving).await;

    // The caller's own trace context, as a browser or gateway would send it.
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span_id = "00f067aa0ba902b7";
    let mut request = tonic::Request::new(admesh_proto::agent::v1::DiagnoseRequest {});
    request.metadata_mut().insert(
        "traceparent",
        format!("00-{trace_id}-{caller_span_id}-01")
            .parse()
            .expect("metadata"),
    );
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{agent_address}"))
        .expect("endpoint")
        .connect_lazy();
    let diagnosis = admesh_proto::agent::v1::agent_service_client::AgentServiceClient::new(channel)
        .diagnose(request)
        .await
        .expect("diagnose")
        .into_inner();
    let bid_health = diagnosis
        .services
        .iter()
        .find(|s| s.service == "bid-engine")
        .expect("bid-engine checked");
    assert_eq!(bid_health.status, "serving");

    let (diagnose_span, health_span) = receiver
        .wait_for(|spans| {
            let diagnose = spans.iter().find(|s| {
                s.service == "agent-service"
                    && s.name == "/admesh.agent.v1.AgentService/Diagnose"
                    && s.trace_id == trace_id
            })?;
            let health = spans.iter().find(|s| {
                s.service == "bid-engine"
                    && s.name == "/grpc.health.v1.Health/Check"
                    && s.trace_id == trace_id
            })?;
            Some((diagnose.clone(), health.clone()))
        })
        .await;
    assert_eq!(
        diagnose_span.parent_span_id, caller_span_id,
        "hop 1 is a child of the caller"
    );
    assert_eq!(
        health_span.parent_span_id, diagnose_span.span_id,
        "hop 2 is a child of hop 1"
    );

    assert!(agent.terminate().success());
    assert!(bid_engine.terminate().success());
}

fn tokio_stream_from(
    listener: tokio::net::TcpListener,
) -> impl futures_util::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    futures_util::stream::unfold(listener, |listener| async move {
        let accepted = listener.accept().await.map(|(stream, _)| stream);
        Some((accepted, listener))
    })
}
