/* /v2/ (API version check), the operational endpoints, and the small helpers every
 * /v2/ handler shares: repository name check and tag/catalog pagination. */
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "metrics.h"
#include "name.h"
#include "oci.h"
#include "readiness.h"
#include "residency.h"
#include "util.h"

/* distribution-spec end-1: 200 means the registry implements the spec. */
void oci_base(struct http_req *req)
{
    http_reply(req, 200, "application/json", "{}", 2);
}

/* /readyz's JSON body: {"status": ..., "checks": {"metastore": {...}, "blobstore":
 * {...}}, "failed": [...]}; a store that failed has "ok": false and an "error". */
static void reply_ready(struct http_req *req, int status, const char *state,
                        const struct readiness_result *r)
{
    json_t *body = json_pack("{s:s}", "status", state);
    if (r != NULL) {
        json_t *checks = json_object(), *failed = json_array();
        const struct {
            const char *name;
            bool is_ok;
            const char *error;
        } parts[] = {{"metastore", r->is_metastore_ok, r->metastore_error},
                     {"blobstore", r->is_blobstore_ok, r->blobstore_error}};
        for (size_t i = 0; i < 2; i++) {
            json_t *c = json_pack("{s:b}", "ok", parts[i].is_ok);
            if (!parts[i].is_ok) {
                json_object_set_new(c, "error", json_string(parts[i].error));
                json_array_append_new(failed, json_string(parts[i].name));
            }
            json_object_set_new(checks, parts[i].name, c);
        }
        json_object_set_new(body, "checks", checks);
        json_object_set_new(body, "failed", failed);
        json_object_set_new(body, "checked_ms", json_integer(r->checked_ms));
    }
    char *text = json_dumps(body, JSON_COMPACT);
    http_reply(req, status, "application/json", text, strlen(text));
    free(text);
    json_decref(body);
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
        if (req->route == ROUTE_READYZ)
            reply_ready(req, 503, "removed", NULL);
        else
            http_reply(req, 200, "text/plain", removed, sizeof(removed) - 1);
        return;
    }
    /* /healthz is liveness only: the process answers. It never waits on a store. */
    if (req->route == ROUTE_HEALTHZ) {
        http_reply(req, 200, "text/plain", "ok\n", 3);
        return;
    }
    if (!atomic_load(&req->reg->is_ready)) {
        reply_ready(req, 503, "starting", NULL);
        return;
    }
    /* Readiness: both stores answered within the last second (readiness.c bounds the
     * probes' rate and a caller's wait). */
    struct readiness_result r;
    bool is_ready = readiness_check(req->reg->readiness, &r);
    reply_ready(req, is_ready ? 200 : 503, is_ready ? "ready" : "unavailable", &r);
}

bool oci_check_repo(struct http_req *req)
{
    if (req->repo == NULL || !name_is_valid_repo(req->repo, strlen(req->repo))) {
        http_reply_error(req, ERR_NAME_INVALID, "invalid repository name");
        return false;
    }
    return true;
}

bool oci_residency_explains(struct http_req *req, struct err *e)
{
    struct err re = {0};
    /* A store that cannot read the policies leaves the miss a miss: it names nothing. */
    if (residency_check(req->reg->ms, req->repo, req->reg->cfg->region, &re) == 0 ||
        re.code != ERR_DENIED)
        return false;
    *e = re;
    return true;
}

int oci_pagination(struct http_req *req, long *n, const char **last)
{
    const long page_max = (long)req->reg->cfg->list_page_max;
    const char *nv = http_req_query(req, "n");
    /* Without n, the whole list, a page of page_max at a time with a Link to the rest: a
     * reply is built in memory, and a list past it would otherwise be cut short. */
    *n = page_max;
    *last = http_req_query(req, "last");
    /* Compared with names as text: bytes that are not UTF-8 are no name's neighbour (and
     * PostgreSQL refuses them as text). */
    if (*last != NULL && !util_is_utf8(*last, strlen(*last))) {
        http_reply_error(req, ERR_PAGINATION_INVALID, "last must be UTF-8");
        return -1;
    }
    if (nv != NULL) {
        size_t len = strlen(nv);
        if (len == 0 || strspn(nv, "0123456789") != len) {
            http_reply_error(req, ERR_PAGINATION_INVALID, "n must be a non-negative integer");
            return -1;
        }
        /* distribution-spec: fewer than n results are allowed when a Link names the rest,
         * so a larger n (however many digits) is served page_max at a time. */
        uint64_t v;
        *n = util_parse_u64(nv, len, &v) != 0 || v > (uint64_t)page_max ? page_max : (long)v;
    }
    return 0;
}

void oci_link_next(struct http_req *req, const char *base, long n, const char *last)
{
    /* distribution-spec: the Link header (RFC 5988) names the next page. */
    http_reply_header(req, "Link", "<%s?n=%ld&last=%s>; rel=\"next\"", base, n, last);
}
