/* Webhook definitions: one validation path for create and update (an update is
 * merged into the stored definition and the result validated whole), so a stored
 * definition is always a valid one. Payloads and the retry schedule are computed
 * here from values the caller passes in; nothing here reads a clock or a socket. */
#include "webhook_def.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "name.h"
#include "url.h"
#include "util.h"

static const char *const members[] = {"name",  "location", "uri",           "actions",
                                      "scope", "enabled",  "customHeaders", NULL};

/* Headers a receiver must get from us, not from the definition. */
static const char *const reserved_headers[] = {
    "host", "content-length", "content-type", "transfer-encoding", "connection", "expect", NULL};

static const struct {
    const char *name;
    unsigned bit;
} actions[] = {{"push", WEBHOOK_ACTION_PUSH},
               {"delete", WEBHOOK_ACTION_DELETE},
               {"version.conflict", WEBHOOK_ACTION_VERSION_CONFLICT}};
#define N_ACTIONS (sizeof(actions) / sizeof(actions[0]))

static bool is_alnum(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

bool webhook_def_is_valid_name(const char *name)
{
    size_t n = 0;
    if (name == NULL)
        return false;
    for (; name[n]; n++) {
        if (!is_alnum(name[n]))
            return false;
    }
    return n >= WEBHOOK_NAME_MIN && n <= WEBHOOK_NAME_MAX;
}

/* The grammar of region names (`serve --region`): 1-63 of [a-z0-9-], no leading '-'. */
static bool is_valid_location(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > WEBHOOK_LOCATION_MAX || s[0] == '-')
        return false;
    for (size_t i = 0; i < n; i++) {
        bool ok = (s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-';
        if (!ok)
            return false;
    }
    return true;
}

/* http(s)://host[:port][/path][?query]: printable ASCII without spaces, and a host. */
static bool is_valid_uri(const char *s)
{
    size_t n = strlen(s);
    size_t skip;
    if (n > WEBHOOK_URI_MAX)
        return false;
    if (strncasecmp(s, "http://", 7) == 0)
        skip = 7;
    else if (strncasecmp(s, "https://", 8) == 0)
        skip = 8;
    else
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= 0x20 || c >= 0x7f)
            return false;
    }
    size_t host_len = strcspn(s + skip, "/?#");
    return host_len > 0 && s[skip] != ':';
}

/* Repository names are [a-z0-9._/-]; a scope is such a name with '*' wildcards. */
static bool is_valid_scope(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > WEBHOOK_SCOPE_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
                  c == '-' || c == '/' || c == '*';
        if (!ok)
            return false;
    }
    return true;
}

/* RFC 9110 token characters. */
static bool is_token(const char *s)
{
    static const char extra[] = "!#$%&'*+-.^_`|~";
    size_t n = strlen(s);
    if (n == 0 || n > WEBHOOK_HEADER_NAME_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (!is_alnum(s[i]) && strchr(extra, s[i]) == NULL)
            return false;
    }
    return true;
}

static bool is_valid_header_value(const char *s)
{
    size_t n = strlen(s);
    if (n > WEBHOOK_HEADER_VALUE_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return false;
    }
    return true;
}

bool webhook_def_is_delivery_header(const char *name)
{
    /* attempt() (webhook.c) sends these itself: a second copy could spoof the event */
    static const char *const own[] = {"user-agent", "x-meridian-event", "x-meridian-delivery",
                                      "x-meridian-webhook", NULL};
    for (size_t i = 0; own[i]; i++) {
        if (strcasecmp(own[i], name) == 0)
            return true;
    }
    return false;
}

bool webhook_def_is_management_target(const char *uri)
{
    /* The path after scheme://host[:port]; query and fragment aside. */
    const char *rest = strstr(uri, "://");
    if (rest == NULL)
        return false;
    rest += 3;
    const char *path = rest + strcspn(rest, "/?#");
    return strncmp(path, "/_meridian/", 11) == 0 || strcmp(path, "/_meridian") == 0;
}

int webhook_def_check_new(const struct webhook_def *d, struct err *e)
{
    if (webhook_def_is_management_target(d->uri))
        return err_set(e, ERR_BAD_REQUEST, "uri may not name a management endpoint"
                                           " (/_meridian/...): a registry's webhooks do not"
                                           " drive its own or another region's API");
    for (size_t i = 0; i < d->n_headers; i++) {
        if (webhook_def_is_delivery_header(d->headers[i].name))
            return err_set(e, ERR_BAD_REQUEST, "customHeaders: %s is set by the registry",
                           d->headers[i].name);
    }
    return 0;
}

static bool is_reserved_header(const char *name)
{
    for (size_t i = 0; reserved_headers[i]; i++) {
        if (strcasecmp(reserved_headers[i], name) == 0)
            return true;
    }
    return false;
}

void webhook_def_fini(struct webhook_def *d)
{
    if (d == NULL)
        return;
    FREE_AND_NULL(d->name);
    FREE_AND_NULL(d->location);
    FREE_AND_NULL(d->uri);
    FREE_AND_NULL(d->scope);
    for (size_t i = 0; i < d->n_headers; i++) {
        FREE_AND_NULL(d->headers[i].name);
        FREE_AND_NULL(d->headers[i].value);
    }
    d->n_headers = 0;
}

/* The string member key of obj, or NULL with e set (required or of the wrong type). */
static const char *get_string(json_t *obj, const char *key, bool is_required, struct err *e)
{
    json_t *v = json_object_get(obj, key);
    if (v == NULL) {
        if (is_required)
            err_set(e, ERR_BAD_REQUEST, "%s is required", key);
        return NULL;
    }
    if (!json_is_string(v)) {
        err_set(e, ERR_BAD_REQUEST, "%s must be a string", key);
        return NULL;
    }
    return json_string_value(v);
}

static int parse_actions(json_t *v, unsigned *out, struct err *e)
{
    if (v == NULL)
        return err_set(e, ERR_BAD_REQUEST, "actions is required");
    if (!json_is_array(v) || json_array_size(v) == 0)
        return err_set(e, ERR_BAD_REQUEST,
                       "actions must be a non-empty array of "
                       "\"push\" and \"delete\"");
    unsigned bits = 0;
    size_t i;
    json_t *a;
    json_array_foreach(v, i, a) {
        const char *s = json_string_value(a);
        unsigned bit = 0;
        for (size_t k = 0; s && k < N_ACTIONS; k++) {
            if (strcmp(actions[k].name, s) == 0)
                bit = actions[k].bit;
        }
        if (bit == 0)
            return err_set(e, ERR_BAD_REQUEST,
                           "actions: unknown action %s%.40s%s (expected "
                           "push, delete or version.conflict)",
                           s ? "\"" : "", s ? s : "(not a string)", s ? "\"" : "");
        bits |= bit;
    }
    *out = bits;
    return 0;
}

static int parse_headers(json_t *v, struct webhook_def *d, struct err *e)
{
    if (v == NULL || json_is_null(v))
        return 0;
    if (!json_is_object(v))
        return err_set(e, ERR_BAD_REQUEST, "customHeaders must be an object of strings");
    if (json_object_size(v) > WEBHOOK_HEADERS_MAX)
        return err_set(e, ERR_BAD_REQUEST, "customHeaders: at most %d headers",
                       WEBHOOK_HEADERS_MAX);
    const char *k;
    json_t *hv;
    json_object_foreach(v, k, hv) {
        if (!is_token(k))
            return err_set(e, ERR_BAD_REQUEST, "customHeaders: invalid header name \"%.60s\"", k);
        if (is_reserved_header(k))
            return err_set(e, ERR_BAD_REQUEST, "customHeaders: %s is set by the registry", k);
        if (!json_is_string(hv) || !is_valid_header_value(json_string_value(hv)))
            return err_set(e, ERR_BAD_REQUEST,
                           "customHeaders: the value of %s must be a "
                           "string of at most %d printable characters",
                           k, WEBHOOK_HEADER_VALUE_MAX);
        d->headers[d->n_headers].name = xstrdup(k);
        d->headers[d->n_headers].value = xstrdup(json_string_value(hv));
        d->n_headers++;
    }
    return 0;
}

int webhook_def_parse(json_t *obj, struct webhook_def *out, struct err *e)
{
    memset(out, 0, sizeof(*out));
    if (!json_is_object(obj))
        return err_set(e, ERR_BAD_REQUEST, "a webhook must be a JSON object");
    const char *key;
    json_t *v;
    json_object_foreach(obj, key, v) {
        bool is_known = false;
        for (size_t i = 0; members[i]; i++)
            is_known |= strcmp(members[i], key) == 0;
        /* Named only when short: a cut could split a UTF-8 character. */
        if (!is_known && strlen(key) > 60)
            return err_set(e, ERR_BAD_REQUEST, "unknown member");
        if (!is_known)
            return err_set(e, ERR_BAD_REQUEST, "unknown member \"%s\"", key);
    }
    const char *name = get_string(obj, "name", true, e);
    if (name == NULL)
        return -1;
    if (!webhook_def_is_valid_name(name))
        return err_set(e, ERR_BAD_REQUEST, "name must be %d to %d letters or digits",
                       WEBHOOK_NAME_MIN, WEBHOOK_NAME_MAX);
    const char *location = get_string(obj, "location", true, e);
    if (location == NULL)
        return -1;
    if (!is_valid_location(location))
        return err_set(e, ERR_BAD_REQUEST,
                       "location must be a region name (1 to %d of a-z, "
                       "0-9 and '-')",
                       WEBHOOK_LOCATION_MAX);
    const char *uri = get_string(obj, "uri", true, e);
    if (uri == NULL)
        return -1;
    if (!is_valid_uri(uri))
        return err_set(e, ERR_BAD_REQUEST,
                       "uri must be an http:// or https:// URL with a "
                       "host, at most %d characters, without spaces",
                       WEBHOOK_URI_MAX);
    unsigned bits = 0;
    if (parse_actions(json_object_get(obj, "actions"), &bits, e) != 0)
        return -1;
    struct err sub = {0};
    const char *scope = get_string(obj, "scope", false, &sub);
    if (scope == NULL && sub.code != ERR_NONE)
        return err_set(e, sub.code, "%s", sub.msg);
    if (scope == NULL)
        scope = "*";
    if (!is_valid_scope(scope))
        return err_set(e, ERR_BAD_REQUEST,
                       "scope must be a repository pattern of at most %d "
                       "characters: [a-z0-9._/-] and '*' (\"*\" for every repository)",
                       WEBHOOK_SCOPE_MAX);
    json_t *enabled = json_object_get(obj, "enabled");
    if (enabled != NULL && !json_is_boolean(enabled))
        return err_set(e, ERR_BAD_REQUEST, "enabled must be true or false");

    struct webhook_def d = {0};
    if (parse_headers(json_object_get(obj, "customHeaders"), &d, e) != 0) {
        webhook_def_fini(&d);
        return -1;
    }
    d.name = xstrdup(name);
    d.location = xstrdup(location);
    d.uri = xstrdup(uri);
    d.actions = bits;
    d.scope = xstrdup(scope);
    d.is_enabled = enabled == NULL || json_is_true(enabled);
    *out = d;
    return 0;
}

json_t *webhook_def_to_json(const struct webhook_def *d, bool is_redacted)
{
    json_t *acts = json_array();
    for (size_t k = 0; k < N_ACTIONS; k++) {
        if (d->actions & actions[k].bit)
            json_array_append_new(acts, json_string(actions[k].name));
    }
    json_t *headers = json_object();
    for (size_t i = 0; i < d->n_headers; i++)
        json_object_set_new(headers, d->headers[i].name,
                            json_string(is_redacted ? "***" : d->headers[i].value));
    json_t *o = json_object();
    json_object_set_new(o, "name", json_string(d->name));
    json_object_set_new(o, "location", json_string(d->location));
    if (is_redacted) {
        char *shown = url_redact(d->uri); /* userinfo and query values: secrets, often */
        json_object_set_new(o, "uri", json_string(shown));
        free(shown);
    } else {
        json_object_set_new(o, "uri", json_string(d->uri));
    }
    json_object_set_new(o, "actions", acts);
    json_object_set_new(o, "scope", json_string(d->scope));
    json_object_set_new(o, "enabled", json_boolean(d->is_enabled));
    json_object_set_new(o, "customHeaders", headers);
    return o;
}

int webhook_def_patch(struct webhook_def *d, json_t *patch, struct err *e)
{
    if (!json_is_object(patch))
        return err_set(e, ERR_BAD_REQUEST, "an update must be a JSON object");
    json_t *name = json_object_get(patch, "name");
    if (name != NULL && !(json_is_string(name) && strcmp(json_string_value(name), d->name) == 0))
        return err_set(e, ERR_BAD_REQUEST, "name cannot be changed");
    json_t *merged = webhook_def_to_json(d, false);
    const char *key;
    json_t *v;
    json_object_foreach(patch, key, v) {
        if (strcmp(key, "customHeaders") == 0 && json_is_null(v))
            json_object_set_new(merged, key, json_object());
        else
            json_object_set(merged, key, v);
    }
    struct webhook_def next;
    int rc = webhook_def_parse(merged, &next, e);
    json_decref(merged);
    if (rc != 0)
        return -1;
    webhook_def_fini(d);
    *d = next;
    return 0;
}

bool webhook_def_matches(const struct webhook_def *d, const char *region, const char *action,
                         const char *repo)
{
    if (!d->is_enabled || region == NULL || action == NULL || strcmp(d->location, region) != 0)
        return false;
    unsigned bit = 0;
    for (size_t k = 0; k < N_ACTIONS; k++) {
        if (strcmp(actions[k].name, action) == 0)
            bit = actions[k].bit;
    }
    return (d->actions & bit) != 0 && name_matches_pattern(d->scope, repo);
}

void webhook_def_format_time(int64_t ms, char out[32])
{
    time_t s = (time_t)(ms / 1000);
    struct tm tm;
    char date[24];
    gmtime_r(&s, &tm);
    strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, 32, "%.19s.%03dZ", date, (int)(ms % 1000));
}

void webhook_def_format_uuid(const char hex32[33], char out[37])
{
    /* RFC 9562 version 4: the version nibble is 4 and the variant bits 10, which strict
     * receivers (a JSON Schema "uuid", isUUID(4)) check. */
    static const char hex[] = "0123456789abcdef";
    char v[33];
    memcpy(v, hex32, sizeof(v));
    const char *pos = strchr(hex, v[16]);
    v[12] = '4';
    v[16] = hex[((pos ? pos - hex : 0) & 0x3) | 0x8];
    snprintf(out, 37, "%.8s-%.4s-%.4s-%.4s-%.12s", v, v + 8, v + 12, v + 16, v + 20);
}

/* Sets key to s when s is known and valid UTF-8 (a Host header may be neither). */
static void set_string(json_t *o, const char *key, const char *s)
{
    if (s == NULL)
        return;
    json_t *v = json_string(s);
    if (v != NULL)
        json_object_set_new(o, key, v);
}

char *webhook_def_payload(const char *id, int64_t now_ms, const char *region,
                          const struct webhook_effect *ev)
{
    char ts[32];
    webhook_def_format_time(now_ms, ts);
    json_t *o = json_object();
    set_string(o, "id", id);
    set_string(o, "timestamp", ts);
    set_string(o, "action", ev->action);
    set_string(o, "region", region);
    if (ev->repo != NULL) {
        /* distribution notifications: size and length both carry the size ("length
         * ... is being deprecated for the size field"); receivers read either. */
        json_t *t = json_object();
        set_string(t, "mediaType", ev->media_type);
        if (ev->size >= 0)
            json_object_set_new(t, "size", json_integer(ev->size));
        set_string(t, "digest", ev->digest);
        if (ev->size >= 0)
            json_object_set_new(t, "length", json_integer(ev->size));
        set_string(t, "repository", ev->repo);
        set_string(t, "tag", ev->tag);
        json_object_set_new(o, "target", t);
    }
    if (ev->request_id != NULL || ev->host != NULL || ev->method != NULL) {
        json_t *r = json_object();
        set_string(r, "id", ev->request_id);
        set_string(r, "host", ev->host);
        set_string(r, "method", ev->method);
        json_object_set_new(o, "request", r);
    }
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    AN(s);
    return s;
}

int64_t webhook_def_backoff_ms(unsigned attempt, int64_t base_ms, int64_t cap_ms, uint32_t rnd)
{
    if (cap_ms < 1)
        cap_ms = 1;
    if (base_ms < 1)
        base_ms = 1;
    int64_t d = base_ms < cap_ms ? base_ms : cap_ms;
    for (unsigned i = 1; i < attempt && d < cap_ms; i++)
        d = d > cap_ms / 2 ? cap_ms : d * 2;
    int64_t half = d / 2;
    int64_t delay = d - half + (int64_t)(rnd % (uint64_t)(half + 1));
    return delay < 1 ? 1 : delay;
}

char *webhook_def_excerpt(const char *p, size_t n, size_t max)
{
    static const char more[] = "...";
    char *out = xmalloc(max + sizeof(more));
    size_t o = 0;
    size_t i = 0;
    const unsigned char *u = (const unsigned char *)p;
    while (i < n) {
        size_t len = util_utf8_len(u + i, n - i);
        bool is_ok = len > 1 ||
                     (len == 1 && (u[i] >= 0x20 || u[i] == '\t' || u[i] == '\n' || u[i] == '\r') &&
                      u[i] != 0x7f);
        size_t out_len = is_ok ? len : 1;
        if (o + out_len > max)
            break;
        if (is_ok)
            memcpy(out + o, u + i, len);
        else
            out[o] = '?';
        o += out_len;
        i += is_ok ? len : 1;
    }
    if (i < n) {
        memcpy(out + o, more, sizeof(more) - 1);
        o += sizeof(more) - 1;
    }
    out[o] = '\0';
    return out;
}
