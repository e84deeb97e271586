/* Unit tests for the filesystem blobstore: upload files, commit, blobs, put, the
 * on-disk layout, crash leftovers and refusal of malformed ids and digests.
 * Digests are built by hand where the blobstore trusts the caller (put, open, stat); an
 * upload's commit verifies its bytes, so those use real ones. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "blobstore.h"
#include "log.h"
#include "util.h"

struct fixture {
    char dir[64];
    struct blobstore *bs;
};

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void rm_rf(const char *dir)
{
    nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static int teardown(void **state);

static int setup(void **state)
{
    struct fixture *f = xcalloc(1, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "/tmp/meridian-bs-XXXXXX");
    if (mkdtemp(f->dir) == NULL)
        return -1;
    struct err e = {0};
    f->bs = blobstore_fs_open(f->dir, &e);
    *state = f;
    if (f->bs == NULL) {
        teardown(state); /* cmocka skips teardown when setup fails */
        return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    if (f->bs)
        f->bs->ops->close(f->bs);
    rm_rf(f->dir);
    free(f);
    return 0;
}

/* A well-formed digest whose hex is derived from seed (no hashing needed). */
static void fake_digest(enum digest_alg alg, unsigned seed, struct digest *d)
{
    size_t hex_len = alg == DIGEST_SHA256 ? 64 : 128;
    int n = snprintf(d->str, sizeof(d->str), "%s:", alg == DIGEST_SHA256 ? "sha256" : "sha512");
    for (size_t i = 0; i < hex_len; i += 8)
        n += snprintf(d->str + n, sizeof(d->str) - (size_t)n, "%08x",
                      seed * 2654435761u + (unsigned)i);
    d->alg = alg;
}

static void path_of_blob(const struct fixture *f, const struct digest *d, char *out)
{
    const char *hex = strchr(d->str, ':') + 1;
    snprintf(out, PATH_MAX, "%s/blobs/%s/%.2s/%s", f->dir,
             d->alg == DIGEST_SHA256 ? "sha256" : "sha512", hex, hex);
}

static size_t count_entries(const char *dir)
{
    DIR *dp = opendir(dir);
    assert_non_null(dp);
    size_t n = 0;
    for (struct dirent *de = readdir(dp); de != NULL; de = readdir(dp)) {
        if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
            n++;
    }
    closedir(dp);
    return n;
}

static size_t count_sub(const struct fixture *f, const char *sub)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/%s", f->dir, sub);
    return count_entries(path);
}

/* Reads the whole of fd from offset 0 into a NUL-terminated heap string. */
static char *read_all(int fd)
{
    char *out = xmalloc(1);
    size_t len = 0;
    char chunk[4096];
    for (;;) {
        ssize_t r = pread(fd, chunk, sizeof(chunk), (off_t)len);
        assert_true(r >= 0);
        if (r == 0)
            break;
        out = xrealloc(out, len + (size_t)r + 1);
        memcpy(out + len, chunk, (size_t)r);
        len += (size_t)r;
    }
    out[len] = '\0';
    return out;
}

/* Appends s to upload id through a handle, stored (not durable). */
static void append_upload(struct blobstore *bs, const char *id, const char *s,
                          uint64_t expect_size)
{
    struct err e = {0};
    uint64_t size = 99;
    struct blobstore_upload *u = NULL;
    assert_int_equal(bs->ops->upload_open(bs, id, &u, &size, &e), 0);
    assert_int_equal(size, expect_size);
    assert_int_equal(bs->ops->upload_append(bs, u, size, s, strlen(s), &e), 0);
    assert_int_equal(bs->ops->upload_flush(bs, u, false, &e), 0);
    bs->ops->upload_close(bs, u);
}

/* Creates upload id holding s. */
static void make_upload(struct blobstore *bs, const char *id, const char *s)
{
    struct err e = {0};
    assert_int_equal(bs->ops->upload_create(bs, id, &e), 0);
    append_upload(bs, id, s, 0);
}

/* Opens upload id only to see that it is there: 0 or -1 with e set. */
static int probe_upload(struct blobstore *bs, const char *id, uint64_t *size, struct err *e)
{
    struct blobstore_upload *u = NULL;
    int rc = bs->ops->upload_open(bs, id, &u, size, e);
    bs->ops->upload_close(bs, u);
    return rc;
}

/* Commits upload id as blob d through a handle (the store verifies d). */
static int commit_id(struct blobstore *bs, const char *id, const struct digest *d,
                     struct err *e)
{
    struct blobstore_upload *u = NULL;
    uint64_t size;
    if (bs->ops->upload_open(bs, id, &u, &size, e) != 0)
        return -1;
    int rc = bs->ops->upload_commit(bs, u, d, e);
    bs->ops->upload_close(bs, u);
    return rc;
}

/* Opens blob d (all of it) as a file descriptor, as a GET does. */
static int open_fd(struct blobstore *bs, const struct digest *d, uint64_t expected_size,
                   int *fd, uint64_t *size, struct err *e)
{
    struct blobstore_body body;
    *fd = -1;
    if (bs->ops->open(bs, d, expected_size, 0, expected_size, 0, &body, e) != 0)
        return -1;
    assert_int_equal(body.kind, BLOBSTORE_BODY_FD);
    assert_int_equal(body.fd_offset, 0);
    *fd = body.fd;
    *size = expected_size;
    return 0;
}

static void assert_blob_is(struct blobstore *bs, const struct digest *d, const char *s)
{
    struct err e = {0};
    int fd = -1;
    uint64_t size = 0;
    assert_int_equal(open_fd(bs, d, strlen(s), &fd, &size, &e), 0);
    assert_true(fd >= 0);
    assert_int_equal(size, strlen(s));
    char *got = read_all(fd);
    assert_string_equal(got, s);
    free(got);
    close(fd);
}

static void test_open_creates_layout(void **state)
{
    struct fixture *f = *state;
    static const char *dirs[] = {"blobs", "blobs/sha256", "blobs/sha512", "uploads", "tmp"};
    for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
        char path[PATH_MAX];
        struct stat st;
        snprintf(path, sizeof(path), "%s/%s", f->dir, dirs[i]);
        assert_int_equal(stat(path, &st), 0);
        assert_true(S_ISDIR(st.st_mode));
    }
    assert_string_equal(f->bs->ops->name, "fs");
}

static void test_upload_append_commit_open(void **state)
{
    struct fixture *f = *state;
    struct blobstore *bs = f->bs;
    struct err e = {0};
    struct digest d;
    char id[33];
    uint64_t size = 0;

    util_random_id(id);
    digest_of_buffer(DIGEST_SHA256, "hello world", 11, &d);
    make_upload(bs, id, "hello ");

    /* Reopening reports the current size and appends at the end. */
    append_upload(bs, id, "world", 6);

    /* Not a blob until committed. */
    assert_int_equal(bs->ops->stat(bs, &d, &size, &e), -1);
    assert_int_equal(e.code, ERR_BLOB_UNKNOWN);

    assert_int_equal(commit_id(bs, id, &d, &e), 0);

    /* The upload is gone and the blob sits at its layout path. */
    assert_int_equal(probe_upload(bs, id, &size, &e), -1);
    assert_int_equal(e.code, ERR_BLOB_UPLOAD_UNKNOWN);
    assert_int_equal(count_sub(f, "uploads"), 0);
    char path[PATH_MAX];
    struct stat st;
    path_of_blob(f, &d, path);
    assert_int_equal(stat(path, &st), 0);
    assert_true(S_ISREG(st.st_mode));
    assert_int_equal(st.st_size, 11);

    int bfd = -1;
    assert_int_equal(open_fd(bs, &d, 11, &bfd, &size, &e), 0);
    assert_int_equal(size, 11);
    assert_int_equal(fcntl(bfd, F_GETFL) & O_ACCMODE, O_RDONLY);
    assert_true(fcntl(bfd, F_GETFD) & FD_CLOEXEC);
    close(bfd);
    assert_blob_is(bs, &d, "hello world");

    size = 0;
    assert_int_equal(bs->ops->stat(bs, &d, &size, &e), 0);
    assert_int_equal(size, 11);
}

/* The fs store answers every read with its file, at the offset of the range asked (the
 * HTTP layer sends it with sendfile), whatever other answers the caller accepts. */
static void test_open_answers_fd_at_range(void **state)
{
    struct fixture *f = *state;
    struct blobstore *bs = f->bs;
    struct err e = {0};
    struct digest d;
    struct blobstore_body body;
    digest_of_buffer(DIGEST_SHA256, "hello world", 11, &d);
    assert_int_equal(bs->ops->put(bs, &d, "hello world", 11, &e), 0);
    assert_int_equal(bs->ops->open(bs, &d, 11, 6, 5, BLOBSTORE_ACCEPT_REDIRECT, &body, &e), 0);
    assert_int_equal(body.kind, BLOBSTORE_BODY_FD);
    assert_int_equal(body.fd_offset, 6);
    char got[8] = {0};
    assert_int_equal(pread(body.fd, got, 5, (off_t)body.fd_offset), 5);
    assert_string_equal(got, "world");
    blobstore_body_close(&body);
    assert_int_equal(body.fd, -1);
    /* A range past the blob is the caller's mistake: refused, nothing opened. */
    assert_int_equal(bs->ops->open(bs, &d, 11, 6, 6, 0, &body, &e), -1);
    assert_int_equal(e.code, ERR_RANGE_INVALID);
}

/* The upload handle: appends only where the session ends, commit checks the digest of
 * what was appended (a wrong one changes nothing), a cut-back rehashes what stays. */
static void test_upload_handle_verifies(void **state)
{
    struct fixture *f = *state;
    struct blobstore *bs = f->bs;
    struct err e = {0};
    struct blobstore_upload *u = NULL;
    struct digest good, wrong;
    char id[33];
    uint64_t size = 99;
    util_random_id(id);
    digest_of_buffer(DIGEST_SHA256, "abcdef", 6, &good);
    digest_of_buffer(DIGEST_SHA256, "abcdefgh", 8, &wrong);
    assert_int_equal(bs->ops->upload_create(bs, id, &e), 0);
    assert_int_equal(bs->ops->upload_open(bs, id, &u, &size, &e), 0);
    assert_int_equal(size, 0);
    assert_int_equal(bs->ops->upload_append(bs, u, 0, "abcdefgh", 8, &e), 0);
    assert_int_equal(bs->ops->upload_append(bs, u, 3, "xyz", 3, &e), -1);
    assert_int_equal(e.code, ERR_RANGE_INVALID);
    assert_int_equal(bs->ops->upload_flush(bs, u, true, &e), 0);
    assert_int_equal(bs->ops->upload_truncate(bs, u, 6, &size, &e), 0);
    assert_int_equal(size, 6);
    assert_int_equal(bs->ops->upload_commit(bs, u, &wrong, &e), -1);
    assert_int_equal(e.code, ERR_DIGEST_INVALID);
    assert_int_equal(bs->ops->stat(bs, &wrong, &size, &e), -1);
    assert_int_equal(bs->ops->upload_commit(bs, u, &good, &e), 0);
    bs->ops->upload_close(bs, u);
    bs->ops->upload_remove(bs, id);
    assert_blob_is(bs, &good, "abcdef");
    assert_int_equal(count_sub(f, "uploads"), 0);
}

/* --blobstore: empty means the data directory, a path or file:// the fs store there, and a
 * scheme no backend serves is refused at start-up rather than ignored. */
static void test_open_by_spec(void **state)
{
    struct fixture *f = *state;
    struct err e = {0};
    char spec[128];
    snprintf(spec, sizeof(spec), "file://%s/other", f->dir);
    struct blobstore *bs = blobstore_open(spec, f->dir, &e);
    assert_non_null(bs);
    assert_string_equal(bs->ops->name, "fs");
    bs->ops->close(bs);
    assert_int_equal(count_sub(f, "other/blobs"), 2); /* sha256/ and sha512/ made there */
    bs = blobstore_open(NULL, f->dir, &e);
    assert_non_null(bs);
    bs->ops->close(bs);
    assert_null(blobstore_open("s3://bucket/prefix", f->dir, &e));
    assert_int_equal(e.code, ERR_BAD_REQUEST);
    assert_null(strstr(err_message(&e), "bucket"));
}

static void test_upload_create_twice_conflicts(void **state)
{
    struct fixture *f = *state;
    struct err e = {0};
    char id[33];
    util_random_id(id);
    assert_int_equal(f->bs->ops->upload_create(f->bs, id, &e), 0);
    assert_int_equal(f->bs->ops->upload_create(f->bs, id, &e), -1);
    assert_int_equal(e.code, ERR_CONFLICT);
}

static void test_duplicate_commit_replaces_copy(void **state)
{
    struct fixture *f = *state;
    struct blobstore *bs = f->bs;
    struct err e = {0};
    struct digest d;
    char id1[33];
    char id2[33];
    char path[PATH_MAX];
    struct stat st1;
    struct stat st2;

    digest_of_buffer(DIGEST_SHA256, "same bytes", 10, &d);
    util_random_id(id1);
    util_random_id(id2);
    make_upload(bs, id1, "same bytes");
    make_upload(bs, id2, "same bytes");

    assert_int_equal(commit_id(bs, id1, &d, &e), 0);
    path_of_blob(f, &d, path);
    assert_int_equal(stat(path, &st1), 0);

    assert_int_equal(commit_id(bs, id2, &d, &e), 0);
    assert_int_equal(stat(path, &st2), 0);
    /* The second verified copy takes the name (that is how a re-push repairs a damaged
     * copy); still one file, one link. */
    assert_true(st1.st_ino != st2.st_ino);
    assert_int_equal(st2.st_nlink, 1);
    assert_int_equal(count_sub(f, "uploads"), 0);
    assert_blob_is(bs, &d, "same bytes");
}

struct commit_arg {
    struct blobstore *bs;
    const struct digest *d;
    char id[33];
    int rc;
};

static void *commit_thread(void *p)
{
    struct commit_arg *a = p;
    struct err e = {0};
    a->rc = commit_id(a->bs, a->id, a->d, &e);
    return NULL;
}

static void test_concurrent_commits_same_digest(void **state)
{
    struct fixture *f = *state;
    enum { N = 8 };
    struct commit_arg args[N];
    pthread_t threads[N];
    struct digest d;
    char path[PATH_MAX];
    char sub[PATH_MAX];

    digest_of_buffer(DIGEST_SHA256, "contended", 9, &d);
    for (int i = 0; i < N; i++) {
        args[i].bs = f->bs;
        args[i].d = &d;
        args[i].rc = -2;
        util_random_id(args[i].id);
        make_upload(f->bs, args[i].id, "contended");
    }
    for (int i = 0; i < N; i++)
        assert_int_equal(pthread_create(&threads[i], NULL, commit_thread, &args[i]), 0);
    for (int i = 0; i < N; i++)
        assert_int_equal(pthread_join(threads[i], NULL), 0);
    for (int i = 0; i < N; i++)
        assert_int_equal(args[i].rc, 0);
    assert_int_equal(count_sub(f, "uploads"), 0);
    path_of_blob(f, &d, path);
    snprintf(sub, sizeof(sub), "%.*s", (int)(strrchr(path, '/') - path), path);
    assert_int_equal(count_entries(sub), 1);
    assert_blob_is(f->bs, &d, "contended");
}

static void test_unknown_blob_and_upload(void **state)
{
    struct fixture *f = *state;
    struct blobstore *bs = f->bs;
    struct err e = {0};
    struct digest d;
    char id[33];
    uint64_t size = 7;
    int fd = 5;

    fake_digest(DIGEST_SHA512, 4, &d);
    util_random_id(id);
    assert_int_equal(open_fd(bs, &d, 7, &fd, &size, &e), -1);
    assert_int_equal(e.code, ERR_BLOB_UNKNOWN);
    assert_int_equal(fd, -1);
    assert_int_equal(bs->ops->stat(bs, &d, &size, &e), -1);
    assert_int_equal(e.code, ERR_BLOB_UNKNOWN);
    assert_int_equal(probe_upload(bs, id, &size, &e), -1);
    assert_int_equal(e.code, ERR_BLOB_UPLOAD_UNKNOWN);
    assert_int_equal(commit_id(bs, id, &d, &e), -1);
    assert_int_equal(e.code, ERR_BLOB_UPLOAD_UNKNOWN);
    /* Removing what is not there is not an error. */
    assert_int_equal(bs->ops->remove(bs, &d, NULL), 0);
    bs->ops->upload_remove(bs, id);
}

static void test_upload_remove(void **state)
{
    struct fixture *f = *state;
    struct err e = {0};
    char id[33];
    uint64_t size;
    util_random_id(id);
    make_upload(f->bs, id, "abandoned");
    assert_int_equal(count_sub(f, "uploads"), 1);
    f->bs->ops->upload_remove(f->bs, id);
    assert_int_equal(count_sub(f, "uploads"), 0);
    assert_int_equal(probe_upload(f->bs, id, &size, &e), -1);
    assert_int_equal(e.code, ERR_BLOB_UPLOAD_UNKNOWN);
}

/* A removed region's blobs all go through the seam (repl.c no longer builds the path). */
static void test_remove_all(void **state)
{
    struct fixture *f = *state;
    struct blobstore *bs = f->bs;
    struct err e = {0};
    struct digest d256;
    struct digest d512;
    uint64_t size = 0;

    fake_digest(DIGEST_SHA256, 7, &d256);
    fake_digest(DIGEST_SHA512, 7, &d512);
    assert_int_equal(bs->ops->put(bs, &d256, "{\"a\":1}", 7, &e), 0);
    assert_int_equal(bs->ops->put(bs, &d512, "", 0, &e), 0);
    assert_int_equal(bs->ops->upload_create(bs, "0123456789abcdef0123456789abcdef", &e), 0);
    assert_true(bs->ops->remove_all(bs) >= 2);
    assert_int_equal(bs->ops->stat(bs, &d256, &size, &e), -1);
    assert_int_equal(bs->ops->stat(bs, &d512, &size, &e), -1);
    /* Upload sessions stay. */
    int fd = probe_upload(bs, "0123456789abcdef0123456789abcdef", &size, &e);
    assert_true(fd >= 0);
    close(fd);
}

static void test_put_and_remove(void **state)
{
    struct fixture *f = *state;
    struct blobstore *bs = f->bs;
    struct err e = {0};
    struct digest d256;
    struct digest d512;
    uint64_t size = 0;

    fake_digest(DIGEST_SHA256, 5, &d256);
    fake_digest(DIGEST_SHA512, 5, &d512);
    assert_int_equal(bs->ops->put(bs, &d256, "{\"a\":1}", 7, &e), 0);
    assert_int_equal(bs->ops->put(bs, &d512, "", 0, &e), 0);
    /* Storing the same content again is fine and keeps one copy. */
    assert_int_equal(bs->ops->put(bs, &d256, "{\"a\":1}", 7, &e), 0);
    assert_int_equal(count_sub(f, "tmp"), 0);
    assert_blob_is(bs, &d256, "{\"a\":1}");
    assert_blob_is(bs, &d512, "");

    char path[PATH_MAX];
    struct stat st;
    path_of_blob(f, &d512, path);
    assert_non_null(strstr(path, "/blobs/sha512/"));
    assert_int_equal(stat(path, &st), 0);

    assert_int_equal(bs->ops->remove(bs, &d256, NULL), 0);
    assert_int_equal(bs->ops->stat(bs, &d256, &size, &e), -1);
    assert_int_equal(e.code, ERR_BLOB_UNKNOWN);
    assert_int_equal(bs->ops->stat(bs, &d512, &size, &e), 0);
    assert_int_equal(size, 0);
}

static void test_open_removes_leftover_tmp(void **state)
{
    struct fixture *f = *state;
    struct err e = {0};
    struct digest d;
    char path[PATH_MAX];
    char id[33];

    fake_digest(DIGEST_SHA256, 6, &d);
    assert_int_equal(f->bs->ops->put(f->bs, &d, "kept", 4, &e), 0);
    util_random_id(id);
    make_upload(f->bs, id, "in progress");
    f->bs->ops->close(f->bs);
    f->bs = NULL;

    /* What a crash in the middle of put() leaves behind. */
    static const char *leftovers[] = {"0123456789abcdef0123456789abcdef", "stray.partial"};
    for (size_t i = 0; i < 2; i++) {
        snprintf(path, sizeof(path), "%s/tmp/%s", f->dir, leftovers[i]);
        FILE *fp = fopen(path, "w");
        assert_non_null(fp);
        fputs("half a blob", fp);
        fclose(fp);
    }
    assert_int_equal(count_sub(f, "tmp"), 2);

    f->bs = blobstore_fs_open(f->dir, &e);
    assert_non_null(f->bs);
    assert_int_equal(count_sub(f, "tmp"), 0);
    /* Blobs and upload sessions survive a restart. */
    assert_blob_is(f->bs, &d, "kept");
    assert_int_equal(count_sub(f, "uploads"), 1);
}

static void test_bad_ids_refused(void **state)
{
    struct fixture *f = *state;
    struct blobstore *bs = f->bs;
    struct digest d;
    char victim[PATH_MAX];
    struct stat st;
    static const char *bad[] = {
        "",
        "abc",
        "0123456789abcdef0123456789abcde",   /* 31 */
        "0123456789abcdef0123456789abcdef0", /* 33 */
        "0123456789ABCDEF0123456789ABCDEF",  /* upper case */
        "../victim",
        "../victim/////////////////////////",
        "..//////////////////////////////",  /* 32 chars, not hex */
        "0123456789abcdef0123456789abcde/",
        NULL,
    };

    fake_digest(DIGEST_SHA256, 7, &d);
    snprintf(victim, sizeof(victim), "%s/victim", f->dir);
    FILE *fp = fopen(victim, "w");
    assert_non_null(fp);
    fclose(fp);

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct err e = {0};
        uint64_t size = 0;
        assert_int_equal(bs->ops->upload_create(bs, bad[i], &e), -1);
        assert_int_equal(e.code, ERR_BLOB_UPLOAD_UNKNOWN);
        e.code = ERR_NONE;
        assert_int_equal(probe_upload(bs, bad[i], &size, &e), -1);
        assert_int_equal(e.code, ERR_BLOB_UPLOAD_UNKNOWN);
        e.code = ERR_NONE;
        assert_int_equal(commit_id(bs, bad[i], &d, &e), -1);
        assert_int_equal(e.code, ERR_BLOB_UPLOAD_UNKNOWN);
        bs->ops->upload_remove(bs, bad[i]);
    }
    assert_int_equal(stat(victim, &st), 0);
    assert_int_equal(count_sub(f, "uploads"), 0);
    assert_int_equal(bs->ops->stat(bs, &d, &(uint64_t){0}, &(struct err){0}), -1);
}

static void test_bad_digests_refused(void **state)
{
    struct fixture *f = *state;
    struct blobstore *bs = f->bs;
    struct digest bad[6];
    char id[33];

    fake_digest(DIGEST_SHA256, 8, &bad[0]);
    bad[0].str[10] = 'A'; /* upper-case hex */
    fake_digest(DIGEST_SHA512, 8, &bad[1]);
    bad[1].alg = DIGEST_SHA256; /* algorithm and length disagree */
    fake_digest(DIGEST_SHA256, 8, &bad[2]);
    memcpy(bad[2].str + 7, "../../", 6); /* traversal */
    fake_digest(DIGEST_SHA256, 8, &bad[3]);
    bad[3].alg = (enum digest_alg)0;
    fake_digest(DIGEST_SHA256, 8, &bad[4]);
    bad[4].str[6] = '/'; /* no colon */
    fake_digest(DIGEST_SHA256, 8, &bad[5]);
    bad[5].str[40] = '\0'; /* too short */

    util_random_id(id);
    make_upload(bs, id, "data");
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct err e = {0};
        uint64_t size = 0;
        int fd = -1;
        assert_int_equal(open_fd(bs, &bad[i], 0, &fd, &size, &e), -1);
        assert_int_equal(e.code, ERR_DIGEST_INVALID);
        assert_int_equal(bs->ops->stat(bs, &bad[i], &size, &e), -1);
        assert_int_equal(e.code, ERR_DIGEST_INVALID);
        assert_int_equal(bs->ops->put(bs, &bad[i], "x", 1, &e), -1);
        assert_int_equal(e.code, ERR_DIGEST_INVALID);
        assert_int_equal(commit_id(bs, id, &bad[i], &e), -1);
        assert_int_equal(e.code, ERR_DIGEST_INVALID);
        assert_int_equal(bs->ops->remove(bs, &bad[i], &e), -1); /* refused: nothing removed */
        assert_int_equal(e.code, ERR_DIGEST_INVALID);
    }
    /* Nothing was written anywhere. */
    assert_int_equal(count_sub(f, "blobs/sha256"), 0);
    assert_int_equal(count_sub(f, "blobs/sha512"), 0);
    assert_int_equal(count_sub(f, "tmp"), 0);
    assert_int_equal(count_sub(f, "uploads"), 1);
    assert_int_equal(count_entries(f->dir), 4); /* blobs, uploads, tmp, quarantine */
}

struct seen {
    struct blobstore *bs;
    char ids[8][33];
    size_t n;
    bool is_removing;
};

static void on_upload(const char *id, void *arg)
{
    struct seen *s = arg;
    assert_true(s->n < 8);
    snprintf(s->ids[s->n++], 33, "%s", id);
    if (s->is_removing)
        s->bs->ops->upload_remove(s->bs, id);
}

static int cmp_id(const void *a, const void *b)
{
    return strcmp(a, b);
}

struct listed_blobs {
    struct blobstore *bs;
    struct digest d[4];
    int64_t stored_ms[4];
    size_t n;
};

static void on_listed(const struct digest *d, int64_t stored_ms, void *arg)
{
    struct listed_blobs *l = arg;
    assert_true(l->n < 4);
    l->d[l->n] = *d;
    l->stored_ms[l->n++] = stored_ms;
}

static void on_blob(const struct digest *d, int64_t stored_ms, void *arg)
{
    struct listed_blobs *l = arg;
    on_listed(d, stored_ms, arg);
    assert_int_equal(l->bs->ops->remove(l->bs, d, NULL), 0); /* the sweep may remove it */
}

/* The file sweep's listing: every blob (both algorithms) with the time it was put in place
 * (its ctime: the mtime is the verified stamp), and nothing that is not a blob file. */
static void test_each_blob_lists_blobs_with_their_store_time(void **state)
{
    struct fixture *f = *state;
    struct blobstore *bs = f->bs;
    struct digest d256, d512;
    struct err e = {0};
    fake_digest(DIGEST_SHA256, 11, &d256);
    fake_digest(DIGEST_SHA512, 12, &d512);
    int64_t before_ms = util_now_ms() - 1000;
    assert_int_equal(bs->ops->put(bs, &d256, "abc", 3, &e), 0);
    assert_int_equal(bs->ops->put(bs, &d512, "defg", 4, &e), 0);
    /* Not blobs: a name that is no digest, one in the wrong fan-out directory. */
    char path[PATH_MAX];
    const char *hex = d256.str + strlen("sha256:");
    snprintf(path, sizeof(path), "%s/blobs/sha256/%.2s/stray", f->dir, hex);
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fclose(fp);
    char misplaced[PATH_MAX / 2];
    snprintf(misplaced, sizeof(misplaced), "%s/blobs/sha256/%s", f->dir,
             hex[0] == '0' && hex[1] == '0' ? "01" : "00");
    assert_int_equal(mkdir(misplaced, 0700), 0);
    snprintf(path, sizeof(path), "%s/%s", misplaced, hex);
    fp = fopen(path, "w");
    assert_non_null(fp);
    fclose(fp);

    struct listed_blobs l = {.bs = bs};
    assert_int_equal(bs->ops->each_blob(bs, on_blob, &l, &e), 0);
    assert_int_equal(l.n, 2);
    bool has256 = false, has512 = false;
    for (size_t i = 0; i < l.n; i++) {
        has256 |= strcmp(l.d[i].str, d256.str) == 0;
        has512 |= strcmp(l.d[i].str, d512.str) == 0;
        assert_true(l.stored_ms[i] >= before_ms && l.stored_ms[i] <= util_now_ms() + 1000);
    }
    assert_true(has256 && has512);
    uint64_t size;
    assert_int_not_equal(bs->ops->stat(bs, &d256, &size, &e), 0);
    l.n = 0;
    assert_int_equal(bs->ops->each_blob(bs, on_blob, &l, &e), 0);
    assert_int_equal(l.n, 0);
}

/* A listing or a removal that fails says so (the sweep counts it as an error, never as a
 * file removed): a blob directory that cannot be read (here a file where sha512/ belongs)
 * fails the listing, yet the readable ones are listed; a blob path that cannot be
 * unlinked (a directory) fails the removal. */
static void test_each_blob_and_remove_report_failures(void **state)
{
    struct fixture *f = *state;
    struct blobstore *bs = f->bs;
    struct digest d256, d512;
    struct err e = {0};
    fake_digest(DIGEST_SHA256, 21, &d256);
    fake_digest(DIGEST_SHA512, 22, &d512);
    assert_int_equal(bs->ops->put(bs, &d256, "abc", 3, &e), 0);
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/blobs/sha512", f->dir);
    assert_true(rmdir(path) == 0 || errno == ENOENT); /* empty: no sha512 blob yet */
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fclose(fp);
    struct listed_blobs l = {.bs = NULL};
    assert_int_equal(bs->ops->each_blob(bs, on_listed, &l, &e), -1);
    assert_int_equal(e.code, ERR_IO);
    assert_int_equal(l.n, 1);
    assert_string_equal(l.d[0].str, d256.str);
    assert_int_equal(unlink(path), 0);

    const char *hex = d512.str + strlen("sha512:");
    snprintf(path, sizeof(path), "%s/blobs/sha512/%.2s/%s/x", f->dir, hex, hex);
    assert_int_equal(util_mkdirs(path), 0); /* the blob's path is a non-empty directory */
    memset(&e, 0, sizeof(e));
    assert_int_equal(bs->ops->remove(bs, &d512, &e), -1);
    assert_int_equal(e.code, ERR_IO);
}

static void test_each_upload(void **state)
{
    struct fixture *f = *state;
    char ids[3][33];
    char path[PATH_MAX];

    for (int i = 0; i < 3; i++) {
        util_random_id(ids[i]);
        make_upload(f->bs, ids[i], "x");
    }
    /* A file that is not a session id is not reported. */
    snprintf(path, sizeof(path), "%s/uploads/not-a-session", f->dir);
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fclose(fp);

    struct seen s = {.bs = f->bs};
    f->bs->ops->upload_each(f->bs, on_upload, &s);
    assert_int_equal(s.n, 3);
    qsort(ids, 3, sizeof(ids[0]), cmp_id);
    qsort(s.ids, s.n, sizeof(s.ids[0]), cmp_id);
    for (int i = 0; i < 3; i++)
        assert_string_equal(s.ids[i], ids[i]);

    /* The callback may remove the upload it is given. */
    memset(&s, 0, sizeof(s));
    s.bs = f->bs;
    s.is_removing = true;
    f->bs->ops->upload_each(f->bs, on_upload, &s);
    assert_int_equal(s.n, 3);
    assert_int_equal(count_sub(f, "uploads"), 1);
}

static void test_open_fails_cleanly(void **state)
{
    struct fixture *f = *state;
    char path[PATH_MAX];
    struct err e = {0};

    /* The root lies under a regular file: nothing can be created. */
    snprintf(path, sizeof(path), "%s/file", f->dir);
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fclose(fp);
    snprintf(path, sizeof(path), "%s/file/store", f->dir);
    assert_null(blobstore_fs_open(path, &e));
    assert_int_equal(e.code, ERR_IO);
    assert_null(strstr(err_message(&e), f->dir)); /* no paths in client messages */
    assert_null(blobstore_fs_open("", &e));
}

/* Integrity: sizes, stamps, quarantine, repair ------------------------------------ */

/* Commits s as a blob under its real sha256 digest *d. */
static void commit_real(struct blobstore *bs, const char *s, struct digest *d)
{
    struct err e = {0};
    char id[33];
    util_random_id(id);
    digest_of_buffer(DIGEST_SHA256, s, strlen(s), d);
    make_upload(bs, id, s);
    assert_int_equal(commit_id(bs, id, d, &e), 0);
}

static void pwrite_at(const char *path, off_t off, const char *s)
{
    int fd = open(path, O_WRONLY);
    assert_true(fd >= 0);
    assert_int_equal(pwrite(fd, s, strlen(s), off), (ssize_t)strlen(s));
    close(fd);
}

/* Puts the verified stamp back, as damage below the file system (bit rot) would leave it. */
static void restamp(const char *path)
{
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    struct timespec times[2] = {st.st_atim, {.tv_sec = 946684800, .tv_nsec = 0}};
    assert_int_equal(utimensat(AT_FDCWD, path, times, 0), 0);
}

static size_t count_quarantined(struct blobstore *bs, size_t *n_repaired)
{
    struct blobstore_quarantined *q = NULL;
    size_t n = 0;
    bs->ops->quarantined(bs, &q, &n);
    *n_repaired = 0;
    for (size_t i = 0; i < n; i++)
        *n_repaired += q[i].is_repaired;
    free(q);
    return n;
}

/* Every name a quarantine could pick for the next 5 s is taken by a copy set aside before:
 * the new bad copy gets a name of its own and none of them is replaced (a rename onto a
 * taken name used to drop the earlier copy, met when two went in one millisecond). */
static void test_quarantine_never_replaces_an_earlier_copy(void **state)
{
    enum { TAKEN = 5000, ATTEMPTS = 4 };
    struct fixture *f = *state;
    struct blobstore *bs = f->bs;
    struct err e = {0};
    struct digest d;
    int fd = -1;
    uint64_t size = 0;
    char path[PATH_MAX];

    /* The names must still cover the moment of the quarantine, else the test proves
     * nothing: on a loaded machine, making them may take longer than they cover; then it
     * tries again with names from now on (none of them taken yet). */
    for (int attempt = 0; attempt < ATTEMPTS; attempt++) {
        commit_real(bs, "hello world", &d);
        const char *alg = digest_alg_name(d.alg);
        const char *hex = digest_hex(&d);
        size_t before = count_sub(f, "quarantine");
        int64_t start_ms = util_now_ms() + 1;
        for (int i = 0; i < TAKEN; i++) {
            snprintf(path, sizeof(path), "%s/quarantine/%s-%s-%lld", f->dir, alg, hex,
                     (long long)(start_ms + i));
            FILE *fp = fopen(path, "w");
            assert_non_null(fp);
            fputs("earlier", fp);
            fclose(fp);
        }
        assert_int_equal(open_fd(bs, &d, 12, &fd, &size, &e), -1);
        assert_int_equal(e.code, ERR_BLOB_CORRUPT);
        assert_int_equal(count_sub(f, "quarantine"), before + TAKEN + 1);
        if (util_now_ms() >= start_ms + TAKEN)
            continue;
        for (int i = 0; i < TAKEN; i++) {
            char text[16] = "";
            snprintf(path, sizeof(path), "%s/quarantine/%s-%s-%lld", f->dir, alg, hex,
                     (long long)(start_ms + i));
            FILE *fp = fopen(path, "r");
            assert_non_null(fp);
            assert_non_null(fgets(text, sizeof(text), fp));
            fclose(fp);
            assert_string_equal(text, "earlier");
        }
        return;
    }
    fail_msg("making %d names took longer than they cover, %d times", TAKEN, ATTEMPTS);
}

static void test_open_refuses_wrong_size_and_quarantines(void **state)
{
    struct fixture *f = *state;
    struct blobstore *bs = f->bs;
    struct err e = {0};
    struct digest d;
    char path[PATH_MAX];
    int fd = -1;
    uint64_t size = 0;
    size_t n_repaired;

    commit_real(bs, "hello world", &d);
    path_of_blob(f, &d, path);
    /* A recorded size other than the file's: not served, whatever the content. */
    assert_int_equal(open_fd(bs, &d, 12, &fd, &size, &e), -1);
    assert_int_equal(e.code, ERR_BLOB_CORRUPT);
    assert_int_equal(fd, -1);
    assert_int_equal(access(path, F_OK), -1);
    assert_int_equal(count_sub(f, "quarantine"), 1);
    assert_int_equal(count_quarantined(bs, &n_repaired), 1);
    assert_int_equal(n_repaired, 0);

    /* Truncated: never served short. */
    commit_real(bs, "hello world", &d);
    assert_int_equal(count_quarantined(bs, &n_repaired), 1);
    assert_int_equal(n_repaired, 1); /* the recommit repaired the first one */
    assert_int_equal(truncate(path, 5), 0);
    assert_int_equal(open_fd(bs, &d, 11, &fd, &size, &e), -1);
    assert_int_equal(e.code, ERR_BLOB_CORRUPT);
    assert_int_equal(count_sub(f, "quarantine"), 2);

    /* A re-push repairs, and the list survives a restart. */
    commit_real(bs, "hello world", &d);
    assert_blob_is(bs, &d, "hello world");
    bs->ops->close(bs);
    f->bs = bs = blobstore_fs_open(f->dir, &e);
    assert_non_null(bs);
    assert_int_equal(count_quarantined(bs, &n_repaired), 2);
    assert_int_equal(n_repaired, 2);
}

static void test_open_rehashes_written_copy(void **state)
{
    struct fixture *f = *state;
    struct blobstore *bs = f->bs;
    struct err e = {0};
    struct digest d;
    char path[PATH_MAX];
    struct stat st;
    int fd = -1;
    uint64_t size = 0;

    commit_real(bs, "hello world", &d);
    path_of_blob(f, &d, path);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mtim.tv_sec, 946684800); /* stamped as verified */

    /* Written to, same bytes: hashed, found intact, served and stamped again. */
    pwrite_at(path, 0, "h");
    assert_int_equal(stat(path, &st), 0);
    assert_true(st.st_mtim.tv_sec != 946684800);
    assert_blob_is(bs, &d, "hello world");
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mtim.tv_sec, 946684800);

    /* A flipped byte of the same size: caught at open, before a byte is served. */
    pwrite_at(path, 4, "O");
    assert_int_equal(open_fd(bs, &d, 11, &fd, &size, &e), -1);
    assert_int_equal(e.code, ERR_BLOB_CORRUPT);
    assert_int_equal(access(path, F_OK), -1);
    assert_int_equal(count_sub(f, "quarantine"), 1);
}

struct throttle_count {
    uint64_t bytes;
    unsigned calls;
    unsigned stop_after; /* 0: never */
};

static int on_chunk(void *arg, uint64_t bytes)
{
    struct throttle_count *t = arg;
    t->bytes += bytes;
    t->calls++;
    return t->stop_after && t->calls >= t->stop_after;
}

static void test_verify_finds_damage_that_keeps_the_stamp(void **state)
{
    struct fixture *f = *state;
    struct blobstore *bs = f->bs;
    struct err e = {0};
    struct digest d;
    char path[PATH_MAX];
    struct throttle_count t = {0};

    commit_real(bs, "hello world", &d);
    path_of_blob(f, &d, path);
    assert_int_equal(bs->ops->verify(bs, &d, 11, on_chunk, &t, &e), 0);
    assert_int_equal(t.bytes, 11);

    /* Bit rot: the bytes change, the stamp stays. Open cannot tell; the scrub can. */
    pwrite_at(path, 4, "O");
    restamp(path);
    assert_blob_is(bs, &d, "hellO world");
    memset(&t, 0, sizeof(t));
    assert_int_equal(bs->ops->verify(bs, &d, 11, on_chunk, &t, &e), -1);
    assert_int_equal(e.code, ERR_BLOB_CORRUPT);
    assert_int_equal(access(path, F_OK), -1);
    assert_int_equal(count_sub(f, "quarantine"), 1);
    assert_int_equal(bs->ops->verify(bs, &d, 11, NULL, NULL, &e), -1);
    assert_int_equal(e.code, ERR_BLOB_UNKNOWN);
}

static void test_verify_throttle_can_stop(void **state)
{
    struct fixture *f = *state;
    struct blobstore *bs = f->bs;
    struct err e = {0};
    struct digest d;
    char id[33];
    enum { SIZE = 3 * (1 << 20) + 5 };
    char *big = xmalloc(SIZE + 1);
    memset(big, 'x', SIZE);
    big[SIZE] = '\0';
    util_random_id(id);
    digest_of_buffer(DIGEST_SHA256, big, SIZE, &d);
    make_upload(bs, id, big);
    free(big);
    assert_int_equal(commit_id(bs, id, &d, &e), 0);

    struct throttle_count t = {.stop_after = 2};
    assert_int_equal(bs->ops->verify(bs, &d, SIZE, on_chunk, &t, &e), -1);
    assert_int_equal(e.code, ERR_UNAVAILABLE);
    assert_int_equal(t.calls, 2); /* read chunk by chunk, stopped between two */
    assert_int_equal(count_sub(f, "quarantine"), 0); /* an interrupted check finds nothing */
    memset(&t, 0, sizeof(t));
    assert_int_equal(bs->ops->verify(bs, &d, SIZE, on_chunk, &t, &e), 0);
    assert_int_equal(t.bytes, SIZE);
    assert_int_equal(t.calls, 4);
}

static void test_recommit_repairs_same_size_damage(void **state)
{
    struct fixture *f = *state;
    struct blobstore *bs = f->bs;
    struct digest d;
    char path[PATH_MAX];

    commit_real(bs, "hello world", &d);
    path_of_blob(f, &d, path);
    pwrite_at(path, 4, "O");
    restamp(path);
    /* The re-push's bytes were verified by the caller: they replace the damaged copy
     * without the old one being read. */
    commit_real(bs, "hello world", &d);
    assert_blob_is(bs, &d, "hello world");
}

static void assert_mode(const char *path, mode_t want)
{
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    if ((st.st_mode & 07777) != want)
        fail_msg("%s has mode %04o, want %04o", path, (unsigned)(st.st_mode & 07777),
                 (unsigned)want);
}

static void test_private_modes_whatever_the_umask(void **state)
{
    struct fixture *f = *state;
    struct err e = {0};
    struct digest d;
    char path[PATH_MAX];
    char id[33];

    /* An older store: 0755 directories. */
    f->bs->ops->close(f->bs);
    f->bs = NULL;
    snprintf(path, sizeof(path), "%s/blobs/sha256/ab", f->dir);
    assert_int_equal(mkdir(path, 0755), 0);
    assert_int_equal(chmod(path, 0755), 0);
    snprintf(path, sizeof(path), "%s/uploads", f->dir);
    assert_int_equal(chmod(path, 0755), 0);

    mode_t old = umask(0);
    f->bs = blobstore_fs_open(f->dir, &e);
    assert_non_null(f->bs);
    commit_real(f->bs, "private", &d);
    util_random_id(id);
    assert_int_equal(f->bs->ops->upload_create(f->bs, id, &e), 0);
    assert_int_equal(f->bs->ops->put(f->bs, &d, "private", 7, &e), 0);
    umask(old);

    static const char *const dirs[] = {"", "/blobs", "/blobs/sha256", "/blobs/sha512",
                                       "/blobs/sha256/ab", "/uploads", "/tmp", "/quarantine"};
    for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
        snprintf(path, sizeof(path), "%s%s", f->dir, dirs[i]);
        assert_mode(path, 0700);
    }
    path_of_blob(f, &d, path);
    assert_mode(path, 0600);
    snprintf(path, sizeof(path), "%s/blobs/sha256/%.2s", f->dir, strchr(d.str, ':') + 1);
    assert_mode(path, 0700);
    snprintf(path, sizeof(path), "%s/uploads/%s", f->dir, id);
    assert_mode(path, 0600);
}

int main(void)
{
    /* Expected failures are logged at error level, with their errno text. */
    log_setup(LOG_LEVEL_ERROR, "test");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_open_creates_layout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_upload_append_commit_open, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_answers_fd_at_range, setup, teardown),
        cmocka_unit_test_setup_teardown(test_upload_handle_verifies, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_by_spec, setup, teardown),
        cmocka_unit_test_setup_teardown(test_upload_create_twice_conflicts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_duplicate_commit_replaces_copy, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_commits_same_digest, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unknown_blob_and_upload, setup, teardown),
        cmocka_unit_test_setup_teardown(test_upload_remove, setup, teardown),
        cmocka_unit_test_setup_teardown(test_remove_all, setup, teardown),
        cmocka_unit_test_setup_teardown(test_put_and_remove, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_removes_leftover_tmp, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_ids_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_digests_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_each_upload, setup, teardown),
        cmocka_unit_test_setup_teardown(test_each_blob_lists_blobs_with_their_store_time, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_each_blob_and_remove_report_failures, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_open_fails_cleanly, setup, teardown),
        cmocka_unit_test_setup_teardown(test_quarantine_never_replaces_an_earlier_copy, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_open_refuses_wrong_size_and_quarantines, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_open_rehashes_written_copy, setup, teardown),
        cmocka_unit_test_setup_teardown(test_verify_finds_damage_that_keeps_the_stamp, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_verify_throttle_can_stop, setup, teardown),
        cmocka_unit_test_setup_teardown(test_recommit_repairs_same_size_damage, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_private_modes_whatever_the_umask, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
