/* /_meridian/v1/audit: the audit log, newest first.
 *   GET audit[?limit=N][&before=ID][&actor=NAME][&action=PREFIX]
 *     -> [{"id","time","actor","action","target","status","remote","detail","count",
 *          "lastTime"}]
 * count: how many refusals the entry stands for (refusals are aggregated per source,
 * actor, action and minute, audit_agg.h; 1 for every other entry), the last at lastTime.
 * Page with before = the last id of the previous page. Admin only (authz.c). */
#include <stdio.h>
#include <string.h>

#include "authz.h"
#include "mgmt_api.h"
#include "mgmt_users.h"
#include "registry_ctx.h"
#include "util.h"

void mgmt_audit_list(struct http_req *req, const struct mgmt_params *p)
{
    (void)p;
    struct registry *reg = req->reg;
    struct meta_audit_query q = {.limit = 100,
                                 .actor = http_req_query(req, "actor"),
                                 .action = http_req_query(req, "action")};
    const char *limit = http_req_query(req, "limit");
    const char *before = http_req_query(req, "before");
    uint64_t v;
    if (limit != NULL) {
        if (util_parse_u64(limit, strlen(limit), &v) != 0 || v == 0 || v > 10000) {
            mgmt_reply_error(req, ERR_BAD_REQUEST, "limit must be a number from 1 to 10000");
            return;
        }
        q.limit = (size_t)v;
    }
    if (before != NULL) {
        if (util_parse_u64(before, strlen(before), &v) != 0 || v > INT64_MAX) {
            mgmt_reply_error(req, ERR_BAD_REQUEST, "before must be an entry id");
            return;
        }
        q.before_id = (int64_t)v;
    }
    authz_audit_flush(reg->authz); /* aggregated counts are exact when read */
    struct meta_audit *list = NULL;
    size_t n = 0;
    struct err e = {0};
    if (reg->ms->ops->audit_list(reg->ms, &q, &list, &n, &e) != 0) {
        http_reply_mgmt_err(req, &e);
        return;
    }
    json_t *out = json_array();
    for (size_t i = 0; i < n; i++) {
        const struct meta_audit *a = &list[i];
        char when[32];
        char last[32];
        mgmt_users_time(a->time_ms, when);
        mgmt_users_time(a->last_ms, last);
        json_t *o = json_pack("{s:I, s:s, s:s, s:s, s:i, s:I, s:s}", "id", (json_int_t)a->id,
                              "time", when, "actor", a->actor, "action", a->action, "status",
                              a->status, "count", (json_int_t)a->count, "lastTime", last);
        json_object_set_new(o, "target", a->target ? json_string(a->target) : json_null());
        json_object_set_new(o, "remote", a->remote ? json_string(a->remote) : json_null());
        json_object_set_new(o, "detail", a->detail ? json_string(a->detail) : json_null());
        json_array_append_new(out, o);
    }
    meta_audit_free(list, n);
    mgmt_reply_json(req, 200, out);
}
