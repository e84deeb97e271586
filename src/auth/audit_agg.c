/* Refusal aggregation for the audit log: see audit_agg.h. A fixed table of keys found by
 * a seeded hash and a probe window; each key holds the row of its current window and
 * how much of its count that row already has. Counts that must be written before their
 * key is reused wait in a small queue that audit_agg_due drains first. */
#include "audit_agg.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

#define AGG_PROBE 8
#define AGG_QUEUE 256

struct agg_slot {
    bool is_used;
    uint32_t gen; /* bumped with every new row: tickets of older rows no longer match */
    uint64_t hash;
    char source[LOGIN_LIMIT_SOURCE_MAX];
    char actor[AUTH_NAME_MAX + 1];
    char action[AUDIT_AGG_ACTION_MAX + 1];
    int64_t window_start_ms;
    int64_t last_ms;
    int64_t count;     /* refusals in this window */
    int64_t written;   /* how many of them the row holds */
    int64_t row_id;    /* > 0 the row; 0 being inserted; -1 none */
    unsigned n_actors; /* source keys (actor "*"): actors of the source this window */
};

struct audit_agg {
    uint64_t seed;
    struct agg_slot *slots;
    size_t mask;
    int64_t rows_window_start_ms;
    unsigned rows_in_window;
    int64_t next_due_ms;
    struct audit_agg_flush queue[AGG_QUEUE];
    size_t n_queued;
};

struct audit_agg *audit_agg_new(size_t capacity, uint64_t seed)
{
    struct audit_agg *a = xcalloc(1, sizeof(*a));
    size_t n = AGG_PROBE;
    while (n < capacity)
        n *= 2;
    a->slots = xcalloc(n, sizeof(*a->slots));
    a->mask = n - 1;
    a->seed = seed;
    return a;
}

void audit_agg_free(struct audit_agg *a)
{
    if (a == NULL)
        return;
    free(a->slots);
    free(a);
}

static uint64_t hash3(const struct audit_agg *a, const char *x, const char *y, const char *z)
{
    uint64_t h = 14695981039346656037ull ^ a->seed; /* FNV-1a, seeded */
    const char *parts[3] = {x, y, z};
    for (size_t i = 0; i < 3; i++) {
        for (const unsigned char *p = (const unsigned char *)parts[i]; *p; p++)
            h = (h ^ *p) * 1099511628211ull;
        h = (h ^ 0xff) * 1099511628211ull; /* separator: no byte of a name */
    }
    return h ^ (h >> 29);
}

static bool in_window(const struct agg_slot *s, int64_t now_ms)
{
    return now_ms - s->window_start_ms < AUDIT_AGG_WINDOW_MS;
}

/* Queues the unwritten part of s's count (its key is about to be reused). When the
 * queue is full the oldest entry is overwritten: a count is lost, never a row. */
static void enqueue(struct audit_agg *a, const struct agg_slot *s)
{
    if (!s->is_used || s->row_id <= 0 || s->count <= s->written)
        return;
    if (a->n_queued == AGG_QUEUE) {
        memmove(a->queue, a->queue + 1, (AGG_QUEUE - 1) * sizeof(a->queue[0]));
        a->n_queued--;
    }
    a->queue[a->n_queued++] =
        (struct audit_agg_flush){.row_id = s->row_id, .count = s->count, .last_ms = s->last_ms};
}

/* Which slot of a probe window gives way to a new key: unused ones first, then those
 * whose window ended, then (by last_ms) the least recently refused; the catch-all rows
 * (source "*") last, since evicting one would start another row. */
static int evict_rank(const struct agg_slot *s, int64_t now_ms)
{
    if (!s->is_used)
        return 0;
    if (!in_window(s, now_ms))
        return 1;
    return strcmp(s->source, AUDIT_AGG_ANY) == 0 ? 3 : 2;
}

static struct agg_slot *lookup(struct audit_agg *a, const char *source, const char *actor,
                               const char *action, bool is_create, int64_t now_ms)
{
    uint64_t h = hash3(a, source, actor, action);
    struct agg_slot *victim = NULL;
    for (size_t i = 0; i < AGG_PROBE; i++) {
        struct agg_slot *s = &a->slots[(h + i) & a->mask];
        if (s->is_used && s->hash == h && strcmp(s->source, source) == 0 &&
            strcmp(s->actor, actor) == 0 && strcmp(s->action, action) == 0)
            return s;
        if (victim == NULL || evict_rank(s, now_ms) < evict_rank(victim, now_ms) ||
            (evict_rank(s, now_ms) == evict_rank(victim, now_ms) && s->last_ms < victim->last_ms))
            victim = s;
    }
    if (!is_create)
        return NULL;
    enqueue(a, victim);
    uint32_t gen = victim->gen;
    memset(victim, 0, sizeof(*victim));
    victim->gen = gen + 1;
    victim->is_used = true;
    victim->hash = h;
    snprintf(victim->source, sizeof(victim->source), "%s", source);
    snprintf(victim->actor, sizeof(victim->actor), "%s", actor);
    snprintf(victim->action, sizeof(victim->action), "%s", action);
    victim->row_id = -1;
    victim->window_start_ms = now_ms;
    victim->last_ms = now_ms;
    return victim;
}

static bool has_row(const struct agg_slot *s, int64_t now_ms)
{
    return s->row_id != -1 && in_window(s, now_ms);
}

static void count(struct agg_slot *s, int64_t now_ms)
{
    s->count++;
    if (now_ms > s->last_ms)
        s->last_ms = now_ms;
}

/* Starts s's row for a new window (what the old one did not write is queued). */
static void begin_row(struct audit_agg *a, struct agg_slot *s, int64_t now_ms,
                      struct audit_agg_note *out)
{
    enqueue(a, s);
    if (!in_window(s, now_ms))
        s->n_actors = 0;
    s->gen++;
    s->window_start_ms = now_ms;
    s->last_ms = now_ms;
    s->count = 1;
    s->written = 1;
    s->row_id = 0;
    a->rows_in_window++;
    out->is_new_row = true;
    out->is_any_source = strcmp(s->source, AUDIT_AGG_ANY) == 0;
    snprintf(out->actor, sizeof(out->actor), "%s", s->actor);
    out->ticket = (uint64_t)((size_t)(s - a->slots)) << 32 | s->gen;
}

void audit_agg_note(struct audit_agg *a, const char *source, const char *actor, const char *action,
                    int64_t now_ms, struct audit_agg_note *out)
{
    memset(out, 0, sizeof(*out));
    snprintf(out->actor, sizeof(out->actor), "%s", actor);
    if (now_ms - a->rows_window_start_ms >= AUDIT_AGG_WINDOW_MS) {
        a->rows_window_start_ms = now_ms;
        a->rows_in_window = 0;
    }
    struct agg_slot *k = lookup(a, source, actor, action, false, now_ms);
    if (k != NULL && has_row(k, now_ms)) {
        count(k, now_ms);
        return;
    }
    /* A new row is needed: for this key, or folded into the source's or everyone's. */
    struct agg_slot *target = NULL;
    if (strcmp(actor, AUDIT_AGG_ANY) != 0) {
        struct agg_slot *src = lookup(a, source, AUDIT_AGG_ANY, action, true, now_ms);
        if (!in_window(src, now_ms)) {
            enqueue(a, src);
            src->window_start_ms = now_ms;
            src->n_actors = 0;
            src->row_id = -1;
            src->count = src->written = 0;
        }
        if (src->n_actors >= AUDIT_AGG_ACTORS_PER_SOURCE) {
            target = src;
        } else {
            src->n_actors++;
            /* src may have taken k's slot: look k up again. */
            target = lookup(a, source, actor, action, true, now_ms);
        }
    } else {
        target = lookup(a, source, actor, action, true, now_ms);
    }
    if (has_row(target, now_ms)) {
        count(target, now_ms);
        return;
    }
    if (a->rows_in_window >= AUDIT_AGG_ROWS_PER_WINDOW) {
        target = lookup(a, AUDIT_AGG_ANY, AUDIT_AGG_ANY, action, true, now_ms);
        if (has_row(target, now_ms)) {
            count(target, now_ms);
            return;
        }
    }
    begin_row(a, target, now_ms, out);
}

void audit_agg_inserted(struct audit_agg *a, uint64_t ticket, int64_t row_id)
{
    size_t i = (size_t)(ticket >> 32);
    if (i > a->mask)
        return;
    struct agg_slot *s = &a->slots[i];
    if (!s->is_used || s->gen != (uint32_t)ticket || s->row_id != 0)
        return;
    s->row_id = row_id > 0 ? row_id : -1;
}

size_t audit_agg_due(struct audit_agg *a, int64_t now_ms, bool is_all, struct audit_agg_flush *out,
                     size_t max)
{
    size_t n = 0;
    while (n < max && a->n_queued > 0) {
        out[n++] = a->queue[0];
        memmove(a->queue, a->queue + 1, (a->n_queued - 1) * sizeof(a->queue[0]));
        a->n_queued--;
    }
    if (n == max || (!is_all && now_ms < a->next_due_ms))
        return n;
    for (size_t i = 0; i <= a->mask && n < max; i++) {
        struct agg_slot *s = &a->slots[i];
        if (!s->is_used || s->row_id <= 0 || s->count <= s->written)
            continue;
        out[n++] =
            (struct audit_agg_flush){.row_id = s->row_id, .count = s->count, .last_ms = s->last_ms};
        s->written = s->count;
    }
    if (n < max)
        a->next_due_ms = now_ms + AUDIT_AGG_FLUSH_MS;
    return n;
}
