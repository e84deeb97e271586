/* SigV4 against the examples of the AWS S3 documentation ("Signature calculations for the
 * Authorization header" and "Query string authentication"): same keys, same time, the
 * signatures published there. No network. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "s3_sigv4.h"

static const struct s3_creds AWS_EXAMPLE = {
    "AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "us-east-1"};

/* GET /test.txt with Range: bytes=0-9 (the header-signing example). */
static void test_authorization_header_get_object(void **state)
{
    (void)state;
    struct s3_sig_header h[] = {
        {"host", "examplebucket.s3.amazonaws.com"},
        {"range", "bytes=0-9"},
        {"x-amz-content-sha256",
         "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
        {"x-amz-date", "20130524T000000Z"},
    };
    char *auth = s3_sigv4_authorization(
        &AWS_EXAMPLE, "GET", "/test.txt", "", h, 4,
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", "20130524T000000Z");
    assert_string_equal(auth,
                        "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/"
                        "aws4_request, SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, "
                        "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
    free(auth);
}

/* The presigned GET of /test.txt valid 86400 s (the query-string example). */
static void test_presigned_url(void **state)
{
    (void)state;
    char *url = s3_sigv4_presign(&AWS_EXAMPLE, "GET", "https://examplebucket.s3.amazonaws.com",
                                 "examplebucket.s3.amazonaws.com", "/test.txt",
                                 "20130524T000000Z", 86400);
    assert_string_equal(
        url, "https://examplebucket.s3.amazonaws.com/test.txt?X-Amz-Algorithm=AWS4-HMAC-SHA256"
             "&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request"
             "&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host"
             "&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404");
    free(url);
}

static void test_uri_encode_and_date(void **state)
{
    (void)state;
    char out[64];
    s3_uri_encode("a b/c~d+e", 1, out, sizeof(out));
    assert_string_equal(out, "a%20b/c~d%2Be");
    s3_uri_encode("a/b", 0, out, sizeof(out));
    assert_string_equal(out, "a%2Fb");
    char date[S3_AMZ_DATE_LEN];
    s3_sigv4_date(1369353600, date); /* 2013-05-24 00:00:00 UTC */
    assert_string_equal(date, "20130524T000000Z");
}

/* The store's Date header, from which a node whose clock is off learns the store's time. */
static void test_http_date(void **state)
{
    (void)state;
    assert_int_equal(s3_http_date("Sun, 06 Dec 2026 02:47:55 GMT"), 1796525275);
    assert_int_equal(s3_http_date("Thu, 01 Jan 1970 00:00:00 GMT"), 0);
    assert_int_equal(s3_http_date("Sun, 06 Dec 2026 02:47:55"), -1);     /* no zone */
    assert_int_equal(s3_http_date("Sun, 06 Dex 2026 02:47:55 GMT"), -1); /* no month */
    assert_int_equal(s3_http_date("Sun, 06 ecJ 2026 02:47:55 GMT"), -1); /* not aligned */
    assert_int_equal(s3_http_date("Sun, 32 Dec 2026 02:47:55 GMT"), -1);
    assert_int_equal(s3_http_date(""), -1);
    assert_int_equal(s3_http_date(NULL), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_authorization_header_get_object),
        cmocka_unit_test(test_presigned_url),
        cmocka_unit_test(test_uri_encode_and_date),
        cmocka_unit_test(test_http_date),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
