//! `queue-bench`: the queue-service under the BullMQ peer's workload, side
//! by side with BullMQ in the same run (`../shared/peers/bullmq`).
//!
//! N jobs with seeded random priorities 1–5 are submitted in batches of
//! 1,000, then one processor with 50 in flight and empty processing drains
//! them over the real `Process` stream, acknowledging in batches. The
//! dequeue order is checked for priority inversions and FIFO violations.
//!
//! `cargo run --release -p admesh-loadgen --bin queue-bench -- --jobs 50000`
//! (add `--bullmq ../shared/peers/bullmq/run.sh --redis-port 6390` for the
//! peer; `--postgres-url … --redis-url …` for the cluster profile).
//!
//! Bounded: stops after the jobs are drained or `--timeout-seconds`;
//! everything listens on 127.0.0.1.

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use admesh_common::{Database, MeshConfig, Redis, ServiceContext};
use admesh_proto::queue::v1::{
    self as pb, process_event::Event, queue_service_client::QueueServiceClient,
};
use admesh_queue_service::processor::send_in_batches;
use anyhow::Context;
use clap::Parser;
use tokio_stream::StreamExt;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Parser)]
#[command(about = "The queue-service vs. BullMQ on the same workload")]
struct Args {
    /// Jobs to submit and process.
    #[arg(long, default_value_t = 50_000)]
    jobs: usize,
    /// Jobs per SubmitAdsBatch call.
    #[arg(long, default_value_t = 1_000)]
    batch: usize,
    /// Jobs in flight at the processor.
    #[arg(long, default_value_t = 50)]
    in_flight: u32,
    /// Seed of the priority mix.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Rounds; the median is reported.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Gives up after this long per round.
    #[arg(long, default_value_t = 120)]
    timeout_seconds: u64,
    /// The BullMQ peer's run.sh, run once per round against --redis-port.
    #[arg(long)]
    bullmq: Option<std::path::PathBuf>,
    /// Redis port for the BullMQ peer (it FLUSHES that database).
    #[arg(long, default_value_t = 6390)]
    redis_port: u16,
    /// Cluster profile: an empty PostgreSQL database (needs --redis-url).
    #[arg(long, requires = "redis_url")]
    postgres_url: Option<String>,
    /// Cluster profile: Redis for the queue (needs --postgres-url).
    #[arg(long, requires = "postgres_url")]
    redis_url: Option<String>,
}

/// What one round of the queue-service measured.
#[derive(Debug, Clone, Copy)]
struct Round {
    enqueue_per_s: f64,
    process_per_s: f64,
    inversions: u64,
    fifo_violations: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(
        (1..=1_000_000).contains(&args.jobs),
        "--jobs must be 1..=1000000"
    );
    anyhow::ensure!(
        (1..=1_000).contains(&args.batch),
        "--batch must be 1..=1000"
    );
    anyhow::ensure!(
        (1..=1_000).contains(&args.in_flight),
        "--in-flight must be 1..=1000"
    );
    anyhow::ensure!((1..=10).contains(&args.rounds), "--rounds must be 1..=10");
    let profile = if args.postgres_url.is_some() {
        "cluster"
    } else {
        "embedded"
    };
    println!(
        "queue-bench: {} jobs, priorities 1-5, batches of {}, {} in flight, {profile} profile, {} rounds",
        args.jobs, args.batch, args.in_flight, args.rounds
    );
    let mut ours = Vec::new();
    let mut peers = Vec::new();
    for round in 1..=args.rounds {
        let scripts_before = redis_script_micros(args.redis_url.as_deref()).await?;
        let measured = tokio::time::timeout(
            Duration::from_secs(args.timeout_seconds),
            run_queue_service(&args, round as u64),
        )
        .await
        .context("the round did not finish in --timeout-seconds")??;
        println!(
            "round {round}: admesh enqueue {:.0} jobs/s, process {:.0} jobs/s, {} inversions, {} FIFO violations",
            measured.enqueue_per_s,
            measured.process_per_s,
            measured.inversions,
            measured.fifo_violations
        );
        if let (Some(before), Some(after)) = (
            scripts_before,
            redis_script_micros(args.redis_url.as_deref()).await?,
        ) {
            // Redis's one thread is what the cluster profile shares: its
            // time in our scripts is steadier than jobs/s on a busy machine.
            println!(
                "round {round}: admesh Redis script time {:.1} µs per job (enqueue and processing)",
                after.saturating_sub(before) as f64 / args.jobs as f64
            );
        }
        ours.push(measured);
        if let Some(script) = &args.bullmq {
            let peer = run_bullmq(script, args.redis_port, args.jobs, round)?;
            println!(
                "round {round}: bullmq enqueue {:.0} jobs/s, process {:.0} jobs/s, {} inversions, {} FIFO violations",
                peer.enqueue_per_s, peer.process_per_s, peer.inversions, peer.fifo_violations
            );
            peers.push(peer);
        }
    }
    let median = |values: &mut Vec<f64>| {
        values.sort_by(|a, b| a.total_cmp(b));
        values[values.len() / 2]
    };
    let ours_enqueue = median(&mut ours.iter().map(|r| r.enqueue_per_s).collect());
    let ours_process = median(&mut ours.iter().map(|r| r.process_per_s).collect());
    println!(
        "median: admesh ({profile}) enqueue {ours_enqueue:.0} jobs/s, process {ours_process:.0} jobs/s"
    );
    if !peers.is_empty() {
        let peer_enqueue = median(&mut peers.iter().map(|r| r.enqueue_per_s).collect());
        let peer_process = median(&mut peers.iter().map(|r| r.process_per_s).collect());
        println!(
            "median: bullmq enqueue {peer_enqueue:.0} jobs/s, process {peer_process:.0} jobs/s"
        );
        println!(
            "ratio admesh/bullmq: enqueue {:.2}x, process {:.2}x",
            ours_enqueue / peer_enqueue,
            ours_process / peer_process
        );
    }
    let violations: u64 = ours.iter().map(|r| r.inversions + r.fifo_violations).sum();
    anyhow::ensure!(violations == 0, "ordering violations: {violations}");
    Ok(())
}

/// Microseconds Redis has spent running scripts since its statistics were
/// last reset (`INFO commandstats`, `evalsha` and `eval`); `None` without
/// Redis (the embedded profile).
async fn redis_script_micros(url: Option<&str>) -> anyhow::Result<Option<u64>> {
    let Some(url) = url else {
        return Ok(None);
    };
    let stats: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut Redis::connect(url).await?.connection())
        .await?;
    Ok(Some(script_micros(&stats)))
}

/// The `usec` of the `evalsha` and `eval` lines of `INFO commandstats`.
fn script_micros(stats: &str) -> u64 {
    stats
        .lines()
        .filter(|line| line.starts_with("cmdstat_evalsha:") || line.starts_with("cmdstat_eval:"))
        .filter_map(|line| {
            let (_, fields) = line.split_once(':')?;
            let usec = fields.split(',').find_map(|f| f.strip_prefix("usec="))?;
            usec.parse::<u64>().ok()
        })
        .sum()
}

/// Priorities from a small seeded generator (splitmix64), 1..=5.
fn priorities(count: usize, seed: u64) -> Vec<i32> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (0..count)
        .map(|_| {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            1 + (z % 5) as i32
        })
        .collect()
}

async fn run_queue_service(args: &Args, seed: u64) -> anyhow::Result<Round> {
    let data = tempfile::tempdir()?;
    let (url, redis) = match (&args.postgres_url, &args.redis_url) {
        (Some(postgres), Some(redis)) => (postgres.clone(), Some(Redis::connect(redis).await?)),
        _ => (
            format!("sqlite://{}", data.path().join("queue.db").display()),
            None,
        ),
    };
    let database = Database::connect_and_migrate(&url, 8).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let mut config = MeshConfig::default();
    config.queue.worker_count = args.in_flight;
    config.queue.batch_size = args.in_flight;
    config.redis.queue_prefix = format!("{{admesh:queue-bench:{}:{seed}}}", std::process::id());
    let shutdown = CancellationToken::new();
    let context = ServiceContext {
        config: Arc::new(config),
        database,
        redis,
        shutdown: shutdown.clone(),
    };
    let server = tokio::spawn(admesh_queue_service::serve(context, listener));
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{address}"))?
        .tcp_nodelay(true)
        .connect_lazy();
    // The queue loads from SQL before it answers.
    let ready_by = Instant::now() + Duration::from_secs(30);
    while QueueServiceClient::new(channel.clone())
        .get_queue_config(pb::GetQueueConfigRequest {})
        .await
        .is_err()
    {
        anyhow::ensure!(
            Instant::now() < ready_by,
            "the queue-service did not come up"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut client = QueueServiceClient::new(channel);

    // (a) enqueue
    let priorities = priorities(args.jobs, seed);
    let mut sequence: HashMap<String, (usize, i32)> = HashMap::with_capacity(args.jobs);
    let started = Instant::now();
    for (chunk_index, chunk) in priorities.chunks(args.batch).enumerate() {
        let ads = chunk
            .iter()
            .map(|priority| pb::SubmitAdRequest {
                title: "Benchmark ad".into(),
                game_family: "Bench".into(),
                priority: *priority,
                ..Default::default()
            })
            .collect();
        let jobs = client
            .submit_ads_batch(pb::SubmitAdsBatchRequest { ads })
            .await?
            .into_inner()
            .ads;
        for (offset, job) in jobs.into_iter().enumerate() {
            let index = chunk_index * args.batch + offset;
            sequence.insert(job.ad_id, (index, priorities[index]));
        }
    }
    let enqueue_seconds = started.elapsed().as_secs_f64();

    // (b) process: empty work, acknowledgements batched.
    let started = Instant::now();
    let mut stream = client
        .process(pb::ProcessRequest {
            processor_id: "bench".into(),
            capacity: args.in_flight,
        })
        .await?
        .into_inner();
    let (acks, ack_receiver) = tokio::sync::mpsc::unbounded_channel::<String>();
    let ack_client = client.clone();
    // Completions are acknowledged as BullMQ's workers do: each finished job
    // is answered while others are still being answered (BullMQ's 50
    // workers each await their own `moveToFinished`). Here whatever finished
    // goes in one `CompleteJobs`, with as many of those in flight at once as
    // jobs may be (`--in-flight`).
    let acknowledged = Arc::new(AtomicUsize::new(0));
    let acknowledger = tokio::spawn(send_in_batches(
        ack_receiver,
        args.in_flight as usize,
        usize::MAX,
        {
            let acknowledged = Arc::clone(&acknowledged);
            move |lease_ids: Vec<String>| {
                let mut client = ack_client.clone();
                let acknowledged = Arc::clone(&acknowledged);
                async move {
                    let completions = lease_ids
                        .into_iter()
                        .map(|lease_id| pb::CompleteJobRequest {
                            lease_id,
                            analysis: Some(pb::AdAnalysis {
                                quality_score: 50,
                                recommendation: pb::Recommendation::Review as i32,
                                ..Default::default()
                            }),
                        })
                        .collect::<Vec<_>>();
                    let count = completions.len();
                    let answer = client
                        .complete_jobs(pb::CompleteJobsRequest { completions })
                        .await?
                        .into_inner();
                    anyhow::ensure!(
                        answer.acks.iter().all(|ack| ack.accepted),
                        "a completion was refused"
                    );
                    acknowledged.fetch_add(count, Ordering::Relaxed);
                    Ok(())
                }
            }
        },
    ));
    let mut order = Vec::with_capacity(args.jobs);
    while order.len() < args.jobs {
        match stream.next().await {
            Some(Ok(pb::ProcessEvent {
                event: Some(Event::Lease(lease)),
            })) => {
                let job = lease.job.context("a lease without its job")?;
                let seen = sequence
                    .get(&job.ad_id)
                    .copied()
                    .context("a job the bench did not submit")?;
                order.push(seen);
                acks.send(lease.lease_id)?;
            }
            Some(Ok(_)) => {}
            Some(Err(status)) => anyhow::bail!("Process stream failed: {status}"),
            None => anyhow::bail!("Process stream ended early"),
        }
    }
    drop(acks);
    acknowledger.await??;
    let acknowledged = acknowledged.load(Ordering::Relaxed);
    let process_seconds = started.elapsed().as_secs_f64();
    anyhow::ensure!(acknowledged == args.jobs, "acknowledged {acknowledged}");
    drop(stream);
    shutdown.cancel();
    server.await??;

    let (inversions, fifo_violations) = ordering_violations(&order);
    Ok(Round {
        enqueue_per_s: args.jobs as f64 / enqueue_seconds,
        process_per_s: args.jobs as f64 / process_seconds,
        inversions,
        fifo_violations,
    })
}

/// Counted as the peer counts them: a job dequeued while a higher-priority
/// job still waited is an inversion; within a priority, a job dequeued after
/// one submitted later is a FIFO violation. (Our 5 is BullMQ's 1.)
fn ordering_violations(order: &[(usize, i32)]) -> (u64, u64) {
    let mut inversions = 0;
    let mut highest_later = 0;
    for (_, priority) in order.iter().rev() {
        if highest_later > *priority {
            inversions += 1;
        }
        highest_later = highest_later.max(*priority);
    }
    let mut fifo_violations = 0;
    let mut latest_seen = [None::<usize>; 6];
    for (sequence, priority) in order {
        let slot = &mut latest_seen[*priority as usize];
        match slot {
            Some(latest) if *sequence < *latest => fifo_violations += 1,
            _ => *slot = Some(*sequence),
        }
    }
    (inversions, fifo_violations)
}

fn run_bullmq(
    script: &std::path::Path,
    redis_port: u16,
    jobs: usize,
    round: usize,
) -> anyhow::Result<Round> {
    let output = std::process::Command::new(script)
        .env("REDIS_PORT", redis_port.to_string())
        .env("N", jobs.to_string())
        .env("SEED", round.to_string())
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    anyhow::ensure!(
        output.status.success(),
        "the BullMQ peer failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .last()
        .context("no output from the BullMQ peer")?;
    let figures: serde_json::Value = serde_json::from_str(line).context("the peer's JSON line")?;
    let number = |key: &str| figures[key].as_f64().unwrap_or(f64::NAN);
    Ok(Round {
        enqueue_per_s: number("enqueue_jobs_per_s"),
        process_per_s: number("process_jobs_per_s"),
        inversions: number("priority_inversions") as u64,
        fifo_violations: number("fifo_violations") as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn violations_are_counted_like_the_peer() {
        assert_eq!(ordering_violations(&[(0, 5), (1, 5), (2, 3)]), (0, 0));
        assert_eq!(ordering_violations(&[(0, 3), (1, 5)]), (1, 0));
        assert_eq!(ordering_violations(&[(1, 5), (0, 5)]), (0, 1));
    }

    #[test]
    fn the_priority_mix_is_seeded_and_covers_one_to_five() {
        let mix = priorities(1_000, 7);
        assert_eq!(mix, priorities(1_000, 7));
        assert!((1..=5).all(|p| mix.contains(&p)));
    }

    #[test]
    fn script_time_is_read_from_the_evalsha_and_eval_lines() {
        let stats = "# Commandstats\r\n\
            cmdstat_evalsha:calls=17709,usec=3370712,usec_per_call=190.34,rejected_calls=0,failed_calls=0\r\n\
            cmdstat_eval:calls=3,usec=88,usec_per_call=29.33,rejected_calls=0,failed_calls=0\r\n\
            cmdstat_zadd:calls=12626,usec=252000,usec_per_call=19.96,rejected_calls=0,failed_calls=0\r\n";
        assert_eq!(script_micros(stats), 3_370_800);
        assert_eq!(script_micros("# Commandstats\r\n"), 0);
    }
}
