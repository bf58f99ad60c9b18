//! The dispatch order of the queue (SPEC §4), in one place:
//!
//! 1. With anti-starvation on (the default), a job that has waited longer
//!    than its max wait is *starved*. Starved jobs go before all others,
//!    earliest deadline (`queued_at + max_wait`) first.
//! 2. Then higher priority first (5 before 1); within a priority, FIFO by
//!    `queued_at`, then by id.
//!
//! Every store orders by [`DispatchKey`]; the Redis store's sorted-set
//! scores come from [`priority_score`] and [`deadline`], which keep the
//! same order.

use std::cmp::Reverse;

/// What ordering needs to know about a queued job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueuedJob {
    pub id: String,
    /// 1 (lowest) to 5 (highest).
    pub priority: u8,
    /// Unix ms when the job (last) entered the queue.
    pub queued_at: i64,
    /// Milliseconds the job may wait before it counts as starved.
    pub max_wait_ms: i64,
}

/// When a job starts to count as starved (unix ms).
pub fn deadline(job: &QueuedJob) -> i64 {
    job.queued_at.saturating_add(job.max_wait_ms)
}

/// Starved at `now`: waited longer than its max wait.
pub fn is_starved(job: &QueuedJob, now: i64) -> bool {
    now > deadline(job)
}

/// The sort key of a job at `now`: smaller is dispatched first.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum DispatchKey<'a> {
    /// Starved jobs: by deadline, then arrival, then id.
    Starved {
        deadline: i64,
        queued_at: i64,
        id: &'a str,
    },
    /// The rest: by priority (high first), then arrival, then id.
    Waiting {
        priority: Reverse<u8>,
        queued_at: i64,
        id: &'a str,
    },
}

/// Where `job` stands at `now`.
pub fn dispatch_key(job: &QueuedJob, now: i64, anti_starvation: bool) -> DispatchKey<'_> {
    if anti_starvation && is_starved(job, now) {
        DispatchKey::Starved {
            deadline: deadline(job),
            queued_at: job.queued_at,
            id: &job.id,
        }
    } else {
        DispatchKey::Waiting {
            priority: Reverse(job.priority),
            queued_at: job.queued_at,
            id: &job.id,
        }
    }
}

/// Sorts `jobs` into dispatch order at `now`.
pub fn sort_for_dispatch(jobs: &mut [QueuedJob], now: i64, anti_starvation: bool) {
    jobs.sort_by(|a, b| {
        dispatch_key(a, now, anti_starvation).cmp(&dispatch_key(b, now, anti_starvation))
    });
}

/// A sorted-set score ordering jobs by priority (high first), then arrival:
/// `(5 - priority) · 2^42 + queued_at`. Exact in an f64 (below 2^53) for
/// times before the year 2109; ties (same priority and millisecond) are
/// broken by the member, which stores keep equal to the id.
pub fn priority_score(priority: u8, queued_at: i64) -> f64 {
    let band = i64::from(5u8.saturating_sub(priority.clamp(1, 5)));
    (band * (1_i64 << 42) + queued_at.clamp(0, (1_i64 << 42) - 1)) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn job(id: &str, priority: u8, queued_at: i64, max_wait_ms: i64) -> QueuedJob {
        QueuedJob {
            id: id.into(),
            priority,
            queued_at,
            max_wait_ms,
        }
    }

    fn order(mut jobs: Vec<QueuedJob>, now: i64, anti_starvation: bool) -> Vec<String> {
        sort_for_dispatch(&mut jobs, now, anti_starvation);
        jobs.into_iter().map(|job| job.id).collect()
    }

    #[test]
    fn priority_first_then_fifo_then_id() {
        let jobs = vec![
            job("c", 3, 100, 1_000_000),
            job("a", 5, 300, 1_000_000),
            job("d", 3, 50, 1_000_000),
            job("b", 3, 50, 1_000_000),
            job("e", 1, 0, 1_000_000),
        ];
        assert_eq!(order(jobs, 1_000, true), ["a", "b", "d", "c", "e"]);
    }

    #[test]
    fn starved_jobs_go_first_by_deadline_when_anti_starvation_is_on() {
        let jobs = vec![
            job("urgent", 5, 1_000, 300_000),
            // Waited 400 s of a 300 s max: starved, deadline 300,000.
            job("old-low", 1, 0, 300_000),
            // Waited 200 s of a 100 s max: starved, deadline 200,000 (earlier).
            job("short-fuse", 2, 100_000, 100_000),
        ];
        assert_eq!(
            order(jobs.clone(), 400_000, true),
            ["short-fuse", "old-low", "urgent"]
        );
        assert_eq!(
            order(jobs, 400_000, false),
            ["urgent", "short-fuse", "old-low"]
        );
    }

    #[test]
    fn exactly_at_the_deadline_is_not_yet_starved() {
        let waiting = job("j", 1, 0, 1_000);
        assert!(!is_starved(&waiting, 1_000));
        assert!(is_starved(&waiting, 1_001));
    }

    #[test]
    fn priority_scores_keep_the_waiting_order() {
        let scores = [
            priority_score(5, 1_800_000_000_000),
            priority_score(4, 0),
            priority_score(4, 1),
            priority_score(1, 0),
        ];
        assert!(
            scores.windows(2).all(|pair| pair[0] < pair[1]),
            "{scores:?}"
        );
    }

    /// The reference model: the rule written as plainly as possible.
    fn reference_order(jobs: &[QueuedJob], now: i64, anti_starvation: bool) -> Vec<String> {
        let (mut starved, mut rest): (Vec<&QueuedJob>, Vec<&QueuedJob>) = jobs
            .iter()
            .partition(|job| anti_starvation && job.queued_at + job.max_wait_ms < now);
        starved.sort_by(|a, b| {
            (a.queued_at + a.max_wait_ms)
                .cmp(&(b.queued_at + b.max_wait_ms))
                .then(a.queued_at.cmp(&b.queued_at))
                .then(a.id.cmp(&b.id))
        });
        rest.sort_by(|a, b| {
            b.priority
                .cmp(&a.priority)
                .then(a.queued_at.cmp(&b.queued_at))
                .then(a.id.cmp(&b.id))
        });
        starved
            .into_iter()
            .chain(rest)
            .map(|job| job.id.clone())
            .collect()
    }

    fn jobs_strategy() -> impl Strategy<Value = Vec<QueuedJob>> {
        prop::collection::vec((1u8..=5, 0i64..10_000, 1i64..5_000), 0..200).prop_map(|specs| {
            specs
                .into_iter()
                .enumerate()
                .map(|(i, (priority, queued_at, max_wait_ms))| {
                    job(&format!("job-{i:04}"), priority, queued_at, max_wait_ms)
                })
                .collect()
        })
    }

    proptest! {
        #[test]
        fn dispatch_order_matches_the_reference_model(
            jobs in jobs_strategy(),
            now in 0i64..20_000,
            anti_starvation in any::<bool>(),
        ) {
            let expected = reference_order(&jobs, now, anti_starvation);
            prop_assert_eq!(order(jobs, now, anti_starvation), expected);
        }

        #[test]
        fn scores_order_like_the_waiting_rule(
            a in (1u8..=5, 0i64..4_000_000_000_000),
            b in (1u8..=5, 0i64..4_000_000_000_000),
        ) {
            let by_rule = Reverse(a.0).cmp(&Reverse(b.0)).then(a.1.cmp(&b.1));
            let by_score = priority_score(a.0, a.1).total_cmp(&priority_score(b.0, b.1));
            prop_assert_eq!(by_rule, by_score);
        }
    }
}
