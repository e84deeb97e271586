/* Upload writer: a pool of threads working the hash and write lanes of large uploads.
 * See upload_writer.h for why. */
#include "upload_writer.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <unistd.h>

#include "util.h"

struct upload_writer {
    pthread_mutex_t mu;         /* guards lanes, pending[], len[] and lane_errno */
    pthread_cond_t work_cv;     /* a lane became ready, or the pool is stopping */
    pthread_cond_t done_cv;     /* a buffer was freed */
    struct upload_lane *ready_head, *ready_tail;
    bool is_stopping;
    unsigned n_threads;
    pthread_t threads[];
};

static bool is_aligned(uint64_t v)
{
    return v % UPLOAD_WRITER_ALIGN == 0;
}

/* Sets or clears O_DIRECT on the stream's fd; false if the filesystem refuses it. */
static bool set_direct(struct upload_stream *s, bool on)
{
    if (s->is_direct == on)
        return true;
    int flags = fcntl(s->fd, F_GETFL);
    if (flags < 0 || fcntl(s->fd, F_SETFL, on ? flags | O_DIRECT : flags & ~O_DIRECT) != 0)
        return false;
    s->is_direct = on;
    return true;
}

/* Writes the pieces at the end of the file, in one call when it can: directly when
 * allowed and every piece and the offset are aligned, else buffered with writeback
 * started every UPLOAD_WRITER_WRITEBACK_BYTES. 0 or an errno. */
static int write_pieces(struct upload_stream *s, struct iovec *iov, int n_iov,
                        bool may_be_direct)
{
    bool want_direct = may_be_direct && !s->is_direct_refused && is_aligned(s->written);
    for (int k = 0; k < n_iov; k++)
        want_direct = want_direct && is_aligned((uintptr_t)iov[k].iov_base) &&
                      is_aligned(iov[k].iov_len);
    if (!set_direct(s, want_direct) && want_direct) {
        s->is_direct_refused = true;
        (void)set_direct(s, false);
    }
    while (n_iov > 0) {
        ssize_t w = pwritev(s->fd, iov, n_iov, (off_t)s->written);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EINVAL && s->is_direct) {
                /* Alignment stricter than ours: write this and the rest buffered. */
                s->is_direct_refused = true;
                if (set_direct(s, false))
                    continue;
            }
            return errno;
        }
        s->written += (uint64_t)w;
        size_t left = (size_t)w;
        while (n_iov > 0 && left >= iov->iov_len) {
            left -= iov->iov_len;
            iov++;
            n_iov--;
        }
        if (n_iov > 0) {
            /* A short write ended inside this piece. */
            iov->iov_base = (char *)iov->iov_base + left;
            iov->iov_len -= left;
        }
    }
    if (s->is_direct) {
        s->writeback_from = s->written;
    } else if (s->written - s->writeback_from >= UPLOAD_WRITER_WRITEBACK_BYTES) {
        /* Only a head start for the commit's fsync, which reports any I/O error; a
         * failure here changes nothing, so it is not checked. */
        (void)sync_file_range(s->fd, (off_t)s->writeback_from,
                              (off_t)(s->written - s->writeback_from), SYNC_FILE_RANGE_WRITE);
        s->writeback_from = s->written;
    }
    return 0;
}

/* A buffered write, for the first MiB and the tail: a direct write of a small piece
 * would wait for the disk, and the commit's fsync writes these pages anyway. */
static int write_bytes(struct upload_stream *s, const void *p, size_t n)
{
    struct iovec iov = {(void *)p, n};
    return write_pieces(s, &iov, 1, false);
}

/* Caller holds w->mu. */
static void schedule(struct upload_writer *w, struct upload_lane *l)
{
    if (l->is_scheduled || l->len == 0)
        return;
    l->is_scheduled = true;
    l->next_ready = NULL;
    if (w->ready_tail)
        w->ready_tail->next_ready = l;
    else
        w->ready_head = l;
    w->ready_tail = l;
    AZ(pthread_cond_signal(&w->work_cv));
}

/* Works lane l: one buffer of a hash lane, or every queued buffer of a write lane in
 * one call (a write lane that fell behind catches up with larger writes). Then puts the
 * lane back at the end of the ready list if it has more, so that uploads share the
 * threads fairly. Caller holds w->mu. */
static void work_lane(struct upload_writer *w, struct upload_lane *l)
{
    struct upload_stream *s = l->stream;
    struct iovec iov[UPLOAD_WRITER_BUFFERS];
    unsigned taken[UPLOAD_WRITER_BUFFERS];
    int n = l->kind == UPLOAD_LANE_WRITE ? (int)l->len : 1;
    for (int k = 0; k < n; k++) {
        taken[k] = l->queue[(l->head + (unsigned)k) % UPLOAD_WRITER_BUFFERS];
        iov[k] = (struct iovec){s->buf[taken[k]], s->len[taken[k]]};
    }
    bool is_failed = s->lane_errno != 0;
    AZ(pthread_mutex_unlock(&w->mu));
    int rc = 0;
    /* A lane is worked by one thread at a time, and the request thread leaves a lane's
     * state (the hash, or the fd and `written`) alone while it has buffers. */
    if (l->kind == UPLOAD_LANE_HASH)
        digest_hasher_update(s->hasher, iov[0].iov_base, iov[0].iov_len);
    else if (!is_failed)
        rc = write_pieces(s, iov, n, true);
    AZ(pthread_mutex_lock(&w->mu));
    if (rc != 0 && s->lane_errno == 0)
        s->lane_errno = rc;
    for (int k = 0; k < n; k++) {
        if (--s->pending[taken[k]] == 0)
            AZ(pthread_cond_broadcast(&w->done_cv));
    }
    l->head = (l->head + (unsigned)n) % UPLOAD_WRITER_BUFFERS;
    l->len -= (unsigned)n;
    l->is_scheduled = false;
    schedule(w, l);
}

static void *pool_loop(void *arg)
{
    struct upload_writer *w = arg;
    AZ(pthread_mutex_lock(&w->mu));
    for (;;) {
        while (w->ready_head == NULL && !w->is_stopping)
            AZ(pthread_cond_wait(&w->work_cv, &w->mu));
        struct upload_lane *l = w->ready_head;
        if (l == NULL)
            break;
        w->ready_head = l->next_ready;
        if (w->ready_head == NULL)
            w->ready_tail = NULL;
        work_lane(w, l);
    }
    AZ(pthread_mutex_unlock(&w->mu));
    return NULL;
}

struct upload_writer *upload_writer_new(unsigned n_threads)
{
    if (n_threads < 2)
        n_threads = 2;
    struct upload_writer *w = xcalloc(1, sizeof(*w) + n_threads * sizeof(pthread_t));
    AZ(pthread_mutex_init(&w->mu, NULL));
    AZ(pthread_cond_init(&w->work_cv, NULL));
    AZ(pthread_cond_init(&w->done_cv, NULL));
    w->n_threads = n_threads;
    for (unsigned i = 0; i < n_threads; i++)
        AZ(pthread_create(&w->threads[i], NULL, pool_loop, w));
    return w;
}

void upload_writer_free(struct upload_writer *w)
{
    if (w == NULL)
        return;
    AZ(pthread_mutex_lock(&w->mu));
    ASSERT(w->ready_head == NULL);
    w->is_stopping = true;
    AZ(pthread_cond_broadcast(&w->work_cv));
    AZ(pthread_mutex_unlock(&w->mu));
    for (unsigned i = 0; i < w->n_threads; i++)
        AZ(pthread_join(w->threads[i], NULL));
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->work_cv);
    pthread_cond_destroy(&w->done_cv);
    free(w);
}

void upload_stream_init(struct upload_stream *s, int fd, uint64_t size)
{
    memset(s, 0, sizeof(*s));
    s->fd = fd;
    s->written = size;
    s->writeback_from = size;
    s->cur = -1;
    for (int k = 0; k < UPLOAD_LANE_COUNT; k++) {
        s->lanes[k].stream = s;
        s->lanes[k].kind = (enum upload_lane_kind)k;
    }
}

/* Staging buffers are mapped and unmapped, not malloc'd: freed heap memory of this size
 * stays in the arena of whichever request thread used it. */
static char *buffer_new(void)
{
    void *p = mmap(NULL, UPLOAD_WRITER_BUFFER_BYTES, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    ASSERT(p != MAP_FAILED);
    return p;
}

/* Waits for a buffer no lane holds and makes it the one being filled. 0, or the write
 * lane's failure. */
static int take_buffer(struct upload_writer *w, struct upload_stream *s)
{
    AZ(pthread_mutex_lock(&w->mu));
    for (;;) {
        if (s->lane_errno != 0) {
            int rc = s->lane_errno;
            AZ(pthread_mutex_unlock(&w->mu));
            return rc;
        }
        for (int i = 0; i < UPLOAD_WRITER_BUFFERS; i++) {
            if (s->pending[i] == 0) {
                AZ(pthread_mutex_unlock(&w->mu));
                if (s->buf[i] == NULL)
                    s->buf[i] = buffer_new();
                s->cur = i;
                s->staged = 0;
                return 0;
            }
        }
        AZ(pthread_cond_wait(&w->done_cv, &w->mu));
    }
}

/* Sends the buffer being filled down both lanes. */
static void dispatch(struct upload_writer *w, struct upload_stream *s)
{
    int i = s->cur;
    AZ(pthread_mutex_lock(&w->mu));
    s->len[i] = s->staged;
    s->pending[i] = UPLOAD_LANE_COUNT;
    for (int k = 0; k < UPLOAD_LANE_COUNT; k++) {
        struct upload_lane *l = &s->lanes[k];
        l->queue[(l->head + l->len) % UPLOAD_WRITER_BUFFERS] = (unsigned)i;
        l->len++;
        schedule(w, l);
    }
    AZ(pthread_mutex_unlock(&w->mu));
    s->staged_from += s->staged;
    s->staged = 0;
    s->cur = -1;
}

int upload_writer_append(struct upload_writer *w, struct upload_stream *s, const void *p,
                         size_t n)
{
    const char *c = p;
    if (s->buf[0] == NULL) {
        if (s->written + n <= UPLOAD_WRITER_INLINE_BYTES) {
            digest_hasher_update(s->hasher, c, n);
            return write_bytes(s, c, n);
        }
        s->staged_from = s->written;
    }
    while (n > 0) {
        if (s->cur < 0) {
            int rc = take_buffer(w, s);
            if (rc != 0)
                return rc;
        }
        /* The first buffer ends at an aligned offset, so every later one starts at one. */
        size_t cap = UPLOAD_WRITER_BUFFER_BYTES - s->staged_from % UPLOAD_WRITER_ALIGN;
        size_t k = cap - s->staged;
        if (k > n)
            k = n;
        memcpy(s->buf[s->cur] + s->staged, c, k);
        s->staged += k;
        c += k;
        n -= k;
        if (s->staged == cap)
            dispatch(w, s);
    }
    return 0;
}

/* Waits until no lane holds a buffer of s; returns the write lane's failure, if any. */
static int drain(struct upload_writer *w, struct upload_stream *s)
{
    AZ(pthread_mutex_lock(&w->mu));
    for (int i = 0; i < UPLOAD_WRITER_BUFFERS; i++) {
        while (s->pending[i] != 0)
            AZ(pthread_cond_wait(&w->done_cv, &w->mu));
    }
    int rc = s->lane_errno;
    AZ(pthread_mutex_unlock(&w->mu));
    return rc;
}

int upload_writer_flush(struct upload_writer *w, struct upload_stream *s)
{
    int rc = drain(w, s);
    if (rc != 0)
        return rc;
    if (s->cur >= 0 && s->staged > 0) {
        digest_hasher_update(s->hasher, s->buf[s->cur], s->staged);
        rc = write_bytes(s, s->buf[s->cur], s->staged);
        if (rc != 0) {
            /* The hash now covers bytes the file lacks: discard drops it. */
            s->lane_errno = rc;
            return rc;
        }
        s->staged_from += s->staged;
        s->staged = 0;
    }
    s->cur = -1;
    /* Callers read the file back (hashes, commits): with O_DIRECT they would need
     * aligned buffers. */
    (void)set_direct(s, false);
    return 0;
}

void upload_writer_discard(struct upload_writer *w, struct upload_stream *s)
{
    (void)drain(w, s);
    (void)set_direct(s, false);
    s->cur = -1;
    s->staged = 0;
    s->staged_from = s->written;
    s->lane_errno = 0;
    /* The hash covered dropped bytes: the caller rebuilds it from the file. */
    if (s->hasher != NULL && digest_hasher_len(s->hasher) != s->written) {
        digest_hasher_free(s->hasher);
        s->hasher = NULL;
    }
}

int upload_writer_truncate(struct upload_writer *w, struct upload_stream *s, uint64_t size)
{
    upload_writer_discard(w, s);
    ASSERT(size <= s->written);
    if (size == s->written)
        return 0;
    if (ftruncate(s->fd, (off_t)size) != 0)
        return errno;
    s->written = size;
    s->staged_from = size;
    if (s->writeback_from > size)
        s->writeback_from = size;
    digest_hasher_free(s->hasher);
    s->hasher = NULL;
    return 0;
}

void upload_stream_release(struct upload_stream *s)
{
    ASSERT(s->cur < 0 || s->staged == 0);
    for (int i = 0; i < UPLOAD_WRITER_BUFFERS; i++) {
        ASSERT(s->pending[i] == 0);
        if (s->buf[i] != NULL)
            AZ(munmap(s->buf[i], UPLOAD_WRITER_BUFFER_BYTES));
        s->buf[i] = NULL;
    }
    s->cur = -1;
}
