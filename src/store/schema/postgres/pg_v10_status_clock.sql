-- Version 10: a status row keeps the clock of the report it holds (its event's hlc), so a
-- manifest's delete drops exactly the reports older than it (sq_tomb_merge) and keeps one
-- written after it that arrived first. Rows written before this version say 0: a delete
-- drops them only where it deletes the manifest.
ALTER TABLE repl_status ADD COLUMN IF NOT EXISTS hlc BIGINT NOT NULL DEFAULT 0;
