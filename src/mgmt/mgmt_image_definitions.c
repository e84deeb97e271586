/* /_meridian/v1/image-definitions[?repository=R]: register a repository as an image
 * definition (its tags become versions with publishing profiles), show, list, delete.
 * Registry-wide: the records replicate to every region (image_catalog.h). */
#include <stdlib.h>
#include <string.h>

#include "authz.h"
#include "residency.h"
#include "image_catalog.h"
#include "mgmt_api.h"
#include "name.h"
#include "registry_ctx.h"

static const char *repo_param(struct http_req *req)
{
    const char *repo = http_req_query(req, "repository");
    if (repo == NULL || !name_is_valid_repo(repo, strlen(repo))) {
        mgmt_reply_error(req, ERR_BAD_REQUEST, "a valid repository is required");
        return NULL;
    }
    return repo;
}

/* GET image-definitions?repository=R (one) or image-definitions (those the caller may
 * pull). */
void mgmt_image_definitions_get(struct http_req *req, const struct mgmt_params *p)
{
    (void)p;
    struct metastore *ms = req->reg->ms;
    struct err e = {0};
    if (http_req_query(req, "repository") != NULL) {
        const char *repo = repo_param(req);
        if (repo == NULL)
            return;
        json_t *d = image_catalog_definition(ms, repo, &e);
        if (d == NULL) {
            http_reply_mgmt_err(req, &e);
            return;
        }
        mgmt_reply_json(req, 200, d);
        return;
    }
    json_t *all = image_catalog_definitions(ms, &e);
    if (all == NULL) {
        http_reply_mgmt_err(req, &e);
        return;
    }
    json_t *out = json_array();
    size_t i;
    json_t *d;
    json_array_foreach(all, i, d)
    {
        const char *repo = json_string_value(json_object_get(d, "repository"));
        if (repo && authz_can(req, repo, AUTH_PERM_PULL, false))
            json_array_append(out, d);
    }
    json_decref(all);
    mgmt_reply_json(req, 200, out);
}

/* A definition's versions are MAJOR.MINOR.PATCH: a repository whose tags are not cannot
 * become one (its existing tags would break the rule). Signature tags
 * (sha256-<hex>.sig/.att/.sbom) are referrers, allowed. */
static int check_tags(struct metastore *ms, const char *repo, struct err *e)
{
    struct meta_name_list tags = {0};
    struct err te = {0};
    if (ms->ops->tag_list(ms, repo, NULL, -1, &tags, &te) != 0)
        return te.code == ERR_NAME_UNKNOWN ? 0 : err_set(e, te.code, "%s", te.msg);
    int rc = 0;
    for (size_t i = 0; i < tags.n && rc == 0; i++) {
        if (iv_version_parse(tags.names[i], NULL) != 0 && !iv_referrer_tag(tags.names[i], NULL))
            rc = err_set(e, ERR_CONFLICT,
                         "%s has tag \"%s\", which is not a version MAJOR.MINOR.PATCH", repo,
                         tags.names[i]);
    }
    meta_name_list_fini(&tags);
    return rc;
}

/* POST image-definitions?repository=R {description, os, arch, defaultTargetRegions, ...} */
void mgmt_image_definitions_create(struct http_req *req, const struct mgmt_params *p)
{
    (void)p;
    struct registry *reg = req->reg;
    struct err e = {0};
    const char *repo = repo_param(req);
    if (repo == NULL)
        return;
    json_t *body = mgmt_body_object(req);
    if (body == NULL)
        return;
    json_t *def = NULL;
    struct iv_world w;
    /* Residency: records of a repository are written where it may be held, never here if
     * it may not (this region would keep, and then remove, the only copy of the record). */
    if (residency_check(reg->ms, repo, reg->cfg->region, &e) != 0 ||
        image_catalog_world(reg->ms, reg->cfg->region, &w, &e) != 0)
        goto fail;
    def = iv_definition_new(repo, body, &w, &e);
    image_catalog_world_fini(&w);
    if (def == NULL)
        goto fail;
    if (image_catalog_is_definition(reg->ms, repo)) {
        err_set(&e, ERR_CONFLICT, "%s is already an image definition", repo);
        goto fail;
    }
    if (residency_check_targets(reg->ms, repo, def, &e) != 0 || check_tags(reg->ms, repo, &e) != 0 ||
        image_catalog_create_definition(reg->ms, def, &e) != 0)
        goto fail;
    authz_audit_as(req, "image-definition.create", "%s", repo);
    json_decref(body);
    mgmt_reply_json(req, 201, def);
    return;
fail:
    json_decref(def);
    json_decref(body);
    http_reply_mgmt_err(req, &e);
}

/* PATCH image-definitions?repository=R {fields of create; "retention": null clears it}:
 * the definition's defaults and policy from now on (versions keep their profiles). */
void mgmt_image_definitions_update(struct http_req *req, const struct mgmt_params *p)
{
    (void)p;
    struct registry *reg = req->reg;
    struct err e = {0};
    const char *repo = repo_param(req);
    if (repo == NULL)
        return;
    json_t *body = mgmt_body_object(req);
    if (body == NULL)
        return;
    json_t *merged = NULL, *def = NULL;
    json_t *have = image_catalog_definition(reg->ms, repo, &e);
    if (have == NULL)
        goto fail;
    merged = json_deep_copy(have);
    json_object_del(merged, "repository");
    json_object_del(merged, "createdAt");
    json_object_update(merged, body);
    if (json_is_null(json_object_get(merged, "retention")))
        json_object_del(merged, "retention");
    struct iv_world w;
    if (image_catalog_world(reg->ms, reg->cfg->region, &w, &e) != 0)
        goto fail;
    def = iv_definition_new(repo, merged, &w, &e);
    image_catalog_world_fini(&w);
    if (def == NULL)
        goto fail;
    json_object_set(def, "createdAt", json_object_get(have, "createdAt"));
    if (residency_check_targets(reg->ms, repo, def, &e) != 0 ||
        image_catalog_put_definition(reg->ms, def, &e) != 0)
        goto fail;
    char *change = json_dumps(body, JSON_COMPACT);
    authz_audit_as(req, "image-definition.update", "%s %.120s", repo, change ? change : "");
    free(change);
    json_decref(have);
    json_decref(merged);
    json_decref(body);
    mgmt_reply_json(req, 200, def);
    return;
fail:
    json_decref(have);
    json_decref(merged);
    json_decref(def);
    json_decref(body);
    http_reply_mgmt_err(req, &e);
}

/* DELETE image-definitions?repository=R: only a definition without versions. */
void mgmt_image_definitions_delete(struct http_req *req, const struct mgmt_params *p)
{
    (void)p;
    struct metastore *ms = req->reg->ms;
    struct err e = {0};
    const char *repo = repo_param(req);
    if (repo == NULL)
        return;
    json_t *d = image_catalog_definition(ms, repo, &e);
    if (d == NULL) {
        http_reply_mgmt_err(req, &e);
        return;
    }
    json_decref(d);
    json_t *versions = image_catalog_versions(ms, repo, &e);
    if (versions == NULL) {
        http_reply_mgmt_err(req, &e);
        return;
    }
    size_t n = json_array_size(versions);
    json_decref(versions);
    if (n > 0) {
        mgmt_reply_error(req, ERR_CONFLICT, "%s still has %zu version%s", repo, n,
                         n == 1 ? "" : "s");
        return;
    }
    if (image_catalog_delete_definition(ms, repo, &e) != 0) {
        http_reply_mgmt_err(req, &e);
        return;
    }
    authz_audit_as(req, "image-definition.delete", "%s", repo);
    http_reply(req, 204, NULL, NULL, 0);
}
