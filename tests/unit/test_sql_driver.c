/* Contract tests of the SQL driver seam (sql_driver.h): what the metadata logic relies on
 * from a driver, each test run with a driver's setup (setup_sqlite today; the PostgreSQL
 * driver adds its setup, with its target, and runs the same tests). Binding each format, NULLs,
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

static int teardown(void **state)
{
    struct fixture *f = *state;
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_bind_and_read_each_type, setup_sqlite, teardown),
        cmocka_unit_test_setup_teardown(test_transactions, setup_sqlite, teardown),
        cmocka_unit_test_setup_teardown(test_errors_map_into_err, setup_sqlite, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
