//! The embedded profile's ledger: one process owns every budget, so a lock
//! per campaign makes check-and-charge atomic. SQL is written behind.

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
        }
    }

    /// Daily figures belong to one UTC day; a new day starts at zero.
    fn roll_to(&mut self, day: i64) {
        if day > self.day {
            self.day = day;
            self.spent_today = 0;
            self.impressions_today = 0;
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

#[derive(Debug)]
pub struct EmbeddedLedger {
    accounts: RwLock<HashMap<Arc<str>, Arc<Mutex<Account>>>>,
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

    fn account(&self, campaign: &Campaign, day: i64) -> Arc<Mutex<Account>> {
        if let Some(account) = self
            .accounts
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&campaign.id)
        {
            return Arc::clone(account);
        }
        let mut accounts = self.accounts.write().unwrap_or_else(|e| e.into_inner());
        Arc::clone(
            accounts
                .entry(Arc::clone(&campaign.id))
                .or_insert_with(|| Arc::new(Mutex::new(Account::seeded(campaign, day)))),
        )
    }
}

#[async_trait::async_trait]
impl SpendLedger for EmbeddedLedger {
    fn precheck(&self, campaign: &Campaign, user_id: &str, day: i64) -> Option<Rejection> {
        let account = self.account(campaign, day);
        {
            let mut account = account.lock().unwrap_or_else(|e| e.into_inner());
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
        let account = self.account(campaign, day);
        // Lock order: account, then frequency book (everywhere).
        let mut account = account.lock().unwrap_or_else(|e| e.into_inner());
        account.roll_to(day);
        if !account.has_room(campaign, spend) {
            return Ok(Err(Rejection::BudgetExhausted));
        }
        if let Some(cap) = campaign.frequency_cap {
            let mut book = self.frequency.lock().unwrap_or_else(|e| e.into_inner());
            let seen = book.count(&campaign.id, user_id, day);
            if seen >= i64::from(cap) {
                return Ok(Err(Rejection::FrequencyCapped));
            }
            book.seen
                .insert((Arc::clone(&campaign.id), Box::from(user_id)), seen + 1);
            self.journal
                .record_frequency(&campaign.id, user_id, day, seen + 1);
        }
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
        Ok(Ok(()))
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

    async fn spent(&self, campaign: &Campaign, day: i64) -> anyhow::Result<Spent> {
        let account = self.account(campaign, day);
        let mut account = account.lock().unwrap_or_else(|e| e.into_inner());
        account.roll_to(day);
        Ok(Spent {
            today: account.spent_today,
            lifetime: account.lifetime_spent,
        })
    }

    fn limits_changed(&self) {
        // Limits are read from the campaign on every check: nothing cached.
    }

    async fn flush(&self) -> anyhow::Result<()> {
        self.journal.flush().await
    }
}
