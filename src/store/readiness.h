/* Readiness of the two stores (/readyz): the metadata store answers a trivial query and
 * the blob store a cheap probe (ms->ops->ping, bs->ops->check). The probes run on a
 * thread of their own, at most once per cache period however often /readyz is asked, so
 * the endpoint cannot be used to hammer PostgreSQL or S3. A caller past the cache period
 * asks for a probe and gets the last answer at once, if that is at most a cache period and
 * a timeout old; otherwise (the first caller, or one after a quiet spell) it waits for the
 * probe, at most the timeout. A probe that runs past the timeout is answered as a failure
 * of the store it waits on. */
#ifndef MERIDIAN_READINESS_H
#define MERIDIAN_READINESS_H

#include <stdbool.h>
#include <stdint.h>

#include "blobstore.h"
#include "metastore.h"

struct readiness;

/* The last finished probe (or a timed-out one). */
struct readiness_result {
    bool is_metastore_ok, is_blobstore_ok;
    char metastore_error[200]; /* "" when ok; messages for a client: no path, no URL */
    char blobstore_error[200];
    int64_t checked_ms;        /* when the probe finished (ms since the epoch), 0: never */
};

/* cache_ms: how long a result is reused; timeout_ms: a caller's longest wait, and the
 * bound given to a store's probe. The thread starts on the first check. */
struct readiness *readiness_new(struct metastore *ms, struct blobstore *bs, int64_t cache_ms,
                                int64_t timeout_ms);
/* Stops the thread (waits for a probe in flight) and frees r (NULL: nothing). */
void readiness_free(struct readiness *r);
/* Both stores answered at the last probe: true. *out: the details either way. */
bool readiness_check(struct readiness *r, struct readiness_result *out);
/* How many probes have run (tests: the cache bounds them). */
uint64_t readiness_probes(struct readiness *r);

#endif
