/* The blob seam without a file: a registry served over HTTP from an in-memory blobstore
 * that never hands out a file descriptor (as an object store would not). Blob GETs, with
 * and without Range, are streamed from its read callback; with redirects on, GETs are
 * answered 307 with its URL; uploads (chunked and monolithic) go through its upload
 * handle, which verifies the digest at commit. Each request goes through the real HTTP
 * layer and router (http_server_start with the registry's handler table). And the file
 * sweep over a store that lists itself (as S3 does), whose listing or removals fail. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <ftw.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blob_sweep.h"
#include "blobstore.h"
#include "config.h"
#include "http.h"
#include "httpc.h"
#include "log.h"
#include "registry.h"
#include "util.h"

#define REPO "lib/app"
#define BLOB_BYTES (100 * 1000 + 7)
#define STREAM_PIECE 4000 /* a stream yields at most this per read: many reads per body */
#define MAX_ITEMS 16

/* The in-memory backend --------------------------------------------------------- */

struct mem_blob {
    struct digest d;
    char *p;
    uint64_t len;
};

struct mem_upload_bytes {
    char id[33];
    char *p;
    uint64_t len;
};

struct mem_store {
    struct blobstore base;   /* first: the ops dispatch on &base */
    pthread_mutex_t mu;
    struct mem_blob blobs[MAX_ITEMS];
    size_t n_blobs;
    struct mem_upload_bytes uploads[MAX_ITEMS];
    size_t n_uploads;
    bool is_redirect;        /* answer reads that accept it with a URL */
    /* what the registry asked for, checked by the tests */
    int n_streams_open;      /* opened minus closed */
    int n_handles_open;
    unsigned n_appends;
    unsigned n_commits;
    uint64_t last_offset, last_length;
    unsigned last_accept;
    /* faults of the file sweep's two calls */
    bool is_listing_cut;     /* each_blob lists the first blob, then fails */
    bool is_remove_failing;  /* remove leaves the blob and fails */
};

struct mem_stream {
    struct mem_store *m;
    const char *p;
    uint64_t left;
};

struct mem_handle {
    struct mem_store *m;
    char id[33];
    struct hasher *h;        /* sha256 of the bytes appended */
};

static struct mem_store *mem_of(struct blobstore *bs)
{
    return (struct mem_store *)bs;
}

/* Under m->mu. */
static struct mem_blob *find_blob(struct mem_store *m, const struct digest *d)
{
    for (size_t i = 0; i < m->n_blobs; i++)
        if (digest_equal(&m->blobs[i].d, d))
            return &m->blobs[i];
    return NULL;
}

/* Under m->mu. */
static struct mem_upload_bytes *find_upload(struct mem_store *m, const char *id)
{
    for (size_t i = 0; i < m->n_uploads; i++)
        if (strcmp(m->uploads[i].id, id) == 0)
            return &m->uploads[i];
    return NULL;
}

static void store_blob(struct mem_store *m, const struct digest *d, const void *p, uint64_t len)
{
    AZ(pthread_mutex_lock(&m->mu));
    struct mem_blob *b = find_blob(m, d);
    if (b == NULL) {
        ASSERT(m->n_blobs < MAX_ITEMS);
        b = &m->blobs[m->n_blobs++];
        b->d = *d;
        b->p = xmalloc(len ? len : 1);
        memcpy(b->p, p, len);
        b->len = len;
    }
    AZ(pthread_mutex_unlock(&m->mu));
}

static int mem_upload_create(struct blobstore *bs, const char *id, struct err *e)
{
    struct mem_store *m = mem_of(bs);
    AZ(pthread_mutex_lock(&m->mu));
    int rc = 0;
    if (find_upload(m, id) != NULL) {
        rc = err_set(e, ERR_CONFLICT, NULL);
    } else {
        ASSERT(m->n_uploads < MAX_ITEMS);
        struct mem_upload_bytes *u = &m->uploads[m->n_uploads++];
        memset(u, 0, sizeof(*u));
        snprintf(u->id, sizeof(u->id), "%s", id);
    }
    AZ(pthread_mutex_unlock(&m->mu));
    return rc;
}

static void rehash(struct mem_handle *h, const struct mem_upload_bytes *u)
{
    digest_hasher_free(h->h);
    h->h = digest_hasher_new(DIGEST_SHA256);
    digest_hasher_update(h->h, u->p, (size_t)u->len);
}

static int mem_upload_open(struct blobstore *bs, const char *id, struct blobstore_upload **out,
                           uint64_t *size, struct err *e)
{
    struct mem_store *m = mem_of(bs);
    *out = NULL;
    AZ(pthread_mutex_lock(&m->mu));
    struct mem_upload_bytes *u = find_upload(m, id);
    if (u == NULL) {
        AZ(pthread_mutex_unlock(&m->mu));
        return err_set(e, ERR_BLOB_UPLOAD_UNKNOWN, NULL);
    }
    struct mem_handle *h = xcalloc(1, sizeof(*h));
    h->m = m;
    snprintf(h->id, sizeof(h->id), "%s", id);
    rehash(h, u);
    *size = u->len;
    m->n_handles_open++;
    AZ(pthread_mutex_unlock(&m->mu));
    *out = (struct blobstore_upload *)h;
    return 0;
}

static int mem_upload_append(struct blobstore *bs, struct blobstore_upload *bu, uint64_t offset,
                             const void *p, size_t n, struct err *e)
{
    struct mem_store *m = mem_of(bs);
    struct mem_handle *h = (struct mem_handle *)bu;
    AZ(pthread_mutex_lock(&m->mu));
    struct mem_upload_bytes *u = find_upload(m, h->id);
    AN(u);
    int rc = 0;
    if (offset != u->len) {
        rc = err_set(e, ERR_RANGE_INVALID, NULL);
    } else {
        u->p = xrealloc(u->p, u->len + n + 1);
        memcpy(u->p + u->len, p, n);
        u->len += n;
        digest_hasher_update(h->h, p, n);
        m->n_appends++;
    }
    AZ(pthread_mutex_unlock(&m->mu));
    return rc;
}

static int mem_upload_flush(struct blobstore *bs, struct blobstore_upload *bu, bool is_durable,
                            struct err *e)
{
    return 0; /* every append is stored at once */
}

static uint64_t mem_upload_idle(struct blobstore *bs, struct blobstore_upload *bu)
{
    struct mem_store *m = mem_of(bs);
    struct mem_handle *h = (struct mem_handle *)bu;
    AZ(pthread_mutex_lock(&m->mu));
    uint64_t len = find_upload(m, h->id)->len;
    AZ(pthread_mutex_unlock(&m->mu));
    return len;
}

static int mem_upload_truncate(struct blobstore *bs, struct blobstore_upload *bu, uint64_t size,
                               uint64_t *now, struct err *e)
{
    struct mem_store *m = mem_of(bs);
    struct mem_handle *h = (struct mem_handle *)bu;
    AZ(pthread_mutex_lock(&m->mu));
    struct mem_upload_bytes *u = find_upload(m, h->id);
    if (size < u->len)
        u->len = size;
    rehash(h, u);
    *now = u->len;
    AZ(pthread_mutex_unlock(&m->mu));
    return 0;
}

static int mem_upload_commit(struct blobstore *bs, struct blobstore_upload *bu,
                             const struct digest *want, struct err *e)
{
    struct mem_store *m = mem_of(bs);
    struct mem_handle *h = (struct mem_handle *)bu;
    struct digest got;
    digest_hasher_final(h->h, &got);
    digest_hasher_free(h->h);
    h->h = NULL;
    AZ(pthread_mutex_lock(&m->mu));
    struct mem_upload_bytes *u = find_upload(m, h->id);
    if (!digest_equal(&got, want)) {
        rehash(h, u);
        AZ(pthread_mutex_unlock(&m->mu));
        return err_set(e, ERR_DIGEST_INVALID, NULL);
    }
    char *p = u->p;
    uint64_t len = u->len;
    u->p = NULL;
    u->len = 0;
    m->n_commits++;
    AZ(pthread_mutex_unlock(&m->mu));
    store_blob(m, want, p, len);
    free(p);
    return 0;
}

static void mem_upload_close(struct blobstore *bs, struct blobstore_upload *bu)
{
    struct mem_store *m = mem_of(bs);
    struct mem_handle *h = (struct mem_handle *)bu;
    if (h == NULL)
        return;
    AZ(pthread_mutex_lock(&m->mu));
    m->n_handles_open--;
    AZ(pthread_mutex_unlock(&m->mu));
    digest_hasher_free(h->h);
    free(h);
}

static void mem_upload_remove(struct blobstore *bs, const char *id)
{
    struct mem_store *m = mem_of(bs);
    AZ(pthread_mutex_lock(&m->mu));
    struct mem_upload_bytes *u = find_upload(m, id);
    if (u != NULL) {
        free(u->p);
        *u = m->uploads[--m->n_uploads];
    }
    AZ(pthread_mutex_unlock(&m->mu));
}

static void mem_upload_each(struct blobstore *bs, void (*fn)(const char *id, void *arg),
                            void *arg)
{
    struct mem_store *m = mem_of(bs);
    char ids[MAX_ITEMS][33];
    AZ(pthread_mutex_lock(&m->mu));
    size_t n = m->n_uploads;
    for (size_t i = 0; i < n; i++)
        memcpy(ids[i], m->uploads[i].id, 33);
    AZ(pthread_mutex_unlock(&m->mu));
    for (size_t i = 0; i < n; i++)
        fn(ids[i], arg);
}

static long on_stream_read(void *arg, char *p, size_t max)
{
    struct mem_stream *s = arg;
    size_t n = s->left < max ? (size_t)s->left : max;
    if (n > STREAM_PIECE)
        n = STREAM_PIECE;
    memcpy(p, s->p, n);
    s->p += n;
    s->left -= n;
    return (long)n;
}

static void on_stream_close(void *arg)
{
    struct mem_stream *s = arg;
    AZ(pthread_mutex_lock(&s->m->mu));
    s->m->n_streams_open--;
    AZ(pthread_mutex_unlock(&s->m->mu));
    free(s);
}

/* Never a file descriptor: a stream of the range asked, or a URL. */
static int mem_open(struct blobstore *bs, const struct digest *d, uint64_t expected_size,
                    uint64_t offset, uint64_t length, unsigned accept,
                    struct blobstore_body *out, struct err *e)
{
    struct mem_store *m = mem_of(bs);
    memset(out, 0, sizeof(*out));
    out->fd = -1;
    AZ(pthread_mutex_lock(&m->mu));
    m->last_offset = offset;
    m->last_length = length;
    m->last_accept = accept;
    struct mem_blob *b = find_blob(m, d);
    if (b == NULL || b->len != expected_size) {
        AZ(pthread_mutex_unlock(&m->mu));
        return err_set(e, b == NULL ? ERR_BLOB_UNKNOWN : ERR_BLOB_CORRUPT, NULL);
    }
    ASSERT(offset + length <= b->len);
    if (m->is_redirect && (accept & BLOBSTORE_ACCEPT_REDIRECT)) {
        AZ(pthread_mutex_unlock(&m->mu));
        char url[256];
        snprintf(url, sizeof(url), "https://objects.example/%s?sig=test", digest_hex(d));
        out->kind = BLOBSTORE_BODY_REDIRECT;
        out->url = xstrdup(url);
        return 0;
    }
    struct mem_stream *s = xcalloc(1, sizeof(*s));
    s->m = m;
    s->p = b->p + offset;
    s->left = length;
    m->n_streams_open++;
    AZ(pthread_mutex_unlock(&m->mu));
    out->kind = BLOBSTORE_BODY_STREAM;
    out->read = on_stream_read;
    out->close = on_stream_close;
    out->arg = s;
    return 0;
}

static int mem_verify(struct blobstore *bs, const struct digest *d, uint64_t expected_size,
                      blobstore_throttle_f *throttle, void *throttle_arg, struct err *e)
{
    struct mem_store *m = mem_of(bs);
    AZ(pthread_mutex_lock(&m->mu));
    struct mem_blob *b = find_blob(m, d);
    int rc = b == NULL ? err_set(e, ERR_BLOB_UNKNOWN, NULL) : 0;
    AZ(pthread_mutex_unlock(&m->mu));
    return rc;
}

static int mem_stat(struct blobstore *bs, const struct digest *d, uint64_t *size, struct err *e)
{
    struct mem_store *m = mem_of(bs);
    AZ(pthread_mutex_lock(&m->mu));
    struct mem_blob *b = find_blob(m, d);
    if (b != NULL)
        *size = b->len;
    AZ(pthread_mutex_unlock(&m->mu));
    return b != NULL ? 0 : err_set(e, ERR_BLOB_UNKNOWN, NULL);
}

static int mem_remove(struct blobstore *bs, const struct digest *d, struct err *e)
{
    struct mem_store *m = mem_of(bs);
    AZ(pthread_mutex_lock(&m->mu));
    int rc = 0;
    struct mem_blob *b = find_blob(m, d);
    if (m->is_remove_failing) {
        rc = err_set(e, ERR_UNAVAILABLE, "the store did not answer");
    } else if (b != NULL) {
        free(b->p);
        *b = m->blobs[--m->n_blobs];
    }
    AZ(pthread_mutex_unlock(&m->mu));
    return rc;
}

/* Every blob, stored an hour ago (older than any cutoff the tests use). */
static int mem_each_blob(struct blobstore *bs,
                         void (*fn)(const struct digest *d, int64_t stored_ms, void *arg),
                         void *arg, struct err *e)
{
    struct mem_store *m = mem_of(bs);
    struct digest listed[MAX_ITEMS];
    AZ(pthread_mutex_lock(&m->mu));
    size_t n = m->is_listing_cut && m->n_blobs > 1 ? 1 : m->n_blobs;
    for (size_t i = 0; i < n; i++)
        listed[i] = m->blobs[i].d;
    AZ(pthread_mutex_unlock(&m->mu));
    for (size_t i = 0; i < n; i++)
        fn(&listed[i], util_now_ms() - 3600 * 1000, arg);
    return m->is_listing_cut ? err_set(e, ERR_UNAVAILABLE, "the listing broke off") : 0;
}

static int mem_put(struct blobstore *bs, const struct digest *d, const void *p, uint64_t len,
                   struct err *e)
{
    store_blob(mem_of(bs), d, p, len);
    return 0;
}

static size_t mem_remove_all(struct blobstore *bs)
{
    struct mem_store *m = mem_of(bs);
    AZ(pthread_mutex_lock(&m->mu));
    size_t n = m->n_blobs;
    for (size_t i = 0; i < n; i++)
        free(m->blobs[i].p);
    m->n_blobs = 0;
    AZ(pthread_mutex_unlock(&m->mu));
    return n;
}

static void mem_quarantined(struct blobstore *bs, struct blobstore_quarantined **out, size_t *n)
{
    *out = xcalloc(1, sizeof(**out));
    *n = 0;
}

static void mem_close(struct blobstore *bs)
{
    struct mem_store *m = mem_of(bs);
    mem_remove_all(bs);
    for (size_t i = 0; i < m->n_uploads; i++)
        free(m->uploads[i].p);
    pthread_mutex_destroy(&m->mu);
    free(m);
}

static const struct blobstore_ops mem_ops = {
    .name = "mem",
    .upload_create = mem_upload_create,
    .upload_open = mem_upload_open,
    .upload_append = mem_upload_append,
    .upload_flush = mem_upload_flush,
    .upload_idle = mem_upload_idle,
    .upload_truncate = mem_upload_truncate,
    .upload_commit = mem_upload_commit,
    .upload_close = mem_upload_close,
    .upload_remove = mem_upload_remove,
    .upload_each = mem_upload_each,
    .open = mem_open,
    .verify = mem_verify,
    .stat = mem_stat,
    .remove = mem_remove,
    .put = mem_put,
    .remove_all = mem_remove_all,
    .quarantined = mem_quarantined,
    .close = mem_close,
    .each_blob = mem_each_blob,
};

/* Fixture: a registry on the memory store, served on a loopback port ------------------ */

struct fixture {
    char dir[64];
    struct config cfg;
    struct mem_store *m;     /* owned by reg */
    struct registry *reg;
    struct http_server *http;
    char base[64];           /* http://127.0.0.1:PORT */
    char *blob;              /* BLOB_BYTES of pseudo-random bytes, stored and linked */
    struct digest d;
};

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    return remove(path);
}

static int setup(void **state)
{
    struct fixture *f = xcalloc(1, sizeof(*f));
    struct err e = {0};
    snprintf(f->dir, sizeof(f->dir), "/tmp/meridian-seam-XXXXXX");
    if (mkdtemp(f->dir) == NULL)
        return -1;
    log_setup(LOG_LEVEL_ERROR, "test");
    config_defaults(&f->cfg);
    free(f->cfg.data_dir);
    f->cfg.data_dir = xstrdup(f->dir);
    f->cfg.auth_mode = 0;
    f->m = xcalloc(1, sizeof(*f->m));
    f->m->base.ops = &mem_ops;
    AZ(pthread_mutex_init(&f->m->mu, NULL));
    f->reg = registry_open_with(&f->cfg, &f->m->base, &e);
    if (f->reg == NULL)
        return -1;
    atomic_store(&f->reg->is_ready, true);
    struct http_config hc = {.listen_host = "127.0.0.1", .threads = 2, .conn_timeout_s = 10,
                             .conn_limit = 64};
    f->http = http_server_start(&hc, &registry_http_handlers, f->reg, &e);
    if (f->http == NULL)
        return -1;
    snprintf(f->base, sizeof(f->base), "http://127.0.0.1:%u", http_server_port(f->http));

    f->blob = xmalloc(BLOB_BYTES);
    uint64_t x = 88172645463325252ull;
    for (size_t i = 0; i < BLOB_BYTES; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        f->blob[i] = (char)x;
    }
    digest_of_buffer(DIGEST_SHA256, f->blob, BLOB_BYTES, &f->d);
    if (f->m->base.ops->put(&f->m->base, &f->d, f->blob, BLOB_BYTES, &e) != 0 ||
        f->reg->ms->ops->blob_link(f->reg->ms, REPO, &f->d, BLOB_BYTES, &e) != 0)
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    http_server_stop(f->http, 1000);
    /* Every stream the registry opened was closed, whether or not it was read. */
    assert_int_equal(f->m->n_streams_open, 0);
    registry_close(f->reg); /* closes the memory store too */
    config_fini(&f->cfg);
    nftw(f->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(f->blob);
    free(f);
    return 0;
}

/* One request; the caller finis resp. */
static void request(struct fixture *f, const char *method, const char *path,
                    const char *const *headers, const void *body, size_t body_len,
                    struct httpc_response *resp)
{
    char url[512];
    struct err e = {0};
    snprintf(url, sizeof(url), "%s%s", f->base, path);
    httpc_response_init(resp, 1u << 20);
    struct httpc_request rq = {.method = method, .url = url, .headers = headers, .body = body,
                               .body_len = body_len, .timeout_ms = 10000};
    assert_int_equal(httpc_do(&rq, resp, &e), 0);
}

static void assert_header(const struct httpc_response *r, const char *name, const char *want)
{
    char got[512];
    assert_int_equal(httpc_response_header(r, name, got, sizeof(got)), 0);
    assert_string_equal(got, want);
}

static void blob_path(const struct fixture *f, const struct digest *d, char *out, size_t n)
{
    snprintf(out, n, "/v2/%s/blobs/%s", REPO, d->str);
}

/* Tests -------------------------------------------------------------------------- */

static void test_get_streams_the_blob(void **state)
{
    struct fixture *f = *state;
    struct httpc_response r;
    char path[256];
    blob_path(f, &f->d, path, sizeof(path));
    request(f, "GET", path, NULL, NULL, 0, &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.body.len, BLOB_BYTES);
    assert_memory_equal(r.body.data, f->blob, BLOB_BYTES);
    assert_header(&r, "Docker-Content-Digest", f->d.str);
    assert_header(&r, "Content-Length", "100007");
    assert_int_equal(f->m->last_offset, 0);
    assert_int_equal(f->m->last_length, BLOB_BYTES);
    assert_true(f->m->last_accept & BLOBSTORE_ACCEPT_REDIRECT);
    httpc_response_fini(&r);
}

static void test_range_get_streams_the_range(void **state)
{
    struct fixture *f = *state;
    struct httpc_response r;
    char path[256];
    blob_path(f, &f->d, path, sizeof(path));
    const char *mid[] = {"Range: bytes=1000-50999", NULL};
    request(f, "GET", path, mid, NULL, 0, &r);
    assert_int_equal(r.status, 206);
    assert_int_equal(r.body.len, 50000);
    assert_memory_equal(r.body.data, f->blob + 1000, 50000);
    assert_header(&r, "Content-Range", "bytes 1000-50999/100007");
    /* The store was asked for the range only, not for the blob. */
    assert_int_equal(f->m->last_offset, 1000);
    assert_int_equal(f->m->last_length, 50000);
    httpc_response_fini(&r);

    const char *suffix[] = {"Range: bytes=-7", NULL};
    request(f, "GET", path, suffix, NULL, 0, &r);
    assert_int_equal(r.status, 206);
    assert_int_equal(r.body.len, 7);
    assert_memory_equal(r.body.data, f->blob + BLOB_BYTES - 7, 7);
    assert_int_equal(f->m->last_offset, BLOB_BYTES - 7);
    httpc_response_fini(&r);

    /* Past the end: 416, and the stream opened to check the copy is closed unread. */
    const char *past[] = {"Range: bytes=200000-", NULL};
    request(f, "GET", path, past, NULL, 0, &r);
    assert_int_equal(r.status, 416);
    assert_header(&r, "Content-Range", "bytes */100007");
    httpc_response_fini(&r);
}

static void test_head_takes_no_redirect(void **state)
{
    struct fixture *f = *state;
    struct httpc_response r;
    char path[256];
    blob_path(f, &f->d, path, sizeof(path));
    f->m->is_redirect = true;
    request(f, "HEAD", path, NULL, NULL, 0, &r);
    assert_int_equal(r.status, 200);
    assert_header(&r, "Content-Length", "100007");
    assert_int_equal(f->m->last_accept & BLOBSTORE_ACCEPT_REDIRECT, 0);
    assert_int_equal(f->m->last_length, 0);
    httpc_response_fini(&r);
}

static void test_redirect_is_answered_307(void **state)
{
    struct fixture *f = *state;
    struct httpc_response r;
    char path[256];
    char want[256];
    blob_path(f, &f->d, path, sizeof(path));
    snprintf(want, sizeof(want), "https://objects.example/%s?sig=test", digest_hex(&f->d));
    f->m->is_redirect = true;
    request(f, "GET", path, NULL, NULL, 0, &r);
    assert_int_equal(r.status, 307);
    assert_header(&r, "Location", want);
    assert_header(&r, "Docker-Content-Digest", f->d.str);
    assert_int_equal(r.body.len, 0);
    httpc_response_fini(&r);
    /* A ranged GET goes there too: the client sends its Range to the URL. */
    const char *range[] = {"Range: bytes=0-9", NULL};
    request(f, "GET", path, range, NULL, 0, &r);
    assert_int_equal(r.status, 307);
    assert_header(&r, "Location", want);
    httpc_response_fini(&r);
}

static void test_chunked_upload_through_the_handle(void **state)
{
    struct fixture *f = *state;
    struct httpc_response r;
    char location[256];
    char path[512];
    char range[64];
    size_t half = BLOB_BYTES / 2;
    /* Another blob than the fixture's: the reversed bytes. */
    char *bytes = xmalloc(BLOB_BYTES);
    for (size_t i = 0; i < BLOB_BYTES; i++)
        bytes[i] = f->blob[BLOB_BYTES - 1 - i];
    struct digest d;
    digest_of_buffer(DIGEST_SHA256, bytes, BLOB_BYTES, &d);

    request(f, "POST", "/v2/" REPO "/blobs/uploads/", NULL, NULL, 0, &r);
    assert_int_equal(r.status, 202);
    assert_int_equal(httpc_response_header(&r, "Location", location, sizeof(location)), 0);
    httpc_response_fini(&r);

    snprintf(range, sizeof(range), "Content-Range: 0-%zu", half - 1);
    const char *h1[] = {range, "Content-Type: application/octet-stream", NULL};
    request(f, "PATCH", location, h1, bytes, half, &r);
    assert_int_equal(r.status, 202);
    snprintf(range, sizeof(range), "0-%zu", half - 1);
    assert_header(&r, "Range", range);
    httpc_response_fini(&r);

    /* The final PUT with a wrong digest: refused by the store's commit, nothing stored,
     * the session still holds the first chunk. */
    struct digest wrong;
    digest_of_buffer(DIGEST_SHA256, "other", 5, &wrong);
    snprintf(path, sizeof(path), "%s?digest=%s", location, wrong.str);
    request(f, "PUT", path, NULL, bytes + half, BLOB_BYTES - half, &r);
    assert_int_equal(r.status, 400);
    assert_non_null(strstr(r.body.data, "DIGEST_INVALID"));
    httpc_response_fini(&r);
    request(f, "GET", location, NULL, NULL, 0, &r);
    assert_int_equal(r.status, 204);
    assert_header(&r, "Range", range);
    httpc_response_fini(&r);

    snprintf(path, sizeof(path), "%s?digest=%s", location, d.str);
    request(f, "PUT", path, NULL, bytes + half, BLOB_BYTES - half, &r);
    assert_int_equal(r.status, 201);
    assert_header(&r, "Docker-Content-Digest", d.str);
    httpc_response_fini(&r);
    assert_int_equal(f->m->n_commits, 1);
    assert_true(f->m->n_appends >= 2);
    assert_int_equal(f->m->n_uploads, 0);       /* the session's bytes went */
    assert_int_equal(f->m->n_handles_open, 0);  /* and its handle */

    /* Served back as a stream. */
    blob_path(f, &d, path, sizeof(path));
    request(f, "GET", path, NULL, NULL, 0, &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.body.len, BLOB_BYTES);
    assert_memory_equal(r.body.data, bytes, BLOB_BYTES);
    httpc_response_fini(&r);
    free(bytes);
}

/* Two blobs stored behind the registry's back (no row names them): what the sweep is for. */
static void put_strays(struct fixture *f, struct digest d[2])
{
    struct err e = {0};
    digest_of_buffer(DIGEST_SHA256, "stray one", 9, &d[0]);
    digest_of_buffer(DIGEST_SHA256, "stray two", 9, &d[1]);
    assert_int_equal(f->m->base.ops->put(&f->m->base, &d[0], "stray one", 9, &e), 0);
    assert_int_equal(f->m->base.ops->put(&f->m->base, &d[1], "stray two", 9, &e), 0);
}

static size_t n_stored(struct fixture *f)
{
    AZ(pthread_mutex_lock(&f->m->mu));
    size_t n = f->m->n_blobs;
    AZ(pthread_mutex_unlock(&f->m->mu));
    return n;
}

/* The sweep removes the blobs no row names and nothing else; complete, no errors. */
static void test_sweep_removes_rowless_blobs(void **state)
{
    struct fixture *f = *state;
    struct digest d[2];
    put_strays(f, d);
    uint64_t n_errors = 0;
    bool is_complete = false;
    json_t *out = json_array();
    uint64_t n = blob_sweep_run(f->reg, util_now_ms(), false, out, &n_errors, &is_complete);
    assert_int_equal(n, 2);
    assert_int_equal(json_array_size(out), 2);
    assert_int_equal(n_errors, 0);
    assert_true(is_complete);
    assert_int_equal(n_stored(f), 1); /* the linked blob */
    json_decref(out);
}

/* A removal the store failed is an error, not a file removed, and is not listed as one. */
static void test_sweep_counts_a_failed_removal_as_an_error(void **state)
{
    struct fixture *f = *state;
    struct digest d[2];
    put_strays(f, d);
    f->m->is_remove_failing = true;
    uint64_t n_errors = 0;
    bool is_complete = false;
    json_t *out = json_array();
    uint64_t n = blob_sweep_run(f->reg, util_now_ms(), false, out, &n_errors, &is_complete);
    assert_int_equal(n, 0);
    assert_int_equal(json_array_size(out), 0);
    assert_int_equal(n_errors, 2);
    assert_true(is_complete);
    assert_int_equal(n_stored(f), 3);
    json_decref(out);
}

/* A listing that broke off is an error and the run is not complete; what was listed is
 * still swept. */
static void test_sweep_reports_a_broken_listing(void **state)
{
    struct fixture *f = *state;
    struct digest d[2];
    put_strays(f, d);
    /* The first blob listed is a stray: the linked one goes to the end. */
    AZ(pthread_mutex_lock(&f->m->mu));
    struct mem_blob linked = f->m->blobs[0];
    f->m->blobs[0] = f->m->blobs[2];
    f->m->blobs[2] = linked;
    AZ(pthread_mutex_unlock(&f->m->mu));
    f->m->is_listing_cut = true;
    uint64_t n_errors = 0;
    bool is_complete = true;
    json_t *out = json_array();
    uint64_t n = blob_sweep_run(f->reg, util_now_ms(), false, out, &n_errors, &is_complete);
    assert_int_equal(n, 1);
    assert_int_equal(n_errors, 1);
    assert_false(is_complete);
    assert_int_equal(n_stored(f), 2);
    json_decref(out);
}

static void test_monolithic_upload_through_the_handle(void **state)
{
    struct fixture *f = *state;
    struct httpc_response r;
    char path[512];
    const char *s = "{\"config\":true}";
    struct digest d;
    digest_of_buffer(DIGEST_SHA256, s, strlen(s), &d);
    snprintf(path, sizeof(path), "/v2/%s/blobs/uploads/?digest=%s", REPO, d.str);
    request(f, "POST", path, NULL, s, strlen(s), &r);
    assert_int_equal(r.status, 201);
    httpc_response_fini(&r);
    uint64_t size = 0;
    struct err e = {0};
    assert_int_equal(f->m->base.ops->stat(&f->m->base, &d, &size, &e), 0);
    assert_int_equal(size, strlen(s));
    assert_int_equal(f->reg->ms->ops->blob_get(f->reg->ms, REPO, &d, &size, &e), 0);
    assert_int_equal(f->m->n_uploads, 0);
    assert_int_equal(f->m->n_handles_open, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_get_streams_the_blob, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sweep_removes_rowless_blobs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sweep_counts_a_failed_removal_as_an_error, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_sweep_reports_a_broken_listing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_range_get_streams_the_range, setup, teardown),
        cmocka_unit_test_setup_teardown(test_head_takes_no_redirect, setup, teardown),
        cmocka_unit_test_setup_teardown(test_redirect_is_answered_307, setup, teardown),
        cmocka_unit_test_setup_teardown(test_chunked_upload_through_the_handle, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_monolithic_upload_through_the_handle, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
