/* The SQL metastore's store and connections, backend-neutral: one connection per thread
 * (through the driver seam, sql_driver.h), the prepared statements cached on it, the
 * helpers every section file uses (sq_query, sq_exec, sq_run, ...), transactions with the
 * writer mutex, and the group commit that makes acknowledged writes durable. The ops
 * table of the metastore seam is here; the sections it points to are in meta_*.c. */
#include "metastore.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "log_copier.h"
#include "manifest_cache.h"
#include "metastore_sqlite_int.h"
#include "util.h"

/* The driver refreshes stale planner statistics every so many write commits (SQLite:
 * PRAGMA optimize). The hot statements do not depend on them: their plans are right
 * without statistics too (tests/unit/test_query_plans.c checks both). */
#define SQ_OPTIMIZE_EVERY_COMMITS 10000

/* Every statement the store runs, prepared once per connection on first use: the text
 * of SQ_STATEMENTS, or a dialect's own where SQ_STATEMENTS_<DIALECT> has one. */

static const char *const sq_sql[SQ_STMT_COUNT_] = {
#define X(id, sql) [SQ_##id] = sql,
    SQ_STATEMENTS(X)
#undef X
};

static const char *const sq_names[SQ_STMT_COUNT_] = {
#define X(id, sql) [SQ_##id] = #id,
    SQ_STATEMENTS(X)
#undef X
};

static const char *const sq_sql_postgres[SQ_STMT_COUNT_] = {
#define X(id, sql) [SQ_##id] = sql,
    SQ_STATEMENTS_POSTGRES(X)
#undef X
};

const char *sq_statement_text(enum sql_dialect dialect, enum sq_stmt id)
{
    ASSERT(id < SQ_STMT_COUNT_);
    if (dialect == SQL_DIALECT_POSTGRES && sq_sql_postgres[id] != NULL)
        return sq_sql_postgres[id];
    return sq_sql[id];
}

const char *sq_statement_name(enum sq_stmt id)
{
    ASSERT(id < SQ_STMT_COUNT_);
    return sq_names[id];
}

static struct sq_store *store_of(struct metastore *ms)
{
    AN(ms);
    struct sq_store *st = (struct sq_store *)ms;
    ASSERT(st->magic == SQ_STORE_MAGIC);
    return st;
}

/* Errors: the driver logs the database's message and maps rc into e. Returns -1. */
int sq_db_fail(struct sq_conn *c, int rc, const char *what, const char *sql, struct err *e)
{
    return c->store->drv->map_error(c->db, rc, what, sql, e);
}

static void stmts_finalize(struct sql_stmt **stmts)
{
    for (int i = 0; i < SQ_STMT_COUNT_; i++)
        sql_finalize(stmts[i]);
}

static void conn_close(struct sq_conn *c)
{
    ASSERT(c->magic == SQ_CONN_MAGIC);
    stmts_finalize(c->own_stmts);
    c->store->drv->close(c->own_db);
    c->magic = 0;
    free(c);
}

/* pthread key destructor: a thread that used the store is exiting. */
static void on_thread_exit(void *p)
{
    struct sq_conn *c = p;
    ASSERT(c->magic == SQ_CONN_MAGIC);
    struct sq_store *st = c->store;
    AZ(pthread_mutex_lock(&st->mu));
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        st->conns = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    AZ(pthread_mutex_unlock(&st->mu));
    conn_close(c);
}

/* ms_thread_release_f: the key's value cleared, its destructor does not run at exit. */
static void sq_thread_release(struct metastore *ms)
{
    struct sq_store *st = store_of(ms);
    struct sq_conn *c = pthread_getspecific(st->key);
    if (c == NULL)
        return;
    ASSERT(!c->has_wmu && !c->has_autocommit_lock);
    AZ(pthread_setspecific(st->key, NULL));
    on_thread_exit(c);
}

static struct sq_conn *conn_open(struct sq_store *st, struct err *e)
{
    struct sql_db *db;
    if (st->drv->open(st->path, &db, e) != 0)
        return NULL;
    struct sq_conn *c = xcalloc(1, sizeof(*c));
    c->magic = SQ_CONN_MAGIC;
    c->store = st;
    c->own_db = db;
    c->db = db;
    c->stmts = c->own_stmts;
    return c;
}

/* This thread's connection, opened on first use. */
static struct sq_conn *conn_get(struct sq_store *st, struct err *e)
{
    struct sq_conn *c = pthread_getspecific(st->key);
    if (c != NULL) {
        ASSERT(c->magic == SQ_CONN_MAGIC && c->store == st);
        return c;
    }
    c = conn_open(st, e);
    if (c == NULL)
        return NULL;
    AZ(pthread_setspecific(st->key, c));
    AZ(pthread_mutex_lock(&st->mu));
    c->next = st->conns;
    if (st->conns != NULL)
        st->conns->prev = c;
    st->conns = c;
    AZ(pthread_mutex_unlock(&st->mu));
    return c;
}

struct sq_conn *sq_conn_of(struct metastore *ms, struct err *e)
{
    return conn_get(store_of(ms), e);
}

/* Every write of the process holds wmu (sq_autocommit_lock says why): a statement that
 * writes without it, once the store is open, is a bug. It is logged; under the test
 * suites (MERIDIAN_STRICT_CHECKS set, scripts/test.sh and meson.build) the process stops
 * on it, so a test that reaches one fails. A server in production goes on: the race it
 * opens is rare, an outage is not. */
static void check_write_locked(struct sq_conn *c, struct sql_stmt *s)
{
    const struct sql_driver *drv = c->store->drv;
    if (drv->is_readonly == NULL || c->has_wmu || c->has_autocommit_lock ||
        c->store->is_opening || drv->is_readonly(s))
        return;
    log_error("metastore", "bug: write outside the writer mutex: %s", drv->text_of(s));
    ASSERT(getenv("MERIDIAN_STRICT_CHECKS") == NULL);
}

static struct sql_stmt *stmt_get(struct sq_conn *c, enum sq_stmt id, struct err *e)
{
    if (c->stmts[id] == NULL) {
        const char *sql = sq_statement_text(c->store->drv->dialect, id);
        int rc = c->store->drv->prepare(c->db, sql, true, &c->stmts[id]);
        if (rc != SQL_OK) {
            sq_db_fail(c, rc, "prepare statement", sql, e);
            return NULL;
        }
    }
    check_write_locked(c, c->stmts[id]);
    return c->stmts[id];
}

/* Ends a use of a cached statement; bindings are cleared so no pointer outlives it. */
void sq_stmt_done(struct sql_stmt *s)
{
    sql_reset(s);
}

/* A format of more or fewer values than the statement's parameters binds the wrong ones
 * (one left out is NULL, or on SQLite the previous call's value): a bug, logged, and
 * under the test suites the process stops on it, as check_write_locked does. */
int sq_bind_args(struct sql_stmt *s, const char *fmt, va_list ap)
{
    if (s->drv->param_count != NULL && (int)strlen(fmt) != s->drv->param_count(s)) {
        log_error("metastore", "bug: %zu values bound to a statement of %d parameters: %s",
                  strlen(fmt), s->drv->param_count(s), s->drv->text_of(s));
        ASSERT(getenv("MERIDIAN_STRICT_CHECKS") == NULL);
    }
    return s->drv->bind(s, fmt, ap);
}

/* Binds and steps statement id once. Returns SQL_ROW or SQL_DONE with the
 * statement in *out (the caller reads further rows, then calls stmt_done), or -1 with e
 * set and the statement already reset. */
int sq_query(struct sq_conn *c, enum sq_stmt id, struct sql_stmt **out, struct err *e,
             const char *fmt, ...)
{
    struct sql_stmt *s = stmt_get(c, id, e);
    if (s == NULL)
        return -1;
    va_list ap;
    va_start(ap, fmt);
    int rc = sq_bind_args(s, fmt, ap);
    va_end(ap);
    if (rc == SQL_OK)
        rc = sql_step(s);
    if (rc != SQL_ROW && rc != SQL_DONE) {
        sq_db_fail(c, rc, "run statement", c->store->drv->text_of(s), e);
        sq_stmt_done(s);
        return -1;
    }
    *out = s;
    return rc;
}

/* Runs a statement that returns no rows; 0 or -1. */
int sq_exec(struct sq_conn *c, enum sq_stmt id, struct err *e, const char *fmt, ...)
{
    struct sql_stmt *s = stmt_get(c, id, e);
    if (s == NULL)
        return -1;
    va_list ap;
    va_start(ap, fmt);
    int rc = sq_bind_args(s, fmt, ap);
    va_end(ap);
    if (rc == SQL_OK)
        rc = sql_step(s);
    sq_stmt_done(s);
    if (rc != SQL_DONE && rc != SQL_ROW)
        return sq_db_fail(c, rc, "run statement", c->store->drv->text_of(s), e);
    return 0;
}

/* Reads a step result after the first: 1 for a row, 0 at the end, -1 on error. */
int sq_next_row(struct sq_conn *c, struct sql_stmt *s, struct err *e)
{
    int rc = sql_step(s);
    if (rc == SQL_ROW)
        return 1;
    if (rc == SQL_DONE)
        return 0;
    return sq_db_fail(c, rc, "read rows", c->store->drv->text_of(s), e);
}

char *sq_col_strdup(struct sql_stmt *s, int i)
{
    const char *v = sql_col_text(s, i);
    return v != NULL ? xstrdup(v) : NULL;
}

/* A digest column the store wrote from a validated struct digest. */
void sq_col_digest(struct sql_stmt *s, int i, struct digest *d)
{
    const char *v = sql_col_text(s, i);
    snprintf(d->str, sizeof(d->str), "%s", v != NULL ? v : "");
    d->alg = strncmp(d->str, "sha512:", 7) == 0 ? DIGEST_SHA512 : DIGEST_SHA256;
}

/* Runs a script of statements without results (schema text); 0 or -1 with e set. */
int sq_script(struct sq_conn *c, const char *script, const char *what, struct err *e)
{
    int rc = c->store->drv->exec(c->db, script);
    if (rc != SQL_OK)
        return sq_db_fail(c, rc, what, NULL, e);
    return 0;
}

int sq_vrun(struct sq_conn *c, const char *sql, struct sql_stmt **out, struct err *e,
            const char *fmt, va_list ap)
{
    struct sql_stmt *s = NULL;
    int rc = c->store->drv->prepare(c->db, sql, false, &s);
    if (rc != SQL_OK) {
        sq_db_fail(c, rc, "prepare statement", sql, e);
        return -1;
    }
    check_write_locked(c, s);
    rc = sq_bind_args(s, fmt, ap);
    if (rc == SQL_OK)
        rc = sql_step(s);
    if (rc != SQL_ROW && rc != SQL_DONE) {
        sq_db_fail(c, rc, "run statement", sql, e);
        sql_finalize(s);
        return -1;
    }
    *out = s;
    return rc;
}

int sq_run(struct sq_conn *c, const char *sql, struct sql_stmt **out, struct err *e,
           const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = sq_vrun(c, sql, out, e, fmt, ap);
    va_end(ap);
    return rc;
}

int sq_run_exec(struct sq_conn *c, const char *sql, struct err *e, const char *fmt, ...)
{
    struct sql_stmt *s = NULL;
    va_list ap;
    va_start(ap, fmt);
    int rc = sq_vrun(c, sql, &s, e, fmt, ap);
    va_end(ap);
    if (rc < 0)
        return -1;
    sql_finalize(s);
    return 0;
}

static void release_wmu(struct sq_conn *c)
{
    if (!c->has_wmu)
        return;
    struct sq_store *st = c->store;
    if (c->is_secure_delete) {
        c->is_secure_delete = false;
        (void)st->drv->set_secure_delete(c->db, false);
    }
    c->db = c->own_db;
    c->stmts = c->own_stmts;
    c->has_wmu = false;
    AZ(pthread_mutex_unlock(&st->wmu));
}

/* A savepoint statement of the open unit (sq_write_begin), level n. */
static int savepoint(struct sq_conn *c, const char *verb, int n, struct err *e)
{
    char sql[48];
    snprintf(sql, sizeof(sql), "%s sq_unit_%d", verb, n);
    return sq_script(c, sql, "run a savepoint statement", e);
}

/* Write transactions of this process take wmu first: they queue on a mutex instead of
 * colliding on the database's write lock and backing off in its busy handler. wmu is held
 * until COMMIT or ROLLBACK, not across the group-commit wait.
 *
 * With a driver that keeps a page cache per connection (SQLite), they all run on one
 * connection, the store's writer, lent to the thread while it holds wmu. SQLite drops a
 * connection's whole cache when it sees that another connection wrote; with a connection
 * per thread every write transaction found its cache empty and read the b-trees' upper
 * pages again (at a million tags, the push's CPU per push was twice that at a thousand).
 * The writer keeps them across transactions, in a larger cache (drv->setup_writer). */
int sq_tx_begin(struct sq_conn *c, bool is_write, struct err *e)
{
    struct sq_store *st = c->store;
    if (c->is_unit) {
        /* Inside a unit of work: a savepoint of its transaction (the clock and the writer
         * stay as the unit has them). */
        ASSERT(c->n_savepoints < SQ_SAVEPOINTS_MAX);
        if (savepoint(c, "SAVEPOINT", c->n_savepoints + 1, e) != 0)
            return -1;
        c->n_savepoints++;
        if (is_write)
            c->savepoint_writes |= 1u << c->n_savepoints;
        return 0;
    }
    c->is_write_tx = is_write;
    c->is_clock_synced = false;
    if (is_write) {
        AZ(pthread_mutex_lock(&st->wmu));
        c->has_wmu = true;
        if (st->drv->setup_writer != NULL) {
            if (st->wdb == NULL && (st->drv->open(st->path, &st->wdb, e) != 0 ||
                                    st->drv->setup_writer(st->wdb, e) != 0)) {
                if (st->wdb != NULL)
                    st->drv->close(st->wdb);
                st->wdb = NULL;
                release_wmu(c);
                return -1;
            }
            c->db = st->wdb;
            c->stmts = st->wstmts;
        }
    }
    int rc = st->drv->begin(c->db, is_write);
    if (rc == SQL_OK)
        return 0;
    sq_db_fail(c, rc, "run statement", is_write ? "BEGIN (write)" : "BEGIN", e);
    release_wmu(c);
    return -1;
}

int sq_tx_secure_delete(struct sq_conn *c, struct err *e)
{
    ASSERT(c->has_wmu);
    if (c->store->drv->set_secure_delete == NULL)
        return 0;
    if (c->store->drv->set_secure_delete(c->db, true) != SQL_OK)
        return err_set(e, ERR_IO, NULL);
    c->is_secure_delete = true;
    return 0;
}

/* Every write of this process holds wmu, autocommit statements too (sq_autocommit_lock):
 * SQLite's commit hook checkpoints on the connection that just committed, under it, and no
 * checkpoint may start beside a write that may start the log over. SQLite before 3.51.3
 * (Debian 12 ships 3.40.1) can corrupt the database when a passive checkpoint starts while
 * another connection's commit starts the log over (https://sqlite.org/wal.html, "WAL-reset
 * bug"); a checkpointer thread running beside the writer did, within two minutes
 * (docs/performance.md). The log copier's checkpoints beside the writes are safe only
 * because they run under a read transaction opened under wmu (log_copier.c). */
void sq_autocommit_lock(struct sq_conn *c)
{
    if (c->is_unit)
        return; /* the unit holds wmu: the write joins its transaction */
    ASSERT(!c->has_wmu && !c->has_autocommit_lock);
    AZ(pthread_mutex_lock(&c->store->wmu));
    c->has_autocommit_lock = true;
}

void sq_autocommit_unlock(struct sq_conn *c)
{
    if (c->is_unit && !c->has_autocommit_lock)
        return;
    ASSERT(c->has_autocommit_lock);
    c->has_autocommit_lock = false;
    AZ(pthread_mutex_unlock(&c->store->wmu));
}

/* A TRUNCATE checkpoint takes SQLite's write lock itself, but gives up to a passive one when
 * that lock stays busy past the busy handler: under wmu, like every checkpoint that may end
 * the log. It waits for readers to leave the log,
 * holding writes back meanwhile, but not for another checkpoint (SQLite answers busy at
 * once): the log copier is held between passes first (sq_log_copier_hold). It runs
 * rarely (the sealing pass at start, a repository purge). */
int sq_compact_log(struct sq_conn *c)
{
    struct sq_store *st = c->store;
    if (st->drv->compact_log == NULL)
        return SQL_OK;
    sq_log_copier_hold(st->copier, true);
    sq_autocommit_lock(c);
    int rc = st->drv->compact_log(c->db);
    sq_autocommit_unlock(c);
    sq_log_copier_hold(st->copier, false);
    return rc;
}

/* Outside a transaction, under wmu like a checkpoint (SQLite's VACUUM takes the write lock
 * and rewrites every page); it runs once, at the start that sealed rows an older version
 * left in clear, and after each removal of a repository (sq_repo_purge). */
int sq_rebuild(struct sq_conn *c)
{
    struct sq_store *st = c->store;
    if (st->drv->rebuild == NULL)
        return SQL_OK;
    sq_autocommit_lock(c);
    int rc = st->drv->rebuild(c->db);
    sq_autocommit_unlock(c);
    return rc;
}


/* The removal of a repository marks the rebuild it needs in its own transaction
 * (sq_rebuild_mark), so that a stop between its commit and the rebuild's end is made good
 * at the next open (sq_rebuild_if_pending). */
#define SQ_REBUILD_PENDING "rebuild_pending"

int sq_rebuild_mark(struct sq_conn *c, struct err *e)
{
    if (c->store->drv->rebuild == NULL)
        return 0;
    return sq_run_exec(c, "INSERT INTO auth_meta(k, v) VALUES ('" SQ_REBUILD_PENDING "', 1)"
                          " ON CONFLICT(k) DO NOTHING", e, "");
}

int sq_rebuild_pending(struct sq_conn *c, const char *why)
{
    if (c->store->drv->rebuild == NULL)
        return 0;
    struct err e = {0};
    struct sql_stmt *s;
    int rc = sq_run(c, "SELECT 1 FROM auth_meta WHERE k = '" SQ_REBUILD_PENDING "'", &s, &e, "");
    if (rc < 0)
        return -1;
    sql_finalize(s);
    if (rc != SQL_ROW)
        return 0;
    int64_t start_ms = util_now_ms();
    if (sq_rebuild(c) != SQL_OK) {
        log_error("metastore", "failed to rebuild the database %s: stale copies of removed "
                               "rows may remain in the free space of pages (tried again at "
                               "the next start)", why);
        return -1;
    }
    if (sq_tx_begin(c, true, &e) != 0)
        return -1;
    if (sq_run_exec(c, "DELETE FROM auth_meta WHERE k = '" SQ_REBUILD_PENDING "'", &e, "") != 0) {
        sq_tx_rollback(c);
        return -1;
    }
    if (sq_tx_commit(c, &e) != 0)
        return -1;
    log_info("metastore", "rebuilt the database %s in %" PRId64 " ms", why,
             util_now_ms() - start_ms);
    return 1;
}

/* Returns once every transaction committed before the call is on stable storage.
 * Commits that arrive while one thread is syncing wait for the next sync, which covers
 * them all: under concurrency one fdatasync serves many acknowledged writes. A driver
 * whose commits are durable on their own has no sync: nothing to wait for. */
int sq_durable_wait(struct sq_store *st, struct err *e)
{
    if (st->drv->sync == NULL)
        return 0;
    int rc = 0;
    AZ(pthread_mutex_lock(&st->dmu));
    uint64_t ticket = ++st->d_requested;
    while (st->d_synced < ticket) {
        if (st->is_d_busy) {
            AZ(pthread_cond_wait(&st->dcv, &st->dmu));
            continue;
        }
        st->is_d_busy = true;
        uint64_t target = st->d_requested;
        AZ(pthread_mutex_unlock(&st->dmu));
        int sync_rc = st->drv->sync(st->path);
        int saved = errno;
        AZ(pthread_mutex_lock(&st->dmu));
        st->is_d_busy = false;
        AZ(pthread_cond_broadcast(&st->dcv));
        if (sync_rc != 0) {
            errno = saved;
            log_error("metastore", "failed to fsync the write-ahead log of %s: %s", st->path,
                      strerror(saved));
            rc = err_set(e, saved == ENOSPC ? ERR_NO_SPACE : ERR_IO, NULL);
            break;
        }
        if (target > st->d_synced)
            st->d_synced = target;
    }
    AZ(pthread_mutex_unlock(&st->dmu));
    return rc;
}

void sq_tx_rollback(struct sq_conn *c)
{
    if (c->is_unit && c->n_savepoints > 0) {
        /* Undoes this savepoint's writes only; the unit goes on. A failure here leaves the
         * unit's transaction in doubt: its commit fails then (write_end). */
        struct err ignored = {0};
        if (savepoint(c, "ROLLBACK TO", c->n_savepoints, &ignored) != 0 ||
            savepoint(c, "RELEASE", c->n_savepoints, &ignored) != 0)
            c->is_unit_failed = true;
        c->savepoint_writes &= ~(1u << c->n_savepoints);
        c->n_savepoints--;
        return;
    }
    c->store->drv->rollback(c->db);
    release_wmu(c);
}

/* Every SQ_OPTIMIZE_EVERY_COMMITS write commits (under wmu, after the commit) the driver
 * refreshes stale planner statistics; usually a no-op. */
static void stats_refresh(struct sq_conn *c)
{
    if (!c->has_wmu || ++c->store->n_write_commits % SQ_OPTIMIZE_EVERY_COMMITS != 0)
        return;
    if (c->store->drv->refresh_stats != NULL)
        c->store->drv->refresh_stats(c->db);
}

static int tx_commit(struct sq_conn *c, struct err *e)
{
    int rc = c->store->drv->commit(c->db);
    if (rc != SQL_OK) {
        sq_db_fail(c, rc, "run statement", "COMMIT", e);
        sq_tx_rollback(c);
        return -1;
    }
    stats_refresh(c);
    if (c->has_wmu)
        sq_log_copier_note_commit(c->store->copier, c->db);
    release_wmu(c);
    return 0;
}

/* Ends the innermost savepoint of the unit, keeping its writes in the unit. A write
 * transaction that asked for a synced commit has the unit's commit synced. */
static int savepoint_release(struct sq_conn *c, bool is_synced, struct err *e)
{
    ASSERT(c->n_savepoints > 0);
    int rc = savepoint(c, "RELEASE", c->n_savepoints, e);
    if (rc != 0) {
        sq_tx_rollback(c);
        return -1;
    }
    c->is_unit_synced |= is_synced && (c->savepoint_writes & (1u << c->n_savepoints)) != 0;
    c->savepoint_writes &= ~(1u << c->n_savepoints);
    c->n_savepoints--;
    return 0;
}

/* Commits without waiting for the sync, for writes that a crash may lose because they are
 * fetched again: events applied from a peer (with the version-vector entry that says they
 * are here, in the same transaction) and a replicated manifest made visible (pending again
 * if lost). WAL order keeps the next synced commit covering them. One fsync per applied
 * event bounded replication to ~250 events/s on this machine. sq_vv_get syncs after it
 * reads the version vector and before it leaves the process, so no peer ever learns of
 * an event that is not durable here. */
int sq_tx_commit_unsynced(struct sq_conn *c, struct err *e)
{
    if (c->is_unit)
        return savepoint_release(c, false, e);
    return tx_commit(c, e);
}

int sq_tx_commit(struct sq_conn *c, struct err *e)
{
    if (c->is_unit)
        return savepoint_release(c, true, e);
    if (tx_commit(c, e) != 0)
        return -1;
    /* Acknowledged means durable: a write transaction returns once it is synced. */
    if (c->is_write_tx)
        return sq_durable_wait(c->store, e);
    return 0;
}

int sq_write_begin(struct metastore *ms, struct err *e)
{
    struct sq_conn *c = sq_conn_of(ms, e);
    if (c == NULL)
        return -1;
    ASSERT(!c->is_unit && !c->has_wmu);
    if (sq_tx_begin(c, true, e) != 0)
        return -1;
    c->is_unit = true;
    c->is_unit_synced = false;
    c->is_unit_failed = false;
    c->n_savepoints = 0;
    c->savepoint_writes = 0;
    return 0;
}

int sq_write_end(struct metastore *ms, bool is_commit, struct err *e)
{
    struct sq_conn *c = sq_conn_of(ms, e);
    if (c == NULL)
        return -1;
    ASSERT(c->is_unit && c->n_savepoints == 0);
    c->is_unit = false;
    if (!is_commit || c->is_unit_failed) {
        sq_tx_rollback(c);
        if (!is_commit)
            return 0;
        return err_set(e, ERR_IO, NULL);
    }
    /* Synced when one of its operations asked for it, as that operation alone would. */
    if (!c->is_unit_synced)
        return tx_commit(c, e);
    return sq_tx_commit(c, e);
}

/* Collects the names a listing query returns, `rc` being its first step. At most
 * limit names are kept (limit < 0: all); has_more says whether a further row came. */
int sq_collect_names(struct sq_conn *c, struct sql_stmt *s, int rc, long limit,
                     struct meta_name_list *out, struct err *e)
{
    size_t cap = 0;
    int row = rc == SQL_ROW ? 1 : 0;
    while (row == 1) {
        if (limit >= 0 && out->n == (size_t)limit) {
            out->has_more = true;
            break;
        }
        if (out->n == cap) {
            cap = cap ? cap * 2 : 16;
            out->names = xrealloc(out->names, cap * sizeof(*out->names));
        }
        out->names[out->n++] = sq_col_strdup(s, 0);
        row = sq_next_row(c, s, e);
    }
    sq_stmt_done(s);
    if (row < 0) {
        meta_name_list_fini(out);
        return -1;
    }
    return 0;
}

int sq_collect_rows(struct sq_conn *c, struct sql_stmt *s, int rc, size_t size,
                    sq_row_read_f *read_row, void **items, size_t *n, struct err *e)
{
    size_t cap = 0;
    *items = NULL;
    *n = 0;
    int row = rc == SQL_ROW ? 1 : 0;
    for (; row == 1; row = sq_next_row(c, s, e)) {
        if (*n == cap) {
            cap = cap ? cap * 2 : 16;
            *items = xrealloc(*items, cap * size);
        }
        void *elem = (char *)*items + *n * size;
        memset(elem, 0, size);
        read_row(s, elem);
        (*n)++;
    }
    return row < 0 ? -1 : 0;
}

int sq_collect_columns(struct sq_conn *c, struct sql_stmt *s, int rc, int ncols,
                       struct meta_name_list *out, struct err *e)
{
    int row = rc == SQL_ROW ? 1 : 0;
    for (; row == 1; row = sq_next_row(c, s, e)) {
        out->names = xrealloc(out->names, (out->n + (size_t)ncols) * sizeof(*out->names));
        for (int i = 0; i < ncols; i++)
            out->names[out->n++] = sq_col_strdup(s, i);
    }
    if (row < 0) {
        meta_name_list_fini(out);
        return -1;
    }
    return 0;
}

int sq_count_due(struct sq_conn *c, const char *table, const char *at, int64_t cutoff_ms,
                 int64_t *n, int64_t *n_due, struct err *e)
{
    char sql[200];
    snprintf(sql, sizeof(sql),
             "SELECT count(*), coalesce(sum(CASE WHEN %s <= ?1 THEN 1 ELSE 0 END), 0) FROM %s",
             at, table);
    struct sql_stmt *s;
    int rc = sq_run(c, sql, &s, e, "i", cutoff_ms);
    if (rc < 0)
        return -1;
    *n = rc == SQL_ROW ? sql_col_int64(s, 0) : 0;
    *n_due = rc == SQL_ROW ? sql_col_int64(s, 1) : 0;
    sql_finalize(s);
    return 0;
}

/* SQL LIMIT for a page of n names plus one to learn whether more follow. */
int64_t sq_page_limit(long n)
{
    if (n < 0 || (int64_t)n >= INT64_MAX - 1)
        return -1;
    return (int64_t)n + 1;
}

void sq_close(struct metastore *ms)
{
    if (ms == NULL)
        return;
    struct sq_store *st = store_of(ms);
    sq_seal_mark_at_close(st);
    /* After this no thread-exit destructor runs for this store; the connections of
     * threads still alive are closed below. */
    sq_log_copier_stop(st->copier); /* it uses the writer connection */
    st->copier = NULL;
    AZ(pthread_key_delete(st->key));
    AZ(pthread_mutex_lock(&st->mu));
    struct sq_conn *c = st->conns;
    st->conns = NULL;
    AZ(pthread_mutex_unlock(&st->mu));
    while (c != NULL) {
        struct sq_conn *next = c->next;
        conn_close(c);
        c = next;
    }
    if (st->wdb != NULL) {
        stmts_finalize(st->wstmts);
        st->drv->close(st->wdb);
        st->wdb = NULL;
    }
    AZ(pthread_mutex_destroy(&st->mu));
    pthread_mutex_destroy(&st->dmu);
    pthread_mutex_destroy(&st->wmu);
    pthread_cond_destroy(&st->dcv);
    manifest_cache_free(st->manifests);
    st->magic = 0;
    FREE_AND_NULL(st->path);
    FREE_AND_NULL(st->region);
    free(st);
}

/* One read of a real table by its key, so a missing schema fails too; its own connection
 * is the calling thread's, made again if it went stale (sql_pg.c). */
static int sq_ping(struct metastore *ms, struct err *e)
{
    struct sq_conn *c = sq_conn_of(ms, e);
    if (c == NULL)
        return -1;
    struct sql_stmt *s = NULL;
    if (sq_run(c, "SELECT 1 FROM repos WHERE id = 0", &s, e, "") < 0)
        return -1;
    sql_finalize(s);
    return 0;
}

static const struct metastore_ops sq_ops = {
    .name = "sql", /* the store's copy says which driver (sq_store_open) */
    .blob_link = sq_blob_link,
    .blob_get = sq_blob_get,
    .blob_find = sq_blob_find,
    .blob_unlink = sq_blob_unlink,
    .manifest_put = sq_manifest_put,
    .manifest_get = sq_manifest_get,
    .manifest_delete = sq_manifest_delete,
    .tag_delete = sq_tag_delete,
    .tag_list = sq_tag_list,
    .repo_list = sq_repo_list,
    .referrers = sq_referrers,
    .upload_create = sq_upload_create,
    .upload_create_capped = sq_upload_create_capped,
    .upload_caps_check = sq_upload_caps_check,
    .upload_oldest = sq_upload_oldest,
    .upload_get = sq_upload_get,
    .upload_delete = sq_upload_delete,
    .upload_claim = sq_upload_claim,
    .upload_list_expired = sq_upload_list_expired,
    .upload_set_acked = sq_upload_set_acked,
    .upload_count_from = sq_upload_count_from,
    .upload_list_single = sq_upload_list_single,
    .close = sq_close,
    .thread_release = sq_thread_release,
    .events_since = sq_events_since,
    .events_read = sq_events_read,
    .vv_get = sq_vv_get,
    .event_apply = sq_event_apply,
    .pending_list = sq_pending_list,
    .pending_complete = sq_pending_complete,
    .status_set = sq_status_set,
    .status_list = sq_status_list,
    .status_drop_region = sq_status_drop_region,
    .status_drop_older = sq_status_drop_older,
    .cursor_get = sq_cursor_get,
    .cursor_set = sq_cursor_set,
    .log_head = sq_log_head,
    .origin_newest = sq_origin_newest,
    .restored_probe = sq_restored_probe,
    .summary = sq_summary,
    .repo_state = sq_repo_state,
    .state_merge = sq_state_merge,
    .manifest_lookup = sq_manifest_lookup,
    .manifest_tags = sq_manifest_tags,
    .manifest_holder = sq_manifest_holder,
    .blob_list_all = sq_blob_list_all,
    .blob_lost = sq_blob_lost,
    .gc_due = sq_gc_due,
    .gc_collect = sq_gc_collect,
    .gc_queue_length = sq_gc_queue_length,
    .untagged_due = sq_untagged_due, /* meta_untagged.c */
    .untagged_collect = sq_untagged_collect,
    .untagged_count = sq_untagged_count,
    .tag_clocks = sq_tag_clocks, /* meta_retention.c */
    .tag_delete_if = sq_tag_delete_if,
    .storage_usage = sq_storage_usage,
    .repo_bytes = sq_repo_bytes,
    .manifest_place = sq_manifest_place, /* meta_versions.c */
    .manifest_release = sq_manifest_release,
    .manifest_body_missing = sq_manifest_body_missing, /* meta_versions.c */
    .manifest_body_set = sq_manifest_body_set,
    .manifest_relatives = sq_manifest_relatives,
    .manifest_show_shallow = sq_manifest_show_shallow,
    .blob_is_wanted = sq_blob_is_wanted,
    .object_put = sq_object_put,
    .object_create = sq_object_create,
    .object_delete = sq_object_delete,
    .object_get = sq_object_get,
    .object_exists = sq_object_exists,
    .object_kind_may_exist = sq_object_kind_may_exist,
    .write_begin = sq_write_begin,
    .write_end = sq_write_end,
    .object_list = sq_object_list,
    .delivery_add = sq_delivery_add,
    .delivery_due = sq_delivery_due,
    .delivery_update = sq_delivery_update,
    .delivery_list = sq_delivery_list,
    .delivery_prune = sq_delivery_prune,
    .lease_hold = sq_lease_hold,
    .gc_fence = sq_gc_fence,
    .identity_put = sq_identity_put,
    .identity_delete = sq_identity_delete,
    .role_set = sq_role_set,
    .auth_load = sq_auth_load,
    .auth_generation = sq_auth_generation,
    .audit_append = sq_audit_append,
    .audit_list = sq_audit_list,
    .audit_set_count = sq_audit_set_count,
    .upload_set_owner = sq_upload_set_owner,
    .upload_owner = sq_upload_owner,
    .upload_count_owned = sq_upload_count_owned,
    .holdings = sq_holdings, /* meta_residency.c */
    .repo_purge = sq_repo_purge,
    .peer_ack_set = sq_peer_ack_set, /* meta_compact.c */
    .peer_acks = sq_peer_acks,
    .log_horizon = sq_log_horizon,
    .origin_clocks = sq_origin_clocks,
    .log_compact = sq_log_compact,
    .tombs_expire = sq_tombs_expire,
    .log_adopt = sq_log_adopt,
    .objects_state = sq_objects_state,
    .repo_statuses = sq_repo_statuses,
    .state_forget = sq_state_forget,
    .log_stats = sq_log_stats,
    .tag_acked = sq_tag_acked,
    .ping = sq_ping,
};

struct sq_store *sq_store_open(const struct sql_driver *drv, const char *target, const char *region,
                               struct err *e)
{
    struct sq_store *st = xcalloc(1, sizeof(*st));
    st->ops = sq_ops;
    st->ops.name = drv->name;
    st->base.ops = &st->ops;
    st->drv = drv;
    st->magic = SQ_STORE_MAGIC;
    st->path = xstrdup(target);
    st->region = xstrdup(region);
    AZ(pthread_mutex_init(&st->mu, NULL));
    AZ(pthread_mutex_init(&st->dmu, NULL));
    AZ(pthread_mutex_init(&st->wmu, NULL));
    AZ(pthread_cond_init(&st->dcv, NULL));
    AZ(pthread_key_create(&st->key, on_thread_exit));
    st->is_opening = true;
    atomic_init(&st->lock_objects, drv->dialect == SQL_DIALECT_SQLITE ? 0 : 2);
    atomic_init(&st->webhook_objects, 0);
    if (drv->commits != NULL)
        st->manifests = manifest_cache_new();
    if (conn_get(st, e) == NULL) {
        sq_close(&st->base);
        return NULL;
    }
    return st;
}
