/* The token endpoint (distribution-spec auth/token.md), at /_meridian/v1/token:
 *   GET  token?service=S&scope=S1&scope=S2   Authorization: Basic ... (or none)
 *   POST token  (OAuth2 form: grant_type=password&username=&password=&scope=&service=)
 *   -> 200 {"token", "access_token", "expires_in", "issued_at"}
 * The token grants the requested scopes intersected with what the identity may do now
 * (no credentials: what anonymous clients may do); wrong credentials get 401. This is
 * what `podman login`, `skopeo login` and every pull and push go through after a
 * Bearer challenge. Tokens are for this registry only: their audience is --registry-name,
 * the service its challenges name, and a request naming another service is refused. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "auth.h"
#include "authz.h"
#include "mgmt_api.h"
#include "registry_ctx.h"
#include "secret.h"
#include "util.h"

#define TOKEN_FORM_MAX 8192
#define TOKEN_SCOPES_MAX 256 /* resources one token request may name */

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Copies the form field name (application/x-www-form-urlencoded) of body into out,
 * decoded; -1 when absent, -2 when longer than out. */
static int form_field(const char *body, size_t len, const char *name, char *out, size_t out_len)
{
    size_t name_len = strlen(name);
    size_t i = 0;
    while (i < len) {
        size_t start = i;
        while (i < len && body[i] != '&')
            i++;
        if (i - start > name_len && memcmp(body + start, name, name_len) == 0 &&
            body[start + name_len] == '=') {
            size_t n = 0;
            for (size_t k = start + name_len + 1; k < i; k++) {
                char c = body[k];
                if (c == '+') {
                    c = ' ';
                } else if (c == '%' && k + 2 < i + 1 && hex_value(body[k + 1]) >= 0 &&
                           hex_value(body[k + 2]) >= 0) {
                    c = (char)(hex_value(body[k + 1]) * 16 + hex_value(body[k + 2]));
                    k += 2;
                }
                if (n + 1 >= out_len)
                    return -2;
                out[n++] = c;
            }
            out[n] = '\0';
            return 0;
        }
        i++;
    }
    return -1;
}

/* Does any form value hold a NUL, raw or as %00? C strings would cut the value there
 * ("admin%00junk" would log in as admin), so such a form is refused as a whole. */
static bool has_nul(const char *body, size_t len)
{
    if (memchr(body, '\0', len) != NULL)
        return true;
    for (size_t i = 0; i + 2 < len; i++) {
        if (body[i] == '%' && body[i + 1] == '0' && body[i + 2] == '0')
            return true;
    }
    return false;
}

static void reply_bad_credentials(struct http_req *req)
{
    http_reply_error(req, ERR_UNAUTHORIZED, "invalid username or password");
    http_reply_header(req, "WWW-Authenticate", "Basic realm=\"%s\"", req->reg->cfg->registry_name);
}

/* Does service (the request's `service`: NULL or "" when it names none) name a service
 * other than this registry? Clients send the one of the challenge, which is this
 * registry's name; a token for another service would be one this registry signs but no
 * other accepts (auth_token_verify checks the audience), so it is refused instead. */
static bool is_other_service(const struct http_req *req, const char *service)
{
    return service != NULL && service[0] != '\0' &&
           strcmp(service, req->reg->cfg->registry_name) != 0;
}

#define OTHER_SERVICE_FMT "this endpoint issues tokens for service \"%s\" only"

static void issue(struct http_req *req, const struct auth_credentials *cr, const char *scope,
                  bool is_oauth)
{
    enum authz_kind kind;
    char name[AUTH_NAME_MAX + 1];
    int rc = authz_login(req, cr, &kind, name);
    if (rc == AUTHZ_LOGIN_THROTTLED)
        return; /* answered 429 */
    if (rc != 0) {
        reply_bad_credentials(req);
        return;
    }
    /* More resources may be asked for than one token carries (a client mounting from many
     * repositories asks for them all): the token grants the first AUTH_TOKEN_MAX_ACCESS
     * of the intersection, and a request needing another is challenged for it. */
    struct auth_access *want = xcalloc(TOKEN_SCOPES_MAX, sizeof(*want));
    size_t n_want = 0;
    if (scope != NULL &&
        auth_parse_scope(scope, strlen(scope), want, TOKEN_SCOPES_MAX, &n_want) != 0) {
        http_reply_error(req, ERR_BAD_REQUEST,
                         n_want == TOKEN_SCOPES_MAX ? "too many scopes" : "malformed scope");
        free(want);
        return;
    }
    struct buf tok;
    buf_init(&tok, AUTH_TOKEN_MAX);
    int64_t ttl_s = 0;
    struct auth_access granted[AUTH_TOKEN_MAX_ACCESS];
    size_t n_granted = 0;
    int issue_rc = authz_issue(req, kind, name, want, n_want, &tok, &ttl_s, granted, &n_granted);
    free(want);
    if (issue_rc != 0) {
        buf_fini(&tok);
        http_reply_error(req, ERR_INTERNAL, "cannot issue a token");
        return;
    }
    char issued[32];
    time_t now = (time_t)util_now_s();
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(issued, sizeof(issued), "%Y-%m-%dT%H:%M:%SZ", &tm);
    json_t *o = json_pack("{s:s, s:s, s:I, s:s}", "token", tok.data, "access_token", tok.data,
                          "expires_in", (json_int_t)ttl_s, "issued_at", issued);
    if (is_oauth && scope != NULL) {
        /* RFC 6749 5.1: the scope granted, which may be less than the one asked for. */
        struct buf granted_scope;
        buf_init(&granted_scope, TOKEN_FORM_MAX);
        for (size_t i = 0; i < n_granted; i++) {
            if (i > 0)
                buf_appends(&granted_scope, " ");
            auth_format_scope(&granted[i], &granted_scope);
        }
        json_object_set_new(o, "scope",
                            json_string(granted_scope.len > 0 ? granted_scope.data : ""));
        buf_fini(&granted_scope);
    }
    secret_wipe(tok.data, tok.len);
    buf_fini(&tok);
    http_reply_header(req, "Cache-Control", "no-store");
    mgmt_reply_json(req, 200, o);
}

void mgmt_token_get(struct http_req *req, const struct mgmt_params *p)
{
    (void)p;
    const char *hv = http_req_header(req, "Authorization");
    struct auth_credentials cr;
    auth_parse_authorization(hv, hv != NULL ? strlen(hv) : 0, &cr);
    /* A Bearer token is not a credential to get another one with (no refresh tokens). */
    if (cr.scheme == AUTH_SCHEME_INVALID || cr.scheme == AUTH_SCHEME_BEARER) {
        auth_credentials_wipe(&cr);
        reply_bad_credentials(req);
        return;
    }
    /* Repeated, the values come joined, which names no service: refused too. */
    if (is_other_service(req, http_req_query_joined(req, "service"))) {
        auth_credentials_wipe(&cr);
        http_reply_error(req, ERR_BAD_REQUEST, OTHER_SERVICE_FMT, req->reg->cfg->registry_name);
        return;
    }
    issue(req, &cr, http_req_query_joined(req, "scope"), false);
    auth_credentials_wipe(&cr);
}

void mgmt_token_post(struct http_req *req, const struct mgmt_params *p)
{
    (void)p;
    const char *body = req->body.data != NULL ? req->body.data : "";
    size_t len = req->body.len;
    char grant[32];
    char *scope = xmalloc(TOKEN_FORM_MAX);
    struct auth_credentials cr;
    memset(&cr, 0, sizeof(cr));
    if (has_nul(body, len)) {
        mgmt_reply_json(req, 400,
                        json_pack("{s:s, s:s}", "error", "invalid_request", "error_description",
                                  "NUL in a form value"));
        goto out;
    }
    if (len > TOKEN_FORM_MAX || form_field(body, len, "grant_type", grant, sizeof(grant)) != 0 ||
        strcmp(grant, "password") != 0) {
        mgmt_reply_json(req, 400, json_pack("{s:s}", "error", "unsupported_grant_type"));
        goto out;
    }
    /* Before the password is checked: no login attempt is spent on it. */
    char service[256];
    int service_rc = form_field(body, len, "service", service, sizeof(service));
    if (service_rc == -2 || (service_rc == 0 && is_other_service(req, service))) {
        char msg[300];
        snprintf(msg, sizeof(msg), OTHER_SERVICE_FMT, req->reg->cfg->registry_name);
        mgmt_reply_json(req, 400, json_pack("{s:s, s:s}", "error", "invalid_request",
                                            "error_description", msg));
        goto out;
    }
    cr.scheme = AUTH_SCHEME_BASIC;
    if (form_field(body, len, "username", cr.user, sizeof(cr.user)) != 0 ||
        form_field(body, len, "password", cr.secret, sizeof(cr.secret)) != 0) {
        auth_credentials_wipe(&cr);
        reply_bad_credentials(req);
        goto out;
    }
    cr.secret_len = strlen(cr.secret);
    bool has_scope = form_field(body, len, "scope", scope, TOKEN_FORM_MAX) == 0;
    issue(req, &cr, has_scope ? scope : NULL, true);
out:
    auth_credentials_wipe(&cr);
    secret_wipe(req->body.data, req->body.len);
    free(scope);
}
