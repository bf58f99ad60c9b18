//! Layered configuration for the whole mesh: defaults < TOML file < `ADMESH_*`
//! environment variables. Unknown keys are rejected, and a bad value is
//! reported with the key that holds it, so a typo never starts a service with
//! a silently ignored setting.
//!
//! Environment variables nest with `__`: `ADMESH_DATABASE__URL`,
//! `ADMESH_AD_SERVER__BID_TIMEOUT_MS`. `ADMESH_CONFIG` names the file.

use std::{fmt, net::SocketAddr, path::Path};

use figment::{
    Figment,
    providers::{Env, Format, Toml},
};
use serde::Deserialize;

/// Why the configuration could not be loaded; the message names the key.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(String);

impl ConfigError {
    fn invalid(key: &str, problem: impl fmt::Display) -> Self {
        Self(format!("`{key}`: {problem}"))
    }
}

/// A value that never prints: passwords, signing keys, API keys.
#[derive(Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() {
            "\"\""
        } else {
            "[redacted]"
        })
    }
}

/// The configuration of every service; each binary reads its own section.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MeshConfig {
    pub database: DatabaseConfig,
    pub redis: RedisConfig,
    pub telemetry: TelemetryConfig,
    pub bid_engine: BidEngineConfig,
    pub ad_server: AdServerConfig,
    pub queue: QueueServiceConfig,
    pub analytics: AnalyticsConfig,
    pub agent: AgentConfig,
    pub edge: EdgeConfig,
    pub processor: ProcessorConfig,
}

/// The ad-processor (`ad-processor`, `admesh processor`): its flags read
/// these as `ADMESH_PROCESSOR__*` variables.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProcessorConfig {
    pub queue_url: String,
    pub id: Option<String>,
    pub capacity: u32,
    pub work_ms: u64,
}

impl Default for ProcessorConfig {
    fn default() -> Self {
        Self {
            queue_url: "http://127.0.0.1:50053".into(),
            id: None,
            capacity: 16,
            work_ms: 0,
        }
    }
}

/// SQL storage. The URL scheme picks the profile's database:
/// `sqlite:` (embedded) or `postgres:` (cluster).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    pub url: Secret,
    pub max_connections: u32,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: Secret::new("sqlite://admesh.db"),
            max_connections: 16,
        }
    }
}

/// Redis, for the cluster profile; no URL = in-process queue, events, budgets.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisConfig {
    pub url: Option<Secret>,
    /// The Redis Stream of impression and click events (one per mesh that
    /// shares a Redis).
    pub events_stream: String,
    /// The prefix of the queue's keys; one hash tag (`{…}`), so a Redis
    /// Cluster keeps them in one slot for the queue's scripts.
    pub queue_prefix: String,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            url: None,
            events_stream: "admesh:events".into(),
            queue_prefix: "{admesh:queue}".into(),
        }
    }
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One JSON object per line, with trace and request ids.
    #[default]
    Json,
    /// Human-readable lines.
    Text,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    pub log_format: LogFormat,
    /// An `EnvFilter` directive; `RUST_LOG` wins when set.
    pub log_level: String,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            log_format: LogFormat::Json,
            log_level: "info".into(),
        }
    }
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum AuctionKind {
    #[default]
    SecondPrice,
    FirstPrice,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BidEngineConfig {
    pub listen: SocketAddr,
    pub auction: AuctionKind,
}

impl Default for BidEngineConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 50052)),
            auction: AuctionKind::SecondPrice,
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdServerConfig {
    pub listen: SocketAddr,
    pub bid_engine_url: String,
    /// Upper bound of the bid-engine call; the caller's deadline can shorten it.
    pub bid_timeout_ms: u64,
    /// HMAC key of click tokens; generated per process when empty (clicks
    /// then only verify on the process that served them).
    pub click_secret: Secret,
    /// Base of click-tracking URLs handed to browsers.
    pub public_base_url: String,
    /// Consecutive bid-engine failures that open the circuit breaker.
    pub breaker_failures: u32,
    /// How long the breaker stays open before letting one trial call through.
    pub breaker_cooldown_ms: u64,
}

impl Default for AdServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 50051)),
            bid_engine_url: "http://127.0.0.1:50052".into(),
            bid_timeout_ms: 50,
            click_secret: Secret::default(),
            public_base_url: "http://127.0.0.1:8080".into(),
            breaker_failures: 5,
            breaker_cooldown_ms: 2_000,
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueueServiceConfig {
    pub listen: SocketAddr,
    /// Starting values of the live settings; once changed through the API
    /// the stored values win.
    pub anti_starvation: bool,
    pub default_max_wait_secs: u32,
    pub worker_count: u32,
    pub batch_size: u32,
    pub lease_timeout_secs: u32,
    pub max_attempts: u32,
    /// Processors `admesh up` runs in process (0 = none).
    pub embedded_processors: u32,
}

impl Default for QueueServiceConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 50053)),
            anti_starvation: true,
            default_max_wait_secs: 300,
            worker_count: 3,
            batch_size: 10,
            lease_timeout_secs: 30,
            max_attempts: 3,
            embedded_processors: 1,
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AnalyticsConfig {
    pub listen: SocketAddr,
    /// A click counts when its impression was at most this long before it.
    pub attribution_window_secs: u64,
    /// Stream entries another consumer left unacknowledged this long are
    /// taken over (that consumer died).
    pub claim_idle_ms: u64,
    /// Events read and counted per transaction.
    pub batch_size: usize,
    /// Batches written at once, each in its own transaction by its own
    /// consumer of the group (cluster profile; SQLite has one writer, so
    /// the embedded profile uses one).
    pub writers: usize,
    /// Counted events are kept this many days (de-duplication and the
    /// rolling per-ad windows need the last 7).
    pub retention_days: u32,
}

impl Default for AnalyticsConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 50054)),
            attribution_window_secs: 86_400,
            claim_idle_ms: 10_000,
            batch_size: 10_000,
            writers: 2,
            retention_days: 8,
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentConfig {
    pub listen: SocketAddr,
    pub ad_server_url: String,
    pub queue_url: String,
    pub bid_engine_url: String,
    pub analytics_url: String,
    /// Root of an OpenAI-compatible API (e.g. `http://127.0.0.1:8000/v1`);
    /// empty = every command is parsed offline.
    pub llm_url: String,
    pub llm_model: String,
    /// Sent as a bearer token; never logged.
    pub llm_api_key: Secret,
    /// Past this the agent falls back to the offline parser.
    pub llm_timeout_ms: u64,
}

impl Default for AgentConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 50055)),
            ad_server_url: "http://127.0.0.1:50051".into(),
            queue_url: "http://127.0.0.1:50053".into(),
            bid_engine_url: "http://127.0.0.1:50052".into(),
            analytics_url: "http://127.0.0.1:50054".into(),
            llm_url: String::new(),
            llm_model: "gpt-4o-mini".into(),
            llm_api_key: Secret::default(),
            llm_timeout_ms: 5_000,
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EdgeConfig {
    pub listen: SocketAddr,
    pub ad_server_url: String,
    pub bid_engine_url: String,
    pub queue_url: String,
    pub analytics_url: String,
    pub agent_url: String,
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// Password of the initial `admin` user (`ADMESH_ADMIN_PASSWORD`).
    pub admin_password: Secret,
    /// HS256 key of the bearer tokens; empty = one generated on first start
    /// and kept in SQL, shared by every replica.
    pub jwt_secret: Secret,
    /// How long a login's token is valid.
    pub token_ttl_secs: u64,
    /// Deadline of a forwarded call when the caller sends no shorter
    /// `grpc-timeout`.
    pub upstream_timeout_ms: u64,
    /// Origins browsers may call the edge from (`*` for any); empty = no
    /// CORS headers.
    pub cors_allowed_origins: Vec<String>,
}

impl Default for EdgeConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            ad_server_url: "http://127.0.0.1:50051".into(),
            bid_engine_url: "http://127.0.0.1:50052".into(),
            queue_url: "http://127.0.0.1:50053".into(),
            analytics_url: "http://127.0.0.1:50054".into(),
            agent_url: "http://127.0.0.1:50055".into(),
            max_body_bytes: 1024 * 1024,
            admin_password: Secret::default(),
            jwt_secret: Secret::default(),
            token_ttl_secs: 12 * 3600,
            upstream_timeout_ms: 10_000,
            cors_allowed_origins: Vec::new(),
        }
    }
}

impl MeshConfig {
    /// Loads defaults < `file` (when given) < `ADMESH_*` from the process
    /// environment, then validates.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let mut figment = Figment::new();
        if let Some(path) = file {
            if !path.exists() {
                return Err(ConfigError(format!(
                    "config file {} does not exist",
                    path.display()
                )));
            }
            figment = figment.merge(Toml::file(path));
        }
        let env = Env::prefixed("ADMESH_").ignore(&["config"]).map(|key| {
            // Documented shorthand for the initial admin's password.
            if key.as_str().eq_ignore_ascii_case("admin_password") {
                "edge.admin_password".into()
            } else {
                key.as_str().replace("__", ".").into()
            }
        });
        let config: MeshConfig = figment
            .merge(env)
            .extract()
            .map_err(|error| ConfigError(describe_figment_error(error)))?;
        config.validate()?;
        Ok(config)
    }

    /// Loads from the file named by `ADMESH_CONFIG`, if any.
    pub fn load_from_env() -> Result<Self, ConfigError> {
        match std::env::var_os("ADMESH_CONFIG") {
            Some(path) => Self::load(Some(Path::new(&path))),
            None => Self::load(None),
        }
    }

    /// Checks what types cannot: ranges, URL schemes.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let url = self.database.url.expose();
        if !(url.starts_with("sqlite:")
            || url.starts_with("postgres:")
            || url.starts_with("postgresql:"))
        {
            return Err(ConfigError::invalid(
                "database.url",
                "must start with sqlite: or postgres:",
            ));
        }
        if self.database.max_connections == 0 {
            return Err(ConfigError::invalid(
                "database.max_connections",
                "must be at least 1",
            ));
        }
        if let Some(redis) = &self.redis.url {
            let redis = redis.expose();
            if !(redis.starts_with("redis://") || redis.starts_with("rediss://")) {
                return Err(ConfigError::invalid(
                    "redis.url",
                    "must start with redis:// or rediss://",
                ));
            }
        }
        let analytics = &self.analytics;
        if !(1..=30 * 86_400).contains(&analytics.attribution_window_secs) {
            return Err(ConfigError::invalid(
                "analytics.attribution_window_secs",
                "must be between 1 and 2592000 (30 days)",
            ));
        }
        if !(100..=3_600_000).contains(&analytics.claim_idle_ms) {
            return Err(ConfigError::invalid(
                "analytics.claim_idle_ms",
                "must be between 100 and 3600000",
            ));
        }
        if !(1..=10_000).contains(&analytics.batch_size) {
            return Err(ConfigError::invalid(
                "analytics.batch_size",
                "must be between 1 and 10000",
            ));
        }
        if !(8..=3_650).contains(&analytics.retention_days) {
            return Err(ConfigError::invalid(
                "analytics.retention_days",
                "must be between 8 and 3650",
            ));
        }
        let queue = &self.queue;
        for (key, value, max) in [
            (
                "queue.default_max_wait_secs",
                queue.default_max_wait_secs,
                86_400,
            ),
            ("queue.worker_count", queue.worker_count, 1_000),
            ("queue.batch_size", queue.batch_size, 1_000),
            ("queue.lease_timeout_secs", queue.lease_timeout_secs, 3_600),
            ("queue.max_attempts", queue.max_attempts, 100),
            (
                "queue.embedded_processors",
                queue.embedded_processors.max(1),
                64,
            ),
        ] {
            if !(1..=max).contains(&value) {
                return Err(ConfigError::invalid(
                    key,
                    format!("must be between 1 and {max}"),
                ));
            }
        }
        if !(1..=10_000).contains(&self.ad_server.bid_timeout_ms) {
            return Err(ConfigError::invalid(
                "ad_server.bid_timeout_ms",
                "must be between 1 and 10000",
            ));
        }
        if self.ad_server.breaker_failures == 0 {
            return Err(ConfigError::invalid(
                "ad_server.breaker_failures",
                "must be at least 1",
            ));
        }
        if !(1..=600_000).contains(&self.ad_server.breaker_cooldown_ms) {
            return Err(ConfigError::invalid(
                "ad_server.breaker_cooldown_ms",
                "must be between 1 and 600000",
            ));
        }
        for (key, value) in [
            ("ad_server.bid_engine_url", &self.ad_server.bid_engine_url),
            ("ad_server.public_base_url", &self.ad_server.public_base_url),
            ("agent.ad_server_url", &self.agent.ad_server_url),
            ("agent.queue_url", &self.agent.queue_url),
            ("agent.bid_engine_url", &self.agent.bid_engine_url),
            ("agent.analytics_url", &self.agent.analytics_url),
            ("edge.ad_server_url", &self.edge.ad_server_url),
            ("edge.bid_engine_url", &self.edge.bid_engine_url),
            ("edge.queue_url", &self.edge.queue_url),
            ("edge.analytics_url", &self.edge.analytics_url),
            ("edge.agent_url", &self.edge.agent_url),
        ] {
            let urls_ok = value
                .split(',')
                .map(str::trim)
                .all(|url| url.starts_with("http://") || url.starts_with("https://"));
            if !urls_ok {
                return Err(ConfigError::invalid(
                    key,
                    "must be an http:// or https:// URL, or a comma-separated list of them",
                ));
            }
        }
        let llm_url = &self.agent.llm_url;
        if !(llm_url.is_empty()
            || llm_url.starts_with("http://")
            || llm_url.starts_with("https://"))
        {
            return Err(ConfigError::invalid(
                "agent.llm_url",
                "must be an http:// or https:// URL, or empty",
            ));
        }
        if !(1..=120_000).contains(&self.agent.llm_timeout_ms) {
            return Err(ConfigError::invalid(
                "agent.llm_timeout_ms",
                "must be between 1 and 120000",
            ));
        }
        if !(60..=30 * 86_400).contains(&self.edge.token_ttl_secs) {
            return Err(ConfigError::invalid(
                "edge.token_ttl_secs",
                "must be between 60 and 2592000",
            ));
        }
        if !(1..=600_000).contains(&self.edge.upstream_timeout_ms) {
            return Err(ConfigError::invalid(
                "edge.upstream_timeout_ms",
                "must be between 1 and 600000",
            ));
        }
        if self.edge.max_body_bytes < 1024 {
            return Err(ConfigError::invalid(
                "edge.max_body_bytes",
                "must be at least 1024",
            ));
        }
        Ok(())
    }

    /// True when Redis carries the queue, events, budgets and rate limits.
    pub fn is_cluster_profile(&self) -> bool {
        self.redis.url.is_some()
    }
}

/// Figment reports paths like `default.ad_server.bid_timeout_ms`; keep the
/// key and where it came from, drop the profile name.
fn describe_figment_error(error: figment::Error) -> String {
    error
        .into_iter()
        .map(|e| {
            let key = e.path.join(".");
            let source = e
                .metadata
                .as_ref()
                .map(|m| format!(" (from {})", m.name))
                .unwrap_or_default();
            if key.is_empty() {
                format!("{}{source}", e.kind)
            } else {
                format!("`{key}`: {}{source}", e.kind)
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment::Jail's closures return figment::Error
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_embedded_profile_on_the_spec_ports() {
        figment::Jail::expect_with(|_| {
            let config = MeshConfig::load(None).map_err(|e| e.to_string())?;
            assert!(config.database.url.expose().starts_with("sqlite:"));
            assert!(!config.is_cluster_profile());
            assert_eq!(config.ad_server.listen.port(), 50051);
            assert_eq!(config.bid_engine.listen.port(), 50052);
            assert_eq!(config.queue.listen.port(), 50053);
            assert_eq!(config.analytics.listen.port(), 50054);
            assert_eq!(config.agent.listen.port(), 50055);
            assert_eq!(config.edge.listen.port(), 8080);
            Ok(())
        });
    }

    #[test]
    fn env_overrides_file_overrides_defaults() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "admesh.toml",
                "[ad_server]\nbid_timeout_ms = 40\npublic_base_url = \"https://ads.example\"\n",
            )?;
            jail.set_env("ADMESH_AD_SERVER__BID_TIMEOUT_MS", "30");
            jail.set_env("ADMESH_ADMIN_PASSWORD", "s3cret-password");
            let config =
                MeshConfig::load(Some(Path::new("admesh.toml"))).map_err(|e| e.to_string())?;
            assert_eq!(config.ad_server.bid_timeout_ms, 30);
            assert_eq!(config.ad_server.public_base_url, "https://ads.example");
            assert_eq!(config.edge.admin_password.expose(), "s3cret-password");
            Ok(())
        });
    }

    #[test]
    fn unknown_keys_are_rejected_with_their_name() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("admesh.toml", "[ad_server]\nbid_timeout = 40\n")?;
            let error = MeshConfig::load(Some(Path::new("admesh.toml"))).expect_err("must fail");
            assert!(error.to_string().contains("bid_timeout"), "{error}");
            Ok(())
        });
    }

    #[test]
    fn a_bad_value_names_its_key() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("ADMESH_BID_ENGINE__LISTEN", "not-an-address");
            let error = MeshConfig::load(None).expect_err("must fail");
            assert!(error.to_string().contains("bid_engine.listen"), "{error}");
            Ok(())
        });
        figment::Jail::expect_with(|jail| {
            jail.set_env("ADMESH_DATABASE__URL", "mysql://nope");
            let error = MeshConfig::load(None).expect_err("must fail");
            assert!(error.to_string().contains("database.url"), "{error}");
            Ok(())
        });
    }

    #[test]
    fn secrets_never_print() {
        let secret = Secret::new("hunter2");
        assert_eq!(format!("{secret:?}"), "[redacted]");
        let config = MeshConfig::default();
        assert!(!format!("{config:?}").contains("admesh.db"));
    }
}
