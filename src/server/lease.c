/* The region's background-work lease (lease.h) on the metastore's lease_hold. */
#include "lease.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "registry_ctx.h"
#include "util.h"

#define LEASE_NAME "background"
#define LEASE_MAGIC 0x6c656173u /* "leas" */

struct lease {
    unsigned magic;
    struct registry *reg;
    char holder[128]; /* host:pid:random, unique per process */
    int64_t held_until_ms; /* the expiry of the last successful renewal (thread only) */
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool is_stopping; /* under mu */
};

/* One attempt: takes or renews the lease and sets reg->is_owner. When the store cannot
 * answer, a holder stays the owner until its last renewal is about to run out (another
 * node takes the lease only after that), then stops. */
static void try_hold(struct lease *l)
{
    struct metastore *ms = l->reg->ms;
    struct err e = {0};
    bool is_held = false;
    /* The store keeps the lease's expiry in its own clock; the holder keeps its deadline
     * in this node's, counted from before the request, so it ends no later. */
    int64_t now = util_now_ms();
    bool was_owner = atomic_load(&l->reg->is_owner);
    bool is_owner;
    if (ms->ops->lease_hold(ms, LEASE_NAME, l->holder, LEASE_TTL_MS, &is_held, &e) == 0) {
        is_owner = is_held;
        if (is_held) {
            l->held_until_ms = now + LEASE_TTL_MS;
            /* On a shared store, stop one renewal period before the lease runs out should
             * the next renewals hang on the store (another node may then take it). */
            if (l->reg->cfg->metastore != NULL)
                atomic_store(&l->reg->owner_until_ms, now + LEASE_TTL_MS - LEASE_RENEW_MS);
        }
    } else {
        is_owner = was_owner && now < l->held_until_ms - LEASE_RENEW_MS;
        log_warn("lease", "failed to renew the background-work lease: %s", err_message(&e));
    }
    atomic_store(&l->reg->is_owner, is_owner);
    if (is_owner != was_owner && l->reg->cfg->metastore != NULL)
        log_info("lease", "%s the region's background work (%s)",
                 is_owner ? "this node runs" : "another node runs", l->holder);
}

static void *lease_main(void *arg)
{
    struct lease *l = arg;
    AZ(pthread_mutex_lock(&l->mu));
    while (!l->is_stopping) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += LEASE_RENEW_MS / 1000;
        until.tv_nsec += (LEASE_RENEW_MS % 1000) * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        while (!l->is_stopping && pthread_cond_timedwait(&l->cv, &l->mu, &until) != ETIMEDOUT)
            ;
        if (l->is_stopping)
            break;
        AZ(pthread_mutex_unlock(&l->mu));
        try_hold(l);
        AZ(pthread_mutex_lock(&l->mu));
    }
    AZ(pthread_mutex_unlock(&l->mu));
    return NULL;
}

struct lease *lease_start(struct registry *reg)
{
    struct lease *l = xcalloc(1, sizeof(*l));
    l->magic = LEASE_MAGIC;
    l->reg = reg;
    char host[64] = "";
    (void)gethostname(host, sizeof(host) - 1);
    char rnd[33];
    util_random_id(rnd);
    snprintf(l->holder, sizeof(l->holder), "%s:%ld:%.8s", host, (long)getpid(), rnd);
    AZ(pthread_mutex_init(&l->mu, NULL));
    AZ(pthread_cond_init(&l->cv, NULL));
    atomic_store(&reg->is_owner, false);
    try_hold(l);
    AZ(pthread_create(&l->thread, NULL, lease_main, l));
    return l;
}

void lease_stop(struct lease *l)
{
    if (l == NULL)
        return;
    ASSERT(l->magic == LEASE_MAGIC);
    AZ(pthread_mutex_lock(&l->mu));
    l->is_stopping = true;
    AZ(pthread_cond_signal(&l->cv));
    AZ(pthread_mutex_unlock(&l->mu));
    AZ(pthread_join(l->thread, NULL));
    if (atomic_exchange(&l->reg->is_owner, false)) {
        /* Given up at once, so another node need not wait for it to run out. */
        struct err e = {0};
        bool is_held;
        (void)l->reg->ms->ops->lease_hold(l->reg->ms, LEASE_NAME, l->holder, 0, &is_held, &e);
    }
    pthread_mutex_destroy(&l->mu);
    pthread_cond_destroy(&l->cv);
    free(l);
}
