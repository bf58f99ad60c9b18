//! The migrations apply to a real PostgreSQL and to SQLite, are idempotent,
//! and give both dialects the same tables with the same columns, so one
//! query runs on either profile. And a write transaction given up while it
//! begins leaves no transaction open on PostgreSQL's side.

mod support;

use admesh_common::{Database, db::BeginWrite, on_pool};
use sqlx::Connection;

const EXPECTED_TABLES: &[&str] = &[
    "activity_log",
    "ad_jobs",
    "ad_metrics_hourly",
    "ad_metrics_minute",
    "analytics_ingest",
    "api_keys",
    "campaign_ads",
    "campaign_daily_spend",
    "campaign_metrics_daily",
    "campaign_metrics_hourly",
    "campaign_targeting_rules",
    "campaigns",
    "clicks",
    "commands",
    "edge_settings",
    "event_stream",
    "events_log",
    "frequency_counts",
    "job_events",
    "queue_config",
    "rate_limit_rules",
    "users",
];

async fn columns(database: &Database, table: &str) -> Vec<String> {
    let mut names: Vec<String> = match database {
        Database::Sqlite(pool) => {
            sqlx::query_as::<_, (String,)>("SELECT name FROM pragma_table_info($1)")
                .bind(table)
                .fetch_all(pool)
                .await
                .expect("sqlite columns")
        }
        Database::Postgres(pool) => sqlx::query_as::<_, (String,)>(
            "SELECT column_name::text FROM information_schema.columns \
             WHERE table_schema = current_schema() AND table_name = $1",
        )
        .bind(table)
        .fetch_all(pool)
        .await
        .expect("postgres columns"),
    }
    .into_iter()
    .map(|(name,)| name)
    .collect();
    names.sort();
    names
}

#[tokio::test]
async fn both_dialects_migrate_to_the_same_schema() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sqlite_url = format!("sqlite://{}", dir.path().join("m.db").display());
    let sqlite = Database::connect_and_migrate(&sqlite_url, 2)
        .await
        .expect("sqlite migrations");
    let postgres_db = support::TestPostgres::create().await;
    let postgres = Database::connect_and_migrate(&postgres_db.url, 2)
        .await
        .expect("postgres migrations");

    // Idempotent: a second run (another replica starting) changes nothing.
    sqlite.migrate().await.expect("sqlite re-run");
    postgres.migrate().await.expect("postgres re-run");

    for database in [&sqlite, &postgres] {
        assert_eq!(
            database.table_names().await.expect("tables"),
            EXPECTED_TABLES,
            "{}",
            database.dialect()
        );
    }
    for table in EXPECTED_TABLES {
        assert_eq!(
            columns(&sqlite, table).await,
            columns(&postgres, table).await,
            "columns of {table}"
        );
    }

    // The same query text runs on both, and the constraints hold on both.
    for database in [&sqlite, &postgres] {
        let bad_priority = on_pool!(database, pool => sqlx::query(
            "INSERT INTO ad_jobs (id, title, game_family, priority, status, created_at, queued_at, updated_at) \
             VALUES ($1, 't', 'RPG', 6, 'queued', 0, 0, 0)",
        ).bind("job-1").execute(pool).await.map(drop));
        assert!(
            bad_priority.is_err(),
            "{}: priority 6 must be refused",
            database.dialect()
        );
    }

    postgres.close().await;
    postgres_db.drop_database().await;
}

/// Begins abandoned at every stage (as a handler is when its caller gives
/// up) leave no session idle in a transaction: the pool's one connection
/// begins and commits again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abandoned_begin_leaves_no_transaction_open_in_postgres() {
    let postgres_db = support::TestPostgres::create().await;
    let Database::Postgres(pool) = Database::connect_and_migrate(&postgres_db.url, 1)
        .await
        .expect("postgres")
    else {
        panic!("a postgres URL gives a PostgreSQL pool");
    };
    let mut observer = sqlx::PgConnection::connect(&postgres_db.url)
        .await
        .expect("a connection outside the pool");
    let mut context = std::task::Context::from_waker(std::task::Waker::noop());
    for attempt in 0..400u64 {
        {
            let mut begin = std::pin::pin!(pool.begin_write());
            // Polled a few times, with the server answering in between,
            // then dropped: somewhere between acquiring and having begun.
            for _ in 0..attempt % 5 {
                if begin.as_mut().poll(&mut context).is_ready() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_micros(attempt % 23 * 20));
            }
        }
        // Held here, the pool's one connection is back from the abandoned
        // begin (a rollback owed is sent when a connection is released).
        // A later begin would end a leftover transaction, so each is
        // looked for before the next.
        let held = pool
            .acquire()
            .await
            .expect("the pool's connection came back");
        let (stuck,): (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM pg_stat_activity \
             WHERE datname = current_database() AND state LIKE 'idle in transaction%'",
        )
        .fetch_one(&mut observer)
        .await
        .expect("sessions");
        assert_eq!(
            stuck, 0,
            "attempt {attempt} left the pool's connection inside a transaction"
        );
        drop(held);
    }
    let mut transaction = pool
        .begin_write()
        .await
        .expect("a begin after the abandoned ones");
    sqlx::query("INSERT INTO edge_settings (name, value) VALUES ('abandoned-begin-test', '1')")
        .execute(&mut *transaction)
        .await
        .expect("write");
    transaction.commit().await.expect("commit");
    observer.close().await.expect("close");
    pool.close().await;
    postgres_db.drop_database().await;
}
