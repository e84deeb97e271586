/* `meridian user <verb>`: users who log in with a password (management API users/).
 * Exit status: 0 done, 1 refused or failed, 2 bad usage. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "util.h"

static const char usage_text[] =
    "usage: meridian user <verb> [args] [--registry URL] [--output table|json]\n\n"
    "  create NAME [--new-password PASSWORD]   without one, a password is generated and\n"
    "                                          printed once\n"
    "  list\n"
    "  show NAME\n"
    "  delete NAME                             its role bindings go too\n"
    "  reset-secret NAME [--new-password PASSWORD]\n\n"
    "Authenticate as an admin with --username/--password or MERIDIAN_USERNAME and\n"
    "MERIDIAN_PASSWORD. Grant roles with `meridian role assign`.\n";

static const char *const user_cols[] = {"name", "kind", "roles", "created", NULL};

static int usage(FILE *out, int status)
{
    fputs(usage_text, out);
    return status;
}

/* Prints the reply of create / reset-secret: the generated password, if any, once. */
static int print_secret_reply(const struct cli *c, json_t *r)
{
    const char *pw = json_string_value(json_object_get(r, "password"));
    if (c->is_json) {
        cli_print(c, r, user_cols);
    } else if (pw != NULL) {
        printf("user %s; password (shown only now): %s\n",
               json_string_value(json_object_get(r, "name")), pw);
    } else {
        printf("user %s: done\n", json_string_value(json_object_get(r, "name")));
    }
    json_decref(r);
    return 0;
}

int cli_user(struct cli *c)
{
    struct err e = {0};
    long status = 0;
    json_t *r = NULL;
    if (c->verb == NULL || strcmp(c->verb, "help") == 0 || cli_opt(c, "help"))
        return usage(c->verb == NULL ? stderr : stdout, c->verb == NULL ? 2 : 0);
    bool has_name = c->n_args == 1;
    char *name = has_name ? cli_escape(c->args[0], false) : NULL;
    char path[512];
    int rc = 2;
    if (strcmp(c->verb, "list") == 0 && c->n_args == 0) {
        r = cli_call(c, "GET", "users", NULL, &status, &e);
        if (r == NULL || status != 200)
            return cli_fail(c, r, status, &e);
        cli_print(c, r, user_cols);
        json_decref(r);
        return 0;
    }
    if (!has_name) {
        fprintf(stderr, "meridian: user %s takes one NAME\n", c->verb);
        return usage(stderr, 2);
    }
    const char *pw = cli_opt(c, "new-password");
    if (strcmp(c->verb, "create") == 0) {
        json_t *body = json_pack("{s:s}", "name", c->args[0]);
        if (pw != NULL)
            json_object_set_new(body, "password", json_string(pw));
        r = cli_call(c, "POST", "users", body, &status, &e);
        json_decref(body);
        rc = r == NULL || status != 201 ? cli_fail(c, r, status, &e) : print_secret_reply(c, r);
    } else if (strcmp(c->verb, "reset-secret") == 0) {
        json_t *body = json_object();
        if (pw != NULL)
            json_object_set_new(body, "password", json_string(pw));
        snprintf(path, sizeof(path), "users/%s/reset-secret", name);
        r = cli_call(c, "POST", path, body, &status, &e);
        json_decref(body);
        rc = r == NULL || status != 200 ? cli_fail(c, r, status, &e) : print_secret_reply(c, r);
    } else if (strcmp(c->verb, "show") == 0) {
        snprintf(path, sizeof(path), "users/%s", name);
        r = cli_call(c, "GET", path, NULL, &status, &e);
        if (r == NULL || status != 200) {
            rc = cli_fail(c, r, status, &e);
        } else {
            cli_print(c, r, user_cols);
            json_decref(r);
            rc = 0;
        }
    } else if (strcmp(c->verb, "delete") == 0) {
        snprintf(path, sizeof(path), "users/%s", name);
        r = cli_call(c, "DELETE", path, NULL, &status, &e);
        if (r == NULL || status != 204) {
            rc = cli_fail(c, r, status, &e);
        } else {
            json_decref(r);
            printf("deleted user %s\n", c->args[0]);
            rc = 0;
        }
    } else {
        fprintf(stderr, "meridian: unknown verb \"%s\" for user\n", c->verb);
        rc = usage(stderr, 2);
    }
    free(name);
    return rc;
}
