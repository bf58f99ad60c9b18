//! The embedded profile's ledger: one process owns every budget, so a lock
//! per campaign makes check-and-charge atomic. Spend is written behind to
//! SQL; to survive a crash between two writes, the ledger first *reserves*
//! budget in SQL (a chunk at a time) and only grants spend inside the
//! reservation. After a crash the restart starts from the reservation: some
//! budget may go unspent, none is spent twice.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, RwLock},
};

use super::{Rejection, SpendJournal, SpendLedger, Spent, journal::SpendTotals};
use crate::campaign::Campaign;

#[derive(Debug)]
struct Account {
    day: i64,
    spent_today: i64,
    impressions_today: i64,
    lifetime_spent: i64,
    /// Spend up to these bounds is recorded in SQL as reserved.
    reserved_today: i64,
    lifetime_reserved: i64,
}

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
        }
    }

    /// Whether charging `spend` stays inside what SQL has reserved.
    fn is_reserved(&self, campaign: &Campaign, spend: i64) -> bool {
        self.spent_today + spend <= self.reserved_today
            && (campaign.lifetime_budget.is_none()
                || self.lifetime_spent + spend <= self.lifetime_reserved)
    }

    fn next_reservation(&self, campaign: &Campaign, spend: i64) -> Reservation {
        Reservation {
            daily: reservation_target(self.spent_today, spend, campaign.daily_budget),
            lifetime: campaign
                .lifetime_budget
                .map(|budget| reservation_target(self.lifetime_spent, spend, budget)),
        }
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
    NeedsReservation(Reservation),
}

#[derive(Debug)]
pub struct EmbeddedLedger {
    accounts: RwLock<HashMap<Arc<str>, Arc<AccountCell>>>,
    frequency: Mutex<FrequencyBook>,
    journal: SpendJournal,
}

impl EmbeddedLedger {
    /// A ledger writing behind to `journal`.
    pub fn new(journal: SpendJournal) -> Self {
        Self {
            accounts: RwLock::new(HashMap::new()),
            frequency: Mutex::new(FrequencyBook::default()),
            journal,
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
        Charge::Done(Ok(()))
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
                Charge::NeedsReservation(needed) => needed,
            };
            let _reserving = cell.reserving.lock().await;
            let still_needed = !cell
                .counters
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .is_reserved(campaign, spend);
            if still_needed {
                self.journal
                    .reserve(&campaign.id, day, needed.daily, needed.lifetime)
                    .await?;
                let mut account = cell.counters.lock().unwrap_or_else(|e| e.into_inner());
                if account.day == day {
                    account.reserved_today = account.reserved_today.max(needed.daily);
                }
                if let Some(lifetime) = needed.lifetime {
                    account.lifetime_reserved = account.lifetime_reserved.max(lifetime);
                }
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
