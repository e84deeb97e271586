/* /_meridian/v1/users: people who log in with a password.
 *   POST   users                     {"name", "password"?} -> 201 (a generated password
 *                                    is returned once when none is given)
 *   GET    users                     -> [{"name","kind","created","roles":[...]}]
 *   GET    users/{user}
 *   DELETE users/{user}              -> 204 (its role bindings go too)
 *   POST   users/{user}/reset-secret {"password"?} -> 200 (generated one returned once)
 * Admin only (authz.c). Passwords are stored as Argon2id hashes and never logged. */
#include <stdio.h>
#include <string.h>

#include "authz.h"
#include "mgmt_api.h"
#include "mgmt_users.h"
#include "registry_ctx.h"
#include "secret.h"
#include "util.h"

#define MGMT_PASSWORD_MIN 8

void mgmt_users_time(int64_t ms, char out[32])
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

json_t *mgmt_users_identity_json(const struct meta_auth_state *st, const struct meta_identity *id)
{
    char created[32];
    mgmt_users_time(id->created_ms, created);
    json_t *roles = json_array();
    for (size_t i = 0; i < st->n_bindings; i++) {
        const struct meta_binding *b = &st->bindings[i];
        if (strcmp(b->subject, id->name) == 0)
            json_array_append_new(roles,
                                  json_pack("{s:s, s:s}", "role", b->role, "pattern", b->pattern));
    }
    json_t *o = json_pack("{s:s, s:s, s:s, s:o}", "name", id->name, "kind", id->kind, "created",
                          created, "roles", roles);
    if (id->description != NULL)
        json_object_set_new(o, "description", json_string(id->description));
    if (id->expires_s != 0) {
        char expires[32];
        mgmt_users_time(id->expires_s * 1000, expires);
        json_object_set_new(o, "expires", json_string(expires));
    }
    return o;
}

const struct meta_identity *mgmt_users_find(const struct meta_auth_state *st, const char *name,
                                            const char *kind)
{
    for (size_t i = 0; i < st->n_identities; i++) {
        const struct meta_identity *id = &st->identities[i];
        if (strcmp(id->name, name) == 0 && (kind == NULL || strcmp(id->kind, kind) == 0))
            return id;
    }
    return NULL;
}

/* The "password" member of body: a given one (checked), or a generated one. Replies and
 * returns -1 when it is unusable. */
static int take_password(struct http_req *req, json_t *body, char *out, size_t out_len,
                         bool *is_generated)
{
    json_t *pw = json_object_get(body, "password");
    *is_generated = pw == NULL || json_is_null(pw);
    if (*is_generated) {
        secret_random_token(18, out, out_len);
        return 0;
    }
    const char *s = json_string_value(pw);
    size_t n = s != NULL ? strlen(s) : 0;
    if (s == NULL || n < MGMT_PASSWORD_MIN || n > AUTH_SECRET_MAX || n + 1 > out_len) {
        mgmt_reply_error(req, ERR_BAD_REQUEST, "password must be a string of %d to %d characters",
                         MGMT_PASSWORD_MIN, AUTH_SECRET_MAX);
        return -1;
    }
    memcpy(out, s, n + 1);
    return 0;
}

/* Stores the password of body (or a generated one) for user name, a new one if is_create,
 * audits action and replies status with the user (and a generated password, shown once).
 * body stays the caller's. */
static void put_password(struct http_req *req, json_t *body, const char *name, bool is_create,
                         const char *action, int status)
{
    struct registry *reg = req->reg;
    char pw[AUTH_SECRET_MAX + 1];
    char hash[SECRET_HASH_MAX];
    bool is_generated;
    if (take_password(req, body, pw, sizeof(pw), &is_generated) != 0)
        return;
    if (authz_hash_secret(pw, hash, sizeof(hash)) != 0) {
        mgmt_reply_error(req, ERR_INTERNAL, "cannot hash the password");
        goto wipe;
    }
    struct meta_identity id = {.name = (char *)name, .kind = "user", .secret_hash = hash};
    struct err e = {0};
    if (reg->ms->ops->identity_put(reg->ms, &id, is_create, &e) != 0) {
        http_reply_mgmt_err(req, &e);
        goto wipe;
    }
    authz_invalidate(reg->authz);
    authz_audit_as(req, action, "name=%s", name);
    json_t *o = json_pack("{s:s, s:s}", "name", name, "kind", "user");
    if (is_generated)
        json_object_set_new(o, "password", json_string(pw));
    mgmt_reply_json(req, status, o);
wipe:
    secret_wipe(pw, sizeof(pw));
}

void mgmt_users_create(struct http_req *req, const struct mgmt_params *p)
{
    (void)p;
    json_t *body = mgmt_body_object(req);
    if (body == NULL)
        return;
    const char *name = json_string_value(json_object_get(body, "name"));
    if (name == NULL || !auth_name_is_valid(name, strlen(name))) {
        mgmt_reply_error(req, ERR_BAD_REQUEST,
                         "name must be 1-%d characters of a-z, 0-9, '.', "
                         "'_' and '-' (not \"peer\" or \"anonymous\")",
                         AUTH_NAME_MAX);
        goto out;
    }
    put_password(req, body, name, true, "user.create", 201);
out:
    json_decref(body);
}

void mgmt_users_list_kind(struct http_req *req, const char *kind)
{
    struct registry *reg = req->reg;
    struct meta_auth_state st;
    struct err e = {0};
    if (reg->ms->ops->auth_load(reg->ms, &st, &e) != 0) {
        http_reply_mgmt_err(req, &e);
        return;
    }
    json_t *list = json_array();
    for (size_t i = 0; i < st.n_identities; i++) {
        if (strcmp(st.identities[i].kind, kind) == 0)
            json_array_append_new(list, mgmt_users_identity_json(&st, &st.identities[i]));
    }
    meta_auth_state_fini(&st);
    mgmt_reply_json(req, 200, list);
}

void mgmt_users_get_kind(struct http_req *req, const char *name, const char *kind,
                         const char *missing)
{
    struct registry *reg = req->reg;
    struct meta_auth_state st;
    struct err e = {0};
    if (reg->ms->ops->auth_load(reg->ms, &st, &e) != 0) {
        http_reply_mgmt_err(req, &e);
        return;
    }
    const struct meta_identity *id = mgmt_users_find(&st, name, kind);
    if (id == NULL)
        mgmt_reply_error(req, ERR_NOT_FOUND, missing);
    else
        mgmt_reply_json(req, 200, mgmt_users_identity_json(&st, id));
    meta_auth_state_fini(&st);
}

void mgmt_users_delete_kind(struct http_req *req, const char *name, const char *kind,
                            const char *action)
{
    struct registry *reg = req->reg;
    struct err e = {0};
    if (reg->ms->ops->identity_delete(reg->ms, name, kind, &e) != 0) {
        http_reply_mgmt_err(req, &e);
        return;
    }
    authz_invalidate(reg->authz);
    authz_audit_as(req, action, "name=%s", name);
    http_reply(req, 204, NULL, NULL, 0);
}

void mgmt_users_list(struct http_req *req, const struct mgmt_params *p)
{
    (void)p;
    mgmt_users_list_kind(req, "user");
}

void mgmt_users_get(struct http_req *req, const struct mgmt_params *p)
{
    mgmt_users_get_kind(req, mgmt_param(p, "user"), "user", "no such user");
}

void mgmt_users_delete(struct http_req *req, const struct mgmt_params *p)
{
    mgmt_users_delete_kind(req, mgmt_param(p, "user"), "user", "user.delete");
}

void mgmt_users_reset_secret(struct http_req *req, const struct mgmt_params *p)
{
    json_t *body = mgmt_body_object(req);
    if (body == NULL)
        return;
    put_password(req, body, mgmt_param(p, "user"), false, "user.reset-secret", 200);
    json_decref(body);
}
