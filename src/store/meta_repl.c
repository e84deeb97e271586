/* Replication's bookkeeping, backend-neutral: manifests applied from peers that wait for
 * their content (pending), and each region's status of an artifact. */
#include "metastore.h"

#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "metastore_sqlite_int.h"
#include "util.h"

/* A status row with the clock of the report it holds (a delete drops the older ones:
 * sq_tomb_merge). */
int sq_status_write_peer(struct sq_conn *c, const char *repo, const char *digest,
                         const struct meta_status *st, int64_t hlc, struct err *e)
{
    return sq_exec(c, SQ_STATUS_SET, e, "ttttiiitii", repo, digest, st->region, st->state,
                   st->bytes_done, st->bytes_total, st->updated_ms, st->details,
                   st->has_copies ? st->copies : (int64_t)-1, hlc);
}

/* Writes a status event of this region at clock hlc. The payload is stored, not rebuilt from
 * the row when read: the row moves on (a retry rewrites it as InProgress without an event),
 * and a peer that reads this event later must still see the state it announced (Failed,
 * with its details). Short when it is this region's own (sq_status_payload_stored). */
static int status_event(struct sq_conn *c, const char *repo, const char *digest,
                        const struct meta_status *st, int64_t hlc, struct err *e)
{
    struct buf p;
    buf_init(&p, 64 * 1024);
    sq_status_payload_stored(&p, st, c->store->region);
    int rc = sq_event_append_clock(c, "status", repo, NULL, digest, p.data, hlc, e);
    buf_fini(&p);
    return rc;
}

/* Records this region's status of an artifact, optionally as a replicated event. */
int sq_status_write(struct sq_conn *c, const char *repo, const char *digest,
                    const struct meta_status *st, bool is_event, struct err *e)
{
    int64_t hlc = sq_hlc_next(c);
    if (sq_status_write_peer(c, repo, digest, st, hlc, e) != 0)
        return -1;
    return is_event ? status_event(c, repo, digest, st, hlc, e) : 0;
}

/* The own status
 *
 * A manifest visible here is Completed here: visible means its blobs and child manifests are
 * here (checked in the transaction that made it visible). A push announces that to the other
 * regions (the event) but keeps no row of it: the row was a random insert into the largest
 * b-tree after manifests, about a tenth of a push's cost at 100 000 tags
 * (docs/performance.md, "The own status row"). Every reader of this region's status takes it
 * from the manifest instead (STATUS_OWN_DERIVED) when no Completed row of this region says
 * more (a copies count, a fetch's bytes); a row of another state of a visible manifest is
 * left from before (a fetch of an earlier copy, deleted since) and is not shown. No clock
 * decides it, so no node's wall clock and no other region's re-push of the same manifest
 * (which takes its origin and clock) can hide it. */
int sq_status_announce_own(struct sq_conn *c, const char *repo, const char *digest,
                           const struct meta_status *st, struct err *e)
{
    return status_event(c, repo, digest, st, sq_hlc_next(c), e);
}

/* A put of a manifest already visible here, at a new clock (a client's push of it again, a
 * collector's delete it outlived): this region's status of it is announced again at that
 * clock. A delete another region made before it drops this region's report there
 * (sq_tomb_merge), and the put then brings the manifest back there: without a report later
 * than the delete, this region showed Pending there for ever. The event alone: the status
 * here is the Completed row of this region or derived (STATUS_OWN_DERIVED). */
int sq_status_announce_own_again(struct sq_conn *c, int64_t repo_id, const char *repo,
                                 const char *digest, struct err *e)
{
    struct sql_stmt *s;
    int rc = sq_query(c, SQ_VISIBLE_CHILD, &s, e, "it", repo_id, digest);
    if (rc < 0)
        return -1;
    sq_stmt_done(s);
    if (rc != SQL_ROW)
        return 0;
    struct meta_status st;
    bool found;
    if (sq_status_own_derived(c, repo, digest, &st, &found, e) != 0)
        return -1;
    if (!found) { /* a Completed row says it */
        rc = sq_query(c, SQ_STATUS_OF_REGION, &s, e, "ttt", repo, digest, c->store->region);
        if (rc < 0)
            return -1;
        const char *state = rc == SQL_ROW ? (const char *)sql_col_text(s, 0) : NULL;
        if (state != NULL && strcmp(state, "Completed") == 0) {
            st = (struct meta_status){.region = xstrdup(c->store->region),
                                      .state = xstrdup(state),
                                      .bytes_done = sql_col_int64(s, 1),
                                      .bytes_total = sql_col_int64(s, 2),
                                      .updated_ms = sql_col_int64(s, 3),
                                      .details = sq_col_strdup(s, 4),
                                      .has_copies = sql_col_int64(s, 5) >= 0,
                                      .copies = sql_col_int64(s, 5)};
            found = true;
        }
        sq_stmt_done(s);
    }
    if (!found)
        return 0;
    rc = sq_status_announce_own(c, repo, digest, &st, e);
    free(st.region);
    free(st.state);
    free(st.details);
    return rc;
}

/* This region's status of one derived row of STATUS_OWN_DERIVED[_OF_REPO] (strings not
 * copied: valid until the statement moves on). */
static struct meta_status own_derived(struct sq_conn *c, struct sql_stmt *s)
{
    int64_t bytes = sql_col_int64(s, 3);
    return (struct meta_status){.region = (char *)c->store->region,
                                .state = "Completed",
                                .bytes_done = bytes,
                                .bytes_total = bytes,
                                .updated_ms = sql_col_int64(s, 1),
                                .details = ""};
}

int sq_status_own_derived(struct sq_conn *c, const char *repo, const char *digest,
                          struct meta_status *out, bool *found, struct err *e)
{
    *found = false;
    struct sql_stmt *s;
    int rc = sq_query(c, SQ_STATUS_OWN_DERIVED, &s, e, "ttt", repo, digest, c->store->region);
    if (rc < 0)
        return -1;
    if (rc == SQL_ROW) {
        struct meta_status st = own_derived(c, s);
        *out = (struct meta_status){.region = xstrdup(st.region),
                                    .state = xstrdup(st.state),
                                    .bytes_done = st.bytes_done,
                                    .bytes_total = st.bytes_total,
                                    .updated_ms = st.updated_ms,
                                    .details = xstrdup("")};
        *found = true;
    }
    sq_stmt_done(s);
    return 0;
}

int sq_status_own_derived_of_repo(struct sq_conn *c, const char *repo, sq_own_status_f *each,
                                  void *arg, struct err *e)
{
    struct sql_stmt *s;
    int rc = sq_query(c, SQ_STATUS_OWN_DERIVED_OF_REPO, &s, e, "tt", repo, c->store->region);
    if (rc < 0)
        return -1;
    int row = rc == SQL_ROW;
    for (; row == 1; row = sq_next_row(c, s, e)) {
        const char *digest = (const char *)sql_col_text(s, 0);
        struct meta_status st = own_derived(c, s);
        if (digest != NULL)
            each(arg, digest, &st, sql_col_int64(s, 2));
    }
    sq_stmt_done(s);
    return row < 0 ? -1 : 0;
}

int sq_pending_list(struct metastore *ms, size_t max, struct meta_pending **out, size_t *n_out,
                    struct err *e)
{
    *out = NULL;
    *n_out = 0;
    struct sq_conn *c = sq_conn_of(ms, e);
    if (c == NULL)
        return -1;
    if (sq_tx_begin(c, false, e) != 0)
        return -1;
    struct sql_stmt *s;
    int rc = sq_query(c, SQ_PENDING_LIST, &s, e, "i", (int64_t)max);
    if (rc < 0)
        goto fail;
    struct meta_pending *list = xcalloc(max ? max : 1, sizeof(*list));
    int64_t *repo_ids = xcalloc(max ? max : 1, sizeof(int64_t));
    size_t n = 0;
    for (int row = rc == SQL_ROW; row == 1 && n < max; row = sq_next_row(c, s, e)) {
        list[n].repo = sq_col_strdup(s, 0);
        sq_col_digest(s, 1, &list[n].digest);
        list[n].origin = sq_col_strdup(s, 3);
        repo_ids[n++] = sql_col_int64(s, 2);
    }
    sq_stmt_done(s);
    for (size_t i = 0; i < n; i++) {
        rc = sq_query(c, SQ_REFS_OF_MANIFEST, &s, e, "it", repo_ids[i], list[i].digest.str);
        if (rc < 0)
            break;
        for (int row = rc == SQL_ROW; row == 1; row = sq_next_row(c, s, e)) {
            size_t k = list[i].n_refs++;
            list[i].refs = xrealloc(list[i].refs, list[i].n_refs * sizeof(*list[i].refs));
            list[i].ref_sizes = xrealloc(list[i].ref_sizes, list[i].n_refs * sizeof(int64_t));
            memset(&list[i].refs[k], 0, sizeof(list[i].refs[k]));
            sq_col_digest(s, 0, &list[i].refs[k].digest);
            list[i].refs[k].is_manifest = sql_col_int64(s, 1) != 0;
            list[i].ref_sizes[k] = sql_col_int64(s, 2);
        }
        sq_stmt_done(s);
    }
    free(repo_ids);
    sq_tx_commit(c, e);
    *out = list;
    *n_out = n;
    return 0;
fail:
    sq_tx_rollback(c);
    return -1;
}

int sq_pending_complete(struct metastore *ms, const struct meta_pending *p,
                        const struct meta_status *done, struct err *e)
{
    struct sq_conn *c = sq_conn_of(ms, e);
    if (c == NULL)
        return -1;
    if (sq_tx_begin(c, true, e) != 0)
        return -1;
    int64_t repo_id;
    struct sql_stmt *s;
    if (sq_repo_ensure(c, p->repo, &repo_id, e) != 0)
        goto fail;
    /* Only a manifest still pending: placement may have taken it out of this region while
     * its content was fetched (meta_versions.c), and it must not come back visible. */
    int rc = sq_run(c, "SELECT is_visible FROM manifests WHERE repo_id = ?1 AND digest = ?2", &s,
                    e, "it", repo_id, p->digest.str);
    if (rc < 0)
        goto fail;
    int64_t state = rc == SQL_ROW ? sql_col_int64(s, 0) : -1;
    sql_finalize(s);
    if (state == 2) {
        err_set(e, ERR_CONFLICT, "%s is no longer held in this region", p->digest.str);
        goto fail;
    }
    /* Deleted here while its content was fetched (a tombstone won): nothing to show, and
     * its blobs are not linked for it. */
    if (state < 0) {
        err_set(e, ERR_MANIFEST_UNKNOWN, "%s was deleted in this region", p->digest.str);
        goto fail;
    }
    for (size_t i = 0; i < p->n_refs; i++) {
        const char *d = p->refs[i].digest.str;
        if (p->refs[i].is_manifest) {
            rc = sq_query(c, SQ_VISIBLE_CHILD, &s, e, "it", repo_id, d);
            if (rc < 0)
                goto fail;
            sq_stmt_done(s);
            if (rc != SQL_ROW) {
                err_set(e, ERR_MANIFEST_BLOB_UNKNOWN, "child manifest %s not here yet", d);
                goto fail;
            }
            continue;
        }
        if (sq_exec(c, SQ_BLOB_INSERT, e, "ti", d, p->ref_sizes[i] > 0 ? p->ref_sizes[i] : 0) !=
                0 ||
            sq_exec(c, SQ_LINK_INSERT, e, "it", repo_id, d) != 0)
            goto fail;
    }
    if (sq_exec(c, SQ_MANIFEST_SET_VISIBLE, e, "it", repo_id, p->digest.str) != 0)
        goto fail;
    /* Shown and announced at once: written apart, a crash between the two left the
     * manifest visible here and this region InProgress in every other one for ever. */
    if (done != NULL && sq_status_write(c, p->repo, p->digest.str, done, true, e) != 0)
        goto fail;
    /* An event is synced (sq_status_set); the visibility alone is fetched again if lost. */
    return done != NULL ? sq_tx_commit(c, e) : sq_tx_commit_unsynced(c, e);
fail:
    sq_tx_rollback(c);
    return -1;
}

int sq_status_set(struct metastore *ms, const char *repo, const struct digest *d,
                  const struct meta_status *st, bool is_event, struct err *e)
{
    struct sq_conn *c = sq_conn_of(ms, e);
    if (c == NULL)
        return -1;
    if (sq_tx_begin(c, true, e) != 0)
        return -1;
    if (sq_status_write(c, repo, d->str, st, is_event, e) != 0) {
        sq_tx_rollback(c);
        return -1;
    }
    /* A status that is not an event (a fetch starting or to be retried) is this region's
     * row alone, no client waits on it and the fetch writes it again if a crash loses it:
     * it need not wait for a sync of its own (one per replicated manifest bounded a fresh
     * region's catch-up). An event is synced: peers may read it once it is stored. */
    return is_event ? sq_tx_commit(c, e) : sq_tx_commit_unsynced(c, e);
}

/* Runs one of the status drops in a write transaction of its own (every write of the
 * process holds the writer mutex: sq_autocommit_lock). A drop lost to a crash is made again
 * by the pass that made it (residency enforcement every --sync-interval, placement when
 * the version is reconsidered): not synced. */
static int status_drop(struct metastore *ms, enum sq_stmt id, const char *fmt, const char *repo,
                       const char *b, const char *region, int64_t before_ms, struct err *e)
{
    struct sq_conn *c = sq_conn_of(ms, e);
    if (c == NULL)
        return -1;
    if (sq_tx_begin(c, true, e) != 0)
        return -1;
    int rc = b != NULL ? sq_exec(c, id, e, fmt, repo, b, region, before_ms)
                       : sq_exec(c, id, e, fmt, repo, region);
    if (rc != 0) {
        sq_tx_rollback(c);
        return -1;
    }
    return sq_tx_commit_unsynced(c, e);
}

int sq_status_drop_region(struct metastore *ms, const char *repo, const char *region,
                          struct err *e)
{
    return status_drop(ms, SQ_STATUS_DROP_REGION, "tt", repo, NULL, region, 0, e);
}

int sq_status_drop_older(struct metastore *ms, const char *repo, const struct digest *d,
                         const char *region, int64_t before_ms, struct err *e)
{
    return status_drop(ms, SQ_STATUS_DROP_OLDER, "ttti", repo, d->str, region, before_ms, e);
}

/* Puts this region's derived status (sq_status_own_derived) in a status list ordered by
 * region, in place of a row of this region of another state than Completed. */
static int status_list_own(struct sq_conn *c, const char *repo, const char *digest,
                           struct meta_status **list, size_t *n, struct err *e)
{
    struct meta_status own;
    bool found;
    if (sq_status_own_derived(c, repo, digest, &own, &found, e) != 0)
        return -1;
    if (!found)
        return 0;
    size_t at = 0;
    while (at < *n && strcmp((*list)[at].region, own.region) < 0)
        at++;
    if (at < *n && strcmp((*list)[at].region, own.region) == 0) {
        free((*list)[at].region);
        free((*list)[at].state);
        free((*list)[at].details);
        (*list)[at] = own;
        return 0;
    }
    *list = xrealloc(*list, (*n + 1) * sizeof(**list));
    memmove(&(*list)[at + 1], &(*list)[at], (*n - at) * sizeof(**list));
    (*list)[at] = own;
    (*n)++;
    return 0;
}

int sq_status_list(struct metastore *ms, const char *repo, const struct digest *d,
                   struct meta_status **out, size_t *n_out, struct err *e)
{
    *out = NULL;
    *n_out = 0;
    struct sq_conn *c = sq_conn_of(ms, e);
    if (c == NULL)
        return -1;
    /* One snapshot: the rows and the manifest the own status is derived from. */
    if (sq_tx_begin(c, false, e) != 0)
        return -1;
    struct sql_stmt *s;
    int rc = sq_query(c, SQ_STATUS_LIST, &s, e, "tt", repo, d->str);
    if (rc < 0) {
        sq_tx_rollback(c);
        return -1;
    }
    struct meta_status *list = NULL;
    size_t n = 0;
    int row = rc == SQL_ROW;
    for (; row == 1; row = sq_next_row(c, s, e)) {
        list = xrealloc(list, (n + 1) * sizeof(*list));
        list[n].region = sq_col_strdup(s, 0);
        list[n].state = sq_col_strdup(s, 1);
        list[n].bytes_done = sql_col_int64(s, 2);
        list[n].bytes_total = sql_col_int64(s, 3);
        list[n].updated_ms = sql_col_int64(s, 4);
        list[n].details = sq_col_strdup(s, 5);
        list[n].copies = sql_col_int64(s, 6);
        list[n].has_copies = list[n].copies >= 0;
        n++;
    }
    sq_stmt_done(s);
    if (row < 0 || status_list_own(c, repo, d->str, &list, &n, e) != 0) {
        sq_tx_rollback(c);
        meta_status_free(list, n);
        return -1;
    }
    sq_tx_commit(c, e);
    *out = list;
    *n_out = n;
    return 0;
}
