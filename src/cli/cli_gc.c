/* `meridian gc status|run [--dry-run]` and `meridian storage show` (management API gc,
 * gc/run, storage). Exit status: 0 done, 1 refused or failed, 2 bad usage. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

static const char gc_usage[] =
    "usage: meridian gc status|run [--dry-run] [--registry URL] [--output table|json]\n\n"
    "status: the review queue (length, due), totals reclaimed, the last run.\n"
    "run: reviews every blob past its grace now and deletes those no manifest references\n"
    "and no repository links; --dry-run lists what would go and deletes nothing.\n";

static const char *const status_cols[] = {"enabled", "grace_s", "queue_length", "due",
                                          "blobs_reclaimed_total", "bytes_reclaimed_total",
                                          "errors_total", "last_run_ms", NULL};
static const char *const blob_cols[] = {"digest", "size", NULL};

static int usage(const struct cli *c, const char *text)
{
    bool is_help = c->verb != NULL && strcmp(c->verb, "help") == 0;
    fputs(text, is_help ? stdout : stderr);
    return is_help ? 0 : 2;
}

int cli_gc(struct cli *c)
{
    bool is_status = c->verb != NULL && strcmp(c->verb, "status") == 0;
    bool is_run = c->verb != NULL && strcmp(c->verb, "run") == 0;
    if ((!is_status && !is_run) || c->n_args != 0)
        return usage(c, gc_usage);
    bool is_dry_run = cli_opt(c, "dry-run") != NULL;
    struct err e = {0};
    long status = 0;
    json_t *r = cli_call(c, is_status ? "GET" : "POST",
                         is_status ? "gc" : is_dry_run ? "gc/run?dry_run=true" : "gc/run", NULL,
                         &status, &e);
    if (r == NULL || status != 200)
        return cli_fail(c, r, status, &e);
    if (is_status || c->is_json) {
        cli_print(c, r, status_cols);
    } else {
        cli_print(c, json_object_get(r, "blobs"), blob_cols);
        printf("%s %lld blobs, %lld bytes\n", is_dry_run ? "would delete" : "deleted",
               (long long)json_integer_value(json_object_get(r, "blobs_reclaimed")),
               (long long)json_integer_value(json_object_get(r, "bytes_reclaimed")));
    }
    json_decref(r);
    return 0;
}

static const char storage_usage_text[] =
    "usage: meridian storage show [--registry URL] [--output table|json]\n\n"
    "Bytes of the blobs held in this region, per repository: unique (linked to no other\n"
    "repository) and shared (linked to others too, counted in each).\n";

static const char *const storage_cols[] = {"repository", "unique_bytes", "shared_bytes", "blobs",
                                           NULL};

int cli_storage(struct cli *c)
{
    if (c->verb == NULL || strcmp(c->verb, "show") != 0 || c->n_args != 0)
        return usage(c, storage_usage_text);
    struct err e = {0};
    long status = 0;
    json_t *r = cli_call(c, "GET", "storage", NULL, &status, &e);
    if (r == NULL || status != 200)
        return cli_fail(c, r, status, &e);
    if (c->is_json) {
        cli_print(c, r, storage_cols);
    } else {
        cli_print(c, json_object_get(r, "repositories"), storage_cols);
        printf("region %s: %lld bytes in all\n",
               json_string_value(json_object_get(r, "region")),
               (long long)json_integer_value(json_object_get(r, "total_bytes")));
    }
    json_decref(r);
    return 0;
}
