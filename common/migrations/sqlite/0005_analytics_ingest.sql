-- analytics-service: the consumer's exact counters (updated in the same
-- transaction as the aggregates), and the indexes of per-ad queries over
-- rolling windows and of the retention sweep. Campaign queries read the
-- aggregates, so the log needs no campaign index (each index costs every
-- counted event).
CREATE TABLE analytics_ingest (
    id                   INTEGER PRIMARY KEY CHECK (id = 1),
    events_counted       BIGINT NOT NULL DEFAULT 0,
    duplicates_dropped   BIGINT NOT NULL DEFAULT 0,
    unattributed_clicks  BIGINT NOT NULL DEFAULT 0,
    last_event_time      BIGINT NOT NULL DEFAULT 0
);
INSERT INTO analytics_ingest (id) VALUES (1);
CREATE INDEX events_log_ad_time ON events_log (ad_id, event_time);
CREATE INDEX events_log_time ON events_log (event_time);
DROP INDEX events_log_campaign_time;
