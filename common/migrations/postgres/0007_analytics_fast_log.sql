-- Counting 100,000 events/s (issue 5).
--
-- The event stream carries a batch of events per entry.
ALTER TABLE event_stream ADD COLUMN batched BOOLEAN NOT NULL DEFAULT FALSE;

-- The de-duplication log keeps one B-tree that every event pays for: its
-- primary key, compared bytewise (COLLATE "C", not the locale's rules).
-- Event ids are UUIDv7, so new keys land at the right edge of that tree.
-- Click attribution finds an impression by event id (the ad-server's
-- impression events carry their impression id as event id); only
-- impressions whose ids differ are indexed by impression id. Per-ad rolling
-- windows read minute and hour aggregates instead of the log, and the
-- retention sweep needs only a BRIN index on time.
ALTER TABLE events_log ALTER COLUMN event_id TYPE TEXT COLLATE "C";
ALTER TABLE events_log ALTER COLUMN impression_id TYPE TEXT COLLATE "C";
DROP INDEX events_log_impression;
DROP INDEX events_log_ad_time;
DROP INDEX events_log_time;
CREATE INDEX events_log_time ON events_log USING brin (event_time);
CREATE INDEX events_log_other_impression ON events_log (impression_id)
    WHERE event_type = 'impression' AND impression_id <> event_id;

-- Per ad per minute (UTC, unix minutes): the edges of rolling windows.
CREATE TABLE ad_metrics_minute (
    minute       BIGINT NOT NULL,
    ad_id        TEXT NOT NULL,
    campaign_id  TEXT NOT NULL,
    impressions  BIGINT NOT NULL DEFAULT 0,
    clicks       BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (minute, ad_id)
);
INSERT INTO ad_metrics_minute (minute, ad_id, campaign_id, impressions, clicks)
SELECT event_time / 60000, ad_id, MIN(campaign_id),
       SUM(CASE WHEN event_type = 'impression' THEN 1 ELSE 0 END),
       SUM(CASE WHEN event_type = 'click' AND attributed THEN 1 ELSE 0 END)
FROM events_log GROUP BY event_time / 60000, ad_id;
