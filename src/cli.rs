//! The command line: `admesh up`, `admesh health`, `admesh agent "…"`.

use std::{path::PathBuf, process::ExitCode, time::Duration};

use clap::{Parser, Subcommand};

use admesh_common::MeshConfig;

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
        #[arg(value_enum)]
        service: ServiceName,
    },
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
    },
}

/// The services `admesh serve` can run.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum ServiceName {
    AdServer,
    BidEngine,
    QueueService,
    AnalyticsService,
    AgentService,
    Edge,
}

/// Runs one service exactly as its own binary does.
fn serve_one(service: ServiceName, config: Option<PathBuf>) -> ExitCode {
    use admesh_common::run_service;
    match service {
        ServiceName::AdServer => run_service(
            admesh_ad_server::SERVICE_NAME,
            config,
            |c| (c.ad_server.listen, "ad_server.listen"),
            admesh_ad_server::serve,
        ),
        ServiceName::BidEngine => run_service(
            admesh_bid_engine::SERVICE_NAME,
            config,
            |c| (c.bid_engine.listen, "bid_engine.listen"),
            admesh_bid_engine::serve,
        ),
        ServiceName::QueueService => run_service(
            admesh_queue_service::SERVICE_NAME,
            config,
            |c| (c.queue.listen, "queue.listen"),
            admesh_queue_service::serve,
        ),
        ServiceName::AnalyticsService => run_service(
            admesh_analytics_service::SERVICE_NAME,
            config,
            |c| (c.analytics.listen, "analytics.listen"),
            admesh_analytics_service::serve,
        ),
        ServiceName::AgentService => run_service(
            admesh_agent_service::SERVICE_NAME,
            config,
            |c| (c.agent.listen, "agent.listen"),
            admesh_agent_service::serve,
        ),
        ServiceName::Edge => run_service(
            admesh_edge::SERVICE_NAME,
            config,
            |c| (c.edge.listen, "edge.listen"),
            admesh_edge::serve,
        ),
    }
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
            Command::Health => health(&config).await,
            Command::Agent { text, dry_run, url } => agent(&url, text, dry_run).await,
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

async fn health(config: &MeshConfig) -> anyhow::Result<ExitCode> {
    use admesh_common::health::{RemoteHealth, check_remote, remote_health_client};
    let mut all_serving = true;
    for (name, url) in [
        ("ad-server", &config.edge.ad_server_url),
        ("bid-engine", &config.edge.bid_engine_url),
        ("queue-service", &config.edge.queue_url),
        ("analytics-service", &config.edge.analytics_url),
        ("agent-service", &config.edge.agent_url),
    ] {
        let status = check_remote(&remote_health_client(url)?, Duration::from_secs(2)).await;
        all_serving &= status == RemoteHealth::Serving;
        println!("{name:<18} {url:<28} {}", status.as_str());
    }
    Ok(if all_serving {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn agent(url: &str, text: String, dry_run: bool) -> anyhow::Result<ExitCode> {
    use admesh_proto::agent::v1::{CommandRequest, agent_service_client::AgentServiceClient};
    let mut client = AgentServiceClient::new(admesh_common::lazy_channel(url)?);
    let request = CommandRequest {
        command: text,
        dry_run,
        use_fallback: false,
    };
    match client.command(request).await {
        Ok(response) => {
            let response = response.into_inner();
            println!("{}", response.message);
            Ok(ExitCode::SUCCESS)
        }
        Err(status) => {
            eprintln!("admesh agent: {:?}: {}", status.code(), status.message());
            Ok(ExitCode::FAILURE)
        }
    }
}
