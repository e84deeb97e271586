/* Unit tests: an effect and its webhook deliveries commit together (webhook.h,
 * webhook_tx_*; docs/webhooks.md "Durable"), on SQLite and, with MERIDIAN_TEST_PG, on
 * PostgreSQL. A crash between two commits cannot be staged without a fault point, so the
 * tests show the one transaction another way: when the deliveries cannot be written (a
 * trigger of the test's own database refuses them), the effect does not take place
 * either, and once they can, the effect and exactly one delivery per webhook are there.
 * Before 6 December the effect committed alone and its delivery, written after it in a
 * transaction of its own, was lost (retention: test_retention_delete). Also: the
 * redaction of receiver URLs kept in delivery records written before they were redacted. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h> /* after the four above, which it needs */

#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "digest.h"
#include "hlc.h"
#include "merge_effects.h"
#include "metastore.h"
#include "metastore_sqlite_int.h"
#include "registry_ctx.h"
#include "retention.h"
#include "retention_run.h"
#include "sql_driver.h"
#include "util.h"
#include "version_conflict.h"
#include "webhook.h"
#include "webhook_def.h"

static char tmpdir[] = "/tmp/meridian-whfx-XXXXXX";
static int db_counter;
static bool is_pg; /* the second run: the same tests on PostgreSQL (MERIDIAN_TEST_PG) */

struct fx {
    char target[1024]; /* the driver's open argument */
    struct config cfg;
    struct registry reg;
};

static int fx_setup(void **state)
{
    struct fx *f = xcalloc(1, sizeof(*f));
    struct err e = {0};
    int n = db_counter++;
    if (is_pg) {
        const char *base = getenv("MERIDIAN_TEST_PG");
        char sql[128];
        struct sql_db *db = NULL;
        assert_int_equal(sql_pg_driver.open(base, &db, &e), 0);
        snprintf(sql, sizeof(sql), "DROP SCHEMA IF EXISTS whfx_%d CASCADE; CREATE SCHEMA whfx_%d",
                 n, n);
        assert_int_equal(sql_pg_driver.exec(db, sql), SQL_OK);
        sql_pg_driver.close(db);
        snprintf(f->target, sizeof(f->target), "%s%soptions=-csearch_path%%3Dwhfx_%d", base,
                 strchr(base, '?') != NULL ? "&" : "?", n);
        f->reg.ms = metastore_pg_open(f->target, "eastus", &e);
    } else {
        snprintf(f->target, sizeof(f->target), "%s/db%d.sqlite", tmpdir, n);
        f->reg.ms = metastore_sqlite_open(f->target, "eastus", &e);
    }
    assert_non_null(f->reg.ms);
    config_defaults(&f->cfg);
    free(f->cfg.region);
    f->cfg.region = xstrdup("eastus");
    f->reg.cfg = &f->cfg; /* no worker: nothing is sent */
    *state = f;
    return 0;
}

static int fx_teardown(void **state)
{
    struct fx *f = *state;
    f->reg.ms->ops->close(f->reg.ms);
    config_fini(&f->cfg);
    free(f);
    return 0;
}

/* Runs sql on a connection of the test's own to the store's database. */
static void db_exec(struct fx *f, const char *sql)
{
    const struct sql_driver *drv = is_pg ? &sql_pg_driver : &sql_sqlite_driver;
    struct sql_db *db = NULL;
    struct err e = {0};
    assert_int_equal(drv->open(f->target, &db, &e), 0);
    if (drv->exec(db, sql) != SQL_OK)
        fail_msg("test SQL failed: %s", sql);
    drv->close(db);
}

/* While on, every insert of a delivery fails, as a full disk or a lost connection would
 * fail it: only the test's database has the trigger. */
static void refuse_deliveries(struct fx *f, bool is_on)
{
    if (!is_on)
        db_exec(f, is_pg ? "DROP TRIGGER IF EXISTS refuse_delivery ON webhook_deliveries"
                         : "DROP TRIGGER IF EXISTS refuse_delivery");
    else if (is_pg)
        db_exec(f, "CREATE OR REPLACE FUNCTION refuse_delivery() RETURNS trigger AS"
                   " $$ BEGIN RAISE EXCEPTION 'refused by the test'; END $$ LANGUAGE plpgsql;"
                   " CREATE TRIGGER refuse_delivery BEFORE INSERT ON webhook_deliveries"
                   " FOR EACH ROW EXECUTE FUNCTION refuse_delivery()");
    else
        db_exec(f, "CREATE TRIGGER refuse_delivery BEFORE INSERT ON webhook_deliveries"
                   " BEGIN SELECT RAISE(ABORT, 'refused by the test'); END");
}

static void allow_deliveries(struct fx *f)
{
    refuse_deliveries(f, false);
}

static void put_webhook(struct fx *f, const char *json)
{
    json_error_t je;
    json_t *v = json_loads(json, 0, &je);
    struct webhook_def d;
    struct err e = {0};
    assert_int_equal(webhook_def_parse(v, &d, &e), 0);
    json_decref(v);
    assert_int_equal(webhook_save(&f->reg, &d, false, &e), 0);
    webhook_def_fini(&d);
}

/* Deliveries of webhook for action; the first one's payload in *payload if asked. */
static size_t count_deliveries(struct fx *f, const char *webhook, const char *action,
                               json_t **payload)
{
    struct meta_delivery_list list;
    struct err e = {0};
    assert_int_equal(f->reg.ms->ops->delivery_list(f->reg.ms, webhook, 100, &list, &e), 0);
    size_t n = 0;
    for (size_t i = 0; i < list.n; i++) {
        if (strcmp(list.items[i].action, action) != 0)
            continue;
        if (n++ == 0 && payload != NULL) {
            json_error_t je;
            *payload = json_loads(list.items[i].payload, 0, &je);
        }
    }
    meta_delivery_list_fini(&list);
    return n;
}

#define IMAGE_TYPE "application/vnd.oci.image.manifest.v1+json"

static void put(struct fx *f, const char *repo, const char *body, const char *tag,
                struct digest *out)
{
    struct meta_manifest m = {.media_type = IMAGE_TYPE, .body = (char *)body,
                              .body_len = strlen(body)};
    digest_of_buffer(DIGEST_SHA256, body, m.body_len, &m.digest);
    struct err e = {0};
    assert_int_equal(f->reg.ms->ops->manifest_put(f->reg.ms, repo, &m, NULL, 0, NULL, tag, &e), 0);
    if (out != NULL)
        *out = m.digest;
}

static bool has_tag(struct fx *f, const char *repo, const char *tag)
{
    struct meta_manifest m;
    struct err e = {0};
    bool found = f->reg.ms->ops->manifest_get(f->reg.ms, repo, tag, &m, &e) == 0;
    if (found)
        meta_manifest_fini(&m);
    return found;
}

#define HOOK "{\"name\":\"deploy1\",\"location\":\"eastus\",\"uri\":\"http://h/\"," \
             "\"actions\":[\"push\",\"delete\"]}"

/* Retention deletes a tag with its delete delivery, or not at all. Fails before 6 December:
 * the tag went and the delivery, refused, was only logged. */
static void test_retention_delete(void **state)
{
    struct fx *f = *state;
    struct err e = {0};
    put_webhook(f, HOOK);
    put(f, "apps/web", "{\"n\":1}", "v1", NULL);
    put(f, "apps/web", "{\"n\":2}", "v2", NULL);
    assert_int_equal(f->reg.ms->ops->object_put(f->reg.ms, RETENTION_KIND, "apps/*",
                                                "{\"keepNewest\":1}", &e),
                     0);
    refuse_deliveries(f, true);
    json_t *out = retention_run(&f->reg, false, &e);
    assert_non_null(out);
    json_decref(out);
    assert_true(has_tag(f, "apps/web", "v1")); /* the delete went with its delivery */
    assert_int_equal(count_deliveries(f, "deploy1", "delete", NULL), 0);

    allow_deliveries(f);
    out = retention_run(&f->reg, false, &e);
    assert_non_null(out);
    json_decref(out);
    assert_false(has_tag(f, "apps/web", "v1"));
    assert_true(has_tag(f, "apps/web", "v2"));
    json_t *p = NULL;
    assert_int_equal(count_deliveries(f, "deploy1", "delete", &p), 1);
    json_t *target = json_object_get(p, "target");
    assert_string_equal(json_string_value(json_object_get(target, "tag")), "v1");
    assert_string_equal(json_string_value(json_object_get(json_object_get(p, "request"), "id")),
                        "retention");
    json_decref(p);
    /* A further pass deletes nothing and announces nothing. */
    out = retention_run(&f->reg, false, &e);
    json_decref(out);
    assert_int_equal(count_deliveries(f, "deploy1", "delete", NULL), 1);
}

/* apply_batch's way (repl.c): an event from a peer applied with its deliveries. Refused,
 * the event is not applied (the version vector does not cover it: it is fetched again);
 * applied, one delivery; applied again (relayed by another peer), none more. */
static void test_replicated_delete(void **state)
{
    struct fx *f = *state;
    struct metastore *ms = f->reg.ms;
    struct err e = {0};
    put_webhook(f, HOOK);
    struct digest d;
    digest_of_buffer(DIGEST_SHA256, "x", 1, &d);
    struct meta_event ev = {.origin = "westus", .origin_seq = 1, .hlc = 1000,
                            .kind = "tag_delete", .repo = "apps/web", .name = "v1",
                            .digest = d.str};
    const char *tag = "v1";
    for (int pass = 0; pass < 3; pass++) {
        if (pass == 0)
            refuse_deliveries(f, true);
        if (pass == 1)
            allow_deliveries(f);
        struct webhook_tx tx;
        bool is_new = false, is_gap = false;
        assert_int_equal(webhook_tx_begin(&f->reg, &tx, &e), 0);
        assert_true(tx.is_open);
        int rc = ms->ops->event_apply(ms, &ev, &is_new, &is_gap, &e);
        assert_int_equal(rc, 0);
        assert_false(is_gap);
        assert_int_equal(is_new, pass < 2);
        if (is_new)
            rc = webhook_tx_queue_replicated(&tx, "delete", ev.repo, &d, &tag, 1, &e);
        assert_int_equal(rc, pass == 0 ? -1 : 0);
        assert_int_equal(webhook_tx_end(&tx, rc, &e), rc);
        struct meta_vv vv = {0};
        assert_int_equal(ms->ops->vv_get(ms, &vv, &e), 0);
        assert_int_equal(meta_vv_get(&vv, "westus"), pass == 0 ? 0 : 1);
        meta_vv_fini(&vv);
        assert_int_equal(count_deliveries(f, "deploy1", "delete", NULL), pass == 0 ? 0 : 1);
    }
}

/* The collector's way (gc.c): a group collected with the deliveries of what it deleted. */
static void test_gc_delete(void **state)
{
    struct fx *f = *state;
    struct metastore *ms = f->reg.ms;
    struct err e = {0};
    put_webhook(f, HOOK);
    struct digest d;
    put(f, "apps/web", "{\"n\":1}", NULL, &d);
    for (int pass = 0; pass < 2; pass++) {
        refuse_deliveries(f, pass == 0);
        struct meta_untagged_list due = {0};
        int64_t cutoff = util_now_ms() + 1000;
        assert_int_equal(ms->ops->untagged_due(ms, cutoff, "eastus", 0, NULL, 10, &due, &e), 0);
        assert_int_equal(due.n, 1);
        due.items[0].cutoff_ms = cutoff;
        struct webhook_tx tx;
        assert_int_equal(webhook_tx_begin(&f->reg, &tx, &e), 0);
        int rc = ms->ops->untagged_collect(ms, due.items, due.n, false, &e);
        assert_int_equal(rc, 0);
        assert_true(due.items[0].is_deleted);
        struct webhook_effect ev = {.action = "delete", .repo = due.items[0].repo,
                                    .digest = due.items[0].digest, .size = -1,
                                    .request_id = "gc", .method = "GC", .host = "eastus"};
        rc = webhook_tx_queue(&tx, &ev, &e);
        assert_int_equal(webhook_tx_end(&tx, rc, &e), pass == 0 ? -1 : 0);
        meta_untagged_list_fini(&due);
        struct meta_manifest m;
        bool is_there = ms->ops->manifest_get(ms, "apps/web", d.str, &m, &e) == 0;
        if (is_there)
            meta_manifest_fini(&m);
        assert_int_equal(is_there, pass == 0);
        assert_int_equal(count_deliveries(f, "deploy1", "delete", NULL), pass);
    }
}

/* A push and its deliveries; a unit rolled back by its caller keeps neither; without a
 * webhook no unit is opened (the push runs alone). */
static void test_push_and_rollback(void **state)
{
    struct fx *f = *state;
    struct metastore *ms = f->reg.ms;
    struct err e = {0};
    struct webhook_tx tx;
    assert_int_equal(webhook_tx_begin(&f->reg, &tx, &e), 0);
    assert_false(tx.is_open); /* no webhook yet */
    assert_int_equal(webhook_tx_end(&tx, 0, &e), 0);

    put_webhook(f, HOOK);
    struct meta_manifest m = {.media_type = IMAGE_TYPE, .body = "{}", .body_len = 2};
    digest_of_buffer(DIGEST_SHA256, m.body, m.body_len, &m.digest);
    struct webhook_effect ev = {.action = "push", .repo = "apps/web", .tag = "v1",
                                .digest = m.digest.str, .media_type = IMAGE_TYPE, .size = 2};
    for (int pass = 0; pass < 2; pass++) {
        assert_int_equal(webhook_tx_begin(&f->reg, &tx, &e), 0);
        assert_true(tx.is_open);
        int rc = ms->ops->manifest_put(ms, "apps/web", &m, NULL, 0, NULL, "v1", &e);
        assert_int_equal(rc, 0);
        assert_int_equal(webhook_tx_queue(&tx, &ev, &e), 0);
        /* an operation that rolls back its own transaction inside the unit (an event seen
         * already) undoes nothing of the unit's */
        struct meta_event seen = {.origin = "westus", .origin_seq = 0, .hlc = 1,
                                  .kind = "tag_delete", .repo = "apps/web", .name = "v1",
                                  .digest = m.digest.str};
        bool is_new, is_gap;
        assert_int_equal(ms->ops->event_apply(ms, &seen, &is_new, &is_gap, &e), 0);
        assert_false(is_new);
        /* pass 0: the caller fails after the writes (a reply it could not make) */
        assert_int_equal(webhook_tx_end(&tx, pass == 0 ? -1 : 0, &e), pass == 0 ? -1 : 0);
        assert_int_equal(has_tag(f, "apps/web", "v1"), pass == 1);
        assert_int_equal(count_deliveries(f, "deploy1", "push", NULL), (size_t)pass);
    }
    /* The webhook deleted: no unit again. */
    assert_int_equal(webhook_delete(&f->reg, "deploy1", &e), 0);
    assert_int_equal(webhook_tx_begin(&f->reg, &tx, &e), 0);
    assert_false(tx.is_open);
    assert_int_equal(webhook_tx_end(&tx, 0, &e), 0);
}

/* A delivery queued with an event applied from a peer commits unsynced, as the event does
 * (sq_tx_commit_unsynced): the dispatcher syncs before it hands deliveries out, so none is
 * sent that a power loss could take back (the event fetched and announced again under
 * another id). SQLite only (PostgreSQL commits are durable on their own). */
static void test_delivery_durable_before_sent(void **state)
{
    struct fx *f = *state;
    struct metastore *ms = f->reg.ms;
    if (is_pg)
        skip();
    struct err e = {0};
    put_webhook(f, HOOK);
    struct digest d;
    digest_of_buffer(DIGEST_SHA256, "x", 1, &d);
    struct meta_event ev = {.origin = "westus", .origin_seq = 1, .hlc = 1000,
                            .kind = "tag_delete", .repo = "apps/web", .name = "v1",
                            .digest = d.str};
    const char *tag = "v1";
    struct webhook_tx tx;
    bool is_new, is_gap;
    assert_int_equal(webhook_tx_begin(&f->reg, &tx, &e), 0);
    assert_int_equal(ms->ops->event_apply(ms, &ev, &is_new, &is_gap, &e), 0);
    assert_true(is_new);
    assert_int_equal(webhook_tx_queue_replicated(&tx, "delete", ev.repo, &d, &tag, 1, &e), 0);
    assert_int_equal(webhook_tx_end(&tx, 0, &e), 0);
    struct sq_store *st = (struct sq_store *)ms;
    AZ(pthread_mutex_lock(&st->dmu));
    uint64_t synced_before = st->d_synced;
    AZ(pthread_mutex_unlock(&st->dmu));
    struct meta_delivery_list due;
    int64_t next;
    assert_int_equal(ms->ops->delivery_due(ms, util_now_ms() + 1000, 0, 4, NULL, 0, &due, &next,
                                           &e),
                     0);
    assert_int_equal(due.n, 1);
    meta_delivery_list_fini(&due);
    AZ(pthread_mutex_lock(&st->dmu));
    assert_true(st->d_synced > synced_before);
    AZ(pthread_mutex_unlock(&st->dmu));
}

/* A peer's write, later than anything written here (a minute ahead). */
static uint64_t later_hlc(int k)
{
    return ((uint64_t)(util_now_ms() + 60000) << HLC_LOGICAL_BITS) + (uint64_t)k;
}

/* Merges a record of a peer's state as anti-entropy, the snapshot and the pull-through
 * lookup do (repl.c merge_state). */
static int merge_record(struct fx *f, const struct meta_event *rec)
{
    static pthread_mutex_t hook_mu = PTHREAD_MUTEX_INITIALIZER;
    struct err e = {0};
    return merge_effects_state(&f->reg, &hook_mu, rec, 0, &e);
}

/* Applies a delete event from a peer as apply_batch does (repl.c). */
static void apply_delete_event(struct fx *f, const struct meta_event *ev)
{
    struct metastore *ms = f->reg.ms;
    struct err e = {0};
    struct webhook_tx tx;
    struct merge_effect fx;
    bool is_new = false, is_gap = false;
    assert_int_equal(webhook_tx_begin(&f->reg, &tx, &e), 0);
    int rc = merge_effect_probe(&tx, ev, &fx, &e);
    if (rc == 0)
        rc = ms->ops->event_apply(ms, ev, &is_new, &is_gap, &e);
    assert_true(is_new);
    if (rc == 0)
        rc = merge_effect_queue(&tx, ev, &fx, false, &e);
    merge_effect_fini(&fx);
    assert_int_equal(webhook_tx_end(&tx, rc, &e), 0);
}

/* (action, tag or "-") of every delivery of deploy1 about digest d, sorted. */
static char *deliveries_of(struct fx *f, const struct digest *d)
{
    struct meta_delivery_list list;
    struct err e = {0};
    assert_int_equal(f->reg.ms->ops->delivery_list(f->reg.ms, "deploy1", 100, &list, &e), 0);
    char *lines[100];
    size_t n = 0;
    for (size_t i = 0; i < list.n && n < 100; i++) {
        json_error_t je;
        json_t *p = json_loads(list.items[i].payload, 0, &je);
        json_t *t = json_object_get(p, "target");
        if (strcmp(json_string_value(json_object_get(t, "digest")), d->str) == 0) {
            const char *tag = json_string_value(json_object_get(t, "tag"));
            char line[200];
            snprintf(line, sizeof(line), "%s %s %s", list.items[i].action, tag ? tag : "-",
                     json_string_value(json_object_get(json_object_get(p, "request"),
                                                       "method")));
            lines[n++] = xstrdup(line);
        }
        json_decref(p);
    }
    meta_delivery_list_fini(&list);
    for (size_t i = 1; i < n; i++) /* insertion sort: a handful */
        for (size_t j = i; j > 0 && strcmp(lines[j - 1], lines[j]) > 0; j--) {
            char *t = lines[j];
            lines[j] = lines[j - 1];
            lines[j - 1] = t;
        }
    char out[2000] = "";
    for (size_t i = 0; i < n; i++) {
        snprintf(out + strlen(out), sizeof(out) - strlen(out), "%s%s", i ? "; " : "", lines[i]);
        free(lines[i]);
    }
    return xstrdup(out);
}

static void assert_deliveries(struct fx *f, const struct digest *d, const char *want)
{
    char *got = deliveries_of(f, d);
    if (strcmp(got, want) != 0)
        fail_msg("deliveries of %s: got \"%s\", want \"%s\"", d->str, got, want);
    free(got);
}

/* A delete this region missed in the event log (compacted, or the region was away past the
 * horizon) arrives as a peer's state: the deleted tag register and the tombstone. Merged,
 * it fires what the replicated delete fires (a delete of the tag, one of the manifest), in
 * the merge's transaction (refused, the manifest stays), once: merged again, or its events
 * arriving after all, nothing more. Fails before 6 December: a state merge fired nothing. */
static void test_repair_of_a_delete_fires_it_once(void **state)
{
    struct fx *f = *state;
    struct err e = {0};
    put_webhook(f, HOOK);
    struct digest d, kept;
    put(f, "apps/web", "{\"n\":1}", "v1", &d);
    put(f, "apps/web", "{\"n\":2}", "v2", &kept);
    struct meta_event tag = {.origin = "westus", .origin_seq = 1, .hlc = later_hlc(1),
                             .kind = "tag_delete", .repo = "apps/web", .name = "v1"};
    struct meta_event tomb = {.origin = "westus", .origin_seq = 1, .hlc = later_hlc(2),
                              .kind = "manifest_delete", .repo = "apps/web", .digest = d.str};
    refuse_deliveries(f, true);
    assert_int_equal(merge_record(f, &tag), -1);
    assert_int_equal(merge_record(f, &tomb), -1);
    assert_true(has_tag(f, "apps/web", "v1")); /* neither took place without its delivery */
    assert_deliveries(f, &d, "");
    allow_deliveries(f);
    for (int pass = 0; pass < 2; pass++) {
        assert_int_equal(merge_record(f, &tag), 0);
        assert_int_equal(merge_record(f, &tomb), 0);
        assert_false(has_tag(f, "apps/web", "v1"));
        assert_int_equal(f->reg.ms->ops->manifest_get(f->reg.ms, "apps/web", d.str,
                                                      &(struct meta_manifest){0}, &e), -1);
        assert_deliveries(f, &d, "delete - REPLICATE; delete v1 REPLICATE");
    }
    /* the events of that delete, fetched after the repair: nothing more */
    struct meta_event tag_ev = tag, tomb_ev = tomb;
    tag_ev.digest = d.str;
    tomb_ev.origin_seq = 2;
    apply_delete_event(f, &tag_ev);
    apply_delete_event(f, &tomb_ev);
    assert_deliveries(f, &d, "delete - REPLICATE; delete v1 REPLICATE");
    assert_deliveries(f, &kept, ""); /* the other tag and manifest are untouched */
    assert_true(has_tag(f, "apps/web", "v2"));
}

/* The other order: the events first (one delivery each), then the same delete in a peer's
 * state (anti-entropy compares tombstones too): nothing more. And a delete that removes
 * nothing here (a tombstone of a manifest this region never recorded) fires nothing. */
static void test_delete_event_then_repair_fires_once(void **state)
{
    struct fx *f = *state;
    put_webhook(f, HOOK);
    struct digest d, never;
    put(f, "apps/web", "{\"n\":1}", "v1", &d);
    struct meta_event tag = {.origin = "westus", .origin_seq = 1, .hlc = later_hlc(1),
                             .kind = "tag_delete", .repo = "apps/web", .name = "v1",
                             .digest = d.str};
    struct meta_event tomb = {.origin = "westus", .origin_seq = 2, .hlc = later_hlc(2),
                              .kind = "manifest_delete", .repo = "apps/web", .digest = d.str};
    apply_delete_event(f, &tag);
    apply_delete_event(f, &tomb);
    assert_deliveries(f, &d, "delete - REPLICATE; delete v1 REPLICATE");
    tag.digest = NULL; /* a deleted register, as a state record carries it */
    assert_int_equal(merge_record(f, &tag), 0);
    assert_int_equal(merge_record(f, &tomb), 0);
    assert_deliveries(f, &d, "delete - REPLICATE; delete v1 REPLICATE");
    digest_of_buffer(DIGEST_SHA256, "never", 5, &never);
    struct meta_event other = {.origin = "westus", .origin_seq = 1, .hlc = later_hlc(3),
                               .kind = "manifest_delete", .repo = "apps/web",
                               .digest = never.str};
    assert_int_equal(merge_record(f, &other), 0);
    assert_deliveries(f, &never, "");
}

/* A partition heals: a tag written here that the deleting region never saw (older than its
 * delete) names the manifest the peer deleted; the merged delete removes the manifest and
 * ends that tag too (meta_merge.c dead_tags_drop), so each goes with its delivery, by the
 * event or by the state, once (docs/webhooks.md: "and each tag naming it, one delivery
 * each"). Fails before: only the manifest's delivery, the tag went silently. */
static void test_delete_ends_a_tag_the_deleter_never_saw_with_its_delivery(void **state)
{
    struct fx *f = *state;
    put_webhook(f, HOOK);
    for (int path = 0; path < 2; path++) {
        char body[32];
        struct digest d;
        snprintf(body, sizeof(body), "{\"heal\":%d}", path);
        put(f, "apps/web", body, "local", &d); /* tagged here during the partition */
        struct meta_event tomb = {.origin = "westus", .origin_seq = (uint64_t)path + 1,
                                  .hlc = later_hlc(path), .kind = "manifest_delete",
                                  .repo = "apps/web", .digest = d.str};
        for (int pass = 0; pass < 2; pass++) {
            if (path == 0 && pass == 0)
                apply_delete_event(f, &tomb);
            else
                assert_int_equal(merge_record(f, &tomb), 0);
            assert_false(has_tag(f, "apps/web", "local"));
            assert_deliveries(f, &d, "delete - REPLICATE; delete local REPLICATE");
        }
    }
}

/* A peer's delete older than the manifest's put here (kept: pushed again here after it)
 * still ends a tag older than the delete (dead_tags_drop): that tag goes with its delivery,
 * the manifest, kept, fires nothing. Fails before: the tag went silently. */
static void test_delete_of_a_kept_manifest_fires_for_the_tag_it_ends(void **state)
{
    struct fx *f = *state;
    put_webhook(f, HOOK);
    struct digest d;
    put(f, "apps/web", "{\"kept\":1}", NULL, &d); /* put here now */
    uint64_t now = (uint64_t)util_now_ms() << HLC_LOGICAL_BITS;
    struct meta_event tag = {.origin = "westus", .origin_seq = 1,
                             .hlc = now - ((uint64_t)60000 << HLC_LOGICAL_BITS),
                             .kind = "tag_set", .repo = "apps/web", .name = "old",
                             .digest = d.str};
    assert_int_equal(merge_record(f, &tag), 0);
    assert_true(has_tag(f, "apps/web", "old"));
    assert_deliveries(f, &d, "push old REPLICATE");
    struct meta_event tomb = {.origin = "westus", .origin_seq = 2,
                              .hlc = now - ((uint64_t)30000 << HLC_LOGICAL_BITS),
                              .kind = "manifest_delete", .repo = "apps/web", .digest = d.str};
    for (int pass = 0; pass < 2; pass++) {
        assert_int_equal(merge_record(f, &tomb), 0);
        assert_false(has_tag(f, "apps/web", "old"));
        assert_true(has_tag(f, "apps/web", d.str)); /* the manifest stays */
        assert_deliveries(f, &d, "delete old REPLICATE; push old REPLICATE");
    }
}

/* A tag a peer points at a manifest shown here, merged from its state: the push delivery
 * its event fires (with the tag), once. Fails before 6 December: none. */
static void test_repair_of_a_tag_fires_its_push_once(void **state)
{
    struct fx *f = *state;
    put_webhook(f, HOOK);
    struct digest d;
    put(f, "apps/web", "{\"n\":1}", NULL, &d); /* shown here, by digest */
    struct meta_event tag = {.origin = "westus", .origin_seq = 1, .hlc = later_hlc(1),
                             .kind = "tag_set", .repo = "apps/web", .name = "v9",
                             .digest = d.str};
    for (int pass = 0; pass < 2; pass++) {
        assert_int_equal(merge_record(f, &tag), 0);
        assert_true(has_tag(f, "apps/web", "v9"));
        assert_deliveries(f, &d, "push v9 REPLICATE");
    }
}

/* Deletes win after a snapshot (repl.c forget_deleted): a manifest and its tag the peer
 * applied and no longer has go with their deliveries; forgotten again, nothing more. */
static void test_forgotten_records_fire_their_deletes(void **state)
{
    struct fx *f = *state;
    struct err e = {0};
    put_webhook(f, HOOK);
    struct digest d;
    put(f, "apps/web", "{\"n\":1}", "v1", &d);
    struct meta_event *recs = NULL;
    size_t n = 0;
    assert_int_equal(f->reg.ms->ops->repo_state(f->reg.ms, "apps/web", &recs, &n, &e), 0);
    for (int pass = 0; pass < 2; pass++) {
        for (size_t i = 0; i < n; i++)
            assert_int_equal(merge_effects_forget(&f->reg, &recs[i], &e), 0);
        assert_false(has_tag(f, "apps/web", "v1"));
        assert_deliveries(f, &d, "delete - REPLICATE; delete v1 REPLICATE");
    }
    for (size_t i = 0; i < n; i++)
        meta_event_fini(&recs[i]);
    free(recs);
}

/* A versioned repository golden/def whose 1.0.0 this region pushed (mine), a webhook of
 * version.conflict, and a peer's write of 1.0.0 to another manifest (theirs): the tag_set
 * event returned (it points into theirs) makes the conflict when merged. */
static struct meta_event conflicting_tag(struct fx *f, struct digest *mine,
                                         struct digest *theirs)
{
    struct metastore *ms = f->reg.ms;
    struct err e = {0};
    put_webhook(f, "{\"name\":\"deploy1\",\"location\":\"eastus\",\"uri\":\"http://h/\","
                   "\"actions\":[\"version.conflict\"]}");
    assert_int_equal(ms->ops->object_put(ms, "image_definition", "golden/def",
                                         "{\"repository\":\"golden/def\"}", &e),
                     0);
    put(f, "golden/def", "{\"n\":1}", "1.0.0", mine);
    digest_of_buffer(DIGEST_SHA256, "theirs", 6, theirs);
    return (struct meta_event){.origin = "westus", .origin_seq = 1, .hlc = later_hlc(1),
                               .kind = "tag_set", .repo = "golden/def", .name = "1.0.0",
                               .digest = theirs->str};
}

/* A version.conflict delivery commits with the merge that makes the conflict (refused, the
 * merge does not take place either; merged, one delivery; merged again, none). Fails before
 * 6 December: it was written after the merge, in a transaction of its own. */
static void test_version_conflict_delivery_goes_with_its_merge(void **state)
{
    struct fx *f = *state;
    struct metastore *ms = f->reg.ms;
    struct err e = {0};
    struct digest mine, theirs;
    struct meta_event tag = conflicting_tag(f, &mine, &theirs);
    char *v = NULL;
    refuse_deliveries(f, true);
    assert_int_equal(merge_record(f, &tag), -1);
    assert_int_equal(ms->ops->object_get(ms, "image_version_conflict", "golden/def:1.0.0", &v,
                                         &e),
                     -1); /* no conflict recorded without its delivery */
    assert_int_equal(count_deliveries(f, "deploy1", "version.conflict", NULL), 0);
    allow_deliveries(f);
    for (int pass = 0; pass < 2; pass++) {
        assert_int_equal(merge_record(f, &tag), 0);
        assert_int_equal(ms->ops->object_get(ms, "image_version_conflict", "golden/def:1.0.0",
                                             &v, &e),
                         0);
        free(v);
        v = NULL;
        json_t *p = NULL;
        assert_int_equal(count_deliveries(f, "deploy1", "version.conflict", &p), 1);
        json_t *t = json_object_get(p, "target");
        assert_string_equal(json_string_value(json_object_get(t, "tag")), "1.0.0");
        assert_string_equal(json_string_value(json_object_get(t, "digest")), mine.str);
        json_decref(p);
    }
}

/* The conflict record read right after the merge, in its unit of work, fails (a busy or
 * lost database): the merge rolls back and is retried, rather than committing with the
 * record read as none, which lost its version.conflict delivery (until 6 December). */
static const struct metastore_ops *real_ops;
static int conflict_reads_left_ok = -1; /* -1: never fail */

static int failing_object_get(struct metastore *ms, const char *kind, const char *key,
                              char **value_json, struct err *e)
{
    if (strcmp(kind, "image_version_conflict") == 0 && conflict_reads_left_ok >= 0 &&
        conflict_reads_left_ok-- == 0)
        return err_set(e, ERR_IO, "refused by the test");
    return real_ops->object_get(ms, kind, key, value_json, e);
}

static void test_version_conflict_unreadable_after_the_merge_rolls_it_back(void **state)
{
    struct fx *f = *state;
    struct metastore *ms = f->reg.ms;
    struct err e = {0};
    struct digest mine, theirs;
    struct meta_event tag = conflicting_tag(f, &mine, &theirs);
    real_ops = ms->ops;
    struct metastore_ops ops = *ms->ops;
    ops.object_get = failing_object_get;
    ms->ops = &ops;
    conflict_reads_left_ok = 2; /* before the unit, in it before the merge: then it fails */
    int rc = merge_record(f, &tag);
    conflict_reads_left_ok = -1;
    ms->ops = real_ops;
    assert_int_equal(rc, -1);
    char *v = NULL;
    assert_int_equal(ms->ops->object_get(ms, "image_version_conflict", "golden/def:1.0.0", &v,
                                         &e),
                     -1); /* the merge did not stay */
    assert_int_equal(count_deliveries(f, "deploy1", "version.conflict", NULL), 0);
    assert_int_equal(merge_record(f, &tag), 0); /* retried: recorded with its delivery */
    assert_int_equal(count_deliveries(f, "deploy1", "version.conflict", NULL), 1);
}

/* Delivery records written before 5 December kept an unreachable receiver's whole URL in
 * their response (credentials in its userinfo or query included); the pass at open redacts
 * them once, as records are written now. Fails before 6 December: they stayed as written. */
static void test_old_delivery_urls_redacted_at_open(void **state)
{
    struct fx *f = *state;
    struct metastore *ms = f->reg.ms;
    struct err e = {0};
    static const struct {
        const char *id;
        int status_code;
        const char *before;
        const char *after;
    } rows[] = {
        {"r1", 0, "cannot reach http://ci:s3cret@hooks.example/h?token=abc&team=x: Couldn't "
                  "connect to server",
         "cannot reach http://***@hooks.example/h?token=***&team=***: Couldn't connect to "
         "server"},
        {"r2", 0, "cannot reach https://hooks.example:8443/h?token=abc", /* cut by err.h */
         "cannot reach https://hooks.example:8443/h?token=***"},
        {"r3", 0, "cannot reach http://***@hooks.example/h: Timeout was reached",
         "cannot reach http://***@hooks.example/h: Timeout was reached"}, /* written now */
        {"r4", 0, "cannot reach http://hooks.example/h: Timeout was reached",
         "cannot reach http://hooks.example/h: Timeout was reached"}, /* nothing secret */
        {"r5", 500, "cannot reach http://a:b@upstream/x?k=v: said the receiver",
         "cannot reach http://a:b@upstream/x?k=v: said the receiver"}, /* its own body */
        {"r6", 0, "webhook disabled", "webhook disabled"},
    };
    size_t n = sizeof(rows) / sizeof(rows[0]);
    for (size_t i = 0; i < n; i++) {
        struct meta_delivery d = {.webhook = "deploy1", .action = "push", .payload = "{}",
                                  .state = META_DELIVERY_FAILED, .attempts = 10,
                                  .status_code = rows[i].status_code, .latency_ms = 5,
                                  .response = (char *)rows[i].before, .created_ms = 1,
                                  .updated_ms = 2, .next_attempt_ms = 3};
        snprintf(d.id, sizeof(d.id), "%s", rows[i].id);
        assert_int_equal(ms->ops->delivery_add(ms, &d, 1, &e), 0);
    }
    uint8_t key[32] = {1, 2, 3};
    assert_int_equal(metastore_sqlite_set_sealing_key(ms, key, &e), 0);
    struct meta_delivery_list list;
    assert_int_equal(ms->ops->delivery_list(ms, "deploy1", 100, &list, &e), 0);
    assert_int_equal(list.n, n);
    for (size_t i = 0; i < n; i++) {
        const struct meta_delivery *d = &list.items[n - 1 - i]; /* newest first */
        assert_string_equal(d->id, rows[i].id);
        assert_string_equal(d->response, rows[i].after);
    }
    meta_delivery_list_fini(&list);

    /* Once: a later start leaves the records as they are (none is written the old way). */
    struct meta_delivery d = {.webhook = "deploy1", .action = "push", .payload = "{}",
                              .state = META_DELIVERY_FAILED, .latency_ms = 5,
                              .response = "cannot reach http://u:p@h/: x", .created_ms = 1,
                              .updated_ms = 2, .next_attempt_ms = 3};
    snprintf(d.id, sizeof(d.id), "r7");
    assert_int_equal(ms->ops->delivery_add(ms, &d, 1, &e), 0);
    assert_int_equal(metastore_sqlite_set_sealing_key(ms, key, &e), 0);
    assert_int_equal(ms->ops->delivery_list(ms, "deploy1", 1, &list, &e), 0);
    assert_string_equal(list.items[0].response, "cannot reach http://u:p@h/: x");
    meta_delivery_list_fini(&list);
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
        cmocka_unit_test_setup_teardown(test_retention_delete, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_replicated_delete, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_gc_delete, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_push_and_rollback, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_delivery_durable_before_sent, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_old_delivery_urls_redacted_at_open, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_repair_of_a_delete_fires_it_once, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_delete_event_then_repair_fires_once, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(
            test_delete_ends_a_tag_the_deleter_never_saw_with_its_delivery, fx_setup,
            fx_teardown),
        cmocka_unit_test_setup_teardown(test_delete_of_a_kept_manifest_fires_for_the_tag_it_ends,
                                        fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_repair_of_a_tag_fires_its_push_once, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_forgotten_records_fire_their_deletes, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_version_conflict_delivery_goes_with_its_merge,
                                        fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(
            test_version_conflict_unreadable_after_the_merge_rolls_it_back, fx_setup,
            fx_teardown),
    };
    int failed = cmocka_run_group_tests_name("sqlite", tests, setup, teardown);
    const char *uri = getenv("MERIDIAN_TEST_PG");
    if (uri == NULL || uri[0] == '\0') {
        printf("[  SKIPPED ] PostgreSQL: MERIDIAN_TEST_PG is not set\n");
        return failed;
    }
    is_pg = true;
    return failed + cmocka_run_group_tests_name("postgres", tests, NULL, NULL);
}
