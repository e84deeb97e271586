/* Internal to the SQL metastore (meta_*.c, metastore_sqlite*.c): the store and per-thread
 * connection, the prepared-statement table, and the connection, statement and
 * transaction helpers the section files share. Nothing outside src/store includes it.
 * The database itself is behind the driver seam (sql_driver.h): these files make no
 * library call, and <sqlite3.h> lives in sql_sqlite.c alone.
 * Code written against the former sqlite3 calls maps one to one: sqlite3_stmt -> struct
 * sql_stmt, sqlite3_column_int64/text/blob/bytes -> sql_col_*, sqlite3_column_type(s, i)
 * == SQLITE_NULL -> sql_col_is_null(s, i), sqlite3_finalize -> sql_finalize,
 * sqlite3_changes(c->db) -> sql_changes(c->db), SQLITE_ROW/DONE/OK -> SQL_ROW/DONE/OK,
 * sqlite3_exec of a script -> sq_script. */
#ifndef MERIDIAN_METASTORE_SQLITE_INT_H
#define MERIDIAN_METASTORE_SQLITE_INT_H

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "metastore.h"
#include "secret.h"
#include "sql_driver.h"

#define SQ_STORE_MAGIC 0x6d737173u /* "msqs" */
#define SQ_CONN_MAGIC 0x6d737163u  /* "msqc" */
#define SQ_PAYLOAD_MAX_BYTES (16u << 20)

/* Every statement the store runs, written once with `?N` placeholders in the spelling
 * SQLite and PostgreSQL share. Where the dialects differ (INSERT OR IGNORE, INDEXED BY
 * hints, COLLATE BINARY, rowid) the text here is SQLite's and SQ_STATEMENTS_POSTGRES below
 * holds PostgreSQL's; a driver whose placeholders are `$N` rewrites them in its prepare.
 * Transactions are the driver's (sql_driver.h: begin, commit, rollback). */
/* The bytes a manifest m references, each once: its own status's (meta_repl.c). */
#define SQ_OWN_BYTES                                                                       \
    " (SELECT coalesce(sum(CASE WHEN f.size > 0 THEN f.size ELSE 0 END), 0)"              \
    " FROM manifest_refs f WHERE f.repo_id = m.repo_id AND f.manifest_digest = m.digest)"

#define SQ_STATEMENTS(X)                                                                       \
    /* Each origin stamps its events with an increasing clock, so the newest clock in the   \
     * log is among the last event of each origin: one lookup per region, not a log scan.   \
     * (A join let the planner take max(hlc) over the whole log first.) */                  \
    X(HLC_MAX, "SELECT max((SELECT e.hlc FROM events e WHERE e.origin = vv.origin"            \
               " AND e.origin_seq = vv.seq)) FROM vv")                                         \
    X(REPO_ID, "SELECT id FROM repos WHERE name = ?1")                                         \
    X(REPO_INSERT, "INSERT OR IGNORE INTO repos(name) VALUES (?1)")                            \
    X(REPO_LIST, "SELECT name FROM repos WHERE name > ?1 ORDER BY name COLLATE BINARY LIMIT ?2") \
    X(BLOB_INSERT, "INSERT OR IGNORE INTO blobs(digest, size) VALUES (?1, ?2)")                \
    X(BLOB_SIZE, "SELECT size FROM blobs WHERE digest = ?1")                                   \
    X(BLOB_DELETE, "DELETE FROM blobs WHERE digest = ?1")                                      \
    X(BLOB_IS_USED, "SELECT EXISTS (SELECT 1 FROM repo_blobs WHERE digest = ?1)"               \
                    " OR EXISTS (SELECT 1 FROM manifest_refs WHERE ref_digest = ?1)")          \
    X(LINK_INSERT, "INSERT OR IGNORE INTO repo_blobs(repo_id, digest) VALUES (?1, ?2)")        \
    X(LINK_SIZE, "SELECT b.size FROM repo_blobs rb JOIN blobs b ON b.digest = rb.digest"       \
                 " WHERE rb.repo_id = ?1 AND rb.digest = ?2")                                  \
    X(LINK_GET, "SELECT b.size FROM repos r JOIN repo_blobs rb ON rb.repo_id = r.id"           \
                " JOIN blobs b ON b.digest = rb.digest WHERE r.name = ?1 AND rb.digest = ?2")  \
    X(LINK_DELETE, "DELETE FROM repo_blobs WHERE repo_id = ?1 AND digest = ?2")                \
    X(MANIFEST_SIZE, "SELECT size FROM manifests WHERE repo_id = ?1 AND digest = ?2"           \
                     " AND is_visible = 1")                                                    \
    X(MANIFEST_INSERT, "INSERT OR IGNORE INTO manifests(repo_id, digest, media_type,"          \
                       " artifact_type, annotations, subject, size, body, created_ms)"         \
                       " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)")                         \
    X(MANIFEST_DELETE, "DELETE FROM manifests WHERE repo_id = ?1 AND digest = ?2")             \
    /* References name their manifest by seq (schema v11); manifest_refs is a view. */      \
    X(REF_INSERT, "INSERT OR IGNORE INTO manifest_ref_seqs(manifest_seq, ref_digest,"          \
                  " is_manifest) SELECT seq, ?3, ?4 FROM manifests"                            \
                  " WHERE repo_id = ?1 AND digest = ?2")                                       \
    X(REFS_DELETE, "DELETE FROM manifest_ref_seqs WHERE manifest_seq ="                        \
                   " (SELECT seq FROM manifests WHERE repo_id = ?1 AND digest = ?2)")          \
    X(REFERRERS, "SELECT digest, media_type, artifact_type, annotations, size"                 \
                 " FROM manifests INDEXED BY manifests_subject WHERE repo_id = ?1"            \
                 " AND subject = ?2 AND is_visible = 1"                                        \
                 " AND (?3 IS NULL OR artifact_type = ?3) ORDER BY digest")                    \
    X(TAG_GET, "SELECT digest FROM tags WHERE repo_id = ?1 AND name = ?2")                     \
    X(TAGS_OF_MANIFEST, "SELECT name FROM tags WHERE repo_id = ?1 AND digest = ?2"             \
                        " ORDER BY name")                                                      \
    /* The registers, not the `tags` view: the view would probe each manifest twice. The  \
     * repository's name by a subquery, not a join: with statistics that say `repos` holds \
     * one row, SQLite scanned it and sorted the whole tag list before each page. The     \
     * spec's order, case-insensitive, ties in byte order (v14_tag_order.sql): the tags    \
     * without capitals and the others, each from its partial index, merged (the second   \
     * column is the sort key); each ">=" is where its side starts. */                      \
    X(TAG_LIST, "SELECT g.name, g.name FROM tag_regs g INDEXED BY tag_regs_lower"             \
                " JOIN manifests m ON m.repo_id = ?1"                                         \
                " AND m.digest = g.digest AND m.is_visible = 1"                               \
                " WHERE g.repo = (SELECT name FROM repos WHERE id = ?1)"                      \
                " AND g.name = lower(g.name) AND g.name >= lower(?2)"                         \
                " AND (g.name > lower(?2) OR g.name > ?2)"                                    \
                " UNION ALL SELECT g.name, lower(g.name)"                                     \
                " FROM tag_regs g INDEXED BY tag_regs_cased"                                  \
                " JOIN manifests m ON m.repo_id = ?1 AND m.digest = g.digest"                 \
                " AND m.is_visible = 1 WHERE g.repo = (SELECT name FROM repos WHERE id = ?1)" \
                " AND g.name <> lower(g.name) AND lower(g.name) >= lower(?2)"                 \
                " AND (lower(g.name) > lower(?2) OR g.name > ?2) ORDER BY 2, 1 LIMIT ?3")     \
    X(UPLOAD_INSERT, "INSERT INTO uploads(id, repo, created_s, expires_s, source, acked_bytes," \
                     " is_single_request) VALUES (?1, ?2, ?3, ?4, ?5,"                         \
                     " CASE WHEN ?5 IS NULL THEN NULL ELSE 0 END, ?6)")                        \
    X(UPLOAD_SINGLE, "SELECT id FROM uploads WHERE is_single_request = 1 ORDER BY id")         \
    X(UPLOAD_GET, "SELECT acked_bytes FROM uploads WHERE id = ?1 AND (?2 IS NULL OR repo = ?2)") \
    X(UPLOAD_SET_ACKED, "UPDATE uploads SET acked_bytes = ?2 WHERE id = ?1"                    \
                        " AND acked_bytes IS NOT NULL")                                        \
    X(UPLOAD_COUNT_FROM, "SELECT count(*) FROM uploads WHERE source = ?1 AND expires_s >= ?2")  \
    X(UPLOAD_DELETE, "DELETE FROM uploads WHERE id = ?1")                                      \
    X(UPLOAD_EXPIRED, "SELECT id FROM uploads INDEXED BY uploads_expires WHERE expires_s < ?1" \
                      " ORDER BY id")                                                          \
    X(ROLE_BIND, "INSERT OR IGNORE INTO role_bindings(subject, role, pattern, created_ms)"     \
                 " VALUES (?1, ?2, ?3, ?4)")                                                   \
    X(UPLOAD_OWNER_SET, "INSERT OR REPLACE INTO upload_owners(id, owner) VALUES (?1, ?2)")     \
    X(EVENT_INSERT, "INSERT INTO events(origin, hlc, kind, repo, name, digest, payload,"       \
                    " origin_seq) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)")                    \
    X(VV_GET_ONE, "SELECT seq FROM vv WHERE origin = ?1")                                      \
    X(VV_SET, "INSERT INTO vv(origin, seq) VALUES (?1, ?2)"                                    \
              " ON CONFLICT(origin) DO UPDATE SET seq = excluded.seq")                         \
    X(VV_ALL, "SELECT origin, seq FROM vv ORDER BY origin")                                    \
    X(EVENTS_READ, "SELECT seq, origin, origin_seq, hlc, kind, repo, name, digest, payload"    \
                   " FROM events WHERE seq > ?1 ORDER BY seq LIMIT ?2")                        \
    X(LOG_HEAD, "SELECT coalesce(max(seq), 0) FROM events")                                    \
    X(TREG_GET, "SELECT digest, hlc, origin FROM tag_regs WHERE repo = ?1 AND name = ?2")      \
    X(TREG_SET, "INSERT INTO tag_regs(repo, name, digest, hlc, origin)"                        \
                " VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT(repo, name) DO UPDATE"               \
                " SET digest = excluded.digest, hlc = excluded.hlc, origin = excluded.origin") \
    /* Pinned: without statistics SQLite rates (repo) of the primary key as selective as    \
     * (repo, digest) and read every register of the repository on each push (issue 21). */ \
    X(TREG_OF_DIGEST, "SELECT name, hlc, origin FROM tag_regs INDEXED BY tag_regs_digest"     \
                      " WHERE repo = ?1 AND digest = ?2")                                      \
    X(TREG_OF_REPO, "SELECT name, digest, hlc, origin FROM tag_regs WHERE repo = ?1"          \
                    " ORDER BY name")                                                          \
    X(TOMB_GET, "SELECT hlc, origin, is_gc FROM manifest_tombs WHERE repo = ?1 AND digest = ?2") \
    /* Untagged manifests (meta_untagged.c): cached, as a pass runs them per manifest. */ \
    X(UNTAGGED_REVIEW, "SELECT u.since_ms, m.is_visible FROM untagged u JOIN manifests m"      \
                       " ON m.repo_id = u.repo_id AND m.digest = u.digest"                     \
                       " WHERE u.repo_id = ?1 AND u.digest = ?2")                              \
    /* Kept: a tag, an index naming it, or a subject of it still here. */                   \
    X(UNTAGGED_KEPT, "SELECT 1 WHERE EXISTS (SELECT 1 FROM tags WHERE repo_id = ?1"            \
                     " AND digest = ?2) OR EXISTS (SELECT 1 FROM manifest_ref_seqs r"          \
                     " CROSS JOIN manifests p WHERE r.ref_digest = ?2 AND r.is_manifest = 1"   \
                     " AND p.seq = r.manifest_seq AND p.repo_id = ?1)"                         \
                     " OR EXISTS (SELECT 1 FROM manifests m JOIN manifests s"                  \
                     " ON s.repo_id = m.repo_id AND s.digest = m.subject"                      \
                     " WHERE m.repo_id = ?1 AND m.digest = ?2)")                               \
    X(UNTAGGED_TOUCH, "UPDATE untagged SET since_ms = ?3 WHERE repo_id = ?1 AND digest = ?2")  \
    X(TOMB_MARK_GC, "UPDATE manifest_tombs SET is_gc = 1 WHERE repo = ?1 AND digest = ?2"      \
                    " AND hlc = ?3 AND origin = ?4")                                           \
    /* is_gc: set after the write by the collector's tombstones only (meta_untagged.c). */   \
    X(TOMB_SET, "INSERT INTO manifest_tombs(repo, digest, hlc, origin) VALUES (?1, ?2, ?3, ?4)" \
                " ON CONFLICT(repo, digest) DO UPDATE SET hlc = excluded.hlc,"                 \
                " origin = excluded.origin, is_gc = 0")                                        \
    X(TOMB_OF_REPO, "SELECT digest, hlc, origin, is_gc FROM manifest_tombs WHERE repo = ?1"   \
                    " ORDER BY digest")                                                        \
    /* Keys of the repository's versions are REPO:VERSION, so in [REPO ":", REPO ";"). */ \
    X(VERSIONS_OF_REPO, "SELECT kind, key, value, hlc, origin, is_deleted FROM objects"      \
                        " WHERE kind = 'image_version' AND key >= ?1 || ':'"                  \
                        " AND key < ?1 || ';' ORDER BY key")                                  \
    X(MANIFEST_CLOCK, "SELECT hlc, origin, is_visible FROM manifests"                          \
                      " WHERE repo_id = ?1 AND digest = ?2")                                   \
    X(MANIFEST_SET_CLOCK, "UPDATE manifests SET hlc = ?3, origin = ?4"                         \
                          " WHERE repo_id = ?1 AND digest = ?2")                               \
    X(MANIFEST_INSERT_REMOTE, "INSERT OR IGNORE INTO manifests(repo_id, digest, media_type,"   \
                              " artifact_type, annotations, subject, size, body, created_ms,"  \
                              " is_visible, hlc, origin)"                                      \
                              " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 0, ?10, ?11)")     \
    X(MANIFEST_LOOKUP, "SELECT media_type, size, is_visible, created_ms FROM manifests"        \
                       " WHERE repo_id = ?1 AND digest = ?2")                                  \
    /* manifests has no index by digest alone: one primary-key probe per repository. */    \
    X(MANIFEST_HOLDER, "SELECT r.name FROM repos r WHERE r.name <> ?2 AND EXISTS"              \
                       " (SELECT 1 FROM manifests m WHERE m.repo_id = r.id AND m.digest = ?1)" \
                       " ORDER BY r.name LIMIT 1")                                             \
    X(MANIFEST_SET_VISIBLE, "UPDATE manifests SET is_visible = 1"                              \
                            " WHERE repo_id = ?1 AND digest = ?2 AND is_visible != 1")         \
    X(MANIFESTS_OF_REPO, "SELECT digest, media_type, artifact_type, annotations, subject,"     \
                         " body, hlc, origin FROM manifests WHERE repo_id = ?1 ORDER BY digest") \
    /* The anti-entropy digest needs only the digests: the covering index, no bodies read. */ \
    X(MANIFEST_DIGESTS_OF_REPO, "SELECT digest FROM manifests WHERE repo_id = ?1"              \
                                " ORDER BY digest")                                            \
    X(REF_INSERT_SIZED, "INSERT OR IGNORE INTO manifest_ref_seqs(manifest_seq, ref_digest,"    \
                        " is_manifest, size) SELECT seq, ?3, ?4, ?5 FROM manifests"            \
                        " WHERE repo_id = ?1 AND digest = ?2")                                 \
    X(REFS_OF_MANIFEST, "SELECT ref_digest, is_manifest, coalesce(size, -1) FROM manifest_refs" \
                        " WHERE repo_id = ?1 AND manifest_digest = ?2")                        \
    X(PENDING_LIST, "SELECT r.name, m.digest, m.repo_id, m.origin FROM manifests m"            \
                    " JOIN repos r ON r.id = m.repo_id WHERE m.is_visible = 0"                 \
                    " ORDER BY m.rowid LIMIT ?1") /* rowid: insertion order, in the index */   \
    X(VISIBLE_CHILD, "SELECT 1 FROM manifests WHERE repo_id = ?1 AND digest = ?2"             \
                     " AND is_visible = 1")                                                    \
    X(STATUS_GET, "SELECT updated_ms FROM repl_status WHERE repo = ?1 AND digest = ?2"         \
                  " AND region = ?3")                                                          \
    X(STATUS_DROP, "DELETE FROM repl_status WHERE repo = ?1 AND digest = ?2 AND hlc < ?3"     \
                   " AND (hlc > 0 OR ?4 = 1)")                                                \
    X(STATUS_DROP_REGION, "DELETE FROM repl_status WHERE repo = ?1 AND region = ?2")          \
    X(STATUS_DROP_OLDER, "DELETE FROM repl_status WHERE repo = ?1 AND digest = ?2"             \
                         " AND region = ?3 AND updated_ms < ?4")                               \
    X(STATUS_SET, "INSERT INTO repl_status(repo, digest, region, state, bytes_done,"           \
                  " bytes_total, updated_ms, details, copies, hlc)"                            \
                  " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, NULLIF(?9, -1), ?10)"             \
                  " ON CONFLICT(repo, digest, region) DO UPDATE SET state = excluded.state,"   \
                  " bytes_done = excluded.bytes_done, bytes_total = excluded.bytes_total,"     \
                  " updated_ms = excluded.updated_ms, details = excluded.details,"             \
                  " copies = excluded.copies, hlc = excluded.hlc")                             \
    X(STATUS_OF_REGION, "SELECT state, bytes_done, bytes_total, updated_ms, details,"             \
                        " coalesce(copies, -1)"                                               \
                        " FROM repl_status WHERE repo = ?1 AND digest = ?2 AND region = ?3")   \
    X(MANIFEST_PAYLOAD, "SELECT digest, media_type, artifact_type, annotations, subject, body"  \
                        " FROM manifests WHERE repo_id = ?1 AND digest = ?2")                  \
    /* This region's own Completed of a manifest visible here that no Completed row of its \
     * own reports (a push writes only the event: meta_repl.c, "The own status").          \
     * Of one manifest (?1 repo, ?2 digest, ?3 this region) or of a repository's (?2). */ \
    X(STATUS_OWN_DERIVED, "SELECT m.digest, m.created_ms, m.hlc," SQ_OWN_BYTES                 \
                          " FROM repos r JOIN manifests m ON m.repo_id = r.id"               \
                          " WHERE r.name = ?1 AND m.digest = ?2 AND m.is_visible = 1"        \
                          " AND NOT EXISTS (SELECT 1 FROM repl_status s WHERE s.repo = ?1"   \
                          " AND s.digest = ?2 AND s.region = ?3 AND s.state = 'Completed')") \
    X(STATUS_OWN_DERIVED_OF_REPO, "SELECT m.digest, m.created_ms, m.hlc," SQ_OWN_BYTES         \
                          " FROM repos r JOIN manifests m ON m.repo_id = r.id"               \
                          " WHERE r.name = ?1 AND m.is_visible = 1"                          \
                          " AND NOT EXISTS (SELECT 1 FROM repl_status s WHERE s.repo = ?1"   \
                          " AND s.digest = m.digest AND s.region = ?2"                       \
                          " AND s.state = 'Completed') ORDER BY m.digest")                    \
    X(STATUS_LIST, "SELECT region, state, bytes_done, bytes_total, updated_ms, details,"       \
                   " coalesce(copies, -1) FROM repl_status WHERE repo = ?1 AND digest = ?2"    \
                   " ORDER BY region")                                                         \
    X(OBJ_GET, "SELECT value, hlc, origin, is_deleted FROM objects WHERE kind = ?1"            \
               " AND key = ?2")                                                                \
    X(OBJ_SET, "INSERT INTO objects(kind, key, value, hlc, origin, is_deleted)"                \
               " VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT(kind, key) DO UPDATE"             \
               " SET value = excluded.value, hlc = excluded.hlc, origin = excluded.origin,"    \
               " is_deleted = excluded.is_deleted")                                            \
    X(OBJ_LIST, "SELECT key, value FROM objects WHERE kind = ?1 AND is_deleted = 0"            \
                " ORDER BY key")                                                               \
    X(CURSOR_GET, "SELECT seq FROM cursors WHERE peer = ?1")                                   \
    X(CURSOR_SET, "INSERT INTO cursors(peer, seq) VALUES (?1, ?2)"                             \
                  " ON CONFLICT(peer) DO UPDATE SET seq = excluded.seq")                       \
    X(ALL_REPOS, "SELECT id, name FROM repos ORDER BY name")                                   \
    X(MANIFEST_BY_REPO_DIGEST, "SELECT m.digest, m.media_type, m.artifact_type, m.annotations," \
                               " m.body FROM repos r JOIN manifests m ON m.repo_id = r.id"     \
                               " WHERE r.name = ?1 AND m.digest = ?2 AND m.is_visible = 1")    \
    X(MANIFEST_BY_REPO_TAG, "SELECT m.digest, m.media_type, m.artifact_type, m.annotations,"   \
                            " m.body FROM tag_regs g JOIN repos r ON r.name = g.repo"          \
                            " JOIN manifests m ON m.repo_id = r.id AND m.digest = g.digest"    \
                            " WHERE g.repo = ?1 AND g.name = ?2 AND m.is_visible = 1")         \
    X(ALL_BLOBS, "SELECT digest FROM blobs ORDER BY digest")                                   \
    X(BLOB_LOST_HIDE, "UPDATE manifests SET is_visible = 0 WHERE seq IN (SELECT manifest_seq"  \
                      " FROM manifest_ref_seqs WHERE ref_digest = ?1) AND is_visible = 1")     \
    X(BLOB_LOST_UNLINK, "DELETE FROM repo_blobs WHERE digest = ?1")                            \
    X(BLOB_LOST_SHOWN, "SELECT r.name, m.digest FROM manifest_ref_seqs s"                      \
                       " JOIN manifests m ON m.seq = s.manifest_seq"                           \
                       " JOIN repos r ON r.id = m.repo_id"                                     \
                       " WHERE s.ref_digest = ?1 AND m.is_visible = 1")                        \
    X(PARENTS_SHOWN, "SELECT r.name, m.digest FROM manifest_ref_seqs s"                        \
                     " JOIN manifests m ON m.seq = s.manifest_seq"                             \
                     " JOIN repos r ON r.id = m.repo_id"                                       \
                     " WHERE r.name = ?1 AND s.ref_digest = ?2 AND m.is_visible = 1")          \
    X(MANIFEST_HIDE, "UPDATE manifests SET is_visible = 0 WHERE digest = ?2"                   \
                     " AND repo_id = (SELECT id FROM repos WHERE name = ?1)")                  \
    X(REFERENCED_BY, "SELECT manifest_digest FROM manifest_refs WHERE repo_id = ?1"            \
                     " AND ref_digest = ?2 AND manifest_digest != ?2 LIMIT 1")                 \
    X(EVENTS_SINCE, "SELECT seq, origin, hlc, kind, repo, name, digest, payload"               \
                    " FROM events WHERE seq > ?1 ORDER BY seq LIMIT ?2")                       \
    X(AUDIT_SET_COUNT, "UPDATE audit_log SET count = max(count, ?2),"                          \
                       " last_ms = max(coalesce(last_ms, time_ms), ?3) WHERE id = ?1")       \
    /* Event-log compaction (meta_compact.c). */                                            \
    X(ACK_SET, "INSERT INTO peer_acks(peer, vv, acked_ms) VALUES (?1, ?2, ?3)"                 \
               " ON CONFLICT(peer) DO UPDATE SET vv = excluded.vv, acked_ms = excluded.acked_ms") \
    X(ACK_ALL, "SELECT peer, vv, acked_ms FROM peer_acks ORDER BY peer")                      \
    X(HORIZON_ALL, "SELECT origin, seq, hlc FROM log_horizon ORDER BY origin")                \
    /* Per origin, the newest event applied here and its clock: the event itself (the       \
     * newest of each origin is never compacted), or the horizon after a snapshot. */       \
    X(ORIGIN_CLOCKS, "SELECT vv.origin, vv.seq, coalesce((SELECT e.hlc FROM events e"         \
                     " WHERE e.origin = vv.origin AND e.origin_seq = vv.seq),"                \
                     " (SELECT h.hlc FROM log_horizon h WHERE h.origin = vv.origin), 0)"      \
                     " FROM vv ORDER BY vv.origin")                                           \
    X(HORIZON_MAX_HLC, "SELECT coalesce(max(hlc), 0) FROM log_horizon")                     \
    /* The status of a tag (sq_tag_acked): the clock of one event of an origin; the first   \
     * event after a position and the newest one of an origin (with the position applied    \
     * here), each skipping those written at the lowest clock (SQ_ACCESS_LOW_HLC). Point    \
     * lookups and short scans of events_origin from one end. */                           \
    X(EVENT_CLOCK, "SELECT hlc FROM events WHERE origin = ?1 AND origin_seq = ?2")            \
    X(EVENT_CLOCK_AFTER, "SELECT hlc FROM events WHERE origin = ?1 AND origin_seq > ?2"       \
                         " AND hlc > ?3 ORDER BY origin_seq LIMIT 1")                         \
    X(ORIGIN_CLOCK, "SELECT vv.seq, coalesce((SELECT e.hlc FROM events e"                     \
                    " WHERE e.origin = vv.origin AND e.hlc > ?2"                              \
                    " ORDER BY e.origin_seq DESC LIMIT 1),"                                   \
                    " (SELECT h.hlc FROM log_horizon h WHERE h.origin = vv.origin), 0)"       \
                    " FROM vv WHERE vv.origin = ?1")                                          \
    X(HORIZON_GET, "SELECT seq, hlc FROM log_horizon WHERE origin = ?1")                      \
    X(HORIZON_SET, "INSERT INTO log_horizon(origin, seq, hlc) VALUES (?1, ?2, ?3)"             \
                   " ON CONFLICT(origin) DO UPDATE SET seq = excluded.seq, hlc = excluded.hlc") \
    X(COMPACT_BATCH, "SELECT origin_seq, hlc FROM events WHERE origin = ?1"                   \
                     " AND origin_seq <= ?2 ORDER BY origin_seq LIMIT ?3")                    \
    X(COMPACT_DELETE, "DELETE FROM events WHERE origin = ?1 AND origin_seq <= ?2")            \
    X(TOMBS_EXPIRED, "SELECT repo, digest, hlc, origin FROM manifest_tombs"                   \
                     " WHERE hlc < ?1 ORDER BY hlc LIMIT ?2")                                 \
    X(TOMB_DELETE, "DELETE FROM manifest_tombs WHERE repo = ?1 AND digest = ?2 AND hlc = ?3") \
    X(TREGS_EXPIRED, "SELECT repo, name, hlc, origin FROM tag_regs"                           \
                     " WHERE digest IS NULL AND hlc < ?1 ORDER BY hlc LIMIT ?2")              \
    X(TREG_DELETE_DELETED, "DELETE FROM tag_regs WHERE repo = ?1 AND name = ?2"               \
                           " AND digest IS NULL AND hlc = ?3")                                \
    X(TREG_DELETE, "DELETE FROM tag_regs WHERE repo = ?1 AND name = ?2")                      \
    X(OBJECTS_ALL, "SELECT kind, key, value, hlc, origin, is_deleted FROM objects"            \
                   " ORDER BY kind, key")                                                     \
    X(STATUS_OF_REPO, "SELECT s.digest, s.region, s.state, s.bytes_done, s.bytes_total,"     \
                      " s.updated_ms, s.details, s.hlc, t.hlc FROM repl_status s"             \
                      " LEFT JOIN manifest_tombs t ON t.repo = s.repo AND t.digest = s.digest" \
                      " WHERE s.repo = ?1 ORDER BY s.digest, s.region")                       \
    /* Admin status only: both walk their table. */                                        \
    X(EVENTS_COUNT, "SELECT count(*) FROM events")                                            \
    X(TOMBS_COUNT, "SELECT count(*) FROM manifest_tombs")                                     \
    X(TREGS_DELETED_COUNT, "SELECT count(*) FROM tag_regs INDEXED BY tag_regs_deleted"         \
                           " WHERE digest IS NULL")

/* PostgreSQL's text of the statements it spells differently (sql_pg.c runs them). Where
 * SQLite orders or picks rows by rowid, PostgreSQL's schema has an insertion-order column
 * (manifests.seq). A negative LIMIT means none in SQLite and is an error in PostgreSQL:
 * LIMIT NULL is none there, hence NULLIF(..., -1) where a caller may ask for all
 * (sq_page_limit). Two-argument max() is GREATEST. A parameter first met in `?N IS NULL`
 * has no type to PostgreSQL: CAST(?N AS TEXT) gives it one. */
#define SQ_STATEMENTS_POSTGRES(X)                                                              \
    X(REPO_INSERT, "INSERT INTO repos(name) VALUES (?1) ON CONFLICT DO NOTHING")               \
    X(REPO_LIST, "SELECT name FROM repos WHERE name > ?1 ORDER BY name COLLATE \"C\""         \
                 " LIMIT NULLIF(CAST(?2 AS BIGINT), -1)")                                      \
    X(BLOB_INSERT, "INSERT INTO blobs(digest, size) VALUES (?1, ?2) ON CONFLICT DO NOTHING")   \
    X(LINK_INSERT, "INSERT INTO repo_blobs(repo_id, digest) VALUES (?1, ?2)"                   \
                   " ON CONFLICT DO NOTHING")                                                  \
    X(MANIFEST_INSERT, "INSERT INTO manifests(repo_id, digest, media_type,"                    \
                       " artifact_type, annotations, subject, size, body, created_ms)"         \
                       " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) ON CONFLICT DO NOTHING")  \
    X(REF_INSERT, "INSERT INTO manifest_ref_seqs(manifest_seq, ref_digest, is_manifest)"       \
                  " SELECT seq, CAST(?3 AS TEXT), CAST(?4 AS BIGINT) FROM manifests"           \
                  " WHERE repo_id = ?1 AND digest = ?2 ON CONFLICT DO NOTHING")                \
    X(REFERRERS, "SELECT digest, media_type, artifact_type, annotations, size"                 \
                 " FROM manifests WHERE repo_id = ?1"                                          \
                 " AND subject = ?2 AND is_visible = 1"                                        \
                 " AND (CAST(?3 AS TEXT) IS NULL OR artifact_type = ?3) ORDER BY digest")      \
    X(UPLOAD_INSERT, "INSERT INTO uploads(id, repo, created_s, expires_s, source, acked_bytes," \
                     " is_single_request) VALUES (?1, ?2, ?3, ?4, ?5,"                         \
                     " CASE WHEN CAST(?5 AS TEXT) IS NULL THEN NULL ELSE 0 END, ?6)")          \
    X(UPLOAD_GET, "SELECT acked_bytes FROM uploads WHERE id = ?1"                              \
                  " AND (CAST(?2 AS TEXT) IS NULL OR repo = ?2)")                              \
    X(TAG_LIST, "SELECT g.name FROM tag_regs g JOIN manifests m ON m.repo_id = ?1"            \
                " AND m.digest = g.digest AND m.is_visible = 1"                               \
                " WHERE g.repo = (SELECT name FROM repos WHERE id = ?1)"                      \
                " AND lower(g.name) >= lower(CAST(?2 AS TEXT) COLLATE \"C\")"                 \
                " AND (lower(g.name) > lower(CAST(?2 AS TEXT) COLLATE \"C\") OR g.name > ?2)"  \
                " ORDER BY lower(g.name), g.name"                                             \
                " LIMIT NULLIF(CAST(?3 AS BIGINT), -1)")                                       \
    X(UPLOAD_EXPIRED, "SELECT id FROM uploads WHERE expires_s < ?1 ORDER BY id")               \
    X(ROLE_BIND, "INSERT INTO role_bindings(subject, role, pattern, created_ms)"               \
                 " VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING")                            \
    X(UPLOAD_OWNER_SET, "INSERT INTO upload_owners(id, owner) VALUES (?1, ?2)"                 \
                        " ON CONFLICT(id) DO UPDATE SET owner = excluded.owner")               \
    X(TREG_OF_DIGEST, "SELECT name, hlc, origin FROM tag_regs"                                 \
                      " WHERE repo = ?1 AND digest = ?2")                                      \
    X(MANIFEST_INSERT_REMOTE, "INSERT INTO manifests(repo_id, digest, media_type,"             \
                              " artifact_type, annotations, subject, size, body, created_ms,"  \
                              " is_visible, hlc, origin)"                                      \
                              " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 0, ?10, ?11)"      \
                              " ON CONFLICT DO NOTHING")                                       \
    X(REF_INSERT_SIZED, "INSERT INTO manifest_ref_seqs(manifest_seq, ref_digest,"              \
                        " is_manifest, size) SELECT seq, CAST(?3 AS TEXT), CAST(?4 AS BIGINT),"\
                        " CAST(?5 AS BIGINT) FROM manifests WHERE repo_id = ?1"                \
                        " AND digest = ?2 ON CONFLICT DO NOTHING")                             \
    X(PENDING_LIST, "SELECT r.name, m.digest, m.repo_id, m.origin FROM manifests m"            \
                    " JOIN repos r ON r.id = m.repo_id WHERE m.is_visible = 0"                 \
                    " ORDER BY m.seq LIMIT NULLIF(CAST(?1 AS BIGINT), -1)")                    \
    X(BLOB_LOST_HIDE, "UPDATE manifests m SET is_visible = 0 FROM manifest_ref_seqs r"         \
                      " WHERE m.seq = r.manifest_seq AND r.ref_digest = ?1"                    \
                      " AND m.is_visible = 1")                                                 \
    X(EVENTS_READ, "SELECT seq, origin, origin_seq, hlc, kind, repo, name, digest, payload"    \
                   " FROM events WHERE seq > ?1 ORDER BY seq"                                  \
                   " LIMIT NULLIF(CAST(?2 AS BIGINT), -1)")                                    \
    X(EVENTS_SINCE, "SELECT seq, origin, hlc, kind, repo, name, digest, payload"               \
                    " FROM events WHERE seq > ?1 ORDER BY seq"                                 \
                    " LIMIT NULLIF(CAST(?2 AS BIGINT), -1)")                                   \
    X(AUDIT_SET_COUNT, "UPDATE audit_log SET count = GREATEST(count, ?2),"                     \
                       " last_ms = GREATEST(coalesce(last_ms, time_ms), ?3) WHERE id = ?1")  \
    X(COMPACT_BATCH, "SELECT origin_seq, hlc FROM events WHERE origin = ?1"                   \
                     " AND origin_seq <= ?2 ORDER BY origin_seq"                              \
                     " LIMIT NULLIF(CAST(?3 AS BIGINT), -1)")                                 \
    X(TOMBS_EXPIRED, "SELECT repo, digest, hlc, origin FROM manifest_tombs"                   \
                     " WHERE hlc < ?1 ORDER BY hlc LIMIT NULLIF(CAST(?2 AS BIGINT), -1)")     \
    X(TREGS_DELETED_COUNT, "SELECT count(*) FROM tag_regs WHERE digest IS NULL")              \
    X(TREGS_EXPIRED, "SELECT repo, name, hlc, origin FROM tag_regs"                           \
                     " WHERE digest IS NULL AND hlc < ?1 ORDER BY hlc"                        \
                     " LIMIT NULLIF(CAST(?2 AS BIGINT), -1)")

enum sq_stmt {
#define X(id, sql) SQ_##id,
    SQ_STATEMENTS(X)
#undef X
        SQ_STMT_COUNT_
};

struct sq_conn;

struct sq_store {
    struct metastore base; /* first: the ops table dispatches on &base */
    struct metastore_ops ops; /* the SQL store's, named after its driver */
    unsigned magic;
    const struct sql_driver *drv;
    char *path; /* the driver's open target */
    char *region;
    pthread_key_t key; /* this thread's struct sq_conn */
    pthread_mutex_t mu;
    /* Under mu: */
    struct sq_conn *conns; /* every open connection, for close */
    int64_t hlc_last;
    int64_t opened_hlc; /* the clock at open (sq_hlc_seed): restored_probe's answer */
    pthread_mutex_t wmu;   /* one write transaction of this process at a time */
    uint64_t n_write_commits; /* under wmu: for the periodic PRAGMA optimize */
    /* Under wmu: the connection every write transaction of this process runs on, when the
     * driver keeps a page cache per connection (drv->setup_writer): see sq_tx_begin. */
    struct sql_db *wdb;
    struct sql_stmt *wstmts[SQ_STMT_COUNT_]; /* prepared on first use */
    /* Group commit (see durable_wait), under dmu: */
    pthread_mutex_t dmu;
    pthread_cond_t dcv;
    uint64_t d_requested;  /* commits that asked to be made durable */
    uint64_t d_synced;     /* commits known durable */
    bool is_d_busy;        /* a thread is syncing the WAL now */
    /* Until the open sequence ends (one thread, before the store is shared): its
     * schema writes need not hold wmu. */
    bool is_opening;
    /* Set once before the store is shared (metastore_sqlite_set_sealing_key). */
    bool has_seal_key;
    bool is_seal_pass_done; /* the start-up sealing pass committed (its mark may move at close) */
    /* Whether repository_lock objects exist (0 not known yet, 1 none, 2 some): every
     * manifest GET asks, and a registry without locks should not pay lookups for them.
     * Set to 2 by every write of one in this process (sq_note_object); a store shared by
     * several processes (PostgreSQL) starts at 2 and always looks. */
    atomic_int lock_objects;
    /* The same for live webhook definitions (0 not known, 1 none, 2 some): every effect asks
     * (sq_object_kind_may_exist), and a region without webhooks should not pay for them.
     * Back to 0 by every write of one in this process, so a deletion is seen; on PostgreSQL
     * (other processes write too) never kept: each question is one read. */
    atomic_int webhook_objects;
    uint8_t seal_key[SECRET_BOX_KEY_BYTES];
    /* Manifest lookups by repository and reference, valid while the driver's commit count
     * stays the same (manifest_cache.h); NULL when the driver cannot count every commit. */
    struct manifest_cache *manifests;
    /* Copies the write-ahead log ahead of the checkpoints (log_copier.h); NULL without. */
    struct sq_log_copier *copier;
};

#define SQ_SAVEPOINTS_MAX 30 /* nested transactions in a unit of work (sq_conn.savepoint_writes) */

struct sq_conn {
    unsigned magic;
    struct sq_store *store;
    bool is_write_tx;      /* the open transaction is a write transaction */
    bool has_wmu;          /* this connection holds the store's writer mutex */
    bool has_autocommit_lock; /* ... for an autocommit write (sq_autocommit_lock) */
    bool is_clock_synced;  /* the write transaction moved the clock past the log's newest */
    bool is_secure_delete; /* the write transaction zeroes what it frees (sq_tx_secure_delete) */
    /* A unit of work is open (sq_write_begin): the transactions begun in it are savepoints
     * of its write transaction, n_savepoints deep; is_unit_synced: one of them asked for a
     * synced commit, which the unit's commit then waits for. */
    bool is_unit;
    bool is_unit_synced;
    bool is_unit_failed; /* a savepoint could not be undone: the unit must roll back */
    int n_savepoints;
    unsigned savepoint_writes; /* bit n: savepoint n was begun as a write transaction */
    /* What statements run on: this thread's own connection, or the store's writer during
     * a write transaction. */
    struct sql_db *db;
    struct sql_stmt **stmts;
    struct sql_db *own_db;
    struct sql_stmt *own_stmts[SQ_STMT_COUNT_]; /* prepared on first use */
    struct sq_conn *prev;
    struct sq_conn *next;
};

/* The text of statement id in dialect (SQ_STATEMENTS, or the dialect's own), its name. */
const char *sq_statement_text(enum sql_dialect dialect, enum sq_stmt id);
const char *sq_statement_name(enum sq_stmt id);

/* Connections, statements, transactions (meta_sql.c) ------------------------------ */

/* This thread's connection to the store ms (opened on first use); NULL with e set. */
struct sq_conn *sq_conn_of(struct metastore *ms, struct err *e);
/* Binds and steps prepared statement id once: SQL_ROW or SQL_DONE with the
 * statement in *out (release it with sq_stmt_done), or -1 with e set. */
int sq_query(struct sq_conn *c, enum sq_stmt id, struct sql_stmt **out, struct err *e,
             const char *fmt, ...);
/* Binds and runs prepared statement id to completion; 0 or -1 with e set. */
int sq_exec(struct sq_conn *c, enum sq_stmt id, struct err *e, const char *fmt, ...);
/* Ends a use of a cached statement (from sq_query); bindings are cleared. */
void sq_stmt_done(struct sql_stmt *s);
/* Collects the names a listing query returns (column 0), rc being its first step:
 * at most limit (limit < 0: all); out->has_more says whether a further row came. */
int sq_collect_names(struct sq_conn *c, struct sql_stmt *s, int rc, long limit,
                     struct meta_name_list *out, struct err *e);
/* Collects the rows a query returns, rc being its first step, into an array of elements
 * of `size` bytes: read_row decodes the current row of s into a zeroed element. The
 * statement is left to the caller to release. 0, or -1 with e set when a step failed
 * (the elements read so far stay in *items, *n, for the caller's fini). */
typedef void sq_row_read_f(struct sql_stmt *s, void *elem);
int sq_collect_rows(struct sq_conn *c, struct sql_stmt *s, int rc, size_t size,
                    sq_row_read_f *read_row, void **items, size_t *n, struct err *e);
/* Collects columns 0..ncols-1 of each row a query returns (rc its first step) as strings,
 * row after row, into out->names (ncols per row). The statement is left to the caller to
 * release. 0, or -1 with e set (out freed). */
int sq_collect_columns(struct sq_conn *c, struct sql_stmt *s, int rc, int ncols,
                       struct meta_name_list *out, struct err *e);
/* The rows of table, and of them those whose column `at` (ms) is at most cutoff_ms: a
 * queue's length and what of it is due. table and at are the caller's constants. */
int sq_count_due(struct sq_conn *c, const char *table, const char *at, int64_t cutoff_ms,
                 int64_t *n, int64_t *n_due, struct err *e);
/* Binds the variadic arguments by fmt, one char per parameter in order: 't' const
 * char * (NULL binds NULL), 'i' int64_t, 'b' const void *, size_t. */
int sq_bind_args(struct sql_stmt *s, const char *fmt, va_list ap);
/* Column i as a new string (NULL for SQL NULL); the caller frees it. */
char *sq_col_strdup(struct sql_stmt *s, int i);
/* Logs the SQLite message of a failed call (what, sql) and maps rc into e: busy ->
 * ERR_UNAVAILABLE, full disk -> ERR_NO_SPACE, uniqueness clash -> ERR_CONFLICT, else
 * ERR_IO. Returns -1. */
int sq_db_fail(struct sq_conn *c, int rc, const char *what, const char *sql,
               struct err *e);
/* Reads a step result after the first: 1 for a row, 0 at the end, -1 on error. */
int sq_next_row(struct sq_conn *c, struct sql_stmt *s, struct err *e);
/* Runs a script of statements without results (schema text); 0 or -1 with e set. */
int sq_script(struct sq_conn *c, const char *script, const char *what, struct err *e);
/* Opens a transaction (is_write: BEGIN IMMEDIATE under the store's writer mutex). */
int sq_tx_begin(struct sq_conn *c, bool is_write, struct err *e);
/* Commits (a write transaction: durable when it returns 0); -1 with e set. */
int sq_tx_commit(struct sq_conn *c, struct err *e);
/* Rolls back the open transaction, if any. */
void sq_tx_rollback(struct sq_conn *c);
/* In an open write transaction: what it frees is zeroed, not merely marked free, until it
 * ends (drivers without the setting: nothing to do). 0, or -1 with e set. */
int sq_tx_secure_delete(struct sq_conn *c, struct err *e);
/* A write outside a transaction (autocommit) runs between these: they hold the writer
 * mutex, which every write of the process holds (meta_sql.c says why). */
void sq_autocommit_lock(struct sq_conn *c);
void sq_autocommit_unlock(struct sq_conn *c);
/* Units of work (ms_write_begin_f): a write transaction whose nested transactions are
 * savepoints. */
ms_write_begin_f sq_write_begin;
ms_write_end_f sq_write_end;
/* Moves the write-ahead log home and empties it (drivers without one: nothing to do),
 * under the writer mutex; outside a transaction. SQL_OK or the driver's error. */
int sq_compact_log(struct sq_conn *c);
/* Writes the database afresh from its live rows (driver rebuild; SQL_OK when it has none):
 * after the sealing pass found clear rows, whose older copies an older version may have
 * left in the free space of pages, and after a repository's removal, whose rows earlier
 * writes may have left old copies of where they moved them (secure_delete zeroes only what
 * is freed while it is on, and not what SQLite leaves behind when it moves cells between
 * pages). */
int sq_rebuild(struct sq_conn *c);
/* In a write transaction: records that the file needs a rebuild (a driver without one:
 * nothing). 0, or -1 with e set. */
int sq_rebuild_mark(struct sq_conn *c, struct err *e);
/* Outside a transaction: rebuilds the file if it was marked, then clears the mark; why
 * says what for, in the log ("after removing repository R", "left pending at the last
 * stop"). 1 rebuilt, 0 nothing pending, -1 failed (the mark stays: tried again). */
int sq_rebuild_pending(struct sq_conn *c, const char *why);
/* Group commit: returns once every commit made so far is on stable storage (one
 * WAL sync shared by the threads waiting); -1 with e set when the sync fails. */
int sq_durable_wait(struct sq_store *st, struct err *e);
/* One-shot statements: prepare sql, bind (sq_bind_args formats), step once.
 * sq_run: SQL_ROW or SQL_DONE with the statement in *out (the caller finalizes
 * it), or -1 with e set. sq_run_exec: for statements whose rows are not read, 0 or -1. */
int sq_vrun(struct sq_conn *c, const char *sql, struct sql_stmt **out, struct err *e,
            const char *fmt, va_list ap);
int sq_run(struct sq_conn *c, const char *sql, struct sql_stmt **out, struct err *e,
           const char *fmt, ...);
int sq_run_exec(struct sq_conn *c, const char *sql, struct err *e, const char *fmt, ...);

/* Opening and closing (meta_sql.c): a store on driver drv (target: its open argument),
 * with this thread's connection open; sq_close closes it. */
struct sq_store *sq_store_open(const struct sql_driver *drv, const char *target,
                               const char *region, struct err *e);
ms_close_f sq_close;
/* Commits without waiting for the sync (see meta_sql.c: for writes fetched again if lost). */
int sq_tx_commit_unsynced(struct sq_conn *c, struct err *e);
/* A digest column written from a validated struct digest. */
void sq_col_digest(struct sql_stmt *s, int i, struct digest *d);
/* SQL LIMIT for a page of n names plus one to learn whether more follow. */
int64_t sq_page_limit(long n);

/* The event log (meta_events.c) ---------------------------------------------------- */

/* The store's hybrid logical clock: the next stamp (inside the write transaction, so hlc
 * order is commit order here), and moving it past a stamp seen from a peer. */
int64_t sq_hlc_next(struct sq_conn *c);
void sq_hlc_seen(struct sq_store *st, uint64_t remote);
/* At open: the clock never goes below what the log already holds. */
int sq_hlc_seed(struct sq_conn *c, struct err *e);
/* The version-vector entry of origin (0 if none), inside a transaction. */
int sq_vv_read(struct sq_conn *c, const char *origin, int64_t *seq, struct err *e);
/* Appends one event row with an explicit origin, origin_seq and hlc and advances the
 * version vector, in the caller's write transaction. */
int sq_event_insert(struct sq_conn *c, const char *origin, int64_t origin_seq, int64_t hlc,
                    const char *kind, const char *repo, const char *name, const char *digest,
                    const char *payload, struct err *e);
/* Appends one local event stamped with this region's next sequence number and clock hlc
 * (sq_event_append: a fresh one). payload: a JSON object or NULL. */
int sq_event_append_clock(struct sq_conn *c, const char *kind, const char *repo,
                          const char *name, const char *digest, const char *payload,
                          int64_t hlc, struct err *e);
int sq_event_append(struct sq_conn *c, const char *kind, const char *repo, const char *name,
                    const char *digest, const char *payload, struct err *e);
ms_events_since_f sq_events_since;
ms_events_read_f sq_events_read;
ms_vv_get_f sq_vv_get;
ms_cursor_get_f sq_cursor_get;
ms_cursor_set_f sq_cursor_set;
ms_log_head_f sq_log_head;

/* The merge rules (meta_merge.c) --------------------------------------------------- */

/* Merges a write of tag register (repo, name) := digest (NULL: delete) at (hlc, origin);
 * *is_applied tells whether it won. */
int sq_tag_merge(struct sq_conn *c, int64_t repo_id, const char *repo, const char *name,
                 const char *digest, int64_t hlc, const char *origin, bool *is_applied,
                 struct err *e);
/* Merges a manifest tombstone at (hlc, origin): deletes the manifest when its put is older. */
int sq_tomb_merge(struct sq_conn *c, int64_t repo_id, const char *repo, const char *digest,
                  int64_t hlc, const char *origin, struct err *e);
/* Local delete of a manifest: a tag_delete (merge and event) for every register naming it. */
int sq_delete_tags_of(struct sq_conn *c, int64_t repo_id, const char *repo,
                      const char *digest, struct err *e);
ms_event_apply_f sq_event_apply;
ms_state_merge_f sq_state_merge;

/* Event payloads (meta_payload.c) -------------------------------------------------- */

void sq_status_payload(struct buf *p, const struct meta_status *st);
/* The payload of a status event as stored: short when origin reports its own status. */
void sq_status_payload_stored(struct buf *p, const struct meta_status *st, const char *origin);
/* The JSON payload of an event stored in a short form (malloc'd), NULL if it is not one. */
char *sq_event_payload_expand(const char *kind, const char *origin, const char *stored);
/* Whether a stored payload is in the short form (so one that failed to expand is damaged). */
bool sq_event_payload_is_short(const char *stored);
/* Checks a payload builder once, as its sticky error allows. */
int sq_payload_check(struct buf *b, struct err *e);
/* The manifest_put payload of the manifest in row s (digest, media_type, artifact_type,
 * annotations, subject, body); NULL with e set if its references cannot be read. */
char *sq_manifest_payload(struct sq_conn *c, struct sql_stmt *s, int64_t repo_id,
                          struct err *e);
/* Is this payload one that sq_event_payload_derive rebuilds? (Then it is stored as NULL.) */
bool sq_is_payload_derivable(const char *kind, const char *origin, const char *payload);
/* Fills in the payload of an event stored without one; *kind may become "superseded". */
char *sq_event_payload_derive(struct sq_conn *c, const char **kind, const char *origin,
                              const char *repo, const char *digest, bool *failed,
                              struct err *e);

/* Replication's bookkeeping (meta_repl.c) ------------------------------------------ */

/* Records this region's status of an artifact, optionally as a replicated event. */
/* Writes a status row holding a report written at hlc (a peer's: merge_status). */
int sq_status_write_peer(struct sq_conn *c, const char *repo, const char *digest,
                         const struct meta_status *st, int64_t hlc, struct err *e);
int sq_status_write(struct sq_conn *c, const char *repo, const char *digest,
                    const struct meta_status *st, bool is_event, struct err *e);
/* A push's own Completed: the event alone, the row derived when read (meta_repl.c, "The
 * own status"). */
int sq_status_announce_own(struct sq_conn *c, const char *repo, const char *digest,
                           const struct meta_status *st, struct err *e);
/* A visible manifest put again at a new clock: this region's status of it announced again. */
int sq_status_announce_own_again(struct sq_conn *c, int64_t repo_id, const char *repo,
                                 const char *digest, struct err *e);
/* This region's derived status of repo@digest: Completed when it is visible here and no
 * Completed row of this region says more (*found false: a row says it, or it is not here);
 * the strings of *out are malloc'd. */
int sq_status_own_derived(struct sq_conn *c, const char *repo, const char *digest,
                          struct meta_status *out, bool *found, struct err *e);
/* Calls each for every manifest of repo whose own status is derived, by digest; st and
 * digest are valid during the call only, hlc is the manifest's clock. */
typedef void sq_own_status_f(void *arg, const char *digest, const struct meta_status *st,
                             int64_t hlc);
int sq_status_own_derived_of_repo(struct sq_conn *c, const char *repo, sq_own_status_f *each,
                                  void *arg, struct err *e);
ms_pending_list_f sq_pending_list;
ms_pending_complete_f sq_pending_complete;
ms_status_set_f sq_status_set;
ms_status_list_f sq_status_list;
ms_status_drop_region_f sq_status_drop_region;
ms_status_drop_older_f sq_status_drop_older;

/* Repositories and blobs (meta_blobs.c) -------------------------------------------- */

/* 0 and *id if repo exists, 1 if not, -1 on error. */
int sq_repo_find(struct sq_conn *c, const char *repo, int64_t *id, struct err *e);
/* Creates repo's row on first use (inside a write transaction). */
int sq_repo_ensure(struct sq_conn *c, const char *repo, int64_t *id, struct err *e);
/* 0 if no other manifest of repo references digest; -1 with ERR_IN_USE (naming one) if one does. */
int sq_referenced_by(struct sq_conn *c, int64_t repo_id, const char *digest, struct err *e);
ms_blob_link_f sq_blob_link;
ms_blob_get_f sq_blob_get;
ms_blob_find_f sq_blob_find;
ms_blob_unlink_f sq_blob_unlink;
ms_repo_list_f sq_repo_list;
ms_blob_list_all_f sq_blob_list_all;
ms_blob_lost_f sq_blob_lost;
/* Garbage collection and storage accounting (meta_gc.c) */
ms_gc_due_f sq_gc_due;
ms_gc_collect_f sq_gc_collect;
/* Retention (meta_retention.c) */
ms_tag_clocks_f sq_tag_clocks;
ms_tag_delete_if_f sq_tag_delete_if;
/* Untagged manifests (meta_untagged.c) */
ms_untagged_due_f sq_untagged_due;
ms_untagged_collect_f sq_untagged_collect;
ms_untagged_count_f sq_untagged_count;
/* Merges a collector's tombstone (payload {"gc":true}) at (hlc, origin): as sq_tomb_merge,
 * unless something keeps the manifest here; then it is put again with a newer clock. */
int sq_untagged_tomb_merge(struct sq_conn *c, int64_t repo_id, const char *repo,
                           const char *digest, int64_t hlc, const char *origin, struct err *e);
/* The payload of a collector's tombstone event. */
#define SQ_GC_TOMB_PAYLOAD "{\"tags\":[],\"gc\":true}"
/* Is a manifest_delete payload a collector's ({"gc":true})? */
bool sq_is_gc_tomb(const char *payload);
/* A put of a manifest already here restarts its untagged grace. */
int sq_untagged_touch(struct sq_conn *c, int64_t repo_id, const char *digest, struct err *e);
ms_gc_queue_length_f sq_gc_queue_length;
ms_storage_usage_f sq_storage_usage;
ms_repo_bytes_f sq_repo_bytes;

/* Manifests, tags, referrers (meta_manifests.c) ------------------------------------ */

ms_manifest_put_f sq_manifest_put;
ms_manifest_get_f sq_manifest_get;
ms_manifest_delete_f sq_manifest_delete;
ms_tag_delete_f sq_tag_delete;
ms_tag_list_f sq_tag_list;
ms_referrers_f sq_referrers;
ms_manifest_lookup_f sq_manifest_lookup;
ms_manifest_tags_f sq_manifest_tags;
ms_manifest_holder_f sq_manifest_holder;

/* State digests (meta_state.c) ----------------------------------------------------- */

ms_summary_f sq_summary;
ms_repo_state_f sq_repo_state;

/* Event-log compaction (meta_compact.c) -------------------------------------------- */
ms_peer_ack_set_f sq_peer_ack_set;
ms_peer_acks_f sq_peer_acks;
ms_log_horizon_f sq_log_horizon;
ms_origin_clocks_f sq_origin_clocks;
ms_log_compact_f sq_log_compact;
ms_tombs_expire_f sq_tombs_expire;
/* Logs, once per process, that a peer holds events of this region's own name past its
 * log (#seq, this log ending at #have): meta_merge.c, and log_adopt for a snapshot. */
void sq_note_own_history(int64_t have, int64_t seq);
/* Region restored from an older copy (meta_restored.c). */
ms_origin_newest_f sq_origin_newest;
ms_restored_probe_f sq_restored_probe;
/* A RESTORED_KIND object (region key, value) written here (is_merge false) or merged from
 * a peer, in the open write transaction: drops key's status rows older than its opening
 * clock, or, in the region key itself (merged), reports those of its rows again. Other
 * kinds: nothing. */
int sq_restored_on_put(struct sq_conn *c, const char *kind, const char *key, const char *value,
                       bool is_merge, struct err *e);
/* Whether a RESTORED_KIND value written here for key would lower the reopening held (one
 * merged from a peer since the writer read it): the held one stays, as it does in every
 * region the merge rule reaches (meta_merge.c), so the write is dropped. Other kinds: no. */
int sq_restored_is_kept(struct sq_conn *c, const char *kind, const char *key, const char *value,
                        bool *is_kept, struct err *e);
/* Whether a report of region written at hlc is void (older than its restored marker). */
int sq_restored_voids(struct sq_conn *c, const char *region, int64_t hlc, bool *is_void,
                      struct err *e);
/* The opening clock of a RESTORED_KIND value ({"opened": H}); 0 if none. */
int64_t sq_restored_opened(const char *value);
ms_log_adopt_f sq_log_adopt;
ms_objects_state_f sq_objects_state;
ms_repo_statuses_f sq_repo_statuses;
ms_state_forget_f sq_state_forget;
ms_log_stats_f sq_log_stats;
ms_tag_acked_f sq_tag_acked;

/* Replicated objects and sealed secrets (meta_objects.c) --------------------------- */

/* A webhook definition (kind) or object_put payload with its secrets sealed (is_seal) or
 * opened; NULL when nothing changes. */
char *sq_seal_value(const struct sq_store *st, const char *kind, const char *value_json,
                    bool is_seal);
char *sq_seal_payload(const struct sq_store *st, const char *event_kind, const char *payload,
                      bool is_seal);
/* At a clean close: records that every event so far is sealed (a store with a key). */
void sq_seal_mark_at_close(struct sq_store *st);
ms_object_put_f sq_object_put;
ms_object_put_f sq_object_create;
ms_object_delete_f sq_object_delete;
ms_object_get_f sq_object_get;
ms_object_exists_f sq_object_exists;
ms_object_kind_may_exist_f sq_object_kind_may_exist;
/* Records that an object of kind was written (see sq_store.lock_objects). */
void sq_note_object(struct sq_store *st, const char *kind);
ms_object_list_f sq_object_list;

/* Sections in their own files --------------------------------------------------- */

/* meta_uploads.c: upload sessions (region-local, autocommit). */
ms_upload_create_f sq_upload_create;
ms_upload_create_capped_f sq_upload_create_capped;
ms_upload_caps_check_f sq_upload_caps_check;
ms_upload_get_f sq_upload_get;
ms_upload_set_acked_f sq_upload_set_acked;
ms_upload_list_single_f sq_upload_list_single;
ms_upload_count_from_f sq_upload_count_from;
ms_upload_delete_f sq_upload_delete;
ms_upload_claim_f sq_upload_claim;
ms_upload_list_expired_f sq_upload_list_expired;

/* meta_webhooks.c: webhook deliveries (region-local). */
ms_delivery_add_f sq_delivery_add;
/* In the open write transaction, once per store: the records written before 5 December
 * kept an unreachable receiver's whole URL in their response (userinfo and query values,
 * which may be credentials); new ones are redacted as written (httpc.c). Redacts those
 * (url_redact) and marks the store done. *n_redacted: records changed. 0, or -1 with e. */
int sq_delivery_redact_old(struct sq_conn *c, size_t *n_redacted, struct err *e);
ms_delivery_due_f sq_delivery_due;
ms_delivery_update_f sq_delivery_update;
ms_lease_hold_f sq_lease_hold;
ms_gc_fence_f sq_gc_fence;
ms_delivery_list_f sq_delivery_list;
ms_delivery_prune_f sq_delivery_prune;

/* meta_residency.c: holdings and the removal of a repository a residency policy forbids. */
ms_holdings_f sq_holdings;
ms_repo_purge_f sq_repo_purge;

/* meta_access.c: identities, role bindings, audit log, upload owners. */
ms_identity_put_f sq_identity_put;
ms_identity_delete_f sq_identity_delete;
ms_role_set_f sq_role_set;
/* Registry-wide identities (meta_access.c): the object kinds, the merge hook and the
 * publishing of rows from before them. */
#define SQ_ACCESS_IDENTITY_KIND "identity"
#define SQ_ACCESS_BINDING_KIND "role_binding"
/* The clock of the bootstrap admin and of identities published at open (meta_access.c):
 * the lowest, so any deliberate write wins over them. Their events are the only ones of a
 * region whose clock is not above the one before (sq_tag_acked skips them). */
#define SQ_ACCESS_LOW_HLC 1
int sq_access_on_object(struct sq_conn *c, const char *kind, const char *key,
                        const char *value_json, const char *origin, struct err *e);
int sq_access_publish_local(struct sq_conn *c, struct err *e);
/* In the transaction that wrote an object of kind (put, delete, a peer's that won): a
 * residency policy bumps the auth generation too (authz.c keeps the parsed policies in
 * its snapshot, rebuilt when the generation moves). */
int sq_access_on_policy_write(struct sq_conn *c, const char *kind, struct err *e);
ms_auth_load_f sq_auth_load;
ms_auth_generation_f sq_auth_generation;
ms_audit_append_f sq_audit_append;
ms_audit_list_f sq_audit_list;
ms_audit_set_count_f sq_audit_set_count;
ms_upload_set_owner_f sq_upload_set_owner;
ms_upload_owner_f sq_upload_owner;
ms_upload_count_owned_f sq_upload_count_owned;
ms_upload_oldest_f sq_upload_oldest;
/* Upload owners on a connection, inside the caller's write transaction (meta_access.c):
 * the owner row of session id, and the sessions owner holds that expire at or after now_s. */
int sq_upload_owner_write(struct sq_conn *c, const char *id, const char *owner, struct err *e);
int sq_upload_owned_in(struct sq_conn *c, const char *owner, int64_t now_s, int64_t *n,
                       struct err *e);

/* meta_versions.c: placement of image versions (filtered replication). */
ms_manifest_place_f sq_manifest_place;
ms_manifest_release_f sq_manifest_release;
ms_manifest_body_missing_f sq_manifest_body_missing;
ms_manifest_body_set_f sq_manifest_body_set;
ms_manifest_relatives_f sq_manifest_relatives;
ms_manifest_show_shallow_f sq_manifest_show_shallow;
ms_blob_is_wanted_f sq_blob_is_wanted;
/* Is repo an image definition (meta_versions.c)? Its manifests replicated from peers are
 * recorded without their document, which only the regions that hold them fetch. */
int sq_repo_is_definition(struct sq_conn *c, const char *repo, bool *is_definition,
                          struct err *e);

#endif
