//! `admesh up`: every service and the edge in one process, on the embedded
//! profile by default. Listeners are bound first and the services are told
//! each other's real addresses, so `:0` ports work (tests use them).

use std::{net::SocketAddr, process::ExitCode, sync::Arc};

use anyhow::Context;
use tokio::{net::TcpListener, task::JoinSet};

use admesh_common::{
    MeshConfig, ServiceContext,
    runner::{bind, connect_storage},
    shutdown::cancel_on_signal,
    telemetry::init_telemetry,
};

pub async fn up(mut config: MeshConfig, seed_demo: bool) -> anyhow::Result<ExitCode> {
    let telemetry = init_telemetry("admesh", &config.telemetry)?;
    let shutdown = cancel_on_signal();
    let (database, redis) = connect_storage(&config, &shutdown).await?;
    database.migrate().await?;
    if seed_demo {
        let inserted = crate::demo::seed(&database)
            .await
            .context("seeding demo data")?;
        if inserted > 0 {
            tracing::info!(campaigns = inserted, "demo campaigns inserted");
        }
    }

    let listeners = Listeners::bind(&config).await?;
    listeners.point_services_at_each_other(&mut config);
    let context = ServiceContext {
        config: Arc::new(config),
        database: database.clone(),
        redis,
        shutdown: shutdown.clone(),
    };
    listeners.print_banner(database.dialect(), context.redis.is_some());

    let mut services = JoinSet::new();
    let Listeners {
        ad_server,
        bid_engine,
        queue,
        analytics,
        agent,
        edge,
    } = listeners;
    services.spawn(admesh_bid_engine::serve(context.clone(), bid_engine.1));
    services.spawn(admesh_ad_server::serve(context.clone(), ad_server.1));
    services.spawn(admesh_queue_service::serve(context.clone(), queue.1));
    services.spawn(admesh_analytics_service::serve(
        context.clone(),
        analytics.1,
    ));
    services.spawn(admesh_agent_service::serve(context.clone(), agent.1));
    services.spawn(admesh_edge::serve(context.clone(), edge.1));

    let mut failed = false;
    while let Some(result) = services.join_next().await {
        let error = match result {
            Ok(Ok(())) => continue,
            Ok(Err(error)) => error,
            Err(join_error) => anyhow::anyhow!("a service panicked: {join_error}"),
        };
        tracing::error!(error = %format!("{error:#}"), "a service stopped; shutting the mesh down");
        eprintln!("admesh: {error:#}");
        failed = true;
        shutdown.cancel();
    }
    database.close().await;
    telemetry.shutdown();
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Every service's bound listener, with the address it really got.
struct Listeners {
    ad_server: (SocketAddr, TcpListener),
    bid_engine: (SocketAddr, TcpListener),
    queue: (SocketAddr, TcpListener),
    analytics: (SocketAddr, TcpListener),
    agent: (SocketAddr, TcpListener),
    edge: (SocketAddr, TcpListener),
}

async fn bind_one(address: SocketAddr, key: &str) -> anyhow::Result<(SocketAddr, TcpListener)> {
    let listener = bind(address, key).await?;
    Ok((listener.local_addr()?, listener))
}

/// A URL other services can dial: the unspecified address means loopback.
fn dial_url(address: SocketAddr) -> String {
    let host = if address.ip().is_unspecified() {
        "127.0.0.1".to_string()
    } else {
        address.ip().to_string()
    };
    format!("http://{host}:{}", address.port())
}

impl Listeners {
    async fn bind(config: &MeshConfig) -> anyhow::Result<Self> {
        Ok(Self {
            ad_server: bind_one(config.ad_server.listen, "ad_server.listen").await?,
            bid_engine: bind_one(config.bid_engine.listen, "bid_engine.listen").await?,
            queue: bind_one(config.queue.listen, "queue.listen").await?,
            analytics: bind_one(config.analytics.listen, "analytics.listen").await?,
            agent: bind_one(config.agent.listen, "agent.listen").await?,
            edge: bind_one(config.edge.listen, "edge.listen").await?,
        })
    }

    fn point_services_at_each_other(&self, config: &mut MeshConfig) {
        let ad_server = dial_url(self.ad_server.0);
        let bid_engine = dial_url(self.bid_engine.0);
        let queue = dial_url(self.queue.0);
        let analytics = dial_url(self.analytics.0);
        let agent = dial_url(self.agent.0);
        config.ad_server.bid_engine_url = bid_engine.clone();
        config.agent.ad_server_url = ad_server.clone();
        config.agent.bid_engine_url = bid_engine.clone();
        config.agent.queue_url = queue.clone();
        config.agent.analytics_url = analytics.clone();
        config.edge.ad_server_url = ad_server;
        config.edge.bid_engine_url = bid_engine;
        config.edge.queue_url = queue;
        config.edge.analytics_url = analytics;
        config.edge.agent_url = agent;
        if config.ad_server.public_base_url
            == admesh_common::config::AdServerConfig::default().public_base_url
        {
            config.ad_server.public_base_url = dial_url(self.edge.0);
        }
    }

    fn print_banner(&self, dialect: &str, cluster: bool) {
        let profile = if cluster {
            "cluster (Redis)"
        } else {
            "embedded"
        };
        // One machine-readable line per service (tests and scripts parse
        // them), then a human summary.
        for (name, (address, _)) in [
            ("ad-server", &self.ad_server),
            ("bid-engine", &self.bid_engine),
            ("queue-service", &self.queue),
            ("analytics-service", &self.analytics),
            ("agent-service", &self.agent),
            ("edge", &self.edge),
        ] {
            println!("admesh: {name} listening on {address}");
        }
        println!(
            "admesh: mesh up ({profile} profile, {dialect}); REST at {}/health, gRPC: grpcurl -plaintext {} list",
            dial_url(self.edge.0),
            dial_url(self.bid_engine.0).trim_start_matches("http://"),
        );
    }
}
