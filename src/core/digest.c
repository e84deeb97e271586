/* Digest parsing and hashing; the only file that includes OpenSSL's hashing API.
 * Parsing is pure. Hashing streams through a fixed buffer: a blob is never held
 * whole in memory. A struct digest that left here successfully is always canonical
 * ("<alg>:<lowercase hex of the right length>").
 *
 * Hashing calls OpenSSL's SHA256_Update/SHA512_Update rather than EVP: the same
 * CPU-accelerated code (SHA-NI, AVX2), but EVP's first use loads OpenSSL 3's provider
 * machinery, 2 MiB of resident memory for nothing we need (docs/performance.md).
 * Those calls are deprecated in OpenSSL 3 in favour of EVP, not removed; the API
 * level below keeps them without warnings. */
#define OPENSSL_API_COMPAT 10101
#include "digest.h"

#include <errno.h>
#include <openssl/sha.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util.h"

#define HASHER_MAGIC 0x48415348u /* "HASH" */
#define FD_READ_BYTES (1024 * 1024)

struct hasher {
    unsigned magic;
    enum digest_alg alg;
    bool is_final;
    uint64_t len;
    union {
        SHA256_CTX sha256;
        SHA512_CTX sha512;
    } ctx;
};

static const struct {
    enum digest_alg alg;
    const char *name;
    size_t hex_len;
} algs[] = {
    {DIGEST_SHA256, "sha256", 64},
    {DIGEST_SHA512, "sha512", 128},
};

static bool is_lower_hex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

int digest_parse(const char *s, size_t s_len, struct digest *out, struct err *e)
{
    if (out != NULL)
        memset(out, 0, sizeof(*out));
    if (s == NULL || s_len == 0)
        return err_set(e, ERR_DIGEST_INVALID, "invalid digest: empty");
    const char *colon = memchr(s, ':', s_len);
    if (colon == NULL)
        return err_set(e, ERR_DIGEST_INVALID, "invalid digest: missing algorithm");
    size_t alg_len = (size_t)(colon - s);
    const char *hex = colon + 1;
    size_t hex_len = s_len - alg_len - 1;
    for (size_t i = 0; i < sizeof(algs) / sizeof(algs[0]); i++) {
        if (strlen(algs[i].name) != alg_len || memcmp(algs[i].name, s, alg_len) != 0)
            continue;
        /* image-spec "Registered algorithms": the encoded part MUST match
         * /[a-f0-9]{64}/ (sha256) or /[a-f0-9]{128}/ (sha512); [A-F] MUST NOT be used. */
        if (hex_len != algs[i].hex_len)
            return err_set(e, ERR_DIGEST_INVALID, "invalid digest: %s needs %zu hex digits",
                           algs[i].name, algs[i].hex_len);
        for (size_t j = 0; j < hex_len; j++) {
            if (!is_lower_hex(hex[j]))
                return err_set(e, ERR_DIGEST_INVALID,
                               "invalid digest: encoded part must be lowercase hex");
        }
        if (out != NULL) {
            out->alg = algs[i].alg;
            memcpy(out->str, s, s_len);
            out->str[s_len] = '\0';
        }
        return 0;
    }
    /* The image-spec grammar admits other algorithms, but a digest we cannot
     * verify is one we must not accept content under. */
    return err_set(e, ERR_DIGEST_INVALID, "invalid digest: unsupported algorithm");
}

const char *digest_hex(const struct digest *d)
{
    const char *colon = strchr(d->str, ':');
    AN(colon);
    return colon + 1;
}

const char *digest_alg_name(enum digest_alg alg)
{
    for (size_t i = 0; i < sizeof(algs) / sizeof(algs[0]); i++) {
        if (algs[i].alg == alg)
            return algs[i].name;
    }
    util_assert_fail("known digest algorithm", __FILE__, __LINE__);
}

bool digest_equal(const struct digest *a, const struct digest *b)
{
    return a->alg == b->alg && strcmp(a->str, b->str) == 0;
}

struct hasher *digest_hasher_new(enum digest_alg alg)
{
    struct hasher *h = xcalloc(1, sizeof(*h));
    h->magic = HASHER_MAGIC;
    h->alg = alg;
    switch (alg) {
    case DIGEST_SHA256:
        ASSERT(SHA256_Init(&h->ctx.sha256) == 1);
        return h;
    case DIGEST_SHA512:
        ASSERT(SHA512_Init(&h->ctx.sha512) == 1);
        return h;
    }
    util_assert_fail("known digest algorithm", __FILE__, __LINE__);
}

void digest_hasher_update(struct hasher *h, const void *p, size_t n)
{
    AN(h);
    ASSERT(h->magic == HASHER_MAGIC);
    ASSERT(!h->is_final);
    if (n == 0)
        return;
    if (h->alg == DIGEST_SHA256)
        ASSERT(SHA256_Update(&h->ctx.sha256, p, n) == 1);
    else
        ASSERT(SHA512_Update(&h->ctx.sha512, p, n) == 1);
    h->len += n;
}

uint64_t digest_hasher_len(const struct hasher *h)
{
    ASSERT(h->magic == HASHER_MAGIC);
    return h->len;
}

void digest_hasher_final(struct hasher *h, struct digest *out)
{
    static const char xdigits[] = "0123456789abcdef";
    unsigned char md[SHA512_DIGEST_LENGTH];
    unsigned int md_len;

    ASSERT(h->magic == HASHER_MAGIC);
    ASSERT(!h->is_final);
    if (h->alg == DIGEST_SHA256) {
        ASSERT(SHA256_Final(md, &h->ctx.sha256) == 1);
        md_len = SHA256_DIGEST_LENGTH;
    } else {
        ASSERT(SHA512_Final(md, &h->ctx.sha512) == 1);
        md_len = SHA512_DIGEST_LENGTH;
    }
    h->is_final = true;

    const char *name = digest_alg_name(h->alg);
    size_t name_len = strlen(name);
    ASSERT(name_len + 1 + 2 * (size_t)md_len < DIGEST_STR_MAX);
    memset(out, 0, sizeof(*out));
    out->alg = h->alg;
    memcpy(out->str, name, name_len);
    out->str[name_len] = ':';
    char *hex = out->str + name_len + 1;
    for (unsigned int i = 0; i < md_len; i++) {
        hex[2 * i] = xdigits[md[i] >> 4];
        hex[2 * i + 1] = xdigits[md[i] & 15];
    }
    hex[2 * md_len] = '\0';
}

void digest_hasher_free(struct hasher *h)
{
    if (h == NULL)
        return;
    ASSERT(h->magic == HASHER_MAGIC);
    h->magic = 0;
    free(h);
}

void digest_of_buffer(enum digest_alg alg, const void *p, size_t n, struct digest *out)
{
    struct hasher *h = digest_hasher_new(alg);
    digest_hasher_update(h, p, n);
    digest_hasher_final(h, out);
    digest_hasher_free(h);
}

int digest_of_fd(enum digest_alg alg, int fd, uint64_t len, struct digest *out)
{
    int rc = -1;
    int saved_errno = 0;
    uint64_t off = 0;
    /* Heap, not stack: request threads may run on small stacks. */
    unsigned char *chunk = xmalloc(FD_READ_BYTES);
    struct hasher *h = digest_hasher_new(alg);

    memset(out, 0, sizeof(*out));
    while (off < len) {
        size_t want = FD_READ_BYTES;
        if (len - off < want)
            want = (size_t)(len - off);
        ssize_t got = pread(fd, chunk, want, (off_t)off);
        if (got < 0) {
            if (errno == EINTR)
                continue;
            saved_errno = errno;
            goto out;
        }
        if (got == 0) {
            /* The file is shorter than the caller says: its content is not the
             * blob the caller thinks it is. */
            saved_errno = EIO;
            goto out;
        }
        digest_hasher_update(h, chunk, (size_t)got);
        off += (uint64_t)got;
    }
    digest_hasher_final(h, out);
    rc = 0;
out:
    digest_hasher_free(h);
    free(chunk);
    if (rc != 0)
        errno = saved_errno;
    return rc;
}
