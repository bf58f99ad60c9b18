-- Counting 100,000 events/s (issue 5); see the PostgreSQL migration.
ALTER TABLE event_stream ADD COLUMN batched BOOLEAN NOT NULL DEFAULT FALSE;

DROP INDEX events_log_impression;
DROP INDEX events_log_ad_time;
CREATE INDEX events_log_other_impression ON events_log (impression_id)
    WHERE event_type = 'impression' AND impression_id <> event_id;

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
