//! SQL storage for both profiles: SQLite (embedded) or PostgreSQL (cluster),
//! chosen by the URL scheme. Migrations are embedded in the binary and
//! applied at start; both dialects define the same tables and columns, so
//! queries written once run on either.

use std::{
    collections::HashMap,
    future::Future,
    path::PathBuf,
    str::FromStr,
    sync::{Arc, Mutex, OnceLock},
    time::Duration,
};

use anyhow::Context;
use sqlx::{
    migrate::Migrator,
    postgres::{PgPool, PgPoolOptions},
    sqlite::{
        SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
    },
};

/// How often the WAL is copied back into a SQLite database, beside the
/// writers (a passive checkpoint neither waits for nor blocks them).
const WAL_CHECKPOINT_EVERY: Duration = Duration::from_millis(250);

/// Checkpoints `pool`'s WAL every [`WAL_CHECKPOINT_EVERY`] on one of its
/// connections, for as long as the pool is open (when there is a runtime
/// to run on).
fn checkpoint_wal_behind(pool: SqlitePool) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    runtime.spawn(async move {
        loop {
            tokio::time::sleep(WAL_CHECKPOINT_EVERY).await;
            if pool.is_closed() {
                return;
            }
            if let Err(error) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
                .execute(&pool)
                .await
            {
                tracing::debug!(error = %error, "WAL checkpoint failed; retried shortly");
            }
        }
    });
}

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("migrations/postgres");

/// A connection pool to the profile's database.
#[derive(Clone, Debug)]
pub enum Database {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

impl Database {
    /// Opens a pool without waiting for the server, so a service can start
    /// (and report NOT_SERVING) while its database is still coming up.
    /// A SQLite file is created when missing.
    pub fn connect_lazy(url: &str, max_connections: u32) -> anyhow::Result<Self> {
        if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url)
                .context("`database.url`: not a valid sqlite URL")?
                .create_if_missing(true)
                // WAL lets readers run beside the single writer.
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(5))
                // A 64 MiB page cache per connection and memory-mapped reads:
                // the default 2 MiB cache re-reads hot pages from the OS on
                // every commit once tables outgrow it.
                .pragma("cache_size", "-65536")
                .pragma("mmap_size", "268435456")
                // Checkpoints run beside the writers (`checkpoint_wal_behind`);
                // a commit checkpoints itself only past ~400 MiB of WAL (if
                // those fall behind), not every ~4 MiB: checkpointing on a
                // commit stalled the committing writer for tens of ms.
                .pragma("wal_autocheckpoint", "100000")
                // Statement journals of large multi-row writes spill to a
                // temporary file past 64 KiB: one file created and deleted
                // per queue commit. Kept in memory instead.
                .pragma("temp_store", "MEMORY")
                .foreign_keys(true);
            let pool = SqlitePoolOptions::new()
                .max_connections(max_connections)
                // An in-process file does not go stale; the default ping
                // before every acquire doubles the round trips to SQLite's
                // worker thread.
                .test_before_acquire(false)
                .acquire_timeout(Duration::from_secs(5))
                .connect_lazy_with(options);
            if !url.contains(":memory:") && !url.contains("mode=memory") {
                checkpoint_wal_behind(pool.clone());
            }
            Ok(Self::Sqlite(pool))
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            let pool = PgPoolOptions::new()
                .max_connections(max_connections)
                .acquire_timeout(Duration::from_secs(3))
                .connect_lazy(url)
                .context("`database.url`: not a valid postgres URL")?;
            Ok(Self::Postgres(pool))
        } else {
            anyhow::bail!("`database.url`: must start with sqlite: or postgres:")
        }
    }

    /// Connects and applies every pending migration.
    pub async fn connect_and_migrate(url: &str, max_connections: u32) -> anyhow::Result<Self> {
        let database = Self::connect_lazy(url, max_connections)?;
        database.migrate().await?;
        Ok(database)
    }

    /// Applies pending migrations. Safe to run from several processes at
    /// once: PostgreSQL migrations take an advisory lock.
    pub async fn migrate(&self) -> anyhow::Result<()> {
        match self {
            Self::Sqlite(pool) => SQLITE_MIGRATIONS.run(pool).await,
            Self::Postgres(pool) => POSTGRES_MIGRATIONS.run(pool).await,
        }
        .context("applying database migrations")
    }

    /// One round trip, for health checks.
    pub async fn ping(&self) -> anyhow::Result<()> {
        match self {
            Self::Sqlite(pool) => sqlx::query("SELECT 1").execute(pool).await.map(drop),
            Self::Postgres(pool) => sqlx::query("SELECT 1").execute(pool).await.map(drop),
        }
        .context("database ping")
    }

    /// Placeholders of a multi-row `VALUES` list in this dialect:
    /// `(?, ?), (?, ?)` on SQLite, `($1, $2), ($3, $4)` on PostgreSQL.
    /// sqlx resolves each named `$n` of a SQLite statement with a linear
    /// scan of the names, which makes a 10,000-parameter statement cost
    /// seconds; anonymous `?` parameters bind in order, in linear time.
    pub fn values_placeholders(&self, rows: usize, columns: usize) -> String {
        match self {
            Self::Sqlite(_) => anonymous_placeholders(rows, columns),
            Self::Postgres(_) => numbered_placeholders(rows, columns),
        }
    }

    /// "sqlite" or "postgres".
    pub fn dialect(&self) -> &'static str {
        match self {
            Self::Sqlite(_) => "sqlite",
            Self::Postgres(_) => "postgres",
        }
    }

    /// Names of the tables the migrations created, sorted.
    pub async fn table_names(&self) -> anyhow::Result<Vec<String>> {
        let names: Vec<(String,)> = match self {
            Self::Sqlite(pool) => {
                sqlx::query_as(
                    "SELECT name FROM sqlite_master WHERE type = 'table' \
                     AND name NOT LIKE 'sqlite_%' AND name NOT LIKE '_sqlx%' ORDER BY name",
                )
                .fetch_all(pool)
                .await?
            }
            Self::Postgres(pool) => {
                sqlx::query_as(
                    "SELECT table_name::text FROM information_schema.tables \
                     WHERE table_schema = current_schema() AND table_name NOT LIKE '_sqlx%' \
                     ORDER BY table_name",
                )
                .fetch_all(pool)
                .await?
            }
        };
        Ok(names.into_iter().map(|(name,)| name).collect())
    }

    /// Closes every connection (graceful shutdown).
    pub async fn close(&self) {
        match self {
            Self::Sqlite(pool) => pool.close().await,
            Self::Postgres(pool) => pool.close().await,
        }
    }
}

/// `($1, $2), ($3, $4)` for `rows` rows of `columns` values (PostgreSQL's
/// spelling; see [`Database::values_placeholders`]).
fn numbered_placeholders(rows: usize, columns: usize) -> String {
    let mut text = String::with_capacity(rows * columns * 5);
    for row in 0..rows {
        if row > 0 {
            text.push_str(", ");
        }
        text.push('(');
        for column in 0..columns {
            if column > 0 {
                text.push_str(", ");
            }
            text.push('$');
            text.push_str(&(row * columns + column + 1).to_string());
        }
        text.push(')');
    }
    text
}

/// `(?, ?), (?, ?)`: SQLite's anonymous parameters, for `rows` rows.
pub fn anonymous_placeholders(rows: usize, columns: usize) -> String {
    let row = format!("({})", vec!["?"; columns].join(", "));
    vec![row; rows].join(", ")
}

/// Splits `rows` into chunks of 256, 64, 16, 4 and 1 rows, largest first.
/// Multi-row statements are prepared once per distinct text, and sqlx keeps
/// a bounded cache of prepared statements per connection: with a handful of
/// chunk sizes every statement is prepared once, where a chunk per row count
/// would prepare (slowly, for hundreds of parameters) on most calls.
pub fn statement_chunks<T>(rows: &[T]) -> impl Iterator<Item = &[T]> {
    const SIZES: [usize; 5] = [256, 64, 16, 4, 1];
    let mut rest = rows;
    std::iter::from_fn(move || {
        let size = SIZES.into_iter().find(|size| *size <= rest.len())?;
        let (chunk, tail) = rest.split_at(size);
        rest = tail;
        Some(chunk)
    })
}

/// Starts a transaction that writes. On SQLite it takes the write lock at
/// once (`BEGIN IMMEDIATE`), waiting out the busy timeout if another
/// connection holds it: a deferred transaction that reads before it
/// writes fails at once with "database is locked" when another connection
/// committed after its read began, as SQLite cannot wait there.
pub trait BeginWrite {
    type Db: sqlx::Database;
    fn begin_write(&self) -> impl Future<Output = WriteBegun<Self::Db>> + Send;
}

type WriteBegun<Db> = sqlx::Result<WriteTransaction<'static, Db>>;

/// A transaction from [`BeginWrite`]: use it as the connection
/// (`execute(&mut *tx)`), then `commit`. On SQLite it also holds the
/// file's [`write_gate`] until it ends.
pub struct WriteTransaction<'c, Db: sqlx::Database> {
    // Declared first so it ends (commits or rolls back) before the gate
    // opens for the next writer.
    transaction: sqlx::Transaction<'c, Db>,
    _gate: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl<Db: sqlx::Database> WriteTransaction<'_, Db> {
    pub async fn commit(self) -> sqlx::Result<()> {
        self.transaction.commit().await
    }
}

impl<Db: sqlx::Database> std::ops::Deref for WriteTransaction<'_, Db> {
    type Target = Db::Connection;
    fn deref(&self) -> &Db::Connection {
        &self.transaction
    }
}

impl<Db: sqlx::Database> std::ops::DerefMut for WriteTransaction<'_, Db> {
    fn deref_mut(&mut self) -> &mut Db::Connection {
        &mut self.transaction
    }
}

/// How long a writer waits for the gate: as long as SQLite's busy timeout,
/// after which it would have failed with "database is locked" anyway.
const WRITE_GATE_WAIT: Duration = Duration::from_secs(5);

/// One writer at a time per SQLite file in this process, queued in order
/// of arrival. Without it writers meet in SQLite's busy handler, which
/// sleeps 1, 2, 5, 10, 15, 20… ms between tries: under load a bid that
/// reserves budget lost five tries in a row to the event and spend writers
/// and waited 38 ms, which with the rest of its work went past the
/// ad-server's 50 ms budget (and then every bid queued behind it did).
/// Single statements outside a write transaction still meet the others in
/// the busy handler.
fn write_gate(pool: &SqlitePool) -> Arc<tokio::sync::Semaphore> {
    static GATES: OnceLock<Mutex<HashMap<PathBuf, Arc<tokio::sync::Semaphore>>>> = OnceLock::new();
    let file = pool.connect_options().get_filename().to_path_buf();
    let mut gates = GATES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    Arc::clone(
        gates
            .entry(file)
            .or_insert_with(|| Arc::new(tokio::sync::Semaphore::new(1))),
    )
}

/// How a SQLite write transaction begins (see [`BeginWrite`]).
const SQLITE_BEGIN_WRITE: &str = "BEGIN IMMEDIATE";

impl BeginWrite for SqlitePool {
    type Db = sqlx::Sqlite;
    fn begin_write(&self) -> impl Future<Output = WriteBegun<Self::Db>> + Send {
        let pool = self.clone();
        begin_to_the_end(async move {
            let turn = wait_for_write_turn(&pool).await?;
            Ok(WriteTransaction {
                transaction: pool.begin_with(SQLITE_BEGIN_WRITE).await?,
                _gate: Some(turn),
            })
        })
    }
}

/// This writer's turn at `pool`'s file ([`write_gate`]).
async fn wait_for_write_turn(pool: &SqlitePool) -> sqlx::Result<tokio::sync::OwnedSemaphorePermit> {
    tokio::time::timeout(WRITE_GATE_WAIT, write_gate(pool).acquire_owned())
        .await
        .map_err(|_| {
            sqlx::Error::Io(std::io::Error::other(
                "database is locked: another writer of this process held it too long",
            ))
        })?
        .map_err(|closed| sqlx::Error::Io(std::io::Error::other(closed)))
}

/// Runs a pool's `begin` as a task of its own, so it always finishes.
///
/// sqlx's `begin` is not cancel-safe (launchbadge/sqlx#3932 for SQLite,
/// #4385 for PostgreSQL): dropped after the `BEGIN` ran but before the
/// `Transaction` exists, it returns the connection to the pool inside a
/// transaction no one will end. On SQLite that transaction holds the write
/// lock: every other writer then fails with "database is locked", and
/// every later begin on that connection with "non-zero transaction depth".
/// A gRPC handler is dropped whenever its caller gives up (a bid past the
/// ad-server's deadline), so this happened under load. Finished in a task,
/// the begin yields a `Transaction` even when its caller is gone, and
/// dropping that rolls back.
async fn begin_to_the_end<Db: sqlx::Database>(
    begin: impl Future<Output = WriteBegun<Db>> + Send + 'static,
) -> WriteBegun<Db> {
    match tokio::spawn(begin).await {
        Ok(transaction) => transaction,
        Err(stopped) if stopped.is_panic() => std::panic::resume_unwind(stopped.into_panic()),
        Err(stopped) => Err(sqlx::Error::Io(std::io::Error::other(stopped))),
    }
}

/// [`BeginWrite`] on a connection of one's own rather than the pool's.
/// `connection` must be to `pool`'s file: it waits its turn at the same
/// [`write_gate`]. Not cancel-safe (see [`begin_to_the_end`]): for a
/// connection that only a task which is never dropped mid-write uses (the
/// queue's SQL writer).
pub async fn begin_write_on<'c>(
    pool: &SqlitePool,
    connection: &'c mut sqlx::SqliteConnection,
) -> sqlx::Result<WriteTransaction<'c, sqlx::Sqlite>> {
    use sqlx::Connection;
    let turn = wait_for_write_turn(pool).await?;
    Ok(WriteTransaction {
        transaction: connection.begin_with(SQLITE_BEGIN_WRITE).await?,
        _gate: Some(turn),
    })
}

impl BeginWrite for PgPool {
    type Db = sqlx::Postgres;
    fn begin_write(&self) -> impl Future<Output = WriteBegun<Self::Db>> + Send {
        let pool = self.clone();
        begin_to_the_end(async move {
            Ok(WriteTransaction {
                transaction: pool.begin().await?,
                _gate: None,
            })
        })
    }
}

/// Runs the same sqlx expression against whichever pool `database` holds:
/// `on_pool!(db, pool => sqlx::query("…").bind(x).execute(pool).await)`.
/// Both dialects share table and column names, and `$1`-style parameters
/// work in both (in order of first use).
#[macro_export]
macro_rules! on_pool {
    ($database:expr, $pool:ident => $body:expr) => {
        match $database {
            $crate::db::Database::Sqlite($pool) => $body,
            $crate::db::Database::Postgres($pool) => $body,
        }
    };
}

#[cfg(test)]
mod placeholder_tests {
    use super::numbered_placeholders;

    #[test]
    fn placeholders_number_rows_in_binding_order() {
        assert_eq!(numbered_placeholders(2, 2), "($1, $2), ($3, $4)");
        assert_eq!(numbered_placeholders(1, 3), "($1, $2, $3)");
        assert_eq!(super::anonymous_placeholders(2, 2), "(?, ?), (?, ?)");
    }

    #[test]
    fn statements_come_in_a_few_sizes_covering_every_row() {
        let rows: Vec<usize> = (0..343).collect();
        let sizes: Vec<usize> = super::statement_chunks(&rows).map(<[usize]>::len).collect();
        assert_eq!(sizes, [256, 64, 16, 4, 1, 1, 1]);
        assert_eq!(super::statement_chunks(&rows).flatten().count(), 343);
        assert_eq!(super::statement_chunks::<usize>(&[]).count(), 0);
    }
}

/// A pool of `max_connections` on a SQLite file at `file`, as the services
/// open one; with its URL.
#[cfg(test)]
fn sqlite_pool_at(file: &std::path::Path, max_connections: u32) -> (SqlitePool, String) {
    let url = format!("sqlite://{}", file.display());
    let Database::Sqlite(pool) = Database::connect_lazy(&url, max_connections).expect("pool")
    else {
        panic!("a sqlite URL gives a SQLite pool");
    };
    (pool, url)
}

#[cfg(test)]
mod checkpoint_tests {
    use super::*;

    /// Writes reach the database file by the background checkpoints, well
    /// before a commit would checkpoint on its own (~400 MiB of WAL).
    #[tokio::test]
    async fn the_wal_is_copied_into_the_database_beside_the_writers() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("checkpoint.db");
        let (pool, _) = sqlite_pool_at(&file, 2);
        sqlx::query("CREATE TABLE blobs (value BLOB NOT NULL)")
            .execute(&pool)
            .await
            .expect("create");
        let file_size = || std::fs::metadata(&file).map_or(0, |meta| meta.len());
        let before = file_size();
        // ~2 MiB into the WAL: some 500 pages, far under the commits' own
        // checkpoint threshold.
        for _ in 0..64 {
            sqlx::query("INSERT INTO blobs (value) VALUES (zeroblob(32768))")
                .execute(&pool)
                .await
                .expect("insert");
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while file_size() < before + 2_000_000 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the database file stayed at {} bytes: no checkpoint ran",
                file_size()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        pool.close().await;
    }
}

#[cfg(test)]
mod write_transaction_tests {
    use super::*;
    use sqlx::{ConnectOptions, Connection};

    /// A connection of its own to `url`, outside any pool, waiting at most
    /// `busy_timeout` for another connection's write lock.
    async fn other_connection(url: &str, busy_timeout: Duration) -> sqlx::SqliteConnection {
        SqliteConnectOptions::from_str(url)
            .expect("url")
            .busy_timeout(busy_timeout)
            .connect()
            .await
            .expect("a second connection")
    }

    /// A pool whose connections never wait in SQLite's busy handler, over
    /// a table `rows (n)`.
    async fn pool_without_busy_timeout(dir: &tempfile::TempDir) -> SqlitePool {
        let options = SqliteConnectOptions::new()
            .filename(dir.path().join("gate.db"))
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(Duration::ZERO);
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .expect("pool");
        sqlx::query("CREATE TABLE rows (n INTEGER NOT NULL)")
            .execute(&pool)
            .await
            .expect("create");
        pool
    }

    /// The queue's writer, on a connection of its own, takes its turn at
    /// the same gate as the pool's writers.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_pinned_connection_waits_its_turn_at_the_same_gate() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pool = pool_without_busy_timeout(&dir).await;
        let mut pinned = pool.connect_options().connect().await.expect("pinned");
        let mut held = pool.begin_write().await.expect("the pool's writer");
        let pinned_pool = pool.clone();
        let pinned_writer = tokio::spawn(async move {
            let mut transaction = begin_write_on(&pinned_pool, &mut pinned).await?;
            sqlx::query("INSERT INTO rows (n) VALUES (2)")
                .execute(&mut *transaction)
                .await?;
            transaction.commit().await
        });
        sqlx::query("INSERT INTO rows (n) VALUES (1)")
            .execute(&mut *held)
            .await
            .expect("insert");
        // Held a while, so the pinned writer arrives meanwhile.
        tokio::time::sleep(Duration::from_millis(20)).await;
        held.commit().await.expect("commit");
        pinned_writer
            .await
            .expect("pinned task")
            .expect("the pinned writer failed");
        let (count,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM rows")
            .fetch_one(&pool)
            .await
            .expect("count");
        assert_eq!(count, 2);
    }

    /// Writers of one file in this process queue at the write gate instead
    /// of meeting in SQLite's busy handler: with no busy timeout at all,
    /// eight overlapping writers all commit (without the gate, all but the
    /// first fail at once with "database is locked").
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn overlapping_writers_queue_at_the_gate() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pool = pool_without_busy_timeout(&dir).await;
        let writers: Vec<_> = (0..8)
            .map(|n| {
                let pool = pool.clone();
                tokio::spawn(async move {
                    let mut transaction = pool.begin_write().await?;
                    sqlx::query("INSERT INTO rows (n) VALUES ($1)")
                        .bind(n)
                        .execute(&mut *transaction)
                        .await?;
                    // Held a while, so the writers overlap.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    transaction.commit().await
                })
            })
            .collect();
        for writer in writers {
            writer.await.expect("writer task").expect("a writer failed");
        }
        let (count,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM rows")
            .fetch_one(&pool)
            .await
            .expect("count");
        assert_eq!(count, 8);
    }

    /// A write transaction holds SQLite's write lock from its start: it may
    /// read, then write, and no other connection commits in between (which
    /// would fail its write at once with "database is locked").
    #[tokio::test]
    async fn a_write_transaction_takes_the_lock_before_it_reads() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (pool, url) = sqlite_pool_at(&dir.path().join("write.db"), 2);
        sqlx::query("CREATE TABLE rows (n INTEGER NOT NULL)")
            .execute(&pool)
            .await
            .expect("create");
        let mut other = other_connection(&url, Duration::ZERO).await;

        let mut transaction = pool.begin_write().await.expect("begin");
        let (count,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM rows")
            .fetch_one(&mut *transaction)
            .await
            .expect("read");
        let meanwhile = sqlx::query("INSERT INTO rows (n) VALUES (2)")
            .execute(&mut other)
            .await;
        assert!(
            meanwhile.is_err(),
            "another connection wrote inside the transaction"
        );
        sqlx::query("INSERT INTO rows (n) VALUES ($1)")
            .bind(count + 1)
            .execute(&mut *transaction)
            .await
            .expect("the write after the read");
        transaction.commit().await.expect("commit");

        sqlx::query("INSERT INTO rows (n) VALUES (2)")
            .execute(&mut other)
            .await
            .expect("the other connection writes once the lock is free");
        other.close().await.expect("close");
        pool.close().await;
    }

    /// Begins abandoned at every stage (as a handler is when its caller
    /// gives up) leave no transaction open behind them: the pool's one
    /// connection begins again, and another connection can still write.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_abandoned_begin_leaves_no_transaction_open() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (pool, url) = sqlite_pool_at(&dir.path().join("abandoned.db"), 1);
        sqlx::query("CREATE TABLE rows (n INTEGER NOT NULL)")
            .execute(&pool)
            .await
            .expect("create");
        let mut context = std::task::Context::from_waker(std::task::Waker::noop());
        for attempt in 0..1_500u64 {
            let mut begin = std::pin::pin!(pool.begin_write());
            // Polled a few times, with SQLite's thread working in between,
            // then dropped: somewhere between acquiring and having begun.
            for _ in 0..attempt % 5 {
                if begin.as_mut().poll(&mut context).is_ready() {
                    break;
                }
                std::thread::sleep(Duration::from_micros(attempt % 23 * 7));
            }
        }
        let mut transaction = tokio::time::timeout(Duration::from_secs(10), pool.begin_write())
            .await
            .expect("the pool's connection came back")
            .expect("a begin after the abandoned ones");
        sqlx::query("INSERT INTO rows (n) VALUES (1)")
            .execute(&mut *transaction)
            .await
            .expect("write");
        transaction.commit().await.expect("commit");
        let mut other = other_connection(&url, Duration::from_secs(2)).await;
        sqlx::query("INSERT INTO rows (n) VALUES (2)")
            .execute(&mut other)
            .await
            .expect("no abandoned transaction holds the write lock");
        other.close().await.expect("close");
        pool.close().await;
    }
}
