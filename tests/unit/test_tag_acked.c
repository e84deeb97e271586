/* Unit tests for tag_acked (meta_compact.c), on SQLite and, with MERIDIAN_TEST_PG, on
 * PostgreSQL: has a peer applied the write that last set a tag register, as the version
 * vector it acknowledged tells? The status of an image version (a tag) reads it
 * (docs/replication.md, "The status of a tag"). A write of this region, or of a third
 * region applied here, is acknowledged once the peer's vector reaches its event; a tag
 * pushed again is a new write; a deleted tag or another digest is never acknowledged; the
 * peer's own write needs no vector; an acknowledgement below this log's horizon (the next
 * event compacted away) and a register merged from a peer's state ahead of its event do not
 * count until the events tell. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "digest.h"
#include "metastore.h"
#include "sql_driver.h"
#include "util.h"

static char tmpdir[] = "/tmp/meridian-tag-acked-XXXXXX";
static int db_counter;
static bool is_pg; /* the second run: the same tests on PostgreSQL (MERIDIAN_TEST_PG) */

/* A fresh store of region: SQLite in tmpdir, or a schema of its own in PostgreSQL. */
static struct metastore *open_store(const char *region)
{
    struct err e = {0};
    struct metastore *ms;
    int n = db_counter++;
    if (is_pg) {
        const char *base = getenv("MERIDIAN_TEST_PG");
        char sql[128], target[1024];
        struct sql_db *db = NULL;
        assert_int_equal(sql_pg_driver.open(base, &db, &e), 0);
        snprintf(sql, sizeof(sql),
                 "DROP SCHEMA IF EXISTS tag_acked_%d CASCADE; CREATE SCHEMA tag_acked_%d", n, n);
        assert_int_equal(sql_pg_driver.exec(db, sql), SQL_OK);
        sql_pg_driver.close(db);
        snprintf(target, sizeof(target), "%s%soptions=-csearch_path%%3Dtag_acked_%d", base,
                 strchr(base, '?') != NULL ? "&" : "?", n);
        ms = metastore_pg_open(target, region, &e);
    } else {
        char path[256];
        snprintf(path, sizeof(path), "%s/db%d.sqlite", tmpdir, n);
        ms = metastore_sqlite_open(path, region, &e);
    }
    assert_non_null(ms);
    return ms;
}

/* Pushes a manifest of its own (n) as repo:tag; its digest in *out. */
static void push(struct metastore *ms, const char *repo, const char *tag, int n,
                 struct digest *out)
{
    char body[128];
    size_t len = (size_t)snprintf(body, sizeof(body), "{\"schemaVersion\":2,\"n\":%d}", n);
    struct meta_manifest m = {
        .media_type = "application/vnd.oci.image.manifest.v1+json", .body = body, .body_len = len};
    digest_of_buffer(DIGEST_SHA256, body, len, &m.digest);
    struct err e = {0};
    assert_int_equal(ms->ops->manifest_put(ms, repo, &m, NULL, 0, NULL, tag, &e), 0);
    *out = m.digest;
}

/* Every event of ms's log (caller frees). */
static struct meta_event *log_of(struct metastore *ms, size_t *n)
{
    struct meta_event *evs;
    int64_t last;
    struct err e = {0};
    assert_int_equal(ms->ops->events_read(ms, 0, NULL, 10000, &evs, n, &last, &e), 0);
    return evs;
}

static void log_free(struct meta_event *evs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        meta_event_fini(&evs[i]);
    free(evs);
}

/* origin_seq of the last tag_set of tag in ms's log. */
static int64_t tag_set_seq(struct metastore *ms, const char *tag)
{
    size_t n;
    struct meta_event *evs = log_of(ms, &n);
    int64_t seq = 0;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(evs[i].kind, "tag_set") == 0 && strcmp(evs[i].name, tag) == 0)
            seq = evs[i].origin_seq;
    }
    log_free(evs, n);
    assert_true(seq > 0);
    return seq;
}

/* Applies every event of from's log to to (those it has are skipped). */
static void apply_all(struct metastore *from, struct metastore *to)
{
    size_t n;
    struct meta_event *evs = log_of(from, &n);
    for (size_t i = 0; i < n; i++) {
        bool is_new, is_gap;
        struct err e = {0};
        assert_int_equal(to->ops->event_apply(to, &evs[i], &is_new, &is_gap, &e), 0);
        assert_false(is_gap);
    }
    log_free(evs, n);
}

/* tag_acked of repo:tag -> d for peer with the vector "o1:s1[,o2:s2]" (o1 NULL: none). */
static bool acked(struct metastore *ms, const char *tag, const struct digest *d,
                  const char *peer, const char *o1, int64_t s1, const char *o2, int64_t s2)
{
    struct meta_vv vv = {0};
    char *origins[2] = {(char *)o1, (char *)o2};
    int64_t seqs[2] = {s1, s2};
    vv.origins = origins;
    vv.seqs = seqs;
    vv.n = o1 == NULL ? 0 : o2 == NULL ? 1 : 2;
    bool is_acked = true;
    struct err e = {0};
    assert_int_equal(
        ms->ops->tag_acked(ms, "app", tag, d, peer, o1 ? &vv : NULL, &is_acked, &e), 0);
    return is_acked;
}

static void test_own_write_is_acked_once_the_peer_has_its_event(void **state)
{
    (void)state;
    struct metastore *ms = open_store("r1");
    struct digest d1, d2;
    push(ms, "app", "v1", 1, &d1);
    push(ms, "app", "other", 2, &d2);
    int64_t s = tag_set_seq(ms, "v1");
    assert_false(acked(ms, "v1", &d1, "r2", NULL, 0, NULL, 0)); /* no vector: nothing */
    assert_false(acked(ms, "v1", &d1, "r2", "r1", s - 1, NULL, 0));
    assert_true(acked(ms, "v1", &d1, "r2", "r1", s, NULL, 0));
    assert_true(acked(ms, "v1", &d1, "r2", "r3", 9, "r1", s + 1));
    assert_true(acked(ms, "v1", &d1, "r2", "r1", s + 1000, NULL, 0)); /* past the log's end */
    assert_false(acked(ms, "v1", &d2, "r2", "r1", s + 1000, NULL, 0)); /* v1 names d1 */
    assert_false(acked(ms, "none", &d1, "r2", "r1", s + 1000, NULL, 0));

    /* Pushed again: a new write of the register, which the old vector does not cover. */
    push(ms, "app", "v1", 1, &d1);
    int64_t s2 = tag_set_seq(ms, "v1");
    assert_true(s2 > s);
    assert_false(acked(ms, "v1", &d1, "r2", "r1", s, NULL, 0));
    assert_false(acked(ms, "v1", &d1, "r2", "r1", s2 - 1, NULL, 0));
    assert_true(acked(ms, "v1", &d1, "r2", "r1", s2, NULL, 0));

    /* Deleted: the tag names nothing, whatever the peer has. */
    struct err e = {0};
    assert_int_equal(ms->ops->tag_delete(ms, "app", "v1", &e), 0);
    assert_false(acked(ms, "v1", &d1, "r2", "r1", s2 + 1000, NULL, 0));
    ms->ops->close(ms);
}

static void test_third_region_write_is_acked_per_origin(void **state)
{
    (void)state;
    struct metastore *r3 = open_store("r3"), *r1 = open_store("r1");
    struct digest d, d2, d3;
    push(r3, "app", "v1", 1, &d);
    int64_t s = tag_set_seq(r3, "v1");
    apply_all(r3, r1);
    push(r1, "app", "mine", 4, &d2); /* r1's own numbering moves on beside r3's */
    assert_false(acked(r1, "v1", &d, "r2", "r1", 100, NULL, 0)); /* r3's events count */
    assert_false(acked(r1, "v1", &d, "r2", "r3", s - 1, "r1", 100));
    assert_true(acked(r1, "v1", &d, "r2", "r3", s, NULL, 0));
    assert_true(acked(r1, "v1", &d, "r3", NULL, 0, NULL, 0)); /* r3's own write */

    /* r3 writes on; r1 compacts r3's events up to s + 1: a vector at s is below the horizon
     * (its next event is gone), and nothing tells; one at s + 1 still does. */
    push(r3, "app", "v2", 2, &d2);
    push(r3, "app", "v3", 3, &d3);
    apply_all(r3, r1);
    size_t dropped;
    struct err e = {0};
    assert_int_equal(r1->ops->log_compact(r1, "r3", s + 1, 100, &dropped, &e), 0);
    assert_int_equal(dropped, (size_t)(s + 1));
    assert_false(acked(r1, "v1", &d, "r2", "r3", s, NULL, 0));
    assert_true(acked(r1, "v1", &d, "r2", "r3", s + 1, NULL, 0));

    /* r3 pushes v1 again; r1 merges the register from r3's state (anti-entropy) before the
     * event: a vector with every r3 event r1 applied does not cover it, until the event. */
    push(r3, "app", "v1", 1, &d);
    struct meta_event *recs;
    size_t n_recs;
    assert_int_equal(r3->ops->repo_state(r3, "app", &recs, &n_recs, &e), 0);
    bool is_merged = false;
    for (size_t i = 0; i < n_recs; i++) {
        if (strcmp(recs[i].kind, "tag_set") == 0 && strcmp(recs[i].name, "v1") == 0) {
            assert_int_equal(r1->ops->state_merge(r1, &recs[i], 0, &e), 0);
            is_merged = true;
        }
    }
    log_free(recs, n_recs);
    assert_true(is_merged);
    struct meta_vv vv1 = {0};
    assert_int_equal(r1->ops->vv_get(r1, &vv1, &e), 0);
    int64_t applied = meta_vv_get(&vv1, "r3");
    meta_vv_fini(&vv1);
    assert_false(acked(r1, "v1", &d, "r2", "r3", applied, NULL, 0));
    apply_all(r3, r1);
    assert_true(acked(r1, "v1", &d, "r2", "r3", tag_set_seq(r3, "v1"), NULL, 0));
    r1->ops->close(r1);
    r3->ops->close(r3);
}

/* The bootstrap admin is written at the lowest clock (meta_access.c), also after other
 * events of its region: turning authentication on in a region that has tags already. Its
 * events break the rising clocks of the region's events; a peer whose vector reaches past
 * them has still applied the tag written before them. */
static void test_low_clock_events_after_the_write_do_not_hide_it(void **state)
{
    (void)state;
    struct metastore *ms = open_store("r1");
    struct digest d;
    push(ms, "app", "v1", 1, &d);
    int64_t s = tag_set_seq(ms, "v1");
    struct meta_identity id = {.name = "admin",
                               .kind = "user",
                               .secret_hash = "x",
                               .description = "bootstrap administrator",
                               .is_bootstrap = true};
    struct meta_binding b = {
        .subject = "admin", .role = "admin", .pattern = "*", .is_bootstrap = true};
    bool is_changed;
    struct err e = {0};
    assert_int_equal(ms->ops->identity_put(ms, &id, true, &e), 0);
    assert_int_equal(ms->ops->role_set(ms, &b, true, &is_changed, &e), 0);
    struct meta_vv vv = {0};
    assert_int_equal(ms->ops->vv_get(ms, &vv, &e), 0);
    int64_t head = meta_vv_get(&vv, "r1");
    meta_vv_fini(&vv);
    assert_true(head > s);
    assert_false(acked(ms, "v1", &d, "r2", "r1", s - 1, NULL, 0));
    assert_true(acked(ms, "v1", &d, "r2", "r1", s, NULL, 0));    /* next event: low clock */
    assert_true(acked(ms, "v1", &d, "r2", "r1", head, NULL, 0)); /* last event: low clock */

    /* A later write of the region comes after them and is judged by its own event. */
    struct digest d2;
    push(ms, "app", "v1", 2, &d2);
    int64_t s2 = tag_set_seq(ms, "v1");
    assert_false(acked(ms, "v1", &d2, "r2", "r1", head, NULL, 0));
    assert_true(acked(ms, "v1", &d2, "r2", "r1", s2, NULL, 0));
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
        cmocka_unit_test(test_own_write_is_acked_once_the_peer_has_its_event),
        cmocka_unit_test(test_third_region_write_is_acked_per_origin),
        cmocka_unit_test(test_low_clock_events_after_the_write_do_not_hide_it),
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
