/* Residency policies (residency.h): their records, the rule that decides whether a region
 * may hold a repository, and which events concern a repository. */
#include "residency.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "image_catalog.h"
#include "name.h"
#include "repo_locks.h"
#include "retention.h"
#include "util.h"

json_t *residency_policies(struct metastore *ms, struct err *e)
{
    struct meta_name_list keys = {0}, values = {0};
    if (ms->ops->object_list(ms, RESIDENCY_KIND, &keys, &values, e) != 0)
        return NULL;
    json_t *out = json_array();
    for (size_t i = 0; i < values.n; i++) {
        json_error_t je;
        json_t *v = json_loads(values.names[i], 0, &je);
        if (json_is_object(v))
            json_array_append_new(out, v);
        else
            json_decref(v);
    }
    meta_name_list_fini(&keys);
    meta_name_list_fini(&values);
    return out;
}

static bool is_listed(const json_t *list, const char *region)
{
    size_t i;
    const json_t *r;
    json_array_foreach(list, i, r)
    {
        const char *s = json_string_value(r);
        if (s != NULL && strcmp(s, region) == 0)
            return true;
    }
    return false;
}

static bool policy_allows(const json_t *p, const char *region)
{
    const json_t *allowed = json_object_get(p, "allowedRegions");
    if (json_array_size(allowed) > 0 && !is_listed(allowed, region))
        return false;
    return !is_listed(json_object_get(p, "deniedRegions"), region);
}

const json_t *residency_forbidding(const json_t *policies, const char *repo, const char *region)
{
    size_t i;
    const json_t *p;
    json_array_foreach(policies, i, p)
    {
        const char *pattern = json_string_value(json_object_get(p, "repositories"));
        if (name_matches_pattern(pattern, repo) && !policy_allows(p, region))
            return p;
    }
    return NULL;
}

const json_t *residency_forbidding_enforced(const json_t *policies, const char *repo,
                                           const char *region)
{
    size_t i;
    const json_t *p;
    json_array_foreach(policies, i, p)
    {
        const char *pattern = json_string_value(json_object_get(p, "repositories"));
        /* a policy from before the flag was enforced: it stays so */
        const json_t *enforce = json_object_get(p, "enforce");
        if (name_matches_pattern(pattern, repo) && !policy_allows(p, region) &&
            (enforce == NULL || json_is_true(enforce)))
            return p;
    }
    return NULL;
}

bool residency_allows(const json_t *policies, const char *repo, const char *region)
{
    return residency_forbidding(policies, repo, region) == NULL;
}

json_t *residency_allowed_json(const json_t *policies, const char *repo, const char *const *world)
{
    json_t *out = json_array();
    for (size_t i = 0; world != NULL && world[i] != NULL; i++) {
        if (residency_allows(policies, repo, world[i]))
            json_array_append_new(out, json_string(world[i]));
    }
    return out;
}

/* "allowed in a, b; denied in c" of policy p, for a message. */
static void describe(const json_t *p, char *out, size_t len)
{
    size_t n = 0;
    const char *what[2] = {"allowedRegions", "deniedRegions"};
    const char *label[2] = {"allows only", "denies"};
    out[0] = '\0';
    for (int k = 0; k < 2; k++) {
        const json_t *list = json_object_get(p, what[k]);
        if (json_array_size(list) == 0)
            continue;
        n += (size_t)snprintf(out + n, n < len ? len - n : 0, "%s%s ", n ? "; " : "", label[k]);
        for (size_t i = 0; i < json_array_size(list) && n < len; i++)
            n += (size_t)snprintf(out + n, len - n, "%s%s", i ? ", " : "",
                                  json_string_value(json_array_get(list, i)));
    }
}

static int deny(const json_t *p, const char *repo, const char *region, const char *what,
                struct err *e)
{
    char rule[400];
    describe(p, rule, sizeof(rule));
    return err_set(e, ERR_DENIED, "%s %s may not be held in region %s: residency policy %s (%s) %s",
                   what, repo, region, json_string_value(json_object_get(p, "name")),
                   json_string_value(json_object_get(p, "repositories")), rule);
}

int residency_check(struct metastore *ms, const char *repo, const char *region, struct err *e)
{
    json_t *policies = residency_policies(ms, e);
    if (policies == NULL)
        return -1;
    const json_t *p = residency_forbidding(policies, repo, region);
    int rc = p != NULL ? deny(p, repo, region, "repository", e) : 0;
    json_decref(policies);
    return rc;
}

int residency_check_targets(struct metastore *ms, const char *repo, const json_t *record,
                            struct err *e)
{
    const json_t *list = json_object_get(record, "defaultTargetRegions");
    if (list == NULL)
        list = json_object_get(json_object_get(record, "publishingProfile"), "targetRegions");
    if (json_array_size(list) == 0)
        return 0;
    json_t *policies = residency_policies(ms, e);
    if (policies == NULL)
        return -1;
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < json_array_size(list); i++) {
        const json_t *t = json_array_get(list, i);
        const char *region = json_is_string(t) ? json_string_value(t)
                                               : json_string_value(json_object_get(t, "name"));
        const json_t *p = region ? residency_forbidding(policies, repo, region) : NULL;
        if (p != NULL)
            rc = deny(p, repo, region, "target region of", e);
    }
    json_decref(policies);
    return rc;
}

/* A list of region names from body member key into out (absent: empty). */
static int region_list(const json_t *body, const char *key, bool (*is_valid)(const char *),
                       json_t *out, struct err *e)
{
    const json_t *list = json_object_get(body, key);
    if (list == NULL)
        return 0;
    if (!json_is_array(list) || json_array_size(list) > RESIDENCY_MAX_REGIONS)
        return err_set(e, ERR_BAD_REQUEST, "%s: expected a list of at most %d region names", key,
                       RESIDENCY_MAX_REGIONS);
    for (size_t i = 0; i < json_array_size(list); i++) {
        const char *r = json_string_value(json_array_get(list, i));
        if (r == NULL || !is_valid(r))
            return err_set(e, ERR_BAD_REQUEST, "%s: %s is not a region name", key,
                           r ? r : "a non-string");
        if (is_listed(out, r))
            return err_set(e, ERR_BAD_REQUEST, "%s: %s is listed twice", key, r);
        json_array_append_new(out, json_string(r));
    }
    return 0;
}

bool residency_name_is_valid(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > RESIDENCY_NAME_MAX || s[0] == '.')
        return false; /* "." and ".." are path segments, not names */
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        bool ok =
            (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.';
        if (!ok)
            return false;
    }
    return true;
}

json_t *residency_policy_new(const char *name, const json_t *body,
                             bool (*is_valid_pattern)(const char *),
                             bool (*is_valid_region)(const char *), int64_t now_ms, struct err *e)
{
    if (name == NULL || !residency_name_is_valid(name)) {
        err_set(e, ERR_BAD_REQUEST,
                "name: expected 1 to %d characters of a-z, 0-9, '-', '_' and '.', not first '.'",
                RESIDENCY_NAME_MAX);
        return NULL;
    }
    const char *pattern = json_string_value(json_object_get(body, "repositories"));
    if (pattern == NULL || !is_valid_pattern(pattern)) {
        err_set(e, ERR_BAD_REQUEST, "repositories: expected a repository pattern ('eu/*')");
        return NULL;
    }
    const char *known[] = {"name", "repositories", "allowedRegions", "deniedRegions", "enforce",
                           NULL};
    const char *key;
    const json_t *val;
    json_object_foreach((json_t *)body, key, val)
    {
        bool is_known = false;
        for (size_t i = 0; known[i]; i++)
            is_known = is_known || strcmp(known[i], key) == 0;
        if (!is_known) {
            err_set(e, ERR_BAD_REQUEST, "%s: not a member of a residency policy", key);
            return NULL;
        }
    }
    const json_t *enforce = json_object_get(body, "enforce");
    if (enforce != NULL && !json_is_boolean(enforce)) {
        err_set(e, ERR_BAD_REQUEST, "enforce: expected true or false");
        return NULL;
    }
    json_t *allowed = json_array(), *denied = json_array();
    if (region_list(body, "allowedRegions", is_valid_region, allowed, e) != 0 ||
        region_list(body, "deniedRegions", is_valid_region, denied, e) != 0)
        goto fail;
    if (json_array_size(allowed) == 0 && json_array_size(denied) == 0) {
        err_set(e, ERR_BAD_REQUEST, "a policy needs allowedRegions or deniedRegions");
        goto fail;
    }
    for (size_t i = 0; i < json_array_size(denied); i++) {
        if (is_listed(allowed, json_string_value(json_array_get(denied, i)))) {
            err_set(e, ERR_BAD_REQUEST, "region %s is both allowed and denied",
                    json_string_value(json_array_get(denied, i)));
            goto fail;
        }
    }
    return json_pack("{s:s,s:s,s:o,s:o,s:b,s:I}", "name", name, "repositories", pattern,
                     "allowedRegions", allowed, "deniedRegions", denied, "enforce",
                     json_is_true(enforce), "updatedMs", (json_int_t)now_ms);
fail:
    json_decref(allowed);
    json_decref(denied);
    return NULL;
}

/* Object kinds whose key starts with a repository name (REPO, REPO:REF or REPO@DIGEST). */
static bool is_repo_kind(const char *kind)
{
    static const char *const kinds[] = {IMAGE_DEFINITION_KIND,
                                        IMAGE_VERSION_KIND,
                                        IMAGE_VERSION_RETIRED_KIND,
                                        IMAGE_VERSION_CONFLICT_KIND,
                                        IMAGE_VERSION_WRITES_KIND,
                                        REPO_LOCK_KIND,
                                        PULL_RECORD_KIND,
                                        NULL};
    for (size_t i = 0; kind != NULL && kinds[i]; i++) {
        if (strcmp(kinds[i], kind) == 0)
            return true;
    }
    return false;
}

bool residency_event_repo(const struct meta_event *ev, char *out, size_t out_len)
{
    if (ev->repo != NULL) {
        snprintf(out, out_len, "%s", ev->repo);
        return true;
    }
    if (ev->kind == NULL || strncmp(ev->kind, "object_", 7) != 0 || ev->name == NULL ||
        ev->payload == NULL)
        return false;
    json_error_t je;
    json_t *p = json_loads(ev->payload, 0, &je);
    bool is_bound = is_repo_kind(json_string_value(json_object_get(p, "kind")));
    json_decref(p);
    if (!is_bound)
        return false;
    /* a repository name holds neither ':' nor '@' (distribution-spec: the name grammar) */
    size_t n = strcspn(ev->name, ":@");
    snprintf(out, out_len, "%.*s", (int)n, ev->name);
    return true;
}

void residency_redact(struct meta_event *ev)
{
    FREE_AND_NULL(ev->kind);
    FREE_AND_NULL(ev->repo);
    FREE_AND_NULL(ev->name);
    FREE_AND_NULL(ev->digest);
    FREE_AND_NULL(ev->payload);
    ev->kind = xstrdup(RESIDENCY_REDACTED_KIND);
}
