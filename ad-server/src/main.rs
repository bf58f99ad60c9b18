//! `ad-server`: runs the service alone (any profile). See `admesh up` for the
//! whole mesh in one process.

fn main() -> std::process::ExitCode {
    admesh_common::run_service(admesh_ad_server::SERVICE, None, admesh_ad_server::serve)
}
