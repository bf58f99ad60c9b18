//! The bid-engine: campaigns and the real-time auction (SPEC §2).
//!
//! - [`auction`]: eligibility, ranking, clearing price (plain functions).
//! - [`ledger`]: budgets and frequency caps, charged atomically (embedded
//!   and Redis implementations side by side).
//! - [`catalog`]: the in-memory campaign index and its invalidation.
//! - [`store`]: campaigns in SQL; [`input`]: request checks and conversions.
//! - [`service`]: the gRPC API.

pub mod auction;
pub mod campaign;
pub mod catalog;
pub mod input;
pub mod ledger;
pub mod service;
pub mod store;
pub mod synthetic;

use std::sync::Arc;

use admesh_common::{GrpcService, ServiceContext, ServiceKind, serve_grpc};
use admesh_proto::bid::v1::bid_engine_server::BidEngineServer;
use tokio::net::TcpListener;

use crate::{
    catalog::Catalog,
    ledger::{EmbeddedLedger, RedisLedger, SpendJournal, SpendLedger},
    service::BidEngineService,
    store::CampaignStore,
};

pub use service::BidEngineService as Service;

/// Which service of the mesh this is.
pub const SERVICE: ServiceKind = ServiceKind::BidEngine;

/// The bid-engine's moving parts, built from the process context.
pub struct BidEngine {
    pub catalog: Arc<Catalog>,
    pub ledger: Arc<dyn SpendLedger>,
    pub service: BidEngineService,
}

impl BidEngine {
    /// Redis in the cluster profile, in-process otherwise.
    pub fn new(context: &ServiceContext) -> Self {
        let journal = SpendJournal::new(context.database.clone());
        let ledger: Arc<dyn SpendLedger> = match &context.redis {
            Some(redis) => Arc::new(RedisLedger::new(redis.clone(), journal)),
            None => Arc::new(EmbeddedLedger::new(journal)),
        };
        let catalog = Arc::new(Catalog::new(
            CampaignStore::new(context.database.clone()),
            context.redis.clone(),
        ));
        let service = BidEngineService::new(
            Arc::clone(&catalog),
            Arc::clone(&ledger),
            context.config.bid_engine.auction,
        );
        Self {
            catalog,
            ledger,
            service,
        }
    }
}

/// The service's routes, descriptor and names, for the gRPC host.
pub fn grpc_service(service: BidEngineService) -> GrpcService {
    GrpcService {
        name: SERVICE.name(),
        grpc_name: "admesh.bid.v1.BidEngine",
        descriptor: admesh_proto::descriptors::BID_ENGINE,
        routes: tonic::service::Routes::new(BidEngineServer::new(service)),
    }
}

/// Serves until `context.shutdown` fires, drains, then writes the spend
/// still pending to SQL.
pub async fn serve(context: ServiceContext, listener: TcpListener) -> anyhow::Result<()> {
    let engine = BidEngine::new(&context);
    let maintenance = tokio::spawn(
        Arc::clone(&engine.catalog).maintain(Arc::clone(&engine.ledger), context.shutdown.clone()),
    );
    // Bids need the campaign cache: not SERVING before its first load.
    let mut dependencies = context.dependencies();
    let catalog = Arc::clone(&engine.catalog);
    dependencies.push(admesh_common::Dependency::Ready {
        name: "campaign_cache",
        check: Arc::new(move || catalog.is_loaded()),
    });
    let served = serve_grpc(
        listener,
        grpc_service(engine.service),
        dependencies,
        context.shutdown.clone(),
    )
    .await;
    context.shutdown.cancel();
    let _ = maintenance.await;
    Catalog::final_flush(engine.ledger.as_ref()).await;
    served
}
