//! The AdMesh API: generated messages, clients and servers for every service,
//! and the file-descriptor set of each service (for reflection and the REST
//! edge). The `.proto` files in `proto/proto/` are the contract.

#![allow(clippy::all, missing_docs)]

/// Generated code, nested by protobuf package so cross-package references
/// resolve.
pub mod admesh {
    pub mod common {
        pub mod v1 {
            tonic::include_proto!("admesh.common.v1");
        }
    }
    pub mod bid {
        pub mod v1 {
            tonic::include_proto!("admesh.bid.v1");
        }
    }
    pub mod adserver {
        pub mod v1 {
            tonic::include_proto!("admesh.adserver.v1");
        }
    }
    pub mod queue {
        pub mod v1 {
            tonic::include_proto!("admesh.queue.v1");
        }
    }
    pub mod analytics {
        pub mod v1 {
            tonic::include_proto!("admesh.analytics.v1");
        }
    }
    pub mod agent {
        pub mod v1 {
            tonic::include_proto!("admesh.agent.v1");
        }
    }
    pub mod edge {
        pub mod v1 {
            tonic::include_proto!("admesh.edge.v1");
        }
    }
}

/// The `google.api.http` rule types, as the edge reads them.
pub mod google {
    pub mod api {
        tonic::include_proto!("google.api");
    }
}

pub use admesh::{adserver, agent, analytics, bid, common, edge, queue};

/// Encoded `FileDescriptorSet`s, one per service, each with all its imports.
pub mod descriptors {
    macro_rules! descriptor {
        ($stem:literal) => {
            include_bytes!(concat!(env!("OUT_DIR"), "/", $stem, "_descriptor.bin"))
        };
    }

    pub const BID_ENGINE: &[u8] = descriptor!("bid_engine");
    pub const AD_SERVER: &[u8] = descriptor!("ad_server");
    pub const QUEUE: &[u8] = descriptor!("queue");
    pub const ANALYTICS: &[u8] = descriptor!("analytics");
    pub const AGENT: &[u8] = descriptor!("agent");
    pub const EDGE: &[u8] = descriptor!("edge");
    /// Every service in one set (the edge's REST routes and OpenAPI).
    pub const EVERY_SERVICE: &[u8] = descriptor!("all");

    /// (gRPC service name, descriptor set) of every service.
    pub const ALL: &[(&str, &[u8])] = &[
        ("admesh.bid.v1.BidEngine", BID_ENGINE),
        ("admesh.adserver.v1.AdServer", AD_SERVER),
        ("admesh.queue.v1.QueueService", QUEUE),
        ("admesh.analytics.v1.AnalyticsService", ANALYTICS),
        ("admesh.agent.v1.AgentService", AGENT),
        ("admesh.edge.v1.EdgeAdmin", EDGE),
    ];
}

/// Every message by name, and proto3 JSON as the REST edge and the agent
/// render it: lowerCamelCase names, 64-bit integers as strings, enums by
/// name, every field present.
pub mod json {
    use std::sync::OnceLock;

    use prost_reflect::{DescriptorPool, DynamicMessage, SerializeOptions};

    /// Every service's descriptors (with their options and comments).
    pub fn pool() -> &'static DescriptorPool {
        static POOL: OnceLock<DescriptorPool> = OnceLock::new();
        POOL.get_or_init(|| {
            DescriptorPool::decode(crate::descriptors::EVERY_SERVICE)
                .expect("the descriptor set compiled into this crate decodes")
        })
    }

    /// How AdMesh renders messages as JSON.
    pub fn options() -> SerializeOptions {
        SerializeOptions::new()
            .skip_default_fields(false)
            .stringify_64_bit_integers(true)
    }

    /// A generated message as JSON; `Null` if `full_name` is not a message
    /// of the API.
    pub fn to_json<M: prost::Message>(message: &M, full_name: &str) -> serde_json::Value {
        let Some(descriptor) = pool().get_message_by_name(full_name) else {
            return serde_json::Value::Null;
        };
        DynamicMessage::decode(descriptor, message.encode_to_vec().as_slice())
            .ok()
            .and_then(|dynamic| {
                dynamic
                    .serialize_with_options(serde_json::value::Serializer, &options())
                    .ok()
            })
            .unwrap_or(serde_json::Value::Null)
    }
}
