//! A bad configuration stops a service at start with exit status 2 and a
//! message naming the key, whichever layer it came from.

mod support;

use std::time::Duration;

use support::Process;

fn run_and_expect_rejection(args: &[&str], env: &[(&str, String)], key: &str) {
    let mut process = Process::spawn(args, env);
    let status = process.wait_exit(Duration::from_secs(30));
    assert_eq!(
        status.code(),
        Some(2),
        "expected exit 2; stderr: {:?}",
        process.stderr()
    );
    let stderr = process.stderr().join("\n");
    assert!(
        stderr.contains(key),
        "stderr does not name `{key}`: {stderr}"
    );
}

#[test]
fn a_bad_environment_value_names_its_key() {
    run_and_expect_rejection(
        &["serve", "bid-engine"],
        &[("ADMESH_BID_ENGINE__LISTEN", "not-an-address".into())],
        "bid_engine.listen",
    );
    run_and_expect_rejection(
        &["serve", "ad-server"],
        &[("ADMESH_AD_SERVER__BID_TIMEOUT_MS", "0".into())],
        "ad_server.bid_timeout_ms",
    );
    run_and_expect_rejection(
        &["up"],
        &[("ADMESH_DATABASE__URL", "mysql://x".into())],
        "database.url",
    );
}

#[test]
fn an_unknown_key_in_the_file_is_rejected() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("admesh.toml");
    std::fs::write(&file, "[queue]\nlisten = \"127.0.0.1:0\"\nworkers = 4\n")
        .expect("write config");
    run_and_expect_rejection(
        &["serve", "queue-service"],
        &[("ADMESH_CONFIG", file.display().to_string())],
        "workers",
    );
    run_and_expect_rejection(
        &[
            "--config",
            &file.display().to_string(),
            "serve",
            "queue-service",
        ],
        &[],
        "workers",
    );
}

#[test]
fn an_unknown_environment_key_is_rejected() {
    run_and_expect_rejection(
        &["serve", "edge"],
        &[("ADMESH_EDGE__LISTEN_ADDR", "x".into())],
        "listen_addr",
    );
}
