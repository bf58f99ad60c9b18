//! The `admesh.analytics.v1.AnalyticsService` gRPC API. Every answer is
//! read from SQL as committed: nothing is cached, so an event is visible as
//! soon as its batch commits (well inside the 2 s freshness bound).

use std::sync::Arc;

use admesh_common::{
    events::EventStream,
    status::storage_unavailable,
    time::{now_millis, timestamp, utc_day},
    validation::invalid_argument,
};
use admesh_proto::analytics::v1::{self as pb, analytics_service_server::AnalyticsService};
use tonic::{Request, Response, Status};

use crate::{
    dates::{day_range, format_day},
    ratios::{cpc, cpm, ctr},
    store::{AnalyticsStore, RankBy},
};

#[derive(Clone, Debug)]
pub struct AnalyticsServiceImpl {
    store: AnalyticsStore,
    stream: Arc<dyn EventStream>,
}

impl AnalyticsServiceImpl {
    pub fn new(store: AnalyticsStore, stream: Arc<dyn EventStream>) -> Self {
        Self { store, stream }
    }
}

fn unsigned(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

/// The timeframe of per-ad figures, in milliseconds.
fn timeframe_ms(timeframe: &str) -> Result<i64, Status> {
    match timeframe {
        "1h" => Ok(3_600_000),
        "" | "24h" => Ok(86_400_000),
        "7d" => Ok(7 * 86_400_000),
        other => Err(invalid_argument(
            "timeframe",
            format_args!("must be 1h, 24h or 7d, got {other:?}"),
        )),
    }
}

#[tonic::async_trait]
impl AnalyticsService for AnalyticsServiceImpl {
    async fn get_campaign_analytics(
        &self,
        request: Request<pb::GetCampaignAnalyticsRequest>,
    ) -> Result<Response<pb::CampaignAnalytics>, Status> {
        let request = request.into_inner();
        let campaign_id = request.campaign_id.trim();
        if campaign_id.is_empty() {
            return Err(invalid_argument("campaign_id", "must not be empty"));
        }
        let (start_day, end_day) = day_range(
            &request.start_date,
            &request.end_date,
            utc_day(now_millis()),
        )?;
        if !self
            .store
            .campaign_known(campaign_id)
            .await
            .map_err(storage_unavailable)?
        {
            return Err(Status::not_found(format!(
                "campaign_id: no campaign {campaign_id}"
            )));
        }
        let days = self
            .store
            .campaign_days(campaign_id, start_day, end_day)
            .await
            .map_err(storage_unavailable)?;
        let mut by_day = days.into_iter().peekable();
        let mut daily_metrics = Vec::with_capacity((end_day - start_day + 1) as usize);
        let (mut impressions, mut clicks, mut spend) = (0u64, 0u64, 0i64);
        for day in start_day..=end_day {
            let totals = match by_day.peek() {
                Some((found, _)) if *found == day => {
                    by_day.next().map(|(_, t)| t).unwrap_or_default()
                }
                _ => Default::default(),
            };
            let (day_impressions, day_clicks) =
                (unsigned(totals.impressions), unsigned(totals.clicks));
            impressions += day_impressions;
            clicks += day_clicks;
            spend += totals.spend;
            daily_metrics.push(pb::DailyMetrics {
                date: format_day(day),
                impressions: day_impressions,
                clicks: day_clicks,
                ctr: ctr(day_clicks, day_impressions),
                spend: totals.spend,
                cpc: cpc(totals.spend, day_clicks),
            });
        }
        Ok(Response::new(pb::CampaignAnalytics {
            campaign_id: campaign_id.to_string(),
            date_range: Some(pb::DateRange {
                start: format_day(start_day),
                end: format_day(end_day),
            }),
            summary: Some(pb::MetricsSummary {
                total_impressions: impressions,
                total_clicks: clicks,
                ctr: ctr(clicks, impressions),
                total_spend: spend,
                cpc: cpc(spend, clicks),
                cpm: cpm(spend, impressions),
            }),
            daily_metrics,
        }))
    }

    async fn get_ad_analytics(
        &self,
        request: Request<pb::GetAdAnalyticsRequest>,
    ) -> Result<Response<pb::GetAdAnalyticsResponse>, Status> {
        let request = request.into_inner();
        let window = timeframe_ms(request.timeframe.trim())?;
        let ad_id = request.ad_id.trim();
        let now = now_millis();
        let figures = self
            .store
            .ad_figures((!ad_id.is_empty()).then_some(ad_id), now - window, now)
            .await
            .map_err(storage_unavailable)?;
        let mut analytics: Vec<pb::AdAnalytics> = figures
            .into_iter()
            .map(|row| pb::AdAnalytics {
                ad_id: row.ad_id,
                click_count: row.clicks,
                last_hour: row.last_hour,
                last_day: row.last_day,
                impressions: row.impressions,
            })
            .collect();
        if !ad_id.is_empty() && analytics.is_empty() {
            // A known ad with nothing in the window answers zeros.
            analytics.push(pb::AdAnalytics {
                ad_id: ad_id.to_string(),
                ..Default::default()
            });
        }
        Ok(Response::new(pb::GetAdAnalyticsResponse { analytics }))
    }

    async fn top_campaigns(
        &self,
        request: Request<pb::TopCampaignsRequest>,
    ) -> Result<Response<pb::TopCampaignsResponse>, Status> {
        let request = request.into_inner();
        let rank_by = match pb::RankBy::try_from(request.rank_by) {
            Ok(pb::RankBy::Spend | pb::RankBy::Unspecified) => RankBy::Spend,
            Ok(pb::RankBy::Clicks) => RankBy::Clicks,
            Ok(pb::RankBy::Ctr) => RankBy::Ctr,
            Err(_) => return Err(invalid_argument("rank_by", "must be spend, clicks or ctr")),
        };
        let limit = match request.limit {
            0 => 10,
            limit @ 1..=100 => limit,
            _ => return Err(invalid_argument("limit", "must be 1–100")),
        };
        let (start_day, end_day) = day_range(
            &request.start_date,
            &request.end_date,
            utc_day(now_millis()),
        )?;
        let rows = self
            .store
            .top_campaigns(rank_by, limit, start_day, end_day)
            .await
            .map_err(storage_unavailable)?;
        Ok(Response::new(pb::TopCampaignsResponse {
            campaigns: rows
                .into_iter()
                .enumerate()
                .map(|(index, (campaign_id, totals))| {
                    let (impressions, clicks) =
                        (unsigned(totals.impressions), unsigned(totals.clicks));
                    pb::CampaignRanking {
                        rank: index as u32 + 1,
                        campaign_id,
                        impressions,
                        clicks,
                        ctr: ctr(clicks, impressions),
                        spend: totals.spend,
                    }
                })
                .collect(),
            date_range: Some(pb::DateRange {
                start: format_day(start_day),
                end: format_day(end_day),
            }),
        }))
    }

    async fn get_ingest_status(
        &self,
        _request: Request<pb::GetIngestStatusRequest>,
    ) -> Result<Response<pb::IngestStatus>, Status> {
        let counters = self.store.counters().await.map_err(storage_unavailable)?;
        let backlog = self.stream.backlog().await.map_err(storage_unavailable)?;
        Ok(Response::new(pb::IngestStatus {
            events_counted: counters.events_counted,
            duplicates_dropped: counters.duplicates_dropped,
            unattributed_clicks: counters.unattributed_clicks,
            lag: backlog.lag,
            pending: backlog.pending,
            last_event_time: (counters.last_event_time > 0)
                .then(|| timestamp(counters.last_event_time)),
        }))
    }
}
