/* `meridian image-version show|wait REPO:TAG`: an image version and its replication
 * status; `wait --replicated` polls until every target region is Completed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "config.h"
#include "util.h"

#define WAIT_POLL_MS 500

static int usage(void)
{
    fprintf(stderr,
            "usage: meridian image-version show REPO:TAG|REPO@DIGEST [--expand replication-status]\n"
            "       meridian image-version wait REPO:TAG|REPO@DIGEST --replicated [--timeout 10m]\n"
            "options: --registry URL  --output table|json\n"
            "wait exits 0 when every target region is Completed, 1 when one Failed,\n"
            "2 on timeout.\n");
    return 2;
}

/* Splits "repo:tag" or "repo@sha256:..." into the API's query. */
static int version_path(const char *arg, char *out, size_t out_len)
{
    const char *at = strchr(arg, '@');
    const char *colon = at ? at : strrchr(arg, ':');
    if (colon == NULL || colon == arg || colon[1] == '\0' || (!at && strchr(colon, '/')))
        return -1;
    char *repo = xstrndup(arg, (size_t)(colon - arg));
    char *repo_q = cli_escape(repo, false), *ref_q = cli_escape(colon + 1, false);
    snprintf(out, out_len, "image-versions?repository=%s&reference=%s", repo_q, ref_q);
    free(repo);
    free(repo_q);
    free(ref_q);
    return 0;
}

static void print_status(const struct cli *c, json_t *v, bool is_expanded)
{
    static const char *const head[] = {"repository:REPOSITORY", "reference:REFERENCE",
                                       "digest:DIGEST", "size:SIZE", NULL};
    static const char *const status_cols[] = {"region:REGION", "state:STATE",
                                              "bytesCopied:BYTES_COPIED",
                                              "bytesTotal:BYTES_TOTAL",
                                              "updatedAt:UPDATED", "details:DETAILS", NULL};
    if (c->is_json) {
        cli_print(c, v, head);
        return;
    }
    cli_print(c, v, head);
    json_t *st = json_object_get(v, "replicationStatus");
    printf("\nreplication: %s\n", json_string_value(json_object_get(st, "aggregatedState")));
    if (is_expanded) {
        printf("\n");
        cli_print(c, json_object_get(st, "summary"), status_cols);
    }
}

static int show(struct cli *c, const char *path)
{
    struct err e = {0};
    long status = 0;
    json_t *r = cli_call(c, "GET", path, NULL, &status, &e);
    if (r == NULL || status != 200)
        return cli_fail(c, r, status, &e);
    const char *expand = cli_opt(c, "expand");
    print_status(c, r, expand && strcmp(expand, "replication-status") == 0);
    json_decref(r);
    return 0;
}

/* One progress line: "eastus InProgress 12/40 MiB, westeurope Completed". */
static void print_progress(json_t *v)
{
    json_t *summary = json_object_get(json_object_get(v, "replicationStatus"), "summary");
    fprintf(stderr, "waiting:");
    for (size_t i = 0; i < json_array_size(summary); i++) {
        json_t *row = json_array_get(summary, i);
        fprintf(stderr, "%s %s %s", i ? "," : "",
                json_string_value(json_object_get(row, "region")),
                json_string_value(json_object_get(row, "state")));
        json_int_t total = json_integer_value(json_object_get(row, "bytesTotal"));
        if (total > 0 && strcmp(json_string_value(json_object_get(row, "state")), "InProgress") ==
                             0)
            fprintf(stderr, " %.1f/%.1f MiB",
                    (double)json_integer_value(json_object_get(row, "bytesCopied")) / 1048576.0,
                    (double)total / 1048576.0);
    }
    fprintf(stderr, "\n");
}

static int wait_replicated(struct cli *c, const char *path)
{
    int64_t timeout_s = 600;
    const char *t = cli_opt(c, "timeout");
    if (t && config_parse_duration(t, &timeout_s) != 0) {
        fprintf(stderr, "meridian: bad --timeout %s\n", t);
        return 2;
    }
    if (cli_opt(c, "replicated") == NULL)
        return usage();
    int64_t deadline = util_now_ms() + timeout_s * 1000;
    char last_line[4096] = "";
    for (;;) {
        struct err e = {0};
        long status = 0;
        json_t *r = cli_call(c, "GET", path, NULL, &status, &e);
        if (r && status == 200) {
            json_t *st = json_object_get(r, "replicationStatus");
            const char *agg = json_string_value(json_object_get(st, "aggregatedState"));
            char *line = json_dumps(json_object_get(st, "summary"), JSON_COMPACT);
            if (line && strcmp(line, last_line) != 0) {
                print_progress(r);
                snprintf(last_line, sizeof(last_line), "%s", line);
            }
            free(line);
            if (agg && strcmp(agg, "Completed") == 0) {
                print_status(c, r, true);
                json_decref(r);
                return 0;
            }
            if (agg && strcmp(agg, "Failed") == 0) {
                json_t *summary = json_object_get(st, "summary");
                for (size_t i = 0; i < json_array_size(summary); i++) {
                    json_t *row = json_array_get(summary, i);
                    if (strcmp(json_string_value(json_object_get(row, "state")), "Failed") == 0)
                        fprintf(stderr, "error: replication to %s failed: %s\n",
                                json_string_value(json_object_get(row, "region")),
                                json_string_value(json_object_get(row, "details")));
                }
                json_decref(r);
                return 1;
            }
        } else if (r && status != 404) {
            return cli_fail(c, r, status, &e);
        } else if (r == NULL) {
            fprintf(stderr, "waiting: %s\n", err_message(&e));
        }
        json_decref(r);
        if (util_now_ms() >= deadline) {
            fprintf(stderr, "error: timed out after %llds waiting for replication\n",
                    (long long)timeout_s);
            return 2;
        }
        struct timespec ts = {0, WAIT_POLL_MS * 1000000L};
        nanosleep(&ts, NULL);
    }
}

int cli_image_version(struct cli *c)
{
    char path[2048];
    if (c->verb == NULL || c->n_args != 1 || version_path(c->args[0], path, sizeof(path)) != 0)
        return usage();
    if (strcmp(c->verb, "show") == 0)
        return show(c, path);
    if (strcmp(c->verb, "wait") == 0)
        return wait_replicated(c, path);
    return usage();
}
