-- Version 1 of the schema. Names compare with BINARY collation (bytewise), which is
-- the lexical order the distribution-spec asks of tag and catalog listings. Changes go
-- into a new migration step keyed on PRAGMA user_version, never into this text.
CREATE TABLE IF NOT EXISTS repos (
  id INTEGER PRIMARY KEY,
  name TEXT NOT NULL UNIQUE COLLATE BINARY);
CREATE TABLE IF NOT EXISTS blobs (
  digest TEXT PRIMARY KEY,
  size INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS repo_blobs (
  repo_id INTEGER NOT NULL REFERENCES repos(id),
  digest TEXT NOT NULL REFERENCES blobs(digest),
  PRIMARY KEY (repo_id, digest)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS repo_blobs_digest ON repo_blobs(digest);
CREATE TABLE IF NOT EXISTS manifests (
  repo_id INTEGER NOT NULL REFERENCES repos(id),
  digest TEXT NOT NULL,
  media_type TEXT NOT NULL,
  artifact_type TEXT,
  annotations TEXT,
  subject TEXT,
  size INTEGER NOT NULL,
  body BLOB NOT NULL,
  created_ms INTEGER NOT NULL,
  PRIMARY KEY (repo_id, digest));
CREATE INDEX IF NOT EXISTS manifests_subject ON manifests(repo_id, subject)
  WHERE subject IS NOT NULL;
CREATE TABLE IF NOT EXISTS manifest_refs (
  repo_id INTEGER NOT NULL,
  manifest_digest TEXT NOT NULL,
  ref_digest TEXT NOT NULL,
  is_manifest INTEGER NOT NULL,
  PRIMARY KEY (repo_id, manifest_digest, ref_digest),
  FOREIGN KEY (repo_id, manifest_digest) REFERENCES manifests(repo_id, digest)
    ON DELETE CASCADE) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS manifest_refs_ref ON manifest_refs(ref_digest);
CREATE TABLE IF NOT EXISTS tags (
  repo_id INTEGER NOT NULL,
  name TEXT NOT NULL COLLATE BINARY,
  digest TEXT NOT NULL,
  updated_ms INTEGER NOT NULL,
  PRIMARY KEY (repo_id, name),
  FOREIGN KEY (repo_id, digest) REFERENCES manifests(repo_id, digest)
    ON DELETE CASCADE) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS tags_digest ON tags(repo_id, digest);
CREATE TABLE IF NOT EXISTS uploads (
  id TEXT PRIMARY KEY,
  repo TEXT NOT NULL,
  created_s INTEGER NOT NULL,
  expires_s INTEGER NOT NULL) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS uploads_expires ON uploads(expires_s);
CREATE TABLE IF NOT EXISTS events (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  origin TEXT NOT NULL,
  hlc INTEGER NOT NULL,
  kind TEXT NOT NULL,
  repo TEXT,
  name TEXT,
  digest TEXT,
  payload TEXT);
