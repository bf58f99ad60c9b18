//! Jobs, their audit trail and the live settings in SQL — the same queries
//! on SQLite (embedded) and PostgreSQL (cluster). Writes are whole-row
//! upserts that keep the highest `version`, so batches may be merged and
//! replayed without moving a job backwards.

use admesh_common::{
    Database,
    db::{BeginWrite, WriteTransaction, begin_write_on, statement_chunks},
    on_pool,
};
use std::{future::Future, sync::Arc, task::Poll};

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
const EVENT_COLUMNS: &str = "ad_id, kind, status, attempt, cause, detail, created_at";
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
    /// Derived from the analysis (for per-family averages in SQL); not read back.
    quality_score: Option<i32>,
}

impl JobRow {
    /// The job's columns as SQL stores them (both dialects write these).
    fn of(job: &Job) -> Self {
        Self {
            id: job.id.clone(),
            title: job.title.clone(),
            description: job.description.clone(),
            game_family: job.game_family.clone(),
            target_audience: serde_json::to_string(&job.target_audience)
                .unwrap_or_else(|_| "[]".into()),
            visual_elements: serde_json::to_string(&job.visual_elements)
                .unwrap_or_else(|_| "[]".into()),
            call_to_action: job.call_to_action.clone(),
            duration: i32::try_from(job.duration).unwrap_or(i32::MAX),
            priority: i32::from(job.priority),
            max_wait_time: i32::try_from(job.max_wait_secs).unwrap_or(i32::MAX),
            status: job.status.as_str().to_string(),
            attempt: i32::try_from(job.attempt).unwrap_or(i32::MAX),
            version: job.version,
            created_at: job.created_at,
            queued_at: job.queued_at,
            processing_started_at: job.processing_started_at,
            processed_at: job.processed_at,
            not_before: job.not_before,
            updated_at: job.updated_at,
            progress: i32::try_from(job.progress).unwrap_or(100),
            progress_message: job.progress_message.clone(),
            analysis: job
                .analysis
                .as_ref()
                .and_then(|analysis| serde_json::to_string(analysis).ok()),
            last_error: job.last_error.clone(),
            lease_id: job.lease_id.clone(),
            lease_expires_at: job.lease_expires_at,
            processor_id: job.processor_id.clone(),
            quality_score: job
                .analysis
                .as_ref()
                .map(|analysis| i32::try_from(analysis.quality_score).unwrap_or(0)),
        }
    }

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

type SqliteQuery<'q> = sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments<'q>>;

/// Binds one job's columns in [`JOB_COLUMNS`] order.
fn bind_row(query: SqliteQuery<'_>, row: JobRow) -> SqliteQuery<'_> {
    query
        .bind(row.id)
        .bind(row.title)
        .bind(row.description)
        .bind(row.game_family)
        .bind(row.target_audience)
        .bind(row.visual_elements)
        .bind(row.call_to_action)
        .bind(row.duration)
        .bind(row.priority)
        .bind(row.max_wait_time)
        .bind(row.status)
        .bind(row.attempt)
        .bind(row.version)
        .bind(row.created_at)
        .bind(row.queued_at)
        .bind(row.processing_started_at)
        .bind(row.processed_at)
        .bind(row.not_before)
        .bind(row.updated_at)
        .bind(row.progress)
        .bind(row.progress_message)
        .bind(row.analysis)
        .bind(row.last_error)
        .bind(row.lease_id)
        .bind(row.lease_expires_at)
        .bind(row.processor_id)
        .bind(row.quality_score)
}

/// The SQL side of the queue.
#[derive(Clone, Debug)]
pub struct JobRecords {
    database: Database,
    /// SQLite: the one connection batches are written on. SQLite empties a
    /// connection's page cache whenever another connection has written, so
    /// commits rotating over the pool re-read every page they touch.
    sqlite_writer: Arc<tokio::sync::Mutex<Option<sqlx::SqliteConnection>>>,
}

impl JobRecords {
    pub fn new(database: Database) -> Self {
        Self {
            database,
            sqlite_writer: Arc::default(),
        }
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
        match &self.database {
            Database::Postgres(pool) => write_postgres(pool, batch, &upsert_tail).await,
            Database::Sqlite(pool) => self.write_sqlite_pinned(pool, batch, &upsert_tail).await,
        }
    }

    /// Writes `batch` on the writer's own connection (see `sqlite_writer`).
    async fn write_sqlite_pinned(
        &self,
        pool: &sqlx::SqlitePool,
        batch: &WriteBatch,
        upsert_tail: &str,
    ) -> anyhow::Result<()> {
        use sqlx::ConnectOptions;
        let mut writer = self.sqlite_writer.lock().await;
        let mut connection = match writer.take() {
            Some(connection) => connection,
            None => pool
                .connect_options()
                .connect()
                .await
                .context("open the queue's SQLite writer")?,
        };
        let written = match begin_write_on(pool, &mut connection).await {
            Ok(transaction) => write_sqlite(transaction, &self.database, batch, upsert_tail).await,
            Err(error) => Err(anyhow::Error::new(error).context("begin job write")),
        };
        // After a failure the next attempt opens a fresh connection.
        if written.is_ok() {
            *writer = Some(connection);
        }
        written
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

/// SQLite takes multi-row `VALUES` statements of a few fixed sizes (so they
/// stay prepared). Each statement's values are bound while SQLite's thread
/// runs the one before: bound one after the other, SQLite sat idle for a
/// fifth of every commit.
async fn write_sqlite(
    mut transaction: WriteTransaction<'_, sqlx::Sqlite>,
    database: &Database,
    batch: &WriteBatch,
    upsert_tail: &str,
) -> anyhow::Result<()> {
    let into_jobs = format!("INSERT INTO ad_jobs ({JOB_COLUMNS}) VALUES");
    let into_events = format!("INSERT INTO job_events ({EVENT_COLUMNS}) VALUES");
    let statements: Vec<(String, RowsOf<'_>)> = statement_chunks(&batch.jobs)
        .map(|jobs| {
            let values = database.values_placeholders(jobs.len(), JOB_COLUMN_COUNT);
            (
                format!("{into_jobs} {values} {upsert_tail}"),
                RowsOf::Jobs(jobs),
            )
        })
        .chain(statement_chunks(&batch.events).map(|events| {
            let values = database.values_placeholders(events.len(), EVENT_COLUMN_COUNT);
            (format!("{into_events} {values}"), RowsOf::Events(events))
        }))
        .collect();
    // Bound lazily, one statement ahead of the one running.
    let mut bound = statements
        .iter()
        .map(|(sql, rows)| (rows.what(), rows.bound(sql)));
    let mut next = bound.next();
    while let Some((what, query)) = next {
        let running = query.execute(&mut *transaction);
        tokio::pin!(running);
        // The first poll hands the statement to SQLite's thread.
        let first =
            std::future::poll_fn(|context| Poll::Ready(running.as_mut().poll(context))).await;
        next = bound.next();
        match first {
            Poll::Ready(result) => result,
            Poll::Pending => running.await,
        }
        .context(what)?;
    }
    transaction.commit().await.context("commit job write")
}

/// The rows of one multi-row statement.
enum RowsOf<'a> {
    Jobs(&'a [Job]),
    Events(&'a [JobEvent]),
}

impl<'a> RowsOf<'a> {
    fn what(&self) -> &'static str {
        match self {
            Self::Jobs(_) => "upsert jobs",
            Self::Events(_) => "insert job events",
        }
    }

    /// `sql` with these rows' values bound.
    fn bound<'q>(&self, sql: &'q str) -> SqliteQuery<'q>
    where
        'a: 'q,
    {
        let mut query = sqlx::query(sql);
        match *self {
            Self::Jobs(jobs) => {
                for job in jobs {
                    query = bind_row(query, JobRow::of(job));
                }
            }
            Self::Events(events) => {
                for event in events {
                    query = query
                        .bind(event.ad_id.as_str())
                        .bind(event.kind)
                        .bind(event.status.as_str())
                        .bind(event_attempt(event))
                        .bind(event.cause.as_str())
                        .bind(event.detail.as_str())
                        .bind(event.time);
                }
            }
        }
        query
    }
}

fn event_attempt(event: &JobEvent) -> i32 {
    i32::try_from(event.attempt).unwrap_or(i32::MAX)
}

/// One column of `rows`, as an array for `UNNEST`.
fn column<'r, R, T>(rows: &'r [R], field: impl Fn(&'r R) -> T) -> Vec<T> {
    rows.iter().map(field).collect()
}

/// PostgreSQL takes a whole batch as one statement per table, each column
/// an array (`UNNEST`): a few dozen parameters instead of one per value,
/// which is most of what thousands of bound values cost it.
async fn write_postgres(
    pool: &sqlx::PgPool,
    batch: &WriteBatch,
    upsert_tail: &str,
) -> anyhow::Result<()> {
    let mut transaction = pool.begin_write().await.context("begin job write")?;
    if !batch.jobs.is_empty() {
        let rows: Vec<JobRow> = batch.jobs.iter().map(JobRow::of).collect();
        let sql = format!(
            "INSERT INTO ad_jobs ({JOB_COLUMNS}) SELECT * FROM UNNEST(\
             $1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], \
             $8::int4[], $9::int4[], $10::int4[], $11::text[], $12::int4[], $13::int8[], $14::int8[], \
             $15::int8[], $16::int8[], $17::int8[], $18::int8[], $19::int8[], $20::int4[], $21::text[], \
             $22::text[], $23::text[], $24::text[], $25::int8[], $26::text[], $27::int4[]) {upsert_tail}"
        );
        sqlx::query(&sql)
            .bind(column(&rows, |row| row.id.as_str()))
            .bind(column(&rows, |row| row.title.as_str()))
            .bind(column(&rows, |row| row.description.as_str()))
            .bind(column(&rows, |row| row.game_family.as_str()))
            .bind(column(&rows, |row| row.target_audience.as_str()))
            .bind(column(&rows, |row| row.visual_elements.as_str()))
            .bind(column(&rows, |row| row.call_to_action.as_str()))
            .bind(column(&rows, |row| row.duration))
            .bind(column(&rows, |row| row.priority))
            .bind(column(&rows, |row| row.max_wait_time))
            .bind(column(&rows, |row| row.status.as_str()))
            .bind(column(&rows, |row| row.attempt))
            .bind(column(&rows, |row| row.version))
            .bind(column(&rows, |row| row.created_at))
            .bind(column(&rows, |row| row.queued_at))
            .bind(column(&rows, |row| row.processing_started_at))
            .bind(column(&rows, |row| row.processed_at))
            .bind(column(&rows, |row| row.not_before))
            .bind(column(&rows, |row| row.updated_at))
            .bind(column(&rows, |row| row.progress))
            .bind(column(&rows, |row| row.progress_message.as_str()))
            .bind(column(&rows, |row| row.analysis.as_deref()))
            .bind(column(&rows, |row| row.last_error.as_str()))
            .bind(column(&rows, |row| row.lease_id.as_deref()))
            .bind(column(&rows, |row| row.lease_expires_at))
            .bind(column(&rows, |row| row.processor_id.as_deref()))
            .bind(column(&rows, |row| row.quality_score))
            .execute(&mut *transaction)
            .await
            .context("upsert jobs")?;
    }
    let events = &batch.events;
    if !events.is_empty() {
        sqlx::query(&format!(
            "INSERT INTO job_events ({EVENT_COLUMNS}) SELECT * FROM UNNEST($1::text[], \
             $2::text[], $3::text[], $4::int4[], $5::text[], $6::text[], $7::int8[])"
        ))
        .bind(column(events, |event| event.ad_id.as_str()))
        .bind(column(events, |event| event.kind))
        .bind(column(events, |event| event.status.as_str()))
        .bind(column(events, event_attempt))
        .bind(column(events, |event| event.cause.as_str()))
        .bind(column(events, |event| event.detail.as_str()))
        .bind(column(events, |event| event.time))
        .execute(&mut *transaction)
        .await
        .context("insert job events")?;
    }
    transaction.commit().await.context("commit job write")
}

/// `ON CONFLICT … DO UPDATE SET col = excluded.col, …` for every column
/// but the id, applied only by a newer version.
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

#[cfg(test)]
mod pinned_writer_tests {
    use super::*;
    use crate::job::NewAd;

    fn job(id: &str) -> Job {
        Job::new(NewAd::bare(3, 300), id.into(), 0)
    }

    /// A write that fails mid-transaction must not leave the writer's own
    /// connection inside it: the next write commits, the failed one left
    /// nothing.
    #[tokio::test]
    async fn a_failed_write_leaves_the_next_one_a_working_connection() {
        let database = Database::connect_and_migrate("sqlite::memory:", 2)
            .await
            .expect("database");
        let records = JobRecords::new(database);
        let mut refused = job("job-refused");
        // Outside the table's CHECK (priority BETWEEN 1 AND 5).
        refused.priority = 9;
        let mut bad = WriteBatch::default();
        bad.jobs.extend([job("job-beside"), refused]);
        assert!(records.write(&mut bad).await.is_err());

        let mut good = WriteBatch::default();
        good.jobs.push(job("job-good"));
        records
            .write(&mut good)
            .await
            .expect("a write after a failed one");
        assert!(records.get("job-good").await.expect("read").is_some());
        assert!(records.get("job-beside").await.expect("read").is_none());
        assert!(records.get("job-refused").await.expect("read").is_none());
    }
}
