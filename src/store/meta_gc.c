/* Garbage collection's metadata half and storage accounting, backend-neutral.
 *
 * Reference counting, not mark-and-sweep: a blob is needed while a pending or visible
 * manifest names it (manifest_refs, indexed by ref_digest) and is usable in a
 * repository while linked to it (repo_blobs). The schema's triggers (schema/sqlite/
 * v5_gc.sql) put a digest in gc_queue whenever one of its references goes or a link is
 * added, stamped with that time; the collector reviews only queued digests whose stamp
 * is older than the grace period, a few at a time in one short write transaction (one
 * sync for the lot), so it never holds the writer for long and its work per tick is
 * bounded by the number it asks for.
 *
 * Everything here is local to the region: no event is logged. Links are not part of
 * the replicated state (anti-entropy's digests cover manifests and tags), and the bytes
 * a region holds are its own business (placement decides the rest). */
#include "metastore.h"

#include <stdlib.h>
#include <string.h>

#include "metastore_sqlite_int.h"
#include "util.h"

/* A manifest that is pending (0) or visible (1) here needs its blobs' bytes here; one not
 * held (2) does not (meta_versions.c). */
static const char needed_anywhere_sql[] =
    "SELECT 1 FROM manifest_refs r JOIN manifests m ON m.repo_id = r.repo_id"
    " AND m.digest = r.manifest_digest WHERE r.ref_digest = ?1 AND m.is_visible IN (0, 1)"
    " LIMIT 1";
/* Links of the digest in repositories none of whose held manifests name it. */
static const char stale_links_sql[] =
    "DELETE FROM repo_blobs WHERE digest = ?1 AND NOT EXISTS (SELECT 1 FROM manifest_refs r"
    " JOIN manifests m ON m.repo_id = r.repo_id AND m.digest = r.manifest_digest"
    " WHERE r.repo_id = repo_blobs.repo_id AND r.ref_digest = ?1 AND m.is_visible IN (0, 1))";

int sq_gc_due(struct metastore *ms, int64_t cutoff_ms, const char *after, size_t max,
              struct meta_name_list *out, struct err *e)
{
    static const char sql[] = "SELECT digest FROM gc_queue WHERE queued_ms <= ?1"
                              " AND digest > ?2 ORDER BY digest LIMIT ?3";
    memset(out, 0, sizeof(*out));
    struct sq_conn *c = sq_conn_of(ms, e);
    if (c == NULL)
        return -1;
    struct sql_stmt *s;
    int rc = sq_run(c, sql, &s, e, "iti", cutoff_ms, after != NULL ? after : "",
                    (int64_t)max + 1);
    if (rc < 0)
        return -1;
    rc = sq_collect_names(c, s, rc, (long)max, out, e);
    sql_finalize(s);
    return rc;
}

/* 1 if the query returns a row, 0 if not, -1 on error (column 0 into *v when non-NULL). */
static int one_int(struct sq_conn *c, const char *sql, const char *digest, int64_t *v,
                   struct err *e)
{
    struct sql_stmt *s;
    int rc = sq_run(c, sql, &s, e, "t", digest);
    if (rc < 0)
        return -1;
    if (rc == SQL_ROW && v != NULL)
        *v = sql_col_int64(s, 0);
    sql_finalize(s);
    return rc == SQL_ROW;
}

/* Reviews one digest inside the caller's transaction. */
static int review(struct sq_conn *c, const char *digest, int64_t cutoff_ms, bool *is_orphan,
                  int64_t *size_bytes, struct err *e)
{
    *is_orphan = false;
    *size_bytes = 0;
    int64_t queued_ms = 0;
    int rc = one_int(c, "SELECT queued_ms FROM gc_queue WHERE digest = ?1", digest, &queued_ms, e);
    if (rc < 0)
        return -1;
    /* Gone from the queue or changed since it was listed: a later review decides. */
    if (rc == 0 || queued_ms > cutoff_ms)
        return 0;
    if (sq_run_exec(c, stale_links_sql, e, "t", digest) != 0)
        return -1;
    int is_needed = one_int(c, needed_anywhere_sql, digest, NULL, e);
    if (is_needed < 0)
        return -1;
    int is_linked =
        is_needed ? 1 : one_int(c, "SELECT 1 FROM repo_blobs WHERE digest = ?1", digest, NULL, e);
    if (is_linked < 0)
        return -1;
    if (!is_needed && !is_linked) {
        rc = one_int(c, "SELECT size FROM blobs WHERE digest = ?1", digest, size_bytes, e);
        if (rc < 0)
            return -1;
        /* A child manifest's digest is queued too; it has no blob record. */
        *is_orphan = rc == 1;
        if (*is_orphan && sq_run_exec(c, "DELETE FROM blobs WHERE digest = ?1", e, "t", digest) != 0)
            return -1;
    }
    return sq_run_exec(c, "DELETE FROM gc_queue WHERE digest = ?1", e, "t", digest);
}

int sq_gc_collect(struct metastore *ms, const char *const *digests, size_t n, int64_t cutoff_ms,
                  bool is_dry_run, bool *is_orphan, int64_t *size_bytes, struct err *e)
{
    memset(is_orphan, 0, n * sizeof(*is_orphan));
    struct sq_conn *c = sq_conn_of(ms, e);
    if (c == NULL || sq_tx_begin(c, true, e) != 0)
        return -1;
    for (size_t i = 0; i < n; i++)
        if (review(c, digests[i], cutoff_ms, &is_orphan[i], &size_bytes[i], e) != 0)
            goto fail;
    if (is_dry_run) {
        sq_tx_rollback(c);
        return 0;
    }
    if (sq_tx_commit(c, e) == 0)
        return 0;
fail:
    memset(is_orphan, 0, n * sizeof(*is_orphan));
    sq_tx_rollback(c);
    return -1;
}

int sq_gc_queue_length(struct metastore *ms, int64_t cutoff_ms, int64_t *n_queued, int64_t *n_due,
                       struct err *e)
{
    struct sq_conn *c = sq_conn_of(ms, e);
    return c == NULL ? -1 : sq_count_due(c, "gc_queue", "queued_ms", cutoff_ms, n_queued, n_due, e);
}

void meta_usage_list_fini(struct meta_usage_list *l)
{
    if (l == NULL)
        return;
    for (size_t i = 0; i < l->n; i++)
        free(l->items[i].repo);
    free(l->items);
    memset(l, 0, sizeof(*l));
}

int sq_storage_usage(struct metastore *ms, struct meta_usage_list *out, struct err *e)
{
    static const char per_repo_sql[] =
        "SELECT r.name, coalesce(sum(CASE WHEN n.links = 1 THEN b.size ELSE 0 END), 0),"
        " coalesce(sum(CASE WHEN n.links > 1 THEN b.size ELSE 0 END), 0), count(*)"
        " FROM repos r JOIN repo_blobs rb ON rb.repo_id = r.id"
        " JOIN blobs b ON b.digest = rb.digest"
        " JOIN (SELECT digest, count(*) AS links FROM repo_blobs GROUP BY digest) n"
        " ON n.digest = rb.digest GROUP BY r.name ORDER BY r.name";
    memset(out, 0, sizeof(*out));
    struct sq_conn *c = sq_conn_of(ms, e);
    if (c == NULL || sq_tx_begin(c, false, e) != 0)
        return -1;
    struct sql_stmt *s;
    int rc = sq_run(c, per_repo_sql, &s, e, "");
    if (rc < 0)
        goto fail;
    for (int row = rc == SQL_ROW; row == 1; row = sq_next_row(c, s, e)) {
        out->items = xrealloc(out->items, (out->n + 1) * sizeof(out->items[0]));
        struct meta_usage *u = &out->items[out->n++];
        u->repo = sq_col_strdup(s, 0);
        u->unique_bytes = sql_col_int64(s, 1);
        u->shared_bytes = sql_col_int64(s, 2);
        u->n_blobs = sql_col_int64(s, 3);
    }
    sql_finalize(s);
    rc = sq_run(c, "SELECT coalesce(sum(size), 0) FROM blobs", &s, e, "");
    if (rc < 0)
        goto fail;
    out->total_bytes = rc == SQL_ROW ? sql_col_int64(s, 0) : 0;
    sql_finalize(s);
    sq_tx_rollback(c); /* a read transaction: one consistent view, nothing to commit */
    return 0;
fail:
    sq_tx_rollback(c);
    meta_usage_list_fini(out);
    return -1;
}

int sq_repo_bytes(struct metastore *ms, const char *repo, int64_t *bytes, struct err *e)
{
    static const char sql[] = "SELECT coalesce(sum(b.size), 0) FROM repos r"
                              " JOIN repo_blobs rb ON rb.repo_id = r.id"
                              " JOIN blobs b ON b.digest = rb.digest WHERE r.name = ?1";
    struct sq_conn *c = sq_conn_of(ms, e);
    if (c == NULL)
        return -1;
    struct sql_stmt *s;
    int rc = sq_run(c, sql, &s, e, "t", repo);
    if (rc < 0)
        return -1;
    *bytes = rc == SQL_ROW ? sql_col_int64(s, 0) : 0;
    sql_finalize(s);
    return 0;
}
