/* Counters are a fixed matrix [route][method][status class index] of atomics, so
 * the request path never allocates or locks to count. Statuses are folded into a
 * small table of the codes the registry actually answers; others count as "other". */
#include "metrics.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "util.h"

static const char *route_names[ROUTE_COUNT_] = {
    [ROUTE_OTHER] = "other",         [ROUTE_BASE] = "base",
    [ROUTE_BLOB] = "blob",           [ROUTE_UPLOAD_START] = "upload_start",
    [ROUTE_UPLOAD] = "upload",       [ROUTE_MANIFEST] = "manifest",
    [ROUTE_TAGS] = "tags",           [ROUTE_REFERRERS] = "referrers",
    [ROUTE_CATALOG] = "catalog",     [ROUTE_HEALTHZ] = "healthz",
    [ROUTE_READYZ] = "readyz",       [ROUTE_METRICS] = "metrics",
    [ROUTE_MGMT] = "mgmt",           [ROUTE_CONSOLE] = "console",
};

static const char *methods[] = {"GET", "HEAD", "PUT", "POST", "PATCH", "DELETE", "OTHER"};
#define N_METHODS (sizeof(methods) / sizeof(methods[0]))

static const int statuses[] = {200, 201, 202, 204, 206, 400, 401, 403, 404,
                               405, 413, 416, 429, 500, 503, 507, 0};
#define N_STATUSES (sizeof(statuses) / sizeof(statuses[0]))

static _Atomic uint64_t requests[ROUTE_COUNT_][N_METHODS][N_STATUSES];
static _Atomic uint64_t bytes_in_total;
static _Atomic uint64_t bytes_out_total;
static _Atomic int64_t uploads_in_progress;

/* Registered sources; sources_mu is held while they render, so removal waits for a
 * render in progress (a scrape is rare: one lock is cheap). */
static pthread_mutex_t sources_mu = PTHREAD_MUTEX_INITIALIZER;
static struct source {
    metrics_source_f *render;
    void *arg;
} sources[METRICS_SOURCES_MAX];
static size_t n_sources;
static _Atomic uint64_t fsyncs_total;
static _Atomic uint64_t blobs_committed_total;
static _Atomic uint64_t blob_bytes_committed_total;
static _Atomic uint64_t manifests_put_total;
static _Atomic uint64_t webhook_deliveries[METRICS_WEBHOOK_COUNT_];
static _Atomic uint64_t peer_cert_refused[METRICS_PEER_CERT_COUNT_];
static _Atomic uint64_t peer_cert_accepted;
static _Atomic uint64_t blobs_corrupt_total;
static _Atomic uint64_t blobs_repaired_total;
static _Atomic int64_t blobs_quarantined;
static _Atomic uint64_t scrub_blobs_verified_total;
static _Atomic uint64_t scrub_bytes_verified_total;
static _Atomic uint64_t scrub_passes_total;

const char *metrics_route_name(enum route_id r)
{
    return (r >= 0 && r < ROUTE_COUNT_) ? route_names[r] : "other";
}

void metrics_count_request(enum route_id route, const char *method, int status,
                           uint64_t bytes_in, uint64_t bytes_out)
{
    size_t m = N_METHODS - 1;
    for (size_t i = 0; i + 1 < N_METHODS; i++) {
        if (strcmp(method, methods[i]) == 0) {
            m = i;
            break;
        }
    }
    size_t s = N_STATUSES - 1;
    for (size_t i = 0; i + 1 < N_STATUSES; i++) {
        if (statuses[i] == status) {
            s = i;
            break;
        }
    }
    if (route < 0 || route >= ROUTE_COUNT_)
        route = ROUTE_OTHER;
    atomic_fetch_add_explicit(&requests[route][m][s], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&bytes_in_total, bytes_in, memory_order_relaxed);
    atomic_fetch_add_explicit(&bytes_out_total, bytes_out, memory_order_relaxed);
}

void metrics_count_bytes_out(uint64_t n)
{
    atomic_fetch_add_explicit(&bytes_out_total, n, memory_order_relaxed);
}

void metrics_uploads_in_progress_add(int delta)
{
    atomic_fetch_add_explicit(&uploads_in_progress, delta, memory_order_relaxed);
}

void metrics_count_fsync(void)
{
    atomic_fetch_add_explicit(&fsyncs_total, 1, memory_order_relaxed);
}

void metrics_count_blob_committed(uint64_t size_bytes)
{
    atomic_fetch_add_explicit(&blobs_committed_total, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&blob_bytes_committed_total, size_bytes, memory_order_relaxed);
}

void metrics_count_manifest_put(void)
{
    atomic_fetch_add_explicit(&manifests_put_total, 1, memory_order_relaxed);
}

void metrics_count_webhook_delivery(enum metrics_webhook_outcome outcome)
{
    if ((unsigned)outcome < METRICS_WEBHOOK_COUNT_)
        atomic_fetch_add_explicit(&webhook_deliveries[outcome], 1, memory_order_relaxed);
}

void metrics_count_peer_cert_refused(enum metrics_peer_cert reason)
{
    if ((unsigned)reason < METRICS_PEER_CERT_COUNT_)
        atomic_fetch_add_explicit(&peer_cert_refused[reason], 1, memory_order_relaxed);
}

void metrics_count_peer_cert_accepted(void)
{
    atomic_fetch_add_explicit(&peer_cert_accepted, 1, memory_order_relaxed);
}

void metrics_count_blob_corrupt(void)
{
    atomic_fetch_add_explicit(&blobs_corrupt_total, 1, memory_order_relaxed);
}

void metrics_count_blob_repaired(void)
{
    atomic_fetch_add_explicit(&blobs_repaired_total, 1, memory_order_relaxed);
}

void metrics_blobs_quarantined_add(int delta)
{
    atomic_fetch_add_explicit(&blobs_quarantined, delta, memory_order_relaxed);
}

void metrics_count_scrub_verified(uint64_t size_bytes)
{
    atomic_fetch_add_explicit(&scrub_blobs_verified_total, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&scrub_bytes_verified_total, size_bytes, memory_order_relaxed);
}

void metrics_count_scrub_pass(void)
{
    atomic_fetch_add_explicit(&scrub_passes_total, 1, memory_order_relaxed);
}

static _Atomic uint64_t compliance_violations[METRICS_COMPLIANCE_COUNT_];
static _Atomic int64_t compliance_checked_ms;

static const char *const compliance_kinds[METRICS_COMPLIANCE_COUNT_] = {
    [METRICS_COMPLIANCE_MISSING_REQUIRED_REGION] = "missing-required-region",
    [METRICS_COMPLIANCE_BELOW_MIN_REPLICAS] = "below-min-replicas",
    [METRICS_COMPLIANCE_IN_FORBIDDEN_REGION] = "in-forbidden-region",
    [METRICS_COMPLIANCE_END_OF_LIFE_PASSED] = "end-of-life-passed",
    [METRICS_COMPLIANCE_LATEST_TOO_OLD] = "latest-too-old",
};

const char *metrics_compliance_kind_name(enum metrics_compliance_kind k)
{
    return compliance_kinds[k];
}

void metrics_compliance_set(const uint64_t counts[METRICS_COMPLIANCE_COUNT_], int64_t at_ms)
{
    for (size_t i = 0; i < METRICS_COMPLIANCE_COUNT_; i++)
        atomic_store(&compliance_violations[i], counts[i]);
    atomic_store(&compliance_checked_ms, at_ms);
}

static void render_compliance(struct buf *out)
{
    buf_appends(out, "# HELP meridian_compliance_violations Violations found by the last "
                     "compliance matrix check made on this node, by kind.\n"
                     "# TYPE meridian_compliance_violations gauge\n");
    for (size_t i = 0; i < METRICS_COMPLIANCE_COUNT_; i++)
        buf_printf(out, "meridian_compliance_violations{kind=\"%s\"} %llu\n", compliance_kinds[i],
                   (unsigned long long)atomic_load(&compliance_violations[i]));
    buf_printf(out,
               "# HELP meridian_compliance_last_check_timestamp_seconds When the last compliance "
               "matrix check ran on this node (0: never).\n"
               "# TYPE meridian_compliance_last_check_timestamp_seconds gauge\n"
               "meridian_compliance_last_check_timestamp_seconds %.3f\n",
               (double)atomic_load(&compliance_checked_ms) / 1000.0);
}

static void counter(struct buf *out, const char *name, const char *help, uint64_t v)
{
    buf_printf(out, "# HELP %s %s\n# TYPE %s counter\n%s %llu\n", name, help, name, name,
               (unsigned long long)v);
}

int metrics_source_add(metrics_source_f *render, void *arg)
{
    int rc = -1;
    AZ(pthread_mutex_lock(&sources_mu));
    if (n_sources < METRICS_SOURCES_MAX) {
        sources[n_sources++] = (struct source){.render = render, .arg = arg};
        rc = 0;
    }
    AZ(pthread_mutex_unlock(&sources_mu));
    return rc;
}

void metrics_source_remove(metrics_source_f *render, void *arg)
{
    AZ(pthread_mutex_lock(&sources_mu));
    for (size_t i = 0; i < n_sources; i++) {
        if (sources[i].render == render && sources[i].arg == arg) {
            memmove(&sources[i], &sources[i + 1], (n_sources - i - 1) * sizeof(sources[0]));
            n_sources--;
            break;
        }
    }
    AZ(pthread_mutex_unlock(&sources_mu));
}

static void render_sources(struct buf *out)
{
    AZ(pthread_mutex_lock(&sources_mu));
    for (size_t i = 0; i < n_sources; i++)
        sources[i].render(sources[i].arg, out);
    AZ(pthread_mutex_unlock(&sources_mu));
}

void metrics_render(struct buf *out)
{
    buf_appends(out, "# HELP meridian_http_requests_total HTTP requests by route, method and "
                     "status.\n# TYPE meridian_http_requests_total counter\n");
    for (size_t r = 0; r < ROUTE_COUNT_; r++) {
        for (size_t m = 0; m < N_METHODS; m++) {
            for (size_t s = 0; s < N_STATUSES; s++) {
                uint64_t v = atomic_load_explicit(&requests[r][m][s], memory_order_relaxed);
                if (v == 0)
                    continue;
                char status[8];
                if (statuses[s])
                    snprintf(status, sizeof(status), "%d", statuses[s]);
                else
                    snprintf(status, sizeof(status), "other");
                buf_printf(out,
                           "meridian_http_requests_total{route=\"%s\",method=\"%s\","
                           "status=\"%s\"} %llu\n",
                           route_names[r], methods[m], status, (unsigned long long)v);
            }
        }
    }
    counter(out, "meridian_http_bytes_in_total", "Request body bytes received.",
            atomic_load(&bytes_in_total));
    counter(out, "meridian_http_bytes_out_total", "Response body bytes sent.",
            atomic_load(&bytes_out_total));
    buf_printf(out,
               "# HELP meridian_uploads_in_progress Upload sessions open (started, not yet finished).\n"
               "# TYPE meridian_uploads_in_progress gauge\nmeridian_uploads_in_progress %lld\n",
               (long long)atomic_load(&uploads_in_progress));
    counter(out, "meridian_blob_fsyncs_total", "fsync calls made to commit blobs.",
            atomic_load(&fsyncs_total));
    counter(out, "meridian_blobs_committed_total", "Blobs committed from uploads.",
            atomic_load(&blobs_committed_total));
    counter(out, "meridian_blob_bytes_committed_total", "Bytes of blobs committed from uploads.",
            atomic_load(&blob_bytes_committed_total));
    counter(out, "meridian_manifests_put_total",
            "Manifests stored by a client PUT (not replicated ones).",
            atomic_load(&manifests_put_total));
    static const char *const outcomes[METRICS_WEBHOOK_COUNT_] = {
        [METRICS_WEBHOOK_DELIVERED] = "delivered",
        [METRICS_WEBHOOK_RETRIED] = "retried",
        [METRICS_WEBHOOK_FAILED] = "failed",
    };
    buf_appends(out, "# HELP meridian_webhook_deliveries_total Webhook delivery attempts by "
                     "outcome (retried: failed, will be retried; failed: given up).\n"
                     "# TYPE meridian_webhook_deliveries_total counter\n");
    for (size_t i = 0; i < METRICS_WEBHOOK_COUNT_; i++)
        buf_printf(out, "meridian_webhook_deliveries_total{outcome=\"%s\"} %llu\n", outcomes[i],
                   (unsigned long long)atomic_load(&webhook_deliveries[i]));
    static const char *const reasons[METRICS_PEER_CERT_COUNT_] = {
        [METRICS_PEER_CERT_MISSING] = "missing",
        [METRICS_PEER_CERT_UNTRUSTED] = "untrusted",
        [METRICS_PEER_CERT_EXPIRED] = "expired",
        [METRICS_PEER_CERT_WRONG_REGION] = "wrong_region",
        [METRICS_PEER_CERT_INVALID] = "invalid",
    };
    buf_appends(out, "# HELP meridian_peer_cert_refusals_total Peer requests refused for their "
                     "client certificate (mutual TLS between regions), by reason.\n"
                     "# TYPE meridian_peer_cert_refusals_total counter\n");
    for (size_t i = 0; i < METRICS_PEER_CERT_COUNT_; i++)
        buf_printf(out, "meridian_peer_cert_refusals_total{reason=\"%s\"} %llu\n", reasons[i],
                   (unsigned long long)atomic_load(&peer_cert_refused[i]));
    render_compliance(out);
    counter(out, "meridian_peer_cert_accepted_total",
            "Requests admitted as a peer region's by their client certificate.",
            atomic_load(&peer_cert_accepted));
    counter(out, "meridian_scrub_passes_total", "Scrub passes completed over every stored blob.",
            atomic_load(&scrub_passes_total));
    counter(out, "meridian_scrub_blobs_verified_total",
            "Stored blobs whose size and digest the scrub checked (good or bad).",
            atomic_load(&scrub_blobs_verified_total));
    counter(out, "meridian_scrub_bytes_verified_total", "Bytes of stored blobs the scrub read.",
            atomic_load(&scrub_bytes_verified_total));
    counter(out, "meridian_blobs_corrupt_total",
            "Stored blob copies found with a wrong size or digest (by a read or the scrub) "
            "and quarantined.",
            atomic_load(&blobs_corrupt_total));
    counter(out, "meridian_blobs_repaired_total",
            "Damaged blob copies replaced by a verified copy (re-push or peer fetch).",
            atomic_load(&blobs_repaired_total));
    buf_printf(out,
               "# HELP meridian_blobs_quarantined Quarantined blob copies not yet replaced by a "
               "good copy.\n# TYPE meridian_blobs_quarantined gauge\nmeridian_blobs_quarantined "
               "%lld\n",
               (long long)atomic_load(&blobs_quarantined));
    render_sources(out);
}
