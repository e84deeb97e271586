/* Replica counts on volumes (copies.h). One pass:
 *
 *   1. want = {blob -> (copies, class, size)}: for every version of every definition that
 *      targets this region and is visible here, its manifest's blobs (an index's children's
 *      too) get that target's regionalReplicaCount and storageClass; a blob two versions
 *      share gets the larger count.
 *   2. place() each wanted blob, and each blob that had more than one copy after the last
 *      pass but is no longer wanted (a count lowered, a version gone) down to one copy.
 *      Every sync interval, and at start, every blob the region records is checked for
 *      extra copies (what an earlier run left).
 *   3. Each version of step 1 reports its copies here (the fewest any of its blobs has on
 *      volumes of its class) in a status event when the count changed since the last
 *      report (repl_report_copies), so other regions show them too.
 *
 * A pass runs every COPIES_PERIOD_MS, or at once on copies_kick. place() is idempotent, so a
 * pass is also the repair: a copy deleted or set aside since is made again from a sibling.
 * Each place() holds the blob GC lock shared, so a blob being deleted is not copied back. */
#include "copies.h"

#include <jansson.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gc_fence.h"
#include "image_catalog.h"
#include "log.h"
#include "manifest.h"
#include "repl.h"
#include "util.h"

#define COPIES_MAGIC 0x636f7079u /* "copy" */
#define COPIES_PERIOD_MS 2000

struct copies {
    unsigned magic;
    struct registry *reg;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool is_stopping; /* under mu */
    bool is_kicked;   /* under mu */
    json_t *multi;    /* digests left with more than one copy by the last pass (thread only) */
    int64_t last_sweep_ms;
};

/* An external layer (manifest_desc_is_external) whose bytes were not pushed into repo:
 * clients fetch it from its urls, and no region holds it. */
static bool is_external_not_held(struct registry *reg, const char *repo, const json_t *desc,
                                 const char *digest)
{
    if (!manifest_json_desc_is_external(desc))
        return false;
    struct digest d;
    uint64_t size;
    struct err e = {0};
    return digest_parse(digest, strlen(digest), &d, &e) != 0 ||
           reg->ms->ops->blob_get(reg->ms, repo, &d, &size, &e) != 0;
}

/* Is this descriptor of an index's child a manifest (else a blob: oci_manifests.c)? */
static bool is_manifest_desc(const json_t *desc)
{
    return manifest_is_known_media_type(json_string_value(json_object_get(desc, "mediaType")));
}

/* The blobs a manifest body names: config, layers, an index's children that are blobs, and
 * (one level) the blobs of its child manifests. */
static void add_blobs(struct registry *reg, const char *repo, const char *body, size_t len,
                      int depth, json_int_t count, const char *klass, json_t *want)
{
    json_error_t je;
    json_t *m = json_loadb(body, len, 0, &je);
    json_t *descs = json_array();
    if (json_is_object(json_object_get(m, "config")))
        json_array_append(descs, json_object_get(m, "config"));
    if (json_is_array(json_object_get(m, "layers")))
        json_array_extend(descs, json_object_get(m, "layers"));
    size_t i;
    json_t *desc;
    json_t *children = json_object_get(m, "manifests");
    json_array_foreach(children, i, desc) {
        if (!is_manifest_desc(desc))
            json_array_append(descs, desc);
    }
    json_array_foreach(descs, i, desc) {
        const char *d = json_string_value(json_object_get(desc, "digest"));
        json_t *size = json_object_get(desc, "size");
        if (d == NULL || !json_is_integer(size) || is_external_not_held(reg, repo, desc, d))
            continue;
        json_t *have = json_object_get(want, d);
        if (have && json_integer_value(json_object_get(have, "copies")) >= count)
            continue;
        json_object_set_new(want, d, json_pack("{s:I, s:s, s:O}", "copies", count, "class",
                                               klass, "size", size));
    }
    json_array_foreach(children, i, desc) {
        const char *cd = json_string_value(json_object_get(desc, "digest"));
        struct meta_manifest child = {0};
        struct err e = {0};
        if (depth > 0 || cd == NULL || !is_manifest_desc(desc) ||
            reg->ms->ops->manifest_get(reg->ms, repo, cd, &child, &e) != 0)
            continue;
        add_blobs(reg, repo, child.body, child.body_len, depth + 1, count, klass, want);
        meta_manifest_fini(&child);
    }
    json_decref(descs);
    json_decref(m);
}

/* This region's target entry of a version record, or NULL. */
static const json_t *own_target(const json_t *record, const char *region)
{
    size_t i;
    json_t *t;
    json_array_foreach(json_object_get(json_object_get(record, "publishingProfile"),
                                       "targetRegions"), i, t) {
        const char *name = json_string_value(json_object_get(t, "name"));
        if (name && strcmp(name, region) == 0)
            return t;
    }
    return NULL;
}

/* want as in the header's step 1; held: [{repo, digest, class}] of those versions, whose
 * copies are reported after the pass (step 3). */
static json_t *wanted(struct registry *reg, json_t *held)
{
    json_t *want = json_object();
    struct err e = {0};
    json_t *defs = image_catalog_definitions(reg->ms, &e);
    size_t i;
    json_t *def;
    json_array_foreach(defs, i, def) {
        const char *repo = json_string_value(json_object_get(def, "repository"));
        json_t *versions = repo ? image_catalog_versions(reg->ms, repo, &e) : NULL;
        size_t j;
        json_t *rec;
        json_array_foreach(versions, j, rec) {
            const json_t *t = own_target(rec, reg->cfg->region);
            const char *version = json_string_value(json_object_get(rec, "version"));
            if (t == NULL || version == NULL)
                continue;
            struct digest d;
            char *media_type = NULL;
            int64_t size, recorded_ms;
            bool is_visible = false;
            if (reg->ms->ops->manifest_lookup(reg->ms, repo, version, &d, &media_type, &size,
                                              &is_visible, &recorded_ms, &e) != 0)
                continue; /* not pushed yet, or not arrived */
            free(media_type);
            struct meta_manifest m = {0};
            if (!is_visible || reg->ms->ops->manifest_get(reg->ms, repo, d.str, &m, &e) != 0)
                continue; /* its blobs are not all here yet */
            add_blobs(reg, repo, m.body, m.body_len, 0,
                          json_integer_value(json_object_get(t, "regionalReplicaCount")),
                          json_string_value(json_object_get(t, "storageClass")), want);
            json_array_append_new(held, json_pack("{s:s, s:s, s:O}", "repo", repo, "digest",
                                                  d.str, "class",
                                                  json_object_get(t, "storageClass")));
            meta_manifest_fini(&m);
        }
        json_decref(versions);
    }
    json_decref(defs);
    return want;
}

/* place() one blob under the GC lock; the copies it has afterwards (0 on failure). */
static unsigned place_one(struct registry *reg, const char *digest, uint64_t size,
                          unsigned count, const char *klass)
{
    struct digest d;
    struct err e = {0};
    unsigned now = 0;
    if (digest_parse(digest, strlen(digest), &d, &e) != 0)
        return 0;
    int rc = gc_fence_enter_shared(reg, &e);
    if (rc == 0) {
        rc = reg->bs->ops->place(reg->bs, &d, size, count, klass, &now, &e);
        gc_fence_leave(reg, false);
    }
    if (rc != 0 && e.code != ERR_BLOB_UNKNOWN)
        log_warn("copies", "failed to place %u cop%s of %s: %s", count, count == 1 ? "y" : "ies",
                 digest, err_message(&e));
    return rc == 0 ? now : 0;
}

/* Step 3: each held version's copies here, in this region's status of it when the count
 * changed, so that every region shows them (image-version show). */
static void report_copies(struct registry *reg, const json_t *held)
{
    size_t i;
    json_t *h;
    json_array_foreach(held, i, h) {
        const char *repo = json_string_value(json_object_get(h, "repo"));
        const char *digest = json_string_value(json_object_get(h, "digest"));
        struct digest d;
        struct err e = {0};
        if (reg->repl == NULL || digest_parse(digest, strlen(digest), &d, &e) != 0)
            continue;
        int have = copies_of_manifest(reg, repo, &d,
                                      json_string_value(json_object_get(h, "class")));
        if (have >= 0)
            repl_report_copies(reg->repl, repo, &d, have);
    }
}

static void pass(struct copies *c)
{
    struct registry *reg = c->reg;
    json_t *held = json_array();
    json_t *want = wanted(reg, held);
    json_t *multi = json_object();
    const char *digest;
    json_t *w;
    json_object_foreach(want, digest, w) {
        unsigned count = (unsigned)json_integer_value(json_object_get(w, "copies"));
        unsigned now = place_one(reg, digest, (uint64_t)json_integer_value(json_object_get(w, "size")),
                                 count, json_string_value(json_object_get(w, "class")));
        if (now > 1)
            json_object_set_new(multi, digest, json_true());
    }
    /* Blobs no version wants more than one copy of any more: down to one. */
    bool is_sweep = util_now_ms() - c->last_sweep_ms >= reg->cfg->sync_interval_s * 1000;
    json_t *extra = json_deep_copy(c->multi);
    if (is_sweep) {
        struct meta_name_list all = {0};
        struct err e = {0};
        if (reg->ms->ops->blob_list_all(reg->ms, &all, &e) == 0) {
            for (size_t i = 0; i < all.n; i++)
                json_object_set_new(extra, all.names[i], json_true());
            c->last_sweep_ms = util_now_ms();
        }
        meta_name_list_fini(&all);
    }
    json_object_foreach(extra, digest, w) {
        struct digest d;
        uint64_t size;
        struct err e = {0};
        if (json_object_get(want, digest) != NULL ||
            digest_parse(digest, strlen(digest), &d, &e) != 0 ||
            reg->bs->ops->copies(reg->bs, &d, NULL) <= 1 ||
            reg->ms->ops->blob_find(reg->ms, &d, &size, &e) != 0)
            continue;
        place_one(reg, digest, size, 1, NULL);
    }
    json_decref(extra);
    json_decref(want);
    json_decref(c->multi);
    c->multi = multi;
    report_copies(reg, held);
    json_decref(held);
}

static void *copies_main(void *arg)
{
    struct copies *c = arg;
    AZ(pthread_mutex_lock(&c->mu));
    while (!c->is_stopping) {
        c->is_kicked = false;
        AZ(pthread_mutex_unlock(&c->mu));
        if (registry_is_owner(c->reg))
            pass(c);
        AZ(pthread_mutex_lock(&c->mu));
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += COPIES_PERIOD_MS / 1000;
        while (!c->is_stopping && !c->is_kicked)
            if (pthread_cond_timedwait(&c->cv, &c->mu, &until) != 0)
                break;
    }
    AZ(pthread_mutex_unlock(&c->mu));
    return NULL;
}

struct copies *copies_start(struct registry *reg)
{
    if (reg->bs->ops->place == NULL)
        return NULL;
    struct copies *c = xcalloc(1, sizeof(*c));
    c->magic = COPIES_MAGIC;
    c->reg = reg;
    c->multi = json_object();
    AZ(pthread_mutex_init(&c->mu, NULL));
    AZ(pthread_cond_init(&c->cv, NULL));
    AZ(pthread_create(&c->thread, NULL, copies_main, c));
    return c;
}

void copies_kick(struct copies *c)
{
    if (c == NULL)
        return;
    AZ(pthread_mutex_lock(&c->mu));
    c->is_kicked = true;
    AZ(pthread_cond_signal(&c->cv));
    AZ(pthread_mutex_unlock(&c->mu));
}

void copies_stop(struct copies *c)
{
    if (c == NULL)
        return;
    AZ(pthread_mutex_lock(&c->mu));
    c->is_stopping = true;
    AZ(pthread_cond_signal(&c->cv));
    AZ(pthread_mutex_unlock(&c->mu));
    pthread_join(c->thread, NULL);
    json_decref(c->multi);
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->cv);
    c->magic = 0;
    free(c);
}

int copies_of_manifest(struct registry *reg, const char *repo, const struct digest *d,
                       const char *klass)
{
    if (reg->bs->ops->copies == NULL)
        return -1;
    struct meta_manifest m = {0};
    struct err e = {0};
    if (reg->ms->ops->manifest_get(reg->ms, repo, d->str, &m, &e) != 0)
        return -1;
    json_t *blobs = json_object();
    add_blobs(reg, repo, m.body, m.body_len, 0, 1, klass ? klass : "", blobs);
    meta_manifest_fini(&m);
    int least = -1;
    const char *digest;
    json_t *w;
    json_object_foreach(blobs, digest, w) {
        struct digest b;
        if (digest_parse(digest, strlen(digest), &b, &e) != 0)
            continue;
        int n = (int)reg->bs->ops->copies(reg->bs, &b, klass);
        if (least < 0 || n < least)
            least = n;
    }
    json_decref(blobs);
    return least < 0 ? 0 : least;
}
