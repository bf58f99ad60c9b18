//! The consumer: reads events from the stream in batches, records each
//! batch exactly once (see [`AnalyticsStore::record`]) and acknowledges it
//! only after the transaction committed. A crash before the
//! acknowledgement redelivers the batch; de-duplication makes that
//! harmless. In the cluster profile, entries a dead replica was handed are
//! claimed by the living after `claim_idle`.

use std::{collections::HashSet, sync::Arc, time::Duration};

use admesh_common::{
    events::{EventStream, StreamEntry, entry_ids},
    time::now_millis,
};
use tokio_util::sync::CancellationToken;

use crate::store::AnalyticsStore;

/// How long a read waits for events: well inside the 2 s freshness bound.
const READ_BLOCK: Duration = Duration::from_millis(100);

#[derive(Clone, Debug)]
pub struct ConsumerSettings {
    /// This replica's name in the consumer group.
    pub name: String,
    pub batch_size: usize,
    pub attribution_window_ms: i64,
    pub claim_idle: Duration,
    pub retention_days: u32,
}

/// Runs until `shutdown`.
pub async fn consume(
    stream: Arc<dyn EventStream>,
    store: AnalyticsStore,
    settings: ConsumerSettings,
    shutdown: CancellationToken,
) {
    tracing::info!(consumer = settings.name, "analytics consumer started");
    // Reading runs ahead by one batch, so the next batch is fetched and
    // decoded while this one is written.
    let (read_ahead, mut batches) = tokio::sync::mpsc::channel(1);
    let reader = tokio::spawn(read_batches(
        Arc::clone(&stream),
        settings.name.clone(),
        settings.batch_size,
        shutdown.clone(),
        read_ahead,
    ));
    let mut waiting: Vec<StreamEntry> = Vec::new();
    let mut last_claim = tokio::time::Instant::now();
    let mut last_prune = tokio::time::Instant::now() - Duration::from_secs(3_600);
    let mut failures = 0u32;
    while !shutdown.is_cancelled() {
        let mut entries = tokio::select! {
            batch = batches.recv() => match batch {
                Some(entries) => entries,
                None => break,
            },
            () = shutdown.cancelled() => break,
        };
        if last_claim.elapsed() >= settings.claim_idle / 2 {
            last_claim = tokio::time::Instant::now();
            match stream
                .claim_stale(&settings.name, settings.claim_idle, settings.batch_size)
                .await
            {
                Ok(claimed) if !claimed.is_empty() => {
                    tracing::info!(
                        claimed = claimed.len(),
                        "took over a stopped consumer's events"
                    );
                    entries.extend(claimed);
                }
                Ok(_) => {}
                Err(error) => tracing::warn!(error = %format!("{error:#}"), "claiming failed"),
            }
        }
        entries.append(&mut waiting);
        if entries.is_empty() {
            continue;
        }
        match store
            .record(&entries, settings.attribution_window_ms, now_millis())
            .await
        {
            Ok(recorded) => {
                failures = 0;
                metrics::counter!("admesh_analytics_events_counted_total")
                    .increment(recorded.counted);
                metrics::counter!("admesh_analytics_duplicates_total")
                    .increment(recorded.duplicates);
                metrics::counter!("admesh_analytics_unattributed_clicks_total")
                    .increment(recorded.unattributed);
                if recorded.unusable > 0 {
                    tracing::warn!(
                        events = recorded.unusable,
                        "events of no known type skipped"
                    );
                    metrics::counter!("admesh_analytics_unusable_events_total")
                        .increment(recorded.unusable);
                }
                let deferred: HashSet<&str> =
                    recorded.deferred.iter().map(String::as_str).collect();
                let (deferred, done): (Vec<StreamEntry>, Vec<StreamEntry>) = entries
                    .into_iter()
                    .partition(|entry| deferred.contains(entry.event.event_id.as_str()));
                // An entry carries several events: it is acknowledged once
                // none of them is waiting.
                let still_waiting: HashSet<&str> =
                    deferred.iter().map(|entry| entry.id.as_str()).collect();
                let ids: Vec<String> = entry_ids(&done)
                    .filter(|id| !still_waiting.contains(id))
                    .map(str::to_owned)
                    .collect();
                waiting = deferred;
                if let Err(error) = stream.ack(&ids).await {
                    // Redelivered later and dropped as duplicates then.
                    tracing::warn!(error = %format!("{error:#}"), "acknowledging failed");
                }
                if !waiting.is_empty() {
                    // Clicks waiting for their impression: look again soon,
                    // not in a tight loop.
                    tokio::time::sleep(READ_BLOCK).await;
                }
            }
            Err(error) => {
                tracing::warn!(error = %format!("{error:#}"), "recording events failed; retrying");
                waiting = entries;
                pause(&mut failures, &shutdown).await;
            }
        }
        if last_prune.elapsed() >= Duration::from_secs(3_600) {
            last_prune = tokio::time::Instant::now();
            let before = now_millis() - i64::from(settings.retention_days) * 86_400_000;
            match store.prune(before, now_millis()).await {
                Ok(pruned) if pruned > 0 => tracing::info!(pruned, "old counted events pruned"),
                Ok(_) => {}
                Err(error) => tracing::warn!(error = %format!("{error:#}"), "pruning failed"),
            }
        }
    }
    // Entries read ahead and not recorded are delivered again later.
    reader.abort();
    tracing::info!(consumer = settings.name, "analytics consumer stopped");
}

/// Reads batches from the stream into `batches` until `shutdown` (an empty
/// batch when a blocking read times out, so the consumer's periodic work
/// goes on while the stream is quiet).
async fn read_batches(
    stream: Arc<dyn EventStream>,
    consumer: String,
    batch_size: usize,
    shutdown: CancellationToken,
    batches: tokio::sync::mpsc::Sender<Vec<StreamEntry>>,
) {
    let mut failures = 0u32;
    while !shutdown.is_cancelled() {
        let read = tokio::select! {
            read = stream.read(&consumer, batch_size, READ_BLOCK) => read,
            () = shutdown.cancelled() => return,
        };
        match read {
            Ok(entries) => {
                failures = 0;
                if batches.send(entries).await.is_err() {
                    return;
                }
            }
            Err(error) => {
                tracing::warn!(error = %format!("{error:#}"), "reading the event stream failed");
                pause(&mut failures, &shutdown).await;
            }
        }
    }
}

async fn pause(failures: &mut u32, shutdown: &CancellationToken) {
    *failures += 1;
    let wait = Duration::from_millis(100 * u64::from((*failures).min(20)));
    tokio::select! {
        () = tokio::time::sleep(wait) => {}
        () = shutdown.cancelled() => {}
    }
}

/// Exports the stream's lag and pending count every second.
pub async fn export_backlog(stream: Arc<dyn EventStream>, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
            () = shutdown.cancelled() => return,
        }
        if let Ok(backlog) = stream.backlog().await {
            metrics::gauge!("admesh_analytics_stream_lag").set(backlog.lag as f64);
            metrics::gauge!("admesh_analytics_stream_pending").set(backlog.pending as f64);
        }
    }
}
