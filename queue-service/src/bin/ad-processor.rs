//! `ad-processor`: works the queue-service's jobs (SPEC §4). Run as many as
//! you like; each opens one `Process` stream. `admesh processor` is the same.

use std::process::ExitCode;

use admesh_common::{MeshConfig, shutdown::cancel_on_signal, telemetry::init_telemetry};
use admesh_queue_service::processor::{ProcessorArgs, run};
use clap::Parser;

/// mimalloc: markedly faster than the system allocator for the many small
/// allocations of a gRPC client (see docs/BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Analyses the ads the queue-service leases to it.
#[derive(Debug, Parser)]
#[command(name = "ad-processor", version)]
struct Options {
    #[command(flatten)]
    processor: ProcessorArgs,
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
        let result = run(options.processor.into_options(), cancel_on_signal()).await;
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
