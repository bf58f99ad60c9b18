//! `ad-processor`: works the queue-service's jobs (SPEC §4). Run as many as
//! you like; each opens one `Process` stream.

use std::process::ExitCode;

use admesh_common::{MeshConfig, shutdown::cancel_on_signal, telemetry::init_telemetry};
use admesh_queue_service::processor::{ProcessorOptions, run};
use clap::Parser;

/// mimalloc: markedly faster than the system allocator for the many small
/// allocations of a gRPC client (see docs/BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Analyses the ads the queue-service leases to it.
#[derive(Debug, Parser)]
#[command(name = "ad-processor", version)]
struct Options {
    /// The queue-service to work for.
    #[arg(
        long,
        env = "ADMESH_QUEUE_URL",
        default_value = "http://127.0.0.1:50053"
    )]
    queue_url: String,
    /// This processor's name in leases and the audit trail (default: host-pid).
    #[arg(long, env = "ADMESH_PROCESSOR_ID")]
    processor_id: Option<String>,
    /// Most jobs held at once; the queue's worker count may set fewer.
    #[arg(long, env = "ADMESH_PROCESSOR_CAPACITY", default_value_t = 16,
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    capacity: u32,
    /// Extra milliseconds each job takes, with progress reports (demos, tests).
    #[arg(long, env = "ADMESH_PROCESSOR_WORK_MS", default_value_t = 0)]
    work_ms: u64,
}

fn main() -> ExitCode {
    let options = Options::parse();
    let config = match MeshConfig::load_from_env() {
        Ok(config) => config,
        Err(error) => {
            eprintln!("ad-processor: {error}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("ad-processor: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let telemetry = match init_telemetry("ad-processor", &config.telemetry) {
            Ok(telemetry) => telemetry,
            Err(error) => {
                eprintln!("ad-processor: {error:#}");
                return ExitCode::from(2);
            }
        };
        let processor_id = options.processor_id.unwrap_or_else(|| {
            let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "processor".into());
            format!("{host}-{}", std::process::id())
        });
        let result = run(
            ProcessorOptions {
                queue_url: options.queue_url,
                processor_id,
                capacity: options.capacity,
                work_ms: options.work_ms,
            },
            cancel_on_signal(),
        )
        .await;
        telemetry.shutdown();
        match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("ad-processor: {error:#}");
                ExitCode::FAILURE
            }
        }
    })
}
