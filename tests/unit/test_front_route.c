/* Unit tests for front/route.c: network parsing and matching, the region choice (pinned,
 * client network, health, round trip) and the upload pin in targets and Locations. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

/* cmocka.h needs the four headers above first. */
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "route.h"

static void test_parse_and_contains(void **state)
{
    static const struct {
        const char *cidr;
        const char *addr;
        int want_parse;
        bool want_contains;
    } cases[] = {
        {"10.0.0.0/8", "10.1.2.3", 0, true},
        {"10.0.0.0/8", "11.1.2.3", 0, false},
        {"10.1.2.3/16", "10.1.200.1", 0, true},   /* host bits cleared */
        {"127.0.4.0/24", "127.0.4.1", 0, true},
        {"127.0.4.0/24", "127.0.5.1", 0, false},
        {"127.0.4.1", "127.0.4.1", 0, true},      /* bare address: /32 */
        {"127.0.4.1", "127.0.4.2", 0, false},
        {"10.0.0.0/9", "10.127.255.255", 0, true},
        {"10.0.0.0/9", "10.128.0.0", 0, false},
        {"0.0.0.0/0", "192.168.1.1", 0, true},
        {"0.0.0.0/0", "::1", 0, false},           /* families do not mix */
        {"fd00::/8", "fd12::1", 0, true},
        {"fd00::/8", "fe80::1", 0, false},
        {"10.0.0.0/8", "::ffff:10.9.9.9", 0, true}, /* IPv4-mapped */
        {"10.0.0.0/8", "not-an-address", 0, false},
        {"10.0.0.0/33", NULL, -1, false},
        {"10.0.0/8", NULL, -1, false},
        {"/8", NULL, -1, false},
        {"10.0.0.0/x", NULL, -1, false},
        {"fd00::/129", NULL, -1, false},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct route_net net;
        struct err e = {0};
        int rc = route_parse_net(cases[i].cidr, &net, &e);
        if (rc != cases[i].want_parse)
            fail_msg("route_parse_net(\"%s\") = %d, want %d", cases[i].cidr, rc,
                     cases[i].want_parse);
        if (rc == 0 && route_net_contains(&net, cases[i].addr) != cases[i].want_contains)
            fail_msg("\"%s\" contains \"%s\": want %d", cases[i].cidr, cases[i].addr,
                     cases[i].want_contains);
    }
}

static struct route_net net_of(const char *cidr, size_t region)
{
    struct route_net n;
    struct err e = {0};
    assert_int_equal(route_parse_net(cidr, &n, &e), 0);
    n.region = region;
    return n;
}

static void test_choose(void **state)
{
    (void)state;
    struct route_net nets[] = {
        net_of("127.0.4.0/24", 1),    /* r2 */
        net_of("127.0.4.128/25", 2),  /* r3: more specific */
        net_of("10.0.0.0/8", 0),      /* r1 */
    };
    struct route_region all_up[] = {{"r1", true, 5}, {"r2", true, 1}, {"r3", true, 9}};
    struct route_region r3_down[] = {{"r1", true, 5}, {"r2", true, 1}, {"r3", false, 9}};
    struct route_region r2_r3_down[] = {{"r1", true, 5}, {"r2", false, 1}, {"r3", false, 9}};
    struct route_region none_up[] = {{"r1", false, 5}, {"r2", false, 1}, {"r3", false, 9}};
    struct route_region unmeasured[] = {{"r1", true, -1}, {"r2", true, 7}, {"r3", true, -1}};
    const struct {
        const struct route_region *regions;
        const char *client;
        const char *pinned;
        int want;
    } cases[] = {
        {all_up, "127.0.4.1", NULL, 1},      /* the client's network */
        {all_up, "127.0.4.200", NULL, 2},    /* the most specific network wins */
        {r3_down, "127.0.4.200", NULL, 1},   /* ... while healthy; then the wider one */
        {r2_r3_down, "127.0.4.200", NULL, 0}, /* no network healthy: lowest RTT */
        {all_up, "192.168.0.1", NULL, 1},    /* no network: lowest RTT (r2, 1 ms) */
        {r3_down, "10.2.3.4", NULL, 0},
        {unmeasured, "192.168.0.1", NULL, 1}, /* measured before unmeasured */
        {none_up, "127.0.4.1", NULL, -1},
        {all_up, "127.0.4.1", "r3", 2},      /* an upload stays where it started */
        {none_up, "127.0.4.1", "r1", 0},     /* ... even when that region looks down */
        {all_up, "127.0.4.1", "nowhere", 1}, /* an unknown pin routes as usual */
        {all_up, "", NULL, 1},               /* unknown client address */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int got = route_choose(nets, 3, cases[i].regions, 3, cases[i].client, cases[i].pinned);
        if (got != cases[i].want)
            fail_msg("case %zu: route_choose(%s, pin %s) = %d, want %d", i, cases[i].client,
                     cases[i].pinned ? cases[i].pinned : "-", got, cases[i].want);
    }
}

static void test_strip_pin(void **state)
{
    static const struct {
        const char *in;
        const char *want;
    } cases[] = {
        {"/v2/a/blobs/uploads/x", "/v2/a/blobs/uploads/x"},
        {"/v2/a/blobs/uploads/x?_region=r1", "/v2/a/blobs/uploads/x"},
        {"/v2/a/blobs/uploads/x?_region=r1&digest=sha256:ab", "/v2/a/blobs/uploads/x?digest=sha256:ab"},
        {"/v2/a/blobs/uploads/x?digest=sha256:ab&_region=r1", "/v2/a/blobs/uploads/x?digest=sha256:ab"},
        {"/v2/a/blobs/uploads/x?a=1&_region=r1&b=2", "/v2/a/blobs/uploads/x?a=1&b=2"},
        {"/v2/a/blobs/uploads/x?_regionx=1", "/v2/a/blobs/uploads/x?_regionx=1"},
        {"/v2/a/blobs/uploads/x?_region", "/v2/a/blobs/uploads/x"},
        {"/v2/a/tags/list?n=10&&last=b", "/v2/a/tags/list?n=10&last=b"},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char out[256];
        assert_int_equal(route_strip_pin(cases[i].in, out, sizeof(out)), 0);
        assert_string_equal(out, cases[i].want);
    }
    char small[8];
    assert_int_equal(route_strip_pin("/v2/a/blobs/uploads/x", small, sizeof(small)), -1);
}

static void test_pin_location(void **state)
{
    char out[256];
    (void)state;
    assert_int_equal(route_pin_location("/v2/a/blobs/uploads/x", "r1", out, sizeof(out)), 0);
    assert_string_equal(out, "/v2/a/blobs/uploads/x?_region=r1");
    assert_int_equal(route_pin_location("/v2/a/blobs/uploads/x?state=s", "r2", out, sizeof(out)),
                     0);
    assert_string_equal(out, "/v2/a/blobs/uploads/x?state=s&_region=r2");
    /* A Location that already carries a pin (a region behind another front) gets ours. */
    assert_int_equal(route_pin_location("/v2/a/blobs/uploads/x?_region=r9", "r2", out,
                                        sizeof(out)), 0);
    assert_string_equal(out, "/v2/a/blobs/uploads/x?_region=r2");
    char small[16];
    assert_int_equal(route_pin_location("/v2/a/blobs/uploads/x", "r1", small, sizeof(small)),
                     -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_and_contains),
        cmocka_unit_test(test_choose),
        cmocka_unit_test(test_strip_pin),
        cmocka_unit_test(test_pin_location),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
