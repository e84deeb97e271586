/* Replica counts (issue 12): the copies of each image version's blobs on this region's
 * volumes follow its profile's regionalReplicaCount and storageClass for this region.
 * A thread (copies.c) makes the copies when content arrives (push or replication) and
 * when a profile raises the count, removes extras when it is lowered (a blob keeps the
 * most any version holding it here asks for; one copy when none does), and repairs lost
 * copies from a sibling volume. Runs only over a blobstore with volumes (place != NULL). */
#ifndef MERIDIAN_COPIES_H
#define MERIDIAN_COPIES_H

#include <stdbool.h>

#include "registry_ctx.h"

struct copies;

/* Starts the thread (NULL when the blobstore has no volumes: nothing to do). */
struct copies *copies_start(struct registry *reg);
/* Asks for a pass now (a profile changed, content arrived). NULL: nothing. */
void copies_kick(struct copies *c);
void copies_stop(struct copies *c);

/* The copies every blob of manifest d of repo has here on volumes of class klass: the
 * least over its blobs (0 when one is missing). -1 when the store has no volumes or the
 * manifest is not here. */
int copies_of_manifest(struct registry *reg, const char *repo, const struct digest *d,
                       const char *klass);

#endif
