/* /_meridian/v1/roles: role bindings, (subject, role, repository pattern).
 *   POST   roles  {"subject","role","pattern"} -> 201 (200 when it already existed)
 *   DELETE roles?subject=S&role=R&pattern=P    -> 204, 404 when there is no such binding
 *   GET    roles[?subject=S]                   -> [{"subject","role","pattern","created"}]
 * Subjects are users, robots, or "anonymous" (consumer only: anonymous pull of the
 * pattern). Admin only (authz.c). */
#include <stdio.h>
#include <string.h>

#include "authz.h"
#include "mgmt_api.h"
#include "mgmt_users.h"
#include "registry_ctx.h"
#include "util.h"

/* Checks a binding; replies 400/404 and returns -1 when it is not acceptable. */
static int check_binding(struct http_req *req, const char *subject, const char *role,
                         const char *pattern, bool must_exist)
{
    enum auth_role r;
    if (subject == NULL || role == NULL || pattern == NULL) {
        mgmt_reply_error(req, ERR_BAD_REQUEST, "subject, role and pattern are required");
        return -1;
    }
    if (auth_role_parse(role, &r) != 0) {
        mgmt_reply_error(req, ERR_BAD_REQUEST, "role must be consumer, publisher or admin");
        return -1;
    }
    if (!auth_pattern_is_valid(pattern, strlen(pattern))) {
        mgmt_reply_error(req, ERR_BAD_REQUEST,
                         "pattern must be a repository name in which '*' "
                         "matches anything, such as golden/* or *");
        return -1;
    }
    if (strcmp(subject, AUTH_ANONYMOUS) == 0) {
        if (r != AUTH_ROLE_CONSUMER) {
            mgmt_reply_error(req, ERR_BAD_REQUEST, "anonymous clients can only be consumers");
            return -1;
        }
        return 0;
    }
    if (!must_exist)
        return 0;
    struct meta_auth_state st;
    struct err e = {0};
    if (req->reg->ms->ops->auth_load(req->reg->ms, &st, &e) != 0) {
        http_reply_mgmt_err(req, &e);
        return -1;
    }
    bool is_known = mgmt_users_find(&st, subject, NULL) != NULL;
    meta_auth_state_fini(&st);
    if (!is_known) {
        mgmt_reply_error(req, ERR_NOT_FOUND, "no user or robot named %s", subject);
        return -1;
    }
    return 0;
}

void mgmt_roles_assign(struct http_req *req, const struct mgmt_params *p)
{
    (void)p;
    struct registry *reg = req->reg;
    json_t *body = mgmt_body_object(req);
    if (body == NULL)
        return;
    const char *subject = json_string_value(json_object_get(body, "subject"));
    const char *role = json_string_value(json_object_get(body, "role"));
    const char *pattern = json_string_value(json_object_get(body, "pattern"));
    if (check_binding(req, subject, role, pattern, true) == 0) {
        struct meta_binding b = {
            .subject = (char *)subject, .role = (char *)role, .pattern = (char *)pattern};
        bool is_changed = false;
        struct err e = {0};
        if (reg->ms->ops->role_set(reg->ms, &b, true, &is_changed, &e) != 0) {
            http_reply_mgmt_err(req, &e);
        } else {
            authz_invalidate(reg->authz);
            authz_audit_as(req, "role.assign", "subject=%s role=%s pattern=%s", subject, role,
                           pattern);
            mgmt_reply_json(
                req, is_changed ? 201 : 200,
                json_pack("{s:s, s:s, s:s}", "subject", subject, "role", role, "pattern", pattern));
        }
    }
    json_decref(body);
}

void mgmt_roles_revoke(struct http_req *req, const struct mgmt_params *p)
{
    (void)p;
    struct registry *reg = req->reg;
    const char *subject = http_req_query(req, "subject");
    const char *role = http_req_query(req, "role");
    const char *pattern = http_req_query(req, "pattern");
    if (check_binding(req, subject, role, pattern, false) != 0)
        return;
    struct meta_binding b = {
        .subject = (char *)subject, .role = (char *)role, .pattern = (char *)pattern};
    bool is_changed = false;
    struct err e = {0};
    if (reg->ms->ops->role_set(reg->ms, &b, false, &is_changed, &e) != 0) {
        http_reply_mgmt_err(req, &e);
        return;
    }
    authz_invalidate(reg->authz);
    authz_audit_as(req, "role.revoke", "subject=%s role=%s pattern=%s", subject, role, pattern);
    http_reply(req, 204, NULL, NULL, 0);
}

void mgmt_roles_list(struct http_req *req, const struct mgmt_params *p)
{
    (void)p;
    struct registry *reg = req->reg;
    const char *subject = http_req_query(req, "subject");
    struct meta_auth_state st;
    struct err e = {0};
    if (reg->ms->ops->auth_load(reg->ms, &st, &e) != 0) {
        http_reply_mgmt_err(req, &e);
        return;
    }
    json_t *list = json_array();
    for (size_t i = 0; i < st.n_bindings; i++) {
        const struct meta_binding *b = &st.bindings[i];
        if (subject != NULL && strcmp(subject, b->subject) != 0)
            continue;
        char created[32];
        mgmt_users_time(b->created_ms, created);
        json_array_append_new(list, json_pack("{s:s, s:s, s:s, s:s}", "subject", b->subject, "role",
                                              b->role, "pattern", b->pattern, "created", created));
    }
    meta_auth_state_fini(&st);
    mgmt_reply_json(req, 200, list);
}
