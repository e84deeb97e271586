/* `meridian retention set PATTERN [--tags GLOB] [--keep-newest N] [--older-than D]
 * [--untagged-after D] [--pulled-within D] | list | delete PATTERN | run [--dry-run]`: retention rules per
 * repository pattern (management API retention). Exit status: 0 done, 1 refused or
 * failed, 2 bad usage. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "config.h"
#include "util.h"

static const char usage_text[] =
    "usage: meridian retention set PATTERN [--tags GLOB] [--keep-newest N]\n"
    "                                      [--older-than DURATION] [--untagged-after DURATION]\n"
    "                                      [--pulled-within DURATION]\n"
    "       meridian retention list | delete PATTERN | run [--dry-run]\n"
    "                      [--registry URL] [--output table|json]\n\n"
    "In each repository PATTERN matches ('team/*'), of the tags GLOB matches (default '*'),\n"
    "newest first by their last write: the N newest are kept, the others older than\n"
    "DURATION (or all of them) are deleted. --untagged-after sets the repositories' grace\n"
    "for untagged manifests (0: keep them). --pulled-within keeps the tags pulled (by tag\n"
    "or digest, in any region) within DURATION. run applies every rule now; --dry-run lists\n"
    "what would go and deletes nothing.\n";

static const char *const rule_cols[] = {"pattern",        "tags",          "keepNewest", "olderThanS",
                                        "untaggedAfterS", "pulledWithinS", NULL};
static const char *const item_cols[] = {"repository", "tag",     "digest", "rule",
                                        "region",     "deleted", NULL};

/* Adds option name (a count or a duration) to body as key; -1 on a bad value. */
static int add_number(const struct cli *c, json_t *body, const char *name, const char *key,
                      bool is_duration)
{
    const char *v = cli_opt(c, name);
    if (v == NULL)
        return 0;
    int64_t n = -1;
    uint64_t u;
    if (is_duration ? config_parse_duration(v, &n) != 0
                    : util_parse_u64(v, strlen(v), &u) != 0 || u > INT64_MAX) {
        fprintf(stderr, "retention: --%s: expected %s\n", name,
                is_duration ? "a duration (90s, 15m, 24h, 30d)" : "a number");
        return -1;
    }
    if (!is_duration)
        n = (int64_t)u;
    json_object_set_new(body, key, json_integer(n));
    return 0;
}

int cli_retention(struct cli *c)
{
    const char *verb = c->verb != NULL ? c->verb : "";
    bool is_set = strcmp(verb, "set") == 0 && c->n_args == 1;
    bool is_list = strcmp(verb, "list") == 0 && c->n_args == 0;
    bool is_delete = strcmp(verb, "delete") == 0 && c->n_args == 1;
    bool is_run = strcmp(verb, "run") == 0 && c->n_args == 0;
    if (!is_set && !is_list && !is_delete && !is_run) {
        bool is_help = strcmp(verb, "help") == 0;
        fputs(usage_text, is_help ? stdout : stderr);
        return is_help ? 0 : 2;
    }
    struct err e = {0};
    long status = 0;
    json_t *r;
    bool is_dry_run = cli_opt(c, "dry-run") != NULL;
    if (is_set) {
        json_t *body = json_pack("{s:s}", "pattern", c->args[0]);
        if (cli_opt(c, "tags") != NULL)
            json_object_set_new(body, "tags", json_string(cli_opt(c, "tags")));
        if (add_number(c, body, "keep-newest", "keepNewest", false) != 0 ||
            add_number(c, body, "older-than", "olderThanS", true) != 0 ||
            add_number(c, body, "untagged-after", "untaggedAfterS", true) != 0 ||
            add_number(c, body, "pulled-within", "pulledWithinS", true) != 0) {
            json_decref(body);
            return 2;
        }
        r = cli_call(c, "POST", "retention", body, &status, &e);
        json_decref(body);
    } else if (is_list) {
        r = cli_call(c, "GET", "retention", NULL, &status, &e);
    } else if (is_run) {
        r = cli_call(c, "POST", is_dry_run ? "retention/run?dry_run=true" : "retention/run", NULL,
                     &status, &e);
    } else {
        char *esc = cli_escape(c->args[0], false);
        char path[600];
        snprintf(path, sizeof(path), "retention?pattern=%s", esc);
        free(esc);
        r = cli_call(c, "DELETE", path, NULL, &status, &e);
    }
    if (r == NULL || status != 200)
        return cli_fail(c, r, status, &e);
    if (is_run && !c->is_json) {
        cli_print(c, json_object_get(r, "tags"), item_cols);
        printf("%s %lld tags\n", is_dry_run ? "would delete" : "deleted",
               (long long)json_integer_value(json_object_get(r, "deleted")));
        size_t n_kept = json_array_size(json_object_get(r, "kept"));
        if (n_kept > 0)
            printf("kept %zu tags for their recent pulls\n", n_kept);
    } else if (!is_delete) {
        cli_print(c, r, is_run ? item_cols : rule_cols);
    }
    json_decref(r);
    return 0;
}
