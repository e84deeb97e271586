/* /v2/_catalog with n/last pagination (the Docker registry extension every client
 * knows; the OCI spec leaves it to implementations). Lists only the repositories the
 * requester may pull, so a page holds n of those. */
#include <stdlib.h>
#include <string.h>

#include "authz.h"
#include "oci.h"
#include "repo_locks.h"
#include "util.h"

#define CATALOG_BATCH 1000

/* The repositories after `last` that the requester may pull, at most n (n < 0: all);
 * out->has_more when another one follows. */
static int visible_repos(struct http_req *req, const char *last, long n,
                         struct meta_name_list *out, struct err *e)
{
    struct metastore *ms = req->reg->ms;
    memset(out, 0, sizeof(*out));
    if (n == 0)
        return 0;
    char *cursor = last != NULL ? xstrdup(last) : NULL;
    size_t cap = 0;
    bool is_more = true;
    while (is_more) {
        struct meta_name_list page = {0};
        if (ms->ops->repo_list(ms, cursor, CATALOG_BATCH, &page, e) != 0) {
            free(cursor);
            meta_name_list_fini(out);
            return -1;
        }
        for (size_t i = 0; i < page.n && !out->has_more; i++) {
            if (!authz_can(req, page.names[i], AUTH_PERM_PULL, false))
                continue;
            struct repo_lock lock;
            struct err le = {0};
            if (repo_lock_get(ms, page.names[i], NULL, NULL, &lock, &le) == 0 &&
                !lock.list_enabled)
                continue; /* locked with listEnabled false */
            if (n > 0 && out->n == (size_t)n) {
                out->has_more = true;
                break;
            }
            if (out->n == cap) {
                cap = cap ? cap * 2 : 64;
                out->names = xrealloc(out->names, cap * sizeof(*out->names));
            }
            out->names[out->n++] = xstrdup(page.names[i]);
        }
        is_more = !out->has_more && page.has_more && page.n > 0;
        free(cursor);
        cursor = is_more ? xstrdup(page.names[page.n - 1]) : NULL;
        meta_name_list_fini(&page);
    }
    free(cursor);
    return 0;
}

void oci_catalog(struct http_req *req)
{
    struct err e = {0};
    struct meta_name_list repos = {0};
    long n;
    const char *last;
    if (oci_pagination(req, &n, &last) != 0)
        return;
    if (visible_repos(req, last, n, &repos, &e) != 0) {
        http_reply_err(req, &e);
        return;
    }
    if (authz_reply_if_residency_unknown(req)) {
        meta_name_list_fini(&repos);
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
