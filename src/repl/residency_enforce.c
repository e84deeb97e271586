/* Residency over existing content (residency_enforce.h). */
#include "residency_enforce.h"

#include <inttypes.h>
#include <pthread.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "image_catalog.h"
#include "gc_fence.h"
#include "log.h"
#include "repl.h"
#include "residency.h"
#include "util.h"

static void audit(struct registry *reg, const char *repo, const json_t *policy, int64_t n_manifests,
                  size_t n_blobs)
{
    char detail[300];
    snprintf(detail, sizeof(detail), "policy=%s removed %" PRId64 " manifest%s, %zu blob file%s",
             json_string_value(json_object_get(policy, "name")), n_manifests,
             n_manifests == 1 ? "" : "s", n_blobs, n_blobs == 1 ? "" : "s");
    struct meta_audit a = {.time_ms = util_now_ms(),
                           .actor = "residency",
                           .action = "residency.enforce",
                           .target = (char *)repo,
                           .status = 200,
                           .remote = "-",
                           .detail = detail};
    int64_t id;
    struct err e = {0};
    if (reg->ms->ops->audit_append(reg->ms, &a, reg->cfg->audit_max_rows, &id, &e) != 0)
        log_warn("residency", "failed to audit the removal of %s: %s", repo, err_message(&e));
}

/* Removes what this region keeps of repo; true if it kept anything. */
static bool purge(struct registry *reg, const char *repo, const json_t *policy)
{
    struct meta_name_list orphans = {0};
    int64_t n_manifests = 0;
    struct err e = {0};
    /* Exclusive, as a release (placement.c): no commit or fetch links one of these blobs
     * while its file goes. */
    bool is_fenced = gc_fence_enter(reg, true); /* spans the nodes of a shared store */
    int rc = reg->ms->ops->repo_purge(reg->ms, repo, &orphans, &n_manifests, &e);
    for (size_t i = 0; rc == 0 && is_fenced && i < orphans.n; i++) {
        struct digest b;
        struct err ignore = {0};
        if (digest_parse(orphans.names[i], strlen(orphans.names[i]), &b, &ignore) == 0)
            (void)reg->bs->ops->remove(reg->bs, &b, NULL);
    }
    gc_fence_leave(reg, true);
    size_t n_blobs = orphans.n;
    meta_name_list_fini(&orphans);
    if (rc != 0) {
        log_error("residency", "failed to remove repository %s: %s", repo, err_message(&e));
        return false;
    }
    log_warn("residency",
             "repository %s may not be held in this region (residency policy %s): removed "
             "%" PRId64 " manifests and %zu blob files",
             repo, json_string_value(json_object_get(policy, "name")), n_manifests, n_blobs);
    audit(reg, repo, policy, n_manifests, n_blobs);
    return true;
}

/* The other regions an enforced policy forbids repo remove everything of it, their own
 * status rows too; their last reports kept here would outlive that and, once the policy
 * goes, show them Completed (and let image-version wait return) while they hold nothing
 * of repo until they fetch it again. Forgotten, they show Pending until they report anew.
 * A report such a region sent before its removal and heard after this is forgotten by the
 * next run (every --sync-interval). */
static void forget_reports(struct registry *reg, const char *repo, const json_t *policies,
                           char *const *regions)
{
    for (size_t i = 0; regions != NULL && regions[i] != NULL; i++) {
        if (strcmp(regions[i], reg->cfg->region) == 0 ||
            residency_forbidding_enforced(policies, repo, regions[i]) == NULL)
            continue;
        struct err e = {0};
        if (reg->ms->ops->status_drop_region(reg->ms, repo, regions[i], &e) != 0)
            log_warn("residency", "failed to forget %s's reports of %s: %s", regions[i], repo,
                     err_message(&e));
    }
}

static int run(struct registry *reg);

/* The names of every repository this region keeps something of: its repositories' rows
 * and its image definitions (a definition may have no manifest yet). */
static void known_repos(struct registry *reg, struct meta_name_list *out)
{
    struct err e = {0};
    char *last = NULL;
    for (;;) {
        struct meta_name_list page = {0};
        if (reg->ms->ops->repo_list(reg->ms, last, 1000, &page, &e) != 0 || page.n == 0) {
            meta_name_list_fini(&page);
            break;
        }
        free(last);
        last = xstrdup(page.names[page.n - 1]);
        out->names = xrealloc(out->names, (out->n + page.n) * sizeof(char *));
        for (size_t i = 0; i < page.n; i++)
            out->names[out->n++] = page.names[i];
        free(page.names);
    }
    free(last);
    struct meta_name_list keys = {0}, values = {0};
    if (reg->ms->ops->object_list(reg->ms, IMAGE_DEFINITION_KIND, &keys, &values, &e) == 0) {
        out->names = xrealloc(out->names, (out->n + keys.n + 1) * sizeof(char *));
        for (size_t i = 0; i < keys.n; i++)
            out->names[out->n++] = xstrdup(keys.names[i]);
    }
    meta_name_list_fini(&keys);
    meta_name_list_fini(&values);
}

/* One run at a time (a policy event, the syncer and a management request may each start
 * one): a second run lists the repositories after the first removed them, so each removal
 * is done and audited once. */
static pthread_mutex_t run_mu = PTHREAD_MUTEX_INITIALIZER;

int residency_enforce_run(struct registry *reg)
{
    AZ(pthread_mutex_lock(&run_mu));
    int n = run(reg);
    AZ(pthread_mutex_unlock(&run_mu));
    return n;
}

static int run(struct registry *reg)
{
    struct err e = {0};
    json_t *policies = residency_policies(reg->ms, &e);
    if (policies == NULL) {
        log_warn("residency", "failed to read residency policies: %s", err_message(&e));
        return 0;
    }
    int n_removed = 0;
    if (json_array_size(policies) > 0) {
        struct meta_name_list repos = {0};
        known_repos(reg, &repos);
        char **regions = reg->repl != NULL ? repl_target_regions(reg->repl) : NULL;
        for (size_t i = 0; i < repos.n; i++) {
            const json_t *p =
                residency_forbidding_enforced(policies, repos.names[i], reg->cfg->region);
            if (p != NULL && purge(reg, repos.names[i], p))
                n_removed++;
            else if (p == NULL)
                forget_reports(reg, repos.names[i], policies, regions);
        }
        if (regions != NULL)
            repl_free_names(regions);
        meta_name_list_fini(&repos);
    }
    json_decref(policies);
    return n_removed;
}

bool residency_enforce_on_object_event(struct registry *reg, const char *payload)
{
    json_error_t je;
    json_t *p = payload ? json_loads(payload, 0, &je) : NULL;
    const char *kind = json_string_value(json_object_get(p, "kind"));
    bool is_policy = kind != NULL && strcmp(kind, RESIDENCY_KIND) == 0;
    json_decref(p);
    if (is_policy)
        residency_enforce_run(reg);
    return is_policy;
}
