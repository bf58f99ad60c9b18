//! The embedded profile's ledger: one process owns every budget, so a lock
//! per campaign makes check-and-charge atomic. Spend is written behind to
//! SQL; to survive a crash between two writes, the ledger first *reserves*
//! budget in SQL (a chunk at a time) and only grants spend inside the
//! reservation. After a crash the restart starts from the reservation: some
//! budget may go unspent, none is spent twice.
//!
//! The next chunk is reserved in the background once half of the current
//! one is spent, so a bid rarely waits on SQL: a write there can wait on
//! SQLite's busy handler (sleeps of 1, 2, 5, 10… ms) behind the event and
//! spend writers, and every bid of the campaign queued behind it.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, RwLock},
    time::{Duration, Instant},
};

use super::{Rejection, SpendJournal, SpendLedger, Spent, journal::SpendTotals};
use crate::campaign::{Campaign, CampaignMap};

#[derive(Debug)]
struct Account {
    day: i64,
    spent_today: i64,
    impressions_today: i64,
    lifetime_spent: i64,
    /// Spend up to these bounds is recorded in SQL as reserved.
    reserved_today: i64,
    lifetime_reserved: i64,
    /// A reservation ahead of need is being written.
    reserving_ahead: bool,
    /// When the last one failed: the next waits [`AHEAD_RETRY`].
    ahead_failed_at: Option<Instant>,
}

/// How long after a failed reservation ahead of need the next is tried
/// (a charge that runs out still reserves, and waits, as before).
const AHEAD_RETRY: Duration = Duration::from_secs(1);

/// A campaign's counters, and the lock held while extending its reservation
/// (an await on SQL, so not the counters' lock).
#[derive(Debug)]
struct AccountCell {
    counters: Mutex<Account>,
    reserving: tokio::sync::Mutex<()>,
}

/// Reservation targets: today's, and the lifetime one when there is a
/// lifetime budget.
#[derive(Clone, Copy, Debug)]
struct Reservation {
    daily: i64,
    lifetime: Option<i64>,
}

impl Reservation {
    /// One chunk past `daily_from` today and `lifetime_from` in total.
    fn chunk_after(campaign: &Campaign, spend: i64, daily_from: i64, lifetime_from: i64) -> Self {
        Self {
            daily: reservation_target(daily_from, spend, campaign.daily_budget),
            lifetime: campaign
                .lifetime_budget
                .map(|budget| reservation_target(lifetime_from, spend, budget)),
        }
    }
}

/// How much budget one reservation covers: 64 impressions or 1% of the
/// budget, whichever is more, never beyond the budget.
fn reservation_target(spent: i64, spend: i64, budget: i64) -> i64 {
    let chunk = (spend.saturating_mul(64)).max(budget / 100).max(spend);
    spent.saturating_add(chunk).min(budget)
}

impl Account {
    fn seeded(campaign: &Campaign, day: i64) -> Self {
        let persisted = campaign.persisted_spend;
        let today = persisted.day == day;
        Self {
            day,
            spent_today: if today { persisted.spent_today } else { 0 },
            impressions_today: if today {
                persisted.impressions_today
            } else {
                0
            },
            lifetime_spent: persisted.lifetime_spent,
            // SQL already counts what was spent (or reserved) before.
            reserved_today: if today { persisted.spent_today } else { 0 },
            lifetime_reserved: persisted.lifetime_spent,
            reserving_ahead: false,
            ahead_failed_at: None,
        }
    }

    /// Whether less than half a chunk of the reservation is left while the
    /// budget has more to reserve, and no reservation ahead is under way.
    fn wants_reservation_ahead(&self, campaign: &Campaign, spend: i64) -> bool {
        let running_low = |spent: i64, reserved: i64, budget: i64| {
            let chunk = reservation_target(spent, spend, budget) - spent;
            reserved < budget && reserved - spent < chunk / 2
        };
        let low = running_low(self.spent_today, self.reserved_today, campaign.daily_budget)
            || campaign.lifetime_budget.is_some_and(|budget| {
                running_low(self.lifetime_spent, self.lifetime_reserved, budget)
            });
        low && !self.reserving_ahead
            && self
                .ahead_failed_at
                .is_none_or(|failed| failed.elapsed() >= AHEAD_RETRY)
    }

    /// Raises the bounds to what SQL now records as reserved for `day`.
    fn reserved_up_to(&mut self, day: i64, reservation: Reservation) {
        if self.day == day {
            self.reserved_today = self.reserved_today.max(reservation.daily);
        }
        if let Some(lifetime) = reservation.lifetime {
            self.lifetime_reserved = self.lifetime_reserved.max(lifetime);
        }
    }

    /// Whether charging `spend` stays inside what SQL has reserved.
    fn is_reserved(&self, campaign: &Campaign, spend: i64) -> bool {
        self.spent_today + spend <= self.reserved_today
            && (campaign.lifetime_budget.is_none()
                || self.lifetime_spent + spend <= self.lifetime_reserved)
    }

    /// A chunk beyond what is spent (a charge that ran out waits for it).
    fn next_reservation(&self, campaign: &Campaign, spend: i64) -> Reservation {
        Reservation::chunk_after(campaign, spend, self.spent_today, self.lifetime_spent)
    }

    /// A chunk beyond what is reserved now (one write per chunk, as when a
    /// charge runs out).
    fn reservation_beyond(&self, campaign: &Campaign, spend: i64) -> Reservation {
        Reservation::chunk_after(campaign, spend, self.reserved_today, self.lifetime_reserved)
    }

    /// Daily figures belong to one UTC day; a new day starts at zero.
    fn roll_to(&mut self, day: i64) {
        if day > self.day {
            self.day = day;
            self.spent_today = 0;
            self.impressions_today = 0;
            self.reserved_today = 0;
        }
    }

    fn has_room(&self, campaign: &Campaign, spend: i64) -> bool {
        self.spent_today + spend <= campaign.daily_budget
            && campaign
                .lifetime_budget
                .is_none_or(|budget| self.lifetime_spent + spend <= budget)
    }
}

/// Impressions per (campaign, user) on one UTC day.
#[derive(Debug, Default)]
struct FrequencyBook {
    day: i64,
    seen: HashMap<(Arc<str>, Box<str>), i64>,
}

impl FrequencyBook {
    fn count(&mut self, campaign_id: &Arc<str>, user_id: &str, day: i64) -> i64 {
        if day > self.day {
            self.day = day;
            self.seen.clear();
        }
        // Looking up by a borrowed pair would need a custom key type; the
        // cap check is only made for capped campaigns, so one allocation is fine.
        self.seen
            .get(&(Arc::clone(campaign_id), Box::from(user_id)))
            .copied()
            .unwrap_or(0)
    }
}

/// Bound on reservation rounds of one charge (each makes progress).
const MAX_RESERVATION_ROUNDS: usize = 16;

enum Charge {
    Done(Result<(), Rejection>),
    /// Charged; the reservation runs low, so reserve this ahead of need.
    ChargedReserveAhead(Reservation),
    NeedsReservation(Reservation),
}

#[derive(Debug)]
pub struct EmbeddedLedger {
    accounts: RwLock<CampaignMap<Arc<AccountCell>>>,
    frequency: Mutex<FrequencyBook>,
    journal: Arc<SpendJournal>,
}

impl EmbeddedLedger {
    /// A ledger writing behind to `journal`.
    pub fn new(journal: SpendJournal) -> Self {
        Self {
            accounts: RwLock::new(CampaignMap::default()),
            frequency: Mutex::new(FrequencyBook::default()),
            journal: Arc::new(journal),
        }
    }

    /// Charges when the spend fits the budget and the reservation; says
    /// which reservation is needed when only the reservation is short.
    fn charge_within_reservation(
        &self,
        cell: &AccountCell,
        campaign: &Campaign,
        user_id: &str,
        spend: i64,
        day: i64,
    ) -> Charge {
        // Lock order: account, then frequency book (everywhere).
        let mut account = cell.counters.lock().unwrap_or_else(|e| e.into_inner());
        account.roll_to(day);
        if !account.has_room(campaign, spend) {
            return Charge::Done(Err(Rejection::BudgetExhausted));
        }
        // Only capped campaigns consult the frequency book.
        let mut capped = match campaign.frequency_cap {
            None => None,
            Some(cap) => {
                let mut book = self.frequency.lock().unwrap_or_else(|e| e.into_inner());
                let seen = book.count(&campaign.id, user_id, day);
                if seen >= i64::from(cap) {
                    return Charge::Done(Err(Rejection::FrequencyCapped));
                }
                Some((book, seen))
            }
        };
        if !account.is_reserved(campaign, spend) {
            return Charge::NeedsReservation(account.next_reservation(campaign, spend));
        }
        if let Some((book, seen)) = capped.as_mut() {
            book.seen
                .insert((Arc::clone(&campaign.id), Box::from(user_id)), *seen + 1);
            self.journal
                .record_frequency(&campaign.id, user_id, day, *seen + 1);
        }
        drop(capped);
        account.spent_today += spend;
        account.impressions_today += 1;
        account.lifetime_spent += spend;
        self.journal.record_spend(
            &campaign.id,
            SpendTotals {
                day,
                spent_today: account.spent_today,
                impressions_today: account.impressions_today,
                lifetime_spent: account.lifetime_spent,
            },
        );
        if account.wants_reservation_ahead(campaign, spend) {
            account.reserving_ahead = true;
            return Charge::ChargedReserveAhead(account.reservation_beyond(campaign, spend));
        }
        Charge::Done(Ok(()))
    }

    /// Writes `reservation` in a task of its own: the bid that asked for it
    /// goes on, and a bid cancelled meanwhile does not cancel it.
    fn reserve_ahead(
        &self,
        cell: &Arc<AccountCell>,
        campaign_id: &Arc<str>,
        day: i64,
        reservation: Reservation,
    ) {
        let cell = Arc::clone(cell);
        let journal = Arc::clone(&self.journal);
        let campaign_id = Arc::clone(campaign_id);
        tokio::spawn(async move {
            // The same lock as a charge that ran out: one writer at a time,
            // and the bounds raised before another looks at them.
            let _reserving = cell.reserving.lock().await;
            let written = journal
                .reserve(&campaign_id, day, reservation.daily, reservation.lifetime)
                .await;
            let mut account = cell.counters.lock().unwrap_or_else(|e| e.into_inner());
            account.reserving_ahead = false;
            match written {
                Ok(()) => account.reserved_up_to(day, reservation),
                Err(error) => {
                    account.ahead_failed_at = Some(Instant::now());
                    drop(account);
                    tracing::warn!(error = %format!("{error:#}"), %campaign_id, "reserving budget ahead failed; a bid that runs out will reserve");
                }
            }
        });
    }

    fn account(&self, campaign: &Campaign, day: i64) -> Arc<AccountCell> {
        if let Some(account) = self
            .accounts
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&campaign.id)
        {
            return Arc::clone(account);
        }
        let mut accounts = self.accounts.write().unwrap_or_else(|e| e.into_inner());
        Arc::clone(accounts.entry(Arc::clone(&campaign.id)).or_insert_with(|| {
            Arc::new(AccountCell {
                counters: Mutex::new(Account::seeded(campaign, day)),
                reserving: tokio::sync::Mutex::new(()),
            })
        }))
    }
}

#[async_trait::async_trait]
impl SpendLedger for EmbeddedLedger {
    fn precheck(&self, campaign: &Campaign, user_id: &str, day: i64) -> Option<Rejection> {
        let account = self.account(campaign, day);
        {
            let mut account = account.counters.lock().unwrap_or_else(|e| e.into_inner());
            account.roll_to(day);
            if !account.has_room(campaign, 1) {
                return Some(Rejection::BudgetExhausted);
            }
        }
        let cap = i64::from(campaign.frequency_cap?);
        let mut book = self.frequency.lock().unwrap_or_else(|e| e.into_inner());
        (book.count(&campaign.id, user_id, day) >= cap).then_some(Rejection::FrequencyCapped)
    }

    async fn try_charge(
        &self,
        campaign: &Campaign,
        user_id: &str,
        spend: i64,
        day: i64,
    ) -> anyhow::Result<Result<(), Rejection>> {
        let cell = self.account(campaign, day);
        // Each round either charges, refuses, or extends the reservation by
        // at least this impression; rivals can only use budget up.
        for _ in 0..MAX_RESERVATION_ROUNDS {
            let needed = match self.charge_within_reservation(&cell, campaign, user_id, spend, day)
            {
                Charge::Done(outcome) => return Ok(outcome),
                Charge::ChargedReserveAhead(ahead) => {
                    self.reserve_ahead(&cell, &campaign.id, day, ahead);
                    return Ok(Ok(()));
                }
                Charge::NeedsReservation(needed) => needed,
            };
            // Under load every bid in flight may pick the same new winner;
            // one writes its first chunk, the others bid on elsewhere.
            let Ok(_reserving) = cell.reserving.try_lock() else {
                return Ok(Err(Rejection::ReservationPending));
            };
            let still_needed = !cell
                .counters
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .is_reserved(campaign, spend);
            if still_needed {
                self.journal
                    .reserve(&campaign.id, day, needed.daily, needed.lifetime)
                    .await?;
                cell.counters
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .reserved_up_to(day, needed);
            }
        }
        anyhow::bail!("could not reserve budget for campaign {}", campaign.id)
    }

    /// Today's frequency counts, read back after a restart.
    async fn restore(&self, day: i64) -> anyhow::Result<()> {
        let rows = self.journal.load_frequency(day).await?;
        let mut book = self.frequency.lock().unwrap_or_else(|e| e.into_inner());
        book.day = day;
        for (campaign_id, user_id, count) in rows {
            let seen = book
                .seen
                .entry((Arc::from(campaign_id), Box::from(user_id)))
                .or_insert(0);
            *seen = (*seen).max(count);
        }
        Ok(())
    }

    async fn spent(&self, campaigns: &[Campaign], day: i64) -> anyhow::Result<Vec<Spent>> {
        Ok(campaigns
            .iter()
            .map(|campaign| {
                let account = self.account(campaign, day);
                let mut account = account.counters.lock().unwrap_or_else(|e| e.into_inner());
                account.roll_to(day);
                Spent {
                    today: account.spent_today,
                    lifetime: account.lifetime_spent,
                }
            })
            .collect())
    }

    fn limits_changed(&self) {
        // Limits are read from the campaign on every check: nothing cached.
    }

    async fn flush(&self) -> anyhow::Result<()> {
        self.journal.flush().await
    }

    /// The exact spend written, reservations fall back to it.
    async fn close(&self) -> anyhow::Result<()> {
        self.journal.flush().await?;
        self.journal.release_reservations().await
    }
}

#[cfg(test)]
mod tests {
    use admesh_common::{Database, on_pool};

    use super::*;
    use crate::{
        campaign::spend_of_impression, store::CampaignStore, synthetic::synthetic_campaigns,
    };

    const DAY: i64 = 20_000;

    async fn reserved_in_sql(database: &Database, campaign_id: &str) -> i64 {
        let reserved: Option<i64> = on_pool!(database, pool => {
            sqlx::query_scalar(
                "SELECT reserved FROM campaign_daily_spend WHERE campaign_id = $1 AND day = $2",
            )
            .bind(campaign_id)
            .bind(DAY)
            .fetch_optional(pool)
            .await
            .expect("read the reservation")
        });
        reserved.unwrap_or(0)
    }

    /// A ledger over a fresh database holding `campaign`.
    async fn ledger_for(campaign: &Campaign) -> (EmbeddedLedger, Database) {
        let database = Database::connect_and_migrate("sqlite::memory:", 1)
            .await
            .expect("in-memory SQLite");
        CampaignStore::new(database.clone())
            .insert_all(std::slice::from_ref(campaign))
            .await
            .expect("store the campaign");
        (
            EmbeddedLedger::new(SpendJournal::new(database.clone())),
            database,
        )
    }

    #[tokio::test]
    async fn the_next_chunk_is_reserved_before_the_current_one_runs_out() {
        let mut campaign = synthetic_campaigns(1).pop().expect("a campaign");
        let spend = spend_of_impression(campaign.bid_price);
        // 1,000 impressions: a chunk is 64 of them.
        campaign.daily_budget = 1_000 * spend;
        campaign.lifetime_budget = None;
        campaign.frequency_cap = None;
        let (ledger, database) = ledger_for(&campaign).await;
        let charge = || async {
            ledger
                .try_charge(&campaign, "user-1", spend, DAY)
                .await
                .expect("SQL works")
                .expect("within budget");
        };

        // The first charge finds nothing reserved and waits for a chunk.
        charge().await;
        assert_eq!(reserved_in_sql(&database, &campaign.id).await, 64 * spend);

        // Past half of it, the next chunk is written in the background.
        for _ in 1..33 {
            charge().await;
        }
        let mut reserved = reserved_in_sql(&database, &campaign.id).await;
        for _ in 0..1_000 {
            if reserved > 64 * spend {
                break;
            }
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(2)).await;
            reserved = reserved_in_sql(&database, &campaign.id).await;
        }
        assert_eq!(reserved, 128 * spend, "one chunk beyond the first");

        // Spending on through the second chunk never charges beyond SQL's
        // reservation, and the whole budget is reachable.
        for _ in 33..1_000 {
            charge().await;
            let spent = ledger
                .spent(std::slice::from_ref(&campaign), DAY)
                .await
                .expect("spent")[0]
                .today;
            assert!(spent <= reserved_in_sql(&database, &campaign.id).await);
        }
        let refused = ledger
            .try_charge(&campaign, "user-1", spend, DAY)
            .await
            .expect("SQL works");
        assert_eq!(refused, Err(Rejection::BudgetExhausted));
    }

    #[tokio::test]
    async fn a_bid_does_not_queue_behind_another_bids_reservation() {
        let mut campaign = synthetic_campaigns(1).pop().expect("a campaign");
        campaign.frequency_cap = None;
        let (ledger, _database) = ledger_for(&campaign).await;
        let spend = spend_of_impression(campaign.bid_price);

        // Another bid is writing the first chunk.
        let cell = ledger.account(&campaign, DAY);
        let writing = cell.reserving.lock().await;
        let meanwhile = ledger
            .try_charge(&campaign, "user-1", spend, DAY)
            .await
            .expect("SQL works");
        assert_eq!(meanwhile, Err(Rejection::ReservationPending));
        drop(writing);

        let after = ledger
            .try_charge(&campaign, "user-1", spend, DAY)
            .await
            .expect("SQL works");
        assert_eq!(after, Ok(()));
    }
}
