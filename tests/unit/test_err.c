/* Unit tests for err.c: every code has an HTTP status, an OCI code and a default
 * message; key codes map to the statuses the distribution-spec requires; err_set
 * formats, truncates, records errno and tolerates NULL. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

/* cmocka.h needs the four headers above first. */
#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include "err.h"

static void test_every_code_maps(void **state)
{
    (void)state;
    for (int c = ERR_NONE + 1; c < ERR_COUNT_; c++) {
        int status = err_http_status((enum err_code)c);
        const char *oci = err_oci_code((enum err_code)c);
        const char *msg = err_default_message((enum err_code)c);
        if (status < 400 || status > 599)
            fail_msg("code %d: status %d is not an error status", c, status);
        assert_non_null(oci);
        assert_non_null(msg);
        if (oci[0] == '\0' || msg[0] == '\0')
            fail_msg("code %d: empty OCI code or message", c);
        /* OCI codes are upper-case identifiers (distribution-spec "Error Codes"). */
        for (const char *p = oci; *p; p++) {
            if (!((*p >= 'A' && *p <= 'Z') || *p == '_'))
                fail_msg("code %d: OCI code \"%s\" is malformed", c, oci);
        }
        assert_true(strlen(msg) < sizeof(((struct err *)0)->msg));
    }
}

static void test_known_mappings(void **state)
{
    /* Written out by hand from the distribution-spec, not generated from the table,
     * so that an edit to err_codes.def that breaks the protocol is caught. */
    static const struct {
        enum err_code code;
        int status;
        const char *oci;
    } cases[] = {
        {ERR_BLOB_UNKNOWN, 404, "BLOB_UNKNOWN"},
        {ERR_BLOB_UPLOAD_INVALID, 400, "BLOB_UPLOAD_INVALID"},
        {ERR_BLOB_UPLOAD_UNKNOWN, 404, "BLOB_UPLOAD_UNKNOWN"},
        {ERR_DIGEST_INVALID, 400, "DIGEST_INVALID"},
        {ERR_MANIFEST_BLOB_UNKNOWN, 400, "MANIFEST_BLOB_UNKNOWN"},
        {ERR_MANIFEST_INVALID, 400, "MANIFEST_INVALID"},
        {ERR_MANIFEST_UNKNOWN, 404, "MANIFEST_UNKNOWN"},
        {ERR_NAME_INVALID, 400, "NAME_INVALID"},
        {ERR_NAME_UNKNOWN, 404, "NAME_UNKNOWN"},
        {ERR_SIZE_INVALID, 400, "SIZE_INVALID"},
        {ERR_UNAUTHORIZED, 401, "UNAUTHORIZED"},
        {ERR_DENIED, 403, "DENIED"},
        {ERR_UNSUPPORTED, 405, "UNSUPPORTED"},
        {ERR_TOOMANYREQUESTS, 429, "TOOMANYREQUESTS"},
        {ERR_RANGE_INVALID, 416, "BLOB_UPLOAD_INVALID"},
        {ERR_MANIFEST_TOO_LARGE, 413, "MANIFEST_INVALID"},
        {ERR_METHOD_NOT_ALLOWED, 405, "UNSUPPORTED"},
        {ERR_CONFLICT, 409, "CONFLICT"},
        {ERR_IO, 500, "INTERNAL_ERROR"},
        {ERR_NO_SPACE, 507, "INTERNAL_ERROR"},
        {ERR_UNAVAILABLE, 503, "UNAVAILABLE"},
        {ERR_INTERNAL, 500, "INTERNAL_ERROR"},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        assert_int_equal(err_http_status(cases[i].code), cases[i].status);
        assert_string_equal(err_oci_code(cases[i].code), cases[i].oci);
    }
}

static void test_out_of_range_code(void **state)
{
    (void)state;
    assert_int_equal(err_http_status(ERR_COUNT_), 500);
    int negative = -1;
    assert_int_equal(err_http_status((enum err_code)negative), 500);
    assert_string_equal(err_oci_code(ERR_COUNT_), "INTERNAL_ERROR");
    assert_non_null(err_default_message(ERR_COUNT_));
}

static void test_err_set_formats(void **state)
{
    struct err e;
    (void)state;
    memset(&e, 0x5a, sizeof(e));
    errno = ENOSPC;
    assert_int_equal(err_set(&e, ERR_NAME_INVALID, "name %s is %d bytes", "x", 3), -1);
    assert_int_equal(e.code, ERR_NAME_INVALID);
    assert_int_equal(e.sys_errno, ENOSPC);
    assert_string_equal(e.msg, "name x is 3 bytes");
    assert_string_equal(err_message(&e), "name x is 3 bytes");

    errno = 0;
    assert_int_equal(err_set(&e, ERR_BLOB_UNKNOWN, NULL), -1);
    assert_int_equal(e.code, ERR_BLOB_UNKNOWN);
    assert_int_equal(e.sys_errno, 0);
    assert_string_equal(e.msg, "");
    /* An empty message falls back to the code's default. */
    assert_string_equal(err_message(&e), err_default_message(ERR_BLOB_UNKNOWN));
    assert_string_equal(err_message(&e), "blob unknown to registry");

    /* A NULL err is allowed and still returns -1. */
    assert_int_equal(err_set(NULL, ERR_IO, "ignored %d", 1), -1);
}

static void test_err_set_truncates(void **state)
{
    struct err e;
    char long_arg[500];
    (void)state;
    memset(long_arg, 'z', sizeof(long_arg) - 1);
    long_arg[sizeof(long_arg) - 1] = '\0';
    assert_int_equal(err_set(&e, ERR_MANIFEST_INVALID, "bad: %s", long_arg), -1);
    assert_int_equal(strlen(e.msg), sizeof(e.msg) - 1);
    assert_memory_equal(e.msg, "bad: zzz", 8);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_code_maps),   cmocka_unit_test(test_known_mappings),
        cmocka_unit_test(test_out_of_range_code), cmocka_unit_test(test_err_set_formats),
        cmocka_unit_test(test_err_set_truncates),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
