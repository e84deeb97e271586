/* `meridian image-version create|update|show|list|wait`: an image version, its publishing
 * profile (in an image definition) and its replication status; `wait --replicated`
 * polls until every target region (or those of --regions) is Completed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "cli.h"
#include "config.h"
#include "util.h"

#define WAIT_POLL_MS 500

static int usage(void)
{
    fprintf(stderr,
            "usage: meridian image-version show REPO:TAG|REPO@DIGEST [--expand replication-status]\n"
            "       meridian image-version list REPO [--region R]\n"
            "       meridian image-version create REPO:VERSION [PROFILE]\n"
            "       meridian image-version update REPO:VERSION [PROFILE] [--add-region R[=N]]\n"
            "                [--remove-region R]\n"
            "       meridian image-version wait REPO:TAG|REPO@DIGEST --replicated\n"
            "                [--regions a,b] [--timeout 10m]\n"
            "PROFILE: --target-regions eastus=1,westus=1[=class] --replica-count N\n"
            "         --storage-class C --exclude-from-latest[=false] --end-of-life-date D|none\n"
            "         --replication-mode Full|Shallow --allow-deletion-of-replicated-locations\n"
            "         --block-deletion-before-end-of-life\n"
            "options: --registry URL  --output table|json\n"
            "wait exits 0 when every target region is Completed, 1 when one Failed,\n"
            "2 on timeout.\n");
    return 2;
}

json_t *cli_target_regions(const char *s)
{
    json_t *out = json_array();
    char *copy = xstrdup(s), *save = NULL;
    for (char *t = strtok_r(copy, ", ", &save); t; t = strtok_r(NULL, ", ", &save))
        json_array_append_new(out, json_string(t));
    free(copy);
    return out;
}

int cli_bool_field(const struct cli *c, const char *name, json_t *o, const char *key)
{
    const char *v = cli_opt(c, name);
    if (v == NULL)
        return 0;
    if (strcmp(v, "true") != 0 && strcmp(v, "false") != 0) {
        fprintf(stderr, "meridian: --%s is true or false, not %s\n", name, v);
        return -1;
    }
    json_object_set_new(o, key, json_boolean(strcmp(v, "true") == 0));
    return 0;
}

/* The profile options as the API's body; NULL (message printed) on a malformed one. */
static json_t *profile_body(const struct cli *c)
{
    json_t *b = json_object();
    const char *v;
    if ((v = cli_opt(c, "target-regions")) != NULL)
        json_object_set_new(b, "targetRegions", cli_target_regions(v));
    if ((v = cli_opt(c, "add-region")) != NULL)
        json_object_set_new(b, "addRegions", cli_target_regions(v));
    if ((v = cli_opt(c, "remove-region")) != NULL)
        json_object_set_new(b, "removeRegions", cli_target_regions(v));
    if ((v = cli_opt(c, "replica-count")) != NULL) {
        char *end;
        long long n = strtoll(v, &end, 10);
        if (end == v || *end) {
            fprintf(stderr, "meridian: bad --replica-count %s\n", v);
            json_decref(b);
            return NULL;
        }
        json_object_set_new(b, "replicaCount", json_integer(n));
    }
    if ((v = cli_opt(c, "storage-class")) != NULL)
        json_object_set_new(b, "storageClass", json_string(v));
    if ((v = cli_opt(c, "end-of-life-date")) != NULL)
        json_object_set_new(b, "endOfLifeDate",
                            strcmp(v, "none") == 0 ? json_null() : json_string(v));
    if ((v = cli_opt(c, "replication-mode")) != NULL)
        json_object_set_new(b, "replicationMode", json_string(v));
    if (cli_bool_field(c, "exclude-from-latest", b, "excludeFromLatest") != 0 ||
        cli_bool_field(c, "allow-deletion-of-replicated-locations", b,
                       "allowDeletionOfReplicatedLocations") != 0 ||
        cli_bool_field(c, "block-deletion-before-end-of-life", b,
                       "blockDeletionBeforeEndOfLife") != 0) {
        json_decref(b);
        return NULL;
    }
    return b;
}

static void print_profile(const struct cli *c, json_t *v)
{
    static const char *const cols[] = {"name:REGION", "regionalReplicaCount:REPLICAS",
                                       "storageClass:STORAGE_CLASS",
                                       "excludeFromLatest:EXCLUDE_FROM_LATEST", NULL};
    json_t *pp = json_object_get(v, "publishingProfile");
    if (pp == NULL)
        return;
    const char *eol = json_string_value(json_object_get(pp, "endOfLifeDate"));
    printf("\nversion %s from %s, mode %s, excludeFromLatest %s, endOfLife %s%s\n\n",
           json_string_value(json_object_get(v, "version")),
           json_string_value(json_object_get(v, "sourceRegion")),
           json_string_value(json_object_get(pp, "replicationMode")),
           json_is_true(json_object_get(pp, "excludeFromLatest")) ? "true" : "false",
           eol ? eol : "none", json_is_true(json_object_get(v, "isEndOfLife")) ? " (past)" : "");
    cli_print(c, json_object_get(pp, "targetRegions"), cols);
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
                                              "progress:PROGRESS", "replicas:REPLICAS",
                                              "bytesCopied:BYTES_COPIED",
                                              "bytesTotal:BYTES_TOTAL",
                                              "updatedAt:UPDATED", "details:DETAILS", NULL};
    if (c->is_json) {
        cli_print(c, v, head);
        return;
    }
    cli_print(c, v, head);
    print_profile(c, v);
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
    /* ACG spells it ReplicationStatus */
    print_status(c, r,
                 expand && (strcmp(expand, "replication-status") == 0 ||
                            strcasecmp(expand, "ReplicationStatus") == 0));
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

/* --regions a,b: the wait looks at those target regions only (each must be one). */
static int only_regions(json_t *st, const char *regions)
{
    if (regions == NULL)
        return 0;
    json_t *want = cli_target_regions(regions), *summary = json_object_get(st, "summary");
    json_t *kept = json_array();
    size_t i;
    json_t *name;
    json_array_foreach(want, i, name)
    {
        json_t *row = NULL;
        for (size_t j = 0; j < json_array_size(summary); j++) {
            json_t *r = json_array_get(summary, j);
            if (json_equal(json_object_get(r, "region"), name))
                row = r;
        }
        if (row == NULL) {
            fprintf(stderr, "error: %s is not a target region of this version\n",
                    json_string_value(name));
            json_decref(want);
            json_decref(kept);
            return -1;
        }
        json_array_append(kept, row);
    }
    /* The same aggregation as the API's, over the kept rows. */
    size_t n = json_array_size(kept), completed = 0, started = 0;
    const char *agg = NULL;
    for (size_t j = 0; j < n && agg == NULL; j++) {
        const char *s = json_string_value(json_object_get(json_array_get(kept, j), "state"));
        if (strcmp(s, "Failed") == 0)
            agg = "Failed";
        completed += strcmp(s, "Completed") == 0;
        started += strcmp(s, "InProgress") == 0;
    }
    if (agg == NULL)
        agg = n > 0 && completed == n ? "Completed" : started + completed > 0 ? "InProgress"
                                                                               : "Pending";
    json_object_set_new(st, "summary", kept);
    json_object_set_new(st, "aggregatedState", json_string(agg));
    json_decref(want);
    return 0;
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
    c->deadline_ms = deadline; /* a region that stops answering ends the wait at its timeout */
    char last_line[4096] = "";
    for (;;) {
        struct err e = {0};
        long status = 0;
        json_t *r = cli_call(c, "GET", path, NULL, &status, &e);
        if (r && status == 200) {
            json_t *st = json_object_get(r, "replicationStatus");
            if (only_regions(st, cli_opt(c, "regions")) != 0) {
                json_decref(r);
                return 2;
            }
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
        util_sleep_ms(WAIT_POLL_MS);
    }
}

static int write_profile(struct cli *c, const char *method, const char *path)
{
    json_t *body = profile_body(c);
    if (body == NULL)
        return 2;
    struct err e = {0};
    long status = 0;
    json_t *r = cli_call(c, method, path, body, &status, &e);
    json_decref(body);
    if (r == NULL || (status != 200 && status != 201))
        return cli_fail(c, r, status, &e);
    static const char *const head[] = {"repository:REPOSITORY", "version:VERSION",
                                       "sourceRegion:SOURCE_REGION", NULL};
    cli_print(c, r, head);
    if (!c->is_json)
        print_profile(c, r);
    json_decref(r);
    return 0;
}

static int list(struct cli *c, const char *repo)
{
    static const char *const cols[] = {"version:VERSION", "state:STATE", "isLatest:LATEST",
                                       "excludeFromLatest:EXCLUDED",
                                       "endOfLifeDate:END_OF_LIFE", "isEndOfLife:PAST_EOL",
                                       "aggregatedState:REPLICATION", "digest:DIGEST", NULL};
    char *repo_q = cli_escape(repo, false);
    const char *region = cli_opt(c, "region");
    char *region_q = region ? cli_escape(region, false) : NULL;
    char path[2048];
    snprintf(path, sizeof(path), "image-versions?repository=%s%s%s", repo_q,
             region_q ? "&region=" : "", region_q ? region_q : "");
    free(repo_q);
    free(region_q);
    struct err e = {0};
    long status = 0;
    json_t *r = cli_call(c, "GET", path, NULL, &status, &e);
    if (r == NULL || status != 200)
        return cli_fail(c, r, status, &e);
    if (c->is_json) {
        cli_print(c, r, cols);
    } else {
        const char *latest = json_string_value(json_object_get(r, "latest"));
        printf("latest in %s: %s\n\n", json_string_value(json_object_get(r, "region")),
               latest ? latest : "(none)");
        cli_print(c, json_object_get(r, "versions"), cols);
    }
    json_decref(r);
    return 0;
}

int cli_image_version(struct cli *c)
{
    char path[2048];
    if (c->verb != NULL && strcmp(c->verb, "list") == 0 && c->n_args == 1)
        return list(c, c->args[0]);
    if (c->verb == NULL || c->n_args != 1 || version_path(c->args[0], path, sizeof(path)) != 0)
        return usage();
    if (strcmp(c->verb, "show") == 0)
        return show(c, path);
    if (strcmp(c->verb, "wait") == 0)
        return wait_replicated(c, path);
    if (strcmp(c->verb, "create") == 0)
        return write_profile(c, "POST", path);
    if (strcmp(c->verb, "update") == 0)
        return write_profile(c, "PATCH", path);
    return usage();
}
