//! The Redis connection of the cluster profile: one multiplexed connection
//! per process that reconnects by itself after a Redis restart.
//!
//! redis-rs' `ConnectionManager` reconnects after a dropped connection, but
//! a reconnect attempted while the address accepts connections and closes
//! them at once (a proxy in front of a Redis that is down) can hang for
//! ever, and every later command with it. So the health probe, which pings
//! every second, replaces a manager whose ping does not answer in time.

use std::{sync::Arc, time::Duration};

use anyhow::Context;
use arc_swap::ArcSwap;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

#[derive(Clone)]
pub struct Redis {
    client: redis::Client,
    manager: Arc<ArcSwap<ConnectionManager>>,
}

/// A ping slower than this counts as a dead connection.
const PING_TIMEOUT: Duration = Duration::from_secs(2);

fn manager_config() -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_connection_timeout(Duration::from_secs(2))
        .set_response_timeout(Duration::from_secs(5))
        .set_number_of_retries(3)
}

impl std::fmt::Debug for Redis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Redis")
    }
}

impl Redis {
    /// Connects, retrying for a few seconds so services can start alongside
    /// Redis. The URL is a secret (it may carry a password): never logged.
    pub async fn connect(url: &str) -> anyhow::Result<Self> {
        let client = redis::Client::open(url).context("`redis.url`: not a valid Redis URL")?;
        let manager = ConnectionManager::new_with_config(client.clone(), manager_config())
            .await
            .context("connecting to Redis")?;
        Ok(Self {
            client,
            manager: Arc::new(ArcSwap::from_pointee(manager)),
        })
    }

    /// A handle to the shared connection; cheap to clone. Take a fresh one
    /// per use: the connection may be replaced (see the module docs).
    pub fn connection(&self) -> ConnectionManager {
        self.manager.load().as_ref().clone()
    }

    /// Opens a new shared connection in place of the current one.
    async fn replace_connection(&self) -> anyhow::Result<()> {
        let fresh = tokio::time::timeout(
            PING_TIMEOUT * 2,
            ConnectionManager::new_with_config(self.client.clone(), manager_config()),
        )
        .await
        .map_err(|_| anyhow::anyhow!("reconnecting to Redis timed out"))?
        .context("reconnecting to Redis")?;
        self.manager.store(Arc::new(fresh));
        tracing::info!("replaced the Redis connection");
        Ok(())
    }

    /// A dedicated connection for SUBSCRIBE (pub/sub cannot share the
    /// multiplexed one). Callers reconnect when its stream ends.
    pub async fn pubsub(&self) -> anyhow::Result<redis::aio::PubSub> {
        self.client
            .get_async_pubsub()
            .await
            .context("opening a Redis pub/sub connection")
    }

    /// A connection of its own, for commands that block (XREADGROUP BLOCK):
    /// on the shared connection they would hold up every other command.
    pub async fn dedicated_connection(&self) -> anyhow::Result<redis::aio::MultiplexedConnection> {
        self.client
            .get_multiplexed_async_connection()
            .await
            .context("opening a Redis connection")
    }

    /// One round trip, for health checks. A ping that does not answer in
    /// time replaces the connection (when Redis can be reached again).
    pub async fn ping(&self) -> anyhow::Result<()> {
        let mut connection = self.connection();
        let command = redis::cmd("PING");
        let ping = command.query_async::<String>(&mut connection);
        let error = match tokio::time::timeout(PING_TIMEOUT, ping).await {
            Ok(Ok(reply)) if reply == "PONG" => return Ok(()),
            Ok(Ok(reply)) => anyhow::anyhow!("unexpected PING reply {reply:?}"),
            Ok(Err(error)) if !error.is_io_error() => {
                return Err(anyhow::Error::new(error).context("Redis ping"));
            }
            Ok(Err(error)) => anyhow::Error::new(error).context("Redis ping"),
            Err(_) => anyhow::anyhow!("Redis ping: no answer within {PING_TIMEOUT:?}"),
        };
        if let Err(reconnect) = self.replace_connection().await {
            tracing::debug!(error = %format!("{reconnect:#}"), "Redis still unreachable");
        }
        Err(error)
    }
}
