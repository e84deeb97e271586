-- Version 3: the audit log aggregates refusals (audit_agg.c): an entry stands for
-- `count` of them, the last at last_ms. Self-contained: audit_log used to be created
-- only by schema_auth (after the migrations), so this step creates the table as it was
-- when absent (a fresh file, or one from before access control) and then adds the
-- columns.
CREATE TABLE IF NOT EXISTS audit_log (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  time_ms INTEGER NOT NULL,
  actor TEXT NOT NULL,
  action TEXT NOT NULL,
  target TEXT,
  status INTEGER NOT NULL,
  remote TEXT,
  detail TEXT);
ALTER TABLE audit_log ADD COLUMN count INTEGER NOT NULL DEFAULT 1;
ALTER TABLE audit_log ADD COLUMN last_ms INTEGER;
