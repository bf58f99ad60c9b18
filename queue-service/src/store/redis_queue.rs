//! The cluster profile's queue: Redis holds the active jobs and the
//! dispatch indexes, shared by every queue-service replica; PostgreSQL
//! holds every job row and the audit trail (group commit, as embedded).
//!
//! Keys (one hash tag, so the scripts may touch them all):
//! `{prefix}:jobs` (hash: id → job JSON of active jobs), `{prefix}:versions`
//! (id → the version of its JSON, so scripts compare versions without
//! decoding JSON; `left:id` → the version in `leaving`), `{prefix}:leaving`
//! (id → JSON of jobs that finished but whose SQL row may lag: reads find
//! them there until the mirror commits), `{prefix}:ready` (sorted by
//! [`priority_score`]), `{prefix}:deadline` (by starvation deadline),
//! `{prefix}:delayed` (by retry time), `{prefix}:leases` (by expiry).
//!
//! Two scripts do all writing. `CLAIM` pops the next jobs in dispatch
//! order atomically (so two replicas never lease the same job); `CAS` writes
//! jobs changed by [`crate::transitions`] only if their version is still the
//! one read, and puts them in the right indexes. A replica that dies between
//! the two leaves claimed jobs in `leases` with a short provisional expiry;
//! the expiry sweep of any replica puts them back.
//!
//! Every script call's writes also land in the outbox, as one entry:
//! `{prefix}:outbox` (the entry's key, by write time) and
//! `{prefix}:outbox_jobs` (key → the written jobs' JSON, one per line; the
//! key is the first job's `id:version`, unique since a version is written
//! once); it leaves once the SQL mirror has committed it. A replica killed
//! between the two (Redis written, SQL not yet) leaves the entry behind;
//! the sweep of any replica mirrors entries older than
//! [`RECOVER_AFTER_MS`], so SQL never misses a state, and records the audit
//! event of a status change it recovers.

use std::{collections::HashMap, sync::Arc};

use admesh_common::{Redis, time::now_millis};
use anyhow::Context;
use async_trait::async_trait;
use parking_lot::Mutex;

use super::{
    ExpiredLease, JobView, Lease, LeaseAnswer, PriorityChangeOutcome, PrioritySelector,
    QueueGauges, QueueSnapshot, QueueStore, StoreError, StoreResult, page_of_queued, snapshot_of,
    writer::GroupCommit,
};
use crate::{
    analysis::Analysis,
    job::{Job, JobStatus, job_of_lease},
    ordering::{deadline, priority_score},
    records::{JobEvent, JobFilter, JobRecords, WriteBatch},
    retry::random_retry_delay_ms,
    settings::QueueSettings,
    transitions::{self, Failure, Transition},
};

/// How long a claimed job may wait for its lease to be written before the
/// sweep takes it back (the replica that claimed it died in between).
const CLAIM_GRACE_MS: i64 = 10_000;
/// Attempts of a read–change–write that loses races.
const CAS_ATTEMPTS: usize = 5;

/// Pops up to ARGV[2] jobs in dispatch order into `leases` with a
/// provisional expiry; answers id, JSON pairs.
const CLAIM_SCRIPT: &str = r#"
local jobs, ready, deadline, delayed, leases = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local now, max, anti, provisional = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3] == '1', ARGV[4]
for _, id in ipairs(redis.call('ZRANGEBYSCORE', delayed, '-inf', now)) do
  redis.call('ZREM', delayed, id)
  local raw = redis.call('HGET', jobs, id)
  if raw then
    local job = cjson.decode(raw)
    redis.call('ZADD', ready, string.format('%.0f', (5 - job.priority) * 4398046511104 + job.queued_at), id)
    redis.call('ZADD', deadline, string.format('%.0f', job.queued_at + job.max_wait_secs * 1000), id)
  end
end
local out = {}
while #out < 2 * max do
  local id = nil
  if anti then
    local first = redis.call('ZRANGE', deadline, 0, 0, 'WITHSCORES')
    if first[1] and tonumber(first[2]) < now then id = first[1] end
  end
  if not id then id = redis.call('ZRANGE', ready, 0, 0)[1] end
  if not id then break end
  redis.call('ZREM', ready, id)
  redis.call('ZREM', deadline, id)
  local raw = redis.call('HGET', jobs, id)
  if raw then
    redis.call('ZADD', leases, provisional, id)
    out[#out + 1] = id
    out[#out + 1] = raw
  end
end
return out
"#;

/// ARGV: count, now, then per job: id, expected version ('0' = must be
/// new), JSON ('' = delete), the ready, deadline, delayed and lease scores
/// ('' = not in that index), the outbox entry (`id:version`), the job's
/// JSON for the outbox when it is leaving the hash (JSON ''; otherwise the
/// JSON above is used, not sent twice), and where the job may be now (an
/// [`HeldIn`] mask). Answers each job's 1 (written) or 0 (changed
/// meanwhile), and the key of the outbox entry holding the written ones
/// ('' when none was).
const CAS_SCRIPT: &str = r#"
local jobs, ready, deadline, delayed, leases, outbox, outbox_jobs, leaving, versions = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9]
local count = tonumber(ARGV[1])
local now = ARGV[2]
local results = {}
local written, key = {}, nil
for i = 0, count - 1 do
  local base = 3 + i * 10
  local id, expected, json = ARGV[base], ARGV[base + 1], ARGV[base + 2]
  local ok
  if expected == '0' then
    ok = redis.call('HEXISTS', jobs, id) == 0
  else
    local current = tonumber(redis.call('HGET', versions, id))
    if not current then
      -- Written before versions were kept apart: read it from the JSON.
      local raw = redis.call('HGET', jobs, id)
      current = raw and cjson.decode(raw).version
    end
    ok = current ~= nil and current == tonumber(expected)
  end
  if ok then
    local entry = ARGV[base + 7]
    local version = string.match(entry, ':(%d+)$')
    local held = tonumber(ARGV[base + 9])
    -- Out of each index it may be in, unless it stays there (ZADD below
    -- moves a member to its new score).
    local function stays(score) return json ~= '' and score ~= '' end
    if bit.band(held, 1) ~= 0 and not stays(ARGV[base + 3]) then redis.call('ZREM', ready, id) end
    if bit.band(held, 2) ~= 0 and not stays(ARGV[base + 4]) then redis.call('ZREM', deadline, id) end
    if bit.band(held, 4) ~= 0 and not stays(ARGV[base + 5]) then redis.call('ZREM', delayed, id) end
    if bit.band(held, 8) ~= 0 and not stays(ARGV[base + 6]) then redis.call('ZREM', leases, id) end
    if json == '' then
      redis.call('HDEL', jobs, id)
      redis.call('HDEL', versions, id)
      redis.call('HSET', leaving, id, ARGV[base + 8])
      redis.call('HSET', versions, 'left:' .. id, version)
    else
      if bit.band(held, 16) ~= 0 then
        redis.call('HDEL', leaving, id)
        redis.call('HDEL', versions, 'left:' .. id)
      end
      redis.call('HSET', jobs, id, json)
      redis.call('HSET', versions, id, version)
      if ARGV[base + 3] ~= '' then redis.call('ZADD', ready, ARGV[base + 3], id) end
      if ARGV[base + 4] ~= '' then redis.call('ZADD', deadline, ARGV[base + 4], id) end
      if ARGV[base + 5] ~= '' then redis.call('ZADD', delayed, ARGV[base + 5], id) end
      if ARGV[base + 6] ~= '' then redis.call('ZADD', leases, ARGV[base + 6], id) end
    end
    local payload = json
    if payload == '' then payload = ARGV[base + 8] end
    written[#written + 1] = payload
    key = key or entry
    results[#results + 1] = 1
  else
    results[#results + 1] = 0
  end
end
if key then
  -- One entry per call: an entry per job cost four commands per write
  -- (two here, two to clear); per call, Redis spent ~8 % less in scripts.
  redis.call('HSET', outbox_jobs, key, table.concat(written, '\n'))
  redis.call('ZADD', outbox, now, key)
end
return {results, key or ''}
"#;

/// After the SQL mirror committed them: drops outbox entries (ARGV[1]: how
/// many keys follow) and, for each job that left the active hash (the rest
/// of ARGV: `id:version`), its copy in `leaving` unless a newer version is
/// there.
const CLEAR_SCRIPT: &str = r#"
local outbox, outbox_jobs, leaving, versions = KEYS[6], KEYS[7], KEYS[8], KEYS[9]
local keys = tonumber(ARGV[1])
for i = 2, keys + 1 do
  redis.call('ZREM', outbox, ARGV[i])
  redis.call('HDEL', outbox_jobs, ARGV[i])
end
for i = keys + 2, #ARGV do
  local entry = ARGV[i]
  local id, version = string.match(entry, '^(.*):(%d+)$')
  if id then
    local left = tonumber(redis.call('HGET', versions, 'left:' .. id))
    if left and left <= tonumber(version) then
      redis.call('HDEL', leaving, id)
      redis.call('HDEL', versions, 'left:' .. id)
    end
  end
end
return 0
"#;

/// Jobs in retry backoff read per gauge sweep at most (counted by priority).
const MAX_DELAYED_READ: usize = 10_000;

/// An outbox entry this old is taken to belong to a dead replica.
pub const RECOVER_AFTER_MS: i64 = 10_000;

pub struct RedisQueue {
    redis: Redis,
    keys: [String; 9],
    records: JobRecords,
    writer: GroupCommit,
    settings: Mutex<QueueSettings>,
    claim: redis::Script,
    cas: redis::Script,
    clear: redis::Script,
}

impl std::fmt::Debug for RedisQueue {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("RedisQueue").finish_non_exhaustive()
    }
}

/// The keys of the outbox entries a write made (one per script call).
type Outbox = Vec<String>;

/// What [`RedisQueue::compare_and_set`] wrote: per job, whether it was
/// written; and the outbox entries holding those that were.
#[derive(Debug, Default)]
struct Written {
    ok: Vec<bool>,
    outbox: Outbox,
}

/// A job written back: its version as read (0 = new) and its new state.
struct Write {
    expected_version: i64,
    job: Job,
    /// Where the job may be as read: cleared before the write.
    held_in: HeldIn,
}

impl Write {
    /// A write of a job that may be anywhere: every place is cleared.
    fn new(expected_version: i64, job: Job) -> Self {
        Self {
            expected_version,
            job,
            held_in: HeldIn::ALL,
        }
    }

    /// A write of a new job: it is nowhere yet.
    fn fresh(job: Job) -> Self {
        Self {
            expected_version: 0,
            job,
            held_in: HeldIn::NOWHERE,
        }
    }

    /// A write of a job read as claimed or leased: it is in `leases` only
    /// (claiming takes a job out of the others, without a new version).
    fn of_leased(expected_version: i64, job: Job) -> Self {
        Self {
            expected_version,
            job,
            held_in: HeldIn::LEASES,
        }
    }
}

/// Where a job may be as read, as the CAS script's bit mask: the sorted-set
/// indexes (ready, deadline, delayed, leases) and `leaving` (a finished
/// job, until SQL has it). Each removal from a place a job is not in is
/// wasted work in Redis's one thread, where every replica's scripts queue:
/// about a microsecond per element, whatever the command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct HeldIn(u8);

impl HeldIn {
    const ALL: Self = Self(0b1_1111);
    const NOWHERE: Self = Self(0);
    /// Claimed or leased: in `leases` alone (active, so not leaving).
    const LEASES: Self = Self(0b0_1000);
}

fn score(value: i64) -> String {
    value.to_string()
}

impl RedisQueue {
    /// The queue under `prefix` (e.g. `{admesh:queue}`), with the settings
    /// saved in SQL (or `defaults`).
    pub async fn open(
        redis: Redis,
        prefix: &str,
        records: JobRecords,
        defaults: QueueSettings,
    ) -> anyhow::Result<Arc<Self>> {
        let settings = records.load_settings().await?.unwrap_or(defaults);
        let keys = [
            "jobs",
            "ready",
            "deadline",
            "delayed",
            "leases",
            "outbox",
            "outbox_jobs",
            "leaving",
            "versions",
        ]
        .map(|name| format!("{prefix}:{name}"));
        Ok(Arc::new(Self {
            redis,
            keys,
            writer: GroupCommit::spawn(records.clone()),
            records,
            settings: Mutex::new(settings),
            claim: redis::Script::new(CLAIM_SCRIPT),
            cas: redis::Script::new(CAS_SCRIPT),
            clear: redis::Script::new(CLEAR_SCRIPT),
        }))
    }

    fn jobs_key(&self) -> &str {
        &self.keys[0]
    }

    /// Jobs by id from the hash (absent ids are left out).
    async fn read_jobs(&self, ids: &[String]) -> StoreResult<HashMap<String, Job>> {
        let mut found = HashMap::with_capacity(ids.len());
        for chunk in ids.chunks(1_000) {
            let raw: Vec<Option<String>> = redis::cmd("HMGET")
                .arg(self.jobs_key())
                .arg(chunk)
                .query_async(&mut self.redis.connection())
                .await
                .context("reading jobs from Redis")?;
            for value in raw.into_iter().flatten() {
                let job: Job =
                    serde_json::from_str(&value).context("a job in Redis is unreadable")?;
                found.insert(job.id.clone(), job);
            }
        }
        Ok(found)
    }

    async fn read_job(&self, id: &str) -> StoreResult<Option<Job>> {
        Ok(self.read_jobs(&[id.to_string()]).await?.remove(id))
    }

    /// Writes each job if its version is still the one read; answers which
    /// were written, and the outbox entries that hold them.
    async fn compare_and_set(&self, writes: &[Write], now: i64) -> StoreResult<Written> {
        let mut written = Written::default();
        for chunk in writes.chunks(500) {
            let mut invocation = self.cas.prepare_invoke();
            for key in &self.keys {
                invocation.key(key);
            }
            invocation.arg(chunk.len()).arg(now);
            for write in chunk {
                let job = &write.job;
                let [ready, deadline_score, delayed, lease] = index_scores(job, now);
                let encoded = serde_json::to_string(job).context("encoding a job")?;
                let (json, leaving) = if job.status.is_active() {
                    (encoded, String::new())
                } else {
                    (String::new(), encoded)
                };
                invocation
                    .arg(&job.id)
                    .arg(write.expected_version.to_string())
                    .arg(json)
                    .arg(ready)
                    .arg(deadline_score)
                    .arg(delayed)
                    .arg(lease)
                    .arg(outbox_entry(job))
                    .arg(leaving)
                    .arg(write.held_in.0);
            }
            let (results, outbox): (Vec<i64>, String) = invocation
                .invoke_async(&mut self.redis.connection())
                .await
                .context("writing jobs to Redis")?;
            written
                .ok
                .extend(results.into_iter().map(|result| result == 1));
            if !outbox.is_empty() {
                written.outbox.push(outbox);
            }
        }
        Ok(written)
    }

    /// Writes each transition's job against the version it was read at
    /// (0 = new); answers the transitions that were written.
    async fn write_transitions(
        &self,
        changes: Vec<(i64, Transition)>,
        held_in: HeldIn,
        now: i64,
    ) -> StoreResult<(Vec<Transition>, Outbox)> {
        let writes: Vec<Write> = changes
            .iter()
            .map(|(expected_version, (job, _))| Write {
                expected_version: *expected_version,
                job: job.clone(),
                held_in,
            })
            .collect();
        let written = self.compare_and_set(&writes, now).await?;
        let landed = changes
            .into_iter()
            .zip(written.ok)
            .filter_map(|((_, transition), ok)| ok.then_some(transition))
            .collect();
        Ok((landed, written.outbox))
    }

    /// Applies the transitions that were written to the SQL mirror and the
    /// audit trail (awaited).
    async fn mirror(&self, transitions: Vec<Transition>, outbox: Outbox) -> StoreResult<()> {
        self.mirror_then_clear(transitions, outbox).await
    }

    /// Queues the transitions for the SQL mirror without waiting: Redis
    /// (and its outbox) already hold them durably. On failure the outbox
    /// entries stay and the sweep mirrors them later.
    fn mirror_behind(&self, transitions: Vec<Transition>, outbox: Outbox) {
        let mirrored = self.mirror_then_clear(transitions, outbox);
        tokio::spawn(async move {
            if let Err(error) = mirrored.await {
                tracing::warn!(error = %error, "mirroring behind failed; the sweep will");
            }
        });
    }

    /// Queues the transitions for the SQL mirror at once (so SQL keeps the
    /// order of the changes); the future completes once they are committed
    /// and their outbox entries cleared.
    fn mirror_then_clear(
        &self,
        transitions: Vec<Transition>,
        outbox: Outbox,
    ) -> impl std::future::Future<Output = StoreResult<()>> + Send + 'static {
        let left = left_entries(transitions.iter().map(|(job, _)| job));
        let pending = (!transitions.is_empty()).then(|| self.writer.enqueue(batch_of(transitions)));
        let (redis, clear, keys) = (self.redis.clone(), self.clear.clone(), self.keys.clone());
        async move {
            let Some(pending) = pending else {
                return Ok(());
            };
            pending.committed().await?;
            clear_outbox(&redis, &clear, &keys, &outbox, &left).await
        }
    }

    async fn clear_outbox(&self, outbox: &[String], left: &[String]) -> StoreResult<()> {
        clear_outbox(&self.redis, &self.clear, &self.keys, outbox, left).await
    }

    fn outbox_key(&self) -> &str {
        &self.keys[5]
    }

    /// Mirrors writes whose replica died before its SQL commit: outbox
    /// entries older than [`RECOVER_AFTER_MS`]. A state SQL already has (or
    /// a newer one) only leaves the outbox; a lost status change is written
    /// with its audit event, caused by "recovery".
    async fn recover_outbox(&self, now: i64) -> StoreResult<usize> {
        let stale: Vec<String> = redis::cmd("ZRANGEBYSCORE")
            .arg(self.outbox_key())
            .arg("-inf")
            .arg(now - RECOVER_AFTER_MS)
            .arg("LIMIT")
            .arg(0)
            .arg(500)
            .query_async(&mut self.redis.connection())
            .await
            .context("reading the outbox")?;
        if stale.is_empty() {
            return Ok(0);
        }
        let payloads: Vec<Option<String>> = redis::cmd("HMGET")
            .arg(&self.keys[6])
            .arg(&stale)
            .query_async(&mut self.redis.connection())
            .await
            .context("reading the outbox")?;
        let mut latest: HashMap<String, Job> = HashMap::new();
        let mut left = Vec::new();
        // An entry holds one job's JSON per line (one line: written before
        // entries were per call).
        for line in payloads
            .iter()
            .flatten()
            .flat_map(|payload| payload.lines())
        {
            let Ok(job) = serde_json::from_str::<Job>(line) else {
                continue;
            };
            if !job.status.is_active() {
                left.push(outbox_entry(&job));
            }
            if latest
                .get(&job.id)
                .is_none_or(|seen| seen.version < job.version)
            {
                latest.insert(job.id.clone(), job);
            }
        }
        let ids: Vec<String> = latest.keys().cloned().collect();
        let stored: HashMap<String, Job> = self
            .records
            .get_many(&ids)
            .await?
            .into_iter()
            .map(|job| (job.id.clone(), job))
            .collect();
        let mut recovered = Vec::new();
        for job in latest.into_values() {
            let known = stored.get(&job.id);
            if known.is_some_and(|known| known.version >= job.version) {
                continue;
            }
            let events = match known {
                Some(known) if known.status == job.status => Vec::new(),
                _ => vec![JobEvent::of(
                    &job,
                    recovered_kind(job.status),
                    "recovery",
                    "recorded from Redis after the replica that made the change stopped".into(),
                    job.updated_at,
                )],
            };
            recovered.push((job, events));
        }
        let count = recovered.len();
        if !recovered.is_empty() {
            self.writer.enqueue(batch_of(recovered)).committed().await?;
        }
        self.clear_outbox(&stale, &left).await?;
        Ok(count)
    }

    /// Reads the job `lease` names, changes it with `change` while the lease
    /// is held, and writes it back, retrying lost races. `None` when the
    /// lease is not (or no longer) held.
    async fn change_leased(
        &self,
        lease: &str,
        change: impl Fn(Job, i64) -> Transition,
    ) -> StoreResult<Option<Job>> {
        let Some(id) = job_of_lease(lease) else {
            return Ok(None);
        };
        for _ in 0..CAS_ATTEMPTS {
            let Some(job) = self.read_job(id).await? else {
                return Ok(None);
            };
            if job.status != JobStatus::Processing || job.lease_id.as_deref() != Some(lease) {
                return Ok(None);
            }
            let now = now_millis();
            let expected_version = job.version;
            let (changed, events) = change(job, now);
            let write = Write::of_leased(expected_version, changed.clone());
            let written = self.compare_and_set(&[write], now).await?;
            if written.ok[0] {
                self.mirror(vec![(changed.clone(), events)], written.outbox)
                    .await?;
                return Ok(Some(changed));
            }
        }
        Err(StoreError::Unavailable(anyhow::anyhow!(
            "lease {lease}: too much contention"
        )))
    }

    /// Positions of freshly queued (so not starved, not delayed) jobs from
    /// counts, without reading the whole order: the starved jobs, plus the
    /// jobs ahead in the priority index that are not starved.
    async fn positions_of_new(&self, jobs: &[Job], now: i64) -> StoreResult<Vec<Option<u64>>> {
        let anti_starvation = self.settings().anti_starvation;
        let starved: Vec<String> = if anti_starvation {
            redis::cmd("ZRANGEBYSCORE")
                .arg(&self.keys[2])
                .arg("-inf")
                .arg(format!("({now}"))
                .query_async(&mut self.redis.connection())
                .await
                .context("counting starved jobs")?
        } else {
            Vec::new()
        };
        let mut pipe = redis::pipe();
        if !starved.is_empty() {
            pipe.cmd("ZMSCORE").arg(&self.keys[1]).arg(&starved);
        }
        for job in jobs {
            pipe.cmd("ZRANK").arg(&self.keys[1]).arg(&job.id);
        }
        let mut replies: Vec<redis::Value> = pipe
            .query_async(&mut self.redis.connection())
            .await
            .context("reading queue positions")?;
        let starved_in_index: Vec<(f64, &String)> = if starved.is_empty() {
            Vec::new()
        } else {
            let scores: Vec<Option<f64>> =
                redis::from_redis_value(&replies.remove(0)).context("starved scores")?;
            scores
                .into_iter()
                .zip(&starved)
                .filter_map(|(score, id)| Some((score?, id)))
                .collect()
        };
        jobs.iter()
            .zip(replies)
            .map(|(job, reply)| {
                let rank: Option<u64> = redis::from_redis_value(&reply).context("a queue rank")?;
                let Some(rank) = rank else { return Ok(None) };
                let score = priority_score(job.priority, job.queued_at);
                // Starved jobs the rank counted ahead (ties go by member).
                let ahead_and_starved = starved_in_index
                    .iter()
                    .filter(|(other, id)| {
                        *other < score || (*other == score && id.as_str() < job.id.as_str())
                    })
                    .count() as u64;
                Ok(Some(starved.len() as u64 + rank - ahead_and_starved + 1))
            })
            .collect()
    }

    /// Queued ids in dispatch order: starved, then by priority, then those
    /// waiting out a backoff.
    async fn ordered_ids(&self, now: i64) -> StoreResult<Vec<String>> {
        let anti_starvation = self.settings().anti_starvation;
        let (starved, ready, delayed): (Vec<String>, Vec<String>, Vec<String>) = redis::pipe()
            .cmd("ZRANGEBYSCORE")
            .arg(&self.keys[2])
            .arg("-inf")
            .arg(if anti_starvation {
                format!("({now}")
            } else {
                "-inf".into()
            })
            .cmd("ZRANGE")
            .arg(&self.keys[1])
            .arg(0)
            .arg(-1)
            .cmd("ZRANGE")
            .arg(&self.keys[3])
            .arg(0)
            .arg(-1)
            .query_async(&mut self.redis.connection())
            .await
            .context("reading the queue order")?;
        let starved_set: std::collections::HashSet<&String> = starved.iter().collect();
        let mut ids: Vec<String> = starved.clone();
        ids.extend(ready.into_iter().filter(|id| !starved_set.contains(id)));
        ids.extend(delayed);
        Ok(ids)
    }
}

/// Drops the outbox entries `outbox` and the `leaving` copies of the jobs
/// `left` (`id:version`) names, once SQL has them.
async fn clear_outbox(
    redis: &Redis,
    clear: &redis::Script,
    keys: &[String],
    outbox: &[String],
    left: &[String],
) -> StoreResult<()> {
    let mut outbox = outbox.chunks(500);
    let mut left = left.chunks(500);
    loop {
        let (entries, jobs) = (outbox.next().unwrap_or(&[]), left.next().unwrap_or(&[]));
        if entries.is_empty() && jobs.is_empty() {
            return Ok(());
        }
        let mut invocation = clear.prepare_invoke();
        for key in keys {
            invocation.key(key);
        }
        invocation.arg(entries.len());
        for entry in entries.iter().chain(jobs) {
            invocation.arg(entry);
        }
        let _: i64 = invocation
            .invoke_async(&mut redis.connection())
            .await
            .context("clearing the outbox")?;
    }
}

/// The outbox entries (`id:version`) of the jobs among `jobs` that left the
/// active hash: their copies in `leaving` go once SQL has them.
fn left_entries<'a>(jobs: impl Iterator<Item = &'a Job>) -> Vec<String> {
    jobs.filter(|job| !job.status.is_active())
        .map(outbox_entry)
        .collect()
}

fn batch_of(transitions: Vec<Transition>) -> WriteBatch {
    let mut batch = WriteBatch::default();
    for transition in transitions {
        batch.push(transition);
    }
    batch
}

/// The outbox entry of a written job: its id and new version.
fn outbox_entry(job: &Job) -> String {
    format!("{}:{}", job.id, job.version)
}

/// The audit event of a status reached in a write that is recovered.
fn recovered_kind(status: JobStatus) -> &'static str {
    match status {
        JobStatus::Queued => "requeued",
        JobStatus::Processing => "leased",
        JobStatus::Completed => "completed",
        JobStatus::Failed => "failed",
        JobStatus::Dead => "dead",
    }
}

/// The scores of `job` in (ready, deadline, delayed, leases); empty = not
/// in that index.
fn index_scores(job: &Job, now: i64) -> [String; 4] {
    let none = String::new;
    match job.status {
        JobStatus::Queued => match job.not_before {
            Some(due) if due > now => [none(), none(), score(due), none()],
            _ => [
                format!("{:.0}", priority_score(job.priority, job.queued_at)),
                score(deadline(&job.queued_view())),
                none(),
                none(),
            ],
        },
        JobStatus::Processing => [
            none(),
            none(),
            none(),
            score(job.lease_expires_at.unwrap_or(now)),
        ],
        _ => [none(), none(), none(), none()],
    }
}

#[async_trait]
impl QueueStore for RedisQueue {
    fn records(&self) -> &JobRecords {
        &self.records
    }

    fn settings(&self) -> QueueSettings {
        *self.settings.lock()
    }

    async fn set_settings(&self, settings: QueueSettings) -> StoreResult<QueueSettings> {
        self.records.save_settings(&settings, now_millis()).await?;
        *self.settings.lock() = settings;
        Ok(settings)
    }

    async fn submit(&self, jobs: Vec<Job>, cause: &str) -> StoreResult<Vec<JobView>> {
        let now = now_millis();
        let writes: Vec<Write> = jobs.iter().map(|job| Write::fresh(job.clone())).collect();
        let written = self.compare_and_set(&writes, now).await?;
        if written.ok.iter().any(|ok| !ok) {
            return Err(StoreError::Unavailable(anyhow::anyhow!(
                "a new job id was already taken"
            )));
        }
        let transitions: Vec<Transition> = jobs
            .iter()
            .map(|job| (job.clone(), vec![transitions::submitted(job, cause, now)]))
            .collect();
        self.mirror(transitions, written.outbox).await?;
        let positions = self.positions_of_new(&jobs, now_millis()).await?;
        Ok(jobs
            .into_iter()
            .zip(positions)
            .map(|(job, position)| JobView { job, position })
            .collect())
    }

    async fn get(&self, id: &str) -> StoreResult<Option<JobView>> {
        // Active, or finished and perhaps not yet in SQL: one round trip.
        let (active, leaving): (Option<String>, Option<String>) = redis::pipe()
            .cmd("HGET")
            .arg(self.jobs_key())
            .arg(id)
            .cmd("HGET")
            .arg(&self.keys[7])
            .arg(id)
            .query_async(&mut self.redis.connection())
            .await
            .context("reading a job from Redis")?;
        if let Some(raw) = active.or(leaving) {
            let job: Job = serde_json::from_str(&raw).context("a job in Redis is unreadable")?;
            let now = now_millis();
            let position = if job.status != JobStatus::Queued {
                None
            } else if job.not_before.is_none_or(|due| due <= now)
                && !(self.settings().anti_starvation
                    && crate::ordering::is_starved(&job.queued_view(), now))
            {
                // Counted, as for a new job, without reading the order.
                self.positions_of_new(std::slice::from_ref(&job), now)
                    .await?
                    .pop()
                    .flatten()
            } else {
                self.ordered_ids(now)
                    .await?
                    .iter()
                    .position(|candidate| candidate == id)
                    .map(|index| index as u64 + 1)
            };
            return Ok(Some(JobView { job, position }));
        }
        Ok(self.records.get(id).await?.map(|job| JobView {
            job,
            position: None,
        }))
    }

    async fn queued(
        &self,
        filter: &JobFilter,
        offset: u64,
        limit: u64,
    ) -> StoreResult<(Vec<JobView>, u64)> {
        let order = self.ordered_ids(now_millis()).await?;
        let unfiltered = filter.game_family.is_none()
            && filter.priority.is_none()
            && filter.queued_before.is_none();
        if unfiltered {
            // Peeks and plain listings read only the page's jobs, not the
            // whole queue's.
            let start = usize::try_from(offset)
                .unwrap_or(usize::MAX)
                .min(order.len());
            let end = start
                .saturating_add(usize::try_from(limit).unwrap_or(usize::MAX))
                .min(order.len());
            let jobs = self.read_jobs(&order[start..end]).await?;
            let page = order[start..end]
                .iter()
                .enumerate()
                .filter_map(|(index, id)| {
                    Some(JobView {
                        job: jobs.get(id)?.clone(),
                        position: Some((start + index) as u64 + 1),
                    })
                })
                .collect();
            return Ok((page, order.len() as u64));
        }
        let jobs = self.read_jobs(&order).await?;
        let ordered = order
            .iter()
            .enumerate()
            .filter_map(|(index, id)| Some((index as u64 + 1, jobs.get(id)?)));
        Ok(page_of_queued(ordered, filter, offset, limit))
    }

    async fn snapshot(&self) -> StoreResult<QueueSnapshot> {
        let raw: Vec<String> = redis::cmd("HVALS")
            .arg(self.jobs_key())
            .query_async(&mut self.redis.connection())
            .await
            .context("reading jobs from Redis")?;
        let jobs: Vec<Job> = raw
            .iter()
            .filter_map(|value| serde_json::from_str(value).ok())
            .collect();
        Ok(snapshot_of(jobs.iter(), now_millis()))
    }

    /// Counted on the indexes, not by reading every job (which the gauges'
    /// sweep did every second, costing the whole queue's JSON each time):
    /// ready jobs by their priority band, plus the few waiting out a retry
    /// backoff, read by id.
    async fn gauges(&self) -> StoreResult<QueueGauges> {
        let now = now_millis();
        let mut pipe = redis::pipe();
        for priority in 1..=5u8 {
            // The band of scores of this priority: earliest to latest arrival.
            pipe.cmd("ZCOUNT")
                .arg(&self.keys[1])
                .arg(format!("{:.0}", priority_score(priority, 0)))
                .arg(format!("{:.0}", priority_score(priority, i64::MAX)));
        }
        pipe.cmd("ZCARD").arg(&self.keys[4]);
        pipe.cmd("ZCOUNT")
            .arg(&self.keys[2])
            .arg("-inf")
            .arg(format!("({now}"));
        pipe.cmd("ZRANGE")
            .arg(&self.keys[3])
            .arg(0)
            .arg(MAX_DELAYED_READ - 1);
        type Counts = (u64, u64, u64, u64, u64, u64, u64, Vec<String>);
        let (p1, p2, p3, p4, p5, processing, starved, delayed): Counts = pipe
            .query_async(&mut self.redis.connection())
            .await
            .context("counting the queue")?;
        let mut by_priority = [p1, p2, p3, p4, p5];
        for job in self.read_jobs(&delayed).await?.values() {
            by_priority[usize::from(job.priority.clamp(1, 5) - 1)] += 1;
        }
        Ok(QueueGauges {
            by_priority,
            processing,
            starved,
        })
    }

    async fn change_priority(
        &self,
        selector: &PrioritySelector,
        new_priority: u8,
        dry_run: bool,
        cause: &str,
    ) -> StoreResult<PriorityChangeOutcome> {
        if let Some(id) = &selector.ad_id {
            let status = match self.read_job(id).await? {
                Some(job) => job.status,
                None => match self.records.get(id).await? {
                    Some(job) => job.status,
                    None => return Err(StoreError::NotFound(format!("ad_id: no job {id}"))),
                },
            };
            if status != JobStatus::Queued {
                return Err(StoreError::FailedPrecondition(format!(
                    "ad_id: job {id} is {}; only queued jobs change priority",
                    status.as_str()
                )));
            }
        }
        let now = now_millis();
        let order = self.ordered_ids(now).await?;
        let jobs = self.read_jobs(&order).await?;
        let mut outcome = PriorityChangeOutcome::default();
        let mut changed = Vec::new();
        for id in &order {
            let Some(job) = jobs.get(id) else { continue };
            if !selector.matches(job) || !outcome.record(job, new_priority) {
                continue;
            }
            if !dry_run {
                let transition = transitions::reprioritize(job.clone(), new_priority, cause, now);
                changed.push((job.version, transition));
            }
        }
        if !changed.is_empty() {
            let attempted = changed.len();
            let (landed, outbox) = self.write_transitions(changed, HeldIn::ALL, now).await?;
            // A job leased meanwhile kept its priority; it is not counted.
            outcome.changed -= (attempted - landed.len()) as u64;
            self.mirror(landed, outbox).await?;
        }
        Ok(outcome)
    }

    async fn cancel(&self, id: &str, cause: &str) -> StoreResult<Job> {
        for _ in 0..CAS_ATTEMPTS {
            let status = match self.read_job(id).await? {
                Some(job) if job.status == JobStatus::Queued => {
                    let now = now_millis();
                    let expected_version = job.version;
                    let (cancelled, events) = transitions::cancel(job, cause, now);
                    let write = Write::new(expected_version, cancelled.clone());
                    let written = self.compare_and_set(&[write], now).await?;
                    if written.ok[0] {
                        self.mirror(vec![(cancelled.clone(), events)], written.outbox)
                            .await?;
                        return Ok(cancelled);
                    }
                    continue;
                }
                Some(job) => job.status,
                None => match self.records.get(id).await? {
                    Some(job) => job.status,
                    None => return Err(StoreError::NotFound(format!("ad_id: no job {id}"))),
                },
            };
            return Err(StoreError::FailedPrecondition(format!(
                "ad_id: job {id} is {}; only queued jobs can be cancelled",
                status.as_str()
            )));
        }
        Err(StoreError::Unavailable(anyhow::anyhow!(
            "job {id}: too much contention"
        )))
    }

    async fn lease(&self, processor_id: &str, max: usize) -> StoreResult<Vec<Lease>> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let settings = self.settings();
        let now = now_millis();
        let mut invocation = self.claim.prepare_invoke();
        for key in &self.keys {
            invocation.key(key);
        }
        let claimed: Vec<String> = invocation
            .arg(now)
            .arg(max)
            .arg(if settings.anti_starvation { "1" } else { "0" })
            .arg(now + CLAIM_GRACE_MS)
            .invoke_async(&mut self.redis.connection())
            .await
            .context("claiming jobs")?;
        let timeout = settings.lease_timeout_ms();
        let mut leased = Vec::with_capacity(claimed.len() / 2);
        for pair in claimed.chunks(2) {
            let [_, raw] = pair else { continue };
            let job: Job = serde_json::from_str(raw).context("a job in Redis is unreadable")?;
            let expected_version = job.version;
            leased.push((
                expected_version,
                transitions::lease(job, processor_id, timeout, now),
            ));
        }
        let (landed, outbox) = self.write_transitions(leased, HeldIn::LEASES, now).await?;
        let leases = landed
            .iter()
            .map(|(job, _)| Lease {
                lease_id: job.lease_id.clone().unwrap_or_default(),
                expires_at: now + timeout,
                job: job.clone(),
            })
            .collect();
        // Written behind to PostgreSQL (Redis holds the lease): merged with
        // the completion that usually follows.
        self.mirror_behind(landed, outbox);
        Ok(leases)
    }

    async fn report_progress(
        &self,
        lease: &str,
        progress: u32,
        message: &str,
    ) -> StoreResult<LeaseAnswer> {
        let timeout = self.settings().lease_timeout_ms();
        let changed = self
            .change_leased(lease, |job, now| {
                transitions::progress(job, progress, message, timeout, now)
            })
            .await?;
        match changed {
            Some(job) => Ok(LeaseAnswer {
                accepted: true,
                status: Some(JobStatus::Processing),
                expires_at: job.lease_expires_at,
            }),
            None => Ok(LeaseAnswer::rejected(self.status_of_lease(lease).await?)),
        }
    }

    async fn heartbeat(&self, lease_ids: &[String]) -> StoreResult<Vec<String>> {
        let timeout = self.settings().lease_timeout_ms();
        let ids: Vec<String> = lease_ids
            .iter()
            .filter_map(|lease| job_of_lease(lease).map(str::to_string))
            .collect();
        let jobs = self.read_jobs(&ids).await?;
        let now = now_millis();
        let mut lost = Vec::new();
        let mut writes = Vec::new();
        let mut held = Vec::new();
        for lease in lease_ids {
            let job = job_of_lease(lease)
                .and_then(|id| jobs.get(id))
                .filter(|job| {
                    job.status == JobStatus::Processing && job.lease_id.as_deref() == Some(lease)
                });
            match job {
                Some(job) => {
                    writes.push(Write::of_leased(
                        job.version,
                        transitions::extend(job.clone(), timeout, now),
                    ));
                    held.push(lease.clone());
                }
                None => lost.push(lease.clone()),
            }
        }
        let written = self.compare_and_set(&writes, now).await?;
        let mut mirrored = Vec::new();
        for ((write, lease), ok) in writes.into_iter().zip(held).zip(written.ok) {
            if ok {
                mirrored.push((write.job, Vec::new()));
            } else if self
                .change_leased(&lease, |job, now| {
                    (transitions::extend(job, timeout, now), Vec::new())
                })
                .await?
                .is_none()
            {
                lost.push(lease);
            }
        }
        self.mirror(mirrored, written.outbox).await?;
        Ok(lost)
    }

    async fn complete(
        &self,
        completions: Vec<(String, Analysis)>,
        applied: &(dyn Fn() + Send + Sync),
    ) -> StoreResult<Vec<LeaseAnswer>> {
        let ids: Vec<String> = completions
            .iter()
            .filter_map(|(lease, _)| job_of_lease(lease).map(str::to_string))
            .collect();
        let jobs = self.read_jobs(&ids).await?;
        let now = now_millis();
        let mut writes = Vec::new();
        let mut transitions_done = Vec::new();
        let mut slots = Vec::with_capacity(completions.len());
        for (lease, analysis) in &completions {
            let job = job_of_lease(lease)
                .and_then(|id| jobs.get(id))
                .filter(|job| {
                    job.status == JobStatus::Processing
                        && job.lease_id.as_deref() == Some(lease.as_str())
                });
            match job {
                Some(job) => {
                    let transition = transitions::complete(job.clone(), analysis.clone(), now);
                    writes.push(Write::of_leased(job.version, transition.0.clone()));
                    transitions_done.push(transition);
                    slots.push(Some(writes.len() - 1));
                }
                None => slots.push(None),
            }
        }
        let written = self.compare_and_set(&writes, now).await?;
        let mut landed = Vec::new();
        let mut accepted = vec![false; writes.len()];
        for (index, (transition, ok)) in transitions_done.into_iter().zip(&written.ok).enumerate() {
            if *ok {
                accepted[index] = true;
                landed.push(transition);
            }
        }
        applied();
        self.mirror(landed, written.outbox).await?;
        let mut answers = Vec::with_capacity(completions.len());
        for ((lease, _), slot) in completions.iter().zip(slots) {
            let answer = match slot {
                Some(index) if accepted[index] => LeaseAnswer {
                    accepted: true,
                    status: Some(JobStatus::Completed),
                    expires_at: None,
                },
                _ => LeaseAnswer::rejected(self.status_of_lease(lease).await?),
            };
            answers.push(answer);
        }
        Ok(answers)
    }

    async fn fail(&self, lease: &str, error: &str, retryable: bool) -> StoreResult<LeaseAnswer> {
        let settings = self.settings();
        let changed = self
            .change_leased(lease, |job, now| {
                let delay = random_retry_delay_ms(job.attempt);
                transitions::fail(
                    job,
                    Failure::Reported { error, retryable },
                    settings.max_attempts,
                    settings.lease_timeout_secs,
                    delay,
                    now,
                )
            })
            .await?;
        match changed {
            Some(job) => Ok(LeaseAnswer {
                accepted: true,
                status: Some(job.status),
                expires_at: None,
            }),
            None => Ok(LeaseAnswer::rejected(self.status_of_lease(lease).await?)),
        }
    }

    async fn expire_leases(&self) -> StoreResult<Vec<ExpiredLease>> {
        // Settings changed by another replica arrive here, once a sweep.
        if let Ok(Some(settings)) = self.records.load_settings().await {
            *self.settings.lock() = settings;
        }
        match self.recover_outbox(now_millis()).await {
            Ok(0) => {}
            Ok(recovered) => tracing::warn!(recovered, "mirrored writes a stopped replica left"),
            Err(error) => tracing::warn!(error = %error, "recovering the outbox failed"),
        }
        let settings = self.settings();
        let now = now_millis();
        let due: Vec<String> = redis::cmd("ZRANGEBYSCORE")
            .arg(&self.keys[4])
            .arg("-inf")
            .arg(now)
            .arg("LIMIT")
            .arg(0)
            .arg(1_000)
            .query_async(&mut self.redis.connection())
            .await
            .context("reading expired leases")?;
        if due.is_empty() {
            return Ok(Vec::new());
        }
        let jobs = self.read_jobs(&due).await?;
        let mut expired = Vec::new();
        let mut changed = Vec::new();
        for id in &due {
            let Some(job) = jobs.get(id) else { continue };
            let expected_version = job.version;
            let transition = match job.status {
                JobStatus::Processing if job.lease_expires_at.is_some_and(|at| at <= now) => {
                    expired.push(ExpiredLease {
                        lease_id: job.lease_id.clone().unwrap_or_default(),
                        processor_id: job.processor_id.clone().unwrap_or_default(),
                    });
                    transitions::fail(
                        job.clone(),
                        Failure::LeaseExpired,
                        settings.max_attempts,
                        settings.lease_timeout_secs,
                        0,
                        now,
                    )
                }
                // Claimed by a replica that died before writing the lease.
                JobStatus::Queued => {
                    let mut back = job.clone();
                    back.touch(now);
                    (back, Vec::new())
                }
                _ => continue,
            };
            changed.push((expected_version, transition));
        }
        let (landed, outbox) = self.write_transitions(changed, HeldIn::ALL, now).await?;
        self.mirror(landed, outbox).await?;
        Ok(expired)
    }

    async fn requeue_dead(&self, ids: Option<Vec<String>>, cause: &str) -> StoreResult<u64> {
        let ids = match ids {
            Some(ids) => ids,
            None => self.records.dead_ids().await?,
        };
        let jobs = self.records.get_many(&ids).await?;
        if let Some(missing) = ids.iter().find(|id| !jobs.iter().any(|job| &job.id == *id)) {
            return Err(StoreError::NotFound(format!("ad_ids: no job {missing}")));
        }
        let now = now_millis();
        let changed = jobs
            .into_iter()
            .filter(|job| job.status == JobStatus::Dead)
            .map(|job| (0, transitions::requeue_dead(job, cause, now)))
            .collect();
        let (landed, outbox) = self.write_transitions(changed, HeldIn::ALL, now).await?;
        let requeued = landed.len() as u64;
        self.mirror(landed, outbox).await?;
        Ok(requeued)
    }

    async fn flush(&self) {
        let _ = self.writer.barrier().committed().await;
    }
}
