//! Every state change of a job, as plain functions: the job after the
//! change and the audit events that record it. Both stores apply these (the
//! embedded one under its lock, the Redis one with a compare-and-set on the
//! job's version), so the lifecycle of SPEC §4 is written once.

use crate::{
    analysis::Analysis,
    job::{Job, JobStatus, lease_id},
    records::JobEvent,
};

/// A changed job and what the audit trail says about it.
pub type Transition = (Job, Vec<JobEvent>);

pub fn submitted(job: &Job, cause: &str, now: i64) -> JobEvent {
    JobEvent::of(
        job,
        "submitted",
        cause,
        format!("priority {}", job.priority),
        now,
    )
}

/// Leased to `processor` until `now + timeout_ms`.
pub fn lease(mut job: Job, processor: &str, timeout_ms: i64, now: i64) -> Transition {
    job.status = JobStatus::Processing;
    job.attempt += 1;
    job.not_before = None;
    job.processing_started_at = Some(now);
    job.progress = 0;
    job.progress_message.clear();
    let lease = lease_id(&job.id, job.attempt);
    job.lease_id = Some(lease.clone());
    job.lease_expires_at = Some(now + timeout_ms);
    job.processor_id = Some(processor.to_string());
    job.touch(now);
    let event = JobEvent::of(&job, "leased", processor, format!("lease {lease}"), now);
    (job, vec![event])
}

/// Progress reported; the lease is extended.
pub fn progress(
    mut job: Job,
    progress: u32,
    message: &str,
    timeout_ms: i64,
    now: i64,
) -> Transition {
    job.progress = progress.min(100);
    job.progress_message = message.to_string();
    job.lease_expires_at = Some(now + timeout_ms);
    job.touch(now);
    let event = JobEvent::of(
        &job,
        "progress",
        job.processor_id.as_deref().unwrap_or(""),
        format!("{}% {message}", job.progress),
        now,
    );
    (job, vec![event])
}

/// A heartbeat: the lease is extended (not an audit event).
pub fn extend(mut job: Job, timeout_ms: i64, now: i64) -> Job {
    job.lease_expires_at = Some(now + timeout_ms);
    job.touch(now);
    job
}

pub fn complete(mut job: Job, analysis: Analysis, now: i64) -> Transition {
    job.status = JobStatus::Completed;
    job.processed_at = Some(now);
    job.progress = 100;
    job.progress_message = "analysed".into();
    let detail = format!(
        "{:?}, quality {}",
        analysis.recommendation, analysis.quality_score
    )
    .to_lowercase();
    job.analysis = Some(analysis);
    let processor = job.processor_id.clone().unwrap_or_default();
    job.clear_lease();
    job.touch(now);
    let event = JobEvent::of(&job, "completed", &processor, detail, now);
    (job, vec![event])
}

/// Why a leased job stopped without completing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure<'a> {
    /// The processor reported an error.
    Reported { error: &'a str, retryable: bool },
    /// The lease ran out (the processor is gone).
    LeaseExpired,
}

/// A failed attempt: back to the queue after `retry_delay_ms` (none after
/// an expired lease: the processor is gone, not the job at fault), to the
/// dead-letter queue after `max_attempts`, or failed at once when retrying
/// cannot help.
pub fn fail(
    mut job: Job,
    failure: Failure<'_>,
    max_attempts: u32,
    lease_timeout_secs: u32,
    retry_delay_ms: i64,
    now: i64,
) -> Transition {
    let processor = job.processor_id.clone().unwrap_or_default();
    let (kind, cause, error, retryable, delay) = match failure {
        Failure::Reported { error, retryable } => (
            "failed",
            processor.clone(),
            error.to_string(),
            retryable,
            retry_delay_ms,
        ),
        Failure::LeaseExpired => (
            "lease_expired",
            "lease_expiry".to_string(),
            format!(
                "lease expired: no answer from {} within {lease_timeout_secs} s",
                if processor.is_empty() {
                    "the processor"
                } else {
                    &processor
                }
            ),
            true,
            0,
        ),
    };
    job.last_error = error.clone();
    job.clear_lease();
    job.touch(now);
    let mut events = Vec::with_capacity(2);
    if !retryable {
        job.status = JobStatus::Failed;
        job.processed_at = Some(now);
        events.push(JobEvent::of(&job, kind, &cause, error, now));
    } else if job.attempt >= max_attempts {
        job.status = JobStatus::Dead;
        job.processed_at = Some(now);
        events.push(JobEvent::of(&job, kind, &cause, error, now));
        events.push(JobEvent::of(
            &job,
            "dead",
            &cause,
            format!("out of attempts ({} of {max_attempts})", job.attempt),
            now,
        ));
    } else {
        job.status = JobStatus::Queued;
        job.queued_at = now;
        job.progress = 0;
        job.progress_message.clear();
        job.not_before = (delay > 0).then_some(now + delay);
        events.push(JobEvent::of(&job, kind, &cause, error, now));
        events.push(JobEvent::of(
            &job,
            "retried",
            &cause,
            format!(
                "attempt {} of {max_attempts} failed; retry in {delay} ms",
                job.attempt
            ),
            now,
        ));
    }
    (job, events)
}

pub fn cancel(mut job: Job, cause: &str, now: i64) -> Transition {
    job.status = JobStatus::Failed;
    job.last_error = format!("cancelled by {cause}");
    job.processed_at = Some(now);
    job.touch(now);
    let event = JobEvent::of(&job, "cancelled", cause, String::new(), now);
    (job, vec![event])
}

pub fn reprioritize(mut job: Job, new_priority: u8, cause: &str, now: i64) -> Transition {
    let old = job.priority;
    job.priority = new_priority;
    job.touch(now);
    let event = JobEvent::of(
        &job,
        "priority_changed",
        cause,
        format!("{old} → {new_priority}"),
        now,
    );
    (job, vec![event])
}

/// Out of the dead-letter queue with its attempts reset.
pub fn requeue_dead(mut job: Job, cause: &str, now: i64) -> Transition {
    job.status = JobStatus::Queued;
    job.attempt = 0;
    job.queued_at = now;
    job.not_before = None;
    job.processed_at = None;
    job.progress = 0;
    job.progress_message.clear();
    job.touch(now);
    let event = JobEvent::of(
        &job,
        "requeued",
        cause,
        "from the dead-letter queue, attempts reset".into(),
        now,
    );
    (job, vec![event])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::NewAd;

    fn job() -> Job {
        Job::new(NewAd::bare(3, 300), "job-1".into(), 0)
    }

    #[test]
    fn a_lease_counts_an_attempt_and_names_it() {
        let (leased, events) = lease(job(), "p1", 30_000, 10);
        assert_eq!(leased.status, JobStatus::Processing);
        assert_eq!(leased.attempt, 1);
        assert!(
            leased
                .lease_id
                .as_deref()
                .is_some_and(|id| id.starts_with("job-1.1."))
        );
        assert_eq!(leased.lease_expires_at, Some(30_010));
        assert_eq!(events[0].kind, "leased");
        assert!(leased.version > job().version);
    }

    #[test]
    fn failures_retry_after_the_delay_then_die_after_max_attempts() {
        let (leased, _) = lease(job(), "p1", 30_000, 10);
        let reported = Failure::Reported {
            error: "boom",
            retryable: true,
        };
        let (retry, events) = fail(leased, reported, 2, 30, 700, 20);
        assert_eq!(
            (retry.status, retry.not_before, retry.queued_at),
            (JobStatus::Queued, Some(720), 20)
        );
        assert_eq!(
            events.iter().map(|e| e.kind).collect::<Vec<_>>(),
            ["failed", "retried"]
        );
        let (leased, _) = lease(retry, "p1", 30_000, 800);
        let (dead, events) = fail(leased, reported, 2, 30, 700, 900);
        assert_eq!(dead.status, JobStatus::Dead);
        assert_eq!(dead.last_error, "boom");
        assert_eq!(
            events.iter().map(|e| e.kind).collect::<Vec<_>>(),
            ["failed", "dead"]
        );
    }

    #[test]
    fn an_expired_lease_is_redelivered_at_once_and_a_permanent_failure_ends_the_job() {
        let (leased, _) = lease(job(), "p1", 30_000, 10);
        let (again, events) = fail(leased.clone(), Failure::LeaseExpired, 3, 30, 700, 40_000);
        assert_eq!((again.status, again.not_before), (JobStatus::Queued, None));
        assert_eq!(events[0].cause, "lease_expiry");
        assert!(again.last_error.contains("p1"));
        let permanent = Failure::Reported {
            error: "bad",
            retryable: false,
        };
        let (failed, _) = fail(leased, permanent, 3, 30, 700, 50);
        assert_eq!(failed.status, JobStatus::Failed);
    }
}
