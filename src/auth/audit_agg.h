/* Aggregation of refused attempts in the audit log (auth.failed, login.failed,
 * login.throttled, access.denied), so that a flood of bad credentials writes a bounded
 * number of rows instead of one per request. Pure: no I/O, no locks, no clock.
 *
 * One row per (source, actor, action) per window: the first refusal of a window inserts
 * a row with count 1 (before its reply, as every audit entry); the next ones of the
 * window only count in memory, and the counts are written into that row at most once per
 * flush interval (and on demand: before the audit log is read, at shutdown). Keys are
 * folded so that rotating names or addresses cannot mint rows either:
 *   - past AUDIT_AGG_ACTORS_PER_SOURCE actors from one source in a window, further
 *     actors of that source count in one row of that source with actor "*";
 *   - past AUDIT_AGG_ROWS_PER_WINDOW new rows in a window, further keys count in one
 *     row per action with source and actor "*".
 * So at most AUDIT_AGG_ROWS_PER_WINDOW + one row per action are started per window. */
#ifndef MERIDIAN_AUDIT_AGG_H
#define MERIDIAN_AUDIT_AGG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "auth.h"
#include "login_limit.h"

#define AUDIT_AGG_WINDOW_MS 60000
#define AUDIT_AGG_FLUSH_MS 1000
#define AUDIT_AGG_ACTORS_PER_SOURCE 8
#define AUDIT_AGG_ROWS_PER_WINDOW 1000
#define AUDIT_AGG_ANY "*" /* actor or source of a folded row */
#define AUDIT_AGG_ACTION_MAX 31

struct audit_agg;

/* capacity: keys held (rounded up to a power of two); seed randomises the hash. */
struct audit_agg *audit_agg_new(size_t capacity, uint64_t seed);
void audit_agg_free(struct audit_agg *a);

/* What the caller does with one refusal. */
struct audit_agg_note {
    bool is_new_row;               /* insert a row with count 1, then audit_agg_inserted */
    bool is_any_source;            /* the row's remote is AUDIT_AGG_ANY */
    char actor[AUTH_NAME_MAX + 1]; /* the row's actor: the one given or AUDIT_AGG_ANY */
    uint64_t ticket;               /* for audit_agg_inserted */
};

/* Counts one refusal of actor from source (login_limit_source) for action at now_ms. */
void audit_agg_note(struct audit_agg *a, const char *source, const char *actor, const char *action,
                    int64_t now_ms, struct audit_agg_note *out);
/* The row of a note with is_new_row was written as row_id (-1: the write failed; the
 * window's later refusals then start a new row). */
void audit_agg_inserted(struct audit_agg *a, uint64_t ticket, int64_t row_id);

/* A row's count to write: count and last_ms only grow, so writes may land in any order. */
struct audit_agg_flush {
    int64_t row_id;
    int64_t count;
    int64_t last_ms;
};
/* Counts to write: rows whose window ended or whose key made room for another at once,
 * the others at most once per AUDIT_AGG_FLUSH_MS; with is_all every unwritten count.
 * Fills up to max and returns how many; call again while it returns max. */
size_t audit_agg_due(struct audit_agg *a, int64_t now_ms, bool is_all, struct audit_agg_flush *out,
                     size_t max);

#endif
