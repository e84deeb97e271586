/* Event-log compaction, backend-neutral: peer acknowledgements, the log horizon, dropping
 * acknowledged events in batches, expiring tombstones, and what a snapshot of the tables
 * needs (every object, the status rows of a repository) and adopting one.
 *
 *   peer pulls (vv) --peer_ack_set--> peer_acks
 *   compact.c: stable[o] = min over live peers of their ack[o] --log_compact--> events
 *                                                  rows <= stable dropped, log_horizon[o]
 *   a peer whose vv is below log_horizon gets 410 and merges a snapshot, then log_adopt
 *
 * Invariant: for every origin o this log holds every event of o with
 * log_horizon[o] < origin_seq <= vv[o]. Compaction drops a prefix and raises the horizon
 * to it; adopting a snapshot at h raises both vv and the horizon to at least h. */
#include "metastore.h"

#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "image_catalog.h"
#include "metastore_sqlite_int.h"
#include "util.h"

void meta_horizon_list_fini(struct meta_horizon *h, size_t n)
{
    for (size_t i = 0; h && i < n; i++)
        free(h[i].origin);
    free(h);
}

const struct meta_horizon *meta_horizon_find(const struct meta_horizon *h, size_t n,
                                             const char *origin)
{
    for (size_t i = 0; h && i < n; i++) {
        if (strcmp(h[i].origin, origin) == 0)
            return &h[i];
    }
    return NULL;
}

void meta_peer_ack_list_fini(struct meta_peer_ack *a, size_t n)
{
    for (size_t i = 0; a && i < n; i++) {
        free(a[i].peer);
        free(a[i].vv);
    }
    free(a);
}

int sq_peer_ack_set(struct metastore *ms, const char *peer, const char *vv, int64_t now_ms,
                    struct err *e)
{
    struct sq_conn *c = sq_conn_of(ms, e);
    if (c == NULL)
        return -1;
    if (sq_tx_begin(c, true, e) != 0)
        return -1;
    if (sq_exec(c, SQ_ACK_SET, e, "tti", peer, vv ? vv : "", now_ms) != 0) {
        sq_tx_rollback(c);
        return -1;
    }
    return sq_tx_commit_unsynced(c, e);
}

static void peer_ack_read(struct sql_stmt *s, void *elem)
{
    struct meta_peer_ack *a = elem;
    a->peer = sq_col_strdup(s, 0);
    a->vv = sq_col_strdup(s, 1);
    a->acked_ms = sql_col_int64(s, 2);
}

int sq_peer_acks(struct metastore *ms, struct meta_peer_ack **out, size_t *n_out, struct err *e)
{
    *out = NULL;
    *n_out = 0;
    struct sq_conn *c = sq_conn_of(ms, e);
    if (c == NULL)
        return -1;
    struct sql_stmt *s;
    int rc = sq_query(c, SQ_ACK_ALL, &s, e, "");
    if (rc < 0)
        return -1;
    void *items;
    rc = sq_collect_rows(c, s, rc, sizeof(**out), peer_ack_read, &items, n_out, e);
    sq_stmt_done(s);
    *out = items;
    if (rc != 0) {
        meta_peer_ack_list_fini(*out, *n_out);
        *out = NULL;
        *n_out = 0;
    }
    return rc;
}

static void horizon_row_read(struct sql_stmt *s, void *elem)
{
    struct meta_horizon *h = elem;
    h->origin = sq_col_strdup(s, 0);
    h->seq = sql_col_int64(s, 1);
    h->hlc = sql_col_int64(s, 2);
}

/* Rows (origin, seq, hlc) of query q: the log horizon, or the origin clocks. */
static int clock_rows_read(struct sq_conn *c, enum sq_stmt q, struct meta_horizon **out,
                           size_t *n_out, struct err *e)
{
    *out = NULL;
    *n_out = 0;
    struct sql_stmt *s;
    int rc = sq_query(c, q, &s, e, "");
    if (rc < 0)
        return -1;
    void *items;
    rc = sq_collect_rows(c, s, rc, sizeof(**out), horizon_row_read, &items, n_out, e);
    sq_stmt_done(s);
    *out = items;
    if (rc != 0) {
        meta_horizon_list_fini(*out, *n_out);
        *out = NULL;
        *n_out = 0;
    }
    return rc;
}

int sq_log_horizon(struct metastore *ms, struct meta_horizon **out, size_t *n_out, struct err *e)
{
    struct sq_conn *c = sq_conn_of(ms, e);
    if (c == NULL)
        return -1;
    return clock_rows_read(c, SQ_HORIZON_ALL, out, n_out, e);
}

int sq_origin_clocks(struct metastore *ms, struct meta_horizon **out, size_t *n_out,
                     struct err *e)
{
    struct sq_conn *c = sq_conn_of(ms, e);
    if (c == NULL)
        return -1;
    return clock_rows_read(c, SQ_ORIGIN_CLOCKS, out, n_out, e);
}

/* Raises the horizon of origin to (seq, hlc) if it is below; in a write transaction. */
static int horizon_raise(struct sq_conn *c, const char *origin, int64_t seq, int64_t hlc,
                         struct err *e)
{
    struct sql_stmt *s;
    int rc = sq_query(c, SQ_HORIZON_GET, &s, e, "t", origin);
    if (rc < 0)
        return -1;
    bool is_below = rc != SQL_ROW || sql_col_int64(s, 0) < seq;
    sq_stmt_done(s);
    return is_below ? sq_exec(c, SQ_HORIZON_SET, e, "tii", origin, seq, hlc) : 0;
}

int sq_log_compact(struct metastore *ms, const char *origin, int64_t upto, size_t max,
                   size_t *n_deleted, struct err *e)
{
    *n_deleted = 0;
    struct sq_conn *c = sq_conn_of(ms, e);
    if (c == NULL)
        return -1;
    if (sq_tx_begin(c, true, e) != 0)
        return -1;
    struct sql_stmt *s;
    int rc = sq_query(c, SQ_COMPACT_BATCH, &s, e, "tii", origin, upto, (int64_t)max);
    if (rc < 0)
        goto fail;
    int64_t last_seq = 0, last_hlc = 0;
    size_t n = 0;
    int row = rc == SQL_ROW;
    for (; row == 1; row = sq_next_row(c, s, e)) {
        last_seq = sql_col_int64(s, 0);
        last_hlc = sql_col_int64(s, 1);
        n++;
    }
    sq_stmt_done(s);
    if (row < 0)
        goto fail;
    /* Lowest first: once these are gone the log of origin starts above last_seq. */
    if (n > 0 && (sq_exec(c, SQ_COMPACT_DELETE, e, "ti", origin, last_seq) != 0 ||
                  horizon_raise(c, origin, last_seq, last_hlc, e) != 0))
        goto fail;
    /* Unsynced: a crash that loses the deletion brings the rows back, which is harmless. */
    if (sq_tx_commit_unsynced(c, e) != 0)
        return -1;
    *n_deleted = n;
    return 0;
fail:
    sq_tx_rollback(c);
    return -1;
}

/* Removes the rows a query (repo, key, hlc, origin) returns whose clock is at or below the
 * horizon of their origin, with del (repo, key, hlc). */
static int expire_rows(struct sq_conn *c, enum sq_stmt query, enum sq_stmt del,
                       const struct meta_horizon *h, size_t nh, int64_t before_hlc, size_t max,
                       size_t *n_removed, struct err *e)
{
    struct sql_stmt *s;
    int rc = sq_query(c, query, &s, e, "ii", before_hlc, (int64_t)max);
    if (rc < 0)
        return -1;
    struct meta_name_list repos = {0}, keys = {0};
    int64_t *clocks = NULL;
    int row = rc == SQL_ROW;
    for (; row == 1; row = sq_next_row(c, s, e)) {
        const char *origin = sql_col_text(s, 3);
        const struct meta_horizon *oh = meta_horizon_find(h, nh, origin ? origin : "");
        int64_t hlc = sql_col_int64(s, 2);
        if (oh == NULL || hlc > oh->hlc)
            continue; /* some live peer may not have applied it yet */
        size_t k = repos.n;
        repos.names = xrealloc(repos.names, (k + 1) * sizeof(char *));
        keys.names = xrealloc(keys.names, (k + 1) * sizeof(char *));
        clocks = xrealloc(clocks, (k + 1) * sizeof(int64_t));
        repos.names[k] = sq_col_strdup(s, 0);
        keys.names[k] = sq_col_strdup(s, 1);
        clocks[k] = hlc;
        repos.n = keys.n = k + 1;
    }
    sq_stmt_done(s);
    int result = row < 0 ? -1 : 0;
    for (size_t i = 0; result == 0 && i < repos.n; i++) {
        if (sq_exec(c, del, e, "tti", repos.names[i], keys.names[i], clocks[i]) != 0)
            result = -1;
        else
            *n_removed += (size_t)sql_changes(c->db);
    }
    meta_name_list_fini(&repos);
    meta_name_list_fini(&keys);
    free(clocks);
    return result;
}

int sq_tombs_expire(struct metastore *ms, int64_t before_hlc, size_t max, size_t *n_removed,
                    struct err *e)
{
    *n_removed = 0;
    struct sq_conn *c = sq_conn_of(ms, e);
    if (c == NULL)
        return -1;
    if (sq_tx_begin(c, true, e) != 0)
        return -1;
    struct meta_horizon *h;
    size_t nh;
    if (clock_rows_read(c, SQ_HORIZON_ALL, &h, &nh, e) != 0)
        goto fail;
    int rc = expire_rows(c, SQ_TOMBS_EXPIRED, SQ_TOMB_DELETE, h, nh, before_hlc, max, n_removed, e);
    if (rc == 0)
        rc = expire_rows(c, SQ_TREGS_EXPIRED, SQ_TREG_DELETE_DELETED, h, nh, before_hlc, max,
                         n_removed, e);
    meta_horizon_list_fini(h, nh);
    if (rc != 0)
        goto fail;
    return sq_tx_commit_unsynced(c, e);
fail:
    sq_tx_rollback(c);
    return -1;
}

int sq_log_adopt(struct metastore *ms, const char *peer, const struct meta_horizon *h, size_t n,
                 struct err *e)
{
    struct sq_conn *c = sq_conn_of(ms, e);
    if (c == NULL)
        return -1;
    if (sq_tx_begin(c, true, e) != 0)
        return -1;
    for (size_t i = 0; i < n; i++) {
        int64_t have;
        if (sq_vv_read(c, h[i].origin, &have, e) != 0)
            goto fail;
        /* A peer knows more of this region's own name than its log holds only when the
         * log was restored from an older copy, or the region is new under a removed
         * one's name: the snapshot holds the effect of those events, and the numbering
         * goes on above them, or the peers would take new events for ones they have. */
        /* The snapshot holds the effect of events up to the horizon: the clock goes on
         * above their clocks, or a new event could sort below one it follows. */
        sq_hlc_seen(c->store, (uint64_t)h[i].hlc);
        bool is_self = strcmp(h[i].origin, c->store->region) == 0;
        if (is_self && have >= h[i].seq)
            continue; /* the usual case: this log holds its own events */
        if (is_self)
            sq_note_own_history(have, h[i].seq);
        if (have < h[i].seq && sq_exec(c, SQ_VV_SET, e, "ti", h[i].origin, h[i].seq) != 0)
            goto fail;
        if (horizon_raise(c, h[i].origin, h[i].seq, h[i].hlc, e) != 0)
            goto fail;
    }
    /* The peer's log above its horizon is read again (what the snapshot covered is
     * skipped by the version vector), so this log holds it too. */
    if (sq_exec(c, SQ_CURSOR_SET, e, "ti", peer, (int64_t)0) != 0)
        goto fail;
    return sq_tx_commit(c, e);
fail:
    sq_tx_rollback(c);
    return -1;
}

/* A state record with origin_seq 1 (as repo_state's). */
static struct meta_event *record_add(struct meta_event **list, size_t *n, const char *kind,
                                     const char *repo, int64_t hlc, const char *origin)
{
    *list = xrealloc(*list, (*n + 1) * sizeof(**list));
    struct meta_event *ev = &(*list)[(*n)++];
    memset(ev, 0, sizeof(*ev));
    ev->kind = xstrdup(kind);
    ev->repo = repo ? xstrdup(repo) : NULL;
    ev->hlc = (uint64_t)hlc;
    ev->origin = xstrdup(origin && *origin ? origin : "unknown");
    ev->origin_seq = 1;
    return ev;
}

static void records_free(struct meta_event *list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        meta_event_fini(&list[i]);
    free(list);
}

/* Derived per region from tag writes (meta_merge.c): not replicated as themselves. */
static bool is_derived_kind(const char *kind)
{
    return strcmp(kind, IMAGE_VERSION_WRITES_KIND) == 0 ||
           strcmp(kind, IMAGE_VERSION_CONFLICT_KIND) == 0;
}

int sq_objects_state(struct metastore *ms, struct meta_event **out, size_t *n_out, struct err *e)
{
    *out = NULL;
    *n_out = 0;
    struct sq_conn *c = sq_conn_of(ms, e);
    if (c == NULL)
        return -1;
    struct sql_stmt *s;
    int rc = sq_query(c, SQ_OBJECTS_ALL, &s, e, "");
    if (rc < 0)
        return -1;
    struct meta_event *list = NULL;
    size_t n = 0;
    int row = rc == SQL_ROW;
    for (; row == 1; row = sq_next_row(c, s, e)) {
        const char *kind = sql_col_text(s, 0);
        if (kind == NULL || is_derived_kind(kind))
            continue;
        bool is_deleted = sql_col_int64(s, 5) != 0 || sql_col_is_null(s, 2);
        struct meta_event *ev = record_add(&list, &n, is_deleted ? "object_delete" : "object_put",
                                           NULL, sql_col_int64(s, 3), sql_col_text(s, 4));
        ev->name = sq_col_strdup(s, 1);
        const char *value = is_deleted ? NULL : sql_col_text(s, 2);
        char *opened = value ? sq_seal_value(c->store, kind, value, false) : NULL;
        struct buf p;
        buf_init(&p, SQ_PAYLOAD_MAX_BYTES);
        buf_appends(&p, "{\"kind\":");
        buf_append_json_string(&p, kind);
        if (value != NULL) {
            buf_appends(&p, ",\"value\":");
            buf_appends(&p, opened ? opened : value);
        }
        buf_appends(&p, "}");
        free(opened);
        ev->payload = p.is_too_big ? NULL : buf_steal(&p, NULL);
        buf_fini(&p);
        if (ev->payload == NULL) {
            err_set(e, ERR_INTERNAL, "an object is too large to send");
            row = -1;
            break;
        }
    }
    sq_stmt_done(s);
    if (row < 0) {
        records_free(list, n);
        return -1;
    }
    *out = list;
    *n_out = n;
    return 0;
}

/* The derived own statuses of a repository (sq_status_own_derived_of_repo), collected. */
struct own_statuses {
    struct meta_event *list;
    size_t n;
    const char *repo;
    char **digests; /* of the derived ones, in byte order: their rows are replaced */
    size_t n_digests;
};

static void own_status_add(void *arg, const char *digest, const struct meta_status *st,
                           int64_t hlc)
{
    struct own_statuses *o = arg;
    struct meta_event *ev = record_add(&o->list, &o->n, "status", o->repo, hlc > 0 ? hlc : 1,
                                       st->region);
    ev->digest = xstrdup(digest);
    struct buf p;
    buf_init(&p, 64 * 1024);
    sq_status_payload(&p, st);
    ev->payload = buf_steal(&p, NULL);
    buf_fini(&p);
    o->digests = xrealloc(o->digests, (o->n_digests + 1) * sizeof(*o->digests));
    o->digests[o->n_digests++] = ev->digest;
}

static int digest_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int sq_repo_statuses(struct metastore *ms, const char *repo, struct meta_event **out, size_t *n_out,
                     struct err *e)
{
    *out = NULL;
    *n_out = 0;
    struct sq_conn *c = sq_conn_of(ms, e);
    if (c == NULL)
        return -1;
    /* One snapshot: the rows and the manifests this region's derived statuses come from. */
    if (sq_tx_begin(c, false, e) != 0)
        return -1;
    struct own_statuses own = {.repo = repo};
    if (sq_status_own_derived_of_repo(c, repo, own_status_add, &own, e) != 0) {
        sq_tx_rollback(c);
        free(own.digests);
        records_free(own.list, own.n);
        return -1;
    }
    if (own.n_digests > 1) /* NULL when none: qsort and bsearch take no NULL */
        qsort(own.digests, own.n_digests, sizeof(*own.digests), digest_cmp);
    struct sql_stmt *s;
    int rc = sq_query(c, SQ_STATUS_OF_REPO, &s, e, "t", repo);
    if (rc < 0) {
        sq_tx_rollback(c);
        free(own.digests);
        records_free(own.list, own.n);
        return -1;
    }
    struct meta_event *list = own.list;
    size_t n = own.n;
    int row = rc == SQL_ROW;
    for (; row == 1; row = sq_next_row(c, s, e)) {
        struct meta_status st = {.region = (char *)sql_col_text(s, 1),
                                 .state = (char *)sql_col_text(s, 2),
                                 .bytes_done = sql_col_int64(s, 3),
                                 .bytes_total = sql_col_int64(s, 4),
                                 .updated_ms = sql_col_int64(s, 5),
                                 .details = (char *)sql_col_text(s, 6)};
        const char *digest = (const char *)sql_col_text(s, 0);
        if (st.region == NULL || st.state == NULL || digest == NULL)
            continue;
        /* A row of this region not Completed of a visible manifest: the derived status
         * stands for it (meta_repl.c, "The own status"). */
        if (own.n_digests > 0 && strcmp(st.region, c->store->region) == 0 &&
            bsearch(&digest, own.digests, own.n_digests, sizeof(*own.digests), digest_cmp))
            continue;
        /* Its clock says which deletes it is later than (merge_status): the report's, or
         * for a row of a release before the clock, every delete here (a delete drops the
         * rows it ends: sq_tomb_merge). */
        int64_t hlc = sql_col_int64(s, 7);
        int64_t tomb_hlc = sql_col_is_null(s, 8) ? 0 : sql_col_int64(s, 8);
        if (hlc <= 0)
            hlc = tomb_hlc > 0 ? tomb_hlc : 1;
        struct meta_event *ev = record_add(&list, &n, "status", repo, hlc, st.region);
        ev->digest = xstrdup(digest);
        struct buf p;
        buf_init(&p, 64 * 1024);
        sq_status_payload(&p, &st);
        ev->payload = buf_steal(&p, NULL);
        buf_fini(&p);
    }
    sq_stmt_done(s);
    free(own.digests);
    if (row < 0) {
        sq_tx_rollback(c);
        records_free(list, n);
        return -1;
    }
    sq_tx_commit(c, e);
    *out = list;
    *n_out = n;
    return 0;
}

int sq_state_forget(struct metastore *ms, const struct meta_event *rec, struct err *e)
{
    struct sq_conn *c = sq_conn_of(ms, e);
    if (c == NULL)
        return -1;
    bool is_manifest = strcmp(rec->kind, "manifest_put") == 0;
    bool is_tag = strcmp(rec->kind, "tag_set") == 0 || strcmp(rec->kind, "tag_delete") == 0;
    if (rec->repo == NULL || (is_manifest && rec->digest == NULL) || (is_tag && rec->name == NULL))
        return err_set(e, ERR_BAD_REQUEST, "record without its fields");
    if (!is_manifest && !is_tag)
        return 0;
    if (sq_tx_begin(c, true, e) != 0)
        return -1;
    int64_t repo_id;
    int rc = sq_repo_find(c, rec->repo, &repo_id, e);
    if (rc < 0)
        goto fail;
    if (is_manifest && rc == 0 &&
        (sq_exec(c, SQ_REFS_DELETE, e, "it", repo_id, rec->digest) != 0 ||
         sq_exec(c, SQ_MANIFEST_DELETE, e, "it", repo_id, rec->digest) != 0))
        goto fail;
    if (is_tag && sq_exec(c, SQ_TREG_DELETE, e, "tt", rec->repo, rec->name) != 0)
        goto fail;
    return sq_tx_commit(c, e);
fail:
    sq_tx_rollback(c);
    return -1;
}

int sq_log_stats(struct metastore *ms, int64_t *n_events, int64_t *n_tombs, struct err *e)
{
    *n_events = *n_tombs = 0;
    struct sq_conn *c = sq_conn_of(ms, e);
    if (c == NULL)
        return -1;
    struct sql_stmt *s;
    int rc = sq_query(c, SQ_EVENTS_COUNT, &s, e, "");
    if (rc < 0)
        return -1;
    *n_events = rc == SQL_ROW ? sql_col_int64(s, 0) : 0;
    sq_stmt_done(s);
    rc = sq_query(c, SQ_TOMBS_COUNT, &s, e, "");
    if (rc < 0)
        return -1;
    *n_tombs = rc == SQL_ROW ? sql_col_int64(s, 0) : 0;
    sq_stmt_done(s);
    rc = sq_query(c, SQ_TREGS_DELETED_COUNT, &s, e, "");
    if (rc < 0)
        return -1;
    *n_tombs += rc == SQL_ROW ? sql_col_int64(s, 0) : 0;
    sq_stmt_done(s);
    return 0;
}

/* The status of a tag: has a peer applied the register's last write (metastore.h)? Every
 * event of an origin has a higher clock than the one before it (sq_hlc_next), but for those
 * written at the lowest clock (the bootstrap admin, identities published at open: also
 * after other events), which are skipped; a tag write is never one. So "ack covers the
 * write" is "the first event of its origin that ack lacks, skipping those, is later than
 * it"; or, when there is none, the write is one this log holds. Only when this log holds
 * every event after ack (the next one is here, or ack has all applied here): else the
 * next one was compacted away and nothing tells. */
int sq_tag_acked(struct metastore *ms, const char *repo, const char *tag,
                 const struct digest *d, const char *peer, const struct meta_vv *ack,
                 bool *is_acked, struct err *e)
{
    *is_acked = false;
    char *origin = NULL;
    struct sq_conn *c = sq_conn_of(ms, e);
    if (c == NULL || sq_tx_begin(c, false, e) != 0)
        return -1;
    struct sql_stmt *s;
    int rc = sq_query(c, SQ_TREG_GET, &s, e, "tt", repo, tag);
    if (rc < 0)
        goto fail;
    bool is_named = rc == SQL_ROW && !sql_col_is_null(s, 0) &&
                    strcmp((const char *)sql_col_text(s, 0), d->str) == 0;
    int64_t hlc = rc == SQL_ROW ? sql_col_int64(s, 1) : 0;
    origin = rc == SQL_ROW ? sq_col_strdup(s, 2) : NULL;
    sq_stmt_done(s);
    if (!is_named || origin == NULL) {
        free(origin);
        return sq_tx_commit(c, e);
    }
    if (origin[0] == '\0' || strcmp(origin, peer) == 0) {
        /* written before replication (clock 0), or by the peer itself */
        free(origin);
        *is_acked = true;
        return sq_tx_commit(c, e);
    }
    if (ack != NULL) {
        int64_t acked = meta_vv_get(ack, origin), applied = 0, newest_hlc = 0;
        rc = sq_query(c, SQ_ORIGIN_CLOCK, &s, e, "ti", origin, (int64_t)SQ_ACCESS_LOW_HLC);
        if (rc < 0)
            goto fail;
        if (rc == SQL_ROW) {
            applied = sql_col_int64(s, 0);
            newest_hlc = sql_col_int64(s, 1);
        }
        sq_stmt_done(s);
        bool is_next_here = acked >= applied;
        if (!is_next_here) {
            rc = sq_query(c, SQ_EVENT_CLOCK, &s, e, "ti", origin, acked + 1);
            if (rc < 0)
                goto fail;
            is_next_here = rc == SQL_ROW;
            sq_stmt_done(s);
        }
        if (is_next_here) {
            rc = sq_query(c, SQ_EVENT_CLOCK_AFTER, &s, e, "tii", origin, acked,
                          (int64_t)SQ_ACCESS_LOW_HLC);
            if (rc < 0)
                goto fail;
            /* The first later event is after the write, or, with none, the write is here
             * (not a register merged from a peer's state ahead of its event). */
            *is_acked = rc == SQL_ROW ? sql_col_int64(s, 0) > hlc : hlc <= newest_hlc;
            sq_stmt_done(s);
        }
    }
    free(origin);
    return sq_tx_commit(c, e);

fail:
    free(origin);
    sq_tx_rollback(c);
    return -1;
}
