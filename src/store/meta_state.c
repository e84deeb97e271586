/* State digests, backend-neutral: the summary peers compare for anti-entropy (one digest
 * per repository over its tag registers, tombstones and manifests) and a repository's
 * state as events, which a peer whose digest differs merges (state_merge). */
#include "metastore.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "metastore_sqlite_int.h"
#include "util.h"

/* Hashes the replicated state of one repository: tag registers, manifests, tombstones. */
static int repo_digest(struct sq_conn *c, int64_t repo_id, const char *repo, struct digest *out,
                       struct err *e)
{
    struct hasher *h = digest_hasher_new(DIGEST_SHA256);
    struct sql_stmt *s;
    char line[1024];
    int rc = sq_query(c, SQ_TREG_OF_REPO, &s, e, "t", repo);
    for (int row = rc == SQL_ROW; rc >= 0 && row == 1; row = sq_next_row(c, s, e)) {
        const unsigned char *dg = sql_col_text(s, 1);
        int n =
            snprintf(line, sizeof(line), "t %s %s %" PRId64 " %s\n", sql_col_text(s, 0),
                     dg ? (const char *)dg : "-", (int64_t)sql_col_int64(s, 2), sql_col_text(s, 3));
        digest_hasher_update(h, line, (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1);
    }
    if (rc >= 0)
        sq_stmt_done(s);
    if (rc >= 0)
        rc = sq_query(c, SQ_MANIFEST_DIGESTS_OF_REPO, &s, e, "i", repo_id);
    for (int row = rc == SQL_ROW; rc >= 0 && row == 1; row = sq_next_row(c, s, e)) {
        int n = snprintf(line, sizeof(line), "m %s\n", sql_col_text(s, 0));
        digest_hasher_update(h, line, (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1);
    }
    if (rc >= 0)
        sq_stmt_done(s);
    if (rc >= 0)
        rc = sq_query(c, SQ_TOMB_OF_REPO, &s, e, "t", repo);
    for (int row = rc == SQL_ROW; rc >= 0 && row == 1; row = sq_next_row(c, s, e)) {
        int n = snprintf(line, sizeof(line), "x %s %" PRId64 " %s\n", sql_col_text(s, 0),
                         (int64_t)sql_col_int64(s, 1), sql_col_text(s, 2));
        digest_hasher_update(h, line, (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1);
    }
    if (rc >= 0)
        sq_stmt_done(s);
    digest_hasher_final(h, out);
    digest_hasher_free(h);
    return rc < 0 ? -1 : 0;
}

int sq_summary(struct metastore *ms, struct buf *out, struct err *e)
{
    struct sq_conn *c = sq_conn_of(ms, e);
    if (c == NULL)
        return -1;
    if (sq_tx_begin(c, false, e) != 0)
        return -1;
    struct sql_stmt *s;
    int rc = sq_query(c, SQ_ALL_REPOS, &s, e, "");
    if (rc < 0)
        goto fail;
    size_t n = 0;
    int64_t *ids = NULL;
    char **names = NULL;
    for (int row = rc == SQL_ROW; row == 1; row = sq_next_row(c, s, e)) {
        ids = xrealloc(ids, (n + 1) * sizeof(int64_t));
        names = xrealloc(names, (n + 1) * sizeof(char *));
        ids[n] = sql_col_int64(s, 0);
        names[n++] = sq_col_strdup(s, 1);
    }
    sq_stmt_done(s);
    /* A repository with no replicated state (only blobs: links are this region's own, as
     * an abandoned push leaves them) is left out: a peer could never make its own digest
     * of it match, and repaired it at every pass for ever. */
    struct digest none;
    digest_of_buffer(DIGEST_SHA256, "", 0, &none);
    buf_appends(out, "{");
    int result = 0;
    bool is_first = true;
    for (size_t i = 0; i < n; i++) {
        struct digest d;
        if (result == 0 && repo_digest(c, ids[i], names[i], &d, e) == 0) {
            if (digest_equal(&d, &none)) {
                free(names[i]);
                continue;
            }
            if (!is_first)
                buf_append(out, ",", 1);
            is_first = false;
            buf_append_json_string(out, names[i]);
            buf_printf(out, ":\"%s\"", d.str);
        } else {
            result = -1;
        }
        free(names[i]);
    }
    buf_appends(out, "}");
    free(ids);
    free(names);
    sq_tx_commit(c, e);
    return result;
fail:
    sq_tx_rollback(c);
    return -1;
}

static struct meta_event *state_add(struct meta_event **list, size_t *n, const char *kind,
                                    const char *repo, int64_t hlc, const char *origin)
{
    *list = xrealloc(*list, (*n + 1) * sizeof(**list));
    struct meta_event *ev = &(*list)[(*n)++];
    memset(ev, 0, sizeof(*ev));
    ev->kind = xstrdup(kind);
    ev->repo = xstrdup(repo);
    ev->hlc = (uint64_t)hlc;
    ev->origin = xstrdup(origin && *origin ? origin : "unknown");
    ev->origin_seq = 1;
    return ev;
}

/* Adds the objects a query on repo returns (kind, key, value, hlc, origin, is_deleted) as
 * object_put/object_delete events; sql NULL: the repository's version records. */
static int objects_add(struct sq_conn *c, struct meta_event **list, size_t *n, const char *repo,
                       const char *sql, struct err *e)
{
    struct sql_stmt *s;
    bool is_too_big = false;
    int rc = sql ? sq_run(c, sql, &s, e, "t", repo)
                 : sq_query(c, SQ_VERSIONS_OF_REPO, &s, e, "t", repo);
    for (int row = rc == SQL_ROW; rc >= 0 && row == 1; row = sq_next_row(c, s, e)) {
        bool is_deleted = sql_col_int64(s, 5) != 0 || sql_col_is_null(s, 2);
        struct meta_event *ev = state_add(list, n, is_deleted ? "object_delete" : "object_put",
                                          repo, sql_col_int64(s, 3), sql_col_text(s, 4));
        ev->name = sq_col_strdup(s, 1);
        struct buf p;
        buf_init(&p, SQ_PAYLOAD_MAX_BYTES);
        buf_appends(&p, "{\"kind\":");
        buf_append_json_string(&p, sql_col_text(s, 0));
        if (!is_deleted) {
            buf_appends(&p, ",\"value\":");
            buf_appends(&p, sql_col_text(s, 2));
        }
        buf_appends(&p, "}");
        ev->payload = p.is_too_big ? NULL : buf_steal(&p, NULL);
        buf_fini(&p);
        if (ev->payload == NULL) {
            is_too_big = true;
            break;
        }
    }
    if (rc >= 0) {
        if (sql)
            sql_finalize(s);
        else
            sq_stmt_done(s);
    }
    if (is_too_big)
        return err_set(e, ERR_INTERNAL, "a record of %s is too large to send", repo);
    return rc < 0 ? -1 : 0;
}

int sq_repo_state(struct metastore *ms, const char *repo, struct meta_event **out, size_t *n_out,
                  struct err *e)
{
    *out = NULL;
    *n_out = 0;
    struct sq_conn *c = sq_conn_of(ms, e);
    if (c == NULL)
        return -1;
    if (sq_tx_begin(c, false, e) != 0)
        return -1;
    int64_t repo_id;
    struct sql_stmt *s;
    struct meta_event *list = NULL;
    size_t n = 0;
    int rc = sq_repo_find(c, repo, &repo_id, e);
    if (rc != 0) {
        sq_tx_commit(c, e);
        return rc < 0 ? -1 : 0;
    }
    rc = sq_query(c, SQ_MANIFESTS_OF_REPO, &s, e, "i", repo_id);
    for (int row = rc == SQL_ROW; rc >= 0 && row == 1; row = sq_next_row(c, s, e)) {
        struct meta_event *ev =
            state_add(&list, &n, "manifest_put", repo, sql_col_int64(s, 6), sql_col_text(s, 7));
        ev->digest = sq_col_strdup(s, 0);
        ev->payload = sq_manifest_payload(c, s, repo_id, e);
        if (ev->payload == NULL) {
            sq_stmt_done(s);
            rc = -1;
            break;
        }
    }
    if (rc >= 0)
        sq_stmt_done(s);
    if (rc >= 0)
        rc = sq_query(c, SQ_TREG_OF_REPO, &s, e, "t", repo);
    for (int row = rc == SQL_ROW; rc >= 0 && row == 1; row = sq_next_row(c, s, e)) {
        bool is_deleted = sql_col_is_null(s, 1);
        struct meta_event *ev = state_add(&list, &n, is_deleted ? "tag_delete" : "tag_set", repo,
                                          sql_col_int64(s, 2), sql_col_text(s, 3));
        ev->name = sq_col_strdup(s, 0);
        ev->digest = sq_col_strdup(s, 1);
    }
    if (rc >= 0)
        sq_stmt_done(s);
    if (rc >= 0)
        rc = sq_query(c, SQ_TOMB_OF_REPO, &s, e, "t", repo);
    for (int row = rc == SQL_ROW; rc >= 0 && row == 1; row = sq_next_row(c, s, e)) {
        struct meta_event *ev =
            state_add(&list, &n, "manifest_delete", repo, sql_col_int64(s, 1), sql_col_text(s, 2));
        ev->digest = sq_col_strdup(s, 0);
        /* A collector's tombstone stays one: a region keeping the manifest puts it again. */
        if (sql_col_int64(s, 3) != 0)
            ev->payload = xstrdup(SQ_GC_TOMB_PAYLOAD);
    }
    if (rc >= 0)
        sq_stmt_done(s);
    /* The repository's image definition and version records: a region that pulls a tag
     * through (replication/state?reference=) must know the version's profile before it
     * decides whether it holds the manifest (placement.c). Merged like their events. */
    if (rc >= 0)
        rc = objects_add(c, &list, &n, repo, "SELECT kind, key, value, hlc, origin, is_deleted"
                         " FROM objects WHERE kind = 'image_definition' AND key = ?1", e);
    if (rc >= 0)
        rc = objects_add(c, &list, &n, repo, NULL, e);
    sq_tx_commit(c, e);
    if (rc < 0) {
        for (size_t i = 0; i < n; i++)
            meta_event_fini(&list[i]);
        free(list);
        return -1;
    }
    *out = list;
    *n_out = n;
    return 0;
}
