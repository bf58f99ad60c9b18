-- AdMesh schema, SQLite dialect (the embedded profile).
-- Kept column-for-column equal to ../postgres/0001_initial.sql: the same queries
-- run on both. Times are BIGINT unix milliseconds (UTC); days and hours are
-- counted since the unix epoch; money is BIGINT micros; JSON is TEXT.

-- ── bid-engine: campaigns, targeting, creatives, budgets ────────────────────
CREATE TABLE campaigns (
    id               TEXT PRIMARY KEY,
    name             TEXT NOT NULL,
    advertiser_id    TEXT NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ('active', 'paused', 'ended')),
    bid_price        BIGINT NOT NULL CHECK (bid_price > 0),
    daily_budget     BIGINT NOT NULL CHECK (daily_budget > 0),
    lifetime_budget  BIGINT CHECK (lifetime_budget IS NULL OR lifetime_budget > 0),
    lifetime_spent   BIGINT NOT NULL DEFAULT 0,
    start_time       BIGINT,
    end_time         BIGINT,
    frequency_cap    INTEGER CHECK (frequency_cap IS NULL OR frequency_cap > 0),
    -- Serial creation order: the auction's tie-break (oldest campaign first).
    created_seq      BIGINT NOT NULL,
    version          BIGINT NOT NULL DEFAULT 1,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL
);
CREATE INDEX campaigns_status ON campaigns (status);
CREATE INDEX campaigns_advertiser ON campaigns (advertiser_id);
CREATE UNIQUE INDEX campaigns_created_seq ON campaigns (created_seq);

-- One row per rule value; no row of a type = any value matches.
CREATE TABLE campaign_targeting_rules (
    campaign_id  TEXT NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    rule_type    TEXT NOT NULL CHECK (rule_type IN ('country', 'device_type', 'placement', 'interest', 'age_range')),
    rule_value   TEXT NOT NULL,
    PRIMARY KEY (campaign_id, rule_type, rule_value)
);

CREATE TABLE campaign_ads (
    id            TEXT PRIMARY KEY,
    campaign_id   TEXT NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    title         TEXT NOT NULL,
    image_url     TEXT NOT NULL,
    redirect_url  TEXT NOT NULL,
    created_at    BIGINT NOT NULL
);
CREATE INDEX campaign_ads_campaign ON campaign_ads (campaign_id);

-- Spend per campaign per UTC day: the daily budget is checked against the
-- current day's row, so spend "resets" at UTC midnight without a job.
CREATE TABLE campaign_daily_spend (
    campaign_id  TEXT NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    day          INTEGER NOT NULL,
    spent        BIGINT NOT NULL DEFAULT 0,
    impressions  BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (campaign_id, day)
);

-- Impressions per user per campaign per UTC day, for frequency caps.
CREATE TABLE frequency_counts (
    campaign_id  TEXT NOT NULL,
    user_id      TEXT NOT NULL,
    day          INTEGER NOT NULL,
    impressions  INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (campaign_id, user_id, day)
);

-- ── ad-server: clicks counted at most once per impression ───────────────────
CREATE TABLE clicks (
    impression_id  TEXT PRIMARY KEY,
    event_id       TEXT NOT NULL,
    ad_id          TEXT NOT NULL,
    campaign_id    TEXT NOT NULL,
    user_id        TEXT NOT NULL,
    created_at     BIGINT NOT NULL
);

-- ── queue-service: ad jobs, their audit trail, runtime config ───────────────
CREATE TABLE ad_jobs (
    id                     TEXT PRIMARY KEY,
    title                  TEXT NOT NULL,
    description            TEXT NOT NULL DEFAULT '',
    game_family            TEXT NOT NULL,
    target_audience        TEXT NOT NULL DEFAULT '[]',
    visual_elements        TEXT NOT NULL DEFAULT '[]',
    call_to_action         TEXT NOT NULL DEFAULT '',
    duration               INTEGER NOT NULL DEFAULT 0,
    priority               INTEGER NOT NULL CHECK (priority BETWEEN 1 AND 5),
    max_wait_time          INTEGER NOT NULL DEFAULT 300 CHECK (max_wait_time > 0),
    status                 TEXT NOT NULL CHECK (status IN ('queued', 'processing', 'completed', 'failed', 'dead')),
    attempt                INTEGER NOT NULL DEFAULT 0,
    version                BIGINT NOT NULL DEFAULT 1,
    created_at             BIGINT NOT NULL,
    queued_at              BIGINT NOT NULL,
    processing_started_at  BIGINT,
    processed_at           BIGINT,
    not_before             BIGINT,
    updated_at             BIGINT NOT NULL,
    progress               INTEGER NOT NULL DEFAULT 0,
    progress_message       TEXT NOT NULL DEFAULT '',
    analysis               TEXT,
    last_error             TEXT NOT NULL DEFAULT '',
    lease_id               TEXT,
    lease_expires_at       BIGINT,
    processor_id           TEXT
);
CREATE INDEX ad_jobs_dispatch ON ad_jobs (status, priority DESC, queued_at, id);
CREATE INDEX ad_jobs_game_family ON ad_jobs (game_family);
CREATE INDEX ad_jobs_lease ON ad_jobs (lease_id);

CREATE TABLE job_events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    ad_id       TEXT NOT NULL,
    kind        TEXT NOT NULL,
    status      TEXT NOT NULL,
    attempt     INTEGER NOT NULL DEFAULT 0,
    cause       TEXT NOT NULL DEFAULT '',
    detail      TEXT NOT NULL DEFAULT '',
    created_at  BIGINT NOT NULL
);
CREATE INDEX job_events_ad ON job_events (ad_id, id);
CREATE INDEX job_events_time ON job_events (created_at);

-- A single row (id = 1) holding the live queue configuration.
CREATE TABLE queue_config (
    id                       INTEGER PRIMARY KEY CHECK (id = 1),
    anti_starvation_enabled  BOOLEAN NOT NULL,
    default_max_wait_time    INTEGER NOT NULL,
    worker_count             INTEGER NOT NULL,
    batch_size               INTEGER NOT NULL,
    lease_timeout_seconds    INTEGER NOT NULL,
    max_attempts             INTEGER NOT NULL,
    updated_at               BIGINT NOT NULL
);

-- ── analytics-service: the de-duplication log and the aggregates ────────────
-- Every counted event once; inserting an event_id twice is how duplicates
-- are detected, in the same transaction as the aggregate upserts.
CREATE TABLE events_log (
    event_id       TEXT PRIMARY KEY,
    event_type     TEXT NOT NULL CHECK (event_type IN ('impression', 'click')),
    event_time     BIGINT NOT NULL,
    campaign_id    TEXT NOT NULL,
    ad_id          TEXT NOT NULL,
    user_id        TEXT NOT NULL,
    placement_id   TEXT NOT NULL DEFAULT '',
    impression_id  TEXT NOT NULL DEFAULT '',
    bid_price      BIGINT NOT NULL DEFAULT 0,
    spend          BIGINT NOT NULL DEFAULT 0,
    country_code   TEXT NOT NULL DEFAULT '',
    device_type    TEXT NOT NULL DEFAULT '',
    attributed     BOOLEAN NOT NULL DEFAULT TRUE,
    ingested_at    BIGINT NOT NULL
);
CREATE INDEX events_log_campaign_time ON events_log (campaign_id, event_time);
CREATE INDEX events_log_impression ON events_log (impression_id);

CREATE TABLE campaign_metrics_daily (
    campaign_id  TEXT NOT NULL,
    day          INTEGER NOT NULL,
    impressions  BIGINT NOT NULL DEFAULT 0,
    clicks       BIGINT NOT NULL DEFAULT 0,
    spend        BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (campaign_id, day)
);
CREATE INDEX campaign_metrics_daily_day ON campaign_metrics_daily (day);

CREATE TABLE campaign_metrics_hourly (
    campaign_id  TEXT NOT NULL,
    hour         BIGINT NOT NULL,
    impressions  BIGINT NOT NULL DEFAULT 0,
    clicks       BIGINT NOT NULL DEFAULT 0,
    spend        BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (campaign_id, hour)
);

CREATE TABLE ad_metrics_hourly (
    ad_id        TEXT NOT NULL,
    hour         BIGINT NOT NULL,
    campaign_id  TEXT NOT NULL,
    impressions  BIGINT NOT NULL DEFAULT 0,
    clicks       BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (ad_id, hour)
);
CREATE INDEX ad_metrics_hourly_hour ON ad_metrics_hourly (hour);

-- ── agent-service: the commands audit and the activity log ──────────────────
CREATE TABLE commands (
    id            TEXT PRIMARY KEY,
    command_text  TEXT NOT NULL,
    intent        TEXT,
    status        TEXT NOT NULL CHECK (status IN ('executed', 'dry_run', 'rejected', 'failed')),
    result        TEXT,
    error         TEXT NOT NULL DEFAULT '',
    duration_us   BIGINT NOT NULL DEFAULT 0,
    user_name     TEXT NOT NULL DEFAULT '',
    role          TEXT NOT NULL DEFAULT '',
    provider      TEXT NOT NULL DEFAULT 'offline',
    dry_run       BOOLEAN NOT NULL DEFAULT FALSE,
    created_at    BIGINT NOT NULL
);
CREATE INDEX commands_time ON commands (created_at);

CREATE TABLE activity_log (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    created_at   BIGINT NOT NULL,
    service      TEXT NOT NULL,
    level        TEXT NOT NULL CHECK (level IN ('debug', 'info', 'warn', 'error')),
    message      TEXT NOT NULL,
    resource_id  TEXT NOT NULL DEFAULT ''
);
CREATE INDEX activity_log_time ON activity_log (created_at);
CREATE INDEX activity_log_service ON activity_log (service, created_at);

-- ── edge: users, API keys, rate-limit rules ─────────────────────────────────
CREATE TABLE users (
    id             TEXT PRIMARY KEY,
    username       TEXT NOT NULL UNIQUE,
    password_hash  TEXT NOT NULL,
    role           TEXT NOT NULL CHECK (role IN ('viewer', 'operator', 'admin')),
    created_at     BIGINT NOT NULL,
    disabled       BOOLEAN NOT NULL DEFAULT FALSE
);

CREATE TABLE api_keys (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    -- SHA-256 of the key: the key itself is never stored.
    key_hash      TEXT NOT NULL UNIQUE,
    role          TEXT NOT NULL CHECK (role IN ('viewer', 'operator', 'admin')),
    created_at    BIGINT NOT NULL,
    last_used_at  BIGINT,
    revoked_at    BIGINT
);

CREATE TABLE rate_limit_rules (
    rule_key     TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    scope_type   TEXT NOT NULL CHECK (scope_type IN ('user', 'route', 'global')),
    scope_id     TEXT NOT NULL DEFAULT '',
    refill_rate  REAL NOT NULL CHECK (refill_rate > 0),
    capacity     INTEGER NOT NULL CHECK (capacity >= 1),
    updated_at   BIGINT NOT NULL
);
