//! `bid-engine`: runs the service alone (any profile). See `admesh up` for the
//! whole mesh in one process.

fn main() -> std::process::ExitCode {
    admesh_common::run_service(admesh_bid_engine::SERVICE, None, admesh_bid_engine::serve)
}
