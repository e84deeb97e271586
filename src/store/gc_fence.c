/* The GC fence (gc_fence.h). */
#include "gc_fence.h"

#include <pthread.h>

#include "log.h"
#include "util.h"

static bool enter_db(struct registry *reg, bool is_exclusive, bool is_try)
{
    struct err e = {0};
    bool is_held = false;
    if (reg->ms->ops->gc_fence(reg->ms, is_exclusive, true, is_try, &is_held, &e) == 0)
        return is_held;
    log_warn("gc", "failed to take the GC fence in the database: %s", err_message(&e));
    return false;
}

bool gc_fence_enter(struct registry *reg, bool is_exclusive)
{
    if (is_exclusive)
        AZ(pthread_rwlock_wrlock(&reg->gc_lock));
    else
        AZ(pthread_rwlock_rdlock(&reg->gc_lock));
    return enter_db(reg, is_exclusive, false);
}

int gc_fence_enter_shared(struct registry *reg, struct err *e)
{
    AZ(pthread_rwlock_rdlock(&reg->gc_lock));
    if (enter_db(reg, false, false))
        return 0;
    AZ(pthread_rwlock_unlock(&reg->gc_lock));
    return err_set(e, ERR_UNAVAILABLE, "the metadata store did not grant the GC fence; try again");
}

bool gc_fence_try_exclusive(struct registry *reg)
{
    AZ(pthread_rwlock_wrlock(&reg->gc_lock));
    if (enter_db(reg, true, true))
        return true;
    AZ(pthread_rwlock_unlock(&reg->gc_lock));
    return false;
}

void gc_fence_leave(struct registry *reg, bool is_exclusive)
{
    struct err e = {0};
    bool is_held;
    if (reg->ms->ops->gc_fence(reg->ms, is_exclusive, false, false, &is_held, &e) != 0)
        log_warn("gc", "failed to release the GC fence in the database: %s", err_message(&e));
    AZ(pthread_rwlock_unlock(&reg->gc_lock));
}
