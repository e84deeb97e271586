/* Regional webhooks at run time (docs/webhooks.md): definitions kept in the replicated
 * object store (kind "webhook", so every region can list them), deliveries queued in
 * this region's metastore when an effect takes place here, and one worker thread that
 * sends them, retrying with backoff. A delivery is stored before webhook_on_effect
 * returns and stays until it is delivered or given up: a restart resumes it.
 * Validation, matching, payloads and the retry schedule are pure, in webhook_def.c. */
#ifndef MERIDIAN_WEBHOOK_H
#define MERIDIAN_WEBHOOK_H

#include <stddef.h>

#include "err.h"
#include "webhook_def.h"

struct digest;

struct registry;
struct webhook_worker;

#define WEBHOOK_OBJECT_KIND "webhook"
#define WEBHOOK_BACKOFF_BASE_MS 1000
#define WEBHOOK_TIMEOUT_MS 10000
#define WEBHOOK_CONNECT_TIMEOUT_MS 5000
#define WEBHOOK_EXCERPT_MAX 1024 /* bytes of a response kept with the delivery */
#define WEBHOOK_EVENTS_KEEP 1000 /* finished deliveries kept per webhook */

/* A push or delete took effect in this region: a local manifest PUT/DELETE succeeded,
 * or replication into this region completed. Queues one delivery for every enabled
 * webhook located in this region (reg->cfg->region) whose actions include ev->action
 * and whose scope matches ev->repo, durably, before returning; then wakes the worker.
 * Never fails the caller: a storage failure is logged (the effect itself stands).
 * ev and its strings are only read during the call. */
void webhook_on_effect(struct registry *reg, const struct webhook_effect *ev);
/* A push or delete made in another region took effect here: for a push, when its
 * content arrived and the manifest became visible (with the tags it had then), or when
 * a tag of a manifest already visible was applied; for a delete, when the event was
 * applied. Regional webhooks of this region fire, once per tag (tags: n_tags of them),
 * or once without a tag when n_tags is 0. */
void webhook_on_replicated(struct registry *reg, const char *action, const char *repo,
                           const struct digest *d, const char *const *tags, size_t n_tags);

/* Queues a "ping" delivery to webhook name and wakes the worker; id_out gets the
 * delivery id. ERR_NOT_FOUND if there is no such webhook; ERR_CONFLICT if it is
 * located in another region (its deliveries are sent from there); ERR_IO & co. */
int webhook_ping(struct registry *reg, const char *name, char id_out[37], struct err *e);

/* Definitions in the object store. get: ERR_NOT_FOUND if absent; *out is released with
 * webhook_def_fini. list: every valid definition, by name (caller frees with
 * webhook_list_free); stored values that do not parse are logged and skipped. */
int webhook_get(struct registry *reg, const char *name, struct webhook_def *out, struct err *e);
int webhook_list(struct registry *reg, struct webhook_def **out, size_t *n_out, struct err *e);
void webhook_list_free(struct webhook_def *defs, size_t n);
/* Stores d, replicated to every region: a new webhook (is_create: ERR_CONFLICT when one of
 * that name exists, checked as it is written) or a replacement. */
int webhook_save(struct registry *reg, const struct webhook_def *d, bool is_create,
                 struct err *e);
/* Deletes webhook name everywhere and forgets its deliveries here. ERR_NOT_FOUND. */
int webhook_delete(struct registry *reg, const char *name, struct err *e);

/* The delivery worker: a dispatcher thread and a few senders per registry, one send in
 * flight per webhook. start spawns them (they first resume whatever was pending before a
 * restart); stop asks them to finish the sends in flight (at most WEBHOOK_TIMEOUT_MS),
 * joins them and frees w (NULL accepted). kick wakes the dispatcher at once (a delivery
 * was queued); NULL accepted. */
struct webhook_worker *webhook_worker_start(struct registry *reg);
void webhook_worker_stop(struct webhook_worker *w);
void webhook_worker_kick(struct webhook_worker *w);

#endif
