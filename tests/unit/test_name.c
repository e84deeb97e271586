/* Unit tests for name.c: repository-name and tag grammars, reference shape and
 * scope patterns, as tables of input and expected verdict. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

/* cmocka.h needs the four headers above first. */
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "name.h"

struct verdict {
    const char *s;
    bool is_valid;
};

static void test_repo_table(void **state)
{
    static const struct verdict cases[] = {
        {"a", true},
        {"library/ubuntu", true},
        {"a/b/c/d", true},
        {"foo.bar", true},
        {"foo_bar", true},
        {"foo__bar", true},
        {"foo-bar", true},
        {"foo---bar", true},
        {"foo-bar_baz.qux__x", true},
        {"0/1/2", true},
        {"abc123/def-456", true},
        {"", false},
        {"A", false},
        {"Library/ubuntu", false},
        {"/a", false},
        {"a/", false},
        {"a//b", false},
        {"-a", false},
        {"a-", false},
        {".a", false},
        {"a.", false},
        {"_a", false},
        {"a_", false},
        {"a___b", false},
        {"a..b", false},
        {"a._b", false},
        {"a-.b", false},
        {"a_-b", false},
        {"a/-b", false},
        {"a/.b", false},
        {"a-/b", false},
        {"a:b", false},
        {"a b", false},
        {"a@b", false},
        {"ä", false},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        bool got = name_is_valid_repo(cases[i].s, strlen(cases[i].s));
        if (got != cases[i].is_valid)
            fail_msg("name_is_valid_repo(\"%s\") = %d, want %d", cases[i].s, got,
                     cases[i].is_valid);
    }
}

static void test_repo_length_limit(void **state)
{
    char s[NAME_MAX_BYTES + 2];
    (void)state;
    memset(s, 'a', sizeof(s));
    assert_true(name_is_valid_repo(s, NAME_MAX_BYTES));
    assert_false(name_is_valid_repo(s, NAME_MAX_BYTES + 1));
    assert_false(name_is_valid_repo(NULL, 0));
}

static void test_repo_uses_length_not_nul(void **state)
{
    (void)state;
    /* Only the first s_len bytes count: "ab" is valid even inside "ab/". */
    assert_true(name_is_valid_repo("ab/", 2));
    assert_false(name_is_valid_repo("ab/", 3));
    /* An embedded NUL is just an invalid byte. */
    assert_false(name_is_valid_repo("a\0b", 3));
}

static void test_tag_table(void **state)
{
    static const struct verdict cases[] = {
        {"latest", true},    {"v1.0.0", true}, {"_x", true},   {"A", true},   {"1", true},
        {"v1-rc.2_b", true}, {"", false},      {".x", false},  {"-x", false}, {"a/b", false},
        {"a:b", false},      {"a+b", false},   {"a b", false},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        bool got = name_is_valid_tag(cases[i].s, strlen(cases[i].s));
        if (got != cases[i].is_valid)
            fail_msg("name_is_valid_tag(\"%s\") = %d, want %d", cases[i].s, got, cases[i].is_valid);
    }
}

static void test_tag_length_limit(void **state)
{
    char s[TAG_MAX_BYTES + 1];
    (void)state;
    memset(s, 'x', sizeof(s));
    assert_true(name_is_valid_tag(s, TAG_MAX_BYTES));
    assert_false(name_is_valid_tag(s, TAG_MAX_BYTES + 1));
    assert_false(name_is_valid_tag(NULL, 0));
}

static void test_reference_is_digest(void **state)
{
    (void)state;
    assert_true(name_reference_is_digest("sha256:abc", 10));
    assert_true(name_reference_is_digest(":", 1));
    assert_false(name_reference_is_digest("latest", 6));
    assert_false(name_reference_is_digest("", 0));
    /* The ':' lies beyond s_len. */
    assert_false(name_reference_is_digest("ab:c", 2));
    assert_false(name_reference_is_digest(NULL, 0));
}

static void test_pattern_table(void **state)
{
    static const struct {
        const char *pattern;
        const char *name;
        bool is_match;
    } cases[] = {
        {"*", "anything/at/all", true},
        {"*", "", true},
        {"golden/*", "golden/app", true},
        {"golden/*", "golden/team/app", true},
        {"golden/*", "golden/", true},
        {"golden/*", "golden", false},
        {"golden/*", "silver/app", false},
        {"golden/*", "xgolden/app", false},
        {"*/app", "golden/app", true},
        {"*/app", "golden/app2", false},
        {"a*b*c", "abc", true},
        {"a*b*c", "aXXbYYc", true},
        {"a*b*c", "aXXbYY", false},
        {"a*b*c", "acb", false},
        {"**", "x", true},
        {"exact", "exact", true},
        {"exact", "exactly", false},
        {"exactly", "exact", false},
        {"a?c", "abc", false},
        {"", "", true},
        {"", "a", false},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        bool got = name_matches_pattern(cases[i].pattern, cases[i].name);
        if (got != cases[i].is_match)
            fail_msg("name_matches_pattern(\"%s\", \"%s\") = %d, want %d", cases[i].pattern,
                     cases[i].name, got, cases[i].is_match);
    }
    assert_false(name_matches_pattern(NULL, "a"));
    assert_false(name_matches_pattern("a", NULL));
}

static void test_pattern_pathological_is_fast(void **state)
{
    /* Many stars against a long non-matching name: must finish promptly (a naive
     * recursive matcher is exponential here). */
    char pattern[64];
    char name[4096];
    (void)state;
    for (size_t i = 0; i < 30; i++) {
        pattern[2 * i] = 'a';
        pattern[2 * i + 1] = '*';
    }
    pattern[60] = 'b';
    pattern[61] = '\0';
    memset(name, 'a', sizeof(name) - 1);
    name[sizeof(name) - 1] = '\0';
    assert_false(name_matches_pattern(pattern, name));
    name[sizeof(name) - 2] = 'b';
    assert_true(name_matches_pattern(pattern, name));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_repo_table),
        cmocka_unit_test(test_repo_length_limit),
        cmocka_unit_test(test_repo_uses_length_not_nul),
        cmocka_unit_test(test_tag_table),
        cmocka_unit_test(test_tag_length_limit),
        cmocka_unit_test(test_reference_is_digest),
        cmocka_unit_test(test_pattern_table),
        cmocka_unit_test(test_pattern_pathological_is_fast),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
