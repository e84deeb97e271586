-- Version 2: the garbage collector's review queue (SQLite's v5_gc.sql, same meaning).
-- A blob whose reference count (manifest_refs rows naming it + repo_blobs links) may
-- have dropped to zero is queued with the time; the grace restarts whenever a blob is
-- linked again or loses a reference. Triggers, so every path that changes references
-- queues the blob in its own transaction.
CREATE TABLE IF NOT EXISTS gc_queue (
  digest TEXT COLLATE "C" PRIMARY KEY,
  queued_ms BIGINT NOT NULL);
CREATE INDEX IF NOT EXISTS gc_queue_due ON gc_queue(queued_ms);
CREATE OR REPLACE FUNCTION gc_queue_touch(d TEXT) RETURNS void LANGUAGE sql AS $$
  INSERT INTO gc_queue(digest, queued_ms)
    VALUES (d, (extract(epoch FROM clock_timestamp()) * 1000)::BIGINT)
    ON CONFLICT (digest) DO UPDATE SET queued_ms = excluded.queued_ms
$$;
CREATE OR REPLACE FUNCTION gc_queue_on_unref() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM gc_queue_touch(OLD.ref_digest);
  RETURN NULL;
END $$;
CREATE OR REPLACE FUNCTION gc_queue_on_link() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM gc_queue_touch(NEW.digest);
  RETURN NULL;
END $$;
DROP TRIGGER IF EXISTS gc_queue_on_unref ON manifest_refs;
CREATE TRIGGER gc_queue_on_unref AFTER DELETE ON manifest_refs
  FOR EACH ROW EXECUTE FUNCTION gc_queue_on_unref();
DROP TRIGGER IF EXISTS gc_queue_on_link ON repo_blobs;
CREATE TRIGGER gc_queue_on_link AFTER INSERT ON repo_blobs
  FOR EACH ROW EXECUTE FUNCTION gc_queue_on_link();
-- What is already unreferenced when this version is installed is reviewed too.
INSERT INTO gc_queue(digest, queued_ms)
  SELECT b.digest, (extract(epoch FROM clock_timestamp()) * 1000)::BIGINT FROM blobs b
  WHERE NOT EXISTS (SELECT 1 FROM manifest_refs r WHERE r.ref_digest = b.digest)
  ON CONFLICT (digest) DO NOTHING;
