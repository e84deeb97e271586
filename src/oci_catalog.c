/* /v2/_catalog with n/last pagination (the Docker registry extension every client
 * knows; the OCI spec leaves it to implementations). */
#include "registry.h"

void oci_catalog(struct http_req *req)
{
    struct registry *reg = req->reg;
    struct err e = {0};
    struct meta_name_list repos = {0};
    long n;
    const char *last;
    if (oci_pagination(req, &n, &last) != 0)
        return;
    if (reg->ms->ops->repo_list(reg->ms, last, n, &repos, &e) != 0) {
        http_reply_err(req, &e);
        return;
    }
    struct buf b;
    buf_init(&b, 64 * 1024 * 1024);
    buf_appends(&b, "{\"repositories\":[");
    for (size_t i = 0; i < repos.n; i++) {
        if (i)
            buf_append(&b, ",", 1);
        buf_append_json_string(&b, repos.names[i]);
    }
    buf_appends(&b, "]}\n");
    if (repos.has_more && repos.n > 0)
        oci_link_next(req, "/v2/_catalog", n, repos.names[repos.n - 1]);
    http_reply(req, 200, "application/json", b.data, b.len);
    buf_fini(&b);
    meta_name_list_fini(&repos);
}
