/* console: which names the static file server may serve, and with which type. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "console.h"

static void test_safe_paths(void **state)
{
    static const struct {
        const char *rel;
        bool is_safe;
    } cases[] = {
        {"", true},                        {"index.html", true},
        {"js/app.js", true},               {"vendor/d3-geo.min.js", true},
        {"js/", false},                    {"a_b-c.1.css", true},
        {"..", false},                     {"../etc/passwd", false},
        {"js/../../x.js", false},          {".hidden", false},
        {"js/.git/config", false},         {"/etc/passwd", false},
        {"js//app.js", false},             {"a\\b.js", false},
        {"a b.js", false},                 {"a%2e.js", false},
        {"a?.js", false},                  {"\xc3\xa9.js", false},
        {"~root.js", false},               {"a:b.js", false},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        bool got = console_is_safe_path(cases[i].rel, strlen(cases[i].rel));
        if (got != cases[i].is_safe)
            fail_msg("console_is_safe_path(\"%s\") = %d", cases[i].rel, got);
    }
    char nul[] = "index.html\0../x";
    assert_false(console_is_safe_path(nul, sizeof(nul) - 1));
    char longest[202];
    memset(longest, 'a', sizeof(longest));
    assert_true(console_is_safe_path(longest, 200));
    assert_false(console_is_safe_path(longest, 201));
}

static void test_content_types(void **state)
{
    (void)state;
    assert_string_equal(console_content_type("index.html"), "text/html; charset=utf-8");
    assert_string_equal(console_content_type("js/app.js"), "text/javascript; charset=utf-8");
    assert_string_equal(console_content_type("app.css"), "text/css; charset=utf-8");
    assert_string_equal(console_content_type("vendor/countries-110m.json"), "application/json");
    assert_string_equal(console_content_type("favicon.svg"), "image/svg+xml");
    assert_null(console_content_type("data.bin"));
    assert_null(console_content_type("Makefile"));
    assert_null(console_content_type("app.js.map"));
    assert_null(console_content_type("a.html/b"));
    assert_null(console_content_type("shell.sh"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_safe_paths),
        cmocka_unit_test(test_content_types),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
