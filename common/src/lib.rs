//! Server plumbing shared by every AdMesh service: layered config, logs and
//! traces, W3C trace context on every gRPC hop, Prometheus metrics, health
//! that follows the service's dependencies, SQL and Redis connections, and
//! the gRPC host that runs a service on a bound listener until shutdown.

pub mod channel;
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

pub use channel::{DirectChannel, MeshChannel, lazy_channel};
pub use config::{MeshConfig, Secret};

/// Fast hashing for maps whose keys come from operators or from the
/// service's own definitions (campaign ids, route fields, service names),
/// never from a request: SipHash's flood resistance buys nothing there, and
/// on the bid and serve paths its cost showed in profiles. Maps keyed by
/// request input keep the standard hasher.
pub type FastHash = foldhash::fast::RandomState;
pub use db::Database;
pub use grpc_host::{GrpcService, nodelay_incoming, serve_grpc};
pub use health::Dependency;
pub use redis_conn::Redis;
pub use runner::{ServiceContext, run_service};
pub use services::ServiceKind;
pub use trace_context::TraceContextInterceptor;
