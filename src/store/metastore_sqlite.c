/* The SQLite metastore: the SQL metastore (meta_*.c) on the SQLite driver (sql_sqlite.c),
 * with what only this dialect has: its schema and migrations (schema/sqlite/, steps
 * counted by PRAGMA user_version), WAL mode, planner statistics, and the statement text
 * the query-plan test reads. It makes no library call itself. */
#include "metastore.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "log.h"
#include "log_copier.h"
#include "metastore_sqlite_int.h"
#include "schema_sql.h"
#include "util.h"

/* The schema: one .sql file per migration step in src/store/schema/sqlite/ (v1.sql,
 * v2.sql, v3_audit.sql, ...), embedded at build time as sq_schema_<file> (schema_sql.h,
 * made by scripts/embed_sql.py). A change goes into a new step, never into a step's file. */
#define SQ_SCHEMA_VERSION 14

/* The statements as SQLite runs them, for the query-plan test. */
const char *metastore_sqlite_statement(size_t i, const char **id)
{
    if (i >= SQ_STMT_COUNT_)
        return NULL;
    if (id != NULL)
        *id = sq_statement_name((enum sq_stmt)i);
    return sq_statement_text(SQL_DIALECT_SQLITE, (enum sq_stmt)i);
}

void metastore_sqlite_trace(metastore_sqlite_trace_f *fn, void *arg)
{
    sql_sqlite_trace(fn, arg);
}

/* Steps 3 to 9 were written on branches at once, each numbering its own step after the
 * last one merged: step 3 as audit aggregation or as upload sources (branches authlimits
 * and uploads), step 6 as status copies, audit region, compaction or untagged manifests.
 * When merged they were renumbered, with the same text. A database written by a commit of
 * one of those branches says 3 or 6 (or more, if a build of the merge order opened it
 * since) but holds other steps than that number means here. From a stored version in that
 * range, steps 3 to 9 all run again: every statement in them is idempotent but ADD COLUMN,
 * which is left out where the column is already there. */
#define SQ_RENUMBERED_FIRST 3
#define SQ_RENUMBERED_LAST 9

/* Step text without its `ALTER TABLE t ADD COLUMN c ...;` lines whose column t already
 * has (each such statement of the steps is one line): a heap string, or NULL with e set. */
static char *step_without_present_columns(struct sq_conn *c, const char *step, struct err *e)
{
    size_t len = strlen(step);
    char *out = xmalloc(len + 1);
    size_t n = 0;
    for (const char *line = step; *line != '\0';) {
        const char *nl = strchr(line, '\n');
        size_t line_len = nl != NULL ? (size_t)(nl - line) + 1 : strlen(line);
        char table[64], column[64];
        bool is_present = false;
        if (sscanf(line, "ALTER TABLE %63[a-z_] ADD COLUMN %63[a-z_]", table, column) == 2) {
            struct sql_stmt *s;
            int rc = sq_run(c, "SELECT count(*) FROM pragma_table_info(?1) WHERE name = ?2", &s,
                            e, "tt", table, column);
            if (rc < 0) {
                free(out);
                return NULL;
            }
            is_present = rc == SQL_ROW && sql_col_int64(s, 0) > 0;
            sql_finalize(s);
        }
        if (!is_present) {
            memcpy(out + n, line, line_len);
            n += line_len;
        }
        line += line_len;
    }
    out[n] = '\0';
    return out;
}

/* Creates or upgrades the schema. Runs in a write transaction so that two processes
 * opening a fresh file at once do not both create it. */
static int migrate(struct sq_conn *c, struct err *e)
{
    struct sql_stmt *s;
    if (sq_tx_begin(c, true, e) != 0)
        return -1;
    int rc = sq_run(c, "PRAGMA user_version", &s, e, "");
    if (rc < 0)
        goto fail;
    int64_t version = rc == SQL_ROW ? sql_col_int64(s, 0) : 0;
    sql_finalize(s);
    if (version > SQ_SCHEMA_VERSION) {
        log_error("metastore",
                  "failed to open database: schema version %" PRId64
                  " is newer than this build's %d",
                  version, SQ_SCHEMA_VERSION);
        err_set(e, ERR_IO, NULL);
        goto fail;
    }
    /* Step i brings the schema from version i to i + 1; each runs once, in order. The
     * steps are the files of src/store/schema/sqlite/, in version order. */
    static const char *const steps[] = {sq_schema_v1, sq_schema_v2, sq_schema_v3_audit,
                                        sq_schema_v4_uploads, sq_schema_v5_gc,
                                        sq_schema_v6_status_copies,
                                        sq_schema_v7_audit_region,
                                        sq_schema_v8_compact,
                                        sq_schema_v9_untagged,
                                        sq_schema_v10_tags_view,
                                        sq_schema_v11_manifest_refs_seq,
                                        sq_schema_v12_status_clock,
                                        sq_schema_v13_status_stale,
                                        sq_schema_v14_tag_order};
    _Static_assert(sizeof(steps) / sizeof(steps[0]) == SQ_SCHEMA_VERSION,
                   "one migration step per schema version");
    bool is_renumbered = version >= SQ_RENUMBERED_FIRST && version < SQ_RENUMBERED_LAST;
    int64_t from = is_renumbered ? SQ_RENUMBERED_FIRST - 1 : version;
    for (int64_t v = from; v < SQ_SCHEMA_VERSION; v++) {
        char set_version[64];
        snprintf(set_version, sizeof(set_version), "PRAGMA user_version = %" PRId64, v + 1);
        char what[64];
        snprintf(what, sizeof(what), "upgrade schema to version %" PRId64, v + 1);
        char *again = NULL;
        if (is_renumbered && v + 1 <= SQ_RENUMBERED_LAST) {
            again = step_without_present_columns(c, steps[v], e);
            if (again == NULL)
                goto fail;
        }
        int rc = sq_script(c, again != NULL ? again : steps[v], what, e);
        free(again);
        if (rc != 0 || sq_script(c, set_version, what, e) != 0)
            goto fail;
    }
    if (version < 1)
        log_info("metastore", "created schema version %d", SQ_SCHEMA_VERSION);
    else if (version < SQ_SCHEMA_VERSION)
        log_info("metastore", "upgraded schema from version %" PRId64 " to %d", version,
                 SQ_SCHEMA_VERSION);
    return sq_tx_commit(c, e);

fail:
    sq_tx_rollback(c);
    return -1;
}

/* WAL must be switched on outside a transaction; it then sticks to the file. */
static int enable_wal(struct sq_conn *c, struct err *e)
{
    struct sql_stmt *s = NULL;
    int rc = sq_run(c, "PRAGMA journal_mode = WAL", &s, e, "");
    if (rc < 0)
        return -1;
    const char *mode = rc == SQL_ROW ? sql_col_text(s, 0) : NULL;
    bool is_wal = mode != NULL && strcasecmp(mode, "wal") == 0;
    if (!is_wal)
        log_error("metastore", "failed to enable WAL: journal mode is %s", mode ? mode : "?");
    sql_finalize(s);
    if (!is_wal)
        return err_set(e, ERR_IO, NULL);
    return 0;
}

/* A database without planner statistics (new, or from before they were kept) gets them
 * at open; ANALYZE reads at most the driver's analysis limit of rows per index, so this
 * stays short on a large database. Later refreshes: stats_refresh. */
static int stats_seed(struct sq_conn *c, struct err *e)
{
    struct sql_stmt *s = NULL;
    int rc = sq_run(c, "SELECT 1 FROM sqlite_schema WHERE name = 'sqlite_stat1'", &s, e, "");
    if (rc < 0)
        return -1;
    sql_finalize(s);
    if (rc == SQL_ROW)
        return 0;
    sq_autocommit_lock(c);
    rc = sq_script(c, "ANALYZE", "gather planner statistics", e);
    sq_autocommit_unlock(c);
    return rc;
}

struct metastore *metastore_sqlite_open(const char *path, const char *region, struct err *e)
{
    AN(path);
    AN(region);
    struct sq_store *st = sq_store_open(&sql_sqlite_driver, path, region, e);
    if (st == NULL)
        return NULL;
    struct sq_conn *c = sq_conn_of(&st->base, e);
    if (c == NULL || enable_wal(c, e) != 0 || migrate(c, e) != 0 || sq_hlc_seed(c, e) != 0 ||
        sq_script(c, sq_schema_deliveries, "create webhook_deliveries", e) != 0 ||
        sq_script(c, sq_schema_access, "create access-control tables", e) != 0 ||
        sq_access_publish_local(c, e) != 0 ||
        stats_seed(c, e) != 0) {
        sq_close(&st->base);
        return NULL;
    }
    /* A repository's removal stopped before its rebuild (meta_residency.c): no stale copy
     * of its rows may stay in the file. Only the start waits for it. */
    if (sq_rebuild_pending(c, "left pending at the last stop") > 0)
        (void)sq_compact_log(c);
    st->is_opening = false;
    st->copier = sq_log_copier_start(st);
    return &st->base;
}
