/* Filtered replication: placement of manifests by their versions' profiles (placement.h). */
#include "gc_fence.h"
#include "placement.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "image_catalog.h"
#include "log.h"
#include "repl.h"
#include "repo_locks.h"
#include "residency.h"
#include "util.h"

/* How far placement follows "belongs with" links (index -> child, subject -> referrer):
 * a signature of a platform manifest of an index is three steps from its version. */
#define RELATIVES_DEPTH 4

enum question { HOLDS, SHALLOW };

/* Answers q for repo@d from the version records it belongs to: its own version tags, the
 * subject named by a cosign-scheme tag, and (depth allowing) the indexes that list it and
 * its subject. *has_owner: some version or manifest it belongs with is known here. */
/* The record of the version whose concurrent push d lost (immutable versions: the loser
 * stays addressable by digest wherever the version is held), or NULL. */
static json_t *version_lost_by(struct metastore *ms, const char *repo, const struct digest *d)
{
    struct err e = {0};
    json_t *records = image_catalog_versions(ms, repo, &e);
    json_t *found = NULL;
    size_t i;
    json_t *rec;
    json_array_foreach(records, i, rec)
    {
        const char *version = json_string_value(json_object_get(rec, "version"));
        json_t *conflict = version ? image_catalog_conflict(ms, repo, version, &e) : NULL;
        size_t j;
        json_t *l;
        json_array_foreach(json_object_get(conflict, "losers"), j, l)
        {
            const char *ld = json_string_value(json_object_get(l, "digest"));
            if (found == NULL && ld != NULL && strcmp(ld, d->str) == 0)
                found = json_incref(rec);
        }
        json_decref(conflict);
        if (found)
            break;
    }
    json_decref(records);
    return found;
}

static bool ask(struct registry *reg, const char *repo, const struct digest *d, enum question q,
                int depth, bool *has_owner)
{
    struct metastore *ms = reg->ms;
    struct meta_name_list tags = {0};
    struct err e = {0};
    if (ms->ops->manifest_tags(ms, repo, d, &tags, &e) != 0) {
        *has_owner = true;
        return q == HOLDS; /* when in doubt, hold: a copy too many is repaired later */
    }
    bool answer = false;
    for (size_t i = 0; i < tags.n && !answer; i++) {
        char subject[DIGEST_STR_MAX];
        struct digest sd;
        struct err ve = {0};
        *has_owner = true;
        if (iv_referrer_tag(tags.names[i], subject)) {
            bool ignore;
            answer = depth > 0 && digest_parse(subject, strlen(subject), &sd, &ve) == 0 &&
                     ask(reg, repo, &sd, q, depth - 1, &ignore);
            continue;
        }
        json_t *rec = image_catalog_version(ms, repo, tags.names[i], &ve);
        if (rec == NULL)
            answer = q == HOLDS; /* a tag from before the definition: held, as before */
        else
            answer = q == HOLDS ? iv_holds(rec, reg->cfg->region)
                                : iv_is_shallow_here(rec, reg->cfg->region);
        json_decref(rec);
    }
    meta_name_list_fini(&tags);
    if (!answer) {
        json_t *rec = version_lost_by(ms, repo, d);
        if (rec != NULL) {
            *has_owner = true;
            answer = q == HOLDS ? iv_holds(rec, reg->cfg->region)
                                : iv_is_shallow_here(rec, reg->cfg->region);
            json_decref(rec);
        }
    }
    struct meta_name_list owners = {0};
    if (answer || depth == 0 || ms->ops->manifest_relatives(ms, repo, d, true, &owners, &e) != 0)
        return answer;
    for (size_t i = 0; i < owners.n && !answer; i++) {
        struct digest od;
        bool ignore;
        *has_owner = true;
        answer = digest_parse(owners.names[i], strlen(owners.names[i]), &od, &e) == 0 &&
                 ask(reg, repo, &od, q, depth - 1, &ignore);
    }
    meta_name_list_fini(&owners);
    return answer;
}

bool placement_is_held(struct registry *reg, const char *repo, const struct digest *d)
{
    if (!image_catalog_is_definition(reg->ms, repo))
        return true;
    bool has_owner = false;
    /* A manifest that belongs with nothing known here yet (a child pushed before its
     * index) waits, not held; the arrival of what it belongs with places it again. */
    return ask(reg, repo, d, HOLDS, RELATIVES_DEPTH, &has_owner);
}

bool placement_is_shallow(struct registry *reg, const char *repo, const struct digest *d)
{
    if (!image_catalog_is_definition(reg->ms, repo))
        return false;
    bool has_owner = false;
    return ask(reg, repo, d, SHALLOW, RELATIVES_DEPTH, &has_owner);
}

/* The manifests that belong with repo@d: its children, the manifests whose subject it is,
 * and its cosign-scheme tags' manifests. */
static void dependents_of(struct registry *reg, const char *repo, const struct digest *d,
                          struct meta_name_list *out)
{
    struct err e = {0};
    if (reg->ms->ops->manifest_relatives(reg->ms, repo, d, false, out, &e) != 0)
        memset(out, 0, sizeof(*out));
    static const char *const kinds[] = {"sig", "att", "sbom"};
    for (size_t k = 0; k < 3 && strncmp(d->str, "sha256:", 7) == 0; k++) {
        char tag[128];
        snprintf(tag, sizeof(tag), "sha256-%s.%s", d->str + 7, kinds[k]);
        struct digest td;
        char *media_type = NULL;
        int64_t size, recorded_ms;
        bool is_visible;
        struct err le = {0};
        if (reg->ms->ops->manifest_lookup(reg->ms, repo, tag, &td, &media_type, &size,
                                          &is_visible, &recorded_ms, &le) != 0)
            continue;
        free(media_type);
        out->names = xrealloc(out->names, (out->n + 1) * sizeof(char *));
        out->names[out->n++] = xstrdup(td.str);
    }
}

static void place(struct registry *reg, const char *repo, const struct digest *d, int depth);
static void report_removed_if_due(struct registry *reg, const char *repo,
                                  const struct digest *d);

static void place_dependents(struct registry *reg, const char *repo, const struct digest *d,
                             int depth)
{
    if (depth <= 0)
        return;
    struct meta_name_list deps = {0};
    dependents_of(reg, repo, d, &deps);
    for (size_t i = 0; i < deps.n; i++) {
        struct digest dd;
        struct err e = {0};
        if (digest_parse(deps.names[i], strlen(deps.names[i]), &dd, &e) == 0 &&
            !digest_equal(&dd, d))
            place(reg, repo, &dd, depth - 1);
    }
    meta_name_list_fini(&deps);
}

bool placement_may_pull_blob(struct registry *reg, const char *repo, const struct digest *d)
{
    struct err re = {0};
    if (residency_check(reg->ms, repo, reg->cfg->region, &re) != 0)
        return false; /* residency: never, whatever this region records of it */
    if (!image_catalog_is_definition(reg->ms, repo))
        return true;
    bool is_wanted = true;
    struct err e = {0};
    if (reg->ms->ops->blob_is_wanted(reg->ms, repo, d, &is_wanted, &e) != 0)
        return true; /* when in doubt, serve */
    return is_wanted;
}

/* After repo@d was moved to not held: is it held after all? The answer was read before
 * the move, and a tag or version record merged in between (by a puller, concurrently)
 * found the manifest still pending or visible and left it so; nothing would place it
 * again and the region would stay Pending for ever. Asked once more now that the move is
 * committed (whatever merges later sees it not held and places it itself); if held,
 * it is placed again: back to pending, fetched. */
static bool is_held_after_all(struct registry *reg, const char *repo, const struct digest *d)
{
    if (!placement_is_held(reg, repo, d))
        return false;
    log_info("placement", "%s@%s: held after all (its version was merged meanwhile)", repo, d->str);
    place(reg, repo, d, RELATIVES_DEPTH);
    return true;
}

bool placement_admit_pending(struct registry *reg, const char *repo, const struct digest *d)
{
    if (placement_is_held(reg, repo, d)) {
        /* its children and referrers recorded before it go with it */
        if (image_catalog_is_definition(reg->ms, repo))
            place_dependents(reg, repo, d, RELATIVES_DEPTH);
        return true;
    }
    enum meta_placement before;
    struct err e = {0};
    if (reg->ms->ops->manifest_place(reg->ms, repo, d, false, NULL, &before, &e) != 0) {
        log_warn("placement", "failed to place %s@%s: %s", repo, d->str, err_message(&e));
        return false;
    }
    if (before == META_PLACEMENT_PENDING && is_held_after_all(reg, repo, d))
        return false; /* pending again: the next round fetches it */
    if (before == META_PLACEMENT_PENDING)
        log_info("placement", "%s@%s: not held in this region, recorded only", repo, d->str);
    report_removed_if_due(reg, repo, d);
    return false;
}

bool placement_dependents_ready(struct registry *reg, const char *repo, const struct digest *d)
{
    if (!image_catalog_is_definition(reg->ms, repo))
        return true;
    struct meta_name_list deps = {0};
    dependents_of(reg, repo, d, &deps);
    bool is_ready = true;
    for (size_t i = 0; i < deps.n && is_ready; i++) {
        struct digest dd;
        char *media_type = NULL;
        int64_t size, recorded_ms;
        bool is_visible = false;
        struct err e = {0};
        if (reg->ms->ops->manifest_lookup(reg->ms, repo, deps.names[i], &dd, &media_type, &size,
                                          &is_visible, &recorded_ms, &e) != 0)
            continue;
        free(media_type);
        is_ready = is_visible || !placement_is_held(reg, repo, &dd);
    }
    meta_name_list_fini(&deps);
    return is_ready;
}

/* This region's status of repo@d as a replicated event, so that the others' view of it
 * (image-version show from any region) starts over. */
static void report(struct registry *reg, const char *repo, const struct digest *d,
                   const char *state)
{
    if (reg->repl) { /* ordered with the fetch workers' status events of it */
        repl_report_status(reg->repl, repo, d, state, "");
        return;
    }
    struct meta_status st = {.region = reg->cfg->region,
                             .state = (char *)state,
                             .updated_ms = util_now_ms(),
                             .details = ""};
    struct err e = {0};
    if (reg->ms->ops->status_set(reg->ms, repo, d, &st, true, &e) != 0)
        log_warn("placement", "failed to record status of %s@%s: %s", repo, d->str,
                 err_message(&e));
}

/* Since when (ms) a version named by repo@d lists this region among its removingRegions
 * (it is not a target any more), or 0. */
static int64_t removing_since(struct registry *reg, const char *repo, const struct digest *d)
{
    struct meta_name_list tags = {0};
    struct err e = {0};
    if (reg->ms->ops->manifest_tags(reg->ms, repo, d, &tags, &e) != 0)
        return 0;
    int64_t since = 0;
    for (size_t i = 0; i < tags.n; i++) {
        json_t *rec = image_catalog_version(reg->ms, repo, tags.names[i], &e);
        size_t j;
        json_t *r;
        json_array_foreach(json_object_get(rec, "removingRegions"), j, r)
        {
            const char *name = json_string_value(json_object_get(r, "name"));
            int64_t at = json_integer_value(json_object_get(r, "sinceMs"));
            if (name != NULL && strcmp(name, reg->cfg->region) == 0 &&
                !iv_holds(rec, reg->cfg->region) && at > since)
                since = at;
        }
        json_decref(rec);
    }
    meta_name_list_fini(&tags);
    return since;
}

/* repo@d is not held here: if its version is waiting for this region's removal, say it is
 * done (Removed), once. Whatever way it left (released when visible, taken out of the
 * fetch queue while pending or during its fetch, never held at all), the others show
 * Removing until this report (docs/image-versions.md). */
static void report_removed_if_due(struct registry *reg, const char *repo,
                                  const struct digest *d)
{
    int64_t since = removing_since(reg, repo, d);
    if (since == 0)
        return;
    struct meta_status *rows = NULL;
    size_t n = 0;
    struct err e = {0};
    bool is_reported = false;
    if (reg->ms->ops->status_list(reg->ms, repo, d, &rows, &n, &e) == 0) {
        for (size_t i = 0; i < n; i++)
            is_reported |= strcmp(rows[i].region, reg->cfg->region) == 0 &&
                           strcmp(rows[i].state, "Removed") == 0 && rows[i].updated_ms >= since;
    }
    meta_status_free(rows, n);
    if (!is_reported)
        report(reg, repo, d, "Removed");
}

static void release(struct registry *reg, const char *repo, const struct digest *d)
{
    struct meta_name_list orphans = {0};
    struct err e = {0};
    /* Exclusive: no blob commit or fetch links one of these blobs while its file goes. */
    bool is_fenced = gc_fence_enter(reg, true);
    int rc = reg->ms->ops->manifest_release(reg->ms, repo, d, &orphans, &e);
    for (size_t i = 0; rc == 0 && is_fenced && i < orphans.n; i++) {
        struct digest b;
        struct err ignore = {0};
        if (digest_parse(orphans.names[i], strlen(orphans.names[i]), &b, &ignore) == 0)
            (void)reg->bs->ops->remove(reg->bs, &b, NULL);
    }
    gc_fence_leave(reg, true);
    if (rc != 0) {
        log_warn("placement", "failed to release %s@%s: %s", repo, d->str, err_message(&e));
        return;
    }
    log_info("placement", "%s@%s no longer targets this region: released (%zu blob%s deleted)",
             repo, d->str, orphans.n, orphans.n == 1 ? "" : "s");
    meta_name_list_fini(&orphans);
    report(reg, repo, d, "Removed");
}

/* Places repo@d by its current answer, then what belongs with it. */
static void place(struct registry *reg, const char *repo, const struct digest *d, int depth)
{
    struct err e = {0};
    bool is_held = placement_is_held(reg, repo, d);
    enum meta_placement before;
    /* Pending is announced with the move itself: written after it, it could land after
     * the fetch's Completed, and the others would show this region Pending for ever. */
    struct meta_status pending = {.region = reg->cfg->region,
                                  .state = "Pending",
                                  .updated_ms = util_now_ms(),
                                  .details = ""};
    if (reg->ms->ops->manifest_place(reg->ms, repo, d, is_held, &pending, &before, &e) != 0) {
        if (e.code != ERR_MANIFEST_UNKNOWN)
            log_warn("placement", "failed to place %s@%s: %s", repo, d->str, err_message(&e));
        return;
    }
    if (is_held && before == META_PLACEMENT_NOT_HELD) {
        log_info("placement", "%s@%s now held in this region: fetching it", repo, d->str);
        if (reg->repl) {
            repl_log_grew(reg->repl);
            repl_kick(reg->repl);
        }
    } else if (!is_held && before == META_PLACEMENT_VISIBLE) {
        release(reg, repo, d);
    } else if (!is_held) {
        report_removed_if_due(reg, repo, d);
    }
    if (!is_held && before != META_PLACEMENT_NOT_HELD && is_held_after_all(reg, repo, d))
        return; /* placed again, with what belongs with it */
    place_dependents(reg, repo, d, depth);
}

void placement_place_digest(struct registry *reg, const char *repo, const struct digest *d)
{
    place(reg, repo, d, RELATIVES_DEPTH);
}

/* The regions version lists as removingRegions are deleting their copies of repo@d (or
 * did): their reports from before their removal (Completed) no longer hold, and would show
 * one of them Completed, and let image-version wait return, if it is made a target again
 * before its Removed report arrives here. Forgotten, it is Pending until it reports anew.
 * Its Removed report (written after its removal) is kept: Removing ends with it. */
static void forget_removed_reports(struct registry *reg, const char *repo, const char *version,
                                   const struct digest *d)
{
    struct err e = {0};
    json_t *rec = image_catalog_version(reg->ms, repo, version, &e);
    if (json_array_size(json_object_get(rec, "removingRegions")) == 0) {
        json_decref(rec);
        return;
    }
    json_t *policies = residency_policies(reg->ms, &e); /* NULL: none read, none skipped */
    size_t i;
    json_t *r;
    json_array_foreach(json_object_get(rec, "removingRegions"), i, r)
    {
        const char *name = json_string_value(json_object_get(r, "name"));
        int64_t since = json_integer_value(json_object_get(r, "sinceMs"));
        /* A region a residency policy keeps repo from is withheld the removal: its last
         * report (Completed) is the copy it keeps, shown Retained (mgmt_image_versions.c). */
        if (name == NULL || strcmp(name, reg->cfg->region) == 0 ||
            residency_forbidding(policies, repo, name) != NULL)
            continue;
        if (reg->ms->ops->status_drop_older(reg->ms, repo, d, name, since, &e) != 0)
            log_warn("placement", "failed to forget %s's reports of %s@%s: %s", name, repo,
                     d->str, err_message(&e));
    }
    json_decref(policies);
    json_decref(rec);
}

void placement_reconsider(struct registry *reg, const char *repo, const char *version)
{
    struct digest d;
    char *media_type = NULL;
    int64_t size, recorded_ms;
    bool is_visible;
    struct err e = {0};
    if (reg->ms->ops->manifest_lookup(reg->ms, repo, version, &d, &media_type, &size, &is_visible,
                                      &recorded_ms, &e) != 0)
        return; /* no manifest yet: its arrival is placed by the fetch workers */
    free(media_type);
    forget_removed_reports(reg, repo, version, &d);
    place(reg, repo, &d, RELATIVES_DEPTH);
}

void placement_on_object_event(struct registry *reg, const char *key, const char *payload)
{
    json_error_t je;
    json_t *p = json_loads(payload, 0, &je);
    const char *kind = json_string_value(json_object_get(p, "kind"));
    const char *colon = strrchr(key, ':');
    if (kind != NULL && strcmp(kind, IMAGE_VERSION_KIND) == 0 && colon != NULL &&
        colon != key) {
        char *repo = xstrndup(key, (size_t)(colon - key));
        placement_reconsider(reg, repo, colon + 1);
        free(repo);
    }
    json_decref(p);
}

static void audit(struct registry *reg, const char *repo, const json_t *rec)
{
    char target[600], detail[400] = "retention: targets now";
    snprintf(target, sizeof(target), "%s:%s", repo,
             json_string_value(json_object_get(rec, "version")));
    const char **targets = iv_targets(rec);
    for (size_t i = 0; targets[i]; i++) {
        size_t len = strlen(detail);
        snprintf(detail + len, sizeof(detail) - len, "%s%s", i ? "," : " ", targets[i]);
    }
    free(targets);
    struct meta_audit a = {.time_ms = util_now_ms(),
                           .actor = "retention",
                           .action = "image-version.update",
                           .target = target,
                           .status = 200,
                           .remote = "-",
                           .detail = detail};
    int64_t id;
    struct err e = {0};
    if (reg->ms->ops->audit_append(reg->ms, &a, reg->cfg->audit_max_rows, &id, &e) != 0)
        log_warn("placement", "failed to audit retention of %s: %s", target, err_message(&e));
}

/* Locked against writes or deletes (store/repo_locks.h): retention leaves it alone. */
static bool is_locked(struct registry *reg, const char *repo, const char *version)
{
    struct digest d;
    char *media_type = NULL;
    int64_t size, recorded_ms;
    bool is_visible;
    struct err e = {0};
    bool has_d = reg->ms->ops->manifest_lookup(reg->ms, repo, version, &d, &media_type, &size,
                                               &is_visible, &recorded_ms, &e) == 0;
    free(media_type);
    struct repo_lock l;
    repo_lock_effective(reg->ms, repo, version, has_d ? &d : NULL, &l);
    return !l.write_enabled || !l.delete_enabled;
}

static void retention_of(struct registry *reg, const json_t *def)
{
    const char *repo = json_string_value(json_object_get(def, "repository"));
    struct err e = {0};
    json_t *records = image_catalog_versions(reg->ms, repo, &e);
    int64_t now = util_now_ms();
    for (size_t i = 0; i < json_array_size(records); i++) {
        const json_t *rec = json_array_get(records, i);
        const char *source = json_string_value(json_object_get(rec, "sourceRegion"));
        if (source == NULL || strcmp(source, reg->cfg->region) != 0)
            continue;
        const char *version = json_string_value(json_object_get(rec, "version"));
        if (is_locked(reg, repo, version))
            continue; /* a locked version keeps every copy (docs/image-versions.md) */
        json_t *reduced = iv_retention_apply(def, records, i, now);
        if (reduced == NULL)
            continue;
        if (image_catalog_put_version(reg->ms, reduced, &e) != 0) {
            log_warn("placement", "retention of %s:%s: %s", repo, version, err_message(&e));
        } else {
            log_info("placement", "retention reduced %s:%s to its rollback regions", repo, version);
            audit(reg, repo, reduced);
            placement_reconsider(reg, repo, version);
            if (reg->repl)
                repl_log_grew(reg->repl);
        }
        json_decref(reduced);
    }
    json_decref(records);
}

void placement_retention_run(struct registry *reg)
{
    struct err e = {0};
    json_t *defs = image_catalog_definitions(reg->ms, &e);
    size_t i;
    json_t *def;
    json_array_foreach(defs, i, def)
    {
        if (json_object_get(def, "retention") != NULL)
            retention_of(reg, def);
    }
    json_decref(defs);
}
