-- Rejected ticket presentations are audited aggregated: one row per client IP,
-- reason and minute, with `count`. `bucket` names that row (NULL for every
-- other action), so that later counts of the same minute add to it.
ALTER TABLE audit ADD COLUMN count INTEGER NOT NULL DEFAULT 1;
ALTER TABLE audit ADD COLUMN bucket TEXT;
CREATE UNIQUE INDEX audit_bucket ON audit (bucket);
