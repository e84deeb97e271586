/* The PostgreSQL metastore (metastore_pg.c) on the server named by env MERIDIAN_TEST_PG
 * (skipped with a message without one; scripts/test.sh starts one). Each test gets its own
 * schema (search_path in the connection string). Nodes starting at once on a fresh
 * database: one creates the schema under the migration lock, the others find it. Every
 * statement of the table prepares in PostgreSQL's spelling against that schema. A push
 * (blobs, manifest, tag) reads back through the same calls as on SQLite, and its event
 * lands in the log. Two nodes of a region (two stores on one database): events stamped by
 * a node whose clock is behind still order after the other node's, one lease has one
 * holder, a claimed webhook delivery is not handed to the other node, the GC fence
 * held shared by one node keeps the other's collector out. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "buf.h"
#include "digest.h"
#include "metastore.h"
#include "metastore_sqlite_int.h"
#include "restored_contract.h"
#include "schema_back_to_v2.h"
#include "util.h"

static char target[1024];

/* A fresh schema of its own for the test, and the target that selects it. */
static int setup(void **state)
{
    (void)state;
    const char *base = getenv("MERIDIAN_TEST_PG");
    const char *sep = strchr(base, '?') != NULL ? "&" : "?";
    /* Named, so that test_sql_driver's "terminate every other connection" (the two may
     * run at once on one server) leaves these alone. */
    char named[900];
    snprintf(named, sizeof(named), "%s%sapplication_name=test_metastore_pg", base, sep);
    struct sql_db *db = NULL;
    struct err e = {0};
    if (sql_pg_driver.open(named, &db, &e) != 0)
        return -1;
    int rc = sql_pg_driver.exec(db, "DROP SCHEMA IF EXISTS unit_pg CASCADE; CREATE SCHEMA unit_pg");
    sql_pg_driver.close(db);
    snprintf(target, sizeof(target), "%s&options=-csearch_path%%3Dunit_pg", named);
    return rc == SQL_OK ? 0 : -1;
}

static void *open_one(void *arg)
{
    struct err e = {0};
    struct metastore *ms = metastore_pg_open(target, "r1", &e);
    *(bool *)arg = ms != NULL;
    if (ms != NULL)
        ms->ops->close(ms);
    return NULL;
}

static void test_nodes_start_at_once(void **state)
{
    (void)state;
    enum { N = 4 };
    pthread_t t[N];
    bool ok[N] = {false};
    for (int i = 0; i < N; i++)
        AZ(pthread_create(&t[i], NULL, open_one, &ok[i]));
    for (int i = 0; i < N; i++) {
        AZ(pthread_join(t[i], NULL));
        assert_true(ok[i]);
    }
    struct err e = {0};
    struct metastore *ms = metastore_pg_open(target, "r1", &e);
    assert_non_null(ms);
    assert_string_equal(ms->ops->name, "postgres");
    struct sq_conn *c = sq_conn_of(ms, &e);
    struct sql_stmt *s = NULL;
    assert_int_equal(sq_run(c, "SELECT count(*), max(version) FROM meridian_schema", &s, &e, ""),
                     SQL_ROW);
    assert_int_equal(sql_col_int64(s, 0), 1);
    assert_int_equal(sql_col_int64(s, 1), 12); /* schema version 12: tags in case-insensitive order */
    sql_finalize(s);
    ms->ops->close(ms);
}

static void test_every_statement_prepares(void **state)
{
    (void)state;
    struct err e = {0};
    struct metastore *ms = metastore_pg_open(target, "r1", &e);
    assert_non_null(ms);
    struct sq_conn *c = sq_conn_of(ms, &e);
    int failed = 0;
    for (int i = 0; i < SQ_STMT_COUNT_; i++) {
        const char *sql = sq_statement_text(SQL_DIALECT_POSTGRES, (enum sq_stmt)i);
        struct sql_stmt *s = NULL;
        int rc = c->db->drv->prepare(c->db, sql, false, &s);
        if (rc != SQL_OK) {
            struct err pe = {0};
            sq_db_fail(c, rc, sq_statement_name((enum sq_stmt)i), sql, &pe);
            failed++;
        }
        sql_finalize(s);
    }
    assert_int_equal(failed, 0);
    ms->ops->close(ms);
}

/* Pushes a manifest of `body` (one layer) to lib/app as `tag`; its digest into *out. */
static void push_body(struct metastore *ms, char *body, size_t body_len, const char *tag,
                      struct digest *out)
{
    struct err e = {0};
    const char *layer = "layer bytes";
    struct meta_ref ref = {0};
    digest_of_buffer(DIGEST_SHA256, layer, strlen(layer), &ref.digest);
    ref.size = (int64_t)strlen(layer);
    assert_int_equal(ms->ops->blob_link(ms, "lib/app", &ref.digest, ref.size, &e), 0);
    struct meta_manifest m = {.media_type = "application/vnd.oci.image.manifest.v1+json",
                              .body = body, .body_len = body_len};
    digest_of_buffer(DIGEST_SHA256, body, m.body_len, &m.digest);
    assert_int_equal(ms->ops->manifest_put(ms, "lib/app", &m, &ref, 1, NULL, tag, &e), 0);
    if (out != NULL)
        *out = m.digest;
}

static void test_push_reads_back(void **state)
{
    (void)state;
    struct err e = {0};
    struct metastore *ms = metastore_pg_open(target, "r1", &e);
    assert_non_null(ms);
    char body[] = "{\"schemaVersion\":2,\"x\":\"\\u0000\"}";
    struct digest d;
    push_body(ms, body, sizeof(body) - 1, "v1", &d);

    struct meta_manifest got = {0};
    assert_int_equal(ms->ops->manifest_get(ms, "lib/app", "v1", &got, &e), 0);
    assert_int_equal(got.body_len, sizeof(body) - 1);
    assert_memory_equal(got.body, body, sizeof(body) - 1);
    assert_string_equal(got.digest.str, d.str);
    meta_manifest_fini(&got);

    struct meta_name_list tags = {0};
    assert_int_equal(ms->ops->tag_list(ms, "lib/app", NULL, -1, &tags, &e), 0);
    assert_int_equal(tags.n, 1);
    assert_string_equal(tags.names[0], "v1");
    meta_name_list_fini(&tags);
    struct meta_name_list repos = {0};
    assert_int_equal(ms->ops->repo_list(ms, NULL, -1, &repos, &e), 0);
    assert_int_equal(repos.n, 1);
    meta_name_list_fini(&repos);

    struct buf out;
    buf_init(&out, 1 << 20);
    int64_t last = 0;
    assert_int_equal(ms->ops->events_since(ms, 0, 100, &out, &last, &e), 0);
    assert_true(last >= 1);
    assert_non_null(memmem(out.data, out.len, "manifest_put", 12));
    buf_fini(&out);
    ms->ops->close(ms);
}

/* The origin clocks the tombstone rule reads (compact_tombs_cutoff): the newest event of
 * each origin with its clock, kept through compaction, and a snapshot's horizon clock. */
static void test_origin_clocks(void **state)
{
    (void)state;
    struct err e = {0};
    struct metastore *ms = metastore_pg_open(target, "r1", &e);
    assert_non_null(ms);
    char b1[] = "{\"schemaVersion\":2,\"n\":1}", b2[] = "{\"schemaVersion\":2,\"n\":2}";
    push_body(ms, b1, sizeof(b1) - 1, "v1", NULL);
    push_body(ms, b2, sizeof(b2) - 1, "v2", NULL);
    struct meta_horizon *h;
    size_t n;
    assert_int_equal(ms->ops->origin_clocks(ms, &h, &n, &e), 0);
    assert_int_equal(n, 1);
    assert_string_equal(h[0].origin, "r1");
    int64_t seq = h[0].seq, hlc = h[0].hlc;
    assert_true(seq >= 4 && hlc > 0);
    meta_horizon_list_fini(h, n);
    size_t dropped;
    assert_int_equal(ms->ops->log_compact(ms, "r1", seq - 1, 100, &dropped, &e), 0);
    assert_int_equal(dropped, (size_t)(seq - 1));
    struct meta_horizon snap[] = {{"r2", 7, 123}};
    assert_int_equal(ms->ops->log_adopt(ms, "r2", snap, 1, &e), 0);
    assert_int_equal(ms->ops->origin_clocks(ms, &h, &n, &e), 0);
    assert_int_equal(n, 2);
    const struct meta_horizon *mine = meta_horizon_find(h, n, "r1");
    const struct meta_horizon *other = meta_horizon_find(h, n, "r2");
    assert_non_null(mine);
    assert_non_null(other);
    assert_int_equal(mine->seq, seq);
    assert_int_equal(mine->hlc, hlc);
    assert_int_equal(other->seq, 7);
    assert_int_equal(other->hlc, 123);
    meta_horizon_list_fini(h, n);
    ms->ops->close(ms);
}

/* A database of schema version 2 (status rows without copies) opens with this build: the
 * step adds the column, existing rows report no count, a count written reads back. */
static void test_v2_database_gains_status_copies(void **state)
{
    (void)state;
    struct err e = {0};
    struct metastore *ms = metastore_pg_open(target, "r1", &e);
    assert_non_null(ms);
    char body[] = "{\"schemaVersion\":2}";
    struct digest d;
    push_body(ms, body, sizeof(body) - 1, "v1", &d);
    struct sq_conn *c = sq_conn_of(ms, &e);
    assert_int_equal(sq_script(c, PG_SQL_SCHEMA_BACK_TO_V2, "back to v2", &e), 0);
    ms->ops->close(ms);

    ms = metastore_pg_open(target, "r1", &e);
    assert_non_null(ms);
    struct meta_status *st = NULL;
    size_t n = 0;
    assert_int_equal(ms->ops->status_list(ms, "lib/app", &d, &st, &n, &e), 0);
    assert_int_equal(n, 1);
    assert_string_equal(st[0].state, "Completed");
    assert_false(st[0].has_copies);
    meta_status_free(st, n);
    struct meta_status two = {.region = "r1", .state = "Completed", .updated_ms = util_now_ms(),
                              .details = "", .has_copies = true, .copies = 2};
    assert_int_equal(ms->ops->status_set(ms, "lib/app", &d, &two, true, &e), 0);
    assert_int_equal(ms->ops->status_list(ms, "lib/app", &d, &st, &n, &e), 0);
    assert_int_equal(n, 1);
    assert_true(st[0].has_copies);
    assert_int_equal(st[0].copies, 2);
    meta_status_free(st, n);
    ms->ops->close(ms);
}

/* Pushes manifest `tag` (a body unique to the tag) through ms. */
static void push_tag(struct metastore *ms, const char *tag)
{
    char body[128];
    snprintf(body, sizeof(body), "{\"schemaVersion\":2,\"tag\":\"%s\"}", tag);
    push_body(ms, body, strlen(body), tag, NULL);
}

/* Node A's clock runs an hour ahead of node B's (or B's is behind): B's later write must
 * still be stamped after A's, or last-writer-wins would keep A's older tag and peers
 * would order the region's own events against their commit order. */
static void test_nodes_share_one_clock(void **state)
{
    (void)state;
    struct err e = {0};
    struct metastore *a = metastore_pg_open(target, "r1", &e);
    struct metastore *b = metastore_pg_open(target, "r1", &e);
    assert_non_null(a);
    assert_non_null(b);
    struct sq_store *sa = (struct sq_store *)a;
    sa->hlc_last = (int64_t)((uint64_t)(util_now_ms() + 3600 * 1000) << 16);
    push_tag(a, "one");
    push_tag(b, "two");
    push_tag(a, "three");
    push_tag(b, "four");
    struct sq_conn *c = sq_conn_of(a, &e);
    struct sql_stmt *s = NULL;
    int rc = sq_run(c, "SELECT origin_seq, hlc FROM events WHERE origin = 'r1'"
                       " ORDER BY origin_seq", &s, &e, "");
    int64_t n = 0, last_seq = 0, last_hlc = 0;
    for (; rc == SQL_ROW; rc = sql_pg_driver.step(s), n++) {
        assert_int_equal(sql_col_int64(s, 0), last_seq + 1); /* no gap */
        assert_true(sql_col_int64(s, 1) > last_hlc);         /* clocks in log order */
        last_seq = sql_col_int64(s, 0);
        last_hlc = sql_col_int64(s, 1);
    }
    sql_finalize(s);
    assert_true(n >= 8); /* a manifest and a tag event per push */
    a->ops->close(a);
    b->ops->close(b);
}

static void test_lease_has_one_holder(void **state)
{
    (void)state;
    struct err e = {0};
    struct metastore *a = metastore_pg_open(target, "r1", &e);
    struct metastore *b = metastore_pg_open(target, "r1", &e);
    assert_non_null(a);
    assert_non_null(b);
    bool held = false;
    assert_int_equal(a->ops->lease_hold(a, "work", "A", 10000, &held, &e), 0);
    assert_true(held);
    assert_int_equal(b->ops->lease_hold(b, "work", "B", 10000, &held, &e), 0);
    assert_false(held);
    assert_int_equal(a->ops->lease_hold(a, "work", "A", 10000, &held, &e), 0);
    assert_true(held); /* renewed */
    /* A's last renewal, then A dies: the lease runs out by the database's clock (no
     * clock of a node is asked), B takes it, and A's renewal then fails. */
    assert_int_equal(a->ops->lease_hold(a, "work", "A", 300, &held, &e), 0);
    assert_true(held);
    assert_int_equal(b->ops->lease_hold(b, "work", "B", 10000, &held, &e), 0);
    assert_false(held); /* not run out yet */
    int64_t deadline = util_now_ms() + 10000;
    while (!held && util_now_ms() < deadline) {
        struct timespec pause = {0, 20 * 1000000L};
        nanosleep(&pause, NULL);
        assert_int_equal(b->ops->lease_hold(b, "work", "B", 10000, &held, &e), 0);
    }
    assert_true(held);
    assert_int_equal(a->ops->lease_hold(a, "work", "A", 10000, &held, &e), 0);
    assert_false(held);
    /* Given up (ttl 0): the other takes it at once. */
    assert_int_equal(b->ops->lease_hold(b, "work", "B", 0, &held, &e), 0);
    assert_int_equal(a->ops->lease_hold(a, "work", "A", 10000, &held, &e), 0);
    assert_true(held);
    a->ops->close(a);
    b->ops->close(b);
}

static void test_claimed_delivery_goes_to_one_node(void **state)
{
    (void)state;
    struct err e = {0};
    struct metastore *a = metastore_pg_open(target, "r1", &e);
    struct metastore *b = metastore_pg_open(target, "r1", &e);
    assert_non_null(a);
    assert_non_null(b);
    struct meta_delivery d = {.webhook = "hook", .action = "push", .payload = "{}",
                              .state = META_DELIVERY_PENDING, .latency_ms = -1,
                              .created_ms = 1000, .updated_ms = 1000, .next_attempt_ms = 1000};
    snprintf(d.id, sizeof(d.id), "d1");
    assert_int_equal(a->ops->delivery_add(a, &d, 1, &e), 0);
    struct meta_delivery_list got_a = {0}, got_b = {0};
    int64_t next = 0;
    assert_int_equal(a->ops->delivery_due(a, 2000, 60000, 10, NULL, 0, &got_a, &next, &e), 0);
    assert_int_equal(got_a.n, 1);
    assert_int_equal(b->ops->delivery_due(b, 2001, 60000, 10, NULL, 0, &got_b, &next, &e), 0);
    assert_int_equal(got_b.n, 0);
    assert_int_equal(next, 62000); /* due again when the claim runs out */
    meta_delivery_list_fini(&got_b);
    /* A node that died (its connection, and the webhook's send lock, gone): another one
     * takes it once the claim has run out. The server ends A's session, and releases its
     * lock, a moment after A closed it: polled. */
    a->ops->close(a);
    int64_t until = util_now_ms() + 5000;
    do {
        meta_delivery_list_fini(&got_b);
        assert_int_equal(b->ops->delivery_due(b, 62001, 60000, 10, NULL, 0, &got_b, &next, &e), 0);
    } while (got_b.n == 0 && util_now_ms() < until);
    assert_int_equal(got_b.n, 1);
    meta_delivery_list_fini(&got_a);
    meta_delivery_list_fini(&got_b);
    b->ops->close(b);
}

/* One send at a time per webhook across the nodes: while node A has a delivery of "hook"
 * in flight, node B takes the other webhooks' deliveries, not hook's next one (it sent
 * it at the same time, out of order). A takes it once its send is done; B once A died. */
static void test_one_send_per_webhook_across_nodes(void **state)
{
    (void)state;
    struct err e = {0};
    struct metastore *a = metastore_pg_open(target, "r1", &e);
    struct metastore *b = metastore_pg_open(target, "r1", &e);
    assert_non_null(a);
    assert_non_null(b);
    struct meta_delivery d[3];
    const char *hooks[3] = {"hook", "hook", "other"};
    for (int i = 0; i < 3; i++) {
        d[i] = (struct meta_delivery){.webhook = (char *)hooks[i], .action = "push",
                                      .payload = "{}", .state = META_DELIVERY_PENDING,
                                      .latency_ms = -1, .created_ms = 1000 + i,
                                      .updated_ms = 1000 + i, .next_attempt_ms = 1000 + i};
        snprintf(d[i].id, sizeof(d[i].id), "s%d", i + 1);
    }
    assert_int_equal(a->ops->delivery_add(a, d, 3, &e), 0);
    struct meta_delivery_list got = {0};
    int64_t next = 0;
    assert_int_equal(a->ops->delivery_due(a, 2000, 60000, 1, NULL, 0, &got, &next, &e), 0);
    assert_int_equal(got.n, 1);
    assert_string_equal(got.items[0].id, "s1");
    meta_delivery_list_fini(&got);
    assert_int_equal(b->ops->delivery_due(b, 2001, 60000, 10, NULL, 0, &got, &next, &e), 0);
    assert_int_equal(got.n, 1);
    assert_string_equal(got.items[0].id, "s3");
    meta_delivery_list_fini(&got);
    /* A's send of s1 is done (recorded): its next dispatch takes s2. */
    d[0].state = META_DELIVERY_DELIVERED;
    assert_int_equal(a->ops->delivery_update(a, &d[0], &e), 0);
    const char *busy[] = {"other"};
    assert_int_equal(a->ops->delivery_due(a, 2002, 60000, 10, busy, 1, &got, &next, &e), 0);
    assert_int_equal(got.n, 1);
    assert_string_equal(got.items[0].id, "s2");
    meta_delivery_list_fini(&got);
    /* A dies mid-send of s2: B sends it when its claim runs out (and the server has ended
     * A's session, a moment after A closed it: polled). */
    a->ops->close(a);
    int64_t until = util_now_ms() + 5000;
    do {
        meta_delivery_list_fini(&got);
        assert_int_equal(b->ops->delivery_due(b, 62003, 60000, 10, busy, 1, &got, &next, &e), 0);
    } while (got.n == 0 && util_now_ms() < until);
    assert_int_equal(got.n, 1);
    assert_string_equal(got.items[0].id, "s2");
    meta_delivery_list_fini(&got);
    b->ops->close(b);
}

/* A node frozen mid-send (SIGSTOP, a paused VM: its session stays, so does its webhook
 * lock) holds its webhook back no longer than a claim: a lock whose session did nothing
 * for claim_ms is ignored. */
static void test_frozen_node_holds_a_webhook_back_for_a_claim_only(void **state)
{
    (void)state;
    struct err e = {0};
    struct metastore *a = metastore_pg_open(target, "r1", &e);
    struct metastore *b = metastore_pg_open(target, "r1", &e);
    assert_non_null(a);
    assert_non_null(b);
    struct meta_delivery d[2];
    for (int i = 0; i < 2; i++) {
        d[i] = (struct meta_delivery){.webhook = "hook", .action = "push", .payload = "{}",
                                      .state = META_DELIVERY_PENDING, .latency_ms = -1,
                                      .created_ms = 1000 + i, .updated_ms = 1000 + i,
                                      .next_attempt_ms = 1000 + i};
        snprintf(d[i].id, sizeof(d[i].id), "f%d", i + 1);
    }
    assert_int_equal(a->ops->delivery_add(a, d, 2, &e), 0);
    struct meta_delivery_list got = {0};
    int64_t next = 0;
    assert_int_equal(a->ops->delivery_due(a, 2000, 60000, 1, NULL, 0, &got, &next, &e), 0);
    assert_int_equal(got.n, 1);
    meta_delivery_list_fini(&got);
    assert_int_equal(b->ops->delivery_due(b, 2001, 60000, 10, NULL, 0, &got, &next, &e), 0);
    assert_int_equal(got.n, 0);
    /* A's session idle past a claim of 20 ms: B takes f2 (A's lock ignored). */
    int64_t until = util_now_ms() + 5000;
    while (got.n == 0 && util_now_ms() < until) {
        meta_delivery_list_fini(&got);
        assert_int_equal(b->ops->delivery_due(b, 2002, 20, 10, NULL, 0, &got, &next, &e), 0);
    }
    assert_int_equal(got.n, 1);
    assert_string_equal(got.items[0].id, "f2");
    meta_delivery_list_fini(&got);
    a->ops->close(a);
    b->ops->close(b);
}

/* A webhook's deliveries go with it only while no live definition of the name exists, on
 * either node: one node re-creates it, the other's prune (told it is gone) keeps them. */
static void test_prune_of_a_gone_webhook_spares_a_recreated_one(void **state)
{
    (void)state;
    struct err e = {0};
    struct metastore *a = metastore_pg_open(target, "r1", &e);
    struct metastore *b = metastore_pg_open(target, "r1", &e);
    assert_non_null(a);
    assert_non_null(b);
    struct meta_delivery d = {.webhook = "again", .action = "push", .payload = "{}",
                              .state = META_DELIVERY_PENDING, .latency_ms = -1,
                              .created_ms = 1000, .updated_ms = 1000, .next_attempt_ms = 1000};
    snprintf(d.id, sizeof(d.id), "g1");
    assert_int_equal(a->ops->object_put(a, "webhook", "again", "{\"url\":\"x\"}", &e), 0);
    assert_int_equal(a->ops->delivery_add(a, &d, 1, &e), 0);
    assert_int_equal(b->ops->delivery_prune(b, "again", 0, "webhook", &e), 0);
    struct meta_delivery_list l = {0};
    assert_int_equal(b->ops->delivery_list(b, "again", 10, &l, &e), 0);
    assert_int_equal(l.n, 1);
    meta_delivery_list_fini(&l);
    assert_int_equal(a->ops->object_delete(a, "webhook", "again", &e), 0);
    assert_int_equal(b->ops->delivery_prune(b, "again", 0, "webhook", &e), 0);
    assert_int_equal(b->ops->delivery_list(b, "again", 10, &l, &e), 0);
    assert_int_equal(l.n, 0);
    meta_delivery_list_fini(&l);
    a->ops->close(a);
    b->ops->close(b);
}

/* Upload starts from one address on two nodes at once, more than its cap: exactly the
 * cap's worth succeed (the count and the creation are one step under the writers' lock). */
enum { PG_CAP_TRIES = 15, PG_CAP_MAX = 20 };
struct pg_cap_arg {
    struct metastore *ms;
    pthread_barrier_t *start;
    unsigned id;
    unsigned n_created, n_refused, n_failed;
};

static void *pg_cap_thread(void *p)
{
    struct pg_cap_arg *a = p;
    struct meta_upload_caps caps = {.now_s = 100, .max_from_source = PG_CAP_MAX};
    pthread_barrier_wait(a->start);
    for (unsigned i = 0; i < PG_CAP_TRIES; i++) {
        char id[32];
        snprintf(id, sizeof(id), "cap%u-%u", a->id, i);
        struct err e = {0};
        if (a->ms->ops->upload_create_capped(a->ms, id, "r", 500, "203.0.113.77", false, &caps,
                                             &e) == 0)
            a->n_created++;
        else if (e.code == ERR_TOOMANYREQUESTS)
            a->n_refused++;
        else
            a->n_failed++;
    }
    a->ms->ops->thread_release(a->ms);
    return NULL;
}

static void test_upload_cap_holds_across_nodes(void **state)
{
    (void)state;
    struct err e = {0};
    struct metastore *nodes[2] = {metastore_pg_open(target, "r1", &e),
                                  metastore_pg_open(target, "r1", &e)};
    assert_non_null(nodes[0]);
    assert_non_null(nodes[1]);
    pthread_barrier_t start;
    assert_int_equal(pthread_barrier_init(&start, NULL, 2), 0);
    struct pg_cap_arg args[2];
    pthread_t threads[2];
    for (unsigned i = 0; i < 2; i++) {
        args[i] = (struct pg_cap_arg){.ms = nodes[i], .start = &start, .id = i};
        assert_int_equal(pthread_create(&threads[i], NULL, pg_cap_thread, &args[i]), 0);
    }
    for (unsigned i = 0; i < 2; i++)
        assert_int_equal(pthread_join(threads[i], NULL), 0);
    pthread_barrier_destroy(&start);
    assert_int_equal(args[0].n_failed + args[1].n_failed, 0);
    assert_int_equal(args[0].n_created + args[1].n_created, PG_CAP_MAX);
    assert_int_equal(args[0].n_refused + args[1].n_refused, 2 * PG_CAP_TRIES - PG_CAP_MAX);
    int64_t n = -1;
    assert_int_equal(nodes[0]->ops->upload_count_from(nodes[0], "203.0.113.77", 100, &n, &e), 0);
    assert_int_equal(n, PG_CAP_MAX);
    nodes[0]->ops->close(nodes[0]);
    nodes[1]->ops->close(nodes[1]);
}

/* A commit on one node (the fence shared) keeps the collector of another (exclusive,
 * without waiting) from removing bytes until it is done. */
static void test_gc_fence_spans_nodes(void **state)
{
    (void)state;
    struct err e = {0};
    struct metastore *a = metastore_pg_open(target, "r1", &e);
    struct metastore *b = metastore_pg_open(target, "r1", &e);
    assert_non_null(a);
    assert_non_null(b);
    bool held = false;
    assert_int_equal(a->ops->gc_fence(a, false, true, false, &held, &e), 0);
    assert_true(held);
    assert_int_equal(b->ops->gc_fence(b, true, true, true, &held, &e), 0);
    assert_false(held); /* a commit is in progress on the other node */
    assert_int_equal(a->ops->gc_fence(a, false, false, false, &held, &e), 0);
    assert_int_equal(b->ops->gc_fence(b, true, true, true, &held, &e), 0);
    assert_true(held);
    assert_int_equal(b->ops->gc_fence(b, true, false, false, &held, &e), 0);
    a->ops->close(a);
    b->ops->close(b);
}

static int64_t count_of(struct metastore *ms, const char *sql)
{
    struct err e = {0};
    struct sq_conn *c = sq_conn_of(ms, &e);
    struct sql_stmt *s = NULL;
    assert_int_equal(sq_run(c, sql, &s, &e, ""), SQL_ROW);
    int64_t n = sql_col_int64(s, 0);
    sql_finalize(s);
    return n;
}

static void link_and_put(struct metastore *ms, const char *repo, const char *layer,
                         const char *marker)
{
    struct err e = {0};
    struct meta_ref ref = {0};
    digest_of_buffer(DIGEST_SHA256, layer, strlen(layer), &ref.digest);
    ref.size = (int64_t)strlen(layer);
    assert_int_equal(ms->ops->blob_link(ms, repo, &ref.digest, ref.size, &e), 0);
    char body[128];
    size_t len = (size_t)snprintf(body, sizeof(body), "{\"schemaVersion\":2,\"m\":\"%s\"}", marker);
    struct meta_manifest m = {.media_type = "application/vnd.oci.image.manifest.v1+json",
                              .body = body, .body_len = len};
    digest_of_buffer(DIGEST_SHA256, body, len, &m.digest);
    assert_int_equal(ms->ops->manifest_put(ms, repo, &m, &ref, 1, NULL, "v1", &e), 0);
}

/* Residency on PostgreSQL: holdings, and the removal of a repository (rows, records, event
 * contents, the blob rows nothing else needs), as on SQLite (test_residency.c). */
static void test_residency_purge(void **state)
{
    (void)state;
    struct err e = {0};
    struct metastore *ms = metastore_pg_open(target, "r3", &e);
    assert_non_null(ms);
    link_and_put(ms, "eu/app", "eu-layer", "EU");
    link_and_put(ms, "other/app", "other-layer", "OTHER");
    assert_int_equal(ms->ops->object_put(ms, "image_version", "eu/app:1.0.0", "{}", &e), 0);
    struct meta_holding_list h;
    assert_int_equal(ms->ops->holdings(ms, &h, &e), 0);
    assert_int_equal(h.n, 2);
    assert_string_equal(h.items[0].repo, "eu/app");
    assert_int_equal(h.items[0].n_manifests, 1);
    assert_int_equal(h.items[0].n_blobs, 1);
    meta_holding_list_fini(&h);
    struct meta_name_list orphans;
    int64_t n_manifests = 0;
    assert_int_equal(ms->ops->repo_purge(ms, "eu/app", &orphans, &n_manifests, &e), 0);
    assert_int_equal(n_manifests, 1);
    assert_int_equal(orphans.n, 1);
    meta_name_list_fini(&orphans);
    assert_int_equal(count_of(ms, "SELECT count(*) FROM repos WHERE name = 'eu/app'"), 0);
    assert_int_equal(count_of(ms, "SELECT count(*) FROM manifests"), 1);
    assert_int_equal(count_of(ms, "SELECT count(*) FROM blobs"), 1);
    assert_int_equal(count_of(ms, "SELECT count(*) FROM events WHERE repo = 'eu/app'"), 0);
    assert_int_equal(count_of(ms, "SELECT count(*) FROM objects WHERE kind = 'image_version'"), 0);
    assert_int_equal(count_of(ms, "SELECT count(*) FROM events WHERE kind = 'redacted'"
                                  " AND payload IS NULL AND name IS NULL"),
                     count_of(ms, "SELECT count(*) FROM events WHERE kind = 'redacted'"));
    assert_true(count_of(ms, "SELECT count(*) FROM events WHERE kind = 'redacted'") >= 3);
    ms->ops->close(ms);
}

static void listed(struct metastore *ms, const struct meta_audit_query *q, char *out, size_t len)
{
    struct meta_audit *list = NULL;
    size_t n = 0;
    struct err e = {0};
    assert_int_equal(ms->ops->audit_list(ms, q, &list, &n, &e), 0);
    size_t k = 0;
    out[0] = '\0';
    for (size_t i = 0; i < n; i++)
        k += (size_t)snprintf(out + k, len - k, "%s%s@%s", i ? "," : "", list[i].actor,
                              list[i].region);
    meta_audit_free(list, n);
}

/* The audit by region and time on PostgreSQL, and a schema-2 audit log upgraded: a local
 * entry is this region's, a replicated one its origin's. */
static void test_audit_region_and_upgrade(void **state)
{
    (void)state;
    struct err e = {0};
    struct metastore *ms = metastore_pg_open(target, "r1", &e);
    assert_non_null(ms);
    /* times as the clock gives them: past 32 bits */
    const int64_t t0 = 1796309511000;
    struct meta_audit a = {.time_ms = t0 + 1000, .actor = "alice", .action = "user.create",
                           .status = 201, .remote = "::1"};
    assert_int_equal(ms->ops->audit_append(ms, &a, 0, NULL, &e), 0);
    a.time_ms = t0 + 2000, a.actor = "bob", a.region = "r2";
    assert_int_equal(ms->ops->audit_append(ms, &a, 0, NULL, &e), 0);
    char got[256];
    struct meta_audit_query q = {.limit = 10, .region = "r2"};
    listed(ms, &q, got, sizeof(got));
    assert_string_equal(got, "bob@r2");
    q = (struct meta_audit_query){.limit = 10, .since_ms = t0 + 500, .until_ms = t0 + 1500};
    listed(ms, &q, got, sizeof(got));
    assert_string_equal(got, "alice@r1");
    /* by repository: the target is it, or names it before "@" or ":" */
    a.time_ms = t0 + 2500, a.actor = "dave", a.region = NULL, a.target = "eu/app@sha256:00";
    assert_int_equal(ms->ops->audit_append(ms, &a, 0, NULL, &e), 0);
    a.actor = "erin", a.target = "eu/app2";
    assert_int_equal(ms->ops->audit_append(ms, &a, 0, NULL, &e), 0);
    a.actor = "fay", a.target = "eu/app";
    assert_int_equal(ms->ops->audit_append(ms, &a, 0, NULL, &e), 0);
    q = (struct meta_audit_query){.limit = 10, .repository = "eu/app"};
    listed(ms, &q, got, sizeof(got));
    assert_string_equal(got, "fay@r1,dave@r1");
    q.repository = "eu/ap";
    listed(ms, &q, got, sizeof(got));
    assert_string_equal(got, "");
    /* back to schema 2, with entries as version 2 wrote them */
    struct sq_conn *c = sq_conn_of(ms, &e);
    assert_int_equal(sq_script(c, PG_SQL_SCHEMA_BACK_TO_V2, "back to v2", &e), 0);
    assert_int_equal(sq_script(c, "INSERT INTO audit_log(time_ms, actor, action, target, status,"
                                  " remote, detail) VALUES (3000, 'peer', 'role.replicated',"
                                  " 'x', 200, 'r3', 'origin=r3 put'), (4000, 'carol',"
                                  " 'user.create', 'users', 201, '::1', NULL)",
                               "version 2 rows", &e),
                     0);
    ms->ops->close(ms);
    ms = metastore_pg_open(target, "r1", &e);
    assert_non_null(ms);
    q = (struct meta_audit_query){.limit = 10};
    listed(ms, &q, got, sizeof(got));
    assert_string_equal(got, "carol@r1,peer@r3,fay@r1,erin@r1,dave@r1,bob@r1,alice@r1");
    q.region = "r3";
    listed(ms, &q, got, sizeof(got));
    assert_string_equal(got, "peer@r3");
    ms->ops->close(ms);
}

/* One integer from a query. */
static int64_t pg_int(struct sq_conn *c, const char *sql)
{
    struct err e = {0};
    struct sql_stmt *s = NULL;
    assert_int_equal(sq_run(c, sql, &s, &e, ""), SQL_ROW);
    int64_t v = sql_col_int64(s, 0);
    sql_finalize(s);
    return v;
}

/* A push keeps no status row of its own region on PostgreSQL either: the status list and
 * the state records derive its Completed from the manifest; a row of this region written
 * before the manifest is not shown, one written after it is. */
static void test_own_status_derived_from_the_manifest(void **state)
{
    (void)state;
    struct err e = {0};
    struct metastore *ms = metastore_pg_open(target, "r1", &e);
    assert_non_null(ms);
    char body[] = "{\"schemaVersion\":2,\"status\":\"derived\"}";
    struct meta_manifest m = {.media_type = "application/vnd.oci.image.manifest.v1+json",
                              .body = body, .body_len = sizeof(body) - 1};
    digest_of_buffer(DIGEST_SHA256, body, m.body_len, &m.digest);
    struct meta_status stale = {.region = "r1", .state = "InProgress", .updated_ms = 1,
                                .details = ""};
    assert_int_equal(ms->ops->status_set(ms, "lib/derived", &m.digest, &stale, false, &e), 0);
    assert_int_equal(ms->ops->manifest_put(ms, "lib/derived", &m, NULL, 0, NULL, "v1", &e), 0);
    struct sq_conn *c = sq_conn_of(ms, &e);
    assert_int_equal(pg_int(c, "SELECT count(*) FROM repl_status WHERE repo = 'lib/derived'"
                               " AND state = 'Completed'"),
                     0);
    struct meta_status *st = NULL;
    size_t n = 0;
    assert_int_equal(ms->ops->status_list(ms, "lib/derived", &m.digest, &st, &n, &e), 0);
    assert_int_equal(n, 1);
    assert_string_equal(st[0].region, "r1");
    assert_string_equal(st[0].state, "Completed");
    assert_true(st[0].updated_ms > 1);
    meta_status_free(st, n);
    struct meta_event *recs = NULL;
    assert_int_equal(ms->ops->repo_statuses(ms, "lib/derived", &recs, &n, &e), 0);
    assert_int_equal(n, 1);
    assert_string_equal(recs[0].digest, m.digest.str);
    assert_non_null(strstr(recs[0].payload, "\"Completed\""));
    meta_event_fini(&recs[0]);
    free(recs);
    struct meta_status two = {.region = "r1", .state = "Completed", .updated_ms = util_now_ms(),
                              .details = "", .has_copies = true, .copies = 2};
    assert_int_equal(ms->ops->status_set(ms, "lib/derived", &m.digest, &two, true, &e), 0);
    assert_int_equal(ms->ops->status_list(ms, "lib/derived", &m.digest, &st, &n, &e), 0);
    assert_int_equal(n, 1);
    assert_true(st[0].has_copies);
    assert_int_equal(st[0].copies, 2);
    meta_status_free(st, n);
    ms->ops->close(ms);
}

/* A database of schema version 9 (status rows without their report's clock) opens with
 * this build: its rows stay, at clock 0, and a delete of their manifest still drops them. */
static void test_v9_status_rows_get_a_clock(void **state)
{
    (void)state;
    struct err e = {0};
    struct metastore *ms = metastore_pg_open(target, "r1", &e);
    assert_non_null(ms);
    char body[] = "{\"schemaVersion\":2,\"status\":\"clock\"}";
    struct meta_manifest m = {.media_type = "application/vnd.oci.image.manifest.v1+json",
                              .body = body, .body_len = sizeof(body) - 1};
    digest_of_buffer(DIGEST_SHA256, body, m.body_len, &m.digest);
    assert_int_equal(ms->ops->manifest_put(ms, "lib/clock", &m, NULL, 0, NULL, "v1", &e), 0);
    struct meta_status east = {.region = "east", .state = "Completed",
                               .updated_ms = util_now_ms(), .details = ""};
    assert_int_equal(ms->ops->status_set(ms, "lib/clock", &m.digest, &east, false, &e), 0);
    /* A push of an earlier release also wrote its own region's row (derived since). */
    struct meta_status own = {.region = "r1", .state = "Completed",
                              .updated_ms = util_now_ms(), .details = ""};
    assert_int_equal(ms->ops->status_set(ms, "lib/clock", &m.digest, &own, false, &e), 0);
    struct sq_conn *c = sq_conn_of(ms, &e);
    assert_int_equal(pg_int(c, "SELECT count(*) FROM repl_status WHERE repo = 'lib/clock'"
                               " AND hlc > 0"),
                     2);
    assert_int_equal(sq_script(c, PG_SQL_SCHEMA_BACK_TO_V9, "v10 back", &e), 0);
    ms->ops->close(ms);

    ms = metastore_pg_open(target, "r1", &e);
    assert_non_null(ms);
    c = sq_conn_of(ms, &e);
    assert_int_equal(pg_int(c, "SELECT max(version) FROM meridian_schema"), 12);
    assert_int_equal(pg_int(c, "SELECT count(*) FROM repl_status WHERE repo = 'lib/clock'"
                               " AND hlc = 0"),
                     2);
    struct meta_status *st = NULL;
    size_t n = 0;
    assert_int_equal(ms->ops->status_list(ms, "lib/clock", &m.digest, &st, &n, &e), 0);
    assert_int_equal(n, 2);
    meta_status_free(st, n);
    assert_int_equal(ms->ops->manifest_delete(ms, "lib/clock", &m.digest, &e), 0);
    assert_int_equal(ms->ops->status_list(ms, "lib/clock", &m.digest, &st, &n, &e), 0);
    assert_int_equal(n, 0);
    meta_status_free(st, n);
    ms->ops->close(ms);
}

/* Releases before schema 10 kept every region's status row through a manifest's delete:
 * a database of version 10 or before may hold rows (clock 0) of manifests it has no record
 * of. Step 11 drops them and keeps the rows of recorded manifests and those written since
 * 10. */
static void test_v10_stale_status_rows_dropped(void **state)
{
    (void)state;
    struct err e = {0};
    struct metastore *ms = metastore_pg_open(target, "r1", &e);
    assert_non_null(ms);
    char body[] = "{\"schemaVersion\":2,\"status\":\"stale\"}";
    struct meta_manifest m = {.media_type = "application/vnd.oci.image.manifest.v1+json",
                              .body = body, .body_len = sizeof(body) - 1};
    digest_of_buffer(DIGEST_SHA256, body, m.body_len, &m.digest);
    assert_int_equal(ms->ops->manifest_put(ms, "lib/stale", &m, NULL, 0, NULL, "v1", &e), 0);
    struct meta_status east = {.region = "east", .state = "Completed",
                               .updated_ms = util_now_ms(), .details = ""};
    assert_int_equal(ms->ops->status_set(ms, "lib/stale", &m.digest, &east, false, &e), 0);
    struct sq_conn *c = sq_conn_of(ms, &e);
    assert_int_equal(
        sq_script(c,
                  "UPDATE repl_status SET hlc = 0 WHERE repo = 'lib/stale';"
                  "INSERT INTO repl_status(repo, digest, region, state, bytes_done, bytes_total,"
                  " updated_ms, details, hlc) VALUES"
                  " ('lib/stale', 'sha256:gone', 'east', 'Completed', 1, 1, 1, '', 0),"
                  " ('lib/stale', 'sha256:gone', 'west', 'Completed', 1, 1, 1, '', 0),"
                  " ('lib/stale', 'sha256:since', 'east', 'Completed', 1, 1, 1, '', 7);"
                  "UPDATE meridian_schema SET version = 10;",
                  "back to v10 with stale rows", &e),
        0);
    ms->ops->close(ms);

    ms = metastore_pg_open(target, "r1", &e);
    assert_non_null(ms);
    c = sq_conn_of(ms, &e);
    assert_int_equal(pg_int(c, "SELECT max(version) FROM meridian_schema"), 12);
    assert_int_equal(pg_int(c, "SELECT count(*) FROM repl_status WHERE repo = 'lib/stale'"
                               " AND digest = 'sha256:gone'"),
                     0);
    assert_int_equal(pg_int(c, "SELECT count(*) FROM repl_status WHERE repo = 'lib/stale'"
                               " AND digest = 'sha256:since'"),
                     1);
    struct meta_status *st = NULL;
    size_t n = 0;
    assert_int_equal(ms->ops->status_list(ms, "lib/stale", &m.digest, &st, &n, &e), 0);
    assert_int_equal(n, 2);
    meta_status_free(st, n);
    ms->ops->close(ms);
}

/* A database of schema version 8 (references keyed by the manifest's digest) opens with
 * this build: the references name their manifest by seq, manifest_refs (a view) reads the
 * same rows, and deleting the manifest drops them and queues their blobs. */
/* A region restored from an older copy: restored_contract.h, on PostgreSQL. */
static void test_region_restored_from_an_older_copy(void **state)
{
    (void)state;
    struct err e = {0};
    struct metastore *ms = metastore_pg_open(target, "r1", &e);
    assert_non_null(ms);
    restored_contract(ms, "r1");
    ms->ops->close(ms);
}

static void test_v8_refs_become_seq(void **state)
{
    (void)state;
    struct err e = {0};
    struct metastore *ms = metastore_pg_open(target, "r1", &e);
    assert_non_null(ms);
    const char *blobs[2] = {"config bytes", "layer bytes"};
    struct meta_ref refs[2];
    memset(refs, 0, sizeof(refs));
    for (int i = 0; i < 2; i++) {
        digest_of_buffer(DIGEST_SHA256, blobs[i], strlen(blobs[i]), &refs[i].digest);
        refs[i].size = (int64_t)strlen(blobs[i]);
        assert_int_equal(ms->ops->blob_link(ms, "lib/app", &refs[i].digest, refs[i].size, &e),
                         0);
    }
    char body[] = "{\"schemaVersion\":2,\"refs\":2}";
    struct meta_manifest m = {.media_type = "application/vnd.oci.image.manifest.v1+json",
                              .body = body, .body_len = sizeof(body) - 1};
    digest_of_buffer(DIGEST_SHA256, body, m.body_len, &m.digest);
    assert_int_equal(ms->ops->manifest_put(ms, "lib/app", &m, refs, 2, NULL, "v1", &e), 0);
    struct sq_conn *c = sq_conn_of(ms, &e);
    assert_int_equal(sq_script(c, PG_SQL_SCHEMA_BACK_TO_V8 "DELETE FROM gc_queue;", "v9 back",
                               &e),
                     0);
    assert_int_equal(pg_int(c, "SELECT count(*) FROM pg_class"
                               " WHERE oid = to_regclass('manifest_refs')"
                               " AND relkind = 'r'"),
                     1);
    ms->ops->close(ms);

    ms = metastore_pg_open(target, "r1", &e);
    assert_non_null(ms);
    c = sq_conn_of(ms, &e);
    assert_int_equal(pg_int(c, "SELECT max(version) FROM meridian_schema"), 12);
    assert_int_equal(pg_int(c, "SELECT count(*) FROM pg_class"
                               " WHERE oid = to_regclass('manifest_refs')"
                               " AND relkind = 'v'"),
                     1);
    assert_int_equal(pg_int(c, "SELECT count(*) FROM manifest_ref_seqs"), 2);
    assert_int_equal(pg_int(c, "SELECT count(*) FROM manifest_refs r JOIN manifests m"
                               " ON m.digest = r.manifest_digest AND m.repo_id = r.repo_id"),
                     2);
    bool is_orphan = true;
    assert_int_equal(ms->ops->blob_unlink(ms, "lib/app", &refs[1].digest, &is_orphan, &e), -1);
    assert_int_equal(e.code, ERR_IN_USE);
    assert_int_equal(ms->ops->manifest_delete(ms, "lib/app", &m.digest, &e), 0);
    c = sq_conn_of(ms, &e);
    assert_int_equal(pg_int(c, "SELECT count(*) FROM manifest_ref_seqs"), 0);
    assert_int_equal(pg_int(c, "SELECT count(*) FROM gc_queue"), 2);
    assert_int_equal(ms->ops->blob_unlink(ms, "lib/app", &refs[1].digest, &is_orphan, &e), 0);
    /* A put after the upgrade writes its references by seq. */
    assert_int_equal(ms->ops->blob_link(ms, "lib/app", &refs[1].digest, refs[1].size, &e), 0);
    assert_int_equal(ms->ops->manifest_put(ms, "lib/app", &m, refs, 2, NULL, "v1", &e), 0);
    c = sq_conn_of(ms, &e);
    assert_int_equal(pg_int(c, "SELECT count(*) FROM manifest_refs"), 2);
    ms->ops->close(ms);
}

/* Steps 3 to 7 were each written as "version 3" on a branch of their own (compaction,
 * leases, audit region, untagged manifests): a database a commit of one of those branches
 * wrote says 3 and holds that step only. It opens with every step there (before the fix:
 * status rows without copies, and every status write failing). */
static void open_branch_v3(const char *back)
{
    struct err e = {0};
    struct metastore *ms = metastore_pg_open(target, "r1", &e);
    assert_non_null(ms);
    char body[] = "{\"schemaVersion\":2}";
    struct digest d;
    push_body(ms, body, sizeof(body) - 1, "v1", &d);
    struct sq_conn *c = sq_conn_of(ms, &e);
    assert_int_equal(sq_script(c, back, "back to a branch's version 3", &e), 0);
    ms->ops->close(ms);

    ms = metastore_pg_open(target, "r1", &e);
    assert_non_null(ms);
    c = sq_conn_of(ms, &e);
    assert_int_equal(pg_int(c, "SELECT max(version) FROM meridian_schema"), 12);
    assert_int_equal(pg_int(c, "SELECT count(*) FROM information_schema.columns WHERE"
                               " (table_name, column_name) IN (('repl_status', 'copies'),"
                               " ('audit_log', 'region'), ('manifest_tombs', 'is_gc'))"
                               " AND table_schema = current_schema()"),
                     3);
    assert_int_equal(pg_int(c, "SELECT count(*) FROM pg_class WHERE oid IN"
                               " (to_regclass('node_leases'), to_regclass('peer_acks'),"
                               " to_regclass('log_horizon'), to_regclass('untagged'))"),
                     4);
    struct meta_status two = {.region = "r1", .state = "Completed", .updated_ms = util_now_ms(),
                              .details = "", .has_copies = true, .copies = 2};
    assert_int_equal(ms->ops->status_set(ms, "lib/app", &d, &two, true, &e), 0);
    ms->ops->close(ms);
}

#define PG_SQL_BACK_TO_V3_BUT(...)                                                              \
    PG_SQL_SCHEMA_BACK_TO_V7 __VA_ARGS__ "ALTER TABLE repl_status DROP COLUMN copies;"         \
                                         "UPDATE meridian_schema SET version = 3;"

static void test_branch_v3_compaction(void **state)
{
    (void)state;
    open_branch_v3(PG_SQL_BACK_TO_V3_BUT(PG_SQL_BACK_UNTAGGED SQL_BACK_AUDIT_REGION
                                         "DROP TABLE node_leases;"));
}

static void test_branch_v3_leases(void **state)
{
    (void)state;
    open_branch_v3(
        PG_SQL_BACK_TO_V3_BUT(PG_SQL_BACK_UNTAGGED SQL_BACK_COMPACTION_AND_AUDIT_REGION));
}

static void test_branch_v3_audit_region(void **state)
{
    (void)state;
    open_branch_v3(PG_SQL_BACK_TO_V3_BUT(PG_SQL_BACK_UNTAGGED SQL_BACK_COMPACTION
                                         "DROP TABLE node_leases;"));
}

static void test_branch_v3_untagged(void **state)
{
    (void)state;
    open_branch_v3(PG_SQL_BACK_TO_V3_BUT(SQL_BACK_COMPACTION_AND_AUDIT_REGION
                                         "DROP TABLE node_leases;"));
}

int main(void)
{
    const char *uri = getenv("MERIDIAN_TEST_PG");
    if (uri == NULL || uri[0] == '\0') {
        printf("[  SKIPPED ] PostgreSQL metastore: MERIDIAN_TEST_PG is not set\n");
        return 0;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_nodes_start_at_once, setup),
        cmocka_unit_test_setup(test_every_statement_prepares, setup),
        cmocka_unit_test_setup(test_push_reads_back, setup),
        cmocka_unit_test_setup(test_origin_clocks, setup),
        cmocka_unit_test_setup(test_v2_database_gains_status_copies, setup),
        cmocka_unit_test_setup(test_branch_v3_compaction, setup),
        cmocka_unit_test_setup(test_branch_v3_leases, setup),
        cmocka_unit_test_setup(test_branch_v3_audit_region, setup),
        cmocka_unit_test_setup(test_branch_v3_untagged, setup),
        cmocka_unit_test_setup(test_nodes_share_one_clock, setup),
        cmocka_unit_test_setup(test_lease_has_one_holder, setup),
        cmocka_unit_test_setup(test_claimed_delivery_goes_to_one_node, setup),
        cmocka_unit_test_setup(test_one_send_per_webhook_across_nodes, setup),
        cmocka_unit_test_setup(test_frozen_node_holds_a_webhook_back_for_a_claim_only, setup),
        cmocka_unit_test_setup(test_prune_of_a_gone_webhook_spares_a_recreated_one, setup),
        cmocka_unit_test_setup(test_upload_cap_holds_across_nodes, setup),
        cmocka_unit_test_setup(test_gc_fence_spans_nodes, setup),
        cmocka_unit_test_setup(test_residency_purge, setup),
        cmocka_unit_test_setup(test_audit_region_and_upgrade, setup),
        cmocka_unit_test_setup(test_v9_status_rows_get_a_clock, setup),
        cmocka_unit_test_setup(test_own_status_derived_from_the_manifest, setup),
        cmocka_unit_test_setup(test_v10_stale_status_rows_dropped, setup),
        cmocka_unit_test_setup(test_v8_refs_become_seq, setup),
        cmocka_unit_test_setup(test_region_restored_from_an_older_copy, setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
