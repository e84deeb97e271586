/* The file sweep (blob_sweep.h). Two steps: the listing keeps the old-enough files the
 * metastore has no row of (a lookup each, no lock); each suspect is then looked up again
 * and removed with the GC fence held exclusive, GC_GROUP at a time, as gc.c removes the
 * files of the blobs it collects. */
#include "blob_sweep.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "gc.h"
#include "gc_fence.h"
#include "log.h"
#include "util.h"

struct suspects {
    struct registry *reg;
    int64_t cutoff_ms;
    struct digest *items;
    size_t n, cap;
    uint64_t n_errors;
};

/* 1 if the metastore records no blob d, 0 if it does, -1 when it cannot say. */
static int has_no_row(struct registry *reg, const struct digest *d)
{
    uint64_t size;
    struct err e = {0};
    if (reg->ms->ops->blob_find(reg->ms, d, &size, &e) == 0)
        return 0;
    if (e.code == ERR_BLOB_UNKNOWN)
        return 1;
    log_warn("gc", "sweep: failed to look up blob %s: %s", d->str, err_message(&e));
    return -1;
}

static void note(const struct digest *d, int64_t stored_ms, void *arg)
{
    struct suspects *s = arg;
    if (stored_ms > s->cutoff_ms)
        return;
    for (size_t i = 0; i < s->n; i++) /* a copy on another volume, listed already */
        if (strcmp(s->items[i].str, d->str) == 0)
            return;
    int rc = has_no_row(s->reg, d);
    s->n_errors += rc < 0;
    if (rc != 1)
        return;
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 16;
        s->items = xrealloc(s->items, s->cap * sizeof(*s->items));
    }
    s->items[s->n++] = *d;
}

uint64_t blob_sweep_run(struct registry *reg, int64_t cutoff_ms, bool is_dry_run, json_t *out,
                        uint64_t *n_errors, bool *is_complete)
{
    struct blobstore *bs = reg->bs;
    if (is_complete != NULL)
        *is_complete = true;
    if (bs->ops->each_blob == NULL)
        return 0;
    struct suspects s = {.reg = reg, .cutoff_ms = cutoff_ms};
    struct err le = {0};
    if (bs->ops->each_blob(bs, note, &s, &le) != 0) {
        /* What was listed is still swept; the rest waits for a later run. */
        log_warn("gc", "sweep: failed to list the blob files (%zu found so far): %s", s.n,
                 err_message(&le));
        *n_errors += 1;
        if (is_complete != NULL)
            *is_complete = false;
    }
    *n_errors += s.n_errors;
    uint64_t n_removed = 0;
    for (size_t i = 0; i < s.n; i += GC_GROUP) {
        size_t end = s.n - i < GC_GROUP ? s.n : i + GC_GROUP;
        /* Another node's commit in progress: these wait for the next sweep. */
        if (!is_dry_run && !gc_fence_try_exclusive(reg))
            continue;
        for (size_t j = i; j < end; j++) {
            const struct digest *d = &s.items[j];
            /* The size first: on S3 it is a request, and nothing may stand between the row
             * check and the removal (the fence rests on a database connection). */
            uint64_t size = 0;
            struct err e = {0};
            (void)bs->ops->stat(bs, d, &size, &e);
            int rc = has_no_row(reg, d);
            *n_errors += rc < 0;
            if (rc != 1)
                continue;
            if (!is_dry_run) {
                struct err re = {0};
                if (bs->ops->remove(bs, d, &re) != 0) {
                    log_warn("gc", "sweep: failed to remove blob file %s: %s", d->str,
                             err_message(&re));
                    *n_errors += 1;
                    continue;
                }
                log_info("gc", "sweep: removed blob file %s (%" PRIu64 " bytes): no row names it",
                         d->str, size);
            }
            n_removed++;
            if (out != NULL)
                json_array_append_new(out, json_pack("{s:s,s:I}", "digest", d->str, "size",
                                                     (json_int_t)size));
        }
        if (!is_dry_run)
            gc_fence_leave(reg, true);
    }
    free(s.items);
    return n_removed;
}
