//! The live feed (`GET /api/v1/events`, Server-Sent Events): job status
//! changes and progress, queue stats and campaign changes. Job events are
//! read from the queue's audit trail and campaign changes from the
//! campaigns table, the records every replica of those services writes, so
//! one edge sees the changes of all of them; queue stats come from the
//! queue-service every two seconds. Nothing is polled while nobody listens.

use std::{sync::Arc, time::Duration};

use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use serde_json::json;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use admesh_common::{Database, on_pool};

/// One feed message: its SSE event name and JSON data.
#[derive(Clone, Debug)]
pub struct FeedEvent {
    pub kind: &'static str,
    pub data: serde_json::Value,
}

/// Fetches the queue stats as JSON (through the gateway's queue route).
pub type StatsSource = Arc<
    dyn Fn() -> futures_util::future::BoxFuture<'static, Option<serde_json::Value>> + Send + Sync,
>;

const POLL: Duration = Duration::from_millis(500);
const STATS_EVERY: u32 = 4;
const BATCH: i64 = 500;

#[derive(Clone, Debug)]
pub struct Feed {
    sender: broadcast::Sender<FeedEvent>,
}

impl Feed {
    /// Starts the poller; it stops at `shutdown`.
    pub fn start(database: Database, stats: StatsSource, shutdown: CancellationToken) -> Self {
        let (sender, _) = broadcast::channel(4096);
        let feed = Self { sender };
        tokio::spawn(poll(feed.sender.clone(), database, stats, shutdown));
        feed
    }

    /// The SSE response for one subscriber.
    pub fn subscribe(
        &self,
    ) -> Sse<impl Stream<Item = Result<Event, std::convert::Infallible>> + use<>> {
        let receiver = self.sender.subscribe();
        let stream = futures_util::stream::unfold(receiver, |mut receiver| async move {
            let sse = match receiver.recv().await {
                Ok(event) => Event::default()
                    .event(event.kind)
                    .data(event.data.to_string()),
                // A slow reader is told how much it missed, then goes on.
                Err(broadcast::error::RecvError::Lagged(missed)) => Event::default()
                    .event("lagged")
                    .data(json!({"missed": missed}).to_string()),
                Err(broadcast::error::RecvError::Closed) => return None,
            };
            Some((Ok(sse), receiver))
        });
        Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
    }
}

/// Where the poller has read up to.
#[derive(Clone, Copy, Debug, Default)]
struct Cursor {
    job_event_id: i64,
    campaign_updated_at: i64,
}

async fn poll(
    sender: broadcast::Sender<FeedEvent>,
    database: Database,
    stats: StatsSource,
    shutdown: CancellationToken,
) {
    let mut cursor: Option<Cursor> = None;
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut ticks: u32 = 0;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        if sender.receiver_count() == 0 {
            cursor = None;
            continue;
        }
        let current = match cursor {
            Some(current) => current,
            None => match start_cursor(&database).await {
                Ok(start) => start,
                Err(error) => {
                    tracing::debug!(error = %error, "live feed cannot read its start");
                    continue;
                }
            },
        };
        match read_changes(&database, current).await {
            Ok((next, events)) => {
                cursor = Some(next);
                for event in events {
                    let _ = sender.send(event);
                }
            }
            Err(error) => {
                cursor = Some(current);
                tracing::debug!(error = %error, "live feed poll failed");
            }
        }
        if ticks.is_multiple_of(STATS_EVERY)
            && let Some(data) = stats().await
        {
            let _ = sender.send(FeedEvent {
                kind: "queue_stats",
                data,
            });
        }
        ticks = ticks.wrapping_add(1);
    }
}

async fn start_cursor(database: &Database) -> anyhow::Result<Cursor> {
    let (job_event_id, campaign_updated_at): (i64, i64) = on_pool!(database, pool => {
        sqlx::query_as(
            "SELECT (SELECT COALESCE(MAX(id), 0) FROM job_events), \
                    (SELECT COALESCE(MAX(updated_at), 0) FROM campaigns)",
        )
        .fetch_one(pool)
        .await?
    });
    Ok(Cursor {
        job_event_id,
        campaign_updated_at,
    })
}

type JobEventRow = (i64, String, String, String, i64, String, String, i64);
type CampaignRow = (String, String, String, i64);

async fn read_changes(
    database: &Database,
    cursor: Cursor,
) -> anyhow::Result<(Cursor, Vec<FeedEvent>)> {
    let (jobs, campaigns): (Vec<JobEventRow>, Vec<CampaignRow>) = on_pool!(database, pool => {
        let jobs = sqlx::query_as(
            "SELECT id, ad_id, kind, status, CAST(attempt AS BIGINT), cause, detail, created_at \
             FROM job_events WHERE id > $1 ORDER BY id LIMIT $2",
        )
        .bind(cursor.job_event_id)
        .bind(BATCH)
        .fetch_all(pool)
        .await?;
        // By change time: a change committed after a poll but stamped in
        // the same millisecond as the last one read is not sent (the
        // dashboard reloads campaigns on its own as well).
        let campaigns = sqlx::query_as(
            "SELECT id, name, status, updated_at FROM campaigns \
             WHERE updated_at > $1 ORDER BY updated_at LIMIT $2",
        )
        .bind(cursor.campaign_updated_at)
        .bind(BATCH)
        .fetch_all(pool)
        .await?;
        (jobs, campaigns)
    });
    let mut next = cursor;
    let mut events = Vec::with_capacity(jobs.len() + campaigns.len());
    for (id, ad_id, kind, status, attempt, cause, detail, created_at) in jobs {
        next.job_event_id = id;
        events.push(FeedEvent {
            kind: "job",
            data: json!({
                "adId": ad_id, "event": kind, "status": status, "attempt": attempt,
                "cause": cause, "detail": detail,
                "time": admesh_common::time::timestamp(created_at).to_string(),
            }),
        });
    }
    for (id, name, status, updated_at) in campaigns {
        next.campaign_updated_at = updated_at;
        events.push(FeedEvent {
            kind: "campaign",
            data: json!({
                "campaignId": id, "name": name, "status": status,
                "time": admesh_common::time::timestamp(updated_at).to_string(),
            }),
        });
    }
    Ok((next, events))
}
