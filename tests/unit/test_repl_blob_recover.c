/* Unit tests for repl_blob_recover (repl.c) when a blob has no good copy and no peer is
 * asked (replication off): its loss is recorded (the manifests needing it hidden) under
 * the exclusive GC fence, and not at all when the metadata store does not grant the
 * fence: another node could make such a manifest visible under the hiding then. The
 * metastore's fence and blob_lost are wrapped to fail and to count. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

/* cmocka.h needs the four headers above first. */
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "digest.h"
#include "metastore.h"
#include "registry_ctx.h"
#include "repl.h"
#include "util.h"

static const struct metastore_ops *real;
static bool is_fence_refused;
static int n_fence_held; /* exclusive entries the database granted, not yet left */
static int n_lost;       /* blob_lost calls */
static int n_lost_unfenced;

static int wrapped_fence(struct metastore *ms, bool is_exclusive, bool is_enter, bool is_try,
                         bool *is_held, struct err *e)
{
    if (is_enter && is_fence_refused) {
        *is_held = false;
        return err_set(e, ERR_UNAVAILABLE, "the store is away");
    }
    int rc = real->gc_fence(ms, is_exclusive, is_enter, is_try, is_held, e);
    if (rc == 0 && is_exclusive && is_enter && *is_held)
        n_fence_held++;
    else if (rc == 0 && is_exclusive && !is_enter && n_fence_held > 0)
        n_fence_held--;
    return rc;
}

static int wrapped_lost(struct metastore *ms, const struct digest *d, size_t *n_manifests,
                        struct err *e)
{
    n_lost++;
    if (n_fence_held == 0)
        n_lost_unfenced++;
    return real->blob_lost(ms, d, n_manifests, e);
}

struct fixture {
    char dir[64];
    struct metastore_ops ops;
    struct registry reg;
};

static int setup(void **state)
{
    struct fixture *f = xcalloc(1, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "/tmp/meridian-recover-XXXXXX");
    if (mkdtemp(f->dir) == NULL)
        return -1;
    char path[128];
    snprintf(path, sizeof(path), "%s/meta.db", f->dir);
    struct err e = {0};
    f->reg.ms = metastore_sqlite_open(path, "local", &e);
    if (f->reg.ms == NULL)
        return -1;
    real = f->reg.ms->ops;
    f->ops = *real;
    f->ops.gc_fence = wrapped_fence;
    f->ops.blob_lost = wrapped_lost;
    f->reg.ms->ops = &f->ops;
    AZ(pthread_rwlock_init(&f->reg.gc_lock, NULL));
    is_fence_refused = false;
    n_fence_held = n_lost = n_lost_unfenced = 0;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    f->reg.ms->ops = real;
    f->reg.ms->ops->close(f->reg.ms);
    pthread_rwlock_destroy(&f->reg.gc_lock);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
    int rc = system(cmd);
    free(f);
    return rc == 0 ? 0 : -1;
}

static void lost_digest(struct digest *d)
{
    digest_of_buffer(DIGEST_SHA256, "lost", 4, d);
}

static void test_loss_is_recorded_under_the_fence(void **state)
{
    struct fixture *f = *state;
    struct digest d;
    lost_digest(&d);
    struct err e = {0};
    assert_int_equal(repl_blob_recover(&f->reg, NULL, &d, &e), -1);
    assert_int_equal(e.code, ERR_BLOB_UNKNOWN);
    assert_int_equal(n_lost, 1);
    assert_int_equal(n_lost_unfenced, 0);
    assert_int_equal(n_fence_held, 0); /* left */
    /* the process's half is free again */
    assert_int_equal(pthread_rwlock_trywrlock(&f->reg.gc_lock), 0);
    AZ(pthread_rwlock_unlock(&f->reg.gc_lock));
}

static void test_no_fence_records_nothing_and_says_try_again(void **state)
{
    struct fixture *f = *state;
    struct digest d;
    lost_digest(&d);
    is_fence_refused = true;
    struct err e = {0};
    assert_int_equal(repl_blob_recover(&f->reg, NULL, &d, &e), -1);
    assert_int_equal(e.code, ERR_UNAVAILABLE);
    assert_int_equal(n_lost, 0);
    assert_int_equal(pthread_rwlock_trywrlock(&f->reg.gc_lock), 0); /* left all the same */
    AZ(pthread_rwlock_unlock(&f->reg.gc_lock));
    /* the store back: the next read records it */
    is_fence_refused = false;
    assert_int_equal(repl_blob_recover(&f->reg, NULL, &d, &e), -1);
    assert_int_equal(e.code, ERR_BLOB_UNKNOWN);
    assert_int_equal(n_lost, 1);
    assert_int_equal(n_lost_unfenced, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_loss_is_recorded_under_the_fence, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_no_fence_records_nothing_and_says_try_again, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
