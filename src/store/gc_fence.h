/* The GC fence: blob commits and links (shared) against the removal of a blob's bytes
 * (exclusive), so that no commit links a digest between the decision that its blob is an
 * orphan and the removal of its bytes. Within a process it is the registry's gc_lock; on
 * a metastore that several nodes share it is also a lock in the database (ms gc_fence),
 * so a commit on one node and the garbage collector or a blob DELETE on another are kept
 * apart too. Enter and leave in pairs, on one thread, outside any transaction. */
#ifndef MERIDIAN_GC_FENCE_H
#define MERIDIAN_GC_FENCE_H

#include <stdbool.h>

#include "registry_ctx.h"

/* Enters shared (commits, links) or exclusive (removals), waiting. Returns false if the
 * database's half could not be taken (the store is away): the process's half is held all
 * the same and must be left; an exclusive caller must not remove bytes then. */
bool gc_fence_enter(struct registry *reg, bool is_exclusive);
/* Enters shared, waiting, and fails closed: 0 when both halves are held (leave with
 * gc_fence_leave(reg, false)); -1 with e set (UNAVAILABLE) and nothing held when the
 * database's half could not be taken (the store is away, or the wait ran past its
 * statement bound): a commit without the fence could link bytes that a collector on
 * another node is removing, so the caller fails instead. */
int gc_fence_enter_shared(struct registry *reg, struct err *e);
/* Exclusive without waiting for other nodes (the garbage collector's ticks, which try
 * again later): true if held, false if not (nothing held then: do not leave). A waiting
 * exclusive request would hold up every node's commits behind a long one. */
bool gc_fence_try_exclusive(struct registry *reg);
void gc_fence_leave(struct registry *reg, bool is_exclusive);

#endif
