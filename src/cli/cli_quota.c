/* `meridian quota set PATTERN --bytes N | list | delete PATTERN`: storage quotas per
 * repository pattern (management API quotas). Exit status: 0 done, 1 refused or failed,
 * 2 bad usage. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "util.h"

static const char usage_text[] =
    "usage: meridian quota set PATTERN --bytes N | list | delete PATTERN\n"
    "                      [--registry URL] [--output table|json]\n\n"
    "Each repository PATTERN matches ('team/*') may hold at most N bytes of blobs in a\n"
    "region; a push over it is DENIED and stores nothing.\n";

static const char *const cols[] = {"pattern", "bytes", NULL};

int cli_quota(struct cli *c)
{
    const char *verb = c->verb != NULL ? c->verb : "";
    bool is_set = strcmp(verb, "set") == 0 && c->n_args == 1 && cli_opt(c, "bytes") != NULL;
    bool is_list = strcmp(verb, "list") == 0 && c->n_args == 0;
    bool is_delete = strcmp(verb, "delete") == 0 && c->n_args == 1;
    if (!is_set && !is_list && !is_delete) {
        bool is_help = strcmp(verb, "help") == 0;
        fputs(usage_text, is_help ? stdout : stderr);
        return is_help ? 0 : 2;
    }
    struct err e = {0};
    long status = 0;
    json_t *r;
    if (is_set) {
        uint64_t n;
        const char *bytes = cli_opt(c, "bytes");
        if (util_parse_u64(bytes, strlen(bytes), &n) != 0 || n > INT64_MAX) {
            fprintf(stderr, "quota: --bytes: expected a number of bytes\n");
            return 2;
        }
        json_t *body = json_pack("{s:s,s:I}", "pattern", c->args[0], "bytes", (json_int_t)n);
        r = cli_call(c, "POST", "quotas", body, &status, &e);
        json_decref(body);
    } else if (is_list) {
        r = cli_call(c, "GET", "quotas", NULL, &status, &e);
    } else {
        char *esc = cli_escape(c->args[0], false);
        char path[600];
        snprintf(path, sizeof(path), "quotas?pattern=%s", esc);
        free(esc);
        r = cli_call(c, "DELETE", path, NULL, &status, &e);
    }
    if (r == NULL || status != 200)
        return cli_fail(c, r, status, &e);
    if (!is_delete)
        cli_print(c, r, cols);
    json_decref(r);
    return 0;
}
