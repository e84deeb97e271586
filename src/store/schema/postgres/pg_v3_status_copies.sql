-- Version 3: each region's copies of a version in its status (SQLite's
-- v6_status_copies.sql, same meaning). NULL: not reported.
ALTER TABLE repl_status ADD COLUMN IF NOT EXISTS copies BIGINT;
