/* `meridian compliance report [--repository PATTERN]`: for each repository, the regions that
 * hold it against the regions its residency policies allow, and every violation (management
 * API compliance). `meridian compliance check --matrix FILE`: each image version (or plain
 * repository) against the rules of a compliance matrix (POST compliance/check). Exit
 * status: 0 compliant, 3 a violation is listed, 4 a region did not answer (nothing proven
 * about it), 1 refused or failed, 2 bad usage: a pipeline gates on it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "util.h"

static const char usage_text[] =
    "usage: meridian compliance report [--repository PATTERN]\n"
    "                                  [--registry URL] [--output table|json]\n\n"
    "Asks every region what it holds and lists, per repository, the regions that hold it,\n"
    "the regions its residency policies allow, and each violation: held-in-forbidden-region\n"
    "(content from before a policy, kept until an enforced one removes it), target-forbidden,\n"
    "and default-target-forbidden (an image version or definition naming such a region).\n"
    "\n"
    "usage: meridian compliance check --matrix FILE [--registry URL] [--output table|json]\n\n"
    "Checks each image version (and each plain repository) a rule of the matrix FILE (JSON:\n"
    "{\"rules\":[{\"repositories\":PATTERN, \"requiredRegions\":[..], \"minReplicaCount\":N,\n"
    "\"forbiddenRegions\":[..], \"maxLatestAgeS\":S}]}, first matching rule applies) and lists\n"
    "missing required regions, copies below the minimum, presence in a forbidden region,\n"
    "end of life passed and a `latest` older than allowed.\n"
    "Exit status 3 when there is a violation, 4 when a region did not answer.\n";

static const char *const check_cols[] = {
    "repository", "version", "state", "sourceRegion:source", "replicaRegions:regions", "copies",
    "missingRequiredRegions:missing", "forbiddenRegionsPresent:forbidden", "violations", NULL};

static const char *const cols[] = {
    "repository", "state", "heldIn:held in", "allowedRegions:allowed", "violations", NULL};

static json_t *joined(const json_t *list)
{
    char text[1024] = "";
    size_t n = 0;
    for (size_t i = 0; i < json_array_size(list) && n < sizeof(text); i++)
        n += (size_t)snprintf(text + n, sizeof(text) - n, "%s%s", i ? "," : "",
                              json_string_value(json_array_get(list, i)));
    return json_string(n ? text : "-");
}

/* One violation as "kind@region[:version]". */
static json_t *violations_text(const json_t *list)
{
    char text[2048] = "";
    size_t n = 0;
    for (size_t i = 0; i < json_array_size(list) && n < sizeof(text); i++) {
        const json_t *v = json_array_get(list, i);
        const char *version = json_string_value(json_object_get(v, "version"));
        n += (size_t)snprintf(text + n, sizeof(text) - n, "%s%s@%s%s%s", i ? " " : "",
                              json_string_value(json_object_get(v, "kind")),
                              json_string_value(json_object_get(v, "region")), version ? ":" : "",
                              version ? version : "");
    }
    return json_string(n ? text : "-");
}

/* "r1=1,r2=2" from {"r1":1,"r2":2}; "-" when empty. */
static json_t *copies_text(const json_t *copies)
{
    char text[1024] = "";
    size_t n = 0;
    const char *region;
    json_t *v;
    json_object_foreach((json_t *)copies, region, v)
    {
        if (n < sizeof(text))
            n += (size_t)snprintf(text + n, sizeof(text) - n, "%s%s=%lld", n ? "," : "", region,
                                  (long long)json_integer_value(v));
    }
    return json_string(n ? text : "-");
}

static bool any_region_silent(const json_t *r)
{
    bool silent = false;
    size_t i;
    json_t *row;
    json_array_foreach(json_object_get(r, "regions"), i, row) silent |=
        !json_is_true(json_object_get(row, "answered"));
    return silent;
}

static int check(struct cli *c)
{
    const char *file = cli_opt(c, "matrix");
    if (file == NULL || c->n_args != 0) {
        fputs(usage_text, stderr);
        return 2;
    }
    json_error_t je;
    json_t *matrix = json_load_file(file, JSON_REJECT_DUPLICATES, &je);
    if (matrix == NULL) {
        fprintf(stderr, "meridian: %s: line %d: %s\n", file, je.line, je.text);
        return 2;
    }
    struct err e = {0};
    long status = 0;
    json_t *r = cli_call(c, "POST", "compliance/check", matrix, &status, &e);
    json_decref(matrix);
    if (r == NULL || status != 200)
        return cli_fail(c, r, status, &e);
    bool silent = any_region_silent(r);
    json_int_t n_violations = json_integer_value(json_object_get(r, "violations"));
    if (c->is_json) {
        cli_print(c, r, check_cols);
    } else {
        json_t *rows = json_array();
        size_t i;
        json_t *item;
        json_array_foreach(json_object_get(r, "items"), i, item)
        {
            const json_t *version = json_object_get(item, "version");
            const json_t *state = json_object_get(item, "state");
            const json_t *source = json_object_get(item, "sourceRegion");
            json_array_append_new(
                rows,
                json_pack("{s:O,s:s,s:s,s:s,s:o,s:o,s:o,s:o,s:o}", "repository",
                          json_object_get(item, "repository"), "version",
                          json_is_string(version) ? json_string_value(version) : "-", "state",
                          json_is_string(state) ? json_string_value(state) : "-", "sourceRegion",
                          json_is_string(source) ? json_string_value(source) : "-",
                          "replicaRegions", joined(json_object_get(item, "replicaRegions")),
                          "copies", copies_text(json_object_get(item, "copies")),
                          "missingRequiredRegions",
                          joined(json_object_get(item, "missingRequiredRegions")),
                          "forbiddenRegionsPresent",
                          joined(json_object_get(item, "forbiddenRegionsPresent")), "violations",
                          joined(json_object_get(item, "violations"))));
        }
        cli_print(c, rows, check_cols);
        json_decref(rows);
        printf("%lld violation(s)\n", (long long)n_violations);
        if (silent)
            fprintf(stderr,
                    "compliance: some regions did not answer: their holdings are unknown\n");
    }
    json_decref(r);
    return n_violations > 0 ? 3 : silent ? 4 : 0;
}

int cli_compliance(struct cli *c)
{
    const char *verb = c->verb != NULL ? c->verb : "";
    if (strcmp(verb, "check") == 0)
        return check(c);
    if (strcmp(verb, "report") != 0 || c->n_args != 0) {
        bool is_help = strcmp(verb, "help") == 0;
        fputs(usage_text, is_help ? stdout : stderr);
        return is_help ? 0 : 2;
    }
    char path[700] = "compliance";
    if (cli_opt(c, "repository") != NULL) {
        char *esc = cli_escape(cli_opt(c, "repository"), false);
        snprintf(path, sizeof(path), "compliance?repository=%s", esc);
        free(esc);
    }
    struct err e = {0};
    long status = 0;
    json_t *r = cli_call(c, "GET", path, NULL, &status, &e);
    if (r == NULL || status != 200)
        return cli_fail(c, r, status, &e);
    bool any_unknown = false;
    size_t i;
    json_t *row;
    json_array_foreach(json_object_get(r, "regions"), i, row) any_unknown |=
        !json_is_true(json_object_get(row, "answered"));
    json_int_t n_violations = json_integer_value(json_object_get(r, "violations"));
    if (c->is_json) {
        cli_print(c, r, cols);
    } else {
        json_t *rows = json_array();
        json_array_foreach(json_object_get(r, "repositories"), i, row)
        {
            json_array_append_new(
                rows,
                json_pack("{s:O,s:O,s:o,s:o,s:o}", "repository", json_object_get(row, "repository"),
                          "state", json_object_get(row, "state"), "heldIn",
                          joined(json_object_get(row, "heldIn")), "allowedRegions",
                          joined(json_object_get(row, "allowedRegions")), "violations",
                          violations_text(json_object_get(row, "violations"))));
        }
        cli_print(c, rows, cols);
        json_decref(rows);
        if (any_unknown)
            fprintf(stderr,
                    "compliance: some regions did not answer: their holdings are unknown\n");
    }
    json_decref(r);
    return n_violations > 0 ? 3 : any_unknown ? 4 : 0;
}
