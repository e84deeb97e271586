-- Version 14: a tag list is in the spec's lexical order, case-insensitive
-- (distribution-spec "Listing Tags": "lexical order (i.e. case-insensitive alphanumeric
-- order)"), tags equal but for case in byte order. Before, byte order ("B" before "a").
-- Two partial indexes, each tag in one: the tags without capitals in byte order (which is
-- their case-insensitive order), the others by their folded name. A page merges the two
-- from `last` on and reads only its own rows (the statement TAG_LIST). One index of every
-- tag by its folded name cost 37 bytes a tag; these two cost about 26 for a tag without
-- capitals (the folded name is not kept twice).
CREATE INDEX IF NOT EXISTS tag_regs_lower ON tag_regs(repo, name) WHERE name = lower(name);
CREATE INDEX IF NOT EXISTS tag_regs_cased ON tag_regs(repo, lower(name), name)
  WHERE name <> lower(name);
