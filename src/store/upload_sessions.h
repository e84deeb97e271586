/* Upload sessions of this node: the durable part (a metastore row and the session's
 * bytes in the blobstore) plus, for sessions in use, an in-memory state holding the
 * blobstore's open upload handle (which hashes the bytes as they arrive, so a chunked
 * upload is hashed once). After a restart the handle is opened again from the store.
 * One request at a time may hold a session; a second one gets BLOB_UPLOAD_INVALID. */
#ifndef MERIDIAN_UPLOAD_SESSIONS_H
#define MERIDIAN_UPLOAD_SESSIONS_H

#include <stdbool.h>
#include <stdint.h>

#include "blobstore.h"
#include "digest.h"
#include "err.h"
#include "metastore.h"

struct upload_sessions;

struct upload_state {
    char id[33];
    char *repo;
    uint64_t offset;        /* bytes received (some may still be staged by the store) */
    struct blobstore_upload *upload; /* the store's handle: bytes, running hash, staging */
    bool is_busy;
    bool is_expiring; /* busy because the sweep removes it: gone for the client */
    bool is_ending;   /* busy, and its failed request is giving it back: wait for it */
    struct upload_state *next;
};

/* Idle sessions whose state (and open handle) a node keeps at most; see upload_sessions.c. */
#define UPLOAD_SESSIONS_MAX_IDLE 256
/* A client at its session cap has its oldest session no request holds replaced by the new
 * one, once that session is this old (seconds); until then it is refused 429. */
#define UPLOAD_SESSIONS_REPLACE_AFTER_S 600

struct upload_sessions *upload_sessions_new(struct blobstore *bs, struct metastore *ms);
/* Changes how many idle states are kept (tests). */
void upload_sessions_set_max_idle(struct upload_sessions *us, size_t n);
void upload_sessions_free(struct upload_sessions *us);

/* Creates a session for repo expiring ttl_s from now, started by a client at address
 * source; writes its id to id_out. is_single_request: for a monolithic POST, whose session
 * no client can resume. caps (NULL: none): the per-address and per-identity caps, checked
 * with the creation in one step (ERR_TOOMANYREQUESTS, and no session), after replacing the
 * client's oldest session that no request holds if it is UPLOAD_SESSIONS_REPLACE_AFTER_S
 * old. */
int upload_sessions_create(struct upload_sessions *us, const char *repo, int64_t ttl_s,
                           const char *source, bool is_single_request,
                           const struct meta_upload_caps *caps, char id_out[33],
                           struct err *e);
/* At start, before serving: removes the sessions of monolithic POSTs that a crash cut
 * (nobody can finish them) and returns how many. */
size_t upload_sessions_remove_orphans(struct upload_sessions *us);
/* On a running node: removes the sessions of monolithic POSTs that seen_before (the
 * previous call's seen_now) listed too and that no request holds (their claim is free,
 * so the request that wrote them is gone: it holds the claim from just after creating
 * the session until it ends). The two calls apart cover the moment between creating
 * such a session and claiming it. seen_now receives the ids left (caller frees it).
 * Returns how many went. */
size_t upload_sessions_sweep_singles(struct upload_sessions *us,
                                     const struct meta_name_list *seen_before,
                                     struct meta_name_list *seen_now);
/* How long a request that writes to a session waits for a holder that is ending. A request
 * whose client went away mid-body still holds its session while it cuts its bytes away,
 * and on the scale-out tier a node killed mid-request keeps its claim until the database
 * notices its connection closed, a few milliseconds later: a client that resumes at once
 * (as it may) would otherwise be told the session is in use. A live holder still gets its
 * one request at a time: a request that finds it in this node's table is refused at once;
 * one that meets it at the claim (through another node, which cannot tell a live holder
 * from a dead one, or on this node before the session is loaded) waits, then finds the
 * session moved on (416) or, past the wait, in use. */
#define UPLOAD_SESSIONS_WAIT_MS 1000
/* Requests of this node that may wait at once; past them, a request is answered at once,
 * so that requests at a held session cannot tie up every HTTP worker. */
#define UPLOAD_SESSIONS_MAX_WAITING 4

/* Takes exclusive use of session id of repo, waiting up to wait_ms for a holder that is
 * ending (0: a status request, which answers with the acknowledged size instead).
 * ERR_BLOB_UPLOAD_UNKNOWN if there is no such session for repo, ERR_BLOB_UPLOAD_INVALID
 * if another request still holds it. A client session loaded from storage (after a
 * restart) is cut back to the size last acknowledged to its client: bytes of a request
 * that a crash interrupted are dropped. */
int upload_sessions_acquire(struct upload_sessions *us, const char *id, const char *repo,
                            long wait_ms, struct upload_state **out, struct err *e);
/* Marks a held session as being given back by its failed request (before the bytes it
 * wrote are cut away): requests that come meanwhile wait for it instead of being told
 * the session is in use. */
void upload_sessions_ending(struct upload_sessions *us, struct upload_state *st);
/* Requests of this node waiting in acquire for a session (for tests). */
size_t upload_sessions_waiting(struct upload_sessions *us);
/* Like acquire, but creates session id (a caller-chosen 32-hex id) for repo when it
 * does not exist: replication fetches name their session after the blob's digest so
 * that a transfer broken by a crash resumes from the bytes already on disk. */
int upload_sessions_acquire_or_create(struct upload_sessions *us, const char *id,
                                      const char *repo, int64_t ttl_s,
                                      struct upload_state **out, struct err *e);
/* Gives the session back; bytes still staged are written first (a failure to write them
 * is logged and the session keeps only what its file holds). */
void upload_sessions_release(struct upload_sessions *us, struct upload_state *st);
/* Appends bytes to the session through the blobstore's upload handle (which hashes them
 * and may stage them). ERR_IO / ERR_NO_SPACE on failure, after which the caller cuts the
 * session back with upload_sessions_truncate. */
int upload_sessions_append(struct upload_sessions *us, struct upload_state *st, const void *p,
                           size_t n, struct err *e);
/* Stores every byte received (not durable yet): before telling a client how much of its
 * upload the session holds. ERR_IO / ERR_NO_SPACE on failure. */
int upload_sessions_flush(struct upload_sessions *us, struct upload_state *st, struct err *e);
/* Records the session's size as acknowledged to its client (call after a successful
 * flush, before the reply): a crash later resumes the session there. ERR_IO on failure. */
int upload_sessions_acknowledge(struct upload_sessions *us, struct upload_state *st,
                                struct err *e);
/* Cuts the session back to `offset` bytes, undoing a failed request's appends. */
int upload_sessions_truncate(struct upload_sessions *us, struct upload_state *st,
                             uint64_t offset, struct err *e);
/* Has the store verify the bytes against want (ERR_DIGEST_INVALID if they differ) and
 * commit them as a blob (durable). The session stays held; delete it after linking. */
int upload_sessions_commit(struct upload_sessions *us, struct upload_state *st,
                           const struct digest *want, struct err *e);
/* Ends a held session: its row, file and state go. */
void upload_sessions_delete(struct upload_sessions *us, struct upload_state *st);
/* Removes an idle session by id (expiry). 0 if removed, -1 if busy or unknown. */
int upload_sessions_expire(struct upload_sessions *us, const char *id);
/* Is a request holding session id right now? */
bool upload_sessions_is_active(struct upload_sessions *us, const char *id);

#endif
