-- Version 7 (issue 15, untagged manifests; self-contained): when each manifest became
-- untagged (SQLite's v9_untagged.sql, same meaning). A row is here while the manifest has
-- no tag in this region, stamped with the time it got there; the collector reviews only
-- rows older than the untagged grace. Triggers keep it right on every path.
CREATE TABLE IF NOT EXISTS untagged (
  repo_id BIGINT NOT NULL,
  digest TEXT COLLATE "C" NOT NULL,
  since_ms BIGINT NOT NULL,
  PRIMARY KEY (repo_id, digest));
CREATE INDEX IF NOT EXISTS untagged_since ON untagged(since_ms);
CREATE OR REPLACE FUNCTION untagged_mark(r BIGINT, d TEXT) RETURNS void LANGUAGE sql AS $$
  INSERT INTO untagged(repo_id, digest, since_ms)
    SELECT r, d, (extract(epoch FROM clock_timestamp()) * 1000)::BIGINT
    WHERE EXISTS (SELECT 1 FROM manifests WHERE repo_id = r AND digest = d)
      AND NOT EXISTS (SELECT 1 FROM tags WHERE repo_id = r AND digest = d)
    ON CONFLICT (repo_id, digest) DO UPDATE SET since_ms = excluded.since_ms
$$;
CREATE OR REPLACE FUNCTION untagged_on_manifest() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    PERFORM untagged_mark(NEW.repo_id, NEW.digest);
  ELSE
    DELETE FROM untagged WHERE repo_id = OLD.repo_id AND digest = OLD.digest;
  END IF;
  RETURN NULL;
END $$;
CREATE OR REPLACE FUNCTION untagged_on_tag() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'INSERT' OR (TG_OP = 'UPDATE' AND OLD.digest <> NEW.digest) THEN
    DELETE FROM untagged WHERE repo_id = NEW.repo_id AND digest = NEW.digest;
  END IF;
  IF TG_OP = 'DELETE' OR (TG_OP = 'UPDATE' AND OLD.digest <> NEW.digest) THEN
    PERFORM untagged_mark(OLD.repo_id, OLD.digest);
  END IF;
  RETURN NULL;
END $$;
DROP TRIGGER IF EXISTS untagged_on_manifest ON manifests;
CREATE TRIGGER untagged_on_manifest AFTER INSERT OR DELETE ON manifests
  FOR EACH ROW EXECUTE FUNCTION untagged_on_manifest();
DROP TRIGGER IF EXISTS untagged_on_tag ON tags;
CREATE TRIGGER untagged_on_tag AFTER INSERT OR UPDATE OF digest OR DELETE ON tags
  FOR EACH ROW EXECUTE FUNCTION untagged_on_tag();
-- What is untagged when this version is installed starts its grace now.
INSERT INTO untagged(repo_id, digest, since_ms)
  SELECT m.repo_id, m.digest, (extract(epoch FROM clock_timestamp()) * 1000)::BIGINT
  FROM manifests m WHERE NOT EXISTS
    (SELECT 1 FROM tags t WHERE t.repo_id = m.repo_id AND t.digest = m.digest)
  ON CONFLICT (repo_id, digest) DO NOTHING;
-- Which tombstones the collector wrote (anti-entropy sends them marked).
ALTER TABLE manifest_tombs ADD COLUMN IF NOT EXISTS is_gc BIGINT NOT NULL DEFAULT 0;
