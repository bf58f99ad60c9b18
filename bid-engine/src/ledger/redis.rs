//! The cluster profile's ledger: Redis holds every campaign's spend, and one
//! Lua script per charge checks the budgets and the cap and increments them
//! in one step, so replicas racing for the last impression of a budget
//! cannot both win it. Keys share the campaign's hash tag (`{id}`), so the
//! script also runs on Redis Cluster.
//!
//! Redis counters start from the totals last persisted to SQL, so a Redis
//! restart without persistence does not hand out spent budget again.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use admesh_common::Redis;
use anyhow::Context;

use super::{Rejection, SpendJournal, SpendLedger, Spent, journal::SpendTotals};
use crate::campaign::Campaign;

/// KEYS: daily spend, lifetime spend, user's impressions today, impressions
/// today. ARGV: spend, daily budget, lifetime budget (-1: none), cap (-1:
/// none), then the persisted daily spend, lifetime spend and impressions to
/// start from when the keys are missing.
/// Returns {code, daily total, lifetime total, impressions today}; code 1 is
/// charged, -1 daily budget, -2 lifetime budget, -3 frequency cap.
const CHARGE_SCRIPT: &str = r"
local spend = tonumber(ARGV[1])
local daily_budget = tonumber(ARGV[2])
local lifetime_budget = tonumber(ARGV[3])
local cap = tonumber(ARGV[4])
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('SET', KEYS[1], ARGV[5], 'EX', 259200)
  redis.call('SET', KEYS[4], ARGV[7], 'EX', 259200)
end
if redis.call('EXISTS', KEYS[2]) == 0 then
  redis.call('SET', KEYS[2], ARGV[6])
end
local daily = tonumber(redis.call('GET', KEYS[1]))
local lifetime = tonumber(redis.call('GET', KEYS[2]))
if daily + spend > daily_budget then
  return {-1, daily, lifetime, 0}
end
if lifetime_budget >= 0 and lifetime + spend > lifetime_budget then
  return {-2, daily, lifetime, 0}
end
if cap >= 0 then
  local seen = tonumber(redis.call('GET', KEYS[3]) or '0')
  if seen >= cap then
    return {-3, daily, lifetime, 0}
  end
  redis.call('INCR', KEYS[3])
  redis.call('EXPIRE', KEYS[3], 172800)
end
daily = redis.call('INCRBY', KEYS[1], spend)
lifetime = redis.call('INCRBY', KEYS[2], spend)
local impressions = redis.call('INCR', KEYS[4])
return {1, daily, lifetime, impressions}
";

fn daily_key(campaign_id: &str, day: i64) -> String {
    format!("admesh:spend:{{{campaign_id}}}:day:{day}")
}

fn lifetime_key(campaign_id: &str) -> String {
    format!("admesh:spend:{{{campaign_id}}}:lifetime")
}

fn impressions_key(campaign_id: &str, day: i64) -> String {
    format!("admesh:spend:{{{campaign_id}}}:impressions:{day}")
}

fn frequency_key(campaign_id: &str, day: i64, user_id: &str) -> String {
    format!("admesh:frequency:{{{campaign_id}}}:{day}:{user_id}")
}

/// What this replica learned from Redis: budgets with nothing left. Saves
/// a round trip per bid for campaigns that cannot pay anyway.
#[derive(Debug, Default)]
struct Exhausted {
    /// Campaign → the day its daily budget ran out.
    daily: HashMap<Arc<str>, i64>,
    lifetime: HashMap<Arc<str>, ()>,
}

#[derive(Debug)]
pub struct RedisLedger {
    redis: Redis,
    script: redis::Script,
    exhausted: Mutex<Exhausted>,
    journal: SpendJournal,
}

impl RedisLedger {
    pub fn new(redis: Redis, journal: SpendJournal) -> Self {
        Self {
            redis,
            script: redis::Script::new(CHARGE_SCRIPT),
            exhausted: Mutex::new(Exhausted::default()),
            journal,
        }
    }

    fn note_totals(&self, campaign: &Campaign, day: i64, daily: i64, lifetime: i64) {
        let mut exhausted = self.exhausted.lock().unwrap_or_else(|e| e.into_inner());
        if daily >= campaign.daily_budget {
            exhausted.daily.insert(Arc::clone(&campaign.id), day);
        }
        if campaign
            .lifetime_budget
            .is_some_and(|budget| lifetime >= budget)
        {
            exhausted.lifetime.insert(Arc::clone(&campaign.id), ());
        }
    }
}

#[async_trait::async_trait]
impl SpendLedger for RedisLedger {
    fn precheck(&self, campaign: &Campaign, _user_id: &str, day: i64) -> Option<Rejection> {
        let exhausted = self.exhausted.lock().unwrap_or_else(|e| e.into_inner());
        let spent_today = exhausted.daily.get(&campaign.id) == Some(&day);
        (spent_today || exhausted.lifetime.contains_key(&campaign.id))
            .then_some(Rejection::BudgetExhausted)
    }

    async fn try_charge(
        &self,
        campaign: &Campaign,
        user_id: &str,
        spend: i64,
        day: i64,
    ) -> anyhow::Result<Result<(), Rejection>> {
        let persisted = campaign.persisted_spend;
        let (seed_daily, seed_impressions) = if persisted.day == day {
            (persisted.spent_today, persisted.impressions_today)
        } else {
            (0, 0)
        };
        let mut connection = self.redis.connection();
        let (code, daily, lifetime, impressions): (i64, i64, i64, i64) = self
            .script
            .key(daily_key(&campaign.id, day))
            .key(lifetime_key(&campaign.id))
            .key(frequency_key(&campaign.id, day, user_id))
            .key(impressions_key(&campaign.id, day))
            .arg(spend)
            .arg(campaign.daily_budget)
            .arg(campaign.lifetime_budget.unwrap_or(-1))
            .arg(campaign.frequency_cap.map_or(-1, i64::from))
            .arg(seed_daily)
            .arg(persisted.lifetime_spent)
            .arg(seed_impressions)
            .invoke_async(&mut connection)
            .await
            .context("charging a budget in Redis")?;
        self.note_totals(campaign, day, daily, lifetime);
        match code {
            1 => {
                self.journal.record_spend(
                    &campaign.id,
                    SpendTotals {
                        day,
                        spent_today: daily,
                        impressions_today: impressions,
                        lifetime_spent: lifetime,
                    },
                );
                Ok(Ok(()))
            }
            -1 | -2 => Ok(Err(Rejection::BudgetExhausted)),
            -3 => Ok(Err(Rejection::FrequencyCapped)),
            other => anyhow::bail!("unexpected charge script result {other}"),
        }
    }

    /// Redis keeps frequency counts itself; spend seeds come with campaigns.
    async fn restore(&self, _day: i64) -> anyhow::Result<()> {
        Ok(())
    }

    /// One pipelined round trip for all of them.
    async fn spent(&self, campaigns: &[Campaign], day: i64) -> anyhow::Result<Vec<Spent>> {
        if campaigns.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for campaign in campaigns {
            pipe.get(daily_key(&campaign.id, day))
                .get(lifetime_key(&campaign.id));
        }
        let mut connection = self.redis.connection();
        let totals: Vec<Option<i64>> = pipe
            .query_async(&mut connection)
            .await
            .context("reading spend from Redis")?;
        Ok(campaigns
            .iter()
            .zip(totals.chunks(2))
            .map(|(campaign, totals)| {
                let persisted = campaign.persisted_spend;
                let persisted_today = if persisted.day == day {
                    persisted.spent_today
                } else {
                    0
                };
                Spent {
                    today: totals.first().copied().flatten().unwrap_or(persisted_today),
                    lifetime: totals
                        .get(1)
                        .copied()
                        .flatten()
                        .unwrap_or(persisted.lifetime_spent),
                }
            })
            .collect())
    }

    fn limits_changed(&self) {
        let mut exhausted = self.exhausted.lock().unwrap_or_else(|e| e.into_inner());
        *exhausted = Exhausted::default();
    }

    async fn flush(&self) -> anyhow::Result<()> {
        self.journal.flush().await
    }
}
