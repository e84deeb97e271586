/* SQLite metastore: the only file that includes <sqlite3.h>. It keeps metadata only;
 * blob bytes live in the blobstore and callers decide what a name or digest may be.
 * Each thread has its own connection (WAL: readers never wait for the writer); every
 * mutation is one BEGIN IMMEDIATE transaction that also appends its event rows, so the
 * event log and the state it describes never disagree. */
#include "metastore.h"

#include <inttypes.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "buf.h"
#include "log.h"
#include "util.h"

#define SQ_STORE_MAGIC 0x6d737173u /* "msqs" */
#define SQ_CONN_MAGIC 0x6d737163u  /* "msqc" */
#define SQ_SCHEMA_VERSION 1
#define SQ_BUSY_TIMEOUT_MS 10000
#define SQ_PAYLOAD_MAX_BYTES (16u << 20)

/* Version 1 of the schema. Names compare with BINARY collation (bytewise), which is
 * the lexical order the distribution-spec asks of tag and catalog listings. Changes go
 * into a new migration step keyed on PRAGMA user_version, never into this text. */
static const char schema_v1[] =
    "CREATE TABLE IF NOT EXISTS repos ("
    "  id INTEGER PRIMARY KEY,"
    "  name TEXT NOT NULL UNIQUE COLLATE BINARY);"
    "CREATE TABLE IF NOT EXISTS blobs ("
    "  digest TEXT PRIMARY KEY,"
    "  size INTEGER NOT NULL) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS repo_blobs ("
    "  repo_id INTEGER NOT NULL REFERENCES repos(id),"
    "  digest TEXT NOT NULL REFERENCES blobs(digest),"
    "  PRIMARY KEY (repo_id, digest)) WITHOUT ROWID;"
    "CREATE INDEX IF NOT EXISTS repo_blobs_digest ON repo_blobs(digest);"
    "CREATE TABLE IF NOT EXISTS manifests ("
    "  repo_id INTEGER NOT NULL REFERENCES repos(id),"
    "  digest TEXT NOT NULL,"
    "  media_type TEXT NOT NULL,"
    "  artifact_type TEXT,"
    "  annotations TEXT,"
    "  subject TEXT,"
    "  size INTEGER NOT NULL,"
    "  body BLOB NOT NULL,"
    "  created_ms INTEGER NOT NULL,"
    "  PRIMARY KEY (repo_id, digest));"
    "CREATE INDEX IF NOT EXISTS manifests_subject ON manifests(repo_id, subject)"
    "  WHERE subject IS NOT NULL;"
    "CREATE TABLE IF NOT EXISTS manifest_refs ("
    "  repo_id INTEGER NOT NULL,"
    "  manifest_digest TEXT NOT NULL,"
    "  ref_digest TEXT NOT NULL,"
    "  is_manifest INTEGER NOT NULL,"
    "  PRIMARY KEY (repo_id, manifest_digest, ref_digest),"
    "  FOREIGN KEY (repo_id, manifest_digest) REFERENCES manifests(repo_id, digest)"
    "    ON DELETE CASCADE) WITHOUT ROWID;"
    "CREATE INDEX IF NOT EXISTS manifest_refs_ref ON manifest_refs(ref_digest);"
    "CREATE TABLE IF NOT EXISTS tags ("
    "  repo_id INTEGER NOT NULL,"
    "  name TEXT NOT NULL COLLATE BINARY,"
    "  digest TEXT NOT NULL,"
    "  updated_ms INTEGER NOT NULL,"
    "  PRIMARY KEY (repo_id, name),"
    "  FOREIGN KEY (repo_id, digest) REFERENCES manifests(repo_id, digest)"
    "    ON DELETE CASCADE) WITHOUT ROWID;"
    "CREATE INDEX IF NOT EXISTS tags_digest ON tags(repo_id, digest);"
    "CREATE TABLE IF NOT EXISTS uploads ("
    "  id TEXT PRIMARY KEY,"
    "  repo TEXT NOT NULL,"
    "  created_s INTEGER NOT NULL,"
    "  expires_s INTEGER NOT NULL) WITHOUT ROWID;"
    "CREATE INDEX IF NOT EXISTS uploads_expires ON uploads(expires_s);"
    "CREATE TABLE IF NOT EXISTS events ("
    "  seq INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  origin TEXT NOT NULL,"
    "  hlc INTEGER NOT NULL,"
    "  kind TEXT NOT NULL,"
    "  repo TEXT,"
    "  name TEXT,"
    "  digest TEXT,"
    "  payload TEXT);";

/* Every statement the store runs, prepared once per connection on first use. */
#define SQ_STATEMENTS(X)                                                                       \
    X(BEGIN_READ, "BEGIN")                                                                     \
    X(BEGIN_WRITE, "BEGIN IMMEDIATE")                                                          \
    X(COMMIT, "COMMIT")                                                                        \
    X(ROLLBACK, "ROLLBACK")                                                                    \
    X(USER_VERSION, "PRAGMA user_version")                                                     \
    X(HLC_MAX, "SELECT max(hlc) FROM events")                                                  \
    X(REPO_ID, "SELECT id FROM repos WHERE name = ?1")                                         \
    X(REPO_INSERT, "INSERT OR IGNORE INTO repos(name) VALUES (?1)")                            \
    X(REPO_LIST, "SELECT name FROM repos WHERE name > ?1 ORDER BY name COLLATE BINARY LIMIT ?2") \
    X(BLOB_INSERT, "INSERT OR IGNORE INTO blobs(digest, size) VALUES (?1, ?2)")                \
    X(BLOB_SIZE, "SELECT size FROM blobs WHERE digest = ?1")                                   \
    X(BLOB_DELETE, "DELETE FROM blobs WHERE digest = ?1")                                      \
    X(BLOB_IS_USED, "SELECT EXISTS (SELECT 1 FROM repo_blobs WHERE digest = ?1)"               \
                    " OR EXISTS (SELECT 1 FROM manifest_refs WHERE ref_digest = ?1)")          \
    X(LINK_INSERT, "INSERT OR IGNORE INTO repo_blobs(repo_id, digest) VALUES (?1, ?2)")        \
    X(LINK_EXISTS, "SELECT 1 FROM repo_blobs WHERE repo_id = ?1 AND digest = ?2")              \
    X(LINK_GET, "SELECT b.size FROM repos r JOIN repo_blobs rb ON rb.repo_id = r.id"           \
                " JOIN blobs b ON b.digest = rb.digest WHERE r.name = ?1 AND rb.digest = ?2")  \
    X(LINK_DELETE, "DELETE FROM repo_blobs WHERE repo_id = ?1 AND digest = ?2")                \
    X(MANIFEST_EXISTS, "SELECT 1 FROM manifests WHERE repo_id = ?1 AND digest = ?2")           \
    X(MANIFEST_INSERT, "INSERT OR IGNORE INTO manifests(repo_id, digest, media_type,"          \
                       " artifact_type, annotations, subject, size, body, created_ms)"         \
                       " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)")                         \
    X(MANIFEST_BY_DIGEST, "SELECT digest, media_type, artifact_type, annotations, body"        \
                          " FROM manifests WHERE repo_id = ?1 AND digest = ?2")                \
    X(MANIFEST_BY_TAG, "SELECT m.digest, m.media_type, m.artifact_type, m.annotations, m.body" \
                       " FROM tags t JOIN manifests m"                                         \
                       " ON m.repo_id = t.repo_id AND m.digest = t.digest"                     \
                       " WHERE t.repo_id = ?1 AND t.name = ?2")                                \
    X(MANIFEST_DELETE, "DELETE FROM manifests WHERE repo_id = ?1 AND digest = ?2")             \
    X(REF_INSERT, "INSERT OR IGNORE INTO manifest_refs(repo_id, manifest_digest, ref_digest,"  \
                  " is_manifest) VALUES (?1, ?2, ?3, ?4)")                                     \
    X(REFS_DELETE, "DELETE FROM manifest_refs WHERE repo_id = ?1 AND manifest_digest = ?2")    \
    X(REFERRERS, "SELECT digest, media_type, artifact_type, annotations, length(body)"         \
                 " FROM manifests WHERE repo_id = ?1 AND subject = ?2"                         \
                 " AND (?3 IS NULL OR artifact_type = ?3) ORDER BY digest")                    \
    X(TAG_GET, "SELECT digest FROM tags WHERE repo_id = ?1 AND name = ?2")                     \
    X(TAG_UPSERT, "INSERT INTO tags(repo_id, name, digest, updated_ms) VALUES (?1, ?2, ?3, ?4)" \
                  " ON CONFLICT(repo_id, name) DO UPDATE"                                      \
                  " SET digest = excluded.digest, updated_ms = excluded.updated_ms")           \
    X(TAG_DELETE, "DELETE FROM tags WHERE repo_id = ?1 AND name = ?2")                         \
    X(TAGS_OF_MANIFEST, "SELECT name FROM tags WHERE repo_id = ?1 AND digest = ?2"             \
                        " ORDER BY name")                                                      \
    X(TAGS_DELETE_OF_MANIFEST, "DELETE FROM tags WHERE repo_id = ?1 AND digest = ?2")          \
    X(TAG_LIST, "SELECT name FROM tags WHERE repo_id = ?1 AND name > ?2"                       \
                " ORDER BY name COLLATE BINARY LIMIT ?3")                                      \
    X(UPLOAD_INSERT, "INSERT INTO uploads(id, repo, created_s, expires_s)"                     \
                     " VALUES (?1, ?2, ?3, ?4)")                                               \
    X(UPLOAD_GET, "SELECT 1 FROM uploads WHERE id = ?1 AND repo = ?2")                         \
    X(UPLOAD_DELETE, "DELETE FROM uploads WHERE id = ?1")                                      \
    X(UPLOAD_EXPIRED, "SELECT id FROM uploads WHERE expires_s < ?1 ORDER BY id")               \
    X(EVENT_INSERT, "INSERT INTO events(origin, hlc, kind, repo, name, digest, payload)"       \
                    " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)")                                    \
    X(EVENTS_SINCE, "SELECT seq, origin, hlc, kind, repo, name, digest, payload"               \
                    " FROM events WHERE seq > ?1 ORDER BY seq LIMIT ?2")

enum sq_stmt {
#define X(id, sql) SQ_##id,
    SQ_STATEMENTS(X)
#undef X
        SQ_STMT_COUNT_
};

static const char *const sq_sql[SQ_STMT_COUNT_] = {
#define X(id, sql) [SQ_##id] = sql,
    SQ_STATEMENTS(X)
#undef X
};

struct sq_conn;

struct sq_store {
    struct metastore base; /* first: the ops table dispatches on &base */
    unsigned magic;
    char *path;
    char *region;
    pthread_key_t key; /* this thread's struct sq_conn */
    pthread_mutex_t mu;
    /* Under mu: */
    struct sq_conn *conns; /* every open connection, for close */
    int64_t hlc_last;
};

struct sq_conn {
    unsigned magic;
    struct sq_store *store;
    sqlite3 *db;
    sqlite3_stmt *stmts[SQ_STMT_COUNT_];
    struct sq_conn *prev;
    struct sq_conn *next;
};

static const struct metastore_ops sq_ops;

static struct sq_store *store_of(struct metastore *ms)
{
    AN(ms);
    struct sq_store *st = (struct sq_store *)ms;
    ASSERT(st->magic == SQ_STORE_MAGIC);
    return st;
}

/* Errors ------------------------------------------------------------------ */

/* Logs the SQLite message and maps rc: busy after the timeout -> ERR_UNAVAILABLE, a
 * full disk -> ERR_NO_SPACE, a uniqueness clash -> ERR_CONFLICT, else ERR_IO. The
 * client message stays the code's default. Returns -1. */
static int db_fail(struct sq_conn *c, int rc, const char *what, const char *sql,
                   struct err *e)
{
    log_error("metastore", "failed to %s: %s (%s)%s%s", what, sqlite3_errmsg(c->db),
              sqlite3_errstr(rc), sql != NULL ? " sql=" : "", sql != NULL ? sql : "");
    int sys_errno = sqlite3_system_errno(c->db);
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

static void conn_close(struct sq_conn *c)
{
    ASSERT(c->magic == SQ_CONN_MAGIC);
    for (int i = 0; i < SQ_STMT_COUNT_; i++)
        sqlite3_finalize(c->stmts[i]);
    int rc = sqlite3_close(c->db);
    if (rc != SQLITE_OK)
        log_error("metastore", "failed to close database: %s", sqlite3_errstr(rc));
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
    struct sq_conn *c = xcalloc(1, sizeof(*c));
    c->magic = SQ_CONN_MAGIC;
    c->store = st;
    /* NOMUTEX: a connection belongs to one thread (close runs only when all are idle). */
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX;
    int rc = sqlite3_open_v2(st->path, &c->db, flags, NULL);
    if (rc != SQLITE_OK) {
        log_error("metastore", "failed to open database %s: %s", st->path,
                  c->db ? sqlite3_errmsg(c->db) : sqlite3_errstr(rc));
        err_set(e, ERR_IO, NULL);
        goto fail;
    }
    sqlite3_extended_result_codes(c->db, 1);
    sqlite3_busy_timeout(c->db, SQ_BUSY_TIMEOUT_MS);
    /* Both are per connection. FULL: a commit returns after the WAL is fsync'd. */
    rc = sqlite3_exec(c->db, "PRAGMA foreign_keys = ON; PRAGMA synchronous = FULL;", NULL,
                      NULL, NULL);
    if (rc != SQLITE_OK) {
        db_fail(c, rc, "configure connection", NULL, e);
        goto fail;
    }
    return c;

fail:
    conn_close(c);
    return NULL;
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

static struct sq_conn *conn_of(struct metastore *ms, struct err *e)
{
    return conn_get(store_of(ms), e);
}

/* Statements -------------------------------------------------------------- */

static sqlite3_stmt *stmt_get(struct sq_conn *c, enum sq_stmt id, struct err *e)
{
    if (c->stmts[id] == NULL) {
        int rc = sqlite3_prepare_v3(c->db, sq_sql[id], -1, SQLITE_PREPARE_PERSISTENT,
                                    &c->stmts[id], NULL);
        if (rc != SQLITE_OK) {
            db_fail(c, rc, "prepare statement", sq_sql[id], e);
            return NULL;
        }
    }
    return c->stmts[id];
}

/* Ends a use of a cached statement; bindings are cleared so no pointer outlives it. */
static void stmt_done(sqlite3_stmt *s)
{
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
}

/* Binds the variadic arguments by fmt, one char per parameter in order:
 *   't' const char * (NULL binds NULL)   'i' int64_t   'b' const void *, size_t */
static int bind_args(sqlite3_stmt *s, const char *fmt, va_list ap)
{
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

/* Binds and steps statement id once. Returns SQLITE_ROW or SQLITE_DONE with the
 * statement in *out (the caller reads further rows, then calls stmt_done), or -1 with e
 * set and the statement already reset. */
static int query(struct sq_conn *c, enum sq_stmt id, sqlite3_stmt **out, struct err *e,
                 const char *fmt, ...)
{
    sqlite3_stmt *s = stmt_get(c, id, e);
    if (s == NULL)
        return -1;
    va_list ap;
    va_start(ap, fmt);
    int rc = bind_args(s, fmt, ap);
    va_end(ap);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(s);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        db_fail(c, rc, "run statement", sq_sql[id], e);
        stmt_done(s);
        return -1;
    }
    *out = s;
    return rc;
}

/* Runs a statement that returns no rows; 0 or -1. */
static int exec(struct sq_conn *c, enum sq_stmt id, struct err *e, const char *fmt, ...)
{
    sqlite3_stmt *s = stmt_get(c, id, e);
    if (s == NULL)
        return -1;
    va_list ap;
    va_start(ap, fmt);
    int rc = bind_args(s, fmt, ap);
    va_end(ap);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(s);
    stmt_done(s);
    if (rc != SQLITE_DONE && rc != SQLITE_ROW)
        return db_fail(c, rc, "run statement", sq_sql[id], e);
    return 0;
}

/* Reads a step result after the first: 1 for a row, 0 at the end, -1 on error. */
static int next_row(struct sq_conn *c, sqlite3_stmt *s, struct err *e)
{
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW)
        return 1;
    if (rc == SQLITE_DONE)
        return 0;
    return db_fail(c, rc, "read rows", sqlite3_sql(s), e);
}

static char *col_strdup(sqlite3_stmt *s, int i)
{
    const unsigned char *v = sqlite3_column_text(s, i);
    return v != NULL ? xstrdup((const char *)v) : NULL;
}

/* A digest column written by this file from a validated struct digest. */
static void col_digest(sqlite3_stmt *s, int i, struct digest *d)
{
    const unsigned char *v = sqlite3_column_text(s, i);
    snprintf(d->str, sizeof(d->str), "%s", v != NULL ? (const char *)v : "");
    d->alg = strncmp(d->str, "sha512:", 7) == 0 ? DIGEST_SHA512 : DIGEST_SHA256;
}

/* Transactions ------------------------------------------------------------ */

/* Write transactions take the write lock up front (IMMEDIATE) so they wait in the busy
 * handler instead of failing on lock upgrade; reads use a deferred transaction, which
 * in WAL mode sees one snapshot and never waits for a writer. */
static int tx_begin(struct sq_conn *c, bool is_write, struct err *e)
{
    return exec(c, is_write ? SQ_BEGIN_WRITE : SQ_BEGIN_READ, e, "");
}

static void tx_rollback(struct sq_conn *c)
{
    /* SQLite may already have rolled back on its own (for example on SQLITE_FULL). */
    if (sqlite3_get_autocommit(c->db))
        return;
    struct err ignored;
    exec(c, SQ_ROLLBACK, &ignored, "");
}

static int tx_commit(struct sq_conn *c, struct err *e)
{
    if (exec(c, SQ_COMMIT, e, "") != 0) {
        tx_rollback(c);
        return -1;
    }
    return 0;
}

/* Events ------------------------------------------------------------------ */

/* XXX: a placeholder clock until the HLC module lands: physical ms in the high bits,
 * a counter in the low 16, never going backwards within this process. Called inside
 * the write transaction, so hlc order is commit order. */
static int64_t hlc_next(struct sq_store *st)
{
    int64_t now = util_now_ms() * 65536;
    AZ(pthread_mutex_lock(&st->mu));
    int64_t v = now > st->hlc_last ? now : st->hlc_last + 1;
    st->hlc_last = v;
    AZ(pthread_mutex_unlock(&st->mu));
    return v;
}

/* Appends one event row inside the caller's write transaction. payload is a JSON
 * object or NULL. */
static int event_append(struct sq_conn *c, const char *kind, const char *repo,
                        const char *name, const char *digest, const char *payload,
                        struct err *e)
{
    struct sq_store *st = c->store;
    return exec(c, SQ_EVENT_INSERT, e, "tittttt", st->region, hlc_next(st), kind, repo, name,
                digest, payload);
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

/* Repositories ------------------------------------------------------------ */

/* 0 and *id if repo exists, 1 if not, -1 on error. */
static int repo_find(struct sq_conn *c, const char *repo, int64_t *id, struct err *e)
{
    sqlite3_stmt *s;
    int rc = query(c, SQ_REPO_ID, &s, e, "t", repo);
    if (rc < 0)
        return -1;
    if (rc == SQLITE_ROW)
        *id = sqlite3_column_int64(s, 0);
    stmt_done(s);
    return rc == SQLITE_ROW ? 0 : 1;
}

/* Creates repo's row on first use (inside a write transaction). */
static int repo_ensure(struct sq_conn *c, const char *repo, int64_t *id, struct err *e)
{
    if (exec(c, SQ_REPO_INSERT, e, "t", repo) != 0)
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
static int collect_names(struct sq_conn *c, sqlite3_stmt *s, int rc, long limit,
                         struct meta_name_list *out, struct err *e)
{
    size_t cap = 0;
    int row = rc == SQLITE_ROW ? 1 : 0;
    while (row == 1) {
        if (limit >= 0 && out->n == (size_t)limit) {
            out->has_more = true;
            break;
        }
        if (out->n == cap) {
            cap = cap ? cap * 2 : 16;
            out->names = xrealloc(out->names, cap * sizeof(*out->names));
        }
        out->names[out->n++] = col_strdup(s, 0);
        row = next_row(c, s, e);
    }
    stmt_done(s);
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
    struct sq_conn *c = conn_of(ms, e);
    if (c == NULL)
        return -1;
    struct buf payload;
    buf_init(&payload, SQ_PAYLOAD_MAX_BYTES);
    int64_t repo_id;

    if (tx_begin(c, true, e) != 0)
        goto out;
    if (repo_ensure(c, repo, &repo_id, e) != 0)
        goto fail;
    if (exec(c, SQ_BLOB_INSERT, e, "ti", d->str, (int64_t)size) != 0)
        goto fail;
    if (exec(c, SQ_LINK_INSERT, e, "it", repo_id, d->str) != 0)
        goto fail;
    /* Linking what is already linked changes nothing and logs nothing. */
    if (sqlite3_changes(c->db) > 0) {
        buf_printf(&payload, "{\"size\":%" PRIu64 "}", size);
        if (payload_check(&payload, e) != 0)
            goto fail;
        if (event_append(c, "blob_link", repo, NULL, d->str, payload.data, e) != 0)
            goto fail;
    }
    if (tx_commit(c, e) != 0)
        goto out;
    buf_fini(&payload);
    return 0;

fail:
    tx_rollback(c);
out:
    buf_fini(&payload);
    return -1;
}

static int sq_blob_get(struct metastore *ms, const char *repo, const struct digest *d,
                       uint64_t *size, struct err *e)
{
    struct sq_conn *c = conn_of(ms, e);
    if (c == NULL)
        return -1;
    sqlite3_stmt *s;
    int rc = query(c, SQ_LINK_GET, &s, e, "tt", repo, d->str);
    if (rc < 0)
        return -1;
    if (rc == SQLITE_ROW)
        *size = (uint64_t)sqlite3_column_int64(s, 0);
    stmt_done(s);
    if (rc != SQLITE_ROW)
        return err_set(e, ERR_BLOB_UNKNOWN, NULL);
    return 0;
}

static int sq_blob_find(struct metastore *ms, const struct digest *d, uint64_t *size,
                        struct err *e)
{
    struct sq_conn *c = conn_of(ms, e);
    if (c == NULL)
        return -1;
    sqlite3_stmt *s;
    int rc = query(c, SQ_BLOB_SIZE, &s, e, "t", d->str);
    if (rc < 0)
        return -1;
    if (rc == SQLITE_ROW)
        *size = (uint64_t)sqlite3_column_int64(s, 0);
    stmt_done(s);
    if (rc != SQLITE_ROW)
        return err_set(e, ERR_BLOB_UNKNOWN, NULL);
    return 0;
}

static int sq_blob_unlink(struct metastore *ms, const char *repo, const struct digest *d,
                          bool *is_orphan, struct err *e)
{
    struct sq_conn *c = conn_of(ms, e);
    if (c == NULL)
        return -1;
    int64_t repo_id;
    sqlite3_stmt *s;
    bool is_used = true;

    if (tx_begin(c, true, e) != 0)
        return -1;
    int rc = repo_find(c, repo, &repo_id, e);
    if (rc != 0) {
        if (rc > 0)
            err_set(e, ERR_BLOB_UNKNOWN, NULL);
        goto fail;
    }
    if (exec(c, SQ_LINK_DELETE, e, "it", repo_id, d->str) != 0)
        goto fail;
    if (sqlite3_changes(c->db) == 0) {
        err_set(e, ERR_BLOB_UNKNOWN, NULL);
        goto fail;
    }
    /* Orphan: linked in no repository and referenced by no manifest anywhere. */
    rc = query(c, SQ_BLOB_IS_USED, &s, e, "t", d->str);
    if (rc < 0)
        goto fail;
    is_used = rc == SQLITE_ROW && sqlite3_column_int(s, 0) != 0;
    stmt_done(s);
    if (!is_used && exec(c, SQ_BLOB_DELETE, e, "t", d->str) != 0)
        goto fail;
    if (event_append(c, "blob_unlink", repo, NULL, d->str,
                     is_used ? "{\"is_orphan\":false}" : "{\"is_orphan\":true}", e) != 0)
        goto fail;
    if (tx_commit(c, e) != 0)
        return -1;
    if (is_orphan != NULL)
        *is_orphan = !is_used;
    return 0;

fail:
    tx_rollback(c);
    return -1;
}

/* Manifests --------------------------------------------------------------- */

/* Checks one reference of a manifest being put into repo_id, linking a blob the
 * registry holds in another repository (a mount). */
static int check_ref(struct sq_conn *c, const char *repo, int64_t repo_id,
                     const struct meta_ref *ref, struct err *e)
{
    sqlite3_stmt *s;
    int rc;

    if (ref->is_manifest) {
        rc = query(c, SQ_MANIFEST_EXISTS, &s, e, "it", repo_id, ref->digest.str);
        if (rc < 0)
            return -1;
        stmt_done(s);
        if (rc != SQLITE_ROW)
            return err_set(e, ERR_MANIFEST_BLOB_UNKNOWN, "manifest references unknown manifest %s",
                           ref->digest.str);
        return 0;
    }
    rc = query(c, SQ_LINK_EXISTS, &s, e, "it", repo_id, ref->digest.str);
    if (rc < 0)
        return -1;
    stmt_done(s);
    if (rc == SQLITE_ROW)
        return 0;

    rc = query(c, SQ_BLOB_SIZE, &s, e, "t", ref->digest.str);
    if (rc < 0)
        return -1;
    int64_t size = rc == SQLITE_ROW ? sqlite3_column_int64(s, 0) : 0;
    stmt_done(s);
    if (rc != SQLITE_ROW)
        return err_set(e, ERR_MANIFEST_BLOB_UNKNOWN, "manifest references unknown blob %s",
                       ref->digest.str);
    if (exec(c, SQ_LINK_INSERT, e, "it", repo_id, ref->digest.str) != 0)
        return -1;
    char payload[64];
    snprintf(payload, sizeof(payload), "{\"size\":%" PRId64 ",\"is_mount\":true}", size);
    return event_append(c, "blob_link", repo, NULL, ref->digest.str, payload, e);
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
    struct sq_conn *c = conn_of(ms, e);
    if (c == NULL)
        return -1;
    const char *subject_str = subject != NULL ? subject->str : NULL;
    struct buf payload;
    buf_init(&payload, SQ_PAYLOAD_MAX_BYTES);
    int64_t repo_id;
    sqlite3_stmt *s;

    if (tx_begin(c, true, e) != 0)
        goto out;
    /* Rolled back with everything else if a reference turns out to be missing. */
    if (repo_ensure(c, repo, &repo_id, e) != 0)
        goto fail;
    /* distribution-spec: Pushing Manifests -- every referenced blob and child manifest
     * must be known, checked in the same transaction that makes the manifest visible. */
    for (size_t i = 0; i < n_refs; i++) {
        if (check_ref(c, repo, repo_id, &refs[i], e) != 0)
            goto fail;
    }
    if (exec(c, SQ_MANIFEST_INSERT, e, "itttttibi", repo_id, m->digest.str, m->media_type,
             m->artifact_type, m->annotations_json, subject_str, (int64_t)m->body_len,
             (const void *)m->body, m->body_len, util_now_ms()) != 0)
        goto fail;
    /* The same digest is the same bytes: a repeated put only (re)points the tag. */
    if (sqlite3_changes(c->db) > 0) {
        for (size_t i = 0; i < n_refs; i++) {
            if (exec(c, SQ_REF_INSERT, e, "itti", repo_id, m->digest.str, refs[i].digest.str,
                     (int64_t)refs[i].is_manifest) != 0)
                goto fail;
        }
        buf_appends(&payload, "{\"media_type\":");
        buf_append_json_string(&payload, m->media_type);
        buf_printf(&payload, ",\"size\":%zu", m->body_len);
        if (m->artifact_type != NULL) {
            buf_appends(&payload, ",\"artifact_type\":");
            buf_append_json_string(&payload, m->artifact_type);
        }
        if (subject_str != NULL) {
            buf_appends(&payload, ",\"subject\":");
            buf_append_json_string(&payload, subject_str);
        }
        buf_appends(&payload, "}");
        if (payload_check(&payload, e) != 0)
            goto fail;
        if (event_append(c, "manifest_put", repo, NULL, m->digest.str, payload.data, e) != 0)
            goto fail;
    }
    if (tag != NULL) {
        int rc = query(c, SQ_TAG_GET, &s, e, "it", repo_id, tag);
        if (rc < 0)
            goto fail;
        bool is_same = rc == SQLITE_ROW &&
                       strcmp((const char *)sqlite3_column_text(s, 0), m->digest.str) == 0;
        stmt_done(s);
        if (!is_same) {
            if (exec(c, SQ_TAG_UPSERT, e, "itti", repo_id, tag, m->digest.str,
                     util_now_ms()) != 0)
                goto fail;
            if (event_append(c, "tag_set", repo, tag, m->digest.str, "{}", e) != 0)
                goto fail;
        }
    }
    if (tx_commit(c, e) != 0)
        goto out;
    buf_fini(&payload);
    return 0;

fail:
    tx_rollback(c);
out:
    buf_fini(&payload);
    return -1;
}

/* Fills out from a MANIFEST_BY_* row (digest, media_type, artifact_type, annotations,
 * body). */
static void manifest_from_row(sqlite3_stmt *s, struct meta_manifest *out)
{
    col_digest(s, 0, &out->digest);
    out->media_type = col_strdup(s, 1);
    if (out->media_type == NULL)
        out->media_type = xstrdup("");
    out->artifact_type = col_strdup(s, 2);
    out->annotations_json = col_strdup(s, 3);
    const void *body = sqlite3_column_blob(s, 4);
    size_t len = (size_t)sqlite3_column_bytes(s, 4);
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
    struct sq_conn *c = conn_of(ms, e);
    if (c == NULL)
        return -1;
    int64_t repo_id;
    sqlite3_stmt *s;

    if (tx_begin(c, false, e) != 0)
        return -1;
    int rc = repo_find(c, repo, &repo_id, e);
    if (rc != 0) {
        if (rc > 0)
            err_set(e, ERR_NAME_UNKNOWN, NULL);
        goto fail;
    }
    /* A tag never contains ':', a digest always does (distribution-spec: Pulling
     * manifests, the <reference> grammar). */
    bool is_digest = strchr(reference, ':') != NULL;
    rc = query(c, is_digest ? SQ_MANIFEST_BY_DIGEST : SQ_MANIFEST_BY_TAG, &s, e, "it", repo_id,
               reference);
    if (rc < 0)
        goto fail;
    if (rc == SQLITE_ROW)
        manifest_from_row(s, out);
    stmt_done(s);
    if (rc != SQLITE_ROW) {
        err_set(e, ERR_MANIFEST_UNKNOWN, NULL);
        goto fail;
    }
    if (tx_commit(c, e) != 0) {
        meta_manifest_fini(out);
        return -1;
    }
    return 0;

fail:
    tx_rollback(c);
    return -1;
}

static int sq_manifest_delete(struct metastore *ms, const char *repo, const struct digest *d,
                              struct err *e)
{
    struct sq_conn *c = conn_of(ms, e);
    if (c == NULL)
        return -1;
    struct buf payload;
    buf_init(&payload, SQ_PAYLOAD_MAX_BYTES);
    int64_t repo_id;
    sqlite3_stmt *s;

    if (tx_begin(c, true, e) != 0)
        goto out;
    int rc = repo_find(c, repo, &repo_id, e);
    if (rc != 0) {
        if (rc > 0)
            err_set(e, ERR_MANIFEST_UNKNOWN, NULL);
        goto fail;
    }
    rc = query(c, SQ_MANIFEST_EXISTS, &s, e, "it", repo_id, d->str);
    if (rc < 0)
        goto fail;
    stmt_done(s);
    if (rc != SQLITE_ROW) {
        err_set(e, ERR_MANIFEST_UNKNOWN, NULL);
        goto fail;
    }
    /* The event names the tags that went with the manifest. */
    buf_appends(&payload, "{\"tags\":[");
    rc = query(c, SQ_TAGS_OF_MANIFEST, &s, e, "it", repo_id, d->str);
    if (rc < 0)
        goto fail;
    int row = rc == SQLITE_ROW ? 1 : 0;
    for (int i = 0; row == 1; i++) {
        if (i > 0)
            buf_appends(&payload, ",");
        buf_append_json_string(&payload, (const char *)sqlite3_column_text(s, 0));
        row = next_row(c, s, e);
    }
    stmt_done(s);
    if (row < 0)
        goto fail;
    buf_appends(&payload, "]}");
    if (payload_check(&payload, e) != 0)
        goto fail;

    if (exec(c, SQ_TAGS_DELETE_OF_MANIFEST, e, "it", repo_id, d->str) != 0)
        goto fail;
    if (exec(c, SQ_REFS_DELETE, e, "it", repo_id, d->str) != 0)
        goto fail;
    if (exec(c, SQ_MANIFEST_DELETE, e, "it", repo_id, d->str) != 0)
        goto fail;
    if (event_append(c, "manifest_delete", repo, NULL, d->str, payload.data, e) != 0)
        goto fail;
    if (tx_commit(c, e) != 0)
        goto out;
    buf_fini(&payload);
    return 0;

fail:
    tx_rollback(c);
out:
    buf_fini(&payload);
    return -1;
}

/* Tags -------------------------------------------------------------------- */

static int sq_tag_delete(struct metastore *ms, const char *repo, const char *tag,
                         struct err *e)
{
    struct sq_conn *c = conn_of(ms, e);
    if (c == NULL)
        return -1;
    int64_t repo_id;
    sqlite3_stmt *s;
    struct digest old;

    if (tx_begin(c, true, e) != 0)
        return -1;
    int rc = repo_find(c, repo, &repo_id, e);
    if (rc != 0) {
        if (rc > 0)
            err_set(e, ERR_MANIFEST_UNKNOWN, NULL);
        goto fail;
    }
    rc = query(c, SQ_TAG_GET, &s, e, "it", repo_id, tag);
    if (rc < 0)
        goto fail;
    if (rc == SQLITE_ROW)
        col_digest(s, 0, &old);
    stmt_done(s);
    if (rc != SQLITE_ROW) {
        err_set(e, ERR_MANIFEST_UNKNOWN, NULL);
        goto fail;
    }
    if (exec(c, SQ_TAG_DELETE, e, "it", repo_id, tag) != 0)
        goto fail;
    if (event_append(c, "tag_delete", repo, tag, old.str, "{}", e) != 0)
        goto fail;
    return tx_commit(c, e);

fail:
    tx_rollback(c);
    return -1;
}

static int sq_tag_list(struct metastore *ms, const char *repo, const char *last, long n,
                       struct meta_name_list *out, struct err *e)
{
    memset(out, 0, sizeof(*out));
    struct sq_conn *c = conn_of(ms, e);
    if (c == NULL)
        return -1;
    int64_t repo_id;
    sqlite3_stmt *s;

    if (tx_begin(c, false, e) != 0)
        return -1;
    int rc = repo_find(c, repo, &repo_id, e);
    if (rc != 0) {
        if (rc > 0)
            err_set(e, ERR_NAME_UNKNOWN, NULL);
        goto fail;
    }
    /* distribution-spec: Listing Tags -- n=0 is an empty list with no Link. */
    if (n != 0) {
        rc = query(c, SQ_TAG_LIST, &s, e, "iti", repo_id, last != NULL ? last : "",
                   page_limit(n));
        if (rc < 0)
            goto fail;
        if (collect_names(c, s, rc, n, out, e) != 0)
            goto fail;
    }
    if (tx_commit(c, e) != 0) {
        meta_name_list_fini(out);
        return -1;
    }
    return 0;

fail:
    tx_rollback(c);
    return -1;
}

static int sq_repo_list(struct metastore *ms, const char *last, long n,
                        struct meta_name_list *out, struct err *e)
{
    memset(out, 0, sizeof(*out));
    struct sq_conn *c = conn_of(ms, e);
    if (c == NULL)
        return -1;
    if (n == 0)
        return 0;
    sqlite3_stmt *s;
    int rc = query(c, SQ_REPO_LIST, &s, e, "ti", last != NULL ? last : "", page_limit(n));
    if (rc < 0)
        return -1;
    return collect_names(c, s, rc, n, out, e);
}

static int sq_referrers(struct metastore *ms, const char *repo, const struct digest *d,
                        const char *artifact_type, struct meta_referrer_list *out,
                        struct err *e)
{
    memset(out, 0, sizeof(*out));
    struct sq_conn *c = conn_of(ms, e);
    if (c == NULL)
        return -1;
    int64_t repo_id;
    sqlite3_stmt *s;
    size_t cap = 0;

    if (tx_begin(c, false, e) != 0)
        return -1;
    int rc = repo_find(c, repo, &repo_id, e);
    if (rc < 0)
        goto fail;
    /* distribution-spec: Listing Referrers -- never 404; an unknown repository simply
     * has no referrers. */
    if (rc > 0)
        return tx_commit(c, e);
    rc = query(c, SQ_REFERRERS, &s, e, "itt", repo_id, d->str, artifact_type);
    if (rc < 0)
        goto fail;
    int row = rc == SQLITE_ROW ? 1 : 0;
    while (row == 1) {
        if (out->n == cap) {
            cap = cap ? cap * 2 : 8;
            out->items = xrealloc(out->items, cap * sizeof(*out->items));
        }
        struct meta_referrer *r = &out->items[out->n++];
        memset(r, 0, sizeof(*r));
        col_digest(s, 0, &r->digest);
        r->media_type = col_strdup(s, 1);
        r->artifact_type = col_strdup(s, 2);
        r->annotations_json = col_strdup(s, 3);
        r->size = sqlite3_column_int64(s, 4);
        row = next_row(c, s, e);
    }
    stmt_done(s);
    if (row < 0)
        goto fail;
    if (tx_commit(c, e) != 0) {
        meta_referrer_list_fini(out);
        return -1;
    }
    return 0;

fail:
    meta_referrer_list_fini(out);
    tx_rollback(c);
    return -1;
}

/* Upload sessions --------------------------------------------------------- */

/* Upload sessions are region-local (design: a push never splits), so these are single
 * autocommit statements with no event rows. */
static int sq_upload_create(struct metastore *ms, const char *id, const char *repo,
                            int64_t expires_at_s, struct err *e)
{
    struct sq_conn *c = conn_of(ms, e);
    if (c == NULL)
        return -1;
    return exec(c, SQ_UPLOAD_INSERT, e, "ttii", id, repo, util_now_s(), expires_at_s);
}

static int sq_upload_get(struct metastore *ms, const char *id, const char *repo,
                         struct err *e)
{
    struct sq_conn *c = conn_of(ms, e);
    if (c == NULL)
        return -1;
    sqlite3_stmt *s;
    int rc = query(c, SQ_UPLOAD_GET, &s, e, "tt", id, repo);
    if (rc < 0)
        return -1;
    stmt_done(s);
    if (rc != SQLITE_ROW)
        return err_set(e, ERR_BLOB_UPLOAD_UNKNOWN, NULL);
    return 0;
}

static int sq_upload_delete(struct metastore *ms, const char *id, struct err *e)
{
    struct sq_conn *c = conn_of(ms, e);
    if (c == NULL)
        return -1;
    if (exec(c, SQ_UPLOAD_DELETE, e, "t", id) != 0)
        return -1;
    if (sqlite3_changes(c->db) == 0)
        return err_set(e, ERR_BLOB_UPLOAD_UNKNOWN, NULL);
    return 0;
}

static int sq_upload_list_expired(struct metastore *ms, int64_t now_s,
                                  struct meta_name_list *out, struct err *e)
{
    memset(out, 0, sizeof(*out));
    struct sq_conn *c = conn_of(ms, e);
    if (c == NULL)
        return -1;
    sqlite3_stmt *s;
    int rc = query(c, SQ_UPLOAD_EXPIRED, &s, e, "i", now_s);
    if (rc < 0)
        return -1;
    return collect_names(c, s, rc, -1, out, e);
}

/* Event feed -------------------------------------------------------------- */

/* Appends column i as a JSON string, or null. */
static void json_text_col(struct buf *b, sqlite3_stmt *s, int i)
{
    const unsigned char *v = sqlite3_column_text(s, i);
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
    struct sq_conn *c = conn_of(ms, e);
    if (c == NULL)
        return -1;
    if (buf_appends(out_json, "[") != 0)
        goto too_big;
    if (max == 0)
        goto finish;

    int64_t limit = max > (size_t)INT64_MAX ? INT64_MAX : (int64_t)max;
    sqlite3_stmt *s;
    int rc = query(c, SQ_EVENTS_SINCE, &s, e, "ii", after_seq, limit);
    if (rc < 0)
        return -1;
    struct buf one;
    buf_init(&one, out_json->max_bytes);
    size_t n = 0;
    int row = rc == SQLITE_ROW ? 1 : 0;
    while (row == 1) {
        buf_reset(&one);
        int64_t seq = sqlite3_column_int64(s, 0);
        buf_printf(&one, "%s{\"seq\":%" PRId64 ",\"origin\":", n > 0 ? "," : "", seq);
        json_text_col(&one, s, 1);
        buf_printf(&one, ",\"hlc\":%" PRId64 ",\"kind\":", (int64_t)sqlite3_column_int64(s, 2));
        json_text_col(&one, s, 3);
        buf_appends(&one, ",\"repo\":");
        json_text_col(&one, s, 4);
        buf_appends(&one, ",\"name\":");
        json_text_col(&one, s, 5);
        buf_appends(&one, ",\"digest\":");
        json_text_col(&one, s, 6);
        buf_appends(&one, ",\"payload\":");
        /* Payloads are JSON objects this file wrote itself. */
        const unsigned char *payload = sqlite3_column_text(s, 7);
        buf_appends(&one, payload != NULL ? (const char *)payload : "null");
        buf_appends(&one, "}");
        /* Keep one byte for the closing bracket. */
        if (one.is_too_big || out_json->len + one.len + 1 > out_json->max_bytes)
            break;
        buf_append(out_json, one.data, one.len);
        *last_seq = seq;
        n++;
        row = next_row(c, s, e);
    }
    stmt_done(s);
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
    st->magic = 0;
    FREE_AND_NULL(st->path);
    FREE_AND_NULL(st->region);
    free(st);
}

/* Creates or upgrades the schema. Runs in a write transaction so that two processes
 * opening a fresh file at once do not both create it. */
static int migrate(struct sq_conn *c, struct err *e)
{
    sqlite3_stmt *s;
    if (tx_begin(c, true, e) != 0)
        return -1;
    int rc = query(c, SQ_USER_VERSION, &s, e, "");
    if (rc < 0)
        goto fail;
    int64_t version = rc == SQLITE_ROW ? sqlite3_column_int64(s, 0) : 0;
    stmt_done(s);
    if (version > SQ_SCHEMA_VERSION) {
        log_error("metastore", "failed to open database: schema version %" PRId64
                  " is newer than this build's %d", version, SQ_SCHEMA_VERSION);
        err_set(e, ERR_IO, NULL);
        goto fail;
    }
    if (version < 1) {
        rc = sqlite3_exec(c->db, schema_v1, NULL, NULL, NULL);
        if (rc == SQLITE_OK)
            rc = sqlite3_exec(c->db, "PRAGMA user_version = 1", NULL, NULL, NULL);
        if (rc != SQLITE_OK) {
            db_fail(c, rc, "create schema", NULL, e);
            goto fail;
        }
        log_info("metastore", "created schema version %d", SQ_SCHEMA_VERSION);
    }
    /* Future versions: `if (version < 2) { ALTER ...; PRAGMA user_version = 2; }`. */
    return tx_commit(c, e);

fail:
    tx_rollback(c);
    return -1;
}

/* WAL must be switched on outside a transaction; it then sticks to the file. */
static int enable_wal(struct sq_conn *c, struct err *e)
{
    sqlite3_stmt *s = NULL;
    int rc = sqlite3_prepare_v2(c->db, "PRAGMA journal_mode = WAL", -1, &s, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(s);
    if (rc != SQLITE_ROW) {
        db_fail(c, rc, "enable WAL", NULL, e);
        sqlite3_finalize(s);
        return -1;
    }
    const char *mode = (const char *)sqlite3_column_text(s, 0);
    bool is_wal = mode != NULL && strcasecmp(mode, "wal") == 0;
    if (!is_wal)
        log_error("metastore", "failed to enable WAL: journal mode is %s", mode ? mode : "?");
    sqlite3_finalize(s);
    if (!is_wal)
        return err_set(e, ERR_IO, NULL);
    return 0;
}

static int hlc_seed(struct sq_conn *c, struct err *e)
{
    sqlite3_stmt *s;
    int rc = query(c, SQ_HLC_MAX, &s, e, "");
    if (rc < 0)
        return -1;
    /* The clock never goes below what the log already holds, across restarts too. */
    c->store->hlc_last = rc == SQLITE_ROW ? sqlite3_column_int64(s, 0) : 0;
    stmt_done(s);
    return 0;
}

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
    .close = sq_close,
    .events_since = sq_events_since,
};

struct metastore *metastore_sqlite_open(const char *path, const char *region, struct err *e)
{
    AN(path);
    AN(region);
    if (!sqlite3_threadsafe()) {
        log_error("metastore", "failed to open database: SQLite built without threads");
        err_set(e, ERR_INTERNAL, NULL);
        return NULL;
    }
    struct sq_store *st = xcalloc(1, sizeof(*st));
    st->base.ops = &sq_ops;
    st->magic = SQ_STORE_MAGIC;
    st->path = xstrdup(path);
    st->region = xstrdup(region);
    AZ(pthread_mutex_init(&st->mu, NULL));
    AZ(pthread_key_create(&st->key, on_thread_exit));

    struct sq_conn *c = conn_get(st, e);
    if (c == NULL)
        goto fail;
    if (enable_wal(c, e) != 0 || migrate(c, e) != 0 || hlc_seed(c, e) != 0)
        goto fail;
    return &st->base;

fail:
    sq_close(&st->base);
    return NULL;
}

/* Result helpers ---------------------------------------------------------- */

/* XXX: these belong to metastore.h rather than to one backend; they move to a
 * metastore.c when a second backend arrives. */
void meta_manifest_fini(struct meta_manifest *m)
{
    if (m == NULL)
        return;
    FREE_AND_NULL(m->media_type);
    FREE_AND_NULL(m->artifact_type);
    FREE_AND_NULL(m->annotations_json);
    FREE_AND_NULL(m->body);
    m->body_len = 0;
}

void meta_name_list_fini(struct meta_name_list *l)
{
    if (l == NULL)
        return;
    for (size_t i = 0; i < l->n; i++)
        free(l->names[i]);
    FREE_AND_NULL(l->names);
    l->n = 0;
    l->has_more = false;
}

void meta_referrer_list_fini(struct meta_referrer_list *l)
{
    if (l == NULL)
        return;
    for (size_t i = 0; i < l->n; i++) {
        free(l->items[i].media_type);
        free(l->items[i].artifact_type);
        free(l->items[i].annotations_json);
    }
    FREE_AND_NULL(l->items);
    l->n = 0;
}
