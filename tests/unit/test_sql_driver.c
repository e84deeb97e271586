/* Contract tests of the SQL driver seam (sql_driver.h): what the metadata logic relies on
 * from a driver, each test run with each driver's setup: setup_sqlite, and setup_pg on the
 * PostgreSQL server named by env MERIDIAN_TEST_PG (a libpq URI; scripts/test.sh starts one
 * with tools/pg-up.sh). Without it, or when it does not answer, the PostgreSQL runs are
 * skipped with a message. Binding each format, NULLs,
 * empty blobs, reading rows, reuse of a cached statement after reset, changes and inserted ids,
 * transactions (a rollback undoes, a commit keeps, a second connection sees a commit), the error
 * mapping (a uniqueness clash is ERR_CONFLICT, a bad statement is an error rc), and sync. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sql_driver.h"
#include "util.h"

struct fixture {
    const struct sql_driver *drv;
    char dir[64];
    char target[96];
    struct sql_db *db;
};

static int setup_sqlite(void **state)
{
    struct fixture *f = xcalloc(1, sizeof(*f));
    f->drv = &sql_sqlite_driver;
    snprintf(f->dir, sizeof(f->dir), "/tmp/meridian-sql-XXXXXX");
    if (mkdtemp(f->dir) == NULL)
        return -1;
    snprintf(f->target, sizeof(f->target), "%s/t.db", f->dir);
    struct err e = {0};
    if (f->drv->open(f->target, &f->db, &e) != 0)
        return -1;
    if (f->drv->exec(f->db, "CREATE TABLE t(k TEXT PRIMARY KEY, n INTEGER, b BLOB)") != SQL_OK)
        return -1;
    *state = f;
    return 0;
}

/* PostgreSQL: the same table in its types; id draws the inserted ids (SQLite: rowid). */
static int setup_pg(void **state)
{
    struct fixture *f = xcalloc(1, sizeof(*f));
    f->drv = &sql_pg_driver;
    snprintf(f->target, sizeof(f->target), "%s", getenv("MERIDIAN_TEST_PG"));
    struct err e = {0};
    if (f->drv->open(f->target, &f->db, &e) != 0)
        return -1;
    if (f->drv->exec(f->db, "DROP TABLE IF EXISTS t; CREATE TABLE t(k TEXT PRIMARY KEY,"
                            " n BIGINT, b BYTEA, id BIGINT GENERATED ALWAYS AS IDENTITY)") !=
        SQL_OK)
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    if (f->drv == &sql_pg_driver) {
        (void)f->drv->exec(f->db, "DROP TABLE IF EXISTS t");
        f->drv->close(f->db);
        free(f);
        return 0;
    }
    f->drv->close(f->db);
    char path[128];
    static const char *const suffixes[] = {"", "-wal", "-shm", "-journal"};
    for (size_t i = 0; i < sizeof(suffixes) / sizeof(suffixes[0]); i++) {
        snprintf(path, sizeof(path), "%s%s", f->target, suffixes[i]);
        unlink(path);
    }
    rmdir(f->dir);
    free(f);
    return 0;
}

/* Binds by fmt and steps once: the rc of the step (or of the bind). */
static int run(struct sql_stmt *s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = s->drv->bind(s, fmt, ap);
    va_end(ap);
    return rc == SQL_OK ? sql_step(s) : rc;
}

static struct sql_stmt *prepare(struct fixture *f, const char *sql, bool is_cached)
{
    struct sql_stmt *s = NULL;
    assert_int_equal(f->drv->prepare(f->db, sql, is_cached, &s), SQL_OK);
    assert_non_null(s);
    return s;
}

static void test_bind_and_read_each_type(void **state)
{
    struct fixture *f = *state;
    struct sql_stmt *ins = prepare(f, "INSERT INTO t(k, n, b) VALUES (?1, ?2, ?3)", true);
    assert_int_equal(run(ins, "tib", "a", (int64_t)INT64_MAX, "\x00\x01\x02", (size_t)3), SQL_DONE);
    assert_int_equal(sql_changes(f->db), 1);
    int64_t first_id = sql_last_insert_id(f->db);
    sql_reset(ins);
    /* A cached statement runs again after reset, with new values; NULL and empty blob. */
    assert_int_equal(run(ins, "tib", "b", (int64_t)-7, NULL, (size_t)0), SQL_DONE);
    assert_true(sql_last_insert_id(f->db) > first_id);
    sql_reset(ins);
    assert_int_equal(run(ins, "ttb", "c", NULL, "", (size_t)0), SQL_DONE);
    sql_reset(ins);
    sql_finalize(ins);

    struct sql_stmt *sel = prepare(f, "SELECT k, n, b FROM t ORDER BY k", false);
    assert_int_equal(run(sel, ""), SQL_ROW);
    assert_string_equal(sql_col_text(sel, 0), "a");
    assert_int_equal(sql_col_int64(sel, 1), INT64_MAX);
    assert_int_equal(sql_col_bytes(sel, 2), 3);
    assert_memory_equal(sql_col_blob(sel, 2), "\x00\x01\x02", 3);
    assert_false(sql_col_is_null(sel, 2));
    assert_int_equal(sql_step(sel), SQL_ROW);
    assert_string_equal(sql_col_text(sel, 0), "b");
    assert_int_equal(sql_col_int64(sel, 1), -7);
    /* A NULL pointer with 'b' binds an empty blob, not NULL (an empty manifest body). */
    assert_false(sql_col_is_null(sel, 2));
    assert_int_equal(sql_col_bytes(sel, 2), 0);
    assert_int_equal(sql_step(sel), SQL_ROW);
    assert_true(sql_col_is_null(sel, 1)); /* 't' with NULL binds NULL */
    assert_null(sql_col_text(sel, 1));
    assert_int_equal(sql_step(sel), SQL_DONE);
    assert_non_null(f->drv->text_of(sel));
    assert_non_null(strstr(f->drv->text_of(sel), "SELECT k, n, b"));
    sql_finalize(sel);
}

/* Statements prepared one after the other run in any order, each its own text (PostgreSQL:
 * one-shot statements share the server's unnamed statement). */
static void test_statements_run_in_any_order(void **state)
{
    struct fixture *f = *state;
    struct sql_stmt *a = prepare(f, "SELECT 'a', ?1", false);
    struct sql_stmt *b = prepare(f, "SELECT 'b', ?1", false);
    struct sql_stmt *c = prepare(f, "SELECT 'c', ?1", true);
    assert_int_equal(run(b, "t", "2"), SQL_ROW);
    assert_string_equal(sql_col_text(b, 0), "b");
    assert_int_equal(run(a, "t", "1"), SQL_ROW);
    assert_string_equal(sql_col_text(a, 0), "a");
    assert_string_equal(sql_col_text(a, 1), "1");
    assert_int_equal(run(c, "t", "3"), SQL_ROW);
    assert_string_equal(sql_col_text(c, 0), "c");
    sql_reset(c);
    sql_finalize(a);
    sql_reset(b);
    assert_int_equal(run(b, "t", "4"), SQL_ROW);
    assert_string_equal(sql_col_text(b, 0), "b");
    assert_string_equal(sql_col_text(b, 1), "4");
    sql_finalize(b);
    sql_finalize(c);
}

static int count_rows(struct fixture *f, struct sql_db *db)
{
    struct sql_stmt *s = NULL;
    assert_int_equal(f->drv->prepare(db, "SELECT count(*) FROM t", false, &s), SQL_OK);
    assert_int_equal(sql_step(s), SQL_ROW);
    int n = (int)sql_col_int64(s, 0);
    sql_finalize(s);
    return n;
}

static void test_transactions(void **state)
{
    struct fixture *f = *state;
    struct sql_stmt *ins = prepare(f, "INSERT INTO t(k, n) VALUES (?1, ?2)", true);
    assert_int_equal(f->drv->begin(f->db, true), SQL_OK);
    assert_int_equal(run(ins, "ti", "x", (int64_t)1), SQL_DONE);
    sql_reset(ins);
    f->drv->rollback(f->db);
    assert_int_equal(count_rows(f, f->db), 0);
    f->drv->rollback(f->db); /* no transaction open: a no-op */

    assert_int_equal(f->drv->begin(f->db, true), SQL_OK);
    assert_int_equal(run(ins, "ti", "y", (int64_t)2), SQL_DONE);
    sql_reset(ins);
    assert_int_equal(f->drv->commit(f->db), SQL_OK);
    sql_finalize(ins);
    if (f->drv->sync != NULL)
        assert_int_equal(f->drv->sync(f->target), 0);

    /* Another connection (another thread of the store) sees the commit. */
    struct sql_db *other = NULL;
    struct err e = {0};
    assert_int_equal(f->drv->open(f->target, &other, &e), 0);
    assert_int_equal(f->drv->begin(other, false), SQL_OK);
    assert_int_equal(count_rows(f, other), 1);
    assert_int_equal(f->drv->commit(other), SQL_OK);
    f->drv->close(other);
}

static void test_errors_map_into_err(void **state)
{
    struct fixture *f = *state;
    struct sql_stmt *ins = prepare(f, "INSERT INTO t(k, n) VALUES (?1, ?2)", false);
    assert_int_equal(run(ins, "ti", "dup", (int64_t)1), SQL_DONE);
    sql_reset(ins);
    int rc = run(ins, "ti", "dup", (int64_t)2);
    assert_true(rc != SQL_OK && rc != SQL_ROW && rc != SQL_DONE);
    struct err e = {0};
    assert_int_equal(f->drv->map_error(f->db, rc, "insert", "INSERT ...", &e), -1);
    assert_int_equal(e.code, ERR_CONFLICT);
    sql_finalize(ins);

    struct sql_stmt *bad = NULL;
    rc = f->drv->prepare(f->db, "SELECT nope FROM nowhere", false, &bad);
    assert_true(rc != SQL_OK);
    assert_null(bad);
    struct err e2 = {0};
    assert_int_equal(f->drv->map_error(f->db, rc, "prepare", NULL, &e2), -1);
    assert_int_equal(e2.code, ERR_IO);
    /* A script with an error reports it. */
    assert_true(f->drv->exec(f->db, "CREATE TABLE t(k TEXT)") != SQL_OK);
}

/* PostgreSQL specifics: `?N` inside quoted text stays as it is; a negative LIMIT spelled
 * NULLIF(.., -1) means none; a write transaction holds the writers' lock, so a second
 * writer waits (here: cannot take it without waiting); a statement prepared before the
 * server dropped the connection runs again after the driver reconnects. */
static void terminate_others(struct fixture *f, struct sql_db *other);

static void test_pg_specifics(void **state)
{
    struct fixture *f = *state;
    struct sql_stmt *s = prepare(f, "SELECT '?1', ?1, 'it''s ?2'", false);
    assert_int_equal(run(s, "t", "x"), SQL_ROW);
    assert_string_equal(sql_col_text(s, 0), "?1");
    assert_string_equal(sql_col_text(s, 1), "x");
    assert_string_equal(sql_col_text(s, 2), "it's ?2");
    sql_finalize(s);

    struct sql_stmt *ins = prepare(f, "INSERT INTO t(k, n) VALUES (?1, ?2)", true);
    for (int i = 0; i < 3; i++) {
        char k[8];
        snprintf(k, sizeof(k), "k%d", i);
        assert_int_equal(run(ins, "ti", k, (int64_t)i), SQL_DONE);
        sql_reset(ins);
    }
    struct sql_stmt *lim =
        prepare(f, "SELECT k FROM t ORDER BY k LIMIT NULLIF(CAST(?1 AS BIGINT), -1)", true);
    int n = 0;
    for (int rc = run(lim, "i", (int64_t)-1); rc == SQL_ROW; rc = sql_step(lim))
        n++;
    assert_int_equal(n, 3);
    sql_reset(lim);
    sql_finalize(lim);

    /* Another connection cannot take the writers' lock while this one writes. */
    assert_int_equal(f->drv->begin(f->db, true), SQL_OK);
    struct sql_db *other = NULL;
    struct err e = {0};
    assert_int_equal(f->drv->open(f->target, &other, &e), 0);
    struct sql_stmt *probe = NULL;
    assert_int_equal(f->drv->prepare(other, "SELECT pg_try_advisory_lock(7882832519763681646)",
                                     false, &probe),
                     SQL_OK);
    assert_int_equal(sql_step(probe), SQL_ROW);
    assert_int_equal(sql_col_int64(probe, 0), 0);
    sql_finalize(probe);
    assert_int_equal(f->drv->commit(f->db), SQL_OK);

    /* The server ends this connection (a restart): a SELECT and a BEGIN, which change
     * nothing if they ran, go through on a new connection; the cached statements with it. */
    terminate_others(f, other);
    struct sql_stmt *count = prepare(f, "SELECT count(*) FROM t", true);
    assert_int_equal(run(count, ""), SQL_ROW);
    assert_int_equal(sql_col_int64(count, 0), 3);
    sql_reset(count);
    terminate_others(f, other);
    assert_int_equal(f->drv->begin(f->db, false), SQL_OK);
    assert_int_equal(run(count, ""), SQL_ROW);
    sql_reset(count);
    assert_int_equal(f->drv->commit(f->db), SQL_OK);
    sql_finalize(count);
    /* A write outside a transaction is not made twice: it fails, the next one runs. */
    terminate_others(f, other);
    f->drv->close(other);
    int rc = run(ins, "ti", "after", (int64_t)9);
    if (rc != SQL_DONE) { /* the first call learns the connection is gone */
        struct err e2 = {0};
        assert_int_equal(f->drv->map_error(f->db, rc, "insert", NULL, &e2), -1);
        assert_int_equal(e2.code, ERR_UNAVAILABLE);
        sql_reset(ins);
        rc = run(ins, "ti", "after", (int64_t)9);
    }
    assert_int_equal(rc, SQL_DONE);
    sql_reset(ins);
    sql_finalize(ins);
}

/* One setting of db's session, as SHOW prints it. */
static void assert_setting(struct sql_db *db, const char *name, const char *want)
{
    char sql[96];
    snprintf(sql, sizeof(sql), "SHOW %s", name);
    struct sql_stmt *s = NULL;
    assert_int_equal(sql_pg_driver.prepare(db, sql, false, &s), SQL_OK);
    assert_int_equal(sql_step(s), SQL_ROW);
    assert_string_equal(sql_col_text(s, 0), want);
    sql_finalize(s);
}

/* Sessions are bounded (sql_pg.c) unless the conninfo says otherwise: the user's value
 * wins, and a statement past the bound fails as a retryable ERR_UNAVAILABLE. */
static void test_pg_session_bounds(void **state)
{
    struct fixture *f = *state;
    assert_setting(f->db, "statement_timeout", "10s");
    assert_setting(f->db, "idle_in_transaction_session_timeout", "10s");
    assert_setting(f->db, "tcp_keepalives_idle", "5");
    char target[600];
    snprintf(target, sizeof(target), "%s%soptions=-c%%20statement_timeout%%3D300", f->target,
             strchr(f->target, '?') != NULL ? "&" : "?");
    struct sql_db *db = NULL;
    struct err e = {0};
    assert_int_equal(sql_pg_driver.open(target, &db, &e), 0);
    assert_setting(db, "statement_timeout", "300ms");
    assert_setting(db, "idle_in_transaction_session_timeout", "10s");
    struct sql_stmt *s = NULL;
    assert_int_equal(sql_pg_driver.prepare(db, "SELECT pg_sleep(2)", false, &s), SQL_OK);
    int rc = sql_step(s);
    assert_true(rc != SQL_ROW && rc != SQL_DONE);
    sql_pg_driver.map_error(db, rc, "sleep", NULL, &e);
    assert_int_equal(e.code, ERR_UNAVAILABLE);
    sql_finalize(s);
    sql_pg_driver.close(db);
}

/* Migrations run without the bound (a long step, another node's migration), and the
 * session gets its own bound back after. */
static void test_pg_unbounded_for_migrations(void **state)
{
    struct fixture *f = *state;
    char target[600];
    snprintf(target, sizeof(target), "%s%soptions=-c%%20statement_timeout%%3D300", f->target,
             strchr(f->target, '?') != NULL ? "&" : "?");
    struct sql_db *db = NULL;
    struct err e = {0};
    assert_int_equal(sql_pg_driver.open(target, &db, &e), 0);
    assert_int_equal(sql_pg_set_unbounded(db, true), 0);
    struct sql_stmt *s = NULL;
    assert_int_equal(sql_pg_driver.prepare(db, "SELECT pg_sleep(0.6)", false, &s), SQL_OK);
    assert_int_equal(sql_step(s), SQL_ROW);
    sql_finalize(s);
    assert_int_equal(sql_pg_set_unbounded(db, false), 0);
    assert_setting(db, "statement_timeout", "300ms");
    assert_int_equal(sql_pg_driver.prepare(db, "SELECT pg_sleep(0.6)", false, &s), SQL_OK);
    int rc = sql_step(s);
    assert_true(rc != SQL_ROW && rc != SQL_DONE);
    sql_finalize(s);
    sql_pg_driver.close(db);
}

/* Another connection ends every connection of the test but itself. */
static void terminate_others(struct fixture *f, struct sql_db *other)
{
    struct sql_stmt *kill = NULL;
    assert_int_equal(f->drv->prepare(other,
                                     "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                                     " WHERE pid <> pg_backend_pid() AND datname = current_database()"
                                     " AND application_name = ''",
                                     false, &kill),
                     SQL_OK);
    assert_int_equal(sql_step(kill), SQL_ROW);
    sql_finalize(kill);
}

/* Is the PostgreSQL of MERIDIAN_TEST_PG there? */
static bool pg_reachable(void)
{
    const char *uri = getenv("MERIDIAN_TEST_PG");
    if (uri == NULL || uri[0] == '\0') {
        printf("[  SKIPPED ] PostgreSQL driver: MERIDIAN_TEST_PG is not set\n");
        return false;
    }
    struct sql_db *db = NULL;
    struct err e = {0};
    if (sql_pg_driver.open(uri, &db, &e) != 0) {
        printf("[  SKIPPED ] PostgreSQL driver: no server answers at MERIDIAN_TEST_PG\n");
        return false;
    }
    sql_pg_driver.close(db);
    return true;
}

/* The log copier's driver ops (SQLite; log_copier.c): a copy beside the writes never goes
 * past the pin's snapshot, and the SQLite behaviour its safety stands on. The write-ahead
 * log's header holds at bytes 12-15 the checkpoint sequence number, which goes up each
 * time a write starts the log over. */
static uint32_t log_restarts(const char *target)
{
    char path[128];
    snprintf(path, sizeof(path), "%s-wal", target);
    FILE *fp = fopen(path, "rb");
    assert_non_null(fp);
    unsigned char h[16];
    assert_int_equal(fread(h, 1, sizeof(h), fp), sizeof(h));
    fclose(fp);
    return (uint32_t)h[12] << 24 | (uint32_t)h[13] << 16 | (uint32_t)h[14] << 8 | h[15];
}

static void commit_rows(struct fixture *f, int n)
{
    static int next;
    for (int i = 0; i < n; i++) {
        char sql[128];
        snprintf(sql, sizeof(sql), "INSERT INTO t(k, b) VALUES ('r%d', randomblob(3000))", next++);
        assert_int_equal(f->drv->begin(f->db, true), SQL_OK);
        assert_int_equal(f->drv->exec(f->db, sql), SQL_OK);
        assert_int_equal(f->drv->commit(f->db), SQL_OK);
    }
}

struct copy_conns {
    struct sql_db *pin, *copy;
};

static void open_copy_conns(struct fixture *f, struct copy_conns *cc)
{
    struct err e = {0};
    assert_int_equal(f->drv->exec(f->db, "PRAGMA journal_mode = WAL"), SQL_OK);
    assert_int_equal(f->drv->open(f->target, &cc->pin, &e), 0);
    assert_int_equal(f->drv->open(f->target, &cc->copy, &e), 0);
}

static void close_copy_conns(struct fixture *f, struct copy_conns *cc)
{
    f->drv->close(cc->pin);
    f->drv->close(cc->copy);
}

/* A pin that found part of the log not copied: a copy stops at its snapshot, and while it
 * is open a write that finds the log copied to its end cannot start it over. */
static void test_sqlite_log_copy_stops_at_the_pin(void **state)
{
    struct fixture *f = *state;
    const struct sql_driver *drv = f->drv;
    struct copy_conns cc;
    open_copy_conns(f, &cc);
    commit_rows(f, 5);
    uint64_t n_commits = drv->log_commits(f->db);
    assert_true(n_commits >= 5);
    int64_t at_pin = drv->log_pages(f->db);
    assert_true(at_pin > 0);
    assert_int_equal(drv->pin(cc.pin, true), SQL_OK);
    commit_rows(f, 3);
    assert_int_equal(drv->log_commits(f->db), n_commits + 3);
    int64_t n_copied = 0, n_log = 0;
    assert_int_equal(drv->copy_log(cc.copy, false, &n_copied, &n_log), SQL_OK);
    assert_int_equal(n_log, drv->log_pages(f->db));
    assert_true(n_log > at_pin);
    assert_int_equal(n_copied, at_pin); /* up to the pin's snapshot, not past it */

    /* Copied to the end under the pin, then a write: the log is not started over. */
    assert_int_equal(drv->pin(cc.pin, false), SQL_OK);
    assert_int_equal(drv->pin(cc.pin, true), SQL_OK);
    assert_int_equal(drv->copy_log(cc.copy, true, &n_copied, &n_log), SQL_OK);
    assert_int_equal(n_copied, n_log);
    uint32_t restarts = log_restarts(f->target);
    commit_rows(f, 1);
    assert_int_equal(log_restarts(f->target), restarts);
    /* Without the pin, the same steps start it over. */
    assert_int_equal(drv->pin(cc.pin, false), SQL_OK);
    assert_int_equal(drv->copy_log(cc.copy, true, &n_copied, &n_log), SQL_OK);
    assert_int_equal(n_copied, n_log);
    commit_rows(f, 1);
    assert_int_equal(log_restarts(f->target), restarts + 1);
    close_copy_conns(f, &cc);
}

/* A pin that found the log copied to its end: the next write starts the log over (the
 * pin reads the database file alone), and after it no copy copies anything while the pin
 * is open, so the log cannot be copied to its end again. */
static void test_sqlite_log_copy_after_a_restart_copies_nothing(void **state)
{
    struct fixture *f = *state;
    const struct sql_driver *drv = f->drv;
    struct copy_conns cc;
    open_copy_conns(f, &cc);
    commit_rows(f, 5);
    int64_t n_copied = 0, n_log = 0;
    assert_int_equal(drv->copy_log(cc.copy, true, &n_copied, &n_log), SQL_OK);
    assert_true(n_log > 0);
    assert_int_equal(n_copied, n_log);
    uint32_t restarts = log_restarts(f->target);
    assert_int_equal(drv->pin(cc.pin, true), SQL_OK);
    commit_rows(f, 2);
    assert_int_equal(log_restarts(f->target), restarts + 1);
    assert_int_equal(drv->copy_log(cc.copy, false, &n_copied, &n_log), SQL_OK);
    assert_true(n_log > 0);
    assert_int_equal(n_copied, 0);
    assert_int_equal(drv->pin(cc.pin, false), SQL_OK);
    close_copy_conns(f, &cc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_bind_and_read_each_type, setup_sqlite, teardown),
        cmocka_unit_test_setup_teardown(test_statements_run_in_any_order, setup_sqlite, teardown),
        cmocka_unit_test_setup_teardown(test_transactions, setup_sqlite, teardown),
        cmocka_unit_test_setup_teardown(test_errors_map_into_err, setup_sqlite, teardown),
        cmocka_unit_test_setup_teardown(test_sqlite_log_copy_stops_at_the_pin, setup_sqlite,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_sqlite_log_copy_after_a_restart_copies_nothing,
                                        setup_sqlite, teardown),
    };
    int failed = cmocka_run_group_tests_name("sqlite", tests, NULL, NULL);
    if (!pg_reachable())
        return failed;
    const struct CMUnitTest pg_tests[] = {
        cmocka_unit_test_setup_teardown(test_bind_and_read_each_type, setup_pg, teardown),
        cmocka_unit_test_setup_teardown(test_statements_run_in_any_order, setup_pg, teardown),
        cmocka_unit_test_setup_teardown(test_transactions, setup_pg, teardown),
        cmocka_unit_test_setup_teardown(test_errors_map_into_err, setup_pg, teardown),
        cmocka_unit_test_setup_teardown(test_pg_specifics, setup_pg, teardown),
        cmocka_unit_test_setup_teardown(test_pg_session_bounds, setup_pg, teardown),
        cmocka_unit_test_setup_teardown(test_pg_unbounded_for_migrations, setup_pg, teardown),
    };
    return failed + cmocka_run_group_tests_name("postgres", pg_tests, NULL, NULL);
}
