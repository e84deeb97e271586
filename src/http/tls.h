/* The TLS certificate the HTTP server presents, loaded from PEM files and replaceable
 * while the server runs (SIGHUP): libmicrohttpd asks for it on every handshake through
 * a callback, so a reload changes what new connections see without touching the
 * listener or connections already open. The only file that includes <gnutls/...>. */
#ifndef MERIDIAN_TLS_H
#define MERIDIAN_TLS_H

#include <stdbool.h>
#include <stddef.h>

#include "err.h"

/* Loads the certificate chain (PEM, leaf first) and its private key (PEM) and makes
 * them the ones presented from the next handshake on. Checks that the key belongs to
 * the certificate. On failure the previous pair stays in use. The process keeps the
 * pairs it replaced until exit, as handshakes in flight may still use them. */
int tls_load(const char *cert_file, const char *key_file, struct err *e);

/* Do the PEM certificate chain and PEM private key in memory form a pair (the key
 * belongs to the leaf)? 0, or -1 with ERR_BAD_REQUEST saying why. */
int tls_check_pair_pem(const void *cert, size_t cert_len, const void *key, size_t key_len,
                       struct err *e);

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

/* Mutual TLS between regions (docs/governance.md). Once a peer CA is loaded, every new
 * HTTPS connection asks the client for a certificate, optionally: clients without one
 * (docker, skopeo) are served as before, and only the routes peers call need one (the
 * auth layer decides, with tls_client_verify). The CA file may hold several certificates
 * (a rollover). Reloaded on SIGHUP; on failure the previous CA stays in use. */
int tls_peer_ca_load(const char *ca_file, struct err *e);
bool tls_peer_ca_is_loaded(void);

#define TLS_CLIENT_MAX_NAMES 8
#define TLS_CLIENT_NAME_MAX 128

enum tls_client_verdict {
    TLS_CLIENT_NONE,    /* no certificate (or plain HTTP, or no peer CA) */
    TLS_CLIENT_TRUSTED, /* chains to the peer CA, in its validity period, usable by clients */
    TLS_CLIENT_REFUSED, /* presented, but not acceptable: why says why */
};

/* Why a certificate was refused, in classes (metrics). */
enum tls_client_fault {
    TLS_FAULT_NONE,
    TLS_FAULT_UNTRUSTED, /* not issued by the peer CA, or a bad signature */
    TLS_FAULT_EXPIRED,   /* outside its validity period */
    TLS_FAULT_OTHER,     /* key usage, malformed, ... */
};

/* What a connection's client certificate is worth against the peer CA loaded now. */
struct tls_client_cert {
    enum tls_client_verdict verdict;
    enum tls_client_fault fault;                             /* REFUSED: the class of why */
    char subject[256];                                       /* the leaf's DN, for logs */
    char names[TLS_CLIENT_MAX_NAMES][TLS_CLIENT_NAME_MAX];   /* CN, then DNS SANs */
    size_t n_names;
    char why[160];                                           /* REFUSED: the reason */
};

/* Checks the certificate chain the client of session (gnutls_session_t) sent in its
 * handshake against the current peer CA: issuer, signatures, validity period (now) and
 * extended key usage (TLS client, when the certificate names any). The handshake has
 * already proved the client holds the key. */
void tls_client_verify(void *session, struct tls_client_cert *out);

/* Is name one of the certificate's names (CN or DNS SAN), compared exactly? */
bool tls_client_names(const struct tls_client_cert *c, const char *name);

/* Has a pair been loaded? */
int tls_is_loaded(void);

/* The certificate callback for MHD_OPTION_HTTPS_CERT_CALLBACK, as an untyped pointer
 * (its type is GnuTLS's gnutls_certificate_retrieve_function2). */
void *tls_cert_callback(void);

#endif
