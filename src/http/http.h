/* The HTTP layer: the only file that includes <microhttpd.h>. It owns the listening
 * daemon, the per-request context, body streaming, routing to handlers and turning
 * a struct err into an OCI error body. Handlers see only struct http_req.
 *
 * A handler runs once all of the request body has arrived, except for routes that
 * set a body sink in their `on_headers` step: those get the bytes as they arrive
 * (blob uploads), so memory does not grow with body size. */
#ifndef MERIDIAN_HTTP_H
#define MERIDIAN_HTTP_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "err.h"
#include "tls.h"

/* Where the management API lives: its errors have their own format (http_reply_mgmt_err). */
#define MGMT_PREFIX "/_meridian/v1/"

struct http_req;
struct registry;
struct auth_request;
struct http_handlers;

/* Called with each piece of a streamed body; return 0 to continue, -1 to fail the
 * request (the sink has set req's error). */
typedef int http_body_sink_f(struct http_req *req, const char *data, size_t len);

/* A streamed reply body (http_reply_stream): puts the next bytes into p and returns how
 * many (> 0), 0 at the end, -1 when the body broke (the connection is then cut). It may
 * block the thread sending the reply: the front runs a thread per connection; a blob
 * streamed by the blobstore holds one of the registry's worker threads meanwhile. */
typedef long http_reader_f(void *arg, char *p, size_t max);

/* Hands a suspended request to the thread that will resume it (see http_req_suspend). */
typedef void http_park_f(struct http_req *req, void *arg);

struct http_req {
    unsigned magic;
    struct registry *reg;   /* opaque here: what the server passed to http_server_start */
    const struct http_handlers *handlers; /* the server's, set by http.c */
    const char *method;     /* "GET", "PUT", ... */
    const char *path;       /* URL path without the query string */
    char request_id[17];
    int route;              /* enum route_id of routes.h, for metrics */

    /* path captures filled by the router */
    char *repo;             /* repository name, or NULL */
    char *ref;              /* tag, digest or upload id, or NULL */

    /* body */
    struct buf body;        /* buffered body (capped) when no sink is set */
    http_body_sink_f *sink; /* streaming sink, set in the headers phase */
    void *sink_state;       /* owned by the handler; freed by its cleanup */
    void (*sink_cleanup)(struct http_req *req);
    uint64_t body_bytes;    /* bytes received so far */
    bool is_body_error;     /* the sink or cap failed; err holds why */
    struct err err;

    /* reply */
    int status;
    struct buf reply_headers; /* "Name: value\n" lines */
    struct buf reply_body;
    http_reader_f *reply_reader; /* set: stream the body from it (http_reply_stream) */
    void *reply_reader_arg;   /* owned by the handler (handler_state) */
    uint64_t reply_reader_len; /* UINT64_MAX: unknown (sent chunked) */
    int reply_fd;             /* >= 0: send this fd (sendfile) instead of reply_body */
    uint64_t reply_fd_offset;
    uint64_t reply_fd_len;
    bool is_head;             /* HEAD: send headers with the body's length, no body */
    uint64_t head_len;        /* Content-Length to announce on HEAD when no body is set */

    void *handler_state;      /* kept across a suspension; freed by handler_cleanup */
    void (*handler_cleanup)(struct http_req *req);
    http_park_f *park;        /* set by http_req_suspend; worker-only */
    void *park_arg;
    atomic_bool is_parked;    /* from park until http_req_resume */
    bool is_counted;          /* metrics already recorded this request */
    char *kept[8];            /* strings owned by the request (joined headers) */
    char allow[48];           /* a 405 for a method the target never takes: its Allow */
    size_t n_kept;
    bool is_replied;          /* a reply was set before the body ended */

    struct auth_request *auth; /* who asks and what they may do (authz.c); owned by it */
    void *app;                /* http_handlers.arg of the server */
    void *impl;               /* the MHD connection; http.c only */
    char *raw_target;         /* the request-target as sent (not decoded); http.c only */
    const char *raw_target_at; /* where MHD had it in the request line (headers phase) */
    bool is_started;          /* the headers are in: method and path are set */
    bool is_queued;           /* the reply went to MHD before the body was read */
    bool is_closing;          /* close the connection after the reply */
    int64_t start_ns;
    uint64_t bytes_out;
};

/* Request accessors. Return NULL when absent. Header lookups are case-insensitive;
 * http_req_header_all joins every occurrence with ", " (Accept may be repeated;
 * the result lives as long as req). */
const char *http_req_header(struct http_req *req, const char *name);
const char *http_req_header_all(struct http_req *req, const char *name);
const char *http_req_query(struct http_req *req, const char *name);
/* Is the query parameter present at all (even empty)? */
bool http_req_has_query(struct http_req *req, const char *name);

/* Every value of query parameter name (it may repeat), joined with single spaces;
 * NULL when absent. The result lives as long as req. */
const char *http_req_query_joined(struct http_req *req, const char *name);
/* The client's address as text ("127.0.0.1", "::1"); "" when unknown. */
void http_req_remote_addr(struct http_req *req, char *out, size_t out_len);

/* The client certificate of the request's connection against the peer CA (tls.h):
 * TLS_CLIENT_NONE over plain HTTP, without a peer CA, or when the client sent none. */
void http_req_client_cert(struct http_req *req, struct tls_client_cert *out);

/* The request-target as the client sent it (path and query, not decoded). */
const char *http_req_target(struct http_req *req);
/* Calls fn for every request header, in order. */
typedef void http_header_f(void *arg, const char *name, const char *value);
void http_req_each_header(struct http_req *req, http_header_f *fn, void *arg);

/* Replies. */
/* The methods (NULL-terminated) a 405 reply to req names in its Allow header. */
void http_reply_allow(struct http_req *req, const char *const *methods);
void http_reply_header(struct http_req *req, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Sets status and a body copied from p (n bytes) with Content-Type ct (may be NULL). */
void http_reply(struct http_req *req, int status, const char *ct, const void *p, size_t n);
/* Sets status and an fd to send [offset, offset+len) from; takes ownership of fd. */
void http_reply_fd(struct http_req *req, int status, int fd, uint64_t offset, uint64_t len);
/* Sets status and a body pulled from read(arg, ...) as it is sent; len is its length
 * (UINT64_MAX: unknown). arg must live until the request is freed (handler_state). */
void http_reply_stream(struct http_req *req, int status, uint64_t len, http_reader_f *read,
                       void *arg);
/* OCI error body {"errors":[{"code","message","detail"}]} with the code's status. */
void http_reply_err(struct http_req *req, const struct err *e);
/* Shorthand: builds an err from code and message and replies with it. */
void http_reply_error(struct http_req *req, enum err_code code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Management-API style error {"error":{"code","message"}}. */
void http_reply_mgmt_err(struct http_req *req, const struct err *e);

/* Long polls. A handler that has nothing to answer yet calls http_req_suspend and
 * returns without a reply; the connection then waits without holding a worker thread.
 * Once the HTTP layer is done with the request on this worker, it suspends the
 * connection and calls park(req, arg) there; from then on the request belongs to
 * whoever park gave it to, until that owner calls http_req_resume, exactly once (park
 * itself may). The handler then runs again on a worker (it keeps what it needs in
 * req->handler_state). Handing the request over only after the worker's last look at
 * it is what keeps one owner at a time (issue 20). */
void http_req_suspend(struct http_req *req, http_park_f *park, void *arg);
void http_req_resume(struct http_req *req);

/* Server. */
struct http_server;
struct http_config {
    const char *listen_host;  /* IPv4/IPv6 literal or hostname */
    uint16_t listen_port;
    unsigned threads;
    bool is_access_log;
    unsigned conn_timeout_s;
    size_t conn_limit;
    unsigned conn_limit_per_ip;  /* 0 = no limit */
    unsigned header_timeout_s;   /* a request's headers must arrive within this; 0 = no limit */
    unsigned body_timeout_s;     /* a request body gets this long to start, 0 = no limit, */
    unsigned body_min_rate;      /* plus a second per this many bytes received (0: none) */
    bool is_tls;                 /* HTTPS with the certificate of tls.c (loaded before start) */
    const char *tls_priorities;  /* GnuTLS priority string of HTTPS connections */
    bool is_thread_per_connection; /* handlers may block (the front); no long polls */
};
/* What the server gives the HTTP layer at start-up: the HTTP layer calls these and knows
 * nothing of the registry above it (the state machine at the top of http.c says when).
 * on_headers runs once the request line and headers are in: it routes the request and
 * either sets a streaming sink, sets the body cap, or replies at once. on_malformed
 * replies 400 to a head that failed the strict framing check (why says which rule).
 * on_complete runs when the body is in, unless a reply was already made. on_reply runs
 * when the reply is about to be queued; on_finished once per request when it is done
 * (status 499 when the client went away), before the request is freed. */
typedef void http_on_headers_f(struct http_req *req);
typedef void http_on_malformed_f(struct http_req *req, const char *why);
typedef void http_on_complete_f(struct http_req *req);
typedef void http_on_reply_f(struct http_req *req);
typedef void http_on_finished_f(struct http_req *req, int status);

struct http_handlers {
    http_on_headers_f *on_headers;
    http_on_malformed_f *on_malformed;
    http_on_complete_f *on_complete;
    http_on_reply_f *on_reply;
    http_on_finished_f *on_finished;
    void *arg;                  /* becomes req->app of every request (the front's state) */
};

/* Starts listening; NULL with e set on failure. handlers (every member set) and reg must
 * outlive the server; each request carries reg to the handlers. */
struct http_server *http_server_start(const struct http_config *cfg,
                                      const struct http_handlers *handlers,
                                      struct registry *reg, struct err *e);
/* Stops accepting new connections, lets in-flight requests finish (up to grace_ms),
 * then stops. */
void http_server_stop(struct http_server *s, int grace_ms);
/* Port actually bound (useful with port 0). */
uint16_t http_server_port(struct http_server *s);

#endif
