//! Jobs, their audit trail and the live settings in SQL — the same queries
//! on SQLite (embedded) and PostgreSQL (cluster). Writes are whole-row
//! upserts that keep the highest `version`, so batches may be merged and
//! replayed without moving a job backwards.

use admesh_common::{Database, db::statement_chunks, on_pool};
use anyhow::Context;
use sqlx::FromRow;

use crate::{
    analysis::Analysis,
    job::{Job, JobStatus},
    settings::QueueSettings,
};

/// One state change of a job, for the audit trail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobEvent {
    pub ad_id: String,
    /// "submitted", "leased", "progress", "completed", …
    pub kind: &'static str,
    pub status: JobStatus,
    pub attempt: u32,
    /// Who or what caused it: a processor id, "api", "lease_expiry"…
    pub cause: String,
    pub detail: String,
    pub time: i64,
}

impl JobEvent {
    pub fn of(job: &Job, kind: &'static str, cause: &str, detail: String, time: i64) -> Self {
        Self {
            ad_id: job.id.clone(),
            kind,
            status: job.status,
            attempt: job.attempt,
            cause: cause.to_string(),
            detail,
            time,
        }
    }
}

/// A stored audit event, as read back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredJobEvent {
    pub ad_id: String,
    pub kind: String,
    pub status: JobStatus,
    pub attempt: u32,
    pub cause: String,
    pub detail: String,
    pub time: i64,
}

/// Changes to write in one transaction.
#[derive(Debug, Default)]
pub struct WriteBatch {
    pub jobs: Vec<Job>,
    pub events: Vec<JobEvent>,
}

impl WriteBatch {
    pub fn is_empty(&self) -> bool {
        self.jobs.is_empty() && self.events.is_empty()
    }

    /// Adds a transition: the changed job and its audit events.
    pub fn push(&mut self, (job, events): (Job, Vec<JobEvent>)) {
        self.jobs.push(job);
        self.events.extend(events);
    }

    /// Appends `other`.
    pub fn extend(&mut self, other: WriteBatch) {
        self.jobs.extend(other.jobs);
        self.events.extend(other.events);
    }

    /// Keeps one row per job, its newest version (a multi-row upsert may not
    /// touch a row twice).
    fn dedup_jobs(&mut self) {
        use std::collections::hash_map::Entry;
        let mut newest: std::collections::HashMap<String, Job> =
            std::collections::HashMap::with_capacity(self.jobs.len());
        for job in self.jobs.drain(..) {
            match newest.entry(job.id.clone()) {
                Entry::Occupied(mut slot) => {
                    if slot.get().version < job.version {
                        slot.insert(job);
                    }
                }
                Entry::Vacant(slot) => {
                    slot.insert(job);
                }
            }
        }
        self.jobs = newest.into_values().collect();
    }
}

/// Filters of a job listing (SQL side).
#[derive(Clone, Debug, Default)]
pub struct JobFilter {
    pub status: Option<JobStatus>,
    pub game_family: Option<String>,
    pub priority: Option<u8>,
    /// Queued before this time (unix ms).
    pub queued_before: Option<i64>,
}

impl JobFilter {
    /// A queued job the filters (other than status) match.
    pub fn matches_queued(&self, job: &Job) -> bool {
        job.status == JobStatus::Queued
            && self
                .game_family
                .as_ref()
                .is_none_or(|family| &job.game_family == family)
            && self
                .priority
                .is_none_or(|priority| job.priority == priority)
            && self
                .queued_before
                .is_none_or(|before| job.queued_at < before)
    }
}

/// Counts of one (game family, status) group.
#[derive(Clone, Debug, PartialEq)]
pub struct FamilyStatusCount {
    pub game_family: String,
    pub status: JobStatus,
    pub count: u64,
    /// Mean quality score of the group's analysed jobs.
    pub average_quality: Option<f64>,
}

const JOB_COLUMNS: &str = "id, title, description, game_family, target_audience, visual_elements, \
     call_to_action, duration, priority, max_wait_time, status, attempt, version, created_at, \
     queued_at, processing_started_at, processed_at, not_before, updated_at, progress, \
     progress_message, analysis, last_error, lease_id, lease_expires_at, processor_id, quality_score";
const JOB_COLUMN_COUNT: usize = 27;
const EVENT_COLUMN_COUNT: usize = 7;

#[derive(FromRow)]
struct JobRow {
    id: String,
    title: String,
    description: String,
    game_family: String,
    target_audience: String,
    visual_elements: String,
    call_to_action: String,
    duration: i32,
    priority: i32,
    max_wait_time: i32,
    status: String,
    attempt: i32,
    version: i64,
    created_at: i64,
    queued_at: i64,
    processing_started_at: Option<i64>,
    processed_at: Option<i64>,
    not_before: Option<i64>,
    updated_at: i64,
    progress: i32,
    progress_message: String,
    analysis: Option<String>,
    last_error: String,
    lease_id: Option<String>,
    lease_expires_at: Option<i64>,
    processor_id: Option<String>,
}

impl JobRow {
    fn into_job(self) -> anyhow::Result<Job> {
        let status = JobStatus::parse(&self.status)
            .with_context(|| format!("job {}: unknown status {:?}", self.id, self.status))?;
        let analysis = match &self.analysis {
            Some(text) => Some(
                serde_json::from_str::<Analysis>(text)
                    .with_context(|| format!("job {}: unreadable analysis", self.id))?,
            ),
            None => None,
        };
        Ok(Job {
            target_audience: serde_json::from_str(&self.target_audience).unwrap_or_default(),
            visual_elements: serde_json::from_str(&self.visual_elements).unwrap_or_default(),
            id: self.id,
            title: self.title,
            description: self.description,
            game_family: self.game_family,
            call_to_action: self.call_to_action,
            duration: u32::try_from(self.duration).unwrap_or(0),
            priority: u8::try_from(self.priority).unwrap_or(1),
            max_wait_secs: u32::try_from(self.max_wait_time).unwrap_or(1),
            status,
            attempt: u32::try_from(self.attempt).unwrap_or(0),
            version: self.version,
            created_at: self.created_at,
            queued_at: self.queued_at,
            processing_started_at: self.processing_started_at,
            processed_at: self.processed_at,
            not_before: self.not_before,
            updated_at: self.updated_at,
            progress: u32::try_from(self.progress).unwrap_or(0),
            progress_message: self.progress_message,
            analysis,
            last_error: self.last_error,
            lease_id: self.lease_id,
            lease_expires_at: self.lease_expires_at,
            processor_id: self.processor_id,
        })
    }
}

#[derive(FromRow)]
struct EventRow {
    ad_id: String,
    kind: String,
    status: String,
    attempt: i32,
    cause: String,
    detail: String,
    created_at: i64,
}

#[derive(FromRow)]
struct SettingsRow {
    anti_starvation_enabled: bool,
    default_max_wait_time: i32,
    worker_count: i32,
    batch_size: i32,
    lease_timeout_seconds: i32,
    max_attempts: i32,
}

#[derive(FromRow)]
struct FamilyRow {
    game_family: String,
    status: String,
    jobs: i64,
    average_quality: Option<f64>,
}

/// Binds one job's columns in [`JOB_COLUMNS`] order.
macro_rules! bind_job {
    ($query:expr, $job:expr) => {{
        let job: &Job = $job;
        $query
            .bind(job.id.clone())
            .bind(job.title.clone())
            .bind(job.description.clone())
            .bind(job.game_family.clone())
            .bind(serde_json::to_string(&job.target_audience).unwrap_or_else(|_| "[]".into()))
            .bind(serde_json::to_string(&job.visual_elements).unwrap_or_else(|_| "[]".into()))
            .bind(job.call_to_action.clone())
            .bind(i32::try_from(job.duration).unwrap_or(i32::MAX))
            .bind(i32::from(job.priority))
            .bind(i32::try_from(job.max_wait_secs).unwrap_or(i32::MAX))
            .bind(job.status.as_str())
            .bind(i32::try_from(job.attempt).unwrap_or(i32::MAX))
            .bind(job.version)
            .bind(job.created_at)
            .bind(job.queued_at)
            .bind(job.processing_started_at)
            .bind(job.processed_at)
            .bind(job.not_before)
            .bind(job.updated_at)
            .bind(i32::try_from(job.progress).unwrap_or(100))
            .bind(job.progress_message.clone())
            .bind(
                job.analysis
                    .as_ref()
                    .and_then(|analysis| serde_json::to_string(analysis).ok()),
            )
            .bind(job.last_error.clone())
            .bind(job.lease_id.clone())
            .bind(job.lease_expires_at)
            .bind(job.processor_id.clone())
            .bind(
                job.analysis
                    .as_ref()
                    .map(|analysis| i32::try_from(analysis.quality_score).unwrap_or(0)),
            )
    }};
}

/// The SQL side of the queue.
#[derive(Clone, Debug)]
pub struct JobRecords {
    database: Database,
}

impl JobRecords {
    pub fn new(database: Database) -> Self {
        Self { database }
    }

    /// Writes `batch` in one transaction.
    /// Merges rows of the same job first (so a failed batch can be kept and
    /// written again with later changes).
    pub async fn write(&self, batch: &mut WriteBatch) -> anyhow::Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        batch.dedup_jobs();
        let upsert_tail = upsert_assignments();
        if let Database::Postgres(pool) = &self.database {
            return write_postgres(pool, batch, &upsert_tail).await;
        }
        on_pool!(&self.database, pool => {
            let mut transaction = pool.begin().await.context("begin job write")?;
            for chunk in statement_chunks(&batch.jobs) {
                let sql = format!(
                    "INSERT INTO ad_jobs ({JOB_COLUMNS}) VALUES {} {upsert_tail}",
                    self.database.values_placeholders(chunk.len(), JOB_COLUMN_COUNT)
                );
                let mut query = sqlx::query(&sql);
                for job in chunk {
                    query = bind_job!(query, job);
                }
                query.execute(&mut *transaction).await.context("upsert jobs")?;
            }
            for chunk in statement_chunks(&batch.events) {
                let sql = format!(
                    "INSERT INTO job_events (ad_id, kind, status, attempt, cause, detail, created_at) VALUES {}",
                    self.database.values_placeholders(chunk.len(), EVENT_COLUMN_COUNT)
                );
                let mut query = sqlx::query(&sql);
                for event in chunk {
                    query = query
                        .bind(event.ad_id.clone())
                        .bind(event.kind)
                        .bind(event.status.as_str())
                        .bind(i32::try_from(event.attempt).unwrap_or(i32::MAX))
                        .bind(event.cause.clone())
                        .bind(event.detail.clone())
                        .bind(event.time);
                }
                query.execute(&mut *transaction).await.context("insert job events")?;
            }
            transaction.commit().await.context("commit job write")
        })
    }

    /// Queued and processing jobs (what an embedded queue reloads at start).
    pub async fn load_active(&self) -> anyhow::Result<Vec<Job>> {
        let sql =
            format!("SELECT {JOB_COLUMNS} FROM ad_jobs WHERE status IN ('queued', 'processing')");
        let rows: Vec<JobRow> = on_pool!(&self.database, pool =>
            sqlx::query_as(&sql).fetch_all(pool).await)
        .context("load active jobs")?;
        rows.into_iter().map(JobRow::into_job).collect()
    }

    pub async fn get(&self, id: &str) -> anyhow::Result<Option<Job>> {
        let sql = format!("SELECT {JOB_COLUMNS} FROM ad_jobs WHERE id = $1");
        let row: Option<JobRow> = on_pool!(&self.database, pool =>
            sqlx::query_as(&sql).bind(id).fetch_optional(pool).await)
        .context("get job")?;
        row.map(JobRow::into_job).transpose()
    }

    pub async fn get_many(&self, ids: &[String]) -> anyhow::Result<Vec<Job>> {
        let mut jobs = Vec::with_capacity(ids.len());
        for chunk in statement_chunks(ids) {
            let placeholders = (1..=chunk.len())
                .map(|n| format!("${n}"))
                .collect::<Vec<_>>()
                .join(", ");
            let sql = format!("SELECT {JOB_COLUMNS} FROM ad_jobs WHERE id IN ({placeholders})");
            let rows: Vec<JobRow> = on_pool!(&self.database, pool => {
                let mut query = sqlx::query_as(&sql);
                for id in chunk {
                    query = query.bind(id.clone());
                }
                query.fetch_all(pool).await
            })
            .context("get jobs")?;
            for row in rows {
                jobs.push(row.into_job()?);
            }
        }
        Ok(jobs)
    }

    /// Jobs matching `filter`, newest first, and how many match in all.
    pub async fn list(
        &self,
        filter: &JobFilter,
        offset: u64,
        limit: u64,
    ) -> anyhow::Result<(Vec<Job>, u64)> {
        let mut conditions = Vec::new();
        let mut next = 1;
        let mut placeholder = || {
            let text = format!("${next}");
            next += 1;
            text
        };
        if filter.status.is_some() {
            conditions.push(format!("status = {}", placeholder()));
        }
        if filter.game_family.is_some() {
            conditions.push(format!("game_family = {}", placeholder()));
        }
        if filter.priority.is_some() {
            conditions.push(format!("priority = {}", placeholder()));
        }
        if filter.queued_before.is_some() {
            conditions.push(format!(
                "status = 'queued' AND queued_at < {}",
                placeholder()
            ));
        }
        let condition = if conditions.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", conditions.join(" AND "))
        };
        let page = format!("LIMIT {} OFFSET {}", placeholder(), placeholder());
        let rows_sql = format!(
            "SELECT {JOB_COLUMNS} FROM ad_jobs {condition} ORDER BY created_at DESC, id DESC {page}"
        );
        let count_sql = format!("SELECT COUNT(*) FROM ad_jobs {condition}");
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let offset = i64::try_from(offset).unwrap_or(i64::MAX);
        macro_rules! bind_filter {
            ($query:expr) => {{
                let mut query = $query;
                if let Some(status) = filter.status {
                    query = query.bind(status.as_str());
                }
                if let Some(family) = &filter.game_family {
                    query = query.bind(family.clone());
                }
                if let Some(priority) = filter.priority {
                    query = query.bind(i32::from(priority));
                }
                if let Some(before) = filter.queued_before {
                    query = query.bind(before);
                }
                query
            }};
        }
        let (rows, total): (Vec<JobRow>, i64) = on_pool!(&self.database, pool => {
            let rows = bind_filter!(sqlx::query_as(&rows_sql))
                .bind(limit)
                .bind(offset)
                .fetch_all(pool)
                .await?;
            let (total,): (i64,) = bind_filter!(sqlx::query_as(&count_sql)).fetch_one(pool).await?;
            Ok::<_, sqlx::Error>((rows, total))
        })
        .context("list jobs")?;
        let jobs = rows
            .into_iter()
            .map(JobRow::into_job)
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok((jobs, u64::try_from(total).unwrap_or(0)))
    }

    /// The audit trail of one job, oldest first.
    pub async fn events(&self, id: &str) -> anyhow::Result<Vec<StoredJobEvent>> {
        let rows: Vec<EventRow> = on_pool!(&self.database, pool =>
            sqlx::query_as(
                "SELECT ad_id, kind, status, attempt, cause, detail, created_at \
                 FROM job_events WHERE ad_id = $1 ORDER BY id",
            )
            .bind(id)
            .fetch_all(pool)
            .await)
        .context("list job events")?;
        Ok(rows
            .into_iter()
            .map(|row| StoredJobEvent {
                status: JobStatus::parse(&row.status).unwrap_or(JobStatus::Queued),
                ad_id: row.ad_id,
                kind: row.kind,
                attempt: u32::try_from(row.attempt).unwrap_or(0),
                cause: row.cause,
                detail: row.detail,
                time: row.created_at,
            })
            .collect())
    }

    /// Job counts by game family and status, with mean quality.
    pub async fn family_counts(&self) -> anyhow::Result<Vec<FamilyStatusCount>> {
        let rows: Vec<FamilyRow> = on_pool!(&self.database, pool =>
            sqlx::query_as(
                "SELECT game_family, status, COUNT(*) AS jobs, \
                 CAST(AVG(quality_score) AS DOUBLE PRECISION) AS average_quality \
                 FROM ad_jobs GROUP BY game_family, status ORDER BY game_family, status",
            )
            .fetch_all(pool)
            .await)
        .context("count jobs by family")?;
        Ok(rows
            .into_iter()
            .filter_map(|row| {
                Some(FamilyStatusCount {
                    status: JobStatus::parse(&row.status)?,
                    game_family: row.game_family,
                    count: u64::try_from(row.jobs).unwrap_or(0),
                    average_quality: row.average_quality,
                })
            })
            .collect())
    }

    /// Jobs completed at or after `since`.
    pub async fn completed_since(&self, since: i64) -> anyhow::Result<u64> {
        let (count,): (i64,) = on_pool!(&self.database, pool =>
            sqlx::query_as(
                "SELECT COUNT(*) FROM ad_jobs WHERE status = 'completed' AND processed_at >= $1",
            )
            .bind(since)
            .fetch_one(pool)
            .await)
        .context("count recent completions")?;
        Ok(u64::try_from(count).unwrap_or(0))
    }

    /// Dead jobs, most recently dead first.
    pub async fn dead_letters(&self, offset: u64, limit: u64) -> anyhow::Result<Vec<Job>> {
        let sql = format!(
            "SELECT {JOB_COLUMNS} FROM ad_jobs WHERE status = 'dead' \
             ORDER BY processed_at DESC, id DESC LIMIT $1 OFFSET $2"
        );
        let rows: Vec<JobRow> = on_pool!(&self.database, pool =>
            sqlx::query_as(&sql)
                .bind(i64::try_from(limit).unwrap_or(i64::MAX))
                .bind(i64::try_from(offset).unwrap_or(i64::MAX))
                .fetch_all(pool)
                .await)
        .context("list dead letters")?;
        rows.into_iter().map(JobRow::into_job).collect()
    }

    /// Ids of every dead job.
    pub async fn dead_ids(&self) -> anyhow::Result<Vec<String>> {
        let rows: Vec<(String,)> = on_pool!(&self.database, pool =>
            sqlx::query_as("SELECT id FROM ad_jobs WHERE status = 'dead' ORDER BY updated_at, id")
                .fetch_all(pool)
                .await)
        .context("list dead job ids")?;
        Ok(rows.into_iter().map(|(id,)| id).collect())
    }

    /// The stored settings, if any were saved.
    pub async fn load_settings(&self) -> anyhow::Result<Option<QueueSettings>> {
        let row: Option<SettingsRow> = on_pool!(&self.database, pool =>
            sqlx::query_as(
                "SELECT anti_starvation_enabled, default_max_wait_time, worker_count, batch_size, \
                 lease_timeout_seconds, max_attempts FROM queue_config WHERE id = 1",
            )
            .fetch_optional(pool)
            .await)
        .context("load queue settings")?;
        let positive = |value: i32| u32::try_from(value).unwrap_or(1).max(1);
        Ok(row.map(|row| QueueSettings {
            anti_starvation: row.anti_starvation_enabled,
            default_max_wait_secs: positive(row.default_max_wait_time),
            worker_count: positive(row.worker_count),
            batch_size: positive(row.batch_size),
            lease_timeout_secs: positive(row.lease_timeout_seconds),
            max_attempts: positive(row.max_attempts),
        }))
    }

    pub async fn save_settings(&self, settings: &QueueSettings, now: i64) -> anyhow::Result<()> {
        let int = |value: u32| i32::try_from(value).unwrap_or(i32::MAX);
        on_pool!(&self.database, pool =>
            sqlx::query(
                "INSERT INTO queue_config (id, anti_starvation_enabled, default_max_wait_time, \
                 worker_count, batch_size, lease_timeout_seconds, max_attempts, updated_at) \
                 VALUES (1, $1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO UPDATE SET \
                 anti_starvation_enabled = excluded.anti_starvation_enabled, \
                 default_max_wait_time = excluded.default_max_wait_time, \
                 worker_count = excluded.worker_count, batch_size = excluded.batch_size, \
                 lease_timeout_seconds = excluded.lease_timeout_seconds, \
                 max_attempts = excluded.max_attempts, updated_at = excluded.updated_at",
            )
            .bind(settings.anti_starvation)
            .bind(int(settings.default_max_wait_secs))
            .bind(int(settings.worker_count))
            .bind(int(settings.batch_size))
            .bind(int(settings.lease_timeout_secs))
            .bind(int(settings.max_attempts))
            .bind(now)
            .execute(pool)
            .await
            .map(drop))
        .context("save queue settings")
    }
}

/// `ON CONFLICT … DO UPDATE SET col = excluded.col, …` for every column
/// but the id, applied only by a newer version.
/// PostgreSQL takes a whole batch as one statement per table, each column
/// an array (`UNNEST`): a few dozen parameters instead of one per value,
/// which is most of what thousands of bound values cost it.
async fn write_postgres(
    pool: &sqlx::PgPool,
    batch: &WriteBatch,
    upsert_tail: &str,
) -> anyhow::Result<()> {
    let jobs = &batch.jobs;
    let texts = |field: fn(&Job) -> String| jobs.iter().map(field).collect::<Vec<String>>();
    let ints = |field: fn(&Job) -> i32| jobs.iter().map(field).collect::<Vec<i32>>();
    let longs = |field: fn(&Job) -> i64| jobs.iter().map(field).collect::<Vec<i64>>();
    let maybe_longs =
        |field: fn(&Job) -> Option<i64>| jobs.iter().map(field).collect::<Vec<Option<i64>>>();
    let maybe_texts =
        |field: fn(&Job) -> Option<String>| jobs.iter().map(field).collect::<Vec<Option<String>>>();
    let mut transaction = pool.begin().await.context("begin job write")?;
    if !jobs.is_empty() {
        let sql = format!(
            "INSERT INTO ad_jobs ({JOB_COLUMNS}) SELECT * FROM UNNEST(\
             $1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], \
             $8::int4[], $9::int4[], $10::int4[], $11::text[], $12::int4[], $13::int8[], $14::int8[], \
             $15::int8[], $16::int8[], $17::int8[], $18::int8[], $19::int8[], $20::int4[], $21::text[], \
             $22::text[], $23::text[], $24::text[], $25::int8[], $26::text[], $27::int4[]) {upsert_tail}"
        );
        sqlx::query(&sql)
            .bind(texts(|job| job.id.clone()))
            .bind(texts(|job| job.title.clone()))
            .bind(texts(|job| job.description.clone()))
            .bind(texts(|job| job.game_family.clone()))
            .bind(texts(|job| {
                serde_json::to_string(&job.target_audience).unwrap_or_else(|_| "[]".into())
            }))
            .bind(texts(|job| {
                serde_json::to_string(&job.visual_elements).unwrap_or_else(|_| "[]".into())
            }))
            .bind(texts(|job| job.call_to_action.clone()))
            .bind(ints(|job| i32::try_from(job.duration).unwrap_or(i32::MAX)))
            .bind(ints(|job| i32::from(job.priority)))
            .bind(ints(|job| {
                i32::try_from(job.max_wait_secs).unwrap_or(i32::MAX)
            }))
            .bind(texts(|job| job.status.as_str().to_string()))
            .bind(ints(|job| i32::try_from(job.attempt).unwrap_or(i32::MAX)))
            .bind(longs(|job| job.version))
            .bind(longs(|job| job.created_at))
            .bind(longs(|job| job.queued_at))
            .bind(maybe_longs(|job| job.processing_started_at))
            .bind(maybe_longs(|job| job.processed_at))
            .bind(maybe_longs(|job| job.not_before))
            .bind(longs(|job| job.updated_at))
            .bind(ints(|job| i32::try_from(job.progress).unwrap_or(100)))
            .bind(texts(|job| job.progress_message.clone()))
            .bind(maybe_texts(|job| {
                job.analysis
                    .as_ref()
                    .and_then(|analysis| serde_json::to_string(analysis).ok())
            }))
            .bind(texts(|job| job.last_error.clone()))
            .bind(maybe_texts(|job| job.lease_id.clone()))
            .bind(maybe_longs(|job| job.lease_expires_at))
            .bind(maybe_texts(|job| job.processor_id.clone()))
            .bind(
                jobs.iter()
                    .map(|job| {
                        job.analysis
                            .as_ref()
                            .map(|analysis| i32::try_from(analysis.quality_score).unwrap_or(0))
                    })
                    .collect::<Vec<Option<i32>>>(),
            )
            .execute(&mut *transaction)
            .await
            .context("upsert jobs")?;
    }
    let events = &batch.events;
    if !events.is_empty() {
        sqlx::query(
            "INSERT INTO job_events (ad_id, kind, status, attempt, cause, detail, created_at) \
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::int4[], $5::text[], \
             $6::text[], $7::int8[])",
        )
        .bind(
            events
                .iter()
                .map(|event| event.ad_id.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(events.iter().map(|event| event.kind).collect::<Vec<_>>())
        .bind(
            events
                .iter()
                .map(|event| event.status.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            events
                .iter()
                .map(|event| i32::try_from(event.attempt).unwrap_or(i32::MAX))
                .collect::<Vec<_>>(),
        )
        .bind(
            events
                .iter()
                .map(|event| event.cause.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            events
                .iter()
                .map(|event| event.detail.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(events.iter().map(|event| event.time).collect::<Vec<_>>())
        .execute(&mut *transaction)
        .await
        .context("insert job events")?;
    }
    transaction.commit().await.context("commit job write")
}

fn upsert_assignments() -> String {
    let assignments = JOB_COLUMNS
        .split(", ")
        .map(str::trim)
        .filter(|column| *column != "id")
        .map(|column| format!("{column} = excluded.{column}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!("ON CONFLICT (id) DO UPDATE SET {assignments} WHERE ad_jobs.version < excluded.version")
}
