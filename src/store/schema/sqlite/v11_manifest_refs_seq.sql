-- Version 11 (issue 21, bytes per tag; self-contained): a manifest's references name it by
-- a number instead of (repo_id, digest). Each reference row and its entry in the
-- by-reference index held the manifest's 71-character digest (~360 bytes per tag of a
-- two-reference image); they now hold its seq. `manifests` gets a stable number for that
-- (seq, INTEGER PRIMARY KEY: a plain rowid may change on VACUUM), taken from its rowid so
-- the order of insertion (PENDING_LIST) is kept. `manifest_refs` becomes a view of
-- manifest_ref_seqs joined to manifests with the same columns as the table, for readers;
-- writers use manifest_ref_seqs.
-- From this version on, manifest bodies may be stored packed (src/store/body_pack.c): the
-- version number keeps an older build, which would serve them as they are, from opening
-- the file. Bodies stored before stay as they are and are read as before.
-- Objects that name manifests or manifest_refs are dropped first and made again at the
-- end (a rename checks every view and trigger of the schema).
DROP VIEW IF EXISTS tags;
DROP TRIGGER IF EXISTS untagged_on_manifest;
DROP TRIGGER IF EXISTS untagged_on_manifest_gone;
DROP TRIGGER IF EXISTS untagged_on_treg;
DROP TRIGGER IF EXISTS untagged_on_treg_move;
DROP TRIGGER IF EXISTS untagged_on_treg_gone;
DROP TRIGGER IF EXISTS gc_queue_on_unref;
CREATE TABLE manifests_v11 (
  seq INTEGER PRIMARY KEY,
  repo_id INTEGER NOT NULL REFERENCES repos(id),
  digest TEXT NOT NULL,
  media_type TEXT NOT NULL,
  artifact_type TEXT,
  annotations TEXT,
  subject TEXT,
  size INTEGER NOT NULL,
  body BLOB NOT NULL,
  created_ms INTEGER NOT NULL,
  is_visible INTEGER NOT NULL DEFAULT 1,
  hlc INTEGER NOT NULL DEFAULT 0,
  origin TEXT NOT NULL DEFAULT '',
  UNIQUE (repo_id, digest));
INSERT INTO manifests_v11(seq, repo_id, digest, media_type, artifact_type, annotations,
    subject, size, body, created_ms, is_visible, hlc, origin)
  SELECT rowid, repo_id, digest, media_type, artifact_type, annotations, subject, size, body,
    created_ms, is_visible, hlc, origin FROM manifests ORDER BY rowid;
CREATE TABLE manifest_ref_seqs (
  manifest_seq INTEGER NOT NULL REFERENCES manifests_v11(seq) ON DELETE CASCADE,
  ref_digest TEXT NOT NULL,
  is_manifest INTEGER NOT NULL,
  size INTEGER,
  PRIMARY KEY (manifest_seq, ref_digest)) WITHOUT ROWID;
INSERT INTO manifest_ref_seqs(manifest_seq, ref_digest, is_manifest, size)
  SELECT m.seq, r.ref_digest, r.is_manifest, r.size FROM manifest_refs r
  JOIN manifests_v11 m ON m.repo_id = r.repo_id AND m.digest = r.manifest_digest;
DROP TABLE manifest_refs;
DROP TABLE manifests;
ALTER TABLE manifests_v11 RENAME TO manifests;
CREATE INDEX manifests_subject ON manifests(repo_id, subject) WHERE subject IS NOT NULL;
CREATE INDEX manifests_pending ON manifests(is_visible) WHERE is_visible = 0;
CREATE INDEX manifest_refs_ref ON manifest_ref_seqs(ref_digest);
CREATE VIEW manifest_refs(repo_id, manifest_digest, ref_digest, is_manifest, size) AS
  SELECT m.repo_id, m.digest, r.ref_digest, r.is_manifest, r.size
  FROM manifest_ref_seqs r JOIN manifests m ON m.seq = r.manifest_seq;
CREATE TRIGGER gc_queue_on_unref AFTER DELETE ON manifest_ref_seqs
BEGIN
  INSERT OR REPLACE INTO gc_queue(digest, queued_ms)
    VALUES (old.ref_digest, CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER));
END;
-- The view and triggers of version 10, as they were.
CREATE VIEW tags(repo_id, name, digest) AS
  SELECT r.id, g.name, g.digest FROM tag_regs g JOIN repos r ON r.name = g.repo
  JOIN manifests m ON m.repo_id = r.id AND m.digest = g.digest;
CREATE TRIGGER untagged_on_manifest AFTER INSERT ON manifests
BEGIN
  INSERT OR REPLACE INTO untagged(repo_id, digest, since_ms)
    SELECT new.repo_id, new.digest, CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)
    WHERE NOT EXISTS (SELECT 1 FROM tags WHERE repo_id = new.repo_id AND digest = new.digest);
END;
CREATE TRIGGER untagged_on_manifest_gone AFTER DELETE ON manifests
BEGIN
  DELETE FROM untagged WHERE repo_id = old.repo_id AND digest = old.digest;
END;
CREATE TRIGGER untagged_on_treg AFTER INSERT ON tag_regs
  WHEN new.digest IS NOT NULL
BEGIN
  DELETE FROM untagged WHERE repo_id = (SELECT id FROM repos WHERE name = new.repo)
    AND digest = new.digest;
END;
CREATE TRIGGER untagged_on_treg_move AFTER UPDATE OF digest ON tag_regs
  WHEN old.digest IS NOT new.digest
BEGIN
  DELETE FROM untagged WHERE new.digest IS NOT NULL
    AND repo_id = (SELECT id FROM repos WHERE name = new.repo) AND digest = new.digest;
  INSERT OR REPLACE INTO untagged(repo_id, digest, since_ms)
    SELECT m.repo_id, m.digest, CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)
    FROM repos r JOIN manifests m ON m.repo_id = r.id
    WHERE r.name = old.repo AND m.digest = old.digest
      AND NOT EXISTS (SELECT 1 FROM tags t WHERE t.repo_id = m.repo_id AND t.digest = m.digest);
END;
CREATE TRIGGER untagged_on_treg_gone AFTER DELETE ON tag_regs
  WHEN old.digest IS NOT NULL
BEGIN
  INSERT OR REPLACE INTO untagged(repo_id, digest, since_ms)
    SELECT m.repo_id, m.digest, CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)
    FROM repos r JOIN manifests m ON m.repo_id = r.id
    WHERE r.name = old.repo AND m.digest = old.digest
      AND NOT EXISTS (SELECT 1 FROM tags t WHERE t.repo_id = m.repo_id AND t.digest = m.digest);
END;
-- The rebuild dropped the planner statistics of manifests (and the new table has none):
-- gather them again (ANALYZE reads at most the connection's analysis_limit rows per index).
ANALYZE;
