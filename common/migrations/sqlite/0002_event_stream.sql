-- The embedded profile's event stream: impressions and clicks from the
-- ad-server wait here until the analytics consumer has committed them
-- (then it deletes them). Payload: a protobuf admesh.analytics.v1.AdEvent.
-- The cluster profile uses a Redis Stream instead; the table stays empty.
CREATE TABLE event_stream (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    payload      BLOB NOT NULL,
    appended_at  BIGINT NOT NULL
);
