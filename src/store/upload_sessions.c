/* Upload session table: a mutex-guarded list of in-memory states for sessions that
 * were touched since start, most recently used first. The list is short (sessions in use,
 * plus at most max_idle idle ones), so a linear scan costs less than a hash table's upkeep.
 * Each state holds an open handle (a file descriptor on the local store): clients that
 * start uploads and never finish them must not run the process out of descriptors, so
 * past max_idle the least recently used idle states are closed; their sessions load
 * again from storage at their next request, as after a restart.
 * A session is used by one request at a time: the busy flag on this node, and a claim in
 * the shared metastore across the nodes of a region (see claim). */
#include "upload_sessions.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "metrics.h"
#include "util.h"

/* Sessions whose claim this node could not give up (its database connection was lost on
 * the way): the server may hold it on the dead connection until it notices, and until then
 * no request is using the session. Kept so that a request finding such a claim is told to
 * retry (503), not that the session is in use; a ring of the most recent ones. */
#define STRANDED_MAX 16

struct upload_sessions {
    struct blobstore *bs;
    struct metastore *ms;
    pthread_mutex_t mu;
    pthread_cond_t idle_cv; /* a state went idle or left the list (CLOCK_MONOTONIC) */
    size_t n_waiting;       /* under mu: requests waiting on idle_cv */
    struct upload_state *head;
    size_t max_idle;
    char stranded[STRANDED_MAX][33]; /* under mu */
    size_t n_stranded;               /* under mu: the next slot, mod STRANDED_MAX */
};

static void stranded_note(struct upload_sessions *us, const char *id, bool is_stranded)
{
    AZ(pthread_mutex_lock(&us->mu));
    for (size_t i = 0; i < STRANDED_MAX; i++) {
        if (strcmp(us->stranded[i], id) == 0)
            us->stranded[i][0] = '\0';
    }
    if (is_stranded)
        snprintf(us->stranded[us->n_stranded++ % STRANDED_MAX], 33, "%s", id);
    AZ(pthread_mutex_unlock(&us->mu));
}

static bool is_stranded(struct upload_sessions *us, const char *id)
{
    bool found = false;
    AZ(pthread_mutex_lock(&us->mu));
    for (size_t i = 0; i < STRANDED_MAX && !found; i++)
        found = strcmp(us->stranded[i], id) == 0;
    AZ(pthread_mutex_unlock(&us->mu));
    return found;
}

struct upload_sessions *upload_sessions_new(struct blobstore *bs, struct metastore *ms)
{
    struct upload_sessions *us = xcalloc(1, sizeof(*us));
    us->bs = bs;
    us->ms = ms;
    us->max_idle = UPLOAD_SESSIONS_MAX_IDLE;
    AZ(pthread_mutex_init(&us->mu, NULL));
    pthread_condattr_t ca;
    AZ(pthread_condattr_init(&ca));
    AZ(pthread_condattr_setclock(&ca, CLOCK_MONOTONIC));
    AZ(pthread_cond_init(&us->idle_cv, &ca));
    AZ(pthread_condattr_destroy(&ca));
    return us;
}

void upload_sessions_set_max_idle(struct upload_sessions *us, size_t n)
{
    AZ(pthread_mutex_lock(&us->mu));
    us->max_idle = n;
    AZ(pthread_mutex_unlock(&us->mu));
}

static void state_free(struct upload_sessions *us, struct upload_state *st)
{
    us->bs->ops->upload_close(us->bs, st->upload);
    free(st->repo);
    free(st);
}

void upload_sessions_free(struct upload_sessions *us)
{
    if (us == NULL)
        return;
    while (us->head) {
        struct upload_state *st = us->head;
        us->head = st->next;
        state_free(us, st);
    }
    pthread_cond_destroy(&us->idle_cv);
    pthread_mutex_destroy(&us->mu);
    free(us);
}

/* Caller holds us->mu. */
static struct upload_state *find(struct upload_sessions *us, const char *id)
{
    for (struct upload_state *st = us->head; st; st = st->next) {
        if (strcmp(st->id, id) == 0)
            return st;
    }
    return NULL;
}

/* Caller holds us->mu. Wakes the requests waiting for the session to be given up. */
static void unlink_state(struct upload_sessions *us, struct upload_state *st)
{
    AZ(pthread_cond_broadcast(&us->idle_cv));
    for (struct upload_state **pp = &us->head; *pp; pp = &(*pp)->next) {
        if (*pp == st) {
            *pp = st->next;
            return;
        }
    }
}

/* Sessions looked at, oldest first, for one that no request holds. */
#define REPLACE_CANDIDATES 8

/* A client at a cap (e holds its 429): its oldest session started more than
 * UPLOAD_SESSIONS_REPLACE_AFTER_S ago that no request holds is removed to make room, so
 * that the sessions of pushes that were cut off (a CI job killed mid-push leaves each of
 * its chunked sessions until the TTL) lock an identity or an address out of pushing for
 * minutes, not for a day. The cap still bounds what is held at once, and a client opening
 * sessions faster than that is still refused. 0 when one was removed; -1 (e unchanged)
 * when no candidate is old enough or free. */
static int replace_oldest(struct upload_sessions *us, const char *source,
                          const struct meta_upload_caps *caps, struct err *e)
{
    struct err ce = {0};
    int64_t n = 0;
    /* The cap that is full: the address's first, as caps_check counts them. */
    bool is_source_full = caps->max_from_source > 0 && source != NULL &&
                          us->ms->ops->upload_count_from(us->ms, source, caps->now_s, &n,
                                                         &ce) == 0 &&
                          n >= caps->max_from_source;
    if (!is_source_full && (caps->owner == NULL || caps->max_owned <= 0))
        return -1;
    struct meta_name_list oldest = {0};
    if (us->ms->ops->upload_oldest(us->ms, source, is_source_full ? NULL : caps->owner,
                                   caps->now_s, caps->now_s - UPLOAD_SESSIONS_REPLACE_AFTER_S,
                                   REPLACE_CANDIDATES, &oldest, &ce) != 0)
        return -1;
    int rc = -1;
    for (size_t i = 0; i < oldest.n && rc != 0; i++) {
        if (upload_sessions_expire(us, oldest.names[i]) == 0) {
            log_info("uploads", "upload session %s made room for a new one (%s)",
                     oldest.names[i], err_message(e));
            rc = 0;
        }
    }
    meta_name_list_fini(&oldest);
    return rc;
}

int upload_sessions_create(struct upload_sessions *us, const char *repo, int64_t ttl_s,
                           const char *source, bool is_single_request,
                           const struct meta_upload_caps *caps, char id_out[33],
                           struct err *e)
{
    /* A client at its cap is refused by a read, before anything is created or locked,
     * unless a session of its own that no request holds can make room. */
    if (caps != NULL && us->ms->ops->upload_caps_check(us->ms, source, caps, e) != 0) {
        if (e->code != ERR_TOOMANYREQUESTS || replace_oldest(us, source, caps, e) != 0)
            return -1;
        *e = (struct err){0};
        if (us->ms->ops->upload_caps_check(us->ms, source, caps, e) != 0)
            return -1;
    }
    util_random_id(id_out);
    if (us->bs->ops->upload_create(us->bs, id_out, e) != 0)
        return -1;
    int64_t expires_at_s = util_now_s() + ttl_s;
    int rc = caps != NULL ? us->ms->ops->upload_create_capped(us->ms, id_out, repo,
                                                             expires_at_s, source,
                                                             is_single_request, caps, e)
                          : us->ms->ops->upload_create(us->ms, id_out, repo, expires_at_s,
                                                       source, is_single_request, e);
    if (rc != 0) {
        us->bs->ops->upload_remove(us->bs, id_out);
        return -1;
    }
    metrics_uploads_in_progress_add(1);
    return 0;
}

static bool is_valid_id(const char *id)
{
    size_t n = strlen(id);
    if (n != 32)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (!((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'f')))
            return false;
    }
    return true;
}

/* The cross-node half of a session's exclusive use: several nodes of a region may each
 * receive requests of one upload, and the busy flag only covers this node. The claim
 * (ms_upload_claim_f) is taken after the busy flag and given up before it is cleared,
 * so one request of this node holds both at once; another node's request finds the
 * claim held and, after waiting for it until deadline_ns (CLOCK_MONOTONIC; one of at most
 * UPLOAD_SESSIONS_MAX_WAITING requests, or not at all), gets the same answer as a second
 * request here, unless the holder is a sweep that already deleted the session's row
 * (upload_sessions_expire): then the session is gone for the client, 404
 * BLOB_UPLOAD_UNKNOWN, not "in use". */
static int claim(struct upload_sessions *us, const char *id, int64_t deadline_ns,
                 struct err *e)
{
    bool is_waiting = false; /* counted in n_waiting */
    int rc = 1;
    for (long pause = 2; rc == 1; pause = pause < 50 ? pause * 2 : 100) {
        bool is_held = false;
        struct err ge = {0};
        if (us->ms->ops->upload_claim(us->ms, id, true, &is_held, e) != 0) {
            rc = -1;
        } else if (is_held) {
            stranded_note(us, id, false);
            rc = 0;
        } else if (us->ms->ops->upload_get(us->ms, id, NULL, NULL, &ge) != 0 &&
                   ge.code == ERR_BLOB_UPLOAD_UNKNOWN) {
            rc = err_set(e, ERR_BLOB_UPLOAD_UNKNOWN, NULL);
        } else if (util_mono_ns() >= deadline_ns) {
            rc = 2;
        } else {
            AZ(pthread_mutex_lock(&us->mu));
            if (!is_waiting && us->n_waiting < UPLOAD_SESSIONS_MAX_WAITING) {
                us->n_waiting++;
                is_waiting = true;
            }
            AZ(pthread_mutex_unlock(&us->mu));
            if (is_waiting)
                util_sleep_ms(pause);
            else
                rc = 2; /* enough requests wait already: answer at once */
        }
    }
    if (is_waiting) {
        AZ(pthread_mutex_lock(&us->mu));
        us->n_waiting--;
        AZ(pthread_mutex_unlock(&us->mu));
    }
    if (rc != 2)
        return rc;
    if (is_stranded(us, id))
        return err_set(e, ERR_UNAVAILABLE, "upload session is held by a lost database "
                                           "connection; retry later");
    return err_set(e, ERR_BLOB_UPLOAD_INVALID, "upload session is in use by another request");
}

static void unclaim(struct upload_sessions *us, const char *id)
{
    struct err e = {0};
    bool is_held;
    if (us->ms->ops->upload_claim(us->ms, id, false, &is_held, &e) != 0) {
        log_warn("uploads", "failed to give up the claim on upload session %s: %s", id,
                 err_message(&e));
        stranded_note(us, id, true);
    }
}

/* Gives back a session taken by acquire that failed before use; returns -1. */
static int release_busy(struct upload_sessions *us, struct upload_state *st, bool is_claimed)
{
    if (is_claimed)
        unclaim(us, st->id);
    AZ(pthread_mutex_lock(&us->mu));
    st->is_busy = false;
    st->is_expiring = false;
    st->is_ending = false;
    AZ(pthread_cond_broadcast(&us->idle_cv));
    AZ(pthread_mutex_unlock(&us->mu));
    return -1;
}

/* Whether the state this node holds for a session is still the session's: several nodes
 * of a region (one shared metastore and blobstore) may each receive requests of one
 * upload, so a client session may have grown (or gone) through another node since this
 * one last held it. Its acknowledged size tells: appends only extend it, and this node's
 * offset equals it whenever the session is idle here. False with e set when the store
 * cannot answer; false with e clear when the state is stale. */
static bool is_current(struct upload_sessions *us, struct upload_state *st, struct err *e)
{
    int64_t acked = -1;
    if (us->ms->ops->upload_get(us->ms, st->id, st->repo, &acked, e) != 0) {
        if (e->code != ERR_BLOB_UPLOAD_UNKNOWN)
            return false;
        *e = (struct err){0}; /* removed elsewhere: loading it again says so */
        return false;
    }
    /* A replication fetch's session (no acknowledged size) lives on one node only. */
    return acked < 0 || (uint64_t)acked == st->offset;
}

/* Caller holds us->mu. Waits for a state to go idle or leave the list until deadline_ns
 * (CLOCK_MONOTONIC); false once it has passed. */
static bool wait_idle(struct upload_sessions *us, int64_t deadline_ns)
{
    if (util_mono_ns() >= deadline_ns || us->n_waiting >= UPLOAD_SESSIONS_MAX_WAITING)
        return false;
    struct timespec until = {.tv_sec = deadline_ns / 1000000000,
                             .tv_nsec = deadline_ns % 1000000000};
    us->n_waiting++;
    int rc = pthread_cond_timedwait(&us->idle_cv, &us->mu, &until);
    us->n_waiting--;
    ASSERT(rc == 0 || rc == ETIMEDOUT);
    return true; /* the caller looks again; the next call sees the deadline */
}

int upload_sessions_acquire(struct upload_sessions *us, const char *id, const char *repo,
                            long wait_ms, struct upload_state **out, struct err *e)
{
    *out = NULL;
    if (!is_valid_id(id))
        return err_set(e, ERR_BLOB_UPLOAD_UNKNOWN, NULL);
    int64_t deadline_ns = util_mono_ns() + wait_ms * 1000000L;
    bool is_claimed = false;
    AZ(pthread_mutex_lock(&us->mu));
    struct upload_state *st = find(us, id);
    /* Held by a request of this node that is ending: a client whose connection broke
     * mid-body resumes at once (as it may, told the acknowledged size by a status request)
     * while the broken request is still cutting its bytes away. That runs on the holder's
     * own thread, never on this one; a live holder is not waited for. */
    while (st && st->is_busy && st->is_ending && wait_idle(us, deadline_ns))
        st = find(us, id);
    if (st) {
        if (st->is_busy) {
            bool is_expiring = st->is_expiring;
            AZ(pthread_mutex_unlock(&us->mu));
            if (is_expiring) /* the sweep removes it now */
                return err_set(e, ERR_BLOB_UPLOAD_UNKNOWN, NULL);
            return err_set(e, ERR_BLOB_UPLOAD_INVALID, "upload session is in use by another "
                                                       "request");
        }
        if (strcmp(st->repo, repo) != 0) {
            AZ(pthread_mutex_unlock(&us->mu));
            return err_set(e, ERR_BLOB_UPLOAD_UNKNOWN, NULL);
        }
        st->is_busy = true;
        AZ(pthread_mutex_unlock(&us->mu));
        if (claim(us, id, deadline_ns, e) != 0)
            return release_busy(us, st, false);
        is_claimed = true;
        if (is_current(us, st, e)) {
            *out = st;
            return 0;
        }
        if (e->code != 0)
            return release_busy(us, st, true);
        /* Another node of the region moved the session on: drop this node's state and
         * load it again from storage below. */
        AZ(pthread_mutex_lock(&us->mu));
        unlink_state(us, st);
        AZ(pthread_mutex_unlock(&us->mu));
        state_free(us, st);
    } else {
        AZ(pthread_mutex_unlock(&us->mu));
    }

    /* Not in memory: load it from storage, then publish it unless another request
     * loaded it meanwhile. The claim comes first: no other node appends while the size is
     * read. */
    if (!is_claimed && claim(us, id, deadline_ns, e) != 0)
        return -1;
    int64_t acked = -1;
    uint64_t size = 0;
    struct blobstore_upload *upload;
    if (us->ms->ops->upload_get(us->ms, id, repo, &acked, e) != 0 ||
        us->bs->ops->upload_open(us->bs, id, &upload, &size, e) != 0) {
        unclaim(us, id);
        return -1;
    }
    st = xcalloc(1, sizeof(*st));
    memcpy(st->id, id, 33);
    st->repo = xstrdup(repo);
    st->upload = upload;
    st->offset = size;
    st->is_busy = true;
    /* Published (busy) before the file is touched: a request that loaded the same session
     * at the same moment finds it here and gives up, instead of cutting the file under a
     * request that already appends to it. */
    AZ(pthread_mutex_lock(&us->mu));
    if (find(us, id) != NULL) {
        AZ(pthread_mutex_unlock(&us->mu));
        state_free(us, st);
        unclaim(us, id); /* the other request's claim stays: the lock counts its takers */
        return err_set(e, ERR_BLOB_UPLOAD_INVALID, "upload session is in use by another "
                                                   "request");
    }
    st->next = us->head;
    us->head = st;
    AZ(pthread_mutex_unlock(&us->mu));
    if (acked >= 0 && size > (uint64_t)acked) {
        /* The process died in the middle of a request: its bytes past the last
         * acknowledged size were never promised. The hash is rebuilt from what stays. */
        if (us->bs->ops->upload_truncate(us->bs, st->upload, (uint64_t)acked, &st->offset, e) !=
            0) {
            log_error("uploads", "failed to cut upload %s back to %" PRId64 " bytes", id,
                      acked);
            AZ(pthread_mutex_lock(&us->mu));
            unlink_state(us, st);
            AZ(pthread_mutex_unlock(&us->mu));
            state_free(us, st);
            unclaim(us, id);
            return -1;
        }
        log_info("uploads", "cut upload %s back from %" PRIu64 " to the %" PRId64
                 " bytes acknowledged before a restart", id, size, acked);
    } else if (acked >= 0 && size < (uint64_t)acked) {
        log_warn("uploads", "upload %s holds %" PRIu64 " bytes, %" PRId64 " were acknowledged "
                 "(lost in a power failure?); it resumes at %" PRIu64, id, size, acked, size);
    }
    *out = st;
    return 0;
}

void upload_sessions_ending(struct upload_sessions *us, struct upload_state *st)
{
    AZ(pthread_mutex_lock(&us->mu));
    ASSERT(st->is_busy);
    st->is_ending = true;
    AZ(pthread_mutex_unlock(&us->mu));
}

size_t upload_sessions_waiting(struct upload_sessions *us)
{
    AZ(pthread_mutex_lock(&us->mu));
    size_t n = us->n_waiting;
    AZ(pthread_mutex_unlock(&us->mu));
    return n;
}

int upload_sessions_acquire_or_create(struct upload_sessions *us, const char *id,
                                      const char *repo, int64_t ttl_s,
                                      struct upload_state **out, struct err *e)
{
    if (upload_sessions_acquire(us, id, repo, UPLOAD_SESSIONS_WAIT_MS, out, e) == 0)
        return 0;
    if (e->code != ERR_BLOB_UPLOAD_UNKNOWN || !is_valid_id(id))
        return -1;
    /* If a session of that id is held for another repository (the same blob fetched
     * for another one), drop it: its bytes are fetched again under this one. A file
     * without a row (the row was lost in a crash) is reused as it is. */
    struct err ignore = {0};
    uint64_t size;
    struct blobstore_upload *upload = NULL;
    bool has_bytes = us->bs->ops->upload_open(us->bs, id, &upload, &size, &ignore) == 0;
    us->bs->ops->upload_close(us->bs, upload);
    if (has_bytes && us->ms->ops->upload_get(us->ms, id, NULL, NULL, &ignore) == 0) {
        upload_sessions_expire(us, id);
        has_bytes = false;
    }
    if (!has_bytes && us->bs->ops->upload_create(us->bs, id, e) != 0)
        return -1;
    if (us->ms->ops->upload_create(us->ms, id, repo, util_now_s() + ttl_s, NULL, false, e) !=
        0)
        return -1;
    metrics_uploads_in_progress_add(1);
    return upload_sessions_acquire(us, id, repo, UPLOAD_SESSIONS_WAIT_MS, out, e);
}

void upload_sessions_release(struct upload_sessions *us, struct upload_state *st)
{
    if (st == NULL)
        return;
    uint64_t held = us->bs->ops->upload_idle(us->bs, st->upload);
    if (held != st->offset)
        log_error("uploads", "upload %s keeps %" PRIu64 " of its %" PRIu64 " bytes", st->id,
                  held, st->offset);
    st->offset = held;
    unclaim(us, st->id);
    AZ(pthread_mutex_lock(&us->mu));
    st->is_busy = false;
    st->is_ending = false;
    /* To the front (most recently used; unlink_state wakes the waiters), then past
     * max_idle idle states the rest of the idle ones leave the list; they are closed after
     * the lock is given up. */
    unlink_state(us, st);
    st->next = us->head;
    us->head = st;
    struct upload_state *closing = NULL;
    size_t n_idle = 0;
    for (struct upload_state **pp = &us->head; *pp != NULL;) {
        struct upload_state *cur = *pp;
        if (!cur->is_busy && ++n_idle > us->max_idle) {
            *pp = cur->next;
            cur->next = closing;
            closing = cur;
            continue;
        }
        pp = &cur->next;
    }
    AZ(pthread_mutex_unlock(&us->mu));
    while (closing != NULL) {
        struct upload_state *cur = closing;
        closing = cur->next;
        state_free(us, cur);
    }
}

int upload_sessions_append(struct upload_sessions *us, struct upload_state *st, const void *p,
                           size_t n, struct err *e)
{
    ASSERT(st->is_busy);
    if (us->bs->ops->upload_append(us->bs, st->upload, st->offset, p, n, e) != 0)
        return -1;
    st->offset += n;
    return 0;
}

int upload_sessions_flush(struct upload_sessions *us, struct upload_state *st, struct err *e)
{
    ASSERT(st->is_busy);
    return us->bs->ops->upload_flush(us->bs, st->upload, false, e);
}

int upload_sessions_acknowledge(struct upload_sessions *us, struct upload_state *st,
                                struct err *e)
{
    ASSERT(st->is_busy);
    /* A 202 is a promise (DESIGN, invariant 2): the bytes reach stable storage before
     * the row that counts them, so after a crash or a power loss the session resumes at
     * this offset. */
    if (us->bs->ops->upload_flush(us->bs, st->upload, true, e) != 0)
        return -1;
    return us->ms->ops->upload_set_acked(us->ms, st->id, st->offset, e);
}

int upload_sessions_truncate(struct upload_sessions *us, struct upload_state *st,
                             uint64_t offset, struct err *e)
{
    ASSERT(st->is_busy);
    return us->bs->ops->upload_truncate(us->bs, st->upload, offset, &st->offset, e);
}

int upload_sessions_commit(struct upload_sessions *us, struct upload_state *st,
                           const struct digest *want, struct err *e)
{
    ASSERT(st->is_busy);
    return us->bs->ops->upload_commit(us->bs, st->upload, want, e);
}

void upload_sessions_delete(struct upload_sessions *us, struct upload_state *st)
{
    struct err e = {0};
    if (us->ms->ops->upload_delete(us->ms, st->id, &e) != 0)
        log_warn("uploads", "failed to delete upload session %s: %s", st->id, err_message(&e));
    AZ(pthread_mutex_lock(&us->mu));
    unlink_state(us, st);
    AZ(pthread_mutex_unlock(&us->mu));
    /* The handle goes before the bytes: a backend removes no upload that is open. */
    char id[33];
    memcpy(id, st->id, sizeof(id));
    state_free(us, st);
    us->bs->ops->upload_remove(us->bs, id);
    unclaim(us, id);
    metrics_uploads_in_progress_add(-1);
}

int upload_sessions_expire(struct upload_sessions *us, const char *id)
{
    AZ(pthread_mutex_lock(&us->mu));
    struct upload_state *st = find(us, id);
    if (st && st->is_busy) {
        AZ(pthread_mutex_unlock(&us->mu));
        return -1;
    }
    if (st) {
        st->is_busy = true; /* no request of this node takes it while the claim is asked */
        st->is_expiring = true;
    }
    AZ(pthread_mutex_unlock(&us->mu));
    struct err e = {0};
    /* A deadline long past: one try, never a wait (in use through another node, or no
     * database). */
    if (claim(us, id, 0, &e) != 0) {
        if (st)
            release_busy(us, st, false);
        return -1;
    }
    if (st) {
        AZ(pthread_mutex_lock(&us->mu));
        unlink_state(us, st);
        AZ(pthread_mutex_unlock(&us->mu));
        state_free(us, st);
    }
    us->ms->ops->upload_delete(us->ms, id, &e);
    us->bs->ops->upload_remove(us->bs, id);
    unclaim(us, id);
    metrics_uploads_in_progress_add(-1);
    return 0;
}

size_t upload_sessions_remove_orphans(struct upload_sessions *us)
{
    struct meta_name_list orphans = {0};
    struct err e = {0};
    size_t n = 0;
    if (us->ms->ops->upload_list_single(us->ms, &orphans, &e) != 0) {
        log_error("uploads", "failed to list the sessions of monolithic uploads: %s",
                  err_message(&e));
        return 0;
    }
    for (size_t i = 0; i < orphans.n; i++) {
        if (upload_sessions_expire(us, orphans.names[i]) == 0)
            n++;
    }
    meta_name_list_fini(&orphans);
    return n;
}

static bool is_listed(const struct meta_name_list *l, const char *id)
{
    for (size_t i = 0; i < l->n; i++) {
        if (strcmp(l->names[i], id) == 0)
            return true;
    }
    return false;
}

size_t upload_sessions_sweep_singles(struct upload_sessions *us,
                                     const struct meta_name_list *seen_before,
                                     struct meta_name_list *seen_now)
{
    struct meta_name_list singles = {0};
    struct err e = {0};
    size_t n = 0;
    memset(seen_now, 0, sizeof(*seen_now));
    if (us->ms->ops->upload_list_single(us->ms, &singles, &e) != 0) {
        log_error("uploads", "failed to list the sessions of monolithic uploads: %s",
                  err_message(&e));
        return 0;
    }
    for (size_t i = 0; i < singles.n; i++) {
        /* expire takes the claim first: a session a request holds (here or on another
         * node) stays. */
        if (is_listed(seen_before, singles.names[i]) &&
            upload_sessions_expire(us, singles.names[i]) == 0) {
            n++;
            continue;
        }
        seen_now->names = xrealloc(seen_now->names, (seen_now->n + 1) * sizeof(char *));
        seen_now->names[seen_now->n++] = xstrdup(singles.names[i]);
    }
    meta_name_list_fini(&singles);
    return n;
}

bool upload_sessions_is_active(struct upload_sessions *us, const char *id)
{
    AZ(pthread_mutex_lock(&us->mu));
    struct upload_state *st = find(us, id);
    bool active = st != NULL && st->is_busy;
    AZ(pthread_mutex_unlock(&us->mu));
    return active;
}
