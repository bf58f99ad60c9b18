//! The embedded profile's queue: queued and processing jobs in memory,
//! indexed for dispatch order, and every change committed to SQLite (group
//! commit) before the call answers — except leases, written behind (see
//! [`QueueStore::lease`]). At start the active jobs are reloaded, leases
//! included, so a restart loses no job, and a processor that outlives the
//! restart can still finish the jobs whose leases were written.

use std::{
    cmp::Reverse,
    collections::{BTreeSet, HashMap},
    sync::Arc,
};

use admesh_common::time::now_millis;
use async_trait::async_trait;
use parking_lot::Mutex;

use super::{
    ExpiredLease, JobView, Lease, LeaseAnswer, PriorityChangeOutcome, PrioritySelector,
    QueueSnapshot, QueueStore, StoreError, StoreResult, page_of_queued,
    writer::{GroupCommit, Pending},
};
use crate::{
    analysis::Analysis,
    job::{Job, JobStatus, job_of_lease},
    ordering::{deadline, is_starved},
    records::{JobFilter, JobRecords, WriteBatch},
    retry::random_retry_delay_ms,
    settings::QueueSettings,
    transitions::{self, Failure},
};

/// The in-memory queue backed by SQL.
pub struct EmbeddedQueue {
    state: Mutex<State>,
    records: JobRecords,
    writer: GroupCommit,
}

impl std::fmt::Debug for EmbeddedQueue {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("EmbeddedQueue")
            .finish_non_exhaustive()
    }
}

/// A job's key in [`State::by_priority`]: priority high first, then
/// arrival, then id.
fn priority_key(job: &Job) -> (Reverse<u8>, i64, String) {
    (Reverse(job.priority), job.queued_at, job.id.clone())
}

/// [`priority_key`] borrowed, to compare jobs without copying ids.
fn priority_order(job: &Job) -> (Reverse<u8>, i64, &str) {
    (Reverse(job.priority), job.queued_at, &job.id)
}

/// A job's key in [`State::by_deadline`]: starvation deadline, then
/// arrival, then id.
fn deadline_key(job: &Job) -> (i64, i64, String) {
    (deadline(&job.queued_view()), job.queued_at, job.id.clone())
}

/// A priority's slot in [`State::dispatchable`]: priorities are checked
/// to be 1–5 on the way in; anything else counts as 5 rather than panic.
fn priority_slot(priority: u8) -> usize {
    usize::from(priority).min(5)
}

/// Queued and processing jobs with their indexes.
#[derive(Default)]
struct State {
    settings: QueueSettings,
    jobs: HashMap<String, Job>,
    /// Dispatchable queued jobs by priority (high first), arrival, id.
    by_priority: BTreeSet<(Reverse<u8>, i64, String)>,
    /// How many of them there are of each priority (index 1–5), so a new
    /// job's place is counted instead of found by walking the queue.
    dispatchable: [usize; 6],
    /// The same jobs by starvation deadline, arrival, id.
    by_deadline: BTreeSet<(i64, i64, String)>,
    /// Queued jobs waiting out a retry backoff, by due time.
    delayed: BTreeSet<(i64, String)>,
    /// Processing jobs by lease expiry.
    leases: BTreeSet<(i64, String)>,
}

impl State {
    fn index(&mut self, job: &Job, now: i64) {
        match job.status {
            JobStatus::Queued => match job.not_before {
                Some(due) if due > now => {
                    self.delayed.insert((due, job.id.clone()));
                }
                _ => self.make_dispatchable(job),
            },
            JobStatus::Processing => {
                if let Some(expires_at) = job.lease_expires_at {
                    self.leases.insert((expires_at, job.id.clone()));
                }
            }
            _ => {}
        }
    }

    fn make_dispatchable(&mut self, job: &Job) {
        if self.by_priority.insert(priority_key(job)) {
            self.dispatchable[priority_slot(job.priority)] += 1;
        }
        self.by_deadline.insert(deadline_key(job));
    }

    fn unindex(&mut self, job: &Job) {
        if self.by_priority.remove(&priority_key(job)) {
            self.dispatchable[priority_slot(job.priority)] -= 1;
        }
        self.by_deadline.remove(&deadline_key(job));
        if let Some(due) = job.not_before {
            self.delayed.remove(&(due, job.id.clone()));
        }
        if let Some(expires_at) = job.lease_expires_at {
            self.leases.remove(&(expires_at, job.id.clone()));
        }
    }

    /// Adds or replaces an active job; drops a finished one.
    fn put(&mut self, job: Job, now: i64) {
        if let Some(old) = self.jobs.remove(&job.id) {
            self.unindex(&old);
        }
        if job.status.is_active() {
            self.index(&job, now);
            self.jobs.insert(job.id.clone(), job);
        }
    }

    /// Makes jobs whose backoff is over dispatchable.
    fn promote_due(&mut self, now: i64) {
        while let Some((due, id)) = self.delayed.first().cloned() {
            if due > now {
                break;
            }
            self.delayed.remove(&(due, id.clone()));
            if let Some(job) = self.jobs.get(&id) {
                let job = job.clone();
                self.make_dispatchable(&job);
            }
        }
    }

    /// The next job to dispatch (SPEC §4 order; see `ordering`).
    fn next_id(&self, now: i64) -> Option<&String> {
        if self.settings.anti_starvation
            && let Some((due, _, id)) = self.by_deadline.first()
            && now > *due
        {
            return Some(id);
        }
        self.by_priority.first().map(|(_, _, id)| id)
    }

    /// Queued job ids in dispatch order: starved, then by priority, then
    /// those waiting out a backoff.
    fn ordered_ids(&self, now: i64) -> Vec<&String> {
        let mut ids = Vec::with_capacity(self.by_priority.len() + self.delayed.len());
        let starvation = self.settings.anti_starvation;
        if starvation {
            ids.extend(
                self.by_deadline
                    .iter()
                    .take_while(|(due, _, _)| now > *due)
                    .map(|(_, _, id)| id),
            );
        }
        ids.extend(self.by_priority.iter().filter_map(|(_, _, id)| {
            let starved = starvation
                && self
                    .jobs
                    .get(id)
                    .is_some_and(|job| is_starved(&job.queued_view(), now));
            (!starved).then_some(id)
        }));
        ids.extend(self.delayed.iter().map(|(_, id)| id));
        ids
    }

    fn position(&self, id: &str, now: i64) -> Option<u64> {
        self.ordered_ids(now)
            .iter()
            .position(|candidate| candidate.as_str() == id)
            .map(|index| index as u64 + 1)
    }

    /// Where `job` waits now (1 = next), counted rather than found in the
    /// whole order: the starved jobs, then the dispatchable jobs ahead of
    /// it by priority and arrival that are not starved. Exact for a job
    /// that is dispatchable and not starved (a new one); others are found
    /// in the order. `None` once it no longer waits.
    fn counted_position(&self, job: &Job, now: i64) -> Option<u64> {
        let key = priority_key(job);
        let anti_starvation = self.settings.anti_starvation;
        if !self.by_priority.contains(&key)
            || (anti_starvation && is_starved(&job.queued_view(), now))
        {
            return self.position(&job.id, now);
        }
        let priority = priority_slot(job.priority);
        let higher: usize = self.dispatchable[priority + 1..].iter().sum();
        // Jobs of its priority from it on: few for a new job, which
        // arrived last.
        let same_from_it = self
            .by_priority
            .range(&key..)
            .take_while(|(Reverse(other), _, _)| *other == job.priority)
            .count();
        let ahead = higher + self.dispatchable[priority] - same_from_it;
        let (starved, starved_ahead) = if anti_starvation {
            self.by_deadline
                .iter()
                .take_while(|(due, _, _)| now > *due)
                .fold((0, 0), |(all, ahead), (_, _, id)| {
                    let is_ahead = self
                        .jobs
                        .get(id)
                        .is_some_and(|other| priority_order(other) < priority_order(job));
                    (all + 1, ahead + usize::from(is_ahead))
                })
        } else {
            (0, 0)
        };
        Some((starved + ahead - starved_ahead + 1) as u64)
    }

    fn view(&self, job: &Job, now: i64) -> JobView {
        JobView {
            position: if job.status == JobStatus::Queued {
                self.counted_position(job, now)
            } else {
                None
            },
            job: job.clone(),
        }
    }

    /// The job a lease names, while the lease is held.
    fn leased_job(&mut self, lease: &str) -> Option<&mut Job> {
        let id = job_of_lease(lease)?;
        self.jobs.get_mut(id).filter(|job| {
            job.status == JobStatus::Processing && job.lease_id.as_deref() == Some(lease)
        })
    }
}

impl EmbeddedQueue {
    /// Loads the active jobs and the saved settings (or `defaults`).
    pub async fn open(records: JobRecords, defaults: QueueSettings) -> anyhow::Result<Arc<Self>> {
        let settings = records.load_settings().await?.unwrap_or(defaults);
        let jobs = records.load_active().await?;
        let now = now_millis();
        let mut state = State {
            settings,
            ..State::default()
        };
        for job in jobs {
            state.put(job, now);
        }
        tracing::info!(active_jobs = state.jobs.len(), "queue loaded");
        Ok(Arc::new(Self {
            state: Mutex::new(state),
            writer: GroupCommit::spawn(records.clone()),
            records,
        }))
    }

    /// Applies `change` to the state under the lock and queues its SQL write
    /// in the same critical section (so SQL sees changes in order).
    fn change<T>(
        &self,
        change: impl FnOnce(&mut State, i64, &mut WriteBatch) -> T,
    ) -> (T, Pending) {
        let now = now_millis();
        let mut batch = WriteBatch::default();
        let mut state = self.state.lock();
        let result = change(&mut state, now, &mut batch);
        let pending = self.writer.enqueue(batch);
        drop(state);
        (result, pending)
    }
}

/// Applies a failure of a leased job (see [`transitions::fail`]).
fn settle_failure(
    state: &mut State,
    job: Job,
    failure: Failure<'_>,
    now: i64,
    batch: &mut WriteBatch,
) -> Job {
    let delay = match failure {
        Failure::Reported { .. } => random_retry_delay_ms(job.attempt),
        Failure::LeaseExpired => 0,
    };
    let settings = state.settings;
    let (job, events) = transitions::fail(
        job,
        failure,
        settings.max_attempts,
        settings.lease_timeout_secs,
        delay,
        now,
    );
    apply(state, (job.clone(), events), now, batch);
    job
}

/// Puts a transition into memory and into the next SQL commit.
fn apply(
    state: &mut State,
    (job, events): transitions::Transition,
    now: i64,
    batch: &mut WriteBatch,
) {
    batch.events.extend(events);
    batch.jobs.push(job.clone());
    state.put(job, now);
}

#[async_trait]
impl QueueStore for EmbeddedQueue {
    fn records(&self) -> &JobRecords {
        &self.records
    }

    fn settings(&self) -> QueueSettings {
        self.state.lock().settings
    }

    async fn set_settings(&self, settings: QueueSettings) -> StoreResult<QueueSettings> {
        self.records.save_settings(&settings, now_millis()).await?;
        self.state.lock().settings = settings;
        Ok(settings)
    }

    async fn submit(&self, jobs: Vec<Job>, cause: &str) -> StoreResult<Vec<JobView>> {
        // The answer is each job as submitted (as the cluster store
        // answers), with its position while it is still waiting: a fast
        // processor may already have taken it.
        let (submitted, pending) = self.change(|state, now, batch| {
            let mut submitted = Vec::with_capacity(jobs.len());
            for job in jobs {
                batch.events.push(transitions::submitted(&job, cause, now));
                submitted.push(job.clone());
                batch.jobs.push(job.clone());
                state.put(job, now);
            }
            submitted
        });
        pending.committed().await?;
        let now = now_millis();
        let state = self.state.lock();
        Ok(submitted
            .into_iter()
            .map(|job| JobView {
                position: state
                    .jobs
                    .get(&job.id)
                    .filter(|current| current.status == JobStatus::Queued)
                    .and_then(|current| state.counted_position(current, now)),
                job,
            })
            .collect())
    }

    async fn get(&self, id: &str) -> StoreResult<Option<JobView>> {
        {
            let state = self.state.lock();
            if let Some(job) = state.jobs.get(id) {
                return Ok(Some(state.view(job, now_millis())));
            }
        }
        Ok(self.records.get(id).await?.map(|job| JobView {
            job,
            position: None,
        }))
    }

    async fn queued(
        &self,
        filter: &JobFilter,
        offset: u64,
        limit: u64,
    ) -> StoreResult<(Vec<JobView>, u64)> {
        let now = now_millis();
        let state = self.state.lock();
        let ordered = state
            .ordered_ids(now)
            .into_iter()
            .enumerate()
            .filter_map(|(index, id)| Some((index as u64 + 1, state.jobs.get(id)?)));
        Ok(page_of_queued(ordered, filter, offset, limit))
    }

    async fn snapshot(&self) -> StoreResult<QueueSnapshot> {
        let state = self.state.lock();
        Ok(super::snapshot_of(state.jobs.values(), now_millis()))
    }

    async fn change_priority(
        &self,
        selector: &PrioritySelector,
        new_priority: u8,
        dry_run: bool,
        cause: &str,
    ) -> StoreResult<PriorityChangeOutcome> {
        if let Some(id) = &selector.ad_id {
            let in_memory = self.state.lock().jobs.get(id).map(|job| job.status);
            let status = match in_memory {
                Some(status) => status,
                None => match self.records.get(id).await? {
                    Some(job) => job.status,
                    None => return Err(StoreError::NotFound(format!("ad_id: no job {id}"))),
                },
            };
            if status != JobStatus::Queued {
                return Err(StoreError::FailedPrecondition(format!(
                    "ad_id: job {id} is {}; only queued jobs change priority",
                    status.as_str()
                )));
            }
        }
        let (outcome, pending) = self.change(|state, now, batch| {
            let order: Vec<String> = state.ordered_ids(now).into_iter().cloned().collect();
            let mut outcome = PriorityChangeOutcome::default();
            for id in order {
                let Some(job) = state.jobs.get(&id) else {
                    continue;
                };
                if !selector.matches(job) || !outcome.record(job, new_priority) {
                    continue;
                }
                if dry_run {
                    continue;
                }
                let changed = transitions::reprioritize(job.clone(), new_priority, cause, now);
                apply(state, changed, now, batch);
            }
            outcome
        });
        pending.committed().await?;
        Ok(outcome)
    }

    async fn cancel(&self, id: &str, cause: &str) -> StoreResult<Job> {
        let (cancelled, pending) = self.change(|state, now, batch| {
            let job = state.jobs.get(id)?.clone();
            if job.status != JobStatus::Queued {
                return Some(Err(job.status));
            }
            let (job, events) = transitions::cancel(job, cause, now);
            apply(state, (job.clone(), events), now, batch);
            Some(Ok(job))
        });
        pending.committed().await?;
        let status = match cancelled {
            Some(Ok(job)) => return Ok(job),
            Some(Err(status)) => status,
            None => match self.records.get(id).await? {
                Some(job) => job.status,
                None => return Err(StoreError::NotFound(format!("ad_id: no job {id}"))),
            },
        };
        Err(StoreError::FailedPrecondition(format!(
            "ad_id: job {id} is {}; only queued jobs can be cancelled",
            status.as_str()
        )))
    }

    async fn lease(&self, processor_id: &str, max: usize) -> StoreResult<Vec<Lease>> {
        let (leases, pending) = self.change(|state, now, batch| {
            state.promote_due(now);
            let timeout = state.settings.lease_timeout_ms();
            let mut leases = Vec::new();
            while leases.len() < max {
                let Some(id) = state.next_id(now).cloned() else {
                    break;
                };
                let Some(job) = state.jobs.get(&id).cloned() else {
                    break;
                };
                let (job, events) = transitions::lease(job, processor_id, timeout, now);
                leases.push(Lease {
                    lease_id: job.lease_id.clone().unwrap_or_default(),
                    expires_at: now + timeout,
                    job: job.clone(),
                });
                apply(state, (job, events), now, batch);
            }
            leases
        });
        // Written behind, not awaited: merged with the completion that
        // usually follows, it often costs no row write of its own. A lease
        // lost in a crash only means its job is queued again after the
        // restart, and the lost lease's answers are refused.
        drop(pending);
        Ok(leases)
    }

    async fn report_progress(
        &self,
        lease: &str,
        progress: u32,
        message: &str,
    ) -> StoreResult<LeaseAnswer> {
        let (answer, pending) = self.change(|state, now, batch| {
            let timeout = state.settings.lease_timeout_ms();
            let job = state.leased_job(lease)?.clone();
            let changed = transitions::progress(job, progress, message, timeout, now);
            apply(state, changed, now, batch);
            Some(LeaseAnswer {
                accepted: true,
                status: Some(JobStatus::Processing),
                expires_at: Some(now + timeout),
            })
        });
        pending.committed().await?;
        match answer {
            Some(answer) => Ok(answer),
            None => Ok(LeaseAnswer::rejected(self.status_of_lease(lease).await?)),
        }
    }

    async fn heartbeat(&self, lease_ids: &[String]) -> StoreResult<Vec<String>> {
        let (lost, pending) = self.change(|state, now, batch| {
            let timeout = state.settings.lease_timeout_ms();
            let mut lost = Vec::new();
            for lease in lease_ids {
                let Some(job) = state.leased_job(lease) else {
                    lost.push(lease.clone());
                    continue;
                };
                let job = transitions::extend(job.clone(), timeout, now);
                batch.jobs.push(job.clone());
                state.put(job, now);
            }
            lost
        });
        pending.committed().await?;
        Ok(lost)
    }

    async fn complete(
        &self,
        completions: Vec<(String, Analysis)>,
        applied: &(dyn Fn() + Send + Sync),
    ) -> StoreResult<Vec<LeaseAnswer>> {
        let leases: Vec<String> = completions.iter().map(|(lease, _)| lease.clone()).collect();
        let (answers, pending) = self.change(|state, now, batch| {
            completions
                .into_iter()
                .map(|(lease, analysis)| {
                    let job = state.leased_job(&lease)?.clone();
                    apply(state, transitions::complete(job, analysis, now), now, batch);
                    Some(LeaseAnswer {
                        accepted: true,
                        status: Some(JobStatus::Completed),
                        expires_at: None,
                    })
                })
                .collect::<Vec<_>>()
        });
        applied();
        pending.committed().await?;
        let mut resolved = Vec::with_capacity(answers.len());
        for (answer, lease) in answers.into_iter().zip(&leases) {
            resolved.push(match answer {
                Some(answer) => answer,
                None => LeaseAnswer::rejected(self.status_of_lease(lease).await?),
            });
        }
        Ok(resolved)
    }

    async fn fail(&self, lease: &str, error: &str, retryable: bool) -> StoreResult<LeaseAnswer> {
        let (answer, pending) = self.change(|state, now, batch| {
            let job = state.leased_job(lease)?.clone();
            let failure = Failure::Reported { error, retryable };
            let job = settle_failure(state, job, failure, now, batch);
            Some(LeaseAnswer {
                accepted: true,
                status: Some(job.status),
                expires_at: None,
            })
        });
        pending.committed().await?;
        match answer {
            Some(answer) => Ok(answer),
            None => Ok(LeaseAnswer::rejected(self.status_of_lease(lease).await?)),
        }
    }

    async fn expire_leases(&self) -> StoreResult<Vec<ExpiredLease>> {
        let (expired, pending) = self.change(|state, now, batch| {
            let mut expired = Vec::new();
            while let Some((expires_at, id)) = state.leases.first().cloned() {
                if expires_at > now {
                    break;
                }
                state.leases.remove(&(expires_at, id.clone()));
                let Some(job) = state.jobs.get(&id).cloned() else {
                    continue;
                };
                expired.push(ExpiredLease {
                    lease_id: job.lease_id.clone().unwrap_or_default(),
                    processor_id: job.processor_id.clone().unwrap_or_default(),
                });
                settle_failure(state, job, Failure::LeaseExpired, now, batch);
            }
            expired
        });
        pending.committed().await?;
        Ok(expired)
    }

    async fn requeue_dead(&self, ids: Option<Vec<String>>, cause: &str) -> StoreResult<u64> {
        let ids = match ids {
            Some(ids) => ids,
            None => self.records.dead_ids().await?,
        };
        let jobs = self.records.get_many(&ids).await?;
        if let Some(missing) = ids.iter().find(|id| !jobs.iter().any(|job| &job.id == *id)) {
            return Err(StoreError::NotFound(format!("ad_ids: no job {missing}")));
        }
        let (requeued, pending) = self.change(|state, now, batch| {
            let mut requeued = 0;
            for job in jobs {
                // Re-check under the lock: memory is the truth for active jobs.
                if job.status != JobStatus::Dead || state.jobs.contains_key(&job.id) {
                    continue;
                }
                apply(
                    state,
                    transitions::requeue_dead(job, cause, now),
                    now,
                    batch,
                );
                requeued += 1;
            }
            requeued
        });
        pending.committed().await?;
        Ok(requeued)
    }

    async fn flush(&self) {
        let _ = self.writer.barrier().committed().await;
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::job::NewAd;

    fn queued(n: usize, priority: u8, queued_at: i64, max_wait_secs: u32) -> Job {
        let ad = NewAd::bare(priority, max_wait_secs);
        Job::new(ad, format!("job-{n:03}"), queued_at)
    }

    proptest! {
        /// Counting a job's place agrees with walking the whole order, for
        /// dispatchable, starved and delayed jobs, with anti-starvation on
        /// and off, ties in arrival included.
        #[test]
        fn counted_positions_match_the_walked_order(
            jobs in prop::collection::vec(
                (1u8..=5, 0i64..40, 0u32..30, prop::option::of(0i64..60_000)),
                1..60,
            ),
            anti_starvation: bool,
            now in 0i64..60_000,
        ) {
            let mut state = State::default();
            state.settings.anti_starvation = anti_starvation;
            for (n, (priority, arrival, max_wait_secs, not_before)) in jobs.into_iter().enumerate() {
                // Arrivals 0–39 s apart by the second: many ties.
                let mut job = queued(n, priority, arrival * 1_000, max_wait_secs);
                job.not_before = not_before;
                state.put(job, now);
            }
            for job in state.jobs.values() {
                prop_assert_eq!(
                    state.counted_position(job, now),
                    state.position(&job.id, now),
                    "{}", job.id
                );
            }
        }
    }
}
