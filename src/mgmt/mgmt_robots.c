/* /_meridian/v1/robots: accounts for machines (CI pipelines), with a generated secret
 * and an optional expiry.
 *   POST   robots          {"name", "expiresIn"?: "30d", "description"?} -> 201 with
 *                          "secret", shown this once
 *   GET    robots          -> [{"name","kind","created","expires"?,"roles":[...]}]
 *   GET    robots/{name}
 *   DELETE robots/{name}   -> 204; tokens it holds stop working at once
 * Admin only (authz.c). */
#include <stdio.h>
#include <string.h>

#include "authz.h"
#include "mgmt_api.h"
#include "mgmt_users.h"
#include "registry_ctx.h"
#include "secret.h"
#include "util.h"

void mgmt_robots_create(struct http_req *req, const struct mgmt_params *p)
{
    (void)p;
    struct registry *reg = req->reg;
    json_t *body = mgmt_body_object(req);
    if (body == NULL)
        return;
    const char *name = json_string_value(json_object_get(body, "name"));
    const char *expires_in = json_string_value(json_object_get(body, "expiresIn"));
    json_t *desc = json_object_get(body, "description");
    int64_t expires_s = 0;
    char secret[64];
    char hash[SECRET_HASH_MAX];
    if (name == NULL || !auth_name_is_valid(name, strlen(name))) {
        mgmt_reply_error(req, ERR_BAD_REQUEST,
                         "name must be 1-%d characters of a-z, 0-9, '.', "
                         "'_' and '-'",
                         AUTH_NAME_MAX);
        goto out;
    }
    if (desc != NULL && (!json_is_string(desc) || strlen(json_string_value(desc)) > 200)) {
        mgmt_reply_error(req, ERR_BAD_REQUEST,
                         "description must be a string of at most 200 "
                         "characters");
        goto out;
    }
    if (expires_in != NULL) {
        int64_t d;
        if (config_parse_duration(expires_in, &d) != 0 || d <= 0) {
            mgmt_reply_error(req, ERR_BAD_REQUEST,
                             "expiresIn must be a duration such as 90m, "
                             "24h or 30d");
            goto out;
        }
        expires_s = util_now_s() + d;
    }
    secret_random_token(32, secret, sizeof(secret));
    if (authz_hash_secret(secret, hash, sizeof(hash)) != 0) {
        mgmt_reply_error(req, ERR_INTERNAL, "cannot hash the secret");
        goto wipe;
    }
    struct meta_identity id = {.name = (char *)name,
                               .kind = "robot",
                               .secret_hash = hash,
                               .description = (char *)json_string_value(desc),
                               .expires_s = expires_s};
    struct err e = {0};
    if (reg->ms->ops->identity_put(reg->ms, &id, true, &e) != 0) {
        http_reply_mgmt_err(req, &e);
        goto wipe;
    }
    authz_invalidate(reg->authz);
    authz_audit_as(req, "robot.create", "name=%s expires_s=%lld", name, (long long)expires_s);
    json_t *o = json_pack("{s:s, s:s, s:s}", "name", name, "kind", "robot", "secret", secret);
    if (expires_s != 0) {
        char when[32];
        mgmt_users_time(expires_s * 1000, when);
        json_object_set_new(o, "expires", json_string(when));
    }
    mgmt_reply_json(req, 201, o);
wipe:
    secret_wipe(secret, sizeof(secret));
out:
    json_decref(body);
}

void mgmt_robots_list(struct http_req *req, const struct mgmt_params *p)
{
    (void)p;
    mgmt_users_list_kind(req, "robot");
}

void mgmt_robots_get(struct http_req *req, const struct mgmt_params *p)
{
    mgmt_users_get_kind(req, mgmt_param(p, "name"), "robot", "no such robot");
}

void mgmt_robots_delete(struct http_req *req, const struct mgmt_params *p)
{
    mgmt_users_delete_kind(req, mgmt_param(p, "name"), "robot", "robot.delete");
}
