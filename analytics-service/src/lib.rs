//! The analytics-service: exact campaign and ad analytics (SPEC §5).
//!
//! - [`ingest`]: the consumer (batches from the event stream, recorded
//!   exactly once, acknowledged after commit).
//! - [`aggregate`]: events to per-day/per-hour deltas and click attribution;
//!   [`ratios`]: CTR, CPC, CPM from integer totals; [`dates`]: UTC dates.
//! - [`store`]: the SQL side; [`service`]: the gRPC API.

pub mod aggregate;
pub mod dates;
pub mod ingest;
mod log;
pub mod ratios;
pub mod service;
pub mod store;

use std::{sync::Arc, time::Duration};

use admesh_common::{GrpcService, ServiceContext, ServiceKind, events::event_stream, serve_grpc};
use admesh_proto::analytics::v1::analytics_service_server::AnalyticsServiceServer;
use tokio::net::TcpListener;

use crate::{
    ingest::{ConsumerSettings, consume, export_backlog},
    service::AnalyticsServiceImpl,
    store::AnalyticsStore,
};

/// Which service of the mesh this is.
pub const SERVICE: ServiceKind = ServiceKind::AnalyticsService;

/// The service's routes, descriptor and names, for the gRPC host.
pub fn grpc_service(service: AnalyticsServiceImpl) -> GrpcService {
    GrpcService {
        name: SERVICE.name(),
        grpc_name: "admesh.analytics.v1.AnalyticsService",
        descriptor: admesh_proto::descriptors::ANALYTICS,
        routes: tonic::service::Routes::new(AnalyticsServiceServer::new(service)),
    }
}

/// This replica's consumer name: unique per process, so a restarted
/// replica's unacknowledged entries are claimed, not mixed up.
fn consumer_name() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "analytics".into());
    format!(
        "{host}-{}-{}",
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    )
}

/// Serves and consumes until `context.shutdown` fires; the batch in hand
/// is finished (or left unacknowledged) before the service stops.
pub async fn serve(context: ServiceContext, listener: TcpListener) -> anyhow::Result<()> {
    let dependencies = context.dependencies();
    let shutdown = context.shutdown.clone();
    let stream = event_stream(&context);
    let store = AnalyticsStore::new(context.database.clone());
    let config = &context.config.analytics;
    // SQLite has one writer; PostgreSQL takes one transaction per core.
    let writers = if context.redis.is_some() {
        config.writers.max(1)
    } else {
        1
    };
    let base_name = consumer_name();
    let template = ConsumerSettings {
        name: String::new(),
        batch_size: config.batch_size,
        attribution_window_ms: i64::try_from(config.attribution_window_secs)
            .unwrap_or(i64::MAX / 1000)
            .saturating_mul(1000),
        claim_idle: Duration::from_millis(config.claim_idle_ms),
        retention_days: config.retention_days,
    };
    let settings: Vec<ConsumerSettings> = (0..writers)
        .map(|writer| ConsumerSettings {
            name: format!("{base_name}-{writer}"),
            ..template.clone()
        })
        .collect();
    let database = context.database.clone();
    let consumer_stream = Arc::clone(&stream);
    let consumer_store = store.clone();
    let consumer_shutdown = shutdown.clone();
    let consumer = tokio::spawn(async move {
        // The tables must exist before the first batch.
        while let Err(error) = database.migrate().await {
            tracing::warn!(error = %format!("{error:#}"), "waiting for SQL before consuming");
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(500)) => {}
                () = consumer_shutdown.cancelled() => return,
            }
        }
        let consumers: Vec<_> = settings
            .into_iter()
            .map(|settings| {
                tokio::spawn(consume(
                    Arc::clone(&consumer_stream),
                    consumer_store.clone(),
                    settings,
                    consumer_shutdown.clone(),
                ))
            })
            .collect();
        for consumer in consumers {
            let _ = consumer.await;
        }
    });
    let backlog = tokio::spawn(export_backlog(Arc::clone(&stream), shutdown.clone()));
    let service = AnalyticsServiceImpl::new(store, stream);
    let served = serve_grpc(
        listener,
        grpc_service(service),
        dependencies,
        shutdown.clone(),
    )
    .await;
    shutdown.cancel();
    let _ = consumer.await;
    let _ = backlog.await;
    served
}
