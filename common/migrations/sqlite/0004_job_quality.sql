-- queue-service: the quality score of a completed job as a column, so
-- per-family statistics average it in SQL. Indexes serve what SQL is asked
-- (listings by status, newest first; recent completions; dead letters);
-- the dispatch order and leases live in the queue store, not in SQL, and
-- every index costs each job write.
ALTER TABLE ad_jobs ADD COLUMN quality_score INTEGER;
DROP INDEX ad_jobs_dispatch;
DROP INDEX ad_jobs_lease;
DROP INDEX ad_jobs_game_family;
CREATE INDEX ad_jobs_status_created ON ad_jobs (status, created_at);
CREATE INDEX ad_jobs_status_processed ON ad_jobs (status, processed_at);
