//! The real serve path, in this process but over real sockets: the
//! bid-engine and the ad-server libraries, loaded with synthetic campaigns;
//! embedded profile (SQLite in a temporary directory) or cluster profile
//! (PostgreSQL and Redis: budgets charged by the Lua script, events to the
//! Redis stream).

use std::{net::SocketAddr, sync::Arc, time::Duration};

use admesh_bid_engine::{store::CampaignStore, synthetic::synthetic_campaigns};
use admesh_common::{Database, MeshConfig, Redis, ServiceContext};
use admesh_proto::adserver::v1::ad_server_client::AdServerClient;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub struct ServePath {
    pub ad_server: SocketAddr,
    shutdown: CancellationToken,
    tasks: Vec<JoinHandle<anyhow::Result<()>>>,
    _data: tempfile::TempDir,
}

impl ServePath {
    /// Embedded profile unless `cluster` names PostgreSQL and Redis URLs
    /// (the database should be empty: the campaigns are added to it).
    pub async fn start(
        campaigns: usize,
        cluster: Option<(String, String)>,
    ) -> anyhow::Result<Self> {
        let data = tempfile::tempdir()?;
        let (url, redis) = match &cluster {
            Some((postgres, redis)) => (postgres.clone(), Some(Redis::connect(redis).await?)),
            None => (
                format!("sqlite://{}", data.path().join("loadgen.db").display()),
                None,
            ),
        };
        let database = Database::connect_and_migrate(&url, 8).await?;
        CampaignStore::new(database.clone())
            .insert_all(&synthetic_campaigns(campaigns))
            .await?;

        let bid_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let ad_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let bid_engine = bid_listener.local_addr()?;
        let ad_server = ad_listener.local_addr()?;
        let mut config = MeshConfig::default();
        config.ad_server.bid_engine_url = format!("http://{bid_engine}");
        let shutdown = CancellationToken::new();
        let context = ServiceContext {
            config: Arc::new(config),
            database,
            redis,
            shutdown: shutdown.clone(),
        };
        let tasks = vec![
            tokio::spawn(admesh_bid_engine::serve(context.clone(), bid_listener)),
            tokio::spawn(admesh_ad_server::serve(context, ad_listener)),
        ];
        let path = Self {
            ad_server,
            shutdown,
            tasks,
            _data: data,
        };
        path.wait_for_fills().await?;
        Ok(path)
    }

    /// Until the bid-engine has loaded its campaigns, serves do not fill.
    async fn wait_for_fills(&self) -> anyhow::Result<()> {
        let channel = admesh_common::lazy_channel(&format!("http://{}", self.ad_server))?;
        let mut client = AdServerClient::new(channel);
        for attempt in 0..600 {
            if client
                .serve(crate::driver::request(attempt))
                .await
                .is_ok_and(|answer| answer.into_inner().filled)
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        anyhow::bail!("the serve path never filled a request")
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        for task in self.tasks {
            let _ = task.await;
        }
    }
}
