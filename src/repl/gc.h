/* The garbage collector: a background thread that, every --gc-interval, reviews at most
 * GC_BATCH blobs of the metastore's review queue whose last change is older than
 * --gc-grace, and deletes those no manifest held here references and no repository links
 * (metastore.h, ms_gc_collect_f). Each group of blobs is decided and its files removed under the
 * registry's gc_lock held for writing, which upload commits and replication fetches hold
 * for reading while they store and link a blob: a blob is either linked again before its
 * review (and kept) or stored again after it. Peers reading a file being removed keep
 * their open descriptor (the bytes are served whole) or get BLOB_UNKNOWN. */
#ifndef MERIDIAN_GC_H
#define MERIDIAN_GC_H

#include <jansson.h>
#include <stdbool.h>

#include "err.h"

struct registry;
struct gc;

#define GC_BATCH 256 /* blobs reviewed per tick: bounds the work of a tick */
#define GC_GROUP 32  /* blobs decided per transaction and gc_lock hold: bounds a wait */

/* Starts the collector of reg (which must outlive it); with gc_grace_s 0 it only
 * reports. */
struct gc *gc_start(struct registry *reg);
/* Stops the thread (between two blobs) and frees g. Accepts NULL. */
void gc_stop(struct gc *g);
/* Runs a whole pass now, over every due untagged manifest then every due blob
 * (is_dry_run: decides and reports, deletes nothing). Returns a JSON object (new
 * reference): {"dry_run", "manifests":[{"repository","digest"}], "manifests_deleted",
 * "blobs":[{"digest", "size"}], "blobs_reclaimed", "bytes_reclaimed", "reviewed",
 * "files":[{"digest","size"}], "files_removed", "files_complete" (the file sweep, blob_sweep.h:
 * false when its listing failed part way), "errors"}; NULL with e set when GC is switched
 * off (--gc-grace 0 and no untagged grace). */
json_t *gc_run(struct gc *g, bool is_dry_run, struct err *e);
/* Applies the retention rules now, serialized with the collector's passes (retention_run.h
 * for the answer; NULL with e set on a store failure). */
json_t *gc_retention_run(struct gc *g, bool is_dry_run, struct err *e);
/* State as a JSON object (new reference): settings, queue length, totals, last run. */
json_t *gc_status_json(struct gc *g);

#endif
