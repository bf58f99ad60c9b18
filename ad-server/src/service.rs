//! The `admesh.adserver.v1.AdServer` RPCs: Serve, Click, ListAds.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use admesh_common::{
    MeshChannel, TraceContextInterceptor,
    events::EventPublisher,
    status::storage_unavailable,
    time::{now_millis, timestamp},
    validation::{FieldViolations, ImpressionFields, check_impression, invalid_argument},
};
use admesh_proto::{
    adserver::v1::{self as pb, ad_server_server::AdServer},
    analytics::v1::{AdEvent, EventType},
    bid::v1::{BidRequest, BidResponse, NoBidReason, bid_engine_client::BidEngineClient},
};
use tonic::{Code, Request, Response, Status, codegen::InterceptedService};

use crate::{
    breaker::CircuitBreaker,
    click_token::{ClaimsToSign, ClickSigner},
    deadline::bid_budget,
    store::AdServerStore,
};

const DEFAULT_PAGE_SIZE: u32 = 50;
const MAX_PAGE_SIZE: u32 = 500;

pub type BidClient = BidEngineClient<InterceptedService<MeshChannel, TraceContextInterceptor>>;

#[derive(Clone, Debug)]
pub struct AdServerService {
    bid_engine: BidClient,
    breaker: Arc<CircuitBreaker>,
    bid_bound: Duration,
    signer: ClickSigner,
    /// `{public_base_url}/v1/click?t=`
    click_url_prefix: String,
    publisher: EventPublisher,
    store: AdServerStore,
    serves: ServeCounters,
}

/// `admesh_serve_total` by result and reason, registered once: a lookup in
/// the registry on every serve costs more than the increment.
#[derive(Clone, Debug)]
struct ServeCounters {
    fill: metrics::Counter,
    /// By [`pb::NoFillReason`] number.
    no_fill: Vec<metrics::Counter>,
}

impl ServeCounters {
    fn register() -> Self {
        admesh_common::metrics::ensure_recorder();
        Self {
            fill: metrics::counter!("admesh_serve_total", "result" => "fill", "reason" => ""),
            no_fill: (0..)
                .map_while(|number| pb::NoFillReason::try_from(number).ok())
                .map(|reason| {
                    metrics::counter!("admesh_serve_total", "result" => "no_fill", "reason" => reason.as_str_name())
                })
                .collect(),
        }
    }

    fn no_fill(&self, reason: pb::NoFillReason) {
        if let Some(counter) = self.no_fill.get(reason as usize) {
            counter.increment(1);
        }
    }
}

/// What the service is built from.
#[derive(Debug)]
pub struct AdServerParts {
    pub bid_engine: BidClient,
    pub breaker: Arc<CircuitBreaker>,
    pub bid_bound: Duration,
    pub signer: ClickSigner,
    pub public_base_url: String,
    pub publisher: EventPublisher,
    pub store: AdServerStore,
}

impl AdServerService {
    pub fn new(parts: AdServerParts) -> Self {
        Self {
            bid_engine: parts.bid_engine,
            breaker: parts.breaker,
            bid_bound: parts.bid_bound,
            signer: parts.signer,
            click_url_prefix: format!(
                "{}/v1/click?t=",
                parts.public_base_url.trim_end_matches('/')
            ),
            publisher: parts.publisher,
            store: parts.store,
            serves: ServeCounters::register(),
        }
    }
}

/// A serve request, checked: what the bid request needs.
#[derive(Debug)]
struct ServeInput {
    country: String,
    device_type: i32,
    age: Option<u32>,
    interests: Vec<String>,
}

/// Checks a serve request. `age` and `interests` may also come as the
/// seed's user attributes (`attributes["age"]`, `attributes["interests"]`,
/// comma-separated).
/// The interests are taken out of `request` (the bid request carries them).
fn serve_input(request: &mut pb::ServeRequest) -> Result<ServeInput, Status> {
    let mut problems = FieldViolations::new();
    let age = match (request.age, request.attributes.get("age")) {
        (Some(age), _) => Some(age),
        (None, Some(text)) => match text.trim().parse::<u32>() {
            Ok(age) => Some(age),
            Err(_) => {
                problems.add("attributes.age", format!("{text:?} is not a whole number"));
                None
            }
        },
        (None, None) => None,
    };
    let country = check_impression(
        ImpressionFields {
            user_id: &request.user_id,
            placement_id: &request.placement_id,
            country_code: &request.country_code,
            device_type: request.device_type,
            age,
            floor_cpm: request.floor_cpm,
        },
        &mut problems,
    );
    problems.into_result()?;
    let mut interests = std::mem::take(&mut request.interests);
    if let Some(listed) = request.attributes.get("interests") {
        interests.extend(
            listed
                .split(',')
                .map(|interest| interest.trim().to_string()),
        );
    }
    interests.retain(|interest| !interest.is_empty());
    Ok(ServeInput {
        country,
        device_type: request.device_type,
        age,
        interests,
    })
}

fn no_fill_reason(reason: i32) -> pb::NoFillReason {
    match NoBidReason::try_from(reason).unwrap_or(NoBidReason::Unspecified) {
        NoBidReason::NoMatch | NoBidReason::Unspecified => pb::NoFillReason::NoMatch,
        NoBidReason::BudgetExhausted => pb::NoFillReason::BudgetExhausted,
        NoBidReason::BelowFloor => pb::NoFillReason::BelowFloor,
        NoBidReason::FrequencyCapped => pb::NoFillReason::FrequencyCapped,
    }
}

/// How a failed bid call ends for the caller (and the breaker).
enum BidFailure {
    Timeout,
    Upstream(Status),
}

impl AdServerService {
    fn no_fill(&self, reason: pb::NoFillReason) -> Response<pb::ServeResponse> {
        self.serves.no_fill(reason);
        Response::new(pb::ServeResponse {
            filled: false,
            no_fill_reason: reason as i32,
            ..Default::default()
        })
    }

    /// Calls the bid-engine within `budget`, through the breaker.
    async fn call_bid_engine(
        &self,
        bid: BidRequest,
        budget: Duration,
    ) -> Result<Option<BidResponse>, BidFailure> {
        let Some(permit) = self.breaker.try_acquire(Instant::now()) else {
            return Ok(None);
        };
        let mut request = Request::new(bid);
        // Sent as grpc-timeout, so the bid-engine gives up too.
        request.set_timeout(budget);
        let mut client = self.bid_engine.clone();
        match tokio::time::timeout(budget, client.bid(request)).await {
            Err(_elapsed) => {
                permit.failed();
                Err(BidFailure::Timeout)
            }
            Ok(Ok(response)) => {
                permit.succeeded();
                Ok(Some(response.into_inner()))
            }
            // tonic reports its own expiry as Cancelled, the server's as
            // DeadlineExceeded: both are a timeout here.
            Ok(Err(status))
                if matches!(status.code(), Code::DeadlineExceeded | Code::Cancelled) =>
            {
                permit.failed();
                Err(BidFailure::Timeout)
            }
            Ok(Err(status)) => {
                permit.failed();
                Err(BidFailure::Upstream(status))
            }
        }
    }
}

#[tonic::async_trait]
impl AdServer for AdServerService {
    async fn serve(
        &self,
        request: Request<pb::ServeRequest>,
    ) -> Result<Response<pb::ServeResponse>, Status> {
        let budget = bid_budget(
            self.bid_bound,
            request
                .metadata()
                .get("grpc-timeout")
                .and_then(|value| value.to_str().ok()),
        );
        let mut request = request.into_inner();
        let input = serve_input(&mut request)?;
        let impression_id = admesh_common::ids::new_id();
        let bid = BidRequest {
            request_id: impression_id.clone(),
            user_id: request.user_id.clone(),
            placement_id: request.placement_id.clone(),
            country_code: input.country.clone(),
            device_type: input.device_type,
            age: input.age,
            interests: input.interests,
            floor_cpm: request.floor_cpm,
            tmax_ms: budget.as_millis().min(u128::from(u32::MAX)) as u32,
        };
        let answer = match self.call_bid_engine(bid, budget).await {
            Ok(Some(answer)) => answer,
            Ok(None) => return Ok(self.no_fill(pb::NoFillReason::CircuitOpen)),
            Err(BidFailure::Timeout) => return Ok(self.no_fill(pb::NoFillReason::Timeout)),
            Err(BidFailure::Upstream(status)) => {
                tracing::warn!(code = ?status.code(), detail = status.message(), "bid-engine call failed");
                return Ok(self.no_fill(pb::NoFillReason::UpstreamError));
            }
        };
        if !answer.filled {
            return Ok(self.no_fill(no_fill_reason(answer.no_bid_reason)));
        }
        let content = answer.ad_content.unwrap_or_default();
        let now = now_millis();
        let mut click_tracking_url = String::with_capacity(self.click_url_prefix.len() + 256);
        click_tracking_url.push_str(&self.click_url_prefix);
        self.signer.sign_into(
            ClaimsToSign {
                impression_id: &impression_id,
                ad_id: &answer.ad_id,
                campaign_id: &answer.campaign_id,
                user_id: &request.user_id,
                placement_id: &request.placement_id,
                redirect_url: &content.redirect_url,
                issued_at: now,
            },
            &mut click_tracking_url,
        );
        self.publisher.publish(AdEvent {
            // One impression, one event: its id is the impression's, which
            // is how analytics finds it for a click (by primary key).
            event_id: impression_id.clone(),
            event_type: EventType::Impression as i32,
            time: Some(timestamp(now)),
            user_id: request.user_id,
            campaign_id: answer.campaign_id.clone(),
            ad_id: answer.ad_id.clone(),
            placement_id: request.placement_id,
            bid_price: answer.bid_price,
            spend: answer.spend,
            country_code: input.country,
            device_type: input.device_type,
            impression_id: impression_id.clone(),
        });
        self.serves.fill.increment(1);
        Ok(Response::new(pb::ServeResponse {
            filled: true,
            no_fill_reason: pb::NoFillReason::Unspecified as i32,
            ad_id: answer.ad_id,
            campaign_id: answer.campaign_id,
            title: content.title,
            image_url: content.image_url,
            redirect_url: content.redirect_url,
            bid_price: answer.bid_price,
            click_tracking_url,
            impression_id,
        }))
    }

    async fn click(
        &self,
        request: Request<pb::ClickRequest>,
    ) -> Result<Response<pb::ClickResponse>, Status> {
        let token = request.into_inner().token;
        if token.is_empty() {
            return Err(invalid_argument("token", "is required"));
        }
        let claims = self
            .signer
            .verify(&token)
            .map_err(|error| invalid_argument("token", error))?;
        let event_id = admesh_common::ids::new_id();
        let now = now_millis();
        let counted = self
            .store
            .record_click(&claims, &event_id, now)
            .await
            .map_err(storage_unavailable)?;
        if counted {
            self.publisher.publish(AdEvent {
                event_id,
                event_type: EventType::Click as i32,
                time: Some(timestamp(now)),
                user_id: claims.user_id,
                campaign_id: claims.campaign_id,
                ad_id: claims.ad_id,
                placement_id: claims.placement_id,
                impression_id: claims.impression_id.clone(),
                ..Default::default()
            });
        }
        metrics::counter!("admesh_clicks_total", "counted" => if counted { "true" } else { "false" })
            .increment(1);
        Ok(Response::new(pb::ClickResponse {
            redirect_url: claims.redirect_url,
            counted,
            impression_id: claims.impression_id,
        }))
    }

    async fn list_ads(
        &self,
        request: Request<pb::ListAdsRequest>,
    ) -> Result<Response<pb::ListAdsResponse>, Status> {
        let request = request.into_inner();
        let page_size = match request.page_size {
            0 => DEFAULT_PAGE_SIZE,
            size => size.min(MAX_PAGE_SIZE),
        };
        let offset = match request.page_token.as_str() {
            "" => 0,
            token => token
                .parse::<i64>()
                .ok()
                .filter(|offset| *offset >= 0)
                .ok_or_else(|| {
                    invalid_argument("page_token", "is not a token from a previous page")
                })?,
        };
        let campaign_id = (!request.campaign_id.is_empty()).then_some(request.campaign_id.as_str());
        let mut ads = self
            .store
            .active_ads(campaign_id, offset, i64::from(page_size) + 1)
            .await
            .map_err(storage_unavailable)?;
        let next_page_token = if ads.len() > page_size as usize {
            ads.truncate(page_size as usize);
            (offset + i64::from(page_size)).to_string()
        } else {
            String::new()
        };
        Ok(Response::new(pb::ListAdsResponse {
            ads: ads
                .into_iter()
                .map(|ad| pb::AdSummary {
                    id: ad.id,
                    campaign_id: ad.campaign_id,
                    title: ad.title,
                    image_url: ad.image_url,
                    target_url: ad.redirect_url,
                    active: true,
                    created_at: Some(timestamp(ad.created_at)),
                })
                .collect(),
            next_page_token,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_supply_age_and_interests() {
        let request = pb::ServeRequest {
            user_id: "u".into(),
            placement_id: "p".into(),
            country_code: "us".into(),
            interests: vec!["gaming".into()],
            attributes: [
                ("age".to_string(), "29".to_string()),
                ("interests".to_string(), "tech, rpg".to_string()),
            ]
            .into(),
            ..Default::default()
        };
        let input = serve_input(&mut request.clone()).expect("valid");
        assert_eq!(input.age, Some(29));
        assert_eq!(input.interests, ["gaming", "tech", "rpg"]);
        assert_eq!(input.country, "US");
        let bad_age = pb::ServeRequest {
            attributes: [("age".to_string(), "old".to_string())].into(),
            ..request
        };
        let message = serve_input(&mut bad_age.clone())
            .expect_err("bad")
            .message()
            .to_string();
        assert!(message.starts_with("attributes.age:"), "{message}");
    }
}
