-- Job ids and statuses compare bytewise (COLLATE "C"), not by the
-- database locale's rules: every mirrored transition walks the primary key
-- and the status indexes, and a locale comparison costs several times a
-- byte comparison. Ids are UUIDs, so the order is the same.
ALTER TABLE ad_jobs ALTER COLUMN id TYPE TEXT COLLATE "C";
ALTER TABLE ad_jobs ALTER COLUMN status TYPE TEXT COLLATE "C";
ALTER TABLE job_events ALTER COLUMN ad_id TYPE TEXT COLLATE "C";
