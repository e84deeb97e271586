CREATE TABLE IF NOT EXISTS identities (
  name TEXT PRIMARY KEY,
  kind TEXT NOT NULL CHECK (kind IN ('user', 'robot')),
  secret_hash TEXT NOT NULL,
  description TEXT,
  created_ms INTEGER NOT NULL,
  expires_s INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS role_bindings (
  subject TEXT NOT NULL,
  role TEXT NOT NULL,
  pattern TEXT NOT NULL,
  created_ms INTEGER NOT NULL,
  PRIMARY KEY (subject, role, pattern)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS auth_meta (
  k TEXT PRIMARY KEY,
  v INTEGER NOT NULL) WITHOUT ROWID;
INSERT OR IGNORE INTO auth_meta(k, v) VALUES ('generation', 1);
CREATE INDEX IF NOT EXISTS audit_log_actor ON audit_log(actor, id);
CREATE TABLE IF NOT EXISTS upload_owners (
  id TEXT PRIMARY KEY,
  owner TEXT NOT NULL) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS upload_owners_owner ON upload_owners(owner);
