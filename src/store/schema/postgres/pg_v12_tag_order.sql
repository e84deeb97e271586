-- Version 12: a tag list is in the spec's lexical order, case-insensitive; SQLite's
-- v14_tag_order.sql, same meaning. lower() of a "C" text folds ASCII letters only, as
-- SQLite's does, and a tag is ASCII. A full index here, not SQLite's partial one: with
-- the page's LIMIT a parameter, PostgreSQL planned the two-sided merge as a sort of the
-- whole repository (36-62 ms a page at 100 000 tags, against 0.2 ms with this index).
CREATE INDEX IF NOT EXISTS tag_regs_folded ON tag_regs(repo, lower(name), name);
