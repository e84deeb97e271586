-- Version 5: the region each audit entry was decided in (SQLite's v7_audit_region.sql,
-- same meaning): local entries this region (NULL before this step, read as this region),
-- entries of changes applied from a peer their origin. Indexed time for --since/--until.
ALTER TABLE audit_log ADD COLUMN IF NOT EXISTS region TEXT COLLATE "C";
UPDATE audit_log SET region = remote
  WHERE actor = 'peer' AND action IN ('identity.replicated', 'role.replicated');
CREATE INDEX IF NOT EXISTS audit_log_time ON audit_log(time_ms);
