//! From counted events to the deltas of the aggregate tables: per campaign
//! per UTC day and hour, per ad per hour. Plain functions; the SQL side adds
//! the deltas with upserts.

use std::collections::BTreeMap;

use admesh_common::time::{utc_day, utc_hour, utc_minute};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Impression,
    Click,
}

/// An event that passed de-duplication.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Counted {
    pub kind: Kind,
    /// When it happened (unix ms): out-of-order events land in their own
    /// day and hour, not in the one they arrived in.
    pub time: i64,
    pub campaign_id: String,
    pub ad_id: String,
    /// Micros (impressions).
    pub spend: i64,
    /// Clicks: whether the click belongs to a known impression inside the
    /// attribution window. Unattributed clicks are kept but not counted.
    pub attributed: bool,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    pub impressions: i64,
    pub clicks: i64,
    pub spend: i64,
}

impl Totals {
    fn add(&mut self, event: &Counted) {
        match event.kind {
            Kind::Impression => {
                self.impressions += 1;
                self.spend += event.spend;
            }
            Kind::Click => self.clicks += 1,
        }
    }
}

/// What one batch adds to each aggregate row. Keys are sorted, so
/// concurrent writers upsert rows in the same order (no deadlocks).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Deltas {
    pub campaign_daily: BTreeMap<(String, i64), Totals>,
    pub campaign_hourly: BTreeMap<(String, i64), Totals>,
    /// (ad, hour) → (its campaign, totals).
    pub ad_hourly: BTreeMap<(String, i64), (String, Totals)>,
    /// (minute, ad) → (its campaign, totals): the edges of rolling windows.
    pub ad_minutely: BTreeMap<(i64, String), (String, Totals)>,
}

/// Sums `events` into deltas, leaving out unattributed clicks.
pub fn aggregate(events: &[Counted]) -> Deltas {
    let mut deltas = Deltas::default();
    for event in events {
        if event.kind == Kind::Click && !event.attributed {
            continue;
        }
        deltas
            .campaign_daily
            .entry((event.campaign_id.clone(), utc_day(event.time)))
            .or_default()
            .add(event);
        deltas
            .campaign_hourly
            .entry((event.campaign_id.clone(), utc_hour(event.time)))
            .or_default()
            .add(event);
        deltas
            .ad_hourly
            .entry((event.ad_id.clone(), utc_hour(event.time)))
            .or_insert_with(|| (event.campaign_id.clone(), Totals::default()))
            .1
            .add(event);
        deltas
            .ad_minutely
            .entry((utc_minute(event.time), event.ad_id.clone()))
            .or_insert_with(|| (event.campaign_id.clone(), Totals::default()))
            .1
            .add(event);
    }
    deltas
}

/// Whether a click counts for its impression.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attribution {
    Attributed,
    /// The impression is not (yet) known.
    UnknownImpression,
    /// The impression is older than the window (or later than the click).
    OutsideWindow,
}

pub fn attribute(click_time: i64, impression_time: Option<i64>, window_ms: i64) -> Attribution {
    match impression_time {
        None => Attribution::UnknownImpression,
        // A little clock skew between replicas is tolerated.
        Some(shown) if shown <= click_time + 5_000 && click_time - shown <= window_ms => {
            Attribution::Attributed
        }
        Some(_) => Attribution::OutsideWindow,
    }
}

/// A rolling window from `start` to now, read from the aggregates exactly
/// to the minute: whole hours inside it from the hourly rows, the partial
/// hours at its two edges from the minute rows. Reading a week this way
/// touches at most 168 hourly and 120 minute rows per ad.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RollingWindow {
    /// The first minute counted: the one `start` falls in.
    pub first_minute: i64,
    /// The first hour counted from the hourly rows.
    pub first_whole_hour: i64,
    /// The hour now is in: partial, so read from minutes.
    pub current_hour: i64,
}

impl RollingWindow {
    pub fn new(start: i64, now: i64) -> Self {
        let first_minute = utc_minute(start);
        Self {
            first_minute,
            first_whole_hour: first_minute.div_euclid(60) + i64::from(first_minute % 60 != 0),
            current_hour: utc_hour(now),
        }
    }

    pub fn counts_hour(&self, hour: i64) -> bool {
        hour >= self.first_whole_hour && hour < self.current_hour
    }

    pub fn counts_minute(&self, minute: i64) -> bool {
        minute >= self.first_minute && !self.counts_hour(minute.div_euclid(60))
    }

    /// [`Self::counts_hour`] in SQL, over a column `hour`.
    pub fn hour_condition(&self) -> String {
        format!(
            "(hour >= {} AND hour < {})",
            self.first_whole_hour, self.current_hour
        )
    }

    /// [`Self::counts_minute`] in SQL, over a column `minute`.
    pub fn minute_condition(&self) -> String {
        format!(
            "(minute >= {} AND (minute < {} OR minute >= {}))",
            self.first_minute,
            self.first_whole_hour * 60,
            self.current_hour * 60
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400_000;
    const HOUR: i64 = 3_600_000;

    fn event(kind: Kind, time: i64, campaign: &str, spend: i64) -> Counted {
        Counted {
            kind,
            time,
            campaign_id: campaign.into(),
            ad_id: format!("{campaign}-ad"),
            spend,
            attributed: true,
        }
    }

    #[test]
    fn events_land_in_their_own_day_and_hour_whatever_the_arrival_order() {
        let late = 20_000 * DAY + 23 * HOUR + 59 * 60_000;
        let early = 20_000 * DAY + 10;
        let next_day = 20_001 * DAY + 5;
        let deltas = aggregate(&[
            event(Kind::Impression, next_day, "c", 7),
            event(Kind::Impression, late, "c", 5),
            event(Kind::Click, early, "c", 0),
            event(Kind::Impression, early, "c", 3),
        ]);
        let day = |d: i64| deltas.campaign_daily[&("c".to_string(), d)];
        assert_eq!(
            day(20_000),
            Totals {
                impressions: 2,
                clicks: 1,
                spend: 8
            }
        );
        assert_eq!(
            day(20_001),
            Totals {
                impressions: 1,
                clicks: 0,
                spend: 7
            }
        );
        let hour = |h: i64| deltas.campaign_hourly[&("c".to_string(), h)];
        assert_eq!(hour(20_000 * 24 + 23).impressions, 1);
        assert_eq!(hour(20_000 * 24).clicks, 1);
        assert_eq!(
            deltas.ad_hourly[&("c-ad".to_string(), 20_000 * 24)].1.spend,
            3
        );
    }

    #[test]
    fn unattributed_clicks_are_not_counted() {
        let mut click = event(Kind::Click, DAY, "c", 0);
        click.attributed = false;
        assert!(aggregate(&[click]).campaign_daily.is_empty());
    }

    #[test]
    fn attribution_needs_a_known_impression_inside_the_window() {
        assert_eq!(
            attribute(10 * HOUR, Some(9 * HOUR), DAY),
            Attribution::Attributed
        );
        assert_eq!(
            attribute(10 * HOUR, None, DAY),
            Attribution::UnknownImpression
        );
        assert_eq!(
            attribute(3 * DAY, Some(HOUR), DAY),
            Attribution::OutsideWindow
        );
        assert_eq!(
            attribute(HOUR, Some(3 * HOUR), DAY),
            Attribution::OutsideWindow
        );
    }

    #[test]
    fn a_rolling_window_counts_every_event_since_its_first_minute_once() {
        // Events every 7 minutes over nine days; windows of many lengths
        // ending at many times: hourly plus minute rows give exactly the
        // events from the window's first minute on.
        let times: Vec<i64> = (0..(9 * 24 * 60 / 7))
            .map(|i| 20_000 * DAY + i * 7 * 60_000 + 1_234)
            .collect();
        for now_offset in [0, 59 * 60_000, 3 * DAY + 17 * 60_000 + 5, 8 * DAY + HOUR] {
            let now = 20_000 * DAY + now_offset;
            for length in [60_000, 45 * 60_000, HOUR, 90 * 60_000, DAY, 7 * DAY] {
                let window = RollingWindow::new(now - length, now);
                let seen: Vec<i64> = times.iter().copied().filter(|time| *time <= now).collect();
                let expected = seen
                    .iter()
                    .filter(|time| utc_minute(**time) >= window.first_minute)
                    .count();
                let mut hours: BTreeMap<i64, usize> = BTreeMap::new();
                let mut minutes: BTreeMap<i64, usize> = BTreeMap::new();
                for time in &seen {
                    *hours.entry(utc_hour(*time)).or_default() += 1;
                    *minutes.entry(utc_minute(*time)).or_default() += 1;
                }
                let from_rows: usize = hours
                    .iter()
                    .filter(|(hour, _)| window.counts_hour(**hour))
                    .map(|(_, n)| n)
                    .sum::<usize>()
                    + minutes
                        .iter()
                        .filter(|(minute, _)| window.counts_minute(**minute))
                        .map(|(_, n)| n)
                        .sum::<usize>();
                assert_eq!(
                    from_rows, expected,
                    "now +{now_offset} ms, window {length} ms"
                );
            }
        }
    }
}
