/* Strict checks of a request head (RFC 9112 framing) made before a request is routed.
 * libmicrohttpd 0.9.75 is lenient where a proxy in front of us may not be (two
 * Content-Length values, Content-Length with Transfer-Encoding, no Host): a request two
 * parsers read differently is how requests are smuggled. A head that fails is answered
 * 400 and its connection closed. Pure: no I/O, no allocation; fuzzed
 * (tests/fuzz/fuzz_request_head.c). */
#ifndef MERIDIAN_HTTP_STRICT_H
#define MERIDIAN_HTTP_STRICT_H

#include <stdbool.h>
#include <stddef.h>

/* One header field line as received: name and value with their lengths, so an embedded
 * NUL is seen rather than cutting the string. */
struct http_field {
    const char *name;
    size_t name_len;
    const char *value;
    size_t value_len;
};

/* The request line and header fields of one request. */
struct http_head {
    const char *method;
    size_t method_len;
    const char *target; /* the request-target as sent, before percent-decoding */
    size_t target_len;
    const char *version; /* "HTTP/1.1" */
    size_t version_len;
    const struct http_field *fields;
    size_t n_fields;
};

/* Is the head acceptable? NULL if so; else a static, printable reason for the log:
 * - method a token; version HTTP/1.0 or HTTP/1.1;
 * - request-target without control bytes, spaces or an encoded NUL (%00), and a query
 *   within libmicrohttpd's pool (http_query_is_too_big);
 * - field names tokens, values without NUL, CR, LF or other control bytes (HTAB is fine);
 * - exactly one Host on HTTP/1.1 (at most one on 1.0), its value host[:port] characters;
 * - at most one Content-Length, of digits only;
 * - Transfer-Encoding only on HTTP/1.1, only once, only "chunked", never with
 *   Content-Length (RFC 9112 section 6.1). */
const char *http_strict_check(const struct http_head *h);

/* libmicrohttpd 0.9.75 keeps the request line and each query argument (some 48 bytes of
 * bookkeeping apiece) in its 32 KiB connection pool; a target whose arguments would not fit
 * exhausts it, and the connection then hangs (http.c, on_uri). The check keeps a margin:
 * the target's bytes plus HTTP_QUERY_ARG_COST per argument within HTTP_QUERY_BUDGET. That
 * leaves room for every request of ours (a token request with 256 scopes of 30 bytes takes
 * about 22 KiB of it); a target with no query is not limited here (libmicrohttpd answers a
 * line too long for its buffer with its own 414). */
#define HTTP_QUERY_ARG_COST 56
#define HTTP_QUERY_BUDGET (26 * 1024)

/* How many query arguments libmicrohttpd makes of target (of len bytes): one per
 * '&'-separated piece after the first '?', none without a '?'. */
size_t http_query_args_count(const char *target, size_t len);
/* Would libmicrohttpd run out of its pool parsing target's query (the budget above)? */
bool http_query_is_too_big(const char *target, size_t len);

/* Does the head announce a body (a non-zero Content-Length or Transfer-Encoding)?
 * Meaningful only for a head http_strict_check accepted. */
bool http_strict_has_body(const struct http_head *h);

#endif
