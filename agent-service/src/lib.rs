//! The agent-service: plain-English operations over the mesh (SPEC §6).
//!
//! `Command` parses a sentence with the offline parser ([`parser`]) into a
//! typed intent ([`intent`]), checks the caller's role, runs it through the
//! other services ([`execute`]) or dry-runs it, and records it in the
//! commands audit table ([`audit`]). `Diagnose` checks every service
//! ([`diagnose`]); `ListActivity` reads the activity log ([`activity`]).
//! With `agent.llm_url` set, an OpenAI-compatible model reads the sentence
//! first through tool calling ([`llm`]); the offline parser answers when it
//! fails.

pub mod activity;
pub mod audit;
pub mod command;
pub mod diagnose;
pub mod execute;
pub mod intent;
pub mod llm;
pub mod parser;
pub mod slo;

use admesh_common::{
    Database, GrpcService, ServiceContext, ServiceKind, serve_grpc, time::timestamp,
};
use admesh_proto::agent::v1::{
    CommandRecord, CommandRequest, CommandResponse, CommandStatus, DiagnoseRequest,
    DiagnoseResponse, Intent as ProtoIntent, ListActivityRequest, ListActivityResponse,
    ListCommandHistoryRequest, ListCommandHistoryResponse, ListSupportedCommandsRequest,
    ListSupportedCommandsResponse, SupportedCommand,
    agent_service_server::{AgentService, AgentServiceServer},
};
use tokio::net::TcpListener;
use tonic::{Request, Response, Status};

use crate::{
    command::{Caller, from_json_text},
    diagnose::MeshProbe,
    execute::Executor,
    intent::CATALOGUE,
};

/// Which service of the mesh this is.
pub const SERVICE: ServiceKind = ServiceKind::AgentService;

/// The `admesh.agent.v1.AgentService` implementation.
#[derive(Clone, Debug)]
pub struct AgentServiceImpl {
    probe: MeshProbe,
    executor: Executor,
    database: Database,
    llm: Option<llm::LlmProvider>,
}

impl AgentServiceImpl {
    pub fn new(context: &ServiceContext) -> anyhow::Result<Self> {
        Ok(Self {
            probe: MeshProbe::from_config(&context.config)?,
            executor: Executor::new(&context.config, context.database.clone())?,
            database: context.database.clone(),
            llm: llm_provider(&context.config)?,
        })
    }
}

fn llm_provider(config: &admesh_common::MeshConfig) -> anyhow::Result<Option<llm::LlmProvider>> {
    let agent = &config.agent;
    if agent.llm_url.is_empty() {
        return Ok(None);
    }
    Ok(Some(llm::LlmProvider::new(
        &agent.llm_url,
        &agent.llm_model,
        agent.llm_api_key.clone(),
        std::time::Duration::from_millis(agent.llm_timeout_ms),
    )?))
}

fn storage(error: anyhow::Error) -> Status {
    tracing::warn!(error = %format!("{error:#}"), "agent storage failed");
    Status::unavailable("the agent's database is unavailable")
}

#[tonic::async_trait]
impl AgentService for AgentServiceImpl {
    async fn command(
        &self,
        request: Request<CommandRequest>,
    ) -> Result<Response<CommandResponse>, Status> {
        let caller = Caller::from_metadata(request.metadata());
        let context = command::Context {
            executor: &self.executor,
            database: &self.database,
            llm: self.llm.as_ref(),
        };
        command::handle(&context, &caller, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn list_supported_commands(
        &self,
        _request: Request<ListSupportedCommandsRequest>,
    ) -> Result<Response<ListSupportedCommandsResponse>, Status> {
        Ok(Response::new(ListSupportedCommandsResponse {
            commands: CATALOGUE
                .iter()
                .map(|command| SupportedCommand {
                    intent: command.intent.into(),
                    description: command.description.into(),
                    examples: command.examples.iter().map(|e| (*e).to_string()).collect(),
                    mutating: command.mutating,
                })
                .collect(),
        }))
    }

    async fn list_command_history(
        &self,
        request: Request<ListCommandHistoryRequest>,
    ) -> Result<Response<ListCommandHistoryResponse>, Status> {
        let limit = match request.into_inner().limit {
            0 => 50,
            limit @ 1..=500 => limit,
            other => {
                return Err(Status::invalid_argument(format!(
                    "limit: must be 1–500, got {other}"
                )));
            }
        };
        let rows = audit::history(&self.database, limit)
            .await
            .map_err(storage)?;
        let commands = rows
            .into_iter()
            .map(|row| {
                let intent = row
                    .intent
                    .as_deref()
                    .and_then(|text| serde_json::from_str::<serde_json::Value>(text).ok())
                    .map(|intent| ProtoIntent {
                        name: intent["name"].as_str().unwrap_or_default().to_string(),
                        parameters: Some(command::to_struct(intent["parameters"].clone())),
                        mutating: intent["mutating"].as_bool().unwrap_or(false),
                    });
                CommandRecord {
                    command_id: row.id,
                    command: row.command_text,
                    intent,
                    status: match row.status.as_str() {
                        "executed" => CommandStatus::Executed,
                        "dry_run" => CommandStatus::DryRun,
                        "rejected" => CommandStatus::Rejected,
                        "failed" => CommandStatus::Failed,
                        _ => CommandStatus::Unspecified,
                    } as i32,
                    result: from_json_text(row.result.as_deref()),
                    error: row.error,
                    duration: Some(prost_types::Duration {
                        seconds: row.duration_us / 1_000_000,
                        nanos: ((row.duration_us % 1_000_000) * 1_000) as i32,
                    }),
                    user: row.user_name,
                    provider: row.provider,
                    dry_run: row.dry_run,
                    time: Some(timestamp(row.created_at)),
                }
            })
            .collect();
        Ok(Response::new(ListCommandHistoryResponse { commands }))
    }

    async fn diagnose(
        &self,
        _request: Request<DiagnoseRequest>,
    ) -> Result<Response<DiagnoseResponse>, Status> {
        Ok(Response::new(self.probe.diagnose().await))
    }

    async fn list_activity(
        &self,
        request: Request<ListActivityRequest>,
    ) -> Result<Response<ListActivityResponse>, Status> {
        let request = request.into_inner();
        if !matches!(
            request.level.as_str(),
            "" | "debug" | "info" | "warn" | "error"
        ) {
            return Err(Status::invalid_argument(format!(
                "level: one of debug, info, warn, error; got {:?}",
                request.level
            )));
        }
        let limit = match request.limit {
            0 => 100,
            limit @ 1..=1000 => limit,
            other => {
                return Err(Status::invalid_argument(format!(
                    "limit: must be 1–1000, got {other}"
                )));
            }
        };
        let millis = |time: &Option<prost_types::Timestamp>| {
            time.as_ref()
                .map(|t| t.seconds * 1000 + i64::from(t.nanos) / 1_000_000)
        };
        let (since, until) = (
            millis(&request.start_time).unwrap_or(0),
            millis(&request.end_time),
        );
        if let Some(until) = until
            && until < since
        {
            return Err(Status::invalid_argument("end_time: before start_time"));
        }
        let service = (!request.service.is_empty()).then_some(request.service.as_str());
        let level = (!request.level.is_empty()).then_some(request.level.as_str());
        activity::recent(&self.database, service, level, since, until, limit)
            .await
            .map(Response::new)
            .map_err(storage)
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
