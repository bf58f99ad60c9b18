//! The commands audit table: every command, understood or not, with its
//! intent, result or error, duration, user, role and provider.

use admesh_common::{Database, on_pool};
use serde_json::Value;

/// One command as recorded.
#[derive(Clone, Debug, PartialEq)]
pub struct CommandRow {
    pub id: String,
    pub text: String,
    /// `{"name": …, "parameters": {…}, "mutating": …}` when understood.
    pub intent: Option<Value>,
    /// "executed", "dry_run", "rejected" or "failed".
    pub status: &'static str,
    pub result: Option<Value>,
    pub error: String,
    pub duration_us: i64,
    pub user: String,
    pub role: String,
    pub provider: &'static str,
    pub dry_run: bool,
    pub created_at_ms: i64,
}

pub async fn record(database: &Database, row: &CommandRow) -> anyhow::Result<()> {
    let intent = row.intent.as_ref().map(Value::to_string);
    let result = row.result.as_ref().map(Value::to_string);
    on_pool!(database, pool => {
        sqlx::query(
            "INSERT INTO commands (id, command_text, intent, status, result, error, duration_us, \
             user_name, role, provider, dry_run, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .bind(&row.id)
        .bind(&row.text)
        .bind(intent)
        .bind(row.status)
        .bind(result)
        .bind(&row.error)
        .bind(row.duration_us)
        .bind(&row.user)
        .bind(&row.role)
        .bind(row.provider)
        .bind(row.dry_run)
        .bind(row.created_at_ms)
        .execute(pool)
        .await?;
    });
    Ok(())
}

/// A stored row as read back.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct StoredCommand {
    pub id: String,
    pub command_text: String,
    pub intent: Option<String>,
    pub status: String,
    pub result: Option<String>,
    pub error: String,
    pub duration_us: i64,
    pub user_name: String,
    pub role: String,
    pub provider: String,
    pub dry_run: bool,
    pub created_at: i64,
}

/// The newest `limit` commands.
pub async fn history(database: &Database, limit: u32) -> anyhow::Result<Vec<StoredCommand>> {
    Ok(on_pool!(database, pool => {
        sqlx::query_as(
            "SELECT id, command_text, intent, status, result, error, duration_us, user_name, role, \
             provider, dry_run, created_at FROM commands ORDER BY created_at DESC, id DESC LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(pool)
        .await?
    }))
}
