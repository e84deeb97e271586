-- Version 10 (issue 21, bytes per tag; self-contained): `tags` becomes a view. The table
-- held a copy of each tag register that names a manifest this region has a record of,
-- kept in step on every write (a second write per push, ~210 bytes per tag with its
-- index); the view reads the same rows from tag_regs joined to manifests, through
-- tag_regs' primary key (by name) and tag_regs_digest (by digest).
DROP TRIGGER IF EXISTS untagged_on_tag;
DROP TRIGGER IF EXISTS untagged_on_tag_move;
DROP TRIGGER IF EXISTS untagged_on_tag_gone;
DROP TRIGGER IF EXISTS untagged_on_manifest;
DROP INDEX IF EXISTS tags_digest;
-- A tag written before version 2 has no register (v2 added them for new writes only):
-- it becomes one (clock 0, no origin: older than any replicated write) before the table
-- goes.
INSERT OR IGNORE INTO tag_regs(repo, name, digest, hlc, origin)
  SELECT r.name, t.name, t.digest, 0, '' FROM tags t JOIN repos r ON r.id = t.repo_id;
DROP TABLE IF EXISTS tags;
CREATE VIEW IF NOT EXISTS tags(repo_id, name, digest) AS
  SELECT r.id, g.name, g.digest FROM tag_regs g JOIN repos r ON r.name = g.repo
  JOIN manifests m ON m.repo_id = r.id AND m.digest = g.digest;
-- The untagged triggers (v9) follow the registers instead of the table.
CREATE TRIGGER IF NOT EXISTS untagged_on_manifest AFTER INSERT ON manifests
BEGIN
  INSERT OR REPLACE INTO untagged(repo_id, digest, since_ms)
    SELECT new.repo_id, new.digest, CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)
    WHERE NOT EXISTS (SELECT 1 FROM tags WHERE repo_id = new.repo_id AND digest = new.digest);
END;
CREATE TRIGGER IF NOT EXISTS untagged_on_treg AFTER INSERT ON tag_regs
  WHEN new.digest IS NOT NULL
BEGIN
  DELETE FROM untagged WHERE repo_id = (SELECT id FROM repos WHERE name = new.repo)
    AND digest = new.digest;
END;
CREATE TRIGGER IF NOT EXISTS untagged_on_treg_move AFTER UPDATE OF digest ON tag_regs
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
CREATE TRIGGER IF NOT EXISTS untagged_on_treg_gone AFTER DELETE ON tag_regs
  WHEN old.digest IS NOT NULL
BEGIN
  INSERT OR REPLACE INTO untagged(repo_id, digest, since_ms)
    SELECT m.repo_id, m.digest, CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)
    FROM repos r JOIN manifests m ON m.repo_id = r.id
    WHERE r.name = old.repo AND m.digest = old.digest
      AND NOT EXISTS (SELECT 1 FROM tags t WHERE t.repo_id = m.repo_id AND t.digest = m.digest);
END;
