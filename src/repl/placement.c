/* Filtered replication: placement of manifests by their versions' profiles (placement.h). */
#include "placement.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "image_catalog.h"
#include "log.h"
#include "repl.h"
#include "repo_locks.h"
#include "util.h"

bool placement_is_held(struct registry *reg, const char *repo, const struct digest *d)
{
    struct metastore *ms = reg->ms;
    if (!image_catalog_is_definition(ms, repo))
        return true;
    struct meta_name_list tags = {0};
    struct err e = {0};
    if (ms->ops->manifest_tags(ms, repo, d, &tags, &e) != 0)
        return true; /* when in doubt, hold: a copy too many is repaired later */
    bool is_held = tags.n == 0;
    for (size_t i = 0; i < tags.n && !is_held; i++) {
        struct err ve = {0};
        json_t *rec = image_catalog_version(ms, repo, tags.names[i], &ve);
        is_held = rec == NULL || iv_holds(rec, reg->cfg->region);
        json_decref(rec);
    }
    meta_name_list_fini(&tags);
    return is_held;
}

bool placement_admit_pending(struct registry *reg, const char *repo, const struct digest *d)
{
    if (placement_is_held(reg, repo, d))
        return true;
    enum meta_placement before;
    struct err e = {0};
    if (reg->ms->ops->manifest_place(reg->ms, repo, d, false, &before, &e) != 0)
        log_warn("placement", "failed to place %s@%s: %s", repo, d->str, err_message(&e));
    else
        log_info("placement", "%s@%s: not a target region here, recorded only", repo, d->str);
    return false;
}

/* This region's status of repo@d as a replicated event, so that the others' view of it
 * (image-version show from any region) starts over. */
static void report(struct registry *reg, const char *repo, const struct digest *d,
                   const char *state)
{
    struct meta_status st = {.region = reg->cfg->region,
                             .state = (char *)state,
                             .updated_ms = util_now_ms(),
                             .details = ""};
    struct err e = {0};
    if (reg->ms->ops->status_set(reg->ms, repo, d, &st, true, &e) != 0)
        log_warn("placement", "failed to record status of %s@%s: %s", repo, d->str,
                 err_message(&e));
}

static void release(struct registry *reg, const char *repo, const struct digest *d)
{
    struct meta_name_list orphans = {0};
    struct err e = {0};
    /* Exclusive: no blob commit or fetch links one of these blobs while its file goes. */
    AZ(pthread_rwlock_wrlock(&reg->gc_lock));
    int rc = reg->ms->ops->manifest_release(reg->ms, repo, d, &orphans, &e);
    for (size_t i = 0; rc == 0 && i < orphans.n; i++) {
        struct digest b;
        struct err ignore = {0};
        if (digest_parse(orphans.names[i], strlen(orphans.names[i]), &b, &ignore) == 0)
            reg->bs->ops->remove(reg->bs, &b);
    }
    AZ(pthread_rwlock_unlock(&reg->gc_lock));
    if (rc != 0) {
        log_warn("placement", "failed to release %s@%s: %s", repo, d->str, err_message(&e));
        return;
    }
    log_info("placement", "%s@%s no longer targets this region: released (%zu blob%s deleted)",
             repo, d->str, orphans.n, orphans.n == 1 ? "" : "s");
    meta_name_list_fini(&orphans);
    report(reg, repo, d, "Removed");
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
    bool is_held = placement_is_held(reg, repo, &d);
    enum meta_placement before;
    if (reg->ms->ops->manifest_place(reg->ms, repo, &d, is_held, &before, &e) != 0) {
        log_warn("placement", "failed to place %s@%s: %s", repo, d.str, err_message(&e));
        return;
    }
    if (is_held && before == META_PLACEMENT_NOT_HELD) {
        log_info("placement", "%s:%s now targets this region: fetching %s", repo, version, d.str);
        report(reg, repo, &d, "Pending");
        if (reg->repl)
            repl_kick(reg->repl);
    } else if (!is_held && before == META_PLACEMENT_VISIBLE) {
        release(reg, repo, &d);
    }
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
