/* The blob storage seam: content-addressed immutable blobs and the bytes of in-progress
 * upload sessions. One ops table per backend (blobstore_fs.c today, S3 next), in the
 * manner of varnish's stevedores. Nothing above this header builds a path, holds an
 * upload's file descriptor or renames a file: handlers, upload sessions, replication and
 * the scrub only call these operations, so a backend that keeps no local file (an object
 * store) fits behind the same table.
 *
 * The contract every backend keeps:
 *
 * - A blob is readable only once all its bytes were verified against its digest and made
 *   durable. A partial blob is never visible, and a copy that is no longer what was
 *   verified is never served (it is set aside, and the read fails ERR_BLOB_CORRUPT).
 * - Reads (open) answer in one of three forms, chosen by the backend among those the
 *   caller accepts: a file descriptor and offset (sent with sendfile, zero copy), a
 *   stream (a read callback the HTTP layer pulls the reply body from), or a redirect URL
 *   (answered 307; an object store's presigned URL). The caller names the byte range it
 *   will send, so a stream yields exactly those bytes and a ranged GET passes through.
 * - Uploads go through a handle the backend owns (upload_open): append at the offset the
 *   session is at, flush (optionally durable), cut back to an earlier durable size,
 *   commit (the backend verifies the digest of what was appended, then makes the bytes
 *   durable as the blob), close. State that must survive a restart lives in the backend
 *   under the session id, so an upload resumes from another process (or node).
 * - Integrity: verify re-reads one blob (the scrub), quarantined lists what was set
 *   aside; how a backend knows a copy changed (fs: an mtime stamp) is its own business.
 *
 * Every operation may be called from any thread; an upload handle is used by one thread
 * at a time (the session's holder). Errors: 0 or -1 with e set (codes in err_codes.def;
 * messages never hold paths). */
#ifndef MERIDIAN_BLOBSTORE_H
#define MERIDIAN_BLOBSTORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "digest.h"
#include "err.h"

struct blobstore;
struct blobstore_upload; /* one open upload session: the backend's */

/* Upload sessions ---------------------------------------------------------- */

/* Creates the empty bytes of session id (32 hex chars). ERR_CONFLICT if it exists. */
typedef int blobstore_upload_create_f(struct blobstore *bs, const char *id, struct err *e);
/* Opens session id for appending: a handle (closed with upload_close) and the number of
 * bytes it holds. ERR_BLOB_UPLOAD_UNKNOWN if there is no such session. */
typedef int blobstore_upload_open_f(struct blobstore *bs, const char *id,
                                    struct blobstore_upload **out, uint64_t *size,
                                    struct err *e);
/* Appends n bytes at offset, which must be where the session ends (the bytes held plus
 * those appended since). The bytes are hashed as they come, for commit. The backend
 * may keep them staged; a failure may be that of an earlier staged write. ERR_IO or
 * ERR_NO_SPACE; the caller then cuts the session back with upload_truncate. */
typedef int blobstore_upload_append_f(struct blobstore *bs, struct blobstore_upload *u,
                                      uint64_t offset, const void *p, size_t n,
                                      struct err *e);
/* Stores every appended byte (readable again by upload_open); with is_durable they also
 * survive a crash (the size reported to a client is acknowledged only after that). */
typedef int blobstore_upload_flush_f(struct blobstore *bs, struct blobstore_upload *u,
                                     bool is_durable, struct err *e);
/* The session waits for its next request: staged bytes are stored (a failure is logged
 * and they are dropped) and memory kept for appending is released; the handle stays
 * open. Returns the bytes the session holds. */
typedef uint64_t blobstore_upload_idle_f(struct blobstore *bs, struct blobstore_upload *u);
/* Cuts the session back to size bytes, undoing a failed request: size is 0, the size
 * at open, or one that was flushed durable. *now: the bytes held afterwards (also on
 * failure). */
typedef int blobstore_upload_truncate_f(struct blobstore *bs, struct blobstore_upload *u,
                                        uint64_t size, uint64_t *now, struct err *e);
/* Verifies the appended bytes against want (ERR_DIGEST_INVALID if they differ; the
 * session is unchanged) and makes them durable as blob want. If the blob already exists
 * the new verified copy replaces it atomically (a re-push repairs a damaged copy). The
 * session's bytes are consumed; the caller still closes the handle and removes the id. */
typedef int blobstore_upload_commit_f(struct blobstore *bs, struct blobstore_upload *u,
                                      const struct digest *want, struct err *e);
/* Closes the handle (NULL: nothing to do): staged bytes are dropped, stored ones stay
 * (upload_remove drops them). */
typedef void blobstore_upload_close_f(struct blobstore *bs, struct blobstore_upload *u);
/* Removes the bytes of session id; missing is not an error. No handle may be open. */
typedef void blobstore_upload_remove_f(struct blobstore *bs, const char *id);
/* Lists the upload sessions the store holds bytes for (the expiry sweep and the count at
 * start-up): calls fn for each id, and fn may remove that upload. */
typedef void blobstore_upload_each_f(struct blobstore *bs,
                                     void (*fn)(const char *id, void *arg), void *arg);

/* Reading blobs -------------------------------------------------------------- */

enum blobstore_body_kind {
    BLOBSTORE_BODY_FD,       /* send from a file descriptor (sendfile) */
    BLOBSTORE_BODY_STREAM,   /* pull from a read callback */
    BLOBSTORE_BODY_REDIRECT, /* send the client elsewhere (307 Location) */
};
/* What a caller can send, given to open (bit per kind; FD and STREAM are always taken). */
#define BLOBSTORE_ACCEPT_REDIRECT (1u << BLOBSTORE_BODY_REDIRECT)

/* A stream's next bytes into p (at most max): how many (> 0), 0 at the end, -1 when it
 * broke (the reply is then cut short). It may block. Same contract as http_reader_f. */
typedef long blobstore_stream_read_f(void *arg, char *p, size_t max);
typedef void blobstore_stream_close_f(void *arg);

/* The answer of open. The caller owns what it holds: it closes fd, calls close(arg) once
 * (whether or not it read), frees url. */
struct blobstore_body {
    enum blobstore_body_kind kind;
    int fd;                  /* FD: the range asked is [fd_offset, fd_offset + length) */
    uint64_t fd_offset;
    blobstore_stream_read_f *read;  /* STREAM: yields exactly the range asked */
    blobstore_stream_close_f *close;
    void *arg;
    char *url;               /* REDIRECT: where the client gets the blob (its own Range
                              * header goes there with it) */
};

/* Releases what body holds without sending it (a reply that became an error). */
void blobstore_body_close(struct blobstore_body *body);

/* Opens blob d, whose verified size is expected_size, to send bytes [offset, offset +
 * length) of it (length 0: none, e.g. HEAD; the caller checked the range against
 * expected_size). accept: BLOBSTORE_ACCEPT_* the caller can send besides FD and STREAM.
 * A copy that cannot be trusted is never returned: one whose size is not expected_size,
 * or whose bytes no longer hash to d, is set aside (quarantine) and ERR_BLOB_CORRUPT is
 * returned (answered as 404 BLOB_UNKNOWN if it reaches a client). ERR_BLOB_UNKNOWN if
 * absent. A redirect is only answered for a copy the backend trusts without reading. */
typedef int blobstore_open_f(struct blobstore *bs, const struct digest *d,
                             uint64_t expected_size, uint64_t offset, uint64_t length,
                             unsigned accept, struct blobstore_body *out, struct err *e);

/* Blobs ------------------------------------------------------------------- */

/* Called by verify after each chunk read (bytes: the chunk's length): the scrub sleeps
 * here to keep its rate. Nonzero aborts the verification (ERR_UNAVAILABLE). */
typedef int blobstore_throttle_f(void *arg, uint64_t bytes);
/* Reads all of blob d and checks its size and digest (the scrub). 0 when good (the copy
 * is then marked verified); ERR_BLOB_CORRUPT when bad (it was set aside); ERR_BLOB_UNKNOWN
 * when absent; ERR_IO on a read error. */
typedef int blobstore_verify_f(struct blobstore *bs, const struct digest *d,
                               uint64_t expected_size, blobstore_throttle_f *throttle,
                               void *throttle_arg, struct err *e);
/* Size of blob d, or -1 with ERR_BLOB_UNKNOWN. */
typedef int blobstore_stat_f(struct blobstore *bs, const struct digest *d, uint64_t *size,
                             struct err *e);
/* Removes blob d's bytes (garbage collection). 0 when they are gone (missing is not an
 * error); -1 with e set (may be NULL; the backend logs the detail) when they may still be
 * there: a caller that counts removals counts that as an error. */
typedef int blobstore_remove_f(struct blobstore *bs, const struct digest *d, struct err *e);
/* Stores `len` bytes from memory as blob d durably (used for small blobs in tests and
 * tools). The caller verified d. */
typedef int blobstore_put_f(struct blobstore *bs, const struct digest *d, const void *p,
                            uint64_t len, struct err *e);
/* Removes every stored blob (this region was removed from its registry); returns how many
 * were removed. Upload sessions are not touched. */
typedef size_t blobstore_remove_all_f(struct blobstore *bs);
/* Lists the blobs the store holds, each with the time its copy was stored (ms since the
 * epoch): the file sweep (src/repl/blob_sweep.h) removes those the metastore has no row of.
 * fn is called after the part of the listing that names the blob is read (one of the 256
 * directories of blob files, one S3 page of 1 000 keys), so it may remove the blob, and
 * the listing holds only that part in memory. 0 when every blob was
 * listed; -1 with e set when part of the listing failed (a directory that cannot be read,
 * an S3 page that did not come): fn was called for the blobs listed before or beside it.
 * Optional: NULL in a backend that cannot list its blobs (S3 lists them, with each object's
 * LastModified). */
typedef int blobstore_each_blob_f(struct blobstore *bs,
                                  void (*fn)(const struct digest *d, int64_t stored_ms,
                                             void *arg),
                                  void *arg, struct err *e);
struct blobstore_quarantined;
/* Lists the copies found bad and set aside, oldest first: *out (caller frees) and *n (a
 * backend that keeps none answers 0). */
typedef void blobstore_quarantined_f(struct blobstore *bs, struct blobstore_quarantined **out,
                                     size_t *n);
typedef void blobstore_close_f(struct blobstore *bs);
/* Can the store take writes and serve reads now (/readyz)? A cheap probe, bounded by
 * timeout_ms where the backend waits on a network: fs writes and removes a small file,
 * S3 asks for the bucket (HEAD). 0, or -1 with e set (ERR_UNAVAILABLE or ERR_IO). */
typedef int blobstore_check_f(struct blobstore *bs, long timeout_ms, struct err *e);

/* Copies on volumes (optional: NULL in a backend that keeps one copy of each blob, which
 * then counts as one volume of every class). A store over several volumes keeps a blob's
 * copies on distinct volumes; blobstore_volumes.c is the filesystem one. */
struct blobstore_volume {
    const char *name;
    const char *klass; /* storage class, a short lower-case word ("standard") */
    const char *zone;  /* failure zone ("" when not given) */
};
/* The store's volumes (owned by the store, valid until close); *n set. */
typedef const struct blobstore_volume *blobstore_volumes_f(struct blobstore *bs, size_t *n);
/* Makes blob d (verified size expected_size) have exactly `copies` good copies on distinct
 * volumes of class klass, spread across zones where it can: missing ones are copied from a
 * good copy (re-verified against d as they are written), extra ones (of the class, and any
 * outside it once the class holds `copies`) removed. copies is at least 1 and at most the
 * class's volumes. ERR_BLOB_UNKNOWN when no good copy is left. *now: the copies in the class
 * afterwards (may be NULL). */
typedef int blobstore_place_f(struct blobstore *bs, const struct digest *d,
                              uint64_t expected_size, unsigned copies, const char *klass,
                              unsigned *now, struct err *e);
/* How many volumes of class klass (NULL: any) hold a copy of d (not re-read). */
typedef unsigned blobstore_copies_f(struct blobstore *bs, const struct digest *d,
                                    const char *klass);

struct blobstore_ops {
    const char *name;
    blobstore_upload_create_f *upload_create;
    blobstore_upload_open_f *upload_open;
    blobstore_upload_append_f *upload_append;
    blobstore_upload_flush_f *upload_flush;
    blobstore_upload_idle_f *upload_idle;
    blobstore_upload_truncate_f *upload_truncate;
    blobstore_upload_commit_f *upload_commit;
    blobstore_upload_close_f *upload_close;
    blobstore_upload_remove_f *upload_remove;
    blobstore_upload_each_f *upload_each;
    blobstore_open_f *open;
    blobstore_verify_f *verify;
    blobstore_stat_f *stat;
    blobstore_remove_f *remove;
    blobstore_put_f *put;
    blobstore_remove_all_f *remove_all;
    blobstore_quarantined_f *quarantined;
    blobstore_close_f *close;
    blobstore_check_f *check;
    blobstore_each_blob_f *each_blob; /* NULL: cannot list */
    blobstore_volumes_f *volumes; /* these three: NULL without volumes */
    blobstore_place_f *place;
    blobstore_copies_f *copies;
};

struct blobstore {
    const struct blobstore_ops *ops;
};

/* Opens the blobstore a registry keeps its blobs in, named by spec (--blobstore): NULL or
 * "" for the filesystem store under data_dir, "file://DIR" (or a path) for one under DIR.
 * Other schemes are refused here: s3:// is opened by the server with blobstore_s3_open
 * (src/s3/blobstore_s3.h), which joins this seam and the HTTP client one layer up.
 * NULL with e set on failure. */
struct blobstore *blobstore_open(const char *spec, const char *data_dir, struct err *e);

/* Opens a filesystem blobstore over volumes, each spec "NAME=PATH[,class=C][,zone=Z]"
 * (--volume; class defaults to "standard"). Upload sessions and quarantine live on the
 * first volume; a new blob lands there (or on the first volume of a class named by
 * place) and place() spreads its copies. Large reads are striped over the good
 * copies (a STREAM body), small ones go to the copies in turn; a copy found bad or
 * missing is skipped, and the next place() or verify repairs it from a sibling. NULL with
 * e set. */
struct blobstore *blobstore_volumes_open(char *const *specs, size_t n, struct err *e);

/* Opens the filesystem blobstore rooted at dir (created if missing); removes
 * leftover temporary files from a previous crash. NULL with e set on failure. */
struct blobstore *blobstore_fs_open(const char *dir, struct err *e);

/* A blob copy found bad and set aside, kept for inspection. */
struct blobstore_quarantined {
    struct digest digest;
    char file[192];          /* its name where it was set aside (fs: under DATA/quarantine/,
                              * <alg>-<hex>-<ms>) */
    int64_t quarantined_ms;  /* when it was moved there */
    bool is_repaired;        /* a good copy has been stored since */
};

#endif
