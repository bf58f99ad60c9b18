//! The queue-service: the ad-processing priority queue (SPEC §4), and the
//! ad-processor that works it.
//!
//! - [`ordering`]: the dispatch order (starved first, then priority, FIFO).
//! - [`job`]: jobs and the checks a submission passes; [`settings`]: the
//!   live configuration; [`retry`]: backoff with jitter.
//! - [`store`]: the queue's state behind one trait; [`records`]: jobs and
//!   the audit trail in SQL.
//! - [`dispatch`]: pushing leases down `Process` streams; [`service`]: the
//!   gRPC API.
//! - [`analysis`]: the ad analysis; [`processor`]: the processor client
//!   (the `ad-processor` binary and the pool in `admesh up`).

pub mod analysis;
pub mod convert;
pub mod dispatch;
pub mod job;
pub mod ordering;
pub mod processor;
pub mod records;
pub mod retry;
pub mod service;
pub mod settings;
pub mod store;
pub mod transitions;

use std::{sync::Arc, time::Duration};

use admesh_common::{GrpcService, ServiceContext, ServiceKind, serve_grpc};
use admesh_proto::queue::v1::queue_service_server::QueueServiceServer;
use tokio::net::TcpListener;

use crate::{
    dispatch::Dispatcher,
    records::JobRecords,
    service::QueueServiceImpl,
    store::{EmbeddedQueue, QueueStore, RedisQueue},
};

/// Which service of the mesh this is.
pub const SERVICE: ServiceKind = ServiceKind::QueueService;

fn grpc_service(routes: tonic::service::Routes) -> GrpcService {
    GrpcService {
        name: SERVICE.name(),
        grpc_name: "admesh.queue.v1.QueueService",
        descriptor: admesh_proto::descriptors::QUEUE,
        routes,
    }
}

/// Opens the profile's queue (Redis in the cluster profile, in process
/// otherwise), retrying while SQL is not reachable yet.
async fn open_store(context: &ServiceContext) -> anyhow::Result<Option<Arc<dyn QueueStore>>> {
    let defaults = settings::QueueSettings::from_config(&context.config.queue);
    loop {
        let opened = async {
            context.database.migrate().await?;
            let records = JobRecords::new(context.database.clone());
            let store: Arc<dyn QueueStore> = match &context.redis {
                Some(redis) => {
                    let prefix = &context.config.redis.queue_prefix;
                    RedisQueue::open(redis.clone(), prefix, records, defaults).await?
                }
                None => EmbeddedQueue::open(records, defaults).await?,
            };
            anyhow::Ok(store)
        }
        .await;
        match opened {
            Ok(queue) => return Ok(Some(queue)),
            Err(error) => {
                tracing::warn!(error = %format!("{error:#}"), "cannot load the queue yet; retrying");
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_millis(500)) => {}
                    () = context.shutdown.cancelled() => return Ok(None),
                }
            }
        }
    }
}

/// Serves until `context.shutdown` fires, then drains and writes what is
/// pending. The queue loads from SQL in the background: until it has, RPCs
/// answer UNAVAILABLE and health says NOT_SERVING.
pub async fn serve(context: ServiceContext, listener: TcpListener) -> anyhow::Result<()> {
    let mut dependencies = context.dependencies();
    let shutdown = context.shutdown.clone();
    let slot: service::QueueSlot = Arc::default();
    let loader = tokio::spawn(load_and_maintain(context.clone(), Arc::clone(&slot)));
    let loaded = Arc::clone(&slot);
    dependencies.push(admesh_common::Dependency::Ready {
        name: "queue_loaded",
        check: Arc::new(move || loaded.get().is_some()),
    });
    let service = QueueServiceImpl::new(Arc::clone(&slot), shutdown.clone());
    let routes = tonic::service::Routes::new(QueueServiceServer::new(service));
    let served = serve_grpc(
        listener,
        grpc_service(routes),
        dependencies,
        shutdown.clone(),
    )
    .await;
    shutdown.cancel();
    let _ = loader.await;
    if let Some(queue) = slot.get()
        && tokio::time::timeout(service::FLUSH_TIMEOUT, queue.store.flush())
            .await
            .is_err()
    {
        tracing::error!("queue writes still pending at shutdown");
    }
    served
}

/// Loads the queue, then expires leases until shutdown.
async fn load_and_maintain(context: ServiceContext, slot: service::QueueSlot) {
    let Ok(Some(store)) = open_store(&context).await else {
        return;
    };
    let dispatcher = Dispatcher::new(Arc::clone(&store));
    let _ = slot.set(service::LoadedQueue {
        store: Arc::clone(&store),
        dispatcher: Arc::clone(&dispatcher),
    });
    dispatch::expire_leases(store, dispatcher, context.shutdown.clone()).await;
}
