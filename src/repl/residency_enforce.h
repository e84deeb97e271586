/* Residency over existing content (docs/governance.md, "Residency"): when a policy forbids
 * this region a repository it holds (a policy created or tightened after the content
 * arrived) and asks for it ("enforce": true; residency_forbidding_enforced), the region
 * removes everything it keeps of it: documents, tags, records, blob
 * links, the blob files nothing else here needs, and the content of its events (each
 * becomes a redacted stand-in). Each removal is logged and audited (residency.enforce). The
 * other regions are not told: the compliance report (mgmt) asks each region what it holds. */
#ifndef MERIDIAN_RESIDENCY_ENFORCE_H
#define MERIDIAN_RESIDENCY_ENFORCE_H

#include <stdbool.h>

#include "registry_ctx.h"

/* Removes every repository this region keeps that an enforced residency policy forbids here
 * (a policy without "enforce" only reports such copies: the compliance report). Returns
 * the number of repositories removed. Called when a policy changes (here or from a peer) and
 * periodically (every --sync-interval): a region down when the policy arrived, or whose
 * removal failed, removes it on the next pass (the metadata goes in one transaction). A
 * crash between that commit and the deletion of the blob files leaves those files without
 * rows (as placement's release does): the garbage collector's file sweep removes them
 * (blob_sweep.h). */
int residency_enforce_run(struct registry *reg);

/* A replicated object event was applied here (payload as in the event): runs the
 * enforcement when it is a residency policy. True if it was one (the policies changed). */
bool residency_enforce_on_object_event(struct registry *reg, const char *payload);

#endif
