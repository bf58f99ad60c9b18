//! The `admesh.bid.v1.BidEngine` RPCs: the bid, and campaign management.

use std::sync::Arc;

use admesh_common::{
    config::AuctionKind,
    status::storage_unavailable,
    time::{now_millis, utc_day},
    validation::invalid_argument,
};
use admesh_proto::bid::v1::{self as pb, bid_engine_server::BidEngine};
use tonic::{Request, Response, Status};

use crate::{
    auction::{BidContext, NoBid, Outcome, run_auction},
    campaign::{Campaign, CampaignStatus},
    catalog::Catalog,
    input::{
        apply_update_mask, bid_from_proto, campaign_from_proto, campaign_to_proto,
        status_from_proto,
    },
    ledger::SpendLedger,
    store::CampaignFilter,
};

const DEFAULT_PAGE_SIZE: u32 = 50;
const MAX_PAGE_SIZE: u32 = 500;

#[derive(Clone, Debug)]
pub struct BidEngineService {
    catalog: Arc<Catalog>,
    ledger: Arc<dyn SpendLedger>,
    auction: AuctionKind,
    bids: BidCounters,
}

/// `admesh_bids_total` by result, registered once: a lookup in the
/// registry on every bid costs more than the increment.
#[derive(Clone, Debug)]
struct BidCounters {
    won: metrics::Counter,
    no_bid: metrics::Counter,
}

impl BidCounters {
    fn register() -> Self {
        admesh_common::metrics::ensure_recorder();
        Self {
            won: metrics::counter!("admesh_bids_total", "result" => "won"),
            no_bid: metrics::counter!("admesh_bids_total", "result" => "no_bid"),
        }
    }
}

impl BidEngineService {
    pub fn new(catalog: Arc<Catalog>, ledger: Arc<dyn SpendLedger>, auction: AuctionKind) -> Self {
        Self {
            catalog,
            ledger,
            auction,
            bids: BidCounters::register(),
        }
    }

    async fn view(&self, campaign: &Campaign) -> Result<pb::Campaign, Status> {
        let mut views = self.views(std::slice::from_ref(campaign)).await?;
        views
            .pop()
            .ok_or_else(|| Status::internal("no spend for the campaign"))
    }

    /// API views with spend, read for all of them at once.
    async fn views(&self, campaigns: &[Campaign]) -> Result<Vec<pb::Campaign>, Status> {
        let now = now_millis();
        let spent = self
            .ledger
            .spent(campaigns, utc_day(now))
            .await
            .map_err(storage_unavailable)?;
        Ok(campaigns
            .iter()
            .zip(spent)
            .map(|(campaign, spent)| campaign_to_proto(campaign, spent, now))
            .collect())
    }

    async fn existing(&self, field: &str, id: &str) -> Result<Campaign, Status> {
        if id.is_empty() {
            return Err(invalid_argument(field, "is required"));
        }
        self.catalog
            .store()
            .get(id, utc_day(now_millis()))
            .await
            .map_err(storage_unavailable)?
            .ok_or_else(|| Status::not_found(format!("{field}: no campaign {id:?}")))
    }

    async fn set_status(&self, id: &str, status: CampaignStatus) -> Result<pb::Campaign, Status> {
        let store = self.catalog.store();
        if id.is_empty() {
            return Err(invalid_argument("id", "is required"));
        }
        if !store
            .set_status(id, status)
            .await
            .map_err(storage_unavailable)?
        {
            return Err(Status::not_found(format!("id: no campaign {id:?}")));
        }
        let campaign = self.existing("id", id).await?;
        self.catalog
            .changed(campaign.clone(), self.ledger.as_ref())
            .await;
        self.view(&campaign).await
    }
}

fn no_bid_reason(reason: NoBid) -> pb::NoBidReason {
    match reason {
        NoBid::NoMatch => pb::NoBidReason::NoMatch,
        NoBid::BelowFloor => pb::NoBidReason::BelowFloor,
        NoBid::BudgetExhausted => pb::NoBidReason::BudgetExhausted,
        NoBid::FrequencyCapped => pb::NoBidReason::FrequencyCapped,
    }
}

fn auction_type(kind: AuctionKind) -> pb::AuctionType {
    match kind {
        AuctionKind::FirstPrice => pb::AuctionType::FirstPrice,
        AuctionKind::SecondPrice => pb::AuctionType::SecondPrice,
    }
}

#[tonic::async_trait]
impl BidEngine for BidEngineService {
    async fn bid(
        &self,
        request: Request<pb::BidRequest>,
    ) -> Result<Response<pb::BidResponse>, Status> {
        let request = request.into_inner();
        let input = bid_from_proto(&request)?;
        if !self.catalog.is_loaded() {
            return Err(Status::unavailable("campaigns are still loading"));
        }
        let now = now_millis();
        let context = BidContext {
            user_id: &request.user_id,
            placement_id: &request.placement_id,
            country: &input.country,
            device_type: input.device_type,
            age: request.age,
            interests: &input.interests,
            floor_cpm: request.floor_cpm,
            now,
            day: utc_day(now),
        };
        let index = self.catalog.index_arc();
        let outcome = run_auction(&index, &context, self.auction, self.ledger.as_ref())
            .await
            .map_err(storage_unavailable)?;
        let mut response = pb::BidResponse {
            request_id: request.request_id,
            auction_type: auction_type(self.auction) as i32,
            ..Default::default()
        };
        match outcome {
            Outcome::Won(win) => {
                self.bids.won.increment(1);
                let ad = &win.campaign.ads[win.ad_index];
                response.filled = true;
                // From the str directly: `to_string` goes through the formatter.
                response.campaign_id = String::from(&*win.campaign.id);
                response.ad_id = ad.id.clone();
                response.bid_price = win.price;
                response.spend = win.spend;
                response.ad_content = Some(pb::AdContent {
                    title: ad.title.clone(),
                    image_url: ad.image_url.clone(),
                    redirect_url: ad.redirect_url.clone(),
                });
            }
            Outcome::NoBid(reason) => {
                self.bids.no_bid.increment(1);
                response.no_bid_reason = no_bid_reason(reason) as i32;
            }
        }
        Ok(Response::new(response))
    }

    async fn create_campaign(
        &self,
        request: Request<pb::CreateCampaignRequest>,
    ) -> Result<Response<pb::Campaign>, Status> {
        let input = request
            .into_inner()
            .campaign
            .ok_or_else(|| invalid_argument("campaign", "is required"))?;
        let mut campaign = campaign_from_proto(&input, None, now_millis())?;
        campaign.created_seq = self
            .catalog
            .store()
            .insert(&campaign)
            .await
            .map_err(storage_unavailable)?;
        self.catalog
            .changed(campaign.clone(), self.ledger.as_ref())
            .await;
        Ok(Response::new(self.view(&campaign).await?))
    }

    async fn update_campaign(
        &self,
        request: Request<pb::UpdateCampaignRequest>,
    ) -> Result<Response<pb::Campaign>, Status> {
        let request = request.into_inner();
        let patch = request
            .campaign
            .ok_or_else(|| invalid_argument("campaign", "is required"))?;
        let existing = self.existing("campaign.id", &patch.id).await?;
        // The stored status, not the "ended" shown for a campaign past its end.
        let mut base = campaign_to_proto(&existing, Default::default(), i64::MIN);
        base.status = crate::input::status_to_proto(existing.status) as i32;
        let paths = request
            .update_mask
            .map(|mask| mask.paths)
            .unwrap_or_default();
        let merged = apply_update_mask(&base, &patch, &paths)?;
        let updated = campaign_from_proto(&merged, Some(&existing), now_millis())?;
        self.catalog
            .store()
            .update(&updated)
            .await
            .map_err(storage_unavailable)?;
        self.catalog
            .changed(updated.clone(), self.ledger.as_ref())
            .await;
        Ok(Response::new(self.view(&updated).await?))
    }

    async fn get_campaign(
        &self,
        request: Request<pb::GetCampaignRequest>,
    ) -> Result<Response<pb::Campaign>, Status> {
        let campaign = self.existing("id", &request.into_inner().id).await?;
        Ok(Response::new(self.view(&campaign).await?))
    }

    async fn list_campaigns(
        &self,
        request: Request<pb::ListCampaignsRequest>,
    ) -> Result<Response<pb::ListCampaignsResponse>, Status> {
        let request = request.into_inner();
        let status = match request.status {
            0 => None,
            value => Some(
                status_from_proto(value)
                    .ok_or_else(|| invalid_argument("status", format!("unknown value {value}")))?,
            ),
        };
        let page_size = match request.page_size {
            0 => DEFAULT_PAGE_SIZE,
            size => size.min(MAX_PAGE_SIZE),
        };
        let after_seq = match request.page_token.as_str() {
            "" => None,
            token => Some(token.parse::<i64>().map_err(|_| {
                invalid_argument("page_token", "is not a token from a previous page")
            })?),
        };
        let advertiser_id = (!request.advertiser_id.is_empty()).then_some(request.advertiser_id);
        let filter = CampaignFilter {
            status,
            advertiser_id,
            after_seq,
            limit: Some(i64::from(page_size) + 1),
            ..CampaignFilter::default()
        };
        let store = self.catalog.store();
        let mut campaigns = store
            .find(&filter, utc_day(now_millis()))
            .await
            .map_err(storage_unavailable)?;
        let total_size = store.count(&filter).await.map_err(storage_unavailable)?;
        let next_page_token = if campaigns.len() > page_size as usize {
            campaigns.truncate(page_size as usize);
            campaigns
                .last()
                .map(|campaign| campaign.created_seq.to_string())
                .unwrap_or_default()
        } else {
            String::new()
        };
        Ok(Response::new(pb::ListCampaignsResponse {
            campaigns: self.views(&campaigns).await?,
            next_page_token,
            total_size,
        }))
    }

    async fn pause_campaign(
        &self,
        request: Request<pb::PauseCampaignRequest>,
    ) -> Result<Response<pb::Campaign>, Status> {
        let id = request.into_inner().id;
        Ok(Response::new(
            self.set_status(&id, CampaignStatus::Paused).await?,
        ))
    }

    async fn resume_campaign(
        &self,
        request: Request<pb::ResumeCampaignRequest>,
    ) -> Result<Response<pb::Campaign>, Status> {
        let id = request.into_inner().id;
        Ok(Response::new(
            self.set_status(&id, CampaignStatus::Active).await?,
        ))
    }
}
