/* libFuzzer target for digest.c. The input is parsed as a digest string (and
 * must round-trip exactly when accepted), then hashed with both algorithms: the
 * result must parse, and hashing it in two pieces (split where the first byte
 * says) must give the same digest as hashing it at once. */
#include <string.h>

#include "digest.h"
#include "fuzz.h"
#include "util.h"

static void check_canonical(const struct digest *d)
{
    const char *hex = digest_hex(d);
    size_t want = d->alg == DIGEST_SHA256 ? 64 : 128;
    ASSERT(d->alg == DIGEST_SHA256 || d->alg == DIGEST_SHA512);
    ASSERT(strlen(hex) == want);
    ASSERT(strncmp(d->str, digest_alg_name(d->alg), strlen(digest_alg_name(d->alg))) == 0);
    for (const char *p = hex; *p; p++)
        ASSERT((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f'));
    struct digest again;
    ASSERT(digest_parse(d->str, strlen(d->str), &again, NULL) == 0);
    ASSERT(digest_equal(d, &again));
}

int fuzz_digest_one(const uint8_t *data, size_t size)
{
    struct digest d;
    struct err e = {0};

    if (digest_parse((const char *)data, size, &d, &e) == 0) {
        ASSERT(strlen(d.str) == size);
        ASSERT(memcmp(d.str, data, size) == 0);
        check_canonical(&d);
    } else {
        ASSERT(e.code == ERR_DIGEST_INVALID);
        ASSERT(e.msg[0] != '\0');
        ASSERT(d.str[0] == '\0');
    }

    size_t split = size > 0 ? data[0] % (size + 1) : 0;
    for (int alg = DIGEST_SHA256; alg <= DIGEST_SHA512; alg++) {
        struct digest one;
        struct digest two;
        digest_of_buffer((enum digest_alg)alg, data, size, &one);
        check_canonical(&one);
        struct hasher *h = digest_hasher_new((enum digest_alg)alg);
        digest_hasher_update(h, data, split);
        digest_hasher_update(h, data + split, size - split);
        ASSERT(digest_hasher_len(h) == size);
        digest_hasher_final(h, &two);
        digest_hasher_free(h);
        ASSERT(digest_equal(&one, &two));
    }
    return 0;
}

#ifndef FUZZ_REPLAY
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return fuzz_digest_one(data, size);
}
#endif
