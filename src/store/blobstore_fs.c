/* Filesystem blobstore: content-addressed blobs, upload-session files and temporary
 * files under one root directory. It stores bytes only; digests of new content are
 * verified by the caller and metadata lives in the metastore. What it does check is that
 * a stored copy is still what was verified (size on every open, the digest when the file
 * was written to since, the whole digest on a scrub) and moves bad copies to quarantine.
 * Invariant: a blob path only ever names a complete, fsync'd file, linked into place
 * atomically and followed by an fsync of its directory before success is returned.
 * Directories are created 0700 and files 0600: the store is private to the server. */
#include "blobstore.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "metrics.h"
#include "upload_writer.h"
#include "util.h"

#define FS_STORE_MAGIC 0x62736673u /* "bsfs" */
#define FS_ID_LEN 32
/* Room left in PATH_MAX for "/blobs/sha512/xx/" + 128 hex and friends. */
#define FS_ROOT_MAX (PATH_MAX - 256)

/* The "verified" stamp: a committed blob file's mtime is set to this instant before its
 * fsync. Any later write(2) or truncate(2) sets mtime to the current time, so an open
 * whose fstat shows another mtime knows the bytes changed since they were verified and
 * hashes them before serving (git's index uses stat data the same way). Damage that
 * does not go through the file system (bit rot) keeps the stamp: the scrub finds it. */
#define FS_VERIFIED_MTIME_S 946684800 /* 2000-01-01T00:00:00Z */
#define FS_DIR_MODE 0700
#define FS_FILE_MODE 0600

struct fs_store {
    struct blobstore base; /* first: the ops table dispatches on &base */
    unsigned magic;
    char *dir;
    /* Serialises the renames that replace or quarantine a blob's name, so a scrub never
     * moves away a good copy a re-push just put in place of the bad one it read. */
    pthread_mutex_t mu;
    struct blobstore_quarantined *quarantined; /* under mu */
    size_t n_quarantined;
    struct upload_writer *writer; /* hashes and writes large uploads (upload_writer.h) */
};

static const struct blobstore_ops fs_ops;
static blobstore_upload_each_f fs_upload_each;
static blobstore_each_blob_f fs_each_blob;
static blobstore_quarantined_f fs_quarantined;

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
    FS_PATH_QUARANTINE, /* DIR/quarantine */
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
 *   |   +-- <random id>               put() writes here first; leftovers removed at open
 *   +-- quarantine/
 *       +-- <alg>-<hex>-<ms>          a copy that failed its check, moved out of service at
 *                                     <ms> (ms since the epoch); never served, kept for
 *                                     inspection until an operator removes it
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
    case FS_PATH_QUARANTINE:
        n = snprintf(out, PATH_MAX, "%s/quarantine", fs->dir);
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

/* mkdir that tolerates an existing directory; when it does create one, the parent is
 * fsync'd so the new entry survives a crash. */
static int ensure_dir(const char *path, const char *parent, struct err *e)
{
    if (mkdir(path, FS_DIR_MODE) != 0) {
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

/* Verified stamps and quarantine --------------------------------------------- */

static bool is_stamped(const struct stat *st)
{
    return st->st_mtim.tv_sec == FS_VERIFIED_MTIME_S && st->st_mtim.tv_nsec == 0;
}

/* Marks the file open on fd as verified (FS_VERIFIED_MTIME_S); atime is left alone.
 * The owner may set times through a read-only descriptor. */
static int stamp(int fd)
{
    struct timespec times[2] = {{.tv_sec = 0, .tv_nsec = UTIME_OMIT},
                                {.tv_sec = FS_VERIFIED_MTIME_S, .tv_nsec = 0}};
    return futimens(fd, times);
}

/* A good copy of d is in place again: quarantined copies of d count as repaired.
 * Under fs->mu. Returns true if one was waiting for repair. */
static bool note_good_copy(struct fs_store *fs, const struct digest *d)
{
    bool was_waiting = false;
    for (size_t i = 0; i < fs->n_quarantined; i++) {
        struct blobstore_quarantined *q = &fs->quarantined[i];
        if (!q->is_repaired && digest_equal(&q->digest, d)) {
            q->is_repaired = true;
            was_waiting = true;
            metrics_blobs_quarantined_add(-1);
        }
    }
    return was_waiting;
}

static void note_quarantined(struct fs_store *fs, const struct digest *d, const char *file,
                             int64_t ms, bool is_repaired)
{
    fs->quarantined = xrealloc(fs->quarantined,
                               (fs->n_quarantined + 1) * sizeof(*fs->quarantined));
    struct blobstore_quarantined *q = &fs->quarantined[fs->n_quarantined++];
    memset(q, 0, sizeof(*q));
    q->digest = *d;
    snprintf(q->file, sizeof(q->file), "%s", file);
    q->quarantined_ms = ms;
    q->is_repaired = is_repaired;
    if (!is_repaired)
        metrics_blobs_quarantined_add(1);
}

/* Moves blob d's file, found bad (why), to DIR/quarantine, provided its name still
 * refers to the inode `bad` that was checked: a re-push may have put a new verified copy
 * in its place meanwhile, and that one must stay. Returns 0 when moved, 1 when the name
 * no longer refers to `bad` (nothing done), -1 when the move failed (logged; the caller
 * still must not serve the copy). */
static int quarantine(struct fs_store *fs, const struct digest *d, const struct stat *bad,
                      const char *why)
{
    char path[PATH_MAX];
    char blob_dir[PATH_MAX];
    char qdir[PATH_MAX];
    char qpath[PATH_MAX];
    char name[192];
    const char *alg;
    const char *hex = digest_parts(d, &alg);
    AN(hex);
    AZ(fs_path(fs, FS_PATH_BLOB, NULL, d, path));
    AZ(fs_path(fs, FS_PATH_BLOB_DIR, NULL, d, blob_dir));
    AZ(fs_path(fs, FS_PATH_QUARANTINE, NULL, NULL, qdir));

    int rc = -1;
    struct stat st;
    char text[128];
    AZ(pthread_mutex_lock(&fs->mu));
    /* A name no other copy has: two bad copies of d in one millisecond (a re-push found
     * bad again at once) would otherwise share it, and the rename would drop the first.
     * Under mu, which every quarantine takes, the name stays free until the rename. */
    int64_t now_ms = util_now_ms();
    for (;; now_ms++) {
        snprintf(name, sizeof(name), "%s-%s-%lld", alg, hex, (long long)now_ms);
        int n = snprintf(qpath, sizeof(qpath), "%s/%s", qdir, name);
        ASSERT(n > 0 && n < (int)sizeof(qpath));
        if (access(qpath, F_OK) != 0)
            break;
    }
    if (stat(path, &st) != 0 || st.st_ino != bad->st_ino || st.st_dev != bad->st_dev) {
        rc = 1;
    } else if (rename(path, qpath) != 0) {
        log_error("blobstore", "failed to quarantine %s to %s: %s", path, qpath,
                  strerror_r(errno, text, sizeof(text)));
    } else {
        rc = 0;
        note_quarantined(fs, d, name, now_ms, false);
    }
    AZ(pthread_mutex_unlock(&fs->mu));
    if (rc != 0)
        return rc;
    metrics_count_blob_corrupt();
    log_warn("blobstore", "quarantined blob %s: %s (%llu bytes); moved to %s", d->str, why,
             (unsigned long long)bad->st_size, qpath);
    if (util_fsync_dir(blob_dir) != 0 || util_fsync_dir(qdir) != 0)
        log_warn("blobstore", "failed to fsync the directories of quarantined %s: %s", d->str,
                 strerror_r(errno, text, sizeof(text)));
    return 0;
}

/* Publishes src (a complete, fsync'd, stamped file inside this store whose bytes the
 * caller verified against d) as blob d.
 *
 * A new name is made with link(2); when d is already stored, rename(2) puts the new copy
 * in place of the old one atomically. Replacing rather than dropping the duplicate is
 * how a re-push repairs a damaged copy, and it costs no more than the unlink it
 * replaces: the new bytes were already written, verified and fsync'd, so no byte of the
 * old copy has to be read (no re-hash of a large layer on every re-push) and a bad copy
 * of the right size is repaired as surely as a truncated one. Readers that opened the
 * old copy keep reading its inode; two concurrent commits both put verified bytes in
 * place. The blob directory is fsync'd before returning. */
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

    struct stat new_st;
    if (stat(src, &new_st) != 0)
        return fail_io(e, "stat", src);
    struct stat old_st;
    bool had_old = false;
    bool was_quarantined = false;
    int err_no = 0;
    AZ(pthread_mutex_lock(&fs->mu));
    if (link(src, dst) != 0) {
        int link_errno = errno;
        had_old = link_errno == EEXIST && lstat(dst, &old_st) == 0;
        /* EEXIST: replace the stored copy (see above); EPERM and friends: a file system
         * without hard links. */
        if (link_errno != EEXIST && link_errno != EPERM && link_errno != EOPNOTSUPP &&
            link_errno != ENOSYS)
            err_no = link_errno;
        else if (rename(src, dst) != 0)
            err_no = errno;
    } else if (unlink(src) != 0 && errno != ENOENT) {
        /* The blob is in place; a stray source file is only wasted space. */
        char text[128];
        log_warn("blobstore", "failed to remove %s: %s", src,
                 strerror_r(errno, text, sizeof(text)));
    }
    if (err_no == 0)
        was_quarantined = note_good_copy(fs, d);
    AZ(pthread_mutex_unlock(&fs->mu));
    if (err_no != 0) {
        errno = err_no;
        return fail_io(e, "put into place", dst);
    }
    bool was_wrong_size = had_old && old_st.st_size != new_st.st_size;
    if (was_quarantined || was_wrong_size) {
        metrics_count_blob_repaired();
        log_warn("blobstore", "repaired blob %s: a verified copy replaced the %s one", d->str,
                 was_quarantined ? "quarantined" : "wrong-sized");
    } else if (had_old) {
        log_debug("blobstore", "blob %s stored again; the new verified copy replaced the old",
                  d->str);
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

    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, FS_FILE_MODE);
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

/* An open upload session: its file (appended to by the writer pool, upload_writer.h),
 * the running hash of its bytes and the staging buffers of a large upload. */
struct fs_upload {
    char id[FS_ID_LEN + 1];
    uint64_t size;               /* bytes appended, staged or written */
    struct upload_stream stream;
};

static struct fs_upload *upload_of(struct blobstore_upload *u)
{
    AN(u);
    return (struct fs_upload *)u;
}

static int write_failed(const struct fs_upload *up, int errnum, struct err *e)
{
    char text[128];
    log_error("blobstore", "failed to write upload %s: %s", up->id,
              strerror_r(errnum, text, sizeof(text)));
    return err_set(e, errnum == ENOSPC || errnum == EDQUOT ? ERR_NO_SPACE : ERR_IO, NULL);
}

static int fs_upload_open(struct blobstore *bs, const char *id, struct blobstore_upload **out,
                          uint64_t *size, struct err *e)
{
    struct fs_store *fs = fs_of(bs);
    char path[PATH_MAX];
    struct stat st;

    *out = NULL;
    if (fs_path(fs, FS_PATH_UPLOAD, id, NULL, path) != 0)
        return err_set(e, ERR_BLOB_UPLOAD_UNKNOWN, NULL);
    /* Read-write so the hash can be rebuilt (pread) and a failed chunk cut back. */
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
    struct fs_upload *up = xcalloc(1, sizeof(*up));
    memcpy(up->id, id, FS_ID_LEN + 1);
    up->size = (uint64_t)st.st_size;
    upload_stream_init(&up->stream, fd, up->size);
    *size = up->size;
    *out = (struct blobstore_upload *)up;
    return 0;
}

/* Re-hashes the bytes already in the file (after a restart or a cut-back). Nothing is
 * staged or at a writer when the hash is missing. */
static int rebuild_hash(struct fs_upload *up, struct err *e)
{
    char *chunk = xmalloc(1 << 20);
    struct hasher *h = digest_hasher_new(DIGEST_SHA256);
    uint64_t pos = 0;
    while (pos < up->size) {
        size_t want = up->size - pos < (1u << 20) ? (size_t)(up->size - pos) : (1u << 20);
        ssize_t got = pread(up->stream.fd, chunk, want, (off_t)pos);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0) {
            log_error("blobstore", "failed to re-read upload %s: %s", up->id,
                      got < 0 ? strerror(errno) : "short file");
            digest_hasher_free(h);
            free(chunk);
            return err_set(e, ERR_IO, NULL);
        }
        digest_hasher_update(h, chunk, (size_t)got);
        pos += (uint64_t)got;
    }
    free(chunk);
    digest_hasher_free(up->stream.hasher);
    up->stream.hasher = h;
    return 0;
}

static int fs_upload_append(struct blobstore *bs, struct blobstore_upload *u, uint64_t offset,
                            const void *p, size_t n, struct err *e)
{
    struct fs_store *fs = fs_of(bs);
    struct fs_upload *up = upload_of(u);
    if (offset != up->size)
        return err_set(e, ERR_RANGE_INVALID, "chunk starts at %llu, upload is at %llu",
                       (unsigned long long)offset, (unsigned long long)up->size);
    if (up->stream.hasher == NULL && rebuild_hash(up, e) != 0)
        return -1;
    int rc = upload_writer_append(fs->writer, &up->stream, p, n);
    if (rc != 0)
        return write_failed(up, rc, e);
    up->size += n;
    return 0;
}

static int fs_upload_flush(struct blobstore *bs, struct blobstore_upload *u, bool is_durable,
                           struct err *e)
{
    struct fs_store *fs = fs_of(bs);
    struct fs_upload *up = upload_of(u);
    int rc = upload_writer_flush(fs->writer, &up->stream);
    if (rc != 0)
        return write_failed(up, rc, e);
    ASSERT(up->stream.written == up->size);
    if (is_durable && fdatasync(up->stream.fd) != 0) {
        char text[128];
        log_error("blobstore", "failed to sync upload %s: %s", up->id,
                  strerror_r(errno, text, sizeof(text)));
        return err_set(e, ERR_IO, NULL);
    }
    return 0;
}

static uint64_t fs_upload_idle(struct blobstore *bs, struct blobstore_upload *u)
{
    struct fs_store *fs = fs_of(bs);
    struct fs_upload *up = upload_of(u);
    struct err ignore = {0};
    if (fs_upload_flush(bs, u, false, &ignore) != 0) {
        upload_writer_discard(fs->writer, &up->stream);
        up->size = up->stream.written;
    }
    upload_stream_release(&up->stream);
    return up->size;
}

static int fs_upload_truncate(struct blobstore *bs, struct blobstore_upload *u, uint64_t size,
                              uint64_t *now, struct err *e)
{
    struct fs_store *fs = fs_of(bs);
    struct fs_upload *up = upload_of(u);
    /* Bytes still staged lie after `size`: every request starts on a flushed file. */
    int rc = upload_writer_truncate(fs->writer, &up->stream, size);
    up->size = up->stream.written;
    *now = up->size;
    if (rc != 0) {
        char text[128];
        log_error("blobstore", "failed to truncate upload %s: %s", up->id,
                  strerror_r(rc, text, sizeof(text)));
        return err_set(e, ERR_IO, NULL);
    }
    return 0;
}

/* Makes upload id's file durable as blob d (the caller verified its bytes): stamp, fsync,
 * then install. */
static int commit_file(struct fs_store *fs, const char *id, int fd, const struct digest *d,
                       struct err *e)
{
    char path[PATH_MAX];
    AZ(fs_path(fs, FS_PATH_UPLOAD, id, NULL, path));
    /* Stamped before the fsync, which makes the stamp durable with the bytes. */
    if (stamp(fd) != 0)
        return fail_io(e, "stamp upload", path);
    if (fsync_counted(fd) != 0)
        return fail_io(e, "fsync upload", path);
    return install(fs, path, d, e);
}

static int fs_upload_commit(struct blobstore *bs, struct blobstore_upload *u,
                            const struct digest *want, struct err *e)
{
    struct fs_store *fs = fs_of(bs);
    struct fs_upload *up = upload_of(u);
    const char *alg;
    if (digest_parts(want, &alg) == NULL)
        return err_set(e, ERR_DIGEST_INVALID, NULL);
    if (fs_upload_flush(bs, u, false, e) != 0)
        return -1;
    struct digest got;
    if (want->alg == DIGEST_SHA256) {
        if (up->stream.hasher == NULL && rebuild_hash(up, e) != 0)
            return -1;
        digest_hasher_final(up->stream.hasher, &got);
        digest_hasher_free(up->stream.hasher);
        up->stream.hasher = NULL; /* rebuilt from the file if the session goes on */
    } else if (digest_of_fd(want->alg, up->stream.fd, up->size, &got) != 0) {
        char text[128];
        log_error("blobstore", "failed to hash upload %s: %s", up->id,
                  strerror_r(errno, text, sizeof(text)));
        return err_set(e, ERR_IO, NULL);
    }
    if (!digest_equal(&got, want))
        return err_set(e, ERR_DIGEST_INVALID, "content digest %s does not match %s", got.str,
                       want->str);
    return commit_file(fs, up->id, up->stream.fd, want, e);
}

static void fs_upload_close(struct blobstore *bs, struct blobstore_upload *u)
{
    struct fs_store *fs = fs_of(bs);
    if (u == NULL)
        return;
    struct fs_upload *up = upload_of(u);
    upload_writer_discard(fs->writer, &up->stream);
    upload_stream_release(&up->stream);
    if (up->stream.fd >= 0)
        close(up->stream.fd);
    digest_hasher_free(up->stream.hasher);
    free(up);
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

/* Opens a stored blob's file and stats it: the fd, or -1 with ERR_BLOB_UNKNOWN when it is
 * not there, ERR_IO otherwise. */
static int open_blob_file(const char *path, struct stat *st, struct err *e)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT)
            return err_set(e, ERR_BLOB_UNKNOWN, NULL);
        return fail_io(e, "open blob", path);
    }
    if (fstat(fd, st) != 0) {
        fail_io(e, "stat blob", path);
        close(fd);
        return -1;
    }
    return fd;
}

/* Always answers with the file (sendfile, zero copy): accept and length need no more. */
static int fs_open(struct blobstore *bs, const struct digest *d, uint64_t expected_size,
                   uint64_t offset, uint64_t length, unsigned accept,
                   struct blobstore_body *out, struct err *e)
{
    struct fs_store *fs = fs_of(bs);
    char path[PATH_MAX];
    struct stat st;

    (void)accept;
    *out = (struct blobstore_body){.kind = BLOBSTORE_BODY_FD, .fd = -1};
    if (offset > expected_size || length > expected_size - offset)
        return err_set(e, ERR_RANGE_INVALID, NULL);
    if (fs_path(fs, FS_PATH_BLOB, NULL, d, path) != 0)
        return err_set(e, ERR_DIGEST_INVALID, NULL);
    /* A second round only when a re-push replaced the bad copy while it was checked. */
    for (int round = 0; round < 2; round++) {
        int fd = open_blob_file(path, &st, e);
        if (fd < 0)
            return -1;
        const char *why = NULL;
        if ((uint64_t)st.st_size != expected_size) {
            why = "its size differs from the recorded size";
        } else if (!is_stamped(&st)) {
            /* Written to since it was verified (or stored by a version without stamps):
             * hash it before serving a byte. */
            struct digest got;
            if (digest_of_fd(d->alg, fd, (uint64_t)st.st_size, &got) != 0) {
                fail_io(e, "read blob", path);
                close(fd);
                return -1;
            }
            if (!digest_equal(&got, d)) {
                why = "its content no longer matches its digest";
            } else if (stamp(fd) != 0) {
                char text[128];
                log_warn("blobstore", "failed to stamp verified blob %s: %s", path,
                         strerror_r(errno, text, sizeof(text)));
            } else {
                log_info("blobstore", "verified blob %s (changed since stored, or stored "
                                      "without a stamp): content is intact", d->str);
            }
        }
        if (why == NULL) {
            out->fd = fd;
            out->fd_offset = offset;
            return 0;
        }
        close(fd);
        log_error("blobstore", "failed to serve blob %s: %s (%llu bytes, recorded %llu)",
                  d->str, why, (unsigned long long)st.st_size,
                  (unsigned long long)expected_size);
        if (quarantine(fs, d, &st, why) != 1)
            break;
    }
    return err_set(e, ERR_BLOB_CORRUPT, NULL);
}

#define FS_VERIFY_CHUNK (1u << 20)

static int fs_verify(struct blobstore *bs, const struct digest *d, uint64_t expected_size,
                     blobstore_throttle_f *throttle, void *throttle_arg, struct err *e)
{
    struct fs_store *fs = fs_of(bs);
    char path[PATH_MAX];
    struct stat st;

    if (fs_path(fs, FS_PATH_BLOB, NULL, d, path) != 0)
        return err_set(e, ERR_DIGEST_INVALID, NULL);
    int fd = open_blob_file(path, &st, e);
    if (fd < 0)
        return -1;
    const char *why = NULL;
    int rc = 0;
    if ((uint64_t)st.st_size != expected_size) {
        why = "its size differs from the recorded size";
    } else {
        struct hasher *h = digest_hasher_new(d->alg);
        unsigned char *chunk = xmalloc(FS_VERIFY_CHUNK);
        uint64_t off = 0;
        while (off < expected_size) {
            ssize_t r = pread(fd, chunk, FS_VERIFY_CHUNK, (off_t)off);
            if (r < 0 && errno == EINTR)
                continue;
            if (r < 0) {
                rc = fail_io(e, "read blob", path);
                break;
            }
            if (r == 0)
                break; /* shrank while being read: the digest will not match */
            digest_hasher_update(h, chunk, (size_t)r);
            off += (uint64_t)r;
            if (throttle != NULL && throttle(throttle_arg, (uint64_t)r) != 0) {
                rc = err_set(e, ERR_UNAVAILABLE, "verification interrupted");
                break;
            }
        }
        struct digest got;
        digest_hasher_final(h, &got);
        digest_hasher_free(h);
        free(chunk);
        if (rc == 0 && !digest_equal(&got, d))
            why = "its content no longer matches its digest";
    }
    if (rc == 0 && why == NULL && !is_stamped(&st) && stamp(fd) != 0) {
        char text[128];
        log_warn("blobstore", "failed to stamp verified blob %s: %s", path,
                 strerror_r(errno, text, sizeof(text)));
    }
    close(fd);
    if (rc != 0 || why == NULL)
        return rc;
    log_error("blobstore", "scrub found blob %s damaged: %s (%llu bytes, recorded %llu)",
              d->str, why, (unsigned long long)st.st_size, (unsigned long long)expected_size);
    /* 1: a re-push replaced it with a verified copy meanwhile; that one is good. */
    if (quarantine(fs, d, &st, why) == 1)
        return 0;
    return err_set(e, ERR_BLOB_CORRUPT, NULL);
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
static int fs_remove(struct blobstore *bs, const struct digest *d, struct err *e)
{
    struct fs_store *fs = fs_of(bs);
    char path[PATH_MAX];

    if (fs_path(fs, FS_PATH_BLOB, NULL, d, path) != 0) {
        log_warn("blobstore", "refusing to remove blob with malformed digest");
        return err_set(e, ERR_DIGEST_INVALID, NULL);
    }
    if (unlink(path) != 0 && errno != ENOENT)
        return fail_io(e, "remove blob", path);
    return 0;
}

static size_t fs_remove_all(struct blobstore *bs)
{
    struct fs_store *fs = fs_of(bs);
    char path[PATH_MAX];
    if (fs_path(fs, FS_PATH_BLOBS, NULL, NULL, path) != 0)
        return 0;
    return util_remove_tree(path);
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

    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, FS_FILE_MODE);
    if (fd < 0)
        return fail_io(e, "create temporary file", tmp);
    if (write_all(fd, p, len) != 0) {
        fail_io(e, "write temporary file", tmp);
        goto fail;
    }
    if (stamp(fd) != 0) {
        fail_io(e, "stamp temporary file", tmp);
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
    upload_writer_free(fs->writer);
    AZ(pthread_mutex_lock(&fs->mu));
    for (size_t i = 0; i < fs->n_quarantined; i++) {
        if (!fs->quarantined[i].is_repaired)
            metrics_blobs_quarantined_add(-1);
    }
    FREE_AND_NULL(fs->quarantined);
    AZ(pthread_mutex_unlock(&fs->mu));
    pthread_mutex_destroy(&fs->mu);
    FREE_AND_NULL(fs->dir);
    free(fs);
}

/* Readiness: a small file written and removed in DIR/tmp (a read-only or full disk, or
 * a directory gone, fails here before a push does). */
static int fs_check(struct blobstore *bs, long timeout_ms, struct err *e)
{
    (void)timeout_ms; /* a local disk: no network wait to bound */
    struct fs_store *fs = (struct fs_store *)bs;
    static atomic_uint seq;
    char dir[PATH_MAX], path[PATH_MAX + 64];
    AZ(fs_path(fs, FS_PATH_TMP, NULL, NULL, dir));
    snprintf(path, sizeof(path), "%s/.ready-%ld-%u", dir, (long)getpid(),
             atomic_fetch_add(&seq, 1));
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0)
        return fail_io(e, "create", path);
    int rc = write(fd, "r", 1) == 1 ? 0 : fail_io(e, "write", path);
    close(fd);
    unlink(path);
    return rc;
}

static const struct blobstore_ops fs_ops = {
    .name = "fs",
    .upload_create = fs_upload_create,
    .upload_open = fs_upload_open,
    .upload_append = fs_upload_append,
    .upload_flush = fs_upload_flush,
    .upload_idle = fs_upload_idle,
    .upload_truncate = fs_upload_truncate,
    .upload_commit = fs_upload_commit,
    .upload_close = fs_upload_close,
    .upload_remove = fs_upload_remove,
    .upload_each = fs_upload_each,
    .open = fs_open,
    .verify = fs_verify,
    .stat = fs_stat,
    .remove = fs_remove,
    .put = fs_put,
    .remove_all = fs_remove_all,
    .quarantined = fs_quarantined,
    .close = fs_close,
    .check = fs_check,
    .each_blob = fs_each_blob,
};

/* Opening ----------------------------------------------------------------- */

/* Parses a quarantine file name "<alg>-<hex>-<ms>" into d and ms. */
static bool parse_quarantine_name(const char *name, struct digest *d, int64_t *ms)
{
    const char *dash1 = strchr(name, '-');
    const char *dash2 = dash1 ? strchr(dash1 + 1, '-') : NULL;
    if (dash2 == NULL)
        return false;
    char text[DIGEST_STR_MAX];
    int n = snprintf(text, sizeof(text), "%.*s:%.*s", (int)(dash1 - name), name,
                     (int)(dash2 - dash1 - 1), dash1 + 1);
    uint64_t v;
    if (n <= 0 || n >= (int)sizeof(text) || digest_parse(text, (size_t)n, d, NULL) != 0 ||
        util_parse_u64(dash2 + 1, strlen(dash2 + 1), &v) != 0 || v > INT64_MAX)
        return false;
    *ms = (int64_t)v;
    return true;
}

static int by_time(const void *a, const void *b)
{
    const struct blobstore_quarantined *x = a;
    const struct blobstore_quarantined *y = b;
    return (x->quarantined_ms > y->quarantined_ms) - (x->quarantined_ms < y->quarantined_ms);
}

/* Reads DIR/quarantine: a copy counts as repaired when a blob file is in place again
 * (quarantine moved the bad one away, so any file there now was installed since). */
static void load_quarantine(struct fs_store *fs)
{
    char dir[PATH_MAX];
    char path[PATH_MAX];
    AZ(fs_path(fs, FS_PATH_QUARANTINE, NULL, NULL, dir));
    DIR *dp = opendir(dir);
    if (dp == NULL)
        return;
    for (struct dirent *de = readdir(dp); de != NULL; de = readdir(dp)) {
        struct digest d;
        int64_t ms;
        if (!parse_quarantine_name(de->d_name, &d, &ms))
            continue;
        AZ(fs_path(fs, FS_PATH_BLOB, NULL, &d, path));
        note_quarantined(fs, &d, de->d_name, ms, access(path, F_OK) == 0);
    }
    closedir(dp);
    if (fs->n_quarantined > 1)
        qsort(fs->quarantined, fs->n_quarantined, sizeof(*fs->quarantined), by_time);
}

/* Directories made by an older version were 0755: make every directory of the store
 * 0700 (a few hundred chmods: blobs/<alg>/<xx> has at most 256 entries per algorithm).
 * Files inside keep their mode; no other user can reach them through a 0700 directory. */
static void tighten_dirs(struct fs_store *fs)
{
    static const char *const algs[] = {"sha256", "sha512"};
    static const enum fs_path top[] = {FS_PATH_ROOT, FS_PATH_BLOBS, FS_PATH_UPLOADS,
                                       FS_PATH_TMP, FS_PATH_QUARANTINE};
    char path[PATH_MAX];
    for (size_t i = 0; i < sizeof(top) / sizeof(top[0]); i++) {
        AZ(fs_path(fs, top[i], NULL, NULL, path));
        (void)chmod(path, FS_DIR_MODE);
    }
    for (size_t i = 0; i < sizeof(algs) / sizeof(algs[0]); i++) {
        char dir[PATH_MAX];
        snprintf(dir, sizeof(dir), "%s/blobs/%s", fs->dir, algs[i]);
        (void)chmod(dir, FS_DIR_MODE);
        DIR *dp = opendir(dir);
        if (dp == NULL)
            continue;
        for (struct dirent *de = readdir(dp); de != NULL; de = readdir(dp)) {
            if (strlen(de->d_name) == 2 && is_lower_hex(de->d_name, 2))
                (void)fchmodat(dirfd(dp), de->d_name, FS_DIR_MODE, 0);
        }
        closedir(dp);
    }
}

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
    AZ(pthread_mutex_init(&fs->mu, NULL));
    /* Two pool threads per core (at most 8): large uploads hash and write on other cores
     * than the ones reading their sockets, and a thread waiting on the disk in a write
     * lane leaves another to hash. */
    long n_cpus = sysconf(_SC_NPROCESSORS_ONLN);
    fs->writer = upload_writer_new(n_cpus < 1 ? 2u : n_cpus > 4 ? 8u : 2u * (unsigned)n_cpus);
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
    static const enum fs_path dirs[] = {FS_PATH_UPLOADS, FS_PATH_TMP, FS_PATH_QUARANTINE};
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
    tighten_dirs(fs);
    load_quarantine(fs);
    return &fs->base;

fail:
    fs_close(&fs->base);
    return NULL;
}

static void fs_upload_each(struct blobstore *bs, void (*fn)(const char *id, void *arg),
                           void *arg)
{
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

static void fs_quarantined(struct blobstore *bs, struct blobstore_quarantined **out,
                           size_t *n)
{
    struct fs_store *fs = fs_of(bs);
    AZ(pthread_mutex_lock(&fs->mu));
    *n = fs->n_quarantined;
    *out = xcalloc(*n ? *n : 1, sizeof(**out));
    if (*n)
        memcpy(*out, fs->quarantined, *n * sizeof(**out));
    AZ(pthread_mutex_unlock(&fs->mu));
}

/* One blob file of the listing: its digest and when it was put in place. */
struct fs_listed {
    struct digest d;
    int64_t stored_ms;
};

/* Appends the blobs of DIR/blobs/<alg>/<xx> to *out. A blob file is only ever written
 * under another name and renamed into place (which sets its ctime; its mtime is the
 * verified stamp), so ctime is when this copy was stored. */
static int list_blob_dir(const struct fs_store *fs, const char *dir, const char *alg,
                         struct fs_listed **out, size_t *n, size_t *cap, struct err *e)
{
    DIR *dp = opendir(dir);
    if (dp == NULL)
        return errno == ENOENT ? 0 : fail_io(e, "list blob directory", dir);
    for (struct dirent *de = readdir(dp); de != NULL; de = readdir(dp)) {
        char name[160], path[PATH_MAX], want[PATH_MAX];
        struct digest d;
        struct err e = {0};
        struct stat st;
        if (de->d_name[0] == '.' ||
            snprintf(name, sizeof(name), "%s:%s", alg, de->d_name) >= (int)sizeof(name) ||
            digest_parse(name, strlen(name), &d, &e) != 0 ||
            snprintf(path, sizeof(path), "%s/%s", dir, de->d_name) >= (int)sizeof(path) ||
            fs_path(fs, FS_PATH_BLOB, NULL, &d, want) != 0 || strcmp(path, want) != 0 ||
            lstat(path, &st) != 0 || !S_ISREG(st.st_mode))
            continue;
        if (*n == *cap) {
            *cap = *cap ? *cap * 2 : 256;
            *out = xrealloc(*out, *cap * sizeof(**out));
        }
        (*out)[*n].d = d;
        (*out)[(*n)++].stored_ms =
            (int64_t)st.st_ctim.tv_sec * 1000 + st.st_ctim.tv_nsec / 1000000;
    }
    closedir(dp);
    return 0;
}

static int fs_each_blob(struct blobstore *bs,
                        void (*fn)(const struct digest *d, int64_t stored_ms, void *arg),
                        void *arg, struct err *e)
{
    struct fs_store *fs = fs_of(bs);
    char blobs[PATH_MAX];
    AZ(fs_path(fs, FS_PATH_BLOBS, NULL, NULL, blobs));
    struct fs_listed *listed = NULL;
    size_t n = 0, cap = 0;
    int rc = 0;
    static const char *const algs[] = {"sha256", "sha512"};
    for (size_t a = 0; a < sizeof(algs) / sizeof(algs[0]); a++) {
        char alg_dir[PATH_MAX];
        if (snprintf(alg_dir, sizeof(alg_dir), "%s/%s", blobs, algs[a]) >= (int)sizeof(alg_dir))
            continue;
        DIR *dp = opendir(alg_dir);
        if (dp == NULL) {
            if (errno != ENOENT) /* none of this algorithm yet is no failure */
                rc = fail_io(e, "list blob directory", alg_dir);
            continue;
        }
        for (struct dirent *de = readdir(dp); de != NULL; de = readdir(dp)) {
            char sub[PATH_MAX];
            if (strlen(de->d_name) != 2 || !is_lower_hex(de->d_name, 2) ||
                snprintf(sub, sizeof(sub), "%s/%s", alg_dir, de->d_name) >= (int)sizeof(sub))
                continue;
            if (list_blob_dir(fs, sub, algs[a], &listed, &n, &cap, e) != 0)
                rc = -1; /* the other directories are listed all the same */
            /* After the directory is read (fn may remove a file of it); one directory of
             * the 256 at a time, not the whole store, is held in memory. */
            for (size_t i = 0; i < n; i++)
                fn(&listed[i].d, listed[i].stored_ms, arg);
            n = 0;
        }
        closedir(dp);
    }
    free(listed);
    return rc;
}
