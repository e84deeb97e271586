/* Property test of replication's merge: random writes in three regions, their events
 * applied in random interleavings (each origin's own order kept, as the stream does)
 * to fresh replicas, give identical state everywhere. Prints the seed on failure;
 * MERIDIAN_SEED=<n> replays one. */
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

#include "buf.h"
#include "digest.h"
#include "hlc.h"
#include "metastore.h"
#include "util.h"

#define N_REGIONS 3
#define N_WRITES 40
#define N_ORDERS 4

static char tmpdir[] = "/tmp/meridian-merge-XXXXXX";
static int db_counter;

static struct metastore *open_store(const char *region)
{
    char path[256];
    struct err e = {0};
    snprintf(path, sizeof(path), "%s/db%d.sqlite", tmpdir, db_counter++);
    struct metastore *ms = metastore_sqlite_open(path, region, &e);
    assert_non_null(ms);
    return ms;
}

static void put_manifest(struct metastore *ms, const char *repo, int body_id, const char *tag)
{
    char body[64];
    struct meta_manifest m = {.media_type = "application/vnd.oci.image.manifest.v1+json"};
    snprintf(body, sizeof(body), "{\"schemaVersion\":2,\"n\":%d}", body_id);
    m.body = body;
    m.body_len = strlen(body);
    digest_of_buffer(DIGEST_SHA256, body, m.body_len, &m.digest);
    struct err e = {0};
    assert_int_equal(ms->ops->manifest_put(ms, repo, &m, NULL, 0, NULL, tag, &e), 0);
}

static void random_write(struct metastore *ms, unsigned *seed)
{
    static const char *const repos[] = {"golden/base", "app"};
    static const char *const tags[] = {"latest", "v1", "v2"};
    const char *repo = repos[rand_r(seed) % 2];
    const char *tag = tags[rand_r(seed) % 3];
    int body_id = rand_r(seed) % 6;
    struct err e = {0};
    switch (rand_r(seed) % 5) {
    case 0:
    case 1:
        put_manifest(ms, repo, body_id, tag);
        break;
    case 2:
        ms->ops->tag_delete(ms, repo, tag, &e); /* absent is fine */
        break;
    case 3: {
        char body[64];
        struct digest d;
        snprintf(body, sizeof(body), "{\"schemaVersion\":2,\"n\":%d}", body_id);
        digest_of_buffer(DIGEST_SHA256, body, strlen(body), &d);
        ms->ops->manifest_delete(ms, repo, &d, &e);
        break;
    }
    default: {
        char value[64];
        snprintf(value, sizeof(value), "{\"v\":%d}", rand_r(seed) % 100);
        assert_int_equal(ms->ops->object_put(ms, "webhook", tag, value, &e), 0);
        break;
    }
    }
}

struct log {
    struct meta_event *events;
    size_t n;
};

static void read_log(struct metastore *ms, struct log *out)
{
    int64_t last = 0;
    struct err e = {0};
    assert_int_equal(ms->ops->events_read(ms, 0, NULL, 100000, &out->events, &out->n, &last, &e),
                     0);
}

/* The state a client can observe, plus the registers behind it. */
static char *observe(struct metastore *ms)
{
    struct buf b;
    struct err e = {0};
    buf_init(&b, 1 << 20);
    assert_int_equal(ms->ops->summary(ms, &b, &e), 0);
    /* What a tag resolves to (visibility aside: replicas here hold no content). */
    static const char *const repos[] = {"golden/base", "app"};
    static const char *const tags[] = {"latest", "v1", "v2", "t1", "t2"};
    for (int r = 0; r < 2; r++) {
        for (int t = 0; t < 5; t++) {
            struct digest d;
            char *mt = NULL;
            int64_t size;
            bool is_visible;
            int64_t recorded_ms;
            if (ms->ops->manifest_lookup(ms, repos[r], tags[t], &d, &mt, &size, &is_visible,
                                         &recorded_ms, &e) == 0)
                buf_printf(&b, "\n%s:%s=%s", repos[r], tags[t], d.str);
            free(mt);
        }
    }
    struct meta_name_list keys = {0}, values = {0};
    assert_int_equal(ms->ops->object_list(ms, "webhook", &keys, &values, &e), 0);
    for (size_t i = 0; i < keys.n; i++)
        buf_printf(&b, "\nobj %s=%s", keys.names[i], values.names[i]);
    meta_name_list_fini(&keys);
    meta_name_list_fini(&values);
    return buf_steal(&b, NULL);
}

/* Applies every log to ms in a random interleaving that keeps each origin's order. */
static void apply_interleaved(struct metastore *ms, struct log *logs, unsigned *seed)
{
    size_t pos[N_REGIONS] = {0};
    for (;;) {
        int live[N_REGIONS], n_live = 0;
        for (int i = 0; i < N_REGIONS; i++) {
            if (pos[i] < logs[i].n)
                live[n_live++] = i;
        }
        if (n_live == 0)
            break;
        int r = live[rand_r(seed) % n_live];
        struct meta_event *ev = &logs[r].events[pos[r]++];
        bool is_new, is_gap;
        struct err e = {0};
        assert_int_equal(ms->ops->event_apply(ms, ev, &is_new, &is_gap, &e), 0);
        assert_false(is_gap);
        /* Duplicates are harmless: apply some twice. */
        if (rand_r(seed) % 4 == 0) {
            assert_int_equal(ms->ops->event_apply(ms, ev, &is_new, &is_gap, &e), 0);
            assert_false(is_new);
        }
    }
}

static void test_random_orders_converge(void **state)
{
    (void)state;
    const char *env = getenv("MERIDIAN_SEED");
    unsigned seed0 = env ? (unsigned)strtoul(env, NULL, 10) : (unsigned)time(NULL);
    for (int round = 0; round < 3; round++) {
        unsigned round_seed = seed0 + (unsigned)round;
        unsigned seed = round_seed;
        printf("merge property: seed %u (replay with MERIDIAN_SEED=%u)\n", round_seed, seed0);
        static const char *const names[N_REGIONS] = {"r1", "r2", "r3"};
        struct metastore *origin[N_REGIONS];
        struct log logs[N_REGIONS];
        for (int i = 0; i < N_REGIONS; i++)
            origin[i] = open_store(names[i]);
        for (int w = 0; w < N_WRITES; w++)
            random_write(origin[rand_r(&seed) % N_REGIONS], &seed);
        for (int i = 0; i < N_REGIONS; i++)
            read_log(origin[i], &logs[i]);
        char *expected = NULL;
        for (int k = 0; k < N_ORDERS; k++) {
            struct metastore *replica = open_store("observer");
            apply_interleaved(replica, logs, &seed);
            char *got = observe(replica);
            if (expected == NULL) {
                expected = got;
            } else {
                if (strcmp(expected, got) != 0)
                    fprintf(stderr, "diverged with seed %u:\n%s\n---\n%s\n", round_seed, expected,
                            got);
                assert_string_equal(expected, got);
                free(got);
            }
            replica->ops->close(replica);
        }
        /* The origins themselves converge too once each has every other's events. */
        for (int i = 0; i < N_REGIONS; i++) {
            for (int j = 0; j < N_REGIONS; j++) {
                if (i == j)
                    continue;
                for (size_t x = 0; x < logs[j].n; x++) {
                    bool is_new, is_gap;
                    struct err e = {0};
                    assert_int_equal(origin[i]->ops->event_apply(origin[i], &logs[j].events[x],
                                                                  &is_new, &is_gap, &e), 0);
                }
            }
        }
        for (int i = 0; i < N_REGIONS; i++) {
            char *got = observe(origin[i]);
            if (strcmp(expected, got) != 0)
                fprintf(stderr, "origin %s diverged with seed %u:\n%s\n---\n%s\n", names[i],
                        round_seed, expected, got);
            assert_string_equal(expected, got);
            free(got);
        }
        free(expected);
        for (int i = 0; i < N_REGIONS; i++) {
            for (size_t x = 0; x < logs[i].n; x++)
                meta_event_fini(&logs[i].events[x]);
            free(logs[i].events);
            origin[i]->ops->close(origin[i]);
        }
    }
}

/* Concurrent writes of one tag in two regions: both pick the same winner. */
static void test_concurrent_tag_same_winner(void **state)
{
    (void)state;
    struct metastore *a = open_store("eastus"), *b = open_store("westeurope");
    put_manifest(a, "golden/base", 1, "v1");
    put_manifest(b, "golden/base", 2, "v1");
    struct log la, lb;
    read_log(a, &la);
    read_log(b, &lb);
    for (size_t i = 0; i < lb.n; i++) {
        bool n, g;
        struct err e = {0};
        assert_int_equal(a->ops->event_apply(a, &lb.events[i], &n, &g, &e), 0);
    }
    for (size_t i = 0; i < la.n; i++) {
        bool n, g;
        struct err e = {0};
        assert_int_equal(b->ops->event_apply(b, &la.events[i], &n, &g, &e), 0);
    }
    char *sa = observe(a), *sb = observe(b);
    assert_string_equal(sa, sb);
    free(sa);
    free(sb);
    for (size_t i = 0; i < la.n; i++)
        meta_event_fini(&la.events[i]);
    for (size_t i = 0; i < lb.n; i++)
        meta_event_fini(&lb.events[i]);
    free(la.events);
    free(lb.events);
    a->ops->close(a);
    b->ops->close(b);
}

/* Applies every event of src's log to dst (those dst has are skipped). */
static void sync_from(struct metastore *dst, struct metastore *src)
{
    struct log l;
    read_log(src, &l);
    for (size_t i = 0; i < l.n; i++) {
        bool is_new, is_gap;
        struct err e = {0};
        assert_int_equal(dst->ops->event_apply(dst, &l.events[i], &is_new, &is_gap, &e), 0);
        assert_false(is_gap);
        meta_event_fini(&l.events[i]);
    }
    free(l.events);
}

/* The digest repo:ref resolves to in ms ("" when it does not). */
static void resolved(struct metastore *ms, const char *repo, const char *ref, char *out)
{
    struct digest d;
    char *mt = NULL;
    int64_t size, recorded_ms;
    bool is_visible;
    struct err e = {0};
    out[0] = '\0';
    if (ms->ops->manifest_lookup(ms, repo, ref, &d, &mt, &size, &is_visible, &recorded_ms, &e) ==
        0)
        strcpy(out, d.str);
    free(mt);
}

static void body_digest(int body_id, struct digest *d)
{
    char body[64];
    snprintf(body, sizeof(body), "{\"schemaVersion\":2,\"n\":%d}", body_id);
    digest_of_buffer(DIGEST_SHA256, body, strlen(body), d);
}

/* r1 deletes a manifest; r2, not having seen the delete, is pushed the same manifest again
 * under a new tag, later. The push is the latest write: it survives in both once they
 * have each other's events (a repeated put used to write no event, and the tombstone,
 * newer than the first put, deleted the manifest everywhere). */
static void test_push_after_a_concurrent_delete_wins(void **state)
{
    (void)state;
    struct metastore *a = open_store("r1"), *b = open_store("r2");
    put_manifest(a, "app", 1, "t1");
    sync_from(b, a);
    struct digest d;
    body_digest(1, &d);
    struct err e = {0};
    assert_int_equal(a->ops->manifest_delete(a, "app", &d, &e), 0);
    usleep(3000); /* the clocks are wall-time milliseconds */
    put_manifest(b, "app", 1, "t2");
    sync_from(a, b);
    sync_from(b, a);
    struct metastore *both[] = {a, b};
    for (int i = 0; i < 2; i++) {
        char got[DIGEST_STR_MAX];
        resolved(both[i], "app", "t2", got);
        assert_string_equal(got, d.str);
        resolved(both[i], "app", d.str, got);
        assert_string_equal(got, d.str);
        resolved(both[i], "app", "t1", got);
        assert_string_equal(got, "");
    }
    a->ops->close(a);
    b->ops->close(b);
}

/* t names X in both regions; r2 moves it to Y; later r1, not having seen the move, is
 * pushed X:t again (a tag it already had): the later write wins in both. */
static void test_tag_pushed_again_after_a_concurrent_move_wins(void **state)
{
    (void)state;
    struct metastore *a = open_store("r1"), *b = open_store("r2");
    put_manifest(a, "app", 1, "t");
    sync_from(b, a);
    put_manifest(b, "app", 2, "t");
    usleep(3000);
    put_manifest(a, "app", 1, "t");
    sync_from(a, b);
    sync_from(b, a);
    struct digest x;
    body_digest(1, &x);
    char got_a[DIGEST_STR_MAX], got_b[DIGEST_STR_MAX];
    resolved(a, "app", "t", got_a);
    resolved(b, "app", "t", got_b);
    assert_string_equal(got_a, x.str);
    assert_string_equal(got_b, x.str);
    a->ops->close(a);
    b->ops->close(b);
}

/* r2 tags a manifest t2 while r1, not having seen the tag, deletes the manifest later. Once
 * they have each other's events t2 is gone in both, whichever came first, and a push of the
 * same manifest again under t3 does not bring t2 back (its register used to stay, hidden,
 * and show again). */
static void test_tag_older_than_a_delete_stays_gone(void **state)
{
    (void)state;
    for (int order = 0; order < 2; order++) {
        struct metastore *a = open_store("r1"), *b = open_store("r2");
        put_manifest(a, "app", 1, "t1");
        sync_from(b, a);
        put_manifest(b, "app", 1, "t2");
        usleep(3000); /* the clocks are wall-time milliseconds: the delete is later */
        struct digest d;
        body_digest(1, &d);
        struct err e = {0};
        assert_int_equal(a->ops->manifest_delete(a, "app", &d, &e), 0);
        if (order == 0) {
            sync_from(a, b); /* the tag reaches the deleting region after its delete */
            sync_from(b, a);
        } else {
            sync_from(b, a); /* the delete reaches the tagging region after its tag */
            sync_from(a, b);
        }
        struct metastore *both[] = {a, b};
        char got[DIGEST_STR_MAX];
        for (int i = 0; i < 2; i++) {
            resolved(both[i], "app", "t2", got);
            assert_string_equal(got, "");
        }
        usleep(3000);
        put_manifest(a, "app", 1, "t3");
        sync_from(b, a);
        sync_from(a, b);
        for (int i = 0; i < 2; i++) {
            resolved(both[i], "app", "t3", got);
            assert_string_equal(got, d.str);
            resolved(both[i], "app", "t2", got);
            assert_string_equal(got, "");
        }
        a->ops->close(a);
        b->ops->close(b);
    }
}

/* An event whose predecessor from the same origin is missing is refused as a gap. */
static void test_gap_is_refused(void **state)
{
    (void)state;
    struct metastore *a = open_store("r1"), *b = open_store("r2");
    put_manifest(a, "x", 1, "t1");
    put_manifest(a, "x", 2, "t2");
    struct log la;
    read_log(a, &la);
    assert_true(la.n >= 4);
    bool is_new, is_gap;
    struct err e = {0};
    assert_int_equal(b->ops->event_apply(b, &la.events[la.n - 1], &is_new, &is_gap, &e), 0);
    assert_true(is_gap);
    assert_false(is_new);
    for (size_t i = 0; i < la.n; i++)
        meta_event_fini(&la.events[i]);
    free(la.events);
    a->ops->close(a);
    b->ops->close(b);
}

/* Immutable versions (meta_merge.c): in an image definition, of two puts of one version
 * with different digests the earlier wins, in every region, and both derive the same
 * conflict record. */
#define DEFINED "golden/def"

static void define(struct metastore *ms)
{
    struct err e = {0};
    assert_int_equal(ms->ops->object_put(ms, "image_definition", DEFINED,
                                         "{\"repository\":\"" DEFINED "\"}", &e),
                     0);
}

static char *conflict_of(struct metastore *ms, const char *version)
{
    char key[128], *v = NULL;
    struct err e = {0};
    snprintf(key, sizeof(key), "%s:%s", DEFINED, version);
    return ms->ops->object_get(ms, "image_version_conflict", key, &v, &e) == 0 ? v
                                                                               : xstrdup("none");
}

static const struct meta_event *tag_set_of(const struct log *l)
{
    for (size_t i = 0; i < l->n; i++) {
        if (strcmp(l->events[i].kind, "tag_set") == 0)
            return &l->events[i];
    }
    fail_msg("no tag_set event");
    return NULL;
}

static void apply_all(struct metastore *ms, const struct log *l)
{
    for (size_t i = 0; i < l->n; i++) {
        bool n, g;
        struct err e = {0};
        assert_int_equal(ms->ops->event_apply(ms, &l->events[i], &n, &g, &e), 0);
    }
}

static void log_fini(struct log *l)
{
    for (size_t i = 0; i < l->n; i++)
        meta_event_fini(&l->events[i]);
    free(l->events);
}

static void test_version_first_writer_wins(void **state)
{
    (void)state;
    struct metastore *a = open_store("eastus"), *b = open_store("westeurope");
    define(a);
    define(b);
    put_manifest(a, DEFINED, 1, "1.0.0");
    put_manifest(b, DEFINED, 2, "1.0.0");
    struct log la, lb;
    read_log(a, &la);
    read_log(b, &lb);
    const struct meta_event *ta = tag_set_of(&la), *tb = tag_set_of(&lb);
    /* the earlier of the two puts is the one every region keeps */
    bool a_first = hlc_lww_wins(tb->hlc, tb->origin, ta->hlc, ta->origin);
    const char *want = a_first ? ta->digest : tb->digest;
    apply_all(a, &lb);
    apply_all(b, &la);
    struct metastore *stores[] = {a, b};
    for (int i = 0; i < 2; i++) {
        struct digest d;
        char *mt = NULL;
        int64_t size, recorded_ms;
        bool is_visible;
        struct err e = {0};
        assert_int_equal(stores[i]->ops->manifest_lookup(stores[i], DEFINED, "1.0.0", &d, &mt,
                                                         &size, &is_visible, &recorded_ms, &e),
                         0);
        free(mt);
        assert_string_equal(d.str, want);
    }
    char *ca = conflict_of(a, "1.0.0"), *cb = conflict_of(b, "1.0.0");
    assert_string_equal(ca, cb);
    assert_non_null(strstr(ca, ta->digest));
    assert_non_null(strstr(ca, tb->digest));
    char winner[200];
    snprintf(winner, sizeof(winner), "\"winner\":{\"digest\":\"%s\",\"region\":\"%s\"}", want,
             a_first ? "eastus" : "westeurope");
    assert_non_null(strstr(ca, winner));
    free(ca);
    free(cb);
    log_fini(&la);
    log_fini(&lb);
    a->ops->close(a);
    b->ops->close(b);
}

/* Puts, tag deletes and manifest deletes of versions in three regions, applied in random
 * interleavings: the same versions, registers and conflict records everywhere. */
static char *observe_versions(struct metastore *ms)
{
    struct buf b;
    struct err e = {0};
    buf_init(&b, 1 << 20);
    assert_int_equal(ms->ops->summary(ms, &b, &e), 0);
    static const char *const versions[] = {"1.0.0", "1.1.0"};
    for (int v = 0; v < 2; v++) {
        struct digest d;
        char *mt = NULL;
        int64_t size, recorded_ms;
        bool is_visible;
        if (ms->ops->manifest_lookup(ms, DEFINED, versions[v], &d, &mt, &size, &is_visible,
                                     &recorded_ms, &e) == 0)
            buf_printf(&b, "\n%s=%s", versions[v], d.str);
        free(mt);
        char *c = conflict_of(ms, versions[v]);
        buf_printf(&b, "\nconflict %s", c);
        free(c);
    }
    return buf_steal(&b, NULL);
}

static char *summary_of(struct metastore *ms)
{
    struct buf b;
    struct err e = {0};
    buf_init(&b, 1 << 20);
    assert_int_equal(ms->ops->summary(ms, &b, &e), 0);
    return buf_steal(&b, NULL);
}

/* Anti-entropy compares the regions' summaries and repairs every repository whose digest
 * differs. Blob links are each region's own: a repository holding only blobs (an
 * abandoned push) is left out of the summary, else the peer repaired it at every pass for
 * ever (its state never made the digests meet). It is in once it has a manifest. */
static void test_summary_leaves_out_blob_only_repositories(void **state)
{
    (void)state;
    struct metastore *a = open_store("r1"), *b = open_store("r2");
    struct err e = {0};
    struct digest blob;
    digest_of_buffer(DIGEST_SHA256, "abandoned", 9, &blob);
    assert_int_equal(a->ops->blob_link(a, "abandoned/push", &blob, 9, &e), 0);
    put_manifest(a, "app", 1, "v1");
    sync_from(b, a);
    char *sa = summary_of(a), *sb = summary_of(b);
    assert_null(strstr(sa, "abandoned/push"));
    assert_non_null(strstr(sa, "\"app\""));
    assert_string_equal(sa, sb);
    free(sa);
    free(sb);
    put_manifest(a, "abandoned/push", 2, "v1");
    sa = summary_of(a);
    assert_non_null(strstr(sa, "abandoned/push"));
    free(sa);
    a->ops->close(a);
    b->ops->close(b);
}

/* r2 pushes version 1.1.0 of a manifest that r1, not having seen it, deletes later.
 * Whichever arrives first, the version names nothing pullable in both, with the same state
 * digest, and names the manifest again in both once it is pushed again (a version's
 * register is derived from the version's own puts and deletes). The tombstone used to end
 * the version only where it arrived after the version: the state digests differed for ever
 * and the manifest pushed again showed as 1.1.0 in one region only. */
static void test_version_older_than_a_delete_stays_gone(void **state)
{
    (void)state;
    for (int order = 0; order < 2; order++) {
        struct metastore *a = open_store("r1"), *b = open_store("r2");
        define(a);
        define(b);
        put_manifest(a, DEFINED, 1, NULL);
        sync_from(b, a);
        put_manifest(b, DEFINED, 1, "1.1.0");
        usleep(3000); /* the clocks are wall-time milliseconds: the delete is later */
        struct digest d;
        body_digest(1, &d);
        struct err e = {0};
        assert_int_equal(a->ops->manifest_delete(a, DEFINED, &d, &e), 0);
        if (order == 0) {
            sync_from(a, b); /* the version reaches the deleting region after its delete */
            sync_from(b, a);
        } else {
            sync_from(b, a); /* the delete reaches the pushing region after the version */
            sync_from(a, b);
        }
        struct metastore *both[] = {a, b};
        char got[DIGEST_STR_MAX];
        char *states[2];
        for (int i = 0; i < 2; i++) {
            resolved(both[i], DEFINED, "1.1.0", got);
            assert_string_equal(got, "");
            struct buf sb;
            buf_init(&sb, 1 << 16);
            assert_int_equal(both[i]->ops->summary(both[i], &sb, &e), 0);
            states[i] = buf_steal(&sb, NULL);
        }
        assert_string_equal(states[0], states[1]);
        free(states[0]);
        free(states[1]);
        usleep(3000);
        put_manifest(a, DEFINED, 1, "1.2.0");
        sync_from(b, a);
        sync_from(a, b);
        for (int i = 0; i < 2; i++) {
            resolved(both[i], DEFINED, "1.2.0", got);
            assert_string_equal(got, d.str);
            resolved(both[i], DEFINED, "1.1.0", got);
            assert_string_equal(got, d.str);
        }
        a->ops->close(a);
        b->ops->close(b);
    }
}

static void random_version_write(struct metastore *ms, unsigned *seed)
{
    const char *version = rand_r(seed) % 2 ? "1.0.0" : "1.1.0";
    int body_id = rand_r(seed) % 4;
    struct err e = {0};
    switch (rand_r(seed) % 4) {
    case 0:
    case 1: {
        /* A region refuses a push of another manifest under a version it holds (first
         * writer wins, decided in the write transaction): conflicts come from other
         * regions' concurrent pushes. */
        char body[64];
        struct meta_manifest m = {.media_type = "application/vnd.oci.image.manifest.v1+json"};
        snprintf(body, sizeof(body), "{\"schemaVersion\":2,\"n\":%d}", body_id);
        m.body = body;
        m.body_len = strlen(body);
        digest_of_buffer(DIGEST_SHA256, body, m.body_len, &m.digest);
        if (ms->ops->manifest_put(ms, DEFINED, &m, NULL, 0, NULL, version, &e) != 0)
            assert_int_equal(e.code, ERR_DENIED);
        break;
    }
    case 2:
        ms->ops->tag_delete(ms, DEFINED, version, &e);
        break;
    default: {
        char body[64];
        struct digest d;
        snprintf(body, sizeof(body), "{\"schemaVersion\":2,\"n\":%d}", body_id);
        digest_of_buffer(DIGEST_SHA256, body, strlen(body), &d);
        ms->ops->manifest_delete(ms, DEFINED, &d, &e);
        break;
    }
    }
}

static void test_version_orders_converge(void **state)
{
    (void)state;
    const char *env = getenv("MERIDIAN_SEED");
    unsigned seed0 = env ? (unsigned)strtoul(env, NULL, 10) : (unsigned)time(NULL);
    /* Seeds that once diverged run every time, after the random rounds: 1796481069 had a
     * version's register dropped by a peer's delete of its manifest in one order of
     * arrival and kept in another (dead_tags_drop, fixed 5 December). */
    static const unsigned known[] = {1796481069u, 1796481072u};
    size_t n_known = sizeof(known) / sizeof(known[0]);
    for (size_t round = 0; round < 5 + n_known; round++) {
        unsigned round_seed = round < 5 ? seed0 + (unsigned)round : known[round - 5];
        unsigned seed = round_seed;
        printf("version merge property: seed %u (replay with MERIDIAN_SEED=%u)\n", round_seed,
               round < 5 ? seed0 : round_seed);
        static const char *const names[N_REGIONS] = {"r1", "r2", "r3"};
        struct metastore *origin[N_REGIONS];
        struct log logs[N_REGIONS];
        for (int i = 0; i < N_REGIONS; i++) {
            origin[i] = open_store(names[i]);
            define(origin[i]);
        }
        for (int w = 0; w < N_WRITES; w++)
            random_version_write(origin[rand_r(&seed) % N_REGIONS], &seed);
        for (int i = 0; i < N_REGIONS; i++)
            read_log(origin[i], &logs[i]);
        char *expected = NULL;
        for (int k = 0; k < N_ORDERS; k++) {
            struct metastore *replica = open_store("observer");
            define(replica);
            apply_interleaved(replica, logs, &seed);
            char *got = observe_versions(replica);
            if (expected == NULL) {
                expected = got;
            } else {
                if (strcmp(expected, got) != 0)
                    fprintf(stderr, "diverged with seed %u:\n%s\n---\n%s\n", round_seed, expected,
                            got);
                assert_string_equal(expected, got);
                free(got);
            }
            replica->ops->close(replica);
        }
        free(expected);
        for (int i = 0; i < N_REGIONS; i++) {
            log_fini(&logs[i]);
            origin[i]->ops->close(origin[i]);
        }
    }
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
    snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_random_orders_converge),
        cmocka_unit_test(test_concurrent_tag_same_winner),
        cmocka_unit_test(test_gap_is_refused),
        cmocka_unit_test(test_push_after_a_concurrent_delete_wins),
        cmocka_unit_test(test_tag_pushed_again_after_a_concurrent_move_wins),
        cmocka_unit_test(test_tag_older_than_a_delete_stays_gone),
        cmocka_unit_test(test_version_first_writer_wins),
        cmocka_unit_test(test_version_orders_converge),
        cmocka_unit_test(test_version_older_than_a_delete_stays_gone),
        cmocka_unit_test(test_summary_leaves_out_blob_only_repositories),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
