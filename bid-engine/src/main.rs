//! `bid-engine`: runs the service alone (any profile). See `admesh up` for the
//! whole mesh in one process.

/// mimalloc: markedly faster than the system allocator for the many small
/// allocations of a gRPC server (see docs/BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    admesh_common::run_service(admesh_bid_engine::SERVICE, None, admesh_bid_engine::serve)
}
