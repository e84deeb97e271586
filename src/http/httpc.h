/* Outbound HTTP: the only file that includes <curl/curl.h>. Blocking calls for the
 * command-line client, replication and webhooks; each call uses its own easy handle
 * (connection reuse comes from a per-thread share, see httpc.c). */
#ifndef MERIDIAN_HTTPC_H
#define MERIDIAN_HTTPC_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "err.h"

struct httpc_response {
    long status;
    struct buf body;     /* capped at body_max given to the call */
    struct buf headers;  /* raw response header lines */
    double total_s;      /* time taken */
};

void httpc_response_init(struct httpc_response *r, size_t body_max);
void httpc_response_fini(struct httpc_response *r);
/* Value of response header name (case-insensitive), copied into out; -1 if absent. */
int httpc_response_header(const struct httpc_response *r, const char *name, char *out,
                          size_t out_len);

struct httpc_request {
    const char *method;          /* "GET", "PUT", ... */
    const char *url;
    const char *const *headers;  /* NULL-terminated "Name: value" list, or NULL */
    const void *body;            /* request body or NULL */
    size_t body_len;
    long timeout_ms;             /* whole request; 0 = none */
    long connect_timeout_ms;     /* 0 = 10 s */
    const char *interface;       /* local address to bind outbound traffic to, or NULL */
    const atomic_bool *abort;    /* when it turns true the transfer is abandoned; or NULL */
    bool is_peer;                /* a call to a peer region: with the peer TLS identity */
};

/* Performs the request; the response body is kept up to out->body.max_bytes.
 * 0 when an HTTP response arrived (any status); -1 with ERR_UNAVAILABLE when the
 * peer could not be reached or the transfer failed. */
int httpc_do(const struct httpc_request *rq, struct httpc_response *out, struct err *e);

/* Sink for streamed downloads, called only for 200/206 bodies with the status:
 * return 0 to continue, -1 to abort. */
typedef int httpc_sink_f(void *arg, long status, const void *p, size_t n);

struct httpc_stream {
    const char *url;
    const char *const *headers;
    uint64_t range_start;        /* > 0: ask for bytes from here (Range: bytes=N-) */
    long low_speed_bytes;        /* abort when slower than this ... */
    long low_speed_time_s;       /* ... for this long (stall detection, not a timeout) */
    httpc_sink_f *sink;
    void *sink_arg;
    const char *interface;       /* local address to bind, or NULL */
    const atomic_bool *abort;    /* when it turns true the transfer is abandoned; or NULL */
};

/* Streams the body of a GET into the sink; *status gets the HTTP status. 0 when the
 * transfer completed, -1 when it broke (ERR_UNAVAILABLE) or the sink aborted. */
int httpc_stream_get(const struct httpc_stream *st, long *status, struct err *e);

/* A GET of the same resource from the first of several sources to answer (replication
 * fetches a blob from any peer that holds it). Sources are tried best first; while the
 * current one has sent nothing for hedge_after_ms, the next is started beside it (a
 * hedged request), and the first to deliver a 200/206 body wins: the other is dropped
 * before it writes a byte. A source that answers another status, cannot be connected
 * within connect_timeout_ms, or sends nothing for stall_timeout_s, is done with, and the
 * next one is started. Only the winner's body reaches the sink. */
struct httpc_get_any {
    const char *const *urls;     /* the sources, best first */
    size_t n_urls;
    const char *const *headers;
    uint64_t range_start;        /* > 0: ask for bytes from here (Range: bytes=N-) */
    long connect_timeout_ms;     /* 0 = 10 s */
    long stall_timeout_s;        /* a source that sends nothing for this long is dropped */
    long hedge_after_ms;         /* 0: never run two sources at once */
    httpc_sink_f *sink;
    void *sink_arg;
    const char *interface;       /* local address to bind, or NULL */
    const atomic_bool *abort;    /* when it turns true the transfer is abandoned; or NULL */
    bool is_peer;                /* the sources are peer regions (httpc_peer_tls_load) */
};

/* What became of one source of httpc_get_any. */
struct httpc_source_result {
    bool is_tried;               /* a request was started */
    bool is_transport_error;     /* no answer: could not connect, stalled or broke */
    bool is_cancelled;           /* dropped because another source won */
    long status;                 /* HTTP status, 0 if none arrived */
};

/* Runs g; results has g->n_urls entries. Returns 0 when the winner's transfer completed,
 * with *winner its index. -1 otherwise: *winner is the index of a winner whose transfer
 * broke (resume from what the sink got) or -1 when no source delivered (see results; a
 * 416 ends the whole call at once, as the caller's range is wrong for every source), or
 * when the sink failed or abort turned true. */
int httpc_get_any(const struct httpc_get_any *g, struct httpc_source_result *results,
                  int *winner, struct err *e);

/* GETs every url at once and waits for all (bodies discarded): statuses[i] gets the
 * status (0 when no answer within timeout_ms) and times_ms[i] the time it took, answered
 * or not (a refused connection: well under timeout_ms). is_peer:
 * the urls are peer regions (httpc_peer_tls_load). */
void httpc_get_many(const char *const *urls, size_t n, const char *const *headers,
                    long timeout_ms, const char *interface, bool is_peer, long *statuses,
                    double *times_ms);

/* A request whose body and response both stream (the front's forwarding): the body is
 * pulled from `read` as curl sends it, the response head goes to `on_head` once it is
 * complete (final status, 1xx skipped) and the body to `sink` (any status). Nothing is
 * buffered whole. */
typedef long httpc_read_f(void *arg, char *p, size_t max); /* bytes, 0 at the end, -1 abort */
/* status and the raw header lines ("Name: value\r\n" each); return 0 to go on. */
typedef int httpc_head_f(void *arg, long status, const char *lines, size_t len);
struct httpc_relay {
    const char *method;
    const char *url;
    const char *const *headers;  /* NULL-terminated "Name: value" list, or NULL */
    bool has_body;               /* send a body pulled from read */
    int64_t body_len;            /* its length, -1: unknown (sent chunked) */
    httpc_read_f *read;
    httpc_head_f *on_head;
    httpc_sink_f *sink;          /* every response body byte, whatever the status */
    void *arg;                   /* for read, on_head and sink */
    long connect_timeout_ms;     /* 0 = 10 s */
    long low_speed_time_s;       /* abort after this long without a byte either way; 0 = 60 */
    const atomic_bool *abort;    /* when it turns true the exchange is abandoned; or NULL */
    /* Asked (with arg) whenever no byte moved since it was last asked, about once a second:
     * true abandons the exchange (its peer is known to be lost). NULL: never. */
    bool (*give_up)(void *arg);
};

/* Runs the relay. 0 when the exchange completed; -1 with ERR_UNAVAILABLE when it broke,
 * *is_connected false when no connection was made at all (nothing was sent: safe to try
 * elsewhere). */
int httpc_relay(const struct httpc_relay *r, bool *is_connected, struct err *e);

/* The same for a request without a body, driven by the caller on its own thread (no
 * relay thread, no pipe): start, then httpc_pull_head until the response head is in
 * (r->on_head is called with r->arg), then httpc_pull_read for the body as the caller
 * sends it on. r->read and r->sink are not used; the body waits in a small buffer (the
 * region is held back while it is full). */
struct httpc_pull;
struct httpc_pull *httpc_pull_start(const struct httpc_relay *r);
/* 0 once the head was passed to on_head; -1 with ERR_UNAVAILABLE when the exchange ended
 * without one (*is_connected false: nothing reached the peer, safe to try elsewhere). */
int httpc_pull_head(struct httpc_pull *p, bool *is_connected, struct err *e);
/* The next body bytes into out: their number, 0 at the end of a complete body, -1 when
 * it broke. Blocks until some arrive. */
long httpc_pull_read(struct httpc_pull *p, char *out, size_t max);
void httpc_pull_free(struct httpc_pull *p);

/* The TLS identity of calls to peer regions (is_peer; mutual TLS, docs/governance.md):
 * the client certificate chain and key this region presents (both or neither), and the
 * CA file of region certificates, trusted for a peer's server certificate besides the
 * system's CAs (may be NULL). The files are read into memory and checked (the key must
 * belong to the certificate): calls that start afterwards use them, calls in flight keep
 * theirs, so a SIGHUP calls this again to rotate them. On failure the previous identity
 * stays in use. */
int httpc_peer_tls_load(const char *cert_file, const char *key_file, const char *ca_file,
                        struct err *e);

/* Call once at start (curl_global_init is not thread-safe). */
void httpc_global_init(void);

#endif
