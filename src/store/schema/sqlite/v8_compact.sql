-- Version 8 (issue 15, item 3; self-contained): event-log compaction.
-- peer_acks: per peer region, the version vector it last sent when it pulled from this
-- region (what it has applied, as "origin:seq,..."), and when. log_horizon: per origin,
-- the highest origin_seq at or below which this region's log may lack events (they were
-- compacted, or skipped by catching up from a peer's snapshot), with that event's clock;
-- a peer asking for events below it catches up from a snapshot instead.
CREATE TABLE IF NOT EXISTS peer_acks (
  peer TEXT PRIMARY KEY, vv TEXT NOT NULL, acked_ms INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS log_horizon (
  origin TEXT PRIMARY KEY, seq INTEGER NOT NULL, hlc INTEGER NOT NULL) WITHOUT ROWID;
-- Expired tombstones and deleted tag registers are found by their clock.
CREATE INDEX IF NOT EXISTS manifest_tombs_hlc ON manifest_tombs(hlc);
CREATE INDEX IF NOT EXISTS tag_regs_deleted ON tag_regs(hlc) WHERE digest IS NULL;
