//! The in-memory campaign cache behind the auction, and how it stays fresh.
//!
//! - A change made here is applied to the index before the RPC answers.
//! - A change made by another replica arrives on the Redis channel
//!   [`CHANGES_CHANNEL`] and triggers a reload from SQL (coalesced: one reload
//!   in flight, one queued), well inside the spec's one second.
//! - A full reload also runs every [`SAFETY_RELOAD`], and after the pub/sub
//!   connection comes back, in case a message was missed.

use std::{sync::Arc, time::Duration};

use admesh_common::{
    Redis,
    time::{now_millis, utc_day},
};
use arc_swap::ArcSwap;
use futures_util::StreamExt;
use tokio::sync::{Mutex, Notify};
use tokio_util::sync::CancellationToken;

use crate::{
    auction::AuctionIndex,
    campaign::{Campaign, CampaignStatus},
    ledger::SpendLedger,
    store::{CampaignFilter, CampaignStore},
};

/// The Redis pub/sub channel announcing changed campaigns:
/// `"<replica id> <campaign id>"`.
pub const CHANGES_CHANNEL: &str = "admesh:campaigns:changed";

const SAFETY_RELOAD: Duration = Duration::from_secs(30);
const RETRY_DELAY: Duration = Duration::from_millis(500);
/// How often spend is written behind to SQL.
const JOURNAL_INTERVAL: Duration = Duration::from_millis(250);

/// Builds an index on the blocking pool: over thousands of campaigns a
/// build takes milliseconds, which on an async worker would stall every bid
/// queued behind it.
async fn off_the_workers(
    build: impl FnOnce() -> AuctionIndex + Send + 'static,
) -> anyhow::Result<AuctionIndex> {
    tokio::task::spawn_blocking(build)
        .await
        .map_err(|error| anyhow::anyhow!("building the auction index failed: {error}"))
}

#[derive(Debug)]
pub struct Catalog {
    index: ArcSwap<AuctionIndex>,
    /// Set once the first load from SQL succeeded.
    loaded: std::sync::atomic::AtomicBool,
    store: CampaignStore,
    redis: Option<Redis>,
    /// Serializes index writers so a slow full reload cannot overwrite a
    /// newer local change with an older snapshot.
    writer: Mutex<()>,
    reload_wanted: Notify,
    /// Tags this replica's change announcements, so it does not reload
    /// for a change it has already applied.
    replica_id: String,
}

impl Catalog {
    pub fn new(store: CampaignStore, redis: Option<Redis>) -> Self {
        Self {
            index: ArcSwap::from_pointee(AuctionIndex::build([])),
            loaded: std::sync::atomic::AtomicBool::new(false),
            store,
            redis,
            writer: Mutex::new(()),
            reload_wanted: Notify::new(),
            replica_id: uuid::Uuid::new_v4().simple().to_string(),
        }
    }

    pub fn store(&self) -> &CampaignStore {
        &self.store
    }

    /// The current index, owned (for holding across an await).
    pub fn index_arc(&self) -> Arc<AuctionIndex> {
        self.index.load_full()
    }

    pub fn is_loaded(&self) -> bool {
        self.loaded.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Reads every active campaign from SQL and swaps the index.
    pub async fn reload(&self) -> anyhow::Result<()> {
        let _writer = self.writer.lock().await;
        let filter = CampaignFilter {
            status: Some(CampaignStatus::Active),
            ..CampaignFilter::default()
        };
        let campaigns = self.store.find(&filter, utc_day(now_millis())).await?;
        let index =
            off_the_workers(move || AuctionIndex::build(campaigns.into_iter().map(Arc::new)))
                .await?;
        tracing::debug!(campaigns = index.len(), "campaign index reloaded");
        self.replace_index(index);
        Ok(())
    }

    /// Swaps in `index`; the old one is dropped off the async workers too
    /// (unless a bid still holds it, which then drops it).
    fn replace_index(&self, index: AuctionIndex) {
        let old = self.index.swap(Arc::new(index));
        tokio::task::spawn_blocking(move || drop(old));
    }

    /// Applies a change committed by this replica, then tells the others.
    pub async fn changed(&self, campaign: Campaign, ledger: &dyn SpendLedger) {
        {
            let _writer = self.writer.lock().await;
            let current = self.index.load_full();
            let changed = Arc::new(campaign.clone());
            match off_the_workers(move || current.with_change(changed)).await {
                Ok(index) => self.replace_index(index),
                // The next reload from SQL brings the change.
                Err(error) => {
                    tracing::error!(error = %format!("{error:#}"), campaign_id = %campaign.id, "applying a campaign change failed");
                    self.reload_wanted.notify_one();
                }
            }
        }
        ledger.limits_changed();
        if let Some(redis) = &self.redis {
            let mut connection = redis.connection();
            let published: redis::RedisResult<i64> = redis::cmd("PUBLISH")
                .arg(CHANGES_CHANNEL)
                .arg(format!("{} {}", self.replica_id, campaign.id))
                .query_async(&mut connection)
                .await;
            if let Err(error) = published {
                // Other replicas still catch up at their next safety reload.
                tracing::warn!(%error, campaign_id = %campaign.id, "could not announce a campaign change");
            }
        }
    }

    /// Runs the reloader, the change listener (cluster profile) and the spend
    /// journal until `shutdown`; flushes the journal last.
    pub async fn maintain(
        self: Arc<Self>,
        ledger: Arc<dyn SpendLedger>,
        shutdown: CancellationToken,
    ) {
        let reloader =
            tokio::spawn(Arc::clone(&self).reload_loop(Arc::clone(&ledger), shutdown.clone()));
        let listener = self.redis.clone().map(|redis| {
            tokio::spawn(Arc::clone(&self).listen_for_changes(redis, shutdown.clone()))
        });
        let mut ticker = tokio::time::interval(JOURNAL_INTERVAL);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                () = shutdown.cancelled() => break,
            }
            if let Err(error) = ledger.flush().await {
                tracing::warn!(error = %format!("{error:#}"), "writing spend to SQL failed; will retry");
            }
        }
        reloader.abort();
        if let Some(listener) = listener {
            listener.abort();
        }
    }

    /// Writes the spend still pending; called after the server drained.
    pub async fn final_flush(ledger: &dyn SpendLedger) {
        for attempt in 1..=20 {
            match ledger.close().await {
                Ok(()) => return,
                Err(error) => {
                    tracing::warn!(attempt, error = %format!("{error:#}"), "final spend flush failed");
                    tokio::time::sleep(RETRY_DELAY).await;
                }
            }
        }
        tracing::error!("spend not written to SQL at shutdown");
    }

    /// The first load also restores the ledger's state from SQL; bids are
    /// refused until both are done.
    async fn first_load(&self, ledger: &dyn SpendLedger) -> anyhow::Result<()> {
        self.reload().await?;
        ledger.restore(utc_day(now_millis())).await?;
        self.loaded
            .store(true, std::sync::atomic::Ordering::Release);
        Ok(())
    }

    async fn reload_loop(
        self: Arc<Self>,
        ledger: Arc<dyn SpendLedger>,
        shutdown: CancellationToken,
    ) {
        loop {
            let loaded = if self.is_loaded() {
                self.reload().await
            } else {
                self.first_load(ledger.as_ref()).await
            };
            match loaded {
                Ok(()) => ledger.limits_changed(),
                Err(error) => {
                    // Before the first load this is usually SQL starting up
                    // or migrating; bids answer UNAVAILABLE until it works.
                    tracing::warn!(error = %format!("{error:#}"), "loading campaigns failed; retrying");
                    tokio::select! {
                        () = tokio::time::sleep(RETRY_DELAY) => continue,
                        () = shutdown.cancelled() => return,
                    }
                }
            }
            tokio::select! {
                () = self.reload_wanted.notified() => {}
                () = tokio::time::sleep(SAFETY_RELOAD) => {}
                () = shutdown.cancelled() => return,
            }
        }
    }

    async fn listen_for_changes(self: Arc<Self>, redis: Redis, shutdown: CancellationToken) {
        loop {
            let mut pubsub = match redis.pubsub().await {
                Ok(pubsub) => pubsub,
                Err(error) => {
                    tracing::warn!(error = %format!("{error:#}"), "campaign change listener cannot connect");
                    tokio::select! {
                        () = tokio::time::sleep(RETRY_DELAY) => continue,
                        () = shutdown.cancelled() => return,
                    }
                }
            };
            if let Err(error) = pubsub.subscribe(CHANGES_CHANNEL).await {
                tracing::warn!(%error, "cannot subscribe to campaign changes");
                tokio::time::sleep(RETRY_DELAY).await;
                continue;
            }
            // Changes may have been missed while not subscribed.
            self.reload_wanted.notify_one();
            let mut messages = pubsub.on_message();
            loop {
                tokio::select! {
                    message = messages.next() => match message {
                        // "<replica id> <campaign id>"; a replica's own
                        // changes are already in its index.
                        Some(message) => {
                            let payload: String = message.get_payload().unwrap_or_default();
                            if payload.split(' ').next() != Some(self.replica_id.as_str()) {
                                self.reload_wanted.notify_one();
                            }
                        }
                        None => break,
                    },
                    () = shutdown.cancelled() => return,
                }
            }
            tracing::warn!("campaign change listener disconnected; reconnecting");
        }
    }
}
