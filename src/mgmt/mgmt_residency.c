/* Residency policies and the compliance report (docs/governance.md, "Residency"):
 *   PUT    policies/residency/{name} {"repositories","allowedRegions","deniedRegions"}
 *   GET    policies/residency[/{name}]     DELETE policies/residency/{name}
 *   GET    compliance[?repository=PATTERN]  the regions that hold each repository against
 *          the regions its policies allow, with every violation
 *   GET    replication/holdings             (peer API) what this region holds
 * Changing a policy needs admin (authz.c), is audited (residency.set / residency.delete) and
 * replicates as an object; each region removes what the policy now forbids it to hold
 * (residency_enforce.h). The report asks every region for its holdings: a region that does
 * not answer is listed as unknown, never as compliant. */
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "authz.h"
#include "config.h"
#include "image_catalog.h"
#include "mgmt_api.h"
#include "mgmt_compliance.h"
#include "name.h"
#include "registry_ctx.h"
#include "repl.h"
#include "residency.h"
#include "residency_enforce.h"
#include "util.h"

#define HOLDINGS_TIMEOUT_MS 10000

static bool is_valid_pattern(const char *s)
{
    return auth_pattern_is_valid(s, strlen(s));
}

/* PUT policies/residency/{name} */
void mgmt_residency_set(struct http_req *req, const struct mgmt_params *p)
{
    struct registry *reg = req->reg;
    const char *name = mgmt_param(p, "name");
    json_t *body = mgmt_body_object(req);
    if (body == NULL)
        return;
    struct err e = {0};
    json_t *policy = residency_policy_new(name, body, is_valid_pattern, config_is_valid_region,
                                          util_now_ms(), &e);
    json_decref(body);
    char *value = policy ? json_dumps(policy, JSON_COMPACT) : NULL;
    if (policy == NULL || reg->ms->ops->object_put(reg->ms, RESIDENCY_KIND, name, value, &e) != 0) {
        free(value);
        json_decref(policy);
        http_reply_mgmt_err(req, &e);
        return;
    }
    authz_audit_as(req, "residency.set", "%s", value);
    authz_invalidate(reg->authz); /* the next peer read obeys it (authz.c keeps policies) */
    free(value);
    if (reg->repl)
        repl_log_grew(reg->repl);
    residency_enforce_run(reg); /* this region drops at once what it may no longer hold */
    mgmt_reply_json(req, 200, policy);
}

/* GET policies/residency */
void mgmt_residency_list(struct http_req *req, const struct mgmt_params *p)
{
    (void)p;
    struct err e = {0};
    json_t *all = residency_policies(req->reg->ms, &e);
    if (all == NULL) {
        http_reply_mgmt_err(req, &e);
        return;
    }
    mgmt_reply_json(req, 200, all);
}

/* A name no policy can have (bytes outside the grammar, which PostgreSQL refuses to even
 * compare when they are not UTF-8) names none: 404 without asking the metastore. */
static bool reply_if_no_such_name(struct http_req *req, const char *name)
{
    if (name != NULL && residency_name_is_valid(name))
        return false;
    mgmt_reply_error(req, ERR_NOT_FOUND, "no such residency policy");
    return true;
}

/* GET policies/residency/{name} */
void mgmt_residency_show(struct http_req *req, const struct mgmt_params *p)
{
    const char *name = mgmt_param(p, "name");
    if (reply_if_no_such_name(req, name))
        return;
    char *value = NULL;
    struct err e = {0};
    if (req->reg->ms->ops->object_get(req->reg->ms, RESIDENCY_KIND, name, &value, &e) != 0) {
        if (e.code == ERR_NOT_FOUND)
            err_set(&e, ERR_NOT_FOUND, "no residency policy named %s", name);
        http_reply_mgmt_err(req, &e);
        return;
    }
    json_error_t je;
    json_t *v = json_loads(value, 0, &je);
    free(value);
    mgmt_reply_json(req, 200, v ? v : json_object());
}

/* DELETE policies/residency/{name} */
void mgmt_residency_delete(struct http_req *req, const struct mgmt_params *p)
{
    const char *name = mgmt_param(p, "name");
    if (reply_if_no_such_name(req, name))
        return;
    struct err e = {0};
    if (req->reg->ms->ops->object_delete(req->reg->ms, RESIDENCY_KIND, name, &e) != 0) {
        if (e.code == ERR_NOT_FOUND)
            err_set(&e, ERR_NOT_FOUND, "no residency policy named %s", name);
        http_reply_mgmt_err(req, &e);
        return;
    }
    authz_audit_as(req, "residency.delete", "%s", name);
    authz_invalidate(req->reg->authz);
    if (req->reg->repl)
        repl_log_grew(req->reg->repl);
    mgmt_reply_json(req, 200, json_pack("{s:s}", "deleted", name));
}

/* What this region holds, as {"region","repositories":{REPO:{"manifests","blobs"}}}. */
static json_t *holdings_json(struct registry *reg, struct err *e)
{
    struct meta_holding_list h;
    if (reg->ms->ops->holdings(reg->ms, &h, e) != 0)
        return NULL;
    json_t *repos = json_object();
    for (size_t i = 0; i < h.n; i++)
        json_object_set_new(repos, h.items[i].repo,
                            json_pack("{s:I,s:I}", "manifests", (json_int_t)h.items[i].n_manifests,
                                      "blobs", (json_int_t)h.items[i].n_blobs));
    meta_holding_list_fini(&h);
    return json_pack("{s:s,s:o}", "region", reg->cfg->region, "repositories", repos);
}

/* GET replication/holdings (peer API) */
void mgmt_repl_holdings(struct http_req *req, const struct mgmt_params *p)
{
    (void)p;
    struct err e = {0};
    json_t *out = holdings_json(req->reg, &e);
    if (out == NULL) {
        http_reply_mgmt_err(req, &e);
        return;
    }
    mgmt_reply_json(req, 200, out);
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Every region's holdings: {REGION: holdings or null (no answer)}; *regions_out gets the
 * region names, sorted (NULL-terminated; free with names_free). */
json_t *mgmt_all_holdings(struct registry *reg, char ***regions_out)
{
    json_t *by_region = json_object();
    json_t *list = reg->repl ? repl_replications_json(reg->repl, NULL) : json_array();
    size_t n = json_array_size(list);
    char **names = xcalloc(n + 2, sizeof(char *));
    size_t k = 0;
    names[k++] = xstrdup(reg->cfg->region);
    struct err e = {0};
    json_object_set_new(by_region, reg->cfg->region, holdings_json(reg, &e));
    for (size_t i = 0; i < n; i++) {
        const char *loc = json_string_value(json_object_get(json_array_get(list, i), "location"));
        if (loc == NULL || strcmp(loc, reg->cfg->region) == 0)
            continue;
        names[k++] = xstrdup(loc);
        struct err pe = {0};
        json_t *h = repl_peer_get(reg->repl, loc, "replication/holdings", HOLDINGS_TIMEOUT_MS, &pe);
        json_object_set_new(by_region, loc, h ? h : json_null());
    }
    json_decref(list);
    qsort(names, k, sizeof(char *), by_name);
    *regions_out = names;
    return by_region;
}

void mgmt_names_free(char **names)
{
    for (size_t i = 0; names && names[i]; i++)
        free(names[i]);
    free(names);
}

/* Violations of an image definition's records: targets a policy forbids. */
static void version_violations(struct registry *reg, const json_t *policies, const char *repo,
                               json_t *violations)
{
    struct err e = {0};
    json_t *def = image_catalog_definition(reg->ms, repo, &e);
    size_t i;
    json_t *t;
    json_array_foreach(json_object_get(def, "defaultTargetRegions"), i, t)
    {
        const char *region = json_is_string(t) ? json_string_value(t)
                                               : json_string_value(json_object_get(t, "name"));
        const json_t *p = region ? residency_forbidding(policies, repo, region) : NULL;
        if (p != NULL)
            json_array_append_new(
                violations, json_pack("{s:s,s:s,s:O}", "kind", "default-target-forbidden", "region",
                                      region, "policy", json_object_get(p, "name")));
    }
    json_decref(def);
    json_t *records = image_catalog_versions(reg->ms, repo, &e);
    json_t *rec;
    json_array_foreach(records, i, rec)
    {
        const char **targets = iv_targets(rec);
        for (size_t j = 0; targets[j]; j++) {
            const json_t *p = residency_forbidding(policies, repo, targets[j]);
            if (p != NULL)
                json_array_append_new(
                    violations, json_pack("{s:s,s:O,s:s,s:O}", "kind", "target-forbidden",
                                          "version", json_object_get(rec, "version"), "region",
                                          targets[j], "policy", json_object_get(p, "name")));
        }
        free(targets);
    }
    json_decref(records);
}

/* The names of the repositories policies or holdings speak of (sorted, unique). */
static json_t *repositories_of(struct registry *reg, const json_t *by_region)
{
    json_t *set = json_object();
    const char *region;
    json_t *h;
    json_object_foreach((json_t *)by_region, region, h)
    {
        const char *repo;
        json_t *v;
        json_object_foreach(json_object_get(h, "repositories"), repo, v)
            json_object_set_new(set, repo, json_true());
    }
    struct err e = {0};
    json_t *defs = image_catalog_definitions(reg->ms, &e);
    size_t i;
    json_t *d;
    json_array_foreach(defs, i, d)
    {
        const char *repo = json_string_value(json_object_get(d, "repository"));
        if (repo)
            json_object_set_new(set, repo, json_true());
    }
    json_decref(defs);
    return set; /* jansson keeps insertion order; the caller sorts */
}

/* One repository's row of the report; NULL when filtered out. */
static json_t *report_row(struct registry *reg, const json_t *policies, const char *repo,
                          char **regions, const json_t *by_region)
{
    json_t *held = json_array(), *unknown = json_array(), *violations = json_array();
    json_t *matching = json_array();
    size_t i;
    const json_t *p;
    json_array_foreach(policies, i, p)
    {
        if (name_matches_pattern(json_string_value(json_object_get(p, "repositories")), repo))
            json_array_append(matching, json_object_get(p, "name"));
    }
    for (size_t r = 0; regions[r]; r++) {
        const json_t *h = json_object_get(by_region, regions[r]);
        if (!json_is_object(h)) {
            json_array_append_new(unknown, json_string(regions[r]));
            continue;
        }
        const json_t *mine = json_object_get(json_object_get(h, "repositories"), repo);
        if (mine == NULL)
            continue;
        json_array_append_new(held, json_string(regions[r]));
        const json_t *forbidding = residency_forbidding(policies, repo, regions[r]);
        if (forbidding != NULL)
            json_array_append_new(violations,
                                  json_pack("{s:s,s:s,s:O,s:O,s:O}", "kind",
                                            "held-in-forbidden-region", "region", regions[r],
                                            "policy", json_object_get(forbidding, "name"),
                                            "manifests", json_object_get(mine, "manifests"),
                                            "blobs", json_object_get(mine, "blobs")));
    }
    if (image_catalog_is_definition(reg->ms, repo))
        version_violations(reg, policies, repo, violations);
    json_t *allowed = residency_allowed_json(policies, repo, (const char *const *)regions);
    bool is_compliant = json_array_size(violations) == 0;
    const char *state = !is_compliant                  ? "Violation"
                        : json_array_size(unknown) > 0 ? "Unknown"
                                                       : "Compliant";
    return json_pack("{s:s,s:o,s:o,s:o,s:o,s:s,s:o}", "repository", repo, "policies", matching,
                     "allowedRegions", allowed, "heldIn", held, "unknownRegions", unknown, "state",
                     state, "violations", violations);
}

/* GET compliance[?repository=PATTERN] */
void mgmt_compliance_report(struct http_req *req, const struct mgmt_params *p)
{
    (void)p;
    struct registry *reg = req->reg;
    const char *pattern = http_req_query(req, "repository");
    if (pattern != NULL && !is_valid_pattern(pattern)) {
        mgmt_reply_error(req, ERR_BAD_REQUEST, "repository: expected a repository pattern");
        return;
    }
    struct err e = {0};
    json_t *policies = residency_policies(reg->ms, &e);
    if (policies == NULL) {
        http_reply_mgmt_err(req, &e);
        return;
    }
    char **regions = NULL;
    json_t *by_region = mgmt_all_holdings(reg, &regions);
    json_t *set = repositories_of(reg, by_region);
    size_t n = json_object_size(set), k = 0;
    const char **repos = xcalloc(n + 1, sizeof(char *));
    const char *repo;
    json_t *v;
    json_object_foreach(set, repo, v) repos[k++] = repo;
    qsort(repos, k, sizeof(char *), by_name);
    json_t *rows = json_array();
    size_t n_violations = 0;
    for (size_t i = 0; i < k; i++) {
        /* the caller sees the repositories it may pull (an auditor: consumer on "*") */
        if ((pattern != NULL && !name_matches_pattern(pattern, repos[i])) ||
            !authz_can(req, repos[i], AUTH_PERM_PULL, false))
            continue;
        json_t *row = report_row(reg, policies, repos[i], regions, by_region);
        n_violations += json_array_size(json_object_get(row, "violations"));
        json_array_append_new(rows, row);
    }
    json_t *region_rows = json_array();
    for (size_t r = 0; regions[r]; r++)
        json_array_append_new(region_rows,
                              json_pack("{s:s,s:b}", "name", regions[r], "answered",
                                        json_is_object(json_object_get(by_region, regions[r]))));
    json_t *out = json_pack("{s:s,s:I,s:o,s:O,s:o,s:I}", "region", reg->cfg->region, "generatedMs",
                            (json_int_t)util_now_ms(), "regions", region_rows, "policies", policies,
                            "repositories", rows, "violations", (json_int_t)n_violations);
    free(repos);
    json_decref(set);
    json_decref(by_region);
    json_decref(policies);
    mgmt_names_free(regions);
    mgmt_reply_json(req, 200, out);
}
