/* S3 requests over httpc, signed with SigV4. Keys are URI-encoded with their slashes kept;
 * every request carries x-amz-content-sha256 (UNSIGNED-PAYLOAD: the bytes are checked by
 * their digest above this layer), which RGW requires. */
#include "s3_client.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "log.h"
#include "s3_sigv4.h"
#include "secret.h"
#include "util.h"

struct s3_client {
    char *base;       /* scheme://host[:port] */
    char *host;       /* host[:port] as sent in Host */
    char *bucket;
    char *region, *access_key, *secret_key;
    /* The store's clock minus this node's, in seconds, as its Date header last showed
     * when it refused a signature: requests are signed in the store's time (as AWS's SDKs
     * do), so a node whose clock is off still reaches it. 0 until then. */
    _Atomic int64_t skew_s;
};

/* Now in the store's time, to sign with. */
static int64_t signing_now(struct s3_client *c)
{
    return util_now_s() + atomic_load(&c->skew_s);
}

struct s3_client *s3_client_new(const char *endpoint, const char *region,
                                const char *access_key, const char *secret_key,
                                const char *bucket, struct err *e)
{
    if (endpoint == NULL || endpoint[0] == '\0') {
        err_set(e, ERR_BAD_REQUEST, "s3: no endpoint (--s3-endpoint or S3_ENDPOINT)");
        return NULL;
    }
    if (access_key == NULL || secret_key == NULL || access_key[0] == '\0') {
        err_set(e, ERR_BAD_REQUEST, "s3: no credentials (--s3-access-key/--s3-secret-key, "
                                    "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or "
                                    "S3_ACCESS_KEY/S3_SECRET_KEY)");
        return NULL;
    }
    const char *h = strstr(endpoint, "://");
    if (h == NULL || (strncmp(endpoint, "http://", 7) != 0 &&
                      strncmp(endpoint, "https://", 8) != 0)) {
        err_set(e, ERR_BAD_REQUEST, "s3: endpoint must be an http(s):// URL");
        return NULL;
    }
    h += 3;
    size_t hl = strcspn(h, "/");
    struct s3_client *c = xcalloc(1, sizeof(*c));
    atomic_init(&c->skew_s, 0);
    c->base = xstrndup(endpoint, (size_t)(h - endpoint) + hl);
    c->host = xstrndup(h, hl);
    c->bucket = xstrdup(bucket);
    c->region = xstrdup(region && region[0] ? region : "us-east-1");
    c->access_key = xstrdup(access_key);
    c->secret_key = xstrdup(secret_key);
    return c;
}

void s3_client_free(struct s3_client *c)
{
    if (c == NULL)
        return;
    free(c->base);
    free(c->host);
    free(c->bucket);
    free(c->region);
    free(c->access_key);
    secret_wipe(c->secret_key, strlen(c->secret_key));
    free(c->secret_key);
    free(c);
}

/* "/bucket/key" encoded. */
static void path_of(struct s3_client *c, const char *key, struct buf *out)
{
    char enc[2048];
    buf_printf(out, "/%s", c->bucket);
    if (key != NULL) {
        s3_uri_encode(key, 1, enc, sizeof(enc));
        buf_printf(out, "/%s", enc);
    }
}

/* Headers of a signed request: Host, x-amz-date, x-amz-content-sha256, Authorization,
 * then extra. Returns a NULL-terminated list whose strings live in store. */
static void signed_headers(struct s3_client *c, const char *method, const char *path,
                           const char *query, const char *const *extra, char store[4][2300],
                           const char **list, size_t list_max)
{
    char date[S3_AMZ_DATE_LEN];
    s3_sigv4_date(signing_now(c), date);
    struct s3_sig_header h[] = {
        {"host", c->host},
        {"x-amz-content-sha256", S3_UNSIGNED_PAYLOAD},
        {"x-amz-date", date},
    };
    struct s3_creds cr = {c->access_key, c->secret_key, c->region};
    char *auth = s3_sigv4_authorization(&cr, method, path, query, h, 3, S3_UNSIGNED_PAYLOAD,
                                        date);
    snprintf(store[0], 2300, "Host: %s", c->host);
    snprintf(store[1], 2300, "x-amz-content-sha256: %s", S3_UNSIGNED_PAYLOAD);
    snprintf(store[2], 2300, "x-amz-date: %s", date);
    snprintf(store[3], 2300, "Authorization: %s", auth);
    free(auth);
    size_t n = 0;
    for (int i = 0; i < 4; i++)
        list[n++] = store[i];
    for (size_t i = 0; extra && extra[i] && n + 1 < list_max; i++)
        list[n++] = extra[i];
    list[n] = NULL;
}

int s3_request(struct s3_client *c, const char *method, const char *key, const char *query,
               const char *const *extra, const void *body, size_t len,
               struct httpc_response *out, struct err *e)
{
    /* S3 that stops answering (a full cluster blocks writes) fails the request instead
     * of holding a worker: 30 s, plus a second per MiB of body. */
    return s3_request_timed(c, method, key, query, extra, body, len,
                            30000 + (long)(len >> 20) * 1000, out, e);
}

/* A refusal (403) whose Date is far from this node's signing time: the clocks disagree
 * (the store refuses signatures 15 minutes off). Takes the store's time from then on and
 * says so; true when the request should be signed again. */
static bool corrected_skew(struct s3_client *c, const struct httpc_response *r)
{
    char date[64];
    if (r->status != 403 || httpc_response_header(r, "Date", date, sizeof(date)) != 0)
        return false;
    int64_t theirs = s3_http_date(date);
    if (theirs < 0)
        return false;
    int64_t skew = theirs - util_now_s();
    int64_t before = atomic_load(&c->skew_s);
    if (skew - before < S3_SKEW_CORRECT_S && before - skew < S3_SKEW_CORRECT_S)
        return false;
    atomic_store(&c->skew_s, skew);
    log_warn("s3", "the object store's clock is %" PRId64 " s %s this node's: requests are "
             "signed in its time (set this node's clock right: NTP)",
             skew < 0 ? -skew : skew, skew < 0 ? "behind" : "ahead of");
    return true;
}

int s3_request_timed(struct s3_client *c, const char *method, const char *key,
                     const char *query, const char *const *extra, const void *body,
                     size_t len, long timeout_ms, struct httpc_response *out, struct err *e)
{
    struct buf path, url;
    buf_init(&path, SIZE_MAX);
    buf_init(&url, SIZE_MAX);
    path_of(c, key, &path);
    buf_printf(&url, "%s%s%s%s", c->base, path.data, query[0] ? "?" : "", query);
    char store[4][2300];
    const char *list[16];
    int rc = 0;
    for (int attempt = 0; attempt < 2; attempt++) {
        signed_headers(c, method, path.data, query, extra, store, list, 16);
        struct httpc_request rq = {
            .method = method,
            .url = url.data,
            .headers = list,
            .body = body,
            .body_len = len,
            .timeout_ms = timeout_ms,
        };
        rc = httpc_do(&rq, out, e);
        if (rc != 0 || attempt > 0 || !corrected_skew(c, out))
            break;
        buf_reset(&out->body); /* signed again in the store's time */
        buf_reset(&out->headers);
    }
    if (rc != 0) {
        /* The detail names the endpoint, the bucket and the key: for the log only, not for
         * the client whose request this was. */
        log_warn("s3", "%s %s: %s", method, path.data, err_message(e));
        err_set(e, ERR_UNAVAILABLE, "the object store did not answer");
    }
    buf_fini(&path);
    buf_fini(&url);
    return rc;
}

int s3_xml_value(const char *xml, const char *tag, char *out, size_t out_len,
                 const char **next)
{
    char open[64], close_[64];
    snprintf(open, sizeof(open), "<%s>", tag);
    snprintf(close_, sizeof(close_), "</%s>", tag);
    const char *a = strstr(xml, open);
    if (a == NULL)
        return -1;
    a += strlen(open);
    const char *b = strstr(a, close_);
    if (b == NULL)
        return -1;
    size_t n = (size_t)(b - a);
    if (n >= out_len)
        n = out_len - 1;
    memcpy(out, a, n);
    out[n] = '\0';
    if (next)
        *next = b + strlen(close_);
    return 0;
}

/* "2026-12-03T23:04:26.804Z" (ListObjectsV2's LastModified, UTC) in ms; 0 if it does not
 * parse. */
static int64_t iso8601_ms(const char *s)
{
    struct tm tm = {0};
    int ms = 0, n = 0;
    if (sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
               &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &n) != 6)
        return 0;
    if (s[n] == '.') {
        int digits = 0;
        for (const char *p = s + n + 1; *p >= '0' && *p <= '9'; p++)
            if (digits < 3) {
                ms = ms * 10 + (*p - '0');
                digits++;
            }
        for (; digits < 3; digits++)
            ms *= 10;
    }
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    return (int64_t)timegm(&tm) * 1000 + ms;
}

/* ListObjectsV2 page after page (1000 keys each by default), following
 * NextContinuationToken while IsTruncated. Anything short of the whole listing is an error
 * (a caller must not take a part for the whole): a page that is not a ListBucketResult, an
 * entry that does not parse, a truncated page without a token that fits. */
static int list_pages(struct s3_client *c, const char *prefix, const char *delimiter,
                      s3_list_f *fn, s3_list_dated_f *dated_fn, s3_page_end_f *page_end,
                      void *arg, struct err *e)
{
    char token[4096] = "";
    for (;;) {
        char pre[1024], tok[3 * sizeof(token)], del[16];
        s3_uri_encode(prefix, 0, pre, sizeof(pre));
        s3_uri_encode(token, 0, tok, sizeof(tok));
        s3_uri_encode(delimiter ? delimiter : "", 0, del, sizeof(del));
        /* Canonical order: continuation-token, delimiter, list-type, prefix. */
        struct buf q;
        buf_init(&q, SIZE_MAX);
        if (token[0])
            buf_printf(&q, "continuation-token=%s&", tok);
        if (delimiter)
            buf_printf(&q, "delimiter=%s&", del);
        buf_printf(&q, "list-type=2&prefix=%s", pre);
        struct httpc_response r;
        httpc_response_init(&r, 64u << 20);
        int rc = s3_request(c, "GET", NULL, q.data, NULL, NULL, 0, &r, e);
        buf_fini(&q);
        if (rc == 0 && r.status != 200) {
            log_error("s3", "list of %s answered %ld", prefix, r.status);
            rc = err_set(e, ERR_UNAVAILABLE, "s3: list answered %ld", r.status);
        }
        if (rc != 0) {
            httpc_response_fini(&r);
            return -1;
        }
        const char *p = r.body.data ? r.body.data : "";
        if (strstr(p, "<ListBucketResult") == NULL) {
            log_error("s3", "list of %s answered 200 without a ListBucketResult", prefix);
            httpc_response_fini(&r);
            return err_set(e, ERR_UNAVAILABLE, "s3: list answer did not parse");
        }
        int stop = 0;
        bool is_bad = false;
        /* Objects: <Contents><Key>k</Key>...<Size>n</Size>...</Contents> */
        const char *q2 = p;
        while (!stop && (q2 = strstr(q2, "<Contents>")) != NULL) {
            char key[1024], size[32], modified[64] = "";
            const char *end = strstr(q2, "</Contents>");
            if (end == NULL || s3_xml_value(q2, "Key", key, sizeof(key), NULL) != 0 ||
                s3_xml_value(q2, "Size", size, sizeof(size), NULL) != 0) {
                is_bad = true;
                break;
            }
            if (dated_fn != NULL) {
                const char *lm = strstr(q2, "<LastModified>");
                if (lm != NULL && lm < end)
                    s3_xml_value(lm, "LastModified", modified, sizeof(modified), NULL);
                stop = dated_fn(key, strtoll(size, NULL, 10), iso8601_ms(modified), arg);
            } else {
                stop = fn(key, strtoll(size, NULL, 10), arg);
            }
            q2 = end;
        }
        q2 = p;
        while (!stop && (q2 = strstr(q2, "<CommonPrefixes>")) != NULL) {
            char key[1024];
            if (s3_xml_value(q2, "Prefix", key, sizeof(key), &q2) != 0) {
                is_bad = true;
                break;
            }
            stop = fn != NULL ? fn(key, -1, arg) : 0;
        }
        char trunc[16] = "";
        s3_xml_value(p, "IsTruncated", trunc, sizeof(trunc), NULL);
        bool more = strcmp(trunc, "true") == 0;
        /* A token cut to fit the buffer would restart the listing somewhere else. */
        bool has_token =
            more && s3_xml_value(p, "NextContinuationToken", token, sizeof(token), NULL) == 0 &&
            token[0] != '\0' && strlen(token) < sizeof(token) - 1;
        httpc_response_fini(&r);
        /* Before the next page is asked for: the caller may act on this one (delete its
         * keys: a continuation token names the last key, so later pages do not move). */
        if (page_end != NULL)
            page_end(arg);
        if (stop)
            return 0;
        if (is_bad || (more && !has_token)) {
            log_error("s3", "list of %s: %s", prefix,
                      is_bad ? "an entry did not parse" : "truncated without a usable token");
            return err_set(e, ERR_UNAVAILABLE, "s3: list answer did not parse");
        }
        if (!more)
            return 0;
    }
}

int s3_list(struct s3_client *c, const char *prefix, const char *delimiter, s3_list_f *fn,
            void *arg, struct err *e)
{
    return list_pages(c, prefix, delimiter, fn, NULL, NULL, arg, e);
}

int s3_list_dated(struct s3_client *c, const char *prefix, s3_list_dated_f *fn,
                  s3_page_end_f *page_end, void *arg, struct err *e)
{
    return list_pages(c, prefix, NULL, NULL, fn, page_end, arg, e);
}

char *s3_presign_get(struct s3_client *c, const char *key, int64_t expires_s)
{
    struct buf path;
    buf_init(&path, SIZE_MAX);
    path_of(c, key, &path);
    char date[S3_AMZ_DATE_LEN];
    s3_sigv4_date(signing_now(c), date);
    struct s3_creds cr = {c->access_key, c->secret_key, c->region};
    char *url = s3_sigv4_presign(&cr, "GET", c->base, c->host, path.data, date, expires_s);
    buf_fini(&path);
    return url;
}

/* The pull reader ------------------------------------------------------------ */

struct s3_reader {
    int fds[2];              /* the GET's thread writes [1], read() takes [0] */
    pthread_t thread;
    bool is_started, is_joined;
    atomic_bool abort;
    char *url;
    char store[4][2300];
    char range[64];
    const char *headers[8];
    uint64_t length;
    uint64_t delivered;      /* bytes read() returned */
    long status;
    int rc;                  /* the GET's result: 0 completed */
};

static int pipe_sink(void *arg, long status, const void *p, size_t n)
{
    struct s3_reader *r = arg;
    r->status = status;
    const char *s = p;
    while (n > 0) {
        ssize_t w = write(r->fds[1], s, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;  /* the reader went away */
        }
        s += w;
        n -= (size_t)w;
    }
    return 0;
}

static void *reader_main(void *arg)
{
    struct s3_reader *r = arg;
    struct httpc_stream st = {
        .url = r->url,
        .headers = r->headers,
        .low_speed_bytes = 1,
        .low_speed_time_s = 60,
        .sink = pipe_sink,
        .sink_arg = r,
        .abort = &r->abort,
    };
    struct err e = {0};
    long status = 0;
    r->rc = httpc_stream_get(&st, &status, &e);
    r->status = status;
    close(r->fds[1]);  /* the reader sees the end; the result is set before */
    return NULL;
}

struct s3_reader *s3_reader_open(struct s3_client *c, const char *key, uint64_t offset,
                                 uint64_t length)
{
    struct s3_reader *r = xcalloc(1, sizeof(*r));
    r->length = length;
    r->fds[0] = r->fds[1] = -1;
    r->rc = -1;
    if (length == 0)
        return r;
    if (pipe(r->fds) != 0)
        return r;
    /* 1 MiB instead of 64 KiB: the GET's thread and the sending one take turns once per
     * MiB, not 16 times, which a loaded machine (each turn a wait for a core) feels. */
    (void)fcntl(r->fds[1], F_SETPIPE_SZ, 1 << 20);
    struct buf path, url;
    buf_init(&path, SIZE_MAX);
    buf_init(&url, SIZE_MAX);
    path_of(c, key, &path);
    buf_printf(&url, "%s%s", c->base, path.data);
    snprintf(r->range, sizeof(r->range), "Range: bytes=%llu-%llu", (unsigned long long)offset,
             (unsigned long long)(offset + length - 1));
    const char *extra[] = {r->range, NULL};
    signed_headers(c, "GET", path.data, "", extra, r->store, r->headers, 8);
    r->url = buf_steal(&url, NULL);
    buf_fini(&path);
    if (pthread_create(&r->thread, NULL, reader_main, r) != 0) {
        close(r->fds[1]);
        r->fds[1] = -1;
        return r;
    }
    r->is_started = true;
    return r;
}

static void join(struct s3_reader *r)
{
    if (r->is_started && !r->is_joined) {
        pthread_join(r->thread, NULL);
        r->is_joined = true;
    }
}

long s3_reader_read(struct s3_reader *r, char *p, size_t max)
{
    if (r->length == 0)
        return 0;
    if (!r->is_started)
        return -1;
    for (;;) {
        ssize_t n = read(r->fds[0], p, max);
        if (n < 0 && errno == EINTR)
            continue;
        if (n > 0) {
            r->delivered += (uint64_t)n;
            return (long)n;
        }
        if (n < 0)
            return -1;
        join(r);
        bool ok = r->rc == 0 && (r->status == 206 || r->status == 200) &&
                  r->delivered == r->length;
        return ok ? 0 : -1;
    }
}

long s3_reader_status(struct s3_reader *r)
{
    return r->status;
}

void s3_reader_close(struct s3_reader *r)
{
    if (r == NULL)
        return;
    atomic_store(&r->abort, true);
    if (r->fds[0] >= 0)
        close(r->fds[0]);  /* a writer blocked on the pipe gets EPIPE */
    join(r);
    if (!r->is_started && r->fds[1] >= 0)
        close(r->fds[1]);
    free(r->url);
    free(r);
}
