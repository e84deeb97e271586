/* Manifest bodies packed for the metastore (body_pack.h).
 *
 * A stored form that starts with a NUL byte is packed (a manifest is JSON text, which never
 * starts with one): the next byte says how, BODY_STORED (the body follows as it is: a
 * body that itself starts with NUL and does not shrink) or BODY_DEFLATE_V1 (a raw deflate
 * stream made with dictionary_v1). Any other stored form is the body itself, as every
 * version before packing wrote it. dictionary_v1 must never change: rows packed with it
 * stay in databases for years; a new dictionary is a new method byte. */
#include "body_pack.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "util.h"

enum { BODY_STORED = 0, BODY_DEFLATE_V1 = 1 };

/* The largest body unpacked: far above any manifest this registry accepts. */
#define BODY_UNPACK_MAX (64u << 20)

/* Strings that manifests, indexes and their descriptors repeat, the commonest last (deflate
 * reaches the end of its window with the shortest distances). */
static const char dictionary_v1[] =
    "\"org.opencontainers.image.created\":\"\"org.opencontainers.image.source\":\""
    "\"org.opencontainers.image.revision\":\"\"org.opencontainers.image.title\":\""
    "\"org.opencontainers.image.description\":\"\"org.opencontainers.image.url\":\""
    "\"org.opencontainers.image.base.name\":\"\"org.opencontainers.image.base.digest\":\""
    "\"org.opencontainers.image.ref.name\":\"\"org.opencontainers.image.licenses\":\""
    "\"org.opencontainers.image.version\":\"\"org.opencontainers.image.vendor\":\""
    "\"urls\":[\"https://\"data\":\"\"subject\":{\"artifactType\":\""
    "\"platform\":{\"architecture\":\"arm64\",\"os\":\"linux\",\"variant\":\"v8\"}"
    "\"platform\":{\"architecture\":\"amd64\",\"os\":\"linux\"}},"
    "{\"mediaType\":\"application/vnd.docker.distribution.manifest.list.v2+json\","
    "{\"mediaType\":\"application/vnd.docker.container.image.v1+json\","
    "{\"mediaType\":\"application/vnd.docker.image.rootfs.diff.tar.gzip\",\"size\":"
    "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.docker.distribution.manifest.v2+json\","
    "\"config\":{\"mediaType\":\"application/vnd.docker.container.image.v1+json\",\"size\":"
    "\"application/vnd.oci.image.layer.v1.tar+zstd\"application/vnd.oci.image.layer.v1.tar"
    "\"application/vnd.oci.empty.v1+json\",\"digest\":\"sha256:"
    "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a\",\"size\":2"
    "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.index.v1+json\","
    "\"manifests\":[{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\","
    "\"annotations\":{\"org.opencontainers.image.version\":\""
    "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\","
    "\"config\":{\"mediaType\":\"application/vnd.oci.image.config.v1+json\",\"digest\":\"sha256:"
    "\"layers\":[{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+gzip\","
    "\"digest\":\"sha256:";

/* Deflate streams kept for the next body. Setting one up allocates about 270 KiB; set up
 * and freed on every push, that memory went back to the kernel at each free (glibc trims a
 * heap whose free top passes 128 KiB) and was faulted in again at the next push: a fifth of
 * a push's CPU once the server had restarted. A few streams kept cover the pushes that run
 * at once on a small machine; beyond them a stream is set up and freed as before. */
#define DEFLATERS_KEPT 4

static pthread_mutex_t deflaters_mu = PTHREAD_MUTEX_INITIALIZER;
static z_stream *deflaters[DEFLATERS_KEPT];
static int n_deflaters;

/* A stream ready for a new raw deflate with dictionary_v1 not yet set, or NULL. */
static z_stream *deflater_take(void)
{
    z_stream *z = NULL;
    AZ(pthread_mutex_lock(&deflaters_mu));
    if (n_deflaters > 0)
        z = deflaters[--n_deflaters];
    AZ(pthread_mutex_unlock(&deflaters_mu));
    if (z != NULL)
        return z;
    z = xcalloc(1, sizeof(*z));
    /* raw deflate (no zlib header: the method byte says what follows) */
    if (deflateInit2(z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
        free(z);
        return NULL;
    }
    return z;
}

/* Returns z for the next body: reset (which keeps its memory), or freed if enough are kept. */
static void deflater_give_back(z_stream *z)
{
    if (deflateReset(z) == Z_OK) {
        AZ(pthread_mutex_lock(&deflaters_mu));
        bool is_kept = n_deflaters < DEFLATERS_KEPT;
        if (is_kept)
            deflaters[n_deflaters++] = z;
        AZ(pthread_mutex_unlock(&deflaters_mu));
        if (is_kept)
            return;
    }
    deflateEnd(z);
    free(z);
}

static int deflate_v1(const void *body, size_t len, unsigned char *out, size_t cap,
                      size_t *out_len)
{
    z_stream *z = deflater_take();
    if (z == NULL)
        return -1;
    int rc = deflateSetDictionary(z, (const Bytef *)dictionary_v1, sizeof(dictionary_v1) - 1);
    z->next_in = (Bytef *)body;
    z->avail_in = (uInt)len;
    z->next_out = out;
    z->avail_out = (uInt)cap;
    if (rc == Z_OK)
        rc = deflate(z, Z_FINISH);
    *out_len = cap - z->avail_out;
    deflater_give_back(z);
    return rc == Z_STREAM_END ? 0 : -1; /* Z_OK or Z_BUF_ERROR: it did not fit in cap */
}

/* The packed form of body[0, len) in *out (malloc'd), or NULL: to be stored as it is. */
static void pack(const void *body, size_t len, unsigned char **out, size_t *out_len)
{
    *out = NULL;
    *out_len = 0;
    if (len == 0 || len > UINT32_MAX)
        return;
    bool is_nul_led = ((const unsigned char *)body)[0] == 0;
    /* Worth packing only if it saves bytes: the output may use at most len - 1 of them. */
    unsigned char *p = xmalloc(len + 2);
    size_t n = 0;
    if (len > 3 && deflate_v1(body, len, p + 2, len - 3, &n) == 0) {
        p[0] = 0;
        p[1] = BODY_DEFLATE_V1;
        *out = p;
        *out_len = n + 2;
        return;
    }
    if (is_nul_led) {
        p[0] = 0;
        p[1] = BODY_STORED;
        memcpy(p + 2, body, len);
        *out = p;
        *out_len = len + 2;
        return;
    }
    free(p);
}

const void *body_stored(const void *body, size_t len, unsigned char **packed, size_t *stored_len)
{
    size_t packed_len;
    pack(body, len, packed, &packed_len);
    if (*packed == NULL) {
        *stored_len = len;
        return body;
    }
    *stored_len = packed_len;
    return *packed;
}

static int inflate_v1(const unsigned char *in, size_t len, char **out, size_t *out_len,
                      struct err *e)
{
    z_stream z;
    memset(&z, 0, sizeof(z));
    if (inflateInit2(&z, -15) != Z_OK)
        return err_set(e, ERR_INTERNAL, "failed to unpack a manifest body: no memory");
    int rc = inflateSetDictionary(&z, (const Bytef *)dictionary_v1, sizeof(dictionary_v1) - 1);
    size_t cap = len * 4 + 64;
    char *buf = xmalloc(cap + 1);
    z.next_in = (Bytef *)in;
    z.avail_in = (uInt)len;
    while (rc == Z_OK) {
        z.next_out = (Bytef *)buf + z.total_out;
        z.avail_out = (uInt)(cap - z.total_out);
        rc = inflate(&z, Z_FINISH);
        if ((rc == Z_BUF_ERROR || rc == Z_OK) && z.avail_out == 0 && cap < BODY_UNPACK_MAX) {
            cap *= 2;
            buf = xrealloc(buf, cap + 1);
            rc = Z_OK;
        }
    }
    size_t n = z.total_out;
    bool is_whole = rc == Z_STREAM_END && z.avail_in == 0;
    inflateEnd(&z);
    if (!is_whole) {
        free(buf);
        return err_set(e, ERR_INTERNAL, "failed to unpack a manifest body: damaged");
    }
    buf[n] = '\0';
    *out = buf;
    *out_len = n;
    return 0;
}

/* A copy of bytes [0, len), NUL-terminated. */
static void copy_out(const unsigned char *p, size_t len, char **out, size_t *out_len)
{
    *out = xmalloc(len + 1);
    if (len > 0)
        memcpy(*out, p, len);
    (*out)[len] = '\0';
    *out_len = len;
}

int body_unpack(const void *stored, size_t len, char **out, size_t *out_len, struct err *e)
{
    const unsigned char *s = stored;
    *out = NULL;
    *out_len = 0;
    if (len == 0 || s[0] != 0) {
        copy_out(s, len, out, out_len);
        return 0;
    }
    if (len > 2 && s[1] == BODY_STORED) {
        copy_out(s + 2, len - 2, out, out_len);
        return 0;
    }
    if (len > 2 && s[1] == BODY_DEFLATE_V1)
        return inflate_v1(s + 2, len - 2, out, out_len, e);
    return err_set(e, ERR_INTERNAL, "failed to unpack a manifest body: unknown form");
}
