/* `meridian policy residency set NAME --repositories PATTERN --allowed-regions a,b
 * [--denied-regions c] | list | show NAME | delete NAME`: residency policies (management API
 * policies/residency). Exit status: 0 done, 1 refused or failed, 2 bad usage. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "util.h"

static const char usage_text[] =
    "usage: meridian policy residency set NAME --repositories PATTERN\n"
    "                                 [--allowed-regions R1,R2] [--denied-regions R3]\n"
    "                                 [--enforce]\n"
    "       meridian policy residency list | show NAME | delete NAME\n"
    "                                 [--registry URL] [--output table|json]\n\n"
    "The repositories PATTERN matches ('eu/*') may be held only in the allowed regions\n"
    "(every region when none is given) and never in a denied one. Enforced in every\n"
    "region: pushes there are DENIED, replication withholds the content, image-version\n"
    "targets there are refused. Content a region held before the policy is reported\n"
    "(compliance report: held-in-forbidden-region) and, with --enforce, removed there\n"
    "(audited residency.enforce); setting the policy again with --enforce removes it later.\n"
    "Changing a policy needs the admin role.\n";

static const char *const cols[] = {"name", "repositories", "allowedRegions:allowed",
                                   "deniedRegions:denied", "enforce", NULL};

/* "a,b c" -> ["a","b","c"] */
static json_t *region_list(const char *s)
{
    json_t *out = json_array();
    while (*s != '\0') {
        size_t n = strcspn(s, ", ");
        if (n > 0) {
            char *t = xstrndup(s, n);
            json_array_append_new(out, json_string(t));
            free(t);
        }
        s += n + (s[n] != '\0');
    }
    return out;
}

/* Arrays of names as "a,b" for the table. */
static void flatten(json_t *o)
{
    const char *keys[] = {"allowedRegions", "deniedRegions"};
    for (size_t k = 0; k < 2; k++) {
        json_t *list = json_object_get(o, keys[k]);
        char text[1024] = "";
        size_t n = 0;
        for (size_t i = 0; i < json_array_size(list) && n < sizeof(text); i++)
            n += (size_t)snprintf(text + n, sizeof(text) - n, "%s%s", i ? "," : "",
                                  json_string_value(json_array_get(list, i)));
        json_object_set_new(o, keys[k], json_string(n ? text : "-"));
    }
}

int cli_policy(struct cli *c)
{
    const char *verb = c->verb != NULL ? c->verb : "";
    const char *sub = c->n_args > 0 ? c->args[0] : "";
    bool is_residency = strcmp(verb, "residency") == 0;
    bool is_set = is_residency && strcmp(sub, "set") == 0 && c->n_args == 2 &&
                  cli_opt(c, "repositories") != NULL;
    bool is_list = is_residency && strcmp(sub, "list") == 0 && c->n_args == 1;
    bool is_show = is_residency && strcmp(sub, "show") == 0 && c->n_args == 2;
    bool is_delete = is_residency && strcmp(sub, "delete") == 0 && c->n_args == 2;
    if (!is_set && !is_list && !is_show && !is_delete) {
        bool is_help = strcmp(verb, "help") == 0 || (is_residency && strcmp(sub, "help") == 0);
        fputs(usage_text, is_help ? stdout : stderr);
        return is_help ? 0 : 2;
    }
    char path[700] = "policies/residency";
    if (!is_list) {
        char *esc = cli_escape(c->args[1], false);
        snprintf(path, sizeof(path), "policies/residency/%s", esc);
        free(esc);
    }
    struct err e = {0};
    long status = 0;
    json_t *r;
    if (is_set) {
        json_t *body = json_pack("{s:s}", "repositories", cli_opt(c, "repositories"));
        if (cli_opt(c, "allowed-regions") != NULL)
            json_object_set_new(body, "allowedRegions", region_list(cli_opt(c, "allowed-regions")));
        if (cli_opt(c, "denied-regions") != NULL)
            json_object_set_new(body, "deniedRegions", region_list(cli_opt(c, "denied-regions")));
        json_object_set_new(body, "enforce", json_boolean(cli_opt(c, "enforce") != NULL));
        r = cli_call(c, "PUT", path, body, &status, &e);
        json_decref(body);
    } else {
        r = cli_call(c, is_delete ? "DELETE" : "GET", path, NULL, &status, &e);
    }
    if (r == NULL || status != 200)
        return cli_fail(c, r, status, &e);
    if (!is_delete) {
        if (!c->is_json) {
            size_t i;
            json_t *o;
            if (json_is_array(r)) {
                json_array_foreach(r, i, o) flatten(o);
            } else {
                flatten(r);
            }
        }
        cli_print(c, r, cols);
    }
    json_decref(r);
    return 0;
}
