//! The queue-service: the ad-processing priority queue (SPEC §4).
//!
//! The RPCs of `admesh.queue.v1.QueueService` that are not built yet answer UNIMPLEMENTED (the
//! generated default), never a made-up result.
//!
//! - [`ordering`]: the dispatch order (starved first, then priority, FIFO).

pub mod ordering;

use admesh_common::{GrpcService, ServiceContext, ServiceKind, serve_grpc};
use admesh_proto::queue::v1::queue_service_server::{QueueService, QueueServiceServer};
use tokio::net::TcpListener;

/// Which service of the mesh this is.
pub const SERVICE: ServiceKind = ServiceKind::QueueService;

/// The `admesh.queue.v1.QueueService` implementation.
#[derive(Clone, Debug)]
pub struct QueueServiceImpl {
    #[allow(dead_code)]
    context: ServiceContext,
}

impl QueueServiceImpl {
    pub fn new(context: ServiceContext) -> Self {
        Self { context }
    }
}

#[tonic::async_trait]
impl QueueService for QueueServiceImpl {}

/// The service's routes, descriptor and names, for the gRPC host.
pub fn grpc_service(context: &ServiceContext) -> GrpcService {
    GrpcService {
        name: SERVICE.name(),
        grpc_name: "admesh.queue.v1.QueueService",
        descriptor: admesh_proto::descriptors::QUEUE,
        routes: tonic::service::Routes::new(QueueServiceServer::new(QueueServiceImpl::new(
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
