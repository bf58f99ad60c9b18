//! The test sandbox: starts `admesh up` or single services as real OS
//! processes on `127.0.0.1:0` listeners, learns their addresses from what
//! they print, and gives fresh PostgreSQL databases. Nothing here sleeps to
//! wait for a condition it can poll.

#![allow(dead_code)]

use std::{
    collections::HashMap,
    io::{BufRead, BufReader},
    net::SocketAddr,
    path::PathBuf,
    process::{Child, Command, ExitStatus, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use tokio_util::sync::CancellationToken;

/// Generous bounds: they only decide when a broken test gives up.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

pub fn admesh_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_admesh"))
}

/// A child process whose stdout and stderr lines are collected.
pub struct Process {
    child: Child,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<Vec<String>>>,
}

fn collect(stream: impl std::io::Read + Send + 'static) -> Arc<Mutex<Vec<String>>> {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = lines.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            if let Ok(mut lines) = sink.lock() {
                lines.push(line);
            }
        }
    });
    lines
}

impl Process {
    pub fn spawn(args: &[&str], env: &[(&str, String)]) -> Self {
        let mut command = Command::new(admesh_bin());
        // Only the settings a test names reach the child.
        for (key, _) in std::env::vars() {
            if key.starts_with("ADMESH_") {
                command.env_remove(key);
            }
        }
        command
            .args(args)
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command.spawn().expect("spawn admesh");
        let stdout = collect(child.stdout.take().expect("stdout"));
        let stderr = collect(child.stderr.take().expect("stderr"));
        Self {
            child,
            stdout,
            stderr,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn stdout(&self) -> Vec<String> {
        self.stdout.lock().map(|l| l.clone()).unwrap_or_default()
    }

    pub fn stderr(&self) -> Vec<String> {
        self.stderr.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Polls stdout until `pick` returns a value for some line.
    pub fn wait_for_stdout<T>(&mut self, mut pick: impl FnMut(&str) -> Option<T>) -> T {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            if let Some(found) = self.stdout().iter().find_map(|line| pick(line)) {
                return found;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "process exited with {status} before printing what we wait for\nstdout:\n{}\nstderr:\n{}",
                    self.stdout().join("\n"),
                    self.stderr().join("\n")
                );
            }
            assert!(
                Instant::now() < deadline,
                "timed out; stdout:\n{}",
                self.stdout().join("\n")
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for the process to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                // Let the reader threads drain the pipes.
                std::thread::sleep(Duration::from_millis(50));
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "process did not exit in {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, then wait for a graceful exit.
    pub fn terminate(&mut self) -> ExitStatus {
        self.send_sigterm();
        self.wait_exit(Duration::from_secs(30))
    }

    /// kill -9: no chance to clean up.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM without waiting: the process starts its graceful shutdown.
    pub fn send_sigterm(&self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The gRPC services of the mesh: (name printed by `admesh up`, gRPC service).
pub const GRPC_SERVICES: &[(&str, &str)] = &[
    ("ad-server", "admesh.adserver.v1.AdServer"),
    ("bid-engine", "admesh.bid.v1.BidEngine"),
    ("queue-service", "admesh.queue.v1.QueueService"),
    ("analytics-service", "admesh.analytics.v1.AnalyticsService"),
    ("agent-service", "admesh.agent.v1.AgentService"),
];

/// `admesh up` on ephemeral ports with a fresh SQLite file.
pub struct Mesh {
    pub process: Process,
    pub addresses: HashMap<String, SocketAddr>,
    /// The SQLite database the mesh runs on.
    pub database_url: String,
    _data: Option<tempfile::TempDir>,
}

impl Mesh {
    pub fn start(extra_env: &[(&str, String)]) -> Self {
        let data = tempfile::tempdir().expect("tempdir");
        let mut mesh = Self::start_in(data.path(), extra_env);
        mesh._data = Some(data);
        mesh
    }

    /// `admesh up` keeping its SQLite file in `dir` (to restart on it).
    pub fn start_in(dir: &std::path::Path, extra_env: &[(&str, String)]) -> Self {
        let database_url = format!("sqlite://{}", dir.join("admesh.db").display());
        let mut env = vec![("ADMESH_DATABASE__URL", database_url.clone())];
        for key in [
            "ADMESH_AD_SERVER__LISTEN",
            "ADMESH_BID_ENGINE__LISTEN",
            "ADMESH_QUEUE__LISTEN",
            "ADMESH_ANALYTICS__LISTEN",
            "ADMESH_AGENT__LISTEN",
            "ADMESH_EDGE__LISTEN",
        ] {
            env.push((key, "127.0.0.1:0".to_string()));
        }
        env.extend(extra_env.iter().cloned());
        let mut process = Process::spawn(&["up"], &env);
        process.wait_for_stdout(|line| line.contains("mesh up").then_some(()));
        let addresses = process
            .stdout()
            .iter()
            .filter_map(|line| {
                let rest = line.strip_prefix("admesh: ")?;
                let (name, address) = rest.split_once(" listening on ")?;
                Some((name.to_string(), address.parse().ok()?))
            })
            .collect();
        Self {
            process,
            addresses,
            database_url,
            _data: None,
        }
    }

    pub fn address(&self, service: &str) -> SocketAddr {
        self.addresses[service]
    }

    pub fn url(&self, service: &str) -> String {
        format!("http://{}", self.address(service))
    }

    /// The mesh's warning and error log lines, for a failing assertion's
    /// message: the cause behind a safe error answer.
    pub fn problems(&self) -> String {
        self.process
            .stdout()
            .into_iter()
            .filter(|line| {
                (line.contains("\"WARN\"") || line.contains("\"ERROR\""))
                    && !line.contains("dependency unavailable")
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// `admesh serve <service>` on an ephemeral port; answers the process and
/// the address it logged.
pub fn spawn_service(
    service: &str,
    listen_key: &str,
    env: &[(&str, String)],
) -> (Process, SocketAddr) {
    let mut all_env = vec![(listen_key, "127.0.0.1:0".to_string())];
    all_env.extend(env.iter().cloned());
    let mut process = Process::spawn(&["serve", service], &all_env);
    let address = process.wait_for_stdout(|line| {
        let log: serde_json::Value = serde_json::from_str(line).ok()?;
        (log["message"] == "listening").then(|| log["addr"].as_str()?.parse().ok())?
    });
    (process, address)
}

/// Polls `grpc.health.v1.Health/Check` until the server says `want`.
pub async fn wait_for_health(
    address: SocketAddr,
    want: tonic_health::pb::health_check_response::ServingStatus,
) {
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    let deadline = Instant::now() + STARTUP_TIMEOUT;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{address}"))
        .expect("endpoint")
        .connect_lazy();
    let mut client = HealthClient::new(channel);
    loop {
        let answer = client
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .map(|r| r.into_inner().status());
        if matches!(&answer, Ok(status) if *status == want) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{address} never became {want:?} (last: {answer:?})"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls until the server at `address` reports SERVING.
pub async fn wait_until_serving(address: SocketAddr) {
    wait_for_health(
        address,
        tonic_health::pb::health_check_response::ServingStatus::Serving,
    )
    .await;
}

/// A PostgreSQL database made for one test and dropped after it.
pub struct TestPostgres {
    pub url: String,
    name: String,
    admin_url: String,
}

/// `TEST_POSTGRES_URL` (set by `scripts/test`).
pub fn postgres_admin_url() -> String {
    std::env::var("TEST_POSTGRES_URL").expect(
        "TEST_POSTGRES_URL is not set: run the suite with scripts/test, which starts PostgreSQL",
    )
}

/// `TEST_REDIS_URL` (set by `scripts/test`).
pub fn redis_url() -> String {
    std::env::var("TEST_REDIS_URL")
        .expect("TEST_REDIS_URL is not set: run the suite with scripts/test, which starts Redis")
}

/// A connection to the test Redis, to look at what the services keep there.
pub async fn redis_connection() -> redis::aio::MultiplexedConnection {
    redis::Client::open(redis_url())
        .expect("redis url")
        .get_multiplexed_async_connection()
        .await
        .expect("redis connection")
}

impl TestPostgres {
    pub async fn create() -> Self {
        use sqlx::Connection;
        let admin_url = postgres_admin_url();
        let name = format!("admesh_test_{}", uuid::Uuid::new_v4().simple());
        let mut connection = sqlx::PgConnection::connect(&admin_url)
            .await
            .expect("connect to test PostgreSQL");
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut connection)
            .await
            .expect("create test database");
        let base = admin_url
            .rsplit_once('/')
            .map(|(base, _)| base)
            .unwrap_or(&admin_url);
        Self {
            url: format!("{base}/{name}"),
            name,
            admin_url,
        }
    }

    /// Drops the database now (best effort; forced, so open pools do not
    /// block it). Otherwise dropping the value drops it.
    pub async fn drop_database(mut self) {
        let name = std::mem::take(&mut self.name);
        drop_database_named(&self.admin_url, &name).await;
    }
}

/// Drops `name`, trying again for a while: a service still shutting down
/// can reconnect between `FORCE` ending its sessions and the drop, which
/// then fails ("being accessed by other users").
async fn drop_database_named(admin_url: &str, name: &str) {
    use sqlx::Connection;
    let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
    for _ in 0..40 {
        if let Ok(mut connection) = sqlx::PgConnection::connect(admin_url).await
            && sqlx::query(&sql).execute(&mut connection).await.is_ok()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!("test database {name} could not be dropped");
}

/// A test that ends without `drop_database`, or fails before it, leaves
/// no database behind.
impl Drop for TestPostgres {
    fn drop(&mut self) {
        if self.name.is_empty() {
            return;
        }
        let (admin_url, name) = (self.admin_url.clone(), std::mem::take(&mut self.name));
        // A drop cannot await and may run on the test's own runtime: the
        // drop runs on a runtime of its own, on a thread of its own.
        let _ = std::thread::spawn(move || {
            if let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                runtime.block_on(drop_database_named(&admin_url, &name));
            }
        })
        .join();
    }
}

/// A TCP proxy to PostgreSQL that can be cut (dropping every connection and
/// refusing new ones) and restored: a database outage we control.
pub struct CuttableProxy {
    pub address: SocketAddr,
    up: Arc<AtomicBool>,
    connections: Arc<Mutex<CancellationToken>>,
}

impl CuttableProxy {
    pub async fn start(target: SocketAddr) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind proxy");
        let address = listener.local_addr().expect("address");
        let up = Arc::new(AtomicBool::new(false));
        let connections = Arc::new(Mutex::new(CancellationToken::new()));
        let (accept_up, accept_connections) = (up.clone(), connections.clone());
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if !accept_up.load(Ordering::SeqCst) {
                    continue; // dropped: connection refused in effect
                }
                let cut = accept_connections.lock().expect("lock").clone();
                tokio::spawn(async move {
                    let Ok(mut server) = tokio::net::TcpStream::connect(target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = cut.cancelled() => {}
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                    }
                });
            }
        });
        Self {
            address,
            up,
            connections,
        }
    }

    pub fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }

    pub fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        let mut token = self.connections.lock().expect("lock");
        token.cancel();
        *token = CancellationToken::new();
    }
}

/// A gRPC channel to `address` (connects on first use).
pub fn channel(address: SocketAddr) -> tonic::transport::Channel {
    tonic::transport::Endpoint::from_shared(format!("http://{address}"))
        .expect("endpoint")
        .connect_lazy()
}

/// A campaign with one ad, targeting only `placement` (so tests sharing a
/// database do not bid on each other's impressions).
pub fn placement_campaign(
    name: &str,
    placement: &str,
    bid_price: i64,
    daily_budget: i64,
) -> admesh_proto::bid::v1::Campaign {
    use admesh_proto::bid::v1 as pb;
    pb::Campaign {
        name: name.into(),
        advertiser_id: "adv-test".into(),
        bid_price,
        daily_budget,
        targeting: Some(pb::Targeting {
            placements: vec![placement.into()],
            ..Default::default()
        }),
        ads: vec![pb::Ad {
            title: format!("{name} ad"),
            image_url: "https://cdn.example.com/test.jpg".into(),
            redirect_url: format!("https://example.com/{placement}"),
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// A serve request for `user` on `placement` in the US, on mobile.
pub fn serve_request(user: &str, placement: &str) -> admesh_proto::adserver::v1::ServeRequest {
    admesh_proto::adserver::v1::ServeRequest {
        user_id: user.into(),
        placement_id: placement.into(),
        // No demo campaign targets New Zealand without interests.
        country_code: "NZ".into(),
        device_type: admesh_proto::common::v1::DeviceType::Mobile as i32,
        ..Default::default()
    }
}

/// Logs in at the edge at `base` (`http://host:port`): the bearer token, or
/// `None` while the edge cannot answer yet.
pub async fn try_edge_login(
    http: &reqwest::Client,
    base: &str,
    username: &str,
    password: &str,
) -> Option<String> {
    let response = http
        .post(format!("{base}/auth/login"))
        .json(&serde_json::json!({"username": username, "password": password}))
        .send()
        .await
        .ok()?;
    if response.status() != reqwest::StatusCode::OK {
        return None;
    }
    let answer: serde_json::Value = response.json().await.ok()?;
    answer["token"].as_str().map(str::to_owned)
}

/// Logs in at the edge, waiting for it to answer.
pub async fn edge_login(
    http: &reqwest::Client,
    base: &str,
    username: &str,
    password: &str,
) -> String {
    eventually("an edge login", STARTUP_TIMEOUT, || {
        try_edge_login(http, base, username, password)
    })
    .await
}

/// Polls `check` every 20 ms until it answers `Some`, failing after `within`.
pub async fn eventually<T, F, Fut>(what: &str, within: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
