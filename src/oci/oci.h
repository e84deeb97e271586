/* The /v2/ handlers, one resource per file (oci_*.c), called by the router
 * (server/registry.c), and the helpers they share. */
#ifndef MERIDIAN_OCI_H
#define MERIDIAN_OCI_H

#include <stdbool.h>

#include "http.h"
#include "registry_ctx.h"

struct digest;

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

/* Data endpoints (oci_data.c): a blob GET answered with 307 to a signed URL on the data
 * listener (true: replied). Called by oci_blob once the repository links the blob. */
bool oci_data_redirect(struct http_req *req, const struct digest *d);
/* The data listener's handler table (server.c starts it on --data-listen). */
extern const struct http_handlers oci_data_http_handlers;

/* Shared by handlers: validates req->repo; replies NAME_INVALID and returns false
 * when it is not a valid repository name. */
bool oci_check_repo(struct http_req *req);
/* Parses the n/last pagination parameters; replies and returns -1 when invalid.
 * *n is -1 when absent. */
int oci_pagination(struct http_req *req, long *n, const char **last);
/* Adds the Link header for the next page when there is more. base is the path. */
void oci_link_next(struct http_req *req, const char *base, long n, const char *last);
/* A read that found nothing of req->repo in this region: when a residency policy keeps the
 * repository out of the region, *e becomes that 403 DENIED (naming the policy and where the
 * repository may be held) and true is returned; else *e is left as it is. The manifest
 * pull, the tag list and the referrers list answer alike through it. */
bool oci_residency_explains(struct http_req *req, struct err *e);

/* Locks (oci_locks.c, store/repo_locks.h): does the lock on req->repo, tag (NULL: none)
 * and manifest d (NULL: unknown) forbid op? Replies 403 DENIED, saying which lock, and
 * returns true when it does. */
enum oci_lock_op { OCI_LOCK_WRITE, OCI_LOCK_DELETE, OCI_LOCK_READ };
bool oci_lock_refuses(struct http_req *req, const char *tag, const struct digest *d,
                      enum oci_lock_op op);

#endif
