/* Bodiless requests (GET, HEAD) from the front to a plain-HTTP region over raw sockets:
 * HTTP/1.1 written and parsed here, connections kept alive in a small shared pool per
 * region. It does what the front needs and no more (no TLS, no redirects, no decoding
 * beyond chunked framing), for the hot path of a pull: libcurl's per-request setup
 * (URL parsing, option handling, header list, its connection cache) was about a third
 * of the front's CPU per manifest GET (docs/front.md, "The manifest GET overhead"). */
#ifndef MERIDIAN_FRONT_UPSTREAM_H
#define MERIDIAN_FRONT_UPSTREAM_H

#include <stdbool.h>
#include <stddef.h>

/* Where a region listens; one per region, for the process's life. */
struct upstream_pool;

/* A pool for host:port (numeric or a name, resolved at each new connection). */
struct upstream_pool *upstream_pool_new(const char *host, const char *port);

/* Closes the pool's idle connections: its region left rotation, and the failure may have
 * left them dead without a FIN or RST (a black hole, a NAT that lost its state), so that a
 * request sent on one would wait for the stall bound once the region is back. */
void upstream_pool_flush(struct upstream_pool *pool);

/* A TCP connection to host:port opened within timeout_ms (blocking from then on, with
 * TCP_NODELAY and a 60 s send and receive timeout); -1 when none. */
int upstream_connect(const char *host, const char *port, long timeout_ms);

/* One exchange. */
struct upstream_call;

/* Asked while a call waits for bytes (every quarter second without one): true ends the
 * wait as a stall would (the region is known to be lost; a GET may go elsewhere). */
typedef bool upstream_give_up_f(void *arg);

/* Sends `method target` with the given "Name: value" headers (NULL-terminated; the
 * client's Host among them) and waits for the response head: 0 with *status and the raw
 * header lines ("Name: value\r\n" each, in *lines, *lines_len), or -1 when none came;
 * *is_connected false then when no connection could be opened (nothing was sent: safe
 * to try another region). give_up (may be NULL) is kept for the call's reads too. A kept-alive connection that turns out to be closed is
 * replaced once (GET and HEAD are safe to repeat). *out is set either way (free it). */
int upstream_call_start(struct upstream_pool *pool, const char *method, const char *target,
                        const char *const *headers, long connect_timeout_ms,
                        upstream_give_up_f *give_up, void *give_up_arg,
                        struct upstream_call **out, long *status, char **lines,
                        size_t *lines_len, bool *is_connected);

/* The next body bytes: their number, 0 at the end of a complete body, -1 when it broke
 * (or nothing arrived for 60 s). */
long upstream_call_read(struct upstream_call *c, char *out, size_t max);

/* Ends the exchange: its connection goes back to the pool when the body was read whole
 * and the region keeps it open, else it is closed. */
void upstream_call_free(struct upstream_call *c);

#endif
