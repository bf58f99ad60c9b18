//! Streaming dispatch: each connected processor gets leases pushed in queue
//! order, at most `batch_size` at a time and never more than
//! min(its capacity, the worker count) in flight. Finished, failed and
//! expired leases free room at once; a changed worker count is pushed to
//! every processor live.

use std::{
    collections::{HashMap, HashSet},
    pin::pin,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use admesh_common::time::now_millis;
use admesh_proto::queue::v1::{ProcessEvent, ProcessorSettings, process_event::Event};
use parking_lot::Mutex;
use tokio::sync::{Notify, mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::{convert, settings::QueueSettings, store::QueueStore};

/// How often an idle processor's stream looks for work it was not told
/// about: jobs whose retry backoff ended, jobs queued by another replica.
const IDLE_POLL: Duration = Duration::from_millis(50);

/// One connected processor.
#[derive(Default)]
struct Connection {
    held: Mutex<HashSet<String>>,
    room: Notify,
}

/// Pushes leases to the connected processors.
pub struct Dispatcher {
    store: Arc<dyn QueueStore>,
    work_available: Notify,
    connections: Mutex<HashMap<u64, Arc<Connection>>>,
    next_connection: AtomicU64,
    settings: watch::Sender<QueueSettings>,
    /// How long leased jobs waited (looked up once, recorded per lease).
    wait_seconds: metrics::Histogram,
}

impl std::fmt::Debug for Dispatcher {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("Dispatcher").finish_non_exhaustive()
    }
}

pub type EventSender = mpsc::Sender<Result<ProcessEvent, tonic::Status>>;

impl Dispatcher {
    pub fn new(store: Arc<dyn QueueStore>) -> Arc<Self> {
        let settings = store.settings();
        Arc::new(Self {
            store,
            work_available: Notify::new(),
            connections: Mutex::default(),
            next_connection: AtomicU64::new(1),
            settings: watch::Sender::new(settings),
            wait_seconds: metrics::histogram!("admesh_queue_wait_seconds"),
        })
    }

    /// New jobs can be leased (submitted, requeued, reprioritised).
    pub fn jobs_added(&self) {
        self.work_available.notify_waiters();
    }

    /// The settings changed: streams adopt them, processors hear the new
    /// concurrency.
    pub fn settings_changed(&self, settings: QueueSettings) {
        self.settings.send_replace(settings);
    }

    /// Leases that ended (finished, failed, expired, lost): their
    /// processors have room again.
    pub fn released<'a>(&self, leases: impl IntoIterator<Item = &'a str>) {
        let connections: Vec<Arc<Connection>> = self.connections.lock().values().cloned().collect();
        for lease in leases {
            for connection in &connections {
                if connection.held.lock().remove(lease) {
                    connection.room.notify_one();
                    break;
                }
            }
        }
    }

    /// Serves one processor's stream until it closes or the service stops.
    pub async fn run_stream(
        self: Arc<Self>,
        processor_id: String,
        capacity: u32,
        events: EventSender,
        shutdown: CancellationToken,
    ) {
        let id = self.next_connection.fetch_add(1, Ordering::Relaxed);
        let connection = Arc::new(Connection::default());
        self.connections.lock().insert(id, Arc::clone(&connection));
        tracing::info!(processor_id, capacity, "processor connected");
        self.feed(&processor_id, capacity, &connection, &events, &shutdown)
            .await;
        self.connections.lock().remove(&id);
        // Held leases stay with the processor: they finish or expire.
        tracing::info!(processor_id, "processor disconnected");
    }

    async fn feed(
        &self,
        processor_id: &str,
        capacity: u32,
        connection: &Connection,
        events: &EventSender,
        shutdown: &CancellationToken,
    ) {
        let mut settings = self.settings.subscribe();
        let mut concurrency = 0;
        loop {
            let current = *settings.borrow_and_update();
            let limit = capacity.min(current.worker_count);
            if limit != concurrency {
                concurrency = limit;
                let message = ProcessEvent {
                    event: Some(Event::Settings(ProcessorSettings { concurrency })),
                };
                if events.send(Ok(message)).await.is_err() {
                    return;
                }
            }
            // Subscribe before looking, so a submission in between is seen.
            let mut work = pin!(self.work_available.notified());
            work.as_mut().enable();
            let free = (limit as usize).saturating_sub(connection.held.lock().len());
            if free > 0 {
                let want = free.min(current.batch_size as usize);
                match self.store.lease(processor_id, want).await {
                    Ok(leases) if !leases.is_empty() => {
                        let now = now_millis();
                        let full = leases.len() == want;
                        connection
                            .held
                            .lock()
                            .extend(leases.iter().map(|lease| lease.lease_id.clone()));
                        for lease in &leases {
                            self.wait_seconds
                                .record(lease.job.wait_ms(now) as f64 / 1000.0);
                            let message = ProcessEvent {
                                event: Some(Event::Lease(convert::lease(lease, now))),
                            };
                            if events.send(Ok(message)).await.is_err() {
                                return;
                            }
                        }
                        if full {
                            continue;
                        }
                    }
                    Ok(_) => {}
                    Err(error) => {
                        tracing::warn!(error = %error, processor_id, "leasing failed; retrying");
                    }
                }
            }
            tokio::select! {
                () = &mut work => {}
                () = connection.room.notified() => {}
                changed = settings.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
                () = tokio::time::sleep(IDLE_POLL) => {}
                () = events.closed() => return,
                () = shutdown.cancelled() => return,
            }
        }
    }
}

/// Requeues the jobs of expired leases, about four times per lease timeout
/// (at least once a second), and keeps the queue gauges current.
pub async fn expire_leases(
    store: Arc<dyn QueueStore>,
    dispatcher: Arc<Dispatcher>,
    shutdown: CancellationToken,
) {
    loop {
        let period_ms = (store.settings().lease_timeout_ms() / 4).clamp(50, 1_000);
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(period_ms as u64)) => {}
            () = shutdown.cancelled() => return,
        }
        match store.expire_leases().await {
            Ok(expired) if !expired.is_empty() => {
                for lease in &expired {
                    tracing::warn!(
                        lease_id = lease.lease_id,
                        processor_id = lease.processor_id,
                        "lease expired; job requeued"
                    );
                }
                metrics::counter!("admesh_queue_leases_expired_total")
                    .increment(expired.len() as u64);
                dispatcher.released(expired.iter().map(|lease| lease.lease_id.as_str()));
                dispatcher.jobs_added();
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(error = %error, "expiring leases failed"),
        }
        if let Ok(gauges) = store.gauges().await {
            for (index, depth) in gauges.by_priority.iter().enumerate() {
                metrics::gauge!("admesh_queue_depth", "priority" => (index + 1).to_string())
                    .set(*depth as f64);
            }
            metrics::gauge!("admesh_queue_processing").set(gauges.processing as f64);
            metrics::gauge!("admesh_queue_starved").set(gauges.starved as f64);
        }
    }
}
