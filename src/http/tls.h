/* The TLS certificate the HTTP server presents, loaded from PEM files and replaceable
 * while the server runs (SIGHUP): libmicrohttpd asks for it on every handshake through
 * a callback, so a reload changes what new connections see without touching the
 * listener or connections already open. The only file that includes <gnutls/...>. */
#ifndef MERIDIAN_TLS_H
#define MERIDIAN_TLS_H

#include "err.h"

/* Loads the certificate chain (PEM, leaf first) and its private key (PEM) and makes
 * them the ones presented from the next handshake on. Checks that the key belongs to
 * the certificate. On failure the previous pair stays in use. The process keeps the
 * pairs it replaced until exit, as handshakes in flight may still use them. */
int tls_load(const char *cert_file, const char *key_file, struct err *e);

/* Is priorities a GnuTLS priority string GnuTLS accepts (MHD_OPTION_HTTPS_PRIORITIES)?
 * 0, or -1 with ERR_BAD_REQUEST naming where it goes wrong. */
int tls_check_priorities(const char *priorities, struct err *e);

/* Sets the master key of TLS session tickets: the SHA-512 of key_file's contents (at
 * least 32 bytes; the same file on the nodes of a region lets a client resume on any
 * of them), or a random key of this process when key_file is NULL (kept when one is
 * already set). Before the server starts, and again on SIGHUP: connections that start
 * afterwards seal and open tickets with the new key, connections already open are not
 * touched. On failure the previous key stays in use. */
int tls_tickets_load(const char *key_file, struct err *e);

/* Prepares a new connection's GnuTLS session (gnutls_session_t) before its handshake:
 * session tickets, when tls_tickets_load has run. */
void tls_session_start(void *session);

/* priorities with the protocol versions below min_version ("1.2", "1.3"; NULL: 1.2)
 * taken out: a new string to free, or NULL with ERR_BAD_REQUEST. */
char *tls_priorities_with_min(const char *priorities, const char *min_version, struct err *e);

/* Has a pair been loaded? */
int tls_is_loaded(void);

/* The certificate callback for MHD_OPTION_HTTPS_CERT_CALLBACK, as an untyped pointer
 * (its type is GnuTLS's gnutls_certificate_retrieve_function2). */
void *tls_cert_callback(void);

#endif
