//! Bad input gets INVALID_ARGUMENT with a message naming the field:
//! `title: must not be empty`. Several problems are reported together.

use std::fmt::Display;

/// INVALID_ARGUMENT for one field.
pub fn invalid_argument(field: &str, problem: impl Display) -> tonic::Status {
    tonic::Status::invalid_argument(format!("{field}: {problem}"))
}

/// Collects field violations, e.g. every bad item of a batch.
#[derive(Debug, Default)]
pub struct FieldViolations {
    violations: Vec<(String, String)>,
}

impl FieldViolations {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn add(&mut self, field: impl Into<String>, problem: impl Display) {
        self.violations.push((field.into(), problem.to_string()));
    }

    /// Records a violation unless `ok`.
    pub fn check(&mut self, ok: bool, field: impl Into<String>, problem: impl Display) {
        if !ok {
            self.add(field, problem);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.violations.is_empty()
    }

    /// `Ok(())` when there is none, else one INVALID_ARGUMENT naming all.
    pub fn into_result(self) -> Result<(), tonic::Status> {
        if self.violations.is_empty() {
            return Ok(());
        }
        let message = self
            .violations
            .iter()
            .map(|(field, problem)| format!("{field}: {problem}"))
            .collect::<Vec<_>>()
            .join("; ");
        Err(tonic::Status::invalid_argument(message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn violations_name_every_field() {
        let mut violations = FieldViolations::new();
        violations.check(true, "title", "must not be empty");
        violations.check(false, "ads[3].priority", "must be between 1 and 5");
        violations.add("ads[7].title", "must not be empty");
        let status = violations.into_result().expect_err("two violations");
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert_eq!(
            status.message(),
            "ads[3].priority: must be between 1 and 5; ads[7].title: must not be empty"
        );
        assert!(FieldViolations::new().into_result().is_ok());
    }
}
