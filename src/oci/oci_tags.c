/* /v2/<name>/tags/list with n/last pagination (distribution-spec "Listing Tags"). */
#include <stdio.h>
#include <string.h>

#include "oci.h"

void oci_tags(struct http_req *req)
{
    struct registry *reg = req->reg;
    struct err e = {0};
    struct meta_name_list tags = {0};
    long n;
    const char *last;
    if (!oci_check_repo(req) || oci_pagination(req, &n, &last) != 0)
        return;
    if (reg->ms->ops->tag_list(reg->ms, req->repo, last, n, &tags, &e) != 0) {
        http_reply_err(req, &e);
        return;
    }
    struct buf b;
    buf_init(&b, 64 * 1024 * 1024);
    buf_appends(&b, "{\"name\":");
    buf_append_json_string(&b, req->repo);
    buf_appends(&b, ",\"tags\":[");
    for (size_t i = 0; i < tags.n; i++) {
        if (i)
            buf_append(&b, ",", 1);
        buf_append_json_string(&b, tags.names[i]);
    }
    buf_appends(&b, "]}\n");
    if (tags.has_more && tags.n > 0) {
        char base[600];
        snprintf(base, sizeof(base), "/v2/%s/tags/list", req->repo);
        oci_link_next(req, base, n, tags.names[tags.n - 1]);
    }
    http_reply(req, 200, "application/json", b.data, b.len);
    buf_fini(&b);
    meta_name_list_fini(&tags);
}
