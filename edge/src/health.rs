//! `/health` (is the edge alive, and how is each upstream) and `/ready`
//! (may the edge take traffic: every upstream SERVING), from the upstreams'
//! own `grpc.health.v1.Health`.

use std::time::Duration;

use admesh_common::{
    MeshConfig,
    health::{RemoteHealthClient, check_remote, remote_health_client},
};
use axum::{Json, extract::State, response::IntoResponse};
use http::StatusCode;

use crate::EdgeState;

const CHECK_TIMEOUT: Duration = Duration::from_millis(500);

/// Health clients of the services behind the edge.
#[derive(Debug)]
pub struct Upstreams {
    clients: Vec<(&'static str, RemoteHealthClient)>,
}

impl Upstreams {
    pub fn from_config(config: &MeshConfig) -> anyhow::Result<Self> {
        let mut clients = Vec::new();
        for (service, url) in config.edge_upstreams() {
            clients.push((service.name(), remote_health_client(url)?));
        }
        Ok(Self { clients })
    }

    /// (service, "serving" | "not_serving" | "unreachable") for each upstream.
    pub async fn statuses(&self) -> Vec<(&'static str, &'static str)> {
        let checks = self.clients.iter().map(|(name, client)| async move {
            (*name, check_remote(client, CHECK_TIMEOUT).await.as_str())
        });
        futures_util::future::join_all(checks).await
    }
}

fn body(statuses: &[(&str, &str)], all_serving: bool) -> serde_json::Value {
    let services: serde_json::Map<String, serde_json::Value> = statuses
        .iter()
        .map(|(name, status)| ((*name).to_string(), serde_json::Value::from(*status)))
        .collect();
    serde_json::json!({
        "status": if all_serving { "healthy" } else { "degraded" },
        "version": env!("CARGO_PKG_VERSION"),
        "timestamp": admesh_common::time::timestamp(admesh_common::time::now_millis()).to_string(),
        "services": services,
    })
}

/// Liveness: 200 while the edge runs, with each upstream's status.
pub async fn health(State(state): State<EdgeState>) -> impl IntoResponse {
    let statuses = state.health.statuses().await;
    let all_serving = statuses.iter().all(|(_, status)| *status == "serving");
    Json(body(&statuses, all_serving))
}

/// Readiness: 200 only when every upstream is SERVING, else 503.
pub async fn ready(State(state): State<EdgeState>) -> impl IntoResponse {
    let statuses = state.health.statuses().await;
    let all_serving = statuses.iter().all(|(_, status)| *status == "serving");
    let code = if all_serving {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body(&statuses, all_serving)))
}
