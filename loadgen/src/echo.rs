//! The stack's limit: a bare tonic echo over the same two hops as the serve
//! path, with the same messages. The front answers `AdServer/Serve` by
//! calling `BidEngine/Bid` on the back, which answers at once. No AdMesh
//! layers: no auction, telemetry, metrics or health.

use std::net::SocketAddr;

use admesh_proto::{
    adserver::v1::{
        ServeRequest, ServeResponse,
        ad_server_server::{AdServer, AdServerServer},
    },
    bid::v1::{
        BidRequest, BidResponse,
        bid_engine_client::BidEngineClient,
        bid_engine_server::{BidEngine, BidEngineServer},
    },
};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, transport::Channel};

struct EchoBack;

#[tonic::async_trait]
impl BidEngine for EchoBack {
    async fn bid(&self, request: Request<BidRequest>) -> Result<Response<BidResponse>, Status> {
        let request = request.into_inner();
        Ok(Response::new(BidResponse {
            request_id: request.request_id,
            filled: true,
            campaign_id: "echo".into(),
            ad_id: request.placement_id,
            bid_price: 1,
            ..Default::default()
        }))
    }
}

struct EchoFront {
    back: BidEngineClient<Channel>,
}

#[tonic::async_trait]
impl AdServer for EchoFront {
    async fn serve(
        &self,
        request: Request<ServeRequest>,
    ) -> Result<Response<ServeResponse>, Status> {
        let request = request.into_inner();
        let answer = self
            .back
            .clone()
            .bid(BidRequest {
                user_id: request.user_id,
                placement_id: request.placement_id,
                country_code: request.country_code,
                device_type: request.device_type,
                age: request.age,
                interests: request.interests,
                ..Default::default()
            })
            .await?
            .into_inner();
        Ok(Response::new(ServeResponse {
            filled: answer.filled,
            campaign_id: answer.campaign_id,
            ad_id: answer.ad_id,
            bid_price: answer.bid_price,
            ..Default::default()
        }))
    }
}

pub struct EchoTwoHop {
    pub front: SocketAddr,
    stop: CancellationToken,
}

async fn listen() -> anyhow::Result<(tokio::net::TcpListener, SocketAddr)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    Ok((listener, address))
}

impl EchoTwoHop {
    pub async fn start() -> anyhow::Result<Self> {
        let stop = CancellationToken::new();
        let (back_listener, back) = listen().await?;
        let (front_listener, front) = listen().await?;
        let back_stop = stop.clone();
        tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(BidEngineServer::new(EchoBack))
                .serve_with_incoming_shutdown(
                    admesh_common::nodelay_incoming(back_listener),
                    back_stop.cancelled_owned(),
                )
                .await
        });
        let channel = admesh_common::lazy_channel(&format!("http://{back}"))?;
        let front_service = AdServerServer::new(EchoFront {
            back: BidEngineClient::new(channel),
        });
        let front_stop = stop.clone();
        tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(front_service)
                .serve_with_incoming_shutdown(
                    admesh_common::nodelay_incoming(front_listener),
                    front_stop.cancelled_owned(),
                )
                .await
        });
        Ok(Self { front, stop })
    }

    pub fn stop(&self) {
        self.stop.cancel();
    }
}
