/* A region restored from an older copy of its data: the store's side. A peer that finds the
 * region lost events of its own name (restored_probe, asked through the events stream)
 * records a RESTORED_KIND object; where it is written or merged, the region's reports
 * older than the clock it reopened at are void (dropped, and refused when they arrive
 * later: merge_status), and the region itself reports its rows again above that clock.
 * Backend-neutral: the SQL runs on SQLite and PostgreSQL alike. */
#include "metastore.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "metastore_sqlite_int.h"
#include "util.h"

int64_t sq_restored_opened(const char *value)
{
    json_error_t je;
    json_t *v = value ? json_loads(value, 0, &je) : NULL;
    json_t *h = json_object_get(v, "opened");
    int64_t opened = json_is_integer(h) && json_integer_value(h) > 0 ? json_integer_value(h) : 0;
    json_decref(v);
    return opened;
}

/* (seq, hlc) of one row of a two-column query; found false when there is none. */
static int row_pair(struct sq_conn *c, const char *sql, const char *fmt, const char *t, int64_t i,
                    int64_t *a, int64_t *b, bool *found, struct err *e)
{
    struct sql_stmt *s;
    int rc = sq_run(c, sql, &s, e, fmt, t, i); /* i unread when fmt names one argument */
    if (rc < 0)
        return -1;
    *found = rc == SQL_ROW;
    *a = *found ? sql_col_int64(s, 0) : 0;
    *b = *found ? sql_col_int64(s, 1) : 0;
    sql_finalize(s);
    return 0;
}

int sq_origin_newest(struct metastore *ms, const char *origin, int64_t *seq, int64_t *hlc,
                     struct err *e)
{
    *seq = 0;
    *hlc = 0;
    struct sq_conn *c = sq_conn_of(ms, e);
    if (c == NULL)
        return -1;
    bool found;
    if (row_pair(c,
                 "SELECT origin_seq, hlc FROM events WHERE origin = ?1"
                 " ORDER BY origin_seq DESC LIMIT 1",
                 "t", origin, 0, seq, hlc, &found, e) != 0)
        return -1;
    /* Caught up from a snapshot: the horizon may be past the newest event held. */
    int64_t h_seq, h_hlc;
    if (row_pair(c, "SELECT seq, hlc FROM log_horizon WHERE origin = ?1", "t", origin, 0, &h_seq,
                 &h_hlc, &found, e) != 0)
        return -1;
    if (found && h_seq > *seq) {
        *seq = h_seq;
        *hlc = h_hlc;
    }
    return 0;
}

int sq_restored_probe(struct metastore *ms, int64_t seq, int64_t hlc, int64_t *opened_hlc,
                      struct err *e)
{
    *opened_hlc = 0;
    struct sq_conn *c = sq_conn_of(ms, e);
    if (c == NULL)
        return -1;
    const char *self = c->store->region;
    int64_t own;
    if (sq_vv_read(c, self, &own, e) != 0)
        return -1;
    bool is_lost = seq > own; /* the peer holds one this region never numbered (now) */
    if (!is_lost && seq > 0 && hlc > 0) {
        /* Same number, another clock: the region numbered a new event where the one the
         * peer holds was (every event of a region has a clock of its own). */
        int64_t at, have_hlc;
        bool found;
        if (row_pair(c, "SELECT origin_seq, hlc FROM events WHERE origin = ?1 AND origin_seq = ?2",
                     "ti", self, seq, &at, &have_hlc, &found, e) != 0)
            return -1;
        if (!found && row_pair(c, "SELECT seq, hlc FROM log_horizon WHERE origin = ?1", "t", self,
                               0, &at, &have_hlc, &found, e) != 0)
            return -1;
        is_lost = found && at == seq && have_hlc != hlc; /* compacted further: cannot tell */
    }
    if (is_lost)
        *opened_hlc = c->store->opened_hlc;
    return 0;
}

int sq_restored_is_kept(struct sq_conn *c, const char *kind, const char *key, const char *value,
                        bool *is_kept, struct err *e)
{
    *is_kept = false;
    if (strcmp(kind, RESTORED_KIND) != 0 || key == NULL)
        return 0;
    struct sql_stmt *s;
    int rc = sq_query(c, SQ_OBJ_GET, &s, e, "tt", RESTORED_KIND, key);
    if (rc < 0)
        return -1;
    if (rc == SQL_ROW && sql_col_int64(s, 3) == 0)
        *is_kept =
            sq_restored_opened(value) <= sq_restored_opened((const char *)sql_col_text(s, 0));
    sq_stmt_done(s);
    return 0;
}

int sq_restored_voids(struct sq_conn *c, const char *region, int64_t hlc, bool *is_void,
                      struct err *e)
{
    *is_void = false;
    struct sql_stmt *s;
    int rc = sq_query(c, SQ_OBJ_GET, &s, e, "tt", RESTORED_KIND, region);
    if (rc < 0)
        return -1;
    if (rc == SQL_ROW && sql_col_int64(s, 3) == 0)
        *is_void = hlc < sq_restored_opened((const char *)sql_col_text(s, 0));
    sq_stmt_done(s);
    return 0;
}

/* The region itself heard that it was restored: every row of its own is reported again,
 * above its opening clock, so that the others (which dropped those older than it) take them
 * back: what its restored database holds is what it holds (a blob it lost is found by the
 * blob check, which makes its manifest pending). The newer rows too: those it wrote before
 * it caught up on its own name took numbers the peers had seen (docs/operations.md,
 * "Restoring a region"), so they never reached them as events, and anti-entropy does not
 * compare status rows. The marker comes after the region's lost events in the log of
 * whoever recorded it, so by now the region numbers above them. */
static int report_again(struct sq_conn *c, int64_t opened, struct err *e)
{
    const char *self = c->store->region;
    struct sql_stmt *s;
    int rc = sq_run(c,
                    "SELECT repo, digest, state, bytes_done, bytes_total, updated_ms, details,"
                    " coalesce(copies, -1) FROM repl_status WHERE region = ?1",
                    &s, e, "t", self);
    if (rc < 0)
        return -1;
    struct row {
        char *repo, *digest;
        struct meta_status st;
    } *rows = NULL;
    size_t n = 0;
    for (int row = rc == SQL_ROW; row == 1; row = sq_next_row(c, s, e)) {
        rows = xrealloc(rows, (n + 1) * sizeof(*rows));
        rows[n] = (struct row){
            .repo = sq_col_strdup(s, 0),
            .digest = sq_col_strdup(s, 1),
            .st = {.region = (char *)self,
                   .state = sq_col_strdup(s, 2),
                   .bytes_done = sql_col_int64(s, 3),
                   .bytes_total = sql_col_int64(s, 4),
                   .updated_ms = sql_col_int64(s, 5),
                   .details = sq_col_strdup(s, 6),
                   .copies = sql_col_int64(s, 7),
                   .has_copies = sql_col_int64(s, 7) >= 0},
        };
        n++;
    }
    sql_finalize(s);
    /* And those derived from a manifest visible here (meta_repl.c, "The own status"),
     * written as rows now: a state record of them (sq_repo_statuses) then carries the new
     * report's clock, above the opening one, which the others take. */
    rc = sq_run(c,
                "SELECT r.name, m.digest, m.created_ms," SQ_OWN_BYTES " FROM manifests m"
                " JOIN repos r ON r.id = m.repo_id WHERE m.is_visible = 1"
                " AND NOT EXISTS (SELECT 1 FROM repl_status s WHERE s.repo = r.name"
                " AND s.digest = m.digest AND s.region = ?1 AND s.state = 'Completed')",
                &s, e, "t", self);
    int row = rc == SQL_ROW;
    for (; row == 1; row = sq_next_row(c, s, e)) {
        rows = xrealloc(rows, (n + 1) * sizeof(*rows));
        rows[n] = (struct row){
            .repo = sq_col_strdup(s, 0),
            .digest = sq_col_strdup(s, 1),
            .st = {.region = (char *)self,
                   .state = xstrdup("Completed"),
                   .bytes_done = sql_col_int64(s, 3),
                   .bytes_total = sql_col_int64(s, 3),
                   .updated_ms = util_now_ms(), /* reported again now: newer than any */
                   .details = xstrdup("")},
        };
        n++;
    }
    if (rc >= 0)
        sql_finalize(s);
    /* Above the opening clock whichever node of the region answered the probe. */
    sq_hlc_seen(c->store, (uint64_t)opened);
    rc = rc < 0 || row < 0 ? -1 : 0;
    for (size_t i = 0; i < n; i++) {
        if (rc == 0 && rows[i].repo && rows[i].digest && rows[i].st.state)
            rc = sq_status_write(c, rows[i].repo, rows[i].digest, &rows[i].st, true, e);
        free(rows[i].repo);
        free(rows[i].digest);
        free(rows[i].st.state);
        free(rows[i].st.details);
    }
    free(rows);
    if (rc == 0)
        log_warn("metastore",
                 "a peer found this region restored from an older copy of its data: its %zu "
                 "reports are sent again",
                 n);
    return rc;
}

int sq_restored_on_put(struct sq_conn *c, const char *kind, const char *key, const char *value,
                       bool is_merge, struct err *e)
{
    if (strcmp(kind, RESTORED_KIND) != 0 || key == NULL)
        return 0;
    int64_t opened = sq_restored_opened(value);
    if (opened <= 0)
        return 0;
    if (strcmp(key, c->store->region) == 0)
        return is_merge ? report_again(c, opened, e) : 0;
    /* Its reports from before: relayed, applied, or taken from state records alike. */
    return sq_run_exec(c, "DELETE FROM repl_status WHERE region = ?1 AND hlc < ?2", e, "ti", key,
                       opened);
}
