/* Geo-replication engine of one region (docs/replication.md): pulls every peer's event
 * log with a long poll, merges events into local state, fetches the content of
 * manifests this region must hold from the nearest peer that has it, reports
 * per-artifact status, and periodically compares digest summaries with peers to
 * repair anything an event stream missed. Threads: one puller per peer, fetch
 * workers, and a manager (peer set, round-trip probes, anti-entropy, long-poll
 * wake-ups). Request threads never wait on the network here except for the
 * push-that-splits fetch (repl_fetch_blob_now) and a pull's miss (repl_fetch_blob_within,
 * repl_pull_manifest), bounded and holding no lock. */
#ifndef MERIDIAN_REPL_H
#define MERIDIAN_REPL_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "authz.h"
#include "buf.h"
#include "digest.h"
#include "err.h"
#include "http.h"

struct registry;
struct repl;

/* Creates the replication of reg (threads not started) and registers its per-peer gauges
 * as a metrics source (metrics.h), unregistered by repl_free. */
struct repl *repl_new(struct registry *reg);
/* Records this region as a replication of the registry (first start) and starts the
 * threads. */
int repl_start(struct repl *r, struct err *e);
/* Stops the threads and answers every suspended long poll. */
void repl_stop(struct repl *r);
void repl_free(struct repl *r);

/* Long polls of the peer API: resumes req when the log grows past seen_head, when a peer's
 * own acknowledgement changes past seen_acks (compact_acks_changed: the answer relays it),
 * or at deadline_ms (wall clock). Called from the request's park callback (http.h): req
 * is suspended, and belongs to the replication engine until it is resumed. */
void repl_wait_register(struct repl *r, struct http_req *req, int64_t seen_head,
                        uint64_t seen_acks, int64_t deadline_ms);

/* Replications (regions of the registry) as a JSON array, each with live state
 * (state, lagEvents, lagSeconds, bytesToCopy, isLocal) and, when known, the region's
 * latitude and longitude. location NULL = all. */
json_t *repl_replications_json(struct repl *r, const char *location);
/* Adds a region: records it and introduces this region to it. ERR_CONFLICT if it
 * exists, ERR_BAD_REQUEST for bad input, ERR_UNAVAILABLE if it cannot be reached. */
int repl_add(struct repl *r, const char *location, const char *endpoint, struct err *e);
/* Removes a region. ERR_NOT_FOUND if unknown. */
int repl_remove(struct repl *r, const char *location, struct err *e);
/* This region was removed by another (peer API): it leaves the registry. */
int repl_leave(struct repl *r, const char *registry_name, const char *location, struct err *e);
/* Accepts an introduction from region `location` at `endpoint` (peer API); geo (may be
 * NULL) holds its "latitude" and "longitude" when it has a --region-location. */
int repl_introduce(struct repl *r, const char *registry_name, const char *location,
                   const char *endpoint, const json_t *geo, struct err *e);
/* This region's coordinates as {"latitude","longitude"} (empty without
 * --region-location); caller decrefs. */
json_t *repl_self_geo(struct repl *r);

/* The event log grew (a local write): wakes the long polls waiting on it now rather
 * than at the next 25 ms tick. */
void repl_log_grew(struct repl *r);
/* Wakes the fetch workers (a manifest became pending). */
void repl_kick(struct repl *r);
/* Records and announces this region's status of repo@d (a status event), ordered with the
 * fetch workers' own status events of it (their progress never lands after it). */
void repl_report_status(struct repl *r, const char *repo, const struct digest *d,
                        const char *state, const char *details);
/* This region holds copies copies of repo@d (the copies pass): announced in a status event
 * (its state unchanged) when it differs from the last count this region reported. */
void repl_report_copies(struct repl *r, const char *repo, const struct digest *d, int64_t copies);
/* Live progress of this region's copy of repo@digest, if a fetch is running. */
bool repl_progress(struct repl *r, const char *repo, const struct digest *d, int64_t *done,
                   int64_t *total);
/* Sent with every blob fetch from a peer, valued with the fetching region's name: a region
 * answers such a GET from what it holds and never fetches it from its own peers in turn (no
 * chains, no fetch loops); authz reads for the named region only what it may hold. */
#define REPL_FETCH_HEADER AUTHZ_PEER_FETCH_HEADER

/* A manifest PUT names blob d that repo does not link in this region: fetch it now from
 * a peer that links it in repo (a push never splits), or link the copy held here for
 * another repository once a peer confirms repo links d. ERR_BLOB_UNKNOWN if no peer
 * links d in repo. */
int repl_fetch_blob_now(struct repl *r, const char *repo, const struct digest *d,
                        struct err *e);
/* The same, for a pull (issue 14): waits at most wait_ms (0: no limit) for a fetch of d
 * already running here (a stalled one must not hold the client), then ERR_BLOB_UNKNOWN. */
int repl_fetch_blob_within(struct repl *r, const char *repo, const struct digest *d,
                           int64_t wait_ms, struct err *e);

/* Pull never misses (issue 14): a GET or HEAD of manifest ref (tag or digest) of repo that
 * this region does not show. Asks the peers, nearest reachable first, each bounded by its
 * round trip plus a margin, for the tag's register and the manifest (with its children);
 * merges what they have as anti-entropy does (so the replicated event is a no-op when it
 * arrives), fetches the blobs and links them in repo (single-flight with the fetch
 * workers), and makes the manifest visible. Single-flight per (repo, ref): concurrent
 * misses wait for the first (at most 10 s). 0 when the caller should look again. */
int repl_pull_manifest(struct repl *r, const char *repo, const char *ref);

/* The copy of blob d here was found damaged (and quarantined) or is missing although
 * recorded. With repo (a request names it), fetch it back now from a peer that holds it,
 * as the push that splits does: 0 once it is back. Otherwise, or when no peer has it,
 * every manifest needing it is hidden until the fetch workers bring it back or it is
 * pushed again (visible means pullable), the event is logged, and -1 is returned with
 * ERR_BLOB_UNKNOWN; -1 with ERR_UNAVAILABLE and nothing hidden when the metadata store
 * did not grant the exclusive GC fence (the next read tries again). Waits on the network
 * (peers) but holds no lock. reg->repl may be NULL (replication off). */
int repl_blob_recover(struct registry *reg, const char *repo, const struct digest *d,
                      struct err *e);
/* The regions an artifact must reach (every replication today), as a NULL-terminated
 * array of names (caller frees with repl_free_names). */
char **repl_target_regions(struct repl *r);
void repl_free_names(char **names);
/* GET of the peer API path (under /_meridian/v1/) at region location with the peer
 * credentials: the JSON answer (caller decrefs), or NULL with e set (ERR_NOT_FOUND: not a
 * peer; ERR_UNAVAILABLE: no answer or not 200). Waits on the network: request threads use
 * it only where an answer needs every region (the compliance report). */
json_t *repl_peer_get(struct repl *r, const char *location, const char *path, long timeout_ms,
                      struct err *e);

#endif
