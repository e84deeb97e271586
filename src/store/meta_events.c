/* The event log, backend-neutral: the hybrid logical clock of the store, the version
 * vector, appending events (inside the caller's write transaction, so the log and the
 * state it describes never disagree), reading the log for peers (events_read, with derived
 * payloads) and for the local feed (events_since), peer cursors and the log head. */
#include "metastore.h"

#include <inttypes.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "hlc.h"
#include "log.h"
#include "metastore_sqlite_int.h"
#include "util.h"

/* The hybrid logical clock (hlc.c) of this store. Called inside the write transaction,
 * so hlc order is commit order on this node. On a database that several nodes of the
 * region share (PostgreSQL), the first call of a write transaction first moves the clock
 * past the newest one in the log: another node may have written a later clock than this
 * one's (clock skew, or the same millisecond), and writers are serialized, so nothing
 * newer can commit before this transaction ends. Every event of the region then has a
 * clock above the one before it in origin_seq order, and no two share one. */
int64_t sq_hlc_next(struct sq_conn *c)
{
    struct sq_store *st = c->store;
    if (st->drv->dialect != SQL_DIALECT_SQLITE && c->is_write_tx && !c->is_clock_synced) {
        struct err e = {0};
        struct sql_stmt *s;
        int rc = sq_query(c, SQ_HLC_MAX, &s, &e, "");
        /* On failure the transaction is broken: its commit fails too, nothing is stamped. */
        if (rc >= 0) {
            if (rc == SQL_ROW && !sql_col_is_null(s, 0))
                sq_hlc_seen(st, (uint64_t)sql_col_int64(s, 0));
            sq_stmt_done(s);
            c->is_clock_synced = true;
        }
    }
    AZ(pthread_mutex_lock(&st->mu));
    st->hlc_last = (int64_t)hlc_tick((uint64_t)st->hlc_last, util_now_ms());
    int64_t v = st->hlc_last;
    AZ(pthread_mutex_unlock(&st->mu));
    return v;
}

/* Moves the clock past a timestamp seen from a peer. */
void sq_hlc_seen(struct sq_store *st, uint64_t remote)
{
    AZ(pthread_mutex_lock(&st->mu));
    st->hlc_last = (int64_t)hlc_observe((uint64_t)st->hlc_last, remote, util_now_ms());
    AZ(pthread_mutex_unlock(&st->mu));
}

/* Reads the version-vector entry of origin (0 if none) inside a transaction. */
int sq_vv_read(struct sq_conn *c, const char *origin, int64_t *seq, struct err *e)
{
    struct sql_stmt *s;
    int rc = sq_query(c, SQ_VV_GET_ONE, &s, e, "t", origin);
    if (rc < 0)
        return -1;
    *seq = rc == SQL_ROW ? sql_col_int64(s, 0) : 0;
    sq_stmt_done(s);
    return 0;
}

/* Appends one event row with an explicit origin, origin_seq and hlc, and advances the
 * version vector; the caller's write transaction makes both durable together. */
int sq_event_insert(struct sq_conn *c, const char *origin, int64_t origin_seq, int64_t hlc,
                    const char *kind, const char *repo, const char *name, const char *digest,
                    const char *payload, struct err *e)
{
    if (sq_exec(c, SQ_EVENT_INSERT, e, "tittttti", origin, hlc, kind, repo, name, digest, payload,
                origin_seq) != 0)
        return -1;
    return sq_exec(c, SQ_VV_SET, e, "ti", origin, origin_seq);
}

/* Appends one local event inside the caller's write transaction, stamped with the next
 * sequence number of this region and a fresh clock (*hlc_out if non-NULL). payload is
 * a JSON object or NULL. */
int sq_event_append_clock(struct sq_conn *c, const char *kind, const char *repo, const char *name,
                          const char *digest, const char *payload, int64_t hlc, struct err *e)
{
    struct sq_store *st = c->store;
    int64_t seq;
    if (sq_vv_read(c, st->region, &seq, e) != 0)
        return -1;
    return sq_event_insert(c, st->region, seq + 1, hlc, kind, repo, name, digest, payload, e);
}

int sq_event_append(struct sq_conn *c, const char *kind, const char *repo, const char *name,
                    const char *digest, const char *payload, struct err *e)
{
    return sq_event_append_clock(c, kind, repo, name, digest, payload, sq_hlc_next(c), e);
}

/* Event feed -------------------------------------------------------------- */

/* Appends column i as a JSON string, or null. */
static void json_text_col(struct buf *b, struct sql_stmt *s, int i)
{
    const unsigned char *v = sql_col_text(s, i);
    if (v == NULL)
        buf_appends(b, "null");
    else
        buf_append_json_string(b, (const char *)v);
}

int sq_events_since(struct metastore *ms, int64_t after_seq, size_t max, struct buf *out_json,
                    int64_t *last_seq, struct err *e)
{
    AN(out_json);
    *last_seq = after_seq;
    struct sq_conn *c = sq_conn_of(ms, e);
    if (c == NULL)
        return -1;
    if (buf_appends(out_json, "[") != 0)
        goto too_big;
    if (max == 0)
        goto finish;

    int64_t limit = max > (size_t)INT64_MAX ? INT64_MAX : (int64_t)max;
    struct sql_stmt *s;
    int rc = sq_query(c, SQ_EVENTS_SINCE, &s, e, "ii", after_seq, limit);
    if (rc < 0)
        return -1;
    struct buf one;
    buf_init(&one, out_json->max_bytes);
    size_t n = 0;
    int row = rc == SQL_ROW ? 1 : 0;
    while (row == 1) {
        buf_reset(&one);
        int64_t seq = sql_col_int64(s, 0);
        const char *kind = sql_col_text(s, 3);
        char *derived = NULL;
        if (sql_col_is_null(s, 7) && kind != NULL) {
            bool failed;
            derived = sq_event_payload_derive(c, &kind, sql_col_text(s, 1), sql_col_text(s, 4),
                                              sql_col_text(s, 6), &failed, e);
            if (failed) {
                row = -1;
                break;
            }
        }
        buf_printf(&one, "%s{\"seq\":%" PRId64 ",\"origin\":", n > 0 ? "," : "", seq);
        json_text_col(&one, s, 1);
        buf_printf(&one, ",\"hlc\":%" PRId64 ",\"kind\":", (int64_t)sql_col_int64(s, 2));
        if (kind != NULL)
            buf_append_json_string(&one, kind);
        else
            buf_appends(&one, "null");
        buf_appends(&one, ",\"repo\":");
        json_text_col(&one, s, 4);
        buf_appends(&one, ",\"name\":");
        json_text_col(&one, s, 5);
        buf_appends(&one, ",\"digest\":");
        json_text_col(&one, s, 6);
        buf_appends(&one, ",\"payload\":");
        /* Payloads are JSON objects the store wrote itself. */
        if (derived == NULL)
            derived = sq_event_payload_expand(kind, sql_col_text(s, 1), sql_col_text(s, 7));
        const char *payload = derived != NULL ? derived : sql_col_text(s, 7);
        if (derived == NULL && sq_event_payload_is_short(payload))
            payload = NULL; /* damaged short form (logged): never raw text in the JSON */
        char *clear = sq_seal_payload(c->store, sql_col_text(s, 3), payload, false);
        buf_appends(&one, clear ? clear : payload ? payload : "null");
        free(clear);
        buf_appends(&one, "}");
        free(derived);
        /* Keep one byte for the closing bracket. */
        if (one.is_too_big || out_json->len + one.len + 1 > out_json->max_bytes)
            break;
        buf_append(out_json, one.data, one.len);
        *last_seq = seq;
        n++;
        row = sq_next_row(c, s, e);
    }
    sq_stmt_done(s);
    buf_fini(&one);
    if (row < 0) {
        *last_seq = after_seq;
        return -1;
    }
    if (row == 1 && n == 0)
        goto too_big;

finish:
    if (buf_appends(out_json, "]") != 0)
        goto too_big;
    return 0;

too_big:
    *last_seq = after_seq;
    log_error("metastore", "failed to list events: output buffer of %zu bytes too small",
              out_json->max_bytes);
    return err_set(e, ERR_INTERNAL, NULL);
}

int sq_hlc_seed(struct sq_conn *c, struct err *e)
{
    struct sql_stmt *s;
    int rc = sq_query(c, SQ_HLC_MAX, &s, e, "");
    if (rc < 0)
        return -1;
    /* The clock never goes below what the log already holds, across restarts too. */
    c->store->hlc_last = rc == SQL_ROW ? sql_col_int64(s, 0) : 0;
    sq_stmt_done(s);
    /* Nor below what compaction or a snapshot took out of the log (log_horizon). */
    rc = sq_query(c, SQ_HORIZON_MAX_HLC, &s, e, "");
    if (rc < 0)
        return -1;
    int64_t h = rc == SQL_ROW ? sql_col_int64(s, 0) : 0;
    if (h > c->store->hlc_last)
        c->store->hlc_last = h;
    sq_stmt_done(s);
    /* The opening clock: every event this process writes is above it, and every event the
     * region wrote before is below it (its wall clock was earlier then), also one it lost
     * to a restore from an older copy (restored_probe answers it: meta_restored.c). */
    c->store->hlc_last = (int64_t)hlc_tick((uint64_t)c->store->hlc_last, util_now_ms());
    c->store->opened_hlc = c->store->hlc_last;
    return 0;
}

/* ==========================================================================
 * Replication (repl.c): the event log read by peers, events applied from them, pending
 * manifests, per-region status, replicated objects, peer cursors, anti-entropy.
 *
 *   peer event --event_apply--> vv check --merge_event--> tag_regs / manifest_tombs /
 *                                                          manifests (is_visible = 0) /
 *                                                          objects / repl_status
 *                                           \--> appended to events (relay), vv advanced
 *   fetcher --pending_list--> content fetched --pending_complete--> is_visible = 1
 * ========================================================================== */

static void event_from_row(struct sql_stmt *s, struct meta_event *ev)
{
    ev->seq = sql_col_int64(s, 0);
    ev->origin = sq_col_strdup(s, 1);
    ev->origin_seq = sql_col_int64(s, 2);
    ev->hlc = (uint64_t)sql_col_int64(s, 3);
    ev->kind = sq_col_strdup(s, 4);
    ev->repo = sq_col_strdup(s, 5);
    ev->name = sq_col_strdup(s, 6);
    ev->digest = sq_col_strdup(s, 7);
    ev->payload = sq_col_strdup(s, 8);
}

#define EVENTS_SCAN_MAX 20000 /* rows examined per read, so one call stays short */

int sq_events_read(struct metastore *ms, int64_t after_seq, const struct meta_vv *vv, size_t max,
                   struct meta_event **out, size_t *n_out, int64_t *last_seq, struct err *e)
{
    *out = NULL;
    *n_out = 0;
    *last_seq = after_seq;
    struct sq_conn *c = sq_conn_of(ms, e);
    if (c == NULL)
        return -1;
    if (sq_tx_begin(c, false, e) != 0)
        return -1;
    struct sql_stmt *s;
    int rc = sq_query(c, SQ_EVENTS_READ, &s, e, "ii", after_seq, (int64_t)EVENTS_SCAN_MAX);
    if (rc < 0)
        goto fail;
    struct meta_event *list = xcalloc(max ? max : 1, sizeof(*list));
    size_t n = 0;
    int row = rc == SQL_ROW;
    while (row == 1 && n < max) {
        int64_t seq = sql_col_int64(s, 0);
        const char *origin = sql_col_text(s, 1);
        int64_t origin_seq = sql_col_int64(s, 2);
        *last_seq = seq;
        if (origin_seq > meta_vv_get(vv, origin ? origin : "")) {
            struct meta_event *ev = &list[n++];
            event_from_row(s, ev);
            if (ev->payload == NULL && ev->kind != NULL) {
                const char *kind = ev->kind;
                bool failed;
                ev->payload =
                    sq_event_payload_derive(c, &kind, ev->origin, ev->repo, ev->digest, &failed, e);
                if (failed) {
                    row = -1;
                    break;
                }
                if (kind != ev->kind) {
                    free(ev->kind);
                    ev->kind = xstrdup(kind);
                }
            }
            char *expanded = sq_event_payload_expand(ev->kind, ev->origin, ev->payload);
            if (expanded != NULL) {
                free(ev->payload);
                ev->payload = expanded;
            } else if (sq_event_payload_is_short(ev->payload)) {
                /* Damaged: peers get a no-op, never text they cannot parse. */
                log_error("metastore", "event %" PRId64 " has a damaged short payload: sent as"
                          " a no-op", ev->seq);
                free(ev->payload);
                ev->payload = NULL;
                free(ev->kind);
                ev->kind = xstrdup("superseded");
            }
            char *clear = sq_seal_payload(c->store, ev->kind, ev->payload, false);
            if (clear != NULL) {
                free(ev->payload);
                ev->payload = clear;
            }
        }
        row = sq_next_row(c, s, e);
    }
    sq_stmt_done(s);
    if (row < 0) {
        for (size_t i = 0; i < n; i++)
            meta_event_fini(&list[i]);
        free(list);
        goto fail;
    }
    sq_tx_commit(c, e);
    /* Nothing leaves the region before it is durable here: a commit is visible to readers
     * a moment before its sync completes, and a peer holding an event its origin lost in a
     * power failure would diverge (the origin would reuse the sequence number). A sync
     * requested after the read covers every commit the read saw; concurrent commits share
     * it (group commit). The same holds when the filter dropped every row read: the
     * reader's cursor moves past them, and a crash that lost them would let this region
     * reuse their positions for events that reader would then never be sent. */
    if (*last_seq != after_seq && sq_durable_wait(c->store, e) != 0) {
        for (size_t k = 0; k < n; k++)
            meta_event_fini(&list[k]);
        free(list);
        *last_seq = after_seq;
        return -1;
    }
    *out = list;
    *n_out = n;
    return 0;
fail:
    sq_tx_rollback(c);
    return -1;
}

int sq_vv_get(struct metastore *ms, struct meta_vv *out, struct err *e)
{
    memset(out, 0, sizeof(*out));
    struct sq_conn *c = sq_conn_of(ms, e);
    if (c == NULL)
        return -1;
    struct sql_stmt *s;
    int rc = sq_query(c, SQ_VV_ALL, &s, e, "");
    if (rc < 0)
        return -1;
    for (int row = rc == SQL_ROW; row == 1; row = sq_next_row(c, s, e)) {
        out->origins = xrealloc(out->origins, (out->n + 1) * sizeof(char *));
        out->seqs = xrealloc(out->seqs, (out->n + 1) * sizeof(int64_t));
        out->origins[out->n] = sq_col_strdup(s, 0);
        out->seqs[out->n++] = sql_col_int64(s, 1);
    }
    sq_stmt_done(s);
    /* What the version vector says is here must survive a crash (sq_tx_commit_unsynced): a
     * sync requested after the read covers every commit the read saw (checking a flag
     * before the read would miss an event applied between that check and the read). */
    if (sq_durable_wait(c->store, e) != 0) {
        meta_vv_fini(out);
        return -1;
    }
    return 0;
}

int sq_cursor_get(struct metastore *ms, const char *peer, int64_t *seq, struct err *e)
{
    struct sq_conn *c = sq_conn_of(ms, e);
    if (c == NULL)
        return -1;
    struct sql_stmt *s;
    int rc = sq_query(c, SQ_CURSOR_GET, &s, e, "t", peer);
    if (rc < 0)
        return -1;
    *seq = rc == SQL_ROW ? sql_col_int64(s, 0) : 0;
    sq_stmt_done(s);
    return 0;
}

int sq_cursor_set(struct metastore *ms, const char *peer, int64_t seq, struct err *e)
{
    struct sq_conn *c = sq_conn_of(ms, e);
    if (c == NULL)
        return -1;
    sq_autocommit_lock(c);
    int rc = sq_exec(c, SQ_CURSOR_SET, e, "ti", peer, seq);
    sq_autocommit_unlock(c);
    return rc;
}

int sq_log_head(struct metastore *ms, int64_t *seq, struct err *e)
{
    struct sq_conn *c = sq_conn_of(ms, e);
    if (c == NULL)
        return -1;
    struct sql_stmt *s;
    int rc = sq_query(c, SQ_LOG_HEAD, &s, e, "");
    if (rc < 0)
        return -1;
    *seq = rc == SQL_ROW ? sql_col_int64(s, 0) : 0;
    sq_stmt_done(s);
    return 0;
}
