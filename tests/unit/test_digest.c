/* Unit tests for digest.c: parsing against the image-spec digest rules, known
 * SHA-256/SHA-512 vectors, streaming against one-shot hashing, and digest_of_fd on
 * real temporary files (multi-chunk, short, bad fd). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

/* cmocka.h needs the four headers above first. */
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "digest.h"

#define SHA256_EMPTY "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
#define SHA256_ABC "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
#define SHA512_ABC                                                                                 \
    "sha512:ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a8"      \
    "36ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f"
#define SHA512_EMPTY                                                                               \
    "sha512:cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce47d0d13c5d85f2b0"      \
    "ff8318d2877eec2f63b931bd47417a81a538327af927da3e"
/* FIPS 180-2 two-block message. */
#define MSG_448 "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"
#define SHA256_448 "sha256:248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"

static void test_parse_valid(void **state)
{
    struct digest d;
    struct err e = {0};
    (void)state;
    assert_int_equal(digest_parse(SHA256_ABC, strlen(SHA256_ABC), &d, &e), 0);
    assert_int_equal(d.alg, DIGEST_SHA256);
    assert_string_equal(d.str, SHA256_ABC);
    assert_string_equal(digest_hex(&d), &SHA256_ABC[7]);
    assert_string_equal(digest_alg_name(d.alg), "sha256");

    assert_int_equal(digest_parse(SHA512_ABC, strlen(SHA512_ABC), &d, &e), 0);
    assert_int_equal(d.alg, DIGEST_SHA512);
    assert_string_equal(d.str, SHA512_ABC);
    assert_int_equal(strlen(digest_hex(&d)), 128);
    assert_string_equal(digest_alg_name(d.alg), "sha512");

    /* out may be NULL to only validate. */
    assert_int_equal(digest_parse(SHA256_ABC, strlen(SHA256_ABC), NULL, NULL), 0);
}

static void test_parse_uses_length(void **state)
{
    struct digest d;
    char s[sizeof(SHA256_ABC) + 8];
    (void)state;
    /* Not NUL-terminated after s_len: trailing junk must be ignored. */
    snprintf(s, sizeof(s), "%sjunk", SHA256_ABC);
    assert_int_equal(digest_parse(s, strlen(SHA256_ABC), &d, NULL), 0);
    assert_string_equal(d.str, SHA256_ABC);
    /* ... and counted when inside s_len. */
    assert_int_equal(digest_parse(s, strlen(s), &d, NULL), -1);
}

static void test_parse_invalid_table(void **state)
{
    static const char hex64[] = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
    char buf[512];
    const char *cases[] = {
        "",
        "sha256",
        "sha256:",
        ":",
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
        "sha256:BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD",
        "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015a",
        "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015add",
        "sha256:ga7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
        "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015a\n",
        "SHA256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
        "sha384:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
        "md5:900150983cd24fb0d6963f7d28e17f72",
        "sha256+b64u:LCa0a2j_xo_5m0U8HTBBNBNCLXBkg7-g-YpeiGJm564",
        " sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
        "sha256::ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015a",
        /* sha512 needs 128 hex digits, not 64. */
        "sha512:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct digest d;
        struct err e = {0};
        memset(&d, 0x5a, sizeof(d));
        if (digest_parse(cases[i], strlen(cases[i]), &d, &e) != -1)
            fail_msg("digest_parse(\"%s\") accepted", cases[i]);
        assert_int_equal(e.code, ERR_DIGEST_INVALID);
        assert_true(e.msg[0] != '\0');
        /* Output is zeroed on failure. */
        assert_int_equal(d.alg, 0);
        assert_int_equal(d.str[0], '\0');
    }
    /* An embedded NUL inside s_len. */
    snprintf(buf, sizeof(buf), "sha256:%s", hex64);
    buf[20] = '\0';
    assert_int_equal(digest_parse(buf, 7 + 64, NULL, NULL), -1);
    /* Far too long input is rejected without overflowing out->str. */
    memset(buf, 'a', sizeof(buf));
    memcpy(buf, "sha512:", 7);
    assert_int_equal(digest_parse(buf, sizeof(buf), NULL, NULL), -1);
    assert_int_equal(digest_parse(NULL, 0, NULL, NULL), -1);
}

static void test_equal(void **state)
{
    struct digest a;
    struct digest b;
    struct digest c;
    (void)state;
    assert_int_equal(digest_parse(SHA256_ABC, strlen(SHA256_ABC), &a, NULL), 0);
    assert_int_equal(digest_parse(SHA256_ABC, strlen(SHA256_ABC), &b, NULL), 0);
    assert_int_equal(digest_parse(SHA256_EMPTY, strlen(SHA256_EMPTY), &c, NULL), 0);
    assert_true(digest_equal(&a, &b));
    assert_false(digest_equal(&a, &c));
}

static void test_known_vectors(void **state)
{
    static const struct {
        enum digest_alg alg;
        const char *msg;
        const char *want;
    } cases[] = {
        {DIGEST_SHA256, "", SHA256_EMPTY},    {DIGEST_SHA256, "abc", SHA256_ABC},
        {DIGEST_SHA256, MSG_448, SHA256_448}, {DIGEST_SHA512, "", SHA512_EMPTY},
        {DIGEST_SHA512, "abc", SHA512_ABC},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct digest d;
        digest_of_buffer(cases[i].alg, cases[i].msg, strlen(cases[i].msg), &d);
        assert_string_equal(d.str, cases[i].want);
        assert_int_equal(d.alg, cases[i].alg);
        /* What we produce, we parse. */
        struct digest p;
        assert_int_equal(digest_parse(d.str, strlen(d.str), &p, NULL), 0);
        assert_true(digest_equal(&d, &p));
    }
}

static void test_streaming_equals_one_shot(void **state)
{
    static const size_t chunk_sizes[] = {1, 3, 63, 64, 65, 1000, 4096};
    const size_t n = 10007;
    unsigned char *data = malloc(n);
    (void)state;
    assert_non_null(data);
    for (size_t i = 0; i < n; i++)
        data[i] = (unsigned char)(i * 7 + 3);
    for (int alg = DIGEST_SHA256; alg <= DIGEST_SHA512; alg++) {
        struct digest one;
        digest_of_buffer((enum digest_alg)alg, data, n, &one);
        for (size_t c = 0; c < sizeof(chunk_sizes) / sizeof(chunk_sizes[0]); c++) {
            struct hasher *h = digest_hasher_new((enum digest_alg)alg);
            struct digest got;
            assert_int_equal(digest_hasher_len(h), 0);
            for (size_t off = 0; off < n; off += chunk_sizes[c]) {
                size_t len = n - off < chunk_sizes[c] ? n - off : chunk_sizes[c];
                digest_hasher_update(h, data + off, len);
                /* Empty updates are harmless. */
                digest_hasher_update(h, data, 0);
            }
            assert_int_equal(digest_hasher_len(h), n);
            digest_hasher_final(h, &got);
            digest_hasher_free(h);
            assert_string_equal(got.str, one.str);
        }
    }
    free(data);
    digest_hasher_free(NULL);
}

/* Creates an unlinked temporary file holding n bytes of a pattern; returns its fd
 * and (if data_out) a malloc'd copy of the bytes. */
static int temp_file(size_t n, unsigned char **data_out)
{
    char path[] = "/tmp/meridian-test-digest-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    unlink(path);
    unsigned char *data = malloc(n ? n : 1);
    assert_non_null(data);
    for (size_t i = 0; i < n; i++)
        data[i] = (unsigned char)((i * 2654435761u) >> 13);
    size_t off = 0;
    while (off < n) {
        ssize_t w = write(fd, data + off, n - off);
        assert_true(w > 0);
        off += (size_t)w;
    }
    if (data_out)
        *data_out = data;
    else
        free(data);
    return fd;
}

static void test_of_fd_multi_chunk(void **state)
{
    /* Three MiB and a bit: several 1 MiB reads plus a partial one. */
    const size_t n = 3 * 1024 * 1024 + 17;
    unsigned char *data;
    int fd = temp_file(n, &data);
    struct digest want;
    struct digest got;
    (void)state;
    for (int alg = DIGEST_SHA256; alg <= DIGEST_SHA512; alg++) {
        digest_of_buffer((enum digest_alg)alg, data, n, &want);
        assert_int_equal(digest_of_fd((enum digest_alg)alg, fd, n, &got), 0);
        assert_string_equal(got.str, want.str);
    }
    /* Only the first len bytes count, and the fd offset is left alone (pread). */
    off_t before = lseek(fd, 0, SEEK_CUR);
    digest_of_buffer(DIGEST_SHA256, data, 1000, &want);
    assert_int_equal(digest_of_fd(DIGEST_SHA256, fd, 1000, &got), 0);
    assert_string_equal(got.str, want.str);
    assert_int_equal(lseek(fd, 0, SEEK_CUR), before);
    free(data);
    close(fd);
}

static void test_of_fd_empty_and_short(void **state)
{
    int fd = temp_file(10, NULL);
    struct digest got;
    (void)state;
    assert_int_equal(digest_of_fd(DIGEST_SHA256, fd, 0, &got), 0);
    assert_string_equal(got.str, SHA256_EMPTY);
    errno = 0;
    assert_int_equal(digest_of_fd(DIGEST_SHA256, fd, 11, &got), -1);
    assert_int_equal(errno, EIO);
    assert_int_equal(got.str[0], '\0');
    close(fd);
}

static void test_of_fd_bad_fd(void **state)
{
    struct digest got;
    (void)state;
    errno = 0;
    assert_int_equal(digest_of_fd(DIGEST_SHA256, -1, 5, &got), -1);
    assert_int_equal(errno, EBADF);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_valid),
        cmocka_unit_test(test_parse_uses_length),
        cmocka_unit_test(test_parse_invalid_table),
        cmocka_unit_test(test_equal),
        cmocka_unit_test(test_known_vectors),
        cmocka_unit_test(test_streaming_equals_one_shot),
        cmocka_unit_test(test_of_fd_multi_chunk),
        cmocka_unit_test(test_of_fd_empty_and_short),
        cmocka_unit_test(test_of_fd_bad_fd),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
