/* Unit tests for util.c: number parsing edge cases, random id format, mkdir -p
 * and fsync of directories in a private temporary tree, allocators, clocks, and
 * that ASSERT really aborts in this build. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

/* cmocka.h needs the four headers above first. */
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "util.h"

static void test_parse_u64_table(void **state)
{
    static const struct {
        const char *s;
        int want;
        uint64_t value;
    } cases[] = {
        {"0", 0, 0},
        {"1", 0, 1},
        {"42", 0, 42},
        {"007", 0, 7},
        {"4294967296", 0, 4294967296ULL},
        {"18446744073709551615", 0, UINT64_MAX},
        {"18446744073709551616", -1, 0},
        {"99999999999999999999", -1, 0},
        {"184467440737095516150", -1, 0},
        {"", -1, 0},
        {"-1", -1, 0},
        {"+1", -1, 0},
        {" 1", -1, 0},
        {"1 ", -1, 0},
        {"1a", -1, 0},
        {"0x10", -1, 0},
        {"1.0", -1, 0},
        {"1e3", -1, 0},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint64_t v = 777;
        int got = util_parse_u64(cases[i].s, strlen(cases[i].s), &v);
        if (got != cases[i].want)
            fail_msg("util_parse_u64(\"%s\") = %d, want %d", cases[i].s, got, cases[i].want);
        if (got == 0 && v != cases[i].value)
            fail_msg("util_parse_u64(\"%s\") value %llu", cases[i].s, (unsigned long long)v);
        if (got != 0 && v != 777)
            fail_msg("util_parse_u64(\"%s\") wrote its output on failure", cases[i].s);
    }
}

static void test_parse_u64_uses_length(void **state)
{
    uint64_t v = 0;
    (void)state;
    assert_int_equal(util_parse_u64("12abc", 2, &v), 0);
    assert_int_equal(v, 12);
    assert_int_equal(util_parse_u64("12abc", 3, &v), -1);
    assert_int_equal(util_parse_u64("5", 0, &v), -1);
    /* An embedded NUL is not a digit. */
    assert_int_equal(util_parse_u64("1\0002", 3, &v), -1);
}

static void test_random_id(void **state)
{
    char a[33];
    char b[33];
    (void)state;
    memset(a, 'X', sizeof(a));
    util_random_id(a);
    util_random_id(b);
    assert_int_equal(strlen(a), 32);
    assert_int_equal(a[32], '\0');
    for (int i = 0; i < 32; i++) {
        if (!((a[i] >= '0' && a[i] <= '9') || (a[i] >= 'a' && a[i] <= 'f')))
            fail_msg("id \"%s\" has a non-hex character", a);
    }
    /* 128 random bits: a collision means the randomness is broken. */
    assert_string_not_equal(a, b);
}

static int setup_tmpdir(void **state)
{
    char *dir = strdup("/tmp/meridian-test-util-XXXXXX");
    if (dir == NULL || mkdtemp(dir) == NULL) {
        free(dir);
        return -1;
    }
    *state = dir;
    return 0;
}

static int on_remove(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int teardown_tmpdir(void **state)
{
    /* Depth-first, not following symlinks: removes only our own mkdtemp tree. */
    int rc = nftw(*state, on_remove, 16, FTW_DEPTH | FTW_PHYS);
    free(*state);
    return rc == 0 ? 0 : -1;
}

static bool is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static void test_mkdirs(void **state)
{
    const char *root = *state;
    char path[512];
    struct stat st;

    snprintf(path, sizeof(path), "%s/a/b/c", root);
    assert_int_equal(util_mkdirs(path), 0);
    assert_true(is_dir(path));
    assert_int_equal(stat(path, &st), 0);
    mode_t mask = umask(0);
    umask(mask);
    assert_int_equal(st.st_mode & 0777, 0700 & ~mask);
    /* Existing directories are fine. */
    assert_int_equal(util_mkdirs(path), 0);
    /* A trailing slash is fine. */
    snprintf(path, sizeof(path), "%s/a/d/", root);
    assert_int_equal(util_mkdirs(path), 0);
    snprintf(path, sizeof(path), "%s/a/d", root);
    assert_true(is_dir(path));

    /* A regular file in the way fails with ENOTDIR. */
    snprintf(path, sizeof(path), "%s/file", root);
    int fd = open(path, O_CREAT | O_WRONLY, 0644);
    assert_true(fd >= 0);
    close(fd);
    snprintf(path, sizeof(path), "%s/file/sub", root);
    errno = 0;
    assert_int_equal(util_mkdirs(path), -1);
    assert_int_equal(errno, ENOTDIR);

    errno = 0;
    assert_int_equal(util_mkdirs(""), -1);
    assert_int_equal(errno, ENAMETOOLONG);
    char *huge = malloc(5000);
    assert_non_null(huge);
    memset(huge, 'a', 4999);
    huge[4999] = '\0';
    assert_int_equal(util_mkdirs(huge), -1);
    assert_int_equal(errno, ENAMETOOLONG);
    free(huge);
}

static void test_fsync_dir(void **state)
{
    const char *root = *state;
    char path[512];
    assert_int_equal(util_fsync_dir(root), 0);
    snprintf(path, sizeof(path), "%s/missing", root);
    errno = 0;
    assert_int_equal(util_fsync_dir(path), -1);
    assert_int_equal(errno, ENOENT);
}

static void test_allocators(void **state)
{
    (void)state;
    char *s = xstrdup("hello");
    assert_string_equal(s, "hello");
    free(s);
    s = xstrndup("hello world", 5);
    assert_string_equal(s, "hello");
    free(s);
    unsigned char *z = xcalloc(16, 4);
    for (int i = 0; i < 64; i++)
        assert_int_equal(z[i], 0);
    z = xrealloc(z, 128);
    assert_int_equal(z[63], 0);
    free(z);
    /* Zero-size requests still return a usable pointer. */
    void *p = xmalloc(0);
    assert_non_null(p);
    free(p);
    char *q = NULL;
    q = xstrdup("x");
    FREE_AND_NULL(q);
    assert_null(q);
}

static void test_clocks(void **state)
{
    (void)state;
    /* After 2020-01-01 and consistent between the two wall clocks. */
    int64_t ms = util_now_ms();
    assert_true(ms > 1577836800000LL);
    int64_t s = util_now_s();
    assert_true(s >= ms / 1000 && s <= ms / 1000 + 5);
    int64_t a = util_mono_ns();
    int64_t b = util_mono_ns();
    assert_true(b >= a);
}

static void test_assert_aborts(void **state)
{
    (void)state;
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        /* Silence the child's diagnostic; only its fate matters. */
        if (freopen("/dev/null", "w", stderr) == NULL)
            _exit(3);
        ASSERT(1 + 1 == 2);
        AN(state);
        AZ(0);
        ASSERT(1 + 1 == 3);
        _exit(0);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status));
    assert_int_equal(WTERMSIG(status), SIGABRT);
}

static void test_addr_group_table(void **state)
{
    (void)state;
    static const char *const cases[][2] = {
        {"192.0.2.7", "192.0.2.7"},
        {"127.0.0.1", "127.0.0.1"},
        {"2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"},
        {"2001:db8:1:2::ffff", "2001:db8:1:2::/64"},
        {"::1", "::/64"},
        {"fe80::1", "fe80::/64"},
        {"::ffff:192.0.2.9", "192.0.2.9"},
        {"", ""},
        {"not:an:address", "not:an:address"},
    };
    char out[64];
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        util_addr_group(cases[i][0], out, sizeof(out));
        assert_string_equal(out, cases[i][1]);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_u64_table),
        cmocka_unit_test(test_addr_group_table),
        cmocka_unit_test(test_parse_u64_uses_length),
        cmocka_unit_test(test_random_id),
        cmocka_unit_test_setup_teardown(test_mkdirs, setup_tmpdir, teardown_tmpdir),
        cmocka_unit_test_setup_teardown(test_fsync_dir, setup_tmpdir, teardown_tmpdir),
        cmocka_unit_test(test_allocators),
        cmocka_unit_test(test_clocks),
        cmocka_unit_test(test_assert_aborts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
