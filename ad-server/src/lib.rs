//! The ad-server: serve and click tracking (SPEC §3).
//!
//! The RPCs of `admesh.adserver.v1.AdServer` that are not built yet answer UNIMPLEMENTED (the
//! generated default), never a made-up result.

use admesh_common::{GrpcService, ServiceContext, ServiceKind, serve_grpc};
use admesh_proto::adserver::v1::ad_server_server::{AdServer, AdServerServer};
use tokio::net::TcpListener;

/// Which service of the mesh this is.
pub const SERVICE: ServiceKind = ServiceKind::AdServer;

/// The `admesh.adserver.v1.AdServer` implementation.
#[derive(Clone, Debug)]
pub struct AdServerService {
    #[allow(dead_code)]
    context: ServiceContext,
}

impl AdServerService {
    pub fn new(context: ServiceContext) -> Self {
        Self { context }
    }
}

#[tonic::async_trait]
impl AdServer for AdServerService {}

/// The service's routes, descriptor and names, for the gRPC host.
pub fn grpc_service(context: &ServiceContext) -> GrpcService {
    GrpcService {
        name: SERVICE.name(),
        grpc_name: "admesh.adserver.v1.AdServer",
        descriptor: admesh_proto::descriptors::AD_SERVER,
        routes: tonic::service::Routes::new(AdServerServer::new(AdServerService::new(
            context.clone(),
        ))),
    }
}

/// Serves until `context.shutdown` fires, then drains.
pub async fn serve(context: ServiceContext, listener: TcpListener) -> anyhow::Result<()> {
    let dependencies = context.dependencies();
    let shutdown = context.shutdown.clone();
    serve_grpc(listener, grpc_service(&context), dependencies, shutdown).await
}
