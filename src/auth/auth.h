/* Access control, the pure part: roles and their permissions, repository patterns,
 * the Authorization header (Basic, Bearer), token scopes (distribution-spec
 * auth/scope.md) and the signed tokens the built-in token endpoint issues. No I/O, no
 * locks, no clocks (the caller passes the time), so everything here is unit-tested and
 * fuzzed. The request-time check that uses it is authz.c. */
#ifndef MERIDIAN_AUTH_H
#define MERIDIAN_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "err.h"

struct config;

#define AUTH_NAME_MAX 64           /* identity names: users and robots */
#define AUTH_SECRET_MAX 1024       /* passwords and robot secrets */
#define AUTH_TOKEN_MAX 8192        /* a Bearer token, encoded */
#define AUTH_TOKEN_MAX_ACCESS 16   /* access entries one token may carry */
#define AUTH_RESOURCE_MAX 255      /* a scope's resource name (distribution-spec: 255) */
#define AUTH_PEER_USER "peer"      /* the username peers send with the peer secret */
#define AUTH_ANONYMOUS "anonymous" /* the role subject standing for unauthenticated clients */

/* What a role allows on the repositories its pattern matches. */
enum auth_perm {
    AUTH_PERM_PULL = 1u << 0,   /* pull, list tags, read replication status */
    AUTH_PERM_PUSH = 1u << 1,   /* push, set publishing profiles of versions */
    AUTH_PERM_DELETE = 1u << 2, /* delete manifests, tags and blobs */
    AUTH_PERM_ADMIN = 1u << 3,  /* replications, webhooks, users, roles, audit */
};

enum auth_role {
    AUTH_ROLE_CONSUMER,  /* pull */
    AUTH_ROLE_PUBLISHER, /* consumer + push, delete, profiles */
    AUTH_ROLE_ADMIN,     /* publisher + administration */
};

/* "consumer" | "publisher" | "admin" -> role; -1 for anything else. */
int auth_role_parse(const char *s, enum auth_role *out);
const char *auth_role_name(enum auth_role r);
/* The AUTH_PERM_* bits the role grants. */
unsigned auth_role_perms(enum auth_role r);

/* Identity names: 1-64 of [a-z0-9._-], starting with a letter or digit; "peer" and
 * "anonymous" are reserved. */
bool auth_name_is_valid(const char *s, size_t s_len);
/* Repository patterns of role bindings: "*", "golden/<star>", "team/app": the
 * characters of repository names plus '*', which matches any run of characters
 * including '/'. At most 255 bytes. */
bool auth_pattern_is_valid(const char *s, size_t s_len);

/* One role binding: subject (identity name or AUTH_ANONYMOUS) holds role on pattern. */
struct auth_binding {
    const char *subject;
    enum auth_role role;
    const char *pattern;
};
/* The AUTH_PERM_* bits subject holds on repo (NULL repo: on every repository, i.e.
 * only bindings whose pattern is "*"). */
unsigned auth_policy_perms(const struct auth_binding *b, size_t n, const char *subject,
                           const char *repo);

/* Authorization header ----------------------------------------------------- */

enum auth_scheme {
    AUTH_SCHEME_NONE,    /* no header */
    AUTH_SCHEME_BASIC,   /* user and secret are set */
    AUTH_SCHEME_BEARER,  /* token points into the header value */
    AUTH_SCHEME_INVALID, /* malformed, oversized or an unknown scheme */
};

struct auth_credentials {
    enum auth_scheme scheme;
    char user[AUTH_NAME_MAX + 1];
    char secret[AUTH_SECRET_MAX + 1];
    size_t secret_len;
    const char *token;
    size_t token_len;
};

/* Parses an Authorization header value of v_len bytes (v may be NULL: no header) into
 * out and returns out->scheme. RFC 7617 Basic: base64 of "user:secret" (the user may
 * not contain ':'; over-long users or secrets are INVALID). RFC 6750 Bearer: the
 * token68 is checked for its character set and length only. Schemes are
 * case-insensitive. out->token borrows from v. Wipe out with auth_credentials_wipe. */
enum auth_scheme auth_parse_authorization(const char *v, size_t v_len,
                                          struct auth_credentials *out);
void auth_credentials_wipe(struct auth_credentials *c);

/* "Basic base64(user:secret)" as a heap string (caller frees). */
char *auth_basic_value(const char *user, const char *secret);

/* The Authorization header value replication peers send ("Basic ..." of user "peer"
 * and cfg->peer_secret), or NULL when no peer secret is configured. Computed once
 * per configuration and kept until exit. */
const char *auth_peer_authorization(const struct config *cfg);

/* Scopes and access ------------------------------------------------------- */

enum auth_resource { AUTH_RES_REPOSITORY, AUTH_RES_CATALOG };

/* One access entry: what a token lets its holder do to one resource. */
struct auth_access {
    enum auth_resource type;
    char name[AUTH_RESOURCE_MAX + 1]; /* repository name; "catalog" for the catalog */
    unsigned perms;                   /* AUTH_PERM_* (pull, push, delete) */
};

/* Parses a space-separated scope list (distribution-spec auth/scope.md grammar:
 * type[(class)]:name:action[,action]) and appends up to max - *n entries to out.
 * Actions: pull, push, delete and '*' (all three); unknown actions are ignored, as the
 * spec asks the token server to intersect, and an entry with none known is skipped, as
 * are types other than repository and registry:catalog. 0, or -1 when an entry is malformed (out
 * keeps the entries before it). Duplicates of one resource are merged. */
int auth_parse_scope(const char *s, size_t s_len, struct auth_access *out, size_t max, size_t *n);
/* Writes a scope string for a (the form of WWW-Authenticate scope="..."). */
void auth_format_scope(const struct auth_access *a, struct buf *out);

/* Tokens (JWS compact serialisation, HS256, distribution-spec auth/jwt.md claims) -- */

#define AUTH_SECRET_MARK_LEN 16
/* The mark of a stored secret hash: 16 hex chars of its SHA-256 (names the secret without
 * revealing it). */
void auth_secret_mark(const char *secret_hash, char out[AUTH_SECRET_MARK_LEN + 1]);

struct auth_token {
    char sub[AUTH_NAME_MAX + 1]; /* "" for an anonymous token */
    int64_t iat_s;
    int64_t exp_s;
    char jti[33];
    /* "sh": which secret of sub the token was issued against (auth_secret_mark), so that a
     * reset secret, or a name deleted and made again, ends the tokens issued before. ""
     * in a token without it (issued by an older release): not checked. */
    char sh[AUTH_SECRET_MARK_LEN + 1];
    struct auth_access access[AUTH_TOKEN_MAX_ACCESS];
    size_t n_access;
};

struct auth_token_key {
    uint8_t bytes[32];
    char kid[17]; /* 16 hex chars naming the key, in the JOSE header */
};

/* Derives key->kid from key->bytes. */
void auth_token_key_id(struct auth_token_key *key);

/* Appends the signed token for t (issuer iss, audience aud) to out. 0, or -1 when out
 * is too small. */
int auth_token_sign(const struct auth_token *t, const char *iss, const char *aud,
                    const struct auth_token_key *key, struct buf *out);
/* Verifies a token of tok_len bytes: the signature under key (constant time), alg
 * HS256, iss, aud, and that now_s lies in [nbf - 60 s, exp). Fills out. 0, or -1 with
 * ERR_UNAUTHORIZED and a message for the client ("token expired", ...). */
int auth_token_verify(const char *tok, size_t tok_len, const struct auth_token_key *key,
                      const char *iss, const char *aud, int64_t now_s, struct auth_token *out,
                      struct err *e);
/* The AUTH_PERM_* bits t grants on resource (type, name). */
unsigned auth_token_perms(const struct auth_token *t, enum auth_resource type, const char *name);

/* base64url without padding (RFC 4648 section 5), the JWS alphabet. Encode writes
 * a NUL-terminated string and returns its length, or -1 when out_len is too small.
 * Decode returns the number of bytes, or -1 on a bad character, a '=' or overflow. */
long auth_b64url_encode(const void *p, size_t n, char *out, size_t out_len);
long auth_b64url_decode(const char *s, size_t s_len, uint8_t *out, size_t out_len);

#endif
