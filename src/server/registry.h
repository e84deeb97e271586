/* The registry context shared by every handler (config, the two storage seams, the
 * upload-session table) and the router that maps a request to its handler.
 * Handlers are declared here and defined one resource per file (oci_*.c). */
#ifndef MERIDIAN_REGISTRY_H
#define MERIDIAN_REGISTRY_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "blobstore.h"
#include "config.h"
#include "http.h"
#include "metastore.h"

struct upload_sessions;
struct authz;
struct webhook_worker;
struct repl;
struct scrub;

struct registry {
    struct config *cfg;
    struct blobstore *bs;
    struct metastore *ms;
    struct upload_sessions *uploads;
    struct authz *authz;             /* authz.c: access control */
    struct webhook_worker *webhooks; /* webhook.c: the delivery worker */
    struct repl *repl;
    struct scrub *scrub;             /* scrub.c: background verification of stored blobs */
    /* Blob commits hold it shared, garbage collection of a blob's bytes holds it
     * exclusive, so a blob being re-pushed is never removed under the new link. */
    pthread_rwlock_t gc_lock;
    atomic_bool is_ready;   /* serving: written by the main thread, read by handlers */
    /* This region was removed from the registry (replication delete): it stops
     * replicating, answers 503 on /v2/, and its blobs are deleted. Kept across restarts
     * by a marker file in the data directory. Read by any thread. */
    atomic_bool is_removed;
};

/* Opens storage under cfg->data_dir. NULL with e set on failure. */
struct registry *registry_open(struct config *cfg, struct err *e);
void registry_close(struct registry *reg);
/* A push or delete made in another region took effect here: for a push, when its
 * content arrived and the manifest became visible; for a delete, when the event was
 * applied. Regional webhooks of this region fire. tag: the deleted tag, or NULL. */
void registry_on_replicated(struct registry *reg, const char *action, const char *repo,
                            const struct digest *d, const char *tag);

/* The copy of blob d here was found damaged (and quarantined) or is missing although
 * recorded. With repo (a request names it), fetch it back now from a peer that holds it,
 * as the push that splits does: 0 once it is back. Otherwise, or when no peer has it,
 * every manifest needing it is hidden until the fetch workers bring it back or it is
 * pushed again (visible means pullable), the event is logged, and -1 is returned with
 * ERR_BLOB_UNKNOWN. Waits on the network (peers) but holds no lock. */
int registry_blob_recover(struct registry *reg, const char *repo, const struct digest *d,
                          struct err *e);

/* Takes this region out of the registry: see is_removed. */
void registry_mark_removed(struct registry *reg);

/* Reclaims expired upload sessions (bytes and metadata); called periodically. */
void registry_sweep_uploads(struct registry *reg);

/* Routing, called by http.c. registry_on_headers runs once the request line and
 * headers are in: it fills req->route/repo/ref, and either sets a streaming sink,
 * sets the body cap, or replies at once. registry_on_complete runs when the body is
 * in (unless a reply was already made). */
void registry_on_headers(struct http_req *req);
/* Replies 400 to a request whose head failed the strict framing check (why says which
 * rule), in the error format of the API its path names. */
void registry_on_malformed(struct http_req *req, const char *why);
void registry_on_complete(struct http_req *req);
/* Called when the reply is about to be queued (the audit log records the request before
 * the client can see the answer), and once per request when it is done (status 499 when
 * the client went away), before the request is freed. */
void registry_on_reply(struct http_req *req);
void registry_on_finished(struct http_req *req, int status);

/* Handlers: each a resource of the OCI API (file in parentheses). */
void oci_base(struct http_req *req);                   /* oci_base.c: /v2/ */
void oci_health(struct http_req *req);                 /* oci_base.c: /healthz /readyz /metrics */
void oci_blob(struct http_req *req);                   /* oci_blobs.c: GET HEAD DELETE */
int oci_upload_headers(struct http_req *req);          /* oci_uploads.c: sets sinks */
void oci_upload(struct http_req *req);                 /* oci_uploads.c */
void oci_manifest(struct http_req *req);               /* oci_manifests.c */
void oci_tags(struct http_req *req);                   /* oci_tags.c */
void oci_referrers(struct http_req *req);              /* oci_referrers.c */
void oci_catalog(struct http_req *req);                /* oci_catalog.c */

/* Shared by handlers: validates req->repo; replies NAME_INVALID and returns false
 * when it is not a valid repository name. */
bool oci_check_repo(struct http_req *req);
/* Parses the n/last pagination parameters; replies and returns -1 when invalid.
 * *n is -1 when absent. */
int oci_pagination(struct http_req *req, long *n, const char **last);
/* Adds the Link header for the next page when there is more. base is the path. */
void oci_link_next(struct http_req *req, const char *base, long n, const char *last);

#endif
