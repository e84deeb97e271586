/* Metadata logic: placement of image versions (filtered replication, docs/image-versions.md).
 * Which regions hold a version is decided above (image_version.c's rules over the replicated
 * records); this file keeps the region-local consequence in the manifests table's
 * is_visible column, which gains a third value (no schema step: the column and its partial
 * index of pending rows exist since version 2):
 *
 *   0 pending  --manifest_place(held=false)-->  2 not held (recorded, never fetched)
 *   2          --manifest_place(held=true)--->  0 (the fetch workers bring the content)
 *   2          --a tag naming it merged-------->  0 (it may have an owner now: the fetch
 *                                                   workers place it again, meta_merge.c)
 *   0          --pending_complete / show_shallow->  1; they refuse a row that went to 2
 *                                                   while its content was being fetched
 *   1 visible  --manifest_release---------->    2, and its blob links here go
 *
 * Every reader of is_visible asks "= 1" (visible) or "= 0" (pending), so a not-held
 * manifest is neither served nor fetched, yet known (image-version show, anti-entropy:
 * the state digests cover recorded manifests and tag registers, the same in every region
 * whatever each holds). The statements are prepared per call, like the deliveries'.
 *
 * A not-held row keeps no manifest bytes: going to 2 empties its body (digest, media type,
 * size and references stay, which is what the state digests and the fetch queue use), so
 * the events derived from it are relayed without a body (meta_payload.c) and a region that
 * becomes a target fetches the document from a holder (manifest_body_set). */

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "body_pack.h"
#include "metastore_sqlite_int.h"
#include "util.h"

#define PLACE_PENDING 0
#define PLACE_VISIBLE 1
#define PLACE_NOT_HELD 2

/* The two integers sql (?1 the repository, ?2 the digest) selects of repo@digest;
 * ERR_MANIFEST_UNKNOWN if not recorded. */
static int manifest_ints(struct sq_conn *c, const char *sql, const char *repo, const char *digest,
                         int64_t *a, int64_t *b, struct err *e)
{
    struct sql_stmt *s;
    int rc = sq_run(c, sql, &s, e, "tt", repo, digest);
    if (rc < 0)
        return -1;
    if (rc == SQL_ROW) {
        *a = sql_col_int64(s, 0);
        *b = sql_col_int64(s, 1);
    }
    sql_finalize(s);
    if (rc != SQL_ROW)
        return err_set(e, ERR_MANIFEST_UNKNOWN, "%s is not recorded in %s", digest, repo);
    return 0;
}

/* repo_id and is_visible of repo@digest; ERR_MANIFEST_UNKNOWN if not recorded. */
static int state_of(struct sq_conn *c, const char *repo, const char *digest, int64_t *repo_id,
                    int64_t *state, struct err *e)
{
    return manifest_ints(c,
                         "SELECT m.repo_id, m.is_visible FROM repos r JOIN manifests m"
                         " ON m.repo_id = r.id WHERE r.name = ?1 AND m.digest = ?2",
                         repo, digest, repo_id, state, e);
}

static int set_state(struct sq_conn *c, int64_t repo_id, const char *digest, int64_t state,
                     struct err *e)
{
    if (state == PLACE_NOT_HELD)
        return sq_run_exec(c, "UPDATE manifests SET is_visible = ?3, body = ?4"
                              " WHERE repo_id = ?1 AND digest = ?2",
                           e, "itib", repo_id, digest, state, (const void *)"", (size_t)0);
    return sq_run_exec(c, "UPDATE manifests SET is_visible = ?3 WHERE repo_id = ?1 AND digest = ?2",
                       e, "iti", repo_id, digest, state);
}

int sq_manifest_place(struct metastore *ms, const char *repo, const struct digest *d, bool is_held,
                      const struct meta_status *on_pending, enum meta_placement *before,
                      struct err *e)
{
    struct sq_conn *c = sq_conn_of(ms, e);
    if (c == NULL || sq_tx_begin(c, true, e) != 0)
        return -1;
    int64_t repo_id = 0, state = 0;
    if (state_of(c, repo, d->str, &repo_id, &state, e) != 0)
        goto fail;
    *before = state == PLACE_VISIBLE    ? META_PLACEMENT_VISIBLE
              : state == PLACE_NOT_HELD ? META_PLACEMENT_NOT_HELD
                                        : META_PLACEMENT_PENDING;
    if (is_held && state == PLACE_NOT_HELD &&
        (set_state(c, repo_id, d->str, PLACE_PENDING, e) != 0 ||
         (on_pending != NULL && sq_status_write(c, repo, d->str, on_pending, true, e) != 0)))
        goto fail;
    if (!is_held && state == PLACE_PENDING && set_state(c, repo_id, d->str, PLACE_NOT_HELD, e) != 0)
        goto fail;
    return sq_tx_commit(c, e);
fail:
    sq_tx_rollback(c);
    return -1;
}

/* 1 if the query (bound to "it": repo_id, digest, or "t": digest) returns a row. */
static int exists(struct sq_conn *c, const char *sql, const char *fmt, int64_t repo_id,
                  const char *digest, struct err *e)
{
    struct sql_stmt *s;
    int rc = fmt[0] == 'i' ? sq_run(c, sql, &s, e, fmt, repo_id, digest)
                           : sq_run(c, sql, &s, e, fmt, digest);
    if (rc < 0)
        return -1;
    sql_finalize(s);
    return rc == SQL_ROW;
}

int sq_manifest_release(struct metastore *ms, const char *repo, const struct digest *d,
                        struct meta_name_list *orphans, struct err *e)
{
    static const char refs_sql[] = "SELECT ref_digest FROM manifest_refs WHERE repo_id = ?1"
                                   " AND manifest_digest = ?2 AND is_manifest = 0";
    /* another visible manifest of the repository needs the blob here */
    static const char used_here_sql[] =
        "SELECT 1 FROM manifest_refs r JOIN manifests m ON m.repo_id = r.repo_id"
        " AND m.digest = r.manifest_digest WHERE r.repo_id = ?1 AND r.ref_digest = ?2"
        " AND m.is_visible = 1 LIMIT 1";
    /* Linked again since the manifest was pushed here: a client uploaded the blob anew,
     * likely for a version whose manifest PUT has not come yet, which would fail
     * MANIFEST_BLOB_UNKNOWN after the blob got its 201. The link stays; the collector drops
     * it after its grace if no held manifest names it by then (the link stamped gc_queue).
     * The link time is gc_queue's stamp (v5_gc.sql: set by every link, re-links included,
     * sq_blob_link); the push time is the manifest's created_ms, only meaningful for a
     * manifest pushed in this region (origin here): a fetched one's blobs are linked after
     * its row is created, so they would all look new. */
    static const char linked_after_sql[] =
        "SELECT 1 FROM gc_queue q JOIN manifests m ON m.repo_id = ?1 AND m.digest = ?3"
        " WHERE q.digest = ?2 AND m.origin = ?4 AND q.queued_ms > m.created_ms";
    /* the bytes are still needed: linked somewhere, or wanted by a held manifest */
    static const char needed_sql[] =
        "SELECT 1 WHERE EXISTS (SELECT 1 FROM repo_blobs WHERE digest = ?1)"
        " OR EXISTS (SELECT 1 FROM manifest_refs r JOIN manifests m ON m.repo_id = r.repo_id"
        " AND m.digest = r.manifest_digest WHERE r.ref_digest = ?1 AND m.is_visible IN (0, 1))";
    memset(orphans, 0, sizeof(*orphans));
    struct sq_conn *c = sq_conn_of(ms, e);
    if (c == NULL || sq_tx_begin(c, true, e) != 0)
        return -1;
    struct meta_name_list refs = {0};
    int64_t repo_id = 0, state = 0;
    if (state_of(c, repo, d->str, &repo_id, &state, e) != 0)
        goto fail;
    if (state != PLACE_VISIBLE) {
        sq_tx_rollback(c);
        return 0;
    }
    if (set_state(c, repo_id, d->str, PLACE_NOT_HELD, e) != 0)
        goto fail;
    struct sql_stmt *s;
    int rc = sq_run(c, refs_sql, &s, e, "it", repo_id, d->str);
    if (rc < 0)
        goto fail;
    rc = sq_collect_names(c, s, rc, -1, &refs, e);
    sql_finalize(s);
    if (rc != 0)
        goto fail;
    for (size_t i = 0; i < refs.n; i++) {
        int is_used = exists(c, used_here_sql, "it", repo_id, refs.names[i], e);
        if (is_used < 0)
            goto fail;
        if (is_used)
            continue;
        rc = sq_run(c, linked_after_sql, &s, e, "ittt", repo_id, refs.names[i], d->str,
                    c->store->region);
        if (rc < 0)
            goto fail;
        sql_finalize(s);
        if (rc == SQL_ROW)
            continue;
        if (sq_run_exec(c, "DELETE FROM repo_blobs WHERE repo_id = ?1 AND digest = ?2", e, "it",
                        repo_id, refs.names[i]) != 0)
            goto fail;
        int is_needed = exists(c, needed_sql, "t", 0, refs.names[i], e);
        if (is_needed < 0)
            goto fail;
        if (is_needed)
            continue;
        if (sq_run_exec(c, "DELETE FROM blobs WHERE digest = ?1", e, "t", refs.names[i]) != 0)
            goto fail;
        orphans->names = xrealloc(orphans->names, (orphans->n + 1) * sizeof(char *));
        orphans->names[orphans->n++] = xstrdup(refs.names[i]);
    }
    meta_name_list_fini(&refs);
    if (sq_tx_commit(c, e) != 0) {
        meta_name_list_fini(orphans);
        return -1;
    }
    return 0;
fail:
    meta_name_list_fini(&refs);
    meta_name_list_fini(orphans);
    sq_tx_rollback(c);
    return -1;
}

/* Body length and recorded size of repo@digest; ERR_MANIFEST_UNKNOWN if not recorded. */
static int body_of(struct sq_conn *c, const char *repo, const char *digest, int64_t *len,
                   int64_t *size, struct err *e)
{
    return manifest_ints(c,
                         "SELECT length(m.body), m.size FROM repos r JOIN manifests m"
                         " ON m.repo_id = r.id WHERE r.name = ?1 AND m.digest = ?2",
                         repo, digest, len, size, e);
}

int sq_manifest_body_missing(struct metastore *ms, const char *repo, const struct digest *d,
                             bool *is_missing, struct err *e)
{
    struct sq_conn *c = sq_conn_of(ms, e);
    int64_t len = 0, size = 0;
    if (c == NULL || body_of(c, repo, d->str, &len, &size, e) != 0)
        return -1;
    *is_missing = len == 0 && size > 0;
    return 0;
}

int sq_manifest_body_set(struct metastore *ms, const char *repo, const struct digest *d,
                         const void *body, size_t len, struct err *e)
{
    struct digest got;
    digest_of_buffer(d->alg, body, len, &got);
    if (!digest_equal(&got, d))
        return err_set(e, ERR_DIGEST_INVALID, "the manifest fetched for %s has digest %s", d->str,
                       got.str);
    struct sq_conn *c = sq_conn_of(ms, e);
    if (c == NULL || sq_tx_begin(c, true, e) != 0)
        return -1;
    int64_t have = 0, size = 0;
    if (body_of(c, repo, d->str, &have, &size, e) != 0)
        goto fail;
    if (have > 0) {
        sq_tx_rollback(c);
        return 0;
    }
    if (size != (int64_t)len) {
        err_set(e, ERR_DIGEST_INVALID, "the manifest fetched for %s has %zu bytes, not %" PRId64,
                d->str, len, size);
        goto fail;
    }
    unsigned char *packed;
    size_t stored_len;
    const void *stored = body_stored(body, len, &packed, &stored_len);
    int rc = sq_run_exec(c,
                         "UPDATE manifests SET body = ?3 WHERE digest = ?2 AND repo_id ="
                         " (SELECT id FROM repos WHERE name = ?1)",
                         e, "ttb", repo, d->str, stored, stored_len);
    free(packed);
    if (rc != 0)
        goto fail;
    return sq_tx_commit(c, e);
fail:
    sq_tx_rollback(c);
    return -1;
}

int sq_repo_is_definition(struct sq_conn *c, const char *repo, bool *is_definition, struct err *e)
{
    struct sql_stmt *s;
    int rc = sq_run(c, "SELECT 1 FROM objects WHERE kind = 'image_definition' AND key = ?1"
                       " AND is_deleted = 0", &s, e, "t", repo);
    if (rc < 0)
        return -1;
    sql_finalize(s);
    *is_definition = rc == SQL_ROW;
    return 0;
}

int sq_manifest_relatives(struct metastore *ms, const char *repo, const struct digest *d,
                          bool is_owners, struct meta_name_list *out, struct err *e)
{
    static const char owners_sql[] =
        "SELECT f.manifest_digest FROM repos r JOIN manifest_refs f ON f.repo_id = r.id"
        " WHERE r.name = ?1 AND f.ref_digest = ?2 AND f.is_manifest = 1"
        " UNION SELECT m.subject FROM repos r JOIN manifests m ON m.repo_id = r.id"
        " WHERE r.name = ?1 AND m.digest = ?2 AND m.subject IS NOT NULL";
    static const char dependents_sql[] =
        "SELECT f.ref_digest FROM repos r JOIN manifest_refs f ON f.repo_id = r.id"
        " WHERE r.name = ?1 AND f.manifest_digest = ?2 AND f.is_manifest = 1"
        " UNION SELECT m.digest FROM repos r JOIN manifests m ON m.repo_id = r.id"
        " WHERE r.name = ?1 AND m.subject = ?2";
    memset(out, 0, sizeof(*out));
    struct sq_conn *c = sq_conn_of(ms, e);
    if (c == NULL)
        return -1;
    struct sql_stmt *s;
    int rc = sq_run(c, is_owners ? owners_sql : dependents_sql, &s, e, "tt", repo, d->str);
    if (rc < 0)
        return -1;
    rc = sq_collect_names(c, s, rc, -1, out, e);
    sql_finalize(s);
    return rc;
}

int sq_manifest_show_shallow(struct metastore *ms, const char *repo, const struct digest *d,
                             const struct meta_status *done, struct err *e)
{
    /* a child manifest of it that is not visible here */
    static const char child_sql[] =
        "SELECT 1 FROM manifest_refs f LEFT JOIN manifests m ON m.repo_id = f.repo_id"
        " AND m.digest = f.ref_digest WHERE f.repo_id = ?1 AND f.manifest_digest = ?2"
        " AND f.is_manifest = 1 AND (m.is_visible IS NULL OR m.is_visible != 1) LIMIT 1";
    struct sq_conn *c = sq_conn_of(ms, e);
    if (c == NULL || sq_tx_begin(c, true, e) != 0)
        return -1;
    int64_t repo_id = 0, state = 0;
    if (state_of(c, repo, d->str, &repo_id, &state, e) != 0)
        goto fail;
    if (state == PLACE_NOT_HELD) { /* taken out of this region meanwhile (pending_complete) */
        err_set(e, ERR_CONFLICT, "%s is no longer held in this region", d->str);
        goto fail;
    }
    if (state != PLACE_PENDING) {
        sq_tx_rollback(c);
        return 0;
    }
    int is_waiting = exists(c, child_sql, "it", repo_id, d->str, e);
    if (is_waiting < 0)
        goto fail;
    if (is_waiting) {
        err_set(e, ERR_MANIFEST_BLOB_UNKNOWN, "a child manifest of %s is not here yet", d->str);
        goto fail;
    }
    if (set_state(c, repo_id, d->str, PLACE_VISIBLE, e) != 0)
        goto fail;
    /* Shown and announced at once (as sq_pending_complete): written apart, a crash between
     * the two left it visible here and this region not Completed anywhere for ever. */
    if (done != NULL && sq_status_write(c, repo, d->str, done, true, e) != 0)
        goto fail;
    return sq_tx_commit(c, e);
fail:
    sq_tx_rollback(c);
    return -1;
}

int sq_blob_is_wanted(struct metastore *ms, const char *repo, const struct digest *d,
                      bool *is_wanted, struct err *e)
{
    static const char sql[] =
        "SELECT 1 FROM repos r JOIN manifest_refs f ON f.repo_id = r.id JOIN manifests m"
        " ON m.repo_id = f.repo_id AND m.digest = f.manifest_digest WHERE r.name = ?1"
        " AND f.ref_digest = ?2 AND m.is_visible IN (0, 1) LIMIT 1";
    struct sq_conn *c = sq_conn_of(ms, e);
    if (c == NULL)
        return -1;
    struct sql_stmt *s;
    int rc = sq_run(c, sql, &s, e, "tt", repo, d->str);
    if (rc < 0)
        return -1;
    sql_finalize(s);
    *is_wanted = rc == SQL_ROW;
    return 0;
}
