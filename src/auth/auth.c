/* Roles, patterns, the Authorization header, scopes and HS256 tokens. Pure: the
 * callers pass clocks and keys; the only outside calls are HMAC and constant-time
 * comparison (secret.c) and JSON (jansson). Every length taken from a client is
 * checked against a cap before it is used. */
#include "auth.h"

#include <ctype.h>
#include <inttypes.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base64.h"
#include "config.h"
#include "digest.h"
#include "name.h"
#include "secret.h"
#include "util.h"

/* Roles ------------------------------------------------------------------ */

static const char *const role_names[] = {"consumer", "publisher", "admin"};

int auth_role_parse(const char *s, enum auth_role *out)
{
    for (int i = 0; i < 3; i++) {
        if (s != NULL && strcmp(s, role_names[i]) == 0) {
            *out = (enum auth_role)i;
            return 0;
        }
    }
    return -1;
}

const char *auth_role_name(enum auth_role r)
{
    return (unsigned)r < 3 ? role_names[r] : "unknown";
}

unsigned auth_role_perms(enum auth_role r)
{
    switch (r) {
    case AUTH_ROLE_CONSUMER:
        return AUTH_PERM_PULL;
    case AUTH_ROLE_PUBLISHER:
        return AUTH_PERM_PULL | AUTH_PERM_PUSH | AUTH_PERM_DELETE;
    case AUTH_ROLE_ADMIN:
        return AUTH_PERM_PULL | AUTH_PERM_PUSH | AUTH_PERM_DELETE | AUTH_PERM_ADMIN;
    }
    return 0;
}

bool auth_name_is_valid(const char *s, size_t s_len)
{
    if (s == NULL || s_len == 0 || s_len > AUTH_NAME_MAX)
        return false;
    if (!islower((unsigned char)s[0]) && !isdigit((unsigned char)s[0]))
        return false;
    for (size_t i = 0; i < s_len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!islower(c) && !isdigit(c) && c != '.' && c != '_' && c != '-')
            return false;
    }
    if ((s_len == strlen(AUTH_PEER_USER) && memcmp(s, AUTH_PEER_USER, s_len) == 0) ||
        (s_len == strlen(AUTH_ANONYMOUS) && memcmp(s, AUTH_ANONYMOUS, s_len) == 0))
        return false;
    return true;
}

bool auth_pattern_is_valid(const char *s, size_t s_len)
{
    if (s == NULL || s_len == 0 || s_len > NAME_MAX_BYTES)
        return false;
    for (size_t i = 0; i < s_len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!islower(c) && !isdigit(c) && c != '.' && c != '_' && c != '-' && c != '/' && c != '*')
            return false;
    }
    return true;
}

unsigned auth_policy_perms(const struct auth_binding *b, size_t n, const char *subject,
                           const char *repo)
{
    unsigned perms = 0;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(b[i].subject, subject) != 0)
            continue;
        bool is_match = repo != NULL ? name_matches_pattern(b[i].pattern, repo)
                                     : strcmp(b[i].pattern, "*") == 0;
        if (is_match)
            perms |= auth_role_perms(b[i].role);
    }
    return perms;
}

/* Authorization header --------------------------------------------------- */

/* RFC 7235 token68 characters, which a Bearer token is made of. */
static bool is_token68(unsigned char c)
{
    return isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~' || c == '+' || c == '/' ||
           c == '=';
}

/* Does v start with scheme (case-insensitive) followed by at least one space? Sets
 * *rest after the spaces. */
static bool has_scheme(const char *v, size_t v_len, const char *scheme, size_t *rest)
{
    size_t n = strlen(scheme);
    if (v_len <= n || strncasecmp(v, scheme, n) != 0 || v[n] != ' ')
        return false;
    while (n < v_len && v[n] == ' ')
        n++;
    *rest = n;
    return true;
}

static void trim_trailing(const char *v, size_t *v_len)
{
    while (*v_len > 0 && (v[*v_len - 1] == ' ' || v[*v_len - 1] == '\t'))
        (*v_len)--;
}

static enum auth_scheme parse_basic(const char *b64, size_t b64_len, struct auth_credentials *out)
{
    /* base64 of at most user ':' secret. */
    if (b64_len == 0 || b64_len > (AUTH_NAME_MAX + 1 + AUTH_SECRET_MAX + 2) / 3 * 4)
        return AUTH_SCHEME_INVALID;
    size_t n = 0;
    char *raw = base64_decode(b64, b64_len, &n);
    if (raw == NULL)
        return AUTH_SCHEME_INVALID;
    enum auth_scheme rc = AUTH_SCHEME_INVALID;
    const char *colon = memchr(raw, ':', n);
    if (colon == NULL)
        goto out;
    size_t user_len = (size_t)(colon - raw);
    size_t secret_len = n - user_len - 1;
    if (user_len == 0 || user_len > AUTH_NAME_MAX || secret_len > AUTH_SECRET_MAX ||
        memchr(raw, '\0', n) != NULL)
        goto out;
    memcpy(out->user, raw, user_len);
    out->user[user_len] = '\0';
    memcpy(out->secret, colon + 1, secret_len);
    out->secret[secret_len] = '\0';
    out->secret_len = secret_len;
    rc = AUTH_SCHEME_BASIC;
out:
    secret_wipe(raw, n);
    free(raw);
    return rc;
}

enum auth_scheme auth_parse_authorization(const char *v, size_t v_len, struct auth_credentials *out)
{
    memset(out, 0, sizeof(*out));
    out->scheme = AUTH_SCHEME_NONE;
    if (v == NULL)
        return out->scheme;
    out->scheme = AUTH_SCHEME_INVALID;
    trim_trailing(v, &v_len);
    size_t rest = 0;
    if (has_scheme(v, v_len, "Basic", &rest)) {
        out->scheme = parse_basic(v + rest, v_len - rest, out);
        if (out->scheme != AUTH_SCHEME_BASIC)
            auth_credentials_wipe(out);
        return out->scheme;
    }
    if (has_scheme(v, v_len, "Bearer", &rest)) {
        size_t n = v_len - rest;
        if (n == 0 || n > AUTH_TOKEN_MAX)
            return out->scheme;
        for (size_t i = 0; i < n; i++) {
            if (!is_token68((unsigned char)v[rest + i]))
                return out->scheme;
        }
        out->token = v + rest;
        out->token_len = n;
        out->scheme = AUTH_SCHEME_BEARER;
    }
    return out->scheme;
}

void auth_credentials_wipe(struct auth_credentials *c)
{
    enum auth_scheme s = c->scheme;
    secret_wipe(c, sizeof(*c));
    c->scheme = s;
}

char *auth_basic_value(const char *user, const char *secret)
{
    size_t n = strlen(user) + 1 + strlen(secret);
    char *raw = xmalloc(n + 1);
    snprintf(raw, n + 1, "%s:%s", user, secret);
    char *b64 = base64_encode(raw, n);
    secret_wipe(raw, n);
    free(raw);
    size_t b64_len = strlen(b64);
    char *out = xmalloc(b64_len + 7);
    memcpy(out, "Basic ", 6);
    memcpy(out + 6, b64, b64_len + 1);
    secret_wipe(b64, b64_len);
    free(b64);
    return out;
}

const char *auth_peer_authorization(const struct config *cfg)
{
    static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    static char *cached_secret;
    static char *cached_value;
    if (cfg == NULL || cfg->peer_secret == NULL || cfg->peer_secret[0] == '\0')
        return NULL;
    AZ(pthread_mutex_lock(&mu));
    /* A changed secret gets a new value; the old one stays valid for callers that hold
     * it (secrets change rarely, so this keeps a handful of strings at most). */
    if (cached_secret == NULL || strcmp(cached_secret, cfg->peer_secret) != 0) {
        cached_secret = xstrdup(cfg->peer_secret);
        cached_value = auth_basic_value(AUTH_PEER_USER, cfg->peer_secret);
    }
    const char *v = cached_value;
    AZ(pthread_mutex_unlock(&mu));
    return v;
}

/* Scopes ---------------------------------------------------------------- */

static unsigned action_perms(const char *a, size_t n)
{
    if (n == 1 && a[0] == '*')
        return AUTH_PERM_PULL | AUTH_PERM_PUSH | AUTH_PERM_DELETE;
    if (n == 4 && memcmp(a, "pull", 4) == 0)
        return AUTH_PERM_PULL;
    if (n == 4 && memcmp(a, "push", 4) == 0)
        return AUTH_PERM_PUSH;
    if (n == 6 && memcmp(a, "delete", 6) == 0)
        return AUTH_PERM_DELETE;
    return 0;
}

/* Adds (type, name, perms) to out, merging with an entry for the same resource. */
static int access_add(struct auth_access *out, size_t max, size_t *n, enum auth_resource type,
                      const char *name, size_t name_len, unsigned perms)
{
    for (size_t i = 0; i < *n; i++) {
        if (out[i].type == type && strlen(out[i].name) == name_len &&
            memcmp(out[i].name, name, name_len) == 0) {
            out[i].perms |= perms;
            return 0;
        }
    }
    if (*n >= max)
        return -1;
    out[*n].type = type;
    memcpy(out[*n].name, name, name_len);
    out[*n].name[name_len] = '\0';
    out[*n].perms = perms;
    (*n)++;
    return 0;
}

/* One resourcescope: type[(class)]:name:actions. The name may hold one ':' (a
 * hostname's port), so type ends at the first ':' and actions start after the last. */
static int parse_one_scope(const char *s, size_t len, struct auth_access *out, size_t max,
                           size_t *n)
{
    const char *first = memchr(s, ':', len);
    const char *last = NULL;
    for (size_t i = len; i > 0; i--) {
        if (s[i - 1] == ':') {
            last = s + i - 1;
            break;
        }
    }
    if (first == NULL || last == first)
        return -1;
    size_t type_len = (size_t)(first - s);
    const char *name = first + 1;
    size_t name_len = (size_t)(last - name);
    if (type_len == 0 || name_len == 0 || name_len > AUTH_RESOURCE_MAX)
        return -1;
    /* resourcetype := [a-z0-9]+ [ '(' [a-z0-9]+ ')' ]; the class is deprecated and ignored. */
    size_t base_len = type_len;
    const char *paren = memchr(s, '(', type_len);
    if (paren != NULL) {
        base_len = (size_t)(paren - s);
        if (s[type_len - 1] != ')' || type_len - base_len < 3)
            return -1;
        for (const char *p = paren + 1; p < s + type_len - 1; p++) {
            if (!islower((unsigned char)*p) && !isdigit((unsigned char)*p))
                return -1;
        }
    }
    for (size_t i = 0; i < base_len; i++) {
        if (!islower((unsigned char)s[i]) && !isdigit((unsigned char)s[i]))
            return -1;
    }
    for (size_t i = 0; i < name_len; i++) {
        unsigned char c = (unsigned char)name[i];
        if (c <= ' ' || c >= 0x7f || c == '"' || c == '\\')
            return -1;
    }
    unsigned perms = 0;
    const char *a = last + 1;
    const char *end = s + len;
    while (a <= end) {
        const char *comma = memchr(a, ',', (size_t)(end - a));
        const char *stop = comma != NULL ? comma : end;
        for (const char *p = a; p < stop; p++) {
            if (!islower((unsigned char)*p) && *p != '*')
                return -1;
        }
        perms |= action_perms(a, (size_t)(stop - a));
        a = stop + 1;
    }
    if (perms == 0)
        return 0; /* no action this server knows: nothing to ask for or grant */
    if (base_len == 10 && memcmp(s, "repository", 10) == 0) {
        if (!name_is_valid_repo(name, name_len))
            return 0; /* a name no repository can have: nothing to grant */
        return access_add(out, max, n, AUTH_RES_REPOSITORY, name, name_len, perms);
    }
    if (base_len == 8 && memcmp(s, "registry", 8) == 0 && name_len == 7 &&
        memcmp(name, "catalog", 7) == 0) {
        /* registry:catalog:* -- listing is the only thing one does to the catalog. */
        return access_add(out, max, n, AUTH_RES_CATALOG, name, name_len, AUTH_PERM_PULL);
    }
    return 0;
}

int auth_parse_scope(const char *s, size_t s_len, struct auth_access *out, size_t max, size_t *n)
{
    size_t i = 0;
    while (i < s_len) {
        while (i < s_len && s[i] == ' ')
            i++;
        size_t start = i;
        while (i < s_len && s[i] != ' ')
            i++;
        if (i > start && parse_one_scope(s + start, i - start, out, max, n) != 0)
            return -1;
    }
    return 0;
}

void auth_format_scope(const struct auth_access *a, struct buf *out)
{
    if (a->type == AUTH_RES_CATALOG) {
        buf_appends(out, "registry:catalog:*");
        return;
    }
    buf_printf(out, "repository:%s:", a->name);
    const char *sep = "";
    if (a->perms & AUTH_PERM_PULL) {
        buf_printf(out, "%spull", sep);
        sep = ",";
    }
    if (a->perms & AUTH_PERM_PUSH) {
        buf_printf(out, "%spush", sep);
        sep = ",";
    }
    if (a->perms & AUTH_PERM_DELETE)
        buf_printf(out, "%sdelete", sep);
}

/* base64url ------------------------------------------------------------- */

static const char b64url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

long auth_b64url_encode(const void *p, size_t n, char *out, size_t out_len)
{
    const uint8_t *in = p;
    size_t need = n / 3 * 4 + (n % 3 ? n % 3 + 1 : 0);
    if (need + 1 > out_len)
        return -1;
    size_t j = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16;
        if (i + 1 < n)
            v |= (uint32_t)in[i + 1] << 8;
        if (i + 2 < n)
            v |= in[i + 2];
        out[j++] = b64url[(v >> 18) & 63];
        out[j++] = b64url[(v >> 12) & 63];
        if (i + 1 < n)
            out[j++] = b64url[(v >> 6) & 63];
        if (i + 2 < n)
            out[j++] = b64url[v & 63];
    }
    out[j] = '\0';
    return (long)j;
}

static int b64url_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '-')
        return 62;
    if (c == '_')
        return 63;
    return -1;
}

long auth_b64url_decode(const char *s, size_t s_len, uint8_t *out, size_t out_len)
{
    if (s_len % 4 == 1)
        return -1;
    size_t need = s_len / 4 * 3 + (s_len % 4 ? s_len % 4 - 1 : 0);
    if (need > out_len)
        return -1;
    size_t j = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < s_len; i++) {
        int v = b64url_value((unsigned char)s[i]);
        if (v < 0)
            return -1;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[j++] = (uint8_t)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    /* Leftover bits must be zero, so every token has exactly one encoding. */
    if (acc != 0)
        return -1;
    return (long)j;
}

/* Tokens ---------------------------------------------------------------- */

void auth_token_key_id(struct auth_token_key *key)
{
    uint8_t mac[SECRET_HMAC_BYTES];
    secret_hmac_sha256(key->bytes, sizeof(key->bytes), "meridian key id", 15, mac);
    for (int i = 0; i < 8; i++)
        snprintf(key->kid + 2 * i, 3, "%02x", mac[i]);
}

static void append_b64url(struct buf *b, const void *p, size_t n)
{
    size_t cap = n / 3 * 4 + 4;
    char *tmp = xmalloc(cap + 1);
    long len = auth_b64url_encode(p, n, tmp, cap + 1);
    ASSERT(len >= 0);
    buf_append(b, tmp, (size_t)len);
    free(tmp);
}

void auth_secret_mark(const char *secret_hash, char out[AUTH_SECRET_MARK_LEN + 1])
{
    struct digest d;
    digest_of_buffer(DIGEST_SHA256, secret_hash, strlen(secret_hash), &d);
    memcpy(out, d.str + strlen("sha256:"), AUTH_SECRET_MARK_LEN);
    out[AUTH_SECRET_MARK_LEN] = '\0';
}

int auth_token_sign(const struct auth_token *t, const char *iss, const char *aud,
                    const struct auth_token_key *key, struct buf *out)
{
    struct buf part;
    buf_init(&part, AUTH_TOKEN_MAX);
    size_t start = out->len;
    buf_printf(&part, "{\"alg\":\"HS256\",\"typ\":\"JWT\",\"kid\":\"%s\"}", key->kid);
    append_b64url(out, part.data, part.len);
    buf_append(out, ".", 1);

    buf_reset(&part);
    buf_appends(&part, "{\"iss\":");
    buf_append_json_string(&part, iss);
    buf_appends(&part, ",\"sub\":");
    buf_append_json_string(&part, t->sub);
    buf_appends(&part, ",\"aud\":");
    buf_append_json_string(&part, aud);
    buf_printf(&part,
               ",\"exp\":%" PRId64 ",\"nbf\":%" PRId64 ",\"iat\":%" PRId64 ",\"jti\":", t->exp_s,
               t->iat_s, t->iat_s);
    buf_append_json_string(&part, t->jti);
    if (t->sh[0] != '\0') {
        buf_appends(&part, ",\"sh\":");
        buf_append_json_string(&part, t->sh);
    }
    buf_appends(&part, ",\"access\":[");
    for (size_t i = 0; i < t->n_access; i++) {
        const struct auth_access *a = &t->access[i];
        buf_appends(&part, i ? ",{\"type\":" : "{\"type\":");
        buf_append_json_string(&part, a->type == AUTH_RES_CATALOG ? "registry" : "repository");
        buf_appends(&part, ",\"name\":");
        buf_append_json_string(&part, a->name);
        buf_appends(&part, ",\"actions\":[");
        const char *sep = "";
        if (a->type == AUTH_RES_CATALOG && (a->perms & AUTH_PERM_PULL)) {
            buf_appends(&part, "\"*\"");
        } else {
            static const struct {
                unsigned perm;
                const char *name;
            } acts[] = {
                {AUTH_PERM_PULL, "pull"}, {AUTH_PERM_PUSH, "push"}, {AUTH_PERM_DELETE, "delete"}};
            for (size_t k = 0; k < 3; k++) {
                if (a->perms & acts[k].perm) {
                    buf_printf(&part, "%s\"%s\"", sep, acts[k].name);
                    sep = ",";
                }
            }
        }
        buf_appends(&part, "]}");
    }
    buf_appends(&part, "]}");
    int rc = -1;
    if (part.is_too_big)
        goto out;
    append_b64url(out, part.data, part.len);

    uint8_t mac[SECRET_HMAC_BYTES];
    secret_hmac_sha256(key->bytes, sizeof(key->bytes), out->data + start, out->len - start, mac);
    buf_append(out, ".", 1);
    append_b64url(out, mac, sizeof(mac));
    rc = out->is_too_big ? -1 : 0;
out:
    buf_fini(&part);
    return rc;
}

static int get_int(json_t *claims, const char *k, int64_t *out, bool is_required)
{
    json_t *v = json_object_get(claims, k);
    if (v == NULL)
        return is_required ? -1 : 0;
    if (!json_is_integer(v))
        return -1;
    *out = json_integer_value(v);
    return 0;
}

static int parse_access(json_t *list, struct auth_token *out)
{
    if (list == NULL || json_is_null(list))
        return 0;
    if (!json_is_array(list) || json_array_size(list) > AUTH_TOKEN_MAX_ACCESS)
        return -1;
    size_t i;
    json_t *a;
    json_array_foreach(list, i, a)
    {
        const char *type = json_string_value(json_object_get(a, "type"));
        const char *name = json_string_value(json_object_get(a, "name"));
        json_t *acts = json_object_get(a, "actions");
        if (type == NULL || name == NULL || !json_is_array(acts) || strlen(name) == 0 ||
            strlen(name) > AUTH_RESOURCE_MAX)
            return -1;
        unsigned perms = 0;
        size_t k;
        json_t *act;
        json_array_foreach(acts, k, act)
        {
            const char *s = json_string_value(act);
            if (s == NULL)
                return -1;
            perms |= action_perms(s, strlen(s));
        }
        enum auth_resource res;
        if (strcmp(type, "repository") == 0 && name_is_valid_repo(name, strlen(name))) {
            res = AUTH_RES_REPOSITORY;
        } else if (strcmp(type, "registry") == 0 && strcmp(name, "catalog") == 0) {
            res = AUTH_RES_CATALOG;
            perms = perms != 0 ? AUTH_PERM_PULL : 0;
        } else {
            continue; /* a resource this registry does not have */
        }
        if (access_add(out->access, AUTH_TOKEN_MAX_ACCESS, &out->n_access, res, name, strlen(name),
                       perms) != 0)
            return -1;
    }
    return 0;
}

int auth_token_verify(const char *tok, size_t tok_len, const struct auth_token_key *key,
                      const char *iss, const char *aud, int64_t now_s, struct auth_token *out,
                      struct err *e)
{
    memset(out, 0, sizeof(*out));
    if (tok_len == 0 || tok_len > AUTH_TOKEN_MAX)
        return err_set(e, ERR_UNAUTHORIZED, "malformed token");
    const char *dot1 = memchr(tok, '.', tok_len);
    const char *dot2 = dot1 ? memchr(dot1 + 1, '.', tok_len - (size_t)(dot1 + 1 - tok)) : NULL;
    if (dot1 == NULL || dot2 == NULL)
        return err_set(e, ERR_UNAUTHORIZED, "malformed token");
    const char *sig = dot2 + 1;
    size_t sig_len = tok_len - (size_t)(sig - tok);

    /* The signature first: nothing of an unsigned token is parsed. */
    uint8_t want[SECRET_HMAC_BYTES];
    uint8_t got[SECRET_HMAC_BYTES + 3];
    secret_hmac_sha256(key->bytes, sizeof(key->bytes), tok, (size_t)(dot2 - tok), want);
    long got_len = auth_b64url_decode(sig, sig_len, got, sizeof(got));
    if (got_len < 0 || !secret_equal(got, (size_t)got_len, want, sizeof(want)))
        return err_set(e, ERR_UNAUTHORIZED, "invalid token signature");

    uint8_t buf[AUTH_TOKEN_MAX];
    long n = auth_b64url_decode(tok, (size_t)(dot1 - tok), buf, sizeof(buf));
    json_error_t je;
    json_t *hdr =
        n > 0 ? json_loadb((const char *)buf, (size_t)n, JSON_REJECT_DUPLICATES, &je) : NULL;
    const char *alg = json_string_value(json_object_get(hdr, "alg"));
    bool is_hs256 = alg != NULL && strcmp(alg, "HS256") == 0;
    json_decref(hdr);
    if (!is_hs256)
        return err_set(e, ERR_UNAUTHORIZED, "unsupported token algorithm");

    n = auth_b64url_decode(dot1 + 1, (size_t)(dot2 - dot1 - 1), buf, sizeof(buf));
    json_t *claims =
        n > 0 ? json_loadb((const char *)buf, (size_t)n, JSON_REJECT_DUPLICATES, &je) : NULL;
    int rc = -1;
    if (!json_is_object(claims)) {
        err_set(e, ERR_UNAUTHORIZED, "malformed token claims");
        goto out;
    }
    const char *c_iss = json_string_value(json_object_get(claims, "iss"));
    const char *c_aud = json_string_value(json_object_get(claims, "aud"));
    const char *c_sub = json_string_value(json_object_get(claims, "sub"));
    const char *c_jti = json_string_value(json_object_get(claims, "jti"));
    json_t *c_sh = json_object_get(claims, "sh");
    int64_t nbf = 0;
    if (c_iss == NULL || strcmp(c_iss, iss) != 0 || c_aud == NULL || strcmp(c_aud, aud) != 0) {
        err_set(e, ERR_UNAUTHORIZED, "token is for another service");
        goto out;
    }
    if (c_sub == NULL || strlen(c_sub) > AUTH_NAME_MAX ||
        get_int(claims, "exp", &out->exp_s, true) != 0 ||
        get_int(claims, "iat", &out->iat_s, false) != 0 ||
        get_int(claims, "nbf", &nbf, false) != 0 ||
        parse_access(json_object_get(claims, "access"), out) != 0 ||
        (c_sh != NULL &&
         (!json_is_string(c_sh) || strlen(json_string_value(c_sh)) != AUTH_SECRET_MARK_LEN))) {
        err_set(e, ERR_UNAUTHORIZED, "malformed token claims");
        goto out;
    }
    /* A minute of leeway for clocks of other nodes that share the key. */
    if (now_s >= out->exp_s) {
        err_set(e, ERR_UNAUTHORIZED, "token expired");
        goto out;
    }
    if (now_s < nbf - 60) {
        err_set(e, ERR_UNAUTHORIZED, "token not valid yet");
        goto out;
    }
    snprintf(out->sub, sizeof(out->sub), "%s", c_sub);
    snprintf(out->jti, sizeof(out->jti), "%s", c_jti != NULL ? c_jti : "");
    snprintf(out->sh, sizeof(out->sh), "%s", c_sh != NULL ? json_string_value(c_sh) : "");
    rc = 0;
out:
    json_decref(claims);
    if (rc != 0)
        memset(out, 0, sizeof(*out));
    return rc;
}

unsigned auth_token_perms(const struct auth_token *t, enum auth_resource type, const char *name)
{
    for (size_t i = 0; i < t->n_access; i++) {
        if (t->access[i].type == type && strcmp(t->access[i].name, name) == 0)
            return t->access[i].perms;
    }
    return 0;
}
