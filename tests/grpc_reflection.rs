//! Every service of `admesh up` answers the real grpcurl binary: `list`,
//! `describe` and `grpc.health.v1.Health/Check`, with no proto files; serves
//! Prometheus metrics on its gRPC port; and an RPC that is not built yet
//! answers UNIMPLEMENTED. The edge answers /health, /ready and JSON errors.

mod support;

use std::process::Command;

use support::{GRPC_SERVICES, Mesh};

fn grpcurl() -> String {
    std::env::var("GRPCURL_BIN")
        .expect("GRPCURL_BIN is not set: run the suite with scripts/test, which installs grpcurl")
}

fn run_grpcurl(args: &[&str]) -> (bool, String) {
    let output = Command::new(grpcurl())
        .args(args)
        .output()
        .expect("run grpcurl");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpcurl_lists_describes_and_health_checks_every_service() {
    let mesh = Mesh::start(&[]);
    for (name, grpc_service) in GRPC_SERVICES {
        let address = mesh.address(name).to_string();
        support::wait_until_serving(mesh.address(name)).await;

        let (ok, listed) = run_grpcurl(&["-plaintext", &address, "list"]);
        assert!(ok, "{name}: grpcurl list failed: {listed}");
        for expected in [
            *grpc_service,
            "grpc.health.v1.Health",
            "grpc.reflection.v1alpha.ServerReflection",
            "grpc.reflection.v1.ServerReflection",
        ] {
            assert!(
                listed.lines().any(|l| l.trim() == expected),
                "{name}: `list` lacks {expected}:\n{listed}"
            );
        }

        let (ok, described) = run_grpcurl(&["-plaintext", &address, "describe", grpc_service]);
        assert!(ok, "{name}: grpcurl describe failed: {described}");
        assert!(
            described.contains(&format!("{grpc_service} is a service")),
            "{described}"
        );
        assert!(
            described.matches("rpc ").count() >= 3,
            "{name}: too few RPCs described:\n{described}"
        );

        let (ok, health) = run_grpcurl(&["-plaintext", &address, "grpc.health.v1.Health/Check"]);
        assert!(ok, "{name}: health check failed: {health}");
        assert!(health.contains("\"SERVING\""), "{name}: {health}");

        let (ok, health) = run_grpcurl(&[
            "-plaintext",
            "-d",
            &format!("{{\"service\":\"{grpc_service}\"}}"),
            &address,
            "grpc.health.v1.Health/Check",
        ]);
        assert!(
            ok && health.contains("\"SERVING\""),
            "{name}: per-service health: {health}"
        );
    }

    // Messages are described from reflection too, with the seeds' JSON names.
    let queue = mesh.address("queue-service").to_string();
    // Reflection describes the health service too.
    let (ok, health) = run_grpcurl(&["-plaintext", &queue, "describe", "grpc.health.v1.Health"]);
    assert!(ok && health.contains("rpc Check"), "{health}");
    let (ok, message) = run_grpcurl(&[
        "-plaintext",
        &queue,
        "describe",
        "admesh.queue.v1.SubmitAdRequest",
    ]);
    assert!(
        ok && message.contains("game_family") && message.contains("target_audience"),
        "{message}"
    );

    // grpcurl calls an RPC from reflection alone, with the seeds' JSON names.
    let (ok, answer) = run_grpcurl(&[
        "-plaintext",
        "-d",
        r#"{"title":"Epic RPG Adventure","gameFamily":"RPG-Fantasy","targetAudience":["18-34"],"priority":5}"#,
        &queue,
        "admesh.queue.v1.QueueService/SubmitAd",
    ]);
    assert!(ok && answer.contains("\"JOB_STATUS_QUEUED\""), "{answer}");

    // The agent lists its commands; an unknown method is UNIMPLEMENTED.
    let agent = mesh.address("agent-service").to_string();
    let (ok, answer) = run_grpcurl(&[
        "-plaintext",
        "-d",
        "{}",
        &agent,
        "admesh.agent.v1.AgentService/ListSupportedCommands",
    ]);
    assert!(ok && answer.contains("change_priority"), "{answer}");
    let (ok, answer) = run_grpcurl(&[
        "-plaintext",
        "-d",
        "{}",
        &agent,
        "admesh.agent.v1.AgentService/NoSuchMethod",
    ]);
    assert!(!ok, "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_edge_health_answer_over_http() {
    let mut mesh = Mesh::start(&[]);
    let bid_engine = mesh.address("bid-engine");
    support::wait_until_serving(bid_engine).await;
    let http = reqwest::Client::new();

    // Prometheus scrapes the gRPC port over HTTP/1.1.
    let metrics = http
        .get(format!("http://{bid_engine}/metrics"))
        .send()
        .await
        .expect("scrape");
    assert_eq!(metrics.status(), 200);
    let text = metrics.text().await.expect("body");
    assert!(
        text.contains(
            "admesh_grpc_server_requests_total{service=\"bid-engine\",method=\"Check\",code=\"OK\"}"
        ),
        "{text}"
    );
    assert!(
        text.contains("admesh_dependency_up{service=\"bid-engine\",dependency=\"sql\"} 1"),
        "{text}"
    );

    let edge = mesh.url("edge");
    for service in [
        "ad-server",
        "queue-service",
        "analytics-service",
        "agent-service",
    ] {
        support::wait_until_serving(mesh.address(service)).await;
    }
    let health: serde_json::Value = http
        .get(format!("{edge}/health"))
        .send()
        .await
        .expect("health")
        .json()
        .await
        .expect("json");
    assert_eq!(health["status"], "healthy", "{health}");
    assert_eq!(health["services"]["bid-engine"], "serving", "{health}");
    let ready = http
        .get(format!("{edge}/ready"))
        .send()
        .await
        .expect("ready");
    assert_eq!(ready.status(), 200);

    let trace_id = "0af7651916cd43dd8448eb211c80319c";
    let missing = http
        .get(format!("{edge}/api/v1/not-a-route"))
        .header("x-request-id", "req-test-1")
        .header("traceparent", format!("00-{trace_id}-b7ad6b7169203331-01"))
        .send()
        .await
        .expect("request");
    assert_eq!(missing.status(), 404);
    assert_eq!(missing.headers()["x-request-id"], "req-test-1");
    let body: serde_json::Value = missing.json().await.expect("json error body");
    assert_eq!(body["error"], "NOT_FOUND");
    assert_eq!(body["requestId"], "req-test-1");

    // The JSON log line of that request carries its request and trace ids.
    let logged = mesh.process.wait_for_stdout(|line: &str| {
        let log: serde_json::Value = serde_json::from_str(line).ok()?;
        (log["message"] == "request refused" && log["request_id"] == "req-test-1").then_some(log)
    });
    assert_eq!(logged["trace_id"], trace_id, "{logged}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admesh_up_seeds_demo_campaigns_and_stops_gracefully_on_sigterm() {
    let mut mesh = Mesh::start(&[]);
    support::wait_until_serving(mesh.address("bid-engine")).await;
    let status = mesh.process.terminate();
    assert!(status.success(), "exit status {status}");
    let stderr = mesh.process.stdout().join("\n");
    assert!(stderr.contains("demo campaigns inserted"), "{stderr}");
}
