/* `meridian webhook <verb>`: regional webhooks through the management API
 * (docs/webhooks.md). The server validates definitions; this file only turns flags
 * into JSON and replies into tables. Exit status: 0 done, 1 refused or failed,
 * 2 bad usage. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "util.h"

#define PING_WAIT_MS 15000

static const char usage_text[] =
    "usage: meridian webhook <verb> [args] [--registry URL] [--output table|json]\n\n"
    "  create NAME --location REGION --uri URL --actions push,delete [--scope PATTERN]\n"
    "         [--headers NAME=VALUE,...] [--enabled true|false]\n"
    "  list\n"
    "  show NAME\n"
    "  update NAME [--location REGION] [--uri URL] [--actions push,delete] [--scope PATTERN]\n"
    "         [--headers NAME=VALUE,...] [--enabled true|false]\n"
    "  delete NAME\n"
    "  ping NAME [--no-wait]      queue a ping in the webhook's region and show its outcome\n"
    "  list-events NAME [--top N] deliveries in this region, newest first\n\n"
    "PATTERN matches repository names, '*' matching anything (also '/'): 'golden/*'.\n";

static int usage(FILE *out, int status)
{
    fputs(usage_text, out);
    return status;
}

static char *split_next(const char **p, char sep)
{
    const char *s = *p;
    const char *end = strchr(s, sep);
    size_t len = end ? (size_t)(end - s) : strlen(s);
    *p = end ? end + 1 : s + len;
    return xstrndup(s, len);
}

/* "push,delete" -> ["push","delete"] (the server judges the names). */
static json_t *actions_json(const char *text)
{
    json_t *a = json_array();
    const char *p = text;
    do {
        char *one = split_next(&p, ',');
        json_array_append_new(a, json_string(one));
        free(one);
    } while (*p);
    return a;
}

/* Does a header entry start at s ("Name=...": a token before '=')? */
static bool starts_header(const char *s)
{
    size_t n = strcspn(s, "=,");
    return n > 0 && s[n] == '=';
}

/* "A=1,B=x,y" -> {"A":"1","B":"x,y"}: a comma starts a new header only when a name and
 * '=' follow it, so values may hold commas. "" clears the headers. NULL on bad input. */
static json_t *headers_json(const char *text)
{
    json_t *o = json_object();
    const char *p = text;
    while (*p) {
        if (!starts_header(p)) {
            fprintf(stderr, "meridian: --headers expects NAME=VALUE,... near \"%s\"\n", p);
            json_decref(o);
            return NULL;
        }
        const char *eq = strchr(p, '=');
        char *name = xstrndup(p, (size_t)(eq - p));
        const char *v = eq + 1;
        const char *end = v;
        for (;;) {
            const char *comma = strchr(end, ',');
            if (comma == NULL) {
                end = v + strlen(v);
                break;
            }
            if (starts_header(comma + 1)) {
                end = comma;
                break;
            }
            end = comma + 1;
        }
        json_t *value = json_stringn(v, (size_t)(end - v));
        json_object_set_new(o, name, value ? value : json_string(""));
        free(name);
        p = *end ? end + 1 : end;
    }
    return o;
}

/* `--enabled` alone, `--enabled=false`, `--enabled false` (the parser treats --enabled
 * as a flag, so a following true/false arrives as a positional argument) or
 * `--disabled`. -1 on bad input, 0 if absent, 1 if set (*out). */
static int enabled_opt(struct cli *c, size_t n_positional, bool *out)
{
    const char *v = cli_opt(c, "enabled");
    if (cli_opt(c, "disabled") != NULL) {
        if (v != NULL) {
            fprintf(stderr, "meridian: give --enabled or --disabled, not both\n");
            return -1;
        }
        *out = false;
        return 1;
    }
    if (v == NULL)
        return 0;
    if (c->n_args == n_positional + 1 && strcmp(v, "true") == 0)
        v = c->args[--c->n_args];
    if (strcmp(v, "true") != 0 && strcmp(v, "false") != 0) {
        fprintf(stderr, "meridian: --enabled expects true or false\n");
        return -1;
    }
    *out = strcmp(v, "true") == 0;
    return 1;
}

/* The definition members given as flags; NULL (after a message) on bad usage. */
static json_t *definition_json(struct cli *c)
{
    static const char *const plain[] = {"location", "uri", "scope", NULL};
    json_t *o = json_object();
    for (size_t i = 0; plain[i]; i++) {
        const char *v = cli_opt(c, plain[i]);
        if (v != NULL)
            json_object_set_new(o, plain[i], json_string(v));
    }
    const char *actions = cli_opt(c, "actions");
    if (actions != NULL)
        json_object_set_new(o, "actions", actions_json(actions));
    const char *headers = cli_opt(c, "headers");
    if (headers != NULL) {
        json_t *h = headers_json(headers);
        if (h == NULL)
            goto fail;
        json_object_set_new(o, "customHeaders", h);
    }
    bool is_enabled;
    int rc = enabled_opt(c, 1, &is_enabled);
    if (rc < 0)
        goto fail;
    if (rc > 0)
        json_object_set_new(o, "enabled", json_boolean(is_enabled));
    if (c->n_args != 1) {
        fprintf(stderr, "meridian: webhook %s takes one NAME\n", c->verb);
        goto fail;
    }
    return o;
fail:
    json_decref(o);
    return NULL;
}

/* Table form of a webhook: actions and header names as comma lists. */
static json_t *table_row(json_t *w)
{
    json_t *row = json_deep_copy(w);
    char text[256] = "";
    size_t i;
    json_t *v;
    json_array_foreach(json_object_get(w, "actions"), i, v) {
        size_t len = strlen(text);
        snprintf(text + len, sizeof(text) - len, "%s%s", len ? "," : "", json_string_value(v));
    }
    json_object_set_new(row, "actions", json_string(text));
    text[0] = '\0';
    const char *k;
    json_object_foreach(json_object_get(w, "customHeaders"), k, v) {
        size_t len = strlen(text);
        snprintf(text + len, sizeof(text) - len, "%s%s", len ? "," : "", k);
    }
    json_object_set_new(row, "customHeaders", json_string(text));
    return row;
}

static void print_webhooks(const struct cli *c, json_t *reply, bool is_detailed)
{
    static const char *const cols[] = {"name:NAME",
                                       "location:LOCATION",
                                       "enabled:ENABLED",
                                       "actions:ACTIONS",
                                       "scope:SCOPE",
                                       "uri:URI",
                                       NULL};
    static const char *const detail_cols[] = {
        "name:NAME",   "location:LOCATION", "enabled:ENABLED",       "actions:ACTIONS",
        "scope:SCOPE", "uri:URI",           "customHeaders:HEADERS", NULL};
    if (c->is_json) {
        cli_print(c, reply, cols);
        return;
    }
    json_t *rows;
    if (json_is_array(reply)) {
        rows = json_array();
        size_t i;
        json_t *w;
        json_array_foreach(reply, i, w) {
            json_array_append_new(rows, table_row(w));
        }
    } else {
        rows = table_row(reply);
    }
    cli_print(c, rows, is_detailed ? detail_cols : cols);
    json_decref(rows);
}

static void print_events(const struct cli *c, json_t *reply)
{
    static const char *const cols[] = {"id:ID",
                                       "action:ACTION",
                                       "state:STATE",
                                       "attempts:ATTEMPTS",
                                       "statusCode:STATUS",
                                       "latencyMs:LATENCY_MS",
                                       "createdAt:CREATED",
                                       "response:RESPONSE",
                                       NULL};
    if (c->is_json) {
        cli_print(c, reply, cols);
        return;
    }
    /* A table row per delivery: the response cut to one short line. */
    json_t *rows = json_deep_copy(reply);
    json_t *one = json_is_array(rows) ? NULL : rows;
    size_t n = one ? 1 : json_array_size(rows);
    for (size_t i = 0; i < n; i++) {
        json_t *row = one ? one : json_array_get(rows, i);
        const char *resp = json_string_value(json_object_get(row, "response"));
        if (resp == NULL)
            continue;
        char cut[64];
        size_t k = 0;
        for (; resp[k] && k + 4 < sizeof(cut); k++)
            cut[k] = resp[k] == '\n' || resp[k] == '\r' || resp[k] == '\t' ? ' ' : resp[k];
        if (resp[k]) {
            memcpy(cut + k, "...", 3);
            k += 3;
        }
        cut[k] = '\0';
        json_t *s = json_stringn(cut, k);
        json_object_set_new(row, "response", s ? s : json_string("?"));
    }
    cli_print(c, rows, cols);
    json_decref(rows);
}

/* Calls the API and prints the reply with print (NULL: print nothing); 0 or 1. */
static int call(struct cli *c, const char *method, const char *path, json_t *body, long want,
                void (*print)(const struct cli *, json_t *))
{
    struct err e = {0};
    long status = 0;
    json_t *r = cli_call(c, method, path, body, &status, &e);
    json_decref(body);
    if (r == NULL || status != want)
        return cli_fail(c, r, status, &e);
    if (print != NULL)
        print(c, r);
    json_decref(r);
    return 0;
}

static void print_one(const struct cli *c, json_t *r)
{
    print_webhooks(c, r, true);
}

static void print_many(const struct cli *c, json_t *r)
{
    print_webhooks(c, r, false);
}

/* Pings, then (unless --no-wait) polls the events until the ping's first attempt is
 * recorded or PING_WAIT_MS pass, and prints that delivery. Exit 1 if it was not
 * delivered. */
static int ping(struct cli *c, const char *path_name)
{
    char path[256];
    struct err e = {0};
    long status = 0;
    snprintf(path, sizeof(path), "webhooks/%s/ping", path_name);
    json_t *r = cli_call(c, "POST", path, NULL, &status, &e);
    if (r == NULL || status != 202)
        return cli_fail(c, r, status, &e);
    const char *queued = json_string_value(json_object_get(r, "id"));
    char *id = xstrdup(queued ? queued : "");
    json_decref(r);
    if (cli_opt(c, "no-wait") != NULL) {
        if (c->is_json)
            printf("{\"id\": \"%s\"}\n", id);
        else
            printf("ping queued: %s\n", id);
        free(id);
        return 0;
    }
    snprintf(path, sizeof(path), "webhooks/%s/events?n=%d", path_name, 1000);
    int64_t deadline = util_mono_ns() + (int64_t)PING_WAIT_MS * 1000000;
    json_t *found = NULL;
    for (;;) {
        r = cli_call(c, "GET", path, NULL, &status, &e);
        if (r == NULL || status != 200) {
            free(id);
            return cli_fail(c, r, status, &e);
        }
        size_t i;
        json_t *d;
        json_array_foreach(r, i, d) {
            const char *did = json_string_value(json_object_get(d, "id"));
            if (did && strcmp(did, id) == 0)
                found = json_incref(d);
        }
        json_decref(r);
        if (found && json_integer_value(json_object_get(found, "attempts")) > 0)
            break;
        if (util_mono_ns() >= deadline)
            break;
        json_decref(found);
        found = NULL;
        util_sleep_ms(200);
    }
    free(id);
    if (found == NULL) {
        fprintf(stderr, "error: the ping delivery is no longer listed\n");
        return 1;
    }
    print_events(c, found);
    const char *state = json_string_value(json_object_get(found, "state"));
    int rc = state && strcmp(state, "delivered") == 0 ? 0 : 1;
    json_decref(found);
    return rc;
}

int cli_webhook(struct cli *c)
{
    if (c->verb == NULL)
        return usage(cli_opt(c, "help") ? stdout : stderr, cli_opt(c, "help") ? 0 : 2);
    if (cli_opt(c, "help") != NULL)
        return usage(stdout, 0);
    const char *verb = c->verb;
    if (strcmp(verb, "list") == 0) {
        if (c->n_args != 0)
            return usage(stderr, 2);
        return call(c, "GET", "webhooks", NULL, 200, print_many);
    }
    bool is_known = strcmp(verb, "create") == 0 || strcmp(verb, "show") == 0 ||
                    strcmp(verb, "update") == 0 || strcmp(verb, "delete") == 0 ||
                    strcmp(verb, "ping") == 0 || strcmp(verb, "list-events") == 0;
    if (!is_known) {
        fprintf(stderr, "meridian: unknown verb \"webhook %s\"\n", verb);
        return usage(stderr, 2);
    }
    if (c->n_args < 1) {
        fprintf(stderr, "meridian: webhook %s needs a NAME\n", verb);
        return usage(stderr, 2);
    }
    char *name = cli_escape(c->args[0], false);
    char path[256];
    snprintf(path, sizeof(path), "webhooks/%.200s", name);
    int rc;
    if (strcmp(verb, "create") == 0 || strcmp(verb, "update") == 0) {
        json_t *body = definition_json(c);
        if (body == NULL) {
            free(name);
            return 2;
        }
        if (strcmp(verb, "create") == 0) {
            json_object_set_new(body, "name", json_string(c->args[0]));
            rc = call(c, "POST", "webhooks", body, 201, print_one);
        } else {
            rc = call(c, "PATCH", path, body, 200, print_one);
        }
    } else if (c->n_args != 1) {
        fprintf(stderr, "meridian: webhook %s takes one NAME\n", verb);
        rc = 2;
    } else if (strcmp(verb, "show") == 0) {
        rc = call(c, "GET", path, NULL, 200, print_one);
    } else if (strcmp(verb, "delete") == 0) {
        rc = call(c, "DELETE", path, NULL, 204, NULL);
        if (rc == 0 && !c->is_json)
            printf("deleted webhook %s\n", c->args[0]);
    } else if (strcmp(verb, "ping") == 0) {
        rc = ping(c, name);
    } else {
        const char *top = cli_opt(c, "top");
        char *n = top ? cli_escape(top, false) : NULL;
        char q[300];
        snprintf(q, sizeof(q), "%s/events%s%.40s", path, n ? "?n=" : "", n ? n : "");
        free(n);
        rc = call(c, "GET", q, NULL, 200, print_events);
    }
    free(name);
    return rc;
}
