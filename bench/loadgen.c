/*
 * loadgen.c: load generator for OCI registries (Meridian, CNCF Distribution, and an nginx static
 * mirror of the same files). It speaks the distribution API the way docker, containerd and skopeo
 * do (HEAD, POST, PATCH, PUT ?digest=, GET with Accept) over libcurl's multi interface, so one
 * thread drives many connections. It never retries and, unless --verify, never hashes what it
 * pulls: the server is measured, not the client. Prints one JSON object on stdout.
 * Invariant: a blob's bytes are a pure function of (seed, size), so any run can rebuild any set.
 *
 * Build: cc -O2 -std=c11 -o loadgen bench/loadgen.c -lcurl -lcrypto -lpthread
 * Usage: loadgen SCENARIO [options]   (loadgen --help lists both)
 */
#define _GNU_SOURCE
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define KIB 1024ull
#define MIB (1024ull * 1024ull)
#define GIB (1024ull * 1024ull * 1024ull)

#define URL_MAX 2048
#define DIGEST_MAX 80 /* "sha256:" + 64 hex + NUL, with room */
#define LAYERS_MAX 64
#define PULL_DIGESTS_MAX 128
#define MANIFEST_MAX_BYTES (4 * MIB)
#define POOL_BYTES (16 * MIB) /* power of two: blob bytes cycle through it */
#define GEN_HDR_BYTES 64      /* unique per blob: makes every seed a distinct digest */
#define CLIENT_MAGIC 0x4c47434cu
#define ERRLOG_MAX 8

#define MT_MANIFEST "application/vnd.oci.image.manifest.v1+json"
#define MT_CONFIG "application/vnd.oci.image.config.v1+json"
#define MT_LAYER "application/vnd.oci.image.layer.v1.tar+gzip"
#define ACCEPT_MANIFESTS                                                                           \
    "Accept: application/vnd.oci.image.manifest.v1+json, "                                         \
    "application/vnd.oci.image.index.v1+json, "                                                    \
    "application/vnd.docker.distribution.manifest.v2+json, "                                       \
    "application/vnd.docker.distribution.manifest.list.v2+json"

enum scenario {
    SC_PUSH,
    SC_PULL,
    SC_MANIFEST,
    SC_MIXED,
    SC_HOT,
    SC_EXPORT,
    SC_LIMIT_SHA256,
    SC_LIMIT_WRITE,
};

enum upload_mode {
    UP_PATCH,   /* POST, one streamed PATCH, PUT ?digest= (docker, containerd) */
    UP_MONO,    /* POST, PUT ?digest= with the whole body (distribution-spec monolithic) */
    UP_CHUNKED, /* POST, PATCH with Content-Range per chunk, PUT ?digest= */
};

enum op_kind {
    OP_PUSH,
    OP_PULL,
    OP_GET,
    OP_HOT,
    OP_KINDS,
};

static const char *const op_names[OP_KINDS] = {"push", "pull", "manifest_get", "hot_pull"};

enum method {
    M_GET,
    M_HEAD,
    M_POST,
    M_PUT,
    M_PATCH,
};

struct config {
    enum scenario scenario;
    const char *url;
    const char *set;
    const char *pull_set;
    const char *out_dir;
    const char *digest_cache;
    const char *cacert; /* PEM the server's certificate is checked against (https URLs) */
    int images;
    int pull_images;
    int layers;
    uint64_t layer_size;
    int clients;
    int threads;
    int repos;
    double duration_s;
    double warmup_s;
    double rate;
    enum upload_mode upload;
    uint64_t chunk_size;
    int files_per_op;
    long timeout_s;
    bool verify;
    bool is_direct;
};

static struct config cfg = {
    .url = "http://127.0.0.1:5000",
    .set = "set",
    .images = 10,
    .layers = 3,
    .layer_size = 64 * KIB,
    .clients = 1,
    .threads = 1,
    .duration_s = 10,
    .rate = 0,
    .upload = UP_PATCH,
    .chunk_size = 64 * MIB,
    .files_per_op = 1,
    .timeout_s = 600,
};

static unsigned char *pool; /* POOL_BYTES of pseudo-random bytes, shared read-only */

/* ---------------------------------------------------------------- small helpers */

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void die(const char *msg)
{
    fprintf(stderr, "loadgen: %s\n", msg);
    exit(2);
}

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n, size);
    if (p == NULL)
        die("out of memory");
    return p;
}

static char *xstrdup(const char *s)
{
    char *p = strdup(s);
    if (p == NULL)
        die("out of memory");
    return p;
}

static uint64_t fnv1a(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s != '\0'; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ull;
    }
    return h;
}

static uint64_t xorshift(uint64_t *state)
{
    uint64_t x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return x * 2685821657736338717ull;
}

/* Parse "123", "64K", "256M", "1G" (binary units). Returns -1 on junk. */
static int parse_size(const char *s, uint64_t *out)
{
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || end == s)
        return -1;
    uint64_t mult = 1;
    if (*end == 'k' || *end == 'K')
        mult = KIB;
    else if (*end == 'm' || *end == 'M')
        mult = MIB;
    else if (*end == 'g' || *end == 'G')
        mult = GIB;
    else if (*end != '\0')
        return -1;
    if (mult != 1 && end[1] != '\0' && strcmp(end + 1, "iB") != 0 && strcmp(end + 1, "B") != 0)
        return -1;
    *out = (uint64_t)v * mult;
    return 0;
}

static int parse_int(const char *s, int min, int max, int *out)
{
    char *end = NULL;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < min || v > max)
        return -1;
    *out = (int)v;
    return 0;
}

static int parse_double(const char *s, double *out)
{
    char *end = NULL;
    errno = 0;
    double v = strtod(s, &end);
    if (errno != 0 || end == s || *end != '\0' || v < 0)
        return -1;
    *out = v;
    return 0;
}

/* ---------------------------------------------------------------- latency histogram */

/*
 * Log-linear histogram of microseconds: exact below 128 us, then 64 sub-buckets per power of
 * two (under 1.6% error), like HdrHistogram with two significant digits. Fixed size, no malloc.
 */
#define HIST_LINEAR 128
#define HIST_SUB 64
#define HIST_BUCKETS (HIST_LINEAR + 58 * HIST_SUB)

struct hist {
    uint64_t count;
    uint64_t max_us;
    uint64_t b[HIST_BUCKETS];
};

static void hist_add(struct hist *h, uint64_t us)
{
    size_t idx;
    if (us < HIST_LINEAR) {
        idx = (size_t)us;
    } else {
        int e = 63 - __builtin_clzll(us); /* >= 7 */
        size_t sub = (size_t)((us >> (e - 6)) & (HIST_SUB - 1));
        idx = HIST_LINEAR + (size_t)(e - 7) * HIST_SUB + sub;
        if (idx >= HIST_BUCKETS)
            idx = HIST_BUCKETS - 1;
    }
    h->b[idx]++;
    h->count++;
    if (us > h->max_us)
        h->max_us = us;
}

static double hist_bucket_us(size_t idx)
{
    if (idx < HIST_LINEAR)
        return (double)idx;
    int e = (int)((idx - HIST_LINEAR) / HIST_SUB) + 7;
    uint64_t sub = (idx - HIST_LINEAR) % HIST_SUB;
    uint64_t lower = (HIST_SUB + sub) << (e - 6);
    uint64_t width = 1ull << (e - 6);
    return (double)lower + (double)width / 2.0;
}

static double hist_pct_ms(const struct hist *h, double pct)
{
    if (h->count == 0)
        return 0;
    uint64_t want = (uint64_t)((double)h->count * pct / 100.0 + 0.999999);
    if (want == 0)
        want = 1;
    uint64_t seen = 0;
    for (size_t i = 0; i < HIST_BUCKETS; i++) {
        seen += h->b[i];
        if (seen >= want) {
            double us = hist_bucket_us(i);
            if (us > (double)h->max_us)
                us = (double)h->max_us;
            return us / 1000.0;
        }
    }
    return (double)h->max_us / 1000.0;
}

static void hist_merge(struct hist *dst, const struct hist *src)
{
    dst->count += src->count;
    if (src->max_us > dst->max_us)
        dst->max_us = src->max_us;
    for (size_t i = 0; i < HIST_BUCKETS; i++)
        dst->b[i] += src->b[i];
}

/* ---------------------------------------------------------------- blob content and digests */

/*
 * A blob is either bytes in memory (config, manifest) or generated: a 64-byte header naming the
 * seed, then the shared pool read from an offset derived from the seed, wrapping around.
 */
struct blob {
    char digest[DIGEST_MAX];
    uint64_t size;
    const unsigned char *mem; /* NULL: generated from hdr + pool */
    uint64_t pool_off;
    char hdr[GEN_HDR_BYTES];
};

static void pool_init(void)
{
    pool = malloc(POOL_BYTES);
    if (pool == NULL)
        die("out of memory");
    uint64_t st = 0x9e3779b97f4a7c15ull;
    for (size_t i = 0; i < POOL_BYTES; i += 8) {
        uint64_t v = xorshift(&st);
        memcpy(pool + i, &v, 8);
    }
}

/* Copy bytes [off, off + n) of blob b into dst. */
static void blob_read(const struct blob *b, uint64_t off, unsigned char *dst, size_t n)
{
    if (b->mem != NULL) {
        memcpy(dst, b->mem + off, n);
        return;
    }
    while (n > 0) {
        size_t k;
        if (off < GEN_HDR_BYTES) {
            k = (size_t)(GEN_HDR_BYTES - off);
            if (k > n)
                k = n;
            memcpy(dst, b->hdr + off, k);
        } else {
            uint64_t p = (b->pool_off + off) & (POOL_BYTES - 1);
            k = (size_t)(POOL_BYTES - p);
            if (k > n)
                k = n;
            memcpy(dst, pool + p, k);
        }
        dst += k;
        off += k;
        n -= k;
    }
}

static void hex_digest(const unsigned char *md, char *out)
{
    static const char hx[] = "0123456789abcdef";
    memcpy(out, "sha256:", 7);
    for (int i = 0; i < 32; i++) {
        out[7 + 2 * i] = hx[md[i] >> 4];
        out[8 + 2 * i] = hx[md[i] & 15];
    }
    out[71] = '\0';
}

static void blob_hash(struct blob *b)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (ctx == NULL || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1)
        die("EVP sha256 init failed");
    if (b->mem != NULL) {
        EVP_DigestUpdate(ctx, b->mem, b->size);
    } else {
        /* The 64-byte header and the pool both sit in memory: hash them in place. */
        uint64_t off = 0;
        while (off < b->size) {
            size_t k;
            if (off < GEN_HDR_BYTES) {
                k = (size_t)(GEN_HDR_BYTES - off);
                if (k > b->size - off)
                    k = (size_t)(b->size - off);
                EVP_DigestUpdate(ctx, b->hdr + off, k);
            } else {
                uint64_t p = (b->pool_off + off) & (POOL_BYTES - 1);
                k = (size_t)(POOL_BYTES - p);
                if (k > b->size - off)
                    k = (size_t)(b->size - off);
                EVP_DigestUpdate(ctx, pool + p, k);
            }
            off += k;
        }
    }
    EVP_DigestFinal_ex(ctx, md, &md_len);
    EVP_MD_CTX_free(ctx);
    hex_digest(md, b->digest);
}

/*
 * Digest cache for big generated blobs: "seed size digest" lines, so the second server and the
 * export for nginx do not hash the same gigabytes again. Small blobs are cheaper to hash.
 */
#define DCACHE_MIN_BYTES (4 * MIB)

struct dcache_entry {
    char *seed;
    uint64_t size;
    char digest[DIGEST_MAX];
};

static struct dcache_entry *dcache;
static size_t dcache_len, dcache_cap;
static pthread_mutex_t dcache_mu = PTHREAD_MUTEX_INITIALIZER;

static void dcache_put_mem(const char *seed, uint64_t size, const char *digest)
{
    if (dcache_len == dcache_cap) {
        dcache_cap = dcache_cap == 0 ? 64 : dcache_cap * 2;
        dcache = realloc(dcache, dcache_cap * sizeof(*dcache));
        if (dcache == NULL)
            die("out of memory");
    }
    dcache[dcache_len].seed = xstrdup(seed);
    dcache[dcache_len].size = size;
    snprintf(dcache[dcache_len].digest, DIGEST_MAX, "%s", digest);
    dcache_len++;
}

static void dcache_load(void)
{
    if (cfg.digest_cache == NULL)
        return;
    FILE *f = fopen(cfg.digest_cache, "r");
    if (f == NULL)
        return;
    char line[512];
    while (fgets(line, sizeof(line), f) != NULL) {
        char *sp1 = strchr(line, ' ');
        if (sp1 == NULL)
            continue;
        char *sp2 = strchr(sp1 + 1, ' ');
        if (sp2 == NULL)
            continue;
        *sp1 = '\0';
        *sp2 = '\0';
        char *nl = strchr(sp2 + 1, '\n');
        if (nl != NULL)
            *nl = '\0';
        uint64_t size = 0;
        if (parse_size(sp1 + 1, &size) != 0 || strlen(sp2 + 1) != 71)
            continue;
        dcache_put_mem(line, size, sp2 + 1);
    }
    fclose(f);
}

static bool dcache_get(const char *seed, uint64_t size, char *digest)
{
    bool found = false;
    pthread_mutex_lock(&dcache_mu);
    for (size_t i = 0; i < dcache_len; i++) {
        if (dcache[i].size == size && strcmp(dcache[i].seed, seed) == 0) {
            memcpy(digest, dcache[i].digest, DIGEST_MAX);
            found = true;
            break;
        }
    }
    pthread_mutex_unlock(&dcache_mu);
    return found;
}

static void dcache_put(const char *seed, uint64_t size, const char *digest)
{
    pthread_mutex_lock(&dcache_mu);
    dcache_put_mem(seed, size, digest);
    if (cfg.digest_cache != NULL) {
        FILE *f = fopen(cfg.digest_cache, "a");
        if (f != NULL) {
            fprintf(f, "%s %" PRIu64 " %s\n", seed, size, digest);
            fclose(f);
        }
    }
    pthread_mutex_unlock(&dcache_mu);
}

static void blob_init_gen(struct blob *b, const char *seed, uint64_t size)
{
    memset(b, 0, sizeof(*b));
    b->size = size;
    b->pool_off = fnv1a(seed) & (POOL_BYTES - 1);
    memset(b->hdr, '\n', GEN_HDR_BYTES);
    int n = snprintf(b->hdr, GEN_HDR_BYTES, "meridian-bench %s %" PRIu64, seed, size);
    if (n >= 0 && n < GEN_HDR_BYTES)
        b->hdr[n] = '\n'; /* snprintf's NUL becomes part of the padding */
    if (size >= DCACHE_MIN_BYTES && dcache_get(seed, size, b->digest))
        return;
    blob_hash(b);
    if (size >= DCACHE_MIN_BYTES)
        dcache_put(seed, size, b->digest);
}

/* ---------------------------------------------------------------- images */

/* One image: L generated layers, a small JSON config, an OCI manifest naming them. */
struct image {
    char repo[160];
    char tag[64];
    int nlayers;
    struct blob layers[LAYERS_MAX];
    struct blob config;
    char *config_json;
    char *manifest;
    size_t manifest_len;
};

static void image_names(const char *set, int idx, int repos, char *repo, size_t repo_len, char *tag,
                        size_t tag_len)
{
    snprintf(repo, repo_len, "bench/%s-%d", set, repos > 0 ? idx % repos : 0);
    snprintf(tag, tag_len, "i%d", idx);
}

static int default_repos(int images)
{
    if (cfg.repos > 0)
        return cfg.repos;
    return images < 16 ? images : 16;
}

/* Builds image idx of set; repos spreads images over that many repositories. */
static void image_build(struct image *im, const char *set, int idx, int repos, int nlayers,
                        uint64_t layer_size)
{
    memset(im, 0, sizeof(*im));
    image_names(set, idx, repos, im->repo, sizeof(im->repo), im->tag, sizeof(im->tag));
    im->nlayers = nlayers;
    for (int j = 0; j < nlayers; j++) {
        char seed[256];
        snprintf(seed, sizeof(seed), "%s/%d/%d", set, idx, j);
        blob_init_gen(&im->layers[j], seed, layer_size);
    }

    size_t cap = 256 + (size_t)nlayers * 80;
    im->config_json = xcalloc(1, cap);
    size_t n = (size_t)snprintf(im->config_json, cap,
                                "{\"architecture\":\"amd64\",\"os\":\"linux\",\"config\":{},"
                                "\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[");
    for (int j = 0; j < nlayers; j++)
        n += (size_t)snprintf(im->config_json + n, cap - n, "%s\"%s\"", j ? "," : "",
                              im->layers[j].digest);
    n += (size_t)snprintf(im->config_json + n, cap - n, "]}}");
    im->config.mem = (const unsigned char *)im->config_json;
    im->config.size = n;
    blob_hash(&im->config);

    cap = 512 + (size_t)nlayers * 160;
    im->manifest = xcalloc(1, cap);
    n = (size_t)snprintf(im->manifest, cap,
                         "{\"schemaVersion\":2,\"mediaType\":\"" MT_MANIFEST "\","
                         "\"config\":{\"mediaType\":\"" MT_CONFIG "\",\"digest\":\"%s\","
                         "\"size\":%" PRIu64 "},\"layers\":[",
                         im->config.digest, im->config.size);
    for (int j = 0; j < nlayers; j++)
        n += (size_t)snprintf(im->manifest + n, cap - n,
                              "%s{\"mediaType\":\"" MT_LAYER "\",\"digest\":\"%s\","
                              "\"size\":%" PRIu64 "}",
                              j ? "," : "", im->layers[j].digest, im->layers[j].size);
    n += (size_t)snprintf(im->manifest + n, cap - n, "]}");
    im->manifest_len = n;
}

static void image_fini(struct image *im)
{
    free(im->config_json);
    free(im->manifest);
    im->config_json = NULL;
    im->manifest = NULL;
}

/* Blob i of an image in push order: layers first, config last. */
static const struct blob *image_blob(const struct image *im, int i)
{
    return i < im->nlayers ? &im->layers[i] : &im->config;
}

/* ---------------------------------------------------------------- clients */

struct body {
    const struct blob *blob;
    const unsigned char *mem; /* raw bytes (manifest) when blob is NULL */
    uint64_t start;
    uint64_t len;
    uint64_t pos;
};

struct worker;

struct client {
    unsigned magic;
    struct worker *w;
    int id;
    CURL *easy;
    struct curl_slist *dyn_hdrs; /* per-request headers that vary (Content-Range) */
    uint64_t rng;

    /* current request */
    enum method method;
    char url[URL_MAX];
    char location[URL_MAX];
    struct body body;
    bool capture;
    char *resp; /* captured manifest body, NUL-terminated, grows to MANIFEST_MAX_BYTES */
    size_t resp_len;
    size_t resp_cap;
    bool resp_overflow;
    EVP_MD_CTX *verify_ctx;
    char errbody[256]; /* start of an uncaptured body, for error messages */
    size_t errbody_len;
    uint64_t req_start_ns;

    /* current operation */
    enum op_kind op;
    int step;
    bool busy;
    uint64_t iter;
    uint64_t op_start_ns;
    uint64_t sched_ns;
    uint64_t op_bytes_up;
    uint64_t op_bytes_down;
    struct image *img; /* push: borrowed from the prebuilt set or owned */
    bool img_owned;
    int blob_i;
    uint64_t chunk_off;
    int target; /* pull/get: index into the pull set */
    char digests[PULL_DIGESTS_MAX][DIGEST_MAX];
    int ndigests;
    int dig_i;
};

struct worker {
    pthread_t thread;
    CURLM *multi;
    struct client *clients;
    int nclients;
    int active;
    /* min-heap of idle clients by sched_ns (pacing for the hot scenario) */
    struct client **heap;
    int heap_len;
    double rate; /* ops/s for this worker, 0 = closed loop */

    struct hist op_hist[OP_KINDS];
    struct hist req_hist;
    uint64_t ops[OP_KINDS];
    uint64_t op_errors[OP_KINDS];
    uint64_t reqs;
    uint64_t req_errors;
    uint64_t bytes_up;
    uint64_t bytes_down;
    uint64_t first_start_ns;
    uint64_t last_end_ns;
};

/* Shared among workers. */
static struct image *prebuilt; /* push: the whole set, built before the clock starts */
static atomic_int next_index;  /* count-based scenarios hand out image indices */
static uint64_t t_start_ns, t_warm_ns, t_deadline_ns;
static bool timed; /* duration-based scenario */
static atomic_int errlog_left = ERRLOG_MAX;
static struct curl_slist *hdr_accept, *hdr_blob_upload, *hdr_manifest_put, *hdr_post;
static char pull_repo[160], pull_tag[64];
static int pull_repos;

static void errlog(const struct client *c, const char *what, long status, const char *detail)
{
    if (atomic_fetch_sub(&errlog_left, 1) <= 0)
        return;
    char body[161];
    const char *src = c->capture && c->resp != NULL ? c->resp : c->errbody;
    size_t n = c->capture ? c->resp_len : c->errbody_len;
    if (n > sizeof(body) - 1)
        n = sizeof(body) - 1;
    for (size_t i = 0; i < n; i++)
        body[i] = src[i] == '\n' || src[i] == '\r' ? ' ' : src[i];
    body[n] = '\0';
    fprintf(stderr, "loadgen: client %d %s: %s %s -> %ld %s %s\n", c->id, op_names[c->op], what,
            c->url, status, detail != NULL ? detail : "", body);
}

static size_t on_read(char *dst, size_t size, size_t nmemb, void *userp)
{
    struct client *c = userp;
    struct body *b = &c->body;
    size_t want = size * nmemb;
    uint64_t left = b->len - b->pos;
    if (want > left)
        want = (size_t)left;
    if (want == 0)
        return 0;
    if (b->blob != NULL)
        blob_read(b->blob, b->start + b->pos, (unsigned char *)dst, want);
    else
        memcpy(dst, b->mem + b->start + b->pos, want);
    b->pos += want;
    return want;
}

static size_t on_write(char *data, size_t size, size_t nmemb, void *userp)
{
    struct client *c = userp;
    size_t n = size * nmemb;
    c->op_bytes_down += n;
    if (c->capture) {
        if (c->resp_len + n > MANIFEST_MAX_BYTES) {
            c->resp_overflow = true;
            return 0;
        }
        if (c->resp_len + n + 1 > c->resp_cap) {
            size_t cap = c->resp_cap == 0 ? 64 * KIB : c->resp_cap;
            while (cap < c->resp_len + n + 1)
                cap *= 2;
            char *p = realloc(c->resp, cap);
            if (p == NULL)
                die("out of memory");
            c->resp = p;
            c->resp_cap = cap;
        }
        memcpy(c->resp + c->resp_len, data, n);
        c->resp_len += n;
        c->resp[c->resp_len] = '\0';
    } else {
        if (c->errbody_len < sizeof(c->errbody)) {
            size_t k = sizeof(c->errbody) - c->errbody_len;
            memcpy(c->errbody + c->errbody_len, data, n < k ? n : k);
            c->errbody_len += n < k ? n : k;
        }
        if (c->verify_ctx != NULL)
            EVP_DigestUpdate(c->verify_ctx, data, n);
    }
    return n;
}

static size_t on_header(char *data, size_t size, size_t nmemb, void *userp)
{
    struct client *c = userp;
    size_t n = size * nmemb;
    if (n > 9 && strncasecmp(data, "location:", 9) == 0) {
        const char *v = data + 9;
        size_t vlen = n - 9;
        while (vlen > 0 && (*v == ' ' || *v == '\t')) {
            v++;
            vlen--;
        }
        while (vlen > 0 && (v[vlen - 1] == '\r' || v[vlen - 1] == '\n' || v[vlen - 1] == ' '))
            vlen--;
        if (vlen >= URL_MAX)
            vlen = URL_MAX - 1;
        memcpy(c->location, v, vlen);
        c->location[vlen] = '\0';
    }
    return n;
}

/* Sets up c->easy for one request and adds it to the multi handle. */
static void client_send(struct client *c, enum method m, const char *url, const struct blob *blob,
                        const unsigned char *mem, uint64_t start, uint64_t len,
                        struct curl_slist *hdrs, bool capture)
{
    CURL *e = c->easy;
    curl_easy_reset(e);
    c->method = m;
    if (url != c->url)
        snprintf(c->url, sizeof(c->url), "%s", url);
    c->location[0] = '\0';
    c->body = (struct body){.blob = blob, .mem = mem, .start = start, .len = len, .pos = 0};
    c->capture = capture;
    c->resp_len = 0;
    c->resp_overflow = false;
    c->errbody_len = 0;

    curl_easy_setopt(e, CURLOPT_URL, c->url);
    curl_easy_setopt(e, CURLOPT_PRIVATE, c);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, c);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, c);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_TIMEOUT, cfg.timeout_s);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT, 30L);
    curl_easy_setopt(e, CURLOPT_BUFFERSIZE, 512L * 1024L);
    curl_easy_setopt(e, CURLOPT_USERAGENT, "meridian-loadgen/1");
    if (cfg.cacert != NULL)
        curl_easy_setopt(e, CURLOPT_CAINFO, cfg.cacert);
    if (hdrs != NULL)
        curl_easy_setopt(e, CURLOPT_HTTPHEADER, hdrs);

    switch (m) {
    case M_GET:
        curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
        /* Registries may redirect blob GETs to storage; clients follow. */
        curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 1L);
        break;
    case M_HEAD:
        curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
        break;
    case M_POST:
        curl_easy_setopt(e, CURLOPT_POST, 1L);
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, "");
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, 0L);
        break;
    case M_PUT:
    case M_PATCH:
        curl_easy_setopt(e, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(e, CURLOPT_INFILESIZE_LARGE, (curl_off_t)len);
        curl_easy_setopt(e, CURLOPT_READFUNCTION, on_read);
        curl_easy_setopt(e, CURLOPT_READDATA, c);
        curl_easy_setopt(e, CURLOPT_UPLOAD_BUFFERSIZE, 1024L * 1024L);
        if (m == M_PATCH)
            curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, "PATCH");
        break;
    }
    c->req_start_ns = now_ns();
    CURLMcode rc = curl_multi_add_handle(c->w->multi, e);
    if (rc != CURLM_OK)
        die(curl_multi_strerror(rc));
}

/* The last response's Location made absolute; a non-NULL digest appends ?digest= or &digest=. */
static int upload_url(struct client *c, const char *digest, char *out, size_t out_len)
{
    if (c->location[0] == '\0')
        return -1;
    char base[URL_MAX];
    if (strncmp(c->location, "http://", 7) == 0 || strncmp(c->location, "https://", 8) == 0)
        snprintf(base, sizeof(base), "%s", c->location);
    else
        snprintf(base, sizeof(base), "%s%s", cfg.url, c->location);
    int n;
    if (digest != NULL)
        n = snprintf(out, out_len, "%s%cdigest=%s", base, strchr(base, '?') ? '&' : '?', digest);
    else
        n = snprintf(out, out_len, "%s", base);
    return n > 0 && (size_t)n < out_len ? 0 : -1;
}

/* Manifest JSON -> every "digest" value in order (config, then layers). No I/O. */
static int parse_digests(const char *json, char (*out)[DIGEST_MAX], int max)
{
    int n = 0;
    const char *p = json;
    while (n < max) {
        p = strstr(p, "\"digest\"");
        if (p == NULL)
            break;
        p += 8;
        while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
            p++;
        if (*p != ':')
            continue;
        p++;
        while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
            p++;
        if (*p != '"')
            continue;
        p++;
        const char *q = strchr(p, '"');
        if (q == NULL || q - p >= DIGEST_MAX)
            break;
        memcpy(out[n], p, (size_t)(q - p));
        out[n][q - p] = '\0';
        n++;
        p = q + 1;
    }
    return n;
}

static void manifest_url(char *out, size_t len, const char *repo, const char *ref)
{
    snprintf(out, len, "%s/v2/%s/manifests/%s", cfg.url, repo, ref);
}

static void blob_url(char *out, size_t len, const char *repo, const char *digest)
{
    snprintf(out, len, "%s/v2/%s/blobs/%s", cfg.url, repo, digest);
}

/* ---------------------------------------------------------------- push */

enum push_step {
    PS_HEAD,
    PS_POST,
    PS_DATA,   /* PATCH (patch, chunked) or PUT with body (mono) */
    PS_FINISH, /* PUT ?digest= with no body */
    PS_MANIFEST,
};

static void push_blob_head(struct client *c)
{
    char url[URL_MAX];
    blob_url(url, sizeof(url), c->img->repo, image_blob(c->img, c->blob_i)->digest);
    c->step = PS_HEAD;
    client_send(c, M_HEAD, url, NULL, NULL, 0, 0, NULL, false);
}

static void push_manifest(struct client *c)
{
    char url[URL_MAX];
    manifest_url(url, sizeof(url), c->img->repo, c->img->tag);
    c->step = PS_MANIFEST;
    c->op_bytes_up += c->img->manifest_len;
    client_send(c, M_PUT, url, NULL, (const unsigned char *)c->img->manifest, 0,
                c->img->manifest_len, hdr_manifest_put, false);
}

static void push_next_blob(struct client *c)
{
    c->blob_i++;
    if (c->blob_i <= c->img->nlayers)
        push_blob_head(c);
    else
        push_manifest(c);
}

/* Sends the next data request of the current blob from c->location. Returns -1 on bad Location. */
static int push_send_data(struct client *c)
{
    const struct blob *b = image_blob(c->img, c->blob_i);
    char url[URL_MAX];
    if (cfg.upload == UP_MONO) {
        if (upload_url(c, b->digest, url, sizeof(url)) != 0)
            return -1;
        c->step = PS_DATA;
        c->chunk_off = b->size;
        c->op_bytes_up += b->size;
        client_send(c, M_PUT, url, b, NULL, 0, b->size, hdr_blob_upload, false);
        return 0;
    }
    if (upload_url(c, NULL, url, sizeof(url)) != 0)
        return -1;
    uint64_t n = b->size - c->chunk_off;
    struct curl_slist *hdrs = hdr_blob_upload;
    if (cfg.upload == UP_CHUNKED) {
        if (n > cfg.chunk_size)
            n = cfg.chunk_size;
        /* distribution-spec: Pushing a blob in chunks (Content-Range: <start>-<end>, inclusive) */
        char range[96];
        snprintf(range, sizeof(range), "Content-Range: %" PRIu64 "-%" PRIu64, c->chunk_off,
                 c->chunk_off + n - 1);
        curl_slist_free_all(c->dyn_hdrs);
        c->dyn_hdrs = curl_slist_append(NULL, "Expect:");
        c->dyn_hdrs = curl_slist_append(c->dyn_hdrs, "Content-Type: application/octet-stream");
        c->dyn_hdrs = curl_slist_append(c->dyn_hdrs, range);
        if (c->dyn_hdrs == NULL)
            die("out of memory");
        hdrs = c->dyn_hdrs;
    }
    c->step = PS_DATA;
    uint64_t off = c->chunk_off;
    c->chunk_off += n;
    c->op_bytes_up += n;
    client_send(c, M_PATCH, url, b, NULL, off, n, hdrs, false);
    return 0;
}

/* Advances a push after a response. Returns 1 if a request is in flight, 0 done, -1 failed. */
static int push_step(struct client *c, long status)
{
    const struct blob *b = image_blob(c->img, c->blob_i);
    char url[URL_MAX];
    switch (c->step) {
    case PS_HEAD:
        if (status == 200) { /* already there: clients skip it */
            push_next_blob(c);
            return 1;
        }
        if (status != 404)
            goto fail;
        snprintf(url, sizeof(url), "%s/v2/%s/blobs/uploads/", cfg.url, c->img->repo);
        c->step = PS_POST;
        c->chunk_off = 0;
        client_send(c, M_POST, url, NULL, NULL, 0, 0, hdr_post, false);
        return 1;
    case PS_POST:
        if (status != 202 || push_send_data(c) != 0)
            goto fail;
        return 1;
    case PS_DATA:
        if (cfg.upload == UP_MONO) {
            if (status != 201)
                goto fail;
            push_next_blob(c);
            return 1;
        }
        if (status != 202)
            goto fail;
        if (c->chunk_off < b->size) {
            if (push_send_data(c) != 0)
                goto fail;
            return 1;
        }
        if (upload_url(c, b->digest, url, sizeof(url)) != 0)
            goto fail;
        c->step = PS_FINISH;
        client_send(c, M_PUT, url, NULL, NULL, 0, 0, hdr_blob_upload, false);
        return 1;
    case PS_FINISH:
        if (status != 201)
            goto fail;
        push_next_blob(c);
        return 1;
    case PS_MANIFEST:
        if (status != 201)
            goto fail;
        return 0;
    }
fail:
    errlog(c, "push", status, c->step == PS_POST || c->step == PS_DATA ? c->location : "");
    return -1;
}

/* ---------------------------------------------------------------- pull, manifest GET, hot */

static void pull_begin(struct client *c, int target)
{
    char url[URL_MAX];
    char repo[160], tag[64];
    image_names(cfg.pull_set, target, pull_repos, repo, sizeof(repo), tag, sizeof(tag));
    manifest_url(url, sizeof(url), repo, tag);
    c->target = target;
    c->step = 0;
    client_send(c, M_GET, url, NULL, NULL, 0, 0, hdr_accept, true);
}

/* Pull: manifest, then every blob it names. Hot: manifest, then its first layer. */
static int pull_step(struct client *c, long status)
{
    char url[URL_MAX];
    if (status != 200) {
        errlog(c, "GET", status, "");
        return -1;
    }
    if (c->op == OP_GET)
        return 0;
    if (c->step == 0) {
        if (c->resp_overflow || c->resp == NULL) {
            errlog(c, "manifest", status, "too large or empty");
            return -1;
        }
        c->ndigests = parse_digests(c->resp, c->digests, PULL_DIGESTS_MAX);
        if (c->ndigests == 0) {
            errlog(c, "manifest", status, "no digests");
            return -1;
        }
        c->dig_i = c->op == OP_HOT && c->ndigests > 1 ? 1 : 0;
        c->step = 1;
    } else {
        if (c->verify_ctx != NULL) {
            unsigned char md[EVP_MAX_MD_SIZE];
            unsigned int md_len = 0;
            char got[DIGEST_MAX];
            EVP_DigestFinal_ex(c->verify_ctx, md, &md_len);
            hex_digest(md, got);
            if (strcmp(got, c->digests[c->dig_i]) != 0) {
                errlog(c, "verify", status, got);
                return -1;
            }
        }
        c->dig_i++;
        if (c->op == OP_HOT || c->dig_i >= c->ndigests)
            return 0;
    }
    char repo[160], tag[64];
    image_names(cfg.pull_set, c->target, pull_repos, repo, sizeof(repo), tag, sizeof(tag));
    if (c->op == OP_HOT)
        snprintf(repo, sizeof(repo), "%s", pull_repo);
    blob_url(url, sizeof(url), repo, c->digests[c->dig_i]);
    if (c->verify_ctx != NULL)
        EVP_DigestInit_ex(c->verify_ctx, EVP_sha256(), NULL);
    client_send(c, M_GET, url, NULL, NULL, 0, 0, NULL, false);
    return 1;
}

/* ---------------------------------------------------------------- op scheduling */

static void heap_push(struct worker *w, struct client *c)
{
    int i = w->heap_len++;
    w->heap[i] = c;
    while (i > 0) {
        int p = (i - 1) / 2;
        if (w->heap[p]->sched_ns <= w->heap[i]->sched_ns)
            break;
        struct client *t = w->heap[p];
        w->heap[p] = w->heap[i];
        w->heap[i] = t;
        i = p;
    }
}

static struct client *heap_pop(struct worker *w)
{
    struct client *top = w->heap[0];
    w->heap[0] = w->heap[--w->heap_len];
    int i = 0;
    for (;;) {
        int l = 2 * i + 1, r = l + 1, m = i;
        if (l < w->heap_len && w->heap[l]->sched_ns < w->heap[m]->sched_ns)
            m = l;
        if (r < w->heap_len && w->heap[r]->sched_ns < w->heap[m]->sched_ns)
            m = r;
        if (m == i)
            break;
        struct client *t = w->heap[m];
        w->heap[m] = w->heap[i];
        w->heap[i] = t;
        i = m;
    }
    return top;
}

/* The mixed scenario's cycle of 20 ops: 1 push, 4 pulls, 15 manifest GETs, interleaved. */
static enum op_kind mixed_kind(uint64_t n)
{
    unsigned slot = (unsigned)(n % 20);
    if (slot == 0)
        return OP_PUSH;
    if (slot % 5 == 0)
        return OP_PULL;
    return OP_GET;
}

/* Starts the client's next operation. Returns false when it has no more work. */
static bool client_begin(struct client *c)
{
    uint64_t now = now_ns();
    if (timed && now >= t_deadline_ns)
        return false;
    c->op_bytes_up = 0;
    c->op_bytes_down = 0;
    c->op_start_ns = now;
    switch (cfg.scenario) {
    case SC_PUSH: {
        int idx = atomic_fetch_add(&next_index, 1);
        if (idx >= cfg.images)
            return false;
        c->op = OP_PUSH;
        c->img = &prebuilt[idx];
        c->img_owned = false;
        c->blob_i = 0;
        push_blob_head(c);
        return true;
    }
    case SC_PULL: {
        int idx = atomic_fetch_add(&next_index, 1);
        if (idx >= cfg.pull_images)
            return false;
        c->op = OP_PULL;
        pull_begin(c, idx);
        return true;
    }
    case SC_MANIFEST:
        c->op = OP_GET;
        pull_begin(c, (int)(xorshift(&c->rng) % (uint64_t)cfg.pull_images));
        return true;
    case SC_HOT: {
        char url[URL_MAX];
        c->op = OP_HOT;
        c->op_start_ns = c->sched_ns != 0 ? c->sched_ns : now;
        c->step = 0;
        manifest_url(url, sizeof(url), pull_repo, pull_tag);
        client_send(c, M_GET, url, NULL, NULL, 0, 0, hdr_accept, true);
        return true;
    }
    case SC_MIXED: {
        c->op = mixed_kind(c->iter + (uint64_t)c->id * 7);
        if (c->op == OP_PUSH) {
            char set[192];
            snprintf(set, sizeof(set), "%s-c%d", cfg.set, c->id);
            c->img = xcalloc(1, sizeof(*c->img));
            c->img_owned = true;
            /* Built on the clock, as a real client digests its layers before pushing. */
            image_build(c->img, set, (int)c->iter, 1, cfg.layers, cfg.layer_size);
            c->blob_i = 0;
            push_blob_head(c);
        } else {
            pull_begin(c, (int)(xorshift(&c->rng) % (uint64_t)cfg.pull_images));
        }
        return true;
    }
    default:
        die("scenario has no clients");
    }
    return false;
}

/* Starts the client's next operation, keeping the worker's count of busy clients. */
static void client_start(struct client *c)
{
    c->busy = client_begin(c);
    if (c->busy)
        c->w->active++;
}

/* Records a finished operation and starts or schedules the next one. */
static void client_op_done(struct client *c, bool ok)
{
    struct worker *w = c->w;
    uint64_t now = now_ns();
    bool counted = !timed || (now >= t_warm_ns && now <= t_deadline_ns);
    if (counted) {
        if (ok) {
            w->ops[c->op]++;
            hist_add(&w->op_hist[c->op], (now - c->op_start_ns) / 1000);
            w->bytes_up += c->op_bytes_up;
            w->bytes_down += c->op_bytes_down;
        } else {
            w->op_errors[c->op]++;
        }
        if (w->first_start_ns == 0 || c->op_start_ns < w->first_start_ns)
            w->first_start_ns = c->op_start_ns;
        if (now > w->last_end_ns)
            w->last_end_ns = now;
    }
    if (c->img_owned) {
        image_fini(c->img);
        free(c->img);
    }
    c->img = NULL;
    c->img_owned = false;
    c->iter++;
    c->busy = false;
    w->active--;
    if (w->rate > 0) {
        uint64_t interval = (uint64_t)((double)w->nclients * 1e9 / w->rate);
        c->sched_ns += interval;
        if (timed && c->sched_ns >= t_deadline_ns)
            return; /* nothing more is due before the deadline */
        heap_push(w, c);
        return;
    }
    client_start(c);
}

static void on_done(struct client *c, CURLcode res)
{
    struct worker *w = c->w;
    long status = 0;
    uint64_t now = now_ns();
    curl_easy_getinfo(c->easy, CURLINFO_RESPONSE_CODE, &status);
    bool counted = !timed || (now >= t_warm_ns && now <= t_deadline_ns);
    if (counted) {
        w->reqs++;
        hist_add(&w->req_hist, (now - c->req_start_ns) / 1000);
    }
    if (res != CURLE_OK) {
        if (counted)
            w->req_errors++;
        errlog(c, "transfer", status, curl_easy_strerror(res));
        client_op_done(c, false);
        return;
    }
    int r;
    if (c->op == OP_PUSH)
        r = push_step(c, status);
    else
        r = pull_step(c, status);
    if (r < 0 && counted)
        w->req_errors++;
    if (r == 1)
        return;
    client_op_done(c, r == 0);
}

static void *worker_run(void *arg)
{
    struct worker *w = arg;
    for (int i = 0; i < w->nclients; i++) {
        struct client *c = &w->clients[i];
        if (w->rate > 0) {
            /* Spread first requests over one interval: no thundering herd of connects. */
            uint64_t interval = (uint64_t)((double)w->nclients * 1e9 / w->rate);
            c->sched_ns = t_start_ns + interval * (uint64_t)i / (uint64_t)w->nclients;
            heap_push(w, c);
        } else {
            client_start(c);
        }
    }
    for (;;) {
        uint64_t now = now_ns();
        while (w->heap_len > 0 && w->heap[0]->sched_ns <= now) {
            client_start(heap_pop(w));
        }
        if (w->active == 0 && w->heap_len == 0)
            break;
        if (timed && now >= t_deadline_ns)
            break;

        int running = 0;
        curl_multi_perform(w->multi, &running);
        for (;;) {
            int left = 0;
            CURLMsg *msg = curl_multi_info_read(w->multi, &left);
            if (msg == NULL)
                break;
            if (msg->msg != CURLMSG_DONE)
                continue;
            struct client *c = NULL;
            CURL *e = msg->easy_handle;
            CURLcode res = msg->data.result;
            curl_easy_getinfo(e, CURLINFO_PRIVATE, (char **)&c);
            if (c == NULL || c->magic != CLIENT_MAGIC)
                die("bad client pointer from curl");
            curl_multi_remove_handle(w->multi, e);
            on_done(c, res);
        }
        int timeout_ms = 100;
        if (w->heap_len > 0) {
            uint64_t t = now_ns();
            uint64_t s = w->heap[0]->sched_ns;
            timeout_ms = s <= t ? 0 : (int)((s - t) / 1000000ull);
            if (timeout_ms > 100)
                timeout_ms = 100;
        }
        if (timed) {
            uint64_t t = now_ns();
            int to_deadline = t >= t_deadline_ns ? 0 : (int)((t_deadline_ns - t) / 1000000ull);
            if (to_deadline < timeout_ms)
                timeout_ms = to_deadline;
        }
        curl_multi_poll(w->multi, NULL, 0, timeout_ms, NULL);
    }
    /* Abandon whatever is still in flight at the deadline: it is not counted. */
    for (int i = 0; i < w->nclients; i++) {
        struct client *c = &w->clients[i];
        if (c->busy)
            curl_multi_remove_handle(w->multi, c->easy);
        if (c->img_owned) {
            image_fini(c->img);
            free(c->img);
            c->img = NULL;
        }
    }
    return NULL;
}

/* ---------------------------------------------------------------- output */

static void print_hist(FILE *f, const char *name, const struct hist *h)
{
    fprintf(f,
            "\"%s\":{\"count\":%" PRIu64 ",\"p50\":%.3f,\"p90\":%.3f,\"p99\":%.3f,"
            "\"p999\":%.3f,\"max\":%.3f}",
            name, h->count, hist_pct_ms(h, 50), hist_pct_ms(h, 90), hist_pct_ms(h, 99),
            hist_pct_ms(h, 99.9), (double)h->max_us / 1000.0);
}

static const char *scenario_name(enum scenario s)
{
    static const char *const names[] = {"push", "pull",   "manifest",     "mixed",
                                        "hot",  "export", "limit-sha256", "limit-write"};
    return names[s];
}

static int run_clients(void)
{
    if (cfg.clients < 1 || cfg.threads < 1)
        die("--clients and --threads must be >= 1");
    if (cfg.threads > cfg.clients)
        cfg.threads = cfg.clients;
    hdr_accept = curl_slist_append(NULL, ACCEPT_MANIFESTS);
    hdr_blob_upload = curl_slist_append(NULL, "Expect:");
    hdr_blob_upload = curl_slist_append(hdr_blob_upload, "Content-Type: application/octet-stream");
    hdr_manifest_put = curl_slist_append(NULL, "Expect:");
    hdr_manifest_put = curl_slist_append(hdr_manifest_put, "Content-Type: " MT_MANIFEST);
    hdr_post = curl_slist_append(NULL, "Content-Type:");
    if (hdr_accept == NULL || hdr_blob_upload == NULL || hdr_manifest_put == NULL ||
        hdr_post == NULL)
        die("out of memory");

    if (cfg.pull_set == NULL)
        cfg.pull_set = cfg.set;
    if (cfg.pull_images <= 0)
        cfg.pull_images = cfg.images;
    pull_repos = default_repos(cfg.pull_images);
    image_names(cfg.pull_set, 0, pull_repos, pull_repo, sizeof(pull_repo), pull_tag,
                sizeof(pull_tag));

    if (cfg.scenario == SC_PUSH) {
        /* Digest every blob before the clock starts, as a client has its layers ready. */
        prebuilt = xcalloc((size_t)cfg.images, sizeof(*prebuilt));
        int repos = default_repos(cfg.images);
        for (int i = 0; i < cfg.images; i++)
            image_build(&prebuilt[i], cfg.set, i, repos, cfg.layers, cfg.layer_size);
    }

    struct worker *ws = xcalloc((size_t)cfg.threads, sizeof(*ws));
    struct client *cs = xcalloc((size_t)cfg.clients, sizeof(*cs));
    int per = cfg.clients / cfg.threads, extra = cfg.clients % cfg.threads, ci = 0;
    for (int t = 0; t < cfg.threads; t++) {
        struct worker *w = &ws[t];
        w->nclients = per + (t < extra ? 1 : 0);
        w->clients = &cs[ci];
        w->heap = xcalloc((size_t)w->nclients, sizeof(*w->heap));
        w->rate = cfg.rate > 0 ? cfg.rate * w->nclients / cfg.clients : 0;
        w->multi = curl_multi_init();
        if (w->multi == NULL)
            die("curl_multi_init failed");
        curl_multi_setopt(w->multi, CURLMOPT_MAXCONNECTS, (long)w->nclients + 8);
        for (int i = 0; i < w->nclients; i++, ci++) {
            struct client *c = &cs[ci];
            c->magic = CLIENT_MAGIC;
            c->w = w;
            c->id = ci;
            c->rng = 0x853c49e6748fea9bull ^ ((uint64_t)(ci + 1) * 0x9e3779b97f4a7c15ull);
            c->easy = curl_easy_init();
            if (c->easy == NULL)
                die("curl_easy_init failed");
            if (cfg.verify) {
                c->verify_ctx = EVP_MD_CTX_new();
                if (c->verify_ctx == NULL)
                    die("out of memory");
            }
        }
    }

    t_start_ns = now_ns();
    t_warm_ns = t_start_ns + (uint64_t)(cfg.warmup_s * 1e9);
    t_deadline_ns = t_warm_ns + (uint64_t)(cfg.duration_s * 1e9);
    for (int t = 0; t < cfg.threads; t++)
        if (pthread_create(&ws[t].thread, NULL, worker_run, &ws[t]) != 0)
            die("pthread_create failed");
    for (int t = 0; t < cfg.threads; t++)
        pthread_join(ws[t].thread, NULL);
    uint64_t t_end_ns = now_ns();

    struct worker sum;
    memset(&sum, 0, sizeof(sum));
    for (int t = 0; t < cfg.threads; t++) {
        struct worker *w = &ws[t];
        for (int k = 0; k < OP_KINDS; k++) {
            hist_merge(&sum.op_hist[k], &w->op_hist[k]);
            sum.ops[k] += w->ops[k];
            sum.op_errors[k] += w->op_errors[k];
        }
        hist_merge(&sum.req_hist, &w->req_hist);
        sum.reqs += w->reqs;
        sum.req_errors += w->req_errors;
        sum.bytes_up += w->bytes_up;
        sum.bytes_down += w->bytes_down;
        if (w->first_start_ns != 0 &&
            (sum.first_start_ns == 0 || w->first_start_ns < sum.first_start_ns))
            sum.first_start_ns = w->first_start_ns;
        if (w->last_end_ns > sum.last_end_ns)
            sum.last_end_ns = w->last_end_ns;
    }
    double secs;
    if (timed)
        secs = cfg.duration_s;
    else if (sum.last_end_ns > t_start_ns)
        secs = (double)(sum.last_end_ns - t_start_ns) / 1e9;
    else
        secs = (double)(t_end_ns - t_start_ns) / 1e9;
    if (secs <= 0)
        secs = 1e-9;

    struct hist all;
    memset(&all, 0, sizeof(all));
    uint64_t ops = 0, errors = 0;
    for (int k = 0; k < OP_KINDS; k++) {
        hist_merge(&all, &sum.op_hist[k]);
        ops += sum.ops[k];
        errors += sum.op_errors[k];
    }
    double mib = (double)(sum.bytes_up + sum.bytes_down) / (double)MIB;
    printf("{\"scenario\":\"%s\",\"url\":\"%s\",\"set\":\"%s\",\"clients\":%d,\"threads\":%d,"
           "\"ops\":%" PRIu64 ",\"errors\":%" PRIu64 ",\"requests\":%" PRIu64
           ",\"req_errors\":%" PRIu64 ",\"seconds\":%.4f,\"ops_per_s\":%.3f,\"req_per_s\":%.3f,"
           "\"bytes_up\":%" PRIu64 ",\"bytes_down\":%" PRIu64 ",\"mib_per_s\":%.3f,\"rate\":%.1f,",
           scenario_name(cfg.scenario), cfg.url, cfg.set, cfg.clients, cfg.threads, ops, errors,
           sum.reqs, sum.req_errors, secs, (double)ops / secs, (double)sum.reqs / secs,
           sum.bytes_up, sum.bytes_down, mib / secs, cfg.rate);
    print_hist(stdout, "op_ms", &all);
    putchar(',');
    print_hist(stdout, "req_ms", &sum.req_hist);
    printf(",\"kinds\":{");
    bool first = true;
    for (int k = 0; k < OP_KINDS; k++) {
        if (sum.ops[k] == 0 && sum.op_errors[k] == 0)
            continue;
        printf("%s\"%s\":{\"ops\":%" PRIu64 ",\"errors\":%" PRIu64 ",\"ops_per_s\":%.3f,",
               first ? "" : ",", op_names[k], sum.ops[k], sum.op_errors[k],
               (double)sum.ops[k] / secs);
        print_hist(stdout, "op_ms", &sum.op_hist[k]);
        putchar('}');
        first = false;
    }
    printf("}}\n");

    for (int i = 0; i < cfg.clients; i++) {
        curl_easy_cleanup(cs[i].easy);
        curl_slist_free_all(cs[i].dyn_hdrs);
        free(cs[i].resp);
        EVP_MD_CTX_free(cs[i].verify_ctx);
    }
    for (int t = 0; t < cfg.threads; t++) {
        curl_multi_cleanup(ws[t].multi);
        free(ws[t].heap);
    }
    free(cs);
    free(ws);
    if (prebuilt != NULL) {
        for (int i = 0; i < cfg.images; i++)
            image_fini(&prebuilt[i]);
        free(prebuilt);
    }
    curl_slist_free_all(hdr_accept);
    curl_slist_free_all(hdr_blob_upload);
    curl_slist_free_all(hdr_manifest_put);
    curl_slist_free_all(hdr_post);
    return errors == 0 ? 0 : 1;
}

/* ---------------------------------------------------------------- export for nginx */

static int mkdir_p(const char *path)
{
    char tmp[URL_MAX];
    snprintf(tmp, sizeof(tmp), "%s", path);
    for (char *p = tmp + 1; *p != '\0'; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(tmp, 0755) != 0 && errno != EEXIST)
            return -1;
        *p = '/';
    }
    if (mkdir(tmp, 0755) != 0 && errno != EEXIST)
        return -1;
    return 0;
}

static int write_blob_file(const char *path, const struct blob *b)
{
    struct stat st;
    if (stat(path, &st) == 0 && (uint64_t)st.st_size == b->size)
        return 0;
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0)
        return -1;
    static unsigned char buf[1 << 20];
    uint64_t off = 0;
    while (off < b->size) {
        size_t n = b->size - off > sizeof(buf) ? sizeof(buf) : (size_t)(b->size - off);
        blob_read(b, off, buf, n);
        ssize_t w = write(fd, buf, n);
        if (w != (ssize_t)n) {
            close(fd);
            return -1;
        }
        off += n;
    }
    return close(fd);
}

/*
 * Static mirror of a set, laid out so nginx answers the same URLs as a registry:
 *   OUT/v2/<repo>/manifests/<tag>      the manifest bytes
 *   OUT/v2/<repo>/blobs/sha256:<hex>   each layer and the config
 */
static int run_export(void)
{
    if (cfg.out_dir == NULL)
        die("export needs --out DIR");
    int repos = default_repos(cfg.images);
    uint64_t bytes = 0;
    for (int i = 0; i < cfg.images; i++) {
        struct image im;
        image_build(&im, cfg.set, i, repos, cfg.layers, cfg.layer_size);
        char dir[URL_MAX], path[URL_MAX + DIGEST_MAX + 2];
        snprintf(dir, sizeof(dir), "%s/v2/%s/blobs", cfg.out_dir, im.repo);
        if (mkdir_p(dir) != 0)
            die("cannot create export directory");
        for (int j = 0; j <= im.nlayers; j++) {
            const struct blob *b = image_blob(&im, j);
            snprintf(path, sizeof(path), "%s/%s", dir, b->digest);
            if (write_blob_file(path, b) != 0)
                die("cannot write export blob");
            bytes += b->size;
        }
        snprintf(dir, sizeof(dir), "%s/v2/%s/manifests", cfg.out_dir, im.repo);
        if (mkdir_p(dir) != 0)
            die("cannot create export directory");
        snprintf(path, sizeof(path), "%s/%s", dir, im.tag);
        struct blob mb = {.mem = (const unsigned char *)im.manifest, .size = im.manifest_len};
        if (write_blob_file(path, &mb) != 0)
            die("cannot write export manifest");
        image_fini(&im);
    }
    printf("{\"scenario\":\"export\",\"set\":\"%s\",\"images\":%d,\"bytes\":%" PRIu64 "}\n",
           cfg.set, cfg.images, bytes);
    return 0;
}

/* ---------------------------------------------------------------- limits */

/*
 * Single-thread OpenSSL SHA-256 over one cache-resident 1 MiB buffer, like `openssl speed`: the
 * compute ceiling for digesting one upload stream.
 */
static int run_limit_sha256(void)
{
    uint64_t size = cfg.layer_size;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    if (ctx == NULL)
        die("out of memory");
    uint64_t t0 = now_ns();
    EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
    for (uint64_t off = 0; off < size; off += MIB) {
        size_t n = size - off > MIB ? MIB : (size_t)(size - off);
        EVP_DigestUpdate(ctx, pool, n);
    }
    EVP_DigestFinal_ex(ctx, md, &md_len);
    double secs = (double)(now_ns() - t0) / 1e9;
    EVP_MD_CTX_free(ctx);
    printf("{\"scenario\":\"limit-sha256\",\"bytes\":%" PRIu64 ",\"seconds\":%.4f,"
           "\"mib_per_s\":%.3f,\"ops\":1,\"errors\":0}\n",
           size, secs, (double)size / (double)MIB / secs);
    return 0;
}

static atomic_int write_next;
static atomic_int write_errors;

static void *write_worker(void *arg)
{
    (void)arg;
    /* Aligned for O_DIRECT (--direct), which needs aligned buffers, sizes and offsets. */
    unsigned char *buf = NULL;
    if (posix_memalign((void **)&buf, 4096, MIB) != 0)
        die("out of memory");
    for (;;) {
        int idx = atomic_fetch_add(&write_next, 1);
        if (idx >= cfg.images)
            break;
        char path[URL_MAX];
        snprintf(path, sizeof(path), "%s/limit-write-%d", cfg.out_dir, idx);
        struct blob b;
        char seed[64];
        snprintf(seed, sizeof(seed), "limit-%d", idx);
        memset(&b, 0, sizeof(b));
        b.size = cfg.layer_size;
        b.pool_off = fnv1a(seed) & (POOL_BYTES - 1);
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | (cfg.is_direct ? O_DIRECT : 0), 0644);
        if (fd < 0) {
            atomic_fetch_add(&write_errors, 1);
            continue;
        }
        uint64_t off = 0;
        while (off < b.size) {
            size_t n = b.size - off > MIB ? MIB : (size_t)(b.size - off);
            blob_read(&b, off, buf, n);
            if (write(fd, buf, n) != (ssize_t)n) {
                atomic_fetch_add(&write_errors, 1);
                break;
            }
            off += n;
        }
        if (fsync(fd) != 0)
            atomic_fetch_add(&write_errors, 1);
        close(fd);
    }
    free(buf);
    return NULL;
}

/*
 * --images files of --layer-size bytes, written by --clients threads in 1 MiB write()s, each
 * followed by fsync: the ceiling for storing pushed bytes durably on this disk.
 */
static int run_limit_write(void)
{
    if (cfg.out_dir == NULL)
        die("limit-write needs --out DIR");
    if (mkdir_p(cfg.out_dir) != 0)
        die("cannot create --out directory");
    pthread_t *th = xcalloc((size_t)cfg.clients, sizeof(*th));
    uint64_t t0 = now_ns();
    for (int i = 0; i < cfg.clients; i++)
        if (pthread_create(&th[i], NULL, write_worker, NULL) != 0)
            die("pthread_create failed");
    for (int i = 0; i < cfg.clients; i++)
        pthread_join(th[i], NULL);
    double secs = (double)(now_ns() - t0) / 1e9;
    free(th);
    for (int i = 0; i < cfg.images; i++) {
        char path[URL_MAX];
        snprintf(path, sizeof(path), "%s/limit-write-%d", cfg.out_dir, i);
        unlink(path);
    }
    uint64_t bytes = (uint64_t)cfg.images * cfg.layer_size;
    double ops = (double)cfg.images / (double)cfg.files_per_op;
    printf("{\"scenario\":\"limit-write\",\"direct\":%s,\"files\":%d,\"clients\":%d,"
           "\"bytes\":%" PRIu64
           ",\"seconds\":%.4f,\"mib_per_s\":%.3f,\"files_per_s\":%.3f,\"ops\":%.1f,"
           "\"ops_per_s\":%.3f,\"errors\":%d}\n",
           cfg.is_direct ? "true" : "false", cfg.images, cfg.clients, bytes, secs, (double)bytes / (double)MIB / secs,
           (double)cfg.images / secs, ops, ops / secs, atomic_load(&write_errors));
    return atomic_load(&write_errors) == 0 ? 0 : 1;
}

/* ---------------------------------------------------------------- main */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: loadgen SCENARIO [options]\n"
            "scenarios:\n"
            "  push          push --images images of --layers x --layer-size (+config, manifest)\n"
            "  pull          pull --images images of --set (manifest, then every blob)\n"
            "  manifest      GET manifests by tag for --duration s\n"
            "  mixed         1 push : 4 pulls (of --pull-set) : 15 manifest GETs, --duration s\n"
            "  hot           every client pulls image 0's manifest and first layer, paced to\n"
            "                --rate pulls/s in total (0: as fast as possible)\n"
            "  export        write the set as static files under --out for nginx\n"
            "  limit-sha256  OpenSSL SHA-256 of --layer-size bytes in memory, one thread\n"
            "  limit-write   --images files of --layer-size, write+fsync, --clients threads\n"
            "                (--direct: with O_DIRECT, past the page cache)\n"
            "options:\n"
            "  --url URL            registry base URL (default http://127.0.0.1:5000)\n"
            "  --set NAME           image set; repos are bench/NAME-<n>, tags i<index>\n"
            "  --pull-set NAME      set read by pull/manifest/mixed/hot (default --set)\n"
            "  --images N           images in the set (pull-set size: --pull-images)\n"
            "  --pull-images N      images in the pull set (default --images)\n"
            "  --repos N            spread a set over N repositories (default min(images,16))\n"
            "  --layers N           layers per image (default 3)\n"
            "  --layer-size SIZE    bytes per layer, K/M/G suffixes (default 64K)\n"
            "  --clients N          concurrent clients, one connection each (default 1)\n"
            "  --threads N          event-loop threads sharing the clients (default 1)\n"
            "  --upload MODE        patch | mono | chunked (default patch)\n"
            "  --chunk-size SIZE    PATCH size for chunked uploads (default 64M)\n"
            "  --duration S         measured seconds for timed scenarios (default 10)\n"
            "  --warmup S           seconds run before measuring (default 0)\n"
            "  --rate R             hot: total pulls per second (default 0)\n"
            "  --out DIR            export / limit-write directory\n"
            "  --files-per-op N     limit-write: files per reported op (default 1)\n"
            "  --digest-cache FILE  remember digests of big generated blobs\n"
            "  --timeout S          per-request timeout (default 600)\n"
            "  --cacert FILE        trust this PEM certificate for https URLs\n"
            "  --verify             hash pulled blobs and compare to their digests\n");
}

int main(int argc, char **argv)
{
    enum {
        O_URL = 256,
        O_SET,
        O_PULL_SET,
        O_IMAGES,
        O_PULL_IMAGES,
        O_REPOS,
        O_LAYERS,
        O_LAYER_SIZE,
        O_CLIENTS,
        O_THREADS,
        O_UPLOAD,
        O_CHUNK,
        O_DURATION,
        O_WARMUP,
        O_RATE,
        O_OUT,
        O_FILES_PER_OP,
        O_DCACHE,
        O_TIMEOUT,
        O_VERIFY,
        O_DIRECT_IO,
        O_CACERT,
        O_HELP,
    };
    static const struct option opts[] = {
        {"url", required_argument, NULL, O_URL},
        {"set", required_argument, NULL, O_SET},
        {"pull-set", required_argument, NULL, O_PULL_SET},
        {"images", required_argument, NULL, O_IMAGES},
        {"pull-images", required_argument, NULL, O_PULL_IMAGES},
        {"repos", required_argument, NULL, O_REPOS},
        {"layers", required_argument, NULL, O_LAYERS},
        {"layer-size", required_argument, NULL, O_LAYER_SIZE},
        {"clients", required_argument, NULL, O_CLIENTS},
        {"threads", required_argument, NULL, O_THREADS},
        {"upload", required_argument, NULL, O_UPLOAD},
        {"chunk-size", required_argument, NULL, O_CHUNK},
        {"duration", required_argument, NULL, O_DURATION},
        {"warmup", required_argument, NULL, O_WARMUP},
        {"rate", required_argument, NULL, O_RATE},
        {"out", required_argument, NULL, O_OUT},
        {"files-per-op", required_argument, NULL, O_FILES_PER_OP},
        {"digest-cache", required_argument, NULL, O_DCACHE},
        {"timeout", required_argument, NULL, O_TIMEOUT},
        {"verify", no_argument, NULL, O_VERIFY},
        {"direct", no_argument, NULL, O_DIRECT_IO},
        {"cacert", required_argument, NULL, O_CACERT},
        {"help", no_argument, NULL, O_HELP},
        {NULL, 0, NULL, 0},
    };
    if (argc < 2 || argv[1][0] == '-') {
        usage(argc >= 2 && strcmp(argv[1], "--help") == 0 ? stdout : stderr);
        return argc >= 2 && strcmp(argv[1], "--help") == 0 ? 0 : 2;
    }
    static const struct {
        const char *name;
        enum scenario sc;
    } scs[] = {
        {"push", SC_PUSH},
        {"pull", SC_PULL},
        {"manifest", SC_MANIFEST},
        {"mixed", SC_MIXED},
        {"hot", SC_HOT},
        {"export", SC_EXPORT},
        {"limit-sha256", SC_LIMIT_SHA256},
        {"limit-write", SC_LIMIT_WRITE},
    };
    bool found = false;
    for (size_t i = 0; i < sizeof(scs) / sizeof(scs[0]); i++) {
        if (strcmp(argv[1], scs[i].name) == 0) {
            cfg.scenario = scs[i].sc;
            found = true;
        }
    }
    if (!found) {
        fprintf(stderr, "loadgen: unknown scenario '%s'\n", argv[1]);
        usage(stderr);
        return 2;
    }
    optind = 2;
    for (;;) {
        int ch = getopt_long(argc, argv, "", opts, NULL);
        if (ch == -1)
            break;
        int bad = 0;
        int timeout = 0;
        switch (ch) {
        case O_URL:
            cfg.url = optarg;
            break;
        case O_CACERT:
            cfg.cacert = optarg;
            break;
        case O_SET:
            cfg.set = optarg;
            break;
        case O_PULL_SET:
            cfg.pull_set = optarg;
            break;
        case O_IMAGES:
            bad = parse_int(optarg, 1, 10000000, &cfg.images);
            break;
        case O_PULL_IMAGES:
            bad = parse_int(optarg, 1, 10000000, &cfg.pull_images);
            break;
        case O_REPOS:
            bad = parse_int(optarg, 1, 10000000, &cfg.repos);
            break;
        case O_LAYERS:
            bad = parse_int(optarg, 1, LAYERS_MAX, &cfg.layers);
            break;
        case O_LAYER_SIZE:
            bad = parse_size(optarg, &cfg.layer_size);
            break;
        case O_CLIENTS:
            bad = parse_int(optarg, 1, 100000, &cfg.clients);
            break;
        case O_THREADS:
            bad = parse_int(optarg, 1, 256, &cfg.threads);
            break;
        case O_UPLOAD:
            if (strcmp(optarg, "patch") == 0)
                cfg.upload = UP_PATCH;
            else if (strcmp(optarg, "mono") == 0)
                cfg.upload = UP_MONO;
            else if (strcmp(optarg, "chunked") == 0)
                cfg.upload = UP_CHUNKED;
            else
                bad = -1;
            break;
        case O_CHUNK:
            bad = parse_size(optarg, &cfg.chunk_size);
            if (cfg.chunk_size == 0)
                bad = -1;
            break;
        case O_DURATION:
            bad = parse_double(optarg, &cfg.duration_s);
            break;
        case O_WARMUP:
            bad = parse_double(optarg, &cfg.warmup_s);
            break;
        case O_RATE:
            bad = parse_double(optarg, &cfg.rate);
            break;
        case O_OUT:
            cfg.out_dir = optarg;
            break;
        case O_FILES_PER_OP:
            bad = parse_int(optarg, 1, 1000000, &cfg.files_per_op);
            break;
        case O_DCACHE:
            cfg.digest_cache = optarg;
            break;
        case O_TIMEOUT:
            bad = parse_int(optarg, 1, 86400, &timeout);
            cfg.timeout_s = timeout;
            break;
        case O_DIRECT_IO:
            cfg.is_direct = true;
            break;
        case O_VERIFY:
            cfg.verify = true;
            break;
        case O_HELP:
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
        if (bad != 0) {
            fprintf(stderr, "loadgen: bad value for option: %s\n", optarg);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "loadgen: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    size_t url_len = strlen(cfg.url);
    if (url_len > 0 && cfg.url[url_len - 1] == '/') {
        char *u = xstrdup(cfg.url);
        u[url_len - 1] = '\0';
        cfg.url = u;
    }
    /* Timed scenarios run for --duration whether or not it was given. */
    if (cfg.scenario == SC_MANIFEST || cfg.scenario == SC_MIXED || cfg.scenario == SC_HOT)
        timed = true;
    else
        timed = false;

    pool_init();
    dcache_load();
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0)
        die("curl_global_init failed");
    int rc;
    switch (cfg.scenario) {
    case SC_EXPORT:
        rc = run_export();
        break;
    case SC_LIMIT_SHA256:
        rc = run_limit_sha256();
        break;
    case SC_LIMIT_WRITE:
        rc = run_limit_write();
        break;
    default:
        rc = run_clients();
        break;
    }
    curl_global_cleanup();
    free(pool);
    return rc;
}
