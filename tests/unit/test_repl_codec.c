/* repl_codec: what a peer's event must be before it is applied. A buggy or hostile peer
 * (one holding the peer secret) must not move every region's clock past what a signed
 * 64-bit column holds, nor replicate names a client could never push. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "hlc.h"
#include "repl_codec.h"

#define DIGEST_A "sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae"

/* An event object: a tag_set of lib/app:v1 unless overridden (NULL removes a field). */
static json_t *event(const char *kind, json_t *hlc, const char *repo, const char *name,
                     const char *digest)
{
    json_t *o = json_pack("{s:I, s:I, s:o, s:s, s:s}", "seq", (json_int_t)7, "originSeq",
                          (json_int_t)3, "hlc", hlc, "origin", "west", "kind", kind);
    if (repo)
        json_object_set_new(o, "repo", json_string(repo));
    if (name)
        json_object_set_new(o, "name", json_string(name));
    if (digest)
        json_object_set_new(o, "digest", json_string(digest));
    return o;
}

static int parse(json_t *o)
{
    struct meta_event ev;
    struct err e = {0};
    int rc = repl_codec_event_from_json(o, &ev, &e);
    if (rc == 0)
        meta_event_fini(&ev);
    else
        assert_int_equal(e.code, ERR_BAD_REQUEST);
    json_decref(o);
    return rc;
}

static void test_a_good_event_parses(void **state)
{
    (void)state;
    struct meta_event ev;
    struct err e = {0};
    json_t *o = event("tag_set", json_integer(123456789), "lib/app", "v1", DIGEST_A);
    assert_int_equal(repl_codec_event_from_json(o, &ev, &e), 0);
    assert_int_equal(ev.hlc, 123456789);
    assert_string_equal(ev.repo, "lib/app");
    assert_string_equal(ev.name, "v1");
    meta_event_fini(&ev);
    json_decref(o);
    /* A registry-wide object names no repository; its name is not a tag. */
    assert_int_equal(parse(event("object_put", json_integer(1), NULL, "webhook/ci.hook", NULL)),
                     0);
    assert_int_equal(parse(event("manifest_delete", json_integer(5), "a", NULL, DIGEST_A)), 0);
}

static void test_clocks_out_of_range_are_refused(void **state)
{
    (void)state;
    assert_int_equal(parse(event("tag_set", json_integer(INT64_MAX), "lib/app", "v1", DIGEST_A)),
                     -1);
    assert_int_equal(parse(event("tag_set", json_integer((json_int_t)HLC_MAX_VALID), "lib/app",
                                 "v1", DIGEST_A)),
                     -1);
    assert_int_equal(parse(event("tag_set", json_integer(-1), "lib/app", "v1", DIGEST_A)), -1);
    assert_int_equal(parse(event("tag_set", json_integer((json_int_t)HLC_MAX_VALID - 1), "lib/app",
                                 "v1", DIGEST_A)),
                     0);
}

static void test_names_no_client_could_push_are_refused(void **state)
{
    (void)state;
    const char *repos[] = {"../../etc", "Lib/App", "a//b", "", "a/"};
    for (size_t i = 0; i < sizeof(repos) / sizeof(repos[0]); i++)
        assert_int_equal(parse(event("manifest_put", json_integer(9), repos[i], NULL, DIGEST_A)),
                         -1);
    const char *tags[] = {"../../../x", ".hidden", "", "a/b"};
    for (size_t i = 0; i < sizeof(tags) / sizeof(tags[0]); i++) {
        assert_int_equal(parse(event("tag_set", json_integer(9), "lib/app", tags[i], DIGEST_A)),
                         -1);
        assert_int_equal(parse(event("tag_delete", json_integer(9), "lib/app", tags[i], NULL)), -1);
    }
    assert_int_equal(parse(event("tag_set", json_integer(9), "lib/app", NULL, DIGEST_A)), -1);
    assert_int_equal(parse(event("tag_set", json_integer(9), "lib/app", "v1", "sha256:zz")), -1);
    assert_int_equal(parse(event("manifest_put", json_integer(9), "lib/app", NULL, "nope")), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_good_event_parses),
        cmocka_unit_test(test_clocks_out_of_range_are_refused),
        cmocka_unit_test(test_names_no_client_could_push_are_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
