//! One grammar rule per intent: the key words that make a sentence that
//! intent, and the slots it reads.

use crate::intent::{Intent, JobSelector, Metric, Period, Ranking};

use super::{
    lexer::Sentence,
    slots::{
        campaign_name, count_after, game_family, in_range, level, priority_value, service_name,
    },
};

pub(super) struct Rule {
    pub(super) intent: &'static str,
    /// `None`: not this intent. `Some(Err)`: this intent, bad parameters.
    pub(super) matches: fn(&Sentence) -> Option<Result<Intent, String>>,
}

pub(super) const RULES: &[Rule] = &[
    Rule {
        intent: "change_priority",
        matches: change_priority,
    },
    Rule {
        intent: "show_next",
        matches: show_next,
    },
    Rule {
        intent: "find_waiting",
        matches: find_waiting,
    },
    Rule {
        intent: "set_anti_starvation",
        matches: set_anti_starvation,
    },
    Rule {
        intent: "set_max_wait",
        matches: set_max_wait,
    },
    Rule {
        intent: "set_worker_count",
        matches: set_worker_count,
    },
    Rule {
        intent: "set_batch_size",
        matches: set_batch_size,
    },
    Rule {
        intent: "queue_distribution",
        matches: queue_distribution,
    },
    Rule {
        intent: "performance_summary",
        matches: performance_summary,
    },
    Rule {
        intent: "performance_report",
        matches: performance_report,
    },
    Rule {
        intent: "family_statistics",
        matches: family_statistics,
    },
    Rule {
        intent: "predict_processing",
        matches: predict_processing,
    },
    Rule {
        intent: "recommend_priorities",
        matches: recommend_priorities,
    },
    Rule {
        intent: "capacity_utilization",
        matches: capacity_utilization,
    },
    Rule {
        intent: "optimize_queue",
        matches: optimize_queue,
    },
    Rule {
        intent: "pause_campaign",
        matches: pause_campaign,
    },
    Rule {
        intent: "resume_campaign",
        matches: resume_campaign,
    },
    Rule {
        intent: "campaign_performance",
        matches: campaign_performance,
    },
    Rule {
        intent: "top_campaigns",
        matches: top_campaigns,
    },
    Rule {
        intent: "diagnose",
        matches: diagnose,
    },
    Rule {
        intent: "recent_activity",
        matches: recent_activity,
    },
    Rule {
        intent: "help",
        matches: help,
    },
];

const CHANGE_VERBS: &[&str] = &[
    "change",
    "set",
    "update",
    "make",
    "move",
    "bump",
    "raise",
    "lower",
    "put",
    "give",
    "adjust",
    "increase",
    "decrease",
    "prioritize",
    "prioritise",
    "deprioritize",
    "deprioritise",
    "expedite",
    "boost",
    "reprioritize",
    "escalate",
    "drop",
    "mark",
    "push",
];

fn recommending(sentence: &Sentence) -> bool {
    sentence.has_any(&[
        "recommend",
        "suggest",
        "suggestion",
        "recommendation",
        "advise",
        "advice",
        "should",
    ])
}

fn change_priority(sentence: &Sentence) -> Option<Result<Intent, String>> {
    let about_priority = sentence.has_any(&[
        "priority",
        "prioritize",
        "prioritise",
        "deprioritize",
        "deprioritise",
        "expedite",
        "reprioritize",
    ]);
    if !about_priority
        || !sentence.has_any(CHANGE_VERBS)
        || recommending(sentence)
        || sentence.has_any(&["distribution", "breakdown", "optimize", "optimise"])
    {
        return None;
    }
    let older = sentence.duration_seconds().filter(|_| {
        sentence.has_any(&[
            "older", "than", "waiting", "waited", "over", "longer", "age", "aged", "stuck",
        ])
    });
    let ad_id = sentence.ad_id();
    let family = if ad_id.is_some() {
        None
    } else {
        game_family(sentence)
    };
    let jobs = JobSelector {
        game_family: family,
        older_than_minutes: older.map(|seconds| seconds.div_ceil(60) as u32),
        ad_id,
    };
    let everything = sentence.has_any(&["all", "every", "everything"]);
    Some((|| {
        let value = priority_value(sentence).ok_or("which priority? say e.g. \"to 5\"")?;
        let priority = in_range(value, 1, 5, "priority")? as i32;
        if jobs == JobSelector::default() {
            return Err(if everything {
                "which ads? name a game family, an age (\"older than 10 minutes\") or an ad id"
                    .to_string()
            } else {
                "for which ads? name a game family, an age (\"older than 10 minutes\") or an ad id"
                    .to_string()
            });
        }
        Ok(Intent::ChangePriority { priority, jobs })
    })())
}

fn show_next(sentence: &Sentence) -> Option<Result<Intent, String>> {
    let next = sentence.has_any(&["next", "upcoming", "peek"])
        || sentence.has_phrase(&["in", "line"])
        || sentence.has_phrase(&["front", "of", "the", "queue"]);
    if !next || sentence.has("priority") || sentence.has("campaign") {
        return None;
    }
    let count = count_after(sentence, &["next", "first", "top", "upcoming"]).unwrap_or(10);
    Some(in_range(i64::from(count), 1, 1000, "count").map(|count| Intent::ShowNext { count }))
}

fn find_waiting(sentence: &Sentence) -> Option<Result<Intent, String>> {
    let waiting = sentence.has_any(&["waiting", "waited", "wait", "stuck", "older", "queued"]);
    let asking = sentence.has_any(&[
        "find", "list", "show", "which", "what", "get", "any", "display", "give", "are", "how",
    ]);
    if !waiting
        || !asking
        || sentence.has_any(&[
            "priority", "maximum", "max", "set", "average", "predict", "when", "campaign",
        ])
        || sentence.has_any(&["starvation"])
    {
        return None;
    }
    let seconds = sentence.duration_seconds()?;
    let minutes = seconds.div_ceil(60);
    Some(
        in_range(minutes as i64, 1, 100_000, "minutes")
            .map(|older_than_minutes| Intent::FindWaiting { older_than_minutes }),
    )
}

fn set_anti_starvation(sentence: &Sentence) -> Option<Result<Intent, String>> {
    if !sentence.has_any(&["starvation", "anti-starvation", "antistarvation"]) {
        return None;
    }
    let off = sentence.has_any(&[
        "disable",
        "disabled",
        "off",
        "deactivate",
        "stop",
        "no",
        "false",
    ]);
    let on = sentence.has_any(&[
        "enable", "enabled", "on", "activate", "start", "true", "use",
    ]);
    match (on, off) {
        (true, false) => Some(Ok(Intent::SetAntiStarvation { enabled: true })),
        (false, true) => Some(Ok(Intent::SetAntiStarvation { enabled: false })),
        (true, true) => Some(Err("on or off? the sentence says both".into())),
        (false, false) => Some(Err("say whether to enable or disable it".into())),
    }
}

fn set_max_wait(sentence: &Sentence) -> Option<Result<Intent, String>> {
    let max = sentence.has_any(&["max", "maximum", "max-wait", "maxwait"]) || sentence.has("limit");
    if !max || !sentence.has_any(&["wait", "max-wait", "maxwait"]) || sentence.has("priority") {
        return None;
    }
    let seconds = sentence
        .duration_seconds()
        .or_else(|| sentence.plain_numbers().last().map(|(_, n)| u64::from(*n)));
    Some(match seconds {
        Some(seconds) => in_range(seconds as i64, 1, 86_400, "max wait (seconds)")
            .map(|seconds| Intent::SetMaxWait { seconds }),
        None => Err("how long? e.g. \"to 600 seconds\"".into()),
    })
}

fn set_worker_count(sentence: &Sentence) -> Option<Result<Intent, String>> {
    if !sentence.has_any(&["worker", "processor", "concurrency", "worker-count"])
        || sentence.has_any(&["utilization", "utilisation", "capacity", "batch"])
    {
        return None;
    }
    let verb = sentence.has_any(&[
        "set", "scale", "change", "use", "increase", "decrease", "make", "have", "run", "adjust",
        "bump", "raise", "lower", "update", "give", "add",
    ]);
    if !verb {
        return None;
    }
    let numbers = sentence.plain_numbers();
    Some(match numbers.last() {
        Some((_, workers)) => in_range(i64::from(*workers), 1, 1000, "worker count")
            .map(|workers| Intent::SetWorkerCount { workers }),
        None => Err("how many workers? e.g. \"to 8\"".into()),
    })
}

fn set_batch_size(sentence: &Sentence) -> Option<Result<Intent, String>> {
    if !sentence.has_any(&["batch", "batch-size", "batchsize"]) {
        return None;
    }
    let numbers = sentence.plain_numbers();
    Some(match numbers.last() {
        Some((_, size)) => in_range(i64::from(*size), 1, 1000, "batch size")
            .map(|size| Intent::SetBatchSize { size }),
        None => Err("how large? e.g. \"to 20\"".into()),
    })
}

fn queue_distribution(sentence: &Sentence) -> Option<Result<Intent, String>> {
    let distribution = sentence.has_any(&["distribution", "distributed", "breakdown", "split"])
        || (sentence.has_phrase(&["how", "many"])
            && sentence.has_any(&["each", "per"])
            && sentence.has("priority"))
        || (sentence.has_any(&["per", "by", "each"])
            && sentence.has("priority")
            && sentence.has_any(&["count", "number", "many"]));
    if !distribution
        || sentence.has("family")
        || sentence.has_any(
            CHANGE_VERBS
                .iter()
                .filter(|verb| **verb != "set")
                .copied()
                .collect::<Vec<_>>()
                .as_slice(),
        ) && sentence.has("to")
    {
        return None;
    }
    Some(Ok(Intent::QueueDistribution))
}

fn performance_summary(sentence: &Sentence) -> Option<Result<Intent, String>> {
    let summary = (sentence.has_any(&["performance", "queue", "throughput"])
        && sentence.has_any(&[
            "summary",
            "overview",
            "summarize",
            "summarise",
            "status",
            "health",
        ]))
        || sentence.has_phrase(&["how", "is", "the", "queue", "doing"])
        || sentence.has_phrase(&["how", "the", "queue", "is", "doing"]);
    if !summary
        || sentence.has_any(&[
            "report",
            "family",
            "capacity",
            "utilization",
            "utilisation",
            "campaign",
            "distribution",
            "diagnose",
        ])
        || sentence.period().is_some()
    {
        return None;
    }
    Some(Ok(Intent::PerformanceSummary))
}

fn performance_report(sentence: &Sentence) -> Option<Result<Intent, String>> {
    let report = sentence.has("report")
        && !sentence.has_any(&[
            "capacity",
            "utilization",
            "utilisation",
            "campaign",
            "family",
        ]);
    let period_summary =
        sentence.has_any(&["performance", "throughput", "processed", "processing"])
            && sentence.period().is_some()
            && !sentence.has_any(&["campaign", "family", "ctr", "spend"]);
    if !report && !period_summary {
        return None;
    }
    let period = sentence.period().unwrap_or(Period::Minutes(60));
    Some(Ok(Intent::PerformanceReport { period }))
}

fn family_statistics(sentence: &Sentence) -> Option<Result<Intent, String>> {
    let by_family = sentence.has("family")
        && (sentence.has_any(&[
            "by",
            "per",
            "each",
            "every",
            "across",
            "statistic",
            "statistics",
            "stat",
        ]) || sentence.has_phrase(&["game", "family"]));
    let asking = sentence.has_any(&[
        "statistic",
        "statistics",
        "stat",
        "stats",
        "breakdown",
        "break",
        "figure",
        "number",
        "metric",
        "show",
        "report",
        "summary",
        "how",
    ]);
    if !by_family || !asking || sentence.has_any(CHANGE_VERBS) && sentence.has("priority") {
        return None;
    }
    Some(Ok(Intent::FamilyStatistics))
}

fn predict_processing(sentence: &Sentence) -> Option<Result<Intent, String>> {
    let predict = sentence.has_any(&["predict", "eta", "estimate", "estimated", "forecast"])
        || (sentence.has("when")
            && sentence.has_any(&[
                "processed",
                "process",
                "done",
                "ready",
                "start",
                "run",
                "handled",
            ]));
    if !predict || sentence.has("priority") {
        return None;
    }
    Some(match sentence.ad_id() {
        Some(ad_id) => Ok(Intent::PredictProcessing { ad_id }),
        None => Err("which ad? give its id".into()),
    })
}

fn recommend_priorities(sentence: &Sentence) -> Option<Result<Intent, String>> {
    if !recommending(sentence)
        || !sentence.has_any(&[
            "priority",
            "prioritize",
            "prioritise",
            "throughput",
            "reprioritize",
            "change",
        ])
    {
        return None;
    }
    Some(Ok(Intent::RecommendPriorities))
}

fn capacity_utilization(sentence: &Sentence) -> Option<Result<Intent, String>> {
    let capacity = sentence.has_any(&[
        "utilization",
        "utilisation",
        "utilized",
        "utilised",
        "capacity",
        "saturation",
        "saturated",
    ]) || sentence.has_phrase(&["how", "busy"]);
    if !capacity || sentence.has_any(&["set", "scale"]) && sentence.plain_numbers().len() == 1 {
        return None;
    }
    Some(Ok(Intent::CapacityUtilization))
}

fn optimize_queue(sentence: &Sentence) -> Option<Result<Intent, String>> {
    if !sentence.has_any(&[
        "optimize",
        "optimise",
        "optimization",
        "optimisation",
        "tune",
        "minimize",
        "minimise",
    ]) {
        return None;
    }
    if sentence.has("campaign") {
        return None;
    }
    Some(Ok(Intent::OptimizeQueue))
}

const PAUSE_WORDS: &[&str] = &["pause", "halt", "suspend", "stop", "freeze", "deactivate"];
const RESUME_WORDS: &[&str] = &[
    "resume",
    "unpause",
    "restart",
    "reactivate",
    "unfreeze",
    "continue",
    "reenable",
    "re-enable",
];

fn pause_campaign(sentence: &Sentence) -> Option<Result<Intent, String>> {
    if !sentence.has_any(PAUSE_WORDS)
        || sentence.has_any(RESUME_WORDS)
        || sentence.has("starvation")
    {
        return None;
    }
    if !sentence.has("campaign") && sentence.quoted().is_none() && !sentence.has("pause") {
        return None;
    }
    Some(match campaign_name(sentence, PAUSE_WORDS) {
        Some(campaign) => Ok(Intent::PauseCampaign { campaign }),
        None => Err("which campaign? give its name or id".into()),
    })
}

fn resume_campaign(sentence: &Sentence) -> Option<Result<Intent, String>> {
    if !sentence.has_any(RESUME_WORDS) || sentence.has("starvation") {
        return None;
    }
    if !sentence.has("campaign")
        && sentence.quoted().is_none()
        && !sentence.has_any(&["resume", "unpause"])
    {
        return None;
    }
    Some(match campaign_name(sentence, RESUME_WORDS) {
        Some(campaign) => Ok(Intent::ResumeCampaign { campaign }),
        None => Err("which campaign? give its name or id".into()),
    })
}

fn metric(sentence: &Sentence) -> Option<Metric> {
    if sentence.has_any(&["ctr", "click-through", "clickthrough"])
        || sentence.has_phrase(&["click", "through"])
    {
        Some(Metric::Ctr)
    } else if sentence.has_any(&["spend", "spent", "spending", "cost", "costs", "budget"]) {
        Some(Metric::Spend)
    } else if sentence.has("cpc") {
        Some(Metric::Cpc)
    } else if sentence.has("cpm") {
        Some(Metric::Cpm)
    } else if sentence.has_any(&["impression", "view"]) {
        Some(Metric::Impressions)
    } else if sentence.has("click") {
        Some(Metric::Clicks)
    } else if sentence.has_any(&[
        "performance",
        "performing",
        "analytic",
        "analytics",
        "stat",
        "statistic",
        "doing",
        "result",
        "metric",
        "number",
    ]) {
        Some(Metric::All)
    } else {
        None
    }
}

fn ranking(sentence: &Sentence) -> Ranking {
    if sentence.has_any(&["ctr", "click-through", "clickthrough"]) {
        Ranking::Ctr
    } else if sentence.has("click") {
        Ranking::Clicks
    } else {
        Ranking::Spend
    }
}

fn top_campaigns(sentence: &Sentence) -> Option<Result<Intent, String>> {
    let top = sentence.has_any(&["top", "best", "highest", "biggest", "leading", "most"])
        || sentence.has_phrase(&["rank", "campaign"]);
    if !top
        || !sentence.has("campaign")
        || sentence.has_any(PAUSE_WORDS)
        || sentence.has_any(RESUME_WORDS)
    {
        return None;
    }
    let count = count_after(sentence, &["top", "best", "first"]).unwrap_or(5);
    let period = sentence.period().unwrap_or(Period::Days(7));
    Some(
        in_range(i64::from(count), 1, 100, "count").map(|count| Intent::TopCampaigns {
            count,
            by: ranking(sentence),
            period,
        }),
    )
}

fn campaign_performance(sentence: &Sentence) -> Option<Result<Intent, String>> {
    let metric = metric(sentence)?;
    let top = sentence.has_any(&["top", "best", "highest", "biggest", "leading", "most"]);
    if top
        || sentence.has_any(PAUSE_WORDS)
        || sentence.has_any(RESUME_WORDS)
        || sentence.has_any(&["queue", "family", "processing", "report"])
    {
        return None;
    }
    let named = sentence.has("campaign")
        || sentence.quoted().is_some()
        || matches!(
            metric,
            Metric::Ctr | Metric::Spend | Metric::Cpc | Metric::Cpm
        );
    if !named {
        return None;
    }
    let period = sentence.period().unwrap_or(Period::Days(7));
    Some(match campaign_name(sentence, &["of", "for"]) {
        Some(campaign) => Ok(Intent::CampaignPerformance {
            campaign,
            metric,
            period,
        }),
        None => Err("which campaign? give its name or id".into()),
    })
}

fn diagnose(sentence: &Sentence) -> Option<Result<Intent, String>> {
    let diagnose = sentence.has_any(&[
        "diagnose",
        "diagnosis",
        "diagnostic",
        "diagnostics",
        "troubleshoot",
        "healthcheck",
        "health-check",
    ]) || sentence.has_phrase(&["health", "check"])
        || (sentence.has("health")
            && sentence.has_any(&["mesh", "service", "system", "cluster", "everything"]))
        || sentence.has_phrase(&["what", "wrong"])
        || (sentence.has_phrase(&["is", "everything"])
            && sentence.has_any(&["ok", "okay", "healthy", "fine", "up", "working"]));
    if !diagnose || sentence.has("log") {
        return None;
    }
    Some(Ok(Intent::Diagnose))
}

fn recent_activity(sentence: &Sentence) -> Option<Result<Intent, String>> {
    let activity = sentence.has_any(&["activity", "log", "audit", "event", "happened", "history"])
        || (sentence.has_any(&["error", "warning", "warn"])
            && sentence.has_any(&["show", "list", "recent", "any", "find", "get", "from", "in"]));
    if !activity || sentence.has_any(&["priority", "campaign"]) || sentence.has_any(&["diagnose"]) {
        return None;
    }
    Some(Ok(Intent::RecentActivity {
        service: service_name(sentence),
        level: level(sentence),
        period: sentence.period().unwrap_or(Period::Minutes(60)),
    }))
}

fn help(sentence: &Sentence) -> Option<Result<Intent, String>> {
    let help = sentence.has_any(&["help", "commands", "command"])
        && !sentence.has_any(&["priority", "campaign", "worker"])
        || sentence.has_phrase(&["what", "can", "you", "do"])
        || sentence.has_phrase(&["what", "can", "i", "ask"]);
    help.then_some(Ok(Intent::Help))
}
