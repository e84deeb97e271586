/* The server's registry: opens and closes the context a node serves (registry_ctx.h) and
 * routes each request to its handler (/v2/ to oci, /_meridian/v1/ to mgmt), through the
 * handler table it gives the HTTP layer. */
#ifndef MERIDIAN_REGISTRY_H
#define MERIDIAN_REGISTRY_H

#include "http.h"
#include "registry_ctx.h"

/* Opens the blobstore cfg->blobstore names (blobstore_open) and the rest of the storage
 * under cfg->data_dir. NULL with e set on failure. */
struct registry *registry_open(struct config *cfg, struct err *e);
/* The same around a blobstore already open (a test's backend); takes it over (closed
 * with the registry, or at once on failure). */
struct registry *registry_open_with(struct config *cfg, struct blobstore *bs, struct err *e);
void registry_close(struct registry *reg);
/* Reclaims expired upload sessions (bytes and metadata); called periodically. */
void registry_sweep_uploads(struct registry *reg);

/* The router, given to http_server_start: on_headers fills req->route/repo/ref, checks
 * access (authz) and sets a sink or a body cap, or replies at once; on_complete calls
 * the route's handler; on_malformed answers in the error format of the API the path
 * names; on_reply and on_finished record the request in the audit log (before the
 * client can see the answer, and when it is done). */
extern const struct http_handlers registry_http_handlers;

#endif
