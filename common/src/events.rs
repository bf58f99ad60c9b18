//! The event stream between the ad-server (impressions, clicks) and the
//! analytics consumer (SPEC §5): at-least-once, acknowledged after use.
//!
//! - [`RedisEventStream`] (cluster): a Redis Stream with a consumer group.
//! - [`SqlEventStream`] (embedded): the `event_stream` table, durable
//!   through SQLite; acknowledged entries are deleted.
//!
//! [`EventPublisher`] sits in front of either so that serving never waits
//! on it: a bounded buffer, batched appends, retries, and a flush of what is
//! buffered when the service shuts down.

use std::{sync::Arc, time::Duration};

use admesh_proto::analytics::v1::{AdEvent, AdEventBatch};
use anyhow::Context;
use prost::Message;
use tokio::{sync::mpsc, task::JoinHandle};

use crate::{
    Database, Redis,
    db::{BeginWrite, statement_chunks},
    on_pool,
    runner::ServiceContext,
    time::now_millis,
};

/// The Redis Stream key and its consumer group.
pub const STREAM_KEY: &str = "admesh:events";
pub const CONSUMER_GROUP: &str = "analytics";
/// Redis trims the stream to about this many entries (acknowledged or not:
/// a consumer further behind than this loses the oldest).
const STREAM_MAX_LEN: usize = 5_000_000;

/// At most this many events go into one stream entry.
pub const EVENTS_PER_ENTRY: usize = 1_000;

/// One event read from the stream, with the id of the stream entry that
/// carries it: an entry carries a batch of events, so events of one batch
/// share their id, and the entry is acknowledged once all of them are used.
#[derive(Clone, Debug, PartialEq)]
pub struct StreamEntry {
    pub id: String,
    pub event: AdEvent,
}

#[async_trait::async_trait]
pub trait EventStream: Send + Sync + std::fmt::Debug {
    /// Appends events in order, all or none, in entries of up to
    /// [`EVENTS_PER_ENTRY`] events.
    async fn append(&self, events: &[AdEvent]) -> anyhow::Result<()>;

    /// The events of entries not yet delivered to `consumer`, about `max`
    /// of them (whole entries; see `ReadPlan`). After a restart the entries
    /// delivered but never acknowledged come first. Waits up to `block` for
    /// some to arrive.
    async fn read(
        &self,
        consumer: &str,
        max: usize,
        block: Duration,
    ) -> anyhow::Result<Vec<StreamEntry>>;

    /// Marks entries as processed; they will not be delivered again. An id
    /// listed twice is harmless.
    async fn ack(&self, ids: &[String]) -> anyhow::Result<()>;

    /// Takes over up to `max` entries that another consumer was handed but
    /// has not acknowledged for `min_idle` (it died), for `consumer`.
    async fn claim_stale(
        &self,
        consumer: &str,
        min_idle: Duration,
        max: usize,
    ) -> anyhow::Result<Vec<StreamEntry>>;

    /// How far consumers are behind.
    async fn backlog(&self) -> anyhow::Result<Backlog>;
}

/// Entries appended but not yet delivered (`lag`), and delivered but not
/// yet acknowledged (`pending`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Backlog {
    pub lag: u64,
    pub pending: u64,
}

/// The stream of the profile `context` runs in.
pub fn event_stream(context: &ServiceContext) -> Arc<dyn EventStream> {
    match &context.redis {
        Some(redis) => Arc::new(RedisEventStream::with_key(
            redis.clone(),
            &context.config.redis.events_stream,
        )),
        None => Arc::new(SqlEventStream::new(context.database.clone())),
    }
}

/// The payload of a batch entry: an [`AdEventBatch`].
fn encode_batch(events: &[AdEvent]) -> Vec<u8> {
    // The bytes of `AdEventBatch { events }` (field 1, repeated), written
    // from the slice: building the message would clone every event.
    let length: usize = events
        .iter()
        .map(|event| prost::encoding::message::encoded_len(1, event))
        .sum();
    let mut bytes = Vec::with_capacity(length);
    for event in events {
        prost::encoding::message::encode(1, event, &mut bytes);
    }
    bytes
}

/// The events of the entry `id`, flattened into [`StreamEntry`]s: its
/// payload is an [`AdEventBatch`], or one [`AdEvent`] in entries written
/// before batches (`batched == false`).
fn decode_entry(
    id: &str,
    payload: &[u8],
    batched: bool,
    into: &mut Vec<StreamEntry>,
) -> anyhow::Result<()> {
    let events = if batched {
        AdEventBatch::decode(payload)
            .context("an entry in the stream is not a valid AdEventBatch")?
            .events
    } else {
        vec![AdEvent::decode(payload).context("an event in the stream is not a valid AdEvent")?]
    };
    into.extend(events.into_iter().map(|event| StreamEntry {
        id: id.to_string(),
        event,
    }));
    Ok(())
}

/// The Redis field of a batch entry, and of a single event (older entries).
const BATCH_FIELD: &str = "b";
const EVENT_FIELD: &str = "e";

fn decode_redis_entry(
    id: &str,
    fields: Vec<(String, Vec<u8>)>,
    into: &mut Vec<StreamEntry>,
) -> anyhow::Result<()> {
    for (name, payload) in fields {
        match name.as_str() {
            BATCH_FIELD => return decode_entry(id, &payload, true, into),
            EVENT_FIELD => return decode_entry(id, &payload, false, into),
            _ => {}
        }
    }
    Ok(())
}

/// How a read gathers about `max_events` events from entries of unknown
/// size (one event from a quiet publisher, up to [`EVENTS_PER_ENTRY`] from
/// a busy one): the first read asks for entries of a busy ad-server's
/// typical size (a quarter of the most); while the entries turn out smaller
/// and the stream has more, it reads again for the rest, estimating from
/// the entries seen so far.
#[derive(Debug)]
struct ReadPlan {
    max_events: usize,
    asked: usize,
    entries: usize,
    events: usize,
}

impl ReadPlan {
    fn new(max_events: usize) -> Self {
        Self {
            max_events: max_events.max(1),
            asked: max_events.div_ceil(EVENTS_PER_ENTRY / 4).max(1),
            entries: 0,
            events: 0,
        }
    }

    /// Entries to ask for next.
    fn count(&self) -> usize {
        self.asked
    }

    /// Notes a read's result; answers whether to read again.
    fn read_again(&mut self, entries: &[StreamEntry]) -> bool {
        let got = entry_ids(entries).count();
        self.entries += got;
        self.events += entries.len();
        if got < self.asked || self.events >= self.max_events {
            return false;
        }
        let per_entry = (self.events / self.entries.max(1)).max(1);
        self.asked = ((self.max_events - self.events) / per_entry).max(1);
        true
    }
}

/// The ids of the entries `events` (in stream order, as reads return
/// them) come from, each once.
pub fn entry_ids(events: &[StreamEntry]) -> impl Iterator<Item = &str> {
    events
        .chunk_by(|a, b| a.id == b.id)
        .map(|entry| entry[0].id.as_str())
}

// ── cluster: Redis Streams ────────────────────────────────────────────────

#[derive(Debug)]
pub struct RedisEventStream {
    redis: Redis,
    /// The stream's key: [`STREAM_KEY`] in the mesh.
    key: String,
    group_ready: tokio::sync::OnceCell<()>,
    /// Consumers that have re-read their pending entries since start.
    caught_up: std::sync::Mutex<std::collections::HashSet<String>>,
    /// The connection blocking reads wait on (see `read_group`).
    blocking_reader: tokio::sync::Mutex<Option<redis::aio::MultiplexedConnection>>,
}

impl RedisEventStream {
    pub fn new(redis: Redis) -> Self {
        Self::with_key(redis, STREAM_KEY)
    }

    /// A stream under another key (tests keep theirs apart this way).
    pub fn with_key(redis: Redis, key: &str) -> Self {
        Self {
            redis,
            key: key.to_string(),
            group_ready: tokio::sync::OnceCell::new(),
            caught_up: std::sync::Mutex::new(Default::default()),
            blocking_reader: tokio::sync::Mutex::new(None),
        }
    }

    /// XREADGROUP from `from` (`0`: this consumer's pending entries, `>`:
    /// new ones). Blocking reads use a connection of their own: Redis runs
    /// one command at a time per connection, so a blocked read on the shared
    /// one would hold up every other command of the process.
    async fn read_group(
        &self,
        consumer: &str,
        entries: usize,
        from: &str,
        block: Option<Duration>,
    ) -> anyhow::Result<Vec<StreamEntry>> {
        let mut command = redis::cmd("XREADGROUP");
        command
            .arg("GROUP")
            .arg(CONSUMER_GROUP)
            .arg(consumer)
            .arg("COUNT")
            .arg(entries);
        if let Some(block) = block {
            command.arg("BLOCK").arg(block.as_millis() as u64);
        }
        command.arg("STREAMS").arg(&self.key).arg(from);
        let reply: StreamReply = match block {
            None => command.query_async(&mut self.redis.connection()).await,
            Some(_) => {
                let mut reader = self.blocking_reader.lock().await;
                let connection = match reader.take() {
                    Some(connection) => reader.insert(connection),
                    None => reader.insert(self.redis.dedicated_connection().await?),
                };
                let reply = command.query_async(connection).await;
                if reply.is_err() {
                    // Reconnect on the next read.
                    *reader = None;
                }
                reply
            }
        }
        .context("reading the Redis event stream")?;
        let mut entries = Vec::new();
        for (_key, items) in reply.unwrap_or_default() {
            for (id, fields) in items {
                decode_redis_entry(&id, fields, &mut entries)?;
            }
        }
        Ok(entries)
    }

    async fn ensure_group(&self) -> anyhow::Result<()> {
        self.group_ready
            .get_or_try_init(|| async {
                let mut connection = self.redis.connection();
                let created: redis::RedisResult<()> = redis::cmd("XGROUP")
                    .arg("CREATE")
                    .arg(&self.key)
                    .arg(CONSUMER_GROUP)
                    .arg("0")
                    .arg("MKSTREAM")
                    .query_async(&mut connection)
                    .await;
                match created {
                    Ok(()) => Ok(()),
                    Err(error) if error.code() == Some("BUSYGROUP") => Ok(()),
                    Err(error) => {
                        Err(anyhow::Error::new(error).context("creating the consumer group"))
                    }
                }
            })
            .await
            .map(drop)
    }
}

type StreamReply = Option<Vec<(String, Vec<(String, Vec<(String, Vec<u8>)>)>)>>;

#[async_trait::async_trait]
impl EventStream for RedisEventStream {
    async fn append(&self, events: &[AdEvent]) -> anyhow::Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        pipe.atomic();
        for chunk in events.chunks(EVENTS_PER_ENTRY) {
            pipe.cmd("XADD")
                .arg(&self.key)
                .arg("MAXLEN")
                .arg("~")
                .arg(STREAM_MAX_LEN)
                .arg("*")
                .arg(BATCH_FIELD)
                .arg(encode_batch(chunk))
                .ignore();
        }
        let mut connection = self.redis.connection();
        pipe.query_async::<()>(&mut connection)
            .await
            .context("appending events to the Redis stream")
    }

    /// Entries delivered to `consumer` but not acknowledged come first
    /// (after a restart); once there are none, new entries.
    async fn read(
        &self,
        consumer: &str,
        max: usize,
        block: Duration,
    ) -> anyhow::Result<Vec<StreamEntry>> {
        self.ensure_group().await?;
        let caught_up = self
            .caught_up
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(consumer);
        if !caught_up {
            let pending = self
                .read_group(consumer, ReadPlan::new(max).count(), "0", None)
                .await?;
            if !pending.is_empty() {
                return Ok(pending);
            }
            self.caught_up
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(consumer.to_string());
        }
        let mut plan = ReadPlan::new(max);
        let mut read = self
            .read_group(consumer, plan.count(), ">", Some(block))
            .await?;
        let mut last = read.len();
        while plan.read_again(&read[read.len() - last..]) {
            let more = self.read_group(consumer, plan.count(), ">", None).await?;
            last = more.len();
            read.extend(more);
        }
        Ok(read)
    }

    async fn ack(&self, ids: &[String]) -> anyhow::Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut connection = self.redis.connection();
        // Acknowledged entries are deleted too: the stream keeps only what
        // is still to be counted.
        let mut pipe = redis::pipe();
        pipe.cmd("XACK")
            .arg(&self.key)
            .arg(CONSUMER_GROUP)
            .arg(ids)
            .ignore()
            .cmd("XDEL")
            .arg(&self.key)
            .arg(ids)
            .ignore();
        pipe.query_async::<()>(&mut connection)
            .await
            .context("acknowledging events")?;
        Ok(())
    }

    async fn claim_stale(
        &self,
        consumer: &str,
        min_idle: Duration,
        max: usize,
    ) -> anyhow::Result<Vec<StreamEntry>> {
        self.ensure_group().await?;
        let reply: redis::Value = redis::cmd("XAUTOCLAIM")
            .arg(&self.key)
            .arg(CONSUMER_GROUP)
            .arg(consumer)
            .arg(min_idle.as_millis() as u64)
            .arg("0-0")
            .arg("COUNT")
            .arg(ReadPlan::new(max).count())
            .query_async(&mut self.redis.connection())
            .await
            .context("claiming stale stream entries")?;
        // [next cursor, [[id, [field, value, …]], …], [deleted ids]]
        let redis::Value::Array(parts) = reply else {
            return Ok(Vec::new());
        };
        let Some(redis::Value::Array(items)) = parts.get(1) else {
            return Ok(Vec::new());
        };
        let mut entries = Vec::new();
        for item in items {
            let Ok((id, fields)) =
                redis::from_redis_value::<(String, Vec<(String, Vec<u8>)>)>(item)
            else {
                continue;
            };
            decode_redis_entry(&id, fields, &mut entries)?;
        }
        Ok(entries)
    }

    async fn backlog(&self) -> anyhow::Result<Backlog> {
        self.ensure_group().await?;
        let groups: Vec<std::collections::HashMap<String, redis::Value>> = redis::cmd("XINFO")
            .arg("GROUPS")
            .arg(&self.key)
            .query_async(&mut self.redis.connection())
            .await
            .context("reading the consumer group's backlog")?;
        let number = |group: &std::collections::HashMap<String, redis::Value>, key: &str| {
            group
                .get(key)
                .and_then(|value| redis::from_redis_value::<u64>(value).ok())
                .unwrap_or(0)
        };
        Ok(groups
            .iter()
            .find(|group| {
                group
                    .get("name")
                    .and_then(|name| redis::from_redis_value::<String>(name).ok())
                    .is_some_and(|name| name == CONSUMER_GROUP)
            })
            .map(|group| Backlog {
                lag: number(group, "lag"),
                pending: number(group, "pending"),
            })
            .unwrap_or_default())
    }
}

// ── embedded: a SQL table ─────────────────────────────────────────────────

#[derive(Debug)]
pub struct SqlEventStream {
    database: Database,
    /// The last sequence number handed out since start; unacknowledged
    /// entries are handed out again after a restart.
    delivered_up_to: tokio::sync::Mutex<i64>,
}

/// How often an empty SQL stream is polled while a reader blocks.
const SQL_POLL_INTERVAL: Duration = Duration::from_millis(50);

impl SqlEventStream {
    pub fn new(database: Database) -> Self {
        Self {
            database,
            delivered_up_to: tokio::sync::Mutex::new(0),
        }
    }
}

#[async_trait::async_trait]
impl EventStream for SqlEventStream {
    async fn append(&self, events: &[AdEvent]) -> anyhow::Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        let now = now_millis();
        on_pool!(&self.database, pool => {
            let mut tx = pool.begin_write().await?;
            for chunk in events.chunks(EVENTS_PER_ENTRY) {
                sqlx::query("INSERT INTO event_stream (payload, appended_at, batched) VALUES ($1, $2, $3)")
                    .bind(encode_batch(chunk))
                    .bind(now)
                    .bind(true)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// One reader at a time (the embedded profile has one consumer).
    async fn read(
        &self,
        _consumer: &str,
        max: usize,
        block: Duration,
    ) -> anyhow::Result<Vec<StreamEntry>> {
        let mut delivered = self.delivered_up_to.lock().await;
        let deadline = tokio::time::Instant::now() + block;
        let mut plan = ReadPlan::new(max);
        let mut entries = Vec::new();
        loop {
            let rows: Vec<(i64, Vec<u8>, bool)> = on_pool!(&self.database, pool => {
                sqlx::query_as("SELECT seq, payload, batched FROM event_stream WHERE seq > $1 ORDER BY seq LIMIT $2")
                    .bind(*delivered)
                    .bind(plan.count() as i64)
                    .fetch_all(pool)
                    .await?
            });
            if rows.is_empty() && entries.is_empty() {
                if tokio::time::Instant::now() >= deadline {
                    return Ok(entries);
                }
                tokio::time::sleep(SQL_POLL_INTERVAL.min(deadline - tokio::time::Instant::now()))
                    .await;
                continue;
            }
            if let Some((last, _, _)) = rows.last() {
                *delivered = *last;
            }
            let mut read = Vec::new();
            for (seq, payload, batched) in rows {
                decode_entry(&seq.to_string(), &payload, batched, &mut read)?;
            }
            let again = plan.read_again(&read);
            entries.extend(read);
            if !again {
                return Ok(entries);
            }
        }
    }

    async fn ack(&self, ids: &[String]) -> anyhow::Result<()> {
        let seqs = ids
            .iter()
            .map(|id| id.parse::<i64>())
            .collect::<Result<Vec<_>, _>>()
            .context("acknowledging an id that is not from this stream")?;
        on_pool!(&self.database, pool => {
            let mut tx = pool.begin_write().await?;
            for chunk in statement_chunks(&seqs) {
                let sql = format!(
                    "DELETE FROM event_stream WHERE seq IN {}",
                    self.database.values_placeholders(1, chunk.len())
                );
                let mut query = sqlx::query(&sql);
                for seq in chunk {
                    query = query.bind(*seq);
                }
                query.execute(&mut *tx).await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// One consumer per process in the embedded profile: nothing to claim.
    async fn claim_stale(
        &self,
        _consumer: &str,
        _min_idle: Duration,
        _max: usize,
    ) -> anyhow::Result<Vec<StreamEntry>> {
        Ok(Vec::new())
    }

    async fn backlog(&self) -> anyhow::Result<Backlog> {
        let delivered = *self.delivered_up_to.lock().await;
        let (lag, pending): (i64, i64) = on_pool!(&self.database, pool => {
            sqlx::query_as(
                "SELECT COALESCE(SUM(CASE WHEN seq > $1 THEN 1 ELSE 0 END), 0), \
                 COALESCE(SUM(CASE WHEN seq <= $2 THEN 1 ELSE 0 END), 0) FROM event_stream",
            )
            .bind(delivered)
            .bind(delivered)
            .fetch_one(pool)
            .await?
        });
        Ok(Backlog {
            lag: u64::try_from(lag).unwrap_or(0),
            pending: u64::try_from(pending).unwrap_or(0),
        })
    }
}

// ── the publisher in front of either ──────────────────────────────────────

/// Events waiting in memory before the publisher drops new ones.
pub const PUBLISH_BUFFER: usize = 65_536;
/// The most events the publisher appends at once.
pub const PUBLISH_BATCH: usize = 512;
/// How long the writer waits to fill a batch: events stay well inside the
/// two seconds in which analytics must show them.
const PUBLISH_LINGER: Duration = Duration::from_millis(10);
const RETRY_MIN: Duration = Duration::from_millis(50);
const RETRY_MAX: Duration = Duration::from_secs(2);
/// How long a shutdown waits for buffered events to be written.
const SHUTDOWN_FLUSH_WITHIN: Duration = Duration::from_secs(10);

/// Hands events to a background writer; never waits.
#[derive(Clone, Debug)]
pub struct EventPublisher {
    sender: mpsc::Sender<AdEvent>,
}

/// The background writer; [`PublisherTask::finish`] flushes and stops it.
#[derive(Debug)]
pub struct PublisherTask {
    closing: tokio_util::sync::CancellationToken,
    handle: JoinHandle<()>,
}

impl EventPublisher {
    /// Starts the writer in front of `stream`.
    pub fn spawn(stream: Arc<dyn EventStream>) -> (Self, PublisherTask) {
        let (sender, receiver) = mpsc::channel(PUBLISH_BUFFER);
        let closing = tokio_util::sync::CancellationToken::new();
        let handle = tokio::spawn(write_events(stream, receiver, closing.clone()));
        (Self { sender }, PublisherTask { closing, handle })
    }

    /// Queues `event`; when the buffer is full (the stream is down for a
    /// while) the event is dropped and counted, and serving goes on.
    pub fn publish(&self, event: AdEvent) {
        match self.sender.try_send(event) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_) | mpsc::error::TrySendError::Closed(_)) => {
                metrics::counter!("admesh_events_dropped_total").increment(1);
            }
        }
    }
}

impl PublisherTask {
    /// Stops taking events and writes every buffered one (bounded in time).
    pub async fn finish(self) {
        self.closing.cancel();
        if tokio::time::timeout(SHUTDOWN_FLUSH_WITHIN, self.handle)
            .await
            .is_err()
        {
            tracing::error!("buffered events could not be written before shutdown");
        }
    }
}

async fn write_events(
    stream: Arc<dyn EventStream>,
    mut receiver: mpsc::Receiver<AdEvent>,
    closing: tokio_util::sync::CancellationToken,
) {
    let mut batch = Vec::with_capacity(PUBLISH_BATCH);
    loop {
        let received = tokio::select! {
            received = receiver.recv_many(&mut batch, PUBLISH_BATCH) => received,
            () = closing.cancelled() => {
                // Refuse new events, then write what is buffered.
                receiver.close();
                loop {
                    if batch.is_empty() && receiver.recv_many(&mut batch, PUBLISH_BATCH).await == 0 {
                        return;
                    }
                    append_with_retry(stream.as_ref(), &mut batch, None).await;
                }
            }
        };
        if received == 0 {
            return;
        }
        // Linger briefly for a fuller batch: one append per event would cost
        // a transaction (or a Redis round trip) each under load. Sleeping
        // rather than waiting on the channel matters: a task waiting on it
        // is woken by every event, a cross-thread wake-up per impression.
        if batch.len() < PUBLISH_BATCH {
            tokio::select! {
                () = tokio::time::sleep(PUBLISH_LINGER) => {}
                () = closing.cancelled() => {}
            }
            while batch.len() < PUBLISH_BATCH {
                match receiver.try_recv() {
                    Ok(event) => batch.push(event),
                    Err(_) => break,
                }
            }
        }
        append_with_retry(stream.as_ref(), &mut batch, Some(&closing)).await;
    }
}

/// Appends `batch` (then clears it), retrying with backoff. While serving,
/// a shutdown stops the retries early only after one more attempt.
async fn append_with_retry(
    stream: &dyn EventStream,
    batch: &mut Vec<AdEvent>,
    closing: Option<&tokio_util::sync::CancellationToken>,
) {
    let mut delay = RETRY_MIN;
    loop {
        match stream.append(batch).await {
            Ok(()) => {
                metrics::counter!("admesh_events_published_total").increment(batch.len() as u64);
                batch.clear();
                return;
            }
            Err(error) => {
                metrics::counter!("admesh_event_publish_errors_total").increment(1);
                tracing::warn!(error = %format!("{error:#}"), events = batch.len(), "publishing events failed; retrying");
                if closing.is_some_and(|closing| closing.is_cancelled()) {
                    // The shutdown path takes over this batch.
                    return;
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(RETRY_MAX);
            }
        }
    }
}

#[cfg(test)]
mod stream_entry_tests {
    use super::*;

    fn entries(sizes: &[usize], first_id: usize) -> Vec<StreamEntry> {
        sizes
            .iter()
            .enumerate()
            .flat_map(|(index, size)| {
                (0..*size).map(move |_| StreamEntry {
                    id: (first_id + index).to_string(),
                    event: AdEvent::default(),
                })
            })
            .collect()
    }

    #[test]
    fn small_entries_are_read_again_until_about_max_events() {
        let mut plan = ReadPlan::new(10);
        assert_eq!(plan.count(), 1);
        assert!(
            plan.read_again(&entries(&[1], 0)),
            "a one-event entry: more"
        );
        assert_eq!(plan.count(), 9);
        assert!(!plan.read_again(&entries(&[1; 9], 1)), "ten events read");
    }

    #[test]
    fn a_drained_stream_or_big_entries_end_the_read() {
        let mut plan = ReadPlan::new(10_000);
        assert_eq!(plan.count(), 40);
        assert!(
            !plan.read_again(&entries(&[3; 7], 0)),
            "fewer entries than asked: drained"
        );
        let mut plan = ReadPlan::new(10_000);
        assert!(!plan.read_again(&entries(&[300; 40], 0)), "12,000 events");
        let mut plan = ReadPlan::new(10_000);
        assert!(plan.read_again(&entries(&[100; 40], 0)));
        assert_eq!(plan.count(), 60, "6,000 more events of 100 each");
    }

    #[test]
    fn a_batch_is_encoded_as_the_message_would_be() {
        let events: Vec<AdEvent> = (0..3)
            .map(|n| AdEvent {
                event_id: format!("e-{n}"),
                spend: n,
                ..Default::default()
            })
            .collect();
        let expected = AdEventBatch {
            events: events.clone(),
        }
        .encode_to_vec();
        assert_eq!(encode_batch(&events), expected);
        assert_eq!(
            AdEventBatch::decode(encode_batch(&events).as_slice())
                .map(|batch| batch.events)
                .ok(),
            Some(events)
        );
    }

    #[test]
    fn entries_are_counted_by_their_ids() {
        assert_eq!(
            entry_ids(&entries(&[2, 1, 3], 0)).collect::<Vec<_>>(),
            ["0", "1", "2"]
        );
        assert_eq!(entry_ids(&[]).count(), 0);
    }
}
