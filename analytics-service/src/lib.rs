//! The analytics-service: exact campaign and ad analytics (SPEC §5).
//!
//! The RPCs of `admesh.analytics.v1.AnalyticsService` that are not built yet answer UNIMPLEMENTED (the
//! generated default), never a made-up result.

use admesh_common::{GrpcService, ServiceContext, ServiceKind, serve_grpc};
use admesh_proto::analytics::v1::analytics_service_server::{
    AnalyticsService, AnalyticsServiceServer,
};
use tokio::net::TcpListener;

/// Which service of the mesh this is.
pub const SERVICE: ServiceKind = ServiceKind::AnalyticsService;

/// The `admesh.analytics.v1.AnalyticsService` implementation.
#[derive(Clone, Debug)]
pub struct AnalyticsServiceImpl {
    #[allow(dead_code)]
    context: ServiceContext,
}

impl AnalyticsServiceImpl {
    pub fn new(context: ServiceContext) -> Self {
        Self { context }
    }
}

#[tonic::async_trait]
impl AnalyticsService for AnalyticsServiceImpl {}

/// The service's routes, descriptor and names, for the gRPC host.
pub fn grpc_service(context: &ServiceContext) -> GrpcService {
    GrpcService {
        name: SERVICE.name(),
        grpc_name: "admesh.analytics.v1.AnalyticsService",
        descriptor: admesh_proto::descriptors::ANALYTICS,
        routes: tonic::service::Routes::new(AnalyticsServiceServer::new(
            AnalyticsServiceImpl::new(context.clone()),
        )),
    }
}

/// Serves until `context.shutdown` fires, then drains.
pub async fn serve(context: ServiceContext, listener: TcpListener) -> anyhow::Result<()> {
    let dependencies = context.dependencies();
    let shutdown = context.shutdown.clone();
    serve_grpc(listener, grpc_service(&context), dependencies, shutdown).await
}
