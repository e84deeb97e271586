/* Repositories and blobs, backend-neutral: the repository rows, blob records and their
 * links to repositories, orphan detection, the repository listing, and the scrub's view
 * (all blobs, a blob found lost). */
#include "metastore.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "buf.h"
#include "log.h"
#include "metastore_sqlite_int.h"
#include "util.h"

/* Repositories ------------------------------------------------------------ */

/* 0 and *id if repo exists, 1 if not, -1 on error. */
int sq_repo_find(struct sq_conn *c, const char *repo, int64_t *id, struct err *e)
{
    struct sql_stmt *s;
    int rc = sq_query(c, SQ_REPO_ID, &s, e, "t", repo);
    if (rc < 0)
        return -1;
    if (rc == SQL_ROW)
        *id = sql_col_int64(s, 0);
    sq_stmt_done(s);
    return rc == SQL_ROW ? 0 : 1;
}

/* Creates repo's row on first use (inside a write transaction). */
int sq_repo_ensure(struct sq_conn *c, const char *repo, int64_t *id, struct err *e)
{
    if (sq_exec(c, SQ_REPO_INSERT, e, "t", repo) != 0)
        return -1;
    int rc = sq_repo_find(c, repo, id, e);
    if (rc > 0) {
        log_error("metastore", "failed to find repository %s right after creating it", repo);
        return err_set(e, ERR_INTERNAL, NULL);
    }
    return rc;
}

/* Blobs ------------------------------------------------------------------- */

int sq_blob_link(struct metastore *ms, const char *repo, const struct digest *d, uint64_t size,
                 struct err *e)
{
    AN(repo);
    AN(d);
    if (size > (uint64_t)INT64_MAX)
        return err_set(e, ERR_SIZE_INVALID, NULL);
    struct sq_conn *c = sq_conn_of(ms, e);
    if (c == NULL)
        return -1;
    struct buf payload;
    buf_init(&payload, SQ_PAYLOAD_MAX_BYTES);
    int64_t repo_id;

    if (sq_tx_begin(c, true, e) != 0)
        goto out;
    if (sq_repo_ensure(c, repo, &repo_id, e) != 0)
        goto fail;
    if (sq_exec(c, SQ_BLOB_INSERT, e, "ti", d->str, (int64_t)size) != 0)
        goto fail;
    if (sq_exec(c, SQ_LINK_INSERT, e, "it", repo_id, d->str) != 0)
        goto fail;
    /* A new link queues the blob for GC review (schema trigger); linking again what is
     * linked (an upload or fetch finished anew) restarts its grace the same way, queued
     * again if a review took it off, so that the manifest that follows finds it (the
     * stamp is also the link time a release reads: meta_versions.c). */
    bool is_new_link = sql_changes(c->db) > 0;
    if (!is_new_link &&
        sq_run_exec(c, "INSERT INTO gc_queue(digest, queued_ms) VALUES (?1, ?2)"
                       " ON CONFLICT(digest) DO UPDATE SET queued_ms = excluded.queued_ms",
                    e, "ti", d->str, util_now_ms()) != 0)
        goto fail;
    /* Linking what is already linked changes nothing and logs nothing. */
    if (is_new_link) {
        buf_printf(&payload, "{\"size\":%" PRIu64 "}", size);
        if (sq_payload_check(&payload, e) != 0)
            goto fail;
        if (sq_event_append(c, "blob_link", repo, NULL, d->str, payload.data, e) != 0)
            goto fail;
    }
    if (sq_tx_commit(c, e) != 0)
        goto out;
    buf_fini(&payload);
    return 0;

fail:
    sq_tx_rollback(c);
out:
    buf_fini(&payload);
    return -1;
}

int sq_blob_get(struct metastore *ms, const char *repo, const struct digest *d, uint64_t *size,
                struct err *e)
{
    struct sq_conn *c = sq_conn_of(ms, e);
    if (c == NULL)
        return -1;
    struct sql_stmt *s;
    int rc = sq_query(c, SQ_LINK_GET, &s, e, "tt", repo, d->str);
    if (rc < 0)
        return -1;
    if (rc == SQL_ROW)
        *size = (uint64_t)sql_col_int64(s, 0);
    sq_stmt_done(s);
    if (rc != SQL_ROW)
        return err_set(e, ERR_BLOB_UNKNOWN, NULL);
    return 0;
}

int sq_blob_find(struct metastore *ms, const struct digest *d, uint64_t *size, struct err *e)
{
    struct sq_conn *c = sq_conn_of(ms, e);
    if (c == NULL)
        return -1;
    struct sql_stmt *s;
    int rc = sq_query(c, SQ_BLOB_SIZE, &s, e, "t", d->str);
    if (rc < 0)
        return -1;
    if (rc == SQL_ROW)
        *size = (uint64_t)sql_col_int64(s, 0);
    sq_stmt_done(s);
    if (rc != SQL_ROW)
        return err_set(e, ERR_BLOB_UNKNOWN, NULL);
    return 0;
}

/* 0 when no manifest of repo_id references digest; else -1 with ERR_IN_USE naming one. */
int sq_referenced_by(struct sq_conn *c, int64_t repo_id, const char *digest, struct err *e)
{
    struct sql_stmt *s;
    int rc = sq_query(c, SQ_REFERENCED_BY, &s, e, "it", repo_id, digest);
    if (rc < 0)
        return -1;
    if (rc == SQL_ROW)
        err_set(e, ERR_IN_USE, "%s is referenced by manifest %s; delete that first", digest,
                sql_col_text(s, 0));
    sq_stmt_done(s);
    return rc == SQL_ROW ? -1 : 0;
}

int sq_blob_unlink(struct metastore *ms, const char *repo, const struct digest *d, bool *is_orphan,
                   struct err *e)
{
    struct sq_conn *c = sq_conn_of(ms, e);
    if (c == NULL)
        return -1;
    int64_t repo_id;
    struct sql_stmt *s;
    bool is_used = true;

    if (sq_tx_begin(c, true, e) != 0)
        return -1;
    int rc = sq_repo_find(c, repo, &repo_id, e);
    if (rc != 0) {
        if (rc > 0)
            err_set(e, ERR_BLOB_UNKNOWN, NULL);
        goto fail;
    }
    /* Visible means pullable: a blob a manifest of the repository needs stays. */
    if (sq_referenced_by(c, repo_id, d->str, e) != 0)
        goto fail;
    if (sq_exec(c, SQ_LINK_DELETE, e, "it", repo_id, d->str) != 0)
        goto fail;
    if (sql_changes(c->db) == 0) {
        err_set(e, ERR_BLOB_UNKNOWN, NULL);
        goto fail;
    }
    /* Orphan: linked in no repository and referenced by no manifest anywhere. */
    rc = sq_query(c, SQ_BLOB_IS_USED, &s, e, "t", d->str);
    if (rc < 0)
        goto fail;
    is_used = rc == SQL_ROW && (int)sql_col_int64(s, 0) != 0;
    sq_stmt_done(s);
    if (!is_used && sq_exec(c, SQ_BLOB_DELETE, e, "t", d->str) != 0)
        goto fail;
    if (sq_event_append(c, "blob_unlink", repo, NULL, d->str,
                        is_used ? "{\"is_orphan\":false}" : "{\"is_orphan\":true}", e) != 0)
        goto fail;
    if (sq_tx_commit(c, e) != 0)
        return -1;
    if (is_orphan != NULL)
        *is_orphan = !is_used;
    return 0;

fail:
    sq_tx_rollback(c);
    return -1;
}

int sq_repo_list(struct metastore *ms, const char *last, long n, struct meta_name_list *out,
                 struct err *e)
{
    memset(out, 0, sizeof(*out));
    struct sq_conn *c = sq_conn_of(ms, e);
    if (c == NULL)
        return -1;
    if (n == 0)
        return 0;
    struct sql_stmt *s;
    int rc = sq_query(c, SQ_REPO_LIST, &s, e, "ti", last != NULL ? last : "", sq_page_limit(n));
    if (rc < 0)
        return -1;
    return sq_collect_names(c, s, rc, n, out, e);
}

int sq_blob_list_all(struct metastore *ms, struct meta_name_list *out, struct err *e)
{
    memset(out, 0, sizeof(*out));
    struct sq_conn *c = sq_conn_of(ms, e);
    if (c == NULL)
        return -1;
    struct sql_stmt *s;
    int rc = sq_query(c, SQ_ALL_BLOBS, &s, e, "");
    if (rc < 0)
        return -1;
    for (int row = rc == SQL_ROW; row == 1; row = sq_next_row(c, s, e)) {
        out->names = xrealloc(out->names, (out->n + 1) * sizeof(char *));
        out->names[out->n++] = sq_col_strdup(s, 0);
    }
    sq_stmt_done(s);
    return 0;
}

/* Appends to l the (repo, digest) pairs the query id returns (bound to a, and b unless
 * NULL), but those in l already. */
static int add_pairs(struct sq_conn *c, enum sq_stmt id, const char *a, const char *b,
                     struct meta_name_list *l, struct err *e)
{
    struct meta_name_list got = {0};
    struct sql_stmt *s;
    int rc = b != NULL ? sq_query(c, id, &s, e, "tt", a, b) : sq_query(c, id, &s, e, "t", a);
    if (rc < 0)
        return -1;
    rc = sq_collect_columns(c, s, rc, 2, &got, e);
    sq_stmt_done(s);
    if (rc != 0)
        return -1;
    for (size_t i = 0; i + 1 < got.n; i += 2) {
        bool is_in = false;
        for (size_t j = 0; j + 1 < l->n && !is_in; j += 2)
            is_in = strcmp(l->names[j], got.names[i]) == 0 &&
                    strcmp(l->names[j + 1], got.names[i + 1]) == 0;
        if (is_in)
            continue;
        l->names = xrealloc(l->names, (l->n + 2) * sizeof(char *));
        l->names[l->n++] = got.names[i];
        l->names[l->n++] = got.names[i + 1];
        got.names[i] = got.names[i + 1] = NULL;
    }
    meta_name_list_fini(&got);
    return 0;
}

int sq_blob_lost(struct metastore *ms, const struct digest *d, size_t *n_manifests, struct err *e)
{
    *n_manifests = 0;
    struct sq_conn *c = sq_conn_of(ms, e);
    if (c == NULL)
        return -1;
    if (sq_tx_begin(c, true, e) != 0)
        return -1;
    /* Each manifest hidden here was reported Completed by this region: it reports Pending
     * again in the same transaction, or every region (this one too: its row) would go on
     * showing it Completed, and image-version wait would return, while it is not pullable
     * here until the fetch workers bring the blob back (their status follows this one). */
    struct meta_name_list shown = {0};
    if (add_pairs(c, SQ_BLOB_LOST_SHOWN, d->str, NULL, &shown, e) != 0)
        goto fail;
    size_t n_direct = shown.n;
    if (sq_exec(c, SQ_BLOB_LOST_HIDE, e, "t", d->str) != 0)
        goto fail;
    /* An index (or an index of indexes) is visible only when its children are (visible
     * means pullable): those shown over a manifest hidden here are hidden too, and wait
     * for the fetch workers with it. */
    for (size_t i = 0; i + 1 < shown.n; i += 2) {
        if ((i >= n_direct &&
             sq_exec(c, SQ_MANIFEST_HIDE, e, "tt", shown.names[i], shown.names[i + 1]) != 0) ||
            add_pairs(c, SQ_PARENTS_SHOWN, shown.names[i], shown.names[i + 1], &shown, e) != 0)
            goto fail;
    }
    *n_manifests = shown.n / 2;
    char details[DIGEST_STR_MAX + 64];
    snprintf(details, sizeof(details), "blob %s lost here: fetching it again", d->str);
    struct meta_status pending = {.region = c->store->region,
                                  .state = "Pending",
                                  .updated_ms = util_now_ms(),
                                  .details = details};
    for (size_t i = 0; i + 1 < shown.n; i += 2) {
        if (sq_status_write(c, shown.names[i], shown.names[i + 1], &pending, true, e) != 0)
            goto fail;
    }
    if (sq_exec(c, SQ_BLOB_LOST_UNLINK, e, "t", d->str) != 0 ||
        sq_exec(c, SQ_BLOB_DELETE, e, "t", d->str) != 0)
        goto fail;
    meta_name_list_fini(&shown);
    return sq_tx_commit(c, e);
fail:
    meta_name_list_fini(&shown);
    sq_tx_rollback(c);
    return -1;
}
