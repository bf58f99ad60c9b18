//! The activity log: entries written to `activity_log`, with the queue's
//! audit trail (`job_events`) and the agent's commands (`commands`) read as
//! entries of their services, newest first.

use admesh_common::{Database, on_pool, time::timestamp};
use admesh_proto::agent::v1::{ActivityEntry, ListActivityResponse};

const ENTRIES: &str = "
    SELECT created_at, level, service, message, resource_id FROM activity_log
    UNION ALL
    SELECT created_at,
           CASE WHEN kind IN ('failed', 'dead', 'lease_expired') THEN 'warn' ELSE 'info' END,
           'queue-service',
           kind || ' (' || status || ')' || CASE WHEN detail = '' THEN '' ELSE ': ' || detail END,
           ad_id
      FROM job_events
    UNION ALL
    SELECT created_at,
           CASE WHEN status IN ('rejected', 'failed') THEN 'warn' ELSE 'info' END,
           'agent-service',
           'command ' || status || ': ' || command_text,
           id
      FROM commands";

/// (time ms, level, service, message, resource id).
type EntryRow = (i64, String, String, String, String);

/// Entries from `since` (ms) to `until` (ms, none = now), filtered by
/// service and level, newest first, at most `limit`; with the count of all
/// that matched.
pub async fn recent(
    database: &Database,
    service: Option<&str>,
    level: Option<&str>,
    since: i64,
    until: Option<i64>,
    limit: u32,
) -> anyhow::Result<ListActivityResponse> {
    let filter = "WHERE created_at >= $1 AND created_at <= $2 AND ($3 = '' OR service = $3) \
                  AND ($4 = '' OR level = $4)";
    let rows_sql = format!(
        "SELECT created_at, level, service, message, resource_id FROM ({ENTRIES}) AS entries \
         {filter} ORDER BY created_at DESC LIMIT $5"
    );
    let count_sql = format!("SELECT COUNT(*) FROM ({ENTRIES}) AS entries {filter}");
    let until = until.unwrap_or(i64::MAX);
    let (service, level) = (service.unwrap_or(""), level.unwrap_or(""));
    let (rows, total): (Vec<EntryRow>, (i64,)) = on_pool!(database, pool => {
        let rows = sqlx::query_as(&rows_sql)
            .bind(since)
            .bind(until)
            .bind(service)
            .bind(level)
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await?;
        let total = sqlx::query_as(&count_sql)
            .bind(since)
            .bind(until)
            .bind(service)
            .bind(level)
            .fetch_one(pool)
            .await?;
        (rows, total)
    });
    Ok(ListActivityResponse {
        logs: rows
            .into_iter()
            .map(
                |(time, level, service, message, resource_id)| ActivityEntry {
                    timestamp: Some(timestamp(time)),
                    level,
                    service,
                    message,
                    resource_id,
                },
            )
            .collect(),
        total: total.0.max(0) as u64,
    })
}
