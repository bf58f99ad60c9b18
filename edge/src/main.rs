//! `edge`: the REST edge alone (any profile). See `admesh up` for the whole
//! mesh in one process.

fn main() -> std::process::ExitCode {
    admesh_common::run_service(admesh_edge::SERVICE, None, admesh_edge::serve)
}
