//! grpc-gateway-style transcoding: REST routes read from the services'
//! descriptors, requests built by the proto3 JSON mapping and forwarded
//! over gRPC with the caller's deadline, trace context and identity.

pub mod codec;
pub mod json;
pub mod render;
pub mod routes;
pub mod template;

use std::{collections::HashMap, time::Duration};

use bytes::Bytes;
use prost_reflect::DescriptorPool;
use tonic::{Status, metadata::MetadataMap};
use tower::{BoxError, ServiceExt, util::BoxCloneSyncService};

use self::{codec::RawCodec, routes::Route};

/// A gRPC transport to one service: a channel, or a server in this process.
pub type Upstream = BoxCloneSyncService<
    http::Request<tonic::body::Body>,
    http::Response<tonic::body::Body>,
    TransportError,
>;

/// A transport failure. A concrete type rather than a boxed error: the
/// compiler cannot prove a `BoxError` meets tonic's `Into<StdError>` bound
/// for every lifetime inside async handlers.
#[derive(Debug)]
pub struct TransportError(pub BoxError);

impl std::fmt::Display for TransportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for TransportError {
    // tonic looks down the source chain to tell a broken connection
    // (UNAVAILABLE) from an unknown failure.
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(self.0.as_ref())
    }
}

/// Every service's descriptors in one pool.
pub fn descriptor_pool() -> anyhow::Result<DescriptorPool> {
    Ok(admesh_proto::json::pool().clone())
}

/// A channel to a remote service as an [`Upstream`].
pub fn remote(channel: admesh_common::MeshChannel) -> Upstream {
    BoxCloneSyncService::new(channel.map_err(TransportError))
}

/// Calls services by their full name.
#[derive(Clone, Default)]
pub struct Upstreams {
    by_service: HashMap<String, Upstream, admesh_common::FastHash>,
}

impl std::fmt::Debug for Upstreams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.by_service.keys()).finish()
    }
}

impl Upstreams {
    pub fn insert(&mut self, service: &str, upstream: Upstream) {
        self.by_service.insert(service.to_string(), upstream);
    }

    /// Calls the route's RPC with `message` (protobuf-encoded); answers
    /// the response's bytes.
    pub async fn call(
        &self,
        route: &Route,
        message: Vec<u8>,
        metadata: MetadataMap,
        timeout: Duration,
    ) -> Result<Bytes, Status> {
        let transport = self.by_service.get(route.service_name()).ok_or_else(|| {
            Status::unimplemented(format!(
                "{} is not reachable from the edge",
                route.service_name()
            ))
        })?;
        let mut grpc = tonic::client::Grpc::new(transport.clone());
        grpc.ready()
            .await
            .map_err(|error| Status::unavailable(format!("{}: {error}", route.service_name())))?;
        let mut request = tonic::Request::new(message);
        *request.metadata_mut() = metadata;
        request.set_timeout(timeout);
        let response = grpc
            .unary(request, route.grpc_path.clone(), RawCodec)
            .await?;
        Ok(response.into_inner())
    }
}
