//! The queue's runtime configuration, changed live through the API.

use admesh_common::validation::FieldViolations;
use admesh_proto::queue::v1::{QueueConfig, UpdateQueueConfigRequest};

/// Live settings (SPEC §4); stored in SQL so a restart keeps them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueSettings {
    pub anti_starvation: bool,
    pub default_max_wait_secs: u32,
    pub worker_count: u32,
    pub batch_size: u32,
    pub lease_timeout_secs: u32,
    pub max_attempts: u32,
}

impl Default for QueueSettings {
    fn default() -> Self {
        Self {
            anti_starvation: true,
            default_max_wait_secs: 300,
            worker_count: 3,
            batch_size: 10,
            lease_timeout_secs: 30,
            max_attempts: 3,
        }
    }
}

impl QueueSettings {
    /// The starting values from the service's config.
    pub fn from_config(config: &admesh_common::config::QueueServiceConfig) -> Self {
        Self {
            anti_starvation: config.anti_starvation,
            default_max_wait_secs: config.default_max_wait_secs,
            worker_count: config.worker_count,
            batch_size: config.batch_size,
            lease_timeout_secs: config.lease_timeout_secs,
            max_attempts: config.max_attempts,
        }
    }

    pub fn lease_timeout_ms(&self) -> i64 {
        i64::from(self.lease_timeout_secs) * 1000
    }

    pub fn to_proto(self) -> QueueConfig {
        QueueConfig {
            anti_starvation_enabled: self.anti_starvation,
            default_max_wait_time: self.default_max_wait_secs,
            worker_count: self.worker_count,
            batch_size: self.batch_size,
            lease_timeout_seconds: self.lease_timeout_secs,
            max_attempts: self.max_attempts,
        }
    }

    /// These settings with the fields `update` sets, each checked.
    pub fn updated(self, update: &UpdateQueueConfigRequest) -> Result<Self, tonic::Status> {
        let mut problems = FieldViolations::new();
        let mut check = |value: Option<u32>, field: &str, max: u32| -> Option<u32> {
            let value = value?;
            problems.check(
                (1..=max).contains(&value),
                field,
                format_args!("must be 1–{max}, got {value}"),
            );
            Some(value)
        };
        let next = Self {
            anti_starvation: update
                .anti_starvation_enabled
                .unwrap_or(self.anti_starvation),
            default_max_wait_secs: check(
                update.default_max_wait_time,
                "default_max_wait_time",
                86_400,
            )
            .unwrap_or(self.default_max_wait_secs),
            worker_count: check(update.worker_count, "worker_count", 1_000)
                .unwrap_or(self.worker_count),
            batch_size: check(update.batch_size, "batch_size", 1_000).unwrap_or(self.batch_size),
            lease_timeout_secs: check(update.lease_timeout_seconds, "lease_timeout_seconds", 3_600)
                .unwrap_or(self.lease_timeout_secs),
            max_attempts: check(update.max_attempts, "max_attempts", 100)
                .unwrap_or(self.max_attempts),
        };
        problems.into_result()?;
        Ok(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_update_changes_only_the_fields_it_sets() {
        let update = UpdateQueueConfigRequest {
            worker_count: Some(8),
            anti_starvation_enabled: Some(false),
            ..Default::default()
        };
        let next = QueueSettings::default().updated(&update).expect("valid");
        assert_eq!(next.worker_count, 8);
        assert!(!next.anti_starvation);
        assert_eq!(next.batch_size, QueueSettings::default().batch_size);
    }

    #[test]
    fn out_of_range_values_are_named() {
        let update = UpdateQueueConfigRequest {
            worker_count: Some(0),
            max_attempts: Some(101),
            ..Default::default()
        };
        let error = QueueSettings::default()
            .updated(&update)
            .expect_err("invalid");
        assert_eq!(error.code(), tonic::Code::InvalidArgument);
        assert!(error.message().contains("worker_count: must be 1–1000"));
        assert!(error.message().contains("max_attempts"));
    }
}
