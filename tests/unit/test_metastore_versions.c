/* Unit tests for meta_versions.c: placement of manifests for filtered
 * replication. A manifest replicated from a peer is pending; manifest_place moves it to not
 * held (never fetched, never visible) and back; manifest_release takes a visible manifest out
 * of this region, dropping the blob links no other visible manifest needs and naming the
 * blobs nothing here needs any more. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>
#include <sqlite3.h>

#include "buf.h"
#include "schema_back_to_v2.h"

#include "config.h"
#include "digest.h"
#include "metastore.h"
#include "placement.h"
#include "registry_ctx.h"
#include "util.h"

static char tmpdir[] = "/tmp/meridian-versions-XXXXXX";
static int db_counter;
static char last_path[256];

static struct metastore *open_store(const char *region)
{
    struct err e = {0};
    snprintf(last_path, sizeof(last_path), "%s/db%d.sqlite", tmpdir, db_counter++);
    struct metastore *ms = metastore_sqlite_open(last_path, region, &e);
    assert_non_null(ms);
    return ms;
}

static void blob(const char *text, struct digest *d)
{
    digest_of_buffer(DIGEST_SHA256, text, strlen(text), d);
}

/* An image manifest over the given blob texts, linked and stored in repo. */
static void put_image(struct metastore *ms, const char *repo, const char *tag,
                      const char *const *blobs, size_t n, struct digest *out)
{
    struct meta_ref refs[4];
    char body[1024];
    size_t len = (size_t)snprintf(body, sizeof(body), "{\"schemaVersion\":2,\"tag\":\"%s\"}", tag);
    struct err e = {0};
    for (size_t i = 0; i < n; i++) {
        memset(&refs[i], 0, sizeof(refs[i]));
        blob(blobs[i], &refs[i].digest);
        refs[i].size = (int64_t)strlen(blobs[i]);
        assert_int_equal(ms->ops->blob_link(ms, repo, &refs[i].digest, strlen(blobs[i]), &e), 0);
    }
    struct meta_manifest m = {
        .media_type = "application/vnd.oci.image.manifest.v1+json", .body = body, .body_len = len};
    digest_of_buffer(DIGEST_SHA256, body, len, &m.digest);
    assert_int_equal(ms->ops->manifest_put(ms, repo, &m, refs, n, NULL, tag, &e), 0);
    *out = m.digest;
}

static bool is_linked(struct metastore *ms, const char *repo, const char *text)
{
    struct digest d;
    uint64_t size;
    struct err e = {0};
    blob(text, &d);
    return ms->ops->blob_get(ms, repo, &d, &size, &e) == 0;
}

static bool is_visible(struct metastore *ms, const char *repo, const char *ref)
{
    struct meta_manifest m = {0};
    struct err e = {0};
    int rc = ms->ops->manifest_get(ms, repo, ref, &m, &e);
    meta_manifest_fini(&m);
    return rc == 0;
}

static void test_release_keeps_what_others_need(void **state)
{
    (void)state;
    struct metastore *ms = open_store("eastus");
    static const char *const v1_blobs[] = {"config-1", "shared-layer", "layer-1"};
    static const char *const v2_blobs[] = {"config-2", "shared-layer"};
    static const char *const other_blobs[] = {"layer-1"};
    struct digest v1, v2, other;
    put_image(ms, "golden/base", "1.0.0", v1_blobs, 3, &v1);
    put_image(ms, "golden/base", "2.0.0", v2_blobs, 2, &v2);
    put_image(ms, "app/other", "1.0.0", other_blobs, 1, &other); /* layer-1 elsewhere too */
    struct meta_name_list orphans;
    struct err e = {0};
    assert_int_equal(ms->ops->manifest_release(ms, "golden/base", &v1, &orphans, &e), 0);
    /* config-1 only: shared-layer is 2.0.0's, layer-1 still linked in app/other */
    assert_int_equal(orphans.n, 1);
    struct digest c1;
    blob("config-1", &c1);
    assert_string_equal(orphans.names[0], c1.str);
    meta_name_list_fini(&orphans);
    assert_false(is_visible(ms, "golden/base", "1.0.0"));
    assert_false(is_visible(ms, "golden/base", v1.str));
    assert_true(is_visible(ms, "golden/base", "2.0.0"));
    assert_false(is_linked(ms, "golden/base", "config-1"));
    assert_false(is_linked(ms, "golden/base", "layer-1"));
    assert_true(is_linked(ms, "golden/base", "shared-layer"));
    assert_true(is_linked(ms, "app/other", "layer-1"));
    /* recorded still: its lookup answers, not visible */
    struct digest d;
    char *mt = NULL;
    int64_t size, recorded;
    bool vis = true;
    assert_int_equal(
        ms->ops->manifest_lookup(ms, "golden/base", "1.0.0", &d, &mt, &size, &vis, &recorded, &e),
        0);
    free(mt);
    assert_false(vis);
    assert_true(digest_equal(&d, &v1));
    /* releasing again changes nothing; an unknown manifest is an error */
    assert_int_equal(ms->ops->manifest_release(ms, "golden/base", &v1, &orphans, &e), 0);
    assert_int_equal(orphans.n, 0);
    struct digest unknown;
    blob("nothing", &unknown);
    assert_int_equal(ms->ops->manifest_release(ms, "golden/base", &unknown, &orphans, &e), -1);
    assert_int_equal(e.code, ERR_MANIFEST_UNKNOWN);
    /* a released manifest is put back in the fetch queue by manifest_place(held) */
    enum meta_placement before;
    assert_int_equal(ms->ops->manifest_place(ms, "golden/base", &v1, true, NULL, &before, &e), 0);
    assert_int_equal(before, META_PLACEMENT_NOT_HELD);
    struct meta_pending *list = NULL;
    size_t n = 0;
    assert_int_equal(ms->ops->pending_list(ms, 16, &list, &n, &e), 0);
    assert_int_equal(n, 1);
    assert_true(digest_equal(&list[0].digest, &v1));
    assert_int_equal(list[0].n_refs, 3);
    /* ... and out of it again by manifest_place(not held) */
    assert_int_equal(ms->ops->manifest_place(ms, "golden/base", &v1, false, NULL, &before, &e), 0);
    assert_int_equal(before, META_PLACEMENT_PENDING);
    for (size_t i = 0; i < n; i++)
        meta_pending_fini(&list[i]);
    free(list);
    assert_int_equal(ms->ops->pending_list(ms, 16, &list, &n, &e), 0);
    assert_int_equal(n, 0);
    free(list);
    /* a visible manifest is left visible by manifest_place */
    assert_int_equal(ms->ops->manifest_place(ms, "golden/base", &v2, false, NULL, &before, &e), 0);
    assert_int_equal(before, META_PLACEMENT_VISIBLE);
    assert_true(is_visible(ms, "golden/base", "2.0.0"));
    ms->ops->close(ms);
}

/* The event of kind about d as this store serves it (derived payload), as a JSON object. */
static json_t *event_of(struct metastore *ms, const char *want, const struct digest *d)
{
    struct buf out;
    buf_init(&out, 1 << 20);
    int64_t last;
    struct err e = {0};
    assert_int_equal(ms->ops->events_since(ms, 0, 1000, &out, &last, &e), 0);
    json_error_t je;
    json_t *events = json_loadb(out.data, out.len, 0, &je);
    buf_fini(&out);
    assert_non_null(events);
    json_t *found = NULL;
    size_t i;
    json_t *ev;
    json_array_foreach(events, i, ev)
    {
        const char *kind = json_string_value(json_object_get(ev, "kind"));
        const char *dg = json_string_value(json_object_get(ev, "digest"));
        if (strcmp(kind, want) == 0 && dg && strcmp(dg, d->str) == 0) {
            json_decref(found); /* the last one */
            found = json_incref(ev);
        }
    }
    json_decref(events);
    assert_non_null(found);
    return found;
}

static json_t *put_event_of(struct metastore *ms, const struct digest *d)
{
    return event_of(ms, "manifest_put", d);
}

/* Applies ev (from region eastus, as its origin_seq-th event) to ms. */
static void apply_put(struct metastore *ms, json_t *ev, int64_t origin_seq)
{
    json_t *pl = json_object_get(ev, "payload");
    char *payload = pl && !json_is_null(pl) ? json_dumps(pl, JSON_COMPACT) : NULL;
    struct meta_event me = {.origin = "eastus", .origin_seq = origin_seq,
                            .hlc = (uint64_t)json_integer_value(json_object_get(ev, "hlc")),
                            .kind = (char *)json_string_value(json_object_get(ev, "kind")),
                            .repo = (char *)json_string_value(json_object_get(ev, "repo")),
                            .name = (char *)json_string_value(json_object_get(ev, "name")),
                            .digest = (char *)json_string_value(json_object_get(ev, "digest")),
                            .payload = payload};
    bool is_new = false, is_gap = false;
    struct err e = {0};
    assert_int_equal(ms->ops->event_apply(ms, &me, &is_new, &is_gap, &e), 0);
    assert_true(is_new);
    assert_false(is_gap);
    free(payload);
}

/* A region that does not hold a manifest keeps no copy of its document: released, its
 * body is emptied and the event it relays carries the size only; a peer applying that
 * event records it body-less and takes the document only if it matches; a definition's
 * manifest applied with its body is recorded without it too. */
/* A blob a client uploads again after a version was pushed here (for the next version,
 * whose manifest PUT has not come yet) keeps its link when that version is released, so
 * the PUT that follows finds it; what was linked before the push goes as before. */
static void test_release_keeps_a_blob_uploaded_since(void **state)
{
    (void)state;
    struct metastore *ms = open_store("eastus");
    static const char *const v1_blobs[] = {"config-1", "next-layer"};
    struct digest v1, next;
    put_image(ms, "golden/base", "1.0.0", v1_blobs, 2, &v1);
    /* the wall clock moves on, then the client uploads next-layer again (a 201) */
    int64_t pushed_ms = util_now_ms();
    while (util_now_ms() <= pushed_ms + 1)
        usleep(500);
    struct err e = {0};
    blob("next-layer", &next);
    assert_int_equal(ms->ops->blob_link(ms, "golden/base", &next, strlen("next-layer"), &e), 0);
    struct meta_name_list orphans;
    assert_int_equal(ms->ops->manifest_release(ms, "golden/base", &v1, &orphans, &e), 0);
    struct digest c1;
    blob("config-1", &c1);
    assert_int_equal(orphans.n, 1);
    assert_string_equal(orphans.names[0], c1.str);
    meta_name_list_fini(&orphans);
    assert_false(is_linked(ms, "golden/base", "config-1"));
    /* linked still: the next version's manifest PUT finds it (check_ref reads the link) */
    assert_true(is_linked(ms, "golden/base", "next-layer"));
    ms->ops->close(ms);
}

static void test_not_held_keeps_no_manifest_bytes(void **state)
{
    (void)state;
    struct metastore *east = open_store("eastus");
    static const char *const v1_blobs[] = {"config-1", "layer-1"};
    static const char *const v2_blobs[] = {"config-2"};
    struct digest v1, v2;
    put_image(east, "golden/base", "1.0.0", v1_blobs, 2, &v1);
    put_image(east, "golden/base", "2.0.0", v2_blobs, 1, &v2);
    char body[1024];
    size_t len = (size_t)snprintf(body, sizeof(body), "{\"schemaVersion\":2,\"tag\":\"1.0.0\"}");
    struct meta_name_list orphans;
    struct err e = {0};
    bool is_missing = true;
    assert_int_equal(east->ops->manifest_body_missing(east, "golden/base", &v1, &is_missing, &e),
                     0);
    assert_false(is_missing);
    json_t *held = put_event_of(east, &v1);
    assert_non_null(json_object_get(json_object_get(held, "payload"), "body"));
    assert_int_equal(east->ops->manifest_release(east, "golden/base", &v1, &orphans, &e), 0);
    meta_name_list_fini(&orphans);
    assert_int_equal(east->ops->manifest_body_missing(east, "golden/base", &v1, &is_missing, &e),
                     0);
    assert_true(is_missing);
    json_t *ev = put_event_of(east, &v1);
    json_t *payload = json_object_get(ev, "payload");
    assert_null(json_object_get(payload, "body"));
    assert_int_equal(json_integer_value(json_object_get(payload, "size")), (json_int_t)len);
    assert_int_equal(json_array_size(json_object_get(payload, "refs")), 2);

    /* a peer records the body-less event, pending, and needs the document */
    struct metastore *west = open_store("westus");
    apply_put(west, ev, 1);
    assert_int_equal(west->ops->manifest_body_missing(west, "golden/base", &v1, &is_missing, &e),
                     0);
    assert_true(is_missing);
    struct meta_pending *list = NULL;
    size_t n = 0;
    assert_int_equal(west->ops->pending_list(west, 16, &list, &n, &e), 0);
    assert_int_equal(n, 1);
    assert_int_equal(list[0].n_refs, 2);
    meta_pending_fini(&list[0]);
    free(list);
    /* only the bytes of that digest and size are taken */
    assert_int_equal(west->ops->manifest_body_set(west, "golden/base", &v1, "{}", 2, &e), -1);
    assert_int_equal(e.code, ERR_DIGEST_INVALID);
    assert_int_equal(west->ops->manifest_body_set(west, "golden/base", &v1, body, len, &e), 0);
    assert_int_equal(west->ops->manifest_body_missing(west, "golden/base", &v1, &is_missing, &e),
                     0);
    assert_false(is_missing);

    /* in a definition, a manifest applied from a peer is recorded without its document */
    struct metastore *north = open_store("northeurope");
    assert_int_equal(north->ops->object_put(north, "image_definition", "golden/base",
                                            "{\"repository\":\"golden/base\"}", &e),
                     0);
    apply_put(north, held, 1);
    assert_int_equal(north->ops->manifest_body_missing(north, "golden/base", &v1, &is_missing, &e),
                     0);
    assert_true(is_missing);
    json_decref(held);
    json_decref(ev);
    east->ops->close(east);
    west->ops->close(west);
    north->ops->close(north);
}

static size_t n_pending(struct metastore *ms)
{
    struct meta_pending *list = NULL;
    size_t n = 0;
    struct err e = {0};
    assert_int_equal(ms->ops->pending_list(ms, 16, &list, &n, &e), 0);
    for (size_t i = 0; i < n; i++)
        meta_pending_fini(&list[i]);
    free(list);
    return n;
}

/* eastus pushes golden/base:1.0.0 (v1, two blobs); northeurope, which knows the image
 * definition, gets its manifest event (*put) and its tag event (*tag) to apply. */
static struct metastore *north_hearing_v1(struct metastore **east_out, struct digest *v1,
                                          json_t **put, json_t **tag)
{
    struct metastore *east = open_store("eastus");
    static const char *const v1_blobs[] = {"config-1", "layer-1"};
    put_image(east, "golden/base", "1.0.0", v1_blobs, 2, v1);
    *put = put_event_of(east, v1);
    *tag = event_of(east, "tag_set", v1);
    struct metastore *north = open_store("northeurope");
    struct err e = {0};
    assert_int_equal(north->ops->object_put(north, "image_definition", "golden/base",
                                            "{\"repository\":\"golden/base\"}", &e),
                     0);
    *east_out = east;
    return north;
}

/* Placement against the orders events and fetches really come in (flaky e2e of issue 12):
 * a version's manifest applied before its tag is recorded as not held (it belongs with
 * nothing yet) and the tag puts it back in the fetch queue; a manifest taken out of this
 * region while its content was being fetched is not made visible by the fetch's end; and
 * the Pending status of a manifest placed here again is written with the move itself. */
static void test_placement_follows_late_tags_and_removals_during_a_fetch(void **state)
{
    (void)state;
    struct metastore *east;
    struct digest v1;
    json_t *put, *tag;
    struct metastore *north = north_hearing_v1(&east, &v1, &put, &tag);
    struct err e = {0};
    apply_put(north, put, 1);
    assert_int_equal(n_pending(north), 1);
    /* a fetch worker looks at it between the two events: no tag, so not held */
    enum meta_placement before;
    assert_int_equal(north->ops->manifest_place(north, "golden/base", &v1, false, NULL, &before,
                                                &e),
                     0);
    assert_int_equal(before, META_PLACEMENT_PENDING);
    assert_int_equal(n_pending(north), 0);
    /* its tag arrives: placed again by the fetch workers, not left out for ever */
    apply_put(north, tag, 2);
    assert_int_equal(n_pending(north), 1);

    /* held: the fetch begins; the region is removed from the targets meanwhile */
    struct meta_pending *list = NULL;
    size_t n = 0;
    assert_int_equal(north->ops->pending_list(north, 16, &list, &n, &e), 0);
    assert_int_equal(n, 1);
    assert_int_equal(north->ops->manifest_place(north, "golden/base", &v1, false, NULL, &before,
                                                &e),
                     0);
    assert_int_equal(before, META_PLACEMENT_PENDING);
    assert_int_equal(north->ops->pending_complete(north, &list[0], NULL, &e), -1);
    assert_int_equal(e.code, ERR_CONFLICT);
    assert_false(is_visible(north, "golden/base", v1.str));
    assert_false(is_linked(north, "golden/base", "layer-1"));
    e = (struct err){0};
    assert_int_equal(north->ops->manifest_show_shallow(north, "golden/base", &v1, NULL, &e), -1);
    assert_int_equal(e.code, ERR_CONFLICT);
    assert_false(is_visible(north, "golden/base", v1.str));
    meta_pending_fini(&list[0]);
    free(list);

    /* a target again: pending, with its Pending status (and event) in the same step */
    struct meta_status pending = {.region = "northeurope", .state = "Pending",
                                  .updated_ms = util_now_ms(), .details = ""};
    assert_int_equal(north->ops->manifest_place(north, "golden/base", &v1, true, &pending, &before,
                                                &e),
                     0);
    assert_int_equal(before, META_PLACEMENT_NOT_HELD);
    struct meta_status *st = NULL;
    size_t n_st = 0;
    assert_int_equal(north->ops->status_list(north, "golden/base", &v1, &st, &n_st, &e), 0);
    assert_int_equal(n_st, 1);
    assert_string_equal(st[0].state, "Pending");
    meta_status_free(st, n_st);
    json_decref(event_of(north, "status", &v1));
    /* a second call changes nothing and writes no status */
    pending.state = "Completed";
    assert_int_equal(north->ops->manifest_place(north, "golden/base", &v1, true, &pending, &before,
                                                &e),
                     0);
    assert_int_equal(before, META_PLACEMENT_PENDING);
    assert_int_equal(north->ops->status_list(north, "golden/base", &v1, &st, &n_st, &e), 0);
    assert_string_equal(st[0].state, "Pending");
    meta_status_free(st, n_st);
    json_decref(put);
    json_decref(tag);
    east->ops->close(east);
    north->ops->close(north);
}

/* A Shallow version is shown with its Completed report in one transaction: written apart
 * (before 6 December), a crash between the two left it visible here and this region not
 * Completed anywhere for ever (nothing reports a manifest that is already visible). */
static void test_shallow_show_writes_its_completed_report_with_it(void **state)
{
    (void)state;
    struct metastore *east;
    struct digest v1;
    json_t *put, *tag;
    struct metastore *north = north_hearing_v1(&east, &v1, &put, &tag);
    struct err e = {0};
    apply_put(north, put, 1);
    apply_put(north, tag, 2);
    assert_int_equal(n_pending(north), 1);
    struct meta_status done = {.region = "northeurope", .state = "Completed",
                               .updated_ms = util_now_ms(),
                               .details = "Shallow: blobs are fetched on first pull"};
    assert_int_equal(north->ops->manifest_show_shallow(north, "golden/base", &v1, &done, &e), 0);
    assert_true(is_visible(north, "golden/base", v1.str));
    assert_false(is_linked(north, "golden/base", "layer-1")); /* fetched on first pull */
    struct meta_status *st = NULL;
    size_t n_st = 0;
    assert_int_equal(north->ops->status_list(north, "golden/base", &v1, &st, &n_st, &e), 0);
    assert_int_equal(n_st, 1);
    assert_string_equal(st[0].region, "northeurope");
    assert_string_equal(st[0].state, "Completed");
    meta_status_free(st, n_st);
    json_decref(event_of(north, "status", &v1)); /* announced: an event peers pull */
    json_decref(put);
    json_decref(tag);
    east->ops->close(east);
    north->ops->close(north);
}

/* A puller merging an event just before the fetch worker's move (interleaved below). */
static const struct metastore_ops *real_ops;
static json_t *merged_before_move;
static int64_t merged_seq;

static int manifest_place_after_a_merge(struct metastore *ms, const char *repo,
                                        const struct digest *d, bool is_held,
                                        const struct meta_status *on_pending,
                                        enum meta_placement *before, struct err *e)
{
    if (!is_held && merged_before_move != NULL) {
        apply_put(ms, merged_before_move, merged_seq);
        merged_before_move = NULL;
    }
    return real_ops->manifest_place(ms, repo, d, is_held, on_pending, before, e);
}

/* The e2e stall on PostgreSQL ("image-version wait --replicated" left a target region
 * Pending): a fetch worker finds a version's manifest with no tag yet, so not held; its
 * tag is merged before the worker's move is written, so the merge finds the manifest still
 * pending and leaves it; the move then took it out of the fetch queue for ever. The same
 * for a placement by a version record (placement_place_digest). Now placed again. */
static void test_a_tag_merged_during_a_not_held_move_places_again(void **state)
{
    (void)state;
    struct metastore *east = open_store("eastus");
    static const char *const v1_blobs[] = {"config-1", "layer-1"};
    static const char *const v2_blobs[] = {"config-2", "layer-2"};
    struct digest v1, v2;
    put_image(east, "golden/base", "1.0.0", v1_blobs, 2, &v1);
    put_image(east, "golden/base", "2.0.0", v2_blobs, 2, &v2);
    json_t *put1 = put_event_of(east, &v1), *tag1 = event_of(east, "tag_set", &v1);
    json_t *put2 = put_event_of(east, &v2), *tag2 = event_of(east, "tag_set", &v2);
    struct metastore *north = open_store("northeurope");
    struct err e = {0};
    assert_int_equal(north->ops->object_put(north, "image_definition", "golden/base",
                                            "{\"repository\":\"golden/base\"}", &e),
                     0);
    struct config cfg;
    config_defaults(&cfg);
    free(cfg.region);
    cfg.region = xstrdup("northeurope");
    struct registry reg = {.cfg = &cfg, .ms = north}; /* no replication: nothing fetched */
    real_ops = north->ops;
    struct metastore_ops interleaved = *north->ops;
    interleaved.manifest_place = manifest_place_after_a_merge;
    north->ops = &interleaved;

    /* the fetch workers' admission */
    apply_put(north, put1, 1);
    assert_int_equal(n_pending(north), 1);
    merged_before_move = tag1;
    merged_seq = 2;
    assert_false(placement_admit_pending(&reg, "golden/base", &v1));
    assert_null(merged_before_move); /* the merge did come in between */
    assert_int_equal(n_pending(north), 1);
    assert_true(placement_admit_pending(&reg, "golden/base", &v1));

    /* a placement (e.g. after a version record's event) */
    apply_put(north, put2, 3);
    assert_int_equal(n_pending(north), 2);
    merged_before_move = tag2;
    merged_seq = 4;
    placement_place_digest(&reg, "golden/base", &v2);
    assert_null(merged_before_move);
    assert_int_equal(n_pending(north), 2);
    assert_true(placement_admit_pending(&reg, "golden/base", &v2));

    north->ops = real_ops;
    config_fini(&cfg);
    json_decref(put1);
    json_decref(tag1);
    json_decref(put2);
    json_decref(tag2);
    east->ops->close(east);
    north->ops->close(north);
}

/* The status row of region for repo@d in ms (asserted present); the caller frees it. */
static struct meta_status *status_of(struct metastore *ms, const struct digest *d,
                                     const char *region, size_t *n)
{
    struct meta_status *st = NULL;
    struct err e = {0};
    assert_int_equal(ms->ops->status_list(ms, "golden/base", d, &st, n, &e), 0);
    for (size_t i = 0; i < *n; i++) {
        if (strcmp(st[i].region, region) == 0) {
            struct meta_status tmp = st[0];
            st[0] = st[i];
            st[i] = tmp;
            return st;
        }
    }
    fail_msg("no status of %s", region);
    return NULL;
}

/* Copies in the status (issue 12): a database of schema version 2 opens with this build
 * and its status rows gain the count (none reported yet); a status written with copies
 * keeps them and its event carries them as an extra field; a peer merging that event
 * keeps the count, and one merging an event of an older release (no field) has none. */
static void test_status_copies_on_a_v2_database_and_from_old_peers(void **state)
{
    (void)state;
    struct metastore *ms = open_store("eastus");
    static const char *const v1_blobs[] = {"config-1", "layer-1"};
    struct digest v1;
    put_image(ms, "golden/base", "1.0.0", v1_blobs, 2, &v1); /* Completed here */
    ms->ops->close(ms);
    sqlite3 *db;
    assert_int_equal(sqlite3_open(last_path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, SQL_SCHEMA_BACK_TO_V2, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);

    struct err e = {0};
    ms = metastore_sqlite_open(last_path, "eastus", &e);
    assert_non_null(ms);
    size_t n = 0;
    struct meta_status *st = status_of(ms, &v1, "eastus", &n);
    assert_string_equal(st[0].state, "Completed");
    assert_false(st[0].has_copies);
    meta_status_free(st, n);
    struct meta_status three = {.region = "eastus", .state = "Completed", .bytes_done = 5,
                                .bytes_total = 5, .updated_ms = util_now_ms(), .details = "",
                                .has_copies = true, .copies = 3};
    assert_int_equal(ms->ops->status_set(ms, "golden/base", &v1, &three, true, &e), 0);
    st = status_of(ms, &v1, "eastus", &n);
    assert_true(st[0].has_copies);
    assert_int_equal(st[0].copies, 3);
    meta_status_free(st, n);
    json_t *ev = event_of(ms, "status", &v1);
    json_t *payload = json_object_get(ev, "payload");
    assert_int_equal(json_integer_value(json_object_get(payload, "copies")), 3);
    assert_string_equal(json_string_value(json_object_get(payload, "state")), "Completed");

    /* a peer keeps the count; an older release's event (no field) reports none */
    struct metastore *west = open_store("westus");
    apply_put(west, ev, 1);
    st = status_of(west, &v1, "eastus", &n);
    assert_true(st[0].has_copies);
    assert_int_equal(st[0].copies, 3);
    meta_status_free(st, n);
    json_object_del(payload, "copies");
    json_object_set_new(payload, "updatedMs", json_integer(util_now_ms() + 1));
    apply_put(west, ev, 2);
    st = status_of(west, &v1, "eastus", &n);
    assert_false(st[0].has_copies);
    meta_status_free(st, n);
    json_decref(ev);
    ms->ops->close(ms);
    west->ops->close(west);
}

static int setup(void **state)
{
    (void)state;
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_release_keeps_what_others_need),
        cmocka_unit_test(test_release_keeps_a_blob_uploaded_since),
        cmocka_unit_test(test_not_held_keeps_no_manifest_bytes),
        cmocka_unit_test(test_placement_follows_late_tags_and_removals_during_a_fetch),
        cmocka_unit_test(test_shallow_show_writes_its_completed_report_with_it),
        cmocka_unit_test(test_a_tag_merged_during_a_not_held_move_places_again),
        cmocka_unit_test(test_status_copies_on_a_v2_database_and_from_old_peers),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
