/* /_meridian/v1/gc: GET the collector's state; POST gc/run runs a whole pass now
 * (?dry_run=true: decides and lists, deletes nothing) and answers what went.
 * /_meridian/v1/storage: bytes held here per repository, unique and shared.
 * /_meridian/v1/quotas: storage quotas per repository pattern.
 * /_meridian/v1/retention: retention rules per repository pattern.
 * Admin only (authz.c). */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "gc.h"
#include "mgmt_api.h"
#include "quota.h"
#include "retention.h"
#include "registry_ctx.h"

static struct gc *gc_of(struct http_req *req)
{
    return atomic_load(&req->reg->is_ready) ? req->reg->gc : NULL;
}

void mgmt_gc_show(struct http_req *req, const struct mgmt_params *p)
{
    (void)p;
    struct gc *g = gc_of(req);
    if (g == NULL) {
        mgmt_reply_error(req, ERR_UNAVAILABLE, "the garbage collector is not running");
        return;
    }
    mgmt_reply_json(req, 200, gc_status_json(g));
}

typedef json_t *gc_pass_f(struct gc *g, bool is_dry_run, struct err *e);

/* POST gc/run and retention/run: run one pass now; ?dry_run=true decides and lists only. */
static void run_pass(struct http_req *req, gc_pass_f *pass)
{
    struct gc *g = gc_of(req);
    if (g == NULL) {
        mgmt_reply_error(req, ERR_UNAVAILABLE, "the garbage collector is not running");
        return;
    }
    const char *dry = http_req_query(req, "dry_run");
    if (dry != NULL && strcmp(dry, "true") != 0 && strcmp(dry, "false") != 0) {
        mgmt_reply_error(req, ERR_BAD_REQUEST, "dry_run: expected true or false");
        return;
    }
    struct err e = {0};
    json_t *out = pass(g, dry != NULL && strcmp(dry, "true") == 0, &e);
    if (out == NULL) {
        mgmt_reply_error(req, e.code, "%s", err_message(&e));
        return;
    }
    mgmt_reply_json(req, 200, out);
}

/* DELETE quotas|retention?pattern=: removes the replicated object of one pattern. */
static void pattern_object_delete(struct http_req *req, const char *kind)
{
    const char *pattern = http_req_query(req, "pattern");
    struct err e = {0};
    if (pattern == NULL) {
        mgmt_reply_error(req, ERR_BAD_REQUEST, "pattern: required");
        return;
    }
    if (req->reg->ms->ops->object_delete(req->reg->ms, kind, pattern, &e) != 0) {
        mgmt_reply_error(req, e.code, "%s", err_message(&e));
        return;
    }
    mgmt_reply_json(req, 200, json_pack("{s:s}", "deleted", pattern));
}

void mgmt_gc_run(struct http_req *req, const struct mgmt_params *p)
{
    (void)p;
    run_pass(req, gc_run);
}

void mgmt_storage_show(struct http_req *req, const struct mgmt_params *p)
{
    (void)p;
    struct meta_usage_list u = {0};
    struct err e = {0};
    if (req->reg->ms->ops->storage_usage(req->reg->ms, &u, &e) != 0) {
        mgmt_reply_error(req, e.code, "%s", err_message(&e));
        return;
    }
    json_t *repos = json_array();
    for (size_t i = 0; i < u.n; i++)
        json_array_append_new(
            repos, json_pack("{s:s,s:I,s:I,s:I}", "repository", u.items[i].repo, "unique_bytes",
                             (json_int_t)u.items[i].unique_bytes, "shared_bytes",
                             (json_int_t)u.items[i].shared_bytes, "blobs",
                             (json_int_t)u.items[i].n_blobs));
    json_t *out = json_pack("{s:s,s:I,s:o}", "region", req->reg->cfg->region, "total_bytes",
                            (json_int_t)u.total_bytes, "repositories", repos);
    meta_usage_list_fini(&u);
    mgmt_reply_json(req, 200, out);
}

/* /_meridian/v1/quotas: POST {"pattern", "bytes"} sets the quota of the repositories a
 * pattern matches (a replicated object: every region enforces it on its own bytes), GET
 * lists them, DELETE ?pattern= removes one. */
void mgmt_quotas_set(struct http_req *req, const struct mgmt_params *p)
{
    (void)p;
    json_t *body = mgmt_body_object(req);
    if (body == NULL)
        return;
    const char *pattern = json_string_value(json_object_get(body, "pattern"));
    json_t *bytes = json_object_get(body, "bytes");
    const char *key;
    json_t *v;
    json_object_foreach(body, key, v)
    {
        if (strcmp(key, "pattern") != 0 && strcmp(key, "bytes") != 0) {
            mgmt_reply_error(req, ERR_BAD_REQUEST, "unknown member %s", key);
            json_decref(body);
            return;
        }
    }
    if (pattern == NULL || !auth_pattern_is_valid(pattern, strlen(pattern)) ||
        !json_is_integer(bytes) || json_integer_value(bytes) < 0) {
        json_decref(body);
        mgmt_reply_error(req, ERR_BAD_REQUEST,
                         "expected {\"pattern\": repository pattern, \"bytes\": integer >= 0}");
        return;
    }
    char value[64];
    snprintf(value, sizeof(value), "{\"bytes\":%" JSON_INTEGER_FORMAT "}", json_integer_value(bytes));
    struct err e = {0};
    int rc = req->reg->ms->ops->object_put(req->reg->ms, QUOTA_KIND, pattern, value, &e);
    json_t *out = rc == 0 ? json_pack("{s:s,s:O}", "pattern", pattern, "bytes", bytes) : NULL;
    json_decref(body);
    if (rc != 0) {
        mgmt_reply_error(req, e.code, "%s", err_message(&e));
        return;
    }
    mgmt_reply_json(req, 200, out);
}

void mgmt_quotas_list(struct http_req *req, const struct mgmt_params *p)
{
    (void)p;
    struct meta_name_list keys = {0}, values = {0};
    struct err e = {0};
    if (req->reg->ms->ops->object_list(req->reg->ms, QUOTA_KIND, &keys, &values, &e) != 0) {
        mgmt_reply_error(req, e.code, "%s", err_message(&e));
        return;
    }
    json_t *out = json_array();
    for (size_t i = 0; i < keys.n; i++) {
        json_t *v = json_loads(values.names[i], 0, NULL);
        json_array_append_new(out, json_pack("{s:s,s:I}", "pattern", keys.names[i], "bytes",
                                             json_integer_value(json_object_get(v, "bytes"))));
        json_decref(v);
    }
    meta_name_list_fini(&keys);
    meta_name_list_fini(&values);
    mgmt_reply_json(req, 200, out);
}

void mgmt_quotas_delete(struct http_req *req, const struct mgmt_params *p)
{
    (void)p;
    pattern_object_delete(req, QUOTA_KIND);
}

/* /_meridian/v1/retention: POST {"pattern", "tags", "keepNewest", "olderThanS",
 * "untaggedAfterS"} sets the rule of a repository pattern (a replicated object), GET lists
 * the rules, DELETE ?pattern= removes one; POST retention/run[?dry_run=true] applies them
 * now (retention_run.h). */
void mgmt_retention_set(struct http_req *req, const struct mgmt_params *p)
{
    (void)p;
    json_t *body = mgmt_body_object(req);
    if (body == NULL)
        return;
    const char *pattern = NULL;
    struct err e = {0};
    char *value = retention_rule_value(body, &pattern, &e);
    if (value != NULL && !auth_pattern_is_valid(pattern, strlen(pattern))) {
        free(value);
        value = NULL;
        err_set(&e, ERR_BAD_REQUEST, "pattern: expected a repository pattern ('team/*')");
    }
    int rc = value != NULL
                 ? req->reg->ms->ops->object_put(req->reg->ms, RETENTION_KIND, pattern, value, &e)
                 : -1;
    struct retention_rule rule;
    json_t *out = rc == 0 && retention_rule_parse(pattern, value, &rule) == 0
                      ? retention_rule_to_json(&rule)
                      : NULL;
    if (out != NULL) {
        free(rule.pattern);
        free(rule.tags);
    }
    free(value);
    json_decref(body);
    if (rc != 0) {
        mgmt_reply_error(req, e.code, "%s", err_message(&e));
        return;
    }
    mgmt_reply_json(req, 200, out);
}

void mgmt_retention_list(struct http_req *req, const struct mgmt_params *p)
{
    (void)p;
    struct retention_rules rules;
    struct err e = {0};
    if (retention_rules_load(req->reg->ms, &rules, &e) != 0) {
        mgmt_reply_error(req, e.code, "%s", err_message(&e));
        return;
    }
    json_t *out = json_array();
    for (size_t i = 0; i < rules.n; i++)
        json_array_append_new(out, retention_rule_to_json(&rules.items[i]));
    retention_rules_fini(&rules);
    mgmt_reply_json(req, 200, out);
}

void mgmt_retention_delete(struct http_req *req, const struct mgmt_params *p)
{
    (void)p;
    pattern_object_delete(req, RETENTION_KIND);
}

void mgmt_retention_run(struct http_req *req, const struct mgmt_params *p)
{
    (void)p;
    run_pass(req, gc_retention_run);
}
