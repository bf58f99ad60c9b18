-- The embedded profile's event stream (see ../sqlite/0002_event_stream.sql);
-- kept here so both schemas stay equal. The cluster profile uses a Redis
-- Stream, so in PostgreSQL this table stays empty.
CREATE TABLE event_stream (
    seq          BIGSERIAL PRIMARY KEY,
    payload      BYTEA NOT NULL,
    appended_at  BIGINT NOT NULL
);
