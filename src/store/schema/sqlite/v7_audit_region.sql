-- Version 7: each audit entry names the region where the change it records was decided
-- (issue 13: the audit is queried by region and time). A local entry: this region; an entry
-- of a change applied from a peer (identity.replicated, role.replicated): its origin, which
-- such entries already kept in `remote`. Entries written before this step keep NULL, read as
-- this region (the store knows its name, the schema does not). Self-contained: adds the
-- column, fills it where it is known, and indexes time for --since/--until.
ALTER TABLE audit_log ADD COLUMN region TEXT;
UPDATE audit_log SET region = remote
  WHERE actor = 'peer' AND action IN ('identity.replicated', 'role.replicated');
CREATE INDEX IF NOT EXISTS audit_log_time ON audit_log(time_ms);
