/* Retention's metadata half, backend-neutral: the tags of a repository with the clocks
 * of their registers (what retention rules order by, the same in every region), and a
 * tag delete that happens only if the tag was not written since it was listed, so a tag
 * pushed again while a pass runs is not deleted by a decision about its old value. */
#include "metastore.h"

#include <stdlib.h>
#include <string.h>

#include "metastore_sqlite_int.h"
#include "retention.h"
#include "util.h"

void retention_tags_free(struct retention_tag *tags, size_t n)
{
    for (size_t i = 0; tags != NULL && i < n; i++) {
        free(tags[i].name);
        free(tags[i].digest);
        free(tags[i].origin);
    }
    free(tags);
}

int sq_tag_clocks(struct metastore *ms, const char *repo, struct retention_tag **out, size_t *n_out,
                  struct err *e)
{
    static const char sql[] =
        "SELECT g.name, g.digest, g.hlc, g.origin FROM tag_regs g JOIN repos r ON r.name = g.repo"
        " JOIN tags t ON t.repo_id = r.id AND t.name = g.name WHERE g.repo = ?1 ORDER BY g.name";
    *out = NULL;
    *n_out = 0;
    struct sq_conn *c = sq_conn_of(ms, e);
    if (c == NULL)
        return -1;
    struct sql_stmt *s;
    int rc = sq_run(c, sql, &s, e, "t", repo);
    if (rc < 0)
        return -1;
    int row = rc == SQL_ROW;
    for (; row == 1; row = sq_next_row(c, s, e)) {
        *out = xrealloc(*out, (*n_out + 1) * sizeof(**out));
        struct retention_tag *t = &(*out)[(*n_out)++];
        memset(t, 0, sizeof(*t));
        t->name = sq_col_strdup(s, 0);
        t->digest = sq_col_strdup(s, 1);
        t->hlc = sql_col_int64(s, 2);
        t->origin = sq_col_strdup(s, 3);
        if (t->origin == NULL)
            t->origin = xstrdup("");
    }
    sql_finalize(s);
    if (row < 0) {
        retention_tags_free(*out, *n_out);
        *out = NULL;
        *n_out = 0;
        return -1;
    }
    return 0;
}

int sq_tag_delete_if(struct metastore *ms, const char *repo, const char *tag, const char *digest,
                     int64_t hlc, struct err *e)
{
    struct sq_conn *c = sq_conn_of(ms, e);
    if (c == NULL || sq_tx_begin(c, true, e) != 0)
        return -1;
    int64_t repo_id;
    struct sql_stmt *s;
    int rc = sq_repo_find(c, repo, &repo_id, e);
    if (rc != 0) {
        if (rc > 0)
            err_set(e, ERR_CONFLICT, "repository %s is gone", repo);
        goto fail;
    }
    rc = sq_query(c, SQ_TREG_GET, &s, e, "tt", repo, tag);
    if (rc < 0)
        goto fail;
    bool is_same = rc == SQL_ROW && sql_col_text(s, 0) != NULL &&
                   strcmp((const char *)sql_col_text(s, 0), digest) == 0 &&
                   sql_col_int64(s, 1) == hlc;
    sq_stmt_done(s);
    if (!is_same) {
        err_set(e, ERR_CONFLICT, "tag %s:%s was written since it was listed", repo, tag);
        goto fail;
    }
    int64_t del_hlc = sq_hlc_next(c);
    bool applied;
    if (sq_tag_merge(c, repo_id, repo, tag, NULL, del_hlc, c->store->region, &applied, e) != 0 ||
        sq_event_append_clock(c, "tag_delete", repo, tag, digest, NULL, del_hlc, e) != 0)
        goto fail;
    return sq_tx_commit(c, e);
fail:
    sq_tx_rollback(c);
    return -1;
}
