-- Version 13: status rows of a manifest this region has no record of are dropped (those
-- written before version 12, clock 0). Releases before 12 kept every region's row through
-- the manifest's delete; since 12 the delete drops them as it merges (sq_tomb_merge), but
-- a delete merged before the upgrade left them: a push of the same manifest again then
-- showed every region that had held it Completed at once (image-version wait --replicated
-- returned before a deploy could pull there). A manifest with no record here was deleted
-- (its tombstone may have expired since) or never placed here; a region's report of it is
-- taken again when the manifest comes back and the region reports it anew.
DELETE FROM repl_status WHERE hlc = 0 AND NOT EXISTS
  (SELECT 1 FROM manifests m JOIN repos r ON r.id = m.repo_id
   WHERE r.name = repl_status.repo AND m.digest = repl_status.digest);
