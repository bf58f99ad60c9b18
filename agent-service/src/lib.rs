//! The agent-service: plain-English operations over the mesh (SPEC §6).
//!
//! Built so far: `Diagnose` checks the health of every service over gRPC.
//! The other RPCs answer UNIMPLEMENTED (the generated default) until the
//! command parser lands, never a made-up result.

pub mod diagnose;
pub mod intent;
pub mod parser;

use admesh_common::{GrpcService, ServiceContext, ServiceKind, serve_grpc};
use admesh_proto::agent::v1::{
    DiagnoseRequest, DiagnoseResponse,
    agent_service_server::{AgentService, AgentServiceServer},
};
use tokio::net::TcpListener;
use tonic::{Request, Response, Status};

use crate::diagnose::MeshProbe;

/// Which service of the mesh this is.
pub const SERVICE: ServiceKind = ServiceKind::AgentService;

/// The `admesh.agent.v1.AgentService` implementation.
#[derive(Clone, Debug)]
pub struct AgentServiceImpl {
    probe: MeshProbe,
}

impl AgentServiceImpl {
    pub fn new(context: &ServiceContext) -> anyhow::Result<Self> {
        Ok(Self {
            probe: MeshProbe::from_config(&context.config)?,
        })
    }
}

#[tonic::async_trait]
impl AgentService for AgentServiceImpl {
    async fn diagnose(
        &self,
        _request: Request<DiagnoseRequest>,
    ) -> Result<Response<DiagnoseResponse>, Status> {
        Ok(Response::new(self.probe.diagnose().await))
    }
}

/// The service's routes, descriptor and names, for the gRPC host.
pub fn grpc_service(context: &ServiceContext) -> anyhow::Result<GrpcService> {
    Ok(GrpcService {
        name: SERVICE.name(),
        grpc_name: "admesh.agent.v1.AgentService",
        descriptor: admesh_proto::descriptors::AGENT,
        routes: tonic::service::Routes::new(AgentServiceServer::new(AgentServiceImpl::new(
            context,
        )?)),
    })
}

/// Serves until `context.shutdown` fires, then drains.
pub async fn serve(context: ServiceContext, listener: TcpListener) -> anyhow::Result<()> {
    let dependencies = context.dependencies();
    let shutdown = context.shutdown.clone();
    serve_grpc(listener, grpc_service(&context)?, dependencies, shutdown).await
}
