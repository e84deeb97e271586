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
#include "metastore.h"
#include "metastore_sqlite_int.h"
#include "registry_ctx.h"
#include "retention.h"
#include "retention_run.h"
#include "sql_driver.h"
#include "util.h"
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
