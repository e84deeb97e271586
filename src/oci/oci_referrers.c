/* /v2/<name>/referrers/<digest>[?artifactType=]: the manifests whose subject is the
 * digest, as an OCI image index (distribution-spec "Listing Referrers"). Never 404:
 * an unknown subject has an empty list. */
#include <stdlib.h>
#include <string.h>

#include "manifest.h"
#include "oci.h"
#include "util.h"

void oci_referrers(struct http_req *req)
{
    struct registry *reg = req->reg;
    struct err e = {0};
    struct digest d;
    struct meta_referrer_list list = {0};
    if (!oci_check_repo(req))
        return;
    if (digest_parse(req->ref, strlen(req->ref), &d, &e) != 0) {
        http_reply_err(req, &e);
        return;
    }
    const char *q = http_req_query(req, "artifactType");
    /* The query is decoded as a form, where '+' means a space: a literal '+' of a media
     * type suffix ("application/spdx+json", as curl sends it) comes back as ' ', which no
     * media type holds (RFC 6838 4.2), so it is turned back. */
    char *filter = q && q[0] != '\0' ? xstrdup(q) : NULL;
    for (char *p = filter; p && *p; p++) {
        if (*p == ' ')
            *p = '+';
    }
    int rc = reg->ms->ops->referrers(reg->ms, req->repo, &d, filter, &list, &e);
    free(filter);
    if (rc != 0) {
        http_reply_err(req, &e);
        return;
    }
    bool is_filtered = q && q[0] != '\0';
    struct buf b;
    buf_init(&b, 64 * 1024 * 1024);
    buf_appends(&b, "{\"schemaVersion\":2,\"mediaType\":\"" MT_OCI_INDEX "\",\"manifests\":[");
    for (size_t i = 0; i < list.n; i++) {
        const struct meta_referrer *r = &list.items[i];
        if (i)
            buf_append(&b, ",", 1);
        buf_appends(&b, "{\"mediaType\":");
        buf_append_json_string(&b, r->media_type);
        buf_appends(&b, ",\"digest\":");
        buf_append_json_string(&b, r->digest.str);
        buf_printf(&b, ",\"size\":%lld", (long long)r->size);
        if (r->artifact_type) {
            buf_appends(&b, ",\"artifactType\":");
            buf_append_json_string(&b, r->artifact_type);
        }
        if (r->annotations_json) {
            buf_appends(&b, ",\"annotations\":");
            buf_appends(&b, r->annotations_json);
        }
        buf_append(&b, "}", 1);
    }
    buf_appends(&b, "]}\n");
    if (is_filtered)
        http_reply_header(req, "OCI-Filters-Applied", "artifactType");
    http_reply(req, 200, MT_OCI_INDEX, b.data, b.len);
    buf_fini(&b);
    meta_referrer_list_fini(&list);
}
