-- Version 11: status rows of a manifest this region has no record of are dropped (those
-- written before version 10, clock 0); SQLite's v13_status_stale.sql, same meaning:
-- releases before 10 kept every region's row through the manifest's delete, so a push of
-- the same manifest again after the upgrade showed every region that had held it
-- Completed at once.
DELETE FROM repl_status WHERE hlc = 0 AND NOT EXISTS
  (SELECT 1 FROM manifests m JOIN repos r ON r.id = m.repo_id
   WHERE r.name = repl_status.repo AND m.digest = repl_status.digest);
