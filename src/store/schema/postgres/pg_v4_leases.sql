-- Version 4: leases (meta_leases.c). Several nodes of one region share the database; work
-- that must run once for the region (replication pulls, fetches, GC, sweeps) runs on the
-- node holding the lease, renewed before expires_ms (wall-clock milliseconds).
CREATE TABLE IF NOT EXISTS node_leases (
  name TEXT COLLATE "C" PRIMARY KEY,
  holder TEXT NOT NULL,
  expires_ms BIGINT NOT NULL);
