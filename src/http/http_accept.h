/* The listening socket's acceptor thread (http_accept.c): accepts connections and hands
 * each to the HTTP server, first answering a TLS handshake sent to a plain-HTTP port with
 * an HTTP 400 (libmicrohttpd 0.9.75 closes some of them without a word, which clients
 * that try https before http, as docker does for an insecure registry, take for a network
 * failure instead of falling back to http). */
#ifndef MERIDIAN_HTTP_ACCEPT_H
#define MERIDIAN_HTTP_ACCEPT_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

struct http_acceptor;

/* Takes over a new connection (a non-blocking socket) and its peer address. */
typedef void http_accept_add_f(void *ctx, int fd, const struct sockaddr *addr,
                               socklen_t addr_len);

/* Starts accepting on listen_fd (made non-blocking here). is_plain: the port speaks plain
 * HTTP, so a connection's first bytes are looked at before it is handed on (a TLS
 * handshake is answered 400 and closed); on a TLS port every connection goes on at once.
 * per_ip_max (0: none): connections one address may hold, waiting here and held by the
 * server together (see http_acceptor_note); the server applies the same limit to what it
 * holds. *out is set before the thread starts (the server's notes may come from it at
 * once); 0, or -1 (and *out NULL) when the thread cannot be started. */
int http_acceptor_start(int listen_fd, bool is_plain, unsigned per_ip_max,
                        http_accept_add_f *add, void *ctx, struct http_acceptor **out);
/* The server took (is_open) or closed a connection from addr. Any thread. */
void http_acceptor_note(struct http_acceptor *a, const struct sockaddr *addr, bool is_open);
/* Stops accepting and joins the thread; connections not yet handed on are closed. The
 * listening socket stays open (its owner closes it). */
void http_acceptor_stop(struct http_acceptor *a);
/* Frees a stopped acceptor, once the server has closed every connection (their notes
 * reach it until then). */
void http_acceptor_free(struct http_acceptor *a);

/* Do the first n bytes a client sent begin a TLS record (a handshake: 0x16, then major
 * version 3)? Pure; n may be less than 3. */
bool http_looks_like_tls(const unsigned char *p, size_t n);

#endif
