/* Regional webhooks at run time (docs/webhooks.md): definitions kept in the replicated
 * object store (kind "webhook", so every region can list them), deliveries queued in
 * this region's metastore in the write transaction of the effect they announce
 * (webhook_tx_*), and a worker that sends them, retrying with backoff. A delivery stays
 * until it is delivered or given up: a restart resumes it.
 * Validation, matching, payloads and the retry schedule are pure, in webhook_def.c. */
#ifndef MERIDIAN_WEBHOOK_H
#define MERIDIAN_WEBHOOK_H

#include <stdbool.h>
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

/* An effect and its deliveries in one write transaction (docs/webhooks.md, "Durable"):
 * a crash keeps both or neither, so no delivery is lost between the two commits.
 *
 *     struct webhook_tx tx;
 *     if (webhook_tx_begin(reg, &tx, &e) != 0) ...fail
 *     rc = <the write that makes the effect>;
 *     if (rc == 0) rc = webhook_tx_queue(&tx, &ev, &e);
 *     rc = webhook_tx_end(&tx, rc, &e);
 *
 * begin opens a unit of work (ms_write_begin_f) only when a webhook may exist (a flag kept
 * by the store: no read on SQLite, one on PostgreSQL); otherwise queue does nothing and the
 * write runs as it would alone. Between begin and end the thread holds the store's writer:
 * take no lock a writer may wait for. A webhook created while the effect is under way
 * may miss it (the effect did not follow it). */
struct webhook_tx {
    struct registry *reg;
    bool is_open;   /* a unit of work is open */
    size_t n_queued; /* deliveries queued in it */
};
/* 0, or -1 with e set (nothing open). */
int webhook_tx_begin(struct registry *reg, struct webhook_tx *tx, struct err *e);
/* As webhook_tx_begin, but opens the unit of work even when no webhook exists: for an
 * effect whose own check must read in the transaction that writes it (a conditional
 * request, oci_manifests.c). */
int webhook_tx_begin_unit(struct registry *reg, struct webhook_tx *tx, struct err *e);
/* The effect ev took place in this region, in tx: queues one delivery for every enabled
 * webhook located in this region (reg->cfg->region) whose actions include ev->action and
 * whose scope matches ev->repo. 0, or -1 with e set (the unit must then roll back). ev and
 * its strings are only read during the call. */
int webhook_tx_queue(struct webhook_tx *tx, const struct webhook_effect *ev, struct err *e);
/* A push or delete made in another region took effect here, in tx: for a push, when its
 * content arrived and the manifest became visible (with the tags it had then), or when a
 * tag of a manifest already visible was applied; for a delete, when the event was applied.
 * Regional webhooks of this region fire, once per tag (tags: n_tags of them), or once
 * without a tag when n_tags is 0. A push's manifest is read in tx. 0, or -1 with e set. */
int webhook_tx_queue_replicated(struct webhook_tx *tx, const char *action, const char *repo,
                                const struct digest *d, const char *const *tags, size_t n_tags,
                                struct err *e);
/* Ends tx: commits when rc is 0, else rolls back (the effect with its deliveries), and
 * wakes the worker when something was queued. Returns rc, or -1 with e set when the commit
 * failed (nothing of it stays). */
int webhook_tx_end(struct webhook_tx *tx, int rc, struct err *e);

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
