/* `meridian image-definition create|update|show|list|delete REPO`: a repository whose tags are
 * versions MAJOR.MINOR.PATCH, each with a publishing profile whose defaults come from the
 * definition (docs/image-versions.md). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static int usage(void)
{
    fprintf(stderr,
            "usage: meridian image-definition create REPO [--description TEXT] [--os OS]\n"
            "                [--arch ARCH] [--default-target-regions eastus=1,westus=1]\n"
            "                [--default-replica-count N] [--default-storage-class C]\n"
            "                [--exclude-from-latest] [--allow-version-reuse]\n"
            "                [--keep-everywhere N [--rollback-regions a,b] [--rollback-days D]]\n"
            "       meridian image-definition update REPO [the options of create]\n"
            "       meridian image-definition show REPO\n"
            "       meridian image-definition list\n"
            "       meridian image-definition delete REPO\n"
            "options: --registry URL  --output table|json\n");
    return 2;
}

static const char *const columns[] = {"repository:REPOSITORY",
                                      "os:OS",
                                      "arch:ARCH",
                                      "defaultReplicaCount:REPLICAS",
                                      "excludeFromLatest:EXCLUDE_FROM_LATEST",
                                      "description:DESCRIPTION",
                                      NULL};

static void print_definition(const struct cli *c, json_t *d)
{
    static const char *const target_cols[] = {
        "name:DEFAULT_TARGET_REGION", "regionalReplicaCount:REPLICAS", "storageClass:STORAGE_CLASS",
        "excludeFromLatest:EXCLUDE_FROM_LATEST", NULL};
    cli_print(c, d, columns);
    if (c->is_json)
        return;
    json_t *targets = json_object_get(d, "defaultTargetRegions");
    printf("\n");
    if (json_array_size(targets) == 0)
        printf("default target regions: every region\n");
    else
        cli_print(c, targets, target_cols);
}

static json_t *create_body(const struct cli *c)
{
    json_t *b = json_object();
    static const char *const texts[][2] = {{"description", "description"},
                                           {"os", "os"},
                                           {"arch", "arch"},
                                           {"default-storage-class", "defaultStorageClass"}};
    for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
        const char *v = cli_opt(c, texts[i][0]);
        if (v)
            json_object_set_new(b, texts[i][1], json_string(v));
    }
    const char *v = cli_opt(c, "default-target-regions");
    if (v)
        json_object_set_new(b, "defaultTargetRegions", cli_target_regions(v));
    if ((v = cli_opt(c, "default-replica-count")) != NULL) {
        char *end;
        long long n = strtoll(v, &end, 10);
        if (end == v || *end) {
            fprintf(stderr, "meridian: bad --default-replica-count %s\n", v);
            json_decref(b);
            return NULL;
        }
        json_object_set_new(b, "defaultReplicaCount", json_integer(n));
    }
    const char *keep = cli_opt(c, "keep-everywhere");
    if (keep != NULL) {
        const char *days = cli_opt(c, "rollback-days");
        const char *regions = cli_opt(c, "rollback-regions");
        char *end1, *end2 = NULL;
        long long k = strtoll(keep, &end1, 10), d = days ? strtoll(days, &end2, 10) : 0;
        if (end1 == keep || *end1 || (days && (end2 == days || *end2))) {
            fprintf(stderr, "meridian: bad --keep-everywhere or --rollback-days\n");
            json_decref(b);
            return NULL;
        }
        json_object_set_new(b, "retention",
                            json_pack("{s:I, s:o, s:I}", "keepEverywhere", (json_int_t)k,
                                      "rollbackRegions",
                                      regions ? cli_target_regions(regions) : json_array(),
                                      "rollbackDays", (json_int_t)d));
    } else if (cli_opt(c, "rollback-regions") || cli_opt(c, "rollback-days")) {
        fprintf(stderr, "meridian: --rollback-regions and --rollback-days need "
                        "--keep-everywhere\n");
        json_decref(b);
        return NULL;
    }
    if (cli_bool_field(c, "exclude-from-latest", b, "excludeFromLatest") != 0 ||
        cli_bool_field(c, "allow-version-reuse", b, "allowVersionReuse") != 0) {
        json_decref(b);
        return NULL;
    }
    return b;
}

int cli_image_definition(struct cli *c)
{
    if (c->verb == NULL)
        return usage();
    bool is_list = strcmp(c->verb, "list") == 0;
    if (c->n_args != (is_list ? 0u : 1u))
        return usage();
    char path[2048];
    if (is_list) {
        snprintf(path, sizeof(path), "image-definitions");
    } else {
        char *q = cli_escape(c->args[0], false);
        snprintf(path, sizeof(path), "image-definitions?repository=%s", q);
        free(q);
    }
    const char *method;
    json_t *body = NULL;
    long want;
    if (is_list || strcmp(c->verb, "show") == 0) {
        method = "GET";
        want = 200;
    } else if (strcmp(c->verb, "create") == 0) {
        method = "POST";
        want = 201;
        if ((body = create_body(c)) == NULL)
            return 2;
    } else if (strcmp(c->verb, "update") == 0) {
        method = "PATCH";
        want = 200;
        if ((body = create_body(c)) == NULL)
            return 2;
    } else if (strcmp(c->verb, "delete") == 0) {
        method = "DELETE";
        want = 204;
    } else {
        return usage();
    }
    struct err e = {0};
    long status = 0;
    json_t *r = cli_call(c, method, path, body, &status, &e);
    json_decref(body);
    if (status != want || (r == NULL && want != 204))
        return cli_fail(c, r, status, &e);
    if (is_list)
        cli_print(c, r, columns);
    else if (want != 204)
        print_definition(c, r);
    json_decref(r);
    return 0;
}
