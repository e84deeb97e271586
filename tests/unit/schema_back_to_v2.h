/* SQL that turns a database made by the current schema back into the shape schema version
 * 2 gave it (the last version before issue 9), for migration tests: they make data with
 * today's code, step it back, add rows the way version 2 wrote them, and open it again.
 * Each later schema step must add its undo here. SQL_SCHEMA_BACK_TO_V1 goes one step further. */
#ifndef MERIDIAN_TEST_SCHEMA_BACK_TO_V2_H
#define MERIDIAN_TEST_SCHEMA_BACK_TO_V2_H

/* Event-log compaction and the region of audit entries undone: the same text on both
 * backends (SQLite versions 8 and 7, PostgreSQL 6 and 5). */
#define SQL_BACK_COMPACTION_AND_AUDIT_REGION SQL_BACK_COMPACTION SQL_BACK_AUDIT_REGION
#define SQL_BACK_COMPACTION                                                                    \
    "DROP INDEX tag_regs_deleted;"                                                             \
    "DROP INDEX manifest_tombs_hlc;"                                                           \
    "DROP TABLE log_horizon;"                                                                  \
    "DROP TABLE peer_acks;"
#define SQL_BACK_AUDIT_REGION                                                                  \
    "DROP INDEX audit_log_time;"                                                               \
    "ALTER TABLE audit_log DROP COLUMN region;"

/* Version 12 undone: status rows without their report's clock. */
#define SQL_SCHEMA_BACK_TO_V11                                                                 \
    "ALTER TABLE repl_status DROP COLUMN hlc;"                                                 \
    "PRAGMA user_version = 11;"

/* Version 11 undone: manifest_refs a table keyed by the manifest's digest again, manifests
 * without seq (a plain rowid table), and what names them as version 10 had it. */
#define SQL_SCHEMA_BACK_TO_V10                                                                 \
    SQL_SCHEMA_BACK_TO_V11                                                                     \
    "CREATE TEMP TABLE refs_v10 AS SELECT repo_id, manifest_digest, ref_digest, is_manifest,"  \
    "  size FROM manifest_refs;"                                                               \
    "DROP VIEW manifest_refs;"                                                                 \
    "DROP TABLE manifest_ref_seqs;"                                                            \
    "DROP VIEW tags;"                                                                          \
    "DROP TRIGGER untagged_on_treg;"                                                           \
    "DROP TRIGGER untagged_on_treg_move;"                                                      \
    "DROP TRIGGER untagged_on_treg_gone;"                                                      \
    "CREATE TABLE manifests_v10 (repo_id INTEGER NOT NULL REFERENCES repos(id),"               \
    "  digest TEXT NOT NULL, media_type TEXT NOT NULL, artifact_type TEXT, annotations TEXT,"  \
    "  subject TEXT, size INTEGER NOT NULL, body BLOB NOT NULL, created_ms INTEGER NOT NULL,"  \
    "  is_visible INTEGER NOT NULL DEFAULT 1, hlc INTEGER NOT NULL DEFAULT 0,"                \
    "  origin TEXT NOT NULL DEFAULT '', PRIMARY KEY (repo_id, digest));"                      \
    "INSERT INTO manifests_v10(rowid, repo_id, digest, media_type, artifact_type,"             \
    "  annotations, subject, size, body, created_ms, is_visible, hlc, origin)"                 \
    "  SELECT seq, repo_id, digest, media_type, artifact_type, annotations, subject, size,"    \
    "  body, created_ms, is_visible, hlc, origin FROM manifests;"                              \
    "DROP TABLE manifests;"                                                                    \
    "ALTER TABLE manifests_v10 RENAME TO manifests;"                                           \
    "CREATE INDEX manifests_subject ON manifests(repo_id, subject)"                            \
    "  WHERE subject IS NOT NULL;"                                                             \
    "CREATE INDEX manifests_pending ON manifests(is_visible) WHERE is_visible = 0;"            \
    "CREATE TABLE manifest_refs (repo_id INTEGER NOT NULL, manifest_digest TEXT NOT NULL,"     \
    "  ref_digest TEXT NOT NULL, is_manifest INTEGER NOT NULL, size INTEGER,"                  \
    "  PRIMARY KEY (repo_id, manifest_digest, ref_digest),"                                    \
    "  FOREIGN KEY (repo_id, manifest_digest) REFERENCES manifests(repo_id, digest)"           \
    "    ON DELETE CASCADE) WITHOUT ROWID;"                                                    \
    "CREATE INDEX manifest_refs_ref ON manifest_refs(ref_digest);"                             \
    "INSERT INTO manifest_refs SELECT * FROM refs_v10;"                                        \
    "DROP TABLE refs_v10;"                                                                     \
    "CREATE TRIGGER gc_queue_on_unref AFTER DELETE ON manifest_refs BEGIN"                     \
    "  INSERT OR REPLACE INTO gc_queue(digest, queued_ms) VALUES (old.ref_digest, 1); END;"    \
    "CREATE VIEW tags(repo_id, name, digest) AS SELECT r.id, g.name, g.digest"                 \
    "  FROM tag_regs g JOIN repos r ON r.name = g.repo"                                        \
    "  JOIN manifests m ON m.repo_id = r.id AND m.digest = g.digest;"                          \
    "CREATE TRIGGER untagged_on_manifest AFTER INSERT ON manifests BEGIN"                      \
    "  INSERT OR REPLACE INTO untagged(repo_id, digest, since_ms)"                             \
    "    SELECT new.repo_id, new.digest, 1 WHERE NOT EXISTS (SELECT 1 FROM tags"               \
    "    WHERE repo_id = new.repo_id AND digest = new.digest); END;"                           \
    "CREATE TRIGGER untagged_on_manifest_gone AFTER DELETE ON manifests BEGIN"                 \
    "  DELETE FROM untagged WHERE repo_id = old.repo_id AND digest = old.digest; END;"         \
    "CREATE TRIGGER untagged_on_treg AFTER INSERT ON tag_regs WHEN new.digest IS NOT NULL"     \
    "  BEGIN DELETE FROM untagged WHERE repo_id = (SELECT id FROM repos"                       \
    "  WHERE name = new.repo) AND digest = new.digest; END;"                                   \
    "CREATE TRIGGER untagged_on_treg_move AFTER UPDATE OF digest ON tag_regs"                  \
    "  WHEN old.digest IS NOT new.digest BEGIN"                                                \
    "  DELETE FROM untagged WHERE new.digest IS NOT NULL"                                      \
    "    AND repo_id = (SELECT id FROM repos WHERE name = new.repo) AND digest = new.digest;"  \
    "  INSERT OR REPLACE INTO untagged(repo_id, digest, since_ms) SELECT m.repo_id, m.digest," \
    "    1 FROM repos r JOIN manifests m ON m.repo_id = r.id"                                  \
    "    WHERE r.name = old.repo AND m.digest = old.digest AND NOT EXISTS (SELECT 1"           \
    "    FROM tags t WHERE t.repo_id = m.repo_id AND t.digest = m.digest); END;"               \
    "CREATE TRIGGER untagged_on_treg_gone AFTER DELETE ON tag_regs"                            \
    "  WHEN old.digest IS NOT NULL BEGIN"                                                      \
    "  INSERT OR REPLACE INTO untagged(repo_id, digest, since_ms) SELECT m.repo_id, m.digest," \
    "    1 FROM repos r JOIN manifests m ON m.repo_id = r.id"                                  \
    "    WHERE r.name = old.repo AND m.digest = old.digest AND NOT EXISTS (SELECT 1"           \
    "    FROM tags t WHERE t.repo_id = m.repo_id AND t.digest = m.digest); END;"               \
    "PRAGMA user_version = 10;"

/* Version 10 undone: `tags` a table again (filled from the view), its v9 triggers. */
#define SQL_SCHEMA_BACK_TO_V9                                                                  \
    SQL_SCHEMA_BACK_TO_V10                                                                     \
    SQL_SCHEMA_V10_BACK_TO_V9

#define SQL_SCHEMA_V10_BACK_TO_V9                                                              \
    "DROP TRIGGER untagged_on_treg;"                                                           \
    "DROP TRIGGER untagged_on_treg_move;"                                                      \
    "DROP TRIGGER untagged_on_treg_gone;"                                                      \
    "CREATE TEMP TABLE tags_v9 AS SELECT repo_id, name, digest FROM tags;"                     \
    "DROP VIEW tags;"                                                                          \
    "CREATE TABLE tags (repo_id INTEGER NOT NULL, name TEXT NOT NULL COLLATE BINARY,"          \
    "  digest TEXT NOT NULL, updated_ms INTEGER NOT NULL, PRIMARY KEY (repo_id, name),"       \
    "  FOREIGN KEY (repo_id, digest) REFERENCES manifests(repo_id, digest)"                    \
    "    ON DELETE CASCADE) WITHOUT ROWID;"                                                    \
    "CREATE INDEX tags_digest ON tags(repo_id, digest);"                                       \
    "INSERT INTO tags SELECT repo_id, name, digest, 1 FROM tags_v9;"                           \
    "DROP TABLE tags_v9;"                                                                      \
    "CREATE TRIGGER untagged_on_tag AFTER INSERT ON tags BEGIN"                                \
    "  DELETE FROM untagged WHERE repo_id = new.repo_id AND digest = new.digest; END;"         \
    "CREATE TRIGGER untagged_on_tag_move AFTER UPDATE OF digest ON tags"                       \
    "  WHEN old.digest <> new.digest BEGIN"                                                    \
    "  DELETE FROM untagged WHERE repo_id = new.repo_id AND digest = new.digest;"              \
    "  INSERT OR REPLACE INTO untagged(repo_id, digest, since_ms) SELECT old.repo_id,"         \
    "    old.digest, 1 WHERE EXISTS (SELECT 1 FROM manifests WHERE repo_id = old.repo_id"      \
    "    AND digest = old.digest) AND NOT EXISTS (SELECT 1 FROM tags"                          \
    "    WHERE repo_id = old.repo_id AND digest = old.digest); END;"                           \
    "CREATE TRIGGER untagged_on_tag_gone AFTER DELETE ON tags BEGIN"                           \
    "  INSERT OR REPLACE INTO untagged(repo_id, digest, since_ms) SELECT old.repo_id,"         \
    "    old.digest, 1 WHERE EXISTS (SELECT 1 FROM manifests WHERE repo_id = old.repo_id"      \
    "    AND digest = old.digest) AND NOT EXISTS (SELECT 1 FROM tags"                          \
    "    WHERE repo_id = old.repo_id AND digest = old.digest); END;"                           \
    "PRAGMA user_version = 9;"

/* PostgreSQL: version 10 undone (pg_v10_status_clock.sql). */
#define PG_SQL_SCHEMA_BACK_TO_V9                                                               \
    "ALTER TABLE repl_status DROP COLUMN hlc;"                                                 \
    "UPDATE meridian_schema SET version = 9;"

/* PostgreSQL: version 9 undone (pg_v9_manifest_refs_seq.sql): manifest_refs a table again. */
#define PG_SQL_SCHEMA_BACK_TO_V8                                                               \
    PG_SQL_SCHEMA_BACK_TO_V9                                                                   \
    "CREATE TABLE refs_v8 AS SELECT repo_id, manifest_digest, ref_digest, is_manifest, size"   \
    "  FROM manifest_refs;"                                                                    \
    "DROP VIEW manifest_refs;"                                                                 \
    "DROP TABLE manifest_ref_seqs;"                                                            \
    "CREATE TABLE manifest_refs (repo_id BIGINT NOT NULL,"                                     \
    "  manifest_digest TEXT COLLATE \"C\" NOT NULL, ref_digest TEXT COLLATE \"C\" NOT NULL,"   \
    "  is_manifest BIGINT NOT NULL, size BIGINT,"                                              \
    "  PRIMARY KEY (repo_id, manifest_digest, ref_digest),"                                    \
    "  FOREIGN KEY (repo_id, manifest_digest) REFERENCES manifests(repo_id, digest)"           \
    "    ON DELETE CASCADE);"                                                                  \
    "CREATE INDEX manifest_refs_ref ON manifest_refs(ref_digest);"                             \
    "INSERT INTO manifest_refs SELECT * FROM refs_v8;"                                         \
    "DROP TABLE refs_v8;"                                                                      \
    "CREATE TRIGGER gc_queue_on_unref AFTER DELETE ON manifest_refs"                           \
    "  FOR EACH ROW EXECUTE FUNCTION gc_queue_on_unref();"                                     \
    "UPDATE meridian_schema SET version = 8;"

/* PostgreSQL: version 8 undone (pg_v8_tags_view.sql), the same way. */
#define PG_SQL_SCHEMA_BACK_TO_V7                                                               \
    PG_SQL_SCHEMA_BACK_TO_V8                                                                   \
    PG_SQL_SCHEMA_V8_BACK_TO_V7

#define PG_SQL_SCHEMA_V8_BACK_TO_V7                                                            \
    "DROP TRIGGER untagged_on_treg ON tag_regs;"                                               \
    "DROP FUNCTION untagged_on_treg();"                                                        \
    "CREATE TABLE tags_v7 AS SELECT repo_id, name, digest FROM tags;"                          \
    "DROP VIEW tags;"                                                                          \
    "CREATE TABLE tags (repo_id BIGINT NOT NULL, name TEXT COLLATE \"C\" NOT NULL,"            \
    "  digest TEXT COLLATE \"C\" NOT NULL, updated_ms BIGINT NOT NULL,"                        \
    "  PRIMARY KEY (repo_id, name), FOREIGN KEY (repo_id, digest)"                             \
    "  REFERENCES manifests(repo_id, digest) ON DELETE CASCADE);"                              \
    "CREATE INDEX tags_digest ON tags(repo_id, digest);"                                       \
    "INSERT INTO tags SELECT repo_id, name, digest, 1 FROM tags_v7;"                           \
    "DROP TABLE tags_v7;"                                                                      \
    "CREATE TRIGGER untagged_on_tag AFTER INSERT OR UPDATE OF digest OR DELETE ON tags"        \
    "  FOR EACH ROW EXECUTE FUNCTION untagged_on_tag();"                                       \
    "UPDATE meridian_schema SET version = 7;"

/* PostgreSQL version 7 (pg_v7_untagged.sql) undone. */
#define PG_SQL_BACK_UNTAGGED                                                                   \
    "DROP TRIGGER untagged_on_manifest ON manifests;"                                          \
    "DROP TRIGGER untagged_on_tag ON tags;"                                                    \
    "DROP FUNCTION untagged_on_manifest();"                                                    \
    "DROP FUNCTION untagged_on_tag();"                                                         \
    "DROP FUNCTION untagged_mark(BIGINT, TEXT);"                                               \
    "DROP TABLE untagged;"                                                                     \
    "ALTER TABLE manifest_tombs DROP COLUMN is_gc;"

/* PostgreSQL: every step after version 2 undone (pg_v3 .. pg_v8), newest first. */
#define PG_SQL_SCHEMA_BACK_TO_V2                                                               \
    PG_SQL_SCHEMA_BACK_TO_V7                                                                   \
    /* version 7: untagged manifests' stamps */                                               \
    PG_SQL_BACK_UNTAGGED                                                                       \
    /* version 6: event-log compaction; version 5: the region of audit entries */             \
    SQL_BACK_COMPACTION_AND_AUDIT_REGION                                                       \
    /* version 4: leases */                                                                    \
    "DROP TABLE node_leases;"                                                                  \
    /* version 3: copies in the status rows */                                                 \
    "ALTER TABLE repl_status DROP COLUMN copies;"                                              \
    "UPDATE meridian_schema SET version = 2;"

/* SQLite version 9 without its last statement (manifest_tombs.is_gc). */
#define SQL_BACK_UNTAGGED_STAMPS                                                               \
    "DROP TRIGGER untagged_on_manifest;"                                                       \
    "DROP TRIGGER untagged_on_manifest_gone;"                                                  \
    "DROP TRIGGER untagged_on_tag;"                                                            \
    "DROP TRIGGER untagged_on_tag_move;"                                                       \
    "DROP TRIGGER untagged_on_tag_gone;"                                                       \
    "DROP TABLE untagged;"

#define SQL_SCHEMA_BACK_TO_V2                                                                  \
    SQL_SCHEMA_BACK_TO_V9                                                                      \
    /* version 9: untagged manifests' stamps */                                               \
    SQL_BACK_UNTAGGED_STAMPS                                                                   \
    "ALTER TABLE manifest_tombs DROP COLUMN is_gc;"                                            \
    /* version 8: event-log compaction; version 7: the region of audit entries */             \
    SQL_BACK_COMPACTION_AND_AUDIT_REGION                                                       \
    /* version 6: copies in the status rows */                                                 \
    "ALTER TABLE repl_status DROP COLUMN copies;"                                              \
    /* version 5: the garbage collector's review queue */                                      \
    "DROP TRIGGER gc_queue_on_unref;"                                                          \
    "DROP TRIGGER gc_queue_on_link;"                                                           \
    "DROP TABLE gc_queue;"                                                                     \
    /* version 3: aggregated audit entries */                                                  \
    "ALTER TABLE audit_log DROP COLUMN count;"                                                 \
    "ALTER TABLE audit_log DROP COLUMN last_ms;"                                               \
    /* version 4: upload sources and acknowledged sizes */                                     \
    "DROP INDEX uploads_source;"                                                               \
    "DROP INDEX uploads_single;"                                                               \
    "ALTER TABLE uploads DROP COLUMN acked_bytes;"                                             \
    "ALTER TABLE uploads DROP COLUMN is_single_request;"                                       \
    "ALTER TABLE uploads DROP COLUMN source;"                                                  \
    "PRAGMA user_version = 2;"

/* Version 2 undone as well: the log of version 1 (events without origin_seq, no version
 * vector), manifests and references without the replication columns, no registers,
 * tombstones, status, objects or cursors. The `tags` table of version 1 is kept. */
#define SQL_SCHEMA_BACK_TO_V1                                                                  \
    SQL_SCHEMA_BACK_TO_V2                                                                      \
    "DROP INDEX events_origin;"                                                                \
    "ALTER TABLE events DROP COLUMN origin_seq;"                                               \
    "DROP TABLE vv;"                                                                           \
    "DROP INDEX manifests_pending;"                                                            \
    "ALTER TABLE manifests DROP COLUMN is_visible;"                                            \
    "ALTER TABLE manifests DROP COLUMN hlc;"                                                   \
    "ALTER TABLE manifests DROP COLUMN origin;"                                                \
    "ALTER TABLE manifest_refs DROP COLUMN size;"                                              \
    "DROP TABLE tag_regs;"                                                                     \
    "DROP TABLE manifest_tombs;"                                                               \
    "DROP TABLE repl_status;"                                                                  \
    "DROP TABLE objects;"                                                                      \
    "DROP TABLE cursors;"                                                                      \
    "PRAGMA user_version = 1;"

#endif
