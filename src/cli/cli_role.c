/* `meridian role <verb>`: role bindings (management API roles). Exit status: 0 done,
 * 1 refused or failed, 2 bad usage. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "util.h"

static const char usage_text[] =
    "usage: meridian role <verb> [--registry URL] [--output table|json]\n\n"
    "  assign --assignee NAME --role ROLE --scope PATTERN\n"
    "  revoke --assignee NAME --role ROLE --scope PATTERN\n"
    "  list [--assignee NAME]\n\n"
    "ROLE: consumer (pull, list, read replication status), publisher (consumer + push,\n"
    "delete, publishing profiles) or admin (publisher + replications, webhooks, users,\n"
    "roles, audit). PATTERN: repositories, '*' matching anything: 'golden/*', '*'.\n"
    "NAME: a user, a robot, or 'anonymous' (consumer only: anonymous pull of PATTERN).\n";

static const char *const role_cols[] = {"subject:ASSIGNEE", "role", "pattern:SCOPE", "created",
                                        NULL};

static int usage(FILE *out, int status)
{
    fputs(usage_text, out);
    return status;
}

int cli_role(struct cli *c)
{
    struct err e = {0};
    long status = 0;
    json_t *r = NULL;
    const char *who = cli_opt(c, "assignee");
    const char *role = cli_opt(c, "role");
    const char *scope = cli_opt(c, "scope");
    if (c->verb == NULL || strcmp(c->verb, "help") == 0 || cli_opt(c, "help"))
        return usage(c->verb == NULL ? stderr : stdout, c->verb == NULL ? 2 : 0);
    if (strcmp(c->verb, "list") == 0) {
        char path[512] = "roles";
        if (who != NULL) {
            char *q = cli_escape(who, false);
            snprintf(path, sizeof(path), "roles?subject=%s", q);
            free(q);
        }
        r = cli_call(c, "GET", path, NULL, &status, &e);
        if (r == NULL || status != 200)
            return cli_fail(c, r, status, &e);
        cli_print(c, r, role_cols);
        json_decref(r);
        return 0;
    }
    if (who == NULL || role == NULL || scope == NULL) {
        fprintf(stderr, "meridian: role %s needs --assignee, --role and --scope\n", c->verb);
        return usage(stderr, 2);
    }
    if (strcmp(c->verb, "assign") == 0) {
        json_t *body = json_pack("{s:s, s:s, s:s}", "subject", who, "role", role, "pattern", scope);
        r = cli_call(c, "POST", "roles", body, &status, &e);
        json_decref(body);
        if (r == NULL || (status != 201 && status != 200))
            return cli_fail(c, r, status, &e);
        if (c->is_json)
            cli_print(c, r, role_cols);
        else
            printf("%s is %s on %s%s\n", who, role, scope, status == 200 ? " (already)" : "");
        json_decref(r);
        return 0;
    }
    if (strcmp(c->verb, "revoke") == 0) {
        char *qs = cli_escape(who, false);
        char *qr = cli_escape(role, false);
        char *qp = cli_escape(scope, false);
        char path[1024];
        snprintf(path, sizeof(path), "roles?subject=%s&role=%s&pattern=%s", qs, qr, qp);
        free(qs);
        free(qr);
        free(qp);
        r = cli_call(c, "DELETE", path, NULL, &status, &e);
        if (r == NULL || status != 204)
            return cli_fail(c, r, status, &e);
        json_decref(r);
        printf("%s is no longer %s on %s\n", who, role, scope);
        return 0;
    }
    fprintf(stderr, "meridian: unknown verb \"%s\" for role\n", c->verb);
    return usage(stderr, 2);
}
