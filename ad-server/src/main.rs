//! `ad-server`: runs the service alone (any profile). See `admesh up` for the
//! whole mesh in one process.

fn main() -> std::process::ExitCode {
    admesh_common::run_service(
        admesh_ad_server::SERVICE_NAME,
        None,
        |config| (config.ad_server.listen, "ad_server.listen"),
        admesh_ad_server::serve,
    )
}
