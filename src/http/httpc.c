/* libcurl easy handles, one per call: simple and thread-safe. Bodies are collected in
 * capped buffers or streamed into a sink; nothing grows with a blob's size. */
#include "httpc.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "log.h"
#include "tls.h"
#include "url.h"
#include "util.h"

void httpc_global_init(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* Peer TLS identity ------------------------------------------------------------- */

#define PEER_TLS_FILE_MAX (1024 * 1024)

/* Held in memory and handed to curl as blobs (which curl copies): a file replaced under
 * a running call cannot mix an old certificate with a new key. Published through an
 * atomic pointer; replaced identities stay allocated until exit, as a call may be
 * copying one at that moment (a few KiB per rotation). */
struct peer_tls {
    struct buf cert, key, ca;
    struct peer_tls *older;
};

static _Atomic(struct peer_tls *) current_peer_tls;

static int slurp(const char *path, struct buf *out, struct err *e)
{
    buf_init(out, PEER_TLS_FILE_MAX);
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return err_set(e, ERR_BAD_REQUEST, "cannot open %s", path);
    char chunk[8192];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        buf_append(out, chunk, n);
    fclose(f);
    if (out->len == 0 || out->is_too_big)
        return err_set(e, ERR_BAD_REQUEST, "%s is empty or too large", path);
    return 0;
}

static void peer_tls_free(struct peer_tls *t)
{
    if (t->key.data != NULL)
        memset(t->key.data, 0, t->key.len); /* the private key's bytes */
    buf_fini(&t->cert);
    buf_fini(&t->key);
    buf_fini(&t->ca);
    free(t);
}

int httpc_peer_tls_load(const char *cert_file, const char *key_file, const char *ca_file,
                        struct err *e)
{
    if ((cert_file == NULL) != (key_file == NULL))
        return err_set(e, ERR_BAD_REQUEST, "peer-tls-cert and peer-tls-key go together");
    struct peer_tls *t = xcalloc(1, sizeof(*t));
    int rc = 0;
    if (cert_file != NULL &&
        (slurp(cert_file, &t->cert, e) != 0 || slurp(key_file, &t->key, e) != 0 ||
         tls_check_pair_pem(t->cert.data, t->cert.len, t->key.data, t->key.len, e) != 0))
        rc = -1;
    if (rc == 0 && ca_file != NULL && slurp(ca_file, &t->ca, e) != 0)
        rc = -1;
    if (rc != 0) {
        peer_tls_free(t);
        return -1;
    }
    t->older = atomic_load(&current_peer_tls);
    atomic_store(&current_peer_tls, t);
    return 0;
}

/* A call to a peer: present this region's certificate, trust the peer CA too. */
static void set_peer_tls(CURL *c, bool is_peer)
{
    struct peer_tls *t = is_peer ? atomic_load(&current_peer_tls) : NULL;
    if (t == NULL)
        return;
    if (t->cert.len > 0) {
        struct curl_blob cert = {t->cert.data, t->cert.len, CURL_BLOB_COPY};
        struct curl_blob key = {t->key.data, t->key.len, CURL_BLOB_COPY};
        curl_easy_setopt(c, CURLOPT_SSLCERT_BLOB, &cert);
        curl_easy_setopt(c, CURLOPT_SSLCERTTYPE, "PEM");
        curl_easy_setopt(c, CURLOPT_SSLKEY_BLOB, &key);
        curl_easy_setopt(c, CURLOPT_SSLKEYTYPE, "PEM");
    }
    /* Replaces the system CA file, not the system CA directory (Debian's libcurl has
     * both), so public CAs stay trusted beside the peer CA. */
    if (t->ca.len > 0) {
        struct curl_blob ca = {t->ca.data, t->ca.len, CURL_BLOB_COPY};
        curl_easy_setopt(c, CURLOPT_CAINFO_BLOB, &ca);
    }
}

void httpc_response_init(struct httpc_response *r, size_t body_max)
{
    memset(r, 0, sizeof(*r));
    buf_init(&r->body, body_max);
    buf_init(&r->headers, 64 * 1024);
}

void httpc_response_fini(struct httpc_response *r)
{
    buf_fini(&r->body);
    buf_fini(&r->headers);
}

int httpc_response_header(const struct httpc_response *r, const char *name, char *out,
                          size_t out_len)
{
    size_t nlen = strlen(name);
    const char *p = r->headers.data;
    while (p && *p) {
        const char *eol = strchr(p, '\n');
        size_t len = eol ? (size_t)(eol - p) : strlen(p);
        if (len > nlen && strncasecmp(p, name, nlen) == 0 && p[nlen] == ':') {
            const char *v = p + nlen + 1;
            const char *end = p + len;
            while (v < end && (*v == ' ' || *v == '\t'))
                v++;
            while (end > v && (end[-1] == '\r' || end[-1] == ' '))
                end--;
            size_t vlen = (size_t)(end - v);
            if (vlen >= out_len)
                vlen = out_len - 1;
            memcpy(out, v, vlen);
            out[vlen] = '\0';
            return 0;
        }
        p = eol ? eol + 1 : NULL;
    }
    return -1;
}

static size_t on_body(char *p, size_t size, size_t n, void *arg)
{
    struct buf *b = arg;
    /* Past the cap the rest is dropped; the caller sees is_too_big. */
    buf_append(b, p, size * n);
    return size * n;
}

static size_t on_header(char *p, size_t size, size_t n, void *arg)
{
    struct buf *b = arg;
    buf_append(b, p, size * n);
    return size * n;
}

static int on_progress(void *arg, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                       curl_off_t ulnow)
{
    const atomic_bool *abort_flag = arg;
    (void)dltotal;
    (void)dlnow;
    (void)ultotal;
    (void)ulnow;
    return atomic_load(abort_flag) ? 1 : 0;
}

static void set_abort(CURL *c, const atomic_bool *abort_flag)
{
    if (abort_flag == NULL)
        return;
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, (void *)abort_flag);
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
}

static struct curl_slist *make_headers(const char *const *headers)
{
    struct curl_slist *list = NULL;
    for (size_t i = 0; headers && headers[i]; i++)
        list = curl_slist_append(list, headers[i]);
    /* Never send "Expect: 100-continue": it costs a round trip per request. */
    list = curl_slist_append(list, "Expect:");
    return list;
}

int httpc_do(const struct httpc_request *rq, struct httpc_response *out, struct err *e)
{
    CURL *c = curl_easy_init();
    AN(c);
    struct curl_slist *hdrs = make_headers(rq->headers);
    curl_easy_setopt(c, CURLOPT_URL, rq->url);
    curl_easy_setopt(c, CURLOPT_PATH_AS_IS, 1L); /* sent as given: no dot-segment removal */
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, rq->method);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &out->body);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &out->headers);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS,
                     rq->connect_timeout_ms ? rq->connect_timeout_ms : 10000L);
    if (rq->timeout_ms)
        curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, rq->timeout_ms);
    if (rq->interface)
        curl_easy_setopt(c, CURLOPT_INTERFACE, rq->interface);
    set_peer_tls(c, rq->is_peer);
    set_abort(c, rq->abort);
    if (strcmp(rq->method, "HEAD") == 0)
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    if (rq->body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, rq->body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)rq->body_len);
    }
    CURLcode rc = curl_easy_perform(c);
    int ret = 0;
    if (rc != CURLE_OK) {
        /* The URL as it may be shown: a webhook's may hold a secret (its userinfo, a query
         * token), and this message lands in the log and in the delivery record. */
        char *shown = url_redact(rq->url);
        log_debug("httpc", "failed to %s %s: %s", rq->method, shown, curl_easy_strerror(rc));
        ret = err_set(e, ERR_UNAVAILABLE, "cannot reach %s: %s", shown, curl_easy_strerror(rc));
        free(shown);
    } else {
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &out->status);
        curl_easy_getinfo(c, CURLINFO_TOTAL_TIME, &out->total_s);
    }
    curl_slist_free_all(hdrs);
    curl_easy_cleanup(c);
    return ret;
}

struct stream_ctx {
    const struct httpc_stream *st;
    CURL *c;
    bool is_sink_error;
    bool is_status_checked;
    bool is_ok_status;
    long status;
};

static size_t on_stream(char *p, size_t size, size_t n, void *arg)
{
    struct stream_ctx *ctx = arg;
    if (!ctx->is_status_checked) {
        long status = 0;
        curl_easy_getinfo(ctx->c, CURLINFO_RESPONSE_CODE, &status);
        ctx->status = status;
        ctx->is_ok_status = status == 200 || status == 206;
        ctx->is_status_checked = true;
    }
    /* Error bodies are not blob bytes: drop them. */
    if (!ctx->is_ok_status)
        return size * n;
    if (ctx->st->sink(ctx->st->sink_arg, ctx->status, p, size * n) != 0) {
        ctx->is_sink_error = true;
        return 0;
    }
    return size * n;
}

int httpc_stream_get(const struct httpc_stream *st, long *status, struct err *e)
{
    CURL *c = curl_easy_init();
    AN(c);
    struct stream_ctx ctx = {.st = st, .c = c};
    struct curl_slist *hdrs = make_headers(st->headers);
    char range[64];
    curl_easy_setopt(c, CURLOPT_URL, st->url);
    curl_easy_setopt(c, CURLOPT_PATH_AS_IS, 1L); /* sent as given: no dot-segment removal */
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_stream);
    /* Large reads mean fewer sink calls (each one a write and a hash update). */
    curl_easy_setopt(c, CURLOPT_BUFFERSIZE, 512L * 1024);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &ctx);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
    if (st->low_speed_bytes > 0) {
        curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, st->low_speed_bytes);
        curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, st->low_speed_time_s);
    }
    if (st->interface)
        curl_easy_setopt(c, CURLOPT_INTERFACE, st->interface);
    set_abort(c, st->abort);
    if (st->range_start > 0) {
        snprintf(range, sizeof(range), "%llu-", (unsigned long long)st->range_start);
        curl_easy_setopt(c, CURLOPT_RANGE, range);
    }
    CURLcode rc = curl_easy_perform(c);
    *status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
    int ret = 0;
    if (ctx.is_sink_error)
        ret = -1; /* the sink set its own error */
    else if (rc != CURLE_OK)
        ret = err_set(e, ERR_UNAVAILABLE, "transfer from %s broke: %s", st->url,
                      curl_easy_strerror(rc));
    curl_slist_free_all(hdrs);
    curl_easy_cleanup(c);
    return ret;
}

/* Relay (the front) -------------------------------------------------------------------- */

/* One connection cache for every relay, whichever thread runs it: the front starts a
 * relay thread per request, so a per-thread cache would never be reused. */
static CURLSH *relay_share;
static pthread_mutex_t relay_share_mu[CURL_LOCK_DATA_LAST];
static pthread_once_t relay_share_once = PTHREAD_ONCE_INIT;

static void on_share_lock(CURL *c, curl_lock_data data, curl_lock_access access, void *arg)
{
    (void)c;
    (void)access;
    (void)arg;
    AZ(pthread_mutex_lock(&relay_share_mu[data]));
}

static void on_share_unlock(CURL *c, curl_lock_data data, void *arg)
{
    (void)c;
    (void)arg;
    AZ(pthread_mutex_unlock(&relay_share_mu[data]));
}

static void relay_share_init(void)
{
    for (int i = 0; i < CURL_LOCK_DATA_LAST; i++)
        AZ(pthread_mutex_init(&relay_share_mu[i], NULL));
    relay_share = curl_share_init();
    AN(relay_share);
    curl_share_setopt(relay_share, CURLSHOPT_LOCKFUNC, on_share_lock);
    curl_share_setopt(relay_share, CURLSHOPT_UNLOCKFUNC, on_share_unlock);
    curl_share_setopt(relay_share, CURLSHOPT_SHARE, CURL_LOCK_DATA_CONNECT);
    curl_share_setopt(relay_share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
}

struct relay_ctx {
    const struct httpc_relay *r;
    CURL *c;
    struct buf head;         /* header lines of the response being received */
    bool is_head_sent;
    bool is_aborted;
    curl_off_t moved;        /* bytes moved either way when the progress was last seen */
};

/* A relay's progress: abandoned by its caller, or given up on while nothing moves. */
static int on_relay_progress(void *arg, curl_off_t dltotal, curl_off_t dlnow,
                             curl_off_t ultotal, curl_off_t ulnow)
{
    struct relay_ctx *ctx = arg;
    const struct httpc_relay *r = ctx->r;
    (void)dltotal;
    (void)ultotal;
    if (r->abort != NULL && atomic_load(r->abort))
        return 1;
    bool is_still = dlnow + ulnow == ctx->moved;
    ctx->moved = dlnow + ulnow;
    return is_still && r->give_up != NULL && r->give_up(r->arg) ? 1 : 0;
}

static size_t on_relay_read(char *p, size_t size, size_t n, void *arg)
{
    struct relay_ctx *ctx = arg;
    long got = ctx->r->read(ctx->r->arg, p, size * n);
    if (got < 0) {
        ctx->is_aborted = true;
        return CURL_READFUNC_ABORT;
    }
    return (size_t)got;
}

static int relay_head_done(struct relay_ctx *ctx)
{
    if (ctx->is_head_sent)
        return 0;
    ctx->is_head_sent = true;
    long status = 0;
    curl_easy_getinfo(ctx->c, CURLINFO_RESPONSE_CODE, &status);
    if (ctx->r->on_head(ctx->r->arg, status, ctx->head.data ? ctx->head.data : "",
                        ctx->head.len) != 0) {
        ctx->is_aborted = true;
        return -1;
    }
    return 0;
}

static size_t on_relay_header(char *p, size_t size, size_t n, void *arg)
{
    struct relay_ctx *ctx = arg;
    size_t len = size * n;
    if (len >= 5 && strncmp(p, "HTTP/", 5) == 0) {
        buf_reset(&ctx->head); /* a new response (after a 1xx): start over */
        return len;
    }
    if (len <= 2 && (p[0] == '\r' || p[0] == '\n')) {
        long status = 0;
        curl_easy_getinfo(ctx->c, CURLINFO_RESPONSE_CODE, &status);
        if (status >= 200 && relay_head_done(ctx) != 0)
            return 0;
        return len;
    }
    if (buf_append(&ctx->head, p, len) != 0)
        return 0; /* more header than any registry sends */
    return len;
}

static size_t on_relay_body(char *p, size_t size, size_t n, void *arg)
{
    struct relay_ctx *ctx = arg;
    if (relay_head_done(ctx) != 0)
        return 0;
    long status = 0;
    curl_easy_getinfo(ctx->c, CURLINFO_RESPONSE_CODE, &status);
    if (ctx->r->sink(ctx->r->arg, status, p, size * n) != 0) {
        ctx->is_aborted = true;
        return 0;
    }
    return size * n;
}

/* Sets c up for relay r (ctx receives the callbacks); returns the header list to free. */
static struct curl_slist *relay_setup(CURL *c, const struct httpc_relay *r, struct relay_ctx *ctx)
{
    AZ(pthread_once(&relay_share_once, relay_share_init));
    curl_easy_setopt(c, CURLOPT_SHARE, relay_share);
    struct curl_slist *hdrs = make_headers(r->headers);
    curl_easy_setopt(c, CURLOPT_URL, r->url);
    curl_easy_setopt(c, CURLOPT_PATH_AS_IS, 1L); /* sent as given: no dot-segment removal */
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_relay_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, ctx);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_relay_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, ctx);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS,
                     r->connect_timeout_ms ? r->connect_timeout_ms : 10000L);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, r->low_speed_time_s ? r->low_speed_time_s : 60L);
    /* Bytes pass through as they are: no decoding, no redirects followed. */
    curl_easy_setopt(c, CURLOPT_HTTP_CONTENT_DECODING, 0L);
    curl_easy_setopt(c, CURLOPT_HTTP_TRANSFER_DECODING, 1L);
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_relay_progress);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, ctx);
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    if (strcmp(r->method, "HEAD") == 0)
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    if (r->has_body) {
        curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(c, CURLOPT_READFUNCTION, on_relay_read);
        curl_easy_setopt(c, CURLOPT_READDATA, ctx);
        if (r->body_len >= 0)
            curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE, (curl_off_t)r->body_len);
    } else if (strcmp(r->method, "POST") == 0 || strcmp(r->method, "PUT") == 0 ||
               strcmp(r->method, "PATCH") == 0) {
        /* An empty body still says so (Content-Length: 0), as the client's did. */
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, "");
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)0);
    }
    /* After UPLOAD/POSTFIELDS, which set their own method. */
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, r->method);
    return hdrs;
}

/* Whether a failed exchange made a connection (something may have reached the peer). */
static bool relay_was_connected(CURL *c, CURLcode rc)
{
    double connect_s = 0;
    curl_easy_getinfo(c, CURLINFO_CONNECT_TIME, &connect_s);
    return rc != CURLE_COULDNT_CONNECT && rc != CURLE_COULDNT_RESOLVE_HOST &&
           !(rc == CURLE_OPERATION_TIMEDOUT && connect_s == 0);
}

int httpc_relay(const struct httpc_relay *r, bool *is_connected, struct err *e)
{
    CURL *c = curl_easy_init();
    AN(c);
    struct relay_ctx ctx = {.r = r, .c = c};
    buf_init(&ctx.head, 64 * 1024);
    struct curl_slist *hdrs = relay_setup(c, r, &ctx);
    CURLcode rc = curl_easy_perform(c);
    *is_connected = relay_was_connected(c, rc);
    int ret = 0;
    if (rc == CURLE_OK && !ctx.is_head_sent)
        rc = relay_head_done(&ctx) == 0 ? CURLE_OK : CURLE_WRITE_ERROR;
    if (rc != CURLE_OK) {
        log_debug("httpc", "failed to relay %s %s: %s", r->method, r->url,
                  curl_easy_strerror(rc));
        ret = err_set(e, ERR_UNAVAILABLE, "cannot reach %s: %s", r->url,
                      curl_easy_strerror(rc));
    }
    buf_fini(&ctx.head);
    curl_slist_free_all(hdrs);
    curl_easy_cleanup(c);
    return ret;
}

/* Relays driven by their caller ------------------------------------------------------- *
 * The exchange runs on the caller's thread, step by step (curl multi with one easy
 * handle), as the caller needs the head and then body bytes: no thread hand-off, no
 * pipe. The response body waits in a small buffer; when it is full, curl is paused (the
 * region is then held back by TCP) until the caller has taken it. A thread keeps one
 * idle multi and easy handle for its next relay (the front runs a thread per
 * connection, one request at a time); connections to regions are in the shared cache. */

#define PULL_BUF_MAX (256u << 10)

struct httpc_pull {
    struct relay_ctx ctx;
    struct httpc_relay relay;   /* the caller's (its sink unused: bytes go to data) */
    CURLM *m;
    CURL *c;
    struct curl_slist *hdrs;
    char *data;                 /* body bytes received, not yet read: [off, len) */
    size_t off, len, cap;
    bool is_paused;
    bool is_done;
    CURLcode rc;
};

struct pull_handles {
    CURLM *m;
    CURL *c;
};

static pthread_key_t pull_key;
static pthread_once_t pull_key_once = PTHREAD_ONCE_INIT;

static void pull_handles_free(void *arg)
{
    struct pull_handles *h = arg;
    if (h == NULL)
        return;
    curl_multi_cleanup(h->m);
    curl_easy_cleanup(h->c);
    free(h);
}

static void pull_key_init(void)
{
    AZ(pthread_key_create(&pull_key, pull_handles_free));
}

static void buffer_append(struct httpc_pull *pl, const void *p, size_t n)
{
    if (pl->len + n > pl->cap) {
        if (pl->off > 0) {
            memmove(pl->data, pl->data + pl->off, pl->len - pl->off);
            pl->len -= pl->off;
            pl->off = 0;
        }
        if (pl->len + n > pl->cap) {
            pl->cap = pl->len + n > 2 * pl->cap ? pl->len + n : 2 * pl->cap;
            pl->data = xrealloc(pl->data, pl->cap);
        }
    }
    memcpy(pl->data + pl->len, p, n);
    pl->len += n;
}

static size_t on_pull_body(char *p, size_t size, size_t n, void *arg)
{
    struct httpc_pull *pl = arg;
    if (relay_head_done(&pl->ctx) != 0)
        return 0;
    /* Full: curl keeps this piece and offers it again once unpaused. */
    if (pl->len - pl->off >= PULL_BUF_MAX) {
        pl->is_paused = true;
        return CURL_WRITEFUNC_PAUSE;
    }
    buffer_append(pl, p, size * n);
    return size * n;
}

struct httpc_pull *httpc_pull_start(const struct httpc_relay *r)
{
    ASSERT(!r->has_body);
    AZ(pthread_once(&pull_key_once, pull_key_init));
    struct httpc_pull *pl = xcalloc(1, sizeof(*pl));
    struct pull_handles *h = pthread_getspecific(pull_key);
    if (h != NULL && h->m != NULL) {
        pl->m = h->m;
        pl->c = h->c;
        h->m = NULL;
        h->c = NULL;
    } else {
        pl->m = curl_multi_init();
        pl->c = curl_easy_init();
        AN(pl->m);
        AN(pl->c);
    }
    pl->relay = *r;
    pl->ctx.r = &pl->relay;
    pl->ctx.c = pl->c;
    buf_init(&pl->ctx.head, 64 * 1024);
    pl->hdrs = relay_setup(pl->c, &pl->relay, &pl->ctx);
    /* Blob bodies in large reads: fewer calls per MiB (the default is 16 KiB). */
    curl_easy_setopt(pl->c, CURLOPT_BUFFERSIZE, (long)(PULL_BUF_MAX / 2));
    curl_easy_setopt(pl->c, CURLOPT_WRITEFUNCTION, on_pull_body);
    curl_easy_setopt(pl->c, CURLOPT_WRITEDATA, pl);
    AZ(curl_multi_add_handle(pl->m, pl->c));
    return pl;
}

/* Runs the exchange until it ended or until is_enough() holds. */
static void pull_drive(struct httpc_pull *pl, bool (*is_enough)(const struct httpc_pull *))
{
    while (!pl->is_done) {
        int running = 0;
        CURLMcode mc = curl_multi_perform(pl->m, &running);
        int queued;
        CURLMsg *msg;
        while ((msg = curl_multi_info_read(pl->m, &queued)) != NULL) {
            if (msg->msg == CURLMSG_DONE) {
                pl->is_done = true;
                pl->rc = msg->data.result;
            }
        }
        if (mc != CURLM_OK && !pl->is_done) {
            pl->is_done = true;
            pl->rc = CURLE_SEND_ERROR;
        }
        if (pl->is_done || is_enough(pl))
            return;
        curl_multi_poll(pl->m, NULL, 0, 1000, NULL);
    }
}

static bool has_head(const struct httpc_pull *pl)
{
    return pl->ctx.is_head_sent;
}

static bool has_bytes(const struct httpc_pull *pl)
{
    return pl->len > pl->off;
}

int httpc_pull_head(struct httpc_pull *pl, bool *is_connected, struct err *e)
{
    pull_drive(pl, has_head);
    if (pl->is_done && pl->rc == CURLE_OK && !pl->ctx.is_head_sent)
        pl->rc = relay_head_done(&pl->ctx) == 0 ? CURLE_OK : CURLE_WRITE_ERROR;
    *is_connected = !pl->is_done || pl->rc == CURLE_OK || relay_was_connected(pl->c, pl->rc);
    if (pl->ctx.is_head_sent)
        return 0;
    log_debug("httpc", "failed to relay %s %s: %s", pl->relay.method, pl->relay.url,
              curl_easy_strerror(pl->rc));
    return err_set(e, ERR_UNAVAILABLE, "cannot reach %s: %s", pl->relay.url,
                   curl_easy_strerror(pl->rc));
}

long httpc_pull_read(struct httpc_pull *pl, char *out, size_t max)
{
    if (!has_bytes(pl) && pl->is_paused) {
        pl->is_paused = false;
        curl_easy_pause(pl->c, CURLPAUSE_CONT); /* may hand over the held piece at once */
    }
    if (!has_bytes(pl))
        pull_drive(pl, has_bytes);
    if (has_bytes(pl)) {
        size_t n = pl->len - pl->off < max ? pl->len - pl->off : max;
        memcpy(out, pl->data + pl->off, n);
        pl->off += n;
        if (pl->off == pl->len)
            pl->off = pl->len = 0;
        return (long)n;
    }
    if (pl->rc != CURLE_OK)
        log_debug("httpc", "relay of %s %s broke: %s", pl->relay.method, pl->relay.url,
                  curl_easy_strerror(pl->rc));
    return pl->rc == CURLE_OK ? 0 : -1;
}

void httpc_pull_free(struct httpc_pull *pl)
{
    if (pl == NULL)
        return;
    curl_multi_remove_handle(pl->m, pl->c);
    curl_slist_free_all(pl->hdrs);
    buf_fini(&pl->ctx.head);
    free(pl->data);
    /* Kept for this thread's next relay; an unfinished exchange's connection is closed
     * by curl, not reused. */
    curl_easy_reset(pl->c);
    struct pull_handles *h = pthread_getspecific(pull_key);
    if (h == NULL) {
        h = xcalloc(1, sizeof(*h));
        AZ(pthread_setspecific(pull_key, h));
    }
    if (h->m == NULL) {
        h->m = pl->m;
        h->c = pl->c;
    } else {
        curl_multi_cleanup(pl->m);
        curl_easy_cleanup(pl->c);
    }
    free(pl);
}

/* First of several sources ----------------------------------------------------------- */

#define ANY_SOURCE_MAGIC 0x414e5953u

struct any_ctx {
    const struct httpc_get_any *g;
    int winner;
    bool is_sink_error;
};

struct any_source {
    unsigned magic;
    struct any_ctx *ctx;
    CURL *c;
    struct curl_slist *hdrs;
    size_t index;
    bool is_active;
    bool is_status_checked;
    bool is_ok_status;
    long status;
};

static size_t on_any_body(char *p, size_t size, size_t n, void *arg)
{
    struct any_source *src = arg;
    ASSERT(src->magic == ANY_SOURCE_MAGIC);
    struct any_ctx *ctx = src->ctx;
    if (!src->is_status_checked) {
        curl_easy_getinfo(src->c, CURLINFO_RESPONSE_CODE, &src->status);
        src->is_ok_status = src->status == 200 || src->status == 206;
        src->is_status_checked = true;
    }
    /* Error bodies are not blob bytes: drop them. */
    if (!src->is_ok_status)
        return size * n;
    if (ctx->winner < 0)
        ctx->winner = (int)src->index;
    if (ctx->winner != (int)src->index)
        return 0; /* lost the race: ends this source before its bytes reach the sink */
    if (ctx->g->sink(ctx->g->sink_arg, src->status, p, size * n) != 0) {
        ctx->is_sink_error = true;
        return 0;
    }
    return size * n;
}

static void any_start(CURLM *m, struct any_source *src, const char *range)
{
    const struct httpc_get_any *g = src->ctx->g;
    CURL *c = curl_easy_init();
    AN(c);
    src->magic = ANY_SOURCE_MAGIC;
    src->c = c;
    src->hdrs = make_headers(g->headers);
    src->is_active = true;
    curl_easy_setopt(c, CURLOPT_URL, g->urls[src->index]);
    curl_easy_setopt(c, CURLOPT_PATH_AS_IS, 1L); /* sent as given: no dot-segment removal */
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, src->hdrs);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_any_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, src);
    curl_easy_setopt(c, CURLOPT_PRIVATE, src);
    curl_easy_setopt(c, CURLOPT_BUFFERSIZE, 512L * 1024);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS,
                     g->connect_timeout_ms ? g->connect_timeout_ms : 10000L);
    if (g->stall_timeout_s > 0) {
        /* Fewer than one byte a second over the window: nothing at all, from the
         * request on (a peer that accepts and never answers, or freezes mid-body). */
        curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
        curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, g->stall_timeout_s);
    }
    if (g->interface)
        curl_easy_setopt(c, CURLOPT_INTERFACE, g->interface);
    set_peer_tls(c, g->is_peer);
    if (range[0])
        curl_easy_setopt(c, CURLOPT_RANGE, range);
    AZ(curl_multi_add_handle(m, c));
}

static void any_finish(CURLM *m, struct any_source *src)
{
    if (!src->is_active)
        return;
    curl_multi_remove_handle(m, src->c);
    curl_easy_cleanup(src->c);
    curl_slist_free_all(src->hdrs);
    src->c = NULL;
    src->hdrs = NULL;
    src->is_active = false;
}

int httpc_get_any(const struct httpc_get_any *g, struct httpc_source_result *results,
                  int *winner, struct err *e)
{
    CURLM *m = curl_multi_init();
    AN(m);
    struct any_ctx ctx = {.g = g, .winner = -1};
    struct any_source *srcs = xcalloc(g->n_urls ? g->n_urls : 1, sizeof(*srcs));
    memset(results, 0, g->n_urls * sizeof(*results));
    char range[64] = "";
    if (g->range_start > 0)
        snprintf(range, sizeof(range), "%llu-", (unsigned long long)g->range_start);
    size_t next = 0;
    int active = 0;
    int64_t last_start_ns = 0;
    int ret = -1;
    bool is_done = false;
    err_set(e, ERR_UNAVAILABLE, "no source to fetch from");
    while (!is_done) {
        if (g->abort && *g->abort) {
            err_set(e, ERR_UNAVAILABLE, "transfer abandoned");
            break;
        }
        int64_t now = util_mono_ns();
        bool is_hedge_due = g->hedge_after_ms > 0 && active == 1 &&
                            now - last_start_ns >= g->hedge_after_ms * 1000000LL;
        if (ctx.winner < 0 && next < g->n_urls && (active == 0 || is_hedge_due)) {
            srcs[next].ctx = &ctx;
            srcs[next].index = next;
            results[next].is_tried = true;
            any_start(m, &srcs[next], range);
            next++;
            active++;
            last_start_ns = now;
        }
        int running = 0;
        curl_multi_perform(m, &running);
        CURLMsg *msg;
        int left = 0;
        while (!is_done && (msg = curl_multi_info_read(m, &left)) != NULL) {
            if (msg->msg != CURLMSG_DONE)
                continue;
            struct any_source *src = NULL;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&src);
            ASSERT(src && src->magic == ANY_SOURCE_MAGIC);
            CURLcode rc = msg->data.result;
            long status = 0;
            curl_easy_getinfo(src->c, CURLINFO_RESPONSE_CODE, &status);
            size_t i = src->index;
            results[i].status = status;
            any_finish(m, src);
            active--;
            if (ctx.is_sink_error) {
                is_done = true; /* the sink set its own error */
            } else if (ctx.winner == (int)i) {
                if (rc == CURLE_OK) {
                    ret = 0;
                } else {
                    results[i].is_transport_error = true;
                    err_set(e, ERR_UNAVAILABLE, "transfer from %s broke: %s", g->urls[i],
                            curl_easy_strerror(rc));
                }
                is_done = true;
            } else if (ctx.winner >= 0) {
                results[i].is_cancelled = true;
            } else if (rc == CURLE_OK && (status == 200 || status == 206)) {
                ctx.winner = (int)i; /* an empty body: nothing reached the write callback */
                ret = 0;
                is_done = true;
            } else if (rc != CURLE_OK) {
                results[i].is_transport_error = true;
                err_set(e, ERR_UNAVAILABLE, "cannot fetch from %s: %s", g->urls[i],
                        curl_easy_strerror(rc));
            } else if (status == 416) {
                err_set(e, ERR_RANGE_INVALID, "%s answered 416", g->urls[i]);
                is_done = true;
            } else {
                err_set(e, ERR_UNAVAILABLE, "%s answered %ld", g->urls[i], status);
            }
        }
        if (is_done)
            break;
        /* A winner is chosen: the others stop now rather than at their next write. */
        for (size_t i = 0; ctx.winner >= 0 && i < next; i++) {
            if ((int)i != ctx.winner && srcs[i].is_active) {
                any_finish(m, &srcs[i]);
                results[i].is_cancelled = true;
                active--;
            }
        }
        if (ctx.winner < 0 && active == 0 && next >= g->n_urls)
            break; /* every source answered without the body */
        curl_multi_poll(m, NULL, 0, 50, NULL);
    }
    for (size_t i = 0; i < next; i++) {
        if (srcs[i].is_active) {
            any_finish(m, &srcs[i]);
            if ((int)i != ctx.winner)
                results[i].is_cancelled = true;
        }
    }
    free(srcs);
    curl_multi_cleanup(m);
    *winner = ctx.winner;
    return ret;
}

static size_t on_discard(char *p, size_t size, size_t n, void *arg)
{
    (void)p;
    (void)arg;
    return size * n;
}

void httpc_get_many(const char *const *urls, size_t n, const char *const *headers,
                    long timeout_ms, const char *interface, bool is_peer, long *statuses,
                    double *times_ms)
{
    CURLM *m = curl_multi_init();
    AN(m);
    CURL **handles = xcalloc(n ? n : 1, sizeof(*handles));
    struct curl_slist *hdrs = make_headers(headers);
    for (size_t i = 0; i < n; i++) {
        CURL *c = curl_easy_init();
        AN(c);
        curl_easy_setopt(c, CURLOPT_URL, urls[i]);
        curl_easy_setopt(c, CURLOPT_PATH_AS_IS, 1L); /* sent as given: no dot-segment removal */
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
        curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_discard);
        curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, timeout_ms);
        curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, timeout_ms);
        if (interface)
            curl_easy_setopt(c, CURLOPT_INTERFACE, interface);
        set_peer_tls(c, is_peer);
        AZ(curl_multi_add_handle(m, c));
        handles[i] = c;
        statuses[i] = 0;
        times_ms[i] = (double)timeout_ms;
    }
    int running = 1;
    while (running > 0) {
        if (curl_multi_perform(m, &running) != CURLM_OK)
            break;
        if (running > 0)
            curl_multi_poll(m, NULL, 0, 100, NULL);
    }
    CURLMsg *msg;
    int left = 0;
    while ((msg = curl_multi_info_read(m, &left)) != NULL) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        for (size_t i = 0; i < n; i++) {
            if (handles[i] != msg->easy_handle)
                continue;
            /* A failure's time too: one that ended early (refused) is not a timeout. */
            double total_s = 0;
            curl_easy_getinfo(handles[i], CURLINFO_TOTAL_TIME, &total_s);
            times_ms[i] = total_s * 1000.0;
            if (msg->data.result == CURLE_OK)
                curl_easy_getinfo(handles[i], CURLINFO_RESPONSE_CODE, &statuses[i]);
        }
    }
    for (size_t i = 0; i < n; i++) {
        curl_multi_remove_handle(m, handles[i]);
        curl_easy_cleanup(handles[i]);
    }
    free(handles);
    curl_slist_free_all(hdrs);
    curl_multi_cleanup(m);
}
