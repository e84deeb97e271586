-- Version 6 (issue 15, item 3; self-contained): event-log compaction (see the SQLite
-- schema's v8_compact.sql for what the tables mean).
CREATE TABLE IF NOT EXISTS peer_acks (
  peer TEXT COLLATE "C" PRIMARY KEY, vv TEXT COLLATE "C" NOT NULL, acked_ms BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS log_horizon (
  origin TEXT COLLATE "C" PRIMARY KEY, seq BIGINT NOT NULL, hlc BIGINT NOT NULL);
CREATE INDEX IF NOT EXISTS manifest_tombs_hlc ON manifest_tombs(hlc);
CREATE INDEX IF NOT EXISTS tag_regs_deleted ON tag_regs(hlc) WHERE digest IS NULL;
