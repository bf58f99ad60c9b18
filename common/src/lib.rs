//! Server plumbing shared by every AdMesh service: layered config, logs and
//! traces, W3C trace context on every gRPC hop, Prometheus metrics, health
//! that follows the service's dependencies, SQL and Redis connections, and
//! the gRPC host that runs a service on a bound listener until shutdown.

pub mod config;
pub mod db;
pub mod deadline;
pub mod events;
pub mod grpc_host;
pub mod grpc_telemetry;
pub mod health;
pub mod identity;
pub mod ids;
pub mod metrics;
pub mod redis_conn;
pub mod runner;
pub mod services;
pub mod shutdown;
pub mod status;
pub mod telemetry;
pub mod time;
pub mod trace_context;
pub mod validation;

pub use config::{MeshConfig, Secret};
pub use db::Database;
pub use grpc_host::{GrpcService, nodelay_incoming, serve_grpc};
pub use health::Dependency;
pub use redis_conn::Redis;
pub use runner::{ServiceContext, run_service};
pub use services::ServiceKind;
pub use trace_context::TraceContextInterceptor;

/// A gRPC client channel to `url` that connects on first use, so services
/// can start in any order. A comma-separated list of URLs balances calls
/// across the replicas it names (power of two choices); a replica whose
/// connection fails is reconnected on use, so one that comes back takes
/// calls again (`tests/balancing.rs`).
pub fn lazy_channel(url: &str) -> anyhow::Result<tonic::transport::Channel> {
    use anyhow::Context;
    let endpoints = url
        .split(',')
        .map(str::trim)
        .filter(|url| !url.is_empty())
        .map(|url| {
            Ok(tonic::transport::Endpoint::from_shared(url.to_string())
                .with_context(|| format!("invalid service URL {url:?}"))?
                .tcp_nodelay(true)
                .connect_timeout(std::time::Duration::from_secs(2)))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    match endpoints.as_slice() {
        [] => anyhow::bail!("no service URL in {url:?}"),
        [one] => Ok(one.connect_lazy()),
        _ => Ok(tonic::transport::Channel::balance_list(
            endpoints.into_iter(),
        )),
    }
}
