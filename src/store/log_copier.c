/* The log copier: a thread that copies the write-ahead log into the database file while
 * writes go on, so that the checkpoint that ends the log, under the writer mutex, finds
 * little left to copy and little to sync. Past the writer's cache each push dirties a few
 * random leaves, so that checkpoint copies about one scattered page per leaf, and every
 * write of the process waited for it: at 100 000 tags ~50 us of each push's ~200 us under
 * the mutex (docs/performance.md, "The log copier").
 *
 * It must not meet SQLite's WAL-reset bug (Debian 12 ships 3.40.1, fixed in 3.51.3): a
 * checkpoint that starts while another connection's write starts the log over can leave
 * pages uncopied. A write starts the log over only when it finds the log copied to its very
 * end, and every write of the process holds the writer mutex. So each pass:
 *   1. under the writer mutex (no write in flight) opens a read transaction on a connection
 *      of its own, the pin, and notes the writer connection's commit count;
 *   2. waits for a commit after it: a write that appended to the log (one that started the
 *      log over did so before it committed);
 *   3. checkpoints (passive) on a second connection, then ends the pin.
 * Once the log holds 1 000 pages, the pass then ends it (below).
 * SQLite never copies past the snapshot of an open reader. A pin that found part of the log
 * not yet copied holds its place in the log: no checkpoint copies past it, and no write can
 * start the log over while it is open (that needs every reader out of the log). A pin that
 * found the log copied to its end reads the database file alone: the first write after it
 * may start the log over, but step 2 waits for that write to commit, and from then on no
 * checkpoint copies anything until the pin ends, so the log cannot be copied to its end
 * again. Either way step 3 starts after the last possible restart and cannot end the log.
 * Only a checkpoint under the writer mutex ends it: this thread's, right after a pass
 * (little is left then), or the commit hook's if the log outgrew its bound (sql_sqlite.c).
 *
 * A pass holds pass_mu from start to end. A TRUNCATE checkpoint (sq_compact_log) takes it
 * before the writer mutex: it must find no other checkpoint running (SQLite answers busy at
 * once, without the busy handler) and no pin to wait for (a pin waiting for a commit would
 * wait out its 100 ms, with every write held back by the TRUNCATE's writer mutex). */
#include "log_copier.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <time.h>

#include "log.h"
#include "metastore_sqlite_int.h"
#include "util.h"

/* A pass each time the log grew by this many pages, and the log ended after the pass that
 * finds it this long (SQLite's own limit: what the commit hook does without a copier). */
#define LOG_COPY_STEP_PAGES 500
#define LOG_END_PAGES 1000
/* How long a pass waits for a commit after its pin before it gives up: writes may have
 * stopped, and a pin held on would hold back a checkpoint that waits for readers. */
#define LOG_COPY_WAIT_MS 100

struct sq_log_copier {
    struct sq_store *st;
    struct sql_db *pin;  /* the pass's read transaction */
    struct sql_db *copy; /* the pass's checkpoint: a connection with no transaction open */
    struct sql_db *attached; /* the writer connection whose log ends are left to this */
    pthread_t thread;
    pthread_mutex_t pass_mu; /* held across a pass; before wmu */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    /* Under mu: */
    bool is_stopping;
    bool is_due; /* the log grew by a step since the last pass */
    uint64_t n_passes; /* passes whose checkpoint left part of the log copied */
    uint64_t n_ends;   /* checkpoints after a pass that copied the whole log */
    /* Read by sq_log_copier_note_commit without mu: */
    atomic_bool is_waiting_commit;
    _Atomic int64_t pages_at_pass; /* the log's size when the last pass was due (under wmu) */
};

void sq_log_copier_note_commit(struct sq_log_copier *cp, struct sql_db *wdb)
{
    if (cp == NULL)
        return;
    int64_t pages = cp->st->drv->log_pages(wdb);
    int64_t last = atomic_load(&cp->pages_at_pass);
    if (pages < last) { /* the log started over since: count its steps from 0 */
        last = 0;
        atomic_store(&cp->pages_at_pass, 0);
    }
    bool is_due = pages - last >= LOG_COPY_STEP_PAGES;
    if (!is_due && !atomic_load(&cp->is_waiting_commit))
        return;
    AZ(pthread_mutex_lock(&cp->mu));
    if (is_due) {
        cp->is_due = true;
        atomic_store(&cp->pages_at_pass, pages); /* one wake per step */
    }
    AZ(pthread_cond_broadcast(&cp->cv));
    AZ(pthread_mutex_unlock(&cp->mu));
}

void sq_log_copier_hold(struct sq_log_copier *cp, bool is_on)
{
    if (cp == NULL)
        return;
    if (is_on)
        AZ(pthread_mutex_lock(&cp->pass_mu));
    else
        AZ(pthread_mutex_unlock(&cp->pass_mu));
}

static void deadline_in(struct timespec *ts, long ms)
{
    AZ(clock_gettime(CLOCK_MONOTONIC, ts));
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

/* Step 2: whether a commit after the pin (n0: the count at the pin) came in time. */
static bool wait_for_commit(struct sq_log_copier *cp, struct sql_db *wdb, uint64_t n0)
{
    const struct sql_driver *drv = cp->st->drv;
    struct timespec deadline;
    deadline_in(&deadline, LOG_COPY_WAIT_MS);
    AZ(pthread_mutex_lock(&cp->mu));
    /* Set before the count is read: a commit that the read misses sees the flag and
     * wakes this thread (both sequentially consistent), under mu so the wake is not lost. */
    atomic_store(&cp->is_waiting_commit, true);
    int rc = 0;
    while (!cp->is_stopping && drv->log_commits(wdb) == n0 && rc != ETIMEDOUT)
        rc = pthread_cond_timedwait(&cp->cv, &cp->mu, &deadline);
    atomic_store(&cp->is_waiting_commit, false);
    bool has_commit = !cp->is_stopping && drv->log_commits(wdb) != n0;
    AZ(pthread_mutex_unlock(&cp->mu));
    return has_commit;
}

static void count(struct sq_log_copier *cp, uint64_t *counter)
{
    AZ(pthread_mutex_lock(&cp->mu));
    (*counter)++;
    AZ(pthread_mutex_unlock(&cp->mu));
}

/* A pin whose transaction did not end would keep every checkpoint from the log's end for
 * good: its connection is closed (which ends it) and opened again. */
static void unpin(struct sq_log_copier *cp)
{
    const struct sql_driver *drv = cp->st->drv;
    if (drv->pin(cp->pin, false) == SQL_OK)
        return;
    log_error("metastore", "the log copier's read transaction did not end: reopening it");
    drv->close(cp->pin);
    cp->pin = NULL;
    struct err e = {0};
    if (drv->open(cp->st->path, &cp->pin, &e) == 0)
        return;
    /* No more passes (pass checks): the commit hook ends the log again at SQLite's limit. */
    cp->pin = NULL;
    if (cp->attached != NULL)
        drv->copier_attach(cp->attached, false);
    cp->attached = NULL;
}

static void pass(struct sq_log_copier *cp)
{
    struct sq_store *st = cp->st;
    const struct sql_driver *drv = st->drv;
    if (cp->pin == NULL)
        return;
    AZ(pthread_mutex_lock(&st->wmu));
    struct sql_db *wdb = st->wdb; /* made by the first write; kept until the store closes */
    if (wdb != NULL && cp->attached == NULL) {
        drv->copier_attach(wdb, true);
        cp->attached = wdb;
    }
    uint64_t n0 = wdb != NULL ? drv->log_commits(wdb) : 0;
    int rc = wdb != NULL ? drv->pin(cp->pin, true) : SQL_OK;
    AZ(pthread_mutex_unlock(&st->wmu));
    if (wdb == NULL)
        return;
    int64_t n_copied = -1, n_log = -1;
    if (rc == SQL_OK && wait_for_commit(cp, wdb, n0)) {
        rc = drv->copy_log(cp->copy, false, &n_copied, &n_log);
        if (rc == SQL_OK && n_copied > 0)
            count(cp, &cp->n_passes);
    }
    unpin(cp);
    /* The log is long: end it now, as the commit hook would, under the writer mutex (no
     * write in flight). Little is left to copy and to sync right after a pass. */
    if (drv->log_pages(wdb) >= LOG_END_PAGES) {
        AZ(pthread_mutex_lock(&st->wmu));
        rc = drv->copy_log(cp->copy, true, &n_copied, &n_log);
        AZ(pthread_mutex_unlock(&st->wmu));
        if (rc == SQL_OK && n_log > 0 && n_copied == n_log)
            count(cp, &cp->n_ends);
    }
}

static void *copier_main(void *arg)
{
    struct sq_log_copier *cp = arg;
    AZ(pthread_mutex_lock(&cp->mu));
    for (;;) {
        while (!cp->is_due && !cp->is_stopping)
            AZ(pthread_cond_wait(&cp->cv, &cp->mu));
        if (cp->is_stopping)
            break;
        cp->is_due = false;
        AZ(pthread_mutex_unlock(&cp->mu));
        AZ(pthread_mutex_lock(&cp->pass_mu));
        pass(cp);
        AZ(pthread_mutex_unlock(&cp->pass_mu));
        AZ(pthread_mutex_lock(&cp->mu));
    }
    AZ(pthread_mutex_unlock(&cp->mu));
    return NULL;
}

struct sq_log_copier *sq_log_copier_start(struct sq_store *st)
{
    const struct sql_driver *drv = st->drv;
    if (drv->copy_log == NULL)
        return NULL;
    struct sq_log_copier *cp = xcalloc(1, sizeof(*cp));
    cp->st = st;
    struct err e = {0};
    if (drv->open(st->path, &cp->pin, &e) != 0 || drv->open(st->path, &cp->copy, &e) != 0) {
        log_warn("metastore", "no log copier (%s): checkpoints copy the whole log under the "
                 "writer mutex", err_message(&e));
        if (cp->pin != NULL)
            drv->close(cp->pin);
        free(cp);
        return NULL;
    }
    pthread_condattr_t attr;
    AZ(pthread_condattr_init(&attr));
    AZ(pthread_condattr_setclock(&attr, CLOCK_MONOTONIC));
    AZ(pthread_cond_init(&cp->cv, &attr));
    AZ(pthread_condattr_destroy(&attr));
    AZ(pthread_mutex_init(&cp->mu, NULL));
    AZ(pthread_mutex_init(&cp->pass_mu, NULL));
    atomic_init(&cp->is_waiting_commit, false);
    atomic_init(&cp->pages_at_pass, 0);
    AZ(pthread_create(&cp->thread, NULL, copier_main, cp));
    return cp;
}

void sq_log_copier_counts(struct sq_log_copier *cp, uint64_t *n_passes, uint64_t *n_ends)
{
    *n_passes = *n_ends = 0;
    if (cp == NULL)
        return;
    AZ(pthread_mutex_lock(&cp->mu));
    *n_passes = cp->n_passes;
    *n_ends = cp->n_ends;
    AZ(pthread_mutex_unlock(&cp->mu));
}

void sq_log_copier_stop(struct sq_log_copier *cp)
{
    if (cp == NULL)
        return;
    AZ(pthread_mutex_lock(&cp->mu));
    cp->is_stopping = true;
    AZ(pthread_cond_broadcast(&cp->cv));
    AZ(pthread_mutex_unlock(&cp->mu));
    AZ(pthread_join(cp->thread, NULL));
    const struct sql_driver *drv = cp->st->drv;
    if (cp->attached != NULL)
        drv->copier_attach(cp->attached, false);
    if (cp->pin != NULL)
        drv->close(cp->pin);
    drv->close(cp->copy);
    AZ(pthread_mutex_destroy(&cp->mu));
    AZ(pthread_mutex_destroy(&cp->pass_mu));
    AZ(pthread_cond_destroy(&cp->cv));
    free(cp);
}
