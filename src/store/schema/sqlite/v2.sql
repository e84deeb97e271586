-- Version 2: geo-replication. Events carry their origin's sequence number; a version
-- vector records how far each origin's events have been applied; tags are
-- last-writer-wins registers (tag_regs, digest NULL = deleted) of which `tags` holds
-- the resolvable part; deleted manifests leave tombstones; manifests replicated from
-- a peer stay invisible until their content is here (visible means pullable);
-- per-region replication status; replicated registry objects; peer cursors.
ALTER TABLE events ADD COLUMN origin_seq INTEGER NOT NULL DEFAULT 0;
-- Events version 1 wrote are numbered 1, 2, ... per origin in log order, and the version
-- vector starts past them: left at 0 they broke the unique index below (a version-1
-- database with two events never opened), and the next event must not reuse a number.
-- (Fixed in place: only a version-1 database runs this step, and before this it failed.)
UPDATE events SET origin_seq = n.rn
  FROM (SELECT seq, row_number() OVER (PARTITION BY origin ORDER BY seq) AS rn FROM events) AS n
  WHERE n.seq = events.seq;
CREATE UNIQUE INDEX IF NOT EXISTS events_origin ON events(origin, origin_seq);
CREATE TABLE IF NOT EXISTS vv (origin TEXT PRIMARY KEY, seq INTEGER NOT NULL)
  WITHOUT ROWID;
INSERT OR REPLACE INTO vv(origin, seq)
  SELECT origin, max(origin_seq) FROM events GROUP BY origin;
ALTER TABLE manifests ADD COLUMN is_visible INTEGER NOT NULL DEFAULT 1;
ALTER TABLE manifests ADD COLUMN hlc INTEGER NOT NULL DEFAULT 0;
ALTER TABLE manifests ADD COLUMN origin TEXT NOT NULL DEFAULT '';
CREATE INDEX IF NOT EXISTS manifests_pending ON manifests(is_visible)
  WHERE is_visible = 0;
ALTER TABLE manifest_refs ADD COLUMN size INTEGER;
CREATE TABLE IF NOT EXISTS tag_regs (
  repo TEXT NOT NULL, name TEXT NOT NULL, digest TEXT,
  hlc INTEGER NOT NULL, origin TEXT NOT NULL,
  PRIMARY KEY (repo, name)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS tag_regs_digest ON tag_regs(repo, digest);
CREATE TABLE IF NOT EXISTS manifest_tombs (
  repo TEXT NOT NULL, digest TEXT NOT NULL, hlc INTEGER NOT NULL, origin TEXT NOT NULL,
  PRIMARY KEY (repo, digest)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS repl_status (
  repo TEXT NOT NULL, digest TEXT NOT NULL, region TEXT NOT NULL, state TEXT NOT NULL,
  bytes_done INTEGER NOT NULL, bytes_total INTEGER NOT NULL, updated_ms INTEGER NOT NULL,
  details TEXT, PRIMARY KEY (repo, digest, region)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS objects (
  kind TEXT NOT NULL, key TEXT NOT NULL, value TEXT, hlc INTEGER NOT NULL,
  origin TEXT NOT NULL, is_deleted INTEGER NOT NULL,
  PRIMARY KEY (kind, key)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS cursors (peer TEXT PRIMARY KEY, seq INTEGER NOT NULL)
  WITHOUT ROWID;
