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
    ROUTE_CONSOLE,
    ROUTE_COUNT_
};

const char *metrics_route_name(enum route_id r);

/* The violations the last compliance matrix check found, by kind (gauges). */
enum metrics_compliance_kind {
    METRICS_COMPLIANCE_MISSING_REQUIRED_REGION,
    METRICS_COMPLIANCE_BELOW_MIN_REPLICAS,
    METRICS_COMPLIANCE_IN_FORBIDDEN_REGION,
    METRICS_COMPLIANCE_END_OF_LIFE_PASSED,
    METRICS_COMPLIANCE_LATEST_TOO_OLD,
    METRICS_COMPLIANCE_COUNT_
};
const char *metrics_compliance_kind_name(enum metrics_compliance_kind k);
void metrics_compliance_set(const uint64_t counts[METRICS_COMPLIANCE_COUNT_], int64_t at_ms);

/* Records one finished request. method is "GET", "PUT", ...; status the HTTP status. */
void metrics_count_request(enum route_id route, const char *method, int status,
                           uint64_t bytes_in, uint64_t bytes_out);
/* Body bytes of a streamed reply, counted as they are sent (the request itself was counted
 * when its reply was queued, before a byte of the stream was read). */
void metrics_count_bytes_out(uint64_t n);
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
/* Mutual TLS between regions (authz.c): requests a region certificate admitted as a
 * peer's, and peer requests refused by why their certificate was not good enough. */
enum metrics_peer_cert {
    METRICS_PEER_CERT_MISSING,      /* no client certificate */
    METRICS_PEER_CERT_UNTRUSTED,    /* not issued by the peer CA (or a bad chain) */
    METRICS_PEER_CERT_EXPIRED,      /* outside its validity period */
    METRICS_PEER_CERT_WRONG_REGION, /* names no region of this registry */
    METRICS_PEER_CERT_INVALID,      /* anything else (key usage, malformed) */
    METRICS_PEER_CERT_COUNT_
};
void metrics_count_peer_cert_refused(enum metrics_peer_cert reason);
void metrics_count_peer_cert_accepted(void);
/* Blob integrity (blobstore_fs.c, scrub.c): a stored copy found bad (and quarantined),
 * a bad copy replaced by a verified one, the quarantined copies still waiting for that,
 * and what the scrub read. */
void metrics_count_blob_corrupt(void);
void metrics_count_blob_repaired(void);
void metrics_blobs_quarantined_add(int delta);
void metrics_count_scrub_verified(uint64_t size_bytes);
void metrics_count_scrub_pass(void);
/* A source of metrics beyond the counters above (replication's per-peer gauges, ...):
 * appends its families to out, in the Prometheus text format. */
typedef void metrics_source_f(void *arg, struct buf *out);
/* Registers a source, rendered after the counters in the order added, with arg. Upper
 * layers register at start-up, so this one renders them without knowing them. -1 when
 * METRICS_SOURCES_MAX are registered. */
#define METRICS_SOURCES_MAX 16
int metrics_source_add(metrics_source_f *render, void *arg);
/* Unregisters (render, arg), which must have been added; once it returns, render is not
 * running and will not run with arg. */
void metrics_source_remove(metrics_source_f *render, void *arg);
/* Appends the whole exposition to out: the counters, then each registered source. */
void metrics_render(struct buf *out);

#endif
