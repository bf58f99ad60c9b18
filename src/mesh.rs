//! Which code serves which service: the one table `admesh up` and
//! `admesh serve <service>` both start services from.

use std::{future::Future, pin::Pin};

use admesh_common::{ServiceContext, ServiceKind};
use tokio::net::TcpListener;

/// A running service; completes when it has drained after shutdown.
pub type Serving = Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>>;

/// Serves `service` on `listener` until `context.shutdown` fires.
pub fn serve(service: ServiceKind, context: ServiceContext, listener: TcpListener) -> Serving {
    match service {
        ServiceKind::AdServer => Box::pin(admesh_ad_server::serve(context, listener)),
        ServiceKind::BidEngine => Box::pin(admesh_bid_engine::serve(context, listener)),
        ServiceKind::QueueService => Box::pin(admesh_queue_service::serve(context, listener)),
        ServiceKind::AnalyticsService => {
            Box::pin(admesh_analytics_service::serve(context, listener))
        }
        ServiceKind::AgentService => Box::pin(admesh_agent_service::serve(context, listener)),
        ServiceKind::Edge => Box::pin(admesh_edge::serve(context, listener)),
    }
}
