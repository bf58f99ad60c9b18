//! The thin `main` of every service binary: config → telemetry → storage →
//! bind → serve until a signal → drain → flush telemetry. A bad config exits
//! with status 2 and a message naming the key.

use std::{future::Future, net::SocketAddr, process::ExitCode, sync::Arc, time::Duration};

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::{
    config::MeshConfig, db::Database, health::Dependency, redis_conn::Redis, services::ServiceKind,
    shutdown::cancel_on_signal, telemetry::init_telemetry,
};

/// Everything a service needs from the process it runs in.
#[derive(Clone, Debug)]
pub struct ServiceContext {
    pub config: Arc<MeshConfig>,
    pub database: Database,
    /// Set in the cluster profile.
    pub redis: Option<Redis>,
    pub shutdown: CancellationToken,
}

impl ServiceContext {
    /// The dependencies whose health the service's health follows.
    pub fn dependencies(&self) -> Vec<Dependency> {
        let mut dependencies = vec![Dependency::Sql(self.database.clone())];
        if let Some(redis) = &self.redis {
            dependencies.push(Dependency::Redis(redis.clone()));
        }
        dependencies
    }
}

/// How long a service waits for Redis at start before giving up.
const REDIS_STARTUP_WAIT: Duration = Duration::from_secs(30);

/// Connects to SQL (lazily: health reports NOT_SERVING until it answers) and
/// to Redis when configured (retrying for a while at start).
pub async fn connect_storage(
    config: &MeshConfig,
    shutdown: &CancellationToken,
) -> anyhow::Result<(Database, Option<Redis>)> {
    let database = Database::connect_lazy(
        config.database.url.expose(),
        config.database.max_connections,
    )?;
    let redis = match &config.redis.url {
        None => None,
        Some(url) => {
            let deadline = tokio::time::Instant::now() + REDIS_STARTUP_WAIT;
            loop {
                match Redis::connect(url.expose()).await {
                    Ok(redis) => break Some(redis),
                    Err(error)
                        if tokio::time::Instant::now() < deadline && !shutdown.is_cancelled() =>
                    {
                        tracing::warn!(error = %format!("{error:#}"), "waiting for Redis");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                    Err(error) => return Err(error),
                }
            }
        }
    };
    Ok((database, redis))
}

/// Binds `address`, naming the config key on failure.
pub async fn bind(address: SocketAddr, key: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(address)
        .await
        .with_context(|| format!("`{key}`: cannot listen on {address}"))
}

/// Runs one service as a process, with the config file `config_file` (or
/// the one `ADMESH_CONFIG` names); `serve` runs it on the bound listener.
pub fn run_service<Serve, Fut>(
    service: ServiceKind,
    config_file: Option<std::path::PathBuf>,
    serve: Serve,
) -> ExitCode
where
    Serve: FnOnce(ServiceContext, TcpListener) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let name = service.name();
    let loaded = match config_file {
        Some(path) => MeshConfig::load(Some(&path)),
        None => MeshConfig::load_from_env(),
    };
    let config = match loaded {
        Ok(config) => config,
        Err(error) => {
            eprintln!("{name}: {error}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("{name}: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let telemetry = match init_telemetry(name, &config.telemetry) {
            Ok(guard) => guard,
            Err(error) => {
                eprintln!("{name}: {error:#}");
                return ExitCode::from(2);
            }
        };
        let result = async {
            let shutdown = cancel_on_signal();
            let (database, redis) = connect_storage(&config, &shutdown).await?;
            let listener = bind(service.listen(&config), service.listen_key()).await?;
            let context = ServiceContext {
                config: Arc::new(config),
                database: database.clone(),
                redis,
                shutdown,
            };
            let result = serve(context, listener).await;
            database.close().await;
            result
        }
        .await;
        let code = match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                tracing::error!(error = %format!("{error:#}"), "{name} failed");
                eprintln!("{name}: {error:#}");
                ExitCode::FAILURE
            }
        };
        telemetry.shutdown();
        code
    })
}
