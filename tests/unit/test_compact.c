/* Unit tests for event-log compaction: the rule (compact_stable: the minimum of what every
 * live peer acknowledged, never an origin's newest event, peers silent past the horizon
 * left out; compact_is_below), and the store's side of it (meta_compact.c, schema step
 * v6_compact): batches drop the lowest events of an origin and raise its horizon; expired
 * tombstones and deleted tag registers go only once their clock is below the cutoff AND at
 * or below the horizon of their origin, and a peer's state does not bring them back;
 * adopting a snapshot raises the version vector and the horizon and resets the peer's
 * cursor; the clock never restarts below the horizon; a deleted record is forgotten
 * without an event; a version-2 database migrates. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "compact.h"
#include "config.h"
#include "digest.h"
#include "metastore.h"
#include "registry_ctx.h"
#include "schema_back_to_v2.h"
#include "util.h"

static char tmpdir[] = "/tmp/meridian-compact-XXXXXX";
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

static struct meta_vv vv_of(size_t n, const char *const *origins, const int64_t *seqs)
{
    struct meta_vv vv = {0};
    vv.origins = xcalloc(n + 1, sizeof(char *));
    vv.seqs = xcalloc(n + 1, sizeof(int64_t));
    for (size_t i = 0; i < n; i++) {
        vv.origins[i] = xstrdup(origins[i]);
        vv.seqs[i] = seqs[i];
    }
    vv.n = n;
    return vv;
}

static void test_stable_is_the_minimum_of_live_acknowledgements(void **state)
{
    (void)state;
    const char *o[] = {"a", "b", "c"};
    struct meta_vv mine = vv_of(3, o, (int64_t[]){10, 5, 4});
    struct meta_vv p1 = vv_of(2, o, (int64_t[]){7, 5}); /* knows nothing of c */
    struct meta_vv p2 = vv_of(3, o, (int64_t[]){9, 3, 4});
    struct meta_vv gone = vv_of(3, o, (int64_t[]){1, 1, 1}); /* silent past the horizon */
    int64_t now = 1000000;
    struct compact_peer peers[] = {
        {"p1", &p1, now - 10}, {"p2", &p2, now - 10}, {"gone", &gone, now - 5000}};
    struct meta_vv st;
    compact_stable(&mine, peers, 3, now, 1000, &st);
    assert_int_equal(st.n, 3);
    assert_int_equal(meta_vv_get(&st, "a"), 7);
    assert_int_equal(meta_vv_get(&st, "b"), 3);
    assert_int_equal(meta_vv_get(&st, "c"), 0);
    meta_vv_fini(&st);
    /* Every peer has everything: the newest event of each origin still stays. */
    struct compact_peer all[] = {{"p", &mine, now}};
    compact_stable(&mine, all, 1, now, 1000, &st);
    assert_int_equal(meta_vv_get(&st, "a"), 9);
    assert_int_equal(meta_vv_get(&st, "b"), 4);
    meta_vv_fini(&st);
    /* A live peer that never pulled holds everything back. */
    struct compact_peer fresh[] = {{"p", &mine, now}, {"new", NULL, now}};
    compact_stable(&mine, fresh, 2, now, 1000, &st);
    assert_int_equal(meta_vv_get(&st, "a"), 0);
    meta_vv_fini(&st);
    /* No live peer: only this region's own log counts. */
    compact_stable(&mine, peers + 2, 1, now, 1000, &st);
    assert_int_equal(meta_vv_get(&st, "a"), 9);
    meta_vv_fini(&st);
    meta_vv_fini(&mine);
    meta_vv_fini(&p1);
    meta_vv_fini(&p2);
    meta_vv_fini(&gone);
}

static void test_below_the_horizon(void **state)
{
    (void)state;
    const char *o[] = {"a", "b"};
    struct meta_horizon h[] = {{"a", 5, 0}, {"b", 2, 0}};
    struct meta_vv ok = vv_of(2, o, (int64_t[]){5, 9});
    struct meta_vv low = vv_of(2, o, (int64_t[]){9, 1});
    struct meta_vv empty = {0};
    const char *which = NULL;
    assert_false(compact_is_below(&ok, h, 2, &which));
    assert_true(compact_is_below(&low, h, 2, &which));
    assert_string_equal(which, "b");
    assert_true(compact_is_below(&empty, h, 2, NULL));
    assert_false(compact_is_below(&empty, h, 0, NULL));
    meta_vv_fini(&ok);
    meta_vv_fini(&low);
}

/* The tombstone cutoff: older than the retention, none while a peer is silent past the
 * horizon, and never at or above the newest applied event of an origin a live peer holds
 * more of (a region back from a partition acknowledges before it is pulled from). */
static void test_tombstone_cutoff_waits_for_what_live_peers_hold(void **state)
{
    (void)state;
    const char *o[] = {"a", "b"};
    int64_t now = 1000000, retention = 100000, horizon = 50000;
    int64_t base = (now - retention) << 16;
    struct meta_horizon applied[] = {{"a", 9, base + 5}, {"b", 4, 1234}};
    struct meta_vv same = vv_of(2, o, (int64_t[]){9, 4});
    struct meta_vv ahead_b = vv_of(2, o, (int64_t[]){3, 6}); /* holds b's 5 and 6 */
    struct meta_vv ahead_a = vv_of(1, o, (int64_t[]){10});
    struct meta_vv ahead_c = vv_of(1, (const char *[]){"c"}, (int64_t[]){1});
    struct compact_hold held;
    struct compact_peer synced[] = {{"p", &same, now - 10}};
    assert_int_equal(compact_tombs_cutoff(applied, 2, synced, 1, now, horizon, retention, &held),
                     base);
    assert_null(held.peer);
    /* No peer at all, or one that never pulled: the retention alone. */
    assert_int_equal(compact_tombs_cutoff(applied, 2, NULL, 0, now, horizon, retention, &held),
                     base);
    struct compact_peer unseen[] = {{"p", NULL, now}};
    assert_int_equal(compact_tombs_cutoff(applied, 2, unseen, 1, now, horizon, retention, &held),
                     base);
    /* Retention off, or not yet reached since the epoch: nothing expires. */
    assert_int_equal(compact_tombs_cutoff(applied, 2, synced, 1, now, horizon, 0, &held), 0);
    assert_int_equal(compact_tombs_cutoff(applied, 2, synced, 1, 50, horizon, retention, &held), 0);
    /* A live peer holds b's events 5 and 6, not applied here: b's newest applied clock. */
    struct compact_peer lag_b[] = {{"p", &same, now - 10}, {"q", &ahead_b, now - 20}};
    assert_int_equal(compact_tombs_cutoff(applied, 2, lag_b, 2, now, horizon, retention, &held),
                     1234);
    assert_string_equal(held.peer, "q");
    assert_string_equal(held.origin, "b");
    assert_false(held.is_silent);
    /* ... above the retention's cutoff, that origin's clock does not lower it. */
    struct compact_peer lag_a[] = {{"q", &ahead_a, now - 20}};
    assert_int_equal(compact_tombs_cutoff(applied, 2, lag_a, 1, now, horizon, retention, &held),
                     base);
    /* An origin never applied here: nothing expires until its events are. */
    struct compact_peer lag_c[] = {{"q", &ahead_c, now - 20}};
    assert_int_equal(compact_tombs_cutoff(applied, 2, lag_c, 1, now, horizon, retention, &held), 0);
    /* The same peer silent past the horizon: nothing expires; no horizon: it counts. */
    struct compact_peer silent[] = {{"p", &same, now - horizon - 1}};
    assert_int_equal(compact_tombs_cutoff(applied, 2, silent, 1, now, horizon, retention, &held),
                     0);
    assert_string_equal(held.peer, "p");
    assert_true(held.is_silent);
    assert_int_equal(compact_tombs_cutoff(applied, 2, silent, 1, now, 0, retention, &held), base);
    meta_vv_fini(&same);
    meta_vv_fini(&ahead_b);
    meta_vv_fini(&ahead_a);
    meta_vv_fini(&ahead_c);
}

/* Pushes image `tag` (no blobs) into repo; its digest in out. */
static void push(struct metastore *ms, const char *repo, const char *tag, struct digest *out)
{
    char body[128];
    size_t len = (size_t)snprintf(body, sizeof(body), "{\"schemaVersion\":2,\"t\":\"%s\"}", tag);
    struct meta_manifest m = {
        .media_type = "application/vnd.oci.image.manifest.v1+json", .body = body, .body_len = len};
    digest_of_buffer(DIGEST_SHA256, body, len, &m.digest);
    struct err e = {0};
    assert_int_equal(ms->ops->manifest_put(ms, repo, &m, NULL, 0, NULL, tag, &e), 0);
    if (out)
        *out = m.digest;
}

static int64_t n_events(struct metastore *ms, int64_t *n_tombs)
{
    int64_t n, t;
    struct err e = {0};
    assert_int_equal(ms->ops->log_stats(ms, &n, &t, &e), 0);
    if (n_tombs)
        *n_tombs = t;
    return n;
}

static int64_t horizon_of(struct metastore *ms, const char *origin, int64_t *hlc)
{
    struct meta_horizon *h;
    size_t n;
    struct err e = {0};
    assert_int_equal(ms->ops->log_horizon(ms, &h, &n, &e), 0);
    const struct meta_horizon *oh = meta_horizon_find(h, n, origin);
    int64_t seq = oh ? oh->seq : 0;
    if (hlc)
        *hlc = oh ? oh->hlc : 0;
    meta_horizon_list_fini(h, n);
    return seq;
}

static void test_compact_drops_the_lowest_events_in_batches(void **state)
{
    (void)state;
    struct metastore *ms = open_store();
    struct err e = {0};
    for (int i = 0; i < 5; i++) {
        char tag[16];
        snprintf(tag, sizeof(tag), "v%d", i);
        push(ms, "r", tag, NULL); /* manifest_put, tag_set and this region's status */
    }
    assert_int_equal(n_events(ms, NULL), 15);
    size_t n = 0;
    assert_int_equal(ms->ops->log_compact(ms, "local", 6, 4, &n, &e), 0);
    assert_int_equal(n, 4); /* one batch, at most max */
    assert_int_equal(horizon_of(ms, "local", NULL), 4);
    assert_int_equal(ms->ops->log_compact(ms, "local", 6, 4, &n, &e), 0);
    assert_int_equal(n, 2);
    assert_int_equal(ms->ops->log_compact(ms, "local", 6, 4, &n, &e), 0);
    assert_int_equal(n, 0);
    int64_t hlc;
    assert_int_equal(horizon_of(ms, "local", &hlc), 6);
    assert_true(hlc > 0);
    assert_int_equal(n_events(ms, NULL), 9);
    /* What is left is events 7..15 of the origin: a reader from the start gets those. */
    struct meta_event *evs;
    size_t n_ev;
    int64_t last;
    assert_int_equal(ms->ops->events_read(ms, 0, NULL, 100, &evs, &n_ev, &last, &e), 0);
    assert_int_equal(n_ev, 9);
    assert_int_equal(evs[0].origin_seq, 7);
    for (size_t i = 0; i < n_ev; i++)
        meta_event_fini(&evs[i]);
    free(evs);
    /* The clock restarts above what was compacted away. */
    ms->ops->close(ms);
    sqlite3 *db;
    assert_int_equal(sqlite3_open(last_path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "DELETE FROM events; UPDATE log_horizon SET hlc = 1 << 62",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(db);
    ms = metastore_sqlite_open(last_path, "local", &e);
    assert_non_null(ms);
    struct digest d;
    push(ms, "r", "after", &d);
    assert_int_equal(ms->ops->events_read(ms, 0, NULL, 100, &evs, &n_ev, &last, &e), 0);
    assert_true(n_ev >= 1);
    assert_true(evs[0].hlc > (1ull << 62));
    for (size_t i = 0; i < n_ev; i++)
        meta_event_fini(&evs[i]);
    free(evs);
    ms->ops->close(ms);
}

static void test_tombstones_expire_below_cutoff_and_horizon_only(void **state)
{
    (void)state;
    struct metastore *ms = open_store();
    struct err e = {0};
    struct digest d;
    push(ms, "r", "v1", &d);
    push(ms, "r", "v2", NULL);
    assert_int_equal(ms->ops->manifest_delete(ms, "r", &d, &e), 0); /* tomb + tag delete */
    push(ms, "r", "v3", NULL); /* so the delete's events are not the newest */
    int64_t tombs;
    n_events(ms, &tombs);
    assert_int_equal(tombs, 2);
    int64_t far = INT64_MAX;
    size_t n = 0;
    /* Not compacted yet: no live peer is known to have applied them. */
    assert_int_equal(ms->ops->tombs_expire(ms, far, 100, &n, &e), 0);
    assert_int_equal(n, 0);
    size_t dropped;
    assert_int_equal(ms->ops->log_compact(ms, "local", 100, 1000, &dropped, &e), 0);
    /* Compacted, but younger than the cutoff. */
    assert_int_equal(ms->ops->tombs_expire(ms, 1, 100, &n, &e), 0);
    assert_int_equal(n, 0);
    assert_int_equal(ms->ops->tombs_expire(ms, far, 100, &n, &e), 0);
    assert_int_equal(n, 2);
    n_events(ms, &tombs);
    assert_int_equal(tombs, 0);
    /* The live tags stay. */
    struct meta_name_list tags = {0};
    assert_int_equal(ms->ops->tag_list(ms, "r", NULL, -1, &tags, &e), 0);
    assert_int_equal(tags.n, 2);
    meta_name_list_fini(&tags);
    ms->ops->close(ms);
}

/* A peer that keeps tombstones longer (a build without compaction) serves them in its
 * state: merged after they expired here, they stay out, checked in the merge's own
 * transaction; one younger than the cutoff, or above the horizon, is merged. */
static void test_state_merge_does_not_bring_an_expired_tombstone_back(void **state)
{
    (void)state;
    struct metastore *ms = open_store();
    struct err e = {0};
    struct digest d;
    push(ms, "r", "v1", &d);
    push(ms, "r", "v2", NULL);
    assert_int_equal(ms->ops->manifest_delete(ms, "r", &d, &e), 0); /* tomb + tag delete */
    push(ms, "r", "v3", NULL);
    struct meta_event *peer = NULL; /* the peer's copy keeps both tombstones */
    size_t n_peer = 0;
    assert_int_equal(ms->ops->repo_state(ms, "r", &peer, &n_peer, &e), 0);
    size_t dropped, n = 0;
    assert_int_equal(ms->ops->log_compact(ms, "local", 100, 1000, &dropped, &e), 0);
    int64_t far = INT64_MAX, tombs;
    assert_int_equal(ms->ops->tombs_expire(ms, far, 100, &n, &e), 0);
    assert_int_equal(n, 2);
    for (size_t i = 0; i < n_peer; i++)
        assert_int_equal(ms->ops->state_merge(ms, &peer[i], far, &e), 0);
    n_events(ms, &tombs);
    assert_int_equal(tombs, 0);
    assert_int_equal(ms->ops->tombs_expire(ms, far, 100, &n, &e), 0);
    assert_int_equal(n, 0);
    /* Younger than the cutoff (or tombstones kept: 0): merged. */
    for (size_t i = 0; i < n_peer; i++)
        assert_int_equal(ms->ops->state_merge(ms, &peer[i], 1, &e), 0);
    n_events(ms, &tombs);
    assert_int_equal(tombs, 2);
    /* Above the horizon of their origin (never applied here): merged. */
    struct metastore *fresh = open_store();
    for (size_t i = 0; i < n_peer; i++)
        assert_int_equal(fresh->ops->state_merge(fresh, &peer[i], far, &e), 0);
    n_events(fresh, &tombs);
    assert_int_equal(tombs, 2);
    for (size_t i = 0; i < n_peer; i++)
        meta_event_fini(&peer[i]);
    free(peer);
    fresh->ops->close(fresh);
    ms->ops->close(ms);
}

/* The origin clocks: the newest applied event of each origin, kept through compaction
 * (an origin's newest event stays), and the horizon's clock after a snapshot. */
static void test_origin_clocks_are_the_newest_applied_events(void **state)
{
    (void)state;
    struct metastore *ms = open_store();
    struct err e = {0};
    push(ms, "r", "v1", NULL);
    push(ms, "r", "v2", NULL);
    struct meta_event *evs;
    size_t n_ev;
    int64_t last;
    assert_int_equal(ms->ops->events_read(ms, 0, NULL, 100, &evs, &n_ev, &last, &e), 0);
    assert_int_equal(n_ev, 6);
    int64_t newest = (int64_t)evs[n_ev - 1].hlc;
    for (size_t i = 0; i < n_ev; i++)
        meta_event_fini(&evs[i]);
    free(evs);
    struct meta_horizon *h;
    size_t n;
    assert_int_equal(ms->ops->origin_clocks(ms, &h, &n, &e), 0);
    assert_int_equal(n, 1);
    assert_string_equal(h[0].origin, "local");
    assert_int_equal(h[0].seq, 6);
    assert_int_equal(h[0].hlc, newest);
    meta_horizon_list_fini(h, n);
    size_t dropped;
    assert_int_equal(ms->ops->log_compact(ms, "local", 5, 100, &dropped, &e), 0);
    assert_int_equal(dropped, 5);
    struct meta_horizon snap[] = {{"other", 7, 123}};
    assert_int_equal(ms->ops->log_adopt(ms, "peer", snap, 1, &e), 0);
    assert_int_equal(ms->ops->origin_clocks(ms, &h, &n, &e), 0);
    assert_int_equal(n, 2);
    const struct meta_horizon *mine = meta_horizon_find(h, n, "local");
    const struct meta_horizon *other = meta_horizon_find(h, n, "other");
    assert_non_null(mine);
    assert_non_null(other);
    assert_int_equal(mine->seq, 6);
    assert_int_equal(mine->hlc, newest);
    assert_int_equal(other->seq, 7);
    assert_int_equal(other->hlc, 123);
    meta_horizon_list_fini(h, n);
    ms->ops->close(ms);
}

static void test_adopt_raises_vv_and_horizon_and_rereads_the_peer(void **state)
{
    (void)state;
    struct metastore *ms = open_store();
    struct err e = {0};
    push(ms, "r", "mine", NULL);
    assert_int_equal(ms->ops->cursor_set(ms, "peer", 42, &e), 0);
    struct meta_horizon h[] = {{"other", 7, 123}, {"local", 99, 5}};
    assert_int_equal(ms->ops->log_adopt(ms, "peer", h, 2, &e), 0);
    struct meta_vv vv;
    assert_int_equal(ms->ops->vv_get(ms, &vv, &e), 0);
    assert_int_equal(meta_vv_get(&vv, "other"), 7);
    /* The peer knows events of this region's own name past its log (restored from an
     * older copy, or new under a removed region's name): the numbering goes on above
     * them, or the peers would take new events for ones they have. */
    assert_int_equal(meta_vv_get(&vv, "local"), 99);
    meta_vv_fini(&vv);
    assert_int_equal(horizon_of(ms, "other", NULL), 7);
    assert_int_equal(horizon_of(ms, "local", NULL), 99);
    push(ms, "r", "after", NULL);
    assert_int_equal(ms->ops->vv_get(ms, &vv, &e), 0);
    assert_int_equal(meta_vv_get(&vv, "local"), 102);
    meta_vv_fini(&vv);
    /* The usual case: a peer's horizon below this log's own events changes nothing. */
    struct meta_horizon below[] = {{"local", 50, 5}};
    assert_int_equal(ms->ops->log_adopt(ms, "peer", below, 1, &e), 0);
    assert_int_equal(horizon_of(ms, "local", NULL), 99);
    int64_t cursor;
    assert_int_equal(ms->ops->cursor_get(ms, "peer", &cursor, &e), 0);
    assert_int_equal(cursor, 0);
    /* A lower horizon later never lowers either. */
    struct meta_horizon lower[] = {{"other", 3, 1}};
    assert_int_equal(ms->ops->log_adopt(ms, "peer", lower, 1, &e), 0);
    assert_int_equal(horizon_of(ms, "other", NULL), 7);
    ms->ops->close(ms);
}

/* Events of this region's own name that its log lacks (a restored copy, or a new region
 * under a removed one's name) are applied in order, so its numbering goes on above what
 * the peers have; one past a gap is skipped, never waited for. */
static void test_own_name_history_is_applied_in_order(void **state)
{
    (void)state;
    struct metastore *old = open_store();
    struct err e = {0};
    push(old, "r", "v1", NULL);
    push(old, "r", "v2", NULL);
    struct meta_event *evs;
    size_t n;
    int64_t last;
    assert_int_equal(old->ops->events_read(old, 0, NULL, 100, &evs, &n, &last, &e), 0);
    assert_int_equal(n, 6);
    struct metastore *fresh = open_store(); /* the same name, "local" */
    bool is_new, is_gap;
    assert_int_equal(fresh->ops->event_apply(fresh, &evs[2], &is_new, &is_gap, &e), 0);
    assert_false(is_new);
    assert_false(is_gap); /* skipped: the ones before it may never come */
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(fresh->ops->event_apply(fresh, &evs[i], &is_new, &is_gap, &e), 0);
        assert_true(is_new);
        assert_false(is_gap);
    }
    struct meta_vv vv;
    assert_int_equal(fresh->ops->vv_get(fresh, &vv, &e), 0);
    assert_int_equal(meta_vv_get(&vv, "local"), 6);
    meta_vv_fini(&vv);
    push(fresh, "r", "v3", NULL);
    assert_int_equal(fresh->ops->vv_get(fresh, &vv, &e), 0);
    assert_int_equal(meta_vv_get(&vv, "local"), 9);
    meta_vv_fini(&vv);
    /* Applied again (relayed back), they are seen. */
    assert_int_equal(fresh->ops->event_apply(fresh, &evs[5], &is_new, &is_gap, &e), 0);
    assert_false(is_new);
    for (size_t i = 0; i < n; i++)
        meta_event_fini(&evs[i]);
    free(evs);
    fresh->ops->close(fresh);
    old->ops->close(old);
}

static void test_forget_and_snapshot_records(void **state)
{
    (void)state;
    struct metastore *ms = open_store();
    struct err e = {0};
    struct digest d;
    push(ms, "r", "v1", &d);
    assert_int_equal(ms->ops->object_put(ms, "webhook", "w1", "{\"uri\":\"http://x\"}", &e), 0);
    struct meta_event *objs;
    size_t n;
    assert_int_equal(ms->ops->objects_state(ms, &objs, &n, &e), 0);
    bool has_w1 = false;
    for (size_t i = 0; i < n; i++) {
        has_w1 |= strcmp(objs[i].name, "w1") == 0 && strcmp(objs[i].kind, "object_put") == 0 &&
                  strstr(objs[i].payload, "\"kind\":\"webhook\"") != NULL;
        meta_event_fini(&objs[i]);
    }
    free(objs);
    assert_true(has_w1);
    struct meta_status st = {.region = "far",
                             .state = "Completed",
                             .bytes_done = 3,
                             .bytes_total = 3,
                             .updated_ms = 9,
                             .details = ""};
    assert_int_equal(ms->ops->status_set(ms, "r", &d, &st, false, &e), 0);
    assert_int_equal(ms->ops->repo_statuses(ms, "r", &objs, &n, &e), 0);
    assert_int_equal(n, 2); /* far's and this region's own */
    bool has_far = false;
    for (size_t i = 0; i < n; i++) {
        assert_string_equal(objs[i].kind, "status");
        has_far |= strcmp(objs[i].origin, "far") == 0 &&
                   strstr(objs[i].payload, "\"state\":\"Completed\"") != NULL;
        meta_event_fini(&objs[i]);
    }
    free(objs);
    assert_true(has_far);
    int64_t before = n_events(ms, NULL);
    struct meta_event rec = {.kind = "manifest_put", .repo = "r", .digest = (char *)d.str};
    assert_int_equal(ms->ops->state_forget(ms, &rec, &e), 0);
    struct meta_event tag = {.kind = "tag_set", .repo = "r", .name = "v1"};
    assert_int_equal(ms->ops->state_forget(ms, &tag, &e), 0);
    assert_int_equal(n_events(ms, NULL), before); /* no event: nothing to replicate */
    struct meta_event *items;
    assert_int_equal(ms->ops->repo_state(ms, "r", &items, &n, &e), 0);
    assert_int_equal(n, 0);
    free(items);
    ms->ops->close(ms);
}

static void test_v2_database_migrates(void **state)
{
    (void)state;
    struct metastore *ms = open_store();
    struct err e = {0};
    push(ms, "r", "v1", NULL);
    ms->ops->close(ms);
    sqlite3 *db;
    assert_int_equal(sqlite3_open(last_path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, SQL_SCHEMA_BACK_TO_V2, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    ms = metastore_sqlite_open(last_path, "local", &e);
    assert_non_null(ms);
    assert_int_equal(ms->ops->peer_ack_set(ms, "p", "local:2", 5, &e), 0);
    struct meta_peer_ack *acks;
    size_t n;
    assert_int_equal(ms->ops->peer_acks(ms, &acks, &n, &e), 0);
    assert_int_equal(n, 1);
    assert_string_equal(acks[0].vv, "local:2");
    meta_peer_ack_list_fini(acks, n);
    size_t dropped;
    assert_int_equal(ms->ops->log_compact(ms, "local", 1, 10, &dropped, &e), 0);
    assert_int_equal(dropped, 1);
    ms->ops->close(ms);
}

/* The stored acknowledgement of peer ("" when none). Caller frees. */
static char *stored_ack(struct metastore *ms, const char *peer)
{
    struct meta_peer_ack *acks;
    size_t n;
    struct err e = {0};
    assert_int_equal(ms->ops->peer_acks(ms, &acks, &n, &e), 0);
    char *out = xstrdup("");
    for (size_t i = 0; i < n; i++) {
        if (strcmp(acks[i].peer, peer) == 0) {
            free(out);
            out = xstrdup(acks[i].vv);
        }
    }
    meta_peer_ack_list_fini(acks, n);
    return out;
}

/* Polls the store (every 10 ms, for up to 10 s) until peer's acknowledgement is want. */
static bool stored_ack_becomes(struct metastore *ms, const char *peer, const char *want)
{
    int64_t deadline = util_now_ms() + 10000;
    for (;;) {
        char *have = stored_ack(ms, peer);
        bool is_there = strcmp(have, want) == 0;
        free(have);
        if (is_there || util_now_ms() > deadline)
            return is_there;
        struct timespec ts = {0, 10 * 1000000L};
        nanosleep(&ts, NULL);
    }
}

/* A peer's acknowledgements, as the status of a tag reads them: the newest is seen at once
 * in memory and always reaches the store, also one that came less than a second after
 * the last write (such a one used to be dropped, and the store kept the older one until
 * the peer's next poll, up to 10 s later). With --compact-interval 0 (no scheduled pass)
 * the thread sleeps until there is one to write, and still writes them. */
static void test_newest_ack_is_seen_at_once_and_always_stored(void **state)
{
    (void)state;
    struct metastore *ms = open_store();
    struct config cfg;
    config_defaults(&cfg);
    cfg.compact_interval_s = 0;
    struct registry reg = {.cfg = &cfg, .ms = ms};
    struct compact *c = compact_start(&reg);
    /* Nothing scheduled, nothing to write: the thread sleeps (it used to spin on a deadline
     * of now, a whole core). CPU time of this process over half a second of wall time. */
    struct timespec cpu0, cpu1, half = {0, 500 * 1000000L};
    assert_int_equal(clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &cpu0), 0);
    nanosleep(&half, NULL);
    assert_int_equal(clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &cpu1), 0);
    int64_t cpu_ms = (cpu1.tv_sec - cpu0.tv_sec) * 1000 + (cpu1.tv_nsec - cpu0.tv_nsec) / 1000000;
    assert_true(cpu_ms < 100);
    char **seen = compact_acks_seen(c, "p");
    assert_null(seen[0]);
    compact_acks_seen_free(seen);
    compact_note_ack(c, "p", "local:1", false);
    seen = compact_acks_seen(c, "p");
    assert_string_equal(seen[0], "local:1");
    assert_null(seen[1]);
    compact_acks_seen_free(seen);
    assert_true(stored_ack_becomes(ms, "p", "local:1"));
    compact_note_ack(c, "p", "local:2", false);
    compact_note_ack(c, "q", "local:3", false);
    seen = compact_acks_seen(c, "p");
    assert_string_equal(seen[0], "local:2");
    assert_null(seen[1]);
    compact_acks_seen_free(seen);
    assert_true(stored_ack_becomes(ms, "p", "local:2"));
    assert_true(stored_ack_becomes(ms, "q", "local:3"));
    /* One not due yet when the thread stops is written as it stops. */
    compact_note_ack(c, "p", "local:4", false);
    compact_stop(c);
    char *last = stored_ack(ms, "p");
    assert_string_equal(last, "local:4");
    free(last);
    config_fini(&cfg);
    ms->ops->close(ms);
}

/* The store refuses the first writes of an acknowledgement (a busy or lost database): the
 * newest is written at a later round all the same (it used to be marked written and left
 * out of the store until the peer's next poll). */
static const struct metastore_ops *real_ops;
static int ack_writes_to_fail;

static int failing_peer_ack_set(struct metastore *ms, const char *peer, const char *vv,
                                int64_t now_ms, struct err *e)
{
    if (ack_writes_to_fail > 0) {
        ack_writes_to_fail--;
        return err_set(e, ERR_IO, "refused by the test");
    }
    return real_ops->peer_ack_set(ms, peer, vv, now_ms, e);
}

static void test_ack_refused_by_the_store_is_written_again(void **state)
{
    (void)state;
    struct metastore *ms = open_store();
    real_ops = ms->ops;
    struct metastore_ops ops = *ms->ops;
    ops.peer_ack_set = failing_peer_ack_set;
    ms->ops = &ops;
    struct config cfg;
    config_defaults(&cfg);
    cfg.compact_interval_s = 0;
    struct registry reg = {.cfg = &cfg, .ms = ms};
    ack_writes_to_fail = 2;
    struct compact *c = compact_start(&reg);
    compact_note_ack(c, "p", "local:1", false);
    assert_true(stored_ack_becomes(ms, "p", "local:1"));
    assert_int_equal(ack_writes_to_fail, 0);
    compact_stop(c);
    config_fini(&cfg);
    ms->ops = real_ops;
    ms->ops->close(ms);
}

/* A store and a compaction thread with no scheduled pass: what a peer's acknowledgements
 * go through (compact_note_ack, compact_note_relayed). */
struct acks_fx {
    struct metastore *ms;
    struct config cfg;
    struct registry reg;
    struct compact *c;
};

static void acks_fx_start(struct acks_fx *x)
{
    x->ms = open_store();
    config_defaults(&x->cfg);
    x->cfg.compact_interval_s = 0;
    x->reg = (struct registry){.cfg = &x->cfg, .ms = x->ms};
    x->c = compact_start(&x->reg);
}

static void acks_fx_stop(struct acks_fx *x)
{
    compact_stop(x->c);
    config_fini(&x->cfg);
    x->ms->ops->close(x->ms);
}

/* Relayed acknowledgements: a region answers a poll with what the other regions last
 * acknowledged to it (never the poller's own, never one relayed to it), each with its age;
 * the poller keeps them under "about@via" beside the region's own, the newest report of
 * each relay only, in memory at once and in the store, where compaction does not read
 * them (its peers are the regions' own rows). */
static void test_acknowledgements_are_relayed_first_hand_and_kept_apart(void **state)
{
    (void)state;
    struct acks_fx x;
    acks_fx_start(&x);
    struct metastore *ms = x.ms;
    struct compact *c = x.c;
    compact_note_ack(c, "b", "a:5,b:2", false);
    compact_note_ack(c, "c", "a:4,c:9", false);
    compact_note_relayed(c, "d", "b", "a:1,d:3", util_now_ms());
    /* What this region tells c when c polls: b's own, not c's, not the relayed one. */
    json_t *relay = compact_relay_json(c, "c");
    assert_int_equal(json_object_size(relay), 1);
    json_t *b = json_object_get(relay, "b");
    assert_non_null(b);
    assert_string_equal(json_string_value(json_object_get(b, "vv")), "a:5,b:2");
    json_int_t age = json_integer_value(json_object_get(b, "age_ms"));
    assert_true(age >= 0 && age < 60000);
    json_decref(relay);
    /* c's own and what b relayed of c are both seen; an older report of b is ignored. */
    int64_t now = util_now_ms();
    compact_note_relayed(c, "c", "b", "a:6,c:9", now);
    compact_note_relayed(c, "c", "b", "a:5,c:9", now - 5000);
    char **seen = compact_acks_seen(c, "c");
    size_t n = 0;
    bool has_own = false, has_relayed = false;
    for (; seen[n] != NULL; n++) {
        has_own |= strcmp(seen[n], "a:4,c:9") == 0;
        has_relayed |= strcmp(seen[n], "a:6,c:9") == 0;
    }
    compact_acks_seen_free(seen);
    assert_int_equal(n, 2);
    assert_true(has_own && has_relayed);
    /* A name that only starts like the region's is not about it. */
    compact_note_ack(c, "cc", "a:7", false);
    seen = compact_acks_seen(c, "c");
    for (n = 0; seen[n] != NULL; n++)
        ;
    compact_acks_seen_free(seen);
    assert_int_equal(n, 2);
    assert_true(compact_ack_is_about("c@b", "c") && compact_ack_is_about("c", "c"));
    assert_false(compact_ack_is_about("cc", "c") || compact_ack_is_about("b@c", "c"));
    assert_true(stored_ack_becomes(ms, "c@b", "a:6,c:9"));
    assert_true(stored_ack_becomes(ms, "d@b", "a:1,d:3"));
    /* The store's row (another node of the region) is relayed too, and a relayed row is
     * not: c polls again after this node restarted. */
    compact_stop(c);
    c = x.c = compact_start(&x.reg);
    relay = compact_relay_json(c, "c");
    assert_string_equal(json_string_value(json_object_get(json_object_get(relay, "b"), "vv")),
                        "a:5,b:2");
    assert_string_equal(json_string_value(json_object_get(json_object_get(relay, "cc"), "vv")),
                        "a:7");
    assert_null(json_object_get(relay, "d"));
    assert_null(json_object_get(relay, "c"));
    assert_int_equal(json_object_size(relay), 2);
    json_decref(relay);
    /* Only a change of a region's own acknowledgement counts for the parked polls. */
    compact_note_ack(c, "b", "a:5,b:2", false);
    uint64_t changed = compact_acks_changed(c);
    compact_note_relayed(c, "c", "b", "a:8,c:9", util_now_ms());
    compact_note_ack(c, "b", "a:5,b:2", false);
    assert_int_equal(compact_acks_changed(c), changed);
    compact_note_ack(c, "b", "a:6,b:2", false);
    assert_int_equal(compact_acks_changed(c), changed + 1);
    acks_fx_stop(&x);
}

/* A region that went back (restored from an older copy, or removed and added again under
 * its name) acknowledges less than before. What a region it no longer polls relays of it
 * from before stays (that region keeps relaying its last row, older and older): counted
 * beside the region's own newer one, it made a tag the region lost Completed. The newest
 * report counts, in memory and in the store alike; a newer relayed one beats an older own. */
static void test_newest_acknowledgement_counts_not_an_older_relayed_one(void **state)
{
    (void)state;
    struct acks_fx x;
    acks_fx_start(&x);
    struct metastore *ms = x.ms;
    struct compact *c = x.c;
    int64_t now = util_now_ms();
    compact_note_relayed(c, "c", "d", "a:6,c:9", now - 60000); /* before c went back */
    compact_note_ack(c, "c", "a:2,c:9", false);                 /* c polls here again */
    char *newest = compact_ack_newest(c, "c", NULL, 0);
    assert_string_equal(newest, "a:2,c:9");
    free(newest);
    assert_true(stored_ack_becomes(ms, "c", "a:2,c:9"));
    assert_true(stored_ack_becomes(ms, "c@d", "a:6,c:9"));
    /* Another node of this region (nothing in its memory) reads the store the same way. */
    struct meta_peer_ack *stored = NULL;
    size_t n_stored = 0;
    struct err e = {0};
    assert_int_equal(ms->ops->peer_acks(ms, &stored, &n_stored, &e), 0);
    newest = compact_ack_newest(NULL, "c", stored, n_stored);
    assert_string_equal(newest, "a:2,c:9");
    free(newest);
    /* A relayed report newer than c's own (c cannot poll here any more) is the one. */
    compact_note_relayed(c, "c", "b", "a:7,c:9", util_now_ms() + 1000);
    newest = compact_ack_newest(c, "c", stored, n_stored);
    assert_string_equal(newest, "a:7,c:9");
    free(newest);
    newest = compact_ack_newest(c, "cc", stored, n_stored);
    assert_null(newest);
    meta_peer_ack_list_fini(stored, n_stored);
    acks_fx_stop(&x);
}

/* With 17 regions and more (up to 32 are supported), the peers' own acknowledgements and
 * what each relays of the others (n x (n - 1) names) fill the table. A relayed one must
 * never push out a region's own: that one is what compaction writes down, and coming back
 * (its next poll) it counted as changed, which woke every parked poll of the region, whose
 * answers relayed more, at every region (a storm). */
static void test_relayed_acknowledgements_never_push_out_a_regions_own(void **state)
{
    (void)state;
    struct acks_fx x;
    acks_fx_start(&x);
    struct compact *c = x.c;
    enum { REGIONS = 32 };
    char name[16], about[16];
    for (int i = 1; i < REGIONS; i++) {
        snprintf(name, sizeof(name), "r%d", i);
        compact_note_ack(c, name, "local:1", false);
    }
    uint64_t changed = compact_acks_changed(c);
    int64_t now = util_now_ms();
    for (int via = 1; via < REGIONS; via++) {
        for (int i = 1; i < REGIONS; i++) {
            snprintf(name, sizeof(name), "r%d", via);
            snprintf(about, sizeof(about), "r%d", i);
            compact_note_relayed(c, about, name, "local:1", now);
        }
    }
    for (int i = 1; i < REGIONS; i++) {
        snprintf(name, sizeof(name), "r%d", i);
        compact_note_ack(c, name, "local:1", false); /* its next poll: the same */
        char *newest = compact_ack_newest(c, name, NULL, 0);
        assert_non_null(newest);
        free(newest);
    }
    assert_int_equal(compact_acks_changed(c), changed);
    acks_fx_stop(&x);
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
        cmocka_unit_test(test_stable_is_the_minimum_of_live_acknowledgements),
        cmocka_unit_test(test_below_the_horizon),
        cmocka_unit_test(test_tombstone_cutoff_waits_for_what_live_peers_hold),
        cmocka_unit_test(test_origin_clocks_are_the_newest_applied_events),
        cmocka_unit_test(test_compact_drops_the_lowest_events_in_batches),
        cmocka_unit_test(test_tombstones_expire_below_cutoff_and_horizon_only),
        cmocka_unit_test(test_state_merge_does_not_bring_an_expired_tombstone_back),
        cmocka_unit_test(test_adopt_raises_vv_and_horizon_and_rereads_the_peer),
        cmocka_unit_test(test_own_name_history_is_applied_in_order),
        cmocka_unit_test(test_forget_and_snapshot_records),
        cmocka_unit_test(test_v2_database_migrates),
        cmocka_unit_test(test_newest_ack_is_seen_at_once_and_always_stored),
        cmocka_unit_test(test_ack_refused_by_the_store_is_written_again),
        cmocka_unit_test(test_acknowledgements_are_relayed_first_hand_and_kept_apart),
        cmocka_unit_test(test_newest_acknowledgement_counts_not_an_older_relayed_one),
        cmocka_unit_test(test_relayed_acknowledgements_never_push_out_a_regions_own),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
