/* Unit tests for range.c: Range request parsing (RFC 9110 single byte ranges)
 * and upload Content-Range parsing, as tables of input and expected result. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

/* cmocka.h needs the four headers above first. */
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "range.h"

static void test_request_table(void **state)
{
    static const struct {
        const char *s;
        uint64_t size;
        enum range_result want;
        uint64_t start;
        uint64_t end;
    } cases[] = {
        /* int-range */
        {"bytes=0-99", 1000, RANGE_OK, 0, 99},
        {"bytes=0-0", 1000, RANGE_OK, 0, 0},
        {"bytes=10-20", 1000, RANGE_OK, 10, 20},
        {"bytes=999-999", 1000, RANGE_OK, 999, 999},
        {"bytes=0-999", 1000, RANGE_OK, 0, 999},
        /* last-pos clipped to size - 1 */
        {"bytes=0-1000", 1000, RANGE_OK, 0, 999},
        {"bytes=500-99999999999", 1000, RANGE_OK, 500, 999},
        {"bytes=500-99999999999999999999999999", 1000, RANGE_OK, 500, 999},
        /* open-ended */
        {"bytes=100-", 1000, RANGE_OK, 100, 999},
        {"bytes=0-", 1000, RANGE_OK, 0, 999},
        {"bytes=999-", 1000, RANGE_OK, 999, 999},
        /* suffix */
        {"bytes=-50", 1000, RANGE_OK, 950, 999},
        {"bytes=-1", 1000, RANGE_OK, 999, 999},
        {"bytes=-1000", 1000, RANGE_OK, 0, 999},
        {"bytes=-5000", 1000, RANGE_OK, 0, 999},
        {"bytes=-99999999999999999999999", 1000, RANGE_OK, 0, 999},
        {"bytes=-0", 1000, RANGE_UNSATISFIABLE, 0, 0},
        /* case-insensitive unit, surrounding whitespace */
        {"BYTES=1-2", 1000, RANGE_OK, 1, 2},
        {"Bytes=1-2", 1000, RANGE_OK, 1, 2},
        {"  bytes=1-2  ", 1000, RANGE_OK, 1, 2},
        {"bytes= 1-2", 1000, RANGE_OK, 1, 2},
        /* unsatisfiable */
        {"bytes=1000-", 1000, RANGE_UNSATISFIABLE, 0, 0},
        {"bytes=1000-2000", 1000, RANGE_UNSATISFIABLE, 0, 0},
        {"bytes=99999999999999999999999-", 1000, RANGE_UNSATISFIABLE, 0, 0},
        {"bytes=0-0", 0, RANGE_UNSATISFIABLE, 0, 0},
        {"bytes=0-", 0, RANGE_UNSATISFIABLE, 0, 0},
        {"bytes=-5", 0, RANGE_UNSATISFIABLE, 0, 0},
        /* last-pos < first-pos: 416, so a client with a bad resume offset hears of it */
        {"bytes=5-4", 1000, RANGE_UNSATISFIABLE, 0, 0},
        {"bytes=500-0", 2048, RANGE_UNSATISFIABLE, 0, 0},
        {"bytes=5-4", 0, RANGE_UNSATISFIABLE, 0, 0},
        /* malformed or multi-range: ignore */
        {"bytes=0-1,5-6", 1000, RANGE_IGNORE, 0, 0},
        {"bytes=0-1, 5-6", 1000, RANGE_IGNORE, 0, 0},
        {"bytes=-", 1000, RANGE_IGNORE, 0, 0},
        {"bytes=", 1000, RANGE_IGNORE, 0, 0},
        {"bytes", 1000, RANGE_IGNORE, 0, 0},
        {"", 1000, RANGE_IGNORE, 0, 0},
        {"bytes=a-b", 1000, RANGE_IGNORE, 0, 0},
        {"bytes=1-b", 1000, RANGE_IGNORE, 0, 0},
        {"bytes=-b", 1000, RANGE_IGNORE, 0, 0},
        {"bytes=+1-2", 1000, RANGE_IGNORE, 0, 0},
        {"bytes=1--2", 1000, RANGE_IGNORE, 0, 0},
        {"bytes=1-2-3", 1000, RANGE_IGNORE, 0, 0},
        {"bytes=1 - 2", 1000, RANGE_IGNORE, 0, 0},
        {"bytes=0x1-2", 1000, RANGE_IGNORE, 0, 0},
        {"bytes 0-1", 1000, RANGE_IGNORE, 0, 0},
        {"items=0-1", 1000, RANGE_IGNORE, 0, 0},
        {"bytesx=0-1", 1000, RANGE_IGNORE, 0, 0},
        {"0-1", 1000, RANGE_IGNORE, 0, 0},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint64_t start = 12345;
        uint64_t end = 54321;
        enum range_result got = range_parse_request(cases[i].s, cases[i].size, &start, &end);
        if (got != cases[i].want)
            fail_msg("range_parse_request(\"%s\", %llu) = %d, want %d", cases[i].s,
                     (unsigned long long)cases[i].size, got, cases[i].want);
        if (got == RANGE_OK) {
            if (start != cases[i].start || end != cases[i].end)
                fail_msg("range_parse_request(\"%s\") = %llu-%llu, want %llu-%llu", cases[i].s,
                         (unsigned long long)start, (unsigned long long)end,
                         (unsigned long long)cases[i].start, (unsigned long long)cases[i].end);
        } else {
            /* Outputs untouched unless RANGE_OK. */
            assert_int_equal(start, 12345);
            assert_int_equal(end, 54321);
        }
    }
}

static void test_request_null_and_huge_size(void **state)
{
    uint64_t start;
    uint64_t end;
    (void)state;
    assert_int_equal(range_parse_request(NULL, 10, &start, &end), RANGE_IGNORE);
    /* The largest representable size: no overflow in the suffix arithmetic. */
    assert_int_equal(range_parse_request("bytes=-1", UINT64_MAX, &start, &end), RANGE_OK);
    assert_true(start == UINT64_MAX - 1 && end == UINT64_MAX - 1);
    assert_int_equal(range_parse_request("bytes=0-", UINT64_MAX, &start, &end), RANGE_OK);
    assert_true(start == 0 && end == UINT64_MAX - 1);
}

static void test_content_range_table(void **state)
{
    static const struct {
        const char *s;
        int want;
        uint64_t start;
        uint64_t end;
    } cases[] = {
        {"0-99", 0, 0, 99},
        {"0-0", 0, 0, 0},
        {"100-199", 0, 100, 199},
        {"bytes 0-99", 0, 0, 99},
        {"bytes=0-99", 0, 0, 99},
        {"BYTES 5-9", 0, 5, 9},
        {" 1-2 ", 0, 1, 2},
        {"18446744073709551614-18446744073709551615", 0, 18446744073709551614ULL,
         18446744073709551615ULL},
        {"99-0", -1, 0, 0},
        {"5-4", -1, 0, 0},
        {"", -1, 0, 0},
        {"-", -1, 0, 0},
        {"0-", -1, 0, 0},
        {"-5", -1, 0, 0},
        {"a-b", -1, 0, 0},
        {"0--1", -1, 0, 0},
        {"0-1-2", -1, 0, 0},
        {"+0-1", -1, 0, 0},
        {"0 - 1", -1, 0, 0},
        {"0-18446744073709551616", -1, 0, 0},
        {"bytes", -1, 0, 0},
        {"bytes ", -1, 0, 0},
        {"bytes0-1", -1, 0, 0},
        {"bytes 0-99/100", 0, 0, 99},
        {"bytes 100-199/*", 0, 100, 199},
        {"bytes 0-99/1000", 0, 0, 99},
        {"bytes 0-99/99", -1, 0, 0},
        {"bytes 0-99/", -1, 0, 0},
        {"bytes 0-99/x", -1, 0, 0},
        {"bytes 0-99/**", -1, 0, 0},
        {"0-99/100", -1, 0, 0},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint64_t start = 7;
        uint64_t end = 7;
        int got = range_parse_content_range(cases[i].s, &start, &end);
        if (got != cases[i].want)
            fail_msg("range_parse_content_range(\"%s\") = %d, want %d", cases[i].s, got,
                     cases[i].want);
        if (got == 0) {
            assert_true(start == cases[i].start);
            assert_true(end == cases[i].end);
        } else {
            assert_true(start == 7 && end == 7);
        }
    }
    assert_int_equal(range_parse_content_range(NULL, NULL, NULL), -1);
}

static void test_if_range(void **state)
{
    static const char etag[] = "\"sha256:abc\"";
    static const struct {
        const char *if_range;
        bool want;
    } cases[] = {
        {NULL, true},
        {"\"sha256:abc\"", true},
        {" \"sha256:abc\"\t", true},
        {"\"sha256:abd\"", false},
        {"\"sha256:ab\"", false},
        {"\"sha256:abcd\"", false},
        {"W/\"sha256:abc\"", false},
        {"sha256:abc", false},
        {"\"\"", false},
        {"", false},
        {"*", false},
        {"Tue, 01 Dec 2026 10:00:00 GMT", false},
        {"Sun, 06 Nov 1994 08:49:37 GMT", false},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        bool got = range_if_range_matches(cases[i].if_range, etag);
        if (got != cases[i].want)
            fail_msg("range_if_range_matches(\"%s\") = %d, want %d",
                     cases[i].if_range ? cases[i].if_range : "(null)", got, cases[i].want);
    }
}

static void test_if_none_match(void **state)
{
    static const char etag[] = "\"sha256:abc\"";
    static const struct {
        const char *inm;
        bool want;
    } cases[] = {
        {NULL, false},
        {"\"sha256:abc\"", true},
        {"W/\"sha256:abc\"", true},
        {"*", true},
        {" * ", true},
        {"\"x\", \"sha256:abc\"", true},
        {"\"x\",W/\"sha256:abc\" , \"y\"", true},
        {"\"x\", \"y\"", false},
        {"\"sha256:ab\"", false},
        {"\"sha256:abcd\"", false},
        {"sha256:abc", false},
        {"", false},
        {",,", false},
        {"\"", false},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        bool got = range_none_match_fails(cases[i].inm, etag);
        if (got != cases[i].want)
            fail_msg("range_none_match_fails(\"%s\") = %d, want %d",
                     cases[i].inm ? cases[i].inm : "(null)", got, cases[i].want);
    }
}

static void test_if_match(void **state)
{
    static const char etag[] = "\"sha256:abc\"";
    static const struct {
        const char *im;
        bool has_current;
        bool want;
    } cases[] = {
        {NULL, true, true},
        {NULL, false, true},
        {"*", true, true},
        {" * ", true, true},
        {"*", false, false},
        {"\"sha256:abc\"", true, true},
        {"\"sha256:abc\"", false, false},
        {"\"x\", \"sha256:abc\"", true, true},
        {"W/\"sha256:abc\"", true, false}, /* strong comparison */
        {"\"x\", \"y\"", true, false},
        {"\"sha256:ab\"", true, false},
        {"\"sha256:abcd\"", true, false},
        {"sha256:abc", true, false},
        {"", true, false},
        {",,", true, false},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        bool got = range_if_match_holds(cases[i].im, cases[i].has_current ? etag : NULL);
        if (got != cases[i].want)
            fail_msg("range_if_match_holds(\"%s\", %d) = %d, want %d",
                     cases[i].im ? cases[i].im : "(null)", cases[i].has_current, got,
                     cases[i].want);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_request_table),
        cmocka_unit_test(test_request_null_and_huge_size),
        cmocka_unit_test(test_content_range_table),
        cmocka_unit_test(test_if_range),
        cmocka_unit_test(test_if_none_match),
        cmocka_unit_test(test_if_match),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
