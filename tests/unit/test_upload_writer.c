/* upload_writer: whatever the piece sizes, the file and the hash hold exactly the bytes
 * appended, in order; rollbacks cut both back; write failures are reported, not lost.
 * Runs on the disk (O_DIRECT), on tmpfs, and on /dev/full (every write fails). */
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "digest.h"
#include "upload_writer.h"

#define DATA_BYTES (9u << 20)

struct fixture {
    struct upload_writer *w;
    unsigned char *data;     /* DATA_BYTES of pseudo-random bytes */
    char path[256];
};

static uint64_t next_random(uint64_t *x)
{
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    return *x;
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    f->w = upload_writer_new(2);
    f->data = malloc(DATA_BYTES);
    uint64_t x = 88172645463325252ull;
    for (size_t i = 0; i < DATA_BYTES; i++)
        f->data[i] = (unsigned char)next_random(&x);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    upload_writer_free(f->w);
    free(f->data);
    free(f);
    return 0;
}

/* Opens a fresh file in dir the way the blobstore opens upload files. */
static int open_file(struct fixture *f, const char *dir)
{
    snprintf(f->path, sizeof(f->path), "%s/meridian-upload-writer-XXXXXX", dir);
    int fd = mkstemp(f->path);
    assert_true(fd >= 0);
    close(fd);
    fd = open(f->path, O_RDWR | O_APPEND | O_CLOEXEC);
    assert_true(fd >= 0);
    return fd;
}

static void start(struct upload_stream *s, int fd)
{
    upload_stream_init(s, fd, 0);
    s->hasher = digest_hasher_new(DIGEST_SHA256);
}

static void append_in_pieces(struct fixture *f, struct upload_stream *s, size_t from,
                             size_t to, uint64_t seed)
{
    uint64_t x = seed;
    for (size_t pos = from; pos < to;) {
        /* Mostly network-sized pieces, some tiny, some larger than a buffer. */
        size_t n = next_random(&x) % 4 == 0 ? next_random(&x) % 100 + 1
                                            : next_random(&x) % (600u * 1024) + 1;
        if (n > to - pos)
            n = to - pos;
        assert_int_equal(upload_writer_append(f->w, s, f->data + pos, n), 0);
        pos += n;
    }
}

/* The file holds data[0, len) and the stream's hash is its SHA-256. */
static void assert_holds(struct fixture *f, struct upload_stream *s, size_t len)
{
    struct stat st;
    assert_int_equal(fstat(s->fd, &st), 0);
    assert_int_equal(st.st_size, len);
    assert_int_equal(s->written, len);
    unsigned char *back = malloc(len + 1);
    assert_int_equal(pread(s->fd, back, len + 1, 0), (ssize_t)len);
    assert_memory_equal(back, f->data, len);
    free(back);
    struct digest want, got;
    digest_of_buffer(DIGEST_SHA256, f->data, len, &want);
    assert_non_null(s->hasher);
    assert_int_equal(digest_hasher_len(s->hasher), len);
    digest_hasher_final(s->hasher, &got);
    assert_true(digest_equal(&want, &got));
    digest_hasher_free(s->hasher);
    s->hasher = NULL;
}

static void finish(struct fixture *f, struct upload_stream *s)
{
    upload_stream_release(s);
    digest_hasher_free(s->hasher);
    close(s->fd);
    unlink(f->path);
}

static void check_round_trip(struct fixture *f, const char *dir)
{
    for (uint64_t seed = 1; seed <= 3; seed++) {
        struct upload_stream s;
        start(&s, open_file(f, dir));
        append_in_pieces(f, &s, 0, DATA_BYTES - seed * 777, seed);
        assert_int_equal(upload_writer_flush(f->w, &s), 0);
        assert_holds(f, &s, DATA_BYTES - seed * 777);
        finish(f, &s);
    }
}

static void test_round_trip_on_disk(void **state)
{
    check_round_trip(*state, ".");
}

static void test_round_trip_on_tmpfs(void **state)
{
    struct stat st;
    if (stat("/dev/shm", &st) != 0)
        skip();
    check_round_trip(*state, "/dev/shm");
}

/* A request that fails half-way is cut back to where it began; the next one goes on
 * from there, in the same stream, as a chunked upload or a resumed fetch does. */
static void test_truncate_then_continue(void **state)
{
    struct fixture *f = *state;
    struct upload_stream s;
    start(&s, open_file(f, "."));
    size_t first = 3u << 20;
    append_in_pieces(f, &s, 0, first, 7);
    assert_int_equal(upload_writer_flush(f->w, &s), 0);
    /* Bytes of a failed request, some staged, some in the lanes: all dropped. */
    uint64_t x = 99;
    for (size_t i = 0; i < 40; i++)
        assert_int_equal(upload_writer_append(f->w, &s, f->data + (next_random(&x) % first),
                                              65536), 0);
    assert_int_equal(upload_writer_truncate(f->w, &s, first), 0);
    /* The hash covered the dropped bytes: rebuilt by the caller, as upload_sessions does. */
    assert_null(s.hasher);
    s.hasher = digest_hasher_new(DIGEST_SHA256);
    digest_hasher_update(s.hasher, f->data, first);
    append_in_pieces(f, &s, first, DATA_BYTES, 8);
    assert_int_equal(upload_writer_flush(f->w, &s), 0);
    assert_holds(f, &s, DATA_BYTES);

    /* Cut back into bytes already written (a fetch restarting from zero). */
    s.hasher = digest_hasher_new(DIGEST_SHA256);
    digest_hasher_update(s.hasher, f->data, DATA_BYTES);
    assert_int_equal(upload_writer_truncate(f->w, &s, 0), 0);
    assert_null(s.hasher);
    s.hasher = digest_hasher_new(DIGEST_SHA256);
    append_in_pieces(f, &s, 0, 5u << 20, 9);
    assert_int_equal(upload_writer_flush(f->w, &s), 0);
    assert_holds(f, &s, 5u << 20);
    finish(f, &s);
}

/* Requests of one session come one after another; buffers are released in between. */
static void test_release_between_requests(void **state)
{
    struct fixture *f = *state;
    struct upload_stream s;
    start(&s, open_file(f, "."));
    size_t cuts[] = {100, 2u << 20, (2u << 20) + 4095, 6u << 20, DATA_BYTES};
    size_t pos = 0;
    for (size_t k = 0; k < sizeof(cuts) / sizeof(cuts[0]); k++) {
        append_in_pieces(f, &s, pos, cuts[k], 20 + k);
        assert_int_equal(upload_writer_flush(f->w, &s), 0);
        upload_stream_release(&s);
        pos = cuts[k];
    }
    assert_holds(f, &s, DATA_BYTES);
    finish(f, &s);
}

/* A write that fails (no space) is reported by append or flush, never swallowed. */
static void test_write_failure_is_reported(void **state)
{
    struct fixture *f = *state;
    int fd = open("/dev/full", O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        skip();
    struct upload_stream s;
    start(&s, fd);
    int rc = 0;
    for (size_t pos = 0; pos < DATA_BYTES && rc == 0; pos += 32768)
        rc = upload_writer_append(f->w, &s, f->data + pos, 32768);
    if (rc == 0)
        rc = upload_writer_flush(f->w, &s);
    assert_int_not_equal(rc, 0);
    upload_writer_discard(f->w, &s);
    upload_stream_release(&s);
    digest_hasher_free(s.hasher);
    close(fd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_on_disk),
        cmocka_unit_test(test_round_trip_on_tmpfs),
        cmocka_unit_test(test_truncate_then_continue),
        cmocka_unit_test(test_release_between_requests),
        cmocka_unit_test(test_write_failure_is_reported),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
