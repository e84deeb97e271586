/* The volume store: the choice of volumes (distinct, of the class, spread across zones,
 * keeping copies in place), and over real directories: place() makes and removes copies,
 * reads rotate over the copies, a deleted or damaged copy is served from a sibling and
 * repaired by the next place() or by verify. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "blobstore_volumes.h"
#include "digest.h"
#include "util.h"

static const struct blobstore_volume five[] = {
    {"a", "standard", "z1"}, {"b", "standard", "z1"}, {"c", "standard", "z2"},
    {"d", "premium", "z1"},  {"e", "standard", "z3"},
};

static size_t count(const bool *b, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        k += b[i];
    return k;
}

static void test_choose_distinct_class_zones(void **state)
{
    (void)state;
    bool has[5] = {false}, chosen[5];
    /* Three standard copies: one per zone (a, c, e), not a and b (same zone). */
    assert_int_equal(volumes_choose(five, 5, has, "standard", 3, chosen), 3);
    assert_true(chosen[0] && chosen[2] && chosen[4]);
    assert_false(chosen[1] || chosen[3]);
    /* Four: the fourth must share a zone, and is never the premium one. */
    assert_int_equal(volumes_choose(five, 5, has, "standard", 4, chosen), 4);
    assert_false(chosen[3]);
    /* More than the class has: as many as there are. */
    assert_int_equal(volumes_choose(five, 5, has, "standard", 9, chosen), 4);
    assert_int_equal(volumes_choose(five, 5, has, "premium", 2, chosen), 1);
    assert_true(chosen[3]);
    assert_int_equal(volumes_choose(five, 5, has, "archive", 1, chosen), 0);
    assert_int_equal(count(chosen, 5), 0);
}

static void test_choose_keeps_copies(void **state)
{
    (void)state;
    bool chosen[5];
    /* A copy on b (zone z1) stays rather than a new one on a (same zone). */
    bool has_b[5] = {false, true, false, false, false};
    assert_int_equal(volumes_choose(five, 5, has_b, "standard", 2, chosen), 2);
    assert_true(chosen[1]);
    assert_false(chosen[0]);
    /* One copy of any class: the one there is (d), whatever its class. */
    bool has_d[5] = {false, false, false, true, false};
    assert_int_equal(volumes_choose(five, 5, has_d, NULL, 1, chosen), 1);
    assert_true(chosen[3]);
    /* Zone spread before keeping: copies on a and b (both z1), two asked: a and c. */
    bool has_ab[5] = {true, true, false, false, false};
    assert_int_equal(volumes_choose(five, 5, has_ab, "standard", 2, chosen), 2);
    assert_true(chosen[0] && chosen[2]);
    /* Volumes without a zone are each their own. */
    static const struct blobstore_volume nozone[] = {
        {"a", "standard", ""}, {"b", "standard", ""}, {"c", "standard", ""}};
    bool none[3] = {false};
    bool ch3[3];
    assert_int_equal(volumes_choose(nozone, 3, none, "standard", 3, ch3), 3);
}

static void test_parse_spec(void **state)
{
    (void)state;
    char *n, *p, *c, *z;
    struct err e = {0};
    assert_int_equal(volumes_parse_spec("v1=/tmp/x,class=premium,zone=az1", &n, &p, &c, &z, &e),
                     0);
    assert_string_equal(n, "v1");
    assert_string_equal(p, "/tmp/x");
    assert_string_equal(c, "premium");
    assert_string_equal(z, "az1");
    free(n), free(p), free(c), free(z);
    assert_int_equal(volumes_parse_spec("v1=/tmp/x", &n, &p, &c, &z, &e), 0);
    assert_string_equal(c, "standard");
    assert_string_equal(z, "");
    free(n), free(p), free(c), free(z);
    static const char *const bad[] = {"/tmp/x", "=/tmp/x", "v1=", "v1=/x,colour=red",
                                      "V1=/x", "v1=/x,class=Fast", "v1=/x,class=a,class=b"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct err be = {0};
        assert_int_equal(volumes_parse_spec(bad[i], &n, &p, &c, &z, &be), -1);
        assert_int_equal(be.code, ERR_BAD_REQUEST);
    }
}

/* Over three directories ----------------------------------------------------------- */

static char root[] = "/tmp/meridian-test-volumes-XXXXXX";

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static void blob_path(int vol, const struct digest *d, char *out, size_t n)
{
    const char *hex = d->str + 7;
    snprintf(out, n, "%s/v%d/blobs/sha256/%.2s/%s", root, vol, hex, hex);
}

static bool exists(int vol, const struct digest *d)
{
    char path[512];
    blob_path(vol, d, path, sizeof(path));
    return access(path, F_OK) == 0;
}

static struct blobstore *open_three(void)
{
    char s[3][300];
    char *specs[3];
    for (int i = 0; i < 3; i++) {
        snprintf(s[i], sizeof(s[i]), "v%d=%s/v%d,zone=z%d", i, root, i, i);
        specs[i] = s[i];
    }
    struct err e = {0};
    struct blobstore *bs = blobstore_volumes_open(specs, 3, &e);
    assert_non_null(bs);
    return bs;
}

static void read_all(struct blobstore *bs, const struct digest *d, uint64_t len, char *out)
{
    struct blobstore_body body;
    struct err e = {0};
    assert_int_equal(bs->ops->open(bs, d, len, 0, len, 0, &body, &e), 0);
    assert_int_equal(body.kind, BLOBSTORE_BODY_FD);
    assert_int_equal(pread(body.fd, out, len, (off_t)body.fd_offset), (ssize_t)len);
    blobstore_body_close(&body);
}

static void test_store_copies(void **state)
{
    (void)state;
    assert_non_null(mkdtemp(root));
    struct blobstore *bs = open_three();
    static const char data[] = "the bytes of one layer, copied to three volumes";
    uint64_t len = sizeof(data) - 1;
    struct digest d;
    struct err e = {0};
    digest_of_buffer(DIGEST_SHA256, data, len, &d);
    assert_int_equal(bs->ops->put(bs, &d, data, len, &e), 0);
    assert_true(exists(0, &d));
    assert_int_equal(bs->ops->copies(bs, &d, "standard"), 1);

    unsigned now = 0;
    assert_int_equal(bs->ops->place(bs, &d, len, 3, "standard", &now, &e), 0);
    assert_int_equal(now, 3);
    assert_true(exists(0, &d) && exists(1, &d) && exists(2, &d));

    /* Reads rotate: every volume's copy serves one of three reads (its atime-free
     * witness: delete two copies and the read still works from the third). */
    char got[128];
    for (int i = 0; i < 3; i++) {
        read_all(bs, &d, len, got);
        assert_memory_equal(got, data, len);
    }
    char path[512];
    blob_path(1, &d, path, sizeof(path));
    assert_int_equal(unlink(path), 0);
    /* Damage the copy on v2: same size, other bytes, a new mtime. */
    blob_path(2, &d, path, sizeof(path));
    int fd = open(path, O_WRONLY);
    assert_true(fd >= 0);
    assert_int_equal(pwrite(fd, "X", 1, 0), 1);
    close(fd);
    for (int i = 0; i < 3; i++) {
        read_all(bs, &d, len, got);
        assert_memory_equal(got, data, len);
    }
    assert_false(exists(1, &d));
    assert_false(exists(2, &d)); /* set aside on the read that found it bad */
    assert_int_equal(bs->ops->copies(bs, &d, NULL), 1);
    /* The next place() repairs both from the good sibling. */
    assert_int_equal(bs->ops->place(bs, &d, len, 3, "standard", &now, &e), 0);
    assert_int_equal(now, 3);
    assert_true(exists(1, &d) && exists(2, &d));

    /* verify repairs a copy damaged without a new mtime (the scrub's case). */
    blob_path(0, &d, path, sizeof(path));
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    fd = open(path, O_WRONLY);
    assert_int_equal(pwrite(fd, "Y", 1, 3), 1);
    close(fd);
    struct timespec times[2] = {st.st_atim, st.st_mtim};
    assert_int_equal(utimensat(AT_FDCWD, path, times, 0), 0);
    assert_int_equal(bs->ops->verify(bs, &d, len, NULL, NULL, &e), 0);
    assert_int_equal(bs->ops->copies(bs, &d, NULL), 3);
    read_all(bs, &d, len, got);
    assert_memory_equal(got, data, len);

    /* Lowering: one copy left, the others removed. */
    assert_int_equal(bs->ops->place(bs, &d, len, 1, "standard", &now, &e), 0);
    assert_int_equal(now, 1);
    assert_int_equal(bs->ops->copies(bs, &d, NULL), 1);
    assert_int_equal(bs->ops->remove(bs, &d, NULL), 0);
    assert_int_equal(bs->ops->copies(bs, &d, NULL), 0);
    assert_int_equal(bs->ops->place(bs, &d, len, 1, "standard", &now, &e), -1);
    assert_int_equal(e.code, ERR_BLOB_UNKNOWN);
    bs->ops->close(bs);
    nftw(root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static void read_stream(struct blobstore *bs, const struct digest *d, uint64_t size,
                        uint64_t off, uint64_t len, char *out)
{
    struct blobstore_body body;
    struct err e = {0};
    assert_int_equal(bs->ops->open(bs, d, size, off, len, 0, &body, &e), 0);
    assert_int_equal(body.kind, BLOBSTORE_BODY_STREAM);
    uint64_t got = 0;
    for (long n; (n = body.read(body.arg, out + got, 100000)) > 0;)
        got += (uint64_t)n;
    assert_int_equal(got, len);
    blobstore_body_close(&body);
}

/* A large read is striped over the copies: the bytes are the blob's, whole or ranged, and
 * with a copy damaged the others serve it. */
static void test_striped_reads(void **state)
{
    (void)state;
    assert_non_null(mkdtemp(strcpy(root, "/tmp/meridian-test-volumes-XXXXXX")));
    struct blobstore *bs = open_three();
    uint64_t size = (9u << 20) + 12345;
    char *data = malloc(size), *got = malloc(size);
    for (uint64_t i = 0; i < size; i++)
        data[i] = (char)(i * 2654435761u >> 13);
    struct digest d;
    struct err e = {0};
    digest_of_buffer(DIGEST_SHA256, data, size, &d);
    assert_int_equal(bs->ops->put(bs, &d, data, size, &e), 0);
    unsigned now;
    assert_int_equal(bs->ops->place(bs, &d, size, 3, "standard", &now, &e), 0);
    read_stream(bs, &d, size, 0, size, got);
    assert_memory_equal(got, data, size);
    read_stream(bs, &d, size, (1u << 20) - 10, 8u << 20, got);
    assert_memory_equal(got, data + (1u << 20) - 10, 8u << 20);
    char path[512];
    blob_path(1, &d, path, sizeof(path));
    int fd = open(path, O_WRONLY);
    assert_int_equal(pwrite(fd, "Z", 1, 5u << 20), 1); /* in the stripe v1 would serve */
    close(fd);
    read_stream(bs, &d, size, 0, size, got);
    assert_memory_equal(got, data, size);
    assert_false(exists(1, &d));
    free(data);
    free(got);
    bs->ops->close(bs);
    nftw(root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_choose_distinct_class_zones),
        cmocka_unit_test(test_choose_keeps_copies),
        cmocka_unit_test(test_parse_spec),
        cmocka_unit_test(test_store_copies),
        cmocka_unit_test(test_striped_reads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
