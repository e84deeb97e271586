/* SQLite metastore: with metastore_sqlite_{uploads,webhooks,access}.c (sections in their
 * own files, sharing metastore_sqlite_int.h) the only files that include <sqlite3.h>.
 * This one holds the connections, statements, transactions, schema and migrations,
 * repositories, blobs, manifests, tags and replication. It keeps metadata only;
 * blob bytes live in the blobstore and callers decide what a name or digest may be.
 * Each thread has its own connection (WAL: readers never wait for the writer); every
 * mutation is one BEGIN IMMEDIATE transaction that also appends its event rows, so the
 * event log and the state it describes never disagree. */
#include "metastore.h"

#include <fcntl.h>
#include <errno.h>
#include <unistd.h>
#include <inttypes.h>
#include <time.h>
#include <jansson.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "buf.h"
#include "base64.h"
#include "hlc.h"
#include "log.h"
#include "secret.h"
#include "util.h"
#include "metastore_sqlite_int.h"
#include "schema_sql.h"

/* The schema: one .sql file per migration step in src/store/schema/sqlite/ (v1.sql,
 * v2.sql, v3_audit.sql, ...), embedded at build time as sq_schema_<file> (schema_sql.h,
 * made by scripts/embed_sql.py). A change goes into a new step, never into a step's file. */
#define SQ_SCHEMA_VERSION 4
/* Planner statistics: ANALYZE reads at most this many rows of each index (an estimate is
 * all the planner needs), and PRAGMA optimize re-runs it on stale tables every so many
 * write commits. The hot statements do not depend on it: their plans are right without
 * statistics too (tests/unit/test_query_plans.c checks both). */
#define SQ_ANALYSIS_LIMIT_ROWS 400
#define SQ_OPTIMIZE_EVERY_COMMITS 10000

/* Every statement the store runs, prepared once per connection on first use. */

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

const char *metastore_sqlite_statement(size_t i, const char **id)
{
    if (i >= SQ_STMT_COUNT_)
        return NULL;
    if (id != NULL)
        *id = sq_names[i];
    return sq_sql[i];
}

void metastore_sqlite_trace(metastore_sqlite_trace_f *fn, void *arg)
{
    sql_sqlite_trace(fn, arg);
}

/* Webhook secrets at rest (defined with the replicated objects, below). */
static char *seal_value(const struct sq_store *st, const char *kind, const char *value_json,
                        bool is_seal);
static char *seal_payload(const struct sq_store *st, const char *event_kind,
                          const char *payload, bool is_seal);

static const struct metastore_ops sq_ops;

static struct sq_store *store_of(struct metastore *ms)
{
    AN(ms);
    struct sq_store *st = (struct sq_store *)ms;
    ASSERT(st->magic == SQ_STORE_MAGIC);
    return st;
}

/* Errors: the driver logs the database's message and maps rc into e. Returns -1. */
int sq_db_fail(struct sq_conn *c, int rc, const char *what, const char *sql,
               struct err *e)
{
    return c->store->drv->fail(c->db, rc, what, sql, e);
}

/* Connections ------------------------------------------------------------- */

static void conn_close(struct sq_conn *c)
{
    ASSERT(c->magic == SQ_CONN_MAGIC);
    for (int i = 0; i < SQ_STMT_COUNT_; i++)
        sql_finalize(c->stmts[i]);
    c->store->drv->close(c->db);
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

static struct sq_conn *conn_open(struct sq_store *st, struct err *e)
{
    struct sql_db *db;
    if (st->drv->open(st->path, &db, e) != 0)
        return NULL;
    struct sq_conn *c = xcalloc(1, sizeof(*c));
    c->magic = SQ_CONN_MAGIC;
    c->store = st;
    c->db = db;
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

/* Statements -------------------------------------------------------------- */

static struct sql_stmt *stmt_get(struct sq_conn *c, enum sq_stmt id, struct err *e)
{
    if (c->stmts[id] == NULL) {
        int rc = c->store->drv->prepare(c->db, sq_sql[id], true, &c->stmts[id]);
        if (rc != SQL_OK) {
            sq_db_fail(c, rc, "prepare statement", sq_sql[id], e);
            return NULL;
        }
    }
    return c->stmts[id];
}

/* Ends a use of a cached statement; bindings are cleared so no pointer outlives it. */
void sq_stmt_done(struct sql_stmt *s)
{
    sql_reset(s);
}

int sq_bind_args(struct sql_stmt *s, const char *fmt, va_list ap)
{
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
        sq_db_fail(c, rc, "run statement", sq_sql[id], e);
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
        return sq_db_fail(c, rc, "run statement", sq_sql[id], e);
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

/* A digest column written by this file from a validated struct digest. */
static void col_digest(struct sql_stmt *s, int i, struct digest *d)
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

/* One-shot statements (prepared per call, for what is not on a hot path) ----- */

int sq_vrun(struct sq_conn *c, const char *sql, struct sql_stmt **out, struct err *e,
            const char *fmt, va_list ap)
{
    struct sql_stmt *s = NULL;
    int rc = c->store->drv->prepare(c->db, sql, false, &s);
    if (rc != SQL_OK) {
        sq_db_fail(c, rc, "prepare statement", sql, e);
        return -1;
    }
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

/* Transactions ------------------------------------------------------------ */

/* Write transactions of this process take wmu first: they queue on a mutex instead of
 * colliding on the database's write lock and backing off in its busy handler. wmu is held
 * until COMMIT or ROLLBACK, not across the group-commit wait. */
int sq_tx_begin(struct sq_conn *c, bool is_write, struct err *e)
{
    c->is_write_tx = is_write;
    if (is_write) {
        AZ(pthread_mutex_lock(&c->store->wmu));
        c->has_wmu = true;
    }
    int rc = c->store->drv->begin(c->db, is_write);
    if (rc == SQL_OK)
        return 0;
    sq_db_fail(c, rc, "run statement", is_write ? "BEGIN (write)" : "BEGIN", e);
    if (c->has_wmu) {
        c->has_wmu = false;
        AZ(pthread_mutex_unlock(&c->store->wmu));
    }
    return -1;
}

static void release_wmu(struct sq_conn *c)
{
    if (c->has_wmu) {
        c->has_wmu = false;
        AZ(pthread_mutex_unlock(&c->store->wmu));
    }
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
    release_wmu(c);
    return 0;
}

/* Commits without waiting for the sync, for writes that a crash may lose because they are
 * fetched again: events applied from a peer (with the version-vector entry that says they
 * are here, in the same transaction) and a replicated manifest made visible (pending again
 * if lost). WAL order keeps the next synced commit covering them. One fsync per applied
 * event bounded replication to ~250 events/s on this machine. sq_vv_get syncs after it
 * reads the version vector and before it leaves the process, so no peer ever learns of
 * an event that is not durable here. */
static int tx_commit_unsynced(struct sq_conn *c, struct err *e)
{
    return tx_commit(c, e);
}

int sq_tx_commit(struct sq_conn *c, struct err *e)
{
    if (tx_commit(c, e) != 0)
        return -1;
    /* Acknowledged means durable: a write transaction returns once it is synced. */
    if (c->is_write_tx)
        return sq_durable_wait(c->store, e);
    return 0;
}

/* Events ------------------------------------------------------------------ */

/* The hybrid logical clock (hlc.c) of this store. Called inside the write transaction,
 * so hlc order is commit order on this node. */
static int64_t hlc_next(struct sq_store *st)
{
    AZ(pthread_mutex_lock(&st->mu));
    st->hlc_last = (int64_t)hlc_tick((uint64_t)st->hlc_last, util_now_ms());
    int64_t v = st->hlc_last;
    AZ(pthread_mutex_unlock(&st->mu));
    return v;
}

/* Moves the clock past a timestamp seen from a peer. */
static void hlc_seen(struct sq_store *st, uint64_t remote)
{
    AZ(pthread_mutex_lock(&st->mu));
    st->hlc_last = (int64_t)hlc_observe((uint64_t)st->hlc_last, remote, util_now_ms());
    AZ(pthread_mutex_unlock(&st->mu));
}

/* Reads the version-vector entry of origin (0 if none) inside a transaction. */
static int vv_read(struct sq_conn *c, const char *origin, int64_t *seq, struct err *e)
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
static int event_insert(struct sq_conn *c, const char *origin, int64_t origin_seq, int64_t hlc,
                        const char *kind, const char *repo, const char *name,
                        const char *digest, const char *payload, struct err *e)
{
    if (sq_exec(c, SQ_EVENT_INSERT, e, "tittttti", origin, hlc, kind, repo, name, digest, payload,
                origin_seq) != 0)
        return -1;
    return sq_exec(c, SQ_VV_SET, e, "ti", origin, origin_seq);
}

/* Appends one local event inside the caller's write transaction, stamped with the next
 * sequence number of this region and a fresh clock (*hlc_out if non-NULL). payload is
 * a JSON object or NULL. */
static int event_append_clock(struct sq_conn *c, const char *kind, const char *repo,
                              const char *name, const char *digest, const char *payload,
                              int64_t hlc, struct err *e)
{
    struct sq_store *st = c->store;
    int64_t seq;
    if (vv_read(c, st->region, &seq, e) != 0)
        return -1;
    return event_insert(c, st->region, seq + 1, hlc, kind, repo, name, digest, payload, e);
}

static int event_append(struct sq_conn *c, const char *kind, const char *repo,
                        const char *name, const char *digest, const char *payload,
                        struct err *e)
{
    return event_append_clock(c, kind, repo, name, digest, payload, hlc_next(c->store), e);
}

/* Last-writer-wins state ------------------------------------------------------
 * Local writes and events applied from peers go through the same merge functions, so
 * that every region reaches the same state whatever order the events arrive in:
 *   tag register (repo, name) -> digest | deleted, ordered by (hlc, origin)
 *   manifest (repo, digest): present since its put clock, or a tombstone with its own;
 *     the later of the two wins, and a tombstone also deletes older tag registers
 *     naming the manifest. */

static int repo_find(struct sq_conn *c, const char *repo, int64_t *id, struct err *e);
static int repo_ensure(struct sq_conn *c, const char *repo, int64_t *id, struct err *e);

/* Makes `tags` agree with the register of (repo, name): a row when the register names a
 * manifest this region has a record of, none otherwise. */
static int tag_materialize(struct sq_conn *c, int64_t repo_id, const char *repo,
                           const char *name, struct err *e)
{
    struct sql_stmt *s;
    int rc = sq_query(c, SQ_TREG_GET, &s, e, "tt", repo, name);
    if (rc < 0)
        return -1;
    char *digest = rc == SQL_ROW ? sq_col_strdup(s, 0) : NULL;
    sq_stmt_done(s);
    bool has_manifest = false;
    if (digest != NULL) {
        rc = sq_query(c, SQ_MANIFEST_CLOCK, &s, e, "it", repo_id, digest);
        if (rc < 0) {
            free(digest);
            return -1;
        }
        has_manifest = rc == SQL_ROW;
        sq_stmt_done(s);
    }
    if (has_manifest)
        rc = sq_exec(c, SQ_TAG_UPSERT, e, "itti", repo_id, name, digest, util_now_ms());
    else
        rc = sq_exec(c, SQ_TAG_DELETE, e, "it", repo_id, name);
    free(digest);
    return rc;
}

/* Merges a write of tag register (repo, name) := digest (NULL: delete) at (hlc, origin).
 * *is_applied tells whether it won. */
static int tag_merge(struct sq_conn *c, int64_t repo_id, const char *repo, const char *name,
                     const char *digest, int64_t hlc, const char *origin, bool *is_applied,
                     struct err *e)
{
    struct sql_stmt *s;
    *is_applied = false;
    int rc = sq_query(c, SQ_TREG_GET, &s, e, "tt", repo, name);
    if (rc < 0)
        return -1;
    bool wins = true;
    if (rc == SQL_ROW) {
        int64_t cur_hlc = sql_col_int64(s, 1);
        const char *cur_origin = sql_col_text(s, 2);
        wins = hlc_lww_wins((uint64_t)hlc, origin, (uint64_t)cur_hlc, cur_origin ? cur_origin : "");
    }
    sq_stmt_done(s);
    if (!wins)
        return 0;
    if (sq_exec(c, SQ_TREG_SET, e, "tttit", repo, name, digest, hlc, origin) != 0)
        return -1;
    *is_applied = true;
    return tag_materialize(c, repo_id, repo, name, e);
}

/* Merges a manifest tombstone at (hlc, origin): deletes the manifest when its put is
 * older. Tag registers are not touched here (that would depend on arrival order); the
 * region where the delete happens writes a tag_delete for each tag naming it. */
static int tomb_merge(struct sq_conn *c, int64_t repo_id, const char *repo, const char *digest,
                      int64_t hlc, const char *origin, struct err *e)
{
    struct sql_stmt *s;
    int rc = sq_query(c, SQ_TOMB_GET, &s, e, "tt", repo, digest);
    if (rc < 0)
        return -1;
    bool wins = true;
    if (rc == SQL_ROW)
        wins = hlc_lww_wins((uint64_t)hlc, origin, (uint64_t)sql_col_int64(s, 0),
                            sql_col_text(s, 1));
    sq_stmt_done(s);
    if (!wins)
        return 0;
    if (sq_exec(c, SQ_TOMB_SET, e, "ttit", repo, digest, hlc, origin) != 0)
        return -1;
    rc = sq_query(c, SQ_MANIFEST_CLOCK, &s, e, "it", repo_id, digest);
    if (rc < 0)
        return -1;
    bool is_older = rc == SQL_ROW &&
                    hlc_lww_wins((uint64_t)hlc, origin, (uint64_t)sql_col_int64(s, 0),
                                 sql_col_text(s, 1));
    sq_stmt_done(s);
    if (is_older) {
        if (sq_exec(c, SQ_TAGS_DELETE_OF_MANIFEST, e, "it", repo_id, digest) != 0 ||
            sq_exec(c, SQ_REFS_DELETE, e, "it", repo_id, digest) != 0 ||
            sq_exec(c, SQ_MANIFEST_DELETE, e, "it", repo_id, digest) != 0)
            return -1;
    }
    return 0;
}

/* Names of the tag registers of repo that name digest (read in full first: the caller
 * then writes to the same table). */
static int tag_names_of(struct sq_conn *c, const char *repo, const char *digest,
                        struct meta_name_list *out, struct err *e)
{
    memset(out, 0, sizeof(*out));
    struct sql_stmt *s;
    int rc = sq_query(c, SQ_TREG_OF_DIGEST, &s, e, "tt", repo, digest);
    if (rc < 0)
        return -1;
    for (int row = rc == SQL_ROW; row == 1; row = sq_next_row(c, s, e)) {
        out->names = xrealloc(out->names, (out->n + 1) * sizeof(char *));
        out->names[out->n++] = sq_col_strdup(s, 0);
    }
    sq_stmt_done(s);
    return 0;
}

/* Local delete of a manifest: a tag_delete event for every tag register naming it. */
static int delete_tags_of(struct sq_conn *c, int64_t repo_id, const char *repo,
                          const char *digest, struct err *e)
{
    struct meta_name_list tags;
    if (tag_names_of(c, repo, digest, &tags, e) != 0)
        return -1;
    size_t n = tags.n;
    char **names = tags.names;
    int result = 0;
    for (size_t i = 0; i < n; i++) {
        int64_t hlc = hlc_next(c->store);
        bool applied;
        if (result == 0 &&
            (tag_merge(c, repo_id, repo, names[i], NULL, hlc, c->store->region, &applied, e) !=
                 0 ||
             event_append_clock(c, "tag_delete", repo, names[i], digest, NULL, hlc, e) != 0))
            result = -1;
        free(names[i]);
    }
    free(names);
    return result;
}

/* Is a manifest put at (hlc, origin) superseded by a tombstone? */
static int tomb_covers(struct sq_conn *c, const char *repo, const char *digest, int64_t hlc,
                       const char *origin, bool *covered, struct err *e)
{
    struct sql_stmt *s;
    int rc = sq_query(c, SQ_TOMB_GET, &s, e, "tt", repo, digest);
    if (rc < 0)
        return -1;
    *covered = rc == SQL_ROW &&
               hlc_lww_wins((uint64_t)sql_col_int64(s, 0),
                            sql_col_text(s, 1), (uint64_t)hlc, origin);
    sq_stmt_done(s);
    return 0;
}

/* Tags whose register names digest get their row back once the manifest is here. */
static int tags_rematerialize(struct sq_conn *c, int64_t repo_id, const char *repo,
                              const char *digest, struct err *e)
{
    struct meta_name_list tags;
    if (tag_names_of(c, repo, digest, &tags, e) != 0)
        return -1;
    size_t n = tags.n;
    char **names = tags.names;
    int result = 0;
    for (size_t i = 0; i < n; i++) {
        if (result == 0 && tag_materialize(c, repo_id, repo, names[i], e) != 0)
            result = -1;
        free(names[i]);
    }
    free(names);
    return result;
}

/* The payload of a status event (the format peers parse: merge_status). */
static void status_payload(struct buf *p, const struct meta_status *st)
{
    buf_appends(p, "{\"region\":");
    buf_append_json_string(p, st->region);
    buf_appends(p, ",\"state\":");
    buf_append_json_string(p, st->state);
    buf_printf(p, ",\"bytesDone\":%" PRId64 ",\"bytesTotal\":%" PRId64
                  ",\"updatedMs\":%" PRId64 ",\"details\":",
               st->bytes_done, st->bytes_total, st->updated_ms);
    buf_append_json_string(p, st->details ? st->details : "");
    buf_appends(p, "}");
}

/* Records this region's status of an artifact, optionally as a replicated event. */
static int status_write(struct sq_conn *c, const char *repo, const char *digest,
                        const struct meta_status *st, bool is_event, struct err *e)
{
    if (sq_exec(c, SQ_STATUS_SET, e, "ttttiiit", repo, digest, st->region, st->state,
                st->bytes_done, st->bytes_total, st->updated_ms, st->details) != 0)
        return -1;
    if (!is_event)
        return 0;
    /* The payload is stored, not rebuilt from the row when read: the row moves on (a
     * retry rewrites it as InProgress without an event), and a peer that reads this event
     * later must still see the state it announced (Failed, with its details). */
    struct buf p;
    buf_init(&p, 64 * 1024);
    status_payload(&p, st);
    int rc = event_append(c, "status", repo, NULL, digest, p.data, e);
    buf_fini(&p);
    return rc;
}

/* Checks a payload builder once, as its sticky error allows. */
static int payload_check(struct buf *b, struct err *e)
{
    if (!b->is_too_big)
        return 0;
    log_error("metastore", "failed to build event payload: larger than %zu bytes",
              b->max_bytes);
    return err_set(e, ERR_INTERNAL, NULL);
}

/* Derived event payloads ------------------------------------------------------
 * A manifest_put event used to carry the manifest (base64 body, references) and a status
 * event the status row: copies of what the manifests, manifest_refs and repl_status tables
 * hold. They are now stored without a payload (NULL) and rebuilt here when the event is
 * read, in the same format, so peers of any version see the same events. Events written
 * before keep their stored payload and are served as stored.
 * A manifest_put whose manifest is gone was superseded by a tombstone that is in the log
 * too (a row is deleted only when a later tombstone wins): it is served as a "superseded"
 * event, which every version applies as a no-op (merge_event), leaving the same state as
 * applying the put and then the tombstone. A status whose row is gone, likewise. */

/* The manifest_put payload of the manifest in row s (MANIFEST_PAYLOAD or
 * MANIFESTS_OF_REPO: digest, media_type, artifact_type, annotations, subject, body); NULL
 * with e set if its references cannot be read (a payload without them would make a peer
 * show the manifest before its blobs are there). */
static char *manifest_payload(struct sq_conn *c, struct sql_stmt *s, int64_t repo_id,
                              struct err *e)
{
    struct buf p;
    buf_init(&p, SQ_PAYLOAD_MAX_BYTES);
    buf_appends(&p, "{\"mediaType\":");
    buf_append_json_string(&p, sql_col_text(s, 1));
    for (int col = 2; col <= 4; col++) {
        static const char *const keys[] = {"", "", "artifactType", "annotations", "subject"};
        if (sql_col_is_null(s, col))
            continue;
        buf_printf(&p, ",\"%s\":", keys[col]);
        buf_append_json_string(&p, sql_col_text(s, col));
    }
    buf_appends(&p, ",\"refs\":[");
    struct sql_stmt *r;
    int rr = sq_query(c, SQ_REFS_OF_MANIFEST, &r, e, "it", repo_id,
                      sql_col_text(s, 0));
    int k = 0;
    int row = rr == SQL_ROW;
    for (; rr >= 0 && row == 1; row = sq_next_row(c, r, e), k++)
        buf_printf(&p, "%s{\"digest\":\"%s\",\"isManifest\":%s,\"size\":%" PRId64 "}",
                   k ? "," : "", sql_col_text(r, 0),
                   sql_col_int64(r, 1) ? "true" : "false",
                   (int64_t)sql_col_int64(r, 2));
    if (rr >= 0)
        sq_stmt_done(r);
    if (rr < 0 || row < 0) {
        buf_fini(&p);
        return NULL;
    }
    char *b64 = base64_encode(sql_col_blob(s, 5), sql_col_bytes(s, 5));
    buf_appends(&p, "],\"body\":\"");
    buf_appends(&p, b64);
    buf_appends(&p, "\"}");
    free(b64);
    char *out = buf_steal(&p, NULL);
    buf_fini(&p);
    return out;
}

/* Is this payload one that event_payload_derive rebuilds? (Then it is stored as NULL.) */
static bool is_payload_derivable(const char *kind, const char *origin, const char *payload)
{
    /* Status events keep their payload: it is a snapshot the status row does not keep
     * (see status_write). Status events stored without one are still derived when read. */
    (void)origin;
    (void)payload;
    return strcmp(kind, "manifest_put") == 0;
}

/* Fills in the payload of an event stored without one (see above). *kind may become
 * "superseded" (a static string: the caller must not free it if it changed). Returns the
 * payload (the caller frees it; NULL for a superseded event) or sets *failed. */
static char *event_payload_derive(struct sq_conn *c, const char **kind, const char *origin,
                                  const char *repo, const char *digest, bool *failed,
                                  struct err *e)
{
    *failed = false;
    bool is_put = strcmp(*kind, "manifest_put") == 0;
    if ((!is_put && strcmp(*kind, "status") != 0) || repo == NULL || digest == NULL)
        return NULL;
    struct sql_stmt *s;
    char *payload = NULL;
    int rc;
    if (is_put) {
        int64_t repo_id;
        rc = repo_find(c, repo, &repo_id, e);
        if (rc == 0) {
            rc = sq_query(c, SQ_MANIFEST_PAYLOAD, &s, e, "it", repo_id, digest);
            bool is_queried = rc >= 0;
            if (rc == SQL_ROW) {
                payload = manifest_payload(c, s, repo_id, e);
                if (payload == NULL)
                    rc = -1;
            }
            if (is_queried) /* reset also when the payload failed: the statement is reused */
                sq_stmt_done(s);
        }
    } else {
        rc = sq_query(c, SQ_STATUS_OF_REGION, &s, e, "ttt", repo, digest, origin);
        if (rc == SQL_ROW) {
            struct meta_status st = {.region = (char *)origin,
                                     .state = (char *)sql_col_text(s, 0),
                                     .bytes_done = sql_col_int64(s, 1),
                                     .bytes_total = sql_col_int64(s, 2),
                                     .updated_ms = sql_col_int64(s, 3),
                                     .details = (char *)sql_col_text(s, 4)};
            struct buf p;
            buf_init(&p, 64 * 1024);
            status_payload(&p, &st);
            payload = buf_steal(&p, NULL);
            buf_fini(&p);
        }
        if (rc >= 0)
            sq_stmt_done(s);
    }
    if (rc < 0) {
        *failed = true;
        return NULL;
    }
    if (payload == NULL)
        *kind = "superseded";
    return payload;
}

/* Repositories ------------------------------------------------------------ */

/* 0 and *id if repo exists, 1 if not, -1 on error. */
static int repo_find(struct sq_conn *c, const char *repo, int64_t *id, struct err *e)
{
    struct sql_stmt *s;
    int rc = sq_query(c, SQ_REPO_ID, &s, e, "t", repo);
    if (rc < 0)
        return -1;
    if (rc == SQL_ROW)
        *id = sql_col_int64(s, 0);
    sq_stmt_done(s);
    return rc == SQL_ROW ? 0 : 1;
}

/* Creates repo's row on first use (inside a write transaction). */
static int repo_ensure(struct sq_conn *c, const char *repo, int64_t *id, struct err *e)
{
    if (sq_exec(c, SQ_REPO_INSERT, e, "t", repo) != 0)
        return -1;
    int rc = repo_find(c, repo, id, e);
    if (rc > 0) {
        log_error("metastore", "failed to find repository %s right after creating it", repo);
        return err_set(e, ERR_INTERNAL, NULL);
    }
    return rc;
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

/* SQL LIMIT for a page of n names plus one to learn whether more follow. */
static int64_t page_limit(long n)
{
    if (n < 0 || (int64_t)n >= INT64_MAX - 1)
        return -1;
    return (int64_t)n + 1;
}

/* Blobs ------------------------------------------------------------------- */

static int sq_blob_link(struct metastore *ms, const char *repo, const struct digest *d,
                        uint64_t size, struct err *e)
{
    AN(repo);
    AN(d);
    if (size > (uint64_t)INT64_MAX)
        return err_set(e, ERR_SIZE_INVALID, NULL);
    struct sq_conn *c = sq_conn_of(ms, e);
    if (c == NULL)
        return -1;
    struct buf payload;
    buf_init(&payload, SQ_PAYLOAD_MAX_BYTES);
    int64_t repo_id;

    if (sq_tx_begin(c, true, e) != 0)
        goto out;
    if (repo_ensure(c, repo, &repo_id, e) != 0)
        goto fail;
    if (sq_exec(c, SQ_BLOB_INSERT, e, "ti", d->str, (int64_t)size) != 0)
        goto fail;
    if (sq_exec(c, SQ_LINK_INSERT, e, "it", repo_id, d->str) != 0)
        goto fail;
    /* Linking what is already linked changes nothing and logs nothing. */
    if (sql_changes(c->db) > 0) {
        buf_printf(&payload, "{\"size\":%" PRIu64 "}", size);
        if (payload_check(&payload, e) != 0)
            goto fail;
        if (event_append(c, "blob_link", repo, NULL, d->str, payload.data, e) != 0)
            goto fail;
    }
    if (sq_tx_commit(c, e) != 0)
        goto out;
    buf_fini(&payload);
    return 0;

fail:
    sq_tx_rollback(c);
out:
    buf_fini(&payload);
    return -1;
}

static int sq_blob_get(struct metastore *ms, const char *repo, const struct digest *d,
                       uint64_t *size, struct err *e)
{
    struct sq_conn *c = sq_conn_of(ms, e);
    if (c == NULL)
        return -1;
    struct sql_stmt *s;
    int rc = sq_query(c, SQ_LINK_GET, &s, e, "tt", repo, d->str);
    if (rc < 0)
        return -1;
    if (rc == SQL_ROW)
        *size = (uint64_t)sql_col_int64(s, 0);
    sq_stmt_done(s);
    if (rc != SQL_ROW)
        return err_set(e, ERR_BLOB_UNKNOWN, NULL);
    return 0;
}

static int sq_blob_find(struct metastore *ms, const struct digest *d, uint64_t *size,
                        struct err *e)
{
    struct sq_conn *c = sq_conn_of(ms, e);
    if (c == NULL)
        return -1;
    struct sql_stmt *s;
    int rc = sq_query(c, SQ_BLOB_SIZE, &s, e, "t", d->str);
    if (rc < 0)
        return -1;
    if (rc == SQL_ROW)
        *size = (uint64_t)sql_col_int64(s, 0);
    sq_stmt_done(s);
    if (rc != SQL_ROW)
        return err_set(e, ERR_BLOB_UNKNOWN, NULL);
    return 0;
}

/* 0 when no manifest of repo_id references digest; else -1 with ERR_IN_USE naming one. */
static int referenced_by(struct sq_conn *c, int64_t repo_id, const char *digest, struct err *e)
{
    struct sql_stmt *s;
    int rc = sq_query(c, SQ_REFERENCED_BY, &s, e, "it", repo_id, digest);
    if (rc < 0)
        return -1;
    if (rc == SQL_ROW)
        err_set(e, ERR_IN_USE, "%s is referenced by manifest %s; delete that first", digest,
                sql_col_text(s, 0));
    sq_stmt_done(s);
    return rc == SQL_ROW ? -1 : 0;
}

static int sq_blob_unlink(struct metastore *ms, const char *repo, const struct digest *d,
                          bool *is_orphan, struct err *e)
{
    struct sq_conn *c = sq_conn_of(ms, e);
    if (c == NULL)
        return -1;
    int64_t repo_id;
    struct sql_stmt *s;
    bool is_used = true;

    if (sq_tx_begin(c, true, e) != 0)
        return -1;
    int rc = repo_find(c, repo, &repo_id, e);
    if (rc != 0) {
        if (rc > 0)
            err_set(e, ERR_BLOB_UNKNOWN, NULL);
        goto fail;
    }
    /* Visible means pullable: a blob a manifest of the repository needs stays. */
    if (referenced_by(c, repo_id, d->str, e) != 0)
        goto fail;
    if (sq_exec(c, SQ_LINK_DELETE, e, "it", repo_id, d->str) != 0)
        goto fail;
    if (sql_changes(c->db) == 0) {
        err_set(e, ERR_BLOB_UNKNOWN, NULL);
        goto fail;
    }
    /* Orphan: linked in no repository and referenced by no manifest anywhere. */
    rc = sq_query(c, SQ_BLOB_IS_USED, &s, e, "t", d->str);
    if (rc < 0)
        goto fail;
    is_used = rc == SQL_ROW && (int)sql_col_int64(s, 0) != 0;
    sq_stmt_done(s);
    if (!is_used && sq_exec(c, SQ_BLOB_DELETE, e, "t", d->str) != 0)
        goto fail;
    if (event_append(c, "blob_unlink", repo, NULL, d->str,
                     is_used ? "{\"is_orphan\":false}" : "{\"is_orphan\":true}", e) != 0)
        goto fail;
    if (sq_tx_commit(c, e) != 0)
        return -1;
    if (is_orphan != NULL)
        *is_orphan = !is_used;
    return 0;

fail:
    sq_tx_rollback(c);
    return -1;
}

/* Manifests --------------------------------------------------------------- */

/* Checks one reference of a manifest being put into repo_id: a blob must be linked in
 * the repository (pushed or mounted there), a child manifest visible in it, either with
 * the size its descriptor declares. A blob linked only in another repository does not
 * count: otherwise a manifest naming it would let its pusher (and every reader of repo_id)
 * read a repository they may not pull (OCI: "MAY reject"; distribution rejects too). */
static int check_ref(struct sq_conn *c, int64_t repo_id, const struct meta_ref *ref,
                     struct err *e)
{
    struct sql_stmt *s;
    int rc = sq_query(c, ref->is_manifest ? SQ_MANIFEST_SIZE : SQ_LINK_SIZE, &s, e, "it", repo_id,
                      ref->digest.str);
    if (rc < 0)
        return -1;
    int64_t size = rc == SQL_ROW ? sql_col_int64(s, 0) : -1;
    sq_stmt_done(s);
    if (rc != SQL_ROW)
        return err_set(e, ERR_MANIFEST_BLOB_UNKNOWN, "manifest references unknown %s %s",
                       ref->is_manifest ? "manifest" : "blob", ref->digest.str);
    /* image-spec descriptor: size is the exact length of the content it names. */
    if (size != ref->size)
        return err_set(e, ERR_MANIFEST_INVALID,
                       "descriptor of %s declares size %" PRId64 ", the %s is %" PRId64 " bytes",
                       ref->digest.str, ref->size, ref->is_manifest ? "manifest" : "blob", size);
    return 0;
}

static int sq_manifest_put(struct metastore *ms, const char *repo, const struct meta_manifest *m,
                           const struct meta_ref *refs, size_t n_refs,
                           const struct digest *subject, const char *tag, struct err *e)
{
    AN(repo);
    AN(m);
    AN(m->media_type);
    ASSERT(m->body != NULL || m->body_len == 0);
    ASSERT(refs != NULL || n_refs == 0);
    struct sq_conn *c = sq_conn_of(ms, e);
    if (c == NULL)
        return -1;
    const char *subject_str = subject != NULL ? subject->str : NULL;
    int64_t repo_id;
    struct sql_stmt *s;

    if (sq_tx_begin(c, true, e) != 0)
        goto out;
    /* Rolled back with everything else if a reference turns out to be missing. */
    if (repo_ensure(c, repo, &repo_id, e) != 0)
        goto fail;
    /* distribution-spec: Pushing Manifests -- every referenced blob and child manifest
     * must be known, checked in the same transaction that makes the manifest visible. */
    for (size_t i = 0; i < n_refs; i++) {
        if (check_ref(c, repo_id, &refs[i], e) != 0)
            goto fail;
    }
    /* A local write is newer than anything this region has seen, so its clock puts it
     * after any tombstone of the same manifest (the tombstone stays: it still orders
     * older puts arriving from peers). */
    int64_t put_hlc = hlc_next(c->store);
    if (sq_exec(c, SQ_MANIFEST_INSERT, e, "itttttibi", repo_id, m->digest.str, m->media_type,
                m->artifact_type, m->annotations_json, subject_str, (int64_t)m->body_len,
                (const void *)m->body, m->body_len, util_now_ms()) != 0)
        goto fail;
    /* The same digest is the same bytes: a repeated put only (re)points the tag. The
     * event is stored without its payload: the manifest row and its references are the
     * payload, rebuilt when the event is read (event_payload_derive). */
    if (sql_changes(c->db) > 0) {
        int64_t blob_bytes = 0;
        for (size_t i = 0; i < n_refs; i++) {
            /* Sizes of what the manifest needs (blobs and child manifests, checked
             * above): the replication status counts bytes copied against their sum. */
            int64_t size = refs[i].size;
            blob_bytes += size;
            if (sq_exec(c, SQ_REF_INSERT_SIZED, e, "ittii", repo_id, m->digest.str,
                        refs[i].digest.str, (int64_t)refs[i].is_manifest, size) != 0)
                goto fail;
        }
        if (sq_exec(c, SQ_MANIFEST_SET_CLOCK, e, "itit", repo_id, m->digest.str, put_hlc,
                    c->store->region) != 0)
            goto fail;
        if (event_append_clock(c, "manifest_put", repo, NULL, m->digest.str, NULL, put_hlc,
                               e) != 0)
            goto fail;
        struct meta_status done = {.region = c->store->region, .state = "Completed",
                                   .bytes_done = blob_bytes, .bytes_total = blob_bytes,
                                   .updated_ms = util_now_ms(), .details = ""};
        if (status_write(c, repo, m->digest.str, &done, true, e) != 0)
            goto fail;
        if (tags_rematerialize(c, repo_id, repo, m->digest.str, e) != 0)
            goto fail;
    }
    /* A copy replicated from a peer and still waiting for content is complete now:
     * every reference was checked above. */
    if (sq_exec(c, SQ_MANIFEST_SET_VISIBLE, e, "it", repo_id, m->digest.str) != 0)
        goto fail;
    if (tag != NULL) {
        int rc = sq_query(c, SQ_TREG_GET, &s, e, "tt", repo, tag);
        if (rc < 0)
            goto fail;
        const unsigned char *cur = rc == SQL_ROW ? sql_col_text(s, 0) : NULL;
        bool is_same = cur != NULL && strcmp((const char *)cur, m->digest.str) == 0;
        sq_stmt_done(s);
        if (!is_same) {
            int64_t tag_hlc = hlc_next(c->store);
            bool applied;
            if (tag_merge(c, repo_id, repo, tag, m->digest.str, tag_hlc, c->store->region,
                          &applied, e) != 0)
                goto fail;
            if (event_append_clock(c, "tag_set", repo, tag, m->digest.str, NULL, tag_hlc, e) !=
                0)
                goto fail;
        }
    }
    if (sq_tx_commit(c, e) != 0)
        goto out;
    return 0;

fail:
    sq_tx_rollback(c);
out:
    return -1;
}

/* Fills out from a MANIFEST_BY_* row (digest, media_type, artifact_type, annotations,
 * body). */
static void manifest_from_row(struct sql_stmt *s, struct meta_manifest *out)
{
    col_digest(s, 0, &out->digest);
    out->media_type = sq_col_strdup(s, 1);
    if (out->media_type == NULL)
        out->media_type = xstrdup("");
    out->artifact_type = sq_col_strdup(s, 2);
    out->annotations_json = sq_col_strdup(s, 3);
    const void *body = sql_col_blob(s, 4);
    size_t len = sql_col_bytes(s, 4);
    /* NUL-terminated for the convenience of JSON parsers; body_len is authoritative. */
    out->body = xmalloc(len + 1);
    if (len > 0)
        memcpy(out->body, body, len);
    out->body[len] = '\0';
    out->body_len = len;
}

static int sq_manifest_get(struct metastore *ms, const char *repo, const char *reference,
                           struct meta_manifest *out, struct err *e)
{
    AN(reference);
    memset(out, 0, sizeof(*out));
    struct sq_conn *c = sq_conn_of(ms, e);
    if (c == NULL)
        return -1;
    int64_t repo_id;
    struct sql_stmt *s;

    /* The hot path of every pull: one statement (its own implicit read transaction)
     * resolves repository, tag and manifest at once. A tag never contains ':', a digest
     * always does (distribution-spec: Pulling manifests, the <reference> grammar). */
    bool is_digest = strchr(reference, ':') != NULL;
    int rc = sq_query(c, is_digest ? SQ_MANIFEST_BY_REPO_DIGEST : SQ_MANIFEST_BY_REPO_TAG, &s, e,
                      "tt", repo, reference);
    if (rc < 0)
        return -1;
    if (rc == SQL_ROW)
        manifest_from_row(s, out);
    sq_stmt_done(s);
    if (rc == SQL_ROW)
        return 0;
    /* Not found: say whether the repository is unknown or only the manifest. */
    rc = repo_find(c, repo, &repo_id, e);
    if (rc < 0)
        return -1;
    return err_set(e, rc > 0 ? ERR_NAME_UNKNOWN : ERR_MANIFEST_UNKNOWN, NULL);
}

static int sq_manifest_delete(struct metastore *ms, const char *repo, const struct digest *d,
                              struct err *e)
{
    struct sq_conn *c = sq_conn_of(ms, e);
    if (c == NULL)
        return -1;
    struct buf payload;
    buf_init(&payload, SQ_PAYLOAD_MAX_BYTES);
    int64_t repo_id;
    struct sql_stmt *s;

    if (sq_tx_begin(c, true, e) != 0)
        goto out;
    int rc = repo_find(c, repo, &repo_id, e);
    if (rc != 0) {
        if (rc > 0)
            err_set(e, ERR_MANIFEST_UNKNOWN, NULL);
        goto fail;
    }
    /* A copy still waiting for its content (replicated, not visible yet) can be deleted
     * too: the delete is a tombstone every region applies. */
    rc = sq_query(c, SQ_MANIFEST_CLOCK, &s, e, "it", repo_id, d->str);
    if (rc < 0)
        goto fail;
    sq_stmt_done(s);
    if (rc != SQL_ROW) {
        err_set(e, ERR_MANIFEST_UNKNOWN, NULL);
        goto fail;
    }
    /* An index that needs this manifest keeps it (visible means pullable). */
    if (referenced_by(c, repo_id, d->str, e) != 0)
        goto fail;
    /* The event names the tags that went with the manifest. */
    buf_appends(&payload, "{\"tags\":[");
    rc = sq_query(c, SQ_TAGS_OF_MANIFEST, &s, e, "it", repo_id, d->str);
    if (rc < 0)
        goto fail;
    int row = rc == SQL_ROW ? 1 : 0;
    for (int i = 0; row == 1; i++) {
        if (i > 0)
            buf_appends(&payload, ",");
        buf_append_json_string(&payload, sql_col_text(s, 0));
        row = sq_next_row(c, s, e);
    }
    sq_stmt_done(s);
    if (row < 0)
        goto fail;
    buf_appends(&payload, "]}");
    if (payload_check(&payload, e) != 0)
        goto fail;

    /* distribution-spec: deleting a manifest deletes its tags. They are written as tag
     * deletes of their own, which every region merges like any tag write. */
    if (delete_tags_of(c, repo_id, repo, d->str, e) != 0)
        goto fail;
    int64_t del_hlc = hlc_next(c->store);
    if (tomb_merge(c, repo_id, repo, d->str, del_hlc, c->store->region, e) != 0)
        goto fail;
    if (event_append_clock(c, "manifest_delete", repo, NULL, d->str, payload.data, del_hlc,
                           e) != 0)
        goto fail;
    if (sq_tx_commit(c, e) != 0)
        goto out;
    buf_fini(&payload);
    return 0;

fail:
    sq_tx_rollback(c);
out:
    buf_fini(&payload);
    return -1;
}

/* Tags -------------------------------------------------------------------- */

static int sq_tag_delete(struct metastore *ms, const char *repo, const char *tag,
                         struct err *e)
{
    struct sq_conn *c = sq_conn_of(ms, e);
    if (c == NULL)
        return -1;
    int64_t repo_id;
    struct sql_stmt *s;
    struct digest old;

    if (sq_tx_begin(c, true, e) != 0)
        return -1;
    int rc = repo_find(c, repo, &repo_id, e);
    if (rc != 0) {
        if (rc > 0)
            err_set(e, ERR_MANIFEST_UNKNOWN, NULL);
        goto fail;
    }
    rc = sq_query(c, SQ_TAG_GET, &s, e, "it", repo_id, tag);
    if (rc < 0)
        goto fail;
    if (rc == SQL_ROW)
        col_digest(s, 0, &old);
    sq_stmt_done(s);
    if (rc != SQL_ROW) {
        err_set(e, ERR_MANIFEST_UNKNOWN, NULL);
        goto fail;
    }
    int64_t del_hlc = hlc_next(c->store);
    bool applied;
    if (tag_merge(c, repo_id, repo, tag, NULL, del_hlc, c->store->region, &applied, e) != 0)
        goto fail;
    if (event_append_clock(c, "tag_delete", repo, tag, old.str, NULL, del_hlc, e) != 0)
        goto fail;
    return sq_tx_commit(c, e);

fail:
    sq_tx_rollback(c);
    return -1;
}

static int sq_tag_list(struct metastore *ms, const char *repo, const char *last, long n,
                       struct meta_name_list *out, struct err *e)
{
    memset(out, 0, sizeof(*out));
    struct sq_conn *c = sq_conn_of(ms, e);
    if (c == NULL)
        return -1;
    int64_t repo_id;
    struct sql_stmt *s;

    if (sq_tx_begin(c, false, e) != 0)
        return -1;
    int rc = repo_find(c, repo, &repo_id, e);
    if (rc != 0) {
        if (rc > 0)
            err_set(e, ERR_NAME_UNKNOWN, NULL);
        goto fail;
    }
    /* distribution-spec: Listing Tags -- n=0 is an empty list with no Link. */
    if (n != 0) {
        rc = sq_query(c, SQ_TAG_LIST, &s, e, "iti", repo_id, last != NULL ? last : "",
                      page_limit(n));
        if (rc < 0)
            goto fail;
        if (sq_collect_names(c, s, rc, n, out, e) != 0)
            goto fail;
    }
    if (sq_tx_commit(c, e) != 0) {
        meta_name_list_fini(out);
        return -1;
    }
    return 0;

fail:
    sq_tx_rollback(c);
    return -1;
}

static int sq_repo_list(struct metastore *ms, const char *last, long n,
                        struct meta_name_list *out, struct err *e)
{
    memset(out, 0, sizeof(*out));
    struct sq_conn *c = sq_conn_of(ms, e);
    if (c == NULL)
        return -1;
    if (n == 0)
        return 0;
    struct sql_stmt *s;
    int rc = sq_query(c, SQ_REPO_LIST, &s, e, "ti", last != NULL ? last : "", page_limit(n));
    if (rc < 0)
        return -1;
    return sq_collect_names(c, s, rc, n, out, e);
}

static int sq_referrers(struct metastore *ms, const char *repo, const struct digest *d,
                        const char *artifact_type, struct meta_referrer_list *out,
                        struct err *e)
{
    memset(out, 0, sizeof(*out));
    struct sq_conn *c = sq_conn_of(ms, e);
    if (c == NULL)
        return -1;
    int64_t repo_id;
    struct sql_stmt *s;
    size_t cap = 0;

    if (sq_tx_begin(c, false, e) != 0)
        return -1;
    int rc = repo_find(c, repo, &repo_id, e);
    if (rc < 0)
        goto fail;
    /* distribution-spec: Listing Referrers -- never 404; an unknown repository simply
     * has no referrers. */
    if (rc > 0)
        return sq_tx_commit(c, e);
    rc = sq_query(c, SQ_REFERRERS, &s, e, "itt", repo_id, d->str, artifact_type);
    if (rc < 0)
        goto fail;
    int row = rc == SQL_ROW ? 1 : 0;
    while (row == 1) {
        if (out->n == cap) {
            cap = cap ? cap * 2 : 8;
            out->items = xrealloc(out->items, cap * sizeof(*out->items));
        }
        struct meta_referrer *r = &out->items[out->n++];
        memset(r, 0, sizeof(*r));
        col_digest(s, 0, &r->digest);
        r->media_type = sq_col_strdup(s, 1);
        r->artifact_type = sq_col_strdup(s, 2);
        r->annotations_json = sq_col_strdup(s, 3);
        r->size = sql_col_int64(s, 4);
        row = sq_next_row(c, s, e);
    }
    sq_stmt_done(s);
    if (row < 0)
        goto fail;
    if (sq_tx_commit(c, e) != 0) {
        meta_referrer_list_fini(out);
        return -1;
    }
    return 0;

fail:
    meta_referrer_list_fini(out);
    sq_tx_rollback(c);
    return -1;
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

static int sq_events_since(struct metastore *ms, int64_t after_seq, size_t max,
                           struct buf *out_json, int64_t *last_seq, struct err *e)
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
            derived = event_payload_derive(c, &kind, sql_col_text(s, 1),
                                           sql_col_text(s, 4),
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
        /* Payloads are JSON objects this file wrote itself. */
        const char *payload = derived != NULL ? derived : sql_col_text(s, 7);
        char *clear = seal_payload(c->store, sql_col_text(s, 3), payload,
                                   false);
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

/* Opening and closing ----------------------------------------------------- */

static void sq_close(struct metastore *ms)
{
    if (ms == NULL)
        return;
    struct sq_store *st = store_of(ms);
    /* After this no thread-exit destructor runs for this store; the connections of
     * threads still alive are closed below. */
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
    AZ(pthread_mutex_destroy(&st->mu));
    pthread_mutex_destroy(&st->dmu);
    pthread_mutex_destroy(&st->wmu);
    pthread_cond_destroy(&st->dcv);
    st->magic = 0;
    FREE_AND_NULL(st->path);
    FREE_AND_NULL(st->region);
    free(st);
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
        log_error("metastore", "failed to open database: schema version %" PRId64
                  " is newer than this build's %d", version, SQ_SCHEMA_VERSION);
        err_set(e, ERR_IO, NULL);
        goto fail;
    }
    /* Step i brings the schema from version i to i + 1; each runs once, in order. The
     * steps are the files of src/store/schema/sqlite/, in version order. */
    static const char *const steps[] = {sq_schema_v1, sq_schema_v2, sq_schema_v3_audit,
                                        sq_schema_v4_uploads};
    _Static_assert(sizeof(steps) / sizeof(steps[0]) == SQ_SCHEMA_VERSION,
                   "one migration step per schema version");
    for (int64_t v = version; v < SQ_SCHEMA_VERSION; v++) {
        char set_version[64];
        snprintf(set_version, sizeof(set_version), "PRAGMA user_version = %" PRId64, v + 1);
        char what[64];
        snprintf(what, sizeof(what), "upgrade schema to version %" PRId64, v + 1);
        if (sq_script(c, steps[v], what, e) != 0 || sq_script(c, set_version, what, e) != 0)
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
    AZ(pthread_mutex_lock(&c->store->wmu));
    rc = sq_script(c, "ANALYZE", "gather planner statistics", e);
    AZ(pthread_mutex_unlock(&c->store->wmu));
    return rc;
}

static int hlc_seed(struct sq_conn *c, struct err *e)
{
    struct sql_stmt *s;
    int rc = sq_query(c, SQ_HLC_MAX, &s, e, "");
    if (rc < 0)
        return -1;
    /* The clock never goes below what the log already holds, across restarts too. */
    c->store->hlc_last = rc == SQL_ROW ? sql_col_int64(s, 0) : 0;
    sq_stmt_done(s);
    return 0;
}

/* Replication: defined in its own section at the end of this file. Uploads, webhook
 * deliveries and access control: in their own files (metastore_sqlite_int.h). */
static ms_events_read_f sq_events_read;
static ms_vv_get_f sq_vv_get;
static ms_event_apply_f sq_event_apply;
static ms_pending_list_f sq_pending_list;
static ms_pending_complete_f sq_pending_complete;
static ms_status_set_f sq_status_set;
static ms_status_list_f sq_status_list;
static ms_cursor_get_f sq_cursor_get;
static ms_cursor_set_f sq_cursor_set;
static ms_log_head_f sq_log_head;
static ms_summary_f sq_summary;
static ms_repo_state_f sq_repo_state;
static ms_state_merge_f sq_state_merge;
static ms_manifest_lookup_f sq_manifest_lookup;
static ms_manifest_tags_f sq_manifest_tags;
static ms_blob_list_all_f sq_blob_list_all;
static ms_blob_lost_f sq_blob_lost;
static ms_object_put_f sq_object_put;
static ms_object_delete_f sq_object_delete;
static ms_object_get_f sq_object_get;
static ms_object_list_f sq_object_list;

static const struct metastore_ops sq_ops = {
    .name = "sqlite",
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
    .upload_get = sq_upload_get,
    .upload_delete = sq_upload_delete,
    .upload_list_expired = sq_upload_list_expired,
    .upload_set_acked = sq_upload_set_acked,
    .upload_count_from = sq_upload_count_from,
    .upload_list_single = sq_upload_list_single,
    .close = sq_close,
    .events_since = sq_events_since,
    .events_read = sq_events_read,
    .vv_get = sq_vv_get,
    .event_apply = sq_event_apply,
    .pending_list = sq_pending_list,
    .pending_complete = sq_pending_complete,
    .status_set = sq_status_set,
    .status_list = sq_status_list,
    .cursor_get = sq_cursor_get,
    .cursor_set = sq_cursor_set,
    .log_head = sq_log_head,
    .summary = sq_summary,
    .repo_state = sq_repo_state,
    .state_merge = sq_state_merge,
    .manifest_lookup = sq_manifest_lookup,
    .manifest_tags = sq_manifest_tags,
    .blob_list_all = sq_blob_list_all,
    .blob_lost = sq_blob_lost,
    .object_put = sq_object_put,
    .object_delete = sq_object_delete,
    .object_get = sq_object_get,
    .object_list = sq_object_list,
    .delivery_add = sq_delivery_add,
    .delivery_due = sq_delivery_due,
    .delivery_update = sq_delivery_update,
    .delivery_list = sq_delivery_list,
    .delivery_prune = sq_delivery_prune,
    .identity_put = sq_identity_put,
    .identity_delete = sq_identity_delete,
    .role_set = sq_role_set,
    .auth_load = sq_auth_load,
    .auth_generation = sq_auth_generation,
    .audit_append = sq_audit_append,
    .audit_list = sq_audit_list,
    .audit_set_count = sq_audit_set_count,
    .upload_set_owner = sq_upload_set_owner,
    .upload_count_owned = sq_upload_count_owned,
};

struct metastore *metastore_sqlite_open(const char *path, const char *region, struct err *e)
{
    AN(path);
    AN(region);
    struct sq_store *st = xcalloc(1, sizeof(*st));
    st->base.ops = &sq_ops;
    st->drv = &sql_sqlite_driver;
    st->magic = SQ_STORE_MAGIC;
    st->path = xstrdup(path);
    st->region = xstrdup(region);
    AZ(pthread_mutex_init(&st->mu, NULL));
    AZ(pthread_mutex_init(&st->dmu, NULL));
    AZ(pthread_mutex_init(&st->wmu, NULL));
    AZ(pthread_cond_init(&st->dcv, NULL));
    AZ(pthread_key_create(&st->key, on_thread_exit));

    struct sq_conn *c = conn_get(st, e);
    if (c == NULL)
        goto fail;
    if (enable_wal(c, e) != 0 || migrate(c, e) != 0 || hlc_seed(c, e) != 0 ||
        sq_script(c, sq_schema_deliveries, "create webhook_deliveries", e) != 0 ||
        sq_script(c, sq_schema_access, "create access-control tables", e) != 0 ||
        stats_seed(c, e) != 0)
        goto fail;
    return &st->base;

fail:
    sq_close(&st->base);
    return NULL;
}

/* Result helpers (meta_*_fini): in metastore.c, shared by every backend. */

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

static int sq_events_read(struct metastore *ms, int64_t after_seq, const struct meta_vv *vv,
                          size_t max, struct meta_event **out, size_t *n_out, int64_t *last_seq,
                          struct err *e)
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
                ev->payload = event_payload_derive(c, &kind, ev->origin, ev->repo, ev->digest,
                                                   &failed, e);
                if (failed) {
                    row = -1;
                    break;
                }
                if (kind != ev->kind) {
                    free(ev->kind);
                    ev->kind = xstrdup(kind);
                }
            }
            char *clear = seal_payload(c->store, ev->kind, ev->payload, false);
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
     * it (group commit). */
    if (n > 0 && sq_durable_wait(c->store, e) != 0) {
        for (size_t k = 0; k < n; k++)
            meta_event_fini(&list[k]);
        free(list);
        return -1;
    }
    *out = list;
    *n_out = n;
    return 0;
fail:
    sq_tx_rollback(c);
    return -1;
}

static int sq_vv_get(struct metastore *ms, struct meta_vv *out, struct err *e)
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
    /* What the version vector says is here must survive a crash (tx_commit_unsynced): a
     * sync requested after the read covers every commit the read saw (checking a flag
     * before the read would miss an event applied between that check and the read). */
    if (sq_durable_wait(c->store, e) != 0) {
        meta_vv_fini(out);
        return -1;
    }
    return 0;
}

/* manifest_put payload: verifies the body against the digest, then records the
 * manifest, not visible until its content is here. */
static int merge_manifest_put(struct sq_conn *c, const struct meta_event *ev, struct err *e)
{
    json_error_t je;
    json_t *p = ev->payload ? json_loads(ev->payload, 0, &je) : NULL;
    const char *body64 = json_string_value(json_object_get(p, "body"));
    const char *media_type = json_string_value(json_object_get(p, "mediaType"));
    struct digest d;
    size_t body_len = 0;
    char *body = NULL;
    int result = -1;
    if (ev->repo == NULL || ev->digest == NULL || body64 == NULL || media_type == NULL ||
        digest_parse(ev->digest, strlen(ev->digest), &d, e) != 0) {
        err_set(e, ERR_BAD_REQUEST, "manifest_put event without repo, digest or body");
        goto out;
    }
    body = base64_decode(body64, strlen(body64), &body_len);
    struct digest got;
    if (body == NULL)
        goto bad;
    digest_of_buffer(d.alg, body, body_len, &got);
    if (!digest_equal(&got, &d)) {
        log_warn("metastore", "manifest %s from %s does not match its digest", d.str,
                 ev->origin);
        goto bad;
    }
    bool covered;
    if (tomb_covers(c, ev->repo, d.str, (int64_t)ev->hlc, ev->origin, &covered, e) != 0)
        goto out;
    if (covered) {
        result = 0; /* deleted later than it was put */
        goto out;
    }
    int64_t repo_id;
    if (repo_ensure(c, ev->repo, &repo_id, e) != 0)
        goto out;
    json_t *annotations = json_object_get(p, "annotations");
    if (sq_exec(c, SQ_MANIFEST_INSERT_REMOTE, e, "itttttibiit", repo_id, d.str, media_type,
                json_string_value(json_object_get(p, "artifactType")),
                json_is_string(annotations) ? json_string_value(annotations) : NULL,
                json_string_value(json_object_get(p, "subject")), (int64_t)body_len,
                (const void *)body, body_len, util_now_ms(), (int64_t)ev->hlc, ev->origin) != 0)
        goto out;
    if (sql_changes(c->db) > 0) {
        json_t *refs = json_object_get(p, "refs");
        for (size_t i = 0; i < json_array_size(refs); i++) {
            json_t *r = json_array_get(refs, i);
            const char *rd = json_string_value(json_object_get(r, "digest"));
            struct digest rdig;
            struct err ignore = {0};
            if (rd == NULL || digest_parse(rd, strlen(rd), &rdig, &ignore) != 0)
                goto bad;
            if (sq_exec(c, SQ_REF_INSERT_SIZED, e, "ittii", repo_id, d.str, rdig.str,
                        (int64_t)json_is_true(json_object_get(r, "isManifest")),
                        (int64_t)json_integer_value(json_object_get(r, "size"))) != 0)
                goto out;
        }
        if (tags_rematerialize(c, repo_id, ev->repo, d.str, e) != 0)
            goto out;
    } else {
        /* Already here: the put clock is a last-writer-wins register too, so that a
         * tombstone orders against the latest put whatever the arrival order. */
        struct sql_stmt *s;
        int rc = sq_query(c, SQ_MANIFEST_CLOCK, &s, e, "it", repo_id, d.str);
        if (rc < 0)
            goto out;
        bool is_later = rc == SQL_ROW &&
                        hlc_lww_wins(ev->hlc, ev->origin, (uint64_t)sql_col_int64(s, 0),
                                     sql_col_text(s, 1));
        sq_stmt_done(s);
        if (is_later && sq_exec(c, SQ_MANIFEST_SET_CLOCK, e, "itit", repo_id, d.str,
                                (int64_t)ev->hlc, ev->origin) != 0)
            goto out;
    }
    result = 0;
    goto out;
bad:
    err_set(e, ERR_BAD_REQUEST, "malformed manifest_put event");
out:
    free(body);
    json_decref(p);
    return result;
}

static int merge_object(struct sq_conn *c, const struct meta_event *ev, bool is_delete,
                        struct err *e)
{
    json_error_t je;
    json_t *p = ev->payload ? json_loads(ev->payload, 0, &je) : NULL;
    const char *kind = json_string_value(json_object_get(p, "kind"));
    if (kind == NULL || ev->name == NULL) {
        json_decref(p);
        return err_set(e, ERR_BAD_REQUEST, "object event without kind or key");
    }
    struct sql_stmt *s;
    int rc = sq_query(c, SQ_OBJ_GET, &s, e, "tt", kind, ev->name);
    if (rc < 0) {
        json_decref(p);
        return -1;
    }
    bool wins = rc != SQL_ROW ||
                hlc_lww_wins(ev->hlc, ev->origin, (uint64_t)sql_col_int64(s, 1),
                             sql_col_text(s, 2));
    sq_stmt_done(s);
    rc = 0;
    if (wins) {
        char *value = is_delete ? NULL
                                : json_dumps(json_object_get(p, "value"), JSON_COMPACT);
        char *sealed = value ? seal_value(c->store, kind, value, true) : NULL;
        rc = sq_exec(c, SQ_OBJ_SET, e, "tttiti", kind, ev->name, sealed ? sealed : value,
                     (int64_t)ev->hlc, ev->origin, (int64_t)is_delete);
        free(sealed);
        free(value);
    }
    json_decref(p);
    return rc;
}

static int merge_status(struct sq_conn *c, const struct meta_event *ev, struct err *e)
{
    json_error_t je;
    json_t *p = ev->payload ? json_loads(ev->payload, 0, &je) : NULL;
    struct meta_status st = {
        .region = (char *)json_string_value(json_object_get(p, "region")),
        .state = (char *)json_string_value(json_object_get(p, "state")),
        .bytes_done = json_integer_value(json_object_get(p, "bytesDone")),
        .bytes_total = json_integer_value(json_object_get(p, "bytesTotal")),
        .updated_ms = json_integer_value(json_object_get(p, "updatedMs")),
        .details = (char *)json_string_value(json_object_get(p, "details")),
    };
    int rc = 0;
    /* A region is the authority on its own status: others' reports of it are ignored. */
    if (st.region && st.state && ev->repo && ev->digest &&
        strcmp(st.region, c->store->region) != 0) {
        struct sql_stmt *s;
        rc = sq_query(c, SQ_STATUS_GET, &s, e, "ttt", ev->repo, ev->digest, st.region);
        if (rc >= 0) {
            bool is_newer = rc != SQL_ROW || sql_col_int64(s, 0) <= st.updated_ms;
            sq_stmt_done(s);
            rc = is_newer ? status_write(c, ev->repo, ev->digest, &st, false, e) : 0;
        }
    }
    json_decref(p);
    return rc < 0 ? -1 : 0;
}

/* Merges one event into state (no log, no version vector). */
static int merge_event(struct sq_conn *c, const struct meta_event *ev, struct err *e)
{
    hlc_seen(c->store, ev->hlc);
    const char *k = ev->kind;
    int64_t repo_id;
    bool applied;
    if (strcmp(k, "manifest_put") == 0)
        return merge_manifest_put(c, ev, e);
    if (strcmp(k, "object_put") == 0 || strcmp(k, "object_delete") == 0)
        return merge_object(c, ev, k[7] == 'd', e);
    if (strcmp(k, "status") == 0)
        return merge_status(c, ev, e);
    bool is_tag = strcmp(k, "tag_set") == 0 || strcmp(k, "tag_delete") == 0;
    bool is_tomb = strcmp(k, "manifest_delete") == 0;
    if (!is_tag && !is_tomb)
        return 0; /* region-local bookkeeping (blob links): nothing to merge */
    if (ev->repo == NULL || (is_tag && ev->name == NULL) || (is_tomb && ev->digest == NULL))
        return err_set(e, ERR_BAD_REQUEST, "%s event without its fields", k);
    if (repo_ensure(c, ev->repo, &repo_id, e) != 0)
        return -1;
    if (is_tomb)
        return tomb_merge(c, repo_id, ev->repo, ev->digest, (int64_t)ev->hlc, ev->origin, e);
    const char *digest = strcmp(k, "tag_set") == 0 ? ev->digest : NULL;
    if (digest == NULL && strcmp(k, "tag_set") == 0)
        return err_set(e, ERR_BAD_REQUEST, "tag_set event without digest");
    return tag_merge(c, repo_id, ev->repo, ev->name, digest, (int64_t)ev->hlc, ev->origin,
                     &applied, e);
}

static int sq_event_apply(struct metastore *ms, const struct meta_event *ev, bool *is_new,
                          bool *is_gap, struct err *e)
{
    *is_new = false;
    *is_gap = false;
    struct sq_conn *c = sq_conn_of(ms, e);
    if (c == NULL)
        return -1;
    if (sq_tx_begin(c, true, e) != 0)
        return -1;
    int64_t have;
    if (vv_read(c, ev->origin, &have, e) != 0)
        goto fail;
    if (ev->origin_seq <= have || strcmp(ev->origin, c->store->region) == 0) {
        sq_tx_rollback(c);
        return 0; /* seen already (our own events come back through relays too) */
    }
    if (ev->origin_seq > have + 1) {
        *is_gap = true;
        sq_tx_rollback(c);
        return 0;
    }
    if (merge_event(c, ev, e) != 0)
        goto fail;
    /* Relayed as written locally: without the payload the tables already hold, and with
     * secrets sealed under this region's key. */
    const char *stored = is_payload_derivable(ev->kind, ev->origin, ev->payload) ? NULL
                                                                                 : ev->payload;
    char *sealed = seal_payload(c->store, ev->kind, stored, true);
    int irc = event_insert(c, ev->origin, ev->origin_seq, (int64_t)ev->hlc, ev->kind, ev->repo,
                           ev->name, ev->digest, sealed ? sealed : stored, e);
    free(sealed);
    if (irc != 0)
        goto fail;
    if (tx_commit_unsynced(c, e) != 0)
        return -1;
    *is_new = true;
    return 0;
fail:
    sq_tx_rollback(c);
    return -1;
}

static int sq_state_merge(struct metastore *ms, const struct meta_event *ev, struct err *e)
{
    struct sq_conn *c = sq_conn_of(ms, e);
    if (c == NULL)
        return -1;
    if (sq_tx_begin(c, true, e) != 0)
        return -1;
    if (merge_event(c, ev, e) != 0) {
        sq_tx_rollback(c);
        return -1;
    }
    return sq_tx_commit(c, e);
}

static int sq_pending_list(struct metastore *ms, size_t max, struct meta_pending **out,
                           size_t *n_out, struct err *e)
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
        col_digest(s, 1, &list[n].digest);
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
            col_digest(s, 0, &list[i].refs[k].digest);
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

static int sq_pending_complete(struct metastore *ms, const struct meta_pending *p,
                               struct err *e)
{
    struct sq_conn *c = sq_conn_of(ms, e);
    if (c == NULL)
        return -1;
    if (sq_tx_begin(c, true, e) != 0)
        return -1;
    int64_t repo_id;
    struct sql_stmt *s;
    if (repo_ensure(c, p->repo, &repo_id, e) != 0)
        goto fail;
    for (size_t i = 0; i < p->n_refs; i++) {
        const char *d = p->refs[i].digest.str;
        if (p->refs[i].is_manifest) {
            int rc = sq_query(c, SQ_VISIBLE_CHILD, &s, e, "it", repo_id, d);
            if (rc < 0)
                goto fail;
            sq_stmt_done(s);
            if (rc != SQL_ROW) {
                err_set(e, ERR_MANIFEST_BLOB_UNKNOWN, "child manifest %s not here yet", d);
                goto fail;
            }
            continue;
        }
        if (sq_exec(c, SQ_BLOB_INSERT, e, "ti", d, p->ref_sizes[i] > 0 ? p->ref_sizes[i] : 0) != 0 ||
            sq_exec(c, SQ_LINK_INSERT, e, "it", repo_id, d) != 0)
            goto fail;
    }
    if (sq_exec(c, SQ_MANIFEST_SET_VISIBLE, e, "it", repo_id, p->digest.str) != 0)
        goto fail;
    return tx_commit_unsynced(c, e);
fail:
    sq_tx_rollback(c);
    return -1;
}

static int sq_status_set(struct metastore *ms, const char *repo, const struct digest *d,
                         const struct meta_status *st, bool is_event, struct err *e)
{
    struct sq_conn *c = sq_conn_of(ms, e);
    if (c == NULL)
        return -1;
    if (sq_tx_begin(c, true, e) != 0)
        return -1;
    if (status_write(c, repo, d->str, st, is_event, e) != 0) {
        sq_tx_rollback(c);
        return -1;
    }
    return sq_tx_commit(c, e);
}

static int sq_status_list(struct metastore *ms, const char *repo, const struct digest *d,
                          struct meta_status **out, size_t *n_out, struct err *e)
{
    *out = NULL;
    *n_out = 0;
    struct sq_conn *c = sq_conn_of(ms, e);
    if (c == NULL)
        return -1;
    struct sql_stmt *s;
    int rc = sq_query(c, SQ_STATUS_LIST, &s, e, "tt", repo, d->str);
    if (rc < 0)
        return -1;
    struct meta_status *list = NULL;
    size_t n = 0;
    for (int row = rc == SQL_ROW; row == 1; row = sq_next_row(c, s, e)) {
        list = xrealloc(list, (n + 1) * sizeof(*list));
        list[n].region = sq_col_strdup(s, 0);
        list[n].state = sq_col_strdup(s, 1);
        list[n].bytes_done = sql_col_int64(s, 2);
        list[n].bytes_total = sql_col_int64(s, 3);
        list[n].updated_ms = sql_col_int64(s, 4);
        list[n].details = sq_col_strdup(s, 5);
        n++;
    }
    sq_stmt_done(s);
    *out = list;
    *n_out = n;
    return 0;
}

static int sq_cursor_get(struct metastore *ms, const char *peer, int64_t *seq, struct err *e)
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

static int sq_cursor_set(struct metastore *ms, const char *peer, int64_t seq, struct err *e)
{
    struct sq_conn *c = sq_conn_of(ms, e);
    if (c == NULL)
        return -1;
    return sq_exec(c, SQ_CURSOR_SET, e, "ti", peer, seq);
}

static int sq_log_head(struct metastore *ms, int64_t *seq, struct err *e)
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

/* Hashes the replicated state of one repository: tag registers, manifests, tombstones. */
static int repo_digest(struct sq_conn *c, int64_t repo_id, const char *repo,
                       struct digest *out, struct err *e)
{
    struct hasher *h = digest_hasher_new(DIGEST_SHA256);
    struct sql_stmt *s;
    char line[1024];
    int rc = sq_query(c, SQ_TREG_OF_REPO, &s, e, "t", repo);
    for (int row = rc == SQL_ROW; rc >= 0 && row == 1; row = sq_next_row(c, s, e)) {
        const unsigned char *dg = sql_col_text(s, 1);
        int n = snprintf(line, sizeof(line), "t %s %s %" PRId64 " %s\n",
                         sql_col_text(s, 0), dg ? (const char *)dg : "-",
                         (int64_t)sql_col_int64(s, 2), sql_col_text(s, 3));
        digest_hasher_update(h, line, (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1);
    }
    if (rc >= 0)
        sq_stmt_done(s);
    if (rc >= 0)
        rc = sq_query(c, SQ_MANIFEST_DIGESTS_OF_REPO, &s, e, "i", repo_id);
    for (int row = rc == SQL_ROW; rc >= 0 && row == 1; row = sq_next_row(c, s, e)) {
        int n = snprintf(line, sizeof(line), "m %s\n", sql_col_text(s, 0));
        digest_hasher_update(h, line, (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1);
    }
    if (rc >= 0)
        sq_stmt_done(s);
    if (rc >= 0)
        rc = sq_query(c, SQ_TOMB_OF_REPO, &s, e, "t", repo);
    for (int row = rc == SQL_ROW; rc >= 0 && row == 1; row = sq_next_row(c, s, e)) {
        int n = snprintf(line, sizeof(line), "x %s %" PRId64 " %s\n", sql_col_text(s, 0),
                         (int64_t)sql_col_int64(s, 1), sql_col_text(s, 2));
        digest_hasher_update(h, line, (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1);
    }
    if (rc >= 0)
        sq_stmt_done(s);
    digest_hasher_final(h, out);
    digest_hasher_free(h);
    return rc < 0 ? -1 : 0;
}

static int sq_summary(struct metastore *ms, struct buf *out, struct err *e)
{
    struct sq_conn *c = sq_conn_of(ms, e);
    if (c == NULL)
        return -1;
    if (sq_tx_begin(c, false, e) != 0)
        return -1;
    struct sql_stmt *s;
    int rc = sq_query(c, SQ_ALL_REPOS, &s, e, "");
    if (rc < 0)
        goto fail;
    size_t n = 0;
    int64_t *ids = NULL;
    char **names = NULL;
    for (int row = rc == SQL_ROW; row == 1; row = sq_next_row(c, s, e)) {
        ids = xrealloc(ids, (n + 1) * sizeof(int64_t));
        names = xrealloc(names, (n + 1) * sizeof(char *));
        ids[n] = sql_col_int64(s, 0);
        names[n++] = sq_col_strdup(s, 1);
    }
    sq_stmt_done(s);
    buf_appends(out, "{");
    int result = 0;
    for (size_t i = 0; i < n; i++) {
        struct digest d;
        if (result == 0 && repo_digest(c, ids[i], names[i], &d, e) == 0) {
            if (i)
                buf_append(out, ",", 1);
            buf_append_json_string(out, names[i]);
            buf_printf(out, ":\"%s\"", d.str);
        } else {
            result = -1;
        }
        free(names[i]);
    }
    buf_appends(out, "}");
    free(ids);
    free(names);
    sq_tx_commit(c, e);
    return result;
fail:
    sq_tx_rollback(c);
    return -1;
}

static struct meta_event *state_add(struct meta_event **list, size_t *n, const char *kind,
                                    const char *repo, int64_t hlc, const char *origin)
{
    *list = xrealloc(*list, (*n + 1) * sizeof(**list));
    struct meta_event *ev = &(*list)[(*n)++];
    memset(ev, 0, sizeof(*ev));
    ev->kind = xstrdup(kind);
    ev->repo = xstrdup(repo);
    ev->hlc = (uint64_t)hlc;
    ev->origin = xstrdup(origin && *origin ? origin : "unknown");
    ev->origin_seq = 1;
    return ev;
}

static int sq_repo_state(struct metastore *ms, const char *repo, struct meta_event **out,
                         size_t *n_out, struct err *e)
{
    *out = NULL;
    *n_out = 0;
    struct sq_conn *c = sq_conn_of(ms, e);
    if (c == NULL)
        return -1;
    if (sq_tx_begin(c, false, e) != 0)
        return -1;
    int64_t repo_id;
    struct sql_stmt *s;
    struct meta_event *list = NULL;
    size_t n = 0;
    int rc = repo_find(c, repo, &repo_id, e);
    if (rc != 0) {
        sq_tx_commit(c, e);
        return rc < 0 ? -1 : 0;
    }
    rc = sq_query(c, SQ_MANIFESTS_OF_REPO, &s, e, "i", repo_id);
    for (int row = rc == SQL_ROW; rc >= 0 && row == 1; row = sq_next_row(c, s, e)) {
        struct meta_event *ev = state_add(&list, &n, "manifest_put", repo,
                                          sql_col_int64(s, 6),
                                          sql_col_text(s, 7));
        ev->digest = sq_col_strdup(s, 0);
        ev->payload = manifest_payload(c, s, repo_id, e);
        if (ev->payload == NULL) {
            sq_stmt_done(s);
            rc = -1;
            break;
        }
    }
    if (rc >= 0)
        sq_stmt_done(s);
    if (rc >= 0)
        rc = sq_query(c, SQ_TREG_OF_REPO, &s, e, "t", repo);
    for (int row = rc == SQL_ROW; rc >= 0 && row == 1; row = sq_next_row(c, s, e)) {
        bool is_deleted = sql_col_is_null(s, 1);
        struct meta_event *ev = state_add(&list, &n, is_deleted ? "tag_delete" : "tag_set", repo,
                                          sql_col_int64(s, 2),
                                          sql_col_text(s, 3));
        ev->name = sq_col_strdup(s, 0);
        ev->digest = sq_col_strdup(s, 1);
    }
    if (rc >= 0)
        sq_stmt_done(s);
    if (rc >= 0)
        rc = sq_query(c, SQ_TOMB_OF_REPO, &s, e, "t", repo);
    for (int row = rc == SQL_ROW; rc >= 0 && row == 1; row = sq_next_row(c, s, e)) {
        struct meta_event *ev = state_add(&list, &n, "manifest_delete", repo,
                                          sql_col_int64(s, 1),
                                          sql_col_text(s, 2));
        ev->digest = sq_col_strdup(s, 0);
    }
    if (rc >= 0)
        sq_stmt_done(s);
    sq_tx_commit(c, e);
    if (rc < 0) {
        for (size_t i = 0; i < n; i++)
            meta_event_fini(&list[i]);
        free(list);
        return -1;
    }
    *out = list;
    *n_out = n;
    return 0;
}

static int sq_manifest_lookup(struct metastore *ms, const char *repo, const char *reference,
                              struct digest *d, char **media_type, int64_t *size,
                              bool *is_visible, int64_t *recorded_ms, struct err *e)
{
    *media_type = NULL;
    struct sq_conn *c = sq_conn_of(ms, e);
    if (c == NULL)
        return -1;
    if (sq_tx_begin(c, false, e) != 0)
        return -1;
    int64_t repo_id;
    struct sql_stmt *s;
    int rc = repo_find(c, repo, &repo_id, e);
    if (rc != 0) {
        if (rc > 0)
            err_set(e, ERR_MANIFEST_UNKNOWN, NULL);
        goto fail;
    }
    if (strchr(reference, ':') != NULL) {
        if (digest_parse(reference, strlen(reference), d, e) != 0)
            goto fail;
    } else {
        rc = sq_query(c, SQ_TREG_GET, &s, e, "tt", repo, reference);
        if (rc < 0)
            goto fail;
        bool found = rc == SQL_ROW && !sql_col_is_null(s, 0);
        if (found)
            col_digest(s, 0, d);
        sq_stmt_done(s);
        if (!found) {
            err_set(e, ERR_MANIFEST_UNKNOWN, NULL);
            goto fail;
        }
    }
    rc = sq_query(c, SQ_MANIFEST_LOOKUP, &s, e, "it", repo_id, d->str);
    if (rc < 0)
        goto fail;
    if (rc == SQL_ROW) {
        *media_type = sq_col_strdup(s, 0);
        *size = sql_col_int64(s, 1);
        *is_visible = sql_col_int64(s, 2) != 0;
        *recorded_ms = sql_col_int64(s, 3);
    }
    sq_stmt_done(s);
    if (rc != SQL_ROW) {
        err_set(e, ERR_MANIFEST_UNKNOWN, NULL);
        goto fail;
    }
    sq_tx_commit(c, e);
    return 0;
fail:
    sq_tx_rollback(c);
    return -1;
}

/* Webhook secrets at rest -------------------------------------------------------
 *
 * The values of a webhook's customHeaders often are credentials (Authorization: Bearer
 * ...). With a sealing key they are stored sealed (secret_seal: "enc:v1:...") in
 * objects.value and in the payload of object_put events, and opened on the way out. The
 * rest of the definition stays readable (it is what `webhook show` prints anyway).
 *
 *   write: object_put, merge_object (from a peer), event_apply   -> seal
 *   read:  object_get, object_list, events_read, events_since     -> open
 *
 * A value that does not open under the key is left as it is: a row still in clear (read
 * as written until the migration seals it), or one sealed under another key (logged). */

#define SQ_SEALED_KIND "webhook"
#define SQ_SEALED_MEMBER "customHeaders"

/* Seals (is_seal) or opens the customHeaders values of object value v in place. True if
 * any changed. A value is sealed unless it already opens under the key, so a clear value
 * that merely starts like a sealed one is sealed too. */
static bool seal_headers(const struct sq_store *st, json_t *v, bool is_seal)
{
    json_t *headers = json_object_get(v, SQ_SEALED_MEMBER);
    const char *name;
    json_t *val;
    bool is_changed = false;
    json_object_foreach(headers, name, val) {
        const char *text = json_string_value(val);
        if (text == NULL)
            continue;
        char *opened = secret_is_sealed(text) ? secret_open(st->seal_key, text) : NULL;
        char *out = NULL;
        if (is_seal && opened == NULL)
            out = secret_seal(st->seal_key, text);
        else if (!is_seal && opened != NULL)
            out = opened, opened = NULL;
        else if (!is_seal && secret_is_sealed(text))
            log_error("metastore", "failed to open header %s of a webhook: sealed under another "
                                   "key than this region's secrets.key", name);
        if (out != NULL) {
            AZ(json_string_set(val, out));
            secret_wipe(out, strlen(out));
            free(out);
            is_changed = true;
        }
        if (opened != NULL) {
            secret_wipe(opened, strlen(opened));
            free(opened);
        }
    }
    return is_changed;
}

/* value_json of an object of kind as it is stored (is_seal) or handed out: a heap string,
 * or NULL when it is the same (no key, another kind, nothing to change). */
static char *seal_value(const struct sq_store *st, const char *kind, const char *value_json,
                        bool is_seal)
{
    if (!st->has_seal_key || kind == NULL || strcmp(kind, SQ_SEALED_KIND) != 0 ||
        value_json == NULL)
        return NULL;
    json_error_t je;
    json_t *v = json_loads(value_json, 0, &je);
    char *out = NULL;
    if (v != NULL && seal_headers(st, v, is_seal))
        out = json_dumps(v, JSON_COMPACT);
    json_decref(v);
    return out;
}

/* The same for an event payload: object_put events carry {"kind":K,"value":V}. */
static char *seal_payload(const struct sq_store *st, const char *event_kind,
                          const char *payload, bool is_seal)
{
    if (!st->has_seal_key || event_kind == NULL || strcmp(event_kind, "object_put") != 0 ||
        payload == NULL)
        return NULL;
    json_error_t je;
    json_t *p = json_loads(payload, 0, &je);
    const char *kind = json_string_value(json_object_get(p, "kind"));
    char *out = NULL;
    if (kind != NULL && strcmp(kind, SQ_SEALED_KIND) == 0 &&
        seal_headers(st, json_object_get(p, "value"), is_seal))
        out = json_dumps(p, JSON_COMPACT);
    json_decref(p);
    return out;
}

/* One table's rows to seal: (row key, new text), collected before any update. */
struct seal_row {
    char *k1;
    char *k2;
    int64_t seq;
    char *text;
};

/* Seals the clear rows of objects (kind webhook) and events (object_put). */
static int seal_clear_rows(struct sq_conn *c, size_t *n_sealed, struct err *e)
{
    struct seal_row *rows = NULL;
    size_t n = 0;
    struct sql_stmt *s = NULL;
    int rc = sq_run(c, "SELECT kind, key, value FROM objects WHERE kind = ?1"
                       " AND value IS NOT NULL", &s, e, "t", SQ_SEALED_KIND);
    for (int row = rc == SQL_ROW; rc >= 0 && row == 1; row = sq_next_row(c, s, e)) {
        char *text = seal_value(c->store, sql_col_text(s, 0),
                                sql_col_text(s, 2), true);
        if (text == NULL)
            continue;
        rows = xrealloc(rows, (n + 1) * sizeof(*rows));
        rows[n++] = (struct seal_row){sq_col_strdup(s, 0), sq_col_strdup(s, 1), 0, text};
    }
    if (rc >= 0)
        sql_finalize(s);
    size_t n_objects = n;
    if (rc >= 0)
        rc = sq_run(c, "SELECT seq, payload FROM events WHERE kind = 'object_put'", &s, e, "");
    for (int row = rc == SQL_ROW; rc >= 0 && row == 1; row = sq_next_row(c, s, e)) {
        char *text = seal_payload(c->store, "object_put",
                                  sql_col_text(s, 1), true);
        if (text == NULL)
            continue;
        rows = xrealloc(rows, (n + 1) * sizeof(*rows));
        rows[n++] = (struct seal_row){NULL, NULL, sql_col_int64(s, 0), text};
    }
    if (rc >= 0)
        sql_finalize(s);
    for (size_t i = 0; i < n && rc >= 0; i++) {
        if (i < n_objects)
            rc = sq_run(c, "UPDATE objects SET value = ?1 WHERE kind = ?2 AND key = ?3", &s, e,
                        "ttt", rows[i].text, rows[i].k1, rows[i].k2);
        else
            rc = sq_run(c, "UPDATE events SET payload = ?1 WHERE seq = ?2", &s, e, "ti",
                        rows[i].text, rows[i].seq);
        if (rc >= 0)
            sql_finalize(s);
    }
    for (size_t i = 0; i < n; i++) {
        free(rows[i].k1);
        free(rows[i].k2);
        free(rows[i].text);
    }
    free(rows);
    *n_sealed = n;
    return rc < 0 ? -1 : 0;
}

int metastore_sqlite_set_sealing_key(struct metastore *ms, const uint8_t key[32], struct err *e)
{
    struct sq_store *st = (struct sq_store *)ms;
    ASSERT(st->magic == SQ_STORE_MAGIC);
    memcpy(st->seal_key, key, SECRET_BOX_KEY_BYTES);
    st->has_seal_key = true;
    struct sq_conn *c = sq_conn_of(ms, e);
    if (c == NULL)
        return -1;
    /* secure_delete: the clear bytes an update leaves behind on the page or the freelist
     * are zeroed, not merely marked free. */
    const struct sql_driver *drv = st->drv;
    if (drv->set_secure_delete != NULL && drv->set_secure_delete(c->db, true) != SQL_OK)
        return err_set(e, ERR_IO, NULL);
    size_t n_sealed = 0;
    int rc = sq_tx_begin(c, true, e);
    if (rc == 0 && seal_clear_rows(c, &n_sealed, e) != 0) {
        sq_tx_rollback(c);
        rc = -1;
    } else if (rc == 0) {
        rc = sq_tx_commit(c, e);
    }
    if (drv->set_secure_delete != NULL)
        (void)drv->set_secure_delete(c->db, false);
    if (rc != 0 || n_sealed == 0)
        return rc;
    /* The old page images are still in the WAL: copy the new ones home and empty it. */
    if (drv->compact_log != NULL && drv->compact_log(c->db) != SQL_OK)
        log_warn("metastore", "failed to checkpoint after sealing webhook secrets");
    log_info("metastore", "sealed %zu stored webhook definitions that held secrets in clear",
             n_sealed);
    return 0;
}

/* Replicated objects ------------------------------------------------------------ */

static int sq_object_put(struct metastore *ms, const char *kind, const char *key,
                         const char *value_json, struct err *e)
{
    struct sq_conn *c = sq_conn_of(ms, e);
    if (c == NULL)
        return -1;
    char *sealed = seal_value(c->store, kind, value_json, true);
    if (sealed != NULL)
        value_json = sealed;
    struct buf p;
    buf_init(&p, SQ_PAYLOAD_MAX_BYTES);
    buf_appends(&p, "{\"kind\":");
    buf_append_json_string(&p, kind);
    buf_appends(&p, ",\"value\":");
    buf_appends(&p, value_json);
    buf_appends(&p, "}");
    if (payload_check(&p, e) != 0 || sq_tx_begin(c, true, e) != 0) {
        buf_fini(&p);
        free(sealed);
        return -1;
    }
    int64_t hlc = hlc_next(c->store);
    if (sq_exec(c, SQ_OBJ_SET, e, "tttiti", kind, key, value_json, hlc, c->store->region,
                (int64_t)0) != 0 ||
        event_append_clock(c, "object_put", NULL, key, NULL, p.data, hlc, e) != 0) {
        sq_tx_rollback(c);
        buf_fini(&p);
        free(sealed);
        return -1;
    }
    buf_fini(&p);
    free(sealed);
    return sq_tx_commit(c, e);
}

static int sq_object_delete(struct metastore *ms, const char *kind, const char *key,
                            struct err *e)
{
    struct sq_conn *c = sq_conn_of(ms, e);
    if (c == NULL)
        return -1;
    if (sq_tx_begin(c, true, e) != 0)
        return -1;
    struct sql_stmt *s;
    int rc = sq_query(c, SQ_OBJ_GET, &s, e, "tt", kind, key);
    if (rc < 0)
        goto fail;
    bool exists = rc == SQL_ROW && sql_col_int64(s, 3) == 0;
    sq_stmt_done(s);
    if (!exists) {
        err_set(e, ERR_NOT_FOUND, "no %s named %s", kind, key);
        goto fail;
    }
    int64_t hlc = hlc_next(c->store);
    struct buf p;
    buf_init(&p, 4096);
    buf_appends(&p, "{\"kind\":");
    buf_append_json_string(&p, kind);
    buf_appends(&p, "}");
    rc = sq_exec(c, SQ_OBJ_SET, e, "tttiti", kind, key, NULL, hlc, c->store->region, (int64_t)1);
    if (rc == 0)
        rc = event_append_clock(c, "object_delete", NULL, key, NULL, p.data, hlc, e);
    buf_fini(&p);
    if (rc != 0)
        goto fail;
    return sq_tx_commit(c, e);
fail:
    sq_tx_rollback(c);
    return -1;
}

static int sq_object_get(struct metastore *ms, const char *kind, const char *key,
                         char **value_json, struct err *e)
{
    *value_json = NULL;
    struct sq_conn *c = sq_conn_of(ms, e);
    if (c == NULL)
        return -1;
    struct sql_stmt *s;
    int rc = sq_query(c, SQ_OBJ_GET, &s, e, "tt", kind, key);
    if (rc < 0)
        return -1;
    if (rc == SQL_ROW && sql_col_int64(s, 3) == 0)
        *value_json = sq_col_strdup(s, 0);
    sq_stmt_done(s);
    if (*value_json == NULL)
        return err_set(e, ERR_NOT_FOUND, "no %s named %s", kind, key);
    char *clear = seal_value(c->store, kind, *value_json, false);
    if (clear != NULL) {
        free(*value_json);
        *value_json = clear;
    }
    return 0;
}

static int sq_object_list(struct metastore *ms, const char *kind, struct meta_name_list *keys,
                          struct meta_name_list *values, struct err *e)
{
    memset(keys, 0, sizeof(*keys));
    memset(values, 0, sizeof(*values));
    struct sq_conn *c = sq_conn_of(ms, e);
    if (c == NULL)
        return -1;
    struct sql_stmt *s;
    int rc = sq_query(c, SQ_OBJ_LIST, &s, e, "t", kind);
    if (rc < 0)
        return -1;
    for (int row = rc == SQL_ROW; row == 1; row = sq_next_row(c, s, e)) {
        keys->names = xrealloc(keys->names, (keys->n + 1) * sizeof(char *));
        values->names = xrealloc(values->names, (values->n + 1) * sizeof(char *));
        keys->names[keys->n++] = sq_col_strdup(s, 0);
        char *v = sq_col_strdup(s, 1);
        char *clear = v ? seal_value(c->store, kind, v, false) : NULL;
        if (clear != NULL) {
            free(v);
            v = clear;
        }
        values->names[values->n++] = v ? v : xstrdup("{}");
    }
    sq_stmt_done(s);
    return 0;
}

static int sq_manifest_tags(struct metastore *ms, const char *repo, const struct digest *d,
                            struct meta_name_list *out, struct err *e)
{
    memset(out, 0, sizeof(*out));
    struct sq_conn *c = sq_conn_of(ms, e);
    if (c == NULL)
        return -1;
    if (sq_tx_begin(c, false, e) != 0)
        return -1;
    int64_t repo_id;
    struct sql_stmt *s;
    int rc = repo_find(c, repo, &repo_id, e);
    if (rc == 0) {
        rc = sq_query(c, SQ_TAGS_OF_MANIFEST, &s, e, "it", repo_id, d->str);
        for (int row = rc == SQL_ROW; rc >= 0 && row == 1; row = sq_next_row(c, s, e)) {
            out->names = xrealloc(out->names, (out->n + 1) * sizeof(char *));
            out->names[out->n++] = sq_col_strdup(s, 0);
        }
        if (rc >= 0)
            sq_stmt_done(s);
    }
    sq_tx_commit(c, e);
    return rc < 0 ? -1 : 0;
}

static int sq_blob_list_all(struct metastore *ms, struct meta_name_list *out, struct err *e)
{
    memset(out, 0, sizeof(*out));
    struct sq_conn *c = sq_conn_of(ms, e);
    if (c == NULL)
        return -1;
    struct sql_stmt *s;
    int rc = sq_query(c, SQ_ALL_BLOBS, &s, e, "");
    if (rc < 0)
        return -1;
    for (int row = rc == SQL_ROW; row == 1; row = sq_next_row(c, s, e)) {
        out->names = xrealloc(out->names, (out->n + 1) * sizeof(char *));
        out->names[out->n++] = sq_col_strdup(s, 0);
    }
    sq_stmt_done(s);
    return 0;
}

static int sq_blob_lost(struct metastore *ms, const struct digest *d, size_t *n_manifests,
                        struct err *e)
{
    *n_manifests = 0;
    struct sq_conn *c = sq_conn_of(ms, e);
    if (c == NULL)
        return -1;
    if (sq_tx_begin(c, true, e) != 0)
        return -1;
    if (sq_exec(c, SQ_BLOB_LOST_HIDE, e, "t", d->str) != 0)
        goto fail;
    *n_manifests = (size_t)sql_changes(c->db);
    if (sq_exec(c, SQ_BLOB_LOST_UNLINK, e, "t", d->str) != 0 ||
        sq_exec(c, SQ_BLOB_DELETE, e, "t", d->str) != 0)
        goto fail;
    return sq_tx_commit(c, e);
fail:
    sq_tx_rollback(c);
    return -1;
}
