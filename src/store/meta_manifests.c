/* Manifests, tags and referrers, backend-neutral: the local writes (put, delete, tag
 * delete, each one write transaction that appends its events and merges through
 * meta_merge.c) and the reads (get, lookup, tag list, referrers, tags of a manifest). */
#include "metastore.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "body_pack.h"
#include "buf.h"
#include "image_version.h"
#include "manifest_cache.h"
#include "metastore_sqlite_int.h"
#include "util.h"

/* Manifests --------------------------------------------------------------- */

/* Checks one reference of a manifest being put into repo_id: a blob must be linked in
 * the repository (pushed or mounted there), a child manifest visible in it, either with
 * the size its descriptor declares. A blob linked only in another repository does not
 * count: otherwise a manifest naming it would let its pusher (and every reader of repo_id)
 * read a repository they may not pull (OCI: "MAY reject"; distribution rejects too). */
static int check_ref(struct sq_conn *c, int64_t repo_id, const struct meta_ref *ref, struct err *e)
{
    struct sql_stmt *s;
    int rc = sq_query(c, ref->is_manifest ? SQ_MANIFEST_SIZE : SQ_LINK_SIZE, &s, e, "it", repo_id,
                      ref->digest.str);
    if (rc < 0)
        return -1;
    int64_t size = rc == SQL_ROW ? sql_col_int64(s, 0) : -1;
    sq_stmt_done(s);
    if (rc != SQL_ROW)
        return err_set(e, ERR_MANIFEST_BLOB_UNKNOWN, "manifest references unknown %s %s",
                       ref->is_manifest ? "manifest" : "blob", ref->digest.str);
    /* image-spec descriptor: size is the exact length of the content it names. */
    if (size != ref->size)
        return err_set(e, ERR_MANIFEST_INVALID,
                       "descriptor of %s declares size %" PRId64 ", the %s is %" PRId64 " bytes",
                       ref->digest.str, ref->size, ref->is_manifest ? "manifest" : "blob", size);
    return 0;
}

/* 0 when tag names d; else -1, ERR_DENIED naming what the version is (the words of
 * image_catalog_check_push, which refuses the same push when it comes second). */
static int tag_names_other(struct sq_conn *c, const char *repo, const char *tag,
                           const struct digest *d, struct err *e)
{
    struct sql_stmt *s;
    int rc = sq_query(c, SQ_TREG_GET, &s, e, "tt", repo, tag);
    if (rc < 0)
        return -1;
    const char *cur = rc == SQL_ROW ? (const char *)sql_col_text(s, 0) : NULL;
    bool is_other = cur == NULL || strcmp(cur, d->str) != 0;
    if (is_other)
        err_set(e, ERR_DENIED, "version %s of %s exists and is immutable (it is %s, not %s)", tag,
                repo, cur != NULL ? cur : "deleted", d->str);
    sq_stmt_done(s);
    return is_other ? -1 : 0;
}

int sq_manifest_put(struct metastore *ms, const char *repo, const struct meta_manifest *m,
                    const struct meta_ref *refs, size_t n_refs, const struct digest *subject,
                    const char *tag, struct err *e)
{
    AN(repo);
    AN(m);
    AN(m->media_type);
    ASSERT(m->body != NULL || m->body_len == 0);
    ASSERT(refs != NULL || n_refs == 0);
    struct sq_conn *c = sq_conn_of(ms, e);
    if (c == NULL)
        return -1;
    const char *subject_str = subject != NULL ? subject->str : NULL;
    int64_t repo_id;
    struct sql_stmt *s;
    /* The body as stored: packed (body_pack.h). */
    unsigned char *packed;
    size_t stored_len;
    const void *stored = body_stored(m->body, m->body_len, &packed, &stored_len);

    if (sq_tx_begin(c, true, e) != 0)
        goto out;
    /* Rolled back with everything else if a reference turns out to be missing. */
    if (sq_repo_ensure(c, repo, &repo_id, e) != 0)
        goto fail;
    /* distribution-spec: Pushing Manifests -- every referenced blob and child manifest
     * must be known, checked in the same transaction that makes the manifest visible. */
    for (size_t i = 0; i < n_refs; i++) {
        if (check_ref(c, repo_id, &refs[i], e) != 0)
            goto fail;
    }
    /* A local write is newer than anything this region has seen, so its clock puts it
     * after any tombstone of the same manifest (the tombstone stays: it still orders
     * older puts arriving from peers). */
    int64_t put_hlc = sq_hlc_next(c);
    int64_t put_ms = util_now_ms(); /* also the time of the own Completed (derived from it) */
    if (sq_exec(c, SQ_MANIFEST_INSERT, e, "itttttibi", repo_id, m->digest.str, m->media_type,
                m->artifact_type, m->annotations_json, subject_str, (int64_t)m->body_len,
                stored, stored_len, put_ms) != 0)
        goto fail;
    /* The same digest is the same bytes: a repeated put only (re)points the tag. The
     * event is stored without its payload: the manifest row and its references are the
     * payload, rebuilt when the event is read (sq_event_payload_derive). */
    bool is_inserted = sql_changes(c->db) > 0;
    if (is_inserted) {
        for (size_t i = 0; i < n_refs; i++) {
            /* Sizes of what the manifest needs (blobs and child manifests, checked
             * above): the replication status counts bytes copied against their sum. */
            if (sq_exec(c, SQ_REF_INSERT_SIZED, e, "ittii", repo_id, m->digest.str,
                        refs[i].digest.str, (int64_t)refs[i].is_manifest, refs[i].size) != 0)
                goto fail;
        }
        if (sq_exec(c, SQ_MANIFEST_SET_CLOCK, e, "itit", repo_id, m->digest.str, put_hlc,
                    c->store->region) != 0)
            goto fail;
        if (sq_event_append_clock(c, "manifest_put", repo, NULL, m->digest.str, NULL, put_hlc, e) !=
            0)
            goto fail;
    }
    /* Pushed again: an untagged manifest's grace restarts (an index's children are put
     * again before their index; the grace then covers the gap from the last one). */
    else if (sq_untagged_touch(c, repo_id, m->digest.str, e) != 0)
        goto fail;
    /* ...and the put is a write of its own with a new clock and event, tagged or not: a
     * tombstone another region wrote before it (not having seen it: a delete, or a
     * collector's) is older and loses everywhere, rather than deleting what the client just
     * pushed. A tag_set does not keep a manifest against a delete (sq_tomb_merge). */
    else if (sq_exec(c, SQ_MANIFEST_SET_CLOCK, e, "itit", repo_id, m->digest.str, put_hlc,
                     c->store->region) != 0 ||
             sq_event_append_clock(c, "manifest_put", repo, NULL, m->digest.str, NULL, put_hlc,
                                   e) != 0)
        goto fail;
    /* A copy recorded without its document (filtered replication, meta_versions.c) gets it. */
    else if (sq_run_exec(c, "UPDATE manifests SET body = ?3 WHERE repo_id = ?1 AND digest = ?2"
                            " AND length(body) = 0",
                         e, "itb", repo_id, m->digest.str, stored, stored_len) != 0)
        goto fail;
    /* A copy replicated from a peer and still waiting for content (or hidden for a lost
     * blob) is complete now: every reference was checked above. The fetch workers will not
     * announce it (they fetch only what is not visible), so this put does, as a new one's:
     * without it the others kept this region's last report (Pending) for ever, and
     * image-version wait --replicated never returned. The update changes only a hidden row. */
    if (sq_exec(c, SQ_MANIFEST_SET_VISIBLE, e, "it", repo_id, m->digest.str) != 0)
        goto fail;
    if (is_inserted || sql_changes(c->db) > 0) {
        /* Each reference once, as the references are stored (the status derived from them,
         * meta_repl.c, and a fetch count each once): a layer listed twice is one blob. */
        int64_t blob_bytes = 0;
        for (size_t i = 0; i < n_refs; i++) {
            bool is_repeated = false;
            for (size_t k = 0; k < i && !is_repeated; k++)
                is_repeated = digest_equal(&refs[k].digest, &refs[i].digest);
            blob_bytes += is_repeated ? 0 : refs[i].size;
        }
        struct meta_status done = {.region = c->store->region,
                                   .state = "Completed",
                                   .bytes_done = blob_bytes,
                                   .bytes_total = blob_bytes,
                                   .updated_ms = is_inserted ? put_ms : util_now_ms(),
                                   .details = ""};
        /* A new manifest's own status is derived from its row when read (meta_repl.c, "The
         * own status"); one that was hidden may have a row of this region (a fetch's
         * InProgress) written after its manifest row: this one replaces it. */
        if ((is_inserted ? sq_status_announce_own(c, repo, m->digest.str, &done, e)
                         : sq_status_write(c, repo, m->digest.str, &done, true, e)) != 0)
            goto fail;
    }
    /* Put again while visible here: a new clock, so its status again (meta_repl.c). */
    else if (sq_status_announce_own_again(c, repo_id, repo, m->digest.str, e) != 0)
        goto fail;
    if (tag != NULL) {
        int rc = sq_query(c, SQ_TREG_GET, &s, e, "tt", repo, tag);
        if (rc < 0)
            goto fail;
        const unsigned char *cur = rc == SQL_ROW ? sql_col_text(s, 0) : NULL;
        bool is_same = cur != NULL && strcmp((const char *)cur, m->digest.str) == 0;
        sq_stmt_done(s);
        /* A tag pushed again to the digest it names here is still the latest write of it:
         * a move made meanwhile in another region (not seen here yet) is older and must
         * lose. Versions of an image definition are first-writer-wins, not moved: a push of
         * the same digest again changes nothing there (meta_merge.c). */
        bool is_definition = false;
        if (is_same && sq_repo_is_definition(c, repo, &is_definition, e) != 0)
            goto fail;
        if (!is_same || !(is_definition && iv_version_parse(tag, NULL) == 0)) {
            int64_t tag_hlc = sq_hlc_next(c);
            bool applied;
            if (sq_tag_merge(c, repo_id, repo, tag, m->digest.str, tag_hlc, c->store->region,
                             &applied, e) != 0)
                goto fail;
            /* Only a version (first writer wins) refuses a write made here: another
             * manifest pushed under it since the handler's check (image_catalog_check_push)
             * holds it, and this push is refused as that check would have refused it,
             * rather than answered 201 and never in effect. */
            if (!applied && tag_names_other(c, repo, tag, &m->digest, e) != 0)
                goto fail;
            if (sq_event_append_clock(c, "tag_set", repo, tag, m->digest.str, NULL, tag_hlc, e) !=
                0)
                goto fail;
        }
    }
    if (sq_tx_commit(c, e) != 0)
        goto out;
    free(packed);
    return 0;

fail:
    sq_tx_rollback(c);
out:
    free(packed);
    return -1;
}

/* Fills out from a MANIFEST_BY_* row (digest, media_type, artifact_type, annotations,
 * body); -1 with e set if the stored body is damaged. */
static int manifest_from_row(struct sql_stmt *s, struct meta_manifest *out, struct err *e)
{
    sq_col_digest(s, 0, &out->digest);
    out->media_type = sq_col_strdup(s, 1);
    if (out->media_type == NULL)
        out->media_type = xstrdup("");
    out->artifact_type = sq_col_strdup(s, 2);
    out->annotations_json = sq_col_strdup(s, 3);
    /* NUL-terminated for the convenience of JSON parsers; body_len is authoritative. */
    return body_unpack(sql_col_blob(s, 4), sql_col_bytes(s, 4), &out->body, &out->body_len, e);
}

int sq_manifest_get(struct metastore *ms, const char *repo, const char *reference,
                    struct meta_manifest *out, struct err *e)
{
    AN(reference);
    memset(out, 0, sizeof(*out));
    struct sq_conn *c = sq_conn_of(ms, e);
    if (c == NULL)
        return -1;
    int64_t repo_id;
    struct sql_stmt *s;

    /* The hot path of every pull: one statement (its own implicit read transaction)
     * resolves repository, tag and manifest at once. A tag never contains ':', a digest
     * always does (distribution-spec: Pulling manifests, the <reference> grammar). */
    bool is_digest = strchr(reference, ':') != NULL;
    /* Before that, the cache: an answer from a lookup made since the last commit. The count
     * is read before the lookup, so a commit that lands during it leaves the entry stale.
     * Not inside this thread's write transaction, whose own changes are not committed. */
    struct sq_store *st = c->store;
    bool is_cached = st->manifests != NULL && !c->has_wmu;
    uint64_t gen = is_cached ? st->drv->commits() : 0;
    if (is_cached && manifest_cache_get(st->manifests, repo, reference, gen, out))
        return 0;
    int rc = sq_query(c, is_digest ? SQ_MANIFEST_BY_REPO_DIGEST : SQ_MANIFEST_BY_REPO_TAG, &s, e,
                      "tt", repo, reference);
    if (rc < 0)
        return -1;
    int unpacked = rc == SQL_ROW ? manifest_from_row(s, out, e) : 0;
    sq_stmt_done(s);
    if (unpacked != 0) {
        meta_manifest_fini(out);
        return -1;
    }
    if (rc == SQL_ROW) {
        if (is_cached)
            manifest_cache_put(st->manifests, repo, reference, gen, out);
        return 0;
    }
    /* Not found: say whether the repository is unknown or only the manifest. */
    rc = sq_repo_find(c, repo, &repo_id, e);
    if (rc < 0)
        return -1;
    return err_set(e, rc > 0 ? ERR_NAME_UNKNOWN : ERR_MANIFEST_UNKNOWN, NULL);
}

int sq_manifest_delete(struct metastore *ms, const char *repo, const struct digest *d,
                       struct err *e)
{
    struct sq_conn *c = sq_conn_of(ms, e);
    if (c == NULL)
        return -1;
    struct buf payload;
    buf_init(&payload, SQ_PAYLOAD_MAX_BYTES);
    int64_t repo_id;
    struct sql_stmt *s;

    if (sq_tx_begin(c, true, e) != 0)
        goto out;
    int rc = sq_repo_find(c, repo, &repo_id, e);
    if (rc != 0) {
        if (rc > 0)
            err_set(e, ERR_MANIFEST_UNKNOWN, NULL);
        goto fail;
    }
    /* A copy still waiting for its content (replicated, not visible yet) can be deleted
     * too: the delete is a tombstone every region applies. */
    rc = sq_query(c, SQ_MANIFEST_CLOCK, &s, e, "it", repo_id, d->str);
    if (rc < 0)
        goto fail;
    sq_stmt_done(s);
    if (rc != SQL_ROW) {
        err_set(e, ERR_MANIFEST_UNKNOWN, NULL);
        goto fail;
    }
    /* An index that needs this manifest keeps it (visible means pullable). */
    if (sq_referenced_by(c, repo_id, d->str, e) != 0)
        goto fail;
    /* The event names the tags that went with the manifest. */
    buf_appends(&payload, "{\"tags\":[");
    rc = sq_query(c, SQ_TAGS_OF_MANIFEST, &s, e, "it", repo_id, d->str);
    if (rc < 0)
        goto fail;
    int row = rc == SQL_ROW ? 1 : 0;
    for (int i = 0; row == 1; i++) {
        if (i > 0)
            buf_appends(&payload, ",");
        buf_append_json_string(&payload, sql_col_text(s, 0));
        row = sq_next_row(c, s, e);
    }
    sq_stmt_done(s);
    if (row < 0)
        goto fail;
    buf_appends(&payload, "]}");
    if (sq_payload_check(&payload, e) != 0)
        goto fail;

    /* distribution-spec: deleting a manifest deletes its tags. They are written as tag
     * deletes of their own, which every region merges like any tag write. */
    if (sq_delete_tags_of(c, repo_id, repo, d->str, e) != 0)
        goto fail;
    int64_t del_hlc = sq_hlc_next(c);
    if (sq_tomb_merge(c, repo_id, repo, d->str, del_hlc, c->store->region, e) != 0)
        goto fail;
    if (sq_event_append_clock(c, "manifest_delete", repo, NULL, d->str, payload.data, del_hlc, e) !=
        0)
        goto fail;
    if (sq_tx_commit(c, e) != 0)
        goto out;
    buf_fini(&payload);
    return 0;

fail:
    sq_tx_rollback(c);
out:
    buf_fini(&payload);
    return -1;
}

/* Tags -------------------------------------------------------------------- */

int sq_tag_delete(struct metastore *ms, const char *repo, const char *tag, struct err *e)
{
    struct sq_conn *c = sq_conn_of(ms, e);
    if (c == NULL)
        return -1;
    int64_t repo_id;
    struct sql_stmt *s;
    struct digest old;

    if (sq_tx_begin(c, true, e) != 0)
        return -1;
    int rc = sq_repo_find(c, repo, &repo_id, e);
    if (rc != 0) {
        if (rc > 0)
            err_set(e, ERR_MANIFEST_UNKNOWN, NULL);
        goto fail;
    }
    rc = sq_query(c, SQ_TAG_GET, &s, e, "it", repo_id, tag);
    if (rc < 0)
        goto fail;
    if (rc == SQL_ROW)
        sq_col_digest(s, 0, &old);
    sq_stmt_done(s);
    if (rc != SQL_ROW) {
        err_set(e, ERR_MANIFEST_UNKNOWN, NULL);
        goto fail;
    }
    int64_t del_hlc = sq_hlc_next(c);
    bool applied;
    if (sq_tag_merge(c, repo_id, repo, tag, NULL, del_hlc, c->store->region, &applied, e) != 0)
        goto fail;
    if (sq_event_append_clock(c, "tag_delete", repo, tag, old.str, NULL, del_hlc, e) != 0)
        goto fail;
    return sq_tx_commit(c, e);

fail:
    sq_tx_rollback(c);
    return -1;
}

int sq_tag_list(struct metastore *ms, const char *repo, const char *last, long n,
                struct meta_name_list *out, struct err *e)
{
    memset(out, 0, sizeof(*out));
    struct sq_conn *c = sq_conn_of(ms, e);
    if (c == NULL)
        return -1;
    int64_t repo_id;
    struct sql_stmt *s;

    if (sq_tx_begin(c, false, e) != 0)
        return -1;
    int rc = sq_repo_find(c, repo, &repo_id, e);
    if (rc != 0) {
        if (rc > 0)
            err_set(e, ERR_NAME_UNKNOWN, NULL);
        goto fail;
    }
    /* distribution-spec: Listing Tags -- n=0 is an empty list with no Link. */
    if (n != 0) {
        rc = sq_query(c, SQ_TAG_LIST, &s, e, "iti", repo_id, last != NULL ? last : "",
                      sq_page_limit(n));
        if (rc < 0)
            goto fail;
        if (sq_collect_names(c, s, rc, n, out, e) != 0)
            goto fail;
    }
    if (sq_tx_commit(c, e) != 0) {
        meta_name_list_fini(out);
        return -1;
    }
    return 0;

fail:
    sq_tx_rollback(c);
    return -1;
}

int sq_referrers(struct metastore *ms, const char *repo, const struct digest *d,
                 const char *artifact_type, struct meta_referrer_list *out, struct err *e)
{
    memset(out, 0, sizeof(*out));
    struct sq_conn *c = sq_conn_of(ms, e);
    if (c == NULL)
        return -1;
    int64_t repo_id;
    struct sql_stmt *s;
    size_t cap = 0;

    if (sq_tx_begin(c, false, e) != 0)
        return -1;
    int rc = sq_repo_find(c, repo, &repo_id, e);
    if (rc < 0)
        goto fail;
    /* distribution-spec: Listing Referrers -- never 404; an unknown repository simply
     * has no referrers. */
    if (rc > 0)
        return sq_tx_commit(c, e);
    rc = sq_query(c, SQ_REFERRERS, &s, e, "itt", repo_id, d->str, artifact_type);
    if (rc < 0)
        goto fail;
    int row = rc == SQL_ROW ? 1 : 0;
    while (row == 1) {
        if (out->n == cap) {
            cap = cap ? cap * 2 : 8;
            out->items = xrealloc(out->items, cap * sizeof(*out->items));
        }
        struct meta_referrer *r = &out->items[out->n++];
        memset(r, 0, sizeof(*r));
        sq_col_digest(s, 0, &r->digest);
        r->media_type = sq_col_strdup(s, 1);
        r->artifact_type = sq_col_strdup(s, 2);
        r->annotations_json = sq_col_strdup(s, 3);
        r->size = sql_col_int64(s, 4);
        row = sq_next_row(c, s, e);
    }
    sq_stmt_done(s);
    if (row < 0)
        goto fail;
    if (sq_tx_commit(c, e) != 0) {
        meta_referrer_list_fini(out);
        return -1;
    }
    return 0;

fail:
    meta_referrer_list_fini(out);
    sq_tx_rollback(c);
    return -1;
}

int sq_manifest_lookup(struct metastore *ms, const char *repo, const char *reference,
                       struct digest *d, char **media_type, int64_t *size, bool *is_visible,
                       int64_t *recorded_ms, struct err *e)
{
    *media_type = NULL;
    struct sq_conn *c = sq_conn_of(ms, e);
    if (c == NULL)
        return -1;
    if (sq_tx_begin(c, false, e) != 0)
        return -1;
    int64_t repo_id;
    struct sql_stmt *s;
    int rc = sq_repo_find(c, repo, &repo_id, e);
    if (rc != 0) {
        if (rc > 0)
            err_set(e, ERR_MANIFEST_UNKNOWN, NULL);
        goto fail;
    }
    if (strchr(reference, ':') != NULL) {
        if (digest_parse(reference, strlen(reference), d, e) != 0)
            goto fail;
    } else {
        rc = sq_query(c, SQ_TREG_GET, &s, e, "tt", repo, reference);
        if (rc < 0)
            goto fail;
        bool found = rc == SQL_ROW && !sql_col_is_null(s, 0);
        if (found)
            sq_col_digest(s, 0, d);
        sq_stmt_done(s);
        if (!found) {
            err_set(e, ERR_MANIFEST_UNKNOWN, NULL);
            goto fail;
        }
    }
    rc = sq_query(c, SQ_MANIFEST_LOOKUP, &s, e, "it", repo_id, d->str);
    if (rc < 0)
        goto fail;
    if (rc == SQL_ROW) {
        *media_type = sq_col_strdup(s, 0);
        *size = sql_col_int64(s, 1);
        *is_visible = sql_col_int64(s, 2) == 1; /* 2: not held here (meta_versions.c) */
        *recorded_ms = sql_col_int64(s, 3);
    }
    sq_stmt_done(s);
    if (rc != SQL_ROW) {
        err_set(e, ERR_MANIFEST_UNKNOWN, NULL);
        goto fail;
    }
    sq_tx_commit(c, e);
    return 0;
fail:
    sq_tx_rollback(c);
    return -1;
}

int sq_manifest_holder(struct metastore *ms, const struct digest *d, const char *except,
                       char **repo_out, struct err *e)
{
    *repo_out = NULL;
    struct sq_conn *c = sq_conn_of(ms, e);
    if (c == NULL)
        return -1;
    struct sql_stmt *s;
    int rc = sq_query(c, SQ_MANIFEST_HOLDER, &s, e, "tt", d->str, except);
    if (rc < 0)
        return -1;
    if (rc == SQL_ROW)
        *repo_out = sq_col_strdup(s, 0);
    sq_stmt_done(s);
    if (*repo_out == NULL)
        return err_set(e, ERR_MANIFEST_UNKNOWN, NULL);
    return 0;
}

int sq_manifest_tags(struct metastore *ms, const char *repo, const struct digest *d,
                     struct meta_name_list *out, struct err *e)
{
    memset(out, 0, sizeof(*out));
    struct sq_conn *c = sq_conn_of(ms, e);
    if (c == NULL)
        return -1;
    if (sq_tx_begin(c, false, e) != 0)
        return -1;
    int64_t repo_id;
    struct sql_stmt *s;
    int rc = sq_repo_find(c, repo, &repo_id, e);
    if (rc == 0) {
        rc = sq_query(c, SQ_TAGS_OF_MANIFEST, &s, e, "it", repo_id, d->str);
        for (int row = rc == SQL_ROW; rc >= 0 && row == 1; row = sq_next_row(c, s, e)) {
            out->names = xrealloc(out->names, (out->n + 1) * sizeof(char *));
            out->names[out->n++] = sq_col_strdup(s, 0);
        }
        if (rc >= 0)
            sq_stmt_done(s);
    }
    sq_tx_commit(c, e);
    return rc < 0 ? -1 : 0;
}
