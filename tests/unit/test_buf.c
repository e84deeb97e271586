/* Unit tests for buf.c: appends, the hard maximum and its sticky flag, printf
 * beyond the small-buffer path, JSON string escaping and steal/reset. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

/* cmocka.h needs the four headers above first. */
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "buf.h"

static void test_append_and_nul(void **state)
{
    struct buf b;
    (void)state;
    buf_init(&b, 1024);
    assert_int_equal(b.len, 0);
    assert_int_equal(buf_append(&b, "abc", 3), 0);
    assert_int_equal(buf_appends(&b, "def"), 0);
    assert_int_equal(buf_append(&b, "", 0), 0);
    assert_int_equal(b.len, 6);
    assert_string_equal(b.data, "abcdef");
    assert_int_equal(b.data[b.len], '\0');
    assert_false(b.is_too_big);
    /* Binary bytes, including NUL, are kept. */
    assert_int_equal(buf_append(&b, "\0x", 2), 0);
    assert_int_equal(b.len, 8);
    assert_memory_equal(b.data, "abcdef\0x", 8);
    buf_fini(&b);
    assert_null(b.data);
    buf_fini(&b);
}

static void test_growth(void **state)
{
    struct buf b;
    (void)state;
    buf_init(&b, 1 << 20);
    for (int i = 0; i < 10000; i++)
        assert_int_equal(buf_append(&b, "0123456789", 10), 0);
    assert_int_equal(b.len, 100000);
    assert_true(b.cap > b.len);
    for (size_t i = 0; i < b.len; i++) {
        if (b.data[i] != (char)('0' + i % 10))
            fail_msg("byte %zu corrupted", i);
    }
    buf_fini(&b);
}

static void test_max_is_hard_and_sticky(void **state)
{
    struct buf b;
    (void)state;
    buf_init(&b, 8);
    assert_int_equal(buf_append(&b, "12345678", 8), 0);
    assert_false(b.is_too_big);
    assert_int_equal(buf_append(&b, "9", 1), -1);
    assert_true(b.is_too_big);
    /* Contents are unchanged by the refused append ... */
    assert_int_equal(b.len, 8);
    assert_string_equal(b.data, "12345678");
    /* ... and it stays refused, even for an empty append. */
    assert_int_equal(buf_append(&b, "", 0), -1);
    buf_reset(&b);
    assert_false(b.is_too_big);
    assert_int_equal(b.len, 0);
    assert_string_equal(b.data, "");
    /* One giant append is refused without allocating for it. */
    assert_int_equal(buf_append(&b, "x", SIZE_MAX), -1);
    assert_true(b.is_too_big);
    buf_fini(&b);

    buf_init(&b, 0);
    assert_int_equal(buf_append(&b, "", 0), 0);
    assert_int_equal(buf_appends(&b, "a"), -1);
    buf_fini(&b);
}

static void test_printf(void **state)
{
    struct buf b;
    char big[2000];
    (void)state;
    buf_init(&b, 1 << 16);
    assert_int_equal(buf_printf(&b, "%d-%s", 42, "x"), 0);
    assert_string_equal(b.data, "42-x");
    /* Longer than the 512-byte stack path. */
    memset(big, 'q', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    assert_int_equal(buf_printf(&b, "[%s]", big), 0);
    assert_int_equal(b.len, 4 + 2 + sizeof(big) - 1);
    assert_int_equal(b.data[4], '[');
    assert_int_equal(b.data[b.len - 1], ']');
    buf_fini(&b);

    buf_init(&b, 10);
    assert_int_equal(buf_printf(&b, "%s", "0123456789A"), -1);
    assert_true(b.is_too_big);
    buf_fini(&b);
}

static void test_json_string(void **state)
{
    static const struct {
        const char *in;
        const char *want;
    } cases[] = {
        {"", "\"\""},
        {"plain", "\"plain\""},
        {"a\"b", "\"a\\\"b\""},
        {"a\\b", "\"a\\\\b\""},
        {"line\nbreak\ttab\r", "\"line\\u000abreak\\u0009tab\\u000d\""},
        {"\x01\x1f", "\"\\u0001\\u001f\""},
        {"caf\xc3\xa9", "\"caf\xc3\xa9\""},
        {"/", "\"/\""},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct buf b;
        buf_init(&b, 1024);
        assert_int_equal(buf_append_json_string(&b, cases[i].in), 0);
        assert_string_equal(b.data, cases[i].want);
        buf_fini(&b);
    }
    struct buf b;
    buf_init(&b, 4);
    assert_int_equal(buf_append_json_string(&b, "abcdef"), -1);
    assert_true(b.is_too_big);
    buf_fini(&b);
}

static void test_steal(void **state)
{
    struct buf b;
    size_t len = 99;
    (void)state;
    buf_init(&b, 100);
    char *empty = buf_steal(&b, &len);
    assert_non_null(empty);
    assert_string_equal(empty, "");
    assert_int_equal(len, 0);
    free(empty);

    assert_int_equal(buf_appends(&b, "hello"), 0);
    char *p = buf_steal(&b, &len);
    assert_string_equal(p, "hello");
    assert_int_equal(len, 5);
    /* b is empty again, keeps its maximum, and no longer owns p. */
    assert_null(b.data);
    assert_int_equal(b.len, 0);
    assert_int_equal(b.max_bytes, 100);
    assert_int_equal(buf_appends(&b, "again"), 0);
    assert_string_equal(b.data, "again");
    assert_string_equal(p, "hello");
    free(p);
    p = buf_steal(&b, NULL);
    assert_string_equal(p, "again");
    free(p);
    buf_fini(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_append_and_nul),
        cmocka_unit_test(test_growth),
        cmocka_unit_test(test_max_is_hard_and_sticky),
        cmocka_unit_test(test_printf),
        cmocka_unit_test(test_json_string),
        cmocka_unit_test(test_steal),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
