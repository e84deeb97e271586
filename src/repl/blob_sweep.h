/* The file sweep: blob files the metastore has no row of. Purges that delete rows, then
 * files (residency enforcement, residency_enforce.h; placement's release, placement.h; an
 * unlink not yet on disk, blobstore_fs.c) leave such files behind when the process dies
 * between the two; nothing else would ever remove them. The garbage collector runs the
 * sweep (gc.h): once after start-up, then every GC_SWEEP_INTERVAL_S, and on every gc_run. */
#ifndef MERIDIAN_BLOB_SWEEP_H
#define MERIDIAN_BLOB_SWEEP_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "registry_ctx.h"

#define GC_SWEEP_INTERVAL_S 3600 /* a walk of every blob file: hourly is enough for leftovers */

/* Removes the blob files stored before cutoff_ms that no row of the metastore's blobs
 * table names, each decided again under the GC fence held exclusive (an upload commit or
 * a fetch stores and links a blob under it shared, so a file on its way to its row is
 * never taken). is_dry_run: lists, removes nothing. Appends {"digest","size"} of each to
 * out (may be NULL). Returns the files removed (or that would be); *n_errors counts what
 * failed: lookups, removals (a file the store failed to remove is not counted removed)
 * and the listing. *is_complete (may be NULL): false when the listing failed part way,
 * so files may be left that this run never saw. A store that cannot list its blobs is
 * not swept: 0, complete. */
uint64_t blob_sweep_run(struct registry *reg, int64_t cutoff_ms, bool is_dry_run, json_t *out,
                        uint64_t *n_errors, bool *is_complete);

#endif
