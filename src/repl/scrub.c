/* The scrub thread (scrub.h). One pass: list every blob the metastore records, and for
 * each read the stored copy through blobstore verify, sleeping between chunks so that
 * the pass reads at most scrub_rate_bytes per second (the disk stays free for clients).
 * A copy that fails is already in quarantine when verify returns; the pass then hands
 * it to repl_blob_recover, which hides the manifests that need it and wakes the
 * replication fetch workers to bring a good copy back from a peer. Missing files are
 * left to replication's own check (repl.c scrub_blobs).
 *
 *   idle --(interval elapsed | scrub_request)--> running --(pass done)--> idle
 *                                                   +--(stop)--> exits
 */
#include "scrub.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "metrics.h"
#include "registry_ctx.h"
#include "repl.h"
#include "util.h"
#include "webhook_def.h"

#define SCRUB_MAGIC 0x73637262u /* "scrb" */
#define SCRUB_STATE_FILE "scrub.last"

struct scrub {
    unsigned magic;
    struct registry *reg;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    /* Under mu: */
    bool is_stopping;
    bool is_requested;
    bool is_running;
    int64_t next_due_ms; /* 0: none scheduled */
    int64_t last_started_ms;
    int64_t last_completed_ms;
    uint64_t pass_blobs; /* of the running pass, or the last one */
    uint64_t pass_bytes;
    uint64_t pass_corrupt;
    /* Rate keeping of the running pass (scrub thread only). */
    int64_t pass_start_ns;
    uint64_t pass_read;
};

/* Last completed pass, persisted -------------------------------------------- */

static void state_path(const struct scrub *s, char *out, size_t n)
{
    snprintf(out, n, "%s/%s", s->reg->cfg->data_dir, SCRUB_STATE_FILE);
}

/* ms of the last completed pass, or 0 if unknown. */
static int64_t state_read(const struct scrub *s)
{
    char path[4096];
    char text[32] = {0};
    state_path(s, path, sizeof(path));
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return 0;
    size_t n = fread(text, 1, sizeof(text) - 1, f);
    fclose(f);
    while (n > 0 && (text[n - 1] == '\n' || text[n - 1] == ' '))
        n--;
    uint64_t v;
    if (util_parse_u64(text, n, &v) != 0 || v > INT64_MAX)
        return 0;
    return (int64_t)v;
}

/* Written in place: a torn write reads as unknown, which only reschedules a pass. */
static void state_write(const struct scrub *s, int64_t ms)
{
    char path[4096];
    state_path(s, path, sizeof(path));
    FILE *f = fopen(path, "w");
    if (f == NULL || fprintf(f, "%" PRId64 "\n", ms) < 0 || fclose(f) != 0) {
        log_warn("scrub", "failed to record the time of the last scrub in %s", path);
        return;
    }
}

/* One pass ---------------------------------------------------------------------- */

/* blobstore_throttle_f: sleeps until the bytes read so far fit the rate. */
static int on_chunk(void *arg, uint64_t bytes)
{
    struct scrub *s = arg;
    s->pass_read += bytes;
    uint64_t rate = s->reg->cfg->scrub_rate_bytes;
    AZ(pthread_mutex_lock(&s->mu));
    s->pass_bytes += bytes;
    if (rate > 0) {
        int64_t due_ns = s->pass_start_ns + (int64_t)((double)s->pass_read * 1e9 / (double)rate);
        for (int64_t now = util_mono_ns(); now < due_ns && !s->is_stopping; now = util_mono_ns()) {
            /* The condition variable runs on the wall clock; wait by the remaining time. */
            int64_t left_ns = due_ns - now;
            struct timespec until;
            clock_gettime(CLOCK_REALTIME, &until);
            until.tv_sec += left_ns / 1000000000;
            until.tv_nsec += left_ns % 1000000000;
            if (until.tv_nsec >= 1000000000) {
                until.tv_sec++;
                until.tv_nsec -= 1000000000;
            }
            pthread_cond_timedwait(&s->cv, &s->mu, &until);
        }
    }
    bool is_stopping = s->is_stopping;
    AZ(pthread_mutex_unlock(&s->mu));
    return is_stopping ? -1 : 0;
}

static void run_pass(struct scrub *s)
{
    struct registry *reg = s->reg;
    struct meta_name_list digests = {0};
    struct err e = {0};
    if (reg->ms->ops->blob_list_all(reg->ms, &digests, &e) != 0) {
        log_error("scrub", "failed to list blobs: %s", err_message(&e));
        return;
    }
    s->pass_start_ns = util_mono_ns();
    s->pass_read = 0;
    log_info("scrub", "scrub started: %zu blobs, at most %" PRIu64 " bytes/s", digests.n,
             reg->cfg->scrub_rate_bytes);
    uint64_t n_corrupt = 0;
    uint64_t n_verified = 0;
    bool is_interrupted = false;
    for (size_t i = 0; i < digests.n && !is_interrupted; i++) {
        struct digest d;
        uint64_t size;
        struct err ve = {0};
        if (digest_parse(digests.names[i], strlen(digests.names[i]), &d, &ve) != 0 ||
            reg->ms->ops->blob_find(reg->ms, &d, &size, &ve) != 0)
            continue; /* deleted since the list was read */
        int rc = reg->bs->ops->verify(reg->bs, &d, size, on_chunk, s, &ve);
        if (rc == 0 || ve.code == ERR_BLOB_CORRUPT) {
            n_verified++;
            metrics_count_scrub_verified(size);
        }
        if (rc == 0)
            continue;
        if (ve.code == ERR_UNAVAILABLE) {
            is_interrupted = true;
        } else if (ve.code == ERR_BLOB_CORRUPT) {
            n_corrupt++;
            AZ(pthread_mutex_lock(&s->mu));
            s->pass_corrupt++;
            AZ(pthread_mutex_unlock(&s->mu));
            struct err re = {0};
            repl_blob_recover(reg, NULL, &d, &re);
        } else if (ve.code != ERR_BLOB_UNKNOWN) {
            log_error("scrub", "failed to verify blob %s: %s", d.str, err_message(&ve));
        }
        AZ(pthread_mutex_lock(&s->mu));
        s->pass_blobs = n_verified;
        AZ(pthread_mutex_unlock(&s->mu));
    }
    AZ(pthread_mutex_lock(&s->mu));
    s->pass_blobs = n_verified;
    AZ(pthread_mutex_unlock(&s->mu));
    double secs = (double)(util_mono_ns() - s->pass_start_ns) / 1e9;
    if (is_interrupted) {
        log_info("scrub", "scrub interrupted after %" PRIu64 " blobs", n_verified);
    } else {
        metrics_count_scrub_pass();
        log_info("scrub",
                 "scrub done: %" PRIu64 " blobs, %" PRIu64 " bytes in %.1f s, %" PRIu64 " corrupt",
                 n_verified, s->pass_read, secs, n_corrupt);
    }
    meta_name_list_fini(&digests);
    if (!is_interrupted) {
        int64_t now = util_now_ms();
        state_write(s, now);
        AZ(pthread_mutex_lock(&s->mu));
        s->last_completed_ms = now;
        AZ(pthread_mutex_unlock(&s->mu));
    }
}

/* The thread ------------------------------------------------------------------------ */

static void *scrub_main(void *arg)
{
    struct scrub *s = arg;
    ASSERT(s->magic == SCRUB_MAGIC);
    AZ(pthread_mutex_lock(&s->mu));
    while (!s->is_stopping) {
        int64_t now = util_now_ms();
        /* Scheduled passes run on the node that owns the region's background work; one
         * asked for through the API runs where it was asked. */
        bool is_due = s->next_due_ms > 0 && now >= s->next_due_ms &&
                      registry_is_owner(s->reg);
        if (!s->is_requested && !is_due) {
            struct timespec until;
            int64_t wake_ms = s->next_due_ms > 0 ? s->next_due_ms : now + 3600 * 1000;
            if (wake_ms <= now)
                wake_ms = now + 1000; /* due, not the owner: look again later */
            until.tv_sec = wake_ms / 1000;
            until.tv_nsec = (wake_ms % 1000) * 1000000;
            pthread_cond_timedwait(&s->cv, &s->mu, &until);
            continue;
        }
        s->is_requested = false;
        s->is_running = true;
        s->last_started_ms = now;
        s->pass_blobs = 0;
        s->pass_bytes = 0;
        s->pass_corrupt = 0;
        AZ(pthread_mutex_unlock(&s->mu));
        run_pass(s);
        AZ(pthread_mutex_lock(&s->mu));
        s->is_running = false;
        int64_t interval_ms = s->reg->cfg->scrub_interval_s * 1000;
        s->next_due_ms = interval_ms > 0 ? util_now_ms() + interval_ms : 0;
        AZ(pthread_cond_broadcast(&s->cv));
    }
    AZ(pthread_mutex_unlock(&s->mu));
    return NULL;
}

struct scrub *scrub_start(struct registry *reg)
{
    struct scrub *s = xcalloc(1, sizeof(*s));
    s->magic = SCRUB_MAGIC;
    s->reg = reg;
    AZ(pthread_mutex_init(&s->mu, NULL));
    AZ(pthread_cond_init(&s->cv, NULL));
    int64_t interval_ms = reg->cfg->scrub_interval_s * 1000;
    s->last_completed_ms = state_read(s);
    if (s->last_completed_ms == 0 && interval_ms > 0) {
        /* A new store (or one from before the scrub): the clock starts now. */
        state_write(s, util_now_ms());
        s->next_due_ms = util_now_ms() + interval_ms;
    } else if (interval_ms > 0) {
        s->next_due_ms = s->last_completed_ms + interval_ms;
    }
    AZ(pthread_create(&s->thread, NULL, scrub_main, s));
    return s;
}

void scrub_stop(struct scrub *s)
{
    if (s == NULL)
        return;
    ASSERT(s->magic == SCRUB_MAGIC);
    AZ(pthread_mutex_lock(&s->mu));
    s->is_stopping = true;
    AZ(pthread_cond_broadcast(&s->cv));
    AZ(pthread_mutex_unlock(&s->mu));
    AZ(pthread_join(s->thread, NULL));
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    s->magic = 0;
    free(s);
}

bool scrub_request(struct scrub *s)
{
    ASSERT(s->magic == SCRUB_MAGIC);
    AZ(pthread_mutex_lock(&s->mu));
    bool was_running = s->is_running || s->is_requested;
    s->is_requested = true;
    AZ(pthread_cond_broadcast(&s->cv));
    AZ(pthread_mutex_unlock(&s->mu));
    return !was_running;
}

static json_t *time_or_null(int64_t ms)
{
    if (ms <= 0)
        return json_null();
    char text[32];
    webhook_def_format_time(ms, text);
    return json_string(text);
}

json_t *scrub_status_json(struct scrub *s)
{
    ASSERT(s->magic == SCRUB_MAGIC);
    json_t *out = json_object();
    AZ(pthread_mutex_lock(&s->mu));
    json_object_set_new(out, "running", json_boolean(s->is_running || s->is_requested));
    json_object_set_new(out, "intervalSeconds", json_integer(s->reg->cfg->scrub_interval_s));
    json_object_set_new(out, "rateBytesPerSecond",
                        json_integer((json_int_t)s->reg->cfg->scrub_rate_bytes));
    json_object_set_new(out, "lastStarted", time_or_null(s->last_started_ms));
    json_object_set_new(out, "lastCompleted", time_or_null(s->last_completed_ms));
    json_object_set_new(out, "nextDue", time_or_null(s->next_due_ms));
    json_t *pass = json_object();
    json_object_set_new(pass, "blobsVerified", json_integer((json_int_t)s->pass_blobs));
    json_object_set_new(pass, "bytesVerified", json_integer((json_int_t)s->pass_bytes));
    json_object_set_new(pass, "corrupt", json_integer((json_int_t)s->pass_corrupt));
    json_object_set_new(out, "lastPass", pass);
    AZ(pthread_mutex_unlock(&s->mu));
    struct blobstore_quarantined *q = NULL;
    size_t n = 0;
    s->reg->bs->ops->quarantined(s->reg->bs, &q, &n);
    json_t *list = json_array();
    for (size_t i = 0; i < n; i++) {
        json_t *o = json_object();
        json_object_set_new(o, "digest", json_string(q[i].digest.str));
        json_object_set_new(o, "file", json_string(q[i].file));
        json_object_set_new(o, "quarantinedAt", time_or_null(q[i].quarantined_ms));
        json_object_set_new(o, "repaired", json_boolean(q[i].is_repaired));
        json_array_append_new(list, o);
    }
    free(q);
    json_object_set_new(out, "quarantined", list);
    return out;
}
