/* The blob storage seam: content-addressed immutable blobs and the byte files of
 * in-progress upload sessions. One ops table per backend (blobstore_fs.c today,
 * S3 later), in the manner of varnish's stevedores. Handlers never build paths.
 *
 * Invariant: a blob is readable only once all its bytes were verified against its
 * digest and made durable (fsync, rename, fsync dir). A partial blob is never visible. */
#ifndef MERIDIAN_BLOBSTORE_H
#define MERIDIAN_BLOBSTORE_H

#include <stdbool.h>
#include <stdint.h>

#include "digest.h"
#include "err.h"

struct blobstore;

/* Upload files ------------------------------------------------------------ */

/* Creates an empty upload file for session id (32 hex chars). ERR_IO on failure. */
typedef int blobstore_upload_create_f(struct blobstore *bs, const char *id, struct err *e);
/* Opens the upload file for appending; returns an fd (caller closes) and its current
 * size. ERR_BLOB_UPLOAD_UNKNOWN if it does not exist. */
typedef int blobstore_upload_open_f(struct blobstore *bs, const char *id, uint64_t *size,
                                    struct err *e);
/* Makes the upload's bytes durable as blob d: fsync, rename into place, fsync the
 * directory. The caller has already verified the digest. If the blob already exists
 * the new verified copy replaces it atomically (a re-push repairs a damaged copy; see
 * install() in blobstore_fs.c for why no re-hash is needed). */
typedef int blobstore_upload_commit_f(struct blobstore *bs, const char *id,
                                      const struct digest *d, struct err *e);
/* Removes the upload file; missing is not an error. */
typedef void blobstore_upload_remove_f(struct blobstore *bs, const char *id);

/* Blobs ------------------------------------------------------------------- */

/* Opens blob d read-only for serving: fd (caller closes) and size (== expected_size).
 * A copy that cannot be trusted is never returned: one whose size is not expected_size
 * (the size recorded when it was verified), or one written to since it was verified
 * whose bytes no longer hash to d, is moved to quarantine and ERR_BLOB_CORRUPT is
 * returned (answered as 404 BLOB_UNKNOWN if it reaches a client). ERR_BLOB_UNKNOWN if
 * absent. */
typedef int blobstore_open_f(struct blobstore *bs, const struct digest *d,
                             uint64_t expected_size, int *fd, uint64_t *size, struct err *e);
/* Called by verify after each chunk read (bytes: the chunk's length): the scrub sleeps
 * here to keep its rate. Nonzero aborts the verification (ERR_UNAVAILABLE). */
typedef int blobstore_throttle_f(void *arg, uint64_t bytes);
/* Reads all of blob d and checks its size and digest (the scrub). 0 when good (the copy
 * is then marked verified); ERR_BLOB_CORRUPT when bad (it was moved to quarantine);
 * ERR_BLOB_UNKNOWN when absent; ERR_IO on a read error. */
typedef int blobstore_verify_f(struct blobstore *bs, const struct digest *d,
                               uint64_t expected_size, blobstore_throttle_f *throttle,
                               void *throttle_arg, struct err *e);
/* Size of blob d, or -1 with ERR_BLOB_UNKNOWN. */
typedef int blobstore_stat_f(struct blobstore *bs, const struct digest *d, uint64_t *size,
                             struct err *e);
/* Removes blob d's bytes (garbage collection). Missing is not an error. */
typedef void blobstore_remove_f(struct blobstore *bs, const struct digest *d);
/* Stores `len` bytes from memory as blob d durably (used for small blobs such as
 * replicated manifests' configs in tests and tools). The caller verified d. */
typedef int blobstore_put_f(struct blobstore *bs, const struct digest *d, const void *p,
                            uint64_t len, struct err *e);
/* Removes every stored blob (this region was removed from its registry); returns how many
 * were removed. Upload sessions are not touched. */
typedef size_t blobstore_remove_all_f(struct blobstore *bs);
/* Lists the upload sessions the store holds bytes for (the expiry sweep and the count at
 * start-up): calls fn for each id, and fn may remove that upload. */
typedef void blobstore_upload_each_f(struct blobstore *bs,
                                     void (*fn)(const char *id, void *arg), void *arg);
struct blobstore_quarantined;
/* Lists the copies found bad and moved out of service, oldest first: *out (caller frees)
 * and *n (a backend that keeps none answers 0). */
typedef void blobstore_quarantined_f(struct blobstore *bs, struct blobstore_quarantined **out,
                                     size_t *n);
typedef void blobstore_close_f(struct blobstore *bs);

struct blobstore_ops {
    const char *name;
    blobstore_upload_create_f *upload_create;
    blobstore_upload_open_f *upload_open;
    blobstore_upload_commit_f *upload_commit;
    blobstore_upload_remove_f *upload_remove;
    blobstore_open_f *open;
    blobstore_verify_f *verify;
    blobstore_stat_f *stat;
    blobstore_remove_f *remove;
    blobstore_put_f *put;
    blobstore_remove_all_f *remove_all;
    blobstore_upload_each_f *upload_each;
    blobstore_quarantined_f *quarantined;
    blobstore_close_f *close;
};

struct blobstore {
    const struct blobstore_ops *ops;
};

/* Opens the filesystem blobstore rooted at dir (created if missing); removes
 * leftover temporary files from a previous crash. NULL with e set on failure. */
struct blobstore *blobstore_fs_open(const char *dir, struct err *e);

/* A blob copy found bad and moved out of service, kept for inspection. */
struct blobstore_quarantined {
    struct digest digest;
    char file[192];          /* name under DATA/quarantine/: <alg>-<hex>-<ms> */
    int64_t quarantined_ms;  /* when it was moved there */
    bool is_repaired;        /* a good copy has been stored since */
};


#endif
