/* /_meridian/v1/scrub: GET the scrub's state and the quarantined blob copies; POST asks
 * for a pass now (202; it runs on the scrub thread). Admin only (authz.c). */
#include <stdatomic.h>

#include "mgmt_api.h"
#include "registry_ctx.h"
#include "scrub.h"

/* The scrub, once the node is ready: server_main sets reg->scrub before it publishes
 * is_ready (an atomic store), so reading is_ready first makes the pointer safe to read. */
static struct scrub *scrub_of(struct http_req *req)
{
    return atomic_load(&req->reg->is_ready) ? req->reg->scrub : NULL;
}

void mgmt_scrub_show(struct http_req *req, const struct mgmt_params *p)
{
    (void)p;
    struct scrub *s = scrub_of(req);
    if (s == NULL) {
        mgmt_reply_error(req, ERR_UNAVAILABLE, "the scrub is not running");
        return;
    }
    mgmt_reply_json(req, 200, scrub_status_json(s));
}

void mgmt_scrub_start(struct http_req *req, const struct mgmt_params *p)
{
    (void)p;
    struct scrub *s = scrub_of(req);
    if (s == NULL) {
        mgmt_reply_error(req, ERR_UNAVAILABLE, "the scrub is not running");
        return;
    }
    scrub_request(s);
    mgmt_reply_json(req, 202, scrub_status_json(s));
}
