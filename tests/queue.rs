//! The queue-service's behaviour (SPEC §4), over gRPC against a real
//! `admesh serve queue-service` process. Each scenario is written once and
//! run per profile by `conformance!`; the test plays the processor itself
//! (a real `Process` stream) so it can fail, stall or finish jobs on cue.

mod support;

use std::{collections::HashMap, net::SocketAddr, time::Duration};

use admesh_proto::queue::v1::{
    self as pb, process_event::Event, queue_service_client::QueueServiceClient,
};
use tokio_stream::StreamExt;
use tonic::{Code, Streaming, transport::Channel};

use support::{Process, channel, eventually, spawn_service};

/// Bounds for conditions the tests poll; never reached when things work.
const PATIENCE: Duration = Duration::from_secs(20);

/// A queue-service process and a client to it, restartable on its storage.
struct Queue {
    process: Process,
    address: SocketAddr,
    env: Vec<(&'static str, String)>,
    _data: tempfile::TempDir,
    /// The cluster profile's database, dropped with the queue.
    _postgres: Option<support::TestPostgres>,
}

impl Queue {
    /// The embedded profile: SQLite in a fresh directory, no Redis.
    async fn embedded(settings: &[(&'static str, &str)]) -> Self {
        let data = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}", data.path().join("queue.db").display());
        Self::start_with(data, url, settings).await
    }

    /// The cluster profile: a fresh PostgreSQL database, Redis under a
    /// prefix of its own.
    async fn cluster(settings: &[(&'static str, &str)]) -> Self {
        let postgres = support::TestPostgres::create().await;
        let prefix = format!("{{admesh:queue:test-{}}}", uuid::Uuid::new_v4().simple());
        let mut all = vec![
            ("ADMESH_REDIS__URL", support::redis_url()),
            ("ADMESH_REDIS__QUEUE_PREFIX", prefix),
        ];
        all.extend(
            settings
                .iter()
                .map(|(key, value)| (*key, value.to_string())),
        );
        let borrowed: Vec<(&'static str, &str)> = all
            .iter()
            .map(|(key, value)| (*key, value.as_str()))
            .collect();
        let data = tempfile::tempdir().expect("tempdir");
        let mut queue = Self::start_with(data, postgres.url.clone(), &borrowed).await;
        queue._postgres = Some(postgres);
        queue
    }

    async fn start_with(
        data: tempfile::TempDir,
        database_url: String,
        settings: &[(&'static str, &str)],
    ) -> Self {
        let mut env = vec![("ADMESH_DATABASE__URL", database_url)];
        env.extend(
            settings
                .iter()
                .map(|(key, value)| (*key, value.to_string())),
        );
        let (process, address) = spawn_service("queue-service", "ADMESH_QUEUE__LISTEN", &env);
        support::wait_until_serving(address).await;
        Self {
            process,
            address,
            env,
            _data: data,
            _postgres: None,
        }
    }

    fn database_url(&self) -> &str {
        &self.env[0].1
    }

    fn client(&self) -> QueueServiceClient<Channel> {
        QueueServiceClient::new(channel(self.address))
    }

    /// The Redis key prefix of a cluster queue.
    fn redis_prefix(&self) -> String {
        self.env
            .iter()
            .find(|(key, _)| *key == "ADMESH_REDIS__QUEUE_PREFIX")
            .map(|(_, value)| value.clone())
            .expect("a cluster queue has a Redis prefix")
    }

    /// kill -9, then start again on the same storage.
    async fn crash_and_restart(&mut self) {
        self.process.kill();
        let (process, address) = spawn_service("queue-service", "ADMESH_QUEUE__LISTEN", &self.env);
        support::wait_until_serving(address).await;
        self.process = process;
        self.address = address;
    }
}

fn ad(title: &str, family: &str, priority: i32) -> pb::SubmitAdRequest {
    pb::SubmitAdRequest {
        title: title.into(),
        description: "Lead your guild through dungeons and face the dragon.".into(),
        game_family: family.into(),
        target_audience: vec!["18-34".into()],
        visual_elements: vec!["dragon artwork".into(), "gameplay footage".into()],
        call_to_action: "Play free now".into(),
        duration: 30,
        priority,
        max_wait_time: None,
    }
}

async fn submit(queue: &Queue, ads: Vec<pb::SubmitAdRequest>) -> Vec<pb::AdJob> {
    queue
        .client()
        .submit_ads_batch(pb::SubmitAdsBatchRequest { ads })
        .await
        .expect("submit batch")
        .into_inner()
        .ads
}

async fn get(queue: &Queue, id: &str) -> pb::AdJob {
    queue
        .client()
        .get_ad(pb::GetAdRequest { ad_id: id.into() })
        .await
        .expect("get ad")
        .into_inner()
}

async fn peek(queue: &Queue, count: u32) -> Vec<String> {
    queue
        .client()
        .peek_next(pb::PeekNextRequest { count })
        .await
        .expect("peek")
        .into_inner()
        .ads
        .into_iter()
        .map(|job| job.ad_id)
        .collect()
}

async fn configure(queue: &Queue, update: pb::UpdateQueueConfigRequest) -> pb::QueueConfig {
    queue
        .client()
        .update_queue_config(update)
        .await
        .expect("update config")
        .into_inner()
}

/// Sets how many jobs connected processors run at once.
async fn set_worker_count(queue: &Queue, workers: u32) -> pb::QueueConfig {
    configure(
        queue,
        pb::UpdateQueueConfigRequest {
            worker_count: Some(workers),
            ..Default::default()
        },
    )
    .await
}

async fn stats(queue: &Queue) -> pb::QueueStats {
    queue
        .client()
        .get_queue_stats(pb::GetQueueStatsRequest {})
        .await
        .expect("stats")
        .into_inner()
}

async fn event_kinds(queue: &Queue, id: &str) -> Vec<String> {
    queue
        .client()
        .list_job_events(pb::ListJobEventsRequest { ad_id: id.into() })
        .await
        .expect("job events")
        .into_inner()
        .events
        .into_iter()
        .map(|event| event.kind)
        .collect()
}

fn analysis() -> pb::AdAnalysis {
    pb::AdAnalysis {
        quality_score: 80,
        recommendation: pb::Recommendation::Approve as i32,
        reasons: vec!["test".into()],
        analyzer_version: "test".into(),
        ..Default::default()
    }
}

async fn complete(queue: &Queue, lease_id: &str) -> pb::LeaseAck {
    queue
        .client()
        .complete_job(pb::CompleteJobRequest {
            lease_id: lease_id.into(),
            analysis: Some(analysis()),
        })
        .await
        .expect("complete")
        .into_inner()
}

async fn fail(queue: &Queue, lease_id: &str, error: &str, retryable: bool) -> pb::LeaseAck {
    queue
        .client()
        .fail_job(pb::FailJobRequest {
            lease_id: lease_id.into(),
            error: error.into(),
            retryable,
        })
        .await
        .expect("fail")
        .into_inner()
}

/// The test acting as an ad-processor over a real `Process` stream.
struct TestProcessor {
    stream: Streaming<pb::ProcessEvent>,
    /// The last concurrency the queue asked for.
    concurrency: u32,
}

impl TestProcessor {
    async fn connect(queue: &Queue, id: &str, capacity: u32) -> Self {
        let stream = queue
            .client()
            .process(pb::ProcessRequest {
                processor_id: id.into(),
                capacity,
            })
            .await
            .expect("open Process stream")
            .into_inner();
        Self {
            stream,
            concurrency: 0,
        }
    }

    /// The next event within `within`, `None` if nothing came.
    async fn next_event(&mut self, within: Duration) -> Option<Event> {
        match tokio::time::timeout(within, self.stream.next()).await {
            Ok(Some(Ok(pb::ProcessEvent { event: Some(event) }))) => Some(event),
            Ok(Some(Ok(_))) => None,
            Ok(Some(Err(status))) => panic!("Process stream failed: {status}"),
            Ok(None) => panic!("Process stream ended"),
            Err(_) => None,
        }
    }

    /// The next lease within `within` (settings on the way are noted).
    async fn lease_within(&mut self, within: Duration) -> Option<pb::JobLease> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_event(left).await? {
                Event::Lease(lease) => return Some(lease),
                Event::Settings(settings) => self.concurrency = settings.concurrency,
            }
        }
    }

    async fn lease(&mut self) -> pb::JobLease {
        self.lease_within(PATIENCE)
            .await
            .expect("a lease within the patience bound")
    }

    async fn leases(&mut self, count: usize) -> Vec<pb::JobLease> {
        let mut leases = Vec::with_capacity(count);
        while leases.len() < count {
            leases.push(self.lease().await);
        }
        leases
    }

    /// Asserts no lease arrives in a short window (capacity is full).
    async fn expect_no_lease(&mut self) {
        if let Some(lease) = self.lease_within(Duration::from_millis(300)).await {
            panic!("unexpected lease {}", lease.lease_id);
        }
    }
}

fn ids(leases: &[pb::JobLease]) -> Vec<String> {
    leases.iter().map(job_id).collect()
}

fn lease_ids(leases: &[pb::JobLease]) -> Vec<String> {
    leases.iter().map(|lease| lease.lease_id.clone()).collect()
}

fn job_id(lease: &pb::JobLease) -> String {
    lease.job.as_ref().expect("job").ad_id.clone()
}

fn ids_of(jobs: &[pb::AdJob]) -> Vec<String> {
    jobs.iter().map(|job| job.ad_id.clone()).collect()
}

fn status_of(job: &pb::AdJob) -> pb::JobStatus {
    pb::JobStatus::try_from(job.status).expect("known status")
}

// ── scenarios, each run against every profile ──────────────────────────

async fn bad_input_is_rejected_naming_the_field(queue: Queue) {
    let mut client = queue.client();
    for (priority, title) in [(0, "Fine title"), (6, "Fine title"), (3, " ")] {
        let error = client
            .submit_ad(ad(title, "RPG-Fantasy", priority))
            .await
            .expect_err("invalid");
        assert_eq!(error.code(), Code::InvalidArgument);
        let field = if title.trim().is_empty() {
            "title:"
        } else {
            "priority:"
        };
        assert!(error.message().starts_with(field), "{}", error.message());
    }
    let oversize = pb::SubmitAdsBatchRequest {
        ads: vec![ad("Too many", "Strategy", 3); 1001],
    };
    let error = client
        .submit_ads_batch(oversize)
        .await
        .expect_err("oversize");
    assert_eq!(error.code(), Code::InvalidArgument);
    assert!(error.message().starts_with("ads:"), "{}", error.message());

    let mut batch = vec![ad("Good one", "Strategy", 3); 3];
    batch[1].priority = 9;
    batch[2].title.clear();
    let error = client
        .submit_ads_batch(pb::SubmitAdsBatchRequest { ads: batch })
        .await
        .expect_err("bad items");
    assert!(
        error.message().contains("ads[1].priority"),
        "{}",
        error.message()
    );
    assert!(
        error.message().contains("ads[2].title"),
        "{}",
        error.message()
    );
    assert_eq!(
        stats(&queue).await.total,
        0,
        "all or nothing: nothing queued"
    );

    let unknown = "01a214b0-0000-7000-8000-000000000000".to_string();
    let error = client
        .get_ad(pb::GetAdRequest {
            ad_id: unknown.clone(),
        })
        .await
        .expect_err("unknown");
    assert_eq!(error.code(), Code::NotFound);
    assert!(error.message().starts_with("ad_id:"));
    let error = client
        .get_ad(pb::GetAdRequest {
            ad_id: "not-a-uuid".into(),
        })
        .await
        .expect_err("malformed");
    assert_eq!(error.code(), Code::InvalidArgument);
    let error = client
        .cancel_ad(pb::CancelAdRequest {
            ad_id: unknown.clone(),
        })
        .await
        .expect_err("unknown");
    assert_eq!(error.code(), Code::NotFound);
    let error = client
        .change_priority(pb::ChangePriorityRequest {
            new_priority: 5,
            ad_id: unknown.clone(),
            ..Default::default()
        })
        .await
        .expect_err("unknown");
    assert_eq!(error.code(), Code::NotFound);
    let error = client
        .change_priority(pb::ChangePriorityRequest {
            new_priority: 0,
            game_family: "Strategy".into(),
            ..Default::default()
        })
        .await
        .expect_err("bad priority");
    assert!(error.message().starts_with("new_priority:"));
    let error = client
        .requeue_dead_letters(pb::RequeueDeadLettersRequest {
            ad_ids: vec![unknown],
            all: false,
        })
        .await
        .expect_err("unknown");
    assert_eq!(error.code(), Code::NotFound);
    let error = client
        .update_queue_config(pb::UpdateQueueConfigRequest {
            worker_count: Some(0),
            ..Default::default()
        })
        .await
        .expect_err("bad config");
    assert!(error.message().starts_with("worker_count:"));
}

async fn dispatch_follows_priority_then_fifo(queue: Queue) {
    let jobs = submit(
        &queue,
        vec![
            ad("a", "Strategy", 3),
            ad("b", "Strategy", 5),
            ad("c", "Strategy", 1),
            ad("d", "Strategy", 5),
            ad("e", "Strategy", 3),
        ],
    )
    .await;
    let by_title: HashMap<&str, &str> = jobs
        .iter()
        .map(|job| (job.title.as_str(), job.ad_id.as_str()))
        .collect();
    let expected: Vec<String> = ["b", "d", "a", "e", "c"]
        .iter()
        .map(|title| by_title[title].to_string())
        .collect();
    assert_eq!(peek(&queue, 10).await, expected);
    for job in &jobs {
        let place = expected
            .iter()
            .position(|id| *id == job.ad_id)
            .expect("submitted");
        assert_eq!(
            job.position,
            Some(place as u64 + 1),
            "position at submission"
        );
    }
    for (position, id) in expected.iter().enumerate() {
        assert_eq!(get(&queue, id).await.position, Some(position as u64 + 1));
    }
    let mut processor = TestProcessor::connect(&queue, "p1", 10).await;
    set_worker_count(&queue, 10).await;
    let leases = processor.leases(5).await;
    assert_eq!(ids(&leases), expected);
    let leased = get(&queue, &expected[0]).await;
    assert_eq!(status_of(&leased), pb::JobStatus::Processing);
    assert_eq!(leased.attempt, 1);
    assert_eq!(leased.position, None);
}

async fn leases_in_flight_never_exceed_capacity_or_worker_count(queue: Queue) {
    configure(
        &queue,
        pb::UpdateQueueConfigRequest {
            batch_size: Some(2),
            worker_count: Some(100),
            ..Default::default()
        },
    )
    .await;
    submit(&queue, vec![ad("job", "Puzzle", 3); 8]).await;
    let mut processor = TestProcessor::connect(&queue, "p1", 3).await;
    let first = processor.leases(3).await;
    processor.expect_no_lease().await;
    assert!(complete(&queue, &first[0].lease_id).await.accepted);
    let _fourth = processor.lease().await;
    processor.expect_no_lease().await;

    // The worker count changes the processor's concurrency live.
    assert_eq!(processor.concurrency, 3);
    set_worker_count(&queue, 1).await;
    let event = processor.next_event(PATIENCE).await.expect("settings");
    assert!(
        matches!(
            event,
            Event::Settings(pb::ProcessorSettings { concurrency: 1 })
        ),
        "{event:?}"
    );
    // Three still held: finishing two leaves one, which is the new limit.
    for lease in first.iter().skip(1) {
        complete(&queue, &lease.lease_id).await;
    }
    processor.expect_no_lease().await;
}

async fn a_starved_job_overtakes_a_steady_stream_of_higher_priorities(queue: Queue) {
    set_worker_count(&queue, 1).await;
    let mut low = ad("patient low priority", "Strategy", 1);
    low.max_wait_time = Some(1);
    let low = submit(&queue, vec![low]).await.remove(0);
    submit(&queue, vec![ad("urgent", "Strategy", 5); 2]).await;
    let mut processor = TestProcessor::connect(&queue, "p1", 1).await;
    // A steady stream: two priority-5 jobs arrive for every one processed,
    // so priority alone would never reach the low job.
    let mut high_before_low = 0;
    loop {
        submit(&queue, vec![ad("urgent", "Strategy", 5); 2]).await;
        let lease = processor.lease().await;
        let job = lease.job.as_ref().expect("job");
        if job.ad_id == low.ad_id {
            let leased_at = support_time::now_millis();
            let queued_at = support_time::millis(low.queued_at.as_ref().expect("queued_at"));
            assert!(
                leased_at >= queued_at + 1_000,
                "dispatched before its max wait"
            );
            break;
        }
        assert_eq!(job.priority, 5);
        high_before_low += 1;
        assert!(high_before_low < 2_000, "the starved job never came");
        complete(&queue, &lease.lease_id).await;
    }
    assert!(
        high_before_low > 0,
        "the high-priority stream went first while it could"
    );
    assert!(
        stats(&queue).await.total > 0,
        "high-priority jobs were still waiting"
    );
}

async fn anti_starvation_can_be_switched_off(queue: Queue) {
    let mut low = ad("low", "Strategy", 1);
    low.max_wait_time = Some(1);
    let low = submit(&queue, vec![low]).await.remove(0);
    let high = submit(&queue, vec![ad("high", "Strategy", 5)])
        .await
        .remove(0);
    assert_eq!(
        peek(&queue, 2).await,
        [high.ad_id.clone(), low.ad_id.clone()]
    );
    eventually("the low job starves", PATIENCE, || async {
        (stats(&queue).await.starved == 1).then_some(())
    })
    .await;
    assert_eq!(
        peek(&queue, 2).await,
        [low.ad_id.clone(), high.ad_id.clone()]
    );
    // A newcomer queues behind the starved job and its own priority.
    let later = submit(&queue, vec![ad("later", "Strategy", 5)])
        .await
        .remove(0);
    assert_eq!(later.position, Some(3));
    assert_eq!(get(&queue, &later.ad_id).await.position, Some(3));
    let config = configure(
        &queue,
        pb::UpdateQueueConfigRequest {
            anti_starvation_enabled: Some(false),
            ..Default::default()
        },
    )
    .await;
    assert!(!config.anti_starvation_enabled);
    assert_eq!(peek(&queue, 3).await, [high.ad_id, later.ad_id, low.ad_id]);
}

async fn failures_retry_with_backoff_then_dead_letter_then_requeue(queue: Queue) {
    configure(
        &queue,
        pb::UpdateQueueConfigRequest {
            max_attempts: Some(3),
            ..Default::default()
        },
    )
    .await;
    let job = submit(&queue, vec![ad("flaky", "Racing", 3)])
        .await
        .remove(0);
    let mut processor = TestProcessor::connect(&queue, "p1", 1).await;
    for attempt in 1..=3u32 {
        let lease = processor.lease().await;
        assert_eq!(lease.job.as_ref().expect("job").attempt, attempt);
        let failed_at = support_time::now_millis();
        let ack = fail(&queue, &lease.lease_id, &format!("boom {attempt}"), true).await;
        assert!(ack.accepted);
        if attempt < 3 {
            assert_eq!(ack.status, pb::JobStatus::Queued as i32);
            let waiting = get(&queue, &job.ad_id).await;
            assert_eq!(waiting.last_error, format!("boom {attempt}"));
            let not_before = support_time::millis(waiting.not_before.as_ref().expect("backoff"));
            // Backoff: 1 s · 2^(attempt-1), half of it jittered.
            let least = 500 * (1 << (attempt - 1));
            assert!(not_before >= failed_at + least - 50, "backoff too short");
        } else {
            assert_eq!(ack.status, pb::JobStatus::Dead as i32);
        }
    }
    let dead = queue
        .client()
        .list_dead_letters(pb::ListDeadLettersRequest::default())
        .await
        .expect("dead letters")
        .into_inner()
        .ads;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].ad_id, job.ad_id);
    assert_eq!(dead[0].last_error, "boom 3");
    let requeued = queue
        .client()
        .requeue_dead_letters(pb::RequeueDeadLettersRequest {
            ad_ids: vec![job.ad_id.clone()],
            all: false,
        })
        .await
        .expect("requeue")
        .into_inner();
    assert_eq!(requeued.requeued, 1);
    let lease = processor.lease().await;
    assert_eq!(
        lease.job.as_ref().expect("job").attempt,
        1,
        "attempts reset"
    );
    assert!(complete(&queue, &lease.lease_id).await.accepted);
    let kinds = event_kinds(&queue, &job.ad_id).await;
    let expected = [
        "submitted",
        "leased",
        "failed",
        "retried",
        "leased",
        "failed",
        "retried",
        "leased",
        "failed",
        "dead",
        "requeued",
        "leased",
        "completed",
    ];
    assert_eq!(kinds, expected);

    // A failure retrying cannot fix ends the job at once.
    let doomed = submit(&queue, vec![ad("doomed", "Racing", 3)])
        .await
        .remove(0);
    let lease = processor.lease().await;
    let ack = fail(&queue, &lease.lease_id, "unsupported format", false).await;
    assert_eq!(ack.status, pb::JobStatus::Failed as i32);
    assert_eq!(
        status_of(&get(&queue, &doomed.ad_id).await),
        pb::JobStatus::Failed
    );
}

async fn answers_are_idempotent_and_expired_leases_are_redelivered(queue: Queue) {
    let job = submit(&queue, vec![ad("slow", "Sports", 3)])
        .await
        .remove(0);
    let mut processor = TestProcessor::connect(&queue, "p1", 2).await;
    let first = processor.lease().await;
    // No answer: after the 1 s lease timeout the job comes back.
    let second = processor.lease().await;
    assert_eq!(job_id(&second), job.ad_id);
    assert_eq!(second.job.as_ref().expect("job").attempt, 2);
    assert_ne!(first.lease_id, second.lease_id);
    let late = complete(&queue, &first.lease_id).await;
    assert!(!late.accepted, "an expired lease cannot complete");
    assert_eq!(late.status, pb::JobStatus::Processing as i32);
    assert!(complete(&queue, &second.lease_id).await.accepted);
    let again = complete(&queue, &second.lease_id).await;
    assert!(!again.accepted);
    assert_eq!(again.status, pb::JobStatus::Completed as i32);
    assert!(!fail(&queue, &second.lease_id, "late", true).await.accepted);
    let kinds = event_kinds(&queue, &job.ad_id).await;
    assert_eq!(
        kinds,
        [
            "submitted",
            "leased",
            "lease_expired",
            "retried",
            "leased",
            "completed"
        ]
    );

    // Heartbeats keep a lease alive past the timeout.
    let kept = submit(&queue, vec![ad("kept", "Sports", 3)])
        .await
        .remove(0);
    let lease = processor.lease().await;
    let until = support_time::now_millis() + 2_500;
    while support_time::now_millis() < until {
        let answer = queue
            .client()
            .heartbeat(pb::HeartbeatRequest {
                lease_ids: vec![lease.lease_id.clone(), "unknown.1".into()],
            })
            .await
            .expect("heartbeat")
            .into_inner();
        assert_eq!(answer.lost_lease_ids, ["unknown.1"]);
        // Three beats per lease timeout.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(complete(&queue, &lease.lease_id).await.accepted);
    assert_eq!(
        event_kinds(&queue, &kept.ad_id).await,
        ["submitted", "leased", "completed"]
    );
}

async fn priority_changes_by_family_and_age_return_counts_and_reorder(queue: Queue) {
    let jobs = submit(
        &queue,
        vec![
            ad("s1", "Strategy", 4),
            ad("r1", "RPG-Fantasy", 1),
            ad("r2", "RPG-Fantasy", 2),
            ad("r3", "RPG-Fantasy", 5),
            ad("s2", "Strategy", 4),
        ],
    )
    .await;
    let id = |title: &str| {
        jobs.iter()
            .find(|job| job.title == title)
            .expect("submitted")
            .ad_id
            .clone()
    };
    let before = peek(&queue, 10).await;
    assert_eq!(before, [id("r3"), id("s1"), id("s2"), id("r2"), id("r1")]);
    let change = |dry_run: bool| pb::ChangePriorityRequest {
        new_priority: 5,
        game_family: "RPG-Fantasy".into(),
        dry_run,
        ..Default::default()
    };
    let dry = queue
        .client()
        .change_priority(change(true))
        .await
        .expect("dry run")
        .into_inner();
    assert_eq!((dry.matched, dry.changed, dry.dry_run), (3, 2, true));
    assert_eq!(dry.changes.len(), 2);
    assert_eq!(peek(&queue, 10).await, before, "a dry run changes nothing");
    let done = queue
        .client()
        .change_priority(change(false))
        .await
        .expect("change")
        .into_inner();
    assert_eq!((done.matched, done.changed), (3, 2));
    let old_of: HashMap<String, i32> = done
        .changes
        .iter()
        .map(|change| (change.ad_id.clone(), change.old_priority))
        .collect();
    assert_eq!(old_of[&id("r1")], 1);
    assert_eq!(old_of[&id("r2")], 2);
    // FIFO within the new priority: r1 was queued before r2 and r3.
    assert_eq!(
        peek(&queue, 10).await,
        [id("r1"), id("r2"), id("r3"), id("s1"), id("s2")]
    );
    let events = event_kinds(&queue, &id("r1")).await;
    assert_eq!(events, ["submitted", "priority_changed"]);

    // Age: nothing here has waited a minute yet.
    let aged = queue
        .client()
        .change_priority(pb::ChangePriorityRequest {
            new_priority: 1,
            older_than_minutes: 1,
            ..Default::default()
        })
        .await
        .expect("by age")
        .into_inner();
    assert_eq!((aged.matched, aged.changed), (0, 0));

    // One job: must be queued.
    let single = queue
        .client()
        .change_priority(pb::ChangePriorityRequest {
            new_priority: 2,
            ad_id: id("s2"),
            ..Default::default()
        })
        .await
        .expect("one job")
        .into_inner();
    assert_eq!((single.matched, single.changed), (1, 1));
    assert_eq!(get(&queue, &id("s2")).await.priority, 2);
}

async fn cancel_only_queued_jobs(queue: Queue) {
    let jobs = submit(&queue, vec![ad("one", "Puzzle", 5), ad("two", "Puzzle", 1)]).await;
    let mut processor = TestProcessor::connect(&queue, "p1", 1).await;
    let lease = processor.lease().await;
    assert_eq!(job_id(&lease), jobs[0].ad_id);
    let mut client = queue.client();
    let error = client
        .cancel_ad(pb::CancelAdRequest {
            ad_id: jobs[0].ad_id.clone(),
        })
        .await
        .expect_err("processing");
    assert_eq!(error.code(), Code::FailedPrecondition);
    let cancelled = client
        .cancel_ad(pb::CancelAdRequest {
            ad_id: jobs[1].ad_id.clone(),
        })
        .await
        .expect("cancel")
        .into_inner();
    assert_eq!(status_of(&cancelled), pb::JobStatus::Failed);
    assert!(cancelled.last_error.starts_with("cancelled"));
    let error = client
        .cancel_ad(pb::CancelAdRequest {
            ad_id: jobs[1].ad_id.clone(),
        })
        .await
        .expect_err("twice");
    assert_eq!(error.code(), Code::FailedPrecondition);
    assert_eq!(stats(&queue).await.total, 0);
}

async fn stats_and_listings_reflect_the_queue(queue: Queue) {
    let jobs = submit(
        &queue,
        vec![
            ad("a", "RPG-Fantasy", 5),
            ad("b", "RPG-Fantasy", 3),
            ad("c", "Strategy", 3),
            ad("d", "Strategy", 1),
        ],
    )
    .await;
    let mut processor = TestProcessor::connect(&queue, "p1", 1).await;
    let lease = processor.lease().await;
    assert_eq!(job_id(&lease), jobs[0].ad_id);
    complete(&queue, &lease.lease_id).await;
    // The processor takes the next job, b (priority 3, first in).
    let next = processor.lease().await;
    assert_eq!(job_id(&next), jobs[1].ad_id);
    let figures = stats(&queue).await;
    assert_eq!((figures.total, figures.processing), (2, 1));
    assert_eq!(figures.distribution.get(&3), Some(&1));
    assert_eq!(figures.distribution.get(&1), Some(&1));
    assert_eq!(figures.distribution.get(&5), Some(&0));
    assert_eq!(figures.completed, 1);
    assert!(figures.processing_rate > 0.0);
    let rpg = figures
        .by_game_family
        .iter()
        .find(|family| family.game_family == "RPG-Fantasy")
        .expect("family");
    assert_eq!((rpg.processing, rpg.completed), (1, 1));
    assert_eq!(rpg.average_quality_score, 80.0);
    // The gauges (counted on the Redis indexes in the cluster profile) say
    // the same, scraped from the service's /metrics.
    let wanted = [
        "admesh_queue_depth{priority=\"1\"} 1",
        "admesh_queue_depth{priority=\"3\"} 1",
        "admesh_queue_depth{priority=\"5\"} 0",
        "admesh_queue_processing 1",
        "admesh_queue_starved 0",
    ];
    let address = queue.address;
    support::eventually("the queue gauges", Duration::from_secs(20), || async move {
        let text = reqwest::get(format!("http://{address}/metrics"))
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        wanted
            .iter()
            .all(|line| text.lines().any(|have| have == *line))
            .then_some(())
    })
    .await;

    let mut client = queue.client();
    let page = client
        .list_ad_jobs(pb::ListAdJobsRequest {
            status: pb::JobStatus::Queued as i32,
            page_size: 1,
            ..Default::default()
        })
        .await
        .expect("list")
        .into_inner();
    assert_eq!(page.total_size, 2);
    assert_eq!(ids_of(&page.ads), [jobs[2].ad_id.clone()], "queue order");
    let rest = client
        .list_ad_jobs(pb::ListAdJobsRequest {
            status: pb::JobStatus::Queued as i32,
            page_size: 1,
            page_token: page.next_page_token,
            ..Default::default()
        })
        .await
        .expect("next page")
        .into_inner();
    assert_eq!(ids_of(&rest.ads), [jobs[3].ad_id.clone()]);
    assert!(rest.next_page_token.is_empty());
    let strategy = client
        .list_ad_jobs(pb::ListAdJobsRequest {
            game_family: "Strategy".into(),
            ..Default::default()
        })
        .await
        .expect("by family")
        .into_inner();
    assert_eq!(strategy.total_size, 2);
    // Any status: queued jobs still show their place in the queue.
    let positions: Vec<Option<u64>> = strategy.ads.iter().map(|job| job.position).collect();
    assert_eq!(positions, [Some(2), Some(1)], "newest first: d, then c");
    // With a processing rate known, a queued job has an estimated start.
    let waiting = get(&queue, &jobs[3].ad_id).await;
    let estimate = waiting.estimated_process_time.expect("an estimated start");
    assert!(
        support_time::millis(&estimate)
            >= support_time::millis(waiting.queued_at.as_ref().expect("queued")),
        "estimated start after queueing"
    );
    let done = client
        .list_ad_jobs(pb::ListAdJobsRequest {
            status: pb::JobStatus::Completed as i32,
            ..Default::default()
        })
        .await
        .expect("completed")
        .into_inner();
    assert_eq!(done.ads.len(), 1);
    assert!(done.ads[0].analysis.is_some());
}

async fn a_restart_loses_no_job_and_keeps_leases(mut queue: Queue) {
    submit(&queue, vec![ad("job", "Strategy", 3); 20]).await;
    let mut processor = TestProcessor::connect(&queue, "p1", 5).await;
    set_worker_count(&queue, 5).await;
    let held = processor.leases(5).await;
    drop(processor);
    queue.crash_and_restart().await;
    let figures = stats(&queue).await;
    // Leases are written behind: each held lease survived the crash, or its
    // job is queued again. Either way no job is missing.
    assert_eq!(figures.total + figures.processing, 20);
    assert!(figures.processing <= 5);
    let config = queue
        .client()
        .get_queue_config(pb::GetQueueConfigRequest {})
        .await
        .expect("config")
        .into_inner();
    assert_eq!(config.worker_count, 5, "settings survive");
    let mut accepted = 0;
    for lease in &held {
        if complete(&queue, &lease.lease_id).await.accepted {
            accepted += 1;
        }
    }
    assert_eq!(
        accepted, figures.processing,
        "surviving leases complete, lost ones do not"
    );
    let mut processor = TestProcessor::connect(&queue, "p2", 5).await;
    for _ in 0..(20 - accepted) {
        let lease = processor.lease().await;
        assert!(complete(&queue, &lease.lease_id).await.accepted);
    }
    let figures = stats(&queue).await;
    assert_eq!(
        (figures.total, figures.processing, figures.completed),
        (0, 0, 20)
    );
    // Exactly one completion each, in the audit trail.
    let database = admesh_common::Database::connect_lazy(queue.database_url(), 1).expect("db");
    let counts: Vec<(i64,)> = admesh_common::on_pool!(&database, pool =>
        sqlx::query_as("SELECT COUNT(*) FROM job_events WHERE kind = 'completed' GROUP BY ad_id")
            .fetch_all(pool)
            .await)
    .expect("count completions");
    assert_eq!(counts.len(), 20);
    assert!(counts.iter().all(|(count,)| *count == 1));
}

/// Time helpers shared by the scenarios.
mod support_time {
    pub fn now_millis() -> i64 {
        admesh_common::time::now_millis()
    }

    pub fn millis(timestamp: &prost_types::Timestamp) -> i64 {
        admesh_common::time::millis_of(timestamp)
    }
}

/// One test per scenario and profile.
macro_rules! conformance {
    ($profile:ident: $($scenario:ident $(with $settings:ident)?),* $(,)?) => {
        mod $profile {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    #[allow(unused_mut, unused_assignments)]
                    let mut settings: &[(&'static str, &str)] = &[];
                    $(settings = super::$settings;)?
                    super::$scenario(super::Queue::$profile(settings).await).await;
                }
            )*
        }
    };
}

const SHORT_LEASES: &[(&str, &str)] = &[("ADMESH_QUEUE__LEASE_TIMEOUT_SECS", "1")];

conformance!(cluster:
    bad_input_is_rejected_naming_the_field,
    dispatch_follows_priority_then_fifo,
    leases_in_flight_never_exceed_capacity_or_worker_count,
    a_starved_job_overtakes_a_steady_stream_of_higher_priorities,
    anti_starvation_can_be_switched_off,
    failures_retry_with_backoff_then_dead_letter_then_requeue,
    answers_are_idempotent_and_expired_leases_are_redelivered with SHORT_LEASES,
    priority_changes_by_family_and_age_return_counts_and_reorder,
    cancel_only_queued_jobs,
    stats_and_listings_reflect_the_queue,
    a_restart_loses_no_job_and_keeps_leases,
);

conformance!(embedded:
    bad_input_is_rejected_naming_the_field,
    dispatch_follows_priority_then_fifo,
    leases_in_flight_never_exceed_capacity_or_worker_count,
    a_starved_job_overtakes_a_steady_stream_of_higher_priorities,
    anti_starvation_can_be_switched_off,
    failures_retry_with_backoff_then_dead_letter_then_requeue,
    answers_are_idempotent_and_expired_leases_are_redelivered with SHORT_LEASES,
    priority_changes_by_family_and_age_return_counts_and_reorder,
    cancel_only_queued_jobs,
    stats_and_listings_reflect_the_queue,
    a_restart_loses_no_job_and_keeps_leases,
);

// ── whole processes: processors and the mesh killed with -9 ─────────────

async fn wait_for_event(queue: &Queue, id: &str, kind: &str) {
    eventually(&format!("a {kind} event"), PATIENCE, || async {
        event_kinds(queue, id)
            .await
            .iter()
            .any(|seen| seen == kind)
            .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_processor_killed_mid_job_has_its_job_redelivered_and_done_once() {
    let queue = Queue::embedded(SHORT_LEASES).await;
    let job = submit(&queue, vec![ad("slow", "Strategy", 3)])
        .await
        .remove(0);
    let url = format!("http://{}", queue.address);
    let mut doomed = Process::spawn(
        &[
            "processor",
            "--queue-url",
            &url,
            "--processor-id",
            "doomed",
            "--work-ms",
            "8000",
        ],
        &[],
    );
    wait_for_event(&queue, &job.ad_id, "progress").await;
    doomed.kill();
    let _survivor = Process::spawn(
        &[
            "processor",
            "--queue-url",
            &url,
            "--processor-id",
            "survivor",
        ],
        &[],
    );
    wait_for_event(&queue, &job.ad_id, "completed").await;
    let events = queue
        .client()
        .list_job_events(pb::ListJobEventsRequest {
            ad_id: job.ad_id.clone(),
        })
        .await
        .expect("events")
        .into_inner()
        .events;
    let trail: Vec<(&str, &str)> = events
        .iter()
        .filter(|event| event.kind != "progress")
        .map(|event| (event.kind.as_str(), event.cause.as_str()))
        .collect();
    assert_eq!(
        trail,
        [
            ("submitted", "api"),
            ("leased", "doomed"),
            ("lease_expired", "lease_expiry"),
            ("retried", "lease_expiry"),
            ("leased", "survivor"),
            ("completed", "survivor"),
        ]
    );
    let done = get(&queue, &job.ad_id).await;
    assert_eq!(status_of(&done), pb::JobStatus::Completed);
    assert_eq!(done.attempt, 2);
    let analysis = done.analysis.expect("the survivor's analysis");
    assert_eq!(analysis.analyzer_version, "rules-2026.11");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_admesh_up_mid_processing_loses_no_job_and_does_none_twice() {
    let data = tempfile::tempdir().expect("tempdir");
    let env = [("ADMESH_QUEUE__LEASE_TIMEOUT_SECS", "1".to_string())];
    let mut mesh = support::Mesh::start_in(data.path(), &env);
    let queue_address = mesh.address("queue-service");
    support::wait_until_serving(queue_address).await;
    let mut client = QueueServiceClient::new(channel(queue_address));
    const JOBS: usize = 2_000;
    for _ in 0..JOBS / 1_000 {
        client
            .submit_ads_batch(pb::SubmitAdsBatchRequest {
                ads: vec![ad("bulk", "Puzzle", 3); 1_000],
            })
            .await
            .expect("submit");
    }
    // Mid-processing: the embedded processor is working through them.
    mesh.process.kill();
    let mesh = support::Mesh::start_in(data.path(), &env);
    support::wait_until_serving(mesh.address("queue-service")).await;
    let mut client = QueueServiceClient::new(channel(mesh.address("queue-service")));
    eventually("every job completed", PATIENCE * 3, || {
        let mut client = client.clone();
        async move {
            let stats = client
                .get_queue_stats(pb::GetQueueStatsRequest {})
                .await
                .ok()?
                .into_inner();
            (stats.completed == JOBS as u64).then_some(())
        }
    })
    .await;
    let stats = client
        .get_queue_stats(pb::GetQueueStatsRequest {})
        .await
        .expect("stats")
        .into_inner();
    assert_eq!((stats.total, stats.processing, stats.dead), (0, 0, 0));
    let database = admesh_common::Database::connect_lazy(&mesh.database_url, 1).expect("db");
    let (jobs, twice): (i64, i64) = admesh_common::on_pool!(&database, pool =>
        sqlx::query_as(
            "SELECT (SELECT COUNT(*) FROM ad_jobs), \
             (SELECT COUNT(*) FROM (SELECT ad_id FROM job_events WHERE kind = 'completed' \
              GROUP BY ad_id HAVING COUNT(*) > 1) AS repeated)",
        )
        .fetch_one(pool)
        .await)
    .expect("count");
    assert_eq!((jobs, twice), (JOBS as i64, 0));
}

/// Cluster profile: a replica that wrote changes to Redis and died before
/// its SQL mirror committed leaves them in the outbox (one entry per script
/// call, a job per line); another replica's sweep writes them to SQL with
/// their audit events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_lost_between_redis_and_sql_is_recovered_from_the_outbox() {
    let queue = Queue::cluster(&[("ADMESH_QUEUE__EMBEDDED_PROCESSORS", "0")]).await;
    let prefix = queue.redis_prefix();
    let [job, other]: [pb::AdJob; 2] = submit(
        &queue,
        vec![
            ad("Lost completion", "Recovery", 3),
            ad("Lost completion too", "Recovery", 3),
        ],
    )
    .await
    .try_into()
    .expect("two jobs");

    // What a replica killed mid-write leaves: the job completed in Redis
    // (gone from the active hash and indexes) and in the outbox, written
    // long enough ago, but not in SQL.
    let mut redis = support::redis_connection().await;
    let mut lost_jobs = Vec::new();
    for id in [&job.ad_id, &other.ad_id] {
        let raw: String = redis::cmd("HGET")
            .arg(format!("{prefix}:jobs"))
            .arg(id)
            .query_async(&mut redis)
            .await
            .expect("job in Redis");
        let mut lost: serde_json::Value = serde_json::from_str(&raw).expect("job JSON");
        lost["status"] = "completed".into();
        lost["version"] = (lost["version"].as_i64().expect("version") + 2).into();
        lost_jobs.push(lost);
    }
    let now = admesh_common::time::now_millis();
    let entry = format!("{}:{}", job.ad_id, lost_jobs[0]["version"]);
    let lines: Vec<String> = lost_jobs.iter().map(|lost| lost.to_string()).collect();
    let mut lost_write = redis::pipe();
    lost_write.atomic();
    for id in [&job.ad_id, &other.ad_id] {
        lost_write
            .cmd("HDEL")
            .arg(format!("{prefix}:jobs"))
            .arg(id)
            .ignore();
        for index in ["ready", "deadline"] {
            lost_write
                .cmd("ZREM")
                .arg(format!("{prefix}:{index}"))
                .arg(id)
                .ignore();
        }
    }
    let _: () = lost_write
        .cmd("ZADD")
        .arg(format!("{prefix}:outbox"))
        .arg(now - 60_000)
        .arg(&entry)
        .ignore()
        .cmd("HSET")
        .arg(format!("{prefix}:outbox_jobs"))
        .arg(&entry)
        .arg(lines.join("\n"))
        .ignore()
        .query_async(&mut redis)
        .await
        .expect("simulate the lost write");

    let mut client = queue.client();
    let events = support::eventually(
        "the sweep recovers the change",
        Duration::from_secs(30),
        || {
            let mut client = client.clone();
            let id = job.ad_id.clone();
            async move {
                let events = client
                    .list_job_events(pb::ListJobEventsRequest { ad_id: id })
                    .await
                    .ok()?
                    .into_inner()
                    .events;
                events
                    .iter()
                    .any(|e| e.kind == "completed")
                    .then_some(events)
            }
        },
    )
    .await;
    let recovered = events
        .iter()
        .find(|e| e.kind == "completed")
        .expect("event");
    assert_eq!(recovered.cause, "recovery");
    // The entry's other job came back in the same sweep.
    let other_events = event_kinds(&queue, &other.ad_id).await;
    assert!(
        other_events.iter().any(|kind| kind == "completed"),
        "{other_events:?}"
    );
    for id in [&job.ad_id, &other.ad_id] {
        let now_stored = client
            .get_ad(pb::GetAdRequest { ad_id: id.clone() })
            .await
            .expect("get")
            .into_inner();
        assert_eq!(now_stored.status, pb::JobStatus::Completed as i32);
    }
    let left: i64 = redis::cmd("ZCARD")
        .arg(format!("{prefix}:outbox"))
        .query_async(&mut redis)
        .await
        .expect("outbox size");
    assert_eq!(left, 0, "mirrored entries leave the outbox");
    let payloads: i64 = redis::cmd("HLEN")
        .arg(format!("{prefix}:outbox_jobs"))
        .query_async(&mut redis)
        .await
        .expect("outbox payloads");
    assert_eq!(payloads, 0, "and their payloads with them");
}

/// Cluster profile: each write clears only the indexes the job can be in
/// (a leased job is in `leases` alone). Through lease, progress, heartbeat,
/// retry, completion and dead-lettering, every job ends up in exactly the
/// index its state calls for, and the indexes hold nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redis_indexes_follow_every_state_change_exactly() {
    let queue = Queue::cluster(&[("ADMESH_QUEUE__EMBEDDED_PROCESSORS", "0")]).await;
    let prefix = queue.redis_prefix();
    let redis = support::redis_connection().await;
    let members = |index: &str| {
        let (mut redis, key) = (redis.clone(), format!("{prefix}:{index}"));
        async move {
            let mut ids: Vec<String> = redis::cmd("ZRANGE")
                .arg(key)
                .arg(0)
                .arg(-1)
                .query_async(&mut redis)
                .await
                .expect("index");
            ids.sort();
            ids
        }
    };

    let jobs = submit(
        &queue,
        (1..=5)
            .map(|p| ad(&format!("job {p}"), "Strategy", p))
            .collect(),
    )
    .await;
    set_worker_count(&queue, 3).await;
    let mut processor = TestProcessor::connect(&queue, "indexes", 3).await;
    let leases = processor.leases(3).await;
    // Gone, so that no room freed below leases more (its leases stay held).
    drop(processor);
    let mut leased = ids(&leases);
    leased.sort();
    assert_eq!(members("leases").await, leased, "leased: in leases only");
    let mut waiting: Vec<String> = jobs
        .iter()
        .map(|job| job.ad_id.clone())
        .filter(|id| !leased.contains(id))
        .collect();
    waiting.sort();
    assert_eq!(members("ready").await, waiting);
    assert_eq!(members("deadline").await, waiting);

    // Progress and heartbeats rewrite a leased job: it stays in leases.
    let ack = queue
        .client()
        .report_progress(pb::ReportProgressRequest {
            lease_id: leases[0].lease_id.clone(),
            progress: 50,
            message: "half".into(),
        })
        .await
        .expect("progress")
        .into_inner();
    assert!(ack.accepted);
    let lost = queue
        .client()
        .heartbeat(pb::HeartbeatRequest {
            lease_ids: lease_ids(&leases),
        })
        .await
        .expect("heartbeat")
        .into_inner()
        .lost_lease_ids;
    assert!(lost.is_empty(), "{lost:?}");
    assert_eq!(members("leases").await, leased);

    // A retryable failure waits in `delayed`; a completion and a final
    // failure leave every index.
    assert!(complete(&queue, &leases[0].lease_id).await.accepted);
    assert!(
        fail(&queue, &leases[1].lease_id, "flaky", true)
            .await
            .accepted
    );
    assert!(
        fail(&queue, &leases[2].lease_id, "broken", false)
            .await
            .accepted
    );
    assert_eq!(members("leases").await, Vec::<String>::new());
    assert_eq!(members("delayed").await, [job_id(&leases[1])]);
    assert_eq!(members("ready").await, waiting, "the rest still wait");
    assert_eq!(members("deadline").await, waiting);

    // Every write above was mirrored to SQL, so the outbox empties.
    let redis_for_outbox = redis.clone();
    support::eventually("the outbox drains", Duration::from_secs(10), || {
        let mut redis = redis_for_outbox.clone();
        let prefix = prefix.clone();
        async move {
            let (entries, payloads): (i64, i64) = redis::pipe()
                .cmd("ZCARD")
                .arg(format!("{prefix}:outbox"))
                .cmd("HLEN")
                .arg(format!("{prefix}:outbox_jobs"))
                .query_async(&mut redis)
                .await
                .ok()?;
            (entries == 0 && payloads == 0).then_some(())
        }
    })
    .await;
}

/// Cluster profile: a finished job leaves Redis's active hash at once, but
/// SQL may not have it yet. Held open here by a lock on the jobs table (the
/// SQL mirror waits on it), `GetAdJob` still answers the finished state,
/// from Redis's `leaving` copy; once SQL has it the copy goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_job_is_readable_before_sql_has_it() {
    let queue = Queue::cluster(&[("ADMESH_QUEUE__EMBEDDED_PROCESSORS", "0")]).await;
    let prefix = queue.redis_prefix();
    let postgres = sqlx::PgPool::connect(queue.database_url())
        .await
        .expect("postgres");
    let redis = support::redis_connection().await;
    let job = submit(&queue, vec![ad("In between", "Strategy", 3)])
        .await
        .pop()
        .expect("submitted");
    let mut processor = TestProcessor::connect(&queue, "between", 1).await;
    let lease = processor.lease().await;
    // The lease reaches SQL behind its answer: wait for it, so that the
    // lock below holds back the completion alone.
    support::eventually("the lease in SQL", Duration::from_secs(10), || {
        let (postgres, id) = (postgres.clone(), job.ad_id.clone());
        async move {
            let (status,): (String,) = sqlx::query_as("SELECT status FROM ad_jobs WHERE id = $1")
                .bind(id)
                .fetch_one(&postgres)
                .await
                .ok()?;
            (status == "processing").then_some(())
        }
    })
    .await;
    let leaving = |expected: bool| {
        let (mut redis, key, id) = (
            redis.clone(),
            format!("{prefix}:leaving"),
            job.ad_id.clone(),
        );
        async move {
            let present: bool = redis::cmd("HEXISTS")
                .arg(key)
                .arg(id)
                .query_async(&mut redis)
                .await
                .ok()?;
            (present == expected).then_some(())
        }
    };

    let mut lock = postgres.begin().await.expect("begin");
    sqlx::query("LOCK TABLE ad_jobs IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *lock)
        .await
        .expect("lock");
    let completing = tokio::spawn({
        let mut client = queue.client();
        let lease_id = lease.lease_id.clone();
        async move {
            client
                .complete_job(pb::CompleteJobRequest {
                    lease_id,
                    analysis: Some(analysis()),
                })
                .await
        }
    });
    support::eventually("the job is in leaving", Duration::from_secs(10), || {
        leaving(true)
    })
    .await;
    assert!(!completing.is_finished(), "the answer waits for SQL");
    // SQL is locked: an answer at all means it came from Redis.
    let read = tokio::time::timeout(Duration::from_secs(10), get(&queue, &job.ad_id))
        .await
        .expect("answered without waiting for SQL");
    assert_eq!(read.status, pb::JobStatus::Completed as i32);

    lock.rollback().await.expect("unlock");
    let ack = completing
        .await
        .expect("no panic")
        .expect("complete")
        .into_inner();
    assert!(ack.accepted);
    support::eventually("the leaving copy goes", Duration::from_secs(10), || {
        leaving(false)
    })
    .await;
    assert_eq!(
        get(&queue, &job.ad_id).await.status,
        pb::JobStatus::Completed as i32,
        "read from SQL"
    );
    postgres.close().await;
}
