//! What an operator can ask for: one typed intent per supported command,
//! with its parameters, whether it changes state, and the help text.

use serde_json::{Value, json};

/// Which queued jobs a priority change is for (at least one is set).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JobSelector {
    pub game_family: Option<String>,
    pub older_than_minutes: Option<u32>,
    pub ad_id: Option<String>,
}

/// A time window ending now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Period {
    /// The last N minutes (an hour is 60).
    Minutes(u32),
    /// The last N days, today included.
    Days(u32),
    Today,
    Yesterday,
}

impl Period {
    pub fn label(self) -> String {
        match self {
            Period::Minutes(60) => "the last hour".into(),
            Period::Minutes(minutes) if minutes % 60 == 0 => {
                format!("the last {} hours", minutes / 60)
            }
            Period::Minutes(minutes) => format!("the last {minutes} minutes"),
            Period::Days(1) => "the last day".into(),
            Period::Days(days) => format!("the last {days} days"),
            Period::Today => "today".into(),
            Period::Yesterday => "yesterday".into(),
        }
    }

    /// Seconds the window reaches back (for day periods: whole days).
    pub fn seconds(self) -> u64 {
        match self {
            Period::Minutes(minutes) => u64::from(minutes) * 60,
            Period::Days(days) => u64::from(days) * 86_400,
            Period::Today => 86_400,
            Period::Yesterday => 2 * 86_400,
        }
    }

    fn json(self) -> Value {
        match self {
            Period::Minutes(minutes) => json!({"lastMinutes": minutes}),
            Period::Days(days) => json!({"lastDays": days}),
            Period::Today => json!("today"),
            Period::Yesterday => json!("yesterday"),
        }
    }
}

/// A campaign figure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Metric {
    Ctr,
    Spend,
    Clicks,
    Impressions,
    Cpc,
    Cpm,
    /// Every figure.
    All,
}

impl Metric {
    pub fn as_str(self) -> &'static str {
        match self {
            Metric::Ctr => "ctr",
            Metric::Spend => "spend",
            Metric::Clicks => "clicks",
            Metric::Impressions => "impressions",
            Metric::Cpc => "cpc",
            Metric::Cpm => "cpm",
            Metric::All => "all",
        }
    }
}

/// What top campaigns are ranked by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ranking {
    Spend,
    Clicks,
    Ctr,
}

impl Ranking {
    pub fn as_str(self) -> &'static str {
        match self {
            Ranking::Spend => "spend",
            Ranking::Clicks => "clicks",
            Ranking::Ctr => "ctr",
        }
    }
}

/// Severity filter of the activity log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Debug,
    Info,
    Warn,
    Error,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        }
    }
}

/// A parsed command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Intent {
    ChangePriority {
        priority: i32,
        jobs: JobSelector,
    },
    ShowNext {
        count: u32,
    },
    FindWaiting {
        older_than_minutes: u32,
    },
    SetAntiStarvation {
        enabled: bool,
    },
    SetMaxWait {
        seconds: u32,
    },
    SetWorkerCount {
        workers: u32,
    },
    SetBatchSize {
        size: u32,
    },
    QueueDistribution,
    PerformanceSummary,
    PerformanceReport {
        period: Period,
    },
    FamilyStatistics,
    PredictProcessing {
        ad_id: String,
    },
    RecommendPriorities,
    CapacityUtilization,
    OptimizeQueue,
    PauseCampaign {
        campaign: String,
    },
    ResumeCampaign {
        campaign: String,
    },
    CampaignPerformance {
        campaign: String,
        metric: Metric,
        period: Period,
    },
    TopCampaigns {
        count: u32,
        by: Ranking,
        period: Period,
    },
    Diagnose,
    RecentActivity {
        service: Option<String>,
        level: Option<Level>,
        period: Period,
    },
    Help,
}

impl Intent {
    /// The stable name (the tool name for an LLM provider, the audit key).
    pub fn name(&self) -> &'static str {
        match self {
            Intent::ChangePriority { .. } => "change_priority",
            Intent::ShowNext { .. } => "show_next",
            Intent::FindWaiting { .. } => "find_waiting",
            Intent::SetAntiStarvation { .. } => "set_anti_starvation",
            Intent::SetMaxWait { .. } => "set_max_wait",
            Intent::SetWorkerCount { .. } => "set_worker_count",
            Intent::SetBatchSize { .. } => "set_batch_size",
            Intent::QueueDistribution => "queue_distribution",
            Intent::PerformanceSummary => "performance_summary",
            Intent::PerformanceReport { .. } => "performance_report",
            Intent::FamilyStatistics => "family_statistics",
            Intent::PredictProcessing { .. } => "predict_processing",
            Intent::RecommendPriorities => "recommend_priorities",
            Intent::CapacityUtilization => "capacity_utilization",
            Intent::OptimizeQueue => "optimize_queue",
            Intent::PauseCampaign { .. } => "pause_campaign",
            Intent::ResumeCampaign { .. } => "resume_campaign",
            Intent::CampaignPerformance { .. } => "campaign_performance",
            Intent::TopCampaigns { .. } => "top_campaigns",
            Intent::Diagnose => "diagnose",
            Intent::RecentActivity { .. } => "recent_activity",
            Intent::Help => "help",
        }
    }

    /// Whether running it changes state (and so needs an operator).
    pub fn mutating(&self) -> bool {
        matches!(
            self,
            Intent::ChangePriority { .. }
                | Intent::SetAntiStarvation { .. }
                | Intent::SetMaxWait { .. }
                | Intent::SetWorkerCount { .. }
                | Intent::SetBatchSize { .. }
                | Intent::OptimizeQueue
                | Intent::PauseCampaign { .. }
                | Intent::ResumeCampaign { .. }
        )
    }

    /// The typed parameters as JSON (lowerCamelCase, like the API).
    pub fn parameters(&self) -> Value {
        match self {
            Intent::ChangePriority { priority, jobs } => {
                let mut parameters = json!({"newPriority": priority});
                if let Some(family) = &jobs.game_family {
                    parameters["gameFamily"] = json!(family);
                }
                if let Some(minutes) = jobs.older_than_minutes {
                    parameters["olderThanMinutes"] = json!(minutes);
                }
                if let Some(ad_id) = &jobs.ad_id {
                    parameters["adId"] = json!(ad_id);
                }
                parameters
            }
            Intent::ShowNext { count } => json!({"count": count}),
            Intent::FindWaiting { older_than_minutes } => {
                json!({"olderThanMinutes": older_than_minutes})
            }
            Intent::SetAntiStarvation { enabled } => json!({"enabled": enabled}),
            Intent::SetMaxWait { seconds } => json!({"seconds": seconds}),
            Intent::SetWorkerCount { workers } => json!({"workers": workers}),
            Intent::SetBatchSize { size } => json!({"batchSize": size}),
            Intent::PerformanceReport { period } => json!({"period": period.json()}),
            Intent::PredictProcessing { ad_id } => json!({"adId": ad_id}),
            Intent::PauseCampaign { campaign } | Intent::ResumeCampaign { campaign } => {
                json!({"campaign": campaign})
            }
            Intent::CampaignPerformance {
                campaign,
                metric,
                period,
            } => json!({"campaign": campaign, "metric": metric.as_str(), "period": period.json()}),
            Intent::TopCampaigns { count, by, period } => {
                json!({"count": count, "rankBy": by.as_str(), "period": period.json()})
            }
            Intent::RecentActivity {
                service,
                level,
                period,
            } => {
                let mut parameters = json!({"period": period.json()});
                if let Some(service) = service {
                    parameters["service"] = json!(service);
                }
                if let Some(level) = level {
                    parameters["level"] = json!(level.as_str());
                }
                parameters
            }
            Intent::QueueDistribution
            | Intent::PerformanceSummary
            | Intent::FamilyStatistics
            | Intent::RecommendPriorities
            | Intent::CapacityUtilization
            | Intent::OptimizeQueue
            | Intent::Diagnose
            | Intent::Help => json!({}),
        }
    }
}

/// One supported command: its intent name, what it does, examples.
#[derive(Clone, Copy, Debug)]
pub struct CommandHelp {
    pub intent: &'static str,
    pub description: &'static str,
    pub examples: &'static [&'static str],
    pub mutating: bool,
}

/// Every supported command, in the order help lists them.
pub const CATALOGUE: &[CommandHelp] = &[
    CommandHelp {
        intent: "change_priority",
        description: "Change the priority (1–5) of queued ads: a game family, ads older than N minutes, or one ad",
        examples: &[
            "Change priority to 5 for all ads in the RPG-Fantasy family",
            "Set priority to 4 for ads older than 10 minutes",
            "Move all Strategy ads to high priority",
        ],
        mutating: true,
    },
    CommandHelp {
        intent: "show_next",
        description: "The next N ads in dispatch order",
        examples: &["Show the next 5 ads to be processed"],
        mutating: false,
    },
    CommandHelp {
        intent: "find_waiting",
        description: "Queued ads waiting longer than N minutes",
        examples: &["Find ads waiting longer than 10 minutes"],
        mutating: false,
    },
    CommandHelp {
        intent: "set_anti_starvation",
        description: "Turn anti-starvation (starved ads first) on or off",
        examples: &["Enable starvation mode", "Disable starvation mode"],
        mutating: true,
    },
    CommandHelp {
        intent: "set_max_wait",
        description: "The default maximum wait of new ads",
        examples: &["Set maximum wait time to 600 seconds"],
        mutating: true,
    },
    CommandHelp {
        intent: "set_worker_count",
        description: "The concurrency of the connected processors",
        examples: &["Set worker count to 8", "Scale processors to 12 workers"],
        mutating: true,
    },
    CommandHelp {
        intent: "set_batch_size",
        description: "Leases pushed to a processor at a time",
        examples: &["Set batch size to 20"],
        mutating: true,
    },
    CommandHelp {
        intent: "queue_distribution",
        description: "Queued ads per priority",
        examples: &["What's the current queue distribution by priority?"],
        mutating: false,
    },
    CommandHelp {
        intent: "performance_summary",
        description: "Queue size, waits and processing rate",
        examples: &["Show queue performance summary"],
        mutating: false,
    },
    CommandHelp {
        intent: "performance_report",
        description: "Processing over a period",
        examples: &["Generate performance report for the last hour"],
        mutating: false,
    },
    CommandHelp {
        intent: "family_statistics",
        description: "Queue and analysis figures per game family",
        examples: &["Show processing statistics by game family"],
        mutating: false,
    },
    CommandHelp {
        intent: "predict_processing",
        description: "When an ad is expected to be processed",
        examples: &["Predict when ad 0192f0c4-7a51-7c8e-9d2a-2f6b3c4d5e6f will be processed"],
        mutating: false,
    },
    CommandHelp {
        intent: "recommend_priorities",
        description: "Priority changes that would cut waits (nothing is changed)",
        examples: &["Recommend priority changes for better throughput"],
        mutating: false,
    },
    CommandHelp {
        intent: "capacity_utilization",
        description: "How much of the processing capacity is in use",
        examples: &["Show capacity utilization report"],
        mutating: false,
    },
    CommandHelp {
        intent: "optimize_queue",
        description: "Turn anti-starvation on and raise ads waiting past the maximum wait to priority 5",
        examples: &["Optimize queue for minimum wait time"],
        mutating: true,
    },
    CommandHelp {
        intent: "pause_campaign",
        description: "Pause a campaign by name or id",
        examples: &["Pause campaign Summer Sneakers"],
        mutating: true,
    },
    CommandHelp {
        intent: "resume_campaign",
        description: "Resume a paused campaign",
        examples: &["Resume the Summer Sneakers campaign"],
        mutating: true,
    },
    CommandHelp {
        intent: "campaign_performance",
        description: "CTR, spend, clicks or impressions of a campaign over a period",
        examples: &[
            "What is the CTR of campaign Summer Sneakers over the last 7 days?",
            "Spend of Coffee Subscription today",
        ],
        mutating: false,
    },
    CommandHelp {
        intent: "top_campaigns",
        description: "The top N campaigns by spend, clicks or CTR",
        examples: &["Top 3 campaigns by clicks this week"],
        mutating: false,
    },
    CommandHelp {
        intent: "diagnose",
        description: "Health of every service, queue backlog, latency and errors against the SLOs, with findings",
        examples: &["Diagnose the mesh"],
        mutating: false,
    },
    CommandHelp {
        intent: "recent_activity",
        description: "Recent entries of the activity log, by service, level and time",
        examples: &["Show errors from the queue-service in the last hour"],
        mutating: false,
    },
    CommandHelp {
        intent: "help",
        description: "The supported commands",
        examples: &["help"],
        mutating: false,
    },
];
