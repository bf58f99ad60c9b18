//! The agent's LLM provider against a local server that speaks the
//! OpenAI chat-completions protocol (the one thing here we cannot run for
//! real is a hosted model): a valid tool call is used; a malformed one, an
//! unknown tool, an HTTP error or a timeout each fall back to the offline
//! parser, which says so; the API key is sent and never logged.

mod support;

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use admesh_proto::agent::v1::{
    CommandRequest, ListCommandHistoryRequest, agent_service_client::AgentServiceClient,
};
use axum::{Json, Router, extract::State, http::HeaderMap, routing::post};
use serde_json::{Value, json};

#[derive(Clone, Default)]
struct Model {
    calls: Arc<AtomicUsize>,
    tools_seen: Arc<AtomicUsize>,
}

fn tool_call(name: &str, arguments: &str) -> Value {
    json!({
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
            "role": "assistant", "content": null,
            "tool_calls": [{"id": "call_1", "type": "function",
                            "function": {"name": name, "arguments": arguments}}]
        }}]
    })
}

/// Answers by what the operator wrote, so each test case picks a behaviour.
async fn completions(
    State(model): State<Model>,
    headers: HeaderMap,
    Json(request): Json<Value>,
) -> Result<Json<Value>, axum::http::StatusCode> {
    model.calls.fetch_add(1, Ordering::SeqCst);
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some("Bearer test-key") {
        return Err(axum::http::StatusCode::UNAUTHORIZED);
    }
    if request["model"] != "test-model" {
        return Err(axum::http::StatusCode::BAD_REQUEST);
    }
    let tools = request["tools"].as_array().map_or(0, Vec::len);
    model.tools_seen.store(tools, Ordering::SeqCst);
    let text = request["messages"][1]["content"]
        .as_str()
        .unwrap_or_default();
    if text.contains("(slow)") {
        // Longer than the agent's 500 ms timeout: the behaviour under test.
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    if text.contains("(broken)") {
        return Err(axum::http::StatusCode::INTERNAL_SERVER_ERROR);
    }
    Ok(Json(if text.contains("(malformed)") {
        tool_call("show_next", "{count: three")
    } else if text.contains("(unknown)") {
        tool_call("launch_rockets", "{}")
    } else if text.contains("(invalid)") {
        tool_call("set_worker_count", r#"{"workers": 100000}"#)
    } else if text.contains("(prose)") {
        json!({"choices": [{"index": 0, "message": {"role": "assistant", "content": "I think you want seven workers."}}]})
    } else {
        tool_call("set_worker_count", r#"{"workers": 7}"#)
    }))
}

async fn command(
    client: &mut AgentServiceClient<tonic::transport::Channel>,
    text: &str,
    use_fallback: bool,
) -> admesh_proto::agent::v1::CommandResponse {
    let mut request = tonic::Request::new(CommandRequest {
        command: text.into(),
        dry_run: false,
        use_fallback,
    });
    request
        .metadata_mut()
        .insert("x-admesh-role", "operator".parse().expect("metadata"));
    client
        .command(request)
        .await
        .unwrap_or_else(|status| panic!("{text}: {status:?}"))
        .into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tool_calls_are_used_when_valid_and_the_offline_parser_answers_otherwise() {
    let model = Model::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    let app = Router::new()
        .route("/v1/chat/completions", post(completions))
        .with_state(model.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let mut mesh = support::Mesh::start(&[
        ("ADMESH_AGENT__LLM_URL", format!("http://{address}/v1")),
        ("ADMESH_AGENT__LLM_MODEL", "test-model".to_string()),
        ("ADMESH_AGENT__LLM_API_KEY", "test-key".to_string()),
        ("ADMESH_AGENT__LLM_TIMEOUT_MS", "500".to_string()),
        ("ADMESH_QUEUE__EMBEDDED_PROCESSORS", "0".to_string()),
    ]);
    support::wait_until_serving(mesh.address("agent-service")).await;
    support::wait_until_serving(mesh.address("queue-service")).await;
    let mut agent = AgentServiceClient::new(support::channel(mesh.address("agent-service")));

    // Valid: the model's tool call is the intent.
    let used = command(&mut agent, "could we get seven workers going", false).await;
    assert_eq!(used.provider, "llm");
    assert_eq!(used.fallback_reason, "");
    assert_eq!(
        used.intent.as_ref().expect("intent").name,
        "set_worker_count"
    );
    assert!(used.message.contains("to 7"), "{}", used.message);
    assert_eq!(
        model.tools_seen.load(Ordering::SeqCst),
        admesh_agent_service::intent::CATALOGUE.len(),
        "one tool per intent"
    );

    // Each failure falls back to the offline parser and says why.
    for (text, intent, why) in [
        (
            "show the next 3 ads (malformed)",
            "show_next",
            "not valid JSON",
        ),
        (
            "show queue distribution (unknown)",
            "queue_distribution",
            "not a supported tool",
        ),
        (
            "set worker count to 4 (invalid)",
            "set_worker_count",
            "workers must be",
        ),
        ("diagnose the mesh (prose)", "diagnose", "no tool call"),
        (
            "show queue performance summary (broken)",
            "performance_summary",
            "HTTP 500",
        ),
        ("diagnose the mesh (slow)", "diagnose", "within 500 ms"),
    ] {
        let answer = command(&mut agent, text, false).await;
        assert_eq!(answer.provider, "offline", "{text}");
        assert_eq!(
            answer.intent.as_ref().expect("intent").name,
            intent,
            "{text}"
        );
        assert!(
            answer.fallback_reason.contains(why),
            "{text}: {}",
            answer.fallback_reason
        );
    }
    let worker_count = command(&mut agent, "set worker count to 4 (invalid)", false).await;
    assert!(
        worker_count.message.contains("to 4"),
        "the offline reading ran"
    );

    // Asking for the offline parser skips the model.
    let calls = model.calls.load(Ordering::SeqCst);
    let offline = command(&mut agent, "show the next 2 ads", true).await;
    assert_eq!(offline.provider, "offline");
    assert_eq!(model.calls.load(Ordering::SeqCst), calls);

    // The audit table records the provider of each command.
    let history = agent
        .list_command_history(ListCommandHistoryRequest { limit: 20 })
        .await
        .expect("history")
        .into_inner()
        .commands;
    assert_eq!(history.iter().filter(|c| c.provider == "llm").count(), 1);
    assert_eq!(history.len(), 9);

    // The key went to the model and nowhere else.
    let stdout = mesh.process.stdout().join("\n");
    let stderr = mesh.process.stderr().join("\n");
    assert!(!stdout.contains("test-key") && !stderr.contains("test-key"));
    assert!(mesh.process.terminate().success());
}
