//! Hosts one gRPC service on a bound listener until a shutdown token fires:
//! the service itself, `grpc.health.v1.Health`, server reflection v1 and
//! v1alpha (grpcurl 1.8 asks for v1alpha), and `GET /metrics` on the same
//! port. Tests bind `127.0.0.1:0`; production binds the configured port; the
//! code is the same.

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;
use tonic::service::Routes;

use crate::{
    grpc_telemetry::GrpcTelemetryLayer,
    health::{Dependency, track_readiness},
    metrics::metrics_router,
};

/// How long in-flight calls and idle client connections get to finish after
/// shutdown begins; a client that never closes cannot hold the process.
pub const DRAIN_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// Runs `server` to completion, but gives up `DRAIN_GRACE` after `shutdown`.
pub async fn drain_within_grace<E>(
    server: impl std::future::Future<Output = Result<(), E>>,
    shutdown: &CancellationToken,
) -> Result<(), E> {
    tokio::pin!(server);
    tokio::select! {
        result = &mut server => result,
        _ = async {
            shutdown.cancelled().await;
            tokio::time::sleep(DRAIN_GRACE).await;
        } => {
            tracing::warn!("drain grace period over; closing remaining connections");
            Ok(())
        }
    }
}

/// What a service hands to the host.
pub struct GrpcService {
    /// Short name for logs and metric labels, e.g. "bid-engine".
    pub name: &'static str,
    /// Fully-qualified gRPC service name, e.g. "admesh.bid.v1.BidEngine".
    pub grpc_name: &'static str,
    /// The service's encoded file-descriptor set, for reflection.
    pub descriptor: &'static [u8],
    /// The service's routes (one or more tonic services).
    pub routes: Routes,
}

/// Serves `service` on `listener` until `shutdown` is cancelled, then stops
/// accepting and drains in-flight calls.
/// Accepted connections with Nagle's algorithm off. tonic's `tcp_nodelay`
/// only reaches listeners it binds itself; without this a response written
/// in two segments waits for the client's delayed ACK (~40 ms).
pub fn nodelay_incoming(
    listener: TcpListener,
) -> impl tokio_stream::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    use tokio_stream::StreamExt;
    TcpListenerStream::new(listener).map(|accepted| {
        accepted.inspect(|stream| {
            if let Err(error) = stream.set_nodelay(true) {
                tracing::debug!(%error, "TCP_NODELAY not set");
            }
        })
    })
}

pub async fn serve_grpc(
    listener: TcpListener,
    service: GrpcService,
    dependencies: Vec<Dependency>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let address = listener.local_addr().context("listener address")?;
    let (reporter, health_service) = tonic_health::server::health_reporter();
    // NOT_SERVING until the readiness task has seen every dependency answer.
    reporter
        .set_service_status("", tonic_health::ServingStatus::NotServing)
        .await;
    reporter
        .set_service_status(service.grpc_name, tonic_health::ServingStatus::NotServing)
        .await;
    let readiness = tokio::spawn(track_readiness(
        reporter,
        service.name,
        service.grpc_name,
        dependencies,
        shutdown.clone(),
    ));

    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(service.descriptor)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET)
        .build_v1()
        .context("building reflection v1")?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(service.descriptor)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .context("building reflection v1alpha")?;
    let router = service
        .routes
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .into_axum_router()
        .merge(metrics_router());

    tracing::info!(service = service.name, addr = %address, "listening");
    let server = tonic::transport::Server::builder()
        // HTTP/1.1 for Prometheus scrapes of /metrics; gRPC stays HTTP/2.
        .accept_http1(true)
        .tcp_nodelay(true)
        .layer(GrpcTelemetryLayer::new(service.name))
        .add_routes(Routes::from(router))
        .serve_with_incoming_shutdown(
            nodelay_incoming(listener),
            shutdown.clone().cancelled_owned(),
        );
    let result = drain_within_grace(server, &shutdown)
        .await
        .with_context(|| format!("{} server on {address}", service.name));
    shutdown.cancel();
    let _ = readiness.await;
    tracing::info!(service = service.name, "stopped");
    result
}
