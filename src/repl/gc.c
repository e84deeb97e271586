/* The garbage collector's thread (gc.h). A tick lists up to GC_BATCH due digests of the
 * review queue and decides each in its own short transaction (ms gc_collect), deleting
 * the file of a blob found orphaned while still holding the GC fence exclusive (gc_fence.h:
 * across the nodes of a shared store too), so that no upload commit or fetch can link that
 * digest between the decision and the removal.
 * Digests are decided GC_GROUP at a time (one transaction, one sync): pushes' commits wait
 * at most for one group's decision and removals.
 *
 *   idle --(gc_interval elapsed)--> tick (<= GC_BATCH blobs) --> idle
 *   gc_run (management API) --> a whole pass, same code, serialized with ticks
 */
#include "gc.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "blob_sweep.h"
#include "buf.h"
#include "gc_fence.h"
#include "log.h"
#include "metrics.h"
#include "pull_record.h"
#include "registry_ctx.h"
#include "repo_locks.h"
#include "retention.h"
#include "retention_run.h"
#include "util.h"
#include "webhook.h"

#define GC_MAGIC 0x67636f6cu /* "gcol" */

struct gc {
    unsigned magic;
    struct registry *reg;
    pthread_t thread;
    pthread_mutex_t run_mu; /* one pass at a time (tick or request) */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    /* Under mu: */
    bool is_stopping;
    int64_t last_run_ms;
    uint64_t blobs_reclaimed;
    uint64_t bytes_reclaimed;
    uint64_t errors;
    uint64_t passes;
    uint64_t manifests_deleted;
    int64_t last_retention_ms;
    int64_t next_sweep_ms;  /* 0: at the first tick (a crash's leftovers go first) */
    int64_t sweep_retry_ms; /* after an incomplete sweep: the wait before the next, doubling */
    uint64_t files_removed;
};

static int64_t cutoff_ms(const struct gc *g)
{
    return util_now_ms() - g->reg->cfg->gc_grace_s * 1000;
}

static bool is_stopping(struct gc *g)
{
    AZ(pthread_mutex_lock(&g->mu));
    bool v = g->is_stopping;
    AZ(pthread_mutex_unlock(&g->mu));
    return v;
}

/* Decides n digests in one transaction; is_orphan[i] says which went (or would go). The
 * files go before the lock is released. -1 on error (nothing decided). */
static int collect_group(struct gc *g, const char *const *digests, size_t n, int64_t cutoff,
                         bool is_dry_run, bool *is_orphan, int64_t *sizes)
{
    struct registry *reg = g->reg;
    struct err e = {0};
    /* Not waiting for another node's commits: this group is tried again at a later tick. */
    if (!is_dry_run && !gc_fence_try_exclusive(reg)) {
        for (size_t i = 0; i < n; i++)
            is_orphan[i] = false;
        return 0;
    }
    int rc = reg->ms->ops->gc_collect(reg->ms, digests, n, cutoff, is_dry_run, is_orphan, sizes,
                                      &e);
    for (size_t i = 0; rc == 0 && !is_dry_run && i < n; i++) {
        struct digest d;
        struct err pe = {0};
        if (!is_orphan[i])
            continue;
        if (digest_parse(digests[i], strlen(digests[i]), &d, &pe) == 0)
            (void)reg->bs->ops->remove(reg->bs, &d, NULL); /* one left: the sweep's */
        else
            log_warn("gc", "queued digest %s is not a digest: record dropped, no file", digests[i]);
    }
    if (!is_dry_run)
        gc_fence_leave(reg, true);
    if (rc != 0) {
        log_warn("gc", "failed to collect %zu blobs from %s: %s", n, digests[0], err_message(&e));
        return -1;
    }
    for (size_t i = 0; !is_dry_run && i < n; i++)
        if (is_orphan[i])
            log_info("gc", "deleted blob %s (%" PRId64 " bytes)", digests[i], sizes[i]);
    return 0;
}

/* Reviews the due digests, at most max of them (0: all); appends what goes to blobs
 * (may be NULL). */
static void pass(struct gc *g, bool is_dry_run, size_t max, json_t *blobs, uint64_t *n_reviewed,
                 uint64_t *n_reclaimed, uint64_t *n_bytes, uint64_t *n_errors)
{
    struct registry *reg = g->reg;
    int64_t cutoff = cutoff_ms(g);
    char *after = NULL;
    AZ(pthread_mutex_lock(&g->run_mu));
    for (;;) {
        size_t want = GC_BATCH;
        if (max > 0 && max - *n_reviewed < want)
            want = max - *n_reviewed;
        struct meta_name_list due = {0};
        struct err e = {0};
        if (want == 0 || is_stopping(g))
            break;
        if (reg->ms->ops->gc_due(reg->ms, cutoff, after, want, &due, &e) != 0) {
            log_warn("gc", "failed to read the review queue: %s", err_message(&e));
            (*n_errors)++;
            break;
        }
        for (size_t i = 0; i < due.n && !is_stopping(g); i += GC_GROUP) {
            size_t n = due.n - i < GC_GROUP ? due.n - i : GC_GROUP;
            bool is_orphan[GC_GROUP];
            int64_t sizes[GC_GROUP];
            *n_reviewed += n;
            if (collect_group(g, (const char *const *)due.names + i, n, cutoff, is_dry_run,
                              is_orphan, sizes) != 0) {
                (*n_errors)++;
                continue;
            }
            for (size_t j = 0; j < n; j++) {
                if (!is_orphan[j])
                    continue;
                (*n_reclaimed)++;
                *n_bytes += (uint64_t)sizes[j];
                if (blobs != NULL)
                    json_array_append_new(blobs, json_pack("{s:s,s:I}", "digest", due.names[i + j],
                                                           "size", (json_int_t)sizes[j]));
            }
        }
        bool is_more = due.has_more && due.n > 0;
        if (is_more) {
            free(after);
            after = xstrdup(due.names[due.n - 1]);
        }
        meta_name_list_fini(&due);
        if (!is_more)
            break;
    }
    AZ(pthread_mutex_unlock(&g->run_mu));
    free(after);
    if (is_dry_run)
        return;
    AZ(pthread_mutex_lock(&g->mu));
    g->last_run_ms = util_now_ms();
    g->blobs_reclaimed += *n_reclaimed;
    g->bytes_reclaimed += *n_bytes;
    g->errors += *n_errors;
    g->passes++;
    AZ(pthread_mutex_unlock(&g->mu));
}

/* Untagged manifests -------------------------------------------------------------
 * Listed past the shortest grace any repository has, then each given its repository's
 * own (retention rules may set one; a lock on the repository or the manifest keeps it)
 * and decided GC_GROUP at a time in one transaction (meta_untagged.c). */

/* The shortest untagged grace in force (0: none collects), rules loaded into *rules. */
static int64_t untagged_least_s(struct gc *g, struct retention_rules *rules)
{
    struct err e = {0};
    if (retention_rules_load(g->reg->ms, rules, &e) != 0) {
        log_warn("gc", "failed to read the retention rules: %s", err_message(&e));
        memset(rules, 0, sizeof(*rules));
        return 0; /* keep: nothing is deleted on a guess */
    }
    return retention_untagged_min_s(rules, g->reg->cfg->gc_untagged_after_s);
}

/* Gives each listed manifest the cutoff of its repository (INT64_MIN: keep it). */
static void set_cutoffs(struct gc *g, const struct retention_rules *rules,
                        struct meta_untagged_list *due, int64_t now_ms)
{
    for (size_t i = 0; i < due->n; i++) {
        struct meta_untagged *u = &due->items[i];
        int64_t grace_s = retention_untagged_after_s(rules, u->repo, g->reg->cfg->gc_untagged_after_s);
        u->cutoff_ms = grace_s > 0 ? now_ms - grace_s * 1000 : INT64_MIN;
        struct digest d;
        struct err pe = {0};
        struct repo_lock l;
        if (digest_parse(u->digest, strlen(u->digest), &d, &pe) != 0) {
            u->cutoff_ms = INT64_MIN;
            continue;
        }
        repo_lock_effective(g->reg->ms, u->repo, NULL, &d, &l);
        if (!l.delete_enabled)
            u->cutoff_ms = INT64_MIN;
    }
}

static void audit_untagged(struct gc *g, uint64_t n, const char *first)
{
    char detail[300];
    snprintf(detail, sizeof(detail), "%" PRIu64 " untagged manifests deleted (first %s)", n,
             first);
    struct meta_audit a = {.time_ms = util_now_ms(),
                           .actor = "gc",
                           .action = "gc.untagged",
                           .target = "*",
                           .status = 200,
                           .remote = "-",
                           .detail = detail};
    int64_t id;
    struct err e = {0};
    if (g->reg->ms->ops->audit_append(g->reg->ms, &a, g->reg->cfg->audit_max_rows, &id, &e) != 0)
        log_warn("gc", "failed to audit deleted manifests: %s", err_message(&e));
}

/* Decides the due untagged manifests this region owns, at most max (0: all); appends
 * {"repository","digest"} of those that go to out (may be NULL). */
static void untagged_pass(struct gc *g, bool is_dry_run, size_t max, json_t *out,
                          uint64_t *n_deleted, uint64_t *n_errors)
{
    struct registry *reg = g->reg;
    struct retention_rules rules;
    int64_t least_s = untagged_least_s(g, &rules);
    int64_t now_ms = util_now_ms();
    int64_t after_repo = 0;
    char *after_digest = NULL, *first = NULL;
    size_t n_seen = 0;
    uint64_t n_before = *n_deleted;
    int64_t group_ms = 0;
    while (least_s > 0) {
        size_t want = GC_BATCH;
        if (max > 0 && max - n_seen < want)
            want = max - n_seen;
        struct meta_untagged_list due = {0};
        struct err e = {0};
        if (want == 0 || is_stopping(g))
            break;
        if (reg->ms->ops->untagged_due(reg->ms, now_ms - least_s * 1000, reg->cfg->region,
                                       after_repo, after_digest, want, &due, &e) != 0) {
            log_warn("gc", "failed to list untagged manifests: %s", err_message(&e));
            (*n_errors)++;
            break;
        }
        set_cutoffs(g, &rules, &due, now_ms);
        for (size_t i = 0; i < due.n && !is_stopping(g); i += GC_GROUP) {
            size_t n = due.n - i < GC_GROUP ? due.n - i : GC_GROUP;
            /* Then as long a pause as the group held the writer: pushes' commits get it
             * at least half the time however long the pass (a mutex is not fair). */
            if (!is_dry_run)
                util_sleep_ms(group_ms);
            int64_t t0 = util_now_ms();
            /* The group and the delete deliveries of this region's webhooks commit together
             * (webhook.h; the others' fire on the replicated delete). */
            struct webhook_tx tx = {0};
            int rc = is_dry_run ? 0 : webhook_tx_begin(reg, &tx, &e);
            if (rc == 0)
                rc = reg->ms->ops->untagged_collect(reg->ms, due.items + i, n, is_dry_run, &e);
            for (size_t j = i; j < i + n && rc == 0 && !is_dry_run; j++) {
                if (!due.items[j].is_deleted)
                    continue;
                struct webhook_effect ev = {
                    .action = "delete", .repo = due.items[j].repo,
                    .digest = due.items[j].digest, .size = -1, .request_id = "gc",
                    .method = "GC", .host = reg->cfg->region};
                rc = webhook_tx_queue(&tx, &ev, &e);
            }
            rc = webhook_tx_end(&tx, rc, &e);
            group_ms = util_now_ms() - t0;
            if (rc != 0) {
                log_warn("gc", "failed to collect %zu untagged manifests from %s@%s: %s", n,
                         due.items[i].repo, due.items[i].digest, err_message(&e));
                (*n_errors)++;
                continue;
            }
            for (size_t j = i; j < i + n; j++) {
                if (!due.items[j].is_deleted)
                    continue;
                (*n_deleted)++;
                if (first == NULL)
                    first = xstrdup(due.items[j].digest);
                if (out != NULL)
                    json_array_append_new(out, json_pack("{s:s,s:s}", "repository",
                                                         due.items[j].repo, "digest",
                                                         due.items[j].digest));
                if (!is_dry_run) {
                    log_info("gc", "deleted untagged manifest %s@%s", due.items[j].repo,
                             due.items[j].digest);
                    pull_record_forget(reg->ms, due.items[j].repo, due.items[j].digest);
                }
            }
        }
        n_seen += due.n;
        bool is_more = due.has_more && due.n > 0;
        if (is_more) {
            free(after_digest);
            after_repo = due.items[due.n - 1].repo_id;
            after_digest = xstrdup(due.items[due.n - 1].digest);
        }
        meta_untagged_list_fini(&due);
        if (!is_more)
            break;
    }
    if (!is_dry_run && *n_deleted > n_before)
        audit_untagged(g, *n_deleted - n_before, first);
    free(first);
    free(after_digest);
    retention_rules_fini(&rules);
}

/* The file sweep (blob_sweep.h) over files older than the grace, serialized with the
 * passes; the files it removed (or would). Its errors are added to *n_errors and, like a
 * pass's, to the errors total. A sweep whose listing failed part way is not taken as
 * done: it is tried again after a GC interval, then twice that and so on up to the
 * hour of a complete sweep, rather than an hour later or at every tick of a listing
 * that keeps failing. */
static uint64_t sweep(struct gc *g, bool is_dry_run, json_t *out, uint64_t *n_errors,
                      bool *is_complete)
{
    uint64_t n_before = *n_errors;
    AZ(pthread_mutex_lock(&g->run_mu));
    uint64_t n = blob_sweep_run(g->reg, cutoff_ms(g), is_dry_run, out, n_errors, is_complete);
    AZ(pthread_mutex_unlock(&g->run_mu));
    if (is_dry_run)
        return n;
    AZ(pthread_mutex_lock(&g->mu));
    int64_t now = util_now_ms();
    if (*is_complete) {
        g->sweep_retry_ms = 0;
        g->next_sweep_ms = now + GC_SWEEP_INTERVAL_S * 1000;
    } else {
        int64_t first = g->reg->cfg->gc_interval_s * 1000;
        g->sweep_retry_ms = g->sweep_retry_ms > 0 ? g->sweep_retry_ms * 2 : first;
        if (g->sweep_retry_ms > GC_SWEEP_INTERVAL_S * 1000)
            g->sweep_retry_ms = GC_SWEEP_INTERVAL_S * 1000;
        g->next_sweep_ms = now + g->sweep_retry_ms;
    }
    g->files_removed += n;
    g->errors += *n_errors - n_before;
    AZ(pthread_mutex_unlock(&g->mu));
    return n;
}

json_t *gc_run(struct gc *g, bool is_dry_run, struct err *e)
{
    ASSERT(g->magic == GC_MAGIC);
    struct retention_rules rules;
    bool is_untagged_on = untagged_least_s(g, &rules) > 0;
    retention_rules_fini(&rules);
    if (g->reg->cfg->gc_grace_s <= 0 && !is_untagged_on) {
        err_set(e, ERR_CONFLICT, "garbage collection is off (--gc-grace 0, no untagged grace)");
        return NULL;
    }
    uint64_t n_reviewed = 0, n_reclaimed = 0, n_bytes = 0, n_errors = 0, n_manifests = 0;
    json_t *blobs = json_array(), *manifests = json_array();
    /* Manifests first: the blobs they release then wait for their own grace. */
    AZ(pthread_mutex_lock(&g->run_mu));
    untagged_pass(g, is_dry_run, 0, manifests, &n_manifests, &n_errors);
    AZ(pthread_mutex_unlock(&g->run_mu));
    if (!is_dry_run) {
        AZ(pthread_mutex_lock(&g->mu));
        g->manifests_deleted += n_manifests;
        AZ(pthread_mutex_unlock(&g->mu));
    }
    json_t *files = json_array();
    uint64_t n_files = 0;
    bool is_files_complete = true;
    if (g->reg->cfg->gc_grace_s > 0) {
        pass(g, is_dry_run, 0, blobs, &n_reviewed, &n_reclaimed, &n_bytes, &n_errors);
        n_files = sweep(g, is_dry_run, files, &n_errors, &is_files_complete);
    }
    if (!is_dry_run && n_reclaimed > 0)
        log_info("gc", "gc run: %" PRIu64 " blobs, %" PRIu64 " bytes deleted", n_reclaimed,
                 n_bytes);
    return json_pack("{s:b,s:o,s:I,s:I,s:I,s:I,s:o,s:I,s:o,s:I,s:b}", "dry_run", is_dry_run,
                     "blobs", blobs, "blobs_reclaimed", (json_int_t)n_reclaimed,
                     "bytes_reclaimed", (json_int_t)n_bytes, "reviewed", (json_int_t)n_reviewed,
                     "errors", (json_int_t)n_errors, "manifests", manifests,
                     "manifests_deleted", (json_int_t)n_manifests, "files", files,
                     "files_removed", (json_int_t)n_files, "files_complete",
                     is_files_complete);
}

json_t *gc_status_json(struct gc *g)
{
    ASSERT(g->magic == GC_MAGIC);
    int64_t n_queued = -1, n_due = -1;
    struct err e = {0};
    if (g->reg->ms->ops->gc_queue_length(g->reg->ms, cutoff_ms(g), &n_queued, &n_due, &e) != 0)
        log_warn("gc", "failed to read the review queue's length: %s", err_message(&e));
    int64_t n_untagged = -1, n_untagged_due = -1;
    if (g->reg->ms->ops->untagged_count(g->reg->ms,
                                        util_now_ms() - g->reg->cfg->gc_untagged_after_s * 1000,
                                        &n_untagged, &n_untagged_due, &e) != 0)
        log_warn("gc", "failed to count untagged manifests: %s", err_message(&e));
    AZ(pthread_mutex_lock(&g->mu));
    json_t *st = json_pack(
        "{s:b,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I}", "enabled", g->reg->cfg->gc_grace_s > 0,
        "grace_s", (json_int_t)g->reg->cfg->gc_grace_s, "interval_s",
        (json_int_t)g->reg->cfg->gc_interval_s, "batch", (json_int_t)GC_BATCH, "queue_length",
        (json_int_t)n_queued, "due", (json_int_t)n_due, "last_run_ms",
        (json_int_t)g->last_run_ms, "blobs_reclaimed_total", (json_int_t)g->blobs_reclaimed,
        "bytes_reclaimed_total", (json_int_t)g->bytes_reclaimed, "errors_total",
        (json_int_t)g->errors);
    json_t *untagged = json_pack(
        "{s:I,s:I,s:I,s:I,s:I,s:I,s:I}", "untagged_after_s", (json_int_t)g->reg->cfg->gc_untagged_after_s,
        "untagged", (json_int_t)n_untagged, "untagged_due", (json_int_t)n_untagged_due,
        "manifests_deleted_total", (json_int_t)g->manifests_deleted, "files_removed_total",
        (json_int_t)g->files_removed, "retention_interval_s",
        (json_int_t)g->reg->cfg->retention_interval_s, "last_retention_ms",
        (json_int_t)g->last_retention_ms);
    json_object_update(st, untagged);
    json_decref(untagged);
    AZ(pthread_mutex_unlock(&g->mu));
    return st;
}

/* The metrics source of the collector. */
static void render_metrics(void *arg, struct buf *out)
{
    struct gc *g = arg;
    int64_t n_queued = 0, n_due = 0;
    struct err e = {0};
    (void)g->reg->ms->ops->gc_queue_length(g->reg->ms, cutoff_ms(g), &n_queued, &n_due, &e);
    int64_t n_untagged = 0, n_untagged_due = 0;
    (void)g->reg->ms->ops->untagged_count(g->reg->ms, util_now_ms(), &n_untagged, &n_untagged_due,
                                          &e);
    AZ(pthread_mutex_lock(&g->mu));
    buf_printf(out,
               "# HELP meridian_gc_queue_length Blobs waiting for review by the garbage "
               "collector.\n# TYPE meridian_gc_queue_length gauge\n"
               "meridian_gc_queue_length %" PRId64 "\n"
               "# HELP meridian_gc_queue_due Queued blobs past their grace period.\n"
               "# TYPE meridian_gc_queue_due gauge\nmeridian_gc_queue_due %" PRId64 "\n"
               "# HELP meridian_gc_blobs_reclaimed_total Blobs the garbage collector deleted.\n"
               "# TYPE meridian_gc_blobs_reclaimed_total counter\n"
               "meridian_gc_blobs_reclaimed_total %" PRIu64 "\n"
               "# HELP meridian_gc_bytes_reclaimed_total Bytes the garbage collector freed.\n"
               "# TYPE meridian_gc_bytes_reclaimed_total counter\n"
               "meridian_gc_bytes_reclaimed_total %" PRIu64 "\n"
               "# HELP meridian_gc_errors_total Blob reviews that failed.\n"
               "# TYPE meridian_gc_errors_total counter\nmeridian_gc_errors_total %" PRIu64 "\n"
               "# HELP meridian_gc_last_run_timestamp_seconds End of the last collector pass.\n"
               "# TYPE meridian_gc_last_run_timestamp_seconds gauge\n"
               "meridian_gc_last_run_timestamp_seconds %.3f\n",
               n_queued, n_due, g->blobs_reclaimed, g->bytes_reclaimed, g->errors,
               (double)g->last_run_ms / 1000.0);
    buf_printf(out,
               "# HELP meridian_gc_untagged_manifests Manifests with no tag in this region.\n"
               "# TYPE meridian_gc_untagged_manifests gauge\n"
               "meridian_gc_untagged_manifests %" PRId64 "\n"
               "# HELP meridian_gc_manifests_deleted_total Untagged manifests the collector "
               "deleted.\n# TYPE meridian_gc_manifests_deleted_total counter\n"
               "meridian_gc_manifests_deleted_total %" PRIu64 "\n",
               n_untagged, g->manifests_deleted);
    AZ(pthread_mutex_unlock(&g->mu));
    /* Storage accounting: one query over the links per scrape (a join of repo_blobs). */
    struct meta_usage_list u = {0};
    if (g->reg->ms->ops->storage_usage(g->reg->ms, &u, &e) != 0)
        return;
    buf_printf(out, "# HELP meridian_storage_bytes Bytes of the blobs held here per repository: "
                    "unique to it, or shared with others.\n# TYPE meridian_storage_bytes gauge\n");
    for (size_t i = 0; i < u.n; i++)
        buf_printf(out,
                   "meridian_storage_bytes{repository=\"%s\",kind=\"unique\"} %" PRId64 "\n"
                   "meridian_storage_bytes{repository=\"%s\",kind=\"shared\"} %" PRId64 "\n",
                   u.items[i].repo, u.items[i].unique_bytes, u.items[i].repo,
                   u.items[i].shared_bytes);
    buf_printf(out, "# HELP meridian_storage_total_bytes Bytes of every blob held here, once.\n"
                    "# TYPE meridian_storage_total_bytes gauge\nmeridian_storage_total_bytes %" PRId64
                    "\n", u.total_bytes);
    meta_usage_list_fini(&u);
}

/* Applies the retention rules (retention_run.c), serialized with collector passes. */
static void retention_tick(struct gc *g)
{
    struct err e = {0};
    AZ(pthread_mutex_lock(&g->run_mu));
    json_t *r = retention_run(g->reg, false, &e);
    AZ(pthread_mutex_unlock(&g->run_mu));
    if (r == NULL)
        log_warn("gc", "failed to apply retention rules: %s", err_message(&e));
    json_decref(r);
    AZ(pthread_mutex_lock(&g->mu));
    g->last_retention_ms = util_now_ms();
    AZ(pthread_mutex_unlock(&g->mu));
}

json_t *gc_retention_run(struct gc *g, bool is_dry_run, struct err *e)
{
    ASSERT(g->magic == GC_MAGIC);
    AZ(pthread_mutex_lock(&g->run_mu));
    json_t *r = retention_run(g->reg, is_dry_run, e);
    AZ(pthread_mutex_unlock(&g->run_mu));
    if (r != NULL && !is_dry_run) {
        AZ(pthread_mutex_lock(&g->mu));
        g->last_retention_ms = util_now_ms();
        AZ(pthread_mutex_unlock(&g->mu));
    }
    return r;
}

static void *gc_main(void *arg)
{
    struct gc *g = arg;
    ASSERT(g->magic == GC_MAGIC);
    for (;;) {
        int64_t wake_ms = util_now_ms() + g->reg->cfg->gc_interval_s * 1000;
        struct timespec until = {.tv_sec = wake_ms / 1000, .tv_nsec = (wake_ms % 1000) * 1000000};
        AZ(pthread_mutex_lock(&g->mu));
        while (!g->is_stopping && util_now_ms() < wake_ms)
            pthread_cond_timedwait(&g->cv, &g->mu, &until);
        bool is_done = g->is_stopping;
        AZ(pthread_mutex_unlock(&g->mu));
        if (is_done)
            break;
        if (!registry_is_owner(g->reg))
            continue; /* another node of this region holds the background-work lease */
        uint64_t n_reviewed = 0, n_reclaimed = 0, n_bytes = 0, n_errors = 0, n_manifests = 0;
        AZ(pthread_mutex_lock(&g->run_mu));
        untagged_pass(g, false, GC_BATCH, NULL, &n_manifests, &n_errors);
        AZ(pthread_mutex_unlock(&g->run_mu));
        AZ(pthread_mutex_lock(&g->mu));
        g->manifests_deleted += n_manifests;
        g->errors += n_errors;
        bool is_retention_due =
            util_now_ms() - g->last_retention_ms >= g->reg->cfg->retention_interval_s * 1000;
        AZ(pthread_mutex_unlock(&g->mu));
        if (is_retention_due)
            retention_tick(g);
        if (g->reg->cfg->gc_grace_s <= 0)
            continue;
        n_errors = 0;
        pass(g, false, GC_BATCH, NULL, &n_reviewed, &n_reclaimed, &n_bytes, &n_errors);
        AZ(pthread_mutex_lock(&g->mu));
        bool is_sweep_due = util_now_ms() >= g->next_sweep_ms;
        AZ(pthread_mutex_unlock(&g->mu));
        if (is_sweep_due) {
            bool is_complete;
            (void)sweep(g, false, NULL, &n_errors, &is_complete);
        }
    }
    return NULL;
}

struct gc *gc_start(struct registry *reg)
{
    struct gc *g = xcalloc(1, sizeof(*g));
    g->magic = GC_MAGIC;
    g->reg = reg;
    AZ(pthread_mutex_init(&g->run_mu, NULL));
    AZ(pthread_mutex_init(&g->mu, NULL));
    AZ(pthread_cond_init(&g->cv, NULL));
    AZ(metrics_source_add(render_metrics, g));
    AZ(pthread_create(&g->thread, NULL, gc_main, g));
    return g;
}

void gc_stop(struct gc *g)
{
    if (g == NULL)
        return;
    ASSERT(g->magic == GC_MAGIC);
    AZ(pthread_mutex_lock(&g->mu));
    g->is_stopping = true;
    AZ(pthread_cond_broadcast(&g->cv));
    AZ(pthread_mutex_unlock(&g->mu));
    AZ(pthread_join(g->thread, NULL));
    metrics_source_remove(render_metrics, g);
    pthread_mutex_destroy(&g->run_mu);
    pthread_mutex_destroy(&g->mu);
    pthread_cond_destroy(&g->cv);
    g->magic = 0;
    free(g);
}
