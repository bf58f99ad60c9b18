//! The analytics tables in SQL (SQLite or PostgreSQL, same queries): the
//! de-duplication log, the aggregates, the consumer's counters.

use std::collections::HashSet;

use admesh_common::{
    Database,
    db::{BeginWrite, statement_chunks},
    events::StreamEntry,
    on_pool,
};
use admesh_proto::analytics::v1::EventType;
use anyhow::Context;

use crate::{
    aggregate::{Attribution, Counted, Kind, RollingWindow, Totals, aggregate, attribute},
    log::{Duplicates, EventLog, event_time, is_unique_violation},
};

/// How long a click whose impression is not counted yet waits for it (its
/// impression may be in a batch another replica is writing) before it is
/// recorded as unattributed.
pub const UNKNOWN_IMPRESSION_GRACE_MS: i64 = 30_000;

/// Minute rows serve the edges of windows up to a week long (ad analytics'
/// longest timeframe), plus a day of slack.
const MINUTE_ROWS_KEPT_MS: i64 = 8 * 86_400_000;

/// What recording a batch did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Recorded {
    pub counted: u64,
    pub duplicates: u64,
    pub unattributed: u64,
    /// Events of no known type: acknowledged, never counted.
    pub unusable: u64,
    /// Event ids of events to try again later (clicks waiting for their
    /// impression): not recorded; their entries are not to be acknowledged
    /// yet.
    pub deferred: Vec<String>,
}

/// One row of per-ad figures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdFigures {
    pub ad_id: String,
    pub clicks: u64,
    pub last_hour: u64,
    pub last_day: u64,
    pub impressions: u64,
}

/// The consumer's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IngestCounters {
    pub events_counted: u64,
    pub duplicates_dropped: u64,
    pub unattributed_clicks: u64,
    pub last_event_time: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RankBy {
    Spend,
    Clicks,
    Ctr,
}

/// Binds a row's totals (impressions, clicks, spend).
macro_rules! bind_totals {
    ($query:expr, $totals:expr) => {{
        let totals: &Totals = $totals;
        $query
            .bind(totals.impressions)
            .bind(totals.clicks)
            .bind(totals.spend)
    }};
}

/// Adds per-campaign totals to `$table`, keyed by campaign and `$period`
/// (its day or hour column), on `$tx`.
macro_rules! upsert_campaign_totals {
    ($database:expr, $tx:expr, $table:literal, $period:literal, $totals:expr) => {{
        let rows: Vec<_> = $totals.iter().collect();
        for chunk in statement_chunks(&rows) {
            let sql = format!(
                concat!(
                    "INSERT INTO ",
                    $table,
                    " (campaign_id, ",
                    $period,
                    ", impressions, clicks, spend) \
                     VALUES {} ON CONFLICT (campaign_id, ",
                    $period,
                    ") DO UPDATE SET \
                     impressions = ",
                    $table,
                    ".impressions + excluded.impressions, \
                     clicks = ",
                    $table,
                    ".clicks + excluded.clicks, \
                     spend = ",
                    $table,
                    ".spend + excluded.spend"
                ),
                $database.values_placeholders(chunk.len(), 5)
            );
            let mut query = sqlx::query(&sql);
            for ((campaign, period), totals) in chunk {
                query = bind_totals!(query.bind(campaign.clone()).bind(*period), totals);
            }
            query
                .execute(&mut *$tx)
                .await
                .context(concat!("upsert ", $table))?;
        }
    }};
}

/// Adds per-ad counts to `$table` (ad_metrics_hourly or _minute), keyed by
/// `$key` columns, on `$tx`; `$rows` yields `(key a, key b, campaign, totals)`.
macro_rules! upsert_ad_counts {
    ($database:expr, $tx:expr, $table:literal, $keys:literal, $rows:expr) => {{
        let rows: Vec<_> = $rows.collect();
        for chunk in statement_chunks(&rows) {
            let sql = format!(
                concat!(
                    "INSERT INTO ",
                    $table,
                    " (",
                    $keys,
                    ", campaign_id, impressions, clicks) VALUES {} ON CONFLICT (",
                    $keys,
                    ") DO UPDATE SET impressions = ",
                    $table,
                    ".impressions + excluded.impressions, clicks = ",
                    $table,
                    ".clicks + excluded.clicks"
                ),
                $database.values_placeholders(chunk.len(), 5)
            );
            let mut query = sqlx::query(&sql);
            for (first, second, campaign, totals) in chunk {
                let totals: &Totals = totals;
                query = query
                    .bind(first.clone())
                    .bind(second.clone())
                    .bind(campaign.clone())
                    .bind(totals.impressions)
                    .bind(totals.clicks);
            }
            query
                .execute(&mut *$tx)
                .await
                .context(concat!("upsert ", $table))?;
        }
    }};
}

fn count(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

#[derive(Clone, Debug)]
pub struct AnalyticsStore {
    database: Database,
}

impl AnalyticsStore {
    pub fn new(database: Database) -> Self {
        Self { database }
    }

    /// Records `entries` exactly once, in one transaction: new events go to
    /// the log (an event id already there is a duplicate and changes
    /// nothing), their totals to the aggregates, the counters forward.
    /// Clicks are attributed to their impression if it is known and inside
    /// `window_ms`; a click whose impression is not known yet is deferred
    /// for a while, then recorded as unattributed.
    pub async fn record(
        &self,
        entries: &[StreamEntry],
        window_ms: i64,
        now: i64,
    ) -> anyhow::Result<Recorded> {
        match self
            .record_once(entries, window_ms, now, Duplicates::Fail)
            .await
        {
            // A duplicate in the batch: nothing was written; again, skipping it.
            Err(error) if is_unique_violation(&error) => {
                self.record_once(entries, window_ms, now, Duplicates::Skip)
                    .await
            }
            recorded => recorded,
        }
    }

    async fn record_once(
        &self,
        entries: &[StreamEntry],
        window_ms: i64,
        now: i64,
        duplicates: Duplicates,
    ) -> anyhow::Result<Recorded> {
        let mut recorded = Recorded::default();
        let (mut impressions, mut clicks) = (Vec::new(), Vec::new());
        for entry in entries {
            match EventType::try_from(entry.event.event_type) {
                Ok(EventType::Impression) => impressions.push((entry, true)),
                Ok(EventType::Click) => clicks.push(entry),
                Ok(EventType::Unspecified) | Err(_) => recorded.unusable += 1,
            }
        }
        let offered = (impressions.len() + clicks.len()) as u64;
        let database = &self.database;
        on_pool!(database, pool => {
            let mut tx = pool.begin_write().await.context("begin analytics batch")?;
            let mut counted = Vec::new();

            // Impressions first, so clicks in the same batch find them.
            // An id listed twice in one batch is new once.
            let mut new_ids = tx.insert(&impressions, now, duplicates).await?;
            for (entry, _) in &impressions {
                if new_ids.take(&entry.event.event_id) {
                    counted.push(counted_event(entry, Kind::Impression, true));
                }
            }

            let impression_ids: Vec<&str> = clicks
                .iter()
                .map(|entry| entry.event.impression_id.as_str())
                .collect::<HashSet<_>>()
                .into_iter()
                .collect();
            let shown_at = tx.shown_at(&impression_ids).await?;
            let mut click_rows = Vec::with_capacity(clicks.len());
            for entry in &clicks {
                let event = &entry.event;
                let time = event_time(entry);
                match attribute(time, shown_at.get(&event.impression_id).copied(), window_ms) {
                    Attribution::Attributed => click_rows.push((*entry, true)),
                    Attribution::UnknownImpression if now - time < UNKNOWN_IMPRESSION_GRACE_MS => {
                        recorded.deferred.push(event.event_id.clone());
                    }
                    Attribution::UnknownImpression | Attribution::OutsideWindow => {
                        click_rows.push((*entry, false));
                    }
                }
            }
            let mut new_ids = tx.insert(&click_rows, now, duplicates).await?;
            for (entry, attributed) in &click_rows {
                if new_ids.take(&entry.event.event_id) {
                    counted.push(counted_event(entry, Kind::Click, *attributed));
                    if !attributed {
                        recorded.unattributed += 1;
                    }
                }
            }

            let deltas = aggregate(&counted);
            upsert_campaign_totals!(database, tx, "campaign_metrics_daily", "day", &deltas.campaign_daily);
            upsert_campaign_totals!(database, tx, "campaign_metrics_hourly", "hour", &deltas.campaign_hourly);
            upsert_ad_counts!(database, tx, "ad_metrics_hourly", "ad_id, hour",
                deltas.ad_hourly.iter().map(|((ad, hour), (campaign, totals))| (ad, hour, campaign, totals)));
            upsert_ad_counts!(database, tx, "ad_metrics_minute", "minute, ad_id",
                deltas.ad_minutely.iter().map(|((minute, ad), (campaign, totals))| (minute, ad, campaign, totals)));

            recorded.counted = counted.len() as u64;
            recorded.duplicates =
                offered - recorded.counted - recorded.deferred.len() as u64;
            let last_event_time = counted.iter().map(|event| event.time).max().unwrap_or(0);
            sqlx::query(
                "UPDATE analytics_ingest SET events_counted = events_counted + $1, \
                 duplicates_dropped = duplicates_dropped + $2, \
                 unattributed_clicks = unattributed_clicks + $3, \
                 last_event_time = CASE WHEN last_event_time > $4 THEN last_event_time ELSE $5 END \
                 WHERE id = 1",
            )
            .bind(recorded.counted as i64)
            .bind(recorded.duplicates as i64)
            .bind(recorded.unattributed as i64)
            .bind(last_event_time)
            .bind(last_event_time)
            .execute(&mut *tx)
            .await
            .context("ingest counters")?;
            tx.commit().await.context("commit analytics batch")?;
        });
        Ok(recorded)
    }

    /// Whether the campaign exists (or has figures: it may have been
    /// removed since).
    pub async fn campaign_known(&self, campaign_id: &str) -> anyhow::Result<bool> {
        let (found,): (i64,) = on_pool!(&self.database, pool =>
            sqlx::query_as(
                "SELECT (SELECT COUNT(*) FROM campaigns WHERE id = $1) \
                 + (SELECT COUNT(*) FROM campaign_metrics_daily WHERE campaign_id = $2)",
            )
            .bind(campaign_id)
            .bind(campaign_id)
            .fetch_one(pool)
            .await)
        .context("look up campaign")?;
        Ok(found > 0)
    }

    /// Daily totals of a campaign in `[start_day, end_day]` (days with no
    /// figures are absent).
    pub async fn campaign_days(
        &self,
        campaign_id: &str,
        start_day: i64,
        end_day: i64,
    ) -> anyhow::Result<Vec<(i64, Totals)>> {
        let rows: Vec<(i64, i64, i64, i64)> = on_pool!(&self.database, pool =>
            sqlx::query_as(
                "SELECT CAST(day AS BIGINT), impressions, clicks, spend FROM campaign_metrics_daily \
                 WHERE campaign_id = $1 AND day >= $2 AND day <= $3 ORDER BY day",
            )
            .bind(campaign_id)
            .bind(start_day)
            .bind(end_day)
            .fetch_all(pool)
            .await)
        .context("campaign days")?;
        Ok(rows
            .into_iter()
            .map(|(day, impressions, clicks, spend)| {
                (
                    day,
                    Totals {
                        impressions,
                        clicks,
                        spend,
                    },
                )
            })
            .collect())
    }

    /// Per-ad click and impression counts over rolling windows ending now:
    /// `since` (the timeframe), the last hour and the last day.
    pub async fn ad_figures(
        &self,
        ad_id: Option<&str>,
        since: i64,
        now: i64,
    ) -> anyhow::Result<Vec<AdFigures>> {
        // Clicks since `since`, in the last hour, in the last day;
        // impressions since `since`.
        let windows = [
            RollingWindow::new(since, now),
            RollingWindow::new(now - 3_600_000, now),
            RollingWindow::new(now - 86_400_000, now),
        ];
        let filter = if ad_id.is_some() {
            "AND ad_id = $1"
        } else {
            ""
        };
        let sums = |condition: &dyn Fn(&RollingWindow) -> String| {
            let [since, hour, day] = &windows;
            format!(
                "CASE WHEN {c0} THEN clicks ELSE 0 END AS c0, \
                 CASE WHEN {c1} THEN clicks ELSE 0 END AS c1, \
                 CASE WHEN {c2} THEN clicks ELSE 0 END AS c2, \
                 CASE WHEN {c0} THEN impressions ELSE 0 END AS i0",
                c0 = condition(since),
                c1 = condition(hour),
                c2 = condition(day),
            )
        };
        let first_hour = windows
            .iter()
            .map(|w| w.first_whole_hour)
            .min()
            .unwrap_or(0);
        let current_hour = windows[0].current_hour;
        let any_minute = windows
            .iter()
            .map(RollingWindow::minute_condition)
            .collect::<Vec<_>>()
            .join(" OR ");
        let sql = format!(
            "SELECT ad_id, CAST(SUM(c0) AS BIGINT), CAST(SUM(c1) AS BIGINT), \
             CAST(SUM(c2) AS BIGINT), CAST(SUM(i0) AS BIGINT) FROM ( \
             SELECT ad_id, {hourly} FROM ad_metrics_hourly \
             WHERE hour >= {first_hour} AND hour < {current_hour} {filter} \
             UNION ALL \
             SELECT ad_id, {minutely} FROM ad_metrics_minute WHERE ({any_minute}) {filter} \
             ) AS windows GROUP BY ad_id ORDER BY 2 DESC, ad_id LIMIT 1000",
            hourly = sums(&RollingWindow::hour_condition),
            minutely = sums(&RollingWindow::minute_condition),
        );
        let rows: Vec<(String, i64, i64, i64, i64)> = on_pool!(&self.database, pool => {
            let mut query = sqlx::query_as(&sql);
            if let Some(ad) = ad_id {
                query = query.bind(ad.to_string());
            }
            query.fetch_all(pool).await
        })
        .context("ad figures")?;
        Ok(rows
            .into_iter()
            .map(
                |(ad_id, clicks, last_hour, last_day, impressions)| AdFigures {
                    ad_id,
                    clicks: count(clicks),
                    last_hour: count(last_hour),
                    last_day: count(last_day),
                    impressions: count(impressions),
                },
            )
            .collect())
    }

    /// The top `limit` campaigns over `[start_day, end_day]`.
    pub async fn top_campaigns(
        &self,
        rank_by: RankBy,
        limit: u32,
        start_day: i64,
        end_day: i64,
    ) -> anyhow::Result<Vec<(String, Totals)>> {
        let order = match rank_by {
            RankBy::Spend => "CAST(SUM(spend) AS BIGINT)",
            RankBy::Clicks => "CAST(SUM(clicks) AS BIGINT)",
            RankBy::Ctr => {
                "CASE WHEN SUM(impressions) = 0 THEN 0.0 \
                 ELSE CAST(SUM(clicks) AS DOUBLE PRECISION) / CAST(SUM(impressions) AS DOUBLE PRECISION) END"
            }
        };
        let sql = format!(
            "SELECT campaign_id, CAST(SUM(impressions) AS BIGINT), CAST(SUM(clicks) AS BIGINT), \
             CAST(SUM(spend) AS BIGINT) FROM campaign_metrics_daily \
             WHERE day >= $1 AND day <= $2 GROUP BY campaign_id \
             ORDER BY {order} DESC, campaign_id LIMIT $3"
        );
        let rows: Vec<(String, i64, i64, i64)> = on_pool!(&self.database, pool =>
            sqlx::query_as(&sql)
                .bind(start_day)
                .bind(end_day)
                .bind(i64::from(limit))
                .fetch_all(pool)
                .await)
        .context("top campaigns")?;
        Ok(rows
            .into_iter()
            .map(|(campaign, impressions, clicks, spend)| {
                (
                    campaign,
                    Totals {
                        impressions,
                        clicks,
                        spend,
                    },
                )
            })
            .collect())
    }

    pub async fn counters(&self) -> anyhow::Result<IngestCounters> {
        let row: Option<(i64, i64, i64, i64)> = on_pool!(&self.database, pool =>
            sqlx::query_as(
                "SELECT events_counted, duplicates_dropped, unattributed_clicks, last_event_time \
                 FROM analytics_ingest WHERE id = 1",
            )
            .fetch_optional(pool)
            .await)
        .context("ingest counters")?;
        Ok(row
            .map(|(counted, duplicates, unattributed, last)| IngestCounters {
                events_counted: count(counted),
                duplicates_dropped: count(duplicates),
                unattributed_clicks: count(unattributed),
                last_event_time: last,
            })
            .unwrap_or_default())
    }

    /// Drops logged events older than `before` (their totals stay in the
    /// aggregates) and minute rows older than any rolling window reads;
    /// answers how many events.
    pub async fn prune(&self, before: i64, now: i64) -> anyhow::Result<u64> {
        let oldest_minute = admesh_common::time::utc_minute(now - MINUTE_ROWS_KEPT_MS);
        let deleted = on_pool!(&self.database, pool => {
            sqlx::query("DELETE FROM ad_metrics_minute WHERE minute < $1")
                .bind(oldest_minute)
                .execute(pool)
                .await
                .context("prune minute aggregates")?;
            sqlx::query("DELETE FROM events_log WHERE event_time < $1")
                .bind(before)
                .execute(pool)
                .await
                .map(|done| done.rows_affected())
        })
        .context("prune events log")?;
        Ok(deleted)
    }
}

fn counted_event(entry: &StreamEntry, kind: Kind, attributed: bool) -> Counted {
    Counted {
        kind,
        time: event_time(entry),
        campaign_id: entry.event.campaign_id.clone(),
        ad_id: entry.event.ad_id.clone(),
        spend: entry.event.spend,
        attributed,
    }
}
