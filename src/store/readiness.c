/* /readyz's probes of the metadata and blob stores, cached and bounded (readiness.h). */
#include "readiness.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "util.h"

struct readiness {
    struct metastore *ms;
    struct blobstore *bs;
    int64_t cache_ms, timeout_ms;
    pthread_mutex_t mu;
    pthread_cond_t cv;              /* the thread: a probe is wanted; callers: one finished */
    pthread_t thread;
    bool has_thread, is_stopping;
    bool is_wanted;                 /* a caller asked for a fresh probe */
    bool is_running;
    int64_t started_mono_ms;        /* when the running probe started */
    const char *stage;              /* the store the running probe waits on */
    uint64_t probes;                /* finished probes */
    int64_t checked_mono_ms;        /* when the last one finished; 0: none yet */
    struct readiness_result last;
    bool was_ready;                 /* for logging the changes only */
};

static int64_t mono_ms(void)
{
    return util_mono_ns() / 1000000;
}

/* One probe of both stores, outside the lock. */
static void probe(struct readiness *r, struct readiness_result *out)
{
    memset(out, 0, sizeof(*out));
    struct err e = {0};
    out->is_metastore_ok = r->ms->ops->ping == NULL || r->ms->ops->ping(r->ms, &e) == 0;
    if (!out->is_metastore_ok)
        snprintf(out->metastore_error, sizeof(out->metastore_error), "%s", err_message(&e));
    AZ(pthread_mutex_lock(&r->mu));
    r->stage = "blobstore";
    AZ(pthread_mutex_unlock(&r->mu));
    memset(&e, 0, sizeof(e));
    out->is_blobstore_ok = r->bs->ops->check == NULL ||
                           r->bs->ops->check(r->bs, (long)r->timeout_ms, &e) == 0;
    if (!out->is_blobstore_ok)
        snprintf(out->blobstore_error, sizeof(out->blobstore_error), "%s", err_message(&e));
    out->checked_ms = util_now_ms();
}

static void *readiness_main(void *arg)
{
    struct readiness *r = arg;
    AZ(pthread_mutex_lock(&r->mu));
    for (;;) {
        while (!r->is_wanted && !r->is_stopping)
            AZ(pthread_cond_wait(&r->cv, &r->mu));
        if (r->is_stopping)
            break;
        r->is_wanted = false;
        r->is_running = true;
        r->started_mono_ms = mono_ms();
        r->stage = "metastore";
        AZ(pthread_mutex_unlock(&r->mu));
        struct readiness_result res;
        probe(r, &res);
        AZ(pthread_mutex_lock(&r->mu));
        bool is_ready = res.is_metastore_ok && res.is_blobstore_ok;
        if (is_ready != r->was_ready || r->probes == 0) {
            if (is_ready)
                log_info("readiness", "ready: metadata and blob stores answer");
            else
                log_warn("readiness", "not ready: metastore %s, blobstore %s",
                         res.is_metastore_ok ? "ok" : res.metastore_error,
                         res.is_blobstore_ok ? "ok" : res.blobstore_error);
        }
        r->was_ready = is_ready;
        r->last = res;
        r->checked_mono_ms = mono_ms();
        r->probes++;
        r->is_running = false;
        AZ(pthread_cond_broadcast(&r->cv));
    }
    AZ(pthread_mutex_unlock(&r->mu));
    return NULL;
}

struct readiness *readiness_new(struct metastore *ms, struct blobstore *bs, int64_t cache_ms,
                                int64_t timeout_ms)
{
    struct readiness *r = xcalloc(1, sizeof(*r));
    r->ms = ms;
    r->bs = bs;
    r->cache_ms = cache_ms;
    r->timeout_ms = timeout_ms;
    AZ(pthread_mutex_init(&r->mu, NULL));
    pthread_condattr_t ca;
    AZ(pthread_condattr_init(&ca));
    AZ(pthread_condattr_setclock(&ca, CLOCK_MONOTONIC));
    AZ(pthread_cond_init(&r->cv, &ca));
    AZ(pthread_condattr_destroy(&ca));
    return r;
}

void readiness_free(struct readiness *r)
{
    if (r == NULL)
        return;
    AZ(pthread_mutex_lock(&r->mu));
    r->is_stopping = true;
    AZ(pthread_cond_broadcast(&r->cv));
    AZ(pthread_mutex_unlock(&r->mu));
    if (r->has_thread)
        pthread_join(r->thread, NULL);
    pthread_cond_destroy(&r->cv);
    pthread_mutex_destroy(&r->mu);
    free(r);
}

/* The answer for a probe still running past the timeout: the store it waits on failed. */
static void timed_out(struct readiness *r, struct readiness_result *out)
{
    memset(out, 0, sizeof(*out));
    bool is_ms = strcmp(r->stage, "metastore") == 0;
    out->is_metastore_ok = !is_ms;
    out->is_blobstore_ok = false;
    char *msg = is_ms ? out->metastore_error : out->blobstore_error;
    snprintf(msg, sizeof(out->metastore_error), "no answer within %lld ms",
             (long long)r->timeout_ms);
    if (is_ms)
        snprintf(out->blobstore_error, sizeof(out->blobstore_error),
                 "not checked: the metastore check did not finish");
    out->checked_ms = util_now_ms();
}

bool readiness_check(struct readiness *r, struct readiness_result *out)
{
    AZ(pthread_mutex_lock(&r->mu));
    int64_t now = mono_ms();
    /* An answer older than a cache period and a timeout is no answer: the caller before
     * this one may have come long ago, and its probe says nothing about the stores now. */
    bool has_result = r->checked_mono_ms != 0 &&
                      now - r->checked_mono_ms < r->cache_ms + r->timeout_ms;
    if (has_result && now - r->checked_mono_ms < r->cache_ms) {
        *out = r->last;
        AZ(pthread_mutex_unlock(&r->mu));
        return out->is_metastore_ok && out->is_blobstore_ok;
    }
    if (!r->has_thread) {
        AZ(pthread_create(&r->thread, NULL, readiness_main, r));
        r->has_thread = true;
    }
    if (!r->is_running && !r->is_wanted) {
        r->is_wanted = true;
        r->started_mono_ms = now; /* a wait counts from the ask */
        r->stage = "metastore";
        AZ(pthread_cond_broadcast(&r->cv));
    }
    int64_t deadline = r->started_mono_ms + r->timeout_ms;
    if (has_result && now < deadline) {
        /* The probe just asked for runs while this caller gets the last answer (at most a
         * cache period and a timeout old): a probe behind a loaded database never delays a
         * load balancer's check, and a failure shows at the next one. */
        *out = r->last;
        AZ(pthread_mutex_unlock(&r->mu));
        return out->is_metastore_ok && out->is_blobstore_ok;
    }
    /* The first answer, or the first after a stale one, is waited for within the timeout. */
    uint64_t seen = r->probes;
    while (!has_result && r->probes == seen && now < deadline) {
        struct timespec ts = {.tv_sec = deadline / 1000, .tv_nsec = (deadline % 1000) * 1000000};
        int rc = pthread_cond_timedwait(&r->cv, &r->mu, &ts);
        ASSERT(rc == 0 || rc == ETIMEDOUT);
        now = mono_ms();
    }
    if (r->probes == seen) {
        /* A probe still running past the timeout: the store it waits on does not answer. */
        timed_out(r, out);
        AZ(pthread_mutex_unlock(&r->mu));
        return false;
    }
    *out = r->last;
    AZ(pthread_mutex_unlock(&r->mu));
    return out->is_metastore_ok && out->is_blobstore_ok;
}

uint64_t readiness_probes(struct readiness *r)
{
    AZ(pthread_mutex_lock(&r->mu));
    uint64_t n = r->probes;
    AZ(pthread_mutex_unlock(&r->mu));
    return n;
}
