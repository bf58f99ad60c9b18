//! The ad-server: serve and click tracking (SPEC §3).
//!
//! - [`service`]: Serve (bid-engine call within the deadline, behind the
//!   [`breaker`]), Click and ListAds.
//! - [`deadline`]: the bid call's time budget; [`click_token`]: signed
//!   click-tracking tokens; [`store`]: clicks and ads in SQL.
//! - Impressions and clicks go to the event stream through
//!   [`admesh_common::events::EventPublisher`], flushed at shutdown.

pub mod breaker;
pub mod click_token;
pub mod deadline;
pub mod service;
pub mod store;

use std::{sync::Arc, time::Duration};

use admesh_common::{
    GrpcService, ServiceContext, ServiceKind, TraceContextInterceptor,
    events::{EventPublisher, PublisherTask, event_stream},
    lazy_channel, serve_grpc,
};
use admesh_proto::{
    adserver::v1::ad_server_server::AdServerServer, bid::v1::bid_engine_client::BidEngineClient,
};
use tokio::net::TcpListener;

use crate::{
    breaker::CircuitBreaker,
    click_token::ClickSigner,
    service::{AdServerParts, AdServerService},
    store::AdServerStore,
};

/// Which service of the mesh this is.
pub const SERVICE: ServiceKind = ServiceKind::AdServer;

/// Builds the service and starts its event publisher.
pub fn build(context: &ServiceContext) -> anyhow::Result<(AdServerService, PublisherTask)> {
    let config = &context.config.ad_server;
    let channel = lazy_channel(&config.bid_engine_url)?;
    let secret = config.click_secret.expose();
    let signer = if secret.is_empty() {
        if context.config.is_cluster_profile() {
            tracing::warn!(
                "ad_server.click_secret is not set: click tokens verify only on the replica that issued them"
            );
        }
        ClickSigner::new(rand::random::<[u8; 32]>())
    } else {
        ClickSigner::new(secret.as_bytes())
    };
    let (publisher, publisher_task) = EventPublisher::spawn(event_stream(context));
    let service = AdServerService::new(AdServerParts {
        bid_engine: BidEngineClient::with_interceptor(channel, TraceContextInterceptor),
        breaker: Arc::new(CircuitBreaker::new(
            config.breaker_failures,
            Duration::from_millis(config.breaker_cooldown_ms),
        )),
        bid_bound: Duration::from_millis(config.bid_timeout_ms),
        signer,
        public_base_url: config.public_base_url.clone(),
        publisher,
        store: AdServerStore::new(context.database.clone()),
    });
    Ok((service, publisher_task))
}

/// The service's routes, descriptor and names, for the gRPC host.
pub fn grpc_service(service: AdServerService) -> GrpcService {
    GrpcService {
        name: SERVICE.name(),
        grpc_name: "admesh.adserver.v1.AdServer",
        descriptor: admesh_proto::descriptors::AD_SERVER,
        routes: tonic::service::Routes::new(AdServerServer::new(service)),
    }
}

/// Serves until `context.shutdown` fires, drains, then writes the events
/// still buffered.
pub async fn serve(context: ServiceContext, listener: TcpListener) -> anyhow::Result<()> {
    let (service, publisher_task) = build(&context)?;
    let served = serve_grpc(
        listener,
        grpc_service(service),
        context.dependencies(),
        context.shutdown.clone(),
    )
    .await;
    publisher_task.finish().await;
    served
}
