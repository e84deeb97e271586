/* Access control at request time: who is asking (Basic credentials, a Bearer token
 * from the built-in token endpoint, the peer secret, or nobody) and whether the roles
 * bound to that identity allow what the request does. Runs once per request after the
 * router has found the route, repository and method, before any handler; replies 401
 * (with the Bearer challenge clients expect) or 403 DENIED itself. Also owns the
 * token-signing key, the bootstrap admin, the per-identity upload cap and the audit
 * log of writes and permission changes.
 *
 * Identities and bindings are read from an in-memory snapshot that is rebuilt when the
 * metastore's auth generation changes (polled at most once a second, and at once after
 * a change made through this node), so a check costs no storage access. */
#ifndef MERIDIAN_AUTHZ_H
#define MERIDIAN_AUTHZ_H

#include <stdbool.h>
#include <stdint.h>

#include "auth.h"
#include "config.h"
#include "http.h"
#include "metastore.h"

struct authz;

/* Sent by a region with every /v2/ fetch from a peer, valued with its own region name: the
 * region answers from what it holds (no chained fetches) and reads for the peer only
 * repositories a residency policy lets that region hold. A region certificate names the
 * region itself; with the peer secret alone this header is what names it. */
#define AUTHZ_PEER_FETCH_HEADER "Meridian-Peer-Fetch"

enum authz_kind {
    AUTHZ_OFF,       /* access control is disabled */
    AUTHZ_ANONYMOUS, /* no credentials, or an anonymous token */
    AUTHZ_USER,
    AUTHZ_ROBOT,
    AUTHZ_PEER, /* another region: the peer secret and/or a region certificate */
};

/* Opens access control for the store: decides whether it is on (config_is_auth_on),
 * loads or creates the token key, creates the bootstrap admin on a store with no
 * identities, and loads the first snapshot. NULL with e set on failure. */
struct authz *authz_open(const struct config *cfg, struct metastore *ms, struct err *e);
void authz_close(struct authz *az);
bool authz_is_enabled(const struct authz *az);

/* The check, in the headers phase of every request (registry.c). true: go on; false:
 * a reply (401, 403) has been made. Sets req->auth, which authz_finish releases. */
bool authz_check(struct http_req *req);
/* Records the request in the audit log when it is a write, a permission change or a
 * refused attempt with credentials, once: authz_record as the reply is queued (so the
 * entry exists before the client sees the answer), authz_finish when the request is
 * done (for requests that never got a reply), which also frees req->auth. */
void authz_record(struct http_req *req, int status);
void authz_finish(struct http_req *req, int status);
/* Refusals (auth.failed, login.failed, login.throttled, access.denied) are aggregated per
 * source, actor and action and minute (audit_agg.h); their counts reach the store within
 * a second, and at once by this call (before the audit log is read, at close). */
void authz_audit_flush(struct authz *az);

/* May the requester do perms on repo? Used by handlers for resources beyond the
 * request's own (the source of a cross-repository mount: token grants count too;
 * catalog filtering: roles only, is_token_checked false). */
bool authz_can(struct http_req *req, const char *repo, unsigned perms, bool is_token_checked);
/* After a listing filtered with authz_can (the catalog): true after replying 503
 * UNAVAILABLE (Retry-After) when authz_can left a repository out of a peer's listing because
 * the residency policies could not be read (a reload failed meanwhile), so that a peer is
 * never sent a partial list; false (nothing replied) otherwise. */
bool authz_reply_if_residency_unknown(struct http_req *req);
/* Mutual TLS between regions: does the request's verified region certificate name
 * region? true as well when no peer CA is configured (nothing to check). */
bool authz_peer_cert_names(struct http_req *req, const char *region);
/* Who the requester is (kind and name; name is "" for anonymous and when off). */
enum authz_kind authz_who(struct http_req *req, const char **name);

/* Per-identity cap on concurrent upload sessions: the owner a new session is recorded
 * under and the most sessions that owner may hold (the store counts and creates in one
 * step: upload_create_capped). NULL and 0 when the requester has no identity to count. */
void authz_upload_owner(struct http_req *req, const char **owner, int64_t *max_owned);

/* Sets the audit entry of this request (action such as "role.assign", and a short
 * detail that must not hold secrets); without it writes are recorded by route. */
void authz_audit_as(struct http_req *req, const char *action, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* After a change to identities or bindings through this node: rebuild the snapshot on
 * the next check instead of waiting for the poll. */
void authz_invalidate(struct authz *az);

/* The token endpoint's two steps. authz_login authenticates Basic credentials (or
 * none: anonymous); 0 with *kind and name set, -1 when the credentials are wrong
 * (the caller replies 401), or AUTHZ_LOGIN_THROTTLED after replying 429
 * TOOMANYREQUESTS with Retry-After itself (too many failed logins from this address for
 * this identity: the secret was not checked). authz_issue intersects the requested scopes with
 * what the identity may do now and appends the signed token to out; *ttl_s is its lifetime
 * and granted[0 .. *n_granted) what the token grants (the OAuth2 reply names it). */
#define AUTHZ_LOGIN_THROTTLED (-2)
int authz_login(struct http_req *req, const struct auth_credentials *cr, enum authz_kind *kind,
                char name[AUTH_NAME_MAX + 1]);
int authz_issue(struct http_req *req, enum authz_kind kind, const char *name,
                const struct auth_access *want, size_t n_want, struct buf *out, int64_t *ttl_s,
                struct auth_access granted[AUTH_TOKEN_MAX_ACCESS], size_t *n_granted);

/* Hashes a new secret for an identity (Argon2id); 0 or -1. */
int authz_hash_secret(const char *secret, char *out, size_t out_len);

#endif
