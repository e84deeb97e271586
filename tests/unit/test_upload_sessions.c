/* Unit tests for the upload session table (upload_sessions.c) against what the sweep does
 * to a session while a client asks for it: a session the sweep is removing is gone for the
 * client (ERR_BLOB_UPLOAD_UNKNOWN: 404), whether this node's sweep holds it or another
 * node's holds its claim after deleting its row; a session another request holds is still
 * "in use" (ERR_BLOB_UPLOAD_INVALID). The metastore's claim is wrapped to stand for
 * another node and to stop the sweep half-way. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

/* cmocka.h needs the four headers above first. */
#include <cmocka.h>

#include <ftw.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

#include "blobstore.h"
#include "digest.h"
#include "metastore.h"
#include "upload_sessions.h"
#include "util.h"

struct fixture {
    char dir[64];
    struct blobstore *bs;
    struct metastore *ms;
    struct metastore_ops ops; /* ms's, with upload_claim wrapped */
    const struct metastore_ops *real;
    struct upload_sessions *us;
};

/* The wrapped claim's state (one test at a time). */
static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    const struct metastore_ops *real;
    bool is_held_elsewhere; /* another node holds every claim */
    bool is_sweep_stopped;  /* the next claim waits in the claim until go */
    bool is_in_claim;
    bool is_go;
} w = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

static int wrapped_claim(struct metastore *ms, const char *id, bool is_claim, bool *is_held,
                         struct err *e)
{
    AZ(pthread_mutex_lock(&w.mu));
    if (is_claim && w.is_held_elsewhere) {
        AZ(pthread_mutex_unlock(&w.mu));
        *is_held = false;
        return 0;
    }
    if (is_claim && w.is_sweep_stopped) {
        w.is_sweep_stopped = false;
        w.is_in_claim = true;
        AZ(pthread_cond_broadcast(&w.cv));
        while (!w.is_go)
            AZ(pthread_cond_wait(&w.cv, &w.mu));
    }
    AZ(pthread_mutex_unlock(&w.mu));
    return w.real->upload_claim(ms, id, is_claim, is_held, e);
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int setup(void **state)
{
    struct fixture *f = xcalloc(1, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "/tmp/meridian-us-XXXXXX");
    if (mkdtemp(f->dir) == NULL)
        return -1;
    struct err e = {0};
    char path[128];
    snprintf(path, sizeof(path), "%s/meta.db", f->dir);
    f->bs = blobstore_fs_open(f->dir, &e);
    f->ms = metastore_sqlite_open(path, "local", &e);
    if (f->bs == NULL || f->ms == NULL)
        return -1;
    f->real = f->ms->ops;
    f->ops = *f->real;
    f->ops.upload_claim = wrapped_claim;
    f->ms->ops = &f->ops;
    w.real = f->real;
    w.is_held_elsewhere = w.is_sweep_stopped = w.is_in_claim = w.is_go = false;
    f->us = upload_sessions_new(f->bs, f->ms);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    upload_sessions_free(f->us);
    f->ms->ops = f->real;
    f->ms->ops->close(f->ms);
    f->bs->ops->close(f->bs);
    nftw(f->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

/* A session of repo "r" holding some bytes, its state in memory here (idle). */
static void make_session(struct fixture *f, char id[33])
{
    struct err e = {0};
    assert_int_equal(upload_sessions_create(f->us, "r", 3600, "127.0.0.1", false, NULL, id, &e), 0);
    struct upload_state *st = NULL;
    assert_int_equal(upload_sessions_acquire(f->us, id, "r", 0, &st, &e), 0);
    assert_int_equal(upload_sessions_append(f->us, st, "abc", 3, &e), 0);
    assert_int_equal(upload_sessions_acknowledge(f->us, st, &e), 0);
    upload_sessions_release(f->us, st);
}

static int acquire_code(struct fixture *f, const char *id)
{
    struct upload_state *st = NULL;
    struct err e = {0};
    if (upload_sessions_acquire(f->us, id, "r", 0, &st, &e) == 0) {
        upload_sessions_release(f->us, st);
        return 0;
    }
    return e.code;
}

struct sweep_arg {
    struct fixture *f;
    const char *id;
    int rc;
};

static void *sweep(void *p)
{
    struct sweep_arg *a = p;
    a->rc = upload_sessions_expire(a->f->us, a->id);
    return NULL;
}

/* This node's sweep has taken the session (its claim not yet answered): a status
 * request then is told the session is gone, not that it is in use. */
static void test_session_the_sweep_removes_here_is_unknown(void **state)
{
    struct fixture *f = *state;
    char id[33];
    make_session(f, id);
    w.is_sweep_stopped = true;
    struct sweep_arg a = {.f = f, .id = id, .rc = -2};
    pthread_t t;
    AZ(pthread_create(&t, NULL, sweep, &a));
    AZ(pthread_mutex_lock(&w.mu));
    while (!w.is_in_claim)
        AZ(pthread_cond_wait(&w.cv, &w.mu));
    AZ(pthread_mutex_unlock(&w.mu));

    assert_int_equal(acquire_code(f, id), ERR_BLOB_UPLOAD_UNKNOWN);

    AZ(pthread_mutex_lock(&w.mu));
    w.is_go = true;
    AZ(pthread_cond_broadcast(&w.cv));
    AZ(pthread_mutex_unlock(&w.mu));
    AZ(pthread_join(t, NULL));
    assert_int_equal(a.rc, 0);
    assert_int_equal(acquire_code(f, id), ERR_BLOB_UPLOAD_UNKNOWN);
}

/* Another node's sweep holds the claim and has deleted the row (it removes the bytes
 * now): gone for the client. Its claim held by a request while the row stays: in use. */
static void test_session_another_node_sweeps_is_unknown(void **state)
{
    struct fixture *f = *state;
    char swept[33], busy[33];
    make_session(f, swept);
    make_session(f, busy);
    struct err e = {0};
    w.is_held_elsewhere = true;
    assert_int_equal(f->ms->ops->upload_delete(f->ms, swept, &e), 0);

    assert_int_equal(acquire_code(f, swept), ERR_BLOB_UPLOAD_UNKNOWN);
    assert_int_equal(acquire_code(f, busy), ERR_BLOB_UPLOAD_INVALID);

    w.is_held_elsewhere = false;
    assert_int_equal(acquire_code(f, busy), 0);
}

/* A request of this node holds the session: the sweep leaves it, a second request is
 * told it is in use. */
static void test_session_a_request_holds_is_in_use(void **state)
{
    struct fixture *f = *state;
    char id[33];
    make_session(f, id);
    struct upload_state *st = NULL;
    struct err e = {0};
    assert_int_equal(upload_sessions_acquire(f->us, id, "r", 0, &st, &e), 0);
    assert_int_equal(upload_sessions_expire(f->us, id), -1);
    assert_int_equal(acquire_code(f, id), ERR_BLOB_UPLOAD_INVALID);
    upload_sessions_release(f->us, st);
    assert_int_equal(acquire_code(f, id), 0);
}

struct writer_arg {
    struct fixture *f;
    const char *id;
    long wait_ms;
    int code;        /* -1 (taken) or the error code */
    uint64_t offset; /* where the session resumed, when taken */
    atomic_bool is_done;
};

static void *writer(void *p)
{
    struct writer_arg *a = p;
    struct upload_state *st = NULL;
    struct err e = {0};
    if (upload_sessions_acquire(a->f->us, a->id, "r", a->wait_ms, &st, &e) != 0) {
        a->code = e.code;
    } else {
        a->offset = st->offset;
        upload_sessions_release(a->f->us, st);
    }
    atomic_store(&a->is_done, true);
    return NULL;
}

/* A new session of repo "r" (make_session), held by a request of the test. */
static struct upload_state *hold_session(struct fixture *f, char id[33])
{
    make_session(f, id);
    struct upload_state *st = NULL;
    struct err e = {0};
    assert_int_equal(upload_sessions_acquire(f->us, id, "r", 0, &st, &e), 0);
    return st;
}

/* Starts writer(a[i]) for each of the n on threads t, and returns once all n wait in
 * acquire; fails if any of them returned instead of waiting. */
static void start_waiting_writers(struct fixture *f, struct writer_arg *a, pthread_t *t,
                                  size_t n)
{
    for (size_t i = 0; i < n; i++)
        AZ(pthread_create(&t[i], NULL, writer, &a[i]));
    bool is_any_done = false;
    while (upload_sessions_waiting(f->us) < n && !is_any_done) {
        sched_yield();
        for (size_t i = 0; i < n; i++)
            is_any_done = is_any_done || atomic_load(&a[i].is_done);
    }
    assert_false(is_any_done); /* each waits, and is not told "in use" */
}

/* A request holds the session and is failing (its client went away mid-body; it cuts its
 * unacknowledged bytes away): a writing request that came meanwhile waits for it and
 * resumes where the holder left the session. A status request does not wait. */
static void test_a_writing_request_waits_for_the_holder(void **state)
{
    struct fixture *f = *state;
    char id[33];
    struct upload_state *st = hold_session(f, id);
    struct err e = {0};
    assert_int_equal(upload_sessions_append(f->us, st, "defg", 4, &e), 0);
    upload_sessions_ending(f->us, st); /* its client went away: it cuts "defg" away */

    struct writer_arg a = {.f = f, .id = id, .wait_ms = 60 * 1000, .code = -1};
    pthread_t t;
    start_waiting_writers(f, &a, &t, 1);
    assert_int_equal(acquire_code(f, id), ERR_BLOB_UPLOAD_INVALID);

    assert_int_equal(upload_sessions_truncate(f->us, st, 3, &e), 0);
    upload_sessions_release(f->us, st);
    AZ(pthread_join(t, NULL));
    assert_int_equal(a.code, -1);
    assert_int_equal(a.offset, 3);
}

/* A live holder (a PATCH still streaming its body) is not waited for: a second request
 * is told at once that the session is in use, so that requests at a held session cannot
 * tie up the HTTP workers. */
static void test_a_live_holder_is_not_waited_for(void **state)
{
    struct fixture *f = *state;
    char id[33];
    struct upload_state *st = hold_session(f, id);
    int64_t start = util_mono_ns();
    struct writer_arg a = {.f = f, .id = id, .wait_ms = 10 * 1000, .code = -1};
    writer(&a);
    assert_int_equal(a.code, ERR_BLOB_UPLOAD_INVALID);
    assert_true(util_mono_ns() - start < 5 * 1000000000LL); /* not the wait's 10 s */
    upload_sessions_release(f->us, st);
}

/* The failed request was a monolithic upload: it deletes its session as it ends. The
 * request that waited for it is told the session is gone (404), not that it is in use. */
static void test_a_waiting_request_finds_a_deleted_session_gone(void **state)
{
    struct fixture *f = *state;
    char id[33];
    struct upload_state *st = hold_session(f, id);
    upload_sessions_ending(f->us, st);
    struct writer_arg a = {.f = f, .id = id, .wait_ms = 60 * 1000, .code = -1};
    pthread_t t;
    start_waiting_writers(f, &a, &t, 1);
    upload_sessions_delete(f->us, st);
    AZ(pthread_join(t, NULL));
    assert_int_equal(a.code, ERR_BLOB_UPLOAD_UNKNOWN);
}

/* At most UPLOAD_SESSIONS_MAX_WAITING requests wait at once; the next is answered at
 * once. Once the holder has ended, the waiters go on: one takes the session, and each of
 * the others either takes it after that one or is told it is in use. */
static void test_waiting_requests_are_capped(void **state)
{
    struct fixture *f = *state;
    char id[33];
    struct upload_state *st = hold_session(f, id);
    upload_sessions_ending(f->us, st);
    struct writer_arg a[UPLOAD_SESSIONS_MAX_WAITING];
    pthread_t t[UPLOAD_SESSIONS_MAX_WAITING];
    for (size_t i = 0; i < UPLOAD_SESSIONS_MAX_WAITING; i++)
        a[i] = (struct writer_arg){.f = f, .id = id, .wait_ms = 60 * 1000, .code = -1};
    start_waiting_writers(f, a, t, UPLOAD_SESSIONS_MAX_WAITING);
    int64_t start = util_mono_ns();
    struct writer_arg extra = {.f = f, .id = id, .wait_ms = 60 * 1000, .code = -1};
    writer(&extra);
    assert_int_equal(extra.code, ERR_BLOB_UPLOAD_INVALID);
    assert_true(util_mono_ns() - start < 30 * 1000000000LL); /* not the minute's wait */

    upload_sessions_release(f->us, st);
    size_t n_taken = 0;
    for (size_t i = 0; i < UPLOAD_SESSIONS_MAX_WAITING; i++) {
        AZ(pthread_join(t[i], NULL));
        if (a[i].code == -1)
            n_taken++;
        else
            assert_int_equal(a[i].code, ERR_BLOB_UPLOAD_INVALID);
    }
    assert_true(n_taken >= 1);
}

/* A holder that takes longer to end than the wait: the waiting request is told the
 * session is in use, and the holder's session is untouched. */
static void test_a_writing_request_gives_up_after_its_wait(void **state)
{
    struct fixture *f = *state;
    char id[33];
    struct upload_state *st = hold_session(f, id);
    struct err e = {0};
    upload_sessions_ending(f->us, st);
    struct writer_arg a = {.f = f, .id = id, .wait_ms = 50, .code = -1};
    writer(&a);
    assert_int_equal(a.code, ERR_BLOB_UPLOAD_INVALID);
    assert_int_equal(upload_sessions_waiting(f->us), 0);
    assert_int_equal(upload_sessions_append(f->us, st, "d", 1, &e), 0);
    assert_int_equal(upload_sessions_acknowledge(f->us, st, &e), 0);
    upload_sessions_release(f->us, st);
    a = (struct writer_arg){.f = f, .id = id, .wait_ms = 0, .code = -1};
    writer(&a);
    assert_int_equal(a.code, -1);
    assert_int_equal(a.offset, 4);
}

/* Descriptors of this process open on the store's upload files. */
static size_t open_upload_files(struct fixture *f)
{
    char dir[96], link[64], target[256];
    snprintf(dir, sizeof(dir), "%s/uploads/", f->dir);
    size_t n = 0;
    for (int fd = 0; fd < 4096; fd++) {
        snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
        ssize_t len = readlink(link, target, sizeof(target) - 1);
        if (len <= 0)
            continue;
        target[len] = '\0';
        if (strncmp(target, dir, strlen(dir)) == 0)
            n++;
    }
    return n;
}

/* Sessions that clients started and left keep no more open files than max_idle (a client
 * that never finishes must not run the process out of descriptors), and a session whose
 * state was closed goes on where it was: its next request loads it from storage. */
static void test_idle_sessions_past_the_cap_are_closed_and_resume(void **state)
{
    struct fixture *f = *state;
    upload_sessions_set_max_idle(f->us, 2);
    char ids[5][33];
    for (int i = 0; i < 5; i++)
        make_session(f, ids[i]);
    assert_int_equal(open_upload_files(f), 2);

    struct upload_state *st = NULL;
    struct err e = {0};
    assert_int_equal(upload_sessions_acquire(f->us, ids[0], "r", 0, &st, &e), 0);
    assert_int_equal(st->offset, 3);
    assert_int_equal(upload_sessions_append(f->us, st, "def", 3, &e), 0);
    assert_int_equal(upload_sessions_acknowledge(f->us, st, &e), 0);
    struct digest want;
    digest_of_buffer(DIGEST_SHA256, "abcdef", 6, &want);
    assert_int_equal(upload_sessions_commit(f->us, st, &want, &e), 0);
    upload_sessions_delete(f->us, st);
    /* a busy session is never closed under its request, however many are idle */
    assert_int_equal(upload_sessions_acquire(f->us, ids[1], "r", 0, &st, &e), 0);
    upload_sessions_set_max_idle(f->us, 0);
    assert_int_equal(acquire_code(f, ids[2]), 0);
    assert_int_equal(open_upload_files(f), 1);
    assert_int_equal(upload_sessions_append(f->us, st, "d", 1, &e), 0);
    assert_int_equal(upload_sessions_acknowledge(f->us, st, &e), 0);
    upload_sessions_release(f->us, st);
    assert_int_equal(open_upload_files(f), 0);
    assert_int_equal(upload_sessions_acquire(f->us, ids[1], "r", 0, &st, &e), 0);
    assert_int_equal(st->offset, 4);
    upload_sessions_release(f->us, st);
}

/* Backdates session id's start by age_s seconds (a session left by a push cut off long
 * ago). */
static void age_session(struct fixture *f, const char *id, int age_s)
{
    char path[128], sql[160];
    snprintf(path, sizeof(path), "%s/meta.db", f->dir);
    snprintf(sql, sizeof(sql), "UPDATE uploads SET created_s = created_s - %d WHERE id = '%s'",
             age_s, id);
    sqlite3 *db;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_changes(db), 1);
    sqlite3_close(db);
}

static int create_code(struct fixture *f, const struct meta_upload_caps *caps, char id[33])
{
    struct err e = {0};
    if (upload_sessions_create(f->us, "r", 3600, "192.0.2.7", false, caps, id, &e) == 0)
        return 0;
    return e.code;
}

/* A client at its cap: a new session replaces its oldest one that no request holds once
 * that one is UPLOAD_SESSIONS_REPLACE_AFTER_S old (pushes cut off long ago must not lock
 * it out until the TTL), and is refused while its sessions are younger or in use. */
static void test_a_capped_client_replaces_its_oldest_idle_session(void **state)
{
    struct fixture *f = *state;
    struct meta_upload_caps caps = {.now_s = util_now_s(), .max_from_source = 2};
    char a[33], b[33], c[33], d[33];
    assert_int_equal(create_code(f, &caps, a), 0);
    assert_int_equal(create_code(f, &caps, b), 0);
    assert_int_equal(create_code(f, &caps, c), ERR_TOOMANYREQUESTS);

    age_session(f, a, UPLOAD_SESSIONS_REPLACE_AFTER_S + 5);
    assert_int_equal(create_code(f, &caps, c), 0);
    assert_int_equal(acquire_code(f, a), ERR_BLOB_UPLOAD_UNKNOWN);
    assert_int_equal(acquire_code(f, b), 0);
    assert_int_equal(acquire_code(f, c), 0);
    assert_int_equal(create_code(f, &caps, d), ERR_TOOMANYREQUESTS);

    /* an old session a request holds stays, and the new one is refused */
    age_session(f, b, UPLOAD_SESSIONS_REPLACE_AFTER_S + 5);
    struct upload_state *st = NULL;
    struct err e = {0};
    assert_int_equal(upload_sessions_acquire(f->us, b, "r", 0, &st, &e), 0);
    assert_int_equal(create_code(f, &caps, d), ERR_TOOMANYREQUESTS);
    upload_sessions_release(f->us, st);
    assert_int_equal(create_code(f, &caps, d), 0);
    assert_int_equal(acquire_code(f, b), ERR_BLOB_UPLOAD_UNKNOWN);

    /* the per-identity cap the same way, for the identity's own sessions only */
    struct meta_upload_caps owned = {.now_s = util_now_s(), .owner = "robot", .max_owned = 1};
    char o1[33], o2[33];
    assert_int_equal(create_code(f, &owned, o1), 0);
    assert_int_equal(create_code(f, &owned, o2), ERR_TOOMANYREQUESTS);
    age_session(f, o1, UPLOAD_SESSIONS_REPLACE_AFTER_S + 5);
    age_session(f, c, UPLOAD_SESSIONS_REPLACE_AFTER_S + 5);
    assert_int_equal(create_code(f, &owned, o2), 0);
    assert_int_equal(acquire_code(f, o1), ERR_BLOB_UPLOAD_UNKNOWN);
    assert_int_equal(acquire_code(f, c), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_session_the_sweep_removes_here_is_unknown, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_session_another_node_sweeps_is_unknown, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_session_a_request_holds_is_in_use, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_a_writing_request_waits_for_the_holder, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_a_writing_request_gives_up_after_its_wait, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_a_live_holder_is_not_waited_for, setup, teardown),
        cmocka_unit_test_setup_teardown(test_waiting_requests_are_capped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_a_waiting_request_finds_a_deleted_session_gone,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_idle_sessions_past_the_cap_are_closed_and_resume,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_a_capped_client_replaces_its_oldest_idle_session,
                                        setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
