/* /_meridian/v1/image-versions?repository=R[&reference=TAG|DIGEST]:
 *   GET with a reference: an image version, its publishing profile (in an image
 *     definition) and its replication status in every target region. Any region answers:
 *     its own state is live, the others' come from their replicated status events.
 *   GET without: the versions of definition R and the region-local latest (&region=X).
 *   POST: a version's profile before its push; PATCH: change a version's profile. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "copies.h"
#include "authz.h"
#include "compact.h"
#include "residency.h"
#include "image_catalog.h"
#include "mgmt_api.h"
#include "mgmt_compliance.h"
#include "name.h"
#include "placement.h"
#include "registry_ctx.h"
#include "repl.h"
#include "repl_codec.h"
#include "util.h"

static json_t *iso_time(int64_t ms)
{
    if (ms <= 0)
        return json_null();
    char out[64];
    iv_iso_time(ms, out, sizeof(out));
    return json_string(out);
}

static const char *aggregate(json_t *summary)
{
    size_t n = json_array_size(summary);
    const char **states = xcalloc(n + 1, sizeof(*states));
    for (size_t i = 0; i < n; i++)
        states[i] = json_string_value(json_object_get(json_array_get(summary, i), "state"));
    const char *agg = iv_aggregate(states, n);
    free(states);
    return agg;
}

/* What this region knows of one artifact. */
struct artifact {
    bool is_known; /* a manifest is recorded here */
    struct digest d;
    char *media_type;
    int64_t size;
    bool is_visible;
    int64_t recorded_ms;
};

static int artifact_lookup(struct registry *reg, const char *repo, const char *ref,
                           struct artifact *a, struct err *e)
{
    memset(a, 0, sizeof(*a));
    if (reg->ms->ops->manifest_lookup(reg->ms, repo, ref, &a->d, &a->media_type, &a->size,
                                      &a->is_visible, &a->recorded_ms, e) != 0) {
        if (e->code == ERR_NAME_UNKNOWN || e->code == ERR_MANIFEST_UNKNOWN)
            e->code = ERR_NOT_FOUND;
        return -1;
    }
    a->is_known = true;
    return 0;
}

/* Was region removed from the registry (replication delete applied here)? It stopped
 * serving and deleted its blobs, so its last report (Completed) no longer holds. A region
 * not heard of yet is not: it is Pending until it reports. */
static bool is_removed_region(struct registry *reg, const char *region)
{
    bool is_live = false, is_deleted = false;
    struct err e = {0};
    return reg->ms->ops->object_exists(reg->ms, "replication", region, &is_live, &is_deleted,
                                       &e) == 0 &&
           is_deleted && !is_live;
}

/* Has region applied the tag register that names a->d here (its last write)? A region's
 * report is about a manifest; a version is a tag. A region that holds the manifest but
 * has not applied the write that set the tag does not serve the version by its tag (the
 * tag was deleted there and set again while it could not hear of it). What a region has
 * applied is what it last acknowledged pulling from this one (its version vector), or
 * from another region that relayed it here (compact.h: a region that cannot poll this one
 * is known through the others); as this node heard them, and as the store holds them
 * (written within a second, by any node of this region). The newest of them counts
 * (compact_ack_newest: an older one is not true of a region that went back since); the
 * store's check is tag_acked. */
static bool is_tag_applied(struct registry *reg, const char *repo, const char *tag,
                           const struct artifact *a, const char *region,
                           const struct meta_peer_ack *acks, size_t n_acks)
{
    char *newest = compact_ack_newest(atomic_load(&reg->is_ready) ? reg->compact : NULL, region,
                                      acks, n_acks);
    struct meta_vv vvs[1] = {{0}};
    size_t n = 0;
    struct err e = {0};
    if (newest != NULL && repl_codec_vv_parse(newest, &vvs[0], &e) == 0)
        n++;
    free(newest);
    bool is_applied = false;
    /* With no acknowledgement at all, still true of the region's own write. */
    for (size_t i = 0; i < (n > 0 ? n : 1) && !is_applied; i++) {
        if (reg->ms->ops->tag_acked(reg->ms, repo, tag, &a->d, region, n > 0 ? &vvs[i] : NULL,
                                    &is_applied, &e) != 0)
            is_applied = false;
    }
    for (size_t i = 0; i < n; i++)
        meta_vv_fini(&vvs[i]);
    return is_applied;
}

/* Per target region: state, bytes, time, details (summary[] of replicationStatus). A
 * target that a residency policy forbids gets nothing more of repo: it is Failed, naming
 * the policy, unless it still holds its copy from before a policy that is not enforced
 * (its last report is Completed). Its own report would stay Completed after an enforced
 * policy removed the copy: the region keeps no record of repo to report anything from. */
/* The peers' acknowledgements, read once for every version a request reports (as the
 * policies are), at the first version that needs them. */
struct acks_read {
    struct meta_peer_ack *acks;
    size_t n;
    bool is_read;
};

static void acks_read_fini(struct acks_read *ar)
{
    meta_peer_ack_list_fini(ar->acks, ar->n);
}

static json_t *status_summary(struct registry *reg, const char *repo, const char *tag,
                              const struct artifact *a, const char *const *targets,
                              const json_t *policies, struct acks_read *ar, struct err *e)
{
    struct meta_status *rows = NULL;
    size_t n_rows = 0;
    if (a->is_known && reg->ms->ops->status_list(reg->ms, repo, &a->d, &rows, &n_rows, e) != 0)
        return NULL;
    /* Every region needs the same bytes: a region with nothing to report yet shows the
     * total that others report. */
    int64_t needed = 0;
    for (size_t j = 0; j < n_rows; j++)
        needed = rows[j].bytes_total > needed ? rows[j].bytes_total : needed;
    json_t *summary = json_array();
    for (size_t i = 0; targets[i]; i++) {
        const struct meta_status *row = NULL;
        for (size_t j = 0; j < n_rows; j++) {
            if (strcmp(rows[j].region, targets[i]) == 0)
                row = &rows[j];
        }
        const char *state = row ? row->state : "Pending";
        int64_t done = row ? row->bytes_done : 0;
        int64_t total = row && row->bytes_total > 0 ? row->bytes_total : needed;
        bool is_self = strcmp(targets[i], reg->cfg->region) == 0;
        if (is_self && a->is_visible) {
            state = "Completed"; /* visible here means pullable here */
        } else if (is_self && a->is_known) {
            int64_t live_done, live_total;
            if (repl_progress(reg->repl, repo, &a->d, &live_done, &live_total)) {
                state = "InProgress";
                done = live_done;
                total = live_total;
            } else if (row == NULL) {
                state = "Pending";
            }
        }
        const char *details = row && row->details ? row->details : "";
        char why[NAME_MAX_BYTES + 256];
        if (tag != NULL && !is_self && strcmp(state, "Completed") == 0) {
            struct err ae = {0};
            if (!ar->is_read && reg->ms->ops->peer_acks(reg->ms, &ar->acks, &ar->n, &ae) != 0)
                ar->n = 0; /* then only what this node heard */
            ar->is_read = true;
            if (!is_tag_applied(reg, repo, tag, a, targets[i], ar->acks, ar->n)) {
                state = "InProgress";
                snprintf(why, sizeof(why),
                         "%s holds the manifest but has not acknowledged the latest write of "
                         "tag %s yet", targets[i], tag);
                details = why;
            }
        }
        const json_t *p = residency_forbidding_enforced(policies, repo, targets[i]);
        if (p == NULL && strcmp(state, "Completed") != 0)
            p = residency_forbidding(policies, repo, targets[i]);
        if (p != NULL) {
            state = "Failed";
            done = 0;
            snprintf(why, sizeof(why), "residency policy %s keeps %s from %s",
                     json_string_value(json_object_get(p, "name")), repo, targets[i]);
            details = why;
        }
        if (!is_self && is_removed_region(reg, targets[i])) {
            state = "Failed";
            done = 0;
            snprintf(why, sizeof(why),
                     "%s was removed from the registry: it serves nothing (take it out of the "
                     "version's target regions)", targets[i]);
            details = why;
        }
        int progress = strcmp(state, "Completed") == 0 ? 100
                       : total > 0                     ? (int)(done * 100 / total)
                                                       : 0;
        json_array_append_new(
            summary, json_pack("{s:s, s:s, s:i, s:I, s:I, s:o, s:s}", "region", targets[i], "state",
                               state, "progress", progress, "bytesCopied", (json_int_t)done,
                               "bytesTotal", (json_int_t)total, "updatedAt",
                               iso_time(row ? row->updated_ms : a->recorded_ms), "details",
                               details));
    }
    meta_status_free(rows, n_rows);
    return summary;
}

/* Volumes: each target row counts the copies its region holds on its volumes of the
 * target's class ("copies", and "replicas": "2/3" against regionalReplicaCount): the
 * fewest any blob of the version has. This region's row is counted now (a store without
 * volumes holds one copy of what is visible); another region's is the count it last
 * reported in its status events (repl/copies.c), absent when it reported none (no volumes,
 * an older release, or a state change since). */
static void add_copies(struct registry *reg, const char *repo, const struct artifact *a,
                       const json_t *record, json_t *summary)
{
    struct meta_status *st = NULL;
    size_t n_st = 0;
    struct err e = {0};
    if (a->is_known && reg->ms->ops->status_list(reg->ms, repo, &a->d, &st, &n_st, &e) != 0)
        n_st = 0;
    size_t i, j;
    json_t *row, *t;
    json_array_foreach(summary, i, row) {
        const char *region = json_string_value(json_object_get(row, "region"));
        bool is_self = strcmp(region, reg->cfg->region) == 0;
        const struct meta_status *reported = NULL;
        for (size_t k = 0; k < n_st && !is_self; k++) {
            if (strcmp(st[k].region, region) == 0 && st[k].has_copies)
                reported = &st[k];
        }
        if (!is_self && reported == NULL)
            continue;
        json_array_foreach(json_object_get(json_object_get(record, "publishingProfile"),
                                           "targetRegions"), j, t) {
            if (strcmp(json_string_value(json_object_get(t, "name")), region) != 0)
                continue;
            json_int_t want = json_integer_value(json_object_get(t, "regionalReplicaCount"));
            int have = 0;
            if (!is_self) {
                have = (int)reported->copies;
            } else if (a->is_visible) {
                have = copies_of_manifest(reg, repo, &a->d,
                                          json_string_value(json_object_get(t, "storageClass")));
                if (have < 0)
                    have = 1;
            }
            char text[48];
            snprintf(text, sizeof(text), "%d/%lld", have, (long long)want);
            json_object_set_new(row, "copies", json_integer(have));
            json_object_set_new(row, "replicas", json_string(text));
        }
    }
    meta_status_free(st, n_st);
}

/* Rows of the regions taken out of record's targets that have not reported Removed since:
 * state Removing (their copies are being deleted). Not a region an enforced residency
 * policy keeps repo from: it removed its copies, and can report nothing of repo. A region
 * a policy that is not enforced keeps repo from receives nothing more of repo, the update
 * that took it out either: it keeps the copy it held (its last report is Completed), shown
 * Retained, a final state naming the policy; without one it holds nothing to remove and is
 * not listed. Retained ends when the policy is enforced (the copy goes) or lifted (the
 * update arrives, the region releases the copy and reports Removed). */
static json_t *removing_rows(struct registry *reg, const char *repo, const struct artifact *a,
                             const json_t *record, const json_t *policies)
{
    json_t *rows = json_array();
    json_t *removing = json_object_get(record, "removingRegions");
    struct meta_status *st = NULL;
    size_t n_st = 0;
    struct err e = {0};
    if (json_array_size(removing) == 0 || !a->is_known ||
        reg->ms->ops->status_list(reg->ms, repo, &a->d, &st, &n_st, &e) != 0)
        return rows;
    size_t i;
    json_t *r;
    json_array_foreach(removing, i, r)
    {
        const char *name = json_string_value(json_object_get(r, "name"));
        int64_t since = json_integer_value(json_object_get(r, "sinceMs"));
        if (name == NULL || residency_forbidding_enforced(policies, repo, name) != NULL)
            continue;
        const struct meta_status *last = NULL;
        for (size_t j = 0; j < n_st; j++) {
            if (strcmp(st[j].region, name) == 0)
                last = &st[j];
        }
        if (last != NULL && strcmp(last->state, "Removed") == 0 && last->updated_ms >= since)
            continue;
        const char *state = "Removing", *details = "deleting the copies there";
        char why[NAME_MAX_BYTES + 256];
        const json_t *p = residency_forbidding(policies, repo, name);
        if (p != NULL) {
            if (last == NULL || strcmp(last->state, "Completed") != 0)
                continue;
            state = "Retained";
            snprintf(why, sizeof(why),
                     "residency policy %s keeps %s from %s but is not enforced: %s keeps the "
                     "copy it held before the policy (enforce the policy to remove it)",
                     json_string_value(json_object_get(p, "name")), repo, name, name);
            details = why;
        }
        json_array_append_new(rows, json_pack("{s:s, s:s, s:i, s:I, s:I, s:o, s:s}", "region",
                                              name, "state", state, "progress", 0, "bytesCopied",
                                              (json_int_t)0, "bytesTotal", (json_int_t)0,
                                              "updatedAt", iso_time(since), "details", details));
    }
    meta_status_free(st, n_st);
    return rows;
}

static const char *state_in(json_t *summary, const char *region)
{
    size_t i;
    json_t *row;
    json_array_foreach(summary, i, row)
    {
        if (strcmp(json_string_value(json_object_get(row, "region")), region) == 0)
            return json_string_value(json_object_get(row, "state"));
    }
    return NULL;
}

/* One version of a definition as list and latest need it: record + what is known here. */
struct listed {
    json_t *record;
    struct artifact a;
    json_t *summary; /* over its targets */
};

static void listed_fini(struct listed *l, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(l[i].a.media_type);
        json_decref(l[i].summary);
    }
    free(l);
}

/* The versions of repo with their status under policies (residency_policies: read once for
 * every version, not once per version); NULL with e set. *n_out: how many. */
static struct listed *list_versions(struct registry *reg, const char *repo,
                                    const json_t *policies, json_t **records, size_t *n_out,
                                    struct err *e)
{
    *records = image_catalog_versions(reg->ms, repo, e);
    if (*records == NULL)
        return NULL;
    size_t n = json_array_size(*records);
    struct listed *l = xcalloc(n + 1, sizeof(*l));
    struct acks_read ar = {0};
    size_t i = 0;
    for (; i < n; i++) {
        l[i].record = json_array_get(*records, i);
        const char *v = json_string_value(json_object_get(l[i].record, "version"));
        struct err le = {0};
        if (artifact_lookup(reg, repo, v, &l[i].a, &le) != 0 && le.code != ERR_NOT_FOUND) {
            *e = le;
            break;
        }
        const char **targets = iv_targets(l[i].record);
        l[i].summary = status_summary(reg, repo, v, &l[i].a, targets, policies, &ar, e);
        free(targets);
        if (l[i].summary == NULL)
            break;
    }
    acks_read_fini(&ar);
    if (i < n) {
        listed_fini(l, n);
        json_decref(*records);
        return NULL;
    }
    *n_out = n;
    return l;
}

/* Index of the region-local latest among l, or -1. */
static long latest_of(const struct listed *l, size_t n, const char *region)
{
    struct iv_candidate *c = xcalloc(n + 1, sizeof(*c));
    for (size_t i = 0; i < n; i++) {
        const char *st = state_in(l[i].summary, region);
        c[i].version = json_string_value(json_object_get(l[i].record, "version"));
        c[i].record = l[i].record;
        c[i].is_completed = l[i].a.is_known && st != NULL && strcmp(st, "Completed") == 0;
    }
    long best = iv_latest(c, n, region, util_now_ms());
    free(c);
    return best;
}

static bool is_region_known(struct registry *reg, const char *region, struct err *e)
{
    struct iv_world w;
    if (image_catalog_world(reg->ms, reg->cfg->region, &w, e) != 0)
        return false;
    bool found = false;
    for (size_t i = 0; i < w.n_regions; i++)
        found |= strcmp(w.regions[i].name, region) == 0;
    image_catalog_world_fini(&w);
    if (!found)
        err_set(e, ERR_BAD_REQUEST, "unknown region \"%s\"", region);
    return found;
}

/* GET image-versions?repository=R[&region=X]: R's versions and X's latest. */
static void list(struct http_req *req, const char *repo)
{
    struct registry *reg = req->reg;
    struct err e = {0};
    const char *region = http_req_query(req, "region");
    if (region == NULL)
        region = reg->cfg->region;
    json_t *def = image_catalog_definition(reg->ms, repo, &e);
    if (def == NULL || !is_region_known(reg, region, &e)) {
        json_decref(def);
        http_reply_mgmt_err(req, &e);
        return;
    }
    json_decref(def);
    json_t *records;
    size_t n = 0;
    json_t *policies = residency_policies(reg->ms, &e);
    struct listed *l = policies ? list_versions(reg, repo, policies, &records, &n, &e) : NULL;
    if (l == NULL) {
        json_decref(policies);
        http_reply_mgmt_err(req, &e);
        return;
    }
    long best = latest_of(l, n, region);
    json_t *items = json_array();
    int64_t now = util_now_ms();
    for (size_t i = 0; i < n; i++) {
        json_t *r = l[i].record, *pp = json_object_get(r, "publishingProfile");
        json_t *names = json_array();
        const char **targets = iv_targets(r);
        for (size_t j = 0; targets[j]; j++)
            json_array_append_new(names, json_string(targets[j]));
        free(targets);
        const char *st = iv_holds(r, region) ? state_in(l[i].summary, region) : "NotTargeted";
        json_t *removing =
            iv_holds(r, region) ? NULL : removing_rows(reg, repo, &l[i].a, r, policies);
        const char *rs = removing ? state_in(removing, region) : NULL;
        if (rs != NULL)
            st = strcmp(rs, "Retained") == 0 ? "Retained" : "Removing"; /* outlives the row */
        json_decref(removing);
        json_array_append_new(
            items,
            json_pack("{s:O, s:o, s:O, s:o, s:O, s:O, s:b, s:s, s:s, s:b}", "version",
                      json_object_get(r, "version"), "digest",
                      l[i].a.is_known ? json_string(l[i].a.d.str) : json_null(), "sourceRegion",
                      json_object_get(r, "sourceRegion"), "targetRegions", names,
                      "excludeFromLatest", json_object_get(pp, "excludeFromLatest"),
                      "endOfLifeDate", json_object_get(pp, "endOfLifeDate"), "isEndOfLife",
                      iv_is_end_of_life(r, now), "state", st ? st : "Pending", "aggregatedState",
                      aggregate(l[i].summary), "isLatest", (long)i == best));
        struct err ce = {0};
        json_t *conflict = image_catalog_conflict(
            reg->ms, repo, json_string_value(json_object_get(r, "version")), &ce);
        if (conflict != NULL)
            json_object_set_new(json_array_get(items, json_array_size(items) - 1),
                                "versionState", json_string("Conflicted"));
        json_decref(conflict);
    }
    json_t *out = json_pack("{s:s, s:s, s:o, s:o}", "repository", repo, "region", region, "latest",
                            best >= 0 ? json_deep_copy(json_object_get(l[best].record, "version"))
                                      : json_null(),
                            "versions", items);
    listed_fini(l, n);
    json_decref(records);
    json_decref(policies);
    mgmt_reply_json(req, 200, out);
}

/* The document of version (resolved; ref as asked) of repo: what show answers. NULL with e set. */
static json_t *version_doc(struct registry *reg, const char *repo, const char *ref,
                           const char *version, struct err *e)
{
    json_t *record = NULL;
    bool is_definition = image_catalog_is_definition(reg->ms, repo);
    if (is_definition && iv_version_parse(version, NULL) == 0) {
        record = image_catalog_version(reg->ms, repo, version, e);
        if (record == NULL && e->code != ERR_NOT_FOUND)
            return NULL;
    }
    struct artifact a;
    if (artifact_lookup(reg, repo, version, &a, e) != 0 &&
        (record == NULL || e->code != ERR_NOT_FOUND)) {
        json_decref(record);
        return NULL;
    }
    /* A definition's version goes to its targets; anything else to every region. */
    char **all = NULL;
    const char **targets = NULL;
    if (record != NULL) {
        targets = iv_targets(record);
    } else {
        all = repl_target_regions(reg->repl);
        targets = (const char **)all;
    }
    json_t *policies = residency_policies(reg->ms, e);
    /* A version is its tag; a digest asked for is the manifest alone. */
    const char *tag = strchr(version, ':') == NULL ? version : NULL;
    struct acks_read ar = {0};
    json_t *summary =
        policies ? status_summary(reg, repo, tag, &a, targets, policies, &ar, e) : NULL;
    acks_read_fini(&ar);
    if (record != NULL)
        free(targets);
    else
        repl_free_names(all);
    if (summary == NULL) {
        json_decref(policies);
        free(a.media_type);
        json_decref(record);
        return NULL;
    }
    if (record != NULL)
        add_copies(reg, repo, &a, record, summary);
    /* Aggregated over the targets; regions still deleting their copies (or keeping them:
     * Retained) are listed after. */
    const char *agg = aggregate(summary);
    if (record != NULL) {
        json_t *rows = removing_rows(reg, repo, &a, record, policies);
        json_array_extend(summary, rows);
        json_decref(rows);
    }
    json_decref(policies);
    json_t *status = json_pack("{s:s, s:o}", "aggregatedState", agg, "summary", summary);
    json_t *out = json_pack("{s:s, s:s, s:o, s:o, s:I, s:o}", "repository", repo, "reference", ref,
                            "digest", a.is_known ? json_string(a.d.str) : json_null(), "mediaType",
                            a.media_type ? json_string(a.media_type) : json_null(), "size",
                            (json_int_t)a.size, "replicationStatus", status);
    if (record != NULL) {
        json_object_set(out, "version", json_object_get(record, "version"));
        json_object_set(out, "sourceRegion", json_object_get(record, "sourceRegion"));
        json_object_set(out, "publishingProfile", json_object_get(record, "publishingProfile"));
        json_object_set(out, "safetyProfile", json_object_get(record, "safetyProfile"));
        json_object_set_new(out, "isEndOfLife",
                            json_boolean(iv_is_end_of_life(record, util_now_ms())));
    }
    /* Two regions pushed different manifests as this version: both, and which one won. */
    struct err ce = {0};
    json_t *conflict =
        is_definition ? image_catalog_conflict(reg->ms, repo, version, &ce) : NULL;
    if (conflict != NULL) {
        json_object_set_new(out, "versionState", json_string("Conflicted"));
        json_object_del(conflict, "repository");
        json_object_del(conflict, "version");
        json_object_set_new(out, "conflict", conflict);
    }
    free(a.media_type);
    json_decref(record);
    return out;
}

json_t *mgmt_image_version_doc(struct registry *reg, const char *repo, const char *version,
                               struct err *e)
{
    return version_doc(reg, repo, version, version, e);
}

/* The version of definition repo that is latest in region; NULL when none (or e set). */
char *mgmt_image_latest(struct registry *reg, const char *repo, const char *region,
                        struct err *e)
{
    json_t *records;
    size_t n = 0;
    json_t *policies = residency_policies(reg->ms, e);
    struct listed *l = policies ? list_versions(reg, repo, policies, &records, &n, e) : NULL;
    json_decref(policies);
    if (l == NULL)
        return NULL;
    long best = latest_of(l, n, region);
    char *out = best >= 0 ? xstrdup(json_string_value(json_object_get(l[best].record, "version")))
                          : NULL;
    listed_fini(l, n);
    json_decref(records);
    return out;
}

static void show(struct http_req *req, const char *repo, const char *ref)
{
    struct registry *reg = req->reg;
    struct err e = {0};
    char version[TAG_MAX_BYTES + 1];
    snprintf(version, sizeof(version), "%s", ref);
    if (image_catalog_is_definition(reg->ms, repo) && strcmp(ref, IV_LATEST) == 0) {
        /* latest is resolved in the answering region */
        char *best = mgmt_image_latest(reg, repo, reg->cfg->region, &e);
        if (best == NULL && e.code != 0) {
            http_reply_mgmt_err(req, &e);
            return;
        }
        if (best == NULL) {
            mgmt_reply_error(req, ERR_NOT_FOUND, "no version of %s is latest in %s", repo,
                             reg->cfg->region);
            return;
        }
        snprintf(version, sizeof(version), "%s", best);
        free(best);
    }
    json_t *out = version_doc(reg, repo, ref, version, &e);
    if (out == NULL) {
        http_reply_mgmt_err(req, &e);
        return;
    }
    mgmt_reply_json_polled(req, out); /* ETag; ?wait=S long polls (the console's live bars) */
}

void mgmt_image_versions_show(struct http_req *req, const struct mgmt_params *p)
{
    (void)p;
    const char *repo = http_req_query(req, "repository");
    const char *ref = http_req_query(req, "reference");
    if (repo == NULL || !name_is_valid_repo(repo, strlen(repo)) || (ref != NULL && !*ref)) {
        mgmt_reply_error(req, ERR_BAD_REQUEST, "a valid repository is required");
        return;
    }
    if (ref == NULL)
        list(req, repo);
    else
        show(req, repo, ref);
}

/* The version a write names: repository of a definition and a version string. */
static json_t *write_target(struct http_req *req, const char **repo, const char **version,
                            struct err *e)
{
    *repo = http_req_query(req, "repository");
    *version = http_req_query(req, "reference");
    if (*repo == NULL || !name_is_valid_repo(*repo, strlen(*repo)) || *version == NULL) {
        err_set(e, ERR_BAD_REQUEST, "repository and reference are required");
        return NULL;
    }
    json_t *def = image_catalog_definition(req->reg->ms, *repo, e);
    if (def == NULL)
        return NULL;
    if (iv_version_parse(*version, NULL) != 0) {
        json_decref(def);
        err_set(e, ERR_BAD_REQUEST, "version \"%s\" is not MAJOR.MINOR.PATCH", *version);
        return NULL;
    }
    return def;
}

/* POST image-versions?repository=R&reference=V {profile}: the profile of a version before
 * it is pushed (here: this region is its source), so that it goes only where it should. */
void mgmt_image_versions_create(struct http_req *req, const struct mgmt_params *p)
{
    (void)p;
    struct registry *reg = req->reg;
    struct err e = {0};
    const char *repo, *version;
    json_t *body = NULL, *rec = NULL, *have = NULL;
    json_t *def = write_target(req, &repo, &version, &e);
    if (def == NULL)
        goto fail;
    if ((body = mgmt_body_object(req)) == NULL) {
        json_decref(def);
        return;
    }
    have = image_catalog_version(reg->ms, repo, version, &e);
    if (have != NULL || e.code != ERR_NOT_FOUND) {
        if (have != NULL)
            err_set(&e, ERR_CONFLICT, "version %s of %s exists: update it", version, repo);
        goto fail;
    }
    struct iv_world w;
    if (image_catalog_world(reg->ms, reg->cfg->region, &w, &e) != 0)
        goto fail;
    rec = iv_profile_new(repo, version, reg->cfg->region, def, body, &w, &e);
    image_catalog_world_fini(&w);
    if (rec == NULL || residency_check_targets(reg->ms, repo, rec, &e) != 0 ||
        image_catalog_create_version(reg->ms, rec, &e) != 0)
        goto fail;
    authz_audit_as(req, "image-version.create", "%s:%s", repo, version);
    json_decref(def);
    json_decref(body);
    mgmt_reply_json(req, 201, rec);
    return;
fail:
    json_decref(have);
    json_decref(rec);
    json_decref(def);
    json_decref(body);
    http_reply_mgmt_err(req, &e);
}

/* PATCH image-versions?repository=R&reference=V {targetRegions|addRegions|removeRegions|
 * excludeFromLatest|endOfLifeDate|...}: the record after the change, or an error and no
 * change at all. */
void mgmt_image_versions_update(struct http_req *req, const struct mgmt_params *p)
{
    (void)p;
    struct registry *reg = req->reg;
    struct err e = {0};
    const char *repo, *version;
    json_t *body = NULL, *rec = NULL, *have = NULL;
    json_t *def = write_target(req, &repo, &version, &e);
    if (def == NULL)
        goto fail;
    if ((body = mgmt_body_object(req)) == NULL) {
        json_decref(def);
        return;
    }
    have = image_catalog_version(reg->ms, repo, version, &e);
    if (have == NULL)
        goto fail;
    struct iv_world w;
    if (image_catalog_world(reg->ms, reg->cfg->region, &w, &e) != 0)
        goto fail;
    rec = iv_profile_update(have, body, &w, &e);
    image_catalog_world_fini(&w);
    if (rec == NULL || residency_check_targets(reg->ms, repo, rec, &e) != 0 ||
        image_catalog_put_version(reg->ms, rec, &e) != 0)
        goto fail;
    placement_reconsider(reg, repo, version); /* this region fetches or releases now */
    char *change = json_dumps(body, JSON_COMPACT);
    authz_audit_as(req, "image-version.update", "%s:%s %.120s", repo, version,
                   change ? change : "");
    free(change);
    json_decref(have);
    json_decref(def);
    json_decref(body);
    mgmt_reply_json(req, 200, rec);
    return;
fail:
    json_decref(have);
    json_decref(rec);
    json_decref(def);
    json_decref(body);
    http_reply_mgmt_err(req, &e);
}
