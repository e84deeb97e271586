/* The registry context every layer above the stores shares: the configuration, the two
 * storage seams, the upload-session table, the blob GC lock, and opaque handles to the
 * workers (access control, webhooks, replication, scrub). A request carries it as
 * req->reg. Opened and closed by server/registry.c; this header holds no functions, so any
 * layer from auth up may include it. */
#ifndef MERIDIAN_REGISTRY_CTX_H
#define MERIDIAN_REGISTRY_CTX_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "blobstore.h"
#include "config.h"
#include "metastore.h"
#include "util.h"

struct upload_sessions;
struct authz;
struct webhook_worker;
struct repl;
struct scrub;
struct gc;
struct compact;
struct pull_record;
struct readiness;

struct registry {
    struct config *cfg;
    struct blobstore *bs;
    struct metastore *ms;
    struct upload_sessions *uploads;
    struct authz *authz;             /* authz.c: access control */
    struct webhook_worker *webhooks; /* webhook.c: the delivery worker */
    struct repl *repl;
    struct scrub *scrub;             /* scrub.c: background verification of stored blobs */
    struct copies *copies;           /* copies.c: replica counts on volumes (NULL: none) */
    struct gc *gc;                   /* gc.c: online garbage collection of blobs */
    struct compact *compact;         /* compact.c: event-log compaction */
    struct pull_record *pulls;       /* pull_record.c: manifests' last-pull times */
    struct readiness *readiness;     /* readiness.c: /readyz's probes of the two stores */
    /* Blob commits hold it shared, garbage collection of a blob's bytes holds it
     * exclusive, so a blob being re-pushed is never removed under the new link. Taken
     * through gc_fence.h, which adds the same lock across the nodes of a shared store. */
    pthread_rwlock_t gc_lock;
    atomic_bool is_ready;   /* serving: written by the main thread, read by handlers */
    /* This region was removed from the registry (replication delete): it stops
     * replicating, answers 503 on /v2/, and its blobs are deleted. Kept across restarts
     * by a marker file in the data directory. Read by any thread. */
    atomic_bool is_removed;
    /* This node runs the region's background work (replication pulls and fetches,
     * anti-entropy, retention, GC, scheduled scrubs, replica copies, the upload sweep).
     * Always on a store of one process; on a store that several nodes share it is the
     * holder of the region's lease (server/lease.c), so that work is done once. */
    atomic_bool is_owner;
    /* ... and only until then (ms): a node whose lease renewal hangs on the store stops
     * one renewal period before another node may take the lease (lease.c). INT64_MAX
     * when no lease is kept. Read through registry_is_owner. */
    _Atomic int64_t owner_until_ms;
    /* Upload ids the last sweep found without a session row, on a metastore shared with
     * other nodes (registry.c): only the sweep thread touches it. */
    struct meta_name_list rowless_uploads;
    /* Sessions of monolithic POSTs the last sweep found (registry.c): the next one removes
     * those still there that no request holds. Only the sweep thread touches it. */
    struct meta_name_list single_uploads;
    uint8_t data_url_key[32]; /* signs data endpoint URLs (oci_data.c): from secrets.key */
};

/* Whether this node runs the region's background work now (is_owner, within its lease). */
static inline bool registry_is_owner(struct registry *reg)
{
    return atomic_load(&reg->is_owner) && util_now_ms() < atomic_load(&reg->owner_until_ms);
}

#endif
