/* Unit tests for login_limit.c: the three failed-login budgets, Retry-After values,
 * forgiveness on success, known sources exempt from the per-identity budget, bounded
 * memory under many names, and the source key of IPv4 and IPv6 addresses. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

/* cmocka.h needs the four headers above first. */
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "login_limit.h"

#define T 30000 /* interval of the tests' limits: 30 s */

/* burst 5: five wrong passwords, then 429 for one interval, then one more. */
static void test_pair_budget(void **state)
{
    (void)state;
    struct login_limit *l = login_limit_new(5, T, 64, 1);
    int64_t now = 1000000;
    for (int i = 0; i < 5; i++) {
        assert_int_equal(login_limit_check(l, "10.0.0.1", "alice", true, now), 0);
        login_limit_failed(l, "10.0.0.1", "alice", true, now);
    }
    assert_int_equal(login_limit_check(l, "10.0.0.1", "alice", true, now), T);
    assert_int_equal(login_limit_check(l, "10.0.0.1", "alice", true, now + 1000), T - 1000);
    /* other sources and other identities are not affected */
    assert_int_equal(login_limit_check(l, "10.0.0.2", "alice", true, now), 0);
    assert_int_equal(login_limit_check(l, "10.0.0.1", "bob", true, now), 0);
    /* one more attempt per interval */
    assert_int_equal(login_limit_check(l, "10.0.0.1", "alice", true, now + T), 0);
    login_limit_failed(l, "10.0.0.1", "alice", true, now + T);
    assert_int_equal(login_limit_check(l, "10.0.0.1", "alice", true, now + T), T);
    /* and the full burst once enough time has passed */
    now += 10 * T;
    for (int i = 0; i < 5; i++) {
        assert_int_equal(login_limit_check(l, "10.0.0.1", "alice", true, now), 0);
        login_limit_failed(l, "10.0.0.1", "alice", true, now);
    }
    assert_true(login_limit_check(l, "10.0.0.1", "alice", true, now) > 0);
    login_limit_free(l);
}

/* Spraying: one source, a new name each time, hits the source budget (4 x burst). */
static void test_source_budget(void **state)
{
    (void)state;
    struct login_limit *l = login_limit_new(5, T, 1024, 2);
    int64_t now = 1000000;
    char name[32];
    int allowed = 0;
    for (int i = 0; i < 100; i++) {
        snprintf(name, sizeof(name), "user%d", i);
        if (login_limit_check(l, "10.0.0.9", name, true, now) != 0)
            break;
        login_limit_failed(l, "10.0.0.9", name, true, now);
        allowed++;
    }
    assert_int_equal(allowed, 20);
    assert_int_equal(login_limit_check(l, "10.0.0.9", "fresh", true, now), T / 4);
    assert_int_equal(login_limit_check(l, "10.0.0.10", "fresh", true, now), 0);
    login_limit_free(l);
}

/* Many sources guessing one identity hit its budget (10 x burst); sources that logged in
 * as it before are exempt, new ones wait; other identities are untouched. */
static void test_identity_budget_and_known_sources(void **state)
{
    (void)state;
    struct login_limit *l = login_limit_new(5, T, 1024, 3);
    int64_t now = 1000000;
    login_limit_succeeded(l, "192.168.1.7", "alice", now - 5000); /* alice's usual address */
    char src[32];
    int failures = 0;
    for (int s = 0; s < 20 && failures < 1000; s++) {
        snprintf(src, sizeof(src), "10.1.0.%d", s);
        while (login_limit_check(l, src, "alice", true, now) == 0) {
            login_limit_failed(l, src, "alice", true, now);
            failures++;
        }
    }
    assert_int_equal(failures, 50);
    assert_int_equal(login_limit_check(l, "172.16.0.1", "alice", true, now), T / 10);
    assert_int_equal(login_limit_check(l, "192.168.1.7", "alice", true, now), 0);
    assert_int_equal(login_limit_check(l, "172.16.0.1", "bob", true, now), 0);
    /* the peer credential has no per-identity budget */
    assert_int_equal(login_limit_check(l, "172.16.0.1", "alice", false, now), 0);
    /* known: a success within LOGIN_LIMIT_KNOWN_MS, for that identity only */
    assert_true(login_limit_is_known(l, "192.168.1.7", "alice", now));
    assert_false(login_limit_is_known(l, "192.168.1.7", "bob", now));
    assert_false(login_limit_is_known(l, "10.1.0.3", "alice", now));
    assert_false(login_limit_is_known(l, "192.168.1.7", "alice", now + LOGIN_LIMIT_KNOWN_MS));
    login_limit_free(l);
}

/* A success forgives the failures of that (source, identity), not the source's. */
static void test_success_forgives(void **state)
{
    (void)state;
    struct login_limit *l = login_limit_new(3, T, 64, 4);
    int64_t now = 5000000;
    for (int i = 0; i < 3; i++)
        login_limit_failed(l, "10.0.0.1", "alice", true, now);
    assert_true(login_limit_check(l, "10.0.0.1", "alice", true, now) > 0);
    login_limit_succeeded(l, "10.0.0.1", "alice", now);
    assert_int_equal(login_limit_check(l, "10.0.0.1", "alice", true, now), 0);
    login_limit_free(l);
}

/* Memory is bounded: thousands of names through a table of 16 entries; the most
 * penalised entries are kept, and the source budget still holds. */
static void test_bounded_table(void **state)
{
    (void)state;
    struct login_limit *l = login_limit_new(2, T, 16, 5);
    int64_t now = 1000000;
    for (int i = 0; i < 3; i++)
        login_limit_failed(l, "10.0.0.1", "victim", true, now);
    char name[32];
    for (int i = 0; i < 5000; i++) {
        snprintf(name, sizeof(name), "n%d", i);
        login_limit_failed(l, "10.9.9.9", name, true, now + i);
    }
    /* the most penalised pair is the last to go: still locked (3 T ahead, T tolerated) */
    assert_int_equal(login_limit_check(l, "10.0.0.1", "victim", true, now + 5000), 2 * T - 5000);
    /* and the spraying source is limited whatever the table forgot */
    assert_true(login_limit_check(l, "10.9.9.9", "new", true, now + 5000) > 0);
    login_limit_free(l);
}

static void test_source_keys(void **state)
{
    (void)state;
    static const struct {
        const char *addr, *key;
    } cases[] = {
        {"127.0.0.1", "127.0.0.1"},
        {"::ffff:10.1.2.3", "10.1.2.3"},
        {"2001:db8:1:2:aaaa:bbbb:cccc:dddd", "2001:db8:1:2::/64"},
        {"2001:db8:1:2::1", "2001:db8:1:2::/64"},
        {"::1", "::/64"},
        {"", ""},
    };
    char out[LOGIN_LIMIT_SOURCE_MAX];
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        login_limit_source(cases[i].addr, out);
        assert_string_equal(out, cases[i].key);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pair_budget),
        cmocka_unit_test(test_source_budget),
        cmocka_unit_test(test_identity_budget_and_known_sources),
        cmocka_unit_test(test_success_forgives),
        cmocka_unit_test(test_bounded_table),
        cmocka_unit_test(test_source_keys),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
