/* Unit tests for image_version.c: version strings and order, dates, definitions and
 * publishing profiles (defaults, validation, updates that change nothing when refused),
 * placement, the region-local latest and the aggregated state. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

/* cmocka.h needs the four headers above first. */
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "image_version.h"

static const struct iv_region regions[] = {{"eastus", 1, NULL}, {"westus", 1, NULL}, {"westeurope", 1, NULL}};
static const struct iv_world world = {regions, 3, 1764000000000};

static void test_version_table(void **state)
{
    static const struct {
        const char *s;
        bool is_valid;
    } cases[] = {
        {"1.0.0", true},
        {"0.0.0", true},
        {"10.20.30", true},
        {"2147483647.0.1", true},
        {"2147483648.0.1", false},
        {"1.0", false},
        {"1.0.0.0", false},
        {"01.0.0", false},
        {"1.00.0", false},
        {"v1.0.0", false},
        {"1.0.0-rc1", false},
        {"latest", false},
        {"", false},
        {"1..0", false},
        {"1.0.", false},
        {".1.0", false},
        {"1.0.0 ", false},
        {"-1.0.0", false},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int rc = iv_version_parse(cases[i].s, NULL);
        if ((rc == 0) != cases[i].is_valid)
            fail_msg("version \"%s\": got %d", cases[i].s, rc);
    }
}

static void test_version_order(void **state)
{
    (void)state;
    static const char *const sorted[] = {"0.0.1",  "0.1.0", "0.9.9", "0.10.0", "1.0.0",
                                         "1.0.10", "1.2.0", "2.0.0", "10.0.0"};
    for (size_t i = 0; i + 1 < sizeof(sorted) / sizeof(sorted[0]); i++) {
        struct iv_version a, b;
        assert_int_equal(iv_version_parse(sorted[i], &a), 0);
        assert_int_equal(iv_version_parse(sorted[i + 1], &b), 0);
        assert_true(iv_version_cmp(&a, &b) < 0);
        assert_true(iv_version_cmp(&b, &a) > 0);
        assert_int_equal(iv_version_cmp(&a, &a), 0);
    }
}

static void test_dates(void **state)
{
    (void)state;
    int64_t ms;
    assert_int_equal(iv_date_parse("2027-01-01", &ms), 0);
    assert_int_equal(ms, (int64_t)1798761600000);
    assert_int_equal(iv_date_parse("2027-01-01T12:00:00Z", &ms), 0);
    assert_int_equal(ms, (int64_t)1798761600000 + 12 * 3600 * 1000);
    assert_int_equal(iv_date_parse("2028-02-29", &ms), 0);
    static const char *const bad[] = {"2027-02-29",
                                      "2027-13-01",
                                      "2027-00-10",
                                      "2027-1-1",
                                      "20270101",
                                      "2027-01-01T25:00:00Z",
                                      "2027-01-01T10:00:00",
                                      "2027-01-01 10:00:00Z",
                                      "tomorrow",
                                      "",
                                      "1969-12-31"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (iv_date_parse(bad[i], &ms) == 0)
            fail_msg("date \"%s\" accepted", bad[i]);
    }
}

static json_t *parse(const char *text)
{
    json_error_t je;
    json_t *v = json_loads(text, 0, &je);
    if (v == NULL)
        fail_msg("bad test JSON: %s", je.text);
    return v;
}

/* A definition with every default (the body is not kept by iv_definition_new). */
static json_t *definition_of_defaults(const char *repo, const struct iv_world *w, struct err *e)
{
    json_t *body = parse("{}");
    json_t *def = iv_definition_new(repo, body, w, e);
    json_decref(body);
    return def;
}

static const char *target_name(const json_t *rec, size_t i)
{
    return json_string_value(json_object_get(
        json_array_get(json_object_get(json_object_get(rec, "publishingProfile"), "targetRegions"),
                       i),
        "name"));
}

static size_t n_targets(const json_t *rec)
{
    return json_array_size(
        json_object_get(json_object_get(rec, "publishingProfile"), "targetRegions"));
}

static void test_profile_defaults(void **state)
{
    (void)state;
    struct err e = {0};
    /* no definition defaults: every region */
    json_t *def = definition_of_defaults("golden/base", &world, &e);
    assert_non_null(def);
    json_t *rec = iv_profile_new("golden/base", "1.0.0", "westus", def, NULL, &world, &e);
    assert_non_null(rec);
    assert_int_equal(n_targets(rec), 3);
    assert_true(iv_holds(rec, "westeurope"));
    json_decref(rec);
    json_decref(def);
    /* the definition's targets, plus the source region */
    json_t *body = parse("{\"defaultTargetRegions\":[\"eastus=1\",{\"name\":\"westeurope\","
                         "\"excludeFromLatest\":true}],\"excludeFromLatest\":false,"
                         "\"os\":\"linux\"}");
    def = iv_definition_new("golden/base", body, &world, &e);
    assert_non_null(def);
    rec = iv_profile_new("golden/base", "1.2.3", "westus", def, NULL, &world, &e);
    assert_non_null(rec);
    assert_int_equal(n_targets(rec), 3);
    assert_string_equal(target_name(rec, 0), "westus"); /* the source, added first */
    assert_true(iv_holds(rec, "eastus") && iv_holds(rec, "westus"));
    assert_false(iv_is_excluded(rec, "eastus"));
    assert_true(iv_is_excluded(rec, "westeurope"));
    json_decref(rec);
    /* the source is among the named ones: not repeated */
    rec = iv_profile_new("golden/base", "1.2.3", "eastus", def, NULL, &world, &e);
    assert_int_equal(n_targets(rec), 2);
    assert_false(iv_holds(rec, "westus"));
    json_decref(rec);
    /* a body overrides the defaults */
    json_t *b2 = parse("{\"targetRegions\":[\"eastus\"],\"endOfLifeDate\":\"2030-01-01\","
                       "\"replicationMode\":\"Shallow\"}");
    rec = iv_profile_new("golden/base", "2.0.0", "eastus", def, b2, &world, &e);
    assert_non_null(rec);
    assert_int_equal(n_targets(rec), 1);
    json_t *pp = json_object_get(rec, "publishingProfile");
    assert_string_equal(json_string_value(json_object_get(pp, "endOfLifeDate")),
                        "2030-01-01T00:00:00.000Z");
    assert_string_equal(json_string_value(json_object_get(pp, "replicationMode")), "Shallow");
    json_decref(rec);
    json_decref(b2);
    json_decref(def);
    json_decref(body);
}

/* Counts fit the volumes of the requested class a region advertises. */
static void test_counts_by_class(void **state)
{
    (void)state;
    json_t *classes = parse("{\"standard\":3,\"premium\":1}");
    struct iv_region vr[] = {{"eastus", 1, classes}, {"westus", 1, NULL}};
    struct iv_world vw = {vr, 2, 1764000000000};
    static const struct {
        const char *target;
        bool is_ok;
    } cases[] = {
        {"eastus=3", true},          {"eastus=3=standard", true}, {"eastus=4", false},
        {"eastus=1=premium", true}, {"eastus=2=premium", false}, {"eastus=1=archive", false},
        {"westus=1=premium", true}, {"westus=2", false},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char body[128];
        snprintf(body, sizeof(body), "{\"targetRegions\":[\"%s\"]}", cases[i].target);
        json_t *b = parse(body);
        struct err e = {0};
        const char *source = strncmp(cases[i].target, "eastus", 6) == 0 ? "eastus" : "westus";
        json_t *rec = iv_profile_new("golden/base", "1.0.0", source, NULL, b, &vw, &e);
        if (cases[i].is_ok != (rec != NULL))
            fail_msg("%s: expected %s (%s)", cases[i].target, cases[i].is_ok ? "ok" : "refusal",
                     e.code ? err_message(&e) : "accepted");
        json_decref(rec);
        json_decref(b);
    }
    json_decref(classes);
}

/* Each bad body is refused with code and the record is not changed. */
static void test_update_refusals(void **state)
{
    (void)state;
    static const struct {
        const char *body;
        enum err_code code;
    } cases[] = {
        {"{\"addRegions\":[\"mars\"]}", ERR_BAD_REQUEST},
        {"{\"targetRegions\":[\"eastus\",\"mars\"]}", ERR_BAD_REQUEST},
        {"{\"addRegions\":[\"westus=0\"]}", ERR_BAD_REQUEST},
        {"{\"addRegions\":[\"westus=2\"]}", ERR_BAD_REQUEST}, /* one volume */
        {"{\"addRegions\":[{\"name\":\"westus\",\"regionalReplicaCount\":-1}]}", ERR_BAD_REQUEST},
        {"{\"addRegions\":[\"westus=x\"]}", ERR_BAD_REQUEST},
        {"{\"addRegions\":[\"westus=1=BAD CLASS\"]}", ERR_BAD_REQUEST},
        {"{\"targetRegions\":[\"eastus\",\"eastus\"]}", ERR_BAD_REQUEST},
        {"{\"endOfLifeDate\":\"2027-02-30\"}", ERR_BAD_REQUEST},
        {"{\"endOfLifeDate\":5}", ERR_BAD_REQUEST},
        {"{\"replicationMode\":\"Lazy\"}", ERR_BAD_REQUEST},
        {"{\"excludeFromLatest\":\"yes\"}", ERR_BAD_REQUEST},
        {"{\"colour\":\"blue\"}", ERR_BAD_REQUEST},
        {"{\"replicaCount\":0}", ERR_BAD_REQUEST},
        {"{\"removeRegions\":[\"westus\"]}", ERR_BAD_REQUEST}, /* not a target */
        /* the source region stays a target */
        {"{\"removeRegions\":[\"eastus\"],\"allowDeletionOfReplicatedLocations\":true}",
         ERR_BAD_REQUEST},
        {"{\"targetRegions\":[\"westeurope\"],\"allowDeletionOfReplicatedLocations\":true}",
         ERR_BAD_REQUEST},
        /* removing a region needs the safety profile's consent */
        {"{\"removeRegions\":[\"westeurope\"]}", ERR_CONFLICT},
        {"{\"targetRegions\":[\"eastus\"]}", ERR_CONFLICT},
    };
    struct err e = {0};
    json_t *b = parse("{\"targetRegions\":[\"eastus\",\"westeurope\"]}");
    json_t *rec = iv_profile_new("golden/base", "1.0.0", "eastus", NULL, b, &world, &e);
    assert_non_null(rec);
    char *before = json_dumps(rec, JSON_SORT_KEYS);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        json_t *body = parse(cases[i].body);
        struct err ue = {0};
        json_t *out = iv_profile_update(rec, body, &world, &ue);
        if (out != NULL || ue.code != cases[i].code)
            fail_msg("%s: got %s code %d", cases[i].body, out ? "a record" : "NULL", ue.code);
        assert_true(ue.msg[0] != '\0');
        char *after = json_dumps(rec, JSON_SORT_KEYS);
        assert_string_equal(before, after);
        free(after);
        json_decref(body);
    }
    free(before);
    json_decref(rec);
    json_decref(b);
}

static void test_update_changes(void **state)
{
    (void)state;
    struct err e = {0};
    json_t *b = parse("{\"targetRegions\":[\"eastus\"]}");
    json_t *rec = iv_profile_new("golden/base", "1.0.0", "eastus", NULL, b, &world, &e);
    json_t *u = parse("{\"addRegions\":[\"westus\",{\"name\":\"westeurope\","
                      "\"excludeFromLatest\":true}]}");
    json_t *r2 = iv_profile_update(rec, u, &world, &e);
    assert_non_null(r2);
    assert_int_equal(n_targets(r2), 3);
    assert_true(iv_is_excluded(r2, "westeurope"));
    assert_false(iv_is_excluded(r2, "westus"));
    json_t *u2 = parse("{\"removeRegions\":[\"westus\"],"
                       "\"safetyProfile\":{\"allowDeletionOfReplicatedLocations\":true},"
                       "\"publishingProfile\":{\"excludeFromLatest\":true,"
                       "\"endOfLifeDate\":\"2025-06-01\"}}");
    json_t *r3 = iv_profile_update(r2, u2, &world, &e);
    assert_non_null(r3);
    assert_int_equal(n_targets(r3), 2);
    assert_false(iv_holds(r3, "westus"));
    json_t *removing = json_object_get(r3, "removingRegions");
    assert_int_equal(json_array_size(removing), 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(removing, 0), "name")),
                        "westus");
    assert_null(json_object_get(r2, "removingRegions"));
    /* added back: no longer removing */
    json_t *back = parse("{\"addRegions\":[\"westus\"]}");
    json_t *r5 = iv_profile_update(r3, back, &world, &e);
    assert_null(json_object_get(r5, "removingRegions"));
    json_decref(r5);
    json_decref(back);
    assert_true(iv_is_excluded(r3, "eastus"));
    assert_true(iv_is_end_of_life(r3, world.now_ms));
    assert_false(iv_is_end_of_life(r2, world.now_ms));
    json_t *u3 = parse("{\"endOfLifeDate\":null}");
    json_t *r4 = iv_profile_update(r3, u3, &world, &e);
    assert_false(iv_is_end_of_life(r4, world.now_ms));
    json_decref(r4);
    json_decref(u3);
    json_decref(r3);
    json_decref(u2);
    json_decref(r2);
    json_decref(u);
    json_decref(rec);
    json_decref(b);
}

static void test_definition_refusals(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "{\"defaultTargetRegions\":[\"mars\"]}",
        "{\"defaultTargetRegions\":[\"eastus=2\"]}",
        "{\"defaultReplicaCount\":2}", /* does not fit the one-volume regions */
        "{\"defaultReplicaCount\":0}",
        "{\"os\":5}",
        "{\"retention\":1}",
        "{\"excludeFromLatest\":1}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct err e = {0};
        json_t *body = parse(bad[i]);
        json_t *d = iv_definition_new("golden/base", body, &world, &e);
        if (d != NULL || e.code != ERR_BAD_REQUEST)
            fail_msg("%s accepted", bad[i]);
        json_decref(body);
    }
}

static json_t *version_in(const char *version, const char *targets_json, const char *extra)
{
    char text[512];
    snprintf(text, sizeof(text), "{\"targetRegions\":%s%s%s}", targets_json, extra ? "," : "",
             extra ? extra : "");
    json_t *b = parse(text);
    struct err e = {0};
    json_t *rec = iv_profile_new("golden/base", version, "eastus", NULL, b, &world, &e);
    if (rec == NULL)
        fail_msg("%s: %s", text, e.msg);
    json_decref(b);
    return rec;
}

static void test_latest(void **state)
{
    (void)state;
    json_t *v1 = version_in("1.0.0", "[\"eastus\",\"westus\"]", NULL);
    json_t *v2 = version_in("1.10.0", "[\"eastus\",\"westus\"]", NULL);
    json_t *v3 = version_in("1.9.0", "[\"eastus\",\"westus\"]", NULL);
    json_t *v4 = version_in("2.0.0", "[\"eastus\"]", NULL);
    json_t *v5 = version_in("3.0.0", "[\"eastus\",\"westus\"]", "\"excludeFromLatest\":true");
    json_t *v6 =
        version_in("4.0.0", "[\"eastus\",{\"name\":\"westus\",\"excludeFromLatest\":true}]", NULL);
    json_t *v7 = version_in("5.0.0", "[\"eastus\",\"westus\"]", "\"endOfLifeDate\":\"2020-01-01\"");
    struct iv_candidate c[] = {
        {"1.0.0", v1, true}, {"1.10.0", v2, true}, {"1.9.0", v3, true}, {"2.0.0", v4, true},
        {"3.0.0", v5, true}, {"4.0.0", v6, true},  {"5.0.0", v7, true},
    };
    /* eastus: 4.0.0 (3.0.0 excluded everywhere, 5.0.0 past end of life) */
    assert_int_equal(iv_latest(c, 7, "eastus", world.now_ms), 5);
    /* westus: not a target of 2.0.0, 4.0.0 excluded there: 1.10.0 (numeric order) */
    assert_int_equal(iv_latest(c, 7, "westus", world.now_ms), 1);
    /* westeurope holds none */
    assert_int_equal(iv_latest(c, 7, "westeurope", world.now_ms), -1);
    /* not Completed in eastus yet: the next one down */
    c[5].is_completed = false;
    assert_int_equal(iv_latest(c, 7, "eastus", world.now_ms), 3);
    /* before 5.0.0's end of life it is latest */
    assert_int_equal(iv_latest(c, 7, "eastus", 1500000000000), 6);
    assert_int_equal(iv_latest(c, 0, "eastus", world.now_ms), -1);
    json_decref(v1);
    json_decref(v2);
    json_decref(v3);
    json_decref(v4);
    json_decref(v5);
    json_decref(v6);
    json_decref(v7);
}

static void test_aggregate(void **state)
{
    (void)state;
    const char *a[] = {"Completed", "Completed"};
    assert_string_equal(iv_aggregate(a, 2), "Completed");
    const char *b[] = {"Completed", "Pending"};
    assert_string_equal(iv_aggregate(b, 2), "InProgress");
    const char *c[] = {"Pending", "Pending"};
    assert_string_equal(iv_aggregate(c, 2), "Pending");
    const char *d[] = {"Completed", "Failed", "InProgress"};
    assert_string_equal(iv_aggregate(d, 3), "Failed");
    assert_string_equal(iv_aggregate(NULL, 0), "Pending");
}

/* Signature-scheme tags are referrers naming their subject; Shallow applies to the target
 * regions other than the source. */
static void test_referrer_tags_and_shallow(void **state)
{
    (void)state;
    char subject[DIGEST_STR_MAX];
    const char *hex = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    char tag[100];
    static const char *const kinds[] = {"sig", "att", "sbom"};
    for (size_t k = 0; k < 3; k++) {
        snprintf(tag, sizeof(tag), "sha256-%s.%s", hex, kinds[k]);
        subject[0] = '\0';
        assert_true(iv_referrer_tag(tag, subject));
        assert_string_equal(subject + 7, hex);
        assert_memory_equal(subject, "sha256:", 7);
    }
    static const char *const not_referrers[] = {
        "1.0.0", "sha256-0123.sig", "sha512-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef.sig",
        "sha256-0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef.sig",
        "sha256-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef.sigx",
        "sha256-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        "sha256-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0.sig"};
    for (size_t i = 0; i < sizeof(not_referrers) / sizeof(not_referrers[0]); i++)
        assert_false(iv_referrer_tag(not_referrers[i], NULL));
    struct err e = {0};
    json_t *def = definition_of_defaults("golden/base", &world, &e);
    json_t *shallow =
        parse("{\"targetRegions\":[\"westus\",\"eastus\"],\"replicationMode\":\"Shallow\"}");
    json_t *full = parse("{\"targetRegions\":[\"westus\",\"eastus\"]}");
    json_t *rec = iv_profile_new("golden/base", "1.0.0", "westus", def, shallow, &world, &e);
    assert_non_null(rec);
    assert_true(iv_is_shallow_here(rec, "eastus"));
    assert_false(iv_is_shallow_here(rec, "westus"));     /* the source holds everything */
    assert_false(iv_is_shallow_here(rec, "westeurope")); /* not a target */
    json_decref(rec);
    rec = iv_profile_new("golden/base", "1.0.1", "westus", def, full, &world, &e);
    assert_non_null(rec);
    assert_false(iv_is_shallow_here(rec, "eastus"));
    json_decref(rec);
    json_decref(shallow);
    json_decref(full);
    json_decref(def);
}

static void test_retention(void **state)
{
    (void)state;
    struct err e = {0};
    json_t *body = parse("{\"retention\":{\"keepEverywhere\":2,"
                         "\"rollbackRegions\":[\"westeurope\"],\"rollbackDays\":30}}");
    json_t *def = iv_definition_new("golden/base", body, &world, &e);
    assert_non_null(def);
    /* four versions from eastus to every region, published a day apart */
    const int64_t day = 86400000;
    json_t *records = json_array();
    static const char *const versions[] = {"1.0.0", "1.1.0", "2.0.0", "2.1.0"};
    for (int i = 0; i < 4; i++) {
        struct iv_world w = world;
        w.now_ms = world.now_ms + i * day;
        json_array_append_new(
            records, iv_profile_new("golden/base", versions[i], "eastus", def, NULL, &w, &e));
    }
    /* the newest two are kept everywhere, whatever the time */
    int64_t later = world.now_ms + 400 * day;
    assert_null(iv_retention_apply(def, records, 2, later));
    assert_null(iv_retention_apply(def, records, 3, later));
    /* 1.1.0 left the newest two when 2.1.0 came (day 3): reduced from day 33 on */
    assert_null(iv_retention_apply(def, records, 1, world.now_ms + 33 * day - 1));
    json_t *r = iv_retention_apply(def, records, 1, world.now_ms + 33 * day);
    assert_non_null(r);
    assert_int_equal(n_targets(r), 2); /* its source and the rollback region */
    assert_true(iv_holds(r, "eastus") && iv_holds(r, "westeurope"));
    assert_false(iv_holds(r, "westus"));
    /* once reduced, nothing more changes */
    json_array_set(records, 1, r);
    assert_null(iv_retention_apply(def, records, 1, later));
    json_decref(r);
    /* 1.0.0 left them when 2.0.0 came (day 2) */
    assert_null(iv_retention_apply(def, records, 0, world.now_ms + 32 * day - 1));
    r = iv_retention_apply(def, records, 0, world.now_ms + 32 * day);
    assert_non_null(r);
    json_decref(r);
    /* no policy: nothing */
    json_t *plain = definition_of_defaults("golden/base", &world, &e);
    assert_null(iv_retention_apply(plain, records, 0, later));
    json_decref(plain);
    /* bad policies are refused */
    static const char *const bad[] = {
        "{\"retention\":{\"keepEverywhere\":0,\"rollbackRegions\":[],\"rollbackDays\":1}}",
        "{\"retention\":{\"keepEverywhere\":1,\"rollbackRegions\":[\"mars\"],"
        "\"rollbackDays\":1}}",
        "{\"retention\":{\"keepEverywhere\":1,\"rollbackRegions\":[],\"rollbackDays\":-1}}",
        "{\"retention\":{\"keepEverywhere\":1}}",
        "{\"retention\":5}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        json_t *b = parse(bad[i]);
        struct err be = {0};
        json_t *d = iv_definition_new("golden/base", b, &world, &be);
        if (d != NULL || be.code != ERR_BAD_REQUEST)
            fail_msg("%s accepted", bad[i]);
        json_decref(b);
    }
    json_decref(records);
    json_decref(def);
    json_decref(body);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_version_table),
        cmocka_unit_test(test_version_order),
        cmocka_unit_test(test_dates),
        cmocka_unit_test(test_profile_defaults),
        cmocka_unit_test(test_update_refusals),
        cmocka_unit_test(test_update_changes),
        cmocka_unit_test(test_definition_refusals),
        cmocka_unit_test(test_latest),
        cmocka_unit_test(test_aggregate),
        cmocka_unit_test(test_retention),
        cmocka_unit_test(test_referrer_tags_and_shallow),
        cmocka_unit_test(test_counts_by_class),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
