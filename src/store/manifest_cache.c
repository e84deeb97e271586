/* manifest_cache.h. Direct-mapped: (repo, ref) hashes to one slot, a newer lookup replaces
 * whatever is there. One mutex per slot, held for a copy of at most
 * MANIFEST_CACHE_MAX_BODY bytes, so workers reading different manifests do not queue on
 * each other. At most MANIFEST_CACHE_SLOTS x MANIFEST_CACHE_MAX_BODY bytes (4 MiB) of
 * bodies; slots are filled only by lookups that happen. */
#include "manifest_cache.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

struct slot {
    pthread_mutex_t mu;
    /* Under mu: */
    char *key; /* repo '\0' ref '\0'; NULL: empty */
    size_t key_len;
    uint64_t gen;
    struct meta_manifest m;
};

struct manifest_cache {
    struct slot slots[MANIFEST_CACHE_SLOTS];
};

struct manifest_cache *manifest_cache_new(void)
{
    struct manifest_cache *mc = xcalloc(1, sizeof(*mc));
    for (size_t i = 0; i < MANIFEST_CACHE_SLOTS; i++)
        AZ(pthread_mutex_init(&mc->slots[i].mu, NULL));
    return mc;
}

void manifest_cache_free(struct manifest_cache *mc)
{
    if (mc == NULL)
        return;
    for (size_t i = 0; i < MANIFEST_CACHE_SLOTS; i++) {
        free(mc->slots[i].key);
        meta_manifest_fini(&mc->slots[i].m);
        AZ(pthread_mutex_destroy(&mc->slots[i].mu));
    }
    free(mc);
}

/* FNV-1a over repo '\0' ref. */
static size_t slot_of(const char *key, size_t len)
{
    uint64_t h = 14695981039346656037ULL;
    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)key[i]) * 1099511628211ULL;
    return (size_t)(h % MANIFEST_CACHE_SLOTS);
}

/* repo '\0' ref '\0' into buf (len without the last NUL); false when it does not fit. */
static bool make_key(char *buf, size_t cap, const char *repo, const char *ref, size_t *len)
{
    size_t a = strlen(repo), b = strlen(ref);
    if (a + b + 2 > cap)
        return false;
    memcpy(buf, repo, a + 1);
    memcpy(buf + a + 1, ref, b + 1);
    *len = a + 1 + b;
    return true;
}

static char *dup_or_null(const char *s)
{
    return s != NULL ? xstrdup(s) : NULL;
}

static void copy_manifest(struct meta_manifest *to, const struct meta_manifest *from)
{
    to->digest = from->digest;
    to->media_type = dup_or_null(from->media_type);
    to->artifact_type = dup_or_null(from->artifact_type);
    to->annotations_json = dup_or_null(from->annotations_json);
    /* NUL-terminated like a row read from the store (meta_manifests.c). */
    to->body = xmalloc(from->body_len + 1);
    if (from->body_len > 0)
        memcpy(to->body, from->body, from->body_len);
    to->body[from->body_len] = '\0';
    to->body_len = from->body_len;
}

/* Repository names and references are bounded by the OCI grammar well below this. */
#define KEY_MAX 1024

bool manifest_cache_get(struct manifest_cache *mc, const char *repo, const char *ref,
                        uint64_t gen, struct meta_manifest *out)
{
    char key[KEY_MAX];
    size_t len;
    if (mc == NULL || !make_key(key, sizeof(key), repo, ref, &len))
        return false;
    struct slot *s = &mc->slots[slot_of(key, len)];
    bool is_hit = false;
    AZ(pthread_mutex_lock(&s->mu));
    if (s->key != NULL && s->gen == gen && s->key_len == len &&
        memcmp(s->key, key, len) == 0) {
        copy_manifest(out, &s->m);
        is_hit = true;
    }
    AZ(pthread_mutex_unlock(&s->mu));
    return is_hit;
}

void manifest_cache_put(struct manifest_cache *mc, const char *repo, const char *ref,
                        uint64_t gen, const struct meta_manifest *m)
{
    char key[KEY_MAX];
    size_t len;
    if (mc == NULL || m->body_len > MANIFEST_CACHE_MAX_BODY ||
        !make_key(key, sizeof(key), repo, ref, &len))
        return;
    struct slot *s = &mc->slots[slot_of(key, len)];
    struct meta_manifest copy = {0};
    copy_manifest(&copy, m);
    char *k = xmalloc(len + 1);
    memcpy(k, key, len + 1);
    AZ(pthread_mutex_lock(&s->mu));
    /* A lookup that started earlier does not replace a newer one's answer. */
    bool is_newer = s->key == NULL || gen >= s->gen;
    if (is_newer) {
        char *old_key = s->key;
        struct meta_manifest old = s->m;
        s->key = k;
        s->key_len = len;
        s->gen = gen;
        s->m = copy;
        k = old_key;
        copy = old;
    }
    AZ(pthread_mutex_unlock(&s->mu));
    free(k);
    meta_manifest_fini(&copy);
}
