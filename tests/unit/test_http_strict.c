/* Unit tests for http_strict.c: request heads (written as raw text, split the way the
 * fuzz target splits them) and whether the strict check accepts them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

/* cmocka.h needs the four headers above first. */
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "http_strict.h"

#define MAX_FIELDS 16

/* Splits "METHOD TARGET VERSION\nName: value\n..." (s_len bytes, NULs allowed) into h. */
static void split(const char *s, size_t s_len, struct http_head *h, struct http_field *fields)
{
    const char *end = s + s_len;
    const char *nl = memchr(s, '\n', s_len);
    const char *line_end = nl != NULL ? nl : end;
    const char *sp1 = memchr(s, ' ', (size_t)(line_end - s));
    assert_non_null(sp1);
    const char *sp2 = sp1 + 1;
    const char *last_sp = NULL;
    for (const char *p = sp2; p < line_end; p++) {
        if (*p == ' ')
            last_sp = p;
    }
    assert_non_null(last_sp);
    memset(h, 0, sizeof(*h));
    h->method = s;
    h->method_len = (size_t)(sp1 - s);
    h->target = sp2;
    h->target_len = (size_t)(last_sp - sp2);
    h->version = last_sp + 1;
    h->version_len = (size_t)(line_end - last_sp - 1);
    h->fields = fields;
    const char *p = nl != NULL ? nl + 1 : end;
    while (p < end) {
        const char *e = memchr(p, '\n', (size_t)(end - p));
        if (e == NULL)
            e = end;
        const char *colon = memchr(p, ':', (size_t)(e - p));
        assert_non_null(colon);
        assert_true(h->n_fields < MAX_FIELDS);
        const char *v = colon + 1;
        while (v < e && *v == ' ')
            v++;
        fields[h->n_fields++] = (struct http_field){p, (size_t)(colon - p), v, (size_t)(e - v)};
        p = e + 1;
    }
}

/* A literal and its length, NULs included. */
#define S(lit) lit, sizeof(lit) - 1

struct head_case {
    const char *text;
    size_t len;
    const char *why; /* NULL: accepted; else a substring of the reason */
    int has_body;    /* for accepted heads: -1 skip, 0 no, 1 yes */
};

static void run_cases(const struct head_case *cases, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        struct http_head h;
        struct http_field fields[MAX_FIELDS];
        split(cases[i].text, cases[i].len, &h, fields);
        const char *why = http_strict_check(&h);
        if (cases[i].why == NULL) {
            if (why != NULL)
                fail_msg("case %zu refused (%s): %s", i, why, cases[i].text);
            if (cases[i].has_body >= 0 && http_strict_has_body(&h) != (cases[i].has_body == 1))
                fail_msg("case %zu: has_body should be %d", i, cases[i].has_body);
        } else {
            if (why == NULL)
                fail_msg("case %zu accepted, want \"%s\": %s", i, cases[i].why, cases[i].text);
            if (strstr(why, cases[i].why) == NULL)
                fail_msg("case %zu: reason \"%s\", want \"%s\"", i, why, cases[i].why);
        }
    }
}

static void test_accepted(void **state)
{
    (void)state;
    static const struct head_case cases[] = {
        {S("GET /v2/ HTTP/1.1\nHost: 127.0.0.1:5000"), NULL, 0},
        {S("GET /v2/ HTTP/1.0"), NULL, 0},
        {S("GET /v2/ HTTP/1.0\nHost: example.com"), NULL, 0},
        {S("HEAD /v2/a/b/manifests/latest HTTP/1.1\nHost: [::1]:5000\nAccept: a, b"), NULL, 0},
        {S("PUT /v2/a/manifests/x HTTP/1.1\nHost: h\nContent-Length: 10"), NULL, 1},
        {S("PUT /v2/a/manifests/x HTTP/1.1\nHost: h\nContent-Length: 0"), NULL, 0},
        {S("PUT /v2/a/manifests/x HTTP/1.1\nHost: h\nContent-Length: 000"), NULL, 0},
        {S("PATCH /v2/a/blobs/uploads/x HTTP/1.1\nHost: h\nTransfer-Encoding: chunked"), NULL, 1},
        {S("PATCH /v2/a/blobs/uploads/x HTTP/1.1\nHost: h\ntransfer-encoding: Chunked"), NULL, 1},
        /* optional whitespace around values is not part of them */
        {S("PUT /x HTTP/1.1\nHost: h  \nContent-Length: 5 \t"), NULL, 1},
        {S("GET /v2/_catalog?n=10&last=a%2Fb HTTP/1.1\nHost: h\nX-Tab: a\tb"), NULL, 0},
        {S("GET /v2/x HTTP/1.1\nHost: h\nX-Empty: "), NULL, 0},
        {S("GET /v2/x HTTP/1.1\nhost: h\nX-Utf8: caf\xc3\xa9"), NULL, 0},
        /* %0 followed by something else is not a NUL */
        {S("GET /v2/a%0a HTTP/1.1\nHost: h"), NULL, 0},
        {S("GET /v2/a%01%20 HTTP/1.1\nHost: h"), NULL, 0},
    };
    run_cases(cases, sizeof(cases) / sizeof(cases[0]));
}

static void test_refused(void **state)
{
    (void)state;
    static const struct head_case cases[] = {
        /* request smuggling: framing two parsers may read differently (RFC 9112 6.1, 6.3) */
        {S("PUT /x HTTP/1.1\nHost: h\nContent-Length: 3\nContent-Length: 10"),
         "more than one Content-Length", -1},
        {S("PUT /x HTTP/1.1\nHost: h\nContent-Length: 3\nContent-Length: 3"),
         "more than one Content-Length", -1},
        {S("PUT /x HTTP/1.1\nHost: h\nContent-Length: 3, 3"), "not a number", -1},
        {S("PUT /x HTTP/1.1\nHost: h\nContent-Length: +3"), "not a number", -1},
        {S("PUT /x HTTP/1.1\nHost: h\nContent-Length: -1"), "not a number", -1},
        {S("PUT /x HTTP/1.1\nHost: h\nContent-Length: "), "not a number", -1},
        {S("PUT /x HTTP/1.1\nHost: h\nContent-Length: 99999999999999999999"), "not a number", -1},
        {S("PUT /x HTTP/1.1\nHost: h\nContent-Length: 3\nTransfer-Encoding: chunked"),
         "both Content-Length and Transfer-Encoding", -1},
        {S("PUT /x HTTP/1.1\nHost: h\nTransfer-Encoding: chunked\nContent-Length: 3"),
         "both Content-Length and Transfer-Encoding", -1},
        {S("PUT /x HTTP/1.1\nHost: h\nTransfer-Encoding : chunked\nContent-Length: 3"),
         "name is not a token", -1},
        {S("PUT /x HTTP/1.1\nHost: h\nTransfer-Encoding\t: chunked"), "name is not a token", -1},
        {S("PUT /x HTTP/1.1\nHost: h\nTransfer-Encoding: gzip, chunked"), "other than chunked", -1},
        {S("PUT /x HTTP/1.1\nHost: h\nTransfer-Encoding: identity"), "other than chunked", -1},
        {S("PUT /x HTTP/1.1\nHost: h\nTransfer-Encoding: chunked\nTransfer-Encoding: chunked"),
         "more than one Transfer-Encoding", -1},
        {S("PUT /x HTTP/1.0\nTransfer-Encoding: chunked"), "HTTP/1.0", -1},
        /* Host (RFC 9112 3.2) */
        {S("GET /v2/ HTTP/1.1"), "without Host", -1},
        {S("GET /v2/ HTTP/1.1\nHost: a\nHost: b"), "more than one Host", -1},
        {S("GET /v2/ HTTP/1.1\nHost: a, b"), "host[:port]", -1},
        {S("GET /v2/ HTTP/1.1\nHost: user@a"), "host[:port]", -1},
        {S("GET /v2/ HTTP/1.1\nHost: a/b"), "host[:port]", -1},
        /* NUL, CR, LF, ESC: they cut strings or forge lines downstream */
        {S("GET /v2/a\0b HTTP/1.1\nHost: h"), "control byte", -1},
        {S("GET /v2/a%00b HTTP/1.1\nHost: h"), "%00", -1},
        {S("GET /v2/a%00 HTTP/1.1\nHost: h"), "%00", -1},
        {S("GET /v2/?x=%00 HTTP/1.1\nHost: h"), "%00", -1},
        {S("GET /v2/a\x1b HTTP/1.1\nHost: h"), "control byte", -1},
        {S("GET /v2/a\x7f HTTP/1.1\nHost: h"), "control byte", -1},
        {S("GET /v2/a b HTTP/1.1\nHost: h"), "space", -1},
        {S("GET  HTTP/1.1\nHost: h"), "empty request-target", -1},
        {S("GET /v2/ HTTP/1.1\nHost: h\nX-A: a\0b"), "control byte", -1},
        {S("GET /v2/ HTTP/1.1\nHost: h\nX-A: a\rb"), "control byte", -1},
        {S("GET /v2/ HTTP/1.1\nHost: h\nX-A: a\x1b[31m"), "control byte", -1},
        {S("GET /v2/ HTTP/1.1\nHost: h\nX-\0A: b"), "name is not a token", -1},
        {S("GET /v2/ HTTP/1.1\nHost: h\n: b"), "name is not a token", -1},
        {S("GET /v2/ HTTP/1.1\nHost: h\nX(A): b"), "name is not a token", -1},
        /* request line */
        {S("G\0T /v2/ HTTP/1.1\nHost: h"), "method", -1},
        {S("GET /v2/ HTTP/2.0\nHost: h"), "version", -1},
        {S("GET /v2/ HTTP/1.1x\nHost: h"), "version", -1},
        {S("GET /v2/ http/1.1\nHost: h"), "version", -1},
    };
    run_cases(cases, sizeof(cases) / sizeof(cases[0]));
}

/* A head "GET /v2/?A&A&...A HTTP/1.1" with n arguments A of arg_len bytes, in out. */
static size_t target_with_args(size_t n, size_t arg_len, char *out, size_t size)
{
    size_t len = (size_t)snprintf(out, size, "GET /v2/?");
    for (size_t i = 0; i < n && len + arg_len + 2 < size; i++) {
        if (i > 0)
            out[len++] = '&';
        memset(out + len, 'a', arg_len);
        len += arg_len;
    }
    len += (size_t)snprintf(out + len, size - len, " HTTP/1.1\nHost: h");
    return len;
}

static const char *check_args(size_t n, size_t arg_len)
{
    static char text[64 * 1024];
    struct http_head h;
    struct http_field fields[MAX_FIELDS];
    size_t len = target_with_args(n, arg_len, text, sizeof(text));
    split(text, len, &h, fields);
    return http_strict_check(&h);
}

/* libmicrohttpd keeps the target and each query argument in its 32 KiB connection pool and
 * hangs once they exhaust it (measured: 500 arguments of 8 bytes, 300 of 60, 256 of 80, 200
 * of 100 hung; 300 of 40, 256 of 60, 200 of 80, 100 of 100 did not): a query past the
 * budget is refused before it parses it, and every request of ours fits. */
static void test_query_arguments_counted_and_capped(void **state)
{
    (void)state;
    assert_int_equal(http_query_args_count(S("/v2/")), 0);
    assert_int_equal(http_query_args_count(S("/v2/?")), 1);
    assert_int_equal(http_query_args_count(S("/v2/?n=1&last=a")), 2);
    assert_int_equal(http_query_args_count(S("/v2/a&b?x&&y")), 3); /* '&' before '?': path */
    static const struct {
        size_t n, arg_len;
    } hung[] = {{500, 8}, {3000, 1}, {300, 60}, {256, 80}, {200, 100}};
    for (size_t i = 0; i < sizeof(hung) / sizeof(hung[0]); i++) {
        const char *why = check_args(hung[i].n, hung[i].arg_len);
        if (why == NULL || strstr(why, "query arguments") == NULL)
            fail_msg("%zu arguments of %zu bytes accepted", hung[i].n, hung[i].arg_len);
    }
    /* a token request for 256 scopes (the most it takes) of 30 bytes; a listing */
    assert_null(check_args(256, 30));
    assert_null(check_args(300, 20));
    assert_null(check_args(2, 40));
    assert_false(http_query_is_too_big(S("/v2/_catalog?n=100&last=abc")));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_accepted),
        cmocka_unit_test(test_refused),
        cmocka_unit_test(test_query_arguments_counted_and_capped),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
