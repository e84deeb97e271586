/* Event payloads, backend-neutral: building the payload of a status or manifest_put event
 * and deriving the payload of an event stored without one when it is read. */
#include "metastore.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base64.h"
#include "body_pack.h"
#include "buf.h"
#include "log.h"
#include "metastore_sqlite_int.h"
#include "util.h"

/* The payload of a status event (the format peers parse: merge_status). */
void sq_status_payload(struct buf *p, const struct meta_status *st)
{
    buf_appends(p, "{\"region\":");
    buf_append_json_string(p, st->region);
    buf_appends(p, ",\"state\":");
    buf_append_json_string(p, st->state);
    buf_printf(p,
               ",\"bytesDone\":%" PRId64 ",\"bytesTotal\":%" PRId64 ",\"updatedMs\":%" PRId64
               ",\"details\":",
               st->bytes_done, st->bytes_total, st->updated_ms);
    buf_append_json_string(p, st->details ? st->details : "");
    /* an extra field: peers of earlier releases ignore it (they read fields by name) */
    if (st->has_copies)
        buf_printf(p, ",\"copies\":%" PRId64, st->copies);
    buf_appends(p, "}");
}

/* A status event a region writes about itself is stored in a short form (~40 bytes instead
 * of ~120: the region is the event's origin, the field names are implied) and read back as
 * the JSON above, byte for byte: "~1|state|bytesDone|bytesTotal|updatedMs|copies or -|details"
 * (details last: it may hold any character). JSON never starts with '~'. */
#define STATUS_SHORT_PREFIX "~1|"

void sq_status_payload_stored(struct buf *p, const struct meta_status *st, const char *origin)
{
    if (strcmp(st->region, origin) != 0 || st->state[0] == '\0' || strchr(st->state, '|')) {
        sq_status_payload(p, st);
        return;
    }
    buf_printf(p, STATUS_SHORT_PREFIX "%s|%" PRId64 "|%" PRId64 "|%" PRId64 "|", st->state,
               st->bytes_done, st->bytes_total, st->updated_ms);
    if (st->has_copies)
        buf_printf(p, "%" PRId64 "|", st->copies);
    else
        buf_appends(p, "-|");
    buf_appends(p, st->details ? st->details : "");
}

/* One "|"-ended integer field of a short form at *at; false if it is not one. */
static bool short_int(const char **at, int64_t *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(*at, &end, 10);
    if (errno != 0 || end == *at || *end != '|')
        return false;
    *out = v;
    *at = end + 1;
    return true;
}

bool sq_event_payload_is_short(const char *stored)
{
    return stored != NULL && strncmp(stored, STATUS_SHORT_PREFIX, 3) == 0;
}

char *sq_event_payload_expand(const char *kind, const char *origin, const char *stored)
{
    if (stored == NULL || strncmp(stored, STATUS_SHORT_PREFIX, 3) != 0 || kind == NULL ||
        strcmp(kind, "status") != 0 || origin == NULL)
        return NULL;
    const char *at = stored + 3;
    const char *bar = strchr(at, '|');
    if (bar == NULL)
        goto damaged;
    char *state = xstrndup(at, (size_t)(bar - at));
    at = bar + 1;
    struct meta_status st = {.region = (char *)origin, .state = state};
    bool ok = short_int(&at, &st.bytes_done) && short_int(&at, &st.bytes_total) &&
              short_int(&at, &st.updated_ms);
    if (ok && strncmp(at, "-|", 2) == 0)
        at += 2;
    else if (ok)
        ok = st.has_copies = short_int(&at, &st.copies);
    if (!ok) {
        free(state);
        goto damaged;
    }
    st.details = (char *)at;
    struct buf p;
    buf_init(&p, SQ_PAYLOAD_MAX_BYTES);
    sq_status_payload(&p, &st);
    free(state);
    char *out = buf_steal(&p, NULL);
    buf_fini(&p);
    return out;
damaged:
    log_error("metastore", "status event of %s stored in a damaged short form", origin);
    return NULL;
}

/* Checks a payload builder once, as its sticky error allows. */
int sq_payload_check(struct buf *b, struct err *e)
{
    if (!b->is_too_big)
        return 0;
    log_error("metastore", "failed to build event payload: larger than %zu bytes", b->max_bytes);
    return err_set(e, ERR_INTERNAL, NULL);
}

/* Derived event payloads ------------------------------------------------------
 * A manifest_put event used to carry the manifest (base64 body, references) and a status
 * event the status row: copies of what the manifests, manifest_refs and repl_status tables
 * hold. They are now stored without a payload (NULL) and rebuilt here when the event is
 * read, in the same format, so peers of any version see the same events. Events written
 * before keep their stored payload and are served as stored.
 * A manifest_put whose manifest is gone was superseded by a tombstone that is in the log
 * too (a row is deleted only when a later tombstone wins): it is served as a "superseded"
 * event, which every version applies as a no-op (merge_event), leaving the same state as
 * applying the put and then the tombstone. A status whose row is gone, likewise. */

/* The manifest_put payload of the manifest in row s (MANIFEST_PAYLOAD or
 * MANIFESTS_OF_REPO: digest, media_type, artifact_type, annotations, subject, body); NULL
 * with e set if its references cannot be read (a payload without them would make a peer
 * show the manifest before its blobs are there). */
char *sq_manifest_payload(struct sq_conn *c, struct sql_stmt *s, int64_t repo_id, struct err *e)
{
    struct buf p;
    buf_init(&p, SQ_PAYLOAD_MAX_BYTES);
    buf_appends(&p, "{\"mediaType\":");
    buf_append_json_string(&p, sql_col_text(s, 1));
    for (int col = 2; col <= 4; col++) {
        static const char *const keys[] = {"", "", "artifactType", "annotations", "subject"};
        if (sql_col_is_null(s, col))
            continue;
        buf_printf(&p, ",\"%s\":", keys[col]);
        buf_append_json_string(&p, sql_col_text(s, col));
    }
    buf_appends(&p, ",\"refs\":[");
    struct sql_stmt *r;
    int rr = sq_query(c, SQ_REFS_OF_MANIFEST, &r, e, "it", repo_id, sql_col_text(s, 0));
    int k = 0;
    int row = rr == SQL_ROW;
    for (; rr >= 0 && row == 1; row = sq_next_row(c, r, e), k++)
        buf_printf(&p, "%s{\"digest\":\"%s\",\"isManifest\":%s,\"size\":%" PRId64 "}", k ? "," : "",
                   sql_col_text(r, 0), sql_col_int64(r, 1) ? "true" : "false",
                   (int64_t)sql_col_int64(r, 2));
    if (rr >= 0)
        sq_stmt_done(r);
    if (rr < 0 || row < 0) {
        buf_fini(&p);
        return NULL;
    }
    if (sql_col_bytes(s, 5) == 0) {
        /* Not held here (meta_versions.c): no body to relay, only its size; a region that
         * holds it fetches the document from a holder. */
        struct sql_stmt *z;
        int zr = sq_run(c, "SELECT size FROM manifests WHERE repo_id = ?1 AND digest = ?2", &z, e,
                        "it", repo_id, sql_col_text(s, 0));
        if (zr == SQL_ROW)
            buf_printf(&p, "],\"size\":%" PRId64 "}", (int64_t)sql_col_int64(z, 0));
        if (zr >= 0)
            sql_finalize(z);
        if (zr != SQL_ROW) {
            if (zr >= 0)
                err_set(e, ERR_INTERNAL, "manifest row went away");
            buf_fini(&p);
            return NULL;
        }
        char *out = buf_steal(&p, NULL);
        buf_fini(&p);
        return out;
    }
    char *body;
    size_t body_len;
    if (body_unpack(sql_col_blob(s, 5), sql_col_bytes(s, 5), &body, &body_len, e) != 0) {
        buf_fini(&p);
        return NULL;
    }
    char *b64 = base64_encode(body, body_len);
    free(body);
    buf_appends(&p, "],\"body\":\"");
    buf_appends(&p, b64);
    buf_appends(&p, "\"}");
    free(b64);
    char *out = buf_steal(&p, NULL);
    buf_fini(&p);
    return out;
}

/* Is this payload one that sq_event_payload_derive rebuilds? (Then it is stored as NULL.) */
bool sq_is_payload_derivable(const char *kind, const char *origin, const char *payload)
{
    /* Status events keep their payload: it is a snapshot the status row does not keep
     * (see sq_status_write). Status events stored without one are still derived when read. */
    (void)origin;
    (void)payload;
    return strcmp(kind, "manifest_put") == 0;
}

/* Fills in the payload of an event stored without one (see above). *kind may become
 * "superseded" (a static string: the caller must not free it if it changed). Returns the
 * payload (the caller frees it; NULL for a superseded event) or sets *failed. */
char *sq_event_payload_derive(struct sq_conn *c, const char **kind, const char *origin,
                              const char *repo, const char *digest, bool *failed, struct err *e)
{
    *failed = false;
    bool is_put = strcmp(*kind, "manifest_put") == 0;
    if ((!is_put && strcmp(*kind, "status") != 0) || repo == NULL || digest == NULL)
        return NULL;
    struct sql_stmt *s;
    char *payload = NULL;
    int rc;
    if (is_put) {
        int64_t repo_id;
        rc = sq_repo_find(c, repo, &repo_id, e);
        if (rc == 0) {
            rc = sq_query(c, SQ_MANIFEST_PAYLOAD, &s, e, "it", repo_id, digest);
            bool is_queried = rc >= 0;
            if (rc == SQL_ROW) {
                payload = sq_manifest_payload(c, s, repo_id, e);
                if (payload == NULL)
                    rc = -1;
            }
            if (is_queried) /* reset also when the payload failed: the statement is reused */
                sq_stmt_done(s);
        }
    } else {
        rc = sq_query(c, SQ_STATUS_OF_REGION, &s, e, "ttt", repo, digest, origin);
        if (rc == SQL_ROW) {
            struct meta_status st = {.region = (char *)origin,
                                     .state = (char *)sql_col_text(s, 0),
                                     .bytes_done = sql_col_int64(s, 1),
                                     .bytes_total = sql_col_int64(s, 2),
                                     .updated_ms = sql_col_int64(s, 3),
                                     .details = (char *)sql_col_text(s, 4),
                                     .has_copies = sql_col_int64(s, 5) >= 0,
                                     .copies = sql_col_int64(s, 5)};
            struct buf p;
            buf_init(&p, 64 * 1024);
            sq_status_payload(&p, &st);
            payload = buf_steal(&p, NULL);
            buf_fini(&p);
        }
        if (rc >= 0)
            sq_stmt_done(s);
    }
    if (rc < 0) {
        *failed = true;
        return NULL;
    }
    if (payload == NULL)
        *kind = "superseded";
    return payload;
}
