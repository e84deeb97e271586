/* Unit tests for body_pack.c: manifest bodies packed for the metastore come back byte for
 * byte; bodies stored before packing read as themselves; a damaged packed form is an
 * error, never other bytes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

/* cmocka.h needs the four headers above first. */
#include <cmocka.h>

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "body_pack.h"

static const char manifest[] =
    "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\","
    "\"config\":{\"mediaType\":\"application/vnd.oci.image.config.v1+json\",\"digest\":"
    "\"sha256:1143aed0fc24734243c541c69c93e74a00b11839bcea9d7b29acfd586d1ba6ce\",\"size\":64},"
    "\"layers\":[{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+gzip\",\"digest\":"
    "\"sha256:edc9983a5f8a590052203d12c58e8d367f7c694a8746b7b9ef87bcc8f5af9e9f\","
    "\"size\":4096}]}";

/* Packs and unpacks body; returns the stored length. */
static size_t round_trip(const void *body, size_t len)
{
    unsigned char *packed;
    size_t stored_len;
    const void *stored = body_stored(body, len, &packed, &stored_len);
    char *out;
    size_t out_len;
    struct err e = {0};
    assert_int_equal(body_unpack(stored, stored_len, &out, &out_len, &e), 0);
    assert_int_equal(out_len, len);
    assert_memory_equal(out, body, len);
    assert_int_equal(out[out_len], '\0');
    free(out);
    free(packed);
    return stored_len;
}

static void test_manifest_shrinks(void **state)
{
    (void)state;
    size_t len = sizeof(manifest) - 1;
    size_t stored = round_trip(manifest, len);
    /* the dictionary holds what manifests repeat: well under half */
    assert_true(stored * 2 < len);
}

static void test_small_and_empty(void **state)
{
    (void)state;
    assert_int_equal(round_trip("{}", 2), 2); /* not worth packing: stored as it is */
    assert_int_equal(round_trip("", 0), 0);
}

/* len bytes that do not compress (xorshift32 from seed). */
static void fill_noise(unsigned char *buf, size_t len, uint32_t seed)
{
    uint32_t x = seed;
    for (size_t i = 0; i < len; i++) {
        x ^= x << 13, x ^= x >> 17, x ^= x << 5;
        buf[i] = (unsigned char)(x >> 24);
    }
}

/* Bytes that do not compress stay as they are, and a body that starts with NUL (no
 * manifest does, but the store keeps what it is given) is never read as packed. */
static void test_incompressible_and_nul_led(void **state)
{
    (void)state;
    unsigned char noise[512];
    fill_noise(noise, sizeof(noise), 2463534242u);
    noise[0] = '{';
    assert_int_equal(round_trip(noise, sizeof(noise)), sizeof(noise));
    noise[0] = 0;
    assert_int_equal(round_trip(noise, sizeof(noise)), sizeof(noise) + 2);
    assert_int_equal(round_trip("\0", 1), 3);
}

/* body packs to exactly want[0, want_len). */
static void assert_packs_as(const void *body, size_t len, const unsigned char *want,
                            size_t want_len)
{
    unsigned char *packed;
    size_t packed_len;
    body_stored(body, len, &packed, &packed_len);
    assert_non_null(packed);
    assert_int_equal(packed_len, want_len);
    assert_memory_equal(packed, want, want_len);
    free(packed);
}

/* The packed form of a body does not depend on what was packed before it: streams are kept
 * from one body to the next, including one left half-way when a body did not shrink. First
 * in main(): the first packing here is then a stream's first, the form every later one must
 * match (a kept stream reset without its dictionary set again still shrinks this manifest
 * and round-trips, but not to these bytes). */
static void test_packing_does_not_depend_on_the_body_before(void **state)
{
    (void)state;
    size_t len = sizeof(manifest) - 1;
    unsigned char *first;
    size_t first_len;
    body_stored(manifest, len, &first, &first_len);
    assert_non_null(first);

    unsigned char noise[4096];
    fill_noise(noise, sizeof(noise), 88172645u);
    noise[0] = '{';
    for (int round = 0; round < 8; round++) {
        /* does not shrink: its stream stops before the end of the body */
        assert_int_equal(round_trip(noise, sizeof(noise)), sizeof(noise));
        /* the body packed next, by that stream */
        assert_packs_as(manifest, len, first, first_len);
        char shifted[sizeof(manifest)];
        memcpy(shifted, manifest, sizeof(manifest));
        shifted[len - 10] = (char)('0' + round);
        assert_true(round_trip(shifted, len) < len);
        /* and after a body that did shrink */
        assert_packs_as(manifest, len, first, first_len);
    }
    free(first);
}

/* The rule in one place: what is stored is the body itself (nothing to free) unless
 * packing makes it smaller (NUL, then 1) or it starts with NUL (NUL, then 0, then it). */
static void test_stored_form(void **state)
{
    (void)state;
    static const struct {
        const char *body;
        size_t len;
        bool is_itself;
        unsigned char method; /* second byte of a packed form */
    } cases[] = {
        {"", 0, true, 0},          {"{}", 2, true, 0},
        {"{\"a\":1}", 7, true, 0}, {manifest, sizeof(manifest) - 1, false, 1},
        {"\0", 1, false, 0},       {"\0{}", 3, false, 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        unsigned char *packed = (unsigned char *)"unset";
        size_t stored_len = 0;
        const void *stored = body_stored(cases[i].body, cases[i].len, &packed, &stored_len);
        if (cases[i].is_itself) {
            assert_ptr_equal(stored, cases[i].body);
            assert_null(packed);
            assert_int_equal(stored_len, cases[i].len);
            continue;
        }
        assert_ptr_equal(stored, packed);
        assert_int_equal(packed[0], 0);
        assert_int_equal(packed[1], cases[i].method);
        if (cases[i].method == 0) {
            assert_int_equal(stored_len, cases[i].len + 2);
            assert_memory_equal(packed + 2, cases[i].body, cases[i].len);
        } else {
            assert_true(stored_len < cases[i].len);
        }
        free(packed);
    }
}

/* What every version before packing stored (the body) reads as itself. */
static void test_plain_stored_body(void **state)
{
    (void)state;
    char *out;
    size_t out_len;
    struct err e = {0};
    assert_int_equal(body_unpack(manifest, sizeof(manifest) - 1, &out, &out_len, &e), 0);
    assert_int_equal(out_len, sizeof(manifest) - 1);
    assert_string_equal(out, manifest);
    free(out);
}

static void test_damaged_is_an_error(void **state)
{
    (void)state;
    unsigned char *packed;
    size_t packed_len;
    body_stored(manifest, sizeof(manifest) - 1, &packed, &packed_len);
    assert_non_null(packed);
    char *out = NULL;
    size_t out_len;
    struct err e = {0};
    /* cut short */
    assert_int_equal(body_unpack(packed, packed_len - 4, &out, &out_len, &e), -1);
    assert_int_equal(e.code, ERR_INTERNAL);
    assert_null(out);
    /* an unknown form */
    packed[1] = 9;
    e = (struct err){0};
    assert_int_equal(body_unpack(packed, packed_len, &out, &out_len, &e), -1);
    assert_int_equal(e.code, ERR_INTERNAL);
    free(packed);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        /* first: no stream has been kept before it */
        cmocka_unit_test(test_packing_does_not_depend_on_the_body_before),
        cmocka_unit_test(test_manifest_shrinks),
        cmocka_unit_test(test_small_and_empty),
        cmocka_unit_test(test_incompressible_and_nul_led),
        cmocka_unit_test(test_stored_form),
        cmocka_unit_test(test_plain_stored_body),
        cmocka_unit_test(test_damaged_is_an_error),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
