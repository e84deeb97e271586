/* SQL metastore (backend-neutral): webhook deliveries (the queue webhook.c works through), kept in the
 * metastore so that a failing sink never loses one. Region-local rows, no event rows. */

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
#include "url.h"
#include "util.h"

/* ==========================================================================
 * Webhook deliveries (webhook.c). Region-local rows, no event rows.
 * Kept apart from the migrated tables: the table is created idempotently at open
 * (CREATE ... IF NOT EXISTS) rather than by a user_version step, and the few
 * statements are prepared per call.
 * XXX: fold the table into the next schema migration and the statements into
 * SQ_STATEMENTS once the replication schema settles.
 *
 *   webhook_deliveries: seq (insertion order) | id (UUID) | webhook | action | payload
 *     | state pending/delivered/failed | attempts | status_code | latency_ms | response
 *     | created_ms | updated_ms | next_attempt_ms
 *   pending --attempt 2xx--> delivered
 *   pending --attempt fails--> pending (next_attempt_ms later) | failed (attempts used up)
 * ========================================================================== */

#define DQ_COLUMNS                                                                              \
    "id, webhook, action, payload, state, attempts, status_code, latency_ms, response,"        \
    " created_ms, updated_ms, next_attempt_ms"

static const char *const delivery_states[] = {
    [META_DELIVERY_PENDING] = "pending",
    [META_DELIVERY_DELIVERED] = "delivered",
    [META_DELIVERY_FAILED] = "failed",
};

static void delivery_from_row(struct sql_stmt *s, struct meta_delivery *d)
{
    memset(d, 0, sizeof(*d));
    const unsigned char *id = sql_col_text(s, 0);
    snprintf(d->id, sizeof(d->id), "%s", id != NULL ? (const char *)id : "");
    d->webhook = sq_col_strdup(s, 1);
    d->action = sq_col_strdup(s, 2);
    d->payload = sq_col_strdup(s, 3);
    const unsigned char *state = sql_col_text(s, 4);
    d->state = META_DELIVERY_PENDING;
    for (int i = 0; i < 3; i++) {
        if (state != NULL && strcmp((const char *)state, delivery_states[i]) == 0)
            d->state = (enum meta_delivery_state)i;
    }
    d->attempts = (int)sql_col_int64(s, 5);
    d->status_code = (int)sql_col_int64(s, 6);
    d->latency_ms = sql_col_int64(s, 7);
    d->response = sq_col_strdup(s, 8);
    d->created_ms = sql_col_int64(s, 9);
    d->updated_ms = sql_col_int64(s, 10);
    d->next_attempt_ms = sql_col_int64(s, 11);
}

/* Reads every row of s (first step result rc) into out; finalizes s. */
static int collect_deliveries(struct sq_conn *c, struct sql_stmt *s, int rc,
                              struct meta_delivery_list *out, struct err *e)
{
    size_t cap = 0;
    int row = rc == SQL_ROW ? 1 : 0;
    while (row == 1) {
        if (out->n == cap) {
            cap = cap ? cap * 2 : 16;
            out->items = xrealloc(out->items, cap * sizeof(*out->items));
        }
        delivery_from_row(s, &out->items[out->n++]);
        row = sq_next_row(c, s, e);
    }
    sql_finalize(s);
    if (row < 0) {
        meta_delivery_list_fini(out);
        return -1;
    }
    return 0;
}

int sq_delivery_add(struct metastore *ms, const struct meta_delivery *items, size_t n,
                    struct err *e)
{
    static const char sql[] = "INSERT INTO webhook_deliveries(" DQ_COLUMNS ")"
                              " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)";
    struct sq_conn *c = sq_conn_of(ms, e);
    if (c == NULL)
        return -1;
    if (n == 0)
        return 0;
    if (sq_tx_begin(c, true, e) != 0)
        return -1;
    for (size_t i = 0; i < n; i++) {
        const struct meta_delivery *d = &items[i];
        struct sql_stmt *s;
        if (sq_run(c, sql, &s, e, "tttttiiitiii", d->id, d->webhook, d->action, d->payload,
                   delivery_states[d->state], (int64_t)d->attempts, (int64_t)d->status_code,
                   d->latency_ms, d->response, d->created_ms, d->updated_ms,
                   d->next_attempt_ms) < 0)
            goto fail;
        sql_finalize(s);
    }
    /* In a unit of work (ms_write_begin_f) the deliveries are as durable as the effect they
     * announce: synced with a push, unsynced with an event applied from a peer (a crash
     * that loses it loses both, and the event is fetched and announced again). */
    if (c->is_unit)
        return sq_tx_commit_unsynced(c, e);
    return sq_tx_commit(c, e);
fail:
    sq_tx_rollback(c);
    return -1;
}

/* The webhook send locks (sq_delivery_due): two-key advisory locks, first key this, second
 * a hash of the webhook's name. */
#define WEBHOOK_SEND_LOCK "1836542001" /* "mwh1" */
#define WEBHOOK_HASH(x) "(hashtext(" x ") & 2147483647)"

int sq_delivery_due(struct metastore *ms, int64_t now_ms, int64_t claim_ms, size_t max,
                    const char *const *skip, size_t n_skip, struct meta_delivery_list *out,
                    int64_t *next_due_ms, struct err *e)
{
    /* Unused skip slots hold "", which names no webhook (names are never empty). */
    static const char due[] = "SELECT " DQ_COLUMNS " FROM webhook_deliveries"
                              " WHERE state = 'pending' AND next_attempt_ms <= ?1"
                              " AND webhook NOT IN (?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
                              " ORDER BY next_attempt_ms, seq LIMIT ?2";
    static const char next[] = "SELECT min(next_attempt_ms) FROM webhook_deliveries"
                               " WHERE state = 'pending' AND next_attempt_ms > ?1";
    static const char claim[] = "UPDATE webhook_deliveries SET next_attempt_ms = ?2"
                                " WHERE id = ?1";
    /* PostgreSQL: one send at a time per webhook across the nodes too. The dispatcher
     * holds a session advisory lock (two-key form, first key WEBHOOK_SEND_LOCK) per webhook
     * it has a send in flight for; a webhook whose lock another node holds is not due
     * here. The locks of webhooks no longer in skip (their send is done) are released
     * first. A dead node's locks go with its connection; a lock whose session did
     * nothing for a claim's length (a frozen node: its kernel still answers keepalives)
     * is ignored, so its claims run out as before and another node sends them. */
    /* The held locks are read once (MATERIALIZED), not once per row read. */
    static const char due_pg[] =
        "WITH held AS MATERIALIZED (SELECT l.objid::bigint AS h FROM pg_locks l"
        " LEFT JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'advisory'"
        " AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        " AND l.classid = " WEBHOOK_SEND_LOCK " AND l.objsubid = 2 AND l.granted"
        " AND (a.state_change IS NULL"
        " OR a.state_change > now() - CAST(?11 AS BIGINT) * interval '1 millisecond'))"
        " SELECT " DQ_COLUMNS " FROM webhook_deliveries"
        " WHERE state = 'pending' AND next_attempt_ms <= ?1"
        " AND webhook NOT IN (?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
        " AND " WEBHOOK_HASH("webhook") " NOT IN (SELECT h FROM held)"
        " ORDER BY next_attempt_ms, seq LIMIT ?2";
    static const char release_pg[] =
        "SELECT count(pg_advisory_unlock(" WEBHOOK_SEND_LOCK ", l.objid::bigint::integer))"
        " FROM pg_locks l WHERE l.locktype = 'advisory' AND l.pid = pg_backend_pid()"
        " AND l.classid = " WEBHOOK_SEND_LOCK " AND l.objsubid = 2"
        " AND l.objid::bigint <> ALL (SELECT " WEBHOOK_HASH("n") " FROM unnest(ARRAY["
        "CAST(?1 AS TEXT), CAST(?2 AS TEXT), CAST(?3 AS TEXT), CAST(?4 AS TEXT),"
        " CAST(?5 AS TEXT), CAST(?6 AS TEXT), CAST(?7 AS TEXT), CAST(?8 AS TEXT)]) n"
        " WHERE n <> '')";
    /* Taken once per session (two names of one hash are one lock: never counted twice,
     * so one release frees it). */
    static const char lock_pg[] =
        "SELECT CASE WHEN EXISTS (SELECT 1 FROM pg_locks l WHERE l.locktype = 'advisory'"
        " AND l.pid = pg_backend_pid() AND l.classid = " WEBHOOK_SEND_LOCK
        " AND l.objsubid = 2 AND l.objid::bigint = " WEBHOOK_HASH("CAST(?1 AS TEXT)") ") THEN 1"
        " WHEN pg_try_advisory_lock(" WEBHOOK_SEND_LOCK ", " WEBHOOK_HASH("CAST(?1 AS TEXT)")
        ") THEN 1 ELSE 0 END";
    memset(out, 0, sizeof(*out));
    *next_due_ms = INT64_MAX;
    struct sq_conn *c = sq_conn_of(ms, e);
    if (c == NULL)
        return -1;
    ASSERT(n_skip <= META_DELIVERY_SKIP_MAX);
    const char *sk[META_DELIVERY_SKIP_MAX];
    for (size_t i = 0; i < META_DELIVERY_SKIP_MAX; i++)
        sk[i] = i < n_skip ? skip[i] : "";
    int64_t limit = max > (size_t)INT64_MAX ? INT64_MAX : (int64_t)max;
    /* A claim is a write: writers are serialized (across nodes on PostgreSQL), so two
     * workers never read the same due row before one of them has claimed it.
     * A SQLite store belongs to one process with one worker: nothing to claim against, and
     * a claim left by a crash would only hold its deliveries back after the restart. */
    bool is_claim = claim_ms > 0 && ((struct sq_store *)ms)->drv->dialect != SQL_DIALECT_SQLITE;
    if (sq_tx_begin(c, is_claim, e) != 0)
        return -1;
    struct sql_stmt *s;
    int rc;
    if (is_claim) {
        rc = sq_run(c, release_pg, &s, e, "tttttttt", sk[0], sk[1], sk[2], sk[3], sk[4], sk[5],
                    sk[6], sk[7]);
        if (rc < 0)
            goto fail;
        sql_finalize(s);
    }
    if (is_claim)
        rc = sq_run(c, due_pg, &s, e, "iitttttttti", now_ms, limit, sk[0], sk[1], sk[2], sk[3],
                    sk[4], sk[5], sk[6], sk[7], claim_ms);
    else
        rc = sq_run(c, due, &s, e, "iitttttttt", now_ms, limit, sk[0], sk[1], sk[2], sk[3],
                    sk[4], sk[5], sk[6], sk[7]);
    if (rc < 0 || collect_deliveries(c, s, rc, out, e) != 0)
        goto fail;
    for (size_t i = 0; is_claim && i < out->n; i++) {
        const struct meta_delivery *d = &out->items[i];
        /* Not taken only when a frozen node's session holds it (the read above ignored
         * it; writers are serialized, so no live node took it since): sent all the same. */
        if (sq_run(c, lock_pg, &s, e, "t", d->webhook) < 0)
            goto fail;
        sql_finalize(s);
        if (sq_run(c, claim, &s, e, "ti", d->id, now_ms + claim_ms) < 0)
            goto fail;
        sql_finalize(s);
    }
    if (out->n == max) {
        *next_due_ms = now_ms; /* more may be due at once */
    } else {
        rc = sq_run(c, next, &s, e, "i", now_ms);
        if (rc < 0)
            goto fail;
        if (rc == SQL_ROW && !sql_col_is_null(s, 0))
            *next_due_ms = sql_col_int64(s, 0);
        sql_finalize(s);
    }
    if (is_claim) {
        if (sq_tx_commit(c, e) != 0) {
            meta_delivery_list_fini(out);
            return -1;
        }
        return 0;
    }
    sq_tx_rollback(c); /* read-only: nothing to commit */
    /* No delivery leaves the process before it is durable, with the effect it announces:
     * an event applied from a peer commits unsynced (sq_tx_commit_unsynced), and a power
     * loss that took it back after its delivery was sent would have it fetched, applied
     * and announced again, under another delivery id. One group-commit sync per batch. */
    if (out->n > 0 && sq_durable_wait(c->store, e) != 0) {
        meta_delivery_list_fini(out);
        return -1;
    }
    return 0;
fail:
    sq_tx_rollback(c);
    meta_delivery_list_fini(out);
    return -1;
}

int sq_delivery_update(struct metastore *ms, const struct meta_delivery *d,
                       struct err *e)
{
    static const char sql[] = "UPDATE webhook_deliveries SET state = ?2, attempts = ?3,"
                              " status_code = ?4, latency_ms = ?5, response = ?6,"
                              " updated_ms = ?7, next_attempt_ms = ?8 WHERE id = ?1";
    struct sq_conn *c = sq_conn_of(ms, e);
    if (c == NULL)
        return -1;
    struct sql_stmt *s;
    sq_autocommit_lock(c);
    int rc = sq_run(c, sql, &s, e, "ttiiitii", d->id, delivery_states[d->state],
                    (int64_t)d->attempts, (int64_t)d->status_code, d->latency_ms, d->response,
                    d->updated_ms, d->next_attempt_ms);
    if (rc >= 0)
        sql_finalize(s);
    int64_t n_changed = rc >= 0 ? sql_changes(c->db) : 0;
    sq_autocommit_unlock(c);
    if (rc < 0)
        return -1;
    if (n_changed == 0)
        return err_set(e, ERR_NOT_FOUND, "no such delivery");
    return 0;
}

int sq_delivery_list(struct metastore *ms, const char *webhook, size_t max,
                     struct meta_delivery_list *out, struct err *e)
{
    static const char sql[] = "SELECT " DQ_COLUMNS " FROM webhook_deliveries"
                              " WHERE webhook = ?1 ORDER BY seq DESC LIMIT ?2";
    memset(out, 0, sizeof(*out));
    struct sq_conn *c = sq_conn_of(ms, e);
    if (c == NULL)
        return -1;
    int64_t limit = max > (size_t)INT64_MAX ? INT64_MAX : (int64_t)max;
    struct sql_stmt *s;
    int rc = sq_run(c, sql, &s, e, "ti", webhook, limit);
    if (rc < 0)
        return -1;
    return collect_deliveries(c, s, rc, out, e);
}

int sq_delivery_prune(struct metastore *ms, const char *webhook, size_t keep,
                      const char *gone_kind, struct err *e)
{
    /* ?3: gone_kind or NULL. A re-created definition is written (and committed) before
     * anything is queued for it: this statement sees the definition whenever it sees one
     * of its deliveries, on SQLite (under wmu, like every write) and on PostgreSQL (one
     * statement, one snapshot). */
    static const char sql[] =
        "DELETE FROM webhook_deliveries WHERE webhook = ?1"
        " AND (CAST(?3 AS TEXT) IS NOT NULL OR state <> 'pending')"
        " AND NOT EXISTS (SELECT 1 FROM objects WHERE CAST(?3 AS TEXT) IS NOT NULL AND kind = ?3"
        " AND key = ?1 AND is_deleted = 0)"
        " AND seq NOT IN (SELECT seq FROM webhook_deliveries WHERE webhook = ?1"
        " AND state <> 'pending' ORDER BY seq DESC LIMIT ?2)";
    struct sq_conn *c = sq_conn_of(ms, e);
    if (c == NULL)
        return -1;
    int64_t limit = keep > (size_t)INT64_MAX ? INT64_MAX : (int64_t)keep;
    struct sql_stmt *s;
    sq_autocommit_lock(c);
    int rc = sq_run(c, sql, &s, e, "tit", webhook, limit, gone_kind);
    if (rc >= 0)
        sql_finalize(s);
    sq_autocommit_unlock(c);
    return rc < 0 ? -1 : 0;
}


/* Done once per store: auth_meta holds it from the pass that redacted the old records. */
#define DELIVERIES_REDACTED_MARK "delivery_urls_redacted"
#define UNREACHABLE_PREFIX "cannot reach " /* httpc.c's message for a failed transfer */

/* response with the URL of an unreachable receiver redacted (url_redact), or NULL when
 * it names none or is redacted already. The URL runs to the first ": " (a URL holds no
 * space), or to the end when the message was cut (err.h's msg limit). */
static char *redact_response(const char *response)
{
    size_t n_prefix = strlen(UNREACHABLE_PREFIX);
    if (response == NULL || strncmp(response, UNREACHABLE_PREFIX, n_prefix) != 0)
        return NULL;
    const char *url = response + n_prefix;
    const char *end = strstr(url, ": ");
    size_t url_len = end != NULL ? (size_t)(end - url) : strlen(url);
    char *clear = xstrndup(url, url_len);
    char *shown = url_redact(clear);
    char *out = NULL;
    if (shown != NULL && strcmp(shown, clear) != 0) {
        size_t len = n_prefix + strlen(shown) + strlen(url + url_len) + 1;
        out = xmalloc(len);
        snprintf(out, len, "%s%s%s", UNREACHABLE_PREFIX, shown, url + url_len);
    }
    free(shown);
    free(clear);
    return out;
}

int sq_delivery_redact_old(struct sq_conn *c, size_t *n_redacted, struct err *e)
{
    *n_redacted = 0;
    struct sql_stmt *s;
    int rc = sq_run(c, "SELECT 1 FROM auth_meta WHERE k = '" DELIVERIES_REDACTED_MARK "'", &s, e,
                    "");
    if (rc < 0)
        return -1;
    sql_finalize(s);
    if (rc == SQL_ROW)
        return 0;
    /* Collected first, updated after: no statement is left reading the table it writes. */
    struct meta_name_list rows = {0}; /* id, new response, ... */
    rc = sq_run(c, "SELECT id, response FROM webhook_deliveries WHERE status_code = 0"
                   " AND response LIKE '" UNREACHABLE_PREFIX "%'",
                &s, e, "");
    for (int row = rc == SQL_ROW; rc >= 0 && row == 1; row = sq_next_row(c, s, e)) {
        char *text = redact_response(sql_col_text(s, 1));
        if (text == NULL)
            continue;
        rows.names = xrealloc(rows.names, (rows.n + 2) * sizeof(*rows.names));
        rows.names[rows.n++] = sq_col_strdup(s, 0);
        rows.names[rows.n++] = text;
    }
    if (rc >= 0)
        sql_finalize(s);
    for (size_t i = 0; rc >= 0 && i + 1 < rows.n; i += 2)
        rc = sq_run_exec(c, "UPDATE webhook_deliveries SET response = ?2 WHERE id = ?1", e, "tt",
                         rows.names[i], rows.names[i + 1]);
    if (rc >= 0)
        rc = sq_run_exec(c, "INSERT INTO auth_meta(k, v) VALUES ('" DELIVERIES_REDACTED_MARK
                            "', 1)",
                         e, "");
    *n_redacted = rows.n / 2;
    meta_name_list_fini(&rows);
    return rc < 0 ? -1 : 0;
}
