/* /_meridian/v1/webhooks: regional webhooks (docs/webhooks.md). Definitions are
 * registry-wide (any region lists, shows, changes them); deliveries are recorded in the
 * region that sends them, so GET .../events lists this region's deliveries and a ping
 * is answered only by a node of the webhook's region (409 elsewhere, naming it).
 * Custom header values are never shown: they often hold credentials. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "mgmt_api.h"
#include "registry_ctx.h"
#include "util.h"
#include "webhook.h"

#define EVENTS_DEFAULT 100
#define EVENTS_MAX 1000

/* The {name} of the path: replies 404 and returns NULL when no webhook can have it. */
static const char *path_name(struct http_req *req, const struct mgmt_params *p)
{
    const char *name = mgmt_param(p, "name");
    if (!webhook_def_is_valid_name(name)) {
        mgmt_reply_error(req, ERR_NOT_FOUND, "no such webhook");
        return NULL;
    }
    return name;
}

/* Replies with e; a missing webhook is named. */
static void reply_err(struct http_req *req, const char *name, const struct err *e)
{
    if (e->code == ERR_NOT_FOUND && name != NULL)
        mgmt_reply_error(req, ERR_NOT_FOUND, "no webhook named %s", name);
    else
        http_reply_mgmt_err(req, e);
}

/* POST webhooks: 201 with the webhook; 400 for a bad definition, 409 if it exists. */
void mgmt_webhook_create(struct http_req *req, const struct mgmt_params *p)
{
    (void)p;
    struct registry *reg = req->reg;
    struct err e = {0};
    json_t *body = mgmt_body_object(req);
    if (body == NULL)
        return;
    struct webhook_def d;
    int rc = webhook_def_parse(body, &d, &e);
    json_decref(body);
    if (rc != 0) {
        http_reply_mgmt_err(req, &e);
        return;
    }
    if (webhook_def_check_new(&d, &e) != 0) {
        http_reply_mgmt_err(req, &e);
        goto out;
    }
    /* Of two creates of one name racing here, one gets 409 (the store checks as it writes). */
    if (webhook_save(reg, &d, true, &e) != 0) {
        http_reply_mgmt_err(req, &e);
        goto out;
    }
    log_info("webhook", "created webhook %s location=%s scope=%s request=%s", d.name, d.location,
             d.scope, req->request_id);
    mgmt_reply_json(req, 201, webhook_def_to_json(&d, true));
out:
    webhook_def_fini(&d);
}

/* GET webhooks: every webhook of the registry, by name. */
void mgmt_webhook_list(struct http_req *req, const struct mgmt_params *p)
{
    (void)p;
    struct err e = {0};
    struct webhook_def *defs;
    size_t n;
    if (webhook_list(req->reg, &defs, &n, &e) != 0) {
        http_reply_mgmt_err(req, &e);
        return;
    }
    json_t *out = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(out, webhook_def_to_json(&defs[i], true));
    webhook_list_free(defs, n);
    mgmt_reply_json(req, 200, out);
}

/* GET webhooks/{name} */
void mgmt_webhook_get(struct http_req *req, const struct mgmt_params *p)
{
    const char *name = path_name(req, p);
    if (name == NULL)
        return;
    struct err e = {0};
    struct webhook_def d;
    if (webhook_get(req->reg, name, &d, &e) != 0) {
        reply_err(req, name, &e);
        return;
    }
    mgmt_reply_json(req, 200, webhook_def_to_json(&d, true));
    webhook_def_fini(&d);
}

/* PATCH webhooks/{name}: members to change; 200 with the result. */
void mgmt_webhook_update(struct http_req *req, const struct mgmt_params *p)
{
    const char *name = path_name(req, p);
    if (name == NULL)
        return;
    json_t *body = mgmt_body_object(req);
    if (body == NULL)
        return;
    struct err e = {0};
    struct webhook_def d;
    if (webhook_get(req->reg, name, &d, &e) != 0) {
        reply_err(req, name, &e);
        json_decref(body);
        return;
    }
    if (webhook_def_patch(&d, body, &e) != 0 || webhook_def_check_new(&d, &e) != 0 ||
        webhook_save(req->reg, &d, false, &e) != 0) {
        http_reply_mgmt_err(req, &e);
    } else {
        log_info("webhook", "updated webhook %s request=%s", name, req->request_id);
        mgmt_reply_json(req, 200, webhook_def_to_json(&d, true));
    }
    json_decref(body);
    webhook_def_fini(&d);
}

/* DELETE webhooks/{name}: 204. */
void mgmt_webhook_delete(struct http_req *req, const struct mgmt_params *p)
{
    const char *name = path_name(req, p);
    if (name == NULL)
        return;
    struct err e = {0};
    if (webhook_delete(req->reg, name, &e) != 0) {
        reply_err(req, name, &e);
        return;
    }
    log_info("webhook", "deleted webhook %s request=%s", name, req->request_id);
    http_reply(req, 204, NULL, NULL, 0);
}

/* POST webhooks/{name}/ping: 202 {"id"} once the ping delivery is queued. */
void mgmt_webhook_ping(struct http_req *req, const struct mgmt_params *p)
{
    const char *name = path_name(req, p);
    if (name == NULL)
        return;
    struct err e = {0};
    char id[37];
    if (webhook_ping(req->reg, name, id, &e) != 0) {
        reply_err(req, name, &e);
        return;
    }
    mgmt_reply_json(req, 202,
                    json_pack("{s:s, s:s, s:s}", "id", id, "webhook", name, "action", "ping"));
}

static json_t *time_or_null(int64_t ms)
{
    char ts[32];
    if (ms <= 0)
        return json_null();
    webhook_def_format_time(ms, ts);
    return json_string(ts);
}

static json_t *delivery_json(const struct meta_delivery *d)
{
    static const char *const states[] = {[META_DELIVERY_PENDING] = "pending",
                                         [META_DELIVERY_DELIVERED] = "delivered",
                                         [META_DELIVERY_FAILED] = "failed"};
    json_t *o = json_object();
    json_object_set_new(o, "id", json_string(d->id));
    json_object_set_new(o, "webhook", json_string(d->webhook));
    json_object_set_new(o, "action", json_string(d->action));
    json_object_set_new(o, "state", json_string(states[d->state]));
    json_object_set_new(o, "attempts", json_integer(d->attempts));
    json_object_set_new(o, "statusCode",
                        d->status_code > 0 ? json_integer(d->status_code) : json_null());
    json_object_set_new(o, "latencyMs",
                        d->latency_ms >= 0 ? json_integer(d->latency_ms) : json_null());
    json_t *resp = d->response ? json_string(d->response) : NULL;
    json_object_set_new(o, "response", resp ? resp : json_null());
    json_object_set_new(o, "createdAt", time_or_null(d->created_ms));
    json_object_set_new(o, "updatedAt", time_or_null(d->updated_ms));
    json_object_set_new(o, "nextAttemptAt",
                        d->state == META_DELIVERY_PENDING ? time_or_null(d->next_attempt_ms)
                                                          : json_null());
    json_t *payload = json_loads(d->payload ? d->payload : "", 0, NULL);
    json_object_set_new(o, "payload", payload ? payload : json_null());
    return o;
}

/* GET webhooks/{name}/events[?n=N]: this region's deliveries, newest first. */
void mgmt_webhook_events(struct http_req *req, const struct mgmt_params *p)
{
    const char *name = path_name(req, p);
    if (name == NULL)
        return;
    size_t max = EVENTS_DEFAULT;
    const char *n_text = http_req_query(req, "n");
    if (n_text != NULL) {
        uint64_t v;
        if (util_parse_u64(n_text, strlen(n_text), &v) != 0 || v == 0 || v > EVENTS_MAX) {
            mgmt_reply_error(req, ERR_BAD_REQUEST, "n must be a number from 1 to %d", EVENTS_MAX);
            return;
        }
        max = (size_t)v;
    }
    struct registry *reg = req->reg;
    struct err e = {0};
    struct webhook_def d;
    if (webhook_get(reg, name, &d, &e) != 0) {
        reply_err(req, name, &e);
        return;
    }
    webhook_def_fini(&d);
    struct meta_delivery_list list;
    if (reg->ms->ops->delivery_list(reg->ms, name, max, &list, &e) != 0) {
        http_reply_mgmt_err(req, &e);
        return;
    }
    json_t *out = json_array();
    for (size_t i = 0; i < list.n; i++)
        json_array_append_new(out, delivery_json(&list.items[i]));
    meta_delivery_list_fini(&list);
    mgmt_reply_json(req, 200, out);
}
