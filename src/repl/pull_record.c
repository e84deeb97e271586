/* Last-pull times of manifests (pull_record.h). */
#include "pull_record.h"

#include <jansson.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "log.h"
#include "registry_ctx.h"
#include "retention.h"
#include "util.h"

/* Distinct manifests noted between two flushes; past it, notes are dropped until the
 * next flush (a pull then counts from its next note), so memory stays bounded. */
#define PULL_RECORD_MAX_PENDING 65536

struct pending {
    char *key; /* "<repo>@<digest>"; NULL: free slot */
    int64_t pulled_ms;
};

struct pull_record {
    struct registry *reg;
    pthread_mutex_t mu; /* guards slots, n, cap, is_stopping */
    pthread_cond_t cv;
    struct pending *slots; /* open addressing, cap a power of two */
    size_t n, cap;
    bool is_stopping;
    pthread_mutex_t flush_mu; /* one flush at a time */
    pthread_t thread;
};

static uint64_t hash_key(const char *repo, const char *digest)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (const char *p = repo; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ull;
    h = (h ^ '@') * 1099511628211ull;
    for (const char *p = digest; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ull;
    return h;
}

static bool key_equals(const char *key, const char *repo, const char *digest)
{
    size_t lr = strlen(repo);
    return strncmp(key, repo, lr) == 0 && key[lr] == '@' && strcmp(key + lr + 1, digest) == 0;
}

void pull_record_note(struct pull_record *pr, const char *repo, const char *digest,
                      int64_t now_ms)
{
    if (pr == NULL)
        return;
    uint64_t h = hash_key(repo, digest);
    AZ(pthread_mutex_lock(&pr->mu));
    if (pr->slots == NULL) {
        pr->cap = 1024;
        pr->slots = xcalloc(pr->cap, sizeof(pr->slots[0]));
    }
    size_t i = h & (pr->cap - 1);
    while (pr->slots[i].key != NULL && !key_equals(pr->slots[i].key, repo, digest))
        i = (i + 1) & (pr->cap - 1);
    if (pr->slots[i].key != NULL) {
        if (now_ms > pr->slots[i].pulled_ms)
            pr->slots[i].pulled_ms = now_ms;
    } else if (pr->n < PULL_RECORD_MAX_PENDING) {
        size_t len = strlen(repo) + strlen(digest) + 2;
        char *key = xmalloc(len);
        snprintf(key, len, "%s@%s", repo, digest);
        pr->slots[i] = (struct pending){.key = key, .pulled_ms = now_ms};
        if (++pr->n * 2 > pr->cap) { /* keep the load under one half */
            struct pending *old = pr->slots;
            size_t old_cap = pr->cap;
            pr->cap *= 2;
            pr->slots = xcalloc(pr->cap, sizeof(pr->slots[0]));
            for (size_t k = 0; k < old_cap; k++) {
                if (old[k].key == NULL)
                    continue;
                const char *at = strchr(old[k].key, '@');
                char *repo_part = xstrndup(old[k].key, (size_t)(at - old[k].key));
                size_t j = hash_key(repo_part, at + 1) & (pr->cap - 1);
                free(repo_part);
                while (pr->slots[j].key != NULL)
                    j = (j + 1) & (pr->cap - 1);
                pr->slots[j] = old[k];
            }
            free(old);
        }
    }
    AZ(pthread_mutex_unlock(&pr->mu));
}

int64_t pull_record_get(struct metastore *ms, const char *repo, const char *digest)
{
    size_t len = strlen(repo) + strlen(digest) + 2;
    char *key = xmalloc(len);
    snprintf(key, len, "%s@%s", repo, digest);
    char *value = NULL;
    struct err e = {0};
    int64_t pulled_ms = 0;
    if (ms->ops->object_get(ms, PULL_RECORD_KIND, key, &value, &e) == 0) {
        json_t *v = json_loads(value, 0, NULL);
        json_t *t = json_object_get(v, "pulledMs");
        if (json_is_integer(t) && json_integer_value(t) > 0)
            pulled_ms = (int64_t)json_integer_value(t);
        json_decref(v);
    }
    free(value);
    free(key);
    return pulled_ms;
}

void pull_record_forget(struct metastore *ms, const char *repo, const char *digest)
{
    if (pull_record_get(ms, repo, digest) == 0)
        return; /* never pulled: no tombstone to replicate */
    size_t len = strlen(repo) + strlen(digest) + 2;
    char *key = xmalloc(len);
    snprintf(key, len, "%s@%s", repo, digest);
    struct err e = {0};
    if (ms->ops->object_delete(ms, PULL_RECORD_KIND, key, &e) != 0 && e.code != ERR_NOT_FOUND)
        log_warn("pull_record", "failed to remove the pull time of %s: %s", key, err_message(&e));
    free(key);
}

/* Writes one pending pull time if it is news (the stored time is older by the
 * precision, or absent). 1: written, 0: not needed, -1: failed. */
static int flush_one(struct pull_record *pr, const struct pending *p)
{
    struct metastore *ms = pr->reg->ms;
    const char *at = strrchr(p->key, '@');
    char *repo = xstrndup(p->key, (size_t)(at - p->key));
    int64_t stored = pull_record_get(ms, repo, at + 1);
    free(repo);
    if (stored > 0 && p->pulled_ms - stored < PULL_RECORD_PRECISION_MS)
        return 0;
    char value[64];
    snprintf(value, sizeof(value), "{\"pulledMs\":%lld}", (long long)p->pulled_ms);
    struct err e = {0};
    if (ms->ops->object_put(ms, PULL_RECORD_KIND, p->key, value, &e) != 0) {
        log_warn("pull_record", "failed to record the pull of %s: %s", p->key, err_message(&e));
        return -1;
    }
    return 1;
}

int pull_record_flush(struct pull_record *pr)
{
    if (pr == NULL)
        return 0;
    AZ(pthread_mutex_lock(&pr->flush_mu));
    AZ(pthread_mutex_lock(&pr->mu));
    struct pending *slots = pr->slots;
    size_t cap = pr->cap;
    pr->slots = NULL;
    pr->n = pr->cap = 0;
    AZ(pthread_mutex_unlock(&pr->mu));
    int n_written = 0;
    bool has_failed = false;
    for (size_t i = 0; i < cap; i++) {
        if (slots[i].key == NULL)
            continue;
        int rc = atomic_load(&pr->reg->is_removed) ? 0 : flush_one(pr, &slots[i]);
        if (rc < 0) { /* pending again: the next flush retries */
            has_failed = true;
            const char *at = strrchr(slots[i].key, '@');
            char *repo = xstrndup(slots[i].key, (size_t)(at - slots[i].key));
            pull_record_note(pr, repo, at + 1, slots[i].pulled_ms);
            free(repo);
        } else {
            n_written += rc;
        }
        free(slots[i].key);
    }
    free(slots);
    AZ(pthread_mutex_unlock(&pr->flush_mu));
    return has_failed ? -1 : n_written;
}

static void *pull_record_main(void *arg)
{
    struct pull_record *pr = arg;
    for (;;) {
        int64_t wake_ms = util_now_ms() + pr->reg->cfg->pull_record_interval_s * 1000;
        struct timespec until = {.tv_sec = wake_ms / 1000, .tv_nsec = (wake_ms % 1000) * 1000000};
        AZ(pthread_mutex_lock(&pr->mu));
        while (!pr->is_stopping && util_now_ms() < wake_ms)
            pthread_cond_timedwait(&pr->cv, &pr->mu, &until);
        bool is_done = pr->is_stopping;
        AZ(pthread_mutex_unlock(&pr->mu));
        if (is_done)
            break;
        pull_record_flush(pr);
    }
    return NULL;
}

struct pull_record *pull_record_start(struct registry *reg)
{
    struct pull_record *pr = xcalloc(1, sizeof(*pr));
    pr->reg = reg;
    AZ(pthread_mutex_init(&pr->mu, NULL));
    AZ(pthread_mutex_init(&pr->flush_mu, NULL));
    AZ(pthread_cond_init(&pr->cv, NULL));
    AZ(pthread_create(&pr->thread, NULL, pull_record_main, pr));
    return pr;
}

void pull_record_stop(struct pull_record *pr)
{
    if (pr == NULL)
        return;
    AZ(pthread_mutex_lock(&pr->mu));
    pr->is_stopping = true;
    AZ(pthread_cond_broadcast(&pr->cv));
    AZ(pthread_mutex_unlock(&pr->mu));
    AZ(pthread_join(pr->thread, NULL));
    pull_record_flush(pr); /* what was noted since the last flush */
    AZ(pthread_mutex_lock(&pr->mu));
    for (size_t i = 0; i < pr->cap; i++)
        free(pr->slots[i].key);
    free(pr->slots);
    AZ(pthread_mutex_unlock(&pr->mu));
    pthread_mutex_destroy(&pr->mu);
    pthread_mutex_destroy(&pr->flush_mu);
    pthread_cond_destroy(&pr->cv);
    free(pr);
}
