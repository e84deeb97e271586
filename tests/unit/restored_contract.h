/* A region restored from an older copy of its data (meta_restored.c), the store's side, run
 * on SQLite (test_metastore_sqlite.c) and PostgreSQL (test_metastore_pg.c) alike. Included
 * after cmocka and metastore.h by a test file; restored_contract(ms) takes a fresh store.
 *
 * - restored_probe: the region answers whether its log holds the very event of its own
 *   name a peer holds (same number, same clock), and its opening clock when it does not;
 * - a RESTORED_KIND marker (written here or merged) drops the region's reports older than
 *   its opening clock, refuses such reports when they come later (events, state records),
 *   keeps the highest opening clock whatever the order, and leaves newer reports alone;
 * - the region that hears a marker of its own name reports each of its rows again, above
 *   the opening clock. */
#ifndef RESTORED_CONTRACT_H
#define RESTORED_CONTRACT_H

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "digest.h"
#include "metastore.h"
#include "metastore_sqlite_int.h"

/* "sha256:" and 64 hex digits of n. */
static struct digest rc_digest(int n)
{
    char s[80];
    snprintf(s, sizeof(s), "sha256:%064x", n);
    struct digest d;
    struct err e = {0};
    assert_int_equal(digest_parse(s, strlen(s), &d, &e), 0);
    return d;
}

/* A status report of region, as the event (or state record) a peer sends. */
static struct meta_event rc_report(const char *region, int64_t seq, int64_t hlc,
                                   const struct digest *d, int64_t updated_ms, char *payload,
                                   size_t payload_len)
{
    snprintf(payload, payload_len,
             "{\"region\":\"%s\",\"state\":\"Completed\",\"bytesDone\":1,\"bytesTotal\":1,"
             "\"updatedMs\":%" PRId64 ",\"details\":\"\"}",
             region, updated_ms);
    return (struct meta_event){.origin = (char *)region, .origin_seq = seq, .hlc = (uint64_t)hlc,
                               .kind = "status", .repo = "restored/r",
                               .digest = (char *)d->str, .payload = payload};
}

static void rc_apply(struct metastore *ms, const struct meta_event *ev)
{
    bool is_new = false, is_gap = false;
    struct err e = {0};
    assert_int_equal(ms->ops->event_apply(ms, ev, &is_new, &is_gap, &e), 0);
    assert_true(is_new);
}

/* The state of region's row of d ("none" without one). */
static const char *rc_state(struct metastore *ms, const char *region, const struct digest *d,
                            char *out, size_t n)
{
    struct meta_status *st = NULL;
    size_t n_st = 0;
    struct err e = {0};
    assert_int_equal(ms->ops->status_list(ms, "restored/r", d, &st, &n_st, &e), 0);
    snprintf(out, n, "%s", "none");
    for (size_t i = 0; i < n_st; i++) {
        if (strcmp(st[i].region, region) == 0)
            snprintf(out, n, "%s", st[i].state);
    }
    meta_status_free(st, n_st);
    return out;
}

/* An object_put event of origin west: RESTORED_KIND, key, {"opened": opened}. */
static void rc_marker_from_west(struct metastore *ms, int64_t seq, int64_t hlc, const char *key,
                                int64_t opened)
{
    char payload[128];
    snprintf(payload, sizeof(payload),
             "{\"kind\":\"" RESTORED_KIND "\",\"value\":{\"opened\":%" PRId64 "}}", opened);
    struct meta_event ev = {.origin = "west", .origin_seq = seq, .hlc = (uint64_t)hlc,
                            .kind = "object_put", .name = (char *)key, .payload = payload};
    rc_apply(ms, &ev);
}

static void restored_contract(struct metastore *ms, const char *self)
{
    struct err e = {0};
    char got[32], p1[256], p2[256], p3[256];
    struct digest d1 = rc_digest(1), d2 = rc_digest(2), d3 = rc_digest(3);

    /* This region's own report of d1 (an event of its name), and east's of d1 and d2. */
    struct meta_status own = {.region = (char *)self, .state = "Completed", .bytes_done = 1,
                              .bytes_total = 1, .updated_ms = 5, .details = ""};
    assert_int_equal(ms->ops->status_set(ms, "restored/r", &d1, &own, true, &e), 0);
    int64_t seq, hlc;
    assert_int_equal(ms->ops->origin_newest(ms, self, &seq, &hlc, &e), 0);
    assert_true(seq > 0 && hlc > 0);
    int64_t h = hlc + 1000;
    struct meta_event ev = rc_report("east", 1, h, &d1, 10, p1, sizeof(p1));
    rc_apply(ms, &ev);
    ev = rc_report("east", 2, h + 1, &d2, 10, p2, sizeof(p2));
    rc_apply(ms, &ev);
    assert_string_equal(rc_state(ms, "east", &d1, got, sizeof(got)), "Completed");
    int64_t east_seq, east_hlc;
    assert_int_equal(ms->ops->origin_newest(ms, "east", &east_seq, &east_hlc, &e), 0);
    assert_int_equal(east_seq, 2);
    assert_int_equal(east_hlc, h + 1);
    assert_int_equal(ms->ops->origin_newest(ms, "nobody", &east_seq, &east_hlc, &e), 0);
    assert_int_equal(east_seq, 0);

    /* The probe: the very event held here -> 0; a clock of another event under that number,
     * or a number never written here -> the opening clock (below every event written since). */
    int64_t opened = -1;
    assert_int_equal(ms->ops->restored_probe(ms, seq, hlc, &opened, &e), 0);
    assert_int_equal(opened, 0);
    assert_int_equal(ms->ops->restored_probe(ms, seq, hlc + 1, &opened, &e), 0);
    assert_true(opened > 0 && opened < hlc);
    assert_int_equal(ms->ops->restored_probe(ms, seq + 3, hlc, &opened, &e), 0);
    assert_true(opened > 0 && opened < hlc);

    /* east restored, reopened at h + 10: its reports below that go, here at once... */
    char value[64];
    snprintf(value, sizeof(value), "{\"opened\":%" PRId64 "}", h + 10);
    assert_int_equal(ms->ops->object_put(ms, RESTORED_KIND, "east", value, &e), 0);
    assert_string_equal(rc_state(ms, "east", &d1, got, sizeof(got)), "none");
    assert_string_equal(rc_state(ms, "east", &d2, got, sizeof(got)), "none");
    assert_string_equal(rc_state(ms, self, &d1, got, sizeof(got)), "Completed");
    /* ... and when they come later: relayed as an event, or in a state record */
    ev = rc_report("east", 3, h + 5, &d1, 20, p1, sizeof(p1));
    rc_apply(ms, &ev);
    assert_string_equal(rc_state(ms, "east", &d1, got, sizeof(got)), "none");
    ev = rc_report("east", 1, h + 5, &d2, 20, p2, sizeof(p2));
    assert_int_equal(ms->ops->state_merge(ms, &ev, 0, &e), 0);
    assert_string_equal(rc_state(ms, "east", &d2, got, sizeof(got)), "none");
    /* its reports after it reopened count */
    ev = rc_report("east", 4, h + 20, &d1, 30, p1, sizeof(p1));
    rc_apply(ms, &ev);
    assert_string_equal(rc_state(ms, "east", &d1, got, sizeof(got)), "Completed");

    /* A marker of an earlier reopening, written later by another region: the cut stays at
     * the highest (a report between the two is still refused), and newer reports stay. */
    const int64_t later = (int64_t)3600000 << 16; /* an hour on: wins by clock */
    rc_marker_from_west(ms, 1, h + later, "east", h + 2);
    ev = rc_report("east", 5, h + 8, &d3, 40, p3, sizeof(p3));
    rc_apply(ms, &ev);
    assert_string_equal(rc_state(ms, "east", &d3, got, sizeof(got)), "none");
    assert_string_equal(rc_state(ms, "east", &d1, got, sizeof(got)), "Completed");
    char *have = NULL;
    assert_int_equal(ms->ops->object_get(ms, RESTORED_KIND, "east", &have, &e), 0);
    assert_non_null(strstr(have, "\"opened\""));
    assert_int_equal(sq_restored_opened(have), h + 10);
    free(have);
    /* A later reopening merged from a peer moves the cut up and drops what is below it. */
    rc_marker_from_west(ms, 2, h + later + 1, "east", h + 25);
    assert_string_equal(rc_state(ms, "east", &d1, got, sizeof(got)), "none");
    /* Written here with an earlier reopening after that (a puller here that read the marker
     * before the merge): the highest stays here too, as in every region its event reaches,
     * and a report between the two is still refused. */
    snprintf(value, sizeof(value), "{\"opened\":%" PRId64 "}", h + 10);
    assert_int_equal(ms->ops->object_put(ms, RESTORED_KIND, "east", value, &e), 0);
    assert_int_equal(ms->ops->object_get(ms, RESTORED_KIND, "east", &have, &e), 0);
    assert_int_equal(sq_restored_opened(have), h + 25);
    free(have);
    ev = rc_report("east", 6, h + 22, &d1, 50, p1, sizeof(p1));
    rc_apply(ms, &ev);
    assert_string_equal(rc_state(ms, "east", &d1, got, sizeof(got)), "none");

    /* A marker of this region's own name, heard from a peer: it keeps its rows and reports
     * each again, as an event of its name above the opening clock. */
    int64_t before_seq, before_hlc, after_seq, after_hlc;
    assert_int_equal(ms->ops->origin_newest(ms, self, &before_seq, &before_hlc, &e), 0);
    rc_marker_from_west(ms, 3, h + later + 2, self, h + 50);
    assert_string_equal(rc_state(ms, self, &d1, got, sizeof(got)), "Completed");
    assert_int_equal(ms->ops->origin_newest(ms, self, &after_seq, &after_hlc, &e), 0);
    assert_int_equal(after_seq, before_seq + 1); /* one row of its own: one report */
    assert_true(after_hlc > h + later + 2);
    /* Written here (not merged), such a marker reports nothing again. */
    snprintf(value, sizeof(value), "{\"opened\":%" PRId64 "}", h + 60);
    assert_int_equal(ms->ops->object_put(ms, RESTORED_KIND, self, value, &e), 0);
    assert_int_equal(ms->ops->origin_newest(ms, self, &before_seq, &before_hlc, &e), 0);
    assert_int_equal(before_seq, after_seq + 1); /* the object's own event only */
}

#endif
