/* Forwarding for the front (proxy.h). http.c runs the front with a thread per
 * connection.
 *
 * A request without a body (GET, HEAD, DELETE: nearly all of a pull) is relayed on the
 * connection's own thread (httpc_pull): it drives the exchange with the region until
 * the head is in, then takes body bytes from it as MHD sends them on. No hand-off.
 *
 *   client <-> MHD thread (curl, step by step) <-> region
 *
 * A request with a body has a relay thread (httpc_relay); the connection's thread feeds
 * it the request body through one pipe and reads the response body from another as MHD
 * sends it. Pipes bound the memory per request and give back-pressure both ways.
 *
 *   client -> MHD thread --req pipe--> relay thread (curl) --> region
 *   client <- MHD thread <-resp pipe-- relay thread (curl) <-- region
 *
 * Requests without a body that could not connect are tried on the next healthy region
 * (nothing reached the first); a request with a body is not, as its bytes are gone. */
#include "proxy.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "front.h"
#include "route.h"
#include "httpc.h"
#include "log.h"
#include "util.h"

#define PROXY_CALL_MAGIC 0x50525843u
#define TARGET_MAX 8192
#define HEADERS_MAX 128

struct proxy_call {
    unsigned magic;
    struct front *front;
    size_t region;
    char *method;
    char url[TARGET_MAX + 512];
    char *headers[HEADERS_MAX + 1];
    size_t n_headers;
    const char *connection; /* the request's Connection header, or NULL */
    bool has_body;
    int64_t body_len;
    int req_pipe[2];     /* MHD thread writes the body, relay reads */
    int resp_pipe[2];    /* relay writes the response body, MHD thread reads */
    pthread_t thread;
    bool has_thread;
    struct httpc_pull *pull;  /* a request without a body: relayed on this thread */
    struct upstream_call *raw; /* a GET or HEAD to a plain-HTTP region: the same, raw */
    char *lines;         /* the response's header lines (head_lines or in raw's buffer) */
    const char *hdrs[HEADERS_MAX + 1];
    atomic_bool is_abandoned; /* the client is gone: the relay stops (and sends no more) */

    pthread_mutex_t mu;  /* guards what follows */
    pthread_cond_t cv;
    bool is_head;        /* status and head_lines are set */
    long status;
    char *head_lines;
    bool is_done;        /* the relay returned */
    int rc;
    bool is_connected;
};

static struct proxy_call *call_of(struct http_req *req)
{
    struct proxy_call *c = req->handler_state;
    ASSERT(c == NULL || c->magic == PROXY_CALL_MAGIC);
    return c;
}

static void close_fd(int *fd)
{
    if (*fd >= 0) {
        close(*fd);
        *fd = -1;
    }
}

/* Relay thread -------------------------------------------------------------------- */

static long on_read(void *arg, char *p, size_t max)
{
    struct proxy_call *c = arg;
    for (;;) {
        ssize_t n = read(c->req_pipe[0], p, max);
        /* The end of the pipe is the end of the body only if the client sent it all. */
        if (n == 0 && atomic_load(&c->is_abandoned))
            return -1;
        if (n >= 0)
            return (long)n;
        if (errno != EINTR)
            return -1;
    }
}

static int on_head(void *arg, long status, const char *lines, size_t len)
{
    struct proxy_call *c = arg;
    AZ(pthread_mutex_lock(&c->mu));
    c->status = status;
    c->head_lines = xstrndup(lines, len);
    c->lines = c->head_lines;
    c->is_head = true;
    AZ(pthread_cond_broadcast(&c->cv));
    AZ(pthread_mutex_unlock(&c->mu));
    return 0;
}

static int on_body(void *arg, long status, const void *p, size_t n)
{
    struct proxy_call *c = arg;
    const char *s = p;
    (void)status;
    while (n > 0) {
        ssize_t w = write(c->resp_pipe[1], s, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -1; /* the client went away (EPIPE): stop the transfer */
        s += w;
        n -= (size_t)w;
    }
    return 0;
}

/* A call waiting for bytes from a region the probes took out of rotation (a hung or
 * black-holed region) gives up at once rather than after 60 s: a GET or HEAD without its
 * head then goes to the next region, other requests get their 503 (pinned: 404
 * BLOB_UPLOAD_UNKNOWN), and a broken body ends the client's transfer, which it resumes
 * (Range) wherever routing now sends it. */
static bool is_region_lost(void *arg)
{
    struct proxy_call *c = arg;
    return front_region_is_lost(c->front, c->region);
}

static void *relay_loop(void *arg)
{
    struct proxy_call *c = arg;
    struct httpc_relay r = {
        .method = c->method, .url = c->url, .headers = c->hdrs,
        .has_body = c->has_body, .body_len = c->body_len,
        .read = on_read, .on_head = on_head, .sink = on_body, .arg = c,
        .connect_timeout_ms = c->front->connect_timeout_ms, .abort = &c->is_abandoned,
        .give_up = is_region_lost,
    };
    struct err e = {0};
    bool is_connected = false;
    int rc = httpc_relay(&r, &is_connected, &e);
    /* The reader sees the end of the body; the body writer sees EPIPE if it is still
     * sending (the region answered early). */
    close_fd(&c->resp_pipe[1]);
    close_fd(&c->req_pipe[0]);
    AZ(pthread_mutex_lock(&c->mu));
    c->rc = rc;
    c->is_connected = is_connected;
    c->is_done = true;
    AZ(pthread_cond_broadcast(&c->cv));
    AZ(pthread_mutex_unlock(&c->mu));
    return NULL;
}

/* Call setup ---------------------------------------------------------------------- */

/* Request headers that belong to one hop (RFC 9110 7.6.1) or that curl sets itself. */
static bool is_hop_header(const char *name)
{
    static const char *const hop[] = {"Connection", "Keep-Alive", "Proxy-Connection",
                                      "Proxy-Authorization", "TE", "Trailer",
                                      "Transfer-Encoding", "Upgrade", "Content-Length",
                                      "Expect", NULL};
    for (size_t i = 0; hop[i]; i++) {
        if (strcasecmp(name, hop[i]) == 0)
            return true;
    }
    return false;
}

/* RFC 9110 7.6.1: a header the Connection header names belongs to this hop too. */
static bool is_named_by(const char *connection, const char *name)
{
    size_t len = strlen(name);
    for (const char *s = connection; s != NULL && *s != '\0';) {
        s += strspn(s, " \t,");
        size_t n = strcspn(s, " \t,");
        if (n == len && strncasecmp(s, name, n) == 0)
            return true;
        s += n;
    }
    return false;
}

static void on_req_header(void *arg, const char *name, const char *value)
{
    struct proxy_call *c = arg;
    /* Meridian-* headers are the regions' own (a peer's fetch, the serving region): a
     * client's are not passed on. on_headers refused more than HEADERS_MAX. */
    if (is_hop_header(name) || is_named_by(c->connection, name) ||
        strncasecmp(name, "Meridian-", 9) == 0 || c->n_headers == HEADERS_MAX)
        return;
    /* The Host is kept: a region names its token endpoint after the host the client
     * used, which is the front's. */
    size_t n = strlen(name) + strlen(value) + 3;
    char *h = xmalloc(n);
    snprintf(h, n, "%s: %s", name, value);
    c->headers[c->n_headers++] = h;
}

static void call_free(struct proxy_call *c)
{
    if (c == NULL)
        return;
    /* Unblock the relay whichever way it waits: no more body, nobody reading, and the
     * region not to be waited for (a relay that completed is not affected). */
    atomic_store(&c->is_abandoned, true);
    close_fd(&c->req_pipe[1]);
    close_fd(&c->resp_pipe[0]);
    if (c->has_thread)
        AZ(pthread_join(c->thread, NULL));
    httpc_pull_free(c->pull);
    upstream_call_free(c->raw);
    close_fd(&c->req_pipe[0]);
    close_fd(&c->resp_pipe[1]);
    for (size_t i = 0; i < c->n_headers; i++)
        free(c->headers[i]);
    free(c->head_lines);
    free(c->method);
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->cv);
    c->magic = 0;
    free(c);
}

static void on_cleanup(struct http_req *req)
{
    call_free(call_of(req));
    req->handler_state = NULL;
}

/* A call of req to region i, not started; NULL when the target is unusable. */
static struct proxy_call *call_new(struct http_req *req, struct front *f, size_t i,
                                   bool has_body, int64_t body_len)
{
    char target[TARGET_MAX];
    if (route_strip_pin(http_req_target(req), target, sizeof(target)) != 0 || target[0] != '/')
        return NULL;
    struct proxy_call *c = xcalloc(1, sizeof(*c));
    c->magic = PROXY_CALL_MAGIC;
    c->front = f;
    c->region = i;
    c->method = xstrdup(req->method);
    c->has_body = has_body;
    c->body_len = body_len;
    c->req_pipe[0] = c->req_pipe[1] = c->resp_pipe[0] = c->resp_pipe[1] = -1;
    AZ(pthread_mutex_init(&c->mu, NULL));
    AZ(pthread_cond_init(&c->cv, NULL));
    snprintf(c->url, sizeof(c->url), "%s%s", f->regions[i].url, target);
    c->connection = http_req_header_all(req, "Connection");
    http_req_each_header(req, on_req_header, c);
    for (size_t k = 0; k < c->n_headers; k++)
        c->hdrs[k] = c->headers[k];
    c->hdrs[c->n_headers] = NULL;
    return c;
}

/* A request without a body, relayed on this thread: waits for the region's head. */
static struct proxy_call *call_pull(struct http_req *req, struct front *f, size_t i,
                                    long connect_timeout_ms)
{
    struct proxy_call *c = call_new(req, f, i, false, 0);
    if (c == NULL)
        return NULL;
    struct front_region *region = &f->regions[i];
    bool is_get_or_head = strcmp(c->method, "GET") == 0 || strcmp(c->method, "HEAD") == 0;
    if (region->pool != NULL && is_get_or_head) {
        size_t lines_len;
        bool is_connected = false;
        const char *target = c->url + strlen(region->url);
        c->rc = upstream_call_start(region->pool, c->method, target, c->hdrs, connect_timeout_ms,
                                    is_region_lost, c,
                                    &c->raw, &c->status, &c->lines, &lines_len, &is_connected);
        c->is_connected = is_connected;
        c->is_head = c->rc == 0;
        c->is_done = c->rc != 0;
        return c;
    }
    struct httpc_relay r = {
        .method = c->method, .url = c->url, .headers = c->hdrs, .on_head = on_head, .arg = c,
        .connect_timeout_ms = connect_timeout_ms, .give_up = is_region_lost,
    };
    c->pull = httpc_pull_start(&r);
    struct err e = {0};
    bool is_connected = false;
    c->rc = httpc_pull_head(c->pull, &is_connected, &e);
    c->is_connected = is_connected;
    c->is_done = c->rc != 0;
    return c;
}

/* Starts the relay thread of req (with a body) to region i; NULL when the target is
 * unusable. */
static struct proxy_call *call_start(struct http_req *req, struct front *f, size_t i,
                                     bool has_body, int64_t body_len)
{
    struct proxy_call *c = call_new(req, f, i, has_body, body_len);
    if (c == NULL)
        return NULL;
    if (pipe2(c->req_pipe, O_CLOEXEC) != 0 || pipe2(c->resp_pipe, O_CLOEXEC) != 0) {
        log_error("front", "failed to create a pipe: %s", strerror(errno));
        call_free(c);
        return NULL;
    }
    /* Default pipe sizes (64 KiB): growing them to 1 MiB cost more per small request
     * (manifests) than it saved on blobs. */
    if (!has_body)
        close_fd(&c->req_pipe[1]);
    AZ(pthread_create(&c->thread, NULL, relay_loop, c));
    c->has_thread = true;
    return c;
}

/* Waits until the region's response head is in, or the relay ended without one. */
static void call_wait_head(struct proxy_call *c)
{
    AZ(pthread_mutex_lock(&c->mu));
    while (!c->is_head && !c->is_done)
        AZ(pthread_cond_wait(&c->cv, &c->mu));
    AZ(pthread_mutex_unlock(&c->mu));
}

/* Reply ---------------------------------------------------------------------------- */

static long on_reply_read(void *arg, char *p, size_t max)
{
    struct proxy_call *c = arg;
    for (;;) {
        ssize_t n = read(c->resp_pipe[0], p, max);
        if (n > 0)
            return (long)n;
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        break;
    }
    /* End of the pipe: a whole body only if the relay completed. */
    AZ(pthread_mutex_lock(&c->mu));
    while (!c->is_done)
        AZ(pthread_cond_wait(&c->cv, &c->mu));
    int rc = c->rc;
    AZ(pthread_mutex_unlock(&c->mu));
    return rc == 0 ? 0 : -1;
}

/* Body bytes of a request relayed on the connection's thread (raw or through curl). */
static long on_pull_reply_read(void *arg, char *p, size_t max)
{
    struct proxy_call *c = arg;
    return c->raw ? upstream_call_read(c->raw, p, max) : httpc_pull_read(c->pull, p, max);
}

/* Response headers that belong to one hop or that MHD writes itself. */
static bool is_own_reply_header(const char *name)
{
    return is_hop_header(name) || strcasecmp(name, "Date") == 0;
}

/* A small body (a manifest, an error) is read whole and sent with the head in one write,
 * as the region sent it: the client wakes once. A body that breaks is a 503. */
#define SMALL_BODY_MAX (64u << 10)

static void reply_unavailable(struct http_req *req, const char *why);

static void reply_small(struct http_req *req, struct proxy_call *c, size_t len)
{
    char *body = xmalloc(len + 1);
    size_t got = 0;
    long n = 1;
    while (got < len && (n = on_pull_reply_read(c, body + got, len - got)) > 0)
        got += (size_t)n;
    if (got < len) {
        front_mark_down(c->front, c->region, "transfer broke", false);
        reply_unavailable(req, "the region did not answer");
    } else {
        http_reply(req, (int)c->status, NULL, body, len);
    }
    free(body);
}

/* An answer whose Location names an upload session the client goes on with: 202 (POST,
 * PATCH), and the 204 of a status GET and the 416 of a chunk out of order, whose Location
 * distribution-spec says the next chunk SHOULD use. Without the pin that chunk is routed
 * anew and may reach a region that does not know the session (404 BLOB_UPLOAD_UNKNOWN). */
static bool is_session_reply(long status)
{
    return status == 202 || status == 204 || status == 416;
}

/* A Location under the region's own base URL (a region that names itself in absolute
 * form) made relative, so that the client goes on through the front, not around it. */
static char *location_through_front(char *value, const char *region_url)
{
    size_t n = strlen(region_url);
    return strncasecmp(value, region_url, n) == 0 && value[n] == '/' ? value + n : value;
}

/* Passes the region's response head on: headers (upload Locations pinned to the region),
 * Meridian-Region, then the body streamed from the pipe. */
static void reply_forwarded(struct http_req *req, struct proxy_call *c)
{
    struct front *f = c->front;
    const char *region = f->regions[c->region].name;
    uint64_t len = UINT64_MAX;
    bool is_upload = false;
    for (char *line = c->lines; line != NULL && *line != '\0';) {
        char *end = strchr(line, '\n');
        if (end != NULL)
            *end = '\0';
        size_t n = strlen(line);
        if (n > 0 && line[n - 1] == '\r')
            line[--n] = '\0';
        char *colon = strchr(line, ':');
        if (colon != NULL) {
            *colon = '\0';
            char *value = colon + 1;
            while (*value == ' ' || *value == '\t')
                value++;
            uint64_t v;
            if (strcasecmp(line, "Content-Length") == 0 &&
                util_parse_u64(value, strlen(value), &v) == 0)
                len = v;
            if (strcasecmp(line, "Location") == 0)
                value = location_through_front(value, f->regions[c->region].url);
            if (strcasecmp(line, "Location") == 0 && strstr(value, "/blobs/uploads/") != NULL &&
                is_session_reply(c->status)) {
                char pinned[TARGET_MAX];
                if (route_pin_location(value, region, pinned, sizeof(pinned)) == 0) {
                    http_reply_header(req, "Location", "%s", pinned);
                    is_upload = true;
                }
            } else if (!is_own_reply_header(line)) {
                http_reply_header(req, line, "%s", value);
            }
        }
        line = end != NULL ? end + 1 : NULL;
    }
    http_reply_header(req, "Meridian-Region", "%s", region);
    if (is_upload)
        log_debug("front", "upload pinned to region=%s id=%s", region, req->request_id);
    if (c->status == 204 || c->status == 304)
        len = 0;
    bool is_on_thread = c->pull != NULL || c->raw != NULL;
    if (is_on_thread && strcmp(req->method, "HEAD") != 0 && len <= SMALL_BODY_MAX) {
        reply_small(req, c, (size_t)len);
        return;
    }
    http_reply_stream(req, (int)c->status, len, is_on_thread ? on_pull_reply_read : on_reply_read,
                      c);
}

static void reply_unavailable(struct http_req *req, const char *why)
{
    struct err e = {.code = ERR_UNAVAILABLE};
    snprintf(e.msg, sizeof(e.msg), "%s", why);
    if (strncmp(req->path, "/v2", 3) == 0)
        http_reply_err(req, &e);
    else
        http_reply_mgmt_err(req, &e);
}

/* The region an upload session lives in cannot take it (down, or its link broke): no
 * other region knows the session, so the client is told it is gone and starts the upload
 * again (404 BLOB_UPLOAD_UNKNOWN, which clients treat as such and retry), rather than a 503
 * that some clients give up on or repeat at the same dead region. */
static void reply_upload_lost(struct http_req *req, struct front *f, size_t i)
{
    log_info("front", "upload pinned to region=%s lost: region unavailable id=%s",
             f->regions[i].name, req->request_id);
    http_reply_error(req, ERR_BLOB_UPLOAD_UNKNOWN,
                     "the upload's region %s is unavailable: start the upload again",
                     f->regions[i].name);
}

/* Handlers ------------------------------------------------------------------------- */

static bool has_dot_segment_or_fragment(const char *target)
{
    if (target == NULL || strchr(target, '#') != NULL)
        return target != NULL;
    size_t end = strcspn(target, "?");
    for (size_t at = 0; at < end; at++) {
        if (target[at] != '/')
            continue;
        const char *seg = target + at + 1;
        size_t n = strcspn(seg, "/?");
        if ((n == 1 && seg[0] == '.') || (n == 2 && seg[0] == '.' && seg[1] == '.'))
            return true;
    }
    return false;
}

static void count_header(void *arg, const char *name, const char *value)
{
    (void)name;
    (void)value;
    (*(size_t *)arg)++;
}

static bool is_forwarded(const char *path)
{
    return strcmp(path, "/v2") == 0 || strncmp(path, "/v2/", 4) == 0 ||
           strncmp(path, "/_meridian/v1/", 14) == 0 || strcmp(path, "/console") == 0 ||
           strncmp(path, "/console/", 9) == 0; /* the web console, served by any region */
}

static int64_t request_body_len(struct http_req *req, bool *has_body)
{
    const char *cl = http_req_header(req, "Content-Length");
    uint64_t v = 0;
    if (cl != NULL && util_parse_u64(cl, strlen(cl), &v) == 0) {
        *has_body = v > 0;
        return (int64_t)v;
    }
    *has_body = http_req_header(req, "Transfer-Encoding") != NULL;
    return *has_body ? -1 : 0;
}

static int on_sink(struct http_req *req, const char *data, size_t len)
{
    struct proxy_call *c = call_of(req);
    while (len > 0 && c->req_pipe[1] >= 0) {
        ssize_t w = write(c->req_pipe[1], data, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0) {
            /* The region stopped reading (it answered early or the link broke): drop the
             * rest; the reply says what happened. */
            close_fd(&c->req_pipe[1]);
            break;
        }
        data += w;
        len -= (size_t)w;
    }
    return 0;
}

static void on_headers(struct http_req *req)
{
    struct front *f = req->app;
    if (strcmp(req->path, "/healthz") == 0 || strcmp(req->path, "/readyz") == 0) {
        bool is_ok = strcmp(req->path, "/healthz") == 0 || front_is_ready(f);
        http_reply(req, is_ok ? 200 : 503, "text/plain", is_ok ? "ok\n" : "no healthy region\n",
                   is_ok ? 3 : 18);
        return;
    }
    if (!is_forwarded(req->path)) {
        http_reply_error(req, ERR_ROUTE_UNKNOWN, "no such endpoint");
        return;
    }
    /* What the front checked is what the region gets: a dot-segment or a fragment would be
     * resolved or dropped on the way (by a client library, a proxy, or the region), and
     * the request would act on another path than the one routed and logged. */
    if (has_dot_segment_or_fragment(req->path) ||
        has_dot_segment_or_fragment(http_req_target(req))) {
        http_reply_error(req, ERR_BAD_REQUEST,
                         "the request target may hold no dot-segment (. or ..) and no fragment");
        return;
    }
    size_t n_headers = 0;
    http_req_each_header(req, count_header, &n_headers);
    if (n_headers > HEADERS_MAX) {
        static const char body[] = "{\"errors\":[{\"code\":\"BAD_REQUEST\",\"message\":"
                                   "\"too many request header fields\",\"detail\":null}]}\n";
        http_reply(req, 431, "application/json", body, sizeof(body) - 1);
        return;
    }
    bool has_body = false;
    int64_t body_len = request_body_len(req, &has_body);
    if (!has_body)
        return; /* forwarded once complete, where a failed connect can try elsewhere */
    char client[64];
    http_req_remote_addr(req, client, sizeof(client));
    const char *pinned = http_req_query(req, ROUTE_PIN_PARAM);
    int pin = front_pinned_region(f, pinned);
    if (pin >= 0 && front_region_is_lost(f, (size_t)pin)) {
        reply_upload_lost(req, f, (size_t)pin); /* before its body is spent on a dead link */
        return;
    }
    int i = front_choose(f, client, pinned, NULL);
    /* None in rotation: the first region (in routing order) that takes a connection,
     * found before the body is read, while a refusal costs nothing. */
    bool tried[FRONT_MAX_REGIONS] = {false};
    while (i < 0 && (i = front_choose_fallback(f, client, tried)) >= 0) {
        tried[i] = true;
        if (!front_region_connects(f, (size_t)i, FRONT_FALLBACK_CONNECT_MS)) {
            front_mark_down(f, (size_t)i, "connect failed", true);
            i = -1;
        }
    }
    if (i < 0) {
        reply_unavailable(req, "no region available");
        return;
    }
    struct proxy_call *c = call_start(req, f, (size_t)i, true, body_len);
    if (c == NULL) {
        http_reply_error(req, ERR_BAD_REQUEST, "request target too long");
        return;
    }
    req->handler_state = c;
    req->handler_cleanup = on_cleanup;
    req->sink = on_sink;
}

static void on_complete(struct http_req *req)
{
    struct front *f = req->app;
    struct proxy_call *c = call_of(req);
    if (c != NULL) {
        close_fd(&c->req_pipe[1]); /* the body is all in */
        call_wait_head(c);
        if (!c->is_head) {
            front_mark_down(f, c->region, c->is_connected ? "transfer broke" : "connect failed",
                            !c->is_connected);
            if (front_pinned_region(f, http_req_query(req, ROUTE_PIN_PARAM)) == (int)c->region)
                reply_upload_lost(req, f, c->region);
            else
                reply_unavailable(req, "the region did not answer");
            return;
        }
        if (c->status >= 500)
            front_mark_down(f, c->region, "5xx", false);
        reply_forwarded(req, c);
        return;
    }
    char client[64];
    http_req_remote_addr(req, client, sizeof(client));
    const char *pinned = http_req_query(req, ROUTE_PIN_PARAM);
    int pin = front_pinned_region(f, pinned);
    if (pin >= 0 && front_region_is_lost(f, (size_t)pin)) {
        reply_upload_lost(req, f, (size_t)pin);
        return;
    }
    bool tried[FRONT_MAX_REGIONS] = {false};
    for (;;) {
        int i = front_choose(f, client, pinned, tried);
        long connect_ms = f->connect_timeout_ms;
        /* None (left) in rotation: try the others anyway, as their probes may only have
         * been slow; a short connect bound keeps a dead one cheap. A pinned upload has
         * its region whatever its health. */
        if (i < 0 && pinned == NULL) {
            i = front_choose_fallback(f, client, tried);
            if (connect_ms > FRONT_FALLBACK_CONNECT_MS)
                connect_ms = FRONT_FALLBACK_CONNECT_MS;
        }
        if (i < 0) {
            reply_unavailable(req, "no region available");
            return;
        }
        tried[i] = true;
        c = call_pull(req, f, (size_t)i, connect_ms);
        if (c == NULL) {
            http_reply_error(req, ERR_BAD_REQUEST, "request target too long");
            return;
        }
        req->handler_state = c;
        req->handler_cleanup = on_cleanup;
        if (c->is_head)
            break;
        front_mark_down(f, c->region, c->is_connected ? "transfer broke" : "connect failed",
                        !c->is_connected);
        /* Nothing reached the region, or it was a GET or HEAD (safe to repeat) that got
         * no answer: the next region may serve it. */
        bool is_safe = strcmp(req->method, "GET") == 0 || strcmp(req->method, "HEAD") == 0;
        if (pin >= 0) {
            reply_upload_lost(req, f, (size_t)pin);
            return;
        }
        if ((c->is_connected && !is_safe) || pinned != NULL) {
            reply_unavailable(req, "the region did not answer");
            return;
        }
        call_free(c);
        req->handler_state = NULL;
        req->handler_cleanup = NULL;
    }
    if (c->status >= 500)
        front_mark_down(f, c->region, "5xx", false);
    reply_forwarded(req, c);
}

static void on_malformed(struct http_req *req, const char *why)
{
    struct err e = {.code = ERR_BAD_REQUEST};
    snprintf(e.msg, sizeof(e.msg), "malformed request: %s", why);
    http_reply_err(req, &e);
}

static void on_reply(struct http_req *req)
{
    (void)req;
}

static void on_finished(struct http_req *req, int status)
{
    (void)req;
    (void)status;
}

const struct http_handlers proxy_handlers = {
    .on_headers = on_headers,
    .on_complete = on_complete,
    .on_malformed = on_malformed,
    .on_reply = on_reply,
    .on_finished = on_finished,
};
