/* libcurl easy handles, one per call: simple and thread-safe. Bodies are collected in
 * capped buffers or streamed into a sink; nothing grows with a blob's size. */
#include "httpc.h"

#include <curl/curl.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "log.h"
#include "util.h"

void httpc_global_init(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
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
        log_debug("httpc", "failed to %s %s: %s", rq->method, rq->url, curl_easy_strerror(rc));
        ret = err_set(e, ERR_UNAVAILABLE, "cannot reach %s: %s", rq->url,
                      curl_easy_strerror(rc));
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
