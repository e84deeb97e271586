/* Reporting of immutable-version conflicts (docs/image-versions.md): the merge rule in
 * meta_merge.c picks the winner and records the conflict; this file tells people, once in
 * each region, when merging a replicated tag changed that record: one audit entry
 * (image-version.conflict) and the regional webhooks subscribed to "version.conflict".
 * Every path that merges a peer's tag (the event stream, anti-entropy, the snapshot, the
 * pull-through lookup) goes through begin/queue/end, so the report does not depend on which
 * of them brought the tag first. The deliveries are written in the write transaction of
 * the merge (before 6 December: in one of their own just after it, lost to a crash between). */
#ifndef MERIDIAN_VERSION_CONFLICT_H
#define MERIDIAN_VERSION_CONFLICT_H

#include <stdbool.h>

#include "err.h"
#include "metastore.h"
#include "webhook.h"

struct registry;

/* A merge's report, from before the merge to after it. */
struct version_conflict {
    char *before; /* the record before ("": none); NULL when ev cannot make one (no lock) */
    char *after;  /* the record after, read in the merge's unit (version_conflict_queue) */
};

/* Before ev is merged: reads the conflict record ev may change into vc (nothing when ev
 * is not a tag_set of a version). Then vc holds a process-wide lock until
 * version_conflict_end, so that two paths merging the same tag at once report once. Call
 * before opening the merge's unit of work (the lock is taken before the writer's). */
void version_conflict_begin(struct registry *reg, const struct meta_event *ev,
                            struct version_conflict *vc);
/* In the merge's unit of work tx, before ev is merged: reads the record again there, so
 * that a merge of the same tag by another node of a PostgreSQL region, committed since
 * version_conflict_begin read it (report_mu is per process), counts as before and its
 * conflict is not queued twice (nothing when tx is not open). 0, or -1 with e set when the
 * record cannot be read (the unit must roll back: read as none, the delivery would go
 * twice). */
int version_conflict_probe(struct registry *reg, struct webhook_tx *tx,
                           const struct meta_event *ev, struct version_conflict *vc,
                           struct err *e);
/* In the merge's unit of work tx, right after ev was merged (is_new: it was stored): when
 * the record is new or changed, queues the "version.conflict" deliveries in tx, so that they
 * commit with the merge (nothing when tx is not open: no webhook). 0, or -1 with e set (the
 * unit must roll back; also when the record cannot be read: read as none, the delivery
 * would be lost). */
int version_conflict_queue(struct registry *reg, struct webhook_tx *tx,
                           const struct meta_event *ev, bool is_new,
                           struct version_conflict *vc, struct err *e);
/* After the merge's unit ended (is_new: ev was stored and the unit committed): when the
 * record is new or changed, logs and audits it (image-version.conflict) and places its
 * losers. Releases the lock and what vc holds. */
void version_conflict_end(struct registry *reg, const struct meta_event *ev, bool is_new,
                          struct version_conflict *vc);

#endif
