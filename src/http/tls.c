/* GnuTLS for the HTTP server: PEM files -> pcert list + private key, published through
 * an atomic pointer the handshake callback reads; the session ticket key every new
 * connection gets; the priority string with the minimum protocol version applied. */
#include "tls.h"

#include <gnutls/abstract.h>
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "log.h"
#include "util.h"

#define TLS_MAX_CHAIN 8
#define TLS_FILE_MAX (1024 * 1024)

struct tls_pair {
    gnutls_pcert_st pcerts[TLS_MAX_CHAIN];
    unsigned n_pcerts;
    gnutls_privkey_t key;
    struct tls_pair *older; /* kept until exit: handshakes may still hold it */
};

static _Atomic(struct tls_pair *) current;

/* The master key of session tickets. GnuTLS derives the key that seals tickets from it
 * and the wall-clock time (lib/stek.c: TOTP over the ticket lifetime), so nodes that
 * share it and agree on the time resume each other's sessions, and a leaked derived key
 * stops working once the period it belongs to is over. Published like the certificate
 * pair: SIGHUP swaps in a new one; each session copies the key when it starts
 * (gnutls_session_ticket_enable_server), and replaced keys stay allocated until exit
 * because a connection starting at that moment may still be reading one. */
struct ticket_key {
    gnutls_datum_t key;
    struct ticket_key *older;
};

static _Atomic(struct ticket_key *) current_ticket;

/* The CA(s) that sign region certificates (--peer-ca), published like the pair above:
 * SIGHUP swaps in a new trust list, requests verifying at that moment may still hold the
 * old one, so replaced lists stay allocated until exit. */
struct peer_ca {
    gnutls_x509_trust_list_t tl;
    struct peer_ca *older;
};

static _Atomic(struct peer_ca *) current_ca;

static int read_file(const char *path, gnutls_datum_t *out, struct err *e)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return err_set(e, ERR_BAD_REQUEST, "cannot open %s", path);
    unsigned char *data = xmalloc(TLS_FILE_MAX + 1);
    size_t n = fread(data, 1, TLS_FILE_MAX + 1, f);
    fclose(f);
    if (n == 0 || n > TLS_FILE_MAX) {
        free(data);
        return err_set(e, ERR_BAD_REQUEST, "%s is empty or too large", path);
    }
    out->data = data;
    out->size = (unsigned)n;
    return 0;
}

static void pair_free(struct tls_pair *p)
{
    for (unsigned i = 0; i < p->n_pcerts; i++)
        gnutls_pcert_deinit(&p->pcerts[i]);
    if (p->key != NULL)
        gnutls_privkey_deinit(p->key);
    free(p);
}

/* Does key match the leaf certificate? GnuTLS checks the pair when it is set on a
 * credentials structure, so build one and throw it away. */
static int check_pair(const gnutls_datum_t *cert, const gnutls_datum_t *key, struct err *e)
{
    gnutls_certificate_credentials_t cred;
    if (gnutls_certificate_allocate_credentials(&cred) != GNUTLS_E_SUCCESS)
        return err_set(e, ERR_INTERNAL, "out of memory");
    int rc = gnutls_certificate_set_x509_key_mem2(cred, cert, key, GNUTLS_X509_FMT_PEM, NULL, 0);
    gnutls_certificate_free_credentials(cred);
    if (rc < 0)
        return err_set(e, ERR_BAD_REQUEST, "certificate and key do not form a pair: %s",
                       gnutls_strerror(rc));
    return 0;
}

int tls_check_pair_pem(const void *cert, size_t cert_len, const void *key, size_t key_len,
                       struct err *e)
{
    if (cert_len > TLS_FILE_MAX || key_len > TLS_FILE_MAX)
        return err_set(e, ERR_BAD_REQUEST, "certificate or key too large");
    gnutls_datum_t c = {.data = (unsigned char *)cert, .size = (unsigned)cert_len};
    gnutls_datum_t k = {.data = (unsigned char *)key, .size = (unsigned)key_len};
    return check_pair(&c, &k, e);
}

int tls_load(const char *cert_file, const char *key_file, struct err *e)
{
    gnutls_datum_t cert = {0}, key = {0};
    struct tls_pair *p = xcalloc(1, sizeof(*p));
    int rc = -1;
    if (read_file(cert_file, &cert, e) != 0 || read_file(key_file, &key, e) != 0)
        goto out;
    if (check_pair(&cert, &key, e) != 0)
        goto out;
    p->n_pcerts = TLS_MAX_CHAIN;
    int grc =
        gnutls_pcert_list_import_x509_raw(p->pcerts, &p->n_pcerts, &cert, GNUTLS_X509_FMT_PEM, 0);
    if (grc < 0) {
        p->n_pcerts = 0;
        err_set(e, ERR_BAD_REQUEST, "cannot read certificate %s: %s", cert_file,
                gnutls_strerror(grc));
        goto out;
    }
    if (gnutls_privkey_init(&p->key) != GNUTLS_E_SUCCESS) {
        err_set(e, ERR_INTERNAL, "out of memory");
        goto out;
    }
    grc = gnutls_privkey_import_x509_raw(p->key, &key, GNUTLS_X509_FMT_PEM, NULL, 0);
    if (grc < 0) {
        err_set(e, ERR_BAD_REQUEST, "cannot read private key %s: %s", key_file,
                gnutls_strerror(grc));
        goto out;
    }
    p->older = atomic_load(&current);
    atomic_store(&current, p);
    p = NULL;
    rc = 0;
out:
    if (p != NULL)
        pair_free(p);
    if (key.data != NULL) {
        memset(key.data, 0, key.size); /* the private key's bytes */
        free(key.data);
    }
    free(cert.data);
    return rc;
}

int tls_check_priorities(const char *priorities, struct err *e)
{
    gnutls_priority_t p;
    const char *where = NULL;
    int rc = gnutls_priority_init(&p, priorities, &where);
    if (rc < 0)
        return err_set(e, ERR_BAD_REQUEST, "tls-priorities: %s at \"%.40s\"", gnutls_strerror(rc),
                       where != NULL ? where : "");
    gnutls_priority_deinit(p);
    return 0;
}

int tls_is_loaded(void)
{
    return atomic_load(&current) != NULL;
}

static int on_certificate(gnutls_session_t session, const gnutls_datum_t *req_ca_rdn, int nreqs,
                          const gnutls_pk_algorithm_t *pk_algos, int pk_algos_length,
                          gnutls_pcert_st **pcert, unsigned int *pcert_length,
                          gnutls_privkey_t *privkey)
{
    (void)session;
    (void)req_ca_rdn;
    (void)nreqs;
    (void)pk_algos;
    (void)pk_algos_length;
    struct tls_pair *p = atomic_load(&current);
    if (p == NULL)
        return -1;
    *pcert = p->pcerts;
    *pcert_length = p->n_pcerts;
    *privkey = p->key;
    return 0;
}

void *tls_cert_callback(void)
{
    gnutls_certificate_retrieve_function2 *f = on_certificate;
    return (void *)f;
}

static void ticket_publish(gnutls_datum_t key)
{
    struct ticket_key *t = xcalloc(1, sizeof(*t));
    t->key = key;
    t->older = atomic_load(&current_ticket);
    atomic_store(&current_ticket, t);
}

int tls_tickets_load(const char *key_file, struct err *e)
{
    if (key_file == NULL) {
        if (atomic_load(&current_ticket) != NULL)
            return 0; /* the random key of this process stays */
        gnutls_datum_t key = {0};
        if (gnutls_session_ticket_key_generate(&key) != GNUTLS_E_SUCCESS)
            return err_set(e, ERR_INTERNAL, "cannot generate a session ticket key");
        ticket_publish(key);
        return 0;
    }
    /* Any secret file (like token-key-file): its SHA-512 is the 64-byte master key
     * GnuTLS expects, so operators need no special format. */
    gnutls_datum_t secret = {0};
    if (read_file(key_file, &secret, e) != 0)
        return -1;
    int rc = 0;
    if (secret.size < 32) {
        rc = err_set(e, ERR_BAD_REQUEST, "tls-ticket-key-file %s: fewer than 32 bytes", key_file);
    } else {
        gnutls_datum_t key = {.data = gnutls_malloc(64), .size = 64};
        if (key.data == NULL ||
            gnutls_hash_fast(GNUTLS_DIG_SHA512, secret.data, secret.size, key.data) < 0) {
            gnutls_free(key.data);
            rc = err_set(e, ERR_INTERNAL, "cannot derive the session ticket key");
        } else {
            ticket_publish(key);
        }
    }
    gnutls_memset(secret.data, 0, secret.size);
    free(secret.data);
    return rc;
}

void tls_session_start(void *session)
{
    if (session == NULL)
        return;
    /* Optional, not required: a client without a certificate completes its handshake,
     * and the routes that need one refuse it (tls.h). */
    if (atomic_load(&current_ca) != NULL)
        gnutls_certificate_server_set_request(session, GNUTLS_CERT_REQUEST);
    struct ticket_key *t = atomic_load(&current_ticket);
    if (t == NULL)
        return;
    /* Resumption skips the certificate signature and key exchange: a returning
     * client's handshake costs a fraction of a full one (docs/tls.md). A resumed
     * session keeps the client certificate of its full handshake, which
     * tls_client_verify checks again on every request. */
    if (gnutls_session_ticket_enable_server(session, &t->key) != GNUTLS_E_SUCCESS)
        log_warn("tls", "cannot enable session tickets on a connection");
}

/* Peer CA: client certificates of regions -------------------------------------- */

int tls_peer_ca_load(const char *ca_file, struct err *e)
{
    gnutls_datum_t pem = {0};
    if (read_file(ca_file, &pem, e) != 0)
        return -1;
    struct peer_ca *ca = xcalloc(1, sizeof(*ca));
    int rc = gnutls_x509_trust_list_init(&ca->tl, 0);
    if (rc == GNUTLS_E_SUCCESS)
        rc = gnutls_x509_trust_list_add_trust_mem(ca->tl, &pem, NULL, GNUTLS_X509_FMT_PEM, 0,
                                                  0);
    free(pem.data);
    if (rc <= 0) {
        if (ca->tl != NULL)
            gnutls_x509_trust_list_deinit(ca->tl, 1);
        free(ca);
        return err_set(e, ERR_BAD_REQUEST, "peer-ca %s: %s", ca_file,
                       rc == 0 ? "no certificate in the file" : gnutls_strerror(rc));
    }
    ca->older = atomic_load(&current_ca);
    atomic_store(&current_ca, ca);
    return 0;
}

bool tls_peer_ca_is_loaded(void)
{
    return atomic_load(&current_ca) != NULL;
}

/* Why a chain failed, most telling first: a certificate of another CA is "not issued by
 * the peer CA" even when it has also expired. */
static const char *status_why(unsigned status)
{
    if (status & (GNUTLS_CERT_SIGNER_NOT_FOUND | GNUTLS_CERT_SIGNER_NOT_CA))
        return "not issued by the peer CA";
    if (status & GNUTLS_CERT_SIGNATURE_FAILURE)
        return "bad signature";
    if (status & GNUTLS_CERT_EXPIRED)
        return "certificate expired";
    if (status & GNUTLS_CERT_NOT_ACTIVATED)
        return "certificate not yet valid";
    if (status & GNUTLS_CERT_PURPOSE_MISMATCH)
        return "not a TLS client certificate (extended key usage)";
    if (status & GNUTLS_CERT_REVOKED)
        return "certificate revoked";
    if (status & GNUTLS_CERT_INSECURE_ALGORITHM)
        return "insecure signature algorithm";
    return "certificate not trusted";
}

static void add_name(struct tls_client_cert *out, const char *name, size_t len)
{
    if (out->n_names == TLS_CLIENT_MAX_NAMES || len == 0 || len >= TLS_CLIENT_NAME_MAX ||
        memchr(name, '\0', len) != NULL)
        return;
    for (size_t i = 0; i < out->n_names; i++)
        if (strlen(out->names[i]) == len && memcmp(out->names[i], name, len) == 0)
            return; /* the CN repeated as a DNS name */
    memcpy(out->names[out->n_names], name, len);
    out->names[out->n_names][len] = '\0';
    out->n_names++;
}

/* The leaf's subject, CN and DNS names. */
static void read_names(gnutls_x509_crt_t leaf, struct tls_client_cert *out)
{
    gnutls_datum_t dn = {0};
    if (gnutls_x509_crt_get_dn3(leaf, &dn, 0) == GNUTLS_E_SUCCESS) {
        snprintf(out->subject, sizeof(out->subject), "%.*s", (int)dn.size, (char *)dn.data);
        gnutls_free(dn.data);
    }
    char name[TLS_CLIENT_NAME_MAX];
    size_t size = sizeof(name);
    if (gnutls_x509_crt_get_dn_by_oid(leaf, GNUTLS_OID_X520_COMMON_NAME, 0, 0, name, &size) ==
        GNUTLS_E_SUCCESS)
        add_name(out, name, size);
    for (unsigned i = 0; i < 64; i++) {
        size = sizeof(name);
        int type = gnutls_x509_crt_get_subject_alt_name(leaf, i, name, &size, NULL);
        if (type == GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE)
            break;
        if (type == GNUTLS_SAN_DNSNAME)
            add_name(out, name, size);
    }
}

void tls_client_verify(void *session, struct tls_client_cert *out)
{
    memset(out, 0, sizeof(*out));
    struct peer_ca *ca = atomic_load(&current_ca);
    unsigned n = 0;
    const gnutls_datum_t *raw =
        session != NULL ? gnutls_certificate_get_peers(session, &n) : NULL;
    if (ca == NULL || raw == NULL || n == 0)
        return;
    out->verdict = TLS_CLIENT_REFUSED;
    out->fault = TLS_FAULT_OTHER;
    if (gnutls_certificate_type_get(session) != GNUTLS_CRT_X509) {
        snprintf(out->why, sizeof(out->why), "not an X.509 certificate");
        return;
    }
    if (n > TLS_MAX_CHAIN)
        n = TLS_MAX_CHAIN;
    gnutls_x509_crt_t crts[TLS_MAX_CHAIN] = {0};
    unsigned n_ok = 0;
    for (; n_ok < n; n_ok++) {
        if (gnutls_x509_crt_init(&crts[n_ok]) != GNUTLS_E_SUCCESS)
            break;
        if (gnutls_x509_crt_import(crts[n_ok], &raw[n_ok], GNUTLS_X509_FMT_DER) < 0) {
            gnutls_x509_crt_deinit(crts[n_ok]);
            break;
        }
    }
    if (n_ok < n) {
        snprintf(out->why, sizeof(out->why), "malformed certificate");
    } else {
        read_names(crts[0], out);
        gnutls_typed_vdata_st purpose = {.type = GNUTLS_DT_KEY_PURPOSE_OID,
                                         .data = (void *)GNUTLS_KP_TLS_WWW_CLIENT};
        unsigned status = 0;
        int rc = gnutls_x509_trust_list_verify_crt2(ca->tl, crts, n, &purpose, 1, 0, &status,
                                                    NULL);
        if (rc < 0)
            snprintf(out->why, sizeof(out->why), "cannot verify: %s", gnutls_strerror(rc));
        else if (status != 0)
            snprintf(out->why, sizeof(out->why), "%s", status_why(status));
        if (rc >= 0 && status != 0)
            out->fault = status & (GNUTLS_CERT_SIGNER_NOT_FOUND | GNUTLS_CERT_SIGNER_NOT_CA |
                                   GNUTLS_CERT_SIGNATURE_FAILURE)
                             ? TLS_FAULT_UNTRUSTED
                         : status & (GNUTLS_CERT_EXPIRED | GNUTLS_CERT_NOT_ACTIVATED)
                             ? TLS_FAULT_EXPIRED
                             : TLS_FAULT_OTHER;
        if (rc >= 0 && status == 0) {
            out->verdict = TLS_CLIENT_TRUSTED;
            out->fault = TLS_FAULT_NONE;
        }
    }
    for (unsigned i = 0; i < n_ok; i++)
        gnutls_x509_crt_deinit(crts[i]);
}

bool tls_client_names(const struct tls_client_cert *c, const char *name)
{
    for (size_t i = 0; i < c->n_names; i++)
        if (strcasecmp(c->names[i], name) == 0)
            return true;
    return false;
}

char *tls_priorities_with_min(const char *priorities, const char *min_version, struct err *e)
{
    if (min_version == NULL || strcmp(min_version, "1.2") == 0)
        return xstrdup(priorities);
    if (strcmp(min_version, "1.3") != 0) {
        err_set(e, ERR_BAD_REQUEST, "tls-min-version: expected 1.2 or 1.3, got \"%.20s\"",
                min_version);
        return NULL;
    }
    /* Later keywords win in a GnuTLS priority string: take the older versions out last. */
    static const char older[] = ":-VERS-TLS1.2:-VERS-TLS1.1:-VERS-TLS1.0";
    size_t n = strlen(priorities);
    char *out = xmalloc(n + sizeof(older));
    memcpy(out, priorities, n);
    memcpy(out + n, older, sizeof(older));
    return out;
}
