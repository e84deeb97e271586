/* The replication engine: peer set, pullers, fetch workers, manager.
 *
 *   manager ──(1 s)── reload replications -> start/stop one puller per peer
 *           ─(25 ms)── wake long polls whose log grew or whose deadline passed
 *   prober  ──(1 s)─── probe every peer at once (round trips: nearest first when
 *                      fetching; two missed probes: Unreachable); ship fetch progress
 *                      as InProgress status events
 *   syncer  ─(sync-interval)── anti-entropy: scrub local blobs, compare summaries,
 *                              merge differences
 *   puller[peer] ── GET peer/events?vv=..&after=cursor (long poll) -> apply -> cursor
 *   fetcher[2]  ── pending manifests -> fetch missing blobs, up to 4 at once, each from
 *                  the nearest reachable region known to hold it, a second source raced
 *                  when the first is slow (Range resume, verify) -> make visible ->
 *                  status Completed (a replicated event)
 *
 * Shared state (peers, waiters, in-flight fetches) is under r->mu; no lock is held
 * across a network or disk wait. */
#include "gc_fence.h"
#include "repl.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "auth.h"
#include "authz.h"
#include "compact.h"
#include "hlc.h"
#include "httpc.h"
#include "log.h"
#include "manifest.h"
#include "merge_effects.h"
#include "metrics.h"
#include "placement.h"
#include "registry_ctx.h"
#include "repl_codec.h"
#include "residency.h"
#include "residency_enforce.h"
#include "upload_sessions.h"
#include "util.h"
#include "version_conflict.h"
#include "webhook.h"

/* Takes this region out of the registry: see registry_ctx.h's is_removed. */
static void mark_removed(struct registry *reg)
{
    char path[4096];
    /* The manager (a peer deleted us) and a handler (a peer told us) may race here. */
    if (atomic_exchange(&reg->is_removed, true))
        return;
    snprintf(path, sizeof(path), "%s/REMOVED", reg->cfg->data_dir);
    FILE *f = fopen(path, "w");
    if (f) {
        fputs("this region was removed from its registry\n", f);
        fflush(f);
        fsync(fileno(f));
        fclose(f);
    }
    /* Its content goes: nothing is served from here any more. */
    size_t n = reg->bs->ops->remove_all(reg->bs);
    log_warn("registry", "this region was removed from the registry: stopped serving, "
                         "removed %zu blob files", n);
}

/* A long poll that outlives wait + 5 s is a dead path (a peer whose link passes no bytes):
 * it is dropped and the puller reconnects. */
#define REPL_POLL_WAIT_S 10
#define LEAVE_CHECK_MS 2000         /* a leave is checked with the peers this often ... */
#define LEAVE_CHECK_FOR_MS 20000    /* ... for this long */
#define REPL_BATCH_MAX 500
#define REPL_EVENTS_BODY_MAX (64u << 20)
#define FETCH_WORKERS 2
#define FETCH_ATTEMPTS_BEFORE_FAILED 5
#define LINK_CHECK_TIMEOUT_MS 10000
#define FETCH_ATTEMPTS_PER_CALL 3
#define FETCH_PARALLEL 4            /* blobs of one manifest fetched at once */
#define FETCH_CONNECT_TIMEOUT_MS 3000
#define FETCH_STALL_S 5             /* a source that sends nothing this long is dropped */
#define FETCH_HEDGE_MIN_MS 400      /* start a second source after max(this, 4 x RTT) */
#define PROBE_INTERVAL_MS 1000
#define PROBE_TIMEOUT_MS 1500       /* two missed probes in a row: Unreachable */
#define PROGRESS_INTERVAL_MS 1000   /* InProgress status events, at most this often */

struct peer {
    char *location;
    char *endpoint;
    bool is_stopping;      /* set under repl.mu; the puller exits and frees the peer */
    /* live state, under repl.mu */
    int failures;
    int64_t last_ok_ms;
    int64_t lag_events;
    double lag_seconds;
    double rtt_ms;
    uint64_t bytes_copied;
    uint64_t fetch_retries;
    uint64_t fetch_failures;
    int n_started;
    struct repl *r;
    struct peer *next;
};

struct waiter {
    struct http_req *req;
    int64_t seen_head;
    uint64_t seen_acks;
    int64_t deadline_ms;
    struct waiter *next;
};

/* A manifest or blob being fetched, so that no two workers copy the same thing. */
struct inflight {
    char key[600];
    int64_t done;
    int64_t total;
    int64_t done_sent;      /* bytes last shipped in an InProgress status event */
    int64_t sent_ms;        /* when */
    bool is_finishing;      /* the final status is being written: send no progress */
    struct inflight *next;
};

/* Retry bookkeeping for pending manifests that failed to complete. */
struct retry {
    char key[600];
    int attempts;
    int64_t next_ms;
    struct retry *next;
};

struct repl {
    struct registry *reg;
    pthread_mutex_t mu;
    pthread_mutex_t status_mu; /* this region's status writes (see set_status) */
    /* Showing a manifest (and reading its tags) against applying a peer's tag to it: each
     * tag's push webhook fires from exactly one side (complete_pending, apply_batch). */
    pthread_mutex_t hook_mu;
    pthread_cond_t cv;
    /* Set under mu (so waits on cv see it); read without it by the loops and by the
     * transfers' progress callback, which abandons a transfer when it turns true.
     * Plain reads of an atomic_bool (here and of reg->is_removed) are atomic loads. */
    atomic_bool is_stopping;
    /* repl_leave: until then the manager asks the peers every LEAVE_CHECK_MS (one that
     * has not applied the removal yet denies it for a moment). */
    _Atomic int64_t leave_until_ms;
    bool is_kicked;
    bool is_log_grown;      /* see repl_log_grew */
    struct peer *peers;
    int n_pullers;          /* live puller threads */
    int n_completions;      /* live pull completion threads (repl_stop waits for them) */
    atomic_int n_lookups;   /* pull-through lookups at the peers running now */
    struct waiter *waiters;
    struct inflight *inflight;
    struct retry *retries;
    pthread_t manager;
    pthread_t syncer;
    pthread_t prober;
    pthread_t fetchers[FETCH_WORKERS];
    atomic_bool is_started; /* the threads run: set by repl_start, cleared by repl_stop */
    char auth_header[512];   /* "Authorization: Basic ..." or empty */
    char fetch_header[96];   /* REPL_FETCH_HEADER ": <this region>" */
    char bind_ip[128];       /* local address for outbound traffic, or empty */
    char self_endpoint[512];
    atomic_uint_fast64_t pull_lookups; /* state lookups at peers for a pull's miss */
    atomic_uint_fast64_t pull_served;  /* manifests a pull made visible from a peer */
};

static const char *self_region(struct repl *r)
{
    return r->reg->cfg->region;
}

static struct metastore *ms_of(struct repl *r)
{
    return r->reg->ms;
}

/* Sleeps up to ms, waking early on stop. Returns true when stopping. */
static bool nap(struct repl *r, int64_t ms)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += ms / 1000;
    until.tv_nsec += (ms % 1000) * 1000000;
    if (until.tv_nsec >= 1000000000) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000;
    }
    AZ(pthread_mutex_lock(&r->mu));
    while (!r->is_stopping) {
        if (pthread_cond_timedwait(&r->cv, &r->mu, &until) == ETIMEDOUT)
            break;
    }
    bool stopping = r->is_stopping;
    AZ(pthread_mutex_unlock(&r->mu));
    return stopping;
}

static metrics_source_f render_metrics;

struct repl *repl_new(struct registry *reg)
{
    struct repl *r = xcalloc(1, sizeof(*r));
    r->reg = reg;
    AZ(pthread_mutex_init(&r->mu, NULL));
    AZ(pthread_mutex_init(&r->status_mu, NULL));
    AZ(pthread_mutex_init(&r->hook_mu, NULL));
    AZ(pthread_cond_init(&r->cv, NULL));
    const struct config *cfg = reg->cfg;
    const char *peer_auth = auth_peer_authorization(cfg);
    if (peer_auth)
        snprintf(r->auth_header, sizeof(r->auth_header), "Authorization: %s", peer_auth);
    snprintf(r->fetch_header, sizeof(r->fetch_header), "%s: %s", REPL_FETCH_HEADER, cfg->region);
    /* Outbound traffic leaves from the listen address, which names this region to
     * peers and proxies; a wildcard listen address leaves the choice to the kernel. */
    if (strcmp(cfg->listen_host, "0.0.0.0") != 0 && strcmp(cfg->listen_host, "::") != 0 &&
        strcmp(cfg->listen_host, "localhost") != 0)
        snprintf(r->bind_ip, sizeof(r->bind_ip), "%s", cfg->listen_host);
    if (cfg->advertise)
        snprintf(r->self_endpoint, sizeof(r->self_endpoint), "%s", cfg->advertise);
    else
        snprintf(r->self_endpoint, sizeof(r->self_endpoint), "http://%s:%u", cfg->listen_host,
                 cfg->listen_port);
    /* One replication per process, so the table of sources always has room. */
    AZ(metrics_source_add(render_metrics, r));
    return r;
}

void repl_free(struct repl *r)
{
    if (r == NULL)
        return;
    metrics_source_remove(render_metrics, r);
    while (r->peers) {
        struct peer *p = r->peers;
        r->peers = p->next;
        free(p->location);
        free(p->endpoint);
        free(p);
    }
    while (r->inflight) {
        struct inflight *f = r->inflight;
        r->inflight = f->next;
        free(f);
    }
    while (r->retries) {
        struct retry *t = r->retries;
        r->retries = t->next;
        free(t);
    }
    pthread_mutex_destroy(&r->mu);
    pthread_mutex_destroy(&r->status_mu);
    pthread_mutex_destroy(&r->hook_mu);
    pthread_cond_destroy(&r->cv);
    free(r);
}

/* Outbound HTTP with the peer credential ------------------------------------ */

static int peer_call(struct repl *r, const char *method, const char *url, const char *body,
                     long timeout_ms, struct httpc_response *resp, struct err *e)
{
    const char *headers[3] = {NULL, NULL, NULL};
    size_t n = 0;
    if (r->auth_header[0])
        headers[n++] = r->auth_header;
    if (body)
        headers[n++] = "Content-Type: application/json";
    struct httpc_request rq = {.method = method, .url = url, .headers = headers,
                               .body = body, .body_len = body ? strlen(body) : 0,
                               .timeout_ms = timeout_ms, .connect_timeout_ms = 5000,
                               .interface = r->bind_ip[0] ? r->bind_ip : NULL,
                               .abort = &r->is_stopping, .is_peer = true};
    return httpc_do(&rq, resp, e);
}

/* Peer set -------------------------------------------------------------------- */

static struct peer *find_peer(struct repl *r, const char *location)
{
    for (struct peer *p = r->peers; p; p = p->next) {
        if (strcmp(p->location, location) == 0)
            return p;
    }
    return NULL;
}

/* Reachable means its last pull or round-trip probe answered. Before the first answer
 * (a region just added) it is not Unreachable yet. Caller holds r->mu. */
static bool peer_is_unreachable(const struct peer *p, int64_t now_ms)
{
    return p->failures >= 2 || (p->last_ok_ms > 0 && now_ms - p->last_ok_ms > 60000);
}


/* What the peer via answered of the others' acknowledgements ({REGION: {"vv", "age_ms"}},
 * its own included): kept for the status of a tag (compact.h, "Relayed acknowledgements").
 * An entry that is not a peer of this region with a version vector and an age is left out
 * (so a peer cannot fill the table with names). */
static void note_relayed_acks(struct repl *r, const char *via, json_t *acks)
{
    struct compact *c = atomic_load(&r->reg->is_ready) ? r->reg->compact : NULL;
    if (c == NULL || !json_is_object(acks))
        return;
    int64_t now = util_now_ms();
    const char *region;
    json_t *v;
    json_object_foreach(acks, region, v) {
        const char *text = json_string_value(json_object_get(v, "vv"));
        json_t *age = json_object_get(v, "age_ms");
        struct meta_vv vv = {0};
        struct err e = {0};
        AZ(pthread_mutex_lock(&r->mu));
        bool is_peer = find_peer(r, region) != NULL;
        AZ(pthread_mutex_unlock(&r->mu));
        if (!is_peer || text == NULL || !json_is_integer(age) || json_integer_value(age) < 0 ||
            json_integer_value(age) > now || repl_codec_vv_parse(text, &vv, &e) != 0)
            continue;
        meta_vv_fini(&vv);
        compact_note_relayed(c, region, via, text, now - (int64_t)json_integer_value(age));
    }
}
static void *puller_main(void *arg);
static void probe_one(struct repl *r, const char *location, const char *endpoint);
static void leave_if_confirmed(struct repl *r);

/* Asks the prober to check this region's removal with the peers, every LEAVE_CHECK_MS for
 * LEAVE_CHECK_FOR_MS from now (a leave, or a peer refusing this region's pulls). */
static void leave_check_soon(struct repl *r)
{
    atomic_store(&r->leave_until_ms, util_now_ms() + LEAVE_CHECK_FOR_MS);
}

/* Reloads the replications and starts or stops pullers to match. */
static void sync_peers(struct repl *r)
{
    struct meta_name_list keys = {0}, values = {0};
    struct err e = {0};
    if (ms_of(r)->ops->object_list(ms_of(r), "replication", &keys, &values, &e) != 0)
        return;
    bool is_member = false;
    for (size_t i = 0; i < keys.n; i++)
        is_member |= strcmp(keys.names[i], self_region(r)) == 0;
    if (!is_member && !r->reg->is_removed) {
        /* Another region deleted this one's replication: leave the registry. */
        mark_removed(r->reg);
    }
    AZ(pthread_mutex_lock(&r->mu));
    for (struct peer *p = r->peers; p; p = p->next)
        p->is_stopping = true;
    for (size_t i = 0; i < keys.n && !r->reg->is_removed; i++) {
        if (strcmp(keys.names[i], self_region(r)) == 0)
            continue;
        json_error_t je;
        json_t *v = json_loads(values.names[i], 0, &je);
        const char *endpoint = v ? json_string_value(json_object_get(v, "endpoint")) : NULL;
        if (endpoint == NULL) {
            json_decref(v);
            continue;
        }
        struct peer *p = find_peer(r, keys.names[i]);
        if (p && strcmp(p->endpoint, endpoint) != 0) {
            free(p->endpoint);
            p->endpoint = xstrdup(endpoint);
        }
        if (p == NULL) {
            p = xcalloc(1, sizeof(*p));
            p->r = r;
            p->location = xstrdup(keys.names[i]);
            p->endpoint = xstrdup(endpoint);
            p->rtt_ms = 1e9;
            p->next = r->peers;
            r->peers = p;
        }
        p->is_stopping = false;
        json_decref(v);
    }
    /* Start pullers for new peers; peers gone from the set are unlinked and their
     * pullers, seeing is_stopping, free them on the way out. */
    for (struct peer **pp = &r->peers; *pp;) {
        struct peer *p = *pp;
        if (p->is_stopping) {
            *pp = p->next;
            log_info("repl", "stopped replicating with %s", p->location);
            continue;
        }
        if (p->n_started == 0 && !r->is_stopping) {
            pthread_t t;
            p->n_started = 1;
            r->n_pullers++;
            AZ(pthread_create(&t, NULL, puller_main, p));
            AZ(pthread_detach(t));
        }
        pp = &p->next;
    }
    AZ(pthread_mutex_unlock(&r->mu));
    meta_name_list_fini(&keys);
    meta_name_list_fini(&values);
}

/* Pulling events ---------------------------------------------------------------- */

static bool peer_should_stop(struct peer *p)
{
    AZ(pthread_mutex_lock(&p->r->mu));
    bool stop = p->is_stopping || p->r->is_stopping;
    AZ(pthread_mutex_unlock(&p->r->mu));
    return stop;
}

static void note_failure(struct peer *p, const char *what, const struct err *e)
{
    AZ(pthread_mutex_lock(&p->r->mu));
    p->failures++;
    int failures = p->failures;
    AZ(pthread_mutex_unlock(&p->r->mu));
    if (failures == 1 || failures % 30 == 0)
        log_warn("repl", "failed to %s from %s: %s (failures=%d)", what, p->location,
                 e ? err_message(e) : "bad reply", failures);
}

/* A peer's answer other than 200, with the reason it gave (a refused region
 * certificate says why: docs/governance.md), for the log. */
static void peer_refusal(const struct httpc_response *resp, struct err *e)
{
    json_error_t je;
    json_t *reply = resp->status != 200 ? json_loadb(resp->body.data, resp->body.len, 0, &je)
                                        : NULL;
    json_t *error = json_object_get(reply, "error");
    const char *msg = json_string_value(json_object_get(error, "message"));
    err_set(e, ERR_UNAVAILABLE, "peer answered %ld%s%.200s", resp->status, msg ? ": " : "",
            msg ? msg : "");
    json_decref(reply);
}

/* Merges one record of a peer's state (anti-entropy, the snapshot, the pull-through
 * lookup) as the event stream applies one: a tag that makes or changes a version conflict
 * is reported here too, whichever path brings it first (version_conflict.h). */
static int merge_state(struct repl *r, const struct meta_event *ev, int64_t tombs_before,
                       struct err *e)
{
    /* with the webhooks of what it deletes or tags here (merge_effects.h) */
    return merge_effects_state(r->reg, &r->hook_mu, ev, tombs_before, e);
}

/* A replicated push of p is shown here, in tx: its push deliveries, one per tag it has
 * (read in tx), or one without a tag. */
static int queue_shown(struct repl *r, struct webhook_tx *tx, const struct meta_pending *p,
                       struct err *e)
{
    if (!tx->is_open)
        return 0; /* no webhook: no tags to read */
    struct meta_name_list tags = {0};
    if (ms_of(r)->ops->manifest_tags(ms_of(r), p->repo, &p->digest, &tags, e) != 0) {
        log_warn("repl", "failed to read the tags of %s@%s for webhooks: %s", p->repo,
                 p->digest.str, err_message(e));
        e->code = ERR_IO; /* not one of the codes complete_pending reads as a verdict */
        return -1;
    }
    int rc = webhook_tx_queue_replicated(tx, "push", p->repo, &p->digest,
                                         (const char *const *)tags.names, tags.n, e);
    meta_name_list_fini(&tags);
    return rc;
}

/* Applies one batch; returns the log position to resume after, or -1 on failure.
 * An event that is not the next of its origin (a gap: the peer withheld one before it, a
 * redacted stand-in it does not relay) is left for a later pass, and the position stays
 * before it; the batch goes on with the events of other origins, so one origin held up
 * does not hold up the others this peer relays. *is_stuck: nothing applied, a gap met. */
static int64_t apply_batch(struct peer *p, json_t *events, int64_t cursor, bool *any_pending,
                           bool *is_stuck)
{
    struct repl *r = p->r;
    size_t n = json_array_size(events);
    bool has_gap = false, any_new = false;
    int64_t resume = cursor;
    *is_stuck = false;
    struct err pe = {0};
    /* Residency: what a sender should have withheld from this region is not merged here
     * either (its view of the policies may be older than ours). */
    json_t *policies = n > 0 ? residency_policies(ms_of(r), &pe) : NULL;
    if (n > 0 && policies == NULL) {
        log_warn("repl", "failed to read residency policies: %s", err_message(&pe));
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        struct meta_event ev;
        struct err e = {0};
        if (repl_codec_event_from_json(json_array_get(events, i), &ev, &e) != 0) {
            log_warn("repl", "failed to read event from %s: %s", p->location, err_message(&e));
            json_decref(policies);
            return -1;
        }
        char about[1100];
        if (residency_event_repo(&ev, about, sizeof(about)) &&
            !residency_allows(policies, about, self_region(r)))
            residency_redact(&ev);
        bool is_new = false, is_gap = false;
        struct version_conflict vc;
        version_conflict_begin(r->reg, &ev, &vc);
        /* A tag_set that points its tag at a manifest shown here fires the push webhooks
         * (one that arrives before its manifest is shown fires with it: complete_pending).
         * Compared with the tag before, since an event is new whenever the version vector
         * has not seen it, also when anti-entropy or a pull-through merged it already. The
         * tag before is read in the unit of work (merge_effect_probe): read before it, the
         * other node of a PostgreSQL region could merge the same tag by anti-entropy in
         * between, with its push, and this one fired it again. */
        struct digest tagged;
        struct err de = {0};
        bool is_tag_set = strcmp(ev.kind, "tag_set") == 0 && ev.repo && ev.name && ev.digest &&
                          digest_parse(ev.digest, strlen(ev.digest), &tagged, &de) == 0;
        if (is_tag_set)
            AZ(pthread_mutex_lock(&r->hook_mu));
        bool is_delete = strcmp(ev.kind, "manifest_delete") == 0 ||
                         strcmp(ev.kind, "tag_delete") == 0;
        /* An event that may fire webhooks is applied with its deliveries, in one
         * transaction (webhook.h): a crash between the two lost them for good, since the
         * event, applied, is never fetched again. */
        struct webhook_tx tx = {0};
        struct merge_effect fx = {0};
        int arc = is_tag_set || is_delete ? webhook_tx_begin(r->reg, &tx, &e) : 0;
        if (arc == 0)
            arc = version_conflict_probe(r->reg, &tx, &ev, &vc, &e);
        if (arc == 0 && (is_tag_set || is_delete))
            arc = merge_effect_probe(&tx, &ev, &fx, &e);
        if (arc == 0)
            arc = ms_of(r)->ops->event_apply(ms_of(r), &ev, &is_new, &is_gap, &e);
        /* A delete fires where it removed something, a tag where it now names a manifest
         * shown here that it did not name before (a manifest shown later fires for the tags
         * it has then: complete_pending); once, whichever path brought the write first
         * (anti-entropy may have: merge_effects.h). */
        if (arc == 0 && is_new && (is_tag_set || is_delete))
            arc = merge_effect_queue(&tx, &ev, &fx, is_tag_set, &e);
        if (arc == 0)
            arc = version_conflict_queue(r->reg, &tx, &ev, is_new, &vc, &e);
        arc = webhook_tx_end(&tx, arc, &e);
        merge_effect_fini(&fx);
        if (is_tag_set)
            AZ(pthread_mutex_unlock(&r->hook_mu));
        if (arc != 0) {
            log_error("repl", "failed to apply event %s#%" PRId64 " from %s: %s", ev.origin,
                      ev.origin_seq, p->location, err_message(&e));
            version_conflict_end(r->reg, &ev, false, &vc);
            meta_event_fini(&ev);
            json_decref(policies);
            return i ? (has_gap ? resume : cursor) : -1;
        }
        version_conflict_end(r->reg, &ev, is_new, &vc);
        if (is_gap) {
            /* Not the next event of its origin: leave it (and the position) for a later
             * pass; the events after it that apply are skipped then by the version vector. */
            has_gap = true;
            meta_event_fini(&ev);
            continue;
        }
        any_new |= is_new;
        /* a tag may place a manifest recorded before it (meta_merge.c): fetch it now */
        if (is_new && (strcmp(ev.kind, "manifest_put") == 0 || strcmp(ev.kind, "tag_set") == 0))
            *any_pending = true;
        if (is_new && strncmp(ev.kind, "object_", 7) == 0) {
            /* identities and role bindings are objects too: the next request reloads them
             * instead of waiting for the next poll (a login tried in between would count
             * as failed) */
            authz_invalidate(r->reg->authz);
            if (ev.name && ev.payload)
                placement_on_object_event(r->reg, ev.name, ev.payload);
            if (residency_enforce_on_object_event(r->reg, ev.payload)) {
                json_t *fresh = residency_policies(ms_of(r), &pe);
                if (fresh != NULL) {
                    json_decref(policies);
                    policies = fresh;
                }
            }
        }
        cursor = ev.seq;
        if (!has_gap)
            resume = cursor;
        meta_event_fini(&ev);
    }
    json_decref(policies);
    *is_stuck = has_gap && !any_new;
    return resume;
}

static char *escape_repo(const char *repo);

/* Fetches url from peer p as JSON (NULL with e set). */
static json_t *peer_get_json(struct peer *p, const char *url, long timeout_ms, struct err *e)
{
    struct httpc_response resp;
    httpc_response_init(&resp, REPL_EVENTS_BODY_MAX);
    json_t *body = NULL;
    int rc = peer_call(p->r, "GET", url, NULL, timeout_ms, &resp, e);
    if (rc == 0 && resp.status == 200 && !resp.body.is_too_big) {
        json_error_t je;
        body = json_loadb(resp.body.data, resp.body.len, 0, &je);
    }
    if (body == NULL && rc == 0)
        err_set(e, ERR_UNAVAILABLE, "peer answered %ld", resp.status);
    httpc_response_fini(&resp);
    return body;
}

/* Is a local record (manifest put or tag register) one the snapshot's region has applied
 * (at or below its horizon)? */
static bool is_covered(const struct meta_event *rec, const struct meta_horizon *h, size_t nh)
{
    const struct meta_horizon *oh = meta_horizon_find(h, nh, rec->origin ? rec->origin : "");
    return oh != NULL && (int64_t)rec->hlc <= oh->hlc;
}

/* Deletes win: a manifest or tag register here that the peer applied (its horizon covers
 * it) and no longer has (no record, no tombstone) was deleted there and the tombstone has
 * since expired; keeping it would bring the deleted manifest back everywhere. */
static size_t forget_deleted(struct repl *r, const char *repo, json_t *remote,
                             const struct meta_horizon *h, size_t nh)
{
    struct meta_event *mine = NULL;
    size_t n = 0, n_forgot = 0;
    struct err e = {0};
    if (ms_of(r)->ops->repo_state(ms_of(r), repo, &mine, &n, &e) != 0)
        return 0;
    /* What the peer knows, by key: "t NAME" (a tag register), "m DIGEST" (a manifest or
     * its tombstone). */
    json_t *known = json_object();
    for (size_t k = 0; k < json_array_size(remote); k++) {
        json_t *it = json_array_get(remote, k);
        const char *kind = json_string_value(json_object_get(it, "kind"));
        bool is_tag = kind && strncmp(kind, "tag_", 4) == 0;
        bool is_manifest =
            kind && (strcmp(kind, "manifest_put") == 0 || strcmp(kind, "manifest_delete") == 0);
        const char *key = json_string_value(json_object_get(it, is_tag ? "name" : "digest"));
        char buf[1024];
        if ((is_tag || is_manifest) && key != NULL) {
            snprintf(buf, sizeof(buf), "%c %s", is_tag ? 't' : 'm', key);
            json_object_set_new(known, buf, json_true());
        }
    }
    for (size_t i = 0; i < n; i++) {
        bool is_manifest = strcmp(mine[i].kind, "manifest_put") == 0;
        bool is_tag =
            strcmp(mine[i].kind, "tag_set") == 0 || strcmp(mine[i].kind, "tag_delete") == 0;
        const char *key = is_tag ? mine[i].name : mine[i].digest;
        if ((!is_manifest && !is_tag) || key == NULL || !is_covered(&mine[i], h, nh))
            continue;
        char buf[1024];
        snprintf(buf, sizeof(buf), "%c %s", is_tag ? 't' : 'm', key);
        if (json_object_get(known, buf) == NULL &&
            merge_effects_forget(r->reg, &mine[i], &e) == 0) {
            n_forgot++;
            log_info("repl",
                     "snapshot: %s %s of %s was deleted elsewhere (tombstone expired): "
                     "removed here",
                     is_tag ? "tag" : "manifest", key, repo);
        }
    }
    json_decref(known);
    for (size_t i = 0; i < n; i++)
        meta_event_fini(&mine[i]);
    free(mine);
    return n_forgot;
}

/* Merges records (state events) from p; returns how many merged. */
/* Merges a snapshot's records (objects or one repository's state). Residency: records about
 * a repository this region may not hold are left out (the peer filters too, but its view
 * of the policies may be older); with only_policies, the residency policies alone, so that
 * the other records are judged by the policies the snapshot carries. */
static size_t merge_records(struct peer *p, json_t *items, bool only_policies)
{
    struct repl *r = p->r;
    size_t merged = 0;
    struct err pe = {0};
    json_t *policies = only_policies ? NULL : residency_policies(ms_of(r), &pe);
    if (!only_policies && policies == NULL) {
        log_warn("repl", "snapshot: failed to read residency policies: %s", err_message(&pe));
        return 0;
    }
    /* A tombstone expired here is not taken back (state_merge). */
    int64_t tombs_before = compact_tombs_cutoff_hlc(r->reg, util_now_ms());
    for (size_t i = 0; i < json_array_size(items); i++) {
        struct meta_event ev;
        struct err e = {0};
        if (repl_codec_event_from_json(json_array_get(items, i), &ev, &e) != 0)
            continue;
        char about[1100];
        bool is_policy = false;
        if (strncmp(ev.kind, "object_", 7) == 0 && ev.payload != NULL) {
            json_error_t je;
            json_t *pj = json_loads(ev.payload, 0, &je);
            const char *kind = json_string_value(json_object_get(pj, "kind"));
            is_policy = kind != NULL && strcmp(kind, RESIDENCY_KIND) == 0;
            json_decref(pj);
        }
        bool is_wanted = only_policies ? is_policy
                                       : !is_policy && !(residency_event_repo(&ev, about,
                                                                              sizeof(about)) &&
                                                         !residency_allows(policies, about,
                                                                           self_region(r)));
        if (!is_wanted) {
            meta_event_fini(&ev);
            continue;
        }
        if (merge_state(r, &ev, tombs_before, &e) == 0) {
            merged++;
            if (strncmp(ev.kind, "object_", 7) == 0 && ev.name && ev.payload)
                placement_on_object_event(r->reg, ev.name, ev.payload);
        } else {
            log_warn("repl", "snapshot: failed to merge %s from %s: %s", ev.kind, p->location,
                     err_message(&e));
        }
        meta_event_fini(&ev);
    }
    json_decref(policies);
    return merged;
}

/* This region asked p for events p's log no longer holds (compaction, docs/replication.md
 * "Compaction"): merges p's tables instead (objects, then each repository's state with its
 * status rows), lets deletes win for what p applied and forgot, then adopts p's horizon
 * (version vector and log horizon at least it) and reads p's log again from its start. */
static int catch_up_from_snapshot(struct peer *p, struct err *e)
{
    struct repl *r = p->r;
    char url[2048];
    AZ(pthread_mutex_lock(&r->mu));
    snprintf(url, sizeof(url), "%s/_meridian/v1/replication/snapshot?from=%s", p->endpoint,
             self_region(r));
    char *endpoint = xstrdup(p->endpoint);
    AZ(pthread_mutex_unlock(&r->mu));
    int64_t started = util_now_ms();
    json_t *snap = peer_get_json(p, url, 60000, e);
    if (snap == NULL) {
        free(endpoint);
        return -1;
    }
    json_t *hj = json_object_get(snap, "horizon");
    size_t nh = json_array_size(hj);
    struct meta_horizon *h = xcalloc(nh + 1, sizeof(*h));
    for (size_t i = 0; i < nh; i++) {
        json_t *it = json_array_get(hj, i);
        const char *origin = json_string_value(json_object_get(it, "origin"));
        h[i].origin = xstrdup(origin ? origin : "");
        h[i].seq = json_integer_value(json_object_get(it, "seq"));
        h[i].hlc = json_integer_value(json_object_get(it, "hlc"));
    }
    log_info("repl",
             "catching up from a snapshot of %s (its log no longer holds what this "
             "region lacks)",
             p->location);
    size_t n_objects = merge_records(p, json_object_get(snap, "objects"), true);
    n_objects += merge_records(p, json_object_get(snap, "objects"), false);
    authz_invalidate(r->reg->authz);
    /* Every repository of either side: one the peer no longer lists may hold deletes. */
    struct meta_name_list local = {0};
    ms_of(r)->ops->repo_list(ms_of(r), "", -1, &local, e);
    json_t *repos = json_object_get(snap, "repositories");
    json_t *all = json_array();
    for (size_t i = 0; i < json_array_size(repos); i++) {
        if (json_is_string(json_array_get(repos, i)))
            json_array_append(all, json_array_get(repos, i));
    }
    for (size_t i = 0; i < local.n; i++)
        json_array_append_new(all, json_string(local.names[i]));
    meta_name_list_fini(&local);
    size_t n_repos = 0, n_records = 0, n_forgot = 0;
    int result = 0;
    struct err pe = {0};
    json_t *policies = residency_policies(ms_of(r), &pe);
    if (policies == NULL)
        result = err_set(e, pe.code, "%s", err_message(&pe));
    for (size_t i = 0; result == 0 && i < json_array_size(all) && !r->is_stopping; i++) {
        const char *repo = json_string_value(json_array_get(all, i));
        bool is_dup = false;
        for (size_t k = 0; k < i && !is_dup; k++)
            is_dup = strcmp(json_string_value(json_array_get(all, k)), repo) == 0;
        if (is_dup)
            continue;
        struct err re = {0};
        if (residency_check(ms_of(r), repo, self_region(r), &re) != 0) {
            if (re.code == ERR_DENIED)
                continue; /* not held here (a residency policy): nothing to ask for */
            result = err_set(e, re.code, "%s", err_message(&re));
            break;
        }
        char *esc = escape_repo(repo);
        snprintf(url, sizeof(url),
                 "%s/_meridian/v1/replication/state?repository=%s&status=1&from=%s", endpoint,
                 esc, self_region(r));
        free(esc);
        struct httpc_response resp;
        httpc_response_init(&resp, REPL_EVENTS_BODY_MAX);
        int rc = peer_call(r, "GET", url, NULL, 60000, &resp, e);
        json_t *state = NULL;
        if (rc == 0 && resp.status == 200 && !resp.body.is_too_big) {
            json_error_t je;
            state = json_loadb(resp.body.data, resp.body.len, 0, &je);
        }
        long status = resp.status;
        httpc_response_fini(&resp);
        if (rc == 0 && status == 403) {
            /* the peer's policies forbid it to tell this region (newer than ours): skip */
            log_warn("repl", "snapshot: %s withholds %s from this region (residency)",
                     p->location, repo);
            continue;
        }
        if (state == NULL) {
            if (rc == 0)
                err_set(e, ERR_UNAVAILABLE, "peer answered %ld", status);
            result = -1;
            break;
        }
        json_t *items = json_object_get(state, "state");
        n_records += merge_records(p, items, false);
        /* Deletes win only where the peer may hold the repository: a peer a residency
         * policy keeps out of it has none of its records (and its horizon still passed
         * them, over the redacted stand-ins), which says nothing about deletes. */
        if (residency_allows(policies, repo, p->location))
            n_forgot += forget_deleted(r, repo, items, h, nh);
        n_repos++;
        json_decref(state);
    }
    json_decref(policies);
    json_decref(all);
    if (result == 0 && r->is_stopping)
        result = err_set(e, ERR_UNAVAILABLE, "stopping");
    if (result == 0)
        result = ms_of(r)->ops->log_adopt(ms_of(r), p->location, h, nh, e);
    if (result == 0)
        log_info("repl",
                 "caught up from a snapshot of %s: %zu objects, %zu repositories, %zu "
                 "records merged, %zu deleted records removed, in %" PRId64 " ms",
                 p->location, n_objects, n_repos, n_records, n_forgot, util_now_ms() - started);
    meta_horizon_list_fini(h, nh);
    json_decref(snap);
    free(endpoint);
    repl_kick(r);
    repl_log_grew(r);
    return result;
}

/* The peer lost events of its own name this region holds (restored from an older copy of
 * its data, or a new region under a removed one's name), and opened its database at clock
 * opened: its reports from before are void. Recorded as a replicated object (RESTORED_KIND)
 * unless one at least as recent is here already: it drops them here at once, in every region
 * it reaches (relays included), and makes the peer report what it holds again. */
static void note_restored(struct repl *r, const char *peer, int64_t opened)
{
    struct metastore *ms = ms_of(r);
    struct err e = {0};
    char *have = NULL;
    if (ms->ops->object_get(ms, RESTORED_KIND, peer, &have, &e) == 0) {
        json_error_t je;
        json_t *v = json_loads(have, 0, &je);
        json_int_t known = json_integer_value(json_object_get(v, "opened"));
        json_decref(v);
        free(have);
        if (known >= opened)
            return;
    } else if (e.code != ERR_NOT_FOUND) {
        log_warn("repl", "failed to read what is known of %s's restore: %s", peer,
                 err_message(&e));
        return;
    }
    char value[64];
    snprintf(value, sizeof(value), "{\"opened\":%" PRId64 "}", opened);
    memset(&e, 0, sizeof(e));
    if (ms->ops->object_put(ms, RESTORED_KIND, peer, value, &e) != 0) {
        log_warn("repl", "failed to record that %s was restored: %s", peer, err_message(&e));
        return;
    }
    log_warn("repl",
             "%s was restored from an older copy of its data (it lost events of its name this "
             "region holds): its reports from before it reopened are void until it reports "
             "again",
             peer);
}

static void *puller_main(void *arg)
{
    struct peer *p = arg;
    struct repl *r = p->r;
    int64_t backoff_ms = 200;
    /* Know at once whether it answers, rather than after the first long poll. The peer's
     * endpoint may be replaced under r->mu (sync_peers): read only copies. */
    AZ(pthread_mutex_lock(&r->mu));
    char *location = xstrdup(p->location), *endpoint = xstrdup(p->endpoint);
    AZ(pthread_mutex_unlock(&r->mu));
    log_info("repl", "replicating with %s at %s", location, endpoint);
    probe_one(r, location, endpoint);
    free(location);
    free(endpoint);
    while (!peer_should_stop(p)) {
        struct err e = {0};
        struct meta_vv vv = {0};
        int64_t cursor = 0;
        if (!registry_is_owner(r->reg)) {
            nap(r, 1000); /* another node of the region pulls */
            continue;
        }
        if (ms_of(r)->ops->vv_get(ms_of(r), &vv, &e) != 0 ||
            ms_of(r)->ops->cursor_get(ms_of(r), p->location, &cursor, &e) != 0) {
            meta_vv_fini(&vv);
            nap(r, 1000);
            continue;
        }
        /* The newest event of the peer's name held here: the peer answers whether its log
         * holds that very event (if not, it was restored from an older copy). */
        int64_t held_seq = 0, held_hlc = 0;
        if (ms_of(r)->ops->origin_newest(ms_of(r), p->location, &held_seq, &held_hlc, &e) != 0)
            held_seq = 0;
        struct buf url;
        buf_init(&url, 64 * 1024);
        AZ(pthread_mutex_lock(&r->mu));
        buf_printf(&url, "%s/_meridian/v1/replication/events?after=%" PRId64 "&wait=%d&max=%d"
                         "&from=%s",
                   p->endpoint, cursor, REPL_POLL_WAIT_S, REPL_BATCH_MAX, self_region(r));
        AZ(pthread_mutex_unlock(&r->mu));
        if (held_seq > 0 && held_hlc > 0)
            buf_printf(&url, "&held_seq=%" PRId64 "&held_hlc=%" PRId64, held_seq, held_hlc);
        buf_appends(&url, "&vv=");
        repl_codec_vv_to_string(&vv, &url);
        meta_vv_fini(&vv);
        struct httpc_response resp;
        httpc_response_init(&resp, REPL_EVENTS_BODY_MAX);
        int rc = peer_call(r, "GET", url.data, NULL, (REPL_POLL_WAIT_S + 5) * 1000L, &resp, &e);
        buf_fini(&url);
        json_t *body = NULL;
        if (rc == 0 && resp.status == 200 && !resp.body.is_too_big) {
            json_error_t je;
            body = json_loadb(resp.body.data, resp.body.len, 0, &je);
        }
        if (rc == 0 && resp.status == 410) {
            /* Below the peer's log horizon: what is missing is in its tables. */
            httpc_response_fini(&resp);
            if (catch_up_from_snapshot(p, &e) != 0) {
                note_failure(p, "catch up from the snapshot", &e);
                if (nap(r, backoff_ms))
                    break;
                backoff_ms = backoff_ms * 2 > 5000 ? 5000 : backoff_ms * 2;
            }
            continue;
        }
        if (body == NULL) {
            if (rc == 0)
                peer_refusal(&resp, &e);
            /* The peer no longer counts this region as one of the registry's: the same
             * question a leave asks, checked the same way (leave_if_confirmed). */
            if (rc == 0 && resp.status == 403 &&
                strstr(err_message(&e), "is not a region of this registry") != NULL)
                leave_check_soon(r);
            httpc_response_fini(&resp);
            note_failure(p, "pull events", &e);
            if (nap(r, backoff_ms))
                break;
            backoff_ms = backoff_ms * 2 > 5000 ? 5000 : backoff_ms * 2;
            continue;
        }
        httpc_response_fini(&resp);
        backoff_ms = 200;
        json_t *restored = json_object_get(json_object_get(body, "restored"), "opened");
        bool is_restored = json_is_integer(restored) && json_integer_value(restored) > 0;
        if (is_restored)
            note_restored(r, p->location, json_integer_value(restored));
        note_relayed_acks(r, p->location, json_object_get(body, "acks"));
        json_t *events = json_object_get(body, "events");
        json_int_t last = json_integer_value(json_object_get(body, "last"));
        json_t *head_v = json_object_get(body, "head");
        json_int_t head = json_integer_value(head_v);
        /* A peer's positions must add up: never past its own head (a cursor moved there
         * would skip every later event of that peer), and a head below what this region
         * has read means its log restarted (restored from an older copy): read it again
         * from its start; the version vector skips what was applied. */
        if (json_is_integer(head_v) && head < cursor) {
            log_warn("repl",
                     "%s's log restarted below what this region read of it (its head %" PRId64
                     ", read up to %" PRId64 "): reading it again from its start",
                     p->location, (int64_t)head, cursor);
            ms_of(r)->ops->cursor_set(ms_of(r), p->location, 0, &e);
            json_decref(body);
            continue;
        }
        if (json_is_integer(head_v) && last > head)
            last = head;
        bool any_pending = false, is_stuck = false;
        int64_t next = apply_batch(p, events, cursor, &any_pending, &is_stuck);
        size_t n_events = json_array_size(events);
        /* With every event of the batch handled, resume after what the peer examined. */
        if (next >= 0 && (n_events == 0 || next == json_integer_value(json_object_get(
                                                      json_array_get(events, n_events - 1),
                                                      "seq"))))
            next = last > next ? last : next;
        if (next > cursor)
            ms_of(r)->ops->cursor_set(ms_of(r), p->location, next, &e);
        double lag_s = 0;
        if (n_events > 0) {
            uint64_t first_hlc = (uint64_t)json_integer_value(
                json_object_get(json_array_get(events, 0), "hlc"));
            lag_s = (double)(util_now_ms() - hlc_wall_ms(first_hlc)) / 1000.0;
            if (lag_s < 0)
                lag_s = 0;
        }
        AZ(pthread_mutex_lock(&r->mu));
        p->failures = 0;
        p->last_ok_ms = util_now_ms();
        p->lag_events = head > next ? (int64_t)(head - next) : 0;
        p->lag_seconds = p->lag_events > 0 ? lag_s : 0;
        AZ(pthread_mutex_unlock(&r->mu));
        json_decref(body);
        if (n_events > 0)
            repl_log_grew(r); /* relayed: this region's own pollers get them at once */
        if (any_pending)
            repl_kick(r);
        /* Only events waiting for one this peer cannot send: ask again later, not at once
         * (the peer would answer the same batch at once, for as long as the gap lasts). The
         * same for a restored peer with nothing to send: it answers at once (not held) until
         * it has caught up on its own name. */
        if ((next < 0 || is_stuck || (is_restored && n_events == 0)) && nap(r, 1000))
            break;
    }
    log_debug("repl", "puller for %s exits", p->location);
    /* Detached: once counted out, the store may close before this thread has exited. */
    ms_of(r)->ops->thread_release(ms_of(r));
    AZ(pthread_mutex_lock(&r->mu));
    r->n_pullers--;
    /* A peer still in the set is freed by repl_free; a removed one is ours to free. */
    bool is_ours = p->is_stopping && find_peer(r, p->location) != p;
    if (is_ours) {
        free(p->location);
        free(p->endpoint);
        free(p);
    }
    AZ(pthread_cond_broadcast(&r->cv));
    AZ(pthread_mutex_unlock(&r->mu));
    return NULL;
}

/* Fetching content ---------------------------------------------------------------- */

/* Peers ordered nearest first (by measured round trip), reachable ones before the
 * rest. Returns copies of (location, endpoint) pairs; caller frees. */
struct peer_ref {
    char *location;
    char *endpoint;
    double rtt_ms;          /* sort key: the round trip, pushed back by failures */
    double measured_rtt_ms; /* the round trip itself (1e9 before the first probe) */
};

static bool is_listed(char *const *names, const char *name)
{
    for (size_t i = 0; names && names[i]; i++) {
        if (strcmp(names[i], name) == 0)
            return true;
    }
    return false;
}

static int by_rtt(const void *a, const void *b)
{
    const struct peer_ref *x = a, *y = b;
    return x->rtt_ms < y->rtt_ms ? -1 : x->rtt_ms > y->rtt_ms ? 1 : 0;
}

/* The peers named in only (every peer when only is NULL), nearest first; those marked
 * Unreachable come last, after those with a recent failure. */
static struct peer_ref *peers_ranked(struct repl *r, char *const *only, size_t *n)
{
    AZ(pthread_mutex_lock(&r->mu));
    int64_t now = util_now_ms();
    size_t count = 0;
    for (struct peer *p = r->peers; p; p = p->next)
        count++;
    struct peer_ref *out = xcalloc(count + 1, sizeof(*out));
    size_t i = 0;
    for (struct peer *p = r->peers; p; p = p->next) {
        if (only && !is_listed(only, p->location))
            continue;
        out[i].location = xstrdup(p->location);
        out[i].endpoint = xstrdup(p->endpoint);
        out[i].measured_rtt_ms = p->rtt_ms;
        out[i].rtt_ms = p->rtt_ms + (peer_is_unreachable(p, now) ? 2e9 : p->failures ? 1e9 : 0);
        i++;
    }
    AZ(pthread_mutex_unlock(&r->mu));
    qsort(out, i, sizeof(*out), by_rtt);
    *n = i;
    return out;
}

static struct peer_ref *peers_by_distance(struct repl *r, size_t *n)
{
    return peers_ranked(r, NULL, n);
}

static void peer_refs_free(struct peer_ref *refs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(refs[i].location);
        free(refs[i].endpoint);
    }
    free(refs);
}

static void count_peer(struct repl *r, const char *location, uint64_t bytes, int retries,
                       int failures)
{
    AZ(pthread_mutex_lock(&r->mu));
    struct peer *p = find_peer(r, location);
    if (p) {
        p->bytes_copied += bytes;
        p->fetch_retries += (uint64_t)retries;
        p->fetch_failures += (uint64_t)failures;
    }
    AZ(pthread_mutex_unlock(&r->mu));
}

/* Claims key for this worker; false if another worker has it. */
static bool inflight_claim(struct repl *r, const char *key, int64_t total)
{
    AZ(pthread_mutex_lock(&r->mu));
    for (struct inflight *f = r->inflight; f; f = f->next) {
        if (strcmp(f->key, key) == 0) {
            AZ(pthread_mutex_unlock(&r->mu));
            return false;
        }
    }
    struct inflight *f = xcalloc(1, sizeof(*f));
    snprintf(f->key, sizeof(f->key), "%s", key);
    f->total = total;
    /* The first progress event goes out a PROGRESS_INTERVAL_MS after the start, moving
     * or not: a copy that ends sooner sends only its final state. */
    f->done_sent = -1;
    f->sent_ms = util_now_ms();
    f->next = r->inflight;
    r->inflight = f;
    AZ(pthread_mutex_unlock(&r->mu));
    return true;
}

static void inflight_release(struct repl *r, const char *key)
{
    AZ(pthread_mutex_lock(&r->mu));
    for (struct inflight **pp = &r->inflight; *pp; pp = &(*pp)->next) {
        if (strcmp((*pp)->key, key) == 0) {
            struct inflight *f = *pp;
            *pp = f->next;
            free(f);
            break;
        }
    }
    AZ(pthread_cond_broadcast(&r->cv));
    AZ(pthread_mutex_unlock(&r->mu));
}

/* One pending manifest whose blobs are being fetched, several at once. The per-blob
 * progress sums into the manifest's in-flight entry (its live bytesCopied). */
struct fetch_job {
    struct repl *r;
    const struct meta_pending *p;
    char key[600];
    char **sources;         /* regions that hold the content, NULL-terminated */
    int64_t *blob_done;     /* per ref: bytes here so far; under r->mu */
    size_t next;            /* next ref to take; under r->mu */
    bool is_failed;         /* under r->mu */
    struct err err;         /* the first failure; under r->mu */
};

struct fetch_sink {
    struct upload_state *st;
    struct err err;
    uint64_t received;
    struct fetch_job *job;      /* the manifest this blob is fetched for, or NULL */
    size_t ref;                 /* index of the blob in job->p->refs */
    struct repl *r;
};

static void job_progress(struct fetch_job *job, size_t ref, int64_t done)
{
    struct repl *r = job->r;
    AZ(pthread_mutex_lock(&r->mu));
    job->blob_done[ref] = done;
    int64_t sum = 0;
    for (size_t i = 0; i < job->p->n_refs; i++)
        sum += job->blob_done[i];
    for (struct inflight *f = r->inflight; f; f = f->next) {
        if (strcmp(f->key, job->key) == 0)
            f->done = sum;
    }
    AZ(pthread_mutex_unlock(&r->mu));
}

static int on_fetch_bytes(void *arg, long status, const void *p, size_t n)
{
    struct fetch_sink *fs = arg;
    /* A peer that ignored our Range sends the whole blob again: start over. */
    if (status == 200 && fs->received == 0 && fs->st->offset > 0 &&
        upload_sessions_truncate(fs->r->reg->uploads, fs->st, 0, &fs->err) != 0)
        return -1;
    if (upload_sessions_append(fs->r->reg->uploads, fs->st, p, n, &fs->err) != 0)
        return -1;
    fs->received += n;
    if (fs->job)
        job_progress(fs->job, fs->ref, (int64_t)fs->st->offset);
    return 0;
}

/* Upload-session id for a fetch of d: derived from the digest so that a fetch broken
 * by a crash resumes from the bytes already on disk. */
static void fetch_id(const struct digest *d, char id[33])
{
    memcpy(id, digest_hex(d), 32);
    id[32] = '\0';
}

/* 0 when a peer, asked nearest first, links blob d in repo (a HEAD of the blob in that
 * repository, which a peer answers only for its own link); else ERR_BLOB_UNKNOWN. */
static int peer_links_blob(struct repl *r, const char *repo, const struct digest *d,
                           struct err *e)
{
    size_t n_peers;
    struct peer_ref *peers = peers_by_distance(r, &n_peers);
    bool is_linked = false;
    for (size_t i = 0; i < n_peers && !is_linked && !r->is_stopping; i++) {
        char url[2048];
        snprintf(url, sizeof(url), "%s/v2/%s/blobs/%s", peers[i].endpoint, repo, d->str);
        struct httpc_response resp;
        struct err ignore = {0};
        httpc_response_init(&resp, 1024);
        is_linked = peer_call(r, "HEAD", url, NULL, LINK_CHECK_TIMEOUT_MS, &resp, &ignore) == 0 &&
                    resp.status == 200;
        httpc_response_fini(&resp);
    }
    peer_refs_free(peers, n_peers);
    if (!is_linked)
        return err_set(e, ERR_BLOB_UNKNOWN, "no region holds %s in %s", d->str, repo);
    return 0;
}

/* Sources that went silent count as failures of the peer (two make it Unreachable), so
 * the next fetch starts elsewhere without waiting for the round-trip probe. */
static void note_sources(struct repl *r, const struct peer_ref *peers,
                         const struct httpc_source_result *res, size_t n)
{
    AZ(pthread_mutex_lock(&r->mu));
    for (size_t i = 0; i < n; i++) {
        struct peer *p = res[i].is_transport_error ? find_peer(r, peers[i].location) : NULL;
        if (p)
            p->failures++;
    }
    AZ(pthread_mutex_unlock(&r->mu));
}

/* True when every source answered that it does not hold (or will not serve) the blob. */
static bool is_unknown_everywhere(const struct httpc_source_result *res, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        long s = res[i].status;
        if (!res[i].is_tried || res[i].is_transport_error || (s != 404 && s != 401 && s != 403))
            return false;
    }
    return n > 0;
}

/* True when blob d's bytes are here with the size the registry recorded for them (a copy
 * of another size is damaged: it is fetched again and the commit replaces it). */
static bool is_usable_here(struct registry *reg, const struct digest *d, uint64_t *size)
{
    struct err ignore = {0};
    uint64_t recorded;
    if (reg->bs->ops->stat(reg->bs, d, size, &ignore) != 0)
        return false;
    return reg->ms->ops->blob_find(reg->ms, d, &recorded, &ignore) != 0 || recorded == *size;
}

/* Fetches blob d of repo, resuming with Range, verifying the digest, committing it and
 * linking it into repo. Bytes already here (held for another repository, or fetched
 * earlier) are linked without a copy: at once when the caller knows repo holds d (a
 * manifest replicated from the region that accepted it), after a peer confirms that it
 * links d in repo when is_link_checked. Sources: the regions named in `sources` (known to
 * hold it; NULL: any peer), reachable and nearest first; a second is raced against the
 * first when the first is slow to answer, and one that goes silent is dropped within
 * FETCH_STALL_S. job (or NULL) receives the progress. */
static int fetch_blob(struct repl *r, const char *repo, const struct digest *d,
                      bool is_link_checked, char *const *sources, struct fetch_job *job,
                      size_t ref, struct err *e)
{
    struct registry *reg = r->reg;
    uint64_t size;
    struct err ignore = {0};
    if (is_usable_here(reg, d, &size)) {
        if (is_link_checked && peer_links_blob(r, repo, d, e) != 0)
            return -1;
        /* Under the GC lock, looking again: a blob DELETE may have removed the bytes
         * meanwhile (they were an orphan); then they are fetched like any others. */
        if (gc_fence_enter_shared(reg, e) != 0)
            return -1;
        bool is_here = is_usable_here(reg, d, &size);
        int rc = is_here ? reg->ms->ops->blob_link(reg->ms, repo, d, size, e) : 0;
        gc_fence_leave(reg, false);
        if (is_here)
            return rc;
    }
    char id[33];
    fetch_id(d, id);
    struct upload_state *st = NULL;
    if (upload_sessions_acquire_or_create(reg->uploads, id, repo, reg->cfg->upload_ttl_s, &st,
                                          e) != 0)
        return -1;
    size_t n_peers;
    struct peer_ref *peers = peers_ranked(r, sources, &n_peers);
    if (n_peers == 0 && sources) {
        /* No known holder is a peer any more (the origin left): ask everyone. */
        peer_refs_free(peers, n_peers);
        peers = peers_ranked(r, NULL, &n_peers);
    }
    int rc = -1;
    err_set(e, ERR_BLOB_UNKNOWN, "no region holds %s", d->str);
    char **urls = xcalloc(n_peers + 1, sizeof(*urls));
    for (size_t i = 0; i < n_peers; i++) {
        size_t len = strlen(peers[i].endpoint) + strlen(repo) + strlen(d->str) + 16;
        urls[i] = xmalloc(len);
        snprintf(urls[i], len, "%s/v2/%s/blobs/%s", peers[i].endpoint, repo, d->str);
    }
    struct httpc_source_result *res = xcalloc(n_peers + 1, sizeof(*res));
    const char *headers[3] = {r->fetch_header, r->auth_header[0] ? r->auth_header : NULL,
                              NULL};
    double rtt = n_peers > 0 && peers[0].measured_rtt_ms < 1e9 ? peers[0].measured_rtt_ms : 0;
    long hedge_ms = rtt * 4 > FETCH_HEDGE_MIN_MS ? (long)(rtt * 4) : FETCH_HEDGE_MIN_MS;
    /* A few attempts: each resumes where the last one broke. */
    for (int attempt = 0; n_peers > 0 && attempt < FETCH_ATTEMPTS_PER_CALL && rc != 0 &&
                          !r->is_stopping;
         attempt++) {
        struct fetch_sink fs = {.st = st, .r = r, .job = job, .ref = ref};
        struct httpc_get_any g = {.urls = (const char *const *)urls, .n_urls = n_peers,
                                  .headers = headers, .range_start = st->offset,
                                  .connect_timeout_ms = FETCH_CONNECT_TIMEOUT_MS,
                                  .stall_timeout_s = FETCH_STALL_S,
                                  .hedge_after_ms = n_peers > 1 ? hedge_ms : 0,
                                  .sink = on_fetch_bytes, .sink_arg = &fs,
                                  .interface = r->bind_ip[0] ? r->bind_ip : NULL,
                                  .abort = &r->is_stopping, .is_peer = true};
        int winner = -1;
        struct err te = {0};
        int64_t t0_ns = util_mono_ns();
        int grc = httpc_get_any(&g, res, &winner, &te);
        log_debug("repl", "fetch of %s from %s: %" PRIu64 " bytes in %.3f s", d->str,
                  winner >= 0 ? peers[winner].location : "none", fs.received,
                  (double)(util_mono_ns() - t0_ns) / 1e9);
        note_sources(r, peers, res, n_peers);
        if (winner >= 0)
            count_peer(r, peers[winner].location, fs.received, attempt > 0, 0);
        if (fs.err.code != ERR_NONE) {
            *e = fs.err;
            break; /* local disk trouble: no point asking others */
        }
        if (grc != 0) {
            if (te.code == ERR_RANGE_INVALID && st->offset > 0) {
                /* Our partial file is longer than the blob: start again. */
                upload_sessions_truncate(reg->uploads, st, 0, &ignore);
                continue;
            }
            if (is_unknown_everywhere(res, n_peers)) {
                err_set(e, ERR_BLOB_UNKNOWN, "no region asked holds %s", d->str);
                break;
            }
            *e = te;
            log_info("repl", "fetch of %s broke at %" PRIu64 " bytes: %s", d->str, st->offset,
                     err_message(&te));
            continue;
        }
        uint64_t got = st->offset;
        rc = gc_fence_enter_shared(reg, e);
        if (rc == 0) {
            rc = upload_sessions_commit(reg->uploads, st, d, e);
            if (rc == 0)
                rc = reg->ms->ops->blob_link(reg->ms, repo, d, got, e);
            gc_fence_leave(reg, false);
        }
        log_debug("repl", "commit of %s: %.3f s after the fetch began", d->str,
                  (double)(util_mono_ns() - t0_ns) / 1e9);
        if (rc != 0 && e->code == ERR_DIGEST_INVALID) {
            log_warn("repl", "content of %s from %s did not verify; fetching again", d->str,
                     peers[winner].location);
            upload_sessions_truncate(reg->uploads, st, 0, &ignore);
            count_peer(r, peers[winner].location, 0, 0, 1);
        }
    }
    for (size_t i = 0; i < n_peers; i++)
        free(urls[i]);
    free(urls);
    free(res);
    peer_refs_free(peers, n_peers);
    if (rc == 0) {
        upload_sessions_delete(reg->uploads, st);
        /* size was only set if the bytes were here already: read what was committed. */
        if (reg->bs->ops->stat(reg->bs, d, &size, &ignore) == 0)
            metrics_count_blob_committed(size);
    } else if (st->offset == 0) {
        /* Nothing to resume from: leave no session behind (a pull of a digest no peer
         * holds must not leave a file per digest asked). */
        upload_sessions_delete(reg->uploads, st);
    } else {
        upload_sessions_release(reg->uploads, st);
    }
    return rc;
}

/* Status rows and events of this region are written under status_mu, so a progress
 * event never lands after the final state of the same fetch. */
static void set_status(struct repl *r, const char *repo, const struct digest *d,
                       const char *state, int64_t done, int64_t total, const char *details,
                       bool is_event)
{
    struct meta_status st = {.region = (char *)self_region(r), .state = (char *)state,
                             .bytes_done = done, .bytes_total = total, .details = (char *)details};
    struct err e = {0};
    AZ(pthread_mutex_lock(&r->status_mu));
    /* Stamped under the lock: a progress event stamped later but written first would
     * otherwise win over this final state in the other regions (newest updatedMs wins). */
    st.updated_ms = util_now_ms();
    if (ms_of(r)->ops->status_set(ms_of(r), repo, d, &st, is_event, &e) != 0)
        log_warn("repl", "failed to record status of %s@%s: %s", repo, d->str, err_message(&e));
    AZ(pthread_mutex_unlock(&r->status_mu));
    if (is_event)
        repl_log_grew(r);
}

void repl_report_status(struct repl *r, const char *repo, const struct digest *d,
                        const char *state, const char *details)
{
    set_status(r, repo, d, state, 0, 0, details, true);
}

void repl_report_copies(struct repl *r, const char *repo, const struct digest *d, int64_t copies)
{
    struct meta_status *rows = NULL;
    size_t n = 0;
    struct err e = {0};
    AZ(pthread_mutex_lock(&r->status_mu));
    if (ms_of(r)->ops->status_list(ms_of(r), repo, d, &rows, &n, &e) != 0) {
        AZ(pthread_mutex_unlock(&r->status_mu));
        return;
    }
    const struct meta_status *own = NULL;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(rows[i].region, self_region(r)) == 0)
            own = &rows[i];
    }
    bool is_new = own == NULL || !own->has_copies || own->copies != copies;
    if (is_new) {
        /* visible here (the copies pass counts only those): Completed when never said */
        struct meta_status st = own ? *own
                                    : (struct meta_status){.region = (char *)self_region(r),
                                                           .state = "Completed", .details = ""};
        st.has_copies = true;
        st.copies = copies;
        st.updated_ms = util_now_ms();
        if (ms_of(r)->ops->status_set(ms_of(r), repo, d, &st, true, &e) != 0)
            log_warn("repl", "failed to record the copies of %s@%s: %s", repo, d->str,
                     err_message(&e));
    }
    AZ(pthread_mutex_unlock(&r->status_mu));
    meta_status_free(rows, n);
    if (is_new)
        repl_log_grew(r);
}

static struct retry *retry_of(struct repl *r, const char *key, bool create)
{
    for (struct retry *t = r->retries; t; t = t->next) {
        if (strcmp(t->key, key) == 0)
            return t;
    }
    if (!create)
        return NULL;
    struct retry *t = xcalloc(1, sizeof(*t));
    snprintf(t->key, sizeof(t->key), "%s", key);
    t->next = r->retries;
    r->retries = t;
    return t;
}

static void retry_forget(struct repl *r, const char *key)
{
    for (struct retry **pp = &r->retries; *pp; pp = &(*pp)->next) {
        if (strcmp((*pp)->key, key) == 0) {
            struct retry *t = *pp;
            *pp = t->next;
            free(t);
            return;
        }
    }
}

/* Regions known to hold the content of p: the region that put it and every region that
 * announced it Completed (status events). Fetching only from them keeps a region that
 * has nothing (or that nobody can reach) out of the way. NULL (any peer) when none is
 * known, as for content recorded before origins were. */
static char **holders_of(struct repl *r, const struct meta_pending *p)
{
    struct meta_status *rows = NULL;
    size_t n_rows = 0;
    struct err e = {0};
    if (ms_of(r)->ops->status_list(ms_of(r), p->repo, &p->digest, &rows, &n_rows, &e) != 0)
        n_rows = 0;
    char **out = xcalloc(n_rows + 2, sizeof(*out));
    size_t n = 0;
    if (p->origin && p->origin[0] && strcmp(p->origin, self_region(r)) != 0)
        out[n++] = xstrdup(p->origin);
    for (size_t i = 0; i < n_rows; i++) {
        if (strcmp(rows[i].state, "Completed") == 0 && !is_listed(out, rows[i].region) &&
            strcmp(rows[i].region, self_region(r)) != 0)
            out[n++] = xstrdup(rows[i].region);
    }
    meta_status_free(rows, n_rows);
    if (n == 0) {
        free(out);
        return NULL;
    }
    return out;
}

/* Takes the blobs of a job one after another until none is left or one failed. */
static void *job_worker(void *arg)
{
    struct fetch_job *job = arg;
    struct repl *r = job->r;
    const struct meta_pending *p = job->p;
    for (;;) {
        AZ(pthread_mutex_lock(&r->mu));
        while (job->next < p->n_refs && p->refs[job->next].is_manifest)
            job->next++; /* children become visible through their own events */
        size_t i = job->next;
        bool is_over = i >= p->n_refs || job->is_failed || r->is_stopping;
        if (!is_over)
            job->next++;
        AZ(pthread_mutex_unlock(&r->mu));
        if (is_over)
            return NULL;
        /* Bytes already here (a shared base layer, most often): nothing to fetch, and
         * pending_complete links them into the repository in its own transaction, so no
         * queueing behind another worker's claim on the same blob. */
        uint64_t have;
        struct err absent = {0};
        int64_t want = p->ref_sizes[i];
        if (r->reg->bs->ops->stat(r->reg->bs, &p->refs[i].digest, &have, &absent) == 0 &&
            (want < 0 || have == (uint64_t)want)) {
            job_progress(job, i, want > 0 ? want : 0);
            continue;
        }
        char blob_key[600];
        snprintf(blob_key, sizeof(blob_key), "blob:%s", p->refs[i].digest.str);
        /* Another worker may be fetching the same blob for another manifest: wait for
         * it rather than copy it twice. */
        while (!inflight_claim(r, blob_key, 0) && !r->is_stopping)
            nap(r, 50);
        struct err e = {0};
        int rc = fetch_blob(r, p->repo, &p->refs[i].digest, false, job->sources, job, i, &e);
        inflight_release(r, blob_key);
        if (rc == 0) {
            job_progress(job, i, p->ref_sizes[i] > 0 ? p->ref_sizes[i] : 0);
            continue;
        }
        AZ(pthread_mutex_lock(&r->mu));
        if (!job->is_failed) {
            job->is_failed = true;
            job->err = e;
        }
        AZ(pthread_mutex_unlock(&r->mu));
    }
}

/* Marks a manifest's in-flight entry as ending, so no progress event is sent for it
 * any more (emit_progress). */
static void inflight_finishing(struct repl *r, const char *key)
{
    AZ(pthread_mutex_lock(&r->mu));
    for (struct inflight *f = r->inflight; f; f = f->next) {
        if (strcmp(f->key, key) == 0)
            f->is_finishing = true;
    }
    AZ(pthread_mutex_unlock(&r->mu));
}

/* Filtered replication: a manifest recorded from a region that does not hold it came
 * without its document (placement); it is fetched by digest from a holder (the origin and
 * the regions that reported Completed, nearest first, then anyone), verified and stored. */
static int fetch_manifest_body(struct repl *r, const struct meta_pending *p, char *const *sources,
                               struct err *e)
{
    bool is_missing = false;
    if (ms_of(r)->ops->manifest_body_missing(ms_of(r), p->repo, &p->digest, &is_missing, e) != 0)
        return -1;
    if (!is_missing)
        return 0;
    size_t n_peers;
    struct peer_ref *peers = peers_ranked(r, sources, &n_peers);
    if (n_peers == 0 && sources) {
        peer_refs_free(peers, n_peers);
        peers = peers_ranked(r, NULL, &n_peers);
    }
    int rc = err_set(e, ERR_MANIFEST_UNKNOWN, "no region holds manifest %s", p->digest.str);
    const char *headers[4] = {r->fetch_header, "Accept: */*",
                              r->auth_header[0] ? r->auth_header : NULL, NULL};
    for (size_t i = 0; i < n_peers && rc != 0 && !r->is_stopping; i++) {
        char url[2048];
        snprintf(url, sizeof(url), "%s/v2/%s/manifests/%s", peers[i].endpoint, p->repo,
                 p->digest.str);
        struct httpc_response resp;
        httpc_response_init(&resp, MANIFEST_MAX_BYTES);
        struct httpc_request rq = {.method = "GET", .url = url, .headers = headers,
                                   .timeout_ms = 15000, .connect_timeout_ms = 5000,
                                   .interface = r->bind_ip[0] ? r->bind_ip : NULL,
                                   .abort = &r->is_stopping, .is_peer = true};
        struct err he = {0};
        if (httpc_do(&rq, &resp, &he) == 0 && resp.status == 200 && !resp.body.is_too_big)
            rc = ms_of(r)->ops->manifest_body_set(ms_of(r), p->repo, &p->digest, resp.body.data,
                                                  resp.body.len, e);
        httpc_response_fini(&resp);
    }
    peer_refs_free(peers, n_peers);
    return rc;
}

static bool is_visible_here(struct repl *r, const char *repo, const struct digest *d)
{
    struct meta_manifest m = {0};
    struct err ignore = {0};
    bool is_visible = ms_of(r)->ops->manifest_get(ms_of(r), repo, d->str, &m, &ignore) == 0;
    meta_manifest_fini(&m);
    return is_visible;
}

/* Brings one pending manifest's content here and makes it visible. */
static void complete_pending(struct repl *r, const struct meta_pending *p)
{
    char key[600];
    snprintf(key, sizeof(key), "%s@%s", p->repo, p->digest.str);
    AZ(pthread_mutex_lock(&r->mu));
    struct retry *t = retry_of(r, key, false);
    bool is_waiting = t && t->next_ms > util_now_ms();
    AZ(pthread_mutex_unlock(&r->mu));
    if (is_waiting)
        return;
    int64_t total = 0;
    size_t n_blobs = 0;
    for (size_t i = 0; i < p->n_refs; i++) {
        total += p->ref_sizes[i] > 0 ? p->ref_sizes[i] : 0;
        n_blobs += !p->refs[i].is_manifest;
    }
    if (!inflight_claim(r, key, total))
        return;
    /* Every fetcher works through a pending list of its own: one read before another
     * fetcher showed p finds it visible once the claim is free. Shown again, it would
     * send a second Completed event and fire the push webhooks again (new ids). */
    if (is_visible_here(r, p->repo, &p->digest)) {
        inflight_release(r, key);
        return;
    }
    /* Here at once; elsewhere with the first progress event (emit_progress). */
    set_status(r, p->repo, &p->digest, "InProgress", 0, total, "", false);
    struct fetch_job job = {.r = r, .p = p, .sources = holders_of(r, p),
                            .blob_done = xcalloc(p->n_refs + 1, sizeof(int64_t))};
    if (fetch_manifest_body(r, p, job.sources, &job.err) != 0)
        job.is_failed = true; /* retried like a blob that could not be fetched */
    /* Shallow: the metadata now, the blobs on first pull (oci_blobs.c's pull-through). */
    bool is_shallow = placement_is_shallow(r->reg, p->repo, &p->digest);
    if (is_shallow)
        job.next = p->n_refs;
    snprintf(job.key, sizeof(job.key), "%s", key);
    /* Config and layers at once: each waits a round trip or more for its first byte. */
    size_t n_threads = n_blobs < FETCH_PARALLEL ? n_blobs : FETCH_PARALLEL;
    pthread_t threads[FETCH_PARALLEL];
    size_t n_started = 0;
    for (size_t i = 1; i < n_threads; i++) {
        if (pthread_create(&threads[n_started], NULL, job_worker, &job) == 0)
            n_started++;
    }
    job_worker(&job);
    for (size_t i = 0; i < n_started; i++)
        AZ(pthread_join(threads[i], NULL));
    struct err e = job.err;
    bool is_ok = !job.is_failed;
    int64_t done = 0;
    for (size_t i = 0; i < p->n_refs; i++)
        done += job.blob_done[i];
    free(job.blob_done);
    repl_free_names(job.sources);
    bool is_waiting_child = false;
    if (is_ok && !r->is_stopping) {
        /* Visible means pullable: under the GC lock (shared), every blob must still be here
         * with its size: a copy quarantined since it was looked at (registry_blob_recover
         * records the loss under the exclusive lock) sends the manifest back to the queue. */
        int crc = gc_fence_enter_shared(r->reg, &e);
        bool is_fenced = crc == 0;
        /* Completed covers the children and referrers known now (filtered replication). */
        if (crc == 0 && !placement_dependents_ready(r->reg, p->repo, &p->digest))
            crc = err_set(&e, ERR_MANIFEST_BLOB_UNKNOWN, "a referrer of %s is not here yet",
                          p->digest.str);
        for (size_t i = 0; i < p->n_refs && crc == 0 && !is_shallow; i++) {
            uint64_t have;
            if (!p->refs[i].is_manifest && !is_usable_here(r->reg, &p->refs[i].digest, &have))
                crc = err_set(&e, ERR_BLOB_UNKNOWN, "blob %s went away before %s was shown",
                              p->refs[i].digest.str, p->digest.str);
        }
        /* The manifest is shown with its push deliveries, in one transaction (webhook.h),
         * for the tags it has then, read in the same hold of hook_mu: a peer's tag applied
         * after that fires by itself (apply_batch), one before it is read here. */
        struct webhook_tx tx = {0};
        AZ(pthread_mutex_lock(&r->hook_mu));
        if (crc == 0 && is_shallow) {
            /* Completed (metadata only) with the visibility, as below. */
            struct meta_status done = {.region = (char *)self_region(r), .state = "Completed",
                                       .details = "Shallow: blobs are fetched on first pull"};
            AZ(pthread_mutex_lock(&r->status_mu));
            inflight_finishing(r, key);
            done.updated_ms = util_now_ms();
            crc = webhook_tx_begin(r->reg, &tx, &e);
            if (crc == 0)
                crc = ms_of(r)->ops->manifest_show_shallow(ms_of(r), p->repo, &p->digest, &done,
                                                           &e);
            if (crc == 0)
                crc = queue_shown(r, &tx, p, &e);
            crc = webhook_tx_end(&tx, crc, &e);
            AZ(pthread_mutex_unlock(&r->status_mu));
        }
        if (crc == 0 && !is_shallow) {
            /* Completed is written with the visibility (one transaction), under status_mu
             * and with the fetch finishing, so no progress event follows it (set_status). */
            struct meta_status done = {.region = (char *)self_region(r), .state = "Completed",
                                       .bytes_done = total, .bytes_total = total,
                                       .details = ""};
            AZ(pthread_mutex_lock(&r->status_mu));
            inflight_finishing(r, key);
            done.updated_ms = util_now_ms();
            crc = webhook_tx_begin(r->reg, &tx, &e);
            if (crc == 0)
                crc = ms_of(r)->ops->pending_complete(ms_of(r), p, &done, &e);
            if (crc == 0)
                crc = queue_shown(r, &tx, p, &e);
            crc = webhook_tx_end(&tx, crc, &e);
            AZ(pthread_mutex_unlock(&r->status_mu));
        }
        AZ(pthread_mutex_unlock(&r->hook_mu));
        if (is_fenced)
            gc_fence_leave(r->reg, false);
        if (crc == 0) {
            inflight_finishing(r, key);
            repl_log_grew(r); /* the Completed event: peers' polls get it at once */
            log_info("repl", "replicated %s@%s (%" PRId64 " bytes)", p->repo, p->digest.str,
                     total);
            AZ(pthread_mutex_lock(&r->mu));
            retry_forget(r, key);
            AZ(pthread_mutex_unlock(&r->mu));
        } else if (e.code == ERR_MANIFEST_BLOB_UNKNOWN) {
            is_waiting_child = true; /* a child manifest is not here yet */
        } else if (e.code == ERR_MANIFEST_UNKNOWN) {
            /* Deleted here during the copy: not shown, not announced Completed (a later
             * put of it records it pending again and is fetched anew), not retried. */
            inflight_finishing(r, key);
            AZ(pthread_mutex_lock(&r->mu));
            retry_forget(r, key);
            AZ(pthread_mutex_unlock(&r->mu));
            log_info("repl", "%s@%s: deleted in this region during its copy, fetch dropped",
                     p->repo, p->digest.str);
        } else if (e.code == ERR_CONFLICT) {
            /* Placement took it out of this region during the fetch (its region was
             * removed from the version's targets): not shown, not retried. Its progress
             * events may have followed the Removed report: placing it again reports
             * Removed anew where that is due, after them (status_mu). */
            inflight_finishing(r, key);
            AZ(pthread_mutex_lock(&r->mu));
            retry_forget(r, key);
            AZ(pthread_mutex_unlock(&r->mu));
            log_info("repl", "%s@%s: no longer held in this region, fetch dropped", p->repo,
                     p->digest.str);
            placement_place_digest(r->reg, p->repo, &p->digest);
        } else {
            is_ok = false;
        }
    }
    if (!is_ok && !r->is_stopping) {
        AZ(pthread_mutex_lock(&r->mu));
        t = retry_of(r, key, true);
        t->attempts++;
        int64_t delay_ms = 500LL << (t->attempts < 10 ? t->attempts : 10);
        if (delay_ms > r->reg->cfg->fetch_backoff_max_s * 1000)
            delay_ms = r->reg->cfg->fetch_backoff_max_s * 1000;
        t->next_ms = util_now_ms() + delay_ms;
        int attempts = t->attempts;
        AZ(pthread_mutex_unlock(&r->mu));
        bool is_failed = attempts >= FETCH_ATTEMPTS_BEFORE_FAILED;
        inflight_finishing(r, key);
        set_status(r, p->repo, &p->digest, is_failed ? "Failed" : "InProgress", done, total,
                   err_message(&e), is_failed && attempts == FETCH_ATTEMPTS_BEFORE_FAILED);
        /* a removal may have come during this attempt: Removed stays the last word then */
        placement_place_digest(r->reg, p->repo, &p->digest);
        log_warn("repl", "failed to replicate %s@%s (attempt %d, next in %" PRId64 " ms): %s",
                 p->repo, p->digest.str, attempts, delay_ms, err_message(&e));
    }
    (void)is_waiting_child;
    inflight_release(r, key);
}

static void *fetcher_main(void *arg)
{
    struct repl *r = arg;
    while (!r->is_stopping) {
        struct meta_pending *list = NULL;
        size_t n = 0;
        struct err e = {0};
        if (registry_is_owner(r->reg) &&
            ms_of(r)->ops->pending_list(ms_of(r), 64, &list, &n, &e) == 0) {
            for (size_t i = 0; i < n && !r->is_stopping; i++) {
                /* filtered replication: only what this region holds is fetched */
                if (placement_admit_pending(r->reg, list[i].repo, &list[i].digest))
                    complete_pending(r, &list[i]);
            }
            for (size_t i = 0; i < n; i++)
                meta_pending_fini(&list[i]);
            free(list);
        }
        AZ(pthread_mutex_lock(&r->mu));
        if (!r->is_kicked && !r->is_stopping) {
            struct timespec until;
            clock_gettime(CLOCK_REALTIME, &until);
            until.tv_sec += 1;
            pthread_cond_timedwait(&r->cv, &r->mu, &until);
        }
        r->is_kicked = false;
        AZ(pthread_mutex_unlock(&r->mu));
    }
    return NULL;
}

void repl_kick(struct repl *r)
{
    AZ(pthread_mutex_lock(&r->mu));
    r->is_kicked = true;
    AZ(pthread_cond_broadcast(&r->cv));
    AZ(pthread_mutex_unlock(&r->mu));
}

bool repl_progress(struct repl *r, const char *repo, const struct digest *d, int64_t *done,
                   int64_t *total)
{
    char key[600];
    snprintf(key, sizeof(key), "%s@%s", repo, d->str);
    bool found = false;
    AZ(pthread_mutex_lock(&r->mu));
    for (struct inflight *f = r->inflight; f; f = f->next) {
        if (strcmp(f->key, key) == 0) {
            *done = f->done;
            *total = f->total;
            found = true;
        }
    }
    AZ(pthread_mutex_unlock(&r->mu));
    return found;
}

int repl_fetch_blob_now(struct repl *r, const char *repo, const struct digest *d,
                        struct err *e)
{
    return repl_fetch_blob_within(r, repo, d, 0, e);
}

int repl_fetch_blob_within(struct repl *r, const char *repo, const struct digest *d,
                           int64_t wait_ms, struct err *e)
{
    /* Residency: no request brings content of a repository this region may not hold. */
    if (residency_check(ms_of(r), repo, self_region(r), e) != 0)
        return -1;
    char blob_key[600];
    snprintf(blob_key, sizeof(blob_key), "blob:%s", d->str);
    int64_t deadline_ms = util_now_ms() + wait_ms;
    while (!inflight_claim(r, blob_key, 0)) {
        if (nap(r, 50))
            return err_set(e, ERR_UNAVAILABLE, "shutting down");
        if (wait_ms > 0 && util_now_ms() >= deadline_ms)
            return err_set(e, ERR_BLOB_UNKNOWN, "%s is still on its way here", d->str);
    }
    /* Another request or worker may have linked it meanwhile; a link whose file is gone
     * or has the wrong size (quarantined by the scrub or an open) is fetched again. */
    uint64_t size, on_disk;
    struct err ignore = {0};
    int rc = 0;
    if (r->reg->ms->ops->blob_get(r->reg->ms, repo, d, &size, &ignore) != 0 ||
        r->reg->bs->ops->stat(r->reg->bs, d, &on_disk, &ignore) != 0 || on_disk != size)
        rc = fetch_blob(r, repo, d, true, NULL, NULL, 0, e);
    inflight_release(r, blob_key);
    return rc;
}

/* Pull never misses: manifests and tags ------------------------------------------------ */

/* A peer's lookup answer is awaited for twice its measured round trip plus this (its own
 * work, a loaded machine); a peer not measured yet counts as 1 s away. */
#define PULL_LOOKUP_MARGIN_MS 500
/* A pull waits for the manifest's content (a copy it started or a replication fetch
 * already running) when at most PULL_WAIT_BYTES are still missing here, for at most
 * PULL_WAIT_MS; a bigger image is a 404 until its copy, which goes on, is complete.
 * Concurrent pulls of the same reference wait for the first as long. */
#define PULL_WAIT_MS 5000
#define PULL_WAIT_BYTES (32 << 20)
#define PULL_COMPLETIONS_MAX 16 /* pull copies running beside requests at once */
#define PULL_LOOKUPS_MAX 8 /* pull-through lookups at the peers at once */

/* Waits until key is no longer in flight here, or until deadline_ms. */
static void wait_released(struct repl *r, const char *key, int64_t deadline_ms)
{
    AZ(pthread_mutex_lock(&r->mu));
    while (!r->is_stopping && util_now_ms() < deadline_ms) {
        bool is_held = false;
        for (struct inflight *f = r->inflight; f && !is_held; f = f->next)
            is_held = strcmp(f->key, key) == 0;
        if (!is_held)
            break;
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += 50 * 1000000L;
        if (until.tv_nsec >= 1000000000) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait(&r->cv, &r->mu, &until);
    }
    AZ(pthread_mutex_unlock(&r->mu));
}

/* "a/b" -> "a%2Fb" (caller frees). */
static char *escape_repo(const char *repo)
{
    char *esc = xmalloc(strlen(repo) * 3 + 1);
    size_t k = 0;
    for (const char *c = repo; *c; c++) {
        if (*c == '/') {
            memcpy(esc + k, "%2F", 3);
            k += 3;
        } else {
            esc[k++] = *c;
        }
    }
    esc[k] = '\0';
    return esc;
}

/* The pending record a merged manifest_put stands for (its references from the payload),
 * as the fetch workers would find it. false when the payload has no references list. */
static bool pending_of_event(const struct meta_event *ev, struct meta_pending *p)
{
    json_error_t je;
    json_t *pl = ev->payload ? json_loads(ev->payload, 0, &je) : NULL;
    json_t *refs = json_object_get(pl, "refs");
    struct err ignore = {0};
    memset(p, 0, sizeof(*p));
    if (!json_is_array(refs) || ev->repo == NULL || ev->digest == NULL ||
        digest_parse(ev->digest, strlen(ev->digest), &p->digest, &ignore) != 0) {
        json_decref(pl);
        return false;
    }
    size_t n = json_array_size(refs);
    p->repo = xstrdup(ev->repo);
    p->origin = xstrdup(ev->origin ? ev->origin : "");
    p->refs = xcalloc(n + 1, sizeof(*p->refs));
    p->ref_sizes = xcalloc(n + 1, sizeof(*p->ref_sizes));
    for (size_t i = 0; i < n; i++) {
        json_t *ref = json_array_get(refs, i);
        const char *d = json_string_value(json_object_get(ref, "digest"));
        if (d == NULL || digest_parse(d, strlen(d), &p->refs[p->n_refs].digest, &ignore) != 0)
            continue;
        p->refs[p->n_refs].is_manifest = json_is_true(json_object_get(ref, "isManifest"));
        p->ref_sizes[p->n_refs] = json_integer_value(json_object_get(ref, "size"));
        p->refs[p->n_refs].size = p->ref_sizes[p->n_refs];
        p->n_refs++;
    }
    json_decref(pl);
    return true;
}

/* A completion run for a pull, on its own thread so the request waits for it only so
 * long: the copy goes on and is kept when the request has given up. */
struct pull_completion {
    struct repl *r;
    struct meta_pending p;
    atomic_int refs;      /* the request and the thread */
    atomic_bool is_done;
};

static void pull_completion_unref(struct pull_completion *c)
{
    if (atomic_fetch_sub(&c->refs, 1) == 1) {
        meta_pending_fini(&c->p);
        free(c);
    }
}

static void *pull_completion_main(void *arg)
{
    struct pull_completion *c = arg;
    /* filtered replication: a region outside a version's targets never pulls it in */
    if (placement_admit_pending(c->r->reg, c->p.repo, &c->p.digest))
        complete_pending(c->r, &c->p);
    struct repl *r = c->r;
    /* Detached: once counted out, the store may close before this thread has exited. */
    ms_of(r)->ops->thread_release(ms_of(r));
    AZ(pthread_mutex_lock(&r->mu));
    atomic_store(&c->is_done, true);
    pull_completion_unref(c);
    r->n_completions--;
    AZ(pthread_cond_broadcast(&r->cv));
    AZ(pthread_mutex_unlock(&r->mu));
    return NULL;
}

/* Makes manifest p (taken over) visible here as a fetch worker would: its blobs fetched
 * (single-flight with the workers) and linked in p->repo before it shows. Waits for
 * that until deadline_ms; a fetch of it already running (a worker's) is waited for
 * the same way. */
static void complete_now(struct repl *r, struct meta_pending *p, int64_t deadline_ms)
{
    if (is_visible_here(r, p->repo, &p->digest)) {
        meta_pending_fini(p);
        return;
    }
    int64_t missing = 0;
    for (size_t i = 0; i < p->n_refs; i++) {
        uint64_t have;
        struct err absent = {0};
        if (!p->refs[i].is_manifest && p->ref_sizes[i] > 0 &&
            r->reg->bs->ops->stat(r->reg->bs, &p->refs[i].digest, &have, &absent) != 0)
            missing += p->ref_sizes[i];
    }
    if (missing > PULL_WAIT_BYTES)
        deadline_ms = util_now_ms(); /* started, not waited for */
    /* At most PULL_COMPLETIONS_MAX copies run beside requests (each a thread with its
     * fetch helpers); past that, or when stopping, the fetch workers take the manifest,
     * which the lookup left pending. */
    AZ(pthread_mutex_lock(&r->mu));
    bool is_started = !r->is_stopping && r->n_completions < PULL_COMPLETIONS_MAX;
    if (is_started)
        r->n_completions++;
    AZ(pthread_mutex_unlock(&r->mu));
    if (!is_started) {
        meta_pending_fini(p);
        repl_kick(r);
        return;
    }
    struct pull_completion *c = xcalloc(1, sizeof(*c));
    c->r = r;
    c->p = *p;
    memset(p, 0, sizeof(*p));
    atomic_init(&c->refs, 2);
    pthread_t t;
    if (pthread_create(&t, NULL, pull_completion_main, c) != 0) {
        pull_completion_unref(c);
        pull_completion_unref(c);
        AZ(pthread_mutex_lock(&r->mu));
        r->n_completions--;
        AZ(pthread_cond_broadcast(&r->cv));
        AZ(pthread_mutex_unlock(&r->mu));
        return;
    }
    AZ(pthread_detach(t));
    char key[600];
    snprintf(key, sizeof(key), "%s@%s", c->p.repo, c->p.digest.str);
    AZ(pthread_mutex_lock(&r->mu));
    while (!r->is_stopping && !atomic_load(&c->is_done) && util_now_ms() < deadline_ms) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += 50 * 1000000L;
        if (until.tv_nsec >= 1000000000) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait(&r->cv, &r->mu, &until);
    }
    AZ(pthread_mutex_unlock(&r->mu));
    /* A worker had it (complete_pending returned at once): its result is ours. */
    if (atomic_load(&c->is_done))
        wait_released(r, key, deadline_ms);
    pull_completion_unref(c);
}

/* Asks the peers, nearest reachable first, for what a pull of ref in repo needs (the
 * tag's register, the manifest, its children, their status rows) and merges it as
 * anti-entropy does; then makes what it names visible. true when a peer had the manifest. */
static bool pull_from_peers(struct repl *r, const char *repo, const char *ref,
                            int64_t deadline_ms)
{
    bool is_digest = strchr(ref, ':') != NULL;
    char *esc = escape_repo(repo);
    size_t n_peers;
    struct peer_ref *peers = peers_by_distance(r, &n_peers);
    bool is_found = false;
    for (size_t i = 0; i < n_peers && !is_found && !r->is_stopping; i++) {
        if (peers[i].rtt_ms >= 2e9)
            break; /* Unreachable ones come last: a true 404 must not wait for them */
        if (compact_peer_is_behind(r->reg, peers[i].location))
            continue; /* back from beyond the horizon: not a source until it caught up */
        int64_t left_ms = deadline_ms - util_now_ms();
        if (left_ms <= 0)
            break; /* the whole lookup is bounded, not each peer */
        double rtt = peers[i].measured_rtt_ms < 1e9 ? peers[i].measured_rtt_ms : 1000;
        long timeout_ms = (long)(2 * rtt) + PULL_LOOKUP_MARGIN_MS;
        if (timeout_ms > left_ms)
            timeout_ms = (long)left_ms;
        char url[2048];
        snprintf(url, sizeof(url),
                 "%s/_meridian/v1/replication/state?repository=%s&reference=%s&status=1"
                 "&from=%s",
                 peers[i].endpoint, esc, ref, self_region(r));
        struct httpc_response resp;
        struct err e = {0};
        httpc_response_init(&resp, REPL_EVENTS_BODY_MAX);
        atomic_fetch_add(&r->pull_lookups, 1);
        int rc = peer_call(r, "GET", url, NULL, timeout_ms, &resp, &e);
        json_t *body = NULL;
        if (rc == 0 && resp.status == 200) {
            json_error_t je;
            body = json_loadb(resp.body.data, resp.body.len, 0, &je);
        }
        httpc_response_fini(&resp);
        json_t *items = json_object_get(body, "state");
        struct meta_pending *found = xcalloc(json_array_size(items) + 1, sizeof(*found));
        size_t n_found = 0;
        char target[DIGEST_STR_MAX + 1] = "";
        if (is_digest)
            snprintf(target, sizeof(target), "%s", ref);
        int64_t tombs_before = compact_tombs_cutoff_hlc(r->reg, util_now_ms());
        for (size_t k = 0; k < json_array_size(items); k++) {
            struct meta_event ev;
            if (repl_codec_event_from_json(json_array_get(items, k), &ev, &e) != 0)
                continue;
            /* Stored as anti-entropy merges it: the replicated event that follows finds
             * it here and changes nothing; a tombstone expired here is not taken back. */
            if (merge_state(r, &ev, tombs_before, &e) != 0) {
                log_warn("repl", "failed to merge %s of %s from %s: %s", ev.kind, repo,
                         peers[i].location, err_message(&e));
            } else if (strcmp(ev.kind, "manifest_put") == 0 &&
                       pending_of_event(&ev, &found[n_found])) {
                n_found++;
            } else if (!is_digest && strcmp(ev.kind, "tag_set") == 0 && ev.name && ev.digest &&
                       strcmp(ev.name, ref) == 0) {
                snprintf(target, sizeof(target), "%s", ev.digest);
            }
            meta_event_fini(&ev);
        }
        json_decref(body);
        /* Child manifests (of an index) first: a parent shows only once they do. */
        for (int pass = 0; pass < 2; pass++) {
            for (size_t k = 0; k < n_found; k++) {
                bool is_target = strcmp(found[k].digest.str, target) == 0;
                if (is_target == (pass == 1) && found[k].repo != NULL)
                    complete_now(r, &found[k], deadline_ms);
                if (is_target)
                    is_found = true;
            }
        }
        for (size_t k = 0; k < n_found; k++)
            meta_pending_fini(&found[k]);
        free(found);
    }
    peer_refs_free(peers, n_peers);
    free(esc);
    return is_found;
}

int repl_pull_manifest(struct repl *r, const char *repo, const char *ref)
{
    struct err re = {0};
    if (residency_check(ms_of(r), repo, self_region(r), &re) != 0)
        return -1; /* not held here: never fetched for a pull either */
    char key[600];
    snprintf(key, sizeof(key), "pull:%s:%s", repo, ref);
    int64_t deadline_ms = util_now_ms() + PULL_WAIT_MS;
    if (!inflight_claim(r, key, 0)) {
        /* Single-flight: one lookup for any number of concurrent misses. */
        wait_released(r, key, deadline_ms);
        return 0;
    }
    /* Distinct misses (random tags) each make a lookup at every peer: at most
     * PULL_LOOKUPS_MAX run at once, past that a miss answers 404 at once. */
    if (atomic_fetch_add(&r->n_lookups, 1) >= PULL_LOOKUPS_MAX) {
        atomic_fetch_sub(&r->n_lookups, 1);
        inflight_release(r, key);
        return -1;
    }
    bool is_found = pull_from_peers(r, repo, ref, deadline_ms);
    atomic_fetch_sub(&r->n_lookups, 1);
    inflight_release(r, key);
    if (is_found) {
        atomic_fetch_add(&r->pull_served, 1);
        log_info("repl", "pulled %s:%s from a peer for a pull", repo, ref);
    }
    return is_found ? 0 : -1;
}

/* Long polls ------------------------------------------------------------------------ */

void repl_wait_register(struct repl *r, struct http_req *req, int64_t seen_head,
                        uint64_t seen_acks, int64_t deadline_ms)
{
    struct waiter *w = xcalloc(1, sizeof(*w));
    w->req = req;
    w->seen_head = seen_head;
    w->seen_acks = seen_acks;
    w->deadline_ms = deadline_ms;
    AZ(pthread_mutex_lock(&r->mu));
    if (r->is_stopping) {
        AZ(pthread_mutex_unlock(&r->mu));
        free(w);
        http_req_resume(req);
        return;
    }
    w->next = r->waiters;
    r->waiters = w;
    AZ(pthread_mutex_unlock(&r->mu));
}

/* Resumes waiters whose log grew, whose relayed acknowledgements changed, or whose time
 * is up (all of them when stopping). */
static void wake_waiters(struct repl *r, bool is_all)
{
    int64_t head = 0;
    uint64_t acks = compact_acks_changed(atomic_load(&r->reg->is_ready) ? r->reg->compact : NULL);
    struct err e = {0};
    /* If the log cannot be read (its database is away), only deadlines resume waiters. */
    bool is_head_known =
        is_all || ms_of(r)->ops->log_head(ms_of(r), &head, &e) == 0;
    if (!is_head_known)
        head = INT64_MIN;
    int64_t now = util_now_ms();
    AZ(pthread_mutex_lock(&r->mu));
    for (struct waiter **pp = &r->waiters; *pp;) {
        struct waiter *w = *pp;
        if (is_all || head > w->seen_head || acks != w->seen_acks || now >= w->deadline_ms) {
            *pp = w->next;
            http_req_resume(w->req);
            free(w);
            continue;
        }
        pp = &w->next;
    }
    AZ(pthread_mutex_unlock(&r->mu));
}

/* Round trips and anti-entropy ----------------------------------------------------------- */

/* Times one GET /healthz of a peer; an answer marks it reachable. */
static void probe_one(struct repl *r, const char *location, const char *endpoint)
{
    char url[1024];
    snprintf(url, sizeof(url), "%s/healthz", endpoint);
    struct httpc_response resp;
    struct err e = {0};
    httpc_response_init(&resp, 4096);
    int64_t t0 = util_mono_ns();
    int rc = peer_call(r, "GET", url, NULL, 5000, &resp, &e);
    double ms = (double)(util_mono_ns() - t0) / 1e6;
    AZ(pthread_mutex_lock(&r->mu));
    struct peer *p = find_peer(r, location);
    if (p && rc == 0 && resp.status == 200) {
        /* Smooth the estimate so one slow probe does not reorder the peers. */
        p->rtt_ms = p->rtt_ms >= 1e9 ? ms : 0.7 * p->rtt_ms + 0.3 * ms;
        /* An answer proves the peer reachable even while a long poll is parked. */
        p->last_ok_ms = util_now_ms();
        p->failures = 0;
    } else if (p) {
        p->failures++;
    }
    AZ(pthread_mutex_unlock(&r->mu));
    httpc_response_fini(&resp);
}

/* Probes every peer at once (a silent one must not delay the others' probes), each
 * bounded by PROBE_TIMEOUT_MS: two missed probes in a row make a peer Unreachable. */
static void probe_peers(struct repl *r)
{
    size_t n;
    struct peer_ref *peers = peers_by_distance(r, &n);
    char **urls = xcalloc(n + 1, sizeof(*urls));
    long *statuses = xcalloc(n + 1, sizeof(*statuses));
    double *times_ms = xcalloc(n + 1, sizeof(*times_ms));
    for (size_t i = 0; i < n; i++) {
        size_t len = strlen(peers[i].endpoint) + 16;
        urls[i] = xmalloc(len);
        snprintf(urls[i], len, "%s/healthz", peers[i].endpoint);
    }
    const char *headers[2] = {r->auth_header[0] ? r->auth_header : NULL, NULL};
    httpc_get_many((const char *const *)urls, n, headers, PROBE_TIMEOUT_MS,
                   r->bind_ip[0] ? r->bind_ip : NULL, true, statuses, times_ms);
    AZ(pthread_mutex_lock(&r->mu));
    for (size_t i = 0; i < n; i++) {
        struct peer *p = find_peer(r, peers[i].location);
        if (p == NULL)
            continue;
        if (statuses[i] == 200) {
            /* Smooth the estimate so one slow probe does not reorder the peers. */
            p->rtt_ms = p->rtt_ms >= 1e9 ? times_ms[i] : 0.7 * p->rtt_ms + 0.3 * times_ms[i];
            p->last_ok_ms = util_now_ms();
            p->failures = 0;
        } else {
            p->failures++;
            if (p->failures == 2)
                log_warn("repl", "peer %s is unreachable: %s", p->location,
                         statuses[i] ? "unexpected answer to a probe" : "no answer to probes");
        }
    }
    AZ(pthread_mutex_unlock(&r->mu));
    for (size_t i = 0; i < n; i++)
        free(urls[i]);
    free(urls);
    free(statuses);
    free(times_ms);
    peer_refs_free(peers, n);
}

/* Ships the progress of running fetches as InProgress status events (at most one per
 * manifest per PROGRESS_INTERVAL_MS, only when bytes moved), so that every region, not
 * only this one, sees how far this region's copy is. */
static void emit_progress(struct repl *r)
{
    struct progress_item {
        char key[600];
        int64_t done;
        int64_t total;
    } items[16];
    size_t n = 0;
    int64_t now = util_now_ms();
    AZ(pthread_mutex_lock(&r->mu));
    for (struct inflight *f = r->inflight; f && n < 16; f = f->next) {
        if (strncmp(f->key, "blob:", 5) == 0 || f->is_finishing || f->done == f->done_sent ||
            now - f->sent_ms < PROGRESS_INTERVAL_MS)
            continue;
        snprintf(items[n].key, sizeof(items[n].key), "%s", f->key);
        items[n].done = f->done;
        items[n].total = f->total;
        n++;
    }
    AZ(pthread_mutex_unlock(&r->mu));
    for (size_t i = 0; i < n && !r->is_stopping; i++) {
        const char *at = strrchr(items[i].key, '@');
        struct digest d;
        struct err e = {0};
        if (at == NULL || digest_parse(at + 1, strlen(at + 1), &d, &e) != 0)
            continue;
        char repo[sizeof(items[i].key)];
        snprintf(repo, sizeof(repo), "%.*s", (int)(at - items[i].key), items[i].key);
        /* Under status_mu and only while the fetch is not finishing: the final state is
         * always the last status event of this fetch. */
        AZ(pthread_mutex_lock(&r->status_mu));
        bool is_live = false;
        AZ(pthread_mutex_lock(&r->mu));
        for (struct inflight *f = r->inflight; f; f = f->next) {
            if (strcmp(f->key, items[i].key) == 0 && !f->is_finishing) {
                is_live = true;
                f->done_sent = items[i].done;
                f->sent_ms = now;
            }
        }
        AZ(pthread_mutex_unlock(&r->mu));
        if (is_live) {
            struct meta_status st = {.region = (char *)self_region(r), .state = "InProgress",
                                     .bytes_done = items[i].done,
                                     .bytes_total = items[i].total,
                                     .updated_ms = util_now_ms(), .details = ""};
            if (ms_of(r)->ops->status_set(ms_of(r), repo, &d, &st, true, &e) != 0)
                log_warn("repl", "failed to record progress of %s: %s", items[i].key,
                         err_message(&e));
        }
        AZ(pthread_mutex_unlock(&r->status_mu));
        if (is_live)
            repl_log_grew(r);
    }
}

/* Fetches a peer's state of one repository and merges it (tags by last-writer-wins,
 * manifests and tombstones, and the other regions' status rows: a region a residency
 * policy kept out of the repository has none of the status events it missed); content
 * then follows through the fetch workers. */
static void repair_repo(struct repl *r, const struct peer_ref *peer, const char *repo)
{
    char *esc = escape_repo(repo);
    char url[2048];
    snprintf(url, sizeof(url),
             "%s/_meridian/v1/replication/state?repository=%s&status=1&from=%s",
             peer->endpoint, esc, self_region(r));
    free(esc);
    struct httpc_response resp;
    struct err e = {0};
    httpc_response_init(&resp, REPL_EVENTS_BODY_MAX);
    if (peer_call(r, "GET", url, NULL, 60000, &resp, &e) != 0 || resp.status != 200) {
        httpc_response_fini(&resp);
        return;
    }
    json_error_t je;
    json_t *body = json_loadb(resp.body.data, resp.body.len, 0, &je);
    httpc_response_fini(&resp);
    json_t *items = json_object_get(body, "state");
    size_t merged = 0;
    /* A tombstone expired here stays expired (a peer may keep it longer): state_merge
     * leaves it out in the transaction of the merge, whatever pass runs meanwhile. */
    int64_t tombs_before = compact_tombs_cutoff_hlc(r->reg, util_now_ms());
    for (size_t i = 0; i < json_array_size(items); i++) {
        struct meta_event ev;
        if (repl_codec_event_from_json(json_array_get(items, i), &ev, &e) != 0)
            continue;
        if (merge_state(r, &ev, tombs_before, &e) == 0)
            merged++;
        meta_event_fini(&ev);
    }
    json_decref(body);
    log_info("repl", "anti-entropy: merged %zu records of %s from %s", merged, repo,
             peer->location);
    repl_kick(r);
}

/* Checks that every blob this region records is still on its disk; a lost copy makes
 * the manifests needing it pending again, and the fetch workers bring it back. */
static void scrub_blobs(struct repl *r)
{
    struct meta_name_list digests = {0};
    struct err e = {0};
    if (ms_of(r)->ops->blob_list_all(ms_of(r), &digests, &e) != 0)
        return;
    size_t n_lost = 0;
    for (size_t i = 0; i < digests.n && !r->is_stopping; i++) {
        struct digest d;
        uint64_t size;
        struct err se = {0};
        if (digest_parse(digests.names[i], strlen(digests.names[i]), &d, &se) != 0)
            continue;
        if (r->reg->bs->ops->stat(r->reg->bs, &d, &size, &se) == 0 || se.code != ERR_BLOB_UNKNOWN)
            continue;
        size_t n_manifests = 0;
        if (ms_of(r)->ops->blob_lost(ms_of(r), &d, &n_manifests, &e) == 0) {
            n_lost++;
            log_warn("repl", "blob %s is missing from local storage; %zu manifests wait for "
                             "it to be fetched again", d.str, n_manifests);
        }
    }
    meta_name_list_fini(&digests);
    if (n_lost)
        repl_kick(r);
}

static void anti_entropy(struct repl *r)
{
    scrub_blobs(r);
    struct buf mine;
    struct err e = {0};
    buf_init(&mine, REPL_EVENTS_BODY_MAX);
    if (ms_of(r)->ops->summary(ms_of(r), &mine, &e) != 0) {
        buf_fini(&mine);
        return;
    }
    json_error_t je;
    json_t *local = json_loadb(mine.data, mine.len, 0, &je);
    buf_fini(&mine);
    json_t *policies = residency_policies(ms_of(r), &e);
    if (policies == NULL) {
        json_decref(local);
        return;
    }
    size_t n;
    struct peer_ref *peers = peers_by_distance(r, &n);
    for (size_t i = 0; i < n && !r->is_stopping; i++) {
        char url[1024];
        snprintf(url, sizeof(url), "%s/_meridian/v1/replication/summary?from=%s",
                 peers[i].endpoint, self_region(r));
        struct httpc_response resp;
        httpc_response_init(&resp, REPL_EVENTS_BODY_MAX);
        if (peer_call(r, "GET", url, NULL, 30000, &resp, &e) == 0 && resp.status == 200) {
            json_t *remote = json_loadb(resp.body.data, resp.body.len, 0, &je);
            const char *repo;
            json_t *v;
            /* A region back from beyond the horizon may hold what was deleted and
             * forgotten here: its state is taken only once it caught up (compact.h). */
            if (compact_peer_is_behind(r->reg, peers[i].location)) {
                json_decref(remote);
                remote = NULL;
            }
            json_object_foreach(remote, repo, v)
            {
                json_t *mine_v = json_object_get(local, repo);
                if ((mine_v == NULL || !json_equal(mine_v, v)) &&
                    residency_allows(policies, repo, self_region(r)))
                    repair_repo(r, &peers[i], repo);
            }
            json_decref(remote);
        }
        httpc_response_fini(&resp);
    }
    peer_refs_free(peers, n);
    json_decref(local);
    json_decref(policies);
}

/* Waiters and the peer set: kept apart from the network work below, so a peer that
 * does not answer never delays waking the long polls. */
static void *manager_main(void *arg)
{
    struct repl *r = arg;
    int64_t next_sync_peers = 0;
    while (!r->is_stopping) {
        int64_t now = util_now_ms();
        wake_waiters(r, false);
        if (now >= next_sync_peers) {
            sync_peers(r);
            next_sync_peers = now + 1000;
        }
        /* Long polls wake at once on a write of this node (repl_log_grew), else
         * within this period of a new event (a cheap max(seq) read). */
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += 25 * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        AZ(pthread_mutex_lock(&r->mu));
        while (!r->is_stopping && !r->is_log_grown) {
            if (pthread_cond_timedwait(&r->cv, &r->mu, &until) == ETIMEDOUT)
                break;
        }
        r->is_log_grown = false;
        AZ(pthread_mutex_unlock(&r->mu));
    }
    return NULL;
}

void repl_log_grew(struct repl *r)
{
    if (r == NULL)
        return;
    AZ(pthread_mutex_lock(&r->mu));
    r->is_log_grown = true;
    AZ(pthread_cond_broadcast(&r->cv));
    AZ(pthread_mutex_unlock(&r->mu));
}

/* Round-trip probes and anti-entropy, which wait on peers. */
static void *syncer_main(void *arg)
{
    struct repl *r = arg;
    int64_t next_anti_entropy = util_now_ms() + r->reg->cfg->sync_interval_s * 1000;
    while (!r->is_stopping) {
        int64_t now = util_now_ms();
        if (now >= next_anti_entropy && !r->reg->is_removed && registry_is_owner(r->reg)) {
            anti_entropy(r);
            placement_retention_run(r->reg); /* image versions' retention policies */
            residency_enforce_run(r->reg); /* finishes a removal a crash interrupted */
            next_anti_entropy = util_now_ms() + r->reg->cfg->sync_interval_s * 1000;
        }
        nap(r, 250);
    }
    return NULL;
}

/* Round-trip probes and progress events, every second: apart from anti-entropy, which
 * may wait long on a peer, so that an unreachable peer is known within seconds. */
static void *prober_main(void *arg)
{
    struct repl *r = arg;
    int64_t next_leave_check = 0;
    while (!r->is_stopping) {
        int64_t t0 = util_now_ms();
        if (!r->reg->is_removed)
            probe_peers(r);
        /* Here, not on the manager: asking the peers may wait on one that does not
         * answer, and the manager wakes the parked long polls. */
        if (atomic_load(&r->leave_until_ms) != 0 && t0 >= next_leave_check) {
            leave_if_confirmed(r);
            next_leave_check = util_now_ms() + LEAVE_CHECK_MS;
        }
        emit_progress(r);
        int64_t spent = util_now_ms() - t0;
        nap(r, spent < PROBE_INTERVAL_MS ? PROBE_INTERVAL_MS - spent : 1);
    }
    return NULL;
}

/* Lifecycle -------------------------------------------------------------------------- */

/* Copies "latitude" and "longitude" (the region's place on the console's map, from its
 * --region-location) from `from` to `to` when both are numbers in range. */
/* Coordinates in a record or an introduction: none, or both numbers in range. */
static bool is_valid_geo(const json_t *geo)
{
    json_t *lat = json_object_get(geo, "latitude");
    json_t *lon = json_object_get(geo, "longitude");
    if ((lat == NULL || json_is_null(lat)) && (lon == NULL || json_is_null(lon)))
        return true;
    if (!json_is_number(lat) || !json_is_number(lon))
        return false;
    double la = json_number_value(lat), lo = json_number_value(lon);
    return la >= -90 && la <= 90 && lo >= -180 && lo <= 180;
}

static void copy_geo(json_t *to, const json_t *from)
{
    json_t *lat = json_object_get(from, "latitude");
    json_t *lon = json_object_get(from, "longitude");
    if (!json_is_number(lat) || !json_is_number(lon))
        return;
    double la = json_number_value(lat), lo = json_number_value(lon);
    if (!(la >= -90 && la <= 90 && lo >= -180 && lo <= 180))
        return;
    json_object_set_new(to, "latitude", json_real(la));
    json_object_set_new(to, "longitude", json_real(lo));
}

/* Volumes: what a region advertises of its volumes in its record, {"class": count}, so
 * that any region can check a replica count against it (image_catalog_world). Copied
 * along with the coordinates by every writer of the record. */
static void copy_volumes(json_t *to, const json_t *from)
{
    json_t *v = json_object_get(from, "volumes");
    if (!json_is_object(v))
        return;
    json_t *out = json_object();
    const char *k;
    json_t *n;
    json_object_foreach(v, k, n) {
        if (json_is_integer(n) && json_integer_value(n) >= 1 && json_integer_value(n) <= 64 &&
            strlen(k) <= 32)
            json_object_set_new(out, k, json_integer(json_integer_value(n)));
    }
    json_object_set_new(to, "volumes", out);
}

static json_t *self_volumes(struct repl *r)
{
    struct blobstore *bs = r->reg->bs;
    if (bs == NULL || bs->ops->volumes == NULL)
        return NULL;
    size_t n;
    const struct blobstore_volume *v = bs->ops->volumes(bs, &n);
    json_t *out = json_object();
    for (size_t i = 0; i < n; i++) {
        json_int_t k = json_integer_value(json_object_get(out, v[i].klass));
        json_object_set_new(out, v[i].klass, json_integer(k + 1));
    }
    return out;
}
/* End of volumes. */

json_t *repl_self_geo(struct repl *r)
{
    const struct config *cfg = r->reg->cfg;
    json_t *out = cfg->has_location ? json_pack("{s:f, s:f}", "latitude", cfg->latitude,
                                                "longitude", cfg->longitude)
                                    : json_object();
    json_t *vols = self_volumes(r);
    if (vols)
        json_object_set_new(out, "volumes", vols);
    return out;
}

static json_t *replication_value(const char *location, const char *endpoint, const json_t *geo)
{
    json_t *v = json_pack("{s:s, s:s, s:I}", "location", location, "endpoint", endpoint,
                          "createdMs", (json_int_t)util_now_ms());
    copy_geo(v, geo);
    copy_volumes(v, geo);
    return v;
}

/* Records region `location`; geo (may be NULL) holds its coordinates when known: each
 * writer of a region's record (itself at start, the region adding it, the region it
 * introduces itself to) passes them, so the last write keeps them. */
static int put_replication(struct repl *r, const char *location, const char *endpoint,
                           const json_t *geo, struct err *e)
{
    json_t *v = replication_value(location, endpoint, geo);
    char *s = json_dumps(v, JSON_COMPACT);
    json_decref(v);
    int rc = ms_of(r)->ops->object_put(ms_of(r), "replication", location, s, e);
    free(s);
    return rc;
}

int repl_start(struct repl *r, struct err *e)
{
    char *value = NULL;
    struct err ge = {0};
    const char *self = self_region(r);
    bool is_same = false;
    if (ms_of(r)->ops->object_get(ms_of(r), "replication", self, &value, &ge) == 0) {
        json_error_t je;
        json_t *v = json_loads(value, 0, &je);
        const char *ep = v ? json_string_value(json_object_get(v, "endpoint")) : NULL;
        is_same = ep && strcmp(ep, r->self_endpoint) == 0;
        /* A moved or newly placed region writes its record again. */
        json_t *was = json_object();
        json_t *now = repl_self_geo(r);
        copy_geo(was, v);
        copy_volumes(was, v);
        is_same = is_same && json_equal(was, now);
        json_decref(was);
        json_decref(now);
        json_decref(v);
        free(value);
    }
    if (r->reg->is_removed) {
        log_warn("repl", "this region was removed from the registry; not replicating");
        return 0;
    }
    json_t *geo = repl_self_geo(r);
    int rc = is_same ? 0 : put_replication(r, self, r->self_endpoint, geo, e);
    json_decref(geo);
    if (rc != 0)
        return -1;
    AZ(pthread_create(&r->manager, NULL, manager_main, r));
    AZ(pthread_create(&r->syncer, NULL, syncer_main, r));
    AZ(pthread_create(&r->prober, NULL, prober_main, r));
    for (int i = 0; i < FETCH_WORKERS; i++)
        AZ(pthread_create(&r->fetchers[i], NULL, fetcher_main, r));
    atomic_store(&r->is_started, true);
    return 0;
}

void repl_stop(struct repl *r)
{
    if (r == NULL || !atomic_load(&r->is_started))
        return;
    AZ(pthread_mutex_lock(&r->mu));
    atomic_store(&r->is_stopping, true);
    for (struct peer *p = r->peers; p; p = p->next)
        p->is_stopping = true;
    AZ(pthread_cond_broadcast(&r->cv));
    AZ(pthread_mutex_unlock(&r->mu));
    pthread_join(r->manager, NULL);
    pthread_join(r->syncer, NULL);
    pthread_join(r->prober, NULL);
    for (int i = 0; i < FETCH_WORKERS; i++)
        pthread_join(r->fetchers[i], NULL);
    wake_waiters(r, true);
    AZ(pthread_mutex_lock(&r->mu));
    while (r->n_pullers > 0 || r->n_completions > 0)
        pthread_cond_wait(&r->cv, &r->mu);
    AZ(pthread_mutex_unlock(&r->mu));
    atomic_store(&r->is_started, false);
}

/* Replications (management API) -------------------------------------------------- */

json_t *repl_replications_json(struct repl *r, const char *location)
{
    struct meta_name_list keys = {0}, values = {0};
    struct err e = {0};
    json_t *out = json_array();
    if (ms_of(r)->ops->object_list(ms_of(r), "replication", &keys, &values, &e) != 0)
        return out;
    int64_t now = util_now_ms();
    for (size_t i = 0; i < keys.n; i++) {
        if (location && strcmp(location, keys.names[i]) != 0)
            continue;
        json_error_t je;
        json_t *v = json_loads(values.names[i], 0, &je);
        if (v == NULL)
            continue;
        bool is_local = strcmp(keys.names[i], self_region(r)) == 0;
        const char *state = "Ready";
        /* A removed region replicates with no one: it knows nothing of the others. */
        if (r->reg->is_removed)
            state = is_local ? "Removed" : "Unknown";
        json_int_t lag_events = 0;
        double lag_s = 0, rtt = 0;
        json_int_t bytes_copied = 0;
        AZ(pthread_mutex_lock(&r->mu));
        struct peer *p = r->reg->is_removed ? NULL : find_peer(r, keys.names[i]);
        if (p) {
            lag_events = p->lag_events;
            lag_s = p->lag_seconds;
            rtt = p->rtt_ms < 1e9 ? p->rtt_ms : 0;
            bytes_copied = (json_int_t)p->bytes_copied;
            if (peer_is_unreachable(p, now))
                state = "Unreachable";
            else if (p->last_ok_ms == 0 || p->lag_events > 0)
                state = "Syncing";
        }
        int64_t to_copy = 0;
        if (is_local) {
            for (struct inflight *f = r->inflight; f; f = f->next) {
                if (strncmp(f->key, "blob:", 5) != 0 && f->total > f->done)
                    to_copy += f->total - f->done;
            }
            if (to_copy > 0 && !r->reg->is_removed)
                state = "Syncing";
        }
        AZ(pthread_mutex_unlock(&r->mu));
        json_object_set_new(v, "state", json_string(state));
        json_object_set_new(v, "isLocal", json_boolean(is_local));
        json_object_set_new(v, "lagEvents", json_integer(lag_events));
        json_object_set_new(v, "lagSeconds", json_real(lag_s));
        json_object_set_new(v, "bytesToCopy", json_integer(to_copy));
        json_object_set_new(v, "bytesCopied", json_integer(bytes_copied));
        json_object_set_new(v, "rttMs", json_real(rtt));
        json_array_append_new(out, v);
    }
    meta_name_list_fini(&keys);
    meta_name_list_fini(&values);
    return out;
}

static bool is_valid_endpoint(const char *s)
{
    size_t n = strlen(s);
    /* Paths are appended to it: a query or fragment would swallow them. */
    return n > 8 && n < 400 && (strncmp(s, "http://", 7) == 0 || strncmp(s, "https://", 8) == 0) &&
           strpbrk(s, " \t\r\n\"'<>?#") == NULL && s[n - 1] != '/';
}

int repl_add(struct repl *r, const char *location, const char *endpoint, struct err *e)
{
    if (location == NULL || !repl_codec_is_valid_region(location))
        return err_set(e, ERR_BAD_REQUEST, "location must be 1-63 characters of a-z, 0-9, '-'");
    if (endpoint == NULL || !is_valid_endpoint(endpoint))
        return err_set(e, ERR_BAD_REQUEST, "endpoint must be an http(s) URL without a "
                                           "trailing slash");
    char *value = NULL;
    struct err ge = {0};
    if (ms_of(r)->ops->object_get(ms_of(r), "replication", location, &value, &ge) == 0) {
        free(value);
        return err_set(e, ERR_CONFLICT, "replication %s already exists", location);
    }
    /* Introduce ourselves first: a region that cannot be reached, or that belongs to
     * another registry, is not recorded. */
    json_t *intro = repl_self_geo(r);
    json_object_set_new(intro, "registry", json_string(r->reg->cfg->registry_name));
    json_object_set_new(intro, "location", json_string(self_region(r)));
    json_object_set_new(intro, "endpoint", json_string(r->self_endpoint));
    char *body = json_dumps(intro, JSON_COMPACT);
    json_decref(intro);
    char url[1024];
    snprintf(url, sizeof(url), "%s/_meridian/v1/replication/introduce", endpoint);
    struct httpc_response resp;
    httpc_response_init(&resp, 64 * 1024);
    int rc = peer_call(r, "POST", url, body, 15000, &resp, e);
    free(body);
    if (rc == 0 && resp.status != 200 && resp.status != 201) {
        json_error_t je;
        json_t *reply = json_loadb(resp.body.data, resp.body.len, 0, &je);
        const char *msg = json_string_value(json_object_get(json_object_get(reply, "error"),
                                                            "message"));
        rc = err_set(e, resp.status == 401 || resp.status == 403 ? ERR_DENIED : ERR_CONFLICT,
                     "%s refused to join: %s", location, msg ? msg : "no reason given");
        json_decref(reply);
    }
    /* The region answers with its coordinates, if it has any. */
    json_t *geo = NULL;
    if (rc == 0) {
        json_error_t je;
        geo = json_loadb(resp.body.data, resp.body.len, 0, &je);
    }
    httpc_response_fini(&resp);
    if (rc != 0)
        return -1;
    rc = put_replication(r, location, endpoint, geo, e);
    json_decref(geo);
    if (rc != 0)
        return -1;
    log_info("repl", "added replication %s at %s", location, endpoint);
    return 0;
}

int repl_remove(struct repl *r, const char *location, struct err *e)
{
    if (location && strcmp(location, self_region(r)) == 0)
        return err_set(e, ERR_CONFLICT, "a region cannot remove itself; ask another region");
    char *value = NULL;
    struct err ge = {0};
    char endpoint[512] = "";
    if (ms_of(r)->ops->object_get(ms_of(r), "replication", location, &value, &ge) == 0) {
        json_error_t je;
        json_t *v = json_loads(value, 0, &je);
        const char *ep = json_string_value(json_object_get(v, "endpoint"));
        snprintf(endpoint, sizeof(endpoint), "%s", ep ? ep : "");
        json_decref(v);
        free(value);
    }
    if (ms_of(r)->ops->object_delete(ms_of(r), "replication", location, e) != 0)
        return -1;
    log_info("repl", "removed replication %s", location);
    /* Tell the region itself: the others stop answering it, so it would not learn of
     * its removal from their logs. Best effort: the removal stands either way. */
    if (endpoint[0]) {
        json_t *bye = json_pack("{s:s, s:s}", "registry", r->reg->cfg->registry_name,
                                "location", location);
        char *body = json_dumps(bye, JSON_COMPACT);
        json_decref(bye);
        char url[1024];
        snprintf(url, sizeof(url), "%s/_meridian/v1/replication/leave", endpoint);
        struct httpc_response resp;
        struct err le = {0};
        httpc_response_init(&resp, 64 * 1024);
        if (peer_call(r, "POST", url, body, 10000, &resp, &le) != 0 ||
            (resp.status != 200 && resp.status != 202))
            log_warn("repl", "failed to tell %s it was removed: %s", location,
                     le.code ? err_message(&le) : "it refused");
        httpc_response_fini(&resp);
        free(body);
    }
    return 0;
}

int repl_leave(struct repl *r, const char *registry_name, const char *location, struct err *e)
{
    if (registry_name == NULL || strcmp(registry_name, r->reg->cfg->registry_name) != 0 ||
        location == NULL || strcmp(location, self_region(r)) != 0)
        return err_set(e, ERR_CONFLICT, "not this region of this registry");
    leave_check_soon(r);
    return 0;
}

/* Is this region's removal confirmed? Being told to leave is not enough: leaving removes
 * every blob here, and anyone holding the peer secret (or anyone at all, on a region run
 * without one) could ask. So each peer this region knows is asked whether it still counts
 * this region as one of the registry's (replication/membership): one that answers 410
 * (it applied the removal) confirms it, one that answers 200 denies it, and a denial
 * wins; one that never knew of this region (404, not applied its addition yet) says
 * nothing, as does one that cannot be reached or runs a release without the question.
 * A peer that cannot be reached, or runs a release without the question, says nothing.
 * 1: confirmed; 0: not (yet); -1: there is no other region to ask. */
/* One peer's answer on this region's membership: 1 removed, -1 still a region, 0 nothing
 * (never knew of it, unreachable, or an unclear answer). A peer of a release without
 * `membership` is asked through `events`, which it refuses (403, "not a region of this
 * registry") to a region it does not count: such a peer cannot tell a removed region from
 * one it has not heard of yet, and a denial from another peer still wins. */
static int ask_membership(struct repl *r, const char *endpoint, struct err *pe)
{
    char url[1024];
    snprintf(url, sizeof(url), "%s/_meridian/v1/replication/membership?from=%s", endpoint,
             self_region(r));
    struct httpc_response resp;
    httpc_response_init(&resp, 64 * 1024);
    int answer = 0;
    json_error_t je;
    if (peer_call(r, "GET", url, NULL, 5000, &resp, pe) == 0) {
        json_t *reply = json_loadb(resp.body.data, resp.body.len, 0, &je);
        const char *msg =
            json_string_value(json_object_get(json_object_get(reply, "error"), "message"));
        if (resp.status == 410 && json_is_true(json_object_get(reply, "removed")))
            answer = 1;
        else if (resp.status == 200 && json_is_true(json_object_get(reply, "member")))
            answer = -1;
        bool is_older = resp.status == 404 && msg != NULL &&
                        strcmp(msg, "no such management resource") == 0;
        json_decref(reply);
        if (is_older) {
            snprintf(url, sizeof(url),
                     "%s/_meridian/v1/replication/events?after=0&wait=0&max=1&vv=&from=%s",
                     endpoint, self_region(r));
            httpc_response_fini(&resp);
            httpc_response_init(&resp, 1 << 20);
            if (peer_call(r, "GET", url, NULL, 5000, &resp, pe) == 0) {
                bool is_refused = resp.status == 403 &&
                                  memmem(resp.body.data, resp.body.len,
                                         "is not a region of this registry", 32) != NULL;
                answer = is_refused ? 1 : resp.status == 200 ? -1 : 0;
            }
        }
    }
    httpc_response_fini(&resp);
    return answer;
}

static int removal_check(struct repl *r)
{
    struct meta_name_list keys = {0}, values = {0};
    struct err e = {0};
    if (ms_of(r)->ops->object_list(ms_of(r), "replication", &keys, &values, &e) != 0)
        return false;
    size_t n_confirmed = 0, n_denied = 0, n_peers = 0;
    for (size_t i = 0; i < keys.n && n_denied == 0; i++) {
        if (strcmp(keys.names[i], self_region(r)) == 0)
            continue;
        n_peers++;
        json_error_t je;
        json_t *v = json_loads(values.names[i], 0, &je);
        const char *endpoint = json_string_value(json_object_get(v, "endpoint"));
        if (endpoint != NULL) {
            struct err pe = {0};
            int answer = ask_membership(r, endpoint, &pe);
            n_confirmed += answer > 0;
            n_denied += answer < 0;
            log_info("repl", "asked %s whether this region was removed: %s", keys.names[i],
                     pe.code       ? err_message(&pe)
                     : answer > 0  ? "it was"
                     : answer < 0  ? "it was not"
                                   : "no answer");
        }
        json_decref(v);
    }
    meta_name_list_fini(&keys);
    meta_name_list_fini(&values);
    if (n_peers == 0)
        return -1;
    return n_confirmed > 0 && n_denied == 0;
}

static void leave_if_confirmed(struct repl *r)
{
    int64_t until = atomic_load(&r->leave_until_ms);
    if (r->reg->is_removed) {
        atomic_store(&r->leave_until_ms, 0);
        return;
    }
    int check = removal_check(r);
    if (check > 0) {
        atomic_store(&r->leave_until_ms, 0);
        mark_removed(r->reg);
    } else if (check < 0) {
        atomic_store(&r->leave_until_ms, 0);
        log_warn("repl", "told to leave the registry, but it knows no other region to "
                         "confirm the removal: this region stays");
    } else if (util_now_ms() >= until) {
        atomic_store(&r->leave_until_ms, 0);
        log_warn("repl", "told to leave the registry, but no region of it confirms the "
                         "removal: this region stays");
    }
}

int repl_introduce(struct repl *r, const char *registry_name, const char *location,
                   const char *endpoint, const json_t *geo, struct err *e)
{
    if (registry_name == NULL || strcmp(registry_name, r->reg->cfg->registry_name) != 0)
        return err_set(e, ERR_CONFLICT, "this region belongs to registry %s",
                       r->reg->cfg->registry_name);
    if (location == NULL || !repl_codec_is_valid_region(location) || endpoint == NULL ||
        !is_valid_endpoint(endpoint))
        return err_set(e, ERR_BAD_REQUEST, "bad location or endpoint");
    if (strcmp(location, self_region(r)) == 0)
        return err_set(e, ERR_CONFLICT, "a region of that name is this one");
    if (!is_valid_geo(geo))
        return err_set(e, ERR_BAD_REQUEST,
                       "latitude and longitude must be numbers, within +-90 and +-180");
    char *value = NULL;
    struct err ge = {0};
    if (ms_of(r)->ops->object_get(ms_of(r), "replication", location, &value, &ge) == 0) {
        free(value);
        return 0; /* already known */
    }
    log_info("repl", "introduced to %s at %s", location, endpoint);
    return put_replication(r, location, endpoint, geo, e);
}

char **repl_target_regions(struct repl *r)
{
    struct meta_name_list keys = {0}, values = {0};
    struct err e = {0};
    char **out;
    if (ms_of(r)->ops->object_list(ms_of(r), "replication", &keys, &values, &e) != 0) {
        out = xcalloc(2, sizeof(char *));
        out[0] = xstrdup(self_region(r));
        return out;
    }
    out = xcalloc(keys.n + 2, sizeof(char *));
    size_t n = 0;
    bool has_self = false;
    for (size_t i = 0; i < keys.n; i++) {
        has_self |= strcmp(keys.names[i], self_region(r)) == 0;
        out[n++] = xstrdup(keys.names[i]);
    }
    if (!has_self)
        out[n++] = xstrdup(self_region(r));
    meta_name_list_fini(&keys);
    meta_name_list_fini(&values);
    return out;
}

void repl_free_names(char **names)
{
    for (size_t i = 0; names && names[i]; i++)
        free(names[i]);
    free(names);
}

/* The metrics source of replication (registered by repl_new): per-peer gauges. */
static void render_metrics(void *arg, struct buf *out)
{
    struct repl *r = arg;
    static const char *const families[][3] = {
        {"meridian_replication_lag_events", "gauge", "Events a peer has that this region has not applied."},
        {"meridian_replication_lag_seconds", "gauge", "Age of the oldest unapplied event of a peer."},
        {"meridian_replication_bytes_copied_total", "counter", "Blob bytes fetched from a peer."},
        {"meridian_replication_fetch_retries_total", "counter", "Blob fetches resumed or retried."},
        {"meridian_replication_fetch_failures_total", "counter", "Blob fetches that failed verification."},
        {"meridian_replication_peer_up", "gauge", "1 when the peer answered recently."},
    };
    AZ(pthread_mutex_lock(&r->mu));
    for (size_t f = 0; f < sizeof(families) / sizeof(families[0]); f++) {
        buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", families[f][0], families[f][2],
                   families[f][0], families[f][1]);
        for (struct peer *p = r->peers; p; p = p->next) {
            double v = f == 0   ? (double)p->lag_events
                       : f == 1 ? p->lag_seconds
                       : f == 2 ? (double)p->bytes_copied
                       : f == 3 ? (double)p->fetch_retries
                       : f == 4 ? (double)p->fetch_failures
                                : (p->failures < 2 && p->last_ok_ms > 0 ? 1.0 : 0.0);
            buf_printf(out, "%s{peer=\"%s\"} %.17g\n", families[f][0], p->location, v);
        }
    }
    AZ(pthread_mutex_unlock(&r->mu));
    buf_printf(out, "# HELP meridian_pull_through_lookups_total Peer lookups for a manifest "
                    "or tag a pull missed here.\n# TYPE meridian_pull_through_lookups_total "
                    "counter\nmeridian_pull_through_lookups_total %" PRIuFAST64 "\n",
               (uint_fast64_t)atomic_load(&r->pull_lookups));
    buf_printf(out, "# HELP meridian_pull_through_manifests_total Manifests a pull made "
                    "visible from a peer.\n# TYPE meridian_pull_through_manifests_total "
                    "counter\nmeridian_pull_through_manifests_total %" PRIuFAST64 "\n",
               (uint_fast64_t)atomic_load(&r->pull_served));
}

int repl_blob_recover(struct registry *reg, const char *repo, const struct digest *d,
                      struct err *e)
{
    struct err fe = {0};
    if (repo != NULL && reg->repl != NULL && repl_fetch_blob_now(reg->repl, repo, d, &fe) == 0) {
        log_info("registry", "fetched blob %s back from a peer", d->str);
        return 0;
    }
    size_t n_manifests = 0;
    struct err le = {0};
    /* Exclusive: a replicated manifest being made visible (complete_pending) either
     * finished before (and is hidden now) or checks its blobs after (and waits). Without
     * the database's half another node could make one visible under the hiding: record
     * nothing then; the next read of the blob tries again. */
    if (!gc_fence_enter(reg, true)) {
        gc_fence_leave(reg, true);
        log_error("registry", "blob %s has no good copy here; its loss is not recorded (the "
                              "metadata store did not grant the GC fence): tried again on its "
                              "next read", d->str);
        return err_set(e, ERR_UNAVAILABLE, "the metadata store is unavailable; try again");
    }
    int lrc = reg->ms->ops->blob_lost(reg->ms, d, &n_manifests, &le);
    gc_fence_leave(reg, true);
    if (lrc != 0)
        log_error("registry", "failed to record the loss of blob %s: %s", d->str,
                  err_message(&le));
    else
        log_warn("registry", "blob %s has no good copy here; %zu manifests are hidden until "
                             "it is fetched from a peer or pushed again", d->str, n_manifests);
    if (reg->repl != NULL)
        repl_kick(reg->repl);
    return err_set(e, ERR_BLOB_UNKNOWN, NULL);
}

json_t *repl_peer_get(struct repl *r, const char *location, const char *path, long timeout_ms,
                      struct err *e)
{
    AZ(pthread_mutex_lock(&r->mu));
    struct peer *p = find_peer(r, location);
    char *endpoint = p ? xstrdup(p->endpoint) : NULL;
    AZ(pthread_mutex_unlock(&r->mu));
    if (endpoint == NULL) {
        err_set(e, ERR_NOT_FOUND, "no region named %s", location);
        return NULL;
    }
    char url[2048];
    snprintf(url, sizeof(url), "%s/_meridian/v1/%s", endpoint, path);
    free(endpoint);
    struct httpc_response resp;
    httpc_response_init(&resp, REPL_EVENTS_BODY_MAX);
    json_t *out = NULL;
    if (peer_call(r, "GET", url, NULL, timeout_ms, &resp, e) == 0) {
        json_error_t je;
        out = resp.status == 200 ? json_loadb(resp.body.data, resp.body.len, 0, &je) : NULL;
        if (out == NULL)
            err_set(e, ERR_UNAVAILABLE, "region %s answered %ld", location, resp.status);
    }
    httpc_response_fini(&resp);
    return out;
}
