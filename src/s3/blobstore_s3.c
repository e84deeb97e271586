/* The S3 backend of the blob seam. Layout under PREFIX/ in the bucket:
 *
 *   blobs/<alg>/<hex>             a verified blob (written only by commit or put)
 *   uploads/<id>/.session         the session exists (created by upload_create)
 *   uploads/<id>/c-<offset hex>   the session's bytes from offset, one object per flush
 *   quarantine/<alg>-<hex>-<ms>   a copy found bad, set aside
 *
 * A blob object carries the digest it was verified against in its metadata
 * (x-amz-meta-meridian-verified, set by commit and put): an object rewritten behind the
 * store's back loses it, so a read re-verifies such a copy before serving it (and stamps
 * it again when good, sets it aside when bad), as the fs store does with its mtime stamp.
 *
 * Every flush stores the staged bytes as one chunk object, so a durable flush of any size
 * (a tail under the 5 MiB multipart minimum too) is a plain PUT, and any node reopens the
 * session by listing its chunks: the state lives in the bucket, not in a process. The
 * running hash cannot be stored; a reopened or cut-back session rebuilds it at commit by
 * reading its chunks back. Commit assembles the chunks into the blob's key: one chunk by
 * a server-side copy, several by a multipart upload whose parts are server-side copies of
 * chunks of 5 MiB or more (runs of smaller ones are read back and sent as one part). */
#include "blobstore_s3.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "log.h"
#include "metrics.h"
#include "s3_client.h"
#include "s3_sigv4.h"
#include "util.h"

/* A request's bytes are sent as parts of PART_FIRST, then of PART_MAX while the process's
 * budget of part buffers allows: RGW spends CPU per part (about 14 ms of Ceph CPU per part
 * measured here: a 256 MiB object in 16 MiB parts costs Ceph 15 % more than one PUT, in
 * 64 MiB parts 5 %), while a small blob keeps small buffers. The first part stays small so
 * an upload of a few tens of MiB does not hold 64 MiB. docs/performance.md, issue 11. */
#define PART_FIRST (16u << 20)
#define PART_MAX (64u << 20)
/* Bytes of part buffers past PART_FIRST the uploads of one process may hold at once (each
 * upload on PART_MAX parts holds two buffers: the one received, the one in flight);
 * MERIDIAN_S3_PART_BUDGET_BYTES changes it (0: every part is PART_FIRST). */
#define PART_BUDGET (512ull << 20)
#define PART_RESERVE (2ull * (PART_MAX - PART_FIRST))
#define PART_MIN (5u << 20)        /* S3's smallest multipart part (but the last) */
#define STAMP "x-amz-meta-meridian-verified"
/* S3's largest object a CopyObject or an UploadPartCopy copies in one request: a larger
 * chunk is copied as ranges. MERIDIAN_S3_COPY_MAX_BYTES lowers it (tests of that path). */
#define COPY_MAX (5ull << 30)

struct s3_store {
    struct blobstore base;         /* first: the ops dispatch on &base */
    struct s3_client *c;
    char *prefix;                  /* "" or "p/" */
    char *bucket;
    bool is_redirect;
    int64_t redirect_ttl_s;
    uint64_t copy_max;             /* COPY_MAX, or lower for tests */
    uint64_t part_budget;          /* PART_BUDGET, or as set for tests */
    atomic_uint_least64_t part_reserved; /* of it, held by uploads on PART_MAX parts */
    /* Copies this process found bad (or found set aside at start) and not repaired since:
     * what the meridian_blobs_quarantined gauge counts. */
    pthread_mutex_t mu;
    struct digest *waiting;
    size_t n_waiting;
};

static void note_waiting(struct s3_store *s, const struct digest *d)
{
    AZ(pthread_mutex_lock(&s->mu));
    s->waiting = xrealloc(s->waiting, (s->n_waiting + 1) * sizeof(*s->waiting));
    s->waiting[s->n_waiting++] = *d;
    AZ(pthread_mutex_unlock(&s->mu));
    metrics_blobs_quarantined_add(1);
}

/* A good copy of d is stored: its quarantined copies count as repaired. */
static void note_good_copy(struct s3_store *s, const struct digest *d)
{
    AZ(pthread_mutex_lock(&s->mu));
    for (size_t i = 0; i < s->n_waiting;) {
        if (digest_equal(&s->waiting[i], d)) {
            s->waiting[i] = s->waiting[--s->n_waiting];
            metrics_blobs_quarantined_add(-1);
        } else {
            i++;
        }
    }
    AZ(pthread_mutex_unlock(&s->mu));
}

struct chunk {
    uint64_t off, len;
};

/* A part sent by a thread of its own while the request goes on receiving the next. */
struct part_job {
    struct s3_store *s;
    char key[512];
    const char *mpu_id;
    int number;
    char *p;
    size_t n, cap;
    char etag[256];
    int rc;
    struct err e;
};

struct blobstore_upload {
    char id[33];
    struct chunk *chunks;          /* stored, contiguous from 0 */
    size_t n_chunks, cap_chunks;
    uint64_t stored;               /* bytes in chunks */
    /* The chunk at stored while it is built by a multipart upload (staged bytes past
     * part_bytes go there as parts; a flush completes it): one chunk per request, which
     * commit turns into the blob with one server-side copy. */
    char mpu_id[256];              /* "" when none */
    struct buf mpu_parts;          /* its <Part> elements so far */
    int mpu_n;
    uint64_t mpu_len;              /* bytes in its parts (the one in flight too) */
    struct part_job job;           /* the part in flight, when is_job_running */
    pthread_t job_thread;
    bool is_job_running;
    bool is_job_inline;            /* no thread could be started: it ran in the caller */
    char *spare;                   /* the other stage buffer, while one is in flight */
    size_t spare_cap;
    char *stage;                   /* appended bytes not stored yet */
    size_t stage_len, stage_cap;
    size_t part_bytes;             /* the stage is sent as a part when it holds this */
    uint64_t reserved;             /* of the store's part budget (PART_RESERVE or 0) */
    struct hasher *h;              /* of every byte held, when is_hash_valid */
    bool is_hash_valid;
};

static struct s3_store *S(struct blobstore *bs)
{
    return (struct s3_store *)bs;
}

static void blob_key(struct s3_store *s, const struct digest *d, char *out, size_t n)
{
    snprintf(out, n, "%sblobs/%s/%s", s->prefix, digest_alg_name(d->alg), digest_hex(d));
}

static void session_key(struct s3_store *s, const char *id, const char *name, char *out,
                        size_t n)
{
    snprintf(out, n, "%suploads/%s/%s", s->prefix, id, name);
}

static void chunk_key(struct s3_store *s, const char *id, uint64_t off, char *out, size_t n)
{
    snprintf(out, n, "%suploads/%s/c-%016" PRIx64, s->prefix, id, off);
}

/* A request whose body is discarded, within timeout_ms: its status, or -1 (e set) when S3
 * did not answer. */
static long call_timed(struct s3_store *s, const char *method, const char *key,
                       const char *query, const char *const *extra, const void *body,
                       size_t len, long timeout_ms, struct err *e)
{
    struct httpc_response r;
    httpc_response_init(&r, 64 << 10);
    long status = -1;
    if (s3_request_timed(s->c, method, key, query, extra, body, len, timeout_ms, &r, e) == 0) {
        status = r.status;
        /* A copy may answer 200 and fail in its body. */
        if (status == 200 && r.body.data && strstr(r.body.data, "<Error>"))
            status = 500;
    }
    httpc_response_fini(&r);
    return status;
}

/* The same with s3_request's bound (30 s and 1 s per MiB of body). */
static long call(struct s3_store *s, const char *method, const char *key, const char *query,
                 const char *const *extra, const void *body, size_t len, struct err *e)
{
    return call_timed(s, method, key, query, extra, body, len,
                      30000 + (long)(len >> 20) * 1000, e);
}

/* The stamp header of digest d into out (for a blob), or NULL for d NULL. */
static const char *stamp_of(const struct digest *d, char *out, size_t n)
{
    if (d == NULL)
        return NULL;
    snprintf(out, n, STAMP ": %s", d->str);
    return out;
}

static int put_bytes(struct s3_store *s, const char *key, const void *p, size_t n,
                     const struct digest *stamp, struct err *e)
{
    char hdr[256];
    const char *extra[] = {stamp_of(stamp, hdr, sizeof(hdr)), NULL};
    long st = call(s, "PUT", key, "", extra, p ? p : "", n, e);
    if (st == 200)
        return 0;
    if (st > 0) {
        log_error("s3", "PUT of %zu bytes answered %ld", n, st);
        err_set(e, ERR_IO, "s3: PUT answered %ld", st);
    }
    return -1;
}

static long head(struct s3_store *s, const char *key, uint64_t *size, char *stamp,
                 size_t stamp_len, struct err *e)
{
    struct httpc_response r;
    httpc_response_init(&r, 0);
    long status = -1;
    if (s3_request(s->c, "HEAD", key, "", NULL, NULL, 0, &r, e) == 0) {
        status = r.status;
        char len[32];
        if (size && httpc_response_header(&r, "Content-Length", len, sizeof(len)) == 0)
            *size = strtoull(len, NULL, 10);
        if (stamp && httpc_response_header(&r, STAMP, stamp, stamp_len) != 0)
            stamp[0] = '\0';
    }
    httpc_response_fini(&r);
    return status;
}

/* How long a server-side copy of n bytes may take: S3 may copy byte by byte (RGW does
 * for part copies), so as a request with that body (s3_request: 30 s and 1 s per MiB). */
static long copy_timeout_ms(uint64_t n)
{
    return 30000 + (long)(n >> 20) * 1000;
}

/* A server-side copy of an object of size bytes; with stamp the copy's metadata is
 * replaced by that stamp. */
static int copy_object(struct s3_store *s, const char *from, const char *to, uint64_t size,
                       const struct digest *stamp, struct err *e)
{
    char enc[2048], hdr[2200], sh[256];
    s3_uri_encode(from, 1, enc, sizeof(enc));
    snprintf(hdr, sizeof(hdr), "x-amz-copy-source: /%s/%s", s->bucket, enc);
    const char *extra[] = {hdr, stamp ? "x-amz-metadata-directive: REPLACE" : NULL,
                           stamp_of(stamp, sh, sizeof(sh)), NULL};
    long st = call_timed(s, "PUT", to, "", extra, "", 0, copy_timeout_ms(size), e);
    if (st == 200)
        return 0;
    if (st > 0)
        err_set(e, ERR_IO, "s3: copy answered %ld", st);
    return -1;
}

/* 0 when key is gone (404: it was already), -1 with e set (may be NULL) when it may not be. */
static int delete_key_e(struct s3_store *s, const char *key, struct err *e)
{
    struct err de = {0};
    long st = call(s, "DELETE", key, "", NULL, NULL, 0, &de);
    if (st == 204 || st == 200 || st == 404)
        return 0;
    if (st > 0)
        err_set(&de, ERR_IO, "s3: DELETE answered %ld", st);
    log_warn("s3", "failed to delete %s: %s", key, err_message(&de));
    if (e != NULL)
        *e = de;
    return -1;
}

/* Where a key left behind harms nothing (a later pass or the sweep takes it). */
static void delete_key(struct s3_store *s, const char *key)
{
    (void)delete_key_e(s, key, NULL);
}

/* Reads all of key's [off, off+len) into the hasher and/or a buffer. */
static int read_into(struct s3_store *s, const char *key, uint64_t off, uint64_t len,
                     struct hasher *h, struct buf *out, blobstore_throttle_f *throttle,
                     void *targ, struct err *e)
{
    struct s3_reader *r = s3_reader_open(s->c, key, off, len);
    char *piece = xmalloc(1u << 20);
    int rc = 0;
    for (;;) {
        long n = s3_reader_read(r, piece, 1u << 20);
        if (n == 0)
            break;
        if (n < 0) {
            rc = s3_reader_status(r) == 404 ? err_set(e, ERR_BLOB_UNKNOWN, NULL)
                                             : err_set(e, ERR_IO, "s3: read broke");
            break;
        }
        if (h)
            digest_hasher_update(h, piece, (size_t)n);
        if (out)
            buf_append(out, piece, (size_t)n);
        if (throttle && throttle(targ, (uint64_t)n) != 0) {
            rc = err_set(e, ERR_UNAVAILABLE, "verification aborted");
            break;
        }
    }
    free(piece);
    s3_reader_close(r);
    return rc;
}

/* Upload sessions ---------------------------------------------------------- */

static int s3_upload_create(struct blobstore *bs, const char *id, struct err *e)
{
    struct s3_store *s = S(bs);
    char key[512];
    session_key(s, id, ".session", key, sizeof(key));
    long st = head(s, key, NULL, NULL, 0, e);
    if (st == 200)
        return err_set(e, ERR_CONFLICT, "upload session exists");
    if (st < 0)
        return -1;
    return put_bytes(s, key, "", 0, NULL, e);
}

struct listing {
    struct s3_store *s;
    bool has_session;
    struct chunk *chunks;
    size_t n, cap;
};

static int on_session_key(const char *key, int64_t size, void *arg)
{
    struct listing *l = arg;
    const char *name = strrchr(key, '/');
    name = name ? name + 1 : key;
    if (strcmp(name, ".session") == 0) {
        l->has_session = true;
    } else if (strncmp(name, "c-", 2) == 0 && size >= 0) {
        if (l->n == l->cap) {
            l->cap = l->cap ? 2 * l->cap : 8;
            l->chunks = xrealloc(l->chunks, l->cap * sizeof(*l->chunks));
        }
        l->chunks[l->n].off = strtoull(name + 2, NULL, 16);
        l->chunks[l->n].len = (uint64_t)size;
        l->n++;
    }
    return 0;
}

static int cmp_chunk(const void *a, const void *b)
{
    const struct chunk *x = a, *y = b;
    return x->off < y->off ? -1 : x->off > y->off;
}

static int s3_upload_open(struct blobstore *bs, const char *id, struct blobstore_upload **out,
                          uint64_t *size, struct err *e)
{
    struct s3_store *s = S(bs);
    char pre[512];
    session_key(s, id, "", pre, sizeof(pre));
    struct listing l = {.s = s};
    if (s3_list(s->c, pre, NULL, on_session_key, &l, e) != 0) {
        free(l.chunks);
        return -1;
    }
    if (!l.has_session) {
        free(l.chunks);
        return err_set(e, ERR_BLOB_UPLOAD_UNKNOWN, NULL);
    }
    if (l.n > 1) /* qsort of NULL, 0 is undefined */
        qsort(l.chunks, l.n, sizeof(*l.chunks), cmp_chunk);
    struct blobstore_upload *u = xcalloc(1, sizeof(*u));
    memcpy(u->id, id, 33);
    u->chunks = l.chunks;
    u->cap_chunks = l.cap;
    /* Chunks count from 0 with no gap; one past a gap (a cut-back that failed midway)
     * holds no byte of the session. */
    for (size_t i = 0; i < l.n; i++) {
        if (l.chunks[i].off != u->stored)
            break;
        u->stored += l.chunks[i].len;
        u->n_chunks = i + 1;
    }
    u->h = digest_hasher_new(DIGEST_SHA256);
    u->is_hash_valid = u->stored == 0;
    u->part_bytes = PART_FIRST;
    buf_init(&u->mpu_parts, SIZE_MAX);
    *out = u;
    *size = u->stored;
    return 0;
}

static int s3_upload_append(struct blobstore *bs, struct blobstore_upload *u, uint64_t offset,
                            const void *p, size_t n, struct err *e);

static int upload_part(struct s3_store *s, const char *key, const char *upload_id, int number,
                       const char *copy_from, const void *p, size_t n, char *etag,
                       size_t etag_len, struct err *e);
static int upload_part_range(struct s3_store *s, const char *key, const char *upload_id,
                             int number, const char *copy_from, uint64_t copy_bytes,
                             uint64_t from, uint64_t len, const void *p, size_t n, char *etag,
                             size_t etag_len, struct err *e);

static void mpu_query(const struct blobstore_upload *u, char *out, size_t n)
{
    char enc[512];
    s3_uri_encode(u->mpu_id, 0, enc, sizeof(enc));
    snprintf(out, n, "uploadId=%s", enc);
}

static int part_wait(struct blobstore_upload *u, struct err *e);

/* Drops the chunk being built (its parts are deleted by S3). */
static void mpu_abort(struct s3_store *s, struct blobstore_upload *u)
{
    struct err ignore = {0};
    part_wait(u, &ignore);
    if (u->mpu_id[0]) {
        char key[512], query[600];
        chunk_key(s, u->id, u->stored, key, sizeof(key));
        mpu_query(u, query, sizeof(query));
        call(s, "DELETE", key, query, NULL, NULL, 0, &ignore);
    }
    u->mpu_id[0] = '\0';
    buf_reset(&u->mpu_parts);
    u->mpu_n = 0;
    u->mpu_len = 0;
}

/* Sends the staged bytes as the next part of the chunk being built (started if none). */
static int mpu_part(struct s3_store *s, struct blobstore_upload *u, struct err *e)
{
    char key[512], etag[256];
    chunk_key(s, u->id, u->stored, key, sizeof(key));
    if (u->mpu_id[0] == '\0') {
        struct httpc_response r;
        httpc_response_init(&r, 64 << 10);
        int rc = s3_request(s->c, "POST", key, "uploads=", NULL, "", 0, &r, e);
        if (rc == 0 && (r.status != 200 ||
                        s3_xml_value(r.body.data ? r.body.data : "", "UploadId", u->mpu_id,
                                     sizeof(u->mpu_id), NULL) != 0)) {
            u->mpu_id[0] = '\0';
            rc = err_set(e, ERR_IO, "s3: multipart upload refused (%ld)", r.status);
        }
        httpc_response_fini(&r);
        if (rc != 0)
            return -1;
    }
    if (upload_part(s, key, u->mpu_id, u->mpu_n + 1, NULL, u->stage, u->stage_len, etag,
                    sizeof(etag), e) != 0)
        return -1;
    u->mpu_n++;
    buf_printf(&u->mpu_parts, "<Part><PartNumber>%d</PartNumber><ETag>%s</ETag></Part>",
               u->mpu_n, etag);
    u->mpu_len += u->stage_len;
    u->stage_len = 0;
    return 0;
}

static void *part_job_main(void *arg)
{
    struct part_job *j = arg;
    j->rc = upload_part(j->s, j->key, j->mpu_id, j->number, NULL, j->p, j->n, j->etag,
                        sizeof(j->etag), &j->e);
    return NULL;
}

/* Waits for the part in flight: -1 with e set when it failed. */
static int part_wait(struct blobstore_upload *u, struct err *e)
{
    if (!u->is_job_running)
        return 0;
    if (!u->is_job_inline)
        pthread_join(u->job_thread, NULL);
    u->is_job_running = false;
    free(u->spare);
    u->spare = u->job.p;
    u->spare_cap = u->job.cap;
    u->job.p = NULL;
    if (u->job.rc != 0) {
        *e = u->job.e;
        return -1;
    }
    u->mpu_n++;
    buf_printf(&u->mpu_parts, "<Part><PartNumber>%d</PartNumber><ETag>%s</ETag></Part>",
               u->mpu_n, u->job.etag);
    return 0;
}

/* Sends the staged bytes as the next part from a thread (waiting for the one before):
 * the request receives the next bytes meanwhile. */
static int part_send(struct s3_store *s, struct blobstore_upload *u, struct err *e)
{
    if (part_wait(u, e) != 0)
        return -1;
    if (u->mpu_id[0] == '\0') {
        /* Starts the multipart upload with the first part, sent here. */
        return mpu_part(s, u, e);
    }
    struct part_job *j = &u->job;
    j->s = s;
    chunk_key(s, u->id, u->stored, j->key, sizeof(j->key));
    j->mpu_id = u->mpu_id;
    j->number = u->mpu_n + 1;
    j->p = u->stage;
    j->cap = u->stage_cap;
    j->n = u->stage_len;
    j->rc = 0;
    u->stage = u->spare;
    u->stage_cap = u->spare_cap;
    u->spare = NULL;
    u->spare_cap = 0;
    u->mpu_len += u->stage_len;
    u->stage_len = 0;
    u->is_job_running = true;
    u->is_job_inline = pthread_create(&u->job_thread, NULL, part_job_main, j) != 0;
    if (u->is_job_inline) {
        part_job_main(j);
        return part_wait(u, e);
    }
    return 0;
}

static void add_chunk(struct blobstore_upload *u, uint64_t len)
{
    if (u->n_chunks == u->cap_chunks) {
        u->cap_chunks = u->cap_chunks ? 2 * u->cap_chunks : 8;
        u->chunks = xrealloc(u->chunks, u->cap_chunks * sizeof(*u->chunks));
    }
    u->chunks[u->n_chunks++] = (struct chunk){u->stored, len};
    u->stored += len;
}

/* Stores the bytes appended since the last store as the chunk at u->stored: completes
 * the multipart upload building it, or PUTs them when they are few. */
static int store_stage(struct s3_store *s, struct blobstore_upload *u, struct err *e)
{
    if (part_wait(u, e) != 0)
        return -1;
    char key[512];
    chunk_key(s, u->id, u->stored, key, sizeof(key));
    if (u->mpu_id[0] == '\0') {
        if (u->stage_len == 0)
            return 0;
        if (put_bytes(s, key, u->stage, u->stage_len, NULL, e) != 0)
            return -1;
        add_chunk(u, u->stage_len);
        u->stage_len = 0;
        return 0;
    }
    if (u->stage_len > 0 && mpu_part(s, u, e) != 0)
        return -1;
    struct buf body;
    buf_init(&body, SIZE_MAX);
    buf_printf(&body, "<CompleteMultipartUpload>%s</CompleteMultipartUpload>",
               u->mpu_parts.data ? u->mpu_parts.data : "");
    char query[600];
    mpu_query(u, query, sizeof(query));
    long st = call(s, "POST", key, query, NULL, body.data, body.len, e);
    buf_fini(&body);
    if (st != 200)
        return st < 0 ? -1 : err_set(e, ERR_IO, "s3: completing a chunk answered %ld", st);
    uint64_t len = u->mpu_len;
    u->mpu_id[0] = '\0';
    buf_reset(&u->mpu_parts);
    u->mpu_n = 0;
    u->mpu_len = 0;
    add_chunk(u, len);
    return 0;
}

/* Past its first part, an upload sends PART_MAX parts if the store's budget has room. */
static void grow_parts(struct s3_store *s, struct blobstore_upload *u)
{
    if (u->reserved > 0 || s->part_budget < PART_RESERVE)
        return;
    uint64_t was = atomic_fetch_add(&s->part_reserved, PART_RESERVE);
    if (was + PART_RESERVE > s->part_budget) {
        atomic_fetch_sub(&s->part_reserved, PART_RESERVE);
        return;
    }
    u->reserved = PART_RESERVE;
    u->part_bytes = PART_MAX;
}

/* The upload's part buffers were released: so is its share of the budget. */
static void shrink_parts(struct s3_store *s, struct blobstore_upload *u)
{
    atomic_fetch_sub(&s->part_reserved, u->reserved);
    u->reserved = 0;
    u->part_bytes = PART_FIRST;
}

static int s3_upload_append(struct blobstore *bs, struct blobstore_upload *u, uint64_t offset,
                            const void *p, size_t n, struct err *e)
{
    uint64_t end = u->stored + u->mpu_len + u->stage_len;
    if (offset != end)
        return err_set(e, ERR_IO, "append at %" PRIu64 ", the session ends at %" PRIu64,
                       offset, end);
    /* Parts of exactly part_bytes: the stage never grows past one part. */
    while (n > 0) {
        size_t take = u->part_bytes - u->stage_len;
        take = take < n ? take : n;
        if (u->stage_len + take > u->stage_cap) {
            size_t cap = u->stage_cap ? u->stage_cap : (1u << 20);
            while (cap < u->stage_len + take)
                cap *= 2;
            u->stage = xrealloc(u->stage, cap);
            u->stage_cap = cap;
        }
        memcpy(u->stage + u->stage_len, p, take);
        u->stage_len += take;
        if (u->is_hash_valid)
            digest_hasher_update(u->h, p, take);
        p = (const char *)p + take;
        n -= take;
        if (u->stage_len >= u->part_bytes) {
            if (part_send(S(bs), u, e) != 0)
                return -1;
            grow_parts(S(bs), u);
        }
    }
    return 0;
}

static int s3_upload_flush(struct blobstore *bs, struct blobstore_upload *u, bool is_durable,
                           struct err *e)
{
    (void)is_durable; /* an acknowledged PUT is durable in S3 */
    return store_stage(S(bs), u, e);
}

static uint64_t s3_upload_idle(struct blobstore *bs, struct blobstore_upload *u)
{
    struct err e = {0};
    if (store_stage(S(bs), u, &e) != 0) {
        log_error("s3", "upload %s: dropped %zu staged bytes: %s", u->id, u->stage_len,
                  err_message(&e));
        mpu_abort(S(bs), u);
        u->stage_len = 0;
        u->is_hash_valid = false;
    }
    free(u->stage);
    u->stage = NULL;
    u->stage_cap = 0;
    free(u->spare);
    u->spare = NULL;
    u->spare_cap = 0;
    shrink_parts(S(bs), u);
    return u->stored;
}

static int s3_upload_truncate(struct blobstore *bs, struct blobstore_upload *u, uint64_t size,
                              uint64_t *now, struct err *e)
{
    struct s3_store *s = S(bs);
    int rc = 0;
    struct err ignore = {0};
    if (part_wait(u, &ignore) != 0) {
        /* A part in flight failed: the chunk being built and what followed are lost. */
        mpu_abort(s, u);
        u->stage_len = 0;
        u->is_hash_valid = false;
    }
    if (size < u->stored + u->mpu_len + u->stage_len)
        u->is_hash_valid = false;
    if (size >= u->stored + u->mpu_len) {
        if (size - u->stored - u->mpu_len <= u->stage_len)
            u->stage_len = (size_t)(size - u->stored - u->mpu_len);
    } else {
        /* Parts of an unfinished chunk were never flushed: a cut goes below them. */
        mpu_abort(s, u);
        u->stage_len = 0;
        /* Drop the chunks from the end; one that holds size is cut by rewriting it. */
        while (u->n_chunks > 0 && u->chunks[u->n_chunks - 1].off + u->chunks[u->n_chunks - 1].len > size) {
            struct chunk c = u->chunks[u->n_chunks - 1];
            char key[512];
            chunk_key(s, u->id, c.off, key, sizeof(key));
            if (c.off < size) {
                struct buf keep;
                buf_init(&keep, SIZE_MAX);
                if (read_into(s, key, 0, size - c.off, NULL, &keep, NULL, NULL, e) != 0 ||
                    put_bytes(s, key, keep.data, keep.len, NULL, e) != 0) {
                    buf_fini(&keep);
                    rc = -1;
                    break;
                }
                buf_fini(&keep);
                u->chunks[u->n_chunks - 1].len = size - c.off;
                u->stored = size;
                break;
            }
            delete_key(s, key);
            u->n_chunks--;
            u->stored = c.off;
        }
    }
    *now = u->stored + u->mpu_len + u->stage_len;
    return rc;
}

/* Rebuilds the hash of every byte held with alg, reading the chunks back. */
static int rehash(struct s3_store *s, struct blobstore_upload *u, enum digest_alg alg,
                  struct err *e)
{
    digest_hasher_free(u->h);
    u->h = digest_hasher_new(alg);
    for (size_t i = 0; i < u->n_chunks; i++) {
        char key[512];
        chunk_key(s, u->id, u->chunks[i].off, key, sizeof(key));
        if (u->chunks[i].len > 0 &&
            read_into(s, key, 0, u->chunks[i].len, u->h, NULL, NULL, NULL, e) != 0)
            return -1;
    }
    digest_hasher_update(u->h, u->stage, u->stage_len);
    u->is_hash_valid = true;
    return 0;
}

/* One part of a multipart upload: its ETag into out. */
static int upload_part(struct s3_store *s, const char *key, const char *upload_id, int number,
                       const char *copy_from, const void *p, size_t n, char *etag,
                       size_t etag_len, struct err *e)
{
    return upload_part_range(s, key, upload_id, number, copy_from, 0, 0, 0, p, n, etag,
                             etag_len, e);
}

/* The same; a copy with len > 0 copies bytes [from, from + len) of copy_from, and its
 * bound grows with the bytes copied (copy_bytes). */
static int upload_part_range(struct s3_store *s, const char *key, const char *upload_id,
                             int number, const char *copy_from, uint64_t copy_bytes,
                             uint64_t from, uint64_t len, const void *p, size_t n, char *etag,
                             size_t etag_len, struct err *e)
{
    char enc_id[512], query[700], hdr[2200], range[96];
    s3_uri_encode(upload_id, 0, enc_id, sizeof(enc_id));
    snprintf(query, sizeof(query), "partNumber=%d&uploadId=%s", number, enc_id);
    snprintf(range, sizeof(range), "x-amz-copy-source-range: bytes=%" PRIu64 "-%" PRIu64, from,
             from + len - 1);
    const char *extra[] = {hdr, len > 0 ? range : NULL, NULL};
    if (copy_from) {
        char enc[2048];
        s3_uri_encode(copy_from, 1, enc, sizeof(enc));
        snprintf(hdr, sizeof(hdr), "x-amz-copy-source: /%s/%s", s->bucket, enc);
    }
    struct httpc_response r;
    httpc_response_init(&r, 64 << 10);
    int rc = s3_request_timed(s->c, "PUT", key, query, copy_from ? extra : NULL,
                              copy_from ? "" : p, copy_from ? 0 : n,
                              copy_timeout_ms(copy_from ? copy_bytes : n), &r, e);
    if (rc == 0) {
        bool ok = r.status == 200 && !(r.body.data && strstr(r.body.data, "<Error>"));
        if (ok && copy_from)
            ok = s3_xml_value(r.body.data ? r.body.data : "", "ETag", etag, etag_len, NULL) == 0;
        else if (ok)
            ok = httpc_response_header(&r, "ETag", etag, etag_len) == 0;
        if (!ok)
            rc = err_set(e, ERR_IO, "s3: part %d answered %ld", number, r.status);
    }
    httpc_response_fini(&r);
    return rc;
}

/* One part of the blob being assembled: a server-side copy of a chunk, or bytes. */
struct part {
    char from[512];            /* the chunk copied, or "" */
    uint64_t range_from, range_len; /* the part of it copied (len 0: all) */
    uint64_t copy_bytes;       /* how many bytes the copy moves */
    struct buf bytes;          /* otherwise the part's bytes */
    char etag[256];
    int rc;
    struct err e;
};

struct assembly {
    struct s3_store *s;
    const char *key, *upload_id;
    struct part *parts;
    size_t n;
    atomic_size_t next;
};

#define COPY_WORKERS 4         /* part copies in flight at once (S3 does them in parallel) */

static void *assembly_worker(void *arg)
{
    struct assembly *a = arg;
    size_t i;
    while ((i = atomic_fetch_add(&a->next, 1)) < a->n) {
        struct part *p = &a->parts[i];
        p->rc = upload_part_range(a->s, a->key, a->upload_id, (int)i + 1,
                                  p->from[0] ? p->from : NULL, p->copy_bytes, p->range_from,
                                  p->range_len,
                                  p->bytes.data, p->bytes.len, p->etag, sizeof(p->etag), &p->e);
    }
    return NULL;
}

/* Assembles the session's chunks (all stored) into key with a multipart upload. */
static int assemble(struct s3_store *s, struct blobstore_upload *u, const char *key,
                    const struct digest *stamp, struct err *e)
{
    /* The parts: chunks of 5 MiB or more are copied; runs of smaller ones are read back
     * into one part (every part but the last must reach the minimum). */
    /* A chunk over copy_max (one request's bytes) is copied as ranges of equal length,
     * each at most copy_max and, copy_max being at least 3 x PART_MIN, at least PART_MIN. */
    size_t n_alloc = 0;
    for (size_t i = 0; i < u->n_chunks; i++)
        n_alloc += 1 + u->chunks[i].len / s->copy_max;
    struct part *parts = xcalloc(n_alloc, sizeof(*parts));
    size_t n = 0;
    int rc = 0;
    bool is_pending = false;
    for (size_t i = 0; i < u->n_chunks && rc == 0; i++) {
        char ck[512];
        chunk_key(s, u->id, u->chunks[i].off, ck, sizeof(ck));
        if (!is_pending && u->chunks[i].len >= PART_MIN) {
            uint64_t len = u->chunks[i].len;
            uint64_t pieces = (len + s->copy_max - 1) / s->copy_max;
            uint64_t piece = (len + pieces - 1) / pieces;
            for (uint64_t at = 0; at < len; at += piece) {
                snprintf(parts[n].from, sizeof(parts[0].from), "%s", ck);
                parts[n].copy_bytes = len - at < piece ? len - at : piece;
                if (pieces > 1) {
                    parts[n].range_from = at;
                    parts[n].range_len = parts[n].copy_bytes;
                }
                n++;
            }
            continue;
        }
        if (!is_pending) {
            buf_init(&parts[n].bytes, SIZE_MAX);
            is_pending = true;
        }
        rc = read_into(s, ck, 0, u->chunks[i].len, NULL, &parts[n].bytes, NULL, NULL, e);
        if (parts[n].bytes.len >= PART_MIN || i + 1 == u->n_chunks) {
            n++;
            is_pending = false;
        }
    }
    if (is_pending)
        n++;
    char upload_id[256] = "";
    if (rc == 0) {
        struct httpc_response r;
        httpc_response_init(&r, 64 << 10);
        char sh[256];
        const char *extra[] = {stamp_of(stamp, sh, sizeof(sh)), NULL};
        rc = s3_request(s->c, "POST", key, "uploads=", extra, "", 0, &r, e);
        if (rc == 0 && (r.status != 200 ||
                        s3_xml_value(r.body.data ? r.body.data : "", "UploadId", upload_id,
                                     sizeof(upload_id), NULL) != 0))
            rc = err_set(e, ERR_IO, "s3: multipart upload refused (%ld)", r.status);
        httpc_response_fini(&r);
    }
    if (rc == 0) {
        struct assembly a = {.s = s, .key = key, .upload_id = upload_id, .parts = parts, .n = n};
        pthread_t t[COPY_WORKERS];
        size_t started = 0;
        for (; started < COPY_WORKERS && started + 1 < n; started++)
            if (pthread_create(&t[started], NULL, assembly_worker, &a) != 0)
                break;
        assembly_worker(&a);
        for (size_t i = 0; i < started; i++)
            pthread_join(t[i], NULL);
    }
    struct buf done;
    buf_init(&done, SIZE_MAX);
    buf_appends(&done, "<CompleteMultipartUpload>");
    for (size_t i = 0; i < n && rc == 0; i++) {
        if (parts[i].rc != 0) {
            *e = parts[i].e;
            rc = -1;
        }
        buf_printf(&done, "<Part><PartNumber>%zu</PartNumber><ETag>%s</ETag></Part>", i + 1,
                   parts[i].etag);
    }
    buf_appends(&done, "</CompleteMultipartUpload>");
    char enc_id[512], query[600];
    s3_uri_encode(upload_id, 0, enc_id, sizeof(enc_id));
    snprintf(query, sizeof(query), "uploadId=%s", enc_id);
    if (rc == 0) {
        long st = call(s, "POST", key, query, NULL, done.data, done.len, e);
        if (st != 200)
            rc = st < 0 ? -1 : err_set(e, ERR_IO, "s3: completing the upload answered %ld", st);
    }
    if (rc != 0 && upload_id[0]) {
        struct err ignore = {0};
        call(s, "DELETE", key, query, NULL, NULL, 0, &ignore);
    }
    buf_fini(&done);
    for (size_t i = 0; i < n_alloc; i++)
        buf_fini(&parts[i].bytes);
    free(parts);
    return rc;
}

static int s3_upload_commit(struct blobstore *bs, struct blobstore_upload *u,
                            const struct digest *want, struct err *e)
{
    struct s3_store *s = S(bs);
    if (store_stage(s, u, e) != 0)
        return -1;
    if ((!u->is_hash_valid || want->alg != DIGEST_SHA256) && rehash(s, u, want->alg, e) != 0)
        return -1;
    struct digest got;
    digest_hasher_final(u->h, &got);
    digest_hasher_free(u->h);
    u->h = digest_hasher_new(DIGEST_SHA256);
    u->is_hash_valid = false; /* the hasher was consumed: a retry rebuilds it */
    if (!digest_equal(&got, want))
        return err_set(e, ERR_DIGEST_INVALID, NULL);
    char key[512];
    blob_key(s, want, key, sizeof(key));
    int rc;
    if (u->n_chunks == 0) {
        rc = put_bytes(s, key, "", 0, want, e);
    } else if (u->n_chunks == 1 && u->chunks[0].len <= s->copy_max) {
        char ck[512];
        chunk_key(s, u->id, 0, ck, sizeof(ck));
        rc = copy_object(s, ck, key, u->chunks[0].len, want, e);
    } else {
        rc = assemble(s, u, key, want, e);
    }
    if (rc == 0)
        note_good_copy(s, want);
    return rc;
}

static void s3_upload_close(struct blobstore *bs, struct blobstore_upload *u)
{
    if (u == NULL)
        return;
    mpu_abort(S(bs), u);
    shrink_parts(S(bs), u);
    buf_fini(&u->mpu_parts);
    free(u->spare);
    digest_hasher_free(u->h);
    free(u->chunks);
    free(u->stage);
    free(u);
}

struct keys {
    char **v;
    size_t n, cap;
};

static int collect(const char *key, int64_t size, void *arg)
{
    (void)size;
    struct keys *k = arg;
    if (k->n == k->cap) {
        k->cap = k->cap ? 2 * k->cap : 16;
        k->v = xrealloc(k->v, k->cap * sizeof(*k->v));
    }
    k->v[k->n++] = xstrdup(key);
    return 0;
}

static void keys_free(struct keys *k)
{
    for (size_t i = 0; i < k->n; i++)
        free(k->v[i]);
    free(k->v);
}

/* Aborts the multipart uploads left under prefix: chunks a request was building when its
 * process died (nobody completes them now; S3 keeps their parts until aborted). */
static void abort_multipart_under(struct s3_store *s, const char *prefix)
{
    char pre[1024], query[1200];
    s3_uri_encode(prefix, 0, pre, sizeof(pre));
    snprintf(query, sizeof(query), "prefix=%s&uploads=", pre);
    struct httpc_response r;
    httpc_response_init(&r, 4u << 20);
    struct err e = {0};
    if (s3_request(s->c, "GET", NULL, query, NULL, NULL, 0, &r, &e) != 0 || r.status != 200) {
        log_warn("s3", "failed to list the multipart uploads under %s (%ld)", prefix, r.status);
        httpc_response_fini(&r);
        return;
    }
    const char *p = r.body.data ? r.body.data : "";
    while ((p = strstr(p, "<Upload>")) != NULL) {
        char key[1024], id[512], enc[600], q[700];
        const char *end = strstr(p, "</Upload>");
        if (end == NULL || s3_xml_value(p, "Key", key, sizeof(key), NULL) != 0 ||
            s3_xml_value(p, "UploadId", id, sizeof(id), NULL) != 0)
            break;
        s3_uri_encode(id, 0, enc, sizeof(enc));
        snprintf(q, sizeof(q), "uploadId=%s", enc);
        struct err ignore = {0};
        long st = call(s, "DELETE", key, q, NULL, NULL, 0, &ignore);
        if (st != 204 && st != 200 && st != 404)
            log_warn("s3", "aborting a multipart upload answered %ld", st);
        p = end;
    }
    httpc_response_fini(&r);
}

static void s3_upload_remove(struct blobstore *bs, const char *id)
{
    struct s3_store *s = S(bs);
    char pre[512];
    session_key(s, id, "", pre, sizeof(pre));
    struct keys k = {0};
    struct err e = {0};
    bool is_all_gone = true;
    if (s3_list(s->c, pre, NULL, collect, &k, &e) != 0) {
        log_warn("s3", "failed to list upload %s: %s", id, err_message(&e));
        is_all_gone = false; /* chunks may be on a page that did not come */
    }
    /* The marker goes last, and only once every chunk is gone: the session stays listed
     * (and is removed again by the next sweep) while any of its objects may be left. */
    for (size_t i = k.n; i-- > 0;)
        if (strstr(k.v[i], "/.session") == NULL && delete_key_e(s, k.v[i], NULL) != 0)
            is_all_gone = false;
    abort_multipart_under(s, pre);
    for (size_t i = 0; is_all_gone && i < k.n; i++)
        if (strstr(k.v[i], "/.session") != NULL)
            delete_key(s, k.v[i]);
    keys_free(&k);
}

static void s3_upload_each(struct blobstore *bs, void (*fn)(const char *id, void *arg),
                           void *arg)
{
    struct s3_store *s = S(bs);
    char pre[512];
    snprintf(pre, sizeof(pre), "%suploads/", s->prefix);
    struct keys k = {0};
    struct err e = {0};
    if (s3_list(s->c, pre, "/", collect, &k, &e) != 0)
        log_warn("s3", "failed to list uploads: %s", err_message(&e));
    for (size_t i = 0; i < k.n; i++) {
        const char *id = k.v[i] + strlen(pre);
        size_t n = strcspn(id, "/");
        if (n == 32) {
            char one[33];
            memcpy(one, id, 32);
            one[32] = '\0';
            fn(one, arg);
        }
    }
    keys_free(&k);
}

/* The blobs under blobs/<alg>/<hex>, each with its object's LastModified: the sweep
 * (src/repl/blob_sweep.h) removes those older than the grace that no row names (a crash
 * between a purge's commit and its removal of the object leaves such objects). */
struct dated_blobs {
    size_t prefix_len;
    struct digest *d;       /* the blobs of one page of the listing */
    int64_t *ms;
    size_t n, cap;
    size_t n_listed;        /* over all pages */
    void (*fn)(const struct digest *d, int64_t stored_ms, void *arg);
    void *fn_arg;
};

static int on_blob_key(const char *key, int64_t size, int64_t modified_ms, void *arg)
{
    (void)size;
    struct dated_blobs *b = arg;
    char name[256];
    const char *rest = key + b->prefix_len; /* <alg>/<hex> */
    const char *slash = strchr(rest, '/');
    if (slash == NULL || strlen(rest) >= sizeof(name))
        return 0;
    snprintf(name, sizeof(name), "%.*s:%s", (int)(slash - rest), rest, slash + 1);
    struct digest d;
    struct err e = {0};
    if (digest_parse(name, strlen(name), &d, &e) != 0)
        return 0; /* not a blob of ours */
    if (b->n == b->cap) {
        b->cap = b->cap ? 2 * b->cap : 64;
        b->d = xrealloc(b->d, b->cap * sizeof(*b->d));
        b->ms = xrealloc(b->ms, b->cap * sizeof(*b->ms));
    }
    b->d[b->n] = d;
    b->ms[b->n++] = modified_ms;
    return 0;
}

/* Hands one page's blobs to fn, after the page is read (fn may remove the blob: the next
 * page starts after the last key of this one). Memory stays at one page (1 000 keys,
 * about 150 KB) however many blobs the bucket holds. No date: never old enough. */
static void on_blob_page(void *arg)
{
    struct dated_blobs *b = arg;
    for (size_t i = 0; i < b->n; i++)
        if (b->ms[i] > 0)
            b->fn(&b->d[i], b->ms[i], b->fn_arg);
    b->n_listed += b->n;
    b->n = 0;
}

static int s3_each_blob(struct blobstore *bs,
                        void (*fn)(const struct digest *d, int64_t stored_ms, void *arg),
                        void *arg, struct err *e)
{
    struct s3_store *s = S(bs);
    char pre[512];
    snprintf(pre, sizeof(pre), "%sblobs/", s->prefix);
    struct dated_blobs b = {.prefix_len = strlen(pre), .fn = fn, .fn_arg = arg};
    struct err le = {0};
    /* The pages that came are swept even when a later one fails. */
    int rc = s3_list_dated(s->c, pre, on_blob_key, on_blob_page, &b, &le);
    if (rc != 0) {
        log_warn("s3", "failed to list blobs (%zu listed before): %s", b.n_listed,
                 err_message(&le));
        if (e != NULL)
            *e = le;
    }
    free(b.d);
    free(b.ms);
    return rc;
}

/* Reading blobs -------------------------------------------------------------- */

/* Sets the copy of d (size bytes) aside under quarantine/. */
static void quarantine(struct s3_store *s, const struct digest *d, uint64_t size)
{
    char key[512], to[512];
    blob_key(s, d, key, sizeof(key));
    snprintf(to, sizeof(to), "%squarantine/%s-%s-%" PRId64, s->prefix, digest_alg_name(d->alg),
             digest_hex(d), util_now_ms());
    struct err e = {0};
    if (copy_object(s, key, to, size, NULL, &e) != 0)
        log_error("s3", "failed to set %s aside: %s", d->str, err_message(&e));
    delete_key(s, key);
    note_waiting(s, d);
    log_error("s3", "blob %s was not what was stored: set aside", d->str);
}

/* Reads all of blob d and checks its digest: 0 when good (stamped verified if it was
 * not), ERR_BLOB_CORRUPT when bad (set aside). */
static int verify_bytes(struct s3_store *s, const struct digest *d, uint64_t size,
                        bool is_stamped, blobstore_throttle_f *throttle, void *throttle_arg,
                        struct err *e)
{
    char key[512];
    blob_key(s, d, key, sizeof(key));
    struct hasher *h = digest_hasher_new(d->alg);
    int rc = size == 0 ? 0 : read_into(s, key, 0, size, h, NULL, throttle, throttle_arg, e);
    struct digest got;
    digest_hasher_final(h, &got);
    digest_hasher_free(h);
    if (rc != 0)
        return -1;
    if (!digest_equal(&got, d)) {
        quarantine(s, d, size);
        return err_set(e, ERR_BLOB_CORRUPT, NULL);
    }
    if (!is_stamped && copy_object(s, key, key, size, d, e) != 0)
        log_warn("s3", "failed to stamp %s verified: %s", d->str, err_message(e));
    return 0;
}

/* Looks blob d up: 0 when it is there with expected_size and its verified stamp (a copy
 * without the stamp is read and checked first). *is_stamped: it had the stamp. */
static int check_blob(struct s3_store *s, const struct digest *d, uint64_t expected_size,
                      bool *is_stamped, struct err *e)
{
    char key[512], stamp[256] = "";
    blob_key(s, d, key, sizeof(key));
    uint64_t size = 0;
    long st = head(s, key, &size, stamp, sizeof(stamp), e);
    if (st == 404)
        return err_set(e, ERR_BLOB_UNKNOWN, NULL);
    if (st != 200)
        return st < 0 ? -1 : err_set(e, ERR_IO, "s3: HEAD answered %ld", st);
    if (size != expected_size) {
        quarantine(s, d, size);
        return err_set(e, ERR_BLOB_CORRUPT, NULL);
    }
    *is_stamped = strcmp(stamp, d->str) == 0;
    if (!*is_stamped)
        log_warn("s3", "blob %s was rewritten since it was verified: checking it", d->str);
    return 0;
}

/* A blob's stream: the first bytes are read before the reply starts (held in head), so an
 * S3 that does not answer is a 503 rather than a 200 cut short at its first byte. */
struct s3_stream {
    struct s3_reader *r;
    char *head;
    size_t head_len, head_pos;
};

#define STREAM_HEAD (64u << 10)

static long stream_read(void *arg, char *p, size_t max)
{
    struct s3_stream *st = arg;
    if (st->head_pos < st->head_len) {
        size_t n = st->head_len - st->head_pos;
        n = n < max ? n : max;
        memcpy(p, st->head + st->head_pos, n);
        st->head_pos += n;
        return (long)n;
    }
    return s3_reader_read(st->r, p, max);
}

static void stream_close(void *arg)
{
    struct s3_stream *st = arg;
    s3_reader_close(st->r);
    free(st->head);
    free(st);
}

static int s3_open(struct blobstore *bs, const struct digest *d, uint64_t expected_size,
                   uint64_t offset, uint64_t length, unsigned accept,
                   struct blobstore_body *out, struct err *e)
{
    struct s3_store *s = S(bs);
    bool is_stamped = false;
    if (check_blob(s, d, expected_size, &is_stamped, e) != 0)
        return -1;
    if (!is_stamped && verify_bytes(s, d, expected_size, false, NULL, NULL, e) != 0)
        return -1;
    char key[512];
    blob_key(s, d, key, sizeof(key));
    memset(out, 0, sizeof(*out));
    out->fd = -1;
    if (s->is_redirect && (accept & BLOBSTORE_ACCEPT_REDIRECT) && length > 0) {
        out->kind = BLOBSTORE_BODY_REDIRECT;
        out->url = s3_presign_get(s->c, key, s->redirect_ttl_s);
        return 0;
    }
    struct s3_stream *st = xcalloc(1, sizeof(*st));
    st->r = s3_reader_open(s->c, key, offset, length);
    if (length > 0) {
        st->head = xmalloc(STREAM_HEAD);
        long n = s3_reader_read(st->r, st->head, STREAM_HEAD);
        if (n < 0) {
            long status = s3_reader_status(st->r);
            stream_close(st);
            if (status == 404)
                return err_set(e, ERR_BLOB_UNKNOWN, NULL);
            log_warn("s3", "GET of blob %s failed (HTTP %ld)", d->str, status);
            return err_set(e, ERR_UNAVAILABLE, "s3: the blob could not be read");
        }
        st->head_len = (size_t)n;
    }
    out->kind = BLOBSTORE_BODY_STREAM;
    out->read = stream_read;
    out->close = stream_close;
    out->arg = st;
    return 0;
}

static int s3_verify(struct blobstore *bs, const struct digest *d, uint64_t expected_size,
                     blobstore_throttle_f *throttle, void *throttle_arg, struct err *e)
{
    struct s3_store *s = S(bs);
    bool is_stamped = false;
    if (check_blob(s, d, expected_size, &is_stamped, e) != 0)
        return -1;
    return verify_bytes(s, d, expected_size, is_stamped, throttle, throttle_arg, e);
}

static int s3_stat(struct blobstore *bs, const struct digest *d, uint64_t *size, struct err *e)
{
    struct s3_store *s = S(bs);
    char key[512];
    blob_key(s, d, key, sizeof(key));
    long st = head(s, key, size, NULL, 0, e);
    if (st == 200)
        return 0;
    if (st == 404)
        return err_set(e, ERR_BLOB_UNKNOWN, NULL);
    return st < 0 ? -1 : err_set(e, ERR_IO, "s3: HEAD answered %ld", st);
}

static int s3_remove(struct blobstore *bs, const struct digest *d, struct err *e)
{
    struct s3_store *s = S(bs);
    char key[512];
    blob_key(s, d, key, sizeof(key));
    return delete_key_e(s, key, e);
}

static int s3_put(struct blobstore *bs, const struct digest *d, const void *p, uint64_t len,
                  struct err *e)
{
    struct s3_store *s = S(bs);
    char key[512];
    blob_key(s, d, key, sizeof(key));
    if (put_bytes(s, key, p, (size_t)len, d, e) != 0)
        return -1;
    note_good_copy(s, d);
    return 0;
}

static size_t s3_remove_all(struct blobstore *bs)
{
    struct s3_store *s = S(bs);
    char pre[512];
    snprintf(pre, sizeof(pre), "%sblobs/", s->prefix);
    struct keys k = {0};
    struct err e = {0};
    if (s3_list(s->c, pre, NULL, collect, &k, &e) != 0)
        log_warn("s3", "failed to list blobs: %s", err_message(&e));
    for (size_t i = 0; i < k.n; i++)
        delete_key(s, k.v[i]);
    size_t n = k.n;
    keys_free(&k);
    return n;
}

static int cmp_quarantined(const void *a, const void *b)
{
    const struct blobstore_quarantined *x = a, *y = b;
    return x->quarantined_ms < y->quarantined_ms ? -1 : x->quarantined_ms > y->quarantined_ms;
}

static void s3_quarantined(struct blobstore *bs, struct blobstore_quarantined **out, size_t *n)
{
    struct s3_store *s = S(bs);
    char pre[512];
    snprintf(pre, sizeof(pre), "%squarantine/", s->prefix);
    struct keys k = {0};
    struct err e = {0};
    *out = NULL;
    *n = 0;
    if (s3_list(s->c, pre, NULL, collect, &k, &e) != 0)
        log_warn("s3", "failed to list the quarantine: %s", err_message(&e));
    struct blobstore_quarantined *q = xcalloc(k.n + 1, sizeof(*q));
    size_t m = 0;
    for (size_t i = 0; i < k.n; i++) {
        const char *name = k.v[i] + strlen(pre);
        const char *dash = strrchr(name, '-');
        const char *first = strchr(name, '-');
        if (dash == NULL || first == dash)
            continue;
        char ds[200];
        snprintf(ds, sizeof(ds), "%.*s:%.*s", (int)(first - name), name,
                 (int)(dash - first - 1), first + 1);
        struct err pe = {0};
        if (digest_parse(ds, strlen(ds), &q[m].digest, &pe) != 0)
            continue;
        snprintf(q[m].file, sizeof(q[m].file), "%s", name);
        q[m].quarantined_ms = strtoll(dash + 1, NULL, 10);
        uint64_t size;
        q[m].is_repaired = s3_stat(bs, &q[m].digest, &size, &pe) == 0;
        m++;
    }
    keys_free(&k);
    qsort(q, m, sizeof(*q), cmp_quarantined);
    *out = q;
    *n = m;
}

static void s3_close(struct blobstore *bs)
{
    struct s3_store *s = S(bs);
    s3_client_free(s->c);
    metrics_blobs_quarantined_add(-(int)s->n_waiting);
    free(s->waiting);
    pthread_mutex_destroy(&s->mu);
    free(s->prefix);
    free(s->bucket);
    free(s);
}

/* Readiness: the bucket answers (HEAD, bounded by timeout_ms) and takes our credentials. */
static int s3_check(struct blobstore *bs, long timeout_ms, struct err *e)
{
    struct s3_store *s = S(bs);
    struct httpc_response r;
    httpc_response_init(&r, 0);
    int rc = s3_request_timed(s->c, "HEAD", NULL, "", NULL, NULL, 0, timeout_ms, &r, e);
    if (rc != 0) {
        err_set(e, ERR_UNAVAILABLE, "s3: the bucket did not answer within %ld ms", timeout_ms);
    } else if (r.status != 200) {
        rc = err_set(e, ERR_UNAVAILABLE, "s3: the bucket answered HTTP %ld", r.status);
    }
    httpc_response_fini(&r);
    return rc;
}

static const struct blobstore_ops s3_ops = {
    .name = "s3",
    .upload_create = s3_upload_create,
    .upload_open = s3_upload_open,
    .upload_append = s3_upload_append,
    .upload_flush = s3_upload_flush,
    .upload_idle = s3_upload_idle,
    .upload_truncate = s3_upload_truncate,
    .upload_commit = s3_upload_commit,
    .upload_close = s3_upload_close,
    .upload_remove = s3_upload_remove,
    .upload_each = s3_upload_each,
    .open = s3_open,
    .verify = s3_verify,
    .stat = s3_stat,
    .remove = s3_remove,
    .put = s3_put,
    .remove_all = s3_remove_all,
    .quarantined = s3_quarantined,
    .close = s3_close,
    .check = s3_check,
    .each_blob = s3_each_blob,
};

static const char *first_of(const char *a, const char *env1, const char *env2)
{
    if (a && a[0])
        return a;
    const char *v = getenv(env1);
    if (v && v[0])
        return v;
    return env2 ? getenv(env2) : NULL;
}

/* A byte count from the environment variable name: 1 with *out set, 0 when unset or empty,
 * -1 with e set when it is not a whole decimal number (a typo must not silently become 0). */
static int env_bytes(const char *name, uint64_t *out, struct err *e)
{
    const char *v = getenv(name);
    if (v == NULL || v[0] == '\0')
        return 0;
    if (util_parse_u64(v, strlen(v), out) != 0) {
        err_set(e, ERR_BAD_REQUEST, "%s=\"%.60s\" is not a number of bytes (digits only)", name,
                v);
        return -1;
    }
    return 1;
}

struct blobstore *blobstore_s3_open(const struct blobstore_s3_options *o, struct err *e)
{
    if (strncmp(o->spec, "s3://", 5) != 0 || o->spec[5] == '\0' || o->spec[5] == '/') {
        err_set(e, ERR_BAD_REQUEST, "blobstore: expected s3://BUCKET[/PREFIX]");
        return NULL;
    }
    const char *b = o->spec + 5;
    size_t bl = strcspn(b, "/");
    char *bucket = xstrndup(b, bl);
    const char *p = b[bl] ? b + bl + 1 : "";
    size_t pl = strlen(p);
    while (pl > 0 && p[pl - 1] == '/')
        pl--;
    struct s3_client *c = s3_client_new(
        first_of(o->endpoint, "S3_ENDPOINT", NULL),
        first_of(o->region, "S3_REGION", "AWS_REGION"),
        first_of(o->access_key, "AWS_ACCESS_KEY_ID", "S3_ACCESS_KEY"),
        first_of(o->secret_key, "AWS_SECRET_ACCESS_KEY", "S3_SECRET_KEY"), bucket, e);
    if (c == NULL) {
        free(bucket);
        return NULL;
    }
    struct s3_store *s = xcalloc(1, sizeof(*s));
    s->base.ops = &s3_ops;
    AZ(pthread_mutex_init(&s->mu, NULL));
    s->c = c;
    s->bucket = bucket;
    s->prefix = xmalloc(pl + 2);
    snprintf(s->prefix, pl + 2, "%.*s%s", (int)pl, p, pl ? "/" : "");
    s->is_redirect = o->is_redirect;
    s->redirect_ttl_s = o->redirect_ttl_s > 0 ? o->redirect_ttl_s : 300;
    s->copy_max = COPY_MAX;
    s->part_budget = PART_BUDGET;
    atomic_init(&s->part_reserved, 0);
    uint64_t v;
    int has = env_bytes("MERIDIAN_S3_PART_BUDGET_BYTES", &v, e);
    if (has == 1)
        s->part_budget = v;
    if (has >= 0)
        has = env_bytes("MERIDIAN_S3_COPY_MAX_BYTES", &v, e);
    if (has == 1)
        s->copy_max = v < 3 * (uint64_t)PART_MIN ? 3 * (uint64_t)PART_MIN
                      : v > COPY_MAX ? COPY_MAX : v;
    if (has < 0) {
        log_error("blobstore", "failed to open s3 bucket %s: %s", bucket, err_message(e));
        s3_close(&s->base);
        return NULL;
    }
    /* The bucket: made when missing (a store that refuses gets a clear error). */
    long st = head(s, NULL, NULL, NULL, 0, e);
    if (st == 404)
        st = call(s, "PUT", NULL, "", NULL, "", 0, e);
    if (st != 200) {
        if (st > 0)
            err_set(e, ERR_UNAVAILABLE, "s3: bucket %s not usable (HTTP %ld)", bucket, st);
        log_error("blobstore", "failed to open s3 bucket %s: %s", bucket, err_message(e));
        s3_close(&s->base);
        return NULL;
    }
    struct blobstore_quarantined *q;
    size_t nq;
    s3_quarantined(&s->base, &q, &nq);
    for (size_t i = 0; i < nq; i++)
        if (!q[i].is_repaired)
            note_waiting(s, &q[i].digest);
    free(q);
    log_info("blobstore", "blobs in s3 bucket %s under \"%s\"%s", bucket, s->prefix,
             s->is_redirect ? ", GETs redirected" : "");
    return &s->base;
}
