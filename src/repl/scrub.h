/* The scrub: a background thread that re-reads every stored blob at a bounded rate
 * (--scrub-rate) and checks its size and digest against what the metastore recorded,
 * every --scrub-interval and on request. It finds damage no write made (bit rot, a bad
 * disk, a restore gone wrong) before a client pulls it; a bad copy is quarantined by the
 * blobstore and recovered through repl_blob_recover (a peer's copy, or reported). */
#ifndef MERIDIAN_SCRUB_H
#define MERIDIAN_SCRUB_H

#include <jansson.h>
#include <stdbool.h>

struct registry;
struct scrub;

/* Starts the scrub thread of reg (which must outlive it). The first pass is due one
 * interval after the last completed one (kept in DATA/scrub.last across restarts); with
 * scrub_interval_s 0 passes run only on request. */
struct scrub *scrub_start(struct registry *reg);
/* Stops the thread (an ongoing pass is interrupted between two chunks) and frees s.
 * Accepts NULL. */
void scrub_stop(struct scrub *s);
/* Asks for a pass now. Returns false if one is already running (it goes on). */
bool scrub_request(struct scrub *s);
/* State as a JSON object (new reference): running, schedule, the last pass's counts and
 * the quarantined copies. */
json_t *scrub_status_json(struct scrub *s);

#endif
