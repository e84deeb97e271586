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

/* A reference from a manifest: a blob (config/layer) or a child manifest. */
struct meta_ref {
    struct digest digest;
    bool is_manifest;
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
/* 0 if the registry holds d in any repository (size set), else -1 ERR_BLOB_UNKNOWN. */
typedef int ms_blob_find_f(struct metastore *ms, const struct digest *d, uint64_t *size,
                           struct err *e);
/* Unlinks d from repo; ERR_BLOB_UNKNOWN if it was not linked. Sets *is_orphan when no
 * repository links it any more and no manifest references it (its bytes may go). */
typedef int ms_blob_unlink_f(struct metastore *ms, const char *repo, const struct digest *d,
                             bool *is_orphan, struct err *e);

/* Stores a manifest (idempotent for the same bytes) and optionally points tag at it,
 * in one transaction. Checks inside the transaction that every blob ref is linked in
 * repo (a blob held elsewhere in the registry is linked: a mount) and every manifest
 * ref exists in repo: ERR_MANIFEST_BLOB_UNKNOWN naming the first missing digest. */
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

/* Upload sessions (region-local: not in the event log). ERR_CONFLICT if id exists. */
typedef int ms_upload_create_f(struct metastore *ms, const char *id, const char *repo,
                               int64_t expires_at_s, struct err *e);
/* 0 if session id exists for repo, -1 ERR_BLOB_UPLOAD_UNKNOWN otherwise. */
typedef int ms_upload_get_f(struct metastore *ms, const char *id, const char *repo,
                            struct err *e);
/* ERR_BLOB_UPLOAD_UNKNOWN if id does not exist. */
typedef int ms_upload_delete_f(struct metastore *ms, const char *id, struct err *e);
/* Ids of sessions that expired before now_s (caller frees the list). */
typedef int ms_upload_list_expired_f(struct metastore *ms, int64_t now_s,
                                     struct meta_name_list *out, struct err *e);
/* Closes every connection and frees ms. No other thread may be using ms, or be exiting
 * after having used it, while this runs. NULL is accepted. */
typedef void ms_close_f(struct metastore *ms);

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
    ms_upload_get_f *upload_get;
    ms_upload_delete_f *upload_delete;
    ms_upload_list_expired_f *upload_list_expired;
    ms_close_f *close;
    ms_events_since_f *events_since;
};

struct metastore {
    const struct metastore_ops *ops;
};

/* Opens (creating if needed) the SQLite metastore at path, WAL mode, synchronous=FULL.
 * region names the origin stamped on event-log entries. NULL with e set on failure.
 * Each calling thread gets its own connection, opened on first use and closed when the
 * thread exits (or by close), so readers never wait for a writer. */
struct metastore *metastore_sqlite_open(const char *path, const char *region, struct err *e);

#endif
