/* Event-log compaction (docs/replication.md, "Compaction"): a background thread that,
 * every --compact-interval, drops the events every live peer has acknowledged (the
 * version vector each sends when it pulls from this region), in batches, and removes
 * tombstones (manifest tombstones and deleted tag registers) older than
 * --tombstone-retention that every live peer has applied. A peer that has not pulled for
 * longer than --compact-horizon no longer holds compaction back; when it comes back below
 * this region's log horizon it catches up from a snapshot of the tables (repl.c). */
#ifndef MERIDIAN_COMPACT_H
#define MERIDIAN_COMPACT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "metastore.h"

struct registry;
struct compact;

#define COMPACT_BATCH 1000 /* events or tombstones per transaction: bounds a push's wait */

/* A peer as compaction sees it: what it last acknowledged, and when. */
struct compact_peer {
    const char *location;
    const struct meta_vv *acked; /* NULL: never pulled from this region */
    int64_t acked_ms;            /* when it last pulled (or when it was first seen) */
};

/* The compaction rule (pure): for every origin of mine (this region's version vector),
 * the highest origin_seq that every live peer has acknowledged, never the newest event of
 * an origin (it seeds the clock at restart); peers silent since before
 * now_ms - horizon_ms do not count. Fills out (same origins as mine). */
void compact_stable(const struct meta_vv *mine, const struct compact_peer *peers, size_t n,
                    int64_t now_ms, int64_t horizon_ms, struct meta_vv *out);

/* Is a caller with version vector vv below the log horizon h (it would miss events this
 * log no longer holds)? Sets *origin to the first such origin. */
bool compact_is_below(const struct meta_vv *vv, const struct meta_horizon *h, size_t n,
                      const char **origin);

/* What holds the tombstone cutoff back (compact_tombs_cutoff): a silent peer, or a peer
 * that has acknowledged more of origin than is applied here. Names borrowed from peers. */
struct compact_hold {
    const char *peer;   /* NULL: nothing (the retention alone) */
    const char *origin; /* the origin not yet applied here, or NULL */
    bool is_silent;     /* peer is silent past the horizon */
};

/* The tombstone rule (pure): the clock below which a tombstone may expire at now_ms, 0
 * when none may (retention_ms <= 0 keeps them all); held (may be NULL): why it is lower.
 * - A peer silent past horizon_ms may be cut off and writing, not stopped: a put it made
 *   before a delete here would come back with its log if the tombstone were gone, so none
 *   expires until it is back (or removed from the registry).
 * - Otherwise tombstones older than retention_ms may go, but never one at or above the
 *   clock of an origin's newest event applied here (applied: the store's origin_clocks)
 *   while a live peer has acknowledged more of that origin than that: those events, still
 *   on their way here (a region back from a partition acknowledges before it is pulled
 *   from), may hold a put the tombstone must still beat. An origin stamps its events with
 *   an increasing clock, so theirs are above the newest applied one, and a tombstone older
 *   than that is not needed against them. */
int64_t compact_tombs_cutoff(const struct meta_horizon *applied, size_t n_applied,
                             const struct compact_peer *peers, size_t n, int64_t now_ms,
                             int64_t horizon_ms, int64_t retention_ms, struct compact_hold *held);

/* The clock below which a tombstone is older than --tombstone-retention at now_ms (0 when
 * tombstones are kept): the one state merges from peers pass to state_merge, so that a
 * tombstone this region expired is not taken back from a peer that still holds it (a
 * build without compaction keeps them). It is not lowered like the expiry pass's
 * (compact_tombs_cutoff): state_merge also requires the record to be at or below the
 * horizon of its origin, i.e. applied here once, so a tombstone it leaves out is one this
 * region removed, and one it still holds merges as a no-op. */
int64_t compact_tombs_cutoff_hlc(struct registry *reg, int64_t now_ms);

/* Starts the thread of reg (which must outlive it). */
struct compact *compact_start(struct registry *reg);
/* Stops it (between two batches) and frees c. Accepts NULL. */
void compact_stop(struct compact *c);
/* Runs a whole pass now; a JSON object (new reference) of what it did. */
json_t *compact_run(struct compact *c, struct err *e);
/* Settings, log and tombstone rows, horizon, peers' acknowledgements, totals. */
json_t *compact_status_json(struct compact *c);
/* A peer pulled with version vector vv_text: kept in memory at once (compact_ack_seen)
 * and written to the store by the compaction thread at most once a second per peer, the
 * newest one always in the end (is_now: at once, as when it is below the horizon). The
 * peer's request thread does not write. */
void compact_note_ack(struct compact *c, const char *peer, const char *vv_text, bool is_now);
/* What region acknowledged as this node heard it (newer than the store's for up to a
 * second): its own acknowledgement to this region and those relayed by other regions
 * (compact_note_relayed); a NULL-terminated list of version vector texts, empty when none
 * was heard since start. Free with compact_acks_seen_free. */
char **compact_acks_seen(struct compact *c, const char *region);
void compact_acks_seen_free(char **texts);

/* Relayed acknowledgements (docs/replication.md, "The status of a tag"). A region answers
 * a poll with what each other region last acknowledged to it (compact_relay_json), so that
 * the status of a tag in the polling region knows what a region applied through a relay
 * when it cannot poll that region itself. They are kept (memory, and the store's peer_acks
 * under the name "ABOUT@VIA") for that status only: compaction and the horizon read a
 * region's own acknowledgements, never a relayed one. */
#define COMPACT_RELAY_NAME_MAX 160 /* two region names (63 each), '@' and NUL */
/* Writes "about@via" into out; false if it does not fit. */
bool compact_relay_name(const char *about, const char *via, char *out, size_t size);
/* Is name (a peer_acks row's) region's own acknowledgement or one relayed about it? */
bool compact_ack_is_about(const char *name, const char *region);
/* The newest report of what region acknowledged (its own or one relayed about it), as this
 * node heard them and as stored (peer_acks rows, any node): the one heard last, by the time
 * the acknowledging region's poll was heard (a relayed one: by its age). Not any of them: a
 * region's vector only grows, so the newest is the largest, unless the region went back (it
 * was restored from an older copy, or removed and added again under its name), and then an
 * older report, relayed by a region it no longer polls, would count what it lost. NULL when
 * none. Caller frees. */
char *compact_ack_newest(struct compact *c, const char *region,
                         const struct meta_peer_ack *stored, size_t n_stored);
/* via told this region that about acknowledged vv_text to it at heard_ms (this node's
 * clock). An older report than the one kept is ignored. */
void compact_note_relayed(struct compact *c, const char *about, const char *via,
                          const char *vv_text, int64_t heard_ms);
/* {REGION: {"vv": text, "age_ms": N}} of every region's own newest acknowledgement to this
 * region (this node's and the store's), but the one of region to (the poller). New
 * reference. */
json_t *compact_relay_json(struct compact *c, const char *to);
/* A counter bumped whenever a peer's own acknowledgement changes: a parked poll answers
 * when it moved, so that what it relays goes on at once. */
uint64_t compact_acks_changed(struct compact *c);
/* Has peer last acknowledged less than this log's horizon? Such a region is back from
 * beyond the horizon: its state is not merged here (anti-entropy, pull-through) until it
 * has caught up from a snapshot, so that what was deleted and forgotten here does not
 * come back from it. */
bool compact_peer_is_behind(struct registry *reg, const char *peer);

#endif
