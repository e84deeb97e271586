-- Version 4 (issue 9, items 4 and 16; self-contained): an upload session records the
-- address of the client that started it, for the per-address cap, and the size last
-- acknowledged to that client, so that a session cut by a crash in the middle of a PATCH
-- resumes there. acked_bytes NULL: a region's own fetch session, or one from before this
-- version, resumed from whatever its file holds. is_single_request: the session of one
-- monolithic POST, which no client can resume (it never learnt the id).
ALTER TABLE uploads ADD COLUMN source TEXT;
ALTER TABLE uploads ADD COLUMN acked_bytes INTEGER;
ALTER TABLE uploads ADD COLUMN is_single_request INTEGER NOT NULL DEFAULT 0;
CREATE INDEX IF NOT EXISTS uploads_source ON uploads(source, expires_s)
  WHERE source IS NOT NULL;
-- The start-up sweep of sessions nobody can resume reads only those.
CREATE INDEX IF NOT EXISTS uploads_single ON uploads(id) WHERE is_single_request = 1;
