/* /v2/ (API version check), the operational endpoints, and the small helpers every
 * /v2/ handler shares: repository name check and tag/catalog pagination. */
#include <stdlib.h>
#include <string.h>

#include "metrics.h"
#include "name.h"
#include "oci.h"
#include "util.h"

/* distribution-spec end-1: 200 means the registry implements the spec. */
void oci_base(struct http_req *req)
{
    http_reply(req, 200, "application/json", "{}", 2);
}

void oci_health(struct http_req *req)
{
    if (req->route == ROUTE_METRICS) {
        struct buf b;
        buf_init(&b, 1024 * 1024);
        metrics_render(&b);
        http_reply(req, 200, "text/plain; version=0.0.4", b.data, b.len);
        buf_fini(&b);
        return;
    }
    /* A region removed from its registry serves nothing on /v2/: not ready, ever. The
     * process itself is sound, so /healthz (liveness) stays 200 but says why. */
    if (atomic_load(&req->reg->is_removed)) {
        static const char removed[] = "removed: this region was removed from its registry\n";
        http_reply(req, req->route == ROUTE_READYZ ? 503 : 200, "text/plain", removed,
                   sizeof(removed) - 1);
        return;
    }
    if (req->route == ROUTE_READYZ && !atomic_load(&req->reg->is_ready)) {
        http_reply(req, 503, "text/plain", "starting\n", 9);
        return;
    }
    http_reply(req, 200, "text/plain", "ok\n", 3);
}

bool oci_check_repo(struct http_req *req)
{
    if (req->repo == NULL || !name_is_valid_repo(req->repo, strlen(req->repo))) {
        http_reply_error(req, ERR_NAME_INVALID, "invalid repository name");
        return false;
    }
    return true;
}

int oci_pagination(struct http_req *req, long *n, const char **last)
{
    const char *nv = http_req_query(req, "n");
    *n = -1;
    *last = http_req_query(req, "last");
    if (nv != NULL) {
        uint64_t v;
        if (util_parse_u64(nv, strlen(nv), &v) != 0 || v > 100000) {
            http_reply_error(req, ERR_PAGINATION_INVALID, "n must be a number from 0 to 100000");
            return -1;
        }
        *n = (long)v;
    }
    return 0;
}

void oci_link_next(struct http_req *req, const char *base, long n, const char *last)
{
    /* distribution-spec: the Link header (RFC 5988) names the next page. */
    http_reply_header(req, "Link", "<%s?n=%ld&last=%s>; rel=\"next\"", base, n, last);
}
