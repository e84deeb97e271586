/* Failed-login budgets: see login_limit.h. Each budget is a fixed-size table of GCRA
 * entries (one "theoretical arrival time" per key: failures push it forward by the
 * interval, time catches up with it); a key is found by a seeded hash and a probe window
 * of LL_PROBE slots, so memory is bounded whatever names and addresses clients send. */
#include "login_limit.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "util.h"

#define LL_PROBE 8
#define LL_KEY_MAX (LOGIN_LIMIT_SOURCE_MAX + AUTH_NAME_MAX + 2)
#define LL_SOURCE_FACTOR 4    /* source: 4x the burst, 4x the rate */
#define LL_IDENTITY_FACTOR 10 /* identity: 10x the burst, 10x the rate */

struct ll_slot {
    uint64_t hash;
    int64_t tat_ms;         /* failures are allowed while tat_ms - now <= tolerance */
    int64_t known_until_ms; /* pair entries: the source logged in as the identity */
    bool is_used;
    char key[LL_KEY_MAX];
};

/* One budget: a failure costs interval_ms; tolerance_ms of them may be ahead of now. */
struct ll_table {
    struct ll_slot *slots;
    size_t mask;
    int64_t interval_ms;
    int64_t tolerance_ms;
};

struct login_limit {
    uint64_t seed;
    struct ll_table pair, source, identity;
};

static void table_init(struct ll_table *t, size_t capacity, unsigned burst, int64_t interval_ms)
{
    size_t n = LL_PROBE;
    while (n < capacity)
        n *= 2;
    t->slots = xcalloc(n, sizeof(*t->slots));
    t->mask = n - 1;
    t->interval_ms = interval_ms > 0 ? interval_ms : 1;
    t->tolerance_ms = (int64_t)(burst > 0 ? burst - 1 : 0) * t->interval_ms;
}

struct login_limit *login_limit_new(unsigned burst, int64_t interval_ms, size_t capacity,
                                    uint64_t seed)
{
    struct login_limit *l = xcalloc(1, sizeof(*l));
    l->seed = seed;
    table_init(&l->pair, capacity, burst, interval_ms);
    table_init(&l->source, capacity, burst * LL_SOURCE_FACTOR, interval_ms / LL_SOURCE_FACTOR);
    table_init(&l->identity, capacity, burst * LL_IDENTITY_FACTOR,
               interval_ms / LL_IDENTITY_FACTOR);
    return l;
}

void login_limit_free(struct login_limit *l)
{
    if (l == NULL)
        return;
    free(l->pair.slots);
    free(l->source.slots);
    free(l->identity.slots);
    free(l);
}

/* "a\nb" (names and addresses hold no newline), cut to the key size. */
static void make_key(char out[LL_KEY_MAX], const char *a, const char *b)
{
    snprintf(out, LL_KEY_MAX, "%s%s%s", a, b != NULL ? "\n" : "", b != NULL ? b : "");
}

static uint64_t key_hash(const struct login_limit *l, const char *key)
{
    uint64_t h = 14695981039346656037ull ^ l->seed; /* FNV-1a, seeded */
    for (const unsigned char *p = (const unsigned char *)key; *p; p++)
        h = (h ^ *p) * 1099511628211ull;
    return h ^ (h >> 29);
}

static const struct ll_slot *find(const struct ll_table *t, uint64_t h, const char *key)
{
    for (size_t i = 0; i < LL_PROBE; i++) {
        const struct ll_slot *s = &t->slots[(h + i) & t->mask];
        if (s->is_used && s->hash == h && strcmp(s->key, key) == 0)
            return s;
    }
    return NULL;
}

/* The entry for key, created if needed by taking the slot of the probe window that
 * carries least: unused or spent first, then the least penalised, known sources last. */
static struct ll_slot *upsert(struct ll_table *t, uint64_t h, const char *key, int64_t now_ms)
{
    struct ll_slot *found = (struct ll_slot *)find(t, h, key);
    if (found != NULL)
        return found;
    struct ll_slot *victim = NULL;
    int64_t victim_score = INT64_MAX;
    for (size_t i = 0; i < LL_PROBE; i++) {
        struct ll_slot *s = &t->slots[(h + i) & t->mask];
        int64_t score = 0;
        if (s->is_used) {
            score = s->tat_ms > now_ms ? s->tat_ms - now_ms : 0;
            if (s->known_until_ms > now_ms)
                score += INT64_MAX / 2;
        }
        if (victim == NULL || score < victim_score) {
            victim = s;
            victim_score = score;
        }
    }
    memset(victim, 0, sizeof(*victim));
    victim->is_used = true;
    victim->hash = h;
    snprintf(victim->key, sizeof(victim->key), "%s", key);
    return victim;
}

/* ms until the budget allows one more failure for key; 0 now. */
static int64_t wait_of(const struct login_limit *l, const struct ll_table *t, const char *key,
                       int64_t now_ms)
{
    const struct ll_slot *s = find(t, key_hash(l, key), key);
    if (s == NULL || s->tat_ms - now_ms <= t->tolerance_ms)
        return 0;
    return s->tat_ms - t->tolerance_ms - now_ms;
}

static void charge(struct login_limit *l, struct ll_table *t, const char *key, int64_t now_ms)
{
    struct ll_slot *s = upsert(t, key_hash(l, key), key, now_ms);
    s->tat_ms = (s->tat_ms > now_ms ? s->tat_ms : now_ms) + t->interval_ms;
}

static int64_t max64(int64_t a, int64_t b)
{
    return a > b ? a : b;
}

int64_t login_limit_check(const struct login_limit *l, const char *source, const char *identity,
                          bool is_identity_limited, int64_t now_ms)
{
    char key[LL_KEY_MAX];
    make_key(key, source, identity);
    const struct ll_slot *pair = find(&l->pair, key_hash(l, key), key);
    int64_t wait = wait_of(l, &l->pair, key, now_ms);
    make_key(key, source, NULL);
    wait = max64(wait, wait_of(l, &l->source, key, now_ms));
    bool is_known = pair != NULL && pair->known_until_ms > now_ms;
    if (is_identity_limited && !is_known) {
        make_key(key, identity, NULL);
        wait = max64(wait, wait_of(l, &l->identity, key, now_ms));
    }
    return wait;
}

bool login_limit_is_known(const struct login_limit *l, const char *source, const char *identity,
                          int64_t now_ms)
{
    char key[LL_KEY_MAX];
    make_key(key, source, identity);
    const struct ll_slot *pair = find(&l->pair, key_hash(l, key), key);
    return pair != NULL && pair->known_until_ms > now_ms;
}

void login_limit_failed(struct login_limit *l, const char *source, const char *identity,
                        bool is_identity_limited, int64_t now_ms)
{
    char key[LL_KEY_MAX];
    make_key(key, source, identity);
    charge(l, &l->pair, key, now_ms);
    make_key(key, source, NULL);
    charge(l, &l->source, key, now_ms);
    if (is_identity_limited) {
        make_key(key, identity, NULL);
        charge(l, &l->identity, key, now_ms);
    }
}

void login_limit_succeeded(struct login_limit *l, const char *source, const char *identity,
                           int64_t now_ms)
{
    char key[LL_KEY_MAX];
    make_key(key, source, identity);
    struct ll_slot *s = upsert(&l->pair, key_hash(l, key), key, now_ms);
    s->tat_ms = 0;
    s->known_until_ms = now_ms + LOGIN_LIMIT_KNOWN_MS;
}

void login_limit_source(const char *addr, char out[LOGIN_LIMIT_SOURCE_MAX])
{
    struct in6_addr a6;
    if (strchr(addr, ':') == NULL || inet_pton(AF_INET6, addr, &a6) != 1) {
        snprintf(out, LOGIN_LIMIT_SOURCE_MAX, "%s", addr);
        return;
    }
    if (IN6_IS_ADDR_V4MAPPED(&a6)) {
        inet_ntop(AF_INET, &a6.s6_addr[12], out, LOGIN_LIMIT_SOURCE_MAX);
        return;
    }
    memset(&a6.s6_addr[8], 0, 8);
    char text[INET6_ADDRSTRLEN];
    inet_ntop(AF_INET6, &a6, text, sizeof(text));
    snprintf(out, LOGIN_LIMIT_SOURCE_MAX, "%s/64", text);
}
