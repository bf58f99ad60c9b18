//! The bid-engine: campaigns and the real-time auction (SPEC §2).
//!
//! The RPCs of `admesh.bid.v1.BidEngine` that are not built yet answer UNIMPLEMENTED (the
//! generated default), never a made-up result.

use admesh_common::{GrpcService, ServiceContext, ServiceKind, serve_grpc};
use admesh_proto::bid::v1::bid_engine_server::{BidEngine, BidEngineServer};
use tokio::net::TcpListener;

/// Which service of the mesh this is.
pub const SERVICE: ServiceKind = ServiceKind::BidEngine;

/// The `admesh.bid.v1.BidEngine` implementation.
#[derive(Clone, Debug)]
pub struct BidEngineService {
    #[allow(dead_code)]
    context: ServiceContext,
}

impl BidEngineService {
    pub fn new(context: ServiceContext) -> Self {
        Self { context }
    }
}

#[tonic::async_trait]
impl BidEngine for BidEngineService {}

/// The service's routes, descriptor and names, for the gRPC host.
pub fn grpc_service(context: &ServiceContext) -> GrpcService {
    GrpcService {
        name: SERVICE.name(),
        grpc_name: "admesh.bid.v1.BidEngine",
        descriptor: admesh_proto::descriptors::BID_ENGINE,
        routes: tonic::service::Routes::new(BidEngineServer::new(BidEngineService::new(
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
