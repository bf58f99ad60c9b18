//! The REST edge against the real mesh (`admesh up`, real sockets): the
//! seeds' REST examples, transcoding, errors, the auth matrix, rate limits,
//! the live feed and the OpenAPI document (checked by a real validator).

mod support;

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use support::Mesh;

const ADMIN_PASSWORD: &str = "edge-test-admin-password";

/// A REST client of one edge.
struct Edge {
    base: String,
    http: reqwest::Client,
}

/// An answer: status, headers and JSON body (`Null` when empty).
struct Answer {
    status: StatusCode,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }

    /// Asserts the JSON error shape and returns its code.
    fn error_code(&self) -> &str {
        assert!(
            self.body["message"].is_string() && self.body["requestId"].is_string(),
            "not an error body: {} {}",
            self.status,
            self.body
        );
        assert_eq!(
            Some(self.body["requestId"].as_str().unwrap_or_default()),
            self.header("x-request-id"),
            "the body's request id is the header's"
        );
        self.body["error"].as_str().unwrap_or_default()
    }
}

impl Edge {
    fn new(address: std::net::SocketAddr) -> Self {
        Self {
            base: format!("http://{address}"),
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("client"),
        }
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Vec<u8>>,
    ) -> Answer {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body);
        }
        let response = request.send().await.expect("edge answers");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.expect("body");
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        Answer {
            status,
            headers,
            body,
        }
    }

    async fn get(&self, path: &str, token: Option<&str>) -> Answer {
        self.send(Method::GET, path, token, None).await
    }

    async fn post(&self, path: &str, token: Option<&str>, body: Value) -> Answer {
        self.send(
            Method::POST,
            path,
            token,
            Some(body.to_string().into_bytes()),
        )
        .await
    }

    async fn login(&self, username: &str, password: &str) -> String {
        let answer = self
            .post(
                "/auth/login",
                None,
                json!({"username": username, "password": password}),
            )
            .await;
        assert_eq!(answer.status, StatusCode::OK, "login: {}", answer.body);
        answer.body["token"].as_str().expect("token").to_string()
    }

    /// A user with `role`, logged in.
    async fn user_token(&self, admin: &str, username: &str, role: &str) -> String {
        let password = format!("{username}-long-password");
        let created = self
            .post(
                "/api/v1/auth/users",
                Some(admin),
                json!({"username": username, "password": password, "role": role}),
            )
            .await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
        self.login(username, &password).await
    }
}

fn start_mesh(extra: &[(&str, String)]) -> (Mesh, Edge) {
    let mut env = vec![("ADMESH_ADMIN_PASSWORD", ADMIN_PASSWORD.to_string())];
    env.extend(extra.iter().cloned());
    let mesh = Mesh::start(&env);
    let edge = Edge::new(mesh.address("edge"));
    (mesh, edge)
}

async fn wait_ready(edge: &Edge) {
    support::eventually("edge ready", support::STARTUP_TIMEOUT, || async {
        (edge.get("/ready", None).await.status == StatusCode::OK).then_some(())
    })
    .await;
}

/// A campaign on `placement` created through the edge; returns its id.
async fn create_campaign(mesh: &Mesh, edge: &Edge, token: &str, placement: &str) -> Value {
    let created = edge
        .post(
            "/v1/campaigns",
            Some(token),
            json!({
                "name": format!("Edge {placement}"),
                "advertiserId": "adv-edge",
                // Above every demo campaign's bid, so it wins its placement.
                "bidPrice": "20000000",
                "dailyBudget": "50000000",
                "targeting": {"placements": [placement], "deviceTypes": ["mobile", "DEVICE_TYPE_TABLET"]},
                "ads": [{
                    "title": "Edge ad",
                    "imageUrl": "https://cdn.example.com/edge.jpg",
                    "redirectUrl": "https://example.com/edge-landing"
                }]
            }),
        )
        .await;
    assert_eq!(
        created.status,
        StatusCode::CREATED,
        "{}\n{}",
        created.body,
        mesh.problems()
    );
    created.body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_rest_examples_work_through_the_edge() {
    let (mesh, edge) = start_mesh(&[]);
    wait_ready(&edge).await;
    let admin = edge.login("admin", ADMIN_PASSWORD).await;

    // Seed 000: create an ad → 201 with the queued job.
    let created = edge
        .post(
            "/api/v1/ads",
            Some(&admin),
            json!({
                "title": "Epic RPG Adventure",
                "gameFamily": "RPG-Fantasy",
                "targetAudience": ["18-34", "rpg-fans"],
                "priority": 5,
                "maxWaitTime": 600
            }),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    assert!(
        created
            .header("x-request-id")
            .is_some_and(|id| !id.is_empty())
    );
    let ad_id = created.body["adId"].as_str().expect("adId").to_string();
    assert_eq!(created.body["status"], "JOB_STATUS_QUEUED");
    assert_eq!(created.body["priority"], 5);
    assert_eq!(created.body["targetAudience"], json!(["18-34", "rpg-fans"]));
    assert!(
        created.body["createdAt"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z'))
    );
    assert!(
        created.body["version"].is_string(),
        "int64 renders as a string"
    );

    // Seed 000: status of one ad, batch, queue stats.
    let status = edge
        .get(&format!("/api/v1/ads/{ad_id}"), Some(&admin))
        .await;
    assert_eq!(status.status, StatusCode::OK, "{}", status.body);
    assert_eq!(status.body["adId"], ad_id.as_str());
    assert_eq!(status.body["gameFamily"], "RPG-Fantasy");
    let batch = edge
        .post(
            "/api/v1/ads/batch",
            Some(&admin),
            json!({"ads": [{"title": "Strategy Game Ad", "gameFamily": "Strategy", "targetAudience": ["25-45"], "priority": 3}]}),
        )
        .await;
    assert_eq!(batch.status, StatusCode::CREATED, "{}", batch.body);
    let stats = edge.get("/api/v1/ads/queue/stats", Some(&admin)).await;
    assert_eq!(stats.status, StatusCode::OK, "{}", stats.body);
    for field in [
        "total",
        "distribution",
        "averageWaitTime",
        "processingRate",
        "oldestWaitTime",
    ] {
        assert!(
            !stats.body[field].is_null(),
            "stats lack {field}: {}",
            stats.body
        );
    }

    // Seed 003: serve with the documented query, then click tracking.
    let campaign = create_campaign(&mesh, &edge, &admin, "placement-edge-1").await;
    let campaign_id = campaign["id"].as_str().expect("id").to_string();
    let served = edge
        .get(
            "/serve?userId=user-123&placementId=placement-edge-1&countryCode=US&deviceType=mobile",
            None,
        )
        .await;
    assert_eq!(served.status, StatusCode::OK, "{}", served.body);
    assert_eq!(served.body["filled"], true, "{}", served.body);
    assert_eq!(served.body["campaignId"], campaign_id.as_str());
    for field in [
        "adId",
        "title",
        "imageUrl",
        "redirectUrl",
        "bidPrice",
        "impressionId",
        "clickTrackingUrl",
    ] {
        assert!(
            served.body[field].is_string(),
            "serve lacks {field}: {}",
            served.body
        );
    }
    let click_url = served.body["clickTrackingUrl"].as_str().expect("url");
    let click_path = &click_url[click_url.find("/v1/click").expect("click path")..];
    let click = edge.get(click_path, None).await;
    assert_eq!(click.status, StatusCode::FOUND);
    assert_eq!(
        click.header("location"),
        Some("https://example.com/edge-landing")
    );
    let token = click_path.split("t=").nth(1).expect("token");
    let again = edge.post("/click", None, json!({"t": token})).await;
    assert_eq!(again.status, StatusCode::NO_CONTENT, "{}", again.body);
    let forged = edge
        .post("/click", None, json!({"t": format!("{token}x")}))
        .await;
    assert_eq!(forged.status, StatusCode::BAD_REQUEST);
    assert_eq!(forged.error_code(), "INVALID_ARGUMENT");

    // Seed 002: active ads (public), ad analytics by timeframe.
    let ads = edge.get("/api/v1/ads", None).await;
    assert_eq!(ads.status, StatusCode::OK, "{}", ads.body);
    assert!(
        ads.body["ads"]
            .as_array()
            .is_some_and(|ads| !ads.is_empty())
    );
    let ad_analytics = edge
        .get("/api/v1/ads/analytics?timeframe=24h", Some(&admin))
        .await;
    assert_eq!(ad_analytics.status, StatusCode::OK, "{}", ad_analytics.body);
    let bad_timeframe = edge
        .get("/api/v1/ads/analytics?timeframe=2y", Some(&admin))
        .await;
    assert_eq!(bad_timeframe.status, StatusCode::BAD_REQUEST);

    // Seed 003: campaign analytics over a date range; the impression and
    // click above show up (freshness is asserted in tests/analytics.rs).
    let today = admesh_common::time::timestamp(admesh_common::time::now_millis()).to_string();
    let today = &today[..10];
    let path = format!("/analytics/campaign/{campaign_id}?startDate={today}&endDate={today}");
    let analytics = support::eventually(
        "analytics of the click",
        Duration::from_secs(30),
        || async {
            let answer = edge.get(&path, Some(&admin)).await;
            (answer.status == StatusCode::OK && answer.body["summary"]["totalClicks"] == "1")
                .then_some(answer)
        },
    )
    .await;
    assert_eq!(analytics.body["campaignId"], campaign_id.as_str());
    assert_eq!(analytics.body["summary"]["totalImpressions"], "1");
    assert!(analytics.body["dailyMetrics"].is_array());
    let unknown = edge
        .get(
            &format!("/analytics/campaign/nope?startDate={today}&endDate={today}"),
            Some(&admin),
        )
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert_eq!(unknown.error_code(), "NOT_FOUND");

    // Seed 000: the agent's REST path.
    let command = edge
        .post(
            "/api/v1/agent/command",
            Some(&admin),
            json!({"command": "Change priority to 5 for all ads in the RPG-Fantasy family"}),
        )
        .await;
    assert_eq!(command.status, StatusCode::OK, "{}", command.body);
    assert!(command.body["commandId"].is_string());
    assert_eq!(command.body["status"], "COMMAND_STATUS_EXECUTED");
    assert_eq!(command.body["intent"]["name"], "change_priority");
    assert_eq!(command.body["result"]["gameFamily"], "RPG-Fantasy");
    assert_eq!(command.body["result"]["newPriority"], 5.0);
    assert!(command.body["result"]["adsModified"].is_number());

    // Health, readiness and metrics are public.
    assert_eq!(edge.get("/health", None).await.status, StatusCode::OK);
    assert_eq!(edge.get("/ready", None).await.status, StatusCode::OK);
    let metrics = edge.get("/metrics", None).await;
    assert_eq!(metrics.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transcoding_binds_paths_queries_nested_bodies_enums_and_int64() {
    let (mesh, edge) = start_mesh(&[]);
    wait_ready(&edge).await;
    let admin = edge.login("admin", ADMIN_PASSWORD).await;

    // body: "campaign" with nested messages, repeated enums written loosely.
    let campaign = create_campaign(&mesh, &edge, &admin, "placement-edge-2").await;
    let id = campaign["id"].as_str().expect("id");
    assert_eq!(campaign["bidPrice"], "20000000", "int64 as a string");
    assert_eq!(
        campaign["targeting"]["deviceTypes"],
        json!(["DEVICE_TYPE_MOBILE", "DEVICE_TYPE_TABLET"])
    );

    // PATCH with the id from the path ({campaign.id}) and the mask from the
    // query string.
    let patched = edge
        .send(
            Method::PATCH,
            &format!("/v1/campaigns/{id}?updateMask=bidPrice"),
            Some(&admin),
            Some(json!({"bidPrice": 3000000}).to_string().into_bytes()),
        )
        .await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.body);
    assert_eq!(patched.body["id"], id);
    assert_eq!(patched.body["bidPrice"], "3000000");

    // A path variable, an action with an empty body, a list filter by enum.
    let paused = edge
        .post(
            &format!("/v1/campaigns/{id}/pause"),
            Some(&admin),
            json!({}),
        )
        .await;
    assert_eq!(paused.status, StatusCode::OK, "{}", paused.body);
    assert_eq!(paused.body["status"], "CAMPAIGN_STATUS_PAUSED");
    let listed = edge
        .get("/v1/campaigns?status=paused&pageSize=10", Some(&admin))
        .await;
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.body);
    let campaigns = listed.body["campaigns"].as_array().expect("campaigns");
    assert!(campaigns.iter().any(|c| c["id"] == id), "{}", listed.body);
    assert!(
        campaigns
            .iter()
            .all(|c| c["status"] == "CAMPAIGN_STATUS_PAUSED"),
        "the enum filter holds: {}",
        listed.body
    );
    let fetched = edge.get(&format!("/v1/campaigns/{id}"), Some(&admin)).await;
    assert_eq!(fetched.body["status"], "CAMPAIGN_STATUS_PAUSED");

    // Unknown fields and wrong types are refused, naming the field.
    let unknown = edge
        .post(
            "/api/v1/ads",
            Some(&admin),
            json!({"title": "t", "gameFamily": "g", "priority": 1, "colour": "red"}),
        )
        .await;
    assert_eq!(unknown.status, StatusCode::BAD_REQUEST);
    assert!(
        unknown.body["message"]
            .as_str()
            .is_some_and(|m| m.contains("colour")),
        "{}",
        unknown.body
    );
    let mistyped = edge
        .post(
            "/api/v1/ads/batch",
            Some(&admin),
            json!({"ads": [{"title": "t", "priority": "high"}]}),
        )
        .await;
    assert_eq!(mistyped.status, StatusCode::BAD_REQUEST);
    assert!(
        mistyped.body["message"]
            .as_str()
            .is_some_and(|m| m.contains("ads[0].priority")),
        "{}",
        mistyped.body
    );
    // The service's own validation comes back as 400 naming the field.
    let invalid = edge
        .post(
            "/api/v1/ads",
            Some(&admin),
            json!({"title": "t", "gameFamily": "g", "priority": 9}),
        )
        .await;
    assert_eq!(invalid.status, StatusCode::BAD_REQUEST);
    assert!(
        invalid.body["message"]
            .as_str()
            .is_some_and(|m| m.contains("priority")),
        "{}",
        invalid.body
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_input_gets_4xx_never_5xx() {
    let (_mesh, edge) = start_mesh(&[("ADMESH_EDGE__MAX_BODY_BYTES", "4096".to_string())]);
    wait_ready(&edge).await;
    let admin = edge.login("admin", ADMIN_PASSWORD).await;
    let huge = format!("{{\"title\":\"{}\"}}", "x".repeat(10_000)).into_bytes();
    let cases: Vec<(Method, &str, Option<Vec<u8>>, u16)> = vec![
        (
            Method::POST,
            "/api/v1/ads",
            Some(b"{\"title\":".to_vec()),
            400,
        ),
        (Method::POST, "/api/v1/ads", Some(b"[]".to_vec()), 400),
        (
            Method::POST,
            "/api/v1/ads",
            Some(b"\"just a string\"".to_vec()),
            400,
        ),
        (
            Method::POST,
            "/api/v1/ads",
            Some(b"{\"title\": \"\xff\xfe\"}".to_vec()),
            400,
        ),
        (
            Method::POST,
            "/api/v1/ads",
            Some(b"{\"priority\": 1e400}".to_vec()),
            400,
        ),
        (
            Method::POST,
            "/api/v1/ads",
            Some(b"{\"priority\": 99999999999}".to_vec()),
            400,
        ),
        (Method::POST, "/api/v1/ads", Some(huge), 413),
        // Traversal in a path variable is just an id nobody has.
        (Method::GET, "/api/v1/ads/..%2F..%2Fetc%2Fpasswd", None, 0),
        (Method::GET, "/api/v1/ads/%ff", None, 400),
        (Method::GET, "/api/v1/ads/%zz", None, 400),
        (Method::GET, "/api/v1/queue/jobs?pageSize=-1", None, 400),
        (Method::GET, "/api/v1/queue/jobs?nonsense=1", None, 400),
        (
            Method::GET,
            "/serve?userId=u&placementId=p&deviceType=fridge",
            None,
            400,
        ),
        (Method::GET, "/serve?userId=%ff", None, 400),
        (Method::GET, "/nowhere", None, 404),
        (Method::DELETE, "/serve", None, 405),
        (Method::GET, "/api/v1/ads/queue/stats?x", None, 400),
    ];
    for (method, path, body, expected) in cases {
        let answer = edge.send(method.clone(), path, Some(&admin), body).await;
        if expected == 0 {
            assert!(
                answer.status.is_client_error(),
                "{method} {path}: {} {}",
                answer.status,
                answer.body
            );
        } else {
            assert_eq!(
                answer.status.as_u16(),
                expected,
                "{method} {path}: {}",
                answer.body
            );
        }
        answer.error_code();
    }
    // Still serving after all that.
    assert_eq!(edge.get("/health", None).await.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_decide_every_route_class() {
    let (_mesh, edge) = start_mesh(&[]);
    wait_ready(&edge).await;
    let admin = edge.login("admin", ADMIN_PASSWORD).await;
    let viewer = edge.user_token(&admin, "vera", "viewer").await;
    let operator = edge.user_token(&admin, "otto", "ROLE_OPERATOR").await;
    let key = edge
        .post(
            "/api/v1/auth/api-keys",
            Some(&admin),
            json!({"name": "ci", "role": "operator"}),
        )
        .await;
    assert_eq!(key.status, StatusCode::CREATED, "{}", key.body);
    let api_key = key.body["key"].as_str().expect("key").to_string();

    let callers: [(&str, Option<&str>); 5] = [
        ("anonymous", None),
        ("viewer", Some(&viewer)),
        ("operator", Some(&operator)),
        ("api key (operator)", Some(&api_key)),
        ("admin", Some(&admin)),
    ];
    let ad = json!({"title": "RBAC ad", "gameFamily": "Puzzle", "priority": 2});
    let user = |n: usize| json!({"username": format!("new-user-{n}"), "password": "a-long-enough-password", "role": "viewer"});
    // (route class, request, expected per caller in the order above)
    let mut n = 0;
    for (class, method, path, body, expected) in [
        (
            "public",
            Method::GET,
            "/serve?userId=u&placementId=p",
            None,
            [200, 200, 200, 200, 200],
        ),
        (
            "viewer",
            Method::GET,
            "/api/v1/queue/stats",
            None,
            [401, 200, 200, 200, 200],
        ),
        (
            "operator",
            Method::POST,
            "/api/v1/ads",
            Some(ad.clone()),
            [401, 403, 201, 201, 201],
        ),
        (
            "admin",
            Method::POST,
            "/api/v1/auth/users",
            Some(Value::Null),
            [401, 403, 403, 403, 201],
        ),
    ] {
        for ((who, token), status) in callers.iter().zip(expected) {
            n += 1;
            let body = match &body {
                Some(Value::Null) => Some(user(n).to_string().into_bytes()),
                Some(body) => Some(body.to_string().into_bytes()),
                None => None,
            };
            let answer = edge.send(method.clone(), path, *token, body).await;
            assert_eq!(
                answer.status.as_u16(),
                status,
                "{class} route as {who}: {}",
                answer.body
            );
            if status >= 400 {
                answer.error_code();
            }
        }
    }

    // Tampered, foreign and expired tokens are refused.
    let mut parts: Vec<String> = viewer.split('.').map(str::to_owned).collect();
    parts[2] = parts[2].chars().rev().collect();
    let tampered = parts.join(".");
    let foreign =
        admesh_edge::auth::tokens::TokenIssuer::new(b"not-the-key", Duration::from_secs(3600))
            .issue(
                &admesh_edge::auth::Identity {
                    subject: "user:admin".into(),
                    role: admesh_edge::auth::Role::Admin,
                },
                admesh_common::time::now_millis() / 1000,
            )
            .expect("token")
            .0;
    for token in [
        tampered.as_str(),
        foreign.as_str(),
        "amk_unknown_key",
        "garbage",
    ] {
        let answer = edge.get("/api/v1/queue/stats", Some(token)).await;
        assert_eq!(
            answer.status,
            StatusCode::UNAUTHORIZED,
            "{token}: {}",
            answer.body
        );
    }
    let wrong = edge
        .post(
            "/auth/login",
            None,
            json!({"username": "admin", "password": "wrong-password"}),
        )
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_tokens_are_refused() {
    let secret = "edge-test-signing-key";
    let (_mesh, edge) = start_mesh(&[("ADMESH_EDGE__JWT_SECRET", secret.to_string())]);
    wait_ready(&edge).await;
    let issuer =
        admesh_edge::auth::tokens::TokenIssuer::new(secret.as_bytes(), Duration::from_secs(60));
    let identity = admesh_edge::auth::Identity {
        subject: "user:admin".into(),
        role: admesh_edge::auth::Role::Admin,
    };
    let now = admesh_common::time::now_millis() / 1000;
    let (fresh, _) = issuer.issue(&identity, now).expect("token");
    let (expired, _) = issuer.issue(&identity, now - 3600).expect("token");
    assert_eq!(
        edge.get("/api/v1/queue/stats", Some(&fresh)).await.status,
        StatusCode::OK
    );
    let answer = edge.get("/api/v1/queue/stats", Some(&expired)).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert!(
        answer.body["message"]
            .as_str()
            .is_some_and(|m| m.contains("expired"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_past_a_rule_gets_429_with_headers() {
    let (_mesh, edge) = start_mesh(&[]);
    wait_ready(&edge).await;
    let admin = edge.login("admin", ADMIN_PASSWORD).await;
    let rule = edge
        .post(
            "/api/v1/observability/ratelimit/config",
            Some(&admin),
            json!({"name": "serve-burst", "scopeType": "route", "scopeId": "GET /serve", "refillRate": 0.01, "capacity": 3}),
        )
        .await;
    assert_eq!(rule.status, StatusCode::OK, "{}", rule.body);
    assert_eq!(rule.body["key"], "serve-burst:route:GET /serve");

    let mut statuses = Vec::new();
    let mut last = None;
    for _ in 0..5 {
        let answer = edge.get("/serve?userId=u&placementId=p", None).await;
        assert_eq!(answer.header("x-ratelimit-limit"), Some("3"));
        statuses.push(answer.status.as_u16());
        last = Some(answer);
    }
    assert_eq!(statuses, vec![200, 200, 200, 429, 429]);
    let last = last.expect("answer");
    assert_eq!(last.header("x-ratelimit-remaining"), Some("0"));
    assert!(
        last.header("retry-after")
            .and_then(|v| v.parse::<u64>().ok())
            .is_some_and(|s| s >= 1)
    );
    assert!(last.header("x-ratelimit-reset").is_some());
    assert_eq!(last.error_code(), "RESOURCE_EXHAUSTED");
    // Per client: an authenticated caller has its own bucket.
    let other = edge
        .get("/serve?userId=u&placementId=p", Some(&admin))
        .await;
    assert_eq!(other.status, StatusCode::OK);

    // Listed, then deleted by name + scope: the limit is gone.
    let listed = edge
        .get(
            "/api/v1/observability/ratelimit/config/list?name=serve-burst",
            Some(&admin),
        )
        .await;
    assert_eq!(
        listed.body["rules"].as_array().map(Vec::len),
        Some(1),
        "{}",
        listed.body
    );
    let bad = edge
        .post(
            "/api/v1/observability/ratelimit/config",
            Some(&admin),
            json!({"name": "bad", "scopeType": "route", "scopeId": "GET /nowhere", "refillRate": 1, "capacity": 1}),
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(
        bad.body["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("scope_id"))
    );
    let deleted = edge
        .send(
            Method::DELETE,
            "/api/v1/observability/ratelimit/config",
            Some(&admin),
            Some(
                json!({"name": "serve-burst", "scopeType": "route", "scopeId": "GET /serve"})
                    .to_string()
                    .into_bytes(),
            ),
        )
        .await;
    assert_eq!(deleted.body["deleted"], true, "{}", deleted.body);
    let free = edge.get("/serve?userId=u&placementId=p", None).await;
    assert_eq!(free.status, StatusCode::OK);
    assert_eq!(free.header("x-ratelimit-limit"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_feed_streams_job_campaign_and_queue_changes() {
    let (_mesh, edge) = start_mesh(&[]);
    wait_ready(&edge).await;
    let admin = edge.login("admin", ADMIN_PASSWORD).await;
    let unauthorised = edge.get("/api/v1/events", None).await;
    assert_eq!(unauthorised.status, StatusCode::UNAUTHORIZED);

    let mut feed = edge
        .http
        .get(format!("{}/api/v1/events?access_token={admin}", edge.base))
        .send()
        .await
        .expect("feed");
    assert_eq!(feed.status(), StatusCode::OK);
    assert_eq!(
        feed.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("text/event-stream")
    );
    // The feed starts from "now" once a subscriber is there; submit until
    // an event about one of our ads arrives.
    let mut submitted = Vec::new();
    let mut seen = String::new();
    let found = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let created = edge
                .post(
                    "/api/v1/ads",
                    Some(&admin),
                    json!({"title": "Feed ad", "gameFamily": "Feed", "priority": 4}),
                )
                .await;
            submitted.push(created.body["adId"].as_str().expect("adId").to_string());
            let chunk = tokio::time::timeout(Duration::from_secs(2), feed.chunk()).await;
            if let Ok(Ok(Some(bytes))) = chunk {
                seen.push_str(&String::from_utf8_lossy(&bytes));
                if seen.contains("event: job")
                    && submitted.iter().any(|id| seen.contains(id.as_str()))
                {
                    return;
                }
            }
        }
    })
    .await;
    assert!(
        found.is_ok(),
        "no job event for {submitted:?} in the feed: {seen}"
    );

    // A campaign change reaches the feed; queue stats come every 2 s.
    let campaigns = edge.get("/v1/campaigns?pageSize=1", Some(&admin)).await;
    let id = campaigns.body["campaigns"][0]["id"]
        .as_str()
        .expect("a demo campaign")
        .to_string();
    let paused = edge
        .post(
            &format!("/v1/campaigns/{id}/pause"),
            Some(&admin),
            json!({}),
        )
        .await;
    assert_eq!(paused.status, StatusCode::OK, "{}", paused.body);
    let both = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            if let Ok(Some(bytes)) = feed.chunk().await {
                seen.push_str(&String::from_utf8_lossy(&bytes));
            }
            let campaign = seen.contains("event: campaign") && seen.contains(id.as_str());
            if campaign && seen.contains("event: queue_stats") {
                return;
            }
        }
    })
    .await;
    assert!(both.is_ok(), "no campaign change or queue stats: {seen}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_answers_the_configured_origins_only() {
    let (_mesh, edge) = start_mesh(&[(
        "ADMESH_EDGE__CORS_ALLOWED_ORIGINS",
        r#"["https://ops.example.com"]"#.to_string(),
    )]);
    let preflight = |origin: &'static str| {
        edge.http
            .request(Method::OPTIONS, format!("{}/api/v1/ads", edge.base))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization, content-type",
            )
            .send()
    };
    let allowed = preflight("https://ops.example.com")
        .await
        .expect("preflight");
    assert_eq!(
        allowed
            .headers()
            .get("access-control-allow-origin")
            .and_then(|v| v.to_str().ok()),
        Some("https://ops.example.com")
    );
    let other = preflight("https://evil.example.net")
        .await
        .expect("preflight");
    assert!(other.headers().get("access-control-allow-origin").is_none());
    // Simple requests carry the header and expose the request id.
    let health = edge
        .http
        .get(format!("{}/health", edge.base))
        .header("origin", "https://ops.example.com")
        .send()
        .await
        .expect("health");
    let exposed = health
        .headers()
        .get("access-control-expose-headers")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(exposed.contains("x-request-id"), "{exposed}");
    assert!(health.headers().get("x-request-id").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_passes_a_real_validator() {
    let (_mesh, edge) = start_mesh(&[]);
    let answer = edge.get("/api/v1/openapi.json", None).await;
    assert_eq!(answer.status, StatusCode::OK);
    let document = answer.body;
    assert_eq!(document["openapi"], "3.0.3");
    for path in [
        "/serve",
        "/api/v1/ads",
        "/api/v1/ads/{ad_id}",
        "/analytics/campaign/{campaign_id}",
        "/auth/login",
    ] {
        assert!(
            document["paths"][path].is_object(),
            "{path} is not documented"
        );
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("openapi.json");
    std::fs::write(&file, document.to_string()).expect("write");
    let python = std::env::var("OPENAPI_VALIDATOR_PYTHON").expect(
        "OPENAPI_VALIDATOR_PYTHON is not set: run the suite with scripts/test, which installs openapi-spec-validator",
    );
    let output = std::process::Command::new(python)
        .args(["-m", "openapi_spec_validator"])
        .arg(&file)
        .output()
        .expect("run openapi-spec-validator");
    assert!(
        output.status.success(),
        "openapi-spec-validator: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A delete of a rule that does not exist: cheap, and served by the edge
/// alone.
async fn probe(edge: &Edge, token: &str) -> Answer {
    let body = json!({"key": "no-such-rule"}).to_string().into_bytes();
    edge.send(
        Method::DELETE,
        "/api/v1/observability/ratelimit/config",
        Some(token),
        Some(body),
    )
    .await
}

/// Cluster profile: two edge processes on one PostgreSQL and one Redis. A
/// rule created on one applies on the other, and both take from the same
/// bucket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_rules_and_buckets_are_shared_by_edge_replicas() {
    let postgres = support::TestPostgres::create().await;
    let env = vec![
        ("ADMESH_DATABASE__URL", postgres.url.clone()),
        ("ADMESH_REDIS__URL", support::redis_url()),
        ("ADMESH_ADMIN_PASSWORD", ADMIN_PASSWORD.to_string()),
    ];
    let (_first, first_address) = support::spawn_service("edge", "ADMESH_EDGE__LISTEN", &env);
    let (_second, second_address) = support::spawn_service("edge", "ADMESH_EDGE__LISTEN", &env);
    let (first, second) = (Edge::new(first_address), Edge::new(second_address));
    let admin = first.login("admin", ADMIN_PASSWORD).await;

    // The limited route is the edge's own (no other service needed): a
    // delete of a rule that does not exist. Everyone together gets 4.
    let route = "DELETE /api/v1/observability/ratelimit/config";
    let name = format!("shared-{}", uuid::Uuid::new_v4().simple());
    let set = |refill: f64, capacity: u32| json!({"name": name, "scopeType": "global", "scopeId": route, "refillRate": refill, "capacity": capacity});
    let created = first
        .post(
            "/api/v1/observability/ratelimit/config",
            Some(&admin),
            set(0.01, 4),
        )
        .await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.body);
    // The second replica picks the rule up on its own (it reloads rules
    // every second): its first limited answer carries the headers.
    let loaded = support::eventually(
        "the rule reaches the second edge",
        Duration::from_secs(10),
        || async {
            let answer = probe(&second, &admin).await;
            (answer.header("x-ratelimit-limit") == Some("4")).then_some(answer)
        },
    )
    .await;
    let remaining: u32 = loaded
        .header("x-ratelimit-remaining")
        .and_then(|v| v.parse().ok())
        .expect("remaining");
    assert!(remaining < 4);

    // One bucket: what the second replica took, the first no longer has.
    let next = probe(&first, &admin).await;
    assert_eq!(
        next.header("x-ratelimit-remaining")
            .and_then(|v| v.parse::<u32>().ok()),
        Some(remaining.saturating_sub(1)),
        "the first edge sees the second's takes"
    );
    let mut statuses = Vec::new();
    for _ in 0..remaining + 1 {
        statuses.push(probe(&first, &admin).await.status.as_u16());
    }
    assert_eq!(statuses.last(), Some(&429), "{statuses:?}");
    let blocked = probe(&second, &admin).await;
    assert_eq!(
        blocked.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        blocked.body
    );
    assert!(blocked.header("retry-after").is_some());

    // Changing the rule on the first edge lifts the limit on the second.
    let raised = first
        .post(
            "/api/v1/observability/ratelimit/config",
            Some(&admin),
            set(1000.0, 100),
        )
        .await;
    assert_eq!(raised.status, StatusCode::OK, "{}", raised.body);
    support::eventually(
        "the raised limit reaches the second edge",
        Duration::from_secs(10),
        || async {
            let answer = probe(&second, &admin).await;
            (answer.status == StatusCode::OK && answer.header("x-ratelimit-limit") == Some("100"))
                .then_some(())
        },
    )
    .await;
    postgres.drop_database().await;
}
