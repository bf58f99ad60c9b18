//! The analytics tables in SQL (SQLite or PostgreSQL, same queries): the
//! de-duplication log, the aggregates, the consumer's counters.

use std::collections::{HashMap, HashSet};

use admesh_common::{Database, db::statement_chunks, events::StreamEntry, on_pool};
use admesh_proto::{analytics::v1::EventType, common::v1::DeviceType};
use anyhow::Context;

use crate::aggregate::{Attribution, Counted, Kind, Totals, aggregate, attribute};

/// How long a click whose impression is not counted yet waits for it (its
/// impression may be in a batch another replica is writing) before it is
/// recorded as unattributed.
pub const UNKNOWN_IMPRESSION_GRACE_MS: i64 = 30_000;

/// What recording a batch did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Recorded {
    pub counted: u64,
    pub duplicates: u64,
    pub unattributed: u64,
    /// Events of no known type: acknowledged, never counted.
    pub unusable: u64,
    /// Entries to try again later (clicks waiting for their impression):
    /// not recorded, not to be acknowledged yet.
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

const LOG_COLUMNS: &str = "event_id, event_type, event_time, campaign_id, ad_id, user_id, \
    placement_id, impression_id, bid_price, spend, country_code, device_type, attributed, ingested_at";
const LOG_COLUMN_COUNT: usize = 14;

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

/// Inserts log rows `(entry, attributed)` on `$tx`; evaluates to the ids
/// that were new (a duplicate id inserts nothing).
macro_rules! insert_log {
    ($database:expr, $tx:expr, $rows:expr, $now:expr) => {{
        let rows: &[(&StreamEntry, bool)] = $rows;
        let mut new_ids: HashSet<String> = HashSet::with_capacity(rows.len());
        for chunk in statement_chunks(rows) {
            let sql = format!(
                "INSERT INTO events_log ({LOG_COLUMNS}) VALUES {} \
                 ON CONFLICT (event_id) DO NOTHING RETURNING event_id",
                $database.values_placeholders(chunk.len(), LOG_COLUMN_COUNT)
            );
            let mut query = sqlx::query_as::<_, (String,)>(&sql);
            for (entry, attributed) in chunk {
                let event = &entry.event;
                query = query
                    .bind(event.event_id.clone())
                    .bind(event_kind(event))
                    .bind(event_time(entry))
                    .bind(event.campaign_id.clone())
                    .bind(event.ad_id.clone())
                    .bind(event.user_id.clone())
                    .bind(event.placement_id.clone())
                    .bind(event.impression_id.clone())
                    .bind(event.bid_price)
                    .bind(event.spend)
                    .bind(event.country_code.clone())
                    .bind(device_name(event))
                    .bind(*attributed)
                    .bind($now);
            }
            for (id,) in query
                .fetch_all(&mut *$tx)
                .await
                .context("insert events log")?
            {
                new_ids.insert(id);
            }
        }
        new_ids
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
        let mut recorded = Recorded::default();
        let (mut impressions, mut clicks) = (Vec::new(), Vec::new());
        for entry in entries {
            match EventType::try_from(entry.event.event_type) {
                Ok(EventType::Impression) => impressions.push(entry),
                Ok(EventType::Click) => clicks.push(entry),
                Ok(EventType::Unspecified) | Err(_) => recorded.unusable += 1,
            }
        }
        let offered = (impressions.len() + clicks.len()) as u64;
        let database = &self.database;
        on_pool!(database, pool => {
            let mut tx = pool.begin().await.context("begin analytics batch")?;
            let mut counted = Vec::new();

            // Impressions first, so clicks in the same batch find them.
            let rows: Vec<(&StreamEntry, bool)> =
                impressions.iter().map(|entry| (*entry, true)).collect();
            // An id listed twice in one batch is new once.
            let mut new_ids = insert_log!(database, tx, &rows, now);
            for entry in &impressions {
                if new_ids.remove(&entry.event.event_id) {
                    counted.push(counted_event(entry, Kind::Impression, true));
                }
            }

            let impression_ids: Vec<String> = clicks
                .iter()
                .map(|entry| entry.event.impression_id.clone())
                .collect::<HashSet<_>>()
                .into_iter()
                .collect();
            let mut shown_at: HashMap<String, i64> = HashMap::new();
            for chunk in statement_chunks(&impression_ids) {
                let sql = format!(
                    "SELECT impression_id, event_time FROM events_log \
                     WHERE event_type = 'impression' AND impression_id IN {}",
                    database.values_placeholders(1, chunk.len())
                );
                let mut query = sqlx::query_as::<_, (String, i64)>(&sql);
                for id in chunk {
                    query = query.bind(id.clone());
                }
                for (id, time) in query.fetch_all(&mut *tx).await.context("find impressions")? {
                    shown_at.insert(id, time);
                }
            }
            let mut click_rows = Vec::with_capacity(clicks.len());
            for entry in &clicks {
                let event = &entry.event;
                let time = event_time(entry);
                match attribute(time, shown_at.get(&event.impression_id).copied(), window_ms) {
                    Attribution::Attributed => click_rows.push((*entry, true)),
                    Attribution::UnknownImpression if now - time < UNKNOWN_IMPRESSION_GRACE_MS => {
                        recorded.deferred.push(entry.id.clone());
                    }
                    Attribution::UnknownImpression | Attribution::OutsideWindow => {
                        click_rows.push((*entry, false));
                    }
                }
            }
            let mut new_ids = insert_log!(database, tx, &click_rows, now);
            for (entry, attributed) in &click_rows {
                if new_ids.remove(&entry.event.event_id) {
                    counted.push(counted_event(entry, Kind::Click, *attributed));
                    if !attributed {
                        recorded.unattributed += 1;
                    }
                }
            }

            let deltas = aggregate(&counted);
            upsert_campaign_totals!(database, tx, "campaign_metrics_daily", "day", &deltas.campaign_daily);
            upsert_campaign_totals!(database, tx, "campaign_metrics_hourly", "hour", &deltas.campaign_hourly);
            let ads: Vec<_> = deltas.ad_hourly.iter().collect();
            for chunk in statement_chunks(&ads) {
                let sql = format!(
                    "INSERT INTO ad_metrics_hourly (ad_id, hour, campaign_id, impressions, clicks) \
                     VALUES {} ON CONFLICT (ad_id, hour) DO UPDATE SET \
                     impressions = ad_metrics_hourly.impressions + excluded.impressions, \
                     clicks = ad_metrics_hourly.clicks + excluded.clicks",
                    database.values_placeholders(chunk.len(), 5)
                );
                let mut query = sqlx::query(&sql);
                for ((ad, hour), (campaign, totals)) in chunk {
                    query = query
                        .bind(ad.clone())
                        .bind(*hour)
                        .bind(campaign.clone())
                        .bind(totals.impressions)
                        .bind(totals.clicks);
                }
                query.execute(&mut *tx).await.context("ad aggregates")?;
            }

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
        let hour_ago = now - 3_600_000;
        let day_ago = now - 86_400_000;
        let from = since.min(day_ago);
        let filter = if ad_id.is_some() {
            "AND ad_id = $6"
        } else {
            ""
        };
        let sql = format!(
            "SELECT ad_id, \
             COALESCE(SUM(CASE WHEN event_type = 'click' AND attributed AND event_time >= $1 THEN 1 ELSE 0 END), 0), \
             COALESCE(SUM(CASE WHEN event_type = 'click' AND attributed AND event_time >= $2 THEN 1 ELSE 0 END), 0), \
             COALESCE(SUM(CASE WHEN event_type = 'click' AND attributed AND event_time >= $3 THEN 1 ELSE 0 END), 0), \
             COALESCE(SUM(CASE WHEN event_type = 'impression' AND event_time >= $4 THEN 1 ELSE 0 END), 0) \
             FROM events_log WHERE event_time >= $5 {filter} \
             GROUP BY ad_id ORDER BY 2 DESC, ad_id LIMIT 1000"
        );
        let rows: Vec<(String, i64, i64, i64, i64)> = on_pool!(&self.database, pool => {
            let mut query = sqlx::query_as(&sql)
                .bind(since)
                .bind(hour_ago)
                .bind(day_ago)
                .bind(since)
                .bind(from);
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
    /// aggregates); answers how many.
    pub async fn prune(&self, before: i64) -> anyhow::Result<u64> {
        let deleted = on_pool!(&self.database, pool =>
            sqlx::query("DELETE FROM events_log WHERE event_time < $1")
                .bind(before)
                .execute(pool)
                .await
                .map(|done| done.rows_affected()))
        .context("prune events log")?;
        Ok(deleted)
    }
}

fn event_time(entry: &StreamEntry) -> i64 {
    entry
        .event
        .time
        .as_ref()
        .map(admesh_common::time::millis_of)
        .unwrap_or(0)
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

fn event_kind(event: &admesh_proto::analytics::v1::AdEvent) -> &'static str {
    if event.event_type == EventType::Click as i32 {
        "click"
    } else {
        "impression"
    }
}

fn device_name(event: &admesh_proto::analytics::v1::AdEvent) -> &'static str {
    DeviceType::try_from(event.device_type)
        .map(|device| device.as_str_name())
        .unwrap_or("DEVICE_TYPE_UNSPECIFIED")
}
