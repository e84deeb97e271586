-- Version 9 (issue 21, bytes per tag; self-contained): a manifest's references name it by
-- its seq instead of (repo_id, digest) (SQLite's v11_manifest_refs_seq.sql, same meaning):
-- each reference row and its entry in the by-reference index no longer hold the
-- manifest's digest. `manifest_refs` becomes a view with the table's columns, for
-- readers; writers use manifest_ref_seqs. From this version on, manifest bodies may be
-- stored packed (src/store/body_pack.c): the version keeps older builds off the database.
CREATE TABLE IF NOT EXISTS manifest_ref_seqs (
  manifest_seq BIGINT NOT NULL REFERENCES manifests(seq) ON DELETE CASCADE,
  ref_digest TEXT COLLATE "C" NOT NULL,
  is_manifest BIGINT NOT NULL,
  size BIGINT,
  PRIMARY KEY (manifest_seq, ref_digest));
INSERT INTO manifest_ref_seqs(manifest_seq, ref_digest, is_manifest, size)
  SELECT m.seq, r.ref_digest, r.is_manifest, r.size FROM manifest_refs r
  JOIN manifests m ON m.repo_id = r.repo_id AND m.digest = r.manifest_digest
  ON CONFLICT DO NOTHING;
DROP TABLE IF EXISTS manifest_refs;
CREATE INDEX IF NOT EXISTS manifest_refs_ref ON manifest_ref_seqs(ref_digest);
CREATE OR REPLACE VIEW manifest_refs(repo_id, manifest_digest, ref_digest, is_manifest, size) AS
  SELECT m.repo_id, m.digest, r.ref_digest, r.is_manifest, r.size
  FROM manifest_ref_seqs r JOIN manifests m ON m.seq = r.manifest_seq;
DROP TRIGGER IF EXISTS gc_queue_on_unref ON manifest_ref_seqs;
CREATE TRIGGER gc_queue_on_unref AFTER DELETE ON manifest_ref_seqs
  FOR EACH ROW EXECUTE FUNCTION gc_queue_on_unref();
