/* Replays every checked-in fuzz seed (tests/fuzz/corpus/<target>/) through the
 * same entry functions the libFuzzer targets use, compiled in with -DFUZZ_REPLAY,
 * so the corpora and the fuzz properties are exercised by every `meson test`
 * run, without clang. The corpus root comes from $FUZZ_CORPUS_DIR or argv[1]. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

/* cmocka.h needs the four headers above first. */
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fuzz.h"

typedef int fuzz_one_f(const uint8_t *data, size_t size);

struct target {
    const char *name;
    fuzz_one_f *one;
};

static const char *corpus_root;

/* Reads a whole (small) seed file; NULL on failure. */
static uint8_t *read_all(const char *path, size_t *len)
{
    struct stat st;
    uint8_t *data = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    if (fstat(fd, &st) != 0 || st.st_size < 0 || st.st_size > (1 << 24))
        goto fail;
    data = malloc((size_t)st.st_size + 1);
    if (data == NULL)
        goto fail;
    size_t off = 0;
    while (off < (size_t)st.st_size) {
        ssize_t n = read(fd, data + off, (size_t)st.st_size - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            goto fail;
        off += (size_t)n;
    }
    close(fd);
    *len = off;
    return data;
fail:
    free(data);
    close(fd);
    return NULL;
}

static void replay(void **state)
{
    const struct target *t = *state;
    char dir_path[4096];
    char path[4096 + 256];
    size_t n_files = 0;

    snprintf(dir_path, sizeof(dir_path), "%s/%s", corpus_root, t->name);
    DIR *dir = opendir(dir_path);
    if (dir == NULL)
        fail_msg("cannot open corpus directory %s", dir_path);
    struct dirent *de;
    while ((de = readdir(dir)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir_path, de->d_name);
        size_t len = 0;
        uint8_t *data = read_all(path, &len);
        if (data == NULL)
            fail_msg("cannot read seed %s", path);
        /* A property violation aborts inside; returning means the seed passed. */
        assert_int_equal(t->one(data, len), 0);
        free(data);
        n_files++;
    }
    closedir(dir);
    if (n_files == 0)
        fail_msg("corpus directory %s holds no seeds", dir_path);
    print_message("replayed %zu %s seeds\n", n_files, t->name);
}

static struct target targets[] = {
    {"name", fuzz_name_one},
    {"digest", fuzz_digest_one},
    {"range", fuzz_range_one},
    {"manifest", fuzz_manifest_one},
    {"auth_header", fuzz_auth_header_one},
    {"token", fuzz_token_one},
    {"request_head", fuzz_request_head_one},
};

int main(int argc, char **argv)
{
    corpus_root = argc > 1 ? argv[1] : getenv("FUZZ_CORPUS_DIR");
    if (corpus_root == NULL) {
        fprintf(stderr, "usage: %s <corpus-dir> (or set FUZZ_CORPUS_DIR)\n", argv[0]);
        return 1;
    }
    /* Spelled out (not cmocka_unit_test_prestate) to give each target its own name. */
    const struct CMUnitTest tests[] = {
        {"replay_name", replay, NULL, NULL, &targets[0]},
        {"replay_digest", replay, NULL, NULL, &targets[1]},
        {"replay_range", replay, NULL, NULL, &targets[2]},
        {"replay_manifest", replay, NULL, NULL, &targets[3]},
        {"replay_auth_header", replay, NULL, NULL, &targets[4]},
        {"replay_token", replay, NULL, NULL, &targets[5]},
        {"replay_request_head", replay, NULL, NULL, &targets[6]},
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
