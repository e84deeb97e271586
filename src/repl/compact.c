/* Event-log compaction's thread (compact.h).
 *
 *   idle --(compact_interval)--> pass: stable = compact_stable(vv, peers' acks)
 *        --> per origin, batches of COMPACT_BATCH events dropped (one short write
 *            transaction each: a push waits for one batch at most)
 *        --> batches of expired tombstones removed --> idle
 *   compact_run (management API) --> the same pass, serialized with the thread's
 *   a peer's poll --compact_note_ack--> acks[] (memory: the status of a tag reads it)
 *        --> written to peer_acks by this thread, at most once a second per peer
 *
 * Of the nodes of a scale-out region, only the holder of the background-work lease
 * (server/lease.c) runs the scheduled passes: one pass per region, not one per node.
 *
 * Which events may go: an event is dropped once every live peer has acknowledged it (its
 * version vector, sent when it pulls, covers it). Its effect is then in every live
 * region's tables, and a region that needs it later (a new region, or one back from
 * beyond --compact-horizon) gets those tables as a snapshot, so nothing needs the event
 * itself any more: superseded or not, its state can be rebuilt from the tables. The newest
 * event of each origin stays (the clock is seeded from it at restart). Tombstones are the
 * exception: their rows are the state that keeps a deleted manifest deleted, so they stay
 * for --tombstone-retention after every live peer has applied them. */
#include "compact.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "buf.h"
#include "hlc.h"
#include "log.h"
#include "metrics.h"
#include "registry_ctx.h"
#include "repl_codec.h"
#include "util.h"

#define COMPACT_MAGIC 0x636d7063u /* "cmpc" */
#define ACK_WRITE_MIN_MS 1000     /* a peer's acknowledgement is written at most this often */
#define ACKS_KEPT 256 /* the peers, and what each relays of the others */

/* What one peer last acknowledged, as this node heard it: the newest text (read by the
 * status of a tag at once, compact_acks_seen) and whether the store has it yet. The
 * compaction thread writes it, at most once per ACK_WRITE_MIN_MS per peer, and never
 * leaves the newest unwritten: a peer that acknowledged and then went quiet (its next poll
 * held for up to 10 s) is known to other nodes and after a restart within a second.
 * A relayed one (what region ABOUT acknowledged to region VIA, as VIA answered a poll of
 * this region) is kept the same way under the name "ABOUT@VIA" (compact_relay_name). */
struct ack_note {
    char peer[COMPACT_RELAY_NAME_MAX];
    char *latest;     /* NULL: none heard */
    int64_t heard_ms; /* when the peer acknowledged it (a relayed one: as VIA heard it) */
    int64_t written_ms;
    bool is_pending; /* latest is not in the store yet */
    bool is_now;     /* ... and is due at once (below the horizon) */
};

struct compact {
    unsigned magic;
    struct registry *reg;
    pthread_t thread;
    pthread_mutex_t run_mu; /* one pass at a time */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    /* Under mu: */
    bool is_stopping;
    int64_t last_run_ms;
    int64_t last_run_duration_ms;
    uint64_t passes;
    uint64_t events_dropped;
    uint64_t tombs_removed;
    uint64_t errors;
    uint64_t acks_changed; /* bumped when a peer's own acknowledgement changes */
    struct ack_note acks[ACKS_KEPT];
};

void compact_stable(const struct meta_vv *mine, const struct compact_peer *peers, size_t n,
                    int64_t now_ms, int64_t horizon_ms, struct meta_vv *out)
{
    memset(out, 0, sizeof(*out));
    out->origins = xcalloc(mine->n + 1, sizeof(char *));
    out->seqs = xcalloc(mine->n + 1, sizeof(int64_t));
    for (size_t i = 0; i < mine->n; i++) {
        int64_t stable = mine->seqs[i] - 1; /* the newest event of an origin stays */
        for (size_t k = 0; k < n; k++) {
            if (horizon_ms > 0 && peers[k].acked_ms < now_ms - horizon_ms)
                continue; /* silent past the horizon: it will catch up from a snapshot */
            int64_t acked = peers[k].acked ? meta_vv_get(peers[k].acked, mine->origins[i]) : 0;
            if (acked < stable)
                stable = acked;
        }
        out->origins[out->n] = xstrdup(mine->origins[i]);
        out->seqs[out->n++] = stable > 0 ? stable : 0;
    }
}

bool compact_is_below(const struct meta_vv *vv, const struct meta_horizon *h, size_t n,
                      const char **origin)
{
    for (size_t i = 0; i < n; i++) {
        if (meta_vv_get(vv, h[i].origin) < h[i].seq) {
            if (origin)
                *origin = h[i].origin;
            return true;
        }
    }
    return false;
}

int64_t compact_tombs_cutoff_hlc(struct registry *reg, int64_t now_ms)
{
    int64_t before_ms = now_ms - reg->cfg->tombstone_retention_s * 1000;
    if (reg->cfg->tombstone_retention_s <= 0 || before_ms <= 0)
        return 0;
    return (int64_t)((uint64_t)before_ms << 16);
}

int64_t compact_tombs_cutoff(const struct meta_horizon *applied, size_t n_applied,
                             const struct compact_peer *peers, size_t n, int64_t now_ms,
                             int64_t horizon_ms, int64_t retention_ms, struct compact_hold *held)
{
    if (held != NULL)
        *held = (struct compact_hold){0};
    int64_t before_ms = now_ms - retention_ms;
    if (retention_ms <= 0 || before_ms <= 0)
        return 0;
    int64_t cutoff = (int64_t)((uint64_t)before_ms << 16);
    for (size_t k = 0; k < n; k++) {
        if (horizon_ms > 0 && peers[k].acked_ms < now_ms - horizon_ms) {
            if (held != NULL)
                *held = (struct compact_hold){.peer = peers[k].location, .is_silent = true};
            return 0; /* silent: it may be cut off and writing, not stopped */
        }
        const struct meta_vv *acked = peers[k].acked;
        for (size_t i = 0; acked != NULL && i < acked->n; i++) {
            const struct meta_horizon *mine =
                meta_horizon_find(applied, n_applied, acked->origins[i]);
            if (mine != NULL && mine->seq >= acked->seqs[i])
                continue;
            /* The peer holds events of this origin not applied here yet: they carry
             * clocks above the newest applied one, and a put among them is older than
             * any tombstone above that clock, which must be here when it arrives. */
            int64_t newest = mine != NULL ? mine->hlc : 0;
            if (newest < cutoff) {
                cutoff = newest;
                if (held != NULL)
                    *held = (struct compact_hold){.peer = peers[k].location,
                                                  .origin = acked->origins[i]};
            }
        }
    }
    return cutoff;
}

static bool is_stopping(struct compact *c)
{
    AZ(pthread_mutex_lock(&c->mu));
    bool v = c->is_stopping;
    AZ(pthread_mutex_unlock(&c->mu));
    return v;
}

/* The peers of this registry (replication objects but this region) with their acks; with
 * record_unseen, a peer never seen pulling is recorded now, so that its silence is
 * measured from here (otherwise it counts as acknowledging now). */
static int peers_load(struct registry *reg, bool record_unseen, struct compact_peer **out,
                      struct meta_vv **vvs, size_t *n_out)
{
    struct metastore *ms = reg->ms;
    struct meta_name_list keys = {0}, values = {0};
    struct meta_peer_ack *acks = NULL;
    size_t n_acks = 0;
    struct err e = {0};
    *out = NULL;
    *vvs = NULL;
    *n_out = 0;
    if (ms->ops->object_list(ms, "replication", &keys, &values, &e) != 0 ||
        ms->ops->peer_acks(ms, &acks, &n_acks, &e) != 0) {
        meta_name_list_fini(&keys);
        meta_name_list_fini(&values);
        log_warn("compact", "failed to read the peers: %s", err_message(&e));
        return -1;
    }
    struct compact_peer *peers = xcalloc(keys.n + 1, sizeof(*peers));
    struct meta_vv *parsed = xcalloc(keys.n + 1, sizeof(*parsed));
    size_t n = 0;
    int64_t now = util_now_ms();
    for (size_t i = 0; i < keys.n; i++) {
        if (strcmp(keys.names[i], reg->cfg->region) == 0)
            continue;
        const struct meta_peer_ack *a = NULL;
        for (size_t k = 0; k < n_acks && a == NULL; k++)
            a = strcmp(acks[k].peer, keys.names[i]) == 0 ? &acks[k] : NULL;
        peers[n].location = xstrdup(keys.names[i]);
        if (a != NULL && repl_codec_vv_parse(a->vv, &parsed[n], &e) == 0) {
            peers[n].acked = &parsed[n];
            peers[n].acked_ms = a->acked_ms;
        } else {
            peers[n].acked_ms = a != NULL ? a->acked_ms : now;
            if (a == NULL && record_unseen)
                ms->ops->peer_ack_set(ms, keys.names[i], "", now, &e);
        }
        n++;
    }
    meta_name_list_fini(&keys);
    meta_name_list_fini(&values);
    meta_peer_ack_list_fini(acks, n_acks);
    *out = peers;
    *vvs = parsed;
    *n_out = n;
    return 0;
}

static void peers_free(struct compact_peer *peers, struct meta_vv *vvs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free((char *)peers[i].location);
        meta_vv_fini(&vvs[i]);
    }
    free(peers);
    free(vvs);
}

/* The cutoff from what the store holds now (applied: its origin clocks); 0 when it cannot
 * be read (nothing expires). held (may be NULL): what holds it back. */
static int64_t tombs_cutoff_of(struct registry *reg, const struct compact_peer *peers, size_t n,
                               int64_t now_ms, struct compact_hold *held)
{
    struct metastore *ms = reg->ms;
    struct meta_horizon *applied = NULL;
    size_t n_applied = 0;
    struct err e = {0};
    if (ms->ops->origin_clocks(ms, &applied, &n_applied, &e) != 0) {
        log_warn("compact", "failed to read the origin clocks: %s", err_message(&e));
        return 0;
    }
    int64_t cutoff = compact_tombs_cutoff(applied, n_applied, peers, n, now_ms,
                                          reg->cfg->compact_horizon_s * 1000,
                                          reg->cfg->tombstone_retention_s * 1000, held);
    meta_horizon_list_fini(applied, n_applied);
    return cutoff;
}

/* For the status: the cutoff in ms now (0: none may expire) and what holds it back
 * (null, or {"peer", "origin"} / {"peer", "silent": true}). */
static json_t *tombs_hold_json(struct registry *reg, int64_t now_ms, int64_t *cutoff_ms)
{
    struct compact_peer *peers;
    struct meta_vv *vvs;
    size_t n;
    *cutoff_ms = 0;
    if (peers_load(reg, false, &peers, &vvs, &n) != 0)
        return json_null();
    struct compact_hold held = {0};
    *cutoff_ms = tombs_cutoff_of(reg, peers, n, now_ms, &held) >> 16;
    json_t *out = json_null();
    if (held.is_silent)
        out = json_pack("{s:s, s:b}", "peer", held.peer, "silent", 1);
    else if (held.origin != NULL)
        out = json_pack("{s:s, s:s}", "peer", held.peer, "origin", held.origin);
    peers_free(peers, vvs, n);
    return out;
}

/* One pass, at most max_batches transactions (0: until done). */
static void pass(struct compact *c, size_t max_batches, uint64_t *n_events, uint64_t *n_tombs,
                 uint64_t *n_errors)
{
    struct registry *reg = c->reg;
    struct metastore *ms = reg->ms;
    struct err e = {0};
    int64_t started = util_now_ms();
    AZ(pthread_mutex_lock(&c->run_mu));
    struct meta_vv mine = {0}, stable = {0};
    struct compact_peer *peers = NULL;
    struct meta_vv *vvs = NULL;
    size_t n_peers = 0, batches = 0;
    if (ms->ops->vv_get(ms, &mine, &e) != 0 || peers_load(reg, true, &peers, &vvs, &n_peers) != 0) {
        (*n_errors)++;
        goto out;
    }
    compact_stable(&mine, peers, n_peers, started, reg->cfg->compact_horizon_s * 1000, &stable);
    for (size_t i = 0; i < stable.n && !is_stopping(c); i++) {
        for (;;) {
            size_t n = 0;
            if (max_batches > 0 && batches >= max_batches)
                break;
            if (ms->ops->log_compact(ms, stable.origins[i], stable.seqs[i], COMPACT_BATCH, &n,
                                     &e) != 0) {
                log_warn("compact", "failed to compact events of %s: %s", stable.origins[i],
                         err_message(&e));
                (*n_errors)++;
                break;
            }
            batches++;
            *n_events += n;
            if (n < COMPACT_BATCH || is_stopping(c))
                break;
        }
    }
    /* Read after the events went: tombstones follow the rule of compact_tombs_cutoff. */
    int64_t before_hlc = tombs_cutoff_of(reg, peers, n_peers, started, NULL);
    if (before_hlc > 0) {
        while (!is_stopping(c) && (max_batches == 0 || batches < max_batches)) {
            size_t n = 0;
            if (ms->ops->tombs_expire(ms, before_hlc, COMPACT_BATCH, &n, &e) != 0) {
                log_warn("compact", "failed to expire tombstones: %s", err_message(&e));
                (*n_errors)++;
                break;
            }
            batches++;
            *n_tombs += n;
            if (n == 0)
                break;
        }
    }
out:
    meta_vv_fini(&mine);
    meta_vv_fini(&stable);
    peers_free(peers, vvs, n_peers);
    AZ(pthread_mutex_unlock(&c->run_mu));
    AZ(pthread_mutex_lock(&c->mu));
    c->passes++;
    c->last_run_ms = util_now_ms();
    c->last_run_duration_ms = c->last_run_ms - started;
    c->events_dropped += *n_events;
    c->tombs_removed += *n_tombs;
    c->errors += *n_errors;
    AZ(pthread_mutex_unlock(&c->mu));
    if (*n_events > 0 || *n_tombs > 0)
        log_info("compact",
                 "dropped %" PRIu64 " events and %" PRIu64 " tombstones in %" PRId64 " ms",
                 *n_events, *n_tombs, util_now_ms() - started);
}

json_t *compact_run(struct compact *c, struct err *e)
{
    (void)e;
    uint64_t n_events = 0, n_tombs = 0, n_errors = 0;
    pass(c, 0, &n_events, &n_tombs, &n_errors);
    return json_pack("{s:I, s:I, s:I}", "events_dropped", (json_int_t)n_events,
                     "tombstones_removed", (json_int_t)n_tombs, "errors", (json_int_t)n_errors);
}

json_t *compact_status_json(struct compact *c)
{
    struct registry *reg = c->reg;
    struct metastore *ms = reg->ms;
    struct err e = {0};
    int64_t n_events = -1, n_tombs = -1;
    ms->ops->log_stats(ms, &n_events, &n_tombs, &e);
    json_t *horizon = json_object();
    struct meta_horizon *h = NULL;
    size_t nh = 0;
    if (ms->ops->log_horizon(ms, &h, &nh, &e) == 0) {
        for (size_t i = 0; i < nh; i++)
            json_object_set_new(horizon, h[i].origin, json_integer(h[i].seq));
        meta_horizon_list_fini(h, nh);
    }
    json_t *peers = json_array(), *relayed = json_array();
    struct meta_peer_ack *acks = NULL;
    size_t na = 0;
    if (ms->ops->peer_acks(ms, &acks, &na, &e) == 0) {
        for (size_t i = 0; i < na; i++) {
            const char *at = strchr(acks[i].peer, '@');
            if (at != NULL) {
                /* what another region relayed: for the status of a tag only */
                json_array_append_new(
                    relayed, json_pack("{s:s%, s:s, s:s, s:I}", "region", acks[i].peer,
                                       (size_t)(at - acks[i].peer), "via", at + 1, "acked",
                                       acks[i].vv, "acked_ms", (json_int_t)acks[i].acked_ms));
                continue;
            }
            json_array_append_new(
                peers, json_pack("{s:s, s:s, s:I, s:b}", "region", acks[i].peer, "acked",
                                 acks[i].vv, "acked_ms", (json_int_t)acks[i].acked_ms, "expired",
                                 reg->cfg->compact_horizon_s > 0 &&
                                     acks[i].acked_ms <
                                         util_now_ms() - reg->cfg->compact_horizon_s * 1000));
        }
        meta_peer_ack_list_fini(acks, na);
    }
    /* What may expire now: tombstones older than this (0: none may). */
    int64_t cutoff_ms;
    json_t *held = tombs_hold_json(reg, util_now_ms(), &cutoff_ms);
    AZ(pthread_mutex_lock(&c->mu));
    json_t *out = json_pack(
        "{s:s, s:b, s:I, s:I, s:I, s:I, s:I, s:I, s:o, s:o, s:o, s:I, s:I, s:I, s:I, s:I, s:I}",
        "region", reg->cfg->region, "is_scheduled_here", (int)registry_is_owner(reg), "interval_s",
        (json_int_t)reg->cfg->compact_interval_s, "horizon_s",
        (json_int_t)reg->cfg->compact_horizon_s, "tombstone_retention_s",
        (json_int_t)reg->cfg->tombstone_retention_s, "log_events", (json_int_t)n_events,
        "tombstones", (json_int_t)n_tombs, "tombstone_cutoff_ms", (json_int_t)cutoff_ms,
        "tombstones_held_by", held, "log_horizon", horizon, "peers", peers, "passes",
        (json_int_t)c->passes, "last_run_ms", (json_int_t)c->last_run_ms, "last_run_duration_ms",
        (json_int_t)c->last_run_duration_ms, "events_dropped", (json_int_t)c->events_dropped,
        "tombstones_removed", (json_int_t)c->tombs_removed, "errors", (json_int_t)c->errors);
    AZ(pthread_mutex_unlock(&c->mu));
    json_object_set_new(out, "relayed_acks", relayed);
    return out;
}

/* The slot of name, else a free one, else the one written longest ago made free for it;
 * under c->mu. (A free slot first: before, a second peer heard before the first peer's
 * acknowledgement was written took that peer's slot, written_ms 0 like a free one.) A
 * relayed one ("about@via") never takes a region's own, and a region's own takes a relayed
 * one first: past 16 regions they do not all fit, and a region's own that was pushed out
 * is what compaction writes down, and counted as changed when it came back (its next
 * poll), which woke every parked poll. NULL: no slot for a relayed one (then the store's
 * copy is what the status reads). */
static struct ack_note *ack_slot(struct compact *c, const char *name)
{
    bool is_relayed = strchr(name, '@') != NULL;
    struct ack_note *oldest = NULL;
    int oldest_rank = 3;
    for (size_t i = 0; i < ACKS_KEPT; i++) {
        struct ack_note *a = &c->acks[i];
        if (strcmp(a->peer, name) == 0)
            return a;
        int rank = a->peer[0] == '\0' ? 0 : strchr(a->peer, '@') != NULL ? 1 : 2;
        if ((is_relayed && rank == 2) || rank > oldest_rank)
            continue;
        if (oldest == NULL || rank < oldest_rank || a->written_ms < oldest->written_ms) {
            oldest = a;
            oldest_rank = rank;
        }
    }
    if (oldest == NULL)
        return NULL;
    free(oldest->latest);
    *oldest = (struct ack_note){0};
    snprintf(oldest->peer, sizeof(oldest->peer), "%s", name);
    return oldest;
}

void compact_note_ack(struct compact *c, const char *peer, const char *vv_text, bool is_now)
{
    if (c == NULL || peer == NULL)
        return;
    const char *text = vv_text ? vv_text : "";
    AZ(pthread_mutex_lock(&c->mu));
    struct ack_note *slot = ack_slot(c, peer);
    slot->heard_ms = util_now_ms();
    if (slot->latest == NULL || strcmp(slot->latest, text) != 0 || is_now) {
        if (slot->latest == NULL || strcmp(slot->latest, text) != 0)
            c->acks_changed++;
        free(slot->latest);
        slot->latest = xstrdup(text);
        slot->is_pending = true;
        slot->is_now |= is_now;
    } else if (slot->heard_ms - slot->written_ms >= ACK_WRITE_MIN_MS) {
        slot->is_pending = true; /* the same again: acked_ms says the peer is still pulling */
    }
    if (slot->is_pending)
        AZ(pthread_cond_broadcast(&c->cv));
    AZ(pthread_mutex_unlock(&c->mu));
}

bool compact_relay_name(const char *about, const char *via, char *out, size_t size)
{
    int n = snprintf(out, size, "%s@%s", about, via);
    return n > 0 && (size_t)n < size;
}

void compact_note_relayed(struct compact *c, const char *about, const char *via,
                          const char *vv_text, int64_t heard_ms)
{
    char name[COMPACT_RELAY_NAME_MAX];
    if (c == NULL || vv_text == NULL || vv_text[0] == '\0' ||
        !compact_relay_name(about, via, name, sizeof(name)))
        return;
    AZ(pthread_mutex_lock(&c->mu));
    struct ack_note *slot = ack_slot(c, name);
    if (slot == NULL) {
        AZ(pthread_mutex_unlock(&c->mu));
        return;
    }
    /* Two answers of via may arrive out of order only across its nodes: keep the newer. */
    if (slot->latest == NULL || heard_ms >= slot->heard_ms) {
        slot->heard_ms = heard_ms;
        if (slot->latest == NULL || strcmp(slot->latest, vv_text) != 0) {
            free(slot->latest);
            slot->latest = xstrdup(vv_text);
            slot->is_pending = true;
            AZ(pthread_cond_broadcast(&c->cv));
        }
    }
    AZ(pthread_mutex_unlock(&c->mu));
}

/* Is name region's own acknowledgement, or one relayed about region ("region@via")? */
static bool is_ack_of(const char *name, const char *region)
{
    size_t n = strlen(region);
    return strncmp(name, region, n) == 0 && (name[n] == '\0' || name[n] == '@');
}

char **compact_acks_seen(struct compact *c, const char *region)
{
    char **out = xcalloc(1, sizeof(*out));
    if (c == NULL || region == NULL)
        return out;
    size_t n = 0;
    AZ(pthread_mutex_lock(&c->mu));
    for (size_t i = 0; i < ACKS_KEPT; i++) {
        if (c->acks[i].latest == NULL || !is_ack_of(c->acks[i].peer, region))
            continue;
        out = xrealloc(out, (n + 2) * sizeof(*out));
        out[n++] = xstrdup(c->acks[i].latest);
        out[n] = NULL;
    }
    AZ(pthread_mutex_unlock(&c->mu));
    return out;
}

void compact_acks_seen_free(char **texts)
{
    for (size_t i = 0; texts != NULL && texts[i] != NULL; i++)
        free(texts[i]);
    free(texts);
}

bool compact_ack_is_about(const char *name, const char *region)
{
    return is_ack_of(name, region);
}

char *compact_ack_newest(struct compact *c, const char *region,
                         const struct meta_peer_ack *stored, size_t n_stored)
{
    const char *best = NULL;
    int64_t best_ms = INT64_MIN;
    for (size_t i = 0; region != NULL && i < n_stored; i++) {
        if (stored[i].vv[0] != '\0' && is_ack_of(stored[i].peer, region) &&
            stored[i].acked_ms > best_ms) {
            best = stored[i].vv;
            best_ms = stored[i].acked_ms;
        }
    }
    char *out = best != NULL ? xstrdup(best) : NULL;
    if (c == NULL || region == NULL)
        return out;
    AZ(pthread_mutex_lock(&c->mu));
    for (size_t i = 0; i < ACKS_KEPT; i++) {
        const struct ack_note *a = &c->acks[i];
        /* Memory first on a tie: the store has it from this node, or an older copy. */
        if (a->latest == NULL || a->latest[0] == '\0' || !is_ack_of(a->peer, region) ||
            a->heard_ms < best_ms)
            continue;
        free(out);
        out = xstrdup(a->latest);
        best_ms = a->heard_ms;
    }
    AZ(pthread_mutex_unlock(&c->mu));
    return out;
}

uint64_t compact_acks_changed(struct compact *c)
{
    if (c == NULL)
        return 0;
    AZ(pthread_mutex_lock(&c->mu));
    uint64_t v = c->acks_changed;
    AZ(pthread_mutex_unlock(&c->mu));
    return v;
}

json_t *compact_relay_json(struct compact *c, const char *to)
{
    json_t *out = json_object();
    if (c == NULL)
        return out;
    struct metastore *ms = c->reg->ms;
    struct meta_peer_ack *stored = NULL;
    size_t n_stored = 0;
    struct err e = {0};
    if (ms->ops->peer_acks(ms, &stored, &n_stored, &e) != 0) {
        stored = NULL;
        n_stored = 0;
    }
    int64_t now = util_now_ms();
    /* A peer's own acknowledgements only (never one relayed to this region: each relay is
     * first hand), the newer of this node's and the store's (other nodes of the region). */
    for (size_t i = 0; i < n_stored; i++) {
        const char *name = stored[i].peer;
        if (strchr(name, '@') != NULL || strcmp(name, to) == 0 || stored[i].vv[0] == '\0')
            continue;
        json_object_set_new(out, name,
                            json_pack("{s:s, s:I}", "vv", stored[i].vv, "heard_ms",
                                      (json_int_t)stored[i].acked_ms));
    }
    meta_peer_ack_list_fini(stored, n_stored);
    AZ(pthread_mutex_lock(&c->mu));
    for (size_t i = 0; i < ACKS_KEPT; i++) {
        const struct ack_note *a = &c->acks[i];
        if (a->latest == NULL || a->latest[0] == '\0' || a->peer[0] == '\0' ||
            strchr(a->peer, '@') != NULL || strcmp(a->peer, to) == 0)
            continue;
        json_t *have = json_object_get(out, a->peer);
        if (have != NULL &&
            json_integer_value(json_object_get(have, "heard_ms")) > a->heard_ms)
            continue;
        json_object_set_new(out, a->peer,
                            json_pack("{s:s, s:I}", "vv", a->latest, "heard_ms",
                                      (json_int_t)a->heard_ms));
    }
    AZ(pthread_mutex_unlock(&c->mu));
    /* Sent as an age: the two regions' clocks need not agree. */
    const char *name;
    json_t *v;
    json_object_foreach(out, name, v) {
        int64_t heard = json_integer_value(json_object_get(v, "heard_ms"));
        json_object_del(v, "heard_ms");
        json_object_set_new(v, "age_ms", json_integer(now > heard ? now - heard : 0));
    }
    return out;
}

/* When the next pending acknowledgement is due (INT64_MAX: none); under c->mu. */
static int64_t acks_due_ms(const struct compact *c)
{
    int64_t due = INT64_MAX;
    for (size_t i = 0; i < ACKS_KEPT; i++) {
        const struct ack_note *a = &c->acks[i];
        if (!a->is_pending)
            continue;
        int64_t at = a->is_now ? 0 : a->written_ms + ACK_WRITE_MIN_MS;
        due = at < due ? at : due;
    }
    return due;
}

/* Writes every acknowledgement that is due (is_all: every one not written yet, at stop).
 * This thread is the only writer and always writes a peer's newest text, so the store
 * never goes back to an older one. */
static void acks_flush(struct compact *c, bool is_all)
{
    for (;;) {
        char peer[sizeof(c->acks[0].peer)], *text = NULL;
        int64_t now = util_now_ms(), heard = now;
        AZ(pthread_mutex_lock(&c->mu));
        for (size_t i = 0; i < ACKS_KEPT && text == NULL; i++) {
            struct ack_note *a = &c->acks[i];
            if (!a->is_pending ||
                (!is_all && !a->is_now && now - a->written_ms < ACK_WRITE_MIN_MS))
                continue;
            memcpy(peer, a->peer, sizeof(peer));
            text = xstrdup(a->latest);
            heard = a->heard_ms;
            a->is_pending = a->is_now = false;
            a->written_ms = now;
        }
        AZ(pthread_mutex_unlock(&c->mu));
        if (text == NULL)
            return;
        struct err e = {0};
        if (c->reg->ms->ops->peer_ack_set(c->reg->ms, peer, text, heard, &e) != 0) {
            log_warn("compact", "failed to record what %s acknowledged: %s", peer,
                     err_message(&e));
            /* Written again at the next round (a second on), unless a newer one came. */
            AZ(pthread_mutex_lock(&c->mu));
            for (size_t i = 0; i < ACKS_KEPT; i++) {
                if (strcmp(c->acks[i].peer, peer) == 0)
                    c->acks[i].is_pending = true;
            }
            AZ(pthread_mutex_unlock(&c->mu));
            free(text);
            return;
        }
        free(text);
    }
}

bool compact_peer_is_behind(struct registry *reg, const char *peer)
{
    struct metastore *ms = reg->ms;
    struct meta_horizon *h = NULL;
    size_t nh = 0;
    struct meta_peer_ack *acks = NULL;
    size_t na = 0;
    struct err e = {0};
    if (ms->ops->log_horizon(ms, &h, &nh, &e) != 0)
        return false;
    bool is_behind = false;
    if (nh > 0 && ms->ops->peer_acks(ms, &acks, &na, &e) == 0) {
        for (size_t i = 0; i < na; i++) {
            struct meta_vv vv = {0};
            if (strcmp(acks[i].peer, peer) != 0 || acks[i].vv[0] == '\0' ||
                repl_codec_vv_parse(acks[i].vv, &vv, &e) != 0)
                continue;
            is_behind = compact_is_below(&vv, h, nh, NULL);
            meta_vv_fini(&vv);
        }
        meta_peer_ack_list_fini(acks, na);
    }
    meta_horizon_list_fini(h, nh);
    return is_behind;
}

static void render_metrics(void *arg, struct buf *out)
{
    struct compact *c = arg;
    AZ(pthread_mutex_lock(&c->mu));
    uint64_t passes = c->passes, events = c->events_dropped, tombs = c->tombs_removed,
             errors = c->errors;
    int64_t last = c->last_run_ms;
    AZ(pthread_mutex_unlock(&c->mu));
    buf_printf(out,
               "# HELP meridian_compaction_events_dropped_total Events dropped from the log.\n"
               "# TYPE meridian_compaction_events_dropped_total counter\n"
               "meridian_compaction_events_dropped_total %" PRIu64 "\n"
               "# HELP meridian_compaction_tombstones_removed_total Expired tombstones removed.\n"
               "# TYPE meridian_compaction_tombstones_removed_total counter\n"
               "meridian_compaction_tombstones_removed_total %" PRIu64 "\n"
               "# HELP meridian_compaction_passes_total Compaction passes run.\n"
               "# TYPE meridian_compaction_passes_total counter\n"
               "meridian_compaction_passes_total %" PRIu64 "\n"
               "# HELP meridian_compaction_errors_total Failed compaction batches.\n"
               "# TYPE meridian_compaction_errors_total counter\n"
               "meridian_compaction_errors_total %" PRIu64 "\n"
               "# HELP meridian_compaction_last_run_seconds When the last pass ended (Unix time).\n"
               "# TYPE meridian_compaction_last_run_seconds gauge\n"
               "meridian_compaction_last_run_seconds %.3f\n",
               events, tombs, passes, errors, (double)last / 1000.0);
}

/* The time of the next scheduled pass after now (INT64_MAX: none scheduled). */
static int64_t next_pass_ms(const struct compact *c, int64_t now)
{
    int64_t interval_s = c->reg->cfg->compact_interval_s;
    return interval_s > 0 ? now + interval_s * 1000 : INT64_MAX;
}

static void *compact_main(void *arg)
{
    struct compact *c = arg;
    ASSERT(c->magic == COMPACT_MAGIC);
    int64_t pass_ms = next_pass_ms(c, util_now_ms());
    for (;;) {
        AZ(pthread_mutex_lock(&c->mu));
        for (;;) {
            int64_t due = acks_due_ms(c);
            int64_t wake_ms = due < pass_ms ? due : pass_ms;
            if (c->is_stopping || util_now_ms() >= wake_ms)
                break;
            /* With no pass scheduled (--compact-interval 0) and nothing to write, sleep until
             * woken: a deadline of now made this loop spin. */
            if (wake_ms == INT64_MAX) {
                AZ(pthread_cond_wait(&c->cv, &c->mu));
                continue;
            }
            struct timespec until = {.tv_sec = wake_ms / 1000,
                                     .tv_nsec = (wake_ms % 1000) * 1000000};
            pthread_cond_timedwait(&c->cv, &c->mu, &until);
        }
        bool is_done = c->is_stopping;
        AZ(pthread_mutex_unlock(&c->mu));
        if (is_done)
            break;
        acks_flush(c, false);
        if (util_now_ms() < pass_ms)
            continue;
        if (!c->reg->is_removed && registry_is_owner(c->reg)) {
            /* else another node of this region holds the background-work lease */
            uint64_t n_events = 0, n_tombs = 0, n_errors = 0;
            pass(c, 0, &n_events, &n_tombs, &n_errors);
        }
        pass_ms = next_pass_ms(c, util_now_ms());
    }
    acks_flush(c, true);
    return NULL;
}

struct compact *compact_start(struct registry *reg)
{
    struct compact *c = xcalloc(1, sizeof(*c));
    c->magic = COMPACT_MAGIC;
    c->reg = reg;
    AZ(pthread_mutex_init(&c->run_mu, NULL));
    AZ(pthread_mutex_init(&c->mu, NULL));
    AZ(pthread_cond_init(&c->cv, NULL));
    AZ(metrics_source_add(render_metrics, c));
    AZ(pthread_create(&c->thread, NULL, compact_main, c));
    return c;
}

void compact_stop(struct compact *c)
{
    if (c == NULL)
        return;
    ASSERT(c->magic == COMPACT_MAGIC);
    AZ(pthread_mutex_lock(&c->mu));
    c->is_stopping = true;
    AZ(pthread_cond_broadcast(&c->cv));
    AZ(pthread_mutex_unlock(&c->mu));
    AZ(pthread_join(c->thread, NULL));
    metrics_source_remove(render_metrics, c);
    pthread_mutex_destroy(&c->run_mu);
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->cv);
    for (size_t i = 0; i < ACKS_KEPT; i++)
        free(c->acks[i].latest);
    c->magic = 0;
    free(c);
}
