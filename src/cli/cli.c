/* Argument parsing, the noun table, the API call and output formatting shared by
 * every `meridian <noun> <verb>` command. */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "httpc.h"
#include "util.h"

#define CLI_REPLY_MAX (16 * 1024 * 1024)

struct cli_noun {
    const char *name;
    cli_noun_f *run;
    const char *help;
};

#define CLI_NOUN(name, fn, help) cli_noun_f fn;
#include "cli_nouns.def"
#undef CLI_NOUN

static const struct cli_noun nouns[] = {
#define CLI_NOUN(name, fn, help) {name, fn, help},
#include "cli_nouns.def"
#undef CLI_NOUN
};
#define N_NOUNS (sizeof(nouns) / sizeof(nouns[0]))

/* Flags that never take a value, whatever follows them. */
static const char *const bool_flags[] = {"replicated", "yes", "all", "enabled", "disabled",
                                         "exclude-from-latest", "no-wait", "help",
                                         "allow-deletion-of-replicated-locations",
                                         "block-deletion-before-end-of-life", "dry-run",
                                         "allow-version-reuse", "enforce", NULL};

static bool is_bool_flag(const char *name)
{
    for (size_t i = 0; bool_flags[i]; i++) {
        if (strcmp(bool_flags[i], name) == 0)
            return true;
    }
    return false;
}

const char *cli_opt(const struct cli *c, const char *name)
{
    for (size_t i = 0; i < c->n_opts; i++) {
        if (strcmp(c->opt_names[i], name) == 0)
            return c->opt_values[i];
    }
    return NULL;
}

static int parse(struct cli *c, int argc, char **argv)
{
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (strncmp(a, "--", 2) != 0 || a[2] == '\0') {
            if (c->n_args == CLI_MAX_ARGS) {
                fprintf(stderr, "meridian: too many arguments\n");
                return -1;
            }
            c->args[c->n_args++] = a;
            continue;
        }
        if (c->n_opts == CLI_MAX_OPTS) {
            fprintf(stderr, "meridian: too many options\n");
            return -1;
        }
        const char *eq = strchr(a, '=');
        char *name = eq ? xstrndup(a + 2, (size_t)(eq - a - 2)) : xstrdup(a + 2);
        const char *value;
        if (eq)
            value = eq + 1;
        else if (is_bool_flag(name))
            value = "true";
        else if (i + 1 < argc)
            value = argv[++i];
        else {
            fprintf(stderr, "meridian: option --%s needs a value\n", name);
            free(name);
            return -1;
        }
        c->opt_names[c->n_opts] = name; /* freed by cli_main when the verb returns */
        c->opt_values[c->n_opts++] = value;
    }
    return 0;
}

void cli_usage(FILE *out)
{
    for (size_t i = 0; i < N_NOUNS; i++)
        fprintf(out, "  %-16s %s\n", nouns[i].name, nouns[i].help);
}

int cli_main(int argc, char **argv)
{
    struct cli c = {0};
    const struct cli_noun *noun = NULL;
    for (size_t i = 0; i < N_NOUNS; i++) {
        if (strcmp(nouns[i].name, argv[0]) == 0)
            noun = &nouns[i];
    }
    if (noun == NULL) {
        fprintf(stderr, "meridian: unknown command \"%s\"\n", argv[0]);
        fprintf(stderr, "usage: meridian <noun> <verb> [args] [--registry URL] "
                        "[--output table|json]\n");
        cli_usage(stderr);
        return 2;
    }
    c.noun = argv[0];
    int rc = 2;
    if (parse(&c, argc - 1, argv + 1) != 0)
        goto out;
    if (c.n_args > 0) {
        c.verb = c.args[0];
        memmove(c.args, c.args + 1, (c.n_args - 1) * sizeof(c.args[0]));
        c.n_args--;
    }
    c.registry_url = cli_opt(&c, "registry");
    if (c.registry_url == NULL)
        c.registry_url = getenv("MERIDIAN_REGISTRY");
    if (c.registry_url == NULL)
        c.registry_url = "http://127.0.0.1:5000";
    const char *output = cli_opt(&c, "output");
    if (output && strcmp(output, "json") != 0 && strcmp(output, "table") != 0) {
        fprintf(stderr, "meridian: --output must be table or json\n");
        goto out;
    }
    c.is_json = output && strcmp(output, "json") == 0;
    httpc_global_init();
    rc = noun->run(&c);
out:
    for (size_t i = 0; i < c.n_opts; i++)
        free(c.opt_names[i]);
    return rc;
}

char *cli_escape(const char *s, bool keep_slash)
{
    static const char hex[] = "0123456789ABCDEF";
    char *out = xmalloc(strlen(s) * 3 + 1);
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        bool plain = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                     (*p >= '0' && *p <= '9') || *p == '-' || *p == '_' || *p == '.' ||
                     *p == '~' || *p == ':' || (keep_slash && *p == '/');
        if (plain) {
            out[n++] = (char)*p;
        } else {
            out[n++] = '%';
            out[n++] = hex[*p >> 4];
            out[n++] = hex[*p & 15];
        }
    }
    out[n] = '\0';
    return out;
}

json_t *cli_call(const struct cli *c, const char *method, const char *path, json_t *body,
                 long *status, struct err *e)
{
    char url[4096];
    snprintf(url, sizeof(url), "%s/_meridian/v1/%s", c->registry_url, path);
    char *payload = body ? json_dumps(body, JSON_COMPACT) : NULL;
    /* Credentials: --username/--password, or MERIDIAN_USERNAME/MERIDIAN_PASSWORD (the
     * environment keeps the password out of the process list). */
    const char *user = cli_opt(c, "username");
    const char *pass = cli_opt(c, "password");
    if (user == NULL)
        user = getenv("MERIDIAN_USERNAME");
    if (pass == NULL)
        pass = getenv("MERIDIAN_PASSWORD");
    char *auth_header = NULL;
    if (user != NULL && pass != NULL) {
        char *value = auth_basic_value(user, pass);
        size_t n = strlen(value) + 16;
        auth_header = xmalloc(n);
        snprintf(auth_header, n, "Authorization: %s", value);
        free(value);
    }
    const char *headers[] = {"Content-Type: application/json", "Accept: application/json",
                             auth_header, NULL};
    long timeout_ms = 120000;
    if (c->deadline_ms > 0) {
        int64_t left = c->deadline_ms - util_now_ms();
        timeout_ms = left < 100 ? 100 : left < timeout_ms ? (long)left : timeout_ms;
    }
    struct httpc_request rq = {.method = method, .url = url, .headers = headers,
                               .body = payload, .body_len = payload ? strlen(payload) : 0,
                               .timeout_ms = timeout_ms};
    struct httpc_response resp;
    httpc_response_init(&resp, CLI_REPLY_MAX);
    json_t *out = NULL;
    if (httpc_do(&rq, &resp, e) == 0) {
        *status = resp.status;
        json_error_t je;
        out = resp.body.len ? json_loadb(resp.body.data, resp.body.len, 0, &je) : json_object();
        if (out == NULL)
            err_set(e, ERR_UNAVAILABLE, "the registry at %s answered %ld with a body that is "
                                        "not JSON", c->registry_url, resp.status);
    }
    httpc_response_fini(&resp);
    free(payload);
    free(auth_header);
    return out;
}

int cli_fail(const struct cli *c, json_t *reply, long status, const struct err *e)
{
    (void)c;
    const char *code = NULL, *msg = NULL;
    if (reply && json_unpack(reply, "{s:{s:s, s:s}}", "error", "code", &code, "message",
                             &msg) == 0)
        fprintf(stderr, "error: %s (%s, HTTP %ld)\n", msg, code, status);
    else if (reply)
        fprintf(stderr, "error: HTTP %ld\n", status);
    else
        fprintf(stderr, "error: %s\n", e ? err_message(e) : "request failed");
    json_decref(reply);
    return 1;
}

static char *cell_text(json_t *v)
{
    if (v == NULL || json_is_null(v))
        return xstrdup("");
    if (json_is_string(v))
        return xstrdup(json_string_value(v));
    return json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
}

void cli_print(const struct cli *c, json_t *rows, const char *const *columns)
{
    if (c->is_json) {
        char *s = json_dumps(rows, JSON_INDENT(2) | JSON_ENCODE_ANY);
        printf("%s\n", s ? s : "null");
        free(s);
        return;
    }
    json_t *list = rows;
    if (json_is_object(rows)) {
        list = json_array();
        json_array_append(list, rows);
    }
    size_t n_cols = 0;
    while (columns[n_cols])
        n_cols++;
    size_t n_rows = json_array_size(list);
    char keys[16][64], headers[16][64];
    size_t widths[16] = {0};
    if (n_cols > 16)
        n_cols = 16;
    for (size_t j = 0; j < n_cols; j++) {
        const char *colon = strchr(columns[j], ':');
        size_t klen = colon ? (size_t)(colon - columns[j]) : strlen(columns[j]);
        snprintf(keys[j], sizeof(keys[j]), "%.*s", (int)klen, columns[j]);
        if (colon) {
            snprintf(headers[j], sizeof(headers[j]), "%s", colon + 1);
        } else {
            /* Header from the key: "bytesCopied" -> "BYTESCOPIED" reads poorly; keep
             * keys short and give headers explicitly where it matters. */
            size_t k = 0;
            for (size_t i = 0; keys[j][i] && k + 1 < sizeof(headers[j]); i++)
                headers[j][k++] = (char)(keys[j][i] >= 'a' && keys[j][i] <= 'z'
                                             ? keys[j][i] - 32 : keys[j][i]);
            headers[j][k] = '\0';
        }
        widths[j] = strlen(headers[j]);
    }
    for (size_t i = 0; i < n_rows; i++) {
        for (size_t j = 0; j < n_cols; j++) {
            char *t = cell_text(json_object_get(json_array_get(list, i), keys[j]));
            if (strlen(t) > widths[j])
                widths[j] = strlen(t);
            free(t);
        }
    }
    for (size_t j = 0; j < n_cols; j++)
        printf("%-*s%s", j + 1 < n_cols ? (int)widths[j] : 0, headers[j],
               j + 1 < n_cols ? "  " : "\n");
    for (size_t i = 0; i < n_rows; i++) {
        for (size_t j = 0; j < n_cols; j++) {
            char *t = cell_text(json_object_get(json_array_get(list, i), keys[j]));
            printf("%-*s%s", j + 1 < n_cols ? (int)widths[j] : 0, t, j + 1 < n_cols ? "  " : "\n");
            free(t);
        }
    }
    if (list != rows)
        json_decref(list);
}
