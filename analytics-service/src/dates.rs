//! UTC calendar dates ("YYYY-MM-DD") as day numbers since the unix epoch,
//! the unit the daily aggregates are keyed by.

use admesh_common::validation::invalid_argument;

/// The longest range a query may span, in days (inclusive of both ends).
pub const MAX_RANGE_DAYS: i64 = 366;

/// Days since 1970-01-01 of a proleptic Gregorian date (the "days from
/// civil" construction: shift the year to start in March so leap days come
/// last, then count 400-year eras).
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month = i64::from(month);
    let day_of_year =
        (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The date of a day number.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let days = days + 719_468;
    let era = days.div_euclid(146_097);
    let day_of_era = days - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * shifted_month + 2) / 5 + 1) as u32;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// "YYYY-MM-DD" of a day number.
pub fn format_day(days: i64) -> String {
    let (year, month, day) = civil_from_days(days);
    format!("{year:04}-{month:02}-{day:02}")
}

/// Parses a strict "YYYY-MM-DD" that names a real date.
pub fn parse_day(text: &str) -> Option<i64> {
    let bytes = text.as_bytes();
    if bytes.len() != 10 || bytes[4] != b'-' || bytes[7] != b'-' {
        return None;
    }
    let year: i64 = text.get(0..4)?.parse().ok()?;
    let month: u32 = text.get(5..7)?.parse().ok()?;
    let day: u32 = text.get(8..10)?.parse().ok()?;
    if !(1..=12).contains(&month) || day == 0 {
        return None;
    }
    let days = days_from_civil(year, month, day);
    // Round-tripping rejects the 31st of a 30-day month and 29 February of
    // a common year.
    (civil_from_days(days) == (year, month, day)).then_some(days)
}

/// A query's inclusive day range from its optional start and end dates:
/// the end defaults to `today`, the start to six days before the end.
pub fn day_range(start: &str, end: &str, today: i64) -> Result<(i64, i64), tonic::Status> {
    let end_day = if end.is_empty() {
        today
    } else {
        parse_day(end).ok_or_else(|| invalid_argument("end_date", "must be a date YYYY-MM-DD"))?
    };
    let start_day = if start.is_empty() {
        end_day - 6
    } else {
        parse_day(start)
            .ok_or_else(|| invalid_argument("start_date", "must be a date YYYY-MM-DD"))?
    };
    if end_day < start_day {
        return Err(invalid_argument(
            "end_date",
            "must not be before start_date",
        ));
    }
    if end_day - start_day + 1 > MAX_RANGE_DAYS {
        return Err(invalid_argument(
            "end_date",
            format_args!("the range may span at most {MAX_RANGE_DAYS} days"),
        ));
    }
    Ok((start_day, end_day))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_dates_map_to_their_day_numbers_and_back() {
        for (text, days) in [
            ("1970-01-01", 0),
            ("2000-03-01", 11_017),
            ("2024-02-29", 19_782),
            ("2026-11-25", 20_782),
            ("1969-12-31", -1),
        ] {
            assert_eq!(parse_day(text), Some(days), "{text}");
            assert_eq!(format_day(days), text);
        }
    }

    #[test]
    fn every_day_of_four_centuries_round_trips() {
        for days in -146_097..146_097 {
            let (year, month, day) = civil_from_days(days);
            assert_eq!(days_from_civil(year, month, day), days);
        }
    }

    #[test]
    fn impossible_or_malformed_dates_are_refused() {
        for text in [
            "2025-02-29",
            "2025-04-31",
            "2025-13-01",
            "2025-1-01",
            "20250101",
            "",
            "2025-00-10",
        ] {
            assert_eq!(parse_day(text), None, "{text}");
        }
    }

    #[test]
    fn ranges_default_check_order_and_cap_their_length() {
        let today = 20_782;
        assert_eq!(
            day_range("", "", today).expect("defaults"),
            (today - 6, today)
        );
        let error = day_range("2026-11-25", "2026-11-24", today).expect_err("reversed");
        assert!(error.message().starts_with("end_date:"));
        let error = day_range("2025-01-01", "2026-11-24", today).expect_err("too long");
        assert!(error.message().contains("366"));
        assert!(day_range("2025-11-25", "2026-11-25", today).is_ok());
        let error = day_range("yesterday", "", today).expect_err("bad");
        assert!(error.message().starts_with("start_date:"));
    }
}
