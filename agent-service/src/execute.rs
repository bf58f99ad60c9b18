//! Runs an intent through the other services' gRPC APIs (with the caller's
//! trace context) and says what it did, or on a dry run what it would do.

use prost::Message;
use serde_json::{Value, json};
use tonic::{Code, Status, codegen::InterceptedService};

use admesh_common::{
    Database, MeshChannel, MeshConfig, TraceContextInterceptor, lazy_channel, on_pool,
    time::{now_millis, timestamp},
};
use admesh_proto::{
    analytics::v1::{
        GetCampaignAnalyticsRequest, RankBy, TopCampaignsRequest,
        analytics_service_client::AnalyticsServiceClient,
    },
    bid::v1::{
        Campaign, ListCampaignsRequest, PauseCampaignRequest, ResumeCampaignRequest,
        bid_engine_client::BidEngineClient,
    },
    queue::v1::{
        ChangePriorityRequest, GetAdRequest, GetQueueConfigRequest, GetQueueStatsRequest,
        JobStatus, ListAdJobsRequest, PeekNextRequest, QueueConfig, UpdateQueueConfigRequest,
        queue_service_client::QueueServiceClient,
    },
};

use crate::{
    diagnose::MeshProbe,
    intent::{CATALOGUE, Intent, JobSelector, Metric, Period, Ranking},
};

type Traced = InterceptedService<MeshChannel, TraceContextInterceptor>;

/// What running an intent gave.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    pub result: Value,
    pub message: String,
}

/// Why an understood intent did not run.
#[derive(Clone, Debug, PartialEq)]
pub enum ExecError {
    /// The request cannot be carried out as asked (unknown campaign…).
    Rejected(String),
    /// A service call failed.
    Failed(String),
}

impl ExecError {
    fn from_status(what: &str, status: Status) -> Self {
        match status.code() {
            Code::InvalidArgument
            | Code::NotFound
            | Code::FailedPrecondition
            | Code::AlreadyExists => ExecError::Rejected(format!("{what}: {}", status.message())),
            _ => ExecError::Failed(format!("{what}: {:?}: {}", status.code(), status.message())),
        }
    }
}

/// The services an intent runs through.
#[derive(Clone, Debug)]
pub struct Executor {
    queue: QueueServiceClient<Traced>,
    bids: BidEngineClient<Traced>,
    analytics: AnalyticsServiceClient<Traced>,
    probe: MeshProbe,
    database: Database,
}

impl Executor {
    pub fn new(config: &MeshConfig, database: Database) -> anyhow::Result<Self> {
        let traced = |url: &str| -> anyhow::Result<Traced> {
            Ok(InterceptedService::new(
                lazy_channel(url)?,
                TraceContextInterceptor,
            ))
        };
        Ok(Self {
            queue: QueueServiceClient::new(traced(&config.agent.queue_url)?),
            bids: BidEngineClient::new(traced(&config.agent.bid_engine_url)?),
            analytics: AnalyticsServiceClient::new(traced(&config.agent.analytics_url)?),
            probe: MeshProbe::from_config(config)?,
            database,
        })
    }

    /// Runs `intent`; on a dry run nothing changes and the result says what
    /// would.
    pub async fn run(&self, intent: &Intent, dry_run: bool) -> Result<Outcome, ExecError> {
        let would = if dry_run { "Would change" } else { "Changed" };
        match intent {
            Intent::ChangePriority { priority, jobs } => {
                self.change_priority(*priority, jobs, dry_run).await
            }
            Intent::ShowNext { count } => {
                let next = self
                    .queue
                    .clone()
                    .peek_next(PeekNextRequest { count: *count })
                    .await
                    .map_err(|s| ExecError::from_status("queue", s))?
                    .into_inner();
                let ads = json_of(&next, "admesh.queue.v1.PeekNextResponse")["ads"].clone();
                let titles: Vec<String> = next
                    .ads
                    .iter()
                    .map(|ad| format!("{} (p{}, {})", ad.title, ad.priority, ad.game_family))
                    .collect();
                Ok(Outcome {
                    message: if titles.is_empty() {
                        "The queue is empty".into()
                    } else {
                        format!("Next {}: {}", titles.len(), titles.join("; "))
                    },
                    result: json!({"ads": ads}),
                })
            }
            Intent::FindWaiting { older_than_minutes } => {
                let found = self
                    .queue
                    .clone()
                    .list_ad_jobs(ListAdJobsRequest {
                        status: JobStatus::Queued as i32,
                        waiting_longer_than_minutes: *older_than_minutes,
                        page_size: 100,
                        ..Default::default()
                    })
                    .await
                    .map_err(|s| ExecError::from_status("queue", s))?
                    .into_inner();
                let json = json_of(&found, "admesh.queue.v1.ListAdJobsResponse");
                Ok(Outcome {
                    message: format!(
                        "{} queued ads have waited longer than {older_than_minutes} minutes{}",
                        found.ads.len(),
                        if found.next_page_token.is_empty() {
                            ""
                        } else {
                            " (first 100 shown)"
                        }
                    ),
                    result: json!({"ads": json["ads"], "olderThanMinutes": older_than_minutes}),
                })
            }
            Intent::SetAntiStarvation { enabled } => {
                let update = UpdateQueueConfigRequest {
                    anti_starvation_enabled: Some(*enabled),
                    ..Default::default()
                };
                let state = if *enabled { "on" } else { "off" };
                self.update_config(
                    update,
                    dry_run,
                    |old| old.anti_starvation_enabled.to_string(),
                    &format!("{would} anti-starvation to {state}"),
                )
                .await
            }
            Intent::SetMaxWait { seconds } => {
                let update = UpdateQueueConfigRequest {
                    default_max_wait_time: Some(*seconds),
                    ..Default::default()
                };
                self.update_config(
                    update,
                    dry_run,
                    |old| format!("{} s", old.default_max_wait_time),
                    &format!("{would} the default max wait to {seconds} s"),
                )
                .await
            }
            Intent::SetWorkerCount { workers } => {
                let update = UpdateQueueConfigRequest {
                    worker_count: Some(*workers),
                    ..Default::default()
                };
                self.update_config(
                    update,
                    dry_run,
                    |old| old.worker_count.to_string(),
                    &format!("{would} the worker count to {workers}"),
                )
                .await
            }
            Intent::SetBatchSize { size } => {
                let update = UpdateQueueConfigRequest {
                    batch_size: Some(*size),
                    ..Default::default()
                };
                self.update_config(
                    update,
                    dry_run,
                    |old| old.batch_size.to_string(),
                    &format!("{would} the batch size to {size}"),
                )
                .await
            }
            Intent::QueueDistribution => {
                let stats = self.stats().await?;
                let mut by_priority: Vec<(i32, u64)> = stats["distribution"]
                    .as_object()
                    .map_or_else(Vec::new, |map| {
                        map.iter()
                            .filter_map(|(k, v)| Some((k.parse().ok()?, v.as_str()?.parse().ok()?)))
                            .collect()
                    });
                by_priority.sort_by_key(|(priority, _)| std::cmp::Reverse(*priority));
                let text: Vec<String> = by_priority
                    .iter()
                    .map(|(p, n)| format!("p{p}: {n}"))
                    .collect();
                Ok(Outcome {
                    message: format!(
                        "{} queued — {}",
                        stats["total"].as_str().unwrap_or("0"),
                        text.join(", ")
                    ),
                    result: json!({"total": stats["total"], "distribution": stats["distribution"]}),
                })
            }
            Intent::PerformanceSummary => {
                let stats = self.stats().await?;
                Ok(Outcome {
                    message: format!(
                        "{} queued, {} processing, {} completed; average wait {}, oldest {}; {:.1} jobs/min",
                        stats["total"].as_str().unwrap_or("0"),
                        stats["processing"].as_str().unwrap_or("0"),
                        stats["completed"].as_str().unwrap_or("0"),
                        stats["averageWaitTime"].as_str().unwrap_or("0s"),
                        stats["oldestWaitTime"].as_str().unwrap_or("0s"),
                        stats["processingRate"].as_f64().unwrap_or(0.0),
                    ),
                    result: stats,
                })
            }
            Intent::PerformanceReport { period } => self.performance_report(*period).await,
            Intent::FamilyStatistics => {
                let stats = self.stats().await?;
                let families = stats["byGameFamily"].clone();
                let count = families.as_array().map_or(0, Vec::len);
                Ok(Outcome {
                    message: format!("{count} game families"),
                    result: json!({"byGameFamily": families}),
                })
            }
            Intent::PredictProcessing { ad_id } => {
                let job = self
                    .queue
                    .clone()
                    .get_ad(GetAdRequest {
                        ad_id: ad_id.clone(),
                    })
                    .await
                    .map_err(|s| ExecError::from_status("queue", s))?
                    .into_inner();
                let json = json_of(&job, "admesh.queue.v1.AdJob");
                let message = match (&job.estimated_process_time, job.position) {
                    (Some(at), Some(position)) => {
                        format!("Ad {ad_id} is #{position} in line; expected to start at {at}")
                    }
                    _ => format!(
                        "Ad {ad_id} is not queued; its status is {}",
                        json["status"].as_str().unwrap_or("unknown")
                    ),
                };
                Ok(Outcome {
                    message,
                    result: json!({
                        "adId": ad_id, "status": json["status"], "position": json["position"],
                        "estimatedProcessTime": json["estimatedProcessTime"], "waitTime": json["waitTime"],
                    }),
                })
            }
            Intent::RecommendPriorities => self.recommendations().await,
            Intent::CapacityUtilization => {
                let (stats, config) = (self.stats().await?, self.config().await?);
                let processing: u64 = stats["processing"]
                    .as_str()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                let workers = u64::from(config.worker_count.max(1));
                let share = processing as f64 / workers as f64;
                Ok(Outcome {
                    message: format!(
                        "{processing} jobs in flight for {workers} configured workers per processor ({:.0}%); {} queued",
                        share * 100.0,
                        stats["total"].as_str().unwrap_or("0")
                    ),
                    result: json!({
                        "processing": processing, "workerCount": workers, "inFlightPerWorker": share,
                        "queued": stats["total"], "processingRate": stats["processingRate"],
                        "batchSize": config.batch_size,
                    }),
                })
            }
            Intent::OptimizeQueue => self.optimize(dry_run).await,
            Intent::PauseCampaign { campaign } | Intent::ResumeCampaign { campaign } => {
                let pause = matches!(intent, Intent::PauseCampaign { .. });
                let found = self.find_campaign(campaign).await?;
                let verb = if pause { "pause" } else { "resume" };
                if dry_run {
                    return Ok(Outcome {
                        message: format!("Would {verb} campaign {} ({})", found.name, found.id),
                        result: json!({"campaignId": found.id, "name": found.name, "currentStatus": campaign_status(&found)}),
                    });
                }
                let mut bids = self.bids.clone();
                let updated = if pause {
                    bids.pause_campaign(PauseCampaignRequest {
                        id: found.id.clone(),
                    })
                    .await
                } else {
                    bids.resume_campaign(ResumeCampaignRequest {
                        id: found.id.clone(),
                    })
                    .await
                }
                .map_err(|s| ExecError::from_status("bid-engine", s))?
                .into_inner();
                Ok(Outcome {
                    message: format!(
                        "Campaign {} is now {}",
                        updated.name,
                        campaign_status(&updated)
                    ),
                    result: json!({"campaignId": updated.id, "name": updated.name, "status": campaign_status(&updated), "previousStatus": campaign_status(&found)}),
                })
            }
            Intent::CampaignPerformance {
                campaign,
                metric,
                period,
            } => {
                let found = self.find_campaign(campaign).await?;
                let (start, end) = date_range(*period);
                let analytics = self
                    .analytics
                    .clone()
                    .get_campaign_analytics(GetCampaignAnalyticsRequest {
                        campaign_id: found.id.clone(),
                        start_date: start.clone(),
                        end_date: end.clone(),
                    })
                    .await
                    .map_err(|s| ExecError::from_status("analytics", s))?
                    .into_inner();
                let json = json_of(&analytics, "admesh.analytics.v1.CampaignAnalytics");
                let summary = &json["summary"];
                let figure = |key: &str| summary[key].clone();
                let headline = match metric {
                    Metric::Ctr => format!("CTR {:.2}%", figure("ctr").as_f64().unwrap_or(0.0)),
                    Metric::Spend => format!(
                        "spend {} micros",
                        figure("totalSpend").as_str().unwrap_or("0")
                    ),
                    Metric::Clicks => {
                        format!("{} clicks", figure("totalClicks").as_str().unwrap_or("0"))
                    }
                    Metric::Impressions => format!(
                        "{} impressions",
                        figure("totalImpressions").as_str().unwrap_or("0")
                    ),
                    Metric::Cpc => format!("CPC {} micros", figure("cpc")),
                    Metric::Cpm => format!("CPM {} micros", figure("cpm")),
                    Metric::All => format!(
                        "{} impressions, {} clicks, CTR {:.2}%, spend {} micros",
                        figure("totalImpressions").as_str().unwrap_or("0"),
                        figure("totalClicks").as_str().unwrap_or("0"),
                        figure("ctr").as_f64().unwrap_or(0.0),
                        figure("totalSpend").as_str().unwrap_or("0"),
                    ),
                };
                Ok(Outcome {
                    message: format!("{} from {start} to {end}: {headline}", found.name),
                    result: json!({"campaignId": found.id, "name": found.name, "metric": metric.as_str(), "analytics": json}),
                })
            }
            Intent::TopCampaigns { count, by, period } => {
                let (start, end) = date_range(*period);
                let rank_by = match by {
                    Ranking::Spend => RankBy::Spend,
                    Ranking::Clicks => RankBy::Clicks,
                    Ranking::Ctr => RankBy::Ctr,
                };
                let top = self
                    .analytics
                    .clone()
                    .top_campaigns(TopCampaignsRequest {
                        rank_by: rank_by as i32,
                        limit: *count,
                        start_date: start.clone(),
                        end_date: end.clone(),
                    })
                    .await
                    .map_err(|s| ExecError::from_status("analytics", s))?
                    .into_inner();
                let json = json_of(&top, "admesh.analytics.v1.TopCampaignsResponse");
                Ok(Outcome {
                    message: format!(
                        "Top {} campaigns by {} from {start} to {end}",
                        top.campaigns.len(),
                        by.as_str()
                    ),
                    result: json,
                })
            }
            Intent::Diagnose => {
                let diagnosis = self.probe.diagnose().await;
                let json = json_of(&diagnosis, "admesh.agent.v1.DiagnoseResponse");
                Ok(Outcome {
                    message: format!(
                        "The mesh is {}; {} findings",
                        diagnosis.overall,
                        diagnosis.findings.len()
                    ),
                    result: json,
                })
            }
            Intent::RecentActivity {
                service,
                level,
                period,
            } => {
                let since = now_millis() - period_millis(*period);
                let entries = crate::activity::recent(
                    &self.database,
                    service.as_deref(),
                    level.map(|l| l.as_str()),
                    since,
                    None,
                    50,
                )
                .await
                .map_err(|error| ExecError::Failed(format!("activity log: {error}")))?;
                let json = json_of(&entries, "admesh.agent.v1.ListActivityResponse");
                Ok(Outcome {
                    message: format!("{} entries in {}", entries.logs.len(), period.label()),
                    result: json,
                })
            }
            Intent::Help => Ok(Outcome {
                message: format!(
                    "{} supported commands; e.g. \"{}\"",
                    CATALOGUE.len(),
                    CATALOGUE[0].examples[0]
                ),
                result: json!({"commands": CATALOGUE.iter().map(|c| json!({
                    "intent": c.intent, "description": c.description, "examples": c.examples, "mutating": c.mutating,
                })).collect::<Vec<_>>()}),
            }),
        }
    }

    async fn change_priority(
        &self,
        priority: i32,
        jobs: &JobSelector,
        dry_run: bool,
    ) -> Result<Outcome, ExecError> {
        let family = match &jobs.game_family {
            Some(family) => Some(self.known_family(family).await?),
            None => None,
        };
        let answer = self
            .queue
            .clone()
            .change_priority(ChangePriorityRequest {
                new_priority: priority,
                ad_id: jobs.ad_id.clone().unwrap_or_default(),
                game_family: family.clone().unwrap_or_default(),
                older_than_minutes: jobs.older_than_minutes.unwrap_or_default(),
                dry_run,
            })
            .await
            .map_err(|s| ExecError::from_status("queue", s))?
            .into_inner();
        let json = json_of(&answer, "admesh.queue.v1.ChangePriorityResponse");
        let mut scope = Vec::new();
        if let Some(family) = &family {
            scope.push(format!("in the {family} family"));
        }
        if let Some(minutes) = jobs.older_than_minutes {
            scope.push(format!("older than {minutes} minutes"));
        }
        if let Some(ad_id) = &jobs.ad_id {
            scope.push(format!("(ad {ad_id})"));
        }
        let verb = if dry_run { "Would change" } else { "Changed" };
        Ok(Outcome {
            message: format!(
                "{verb} priority to {priority} for {} of {} queued ads {}",
                answer.changed,
                answer.matched,
                scope.join(" ")
            ),
            result: json!({
                "adsModified": answer.changed, "adsMatched": answer.matched, "newPriority": priority,
                "gameFamily": family, "olderThanMinutes": jobs.older_than_minutes, "adId": jobs.ad_id,
                "changes": json["changes"], "dryRun": dry_run,
            }),
        })
    }

    /// The family as the queue spells it (the operator may not match its
    /// case); an unknown family is refused, naming the known ones.
    async fn known_family(&self, family: &str) -> Result<String, ExecError> {
        let stats = self.stats().await?;
        let known: Vec<String> = stats["byGameFamily"]
            .as_array()
            .map(|families| {
                families
                    .iter()
                    .filter_map(|f| f["gameFamily"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        known
            .iter()
            .find(|name| name.eq_ignore_ascii_case(family))
            .cloned()
            .ok_or_else(|| {
                ExecError::Rejected(format!(
                    "no game family {family:?} in the queue; known: {}",
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                ))
            })
    }

    async fn stats(&self) -> Result<Value, ExecError> {
        let stats = self
            .queue
            .clone()
            .get_queue_stats(GetQueueStatsRequest {})
            .await
            .map_err(|s| ExecError::from_status("queue", s))?
            .into_inner();
        Ok(json_of(&stats, "admesh.queue.v1.QueueStats"))
    }

    async fn config(&self) -> Result<QueueConfig, ExecError> {
        Ok(self
            .queue
            .clone()
            .get_queue_config(GetQueueConfigRequest {})
            .await
            .map_err(|s| ExecError::from_status("queue", s))?
            .into_inner())
    }

    async fn update_config(
        &self,
        update: UpdateQueueConfigRequest,
        dry_run: bool,
        old_value: impl Fn(&QueueConfig) -> String,
        message: &str,
    ) -> Result<Outcome, ExecError> {
        let before = self.config().await?;
        let before_json = json_of(&before, "admesh.queue.v1.QueueConfig");
        if dry_run {
            return Ok(Outcome {
                message: format!("{message} (now {})", old_value(&before)),
                result: json!({"current": before_json, "change": json_of(&update, "admesh.queue.v1.UpdateQueueConfigRequest")}),
            });
        }
        let after = self
            .queue
            .clone()
            .update_queue_config(update)
            .await
            .map_err(|s| ExecError::from_status("queue", s))?
            .into_inner();
        Ok(Outcome {
            message: format!("{message} (was {})", old_value(&before)),
            result: json!({"previous": before_json, "current": json_of(&after, "admesh.queue.v1.QueueConfig")}),
        })
    }

    /// Jobs past the default max wait, by family, and whether
    /// anti-starvation is on: what raising priorities would help.
    async fn recommendations(&self) -> Result<Outcome, ExecError> {
        let config = self.config().await?;
        let minutes = config.default_max_wait_time.div_ceil(60).max(1);
        let waiting = self
            .queue
            .clone()
            .list_ad_jobs(ListAdJobsRequest {
                status: JobStatus::Queued as i32,
                waiting_longer_than_minutes: minutes,
                page_size: 1000,
                ..Default::default()
            })
            .await
            .map_err(|s| ExecError::from_status("queue", s))?
            .into_inner();
        let mut by_family: std::collections::BTreeMap<String, (u64, i32)> = Default::default();
        for job in &waiting.ads {
            let entry = by_family.entry(job.game_family.clone()).or_insert((0, 5));
            entry.0 += 1;
            entry.1 = entry.1.min(job.priority);
        }
        let mut recommendations: Vec<Value> = by_family
            .iter()
            .filter(|(_, (_, lowest))| *lowest < 5)
            .map(|(family, (count, lowest))| json!({
                "action": format!("Change priority to 5 for all ads in the {family} family"),
                "gameFamily": family, "adsWaitingPastMaxWait": count, "lowestPriority": lowest,
                "why": format!("{count} of its ads have waited longer than the {minutes}-minute max wait"),
            }))
            .collect();
        if !config.anti_starvation_enabled && !waiting.ads.is_empty() {
            recommendations.push(json!({
                "action": "Enable starvation mode",
                "why": "ads are waiting past the max wait and anti-starvation is off",
            }));
        }
        Ok(Outcome {
            message: if recommendations.is_empty() {
                format!(
                    "No changes needed: no queued ad has waited past the {minutes}-minute max wait"
                )
            } else {
                format!(
                    "{} recommendations (nothing was changed)",
                    recommendations.len()
                )
            },
            result: json!({"recommendations": recommendations, "maxWaitMinutes": minutes}),
        })
    }

    /// Anti-starvation on, and every ad past the max wait to priority 5.
    async fn optimize(&self, dry_run: bool) -> Result<Outcome, ExecError> {
        let config = self.config().await?;
        let minutes = config.default_max_wait_time.div_ceil(60).max(1);
        let mut steps = Vec::new();
        if !config.anti_starvation_enabled {
            if !dry_run {
                self.queue
                    .clone()
                    .update_queue_config(UpdateQueueConfigRequest {
                        anti_starvation_enabled: Some(true),
                        ..Default::default()
                    })
                    .await
                    .map_err(|s| ExecError::from_status("queue", s))?;
            }
            steps.push(json!({"step": "enable anti-starvation", "previous": false}));
        }
        let raised = self
            .change_priority(
                5,
                &JobSelector {
                    older_than_minutes: Some(minutes),
                    ..Default::default()
                },
                dry_run,
            )
            .await?;
        steps.push(json!({"step": format!("priority 5 for ads older than {minutes} minutes"), "result": raised.result}));
        let verb = if dry_run {
            "Would optimize"
        } else {
            "Optimized"
        };
        Ok(Outcome {
            message: format!("{verb} the queue: {}", raised.message),
            result: json!({"steps": steps, "dryRun": dry_run}),
        })
    }

    async fn performance_report(&self, period: Period) -> Result<Outcome, ExecError> {
        let since = now_millis() - period_millis(period);
        let counts: Vec<(String, i64)> = on_pool!(&self.database, pool => {
            sqlx::query_as("SELECT kind, COUNT(*) FROM job_events WHERE created_at >= $1 GROUP BY kind ORDER BY kind")
                .bind(since)
                .fetch_all(pool)
                .await
                .map_err(|error| ExecError::Failed(format!("audit trail: {error}")))?
        });
        let stats = self.stats().await?;
        let count = |kind: &str| {
            counts
                .iter()
                .find(|(k, _)| k == kind)
                .map_or(0, |(_, n)| *n)
        };
        let events: serde_json::Map<String, Value> =
            counts.iter().map(|(k, n)| (k.clone(), json!(n))).collect();
        Ok(Outcome {
            message: format!(
                "In {}: {} submitted, {} completed, {} failed, {} dead; {} queued now",
                period.label(),
                count("submitted"),
                count("completed"),
                count("failed"),
                count("dead"),
                stats["total"].as_str().unwrap_or("0"),
            ),
            result: json!({"period": period.label(), "events": events, "queue": stats}),
        })
    }

    /// A campaign by id or by name (case-insensitive); a name that is not
    /// found is refused with the names that are close.
    async fn find_campaign(&self, wanted: &str) -> Result<Campaign, ExecError> {
        let mut page_token = String::new();
        let mut names = Vec::new();
        for _ in 0..20 {
            let page = self
                .bids
                .clone()
                .list_campaigns(ListCampaignsRequest {
                    page_size: 1000,
                    page_token: page_token.clone(),
                    ..Default::default()
                })
                .await
                .map_err(|s| ExecError::from_status("bid-engine", s))?
                .into_inner();
            if let Some(found) = page
                .campaigns
                .iter()
                .find(|c| c.id == wanted || c.name.eq_ignore_ascii_case(wanted))
            {
                return Ok(found.clone());
            }
            names.extend(page.campaigns.into_iter().map(|c| c.name));
            if page.next_page_token.is_empty() {
                break;
            }
            page_token = page.next_page_token;
        }
        let wanted_lower = wanted.to_lowercase();
        let close: Vec<&String> = names
            .iter()
            .filter(|name| {
                let name = name.to_lowercase();
                wanted_lower
                    .split_whitespace()
                    .any(|word| name.contains(word))
            })
            .take(5)
            .collect();
        Err(ExecError::Rejected(if close.is_empty() {
            format!("no campaign named {wanted:?}")
        } else {
            format!(
                "no campaign named {wanted:?}; did you mean {}?",
                close
                    .iter()
                    .map(|n| format!("{n:?}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }))
    }
}

fn campaign_status(campaign: &Campaign) -> String {
    json_of(campaign, "admesh.bid.v1.Campaign")["status"]
        .as_str()
        .unwrap_or("unknown")
        .trim_start_matches("CAMPAIGN_STATUS_")
        .to_lowercase()
}

fn period_millis(period: Period) -> i64 {
    i64::try_from(period.seconds()).unwrap_or(i64::MAX / 2_000) * 1000
}

/// The UTC dates an analytics query covers for `period`.
fn date_range(period: Period) -> (String, String) {
    let day = |millis: i64| timestamp(millis).to_string()[..10].to_string();
    let now = now_millis();
    match period {
        Period::Today => (day(now), day(now)),
        Period::Yesterday => (day(now - 86_400_000), day(now - 86_400_000)),
        Period::Days(days) => (
            day(now - (i64::from(days.max(1)) - 1) * 86_400_000),
            day(now),
        ),
        Period::Minutes(minutes) => (day(now - i64::from(minutes) * 60_000), day(now)),
    }
}

/// A generated message as proto3 JSON, as the REST edge shows it.
pub fn json_of<M: Message>(message: &M, full_name: &str) -> Value {
    admesh_proto::json::to_json(message, full_name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_messages_render_as_proto3_json() {
        let config = QueueConfig {
            anti_starvation_enabled: true,
            worker_count: 3,
            ..Default::default()
        };
        let json = json_of(&config, "admesh.queue.v1.QueueConfig");
        assert_eq!(json["antiStarvationEnabled"], true);
        assert_eq!(json["workerCount"], 3);
        assert_eq!(json["batchSize"], 0, "defaults are present");
    }

    #[test]
    fn periods_become_inclusive_utc_date_ranges() {
        let (start, end) = date_range(Period::Days(7));
        assert_eq!(start.len(), 10);
        assert!(start < end);
        let (start, end) = date_range(Period::Today);
        assert_eq!(start, end);
    }
}
