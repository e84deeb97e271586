/* Filesystem blobstore: content-addressed blobs, upload-session files and temporary
 * files under one root directory. It stores bytes only; digests are verified by the
 * caller and metadata lives in the metastore.
 * Invariant: a blob path only ever names a complete, fsync'd file, linked into place
 * atomically and followed by an fsync of its directory before success is returned. */
#include "blobstore.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "metrics.h"
#include "util.h"

#define FS_STORE_MAGIC 0x62736673u /* "bsfs" */
#define FS_ID_LEN 32
/* Room left in PATH_MAX for "/blobs/sha512/xx/" + 128 hex and friends. */
#define FS_ROOT_MAX (PATH_MAX - 256)

struct fs_store {
    struct blobstore base; /* first: the ops table dispatches on &base */
    unsigned magic;
    char *dir;
};

static const struct blobstore_ops fs_ops;

static struct fs_store *fs_of(struct blobstore *bs)
{
    AN(bs);
    struct fs_store *fs = (struct fs_store *)bs;
    ASSERT(fs->magic == FS_STORE_MAGIC);
    return fs;
}

/* Validation -------------------------------------------------------------- */

static bool is_lower_hex(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        bool is_digit = s[i] >= '0' && s[i] <= '9';
        bool is_af = s[i] >= 'a' && s[i] <= 'f';
        if (!is_digit && !is_af)
            return false;
    }
    return true;
}

/* An upload or temporary file id: exactly 32 lowercase hex chars, so it can never
 * name anything outside its directory. */
static bool is_valid_id(const char *id)
{
    return id != NULL && strnlen(id, FS_ID_LEN + 1) == FS_ID_LEN && is_lower_hex(id, FS_ID_LEN);
}

/* The algorithm directory name and hex part of d, or NULL when d is not a canonical
 * "<alg>:<lowercase hex of the right length>". Re-checked here rather than trusted,
 * because the hex part becomes a file name. */
static const char *digest_parts(const struct digest *d, const char **alg)
{
    size_t hex_len;
    if (d == NULL)
        return NULL;
    switch (d->alg) {
    case DIGEST_SHA256:
        *alg = "sha256";
        hex_len = 64;
        break;
    case DIGEST_SHA512:
        *alg = "sha512";
        hex_len = 128;
        break;
    default:
        return NULL;
    }
    size_t alg_len = strlen(*alg);
    if (strnlen(d->str, sizeof(d->str)) != alg_len + 1 + hex_len)
        return NULL;
    if (memcmp(d->str, *alg, alg_len) != 0 || d->str[alg_len] != ':')
        return NULL;
    const char *hex = d->str + alg_len + 1;
    return is_lower_hex(hex, hex_len) ? hex : NULL;
}

/* Layout ------------------------------------------------------------------ */

enum fs_path {
    FS_PATH_ROOT,
    FS_PATH_BLOBS,    /* DIR/blobs */
    FS_PATH_ALG_DIR,  /* DIR/blobs/<alg> */
    FS_PATH_BLOB_DIR, /* DIR/blobs/<alg>/<hex[0..2]> */
    FS_PATH_BLOB,     /* DIR/blobs/<alg>/<hex[0..2]>/<hex> */
    FS_PATH_UPLOADS,  /* DIR/uploads */
    FS_PATH_UPLOAD,   /* DIR/uploads/<id> */
    FS_PATH_TMP,      /* DIR/tmp */
    FS_PATH_TMP_FILE, /* DIR/tmp/<id> */
};

/* The one function that knows the on-disk layout:
 *
 *   DIR/
 *   +-- blobs/
 *   |   +-- sha256/
 *   |   |   +-- ab/
 *   |   |       +-- abcdef0123...     committed blob, immutable, named by its hex digest
 *   |   +-- sha512/...
 *   +-- uploads/
 *   |   +-- <id>                      bytes of an in-progress upload session (32 hex)
 *   +-- tmp/
 *       +-- <random id>               put() writes here first; leftovers removed at open
 *
 * Writes out[PATH_MAX]. `id` is used by FS_PATH_UPLOAD and FS_PATH_TMP_FILE, `d` by the
 * blob kinds. Returns -1 if the id or digest is malformed (nothing may escape DIR). */
static int fs_path(const struct fs_store *fs, enum fs_path kind, const char *id,
                   const struct digest *d, char *out)
{
    const char *alg = NULL;
    const char *hex = NULL;
    int n = 0;

    if (kind == FS_PATH_ALG_DIR || kind == FS_PATH_BLOB_DIR || kind == FS_PATH_BLOB) {
        hex = digest_parts(d, &alg);
        if (hex == NULL)
            return -1;
    }
    if ((kind == FS_PATH_UPLOAD || kind == FS_PATH_TMP_FILE) && !is_valid_id(id))
        return -1;

    switch (kind) {
    case FS_PATH_ROOT:
        n = snprintf(out, PATH_MAX, "%s", fs->dir);
        break;
    case FS_PATH_BLOBS:
        n = snprintf(out, PATH_MAX, "%s/blobs", fs->dir);
        break;
    case FS_PATH_ALG_DIR:
        n = snprintf(out, PATH_MAX, "%s/blobs/%s", fs->dir, alg);
        break;
    case FS_PATH_BLOB_DIR:
        n = snprintf(out, PATH_MAX, "%s/blobs/%s/%.2s", fs->dir, alg, hex);
        break;
    case FS_PATH_BLOB:
        n = snprintf(out, PATH_MAX, "%s/blobs/%s/%.2s/%s", fs->dir, alg, hex, hex);
        break;
    case FS_PATH_UPLOADS:
        n = snprintf(out, PATH_MAX, "%s/uploads", fs->dir);
        break;
    case FS_PATH_UPLOAD:
        n = snprintf(out, PATH_MAX, "%s/uploads/%s", fs->dir, id);
        break;
    case FS_PATH_TMP:
        n = snprintf(out, PATH_MAX, "%s/tmp", fs->dir);
        break;
    case FS_PATH_TMP_FILE:
        n = snprintf(out, PATH_MAX, "%s/tmp/%s", fs->dir, id);
        break;
    }
    /* The root's length is capped at open, so every path fits. */
    ASSERT(n > 0 && n < PATH_MAX);
    return 0;
}

/* Helpers ----------------------------------------------------------------- */

/* Logs "failed to <verb> <path>: <errno text>" and sets e to ERR_NO_SPACE or ERR_IO
 * with the generic message. Returns -1; errno is preserved. */
static int fail_io(struct err *e, const char *verb, const char *path)
{
    int saved = errno;
    char text[128];
    log_error("blobstore", "failed to %s %s: %s", verb, path,
              strerror_r(saved, text, sizeof(text)));
    errno = saved;
    if (saved == ENOSPC || saved == EDQUOT)
        return err_set(e, ERR_NO_SPACE, NULL);
    return err_set(e, ERR_IO, NULL);
}

/* mkdir that tolerates an existing directory; when it does create one, the parent is
 * fsync'd so the new entry survives a crash. */
/* Every fsync that commits a blob is counted (meridian_blob_fsyncs_total). */
static int fsync_counted(int fd)
{
    int rc = fsync(fd);
    if (rc == 0)
        metrics_count_fsync();
    return rc;
}

static int fsync_dir_counted(const char *path)
{
    int rc = util_fsync_dir(path);
    if (rc == 0)
        metrics_count_fsync();
    return rc;
}

static int ensure_dir(const char *path, const char *parent, struct err *e)
{
    if (mkdir(path, 0755) != 0) {
        if (errno == EEXIST)
            return 0;
        return fail_io(e, "create directory", path);
    }
    if (fsync_dir_counted(parent) != 0)
        return fail_io(e, "fsync directory", parent);
    return 0;
}

static int write_all(int fd, const unsigned char *p, uint64_t len)
{
    while (len > 0) {
        size_t chunk = len > (1u << 30) ? (1u << 30) : (size_t)len;
        ssize_t w = write(fd, p, chunk);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += w;
        len -= (uint64_t)w;
    }
    return 0;
}

/* Publishes src (a complete, fsync'd file inside this store) as blob d.
 *
 * link(2) rather than rename(2): link never replaces an existing name, so of two
 * concurrent commits of the same digest exactly one creates the blob and the other
 * sees EEXIST and drops its copy; readers never see the inode change under them.
 * Either way the blob directory is fsync'd before returning, so success means the
 * blob's name is durable even if another thread linked it an instant ago. */
static int install(struct fs_store *fs, const char *src, const struct digest *d, struct err *e)
{
    char blobs[PATH_MAX];
    char alg_dir[PATH_MAX];
    char blob_dir[PATH_MAX];
    char dst[PATH_MAX];

    if (fs_path(fs, FS_PATH_BLOB, NULL, d, dst) != 0)
        return err_set(e, ERR_DIGEST_INVALID, NULL);
    AZ(fs_path(fs, FS_PATH_BLOBS, NULL, d, blobs));
    AZ(fs_path(fs, FS_PATH_ALG_DIR, NULL, d, alg_dir));
    AZ(fs_path(fs, FS_PATH_BLOB_DIR, NULL, d, blob_dir));

    if (ensure_dir(alg_dir, blobs, e) != 0 || ensure_dir(blob_dir, alg_dir, e) != 0)
        return -1;

    bool is_moved = false;
    if (link(src, dst) != 0) {
        if (errno == EEXIST) {
            log_debug("blobstore", "blob %s already stored; dropping the duplicate", d->str);
        } else if (errno == EPERM || errno == EOPNOTSUPP || errno == ENOSYS) {
            /* A filesystem without hard links: rename may replace an existing copy of
             * the same verified bytes, which is harmless. */
            if (rename(src, dst) != 0)
                return fail_io(e, "rename into place", dst);
            is_moved = true;
        } else {
            return fail_io(e, "link into place", dst);
        }
    }
    if (!is_moved && unlink(src) != 0 && errno != ENOENT) {
        /* The blob is in place; a stray source file is only wasted space. */
        char text[128];
        log_warn("blobstore", "failed to remove %s: %s", src,
                 strerror_r(errno, text, sizeof(text)));
    }
    if (fsync_dir_counted(blob_dir) != 0)
        return fail_io(e, "fsync directory", blob_dir);
    return 0;
}

/* Upload files ------------------------------------------------------------ */

static int fs_upload_create(struct blobstore *bs, const char *id, struct err *e)
{
    struct fs_store *fs = fs_of(bs);
    char path[PATH_MAX];
    char dir[PATH_MAX];

    if (fs_path(fs, FS_PATH_UPLOAD, id, NULL, path) != 0)
        return err_set(e, ERR_BLOB_UPLOAD_UNKNOWN, NULL);
    AZ(fs_path(fs, FS_PATH_UPLOADS, NULL, NULL, dir));

    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) {
        if (errno == EEXIST)
            return err_set(e, ERR_CONFLICT, "upload session already exists");
        return fail_io(e, "create upload", path);
    }
    close(fd);
    /* Not fsync'd: an upload session is not a durable promise (its bytes are made
     * durable only when the blob is committed). After a crash a lost session answers
     * BLOB_UPLOAD_UNKNOWN and the client starts the upload again. */
    (void)dir;
    return 0;
}

static int fs_upload_open(struct blobstore *bs, const char *id, uint64_t *size, struct err *e)
{
    struct fs_store *fs = fs_of(bs);
    char path[PATH_MAX];
    struct stat st;

    if (fs_path(fs, FS_PATH_UPLOAD, id, NULL, path) != 0)
        return err_set(e, ERR_BLOB_UPLOAD_UNKNOWN, NULL);
    /* Read-write so the caller can hash (pread) and truncate a failed chunk; O_APPEND
     * so every write lands at the end whatever the file offset. */
    int fd = open(path, O_RDWR | O_APPEND | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT)
            return err_set(e, ERR_BLOB_UPLOAD_UNKNOWN, NULL);
        return fail_io(e, "open upload", path);
    }
    if (fstat(fd, &st) != 0) {
        fail_io(e, "stat upload", path);
        close(fd);
        return -1;
    }
    *size = (uint64_t)st.st_size;
    return fd;
}

static int fs_upload_commit(struct blobstore *bs, const char *id, const struct digest *d,
                            struct err *e)
{
    struct fs_store *fs = fs_of(bs);
    char path[PATH_MAX];
    const char *alg;

    if (fs_path(fs, FS_PATH_UPLOAD, id, NULL, path) != 0)
        return err_set(e, ERR_BLOB_UPLOAD_UNKNOWN, NULL);
    if (digest_parts(d, &alg) == NULL)
        return err_set(e, ERR_DIGEST_INVALID, NULL);

    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT)
            return err_set(e, ERR_BLOB_UPLOAD_UNKNOWN, NULL);
        return fail_io(e, "open upload", path);
    }
    if (fsync_counted(fd) != 0) {
        fail_io(e, "fsync upload", path);
        close(fd);
        return -1;
    }
    close(fd);
    return install(fs, path, d, e);
}

static void fs_upload_remove(struct blobstore *bs, const char *id)
{
    struct fs_store *fs = fs_of(bs);
    char path[PATH_MAX];

    if (fs_path(fs, FS_PATH_UPLOAD, id, NULL, path) != 0) {
        log_warn("blobstore", "refusing to remove upload with malformed id");
        return;
    }
    if (unlink(path) != 0 && errno != ENOENT) {
        char text[128];
        log_error("blobstore", "failed to remove upload %s: %s", path,
                  strerror_r(errno, text, sizeof(text)));
    }
}

/* Blobs ------------------------------------------------------------------- */

static int fs_open(struct blobstore *bs, const struct digest *d, int *fd_out, uint64_t *size,
                   struct err *e)
{
    struct fs_store *fs = fs_of(bs);
    char path[PATH_MAX];
    struct stat st;

    *fd_out = -1;
    if (fs_path(fs, FS_PATH_BLOB, NULL, d, path) != 0)
        return err_set(e, ERR_DIGEST_INVALID, NULL);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT)
            return err_set(e, ERR_BLOB_UNKNOWN, NULL);
        return fail_io(e, "open blob", path);
    }
    if (fstat(fd, &st) != 0) {
        fail_io(e, "stat blob", path);
        close(fd);
        return -1;
    }
    *fd_out = fd;
    *size = (uint64_t)st.st_size;
    return 0;
}

static int fs_stat(struct blobstore *bs, const struct digest *d, uint64_t *size, struct err *e)
{
    struct fs_store *fs = fs_of(bs);
    char path[PATH_MAX];
    struct stat st;

    if (fs_path(fs, FS_PATH_BLOB, NULL, d, path) != 0)
        return err_set(e, ERR_DIGEST_INVALID, NULL);
    if (stat(path, &st) != 0) {
        if (errno == ENOENT)
            return err_set(e, ERR_BLOB_UNKNOWN, NULL);
        return fail_io(e, "stat blob", path);
    }
    *size = (uint64_t)st.st_size;
    return 0;
}

/* XXX: the unlink is not followed by a directory fsync; a blob removed just before a
 * crash may reappear, which is harmless (its metadata is already gone) and the next
 * garbage collection removes it again. */
static void fs_remove(struct blobstore *bs, const struct digest *d)
{
    struct fs_store *fs = fs_of(bs);
    char path[PATH_MAX];

    if (fs_path(fs, FS_PATH_BLOB, NULL, d, path) != 0) {
        log_warn("blobstore", "refusing to remove blob with malformed digest");
        return;
    }
    if (unlink(path) != 0 && errno != ENOENT) {
        char text[128];
        log_error("blobstore", "failed to remove blob %s: %s", path,
                  strerror_r(errno, text, sizeof(text)));
    }
}

static int fs_put(struct blobstore *bs, const struct digest *d, const void *p, uint64_t len,
                  struct err *e)
{
    struct fs_store *fs = fs_of(bs);
    char id[FS_ID_LEN + 1];
    char tmp[PATH_MAX];
    const char *alg;

    if (digest_parts(d, &alg) == NULL)
        return err_set(e, ERR_DIGEST_INVALID, NULL);
    util_random_id(id);
    AZ(fs_path(fs, FS_PATH_TMP_FILE, id, NULL, tmp));

    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0)
        return fail_io(e, "create temporary file", tmp);
    if (write_all(fd, p, len) != 0) {
        fail_io(e, "write temporary file", tmp);
        goto fail;
    }
    if (fsync_counted(fd) != 0) {
        fail_io(e, "fsync temporary file", tmp);
        goto fail;
    }
    close(fd);
    fd = -1;
    if (install(fs, tmp, d, e) != 0)
        goto fail;
    return 0;

fail:
    if (fd >= 0)
        close(fd);
    unlink(tmp);
    return -1;
}

static void fs_close(struct blobstore *bs)
{
    if (bs == NULL)
        return;
    struct fs_store *fs = fs_of(bs);
    fs->magic = 0;
    FREE_AND_NULL(fs->dir);
    free(fs);
}

static const struct blobstore_ops fs_ops = {
    .name = "fs",
    .upload_create = fs_upload_create,
    .upload_open = fs_upload_open,
    .upload_commit = fs_upload_commit,
    .upload_remove = fs_upload_remove,
    .open = fs_open,
    .stat = fs_stat,
    .remove = fs_remove,
    .put = fs_put,
    .close = fs_close,
};

/* Opening ----------------------------------------------------------------- */

/* Removes everything a crashed put() left in DIR/tmp. Files there were never linked
 * into place, so none of them is a blob. */
static void clean_tmp(struct fs_store *fs)
{
    char dir[PATH_MAX];
    char text[128];
    AZ(fs_path(fs, FS_PATH_TMP, NULL, NULL, dir));

    DIR *dp = opendir(dir);
    if (dp == NULL) {
        log_error("blobstore", "failed to open %s: %s", dir,
                  strerror_r(errno, text, sizeof(text)));
        return;
    }
    unsigned n_removed = 0;
    for (struct dirent *de = readdir(dp); de != NULL; de = readdir(dp)) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        if (unlinkat(dirfd(dp), de->d_name, 0) != 0) {
            log_warn("blobstore", "failed to remove leftover %s/%s: %s", dir, de->d_name,
                     strerror_r(errno, text, sizeof(text)));
            continue;
        }
        n_removed++;
    }
    closedir(dp);
    if (n_removed > 0)
        log_info("blobstore", "removed %u leftover temporary files from %s", n_removed, dir);
}

struct blobstore *blobstore_fs_open(const char *dir, struct err *e)
{
    static const struct digest probes[] = {
        {DIGEST_SHA256, "sha256:0000000000000000000000000000000000000000000000000000000000000000"},
        {DIGEST_SHA512, "sha512:0000000000000000000000000000000000000000000000000000000000000000"
                        "0000000000000000000000000000000000000000000000000000000000000000"},
    };
    char path[PATH_MAX];

    AN(dir);
    size_t dir_len = strlen(dir);
    if (dir_len == 0 || dir_len > FS_ROOT_MAX) {
        log_error("blobstore", "failed to open blobstore: directory name empty or too long");
        err_set(e, ERR_IO, NULL);
        return NULL;
    }
    struct fs_store *fs = xcalloc(1, sizeof(*fs));
    fs->base.ops = &fs_ops;
    fs->magic = FS_STORE_MAGIC;
    fs->dir = xstrndup(dir, dir_len);
    /* A trailing slash would only make paths uglier. */
    while (dir_len > 1 && fs->dir[dir_len - 1] == '/')
        fs->dir[--dir_len] = '\0';

    for (size_t i = 0; i < sizeof(probes) / sizeof(probes[0]); i++) {
        AZ(fs_path(fs, FS_PATH_ALG_DIR, NULL, &probes[i], path));
        if (util_mkdirs(path) != 0) {
            fail_io(e, "create directory", path);
            goto fail;
        }
    }
    static const enum fs_path dirs[] = {FS_PATH_UPLOADS, FS_PATH_TMP};
    for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
        AZ(fs_path(fs, dirs[i], NULL, NULL, path));
        if (util_mkdirs(path) != 0) {
            fail_io(e, "create directory", path);
            goto fail;
        }
    }
    /* util_mkdirs does not say what it created, so make every level durable once. */
    static const enum fs_path parents[] = {FS_PATH_ROOT, FS_PATH_BLOBS};
    for (size_t i = 0; i < sizeof(parents) / sizeof(parents[0]); i++) {
        AZ(fs_path(fs, parents[i], NULL, NULL, path));
        if (util_fsync_dir(path) != 0) {
            fail_io(e, "fsync directory", path);
            goto fail;
        }
    }
    clean_tmp(fs);
    return &fs->base;

fail:
    fs_close(&fs->base);
    return NULL;
}

void blobstore_fs_each_upload(struct blobstore *bs, void (*fn)(const char *id, void *arg),
                              void *arg)
{
    ASSERT(bs->ops == &fs_ops);
    struct fs_store *fs = fs_of(bs);
    char dir[PATH_MAX];
    char text[128];
    AZ(fs_path(fs, FS_PATH_UPLOADS, NULL, NULL, dir));

    DIR *dp = opendir(dir);
    if (dp == NULL) {
        log_error("blobstore", "failed to open %s: %s", dir,
                  strerror_r(errno, text, sizeof(text)));
        return;
    }
    /* Collect first: fn typically removes the upload, and changing a directory while
     * reading it may skip or repeat entries. */
    char (*ids)[FS_ID_LEN + 1] = NULL;
    size_t n = 0;
    size_t cap = 0;
    for (struct dirent *de = readdir(dp); de != NULL; de = readdir(dp)) {
        if (!is_valid_id(de->d_name))
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            ids = xrealloc(ids, cap * sizeof(*ids));
        }
        memcpy(ids[n++], de->d_name, FS_ID_LEN + 1);
    }
    closedir(dp);
    for (size_t i = 0; i < n; i++)
        fn(ids[i], arg);
    free(ids);
}
