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

    /// Records a violation unless `ok`. Pass field names and messages with
    /// arguments as `format_args!`: they are formatted only when the check
    /// fails, which keeps valid requests (nearly all of them) free of it.
    pub fn check(&mut self, ok: bool, field: impl Display, problem: impl Display) {
        if !ok {
            self.add(field.to_string(), problem);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.violations.is_empty()
    }

    /// How many problems so far.
    pub fn len(&self) -> usize {
        self.violations.len()
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

/// The oldest age a request or a targeting rule may name.
pub const MAX_AGE: u32 = 150;

/// What an ad request says about the impression, as the ad-server and the
/// bid-engine both receive it.
#[derive(Clone, Copy, Debug)]
pub struct ImpressionFields<'a> {
    pub user_id: &'a str,
    pub placement_id: &'a str,
    pub country_code: &'a str,
    pub device_type: i32,
    pub age: Option<u32>,
    pub floor_cpm: i64,
}

/// Checks an impression's fields (one rule for Serve and Bid) and answers
/// the country upper-cased (empty when unknown).
pub fn check_impression(fields: ImpressionFields<'_>, problems: &mut FieldViolations) -> String {
    problems.check(!fields.user_id.is_empty(), "user_id", "is required");
    problems.check(
        !fields.placement_id.is_empty(),
        "placement_id",
        "is required",
    );
    let country = normalize_country(fields.country_code);
    problems.check(
        country.is_some(),
        "country_code",
        format_args!("{:?} is not a two-letter country code", fields.country_code),
    );
    problems.check(
        admesh_proto::common::v1::DeviceType::try_from(fields.device_type).is_ok(),
        "device_type",
        format_args!("unknown device type {}", fields.device_type),
    );
    if let Some(age) = fields.age {
        problems.check(
            age <= MAX_AGE,
            "age",
            format_args!("must be at most {MAX_AGE}"),
        );
    }
    problems.check(fields.floor_cpm >= 0, "floor_cpm", "must not be negative");
    country.unwrap_or_default()
}

/// `us` → `US`; `None` unless empty or two ASCII letters.
pub fn normalize_country(value: &str) -> Option<String> {
    let value = value.trim();
    (value.is_empty() || (value.len() == 2 && value.bytes().all(|b| b.is_ascii_alphabetic())))
        .then(|| value.to_ascii_uppercase())
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

    #[test]
    fn impressions_need_a_user_and_a_placement_and_name_bad_fields() {
        let mut problems = FieldViolations::new();
        let country = check_impression(
            ImpressionFields {
                user_id: "",
                placement_id: "",
                country_code: "USA",
                device_type: 99,
                age: Some(200),
                floor_cpm: -1,
            },
            &mut problems,
        );
        assert_eq!(country, "");
        let message = problems
            .into_result()
            .expect_err("bad")
            .message()
            .to_string();
        for field in [
            "user_id",
            "placement_id",
            "country_code",
            "device_type",
            "age",
            "floor_cpm",
        ] {
            assert!(
                message.contains(&format!("{field}:")),
                "{field} in {message}"
            );
        }
        let mut problems = FieldViolations::new();
        let fields = ImpressionFields {
            user_id: "u",
            placement_id: "p",
            country_code: " gb ",
            device_type: 1,
            age: Some(30),
            floor_cpm: 0,
        };
        assert_eq!(check_impression(fields, &mut problems), "GB");
        assert!(problems.is_empty());
    }
}
