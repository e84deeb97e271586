/* Unit tests for url.c: what of a URL may be shown (userinfo and query values hidden), as a
 * table of input and expected output. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

/* cmocka.h needs the four headers above first. */
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "url.h"

static void test_redact_table(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        const char *out;
    } cases[] = {
        {"https://hooks.example/h", "https://hooks.example/h"},
        {"http://127.0.0.1:9000/hook/path", "http://127.0.0.1:9000/hook/path"},
        {"https://ci:s3cret@hooks.example/h", "https://***@hooks.example/h"},
        {"https://token@hooks.example:8443", "https://***@hooks.example:8443"},
        {"https://a:b@c@hooks.example/x@y", "https://***@hooks.example/x@y"}, /* last '@' */
        {"https://hooks.example/h?token=abc", "https://hooks.example/h?token=***"},
        {"https://hooks.example/h?token=abc&team=infra",
         "https://hooks.example/h?token=***&team=***"},
        {"https://hooks.example/h?abcdef", "https://hooks.example/h?***"},
        {"https://hooks.example/h?a=&b", "https://hooks.example/h?a=***&***"},
        {"https://hooks.example/h?a=1&", "https://hooks.example/h?a=***&"},
        {"https://hooks.example/h?", "https://hooks.example/h?"},
        {"https://hooks.example?k=v", "https://hooks.example?k=***"},
        {"https://hooks.example/h?k=v#frag", "https://hooks.example/h?k=***#***"},
        {"https://hooks.example/h#", "https://hooks.example/h#"},
        {"https://u:p@hooks.example/h?k=v=w&z=1#f", "https://***@hooks.example/h?k=***&z=***#***"},
        {"https://hooks.example/h?next=https://u:p@x/", "https://hooks.example/h?next=***"},
        {"not a url?secret", "not a url?***"},
        {"", ""},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *got = url_redact(cases[i].in);
        assert_non_null(got);
        if (strcmp(got, cases[i].out) != 0)
            fail_msg("url_redact(\"%s\") = \"%s\", want \"%s\"", cases[i].in, got, cases[i].out);
        free(got);
    }
    assert_null(url_redact(NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_redact_table),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
