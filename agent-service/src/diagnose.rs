//! Diagnose the mesh: the gRPC health of every service, checked from here
//! with the caller's trace context; each service's error rate and p99
//! latency against its SLO, from its own metrics ([`crate::slo`]); and
//! findings with recommended actions.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use crate::slo::{self, Snapshot};

use admesh_common::{
    MeshChannel, MeshConfig,
    health::{RemoteHealth, RemoteHealthClient, check_remote, remote_health_client},
};
use admesh_common::{TraceContextInterceptor, lazy_channel};
use admesh_proto::{
    agent::v1::{DiagnoseResponse, Finding, ServiceHealth},
    queue::v1::{GetQueueStatsRequest, queue_service_client::QueueServiceClient},
};
use tonic::codegen::InterceptedService;

/// A health check slower than this is itself a finding.
const HEALTH_CHECK_TIMEOUT: Duration = Duration::from_secs(1);

/// Health clients for every service the agent can reach.
#[derive(Clone, Debug)]
pub struct MeshProbe {
    /// (name, health client, metrics URL).
    services: Vec<(&'static str, RemoteHealthClient, String)>,
    queue: QueueServiceClient<InterceptedService<MeshChannel, TraceContextInterceptor>>,
    http: reqwest::Client,
    /// Each service's figures at the last diagnosis.
    previous: Arc<Mutex<HashMap<&'static str, Snapshot>>>,
}

impl MeshProbe {
    pub fn from_config(config: &MeshConfig) -> anyhow::Result<Self> {
        let mut services = Vec::new();
        for (service, url) in config.agent_targets() {
            // A replica list: the first replica's figures stand for it.
            let first = url
                .split(',')
                .next()
                .unwrap_or(url)
                .trim()
                .trim_end_matches('/');
            services.push((
                service.name(),
                remote_health_client(url)?,
                format!("{first}/metrics"),
            ));
        }
        let queue = QueueServiceClient::with_interceptor(
            lazy_channel(&config.agent.queue_url)?,
            TraceContextInterceptor,
        );
        Ok(Self {
            services,
            queue,
            http: reqwest::Client::builder()
                .timeout(HEALTH_CHECK_TIMEOUT)
                .build()?,
            previous: Arc::default(),
        })
    }

    /// The service's RPC figures since the last diagnosis, when its metrics
    /// answer.
    async fn figures(&self, name: &'static str, metrics_url: &str) -> Option<Snapshot> {
        let text = self
            .http
            .get(metrics_url)
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        let now = slo::parse(&text, name);
        let mut previous = self.previous.lock().unwrap_or_else(|e| e.into_inner());
        let window = slo::since(&now, previous.get(name));
        previous.insert(name, now);
        Some(window)
    }

    /// Checks every service concurrently and explains what is wrong.
    pub async fn diagnose(&self) -> DiagnoseResponse {
        let checks = self
            .services
            .iter()
            .map(|(name, client, metrics)| async move {
                let (mut health, figures) =
                    tokio::join!(check_one(name, client), self.figures(name, metrics));
                if let Some(figures) = figures {
                    health.error_rate = figures.error_rate();
                    health.p99_latency = figures
                        .p99()
                        .and_then(|p99| prost_types::Duration::try_from(p99).ok());
                }
                health
            });
        let (services, queue_backlog) =
            tokio::join!(futures_util::future::join_all(checks), self.queue_backlog());
        let mut findings = findings_for(&services);
        if let Err(status) = &queue_backlog {
            findings.push(Finding {
                severity: "info".into(),
                title: "queue backlog unknown".into(),
                detail: format!(
                    "queue statistics answered {:?}: {}",
                    status.code(),
                    status.message()
                ),
                recommended_action: "check the queue-service".into(),
            });
        }
        let serving = services
            .iter()
            .filter(|s| s.status == RemoteHealth::Serving.as_str())
            .count();
        let overall = if serving == services.len() {
            "healthy"
        } else if serving == 0 {
            "unhealthy"
        } else {
            "degraded"
        };
        DiagnoseResponse {
            overall: overall.into(),
            services,
            queue_backlog: queue_backlog.ok(),
            findings,
            time: Some(admesh_common::time::timestamp(
                admesh_common::time::now_millis(),
            )),
        }
    }

    /// Jobs queued now, as the queue-service reports them.
    async fn queue_backlog(&self) -> Result<u64, tonic::Status> {
        let mut request = tonic::Request::new(GetQueueStatsRequest {});
        request.set_timeout(HEALTH_CHECK_TIMEOUT);
        let stats = self.queue.clone().get_queue_stats(request).await?;
        Ok(stats.into_inner().total)
    }
}

async fn check_one(name: &'static str, client: &RemoteHealthClient) -> ServiceHealth {
    let started = Instant::now();
    let status = check_remote(client, HEALTH_CHECK_TIMEOUT).await;
    ServiceHealth {
        service: name.into(),
        status: status.as_str().into(),
        latency: prost_types::Duration::try_from(started.elapsed()).ok(),
        // Filled from the service's metrics when they answer; unset (not
        // 0) when they do not.
        error_rate: None,
        p99_latency: None,
    }
}

/// Findings: every service that is not serving, and every one past its
/// error-rate or latency objective, with what to do about it.
pub fn findings_for(services: &[ServiceHealth]) -> Vec<Finding> {
    let mut findings = health_findings(services);
    for service in services {
        let objective = slo::objective(&service.service);
        if let Some(rate) = service.error_rate
            && rate > objective.error_rate
        {
            findings.push(Finding {
                severity: "warning".into(),
                title: format!("{} fails {:.1}% of its RPCs", service.service, rate * 100.0),
                detail: format!(
                    "objective: under {:.1}% (server-side failures since the last diagnosis)",
                    objective.error_rate * 100.0
                ),
                recommended_action: "read its recent errors (\"show errors from the service in the last hour\") and check its dependencies".into(),
            });
        }
        let p99 = service
            .p99_latency
            .as_ref()
            .and_then(|d| Duration::try_from(*d).ok());
        if let Some(p99) = p99
            && p99 > objective.p99
        {
            findings.push(Finding {
                severity: "warning".into(),
                title: format!(
                    "{} p99 latency is up to {} ms",
                    service.service,
                    p99.as_millis()
                ),
                detail: format!("objective: p99 under {} ms", objective.p99.as_millis()),
                recommended_action: "add replicas or CPU, or look for a slow dependency".into(),
            });
        }
    }
    findings
}

fn health_findings(services: &[ServiceHealth]) -> Vec<Finding> {
    services
        .iter()
        .filter_map(|service| {
            let (title, action) = match service.status.as_str() {
                "serving" => return None,
                "not_serving" => (
                    format!("{} is up but not serving", service.service),
                    "check its database and Redis connections (its dependencies are probed every second)",
                ),
                _ => (
                    format!("{} is unreachable", service.service),
                    "check that the process or pod is running and that its address is configured correctly",
                ),
            };
            Some(Finding {
                severity: "critical".into(),
                title,
                detail: format!("health check answered {}", service.status),
                recommended_action: action.into(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn health(service: &str, status: &str) -> ServiceHealth {
        ServiceHealth {
            service: service.into(),
            status: status.into(),
            ..Default::default()
        }
    }

    #[test]
    fn every_service_not_serving_is_a_critical_finding() {
        let findings = findings_for(&[
            health("bid-engine", "serving"),
            health("queue-service", "not_serving"),
            health("analytics-service", "unreachable"),
        ]);
        assert_eq!(findings.len(), 2);
        assert!(findings[0].title.contains("queue-service"));
        assert!(findings[1].title.contains("unreachable"));
        assert!(findings.iter().all(|f| f.severity == "critical"));
    }

    #[test]
    fn services_past_their_objectives_are_warnings() {
        let mut slow = health("bid-engine", "serving");
        slow.p99_latency = Some(prost_types::Duration {
            seconds: 0,
            nanos: 100_000_000,
        });
        slow.error_rate = Some(0.0);
        let mut failing = health("queue-service", "serving");
        failing.error_rate = Some(0.05);
        let mut fine = health("ad-server", "serving");
        fine.p99_latency = Some(prost_types::Duration {
            seconds: 0,
            nanos: 5_000_000,
        });
        fine.error_rate = Some(0.001);
        let findings = findings_for(&[slow, failing, fine]);
        let titles: Vec<&str> = findings.iter().map(|f| f.title.as_str()).collect();
        assert_eq!(findings.len(), 2, "{titles:?}");
        assert!(
            titles
                .iter()
                .any(|t| t.contains("queue-service fails 5.0%")),
            "{titles:?}"
        );
        assert!(
            titles
                .iter()
                .any(|t| t.contains("bid-engine p99 latency is up to 100 ms")),
            "{titles:?}"
        );
        assert!(findings.iter().all(|f| f.severity == "warning"));
    }
}
