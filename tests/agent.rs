//! The agent-service against the real mesh (`admesh up`, real sockets):
//! commands change exactly what they say, dry runs change nothing, roles
//! decide who may change state, every attempt is audited, and the CLI and
//! the REST edge reach it.

mod support;

use admesh_proto::{
    agent::v1::{
        CommandRequest, CommandStatus, ListActivityRequest, ListCommandHistoryRequest,
        ListSupportedCommandsRequest, agent_service_client::AgentServiceClient,
    },
    bid::v1::{ListCampaignsRequest, bid_engine_client::BidEngineClient},
    queue::v1::{
        self as pb, GetAdRequest, GetQueueConfigRequest, queue_service_client::QueueServiceClient,
    },
};
use support::{Mesh, channel};
use tonic::{Code, transport::Channel};

fn ad(title: &str, family: &str, priority: i32) -> pb::SubmitAdRequest {
    pb::SubmitAdRequest {
        title: title.into(),
        game_family: family.into(),
        call_to_action: "Play now".into(),
        priority,
        ..Default::default()
    }
}

/// A mesh whose queue keeps its jobs (no in-process processors).
async fn quiet_mesh() -> Mesh {
    let mesh = Mesh::start(&[
        ("ADMESH_QUEUE__EMBEDDED_PROCESSORS", "0".to_string()),
        (
            "ADMESH_ADMIN_PASSWORD",
            "agent-test-admin-password".to_string(),
        ),
    ]);
    for (name, _) in support::GRPC_SERVICES {
        support::wait_until_serving(mesh.address(name)).await;
    }
    mesh
}

fn agent(mesh: &Mesh) -> AgentServiceClient<Channel> {
    AgentServiceClient::new(channel(mesh.address("agent-service")))
}

fn queue(mesh: &Mesh) -> QueueServiceClient<Channel> {
    QueueServiceClient::new(channel(mesh.address("queue-service")))
}

/// A command as `role` (the metadata the edge sets).
async fn command(
    client: &mut AgentServiceClient<Channel>,
    text: &str,
    dry_run: bool,
    role: &str,
) -> Result<admesh_proto::agent::v1::CommandResponse, tonic::Status> {
    let mut request = tonic::Request::new(CommandRequest {
        command: text.into(),
        dry_run,
        use_fallback: false,
    });
    request
        .metadata_mut()
        .insert("x-admesh-role", role.parse().expect("metadata"));
    request.metadata_mut().insert(
        "x-admesh-user",
        format!("user:{role}").parse().expect("metadata"),
    );
    client
        .command(request)
        .await
        .map(tonic::Response::into_inner)
}

async fn priority_of(queue: &mut QueueServiceClient<Channel>, id: &str) -> i32 {
    queue
        .get_ad(GetAdRequest { ad_id: id.into() })
        .await
        .expect("get ad")
        .into_inner()
        .priority
}

fn number(result: &Option<prost_types::Struct>, key: &str) -> f64 {
    match result
        .as_ref()
        .and_then(|r| r.fields.get(key))
        .and_then(|v| v.kind.clone())
    {
        Some(prost_types::value::Kind::NumberValue(n)) => n,
        other => panic!("{key}: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_family_priority_change_changes_exactly_those_jobs_and_a_dry_run_nothing() {
    let mesh = quiet_mesh().await;
    let mut queue = queue(&mesh);
    let mut ids = Vec::new();
    for (title, family) in [
        ("Dragon raid", "RPG-Fantasy"),
        ("Elf quest", "RPG-Fantasy"),
        ("Orc siege", "RPG-Fantasy"),
        ("Castle rush", "Strategy"),
        ("Empire", "Strategy"),
    ] {
        let job = queue
            .submit_ad(ad(title, family, 2))
            .await
            .expect("submit")
            .into_inner();
        ids.push((job.ad_id, family));
    }
    let mut agent = agent(&mesh);
    let text = "Change priority to 5 for all ads in the RPG-Fantasy family";

    let dry = command(&mut agent, text, true, "operator")
        .await
        .expect("dry run");
    assert_eq!(dry.status, CommandStatus::DryRun as i32);
    let intent = dry.intent.as_ref().expect("intent");
    assert_eq!(intent.name, "change_priority");
    assert!(intent.mutating);
    assert_eq!(number(&dry.result, "adsModified"), 3.0, "{}", dry.message);
    assert!(dry.message.starts_with("Would change"), "{}", dry.message);
    for (id, _) in &ids {
        assert_eq!(
            priority_of(&mut queue, id).await,
            2,
            "a dry run changes nothing"
        );
    }

    let done = command(&mut agent, text, false, "operator")
        .await
        .expect("command");
    assert_eq!(done.status, CommandStatus::Executed as i32);
    assert_eq!(number(&done.result, "adsModified"), 3.0, "{}", done.message);
    assert_eq!(done.provider, "offline");
    for (id, family) in &ids {
        let expected = if *family == "RPG-Fantasy" { 5 } else { 2 };
        assert_eq!(priority_of(&mut queue, id).await, expected, "{family}");
    }

    // Family names are matched whatever their case; unknown ones are named.
    let lower = command(
        &mut agent,
        "set priority to 3 for the strategy family",
        false,
        "admin",
    )
    .await
    .expect("case-insensitive family");
    assert_eq!(number(&lower.result, "adsModified"), 2.0);
    let unknown = command(
        &mut agent,
        "set priority 4 for the Racing family",
        false,
        "admin",
    )
    .await
    .expect_err("unknown family");
    assert_eq!(unknown.code(), Code::FailedPrecondition);
    assert!(
        unknown.message().contains("RPG-Fantasy"),
        "{}",
        unknown.message()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewers_cannot_change_state_and_every_attempt_is_audited() {
    let mesh = quiet_mesh().await;
    let mut agent = agent(&mesh);
    let mut queue = queue(&mesh);
    let before = queue
        .get_queue_config(GetQueueConfigRequest {})
        .await
        .expect("config")
        .into_inner();

    let denied = command(&mut agent, "Set worker count to 9", false, "viewer")
        .await
        .expect_err("a viewer changes nothing");
    assert_eq!(denied.code(), Code::PermissionDenied);
    let anonymous = command(&mut agent, "Set worker count to 9", false, "")
        .await
        .expect_err("nor does an anonymous caller");
    assert_eq!(anonymous.code(), Code::PermissionDenied);
    let dry = command(&mut agent, "Set worker count to 9", true, "viewer")
        .await
        .expect("a viewer may dry-run");
    assert_eq!(dry.status, CommandStatus::DryRun as i32);
    let reads = command(&mut agent, "show the next 5 ads", false, "viewer")
        .await
        .expect("a viewer reads");
    assert_eq!(reads.intent.expect("intent").name, "show_next");
    let after = queue
        .get_queue_config(GetQueueConfigRequest {})
        .await
        .expect("config")
        .into_inner();
    assert_eq!(after.worker_count, before.worker_count);

    let changed = command(
        &mut agent,
        "scale processors to nine workers",
        false,
        "operator",
    )
    .await
    .expect("an operator changes it");
    assert!(changed.message.contains("9"), "{}", changed.message);
    let after = queue
        .get_queue_config(GetQueueConfigRequest {})
        .await
        .expect("config")
        .into_inner();
    assert_eq!(after.worker_count, 9);

    // Bad input: clear errors, nothing executed, still audited.
    for (text, needle) in [
        ("", "empty"),
        ("'; DROP TABLE ad_jobs; --", "closest supported commands"),
        ("show\u{7}the next ads", "control characters"),
    ] {
        let error = command(&mut agent, text, false, "admin")
            .await
            .expect_err(text);
        assert_eq!(error.code(), Code::InvalidArgument, "{text}");
        assert!(
            error.message().contains(needle),
            "{text}: {}",
            error.message()
        );
    }
    let long = "x".repeat(10_000);
    let error = command(&mut agent, &long, false, "admin")
        .await
        .expect_err("10 kB");
    assert_eq!(error.code(), Code::InvalidArgument);

    let history = agent
        .list_command_history(ListCommandHistoryRequest { limit: 50 })
        .await
        .expect("history")
        .into_inner()
        .commands;
    assert_eq!(history.len(), 9, "every attempt: {history:#?}");
    let statuses: Vec<i32> = history.iter().map(|c| c.status).collect();
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == CommandStatus::Rejected as i32)
            .count(),
        6,
        "two role refusals and four bad inputs"
    );
    let refused = history
        .iter()
        .find(|c| c.user == "user:viewer" && c.status == CommandStatus::Rejected as i32)
        .expect("the viewer's refusal");
    assert_eq!(
        refused.intent.as_ref().expect("intent").name,
        "set_worker_count"
    );
    assert!(
        refused.error.contains("operator or admin"),
        "{}",
        refused.error
    );
    assert!(history.iter().all(|c| c.provider == "offline"));
    assert!(history.iter().all(|c| c.command.chars().count() <= 1_000));

    // The commands show up in the activity log too.
    let activity = agent
        .list_activity(ListActivityRequest {
            service: "agent-service".into(),
            ..Default::default()
        })
        .await
        .expect("activity")
        .into_inner();
    assert_eq!(activity.total, 9);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn campaigns_queue_settings_and_reports_run_through_the_services() {
    let mesh = quiet_mesh().await;
    let mut agent = agent(&mesh);
    let mut bids = BidEngineClient::new(channel(mesh.address("bid-engine")));
    let campaigns = bids
        .list_campaigns(ListCampaignsRequest {
            page_size: 100,
            ..Default::default()
        })
        .await
        .expect("campaigns")
        .into_inner()
        .campaigns;
    let active = campaigns
        .iter()
        .find(|c| {
            c.status == admesh_proto::bid::v1::CampaignStatus::Active as i32 && c.name.contains(' ')
        })
        .expect("an active demo campaign with a space in its name");

    let dry = command(
        &mut agent,
        &format!("pause campaign {}", active.name),
        true,
        "operator",
    )
    .await
    .expect("dry pause");
    assert!(dry.message.starts_with("Would pause"), "{}", dry.message);
    let paused = command(
        &mut agent,
        &format!("Pause the {} campaign", active.name),
        false,
        "operator",
    )
    .await
    .expect("pause");
    assert!(paused.message.contains("paused"), "{}", paused.message);
    let now = bids
        .get_campaign(admesh_proto::bid::v1::GetCampaignRequest {
            id: active.id.clone(),
        })
        .await
        .expect("campaign")
        .into_inner();
    assert_eq!(
        now.status,
        admesh_proto::bid::v1::CampaignStatus::Paused as i32
    );
    command(
        &mut agent,
        &format!("resume \"{}\"", active.name),
        false,
        "operator",
    )
    .await
    .expect("resume");
    let missing = command(
        &mut agent,
        "pause campaign Nothing Like This",
        false,
        "operator",
    )
    .await
    .expect_err("unknown campaign");
    assert_eq!(missing.code(), Code::FailedPrecondition);

    let performance = command(
        &mut agent,
        &format!(
            "what is the CTR of campaign {} over the last 7 days?",
            active.name
        ),
        false,
        "viewer",
    )
    .await
    .expect("campaign performance");
    assert!(
        performance.message.contains("CTR"),
        "{}",
        performance.message
    );
    let top = command(
        &mut agent,
        "top 3 campaigns by clicks this week",
        false,
        "viewer",
    )
    .await
    .expect("top campaigns");
    assert_eq!(top.intent.expect("intent").name, "top_campaigns");

    for (text, intent) in [
        ("Enable starvation mode", "set_anti_starvation"),
        ("Set maximum wait time to 600 seconds", "set_max_wait"),
        ("Set batch size to 20", "set_batch_size"),
        (
            "What's the current queue distribution by priority?",
            "queue_distribution",
        ),
        ("Show queue performance summary", "performance_summary"),
        (
            "Generate performance report for the last hour",
            "performance_report",
        ),
        (
            "Show processing statistics by game family",
            "family_statistics",
        ),
        (
            "Recommend priority changes for better throughput",
            "recommend_priorities",
        ),
        ("Show capacity utilization report", "capacity_utilization"),
        ("Optimize queue for minimum wait time", "optimize_queue"),
        ("Find ads waiting longer than 10 minutes", "find_waiting"),
        ("Diagnose the mesh", "diagnose"),
        ("Show recent activity", "recent_activity"),
        ("help", "help"),
    ] {
        let answer = command(&mut agent, text, false, "operator")
            .await
            .unwrap_or_else(|status| panic!("{text}: {status:?}"));
        assert_eq!(answer.intent.expect("intent").name, intent, "{text}");
        assert!(!answer.message.is_empty(), "{text}");
    }
    let config = queue(&mesh)
        .get_queue_config(GetQueueConfigRequest {})
        .await
        .expect("config")
        .into_inner();
    assert_eq!((config.default_max_wait_time, config.batch_size), (600, 20));

    let supported = agent
        .list_supported_commands(ListSupportedCommandsRequest {})
        .await
        .expect("supported")
        .into_inner()
        .commands;
    assert!(supported.len() >= 20);
    assert!(supported.iter().all(|c| !c.examples.is_empty()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_and_the_rest_edge_reach_the_agent_with_the_callers_role() {
    let mesh = quiet_mesh().await;
    let mut queue = queue(&mesh);
    queue
        .submit_ad(ad("CLI ad", "Puzzle", 3))
        .await
        .expect("submit");
    let output = std::process::Command::new(support::admesh_bin())
        .args([
            "agent",
            "show the next 5 ads",
            "--url",
            &mesh.url("agent-service"),
        ])
        .output()
        .expect("admesh agent");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("CLI ad"), "{stdout}");

    let http = reqwest::Client::new();
    let edge = format!("http://{}", mesh.address("edge"));
    let admin = support::edge_login(&http, &edge, "admin", "agent-test-admin-password").await;
    let created = http
        .post(format!("{edge}/api/v1/auth/users"))
        .bearer_auth(&admin)
        .body(r#"{"username":"vic","password":"a-long-viewer-password","role":"viewer"}"#)
        .send()
        .await
        .expect("create viewer");
    assert_eq!(created.status(), 201);
    let viewer = support::edge_login(&http, &edge, "vic", "a-long-viewer-password").await;

    let change = r#"{"command":"Move all Puzzle ads to high priority"}"#;
    let refused = http
        .post(format!("{edge}/api/v1/agent/command"))
        .bearer_auth(&viewer)
        .body(change)
        .send()
        .await
        .expect("command");
    assert_eq!(refused.status(), 403);
    let done = http
        .post(format!("{edge}/api/v1/agent/command"))
        .bearer_auth(&admin)
        .body(change)
        .send()
        .await
        .expect("command");
    assert_eq!(done.status(), 200);
    let body: serde_json::Value = done.json().await.expect("json");
    assert_eq!(body["status"], "COMMAND_STATUS_EXECUTED");
    assert_eq!(body["intent"]["name"], "change_priority");
    assert_eq!(body["result"]["adsModified"], 1.0);
    assert!(body["commandId"].as_str().is_some());

    // The audit trail knows who asked, through the edge.
    let history: serde_json::Value = http
        .get(format!("{edge}/api/v1/agent/history?limit=5"))
        .bearer_auth(&viewer)
        .send()
        .await
        .expect("history")
        .json()
        .await
        .expect("json");
    let users: Vec<&str> = history["commands"]
        .as_array()
        .expect("commands")
        .iter()
        .filter_map(|c| c["user"].as_str())
        .collect();
    assert!(
        users.contains(&"user:admin") && users.contains(&"user:vic"),
        "{users:?}"
    );
}
