/* /v2/<name>/tags/list with n/last pagination (distribution-spec "Listing Tags"). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "digest.h"
#include "oci.h"
#include "repo_locks.h"

static bool is_listed_in(const struct meta_name_list *l, const char *s)
{
    for (size_t i = 0; i < l->n; i++) {
        if (strcmp(l->names[i], s) == 0)
            return true;
    }
    return false;
}

static bool is_hidden(struct registry *reg, const char *repo, const char *tag,
                      const struct meta_name_list *tags, const struct meta_name_list *digests)
{
    if (is_listed_in(tags, tag))
        return true;
    if (digests->n == 0)
        return false;
    struct digest d;
    char *media_type = NULL;
    int64_t size, recorded_ms;
    bool is_visible;
    struct err e = {0};
    bool has_d = reg->ms->ops->manifest_lookup(reg->ms, repo, tag, &d, &media_type, &size,
                                               &is_visible, &recorded_ms, &e) == 0;
    free(media_type);
    return has_d && is_listed_in(digests, d.str);
}

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
        /* A repository a residency policy keeps out of this region: the manifest pull's
         * 403 naming the policy, not a 404 the client would take for a missing one. */
        if (e.code == ERR_NAME_UNKNOWN)
            oci_residency_explains(req, &e);
        http_reply_err(req, &e);
        return;
    }
    struct buf b;
    buf_init(&b, 64 * 1024 * 1024);
    buf_appends(&b, "{\"name\":");
    buf_append_json_string(&b, req->repo);
    buf_appends(&b, ",\"tags\":[");
    /* Tags locked with listEnabled false, or naming a manifest so locked, are left out. */
    struct meta_name_list hidden_tags = {0}, hidden_digests = {0};
    if (repo_lock_unlisted(reg->ms, req->repo, &hidden_tags, &hidden_digests, &e) != 0) {
        buf_fini(&b);
        meta_name_list_fini(&tags);
        http_reply_err(req, &e);
        return;
    }
    size_t shown = 0;
    for (size_t i = 0; i < tags.n; i++) {
        if (is_hidden(reg, req->repo, tags.names[i], &hidden_tags, &hidden_digests))
            continue;
        if (shown++)
            buf_append(&b, ",", 1);
        buf_append_json_string(&b, tags.names[i]);
    }
    meta_name_list_fini(&hidden_tags);
    meta_name_list_fini(&hidden_digests);
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
