/* Last-pull times of manifests, for retention's pulledWithinS (issue 15 item 2).
 * A manifest GET notes (repository, digest) in memory: a mutex and a hash lookup, no
 * store write on the request thread. A background flush (every --pull-record-interval)
 * writes the replicated object PULL_RECORD_KIND "<repo>@<digest>" = {"pulledMs": T}
 * only when T is at least PULL_RECORD_PRECISION_MS past the stored value, so a key is
 * written at most once per hour per region however often it is pulled. Objects are
 * last-writer-wins by clock; a flush that finds the stored time older than its own
 * writes again, so every region converges on the latest pull of any region. */
#ifndef MERIDIAN_PULL_RECORD_H
#define MERIDIAN_PULL_RECORD_H

#include <stdint.h>

#include "metastore.h"

struct registry;
struct pull_record;

/* Starts the flush thread (interval: cfg->pull_record_interval_s). */
struct pull_record *pull_record_start(struct registry *reg);
/* Flushes what is pending, then stops. NULL is a no-op. */
void pull_record_stop(struct pull_record *pr);
/* Notes a pull of repo's manifest digest at now_ms. Cheap; NULL is a no-op. */
void pull_record_note(struct pull_record *pr, const char *repo, const char *digest,
                      int64_t now_ms);
/* Writes the pending pull times now (also what the thread does). Returns the number of
 * objects written, or -1 if a write failed (the failed keys stay pending). */
int pull_record_flush(struct pull_record *pr);
/* Removes the pull time of a manifest that was deleted (a replicated object delete, only
 * if one is recorded), so the records do not outlive their manifests. Logs failures. */
void pull_record_forget(struct metastore *ms, const char *repo, const char *digest);
/* The latest pull of repo's digest any region recorded (ms), 0 if none. */
int64_t pull_record_get(struct metastore *ms, const char *repo, const char *digest);

#endif
