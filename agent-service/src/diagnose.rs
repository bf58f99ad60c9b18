//! Diagnose the mesh: the gRPC health of every service, checked from here
//! with the caller's trace context, and findings with recommended actions.

use std::time::{Duration, Instant};

use admesh_common::{
    MeshConfig,
    health::{RemoteHealth, RemoteHealthClient, check_remote, remote_health_client},
};
use admesh_common::{TraceContextInterceptor, lazy_channel};
use admesh_proto::{
    agent::v1::{DiagnoseResponse, Finding, ServiceHealth},
    queue::v1::{GetQueueStatsRequest, queue_service_client::QueueServiceClient},
};
use tonic::{codegen::InterceptedService, transport::Channel};

/// A health check slower than this is itself a finding.
const HEALTH_CHECK_TIMEOUT: Duration = Duration::from_secs(1);

/// Health clients for every service the agent can reach.
#[derive(Clone, Debug)]
pub struct MeshProbe {
    services: Vec<(&'static str, RemoteHealthClient)>,
    queue: QueueServiceClient<InterceptedService<Channel, TraceContextInterceptor>>,
}

impl MeshProbe {
    pub fn from_config(config: &MeshConfig) -> anyhow::Result<Self> {
        let mut services = Vec::new();
        for (service, url) in config.agent_targets() {
            services.push((service.name(), remote_health_client(url)?));
        }
        let queue = QueueServiceClient::with_interceptor(
            lazy_channel(&config.agent.queue_url)?,
            TraceContextInterceptor,
        );
        Ok(Self { services, queue })
    }

    /// Checks every service concurrently and explains what is wrong.
    pub async fn diagnose(&self) -> DiagnoseResponse {
        let checks = self
            .services
            .iter()
            .map(|(name, client)| check_one(name, client));
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
        // Not measured yet: left unset rather than reported as 0.
        error_rate: None,
        p99_latency: None,
    }
}

/// One finding per service that is not serving, with what to do about it.
pub fn findings_for(services: &[ServiceHealth]) -> Vec<Finding> {
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
}
