/* Conditional GETs and long polls of management resources by ETag: a reply carries
 * ETag (a hash of its JSON); a GET with If-None-Match of that ETag gets 304, and with
 * ?wait=S it is held until the resource reads differently or S seconds (at most 60)
 * have passed. The web console's live progress bars use this on image-versions.
 * A held request holds no worker thread: it is parked with the replication manager,
 * which resumes it when the event log grows or after MGMT_POLL_RECHECK_MS (byte
 * progress of a running copy changes without a new event), and the handler runs again. */
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compact.h"
#include "mgmt_api.h"
#include "registry_ctx.h"
#include "repl.h"
#include "util.h"

#define MGMT_POLL_WAIT_MAX_S 60
#define MGMT_POLL_RECHECK_MS 500

struct poll_wait {
    unsigned magic;
    int64_t deadline_ms;
    int64_t seen_head;
};
#define POLL_WAIT_MAGIC 0x504f4c4cu

static void poll_wait_cleanup(struct http_req *req)
{
    struct poll_wait *w = req->handler_state;
    if (w)
        ASSERT(w->magic == POLL_WAIT_MAGIC);
    free(w);
    req->handler_state = NULL;
}

/* http_park_f: the replication manager owns req until it resumes it. */
static void on_parked(struct http_req *req, void *arg)
{
    struct poll_wait *w = req->handler_state;
    (void)arg;
    ASSERT(w->magic == POLL_WAIT_MAGIC);
    int64_t recheck_ms = util_now_ms() + MGMT_POLL_RECHECK_MS;
    /* A status also changes when a region acknowledges a tag (compact.h): recheck then. */
    struct compact *c = atomic_load(&req->reg->is_ready) ? req->reg->compact : NULL;
    repl_wait_register(req->reg->repl, req, w->seen_head, compact_acks_changed(c),
                       recheck_ms < w->deadline_ms ? recheck_ms : w->deadline_ms);
}

/* FNV-1a, 64 bits: a change detector, not a security boundary. */
static uint64_t hash64(const char *s, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

void mgmt_reply_json_polled(struct http_req *req, json_t *v)
{
    struct registry *reg = req->reg;
    char *s = v ? json_dumps(v, JSON_COMPACT | JSON_ENSURE_ASCII) : NULL;
    json_decref(v);
    if (s == NULL) {
        mgmt_reply_error(req, ERR_INTERNAL, "cannot encode reply");
        return;
    }
    size_t len = strlen(s);
    char etag[24];
    snprintf(etag, sizeof(etag), "\"%016" PRIx64 "\"", hash64(s, len));
    const char *inm = http_req_header(req, "If-None-Match");
    bool is_unchanged = inm != NULL && strcmp(inm, etag) == 0;
    const char *wait = http_req_query(req, "wait");
    uint64_t wait_s = 0;
    if (wait != NULL && util_parse_u64(wait, strlen(wait), &wait_s) != 0) {
        free(s);
        mgmt_reply_error(req, ERR_BAD_REQUEST, "wait must be a number of seconds");
        return;
    }
    if (wait_s > MGMT_POLL_WAIT_MAX_S)
        wait_s = MGMT_POLL_WAIT_MAX_S;
    if (is_unchanged && wait_s > 0 && reg->repl != NULL) {
        struct poll_wait *w = req->handler_state;
        if (w == NULL) {
            w = xcalloc(1, sizeof(*w));
            w->magic = POLL_WAIT_MAGIC;
            w->deadline_ms = util_now_ms() + (int64_t)wait_s * 1000;
            req->handler_state = w;
            req->handler_cleanup = poll_wait_cleanup;
        }
        ASSERT(w->magic == POLL_WAIT_MAGIC);
        struct err e = {0};
        int64_t head = 0;
        if (util_now_ms() < w->deadline_ms && atomic_load(&reg->is_ready) &&
            reg->ms->ops->log_head(reg->ms, &head, &e) == 0) {
            free(s);
            w->seen_head = head;
            http_req_suspend(req, on_parked, NULL);
            return;
        }
    }
    http_reply_header(req, "ETag", "%s", etag);
    http_reply_header(req, "Cache-Control", "no-cache");
    if (is_unchanged)
        http_reply(req, 304, NULL, NULL, 0);
    else
        http_reply(req, 200, "application/json", s, len);
    free(s);
}
