/* A filesystem blobstore over several volumes (--volume NAME=PATH[,class=C][,zone=Z]):
 * one filesystem store (blobstore_fs.c) per volume, each with the usual layout under its
 * directory, and this table on top. A blob has one or more copies, each on a distinct
 * volume; place() sets how many and on which class (the replica counts of image
 * versions, src/repl/copies.c). Upload sessions live on the first volume, where a new
 * blob lands until it is placed.
 *
 * Reads spread over the copies: a large one is striped across all good copies (each stripe
 * from a fixed copy, so the page cache holds it once), a small one takes the copies in turn. A copy that fails its check on open is set aside by its volume's store
 * (quarantine) and the next copy serves the read; the scrub's verify re-reads every copy and
 * repairs a bad one from a good sibling at once. Missing copies are made again by the next
 * place() (the copies pass, src/repl/copies.c, runs it every few seconds). */
#include "blobstore_volumes.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

#define VOL_STORE_MAGIC 0x766f6c73u /* "vols" */
#define VOL_MAX 64
#define VOL_COPY_CHUNK (1u << 20)
#define VOL_DEFAULT_CLASS "standard"

struct volume {
    struct blobstore_volume pub; /* name, class, zone: owned */
    char *path;
    struct blobstore *bs;        /* the filesystem store on path */
    struct prefetcher *prefetch; /* reads stripes ahead (NULL with one volume) */
};

struct vol_store {
    struct blobstore base; /* first: the ops table dispatches on &base */
    unsigned magic;
    struct volume *vols;
    struct blobstore_volume *pub; /* vols[i].pub, as one array */
    size_t n;
    atomic_uint next_read; /* rotates the first copy a read tries */
};

static const struct blobstore_ops vol_ops;

static struct vol_store *vs_of(struct blobstore *bs)
{
    AN(bs);
    struct vol_store *vs = (struct vol_store *)bs;
    ASSERT(vs->magic == VOL_STORE_MAGIC);
    return vs;
}

/* The choice ------------------------------------------------------------------ */

static bool is_in_class(const struct blobstore_volume *v, const char *klass)
{
    return klass == NULL || strcmp(v->klass, klass) == 0;
}

size_t volumes_choose(const struct blobstore_volume *v, size_t n, const bool *has,
                      const char *klass, unsigned copies, bool *chosen)
{
    size_t got = 0;
    for (size_t i = 0; i < n; i++)
        chosen[i] = false;
    while (got < copies) {
        size_t best = n;
        int best_score = 0;
        for (size_t i = 0; i < n; i++) {
            if (chosen[i] || !is_in_class(&v[i], klass))
                continue;
            bool is_zone_used = false;
            for (size_t j = 0; j < n && v[i].zone[0] != '\0'; j++)
                is_zone_used |= chosen[j] && strcmp(v[j].zone, v[i].zone) == 0;
            int score = (is_zone_used ? 2 : 0) + (has[i] ? 0 : 1);
            if (best == n || score < best_score) {
                best = i;
                best_score = score;
            }
        }
        if (best == n)
            break;
        chosen[best] = true;
        got++;
    }
    return got;
}

static bool is_word(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 32)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_'))
            return false;
    }
    return true;
}

int volumes_parse_spec(const char *spec, char **name, char **path, char **klass, char **zone,
                       struct err *e)
{
    *name = *path = *klass = *zone = NULL;
    const char *eq = strchr(spec, '=');
    if (eq == NULL || eq == spec || eq[1] == '\0')
        return err_set(e, ERR_BAD_REQUEST, "volume: expected NAME=PATH[,class=C][,zone=Z], "
                                           "got \"%s\"", spec);
    *name = xstrndup(spec, (size_t)(eq - spec));
    char *rest = xstrdup(eq + 1);
    char *save = NULL;
    int rc = 0;
    for (char *part = strtok_r(rest, ",", &save); part && rc == 0;
         part = strtok_r(NULL, ",", &save)) {
        if (*path == NULL)
            *path = xstrdup(part);
        else if (strncmp(part, "class=", 6) == 0 && *klass == NULL)
            *klass = xstrdup(part + 6);
        else if (strncmp(part, "zone=", 5) == 0 && *zone == NULL)
            *zone = xstrdup(part + 5);
        else
            rc = err_set(e, ERR_BAD_REQUEST, "volume %s: unknown or repeated part \"%s\"",
                         *name, part);
    }
    free(rest);
    if (rc == 0 && (*path == NULL || (*path)[0] == '\0'))
        rc = err_set(e, ERR_BAD_REQUEST, "volume %s: no path", *name);
    if (*klass == NULL)
        *klass = xstrdup(VOL_DEFAULT_CLASS);
    if (*zone == NULL)
        *zone = xstrdup("");
    if (rc == 0 && !is_word(*name))
        rc = err_set(e, ERR_BAD_REQUEST, "volume name \"%s\": 1-32 of a-z, 0-9, '-', '_'",
                     *name);
    if (rc == 0 && !is_word(*klass))
        rc = err_set(e, ERR_BAD_REQUEST, "volume %s: class \"%s\": 1-32 of a-z, 0-9, '-', '_'",
                     *name, *klass);
    if (rc == 0 && (*zone)[0] != '\0' && !is_word(*zone))
        rc = err_set(e, ERR_BAD_REQUEST, "volume %s: zone \"%s\": 1-32 of a-z, 0-9, '-', '_'",
                     *name, *zone);
    if (rc != 0) {
        FREE_AND_NULL(*name);
        FREE_AND_NULL(*path);
        FREE_AND_NULL(*klass);
        FREE_AND_NULL(*zone);
    }
    return rc;
}

/* Copies ---------------------------------------------------------------------- */

/* Whether volume v holds a copy of d of the expected size (UINT64_MAX: any size, not
 * checked further). With a size, the copy is opened as a read would: a copy written to
 * since it was verified is hashed, and set aside when bad, so that place() repairs it. */
static bool holds(const struct volume *v, const struct digest *d, uint64_t expected_size)
{
    struct err e = {0};
    if (expected_size == UINT64_MAX) {
        uint64_t size;
        return v->bs->ops->stat(v->bs, d, &size, &e) == 0;
    }
    struct blobstore_body body;
    if (v->bs->ops->open(v->bs, d, expected_size, 0, 0, 0, &body, &e) != 0)
        return false;
    blobstore_body_close(&body);
    return true;
}

/* Writes a new copy of d on dst from src, through dst's upload handle, so the bytes are
 * hashed as they are written and only a copy that matches d is committed. */
static int copy_blob(const struct volume *src, const struct volume *dst, const struct digest *d,
                     uint64_t size, struct err *e)
{
    struct blobstore_body body;
    if (src->bs->ops->open(src->bs, d, size, 0, size, 0, &body, e) != 0)
        return -1;
    char id[33];
    util_random_id(id);
    struct blobstore_upload *u = NULL;
    uint64_t held = 0;
    int rc = dst->bs->ops->upload_create(dst->bs, id, e);
    if (rc == 0)
        rc = dst->bs->ops->upload_open(dst->bs, id, &u, &held, e);
    char *buf = xmalloc(VOL_COPY_CHUNK);
    for (uint64_t off = 0; rc == 0 && off < size;) {
        size_t want = size - off < VOL_COPY_CHUNK ? (size_t)(size - off) : VOL_COPY_CHUNK;
        long got;
        if (body.kind == BLOBSTORE_BODY_FD)
            got = pread(body.fd, buf, want, (off_t)(body.fd_offset + off));
        else if (body.kind == BLOBSTORE_BODY_STREAM)
            got = body.read(body.arg, buf, want);
        else
            got = -1;
        if (got <= 0) {
            rc = err_set(e, ERR_IO, "short read copying blob %s", d->str);
            break;
        }
        rc = dst->bs->ops->upload_append(dst->bs, u, off, buf, (size_t)got, e);
        off += (uint64_t)got;
    }
    free(buf);
    blobstore_body_close(&body);
    if (rc == 0)
        rc = dst->bs->ops->upload_commit(dst->bs, u, d, e);
    if (u != NULL)
        dst->bs->ops->upload_close(dst->bs, u);
    dst->bs->ops->upload_remove(dst->bs, id);
    if (rc == 0)
        log_info("blobstore", "copied blob %s to volume %s", d->str, dst->pub.name);
    return rc;
}

/* Repairs: a copy on each volume marked in need[] from any good copy (has[]). A source
 * found bad on open is dropped from has[] (its store set it aside). Returns how many of
 * need[] were made. */
static size_t make_copies(struct vol_store *vs, const struct digest *d, uint64_t size,
                          bool *has, const bool *need)
{
    size_t made = 0;
    for (size_t i = 0; i < vs->n; i++) {
        if (!need[i] || has[i])
            continue;
        for (size_t j = 0; j < vs->n; j++) {
            if (!has[j])
                continue;
            struct err e = {0};
            if (copy_blob(&vs->vols[j], &vs->vols[i], d, size, &e) == 0) {
                has[i] = true;
                made++;
                break;
            }
            log_warn("blobstore", "failed to copy blob %s from volume %s to %s: %s", d->str,
                     vs->vols[j].pub.name, vs->vols[i].pub.name, err_message(&e));
            if (e.code == ERR_BLOB_CORRUPT || e.code == ERR_BLOB_UNKNOWN)
                has[j] = false; /* the source was bad: try another */
            else if (e.code != ERR_DIGEST_INVALID)
                break; /* the destination failed (space, I/O): next volume */
        }
    }
    return made;
}

static int vol_place(struct blobstore *bs, const struct digest *d, uint64_t expected_size,
                     unsigned copies, const char *klass, unsigned *now, struct err *e)
{
    struct vol_store *vs = vs_of(bs);
    bool has[VOL_MAX], chosen[VOL_MAX];
    size_t n_has = 0;
    for (size_t i = 0; i < vs->n; i++) {
        has[i] = holds(&vs->vols[i], d, expected_size);
        n_has += has[i];
    }
    if (now)
        *now = 0;
    if (n_has == 0)
        return err_set(e, ERR_BLOB_UNKNOWN, NULL);
    size_t want = volumes_choose(vs->pub, vs->n, has, klass, copies, chosen);
    if (want == 0)
        return err_set(e, ERR_BAD_REQUEST, "no volume of class %s", klass ? klass : "(any)");
    size_t made = make_copies(vs, d, expected_size, has, chosen);
    size_t in_place = 0;
    for (size_t i = 0; i < vs->n; i++)
        in_place += chosen[i] && has[i];
    (void)made;
    /* Only once every chosen copy is there do the others go: never fewer copies than
     * were asked for while a copy is being made. */
    if (in_place == want) {
        for (size_t i = 0; i < vs->n; i++) {
            if (has[i] && !chosen[i]) {
                (void)vs->vols[i].bs->ops->remove(vs->vols[i].bs, d, NULL);
                has[i] = false;
                log_info("blobstore", "removed extra copy of blob %s from volume %s", d->str,
                         vs->vols[i].pub.name);
            }
        }
    }
    size_t in_class = 0;
    for (size_t i = 0; i < vs->n; i++)
        in_class += has[i] && is_in_class(&vs->pub[i], klass);
    if (now)
        *now = (unsigned)in_class;
    if (in_place == 0)
        return err_set(e, ERR_BLOB_UNKNOWN, NULL);
    return 0;
}

static unsigned vol_copies(struct blobstore *bs, const struct digest *d, const char *klass)
{
    struct vol_store *vs = vs_of(bs);
    unsigned n = 0;
    for (size_t i = 0; i < vs->n; i++)
        n += is_in_class(&vs->pub[i], klass) && holds(&vs->vols[i], d, UINT64_MAX);
    return n;
}

static const struct blobstore_volume *vol_volumes(struct blobstore *bs, size_t *n)
{
    struct vol_store *vs = vs_of(bs);
    *n = vs->n;
    return vs->pub;
}

/* Reads ----------------------------------------------------------------------- */

/* A large read over several copies is striped: bytes [k*S, (k+1)*S) always come from the
 * k-th good copy modulo their number, in volume order. Every reader maps a stripe to the same
 * copy, so the page cache holds each byte once (as with one copy) while the disks share the
 * cold reads; a burst of pulls of one layer reads from all its volumes at once. */
#define VOL_STRIPE (4u << 20)
#define VOL_PREFETCH_QUEUE 32

/* One reader thread per volume that reads stripes ahead into the page cache (in this
 * thread, so the volumes work in parallel while the client's reader waits on one). Requests already
 * queued or recently read are skipped: every concurrent reader asks for the same stripes. */
struct prefetch_req {
    int fd;
    dev_t dev;
    ino_t ino;
    uint64_t off;
    int64_t at_ms; /* when asked: a recent request is skipped for VOL_PREFETCH_RECENT_MS */
};
#define VOL_PREFETCH_RECENT_MS 1000
struct prefetcher {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool is_stopping;
    struct prefetch_req q[VOL_PREFETCH_QUEUE]; /* queued, under mu */
    size_t head, n;
    struct prefetch_req recent[VOL_PREFETCH_QUEUE]; /* (fd unused) under mu */
    size_t n_recent;
    char *scratch; /* VOL_COPY_CHUNK: where the prefetched bytes are read to */
};

static bool is_same_req(const struct prefetch_req *a, const struct prefetch_req *b)
{
    return a->dev == b->dev && a->ino == b->ino && a->off == b->off;
}

static void *prefetch_main(void *arg)
{
    struct prefetcher *pf = arg;
    AZ(pthread_mutex_lock(&pf->mu));
    for (;;) {
        while (!pf->is_stopping && pf->n == 0)
            AZ(pthread_cond_wait(&pf->cv, &pf->mu));
        if (pf->is_stopping)
            break;
        struct prefetch_req r = pf->q[pf->head];
        pf->head = (pf->head + 1) % VOL_PREFETCH_QUEUE;
        pf->n--;
        AZ(pthread_mutex_unlock(&pf->mu));
        /* Read for real: readahead(2) and WILLNEED only start the I/O, and under a blkio
         * cap it did not overlap with the reader's own reads. */
        for (uint64_t done = 0; done < VOL_STRIPE;) {
            ssize_t got = pread(r.fd, pf->scratch, VOL_COPY_CHUNK, (off_t)(r.off + done));
            if (got <= 0)
                break;
            done += (uint64_t)got;
        }
        close(r.fd);
        AZ(pthread_mutex_lock(&pf->mu));
    }
    while (pf->n > 0) { /* stopping: drop what is queued */
        close(pf->q[pf->head].fd);
        pf->head = (pf->head + 1) % VOL_PREFETCH_QUEUE;
        pf->n--;
    }
    AZ(pthread_mutex_unlock(&pf->mu));
    return NULL;
}

/* Queues stripe off of fd (a dup is kept) unless it is queued or was read lately. */
static void prefetch(struct prefetcher *pf, int fd, uint64_t off)
{
    struct stat st;
    if (pf == NULL || fstat(fd, &st) != 0)
        return;
    struct prefetch_req r = {.fd = -1, .dev = st.st_dev, .ino = st.st_ino, .off = off,
                             .at_ms = util_mono_ns() / 1000000};
    AZ(pthread_mutex_lock(&pf->mu));
    bool is_known = pf->n == VOL_PREFETCH_QUEUE;
    for (size_t i = 0; i < pf->n_recent && !is_known; i++)
        is_known = is_same_req(&pf->recent[i], &r) &&
                   r.at_ms - pf->recent[i].at_ms < VOL_PREFETCH_RECENT_MS;
    if (!is_known) {
        r.fd = dup(fd);
        if (r.fd >= 0) {
            pf->q[(pf->head + pf->n) % VOL_PREFETCH_QUEUE] = r;
            pf->n++;
            /* remembered as recent from now: the last VOL_PREFETCH_QUEUE requests */
            memmove(&pf->recent[1], &pf->recent[0],
                    (VOL_PREFETCH_QUEUE - 1) * sizeof(pf->recent[0]));
            pf->recent[0] = r;
            if (pf->n_recent < VOL_PREFETCH_QUEUE)
                pf->n_recent++;
            AZ(pthread_cond_signal(&pf->cv));
        }
    }
    AZ(pthread_mutex_unlock(&pf->mu));
}

static struct prefetcher *prefetcher_start(void)
{
    struct prefetcher *pf = xcalloc(1, sizeof(*pf));
    pf->scratch = xmalloc(VOL_COPY_CHUNK);
    AZ(pthread_mutex_init(&pf->mu, NULL));
    AZ(pthread_cond_init(&pf->cv, NULL));
    AZ(pthread_create(&pf->thread, NULL, prefetch_main, pf));
    return pf;
}

static void prefetcher_stop(struct prefetcher *pf)
{
    if (pf == NULL)
        return;
    AZ(pthread_mutex_lock(&pf->mu));
    pf->is_stopping = true;
    AZ(pthread_cond_signal(&pf->cv));
    AZ(pthread_mutex_unlock(&pf->mu));
    pthread_join(pf->thread, NULL);
    pthread_mutex_destroy(&pf->mu);
    pthread_cond_destroy(&pf->cv);
    free(pf->scratch);
    free(pf);
}

struct stripe_stream {
    int fd[VOL_MAX];
    struct prefetcher *pf[VOL_MAX]; /* of the volume fd[i] is on */
    size_t n;
    uint64_t begin, pos, end;
};

static long stripe_read(void *arg, char *p, size_t max)
{
    struct stripe_stream *st = arg;
    if (st->pos >= st->end)
        return 0;
    uint64_t k = st->pos / VOL_STRIPE;
    if (st->pos == st->begin || st->pos % VOL_STRIPE == 0) {
        /* Entering stripe k: ask the next n stripes' copies for their bytes now, so the
         * other volumes read ahead while this one answers (readers in lockstep would
         * otherwise all wait on one volume at a time). */
        for (uint64_t j = k + 1; j <= k + st->n && j * VOL_STRIPE < st->end; j++)
            prefetch(st->pf[j % st->n], st->fd[j % st->n], j * VOL_STRIPE);
    }
    uint64_t stop = (k + 1) * VOL_STRIPE < st->end ? (k + 1) * VOL_STRIPE : st->end;
    size_t want = stop - st->pos < max ? (size_t)(stop - st->pos) : max;
    ssize_t got = pread(st->fd[k % st->n], p, want, (off_t)st->pos);
    if (got <= 0)
        return -1;
    st->pos += (uint64_t)got;
    return (long)got;
}

static void stripe_close(void *arg)
{
    struct stripe_stream *st = arg;
    for (size_t i = 0; i < st->n; i++)
        close(st->fd[i]);
    free(st);
}

/* Opens every good copy of d (each checked by its volume's store as for a single read) into
 * a striped stream; 1 when it did, 0 when fewer than two copies are good (nothing held). */
static int open_striped(struct vol_store *vs, const struct digest *d, uint64_t expected_size,
                        uint64_t offset, uint64_t length, struct blobstore_body *out)
{
    struct stripe_stream *st = xcalloc(1, sizeof(*st));
    for (size_t i = 0; i < vs->n; i++) {
        struct blobstore_body b;
        struct err ve = {0};
        struct volume *v = &vs->vols[i];
        if (v->bs->ops->open(v->bs, d, expected_size, 0, expected_size, 0, &b, &ve) != 0) {
            if (ve.code == ERR_BLOB_CORRUPT)
                log_warn("blobstore", "copy of blob %s on volume %s was bad: serving others",
                         d->str, v->pub.name);
            continue;
        }
        if (b.kind != BLOBSTORE_BODY_FD) {
            blobstore_body_close(&b);
            continue;
        }
        st->pf[st->n] = v->prefetch;
        st->fd[st->n++] = b.fd;
    }
    if (st->n < 2) {
        stripe_close(st);
        return 0;
    }
    st->begin = st->pos = offset;
    st->end = offset + length;
    *out = (struct blobstore_body){.kind = BLOBSTORE_BODY_STREAM, .fd = -1,
                                   .read = stripe_read, .close = stripe_close, .arg = st};
    return 1;
}

static int vol_open(struct blobstore *bs, const struct digest *d, uint64_t expected_size,
                    uint64_t offset, uint64_t length, unsigned accept,
                    struct blobstore_body *out, struct err *e)
{
    struct vol_store *vs = vs_of(bs);
    if (offset > expected_size || length > expected_size - offset)
        return err_set(e, ERR_RANGE_INVALID, NULL);
    if (length >= 2 * (uint64_t)VOL_STRIPE && open_striped(vs, d, expected_size, offset, length,
                                                           out))
        return 0;
    /* Small reads (and one good copy): the whole read from one copy, the next in turn. */
    size_t start = atomic_fetch_add(&vs->next_read, 1) % vs->n;
    int code = ERR_BLOB_UNKNOWN;
    for (size_t k = 0; k < vs->n; k++) {
        struct volume *v = &vs->vols[(start + k) % vs->n];
        struct err ve = {0};
        if (v->bs->ops->open(v->bs, d, expected_size, offset, length, accept, out, &ve) == 0)
            return 0;
        if (ve.code == ERR_RANGE_INVALID || ve.code == ERR_DIGEST_INVALID) {
            *e = ve;
            return -1;
        }
        if (ve.code == ERR_BLOB_CORRUPT) {
            log_warn("blobstore", "copy of blob %s on volume %s was bad: serving another",
                     d->str, v->pub.name);
            code = ERR_BLOB_CORRUPT;
        } else if (ve.code != ERR_BLOB_UNKNOWN) {
            log_warn("blobstore", "failed to open blob %s on volume %s: %s", d->str,
                     v->pub.name, err_message(&ve));
            if (code == ERR_BLOB_UNKNOWN)
                code = ve.code;
        }
    }
    return err_set(e, code, NULL);
}

/* Verifies every copy; bad ones (set aside by their volume) are made again from a good
 * sibling, so the scrub repairs locally before the caller asks another region. */
static int vol_verify(struct blobstore *bs, const struct digest *d, uint64_t expected_size,
                      blobstore_throttle_f *throttle, void *throttle_arg, struct err *e)
{
    struct vol_store *vs = vs_of(bs);
    bool has[VOL_MAX], need[VOL_MAX];
    size_t n_good = 0, n_bad = 0;
    int code = ERR_BLOB_UNKNOWN;
    for (size_t i = 0; i < vs->n; i++) {
        struct err ve = {0};
        struct volume *v = &vs->vols[i];
        has[i] = need[i] = false;
        if (v->bs->ops->verify(v->bs, d, expected_size, throttle, throttle_arg, &ve) == 0) {
            has[i] = true;
            n_good++;
        } else if (ve.code == ERR_BLOB_CORRUPT) {
            need[i] = true;
            n_bad++;
            code = ERR_BLOB_CORRUPT;
        } else if (ve.code != ERR_BLOB_UNKNOWN) {
            *e = ve;
            return -1; /* a read error or an aborted pass: try again later */
        }
    }
    if (n_good == 0)
        return err_set(e, code, NULL);
    if (n_bad > 0) {
        size_t made = make_copies(vs, d, expected_size, has, need);
        log_info("blobstore", "blob %s: %zu bad cop%s repaired from a sibling volume", d->str,
                 made, made == 1 ? "y" : "ies");
    }
    return 0;
}

static int vol_stat(struct blobstore *bs, const struct digest *d, uint64_t *size, struct err *e)
{
    struct vol_store *vs = vs_of(bs);
    for (size_t i = 0; i < vs->n; i++) {
        struct err se = {0};
        if (vs->vols[i].bs->ops->stat(vs->vols[i].bs, d, size, &se) == 0)
            return 0;
    }
    return err_set(e, ERR_BLOB_UNKNOWN, NULL);
}

/* Every volume's copy: -1 when one of them may be left. */
static int vol_remove(struct blobstore *bs, const struct digest *d, struct err *e)
{
    struct vol_store *vs = vs_of(bs);
    int rc = 0;
    for (size_t i = 0; i < vs->n; i++)
        if (vs->vols[i].bs->ops->remove(vs->vols[i].bs, d, e) != 0)
            rc = -1;
    return rc;
}

static size_t vol_remove_all(struct blobstore *bs)
{
    struct vol_store *vs = vs_of(bs);
    size_t n = 0;
    for (size_t i = 0; i < vs->n; i++)
        n += vs->vols[i].bs->ops->remove_all(vs->vols[i].bs);
    return n;
}

static void vol_quarantined(struct blobstore *bs, struct blobstore_quarantined **out, size_t *n)
{
    struct vol_store *vs = vs_of(bs);
    *out = NULL;
    *n = 0;
    for (size_t i = 0; i < vs->n; i++) {
        struct blobstore_quarantined *q = NULL;
        size_t m = 0;
        vs->vols[i].bs->ops->quarantined(vs->vols[i].bs, &q, &m);
        if (m > 0) {
            *out = xrealloc(*out, (*n + m) * sizeof(**out));
            memcpy(*out + *n, q, m * sizeof(*q));
            *n += m;
        }
        free(q);
    }
}

/* Readiness: every volume must take writes (a blob's copies may go to any of them). */
static int vol_check(struct blobstore *bs, long timeout_ms, struct err *e)
{
    struct vol_store *vs = vs_of(bs);
    for (size_t i = 0; i < vs->n; i++) {
        struct blobstore *v = vs->vols[i].bs;
        struct err ve = {0};
        if (v->ops->check != NULL && v->ops->check(v, timeout_ms, &ve) != 0)
            return err_set(e, ve.code, "volume %s: %s", vs->vols[i].pub.name,
                           err_message(&ve));
    }
    return 0;
}

static void vol_close(struct blobstore *bs)
{
    if (bs == NULL)
        return;
    struct vol_store *vs = vs_of(bs);
    for (size_t i = 0; i < vs->n; i++) {
        prefetcher_stop(vs->vols[i].prefetch);
        if (vs->vols[i].bs)
            vs->vols[i].bs->ops->close(vs->vols[i].bs);
        free((char *)vs->vols[i].pub.name);
        free((char *)vs->vols[i].pub.klass);
        free((char *)vs->vols[i].pub.zone);
        free(vs->vols[i].path);
    }
    free(vs->vols);
    free(vs->pub);
    vs->magic = 0;
    free(vs);
}

/* Uploads and put: the first volume's ------------------------------------------- */

#define FIRST(bs) (vs_of(bs)->vols[0].bs)

static int vol_upload_create(struct blobstore *bs, const char *id, struct err *e)
{
    return FIRST(bs)->ops->upload_create(FIRST(bs), id, e);
}
static int vol_upload_open(struct blobstore *bs, const char *id, struct blobstore_upload **out,
                           uint64_t *size, struct err *e)
{
    return FIRST(bs)->ops->upload_open(FIRST(bs), id, out, size, e);
}
static int vol_upload_append(struct blobstore *bs, struct blobstore_upload *u, uint64_t offset,
                             const void *p, size_t n, struct err *e)
{
    return FIRST(bs)->ops->upload_append(FIRST(bs), u, offset, p, n, e);
}
static int vol_upload_flush(struct blobstore *bs, struct blobstore_upload *u, bool is_durable,
                            struct err *e)
{
    return FIRST(bs)->ops->upload_flush(FIRST(bs), u, is_durable, e);
}
static uint64_t vol_upload_idle(struct blobstore *bs, struct blobstore_upload *u)
{
    return FIRST(bs)->ops->upload_idle(FIRST(bs), u);
}
static int vol_upload_truncate(struct blobstore *bs, struct blobstore_upload *u, uint64_t size,
                               uint64_t *now, struct err *e)
{
    return FIRST(bs)->ops->upload_truncate(FIRST(bs), u, size, now, e);
}
static int vol_upload_commit(struct blobstore *bs, struct blobstore_upload *u,
                             const struct digest *want, struct err *e)
{
    return FIRST(bs)->ops->upload_commit(FIRST(bs), u, want, e);
}
static void vol_upload_close(struct blobstore *bs, struct blobstore_upload *u)
{
    FIRST(bs)->ops->upload_close(FIRST(bs), u);
}
static void vol_upload_remove(struct blobstore *bs, const char *id)
{
    FIRST(bs)->ops->upload_remove(FIRST(bs), id);
}
static void vol_upload_each(struct blobstore *bs, void (*fn)(const char *id, void *arg),
                            void *arg)
{
    FIRST(bs)->ops->upload_each(FIRST(bs), fn, arg);
}
static int vol_put(struct blobstore *bs, const struct digest *d, const void *p, uint64_t len,
                   struct err *e)
{
    return FIRST(bs)->ops->put(FIRST(bs), d, p, len, e);
}

/* Every volume's blobs: a blob with copies on several volumes is listed once per copy. A
 * volume that fails to list does not keep the others from being listed. */
static int vol_each_blob(struct blobstore *bs,
                         void (*fn)(const struct digest *d, int64_t stored_ms, void *arg),
                         void *arg, struct err *e)
{
    struct vol_store *vs = vs_of(bs);
    int rc = 0;
    for (size_t i = 0; i < vs->n; i++)
        if (vs->vols[i].bs->ops->each_blob(vs->vols[i].bs, fn, arg, e) != 0)
            rc = -1;
    return rc;
}

static const struct blobstore_ops vol_ops = {
    .name = "volumes",
    .upload_create = vol_upload_create,
    .upload_open = vol_upload_open,
    .upload_append = vol_upload_append,
    .upload_flush = vol_upload_flush,
    .upload_idle = vol_upload_idle,
    .upload_truncate = vol_upload_truncate,
    .upload_commit = vol_upload_commit,
    .upload_close = vol_upload_close,
    .upload_remove = vol_upload_remove,
    .upload_each = vol_upload_each,
    .open = vol_open,
    .verify = vol_verify,
    .stat = vol_stat,
    .remove = vol_remove,
    .put = vol_put,
    .remove_all = vol_remove_all,
    .quarantined = vol_quarantined,
    .close = vol_close,
    .check = vol_check,
    .each_blob = vol_each_blob,
    .volumes = vol_volumes,
    .place = vol_place,
    .copies = vol_copies,
};

struct blobstore *blobstore_volumes_open(char *const *specs, size_t n, struct err *e)
{
    if (n == 0 || n > VOL_MAX) {
        err_set(e, ERR_BAD_REQUEST, "volume: between 1 and %d volumes", VOL_MAX);
        return NULL;
    }
    struct vol_store *vs = xcalloc(1, sizeof(*vs));
    vs->base.ops = &vol_ops;
    vs->magic = VOL_STORE_MAGIC;
    vs->vols = xcalloc(n, sizeof(*vs->vols));
    vs->pub = xcalloc(n, sizeof(*vs->pub));
    for (size_t i = 0; i < n; i++) {
        struct volume *v = &vs->vols[i];
        char *name, *path, *klass, *zone;
        if (volumes_parse_spec(specs[i], &name, &path, &klass, &zone, e) != 0)
            goto fail;
        v->pub = (struct blobstore_volume){.name = name, .klass = klass, .zone = zone};
        v->path = path;
        vs->n = i + 1;
        for (size_t j = 0; j < i; j++) {
            if (strcmp(vs->vols[j].pub.name, name) == 0 || strcmp(vs->vols[j].path, path) == 0) {
                err_set(e, ERR_BAD_REQUEST, "volume %s: name or path given twice", name);
                goto fail;
            }
        }
        if (util_mkdirs(path) != 0) {
            err_set(e, ERR_IO, "volume %s: cannot create its directory", name);
            goto fail;
        }
        v->bs = blobstore_fs_open(path, e);
        if (v->bs == NULL)
            goto fail;
        vs->pub[i] = v->pub;
        if (n > 1)
            v->prefetch = prefetcher_start();
        log_info("blobstore", "volume %s: class %s%s%s", name, klass, zone[0] ? ", zone " : "",
                 zone);
    }
    return &vs->base;
fail:
    vol_close(&vs->base);
    return NULL;
}
