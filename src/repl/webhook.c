/* Webhooks at run time: definitions through the replicated object store, deliveries
 * through this region's metastore, and the worker thread that sends them.
 * Request threads only queue (in the write transaction of the effect) and kick the worker; every
 * network wait and every backoff happens on the worker (STYLE: retries live in the
 * workers). A delivery is sent at least once: a crash after the receiver answered but
 * before the outcome was recorded sends it again (receivers dedupe by payload "id").
 *
 *   queued (pending, due now) --2xx--> delivered
 *        ^            |
 *        +- backoff --+ non-2xx or transport error, attempts < max
 *                     +--> failed (attempts used up; webhook disabled or moved)
 */
#include "webhook.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "httpc.h"
#include "log.h"
#include "metrics.h"
#include "registry_ctx.h"
#include "util.h"

#define WEBHOOK_WORKER_MAGIC 0x77686b77u /* "whkw" */
#define WEBHOOK_IDLE_RECHECK_MS 60000    /* look at the queue at least this often */
#define WEBHOOK_STORE_RETRY_MS 1000      /* after a metastore failure */
#define WEBHOOK_RESPONSE_READ_MAX (64 * 1024)
/* A delivery read is claimed for this long: enough to send it (a send is bounded by
 * WEBHOOK_TIMEOUT_MS), after which another node may take what a dead one left. */
#define WEBHOOK_CLAIM_MS ((int64_t)WEBHOOK_TIMEOUT_MS + 30000)

/* Senders: webhooks served at once. A receiver that accepts and never answers holds one
 * for WEBHOOK_TIMEOUT_MS per attempt; the others go on. */
#define WEBHOOK_SENDERS 4
_Static_assert(WEBHOOK_SENDERS <= META_DELIVERY_SKIP_MAX, "every busy webhook fits the skip list");

struct webhook_worker;

struct webhook_sender {
    struct webhook_worker *w;
    pthread_t thread;
    /* Under w->mu: */
    bool is_busy;           /* job handed to it (its webhook has a send in flight) */
    bool is_sending;        /* it took the job */
    struct meta_delivery job;
};

struct webhook_worker {
    unsigned magic;
    struct registry *reg;
    pthread_t thread; /* the dispatcher */
    pthread_mutex_t mu;
    pthread_cond_t cv;      /* wakes the dispatcher; on CLOCK_MONOTONIC */
    pthread_cond_t work_cv; /* wakes the senders */
    struct webhook_sender senders[WEBHOOK_SENDERS];
    /* Under mu: */
    bool is_stopping;
    bool is_kicked;
    int64_t pause_until_ms; /* the store failed to record an outcome: wait till then */
};

/* Definitions ------------------------------------------------------------- */

static int parse_stored(const char *name, const char *value, struct webhook_def *out, struct err *e)
{
    json_error_t je;
    json_t *v = json_loads(value, 0, &je);
    struct err sub = {0};
    int rc = webhook_def_parse(v, out, &sub);
    json_decref(v);
    if (rc != 0) {
        log_error("webhook", "failed to read stored webhook %s: %s", name, err_message(&sub));
        return err_set(e, ERR_INTERNAL, "stored webhook %s is invalid", name);
    }
    return 0;
}

static bool has_object_store(struct registry *reg, struct err *e)
{
    const struct metastore_ops *ops = reg->ms->ops;
    if (ops->object_get && ops->object_put && ops->object_list && ops->object_delete)
        return true;
    err_set(e, ERR_UNAVAILABLE, "this metastore keeps no registry objects");
    return false;
}

int webhook_get(struct registry *reg, const char *name, struct webhook_def *out, struct err *e)
{
    memset(out, 0, sizeof(*out));
    if (!has_object_store(reg, e))
        return -1;
    char *value = NULL;
    if (reg->ms->ops->object_get(reg->ms, WEBHOOK_OBJECT_KIND, name, &value, e) != 0)
        return -1;
    int rc = parse_stored(name, value, out, e);
    free(value);
    return rc;
}

int webhook_list(struct registry *reg, struct webhook_def **out, size_t *n_out, struct err *e)
{
    *out = NULL;
    *n_out = 0;
    if (!has_object_store(reg, e))
        return -1;
    struct meta_name_list keys = {0};
    struct meta_name_list values = {0};
    if (reg->ms->ops->object_list(reg->ms, WEBHOOK_OBJECT_KIND, &keys, &values, e) != 0)
        return -1;
    struct webhook_def *defs = xcalloc(keys.n, sizeof(*defs));
    size_t n = 0;
    for (size_t i = 0; i < keys.n && i < values.n; i++) {
        struct err ignored = {0};
        if (parse_stored(keys.names[i], values.names[i], &defs[n], &ignored) == 0)
            n++;
    }
    meta_name_list_fini(&keys);
    meta_name_list_fini(&values);
    *out = defs;
    *n_out = n;
    return 0;
}

void webhook_list_free(struct webhook_def *defs, size_t n)
{
    for (size_t i = 0; defs && i < n; i++)
        webhook_def_fini(&defs[i]);
    free(defs);
}

int webhook_save(struct registry *reg, const struct webhook_def *d, bool is_create,
                 struct err *e)
{
    if (!has_object_store(reg, e))
        return -1;
    json_t *v = webhook_def_to_json(d, false);
    char *s = json_dumps(v, JSON_COMPACT);
    json_decref(v);
    AN(s);
    ms_object_put_f *write = is_create ? reg->ms->ops->object_create : reg->ms->ops->object_put;
    int rc = write(reg->ms, WEBHOOK_OBJECT_KIND, d->name, s, e);
    free(s);
    return rc;
}

int webhook_delete(struct registry *reg, const char *name, struct err *e)
{
    if (!has_object_store(reg, e))
        return -1;
    if (reg->ms->ops->object_delete(reg->ms, WEBHOOK_OBJECT_KIND, name, e) != 0)
        return -1;
    struct err sub = {0};
    if (reg->ms->ops->delivery_prune(reg->ms, name, 0, WEBHOOK_OBJECT_KIND, &sub) != 0)
        log_error("webhook", "failed to forget the deliveries of deleted webhook %s: %s", name,
                  err_message(&sub));
    return 0;
}

/* Queueing ---------------------------------------------------------------- */

static void delivery_init(struct meta_delivery *d, const char *webhook, const char *action,
                          const char *region, const struct webhook_effect *ev, int64_t now_ms)
{
    char hex[33];
    memset(d, 0, sizeof(*d));
    util_random_id(hex);
    webhook_def_format_uuid(hex, d->id);
    d->webhook = xstrdup(webhook);
    d->action = xstrdup(action);
    d->payload = webhook_def_payload(d->id, now_ms, region, ev);
    d->state = META_DELIVERY_PENDING;
    d->latency_ms = -1;
    d->created_ms = now_ms;
    d->updated_ms = now_ms;
    d->next_attempt_ms = now_ms;
}

static int tx_begin(struct registry *reg, struct webhook_tx *tx, bool is_unit_wanted,
                    struct err *e)
{
    struct metastore *ms = reg->ms;
    *tx = (struct webhook_tx){.reg = reg};
    if (ms->ops->write_begin == NULL ||
        (!is_unit_wanted && !ms->ops->object_kind_may_exist(ms, META_WEBHOOK_KIND)))
        return 0;
    if (ms->ops->write_begin(ms, e) != 0)
        return -1;
    tx->is_open = true;
    return 0;
}

int webhook_tx_begin(struct registry *reg, struct webhook_tx *tx, struct err *e)
{
    return tx_begin(reg, tx, false, e);
}

int webhook_tx_begin_unit(struct registry *reg, struct webhook_tx *tx, struct err *e)
{
    return tx_begin(reg, tx, true, e);
}

/* A delivery that could not be read or written fails its effect as a store failure, never
 * as what the effect's own codes mean to its caller (a uniqueness clash is ERR_CONFLICT,
 * which a fetch worker reads as "no longer placed here"). */
static int store_failure(struct err *e)
{
    if (e != NULL && e->code != ERR_NO_SPACE && e->code != ERR_UNAVAILABLE)
        e->code = ERR_IO;
    return -1;
}

int webhook_tx_queue(struct webhook_tx *tx, const struct webhook_effect *ev, struct err *e)
{
    AN(ev);
    AN(ev->action);
    if (!tx->is_open)
        return 0;
    struct registry *reg = tx->reg;
    const char *region = reg->cfg->region;
    const char *rid = ev->request_id ? ev->request_id : "-";
    struct webhook_def *defs = NULL;
    size_t n_defs = 0;
    if (webhook_list(reg, &defs, &n_defs, e) != 0) {
        log_error("webhook", "failed to list webhooks for %s of %s: %s request=%s", ev->action,
                  ev->repo ? ev->repo : "-", err_message(e), rid);
        return store_failure(e);
    }
    struct meta_delivery *items = xcalloc(n_defs ? n_defs : 1, sizeof(*items));
    size_t n = 0;
    int64_t now_ms = util_now_ms();
    for (size_t i = 0; i < n_defs; i++) {
        if (webhook_def_matches(&defs[i], region, ev->action, ev->repo))
            delivery_init(&items[n++], defs[i].name, ev->action, region, ev, now_ms);
    }
    int rc = n > 0 ? reg->ms->ops->delivery_add(reg->ms, items, n, e) : 0;
    if (rc != 0) {
        log_error("webhook", "failed to queue %zu webhook deliveries for %s of %s: %s request=%s",
                  n, ev->action, ev->repo ? ev->repo : "-", err_message(e), rid);
        store_failure(e);
    }
    else if (n > 0)
        log_debug("webhook", "queued %zu deliveries for %s of %s request=%s", n, ev->action,
                  ev->repo ? ev->repo : "-", rid);
    if (rc == 0)
        tx->n_queued += n;
    for (size_t i = 0; i < n; i++)
        meta_delivery_fini(&items[i]);
    free(items);
    webhook_list_free(defs, n_defs);
    return rc;
}

int webhook_tx_queue_replicated(struct webhook_tx *tx, const char *action, const char *repo,
                                const struct digest *d, const char *const *tags, size_t n_tags,
                                struct err *e)
{
    if (!tx->is_open)
        return 0;
    struct registry *reg = tx->reg;
    struct meta_manifest m = {0};
    bool is_push = strcmp(action, "push") == 0;
    if (is_push && reg->ms->ops->manifest_get(reg->ms, repo, d->str, &m, e) != 0) {
        log_error("webhook", "failed to describe replicated %s@%s for webhooks: %s", repo,
                  d->str, err_message(e));
        meta_manifest_fini(&m);
        return store_failure(e);
    }
    struct webhook_effect ev = {.action = action, .repo = repo, .digest = d->str,
                                .media_type = m.media_type,
                                .size = is_push ? (int64_t)m.body_len : -1,
                                .request_id = "replication",
                                .method = "REPLICATE", .host = reg->cfg->region};
    int rc = 0;
    for (size_t i = 0; i < n_tags && rc == 0; i++) {
        ev.tag = tags[i];
        rc = webhook_tx_queue(tx, &ev, e);
    }
    if (n_tags == 0)
        rc = webhook_tx_queue(tx, &ev, e);
    meta_manifest_fini(&m);
    return rc;
}

int webhook_tx_end(struct webhook_tx *tx, int rc, struct err *e)
{
    if (!tx->is_open)
        return rc;
    struct metastore *ms = tx->reg->ms;
    tx->is_open = false;
    struct err ce = {0};
    if (ms->ops->write_end(ms, rc == 0, &ce) != 0) {
        if (e != NULL)
            *e = ce;
        return -1;
    }
    if (rc == 0 && tx->n_queued > 0)
        webhook_worker_kick(tx->reg->webhooks);
    return rc;
}

int webhook_ping(struct registry *reg, const char *name, char id_out[37], struct err *e)
{
    struct webhook_def d;
    if (webhook_get(reg, name, &d, e) != 0)
        return -1;
    const char *region = reg->cfg->region;
    int rc = 0;
    if (strcmp(d.location, region) != 0) {
        rc = err_set(e, ERR_CONFLICT,
                     "webhook %s belongs to region %s; this node serves %s: "
                     "ping it through a node of %s",
                     name, d.location, region, d.location);
        goto out;
    }
    struct webhook_effect ev = {.action = "ping", .size = -1};
    struct meta_delivery item;
    delivery_init(&item, name, "ping", region, &ev, util_now_ms());
    rc = reg->ms->ops->delivery_add(reg->ms, &item, 1, e);
    if (rc == 0) {
        memcpy(id_out, item.id, sizeof(item.id));
        webhook_worker_kick(reg->webhooks);
    }
    meta_delivery_fini(&item);
out:
    webhook_def_fini(&d);
    return rc;
}

/* Sending ----------------------------------------------------------------- */

static uint32_t random_u32(void)
{
    char hex[33];
    util_random_id(hex);
    uint32_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v * 16 + (uint32_t)(hex[i] <= '9' ? hex[i] - '0' : hex[i] - 'a' + 10);
    return v;
}

/* Ends d without sending it (the webhook changed under it). */
static void give_up(struct meta_delivery *d, const char *why, int64_t now_ms)
{
    d->state = META_DELIVERY_FAILED;
    free(d->response);
    d->response = xstrdup(why);
    d->updated_ms = now_ms;
    metrics_count_webhook_delivery(METRICS_WEBHOOK_FAILED);
    log_warn("webhook", "failed to deliver %s to webhook %s: %s delivery=%s", d->action, d->webhook,
             why, d->id);
}

/* One attempt: POST the payload, then decide delivered / retry later / failed. */
static void attempt(struct webhook_worker *w, const struct webhook_def *def,
                    struct meta_delivery *d)
{
    const struct config *cfg = w->reg->cfg;
    if (webhook_def_is_management_target(def->uri)) {
        /* Stored by a version before such targets were refused: never sent (a webhook that
         * pings itself would loop for ever). */
        d->attempts++;
        d->updated_ms = util_now_ms();
        d->status_code = 0;
        free(d->response);
        d->response = xstrdup("not sent: the uri names a management endpoint (/_meridian/...)");
        d->state = META_DELIVERY_FAILED;
        metrics_count_webhook_delivery(METRICS_WEBHOOK_FAILED);
        log_warn("webhook", "did not deliver %s to webhook %s: its uri names a management "
                            "endpoint delivery=%s", d->action, d->webhook, d->id);
        return;
    }
    char hdr[WEBHOOK_HEADERS_MAX + 5][WEBHOOK_HEADER_NAME_MAX + WEBHOOK_HEADER_VALUE_MAX + 8];
    const char *headers[WEBHOOK_HEADERS_MAX + 6];
    size_t nh = 0;
    snprintf(hdr[nh++], sizeof(hdr[0]), "Content-Type: application/json");
    snprintf(hdr[nh++], sizeof(hdr[0]), "User-Agent: meridian-webhook/0.1.0");
    snprintf(hdr[nh++], sizeof(hdr[0]), "X-Meridian-Event: %s", d->action);
    snprintf(hdr[nh++], sizeof(hdr[0]), "X-Meridian-Delivery: %s", d->id);
    snprintf(hdr[nh++], sizeof(hdr[0]), "X-Meridian-Webhook: %s", d->webhook);
    /* A definition stored before such headers were refused may still name one: not sent
     * (a second X-Meridian-Event could tell a receiver another action). */
    for (size_t i = 0; i < def->n_headers; i++) {
        if (!webhook_def_is_delivery_header(def->headers[i].name))
            snprintf(hdr[nh++], sizeof(hdr[0]), "%s: %s", def->headers[i].name,
                     def->headers[i].value);
    }
    for (size_t i = 0; i < nh; i++)
        headers[i] = hdr[i];
    headers[nh] = NULL;

    struct httpc_request rq = {.method = "POST",
                               .url = def->uri,
                               .headers = headers,
                               .body = d->payload,
                               .body_len = strlen(d->payload),
                               .timeout_ms = WEBHOOK_TIMEOUT_MS,
                               .connect_timeout_ms = WEBHOOK_CONNECT_TIMEOUT_MS};
    struct httpc_response resp;
    struct err e = {0};
    httpc_response_init(&resp, WEBHOOK_RESPONSE_READ_MAX);
    int64_t start_ns = util_mono_ns();
    int rc = httpc_do(&rq, &resp, &e);
    int64_t now_ms = util_now_ms();
    d->latency_ms = (util_mono_ns() - start_ns) / 1000000;
    d->attempts++;
    d->updated_ms = now_ms;
    d->status_code = rc == 0 ? (int)resp.status : 0;
    free(d->response);
    if (rc == 0)
        d->response = webhook_def_excerpt(resp.body.data ? resp.body.data : "", resp.body.len,
                                          WEBHOOK_EXCERPT_MAX);
    else
        d->response =
            webhook_def_excerpt(err_message(&e), strlen(err_message(&e)), WEBHOOK_EXCERPT_MAX);
    httpc_response_fini(&resp);

    bool is_ok = rc == 0 && d->status_code >= 200 && d->status_code < 300;
    if (is_ok) {
        d->state = META_DELIVERY_DELIVERED;
        metrics_count_webhook_delivery(METRICS_WEBHOOK_DELIVERED);
        log_info("webhook",
                 "delivered %s to webhook %s status=%d latency_ms=%" PRId64
                 " attempts=%d delivery=%s",
                 d->action, d->webhook, d->status_code, d->latency_ms, d->attempts, d->id);
    } else if (d->attempts >= (int)cfg->webhook_max_attempts) {
        d->state = META_DELIVERY_FAILED;
        metrics_count_webhook_delivery(METRICS_WEBHOOK_FAILED);
        log_warn("webhook",
                 "failed to deliver %s to webhook %s: giving up after %d attempts "
                 "status=%d delivery=%s",
                 d->action, d->webhook, d->attempts, d->status_code, d->id);
    } else {
        int64_t delay_ms = webhook_def_backoff_ms((unsigned)d->attempts, WEBHOOK_BACKOFF_BASE_MS,
                                                  cfg->webhook_backoff_max_ms, random_u32());
        d->next_attempt_ms = now_ms + delay_ms;
        metrics_count_webhook_delivery(METRICS_WEBHOOK_RETRIED);
        log_info("webhook",
                 "failed to deliver %s to webhook %s: %s; retrying in %" PRId64
                 " ms status=%d attempts=%d delivery=%s",
                 d->action, d->webhook,
                 rc == 0 ? "receiver did not answer 2xx" : "receiver unreachable", delay_ms,
                 d->status_code, d->attempts, d->id);
    }
}

/* Sends (or settles) one due delivery and records the outcome: 0, or -1 when the
 * outcome could not be stored (the delivery is still due). */
static int deliver(struct webhook_worker *w, struct meta_delivery *d)
{
    struct registry *reg = w->reg;
    struct webhook_def def;
    struct err e = {0};
    int64_t now_ms = util_now_ms();
    if (webhook_get(reg, d->webhook, &def, &e) != 0) {
        if (e.code == ERR_NOT_FOUND) {
            /* Deleted (perhaps in another region): its deliveries go with it, unless it
             * was re-created since the lookup (the prune checks that itself). */
            log_info("webhook", "dropping deliveries of deleted webhook %s", d->webhook);
            if (reg->ms->ops->delivery_prune(reg->ms, d->webhook, 0, WEBHOOK_OBJECT_KIND,
                                             &e) == 0) {
                /* Kept because re-created: due again as read (a claim released), sent
                 * by the next pass. Dropped: nothing to update (ERR_NOT_FOUND). */
                struct err ignored = {0};
                (void)reg->ms->ops->delivery_update(reg->ms, d, &ignored);
                return 0;
            }
            log_error("webhook", "failed to drop deliveries of webhook %s: %s", d->webhook,
                      err_message(&e));
            return -1;
        }
        log_error("webhook", "failed to read webhook %s: %s delivery=%s", d->webhook,
                  err_message(&e), d->id);
        d->next_attempt_ms = now_ms + WEBHOOK_STORE_RETRY_MS;
    } else if (strcmp(def.location, reg->cfg->region) != 0) {
        char why[160];
        snprintf(why, sizeof(why), "webhook moved to region %s", def.location);
        give_up(d, why, now_ms);
    } else if (!def.is_enabled && strcmp(d->action, "ping") != 0) {
        give_up(d, "webhook disabled", now_ms);
    } else {
        attempt(w, &def, d);
    }
    webhook_def_fini(&def);
    if (reg->ms->ops->delivery_update(reg->ms, d, &e) != 0) {
        log_error("webhook", "failed to record delivery %s of webhook %s: %s", d->id, d->webhook,
                  err_message(&e));
        return -1;
    }
    if (d->state != META_DELIVERY_PENDING &&
        reg->ms->ops->delivery_prune(reg->ms, d->webhook, WEBHOOK_EVENTS_KEEP, NULL, &e) != 0)
        log_error("webhook", "failed to prune deliveries of webhook %s: %s", d->webhook,
                  err_message(&e));
    return 0;
}

/* The dispatcher: hands each due delivery to an idle sender, at most one send in flight
 * per webhook (its deliveries go out in order, and a receiver that never answers holds
 * one sender, not the others). Returns when to look again (wall-clock ms): now when
 * every idle sender got work, the next due time otherwise. Called without w->mu. */
static int64_t dispatch(struct webhook_worker *w)
{
    struct metastore *ms = w->reg->ms;
    char busy[WEBHOOK_SENDERS][WEBHOOK_NAME_MAX + 1];
    const char *skip[WEBHOOK_SENDERS];
    size_t n_busy = 0, n_idle = 0;
    AZ(pthread_mutex_lock(&w->mu));
    int64_t pause_until_ms = w->pause_until_ms;
    for (size_t i = 0; i < WEBHOOK_SENDERS; i++) {
        struct webhook_sender *sd = &w->senders[i];
        if (!sd->is_busy) {
            n_idle++;
            continue;
        }
        snprintf(busy[n_busy], sizeof(busy[0]), "%s", sd->job.webhook);
        skip[n_busy] = busy[n_busy];
        n_busy++;
    }
    AZ(pthread_mutex_unlock(&w->mu));
    int64_t now_ms = util_now_ms();
    if (n_idle == 0)
        return INT64_MAX; /* a sender kicks when it is done */
    if (now_ms < pause_until_ms)
        return pause_until_ms;

    struct meta_delivery_list due = {0};
    int64_t next_due_ms = INT64_MAX;
    struct err e = {0};
    if (ms->ops->delivery_due(ms, now_ms, WEBHOOK_CLAIM_MS, n_idle, skip, n_busy, &due,
                              &next_due_ms, &e) != 0) {
        log_error("webhook", "failed to read due deliveries: %s", err_message(&e));
        return now_ms + WEBHOOK_STORE_RETRY_MS;
    }
    AZ(pthread_mutex_lock(&w->mu));
    for (size_t k = 0; k < due.n; k++) {
        struct meta_delivery *d = &due.items[k];
        struct webhook_sender *idle = NULL;
        bool is_taken = false;
        for (size_t i = 0; i < WEBHOOK_SENDERS; i++) {
            struct webhook_sender *sd = &w->senders[i];
            if (sd->is_busy)
                is_taken |= strcmp(sd->job.webhook, d->webhook) == 0;
            else if (idle == NULL)
                idle = sd;
        }
        if (is_taken || idle == NULL || w->is_stopping)
            continue; /* given back below */
        idle->job = *d; /* the sender owns its strings now */
        memset(d, 0, sizeof(*d));
        idle->is_busy = true;
        AZ(pthread_cond_broadcast(&w->work_cv));
    }
    AZ(pthread_mutex_unlock(&w->mu));
    /* A later delivery of a webhook handed out in this batch (or one no sender could
     * take): its claim goes back, as read, and it is read again once the send before it
     * is done. Written outside w->mu: the store's writer lock is never taken under it. */
    for (size_t k = 0; k < due.n; k++) {
        if (due.items[k].webhook != NULL) {
            (void)ms->ops->delivery_update(ms, &due.items[k], &e);
            next_due_ms = now_ms;
        }
    }
    meta_delivery_list_fini(&due);
    return next_due_ms;
}

static void *send_work(void *arg)
{
    struct webhook_sender *sd = arg;
    struct webhook_worker *w = sd->w;
    AZ(pthread_mutex_lock(&w->mu));
    for (;;) {
        while (!w->is_stopping && !(sd->is_busy && !sd->is_sending))
            AZ(pthread_cond_wait(&w->work_cv, &w->mu));
        if (w->is_stopping)
            break;
        sd->is_sending = true;
        AZ(pthread_mutex_unlock(&w->mu));
        /* Only the sender writes the job; the dispatcher reads its webhook name under
         * w->mu, so the job is freed only after it is handed back. */
        bool is_store_failing = deliver(w, &sd->job) != 0;
        AZ(pthread_mutex_lock(&w->mu));
        struct meta_delivery done = sd->job;
        memset(&sd->job, 0, sizeof(sd->job));
        /* A delivery whose outcome could not be stored is still due: pause, not spin. */
        if (is_store_failing)
            w->pause_until_ms = util_now_ms() + WEBHOOK_STORE_RETRY_MS;
        sd->is_sending = false;
        sd->is_busy = false;
        w->is_kicked = true;
        AZ(pthread_cond_signal(&w->cv));
        AZ(pthread_mutex_unlock(&w->mu));
        meta_delivery_fini(&done);
        AZ(pthread_mutex_lock(&w->mu));
    }
    /* Stopping with a delivery handed out but not begun: its claim goes back, so a
     * restart or another node sends it at once rather than when the claim runs out. */
    struct meta_delivery unsent = {0};
    bool is_unsent = sd->is_busy && !sd->is_sending;
    if (is_unsent) {
        unsent = sd->job;
        memset(&sd->job, 0, sizeof(sd->job));
        sd->is_busy = false;
    }
    AZ(pthread_mutex_unlock(&w->mu));
    if (is_unsent) {
        struct err e = {0};
        (void)w->reg->ms->ops->delivery_update(w->reg->ms, &unsent, &e);
        meta_delivery_fini(&unsent);
    }
    return NULL;
}

static void *work(void *arg)
{
    struct webhook_worker *w = arg;
    ASSERT(w->magic == WEBHOOK_WORKER_MAGIC);
    AZ(pthread_mutex_lock(&w->mu));
    while (!w->is_stopping) {
        w->is_kicked = false;
        AZ(pthread_mutex_unlock(&w->mu));
        int64_t next_due_ms = dispatch(w);
        AZ(pthread_mutex_lock(&w->mu));
        while (!w->is_stopping && !w->is_kicked) {
            int64_t wait_ms = next_due_ms - util_now_ms();
            if (wait_ms <= 0)
                break;
            if (wait_ms > WEBHOOK_IDLE_RECHECK_MS)
                wait_ms = WEBHOOK_IDLE_RECHECK_MS;
            struct timespec until;
            clock_gettime(CLOCK_MONOTONIC, &until);
            until.tv_sec += wait_ms / 1000;
            until.tv_nsec += (wait_ms % 1000) * 1000000;
            if (until.tv_nsec >= 1000000000) {
                until.tv_sec++;
                until.tv_nsec -= 1000000000;
            }
            if (pthread_cond_timedwait(&w->cv, &w->mu, &until) == ETIMEDOUT)
                break;
        }
    }
    AZ(pthread_mutex_unlock(&w->mu));
    return NULL;
}

struct webhook_worker *webhook_worker_start(struct registry *reg)
{
    struct webhook_worker *w = xcalloc(1, sizeof(*w));
    w->magic = WEBHOOK_WORKER_MAGIC;
    w->reg = reg;
    AZ(pthread_mutex_init(&w->mu, NULL));
    pthread_condattr_t ca;
    AZ(pthread_condattr_init(&ca));
    AZ(pthread_condattr_setclock(&ca, CLOCK_MONOTONIC));
    AZ(pthread_cond_init(&w->cv, &ca));
    AZ(pthread_condattr_destroy(&ca));
    AZ(pthread_cond_init(&w->work_cv, NULL));
    for (size_t i = 0; i < WEBHOOK_SENDERS; i++) {
        w->senders[i].w = w;
        AZ(pthread_create(&w->senders[i].thread, NULL, send_work, &w->senders[i]));
    }
    AZ(pthread_create(&w->thread, NULL, work, w));
    return w;
}

void webhook_worker_kick(struct webhook_worker *w)
{
    if (w == NULL)
        return;
    ASSERT(w->magic == WEBHOOK_WORKER_MAGIC);
    AZ(pthread_mutex_lock(&w->mu));
    w->is_kicked = true;
    AZ(pthread_cond_signal(&w->cv));
    AZ(pthread_mutex_unlock(&w->mu));
}

void webhook_worker_stop(struct webhook_worker *w)
{
    if (w == NULL)
        return;
    ASSERT(w->magic == WEBHOOK_WORKER_MAGIC);
    AZ(pthread_mutex_lock(&w->mu));
    w->is_stopping = true;
    AZ(pthread_cond_signal(&w->cv));
    AZ(pthread_cond_broadcast(&w->work_cv));
    AZ(pthread_mutex_unlock(&w->mu));
    AZ(pthread_join(w->thread, NULL));
    for (size_t i = 0; i < WEBHOOK_SENDERS; i++)
        AZ(pthread_join(w->senders[i].thread, NULL));
    AZ(pthread_mutex_destroy(&w->mu));
    AZ(pthread_cond_destroy(&w->cv));
    AZ(pthread_cond_destroy(&w->work_cv));
    w->magic = 0;
    free(w);
}
