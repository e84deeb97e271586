/* Reporting of immutable-version conflicts (docs/image-versions.md): the merge rule in
 * meta_merge.c picks the winner and records the conflict; this file tells people, once in
 * each region, when merging a replicated tag changed that record: one audit entry
 * (image-version.conflict) and the regional webhooks subscribed to "version.conflict".
 * Every path that merges a peer's tag (the event stream, anti-entropy, the snapshot, the
 * pull-through lookup) goes through before/after, so the report does not depend on which
 * of them brought the tag first. */
#ifndef MERIDIAN_VERSION_CONFLICT_H
#define MERIDIAN_VERSION_CONFLICT_H

#include "metastore.h"

struct registry;

/* Before ev is merged: the conflict record it may change (caller passes it on to
 * version_conflict_after, whatever the merge did), or NULL when ev cannot make one (not a
 * tag_set of a version). A non-NULL answer holds a process-wide lock until
 * version_conflict_after, so that two paths merging the same tag at once report once. */
char *version_conflict_before(struct registry *reg, const struct meta_event *ev);
/* After ev was merged (is_new: it was stored, false when the merge failed or was a
 * duplicate): reports when the record is new or changed. Frees before, releases the lock. */
void version_conflict_after(struct registry *reg, const struct meta_event *ev, bool is_new,
                            char *before);

#endif
