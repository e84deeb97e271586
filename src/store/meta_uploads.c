/* SQL metastore (backend-neutral): upload sessions. Region-local rows (a push never
 * splits), written outside transactions; see meta_sql.c for the store and its helpers. */

#include <inttypes.h>
#include <jansson.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "log.h"
#include "metastore_sqlite_int.h"
#include "util.h"

/* Upload sessions --------------------------------------------------------- */

/* Upload sessions are region-local (design: a push never splits), so these are single
 * autocommit statements with no event rows. */
/* Upload rows are written outside transactions (autocommit, not synced: a session is not
 * a durable promise), but still queued on wmu like the transactions: without it they
 * collided with them on SQLite's write lock and slept in on_busy (785 sleeps in 4 s of
 * small-image pushes, all from these two). */
int sq_upload_create(struct metastore *ms, const char *id, const char *repo,
                     int64_t expires_at_s, const char *source, bool is_single_request,
                     struct err *e)
{
    struct sq_conn *c = sq_conn_of(ms, e);
    if (c == NULL)
        return -1;
    sq_autocommit_lock(c);
    int rc = sq_exec(c, SQ_UPLOAD_INSERT, e, "ttiiti", id, repo, util_now_s(), expires_at_s,
                     source, (int64_t)is_single_request);
    sq_autocommit_unlock(c);
    return rc;
}

static int count_from(struct sq_conn *c, const char *source, int64_t now_s, int64_t *n,
                      struct err *e)
{
    struct sql_stmt *s;
    int rc = sq_query(c, SQ_UPLOAD_COUNT_FROM, &s, e, "ti", source, now_s);
    if (rc < 0)
        return -1;
    *n = rc == SQL_ROW ? sql_col_int64(s, 0) : 0;
    sq_stmt_done(s);
    return 0;
}

/* -1 ERR_TOOMANYREQUESTS naming the cap a new session from source would pass, on c as it
 * stands (in the creating transaction, or before it). */
static int caps_check(struct sq_conn *c, const char *source, const struct meta_upload_caps *caps,
                      struct err *e)
{
    int64_t n = 0;
    if (caps->max_from_source > 0 && source != NULL) {
        if (count_from(c, source, caps->now_s, &n, e) != 0)
            return -1;
        if (n >= caps->max_from_source)
            return err_set(e, ERR_TOOMANYREQUESTS,
                           "too many upload sessions in progress (at most %" PRId64
                           " per address)",
                           caps->max_from_source);
    }
    if (caps->max_owned > 0 && caps->owner != NULL) {
        if (sq_upload_owned_in(c, caps->owner, caps->now_s, &n, e) != 0)
            return -1;
        if (n >= caps->max_owned)
            return err_set(e, ERR_TOOMANYREQUESTS,
                           "too many upload sessions in progress (at most %" PRId64
                           " per identity)",
                           caps->max_owned);
    }
    return 0;
}

int sq_upload_caps_check(struct metastore *ms, const char *source,
                         const struct meta_upload_caps *caps, struct err *e)
{
    struct sq_conn *c = sq_conn_of(ms, e);
    if (c == NULL)
        return -1;
    return caps_check(c, source, caps, e);
}

/* Counts and creates in one write transaction: every other write of this process waits on
 * wmu, and on PostgreSQL every node's on the writers' lock, so two starts from one address
 * (or one identity) cannot both see room for one more. Not synced, like upload_create; the
 * owner row used to be written in a transaction of its own after the session. */
int sq_upload_create_capped(struct metastore *ms, const char *id, const char *repo,
                            int64_t expires_at_s, const char *source, bool is_single_request,
                            const struct meta_upload_caps *caps, struct err *e)
{
    struct sq_conn *c = sq_conn_of(ms, e);
    if (c == NULL)
        return -1;
    if (sq_tx_begin(c, true, e) != 0)
        return -1;
    if (caps_check(c, source, caps, e) != 0)
        goto fail;
    if (sq_exec(c, SQ_UPLOAD_INSERT, e, "ttiiti", id, repo, util_now_s(), expires_at_s, source,
                (int64_t)is_single_request) != 0)
        goto fail;
    if (caps->owner != NULL && sq_upload_owner_write(c, id, caps->owner, e) != 0)
        goto fail;
    return sq_tx_commit_unsynced(c, e);
fail:
    sq_tx_rollback(c);
    return -1;
}

int sq_upload_oldest(struct metastore *ms, const char *source, const char *owner, int64_t now_s,
                     int64_t started_before_s, size_t max, struct meta_name_list *out,
                     struct err *e)
{
    memset(out, 0, sizeof(*out));
    struct sq_conn *c = sq_conn_of(ms, e);
    if (c == NULL)
        return -1;
    struct sql_stmt *s;
    int rc = owner != NULL
                 ? sq_run(c, "SELECT u.id FROM upload_owners o JOIN uploads u ON u.id = o.id"
                             " WHERE o.owner = ?1 AND u.expires_s >= ?2 AND u.created_s < ?4"
                             " AND u.is_single_request = 0 ORDER BY u.created_s, u.id LIMIT ?3",
                          &s, e, "tiii", owner, now_s, (int64_t)max, started_before_s)
                 : sq_run(c, "SELECT id FROM uploads WHERE source = ?1 AND expires_s >= ?2"
                             " AND created_s < ?4 AND is_single_request = 0"
                             " ORDER BY created_s, id LIMIT ?3",
                          &s, e, "tiii", source != NULL ? source : "", now_s, (int64_t)max,
                          started_before_s);
    if (rc < 0)
        return -1;
    int row = rc == SQL_ROW;
    for (; row == 1; row = sq_next_row(c, s, e)) {
        out->names = xrealloc(out->names, (out->n + 1) * sizeof(char *));
        out->names[out->n++] = sq_col_strdup(s, 0);
    }
    sql_finalize(s);
    if (row < 0) { /* a read that failed half-way: no partial list */
        meta_name_list_fini(out);
        return -1;
    }
    return 0;
}

int sq_upload_get(struct metastore *ms, const char *id, const char *repo,
                  int64_t *acked_bytes, struct err *e)
{
    struct sq_conn *c = sq_conn_of(ms, e);
    if (c == NULL)
        return -1;
    struct sql_stmt *s;
    int rc = sq_query(c, SQ_UPLOAD_GET, &s, e, "tt", id, repo);
    if (rc < 0)
        return -1;
    if (rc == SQL_ROW && acked_bytes != NULL)
        *acked_bytes = sql_col_is_null(s, 0) ? -1
                                                                : sql_col_int64(s, 0);
    sq_stmt_done(s);
    if (rc != SQL_ROW)
        return err_set(e, ERR_BLOB_UPLOAD_UNKNOWN, NULL);
    return 0;
}

/* Not synced, like the rest of the row: it outlives a crash of the process (the kernel
 * holds the WAL), which is what it is for; see ms_upload_set_acked_f. */
int sq_upload_set_acked(struct metastore *ms, const char *id, uint64_t acked_bytes,
                        struct err *e)
{
    struct sq_conn *c = sq_conn_of(ms, e);
    if (c == NULL)
        return -1;
    sq_autocommit_lock(c);
    int rc = sq_exec(c, SQ_UPLOAD_SET_ACKED, e, "ti", id, (int64_t)acked_bytes);
    sq_autocommit_unlock(c);
    /* The acknowledged size is what a PATCH's 202 promises: synced like a transaction. */
    return rc == 0 ? sq_durable_wait(c->store, e) : rc;
}

int sq_upload_list_single(struct metastore *ms, struct meta_name_list *out,
                          struct err *e)
{
    memset(out, 0, sizeof(*out));
    struct sq_conn *c = sq_conn_of(ms, e);
    if (c == NULL)
        return -1;
    struct sql_stmt *s;
    int rc = sq_query(c, SQ_UPLOAD_SINGLE, &s, e, "");
    if (rc < 0)
        return -1;
    return sq_collect_names(c, s, rc, -1, out, e);
}

int sq_upload_count_from(struct metastore *ms, const char *source, int64_t now_s,
                         int64_t *n, struct err *e)
{
    struct sq_conn *c = sq_conn_of(ms, e);
    if (c == NULL)
        return -1;
    return count_from(c, source, now_s, n, e);
}

int sq_upload_delete(struct metastore *ms, const char *id, struct err *e)
{
    struct sq_conn *c = sq_conn_of(ms, e);
    if (c == NULL)
        return -1;
    sq_autocommit_lock(c);
    int rc = sq_exec(c, SQ_UPLOAD_DELETE, e, "t", id);
    sq_autocommit_unlock(c);
    if (rc != 0)
        return -1;
    if (sql_changes(c->db) == 0)
        return err_set(e, ERR_BLOB_UPLOAD_UNKNOWN, NULL);
    return 0;
}

int sq_upload_list_expired(struct metastore *ms, int64_t now_s,
                           struct meta_name_list *out, struct err *e)
{
    memset(out, 0, sizeof(*out));
    struct sq_conn *c = sq_conn_of(ms, e);
    if (c == NULL)
        return -1;
    struct sql_stmt *s;
    int rc = sq_query(c, SQ_UPLOAD_EXPIRED, &s, e, "i", now_s);
    if (rc < 0)
        return -1;
    return sq_collect_names(c, s, rc, -1, out, e);
}

/* A session's claim is a session-level advisory lock keyed by the first 60 bits of its id
 * (random hex): below 2^60, so never one of the fixed keys (migrations, writers, GC
 * fence: all above 2^62). Only the calling thread's connection holds it, and the
 * server drops it with the connection: a node killed mid-request frees its sessions. */
int sq_upload_claim(struct metastore *ms, const char *id, bool is_claim, bool *is_held,
                    struct err *e)
{
    *is_held = is_claim;
    struct sq_store *st = (struct sq_store *)ms;
    if (st->drv->dialect == SQL_DIALECT_SQLITE)
        return 0;
    char prefix[16];
    snprintf(prefix, sizeof(prefix), "%.15s", id);
    int64_t key = (int64_t)strtoull(prefix, NULL, 16);
    struct sq_conn *c = sq_conn_of(ms, e);
    if (c == NULL)
        return -1;
    struct sql_stmt *s;
    int rc = sq_run(c, is_claim ? "SELECT CASE WHEN pg_try_advisory_lock(?1) THEN 1 ELSE 0 END"
                                : "SELECT CASE WHEN pg_advisory_unlock(?1) THEN 1 ELSE 0 END",
                    &s, e, "i", key);
    if (rc < 0)
        return -1;
    bool is_ok = rc == SQL_ROW && sql_col_int64(s, 0) == 1;
    sql_finalize(s);
    if (is_claim)
        *is_held = is_ok;
    else if (!is_ok) /* the connection was made again since: the server dropped it then */
        log_warn("uploads", "upload session %s was no longer claimed when given up", id);
    return 0;
}
