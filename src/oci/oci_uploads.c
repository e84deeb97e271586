/* /v2/<name>/blobs/uploads/: starting, streaming, checking, finishing and cancelling
 * blob uploads (distribution-spec "Pushing blobs": monolithic POST+PUT, the single
 * POST with ?digest=, chunked PATCH with Content-Range, cross-repository mount).
 *
 * Bytes are written to the session's file and hashed as they arrive (the body sink),
 * so memory does not grow with blob size. A request that fails cuts the file back
 * to where it started, so a chunked upload resumes from what was acknowledged; a failed
 * single-request upload (nothing to resume) deletes its session. A PATCH is acknowledged
 * only once its size is recorded: after a crash the session resumes there. */
#include <stdlib.h>
#include <string.h>

#include "authz.h"
#include "gc_fence.h"
#include "log.h"
#include "metrics.h"
#include "name.h"
#include "range.h"
#include "oci.h"
#include "quota.h"
#include "residency.h"
#include "upload_sessions.h"
#include "util.h"

#define UPLOAD_REQ_MAGIC 0x55504c44u

struct upload_req {
    unsigned magic;
    struct upload_state *st;
    uint64_t start_offset;     /* session size when this request began */
    bool has_range;            /* Content-Range given: the chunk's exact extent */
    uint64_t range_len;
    bool has_digest;           /* finishing request (PUT, or POST ?digest=) */
    struct digest digest;
    bool is_single_request;    /* the whole upload in this request: deleted if it fails */
    bool is_done;              /* committed or deleted: nothing to roll back */
};

static struct upload_req *upload_req_of(struct http_req *req)
{
    struct upload_req *u = req->sink_state;
    if (u)
        ASSERT(u->magic == UPLOAD_REQ_MAGIC);
    return u;
}

static void set_session_headers(struct http_req *req, const char *id, uint64_t offset)
{
    http_reply_header(req, "Location", "/v2/%s/blobs/uploads/%s", req->repo, id);
    http_reply_header(req, "Docker-Upload-UUID", "%s", id);
    /* distribution-spec: Range is inclusive; an empty session reports 0-0. */
    http_reply_header(req, "Range", "0-%llu",
                      (unsigned long long)(offset ? offset - 1 : 0));
}

static int on_body(struct http_req *req, const char *data, size_t len)
{
    struct upload_req *u = upload_req_of(req);
    if (u->has_range && u->st->offset - u->start_offset + len > u->range_len)
        return err_set(&req->err, ERR_SIZE_INVALID, "chunk is longer than its Content-Range");
    return upload_sessions_append(req->reg->uploads, u->st, data, len, &req->err);
}

/* Ends a failed request's use of its session at once: its bytes are cut away and the
 * session is free for the client's retry even before this reply is on the wire.
 * A failed single-request upload (a monolithic POST, or a PUT bringing the whole body
 * to an empty session) has nothing to resume: its session and file go at once, so
 * that failures do not pile up against the session caps until they expire. */
static void end_failed(struct http_req *req, struct upload_req *u)
{
    struct err e = {0};
    if (u->st == NULL)
        return;
    upload_sessions_ending(req->reg->uploads, u->st);
    if (u->is_single_request) {
        upload_sessions_delete(req->reg->uploads, u->st);
    } else {
        upload_sessions_truncate(req->reg->uploads, u->st, u->start_offset, &e);
        upload_sessions_release(req->reg->uploads, u->st);
    }
    u->st = NULL;
    u->is_done = true;
}

static void on_cleanup(struct http_req *req)
{
    struct upload_req *u = upload_req_of(req);
    if (u == NULL)
        return;
    if (u->st && !u->is_done) {
        /* A failed body (an error, a full disk) or a client gone before the reply. */
        if (req->status == 0 || req->status >= 300)
            end_failed(req, u);
        else
            upload_sessions_release(req->reg->uploads, u->st);
    }
    u->magic = 0;
    free(u);
    req->sink_state = NULL;
}

/* Ends a request refused on its headers: nothing was written, so the session stays as
 * it was (even a single-request one: bad input changes nothing). */
static void end_refused(struct http_req *req, struct upload_req *u)
{
    u->is_single_request = false;
    end_failed(req, u);
}

/* Takes the session and prepares to stream the body into it. */
static int begin_stream(struct http_req *req, struct upload_state *st)
{
    struct upload_req *u = xcalloc(1, sizeof(*u));
    u->magic = UPLOAD_REQ_MAGIC;
    u->st = st;
    u->start_offset = st->offset;
    req->sink_state = u;
    req->sink = on_body;
    req->sink_cleanup = on_cleanup;
    return 0;
}

/* Reads an optional Content-Range; replies (400 or 416) and returns -1 if it is bad
 * or does not start where the session ends. */
static int check_content_range(struct http_req *req, struct upload_req *u)
{
    const char *cr = http_req_header(req, "Content-Range");
    if (cr == NULL)
        return 0;
    uint64_t start, end;
    if (range_parse_content_range(cr, &start, &end) != 0) {
        http_reply_error(req, ERR_BLOB_UPLOAD_INVALID, "malformed Content-Range");
        end_refused(req, u);
        return -1;
    }
    /* distribution-spec: a chunk out of order gets 416 with the session's state. */
    if (start != u->st->offset) {
        http_reply_error(req, ERR_RANGE_INVALID, "chunk starts at %llu, upload is at %llu",
                         (unsigned long long)start, (unsigned long long)u->st->offset);
        set_session_headers(req, u->st->id, u->st->offset);
        end_refused(req, u);
        return -1;
    }
    u->has_range = true;
    u->range_len = end - start + 1;
    const char *cl = http_req_header(req, "Content-Length");
    uint64_t n;
    if (cl && util_parse_u64(cl, strlen(cl), &n) == 0 && n != u->range_len) {
        http_reply_error(req, ERR_SIZE_INVALID, "Content-Length does not match Content-Range");
        end_refused(req, u);
        return -1;
    }
    return 0;
}

static int parse_digest_param(struct http_req *req, struct digest *d)
{
    const char *v = http_req_query(req, "digest");
    struct err e = {0};
    if (v == NULL) {
        http_reply_error(req, ERR_DIGEST_INVALID, "digest query parameter is required");
        return -1;
    }
    if (digest_parse(v, strlen(v), d, &e) != 0) {
        http_reply_err(req, &e);
        return -1;
    }
    return 0;
}

/* POST ?mount=<digest>&from=<repo>: link a blob another repository holds.
 * Returns true if it replied 201. */
static bool try_mount(struct http_req *req)
{
    struct registry *reg = req->reg;
    const char *mount = http_req_query(req, "mount");
    const char *from = http_req_query(req, "from");
    struct digest d;
    struct err e = {0};
    uint64_t size;
    if (mount == NULL || from == NULL || digest_parse(mount, strlen(mount), &d, &e) != 0)
        return false;
    if (!name_is_valid_repo(from, strlen(from)))
        return false;
    /* Mounting reads the source: without pull on it, fall back to an upload. */
    if (!authz_can(req, from, AUTH_PERM_PULL, true))
        return false;
    /* GC fence, shared: the collector cannot delete the source's blob between the look-up
     * and the new link (which restarts its grace). */
    if (gc_fence_enter_shared(reg, &e) != 0) {
        http_reply_err(req, &e);
        return true;
    }
    int rc = reg->ms->ops->blob_get(reg->ms, from, &d, &size, &e);
    if (rc == 0 && quota_check(reg->ms, req->repo, &d, size, &e) != 0)
        rc = 1;
    else if (rc == 0)
        rc = reg->ms->ops->blob_link(reg->ms, req->repo, &d, size, &e) != 0 ? 1 : 0;
    gc_fence_leave(reg, false);
    if (rc < 0)
        return false;
    if (rc > 0) {
        http_reply_err(req, &e);
        return true;
    }
    http_reply_header(req, "Location", "/v2/%s/blobs/%s", req->repo, d.str);
    http_reply_header(req, "Docker-Content-Digest", "%s", d.str);
    http_reply(req, 201, NULL, NULL, 0);
    return true;
}

/* An upload session is its starter's: another identity resuming it (the id leaked from a
 * log or a proxy) is told it does not exist. One started with no identity recorded
 * (access control off, an anonymous or a peer's) is anyone's who holds its id. false
 * with e set. */
static bool is_callers_session(struct http_req *req, struct err *e)
{
    /* With access control off no session has an owner: no store read per request. */
    if (!authz_is_enabled(req->reg->authz))
        return true;
    const char *caller;
    int64_t max_owned;
    authz_upload_owner(req, &caller, &max_owned);
    char *owner = NULL;
    if (req->reg->ms->ops->upload_owner(req->reg->ms, req->ref, &owner, e) != 0)
        return false;
    bool is_ok = owner == NULL || (caller != NULL && strcmp(owner, caller) == 0);
    free(owner);
    if (!is_ok)
        err_set(e, ERR_BLOB_UPLOAD_UNKNOWN, "blob upload unknown to registry");
    return is_ok;
}

/* The status of a session another request holds (a PATCH whose client stalled mid-body
 * keeps it until its body deadline; on the scale-out tier, a request through another
 * node): its acknowledged size, where the session resumes if that request fails and all
 * a client may count on. distribution-spec: the status of an active upload MUST be 204
 * with its Range, which is how a client that lost track resumes. true when it replied;
 * false when the store has no acknowledged size (a peer's fetch). */
static bool reply_status_of_held(struct http_req *req)
{
    int64_t acked = -1;
    struct err e = {0};
    if (req->reg->ms->ops->upload_get(req->reg->ms, req->ref, req->repo, &acked, &e) != 0 ||
        acked < 0)
        return false;
    set_session_headers(req, req->ref, (uint64_t)acked);
    http_reply(req, 204, NULL, NULL, 0);
    return true;
}

static void start_upload(struct http_req *req)
{
    struct registry *reg = req->reg;
    struct err e = {0};
    char id[33];
    /* Residency (residency.h): no byte of a repository this region may not hold. */
    if (residency_check(reg->ms, req->repo, reg->cfg->region, &e) != 0) {
        authz_audit_as(req, "residency.denied", "%s", err_message(&e));
        http_reply_err(req, &e);
        return;
    }
    if (http_req_has_query(req, "mount") && try_mount(req))
        return;
    struct digest d;
    bool is_monolithic = http_req_has_query(req, "digest");
    if (is_monolithic && parse_digest_param(req, &d) != 0)
        return;
    char addr[64];
    char source[64];
    http_req_remote_addr(req, addr, sizeof(addr));
    util_addr_group(addr, source, sizeof(source));
    /* The per-address cap holds for every client, also without auth, where the
     * per-identity cap has no identity to count; 429 past either (HTTP 429). */
    struct meta_upload_caps caps = {.now_s = util_now_s(),
                                    .max_from_source = reg->cfg->upload_sessions_per_ip};
    authz_upload_owner(req, &caps.owner, &caps.max_owned);
    if (upload_sessions_create(reg->uploads, req->repo, reg->cfg->upload_ttl_s, source,
                               is_monolithic, &caps, id, &e) != 0) {
        http_reply_err(req, &e);
        return;
    }
    if (!is_monolithic) {
        set_session_headers(req, id, 0);
        http_reply(req, 202, NULL, NULL, 0);
        return;
    }
    struct upload_state *st;
    if (upload_sessions_acquire(reg->uploads, id, req->repo, UPLOAD_SESSIONS_WAIT_MS, &st,
                                &e) != 0) {
        http_reply_err(req, &e);
        return;
    }
    begin_stream(req, st);
    struct upload_req *u = upload_req_of(req);
    u->has_digest = true;
    u->digest = d;
    u->is_single_request = true;
}

int oci_upload_headers(struct http_req *req)
{
    struct registry *reg = req->reg;
    struct err e = {0};
    if (!oci_check_repo(req))
        return -1;
    if (req->route == ROUTE_UPLOAD_START) {
        start_upload(req);
        return 0;
    }
    struct digest d;
    bool is_put = strcmp(req->method, "PUT") == 0;
    if (is_put && parse_digest_param(req, &d) != 0)
        return -1;
    struct upload_state *st;
    bool is_get = strcmp(req->method, "GET") == 0 || strcmp(req->method, "HEAD") == 0;
    if (!is_callers_session(req, &e)) {
        http_reply_err(req, &e);
        return -1;
    }
    if (upload_sessions_acquire(reg->uploads, req->ref, req->repo,
                                is_get ? 0 : UPLOAD_SESSIONS_WAIT_MS, &st, &e) != 0) {
        /* Held by another request: the only BLOB_UPLOAD_INVALID acquire answers. */
        if (is_get && e.code == ERR_BLOB_UPLOAD_INVALID && reply_status_of_held(req))
            return 0;
        http_reply_err(req, &e);
        return -1;
    }
    if (is_get) {
        set_session_headers(req, st->id, st->offset);
        upload_sessions_release(reg->uploads, st);
        http_reply(req, 204, NULL, NULL, 0);
        return 0;
    }
    if (strcmp(req->method, "DELETE") == 0) {
        upload_sessions_delete(reg->uploads, st);
        http_reply(req, 204, NULL, NULL, 0);
        return 0;
    }
    begin_stream(req, st);
    struct upload_req *u = upload_req_of(req);
    if (is_put) {
        u->has_digest = true;
        u->digest = d;
    }
    if (check_content_range(req, u) != 0)
        return -1;
    /* POST then PUT with the body: the upload is this one request (monolithic). */
    u->is_single_request = is_put && u->start_offset == 0;
    return 0;
}

/* Verifies and commits the session as a blob, links it into the repository. */
static void finish_upload(struct http_req *req, struct upload_req *u)
{
    struct registry *reg = req->reg;
    struct err e = {0};
    uint64_t size = u->st->offset;
    /* A policy made while the session was open refuses it too. */
    if (residency_check(reg->ms, req->repo, reg->cfg->region, &e) != 0 ||
        quota_check(reg->ms, req->repo, &u->digest, size, &e) != 0) {
        /* Over quota: the pushed bytes go, none is stored (the client cannot resume). */
        http_reply_err(req, &e);
        upload_sessions_delete(reg->uploads, u->st);
        u->st = NULL;
        u->is_done = true;
        return;
    }
    int rc = gc_fence_enter_shared(reg, &e);
    if (rc == 0) {
        rc = upload_sessions_commit(reg->uploads, u->st, &u->digest, &e);
        if (rc == 0)
            rc = reg->ms->ops->blob_link(reg->ms, req->repo, &u->digest, size, &e);
        gc_fence_leave(reg, false);
    }
    if (rc != 0) {
        http_reply_err(req, &e);
        end_failed(req, u);
        return;
    }
    metrics_count_blob_committed(size);
    u->is_done = true;
    upload_sessions_delete(reg->uploads, u->st);
    u->st = NULL;
    http_reply_header(req, "Location", "/v2/%s/blobs/%s", req->repo, u->digest.str);
    http_reply_header(req, "Docker-Content-Digest", "%s", u->digest.str);
    http_reply(req, 201, NULL, NULL, 0);
}

void oci_upload(struct http_req *req)
{
    struct upload_req *u = upload_req_of(req);
    if (u == NULL || u->st == NULL) {
        http_reply_error(req, ERR_INTERNAL, NULL);
        return;
    }
    if (u->has_range && u->st->offset - u->start_offset != u->range_len) {
        http_reply_error(req, ERR_SIZE_INVALID, "chunk is shorter than its Content-Range");
        end_failed(req, u);
        return;
    }
    if (u->has_digest) {
        finish_upload(req, u);
        return;
    }
    struct err e = {0};
    if (upload_sessions_flush(req->reg->uploads, u->st, &e) != 0 ||
        upload_sessions_acknowledge(req->reg->uploads, u->st, &e) != 0) {
        http_reply_err(req, &e);
        end_failed(req, u);
        return;
    }
    set_session_headers(req, u->st->id, u->st->offset);
    http_reply(req, 202, NULL, NULL, 0);
    /* Release the session now, not when the request is freed: that happens after the
     * reply is on the wire, and a client may already send its next chunk or the final
     * PUT on another connection. */
    u->is_done = true;
    upload_sessions_release(req->reg->uploads, u->st);
    u->st = NULL;
}
