//! The `admesh.queue.v1.QueueService` gRPC API: checks input, calls the
//! store, answers in protobuf.

use std::{sync::Arc, time::Duration};

use admesh_common::{
    time::now_millis,
    validation::{FieldViolations, invalid_argument},
};
use admesh_proto::queue::v1::{self as pb, queue_service_server::QueueService};
use parking_lot::Mutex;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use crate::{
    analysis::Analysis,
    convert,
    dispatch::Dispatcher,
    job::{Job, JobStatus, MAX_BATCH, check_submission},
    records::JobFilter,
    store::{LeaseAnswer, PrioritySelector, QueueStore},
};

/// Who made a call, for the audit trail: the user the edge names in
/// `x-admesh-user`, else "api".
fn actor<T>(request: &Request<T>) -> String {
    let (user, _) = admesh_common::identity::caller(request.metadata());
    if user.is_empty() { "api".into() } else { user }
}

/// The recent processing rate, recomputed at most once a second.
#[derive(Debug, Default)]
struct RateCache {
    computed: Mutex<(i64, f64)>,
}

/// Completions over this window make the processing rate.
const RATE_WINDOW_MS: i64 = 60_000;

/// The queue once it has loaded from SQL (the service answers UNAVAILABLE
/// and reports NOT_SERVING before that).
pub struct LoadedQueue {
    pub store: Arc<dyn QueueStore>,
    pub dispatcher: Arc<Dispatcher>,
}

pub type QueueSlot = Arc<std::sync::OnceLock<LoadedQueue>>;

#[derive(Clone)]
pub struct QueueServiceImpl {
    queue: QueueSlot,
    rate: Arc<RateCache>,
    shutdown: CancellationToken,
}

impl std::fmt::Debug for QueueServiceImpl {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("QueueServiceImpl")
            .finish_non_exhaustive()
    }
}

impl QueueServiceImpl {
    pub fn new(queue: QueueSlot, shutdown: CancellationToken) -> Self {
        Self {
            queue,
            rate: Arc::default(),
            shutdown,
        }
    }

    fn loaded(&self) -> Result<&LoadedQueue, Status> {
        self.queue.get().ok_or_else(|| {
            Status::unavailable("the queue is still loading from SQL; retry shortly")
        })
    }

    fn store(&self) -> Result<&Arc<dyn QueueStore>, Status> {
        Ok(&self.loaded()?.store)
    }

    fn dispatcher(&self) -> Result<&Arc<Dispatcher>, Status> {
        Ok(&self.loaded()?.dispatcher)
    }

    /// Completed jobs per second over the last minute; per-job estimates
    /// may use a figure up to a second old, stats ask for a `fresh` one.
    async fn processing_rate(&self, fresh: bool) -> Result<f64, Status> {
        let now = now_millis();
        if !fresh {
            let (at, rate) = *self.rate.computed.lock();
            if now - at < 1_000 {
                return Ok(rate);
            }
        }
        let completed = self
            .store()?
            .records()
            .completed_since(now - RATE_WINDOW_MS)
            .await
            .map_err(admesh_common::status::storage_unavailable)?;
        let rate = completed as f64 / (RATE_WINDOW_MS as f64 / 1000.0);
        *self.rate.computed.lock() = (now, rate);
        Ok(rate)
    }

    async fn new_jobs(
        &self,
        requests: Vec<pb::SubmitAdRequest>,
        batch: bool,
    ) -> Result<Vec<Job>, Status> {
        let default_wait = self.store()?.settings().default_max_wait_secs;
        let mut problems = FieldViolations::new();
        let now = now_millis();
        let mut jobs = Vec::with_capacity(requests.len());
        for (index, request) in requests.into_iter().enumerate() {
            let prefix = if batch {
                format!("ads[{index}].")
            } else {
                String::new()
            };
            if let Some(ad) = check_submission(request, default_wait, &prefix, &mut problems) {
                // UUIDv7: ids sort by creation time, a natural FIFO tie-break.
                jobs.push(Job::new(ad, admesh_common::ids::new_id(), now));
            }
        }
        problems.into_result()?;
        Ok(jobs)
    }

    async fn submit(&self, jobs: Vec<Job>, cause: &str) -> Result<Vec<pb::AdJob>, Status> {
        let count = jobs.len() as u64;
        let views = self.store()?.submit(jobs, cause).await?;
        metrics::counter!("admesh_queue_jobs_submitted_total").increment(count);
        self.dispatcher()?.jobs_added();
        let rate = self.processing_rate(false).await?;
        let now = now_millis();
        Ok(views
            .iter()
            .map(|view| convert::job(view, now, rate))
            .collect())
    }

    fn lease_ack(answer: LeaseAnswer) -> pb::LeaseAck {
        pb::LeaseAck {
            accepted: answer.accepted,
            status: answer
                .status
                .map_or(pb::JobStatus::Unspecified, JobStatus::to_proto) as i32,
            expires_at: answer.expires_at.map(admesh_common::time::timestamp),
        }
    }
}

fn check_id(field: &str, id: &str) -> Result<(), Status> {
    if id.trim().is_empty() {
        return Err(invalid_argument(field, "must not be empty"));
    }
    if uuid::Uuid::parse_str(id).is_err() {
        return Err(invalid_argument(
            field,
            format_args!("{id:?} is not a job id (UUID)"),
        ));
    }
    Ok(())
}

fn check_lease(lease_id: &str) -> Result<(), Status> {
    if lease_id.trim().is_empty() {
        return Err(invalid_argument("lease_id", "must not be empty"));
    }
    Ok(())
}

/// Offset-based page tokens: the index of the next item.
fn page_offset(token: &str) -> Result<u64, Status> {
    if token.is_empty() {
        return Ok(0);
    }
    token
        .parse()
        .map_err(|_| invalid_argument("page_token", "not a token this service issued"))
}

fn page_size(size: u32, default: u32) -> Result<u64, Status> {
    match size {
        0 => Ok(u64::from(default)),
        1..=1000 => Ok(u64::from(size)),
        _ => Err(invalid_argument("page_size", "must be 1–1000")),
    }
}

fn next_token(offset: u64, returned: usize, total: u64) -> String {
    let next = offset + returned as u64;
    if returned > 0 && next < total {
        next.to_string()
    } else {
        String::new()
    }
}

fn priority(value: i32, field: &str) -> Result<u8, Status> {
    if (1..=5).contains(&value) {
        Ok(value as u8)
    } else {
        Err(invalid_argument(
            field,
            format_args!("must be 1–5 (5 is the highest), got {value}"),
        ))
    }
}

type ProcessStream = std::pin::Pin<
    Box<dyn tokio_stream::Stream<Item = Result<pb::ProcessEvent, Status>> + Send + 'static>,
>;

#[tonic::async_trait]
impl QueueService for QueueServiceImpl {
    async fn submit_ad(
        &self,
        request: Request<pb::SubmitAdRequest>,
    ) -> Result<Response<pb::AdJob>, Status> {
        let cause = actor(&request);
        let jobs = self.new_jobs(vec![request.into_inner()], false).await?;
        let mut answers = self.submit(jobs, &cause).await?;
        answers
            .pop()
            .map(Response::new)
            .ok_or_else(|| Status::internal("the submitted job was not returned"))
    }

    async fn submit_ads_batch(
        &self,
        request: Request<pb::SubmitAdsBatchRequest>,
    ) -> Result<Response<pb::SubmitAdsBatchResponse>, Status> {
        let cause = actor(&request);
        let ads = request.into_inner().ads;
        if ads.is_empty() || ads.len() > MAX_BATCH {
            return Err(invalid_argument(
                "ads",
                format_args!("a batch holds 1–{MAX_BATCH} ads, got {}", ads.len()),
            ));
        }
        let jobs = self.new_jobs(ads, true).await?;
        let ads = self.submit(jobs, &cause).await?;
        Ok(Response::new(pb::SubmitAdsBatchResponse { ads }))
    }

    async fn get_ad(
        &self,
        request: Request<pb::GetAdRequest>,
    ) -> Result<Response<pb::AdJob>, Status> {
        let id = request.into_inner().ad_id;
        check_id("ad_id", &id)?;
        let view = self
            .store()?
            .get(&id)
            .await?
            .ok_or_else(|| Status::not_found(format!("ad_id: no job {id}")))?;
        let rate = self.processing_rate(false).await?;
        Ok(Response::new(convert::job(&view, now_millis(), rate)))
    }

    async fn list_ad_jobs(
        &self,
        request: Request<pb::ListAdJobsRequest>,
    ) -> Result<Response<pb::ListAdJobsResponse>, Status> {
        let request = request.into_inner();
        let status = pb::JobStatus::try_from(request.status)
            .map_err(|_| invalid_argument("status", "unknown status"))?;
        let mut filter = JobFilter {
            status: JobStatus::from_proto(status),
            game_family: Some(request.game_family.trim().to_string()).filter(|f| !f.is_empty()),
            priority: match request.priority {
                0 => None,
                value => Some(priority(value, "priority")?),
            },
            queued_before: None,
        };
        let now = now_millis();
        if request.waiting_longer_than_minutes > 0 {
            if filter
                .status
                .is_some_and(|status| status != JobStatus::Queued)
            {
                return Err(invalid_argument(
                    "waiting_longer_than_minutes",
                    "applies to queued jobs only",
                ));
            }
            filter.status = Some(JobStatus::Queued);
            filter.queued_before =
                Some(now - i64::from(request.waiting_longer_than_minutes) * 60_000);
        }
        let offset = page_offset(&request.page_token)?;
        let limit = page_size(request.page_size, 100)?;
        let rate = self.processing_rate(false).await?;
        let (ads, total) = if filter.status == Some(JobStatus::Queued) {
            let (views, total) = self.store()?.queued(&filter, offset, limit).await?;
            let ads: Vec<_> = views
                .iter()
                .map(|view| convert::job(view, now, rate))
                .collect();
            (ads, total)
        } else {
            let (jobs, total) = self
                .store()?
                .records()
                .list(&filter, offset, limit)
                .await
                .map_err(admesh_common::status::storage_unavailable)?;
            // Active jobs: the store is fresher than SQL and knows the
            // queued ones' positions, read in one pass for the whole page.
            let queued_views: std::collections::HashMap<String, crate::store::JobView> =
                if jobs.iter().any(|job| job.status == JobStatus::Queued) {
                    let all_queued = JobFilter {
                        status: Some(JobStatus::Queued),
                        ..JobFilter::default()
                    };
                    let (views, _) = self.store()?.queued(&all_queued, 0, u64::MAX).await?;
                    views
                        .into_iter()
                        .map(|view| (view.job.id.clone(), view))
                        .collect()
                } else {
                    Default::default()
                };
            let mut ads = Vec::with_capacity(jobs.len());
            for job in jobs {
                let fresher = match job.status {
                    JobStatus::Queued => queued_views.get(&job.id).cloned(),
                    JobStatus::Processing => self.store()?.get(&job.id).await?,
                    _ => None,
                };
                let view = fresher.unwrap_or(crate::store::JobView {
                    job,
                    position: None,
                });
                ads.push(convert::job(&view, now, rate));
            }
            (ads, total)
        };
        Ok(Response::new(pb::ListAdJobsResponse {
            next_page_token: next_token(offset, ads.len(), total),
            ads,
            total_size: total,
        }))
    }

    async fn peek_next(
        &self,
        request: Request<pb::PeekNextRequest>,
    ) -> Result<Response<pb::PeekNextResponse>, Status> {
        let count = match request.into_inner().count {
            0 => 10,
            count @ 1..=1000 => u64::from(count),
            _ => return Err(invalid_argument("count", "must be 1–1000")),
        };
        let filter = JobFilter {
            status: Some(JobStatus::Queued),
            ..JobFilter::default()
        };
        let (views, _) = self.store()?.queued(&filter, 0, count).await?;
        let rate = self.processing_rate(false).await?;
        let now = now_millis();
        Ok(Response::new(pb::PeekNextResponse {
            ads: views
                .iter()
                .map(|view| convert::job(view, now, rate))
                .collect(),
        }))
    }

    async fn get_queue_stats(
        &self,
        _request: Request<pb::GetQueueStatsRequest>,
    ) -> Result<Response<pb::QueueStats>, Status> {
        let snapshot = self.store()?.snapshot().await?;
        let stored = self
            .store()?
            .records()
            .family_counts()
            .await
            .map_err(admesh_common::status::storage_unavailable)?;
        let rate = self.processing_rate(true).await?;
        let mut stats = pb::QueueStats {
            total: snapshot.queued,
            distribution: (1..=5)
                .map(|priority| (priority, snapshot.by_priority[(priority - 1) as usize]))
                .collect(),
            average_wait_time: Some(convert::duration(if snapshot.queued > 0 {
                snapshot.total_wait_ms / snapshot.queued as i64
            } else {
                0
            })),
            processing_rate: rate,
            oldest_wait_time: Some(convert::duration(snapshot.oldest_wait_ms)),
            processing: snapshot.processing,
            starved: snapshot.starved,
            ..pb::QueueStats::default()
        };
        let mut families: std::collections::BTreeMap<String, pb::GameFamilyStats> =
            Default::default();
        for family in &snapshot.families {
            let entry = families.entry(family.game_family.clone()).or_default();
            entry.game_family = family.game_family.clone();
            entry.queued = family.queued;
            entry.processing = family.processing;
            entry.average_wait_time = Some(convert::duration(if family.queued > 0 {
                family.total_wait_ms / family.queued as i64
            } else {
                0
            }));
        }
        for row in stored {
            let entry = families.entry(row.game_family.clone()).or_default();
            entry.game_family = row.game_family.clone();
            match row.status {
                JobStatus::Completed => {
                    entry.completed = row.count;
                    stats.completed += row.count;
                    entry.average_quality_score = row.average_quality.unwrap_or(0.0);
                }
                JobStatus::Failed => {
                    entry.failed = row.count;
                    stats.failed += row.count;
                }
                JobStatus::Dead => {
                    entry.dead = row.count;
                    stats.dead += row.count;
                }
                // Queued and processing come from the live queue.
                JobStatus::Queued | JobStatus::Processing => {}
            }
        }
        stats.by_game_family = families.into_values().collect();
        Ok(Response::new(stats))
    }

    async fn change_priority(
        &self,
        request: Request<pb::ChangePriorityRequest>,
    ) -> Result<Response<pb::ChangePriorityResponse>, Status> {
        let cause = actor(&request);
        let request = request.into_inner();
        let new_priority = priority(request.new_priority, "new_priority")?;
        let ad_id = Some(request.ad_id.trim().to_string()).filter(|id| !id.is_empty());
        if let Some(id) = &ad_id {
            check_id("ad_id", id)?;
        }
        let game_family = Some(request.game_family.trim().to_string()).filter(|f| !f.is_empty());
        if ad_id.is_none() && game_family.is_none() && request.older_than_minutes == 0 {
            return Err(invalid_argument(
                "ad_id",
                "name a job, a game_family or older_than_minutes (at least one)",
            ));
        }
        let selector = PrioritySelector {
            ad_id,
            game_family,
            queued_before: (request.older_than_minutes > 0)
                .then(|| now_millis() - i64::from(request.older_than_minutes) * 60_000),
        };
        let outcome = self
            .store()?
            .change_priority(&selector, new_priority, request.dry_run, &cause)
            .await?;
        if !request.dry_run && outcome.changed > 0 {
            self.dispatcher()?.jobs_added();
        }
        Ok(Response::new(pb::ChangePriorityResponse {
            matched: outcome.matched,
            changed: outcome.changed,
            changes: outcome
                .changes
                .into_iter()
                .map(|change| pb::PriorityChange {
                    ad_id: change.ad_id,
                    old_priority: i32::from(change.old_priority),
                    new_priority: i32::from(change.new_priority),
                })
                .collect(),
            dry_run: request.dry_run,
        }))
    }

    async fn cancel_ad(
        &self,
        request: Request<pb::CancelAdRequest>,
    ) -> Result<Response<pb::AdJob>, Status> {
        let cause = actor(&request);
        let id = request.into_inner().ad_id;
        check_id("ad_id", &id)?;
        let job = self.store()?.cancel(&id, &cause).await?;
        let view = crate::store::JobView {
            job,
            position: None,
        };
        Ok(Response::new(convert::job(&view, now_millis(), 0.0)))
    }

    async fn list_job_events(
        &self,
        request: Request<pb::ListJobEventsRequest>,
    ) -> Result<Response<pb::ListJobEventsResponse>, Status> {
        let id = request.into_inner().ad_id;
        check_id("ad_id", &id)?;
        if self.store()?.get(&id).await?.is_none() {
            return Err(Status::not_found(format!("ad_id: no job {id}")));
        }
        let events = self
            .store()?
            .records()
            .events(&id)
            .await
            .map_err(admesh_common::status::storage_unavailable)?;
        Ok(Response::new(pb::ListJobEventsResponse {
            events: events.into_iter().map(convert::event).collect(),
        }))
    }

    async fn list_dead_letters(
        &self,
        request: Request<pb::ListDeadLettersRequest>,
    ) -> Result<Response<pb::ListDeadLettersResponse>, Status> {
        let request = request.into_inner();
        let offset = page_offset(&request.page_token)?;
        let limit = page_size(request.page_size, 100)?;
        let jobs = self
            .store()?
            .records()
            .dead_letters(offset, limit + 1)
            .await
            .map_err(admesh_common::status::storage_unavailable)?;
        let more = jobs.len() as u64 > limit;
        let now = now_millis();
        let ads: Vec<pb::AdJob> = jobs
            .into_iter()
            .take(limit as usize)
            .map(|job| {
                convert::job(
                    &crate::store::JobView {
                        job,
                        position: None,
                    },
                    now,
                    0.0,
                )
            })
            .collect();
        Ok(Response::new(pb::ListDeadLettersResponse {
            next_page_token: if more {
                (offset + ads.len() as u64).to_string()
            } else {
                String::new()
            },
            ads,
        }))
    }

    async fn requeue_dead_letters(
        &self,
        request: Request<pb::RequeueDeadLettersRequest>,
    ) -> Result<Response<pb::RequeueDeadLettersResponse>, Status> {
        let cause = actor(&request);
        let request = request.into_inner();
        let ids = match (request.all, request.ad_ids.is_empty()) {
            (true, true) => None,
            (true, false) => {
                return Err(invalid_argument(
                    "ad_ids",
                    "give ad_ids or all = true, not both",
                ));
            }
            (false, true) => {
                return Err(invalid_argument(
                    "ad_ids",
                    "name the dead jobs to requeue, or set all = true",
                ));
            }
            (false, false) => {
                for (index, id) in request.ad_ids.iter().enumerate() {
                    check_id(&format!("ad_ids[{index}]"), id)?;
                }
                Some(request.ad_ids)
            }
        };
        let requeued = self.store()?.requeue_dead(ids, &cause).await?;
        if requeued > 0 {
            self.dispatcher()?.jobs_added();
        }
        Ok(Response::new(pb::RequeueDeadLettersResponse { requeued }))
    }

    async fn get_queue_config(
        &self,
        _request: Request<pb::GetQueueConfigRequest>,
    ) -> Result<Response<pb::QueueConfig>, Status> {
        Ok(Response::new(self.store()?.settings().to_proto()))
    }

    async fn update_queue_config(
        &self,
        request: Request<pb::UpdateQueueConfigRequest>,
    ) -> Result<Response<pb::QueueConfig>, Status> {
        let next = self.store()?.settings().updated(request.get_ref())?;
        let saved = self.store()?.set_settings(next).await?;
        self.dispatcher()?.settings_changed(saved);
        tracing::info!(settings = ?saved, "queue settings changed");
        Ok(Response::new(saved.to_proto()))
    }

    async fn process(
        &self,
        request: Request<pb::ProcessRequest>,
    ) -> Result<Response<ProcessStream>, Status> {
        let request = request.into_inner();
        let processor_id = request.processor_id.trim().to_string();
        if processor_id.is_empty() || processor_id.chars().count() > 200 {
            return Err(invalid_argument("processor_id", "must be 1–200 characters"));
        }
        if !(1..=1000).contains(&request.capacity) {
            return Err(invalid_argument("capacity", "must be 1–1000"));
        }
        let (sender, receiver) = tokio::sync::mpsc::channel(1024);
        tokio::spawn(Arc::clone(self.dispatcher()?).run_stream(
            processor_id,
            request.capacity,
            sender,
            self.shutdown.clone(),
        ));
        Ok(Response::new(Box::pin(ReceiverStream::new(receiver))))
    }

    async fn report_progress(
        &self,
        request: Request<pb::ReportProgressRequest>,
    ) -> Result<Response<pb::LeaseAck>, Status> {
        let request = request.into_inner();
        check_lease(&request.lease_id)?;
        if request.progress > 100 {
            return Err(invalid_argument("progress", "must be 0–100"));
        }
        let message: String = request.message.chars().take(500).collect();
        let answer = self
            .store()?
            .report_progress(&request.lease_id, request.progress, &message)
            .await?;
        Ok(Response::new(Self::lease_ack(answer)))
    }

    async fn heartbeat(
        &self,
        request: Request<pb::HeartbeatRequest>,
    ) -> Result<Response<pb::HeartbeatResponse>, Status> {
        let lease_ids = request.into_inner().lease_ids;
        if lease_ids.len() > 10_000 {
            return Err(invalid_argument("lease_ids", "at most 10000 per call"));
        }
        let lost = self.store()?.heartbeat(&lease_ids).await?;
        self.dispatcher()?.released(lost.iter().map(String::as_str));
        Ok(Response::new(pb::HeartbeatResponse {
            lost_lease_ids: lost,
        }))
    }

    async fn complete_job(
        &self,
        request: Request<pb::CompleteJobRequest>,
    ) -> Result<Response<pb::LeaseAck>, Status> {
        let completion = request.into_inner();
        let mut acks = self.complete_all(vec![completion], "").await?;
        acks.pop()
            .map(Response::new)
            .ok_or_else(|| Status::internal("no answer for the completion"))
    }

    async fn complete_jobs(
        &self,
        request: Request<pb::CompleteJobsRequest>,
    ) -> Result<Response<pb::CompleteJobsResponse>, Status> {
        let completions = request.into_inner().completions;
        if completions.is_empty() || completions.len() > 1000 {
            return Err(invalid_argument(
                "completions",
                format_args!("1–1000 per call, got {}", completions.len()),
            ));
        }
        let acks = self.complete_all(completions, "completions").await?;
        Ok(Response::new(pb::CompleteJobsResponse { acks }))
    }

    async fn fail_job(
        &self,
        request: Request<pb::FailJobRequest>,
    ) -> Result<Response<pb::LeaseAck>, Status> {
        let request = request.into_inner();
        check_lease(&request.lease_id)?;
        let error: String = request.error.chars().take(2_000).collect();
        let error = if error.trim().is_empty() {
            "failed without a message".to_string()
        } else {
            error
        };
        let answer = self
            .store()?
            .fail(&request.lease_id, &error, request.retryable)
            .await?;
        if answer.accepted {
            metrics::counter!("admesh_queue_jobs_failed_total").increment(1);
            self.dispatcher()?.jobs_added();
        }
        self.dispatcher()?.released([request.lease_id.as_str()]);
        Ok(Response::new(Self::lease_ack(answer)))
    }
}

impl QueueServiceImpl {
    /// Checks and completes `completions`; `prefix` names the repeated field
    /// in errors (empty for a single completion).
    async fn complete_all(
        &self,
        completions: Vec<pb::CompleteJobRequest>,
        prefix: &str,
    ) -> Result<Vec<pb::LeaseAck>, Status> {
        let mut problems = FieldViolations::new();
        let mut checked = Vec::with_capacity(completions.len());
        for (index, completion) in completions.into_iter().enumerate() {
            let field = |name: &str| {
                if prefix.is_empty() {
                    name.to_string()
                } else {
                    format!("{prefix}[{index}].{name}")
                }
            };
            problems.check(
                !completion.lease_id.trim().is_empty(),
                field("lease_id"),
                "must not be empty",
            );
            let analysis = completion.analysis.as_ref().and_then(Analysis::from_proto);
            problems.check(
                analysis.is_some(),
                field("analysis"),
                "required: a recommendation and scores 0–100",
            );
            if let Some(analysis) = analysis {
                checked.push((completion.lease_id, analysis));
            }
        }
        problems.into_result()?;
        let leases: Vec<String> = checked.iter().map(|(lease, _)| lease.clone()).collect();
        let dispatcher = self.dispatcher()?;
        let release = || dispatcher.released(leases.iter().map(String::as_str));
        let answers = self.store()?.complete(checked, &release).await;
        if answers.is_err() {
            // It may have failed before the completions applied.
            release();
        }
        let answers = answers?;
        let accepted = answers.iter().filter(|answer| answer.accepted).count();
        metrics::counter!("admesh_queue_jobs_completed_total").increment(accepted as u64);
        Ok(answers.into_iter().map(Self::lease_ack).collect())
    }
}

/// How long shutdown waits for the store to write what is pending.
pub const FLUSH_TIMEOUT: Duration = Duration::from_secs(10);
