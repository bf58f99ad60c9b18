//! The de-duplication log: one row per counted event, keyed by event id.
//! Inserting an id that is already there is how a duplicate is detected.
//!
//! The two dialects write it differently. PostgreSQL takes a whole batch in
//! one `INSERT … SELECT FROM UNNEST(arrays)` statement and, on the first try,
//! without `ON CONFLICT`: a plain insert costs a third as much, and a
//! duplicate (rare: only redelivery makes one) fails the transaction with a
//! unique violation, after which the caller records the batch again with
//! [`Duplicates::Skip`]. SQLite inserts multi-row `VALUES` statements that
//! skip duplicates, the cheap way there.

use std::collections::{HashMap, HashSet};

use admesh_common::{db::statement_chunks, events::StreamEntry, time::millis_of};
use admesh_proto::{analytics::v1::EventType, common::v1::DeviceType};
use anyhow::Context;
use sqlx::{PgConnection, SqliteConnection};

/// How a batch treats ids already in the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Duplicates {
    /// Every id is taken to be new; one that is not fails the statement
    /// with a unique violation ([`is_unique_violation`]).
    Fail,
    /// Ids already there are skipped.
    Skip,
}

/// Which of the inserted rows were new.
#[derive(Debug)]
pub enum Inserted {
    /// Every row ([`Duplicates::Fail`] succeeded).
    All,
    /// The ids of the new rows.
    Only(HashSet<String>),
}

impl Inserted {
    /// Whether `id` was new; an id listed twice in a batch is new once.
    pub fn take(&mut self, id: &str) -> bool {
        match self {
            Self::All => true,
            Self::Only(ids) => ids.remove(id),
        }
    }
}

/// Whether `error` is a unique-key violation (a duplicate under
/// [`Duplicates::Fail`]).
pub fn is_unique_violation(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<sqlx::Error>()
            .and_then(|error| error.as_database_error())
            .is_some_and(|error| error.is_unique_violation())
    })
}

const COLUMNS: &str = "event_id, event_type, event_time, campaign_id, ad_id, user_id, \
    placement_id, impression_id, bid_price, spend, country_code, device_type, attributed, ingested_at";
const COLUMN_COUNT: usize = 14;

/// The log on one connection (of either dialect), inside the caller's
/// transaction.
pub trait EventLog {
    /// Inserts `(entry, attributed)` rows; answers which were new.
    async fn insert(
        &mut self,
        rows: &[(&StreamEntry, bool)],
        now: i64,
        duplicates: Duplicates,
    ) -> anyhow::Result<Inserted>;

    /// When each of `impression_ids` was shown, for those in the log.
    async fn shown_at(&mut self, impression_ids: &[&str]) -> anyhow::Result<HashMap<String, i64>>;
}

impl EventLog for PgConnection {
    async fn insert(
        &mut self,
        rows: &[(&StreamEntry, bool)],
        now: i64,
        duplicates: Duplicates,
    ) -> anyhow::Result<Inserted> {
        if rows.is_empty() {
            return Ok(Inserted::All);
        }
        let events = || rows.iter().map(|(entry, _)| &entry.event);
        let texts = |field: fn(&admesh_proto::analytics::v1::AdEvent) -> &str| -> Vec<&str> {
            events().map(field).collect()
        };
        let sql = format!(
            "INSERT INTO events_log ({COLUMNS}) SELECT *, $14::int8 FROM UNNEST(\
             $1::text[], $2::text[], $3::int8[], $4::text[], $5::text[], $6::text[], $7::text[], \
             $8::text[], $9::int8[], $10::int8[], $11::text[], $12::text[], $13::bool[]){}",
            match duplicates {
                Duplicates::Fail => "",
                Duplicates::Skip => " ON CONFLICT (event_id) DO NOTHING RETURNING event_id",
            }
        );
        let query = sqlx::query_scalar::<_, String>(&sql)
            .bind(texts(|event| &event.event_id))
            .bind(events().map(event_kind).collect::<Vec<_>>())
            .bind(
                rows.iter()
                    .map(|(entry, _)| event_time(entry))
                    .collect::<Vec<_>>(),
            )
            .bind(texts(|event| &event.campaign_id))
            .bind(texts(|event| &event.ad_id))
            .bind(texts(|event| &event.user_id))
            .bind(texts(|event| &event.placement_id))
            .bind(texts(|event| &event.impression_id))
            .bind(events().map(|event| event.bid_price).collect::<Vec<_>>())
            .bind(events().map(|event| event.spend).collect::<Vec<_>>())
            .bind(texts(|event| &event.country_code))
            .bind(events().map(device_name).collect::<Vec<_>>())
            .bind(
                rows.iter()
                    .map(|(_, attributed)| *attributed)
                    .collect::<Vec<_>>(),
            )
            .bind(now);
        let new_ids = query
            .fetch_all(&mut *self)
            .await
            .context("insert events log")?;
        Ok(match duplicates {
            Duplicates::Fail => Inserted::All,
            Duplicates::Skip => Inserted::Only(new_ids.into_iter().collect()),
        })
    }

    async fn shown_at(&mut self, impression_ids: &[&str]) -> anyhow::Result<HashMap<String, i64>> {
        if impression_ids.is_empty() {
            return Ok(HashMap::new());
        }
        // The ad-server's impressions carry their impression id as event id:
        // the primary key finds them.
        // (A lookup per id, by index, whatever the planner thinks of the
        // table's size: with an `= ANY` list it picks a sequential scan of a
        // freshly grown log.)
        let mut shown: HashMap<String, i64> = sqlx::query_as::<_, (String, i64)>(
            "SELECT wanted.id, found.event_time FROM UNNEST($1::text[]) AS wanted(id) \
             CROSS JOIN LATERAL (SELECT event_time FROM events_log \
             WHERE event_id = wanted.id AND event_type = 'impression' LIMIT 1) AS found",
        )
        .bind(impression_ids)
        .fetch_all(&mut *self)
        .await
        .context("find impressions")?
        .into_iter()
        .collect();
        let others: Vec<&str> = impression_ids
            .iter()
            .copied()
            .filter(|id| !shown.contains_key(*id))
            .collect();
        if !others.is_empty() {
            // Impressions from other publishers, by the partial index.
            shown.extend(
                sqlx::query_as::<_, (String, i64)>(
                    "SELECT wanted.id, found.event_time FROM UNNEST($1::text[]) AS wanted(id) \
                     CROSS JOIN LATERAL (SELECT event_time FROM events_log \
                     WHERE impression_id = wanted.id AND event_type = 'impression' \
                     AND impression_id <> event_id LIMIT 1) AS found",
                )
                .bind(&others)
                .fetch_all(&mut *self)
                .await
                .context("find impressions")?,
            );
        }
        Ok(shown)
    }
}

impl EventLog for SqliteConnection {
    async fn insert(
        &mut self,
        rows: &[(&StreamEntry, bool)],
        now: i64,
        _duplicates: Duplicates,
    ) -> anyhow::Result<Inserted> {
        let mut new_ids = HashSet::with_capacity(rows.len());
        for chunk in statement_chunks(rows) {
            let sql = format!(
                "INSERT INTO events_log ({COLUMNS}) VALUES {} \
                 ON CONFLICT (event_id) DO NOTHING RETURNING event_id",
                admesh_common::db::anonymous_placeholders(chunk.len(), COLUMN_COUNT)
            );
            let mut query = sqlx::query_scalar::<_, String>(&sql);
            for (entry, attributed) in chunk {
                let event = &entry.event;
                query = query
                    .bind(event.event_id.as_str())
                    .bind(event_kind(event))
                    .bind(event_time(entry))
                    .bind(event.campaign_id.as_str())
                    .bind(event.ad_id.as_str())
                    .bind(event.user_id.as_str())
                    .bind(event.placement_id.as_str())
                    .bind(event.impression_id.as_str())
                    .bind(event.bid_price)
                    .bind(event.spend)
                    .bind(event.country_code.as_str())
                    .bind(device_name(event))
                    .bind(*attributed)
                    .bind(now);
            }
            new_ids.extend(
                query
                    .fetch_all(&mut *self)
                    .await
                    .context("insert events log")?,
            );
        }
        Ok(Inserted::Only(new_ids))
    }

    async fn shown_at(&mut self, impression_ids: &[&str]) -> anyhow::Result<HashMap<String, i64>> {
        let mut shown = HashMap::new();
        for chunk in statement_chunks(impression_ids) {
            let list = admesh_common::db::anonymous_placeholders(1, chunk.len());
            let sql = format!(
                "SELECT event_id, event_time FROM events_log \
                 WHERE event_type = 'impression' AND event_id IN {list} \
                 UNION ALL SELECT impression_id, event_time FROM events_log \
                 WHERE event_type = 'impression' AND impression_id <> event_id \
                 AND impression_id IN {list}"
            );
            let mut query = sqlx::query_as::<_, (String, i64)>(&sql);
            for _ in 0..2 {
                for id in chunk {
                    query = query.bind(*id);
                }
            }
            shown.extend(
                query
                    .fetch_all(&mut *self)
                    .await
                    .context("find impressions")?,
            );
        }
        Ok(shown)
    }
}

/// When the event happened (unix ms; 0 when it carries no time).
pub fn event_time(entry: &StreamEntry) -> i64 {
    entry.event.time.as_ref().map(millis_of).unwrap_or(0)
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
