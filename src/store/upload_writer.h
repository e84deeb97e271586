/* Upload writer: takes the hashing and writing of large uploads off the request thread.
 * The filesystem blobstore's upload handle drives it (blobstore_fs.c); nothing above the
 * blob seam sees its file descriptor.
 *
 * An upload's first UPLOAD_WRITER_INLINE_BYTES are hashed and written on the request
 * thread as they arrive, so small blobs never leave it. After that the request thread
 * only copies the bytes into staging buffers; each full buffer goes down two lanes run
 * by a shared pool of threads: the hash lane feeds it to the running SHA-256, the write
 * lane writes it to the file. Each lane takes an upload's buffers in order, one at a
 * time, and the lanes run at the same time, so reading the socket, hashing and writing
 * overlap on different cores. A buffer is reused once both lanes are done with it.
 *
 * Staged buffers start at file offsets aligned to UPLOAD_WRITER_ALIGN and are written
 * with O_DIRECT: the bytes go from the buffer to the disk without a copy into the page
 * cache, so the commit's fsync has little left to write, the cache keeps what is being
 * read, and the speed does not depend on how fast the kernel finds free pages (on a
 * virtual machine that can be a quarter of the disk's speed; docs/performance.md).
 * Where O_DIRECT is refused (tmpfs, some network filesystems) the writes are buffered
 * and the kernel's writeback is started every UPLOAD_WRITER_WRITEBACK_BYTES instead.
 *
 * A stream is used by one request thread at a time (the upload session's holder). */
#ifndef MERIDIAN_UPLOAD_WRITER_H
#define MERIDIAN_UPLOAD_WRITER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "digest.h"

#define UPLOAD_WRITER_INLINE_BYTES (1u << 20)
#define UPLOAD_WRITER_BUFFERS 4
#define UPLOAD_WRITER_BUFFER_BYTES (256u * 1024)
#define UPLOAD_WRITER_ALIGN 4096u
/* Writeback of buffered writes is started in steps of this many bytes. */
#define UPLOAD_WRITER_WRITEBACK_BYTES (8u << 20)

struct upload_writer;
struct upload_stream;

enum upload_lane_kind { UPLOAD_LANE_HASH, UPLOAD_LANE_WRITE, UPLOAD_LANE_COUNT };

/* The buffers of one upload waiting for one kind of work, in file order. */
struct upload_lane {
    struct upload_stream *stream;
    enum upload_lane_kind kind;
    unsigned queue[UPLOAD_WRITER_BUFFERS];
    unsigned head, len;
    bool is_scheduled;          /* on the pool's ready list or being worked on */
    struct upload_lane *next_ready;
};

/* One upload's file, hash and staging buffers. Callers read `written` and set `hasher`
 * (rebuilt from the file) only when nothing is staged or in a lane (after flush or
 * discard). */
struct upload_stream {
    int fd;                     /* the upload file */
    struct hasher *hasher;      /* SHA-256 of the bytes appended; NULL: caller rebuilds */
    uint64_t written;           /* bytes in the file */
    uint64_t writeback_from;    /* buffered bytes before this are being written back */
    bool is_direct;             /* fd has O_DIRECT set */
    bool is_direct_refused;     /* the filesystem refused O_DIRECT: buffered only */
    char *buf[UPLOAD_WRITER_BUFFERS];     /* mapped once the upload is large */
    size_t len[UPLOAD_WRITER_BUFFERS];
    unsigned pending[UPLOAD_WRITER_BUFFERS];  /* lanes still to process buf[i] */
    int cur;                    /* buffer being filled, or -1 */
    uint64_t staged_from;       /* file offset of buf[cur][0] */
    size_t staged;              /* bytes in buf[cur] */
    struct upload_lane lanes[UPLOAD_LANE_COUNT];
    int lane_errno;             /* a write lane's failure, reported by the next call */
};

/* Starts n_threads pool threads (at least two, so that the lanes overlap). */
struct upload_writer *upload_writer_new(unsigned n_threads);
/* Stops the threads; every stream must be flushed or discarded. */
void upload_writer_free(struct upload_writer *w);

/* Prepares s for a file of `size` bytes already written (hasher NULL). */
void upload_stream_init(struct upload_stream *s, int fd, uint64_t size);
/* Appends bytes. 0, or the errno of this write or of an earlier one in the write lane;
 * after a failure the caller discards and cuts the file back. */
int upload_writer_append(struct upload_writer *w, struct upload_stream *s, const void *p,
                         size_t n);
/* Puts every appended byte into the file and the hash, and leaves the fd without
 * O_DIRECT so that the caller can read it back. 0 or an errno. */
int upload_writer_flush(struct upload_writer *w, struct upload_stream *s);
/* Waits for s's lanes, then drops staged bytes and any failure: the file holds
 * `written` bytes, which the caller may cut back. The hash is dropped (NULL) if it
 * covered more than the file holds. */
void upload_writer_discard(struct upload_writer *w, struct upload_stream *s);
/* Discards, then cuts the file back to `size` (at most `written`) bytes; the hash is
 * dropped (NULL) if bytes were cut. 0 or an errno. */
int upload_writer_truncate(struct upload_writer *w, struct upload_stream *s, uint64_t size);
/* Unmaps the staging buffers of a flushed or discarded stream (kept while the upload is
 * between requests they would cost memory for nothing). */
void upload_stream_release(struct upload_stream *s);

#endif
