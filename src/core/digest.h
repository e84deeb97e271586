/* Content digests: parsing "algorithm:encoded" and hashing bytes (OpenSSL lives
 * here and nowhere else). Supported algorithms: sha256 and sha512. */
#ifndef MERIDIAN_DIGEST_H
#define MERIDIAN_DIGEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

enum digest_alg { DIGEST_SHA256 = 1, DIGEST_SHA512 = 2 };

#define DIGEST_STR_MAX (7 + 128 + 1) /* "sha512:" + 128 hex + NUL */

struct digest {
    enum digest_alg alg;
    char str[DIGEST_STR_MAX]; /* canonical "sha256:<64 lowercase hex>" */
};

/* Parses and validates s (s_len bytes, need not be NUL-terminated) into *out (may be
 * NULL to only validate; zeroed on failure). The encoded part must be lowercase hex.
 * Errors: ERR_DIGEST_INVALID for bad syntax, unknown algorithm or wrong hex length. */
int digest_parse(const char *s, size_t s_len, struct digest *out, struct err *e);

/* The hex part of a parsed digest (points into d->str). */
const char *digest_hex(const struct digest *d);
/* "sha256" or "sha512". */
const char *digest_alg_name(enum digest_alg alg);
bool digest_equal(const struct digest *a, const struct digest *b);

/* Streaming hasher: new, update any number of times, final once, free (free accepts
 * NULL). Misuse (update after final) is an assertion failure. */
struct hasher;
struct hasher *digest_hasher_new(enum digest_alg alg);
void digest_hasher_update(struct hasher *h, const void *p, size_t n);
/* Bytes fed so far. */
uint64_t digest_hasher_len(const struct hasher *h);
/* Writes the digest of everything fed; the hasher may not be updated afterwards. */
void digest_hasher_final(struct hasher *h, struct digest *out);
void digest_hasher_free(struct hasher *h);

/* One-shot digest of a buffer. */
void digest_of_buffer(enum digest_alg alg, const void *p, size_t n, struct digest *out);
/* Digest of the first `len` bytes of an open fd read from offset 0 (pread, 1 MiB at a
 * time; the fd offset is not moved); -1 with errno on a read error, EIO if the file is
 * shorter than len. *out is zeroed on failure. */
int digest_of_fd(enum digest_alg alg, int fd, uint64_t len, struct digest *out);

#endif
