/* The region's background-work lease: of the nodes that share one metastore, the one
 * holding it runs the work that must happen once for the region (registry_ctx.h's
 * is_owner says which work). A node takes the lease when it is free or run out, renews
 * it every LEASE_RENEW_MS and gives it up on a clean stop; a node that dies stops
 * renewing and another takes over within LEASE_TTL_MS. A store of one process (SQLite)
 * always holds it. */
#ifndef MERIDIAN_LEASE_H
#define MERIDIAN_LEASE_H

#include "registry.h"

#define LEASE_TTL_MS 10000
#define LEASE_RENEW_MS 2000

struct lease;

/* Tries once (reg->is_owner says how it went), then keeps trying on a thread. */
struct lease *lease_start(struct registry *reg);
/* Stops trying and gives the lease up if held; clears reg->is_owner. NULL accepted. */
void lease_stop(struct lease *l);

#endif
