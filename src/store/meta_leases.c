/* Leases and the GC fence's lock (both coordinate the nodes of a shared store).
 * Leases, backend-neutral: one row per lease in table node_leases (PostgreSQL only: a
 * SQLite database is opened by one process, which holds every lease). The holder renews
 * before the expiry; a node that dies stops renewing and another takes the lease when it
 * runs out. Expiries are in the database server's clock, not the nodes': a node whose
 * clock runs ahead would otherwise take a lease its holder keeps renewing, and one whose
 * clock runs behind would wait that much longer to take over from a dead holder. */
#include "metastore.h"

#include "metastore_sqlite_int.h"

int sq_lease_hold(struct metastore *ms, const char *name, const char *holder, int64_t ttl_ms,
                  bool *is_held, struct err *e)
{
    /* Taken or renewed in one statement: the row comes back only if holder has it. */
#define PG_NOW_MS "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)"
    static const char sql[] = "INSERT INTO node_leases(name, holder, expires_ms)"
                              " VALUES (?1, ?2, " PG_NOW_MS " + ?3) ON CONFLICT(name) DO UPDATE"
                              " SET holder = excluded.holder, expires_ms = excluded.expires_ms"
                              " WHERE node_leases.holder = excluded.holder"
                              " OR node_leases.expires_ms <= " PG_NOW_MS " RETURNING holder";
#undef PG_NOW_MS
    *is_held = false;
    struct sq_store *st = (struct sq_store *)ms;
    if (st->drv->dialect == SQL_DIALECT_SQLITE) {
        *is_held = true;
        return 0;
    }
    struct sq_conn *c = sq_conn_of(ms, e);
    if (c == NULL)
        return -1;
    if (sq_tx_begin(c, true, e) != 0)
        return -1;
    struct sql_stmt *s;
    int rc = sq_run(c, sql, &s, e, "tti", name, holder, ttl_ms);
    if (rc < 0) {
        sq_tx_rollback(c);
        return -1;
    }
    *is_held = rc == SQL_ROW;
    sql_finalize(s);
    if (sq_tx_commit(c, e) != 0) {
        *is_held = false;
        return -1;
    }
    return 0;
}

/* A session-level advisory lock ("meridiangcfence" cut to 63 bits; the writers' and the
 * migrations' locks are other keys). Taken before any transaction of the thread's
 * connection, so the order is always fence, then writers' lock: no deadlock. A connection
 * lost while holding it releases it on the server; the release then fails and is logged. */
#define PG_GC_FENCE_KEY "7882832519763681648"

int sq_gc_fence(struct metastore *ms, bool is_exclusive, bool is_enter, bool is_try,
                bool *is_held, struct err *e)
{
    *is_held = true;
    struct sq_store *st = (struct sq_store *)ms;
    if (st->drv->dialect == SQL_DIALECT_SQLITE)
        return 0;
    struct sq_conn *c = sq_conn_of(ms, e);
    if (c == NULL)
        return -1;
    if (is_enter && is_exclusive && is_try) {
        struct sql_stmt *s;
        int rc = sq_run(c, "SELECT CASE WHEN pg_try_advisory_lock(" PG_GC_FENCE_KEY ")"
                           " THEN 1 ELSE 0 END", &s, e, "");
        if (rc < 0)
            return -1;
        *is_held = rc == SQL_ROW && sql_col_int64(s, 0) == 1;
        sql_finalize(s);
        return 0;
    }
    const char *sql = is_enter ? (is_exclusive ? "SELECT pg_advisory_lock(" PG_GC_FENCE_KEY ")"
                                               : "SELECT pg_advisory_lock_shared(" PG_GC_FENCE_KEY ")")
                               : (is_exclusive ? "SELECT pg_advisory_unlock(" PG_GC_FENCE_KEY ")"
                                               : "SELECT pg_advisory_unlock_shared(" PG_GC_FENCE_KEY ")");
    return sq_script(c, sql, is_enter ? "take the GC fence" : "release the GC fence", e);
}
