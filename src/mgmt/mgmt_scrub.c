/* /_meridian/v1/scrub: GET the scrub's state and the quarantined blob copies; POST asks
 * for a pass now (202; it runs on the scrub thread). Admin only (authz.c). */
#include "mgmt_api.h"
#include "registry_ctx.h"
#include "scrub.h"

void mgmt_scrub_show(struct http_req *req, const struct mgmt_params *p)
{
    (void)p;
    if (req->reg->scrub == NULL) {
        mgmt_reply_error(req, ERR_UNAVAILABLE, "the scrub is not running");
        return;
    }
    mgmt_reply_json(req, 200, scrub_status_json(req->reg->scrub));
}

void mgmt_scrub_start(struct http_req *req, const struct mgmt_params *p)
{
    (void)p;
    if (req->reg->scrub == NULL) {
        mgmt_reply_error(req, ERR_UNAVAILABLE, "the scrub is not running");
        return;
    }
    scrub_request(req->reg->scrub);
    mgmt_reply_json(req, 202, scrub_status_json(req->reg->scrub));
}
