/* The SQL driver seam: what the metadata logic (meta_*.c) needs from
 * a SQL database, and nothing more. A driver (sql_sqlite.c today; a PostgreSQL one next to
 * it) is an ops table; the logic holds a struct sql_db and struct sql_stmt and calls the
 * inline wrappers below, so the merge rules and the event log never see a library type.
 *
 * Statement text is the logic's (SQ_STATEMENTS in metastore_sqlite_int.h): written once
 * in the spelling both dialects accept, with `?N` placeholders, and per dialect only where
 * they differ (INSERT OR IGNORE, INDEXED BY hints, rowid). A driver whose database spells
 * placeholders `$N` rewrites them in its prepare.
 *
 * Result codes are the driver's own ints with three fixed values: SQL_OK (0), SQL_ROW and
 * SQL_DONE (those of SQLite, so its driver passes them through). Any other value is an
 * error the driver explains and maps into struct err with its map_error op. */
#ifndef MERIDIAN_SQL_DRIVER_H
#define MERIDIAN_SQL_DRIVER_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

#define SQL_OK 0
#define SQL_ROW 100
#define SQL_DONE 101

enum sql_dialect { SQL_DIALECT_SQLITE, SQL_DIALECT_POSTGRES, SQL_DIALECT_COUNT_ };

struct sql_driver;

/* A connection and a prepared statement: each driver's own struct begins with these. */
struct sql_db {
    const struct sql_driver *drv;
};
struct sql_stmt {
    const struct sql_driver *drv;
};

/* Connections. target: a file path (SQLite) or a connection string. */
typedef int sql_open_f(const char *target, struct sql_db **out, struct err *e);
typedef void sql_close_f(struct sql_db *db);
/* Logs the database's message for a failed call (what, sql) and maps rc into e: a lock
 * timeout -> ERR_UNAVAILABLE, a full disk -> ERR_NO_SPACE, a uniqueness clash ->
 * ERR_CONFLICT, else ERR_IO (sys_errno set when known). Returns -1. */
typedef int sql_map_error_f(struct sql_db *db, int rc, const char *what, const char *sql,
                            struct err *e);
/* Runs a script of statements without results (schema text); an rc. */
typedef int sql_exec_f(struct sql_db *db, const char *script);

/* Statements. is_cached: kept for the life of the connection (prepared once, reused). */
typedef int sql_prepare_f(struct sql_db *db, const char *sql, bool is_cached,
                          struct sql_stmt **out);
/* Binds by fmt, one char per parameter in order: 't' const char * (NULL binds NULL),
 * 'i' int64_t, 'b' const void *, size_t. The values must outlive the statement's use. */
typedef int sql_bind_f(struct sql_stmt *s, const char *fmt, va_list ap);
/* SQL_ROW (a row is readable), SQL_DONE, or an error rc. */
typedef int sql_step_f(struct sql_stmt *s);
/* Ends a use of a cached statement: reset, bindings cleared. */
typedef void sql_reset_f(struct sql_stmt *s);
typedef void sql_finalize_f(struct sql_stmt *s);
typedef const char *sql_text_of_f(struct sql_stmt *s);
typedef bool sql_col_is_null_f(struct sql_stmt *s, int i);
typedef int64_t sql_col_int64_f(struct sql_stmt *s, int i);
/* Valid until the next step, reset or finalize. */
typedef const char *sql_col_text_f(struct sql_stmt *s, int i);
typedef const void *sql_col_blob_f(struct sql_stmt *s, int i);
typedef size_t sql_col_bytes_f(struct sql_stmt *s, int i);
/* Rows changed by the last statement run; the id of the last row inserted. */
typedef int64_t sql_changes_f(struct sql_db *db);
typedef int64_t sql_last_insert_id_f(struct sql_db *db);

/* Transactions. begin: is_write takes the write lock up front (SQLite: BEGIN IMMEDIATE),
 * so a writer waits at the start instead of failing on a lock upgrade. rollback is a
 * no-op when the database already ended the transaction. */
typedef int sql_begin_f(struct sql_db *db, bool is_write);
typedef int sql_commit_f(struct sql_db *db);
typedef void sql_rollback_f(struct sql_db *db);
/* Makes every commit made so far on target durable; 0, or -1 with errno. NULL for a
 * driver whose commits are durable when they return: the group commit then never waits. */
typedef int sql_sync_f(const char *target);

/* Upkeep, all optional (NULL: nothing to do). refresh_stats: cheap re-analysis of stale
 * planner statistics, run every so many write commits. set_secure_delete: overwrite freed
 * bytes (for secrets that were stored in clear); off: back to the library's default. compact_log: move the write-ahead log
 * home and empty it, so old page images leave it. rebuild: write the database afresh from
 * its live rows, so no byte of a row freed or overwritten without secure_delete (by an
 * older version), or left behind where the row moved between pages (which secure_delete
 * does not cover), is left in the free space of a page. */
typedef void sql_refresh_stats_f(struct sql_db *db);
typedef int sql_set_secure_delete_f(struct sql_db *db, bool is_on);
typedef int sql_compact_log_f(struct sql_db *db);
typedef int sql_rebuild_f(struct sql_db *db);
/* Optional: configures the one connection that every write transaction of the process
 * runs on (a driver whose connections keep their own page cache: see sq_tx_begin). NULL:
 * each thread writes on its own connection. 0, or -1 with e set. */
typedef int sql_setup_writer_f(struct sql_db *db, struct err *e);
/* Optional: whether s leaves the database as it is (SQLite: sqlite3_stmt_readonly); the
 * store checks that every other statement runs under its writer mutex. */
typedef bool sql_is_readonly_f(struct sql_stmt *s);

/* Optional: how many values s binds (its highest ?N); the store checks every bind
 * format against it. */
typedef int sql_param_count_f(struct sql_stmt *s);

/* Commits made visible through this driver in this process so far, counted after each one
 * can be seen by every connection: a count read before a lookup that is still the same
 * later means the database has not changed since (the store's manifest cache). Only for a
 * database this process alone writes; NULL when other writers exist (PostgreSQL's nodes). */
typedef uint64_t sql_commits_f(void);

/* Optional, for the log copier (log_copier.c), all five or none. log_commits: the
 * commits of connection db that wrote to the write-ahead log; log_pages: the log's size
 * in pages after the last of them. pin: opens (is_on) a read transaction that holds its
 * snapshot, or ends it (always, even after a failed open; an error if it is still open
 * after). copier_attach: a copier ends the log of the writer connection db (is_on), whose
 * commits then leave that to it, up to a bound. copy_log: copies what it may of the log
 * into the database file, never past a page an open read transaction may still need;
 * is_whole: under the writer mutex, where it may end the log (and syncs the file as it
 * does); else beside the writes, where the caller's pin keeps it from the log's end.
 * *n_copied: the log's frames copied so far, of *n_log; both -1 when another checkpoint
 * was running (nothing done). */
typedef uint64_t sql_log_commits_f(struct sql_db *db);
typedef int64_t sql_log_pages_f(struct sql_db *db);
typedef int sql_pin_f(struct sql_db *db, bool is_on);
typedef void sql_copier_attach_f(struct sql_db *db, bool is_on);
typedef int sql_copy_log_f(struct sql_db *db, bool is_whole, int64_t *n_copied, int64_t *n_log);
struct sql_driver {
    const char *name;
    enum sql_dialect dialect;
    sql_open_f *open;
    sql_close_f *close;
    sql_map_error_f *map_error;
    sql_exec_f *exec;
    sql_prepare_f *prepare;
    sql_bind_f *bind;
    sql_step_f *step;
    sql_reset_f *reset;
    sql_finalize_f *finalize;
    sql_text_of_f *text_of;
    sql_col_is_null_f *col_is_null;
    sql_col_int64_f *col_int64;
    sql_col_text_f *col_text;
    sql_col_blob_f *col_blob;
    sql_col_bytes_f *col_bytes;
    sql_changes_f *changes;
    sql_last_insert_id_f *last_insert_id;
    sql_begin_f *begin;
    sql_commit_f *commit;
    sql_rollback_f *rollback;
    sql_sync_f *sync;
    sql_refresh_stats_f *refresh_stats;
    sql_set_secure_delete_f *set_secure_delete;
    sql_compact_log_f *compact_log;
    sql_rebuild_f *rebuild;
    sql_setup_writer_f *setup_writer;
    sql_is_readonly_f *is_readonly;
    sql_param_count_f *param_count;
    sql_commits_f *commits;
    sql_log_commits_f *log_commits;
    sql_log_pages_f *log_pages;
    sql_pin_f *pin;
    sql_copier_attach_f *copier_attach;
    sql_copy_log_f *copy_log;
};

/* The drivers. */
extern const struct sql_driver sql_sqlite_driver;
/* PostgreSQL through libpq (sql_pg.c); its open target is a libpq connection string. */
extern const struct sql_driver sql_pg_driver;
/* Lifts (is_unbounded) or restores a PostgreSQL session's statement_timeout and the wait
 * for each answer: migrations may run long on a large database, and a node starting
 * waits for another node's migration. 0, or -1 when the setting failed. */
int sql_pg_set_unbounded(struct sql_db *db, bool is_unbounded);
/* Observes every statement SQLite runs on connections opened afterwards (the query-plan
 * test); NULL stops it. */
typedef void sql_sqlite_trace_f(void *arg, const char *sql);
void sql_sqlite_trace(sql_sqlite_trace_f *fn, void *arg);

/* What the logic calls. */
static inline int sql_step(struct sql_stmt *s)
{
    return s->drv->step(s);
}
static inline void sql_reset(struct sql_stmt *s)
{
    s->drv->reset(s);
}
static inline void sql_finalize(struct sql_stmt *s)
{
    if (s != NULL)
        s->drv->finalize(s);
}
static inline bool sql_col_is_null(struct sql_stmt *s, int i)
{
    return s->drv->col_is_null(s, i);
}
static inline int64_t sql_col_int64(struct sql_stmt *s, int i)
{
    return s->drv->col_int64(s, i);
}
static inline const char *sql_col_text(struct sql_stmt *s, int i)
{
    return s->drv->col_text(s, i);
}
static inline const void *sql_col_blob(struct sql_stmt *s, int i)
{
    return s->drv->col_blob(s, i);
}
static inline size_t sql_col_bytes(struct sql_stmt *s, int i)
{
    return s->drv->col_bytes(s, i);
}
static inline int64_t sql_changes(struct sql_db *db)
{
    return db->drv->changes(db);
}
static inline int64_t sql_last_insert_id(struct sql_db *db)
{
    return db->drv->last_insert_id(db);
}

#endif
