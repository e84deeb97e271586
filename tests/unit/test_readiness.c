/* Unit tests for readiness.c (/readyz): a store that fails is named, the probes run at
 * most once per cache period however many callers ask, a probe that hangs is answered
 * "no answer" within the timeout, naming the store it hangs on, and an answer older than
 * a cache period and a timeout is not served. Fake stores: only the
 * ops readiness calls are set. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

/* cmocka.h needs the four headers above first. */
#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

#include "readiness.h"
#include "util.h"

static atomic_int pings, checks;
static atomic_bool is_ms_down, is_bs_down, is_ms_hanging;

static int fake_ping(struct metastore *ms, struct err *e)
{
    (void)ms;
    atomic_fetch_add(&pings, 1);
    while (atomic_load(&is_ms_hanging))
        usleep(1000);
    if (atomic_load(&is_ms_down))
        return err_set(e, ERR_UNAVAILABLE, "database unavailable");
    return 0;
}

static int fake_check(struct blobstore *bs, long timeout_ms, struct err *e)
{
    (void)bs;
    assert_int_equal(timeout_ms, 300);
    atomic_fetch_add(&checks, 1);
    if (atomic_load(&is_bs_down))
        return err_set(e, ERR_UNAVAILABLE, "s3: the bucket did not answer");
    return 0;
}

static const struct metastore_ops ms_ops = {.name = "fake", .ping = fake_ping};
static const struct blobstore_ops bs_ops = {.name = "fake", .check = fake_check};
static struct metastore ms = {.ops = &ms_ops};
static struct blobstore bs = {.ops = &bs_ops};

static int reset(void **state)
{
    (void)state;
    atomic_store(&pings, 0);
    atomic_store(&checks, 0);
    atomic_store(&is_ms_down, false);
    atomic_store(&is_bs_down, false);
    atomic_store(&is_ms_hanging, false);
    return 0;
}

/* The answer of a probe that started after the caller's last change (a caller gets the
 * last answer while a new probe runs): two more finished probes. */
static bool fresh_check(struct readiness *r, struct readiness_result *res)
{
    uint64_t n = readiness_probes(r);
    while (readiness_probes(r) < n + 2) {
        readiness_check(r, res);
        usleep(1000);
    }
    return readiness_check(r, res);
}

static void test_ready_and_failures_named(void **state)
{
    (void)state;
    struct readiness *r = readiness_new(&ms, &bs, 0, 300); /* no cache: every call asks */
    struct readiness_result res;
    assert_true(readiness_check(r, &res)); /* the first answer is waited for */
    assert_true(res.is_metastore_ok && res.is_blobstore_ok);
    assert_string_equal(res.metastore_error, "");

    atomic_store(&is_bs_down, true);
    assert_false(fresh_check(r, &res));
    assert_true(res.is_metastore_ok);
    assert_false(res.is_blobstore_ok);
    assert_string_equal(res.blobstore_error, "s3: the bucket did not answer");

    atomic_store(&is_bs_down, false);
    atomic_store(&is_ms_down, true);
    assert_false(fresh_check(r, &res));
    assert_false(res.is_metastore_ok);
    assert_true(res.is_blobstore_ok);
    assert_string_equal(res.metastore_error, "database unavailable");

    atomic_store(&is_ms_down, false);
    assert_true(fresh_check(r, &res));
    readiness_free(r);
}

struct caller {
    struct readiness *r;
    int ready;
};

static void *call_many(void *arg)
{
    struct caller *c = arg;
    struct readiness_result res;
    for (int i = 0; i < 200; i++)
        c->ready += readiness_check(c->r, &res);
    return NULL;
}

/* 8 threads x 200 calls within one long cache period: one probe of each store. */
static void test_cache_bounds_the_probes(void **state)
{
    (void)state;
    struct readiness *r = readiness_new(&ms, &bs, 60000, 300);
    pthread_t t[8];
    struct caller c[8];
    for (int i = 0; i < 8; i++) {
        c[i] = (struct caller){.r = r};
        assert_int_equal(pthread_create(&t[i], NULL, call_many, &c[i]), 0);
    }
    for (int i = 0; i < 8; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(c[i].ready, 200);
    }
    assert_int_equal(atomic_load(&pings), 1);
    assert_int_equal(atomic_load(&checks), 1);
    assert_int_equal(readiness_probes(r), 1);
    /* A failure is cached the same way: the store is not asked again within the period. */
    readiness_free(r);
    r = readiness_new(&ms, &bs, 60000, 300);
    atomic_store(&is_ms_down, true);
    struct readiness_result res;
    for (int i = 0; i < 50; i++)
        assert_false(readiness_check(r, &res));
    assert_int_equal(atomic_load(&pings), 2);
    readiness_free(r);
}

/* A database that never answers: each caller is told so within the timeout, and callers
 * that come while it still hangs are answered at once (no queue of waits). */
static void test_hanging_probe_is_bounded(void **state)
{
    (void)state;
    struct readiness *r = readiness_new(&ms, &bs, 0, 300);
    atomic_store(&is_ms_hanging, true);
    struct readiness_result res;
    int64_t t0 = util_mono_ns();
    assert_false(readiness_check(r, &res));
    int64_t waited_ms = (util_mono_ns() - t0) / 1000000;
    assert_true(waited_ms >= 250 && waited_ms < 2000);
    assert_false(res.is_metastore_ok);
    assert_string_equal(res.metastore_error, "no answer within 300 ms");
    t0 = util_mono_ns();
    assert_false(readiness_check(r, &res));
    assert_true((util_mono_ns() - t0) / 1000000 < 100);
    assert_int_equal(atomic_load(&pings), 1); /* still the one probe */
    atomic_store(&is_ms_hanging, false);
    while (readiness_probes(r) == 0)
        usleep(1000);
    assert_true(readiness_check(r, &res));
    readiness_free(r);
}

/* Past the first answer a caller never waits: while a probe hangs it gets the last answer,
 * until the probe has run past the timeout; then the store is reported as not answering. */
static void test_callers_do_not_wait_on_a_probe(void **state)
{
    (void)state;
    struct readiness *r = readiness_new(&ms, &bs, 0, 300);
    struct readiness_result res;
    assert_true(readiness_check(r, &res));
    atomic_store(&is_ms_hanging, true);
    int64_t t0 = util_mono_ns();
    assert_true(readiness_check(r, &res)); /* asks for a probe, gets the last answer */
    assert_true(readiness_check(r, &res));
    assert_true((util_mono_ns() - t0) / 1000000 < 100);
    usleep(400 * 1000);
    t0 = util_mono_ns();
    assert_false(readiness_check(r, &res));
    assert_true((util_mono_ns() - t0) / 1000000 < 100);
    assert_string_equal(res.metastore_error, "no answer within 300 ms");
    atomic_store(&is_ms_hanging, false);
    readiness_free(r);
}

/* A caller after a quiet spell longer than a cache period and a timeout gets the stores as
 * they are now, not the answer of the probe the previous caller started (a load balancer
 * that checks every 10 s was told "ready" for a database down since the check before, and
 * "unavailable" for one back since). Callers within the spell still never wait (above). */
static void test_an_answer_older_than_the_bound_is_not_served(void **state)
{
    (void)state;
    struct readiness *r = readiness_new(&ms, &bs, 100, 300);
    struct readiness_result res;
    assert_true(readiness_check(r, &res));
    atomic_store(&is_ms_down, true);
    usleep(500 * 1000); /* quiet: nobody asks for 100 + 300 ms and more */
    int64_t t0 = util_mono_ns();
    assert_false(readiness_check(r, &res));
    assert_true((util_mono_ns() - t0) / 1000000 < 300);
    assert_string_equal(res.metastore_error, "database unavailable");
    assert_int_equal(atomic_load(&pings), 2);

    atomic_store(&is_ms_down, false);
    usleep(500 * 1000);
    assert_true(readiness_check(r, &res));
    assert_int_equal(atomic_load(&pings), 3);
    readiness_free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_ready_and_failures_named, reset),
        cmocka_unit_test_setup(test_cache_bounds_the_probes, reset),
        cmocka_unit_test_setup(test_hanging_probe_is_bounded, reset),
        cmocka_unit_test_setup(test_callers_do_not_wait_on_a_probe, reset),
        cmocka_unit_test_setup(test_an_answer_older_than_the_bound_is_not_served, reset),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
