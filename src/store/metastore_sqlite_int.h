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
#include <stdbool.h>
#include <stdint.h>

#include "metastore.h"
#include "secret.h"
#include "sql_driver.h"

#define SQ_STORE_MAGIC 0x6d737173u /* "msqs" */
#define SQ_CONN_MAGIC 0x6d737163u  /* "msqc" */
#define SQ_PAYLOAD_MAX_BYTES (16u << 20)

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
    X(REF_INSERT, "INSERT OR IGNORE INTO manifest_refs(repo_id, manifest_digest, ref_digest,"  \
                  " is_manifest) VALUES (?1, ?2, ?3, ?4)")                                     \
    X(REFS_DELETE, "DELETE FROM manifest_refs WHERE repo_id = ?1 AND manifest_digest = ?2")    \
    X(REFERRERS, "SELECT digest, media_type, artifact_type, annotations, length(body)"         \
                 " FROM manifests INDEXED BY manifests_subject WHERE repo_id = ?1"            \
                 " AND subject = ?2 AND is_visible = 1"                                        \
                 " AND (?3 IS NULL OR artifact_type = ?3) ORDER BY digest")                    \
    X(TAG_GET, "SELECT digest FROM tags WHERE repo_id = ?1 AND name = ?2")                     \
    X(TAG_UPSERT, "INSERT INTO tags(repo_id, name, digest, updated_ms) VALUES (?1, ?2, ?3, ?4)" \
                  " ON CONFLICT(repo_id, name) DO UPDATE"                                      \
                  " SET digest = excluded.digest, updated_ms = excluded.updated_ms")           \
    X(TAG_DELETE, "DELETE FROM tags WHERE repo_id = ?1 AND name = ?2")                         \
    X(TAGS_OF_MANIFEST, "SELECT name FROM tags WHERE repo_id = ?1 AND digest = ?2"             \
                        " ORDER BY name")                                                      \
    X(TAGS_DELETE_OF_MANIFEST, "DELETE FROM tags WHERE repo_id = ?1 AND digest = ?2")          \
    X(TAG_LIST, "SELECT t.name FROM tags t JOIN manifests m ON m.repo_id = t.repo_id"          \
                " AND m.digest = t.digest AND m.is_visible = 1 WHERE t.repo_id = ?1 AND t.name > ?2" \
                " ORDER BY t.name COLLATE BINARY LIMIT ?3")                                    \
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
    X(TOMB_GET, "SELECT hlc, origin FROM manifest_tombs WHERE repo = ?1 AND digest = ?2")      \
    X(TOMB_SET, "INSERT INTO manifest_tombs(repo, digest, hlc, origin) VALUES (?1, ?2, ?3, ?4)" \
                " ON CONFLICT(repo, digest) DO UPDATE SET hlc = excluded.hlc,"                 \
                " origin = excluded.origin")                                                   \
    X(TOMB_OF_REPO, "SELECT digest, hlc, origin FROM manifest_tombs WHERE repo = ?1"          \
                    " ORDER BY digest")                                                        \
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
    X(MANIFEST_SET_VISIBLE, "UPDATE manifests SET is_visible = 1"                              \
                            " WHERE repo_id = ?1 AND digest = ?2")                             \
    X(MANIFESTS_OF_REPO, "SELECT digest, media_type, artifact_type, annotations, subject,"     \
                         " body, hlc, origin FROM manifests WHERE repo_id = ?1 ORDER BY digest") \
    /* The anti-entropy digest needs only the digests: the covering index, no bodies read. */ \
    X(MANIFEST_DIGESTS_OF_REPO, "SELECT digest FROM manifests WHERE repo_id = ?1"              \
                                " ORDER BY digest")                                            \
    X(REF_INSERT_SIZED, "INSERT OR IGNORE INTO manifest_refs(repo_id, manifest_digest,"        \
                        " ref_digest, is_manifest, size) VALUES (?1, ?2, ?3, ?4, ?5)")         \
    X(REFS_OF_MANIFEST, "SELECT ref_digest, is_manifest, coalesce(size, -1) FROM manifest_refs" \
                        " WHERE repo_id = ?1 AND manifest_digest = ?2")                        \
    X(PENDING_LIST, "SELECT r.name, m.digest, m.repo_id, m.origin FROM manifests m"            \
                    " JOIN repos r ON r.id = m.repo_id WHERE m.is_visible = 0"                 \
                    " ORDER BY m.rowid LIMIT ?1") /* rowid: insertion order, in the index */   \
    X(VISIBLE_CHILD, "SELECT 1 FROM manifests WHERE repo_id = ?1 AND digest = ?2"             \
                     " AND is_visible = 1")                                                    \
    X(STATUS_GET, "SELECT updated_ms FROM repl_status WHERE repo = ?1 AND digest = ?2"         \
                  " AND region = ?3")                                                          \
    X(STATUS_SET, "INSERT INTO repl_status(repo, digest, region, state, bytes_done,"           \
                  " bytes_total, updated_ms, details) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)" \
                  " ON CONFLICT(repo, digest, region) DO UPDATE SET state = excluded.state,"   \
                  " bytes_done = excluded.bytes_done, bytes_total = excluded.bytes_total,"     \
                  " updated_ms = excluded.updated_ms, details = excluded.details")             \
    X(STATUS_OF_REGION, "SELECT state, bytes_done, bytes_total, updated_ms, details"           \
                        " FROM repl_status WHERE repo = ?1 AND digest = ?2 AND region = ?3")   \
    X(MANIFEST_PAYLOAD, "SELECT digest, media_type, artifact_type, annotations, subject, body"  \
                        " FROM manifests WHERE repo_id = ?1 AND digest = ?2")                  \
    X(STATUS_LIST, "SELECT region, state, bytes_done, bytes_total, updated_ms, details"        \
                   " FROM repl_status WHERE repo = ?1 AND digest = ?2 ORDER BY region")        \
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
                            " m.body FROM repos r JOIN tags t ON t.repo_id = r.id"             \
                            " JOIN manifests m ON m.repo_id = t.repo_id AND m.digest = t.digest" \
                            " WHERE r.name = ?1 AND t.name = ?2 AND m.is_visible = 1")         \
    X(ALL_BLOBS, "SELECT digest FROM blobs ORDER BY digest")                                   \
    X(BLOB_LOST_HIDE, "UPDATE manifests SET is_visible = 0 WHERE rowid IN (SELECT m.rowid"     \
                      " FROM manifest_refs r JOIN manifests m ON m.repo_id = r.repo_id"        \
                      " AND m.digest = r.manifest_digest WHERE r.ref_digest = ?1"              \
                      " AND m.is_visible = 1)")                                                \
    X(BLOB_LOST_UNLINK, "DELETE FROM repo_blobs WHERE digest = ?1")                            \
    X(REFERENCED_BY, "SELECT manifest_digest FROM manifest_refs WHERE repo_id = ?1"            \
                     " AND ref_digest = ?2 AND manifest_digest != ?2 LIMIT 1")                 \
    X(EVENTS_SINCE, "SELECT seq, origin, hlc, kind, repo, name, digest, payload"               \
                    " FROM events WHERE seq > ?1 ORDER BY seq LIMIT ?2")

enum sq_stmt {
#define X(id, sql) SQ_##id,
    SQ_STATEMENTS(X)
#undef X
        SQ_STMT_COUNT_
};

struct sq_conn;

struct sq_store {
    struct metastore base; /* first: the ops table dispatches on &base */
    unsigned magic;
    const struct sql_driver *drv;
    char *path; /* the driver's open target */
    char *region;
    pthread_key_t key; /* this thread's struct sq_conn */
    pthread_mutex_t mu;
    /* Under mu: */
    struct sq_conn *conns; /* every open connection, for close */
    int64_t hlc_last;
    pthread_mutex_t wmu;   /* one write transaction of this process at a time */
    uint64_t n_write_commits; /* under wmu: for the periodic PRAGMA optimize */
    /* Group commit (see durable_wait), under dmu: */
    pthread_mutex_t dmu;
    pthread_cond_t dcv;
    uint64_t d_requested;  /* commits that asked to be made durable */
    uint64_t d_synced;     /* commits known durable */
    bool is_d_busy;        /* a thread is syncing the WAL now */
    /* Set once before the store is shared (metastore_sqlite_set_sealing_key). */
    bool has_seal_key;
    uint8_t seal_key[SECRET_BOX_KEY_BYTES];
};

struct sq_conn {
    unsigned magic;
    struct sq_store *store;
    bool is_write_tx;      /* the open transaction is a write transaction */
    bool has_wmu;          /* this connection holds the store's writer mutex */
    struct sql_db *db;
    struct sql_stmt *stmts[SQ_STMT_COUNT_]; /* prepared on first use */
    struct sq_conn *prev;
    struct sq_conn *next;
};

/* Connections, statements, transactions (metastore_sqlite.c) ---------------- */

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

/* Sections in their own files --------------------------------------------------- */

/* metastore_sqlite_uploads.c: upload sessions (region-local, autocommit). */
ms_upload_create_f sq_upload_create;
ms_upload_get_f sq_upload_get;
ms_upload_set_acked_f sq_upload_set_acked;
ms_upload_list_single_f sq_upload_list_single;
ms_upload_count_from_f sq_upload_count_from;
ms_upload_delete_f sq_upload_delete;
ms_upload_list_expired_f sq_upload_list_expired;

/* metastore_sqlite_webhooks.c: webhook deliveries (region-local). */
ms_delivery_add_f sq_delivery_add;
ms_delivery_due_f sq_delivery_due;
ms_delivery_update_f sq_delivery_update;
ms_delivery_list_f sq_delivery_list;
ms_delivery_prune_f sq_delivery_prune;

/* metastore_sqlite_access.c: identities, role bindings, audit log, upload owners. */
ms_identity_put_f sq_identity_put;
ms_identity_delete_f sq_identity_delete;
ms_role_set_f sq_role_set;
ms_auth_load_f sq_auth_load;
ms_auth_generation_f sq_auth_generation;
ms_audit_append_f sq_audit_append;
ms_audit_list_f sq_audit_list;
ms_audit_set_count_f sq_audit_set_count;
ms_upload_set_owner_f sq_upload_set_owner;
ms_upload_count_owned_f sq_upload_count_owned;

#endif
