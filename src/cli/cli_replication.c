/* `meridian replication create|list|show|delete`: the regions of the registry. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

static const char *const columns[] = {"location:LOCATION", "endpoint:ENDPOINT", "state:STATE",
                                      "lagEvents:LAG_EVENTS", "lagSeconds:LAG_SECONDS",
                                      "bytesToCopy:BYTES_TO_COPY", "isLocal:LOCAL", NULL};

static int usage(void)
{
    fprintf(stderr, "usage: meridian replication create --location NAME --endpoint URL\n"
                    "       meridian replication list\n"
                    "       meridian replication show NAME\n"
                    "       meridian replication delete NAME\n"
                    "options: --registry URL  --output table|json\n");
    return 2;
}

int cli_replication(struct cli *c)
{
    struct err e = {0};
    long status = 0;
    json_t *r = NULL;
    if (c->verb == NULL)
        return usage();
    if (strcmp(c->verb, "create") == 0) {
        const char *location = cli_opt(c, "location"), *endpoint = cli_opt(c, "endpoint");
        if (location == NULL || endpoint == NULL)
            return usage();
        json_t *body = json_pack("{s:s, s:s}", "location", location, "endpoint", endpoint);
        r = cli_call(c, "POST", "replications", body, &status, &e);
        json_decref(body);
        if (r == NULL || status != 201)
            return cli_fail(c, r, status, &e);
    } else if (strcmp(c->verb, "list") == 0) {
        r = cli_call(c, "GET", "replications", NULL, &status, &e);
        if (r == NULL || status != 200)
            return cli_fail(c, r, status, &e);
    } else if (strcmp(c->verb, "show") == 0 || strcmp(c->verb, "delete") == 0) {
        if (c->n_args != 1)
            return usage();
        bool is_delete = strcmp(c->verb, "delete") == 0;
        char *name = cli_escape(c->args[0], false);
        char path[600];
        snprintf(path, sizeof(path), "replications/%s", name);
        free(name);
        r = cli_call(c, is_delete ? "DELETE" : "GET", path, NULL, &status, &e);
        if (r == NULL || status != (is_delete ? 202 : 200))
            return cli_fail(c, r, status, &e);
        if (is_delete) {
            if (!c->is_json)
                printf("replication %s deleted\n", c->args[0]);
            json_decref(r);
            return 0;
        }
    } else {
        return usage();
    }
    cli_print(c, r, columns);
    json_decref(r);
    return 0;
}
