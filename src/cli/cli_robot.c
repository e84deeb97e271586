/* `meridian robot <verb>`: accounts for machines with a generated secret (management API
 * robots/). Exit status: 0 done, 1 refused or failed, 2 bad usage. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "util.h"

static const char usage_text[] =
    "usage: meridian robot <verb> [args] [--registry URL] [--output table|json]\n\n"
    "  create NAME [--expires-in DURATION] [--description TEXT]\n"
    "                       prints the robot's secret, once; DURATION such as 90m, 24h, 30d\n"
    "  list\n"
    "  show NAME\n"
    "  delete NAME          tokens the robot holds stop working at once\n\n"
    "Robots log in as NAME with the secret (podman login -u NAME -p SECRET ...).\n";

static const char *const robot_cols[] = {"name",        "expires", "roles",
                                         "description", "created", NULL};

static int usage(FILE *out, int status)
{
    fputs(usage_text, out);
    return status;
}

int cli_robot(struct cli *c)
{
    struct err e = {0};
    long status = 0;
    json_t *r = NULL;
    if (c->verb == NULL || strcmp(c->verb, "help") == 0 || cli_opt(c, "help"))
        return usage(c->verb == NULL ? stderr : stdout, c->verb == NULL ? 2 : 0);
    if (strcmp(c->verb, "list") == 0 && c->n_args == 0) {
        r = cli_call(c, "GET", "robots", NULL, &status, &e);
        if (r == NULL || status != 200)
            return cli_fail(c, r, status, &e);
        cli_print(c, r, robot_cols);
        json_decref(r);
        return 0;
    }
    if (c->n_args != 1) {
        fprintf(stderr, "meridian: robot %s takes one NAME\n", c->verb);
        return usage(stderr, 2);
    }
    char *name = cli_escape(c->args[0], false);
    char path[512];
    snprintf(path, sizeof(path), "robots/%s", name);
    free(name);
    if (strcmp(c->verb, "create") == 0) {
        json_t *body = json_pack("{s:s}", "name", c->args[0]);
        if (cli_opt(c, "expires-in"))
            json_object_set_new(body, "expiresIn", json_string(cli_opt(c, "expires-in")));
        if (cli_opt(c, "description"))
            json_object_set_new(body, "description", json_string(cli_opt(c, "description")));
        r = cli_call(c, "POST", "robots", body, &status, &e);
        json_decref(body);
        if (r == NULL || status != 201)
            return cli_fail(c, r, status, &e);
        if (c->is_json) {
            cli_print(c, r, robot_cols);
        } else {
            const char *exp = json_string_value(json_object_get(r, "expires"));
            printf("robot %s%s%s; secret (shown only now): %s\n", c->args[0],
                   exp ? ", expires " : "", exp ? exp : "",
                   json_string_value(json_object_get(r, "secret")));
        }
        json_decref(r);
        return 0;
    }
    if (strcmp(c->verb, "show") == 0) {
        r = cli_call(c, "GET", path, NULL, &status, &e);
        if (r == NULL || status != 200)
            return cli_fail(c, r, status, &e);
        cli_print(c, r, robot_cols);
        json_decref(r);
        return 0;
    }
    if (strcmp(c->verb, "delete") == 0) {
        r = cli_call(c, "DELETE", path, NULL, &status, &e);
        if (r == NULL || status != 204)
            return cli_fail(c, r, status, &e);
        json_decref(r);
        printf("deleted robot %s\n", c->args[0]);
        return 0;
    }
    fprintf(stderr, "meridian: unknown verb \"%s\" for robot\n", c->verb);
    return usage(stderr, 2);
}
