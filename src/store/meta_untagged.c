/* Untagged manifests: the collector's metadata half, backend-neutral (metastore.h,
 * "Untagged manifests"). The table `untagged` (schema step v6_untagged, kept by
 * triggers) stamps each manifest with the time it lost its last tag, so the collector
 * reads only the rows past the grace. Whether something else keeps a manifest is
 * decided inside the write transaction that deletes it, so a tag, an index or a referrer
 * written concurrently (writers are serialized on both backends) either comes first and
 * keeps it, or comes after and finds it gone (an index push then answers
 * MANIFEST_BLOB_UNKNOWN: nothing half-made).
 *
 * Geo-replication: the delete is an ordinary tombstone and its event, marked {"gc":true}.
 * A region that applies it while something keeps the manifest there does not delete it:
 * it puts the manifest again with a newer clock (a manifest_put event), which beats the
 * tombstone in every region, so a tag written concurrently anywhere keeps its image. */
#include "metastore.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "hlc.h"
#include "log.h"
#include "metastore_sqlite_int.h"
#include "util.h"

/* Marks the tombstone of (repo, digest) as the collector's if (hlc, origin) is the one
 * that won (the mark travels with it in anti-entropy's records, meta_state.c). */
static int mark_gc(struct sq_conn *c, const char *repo, const char *digest, int64_t hlc,
                   const char *origin, struct err *e)
{
    return sq_exec(c, SQ_TOMB_MARK_GC, e, "ttit", repo, digest, hlc, origin);
}

void meta_untagged_list_fini(struct meta_untagged_list *l)
{
    if (l == NULL)
        return;
    for (size_t i = 0; i < l->n; i++) {
        free(l->items[i].repo);
        free(l->items[i].digest);
    }
    free(l->items);
    memset(l, 0, sizeof(*l));
}

int sq_untagged_due(struct metastore *ms, int64_t cutoff_ms, const char *owner,
                    int64_t after_repo_id, const char *after_digest, size_t max,
                    struct meta_untagged_list *out, struct err *e)
{
    static const char sql[] =
        "SELECT u.repo_id, r.name, u.digest, u.since_ms FROM untagged u"
        " JOIN manifests m ON m.repo_id = u.repo_id AND m.digest = u.digest"
        " JOIN repos r ON r.id = u.repo_id"
        " WHERE u.since_ms <= ?1 AND (m.origin = ?2 OR m.origin = '') AND m.is_visible IN (1, 2)"
        " AND (u.repo_id > ?3 OR (u.repo_id = ?3 AND u.digest > ?4))"
        " ORDER BY u.repo_id, u.digest LIMIT ?5";
    memset(out, 0, sizeof(*out));
    struct sq_conn *c = sq_conn_of(ms, e);
    if (c == NULL)
        return -1;
    struct sql_stmt *s;
    int rc = sq_run(c, sql, &s, e, "ititi", cutoff_ms, owner, after_repo_id,
                    after_digest != NULL ? after_digest : "", (int64_t)max + 1);
    if (rc < 0)
        return -1;
    int row = rc == SQL_ROW;
    for (; row == 1; row = sq_next_row(c, s, e)) {
        if (out->n == max) {
            out->has_more = true;
            break;
        }
        out->items = xrealloc(out->items, (out->n + 1) * sizeof(out->items[0]));
        struct meta_untagged *u = &out->items[out->n++];
        memset(u, 0, sizeof(*u));
        u->repo_id = sql_col_int64(s, 0);
        u->repo = sq_col_strdup(s, 1);
        u->digest = sq_col_strdup(s, 2);
        u->since_ms = sql_col_int64(s, 3);
    }
    sql_finalize(s);
    if (row < 0) {
        meta_untagged_list_fini(out);
        return -1;
    }
    return 0;
}

/* 1 if cached statement id over (repo_id, digest) returns a row, 0 if not, -1 on error;
 * columns 0 and 1 into *v0, *v1 when non-NULL. */
static int one_row(struct sq_conn *c, enum sq_stmt id, int64_t repo_id, const char *digest,
                   int64_t *v0, int64_t *v1, struct err *e)
{
    struct sql_stmt *s;
    int rc = sq_query(c, id, &s, e, "it", repo_id, digest);
    if (rc < 0)
        return -1;
    if (rc == SQL_ROW && v0 != NULL)
        *v0 = sql_col_int64(s, 0);
    if (rc == SQL_ROW && v1 != NULL)
        *v1 = sql_col_int64(s, 1);
    sq_stmt_done(s);
    return rc == SQL_ROW;
}

/* Decides one item inside the caller's write transaction. */
static int review(struct sq_conn *c, struct meta_untagged *u, struct err *e)
{
    u->is_deleted = false;
    int64_t since_ms = 0, is_visible = 0;
    int rc = one_row(c, SQ_UNTAGGED_REVIEW, u->repo_id, u->digest, &since_ms, &is_visible, e);
    /* Tagged again, deleted, or touched since it was listed: a later review decides.
     * Pending (content on its way): not decided yet. */
    if (rc <= 0 || since_ms > u->cutoff_ms || is_visible == 0)
        return rc < 0 ? -1 : 0;
    rc = one_row(c, SQ_UNTAGGED_KEPT, u->repo_id, u->digest, NULL, NULL, e);
    if (rc != 0)
        return rc < 0 ? -1 : 0;
    int64_t hlc = sq_hlc_next(c);
    if (sq_tomb_merge(c, u->repo_id, u->repo, u->digest, hlc, c->store->region, e) != 0 ||
        mark_gc(c, u->repo, u->digest, hlc, c->store->region, e) != 0 ||
        sq_event_append_clock(c, "manifest_delete", u->repo, NULL, u->digest, SQ_GC_TOMB_PAYLOAD,
                              hlc, e) != 0)
        return -1;
    u->is_deleted = true;
    return 0;
}

int sq_untagged_collect(struct metastore *ms, struct meta_untagged *items, size_t n,
                        bool is_dry_run, struct err *e)
{
    for (size_t i = 0; i < n; i++)
        items[i].is_deleted = false;
    struct sq_conn *c = sq_conn_of(ms, e);
    if (c == NULL || sq_tx_begin(c, true, e) != 0)
        return -1;
    for (size_t i = 0; i < n; i++)
        if (review(c, &items[i], e) != 0)
            goto fail;
    if (is_dry_run) {
        sq_tx_rollback(c);
        return 0;
    }
    if (sq_tx_commit(c, e) == 0)
        return 0;
fail:
    for (size_t i = 0; i < n; i++)
        items[i].is_deleted = false;
    sq_tx_rollback(c);
    return -1;
}

int sq_untagged_count(struct metastore *ms, int64_t cutoff_ms, int64_t *n_untagged, int64_t *n_due,
                      struct err *e)
{
    struct sq_conn *c = sq_conn_of(ms, e);
    return c == NULL ? -1 : sq_count_due(c, "untagged", "since_ms", cutoff_ms, n_untagged, n_due, e);
}

int sq_untagged_touch(struct sq_conn *c, int64_t repo_id, const char *digest, struct err *e)
{
    return sq_exec(c, SQ_UNTAGGED_TOUCH, e, "iti", repo_id, digest, util_now_ms());
}

bool sq_is_gc_tomb(const char *payload)
{
    json_error_t je;
    json_t *p = payload != NULL ? json_loads(payload, 0, &je) : NULL;
    bool is_gc = json_is_true(json_object_get(p, "gc"));
    json_decref(p);
    return is_gc;
}

int sq_untagged_tomb_merge(struct sq_conn *c, int64_t repo_id, const char *repo, const char *digest,
                           int64_t hlc, const char *origin, struct err *e)
{
    /* Only a tombstone that would delete the manifest here (later than its put) matters. */
    struct sql_stmt *cs;
    int rc = sq_query(c, SQ_MANIFEST_CLOCK, &cs, e, "it", repo_id, digest);
    if (rc < 0)
        return -1;
    bool would_delete =
        rc == SQL_ROW && hlc_lww_wins((uint64_t)hlc, origin, (uint64_t)sql_col_int64(cs, 0),
                                      (const char *)sql_col_text(cs, 1));
    sq_stmt_done(cs);
    int is_kept = would_delete ? one_row(c, SQ_UNTAGGED_KEPT, repo_id, digest, NULL, NULL, e) : 0;
    if (is_kept < 0)
        return -1;
    if (is_kept == 0)
        return sq_tomb_merge(c, repo_id, repo, digest, hlc, origin, e) != 0
                   ? -1
                   : mark_gc(c, repo, digest, hlc, origin, e);
    /* Kept here by a write the collecting region had not seen. The tombstone is recorded
     * (it still orders older puts) and the manifest put again, later than it. */
    struct sql_stmt *s;
    rc = sq_query(c, SQ_TOMB_GET, &s, e, "tt", repo, digest);
    if (rc < 0)
        return -1;
    bool wins = rc != SQL_ROW || hlc_lww_wins((uint64_t)hlc, origin, (uint64_t)sql_col_int64(s, 0),
                                              sql_col_text(s, 1));
    sq_stmt_done(s);
    if (wins && (sq_exec(c, SQ_TOMB_SET, e, "ttit", repo, digest, hlc, origin) != 0 ||
                 mark_gc(c, repo, digest, hlc, origin, e) != 0))
        return -1;
    int64_t put_hlc = sq_hlc_next(c);
    if (sq_exec(c, SQ_MANIFEST_SET_CLOCK, e, "itit", repo_id, digest, put_hlc, c->store->region) !=
            0 ||
        sq_event_append_clock(c, "manifest_put", repo, NULL, digest, NULL, put_hlc, e) != 0 ||
        sq_status_announce_own_again(c, repo_id, repo, digest, e) != 0)
        return -1;
    log_info("gc", "kept manifest %s@%s that %s collected: something here keeps it; put again",
             repo, digest, origin);
    return 0;
}
