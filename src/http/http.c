/* libmicrohttpd glue: per-request context, body streaming, replies, access log.
 * The only file that includes <microhttpd.h>. MHD runs a pool of worker threads,
 * each with its own epoll loop (poll with HTTPS: http_server_start); a handler runs
 * on the worker that owns the connection, so handlers must not block on anything but
 * local disk and SQLite.
 *
 * Request life cycle (MHD calls on_request repeatedly for one request):
 *   request line in     -> on_uri: new http_req holding the raw request-target
 *   1st call            -> strict framing check (http_strict.c), handlers->on_headers
 *                          (route, sink or cap); a request with a body that is already
 *                          answered (401, 413, ...) is answered now, unread
 *   calls with a body   -> sink(req, bytes) or append to req->body (capped)
 *   last call (no body) -> handlers->on_complete unless a reply exists; queue reply
 *   on_completed        -> metrics, access log, free everything */
#include "http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "http_accept.h"
#include "http_strict.h"
#include "log.h"
#include "metrics.h"
#include "tls.h"
#include "util.h"

#define HTTP_REQ_MAGIC 0x48545251u
#define REPLY_HEADERS_MAX (64 * 1024)
#define REPLY_BODY_MAX (64 * 1024 * 1024)
#define DEFAULT_BODY_MAX (64 * 1024)
#define JOINED_HEADER_MAX (16 * 1024)
#define LOG_PATH_MAX 1024
#define RAW_TARGET_SPAN_MAX (64 * 1024) /* a request line fits MHD's connection pool */

/* Slow clients. MHD's connection timeout is an idle timeout: a client that trickles a
 * byte every few seconds keeps a connection forever. Every connection therefore has a
 * deadline by which the headers of its next request must be in, and a request body has
 * one too (--body-timeout), pushed back a second for every --body-min-rate bytes that
 * arrive (Apache's mod_reqtimeout "body=30,MinRate=1024"): a body that keeps coming at
 * a useful rate is never cut, however large, and a trickle is. A watchdog thread
 * shuts down the sockets of connections past their deadline, and MHD then closes them
 * as it would any connection the peer dropped. The list is changed only under watch_mu,
 * and MHD tells us a connection is closed (on_connection) before it closes the socket,
 * so the watchdog never touches a descriptor that has been reused. */
struct conn_watch {
    int fd;
    struct sockaddr_storage addr; /* the client's, for the acceptor's per-address count */
    bool has_addr;
    int64_t deadline_ns;         /* headers; 0: disarmed (a request is being served) */
    int64_t body_start_ns;       /* 0: no body being read; under watch_mu */
    _Atomic uint64_t body_bytes; /* of the body being read; added to without the lock */
    bool is_lingering;           /* answered with the body unread: drain it at close */
    struct conn_watch *prev;
    struct conn_watch *next;
};

struct http_server {
    struct MHD_Daemon *daemon;
    const struct http_handlers *handlers;
    struct registry *reg;
    bool is_access_log;
    int64_t header_timeout_ns;  /* 0: no deadline */
    int64_t body_timeout_ns;    /* 0: no deadline */
    uint64_t body_min_rate;     /* bytes/s that earn a body another second; 0: none */
    int64_t idle_timeout_ns;
    pthread_mutex_t watch_mu;
    pthread_cond_t watch_cv;
    struct conn_watch *watches; /* under watch_mu */
    size_t n_watches;           /* open connections; under watch_mu */
    size_t n_watches_peak;      /* most open since the last malloc_trim; under watch_mu */
    int trims_due;              /* ticks left that trim again after a burst; under watch_mu */
    bool is_watch_stopping;     /* under watch_mu */
    pthread_t watchdog;
    bool has_watchdog;
    _Atomic int in_flight;
    _Atomic uint64_t next_id;
    int listen_fd;              /* ours, not MHD's: accepted by the acceptor (http_accept.c) */
    struct http_acceptor *acceptor;
};

/* Request accessors ------------------------------------------------------- */

const char *http_req_header(struct http_req *req, const char *name)
{
    return MHD_lookup_connection_value(req->impl, MHD_HEADER_KIND, name);
}

struct joined_header {
    const char *name;
    struct buf out;
};

static enum MHD_Result on_header_value(void *cls, enum MHD_ValueKind kind, const char *key,
                                       const char *value)
{
    struct joined_header *j = cls;
    (void)kind;
    if (key && value && strcasecmp(key, j->name) == 0) {
        if (j->out.len)
            buf_append(&j->out, ", ", 2);
        buf_appends(&j->out, value);
    }
    return MHD_YES;
}

const char *http_req_header_all(struct http_req *req, const char *name)
{
    if (req->n_kept == sizeof(req->kept) / sizeof(req->kept[0]))
        return http_req_header(req, name);
    struct joined_header j = {.name = name};
    buf_init(&j.out, JOINED_HEADER_MAX);
    MHD_get_connection_values(req->impl, MHD_HEADER_KIND, on_header_value, &j);
    if (j.out.len == 0) {
        buf_fini(&j.out);
        return NULL;
    }
    char *s = buf_steal(&j.out, NULL);
    req->kept[req->n_kept++] = s;
    return s;
}

const char *http_req_query(struct http_req *req, const char *name)
{
    return MHD_lookup_connection_value(req->impl, MHD_GET_ARGUMENT_KIND, name);
}

bool http_req_has_query(struct http_req *req, const char *name)
{
    const char *v = NULL;
    size_t v_len = 0;
    return MHD_lookup_connection_value_n(req->impl, MHD_GET_ARGUMENT_KIND, name, strlen(name),
                                         &v, &v_len) == MHD_YES;
}

struct joined_query {
    const char *name;
    struct buf out;
};

static enum MHD_Result on_query_value(void *cls, enum MHD_ValueKind kind, const char *key,
                                      const char *value)
{
    struct joined_query *j = cls;
    (void)kind;
    if (key && value && strcmp(key, j->name) == 0) {
        if (j->out.len)
            buf_append(&j->out, " ", 1);
        buf_appends(&j->out, value);
    }
    return MHD_YES;
}

const char *http_req_query_joined(struct http_req *req, const char *name)
{
    if (req->n_kept == sizeof(req->kept) / sizeof(req->kept[0]))
        return http_req_query(req, name);
    struct joined_query j = {.name = name};
    buf_init(&j.out, JOINED_HEADER_MAX);
    MHD_get_connection_values(req->impl, MHD_GET_ARGUMENT_KIND, on_query_value, &j);
    if (!http_req_has_query(req, name)) {
        buf_fini(&j.out);
        return NULL;
    }
    char *s = buf_steal(&j.out, NULL);
    if (s == NULL)
        s = xstrdup("");
    req->kept[req->n_kept++] = s;
    return s;
}

const char *http_req_target(struct http_req *req)
{
    return req->raw_target;
}

struct each_header {
    http_header_f *fn;
    void *arg;
};

static enum MHD_Result on_each_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                      const char *value)
{
    struct each_header *h = cls;
    (void)kind;
    if (key != NULL)
        h->fn(h->arg, key, value != NULL ? value : "");
    return MHD_YES;
}

void http_req_each_header(struct http_req *req, http_header_f *fn, void *arg)
{
    struct each_header h = {fn, arg};
    MHD_get_connection_values(req->impl, MHD_HEADER_KIND, on_each_header, &h);
}

void http_req_remote_addr(struct http_req *req, char *out, size_t out_len)
{
    out[0] = '\0';
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(req->impl, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    if (ci == NULL || ci->client_addr == NULL)
        return;
    const struct sockaddr *sa = ci->client_addr;
    if (sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, out,
                  (socklen_t)out_len);
    else if (sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr, out,
                  (socklen_t)out_len);
}

void http_req_client_cert(struct http_req *req, struct tls_client_cert *out)
{
    const union MHD_ConnectionInfo *ti =
        req->impl != NULL
            ? MHD_get_connection_info(req->impl, MHD_CONNECTION_INFO_GNUTLS_SESSION)
            : NULL;
    tls_client_verify(ti != NULL ? ti->tls_session : NULL, out);
}

/* Replies ------------------------------------------------------------------ */

void http_reply_header(struct http_req *req, const char *name, const char *fmt, ...)
{
    char value[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(value, sizeof(value), fmt, ap);
    va_end(ap);
    /* Header values never carry newlines: they would split the header list. */
    for (char *p = value; *p; p++) {
        if (*p == '\n' || *p == '\r')
            *p = ' ';
    }
    buf_printf(&req->reply_headers, "%s: %s\n", name, value);
}

static void drop_reply_fd(struct http_req *req)
{
    req->reply_reader = NULL;
    if (req->reply_fd >= 0) {
        close(req->reply_fd);
        req->reply_fd = -1;
    }
}

void http_reply(struct http_req *req, int status, const char *ct, const void *p, size_t n)
{
    drop_reply_fd(req);
    req->status = status;
    buf_reset(&req->reply_body);
    if (n)
        buf_append(&req->reply_body, p, n);
    if (ct)
        http_reply_header(req, "Content-Type", "%s", ct);
    req->is_replied = true;
}

void http_reply_fd(struct http_req *req, int status, int fd, uint64_t offset, uint64_t len)
{
    drop_reply_fd(req);
    req->status = status;
    buf_reset(&req->reply_body);
    req->reply_fd = fd;
    req->reply_fd_offset = offset;
    req->reply_fd_len = len;
    req->is_replied = true;
}

void http_reply_stream(struct http_req *req, int status, uint64_t len, http_reader_f *read,
                       void *arg)
{
    drop_reply_fd(req);
    req->status = status;
    buf_reset(&req->reply_body);
    req->reply_reader = read;
    req->reply_reader_arg = arg;
    req->reply_reader_len = len;
    req->is_replied = true;
}

/* RFC 9110 15.5.6: a 405 names the methods the target takes (set by the router in
 * req->allow; a refusal of a method the target takes otherwise names none). */
static void reply_allow(struct http_req *req, enum err_code code)
{
    if (req->allow[0] != '\0' && err_http_status(code) == 405)
        http_reply_header(req, "Allow", "%s", req->allow);
}

void http_reply_allow(struct http_req *req, const char *const *methods)
{
    size_t at = 0;
    req->allow[0] = '\0';
    for (size_t i = 0; methods[i] != NULL; i++) {
        int n = snprintf(req->allow + at, sizeof(req->allow) - at, "%s%s", i ? ", " : "",
                         methods[i]);
        /* The lists are the routers' own, and fit. */
        ASSERT(n > 0 && (size_t)n < sizeof(req->allow) - at);
        at += (size_t)n;
    }
}

void http_reply_err(struct http_req *req, const struct err *e)
{
    struct buf b;
    buf_init(&b, 4096);
    buf_appends(&b, "{\"errors\":[{\"code\":");
    buf_append_json_string(&b, err_oci_code(e->code));
    buf_appends(&b, ",\"message\":");
    buf_append_json_string(&b, err_message(e));
    buf_appends(&b, ",\"detail\":null}]}\n");
    /* A failed request's reply carries only the error: drop headers set so far, but the
     * API version, which Distribution sends on every /v2/ reply (clients probe with it). */
    buf_reset(&req->reply_headers);
    if (req->path != NULL && strncmp(req->path, "/v2", 3) == 0)
        http_reply_header(req, "Docker-Distribution-API-Version", "registry/2.0");
    reply_allow(req, e->code);
    http_reply(req, err_http_status(e->code), "application/json", b.data, b.len);
    /* The challenge (WWW-Authenticate) of a 401 is added by authz.c, which knows it. */
    buf_fini(&b);
}

void http_reply_error(struct http_req *req, enum err_code code, const char *fmt, ...)
{
    struct err e = {.code = code};
    if (fmt) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(e.msg, sizeof(e.msg), fmt, ap);
        va_end(ap);
    }
    http_reply_err(req, &e);
}

void http_reply_mgmt_err(struct http_req *req, const struct err *e)
{
    struct buf b;
    buf_init(&b, 4096);
    buf_appends(&b, "{\"error\":{\"code\":");
    buf_append_json_string(&b, err_oci_code(e->code));
    buf_appends(&b, ",\"message\":");
    buf_append_json_string(&b, err_message(e));
    buf_appends(&b, "}}\n");
    buf_reset(&req->reply_headers);
    reply_allow(req, e->code);
    http_reply(req, err_http_status(e->code), "application/json", b.data, b.len);
    buf_fini(&b);
}

void http_req_suspend(struct http_req *req, http_park_f *park, void *arg)
{
    ASSERT(req->park == NULL && !req->is_replied);
    AN(park);
    req->park = park;
    req->park_arg = arg;
}

void http_req_resume(struct http_req *req)
{
    /* A second resume would answer the request twice. */
    bool was_parked = atomic_exchange(&req->is_parked, false);
    ASSERT(was_parked);
    MHD_resume_connection(req->impl);
}

/* The last thing the worker does with a request that asked to wait: after park()
 * the request is another thread's, which may resume it at once (MHD orders that
 * against the suspension under its own lock). */
static void park(struct MHD_Connection *conn, struct http_req *req)
{
    http_park_f *to = req->park;
    void *arg = req->park_arg;
    req->park = NULL;
    atomic_store(&req->is_parked, true);
    MHD_suspend_connection(conn);
    to(req, arg);
}

/* Request context ---------------------------------------------------------- */

static struct http_req *req_new(struct http_server *s, struct MHD_Connection *conn,
                                const char *raw_target)
{
    struct http_req *req = xcalloc(1, sizeof(*req));
    req->magic = HTTP_REQ_MAGIC;
    req->reg = s->reg;
    req->handlers = s->handlers;
    req->app = s->handlers->arg;
    req->impl = conn;
    req->raw_target = xstrdup(raw_target != NULL ? raw_target : "");
    req->reply_fd = -1;
    req->start_ns = util_mono_ns();
    snprintf(req->request_id, sizeof(req->request_id), "%016llx",
             (unsigned long long)atomic_fetch_add(&s->next_id, 1));
    buf_init(&req->body, DEFAULT_BODY_MAX);
    buf_init(&req->reply_headers, REPLY_HEADERS_MAX);
    buf_init(&req->reply_body, REPLY_BODY_MAX);
    return req;
}

static void req_free(struct http_req *req)
{
    if (req == NULL)
        return;
    ASSERT(req->magic == HTTP_REQ_MAGIC);
    if (req->sink_cleanup)
        req->sink_cleanup(req);
    if (req->handler_cleanup)
        req->handler_cleanup(req);
    drop_reply_fd(req);
    buf_fini(&req->body);
    buf_fini(&req->reply_headers);
    buf_fini(&req->reply_body);
    for (size_t i = 0; i < req->n_kept; i++)
        free(req->kept[i]);
    free(req->repo);
    free(req->ref);
    free(req->raw_target);
    req->magic = 0;
    free(req);
}

static void add_headers(struct MHD_Response *resp, struct http_req *req)
{
    char *p = req->reply_headers.data;
    if (p == NULL)
        return;
    while (*p) {
        char *nl = strchr(p, '\n');
        if (nl == NULL)
            break;
        *nl = '\0';
        char *colon = strstr(p, ": ");
        if (colon) {
            *colon = '\0';
            MHD_add_response_header(resp, p, colon + 2);
            *colon = ':';
        }
        *nl = '\n';
        p = nl + 1;
    }
}

/* A file body over TLS. libmicrohttpd's fd responses read 4 KiB at a time when it cannot
 * use sendfile, so every 4 KiB of a blob became one pread, one TLS record and one send
 * (4 118 bytes each on the wire). This reads FILE_TLS_BLOCK at a time, which GnuTLS sends
 * as full 16 KiB records: a quarter of the records, a sixteenth of the reads. */
#define FILE_TLS_BLOCK (256 * 1024)

struct file_body {
    int fd;
    uint64_t offset;
};

static ssize_t on_file_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    struct file_body *fb = cls;
    ssize_t n;
    do
        n = pread(fb->fd, buf, max, (off_t)(fb->offset + pos));
    while (n < 0 && errno == EINTR);
    /* 0: the file is shorter than the length announced; the client sees a short body. */
    return n > 0 ? n : MHD_CONTENT_READER_END_WITH_ERROR;
}

static void on_file_done(void *cls)
{
    struct file_body *fb = cls;
    close(fb->fd);
    free(fb);
}

static bool is_tls_conn(struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *ti =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_GNUTLS_SESSION);
    return ti != NULL && ti->tls_session != NULL;
}

static ssize_t on_reply_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    struct http_req *req = cls;
    (void)pos;
    long n = req->reply_reader(req->reply_reader_arg, buf, max);
    if (n > 0) {
        req->bytes_out += (uint64_t)n;
        metrics_count_bytes_out((uint64_t)n);
    }
    return n > 0 ? (ssize_t)n : n == 0 ? MHD_CONTENT_READER_END_OF_STREAM
                                       : MHD_CONTENT_READER_END_WITH_ERROR;
}

static enum MHD_Result queue_reply(struct MHD_Connection *conn, struct http_req *req)
{
    struct MHD_Response *resp;
    if (req->status == 0) {
        struct err e = {.code = ERR_INTERNAL};
        log_error("http", "failed to answer request: handler set no reply id=%s",
                  req->request_id);
        http_reply_err(req, &e);
    }
    if (req->reply_reader != NULL) {
        /* Read on the thread serving the connection (its own one with
         * is_thread_per_connection); the request outlives the response's last read
         * (on_completed comes after). */
        resp = MHD_create_response_from_callback(
            req->reply_reader_len == UINT64_MAX ? MHD_SIZE_UNKNOWN : req->reply_reader_len,
            64 * 1024, on_reply_read, req, NULL);
    } else if (req->reply_fd >= 0 && is_tls_conn(conn)) {
        struct file_body *fb = xmalloc(sizeof(*fb));
        *fb = (struct file_body){.fd = req->reply_fd, .offset = req->reply_fd_offset};
        size_t block = req->reply_fd_len == 0            ? 1
                       : req->reply_fd_len < FILE_TLS_BLOCK ? (size_t)req->reply_fd_len
                                                            : FILE_TLS_BLOCK;
        resp = MHD_create_response_from_callback(req->reply_fd_len, block, on_file_read, fb,
                                                 on_file_done);
        if (resp)
            req->reply_fd = -1;
        else
            free(fb);
        req->bytes_out = req->reply_fd_len;
    } else if (req->reply_fd >= 0) {
        /* MHD sends it with sendfile(2) and closes the fd when the response goes. */
        resp = MHD_create_response_from_fd_at_offset64(req->reply_fd_len, req->reply_fd,
                                                      req->reply_fd_offset);
        if (resp)
            req->reply_fd = -1;
        req->bytes_out = req->reply_fd_len;
    } else {
        size_t len = 0;
        char *body = buf_steal(&req->reply_body, &len);
        resp = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
        if (resp == NULL)
            free(body);
        req->bytes_out = len;
    }
    if (resp == NULL)
        return MHD_NO;
    add_headers(resp, req);
    if (req->is_closing)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
    if (strcmp(req->method, "HEAD") == 0)
        req->bytes_out = 0;
    /* Counted when queued, not when the connection reports completion: a client that
     * reads /metrics right after a reply then sees that reply counted. */
    metrics_count_request((enum route_id)req->route, req->method, req->status,
                          req->body_bytes, req->bytes_out);
    req->is_counted = true;
    enum MHD_Result rc = MHD_queue_response(conn, (unsigned)req->status, resp);
    MHD_destroy_response(resp);
    return rc;
}

/* Slow clients ------------------------------------------------------------- */

static struct conn_watch *watch_of(struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return ci != NULL ? ci->socket_context : NULL;
}

/* Arms (deadline from now) or disarms (0) the connection's header deadline. */
static void watch_set(struct http_server *s, struct MHD_Connection *conn, int64_t in_ns)
{
    struct conn_watch *w = watch_of(conn);
    if (w == NULL)
        return;
    AZ(pthread_mutex_lock(&s->watch_mu));
    w->deadline_ns = in_ns > 0 && s->header_timeout_ns > 0 ? util_mono_ns() + in_ns : 0;
    AZ(pthread_mutex_unlock(&s->watch_mu));
}

/* Starts (is_reading) or ends the body deadline of the connection's request. */
static void watch_body(struct http_server *s, struct MHD_Connection *conn, bool is_reading)
{
    struct conn_watch *w = watch_of(conn);
    if (w == NULL)
        return;
    AZ(pthread_mutex_lock(&s->watch_mu));
    w->body_start_ns = is_reading && s->body_timeout_ns > 0 ? util_mono_ns() : 0;
    atomic_store(&w->body_bytes, 0);
    AZ(pthread_mutex_unlock(&s->watch_mu));
}

/* When a body that started at start_ns with n bytes in so far runs out of time. */
static int64_t body_deadline(const struct http_server *s, int64_t start_ns, uint64_t n)
{
    uint64_t earned_ns = 0;
    if (s->body_min_rate > 0) {
        uint64_t secs = n / s->body_min_rate;
        if (secs > (uint64_t)INT64_MAX / 2000000000)
            return INT64_MAX; /* centuries: never */
        earned_ns = secs * 1000000000 + n % s->body_min_rate * 1000000000 / s->body_min_rate;
    }
    return start_ns + s->body_timeout_ns + (int64_t)earned_ns;
}

/* A connection answered before its body was read is closed with the body still coming.
 * Closing a socket with unread data makes the kernel send RST, which can destroy the
 * answer before the client reads it, and a client still writing sees "connection reset"
 * instead of our 401 or 413 (RFC 9112 section 9.6). So, like nginx's lingering_close, a
 * duplicate of the socket outlives MHD's close: it sends FIN after the reply, then reads
 * and drops what the client still sends, for a bounded time and amount. */
#define LINGER_MS 2000
#define LINGER_BYTES_MAX (64 * 1024 * 1024)
#define LINGER_CONNS_MAX 256

static _Atomic int n_lingering; /* process-wide: linger threads may outlive a server */

static void *linger_loop(void *arg)
{
    int fd = (int)(intptr_t)arg;
    char sink[16 * 1024];
    uint64_t n_read = 0;
    int64_t deadline = util_mono_ns() + (int64_t)LINGER_MS * 1000000;
    shutdown(fd, SHUT_WR);
    struct timeval tv = {0, 100 * 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    while (util_mono_ns() < deadline && n_read < LINGER_BYTES_MAX) {
        ssize_t n = recv(fd, sink, sizeof(sink), 0);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
            break;
        if (n > 0)
            n_read += (uint64_t)n;
    }
    close(fd);
    atomic_fetch_sub(&n_lingering, 1);
    return NULL;
}

/* Called as MHD closes fd (it still holds it). Beyond LINGER_CONNS_MAX, plain close. */
static void linger_start(int fd)
{
    if (fd < 0 || atomic_fetch_add(&n_lingering, 1) >= LINGER_CONNS_MAX) {
        atomic_fetch_sub(&n_lingering, 1);
        return;
    }
    int dup_fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    pthread_attr_t attr;
    pthread_t t;
    AZ(pthread_attr_init(&attr));
    AZ(pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED));
    if (dup_fd < 0 ||
        pthread_create(&t, &attr, linger_loop, (void *)(intptr_t)dup_fd) != 0) {
        if (dup_fd >= 0)
            close(dup_fd);
        atomic_fetch_sub(&n_lingering, 1);
    }
    pthread_attr_destroy(&attr);
}

static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                          enum MHD_ConnectionNotificationCode toe)
{
    struct http_server *s = cls;
    if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
        /* MHD has made the TLS session and not yet run its handshake. */
        const union MHD_ConnectionInfo *ti =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_GNUTLS_SESSION);
        if (ti != NULL)
            tls_session_start(ti->tls_session);
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        struct conn_watch *w = xcalloc(1, sizeof(*w));
        w->fd = ci != NULL ? ci->connect_fd : -1;
        const union MHD_ConnectionInfo *ai =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
        if (ai != NULL && ai->client_addr != NULL) {
            size_t len = ai->client_addr->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                                                 : sizeof(struct sockaddr_in);
            memcpy(&w->addr, ai->client_addr, len);
            w->has_addr = true;
            http_acceptor_note(s->acceptor, ai->client_addr, true);
        }
        w->deadline_ns = s->header_timeout_ns > 0 ? util_mono_ns() + s->header_timeout_ns : 0;
        AZ(pthread_mutex_lock(&s->watch_mu));
        w->next = s->watches;
        if (s->watches != NULL)
            s->watches->prev = w;
        s->watches = w;
        if (++s->n_watches > s->n_watches_peak)
            s->n_watches_peak = s->n_watches;
        AZ(pthread_mutex_unlock(&s->watch_mu));
        *socket_context = w;
        return;
    }
    struct conn_watch *w = *socket_context;
    if (w == NULL)
        return;
    AZ(pthread_mutex_lock(&s->watch_mu));
    if (w->prev != NULL)
        w->prev->next = w->next;
    else
        s->watches = w->next;
    if (w->next != NULL)
        w->next->prev = w->prev;
    s->n_watches--;
    AZ(pthread_mutex_unlock(&s->watch_mu));
    if (w->has_addr)
        http_acceptor_note(s->acceptor, (const struct sockaddr *)&w->addr, false);
    if (w->is_lingering)
        linger_start(w->fd);
    free(w);
    *socket_context = NULL;
}

/* Connections that must have closed since the busiest moment before memory is trimmed. */
#define TRIM_AFTER_CLOSED 64
/* Ticks (250 ms) after a burst that trim again, for pools libmicrohttpd frees late. */
#define TRIMS_AFTER_BURST 8

static void *watchdog_loop(void *arg)
{
    struct http_server *s = arg;
    AZ(pthread_mutex_lock(&s->watch_mu));
    while (!s->is_watch_stopping) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += 250 * 1000 * 1000;
        if (until.tv_nsec >= 1000000000) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait(&s->watch_cv, &s->watch_mu, &until);
        int64_t now = util_mono_ns();
        size_t n_cut = 0;
        size_t n_slow_bodies = 0;
        for (struct conn_watch *w = s->watches; w != NULL; w = w->next) {
            if (w->fd < 0)
                continue;
            if (w->deadline_ns != 0 && w->deadline_ns < now) {
                shutdown(w->fd, SHUT_RDWR);
                w->deadline_ns = 0;
                n_cut++;
            } else if (w->body_start_ns != 0 &&
                       body_deadline(s, w->body_start_ns, atomic_load(&w->body_bytes)) < now) {
                shutdown(w->fd, SHUT_RDWR);
                w->body_start_ns = 0;
                n_slow_bodies++;
            }
        }
        if (n_cut > 0)
            log_info("http", "closed %zu connections that sent no complete request in time",
                     n_cut);
        if (n_slow_bodies > 0)
            log_info("http", "closed %zu connections whose request body came too slowly "
                             "(body-timeout %llds, body-min-rate %llu bytes/s)",
                     n_slow_bodies, (long long)(s->body_timeout_ns / 1000000000),
                     (unsigned long long)s->body_min_rate);
        bool is_burst_closed = s->n_watches_peak >= s->n_watches + TRIM_AFTER_CLOSED;
        if (is_burst_closed || s->trims_due > 0) {
            /* A burst of connections has closed. Their 32 KiB pools were malloc'd
             * (http_server_start) and glibc keeps freed chunks inside its arenas: hand
             * the whole free pages back, as munmap did when the pools were mmap'd. A
             * connection leaves the watch list before libmicrohttpd frees its pool, and a
             * busy worker frees it late: the ticks of the next two seconds trim again
             * (with one more tick only, a loaded machine now and then kept ~10 MiB). */
            s->trims_due = is_burst_closed ? TRIMS_AFTER_BURST : s->trims_due - 1;
            s->n_watches_peak = s->n_watches;
            AZ(pthread_mutex_unlock(&s->watch_mu));
            malloc_trim(0);
            AZ(pthread_mutex_lock(&s->watch_mu));
        }
    }
    AZ(pthread_mutex_unlock(&s->watch_mu));
    return NULL;
}

/* MHD calls this once per request, as soon as the request line is in and before it
 * decodes the target: the request context starts here, keeping the target as sent. */
static void *on_uri(void *cls, const char *uri, struct MHD_Connection *conn)
{
    struct http_req *req = req_new(cls, conn, uri);
    req->raw_target_at = uri;
    /* libmicrohttpd 0.9.75 parses the query into its connection pool after this call;
     * some 500 short arguments (or 200 of 100 bytes) exhaust the pool, and it then logs a
     * 431 it has no room left to send and leaves the connection hanging until the header
     * timeout. Such a target is
     * refused by the strict check from req's copy; MHD's own is ended at the '?' (its
     * read buffer, writable: it splits the line in place), so it parses no argument. */
    size_t len = strlen(uri);
    if (http_query_is_too_big(uri, len)) {
        char *q = memchr(uri, '?', len);
        q[1] = '\0';
    }
    return req;
}

/* How many bytes of the request-target reach us. MHD 0.9.75 cuts the request line at the
 * last space and hands on_uri a pointer into it, so the target spans [uri, version - 1)
 * while the string we copied ends at its first NUL. A target with a NUL in it therefore
 * comes out one byte longer than its copy: the NUL, which the strict check refuses. */
static size_t raw_target_len(const struct http_req *req, const char *version)
{
    size_t len = strlen(req->raw_target);
    const char *at = req->raw_target_at;
    if (at != NULL && version != NULL && version > at + len + 1 &&
        version - at <= (ptrdiff_t)RAW_TARGET_SPAN_MAX)
        return len + 1; /* raw_target[len] is that NUL */
    return len;
}

/* Strict framing (http_strict.c) --------------------------------------------- */

struct field_list {
    struct http_field *fields;
    size_t n;
    size_t cap;
};

static enum MHD_Result on_field(void *cls, enum MHD_ValueKind kind, const char *key,
                                size_t key_size, const char *value, size_t value_size)
{
    static const char no_value[2] = ""; /* two NULs, as is_value_cut reads one past */
    struct field_list *l = cls;
    (void)kind;
    if (l->n == l->cap || key == NULL)
        return MHD_YES;
    l->fields[l->n++] = (struct http_field){key, key_size, value != NULL ? value : no_value,
                                            value != NULL ? value_size : 0};
    return MHD_YES;
}

/* Was field i's value cut short by a NUL on the wire? MHD 0.9.75 parses header lines in
 * place, writing NUL over each line's CR and LF, and measures values with strlen: a value
 * "a<NUL>b" reaches us as "a". Clean, the byte after a value's terminating NUL is the LF
 * of its CRLF, the next line's first byte (bare LF) or the empty line's NULed CR/LF; cut,
 * it is the rest of the line. Between two fields only NULs may lie; after the last one the
 * body may follow at once, so there a NUL followed by another NUL goes unseen. */
static bool is_value_cut(const struct field_list *l, size_t i)
{
    const struct http_field *f = &l->fields[i];
    const char *end = f->value + f->value_len;
    if (i + 1 < l->n) {
        /* Only the NULed line end may lie between a value and the next field's name:
         * "a<NUL><NUL>b" must not pass as "a". */
        const char *next = l->fields[i + 1].name;
        const char *p = end;
        while (p < next && *p == '\0')
            p++;
        return p != next;
    }
    return end[1] != '\0';
}

/* Runs the strict check over what MHD parsed; NULL if the head is acceptable, else why
 * not. Sets *has_body when the request announces a body. */
static const char *check_head(struct MHD_Connection *conn, struct http_req *req,
                              const char *version, bool *has_body)
{
    struct field_list l = {0};
    int n = MHD_get_connection_values(conn, MHD_HEADER_KIND, NULL, NULL);
    l.cap = n > 0 ? (size_t)n : 0;
    l.fields = xcalloc(l.cap + 1, sizeof(*l.fields));
    MHD_get_connection_values_n(conn, MHD_HEADER_KIND, on_field, &l);
    for (size_t i = 0; i < l.n; i++) {
        if (is_value_cut(&l, i))
            l.fields[i].value_len++; /* value[value_len] is that NUL */
    }
    struct http_head head = {
        .method = req->method, .method_len = strlen(req->method),
        .target = req->raw_target, .target_len = raw_target_len(req, version),
        .version = version != NULL ? version : "", .version_len = version ? strlen(version) : 0,
        .fields = l.fields, .n_fields = l.n,
    };
    const char *why = http_strict_check(&head);
    *has_body = why == NULL && http_strict_has_body(&head);
    free(l.fields);
    return why;
}

/* Queues the reply while the request body, if any, is still unread. MHD then sends no
 * "100 Continue" and, as the reply says Connection: close, reads no body: a client
 * cannot make us wait for (or store) bytes we are going to refuse anyway. */
static enum MHD_Result reply_before_body(struct http_server *s, struct MHD_Connection *conn,
                                        struct http_req *req)
{
    struct conn_watch *w = watch_of(conn);
    if (w != NULL)
        w->is_lingering = true;
    req->is_closing = true;
    req->is_queued = true;
    req->handlers->on_reply(req);
    return queue_reply(conn, req);
}

/* RFC 9112, 3.2.2: a server accepts a target in absolute form ("http://host/path", what
 * clients send to proxies); routing and forwarding see its origin form ("/path"). A
 * pointer into target. */
static const char *origin_form(const char *target)
{
    const char *rest;
    if (strncasecmp(target, "http://", 7) == 0)
        rest = target + 7;
    else if (strncasecmp(target, "https://", 8) == 0)
        rest = target + 8;
    else
        return target;
    const char *slash = strchr(rest, '/');
    return slash != NULL ? slash : "/";
}

/* The first call for a request: its line and headers are in, its body is not. */
static enum MHD_Result on_headers(struct http_server *s, struct MHD_Connection *conn,
                                  struct http_req *req, const char *method, const char *url,
                                  const char *version)
{
    req->method = method;
    req->path = url;
    req->is_started = true;
    atomic_fetch_add(&s->in_flight, 1);
    watch_set(s, conn, 0);
    bool has_body = false;
    const char *why = check_head(conn, req, version, &has_body);
    if (why != NULL) {
        /* RFC 9112: a request whose framing we doubt is answered 400 and the connection
         * closed, since where its body ends (and the next request starts) is unknown. */
        log_info("http", "refused a malformed request id=%s: %s", req->request_id, why);
        req->handlers->on_malformed(req, why);
        return reply_before_body(s, conn, req);
    }
    /* After the check, which reads the target as it came in MHD's buffer. */
    if (origin_form(req->raw_target) != req->raw_target) {
        char *origin = xstrdup(origin_form(req->raw_target));
        free(req->raw_target);
        req->raw_target = origin;
        req->path = origin_form(url);
    }
    req->handlers->on_headers(req);
    if (req->is_replied && has_body)
        return reply_before_body(s, conn, req);
    watch_body(s, conn, has_body);
    return MHD_YES;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_data_size,
                                  void **con_cls)
{
    struct http_server *s = cls;
    struct http_req *req = *con_cls;

    ASSERT(req != NULL && req->magic == HTTP_REQ_MAGIC);
    if (!req->is_started)
        return on_headers(s, conn, req, method, url, version);
    if (req->is_queued) {
        *upload_data_size = 0; /* answered before the body: drop whatever MHD passes */
        return MHD_YES;
    }

    if (*upload_data_size > 0) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        req->body_bytes += n;
        struct conn_watch *w = watch_of(conn);
        if (w != NULL)
            atomic_fetch_add(&w->body_bytes, n);
        /* After an error the rest of the body is read and dropped, so the
         * connection stays usable and the error reply goes out once. */
        if (req->is_body_error || req->is_replied)
            return MHD_YES;
        if (req->sink) {
            if (req->sink(req, upload_data, n) != 0)
                req->is_body_error = true;
        } else if (buf_append(&req->body, upload_data, n) != 0) {
            req->is_body_error = true;
            if (req->err.code == ERR_NONE)
                err_set(&req->err, ERR_BAD_REQUEST, "request body too large");
        }
        return MHD_YES;
    }

    watch_body(s, conn, false); /* the body is in */
    if (req->is_body_error) {
        /* the management API answers in its own error format, also before its handler */
        if (strncmp(req->path, MGMT_PREFIX, strlen(MGMT_PREFIX)) == 0)
            http_reply_mgmt_err(req, &req->err);
        else
            http_reply_err(req, &req->err);
        /* Undo and release what the sink held now, before the reply goes out, so the
         * client's immediate retry finds its upload session free. */
        if (req->sink_cleanup) {
            req->sink_cleanup(req);
            req->sink_cleanup = NULL;
        }
    }
    else if (!req->is_replied)
        req->handlers->on_complete(req);
    if (req->park != NULL) {
        park(conn, req); /* a long poll: the handler runs again on resume */
        return MHD_YES;
    }
    req->handlers->on_reply(req);
    return queue_reply(conn, req);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    struct http_server *s = cls;
    struct http_req *req = *con_cls;
    if (req == NULL)
        return;
    ASSERT(req->magic == HTTP_REQ_MAGIC);
    if (!req->is_started) {
        /* MHD refused the request itself (a header too large, a bad request line):
         * no handler ran, nothing to count or record. */
        req_free(req);
        *con_cls = NULL;
        return;
    }
    int status = req->status;
    if (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK && status == 0)
        status = 499; /* client went away before a reply */
    /* What the request took for its body (an upload session) is given back before its
     * line is logged: once the log says a request ended, nothing of it is still held. */
    if (req->sink_cleanup) {
        req->sink_cleanup(req);
        req->sink_cleanup = NULL;
    }
    if (!req->is_counted)
        metrics_count_request((enum route_id)req->route, req->method, status, req->body_bytes,
                              0);
    if (s->is_access_log) {
        double ms = (double)(util_mono_ns() - req->start_ns) / 1e6;
        char method[32];
        char path[LOG_PATH_MAX];
        /* The path is decoded: %0A, %1b or %20 in it must not break or forge a line. */
        log_escape(method, sizeof(method), req->method, strlen(req->method));
        log_escape(path, sizeof(path), req->path, strlen(req->path));
        log_info("access", "id=%s method=%s path=%s status=%d bytes_in=%llu bytes_out=%llu "
                           "ms=%.2f%s",
                 req->request_id, method, path, status,
                 (unsigned long long)req->body_bytes, (unsigned long long)req->bytes_out, ms,
                 toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? "" : " aborted=1");
    }
    req->handlers->on_finished(req, status);
    req_free(req);
    *con_cls = NULL;
    /* A kept-alive connection may idle, then must send its next headers in time. */
    watch_set(s, conn, s->idle_timeout_ns + s->header_timeout_ns);
    atomic_fetch_sub(&s->in_flight, 1);
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    char msg[512];
    (void)cls;
    vsnprintf(msg, sizeof(msg), fmt, ap);
    size_t n = strlen(msg);
    while (n && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
        msg[--n] = '\0';
    log_debug("http", "libmicrohttpd: %s", msg); /* control bytes escaped by log_write */
}

/* Server ------------------------------------------------------------------- */

/* One thread accepts and hands each connection to one worker (MHD_add_connection picks
 * it and wakes only that one). When every worker polled the listening socket itself,
 * each new connection woke all of them (--threads, 16) and all but one found nothing:
 * on 2 cores that herd cost about a third of the new-connection rate (docs/tls.md). */
/* The acceptor's hand-off: MHD takes the connection, or closes it itself when it refuses
 * (connection limits). */
static void add_connection(void *ctx, int fd, const struct sockaddr *addr, socklen_t len)
{
    struct http_server *s = ctx;
    MHD_add_connection(s->daemon, fd, addr, len);
}

static int listen_on(const struct addrinfo *ai, struct err *e, const char *host, unsigned port)
{
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return err_set(e, ERR_UNAVAILABLE, "cannot listen on %s:%u: %s", host, port,
                       strerror(errno));
    int one = 1;
    (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (ai->ai_family == AF_INET6)
        (void)setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, 4096) != 0) {
        int en = errno;
        close(fd);
        return err_set(e, ERR_UNAVAILABLE, "cannot listen on %s:%u: %s", host, port,
                       strerror(en));
    }
    return fd;
}

struct http_server *http_server_start(const struct http_config *cfg,
                                      const struct http_handlers *handlers,
                                      struct registry *reg, struct err *e)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_NUMERICSERV | AI_PASSIVE};
    struct addrinfo *ai = NULL;
    char port[8];
    snprintf(port, sizeof(port), "%u", cfg->listen_port);
    int gai = getaddrinfo(cfg->listen_host, port, &hints, &ai);
    if (gai != 0 || ai == NULL) {
        err_set(e, ERR_BAD_REQUEST, "cannot resolve listen address %s", cfg->listen_host);
        return NULL;
    }
    struct http_server *s = xcalloc(1, sizeof(*s));
    s->handlers = handlers;
    s->reg = reg;
    s->is_access_log = cfg->is_access_log;
    s->header_timeout_ns = (int64_t)cfg->header_timeout_s * 1000000000;
    s->body_timeout_ns = (int64_t)cfg->body_timeout_s * 1000000000;
    s->body_min_rate = cfg->body_min_rate;
    s->idle_timeout_ns = (int64_t)cfg->conn_timeout_s * 1000000000;
    s->listen_fd = listen_on(ai, e, cfg->listen_host, cfg->listen_port);
    if (s->listen_fd < 0) {
        freeaddrinfo(ai);
        free(s);
        return NULL;
    }
    AZ(pthread_mutex_init(&s->watch_mu, NULL));
    AZ(pthread_cond_init(&s->watch_cv, NULL));
    /* Options that depend on the configuration. */
    struct MHD_OptionItem extra[6];
    size_t n_extra = 0;
    extra[n_extra++] = (struct MHD_OptionItem){MHD_OPTION_PER_IP_CONNECTION_LIMIT,
                                               (intptr_t)cfg->conn_limit_per_ip, NULL};
    if (cfg->is_tls) {
        if (MHD_is_feature_supported(MHD_FEATURE_HTTPS_CERT_CALLBACK) != MHD_YES) {
            freeaddrinfo(ai);
            close(s->listen_fd);
            free(s);
            err_set(e, ERR_UNAVAILABLE, "libmicrohttpd is built without HTTPS support");
            return NULL;
        }
        extra[n_extra++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_CERT_CALLBACK, 0,
                                                   tls_cert_callback()};
        /* MHD copies the string: protocol versions and cipher suites (tls.h). */
        if (cfg->tls_priorities != NULL)
            extra[n_extra++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_PRIORITIES, 0,
                                                       (void *)cfg->tls_priorities};
    }
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ITC | MHD_USE_ERROR_LOG |
                     MHD_USE_TURBO | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_NO_LISTEN_SOCKET;
    /* HTTPS uses poll(): with epoll, libmicrohttpd 0.9.75 keeps a connection whose TLS
     * handshake waits for the client on its ready list (gnutls_handshake's EAGAIN never
     * clears the read-ready flag), so the worker spins on recv + epoll_wait(0) until
     * the next flight arrives: ~1 200 empty rounds per handshake, both cores busy and
     * 7 % of nginx's new-connection rate. poll() asks for what the handshake waits
     * for (docs/tls.md). Plain HTTP keeps epoll. */
    flags |= cfg->is_tls ? MHD_USE_POLL : MHD_USE_EPOLL;
    unsigned threads = cfg->threads ? cfg->threads : 1;
    if (cfg->is_thread_per_connection) {
        /* Handlers that block (the front waits on its upstream) get a thread each. */
        flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION |
                MHD_USE_POLL | MHD_USE_ITC | MHD_USE_ERROR_LOG | MHD_USE_NO_LISTEN_SOCKET;
        threads = 0;
    }
    if (threads > 0)
        extra[n_extra++] = (struct MHD_OptionItem){MHD_OPTION_THREAD_POOL_SIZE, threads, NULL};
    extra[n_extra] = (struct MHD_OptionItem){MHD_OPTION_END, 0, NULL};
    if (ai->ai_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    if (cfg->is_tls)
        flags |= MHD_USE_TLS;
    s->daemon = MHD_start_daemon(
        flags, 0, NULL, NULL, on_request, s,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)cfg->conn_timeout_s,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)cfg->conn_limit,
        /* Each connection allocates this pool and every request clears it. libmicrohttpd
         * mallocs a pool of up to 32 KiB and mmaps a larger one: a 64 KiB pool cost every
         * new connection an mmap and a munmap, whose TLB shootdown interrupts every core
         * (a fifth of the server's time at 10 000 connections/s). 32 KiB still takes
         * request headers up to 28 KiB (nginx's default line limit is 8 KiB) and reads
         * uploads in 16 KiB pieces (docs/performance.md, HTTPS). */
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(32 * 1024),
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
        MHD_OPTION_NOTIFY_CONNECTION, on_connection, s,
        MHD_OPTION_URI_LOG_CALLBACK, on_uri, s,
        MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, NULL,
        MHD_OPTION_ARRAY, extra,
        MHD_OPTION_END);
    freeaddrinfo(ai);
    if (s->daemon == NULL) {
        err_set(e, ERR_UNAVAILABLE, "cannot start the HTTP server on %s:%u", cfg->listen_host,
                cfg->listen_port);
        close(s->listen_fd);
        pthread_mutex_destroy(&s->watch_mu);
        pthread_cond_destroy(&s->watch_cv);
        free(s);
        return NULL;
    }
    {
        AZ(pthread_create(&s->watchdog, NULL, watchdog_loop, s));
        s->has_watchdog = true;
    }
    if (http_acceptor_start(s->listen_fd, !cfg->is_tls, cfg->conn_limit_per_ip,
                            add_connection, s, &s->acceptor) != 0) {
        err_set(e, ERR_UNAVAILABLE, "cannot start accepting on %s:%u", cfg->listen_host,
                cfg->listen_port);
        http_server_stop(s, 0);
        return NULL;
    }
    return s;
}

uint16_t http_server_port(struct http_server *s)
{
    struct sockaddr_storage addr;
    socklen_t len = sizeof(addr);
    if (getsockname(s->listen_fd, (struct sockaddr *)&addr, &len) != 0)
        return 0;
    if (addr.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&addr)->sin6_port);
    return ntohs(((struct sockaddr_in *)&addr)->sin_port);
}

void http_server_stop(struct http_server *s, int grace_ms)
{
    if (s == NULL)
        return;
    /* Stop accepting, then give requests already being served time to finish. */
    http_acceptor_stop(s->acceptor);
    close(s->listen_fd);
    int64_t deadline = util_mono_ns() + (int64_t)grace_ms * 1000000;
    while (atomic_load(&s->in_flight) > 0 && util_mono_ns() < deadline)
        util_sleep_ms(20);
    if (atomic_load(&s->in_flight) > 0)
        log_warn("http", "stopping with %d requests still in flight", atomic_load(&s->in_flight));
    MHD_stop_daemon(s->daemon);
    http_acceptor_free(s->acceptor); /* after MHD's last connection note */
    if (s->has_watchdog) {
        AZ(pthread_mutex_lock(&s->watch_mu));
        s->is_watch_stopping = true;
        AZ(pthread_cond_signal(&s->watch_cv));
        AZ(pthread_mutex_unlock(&s->watch_mu));
        AZ(pthread_join(s->watchdog, NULL));
    }
    pthread_mutex_destroy(&s->watch_mu);
    pthread_cond_destroy(&s->watch_cv);
    free(s);
}
