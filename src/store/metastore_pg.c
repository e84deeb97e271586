/* The PostgreSQL metastore: the SQL metastore (meta_*.c) on the libpq driver (sql_pg.c),
 * with what only this dialect has: its schema and migrations (schema/postgres/, one file
 * per step, the version kept in table meridian_schema). Several nodes may start on one
 * database at once: migrations run under a session advisory lock, so one node migrates
 * and the others wait, then find the schema current. It makes no library call itself. */
#include "metastore.h"

#include <inttypes.h>
#include <stdio.h>

#include "log.h"
#include "metastore_sqlite_int.h"
#include "schema_sql.h"
#include "util.h"

/* The schema: src/store/schema/postgres/pg_v1.sql, ... embedded as sq_schema_pg_v1, ...
 * (scripts/embed_sql.py). A change goes into a new step, never into a step's file. */
#define PG_SCHEMA_VERSION 12
/* The session advisory lock migrations hold ("meridianmigrate" cut to 63 bits); the
 * writers' lock (sql_pg.c) is another key, so a writer never waits for it. */
#define PG_MIGRATE_LOCK "7882832519763681647"

static int migrate_locked(struct sq_conn *c, struct err *e)
{
    if (sq_tx_begin(c, true, e) != 0)
        return -1;
    struct sql_stmt *s = NULL;
    if (sq_script(c, "CREATE TABLE IF NOT EXISTS meridian_schema (version BIGINT NOT NULL)",
                  "create the schema version table", e) != 0)
        goto fail;
    int rc = sq_run(c, "SELECT max(version) FROM meridian_schema", &s, e, "");
    if (rc < 0)
        goto fail;
    int64_t version = rc == SQL_ROW ? sql_col_int64(s, 0) : 0;
    sql_finalize(s);
    if (version > PG_SCHEMA_VERSION) {
        log_error("metastore",
                  "failed to open database: schema version %" PRId64
                  " is newer than this build's %d",
                  version, PG_SCHEMA_VERSION);
        err_set(e, ERR_IO, NULL);
        goto fail;
    }
    /* Step i brings the schema from version i to i + 1, in one transaction with the new
     * version number (PostgreSQL's DDL is transactional). */
    static const char *const steps[] = {sq_schema_pg_v1, sq_schema_pg_v2_gc,
                                        sq_schema_pg_v3_status_copies,
                                        sq_schema_pg_v4_leases,
                                        sq_schema_pg_v5_audit_region,
                                        sq_schema_pg_v6_compact,
                                        sq_schema_pg_v7_untagged,
                                        sq_schema_pg_v8_tags_view,
                                        sq_schema_pg_v9_manifest_refs_seq,
                                        sq_schema_pg_v10_status_clock,
                                        sq_schema_pg_v11_status_stale,
                                        sq_schema_pg_v12_tag_order};
    _Static_assert(sizeof(steps) / sizeof(steps[0]) == PG_SCHEMA_VERSION,
                   "one migration step per schema version");
    /* Steps 3 to 7 were written on four branches at once, each numbering its own step 3
     * (status copies, leases, audit region, compaction or untagged manifests: the same text
     * as the step it became). A database written by one of those commits says 3 or more
     * but may lack a step below its number: from there, steps 3 to 7 all run again. They
     * are idempotent (IF NOT EXISTS, OR REPLACE, ON CONFLICT DO NOTHING), so what is there
     * stays and what is missing is made. */
    int64_t from = version >= 3 && version < 7 ? 2 : version;
    for (int64_t v = from; v < PG_SCHEMA_VERSION; v++) {
        char what[64];
        snprintf(what, sizeof(what), "upgrade schema to version %" PRId64, v + 1);
        if (sq_script(c, steps[v], what, e) != 0 ||
            sq_run_exec(c, "DELETE FROM meridian_schema", e, "") != 0 ||
            sq_run_exec(c, "INSERT INTO meridian_schema(version) VALUES (?1)", e, "i", v + 1) != 0)
            goto fail;
    }
    if (sq_tx_commit(c, e) != 0)
        return -1;
    if (version < 1)
        log_info("metastore", "created PostgreSQL schema version %d", PG_SCHEMA_VERSION);
    else if (version < PG_SCHEMA_VERSION)
        log_info("metastore", "upgraded PostgreSQL schema from version %" PRId64 " to %d",
                 version, PG_SCHEMA_VERSION);
    return 0;
fail:
    sq_tx_rollback(c);
    return -1;
}

/* Creates or upgrades the schema, one node at a time. */
static int migrate(struct sq_conn *c, struct err *e)
{
    /* Without the statement bound: a step over a large database, or the wait for another
     * node's migration, may take longer than any request may. */
    if (sql_pg_set_unbounded(c->db, true) != 0)
        return err_set(e, ERR_UNAVAILABLE, "failed to lift the statement bound to migrate");
    int rc = sq_script(c, "SELECT pg_advisory_lock(" PG_MIGRATE_LOCK ")",
                       "take the migration lock", e);
    if (rc == 0) {
        rc = migrate_locked(c, e);
        /* Released with the session anyway: a failure here only logs. */
        struct err ignored = {0};
        (void)sq_script(c, "SELECT pg_advisory_unlock(" PG_MIGRATE_LOCK ")",
                        "release the migration lock", &ignored);
    }
    if (sql_pg_set_unbounded(c->db, false) != 0 && rc == 0)
        rc = err_set(e, ERR_UNAVAILABLE, "failed to restore the statement bound");
    return rc;
}

struct metastore *metastore_pg_open(const char *conninfo, const char *region, struct err *e)
{
    AN(conninfo);
    AN(region);
    struct sq_store *st = sq_store_open(&sql_pg_driver, conninfo, region, e);
    if (st == NULL)
        return NULL;
    struct sq_conn *c = sq_conn_of(&st->base, e);
    /* identities made before they replicated are published (idempotent: meta_access.c) */
    if (c == NULL || migrate(c, e) != 0 || sq_hlc_seed(c, e) != 0 ||
        sq_access_publish_local(c, e) != 0) {
        sq_close(&st->base);
        return NULL;
    }
    st->is_opening = false;
    return &st->base;
}
