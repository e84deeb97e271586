/* Unit tests for webhooks: definition validation (tables of good and bad input), update
 * merging, matching, the payload, the retry schedule, response excerpts, the delivery
 * queue of the SQLite metastore, and the filtering of webhook_tx_queue against a real
 * metastore (no worker thread, no network). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h> /* after the four above, which it needs */

#include <ftw.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "metastore.h"
#include "registry_ctx.h"
#include "util.h"
#include "webhook.h"
#include "webhook_def.h"

static json_t *parse_json(const char *text)
{
    json_error_t je;
    json_t *v = json_loads(text, 0, &je);
    if (v == NULL)
        fail_msg("bad test JSON %s: %s", text, je.text);
    return v;
}

/* Parses text as a definition; returns rc and fills e. */
static int def_from(const char *text, struct webhook_def *d, struct err *e)
{
    json_t *v = parse_json(text);
    int rc = webhook_def_parse(v, d, e);
    json_decref(v);
    return rc;
}

/* Names ------------------------------------------------------------------- */

static void test_names(void **state)
{
    (void)state;
    static const struct {
        const char *name;
        bool is_valid;
    } cases[] = {
        {"hook1", true},
        {"MyHook2024", true},
        {"abcde", true},
        {"abcd", false},
        {"", false},
        {"01234567890123456789012345678901234567890123456789", true},
        {"012345678901234567890123456789012345678901234567890", false},
        {"my-hook", false},
        {"my_hook", false},
        {"hook one", false},
        {"hook/x1", false},
        {"h\xc3\xa9llo", false},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        if (webhook_def_is_valid_name(cases[i].name) != cases[i].is_valid)
            fail_msg("name \"%s\": expected %s", cases[i].name,
                     cases[i].is_valid ? "valid" : "invalid");
    }
    assert_false(webhook_def_is_valid_name(NULL));
}

/* Parsing ----------------------------------------------------------------- */

static void test_parse_full(void **state)
{
    (void)state;
    struct webhook_def d;
    struct err e = {0};
    assert_int_equal(def_from("{\"name\":\"hook1\",\"location\":\"eastus\","
                              "\"uri\":\"https://example.com/hook?x=1\","
                              "\"actions\":[\"delete\",\"push\"],\"scope\":\"golden/*\","
                              "\"enabled\":false,\"customHeaders\":{\"Authorization\":"
                              "\"Bearer t0k\",\"X-Team\":\"infra\"}}",
                              &d, &e),
                     0);
    assert_string_equal(d.name, "hook1");
    assert_string_equal(d.location, "eastus");
    assert_string_equal(d.uri, "https://example.com/hook?x=1");
    assert_int_equal(d.actions, WEBHOOK_ACTION_PUSH | WEBHOOK_ACTION_DELETE);
    assert_string_equal(d.scope, "golden/*");
    assert_false(d.is_enabled);
    assert_int_equal(d.n_headers, 2);
    assert_string_equal(d.headers[0].name, "Authorization");
    assert_string_equal(d.headers[0].value, "Bearer t0k");

    /* to_json and back gives the same definition; redaction hides header values. */
    json_t *full = webhook_def_to_json(&d, false);
    struct webhook_def again;
    assert_int_equal(webhook_def_parse(full, &again, &e), 0);
    assert_string_equal(again.scope, d.scope);
    assert_int_equal(again.actions, d.actions);
    assert_string_equal(again.headers[1].value, "infra");
    json_t *actions = json_object_get(full, "actions");
    assert_string_equal(json_string_value(json_array_get(actions, 0)), "push");
    assert_string_equal(json_string_value(json_array_get(actions, 1)), "delete");
    json_t *red = webhook_def_to_json(&d, true);
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(red, "customHeaders"), "Authorization")),
        "***");
    json_decref(full);
    json_decref(red);
    webhook_def_fini(&again);
    webhook_def_fini(&d);
    webhook_def_fini(&d); /* fini twice is harmless */
}

static void test_parse_defaults(void **state)
{
    (void)state;
    struct webhook_def d;
    struct err e = {0};
    assert_int_equal(def_from("{\"name\":\"hook1\",\"location\":\"westeurope\","
                              "\"uri\":\"http://127.0.0.1:9/x\",\"actions\":[\"push\"]}",
                              &d, &e),
                     0);
    assert_string_equal(d.scope, "*");
    assert_true(d.is_enabled);
    assert_int_equal(d.n_headers, 0);
    assert_int_equal(d.actions, WEBHOOK_ACTION_PUSH);
    webhook_def_fini(&d);
}

static void test_parse_invalid(void **state)
{
    (void)state;
#define BASE "\"name\":\"hook1\",\"location\":\"eastus\",\"uri\":\"http://h/x\""
    static const struct {
        const char *json;
        const char *msg_part; /* expected in the error message */
    } cases[] = {
        {"[]", "JSON object"},
        {"{\"location\":\"eastus\",\"uri\":\"http://h/\",\"actions\":[\"push\"]}",
         "name is required"},
        {"{\"name\":5,\"location\":\"eastus\",\"uri\":\"http://h/\",\"actions\":[\"push\"]}",
         "name must be a string"},
        {"{\"name\":\"hk1\",\"location\":\"eastus\",\"uri\":\"http://h/\",\"actions\":[\"push\"]}",
         "name must be"},
        {"{\"name\":\"my-hook\",\"location\":\"e\",\"uri\":\"http://h/\",\"actions\":[\"push\"]}",
         "name must be"},
        {"{\"name\":\"hook1\",\"uri\":\"http://h/\",\"actions\":[\"push\"]}",
         "location is required"},
        {"{\"name\":\"hook1\",\"location\":\"\",\"uri\":\"http://h/\",\"actions\":[\"push\"]}",
         "location must be"},
        {"{\"name\":\"hook1\",\"location\":\"East US\",\"uri\":\"http://h/\","
         "\"actions\":[\"push\"]}",
         "location must be"},
        {"{\"name\":\"hook1\",\"location\":\"eastus\",\"actions\":[\"push\"]}", "uri is required"},
        {"{\"name\":\"hook1\",\"location\":\"eastus\",\"uri\":\"ftp://h/\","
         "\"actions\":[\"push\"]}",
         "uri must be"},
        {"{\"name\":\"hook1\",\"location\":\"eastus\",\"uri\":\"http://\","
         "\"actions\":[\"push\"]}",
         "uri must be"},
        {"{\"name\":\"hook1\",\"location\":\"eastus\",\"uri\":\"http:///path\","
         "\"actions\":[\"push\"]}",
         "uri must be"},
        {"{\"name\":\"hook1\",\"location\":\"eastus\",\"uri\":\"http://h/a b\","
         "\"actions\":[\"push\"]}",
         "uri must be"},
        {"{\"name\":\"hook1\",\"location\":\"eastus\",\"uri\":\"example.com\","
         "\"actions\":[\"push\"]}",
         "uri must be"},
        {"{" BASE "}", "actions is required"},
        {"{" BASE ",\"actions\":[]}", "non-empty array"},
        {"{" BASE ",\"actions\":\"push\"}", "non-empty array"},
        {"{" BASE ",\"actions\":[\"pull\"]}", "unknown action \"pull\""},
        {"{" BASE ",\"actions\":[\"push\",7]}", "unknown action (not a string)"},
        {"{" BASE ",\"actions\":[\"push\"],\"scope\":\"\"}", "scope must be"},
        {"{" BASE ",\"actions\":[\"push\"],\"scope\":\"Golden/*\"}", "scope must be"},
        {"{" BASE ",\"actions\":[\"push\"],\"scope\":\"a:b\"}", "scope must be"},
        {"{" BASE ",\"actions\":[\"push\"],\"scope\":3}", "scope must be a string"},
        {"{" BASE ",\"actions\":[\"push\"],\"enabled\":\"yes\"}", "enabled must be"},
        {"{" BASE ",\"actions\":[\"push\"],\"customHeaders\":[1]}", "customHeaders must be"},
        {"{" BASE ",\"actions\":[\"push\"],\"customHeaders\":{\"Bad Name\":\"v\"}}",
         "invalid header name"},
        {"{" BASE ",\"actions\":[\"push\"],\"customHeaders\":{\"Host\":\"v\"}}",
         "set by the registry"},
        {"{" BASE ",\"actions\":[\"push\"],\"customHeaders\":{\"content-type\":\"v\"}}",
         "set by the registry"},
        {"{" BASE ",\"actions\":[\"push\"],\"customHeaders\":{\"X-A\":\"a\\r\\nX-B: b\"}}",
         "the value of X-A"},
        {"{" BASE ",\"actions\":[\"push\"],\"customHeaders\":{\"X-A\":1}}", "the value of X-A"},
        {"{" BASE ",\"actions\":[\"push\"],\"color\":\"red\"}", "unknown member \"color\""},
    };
#undef BASE
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct webhook_def d;
        struct err e = {0};
        if (def_from(cases[i].json, &d, &e) == 0)
            fail_msg("case %zu accepted: %s", i, cases[i].json);
        assert_int_equal(e.code, ERR_BAD_REQUEST);
        if (strstr(e.msg, cases[i].msg_part) == NULL)
            fail_msg("case %zu: message \"%s\" lacks \"%s\"", i, e.msg, cases[i].msg_part);
        assert_null(d.name);
    }
}

static void test_parse_limits(void **state)
{
    (void)state;
    /* 17 headers are too many; 16 are fine. */
    json_t *v = parse_json("{\"name\":\"hook1\",\"location\":\"eastus\",\"uri\":\"http://h/\","
                           "\"actions\":[\"push\"]}");
    json_t *h = json_object();
    for (int i = 0; i < WEBHOOK_HEADERS_MAX; i++) {
        char k[16];
        snprintf(k, sizeof(k), "X-H%d", i);
        json_object_set_new(h, k, json_string("v"));
    }
    json_object_set(v, "customHeaders", h);
    struct webhook_def d;
    struct err e = {0};
    assert_int_equal(webhook_def_parse(v, &d, &e), 0);
    assert_int_equal(d.n_headers, WEBHOOK_HEADERS_MAX);
    webhook_def_fini(&d);
    json_object_set_new(h, "X-One-More", json_string("v"));
    assert_int_equal(webhook_def_parse(v, &d, &e), -1);
    assert_non_null(strstr(e.msg, "at most"));
    json_decref(h);

    /* A URI of the maximum length passes, one byte more does not. */
    char *uri = xmalloc(WEBHOOK_URI_MAX + 2);
    memset(uri, 'a', WEBHOOK_URI_MAX + 1);
    memcpy(uri, "http://h/", 9);
    uri[WEBHOOK_URI_MAX] = '\0';
    json_object_del(v, "customHeaders");
    json_object_set_new(v, "uri", json_string(uri));
    assert_int_equal(webhook_def_parse(v, &d, &e), 0);
    webhook_def_fini(&d);
    uri[WEBHOOK_URI_MAX] = 'a';
    uri[WEBHOOK_URI_MAX + 1] = '\0';
    json_object_set_new(v, "uri", json_string(uri));
    assert_int_equal(webhook_def_parse(v, &d, &e), -1);
    free(uri);
    json_decref(v);
}

/* Updates ----------------------------------------------------------------- */

static void test_patch(void **state)
{
    (void)state;
    struct webhook_def d;
    struct err e = {0};
    assert_int_equal(def_from("{\"name\":\"hook1\",\"location\":\"eastus\",\"uri\":\"http://a/\","
                              "\"actions\":[\"push\"],\"customHeaders\":{\"X-A\":\"1\"}}",
                              &d, &e),
                     0);
    json_t *p = parse_json("{\"uri\":\"https://b/x\",\"actions\":[\"delete\"],"
                           "\"enabled\":false,\"name\":\"hook1\"}");
    assert_int_equal(webhook_def_patch(&d, p, &e), 0);
    json_decref(p);
    assert_string_equal(d.uri, "https://b/x");
    assert_int_equal(d.actions, WEBHOOK_ACTION_DELETE);
    assert_false(d.is_enabled);
    assert_string_equal(d.location, "eastus");
    assert_int_equal(d.n_headers, 1);

    /* Bad updates change nothing. */
    static const char *const bad[] = {
        "{\"name\":\"other1\"}",
        "{\"uri\":\"nope\"}",
        "{\"actions\":[]}",
        "{\"scope\":null}",
        "{\"zzz\":1}",
        "{\"enabled\":1}",
        "[1]",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        p = parse_json(bad[i]);
        assert_int_equal(webhook_def_patch(&d, p, &e), -1);
        assert_int_equal(e.code, ERR_BAD_REQUEST);
        if (i == 0)
            assert_string_equal(e.msg, "name cannot be changed");
        json_decref(p);
        assert_string_equal(d.uri, "https://b/x");
        assert_int_equal(d.n_headers, 1);
    }

    /* customHeaders replaces the set; null clears it. */
    p = parse_json("{\"customHeaders\":{\"X-B\":\"2\",\"X-C\":\"3\"}}");
    assert_int_equal(webhook_def_patch(&d, p, &e), 0);
    json_decref(p);
    assert_int_equal(d.n_headers, 2);
    assert_string_equal(d.headers[0].name, "X-B");
    p = parse_json("{\"customHeaders\":null}");
    assert_int_equal(webhook_def_patch(&d, p, &e), 0);
    json_decref(p);
    assert_int_equal(d.n_headers, 0);
    webhook_def_fini(&d);
}

/* Matching ---------------------------------------------------------------- */

static void test_matches(void **state)
{
    (void)state;
    static const struct {
        const char *scope;
        unsigned actions;
        bool is_enabled;
        const char *region, *action, *repo;
        bool expect;
    } cases[] = {
        {"*", WEBHOOK_ACTION_PUSH, true, "eastus", "push", "a/b/c", true},
        {"*", WEBHOOK_ACTION_PUSH, true, "westus", "push", "a", false},   /* other region */
        {"*", WEBHOOK_ACTION_PUSH, true, "eastus", "delete", "a", false}, /* action */
        {"*", WEBHOOK_ACTION_PUSH, false, "eastus", "push", "a", false},  /* disabled */
        {"*", WEBHOOK_ACTION_PUSH, true, "eastus", "ping", "a", false},   /* not an action */
        {"golden/*", 3, true, "eastus", "delete", "golden/base", true},
        {"golden/*", 3, true, "eastus", "push", "golden/a/b", true}, /* '*' spans '/' */
        {"golden/*", 3, true, "eastus", "push", "golden", false},
        {"golden/*", 3, true, "eastus", "push", "other/golden/x", false},
        {"app", 3, true, "eastus", "push", "app", true},
        {"app", 3, true, "eastus", "push", "app2", false},
        {"*/base", 3, true, "eastus", "push", "team/x/base", true},
        {"a*b*c", 3, true, "eastus", "push", "aXXbYYc", true},
        {"*", 3, true, "eastus", "push", NULL, false},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct webhook_def d = {.name = "hook1",
                                .location = "eastus",
                                .uri = "http://h/",
                                .actions = cases[i].actions,
                                .scope = (char *)cases[i].scope,
                                .is_enabled = cases[i].is_enabled};
        bool got = webhook_def_matches(&d, cases[i].region, cases[i].action, cases[i].repo);
        if (got != cases[i].expect)
            fail_msg("case %zu: scope %s region %s action %s repo %s: got %d", i, cases[i].scope,
                     cases[i].region, cases[i].action, cases[i].repo ? cases[i].repo : "(null)",
                     got);
    }
}

/* Payload ----------------------------------------------------------------- */

static void test_payload_push(void **state)
{
    (void)state;
    struct webhook_effect ev = {.action = "push",
                                .repo = "golden/base",
                                .tag = "v1",
                                .digest = "sha256:abc",
                                .media_type = "application/x",
                                .size = 524,
                                .request_id = "r123",
                                .method = "PUT",
                                .host = "reg.example:5000"};
    /* 2026-11-25T12:00:00.007Z */
    char *s = webhook_def_payload("id-1", INT64_C(1795608000007), "eastus", &ev);
    json_t *v = parse_json(s);
    assert_string_equal(json_string_value(json_object_get(v, "id")), "id-1");
    assert_string_equal(json_string_value(json_object_get(v, "timestamp")),
                        "2026-11-25T12:00:00.007Z");
    assert_string_equal(json_string_value(json_object_get(v, "action")), "push");
    assert_string_equal(json_string_value(json_object_get(v, "region")), "eastus");
    json_t *t = json_object_get(v, "target");
    assert_string_equal(json_string_value(json_object_get(t, "mediaType")), "application/x");
    assert_int_equal(json_integer_value(json_object_get(t, "size")), 524);
    assert_int_equal(json_integer_value(json_object_get(t, "length")), 524);
    assert_string_equal(json_string_value(json_object_get(t, "digest")), "sha256:abc");
    assert_string_equal(json_string_value(json_object_get(t, "repository")), "golden/base");
    assert_string_equal(json_string_value(json_object_get(t, "tag")), "v1");
    json_t *r = json_object_get(v, "request");
    assert_string_equal(json_string_value(json_object_get(r, "id")), "r123");
    assert_string_equal(json_string_value(json_object_get(r, "host")), "reg.example:5000");
    assert_string_equal(json_string_value(json_object_get(r, "method")), "PUT");
    assert_int_equal(json_object_size(v), 6);
    json_decref(v);
    free(s);
}

static void test_payload_partial(void **state)
{
    (void)state;
    /* Unknown members are left out: no tag, no size, no media type, a Host that is not
     * UTF-8. */
    struct webhook_effect ev = {.action = "delete",
                                .repo = "app",
                                .digest = "sha256:d",
                                .size = -1,
                                .method = "DELETE",
                                .host = "\xff\xfe"};
    char *s = webhook_def_payload("id-2", 0, "westus", &ev);
    json_t *v = parse_json(s);
    json_t *t = json_object_get(v, "target");
    assert_int_equal(json_object_size(t), 2);
    assert_null(json_object_get(t, "tag"));
    assert_null(json_object_get(t, "size"));
    json_t *r = json_object_get(v, "request");
    assert_int_equal(json_object_size(r), 1);
    assert_string_equal(json_string_value(json_object_get(v, "timestamp")),
                        "1970-01-01T00:00:00.000Z");
    json_decref(v);
    free(s);

    /* A ping has neither target nor request. */
    struct webhook_effect ping = {.action = "ping", .size = -1};
    s = webhook_def_payload("id-3", 1000, "westus", &ping);
    v = parse_json(s);
    assert_string_equal(json_string_value(json_object_get(v, "action")), "ping");
    assert_null(json_object_get(v, "target"));
    assert_null(json_object_get(v, "request"));
    json_decref(v);
    free(s);
}

static void test_management_targets(void **state)
{
    (void)state;
    assert_true(webhook_def_is_management_target("http://127.0.0.1:5000/_meridian/v1/x"));
    assert_true(webhook_def_is_management_target("https://r.example/_meridian/"));
    assert_true(webhook_def_is_management_target("http://r.example:1/_meridian"));
    assert_false(webhook_def_is_management_target("http://r.example/hooks/_meridian/x"));
    assert_false(webhook_def_is_management_target("http://r.example/?next=/_meridian/x"));
    assert_false(webhook_def_is_management_target("http://r.example"));
    assert_false(webhook_def_is_management_target("http://_meridian.example/x"));
}

static void test_delivery_headers(void **state)
{
    (void)state;
    assert_true(webhook_def_is_delivery_header("User-Agent"));
    assert_true(webhook_def_is_delivery_header("x-meridian-EVENT"));
    assert_true(webhook_def_is_delivery_header("X-Meridian-Delivery"));
    assert_true(webhook_def_is_delivery_header("X-Meridian-Webhook"));
    assert_false(webhook_def_is_delivery_header("X-Meridian-Team"));
    assert_false(webhook_def_is_delivery_header("Authorization"));
    /* Parsed (a stored definition of an older version still reads) but refused as new. */
    json_error_t je;
    json_t *v = json_loads("{\"name\":\"hookone\",\"location\":\"eastus\","
                           "\"uri\":\"http://h/x\",\"actions\":[\"push\"],"
                           "\"customHeaders\":{\"X-A\":\"1\",\"user-agent\":\"x\"}}",
                           0, &je);
    assert_non_null(v);
    struct webhook_def d;
    struct err e = {0};
    assert_int_equal(webhook_def_parse(v, &d, &e), 0);
    assert_int_equal(webhook_def_check_new(&d, &e), -1);
    assert_int_equal(e.code, ERR_BAD_REQUEST);
    assert_non_null(strstr(e.msg, "user-agent is set by the registry"));
    webhook_def_fini(&d);
    json_decref(v);
}

static void test_uuid(void **state)
{
    (void)state;
    char out[37];
    webhook_def_format_uuid("0123456789abcdef0123456789abcdef", out);
    assert_string_equal(out, "01234567-89ab-4def-8123-456789abcdef");
    /* version nibble 4 whatever was there; variant 8, 9, a or b keeping the low 2 bits */
    webhook_def_format_uuid("ffffffffffffffffffffffffffffffff", out);
    assert_string_equal(out, "ffffffff-ffff-4fff-bfff-ffffffffffff");
    webhook_def_format_uuid("00000000000050006000000000000000", out);
    assert_string_equal(out, "00000000-0000-4000-a000-000000000000");
}

/* Backoff ----------------------------------------------------------------- */

static void test_backoff(void **state)
{
    (void)state;
    static const struct {
        unsigned attempt;
        int64_t base_ms, cap_ms;
        uint32_t rnd;
        int64_t expect_ms;
    } cases[] = {
        {1, 1000, 300000, 0, 500},    /* half of the base, no jitter */
        {1, 1000, 300000, 500, 1000}, /* the whole base at most */
        {1, 1000, 300000, 501, 500},  /* rnd wraps within the jitter range */
        {2, 1000, 300000, 0, 1000},
        {3, 1000, 300000, 0, 2000},
        {4, 1000, 300000, 4000, 8000},
        {9, 1000, 300000, 0, 128000},
        {10, 1000, 300000, 0, 150000},      /* capped: 256 s > 300 s / 2 ... */
        {10, 1000, 300000, 150000, 300000}, /* ... never above the cap */
        {60, 1000, 300000, UINT32_MAX, 150000 + (int64_t)(UINT32_MAX % 150001)},
        {1000, 1000, 300000, 0, 150000}, /* no overflow however many attempts */
        {1, 1000, 1000, 0, 500},
        {5, 1000, 1000, 0, 500},   /* cap of 1 s: 0.5 to 1 s */
        {1, 5000, 1000, 0, 500},   /* a cap below the base wins */
        {1, 1, 1, 0, 1},           /* never below 1 ms */
        {0, 1000, 300000, 0, 500}, /* attempt 0 is treated as 1 */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int64_t got = webhook_def_backoff_ms(cases[i].attempt, cases[i].base_ms, cases[i].cap_ms,
                                             cases[i].rnd);
        if (got != cases[i].expect_ms)
            fail_msg("case %zu: attempt %u: got %lld ms, expected %lld", i, cases[i].attempt,
                     (long long)got, (long long)cases[i].expect_ms);
    }
    /* Property: within [d/2, d] and monotone in the attempt for equal randomness. */
    int64_t prev = 0;
    for (unsigned a = 1; a < 40; a++) {
        for (uint32_t r = 0; r < 2000; r += 97) {
            int64_t v = webhook_def_backoff_ms(a, 1000, 60000, r);
            assert_true(v >= 1 && v <= 60000);
        }
        int64_t v = webhook_def_backoff_ms(a, 1000, 60000, 0);
        assert_true(v >= prev);
        prev = v;
    }
}

/* Excerpts ---------------------------------------------------------------- */

static void test_excerpt(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        size_t n, max;
        const char *expect;
    } cases[] = {
        {"ok", 2, 100, "ok"},
        {"", 0, 100, ""},
        {"line1\nline2\tx\r", 14, 100, "line1\nline2\tx\r"},
        {"abcdef", 6, 3, "abc..."},
        {"a\x01"
         "b\x7f"
         "c",
         5, 100, "a?b?c"},
        {"caf\xc3\xa9!", 6, 100, "caf\xc3\xa9!"},         /* UTF-8 kept */
        {"caf\xc3\xa9!", 6, 4, "caf..."},                 /* never cut inside a character */
        {"x\xc3(", 3, 100, "x?("},                        /* broken sequence */
        {"\xc0\xaf", 2, 100, "??"},                       /* overlong */
        {"\xed\xa0\x80", 3, 100, "???"},                  /* surrogate */
        {"\xf0\x9f\x98\x80", 4, 100, "\xf0\x9f\x98\x80"}, /* 4-byte */
        {"a\0b", 3, 100, "a?b"},                          /* NUL inside */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *got = webhook_def_excerpt(cases[i].in, cases[i].n, cases[i].max);
        if (strcmp(got, cases[i].expect) != 0)
            fail_msg("case %zu: got \"%s\", expected \"%s\"", i, got, cases[i].expect);
        /* Every excerpt is a valid JSON string. */
        json_t *s = json_string(got);
        assert_non_null(s);
        json_decref(s);
        free(got);
    }
}

/* Delivery queue (metastore_sqlite.c) -------------------------------------- */

struct store {
    char dir[64];
    char path[96];
    struct metastore *ms;
};

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int store_setup(void **state)
{
    struct store *s = xcalloc(1, sizeof(*s));
    snprintf(s->dir, sizeof(s->dir), "/tmp/meridian-wh-XXXXXX");
    if (mkdtemp(s->dir) == NULL)
        return -1;
    snprintf(s->path, sizeof(s->path), "%s/meta.db", s->dir);
    struct err e = {0};
    s->ms = metastore_sqlite_open(s->path, "eastus", &e);
    if (s->ms == NULL)
        return -1;
    *state = s;
    return 0;
}

static int store_teardown(void **state)
{
    struct store *s = *state;
    s->ms->ops->close(s->ms);
    nftw(s->dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
    free(s);
    return 0;
}

static void delivery_make(struct meta_delivery *d, const char *id, const char *webhook,
                          int64_t due_ms)
{
    memset(d, 0, sizeof(*d));
    /* A cut id would make the tests compare against the wrong one. */
    int n = snprintf(d->id, sizeof(d->id), "%s", id);
    assert_true(n >= 0 && (size_t)n < sizeof(d->id));
    d->webhook = (char *)webhook;
    d->action = "push";
    d->payload = "{\"id\":\"x\"}";
    d->state = META_DELIVERY_PENDING;
    d->latency_ms = -1;
    d->created_ms = due_ms;
    d->updated_ms = due_ms;
    d->next_attempt_ms = due_ms;
}

static void test_delivery_queue(void **state)
{
    struct store *s = *state;
    struct metastore *ms = s->ms;
    struct err e = {0};
    struct meta_delivery items[3];
    delivery_make(&items[0], "d1", "hookA", 1000);
    delivery_make(&items[1], "d2", "hookA", 3000);
    delivery_make(&items[2], "d3", "hookB", 2000);
    assert_int_equal(ms->ops->delivery_add(ms, items, 3, &e), 0);
    /* Same id again: refused, and the batch adds nothing. */
    struct meta_delivery dup[2];
    delivery_make(&dup[0], "d9", "hookA", 1);
    delivery_make(&dup[1], "d1", "hookA", 1);
    assert_int_equal(ms->ops->delivery_add(ms, dup, 2, &e), -1);
    assert_int_equal(e.code, ERR_CONFLICT);

    struct meta_delivery_list due;
    int64_t next = 0;
    assert_int_equal(ms->ops->delivery_due(ms, 2500, 0, 10, NULL, 0, &due, &next, &e), 0);
    assert_int_equal(due.n, 2);
    assert_string_equal(due.items[0].id, "d1"); /* oldest due first */
    assert_string_equal(due.items[1].id, "d3");
    assert_string_equal(due.items[0].payload, "{\"id\":\"x\"}");
    assert_int_equal(due.items[0].latency_ms, -1);
    assert_int_equal(next, 3000);

    /* A webhook with a send in flight is skipped: its later deliveries wait for it, and
     * the others are not held behind it. */
    struct meta_delivery_list skipped;
    const char *busy[] = {"hookA"};
    assert_int_equal(ms->ops->delivery_due(ms, 2500, 0, 10, busy, 1, &skipped, &next, &e), 0);
    assert_int_equal(skipped.n, 1);
    assert_string_equal(skipped.items[0].id, "d3");
    meta_delivery_list_fini(&skipped);

    /* d1 fails once (retry at 5000), d3 is delivered. */
    struct meta_delivery *d1 = &due.items[0];
    d1->attempts = 1;
    d1->status_code = 503;
    d1->latency_ms = 12;
    free(d1->response);
    d1->response = xstrdup("busy");
    d1->next_attempt_ms = 5000;
    d1->updated_ms = 2500;
    assert_int_equal(ms->ops->delivery_update(ms, d1, &e), 0);
    due.items[1].state = META_DELIVERY_DELIVERED;
    due.items[1].attempts = 1;
    due.items[1].status_code = 200;
    assert_int_equal(ms->ops->delivery_update(ms, &due.items[1], &e), 0);
    meta_delivery_list_fini(&due);

    assert_int_equal(ms->ops->delivery_due(ms, 2500, 0, 10, NULL, 0, &due, &next, &e), 0);
    assert_int_equal(due.n, 0);
    assert_int_equal(next, 3000);
    meta_delivery_list_fini(&due);
    assert_int_equal(ms->ops->delivery_due(ms, 10000, 0, 1, NULL, 0, &due, &next, &e), 0);
    assert_int_equal(due.n, 1);
    assert_string_equal(due.items[0].id, "d2");
    assert_int_equal(next, 10000); /* the batch was full: look again at once */
    meta_delivery_list_fini(&due);

    /* Newest first, per webhook, with what the updates recorded. */
    struct meta_delivery_list list;
    assert_int_equal(ms->ops->delivery_list(ms, "hookA", 10, &list, &e), 0);
    assert_int_equal(list.n, 2);
    assert_string_equal(list.items[0].id, "d2");
    assert_string_equal(list.items[1].id, "d1");
    assert_int_equal(list.items[1].status_code, 503);
    assert_int_equal(list.items[1].latency_ms, 12);
    assert_int_equal(list.items[1].attempts, 1);
    assert_string_equal(list.items[1].response, "busy");
    assert_int_equal(list.items[1].state, META_DELIVERY_PENDING);
    meta_delivery_list_fini(&list);
    assert_int_equal(ms->ops->delivery_list(ms, "hookB", 10, &list, &e), 0);
    assert_int_equal(list.n, 1);
    assert_int_equal(list.items[0].state, META_DELIVERY_DELIVERED);
    meta_delivery_list_fini(&list);

    struct meta_delivery ghost;
    delivery_make(&ghost, "nope", "hookA", 1);
    assert_int_equal(ms->ops->delivery_update(ms, &ghost, &e), -1);
    assert_int_equal(e.code, ERR_NOT_FOUND);
}

static void test_delivery_prune(void **state)
{
    struct store *s = *state;
    struct metastore *ms = s->ms;
    struct err e = {0};
    struct meta_delivery items[6];
    char ids[6][8];
    for (int i = 0; i < 6; i++) {
        snprintf(ids[i], sizeof(ids[i]), "p%d", i);
        delivery_make(&items[i], ids[i], "hookP", 100 + i);
        items[i].state = i < 4 ? META_DELIVERY_DELIVERED : META_DELIVERY_PENDING;
    }
    assert_int_equal(ms->ops->delivery_add(ms, items, 6, &e), 0);
    /* Keep the two newest finished ones and every pending one. */
    assert_int_equal(ms->ops->delivery_prune(ms, "hookP", 2, NULL, &e), 0);
    struct meta_delivery_list list;
    assert_int_equal(ms->ops->delivery_list(ms, "hookP", 100, &list, &e), 0);
    assert_int_equal(list.n, 4);
    assert_string_equal(list.items[0].id, "p5");
    assert_string_equal(list.items[1].id, "p4");
    assert_string_equal(list.items[2].id, "p3");
    assert_string_equal(list.items[3].id, "p2");
    meta_delivery_list_fini(&list);
    /* Told the webhook is gone while a live definition of it exists (re-created since the
     * caller looked): nothing goes, the pending ones are the new webhook's to send. */
    assert_int_equal(ms->ops->object_put(ms, "webhook", "hookP", "{\"url\":\"x\"}", &e), 0);
    assert_int_equal(ms->ops->delivery_prune(ms, "hookP", 0, "webhook", &e), 0);
    assert_int_equal(ms->ops->delivery_list(ms, "hookP", 100, &list, &e), 0);
    assert_int_equal(list.n, 4);
    meta_delivery_list_fini(&list);
    /* The webhook is gone: everything goes. */
    assert_int_equal(ms->ops->object_delete(ms, "webhook", "hookP", &e), 0);
    assert_int_equal(ms->ops->delivery_prune(ms, "hookP", 0, "webhook", &e), 0);
    assert_int_equal(ms->ops->delivery_list(ms, "hookP", 100, &list, &e), 0);
    assert_int_equal(list.n, 0);
    meta_delivery_list_fini(&list);
}

/* Survives a reopen (a restart): the queue is on disk. */
static void test_delivery_durable(void **state)
{
    struct store *s = *state;
    struct err e = {0};
    struct meta_delivery d;
    delivery_make(&d, "keep", "hookR", 5);
    assert_int_equal(s->ms->ops->delivery_add(s->ms, &d, 1, &e), 0);
    s->ms->ops->close(s->ms);
    s->ms = metastore_sqlite_open(s->path, "eastus", &e);
    assert_non_null(s->ms);
    struct meta_delivery_list due;
    int64_t next;
    assert_int_equal(s->ms->ops->delivery_due(s->ms, 10, 0, 10, NULL, 0, &due, &next, &e), 0);
    assert_int_equal(due.n, 1);
    assert_string_equal(due.items[0].id, "keep");
    assert_int_equal(next, INT64_MAX);
    meta_delivery_list_fini(&due);
}

/* webhook_tx_queue's filtering ----------------------------------------------- */

static void put_webhook(struct registry *reg, const char *json)
{
    struct webhook_def d;
    struct err e = {0};
    assert_int_equal(def_from(json, &d, &e), 0);
    assert_int_equal(webhook_save(reg, &d, false, &e), 0);
    webhook_def_fini(&d);
}

static size_t count_deliveries(struct registry *reg, const char *webhook, const char *want_action)
{
    struct meta_delivery_list list;
    struct err e = {0};
    assert_int_equal(reg->ms->ops->delivery_list(reg->ms, webhook, 100, &list, &e), 0);
    size_t n = 0;
    for (size_t i = 0; i < list.n; i++)
        n += strcmp(list.items[i].action, want_action) == 0;
    meta_delivery_list_fini(&list);
    return n;
}

/* An effect's deliveries in a unit of work of their own (the effect itself is not needed
 * to see which webhooks match). */
static void queue_effect(struct registry *reg, const struct webhook_effect *ev)
{
    struct webhook_tx tx;
    struct err e = {0};
    assert_int_equal(webhook_tx_begin(reg, &tx, &e), 0);
    int rc = webhook_tx_queue(&tx, ev, &e);
    assert_int_equal(webhook_tx_end(&tx, rc, &e), 0);
}

static void test_on_effect(void **state)
{
    struct store *s = *state;
    if (s->ms->ops->object_put == NULL)
        skip();
    struct config cfg;
    config_defaults(&cfg);
    free(cfg.region);
    cfg.region = xstrdup("eastus");
    struct registry reg = {.cfg = &cfg, .ms = s->ms}; /* no worker: nothing is sent */
    put_webhook(&reg, "{\"name\":\"allpush\",\"location\":\"eastus\",\"uri\":\"http://h/\","
                      "\"actions\":[\"push\"]}");
    put_webhook(&reg, "{\"name\":\"goldall\",\"location\":\"eastus\",\"uri\":\"http://h/\","
                      "\"actions\":[\"push\",\"delete\"],\"scope\":\"golden/*\"}");
    put_webhook(&reg, "{\"name\":\"westhook\",\"location\":\"westus\",\"uri\":\"http://h/\","
                      "\"actions\":[\"push\",\"delete\"]}");
    put_webhook(&reg, "{\"name\":\"offhook\",\"location\":\"eastus\",\"uri\":\"http://h/\","
                      "\"actions\":[\"push\"],\"enabled\":false}");

    struct webhook_effect push = {.action = "push",
                                  .repo = "golden/base",
                                  .tag = "v1",
                                  .digest = "sha256:aa",
                                  .media_type = "m",
                                  .size = 3};
    queue_effect(&reg, &push);
    struct webhook_effect push2 = {
        .action = "push", .repo = "apps/web", .digest = "sha256:bb", .size = 3};
    queue_effect(&reg, &push2);
    struct webhook_effect del = {
        .action = "delete", .repo = "golden/base", .digest = "sha256:aa", .size = -1};
    queue_effect(&reg, &del);

    assert_int_equal(count_deliveries(&reg, "allpush", "push"), 2);
    assert_int_equal(count_deliveries(&reg, "allpush", "delete"), 0);
    assert_int_equal(count_deliveries(&reg, "goldall", "push"), 1);
    assert_int_equal(count_deliveries(&reg, "goldall", "delete"), 1);
    assert_int_equal(count_deliveries(&reg, "westhook", "push"), 0);
    assert_int_equal(count_deliveries(&reg, "offhook", "push"), 0);

    /* The stored payload is the documented one. */
    struct meta_delivery_list list;
    struct err e = {0};
    assert_int_equal(s->ms->ops->delivery_list(s->ms, "goldall", 10, &list, &e), 0);
    json_t *p = parse_json(list.items[1].payload);
    assert_string_equal(json_string_value(json_object_get(p, "id")), list.items[1].id);
    assert_string_equal(json_string_value(json_object_get(p, "region")), "eastus");
    assert_string_equal(json_string_value(json_object_get(json_object_get(p, "target"), "tag")),
                        "v1");
    json_decref(p);
    meta_delivery_list_fini(&list);

    /* Ping: only from the webhook's own region. */
    char id[37];
    assert_int_equal(webhook_ping(&reg, "allpush", id, &e), 0);
    assert_int_equal(count_deliveries(&reg, "allpush", "ping"), 1);
    assert_int_equal(webhook_ping(&reg, "westhook", id, &e), -1);
    assert_int_equal(e.code, ERR_CONFLICT);
    assert_non_null(strstr(e.msg, "westus"));
    assert_int_equal(webhook_ping(&reg, "nohook1", id, &e), -1);
    assert_int_equal(e.code, ERR_NOT_FOUND);

    /* Deleting a webhook forgets its deliveries here. */
    assert_int_equal(webhook_delete(&reg, "goldall", &e), 0);
    assert_int_equal(count_deliveries(&reg, "goldall", "push"), 0);
    assert_int_equal(webhook_delete(&reg, "goldall", &e), -1);
    assert_int_equal(e.code, ERR_NOT_FOUND);
    config_fini(&cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_parse_full),
        cmocka_unit_test(test_parse_defaults),
        cmocka_unit_test(test_parse_invalid),
        cmocka_unit_test(test_parse_limits),
        cmocka_unit_test(test_patch),
        cmocka_unit_test(test_matches),
        cmocka_unit_test(test_payload_push),
        cmocka_unit_test(test_payload_partial),
        cmocka_unit_test(test_delivery_headers),
        cmocka_unit_test(test_management_targets),
        cmocka_unit_test(test_uuid),
        cmocka_unit_test(test_backoff),
        cmocka_unit_test(test_excerpt),
        cmocka_unit_test_setup_teardown(test_delivery_queue, store_setup, store_teardown),
        cmocka_unit_test_setup_teardown(test_delivery_prune, store_setup, store_teardown),
        cmocka_unit_test_setup_teardown(test_delivery_durable, store_setup, store_teardown),
        cmocka_unit_test_setup_teardown(test_on_effect, store_setup, store_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
