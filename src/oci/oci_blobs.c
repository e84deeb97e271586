/* /v2/<name>/blobs/<digest>: GET (with Range), HEAD, DELETE.
 * A blob is served only when the repository links it, and its bytes come as the
 * blobstore answers (blobstore.h): its file descriptor (sent with sendfile), a stream,
 * or a redirect URL (307). The store answers only for a copy of the recorded size that
 * was not changed since it was verified. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gc_fence.h"
#include "log.h"
#include "oci.h"
#include "placement.h"
#include "range.h"
#include "repl.h"
#include "util.h"

/* What a blob takes when it may not be deleted (deletes disabled, or still referenced): a
 * 405 names them (RFC 9110 15.5.6). */
static const char *const without_delete[] = {"GET", "HEAD", NULL};

static void blob_delete(struct http_req *req, const struct digest *d)
{
    struct registry *reg = req->reg;
    struct err e = {0};
    bool is_orphan = false;
    if (!reg->cfg->is_delete_enabled) {
        http_reply_allow(req, without_delete);
        http_reply_error(req, ERR_UNSUPPORTED, "deletes are disabled on this registry");
        return;
    }
    bool is_fenced = gc_fence_enter(reg, true);
    int rc = reg->ms->ops->blob_unlink(reg->ms, req->repo, d, &is_orphan, &e);
    if (rc == 0 && is_orphan && is_fenced) /* else the collector removes it later */
        (void)reg->bs->ops->remove(reg->bs, d, NULL);
    gc_fence_leave(reg, true);
    if (rc != 0) {
        if (e.code == ERR_IN_USE)
            http_reply_allow(req, without_delete);
        http_reply_err(req, &e);
        return;
    }
    http_reply(req, 202, NULL, NULL, 0);
}

/* Pull never misses (issue 14): a GET of a blob this region does not link in the
 * repository yet (replication in flight, a blob pushed elsewhere a moment ago) fetches
 * it now, single-flight, from a peer that links it in the same repository, verifies and
 * keeps it. Not for HEAD (clients probe with HEAD before they upload: that stays a fast
 * 404) nor for a peer's own fetch. 0 when the repository links it now. */
#define PULL_WAIT_MS 10000 /* for a fetch of the blob already running here */

static int pull_through(struct http_req *req, const struct digest *d)
{
    struct registry *reg = req->reg;
    struct err fe = {0};
    if (strcmp(req->method, "GET") != 0 || reg->repl == NULL ||
        http_req_header(req, REPL_FETCH_HEADER) != NULL)
        return -1;
    if (!placement_may_pull_blob(reg, req->repo, d))
        return -1; /* filtered replication: not a blob of what this region holds */
    /* XXX: the worker thread waits for the fetch, as the manifest PUT of a split push
     * does; a fetch handed to the replication workers with the request parked would not. */
    if (repl_fetch_blob_within(reg->repl, req->repo, d, PULL_WAIT_MS, &fe) != 0)
        return -1;
    log_info("oci", "fetched blob %s of %s from a peer for a pull", d->str, req->repo);
    return 0;
}

/* http_reader_f over a blobstore stream, and its cleanup (the request's handler state). */
static long on_stream_read(void *arg, char *p, size_t max)
{
    struct blobstore_body *body = arg;
    return body->read(body->arg, p, max);
}

static void on_stream_cleanup(struct http_req *req)
{
    struct blobstore_body *body = req->handler_state;
    body->close(body->arg);
    free(body);
    req->handler_state = NULL;
    req->handler_cleanup = NULL;
}

/* Sends len bytes of the blob as the store answered: from its file descriptor (sendfile)
 * or pulled from its stream. The reply takes over what body holds. */
static void reply_body(struct http_req *req, int status, struct blobstore_body *body,
                       uint64_t len)
{
    ASSERT(body->kind != BLOBSTORE_BODY_REDIRECT);
    if (body->kind == BLOBSTORE_BODY_FD) {
        http_reply_fd(req, status, body->fd, body->fd_offset, len);
        return;
    }
    struct blobstore_body *kept = xmalloc(sizeof(*kept));
    *kept = *body;
    req->handler_state = kept;
    req->handler_cleanup = on_stream_cleanup;
    http_reply_stream(req, status, len, on_stream_read, kept);
}

void oci_blob(struct http_req *req)
{
    struct registry *reg = req->reg;
    struct err e = {0};
    struct digest d;
    if (!oci_check_repo(req))
        return;
    if (digest_parse(req->ref, strlen(req->ref), &d, &e) != 0) {
        http_reply_err(req, &e);
        return;
    }
    if (strcmp(req->method, "DELETE") == 0) {
        blob_delete(req, &d);
        return;
    }
    uint64_t size;
    if (reg->ms->ops->blob_get(reg->ms, req->repo, &d, &size, &e) != 0 &&
        (e.code != ERR_BLOB_UNKNOWN || pull_through(req, &d) != 0 ||
         reg->ms->ops->blob_get(reg->ms, req->repo, &d, &size, &e) != 0)) {
        http_reply_err(req, &e);
        return;
    }
    char etag[DIGEST_STR_MAX + 3];
    snprintf(etag, sizeof(etag), "\"%s\"", d.str);
    /* RFC 9110 13.1.2 (evaluated before Range): a client or cache that holds these bytes
     * gets 304, no body. */
    if (range_none_match_fails(http_req_header_all(req, "If-None-Match"), etag)) {
        http_reply_header(req, "Docker-Content-Digest", "%s", d.str);
        http_reply_header(req, "ETag", "%s", etag);
        http_reply_header(req, "Cache-Control", "max-age=31536000");
        http_reply(req, 304, NULL, NULL, 0);
        return;
    }
    if (oci_data_redirect(req, &d)) /* the bytes come from the data endpoint */
        return;
    bool is_head = strcmp(req->method, "HEAD") == 0;
    /* RFC 9110 14.2: Range is defined for GET only, so a HEAD answers for the whole blob
     * (distribution-spec: 200, its size in Content-Length); 13.1.5: a Range under an
     * If-Range that does not match is ignored. */
    const char *range = is_head ? NULL : http_req_header(req, "Range");
    if (!range_if_range_matches(http_req_header(req, "If-Range"), etag))
        range = NULL;
    uint64_t start = 0, end = 0;
    enum range_result rr = range ? range_parse_request(range, size, &start, &end) : RANGE_IGNORE;
    uint64_t len = rr == RANGE_OK ? end - start + 1 : size;
    if (rr != RANGE_OK)
        start = 0;
    /* A HEAD sends no body: the store checks the copy but opens no range, and a redirect
     * would only cost the client a round trip. */
    uint64_t open_len = is_head || rr == RANGE_UNSATISFIABLE ? 0 : len;
    unsigned accept = is_head ? 0 : BLOBSTORE_ACCEPT_REDIRECT;
    /* The store serves only a copy of the recorded size that is still what was verified;
     * a bad or lost one is fetched back from a peer now, or else answered as unknown. */
    struct blobstore_body body;
    int rc = reg->bs->ops->open(reg->bs, &d, size, start, open_len, accept, &body, &e);
    if (rc != 0 && (e.code == ERR_BLOB_CORRUPT || e.code == ERR_BLOB_UNKNOWN) &&
        repl_blob_recover(reg, req->repo, &d, &e) == 0)
        rc = reg->bs->ops->open(reg->bs, &d, size, start, open_len, accept, &body, &e);
    if (rc != 0) {
        if (e.code == ERR_BLOB_CORRUPT)
            err_set(&e, ERR_BLOB_UNKNOWN, NULL);
        http_reply_err(req, &e);
        return;
    }
    http_reply_header(req, "Docker-Content-Digest", "%s", d.str);
    if (body.kind == BLOBSTORE_BODY_REDIRECT && rr != RANGE_UNSATISFIABLE) {
        /* The client sends its Range (if any) to the URL with the rest of its request. */
        http_reply_header(req, "Location", "%s", body.url);
        http_reply(req, 307, NULL, NULL, 0);
        blobstore_body_close(&body);
        return;
    }
    http_reply_header(req, "Content-Type", "application/octet-stream");
    http_reply_header(req, "Accept-Ranges", "bytes");
    http_reply_header(req, "ETag", "%s", etag);
    http_reply_header(req, "Cache-Control", "max-age=31536000");
    if (rr == RANGE_UNSATISFIABLE) {
        blobstore_body_close(&body);
        http_reply_error(req, ERR_RANGE_INVALID, "range not satisfiable");
        http_reply_header(req, "Content-Range", "bytes */%llu", (unsigned long long)size);
        return;
    }
    if (rr == RANGE_OK) {
        http_reply_header(req, "Content-Range", "bytes %llu-%llu/%llu",
                          (unsigned long long)start, (unsigned long long)end,
                          (unsigned long long)size);
        reply_body(req, 206, &body, len);
        return;
    }
    reply_body(req, 200, &body, size);
}
