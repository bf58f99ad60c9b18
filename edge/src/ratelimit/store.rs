//! Where buckets live: this process's memory (embedded profile), or Redis,
//! shared by every edge replica (cluster profile).

use std::collections::HashMap;

use async_trait::async_trait;
use parking_lot::Mutex;

use admesh_common::{Redis, time::now_millis};

use super::bucket::{BucketState, Decision, decision, take};

#[async_trait]
pub trait BucketStore: Send + Sync + std::fmt::Debug {
    /// Takes one token from the bucket `key`.
    async fn take(&self, key: &str, capacity: u32, refill_rate: f64) -> anyhow::Result<Decision>;
}

/// Buckets in memory; idle ones are swept once the map grows.
#[derive(Debug, Default)]
pub struct MemoryBuckets {
    buckets: Mutex<HashMap<String, BucketState>>,
}

const SWEEP_AT: usize = 100_000;

#[async_trait]
impl BucketStore for MemoryBuckets {
    async fn take(&self, key: &str, capacity: u32, refill_rate: f64) -> anyhow::Result<Decision> {
        let now = now_millis();
        let mut buckets = self.buckets.lock();
        if buckets.len() >= SWEEP_AT {
            // A bucket idle for a minute is full again unless its refill is
            // slower than that; forgetting it at worst forgives a little.
            buckets.retain(|_, state| now - state.updated_ms < 60_000);
        }
        let (state, allowed) = take(buckets.get(key).copied(), capacity, refill_rate, now);
        buckets.insert(key.to_string(), state);
        Ok(decision(allowed, state.tokens, capacity, refill_rate))
    }
}

/// The same arithmetic as [`take`], atomically in Redis, on Redis's clock so
/// replicas with skewed clocks agree.
const TAKE_SCRIPT: &str = r"
local capacity = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil or ts == nil then
  tokens = capacity
else
  tokens = math.min(capacity, tokens + math.max(0, now - ts) * rate / 1000)
end
local allowed = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(capacity / rate * 1000) + 1000)
return {allowed, tostring(tokens)}
";

#[derive(Debug)]
pub struct RedisBuckets {
    redis: Redis,
    prefix: String,
    script: redis::Script,
}

impl RedisBuckets {
    pub fn new(redis: Redis, prefix: &str) -> Self {
        Self {
            redis,
            prefix: prefix.to_string(),
            script: redis::Script::new(TAKE_SCRIPT),
        }
    }
}

#[async_trait]
impl BucketStore for RedisBuckets {
    async fn take(&self, key: &str, capacity: u32, refill_rate: f64) -> anyhow::Result<Decision> {
        let mut connection = self.redis.connection();
        let (allowed, tokens): (i64, String) = self
            .script
            .key(format!("{}{key}", self.prefix))
            .arg(capacity)
            .arg(refill_rate)
            .invoke_async(&mut connection)
            .await?;
        let tokens: f64 = tokens.parse().unwrap_or(0.0);
        Ok(decision(allowed == 1, tokens, capacity, refill_rate))
    }
}
