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

struct upload_sessions;
struct authz;
struct webhook_worker;
struct repl;
struct scrub;
struct gc;
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
    struct readiness *readiness;     /* readiness.c: /readyz's probes of the two stores */
    /* Blob commits hold it shared, garbage collection of a blob's bytes holds it
     * exclusive, so a blob being re-pushed is never removed under the new link. */
    pthread_rwlock_t gc_lock;
    atomic_bool is_ready;   /* serving: written by the main thread, read by handlers */
    /* This region was removed from the registry (replication delete): it stops
     * replicating, answers 503 on /v2/, and its blobs are deleted. Kept across restarts
     * by a marker file in the data directory. Read by any thread. */
    atomic_bool is_removed;
    uint8_t data_url_key[32]; /* signs data endpoint URLs (oci_data.c): random per process */
};

#endif
