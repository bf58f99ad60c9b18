-- Budget reservations of the embedded profile: before the in-process ledger
-- grants spend beyond what SQL already knows, it records a reservation here,
-- so that after a crash (spend charged but not yet written behind) the
-- restarted ledger starts from max(spent, reserved) and never overspends.
-- A clean shutdown sets reserved back to the exact spend.
ALTER TABLE campaign_daily_spend ADD COLUMN reserved BIGINT NOT NULL DEFAULT 0;
ALTER TABLE campaigns ADD COLUMN lifetime_reserved BIGINT NOT NULL DEFAULT 0;
