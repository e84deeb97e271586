-- Version 8 (issue 21, bytes per tag; self-contained): `tags` becomes a view of the tag
-- registers that name a manifest this region has a record of (SQLite's v10_tags_view.sql,
-- same meaning): no second copy written per push. The untagged triggers (v7) follow the
-- registers instead of the table.
DROP TRIGGER IF EXISTS untagged_on_tag ON tags;
-- Every tag becomes a register if it is not one (the table was always kept in step with
-- the registers on PostgreSQL; this keeps the step safe on any data).
INSERT INTO tag_regs(repo, name, digest, hlc, origin)
  SELECT r.name, t.name, t.digest, 0, '' FROM tags t JOIN repos r ON r.id = t.repo_id
  ON CONFLICT DO NOTHING;
DROP TABLE IF EXISTS tags;
CREATE OR REPLACE VIEW tags(repo_id, name, digest) AS
  SELECT r.id, g.name, g.digest FROM tag_regs g JOIN repos r ON r.name = g.repo
  JOIN manifests m ON m.repo_id = r.id AND m.digest = g.digest;
CREATE OR REPLACE FUNCTION untagged_mark(r BIGINT, d TEXT) RETURNS void LANGUAGE sql AS $$
  INSERT INTO untagged(repo_id, digest, since_ms)
    SELECT r, d, (extract(epoch FROM clock_timestamp()) * 1000)::BIGINT
    WHERE EXISTS (SELECT 1 FROM manifests WHERE repo_id = r AND digest = d)
      AND NOT EXISTS (SELECT 1 FROM tags WHERE repo_id = r AND digest = d)
    ON CONFLICT (repo_id, digest) DO UPDATE SET since_ms = excluded.since_ms
$$;
CREATE OR REPLACE FUNCTION untagged_on_treg() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    IF NEW.digest IS NOT NULL THEN
      DELETE FROM untagged WHERE repo_id = (SELECT id FROM repos WHERE name = NEW.repo)
        AND digest = NEW.digest;
    END IF;
  ELSIF TG_OP = 'UPDATE' THEN
    IF OLD.digest IS DISTINCT FROM NEW.digest THEN
      IF NEW.digest IS NOT NULL THEN
        DELETE FROM untagged WHERE repo_id = (SELECT id FROM repos WHERE name = NEW.repo)
          AND digest = NEW.digest;
      END IF;
      IF OLD.digest IS NOT NULL THEN
        PERFORM untagged_mark((SELECT id FROM repos WHERE name = OLD.repo), OLD.digest);
      END IF;
    END IF;
  ELSIF OLD.digest IS NOT NULL THEN
    PERFORM untagged_mark((SELECT id FROM repos WHERE name = OLD.repo), OLD.digest);
  END IF;
  RETURN NULL;
END $$;
DROP TRIGGER IF EXISTS untagged_on_treg ON tag_regs;
CREATE TRIGGER untagged_on_treg AFTER INSERT OR UPDATE OF digest OR DELETE ON tag_regs
  FOR EACH ROW EXECUTE FUNCTION untagged_on_treg();
