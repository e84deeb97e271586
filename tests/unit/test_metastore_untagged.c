/* Unit tests for meta_untagged.c, schema step v6_untagged and meta_retention.c: an
 * untagged manifest is listed once past its grace and deleted as a replicated {"gc":true}
 * tombstone when nothing keeps it; a tag, an index naming it or a subject still here keep
 * it; a put again restarts its grace; only the region of its put clock lists it; a region
 * that applies such a tombstone while a concurrent tag keeps the manifest there puts it
 * again and both regions end with the tagged image; a dry run changes nothing; a
 * version-2 database migrates with its untagged manifests stamped. Retention's selection
 * (pure) and its conditional tag delete. */
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

#include "buf.h"
#include "digest.h"
#include "hlc.h"
#include "metastore.h"
#include "metastore_sqlite_int.h"
#include "retention.h"
#include "schema_back_to_v2.h"
#include "sql_driver.h"
#include "util.h"

static char tmpdir[] = "/tmp/meridian-untagged-XXXXXX";
static int db_counter;
static char last_path[256];

static bool is_pg; /* the second run: the same tests on PostgreSQL (MERIDIAN_TEST_PG) */

/* A fresh store of region: SQLite in tmpdir, or a schema of its own in PostgreSQL. */
static struct metastore *open_store(const char *region)
{
    struct err e = {0};
    struct metastore *ms;
    if (is_pg) {
        const char *base = getenv("MERIDIAN_TEST_PG");
        char sql[128], target[1024];
        struct sql_db *db = NULL;
        int n = db_counter++;
        assert_int_equal(sql_pg_driver.open(base, &db, &e), 0);
        snprintf(sql, sizeof(sql),
                 "DROP SCHEMA IF EXISTS untagged_%d CASCADE;"
                 " CREATE SCHEMA untagged_%d",
                 n, n);
        assert_int_equal(sql_pg_driver.exec(db, sql), SQL_OK);
        sql_pg_driver.close(db);
        snprintf(target, sizeof(target), "%s%soptions=-csearch_path%%3Duntagged_%d", base,
                 strchr(base, '?') != NULL ? "&" : "?", n);
        ms = metastore_pg_open(target, region, &e);
    } else {
        snprintf(last_path, sizeof(last_path), "%s/db%d.sqlite", tmpdir, db_counter++);
        ms = metastore_sqlite_open(last_path, region, &e);
    }
    assert_non_null(ms);
    return ms;
}

#define IMAGE_TYPE "application/vnd.oci.image.manifest.v1+json"
#define INDEX_TYPE "application/vnd.oci.image.index.v1+json"

/* Puts manifest body (tag may be NULL) with child manifests of bodies kids[0..n), subject
 * optional. */
static void put(struct metastore *ms, const char *repo, const char *body, const char *tag,
                const char *const *kids, size_t n, const struct digest *subject, struct digest *out)
{
    struct meta_ref refs[4];
    for (size_t i = 0; i < n; i++) {
        memset(&refs[i], 0, sizeof(refs[i]));
        digest_of_buffer(DIGEST_SHA256, kids[i], strlen(kids[i]), &refs[i].digest);
        refs[i].is_manifest = true;
        refs[i].size = (int64_t)strlen(kids[i]);
    }
    struct meta_manifest m = {.media_type = n > 0 ? INDEX_TYPE : IMAGE_TYPE,
                              .body = (char *)body,
                              .body_len = strlen(body)};
    digest_of_buffer(DIGEST_SHA256, body, m.body_len, &m.digest);
    struct err e = {0};
    assert_int_equal(ms->ops->manifest_put(ms, repo, &m, n > 0 ? refs : NULL, n, subject, tag, &e),
                     0);
    *out = m.digest;
}

static bool exists(struct metastore *ms, const char *repo, const struct digest *d)
{
    struct meta_manifest m;
    struct err e = {0};
    bool found = ms->ops->manifest_get(ms, repo, d->str, &m, &e) == 0;
    if (found)
        meta_manifest_fini(&m);
    return found;
}

/* Lists what region owner may collect at cutoff and collects it all; the count deleted. */
static size_t collect(struct metastore *ms, const char *owner, int64_t cutoff, bool is_dry_run)
{
    struct meta_untagged_list due = {0};
    struct err e = {0};
    assert_int_equal(ms->ops->untagged_due(ms, cutoff, owner, 0, NULL, 100, &due, &e), 0);
    for (size_t i = 0; i < due.n; i++)
        due.items[i].cutoff_ms = cutoff;
    assert_int_equal(ms->ops->untagged_collect(ms, due.items, due.n, is_dry_run, &e), 0);
    size_t n = 0;
    for (size_t i = 0; i < due.n; i++)
        n += due.items[i].is_deleted;
    meta_untagged_list_fini(&due);
    return n;
}

static int64_t later(void)
{
    return util_now_ms() + 1000;
}

static void test_untagged_collected_tagged_kept(void **state)
{
    (void)state;
    struct metastore *ms = open_store("r1");
    struct digest tagged, loose, moved;
    put(ms, "app", "{\"a\":1}", "v1", NULL, 0, NULL, &tagged);
    put(ms, "app", "{\"a\":2}", NULL, NULL, 0, NULL, &loose);
    /* Within the grace: nothing. */
    assert_int_equal(collect(ms, "r1", util_now_ms() - 60000, false), 0);
    assert_int_equal(collect(ms, "r1", later(), false), 1);
    assert_false(exists(ms, "app", &loose));
    assert_true(exists(ms, "app", &tagged));
    /* The delete is a replicated tombstone marked as the collector's. */
    struct meta_event *evs = NULL;
    size_t n = 0;
    int64_t last = 0;
    struct err e = {0};
    assert_int_equal(ms->ops->events_read(ms, 0, NULL, 1000, &evs, &n, &last, &e), 0);
    assert_string_equal(evs[n - 1].kind, "manifest_delete");
    assert_string_equal(evs[n - 1].digest, loose.str);
    assert_non_null(strstr(evs[n - 1].payload, "\"gc\":true"));
    for (size_t i = 0; i < n; i++)
        meta_event_fini(&evs[i]);
    free(evs);
    /* A tag moved away leaves its old manifest untagged. */
    put(ms, "app", "{\"a\":3}", "v1", NULL, 0, NULL, &moved);
    assert_int_equal(collect(ms, "r1", later(), false), 1);
    assert_false(exists(ms, "app", &tagged));
    assert_true(exists(ms, "app", &moved));
    ms->ops->close(ms);
}

static void test_index_children_and_referrers_kept(void **state)
{
    (void)state;
    struct metastore *ms = open_store("r1");
    struct digest kids[2], index, subject, referrer;
    const char *const bodies[] = {"{\"arch\":\"amd64\"}", "{\"arch\":\"arm64\"}"};
    put(ms, "multi", bodies[0], NULL, NULL, 0, NULL, &kids[0]);
    put(ms, "multi", bodies[1], NULL, NULL, 0, NULL, &kids[1]);
    put(ms, "multi", "{\"manifests\":2}", "latest", bodies, 2, NULL, &index);
    put(ms, "multi", "{\"subject\":1}", "s", NULL, 0, NULL, &subject);
    put(ms, "multi", "{\"signature\":1}", NULL, NULL, 0, &subject, &referrer);
    assert_int_equal(collect(ms, "r1", later(), false), 0);
    /* Untag the index: it goes, then its children (no longer named) at the next pass. */
    struct err e = {0};
    assert_int_equal(ms->ops->tag_delete(ms, "multi", "latest", &e), 0);
    size_t n = collect(ms, "r1", later(), false);
    n += collect(ms, "r1", later(), false);
    assert_int_equal(n, 3);
    assert_false(exists(ms, "multi", &kids[0]));
    assert_false(exists(ms, "multi", &kids[1]));
    /* The referrer stays with its subject, and goes after it. */
    assert_true(exists(ms, "multi", &referrer));
    assert_int_equal(ms->ops->tag_delete(ms, "multi", "s", &e), 0);
    n = collect(ms, "r1", later(), false);
    n += collect(ms, "r1", later(), false);
    assert_int_equal(n, 2);
    assert_false(exists(ms, "multi", &referrer));
    ms->ops->close(ms);
}

static void age_all(const char *path)
{
    sqlite3 *db;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "UPDATE untagged SET since_ms = 1", NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(db);
}

/* An index's children are pushed first; a child pushed again restarts its grace, so the
 * grace runs from the last put (the client's) to the index that names it. */
static void test_put_again_restarts_grace_dry_run_changes_nothing(void **state)
{
    (void)state;
    struct metastore *ms = open_store("r1");
    char path[256];
    snprintf(path, sizeof(path), "%s", last_path);
    struct digest kid;
    put(ms, "multi", "{\"arch\":\"amd64\"}", NULL, NULL, 0, NULL, &kid);
    age_all(path);
    int64_t cutoff = util_now_ms() - 10000;
    assert_int_equal(collect(ms, "r1", cutoff, true), 1); /* dry: would go */
    assert_true(exists(ms, "multi", &kid));
    put(ms, "multi", "{\"arch\":\"amd64\"}", NULL, NULL, 0, NULL, &kid);
    assert_int_equal(collect(ms, "r1", cutoff, false), 0);
    assert_true(exists(ms, "multi", &kid));
    int64_t n = -1, due = -1;
    struct err e = {0};
    assert_int_equal(ms->ops->untagged_count(ms, later(), &n, &due, &e), 0);
    assert_int_equal(n, 1);
    assert_int_equal(due, 1);
    ms->ops->close(ms);
}

struct log {
    struct meta_event *events;
    size_t n;
};

/* Applies to dst the events of src it has not seen (its own come back and are skipped). */
static void sync_from(struct metastore *dst, struct metastore *src)
{
    struct meta_event *evs = NULL;
    size_t n = 0;
    int64_t last = 0;
    struct err e = {0};
    assert_int_equal(src->ops->events_read(src, 0, NULL, 100000, &evs, &n, &last, &e), 0);
    for (size_t i = 0; i < n; i++) {
        bool is_new, is_gap;
        assert_int_equal(dst->ops->event_apply(dst, &evs[i], &is_new, &is_gap, &e), 0);
        assert_false(is_gap);
        meta_event_fini(&evs[i]);
    }
    free(evs);
}

static bool resolves(struct metastore *ms, const char *repo, const char *tag,
                     const struct digest *want)
{
    struct digest d;
    char *mt = NULL;
    int64_t size, ms_at;
    bool is_visible;
    struct err e = {0};
    bool ok = ms->ops->manifest_lookup(ms, repo, tag, &d, &mt, &size, &is_visible, &ms_at, &e) == 0;
    free(mt);
    return ok && strcmp(d.str, want->str) == 0;
}

/* Only the region of the manifest's put clock lists it. */
static void test_only_owner_lists(void **state)
{
    (void)state;
    struct metastore *a = open_store("r1"), *b = open_store("r2");
    struct digest m;
    put(a, "app", "{\"a\":1}", NULL, NULL, 0, NULL, &m);
    sync_from(b, a);
    assert_true(exists(b, "app", &m) || true); /* pending in b: no content here */
    assert_int_equal(collect(b, "r2", later(), false), 0);
    assert_int_equal(collect(a, "r1", later(), false), 1);
    sync_from(b, a);
    struct digest d;
    char *mt = NULL;
    int64_t size, at;
    bool vis;
    struct err e = {0};
    assert_int_not_equal(b->ops->manifest_lookup(b, "app", m.str, &d, &mt, &size, &vis, &at, &e),
                         0);
    a->ops->close(a);
    b->ops->close(b);
}

/* r1 untags M and collects it while r2, not having heard, tags M again: r2 keeps M and
 * puts it again, r1 gets it back, and the tag resolves to M in both. */
static void test_concurrent_tag_keeps_collected_manifest(void **state)
{
    (void)state;
    struct metastore *a = open_store("r1"), *b = open_store("r2");
    struct digest m;
    struct err e = {0};
    put(a, "app", "{\"a\":1}", "t1", NULL, 0, NULL, &m);
    sync_from(b, a);
    assert_int_equal(a->ops->tag_delete(a, "app", "t1", &e), 0);
    /* r2 tags M (a push of the same manifest with a new tag), unaware of the untag. */
    put(b, "app", "{\"a\":1}", "t2", NULL, 0, NULL, &m);
    assert_int_equal(collect(a, "r1", later(), false), 1);
    assert_false(exists(a, "app", &m));
    sync_from(b, a); /* r2 applies the untag, then the collector's tombstone */
    assert_true(resolves(b, "app", "t2", &m));
    sync_from(a, b); /* r1 gets t2 and the manifest put again */
    assert_true(resolves(a, "app", "t2", &m));
    assert_true(resolves(b, "app", "t2", &m));
    assert_false(resolves(a, "app", "t1", &m));
    struct buf sa, sb;
    buf_init(&sa, 1 << 20);
    buf_init(&sb, 1 << 20);
    sync_from(b, a);
    assert_int_equal(a->ops->summary(a, &sa, &e), 0);
    assert_int_equal(b->ops->summary(b, &sb, &e), 0);
    assert_string_equal(sa.data, sb.data);
    buf_fini(&sa);
    buf_fini(&sb);
    a->ops->close(a);
    b->ops->close(b);
}

/* r1 collects untagged M while r2, not having heard, pushes M again (the same bytes: an
 * index's child before its index). The re-put is a write of its own, later than the
 * collector's tombstone: r2 keeps M, and the index pushed next finds it. The tombstone is
 * applied with a clock between M's first put and the re-put (as it is when the re-put is the
 * later write), whatever the machine's timing. */
static void test_put_again_wins_over_an_older_collector_tombstone(void **state)
{
    (void)state;
    struct metastore *a = open_store("r1"), *b = open_store("r2");
    const char *kid_body = "{\"arch\":\"arm64\"}";
    struct digest m, index;
    struct err e = {0};
    put(a, "multi", kid_body, NULL, NULL, 0, NULL, &m);
    struct meta_event *evs = NULL;
    size_t n = 0;
    int64_t last = 0;
    assert_int_equal(a->ops->events_read(a, 0, NULL, 100000, &evs, &n, &last, &e), 0);
    assert_string_equal(evs[0].kind, "manifest_put");
    uint64_t put_hlc = evs[0].hlc;
    for (size_t i = 0; i < n; i++)
        meta_event_fini(&evs[i]);
    free(evs);
    sync_from(b, a);
    assert_int_equal(collect(a, "r1", later(), false), 1);
    put(b, "multi", kid_body, NULL, NULL, 0, NULL, &m);
    assert_int_equal(a->ops->events_read(a, 0, NULL, 100000, &evs, &n, &last, &e), 0);
    bool is_new = false, is_gap;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(evs[i].kind, "manifest_delete") == 0)
            evs[i].hlc = put_hlc + 1; /* after r1's put, before r2's re-put */
        assert_int_equal(b->ops->event_apply(b, &evs[i], &is_new, &is_gap, &e), 0);
    }
    assert_string_equal(evs[n - 1].kind, "manifest_delete");
    assert_true(is_new);
    for (size_t i = 0; i < n; i++)
        meta_event_fini(&evs[i]);
    free(evs);
    assert_true(exists(b, "multi", &m));
    put(b, "multi", "{\"manifests\":[\"arm64\"]}", "v1", &kid_body, 1, NULL, &index);
    assert_true(resolves(b, "multi", "v1", &index));
    /* The re-put is an event of r2's (r1 hears of it and orders it against its tombstone). */
    assert_int_equal(b->ops->events_read(b, 0, NULL, 100000, &evs, &n, &last, &e), 0);
    size_t reputs = 0;
    for (size_t i = 0; i < n; i++) {
        reputs += strcmp(evs[i].origin, "r2") == 0 && strcmp(evs[i].kind, "manifest_put") == 0 &&
                  strcmp(evs[i].digest, m.str) == 0;
        meta_event_fini(&evs[i]);
    }
    free(evs);
    assert_int_equal(reputs, 1);
    a->ops->close(a);
    b->ops->close(b);
}

/* Merges into dst the state records of repo that src sends (anti-entropy's path). */
static void merge_state(struct metastore *dst, struct metastore *src, const char *repo)
{
    struct meta_event *evs = NULL;
    size_t n = 0;
    struct err e = {0};
    assert_int_equal(src->ops->repo_state(src, repo, &evs, &n, &e), 0);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(dst->ops->state_merge(dst, &evs[i], 0, &e), 0);
        meta_event_fini(&evs[i]);
    }
    free(evs);
}

/* The same through anti-entropy's records: the collector's tombstone stays marked. */
static void test_concurrent_tag_keeps_manifest_through_anti_entropy(void **state)
{
    (void)state;
    struct metastore *a = open_store("r1"), *b = open_store("r2");
    struct digest m;
    struct err e = {0};
    put(a, "app", "{\"a\":1}", "t1", NULL, 0, NULL, &m);
    sync_from(b, a);
    assert_int_equal(a->ops->tag_delete(a, "app", "t1", &e), 0);
    put(b, "app", "{\"a\":1}", "t2", NULL, 0, NULL, &m);
    assert_int_equal(collect(a, "r1", later(), false), 1);
    merge_state(b, a, "app");
    assert_true(resolves(b, "app", "t2", &m));
    merge_state(a, b, "app");
    assert_true(resolves(a, "app", "t2", &m));
    a->ops->close(a);
    b->ops->close(b);
}

static void test_v2_database_migrates_with_untagged_stamped(void **state)
{
    (void)state;
    struct metastore *ms = open_store("local");
    struct digest tagged, loose;
    struct err e = {0};
    put(ms, "app", "{\"a\":1}", "v1", NULL, 0, NULL, &tagged);
    put(ms, "app", "{\"a\":2}", NULL, NULL, 0, NULL, &loose);
    ms->ops->close(ms);
    sqlite3 *db;
    assert_int_equal(sqlite3_open(last_path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, SQL_SCHEMA_BACK_TO_V2, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    ms = metastore_sqlite_open(last_path, "local", &e);
    assert_non_null(ms);
    int64_t n = -1, due = -1;
    assert_int_equal(ms->ops->untagged_count(ms, later(), &n, &due, &e), 0);
    assert_int_equal(n, 1);
    assert_int_equal(collect(ms, "local", later(), false), 1);
    assert_false(exists(ms, "app", &loose));
    assert_true(exists(ms, "app", &tagged));
    ms->ops->close(ms);
}

/* PostgreSQL: a database made by schema version 2 (its step undone, data kept) migrates,
 * its untagged manifests stamped. */
static void test_pg_v2_database_migrates(void **state)
{
    (void)state;
    struct metastore *ms = open_store("local");
    struct digest tagged, loose;
    struct err e = {0};
    put(ms, "app", "{\"a\":1}", "v1", NULL, 0, NULL, &tagged);
    put(ms, "app", "{\"a\":2}", NULL, NULL, 0, NULL, &loose);
    struct sq_conn *c = sq_conn_of(ms, &e);
    assert_non_null(c);
    assert_int_equal(sq_script(c, PG_SQL_SCHEMA_BACK_TO_V2, "back to v2", &e), 0);
    char target[1024];
    snprintf(target, sizeof(target), "%s%soptions=-csearch_path%%3Duntagged_%d",
             getenv("MERIDIAN_TEST_PG"), strchr(getenv("MERIDIAN_TEST_PG"), '?') ? "&" : "?",
             db_counter - 1);
    ms->ops->close(ms);
    ms = metastore_pg_open(target, "local", &e);
    assert_non_null(ms);
    int64_t n = -1, due = -1;
    assert_int_equal(ms->ops->untagged_count(ms, later(), &n, &due, &e), 0);
    assert_int_equal(n, 1);
    assert_int_equal(collect(ms, "local", later(), false), 1);
    assert_false(exists(ms, "app", &loose));
    assert_true(exists(ms, "app", &tagged));
    ms->ops->close(ms);
}

/* Retention ------------------------------------------------------------------------- */

static void test_retention_select_table(void **state)
{
    (void)state;
    int64_t now = 100 * 86400000LL;
    const int64_t day = 86400000LL;
    struct {
        const char *name;
        int64_t age_days;
        int64_t pulled_days_ago; /* -1: never pulled */
    } in[] = {{"v1", 30, 2},      {"v2", 20, -1},  {"v3", 10, 9},
              {"v4", 1, -1},      {"dev-a", 40, 0}, {"latest", 50, 6}};
    struct {
        struct retention_rule rule;
        const char *selected; /* names, in newest-first order */
        const char *kept_by_pull;
    } cases[] = {
        {{.tags = "v*", .keep_newest = 2, .older_than_s = -1, .untagged_after_s = -1,
          .pulled_within_s = -1},
         "v2,v1,", ""},
        {{.tags = "v*", .keep_newest = -1, .older_than_s = 15 * 86400, .untagged_after_s = -1,
          .pulled_within_s = -1},
         "v2,v1,", ""},
        {{.tags = "v*", .keep_newest = 3, .older_than_s = 15 * 86400, .untagged_after_s = -1,
          .pulled_within_s = -1},
         "v1,", ""},
        {{.tags = "*", .keep_newest = 5, .older_than_s = -1, .untagged_after_s = -1,
          .pulled_within_s = -1},
         "latest,", ""},
        {{.tags = "dev-*", .keep_newest = 0, .older_than_s = -1, .untagged_after_s = -1,
          .pulled_within_s = -1},
         "dev-a,", ""},
        {{.tags = "*", .keep_newest = -1, .older_than_s = -1, .untagged_after_s = 60,
          .pulled_within_s = -1},
         "", ""},
        /* keep the newest 2 (v4, v3) and those pulled within 7 days (v1, dev-a, latest) */
        {{.tags = "*", .keep_newest = 2, .older_than_s = -1, .untagged_after_s = -1,
          .pulled_within_s = 7 * 86400},
         "v2,", "v1,dev-a,latest,"},
        /* pulledWithinS alone: neither pulled nor pushed within 5 days (v4 is 1 day old) */
        {{.tags = "*", .keep_newest = -1, .older_than_s = -1, .untagged_after_s = -1,
          .pulled_within_s = 5 * 86400},
         "v3,v2,latest,", "v1,dev-a,"},
        /* with olderThanS: only tags older than 15 days are candidates */
        {{.tags = "v*", .keep_newest = -1, .older_than_s = 15 * 86400, .untagged_after_s = -1,
          .pulled_within_s = 3 * 86400},
         "v2,", "v1,"},
    };
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        struct retention_tag tags[6];
        for (size_t i = 0; i < 6; i++) {
            tags[i] = (struct retention_tag){
                .name = (char *)in[i].name,
                .hlc = (int64_t)((uint64_t)(now - in[i].age_days * day) << HLC_LOGICAL_BITS),
                .origin = "r1",
                .pulled_ms = in[i].pulled_days_ago < 0 ? 0 : now - in[i].pulled_days_ago * day};
        }
        retention_select(&cases[c].rule, tags, 6, now);
        char got[128] = "", kept[128] = "";
        for (size_t i = 0; i < 6; i++) {
            if (tags[i].is_selected)
                snprintf(got + strlen(got), sizeof(got) - strlen(got), "%s,", tags[i].name);
            if (tags[i].is_kept_by_pull)
                snprintf(kept + strlen(kept), sizeof(kept) - strlen(kept), "%s,", tags[i].name);
        }
        assert_string_equal(got, cases[c].selected);
        assert_string_equal(kept, cases[c].kept_by_pull);
    }
}

/* A pull recorded just past the window counts within the precision (the keeping side),
 * and not beyond it. */
static void test_retention_pulled_precision(void **state)
{
    (void)state;
    int64_t now = 100 * 86400000LL;
    struct retention_rule rule = {.tags = "*", .keep_newest = 0, .older_than_s = -1,
                                  .untagged_after_s = -1, .pulled_within_s = 86400};
    int64_t edge = now - 86400000LL - PULL_RECORD_PRECISION_MS;
    struct retention_tag tags[2] = {
        {.name = "in", .hlc = (int64_t)((uint64_t)(now - 5 * 86400000LL) << HLC_LOGICAL_BITS),
         .origin = "r1", .pulled_ms = edge},
        {.name = "out", .hlc = (int64_t)((uint64_t)(now - 6 * 86400000LL) << HLC_LOGICAL_BITS),
         .origin = "r1", .pulled_ms = edge - 1}};
    retention_select(&rule, tags, 2, now);
    assert_false(tags[0].is_selected);
    assert_true(tags[1].is_selected);
}

static void test_retention_untagged_grace_per_pattern(void **state)
{
    (void)state;
    struct retention_rule items[] = {
        {.pattern = "team/*",
         .tags = "*",
         .keep_newest = -1,
         .older_than_s = -1,
         .untagged_after_s = 3600},
        {.pattern = "keep/*",
         .tags = "*",
         .keep_newest = -1,
         .older_than_s = -1,
         .untagged_after_s = 0},
    };
    struct retention_rules r = {.items = items, .n = 2};
    assert_int_equal(retention_untagged_after_s(&r, "team/app", 0), 3600);
    assert_int_equal(retention_untagged_after_s(&r, "keep/app", 86400), 0);
    assert_int_equal(retention_untagged_after_s(&r, "other", 86400), 86400);
    assert_int_equal(retention_untagged_min_s(&r, 0), 3600);
    assert_int_equal(retention_untagged_min_s(&r, 60), 60);
}

/* A tag written since it was listed is not deleted. */
static void test_tag_delete_if_unchanged(void **state)
{
    (void)state;
    struct metastore *ms = open_store("r1");
    struct digest m1, m2;
    struct err e = {0};
    put(ms, "app", "{\"a\":1}", "v1", NULL, 0, NULL, &m1);
    struct retention_tag *tags = NULL;
    size_t n = 0;
    assert_int_equal(ms->ops->tag_clocks(ms, "app", &tags, &n, &e), 0);
    assert_int_equal(n, 1);
    assert_string_equal(tags[0].digest, m1.str);
    put(ms, "app", "{\"a\":2}", "v1", NULL, 0, NULL, &m2); /* pushed again meanwhile */
    assert_int_not_equal(ms->ops->tag_delete_if(ms, "app", "v1", tags[0].digest, tags[0].hlc, &e),
                         0);
    assert_int_equal(e.code, ERR_CONFLICT);
    assert_true(resolves(ms, "app", "v1", &m2));
    retention_tags_free(tags, n);
    assert_int_equal(ms->ops->tag_clocks(ms, "app", &tags, &n, &e), 0);
    assert_int_equal(ms->ops->tag_delete_if(ms, "app", "v1", tags[0].digest, tags[0].hlc, &e), 0);
    assert_false(resolves(ms, "app", "v1", &m2));
    retention_tags_free(tags, n);
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
        cmocka_unit_test(test_untagged_collected_tagged_kept),
        cmocka_unit_test(test_index_children_and_referrers_kept),
        cmocka_unit_test(test_put_again_restarts_grace_dry_run_changes_nothing),
        cmocka_unit_test(test_only_owner_lists),
        cmocka_unit_test(test_concurrent_tag_keeps_collected_manifest),
        cmocka_unit_test(test_put_again_wins_over_an_older_collector_tombstone),
        cmocka_unit_test(test_concurrent_tag_keeps_manifest_through_anti_entropy),
        cmocka_unit_test(test_v2_database_migrates_with_untagged_stamped),
        cmocka_unit_test(test_retention_select_table),
        cmocka_unit_test(test_retention_pulled_precision),
        cmocka_unit_test(test_retention_untagged_grace_per_pattern),
        cmocka_unit_test(test_tag_delete_if_unchanged),
    };
    int failed = cmocka_run_group_tests_name("sqlite", tests, setup, teardown);
    const char *uri = getenv("MERIDIAN_TEST_PG");
    if (uri == NULL || uri[0] == '\0') {
        printf("[  SKIPPED ] PostgreSQL: MERIDIAN_TEST_PG is not set\n");
        return failed;
    }
    /* The store's logic again on PostgreSQL (the SQLite-file tests stay SQLite's). */
    is_pg = true;
    const struct CMUnitTest pg_tests[] = {
        cmocka_unit_test(test_untagged_collected_tagged_kept),
        cmocka_unit_test(test_index_children_and_referrers_kept),
        cmocka_unit_test(test_only_owner_lists),
        cmocka_unit_test(test_concurrent_tag_keeps_collected_manifest),
        cmocka_unit_test(test_put_again_wins_over_an_older_collector_tombstone),
        cmocka_unit_test(test_concurrent_tag_keeps_manifest_through_anti_entropy),
        cmocka_unit_test(test_tag_delete_if_unchanged),
        cmocka_unit_test(test_pg_v2_database_migrates),
    };
    return failed + cmocka_run_group_tests_name("postgres", pg_tests, NULL, NULL);
}
