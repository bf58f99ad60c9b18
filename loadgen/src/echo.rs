//! The stack's limit: a bare tonic echo over the same two hops as the serve
//! path, with the same messages. The front answers `AdServer/Serve` by
//! calling `BidEngine/Bid` on the back, which answers at once. No AdMesh
//! layers: no auction, telemetry, metrics or health.
//!
//! "The same messages" means the same fields at the same sizes as a filled
//! serve: the back answers a winning bid with its ad content, the front a
//! filled ad with an impression id and a click-tracking URL as long as the
//! ad-server's. The echo computes nothing; it moves the bytes, so the
//! ratio compares what AdMesh does, not how much it says.

use std::net::SocketAddr;

use admesh_ad_server::click_token::{ClickClaims, ClickSigner};
use admesh_proto::{
    adserver::v1::{
        ServeRequest, ServeResponse,
        ad_server_server::{AdServer, AdServerServer},
    },
    bid::v1::{
        AdContent, AuctionType, BidRequest, BidResponse,
        bid_engine_client::BidEngineClient,
        bid_engine_server::{BidEngine, BidEngineServer},
    },
};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, transport::Channel};

/// A winning bid as the bid-engine answers one for a synthetic campaign
/// (`bid-engine/src/synthetic.rs`): the same field lengths.
fn winning_bid(request_id: String) -> BidResponse {
    BidResponse {
        request_id,
        filled: true,
        no_bid_reason: 0,
        campaign_id: "synthetic-04242".into(),
        ad_id: "synthetic-ad-04242".into(),
        bid_price: 2_500_000,
        spend: 2_500,
        ad_content: Some(AdContent {
            title: "Synthetic ad 4242".into(),
            image_url: "https://cdn.example.com/synthetic/4242.jpg".into(),
            redirect_url: "https://example.com/synthetic/4242".into(),
        }),
        auction_type: AuctionType::SecondPrice as i32,
    }
}

/// A click-tracking URL as long as the ad-server's for a typical fill
/// (measured from a real signed token, so the echo follows the token format).
fn click_url_like_the_ad_servers() -> String {
    let signer = ClickSigner::new([7u8; 32]);
    let token = signer.sign(&ClickClaims {
        impression_id: uuid::Uuid::now_v7().to_string(),
        ad_id: "synthetic-ad-04242".into(),
        campaign_id: "synthetic-04242".into(),
        user_id: "user-42424".into(),
        placement_id: "placement-12".into(),
        redirect_url: "https://example.com/synthetic/4242".into(),
        issued_at: 1_764_000_000_000,
    });
    format!("http://127.0.0.1:8080/v1/click?t={token}")
}

struct EchoBack;

#[tonic::async_trait]
impl BidEngine for EchoBack {
    async fn bid(&self, request: Request<BidRequest>) -> Result<Response<BidResponse>, Status> {
        Ok(Response::new(winning_bid(request.into_inner().request_id)))
    }
}

struct EchoFront {
    back: BidEngineClient<Channel>,
    click_url: String,
}

/// A 36-character id, as an impression's UUID is.
const ECHO_IMPRESSION_ID: &str = "0190f2a4-7c1e-7d3a-9b2f-4e5d6c7b8a90";

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
                request_id: ECHO_IMPRESSION_ID.into(),
                user_id: request.user_id,
                placement_id: request.placement_id,
                country_code: request.country_code,
                device_type: request.device_type,
                age: request.age,
                interests: request.interests,
                floor_cpm: request.floor_cpm,
                tmax_ms: 50,
            })
            .await?
            .into_inner();
        let content = answer.ad_content.unwrap_or_default();
        Ok(Response::new(ServeResponse {
            filled: answer.filled,
            no_fill_reason: 0,
            ad_id: answer.ad_id,
            campaign_id: answer.campaign_id,
            title: content.title,
            image_url: content.image_url,
            redirect_url: content.redirect_url,
            bid_price: answer.bid_price,
            impression_id: answer.request_id,
            click_tracking_url: self.click_url.clone(),
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
            click_url: click_url_like_the_ad_servers(),
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
