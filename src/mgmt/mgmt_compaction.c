/* /_meridian/v1/compaction: GET the event-log compactor's state (settings, rows in the
 * log, tombstones, log horizon, what each peer acknowledged); POST compaction/run runs a
 * whole pass now and answers what it dropped. Admin only (authz.c). */
#include <stdatomic.h>

#include "compact.h"
#include "mgmt_api.h"
#include "registry_ctx.h"

static struct compact *compact_of(struct http_req *req)
{
    return atomic_load(&req->reg->is_ready) ? req->reg->compact : NULL;
}

void mgmt_compaction_show(struct http_req *req, const struct mgmt_params *p)
{
    (void)p;
    struct compact *c = compact_of(req);
    if (c == NULL) {
        mgmt_reply_error(req, ERR_UNAVAILABLE, "the compactor is not running");
        return;
    }
    mgmt_reply_json(req, 200, compact_status_json(c));
}

void mgmt_compaction_run(struct http_req *req, const struct mgmt_params *p)
{
    (void)p;
    struct compact *c = compact_of(req);
    if (c == NULL) {
        mgmt_reply_error(req, ERR_UNAVAILABLE, "the compactor is not running");
        return;
    }
    struct err e = {0};
    json_t *out = compact_run(c, &e);
    if (out == NULL) {
        mgmt_reply_error(req, e.code, "%s", err_message(&e));
        return;
    }
    mgmt_reply_json(req, 200, out);
}
