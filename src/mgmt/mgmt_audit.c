/* /_meridian/v1/audit: the audit log, newest first.
 *   GET audit[?limit=N][&before=ID][&actor=NAME][&action=PREFIX][&region=R]
 *            [&since=T][&until=T][&repository=REPO]
 *     -> [{"id","time","actor","action","target","status","remote","detail","count",
 *          "lastTime","region"}]
 * region: where the change was decided (this region, or a peer's for a change applied from
 * it). T: an ISO 8601 UTC time (2026-12-03T14:00:00Z), epoch milliseconds, or a duration
 * back from now (90s, 15m, 24h, 2d); since and until are inclusive. repository: entries
 * whose target is REPO or names it before '@' or ':' (manifests, blobs, versions,
 * residency removals).
 * count: how many refusals the entry stands for (refusals are aggregated per source,
 * actor, action and minute, audit_agg.h; 1 for every other entry), the last at lastTime.
 * Page with before = the last id of the previous page. Admin only (authz.c). */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "authz.h"
#include "config.h"
#include "mgmt_api.h"
#include "mgmt_users.h"
#include "name.h"
#include "registry_ctx.h"
#include "util.h"

/* "2026-12-03T14:00:00Z" (seconds and a fraction optional), epoch ms, or a duration back
 * from now; -1 if none of these. */
static int64_t parse_time_ms(const char *s)
{
    uint64_t ms;
    int64_t back_s;
    if (util_parse_u64(s, strlen(s), &ms) == 0 && ms <= INT64_MAX && strlen(s) > 6)
        return (int64_t)ms;
    if (strchr(s, 'T') == NULL && config_parse_duration(s, &back_s) == 0)
        return util_now_ms() - back_s * 1000;
    struct tm tm = {0};
    char *end = strptime(s, "%Y-%m-%dT%H:%M", &tm);
    if (end == NULL)
        return -1;
    if (*end == ':') {
        end = strptime(end, ":%S", &tm);
        if (end == NULL)
            return -1;
    }
    int64_t frac_ms = 0;
    if (*end == '.') {
        int64_t scale = 100;
        for (end++; *end >= '0' && *end <= '9'; end++, scale /= 10)
            frac_ms += (*end - '0') * scale;
    }
    if (strcmp(end, "Z") != 0)
        return -1;
    time_t t = timegm(&tm);
    return t < 0 ? -1 : (int64_t)t * 1000 + frac_ms;
}

void mgmt_audit_list(struct http_req *req, const struct mgmt_params *p)
{
    (void)p;
    struct registry *reg = req->reg;
    struct meta_audit_query q = {.limit = 100,
                                 .actor = http_req_query(req, "actor"),
                                 .action = http_req_query(req, "action"),
                                 .region = http_req_query(req, "region"),
                                 .repository = http_req_query(req, "repository")};
    if (q.repository != NULL && !name_is_valid_repo(q.repository, strlen(q.repository))) {
        mgmt_reply_error(req, ERR_BAD_REQUEST, "repository must be a repository name");
        return;
    }
    if (q.region != NULL && !config_is_valid_region(q.region)) {
        mgmt_reply_error(req, ERR_BAD_REQUEST, "region must be a region name");
        return;
    }
    const char *names[2] = {"since", "until"};
    int64_t *bounds[2] = {&q.since_ms, &q.until_ms};
    for (int i = 0; i < 2; i++) {
        const char *v = http_req_query(req, names[i]);
        if (v == NULL)
            continue;
        *bounds[i] = parse_time_ms(v);
        if (*bounds[i] <= 0) {
            mgmt_reply_error(req, ERR_BAD_REQUEST,
                             "%s must be an ISO 8601 UTC time (2026-12-03T14:00:00Z), epoch "
                             "milliseconds or a duration back from now (15m, 24h)",
                             names[i]);
            return;
        }
    }
    if (q.since_ms > 0 && q.until_ms > 0 && q.since_ms > q.until_ms) {
        mgmt_reply_error(req, ERR_BAD_REQUEST, "since is after until");
        return;
    }
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
        json_object_set_new(o, "region", a->region ? json_string(a->region) : json_null());
        json_array_append_new(out, o);
    }
    meta_audit_free(list, n);
    mgmt_reply_json(req, 200, out);
}
