-- No query reads job events by time (the audit trail is read by job, the
-- live feed by id), and the index cost a B-tree insert per state change.
DROP INDEX job_events_time;
