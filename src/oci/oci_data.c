/* Data endpoints (docs/front.md, "Data endpoints"): a region with a data endpoint answers
 * a blob GET, once access control and the repository's link have passed, with 307 to a
 * short-lived signed URL on its data listener, a second listen address of the same
 * process that serves blob bytes to whoever holds such a URL (no token: the signature
 * is the grant). As ACR's <registry>.<region>.data endpoints, it lets blob traffic take
 * its own address, port and firewall rules.
 *
 *   GET /v2/R/blobs/D  --authz, link-->  307 Location: <endpoint>/v2/R/blobs/D
 *                                                     ?expires=T&signature=HMAC(R\nD\nT)
 *   data listener: signature and expiry checked (403 DENIED otherwise), then the blob GET
 *   as usual (link, Range, sendfile), never redirected again.
 *
 * The key is random per process (server.c): a URL is good on the process that issued
 * it, for --data-url-ttl. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "metrics.h"
#include "oci.h"
#include "repl.h"
#include "secret.h"
#include "util.h"

/* false when (repo, digest) is too long to have been signed here (names the data listener
 * takes from a path are not checked before this). */
static bool signature_of(const struct registry *reg, const char *repo, const char *digest,
                         int64_t expires, char out[2 * SECRET_HMAC_BYTES + 1])
{
    char msg[1024];
    int n = snprintf(msg, sizeof(msg), "%s\n%s\n%" PRId64, repo, digest, expires);
    if (n < 0 || (size_t)n >= sizeof(msg))
        return false;
    uint8_t mac[SECRET_HMAC_BYTES];
    secret_hmac_sha256(reg->data_url_key, sizeof(reg->data_url_key), msg, (size_t)n, mac);
    for (size_t i = 0; i < SECRET_HMAC_BYTES; i++)
        snprintf(out + 2 * i, 3, "%02x", mac[i]);
    return true;
}

bool oci_data_redirect(struct http_req *req, const struct digest *d)
{
    const struct config *cfg = req->reg->cfg;
    if (cfg->data_endpoint == NULL || strcmp(req->method, "GET") != 0 ||
        req->handlers == &oci_data_http_handlers ||
        http_req_header(req, REPL_FETCH_HEADER) != NULL) /* peers fetch from the region */
        return false;
    int64_t expires = util_now_ms() / 1000 + cfg->data_url_ttl_s;
    char sig[2 * SECRET_HMAC_BYTES + 1];
    if (!signature_of(req->reg, req->repo, d->str, expires, sig))
        return false; /* cannot happen for a valid name: served here instead */
    size_t len = strlen(cfg->data_endpoint);
    const char *slash = len > 0 && cfg->data_endpoint[len - 1] == '/' ? "" : "/";
    http_reply_header(req, "Location", "%s%sv2/%s/blobs/%s?expires=%" PRId64 "&signature=%s",
                      cfg->data_endpoint, slash, req->repo, d->str, expires, sig);
    http_reply_header(req, "Docker-Content-Digest", "%s", d->str);
    http_reply(req, 307, NULL, NULL, 0);
    return true;
}

/* true when the URL's signature is the one this process made for (repo, digest,
 * expires) and it has not expired. */
static bool is_signed(struct http_req *req)
{
    const char *expires_s = http_req_query(req, "expires");
    const char *sig = http_req_query(req, "signature");
    uint64_t expires;
    if (expires_s == NULL || sig == NULL ||
        util_parse_u64(expires_s, strlen(expires_s), &expires) != 0 ||
        expires > (uint64_t)INT64_MAX || (int64_t)expires < util_now_ms() / 1000 ||
        strlen(sig) != 2 * SECRET_HMAC_BYTES)
        return false;
    char want[2 * SECRET_HMAC_BYTES + 1];
    if (!signature_of(req->reg, req->repo, req->ref, (int64_t)expires, want))
        return false;
    unsigned diff = 0; /* constant time: no byte-by-byte oracle */
    for (size_t i = 0; i < 2 * SECRET_HMAC_BYTES; i++)
        diff |= (unsigned)(want[i] ^ sig[i]);
    return diff == 0;
}

/* The data listener's only route: GET or HEAD /v2/<name>/blobs/<digest> with a good
 * signature. */
static void on_headers(struct http_req *req)
{
    const char *path = req->path;
    const char *m = NULL;
    for (const char *p = strstr(path, "/blobs/"); p; p = strstr(p + 1, "/blobs/"))
        m = p;
    if (strncmp(path, "/v2/", 4) != 0 || m == NULL || m < path + 4 || strchr(m + 7, '/')) {
        http_reply_error(req, ERR_ROUTE_UNKNOWN, "no such endpoint");
        return;
    }
    req->route = ROUTE_BLOB;
    req->repo = xstrndup(path + 4, (size_t)(m - path - 4));
    req->ref = xstrdup(m + 7);
    if (strcmp(req->method, "GET") != 0 && strcmp(req->method, "HEAD") != 0) {
        static const char *const get_head[] = {"GET", "HEAD", NULL};
        http_reply_allow(req, get_head);
        http_reply_error(req, ERR_METHOD_NOT_ALLOWED, "method %s not allowed here", req->method);
        return;
    }
    if (atomic_load(&req->reg->is_removed)) {
        http_reply_error(req, ERR_UNAVAILABLE, "this region was removed from the registry");
        return;
    }
    if (!is_signed(req)) {
        http_reply_error(req, ERR_DENIED, "the URL's signature is invalid or has expired");
        return;
    }
    oci_blob(req);
}

static void on_malformed(struct http_req *req, const char *why)
{
    http_reply_error(req, ERR_BAD_REQUEST, "malformed request: %s", why);
}

static void on_complete(struct http_req *req)
{
    if (!req->is_replied)
        http_reply_error(req, ERR_INTERNAL, NULL);
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

const struct http_handlers oci_data_http_handlers = {
    .on_headers = on_headers,
    .on_malformed = on_malformed,
    .on_complete = on_complete,
    .on_reply = on_reply,
    .on_finished = on_finished,
};
