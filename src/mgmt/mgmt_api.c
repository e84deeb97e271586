/* Router of the management API: a table of (method, pattern, handler) where a
 * pattern is a path under /_meridian/v1/ whose {segments} capture one path segment.
 * Resources add their rows here and keep their handlers in mgmt_<resource>.c. */
#include "mgmt_api.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "authz.h"
#include "registry_ctx.h"
#include "util.h"

/* Handlers of each resource (defined in mgmt_<resource>.c). */
mgmt_handler_f mgmt_info_get;
#define MGMT_ROUTE(method, pattern, handler) mgmt_handler_f handler;
#include "mgmt_routes.def"
#undef MGMT_ROUTE

struct mgmt_route {
    const char *method;
    const char *pattern;
    mgmt_handler_f *handler;
};

static const struct mgmt_route routes[] = {
    {"GET", "info", mgmt_info_get},
#define MGMT_ROUTE(method, pattern, handler) {method, pattern, handler},
#include "mgmt_routes.def"
#undef MGMT_ROUTE
};

const char *mgmt_param(const struct mgmt_params *p, const char *name)
{
    for (size_t i = 0; i < p->n; i++) {
        if (strcmp(p->names[i], name) == 0)
            return p->values[i];
    }
    return NULL;
}

static void params_fini(struct mgmt_params *p)
{
    for (size_t i = 0; i < p->n; i++)
        free(p->values[i]);
    p->n = 0;
}

/* Matches path against pattern segment by segment; fills p on success. A final
 * "{name...}" segment captures the rest of the path (repository names hold '/'). */
static bool match(const char *pattern, const char *path, struct mgmt_params *p)
{
    static const char *const capture_names[] = {"name", "repo", "ref", "id", "location",
                                                "user", "webhook"};
    const char *a = pattern, *b = path;
    p->n = 0;
    while (*a && *b) {
        if (*a == '{') {
            const char *close = strchr(a, '}');
            AN(close);
            bool is_rest = close - a > 4 && strncmp(close - 3, "...", 3) == 0;
            size_t name_len = (size_t)(close - a - 1) - (is_rest ? 3 : 0);
            const char *end = is_rest ? b + strlen(b) : strchr(b, '/');
            if (end == NULL)
                end = b + strlen(b);
            if (end == b || p->n == 4)
                goto fail;
            const char *name = NULL;
            for (size_t i = 0; i < sizeof(capture_names) / sizeof(capture_names[0]); i++) {
                if (strlen(capture_names[i]) == name_len &&
                    strncmp(capture_names[i], a + 1, name_len) == 0)
                    name = capture_names[i];
            }
            AN(name);
            p->names[p->n] = name;
            p->values[p->n++] = xstrndup(b, (size_t)(end - b));
            a = close + 1;
            b = end;
            continue;
        }
        if (*a != *b)
            goto fail;
        a++;
        b++;
    }
    if (*a == '\0' && *b == '\0')
        return true;
fail:
    params_fini(p);
    return false;
}

/* Adds m to the NULL-terminated list (room for 7) unless it is there. */
static void add_method(const char **methods, size_t *n, const char *m)
{
    for (size_t i = 0; i < *n; i++) {
        if (strcmp(methods[i], m) == 0)
            return;
    }
    if (*n < 7)
        methods[(*n)++] = m;
}

void mgmt_api_handle(struct http_req *req)
{
    const char *path = req->path + strlen(MGMT_PREFIX);
    bool is_path_known = false;
    const char *methods[8] = {0}; /* the path's, for the Allow of a 405 */
    size_t n_methods = 0;
    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
        struct mgmt_params p = {0};
        if (!match(routes[i].pattern, path, &p))
            continue;
        is_path_known = true;
        add_method(methods, &n_methods, routes[i].method);
        if (strcmp(routes[i].method, "GET") == 0)
            add_method(methods, &n_methods, "HEAD");
        if (strcmp(routes[i].method, req->method) != 0 &&
            !(strcmp(req->method, "HEAD") == 0 && strcmp(routes[i].method, "GET") == 0)) {
            params_fini(&p);
            continue;
        }
        routes[i].handler(req, &p);
        params_fini(&p);
        return;
    }
    http_reply_allow(req, methods);
    if (is_path_known)
        mgmt_reply_error(req, ERR_METHOD_NOT_ALLOWED, "method %s not allowed here", req->method);
    else
        mgmt_reply_error(req, ERR_NOT_FOUND, "no such management resource");
}

void mgmt_reply_json(struct http_req *req, int status, json_t *v)
{
    char *s = v ? json_dumps(v, JSON_COMPACT | JSON_ENSURE_ASCII) : NULL;
    json_decref(v);
    if (s == NULL) {
        mgmt_reply_error(req, ERR_INTERNAL, "cannot encode reply");
        return;
    }
    size_t len = strlen(s);
    http_reply(req, status, "application/json", s, len);
    free(s);
}

void mgmt_reply_error(struct http_req *req, enum err_code code, const char *fmt, ...)
{
    struct err e = {.code = code};
    if (fmt) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(e.msg, sizeof(e.msg), fmt, ap);
        va_end(ap);
    }
    http_reply_mgmt_err(req, &e);
}

json_t *mgmt_body_object(struct http_req *req)
{
    if (req->body.len == 0)
        return json_object();
    json_error_t je;
    json_t *v = json_loadb(req->body.data, req->body.len, JSON_REJECT_DUPLICATES, &je);
    if (v == NULL && strstr(je.text, "u0000") != NULL) {
        /* jansson refuses \u0000 in strings (C strings would cut names and secrets). */
        mgmt_reply_error(req, ERR_BAD_REQUEST, "request body: NUL (\\u0000) is not allowed");
        return NULL;
    }
    if (v == NULL || !json_is_object(v)) {
        json_decref(v);
        mgmt_reply_error(req, ERR_BAD_REQUEST, "request body must be a JSON object");
        return NULL;
    }
    return v;
}

/* GET /_meridian/v1/info: who this node is. Any user or robot learns which region
 * answered (what a client of a geo-replicated registry needs); how the node is built
 * (version, storage) is for admins on "*", like the replication topology. */
void mgmt_info_get(struct http_req *req, const struct mgmt_params *p)
{
    (void)p;
    struct registry *reg = req->reg;
    json_t *o = json_pack("{s:s}", "region", reg->cfg->region);
    if (authz_can(req, NULL, AUTH_PERM_ADMIN, false)) {
        json_object_set_new(o, "version", json_string("0.1.0"));
        json_object_set_new(o, "storage", json_string("filesystem+sqlite"));
    }
    mgmt_reply_json(req, 200, o);
}
