/* Residency in the metadata store, backend-neutral (metastore.h, "Residency"): what this
 * region holds per repository (the compliance report), and the removal of everything it
 * keeps of a repository a residency policy now forbids it to hold. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "metastore.h"
#include "metastore_sqlite_int.h"
#include "name.h"
#include "residency.h"
#include "util.h"

void meta_holding_list_fini(struct meta_holding_list *l)
{
    for (size_t i = 0; l != NULL && i < l->n; i++)
        free(l->items[i].repo);
    if (l != NULL) {
        FREE_AND_NULL(l->items);
        l->n = 0;
    }
}

int sq_holdings(struct metastore *ms, struct meta_holding_list *out, struct err *e)
{
    memset(out, 0, sizeof(*out));
    struct sq_conn *c = sq_conn_of(ms, e);
    if (c == NULL)
        return -1;
    struct sql_stmt *s;
    int rc = sq_run(c,
                    "SELECT name, nm, nb FROM (SELECT r.name AS name,"
                    " (SELECT count(*) FROM manifests m WHERE m.repo_id = r.id"
                    " AND m.is_visible = 1) AS nm,"
                    " (SELECT count(*) FROM repo_blobs b WHERE b.repo_id = r.id) AS nb"
                    " FROM repos r) h WHERE nm > 0 OR nb > 0 ORDER BY name",
                    &s, e, "");
    if (rc < 0)
        return -1;
    int row = rc == SQL_ROW;
    for (; row == 1; row = sq_next_row(c, s, e)) {
        out->items = xrealloc(out->items, (out->n + 1) * sizeof(*out->items));
        out->items[out->n++] =
            (struct meta_holding){sq_col_strdup(s, 0), sql_col_int64(s, 1), sql_col_int64(s, 2)};
    }
    sql_finalize(s);
    if (row < 0) {
        meta_holding_list_fini(out);
        return -1;
    }
    return 0;
}

/* "repo:" and "repo@": the prefixes of the keys of records of repo's tags and digests. */
struct key_prefixes {
    char colon[1100];
    char at[1100];
};

static void prefixes_of(const char *repo, struct key_prefixes *k)
{
    snprintf(k->colon, sizeof(k->colon), "%s:", repo);
    snprintf(k->at, sizeof(k->at), "%s@", repo);
}

/* Object events about repo (image definitions and versions, locks) become redacted: their
 * kind is in the payload, so they are picked in C, not by a LIKE on JSON text. */
static int redact_object_events(struct sq_conn *c, const char *repo, const struct key_prefixes *k,
                                int64_t *n_changed, struct err *e)
{
    struct sql_stmt *s;
    int64_t *seqs = NULL;
    size_t n = 0;
    int rc = sq_run(c,
                    "SELECT seq, origin, kind, name, payload FROM events WHERE kind IN"
                    " ('object_put', 'object_delete') AND (name = ?1"
                    " OR substr(name, 1, length(?2)) = ?2 OR substr(name, 1, length(?3)) = ?3)",
                    &s, e, "ttt", repo, k->colon, k->at);
    if (rc < 0)
        return -1;
    int row = rc == SQL_ROW;
    for (; row == 1; row = sq_next_row(c, s, e)) {
        struct meta_event ev = {.kind = (char *)sql_col_text(s, 2),
                                .name = (char *)sql_col_text(s, 3),
                                .payload = (char *)sql_col_text(s, 4)};
        char about[1100];
        if (residency_event_repo(&ev, about, sizeof(about)) && strcmp(about, repo) == 0) {
            seqs = xrealloc(seqs, (n + 1) * sizeof(*seqs));
            seqs[n++] = sql_col_int64(s, 0);
        }
    }
    sql_finalize(s);
    rc = row < 0 ? -1 : 0;
    for (size_t i = 0; rc >= 0 && i < n; i++)
        rc = sq_run_exec(c,
                         "UPDATE events SET kind = ?1, repo = NULL, name = NULL, digest = NULL,"
                         " payload = NULL WHERE seq = ?2",
                         e, "ti", RESIDENCY_REDACTED_KIND, seqs[i]);
    *n_changed += rc >= 0 ? (int64_t)n : 0;
    free(seqs);
    return rc < 0 ? -1 : 0;
}

/* The blobs of repo: linked to it, or referenced by one of its manifests. */
static int blobs_of(struct sq_conn *c, int64_t repo_id, struct meta_name_list *out, struct err *e)
{
    struct sql_stmt *s;
    int rc = sq_run(c,
                    "SELECT digest FROM repo_blobs WHERE repo_id = ?1 UNION"
                    " SELECT ref_digest FROM manifest_refs WHERE repo_id = ?1 AND is_manifest = 0",
                    &s, e, "i", repo_id);
    if (rc < 0)
        return -1;
    rc = sq_collect_names(c, s, rc, -1, out, e);
    sql_finalize(s);
    return rc;
}

/* Deletes the rows of repo (repo_id: its row, or 0 when it has none); adds the rows deleted
 * or redacted to *n_changed. */
static int delete_rows(struct sq_conn *c, const char *repo, int64_t repo_id,
                       const struct key_prefixes *k, int64_t *n_changed, struct err *e)
{
    static const char *const by_id[] = {
        "DELETE FROM manifest_ref_seqs WHERE manifest_seq IN"
        " (SELECT seq FROM manifests WHERE repo_id = ?1)",
        "DELETE FROM manifests WHERE repo_id = ?1", "DELETE FROM repo_blobs WHERE repo_id = ?1",
        "DELETE FROM repos WHERE id = ?1",
    };
    static const char *const by_name[] = {
        "DELETE FROM tag_regs WHERE repo = ?1",
        "DELETE FROM manifest_tombs WHERE repo = ?1",
        "DELETE FROM repl_status WHERE repo = ?1",
        "DELETE FROM uploads WHERE repo = ?1",
        "UPDATE events SET kind = 'redacted', repo = NULL, name = NULL, digest = NULL,"
        " payload = NULL WHERE repo = ?1",
    };
    for (size_t i = 0; repo_id != 0 && i < sizeof(by_id) / sizeof(by_id[0]); i++) {
        if (sq_run_exec(c, by_id[i], e, "i", repo_id) != 0)
            return -1;
        *n_changed += sql_changes(c->db);
    }
    for (size_t i = 0; i < sizeof(by_name) / sizeof(by_name[0]); i++) {
        if (sq_run_exec(c, by_name[i], e, "t", repo) != 0)
            return -1;
        *n_changed += sql_changes(c->db);
    }
    static const char *const kinds[] = {"image_definition",      "image_version",
                                        "image_version_retired", "image_version_conflict",
                                        "image_version_writes",  "repository_lock",
                                        "pull_time"};
    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
        if (sq_run_exec(c,
                        "DELETE FROM objects WHERE kind = ?1 AND (key = ?2"
                        " OR substr(key, 1, length(?3)) = ?3 OR substr(key, 1, length(?4)) = ?4)",
                        e, "tttt", kinds[i], repo, k->colon, k->at) != 0)
            return -1;
        *n_changed += sql_changes(c->db);
    }
    return redact_object_events(c, repo, k, n_changed, e);
}

/* Of candidates, those nothing here links or references any more: out of the blobs table,
 * into orphans. */
static int drop_unneeded(struct sq_conn *c, const struct meta_name_list *candidates,
                         struct meta_name_list *orphans, struct err *e)
{
    static const char needed_sql[] =
        "SELECT 1 WHERE EXISTS (SELECT 1 FROM repo_blobs WHERE digest = ?1)"
        " OR EXISTS (SELECT 1 FROM manifest_refs WHERE ref_digest = ?1)";
    for (size_t i = 0; i < candidates->n; i++) {
        struct sql_stmt *s;
        int rc = sq_run(c, needed_sql, &s, e, "t", candidates->names[i]);
        if (rc < 0)
            return -1;
        sql_finalize(s);
        if (rc == SQL_ROW)
            continue;
        if (sq_run_exec(c, "DELETE FROM blobs WHERE digest = ?1", e, "t", candidates->names[i]) !=
            0)
            return -1;
        orphans->names = xrealloc(orphans->names, (orphans->n + 1) * sizeof(char *));
        orphans->names[orphans->n++] = xstrdup(candidates->names[i]);
    }
    return 0;
}

int sq_repo_purge(struct metastore *ms, const char *repo, struct meta_name_list *orphans,
                  int64_t *n_manifests, struct err *e)
{
    memset(orphans, 0, sizeof(*orphans));
    *n_manifests = 0;
    struct sq_conn *c = sq_conn_of(ms, e);
    if (c == NULL)
        return -1;
    struct key_prefixes k;
    prefixes_of(repo, &k);
    struct meta_name_list candidates = {0};
    int rc = sq_tx_begin(c, true, e);
    if (rc != 0)
        goto out;
    if (sq_tx_secure_delete(c, e) != 0)
        goto fail;
    int64_t repo_id = 0;
    int found = sq_repo_find(c, repo, &repo_id, e);
    if (found < 0)
        goto fail;
    if (found == 1)
        repo_id = 0;
    struct sql_stmt *s;
    if (repo_id != 0) {
        if (blobs_of(c, repo_id, &candidates, e) != 0 ||
            sq_run(c, "SELECT count(*) FROM manifests WHERE repo_id = ?1", &s, e, "i", repo_id) < 0)
            goto fail;
        *n_manifests = sql_col_int64(s, 0);
        sql_finalize(s);
    }
    int64_t n_changed = 0;
    if (delete_rows(c, repo, repo_id, &k, &n_changed, e) != 0 ||
        drop_unneeded(c, &candidates, orphans, e) != 0 ||
        (n_changed > 0 && sq_rebuild_mark(c, e) != 0))
        goto fail;
    rc = sq_tx_commit(c, e);
    if (rc != 0 || n_changed == 0)
        goto out;
    /* secure_delete zeroed what this transaction freed, not the older copies of the same
     * rows: where an earlier write moved a row between pages, as SQLite does when it splits
     * or merges them, the page it left may keep its old bytes in its unused space, with
     * secure_delete on or off (tests/unit/test_residency.c). Rebuilding the file leaves
     * none (marked in the transaction: a stop before it is done is made good at the next
     * open); then the old page images leave the WAL. */
    char why[NAME_MAX_BYTES + 64];
    snprintf(why, sizeof(why), "after removing repository %s", repo);
    (void)sq_rebuild_pending(c, why);
    if (sq_compact_log(c) != SQL_OK)
        log_warn("metastore", "failed to checkpoint after removing repository %s", repo);
    goto out;
fail:
    sq_tx_rollback(c);
    meta_name_list_fini(orphans);
    *n_manifests = 0;
    rc = -1;
out:
    meta_name_list_fini(&candidates);
    return rc;
}
