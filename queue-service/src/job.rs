//! An ad job as the queue holds it, and the checks a submitted ad must pass.

use std::fmt::Display;

use admesh_common::validation::FieldViolations;
use admesh_proto::queue::v1::{JobStatus as ProtoStatus, SubmitAdRequest};
use serde::{Deserialize, Serialize};

use crate::{analysis::Analysis, ordering::QueuedJob};

/// Lifecycle of a job (SPEC §4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    /// Waiting in the queue, also while waiting out a retry backoff.
    Queued,
    /// Leased to a processor.
    Processing,
    Completed,
    /// Cancelled, or failed for a reason retrying cannot fix.
    Failed,
    /// Out of attempts: in the dead-letter queue.
    Dead,
}

impl JobStatus {
    pub const ALL: [JobStatus; 5] = [
        Self::Queued,
        Self::Processing,
        Self::Completed,
        Self::Failed,
        Self::Dead,
    ];

    /// The SQL spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Processing => "processing",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Dead => "dead",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|status| status.as_str() == text)
    }

    pub fn to_proto(self) -> ProtoStatus {
        match self {
            Self::Queued => ProtoStatus::Queued,
            Self::Processing => ProtoStatus::Processing,
            Self::Completed => ProtoStatus::Completed,
            Self::Failed => ProtoStatus::Failed,
            Self::Dead => ProtoStatus::Dead,
        }
    }

    /// `None` for UNSPECIFIED (= any status in filters).
    pub fn from_proto(status: ProtoStatus) -> Option<Self> {
        match status {
            ProtoStatus::Unspecified => None,
            ProtoStatus::Queued => Some(Self::Queued),
            ProtoStatus::Processing => Some(Self::Processing),
            ProtoStatus::Completed => Some(Self::Completed),
            ProtoStatus::Failed => Some(Self::Failed),
            ProtoStatus::Dead => Some(Self::Dead),
        }
    }

    /// Queued or processing: the job is still the queue's business.
    pub fn is_active(self) -> bool {
        matches!(self, Self::Queued | Self::Processing)
    }
}

/// One ad job. Times are unix milliseconds. (Serialized as JSON in the
/// cluster profile's Redis hash.)
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Job {
    pub id: String,
    pub title: String,
    pub description: String,
    pub game_family: String,
    pub target_audience: Vec<String>,
    pub visual_elements: Vec<String>,
    pub call_to_action: String,
    /// Seconds of creative.
    pub duration: u32,
    /// 1–5, 5 is the highest.
    pub priority: u8,
    /// Seconds the job may wait before it counts as starved.
    pub max_wait_secs: u32,
    pub status: JobStatus,
    /// Attempts started so far.
    pub attempt: u32,
    /// Bumped on every change; the SQL mirror keeps the highest.
    pub version: i64,
    pub created_at: i64,
    pub queued_at: i64,
    pub processing_started_at: Option<i64>,
    pub processed_at: Option<i64>,
    /// Not dispatched before this time (retry backoff).
    pub not_before: Option<i64>,
    pub updated_at: i64,
    pub progress: u32,
    pub progress_message: String,
    pub analysis: Option<Analysis>,
    pub last_error: String,
    pub lease_id: Option<String>,
    pub lease_expires_at: Option<i64>,
    pub processor_id: Option<String>,
}

impl Job {
    /// A new queued job from a validated submission.
    pub fn new(ad: NewAd, id: String, now: i64) -> Self {
        Self {
            id,
            title: ad.title,
            description: ad.description,
            game_family: ad.game_family,
            target_audience: ad.target_audience,
            visual_elements: ad.visual_elements,
            call_to_action: ad.call_to_action,
            duration: ad.duration,
            priority: ad.priority,
            max_wait_secs: ad.max_wait_secs,
            status: JobStatus::Queued,
            attempt: 0,
            version: 1,
            created_at: now,
            queued_at: now,
            processing_started_at: None,
            processed_at: None,
            not_before: None,
            updated_at: now,
            progress: 0,
            progress_message: String::new(),
            analysis: None,
            last_error: String::new(),
            lease_id: None,
            lease_expires_at: None,
            processor_id: None,
        }
    }

    /// What the dispatch order looks at.
    pub fn queued_view(&self) -> QueuedJob {
        QueuedJob {
            id: self.id.clone(),
            priority: self.priority,
            queued_at: self.queued_at,
            max_wait_ms: i64::from(self.max_wait_secs) * 1000,
        }
    }

    /// How long the job has waited: until now while queued, until it
    /// started otherwise.
    pub fn wait_ms(&self, now: i64) -> i64 {
        let until = match self.status {
            JobStatus::Queued => now,
            _ => self.processing_started_at.unwrap_or(now),
        };
        (until - self.queued_at).max(0)
    }

    /// Marks a change at `now`.
    pub fn touch(&mut self, now: i64) {
        self.version += 1;
        self.updated_at = now;
    }

    /// Drops the lease fields (the job left processing).
    pub fn clear_lease(&mut self) {
        self.lease_id = None;
        self.lease_expires_at = None;
        self.processor_id = None;
    }
}

/// The id of a lease on attempt `attempt` of `job_id`: it names the job,
/// so a late or repeated answer finds the job it was for, and it carries a
/// random part, so a lease handed out but lost in a crash (leases are
/// written behind) cannot be mistaken for the next one of the same attempt.
pub fn lease_id(job_id: &str, attempt: u32) -> String {
    format!("{job_id}.{attempt}.{:08x}", rand::random::<u32>())
}

/// The job a lease id names (job ids are UUIDs: no dots).
pub fn job_of_lease(lease_id: &str) -> Option<&str> {
    lease_id.split_once('.').map(|(job, _)| job)
}

/// A submitted ad that passed every check.
#[derive(Clone, Debug, PartialEq)]
pub struct NewAd {
    pub title: String,
    pub description: String,
    pub game_family: String,
    pub target_audience: Vec<String>,
    pub visual_elements: Vec<String>,
    pub call_to_action: String,
    pub duration: u32,
    pub priority: u8,
    pub max_wait_secs: u32,
}

#[cfg(test)]
impl NewAd {
    /// A bare submission of `priority` that starves after `max_wait_secs`.
    pub fn bare(priority: u8, max_wait_secs: u32) -> Self {
        Self {
            title: "t".into(),
            description: String::new(),
            game_family: "f".into(),
            target_audience: vec![],
            visual_elements: vec![],
            call_to_action: String::new(),
            duration: 0,
            priority,
            max_wait_secs,
        }
    }
}

/// Limits of a submission (SPEC §4, the proto's comments).
pub const MAX_TITLE_CHARS: usize = 200;
pub const MAX_DESCRIPTION_CHARS: usize = 2_000;
pub const MAX_GAME_FAMILY_CHARS: usize = 100;
pub const MAX_LABELS: usize = 20;
pub const MAX_LABEL_CHARS: usize = 100;
pub const MAX_CALL_TO_ACTION_CHARS: usize = 200;
pub const MAX_DURATION_SECS: u32 = 600;
pub const MAX_WAIT_SECS: u32 = 86_400;
pub const MAX_BATCH: usize = 1_000;

/// Checks `request`, recording each problem under `prefix` + the field name
/// (`ads[3].priority`); `None` when anything is wrong.
pub fn check_submission(
    request: SubmitAdRequest,
    default_max_wait_secs: u32,
    prefix: &str,
    problems: &mut FieldViolations,
) -> Option<NewAd> {
    let before = problems.len();
    let title = request.title.trim().to_string();
    problems.check(
        !title.is_empty(),
        format_args!("{prefix}title"),
        "must not be empty",
    );
    check_length(
        problems,
        format_args!("{prefix}title"),
        &title,
        MAX_TITLE_CHARS,
    );
    check_length(
        problems,
        format_args!("{prefix}description"),
        &request.description,
        MAX_DESCRIPTION_CHARS,
    );
    let game_family = request.game_family.trim().to_string();
    problems.check(
        !game_family.is_empty(),
        format_args!("{prefix}game_family"),
        "must not be empty",
    );
    check_length(
        problems,
        format_args!("{prefix}game_family"),
        &game_family,
        MAX_GAME_FAMILY_CHARS,
    );
    let target_audience = check_labels(
        problems,
        format_args!("{prefix}target_audience"),
        request.target_audience,
    );
    let visual_elements = check_labels(
        problems,
        format_args!("{prefix}visual_elements"),
        request.visual_elements,
    );
    check_length(
        problems,
        format_args!("{prefix}call_to_action"),
        &request.call_to_action,
        MAX_CALL_TO_ACTION_CHARS,
    );
    problems.check(
        request.duration <= MAX_DURATION_SECS,
        format_args!("{prefix}duration"),
        format_args!("must be at most {MAX_DURATION_SECS} seconds"),
    );
    problems.check(
        (1..=5).contains(&request.priority),
        format_args!("{prefix}priority"),
        format_args!("must be 1–5 (5 is the highest), got {}", request.priority),
    );
    let max_wait_secs = request.max_wait_time.unwrap_or(default_max_wait_secs);
    problems.check(
        (1..=MAX_WAIT_SECS).contains(&max_wait_secs),
        format_args!("{prefix}max_wait_time"),
        format_args!("must be 1–{MAX_WAIT_SECS} seconds"),
    );
    if problems.len() > before {
        return None;
    }
    Some(NewAd {
        title,
        description: request.description,
        game_family,
        target_audience,
        visual_elements,
        call_to_action: request.call_to_action.trim().to_string(),
        duration: request.duration,
        priority: u8::try_from(request.priority).unwrap_or(1),
        max_wait_secs,
    })
}

fn check_length(problems: &mut FieldViolations, field: impl Display, value: &str, max: usize) {
    let chars = value.chars().count();
    problems.check(
        chars <= max,
        field,
        format_args!("must be at most {max} characters, got {chars}"),
    );
}

fn check_labels(
    problems: &mut FieldViolations,
    field: impl Display,
    labels: Vec<String>,
) -> Vec<String> {
    problems.check(
        labels.len() <= MAX_LABELS,
        &field,
        format_args!("at most {MAX_LABELS} items, got {}", labels.len()),
    );
    let mut kept = Vec::with_capacity(labels.len());
    for (index, label) in labels.into_iter().enumerate() {
        let label = label.trim().to_string();
        problems.check(
            !label.is_empty(),
            format_args!("{field}[{index}]"),
            "must not be empty",
        );
        check_length(
            problems,
            format_args!("{field}[{index}]"),
            &label,
            MAX_LABEL_CHARS,
        );
        kept.push(label);
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> SubmitAdRequest {
        SubmitAdRequest {
            title: "Epic RPG Adventure".into(),
            game_family: "RPG-Fantasy".into(),
            target_audience: vec!["18-34".into()],
            priority: 5,
            ..Default::default()
        }
    }

    fn check(request: SubmitAdRequest) -> Result<NewAd, String> {
        let mut problems = FieldViolations::new();
        match check_submission(request, 300, "", &mut problems) {
            Some(ad) => Ok(ad),
            None => Err(problems
                .into_result()
                .expect_err("problems were recorded")
                .message()
                .to_string()),
        }
    }

    #[test]
    fn a_valid_submission_takes_the_default_max_wait() {
        let ad = check(request()).expect("valid");
        assert_eq!(ad.max_wait_secs, 300);
        assert_eq!(ad.priority, 5);
    }

    #[test]
    fn each_bad_field_is_named() {
        for (change, field) in [
            (
                (|r: &mut SubmitAdRequest| r.priority = 0) as fn(&mut SubmitAdRequest),
                "priority",
            ),
            (|r| r.priority = 6, "priority"),
            (|r| r.title = "  ".into(), "title"),
            (|r| r.title = "x".repeat(201), "title"),
            (|r| r.game_family = String::new(), "game_family"),
            (|r| r.duration = 601, "duration"),
            (|r| r.max_wait_time = Some(0), "max_wait_time"),
            (
                |r| r.target_audience = vec![String::new()],
                "target_audience[0]",
            ),
            (
                |r| r.visual_elements = vec!["a".into(); 21],
                "visual_elements",
            ),
        ] {
            let mut bad = request();
            change(&mut bad);
            let message = check(bad).expect_err("invalid");
            assert!(message.starts_with(&format!("{field}:")), "{message}");
        }
    }

    #[test]
    fn lease_ids_name_their_job() {
        let lease = lease_id("0190-abc", 3);
        assert!(lease.starts_with("0190-abc.3."));
        assert_eq!(job_of_lease(&lease), Some("0190-abc"));
        assert_ne!(lease, lease_id("0190-abc", 3), "unique per lease");
        assert_eq!(job_of_lease("nodot"), None);
    }
}
