/* Storage quotas per repository pattern (issue 15 item 4): replicated objects of kind
 * QUOTA_KIND, keyed by the pattern ("team/<star>", name_matches_pattern), valued
 * {"bytes": N}: each repository the pattern matches may hold at most N bytes of blobs in a
 * region (the bytes linked to it, shared ones included). Checked when a push or a mount
 * would link a new blob: over the limit, the push is DENIED and nothing is stored.
 * Concurrent uploads into one repository are checked apart, so together they may pass the
 * limit by at most the blobs in flight. */
#ifndef MERIDIAN_QUOTA_H
#define MERIDIAN_QUOTA_H

#include <stdint.h>

#include "digest.h"
#include "err.h"
#include "metastore.h"

#define QUOTA_KIND "quota"

/* 0 if linking d (size bytes) into repo keeps every quota matching repo; -1 with
 * ERR_DENIED naming the quota otherwise (or another code on a store failure). A blob
 * already linked there costs nothing. */
int quota_check(struct metastore *ms, const char *repo, const struct digest *d, uint64_t size,
                struct err *e);

#endif
