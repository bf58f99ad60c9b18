//! The command line: `admesh up`, `admesh serve`, `admesh processor`,
//! `admesh health`, `admesh agent "…"`.

use std::{path::PathBuf, process::ExitCode, time::Duration};

use clap::{Parser, Subcommand};

use admesh_common::{MeshConfig, ServiceKind};

#[derive(Debug, Parser)]
#[command(
    name = "admesh",
    version,
    about = "AdMesh: an advertising backend as a mesh of gRPC services"
)]
pub struct Cli {
    /// TOML config file (defaults < file < ADMESH_* environment variables).
    #[arg(long, global = true, env = "ADMESH_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run every service and the edge in one process (the default).
    Up {
        /// Do not insert the demo campaigns into an empty database.
        #[arg(long)]
        no_demo: bool,
    },
    /// Run one service alone, as its own binary would (any profile).
    Serve {
        /// ad-server, bid-engine, queue-service, analytics-service, agent-service or edge.
        service: ServiceKind,
    },
    /// Run an ad-processor against a queue-service (as `ad-processor` does).
    Processor(admesh_queue_service::processor::ProcessorArgs),
    /// Check the gRPC health of every service.
    Health,
    /// Send a plain-English command to the agent-service.
    Agent {
        /// The command, e.g. "show the next 5 ads".
        text: String,
        /// Show what would change without changing anything.
        #[arg(long)]
        dry_run: bool,
        /// The agent-service to call.
        #[arg(long, default_value = "http://127.0.0.1:50055")]
        url: String,
        /// The role to act with (the gRPC port is for trusted callers; the
        /// REST edge sets the role from the caller's login instead).
        #[arg(long, default_value = "operator", value_parser = ["viewer", "operator", "admin"])]
        role: String,
        /// Print the whole answer as JSON, not just its message.
        #[arg(long)]
        json: bool,
    },
}

/// Runs one service exactly as its own binary does.
fn serve_one(service: ServiceKind, config: Option<PathBuf>) -> ExitCode {
    admesh_common::run_service(service, config, move |context, listener| {
        crate::mesh::serve(service, context, listener)
    })
}

pub fn run(cli: Cli) -> ExitCode {
    let command = cli.command.unwrap_or(Command::Up { no_demo: false });
    if let Command::Serve { service } = command {
        // Builds its own runtime and loads the config itself, like the
        // per-service binaries.
        return serve_one(service, cli.config);
    }
    let config = match MeshConfig::load(cli.config.as_deref()) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("admesh: {error}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("admesh: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match command {
            Command::Up { no_demo } => crate::up::up(config, !no_demo).await,
            Command::Processor(args) => processor(&config, args).await,
            Command::Health => health(&config).await,
            Command::Agent {
                text,
                dry_run,
                url,
                role,
                json,
            } => agent(&url, text, dry_run, &role, json).await,
            Command::Serve { .. } => anyhow::bail!("`admesh serve` runs outside the CLI runtime"),
        }
    });
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("admesh: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn processor(
    config: &MeshConfig,
    args: admesh_queue_service::processor::ProcessorArgs,
) -> anyhow::Result<ExitCode> {
    let telemetry = admesh_common::telemetry::init_telemetry("ad-processor", &config.telemetry)?;
    let shutdown = admesh_common::shutdown::cancel_on_signal();
    let result = admesh_queue_service::processor::run(args.into_options(), shutdown).await;
    telemetry.shutdown();
    result.map(|()| ExitCode::SUCCESS)
}

async fn health(config: &MeshConfig) -> anyhow::Result<ExitCode> {
    use admesh_common::health::{RemoteHealth, check_remote, remote_health_client};
    let mut all_serving = true;
    for (service, url) in config.edge_upstreams() {
        let status = check_remote(&remote_health_client(url)?, Duration::from_secs(2)).await;
        all_serving &= status == RemoteHealth::Serving;
        println!("{:<18} {url:<28} {}", service.name(), status.as_str());
    }
    Ok(if all_serving {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn agent(
    url: &str,
    text: String,
    dry_run: bool,
    role: &str,
    json: bool,
) -> anyhow::Result<ExitCode> {
    use admesh_proto::agent::v1::{CommandRequest, agent_service_client::AgentServiceClient};
    let mut client = AgentServiceClient::new(admesh_common::lazy_channel(url)?);
    let mut request = tonic::Request::new(CommandRequest {
        command: text,
        dry_run,
        use_fallback: false,
    });
    let user = format!(
        "cli:{}",
        std::env::var("USER").unwrap_or_else(|_| "unknown".into())
    );
    use admesh_common::identity::{ROLE_METADATA, USER_METADATA};
    for (key, value) in [(ROLE_METADATA, role), (USER_METADATA, user.as_str())] {
        if let Ok(value) = value.parse() {
            request.metadata_mut().insert(key, value);
        }
    }
    match client.command(request).await {
        Ok(response) => {
            let response = response.into_inner();
            if json {
                let value = admesh_agent_service::execute::json_of(
                    &response,
                    "admesh.agent.v1.CommandResponse",
                );
                println!("{}", serde_json::to_string_pretty(&value)?);
            } else {
                println!("{}", response.message);
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(status) => {
            eprintln!("admesh agent: {:?}: {}", status.code(), status.message());
            Ok(ExitCode::FAILURE)
        }
    }
}
