/* POST compliance/check {"rules":[...]}: the registry against a compliance matrix
 * (docs/governance.md, "Compliance matrix"). Each rule names repositories (a pattern, or a
 * definition's exact name) and what they need: requiredRegions, minReplicaCount (copies in
 * each region that holds it), forbiddenRegions, maxLatestAgeS. A repository takes the first
 * rule that matches it. Each version of an image definition is one item (its regions and
 * copies from the replication status every region reports); a plain repository is one item
 * (its regions from every region's holdings). The counts by kind feed the
 * meridian_compliance_violations gauges. */
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "authz.h"
#include "config.h"
#include "image_catalog.h"
#include "metrics.h"
#include "mgmt_api.h"
#include "mgmt_compliance.h"
#include "name.h"
#include "registry_ctx.h"
#include "util.h"

static bool in_list(const json_t *list, const char *s)
{
    size_t i;
    json_t *v;
    json_array_foreach(list, i, v)
    {
        if (json_is_string(v) && strcmp(json_string_value(v), s) == 0)
            return true;
    }
    return false;
}

static int region_list_check(const json_t *rule, const char *key, size_t at, char **regions,
                             struct err *e)
{
    const json_t *list = json_object_get(rule, key);
    if (list == NULL)
        return 0;
    if (!json_is_array(list))
        return err_set(e, ERR_BAD_REQUEST, "rules[%zu].%s: expected an array of region names", at,
                       key);
    size_t i;
    json_t *v;
    json_array_foreach(list, i, v)
    {
        const char *name = json_string_value(v);
        bool known = false;
        for (size_t r = 0; name && regions[r]; r++)
            known |= strcmp(regions[r], name) == 0;
        if (!known)
            return err_set(e, ERR_BAD_REQUEST, "rules[%zu].%s[%zu]: %s%s%s", at, key, i,
                           name ? "unknown region \"" : "expected a region name", name ? name : "",
                           name ? "\"" : "");
    }
    return 0;
}

static int positive_check(const json_t *rule, const char *key, size_t at, struct err *e)
{
    const json_t *v = json_object_get(rule, key);
    if (v != NULL && (!json_is_integer(v) || json_integer_value(v) < 1))
        return err_set(e, ERR_BAD_REQUEST, "rules[%zu].%s: expected an integer of at least 1", at,
                       key);
    return 0;
}

/* 0 when matrix is a valid matrix over regions; else e says what is wrong, and where. */
static int matrix_check(const json_t *matrix, char **regions, struct err *e)
{
    const json_t *rules = json_object_get(matrix, "rules");
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)matrix, key, v)
    {
        if (strcmp(key, "rules") != 0)
            return err_set(e, ERR_BAD_REQUEST, "unknown field \"%s\" (expected \"rules\")", key);
    }
    if (!json_is_array(rules) || json_array_size(rules) == 0)
        return err_set(e, ERR_BAD_REQUEST, "rules: expected a non-empty array of rules");
    static const char *const fields[] = {"repositories",     "requiredRegions", "minReplicaCount",
                                         "forbiddenRegions", "maxLatestAgeS",   NULL};
    size_t at;
    json_t *rule;
    json_array_foreach(rules, at, rule)
    {
        if (!json_is_object(rule))
            return err_set(e, ERR_BAD_REQUEST, "rules[%zu]: expected an object", at);
        json_object_foreach(rule, key, v)
        {
            bool known = false;
            for (size_t f = 0; fields[f]; f++)
                known |= strcmp(fields[f], key) == 0;
            if (!known)
                return err_set(e, ERR_BAD_REQUEST, "rules[%zu]: unknown field \"%s\"", at, key);
        }
        const char *pattern = json_string_value(json_object_get(rule, "repositories"));
        if (pattern == NULL || !auth_pattern_is_valid(pattern, strlen(pattern)))
            return err_set(e, ERR_BAD_REQUEST,
                           "rules[%zu].repositories: expected a repository pattern", at);
        if (region_list_check(rule, "requiredRegions", at, regions, e) != 0 ||
            region_list_check(rule, "forbiddenRegions", at, regions, e) != 0 ||
            positive_check(rule, "minReplicaCount", at, e) != 0 ||
            positive_check(rule, "maxLatestAgeS", at, e) != 0)
            return -1;
        json_t *r;
        size_t i;
        json_array_foreach(json_object_get(rule, "requiredRegions"), i, r)
        {
            if (in_list(json_object_get(rule, "forbiddenRegions"), json_string_value(r)))
                return err_set(e, ERR_BAD_REQUEST,
                               "rules[%zu]: region \"%s\" is both required and forbidden", at,
                               json_string_value(r));
        }
    }
    return 0;
}

struct tally {
    uint64_t by_kind[METRICS_COMPLIANCE_COUNT_];
};

static void flag(json_t *violations, struct tally *t, enum metrics_compliance_kind k)
{
    json_array_append_new(violations, json_string(metrics_compliance_kind_name(k)));
    t->by_kind[k]++;
}

/* The checks common to both kinds of item; item has replicaRegions (and copies). */
static void judge(json_t *item, const json_t *rule, struct tally *t)
{
    json_t *violations = json_array(), *missing = json_array(), *forbidden = json_array();
    json_t *below = json_array();
    const json_t *present = json_object_get(item, "replicaRegions");
    size_t i;
    json_t *r;
    json_array_foreach(json_object_get(rule, "requiredRegions"), i, r)
    {
        if (!in_list(present, json_string_value(r)))
            json_array_append(missing, r);
    }
    json_array_foreach(json_object_get(rule, "forbiddenRegions"), i, r)
    {
        if (in_list(present, json_string_value(r)))
            json_array_append(forbidden, r);
    }
    json_int_t min = json_integer_value(json_object_get(rule, "minReplicaCount"));
    const json_t *copies = json_object_get(item, "copies");
    const char *region;
    json_t *n;
    json_object_foreach((json_t *)copies, region, n)
    {
        if (min > 0 && json_is_integer(n) && json_integer_value(n) < min)
            json_array_append_new(below, json_pack("{s:s,s:O}", "region", region, "copies", n));
    }
    if (json_array_size(missing) > 0)
        flag(violations, t, METRICS_COMPLIANCE_MISSING_REQUIRED_REGION);
    if (json_array_size(below) > 0)
        flag(violations, t, METRICS_COMPLIANCE_BELOW_MIN_REPLICAS);
    if (json_array_size(forbidden) > 0)
        flag(violations, t, METRICS_COMPLIANCE_IN_FORBIDDEN_REGION);
    if (json_is_true(json_object_get(item, "endOfLifePassed")))
        flag(violations, t, METRICS_COMPLIANCE_END_OF_LIFE_PASSED);
    if (json_is_true(json_object_get(item, "latestTooOld")))
        flag(violations, t, METRICS_COMPLIANCE_LATEST_TOO_OLD);
    json_object_set_new(item, "missingRequiredRegions", missing);
    json_object_set_new(item, "forbiddenRegionsPresent", forbidden);
    json_object_set_new(item, "belowMinReplicas", below);
    json_object_set_new(item, "compliant", json_boolean(json_array_size(violations) == 0));
    json_object_set_new(item, "violations", violations);
}

/* latestAgeS and latestTooOld of an item that is (or holds) `latest`, aged age_ms. */
static void latest_age(json_t *item, const json_t *rule, int64_t age_ms)
{
    json_int_t max = json_integer_value(json_object_get(rule, "maxLatestAgeS"));
    json_object_set_new(item, "latestAgeS", json_integer(age_ms / 1000));
    json_object_set_new(item, "latestTooOld", json_boolean(max > 0 && age_ms > max * 1000));
}

/* One item per version of definition repo. */
static int version_items(struct registry *reg, const char *repo, const json_t *rule, size_t rule_at,
                         json_t *items, struct tally *t, struct err *e)
{
    json_t *records = image_catalog_versions(reg->ms, repo, e);
    if (records == NULL)
        return -1;
    char *latest = mgmt_image_latest(reg, repo, reg->cfg->region, e);
    if (latest == NULL && e->code != ERR_NONE) {
        json_decref(records);
        return -1;
    }
    int64_t now = util_now_ms();
    size_t i;
    json_t *rec;
    json_array_foreach(records, i, rec)
    {
        const char *version = json_string_value(json_object_get(rec, "version"));
        struct err ve = {0};
        json_t *doc = mgmt_image_version_doc(reg, repo, version, &ve);
        if (doc == NULL)
            continue; /* gone since the listing */
        json_t *present = json_array(), *copies = json_object();
        size_t j;
        json_t *row;
        json_array_foreach(json_object_get(json_object_get(doc, "replicationStatus"), "summary"), j,
                           row)
        {
            const char *state = json_string_value(json_object_get(row, "state"));
            const char *region = json_string_value(json_object_get(row, "region"));
            /* Completed: pullable there; Removing, Retained: its copies are still there */
            if (strcmp(state, "Completed") == 0 || strcmp(state, "Removing") == 0 ||
                strcmp(state, "Retained") == 0)
                json_array_append_new(present, json_string(region));
            if (json_object_get(row, "copies") != NULL)
                json_object_set(copies, region, json_object_get(row, "copies"));
        }
        json_t *item = json_pack(
            "{s:s,s:s,s:O,s:I,s:O,s:O,s:o,s:o,s:O,s:O,s:b,s:n,s:b}", "repository", repo, "version",
            version, "digest", json_object_get(doc, "digest"), "rule", (json_int_t)rule_at,
            "sourceRegion", json_object_get(doc, "sourceRegion"), "targetRegions",
            json_object_get(json_object_get(doc, "publishingProfile"), "targetRegions"),
            "replicaRegions", present, "copies", copies, "state",
            json_object_get(json_object_get(doc, "replicationStatus"), "aggregatedState"),
            "endOfLifeDate",
            json_object_get(json_object_get(doc, "publishingProfile"), "endOfLifeDate"),
            "endOfLifePassed", json_is_true(json_object_get(doc, "isEndOfLife")), "latestAgeS",
            "isLatest", latest != NULL && strcmp(latest, version) == 0);
        /* targetRegions as names */
        json_t *names = json_array();
        json_array_foreach(json_object_get(item, "targetRegions"), j, row)
            json_array_append(names, json_object_get(row, "name"));
        json_object_set_new(item, "targetRegions", names);
        int64_t published = 0;
        if (json_is_true(json_object_get(item, "isLatest")) &&
            iv_date_parse(json_string_value(json_object_get(
                              json_object_get(doc, "publishingProfile"), "publishedDate")),
                          &published) == 0)
            latest_age(item, rule, now - published);
        else
            json_object_set_new(item, "latestTooOld", json_false());
        json_decref(doc);
        judge(item, rule, t);
        json_array_append_new(items, item);
    }
    free(latest);
    json_decref(records);
    return 0;
}

/* The item of a plain repository: the regions holding it; its `latest` tag's age here. */
static json_t *repository_item(struct registry *reg, const char *repo, const json_t *rule,
                               size_t rule_at, char **regions, const json_t *by_region,
                               struct tally *t)
{
    json_t *present = json_array(), *unknown = json_array();
    for (size_t r = 0; regions[r]; r++) {
        const json_t *h = json_object_get(by_region, regions[r]);
        if (!json_is_object(h))
            json_array_append_new(unknown, json_string(regions[r]));
        else if (json_object_get(json_object_get(h, "repositories"), repo) != NULL)
            json_array_append_new(present, json_string(regions[r]));
    }
    json_t *item =
        json_pack("{s:s,s:n,s:I,s:o,s:o,s:n,s:b,s:n}", "repository", repo, "version", "rule",
                  (json_int_t)rule_at, "replicaRegions", present, "unknownRegions", unknown,
                  "copies", "endOfLifePassed", false, "latestAgeS");
    json_object_set_new(item, "latestTooOld", json_false());
    struct digest d;
    char *media_type = NULL;
    int64_t size = 0, recorded_ms = 0;
    bool is_visible = false;
    struct err e = {0};
    if (reg->ms->ops->manifest_lookup(reg->ms, repo, "latest", &d, &media_type, &size, &is_visible,
                                      &recorded_ms, &e) == 0 &&
        is_visible)
        latest_age(item, rule, util_now_ms() - recorded_ms);
    free(media_type);
    judge(item, rule, t);
    return item;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The repositories the holdings or the definitions speak of, sorted; free the array. */
static const char **repositories_of(struct registry *reg, const json_t *by_region, json_t *set,
                                    size_t *n_out)
{
    const char *region, *repo;
    json_t *h, *v;
    json_object_foreach((json_t *)by_region, region, h)
    {
        json_object_foreach(json_object_get(h, "repositories"), repo, v)
            json_object_set_new(set, repo, json_true());
    }
    struct err e = {0};
    json_t *defs = image_catalog_definitions(reg->ms, &e);
    size_t i;
    json_array_foreach(defs, i, v)
    {
        const char *name = json_string_value(json_object_get(v, "repository"));
        if (name)
            json_object_set_new(set, name, json_true());
    }
    json_decref(defs);
    const char **repos = xcalloc(json_object_size(set) + 1, sizeof(char *));
    size_t k = 0;
    json_object_foreach(set, repo, v) repos[k++] = repo;
    qsort(repos, k, sizeof(char *), by_name);
    *n_out = k;
    return repos;
}

/* POST compliance/check */
void mgmt_compliance_check(struct http_req *req, const struct mgmt_params *p)
{
    (void)p;
    struct registry *reg = req->reg;
    json_t *matrix = mgmt_body_object(req);
    if (matrix == NULL)
        return;
    char **regions = NULL;
    json_t *by_region = mgmt_all_holdings(reg, &regions);
    struct err e = {0};
    if (matrix_check(matrix, regions, &e) != 0) {
        json_decref(matrix);
        json_decref(by_region);
        mgmt_names_free(regions);
        http_reply_mgmt_err(req, &e);
        return;
    }
    const json_t *rules = json_object_get(matrix, "rules");
    json_t *set = json_object();
    size_t n = 0;
    const char **repos = repositories_of(reg, by_region, set, &n);
    json_t *items = json_array();
    struct tally t = {0};
    bool is_partial = false; /* some repository was left out: the caller may not pull it */
    for (size_t i = 0; i < n && e.code == ERR_NONE; i++) {
        if (!authz_can(req, repos[i], AUTH_PERM_PULL, false)) {
            is_partial = true;
            continue; /* the caller sees what it may pull (an auditor: consumer on "*") */
        }
        size_t at;
        json_t *rule = NULL;
        json_array_foreach(rules, at, rule)
        {
            if (name_matches_pattern(json_string_value(json_object_get(rule, "repositories")),
                                     repos[i]))
                break;
        }
        if (at == json_array_size(rules))
            continue; /* no rule speaks of it */
        if (image_catalog_is_definition(reg->ms, repos[i]))
            version_items(reg, repos[i], rule, at, items, &t, &e);
        else
            json_array_append_new(items,
                                  repository_item(reg, repos[i], rule, at, regions, by_region, &t));
    }
    if (e.code != ERR_NONE) {
        free(repos);
        json_decref(set);
        json_decref(items);
        json_decref(matrix);
        json_decref(by_region);
        mgmt_names_free(regions);
        http_reply_mgmt_err(req, &e);
        return;
    }
    int64_t now = util_now_ms();
    /* The gauges are the registry's: only a check that saw every repository sets them (one
     * that saw part of it would clear violations its caller cannot see). */
    if (!is_partial)
        metrics_compliance_set(t.by_kind, now);
    json_t *by_kind = json_object();
    json_int_t total = 0;
    for (size_t k = 0; k < METRICS_COMPLIANCE_COUNT_; k++) {
        json_object_set_new(by_kind, metrics_compliance_kind_name(k),
                            json_integer((json_int_t)t.by_kind[k]));
        total += (json_int_t)t.by_kind[k];
    }
    json_t *region_rows = json_array();
    for (size_t r = 0; regions[r]; r++)
        json_array_append_new(region_rows,
                              json_pack("{s:s,s:b}", "name", regions[r], "answered",
                                        json_is_object(json_object_get(by_region, regions[r]))));
    json_t *out = json_pack("{s:s,s:I,s:o,s:O,s:o,s:I,s:o}", "region", reg->cfg->region,
                            "generatedMs", (json_int_t)now, "regions", region_rows, "rules", rules,
                            "items", items, "violations", total, "violationsByKind", by_kind);
    free(repos);
    json_decref(set);
    json_decref(matrix);
    json_decref(by_region);
    mgmt_names_free(regions);
    mgmt_reply_json(req, 200, out);
}
