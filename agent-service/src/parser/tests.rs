//! The phrasing table: how operators say things → the intent and slots the
//! parser must read. Written here, varying word order, politeness, casing,
//! numbers as words, and typos in words that carry no meaning.

use super::*;
use crate::intent::{Intent as I, JobSelector, Level, Metric, Period, Ranking};

const ID: &str = "0192f0c4-7a51-7c8e-9d2a-2f6b3c4d5e6f";

fn family(priority: i32, name: &str) -> I {
    I::ChangePriority {
        priority,
        jobs: JobSelector {
            game_family: Some(name.into()),
            ..Default::default()
        },
    }
}

fn older(priority: i32, minutes: u32) -> I {
    I::ChangePriority {
        priority,
        jobs: JobSelector {
            older_than_minutes: Some(minutes),
            ..Default::default()
        },
    }
}

fn one_ad(priority: i32) -> I {
    I::ChangePriority {
        priority,
        jobs: JobSelector {
            ad_id: Some(ID.into()),
            ..Default::default()
        },
    }
}

fn family_older(priority: i32, name: &str, minutes: u32) -> I {
    I::ChangePriority {
        priority,
        jobs: JobSelector {
            game_family: Some(name.into()),
            older_than_minutes: Some(minutes),
            ad_id: None,
        },
    }
}

fn perf(campaign: &str, metric: Metric, period: Period) -> I {
    I::CampaignPerformance {
        campaign: campaign.into(),
        metric,
        period,
    }
}

fn activity(service: Option<&str>, level: Option<Level>, period: Period) -> I {
    I::RecentActivity {
        service: service.map(str::to_owned),
        level,
        period,
    }
}

fn table() -> Vec<(String, I)> {
    let id = ID;
    let rows: Vec<(String, I)> = vec![
        // change_priority: a game family
        (
            "Change priority to 5 for all ads in the RPG-Fantasy family".into(),
            family(5, "RPG-Fantasy"),
        ),
        (
            "change priority to 5 for all ads in the rpg-fantasy family".into(),
            family(5, "rpg-fantasy"),
        ),
        (
            "Please set the priority of the Strategy family to 3".into(),
            family(3, "Strategy"),
        ),
        (
            "set priority 4 for the Puzzle Adventure family".into(),
            family(4, "Puzzle Adventure"),
        ),
        (
            "Move all Strategy ads to high priority".into(),
            family(5, "Strategy"),
        ),
        (
            "move all RPG-Fantasy ads to low priority".into(),
            family(1, "RPG-Fantasy"),
        ),
        (
            "Could you kindly bump the \"Casual Match 3\" family to priority five?".into(),
            family(5, "Casual Match 3"),
        ),
        (
            "make every Racing ad priority two".into(),
            family(2, "Racing"),
        ),
        (
            "Update priority to 1 for family Sports".into(),
            family(1, "Sports"),
        ),
        (
            "change the priority of all ads in family Idle-Clicker to four".into(),
            family(4, "Idle-Clicker"),
        ),
        (
            "prioritize the Battle-Royale family".into(),
            family(5, "Battle-Royale"),
        ),
        ("deprioritize all Trivia ads".into(), family(1, "Trivia")),
        (
            "PLEASE CHANGE PRIORITY TO 3 FOR ALL ADS IN THE MOBA FAMILY".into(),
            family(3, "MOBA"),
        ),
        (
            "pleese change priority to 5 for all ads in the RPG-Fantasy family, thnaks".into(),
            family(5, "RPG-Fantasy"),
        ),
        (
            "set RPG-Fantasy ads to priority 4".into(),
            family(4, "RPG-Fantasy"),
        ),
        (
            "give the Shooter family normal priority".into(),
            family(3, "Shooter"),
        ),
        (
            "raise Card-Battler ads to p5".into(),
            family(5, "Card-Battler"),
        ),
        (
            "put all \"Tower Defense\" ads at priority 2".into(),
            family(2, "Tower Defense"),
        ),
        // change_priority: by age
        (
            "Set priority to 4 for ads older than 10 minutes".into(),
            older(4, 10),
        ),
        (
            "set priority to 5 for ads waiting longer than 15 minutes".into(),
            older(5, 15),
        ),
        (
            "change priority of ads older than half an hour to 5".into(),
            older(5, 30),
        ),
        (
            "bump ads that have been waiting over an hour to priority 5".into(),
            older(5, 60),
        ),
        (
            "Set the priority to three for every ad older than twenty minutes".into(),
            older(3, 20),
        ),
        (
            "raise priority to 5 for ads stuck more than 2h".into(),
            older(5, 120),
        ),
        (
            "please make ads older than 45 mins priority 4".into(),
            older(4, 45),
        ),
        (
            "change priority to 2 for jobs older than 90 seconds".into(),
            older(2, 2),
        ),
        // change_priority: one ad, or family and age together
        (format!("set priority of ad {id} to 5"), one_ad(5)),
        (format!("Change the priority for {id} to 1"), one_ad(1)),
        (format!("prioritize ad {id}"), one_ad(5)),
        (
            "Change priority to 5 for all RPG-Fantasy ads older than 10 minutes".into(),
            family_older(5, "RPG-Fantasy", 10),
        ),
        (
            "set priority 4 for Strategy family ads waiting longer than 5 minutes".into(),
            family_older(4, "Strategy", 5),
        ),
        // show_next
        (
            "Show the next 5 ads to be processed".into(),
            I::ShowNext { count: 5 },
        ),
        ("show me the next five ads".into(), I::ShowNext { count: 5 }),
        (
            "what are the next 3 jobs in the queue?".into(),
            I::ShowNext { count: 3 },
        ),
        (
            "Which ads are next in line?".into(),
            I::ShowNext { count: 10 },
        ),
        (
            "peek at the next twenty ads".into(),
            I::ShowNext { count: 20 },
        ),
        (
            "list the next 12 ads please".into(),
            I::ShowNext { count: 12 },
        ),
        ("NEXT 7 ADS".into(), I::ShowNext { count: 7 }),
        (
            "whats up next in the queue".into(),
            I::ShowNext { count: 10 },
        ),
        ("show upcoming 4 ads".into(), I::ShowNext { count: 4 }),
        // find_waiting
        (
            "Find ads waiting longer than 10 minutes".into(),
            I::FindWaiting {
                older_than_minutes: 10,
            },
        ),
        (
            "List all ads waiting longer than 30 minutes".into(),
            I::FindWaiting {
                older_than_minutes: 30,
            },
        ),
        (
            "which ads have been waiting for more than an hour?".into(),
            I::FindWaiting {
                older_than_minutes: 60,
            },
        ),
        (
            "show ads older than fifteen minutes".into(),
            I::FindWaiting {
                older_than_minutes: 15,
            },
        ),
        (
            "are any ads stuck longer than 2 hours".into(),
            I::FindWaiting {
                older_than_minutes: 120,
            },
        ),
        (
            "find jobs queued for over 5 min".into(),
            I::FindWaiting {
                older_than_minutes: 5,
            },
        ),
        (
            "get me ads that waited more than 45 minutes".into(),
            I::FindWaiting {
                older_than_minutes: 45,
            },
        ),
        (
            "Display ads waiting > 20 minutes".into(),
            I::FindWaiting {
                older_than_minutes: 20,
            },
        ),
        // set_anti_starvation
        (
            "Enable starvation mode".into(),
            I::SetAntiStarvation { enabled: true },
        ),
        (
            "Disable starvation mode".into(),
            I::SetAntiStarvation { enabled: false },
        ),
        (
            "turn on anti-starvation".into(),
            I::SetAntiStarvation { enabled: true },
        ),
        (
            "turn anti-starvation off please".into(),
            I::SetAntiStarvation { enabled: false },
        ),
        (
            "switch starvation protection off".into(),
            I::SetAntiStarvation { enabled: false },
        ),
        (
            "activate starvation mode".into(),
            I::SetAntiStarvation { enabled: true },
        ),
        (
            "ENABLE ANTI-STARVATION".into(),
            I::SetAntiStarvation { enabled: true },
        ),
        (
            "could you deactivate starvation mode".into(),
            I::SetAntiStarvation { enabled: false },
        ),
        // set_max_wait
        (
            "Set maximum wait time to 600 seconds".into(),
            I::SetMaxWait { seconds: 600 },
        ),
        (
            "set max wait to 10 minutes".into(),
            I::SetMaxWait { seconds: 600 },
        ),
        (
            "change the maximum wait time to 300".into(),
            I::SetMaxWait { seconds: 300 },
        ),
        (
            "max wait should be 2 minutes".into(),
            I::SetMaxWait { seconds: 120 },
        ),
        (
            "set the max wait time to an hour".into(),
            I::SetMaxWait { seconds: 3600 },
        ),
        (
            "please update maximum wait to ninety seconds".into(),
            I::SetMaxWait { seconds: 90 },
        ),
        ("Max wait: 45s".into(), I::SetMaxWait { seconds: 45 }),
        // set_worker_count
        (
            "Set worker count to 8".into(),
            I::SetWorkerCount { workers: 8 },
        ),
        (
            "Scale processors to 12 workers".into(),
            I::SetWorkerCount { workers: 12 },
        ),
        (
            "scale to twenty workers".into(),
            I::SetWorkerCount { workers: 20 },
        ),
        ("use 4 workers".into(), I::SetWorkerCount { workers: 4 }),
        (
            "increase the number of workers to 16".into(),
            I::SetWorkerCount { workers: 16 },
        ),
        (
            "set the processor concurrency to 6".into(),
            I::SetWorkerCount { workers: 6 },
        ),
        (
            "Scale Processors To 3 Workers".into(),
            I::SetWorkerCount { workers: 3 },
        ),
        (
            "please have ten processors running".into(),
            I::SetWorkerCount { workers: 10 },
        ),
        (
            "change worker count to 1".into(),
            I::SetWorkerCount { workers: 1 },
        ),
        // set_batch_size
        ("Set batch size to 20".into(), I::SetBatchSize { size: 20 }),
        (
            "change the batch size to 50".into(),
            I::SetBatchSize { size: 50 },
        ),
        ("batch size 5 please".into(), I::SetBatchSize { size: 5 }),
        (
            "make batches of twenty five".into(),
            I::SetBatchSize { size: 25 },
        ),
        (
            "use a batch-size of 100".into(),
            I::SetBatchSize { size: 100 },
        ),
        // queue_distribution
        (
            "What's the current queue distribution by priority?".into(),
            I::QueueDistribution,
        ),
        ("show queue distribution".into(), I::QueueDistribution),
        (
            "how are ads distributed across priorities".into(),
            I::QueueDistribution,
        ),
        (
            "give me the priority breakdown".into(),
            I::QueueDistribution,
        ),
        (
            "how many ads per priority level?".into(),
            I::QueueDistribution,
        ),
        (
            "Distribution of the queue by priority, please".into(),
            I::QueueDistribution,
        ),
        // performance_summary
        (
            "Show queue performance summary".into(),
            I::PerformanceSummary,
        ),
        ("queue status".into(), I::PerformanceSummary),
        ("how is the queue doing?".into(), I::PerformanceSummary),
        (
            "give me a performance overview".into(),
            I::PerformanceSummary,
        ),
        ("summarize queue performance".into(), I::PerformanceSummary),
        ("Performance summary pls".into(), I::PerformanceSummary),
        // performance_report
        (
            "Generate performance report for the last hour".into(),
            I::PerformanceReport {
                period: Period::Minutes(60),
            },
        ),
        (
            "performance report for the past 24 hours".into(),
            I::PerformanceReport {
                period: Period::Minutes(1440),
            },
        ),
        (
            "report on the last 30 minutes".into(),
            I::PerformanceReport {
                period: Period::Minutes(30),
            },
        ),
        (
            "how many ads were processed in the last hour".into(),
            I::PerformanceReport {
                period: Period::Minutes(60),
            },
        ),
        (
            "throughput over the past 2 hours".into(),
            I::PerformanceReport {
                period: Period::Minutes(120),
            },
        ),
        (
            "give me today's report".into(),
            I::PerformanceReport {
                period: Period::Today,
            },
        ),
        (
            "generate a report".into(),
            I::PerformanceReport {
                period: Period::Minutes(60),
            },
        ),
        // family_statistics
        (
            "Show processing statistics by game family".into(),
            I::FamilyStatistics,
        ),
        ("stats per family".into(), I::FamilyStatistics),
        (
            "break down the queue by game family".into(),
            I::FamilyStatistics,
        ),
        ("how is each game family doing".into(), I::FamilyStatistics),
        ("family statistics please".into(), I::FamilyStatistics),
        (
            "show me numbers for every family".into(),
            I::FamilyStatistics,
        ),
        // predict_processing
        (
            format!("Predict when ad {id} will be processed"),
            I::PredictProcessing { ad_id: id.into() },
        ),
        (
            format!("when will {id} be processed?"),
            I::PredictProcessing { ad_id: id.into() },
        ),
        (
            format!("ETA for ad {id}"),
            I::PredictProcessing { ad_id: id.into() },
        ),
        (
            format!("estimate the processing time of job {id}"),
            I::PredictProcessing { ad_id: id.into() },
        ),
        (
            format!("when is ad {id} going to be done"),
            I::PredictProcessing { ad_id: id.into() },
        ),
        // recommend_priorities
        (
            "Recommend priority changes for better throughput".into(),
            I::RecommendPriorities,
        ),
        (
            "what priority changes would you suggest?".into(),
            I::RecommendPriorities,
        ),
        (
            "any recommendations on priorities".into(),
            I::RecommendPriorities,
        ),
        (
            "suggest how to reprioritize the queue".into(),
            I::RecommendPriorities,
        ),
        (
            "which priorities should I change".into(),
            I::RecommendPriorities,
        ),
        // capacity_utilization
        (
            "Show capacity utilization report".into(),
            I::CapacityUtilization,
        ),
        (
            "what's our capacity utilisation".into(),
            I::CapacityUtilization,
        ),
        (
            "how busy are the processors?".into(),
            I::CapacityUtilization,
        ),
        ("capacity".into(), I::CapacityUtilization),
        ("are the workers saturated".into(), I::CapacityUtilization),
        // optimize_queue
        (
            "Optimize queue for minimum wait time".into(),
            I::OptimizeQueue,
        ),
        ("optimise the queue".into(), I::OptimizeQueue),
        ("minimize wait times".into(), I::OptimizeQueue),
        (
            "please tune the queue for lower waits".into(),
            I::OptimizeQueue,
        ),
        // pause_campaign
        (
            "Pause campaign Summer Sneakers".into(),
            I::PauseCampaign {
                campaign: "Summer Sneakers".into(),
            },
        ),
        (
            "pause the Summer Sneakers campaign".into(),
            I::PauseCampaign {
                campaign: "Summer Sneakers".into(),
            },
        ),
        (
            "please pause \"Coffee Subscription\"".into(),
            I::PauseCampaign {
                campaign: "Coffee Subscription".into(),
            },
        ),
        (
            "stop campaign Winter Boots now".into(),
            I::PauseCampaign {
                campaign: "Winter Boots".into(),
            },
        ),
        (
            "halt the campaign called Spring Sale".into(),
            I::PauseCampaign {
                campaign: "Spring Sale".into(),
            },
        ),
        (
            "suspend campaign c-123".into(),
            I::PauseCampaign {
                campaign: "c-123".into(),
            },
        ),
        (
            "PAUSE CAMPAIGN Trail Runners".into(),
            I::PauseCampaign {
                campaign: "Trail Runners".into(),
            },
        ),
        (
            "pause Summer Sneakers".into(),
            I::PauseCampaign {
                campaign: "Summer Sneakers".into(),
            },
        ),
        // resume_campaign
        (
            "Resume the Summer Sneakers campaign".into(),
            I::ResumeCampaign {
                campaign: "Summer Sneakers".into(),
            },
        ),
        (
            "resume campaign Coffee Subscription".into(),
            I::ResumeCampaign {
                campaign: "Coffee Subscription".into(),
            },
        ),
        (
            "unpause \"Winter Boots\"".into(),
            I::ResumeCampaign {
                campaign: "Winter Boots".into(),
            },
        ),
        (
            "reactivate campaign Spring Sale please".into(),
            I::ResumeCampaign {
                campaign: "Spring Sale".into(),
            },
        ),
        (
            "restart the campaign named Trail Runners".into(),
            I::ResumeCampaign {
                campaign: "Trail Runners".into(),
            },
        ),
        (
            "resume Summer Sneakers".into(),
            I::ResumeCampaign {
                campaign: "Summer Sneakers".into(),
            },
        ),
        // campaign_performance
        (
            "What is the CTR of campaign Summer Sneakers over the last 7 days?".into(),
            perf("Summer Sneakers", Metric::Ctr, Period::Days(7)),
        ),
        (
            "Spend of Coffee Subscription today".into(),
            perf("Coffee Subscription", Metric::Spend, Period::Today),
        ),
        (
            "how much did campaign Winter Boots spend yesterday".into(),
            perf("Winter Boots", Metric::Spend, Period::Yesterday),
        ),
        (
            "CTR for \"Spring Sale\" in the past 30 days".into(),
            perf("Spring Sale", Metric::Ctr, Period::Days(30)),
        ),
        (
            "click-through rate of campaign Trail Runners this week".into(),
            perf("Trail Runners", Metric::Ctr, Period::Days(7)),
        ),
        (
            "how is the Summer Sneakers campaign performing".into(),
            perf("Summer Sneakers", Metric::All, Period::Days(7)),
        ),
        (
            "impressions of campaign Coffee Subscription in the last 24 hours".into(),
            perf(
                "Coffee Subscription",
                Metric::Impressions,
                Period::Minutes(1440),
            ),
        ),
        (
            "clicks for campaign Winter Boots last 3 days".into(),
            perf("Winter Boots", Metric::Clicks, Period::Days(3)),
        ),
        (
            "show the spend of campaign Spring Sale".into(),
            perf("Spring Sale", Metric::Spend, Period::Days(7)),
        ),
        (
            "CPC of Summer Sneakers over the last two weeks".into(),
            perf("Summer Sneakers", Metric::Cpc, Period::Days(14)),
        ),
        (
            "campaign analytics for Trail Runners".into(),
            perf("Trail Runners", Metric::All, Period::Days(7)),
        ),
        // top_campaigns
        (
            "Top 3 campaigns by clicks this week".into(),
            I::TopCampaigns {
                count: 3,
                by: Ranking::Clicks,
                period: Period::Days(7),
            },
        ),
        (
            "show the top five campaigns by spend".into(),
            I::TopCampaigns {
                count: 5,
                by: Ranking::Spend,
                period: Period::Days(7),
            },
        ),
        (
            "which campaigns have the best CTR today".into(),
            I::TopCampaigns {
                count: 5,
                by: Ranking::Ctr,
                period: Period::Today,
            },
        ),
        (
            "top 10 campaigns in the last 30 days".into(),
            I::TopCampaigns {
                count: 10,
                by: Ranking::Spend,
                period: Period::Days(30),
            },
        ),
        (
            "best performing campaigns".into(),
            I::TopCampaigns {
                count: 5,
                by: Ranking::Spend,
                period: Period::Days(7),
            },
        ),
        (
            "list the 4 campaigns with the most clicks yesterday".into(),
            I::TopCampaigns {
                count: 4,
                by: Ranking::Clicks,
                period: Period::Yesterday,
            },
        ),
        (
            "highest spending campaigns over the past day".into(),
            I::TopCampaigns {
                count: 5,
                by: Ranking::Spend,
                period: Period::Days(1),
            },
        ),
        // diagnose
        ("Diagnose the mesh".into(), I::Diagnose),
        ("run a health check".into(), I::Diagnose),
        ("is everything ok?".into(), I::Diagnose),
        ("what's wrong with the system".into(), I::Diagnose),
        ("check the health of all services".into(), I::Diagnose),
        ("please diagnose".into(), I::Diagnose),
        ("troubleshoot the cluster".into(), I::Diagnose),
        ("Is everything healthy".into(), I::Diagnose),
        // recent_activity
        (
            "Show errors from the queue-service in the last hour".into(),
            activity(
                Some("queue-service"),
                Some(Level::Error),
                Period::Minutes(60),
            ),
        ),
        (
            "show recent activity".into(),
            activity(None, None, Period::Minutes(60)),
        ),
        (
            "what happened in the last 30 minutes".into(),
            activity(None, None, Period::Minutes(30)),
        ),
        (
            "any warnings from the bid engine today?".into(),
            activity(Some("bid-engine"), Some(Level::Warn), Period::Today),
        ),
        (
            "show the audit log".into(),
            activity(None, None, Period::Minutes(60)),
        ),
        (
            "list error logs of the analytics service over the past 2 hours".into(),
            activity(
                Some("analytics-service"),
                Some(Level::Error),
                Period::Minutes(120),
            ),
        ),
        (
            "recent activity of the ad-server".into(),
            activity(Some("ad-server"), None, Period::Minutes(60)),
        ),
        (
            "show info logs from the edge in the last day".into(),
            activity(Some("edge"), Some(Level::Info), Period::Days(1)),
        ),
        // help
        ("help".into(), I::Help),
        ("what can you do?".into(), I::Help),
        ("list supported commands".into(), I::Help),
        ("HELP ME".into(), I::Help),
    ];
    rows
}

#[test]
fn every_phrasing_reads_as_its_intent_and_slots() {
    let rows = table();
    assert!(rows.len() >= 150, "the table has {} phrasings", rows.len());
    let mut failures = Vec::new();
    for (text, expected) in &rows {
        match parse(text) {
            Ok(intent) if intent == *expected => {}
            other => failures.push(format!(
                "{text:?}\n    expected {expected:?}\n    got      {other:?}"
            )),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} phrasings misread:\n{}",
        failures.len(),
        rows.len(),
        failures.join("\n")
    );
}

#[test]
fn the_table_covers_every_intent() {
    let covered: std::collections::BTreeSet<&str> =
        table().iter().map(|(_, intent)| intent.name()).collect();
    for command in crate::intent::CATALOGUE {
        assert!(
            covered.contains(command.intent),
            "no phrasing for {}",
            command.intent
        );
        for example in command.examples {
            let parsed = parse(example).unwrap_or_else(|e| panic!("example {example:?}: {e}"));
            assert_eq!(parsed.name(), command.intent, "example {example:?}");
            assert_eq!(parsed.mutating(), command.mutating, "{}", command.intent);
        }
    }
}

#[test]
fn bad_input_gets_clear_errors() {
    assert_eq!(parse(""), Err(ParseError::Empty));
    assert_eq!(parse("   \n\t "), Err(ParseError::Empty));
    assert!(matches!(
        parse(&"a".repeat(10_000)),
        Err(ParseError::TooLong(10_000))
    ));
    assert_eq!(
        parse("show\u{0}the next 5 ads"),
        Err(ParseError::ControlCharacters)
    );
    assert_eq!(
        parse("show the next \u{1b}[31m ads"),
        Err(ParseError::ControlCharacters)
    );
    for nonsense in [
        "'; DROP TABLE ad_jobs; --",
        "SELECT * FROM users WHERE 1=1",
        "bake me a cake",
        "the quick brown fox",
    ] {
        assert!(
            matches!(parse(nonsense), Err(ParseError::Unknown(_))),
            "{nonsense}"
        );
    }
    match parse("change the priority of ads") {
        Err(ParseError::Invalid { intent, message }) => {
            assert_eq!(intent, "change_priority");
            assert!(
                message.contains("which priority") || message.contains("which ads"),
                "{message}"
            );
        }
        other => panic!("{other:?}"),
    }
    match parse("set priority to 9 for the RPG-Fantasy family") {
        Err(ParseError::Invalid { message, .. }) => assert!(message.contains("1–5"), "{message}"),
        other => panic!("{other:?}"),
    }
    match parse("set worker count to 5000") {
        Err(ParseError::Invalid { message, .. }) => {
            assert!(message.contains("1–1000"), "{message}")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn unknown_text_names_the_closest_commands() {
    match parse("show me the waiting queue things") {
        Err(ParseError::Unknown(closest)) => {
            assert!(!closest.is_empty() && closest.len() <= 3, "{closest:?}");
        }
        other => panic!("{other:?}"),
    }
    let message = parse("bake me a cake").expect_err("unknown").to_string();
    assert!(message.contains("closest supported commands"), "{message}");
}

#[test]
fn two_commands_in_one_sentence_are_ambiguous() {
    match parse("pause campaign Summer Sneakers and set worker count to 4") {
        Err(ParseError::Ambiguous(intents)) => {
            assert!(
                intents.contains(&"pause_campaign") && intents.contains(&"set_worker_count"),
                "{intents:?}"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn number_words_and_units_lex_into_numbers() {
    let sentence = Sentence::new("twenty-five ads, two hundred fifty jobs, a dozen, 10m, p3");
    let numbers: Vec<u32> = sentence.tokens.iter().filter_map(|t| t.number).collect();
    assert_eq!(numbers, vec![25, 250, 12, 10, 3]);
}
