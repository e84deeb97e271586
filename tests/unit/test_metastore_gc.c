/* Unit tests for meta_gc.c and the review queue of schema step v5_gc: a blob enters the
 * queue when it is linked or loses a reference; gc_collect decides one queued digest only
 * once its last change is older than the cutoff, keeps what a held manifest references,
 * drops links no manifest of their repository needs, and names the blob record it
 * deleted; a dry run decides the same and changes nothing; a link made again restarts the
 * grace; a version-2 database migrates with its unreferenced blobs queued. Storage
 * accounting splits unique and shared bytes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "digest.h"
#include "metastore.h"
#include "schema_back_to_v2.h"
#include "util.h"

static char tmpdir[] = "/tmp/meridian-gc-XXXXXX";
static int db_counter;
static char last_path[256];

static struct metastore *open_store(void)
{
    struct err e = {0};
    snprintf(last_path, sizeof(last_path), "%s/db%d.sqlite", tmpdir, db_counter++);
    struct metastore *ms = metastore_sqlite_open(last_path, "local", &e);
    assert_non_null(ms);
    return ms;
}

static void blob(const char *text, struct digest *d)
{
    digest_of_buffer(DIGEST_SHA256, text, strlen(text), d);
}

static void link_blob(struct metastore *ms, const char *repo, const char *text)
{
    struct digest d;
    struct err e = {0};
    blob(text, &d);
    assert_int_equal(ms->ops->blob_link(ms, repo, &d, strlen(text), &e), 0);
}

/* An image manifest over the given (linked) blob texts, tagged. */
static void put_image(struct metastore *ms, const char *repo, const char *tag,
                      const char *const *blobs, size_t n, struct digest *out)
{
    struct meta_ref refs[4];
    char body[256];
    size_t len = (size_t)snprintf(body, sizeof(body), "{\"schemaVersion\":2,\"tag\":\"%s\"}", tag);
    struct err e = {0};
    for (size_t i = 0; i < n; i++) {
        memset(&refs[i], 0, sizeof(refs[i]));
        blob(blobs[i], &refs[i].digest);
        refs[i].size = (int64_t)strlen(blobs[i]);
        link_blob(ms, repo, blobs[i]);
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

static bool is_recorded(struct metastore *ms, const char *text)
{
    struct digest d;
    uint64_t size;
    struct err e = {0};
    blob(text, &d);
    return ms->ops->blob_find(ms, &d, &size, &e) == 0;
}

/* Reviews text's digest with the given cutoff: 1 orphaned (record deleted), 0 kept. */
static int collect(struct metastore *ms, const char *text, int64_t cutoff, bool is_dry_run)
{
    struct digest d;
    bool is_orphan = true;
    int64_t size = -1;
    struct err e = {0};
    blob(text, &d);
    const char *one[] = {d.str};
    assert_int_equal(ms->ops->gc_collect(ms, one, 1, cutoff, is_dry_run, &is_orphan, &size, &e),
                     0);
    if (is_orphan)
        assert_int_equal(size, (int64_t)strlen(text));
    return is_orphan ? 1 : 0;
}

static int64_t queued(struct metastore *ms, int64_t cutoff)
{
    int64_t n = -1, due = -1;
    struct err e = {0};
    assert_int_equal(ms->ops->gc_queue_length(ms, cutoff, &n, &due, &e), 0);
    return due;
}

static void age_queue(const char *path, int64_t queued_ms)
{
    sqlite3 *db;
    char sql[128];
    snprintf(sql, sizeof(sql), "UPDATE gc_queue SET queued_ms = %lld", (long long)queued_ms);
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
}

static void test_referenced_blob_kept_unreferenced_collected_after_grace(void **state)
{
    (void)state;
    struct metastore *ms = open_store();
    struct err e = {0};
    struct digest img;
    const char *layers[] = {"layer-a", "layer-b"};
    put_image(ms, "r", "v1", layers, 2, &img);
    int64_t later = util_now_ms() + 1000;
    /* queued by their links; referenced: kept, and their queue rows dropped */
    assert_int_equal(queued(ms, later), 2);
    assert_int_equal(collect(ms, "layer-a", later, false), 0);
    assert_int_equal(collect(ms, "layer-b", later, false), 0);
    assert_int_equal(queued(ms, later), 0);
    assert_true(is_linked(ms, "r", "layer-a"));

    assert_int_equal(ms->ops->manifest_delete(ms, "r", &img, &e), 0);
    /* queued again by the delete; within the grace (cutoff before the change): kept */
    assert_int_equal(queued(ms, later), 2);
    int64_t before = util_now_ms() - 60000;
    assert_int_equal(collect(ms, "layer-a", before, false), 0);
    assert_true(is_recorded(ms, "layer-a"));
    assert_int_equal(queued(ms, later), 2);
    /* past the grace: link and record go */
    assert_int_equal(collect(ms, "layer-a", later, false), 1);
    assert_false(is_linked(ms, "r", "layer-a"));
    assert_false(is_recorded(ms, "layer-a"));
    assert_int_equal(queued(ms, later), 1);
    ms->ops->close(ms);
}

static void test_dry_run_decides_the_same_and_changes_nothing(void **state)
{
    (void)state;
    struct metastore *ms = open_store();
    link_blob(ms, "r", "stray");
    int64_t later = util_now_ms() + 1000;
    assert_int_equal(collect(ms, "stray", later, true), 1);
    assert_true(is_linked(ms, "r", "stray"));
    assert_int_equal(queued(ms, later), 1);
    assert_int_equal(collect(ms, "stray", later, false), 1);
    assert_false(is_recorded(ms, "stray"));
    assert_int_equal(queued(ms, later), 0);
    ms->ops->close(ms);
}

static void test_link_again_restarts_the_grace(void **state)
{
    (void)state;
    struct metastore *ms = open_store();
    link_blob(ms, "r", "re-uploaded");
    age_queue(last_path, 1000); /* linked long ago */
    int64_t cutoff = util_now_ms() - 60000; /* a one-minute grace */
    assert_int_equal(queued(ms, cutoff), 1);
    link_blob(ms, "r", "re-uploaded"); /* an upload of the same bytes finished just now */
    assert_int_equal(queued(ms, cutoff), 0);
    assert_int_equal(collect(ms, "re-uploaded", cutoff, false), 0);
    assert_true(is_linked(ms, "r", "re-uploaded"));
    ms->ops->close(ms);
}

static void test_links_dropped_only_where_unreferenced(void **state)
{
    (void)state;
    struct metastore *ms = open_store();
    struct digest img;
    const char *layers[] = {"shared"};
    put_image(ms, "r1", "v1", layers, 1, &img);
    link_blob(ms, "r2", "shared"); /* pushed to r2, no manifest there */
    int64_t later = util_now_ms() + 1000;
    assert_int_equal(collect(ms, "shared", later, false), 0);
    assert_true(is_linked(ms, "r1", "shared"));
    assert_false(is_linked(ms, "r2", "shared"));
    assert_true(is_recorded(ms, "shared"));
    ms->ops->close(ms);
}

static void test_due_lists_in_digest_order_and_pages(void **state)
{
    (void)state;
    struct metastore *ms = open_store();
    char text[16];
    for (int i = 0; i < 5; i++) {
        snprintf(text, sizeof(text), "b%d", i);
        link_blob(ms, "r", text);
    }
    int64_t later = util_now_ms() + 1000;
    struct meta_name_list l = {0};
    struct err e = {0};
    assert_int_equal(ms->ops->gc_due(ms, later, NULL, 3, &l, &e), 0);
    assert_int_equal(l.n, 3);
    assert_true(l.has_more);
    assert_true(strcmp(l.names[0], l.names[1]) < 0);
    char *after = strdup(l.names[2]);
    meta_name_list_fini(&l);
    assert_int_equal(ms->ops->gc_due(ms, later, after, 3, &l, &e), 0);
    assert_int_equal(l.n, 2);
    assert_false(l.has_more);
    free(after);
    meta_name_list_fini(&l);
    assert_int_equal(ms->ops->gc_due(ms, util_now_ms() - 60000, NULL, 3, &l, &e), 0);
    assert_int_equal(l.n, 0);
    meta_name_list_fini(&l);
    ms->ops->close(ms);
}

static void test_storage_usage_unique_and_shared(void **state)
{
    (void)state;
    struct metastore *ms = open_store();
    link_blob(ms, "a", "only-in-a");     /* 9 bytes */
    link_blob(ms, "a", "in-both");       /* 7 bytes */
    link_blob(ms, "b", "in-both");
    link_blob(ms, "b", "only-b");        /* 6 bytes */
    struct meta_usage_list u = {0};
    struct err e = {0};
    assert_int_equal(ms->ops->storage_usage(ms, &u, &e), 0);
    assert_int_equal(u.n, 2);
    assert_string_equal(u.items[0].repo, "a");
    assert_int_equal(u.items[0].unique_bytes, 9);
    assert_int_equal(u.items[0].shared_bytes, 7);
    assert_int_equal(u.items[0].n_blobs, 2);
    assert_string_equal(u.items[1].repo, "b");
    assert_int_equal(u.items[1].unique_bytes, 6);
    assert_int_equal(u.items[1].shared_bytes, 7);
    assert_int_equal(u.total_bytes, 9 + 7 + 6);
    meta_usage_list_fini(&u);
    ms->ops->close(ms);
}

/* A database of schema version 2 (no review queue) opens with this build: the step adds
 * the queue and queues the blobs no manifest references, which are then collectable; the
 * triggers work on the migrated file. */
static void test_v2_database_migrates_with_orphans_queued(void **state)
{
    (void)state;
    struct metastore *ms = open_store();
    struct digest img;
    struct err e = {0};
    const char *layers[] = {"kept-layer"};
    put_image(ms, "r", "v1", layers, 1, &img);
    link_blob(ms, "r", "old-orphan");
    ms->ops->close(ms);
    sqlite3 *db;
    assert_int_equal(sqlite3_open(last_path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, SQL_SCHEMA_BACK_TO_V2, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);

    ms = metastore_sqlite_open(last_path, "local", &e);
    assert_non_null(ms);
    int64_t later = util_now_ms() + 1000;
    assert_int_equal(queued(ms, later), 1);
    assert_int_equal(collect(ms, "old-orphan", later, false), 1);
    assert_int_equal(collect(ms, "kept-layer", later, false), 0);
    assert_true(is_linked(ms, "r", "kept-layer"));
    assert_int_equal(ms->ops->manifest_delete(ms, "r", &img, &e), 0);
    assert_int_equal(queued(ms, later), 1);
    assert_int_equal(collect(ms, "kept-layer", later, false), 1);
    ms->ops->close(ms);
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
        cmocka_unit_test(test_referenced_blob_kept_unreferenced_collected_after_grace),
        cmocka_unit_test(test_dry_run_decides_the_same_and_changes_nothing),
        cmocka_unit_test(test_link_again_restarts_the_grace),
        cmocka_unit_test(test_links_dropped_only_where_unreferenced),
        cmocka_unit_test(test_due_lists_in_digest_order_and_pages),
        cmocka_unit_test(test_storage_usage_unique_and_shared),
        cmocka_unit_test(test_v2_database_migrates_with_orphans_queued),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
