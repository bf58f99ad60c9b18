//! The Redis connection of the cluster profile: one multiplexed connection
//! per process that reconnects by itself after a Redis restart.

use std::time::Duration;

use anyhow::Context;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

#[derive(Clone)]
pub struct Redis {
    client: redis::Client,
    manager: ConnectionManager,
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
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Duration::from_secs(2))
            .set_response_timeout(Duration::from_secs(5))
            .set_number_of_retries(3);
        let manager = ConnectionManager::new_with_config(client.clone(), config)
            .await
            .context("connecting to Redis")?;
        Ok(Self { client, manager })
    }

    /// A handle to the shared connection; cheap to clone.
    pub fn connection(&self) -> ConnectionManager {
        self.manager.clone()
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

    /// One round trip, for health checks.
    pub async fn ping(&self) -> anyhow::Result<()> {
        let mut connection = self.manager.clone();
        let reply: String = redis::cmd("PING")
            .query_async(&mut connection)
            .await
            .context("Redis ping")?;
        anyhow::ensure!(reply == "PONG", "unexpected PING reply {reply:?}");
        Ok(())
    }
}
