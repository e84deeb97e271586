/* hlc: monotonic ticks, observing remote clocks, and the LWW order. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "hlc.h"

static void test_tick_follows_wall_clock(void **state)
{
    (void)state;
    uint64_t t = hlc_tick(0, 1000);
    assert_int_equal(hlc_wall_ms(t), 1000);
    assert_int_equal(t & HLC_LOGICAL_MASK, 0);
    uint64_t u = hlc_tick(t, 2000);
    assert_int_equal(hlc_wall_ms(u), 2000);
}

static void test_tick_never_goes_back(void **state)
{
    (void)state;
    uint64_t t = hlc_tick(0, 5000);
    /* The wall clock steps back: the clock keeps counting logically. */
    uint64_t u = hlc_tick(t, 4000);
    assert_true(u > t);
    assert_int_equal(hlc_wall_ms(u), 5000);
    uint64_t v = hlc_tick(u, 5000);
    assert_true(v > u);
}

static void test_observe_moves_past_remote(void **state)
{
    (void)state;
    uint64_t local = hlc_tick(0, 1000);
    uint64_t remote = hlc_tick(0, 9000);
    uint64_t after = hlc_observe(local, remote, 1001);
    assert_true(after > remote);
    assert_true(after > local);
    /* A later local tick stays after the remote event even with a slow wall clock. */
    assert_true(hlc_tick(after, 1002) > remote);
}

static void test_lww_total_order(void **state)
{
    (void)state;
    assert_true(hlc_lww_wins(10, "a", 9, "z"));
    assert_false(hlc_lww_wins(9, "z", 10, "a"));
    /* Ties go to the greater region name, the same way everywhere. */
    assert_true(hlc_lww_wins(10, "westeurope", 10, "eastus"));
    assert_false(hlc_lww_wins(10, "eastus", 10, "westeurope"));
    assert_false(hlc_lww_wins(10, "eastus", 10, "eastus"));
}

/* Property: for random pairs exactly one of (a beats b), (b beats a), (a == b). */
static void test_lww_antisymmetric_random(void **state)
{
    (void)state;
    static const char *regions[] = {"a", "b", "eastus", "westeurope"};
    unsigned seed = 12345;
    for (int i = 0; i < 10000; i++) {
        uint64_t ha = (uint64_t)(rand_r(&seed) % 4), hb = (uint64_t)(rand_r(&seed) % 4);
        const char *ra = regions[rand_r(&seed) % 4], *rb = regions[rand_r(&seed) % 4];
        bool ab = hlc_lww_wins(ha, ra, hb, rb), ba = hlc_lww_wins(hb, rb, ha, ra);
        bool same = ha == hb && ra == rb;
        assert_int_equal((int)ab + (int)ba + (int)same, 1);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tick_follows_wall_clock),
        cmocka_unit_test(test_tick_never_goes_back),
        cmocka_unit_test(test_observe_moves_past_remote),
        cmocka_unit_test(test_lww_total_order),
        cmocka_unit_test(test_lww_antisymmetric_random),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
