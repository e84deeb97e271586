/* /v2/<name>/referrers/<digest>[?artifactType=][&last=]: the manifests whose subject is
 * the digest, as an OCI image index (distribution-spec "Listing Referrers"). Never 404:
 * an unknown subject has an empty list (a repository a residency policy keeps out of this
 * region: 403 DENIED, as its manifest pull). A list too large for one manifest comes in
 * pages, each with a Link rel="next" to the rest. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "manifest.h"
#include "oci.h"
#include "util.h"

/* A page's body stays within what a manifest may be: clients read an index no larger
 * (oras-go refuses a bigger one), and "cannot be returned in a single manifest" is when
 * the spec asks for a Link. A single larger descriptor still gets its own page. */
#define PAGE_BYTES MANIFEST_MAX_BYTES

static void append_descriptor(struct buf *b, const struct meta_referrer *r)
{
    buf_appends(b, "{\"mediaType\":");
    buf_append_json_string(b, r->media_type);
    buf_appends(b, ",\"digest\":");
    buf_append_json_string(b, r->digest.str);
    buf_printf(b, ",\"size\":%lld", (long long)r->size);
    if (r->artifact_type) {
        buf_appends(b, ",\"artifactType\":");
        buf_append_json_string(b, r->artifact_type);
    }
    if (r->annotations_json) {
        buf_appends(b, ",\"annotations\":");
        buf_appends(b, r->annotations_json);
    }
    buf_append(b, "}", 1);
}

/* Appends s percent-encoded for a query value: only unreserved characters and '/' as
 * they are (RFC 3986 3.4), so a '+' of a media type stays a '+'. */
static void append_query_value(struct buf *b, const char *s)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            strchr("-._~/", c) != NULL)
            buf_append(b, s, 1);
        else
            buf_printf(b, "%%%02X", c);
    }
}

/* true with *e set to the 403 when this region holds nothing of req->repo (it has no row
 * of it) because a residency policy keeps it out (oci_residency_explains). */
static bool is_kept_out(struct http_req *req, struct err *e)
{
    struct registry *reg = req->reg;
    struct meta_name_list none = {0};
    struct err le = {0};
    /* n = 0 asks whether the repository exists only: ERR_NAME_UNKNOWN without its row. */
    int rc = reg->ms->ops->tag_list(reg->ms, req->repo, NULL, 0, &none, &le);
    meta_name_list_fini(&none);
    return rc != 0 && le.code == ERR_NAME_UNKNOWN && oci_residency_explains(req, e);
}

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
    if (reg->ms->ops->referrers(reg->ms, req->repo, &d, filter, &list, &e) != 0) {
        free(filter);
        http_reply_err(req, &e);
        return;
    }
    /* Never 404, but a repository a residency policy keeps out of this region (it holds
     * nothing of it: no repository row) answers the manifest pull's 403 naming the policy,
     * not an empty list the client would take for "no referrers". */
    if (list.n == 0 && is_kept_out(req, &e)) {
        free(filter);
        http_reply_err(req, &e);
        return;
    }
    /* The list is ordered by digest: a page starts after the last digest of the one
     * before (the cursor its Link carries). */
    const char *last = http_req_query(req, "last");
    size_t i = 0;
    while (last != NULL && i < list.n && strcmp(list.items[i].digest.str, last) <= 0)
        i++;
    struct buf b, one;
    buf_init(&b, 64 * 1024 * 1024);
    buf_init(&one, 64 * 1024 * 1024);
    buf_appends(&b, "{\"schemaVersion\":2,\"mediaType\":\"" MT_OCI_INDEX "\",\"manifests\":[");
    size_t shown = 0;
    for (; i < list.n; i++) {
        buf_reset(&one);
        append_descriptor(&one, &list.items[i]);
        if (shown > 0 && b.len + 1 + one.len + 3 > PAGE_BYTES)
            break;
        if (shown++)
            buf_append(&b, ",", 1);
        buf_append(&b, one.data, one.len);
    }
    buf_appends(&b, "]}\n");
    if (i < list.n) {
        struct buf link;
        buf_init(&link, 64 * 1024);
        buf_printf(&link, "</v2/%s/referrers/%s?last=%s", req->repo, d.str,
                   list.items[i - 1].digest.str);
        if (filter) {
            buf_appends(&link, "&artifactType=");
            append_query_value(&link, filter);
        }
        buf_appends(&link, ">; rel=\"next\"");
        http_reply_header(req, "Link", "%s", link.data);
        buf_fini(&link);
    }
    if (filter)
        http_reply_header(req, "OCI-Filters-Applied", "artifactType");
    http_reply(req, 200, MT_OCI_INDEX, b.data, b.len);
    buf_fini(&one);
    buf_fini(&b);
    free(filter);
    meta_referrer_list_fini(&list);
}
