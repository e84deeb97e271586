/* Unit tests for audit_agg.c: one row per (source, actor, action) per window with a
 * count, flushes at most once per interval and all on demand, folding of many actors of
 * one source and of many keys, tickets of rows whose key was reused, and no count lost
 * when a key makes room for another. A fake store (rows in an array) plays the caller. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

/* cmocka.h needs the four headers above first. */
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "audit_agg.h"

#define MAX_ROWS 4096

/* What the store would hold. */
struct row {
    char source[LOGIN_LIMIT_SOURCE_MAX];
    char actor[AUTH_NAME_MAX + 1];
    char action[32];
    int64_t count;
    int64_t last_ms;
};

struct store {
    struct row rows[MAX_ROWS];
    int64_t n;
};

/* One refusal through the aggregator, as authz.c does it: insert a row when told. */
static void refuse(struct audit_agg *a, struct store *st, const char *source, const char *actor,
                   const char *action, int64_t now_ms)
{
    struct audit_agg_note note;
    audit_agg_note(a, source, actor, action, now_ms, &note);
    if (!note.is_new_row)
        return;
    assert_true(st->n < MAX_ROWS);
    struct row *r = &st->rows[st->n++];
    snprintf(r->source, sizeof(r->source), "%s", note.is_any_source ? AUDIT_AGG_ANY : source);
    snprintf(r->actor, sizeof(r->actor), "%s", note.actor);
    snprintf(r->action, sizeof(r->action), "%s", action);
    r->count = 1;
    r->last_ms = now_ms;
    audit_agg_inserted(a, note.ticket, st->n); /* row ids are 1-based indexes */
}

/* Writes what is due; returns how many counts were written. */
static size_t flush(struct audit_agg *a, struct store *st, int64_t now_ms, bool is_all)
{
    struct audit_agg_flush due[8];
    size_t total = 0, n;
    do {
        n = audit_agg_due(a, now_ms, is_all, due, 8);
        for (size_t i = 0; i < n; i++) {
            struct row *r = &st->rows[due[i].row_id - 1];
            if (due[i].count > r->count)
                r->count = due[i].count;
            if (due[i].last_ms > r->last_ms)
                r->last_ms = due[i].last_ms;
        }
        total += n;
    } while (n == 8);
    return total;
}

static int64_t total_count(const struct store *st)
{
    int64_t sum = 0;
    for (int64_t i = 0; i < st->n; i++)
        sum += st->rows[i].count;
    return sum;
}

/* 10 000 bad headers from one source in 10 s: one row, count 10 000. */
static void test_one_row_per_key_and_window(void **state)
{
    (void)state;
    static struct store st;
    memset(&st, 0, sizeof(st));
    struct audit_agg *a = audit_agg_new(256, 7);
    int64_t t0 = 1000000;
    for (int i = 0; i < 10000; i++)
        refuse(a, &st, "10.0.0.1", "anonymous", "auth.failed", t0 + i);
    assert_int_equal(st.n, 1);
    flush(a, &st, t0 + 10000, true);
    assert_int_equal(st.rows[0].count, 10000);
    assert_int_equal(st.rows[0].last_ms, t0 + 9999);
    /* another action or actor is another row; a new window is a new row */
    refuse(a, &st, "10.0.0.1", "anonymous", "login.failed", t0 + 10000);
    refuse(a, &st, "10.0.0.1", "alice", "auth.failed", t0 + 10000);
    refuse(a, &st, "10.0.0.1", "anonymous", "auth.failed", t0 + AUDIT_AGG_WINDOW_MS);
    assert_int_equal(st.n, 4);
    audit_agg_free(a);
}

/* Counts are written at most once per interval, and all of them on demand. */
static void test_flush_interval(void **state)
{
    (void)state;
    static struct store st;
    memset(&st, 0, sizeof(st));
    struct audit_agg *a = audit_agg_new(256, 8);
    int64_t t0 = 1000000;
    refuse(a, &st, "10.0.0.1", "bob", "auth.failed", t0);
    refuse(a, &st, "10.0.0.1", "bob", "auth.failed", t0 + 1);
    assert_int_equal(flush(a, &st, t0 + 2, false), 1);
    assert_int_equal(st.rows[0].count, 2);
    refuse(a, &st, "10.0.0.1", "bob", "auth.failed", t0 + 3);
    assert_int_equal(flush(a, &st, t0 + 4, false), 0); /* flushed 2 ms ago */
    assert_int_equal(flush(a, &st, t0 + 2 + AUDIT_AGG_FLUSH_MS, false), 1);
    assert_int_equal(st.rows[0].count, 3);
    refuse(a, &st, "10.0.0.1", "bob", "auth.failed", t0 + 2 + AUDIT_AGG_FLUSH_MS);
    assert_int_equal(flush(a, &st, t0 + 3 + AUDIT_AGG_FLUSH_MS, true), 1);
    assert_int_equal(st.rows[0].count, 4);
    assert_int_equal(flush(a, &st, t0 + 4 + AUDIT_AGG_FLUSH_MS, true), 0); /* nothing new */
    audit_agg_free(a);
}

/* A source rotating names gets AUDIT_AGG_ACTORS_PER_SOURCE rows, then one row "*". */
static void test_many_actors_fold(void **state)
{
    (void)state;
    static struct store st;
    memset(&st, 0, sizeof(st));
    struct audit_agg *a = audit_agg_new(1024, 9);
    int64_t t0 = 1000000;
    char name[32];
    for (int i = 0; i < 500; i++) {
        snprintf(name, sizeof(name), "user%d", i);
        refuse(a, &st, "10.0.0.1", name, "login.failed", t0 + i);
    }
    assert_int_equal(st.n, AUDIT_AGG_ACTORS_PER_SOURCE + 1);
    assert_string_equal(st.rows[st.n - 1].actor, AUDIT_AGG_ANY);
    assert_string_equal(st.rows[st.n - 1].source, "10.0.0.1");
    flush(a, &st, t0 + 1000, true);
    assert_int_equal(total_count(&st), 500);
    /* the names that have their own row keep counting there */
    refuse(a, &st, "10.0.0.1", "user0", "login.failed", t0 + 1001);
    flush(a, &st, t0 + 1002, true);
    assert_int_equal(st.rows[0].count, 2);
    audit_agg_free(a);
}

/* Rotating sources: at most AUDIT_AGG_ROWS_PER_WINDOW rows per window, then one row per
 * action with source and actor "*"; and no refusal is lost although the table is far
 * smaller than the number of keys. */
static void test_many_sources_fold_and_nothing_lost(void **state)
{
    (void)state;
    static struct store st;
    memset(&st, 0, sizeof(st));
    struct audit_agg *a = audit_agg_new(64, 10);
    int64_t t0 = 1000000;
    char src[32];
    int n = 0;
    for (int i = 0; i < 3000; i++) {
        snprintf(src, sizeof(src), "10.%d.%d.%d", i / 65536, (i / 256) % 256, i % 256);
        refuse(a, &st, src, "anonymous", "auth.failed", t0 + i / 100);
        refuse(a, &st, src, "anonymous", "auth.failed", t0 + i / 100);
        n += 2;
        flush(a, &st, t0 + i / 100, false);
    }
    flush(a, &st, t0 + 100, true);
    assert_true(st.n <= AUDIT_AGG_ROWS_PER_WINDOW + 1);
    assert_string_equal(st.rows[st.n - 1].source, AUDIT_AGG_ANY);
    assert_string_equal(st.rows[st.n - 1].actor, AUDIT_AGG_ANY);
    assert_int_equal(total_count(&st), n);
    audit_agg_free(a);
}

/* A failed insert: the window's next refusal starts a row again; a stale ticket (its key
 * was reused meanwhile) changes nothing. */
static void test_failed_insert_and_stale_ticket(void **state)
{
    (void)state;
    struct audit_agg *a = audit_agg_new(8, 11);
    struct audit_agg_note n1, n2;
    audit_agg_note(a, "10.0.0.1", "x", "auth.failed", 1000, &n1);
    assert_true(n1.is_new_row);
    audit_agg_inserted(a, n1.ticket, -1);
    audit_agg_note(a, "10.0.0.1", "x", "auth.failed", 1001, &n2);
    assert_true(n2.is_new_row);
    assert_true(n2.ticket != n1.ticket);
    audit_agg_inserted(a, n1.ticket, 99); /* late, stale */
    audit_agg_inserted(a, n2.ticket, 5);
    struct audit_agg_note n3;
    audit_agg_note(a, "10.0.0.1", "x", "auth.failed", 1002, &n3);
    assert_false(n3.is_new_row);
    struct audit_agg_flush due[4];
    size_t k = audit_agg_due(a, 1003, true, due, 4);
    assert_int_equal(k, 1);
    assert_int_equal(due[0].row_id, 5);
    assert_int_equal(due[0].count, 2);
    audit_agg_free(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_one_row_per_key_and_window),
        cmocka_unit_test(test_flush_interval),
        cmocka_unit_test(test_many_actors_fold),
        cmocka_unit_test(test_many_sources_fold_and_nothing_lost),
        cmocka_unit_test(test_failed_insert_and_stale_ticket),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
