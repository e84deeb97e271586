-- Version 5 (issue 15, item 1; self-contained): the garbage collector's review queue.
-- A blob's reference count is the number of manifest_refs rows naming it (indexed by
-- manifest_refs_ref) plus its repo_blobs links; gc_queue holds the blobs whose count
-- may have dropped to zero, each with the time it was queued, so that the collector
-- reviews only those, after a grace period, instead of sweeping the store.
-- queued_ms restarts whenever a blob is linked again (an upload or a fetch finished)
-- or loses a reference (a manifest deleted or released), so the grace always runs from
-- the last change.
CREATE TABLE IF NOT EXISTS gc_queue (
  digest TEXT PRIMARY KEY,
  queued_ms INTEGER NOT NULL) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS gc_queue_due ON gc_queue(queued_ms);
-- Triggers, so that every path that drops a reference or adds a link (manifest delete,
-- tombstones applied from peers, placement releases, uploads, fetches) queues the blob
-- in its own transaction without each having to remember it.
CREATE TRIGGER IF NOT EXISTS gc_queue_on_unref AFTER DELETE ON manifest_refs
BEGIN
  INSERT OR REPLACE INTO gc_queue(digest, queued_ms)
    VALUES (old.ref_digest, CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER));
END;
CREATE TRIGGER IF NOT EXISTS gc_queue_on_link AFTER INSERT ON repo_blobs
BEGIN
  INSERT OR REPLACE INTO gc_queue(digest, queued_ms)
    VALUES (new.digest, CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER));
END;
-- What is already unreferenced when this version is installed is reviewed too.
INSERT OR IGNORE INTO gc_queue(digest, queued_ms)
  SELECT b.digest, CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER) FROM blobs b
  WHERE NOT EXISTS (SELECT 1 FROM manifest_refs r WHERE r.ref_digest = b.digest);
