//! The ad-processor: opens a `Process` stream, analyses each leased ad
//! with at most `concurrency` jobs at once (the queue sets it live), keeps
//! its leases alive with heartbeats and acknowledges completions in batches.
//! It reconnects when the queue-service goes away; jobs it held then are
//! finished if their lease survived, or redelivered by the queue if not.

use std::{
    collections::HashSet,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use admesh_common::{
    MeshChannel,
    time::{millis_of, now_millis},
};
use admesh_proto::queue::v1::{
    self as pb, process_event::Event, queue_service_client::QueueServiceClient,
};
use parking_lot::Mutex;
use tokio::{
    sync::{Semaphore, mpsc},
    task::JoinSet,
};
use tokio_stream::StreamExt;
use tokio_util::sync::CancellationToken;

use crate::{analysis::analyze, job::Job};

/// How a processor runs.
#[derive(Clone, Debug)]
pub struct ProcessorOptions {
    pub queue_url: String,
    /// Stable name, e.g. host and pid.
    pub processor_id: String,
    /// Most jobs held at once.
    pub capacity: u32,
    /// Extra time each job takes, with progress reported along the way
    /// (0 = as fast as the analysis runs). For demos and crash tests.
    pub work_ms: u64,
}

/// The processor's command-line flags (`ad-processor`, `admesh processor`).
#[derive(Clone, Debug, clap::Args)]
pub struct ProcessorArgs {
    /// The queue-service to work for.
    #[arg(
        long,
        env = "ADMESH_PROCESSOR__QUEUE_URL",
        default_value = "http://127.0.0.1:50053"
    )]
    pub queue_url: String,
    /// This processor's name in leases and the audit trail (default: host-pid).
    #[arg(long, env = "ADMESH_PROCESSOR__ID")]
    pub processor_id: Option<String>,
    /// Most jobs held at once; the queue's worker count may set fewer.
    #[arg(long, env = "ADMESH_PROCESSOR__CAPACITY", default_value_t = 16,
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub capacity: u32,
    /// Extra milliseconds each job takes, with progress reports (demos, tests).
    #[arg(long, env = "ADMESH_PROCESSOR__WORK_MS", default_value_t = 0)]
    pub work_ms: u64,
}

impl ProcessorArgs {
    pub fn into_options(self) -> ProcessorOptions {
        let processor_id = self.processor_id.unwrap_or_else(|| {
            let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "processor".into());
            format!("{host}-{}", std::process::id())
        });
        ProcessorOptions {
            queue_url: self.queue_url,
            processor_id,
            capacity: self.capacity,
            work_ms: self.work_ms,
        }
    }
}

/// Most completions sent in one `CompleteJobs` call.
const MAX_ACKS_PER_CALL: usize = 1_000;

/// Runs until `shutdown`, then finishes the jobs in hand and acknowledges
/// them.
pub async fn run(options: ProcessorOptions, shutdown: CancellationToken) -> anyhow::Result<()> {
    // Leases are held by the queue-service replica that streamed them, so
    // acknowledgements must go back to that one: no balancing here.
    anyhow::ensure!(
        !options.queue_url.contains(','),
        "a processor talks to one queue-service; got the list {:?}",
        options.queue_url
    );
    let channel = admesh_common::lazy_channel(&options.queue_url)?;
    let client = QueueServiceClient::new(channel);
    let worker = Arc::new(Worker::new(client.clone(), options.clone()));
    let (acks, ack_receiver) = mpsc::unbounded_channel();
    let acknowledger = tokio::spawn(acknowledge(client.clone(), ack_receiver));
    let heartbeats = tokio::spawn(heartbeat(Arc::clone(&worker), shutdown.clone()));
    let mut jobs = JoinSet::new();
    let mut failures = 0u32;
    while !shutdown.is_cancelled() {
        let opened = client
            .clone()
            .process(pb::ProcessRequest {
                processor_id: options.processor_id.clone(),
                capacity: options.capacity,
            })
            .await;
        match opened {
            Ok(stream) => {
                failures = 0;
                tracing::info!(
                    processor_id = options.processor_id,
                    "connected to the queue"
                );
                let mut stream = stream.into_inner();
                loop {
                    let message = tokio::select! {
                        message = stream.next() => message,
                        () = shutdown.cancelled() => break,
                    };
                    match message {
                        Some(Ok(pb::ProcessEvent { event: Some(event) })) => match event {
                            Event::Lease(lease) => {
                                worker.accept(&lease);
                                jobs.spawn(Arc::clone(&worker).work(lease, acks.clone()));
                            }
                            Event::Settings(settings) => {
                                worker.set_concurrency(settings.concurrency)
                            }
                        },
                        Some(Ok(_)) => {}
                        Some(Err(status)) => {
                            tracing::warn!(%status, "the Process stream failed");
                            break;
                        }
                        None => break,
                    }
                    // Reap finished job tasks as we go.
                    while jobs.try_join_next().is_some() {}
                }
            }
            Err(status) => {
                failures += 1;
                tracing::warn!(%status, "cannot open the Process stream; retrying");
            }
        }
        if shutdown.is_cancelled() {
            break;
        }
        let backoff = Duration::from_millis(100 * u64::from(failures.clamp(1, 20)));
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            () = shutdown.cancelled() => {}
        }
    }
    // Graceful: finish what is in hand, then send the last acknowledgements.
    while jobs.join_next().await.is_some() {}
    drop(acks);
    let _ = acknowledger.await;
    heartbeats.abort();
    Ok(())
}

/// The jobs in hand and how many may run at once.
struct Worker {
    client: QueueServiceClient<MeshChannel>,
    options: ProcessorOptions,
    permits: Arc<Semaphore>,
    concurrency: Mutex<u32>,
    held: Mutex<HashSet<String>>,
    /// Milliseconds between heartbeats: a third of the last lease's span.
    heartbeat_every: AtomicU64,
}

impl Worker {
    fn new(client: QueueServiceClient<MeshChannel>, options: ProcessorOptions) -> Self {
        Self {
            client,
            permits: Arc::new(Semaphore::new(1)),
            concurrency: Mutex::new(1),
            options,
            held: Mutex::default(),
            heartbeat_every: AtomicU64::new(1_000),
        }
    }

    /// Adopts the concurrency the queue asks for.
    fn set_concurrency(&self, wanted: u32) {
        let wanted = wanted.max(1);
        let mut current = self.concurrency.lock();
        if wanted > *current {
            self.permits.add_permits((wanted - *current) as usize);
        } else if wanted < *current {
            // Take the surplus permits out as jobs release them.
            let surplus = *current - wanted;
            let permits = Arc::clone(&self.permits);
            tokio::spawn(async move {
                if let Ok(taken) = permits.acquire_many_owned(surplus).await {
                    taken.forget();
                }
            });
        }
        tracing::info!(concurrency = wanted, "processor concurrency set");
        *current = wanted;
    }

    fn accept(&self, lease: &pb::JobLease) {
        self.held.lock().insert(lease.lease_id.clone());
        if let Some(expires_at) = &lease.expires_at {
            let span = (millis_of(expires_at) - now_millis()).max(300);
            self.heartbeat_every
                .store((span / 3) as u64, Ordering::Relaxed);
        }
    }

    async fn work(
        self: Arc<Self>,
        lease: pb::JobLease,
        acks: mpsc::UnboundedSender<pb::CompleteJobRequest>,
    ) {
        let Some(job) = lease.job.as_ref() else {
            // Nothing to work on: stop holding (and heartbeating) the lease;
            // it expires and the job is redelivered.
            tracing::warn!(lease_id = lease.lease_id, "a lease without its job");
            self.held.lock().remove(&lease.lease_id);
            return;
        };
        let Ok(_permit) = Arc::clone(&self.permits).acquire_owned().await else {
            return;
        };
        if self.options.work_ms > 0 {
            let steps = 4;
            for step in 1..steps {
                tokio::time::sleep(Duration::from_millis(self.options.work_ms / steps)).await;
                let report = pb::ReportProgressRequest {
                    lease_id: lease.lease_id.clone(),
                    progress: (step * 100 / steps) as u32,
                    message: format!("analysing ({step} of {steps})"),
                };
                match self.client.clone().report_progress(report).await {
                    Ok(ack) if !ack.get_ref().accepted => {
                        // The lease is gone (expired): another processor has the job.
                        self.held.lock().remove(&lease.lease_id);
                        return;
                    }
                    Ok(_) => {}
                    Err(status) => tracing::warn!(%status, "progress report failed"),
                }
            }
            tokio::time::sleep(Duration::from_millis(self.options.work_ms / steps)).await;
        }
        let analysis = analyze(&job_of(job));
        self.held.lock().remove(&lease.lease_id);
        let _ = acks.send(pb::CompleteJobRequest {
            lease_id: lease.lease_id,
            analysis: Some(analysis.to_proto()),
        });
    }
}

/// The creative of a leased job, as the analysis reads it.
fn job_of(job: &pb::AdJob) -> Job {
    let mut analysed = Job::new(
        crate::job::NewAd {
            title: job.title.clone(),
            description: job.description.clone(),
            game_family: job.game_family.clone(),
            target_audience: job.target_audience.clone(),
            visual_elements: job.visual_elements.clone(),
            call_to_action: job.call_to_action.clone(),
            duration: job.duration,
            priority: u8::try_from(job.priority).unwrap_or(1),
            max_wait_secs: job.max_wait_time,
        },
        job.ad_id.clone(),
        0,
    );
    analysed.attempt = job.attempt;
    analysed
}

/// Sends completions in batches, with up to [`ACK_CALLS_IN_FLIGHT`] calls
/// in flight, so finished jobs need not wait for an earlier batch's SQL
/// commit. Retries failed calls (completion is idempotent by lease id).
async fn acknowledge(
    client: QueueServiceClient<MeshChannel>,
    receiver: mpsc::UnboundedReceiver<pb::CompleteJobRequest>,
) {
    let sent = send_in_batches(
        receiver,
        ACK_CALLS_IN_FLIGHT,
        MAX_ACKS_PER_CALL,
        |completions| {
            let client = client.clone();
            async move {
                send_completions(client, completions).await;
                Ok::<(), std::convert::Infallible>(())
            }
        },
    );
    let Ok(()) = sent.await;
}

/// Sends what arrives on `receiver` in batches: whatever queued up since
/// the last call (at most `max_per_call`) goes in the next one, with up to
/// `calls_in_flight` calls at once. Returns once the receiver is closed and
/// every call has finished, or with the first call's error.
pub async fn send_in_batches<T, E, Call>(
    mut receiver: mpsc::UnboundedReceiver<T>,
    calls_in_flight: usize,
    max_per_call: usize,
    mut send: impl FnMut(Vec<T>) -> Call,
) -> Result<(), E>
where
    Call: std::future::Future<Output = Result<(), E>> + Send + 'static,
    E: Send + 'static,
{
    let mut calls = JoinSet::new();
    let mut receiving = true;
    loop {
        let first = tokio::select! {
            first = receiver.recv(), if receiving && calls.len() < calls_in_flight.max(1) => first,
            done = calls.join_next(), if !calls.is_empty() => {
                match done {
                    Some(Ok(result)) => result?,
                    Some(Err(failed)) if failed.is_panic() => {
                        std::panic::resume_unwind(failed.into_panic())
                    }
                    _ => {}
                }
                continue;
            }
            else => return Ok(()),
        };
        let Some(first) = first else {
            // Every sender is gone: finish the calls in flight, then stop.
            receiving = false;
            continue;
        };
        let mut batch = vec![first];
        while batch.len() < max_per_call {
            match receiver.try_recv() {
                Ok(more) => batch.push(more),
                Err(_) => break,
            }
        }
        calls.spawn(send(batch));
    }
}

/// Completion calls a processor keeps in flight at once.
const ACK_CALLS_IN_FLIGHT: usize = 16;

async fn send_completions(
    client: QueueServiceClient<MeshChannel>,
    completions: Vec<pb::CompleteJobRequest>,
) {
    let mut attempt = 0u32;
    loop {
        let request = pb::CompleteJobsRequest {
            completions: completions.clone(),
        };
        match client.clone().complete_jobs(request).await {
            Ok(_) => return,
            Err(status) if attempt < 50 => {
                attempt += 1;
                tracing::warn!(%status, attempt, "acknowledging completions failed; retrying");
                tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt.min(10)))).await;
            }
            Err(status) => {
                // The leases expire and the jobs are redone elsewhere.
                tracing::error!(%status, "giving up on acknowledgements");
                return;
            }
        }
    }
}

/// How often the heartbeat task looks whether a beat is due.
const HEARTBEAT_TICK: Duration = Duration::from_millis(100);

/// Extends the leases in hand every third of the lease span.
async fn heartbeat(worker: Arc<Worker>, shutdown: CancellationToken) {
    let mut last_beat = tokio::time::Instant::now();
    loop {
        tokio::select! {
            () = tokio::time::sleep(HEARTBEAT_TICK) => {}
            () = shutdown.cancelled() => return,
        }
        let every = Duration::from_millis(worker.heartbeat_every.load(Ordering::Relaxed));
        if last_beat.elapsed() < every {
            continue;
        }
        last_beat = tokio::time::Instant::now();
        let lease_ids: Vec<String> = worker.held.lock().iter().cloned().collect();
        if lease_ids.is_empty() {
            continue;
        }
        match worker
            .client
            .clone()
            .heartbeat(pb::HeartbeatRequest { lease_ids })
            .await
        {
            Ok(answer) => {
                let lost = answer.into_inner().lost_lease_ids;
                if !lost.is_empty() {
                    tracing::warn!(lost = lost.len(), "leases lost");
                    let mut held = worker.held.lock();
                    for lease in lost {
                        held.remove(&lease);
                    }
                }
            }
            Err(status) => tracing::warn!(%status, "heartbeat failed"),
        }
    }
}

#[cfg(test)]
mod batching_tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;

    #[tokio::test]
    async fn batches_overlap_up_to_the_limit_and_all_finish_after_the_senders_go() {
        let (sender, receiver) = mpsc::unbounded_channel::<u32>();
        let gate = Arc::new(Semaphore::new(0));
        let in_flight = Arc::new(AtomicUsize::new(0));
        let (entered, mut entries) = mpsc::unbounded_channel::<()>();
        let delivered = Arc::new(Mutex::new(Vec::new()));
        let sending = tokio::spawn(send_in_batches(receiver, 2, 100, {
            let (gate, in_flight, delivered) = (gate.clone(), in_flight.clone(), delivered.clone());
            move |batch: Vec<u32>| {
                let (gate, in_flight, delivered, entered) = (
                    gate.clone(),
                    in_flight.clone(),
                    delivered.clone(),
                    entered.clone(),
                );
                async move {
                    let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                    assert!(now <= 2, "{now} calls in flight");
                    let _ = entered.send(());
                    let _permit = gate.acquire().await.expect("gate open");
                    delivered.lock().extend(batch);
                    in_flight.fetch_sub(1, Ordering::SeqCst);
                    Ok::<(), String>(())
                }
            }
        }));
        // Two calls start and block; what arrives meanwhile waits.
        sender.send(1).expect("send");
        entries.recv().await.expect("first call");
        sender.send(2).expect("send");
        entries.recv().await.expect("second call");
        sender.send(3).expect("send");
        sender.send(4).expect("send");
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        drop(sender);
        gate.add_permits(10);
        sending.await.expect("no panic").expect("no error");
        let mut delivered = delivered.lock().clone();
        delivered.sort_unstable();
        assert_eq!(
            delivered,
            [1, 2, 3, 4],
            "each once, and all before returning"
        );
    }

    #[tokio::test]
    async fn a_failed_call_ends_the_sending_with_its_error() {
        let (sender, receiver) = mpsc::unbounded_channel::<u32>();
        sender.send(7).expect("send");
        drop(sender);
        let sent = send_in_batches(receiver, 4, 100, |batch: Vec<u32>| async move {
            Err::<(), String>(format!("refused {batch:?}"))
        })
        .await;
        assert_eq!(sent, Err("refused [7]".to_string()));
    }
}
