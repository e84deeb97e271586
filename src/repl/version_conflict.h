/* Reporting of immutable-version conflicts (docs/image-versions.md): the merge rule in
 * meta_merge.c picks the winner and records the conflict; this file tells people, once in
 * each region, when applying a replicated tag event changed that record: one audit entry
 * (image-version.conflict) and the regional webhooks subscribed to "version.conflict". */
#ifndef MERIDIAN_VERSION_CONFLICT_H
#define MERIDIAN_VERSION_CONFLICT_H

#include "metastore.h"

struct registry;

/* Before ev is applied: the conflict record it may change (caller passes it on to
 * version_conflict_after), or NULL when ev cannot make one (not a tag_set of a version). */
char *version_conflict_before(struct registry *reg, const struct meta_event *ev);
/* After ev was applied (is_new): reports when the record is new or changed. Frees before. */
void version_conflict_after(struct registry *reg, const struct meta_event *ev, bool is_new,
                            char *before);

#endif
