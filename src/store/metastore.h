/* The metadata seam: repositories, blob links, manifests, tags, referrers and upload
 * sessions. One ops table per backend (metastore_sqlite.c today, PostgreSQL later).
 * Handlers never build SQL.
 *
 * Every change goes through one of the mutating functions below, each of which is one
 * transaction that also appends an entry to the event log (table events), so that
 * geo-replication can later ship exactly those changes. A mutating function returns
 * only after its transaction is durable (synchronous=FULL).
 * All functions are safe to call from any thread concurrently. */
#ifndef MERIDIAN_METASTORE_H
#define MERIDIAN_METASTORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "digest.h"
#include "err.h"

struct metastore;

struct meta_manifest {
    struct digest digest;
    char *media_type;
    char *artifact_type;   /* NULL if none */
    char *annotations_json; /* NULL if none */
    char *body;            /* the exact bytes stored */
    size_t body_len;
};
void meta_manifest_fini(struct meta_manifest *m);

/* A reference from a manifest: a blob (config/layer) or a child manifest, with the size
 * its descriptor declares. */
struct meta_ref {
    struct digest digest;
    bool is_manifest;
    int64_t size;
};

struct meta_name_list {
    char **names;
    size_t n;
    bool has_more; /* more entries exist after the last one returned */
};
void meta_name_list_fini(struct meta_name_list *l);

struct meta_referrer {
    struct digest digest;
    char *media_type;
    char *artifact_type;
    char *annotations_json;
    int64_t size;
};
struct meta_referrer_list {
    struct meta_referrer *items;
    size_t n;
};
void meta_referrer_list_fini(struct meta_referrer_list *l);

/* Blobs: a blob is usable in a repository once linked to it. */
typedef int ms_blob_link_f(struct metastore *ms, const char *repo, const struct digest *d,
                           uint64_t size, struct err *e);
/* 0 if d is linked into repo (size set), -1 with ERR_BLOB_UNKNOWN otherwise. */
typedef int ms_blob_get_f(struct metastore *ms, const char *repo, const struct digest *d,
                          uint64_t *size, struct err *e);
/* 0 if the registry holds d in any repository (size set), else -1 ERR_BLOB_UNKNOWN.
 * For bookkeeping only: never a reason to serve or accept d in some repository. */
typedef int ms_blob_find_f(struct metastore *ms, const struct digest *d, uint64_t *size,
                           struct err *e);
/* Unlinks d from repo; ERR_BLOB_UNKNOWN if it was not linked. Sets *is_orphan when no
 * repository links it any more and no manifest references it (its bytes may go). */
typedef int ms_blob_unlink_f(struct metastore *ms, const char *repo, const struct digest *d,
                             bool *is_orphan, struct err *e);

/* Stores a manifest (idempotent for the same bytes) and optionally points tag at it,
 * in one transaction. Checks inside the transaction that every blob ref is linked in
 * repo and every manifest ref is visible in repo: ERR_MANIFEST_BLOB_UNKNOWN naming the
 * first missing digest (a blob linked only in other repositories is missing: it enters
 * repo by a push or by a mount, whose caller may read the source). Each ref's size must
 * equal the stored one: ERR_MANIFEST_INVALID otherwise. */
typedef int ms_manifest_put_f(struct metastore *ms, const char *repo,
                              const struct meta_manifest *m, const struct meta_ref *refs,
                              size_t n_refs, const struct digest *subject, const char *tag,
                              struct err *e);
/* Looks up by tag or by digest (reference is one or the other, already validated).
 * ERR_MANIFEST_UNKNOWN if absent (ERR_NAME_UNKNOWN if the repository does not exist). */
typedef int ms_manifest_get_f(struct metastore *ms, const char *repo, const char *reference,
                              struct meta_manifest *out, struct err *e);
/* Deletes manifest d and every tag pointing at it. ERR_MANIFEST_UNKNOWN if absent. */
typedef int ms_manifest_delete_f(struct metastore *ms, const char *repo,
                                 const struct digest *d, struct err *e);
/* Deletes a tag (the manifest stays). ERR_MANIFEST_UNKNOWN if absent. */
typedef int ms_tag_delete_f(struct metastore *ms, const char *repo, const char *tag,
                            struct err *e);
/* Tags of repo in lexical order after `last` (NULL = from the start), at most n
 * (n < 0 = all). ERR_NAME_UNKNOWN if the repository does not exist. */
typedef int ms_tag_list_f(struct metastore *ms, const char *repo, const char *last,
                          long n, struct meta_name_list *out, struct err *e);
/* Repositories in lexical order after `last`, at most n (n < 0 = all). */
typedef int ms_repo_list_f(struct metastore *ms, const char *last, long n,
                           struct meta_name_list *out, struct err *e);
/* Manifests of repo whose subject is d, optionally filtered by artifact type. */
typedef int ms_referrers_f(struct metastore *ms, const char *repo, const struct digest *d,
                           const char *artifact_type, struct meta_referrer_list *out,
                           struct err *e);

/* Upload sessions (region-local: not in the event log). ERR_CONFLICT if id exists.
 * source: the address of the client that starts the session (counted by
 * upload_count_from; the session tracks its acknowledged size, starting at 0), or NULL
 * for a region's own fetch session (not counted, not tracked). is_single_request: the
 * session of one monolithic POST (listed by upload_list_single). */
typedef int ms_upload_create_f(struct metastore *ms, const char *id, const char *repo,
                               int64_t expires_at_s, const char *source,
                               bool is_single_request, struct err *e);
/* The caps a client's new session must fit under, counted with its creation in one
 * write transaction (so concurrent starts cannot pass them together). */
struct meta_upload_caps {
    int64_t now_s;           /* sessions that expire before now_s are not counted */
    int64_t max_from_source; /* sessions from the session's source; 0: no cap */
    const char *owner;       /* who starts it (recorded for the next count); NULL: no one */
    int64_t max_owned;       /* sessions owner holds; 0: no cap */
};
/* Whether a new session from source would fit under caps now, without a transaction: a
 * cheap refusal (-1 ERR_TOOMANYREQUESTS) before anything is created; upload_create_capped
 * counts again, in the step that creates. */
typedef int ms_upload_caps_check_f(struct metastore *ms, const char *source,
                                   const struct meta_upload_caps *caps, struct err *e);
/* upload_create for a client's session, under caps: -1 ERR_TOOMANYREQUESTS (its message
 * names the cap) when the new session would pass one, and nothing is created. */
typedef int ms_upload_create_capped_f(struct metastore *ms, const char *id, const char *repo,
                                      int64_t expires_at_s, const char *source,
                                      bool is_single_request,
                                      const struct meta_upload_caps *caps, struct err *e);
/* 0 if session id exists for repo (repo NULL: for any), -1 ERR_BLOB_UPLOAD_UNKNOWN
 * otherwise. acked_bytes (may be NULL) receives the size last acknowledged to the client,
 * or -1 if the session does not track it. */
typedef int ms_upload_get_f(struct metastore *ms, const char *id, const char *repo,
                            int64_t *acked_bytes, struct err *e);
/* Records that the first acked_bytes bytes of session id were acknowledged to its client
 * (no-op for an untracked session). Synced before it returns, like a transaction: the
 * PATCH that it acknowledges is answered 202 only then. */
typedef int ms_upload_set_acked_f(struct metastore *ms, const char *id, uint64_t acked_bytes,
                                  struct err *e);
/* Ids of the sessions of monolithic POSTs (caller frees the list): at start no request
 * holds them, and no client knows their id, so they are left from a crash. */
typedef int ms_upload_list_single_f(struct metastore *ms, struct meta_name_list *out,
                                    struct err *e);
/* Number of sessions started from source that have not expired at now_s. */
typedef int ms_upload_count_from_f(struct metastore *ms, const char *source, int64_t now_s,
                                   int64_t *n, struct err *e);
/* ERR_BLOB_UPLOAD_UNKNOWN if id does not exist. */
typedef int ms_upload_delete_f(struct metastore *ms, const char *id, struct err *e);
/* The cross-node half of a session's exclusive use (upload_sessions.c): takes
 * (is_claim) or gives up the claim on session id, without waiting; *is_held says whether
 * this node holds it now. Held by the calling thread's connection, so a request gives it
 * up on the thread that took it; released by the database if the node dies. A store of
 * one process always grants it (the in-memory busy flag is the whole lock there). */
typedef int ms_upload_claim_f(struct metastore *ms, const char *id, bool is_claim,
                              bool *is_held, struct err *e);
/* Ids of the oldest sessions that count against a cap at now_s and were started before
 * started_before_s, at most max, oldest first (caller frees the list): those owner holds
 * when owner is not NULL, else those started from source. Sessions of monolithic POSTs are
 * left out (their request holds them). */
typedef int ms_upload_oldest_f(struct metastore *ms, const char *source, const char *owner,
                               int64_t now_s, int64_t started_before_s, size_t max,
                               struct meta_name_list *out, struct err *e);
/* Ids of sessions that expired before now_s (caller frees the list). */
typedef int ms_upload_list_expired_f(struct metastore *ms, int64_t now_s,
                                     struct meta_name_list *out, struct err *e);
/* Closes every connection and frees ms. No other thread may be using ms, or be exiting
 * after having used it, while this runs. NULL is accepted. */
typedef void ms_close_f(struct metastore *ms);
/* The calling thread is done with ms: its connection is closed now, not when the thread
 * exits. A detached thread calls it before it tells the thread that closes ms it is done
 * (else its exit would race the close). Nothing to do for a thread that never used ms. */
typedef void ms_thread_release_f(struct metastore *ms);

struct buf;

/* Replication feed: appends to out_json a JSON array of the events whose local sequence
 * number is above after_seq, oldest first, at most max of them:
 *   [{"seq":12,"origin":"westeurope","hlc":113..,"kind":"tag_set","repo":"a/b",
 *     "name":"v1","digest":"sha256:..","payload":{...}}, ...]
 * kind is blob_link, blob_unlink, manifest_put, tag_set, tag_delete or manifest_delete;
 * repo, name and digest are null when they do not apply. Fewer than max events are
 * returned when out_json's maximum would otherwise be passed. *last_seq is the seq of the
 * last event written, or after_seq when none was. ERR_IO on a storage failure,
 * ERR_INTERNAL if not even one event fits in out_json. */
typedef int ms_events_since_f(struct metastore *ms, int64_t after_seq, size_t max,
                              struct buf *out_json, int64_t *last_seq, struct err *e);

/* Replicated registry objects (replications, webhooks, ...): (kind, key) -> JSON value,
 * last-writer-wins by (hlc, origin) across regions. Each put/delete is an event.
 * object_get/object_delete: ERR_NOT_FOUND when absent (or deleted). object_list
 * returns keys and values (same order, by key). value_json must be a JSON object. */
typedef int ms_object_put_f(struct metastore *ms, const char *kind, const char *key,
                            const char *value_json, struct err *e);
/* object_create (an ms_object_put_f): as object_put, but ERR_CONFLICT when a live object of
 * kind and key exists, checked in the same write transaction as the write. */
typedef int ms_object_delete_f(struct metastore *ms, const char *kind, const char *key,
                               struct err *e);
typedef int ms_object_get_f(struct metastore *ms, const char *kind, const char *key,
                            char **value_json, struct err *e);
/* Whether (kind, key) is a live object here, or was deleted (its deletion applied). */
typedef int ms_object_exists_f(struct metastore *ms, const char *kind, const char *key,
                               bool *is_live, bool *is_deleted, struct err *e);
typedef int ms_object_list_f(struct metastore *ms, const char *kind, struct meta_name_list *keys,
                             struct meta_name_list *values, struct err *e);
/* false only when no object of kind exists (kinds the store tracks: repository locks,
 * live webhook definitions: META_WEBHOOK_KIND); true when some may (then look them up). */
#define META_WEBHOOK_KIND "webhook"

typedef bool ms_object_kind_may_exist_f(struct metastore *ms, const char *kind);

/* A unit of work: the operations this thread calls between write_begin and write_end run
 * in one write transaction, which commits (is_commit) or rolls back as a whole; each
 * operation's own transaction is a savepoint in it (one that fails or rolls back undoes
 * its own writes only). For an effect and what must be recorded with it, such as the
 * webhook deliveries that announce it (webhook.c): a crash keeps both or neither.
 * Holds the store's writer from begin to end: take no lock inside that a writer may wait
 * for. Not nested. write_begin: 0, or -1 with e set (nothing open). write_end: 0, or -1
 * with e set when the commit failed (nothing of the unit stays); a rollback returns 0. */
typedef int ms_write_begin_f(struct metastore *ms, struct err *e);
typedef int ms_write_end_f(struct metastore *ms, bool is_commit, struct err *e);

/* Replication --------------------------------------------------------------
 * Every change is an event stamped with its origin region, the origin's sequence
 * number and a hybrid logical clock. Events applied from peers are appended to the
 * local log too (keeping origin and origin_seq), so any region can relay them. */

struct meta_event {
    int64_t seq;         /* position in this region's log */
    char *origin;        /* region that made the change */
    int64_t origin_seq;  /* position in the origin's own numbering, from 1 */
    uint64_t hlc;
    char *kind;          /* see repl_apply.c for the kinds and their payloads */
    char *repo;          /* NULL if none */
    char *name;          /* tag or object key; NULL if none */
    char *digest;        /* NULL if none */
    char *payload;       /* JSON object text or NULL */
};
void meta_event_fini(struct meta_event *ev);

/* A version vector: per origin region, the highest origin_seq applied here. */
struct meta_vv {
    char **origins;
    int64_t *seqs;
    size_t n;
};
void meta_vv_fini(struct meta_vv *vv);
/* Highest seq of origin in vv, 0 if absent. */
int64_t meta_vv_get(const struct meta_vv *vv, const char *origin);

/* Reads up to max events at log positions > after_seq that vv does not cover (vv may
 * be NULL: all). *last_seq: the last log position examined (so the caller can resume
 * after it). Caller frees each event and the array. */
typedef int ms_events_read_f(struct metastore *ms, int64_t after_seq, const struct meta_vv *vv,
                             size_t max, struct meta_event **out, size_t *n_out,
                             int64_t *last_seq, struct err *e);
/* This region's version vector. */
typedef int ms_vv_get_f(struct metastore *ms, struct meta_vv *out, struct err *e);
/* Applies an event from a peer in one transaction: skipped (is_new false) when the
 * version vector already covers it or it is not the next of its origin (is_gap true);
 * otherwise merged into state by last-writer-wins, appended to the log and the
 * version vector advanced. A manifest_put is recorded not visible (pending content)
 * unless this region already shows it. */
typedef int ms_event_apply_f(struct metastore *ms, const struct meta_event *ev, bool *is_new,
                             bool *is_gap, struct err *e);

/* A manifest recorded but not yet visible here, and what it needs. */
struct meta_pending {
    char *repo;
    struct digest digest;
    char *origin;         /* region whose put is recorded (it holds the content), or "" */
    struct meta_ref *refs;
    size_t n_refs;
    int64_t *ref_sizes;   /* blob sizes as the manifest declares them (-1 for manifests) */
};
void meta_pending_fini(struct meta_pending *p);
typedef int ms_pending_list_f(struct metastore *ms, size_t max, struct meta_pending **out,
                              size_t *n_out, struct err *e);
/* Makes a pending manifest visible: links its blobs (which the caller has stored and
 * verified; sizes given) into the repository. Fails with ERR_MANIFEST_BLOB_UNKNOWN if a
 * child manifest is not visible yet. `done` (may be NULL): this region's status of it,
 * recorded as an event in the same transaction, so no crash leaves it visible here and
 * never announced. */
struct meta_status;
typedef int ms_pending_complete_f(struct metastore *ms, const struct meta_pending *p,
                                  const struct meta_status *done, struct err *e);

/* Replication status of one artifact in one region. */
struct meta_status {
    char *region;
    char *state;          /* Pending | InProgress | Completed | Failed */
    int64_t bytes_done;
    int64_t bytes_total;
    int64_t updated_ms;
    char *details;
    /* Copies of its blobs on the region's volumes of the target's storage class (the
     * copies pass reports them, repl/copies.c); has_copies false: not reported (a state
     * change, a region without volumes, an older release). */
    bool has_copies;
    int64_t copies;
};
/* Records this region's status of repo@digest; when is_event, also as a replicated
 * status event (state changes, not every progress tick), synced before it returns; a
 * status without an event is this region's row alone and does not wait for a sync. */
typedef int ms_status_set_f(struct metastore *ms, const char *repo, const struct digest *d,
                            const struct meta_status *st, bool is_event, struct err *e);
typedef int ms_status_list_f(struct metastore *ms, const char *repo, const struct digest *d,
                             struct meta_status **out, size_t *n_out, struct err *e);
/* Forgets every report of region (another one) about repo's artifacts: an enforced
 * residency policy made that region remove everything of repo (residency_enforce.c). */
typedef int ms_status_drop_region_f(struct metastore *ms, const char *repo, const char *region,
                                    struct err *e);
/* Forgets region's (another one's) report of repo@d if it was written before before_ms: a
 * report from before the region was taken out of the version's targets (placement.c). */
typedef int ms_status_drop_older_f(struct metastore *ms, const char *repo, const struct digest *d,
                                   const char *region, int64_t before_ms, struct err *e);
void meta_status_free(struct meta_status *list, size_t n);

/* Last log position of a peer this region has consumed (for resuming the stream). */
typedef int ms_cursor_get_f(struct metastore *ms, const char *peer, int64_t *seq,
                            struct err *e);
typedef int ms_cursor_set_f(struct metastore *ms, const char *peer, int64_t seq,
                            struct err *e);
/* Highest local log position (0 if empty). */
typedef int ms_log_head_f(struct metastore *ms, int64_t *seq, struct err *e);

/* A region restored from an older copy of its data (docs/replication.md, "A region
 * restored from an older copy"). RESTORED_KIND objects, keyed by the region's name, value
 * {"opened": H}: H is the clock at which that region opened the database it restarted
 * with; its reports with a clock below H are void everywhere but in the region itself,
 * which reports them again (the register keeps the highest H: meta_restored.c). */
#define RESTORED_KIND "region_restored"
/* The newest event of origin this log holds: its origin_seq and clock (0, 0 if none). */
typedef int ms_origin_newest_f(struct metastore *ms, const char *origin, int64_t *seq,
                               int64_t *hlc, struct err *e);
/* A peer holds this region's event numbered seq with clock hlc (the newest of this
 * region's name it holds). *opened_hlc: 0 when this log holds that very event, or cannot
 * tell (compacted); else this store's opening clock: the region lost events of its own
 * name that it had written before it opened its database (restored from an older copy). */
typedef int ms_restored_probe_f(struct metastore *ms, int64_t seq, int64_t hlc,
                                int64_t *opened_hlc, struct err *e);

/* Anti-entropy: per repository a digest over its visible tags (name, digest, hlc) and
 * manifests; written as a JSON object {"repo": "sha256:..."} into out. */
typedef int ms_summary_f(struct metastore *ms, struct buf *out, struct err *e);
/* The replicated state of one repository as a list of synthetic events (manifest_put
 * for each manifest with its body, tag_set/tag_delete for each tag register,
 * manifest_delete for each tombstone, object_put/object_delete for its image definition
 * and version records), for a peer to merge. */
typedef int ms_repo_state_f(struct metastore *ms, const char *repo, struct meta_event **out,
                            size_t *n_out, struct err *e);
/* Merges one synthetic state event (as from repo_state) without touching the log. A
 * tombstone record (manifest_delete, tag_delete) with a clock below tombs_before_hlc and at
 * or below the log horizon of its origin is left out, in the same transaction: it expired
 * here (tombs_expire with that cutoff), or would, and a peer that keeps tombstones longer
 * must not bring it back. tombs_before_hlc 0: every record is merged. */
typedef int ms_state_merge_f(struct metastore *ms, const struct meta_event *ev,
                             int64_t tombs_before_hlc, struct err *e);

/* Event-log compaction (meta_compact.c; docs/replication.md, "Compaction") -----------
 * A peer's acknowledgement is the version vector it sends when it pulls from this
 * region. Events every live peer has acknowledged are dropped from the log; the log
 * horizon records, per origin, the highest origin_seq at or below which this log may lack
 * events, so that a peer asking for events below it catches up from a snapshot of the
 * tables (repository states, objects, statuses) instead. */

struct meta_horizon {
    char *origin;
    int64_t seq; /* events of origin with origin_seq <= seq may be missing here */
    int64_t hlc; /* the clock of that origin's event number seq */
};
void meta_horizon_list_fini(struct meta_horizon *h, size_t n);
/* The horizon entry of origin in h (NULL when none). */
const struct meta_horizon *meta_horizon_find(const struct meta_horizon *h, size_t n,
                                             const char *origin);

struct meta_peer_ack {
    char *peer;
    char *vv;         /* "origin:seq,...", as the peer sent it */
    int64_t acked_ms; /* when */
};
void meta_peer_ack_list_fini(struct meta_peer_ack *a, size_t n);

/* Records what peer acknowledged (vv text) at now_ms; not synced (losing it only makes
 * compaction wait longer). */
typedef int ms_peer_ack_set_f(struct metastore *ms, const char *peer, const char *vv,
                              int64_t now_ms, struct err *e);
typedef int ms_peer_acks_f(struct metastore *ms, struct meta_peer_ack **out, size_t *n_out,
                           struct err *e);
/* The log horizon, one entry per origin that has one. */
typedef int ms_log_horizon_f(struct metastore *ms, struct meta_horizon **out, size_t *n_out,
                             struct err *e);
/* Per origin of the version vector, the newest event applied here: (origin, its
 * origin_seq, its clock; after a snapshot, the clock of the horizon). Events of an origin
 * not yet applied here carry a later clock (an origin's clock only grows). */
typedef int ms_origin_clocks_f(struct metastore *ms, struct meta_horizon **out, size_t *n_out,
                               struct err *e);
/* Drops, in one write transaction, up to max of the lowest events of origin with
 * origin_seq <= upto, and moves the horizon of origin past them. *n_deleted: how many. */
typedef int ms_log_compact_f(struct metastore *ms, const char *origin, int64_t upto, size_t max,
                             size_t *n_deleted, struct err *e);
/* Removes, in one write transaction, up to max manifest tombstones and deleted tag
 * registers whose clock is below before_hlc and at or below the horizon of their origin
 * (every live peer has applied them). *n_removed: how many. */
typedef int ms_tombs_expire_f(struct metastore *ms, int64_t before_hlc, size_t max,
                              size_t *n_removed, struct err *e);
/* After merging peer's snapshot taken at horizon h: the version vector and the log
 * horizon become at least h, and peer's log is read again from its start. */
typedef int ms_log_adopt_f(struct metastore *ms, const char *peer, const struct meta_horizon *h,
                           size_t n, struct err *e);
/* Every replicated object (not the derived image-version records) as object_put and
 * object_delete records, values opened, for a snapshot. */
typedef int ms_objects_state_f(struct metastore *ms, struct meta_event **out, size_t *n_out,
                               struct err *e);
/* The replication status rows of a repository as status records (origin: the region). */
typedef int ms_repo_statuses_f(struct metastore *ms, const char *repo, struct meta_event **out,
                               size_t *n_out, struct err *e);
/* Deletes win (a region back from beyond the horizon): removes the local record rec names
 * (manifest_put: the manifest with its references and tag rows; tag_set or tag_delete:
 * the register and its tag row) without an event. */
typedef int ms_state_forget_f(struct metastore *ms, const struct meta_event *rec, struct err *e);
/* Rows in the log and tombstones (manifest tombstones plus deleted tag registers). */
typedef int ms_log_stats_f(struct metastore *ms, int64_t *n_events, int64_t *n_tombs,
                           struct err *e);
/* Has peer applied the write that last set tag register repo:tag to d, as far as ack (the
 * version vector peer last acknowledged; NULL: none known) tells (docs/replication.md,
 * "The status of a tag")? Yes when peer made that write itself, when the register predates
 * replication (no origin), or when ack covers every event of the write's origin up to the
 * write's clock (an origin stamps its events with increasing clocks, but for those at the
 * lowest clock, skipped: meta_compact.c): the first event after ack[origin] in this log has
 * a later clock, or there is none and the write is not later than the newest event of that
 * origin applied here. No
 * when the register names no manifest or another one, when that event is compacted away
 * (ack is below this log's horizon: nothing tells), and when the register came from a
 * state merge ahead of its event. Reads only. */
typedef int ms_tag_acked_f(struct metastore *ms, const char *repo, const char *tag,
                           const struct digest *d, const char *peer, const struct meta_vv *ack,
                           bool *is_acked, struct err *e);

/* Webhook deliveries -------------------------------------------------------
 * Region-local (not in the event log): a delivery belongs to the region whose
 * webhook fired. Each add/update is one durable transaction. */

enum meta_delivery_state {
    META_DELIVERY_PENDING,   /* due at next_attempt_ms */
    META_DELIVERY_DELIVERED, /* a 2xx answer arrived */
    META_DELIVERY_FAILED,    /* gave up */
};

struct meta_delivery {
    char id[37];             /* UUID, also the "id" of the payload */
    char *webhook;           /* name of the webhook */
    char *action;            /* push | delete | ping */
    char *payload;           /* JSON body to send */
    enum meta_delivery_state state;
    int attempts;            /* attempts made so far */
    int status_code;         /* HTTP status of the last attempt; 0 if none answered */
    int64_t latency_ms;      /* of the last attempt; -1 before the first */
    char *response;          /* excerpt of the last answer or transport error, or NULL */
    int64_t created_ms;
    int64_t updated_ms;
    int64_t next_attempt_ms; /* when a pending delivery is due */
};
struct meta_delivery_list {
    struct meta_delivery *items;
    size_t n;
};
void meta_delivery_fini(struct meta_delivery *d);
void meta_delivery_list_fini(struct meta_delivery_list *l);

/* Stores n new deliveries in one transaction (ERR_CONFLICT if an id exists). */
typedef int ms_delivery_add_f(struct metastore *ms, const struct meta_delivery *items, size_t n,
                              struct err *e);
/* Pending deliveries due at now_ms, oldest due first, at most max, none of a webhook
 * named in skip (n_skip <= META_DELIVERY_SKIP_MAX names: webhooks with a send in flight,
 * whose later deliveries wait for it). *next_due_ms: when the earliest pending delivery
 * not returned is due (INT64_MAX if none). With claim_ms > 0
 * the deliveries returned are claimed in the same transaction: none is due again before
 * now_ms + claim_ms (the caller records each outcome, which sets its next attempt), so
 * the workers of several nodes sharing the store never send one delivery at once, and a
 * node that dies mid-send leaves its claims to the others when they run out. A claim also
 * locks its webhook for the calling thread's session until a call whose skip no longer
 * names it: no other node takes that webhook's deliveries meanwhile (one send at a time
 * per webhook across the nodes; a lock of a session idle for claim_ms is ignored). */
#define META_DELIVERY_SKIP_MAX 8
typedef int ms_delivery_due_f(struct metastore *ms, int64_t now_ms, int64_t claim_ms,
                              size_t max, const char *const *skip, size_t n_skip,
                              struct meta_delivery_list *out, int64_t *next_due_ms,
                              struct err *e);
/* Leases: work that one node of a region must do for all (server/lease.c). Holds lease
 * `name` for `holder` for ttl_ms from now when it is free, run out or already holder's;
 * *is_held tells whether holder has it now. "Now" is the shared store's clock, so the
 * nodes' clocks need not agree. ttl_ms 0 gives a held lease up (it runs out at once).
 * A store that only one process opens (SQLite) has no other holder: always held. */
typedef int ms_lease_hold_f(struct metastore *ms, const char *name, const char *holder,
                            int64_t ttl_ms, bool *is_held, struct err *e);
/* The cross-node half of the GC fence (gc_fence.h): takes (is_enter) or releases a lock
 * shared by every node of the store, shared or exclusive, on this thread's connection.
 * With is_try an exclusive enter does not wait: *is_held says whether it got the lock.
 * A store of one process (SQLite) has no other node: always held, nothing to do. */
typedef int ms_gc_fence_f(struct metastore *ms, bool is_exclusive, bool is_enter, bool is_try,
                          bool *is_held, struct err *e);
/* Records an attempt: state, attempts, status_code, latency_ms, response, updated_ms and
 * next_attempt_ms of the delivery d->id. ERR_NOT_FOUND if it does not exist. */
typedef int ms_delivery_update_f(struct metastore *ms, const struct meta_delivery *d,
                                 struct err *e);
/* Deliveries of webhook, newest first, at most max. */
typedef int ms_delivery_list_f(struct metastore *ms, const char *webhook, size_t max,
                               struct meta_delivery_list *out, struct err *e);
/* Deletes the finished deliveries of webhook except the newest keep. With gone_kind (the
 * kind of object that defines webhooks), the webhook is gone: its pending ones go too, but
 * only while no live object of that kind and name exists, checked in the same statement,
 * so a webhook re-created under the name meanwhile keeps what was queued for it. */
typedef int ms_delivery_prune_f(struct metastore *ms, const char *webhook, size_t keep,
                                const char *gone_kind, struct err *e);

/* Access control (authz.c) ----------------------------------------------------
 * Identities (users and robots, each with an Argon2id hash of its secret), role
 * bindings and the audit log. Identities and bindings replicate as objects of kinds
 * "identity" and "role_binding" (meta_access.c); the audit log is region-local. Every change
 * to identities or bindings (and to residency policies: authz.c keeps them parsed in its
 * snapshot) bumps a generation number in the same transaction, so that every node serving
 * this store notices it by polling auth_generation. */

struct meta_identity {
    char *name;
    char *kind;          /* "user" | "robot" */
    char *secret_hash;   /* encoded Argon2id string (secret.c) */
    char *description;   /* NULL if none */
    int64_t created_ms;
    int64_t expires_s;   /* robots: expiry (epoch seconds); 0 = never */
    bool is_bootstrap;   /* written at the lowest clock: any other write wins over it */
};
struct meta_binding {
    char *subject;       /* identity name or "anonymous" */
    char *role;          /* consumer | publisher | admin */
    char *pattern;       /* repository pattern ("*", "golden/<star>") */
    int64_t created_ms;
    bool is_bootstrap;   /* as in meta_identity */
};
struct meta_auth_state {
    struct meta_identity *identities;
    size_t n_identities;
    struct meta_binding *bindings;
    size_t n_bindings;
    int64_t generation;
};
void meta_auth_state_fini(struct meta_auth_state *s);

/* Creates an identity (is_create; ERR_CONFLICT when the name is taken) or replaces the
 * secret hash, description and expiry of an existing one of the same kind
 * (ERR_NOT_FOUND when there is none). */
typedef int ms_identity_put_f(struct metastore *ms, const struct meta_identity *id,
                              bool is_create, struct err *e);
/* Deletes identity name of kind (NULL: any kind) and every binding of it;
 * ERR_NOT_FOUND when absent. */
typedef int ms_identity_delete_f(struct metastore *ms, const char *name, const char *kind,
                                 struct err *e);
/* Adds (is_bound) or removes a binding. Adding is idempotent (*is_changed false when it
 * existed); removing an absent binding is ERR_NOT_FOUND. created_ms is ignored. */
typedef int ms_role_set_f(struct metastore *ms, const struct meta_binding *b, bool is_bound,
                          bool *is_changed, struct err *e);
/* Every identity and binding, and the generation they make up, from one snapshot. */
typedef int ms_auth_load_f(struct metastore *ms, struct meta_auth_state *out, struct err *e);
/* The current generation only (cheap; polled). */
typedef int ms_auth_generation_f(struct metastore *ms, int64_t *out, struct err *e);

struct meta_audit {
    int64_t id;          /* assigned by audit_append, increasing */
    int64_t time_ms;
    char *actor;         /* identity, "anonymous", "peer", or "-" when auth is off */
    char *action;        /* "manifest.put", "role.assign", "login.failed", ... */
    char *target;        /* "repo:ref", an identity, ...; NULL if none */
    int status;          /* HTTP status the request got */
    char *remote;        /* client address; "*" for refusals folded from many sources */
    char *detail;        /* short text or NULL; never a secret */
    int64_t count;       /* refusals this entry stands for (audit_agg.c); 1 for others */
    int64_t last_ms;     /* time of the last of them (= time_ms when count is 1) */
    char *region;        /* region the change was decided in; NULL (append): this one */
};
void meta_audit_free(struct meta_audit *list, size_t n);
struct meta_audit_query {
    int64_t before_id;   /* only entries with id < before_id; 0 = from the newest */
    size_t limit;        /* at most this many, newest first */
    const char *actor;   /* only this actor, or NULL */
    const char *action;  /* only actions starting with this, or NULL */
    const char *region;  /* only entries decided in this region, or NULL */
    const char *repository; /* only entries whose target is it or names it before '@'
                             * or ':' (manifest, blob, version), or NULL */
    int64_t since_ms;    /* only entries at or after this time (0: any) */
    int64_t until_ms;    /* only entries at or before this time (0: any) */
};
/* Appends a (its id and count are ignored: count 1) as entry *id_out, then deletes the
 * oldest entries so that at most max_rows remain (0: no cap; at most 100 per call, so
 * a table far over a lowered cap shrinks over the next appends). */
typedef int ms_audit_append_f(struct metastore *ms, const struct meta_audit *a,
                              uint64_t max_rows, int64_t *id_out, struct err *e);
/* Raises the count and last_ms of entry id to count and last_ms (never lowers them; an
 * entry already rotated out is no error). */
typedef int ms_audit_set_count_f(struct metastore *ms, int64_t id, int64_t count,
                                 int64_t last_ms, struct err *e);
typedef int ms_audit_list_f(struct metastore *ms, const struct meta_audit_query *q,
                            struct meta_audit **out, size_t *n_out, struct err *e);

/* Records who started upload session id (for the per-identity cap). */
typedef int ms_upload_set_owner_f(struct metastore *ms, const char *id, const char *owner,
                                  struct err *e);
/* Who started upload session id (*owner, heap; NULL when no one was recorded). */
typedef int ms_upload_owner_f(struct metastore *ms, const char *id, char **owner,
                              struct err *e);
/* Number of sessions owner holds that expire at or after now_s. */
typedef int ms_upload_count_owned_f(struct metastore *ms, const char *owner, int64_t now_s,
                                    int64_t *n, struct err *e);

/* Resolves reference (tag or digest) in repo whether or not the manifest is visible
 * here yet (replication status is answerable before content arrives). ERR_MANIFEST_UNKNOWN
 * if this region has no record of it. media_type: caller frees. recorded_ms: when this
 * region first recorded it. */
typedef int ms_manifest_lookup_f(struct metastore *ms, const char *repo, const char *reference,
                                 struct digest *d, char **media_type, int64_t *size,
                                 bool *is_visible, int64_t *recorded_ms, struct err *e);

/* The first repository (by name) other than `except` that holds manifest d, visible here or
 * not (caller frees *repo_out), or -1 with ERR_MANIFEST_UNKNOWN when none does. Lets an
 * image definition refuse a referrer whose subject lives in another repository. */
typedef int ms_manifest_holder_f(struct metastore *ms, const struct digest *d,
                                 const char *except, char **repo_out, struct err *e);

/* Tags of repo that point at manifest d (sorted). */
typedef int ms_manifest_tags_f(struct metastore *ms, const char *repo, const struct digest *d,
                               struct meta_name_list *out, struct err *e);

/* Every blob the registry records (digest and size), for a scrub of local copies. */
typedef int ms_blob_list_all_f(struct metastore *ms, struct meta_name_list *digests,
                               struct err *e);
/* The bytes of blob d were found missing here: every manifest needing it becomes
 * pending again (not visible until the blob is fetched back), and its links go. */
typedef int ms_blob_lost_f(struct metastore *ms, const struct digest *d, size_t *n_manifests,
                           struct err *e);

/* Garbage collection (meta_gc.c, issue 15) ------------------------------------------
 * A blob's reference count is the manifests naming it (manifest_refs) plus its links;
 * the review queue (gc_queue) holds the blobs whose count may have reached zero, each
 * with the time of its last change (a reference dropped, a link added). Region-local:
 * nothing here is an event. */
/* Queued digests whose last change is at or before cutoff_ms, in digest order after
 * `after` (NULL: from the start), at most max. */
typedef int ms_gc_due_f(struct metastore *ms, int64_t cutoff_ms, const char *after, size_t max,
                        struct meta_name_list *out, struct err *e);
/* Reviews n queued digests in one short transaction (is_dry_run: rolled back): for each
 * whose last change is still at or before cutoff_ms, drops its links from repositories
 * whose manifests (pending or visible) do not reference it, and when no link and no such
 * manifest is left, its blob record: is_orphan[i], with size_bytes[i], says its bytes
 * may go. Reviewed queue rows go either way (a later change queues the digest again). */
typedef int ms_gc_collect_f(struct metastore *ms, const char *const *digests, size_t n,
                            int64_t cutoff_ms, bool is_dry_run, bool *is_orphan,
                            int64_t *size_bytes, struct err *e);
/* Rows in the queue, and those of them due at cutoff_ms. */
typedef int ms_gc_queue_length_f(struct metastore *ms, int64_t cutoff_ms, int64_t *n_queued,
                                 int64_t *n_due, struct err *e);

/* Untagged manifests (meta_untagged.c, issue 15) ----------------------------------
 * The table `untagged` holds, per manifest with no tag here, the time it became so. The
 * collector lists those past the grace and owned by this region (the region named by the
 * manifest's put clock: one region decides each manifest, every region knows which), and
 * deletes each that nothing keeps -- no tag, no index naming it, no subject it refers to
 * still here -- as a tombstone marked {"gc":true}. A region applying such a tombstone
 * while something keeps the manifest there (a tag written concurrently in that region)
 * does not delete it but puts it again with a newer clock, so every region gets it back:
 * a collector's delete never loses a concurrently tagged image. */
struct meta_untagged {
    int64_t repo_id;   /* paging key with digest */
    char *repo;
    char *digest;
    int64_t since_ms;  /* untagged since */
    int64_t cutoff_ms; /* collect: only if still untagged since at or before this */
    bool is_deleted;   /* collect: it went (or, dry, would go) */
};
struct meta_untagged_list {
    struct meta_untagged *items;
    size_t n;
    bool has_more;
};
void meta_untagged_list_fini(struct meta_untagged_list *l);
/* Untagged manifests stamped at or before cutoff_ms, visible or recorded here (not
 * pending), whose put clock names region owner (or no region: data older than
 * replication), after (after_repo_id, after_digest) in that order, at most max. */
typedef int ms_untagged_due_f(struct metastore *ms, int64_t cutoff_ms, const char *owner,
                              int64_t after_repo_id, const char *after_digest, size_t max,
                              struct meta_untagged_list *out, struct err *e);
/* Decides items[0..n) in one write transaction (is_dry_run: rolled back): each still
 * untagged since at or before its cutoff_ms and kept by nothing is deleted as a
 * replicated tombstone; items[i].is_deleted says which. */
typedef int ms_untagged_collect_f(struct metastore *ms, struct meta_untagged *items, size_t n,
                                  bool is_dry_run, struct err *e);
/* Untagged manifests here, and those of them stamped at or before cutoff_ms. */
typedef int ms_untagged_count_f(struct metastore *ms, int64_t cutoff_ms, int64_t *n_untagged,
                                int64_t *n_due, struct err *e);

/* Retention (meta_retention.c, retention.h) ------------------------------------------ */
struct retention_tag;
/* The tags of repo present here, each with the clock of its register (its last write):
 * *out (n_out items; free with retention_tags_free). */
typedef int ms_tag_clocks_f(struct metastore *ms, const char *repo, struct retention_tag **out,
                            size_t *n_out, struct err *e);
void retention_tags_free(struct retention_tag *tags, size_t n);
/* Deletes tag of repo (a replicated tag delete) only if its register still names digest
 * at clock hlc; ERR_CONFLICT when it was written since (then nothing changes). */
typedef int ms_tag_delete_if_f(struct metastore *ms, const char *repo, const char *tag,
                               const char *digest, int64_t hlc, struct err *e);

/* Storage accounting: per repository, the bytes of the blobs linked to it here, split
 * into unique (linked to no other repository) and shared. */
struct meta_usage {
    char *repo;
    int64_t unique_bytes;
    int64_t shared_bytes;
    int64_t n_blobs;
};
struct meta_usage_list {
    struct meta_usage *items;
    size_t n;
    int64_t total_bytes; /* every blob held here, counted once */
};
void meta_usage_list_fini(struct meta_usage_list *l);
typedef int ms_storage_usage_f(struct metastore *ms, struct meta_usage_list *out, struct err *e);
/* Bytes of the blobs linked to repo here (0 if it does not exist). */
typedef int ms_repo_bytes_f(struct metastore *ms, const char *repo, int64_t *bytes, struct err *e);

/* Placement of image versions (image_version.h, docs/image-versions.md) -----------
 * A manifest recorded here is in one of three states: pending (content on its way),
 * visible (held and pullable), or not held (this region is not a target of its version:
 * it is known, reported, and never fetched). */
enum meta_placement {
    META_PLACEMENT_PENDING,
    META_PLACEMENT_VISIBLE,
    META_PLACEMENT_NOT_HELD,
};
/* Moves manifest repo@d between pending and not held: is_held makes a not-held manifest
 * pending again (the fetch workers bring its content), !is_held takes a pending one out
 * of the fetch queue. A visible one is left visible (see manifest_release). *before: its
 * state before the call. ERR_MANIFEST_UNKNOWN if not recorded here. on_pending (or NULL):
 * this region's status, written as a status event in the same transaction when a not-held
 * manifest becomes pending, so that it always precedes the fetch's own (Completed). */
typedef int ms_manifest_place_f(struct metastore *ms, const char *repo, const struct digest *d,
                                bool is_held, const struct meta_status *on_pending,
                                enum meta_placement *before, struct err *e);
/* A visible manifest this region stops holding (its region was removed from the
 * version's targets): in one transaction it becomes not held and the links of its blobs
 * in repo that no other visible manifest of repo references here go; those of them that
 * nothing here links or references any more are listed in orphans (their files may be
 * deleted by the caller). ERR_MANIFEST_UNKNOWN if not recorded; no-op unless visible. */
typedef int ms_manifest_release_f(struct metastore *ms, const char *repo, const struct digest *d,
                                  struct meta_name_list *orphans, struct err *e);
/* A region that does not hold a manifest keeps no copy of its document (its row keeps
 * digest, media type, size and references, and an empty body): *is_missing tells whether
 * repo@d is such a row, which must get its body (manifest_body_set) before it is shown.
 * ERR_MANIFEST_UNKNOWN if not recorded. */
typedef int ms_manifest_body_missing_f(struct metastore *ms, const char *repo,
                                       const struct digest *d, bool *is_missing, struct err *e);
/* Stores the document of a body-less row, fetched from a holder: refused (ERR_DIGEST_INVALID)
 * unless its digest and size are the recorded ones. A row with a body is left as it is. */
typedef int ms_manifest_body_set_f(struct metastore *ms, const char *repo, const struct digest *d,
                                   const void *body, size_t len, struct err *e);
/* The manifests of repo that repo@d belongs with (is_owners: the indexes that list it and
 * its subject) or that belong with it (!is_owners: its child manifests and the manifests
 * whose subject it is), as recorded here whatever their placement. Digests in out. */
typedef int ms_manifest_relatives_f(struct metastore *ms, const char *repo,
                                    const struct digest *d, bool is_owners,
                                    struct meta_name_list *out, struct err *e);
/* Shows a pending manifest without its blobs (a Shallow version: they are fetched on first
 * pull): ERR_MANIFEST_BLOB_UNKNOWN if a child manifest is not visible yet; no-op unless
 * pending. done (may be NULL): this region's status, written in the same transaction (an
 * event), as pending_complete does. */
typedef int ms_manifest_show_shallow_f(struct metastore *ms, const char *repo,
                                       const struct digest *d, const struct meta_status *done,
                                       struct err *e);
/* Does a manifest of repo that this region holds (visible or pending, not "not held")
 * reference blob d? */
typedef int ms_blob_is_wanted_f(struct metastore *ms, const char *repo, const struct digest *d,
                                bool *is_wanted, struct err *e);

/* Residency (residency.h) ------------------------------------------------------------
 * What this region holds of each repository, and the removal of all of it when a residency
 * policy forbids the region to hold the repository. */
struct meta_holding {
    char *repo;
    int64_t n_manifests; /* visible here (held: document and blobs) */
    int64_t n_blobs;     /* blobs linked to the repository here */
};
struct meta_holding_list {
    struct meta_holding *items;
    size_t n;
};
void meta_holding_list_fini(struct meta_holding_list *l);
/* Every repository with a manifest or blob held here, by name. */
typedef int ms_holdings_f(struct metastore *ms, struct meta_holding_list *out, struct err *e);
/* Removes everything this region keeps of repo, in one transaction: manifests (documents
 * included), tags and their registers, tombstones, blob links, replication status, upload
 * rows, the records of its image definition, versions and locks, and the content of every
 * event about it (each becomes a redacted stand-in: origin, sequence and clock only, so the
 * log's numbering holds). Blobs nothing here links or references any more go from the
 * blobs table and are listed in orphans (the caller deletes their files). On SQLite, when it
 * removed anything, the file is then rebuilt and its log emptied: no copy of a document is
 * left in the database file or its log, not even one an earlier write left behind where it
 * moved the row (writes wait meanwhile: about a second at 100 000 tags, 7 s at a million). On PostgreSQL the
 * removed rows stay in the table files as dead tuples until VACUUM FULL.
 * *n_manifests: manifests removed. No-op (0 removed) when nothing is kept. */
typedef int ms_repo_purge_f(struct metastore *ms, const char *repo, struct meta_name_list *orphans,
                            int64_t *n_manifests, struct err *e);
/* Is the database reachable and its schema there (/readyz)? One trivial read. 0, or -1
 * with e set (ERR_UNAVAILABLE when the server cannot be reached). */
typedef int ms_ping_f(struct metastore *ms, struct err *e);

struct metastore_ops {
    const char *name;
    ms_blob_link_f *blob_link;
    ms_blob_get_f *blob_get;
    ms_blob_find_f *blob_find;
    ms_blob_unlink_f *blob_unlink;
    ms_manifest_put_f *manifest_put;
    ms_manifest_get_f *manifest_get;
    ms_manifest_delete_f *manifest_delete;
    ms_tag_delete_f *tag_delete;
    ms_tag_list_f *tag_list;
    ms_repo_list_f *repo_list;
    ms_referrers_f *referrers;
    ms_upload_create_f *upload_create;
    ms_upload_create_capped_f *upload_create_capped;
    ms_upload_caps_check_f *upload_caps_check;
    ms_upload_get_f *upload_get;
    ms_upload_delete_f *upload_delete;
    ms_upload_claim_f *upload_claim;
    ms_upload_list_expired_f *upload_list_expired;
    ms_upload_set_acked_f *upload_set_acked;
    ms_upload_count_from_f *upload_count_from;
    ms_upload_list_single_f *upload_list_single;
    ms_upload_oldest_f *upload_oldest;
    ms_close_f *close;
    ms_thread_release_f *thread_release;
    ms_events_since_f *events_since;
    ms_object_put_f *object_put;
    ms_object_put_f *object_create;
    ms_object_delete_f *object_delete;
    ms_object_get_f *object_get;
    ms_object_exists_f *object_exists;
    ms_object_kind_may_exist_f *object_kind_may_exist;
    ms_write_begin_f *write_begin;
    ms_write_end_f *write_end;
    ms_object_list_f *object_list;
    ms_events_read_f *events_read;
    ms_vv_get_f *vv_get;
    ms_event_apply_f *event_apply;
    ms_pending_list_f *pending_list;
    ms_pending_complete_f *pending_complete;
    ms_status_set_f *status_set;
    ms_status_list_f *status_list;
    ms_status_drop_region_f *status_drop_region;
    ms_status_drop_older_f *status_drop_older;
    ms_cursor_get_f *cursor_get;
    ms_cursor_set_f *cursor_set;
    ms_log_head_f *log_head;
    ms_origin_newest_f *origin_newest;
    ms_restored_probe_f *restored_probe;
    ms_summary_f *summary;
    ms_repo_state_f *repo_state;
    ms_state_merge_f *state_merge;
    ms_delivery_add_f *delivery_add;
    ms_delivery_due_f *delivery_due;
    ms_delivery_update_f *delivery_update;
    ms_delivery_list_f *delivery_list;
    ms_delivery_prune_f *delivery_prune;
    /* access control */
    ms_identity_put_f *identity_put;
    ms_identity_delete_f *identity_delete;
    ms_role_set_f *role_set;
    ms_auth_load_f *auth_load;
    ms_auth_generation_f *auth_generation;
    ms_audit_append_f *audit_append;
    ms_audit_list_f *audit_list;
    ms_audit_set_count_f *audit_set_count;
    ms_upload_set_owner_f *upload_set_owner;
    ms_upload_owner_f *upload_owner;
    ms_upload_count_owned_f *upload_count_owned;
    ms_manifest_lookup_f *manifest_lookup;
    ms_manifest_tags_f *manifest_tags;
    ms_manifest_holder_f *manifest_holder;
    ms_blob_list_all_f *blob_list_all;
    ms_blob_lost_f *blob_lost;
    ms_manifest_place_f *manifest_place;
    ms_manifest_release_f *manifest_release;
    ms_manifest_body_missing_f *manifest_body_missing;
    ms_manifest_body_set_f *manifest_body_set;
    ms_manifest_relatives_f *manifest_relatives;
    ms_manifest_show_shallow_f *manifest_show_shallow;
    ms_blob_is_wanted_f *blob_is_wanted;
    ms_gc_due_f *gc_due;
    ms_gc_collect_f *gc_collect;
    ms_gc_queue_length_f *gc_queue_length;
    ms_untagged_due_f *untagged_due;
    ms_untagged_collect_f *untagged_collect;
    ms_untagged_count_f *untagged_count;
    ms_tag_clocks_f *tag_clocks;
    ms_tag_delete_if_f *tag_delete_if;
    ms_storage_usage_f *storage_usage;
    ms_repo_bytes_f *repo_bytes;
    ms_lease_hold_f *lease_hold;
    ms_gc_fence_f *gc_fence;
    ms_holdings_f *holdings;
    ms_repo_purge_f *repo_purge;
    ms_peer_ack_set_f *peer_ack_set; /* meta_compact.c */
    ms_peer_acks_f *peer_acks;
    ms_log_horizon_f *log_horizon;
    ms_origin_clocks_f *origin_clocks;
    ms_log_compact_f *log_compact;
    ms_tombs_expire_f *tombs_expire;
    ms_log_adopt_f *log_adopt;
    ms_objects_state_f *objects_state;
    ms_repo_statuses_f *repo_statuses;
    ms_state_forget_f *state_forget;
    ms_log_stats_f *log_stats;
    ms_tag_acked_f *tag_acked;
    ms_ping_f *ping;
};

struct metastore {
    const struct metastore_ops *ops;
};

/* Opens (creating if needed) the SQLite metastore at path, WAL mode, synchronous=FULL.
 * region names the origin stamped on event-log entries. NULL with e set on failure.
 * Each calling thread gets its own connection, opened on first use and closed when the
 * thread exits (or by close), so readers never wait for a writer. */
struct metastore *metastore_sqlite_open(const char *path, const char *region, struct err *e);

/* Opens the PostgreSQL metastore at conninfo (a libpq URI or key=value string), creating
 * or upgrading its schema under an advisory lock (several nodes may start at once).
 * ERR_UNAVAILABLE when the server cannot be reached. */
struct metastore *metastore_pg_open(const char *conninfo, const char *region, struct err *e);

/* The metastore spec names: postgres:// or postgresql:// URIs (PostgreSQL); NULL or ""
 * (SQLite at default_path); anything else is ERR_BAD_REQUEST. */
struct metastore *metastore_open(const char *spec, const char *default_path, const char *region,
                                 struct err *e);
/* Is spec one that metastore_open takes as PostgreSQL's? */
bool metastore_spec_is_pg(const char *spec);

/* Gives the store the 32-byte key that seals secrets at rest: the values of webhook
 * customHeaders are kept encrypted (secret_seal) in the objects table and the event log
 * and handed out in clear (to the webhook worker, and to peers, which seal them with their
 * own key). Also seals the rows written in clear before (by a version without this, or
 * before a key was given), and leaves no clear copy in the database or WAL file; rows still
 * in clear are read as they are. Call once, right after opening, before the store is
 * shared with other threads. ERR_IO on a storage failure. */
int metastore_sqlite_set_sealing_key(struct metastore *ms, const uint8_t key[32], struct err *e);

/* Test support for the query-plan test (tests/unit/test_query_plans.c), which runs EXPLAIN
 * QUERY PLAN over every statement the SQLite metastore prepares. */
/* The SQL of the i-th statement of the prepared-statement list and its name in *id; NULL
 * past the end. */
const char *metastore_sqlite_statement(size_t i, const char **id);
/* fn (NULL: none) is called with the text of every statement that any connection opened
 * afterwards starts to run, the statements prepared per call included. Set it before
 * opening a store; fn runs on the calling thread and must be thread-safe. */
typedef void metastore_sqlite_trace_f(void *arg, const char *sql);
void metastore_sqlite_trace(metastore_sqlite_trace_f *fn, void *arg);

#endif
