//! Ratios derived from integer totals: never a division by zero, money
//! stays integer micros.

/// Clicks per impression as a percentage (2.5 = 2.5 %); 0 without
/// impressions.
pub fn ctr(clicks: u64, impressions: u64) -> f64 {
    if impressions == 0 {
        0.0
    } else {
        clicks as f64 * 100.0 / impressions as f64
    }
}

/// Spend per click in micros (rounded down); 0 without clicks.
pub fn cpc(spend: i64, clicks: u64) -> i64 {
    match i64::try_from(clicks) {
        Ok(clicks) if clicks > 0 => spend / clicks,
        _ => 0,
    }
}

/// Spend per 1,000 impressions in micros (rounded down); 0 without
/// impressions.
pub fn cpm(spend: i64, impressions: u64) -> i64 {
    match i64::try_from(impressions) {
        Ok(impressions) if impressions > 0 => {
            (i128::from(spend) * 1_000 / i128::from(impressions)) as i64
        }
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_of_zero_denominators_are_zero() {
        assert_eq!(ctr(5, 0), 0.0);
        assert_eq!(cpc(1_000, 0), 0);
        assert_eq!(cpm(1_000, 0), 0);
    }

    #[test]
    fn ratios_come_from_integer_totals() {
        assert_eq!(ctr(1, 40), 2.5);
        assert_eq!(cpc(2_501, 2), 1_250);
        // 3 impressions at 901 micros each: 901,000 micros per thousand.
        assert_eq!(cpm(2_703, 3), 901_000);
    }
}
