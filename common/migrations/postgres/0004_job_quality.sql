-- queue-service: the quality score of a completed job as a column, so
-- per-family statistics average it in SQL; and an index for "completed in
-- the last minute" (the processing rate).
ALTER TABLE ad_jobs ADD COLUMN quality_score INTEGER;
CREATE INDEX ad_jobs_processed ON ad_jobs (status, processed_at);
