/* The webhooks of what merging a peer's writes does here (docs/webhooks.md, "Durable"):
 * a replicated event, or a state record merged by anti-entropy, the snapshot or the
 * pull-through lookup, that deletes a manifest or a tag here, or points a tag at a manifest
 * shown here, fires the deliveries of that effect in the write transaction of the merge.
 * The effect is read from the store before and after the merge (in the unit of work), so
 * whichever path brings a write first fires it, and one bringing it again finds nothing
 * changed: once per effect. A delete fires where it removes something: a manifest this
 * region has a record of (shown or still being fetched), or a tag naming one. */
#ifndef MERIDIAN_MERGE_EFFECTS_H
#define MERIDIAN_MERGE_EFFECTS_H

#include <pthread.h>
#include <stdbool.h>

#include "digest.h"
#include "err.h"
#include "metastore.h"
#include "webhook.h"

struct registry;

/* What a write may change, read before it is merged. */
struct merge_effect {
    bool had;             /* the manifest (manifest_delete) or the tag (tag_*) was here */
    struct digest before; /* the manifest it named / the manifest */
    struct meta_name_list tags; /* manifest_delete: the tags naming it before */
};

/* Before ev (manifest_delete, tag_delete, tag_set; other kinds: nothing) is merged in tx:
 * reads what it may change into fx (released with merge_effect_fini, whatever happens);
 * nothing is read when tx is not open (no webhook).
 * 0, or -1 with e set (a store failure: the unit must roll back). */
int merge_effect_probe(struct webhook_tx *tx, const struct meta_event *ev,
                       struct merge_effect *fx, struct err *e);
/* After ev was merged in tx: queues the delete deliveries of what it removed (the manifest:
 * one without a tag, and one for each tag that named it and no longer does: a tag the
 * deleting region never saw, written here during a partition, ends with it, meta_merge.c
 * dead_tags_drop; a tag: one naming it and the manifest it named), and, with_push, the
 * push delivery of a tag it points at a manifest shown here that it did not name before.
 * 0, or -1 with e set. */
int merge_effect_queue(struct webhook_tx *tx, const struct meta_event *ev,
                       const struct merge_effect *fx, bool with_push, struct err *e);
void merge_effect_fini(struct merge_effect *fx);

/* Merges one record of a peer's state (ms_state_merge_f) with the deliveries of what it
 * changes and of a version conflict it makes or changes (version_conflict.h), in one unit
 * of work.
 * hook_mu is held around a tag_set's merge (repl.c: a manifest shown meanwhile reads its
 * tags under it). 0, or -1 with e set (nothing of it stays). */
int merge_effects_state(struct registry *reg, pthread_mutex_t *hook_mu,
                        const struct meta_event *rec, int64_t tombs_before, struct err *e);
/* Deletes win (ms_state_forget_f): removes the record rec names with the delete
 * deliveries of what goes (a manifest_put record: the manifest; a tag_set record: the tag),
 * in one unit of work. 0, or -1 with e set. */
int merge_effects_forget(struct registry *reg, const struct meta_event *rec, struct err *e);

#endif
