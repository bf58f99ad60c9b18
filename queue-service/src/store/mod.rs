//! Where the queue lives. One trait, [`QueueStore`], and its two
//! implementations side by side:
//!
//! - [`EmbeddedQueue`]: the queue in process memory, changes committed to
//!   SQLite before they are answered (group commit), reloaded at start;
//! - [`RedisQueue`]: active jobs and the dispatch indexes in Redis (shared
//!   by every replica; claims and compare-and-set writes in Lua), job rows
//!   and the audit trail in PostgreSQL.
//!
//! Both keep the job rows and the audit trail in SQL through
//! [`JobRecords`](crate::records::JobRecords), and both order jobs by
//! [`crate::ordering`].

mod embedded;
mod redis_queue;
mod writer;

pub use embedded::EmbeddedQueue;
pub use redis_queue::RedisQueue;

use async_trait::async_trait;

use crate::{
    analysis::Analysis,
    job::{Job, JobStatus},
    records::{JobFilter, JobRecords},
    settings::QueueSettings,
};

/// A job and, while it is queued, its 1-based place in dispatch order.
#[derive(Clone, Debug, PartialEq)]
pub struct JobView {
    pub job: Job,
    pub position: Option<u64>,
}

/// A job leased to a processor.
#[derive(Clone, Debug, PartialEq)]
pub struct Lease {
    pub lease_id: String,
    pub job: Job,
    pub expires_at: i64,
}

/// The answer to an operation on a lease.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaseAnswer {
    /// False when the lease was unknown or already finished: nothing changed.
    pub accepted: bool,
    /// The job's status after the call, when the job is known.
    pub status: Option<JobStatus>,
    /// The lease's expiry while it is still held.
    pub expires_at: Option<i64>,
}

impl LeaseAnswer {
    pub fn rejected(status: Option<JobStatus>) -> Self {
        Self {
            accepted: false,
            status,
            expires_at: None,
        }
    }
}

/// A lease that ran out: its job went back to the queue (or to the
/// dead-letter queue when out of attempts).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExpiredLease {
    pub lease_id: String,
    pub processor_id: String,
}

/// Which queued jobs a priority change applies to (all given filters).
#[derive(Clone, Debug, Default)]
pub struct PrioritySelector {
    pub ad_id: Option<String>,
    pub game_family: Option<String>,
    /// Queued before this time (unix ms).
    pub queued_before: Option<i64>,
}

impl PrioritySelector {
    /// A queued job every given filter matches.
    pub fn matches(&self, job: &Job) -> bool {
        job.status == JobStatus::Queued
            && self.ad_id.as_ref().is_none_or(|wanted| *wanted == job.id)
            && self
                .game_family
                .as_ref()
                .is_none_or(|family| job.game_family.eq_ignore_ascii_case(family))
            && self
                .queued_before
                .is_none_or(|before| job.queued_at < before)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PriorityChange {
    pub ad_id: String,
    pub old_priority: u8,
    pub new_priority: u8,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PriorityChangeOutcome {
    pub matched: u64,
    pub changed: u64,
    /// In dispatch order before the change, up to [`MAX_REPORTED_CHANGES`].
    pub changes: Vec<PriorityChange>,
}

impl PriorityChangeOutcome {
    /// Counts a matched job; answers whether its priority changes (and
    /// reports the change).
    pub fn record(&mut self, job: &Job, new_priority: u8) -> bool {
        self.matched += 1;
        if job.priority == new_priority {
            return false;
        }
        self.changed += 1;
        if self.changes.len() < MAX_REPORTED_CHANGES {
            self.changes.push(PriorityChange {
                ad_id: job.id.clone(),
                old_priority: job.priority,
                new_priority,
            });
        }
        true
    }
}

/// A page of the queued jobs matching `filter`, from jobs in dispatch order
/// with their positions; and how many match.
pub fn page_of_queued<'a>(
    ordered: impl Iterator<Item = (u64, &'a Job)>,
    filter: &JobFilter,
    offset: u64,
    limit: u64,
) -> (Vec<JobView>, u64) {
    let matching: Vec<(u64, &Job)> = ordered
        .filter(|(_, job)| filter.matches_queued(job))
        .collect();
    let total = matching.len() as u64;
    let page = matching
        .into_iter()
        .skip(usize::try_from(offset).unwrap_or(usize::MAX))
        .take(usize::try_from(limit).unwrap_or(usize::MAX))
        .map(|(position, job)| JobView {
            job: job.clone(),
            position: Some(position),
        })
        .collect();
    (page, total)
}

/// How many individual changes a priority change reports.
pub const MAX_REPORTED_CHANGES: usize = 1_000;

/// Figures of the jobs the queue holds now.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct QueueSnapshot {
    pub queued: u64,
    /// Queued jobs by priority 1..=5 (index 0 = priority 1).
    pub by_priority: [u64; 5],
    pub processing: u64,
    pub starved: u64,
    pub total_wait_ms: i64,
    pub oldest_wait_ms: i64,
    pub families: Vec<FamilySnapshot>,
}

/// Queued jobs by priority (index 0 = priority 1), leased jobs, and queued
/// jobs past their max wait.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueGauges {
    pub by_priority: [u64; 5],
    pub processing: u64,
    pub starved: u64,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct FamilySnapshot {
    pub game_family: String,
    pub queued: u64,
    pub processing: u64,
    pub total_wait_ms: i64,
}

/// Figures of `jobs` (the active ones) at `now`.
pub fn snapshot_of<'a>(jobs: impl Iterator<Item = &'a Job>, now: i64) -> QueueSnapshot {
    let mut snapshot = QueueSnapshot::default();
    let mut families: std::collections::HashMap<&str, FamilySnapshot> = Default::default();
    for job in jobs {
        let family = families
            .entry(job.game_family.as_str())
            .or_insert_with(|| FamilySnapshot {
                game_family: job.game_family.clone(),
                ..FamilySnapshot::default()
            });
        match job.status {
            JobStatus::Queued => {
                let wait = job.wait_ms(now);
                snapshot.queued += 1;
                snapshot.by_priority[usize::from(job.priority.clamp(1, 5) - 1)] += 1;
                snapshot.total_wait_ms += wait;
                snapshot.oldest_wait_ms = snapshot.oldest_wait_ms.max(wait);
                if crate::ordering::is_starved(&job.queued_view(), now) {
                    snapshot.starved += 1;
                }
                family.queued += 1;
                family.total_wait_ms += wait;
            }
            JobStatus::Processing => {
                snapshot.processing += 1;
                family.processing += 1;
            }
            _ => {}
        }
    }
    snapshot.families = families.into_values().collect();
    snapshot
        .families
        .sort_by(|a, b| a.game_family.cmp(&b.game_family));
    snapshot
}

/// Why a store operation could not be done.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error(transparent)]
    Unavailable(#[from] anyhow::Error),
}

impl From<StoreError> for tonic::Status {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NotFound(message) => tonic::Status::not_found(message),
            StoreError::FailedPrecondition(message) => tonic::Status::failed_precondition(message),
            StoreError::Unavailable(error) => admesh_common::status::storage_unavailable(error),
        }
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// The queue's state and its transitions (SPEC §4). Every change is
/// durable and in the audit trail before the call returns, except a lease:
/// it is written behind, since losing one in a crash loses no job (the job
/// is queued again and the lost lease's answers are refused).
#[async_trait]
pub trait QueueStore: Send + Sync + 'static {
    /// The SQL side: job rows of finished jobs, audit trail, settings.
    fn records(&self) -> &JobRecords;

    /// The live settings.
    fn settings(&self) -> QueueSettings;

    /// Changes the live settings; answers the new ones.
    async fn set_settings(&self, settings: QueueSettings) -> StoreResult<QueueSettings>;

    /// Queues new jobs (already checked), all or none.
    async fn submit(&self, jobs: Vec<Job>, cause: &str) -> StoreResult<Vec<JobView>>;

    /// One job in any status.
    async fn get(&self, id: &str) -> StoreResult<Option<JobView>>;

    /// Queued jobs matching `filter`, in dispatch order: a page and the total.
    async fn queued(
        &self,
        filter: &JobFilter,
        offset: u64,
        limit: u64,
    ) -> StoreResult<(Vec<JobView>, u64)>;

    /// Figures of the queued and processing jobs.
    async fn snapshot(&self) -> StoreResult<QueueSnapshot>;

    /// The queue's gauges (exported every sweep): what a snapshot says
    /// without its per-job figures, so a store can count them cheaply.
    async fn gauges(&self) -> StoreResult<QueueGauges> {
        let snapshot = self.snapshot().await?;
        Ok(QueueGauges {
            by_priority: snapshot.by_priority,
            processing: snapshot.processing,
            starved: snapshot.starved,
        })
    }

    async fn change_priority(
        &self,
        selector: &PrioritySelector,
        new_priority: u8,
        dry_run: bool,
        cause: &str,
    ) -> StoreResult<PriorityChangeOutcome>;

    /// Cancels a queued job (it ends FAILED).
    async fn cancel(&self, id: &str, cause: &str) -> StoreResult<Job>;

    /// Leases up to `max` jobs in dispatch order to `processor_id` (the
    /// lease reaches SQL behind the answer, with what follows it).
    async fn lease(&self, processor_id: &str, max: usize) -> StoreResult<Vec<Lease>>;

    /// Records progress and extends the lease.
    async fn report_progress(
        &self,
        lease_id: &str,
        progress: u32,
        message: &str,
    ) -> StoreResult<LeaseAnswer>;

    /// Extends leases; answers those no longer held.
    async fn heartbeat(&self, lease_ids: &[String]) -> StoreResult<Vec<String>>;

    /// Completes leased jobs, each idempotently. `applied` runs once the
    /// completions are applied (in memory or in Redis), before they are
    /// committed to SQL: the dispatcher gives the processor its room back
    /// there, so dispatch does not wait on SQL; the answer does.
    async fn complete(
        &self,
        completions: Vec<(String, Analysis)>,
        applied: &(dyn Fn() + Send + Sync),
    ) -> StoreResult<Vec<LeaseAnswer>>;

    /// Fails a leased job: retry after a backoff, dead after max attempts,
    /// failed at once when not retryable.
    async fn fail(&self, lease_id: &str, error: &str, retryable: bool) -> StoreResult<LeaseAnswer>;

    /// Requeues the jobs of leases that ran out.
    async fn expire_leases(&self) -> StoreResult<Vec<ExpiredLease>>;

    /// Puts dead jobs back in the queue with their attempts reset; `None`
    /// = every dead job.
    async fn requeue_dead(&self, ids: Option<Vec<String>>, cause: &str) -> StoreResult<u64>;

    /// Writes what is still pending (graceful shutdown).
    async fn flush(&self);

    /// The status of the job `lease` names, wherever it is: what a refused
    /// lease answer reports (a rare path: late or repeated answers).
    async fn status_of_lease(&self, lease: &str) -> StoreResult<Option<JobStatus>> {
        match crate::job::job_of_lease(lease) {
            Some(id) => Ok(self.get(id).await?.map(|view| view.job.status)),
            None => Ok(None),
        }
    }
}
