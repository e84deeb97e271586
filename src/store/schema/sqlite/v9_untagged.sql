-- Version 9 (issue 15, untagged manifests; self-contained): when each manifest became
-- untagged. A row is here while the manifest has no tag in this region, stamped with the
-- time it got there (put without a tag, or its last tag deleted or moved away); the
-- garbage collector reviews only rows older than the untagged grace, instead of scanning
-- every manifest. Whether something else keeps it (an index naming it, a subject it
-- refers to, a lock) is decided at review time. A put of the same manifest again restarts
-- the stamp (meta_manifests.c), so the grace runs from the last push of a child.
CREATE TABLE IF NOT EXISTS untagged (
  repo_id INTEGER NOT NULL,
  digest TEXT NOT NULL,
  since_ms INTEGER NOT NULL,
  PRIMARY KEY (repo_id, digest)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS untagged_since ON untagged(since_ms);
-- Triggers, so that every path (local put, tag moves, deletes, events from peers,
-- tombstones) keeps the table right in the transaction that makes the change.
CREATE TRIGGER IF NOT EXISTS untagged_on_manifest AFTER INSERT ON manifests
BEGIN
  INSERT OR REPLACE INTO untagged(repo_id, digest, since_ms)
    SELECT new.repo_id, new.digest, CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)
    WHERE NOT EXISTS (SELECT 1 FROM tags WHERE repo_id = new.repo_id AND digest = new.digest);
END;
CREATE TRIGGER IF NOT EXISTS untagged_on_manifest_gone AFTER DELETE ON manifests
BEGIN
  DELETE FROM untagged WHERE repo_id = old.repo_id AND digest = old.digest;
END;
CREATE TRIGGER IF NOT EXISTS untagged_on_tag AFTER INSERT ON tags
BEGIN
  DELETE FROM untagged WHERE repo_id = new.repo_id AND digest = new.digest;
END;
CREATE TRIGGER IF NOT EXISTS untagged_on_tag_move AFTER UPDATE OF digest ON tags
  WHEN old.digest <> new.digest
BEGIN
  DELETE FROM untagged WHERE repo_id = new.repo_id AND digest = new.digest;
  INSERT OR REPLACE INTO untagged(repo_id, digest, since_ms)
    SELECT old.repo_id, old.digest, CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)
    WHERE EXISTS (SELECT 1 FROM manifests WHERE repo_id = old.repo_id AND digest = old.digest)
      AND NOT EXISTS (SELECT 1 FROM tags WHERE repo_id = old.repo_id AND digest = old.digest);
END;
CREATE TRIGGER IF NOT EXISTS untagged_on_tag_gone AFTER DELETE ON tags
BEGIN
  INSERT OR REPLACE INTO untagged(repo_id, digest, since_ms)
    SELECT old.repo_id, old.digest, CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)
    WHERE EXISTS (SELECT 1 FROM manifests WHERE repo_id = old.repo_id AND digest = old.digest)
      AND NOT EXISTS (SELECT 1 FROM tags WHERE repo_id = old.repo_id AND digest = old.digest);
END;
-- What is untagged when this version is installed starts its grace now.
INSERT OR IGNORE INTO untagged(repo_id, digest, since_ms)
  SELECT m.repo_id, m.digest, CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)
  FROM manifests m WHERE NOT EXISTS
    (SELECT 1 FROM tags t WHERE t.repo_id = m.repo_id AND t.digest = m.digest);
-- Which tombstones the collector wrote: anti-entropy sends them marked, so that a region
-- where something keeps the manifest puts it again instead of deleting it.
ALTER TABLE manifest_tombs ADD COLUMN is_gc INTEGER NOT NULL DEFAULT 0;
