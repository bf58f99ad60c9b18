//! Health that means something: a service reports SERVING on
//! `grpc.health.v1.Health` (overall and under its own name) only while its
//! dependencies answer, and NOT_SERVING before they first do, whenever they
//! stop, and once shutdown begins.

use std::{sync::Arc, time::Duration};

use tokio_util::sync::CancellationToken;
use tonic_health::{ServingStatus, server::HealthReporter};

use crate::{db::Database, redis_conn::Redis};

/// Something a service cannot work without.
#[derive(Clone)]
pub enum Dependency {
    /// SQL storage; migrations are (re)tried until they apply.
    Sql(Database),
    Redis(Redis),
    /// A condition of the service itself, e.g. its cache has loaded.
    Ready {
        name: &'static str,
        check: Arc<dyn Fn() -> bool + Send + Sync>,
    },
}

impl std::fmt::Debug for Dependency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl Dependency {
    fn name(&self) -> &'static str {
        match self {
            Self::Sql(_) => "sql",
            Self::Redis(_) => "redis",
            Self::Ready { name, .. } => name,
        }
    }
}

/// How often dependencies are probed once healthy; faster before that.
const PROBE_INTERVAL: Duration = Duration::from_secs(1);
const STARTUP_PROBE_INTERVAL: Duration = Duration::from_millis(100);

/// A probe that does not answer in this time counts as down: a cut
/// connection can leave a request waiting for ever.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

async fn within_probe_timeout(
    probe: impl std::future::Future<Output = anyhow::Result<()>>,
) -> anyhow::Result<()> {
    tokio::time::timeout(PROBE_TIMEOUT, probe)
        .await
        .unwrap_or_else(|_| Err(anyhow::anyhow!("no answer within {PROBE_TIMEOUT:?}")))
}

/// Probes `dependencies` until `shutdown`, keeping the overall status and
/// `grpc_service_name`'s status in `reporter` current.
pub async fn track_readiness(
    reporter: HealthReporter,
    service: &'static str,
    grpc_service_name: &'static str,
    dependencies: Vec<Dependency>,
    shutdown: CancellationToken,
) {
    let mut migrated = false;
    let mut serving: Option<bool> = None;
    loop {
        let mut all_up = true;
        for dependency in &dependencies {
            let result = match dependency {
                Dependency::Sql(database) if !migrated => {
                    let result = database.migrate().await;
                    migrated = result.is_ok();
                    result
                }
                Dependency::Sql(database) => within_probe_timeout(database.ping()).await,
                // Bounded by itself (and replaces a dead connection).
                Dependency::Redis(redis) => redis.ping().await,
                Dependency::Ready { check, .. } => {
                    if check() {
                        Ok(())
                    } else {
                        Err(anyhow::anyhow!("not ready yet"))
                    }
                }
            };
            let up = result.is_ok();
            metrics::gauge!(
                "admesh_dependency_up",
                "service" => service,
                "dependency" => dependency.name()
            )
            .set(if up { 1.0 } else { 0.0 });
            if let Err(error) = result {
                if serving != Some(false) {
                    tracing::warn!(dependency = dependency.name(), error = %format!("{error:#}"), "dependency unavailable");
                }
                all_up = false;
            }
        }
        if serving != Some(all_up) {
            let status = if all_up {
                ServingStatus::Serving
            } else {
                ServingStatus::NotServing
            };
            reporter.set_service_status("", status).await;
            reporter.set_service_status(grpc_service_name, status).await;
            tracing::info!(service, serving = all_up, "health changed");
            serving = Some(all_up);
        }
        let interval = if all_up {
            PROBE_INTERVAL
        } else {
            STARTUP_PROBE_INTERVAL
        };
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(interval) => {}
        }
    }
    // Tell load balancers to stop sending work while we drain.
    reporter
        .set_service_status("", ServingStatus::NotServing)
        .await;
    reporter
        .set_service_status(grpc_service_name, ServingStatus::NotServing)
        .await;
}

/// How another service answered `grpc.health.v1.Health/Check`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RemoteHealth {
    Serving,
    NotServing,
    Unreachable,
}

impl RemoteHealth {
    /// "serving", "not_serving" or "unreachable".
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Serving => "serving",
            Self::NotServing => "not_serving",
            Self::Unreachable => "unreachable",
        }
    }
}

/// A health client that carries the caller's trace context.
pub type RemoteHealthClient = tonic_health::pb::health_client::HealthClient<
    tonic::codegen::InterceptedService<crate::MeshChannel, crate::TraceContextInterceptor>,
>;

/// A health client for the service at `url`, connecting on first use.
pub fn remote_health_client(url: &str) -> anyhow::Result<RemoteHealthClient> {
    Ok(
        tonic_health::pb::health_client::HealthClient::with_interceptor(
            crate::lazy_channel(url)?,
            crate::TraceContextInterceptor,
        ),
    )
}

/// Checks the overall health of the service behind `client` within `timeout`.
pub async fn check_remote(client: &RemoteHealthClient, timeout: Duration) -> RemoteHealth {
    use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};
    let mut request = tonic::Request::new(HealthCheckRequest {
        service: String::new(),
    });
    request.set_timeout(timeout);
    match client.clone().check(request).await {
        Ok(response) if response.get_ref().status() == ServingStatus::Serving => {
            RemoteHealth::Serving
        }
        Ok(_) => RemoteHealth::NotServing,
        Err(error) => {
            tracing::debug!(error = %error, "health check failed");
            RemoteHealth::Unreachable
        }
    }
}
