/* /v2/<name>/blobs/<digest>: GET (with Range, sent with sendfile), HEAD, DELETE.
 * A blob is served only when the repository links it, and its bytes come straight
 * from the blobstore's file descriptor, which the store hands out only for a copy of
 * the recorded size that was not changed since it was verified. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "oci.h"
#include "range.h"
#include "repl.h"
#include "util.h"

static void blob_delete(struct http_req *req, const struct digest *d)
{
    struct registry *reg = req->reg;
    struct err e = {0};
    bool is_orphan = false;
    if (!reg->cfg->is_delete_enabled) {
        http_reply_error(req, ERR_UNSUPPORTED, "deletes are disabled on this registry");
        return;
    }
    AZ(pthread_rwlock_wrlock(&reg->gc_lock));
    int rc = reg->ms->ops->blob_unlink(reg->ms, req->repo, d, &is_orphan, &e);
    if (rc == 0 && is_orphan)
        reg->bs->ops->remove(reg->bs, d);
    AZ(pthread_rwlock_unlock(&reg->gc_lock));
    if (rc != 0) {
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
    /* XXX: the worker thread waits for the fetch, as the manifest PUT of a split push
     * does; a fetch handed to the replication workers with the request parked would not. */
    if (repl_fetch_blob_within(reg->repl, req->repo, d, PULL_WAIT_MS, &fe) != 0)
        return -1;
    log_info("oci", "fetched blob %s of %s from a peer for a pull", d->str, req->repo);
    return 0;
}

void oci_blob(struct http_req *req)
{
    struct registry *reg = req->reg;
    struct err e = {0};
    struct digest d;
    uint64_t size;
    int fd;
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
    uint64_t recorded_size;
    if (reg->ms->ops->blob_get(reg->ms, req->repo, &d, &recorded_size, &e) != 0 &&
        (e.code != ERR_BLOB_UNKNOWN || pull_through(req, &d) != 0 ||
         reg->ms->ops->blob_get(reg->ms, req->repo, &d, &recorded_size, &e) != 0)) {
        http_reply_err(req, &e);
        return;
    }
    if (oci_data_redirect(req, &d)) /* the bytes come from the data endpoint */
        return;
    /* The store serves only a copy of the recorded size that is still what was verified;
     * a bad or lost one is fetched back from a peer now, or else answered as unknown. */
    int rc = reg->bs->ops->open(reg->bs, &d, recorded_size, &fd, &size, &e);
    if (rc != 0 && (e.code == ERR_BLOB_CORRUPT || e.code == ERR_BLOB_UNKNOWN) &&
        repl_blob_recover(reg, req->repo, &d, &e) == 0)
        rc = reg->bs->ops->open(reg->bs, &d, recorded_size, &fd, &size, &e);
    if (rc != 0) {
        if (e.code == ERR_BLOB_CORRUPT)
            err_set(&e, ERR_BLOB_UNKNOWN, NULL);
        http_reply_err(req, &e);
        return;
    }
    http_reply_header(req, "Docker-Content-Digest", "%s", d.str);
    http_reply_header(req, "Content-Type", "application/octet-stream");
    http_reply_header(req, "Accept-Ranges", "bytes");
    char etag[DIGEST_STR_MAX + 3];
    snprintf(etag, sizeof(etag), "\"%s\"", d.str);
    http_reply_header(req, "ETag", "%s", etag);
    http_reply_header(req, "Cache-Control", "max-age=31536000");
    const char *range = http_req_header(req, "Range");
    /* RFC 9110 13.1.5: a Range under an If-Range that does not match is ignored. */
    if (!range_if_range_matches(http_req_header(req, "If-Range"), etag))
        range = NULL;
    uint64_t start = 0, end = 0;
    enum range_result rr = range ? range_parse_request(range, size, &start, &end) : RANGE_IGNORE;
    if (rr == RANGE_UNSATISFIABLE) {
        close(fd);
        http_reply_error(req, ERR_RANGE_INVALID, "range not satisfiable");
        http_reply_header(req, "Content-Range", "bytes */%llu", (unsigned long long)size);
        return;
    }
    if (rr == RANGE_OK) {
        http_reply_header(req, "Content-Range", "bytes %llu-%llu/%llu",
                          (unsigned long long)start, (unsigned long long)end,
                          (unsigned long long)size);
        http_reply_fd(req, 206, fd, start, end - start + 1);
        return;
    }
    http_reply_fd(req, 200, fd, 0, size);
}
