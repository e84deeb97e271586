/* The SQLite driver of the SQL seam (sql_driver.h): the only file that includes
 * <sqlite3.h>. A connection is used by one thread at a time (NOMUTEX); the store above
 * keeps one per thread, so in WAL mode readers never wait for the writer, and one for its
 * write transactions (lite_setup_writer). Commits are not synced
 * here (synchronous = NORMAL): the store's group commit calls sync, which fsyncs the WAL
 * once for every commit waiting at the time. */
#include "sql_driver.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

#define LITE_BUSY_TIMEOUT_MS 10000
/* Planner statistics: ANALYZE reads at most this many rows of each index (an estimate is
 * all the planner needs). */
#define LITE_ANALYSIS_LIMIT_ROWS 400

enum lite_tx { TX_BEGIN_READ, TX_BEGIN_WRITE, TX_COMMIT, TX_ROLLBACK, TX_COUNT_ };

/* Write transactions take the write lock up front (IMMEDIATE) so they wait in the busy
 * handler instead of failing on lock upgrade; reads use a deferred transaction, which
 * in WAL mode sees one snapshot and never waits for a writer. */
static const char *const tx_sql[TX_COUNT_] = {
    [TX_BEGIN_READ] = "BEGIN",
    [TX_BEGIN_WRITE] = "BEGIN IMMEDIATE",
    [TX_COMMIT] = "COMMIT",
    [TX_ROLLBACK] = "ROLLBACK",
};

struct lite_db {
    struct sql_db base;
    sqlite3 *h;
    sqlite3_stmt *tx[TX_COUNT_]; /* prepared on first use */
    /* Set by on_wal_commit, read by the log copier's thread (sql_log_commits_f): */
    _Atomic uint64_t log_commits; /* commits of this connection that wrote to the log */
    _Atomic int64_t log_pages;    /* the log's size in pages after the last of them */
    atomic_bool is_copied; /* a log copier ends the log (sql_copier_attach_f) */
};

struct lite_stmt {
    struct sql_stmt base;
    sqlite3_stmt *h;
};

static sqlite3 *db_of(struct sql_db *db)
{
    return ((struct lite_db *)db)->h;
}

static sqlite3_stmt *stmt_of(struct sql_stmt *s)
{
    return ((struct lite_stmt *)s)->h;
}

/* Commits of every connection of this process (sql_commits_f). */
static _Atomic uint64_t n_commits;

/* The query-plan test's observer (sql_sqlite_trace); set before any store opens. */
static sql_sqlite_trace_f *trace_fn;
static void *trace_arg;

void sql_sqlite_trace(sql_sqlite_trace_f *fn, void *arg)
{
    trace_fn = fn;
    trace_arg = arg;
}

static int on_trace(unsigned type, void *ctx, void *p, void *x)
{
    (void)type;
    (void)ctx;
    (void)p;
    if (trace_fn != NULL && x != NULL)
        trace_fn(trace_arg, (const char *)x);
    return 0;
}

/* SQLite's own busy_timeout sleeps in whole milliseconds; writers of this process queue on
 * the store's writer mutex instead, so the lock is busy only briefly (autocommit writes,
 * another process): wait in short steps up to LITE_BUSY_TIMEOUT_MS. */
static int on_busy(void *arg, int n)
{
    (void)arg;
    int64_t waited_us = 0;
    for (int i = 0; i < n; i++)
        waited_us += i < 20 ? 50 * (i + 1) : 1000;
    if (waited_us > (int64_t)LITE_BUSY_TIMEOUT_MS * 1000)
        return 0;
    struct timespec ts = {0, (n < 20 ? 50 * (n + 1) : 1000) * 1000L};
    nanosleep(&ts, NULL);
    return 1;
}

/* Errors ------------------------------------------------------------------ */

/* Logs the SQLite message and maps rc: busy after the timeout -> ERR_UNAVAILABLE, a
 * full disk -> ERR_NO_SPACE, a uniqueness clash -> ERR_CONFLICT, else ERR_IO. The
 * client message stays the code's default. Returns -1. */
static int lite_fail(struct sql_db *db, int rc, const char *what, const char *sql, struct err *e)
{
    sqlite3 *h = db_of(db);
    log_error("metastore", "failed to %s: %s (%s)%s%s", what, sqlite3_errmsg(h), sqlite3_errstr(rc),
              sql != NULL ? " sql=" : "", sql != NULL ? sql : "");
    int sys_errno = sqlite3_system_errno(h);
    switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        err_set(e, ERR_UNAVAILABLE, NULL);
        break;
    case SQLITE_FULL:
        err_set(e, ERR_NO_SPACE, NULL);
        break;
    case SQLITE_CONSTRAINT:
        err_set(e, ERR_CONFLICT, NULL);
        break;
    default:
        err_set(e, ERR_IO, NULL);
        break;
    }
    if (e != NULL)
        e->sys_errno = sys_errno;
    return -1;
}

/* Connections ------------------------------------------------------------- */

static void lite_close(struct sql_db *db)
{
    if (db == NULL)
        return;
    struct lite_db *d = (struct lite_db *)db;
    for (int i = 0; i < TX_COUNT_; i++)
        sqlite3_finalize(d->tx[i]);
    int rc = sqlite3_close(d->h);
    if (rc != SQLITE_OK)
        log_error("metastore", "failed to close database: %s", sqlite3_errstr(rc));
    free(d);
}

/* SQLite counts every allocation it makes in process-wide statistics under one global
 * mutex (memory status, on by default): two lock round trips per malloc, on every thread's
 * every statement, for figures nothing here reads. Off before the library initializes
 * (docs/tls.md: a manifest GET makes a dozen). If something initialized SQLite first the
 * call is refused and the counters stay on: slower, not wrong. */
static void lite_configure_once(void)
{
    (void)sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
}

/* SQLite calls this after each commit in WAL mode, once the write lock is released, so
 * the commit is visible to every connection before it is counted. Installing a hook
 * replaces SQLite's automatic checkpoint, which this does as SQLite would (its default
 * hook: a passive checkpoint once the log holds 1 000 pages).
 * It runs on the connection that just committed, under the store's writer mutex, so no
 * checkpoint starts beside a write: SQLite before 3.51.3 (Debian 12 ships 3.40.1) can
 * corrupt the database when a passive checkpoint starts while another connection's commit
 * starts the log over (https://sqlite.org/wal.html, "WAL-reset bug"). A checkpointer
 * thread beside the writer did, within two minutes (docs/performance.md). On the writer
 * connection of a store whose log copier runs (log_copier.c, which copies the log beside
 * the writes under a pin that keeps every checkpoint from the log's end, and ends the log
 * itself under the writer mutex right after a pass, when little is left to copy), this
 * checkpoints only a log that grew far past the limit: a copier that fell behind. */
#define LITE_AUTOCHECKPOINT_PAGES 1000
#define LITE_COPIED_LOG_MAX_PAGES (4 * LITE_AUTOCHECKPOINT_PAGES)
static int on_wal_commit(void *arg, sqlite3 *h, const char *db_name, int n_pages)
{
    struct lite_db *d = arg;
    atomic_store(&d->log_pages, n_pages);
    atomic_fetch_add(&d->log_commits, 1);
    atomic_fetch_add(&n_commits, 1);
    if (n_pages >= (atomic_load(&d->is_copied) ? LITE_COPIED_LOG_MAX_PAGES
                                               : LITE_AUTOCHECKPOINT_PAGES))
        (void)sqlite3_wal_checkpoint(h, db_name);
    return SQLITE_OK;
}

static uint64_t lite_commits(void)
{
    return atomic_load(&n_commits);
}

static int lite_open(const char *path, struct sql_db **out, struct err *e)
{
    *out = NULL;
    if (!sqlite3_threadsafe()) {
        log_error("metastore", "failed to open database: SQLite built without threads");
        return err_set(e, ERR_INTERNAL, NULL);
    }
    static pthread_once_t configured = PTHREAD_ONCE_INIT;
    AZ(pthread_once(&configured, lite_configure_once));
    struct lite_db *d = xcalloc(1, sizeof(*d));
    d->base.drv = &sql_sqlite_driver;
    /* NOMUTEX: a connection is used by one thread at a time: its thread's, or the store's
     * writer by the thread holding the writer mutex (close runs only when all are idle). */
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX;
    int rc = sqlite3_open_v2(path, &d->h, flags, NULL);
    if (rc != SQLITE_OK) {
        log_error("metastore", "failed to open database %s: %s", path,
                  d->h ? sqlite3_errmsg(d->h) : sqlite3_errstr(rc));
        err_set(e, ERR_IO, NULL);
        lite_close(&d->base);
        return -1;
    }
    sqlite3_extended_result_codes(d->h, 1);
    sqlite3_busy_handler(d->h, on_busy, NULL);
    sqlite3_wal_hook(d->h, on_wal_commit, d);
    if (trace_fn != NULL)
        sqlite3_trace_v2(d->h, SQLITE_TRACE_STMT, on_trace, NULL);
    /* Both are per connection. NORMAL: SQLite does not fsync the WAL at each commit;
     * the store makes write transactions durable itself, sharing one fsync among the
     * commits that are waiting at the same time (group commit, lite_sync). */
    char pragmas[160];
    snprintf(pragmas, sizeof(pragmas),
             "PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL; PRAGMA analysis_limit = %d;",
             LITE_ANALYSIS_LIMIT_ROWS);
    rc = sqlite3_exec(d->h, pragmas, NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        lite_fail(&d->base, rc, "configure connection", NULL, e);
        lite_close(&d->base);
        return -1;
    }
    *out = &d->base;
    return 0;
}

static int lite_exec(struct sql_db *db, const char *script)
{
    return sqlite3_exec(db_of(db), script, NULL, NULL, NULL);
}

/* Statements -------------------------------------------------------------- */

static int lite_prepare(struct sql_db *db, const char *sql, bool is_cached, struct sql_stmt **out)
{
    sqlite3_stmt *h = NULL;
    int rc =
        sqlite3_prepare_v3(db_of(db), sql, -1, is_cached ? SQLITE_PREPARE_PERSISTENT : 0, &h, NULL);
    if (rc != SQLITE_OK) {
        sqlite3_finalize(h);
        *out = NULL;
        return rc;
    }
    struct lite_stmt *s = xmalloc(sizeof(*s));
    s->base.drv = &sql_sqlite_driver;
    s->h = h;
    *out = &s->base;
    return SQLITE_OK;
}

static int lite_bind(struct sql_stmt *st, const char *fmt, va_list ap)
{
    sqlite3_stmt *s = stmt_of(st);
    int rc = SQLITE_OK;
    for (int i = 0; fmt[i] != '\0' && rc == SQLITE_OK; i++) {
        switch (fmt[i]) {
        case 't': {
            const char *v = va_arg(ap, const char *);
            if (v == NULL)
                rc = sqlite3_bind_null(s, i + 1);
            else
                rc = sqlite3_bind_text(s, i + 1, v, -1, SQLITE_STATIC);
            break;
        }
        case 'i':
            rc = sqlite3_bind_int64(s, i + 1, va_arg(ap, int64_t));
            break;
        case 'b': {
            const void *p = va_arg(ap, const void *);
            size_t n = va_arg(ap, size_t);
            /* A NULL pointer would bind SQL NULL; an empty body is an empty BLOB. */
            rc = sqlite3_bind_blob64(s, i + 1, p != NULL ? p : "", n, SQLITE_STATIC);
            break;
        }
        default:
            ASSERT(!"unknown bind format");
        }
    }
    return rc;
}

static int lite_step(struct sql_stmt *s)
{
    return sqlite3_step(stmt_of(s));
}

/* A write outside a transaction that is reset or finalized before SQLITE_DONE (one that
 * returns rows) commits there, where SQLite does not call the WAL hook: count it too (a
 * second count for one commit only costs the manifest cache a lookup). */
static bool is_autocommit_write(sqlite3_stmt *s)
{
    return !sqlite3_stmt_readonly(s) && sqlite3_get_autocommit(sqlite3_db_handle(s));
}

static void lite_reset(struct sql_stmt *st)
{
    sqlite3_stmt *s = stmt_of(st);
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    if (is_autocommit_write(s))
        atomic_fetch_add(&n_commits, 1);
}

static void lite_finalize(struct sql_stmt *s)
{
    bool is_write = is_autocommit_write(stmt_of(s));
    sqlite3_finalize(stmt_of(s));
    if (is_write)
        atomic_fetch_add(&n_commits, 1);
    free(s);
}

static const char *lite_text_of(struct sql_stmt *s)
{
    return sqlite3_sql(stmt_of(s));
}

static bool lite_col_is_null(struct sql_stmt *s, int i)
{
    return sqlite3_column_type(stmt_of(s), i) == SQLITE_NULL;
}

static int64_t lite_col_int64(struct sql_stmt *s, int i)
{
    return sqlite3_column_int64(stmt_of(s), i);
}

static const char *lite_col_text(struct sql_stmt *s, int i)
{
    return (const char *)sqlite3_column_text(stmt_of(s), i);
}

static const void *lite_col_blob(struct sql_stmt *s, int i)
{
    return sqlite3_column_blob(stmt_of(s), i);
}

static size_t lite_col_bytes(struct sql_stmt *s, int i)
{
    return (size_t)sqlite3_column_bytes(stmt_of(s), i);
}

static int64_t lite_changes(struct sql_db *db)
{
    return sqlite3_changes(db_of(db));
}

static int64_t lite_last_insert_id(struct sql_db *db)
{
    return sqlite3_last_insert_rowid(db_of(db));
}

/* Transactions ------------------------------------------------------------ */

static int tx_run(struct lite_db *d, enum lite_tx which)
{
    if (d->tx[which] == NULL) {
        int rc = sqlite3_prepare_v3(d->h, tx_sql[which], -1, SQLITE_PREPARE_PERSISTENT,
                                    &d->tx[which], NULL);
        if (rc != SQLITE_OK)
            return rc;
    }
    int rc = sqlite3_step(d->tx[which]);
    sqlite3_reset(d->tx[which]);
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

static int lite_begin(struct sql_db *db, bool is_write)
{
    return tx_run((struct lite_db *)db, is_write ? TX_BEGIN_WRITE : TX_BEGIN_READ);
}

static int lite_commit(struct sql_db *db)
{
    return tx_run((struct lite_db *)db, TX_COMMIT);
}

static void lite_rollback(struct sql_db *db)
{
    /* SQLite may already have rolled back on its own (for example on SQLITE_FULL). */
    struct lite_db *d = (struct lite_db *)db;
    if (!sqlite3_get_autocommit(d->h))
        (void)tx_run(d, TX_ROLLBACK);
}

/* Syncs the write-ahead log of the database at path: every commit before the call is
 * then on stable storage. */
static int lite_sync(const char *path)
{
    char wal[4200];
    snprintf(wal, sizeof(wal), "%s-wal", path);
    int fd = open(wal, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? 0 : -1; /* no WAL: everything is in the database file */
    int rc = fdatasync(fd);
    int saved = errno;
    close(fd);
    errno = saved;
    return rc;
}

/* Upkeep ------------------------------------------------------------------ */

/* PRAGMA optimize re-analyzes the tables this connection used whose statistics are
 * missing or stale; usually a no-op. Statistics are advice to the planner, so a failure
 * is logged. */
static void lite_refresh_stats(struct sql_db *db)
{
    int rc = sqlite3_exec(db_of(db), "PRAGMA optimize", NULL, NULL, NULL);
    if (rc != SQLITE_OK)
        log_warn("metastore", "failed to refresh planner statistics: %s",
                 sqlite3_errmsg(db_of(db)));
}

/* The writer's page cache, kept between transactions: the upper levels of the b-trees a
 * push writes and their recently written leaves (a connection's default is 2 MiB). 24 MiB
 * took the server's RSS past 64 MiB at a million tags; 8 MiB keeps it near 33. */
#define LITE_WRITER_CACHE_KIB 8192

static int lite_setup_writer(struct sql_db *db, struct err *e)
{
    char sql[64];
    snprintf(sql, sizeof(sql), "PRAGMA cache_size = -%d", LITE_WRITER_CACHE_KIB);
    int rc = sqlite3_exec(db_of(db), sql, NULL, NULL, NULL);
    if (rc != SQLITE_OK)
        return lite_fail(db, rc, "configure the writer connection", sql, e);
    return 0;
}

/* secure_delete: the clear bytes an update leaves behind on the page or the freelist
 * are zeroed, not merely marked free. */
/* Off means the library's default: Debian builds libsqlite3 with SQLITE_SECURE_DELETE (on
 * for every connection), and a purge or the sealing pass must not leave the writer
 * connection with less than that after it (it used to turn it off for good). */
static int lite_set_secure_delete(struct sql_db *db, bool is_on)
{
    bool is_default_on = sqlite3_compileoption_used("SECURE_DELETE") != 0;
    return sqlite3_exec(db_of(db),
                        is_on || is_default_on ? "PRAGMA secure_delete = ON"
                                               : "PRAGMA secure_delete = OFF",
                        NULL, NULL, NULL);
}

static bool lite_is_readonly(struct sql_stmt *s)
{
    return sqlite3_stmt_readonly(stmt_of(s)) != 0;
}

static int lite_param_count(struct sql_stmt *s)
{
    return sqlite3_bind_parameter_count(stmt_of(s));
}

static uint64_t lite_log_commits(struct sql_db *db)
{
    return atomic_load(&((struct lite_db *)db)->log_commits);
}

static int64_t lite_log_pages(struct sql_db *db)
{
    return atomic_load(&((struct lite_db *)db)->log_pages);
}

/* sql_pin_f: a read transaction that has read, so SQLite holds its snapshot (a deferred
 * BEGIN reads nothing yet). Its end fails if the transaction is still open after it. */
static int lite_pin(struct sql_db *db, bool is_on)
{
    struct lite_db *d = (struct lite_db *)db;
    if (!is_on) {
        lite_rollback(db);
        return sqlite3_get_autocommit(d->h) ? SQL_OK : SQLITE_ERROR;
    }
    int rc = tx_run(d, TX_BEGIN_READ);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(d->h, "SELECT 1 FROM sqlite_schema LIMIT 1", NULL, NULL, NULL);
    return rc;
}

static void lite_copier_attach(struct sql_db *db, bool is_on)
{
    atomic_store(&((struct lite_db *)db)->is_copied, is_on);
}

/* A passive checkpoint (sql_copy_log_f). SQLite syncs the log before it copies, and syncs
 * the database file when it copied the log to its end: beside the writes (!is_whole) the
 * caller's pin rules that out, and the checkpoint that ends the log syncs what this wrote.
 * (Syncing the file here too cost the pushes at 1 000 tags 5-10 % and gained nothing at
 * 100 000: docs/performance.md, "The log copier".) */
static int lite_copy_log(struct sql_db *db, bool is_whole, int64_t *n_copied,
                         int64_t *n_log)
{
    int n_frames = 0, n_done = 0;
    *n_copied = *n_log = -1;
    int rc = sqlite3_wal_checkpoint_v2(db_of(db), NULL, SQLITE_CHECKPOINT_PASSIVE, &n_frames,
                                       &n_done);
    if (rc == SQLITE_BUSY)
        return SQL_OK; /* another checkpoint is running: nothing done */
    if (rc != SQLITE_OK) {
        log_warn("metastore", "failed to copy the write-ahead log: %s", sqlite3_errmsg(db_of(db)));
        return rc;
    }
    *n_copied = n_done;
    *n_log = n_frames;
    if (!is_whole && n_frames > 0 && n_done >= n_frames) {
        /* The log copied to its end outside the writer mutex: the next write may start
         * it over beside another checkpoint (the WAL-reset bug). The pin forbids it. */
        log_error("metastore", "bug: the log copier copied the whole log (%d frames)", n_frames);
        ASSERT(getenv("MERIDIAN_STRICT_CHECKS") == NULL);
    }
    return SQL_OK;
}

/* The old page images are still in the WAL: copy the new ones home and empty it. */
static int lite_compact_log(struct sql_db *db)
{
    int busy = 0;
    int rc = sqlite3_wal_checkpoint_v2(db_of(db), NULL, SQLITE_CHECKPOINT_TRUNCATE, NULL, &busy);
    if (rc != SQLITE_OK)
        log_warn("metastore", "failed to checkpoint the write-ahead log: %s",
                 sqlite3_errmsg(db_of(db)));
    return rc;
}

/* VACUUM copies the live rows into a new database and that back over every page: the free
 * space of each page and the freelist hold zeros after it, whatever wrote them before. */
static int lite_rebuild(struct sql_db *db)
{
    int rc = sqlite3_exec(db_of(db), "VACUUM", NULL, NULL, NULL);
    if (rc != SQLITE_OK)
        log_warn("metastore", "failed to rebuild the database (VACUUM): %s",
                 sqlite3_errmsg(db_of(db)));
    return rc;
}

const struct sql_driver sql_sqlite_driver = {
    .name = "sqlite",
    .dialect = SQL_DIALECT_SQLITE,
    .open = lite_open,
    .close = lite_close,
    .map_error = lite_fail,
    .exec = lite_exec,
    .prepare = lite_prepare,
    .bind = lite_bind,
    .step = lite_step,
    .reset = lite_reset,
    .finalize = lite_finalize,
    .text_of = lite_text_of,
    .col_is_null = lite_col_is_null,
    .col_int64 = lite_col_int64,
    .col_text = lite_col_text,
    .col_blob = lite_col_blob,
    .col_bytes = lite_col_bytes,
    .changes = lite_changes,
    .last_insert_id = lite_last_insert_id,
    .begin = lite_begin,
    .commit = lite_commit,
    .rollback = lite_rollback,
    .sync = lite_sync,
    .refresh_stats = lite_refresh_stats,
    .setup_writer = lite_setup_writer,
    .is_readonly = lite_is_readonly,
    .param_count = lite_param_count,
    .set_secure_delete = lite_set_secure_delete,
    .compact_log = lite_compact_log,
    .rebuild = lite_rebuild,
    .commits = lite_commits,
    .log_commits = lite_log_commits,
    .log_pages = lite_log_pages,
    .pin = lite_pin,
    .copier_attach = lite_copier_attach,
    .copy_log = lite_copy_log,
};
