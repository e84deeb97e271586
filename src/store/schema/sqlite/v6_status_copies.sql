-- Version 6 (issue 12; self-contained): each region's copies of a version in its status.
-- A region reports how many copies of a version's blobs its volumes hold (the copies
-- pass, repl/copies.c) in its status events; every region keeps the last report here, so
-- image-version show lists every target region's copies, not only its own. NULL: not
-- reported (a state change since, a region without volumes, an older release).
ALTER TABLE repl_status ADD COLUMN copies INTEGER;
