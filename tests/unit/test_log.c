/* Unit tests for log.c: field escaping (log injection) and that a whole line never
 * carries a raw control byte, whatever the message holds. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

/* cmocka.h needs the four headers above first. */
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

static void test_escape_table(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        size_t in_len; /* 0: strlen */
        const char *want;
    } cases[] = {
        {"/v2/app/manifests/v1", 0, "/v2/app/manifests/v1"},
        {"/v2/a\nfake=1", 0, "/v2/a\\x0afake=1"},
        {"/v2/a\r\n2026-01-01T00:00:00Z info", 0, "/v2/a\\x0d\\x0a2026-01-01T00:00:00Z\\x20info"},
        {"\x1b[31mred", 0, "\\x1b[31mred"},
        {"a status=200", 0, "a\\x20status=200"},
        {"back\\slash", 0, "back\\\\slash"},
        {"quo\"te", 0, "quo\\\"te"},
        {"a\0b", 3, "a\\x00b"},
        {"\x7f\x80\xff", 0, "\\x7f\\x80\\xff"},
        {"", 0, ""},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char out[128];
        size_t len = cases[i].in_len ? cases[i].in_len : strlen(cases[i].in);
        assert_ptr_equal(log_escape(out, sizeof(out), cases[i].in, len), out);
        assert_string_equal(out, cases[i].want);
    }
}

static void test_escape_truncates(void **state)
{
    (void)state;
    char out[8];
    log_escape(out, sizeof(out), "abcdefghijkl", 12);
    assert_string_equal(out, "abcd...");
    /* an escape is never cut in half */
    log_escape(out, sizeof(out), "ab\ncdefgh", 9);
    assert_string_equal(out, "ab...");
    log_escape(out, sizeof(out), "abcdefg", 7);
    assert_string_equal(out, "abcdefg");
    char one[1];
    log_escape(one, sizeof(one), "abc", 3);
    assert_string_equal(one, "");
}

/* Captures what log_write writes to stderr. */
static char *capture(void (*emit)(void))
{
    char path[] = "/tmp/meridian-test-log-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    unlink(path);
    fflush(stderr);
    int saved = dup(STDERR_FILENO);
    dup2(fd, STDERR_FILENO);
    emit();
    dup2(saved, STDERR_FILENO);
    close(saved);
    off_t n = lseek(fd, 0, SEEK_END);
    char *text = calloc(1, (size_t)n + 1);
    assert_int_equal(pread(fd, text, (size_t)n, 0), n);
    close(fd);
    return text;
}

static void emit_hostile(void)
{
    log_info("test", "user=%s path=%s", "bob\nforged line", "/v2/\x1b[2J\x07\x7f");
}

static void test_line_has_no_control_bytes(void **state)
{
    (void)state;
    log_setup(LOG_LEVEL_INFO, "r1");
    char *text = capture(emit_hostile);
    size_t n = strlen(text);
    assert_true(n > 0);
    assert_int_equal(text[n - 1], '\n');
    for (size_t i = 0; i + 1 < n; i++)
        assert_true((unsigned char)text[i] >= 0x20 && text[i] != 0x7f);
    assert_non_null(strstr(text, "user=bob\\x0aforged line path=/v2/\\x1b[2J\\x07\\x7f"));
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_escape_table),
        cmocka_unit_test(test_escape_truncates),
        cmocka_unit_test(test_line_has_no_control_bytes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
