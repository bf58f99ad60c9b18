//! `analytics-service`: runs the service alone (any profile). See `admesh up` for the
//! whole mesh in one process.

fn main() -> std::process::ExitCode {
    admesh_common::run_service(
        admesh_analytics_service::SERVICE,
        None,
        admesh_analytics_service::serve,
    )
}
