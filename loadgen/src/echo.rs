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
use admesh_bid_engine::{
    campaign::{Campaign, spend_of_impression},
    synthetic::synthetic_campaigns,
};
use admesh_common::{MeshConfig, time::now_millis};
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
use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::driver::request;
use tonic::{Request, Response, Status, transport::Channel};

/// The synthetic campaign whose ad the echo answers with
/// (`bid-engine/src/synthetic.rs`): its number is as long as most of the
/// 10,000 the load generator loads, so its ids and URLs are too.
const TYPICAL_CAMPAIGN: usize = 4_242;

/// A winning bid for `campaign`, as the bid-engine answers one.
fn winning_bid(campaign: &Campaign) -> BidResponse {
    let ad = &campaign.ads[0];
    BidResponse {
        request_id: String::new(),
        filled: true,
        no_bid_reason: 0,
        campaign_id: campaign.id.to_string(),
        ad_id: ad.id.clone(),
        bid_price: campaign.bid_price,
        spend: spend_of_impression(campaign.bid_price),
        ad_content: Some(AdContent {
            title: ad.title.clone(),
            image_url: ad.image_url.clone(),
            redirect_url: ad.redirect_url.clone(),
        }),
        auction_type: AuctionType::SecondPrice as i32,
    }
}

/// A click-tracking URL for `bid` as the ad-server builds one with its
/// default settings (a real signed token, so the echo follows the format).
fn click_url_like_the_ad_servers(bid: &BidResponse) -> String {
    let content = bid.ad_content.clone().unwrap_or_default();
    let token = ClickSigner::new([7u8; 32]).sign(&ClickClaims {
        impression_id: ECHO_IMPRESSION_ID.into(),
        ad_id: bid.ad_id.clone(),
        campaign_id: bid.campaign_id.clone(),
        user_id: request(4_242).user_id,
        placement_id: request(4_242).placement_id,
        redirect_url: content.redirect_url,
        issued_at: now_millis(),
    });
    let base = MeshConfig::default().ad_server.public_base_url;
    format!("{}/v1/click?t={token}", base.trim_end_matches('/'))
}

/// tonic's own client channel to `address`, as a bare tonic client makes
/// one (with TCP_NODELAY, as the mesh's): the echo measures the stack as it
/// comes, not AdMesh's channel (`admesh_common::channel`).
pub fn bare_tonic_channel(address: SocketAddr) -> anyhow::Result<Channel> {
    Ok(
        tonic::transport::Endpoint::from_shared(format!("http://{address}"))?
            .tcp_nodelay(true)
            .connect_lazy(),
    )
}

/// Answers every bid with the same winning bid (cloned, as the bid-engine
/// copies a campaign's ad into each answer).
struct EchoBack {
    answer: BidResponse,
}

#[tonic::async_trait]
impl BidEngine for EchoBack {
    async fn bid(&self, request: Request<BidRequest>) -> Result<Response<BidResponse>, Status> {
        Ok(Response::new(BidResponse {
            request_id: request.into_inner().request_id,
            ..self.answer.clone()
        }))
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
        let campaign = synthetic_campaigns(TYPICAL_CAMPAIGN)
            .pop()
            .context("no synthetic campaign")?;
        let answer = winning_bid(&campaign);
        let click_url = click_url_like_the_ad_servers(&answer);
        let stop = CancellationToken::new();
        let (back_listener, back) = listen().await?;
        let (front_listener, front) = listen().await?;
        let back_stop = stop.clone();
        tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(BidEngineServer::new(EchoBack { answer }))
                .serve_with_incoming_shutdown(
                    admesh_common::nodelay_incoming(back_listener),
                    back_stop.cancelled_owned(),
                )
                .await
        });
        let channel = bare_tonic_channel(back)?;
        let front_service = AdServerServer::new(EchoFront {
            back: BidEngineClient::new(channel),
            click_url,
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
