//! `admesh`: the whole mesh in one process (`admesh up`, the default) and
//! the operator CLI.

/// mimalloc: markedly faster than the system allocator for the many small
/// allocations of a gRPC server (see docs/BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod cli;
mod demo;
mod mesh;
mod up;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    cli::run(cli)
}
