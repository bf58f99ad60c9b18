//! The spend ledger: charges a won impression against the campaign's daily
//! and lifetime budgets and the user's frequency cap, atomically, so that no
//! budget is ever overspent however many bids race.
//!
//! Two implementations side by side:
//! - [`EmbeddedLedger`]: one process; counters under a lock per campaign.
//! - [`RedisLedger`]: any number of bid-engine replicas; one Lua script per
//!   charge checks and increments in a single Redis step.
//!
//! Both persist totals to SQL in the background ([`SpendJournal`]) and flush
//! on shutdown, so a restart loses none; daily spend is keyed by UTC day, so
//! it resets at midnight without a job.

mod embedded;
mod journal;
mod redis;

pub use embedded::EmbeddedLedger;
pub use journal::SpendJournal;
pub use redis::RedisLedger;

use crate::campaign::Campaign;

/// Why a campaign cannot pay for this impression.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rejection {
    BudgetExhausted,
    FrequencyCapped,
    /// Another bid is writing this campaign's budget reservation to SQL
    /// (embedded ledger): this impression goes to the next campaign rather
    /// than every concurrent bid queueing behind that one write.
    ReservationPending,
}

/// A campaign's spend, micros.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Spent {
    pub today: i64,
    pub lifetime: i64,
}

#[async_trait::async_trait]
pub trait SpendLedger: Send + Sync + std::fmt::Debug {
    /// What is known without I/O: why `campaign` surely cannot pay now.
    /// `None` does not promise the charge will succeed.
    fn precheck(&self, campaign: &Campaign, user_id: &str, day: i64) -> Option<Rejection>;

    /// Charges `spend` micros and counts one impression for `user_id`, or
    /// changes nothing and says why not. `Err` is a storage failure.
    async fn try_charge(
        &self,
        campaign: &Campaign,
        user_id: &str,
        spend: i64,
        day: i64,
    ) -> anyhow::Result<Result<(), Rejection>>;

    /// Each campaign's spend on `day` and in total, in order.
    async fn spent(&self, campaigns: &[Campaign], day: i64) -> anyhow::Result<Vec<Spent>>;

    /// Campaigns changed (budgets or caps may have): forget conclusions
    /// drawn from the old limits.
    fn limits_changed(&self);

    /// Reads back from SQL what the ledger keeps only in memory; called
    /// once SQL is reachable, before the first bid.
    async fn restore(&self, day: i64) -> anyhow::Result<()>;

    /// Writes what is not yet in SQL.
    async fn flush(&self) -> anyhow::Result<()>;

    /// The last write at a clean shutdown.
    async fn close(&self) -> anyhow::Result<()> {
        self.flush().await
    }
}
