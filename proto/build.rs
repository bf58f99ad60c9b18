//! Compiles every `.proto` under `proto/` with protox (pure Rust, no protoc),
//! generates the tonic code once, and writes one file-descriptor set per
//! service for server reflection and for the edge's REST transcoding.

use std::{
    env,
    error::Error,
    fs,
    path::{Path, PathBuf},
};

/// (descriptor file stem, entry proto) for every service.
const SERVICES: &[(&str, &str)] = &[
    ("bid_engine", "admesh/bid/v1/bid_engine.proto"),
    ("ad_server", "admesh/adserver/v1/ad_server.proto"),
    ("queue", "admesh/queue/v1/queue.proto"),
    ("analytics", "admesh/analytics/v1/analytics.proto"),
    ("agent", "admesh/agent/v1/agent.proto"),
    ("edge", "admesh/edge/v1/edge.proto"),
];

/// Compiles `entries` with their imports and comments. The encoded set keeps
/// custom options (`google.api.http`, `admesh.common.v1.rest`), which a
/// round trip through `prost_types` would drop.
fn compiler(root: &Path, entries: &[&str]) -> Result<protox::Compiler, Box<dyn Error>> {
    let mut compiler = protox::Compiler::new([root])?;
    compiler.include_imports(true).include_source_info(true);
    compiler.open_files(entries)?;
    Ok(compiler)
}

fn main() -> Result<(), Box<dyn Error>> {
    let proto_root = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?).join("proto");
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    // tonic-prost-build does not forward rerun-if-changed for us.
    println!("cargo:rerun-if-changed={}", proto_root.display());

    for (stem, entry) in SERVICES {
        fs::write(
            out_dir.join(format!("{stem}_descriptor.bin")),
            compiler(&proto_root, &[entry])?.encode_file_descriptor_set(),
        )?;
    }

    let entries: Vec<&str> = SERVICES.iter().map(|(_, entry)| *entry).collect();
    let compiler = compiler(&proto_root, &entries)?;
    fs::write(
        out_dir.join("all_descriptor.bin"),
        compiler.encode_file_descriptor_set(),
    )?;
    let all = compiler.file_descriptor_set();
    tonic_prost_build::configure()
        // RPCs a service has not implemented yet answer UNIMPLEMENTED.
        .generate_default_stubs(true)
        .compile_fds(all)?;
    Ok(())
}
