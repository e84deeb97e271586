/* The PostgreSQL driver of the SQL seam (sql_driver.h), through libpq: the only file that
 * includes <libpq-fe.h>. A connection belongs to one thread, like SQLite's; the store
 * keeps one per thread.
 *
 * Statements: `?N` placeholders become `$N`; a cached statement is a named prepared
 * statement of its connection (prepared once, one round trip per run after that), a
 * one-shot statement uses the unnamed one. Parameters go as text (int64 in decimal) and
 * blobs as binary; PostgreSQL infers each parameter's type from where it stands. Rows
 * come back whole in text format (bytea decoded on read).
 *
 * Transactions: a reader gets one snapshot (REPEATABLE READ), like a deferred SQLite
 * transaction in WAL mode. A writer runs at READ COMMITTED and first takes a
 * transaction-level advisory lock: writers of the database are serialized, as SQLite's
 * BEGIN IMMEDIATE serializes them, so the event log's sequence numbers are allocated in
 * commit order and the merge rules see every earlier write. Each statement after the lock
 * sees everything committed before it (READ COMMITTED takes a snapshot per statement);
 * no serialization failure can surface, so nothing needs a retry loop.
 *
 * Commits are durable when COMMIT returns (synchronous_commit of the server): no sync op.
 * A connection that broke is re-established on the next call outside a transaction, its
 * prepared statements prepared again on first use; a BEGIN, prepare or SELECT that found
 * it broken is made once more (see may_retry).
 *
 * Bounds (a dead, blackholed or hung server must not hold a request for ever): each
 * connection is made with connect_timeout, TCP keepalives and tcp_user_timeout (a peer
 * that stopped answering at the TCP level is found dead in about ten seconds) and
 * sessions run with statement_timeout and idle_in_transaction_session_timeout (a query
 * or an abandoned transaction ends on the server, with its locks), each unless the
 * conninfo sets it (the user's value wins; see with_bounds). A path that still carries
 * TCP but no answer (a hung server, a proxy that stopped forwarding) is covered on this
 * side: a call waits for its answer at most the session's statement_timeout plus
 * PG_ANSWER_SLACK_MS, then the connection is given up (made again on the next call)
 * and the call fails as a lost connection: 503 to a client. */
#include "sql_driver.h"

#include <errno.h>
#include <libpq-fe.h>
#include <poll.h>
#include <sys/socket.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "util.h"

/* Result codes besides SQL_OK/ROW/DONE: the detail is in the connection (sqlstate). */
#define PG_ERROR 1
/* Types of columns, from pg_type (stable OIDs). */
#define PG_OID_BOOL 16
#define PG_OID_BYTEA 17
/* The advisory lock writers take: one writer per database at a time (the key is
 * "meridian" in ASCII, 0x6d6572696469616e). */
#define PG_BEGIN_WRITE                                                                         \
    "BEGIN ISOLATION LEVEL READ COMMITTED; SELECT pg_advisory_xact_lock(7882832519763681646)"
#define PG_MAX_PARAMS 32
/* Connection settings applied unless the conninfo (or libpq's environment) sets them. */
#define PG_CONNECT_TIMEOUT_S "3"
#define PG_KEEPALIVES_IDLE_S "5"
#define PG_KEEPALIVES_INTERVAL_S "2"
#define PG_KEEPALIVES_COUNT "3"
#define PG_TCP_USER_TIMEOUT_MS "10000"
/* The session's bounds, as server options; the user's options come after, so a
 * statement_timeout in them wins. 10 s: every statement of this registry is indexed and
 * batched (GC, compaction: 1000 rows a transaction), so a healthy one never nears it, and
 * a request thread serves other connections too (http.c): it must not wait much longer.
 * The server-side keepalives let the server drop a node gone from the network (and the
 * session locks it held) as fast as the node notices the server gone. */
#define PG_STATEMENT_TIMEOUT_MS 10000
#define PG_SESSION_OPTIONS                                                                     \
    "-c statement_timeout=10000 -c idle_in_transaction_session_timeout=10000"                  \
    " -c tcp_keepalives_idle=5 -c tcp_keepalives_interval=2 -c tcp_keepalives_count=3"         \
    " -c tcp_user_timeout=10000"
/* How much longer than statement_timeout a call waits for the server's answer. */
#define PG_ANSWER_SLACK_MS 2000

struct pg_db {
    struct sql_db base;
    PGconn *h;
    unsigned generation; /* counts reconnects: statements of an older one prepare again */
    unsigned n_named;    /* names of prepared statements: s1, s2, ... */
    int64_t changes;
    bool is_in_tx;       /* between a begin and its commit or rollback */
    bool is_given_up;    /* a call got no answer in time: the connection is made again */
    int answer_timeout_ms; /* statement_timeout + PG_ANSWER_SLACK_MS; 0: no bound */
    /* The one-shot statement whose text the server's unnamed statement holds now: another
     * one-shot prepared since replaced it, so a run of this one prepares it again. */
    struct pg_stmt *unnamed_owner;
    char sqlstate[6];    /* of the last failure */
    char *message;       /* of the last failure */
};

struct pg_stmt {
    struct sql_stmt base;
    struct pg_db *db;
    char *sql;    /* as given (`?N`), for messages */
    char *pg_sql; /* `$N` */
    char name[16]; /* "" for a one-shot statement */
    unsigned generation; /* of the connection it was prepared on */
    int n_params;
    /* Bound values: text, or binary for blobs. */
    char *values[PG_MAX_PARAMS];
    int lengths[PG_MAX_PARAMS];
    int formats[PG_MAX_PARAMS];
    char *owned[PG_MAX_PARAMS]; /* decimal texts made by bind */
    /* Result of the last run and the row read. */
    PGresult *res;
    int row;
    int n_rows;
    unsigned char *blob; /* decoded bytea of blob_col in this row */
    size_t blob_len;
    int blob_col;
    int blob_row;
};

static struct pg_db *pdb(struct sql_db *db)
{
    return (struct pg_db *)db;
}

static struct pg_stmt *pst(struct sql_stmt *s)
{
    return (struct pg_stmt *)s;
}

/* Errors ------------------------------------------------------------------ */

/* Remembers why a call failed (the result's SQLSTATE, or the connection's message). */
static int note_failure(struct pg_db *d, const PGresult *res)
{
    const char *state = res != NULL ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    if (state == NULL)
        state = PQstatus(d->h) == CONNECTION_BAD || d->is_given_up ? "08006" : "XX000";
    snprintf(d->sqlstate, sizeof(d->sqlstate), "%s", state);
    const char *msg = res != NULL ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    if (res == NULL && d->is_given_up)
        msg = "no answer from the server in time: connection given up";
    if (msg == NULL || msg[0] == '\0')
        msg = PQerrorMessage(d->h);
    free(d->message);
    d->message = xstrdup(msg != NULL ? msg : "");
    size_t n = strlen(d->message);
    while (n > 0 && (d->message[n - 1] == '\n' || d->message[n - 1] == ' '))
        d->message[--n] = '\0';
    return PG_ERROR;
}

/* Maps the last failure: a uniqueness clash -> ERR_CONFLICT; a lost connection, a
 * serialization failure, a deadlock, a lock or statement timeout, a server shutting down
 * -> ERR_UNAVAILABLE (the client may retry); a full disk -> ERR_NO_SPACE; else ERR_IO. */
static int pg_fail(struct sql_db *db, int rc, const char *what, const char *sql, struct err *e)
{
    (void)rc;
    struct pg_db *d = pdb(db);
    const char *state = d->sqlstate[0] != '\0' ? d->sqlstate : "XX000";
    log_error("metastore", "failed to %s: %s (SQLSTATE %s)%s%s", what,
              d->message != NULL ? d->message : "?", state, sql != NULL ? " sql=" : "",
              sql != NULL ? sql : "");
    enum err_code code = ERR_IO;
    if (strcmp(state, "23505") == 0)
        code = ERR_CONFLICT;
    else if (strncmp(state, "08", 2) == 0 || strcmp(state, "40001") == 0 ||
             strcmp(state, "40P01") == 0 || strcmp(state, "55P03") == 0 ||
             strcmp(state, "57014") == 0 || strncmp(state, "57P", 3) == 0 ||
             strcmp(state, "53300") == 0)
        code = ERR_UNAVAILABLE;
    else if (strcmp(state, "53100") == 0)
        code = ERR_NO_SPACE;
    err_set(e, code, NULL);
    return -1;
}

/* Connections ------------------------------------------------------------- */

static void pg_close(struct sql_db *db)
{
    if (db == NULL)
        return;
    struct pg_db *d = pdb(db);
    PQfinish(d->h);
    free(d->message);
    free(d);
}

/* Quiet notices (CREATE ... IF NOT EXISTS that exists) stay out of the log. */
static void on_notice(void *arg, const char *message)
{
    (void)arg;
    log_debug("metastore", "postgres: %s", message);
}

/* Is keyword set by the parsed conninfo, or by libpq's environment variable env? */
static const char *user_value(const PQconninfoOption *opts, const char *keyword,
                              const char *env)
{
    for (const PQconninfoOption *o = opts; o != NULL && o->keyword != NULL; o++) {
        if (strcmp(o->keyword, keyword) == 0 && o->val != NULL && o->val[0] != '\0')
            return o->val;
    }
    const char *v = env != NULL ? getenv(env) : NULL;
    return v != NULL && v[0] != '\0' ? v : NULL;
}

/* Connects to target (a conninfo string or URI) with the bounds of this file's header
 * added where target leaves them unset. */
static PGconn *connect_bounded(const char *target)
{
    static const struct {
        const char *keyword, *env, *value;
    } defaults[] = {
        {"connect_timeout", "PGCONNECT_TIMEOUT", PG_CONNECT_TIMEOUT_S},
        {"keepalives", NULL, "1"},
        {"keepalives_idle", NULL, PG_KEEPALIVES_IDLE_S},
        {"keepalives_interval", NULL, PG_KEEPALIVES_INTERVAL_S},
        {"keepalives_count", NULL, PG_KEEPALIVES_COUNT},
        {"tcp_user_timeout", NULL, PG_TCP_USER_TIMEOUT_MS},
    };
    enum { N_DEFAULTS = sizeof(defaults) / sizeof(defaults[0]) };
    PQconninfoOption *opts = PQconninfoParse(target, NULL);
    if (opts == NULL) /* not parseable: libpq says why when it tries */
        return PQconnectdb(target);
    const char *keywords[N_DEFAULTS + 3], *values[N_DEFAULTS + 3];
    size_t n = 0;
    keywords[n] = "dbname"; /* expanded: every setting of target, as given */
    values[n++] = target;
    for (size_t i = 0; i < N_DEFAULTS; i++) {
        if (user_value(opts, defaults[i].keyword, defaults[i].env) == NULL) {
            keywords[n] = defaults[i].keyword;
            values[n++] = defaults[i].value;
        }
    }
    /* Server options: ours first, the user's after (the last -c of a setting wins). */
    const char *theirs = user_value(opts, "options", "PGOPTIONS");
    size_t options_len = sizeof(PG_SESSION_OPTIONS) + 1 + (theirs != NULL ? strlen(theirs) : 0);
    char *options = xmalloc(options_len);
    snprintf(options, options_len, "%s%s%s", PG_SESSION_OPTIONS, theirs != NULL ? " " : "",
             theirs != NULL ? theirs : "");
    keywords[n] = "options";
    values[n++] = options;
    keywords[n] = NULL;
    values[n] = NULL;
    PGconn *h = PQconnectdbParams(keywords, values, 1);
    free(options);
    PQconninfoFree(opts);
    return h;
}

static void learn_answer_timeout(struct pg_db *d);

static int pg_open(const char *target, struct sql_db **out, struct err *e)
{
    *out = NULL;
    struct pg_db *d = xcalloc(1, sizeof(*d));
    d->base.drv = &sql_pg_driver;
    d->h = connect_bounded(target);
    if (d->h == NULL || PQstatus(d->h) != CONNECTION_OK) {
        /* The URI may hold a password: name the failure, not the target. */
        log_error("metastore", "failed to connect to PostgreSQL: %s",
                  d->h != NULL ? PQerrorMessage(d->h) : "out of memory");
        pg_close(&d->base);
        return err_set(e, ERR_UNAVAILABLE, NULL);
    }
    PQsetNoticeProcessor(d->h, on_notice, NULL);
    learn_answer_timeout(d);
    *out = &d->base;
    return 0;
}

/* Waits for the answer to what was just sent, at most d->answer_timeout_ms; returns it
 * like PQexec (the first error, else the last result), or NULL when it did not come in
 * time (the connection is then given up) or the connection failed. */
static PGresult *await_answer(struct pg_db *d, int is_sent)
{
    if (!is_sent)
        return NULL;
    int64_t deadline_ms = util_mono_ns() / 1000000 + d->answer_timeout_ms;
    PGresult *kept = NULL;
    for (;;) {
        int flushed = PQflush(d->h); /* 1: more to send */
        if (flushed < 0)
            break;
        if (flushed == 0 && !PQisBusy(d->h)) {
            PGresult *r = PQgetResult(d->h);
            if (r == NULL)
                return kept;
            if (kept != NULL && PQresultStatus(kept) == PGRES_FATAL_ERROR) {
                PQclear(r);
            } else {
                PQclear(kept);
                kept = r;
            }
            continue;
        }
        int wait_ms = -1;
        if (d->answer_timeout_ms > 0) {
            int64_t left = deadline_ms - util_mono_ns() / 1000000;
            if (left <= 0) {
                d->is_given_up = true;
                log_warn("metastore", "PostgreSQL did not answer within %d ms: giving the "
                         "connection up", d->answer_timeout_ms);
                /* Closed at once, not at the next call: a server that is only slow ends
                 * the session and frees the locks it holds for us (the writers' lock of an
                 * open transaction, the GC fence) instead of keeping them until the idle
                 * bound. libpq makes the connection again on the next call (PQreset). */
                (void)shutdown(PQsocket(d->h), SHUT_RDWR);
                break;
            }
            wait_ms = (int)left;
        }
        struct pollfd p = {.fd = PQsocket(d->h), .events = POLLIN | (flushed ? POLLOUT : 0)};
        int rc = poll(&p, 1, wait_ms);
        if (rc < 0 && errno != EINTR)
            break;
        if (rc > 0 && (p.revents & (POLLIN | POLLERR | POLLHUP)) && !PQconsumeInput(d->h))
            break;
    }
    PQclear(kept);
    return NULL;
}

static PGresult *exec_bounded(struct pg_db *d, const char *sql)
{
    return await_answer(d, PQsendQuery(d->h, sql));
}

/* The session's statement_timeout (ours, or the user's) sets how long a call waits. */
static void learn_answer_timeout(struct pg_db *d)
{
    /* Non-blocking: a send that the kernel cannot take at once waits in await_answer,
     * under its bound, not in libpq. */
    if (PQsetnonblocking(d->h, 1) != 0)
        log_warn("metastore", "failed to make the PostgreSQL connection non-blocking");
    d->answer_timeout_ms = PG_STATEMENT_TIMEOUT_MS + PG_ANSWER_SLACK_MS; /* until known */
    PGresult *r = exec_bounded(d, "SELECT setting FROM pg_settings"
                                  " WHERE name = 'statement_timeout'");
    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1) {
        long ms = strtol(PQgetvalue(r, 0, 0), NULL, 10);
        d->answer_timeout_ms = ms > 0 ? (int)ms + PG_ANSWER_SLACK_MS : 0;
    }
    PQclear(r);
}

/* Outside a transaction, a connection that broke (server restarted, network) is made
 * again; statements prepare again on their next run. 0, or PG_ERROR. */
static int ensure_connected(struct pg_db *d)
{
    if (PQstatus(d->h) == CONNECTION_OK && !d->is_given_up)
        return SQL_OK;
    if (d->is_in_tx) /* the transaction is lost with the connection: no silent reconnect */
        return note_failure(d, NULL);
    PQreset(d->h);
    if (PQstatus(d->h) != CONNECTION_OK)
        return note_failure(d, NULL);
    d->is_given_up = false;
    learn_answer_timeout(d);
    d->generation++;
    if (d->is_given_up) /* connected, then no answer: made again on the next call */
        return note_failure(d, NULL);
    log_info("metastore", "reconnected to PostgreSQL");
    return SQL_OK;
}

/* A connection looks fine until it is used after the server went away (a restart): may
 * the failed call be made again on a new connection? Only outside a transaction, and only
 * for calls that change nothing if they did run (BEGIN, prepare, SELECT). */
static bool may_retry(struct pg_db *d, bool is_harmless)
{
    return is_harmless && !d->is_in_tx && PQstatus(d->h) == CONNECTION_BAD && !d->is_given_up;
}

/* Runs text without parameters; results other than success are a failure. */
static int run_plain(struct pg_db *d, const char *sql, bool is_harmless)
{
    int rc = SQL_OK;
    for (int attempt = 0; attempt < 2; attempt++) {
        if (ensure_connected(d) != SQL_OK)
            return PG_ERROR;
        PGresult *r = exec_bounded(d, sql);
        ExecStatusType st = PQresultStatus(r);
        rc = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK ? SQL_OK : note_failure(d, r);
        PQclear(r);
        if (rc == SQL_OK || !may_retry(d, is_harmless))
            break;
    }
    return rc;
}

static int pg_exec(struct sql_db *db, const char *script)
{
    return run_plain(pdb(db), script, false);
}

int sql_pg_set_unbounded(struct sql_db *db, bool is_unbounded)
{
    struct pg_db *d = pdb(db);
    /* RESET goes back to the value the connection started with (ours or the user's). */
    if (run_plain(d, is_unbounded ? "SET statement_timeout = 0" : "RESET statement_timeout",
                  false) != SQL_OK)
        return -1;
    if (is_unbounded)
        d->answer_timeout_ms = 0;
    else
        learn_answer_timeout(d);
    return 0;
}

/* Statements -------------------------------------------------------------- */

/* `?N` -> `$N` outside quoted text and identifiers; the highest N in *n_params. */
static char *rewrite_placeholders(const char *sql, int *n_params)
{
    size_t n = strlen(sql);
    char *out = xmalloc(n + 1);
    char quote = 0;
    int max = 0;
    size_t j = 0;
    for (size_t i = 0; i < n; i++) {
        char ch = sql[i];
        if (quote != 0) {
            if (ch == quote)
                quote = 0;
        } else if (ch == '\'' || ch == '"') {
            quote = ch;
        } else if (ch == '?' && i + 1 < n && sql[i + 1] >= '0' && sql[i + 1] <= '9') {
            ch = '$';
            int v = atoi(sql + i + 1);
            if (v > max)
                max = v;
        }
        out[j++] = ch;
    }
    out[j] = '\0';
    *n_params = max;
    return out;
}

static void clear_result(struct pg_stmt *s)
{
    PQclear(s->res);
    s->res = NULL;
    s->row = -1;
    s->n_rows = 0;
    free(s->blob);
    s->blob = NULL;
    s->blob_col = -1;
}

static void clear_bindings(struct pg_stmt *s)
{
    for (int i = 0; i < PG_MAX_PARAMS; i++) {
        free(s->owned[i]);
        s->owned[i] = NULL;
        s->values[i] = NULL;
        s->lengths[i] = 0;
        s->formats[i] = 0;
    }
}

/* Prepares s on its connection (again after a reconnect); SQL_OK or PG_ERROR. */
static int server_prepare(struct pg_stmt *s)
{
    struct pg_db *d = s->db;
    PGresult *r = await_answer(d, PQsendPrepare(d->h, s->name, s->pg_sql, s->n_params, NULL));
    int rc = PQresultStatus(r) == PGRES_COMMAND_OK ? SQL_OK : note_failure(d, r);
    PQclear(r);
    if (rc == SQL_OK) {
        s->generation = d->generation;
        if (s->name[0] == '\0')
            d->unnamed_owner = s;
    }
    return rc;
}

static void pg_finalize(struct sql_stmt *st)
{
    struct pg_stmt *s = pst(st);
    clear_result(s);
    clear_bindings(s);
    if (s->db->unnamed_owner == s)
        s->db->unnamed_owner = NULL;
    /* A named statement lives as long as its connection: say it is no longer needed. */
    if (s->name[0] != '\0' && s->generation == s->db->generation &&
        PQstatus(s->db->h) == CONNECTION_OK && !s->db->is_given_up &&
        PQtransactionStatus(s->db->h) != PQTRANS_INERROR) {
        char sql[40];
        snprintf(sql, sizeof(sql), "DEALLOCATE %s", s->name);
        PQclear(exec_bounded(s->db, sql));
    }
    free(s->sql);
    free(s->pg_sql);
    free(s);
}

static int pg_prepare(struct sql_db *db, const char *sql, bool is_cached, struct sql_stmt **out)
{
    struct pg_db *d = pdb(db);
    *out = NULL;
    struct pg_stmt *s = xcalloc(1, sizeof(*s));
    s->base.drv = &sql_pg_driver;
    s->db = d;
    s->sql = xstrdup(sql);
    s->pg_sql = rewrite_placeholders(sql, &s->n_params);
    s->row = -1;
    s->blob_col = -1;
    if (is_cached)
        snprintf(s->name, sizeof(s->name), "s%u", ++d->n_named);
    ASSERT(s->n_params <= PG_MAX_PARAMS);
    int rc = ensure_connected(d);
    if (rc == SQL_OK)
        rc = server_prepare(s);
    if (rc != SQL_OK && may_retry(d, true) && ensure_connected(d) == SQL_OK)
        rc = server_prepare(s);
    if (rc != SQL_OK) {
        s->generation = d->generation + 1; /* nothing to deallocate */
        pg_finalize(&s->base);
        return rc;
    }
    *out = &s->base;
    return SQL_OK;
}

static int pg_bind(struct sql_stmt *st, const char *fmt, va_list ap)
{
    struct pg_stmt *s = pst(st);
    clear_result(s);
    clear_bindings(s);
    for (int i = 0; fmt[i] != '\0'; i++) {
        ASSERT(i < PG_MAX_PARAMS);
        switch (fmt[i]) {
        case 't':
            s->values[i] = (char *)va_arg(ap, const char *);
            break;
        case 'i': {
            char buf[24];
            snprintf(buf, sizeof(buf), "%lld", (long long)va_arg(ap, int64_t));
            s->owned[i] = xstrdup(buf);
            s->values[i] = s->owned[i];
            break;
        }
        case 'b': {
            const void *p = va_arg(ap, const void *);
            size_t n = va_arg(ap, size_t);
            ASSERT(n <= (size_t)INT32_MAX);
            /* A NULL pointer binds an empty blob, not NULL (as SQLite's driver). */
            s->values[i] = (char *)(p != NULL ? p : "");
            s->lengths[i] = (int)n;
            s->formats[i] = 1;
            break;
        }
        default:
            ASSERT(!"unknown bind format");
        }
    }
    return SQL_OK;
}

/* Runs the statement with its bindings; the rows are then read one by one. */
static int run_once(struct pg_stmt *s)
{
    struct pg_db *d = s->db;
    if (ensure_connected(d) != SQL_OK)
        return PG_ERROR;
    bool is_stale = s->generation != d->generation ||
                    (s->name[0] == '\0' && d->unnamed_owner != s);
    if (is_stale && server_prepare(s) != SQL_OK)
        return PG_ERROR;
    s->res = await_answer(d, PQsendQueryPrepared(d->h, s->name, s->n_params,
                                                 (const char *const *)s->values, s->lengths,
                                                 s->formats, 0));
    ExecStatusType st = PQresultStatus(s->res);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        int rc = note_failure(d, s->res);
        clear_result(s);
        return rc;
    }
    return SQL_OK;
}

static int run_stmt(struct pg_stmt *s)
{
    struct pg_db *d = s->db;
    int rc = run_once(s);
    if (rc != SQL_OK && may_retry(d, strncmp(s->sql, "SELECT", 6) == 0))
        rc = run_once(s);
    if (rc != SQL_OK)
        return rc;
    const char *tuples = PQcmdTuples(s->res);
    d->changes = tuples[0] != '\0' ? strtoll(tuples, NULL, 10) : 0;
    s->n_rows = PQntuples(s->res);
    s->row = -1;
    return SQL_OK;
}

static int pg_step(struct sql_stmt *st)
{
    struct pg_stmt *s = pst(st);
    if (s->res == NULL) {
        int rc = run_stmt(s);
        if (rc != SQL_OK)
            return rc;
    }
    if (s->row + 1 >= s->n_rows) {
        s->row = s->n_rows;
        return SQL_DONE;
    }
    s->row++;
    return SQL_ROW;
}

static void pg_reset(struct sql_stmt *st)
{
    struct pg_stmt *s = pst(st);
    clear_result(s);
    clear_bindings(s);
}

static const char *pg_text_of(struct sql_stmt *s)
{
    return pst(s)->sql;
}

static bool has_value(struct pg_stmt *s, int i)
{
    return s->res != NULL && s->row >= 0 && s->row < s->n_rows && i < PQnfields(s->res) &&
           !PQgetisnull(s->res, s->row, i);
}

static bool pg_col_is_null(struct sql_stmt *st, int i)
{
    return !has_value(pst(st), i);
}

static int64_t pg_col_int64(struct sql_stmt *st, int i)
{
    struct pg_stmt *s = pst(st);
    if (!has_value(s, i))
        return 0;
    const char *v = PQgetvalue(s->res, s->row, i);
    if (PQftype(s->res, i) == PG_OID_BOOL)
        return v[0] == 't';
    return strtoll(v, NULL, 10);
}

static const char *pg_col_text(struct sql_stmt *st, int i)
{
    struct pg_stmt *s = pst(st);
    if (!has_value(s, i))
        return NULL;
    return PQgetvalue(s->res, s->row, i);
}

/* bytea comes as text (\x + hex): decoded once per row and column read. */
static void decode_blob(struct pg_stmt *s, int i)
{
    if (s->blob_col == i && s->blob_row == s->row)
        return;
    free(s->blob);
    s->blob = NULL;
    s->blob_len = 0;
    s->blob_col = i;
    s->blob_row = s->row;
    if (!has_value(s, i))
        return;
    const char *v = PQgetvalue(s->res, s->row, i);
    if (PQftype(s->res, i) != PG_OID_BYTEA) {
        s->blob_len = (size_t)PQgetlength(s->res, s->row, i);
        s->blob = xmalloc(s->blob_len + 1);
        memcpy(s->blob, v, s->blob_len + 1);
        return;
    }
    size_t n = 0;
    unsigned char *raw = PQunescapeBytea((const unsigned char *)v, &n);
    ASSERT(raw != NULL);
    s->blob = xmalloc(n + 1);
    memcpy(s->blob, raw, n);
    PQfreemem(raw);
    s->blob_len = n;
}

static const void *pg_col_blob(struct sql_stmt *st, int i)
{
    struct pg_stmt *s = pst(st);
    decode_blob(s, i);
    return s->blob;
}

static size_t pg_col_bytes(struct sql_stmt *st, int i)
{
    struct pg_stmt *s = pst(st);
    if (has_value(s, i) && PQftype(s->res, i) != PG_OID_BYTEA)
        return (size_t)PQgetlength(s->res, s->row, i);
    decode_blob(s, i);
    return s->blob_len;
}

static int64_t pg_changes(struct sql_db *db)
{
    return pdb(db)->changes;
}

/* The id the connection's last INSERT drew from a sequence (an identity column). */
static int64_t pg_last_insert_id(struct sql_db *db)
{
    struct pg_db *d = pdb(db);
    PGresult *r = exec_bounded(d, "SELECT lastval()");
    int64_t id = 0;
    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1)
        id = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    else
        note_failure(d, r);
    PQclear(r);
    return id;
}

/* Transactions ------------------------------------------------------------ */

static int pg_begin(struct sql_db *db, bool is_write)
{
    struct pg_db *d = pdb(db);
    int rc =
        run_plain(d, is_write ? PG_BEGIN_WRITE : "BEGIN ISOLATION LEVEL REPEATABLE READ", true);
    d->is_in_tx = rc == SQL_OK;
    if (rc != SQL_OK && !d->is_given_up && PQtransactionStatus(d->h) == PQTRANS_INERROR)
        PQclear(exec_bounded(d, "ROLLBACK")); /* BEGIN ran, the lock did not */
    return rc;
}

/* COMMIT of a transaction that failed answers ROLLBACK, without an error: that is one. */
static int pg_commit(struct sql_db *db)
{
    struct pg_db *d = pdb(db);
    d->is_in_tx = false;
    /* Not answered in time: the outcome is unknown, so it is a failure (not acknowledged) */
    PGresult *r = d->is_given_up ? NULL : exec_bounded(d, "COMMIT");
    int rc = SQL_OK;
    if (PQresultStatus(r) != PGRES_COMMAND_OK)
        rc = note_failure(d, r);
    else if (strcmp(PQcmdStatus(r), "COMMIT") != 0) {
        snprintf(d->sqlstate, sizeof(d->sqlstate), "40000");
        free(d->message);
        d->message = xstrdup("the transaction was rolled back");
        rc = PG_ERROR;
    }
    PQclear(r);
    return rc;
}

static void pg_rollback(struct sql_db *db)
{
    struct pg_db *d = pdb(db);
    d->is_in_tx = false;
    PGTransactionStatusType ts = PQtransactionStatus(d->h);
    /* A connection given up is not used again: the server ends its transaction when
     * idle_in_transaction_session_timeout runs out, or when the socket closes. */
    if (!d->is_given_up && (ts == PQTRANS_INTRANS || ts == PQTRANS_INERROR))
        PQclear(exec_bounded(d, "ROLLBACK"));
}

static int pg_param_count(struct sql_stmt *st)
{
    return pst(st)->n_params;
}

const struct sql_driver sql_pg_driver = {
    .name = "postgres",
    .dialect = SQL_DIALECT_POSTGRES,
    .open = pg_open,
    .close = pg_close,
    .map_error = pg_fail,
    .exec = pg_exec,
    .prepare = pg_prepare,
    .bind = pg_bind,
    .step = pg_step,
    .reset = pg_reset,
    .finalize = pg_finalize,
    .text_of = pg_text_of,
    .col_is_null = pg_col_is_null,
    .col_int64 = pg_col_int64,
    .col_text = pg_col_text,
    .col_blob = pg_col_blob,
    .col_bytes = pg_col_bytes,
    .changes = pg_changes,
    .last_insert_id = pg_last_insert_id,
    .begin = pg_begin,
    .commit = pg_commit,
    .rollback = pg_rollback,
    .sync = NULL,          /* durable at COMMIT */
    .refresh_stats = NULL, /* autovacuum analyzes */
    .set_secure_delete = NULL,
    .compact_log = NULL,
    .rebuild = NULL,
    .param_count = pg_param_count,
    .commits = NULL,       /* other nodes commit too: no cache can trust a count */
};
