/* Process-wide counters exposed on /metrics in the Prometheus text format.
 * Counting is lock-free (atomics) on the request path. */
#ifndef MERIDIAN_METRICS_H
#define MERIDIAN_METRICS_H

#include <stdint.h>

#include "buf.h"

/* Routes, for per-route request counts. */
enum route_id {
    ROUTE_OTHER = 0,
    ROUTE_BASE,
    ROUTE_BLOB,
    ROUTE_UPLOAD_START,
    ROUTE_UPLOAD,
    ROUTE_MANIFEST,
    ROUTE_TAGS,
    ROUTE_REFERRERS,
    ROUTE_CATALOG,
    ROUTE_HEALTHZ,
    ROUTE_READYZ,
    ROUTE_METRICS,
    ROUTE_MGMT,
    ROUTE_COUNT_
};

const char *metrics_route_name(enum route_id r);

/* Records one finished request. method is "GET", "PUT", ...; status the HTTP status. */
void metrics_count_request(enum route_id route, const char *method, int status,
                           uint64_t bytes_in, uint64_t bytes_out);
/* Open upload sessions: +1 when one starts, -1 when it finishes, is cancelled or expires. */
void metrics_uploads_in_progress_add(int delta);
void metrics_count_fsync(void);
void metrics_count_blob_committed(uint64_t size_bytes);
void metrics_count_manifest_put(void);
/* Webhook delivery attempts by outcome: delivered (2xx), retried (failed, will be
 * retried), failed (given up). */
enum metrics_webhook_outcome {
    METRICS_WEBHOOK_DELIVERED,
    METRICS_WEBHOOK_RETRIED,
    METRICS_WEBHOOK_FAILED,
    METRICS_WEBHOOK_COUNT_
};
void metrics_count_webhook_delivery(enum metrics_webhook_outcome outcome);
/* Blob integrity (blobstore_fs.c, scrub.c): a stored copy found bad (and quarantined),
 * a bad copy replaced by a verified one, the quarantined copies still waiting for that,
 * and what the scrub read. */
void metrics_count_blob_corrupt(void);
void metrics_count_blob_repaired(void);
void metrics_blobs_quarantined_add(int delta);
void metrics_count_scrub_verified(uint64_t size_bytes);
void metrics_count_scrub_pass(void);
/* Appends the whole exposition to out. */
void metrics_render(struct buf *out);

#endif
