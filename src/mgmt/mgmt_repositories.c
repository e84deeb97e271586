/* /_meridian/v1/repositories?repository=R[&reference=TAG|DIGEST]: the locks of a
 * repository, a tag or a manifest, with the cloud CLI's attributes (store/repo_locks.h).
 *   GET   -> {"repository","reference"?,"changeableAttributes":{writeEnabled,...}}
 *   PATCH {writeEnabled?, deleteEnabled?, readEnabled?, listEnabled?} -> the same, 200
 * The repository and the tag or manifest must exist here; bad input changes nothing. */
#include <stdlib.h>
#include <string.h>

#include "authz.h"
#include "mgmt_api.h"
#include "name.h"
#include "registry_ctx.h"
#include "residency.h"
#include "repo_locks.h"

/* The scope a request names: *tag or *d set (neither: the repository). 0, or -1 with e. */
static int lock_scope(struct http_req *req, const char **repo, const char **tag,
                      struct digest *d, bool *is_digest, struct err *e)
{
    struct metastore *ms = req->reg->ms;
    *repo = http_req_query(req, "repository");
    const char *ref = http_req_query(req, "reference");
    *tag = NULL;
    *is_digest = false;
    if (*repo == NULL || !name_is_valid_repo(*repo, strlen(*repo)))
        return err_set(e, ERR_BAD_REQUEST, "a valid repository is required");
    struct meta_name_list one = {0};
    struct err te = {0};
    if (ms->ops->tag_list(ms, *repo, NULL, 1, &one, &te) != 0)
        return te.code == ERR_NAME_UNKNOWN
                   ? err_set(e, ERR_NOT_FOUND, "no repository %s", *repo)
                   : err_set(e, te.code, "%s", te.msg);
    meta_name_list_fini(&one);
    if (ref == NULL)
        return 0;
    size_t len = strlen(ref);
    if (name_reference_is_digest(ref, len)) {
        if (digest_parse(ref, len, d, e) != 0)
            return err_set(e, ERR_BAD_REQUEST, "reference %.80s is not a valid digest", ref);
        *is_digest = true;
    } else if (!name_is_valid_tag(ref, len)) {
        return err_set(e, ERR_BAD_REQUEST, "reference \"%.80s\" is not a valid tag or digest",
                       ref);
    } else {
        *tag = ref;
    }
    struct digest found;
    char *media_type = NULL;
    int64_t size, recorded_ms;
    bool is_visible;
    struct err le = {0};
    if (ms->ops->manifest_lookup(ms, *repo, ref, &found, &media_type, &size, &is_visible,
                                 &recorded_ms, &le) != 0)
        return le.code == ERR_MANIFEST_UNKNOWN || le.code == ERR_NAME_UNKNOWN
                   ? err_set(e, ERR_NOT_FOUND, "no %s %s in %s", *is_digest ? "manifest" : "tag",
                             ref, *repo)
                   : err_set(e, le.code, "%s", le.msg);
    free(media_type);
    return 0;
}

static void reply_lock(struct http_req *req, int status, const char *repo,
                       const struct repo_lock *l)
{
    json_t *out = json_pack("{s:s, s:o}", "repository", repo, "changeableAttributes",
                            repo_lock_to_json(l));
    const char *ref = http_req_query(req, "reference");
    if (ref != NULL)
        json_object_set_new(out, "reference", json_string(ref));
    mgmt_reply_json(req, status, out);
}

void mgmt_repositories_show(struct http_req *req, const struct mgmt_params *p)
{
    (void)p;
    struct err e = {0};
    const char *repo, *tag;
    struct digest d;
    bool is_digest;
    struct repo_lock l;
    if (lock_scope(req, &repo, &tag, &d, &is_digest, &e) != 0 ||
        repo_lock_get(req->reg->ms, repo, tag, is_digest ? &d : NULL, &l, &e) != 0) {
        http_reply_mgmt_err(req, &e);
        return;
    }
    reply_lock(req, 200, repo, &l);
}

void mgmt_repositories_update(struct http_req *req, const struct mgmt_params *p)
{
    (void)p;
    struct err e = {0};
    const char *repo, *tag;
    struct digest d;
    bool is_digest;
    struct repo_lock l;
    json_t *body = NULL;
    /* Residency first: a repository this region may not hold is unknown here, and the
     * client should learn why, not that it does not exist. */
    const char *named = http_req_query(req, "repository");
    if ((named != NULL && residency_check(req->reg->ms, named, req->reg->cfg->region, &e) != 0) ||
        lock_scope(req, &repo, &tag, &d, &is_digest, &e) != 0)
        goto fail;
    if ((body = mgmt_body_object(req)) == NULL)
        return;
    if (json_object_size(body) == 0) {
        err_set(&e, ERR_BAD_REQUEST,
                "nothing to change: writeEnabled, deleteEnabled, readEnabled or listEnabled");
        goto fail;
    }
    if (repo_lock_get(req->reg->ms, repo, tag, is_digest ? &d : NULL, &l, &e) != 0 ||
        repo_lock_update(&l, body, &e) != 0 ||
        repo_lock_put(req->reg->ms, repo, tag, is_digest ? &d : NULL, &l, &e) != 0)
        goto fail;
    authz_audit_as(req, "repository.update", "%s%s%s write=%d delete=%d read=%d list=%d", repo,
                   tag ? ":" : (is_digest ? "@" : ""), tag ? tag : (is_digest ? d.str : ""),
                   l.write_enabled, l.delete_enabled, l.read_enabled, l.list_enabled);
    json_decref(body);
    reply_lock(req, 200, repo, &l);
    return;
fail:
    json_decref(body);
    http_reply_mgmt_err(req, &e);
}
