//! `admesh up`: every service and the edge in one process, on the embedded
//! profile by default. Listeners are bound first and the services are told
//! each other's real addresses, so `:0` ports work (tests use them).

use std::{collections::HashMap, net::SocketAddr, process::ExitCode, sync::Arc};

use anyhow::Context;
use tokio::task::JoinSet;

use admesh_common::{
    MeshConfig, ServiceContext, ServiceKind,
    runner::{bind, connect_storage},
    shutdown::cancel_on_signal,
    telemetry::init_telemetry,
};

pub async fn up(mut config: MeshConfig, seed_demo: bool) -> anyhow::Result<ExitCode> {
    let telemetry = init_telemetry("admesh", &config.telemetry)?;
    let shutdown = cancel_on_signal();
    let (database, redis) = connect_storage(&config, &shutdown).await?;
    // Before the demo data; the services' readiness checks then find the
    // migrations applied.
    database.migrate().await?;
    if seed_demo {
        let inserted = crate::demo::seed(&database)
            .await
            .context("seeding demo data")?;
        if inserted > 0 {
            tracing::info!(campaigns = inserted, "demo campaigns inserted");
        }
    }

    let mut listeners = HashMap::new();
    for service in ServiceKind::ALL {
        let listener = bind(service.listen(&config), service.listen_key()).await?;
        listeners.insert(service, (listener.local_addr()?, listener));
    }
    let address_of = |service: ServiceKind| listeners[&service].0;
    config.point_services_at(|service| dial_url(address_of(service)));
    if config.ad_server.public_base_url
        == admesh_common::config::AdServerConfig::default().public_base_url
    {
        config.ad_server.public_base_url = dial_url(address_of(ServiceKind::Edge));
    }
    print_banner(&address_of, database.dialect(), config.is_cluster_profile());

    let address_of_queue = address_of(ServiceKind::QueueService);
    let context = ServiceContext {
        config: Arc::new(config),
        database: database.clone(),
        redis,
        shutdown: shutdown.clone(),
    };
    let mut services = JoinSet::new();
    for (service, (_, listener)) in listeners {
        services.spawn(crate::mesh::serve(service, context.clone(), listener));
    }
    // The processor pool works the queue over loopback gRPC, like any other
    // processor (in Kubernetes, `ad-processor` pods do).
    {
        let queue_url = dial_url(address_of_queue);
        for index in 0..context.config.queue.embedded_processors {
            let options = admesh_queue_service::processor::ProcessorOptions {
                queue_url: queue_url.clone(),
                processor_id: format!("embedded-{}-{index}", std::process::id()),
                capacity: 64,
                work_ms: 0,
            };
            services.spawn(admesh_queue_service::processor::run(
                options,
                shutdown.clone(),
            ));
        }
    }

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

/// A URL other services can dial: the unspecified address means loopback.
fn dial_url(address: SocketAddr) -> String {
    let host = if address.ip().is_unspecified() {
        "127.0.0.1".to_string()
    } else {
        address.ip().to_string()
    };
    format!("http://{host}:{}", address.port())
}

/// One machine-readable line per service (tests and scripts parse them),
/// then a human summary.
fn print_banner(address_of: &dyn Fn(ServiceKind) -> SocketAddr, dialect: &str, cluster: bool) {
    for service in ServiceKind::ALL {
        println!(
            "admesh: {} listening on {}",
            service.name(),
            address_of(service)
        );
    }
    let profile = if cluster {
        "cluster (Redis)"
    } else {
        "embedded"
    };
    println!(
        "admesh: mesh up ({profile} profile, {dialect}); REST at {}/health, gRPC: grpcurl -plaintext {} list",
        dial_url(address_of(ServiceKind::Edge)),
        dial_url(address_of(ServiceKind::BidEngine)).trim_start_matches("http://"),
    );
}
