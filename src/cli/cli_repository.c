/* meridian repository update REPO[:TAG|@DIGEST] --write-enabled BOOL --delete-enabled BOOL
 *                             [--list-enabled BOOL] [--read-enabled BOOL]
 * meridian repository show REPO[:TAG|@DIGEST]
 * (the cloud CLI's `az acr repository update/show`): locks, over the management API's
 * repositories endpoint (mgmt_repositories.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "util.h"

static int usage(void)
{
    fprintf(stderr,
            "usage: meridian repository update REPO[:TAG|@DIGEST] [--write-enabled BOOL]\n"
            "                [--delete-enabled BOOL] [--list-enabled BOOL] [--read-enabled BOOL]\n"
            "       meridian repository show REPO[:TAG|@DIGEST]\n"
            "options: --registry URL  --output table|json\n");
    return 2;
}

static const char *const columns[] = {"repository:REPOSITORY", "reference:REFERENCE",
                                      "writeEnabled:WRITE", "deleteEnabled:DELETE",
                                      "readEnabled:READ", "listEnabled:LIST", NULL};

/* REPO, REPO:TAG or REPO@DIGEST as the endpoint's query. */
static void lock_path(const char *arg, char *out, size_t n)
{
    char *repo = xstrdup(arg);
    char *ref = strchr(repo, '@');
    if (ref == NULL) {
        char *slash = strrchr(repo, '/');
        ref = strchr(slash ? slash : repo, ':');
    }
    if (ref != NULL)
        *ref++ = '\0';
    char *q = cli_escape(repo, false);
    char *r = ref ? cli_escape(ref, false) : NULL;
    snprintf(out, n, "repositories?repository=%s%s%s", q, r ? "&reference=" : "", r ? r : "");
    free(q);
    free(r);
    free(repo);
}

int cli_repository(struct cli *c)
{
    if (c->verb == NULL || c->n_args != 1)
        return usage();
    bool is_update = strcmp(c->verb, "update") == 0;
    if (!is_update && strcmp(c->verb, "show") != 0)
        return usage();
    char path[2048];
    lock_path(c->args[0], path, sizeof(path));
    json_t *body = NULL;
    if (is_update) {
        body = json_object();
        if (cli_bool_field(c, "write-enabled", body, "writeEnabled") != 0 ||
            cli_bool_field(c, "delete-enabled", body, "deleteEnabled") != 0 ||
            cli_bool_field(c, "list-enabled", body, "listEnabled") != 0 ||
            cli_bool_field(c, "read-enabled", body, "readEnabled") != 0) {
            json_decref(body);
            return 2;
        }
        if (json_object_size(body) == 0) {
            json_decref(body);
            fprintf(stderr, "meridian: repository update needs --write-enabled, "
                            "--delete-enabled, --list-enabled or --read-enabled\n");
            return 2;
        }
    }
    struct err e = {0};
    long status = 0;
    json_t *r = cli_call(c, is_update ? "PATCH" : "GET", path, body, &status, &e);
    json_decref(body);
    if (status != 200 || r == NULL)
        return cli_fail(c, r, status, &e);
    /* One row: the attributes next to what they apply to. */
    json_t *row = json_deep_copy(json_object_get(r, "changeableAttributes"));
    json_object_set(row, "repository", json_object_get(r, "repository"));
    json_object_set_new(row, "reference", json_object_get(r, "reference")
                                              ? json_incref(json_object_get(r, "reference"))
                                              : json_string("-"));
    if (c->is_json) {
        cli_print(c, r, columns);
    } else {
        json_t *rows = json_array();
        json_array_append_new(rows, row);
        row = NULL;
        cli_print(c, rows, columns);
        json_decref(rows);
    }
    json_decref(row);
    json_decref(r);
    return 0;
}
