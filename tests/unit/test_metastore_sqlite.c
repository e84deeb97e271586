/* Unit tests for the SQLite metastore: every op and its error codes, mounts, delete
 * cascades, pagination edges, referrers, upload expiry, the event log, concurrent
 * writers and readers that must not wait for a writer.
 * This test opens its own raw SQLite connection in two places, standing in for another
 * process on the same file (a second node, an operator's sqlite3 shell): to hold the
 * write lock for as long as it likes, and to inspect or damage the schema. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <ftw.h>
#include <inttypes.h>
#include <jansson.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base64.h"
#include "buf.h"
#include "log.h"
#include "log_copier.h"
#include "schema_back_to_v2.h"
#include "sql_driver.h"
#include "metastore.h"
#include "metastore_sqlite_int.h"
#include "restored_contract.h"
#include "util.h"

#define REGION "westeurope"
#define MT_MANIFEST "application/vnd.oci.image.manifest.v1+json"
#define MT_INDEX "application/vnd.oci.image.index.v1+json"

struct fixture {
    char dir[64];
    char path[96];
    struct metastore *ms;
};

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int teardown(void **state);

static int setup(void **state)
{
    struct fixture *f = xcalloc(1, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "/tmp/meridian-ms-XXXXXX");
    if (mkdtemp(f->dir) == NULL)
        return -1;
    snprintf(f->path, sizeof(f->path), "%s/meta.db", f->dir);
    struct err e = {0};
    f->ms = metastore_sqlite_open(f->path, REGION, &e);
    *state = f;
    if (f->ms == NULL) {
        teardown(state); /* cmocka skips teardown when setup fails */
        return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    if (f->ms != NULL)
        f->ms->ops->close(f->ms);
    nftw(f->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

/* A well-formed sha256 digest derived from seed; the metastore never hashes. */
static struct digest dg(unsigned seed)
{
    struct digest d = {.alg = DIGEST_SHA256};
    int n = snprintf(d.str, sizeof(d.str), "sha256:");
    for (unsigned i = 0; i < 8; i++)
        n += snprintf(d.str + n, sizeof(d.str) - (size_t)n, "%08x", seed * 2654435761u + i);
    return d;
}

/* A manifest whose body is derived from seed (and contains a NUL byte, to prove the
 * body is stored as bytes). body must have room for 128 bytes. */
static struct meta_manifest mf(unsigned seed, char *body, const char *artifact_type)
{
    struct meta_manifest m = {0};
    int n = snprintf(body, 128, "{\"schemaVersion\":2,\"seed\":%u}", seed);
    body[n] = '\0';
    m.digest = dg(100000 + seed);
    m.media_type = (char *)MT_MANIFEST;
    m.artifact_type = (char *)artifact_type;
    m.annotations_json = artifact_type ? (char *)"{\"k\":\"v\"}" : NULL;
    m.body = body;
    m.body_len = (size_t)n + 1;
    return m;
}

static void link_blob(struct metastore *ms, const char *repo, unsigned seed, uint64_t size)
{
    struct err e = {0};
    struct digest d = dg(seed);
    assert_int_equal(ms->ops->blob_link(ms, repo, &d, size, &e), 0);
}

static json_t *events_json(struct metastore *ms, int64_t after)
{
    struct buf b;
    struct err e = {0};
    int64_t last = -1;
    json_error_t je;
    buf_init(&b, 1 << 24);
    assert_int_equal(ms->ops->events_since(ms, after, 1000000, &b, &last, &e), 0);
    json_t *arr = json_loadb(b.data, b.len, 0, &je);
    buf_fini(&b);
    assert_non_null(arr);
    assert_true(json_is_array(arr));
    return arr;
}

static size_t event_count(struct metastore *ms)
{
    json_t *arr = events_json(ms, 0);
    size_t n = json_array_size(arr);
    json_decref(arr);
    return n;
}

static const char *ev_str(json_t *ev, const char *key)
{
    json_t *v = json_object_get(ev, key);
    assert_non_null(v);
    return json_is_null(v) ? NULL : json_string_value(v);
}

/* The events after `after` that record a metadata change; other kinds (replication
 * status reports) are left out so these tests assert only what they are about. */
static json_t *change_events(struct metastore *ms, int64_t after)
{
    static const char *const change_kinds[] = {"blob_link", "blob_unlink",  "manifest_put",
                                               "tag_set",   "tag_delete",   "manifest_delete",
                                               "superseded"};
    json_t *all = events_json(ms, after);
    json_t *out = json_array();
    for (size_t i = 0; i < json_array_size(all); i++) {
        json_t *ev = json_array_get(all, i);
        for (size_t k = 0; k < sizeof(change_kinds) / sizeof(change_kinds[0]); k++) {
            if (strcmp(ev_str(ev, "kind"), change_kinds[k]) == 0)
                json_array_append(out, ev);
        }
    }
    json_decref(all);
    return out;
}

/* Asserts the kinds of the change events after `after`, in order. */
static void assert_kinds(struct metastore *ms, int64_t after, const char *const *kinds, size_t n)
{
    json_t *arr = change_events(ms, after);
    assert_int_equal(json_array_size(arr), n);
    for (size_t i = 0; i < n; i++)
        assert_string_equal(ev_str(json_array_get(arr, i), "kind"), kinds[i]);
    json_decref(arr);
}

static int64_t last_seq(struct metastore *ms)
{
    json_t *arr = events_json(ms, 0);
    size_t n = json_array_size(arr);
    int64_t seq = n ? json_integer_value(json_object_get(json_array_get(arr, n - 1), "seq")) : 0;
    json_decref(arr);
    return seq;
}

/* Opening ----------------------------------------------------------------- */

static void test_open_sets_up_schema(void **state)
{
    struct fixture *f = *state;
    sqlite3 *db;
    sqlite3_stmt *s;
    assert_string_equal(f->ms->ops->name, "sqlite");
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    /* Later schema versions add tables; these must always be there. */
    static const char *checks[][2] = {
        {"SELECT user_version >= 1 FROM pragma_user_version", "1"},
        {"PRAGMA journal_mode", "wal"},
        {"SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN ('blobs', 'events',"
         " 'manifest_ref_seqs', 'manifests', 'repo_blobs', 'repos', 'tag_regs', 'uploads')",
         "8"},
        /* Version 10: the tags of a repository are its registers that name a manifest. */
        {"SELECT type FROM sqlite_master WHERE name = 'tags'", "view"},
        /* Version 11: references name their manifest by seq; manifest_refs a view. */
        {"SELECT type FROM sqlite_master WHERE name = 'manifest_refs'", "view"},
    };
    for (size_t i = 0; i < sizeof(checks) / sizeof(checks[0]); i++) {
        assert_int_equal(sqlite3_prepare_v2(db, checks[i][0], -1, &s, NULL), SQLITE_OK);
        assert_int_equal(sqlite3_step(s), SQLITE_ROW);
        assert_string_equal((const char *)sqlite3_column_text(s, 0), checks[i][1]);
        sqlite3_finalize(s);
    }
    sqlite3_close(db);
}

static void test_reopen_keeps_data_and_clock(void **state)
{
    struct fixture *f = *state;
    struct err e = {0};
    char body[128];
    struct meta_manifest m = mf(1, body, NULL);
    struct meta_manifest got;

    assert_int_equal(f->ms->ops->manifest_put(f->ms, "r", &m, NULL, 0, NULL, "v1", &e), 0);
    json_t *before = events_json(f->ms, 0);
    json_t *newest = json_array_get(before, json_array_size(before) - 1);
    json_int_t hlc_before = json_integer_value(json_object_get(newest, "hlc"));
    int64_t seq_before = json_integer_value(json_object_get(newest, "seq"));
    json_decref(before);
    f->ms->ops->close(f->ms);

    f->ms = metastore_sqlite_open(f->path, REGION, &e);
    assert_non_null(f->ms);
    assert_int_equal(f->ms->ops->manifest_get(f->ms, "r", "v1", &got, &e), 0);
    assert_string_equal(got.digest.str, m.digest.str);
    meta_manifest_fini(&got);
    assert_int_equal(f->ms->ops->tag_delete(f->ms, "r", "v1", &e), 0);
    /* The log continues after the restart, and its clock never goes back. */
    json_t *after = events_json(f->ms, seq_before);
    assert_true(json_array_size(after) >= 1);
    for (size_t i = 0; i < json_array_size(after); i++)
        assert_true(json_integer_value(json_object_get(json_array_get(after, i), "hlc")) >
                    hlc_before);
    json_decref(after);
    static const char *const kinds[] = {"tag_delete"};
    assert_kinds(f->ms, seq_before, kinds, 1);
}

static void test_open_failures(void **state)
{
    struct fixture *f = *state;
    struct err e = {0};
    char path[128];
    sqlite3 *db;

    snprintf(path, sizeof(path), "%s/missing/dir/meta.db", f->dir);
    assert_null(metastore_sqlite_open(path, REGION, &e));
    assert_int_equal(e.code, ERR_IO);

    /* A database written by a newer build is refused rather than misread. */
    snprintf(path, sizeof(path), "%s/newer.db", f->dir);
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "PRAGMA user_version = 99", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    e.code = ERR_NONE;
    assert_null(metastore_sqlite_open(path, REGION, &e));
    assert_int_equal(e.code, ERR_IO);
}

static void test_sqlite_error_is_generic_io(void **state)
{
    struct fixture *f = *state;
    struct err e = {0};
    sqlite3 *db;
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "DROP TABLE uploads", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);

    assert_int_equal(f->ms->ops->upload_create(f->ms, "u1", "r", 10, NULL, false, &e), -1);
    assert_int_equal(e.code, ERR_IO);
    /* Nothing of SQLite's reaches the client. */
    assert_string_equal(err_message(&e), err_default_message(ERR_IO));
}

/* Blobs ------------------------------------------------------------------- */

static void test_blob_link_get_find_unlink(void **state)
{
    struct fixture *f = *state;
    struct metastore *ms = f->ms;
    struct err e = {0};
    struct digest d = dg(1);
    uint64_t size = 0;
    bool is_orphan = true;

    assert_int_equal(ms->ops->blob_find(ms, &d, &size, &e), -1);
    assert_int_equal(e.code, ERR_BLOB_UNKNOWN);

    link_blob(ms, "a", 1, 1234);
    link_blob(ms, "a", 1, 1234); /* idempotent: no second event */
    assert_int_equal(ms->ops->blob_get(ms, "a", &d, &size, &e), 0);
    assert_int_equal(size, 1234);
    assert_int_equal(ms->ops->blob_get(ms, "b", &d, &size, &e), -1);
    assert_int_equal(e.code, ERR_BLOB_UNKNOWN);
    size = 0;
    assert_int_equal(ms->ops->blob_find(ms, &d, &size, &e), 0);
    assert_int_equal(size, 1234);

    /* Unlinking where it is not linked. */
    assert_int_equal(ms->ops->blob_unlink(ms, "nosuchrepo", &d, &is_orphan, &e), -1);
    assert_int_equal(e.code, ERR_BLOB_UNKNOWN);
    link_blob(ms, "b", 2, 5);
    e.code = ERR_NONE;
    assert_int_equal(ms->ops->blob_unlink(ms, "b", &d, &is_orphan, &e), -1);
    assert_int_equal(e.code, ERR_BLOB_UNKNOWN);

    link_blob(ms, "b", 1, 1234);
    assert_int_equal(ms->ops->blob_unlink(ms, "a", &d, &is_orphan, &e), 0);
    assert_false(is_orphan); /* still linked in b */
    assert_int_equal(ms->ops->blob_get(ms, "a", &d, &size, &e), -1);
    assert_int_equal(ms->ops->blob_find(ms, &d, &size, &e), 0);
    assert_int_equal(ms->ops->blob_unlink(ms, "b", &d, &is_orphan, &e), 0);
    assert_true(is_orphan);
    assert_int_equal(ms->ops->blob_find(ms, &d, &size, &e), -1);
    assert_int_equal(e.code, ERR_BLOB_UNKNOWN);

    static const char *const kinds[] = {"blob_link", "blob_link", "blob_link", "blob_unlink",
                                        "blob_unlink"};
    assert_kinds(ms, 0, kinds, 5);
    json_t *arr = change_events(ms, 0);
    json_t *ev = json_array_get(arr, 0);
    assert_string_equal(ev_str(ev, "origin"), REGION);
    assert_string_equal(ev_str(ev, "repo"), "a");
    assert_string_equal(ev_str(ev, "digest"), d.str);
    assert_null(ev_str(ev, "name"));
    assert_int_equal(json_integer_value(json_object_get(json_object_get(ev, "payload"), "size")),
                     1234);
    ev = json_array_get(arr, 4);
    assert_true(json_is_true(json_object_get(json_object_get(ev, "payload"), "is_orphan")));
    json_decref(arr);
}

/* Visible means pullable: a blob a manifest of the repository needs cannot be unlinked
 * from it; once the manifest is gone it can. */
static void test_blob_referenced_by_manifest_is_not_orphan(void **state)
{
    struct fixture *f = *state;
    struct metastore *ms = f->ms;
    struct err e = {0};
    char body[128];
    struct meta_manifest m = mf(1, body, NULL);
    struct meta_ref ref = {.digest = dg(7), .size = 70};
    uint64_t size;
    bool is_orphan = true;

    link_blob(ms, "a", 7, 70);
    link_blob(ms, "b", 7, 70);
    assert_int_equal(ms->ops->manifest_put(ms, "a", &m, &ref, 1, NULL, NULL, &e), 0);
    assert_int_equal(ms->ops->blob_unlink(ms, "a", &ref.digest, &is_orphan, &e), -1);
    assert_int_equal(e.code, ERR_IN_USE);
    assert_int_equal(ms->ops->blob_get(ms, "a", &ref.digest, &size, &e), 0);
    assert_int_equal(ms->ops->manifest_delete(ms, "a", &m.digest, &e), 0);
    assert_int_equal(ms->ops->blob_unlink(ms, "a", &ref.digest, &is_orphan, &e), 0);
    /* Repository b still links it: its bytes stay, and it can still be mounted. */
    assert_false(is_orphan);
    assert_int_equal(ms->ops->blob_find(ms, &ref.digest, &size, &e), 0);
    assert_int_equal(size, 70);
}

/* Manifests --------------------------------------------------------------- */

static void test_manifest_put_get(void **state)
{
    struct fixture *f = *state;
    struct metastore *ms = f->ms;
    struct err e = {0};
    char body[128];
    struct meta_manifest m = mf(1, body, "application/vnd.example");
    struct meta_ref refs[2] = {{.digest = dg(1), .size = 10}, {.digest = dg(2), .size = 20}};
    struct meta_manifest got;

    link_blob(ms, "lib/app", 1, 10);
    link_blob(ms, "lib/app", 2, 20);
    int64_t seq0 = last_seq(ms);
    assert_int_equal(ms->ops->manifest_put(ms, "lib/app", &m, refs, 2, NULL, "v1", &e), 0);
    static const char *const put_kinds[] = {"manifest_put", "tag_set"};
    assert_kinds(ms, seq0, put_kinds, 2);

    static const char *const refs_by[] = {"v1", NULL};
    for (int i = 0; i < 2; i++) {
        const char *ref = refs_by[i] != NULL ? refs_by[i] : m.digest.str;
        assert_int_equal(ms->ops->manifest_get(ms, "lib/app", ref, &got, &e), 0);
        assert_string_equal(got.digest.str, m.digest.str);
        assert_int_equal(got.digest.alg, DIGEST_SHA256);
        assert_string_equal(got.media_type, MT_MANIFEST);
        assert_string_equal(got.artifact_type, "application/vnd.example");
        assert_string_equal(got.annotations_json, "{\"k\":\"v\"}");
        assert_int_equal(got.body_len, m.body_len);
        assert_memory_equal(got.body, m.body, m.body_len);
        meta_manifest_fini(&got);
    }

    /* The same bytes again, to the same tag or a new one, are the latest write of both: a
     * delete or a move made meanwhile in another region must lose to them (meta_manifests.c),
     * so each put writes its events again, with new clocks. */
    int64_t seq1 = last_seq(ms);
    assert_int_equal(ms->ops->manifest_put(ms, "lib/app", &m, refs, 2, NULL, "v1", &e), 0);
    assert_kinds(ms, seq1, put_kinds, 2);
    int64_t seq2 = last_seq(ms);
    assert_int_equal(ms->ops->manifest_put(ms, "lib/app", &m, refs, 2, NULL, "latest", &e), 0);
    assert_kinds(ms, seq2, put_kinds, 2);

    /* Moving a tag to another manifest. */
    char body2[128];
    struct meta_manifest m2 = mf(2, body2, NULL);
    assert_int_equal(ms->ops->manifest_put(ms, "lib/app", &m2, NULL, 0, NULL, "v1", &e), 0);
    assert_int_equal(ms->ops->manifest_get(ms, "lib/app", "v1", &got, &e), 0);
    assert_string_equal(got.digest.str, m2.digest.str);
    assert_null(got.artifact_type);
    assert_null(got.annotations_json);
    meta_manifest_fini(&got);
    assert_int_equal(ms->ops->manifest_get(ms, "lib/app", "latest", &got, &e), 0);
    assert_string_equal(got.digest.str, m.digest.str);
    meta_manifest_fini(&got);
}

static void test_manifest_get_errors(void **state)
{
    struct fixture *f = *state;
    struct metastore *ms = f->ms;
    struct err e = {0};
    struct meta_manifest got;
    struct digest unknown = dg(99);

    assert_int_equal(ms->ops->manifest_get(ms, "nope", "v1", &got, &e), -1);
    assert_int_equal(e.code, ERR_NAME_UNKNOWN);
    assert_null(got.body);

    link_blob(ms, "r", 1, 1); /* the repository now exists */
    assert_int_equal(ms->ops->manifest_get(ms, "r", "v1", &got, &e), -1);
    assert_int_equal(e.code, ERR_MANIFEST_UNKNOWN);
    e.code = ERR_NONE;
    assert_int_equal(ms->ops->manifest_get(ms, "r", unknown.str, &got, &e), -1);
    assert_int_equal(e.code, ERR_MANIFEST_UNKNOWN);
    assert_null(got.body);
}

static void test_manifest_put_unknown_refs_change_nothing(void **state)
{
    struct fixture *f = *state;
    struct metastore *ms = f->ms;
    struct err e = {0};
    char body[128];
    struct meta_manifest m = mf(1, body, NULL);
    struct meta_ref refs[2] = {{.digest = dg(1), .size = 10}, {.digest = dg(2), .size = 20}};
    struct meta_manifest got;
    struct meta_name_list l;

    link_blob(ms, "other", 1, 10);
    size_t n_events = event_count(ms);
    /* dg(1) is only in another repository (the first missing one), dg(2) nowhere. */
    assert_int_equal(ms->ops->manifest_put(ms, "fresh", &m, refs, 2, NULL, "v1", &e), -1);
    assert_int_equal(e.code, ERR_MANIFEST_BLOB_UNKNOWN);
    assert_non_null(strstr(e.msg, refs[0].digest.str));
    assert_non_null(strstr(e.msg, "blob"));

    /* Nothing happened: no repository, no link, no event. */
    assert_int_equal(event_count(ms), n_events);
    assert_int_equal(ms->ops->repo_list(ms, NULL, -1, &l, &e), 0);
    assert_int_equal(l.n, 1);
    assert_string_equal(l.names[0], "other");
    meta_name_list_fini(&l);
    assert_int_equal(ms->ops->manifest_get(ms, "fresh", "v1", &got, &e), -1);
    assert_int_equal(e.code, ERR_NAME_UNKNOWN);

    /* A child manifest must exist in the same repository. */
    char cbody[128];
    struct meta_manifest child = mf(2, cbody, NULL);
    assert_int_equal(ms->ops->manifest_put(ms, "other", &child, NULL, 0, NULL, NULL, &e), 0);
    struct meta_ref cref = {.digest = child.digest, .is_manifest = true,
                            .size = (int64_t)child.body_len};
    char ibody[128];
    struct meta_manifest index = mf(3, ibody, NULL);
    index.media_type = (char *)MT_INDEX;
    n_events = event_count(ms);
    assert_int_equal(ms->ops->manifest_put(ms, "fresh", &index, &cref, 1, NULL, NULL, &e), -1);
    assert_int_equal(e.code, ERR_MANIFEST_BLOB_UNKNOWN);
    assert_non_null(strstr(e.msg, child.digest.str));
    assert_non_null(strstr(e.msg, "manifest"));
    assert_int_equal(event_count(ms), n_events);

    /* A blob digest passed as a manifest ref is not enough either. */
    struct meta_ref bref = {.digest = dg(1), .is_manifest = true, .size = 10};
    assert_int_equal(ms->ops->manifest_put(ms, "other", &index, &bref, 1, NULL, NULL, &e), -1);
    assert_int_equal(e.code, ERR_MANIFEST_BLOB_UNKNOWN);

    /* With the child present the index goes in. */
    assert_int_equal(ms->ops->manifest_put(ms, "other", &index, &cref, 1, NULL, "multi", &e), 0);
    assert_int_equal(ms->ops->manifest_get(ms, "other", "multi", &got, &e), 0);
    assert_string_equal(got.media_type, MT_INDEX);
    meta_manifest_fini(&got);
}

/* Issue 9 item 1: a blob linked only in another repository does not satisfy a manifest
 * (that was an implicit mount anyone could make, and a registry-wide existence oracle).
 * Nothing changes: no link, no manifest, no tag, no event. Pushed or mounted into the
 * repository, the same blob does. */
static void test_manifest_put_does_not_link_other_repositories_blobs(void **state)
{
    struct fixture *f = *state;
    struct metastore *ms = f->ms;
    struct err e = {0};
    char body[128];
    struct meta_manifest m = mf(1, body, NULL);
    struct meta_ref refs[2] = {{.digest = dg(1), .size = 11}, {.digest = dg(2), .size = 22}};
    struct meta_manifest got;
    uint64_t size = 0;

    link_blob(ms, "team-b/secret", 1, 11);
    link_blob(ms, "team-a/loot", 2, 22);
    size_t n_events = event_count(ms);
    assert_int_equal(ms->ops->manifest_put(ms, "team-a/loot", &m, refs, 2, NULL, "v1", &e), -1);
    assert_int_equal(e.code, ERR_MANIFEST_BLOB_UNKNOWN);
    assert_non_null(strstr(e.msg, refs[0].digest.str));
    assert_int_equal(event_count(ms), n_events);
    assert_int_equal(ms->ops->blob_get(ms, "team-a/loot", &refs[0].digest, &size, &e), -1);
    assert_int_equal(e.code, ERR_BLOB_UNKNOWN);
    assert_int_equal(ms->ops->manifest_get(ms, "team-a/loot", "v1", &got, &e), -1);
    assert_int_equal(e.code, ERR_MANIFEST_UNKNOWN);
    assert_int_equal(ms->ops->manifest_get(ms, "team-a/loot", m.digest.str, &got, &e), -1);
    assert_int_equal(e.code, ERR_MANIFEST_UNKNOWN);

    /* Linked into team-a/loot (a push, or a mount its caller may make), it is accepted. */
    link_blob(ms, "team-a/loot", 1, 11);
    assert_int_equal(ms->ops->manifest_put(ms, "team-a/loot", &m, refs, 2, NULL, "v1", &e), 0);
    assert_int_equal(ms->ops->manifest_get(ms, "team-a/loot", "v1", &got, &e), 0);
    meta_manifest_fini(&got);
}

/* Each descriptor's size must be the stored one, for blobs and for child manifests; a
 * mismatch is MANIFEST_INVALID and changes nothing. */
static void test_manifest_put_checks_descriptor_sizes(void **state)
{
    struct fixture *f = *state;
    struct metastore *ms = f->ms;
    struct err e = {0};
    char body[128];
    struct meta_manifest m = mf(1, body, NULL);
    struct meta_ref refs[2] = {{.digest = dg(1), .size = 10}, {.digest = dg(2), .size = 999999}};
    struct meta_manifest got;

    link_blob(ms, "r", 1, 10);
    link_blob(ms, "r", 2, 20);
    size_t n_events = event_count(ms);
    assert_int_equal(ms->ops->manifest_put(ms, "r", &m, refs, 2, NULL, "v1", &e), -1);
    assert_int_equal(e.code, ERR_MANIFEST_INVALID);
    assert_non_null(strstr(e.msg, refs[1].digest.str));
    assert_non_null(strstr(e.msg, "999999"));
    assert_int_equal(event_count(ms), n_events);
    assert_int_equal(ms->ops->manifest_get(ms, "r", m.digest.str, &got, &e), -1);
    assert_int_equal(e.code, ERR_MANIFEST_UNKNOWN);
    refs[1].size = 19;
    assert_int_equal(ms->ops->manifest_put(ms, "r", &m, refs, 2, NULL, "v1", &e), -1);
    assert_int_equal(e.code, ERR_MANIFEST_INVALID);
    refs[1].size = 20;
    assert_int_equal(ms->ops->manifest_put(ms, "r", &m, refs, 2, NULL, "v1", &e), 0);

    /* A child manifest's size is its length. */
    char ibody[128];
    struct meta_manifest index = mf(2, ibody, NULL);
    index.media_type = (char *)MT_INDEX;
    struct meta_ref cref = {.digest = m.digest, .is_manifest = true,
                            .size = (int64_t)m.body_len + 1};
    n_events = event_count(ms);
    assert_int_equal(ms->ops->manifest_put(ms, "r", &index, &cref, 1, NULL, "multi", &e), -1);
    assert_int_equal(e.code, ERR_MANIFEST_INVALID);
    assert_int_equal(event_count(ms), n_events);
    cref.size = (int64_t)m.body_len;
    assert_int_equal(ms->ops->manifest_put(ms, "r", &index, &cref, 1, NULL, "multi", &e), 0);
    assert_int_equal(ms->ops->manifest_get(ms, "r", "multi", &got, &e), 0);
    meta_manifest_fini(&got);
}

static void test_manifest_delete_cascades(void **state)
{
    struct fixture *f = *state;
    struct metastore *ms = f->ms;
    struct err e = {0};
    char body[128];
    char body2[128];
    struct meta_manifest m = mf(1, body, NULL);
    struct meta_manifest keep = mf(2, body2, NULL);
    struct meta_ref ref = {.digest = dg(1), .size = 10};
    struct meta_manifest got;
    struct meta_name_list l;
    bool is_orphan = false;

    link_blob(ms, "r", 1, 10);
    assert_int_equal(ms->ops->manifest_put(ms, "r", &m, &ref, 1, NULL, "v2", &e), 0);
    assert_int_equal(ms->ops->manifest_put(ms, "r", &m, &ref, 1, NULL, "v1", &e), 0);
    assert_int_equal(ms->ops->manifest_put(ms, "r", &keep, NULL, 0, NULL, "stay", &e), 0);
    int64_t seq0 = last_seq(ms);

    assert_int_equal(ms->ops->manifest_delete(ms, "r", &m.digest, &e), 0);
    assert_int_equal(ms->ops->manifest_get(ms, "r", m.digest.str, &got, &e), -1);
    assert_int_equal(e.code, ERR_MANIFEST_UNKNOWN);
    assert_int_equal(ms->ops->manifest_get(ms, "r", "v1", &got, &e), -1);
    assert_int_equal(e.code, ERR_MANIFEST_UNKNOWN);
    assert_int_equal(ms->ops->tag_list(ms, "r", NULL, -1, &l, &e), 0);
    assert_int_equal(l.n, 1);
    assert_string_equal(l.names[0], "stay");
    meta_name_list_fini(&l);

    /* A tag_delete for each tag that went with it (replicated like any tag write), then
     * the manifest_delete naming them. */
    json_t *arr = change_events(ms, seq0);
    assert_int_equal(json_array_size(arr), 3);
    for (int i = 0; i < 2; i++) {
        json_t *td = json_array_get(arr, (size_t)i);
        assert_string_equal(ev_str(td, "kind"), "tag_delete");
        assert_string_equal(ev_str(td, "name"), i == 0 ? "v1" : "v2");
    }
    json_t *ev = json_array_get(arr, 2);
    assert_string_equal(ev_str(ev, "kind"), "manifest_delete");
    assert_string_equal(ev_str(ev, "digest"), m.digest.str);
    json_t *tags = json_object_get(json_object_get(ev, "payload"), "tags");
    assert_int_equal(json_array_size(tags), 2);
    assert_string_equal(json_string_value(json_array_get(tags, 0)), "v1");
    assert_string_equal(json_string_value(json_array_get(tags, 1)), "v2");
    json_decref(arr);

    /* Its references went too: the layer is now an orphan once unlinked. */
    assert_int_equal(ms->ops->blob_unlink(ms, "r", &ref.digest, &is_orphan, &e), 0);
    assert_true(is_orphan);

    assert_int_equal(ms->ops->manifest_delete(ms, "r", &m.digest, &e), -1);
    assert_int_equal(e.code, ERR_MANIFEST_UNKNOWN);
    e.code = ERR_NONE;
    assert_int_equal(ms->ops->manifest_delete(ms, "nope", &m.digest, &e), -1);
    assert_int_equal(e.code, ERR_MANIFEST_UNKNOWN);

    /* A deleted manifest can be pushed again. */
    assert_int_equal(ms->ops->manifest_put(ms, "r", &m, NULL, 0, NULL, "v1", &e), 0);
    assert_int_equal(ms->ops->manifest_get(ms, "r", "v1", &got, &e), 0);
    meta_manifest_fini(&got);
}

/* The manifest cache (manifest_cache.h): a lookup made again before anything commits
 * runs no statement; a commit from another thread's connection (a tag moved, a tag
 * deleted) or an autocommit write on a connection outside the store is seen by the next
 * lookup. */
static atomic_int n_statements;

static void count_statement(void *arg, const char *sql)
{
    (void)arg;
    (void)sql;
    atomic_fetch_add(&n_statements, 1);
}

enum cache_change { MOVE_TAG, RAW_UPDATE, DELETE_TAG };

struct cache_change_arg {
    struct metastore *ms;
    const char *path;
    enum cache_change what;
    const struct meta_manifest *m2;
    int rc;
};

/* Runs on its own thread: the store gives it its own connection. */
static void *cache_change_thread(void *p)
{
    struct cache_change_arg *a = p;
    struct err e = {0};
    switch (a->what) {
    case MOVE_TAG:
        a->rc = a->ms->ops->manifest_put(a->ms, "r", a->m2, NULL, 0, NULL, "v1", &e);
        break;
    case DELETE_TAG:
        a->rc = a->ms->ops->tag_delete(a->ms, "r", "v1", &e);
        break;
    case RAW_UPDATE: {
        struct sql_db *db = NULL;
        a->rc = sql_sqlite_driver.open(a->path, &db, &e);
        if (a->rc == 0) {
            a->rc = sql_sqlite_driver.exec(
                db, "UPDATE manifests SET media_type = 'application/x-changed'");
            sql_sqlite_driver.close(db);
        }
        break;
    }
    }
    return NULL;
}

static void run_change(struct cache_change_arg *a, enum cache_change what)
{
    pthread_t t;
    a->what = what;
    assert_int_equal(pthread_create(&t, NULL, cache_change_thread, a), 0);
    assert_int_equal(pthread_join(t, NULL), 0);
    assert_int_equal(a->rc, 0);
}

static void test_manifest_get_cached_until_a_commit(void **state)
{
    struct fixture *f = *state;
    struct err e = {0};
    char path[128];
    snprintf(path, sizeof(path), "%s/cache.db", f->dir);
    metastore_sqlite_trace(count_statement, NULL);
    struct metastore *ms = metastore_sqlite_open(path, REGION, &e);
    assert_non_null(ms);
    char body[128], body2[128];
    struct meta_manifest m = mf(1, body, NULL), m2 = mf(2, body2, NULL);
    struct meta_manifest got;
    assert_int_equal(ms->ops->manifest_put(ms, "r", &m, NULL, 0, NULL, "v1", &e), 0);

    const char *refs[] = {"v1", m.digest.str};
    for (size_t i = 0; i < 2; i++) {
        assert_int_equal(ms->ops->manifest_get(ms, "r", refs[i], &got, &e), 0);
        meta_manifest_fini(&got);
        int before = atomic_load(&n_statements);
        assert_int_equal(ms->ops->manifest_get(ms, "r", refs[i], &got, &e), 0);
        assert_int_equal(atomic_load(&n_statements), before);
        assert_string_equal(got.digest.str, m.digest.str);
        assert_string_equal(got.media_type, MT_MANIFEST);
        assert_int_equal(got.body_len, m.body_len);
        assert_memory_equal(got.body, m.body, m.body_len);
        meta_manifest_fini(&got);
    }

    /* A body over MANIFEST_CACHE_MAX_BODY (8 KiB) is not kept: memory stays bounded. */
    static char big[9 * 1024];
    memset(big, ' ', sizeof(big));
    memcpy(big, "{\"schemaVersion\":2}", 18);
    struct meta_manifest mb = mf(3, body2, NULL);
    mb.body = big;
    mb.body_len = sizeof(big);
    assert_int_equal(ms->ops->manifest_put(ms, "r", &mb, NULL, 0, NULL, "big", &e), 0);
    for (int i = 0; i < 2; i++) {
        int before = atomic_load(&n_statements);
        assert_int_equal(ms->ops->manifest_get(ms, "r", "big", &got, &e), 0);
        assert_true(atomic_load(&n_statements) > before);
        assert_int_equal(got.body_len, sizeof(big));
        meta_manifest_fini(&got);
    }
    m2 = mf(2, body2, NULL);

    struct cache_change_arg a = {.ms = ms, .path = path, .m2 = &m2};
    run_change(&a, MOVE_TAG);
    assert_int_equal(ms->ops->manifest_get(ms, "r", "v1", &got, &e), 0);
    assert_string_equal(got.digest.str, m2.digest.str);
    meta_manifest_fini(&got);

    run_change(&a, RAW_UPDATE);
    assert_int_equal(ms->ops->manifest_get(ms, "r", "v1", &got, &e), 0);
    assert_string_equal(got.media_type, "application/x-changed");
    meta_manifest_fini(&got);

    run_change(&a, DELETE_TAG);
    assert_int_equal(ms->ops->manifest_get(ms, "r", "v1", &got, &e), -1);
    assert_int_equal(e.code, ERR_MANIFEST_UNKNOWN);

    metastore_sqlite_trace(NULL, NULL);
    ms->ops->close(ms);
}

static void test_tag_delete(void **state)
{
    struct fixture *f = *state;
    struct metastore *ms = f->ms;
    struct err e = {0};
    char body[128];
    struct meta_manifest m = mf(1, body, NULL);
    struct meta_manifest got;

    assert_int_equal(ms->ops->tag_delete(ms, "r", "v1", &e), -1);
    assert_int_equal(e.code, ERR_MANIFEST_UNKNOWN);
    assert_int_equal(ms->ops->manifest_put(ms, "r", &m, NULL, 0, NULL, "v1", &e), 0);
    int64_t seq0 = last_seq(ms);
    assert_int_equal(ms->ops->tag_delete(ms, "r", "v1", &e), 0);
    assert_int_equal(ms->ops->manifest_get(ms, "r", "v1", &got, &e), -1);
    assert_int_equal(e.code, ERR_MANIFEST_UNKNOWN);
    /* The manifest stays. */
    assert_int_equal(ms->ops->manifest_get(ms, "r", m.digest.str, &got, &e), 0);
    meta_manifest_fini(&got);
    e.code = ERR_NONE;
    assert_int_equal(ms->ops->tag_delete(ms, "r", "v1", &e), -1);
    assert_int_equal(e.code, ERR_MANIFEST_UNKNOWN);

    json_t *arr = change_events(ms, seq0);
    assert_int_equal(json_array_size(arr), 1);
    json_t *ev = json_array_get(arr, 0);
    assert_string_equal(ev_str(ev, "kind"), "tag_delete");
    assert_string_equal(ev_str(ev, "name"), "v1");
    assert_string_equal(ev_str(ev, "digest"), m.digest.str);
    json_decref(arr);
}

/* Listings ---------------------------------------------------------------- */

struct page_case {
    const char *last;
    long n;
    const char *want; /* names joined by ' ' */
    bool has_more;
};

static void assert_page(const struct meta_name_list *l, const struct page_case *c)
{
    char got[256] = "";
    size_t len = 0;
    for (size_t i = 0; i < l->n; i++)
        len += (size_t)snprintf(got + len, sizeof(got) - len, "%s%s", i ? " " : "", l->names[i]);
    if (strcmp(got, c->want) != 0 || l->has_more != c->has_more)
        fail_msg("last=%s n=%ld: got '%s' has_more=%d, want '%s' has_more=%d",
                 c->last ? c->last : "(null)", c->n, got, l->has_more, c->want, c->has_more);
}

static void test_tag_list_pagination(void **state)
{
    struct fixture *f = *state;
    struct metastore *ms = f->ms;
    struct err e = {0};
    struct meta_name_list l;
    char body[128];
    struct meta_manifest m = mf(1, body, NULL);
    /* The spec's lexical order, case-insensitive ('a' < 'B' < 'c'; '-' < '.' < letters),
     * tags equal but for case in byte order ('B' < 'b'). */
    static const char *tags[] = {"c", "a.1", "B", "b", "a", "a-1"};
    static const struct page_case cases[] = {
        {NULL, -1, "a a-1 a.1 B b c", false},
        {NULL, 0, "", false},
        {"c", 0, "", false},
        {NULL, 2, "a a-1", true},
        {"a", 2, "a-1 a.1", true},
        {"a.1", 2, "B b", true},
        {"B", 2, "b c", false}, /* the page ends exactly at the end */
        {"b", 5, "c", false},
        {"c", 5, "", false},    /* last is the last tag */
        {"zzz", 5, "", false},  /* last past the end */
        {"ZZZ", 5, "", false},
        {"0", 1, "a", true},    /* last need not be a tag */
        {"A", 1, "a", true},    /* nor in the case of one */
        {"A-1", 2, "a-1 a.1", true},
        {"b-", 1, "c", false},
        {NULL, 6, "a a-1 a.1 B b c", false},
        {NULL, 100, "a a-1 a.1 B b c", false},
        {"", -1, "a a-1 a.1 B b c", false},
    };

    assert_int_equal(ms->ops->tag_list(ms, "r", NULL, -1, &l, &e), -1);
    assert_int_equal(e.code, ERR_NAME_UNKNOWN);
    assert_int_equal(ms->ops->manifest_put(ms, "r", &m, NULL, 0, NULL, NULL, &e), 0);
    assert_int_equal(ms->ops->tag_list(ms, "r", NULL, -1, &l, &e), 0);
    assert_int_equal(l.n, 0);
    assert_false(l.has_more);
    meta_name_list_fini(&l);

    for (size_t i = 0; i < sizeof(tags) / sizeof(tags[0]); i++)
        assert_int_equal(ms->ops->manifest_put(ms, "r", &m, NULL, 0, NULL, tags[i], &e), 0);
    /* Tags of another repository do not leak in. */
    assert_int_equal(ms->ops->manifest_put(ms, "r2", &m, NULL, 0, NULL, "bb", &e), 0);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        assert_int_equal(ms->ops->tag_list(ms, "r", cases[i].last, cases[i].n, &l, &e), 0);
        assert_page(&l, &cases[i]);
        meta_name_list_fini(&l);
    }
}

static void test_repo_list_pagination(void **state)
{
    struct fixture *f = *state;
    struct metastore *ms = f->ms;
    struct err e = {0};
    struct meta_name_list l;
    static const char *repos[] = {"a/b", "a", "B/x", "a-b"};
    static const struct page_case cases[] = {
        {NULL, -1, "B/x a a-b a/b", false},
        {NULL, 0, "", false},
        {NULL, 1, "B/x", true},
        {"B/x", 2, "a a-b", true},
        {"a-b", 2, "a/b", false},
        {"a/b", 2, "", false},
        {"zz", -1, "", false},
        {NULL, 4, "B/x a a-b a/b", false},
    };

    assert_int_equal(ms->ops->repo_list(ms, NULL, -1, &l, &e), 0);
    assert_int_equal(l.n, 0);
    meta_name_list_fini(&l);
    for (size_t i = 0; i < sizeof(repos) / sizeof(repos[0]); i++)
        link_blob(ms, repos[i], 1, 1);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        assert_int_equal(ms->ops->repo_list(ms, cases[i].last, cases[i].n, &l, &e), 0);
        assert_page(&l, &cases[i]);
        meta_name_list_fini(&l);
    }
}

static void test_referrers(void **state)
{
    struct fixture *f = *state;
    struct metastore *ms = f->ms;
    struct err e = {0};
    struct meta_referrer_list l;
    char b[7][128];
    struct meta_manifest subject = mf(1, b[0], NULL);
    struct meta_manifest sig = mf(2, b[1], "application/vnd.example.sig");
    struct meta_manifest sbom = mf(3, b[2], "application/vnd.example.sbom");
    struct meta_manifest plain = mf(4, b[3], NULL);
    struct meta_manifest elsewhere = mf(5, b[4], "application/vnd.example.sig");
    struct meta_manifest other_subject = mf(6, b[5], "application/vnd.example.sig");
    struct meta_manifest dangling = mf(7, b[6], NULL);
    struct digest unknown = dg(77);

    /* Unknown repository: no referrers, not an error (the referrers API never 404s). */
    assert_int_equal(ms->ops->referrers(ms, "r", &subject.digest, NULL, &l, &e), 0);
    assert_int_equal(l.n, 0);

    assert_int_equal(ms->ops->manifest_put(ms, "r", &subject, NULL, 0, NULL, "v1", &e), 0);
    assert_int_equal(ms->ops->manifest_put(ms, "r", &sig, NULL, 0, &subject.digest, NULL, &e), 0);
    assert_int_equal(ms->ops->manifest_put(ms, "r", &sbom, NULL, 0, &subject.digest, NULL, &e), 0);
    assert_int_equal(ms->ops->manifest_put(ms, "r", &plain, NULL, 0, &subject.digest, NULL, &e),
                     0);
    assert_int_equal(
        ms->ops->manifest_put(ms, "r2", &elsewhere, NULL, 0, &subject.digest, NULL, &e), 0);
    assert_int_equal(
        ms->ops->manifest_put(ms, "r", &other_subject, NULL, 0, &sig.digest, NULL, &e), 0);
    /* A subject need not exist in the repository. */
    assert_int_equal(ms->ops->manifest_put(ms, "r", &dangling, NULL, 0, &unknown, NULL, &e), 0);

    assert_int_equal(ms->ops->referrers(ms, "r", &subject.digest, NULL, &l, &e), 0);
    assert_int_equal(l.n, 3);
    bool seen[3] = {false, false, false};
    const struct meta_manifest *want[3] = {&sig, &sbom, &plain};
    for (size_t i = 0; i < l.n; i++) {
        for (int j = 0; j < 3; j++) {
            if (strcmp(l.items[i].digest.str, want[j]->digest.str) != 0)
                continue;
            seen[j] = true;
            assert_int_equal(l.items[i].size, (int64_t)want[j]->body_len);
            assert_string_equal(l.items[i].media_type, MT_MANIFEST);
            if (want[j]->artifact_type == NULL) {
                assert_null(l.items[i].artifact_type);
                assert_null(l.items[i].annotations_json);
            } else {
                assert_string_equal(l.items[i].artifact_type, want[j]->artifact_type);
                assert_string_equal(l.items[i].annotations_json, "{\"k\":\"v\"}");
            }
        }
    }
    assert_true(seen[0] && seen[1] && seen[2]);
    meta_referrer_list_fini(&l);

    assert_int_equal(
        ms->ops->referrers(ms, "r", &subject.digest, "application/vnd.example.sig", &l, &e), 0);
    assert_int_equal(l.n, 1);
    assert_string_equal(l.items[0].digest.str, sig.digest.str);
    meta_referrer_list_fini(&l);

    assert_int_equal(ms->ops->referrers(ms, "r", &subject.digest, "text/plain", &l, &e), 0);
    assert_int_equal(l.n, 0);
    meta_referrer_list_fini(&l);

    assert_int_equal(ms->ops->referrers(ms, "r", &unknown, NULL, &l, &e), 0);
    assert_int_equal(l.n, 1);
    assert_string_equal(l.items[0].digest.str, dangling.digest.str);
    meta_referrer_list_fini(&l);

    /* Referrers go when they are deleted. */
    assert_int_equal(ms->ops->manifest_delete(ms, "r", &sig.digest, &e), 0);
    assert_int_equal(ms->ops->referrers(ms, "r", &subject.digest, NULL, &l, &e), 0);
    assert_int_equal(l.n, 2);
    meta_referrer_list_fini(&l);
}

/* Upload sessions --------------------------------------------------------- */

static void test_uploads(void **state)
{
    struct fixture *f = *state;
    struct metastore *ms = f->ms;
    struct err e = {0};
    struct meta_name_list l;

    size_t n_events = event_count(ms);
    assert_int_equal(ms->ops->upload_create(ms, "u3", "a", 300, NULL, false, &e), 0);
    assert_int_equal(ms->ops->upload_create(ms, "u1", "a", 100, NULL, false, &e), 0);
    assert_int_equal(ms->ops->upload_create(ms, "u2", "b", 200, NULL, false, &e), 0);
    assert_int_equal(ms->ops->upload_create(ms, "u1", "b", 999, NULL, false, &e), -1);
    assert_int_equal(e.code, ERR_CONFLICT);

    assert_int_equal(ms->ops->upload_get(ms, "u1", "a", NULL, &e), 0);
    assert_int_equal(ms->ops->upload_get(ms, "u1", "b", NULL, &e), -1);
    assert_int_equal(e.code, ERR_BLOB_UPLOAD_UNKNOWN);
    e.code = ERR_NONE;
    assert_int_equal(ms->ops->upload_get(ms, "u9", "a", NULL, &e), -1);
    assert_int_equal(e.code, ERR_BLOB_UPLOAD_UNKNOWN);

    static const struct {
        int64_t now_s;
        const char *want;
    } cases[] = {
        {100, ""}, /* expires_s == now is not yet expired */
        {101, "u1"},
        {201, "u1 u2"},
        {1000, "u1 u2 u3"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct page_case pc = {NULL, (long)cases[i].now_s, cases[i].want, false};
        assert_int_equal(ms->ops->upload_list_expired(ms, cases[i].now_s, &l, &e), 0);
        assert_page(&l, &pc);
        meta_name_list_fini(&l);
    }

    assert_int_equal(ms->ops->upload_delete(ms, "u1", &e), 0);
    assert_int_equal(ms->ops->upload_get(ms, "u1", "a", NULL, &e), -1);
    assert_int_equal(ms->ops->upload_delete(ms, "u1", &e), -1);
    assert_int_equal(e.code, ERR_BLOB_UPLOAD_UNKNOWN);
    assert_int_equal(ms->ops->upload_list_expired(ms, 1000, &l, &e), 0);
    assert_int_equal(l.n, 2);
    meta_name_list_fini(&l);
    /* Sessions are region-local: nothing in the event log. */
    assert_int_equal(event_count(ms), n_events);
}

/* Caps are counted with the creation: a session that would pass one is refused with
 * TOOMANYREQUESTS naming it, and nothing is created; expired sessions do not count. */
static void test_upload_create_capped(void **state)
{
    struct fixture *f = *state;
    struct metastore *ms = f->ms;
    struct err e = {0};
    int64_t n = -1;
    struct meta_upload_caps by_addr = {.now_s = 100, .max_from_source = 2};
    assert_int_equal(ms->ops->upload_create(ms, "old", "a", 99, "192.0.2.1", false, &e), 0);
    assert_int_equal(
        ms->ops->upload_create_capped(ms, "a1", "a", 500, "192.0.2.1", false, &by_addr, &e), 0);
    assert_int_equal(
        ms->ops->upload_create_capped(ms, "a2", "a", 500, "192.0.2.1", false, &by_addr, &e), 0);
    assert_int_equal(
        ms->ops->upload_create_capped(ms, "a3", "a", 500, "192.0.2.1", false, &by_addr, &e), -1);
    assert_int_equal(e.code, ERR_TOOMANYREQUESTS);
    assert_non_null(strstr(err_message(&e), "2 per address"));
    assert_int_equal(ms->ops->upload_get(ms, "a3", NULL, NULL, &e), -1);
    /* The check alone (a read, before anything is created) says the same. */
    e = (struct err){0};
    assert_int_equal(ms->ops->upload_caps_check(ms, "192.0.2.1", &by_addr, &e), -1);
    assert_int_equal(e.code, ERR_TOOMANYREQUESTS);
    assert_int_equal(ms->ops->upload_caps_check(ms, "192.0.2.9", &by_addr, &e), 0);
    /* Another address has room. */
    assert_int_equal(
        ms->ops->upload_create_capped(ms, "b1", "a", 500, "192.0.2.9", false, &by_addr, &e), 0);

    struct meta_upload_caps by_owner = {.now_s = 100, .owner = "alice", .max_owned = 1};
    assert_int_equal(
        ms->ops->upload_create_capped(ms, "o1", "a", 500, "198.51.100.1", false, &by_owner, &e),
        0);
    assert_int_equal(ms->ops->upload_count_owned(ms, "alice", 100, &n, &e), 0);
    assert_int_equal(n, 1);
    e = (struct err){0};
    assert_int_equal(
        ms->ops->upload_create_capped(ms, "o2", "a", 500, "198.51.100.2", false, &by_owner, &e),
        -1);
    assert_int_equal(e.code, ERR_TOOMANYREQUESTS);
    assert_non_null(strstr(err_message(&e), "1 per identity"));
    assert_int_equal(ms->ops->upload_get(ms, "o2", NULL, NULL, &e), -1);
    assert_int_equal(ms->ops->upload_count_owned(ms, "alice", 100, &n, &e), 0);
    assert_int_equal(n, 1);
}

/* Starts from one address at once, more than its cap: exactly the cap's worth succeed
 * (counting, then creating in a second step, let every thread see room). */
enum { CAP_THREADS = 8, CAP_TRIES = 10, CAP_MAX = 20 };
struct cap_arg {
    struct metastore *ms;
    pthread_barrier_t *start;
    unsigned id;
    unsigned n_created, n_refused, n_failed;
};

static void *cap_thread(void *p)
{
    struct cap_arg *a = p;
    struct meta_upload_caps caps = {.now_s = 100, .max_from_source = CAP_MAX,
                                    .owner = "bob", .max_owned = CAP_MAX};
    pthread_barrier_wait(a->start);
    for (unsigned i = 0; i < CAP_TRIES; i++) {
        char id[32];
        snprintf(id, sizeof(id), "t%u-%u", a->id, i);
        struct err e = {0};
        if (a->ms->ops->upload_create_capped(a->ms, id, "r", 500, "203.0.113.5", false, &caps,
                                             &e) == 0)
            a->n_created++;
        else if (e.code == ERR_TOOMANYREQUESTS)
            a->n_refused++;
        else
            a->n_failed++;
    }
    a->ms->ops->thread_release(a->ms);
    return NULL;
}

static void test_upload_caps_hold_under_concurrent_starts(void **state)
{
    struct fixture *f = *state;
    struct cap_arg args[CAP_THREADS];
    pthread_t threads[CAP_THREADS];
    pthread_barrier_t start;
    assert_int_equal(pthread_barrier_init(&start, NULL, CAP_THREADS), 0);
    for (unsigned i = 0; i < CAP_THREADS; i++) {
        args[i] = (struct cap_arg){.ms = f->ms, .start = &start, .id = i};
        assert_int_equal(pthread_create(&threads[i], NULL, cap_thread, &args[i]), 0);
    }
    for (unsigned i = 0; i < CAP_THREADS; i++)
        assert_int_equal(pthread_join(threads[i], NULL), 0);
    pthread_barrier_destroy(&start);
    unsigned created = 0, refused = 0;
    for (unsigned i = 0; i < CAP_THREADS; i++) {
        assert_int_equal(args[i].n_failed, 0);
        created += args[i].n_created;
        refused += args[i].n_refused;
    }
    assert_int_equal(created, CAP_MAX);
    assert_int_equal(refused, CAP_THREADS * CAP_TRIES - CAP_MAX);
    struct err e = {0};
    int64_t n = -1;
    assert_int_equal(f->ms->ops->upload_count_from(f->ms, "203.0.113.5", 100, &n, &e), 0);
    assert_int_equal(n, CAP_MAX);
    assert_int_equal(f->ms->ops->upload_count_owned(f->ms, "bob", 100, &n, &e), 0);
    assert_int_equal(n, CAP_MAX);
}

/* Client sessions carry their address (the per-address cap) and their acknowledged
 * size; fetch sessions (source NULL) carry neither. */
static void test_upload_sources_and_acked_size(void **state)
{
    struct fixture *f = *state;
    struct metastore *ms = f->ms;
    struct err e = {0};
    int64_t acked = 99;
    int64_t n = -1;

    assert_int_equal(ms->ops->upload_create(ms, "c1", "a", 100, "192.0.2.1", false, &e), 0);
    assert_int_equal(ms->ops->upload_create(ms, "c2", "a", 200, "192.0.2.1", false, &e), 0);
    assert_int_equal(ms->ops->upload_create(ms, "c3", "b", 200, "2001:db8::1", false, &e), 0);
    assert_int_equal(ms->ops->upload_create(ms, "f1", "b", 200, NULL, false, &e), 0);
    assert_int_equal(ms->ops->upload_create(ms, "m2", "b", 200, "192.0.2.2", true, &e), 0);
    assert_int_equal(ms->ops->upload_create(ms, "m1", "b", 200, "192.0.2.2", true, &e), 0);

    static const struct {
        const char *source;
        int64_t now_s;
        int64_t want;
    } counts[] = {
        {"192.0.2.1", 50, 2}, {"192.0.2.1", 100, 2}, {"192.0.2.1", 101, 1},
        {"192.0.2.1", 201, 0}, {"2001:db8::1", 50, 1}, {"198.51.100.7", 50, 0},
        {"192.0.2.2", 50, 2},
    };
    for (size_t i = 0; i < sizeof(counts) / sizeof(counts[0]); i++) {
        assert_int_equal(ms->ops->upload_count_from(ms, counts[i].source, counts[i].now_s, &n,
                                                    &e), 0);
        assert_int_equal(n, counts[i].want);
    }

    assert_int_equal(ms->ops->upload_get(ms, "c1", "a", &acked, &e), 0);
    assert_int_equal(acked, 0);
    assert_int_equal(ms->ops->upload_set_acked(ms, "c1", 1234567, &e), 0);
    assert_int_equal(ms->ops->upload_get(ms, "c1", NULL, &acked, &e), 0);
    assert_int_equal(acked, 1234567);
    /* A fetch session is not tracked, and stays so. */
    assert_int_equal(ms->ops->upload_get(ms, "f1", "b", &acked, &e), 0);
    assert_int_equal(acked, -1);
    assert_int_equal(ms->ops->upload_set_acked(ms, "f1", 10, &e), 0);
    assert_int_equal(ms->ops->upload_get(ms, "f1", "b", &acked, &e), 0);
    assert_int_equal(acked, -1);

    /* Finished sessions no longer count. */
    assert_int_equal(ms->ops->upload_delete(ms, "c2", &e), 0);
    assert_int_equal(ms->ops->upload_count_from(ms, "192.0.2.1", 50, &n, &e), 0);
    assert_int_equal(n, 1);

    /* Only the sessions of monolithic POSTs are listed as single requests. */
    struct meta_name_list l;
    assert_int_equal(ms->ops->upload_list_single(ms, &l, &e), 0);
    assert_int_equal(l.n, 2);
    assert_string_equal(l.names[0], "m1");
    assert_string_equal(l.names[1], "m2");
    meta_name_list_fini(&l);
}

/* A database of schema version 2 (the uploads table without source and acked_bytes)
 * with an upload session and a manifest in it opens with this build: the migration adds
 * the columns, the old session is kept untracked (resumed from its file as before). The
 * version-2 file is made from a current one by taking the version 3 step back out. */
static void test_schema_v2_database_migrates(void **state)
{
    struct fixture *f = *state;
    struct err e = {0};
    char body[128];
    struct meta_manifest m = mf(7, body, NULL);
    struct meta_manifest got;
    sqlite3 *db;
    sqlite3_stmt *s;
    int64_t acked = 99;
    int64_t n = -1;

    assert_int_equal(f->ms->ops->manifest_put(f->ms, "r", &m, NULL, 0, NULL, "v1", &e), 0);
    f->ms->ops->close(f->ms);
    f->ms = NULL;
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db,
                                  SQL_SCHEMA_BACK_TO_V2
                                  "INSERT INTO uploads(id, repo, created_s, expires_s)"
                                  "  VALUES ('old', 'r', 1, 5000);",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(db);

    f->ms = metastore_sqlite_open(f->path, REGION, &e);
    assert_non_null(f->ms);
    struct metastore *ms = f->ms;
    assert_int_equal(ms->ops->manifest_get(ms, "r", "v1", &got, &e), 0);
    assert_string_equal(got.digest.str, m.digest.str);
    meta_manifest_fini(&got);
    assert_int_equal(ms->ops->upload_get(ms, "old", "r", &acked, &e), 0);
    assert_int_equal(acked, -1);
    assert_int_equal(ms->ops->upload_create(ms, "new", "r", 5000, "192.0.2.9", false, &e), 0);
    assert_int_equal(ms->ops->upload_set_acked(ms, "new", 42, &e), 0);
    assert_int_equal(ms->ops->upload_get(ms, "new", "r", &acked, &e), 0);
    assert_int_equal(acked, 42);
    assert_int_equal(ms->ops->upload_count_from(ms, "192.0.2.9", 10, &n, &e), 0);
    assert_int_equal(n, 1);
    struct meta_name_list l;
    assert_int_equal(ms->ops->upload_list_single(ms, &l, &e), 0);
    assert_int_equal(l.n, 0);
    meta_name_list_fini(&l);

    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &s, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int(s, 0), 14);
    sqlite3_finalize(s);
    sqlite3_close(db);
}

/* One integer from a query of the database file. */
static int64_t db_int(const char *path, const char *sql, const char *arg);

/* A database of schema version 1 whose log holds several events (every push wrote some)
 * opens with this build: version 2 numbers those events 1, 2, ... per origin (left at 0
 * they broke its unique index, and the file never opened), the version vector starts past
 * them, and the next event follows on without reusing a number. */
static void test_schema_v1_events_numbered(void **state)
{
    struct fixture *f = *state;
    struct err e = {0};
    char b1[128], b2[128], b3[128];
    struct meta_manifest m1 = mf(1, b1, NULL), m2 = mf(2, b2, NULL), m3 = mf(3, b3, NULL);
    struct meta_manifest got;
    sqlite3 *db;

    assert_int_equal(f->ms->ops->manifest_put(f->ms, "r", &m1, NULL, 0, NULL, "a", &e), 0);
    assert_int_equal(f->ms->ops->manifest_put(f->ms, "r", &m2, NULL, 0, NULL, "b", &e), 0);
    f->ms->ops->close(f->ms);
    f->ms = NULL;
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, SQL_SCHEMA_BACK_TO_V1, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    int64_t n_old = db_int(f->path, "SELECT count(*) FROM events", NULL);
    assert_true(n_old >= 2);

    f->ms = metastore_sqlite_open(f->path, REGION, &e);
    assert_non_null(f->ms);
    struct metastore *ms = f->ms;
    assert_int_equal(db_int(f->path, "PRAGMA user_version", NULL), 14);
    assert_int_equal(db_int(f->path, "SELECT count(DISTINCT origin_seq) FROM events", NULL),
                     n_old);
    assert_int_equal(db_int(f->path, "SELECT max(origin_seq) FROM events", NULL), n_old);
    assert_int_equal(db_int(f->path, "SELECT seq FROM vv WHERE origin = ?1", REGION), n_old);
    assert_int_equal(ms->ops->manifest_get(ms, "r", "b", &got, &e), 0);
    assert_string_equal(got.digest.str, m2.digest.str);
    meta_manifest_fini(&got);
    /* The log goes on from there, and a peer reading from 0 gets every event once. */
    assert_int_equal(ms->ops->manifest_put(ms, "r", &m3, NULL, 0, NULL, "c", &e), 0);
    assert_true(db_int(f->path, "SELECT max(origin_seq) FROM events", NULL) > n_old);
    assert_int_equal(db_int(f->path, "SELECT count(*) FROM events", NULL),
                     db_int(f->path, "SELECT count(DISTINCT origin_seq) FROM events", NULL));
    assert_int_equal(db_int(f->path, "SELECT seq FROM vv WHERE origin = ?1", REGION),
                     db_int(f->path, "SELECT max(origin_seq) FROM events", NULL));
    assert_true(event_count(ms) > (size_t)n_old);
}

/* One integer from a query of the database file. */
static int64_t db_int(const char *path, const char *sql, const char *arg)
{
    sqlite3 *db;
    sqlite3_stmt *s;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &s, NULL), SQLITE_OK);
    if (arg != NULL)
        sqlite3_bind_text(s, 1, arg, -1, SQLITE_TRANSIENT);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    int64_t v = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    sqlite3_close(db);
    return v;
}

/* Closes the store, runs sql on its file as an older release left it, and opens it again
 * with this build (its migration steps run). */
static void reopen_after(struct fixture *f, const char *sql)
{
    struct err e = {0};
    sqlite3 *db;
    f->ms->ops->close(f->ms);
    f->ms = NULL;
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    f->ms = metastore_sqlite_open(f->path, REGION, &e);
    assert_non_null(f->ms);
}

/* A database of schema version 13 (tags listed in byte order, no index of tags with
 * capitals) opens with this build: its tags, written before, are listed case-insensitively
 * at once, and pages seek through the new index. */
static void test_schema_v13_tags_listed_case_insensitively(void **state)
{
    struct fixture *f = *state;
    struct err e = {0};
    char b1[128];
    struct meta_manifest m1 = mf(1, b1, NULL);
    struct meta_name_list l;
    static const char *tags[] = {"b", "B", "a", "C", "A-1"};
    for (size_t i = 0; i < sizeof(tags) / sizeof(tags[0]); i++)
        assert_int_equal(f->ms->ops->manifest_put(f->ms, "r", &m1, NULL, 0, NULL, tags[i], &e),
                         0);
    reopen_after(f, "DROP INDEX tag_regs_cased; DROP INDEX tag_regs_lower;"
                    " PRAGMA user_version = 13");
    assert_int_equal(db_int(f->path, "PRAGMA user_version", NULL), 14);
    assert_int_equal(db_int(f->path, "SELECT count(*) FROM tag_regs INDEXED BY tag_regs_cased"
                                     " WHERE repo = 'r' AND name <> lower(name)"
                                     " AND lower(name) >= ''", NULL),
                     3);
    assert_int_equal(f->ms->ops->tag_list(f->ms, "r", NULL, -1, &l, &e), 0);
    assert_page(&l, &(struct page_case){NULL, -1, "a A-1 B b C", false});
    meta_name_list_fini(&l);
    assert_int_equal(f->ms->ops->tag_list(f->ms, "r", "a", 2, &l, &e), 0);
    assert_page(&l, &(struct page_case){"a", 2, "A-1 B", true});
    meta_name_list_fini(&l);
}

/* A database of schema version 9 (`tags` a table kept beside the registers) opens with
 * this build: `tags` becomes a view of the registers with the same rows, and a tag moved
 * afterwards still stamps the manifest it leaves as untagged (the triggers follow). */
static void test_schema_v9_tags_table_becomes_view(void **state)
{
    struct fixture *f = *state;
    struct err e = {0};
    char b1[128], b2[128];
    struct meta_manifest m1 = mf(1, b1, NULL), m2 = mf(2, b2, NULL);
    struct meta_manifest got;
    struct meta_name_list l;
    sqlite3 *db;

    assert_int_equal(f->ms->ops->manifest_put(f->ms, "r", &m1, NULL, 0, NULL, "a", &e), 0);
    assert_int_equal(f->ms->ops->manifest_put(f->ms, "r", &m2, NULL, 0, NULL, "b", &e), 0);
    f->ms->ops->close(f->ms);
    f->ms = NULL;
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, SQL_SCHEMA_BACK_TO_V9, NULL, NULL, NULL), SQLITE_OK);
    /* A tag written before version 2 (no register: v2 added registers for new writes
     * only) lives in the table alone; it must survive as a register. */
    assert_int_equal(sqlite3_exec(db, "DELETE FROM tag_regs WHERE name = 'b'", NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(db);
    assert_int_equal(db_int(f->path, "SELECT count(*) FROM tags", NULL), 2);
    assert_int_equal(db_int(f->path, "SELECT type = 'table' FROM sqlite_master"
                                     " WHERE name = 'tags'", NULL), 1);

    f->ms = metastore_sqlite_open(f->path, REGION, &e);
    assert_non_null(f->ms);
    struct metastore *ms = f->ms;
    assert_int_equal(db_int(f->path, "PRAGMA user_version", NULL), 14);
    assert_int_equal(db_int(f->path, "SELECT type = 'view' FROM sqlite_master"
                                     " WHERE name = 'tags'", NULL), 1);
    assert_int_equal(ms->ops->tag_list(ms, "r", NULL, -1, &l, &e), 0);
    assert_int_equal(l.n, 2);
    assert_string_equal(l.names[0], "a");
    assert_string_equal(l.names[1], "b");
    meta_name_list_fini(&l);
    assert_int_equal(ms->ops->manifest_get(ms, "r", "a", &got, &e), 0);
    assert_string_equal(got.digest.str, m1.digest.str);
    meta_manifest_fini(&got);
    assert_int_equal(db_int(f->path, "SELECT count(*) FROM untagged", NULL), 0);

    /* "a" moves to m2: m1 has no tag left, m2 keeps being tagged. */
    assert_int_equal(ms->ops->manifest_put(ms, "r", &m2, NULL, 0, NULL, "a", &e), 0);
    assert_int_equal(ms->ops->manifest_get(ms, "r", "a", &got, &e), 0);
    assert_string_equal(got.digest.str, m2.digest.str);
    meta_manifest_fini(&got);
    assert_int_equal(db_int(f->path, "SELECT count(*) FROM untagged WHERE digest = ?1",
                            m1.digest.str), 1);
    assert_int_equal(db_int(f->path, "SELECT count(*) FROM untagged WHERE digest = ?1",
                            m2.digest.str), 0);
    /* Deleting the last tag of m2 stamps it too. */
    assert_int_equal(ms->ops->tag_delete(ms, "r", "a", &e), 0);
    assert_int_equal(ms->ops->tag_delete(ms, "r", "b", &e), 0);
    assert_int_equal(db_int(f->path, "SELECT count(*) FROM untagged WHERE digest = ?1",
                            m2.digest.str), 1);
    assert_int_equal(db_int(f->path, "SELECT count(*) FROM tags", NULL), 0);
}

/* Steps 6 to 9 were each written as "version 6" on a branch of their own: a database a
 * commit of one of those branches wrote says 6 and holds that branch's step only. Each of
 * those shapes opens with this build with every step there (before the fix: the copies of
 * status rows missing, every manifest push then failing, or the open refused on a
 * duplicate column). */
static void open_branch_v6(struct fixture *f, const char *back)
{
    struct err e = {0};
    char b1[128];
    struct meta_manifest m1 = mf(1, b1, NULL), got;
    sqlite3 *db;

    assert_int_equal(f->ms->ops->manifest_put(f->ms, "r", &m1, NULL, 0, NULL, "a", &e), 0);
    f->ms->ops->close(f->ms);
    f->ms = NULL;
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, back, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    assert_int_equal(db_int(f->path, "PRAGMA user_version", NULL), 6);

    f->ms = metastore_sqlite_open(f->path, REGION, &e);
    assert_non_null(f->ms);
    assert_int_equal(db_int(f->path, "PRAGMA user_version", NULL), 14);
    assert_int_equal(db_int(f->path, "SELECT count(*) FROM pragma_table_info('repl_status')"
                                     " WHERE name = 'copies'", NULL), 1);
    assert_int_equal(db_int(f->path, "SELECT count(*) FROM pragma_table_info('audit_log')"
                                     " WHERE name = 'region'", NULL), 1);
    assert_int_equal(db_int(f->path, "SELECT count(*) FROM sqlite_schema WHERE name IN"
                                     " ('peer_acks', 'log_horizon', 'untagged')", NULL), 3);
    assert_int_equal(db_int(f->path, "SELECT count(*) FROM pragma_table_info('manifest_tombs')"
                                     " WHERE name = 'is_gc'", NULL), 1);
    assert_int_equal(f->ms->ops->manifest_get(f->ms, "r", "a", &got, &e), 0);
    assert_string_equal(got.digest.str, m1.digest.str);
    meta_manifest_fini(&got);
    /* a push writes its status row (with copies) */
    char b2[128];
    struct meta_manifest m2 = mf(2, b2, NULL);
    assert_int_equal(f->ms->ops->manifest_put(f->ms, "r", &m2, NULL, 0, NULL, "b", &e), 0);
}

#define SQL_BACK_UNTAGGED_ALL                                                                  \
    SQL_BACK_UNTAGGED_STAMPS "ALTER TABLE manifest_tombs DROP COLUMN is_gc;"
#define SQL_BACK_COPIES "ALTER TABLE repl_status DROP COLUMN copies;"

static void test_schema_branch_v6_compaction(void **state)
{
    open_branch_v6(*state, SQL_SCHEMA_BACK_TO_V9 SQL_BACK_UNTAGGED_ALL SQL_BACK_AUDIT_REGION
                   SQL_BACK_COPIES "PRAGMA user_version = 6;");
}

static void test_schema_branch_v6_audit_region(void **state)
{
    open_branch_v6(*state, SQL_SCHEMA_BACK_TO_V9 SQL_BACK_UNTAGGED_ALL SQL_BACK_COMPACTION
                   SQL_BACK_COPIES "PRAGMA user_version = 6;");
}

static void test_schema_branch_v6_untagged(void **state)
{
    /* the branch's first text, without manifest_tombs.is_gc (74bb15a) */
    open_branch_v6(*state, SQL_SCHEMA_BACK_TO_V9 "ALTER TABLE manifest_tombs DROP COLUMN is_gc;"
                   SQL_BACK_COMPACTION_AND_AUDIT_REGION SQL_BACK_COPIES
                   "PRAGMA user_version = 6;");
}

static void test_schema_branch_v6_untagged_gc(void **state)
{
    /* its later text, with is_gc (86f4a00) */
    open_branch_v6(*state, SQL_SCHEMA_BACK_TO_V9 SQL_BACK_COMPACTION_AND_AUDIT_REGION
                   SQL_BACK_COPIES "PRAGMA user_version = 6;");
}

/* Step 3 was written twice as "version 3": audit aggregation (branch authlimits, kept as
 * 3) and upload sources (branch uploads, made 4 when merged; its first commits without
 * is_single_request). A database of the uploads branch says 3, has the upload columns and
 * lacks the audit ones: it opens with both (before the fix: refused, "duplicate column
 * name: source"). */
static void open_uploads_branch_v3(struct fixture *f, const char *upload_columns)
{
    struct err e = {0};
    sqlite3 *db;

    f->ms->ops->close(f->ms);
    f->ms = NULL;
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, SQL_SCHEMA_BACK_TO_V2, NULL, NULL, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, upload_columns, NULL, NULL, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "PRAGMA user_version = 3", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);

    f->ms = metastore_sqlite_open(f->path, REGION, &e);
    assert_non_null(f->ms);
    assert_int_equal(db_int(f->path, "PRAGMA user_version", NULL), 14);
    assert_int_equal(db_int(f->path, "SELECT count(*) FROM pragma_table_info('audit_log')"
                                     " WHERE name IN ('count', 'last_ms', 'region')", NULL), 3);
    assert_int_equal(db_int(f->path, "SELECT count(*) FROM pragma_table_info('uploads') WHERE"
                                     " name IN ('source', 'acked_bytes', 'is_single_request')",
                            NULL), 3);
    assert_int_equal(db_int(f->path, "SELECT count(*) FROM pragma_table_info('repl_status')"
                                     " WHERE name = 'copies'", NULL), 1);
    assert_int_equal(f->ms->ops->upload_create(f->ms, "u", "r", 5000, "192.0.2.9", true, &e), 0);
}

#define SQL_UPLOAD_SOURCES                                                                     \
    "ALTER TABLE uploads ADD COLUMN source TEXT;"                                              \
    "ALTER TABLE uploads ADD COLUMN acked_bytes INTEGER;"                                      \
    "CREATE INDEX uploads_source ON uploads(source, expires_s) WHERE source IS NOT NULL;"

static void test_schema_uploads_branch_v3(void **state)
{
    open_uploads_branch_v3(*state, SQL_UPLOAD_SOURCES);
}

static void test_schema_uploads_branch_v3_single(void **state)
{
    open_uploads_branch_v3(*state, SQL_UPLOAD_SOURCES "ALTER TABLE uploads ADD COLUMN"
                                                      " is_single_request INTEGER NOT NULL"
                                                      " DEFAULT 0;");
}

/* A database of schema version 10 (references keyed by the manifest's digest) opens with
 * this build: each reference names its manifest by seq, manifest_refs reads the same rows,
 * a replicated put still carries them, a blob in use stays in use, and deleting the
 * manifest drops its references (cascade) and queues the blobs for the collector. */
static void test_schema_v10_refs_by_seq(void **state)
{
    struct fixture *f = *state;
    struct err e = {0};
    char b1[128], b2[128];
    struct meta_manifest m1 = mf(1, b1, NULL), m2 = mf(2, b2, NULL);
    struct meta_ref refs[2] = {{.digest = dg(7), .size = 70}, {.digest = dg(8), .size = 80}};
    bool is_orphan = true;
    sqlite3 *db;

    link_blob(f->ms, "r", 7, 70);
    link_blob(f->ms, "r", 8, 80);
    assert_int_equal(f->ms->ops->manifest_put(f->ms, "r", &m1, refs, 2, NULL, "a", &e), 0);
    assert_int_equal(f->ms->ops->manifest_put(f->ms, "r", &m2, refs, 1, NULL, "b", &e), 0);
    f->ms->ops->close(f->ms);
    f->ms = NULL;
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, SQL_SCHEMA_BACK_TO_V10 "DELETE FROM gc_queue;", NULL, NULL,
                                  NULL),
                     SQLITE_OK);
    sqlite3_close(db);
    assert_int_equal(db_int(f->path, "SELECT type = 'table' FROM sqlite_master"
                                     " WHERE name = 'manifest_refs'", NULL), 1);
    assert_int_equal(db_int(f->path, "SELECT count(*) FROM manifest_refs", NULL), 3);

    f->ms = metastore_sqlite_open(f->path, REGION, &e);
    assert_non_null(f->ms);
    struct metastore *ms = f->ms;
    assert_int_equal(db_int(f->path, "PRAGMA user_version", NULL), 14);
    assert_int_equal(db_int(f->path, "SELECT type = 'view' FROM sqlite_master"
                                     " WHERE name = 'manifest_refs'", NULL), 1);
    assert_int_equal(db_int(f->path, "SELECT count(*) FROM manifest_ref_seqs", NULL), 3);
    assert_int_equal(db_int(f->path,
                            "SELECT count(*) FROM manifest_refs WHERE manifest_digest = ?1",
                            m1.digest.str), 2);
    assert_int_equal(db_int(f->path, "SELECT count(*) FROM pragma_foreign_key_check", NULL), 0);
    /* The rebuild dropped the table's planner statistics: the open gathers them again. */
    assert_int_equal(db_int(f->path, "SELECT count(*) > 0 FROM sqlite_stat1"
                                     " WHERE tbl = 'manifests'", NULL), 1);
    /* The put events are rebuilt with their references, as before. */
    json_t *arr = events_json(ms, 0);
    size_t puts = 0;
    for (size_t i = 0; i < json_array_size(arr); i++) {
        json_t *ev = json_array_get(arr, i);
        if (strcmp(ev_str(ev, "kind"), "manifest_put") != 0)
            continue;
        json_t *p = json_object_get(ev, "payload");
        json_t *pl = json_is_string(p) ? json_loads(json_string_value(p), 0, NULL) : json_incref(p);
        assert_non_null(pl);
        size_t want = strcmp(ev_str(ev, "digest"), m1.digest.str) == 0 ? 2 : 1;
        assert_int_equal(json_array_size(json_object_get(pl, "refs")), want);
        json_decref(pl);
        puts++;
    }
    json_decref(arr);
    assert_int_equal(puts, 2);
    /* In use by a manifest: a blob cannot be unlinked. */
    assert_int_equal(ms->ops->blob_unlink(ms, "r", &refs[1].digest, &is_orphan, &e), -1);
    assert_int_equal(e.code, ERR_IN_USE);
    /* A manifest deleted takes its references along and queues their blobs. */
    assert_int_equal(ms->ops->manifest_delete(ms, "r", &m1.digest, &e), 0);
    assert_int_equal(db_int(f->path, "SELECT count(*) FROM manifest_ref_seqs", NULL), 1);
    assert_int_equal(db_int(f->path, "SELECT count(*) FROM gc_queue WHERE digest = ?1",
                            refs[1].digest.str), 1);
    assert_int_equal(ms->ops->blob_unlink(ms, "r", &refs[1].digest, &is_orphan, &e), 0);
    /* A new put after the upgrade writes its references by seq. */
    char b3[128];
    struct meta_manifest m3 = mf(3, b3, NULL);
    assert_int_equal(ms->ops->manifest_put(ms, "r", &m3, refs, 1, NULL, "c", &e), 0);
    assert_int_equal(db_int(f->path,
                            "SELECT count(*) FROM manifest_refs WHERE manifest_digest = ?1",
                            m3.digest.str), 1);
    assert_int_equal(db_int(f->path, "SELECT count(*) FROM manifests m JOIN manifest_ref_seqs r"
                                     " ON r.manifest_seq = m.seq WHERE m.digest = ?1",
                            m3.digest.str), 1);
}

/* Bodies are stored packed (body_pack.c) and served byte for byte, by tag and by digest
 * and in the put event peers read; a body stored before packing existed reads as it is. */
static void test_manifest_body_packed(void **state)
{
    struct fixture *f = *state;
    struct metastore *ms = f->ms;
    struct err e = {0};
    char body[] =
        "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\","
        "\"config\":{\"mediaType\":\"application/vnd.oci.image.config.v1+json\",\"digest\":"
        "\"sha256:1143aed0fc24734243c541c69c93e74a00b11839bcea9d7b29acfd586d1ba6ce\","
        "\"size\":64},\"layers\":[]}";
    struct meta_manifest m = {.media_type = (char *)MT_MANIFEST, .body = body,
                              .body_len = sizeof(body) - 1};
    digest_of_buffer(DIGEST_SHA256, body, m.body_len, &m.digest);
    struct meta_manifest got;
    assert_int_equal(ms->ops->manifest_put(ms, "r", &m, NULL, 0, NULL, "v1", &e), 0);
    assert_true(db_int(f->path, "SELECT length(body) FROM manifests WHERE digest = ?1",
                       m.digest.str) * 2 < (int64_t)m.body_len);
    assert_int_equal(db_int(f->path, "SELECT size FROM manifests WHERE digest = ?1",
                            m.digest.str), (int64_t)m.body_len);
    const char *refs[] = {"v1", m.digest.str};
    for (int i = 0; i < 2; i++) {
        assert_int_equal(ms->ops->manifest_get(ms, "r", refs[i], &got, &e), 0);
        assert_int_equal(got.body_len, m.body_len);
        assert_memory_equal(got.body, body, m.body_len);
        meta_manifest_fini(&got);
    }
    json_t *arr = events_json(ms, 0);
    bool has_put = false;
    for (size_t i = 0; i < json_array_size(arr); i++) {
        json_t *ev = json_array_get(arr, i);
        if (strcmp(ev_str(ev, "kind"), "manifest_put") != 0)
            continue;
        const char *b64 = json_string_value(json_object_get(json_object_get(ev, "payload"),
                                                            "body"));
        assert_non_null(b64);
        size_t len = 0;
        char *dec = base64_decode(b64, strlen(b64), &len);
        assert_int_equal(len, m.body_len);
        assert_memory_equal(dec, body, len);
        free(dec);
        has_put = true;
    }
    json_decref(arr);
    assert_true(has_put);

    /* As a build before packing stored it. */
    sqlite3 *db;
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, "UPDATE manifests SET body = ?1 WHERE digest = ?2",
                                        -1, &st, NULL),
                     SQLITE_OK);
    sqlite3_bind_blob(st, 1, body, (int)m.body_len, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, m.digest.str, -1, SQLITE_STATIC);
    assert_int_equal(sqlite3_step(st), SQLITE_DONE);
    sqlite3_finalize(st);
    sqlite3_close(db);
    assert_int_equal(db_int(f->path, "SELECT length(body) FROM manifests WHERE digest = ?1",
                            m.digest.str), (int64_t)m.body_len);
    ms->ops->close(ms);
    f->ms = ms = metastore_sqlite_open(f->path, REGION, &e); /* nothing cached */
    assert_non_null(ms);
    assert_int_equal(ms->ops->manifest_get(ms, "r", m.digest.str, &got, &e), 0);
    assert_int_equal(got.body_len, m.body_len);
    assert_memory_equal(got.body, body, m.body_len);
    meta_manifest_fini(&got);
}

/* Event log --------------------------------------------------------------- */

static void test_events_since(void **state)
{
    struct fixture *f = *state;
    struct metastore *ms = f->ms;
    struct err e = {0};
    struct buf b;
    int64_t last = -1;

    buf_init(&b, 1 << 20);
    assert_int_equal(ms->ops->events_since(ms, 0, 10, &b, &last, &e), 0);
    assert_string_equal(b.data, "[]");
    assert_int_equal(last, 0);
    buf_fini(&b);

    for (unsigned i = 1; i <= 5; i++) {
        char repo[16];
        snprintf(repo, sizeof(repo), "r\"%u", i); /* a quote, to exercise escaping */
        link_blob(ms, repo, i, i);
    }
    /* All of them, in order, with strictly increasing seq and hlc. */
    json_t *arr = events_json(ms, 0);
    assert_int_equal(json_array_size(arr), 5);
    json_int_t prev_seq = 0;
    json_int_t prev_hlc = 0;
    for (size_t i = 0; i < 5; i++) {
        json_t *ev = json_array_get(arr, i);
        json_int_t seq = json_integer_value(json_object_get(ev, "seq"));
        json_int_t hlc = json_integer_value(json_object_get(ev, "hlc"));
        assert_true(seq > prev_seq);
        assert_true(hlc > prev_hlc);
        assert_true(hlc >> 16 > 1600000000000LL); /* physical part in ms */
        char repo[16];
        snprintf(repo, sizeof(repo), "r\"%zu", i + 1);
        assert_string_equal(ev_str(ev, "repo"), repo);
        prev_seq = seq;
        prev_hlc = hlc;
    }
    json_int_t seq2 = json_integer_value(json_object_get(json_array_get(arr, 1), "seq"));
    json_int_t seq4 = json_integer_value(json_object_get(json_array_get(arr, 3), "seq"));
    json_decref(arr);

    /* Paging with max and after_seq. */
    buf_init(&b, 1 << 20);
    assert_int_equal(ms->ops->events_since(ms, seq2, 2, &b, &last, &e), 0);
    assert_int_equal(last, seq4);
    arr = json_loads(b.data, 0, NULL);
    assert_int_equal(json_array_size(arr), 2);
    json_decref(arr);
    buf_fini(&b);

    /* max 0, and after the end: empty, last_seq unchanged. */
    buf_init(&b, 1 << 20);
    assert_int_equal(ms->ops->events_since(ms, 0, 0, &b, &last, &e), 0);
    assert_string_equal(b.data, "[]");
    assert_int_equal(last, 0);
    buf_reset(&b);
    assert_int_equal(ms->ops->events_since(ms, prev_seq, 10, &b, &last, &e), 0);
    assert_string_equal(b.data, "[]");
    assert_int_equal(last, prev_seq);
    buf_fini(&b);

    /* A buffer with room for about two events returns fewer than max, still valid JSON. */
    buf_init(&b, 1 << 20);
    assert_int_equal(ms->ops->events_since(ms, 0, 1, &b, &last, &e), 0);
    size_t one_len = b.len;
    buf_fini(&b);
    buf_init(&b, 2 * one_len + 8);
    assert_int_equal(ms->ops->events_since(ms, 0, 10, &b, &last, &e), 0);
    arr = json_loads(b.data, 0, NULL);
    assert_non_null(arr);
    size_t n = json_array_size(arr);
    assert_true(n >= 1 && n < 5);
    assert_int_equal(last, json_integer_value(json_object_get(json_array_get(arr, n - 1), "seq")));
    json_decref(arr);
    buf_fini(&b);

    /* Not even one fits. */
    buf_init(&b, 16);
    assert_int_equal(ms->ops->events_since(ms, 0, 10, &b, &last, &e), -1);
    assert_int_equal(e.code, ERR_INTERNAL);
    assert_int_equal(last, 0);
    buf_fini(&b);
}

static void test_every_mutation_logs(void **state)
{
    struct fixture *f = *state;
    struct metastore *ms = f->ms;
    struct err e = {0};
    char b1[128];
    char b2[128];
    struct meta_manifest m = mf(1, b1, NULL);
    struct meta_manifest ref_m = mf(2, b2, "application/vnd.example.sig");
    struct meta_ref ref = {.digest = dg(1), .size = 10};
    bool is_orphan;

    link_blob(ms, "r", 1, 10);                                                   /* blob_link */
    assert_int_equal(ms->ops->manifest_put(ms, "r", &m, &ref, 1, NULL, "v1", &e), 0); /* 2 */
    assert_int_equal(ms->ops->manifest_put(ms, "r", &ref_m, NULL, 0, &m.digest, NULL, &e), 0);
    assert_int_equal(ms->ops->tag_delete(ms, "r", "v1", &e), 0);
    assert_int_equal(ms->ops->manifest_delete(ms, "r", &m.digest, &e), 0);
    assert_int_equal(ms->ops->blob_unlink(ms, "r", &ref.digest, &is_orphan, &e), 0);
    /* Failed mutations log nothing. */
    assert_int_equal(ms->ops->tag_delete(ms, "r", "v1", &e), -1);
    assert_int_equal(ms->ops->manifest_delete(ms, "r", &m.digest, &e), -1);
    assert_int_equal(ms->ops->blob_unlink(ms, "r", &ref.digest, &is_orphan, &e), -1);

    /* The put of the deleted manifest reads back as superseded (see
     * test_manifest_put_event_payload_derived). */
    static const char *const kinds[] = {"blob_link",  "superseded",    "tag_set",
                                        "manifest_put", "tag_delete",    "manifest_delete",
                                        "blob_unlink"};
    assert_kinds(ms, 0, kinds, 7);
    json_t *arr = change_events(ms, 0);
    for (size_t i = 0; i < 7; i++) {
        json_t *ev = json_array_get(arr, i);
        assert_string_equal(ev_str(ev, "origin"), REGION);
        assert_string_equal(ev_str(ev, "repo"), "r");
    }
    assert_string_equal(ev_str(json_array_get(arr, 2), "name"), "v1");
    assert_string_equal(ev_str(json_array_get(arr, 3), "digest"), ref_m.digest.str);
    json_t *put = json_object_get(json_array_get(arr, 3), "payload");
    assert_true(json_is_object(put));
    assert_string_equal(json_string_value(json_object_get(put, "subject")), m.digest.str);
    json_decref(arr);
}

/* A status event is a snapshot: a retry rewrites this region's row as InProgress without
 * an event, and a peer that reads the Failed event afterwards must still see Failed and
 * its details (image-version wait fails early on it). */
static void test_status_event_keeps_its_snapshot(void **state)
{
    struct fixture *f = *state;
    struct metastore *ms = f->ms;
    struct err e = {0};
    struct digest d = dg(9);
    struct meta_status failed = {.region = (char *)REGION, .state = (char *)"Failed",
                                 .bytes_total = 10, .updated_ms = 1,
                                 .details = (char *)"no region holds it"};
    assert_int_equal(ms->ops->status_set(ms, "r", &d, &failed, true, &e), 0);
    struct meta_status retry = {.region = (char *)REGION, .state = (char *)"InProgress",
                                .bytes_total = 10, .updated_ms = 2, .details = (char *)""};
    assert_int_equal(ms->ops->status_set(ms, "r", &d, &retry, false, &e), 0);
    struct meta_event *evs;
    size_t n;
    int64_t last;
    assert_int_equal(ms->ops->events_read(ms, 0, NULL, 100, &evs, &n, &last, &e), 0);
    bool is_seen = false;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(evs[i].kind, "status") != 0)
            continue;
        json_error_t je;
        json_t *p = json_loads(evs[i].payload, 0, &je);
        assert_non_null(p);
        assert_string_equal(json_string_value(json_object_get(p, "state")), "Failed");
        assert_string_equal(json_string_value(json_object_get(p, "details")),
                            "no region holds it");
        json_decref(p);
        is_seen = true;
    }
    for (size_t i = 0; i < n; i++)
        meta_event_fini(&evs[i]);
    free(evs);
    assert_true(is_seen);
}

/* Issue 21, bytes per tag: a region's status event about itself is stored short and read
 * back, by both readers, as exactly the JSON it used to store; another region's status
 * (relayed) and a payload stored before stay as they are. */
static void test_status_event_stored_short(void **state)
{
    struct fixture *f = *state;
    struct metastore *ms = f->ms;
    struct err e = {0};
    struct digest d = dg(9);
    struct meta_status own[2] = {
        {.region = (char *)REGION, .state = (char *)"Failed", .bytes_done = 3,
         .bytes_total = 10, .updated_ms = 1796337348625,
         .details = (char *)"a|b \"quoted\" -|9|"},
        {.region = (char *)REGION, .state = (char *)"Completed", .bytes_done = 10,
         .bytes_total = 10, .updated_ms = 1796337348626, .details = NULL, .has_copies = true,
         .copies = 2},
    };
    struct meta_status other = {.region = (char *)"eastus", .state = (char *)"Completed",
                                .bytes_total = 1, .updated_ms = 5, .details = (char *)""};
    const struct meta_status *all[3] = {&own[0], &own[1], &other};
    for (int i = 0; i < 3; i++)
        assert_int_equal(ms->ops->status_set(ms, "r", &d, all[i], true, &e), 0);
    assert_int_equal(db_int(f->path, "SELECT count(*) FROM events WHERE kind = 'status'"
                                     " AND payload LIKE '~1|%' AND length(payload) < 60", NULL),
                     2);
    /* as a build before this one stored it */
    sqlite3 *db;
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "INSERT INTO events(origin, hlc, kind, repo, digest,"
                                      " payload, origin_seq) VALUES ('westeurope', 1, 'status',"
                                      " 'r', 'sha256:x', '{\"region\":\"westeurope\"}', 1000)",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(db);
    char want[4][256];
    for (int i = 0; i < 3; i++) {
        struct buf b;
        buf_init(&b, 4096);
        sq_status_payload(&b, all[i]);
        snprintf(want[i], sizeof(want[i]), "%s", b.data);
        buf_fini(&b);
    }
    snprintf(want[3], sizeof(want[3]), "{\"region\":\"westeurope\"}");
    /* events_read (replication) */
    struct meta_event *evs;
    size_t n;
    int64_t last;
    assert_int_equal(ms->ops->events_read(ms, 0, NULL, 100, &evs, &n, &last, &e), 0);
    int k = 0;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(evs[i].kind, "status") == 0)
            assert_string_equal(evs[i].payload, want[k++]);
        meta_event_fini(&evs[i]);
    }
    free(evs);
    assert_int_equal(k, 4);
    /* events_since (the management API's log) */
    json_t *arr = events_json(ms, 0);
    k = 0;
    for (size_t i = 0; i < json_array_size(arr); i++) {
        json_t *ev = json_array_get(arr, i);
        if (strcmp(ev_str(ev, "kind"), "status") != 0)
            continue;
        char *got = json_dumps(json_object_get(ev, "payload"), JSON_COMPACT | JSON_PRESERVE_ORDER);
        json_t *w = json_loads(want[k++], 0, NULL);
        char *exp = json_dumps(w, JSON_COMPACT | JSON_PRESERVE_ORDER);
        assert_string_equal(got, exp);
        free(got);
        free(exp);
        json_decref(w);
    }
    json_decref(arr);
    assert_int_equal(k, 4);
}

/* A short form damaged on disk is never passed on as text: peers get a no-op event, the
 * management API's log a null payload (the rest of the log stays readable). */
static void test_damaged_short_status_is_not_passed_on(void **state)
{
    struct fixture *f = *state;
    struct metastore *ms = f->ms;
    struct err e = {0};
    struct digest d = dg(9);
    struct meta_status st = {.region = (char *)REGION, .state = (char *)"Completed",
                             .bytes_done = 1, .bytes_total = 1, .updated_ms = 5};
    assert_int_equal(ms->ops->status_set(ms, "r", &d, &st, true, &e), 0);
    sqlite3 *db;
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "UPDATE events SET payload = '~1|Completed|x'"
                                      " WHERE kind = 'status'", NULL, NULL, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_changes(db), 1);
    sqlite3_close(db);
    struct meta_event *evs;
    size_t n;
    int64_t last;
    assert_int_equal(ms->ops->events_read(ms, 0, NULL, 100, &evs, &n, &last, &e), 0);
    assert_int_equal(n, 1);
    assert_string_equal(evs[0].kind, "superseded");
    assert_null(evs[0].payload);
    meta_event_fini(&evs[0]);
    free(evs);
    json_t *arr = events_json(ms, 0);
    assert_non_null(arr);
    assert_int_equal(json_array_size(arr), 1);
    assert_true(json_is_null(json_object_get(json_array_get(arr, 0), "payload")));
    json_decref(arr);
}

/* Issue 21, bytes per tag: the manifest_put and status events of a push are stored without
 * their payload (the manifests, manifest_refs and repl_status rows hold it) and read back
 * with the payload peers of every version parse. */
static void test_manifest_put_event_payload_derived(void **state)
{
    struct fixture *f = *state;
    struct metastore *ms = f->ms;
    struct err e = {0};
    char body[128];
    struct meta_manifest m = mf(7, body, "application/vnd.example.sig");
    digest_of_buffer(DIGEST_SHA256, m.body, m.body_len, &m.digest); /* peers verify it */
    struct meta_ref ref = {.digest = dg(1), .size = 10};
    link_blob(ms, "r", 1, 10);
    assert_int_equal(ms->ops->manifest_put(ms, "r", &m, &ref, 1, NULL, "v1", &e), 0);

    sqlite3 *db;
    sqlite3_stmt *s;
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    /* The put is stored without its payload; status events keep theirs (a snapshot). */
    assert_int_equal(sqlite3_prepare_v2(db, "SELECT sum(kind = 'manifest_put'),"
                                            " sum(kind = 'status') FROM events"
                                            " WHERE payload IS NULL",
                                        -1, &s, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int(s, 0), 1);
    assert_int_equal(sqlite3_column_int(s, 1), 0);
    sqlite3_finalize(s);
    sqlite3_close(db);

    struct meta_event *evs;
    size_t n;
    int64_t last;
    assert_int_equal(ms->ops->events_read(ms, 0, NULL, 100, &evs, &n, &last, &e), 0);
    bool has_put = false, has_status = false;
    for (size_t i = 0; i < n; i++) {
        json_error_t je;
        json_t *p = evs[i].payload ? json_loads(evs[i].payload, 0, &je) : NULL;
        if (strcmp(evs[i].kind, "manifest_put") == 0) {
            has_put = true;
            assert_non_null(p);
            assert_string_equal(json_string_value(json_object_get(p, "mediaType")), MT_MANIFEST);
            assert_string_equal(json_string_value(json_object_get(p, "artifactType")),
                                "application/vnd.example.sig");
            assert_string_equal(json_string_value(json_object_get(p, "annotations")),
                                "{\"k\":\"v\"}");
            json_t *r0 = json_array_get(json_object_get(p, "refs"), 0);
            assert_string_equal(json_string_value(json_object_get(r0, "digest")), ref.digest.str);
            assert_int_equal(json_integer_value(json_object_get(r0, "size")), 10);
            assert_true(json_is_false(json_object_get(r0, "isManifest")));
            const char *b64 = json_string_value(json_object_get(p, "body"));
            size_t len = 0;
            char *got = base64_decode(b64, strlen(b64), &len);
            assert_int_equal(len, m.body_len);
            assert_memory_equal(got, m.body, len);
            free(got);
        } else if (strcmp(evs[i].kind, "status") == 0) {
            has_status = true;
            assert_non_null(p);
            assert_string_equal(json_string_value(json_object_get(p, "region")), REGION);
            assert_string_equal(json_string_value(json_object_get(p, "state")), "Completed");
            assert_int_equal(json_integer_value(json_object_get(p, "bytesTotal")), 10);
        }
        json_decref(p);
    }
    assert_true(has_put && has_status);

    /* A peer applies the derived events like the stored ones: same manifest, same tag. */
    char peer_path[128];
    snprintf(peer_path, sizeof(peer_path), "%s/peer.db", f->dir);
    struct metastore *peer = metastore_sqlite_open(peer_path, "eastus", &e);
    assert_non_null(peer);
    for (size_t i = 0; i < n; i++) {
        bool is_new, is_gap;
        assert_int_equal(peer->ops->event_apply(peer, &evs[i], &is_new, &is_gap, &e), 0);
        assert_true(is_new);
        meta_event_fini(&evs[i]);
    }
    free(evs);
    struct digest d;
    char *mt = NULL;
    int64_t size, recorded_ms;
    bool is_visible;
    assert_int_equal(peer->ops->manifest_lookup(peer, "r", "v1", &d, &mt, &size, &is_visible,
                                                &recorded_ms, &e),
                     0);
    assert_string_equal(d.str, m.digest.str);
    assert_int_equal(size, (int64_t)m.body_len);
    free(mt);
    /* ... and relays them stored the same way, so a third region gets full payloads too. */
    assert_int_equal(peer->ops->events_read(peer, 0, NULL, 100, &evs, &n, &last, &e), 0);
    bool has_body = false;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(evs[i].kind, "manifest_put") == 0)
            has_body = evs[i].payload != NULL && strstr(evs[i].payload, "\"body\":") != NULL;
        meta_event_fini(&evs[i]);
    }
    free(evs);
    assert_true(has_body);
    peer->ops->close(peer);
}

/* A put whose manifest was deleted since reads back as "superseded", which a peer applies
 * as a no-op (the tombstone that follows in the log decides), advancing its version vector. */
static void test_superseded_put_is_a_noop_for_peers(void **state)
{
    struct fixture *f = *state;
    struct metastore *ms = f->ms;
    struct err e = {0};
    char body[128];
    struct meta_manifest m = mf(8, body, NULL);
    digest_of_buffer(DIGEST_SHA256, m.body, m.body_len, &m.digest);
    assert_int_equal(ms->ops->manifest_put(ms, "r", &m, NULL, 0, NULL, "v1", &e), 0);
    assert_int_equal(ms->ops->manifest_delete(ms, "r", &m.digest, &e), 0);
    struct meta_event *evs;
    size_t n;
    int64_t last;
    assert_int_equal(ms->ops->events_read(ms, 0, NULL, 100, &evs, &n, &last, &e), 0);
    assert_string_equal(evs[0].kind, "superseded");
    assert_null(evs[0].payload);

    char peer_path[128];
    snprintf(peer_path, sizeof(peer_path), "%s/peer.db", f->dir);
    struct metastore *peer = metastore_sqlite_open(peer_path, "eastus", &e);
    assert_non_null(peer);
    bool is_new, is_gap;
    assert_int_equal(peer->ops->event_apply(peer, &evs[0], &is_new, &is_gap, &e), 0);
    assert_true(is_new);
    struct meta_vv vv;
    assert_int_equal(peer->ops->vv_get(peer, &vv, &e), 0);
    assert_int_equal(meta_vv_get(&vv, REGION), evs[0].origin_seq);
    meta_vv_fini(&vv);
    for (size_t i = 1; i < n; i++)
        assert_int_equal(peer->ops->event_apply(peer, &evs[i], &is_new, &is_gap, &e), 0);
    struct meta_manifest got;
    assert_int_equal(peer->ops->manifest_get(peer, "r", m.digest.str, &got, &e), -1);
    for (size_t i = 0; i < n; i++)
        meta_event_fini(&evs[i]);
    free(evs);
    peer->ops->close(peer);
}

/* A read whose rows the reader's version vector all filters out still moves the reader's
 * cursor past them: those applied events (committed without a sync of their own) must be
 * durable before the cursor is returned, or a crash could reuse their positions unseen. */
static void test_filtered_read_waits_for_the_rows_it_skips(void **state)
{
    struct fixture *f = *state;
    struct err e = {0};
    char body[128];
    struct meta_manifest m = mf(9, body, NULL);
    digest_of_buffer(DIGEST_SHA256, m.body, m.body_len, &m.digest);
    assert_int_equal(f->ms->ops->manifest_put(f->ms, "r", &m, NULL, 0, NULL, "v1", &e), 0);
    struct meta_event *evs;
    size_t n;
    int64_t last;
    assert_int_equal(f->ms->ops->events_read(f->ms, 0, NULL, 100, &evs, &n, &last, &e), 0);
    assert_true(n > 0);

    char peer_path[128];
    snprintf(peer_path, sizeof(peer_path), "%s/peer.db", f->dir);
    struct metastore *peer = metastore_sqlite_open(peer_path, "eastus", &e);
    assert_non_null(peer);
    bool is_new, is_gap;
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(peer->ops->event_apply(peer, &evs[i], &is_new, &is_gap, &e), 0);
        assert_true(is_new);
    }
    char *origin = evs[0].origin;
    int64_t origin_seq = evs[n - 1].origin_seq;
    struct meta_vv vv = {.origins = &origin, .seqs = &origin_seq, .n = 1};
    struct sq_store *st = (struct sq_store *)peer;
    AZ(pthread_mutex_lock(&st->dmu));
    uint64_t synced_before = st->d_synced;
    AZ(pthread_mutex_unlock(&st->dmu));

    struct meta_event *none;
    size_t n_none;
    assert_int_equal(peer->ops->events_read(peer, 0, &vv, 100, &none, &n_none, &last, &e), 0);
    assert_int_equal(n_none, 0);
    free(none);
    assert_true(last > 0);
    AZ(pthread_mutex_lock(&st->dmu));
    assert_true(st->d_synced > synced_before);
    AZ(pthread_mutex_unlock(&st->dmu));
    for (size_t i = 0; i < n; i++)
        meta_event_fini(&evs[i]);
    free(evs);
    peer->ops->close(peer);
}

/* Events written by the previous version (payload stored in the row) are served as stored. */
static void test_stored_payloads_served_as_stored(void **state)
{
    struct fixture *f = *state;
    struct err e = {0};
    sqlite3 *db;
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    assert_int_equal(
        sqlite3_exec(db,
                     "INSERT INTO events(origin, hlc, kind, repo, name, digest, payload,"
                     " origin_seq) VALUES ('old', 5, 'manifest_put', 'gone', NULL, 'sha256:aa',"
                     " '{\"mediaType\":\"x\",\"refs\":[],\"body\":\"e30=\"}', 1),"
                     " ('old', 6, 'status', 'gone', NULL, 'sha256:aa', '{\"region\":\"old\"}', 2)",
                     NULL, NULL, NULL),
        SQLITE_OK);
    sqlite3_close(db);
    struct meta_event *evs;
    size_t n;
    int64_t last;
    assert_int_equal(f->ms->ops->events_read(f->ms, 0, NULL, 100, &evs, &n, &last, &e), 0);
    assert_int_equal(n, 2);
    assert_string_equal(evs[0].kind, "manifest_put");
    assert_string_equal(evs[0].payload, "{\"mediaType\":\"x\",\"refs\":[],\"body\":\"e30=\"}");
    assert_string_equal(evs[1].kind, "status");
    assert_string_equal(evs[1].payload, "{\"region\":\"old\"}");
    for (size_t i = 0; i < n; i++)
        meta_event_fini(&evs[i]);
    free(evs);
}

/* Concurrency ------------------------------------------------------------- */

enum { N_WRITERS = 8, PUTS_PER_WRITER = 10 };

struct writer_arg {
    struct metastore *ms;
    pthread_barrier_t *start;
    unsigned id;
    int n_failed;
};

/* Each round: move "latest" to a new manifest, then set and delete a private tag. The
 * delete starts with a read, so it also proves writes take the lock up front (a
 * deferred transaction upgrading under contention fails with SQLITE_BUSY at once). */
static void *writer_thread(void *p)
{
    struct writer_arg *a = p;
    char mine[16];
    snprintf(mine, sizeof(mine), "w%u", a->id);
    pthread_barrier_wait(a->start);
    for (unsigned i = 0; i < PUTS_PER_WRITER; i++) {
        char body[128];
        struct meta_manifest m = mf(1000 + a->id * 100 + i, body, NULL);
        struct err e = {0};
        if (a->ms->ops->manifest_put(a->ms, "race", &m, NULL, 0, NULL, "latest", &e) != 0)
            a->n_failed++;
        if (a->ms->ops->manifest_put(a->ms, "race", &m, NULL, 0, NULL, mine, &e) != 0)
            a->n_failed++;
        if (a->ms->ops->tag_delete(a->ms, "race", mine, &e) != 0)
            a->n_failed++;
    }
    return NULL;
}

static void test_concurrent_writers_one_winner(void **state)
{
    struct fixture *f = *state;
    struct writer_arg args[N_WRITERS];
    pthread_t threads[N_WRITERS];
    struct err e = {0};
    struct meta_manifest got;
    pthread_barrier_t start;

    assert_int_equal(pthread_barrier_init(&start, NULL, N_WRITERS), 0);
    for (unsigned i = 0; i < N_WRITERS; i++) {
        args[i] = (struct writer_arg){.ms = f->ms, .start = &start, .id = i};
        assert_int_equal(pthread_create(&threads[i], NULL, writer_thread, &args[i]), 0);
    }
    /* Join them all before asserting anything, so a failure leaves no thread behind. */
    for (unsigned i = 0; i < N_WRITERS; i++)
        assert_int_equal(pthread_join(threads[i], NULL), 0);
    for (unsigned i = 0; i < N_WRITERS; i++)
        assert_int_equal(args[i].n_failed, 0);
    pthread_barrier_destroy(&start);

    assert_int_equal(f->ms->ops->manifest_get(f->ms, "race", "latest", &got, &e), 0);
    /* The winner is the last tag_set in the log, and the log is in hlc order. */
    json_t *arr = events_json(f->ms, 0);
    size_t n_tag_set = 0;
    size_t n_tag_delete = 0;
    size_t n_put = 0;
    const char *last_tagged = NULL;
    json_int_t prev_hlc = 0;
    for (size_t i = 0; i < json_array_size(arr); i++) {
        json_t *ev = json_array_get(arr, i);
        json_int_t hlc = json_integer_value(json_object_get(ev, "hlc"));
        assert_true(hlc > prev_hlc);
        prev_hlc = hlc;
        if (strcmp(ev_str(ev, "kind"), "tag_set") == 0) {
            n_tag_set++;
            if (strcmp(ev_str(ev, "name"), "latest") == 0)
                last_tagged = ev_str(ev, "digest");
        } else if (strcmp(ev_str(ev, "kind"), "tag_delete") == 0) {
            n_tag_delete++;
        } else if (strcmp(ev_str(ev, "kind"), "manifest_put") == 0) {
            n_put++;
        }
    }
    /* each manifest is put twice, and the second put is a write too (a new clock) */
    assert_int_equal(n_put, 2 * N_WRITERS * PUTS_PER_WRITER);
    assert_int_equal(n_tag_set, 2 * N_WRITERS * PUTS_PER_WRITER);
    assert_int_equal(n_tag_delete, N_WRITERS * PUTS_PER_WRITER);
    assert_non_null(last_tagged);
    assert_string_equal(got.digest.str, last_tagged);
    json_decref(arr);
    meta_manifest_fini(&got);

    struct meta_name_list l;
    assert_int_equal(f->ms->ops->tag_list(f->ms, "race", NULL, -1, &l, &e), 0);
    assert_int_equal(l.n, 1);
    assert_string_equal(l.names[0], "latest");
    meta_name_list_fini(&l);
}

struct reader_arg {
    struct metastore *ms;
    const struct digest *subject;
    const struct digest *pending; /* written by the open transaction, not yet visible */
    int64_t max_op_ns;
    int n_failed;
};

static void *reader_thread(void *p)
{
    struct reader_arg *a = p;
    for (int i = 0; i < 20; i++) {
        struct err e = {0};
        struct meta_manifest m;
        struct meta_name_list l;
        struct meta_referrer_list rl;
        uint64_t size;
        int64_t t0 = util_mono_ns();
        int bad = 0;
        bad |= a->ms->ops->manifest_get(a->ms, "r", "v1", &m, &e) != 0;
        meta_manifest_fini(&m);
        bad |= a->ms->ops->tag_list(a->ms, "r", NULL, -1, &l, &e) != 0 || l.n != 2;
        meta_name_list_fini(&l);
        bad |= a->ms->ops->repo_list(a->ms, NULL, -1, &l, &e) != 0 || l.n != 1;
        meta_name_list_fini(&l);
        bad |= a->ms->ops->referrers(a->ms, "r", a->subject, NULL, &rl, &e) != 0;
        meta_referrer_list_fini(&rl);
        /* The uncommitted blob is not visible. */
        bad |= a->ms->ops->blob_find(a->ms, a->pending, &size, &e) != -1;
        int64_t dt = util_mono_ns() - t0;
        if (dt > a->max_op_ns)
            a->max_op_ns = dt;
        a->n_failed += bad;
        if (bad)
            break; /* a blocked reader already took the 10 s busy timeout */
    }
    return NULL;
}

struct late_writer_arg {
    struct metastore *ms;
    atomic_int is_done;
    int rc;
};

/* tag_delete reads before it writes: only a transaction that took the write lock up
 * front (BEGIN IMMEDIATE) can wait for the other writer and still succeed; a deferred
 * one would fail with SQLITE_BUSY when upgrading its stale read snapshot. */
static void *late_writer_thread(void *p)
{
    struct late_writer_arg *a = p;
    struct err e = {0};
    a->rc = a->ms->ops->tag_delete(a->ms, "r", "gone", &e);
    atomic_store(&a->is_done, 1);
    return NULL;
}

/* The log copier (log_copier.c) ------------------------------------------- */

enum { COPY_WRITERS = 4, COPY_PUTS = 600, COPY_READERS = 2 };

struct copy_arg {
    struct metastore *ms;
    unsigned id;
    atomic_bool *is_done;
    int n_failed;
};

static void *copy_writer_thread(void *p)
{
    struct copy_arg *a = p;
    for (unsigned i = 0; i < COPY_PUTS; i++) {
        char body[128], tag[32];
        struct meta_manifest m = mf(20000 + a->id * COPY_PUTS + i, body, NULL);
        snprintf(tag, sizeof(tag), "w%u-%u", a->id, i);
        struct err e = {0};
        if (a->ms->ops->manifest_put(a->ms, "copied", &m, NULL, 0, NULL, tag, &e) != 0)
            a->n_failed++;
    }
    a->ms->ops->thread_release(a->ms);
    return NULL;
}

/* Readers beside the copier: each read is a snapshot the copier must not copy past. */
static void *copy_reader_thread(void *p)
{
    struct copy_arg *a = p;
    while (!atomic_load(a->is_done)) {
        struct meta_manifest got;
        struct err e = {0};
        if (a->ms->ops->manifest_get(a->ms, "copied", "w0-0", &got, &e) == 0)
            meta_manifest_fini(&got);
        else if (e.code != ERR_MANIFEST_UNKNOWN && e.code != ERR_NAME_UNKNOWN)
            a->n_failed++;
    }
    a->ms->ops->thread_release(a->ms);
    return NULL;
}

static int integrity_of(const char *path, char *out, size_t out_len)
{
    sqlite3 *db;
    sqlite3_stmt *s;
    snprintf(out, out_len, "?");
    if (sqlite3_open(path, &db) != SQLITE_OK)
        return -1;
    int rc = sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &s, NULL);
    if (rc == SQLITE_OK && sqlite3_step(s) == SQLITE_ROW)
        snprintf(out, out_len, "%s", (const char *)sqlite3_column_text(s, 0));
    sqlite3_finalize(s);
    sqlite3_close(db);
    return 0;
}

/* Four writers and two readers (2 400 commits): the copier copies part of the log beside
 * them and ends it itself after a pass (counted only when a copy or an end took place);
 * afterwards the file is whole and holds every tag. A copier that copied the log to its
 * end beside a write (the pin left out: checked) stops this process under the strict
 * checks. What a pass may copy is tested against SQLite in test_sql_driver.c. */
static void test_log_copier_copies_beside_the_writes(void **state)
{
    struct fixture *f = *state;
    struct sq_store *st = (struct sq_store *)f->ms;
    assert_non_null(st->copier);
    atomic_bool is_done = false;
    struct copy_arg wargs[COPY_WRITERS], rargs[COPY_READERS];
    pthread_t writers[COPY_WRITERS], readers[COPY_READERS];
    for (unsigned i = 0; i < COPY_READERS; i++) {
        rargs[i] = (struct copy_arg){.ms = f->ms, .is_done = &is_done};
        assert_int_equal(pthread_create(&readers[i], NULL, copy_reader_thread, &rargs[i]), 0);
    }
    for (unsigned i = 0; i < COPY_WRITERS; i++) {
        wargs[i] = (struct copy_arg){.ms = f->ms, .id = i};
        assert_int_equal(pthread_create(&writers[i], NULL, copy_writer_thread, &wargs[i]), 0);
    }
    for (unsigned i = 0; i < COPY_WRITERS; i++)
        assert_int_equal(pthread_join(writers[i], NULL), 0);
    atomic_store(&is_done, true);
    for (unsigned i = 0; i < COPY_READERS; i++)
        assert_int_equal(pthread_join(readers[i], NULL), 0);
    for (unsigned i = 0; i < COPY_WRITERS; i++)
        assert_int_equal(wargs[i].n_failed, 0);
    for (unsigned i = 0; i < COPY_READERS; i++)
        assert_int_equal(rargs[i].n_failed, 0);
    /* The copier runs when it can get the writer mutex: on a loaded machine it may not have
     * had its turn yet. More commits until it has, against a deadline. */
    uint64_t n_passes = 0, n_ends = 0;
    int64_t deadline = util_mono_ns() + 60 * 1000000000LL;
    for (unsigned i = 0; util_mono_ns() < deadline; i++) {
        sq_log_copier_counts(st->copier, &n_passes, &n_ends);
        if (n_passes > 0 && n_ends > 0)
            break;
        char body[128];
        struct meta_manifest m = mf(90000 + i, body, NULL);
        struct err e = {0};
        assert_int_equal(f->ms->ops->manifest_put(f->ms, "more", &m, NULL, 0, NULL, "t", &e), 0);
    }
    assert_true(n_passes > 0);
    assert_true(n_ends > 0);

    char result[256];
    assert_int_equal(integrity_of(f->path, result, sizeof(result)), 0);
    assert_string_equal(result, "ok");
    for (unsigned w = 0; w < COPY_WRITERS; w++) {
        for (unsigned i = 0; i < COPY_PUTS; i++) {
            char tag[32];
            snprintf(tag, sizeof(tag), "w%u-%u", w, i);
            struct meta_manifest got;
            struct err e = {0};
            assert_int_equal(f->ms->ops->manifest_get(f->ms, "copied", tag, &got, &e), 0);
            struct digest want = dg(100000 + 20000 + w * COPY_PUTS + i);
            assert_true(digest_equal(&got.digest, &want));
            meta_manifest_fini(&got);
        }
    }
}

/* Pushes until told to stop (is_done). */
static void *endless_writer_thread(void *p)
{
    struct copy_arg *a = p;
    for (unsigned i = 0; !atomic_load(a->is_done); i++) {
        char body[128], tag[32];
        struct meta_manifest m = mf(50000 + a->id * 100000 + i, body, NULL);
        snprintf(tag, sizeof(tag), "e%u-%u", a->id, i);
        struct err e = {0};
        if (a->ms->ops->manifest_put(a->ms, "endless", &m, NULL, 0, NULL, tag, &e) != 0)
            a->n_failed++;
    }
    a->ms->ops->thread_release(a->ms);
    return NULL;
}

/* The log's TRUNCATE checkpoint (sq_compact_log: after a repository's removal, the sealing
 * pass) is never refused because the copier's checkpoint was running beside the writes:
 * SQLite answers a second checkpoint busy at once, and the removed rows' old page images
 * would stay in the log (sq_log_copier_hold keeps the copier's out meanwhile). Beside two
 * writers and a reader, a compaction each time the log is just past the copier's step (a
 * pass due or running), until the copier has made 30 passes. */
static void test_log_compaction_is_not_refused_beside_the_copier(void **state)
{
    struct fixture *f = *state;
    struct sq_store *st = (struct sq_store *)f->ms;
    atomic_bool is_done = false;
    struct copy_arg args[3];
    pthread_t threads[3];
    for (unsigned i = 0; i < 3; i++) {
        args[i] = (struct copy_arg){.ms = f->ms, .id = i, .is_done = &is_done};
        assert_int_equal(pthread_create(&threads[i], NULL,
                                        i < 2 ? endless_writer_thread : copy_reader_thread,
                                        &args[i]),
                         0);
    }
    struct err e = {0};
    struct sq_conn *c = sq_conn_of(f->ms, &e);
    assert_non_null(c);
    int n_refused = 0;
    uint64_t n_passes = 0, n_ends = 0;
    int64_t deadline = util_mono_ns() + 60 * 1000000000LL;
    while (n_passes < 30 && util_mono_ns() < deadline) {
        /* Just past the copier's step (500 pages): a pass is due or running now. */
        AZ(pthread_mutex_lock(&st->wmu));
        struct sql_db *wdb = st->wdb;
        AZ(pthread_mutex_unlock(&st->wmu));
        if (wdb == NULL || st->drv->log_pages(wdb) < 520) {
            usleep(1000);
            continue;
        }
        n_refused += sq_compact_log(c) != SQL_OK;
        sq_log_copier_counts(st->copier, &n_passes, &n_ends);
    }
    atomic_store(&is_done, true);
    for (unsigned i = 0; i < 3; i++)
        assert_int_equal(pthread_join(threads[i], NULL), 0);
    for (unsigned i = 0; i < 3; i++)
        assert_int_equal(args[i].n_failed, 0);
    assert_true(n_passes >= 30);
    assert_int_equal(n_refused, 0);
}

static void test_readers_not_blocked_by_writer(void **state)
{
    struct fixture *f = *state;
    struct metastore *ms = f->ms;
    struct err e = {0};
    char body[128];
    struct meta_manifest m = mf(1, body, NULL);
    struct digest pending = dg(444);
    sqlite3 *db;
    uint64_t size;

    assert_int_equal(ms->ops->manifest_put(ms, "r", &m, NULL, 0, NULL, "v1", &e), 0);
    char body2[128];
    struct meta_manifest m2 = mf(2, body2, NULL);
    assert_int_equal(ms->ops->manifest_put(ms, "r", &m2, NULL, 0, NULL, "gone", &e), 0);

    /* Another writer holds the write lock for as long as it likes. */
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    char sql[256];
    snprintf(sql, sizeof(sql), "BEGIN IMMEDIATE; INSERT INTO blobs(digest, size) VALUES ('%s', 4)",
             pending.str);
    assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);

    enum { N_READERS = 4 };
    struct reader_arg rargs[N_READERS];
    pthread_t readers[N_READERS];
    for (int i = 0; i < N_READERS; i++) {
        rargs[i] = (struct reader_arg){.ms = ms, .subject = &m.digest, .pending = &pending};
        assert_int_equal(pthread_create(&readers[i], NULL, reader_thread, &rargs[i]), 0);
    }
    for (int i = 0; i < N_READERS; i++)
        assert_int_equal(pthread_join(readers[i], NULL), 0);
    for (int i = 0; i < N_READERS; i++) {
        assert_int_equal(rargs[i].n_failed, 0);
        /* The busy timeout is 10 s: a reader that waited for the lock would show. */
        assert_true(rargs[i].max_op_ns < 1000000000LL);
    }

    /* A writer through the metastore waits for the lock, then succeeds. */
    struct late_writer_arg warg = {.ms = ms};
    pthread_t writer;
    assert_int_equal(pthread_create(&writer, NULL, late_writer_thread, &warg), 0);
    usleep(300 * 1000);
    int was_done_early = atomic_load(&warg.is_done);
    assert_int_equal(sqlite3_exec(db, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    assert_int_equal(pthread_join(writer, NULL), 0);
    assert_int_equal(was_done_early, 0);
    assert_int_equal(warg.rc, 0);
    assert_int_equal(ms->ops->blob_find(ms, &pending, &size, &e), 0);
    assert_int_equal(size, 4);
    struct meta_manifest got;
    assert_int_equal(ms->ops->manifest_get(ms, "r", "gone", &got, &e), -1);
    assert_int_equal(e.code, ERR_MANIFEST_UNKNOWN);
}

/* Writes outside transactions (upload rows, webhook deliveries, peer cursors) hold the
 * writer mutex like transactions do: no checkpoint may start beside a write that may start
 * the log over (SQLite's WAL-reset bug, meta_sql.c). With MERIDIAN_STRICT_CHECKS set
 * (meson.build) the store stops on a write without it (check_write_locked), so running
 * each one is the check. */
static void test_autocommit_writes_hold_the_writer_mutex(void **state)
{
    struct fixture *f = *state;
    struct metastore *ms = f->ms;
    struct err e = {0};
    assert_non_null(getenv("MERIDIAN_STRICT_CHECKS"));

    assert_int_equal(ms->ops->upload_create(ms, "u-1", "r", util_now_s() + 60, NULL, false, &e),
                     0);
    assert_int_equal(ms->ops->upload_delete(ms, "u-1", &e), 0);
    struct meta_delivery d = {.webhook = (char *)"hook", .action = (char *)"push",
                              .payload = (char *)"{}", .state = META_DELIVERY_PENDING,
                              .latency_ms = -1, .created_ms = 1, .updated_ms = 1,
                              .next_attempt_ms = 1};
    snprintf(d.id, sizeof(d.id), "00000000-0000-4000-8000-000000000001");
    assert_int_equal(ms->ops->delivery_add(ms, &d, 1, &e), 0);
    d.state = META_DELIVERY_DELIVERED;
    d.attempts = 1;
    d.status_code = 200;
    assert_int_equal(ms->ops->delivery_update(ms, &d, &e), 0);
    snprintf(d.id, sizeof(d.id), "00000000-0000-4000-8000-000000000002");
    assert_int_equal(ms->ops->delivery_update(ms, &d, &e), -1);
    assert_int_equal(e.code, ERR_NOT_FOUND);
    assert_int_equal(ms->ops->delivery_prune(ms, "hook", 0, "webhook", &e), 0);
    struct meta_delivery_list l;
    assert_int_equal(ms->ops->delivery_list(ms, "hook", 10, &l, &e), 0);
    assert_int_equal(l.n, 0);
    meta_delivery_list_fini(&l);
    assert_int_equal(ms->ops->cursor_set(ms, "eastus", 42, &e), 0);
    int64_t seq = 0;
    assert_int_equal(ms->ops->cursor_get(ms, "eastus", &seq, &e), 0);
    assert_int_equal(seq, 42);
}

/* thread_release closes the calling thread's connection at once (a detached thread's exit
 * must not race the store's close): it leaves the store's list, and a later use opens a
 * new one. */
static size_t conn_count(struct metastore *ms)
{
    struct sq_store *st = (struct sq_store *)ms;
    size_t n = 0;
    AZ(pthread_mutex_lock(&st->mu));
    for (struct sq_conn *c = st->conns; c != NULL; c = c->next)
        n++;
    AZ(pthread_mutex_unlock(&st->mu));
    return n;
}

struct release_arg {
    struct metastore *ms;
    size_t n_before, n_after, n_again;
};

static void *releasing_thread(void *p)
{
    struct release_arg *a = p;
    struct err e = {0};
    int64_t seq;
    assert_int_equal(a->ms->ops->cursor_get(a->ms, "nobody", &seq, &e), 0);
    a->n_before = conn_count(a->ms);
    a->ms->ops->thread_release(a->ms);
    a->n_after = conn_count(a->ms);
    a->ms->ops->thread_release(a->ms); /* a second time: nothing to do */
    assert_int_equal(a->ms->ops->cursor_get(a->ms, "nobody", &seq, &e), 0);
    a->n_again = conn_count(a->ms);
    a->ms->ops->thread_release(a->ms);
    return NULL;
}

static void test_thread_release_closes_the_thread_connection(void **state)
{
    struct fixture *f = *state;
    struct release_arg a = {.ms = f->ms};
    size_t n0 = conn_count(f->ms);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, releasing_thread, &a), 0);
    assert_int_equal(pthread_join(t, NULL), 0);
    assert_int_equal(a.n_before, n0 + 1);
    assert_int_equal(a.n_after, n0);
    assert_int_equal(a.n_again, n0 + 1);
    assert_int_equal(conn_count(f->ms), n0);
}

/* object_create refuses a live object and takes a deleted one's place. */
static void test_object_create_refuses_an_existing_object(void **state)
{
    struct fixture *f = *state;
    struct metastore *ms = f->ms;
    struct err e = {0};
    char *v = NULL;
    assert_int_equal(ms->ops->object_create(ms, "thing", "a", "{\"n\":1}", &e), 0);
    assert_int_equal(ms->ops->object_create(ms, "thing", "a", "{\"n\":2}", &e), -1);
    assert_int_equal(e.code, ERR_CONFLICT);
    assert_int_equal(ms->ops->object_get(ms, "thing", "a", &v, &e), 0);
    assert_string_equal(v, "{\"n\":1}");
    free(v);
    /* The refused create wrote no event: the log ends with the first. */
    json_t *arr = events_json(ms, 0);
    size_t n_puts = 0;
    for (size_t i = 0; i < json_array_size(arr); i++)
        n_puts += strcmp(ev_str(json_array_get(arr, i), "kind"), "object_put") == 0;
    json_decref(arr);
    assert_int_equal(n_puts, 1);
    assert_int_equal(ms->ops->object_delete(ms, "thing", "a", &e), 0);
    assert_int_equal(ms->ops->object_create(ms, "thing", "a", "{\"n\":3}", &e), 0);
    assert_int_equal(ms->ops->object_get(ms, "thing", "a", &v, &e), 0);
    assert_string_equal(v, "{\"n\":3}");
    free(v);
}

/* Webhook secrets at rest ----------------------------------------------------------- */

#define CLEAR_TOKEN "Bearer 0123456789abcdef-clear-token"
/* A receiver's URL holding secrets of its own (userinfo, a query token). */
#define HOOK_URI "http://hook:url-secret-user@127.0.0.1:9/h?token=url-secret-query"
#define HOOK_VALUE(token)                                                                   \
    "{\"name\":\"hookone\",\"location\":\"westeurope\",\"uri\":\"" HOOK_URI "\","                \
    "\"actions\":[\"push\"],\"scope\":\"*\",\"enabled\":true,"                              \
    "\"customHeaders\":{\"Authorization\":\"" token "\",\"X-Team\":\"infra\"}}"

/* Bytes of meta.db and its WAL contain needle? */
static bool db_files_contain(const struct fixture *f, const char *needle)
{
    static const char *const suffixes[] = {"", "-wal"};
    bool found = false;
    for (size_t i = 0; i < 2 && !found; i++) {
        char path[128];
        snprintf(path, sizeof(path), "%s%s", f->path, suffixes[i]);
        FILE *fp = fopen(path, "rb");
        if (fp == NULL)
            continue;
        fseek(fp, 0, SEEK_END);
        long n = ftell(fp);
        fseek(fp, 0, SEEK_SET);
        char *data = xmalloc((size_t)n + 1);
        assert_int_equal(fread(data, 1, (size_t)n, fp), (size_t)n);
        fclose(fp);
        found = memmem(data, (size_t)n, needle, strlen(needle)) != NULL;
        free(data);
    }
    return found;
}

/* objects.value of (kind, key) as stored, read with plain SQLite. */
static char *raw_object(const struct fixture *f, const char *kind, const char *key)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *s = NULL;
    char *out = NULL;
    assert_int_equal(sqlite3_open_v2(f->path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, "SELECT value FROM objects WHERE kind = ?1 AND "
                                            "key = ?2", -1, &s, NULL), SQLITE_OK);
    sqlite3_bind_text(s, 1, kind, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, key, -1, SQLITE_STATIC);
    if (sqlite3_step(s) == SQLITE_ROW)
        out = xstrdup((const char *)sqlite3_column_text(s, 0));
    sqlite3_finalize(s);
    sqlite3_close(db);
    assert_non_null(out);
    return out;
}

static void reopen(struct fixture *f, const uint8_t *key)
{
    struct err e = {0};
    if (f->ms != NULL)
        f->ms->ops->close(f->ms);
    f->ms = metastore_sqlite_open(f->path, REGION, &e);
    assert_non_null(f->ms);
    if (key != NULL)
        assert_int_equal(metastore_sqlite_set_sealing_key(f->ms, key, &e), 0);
}

/* auth_meta's sealed_v2_through_seq and the log's last seq, read with plain SQLite. */
static void seal_mark(const struct fixture *f, int64_t *mark, int64_t *last)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *s = NULL;
    assert_int_equal(sqlite3_open_v2(f->path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, "SELECT (SELECT v FROM auth_meta WHERE k ="
                                            " 'sealed_v2_through_seq'), (SELECT max(seq) FROM"
                                            " events)", -1, &s, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    *mark = sqlite3_column_type(s, 0) == SQLITE_NULL ? -1 : sqlite3_column_int64(s, 0);
    *last = sqlite3_column_int64(s, 1);
    sqlite3_finalize(s);
    sqlite3_close(db);
}

/* The sealing pass at each start reads only the events after the mark a clean close left
 * (the whole log took seconds at a million tags), and still seals what a version without
 * a key wrote after it. */
static void test_seal_pass_starts_after_the_mark_of_the_last_close(void **state)
{
    struct fixture *f = *state;
    struct err e = {0};
    uint8_t key[32];
    memset(key, 7, sizeof(key));
    reopen(f, key);
    assert_int_equal(f->ms->ops->object_put(f->ms, "replication", "eastus",
                                            "{\"endpoint\":\"http://x\"}", &e), 0);
    f->ms->ops->close(f->ms);
    f->ms = NULL;
    int64_t mark = 0, last = 0;
    seal_mark(f, &mark, &last);
    assert_true(last > 0);
    assert_int_equal(mark, last); /* the events written after the start are covered too */

    reopen(f, NULL); /* a version before sealing writes a secret in clear */
    assert_int_equal(f->ms->ops->object_put(f->ms, "webhook", "hookone", HOOK_VALUE(CLEAR_TOKEN),
                                            &e), 0);
    f->ms->ops->close(f->ms);
    f->ms = NULL;
    seal_mark(f, &mark, &last);
    assert_true(mark < last); /* no key, no mark */
    assert_true(db_files_contain(f, CLEAR_TOKEN));
    reopen(f, key);
    f->ms->ops->close(f->ms);
    f->ms = NULL;
    assert_false(db_files_contain(f, CLEAR_TOKEN));
    seal_mark(f, &mark, &last);
    assert_int_equal(mark, last);
    reopen(f, NULL);
}

static void test_webhook_secrets_sealed_and_clear_rows_migrated(void **state)
{
    struct fixture *f = *state;
    struct err e = {0};
    uint8_t key[32];
    uint8_t other_key[32];
    memset(key, 7, sizeof(key));
    memset(other_key, 9, sizeof(other_key));

    /* A database as the version-2 code wrote it: no key, secrets in clear. */
    assert_int_equal(f->ms->ops->object_put(f->ms, "webhook", "hookone", HOOK_VALUE(CLEAR_TOKEN),
                                            &e), 0);
    assert_int_equal(f->ms->ops->object_put(f->ms, "replication", "eastus",
                                            "{\"endpoint\":\"http://x\"}", &e), 0);
    reopen(f, NULL);
    assert_true(db_files_contain(f, CLEAR_TOKEN));
    char *v = NULL;
    assert_int_equal(f->ms->ops->object_get(f->ms, "webhook", "hookone", &v, &e), 0);
    assert_non_null(strstr(v, CLEAR_TOKEN)); /* clear rows read as written */
    free(v);

    /* With the key: the migration seals them, and no clear copy is left in the files. */
    reopen(f, key);
    f->ms->ops->close(f->ms);
    f->ms = NULL;
    assert_false(db_files_contain(f, CLEAR_TOKEN));
    char *raw = raw_object(f, "webhook", "hookone");
    assert_non_null(strstr(raw, "\"Authorization\":\"enc:v1:"));
    assert_non_null(strstr(raw, "\"X-Team\":\"enc:v1:"));
    assert_non_null(strstr(raw, "\"uri\":\"enc:v1:")); /* the uri too */
    assert_false(db_files_contain(f, "url-secret"));
    assert_non_null(strstr(raw, "\"location\":\"westeurope\"")); /* the rest stays */
    free(raw);
    raw = raw_object(f, "replication", "eastus");
    assert_string_equal(raw, "{\"endpoint\":\"http://x\"}"); /* other kinds untouched */
    free(raw);

    /* Handed out in clear: to the webhook worker and to peers. */
    reopen(f, key);
    assert_int_equal(f->ms->ops->object_get(f->ms, "webhook", "hookone", &v, &e), 0);
    assert_non_null(strstr(v, CLEAR_TOKEN));
    free(v);
    struct meta_name_list keys = {0};
    struct meta_name_list values = {0};
    assert_int_equal(f->ms->ops->object_list(f->ms, "webhook", &keys, &values, &e), 0);
    assert_int_equal(values.n, 1);
    assert_non_null(strstr(values.names[0], CLEAR_TOKEN));
    meta_name_list_fini(&keys);
    meta_name_list_fini(&values);
    json_t *ev = events_json(f->ms, 0);
    char *text = json_dumps(ev, 0);
    assert_non_null(strstr(text, CLEAR_TOKEN));
    free(text);
    json_decref(ev);

    /* New definitions, from a client or from a peer, are sealed before they are written. */
    assert_int_equal(f->ms->ops->object_put(f->ms, "webhook", "hookone",
                                            HOOK_VALUE("Bearer second-token-1"), &e), 0);
    ev = events_json(f->ms, 0);
    uint64_t newest_hlc = (uint64_t)json_integer_value(
        json_object_get(json_array_get(ev, json_array_size(ev) - 1), "hlc"));
    json_decref(ev);
    struct meta_event pe = {.origin = "eastus", .origin_seq = 1, .hlc = newest_hlc + 1000,
                            .kind = "object_put", .name = "hookone",
                            .payload = "{\"kind\":\"webhook\",\"value\":"
                                       HOOK_VALUE("Bearer from-a-peer-2") "}"};
    bool is_new = false;
    bool is_gap = false;
    assert_int_equal(f->ms->ops->event_apply(f->ms, &pe, &is_new, &is_gap, &e), 0);
    assert_true(is_new);
    assert_int_equal(f->ms->ops->object_get(f->ms, "webhook", "hookone", &v, &e), 0);
    assert_non_null(strstr(v, "Bearer from-a-peer-2"));
    free(v);
    f->ms->ops->close(f->ms);
    f->ms = NULL;
    assert_false(db_files_contain(f, "second-token-1"));
    assert_false(db_files_contain(f, "from-a-peer-2"));

    /* Under another key the values do not open: they are never handed out as clear. */
    reopen(f, other_key);
    assert_int_equal(f->ms->ops->object_get(f->ms, "webhook", "hookone", &v, &e), 0);
    assert_null(strstr(v, "from-a-peer-2"));
    assert_non_null(strstr(v, "enc:v1:"));
    free(v);
}

/* A peer's status of a manifest, as its event: region east, written at hlc. */
static void apply_status(struct metastore *ms, int64_t seq, uint64_t hlc, const struct digest *d)
{
    char payload[256];
    snprintf(payload, sizeof(payload),
             "{\"region\":\"east\",\"state\":\"Completed\",\"bytesDone\":10,"
             "\"bytesTotal\":10,\"updatedMs\":%" PRId64 ",\"details\":\"\"}",
             (int64_t)seq * 1000);
    struct meta_event ev = {.origin = "east", .origin_seq = seq, .hlc = hlc, .kind = "status",
                            .repo = "r", .digest = (char *)d->str, .payload = payload};
    bool is_new = false;
    bool is_gap = false;
    struct err e = {0};
    assert_int_equal(ms->ops->event_apply(ms, &ev, &is_new, &is_gap, &e), 0);
    assert_true(is_new);
}

static const char *east_state(struct metastore *ms, const struct digest *d, char *out, size_t n)
{
    struct meta_status *st = NULL;
    size_t n_st = 0;
    struct err e = {0};
    assert_int_equal(ms->ops->status_list(ms, "r", d, &st, &n_st, &e), 0);
    snprintf(out, n, "%s", "none");
    for (size_t i = 0; i < n_st; i++) {
        if (strcmp(st[i].region, "east") == 0)
            snprintf(out, n, "%s", st[i].state);
        free(st[i].region);
        free(st[i].state);
        free(st[i].details);
    }
    free(st);
    return out;
}

/* The latest clock in the log (not the last event's: an event applied from a peer may carry
 * an older one; a test that took it lost the race with the machine's load). */
static uint64_t newest_hlc(struct metastore *ms)
{
    json_t *ev = events_json(ms, 0);
    uint64_t hlc = 0;
    for (size_t i = 0; i < json_array_size(ev); i++) {
        uint64_t h = (uint64_t)json_integer_value(json_object_get(json_array_get(ev, i), "hlc"));
        hlc = h > hlc ? h : hlc;
    }
    json_decref(ev);
    return hlc;
}

/* A database of schema version 11 (status rows without their report's clock) opens with
 * this build: its rows stay, at clock 0, and a delete of their manifest still drops them. */
static void test_v11_status_rows_get_a_clock(void **state)
{
    struct fixture *f = *state;
    struct err e = {0};
    char body[128];
    struct meta_manifest m = mf(11, body, NULL);
    assert_int_equal(f->ms->ops->manifest_put(f->ms, "r", &m, NULL, 0, NULL, "v1", &e), 0);
    struct meta_status east = {.region = "east", .state = "Completed",
                               .updated_ms = util_now_ms(), .details = ""};
    assert_int_equal(f->ms->ops->status_set(f->ms, "r", &m.digest, &east, false, &e), 0);
    /* A push of an earlier release also wrote its own region's row (derived since). */
    struct meta_status own = {.region = REGION, .state = "Completed",
                              .updated_ms = util_now_ms(), .details = ""};
    assert_int_equal(f->ms->ops->status_set(f->ms, "r", &m.digest, &own, false, &e), 0);
    f->ms->ops->close(f->ms);
    f->ms = NULL;
    assert_int_equal(db_int(f->path, "SELECT count(*) FROM repl_status WHERE hlc > 0", NULL), 2);
    sqlite3 *db;
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, SQL_SCHEMA_BACK_TO_V11, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);

    f->ms = metastore_sqlite_open(f->path, REGION, &e);
    assert_non_null(f->ms);
    struct metastore *ms = f->ms;
    assert_int_equal(db_int(f->path, "PRAGMA user_version", NULL), 14);
    assert_int_equal(db_int(f->path, "SELECT count(*) FROM repl_status WHERE hlc = 0", NULL), 2);
    char got[32];
    assert_string_equal(east_state(ms, &m.digest, got, sizeof(got)), "Completed");
    assert_int_equal(ms->ops->manifest_delete(ms, "r", &m.digest, &e), 0);
    assert_int_equal(db_int(f->path, "SELECT count(*) FROM repl_status", NULL), 0);
}

/* This region's own status of a manifest pushed here, as status_list shows it. */
static struct meta_status own_status(struct metastore *ms, const struct digest *d)
{
    struct meta_status *st = NULL;
    size_t n_st = 0;
    struct err e = {0};
    assert_int_equal(ms->ops->status_list(ms, "r", d, &st, &n_st, &e), 0);
    struct meta_status out = {.state = xstrdup("none"), .details = xstrdup("")};
    for (size_t i = 0; i < n_st; i++) {
        if (i > 0) /* in region order, each region once */
            assert_true(strcmp(st[i - 1].region, st[i].region) < 0);
        if (strcmp(st[i].region, REGION) == 0) {
            free(out.state);
            free(out.details);
            out = st[i];
            st[i] = (struct meta_status){0};
        }
    }
    meta_status_free(st, n_st);
    free(out.region);
    out.region = NULL;
    return out;
}

/* A push keeps no status row of its own region: its Completed (the blobs' bytes, the time of
 * the push) is derived from the manifest, and its event still tells the other regions. A row
 * of this region of another state (a fetch of an earlier copy, deleted since) is not shown;
 * a Completed row (a copies count) is. */
static void test_own_status_derived_from_the_manifest(void **state)
{
    struct fixture *f = *state;
    struct metastore *ms = f->ms;
    struct err e = {0};
    char body[128];
    struct meta_manifest m = mf(21, body, NULL);
    struct meta_ref refs[2] = {{.digest = dg(1), .size = 10}, {.digest = dg(2), .size = 20}};
    link_blob(ms, "r", 1, 10);
    link_blob(ms, "r", 2, 20);
    /* a stale row of this region: an earlier copy's fetch, written before this push */
    struct meta_status stale = {.region = REGION, .state = "InProgress", .bytes_done = 3,
                                .bytes_total = 30, .updated_ms = 1, .details = ""};
    assert_int_equal(ms->ops->status_set(ms, "r", &m.digest, &stale, false, &e), 0);
    int64_t before = util_now_ms();
    int64_t seq0 = last_seq(ms);
    assert_int_equal(ms->ops->manifest_put(ms, "r", &m, refs, 2, NULL, "v1", &e), 0);

    struct meta_status own = own_status(ms, &m.digest);
    assert_string_equal(own.state, "Completed");
    assert_int_equal(own.bytes_done, 30);
    assert_int_equal(own.bytes_total, 30);
    assert_true(own.updated_ms >= before && own.updated_ms <= util_now_ms());
    assert_false(own.has_copies);
    free(own.state);
    free(own.details);
    assert_int_equal(db_int(f->path, "SELECT count(*) FROM repl_status WHERE region = ?1"
                                     " AND state = 'Completed'", REGION), 0);
    /* the event the other regions take it from */
    json_t *evs = events_json(ms, seq0);
    bool is_announced = false;
    for (size_t i = 0; i < json_array_size(evs); i++) {
        json_t *ev = json_array_get(evs, i);
        json_t *payload = json_object_get(ev, "payload");
        is_announced |=
            strcmp(ev_str(ev, "kind"), "status") == 0 &&
            strcmp(json_string_value(json_object_get(payload, "region")), REGION) == 0 &&
            strcmp(json_string_value(json_object_get(payload, "state")), "Completed") == 0 &&
            json_integer_value(json_object_get(payload, "bytesTotal")) == 30;
    }
    json_decref(evs);
    assert_true(is_announced);
    /* a state record of it, for a region below the horizon */
    struct meta_event *recs = NULL;
    size_t n = 0;
    assert_int_equal(ms->ops->repo_statuses(ms, "r", &recs, &n, &e), 0);
    size_t n_own = 0;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(recs[i].origin, REGION) == 0) {
            n_own++;
            assert_string_equal(recs[i].digest, m.digest.str);
            assert_non_null(strstr(recs[i].payload, "\"Completed\""));
        }
        meta_event_fini(&recs[i]);
    }
    free(recs);
    assert_int_equal(n_own, 1);

    /* another region's push of the same manifest, merged here, takes its origin (and clock:
     * SQ_MANIFEST_SET_CLOCK): it is still here, Completed */
    sqlite3 *db;
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "UPDATE manifests SET origin = 'east'", NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(db);
    own = own_status(ms, &m.digest);
    assert_string_equal(own.state, "Completed");
    assert_int_equal(own.bytes_total, 30);
    free(own.state);
    free(own.details);

    /* a row written since (the copies pass) is the status */
    struct meta_status two = {.region = REGION, .state = "Completed", .bytes_done = 30,
                              .bytes_total = 30, .updated_ms = util_now_ms(), .details = "",
                              .has_copies = true, .copies = 2};
    assert_int_equal(ms->ops->status_set(ms, "r", &m.digest, &two, true, &e), 0);
    own = own_status(ms, &m.digest);
    assert_true(own.has_copies);
    assert_int_equal(own.copies, 2);
    free(own.state);
    free(own.details);

    /* deleted: no status of its own (nor a row) */
    assert_int_equal(ms->ops->manifest_delete(ms, "r", &m.digest, &e), 0);
    own = own_status(ms, &m.digest);
    assert_string_equal(own.state, "none");
    free(own.state);
    free(own.details);
    assert_int_equal(ms->ops->repo_statuses(ms, "r", &recs, &n, &e), 0);
    for (size_t i = 0; i < n; i++)
        meta_event_fini(&recs[i]);
    free(recs);
    assert_int_equal(n, 0);
}

/* A manifest put again while visible here is a write with a new clock (it beats a delete
 * made elsewhere before it): this region's Completed goes with it, later than that delete
 * (which dropped the region's report there), with what the region reports of it. */
static void test_put_again_announces_the_own_status_again(void **state)
{
    struct fixture *f = *state;
    struct metastore *ms = f->ms;
    struct err e = {0};
    char body[128];
    struct meta_manifest m = mf(22, body, NULL);
    struct meta_ref ref = {.digest = dg(3), .size = 40};
    link_blob(ms, "r", 3, 40);
    assert_int_equal(ms->ops->manifest_put(ms, "r", &m, &ref, 1, NULL, "v1", &e), 0);
    struct meta_status two = {.region = REGION, .state = "Completed", .bytes_done = 40,
                              .bytes_total = 40, .updated_ms = util_now_ms(), .details = "",
                              .has_copies = true, .copies = 2};
    assert_int_equal(ms->ops->status_set(ms, "r", &m.digest, &two, true, &e), 0);
    for (int round = 0; round < 2; round++) {
        int64_t seq0 = last_seq(ms);
        assert_int_equal(ms->ops->manifest_put(ms, "r", &m, &ref, 1, NULL, "v2", &e), 0);
        json_t *evs = events_json(ms, seq0);
        uint64_t put_hlc = 0, status_hlc = 0;
        for (size_t i = 0; i < json_array_size(evs); i++) {
            json_t *ev = json_array_get(evs, i);
            json_t *payload = json_object_get(ev, "payload");
            uint64_t hlc = (uint64_t)json_integer_value(json_object_get(ev, "hlc"));
            if (strcmp(ev_str(ev, "kind"), "manifest_put") == 0)
                put_hlc = hlc;
            if (strcmp(ev_str(ev, "kind"), "status") == 0) {
                assert_string_equal(json_string_value(json_object_get(payload, "region")),
                                    REGION);
                assert_string_equal(json_string_value(json_object_get(payload, "state")),
                                    "Completed");
                assert_int_equal(json_integer_value(json_object_get(payload, "bytesTotal")), 40);
                /* the copies count the region reports, while it has one */
                assert_int_equal(json_is_integer(json_object_get(payload, "copies")), round == 0);
                status_hlc = hlc;
            }
        }
        json_decref(evs);
        assert_true(put_hlc > 0);
        assert_true(status_hlc > put_hlc);
        /* without a copies count (derived) the next time */
        sqlite3 *db;
        assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
        assert_int_equal(sqlite3_exec(db, "DELETE FROM repl_status", NULL, NULL, NULL), SQLITE_OK);
        sqlite3_close(db);
    }
}

/* Releases before schema 12 kept every region's status row through a manifest's delete:
 * a database of version 12 or before may hold rows (clock 0) of manifests it has no record
 * of. Step 13 drops them (a push of the same manifest again would show those regions
 * Completed at once) and keeps the rows of recorded manifests and those written since 12. */
static void test_v12_stale_status_rows_dropped(void **state)
{
    struct fixture *f = *state;
    struct err e = {0};
    char body[128];
    struct meta_manifest m = mf(12, body, NULL);
    assert_int_equal(f->ms->ops->manifest_put(f->ms, "r", &m, NULL, 0, NULL, "v1", &e), 0);
    struct meta_status east = {.region = "east", .state = "Completed",
                               .updated_ms = util_now_ms(), .details = ""};
    assert_int_equal(f->ms->ops->status_set(f->ms, "r", &m.digest, &east, false, &e), 0);
    reopen_after(f, "UPDATE repl_status SET hlc = 0;"
                    "INSERT INTO repl_status(repo, digest, region, state, bytes_done,"
                    " bytes_total, updated_ms, details, hlc) VALUES"
                    " ('r', 'sha256:gone', 'east', 'Completed', 1, 1, 1, '', 0),"
                    " ('r', 'sha256:gone', 'west', 'Completed', 1, 1, 1, '', 0),"
                    " ('r', 'sha256:since', 'east', 'Completed', 1, 1, 1, '', 7);"
                    "PRAGMA user_version = 12;");
    assert_int_equal(db_int(f->path, "PRAGMA user_version", NULL), 14);
    assert_int_equal(db_int(f->path, "SELECT count(*) FROM repl_status WHERE digest ="
                                     " 'sha256:gone'", NULL), 0);
    assert_int_equal(db_int(f->path, "SELECT count(*) FROM repl_status WHERE digest ="
                                     " 'sha256:since'", NULL), 1);
    char got[32];
    assert_string_equal(east_state(f->ms, &m.digest, got, sizeof(got)), "Completed");
}

/* A delete ends every region's status of the manifest: a push of it again is Pending in a
 * region until that region reports it anew. A report written before the delete and
 * arriving after it (the deleting region had not heard it) describes the copy the delete
 * ended: it is not taken. So is a state record (anti-entropy) from a region that had not
 * seen the delete. */
static void test_status_does_not_outlive_a_delete(void **state)
{
    struct fixture *f = *state;
    struct metastore *ms = f->ms;
    struct err e = {0};
    char body[128];
    char got[32];
    struct meta_manifest m = mf(7, body, NULL);
    struct meta_ref ref = {.digest = dg(7), .size = 10};
    link_blob(ms, "r", 7, 10);
    assert_int_equal(ms->ops->manifest_put(ms, "r", &m, &ref, 1, NULL, "v1", &e), 0);
    uint64_t put_hlc = newest_hlc(ms);
    apply_status(ms, 1, put_hlc + 1, &m.digest);
    assert_string_equal(east_state(ms, &m.digest, got, sizeof(got)), "Completed");

    assert_int_equal(ms->ops->manifest_delete(ms, "r", &m.digest, &e), 0);
    uint64_t del_hlc = newest_hlc(ms);
    assert_string_equal(east_state(ms, &m.digest, got, sizeof(got)), "none");
    link_blob(ms, "r", 7, 10);
    assert_int_equal(ms->ops->manifest_put(ms, "r", &m, &ref, 1, NULL, "v2", &e), 0);
    assert_string_equal(east_state(ms, &m.digest, got, sizeof(got)), "none");

    /* east's report of the old copy, heard only now */
    apply_status(ms, 2, del_hlc - 1, &m.digest);
    assert_string_equal(east_state(ms, &m.digest, got, sizeof(got)), "none");
    /* a state record of a region without the delete (clock 1: later than no delete) */
    struct meta_event rec = {.origin = "east", .origin_seq = 1, .hlc = 1, .kind = "status",
                             .repo = "r", .digest = m.digest.str,
                             .payload = "{\"region\":\"east\",\"state\":\"Completed\","
                                        "\"bytesDone\":1,\"bytesTotal\":1,"
                                        "\"updatedMs\":99999,\"details\":\"\"}"};
    assert_int_equal(ms->ops->state_merge(ms, &rec, 0, &e), 0);
    assert_string_equal(east_state(ms, &m.digest, got, sizeof(got)), "none");

    /* its report after the delete counts */
    apply_status(ms, 3, del_hlc + 1, &m.digest);
    assert_string_equal(east_state(ms, &m.digest, got, sizeof(got)), "Completed");
    /* and this region's state records carry their reports' clocks, later than the delete */
    struct meta_event *recs = NULL;
    size_t n = 0;
    assert_int_equal(ms->ops->repo_statuses(ms, "r", &recs, &n, &e), 0);
    assert_true(n >= 2);
    for (size_t i = 0; i < n; i++) {
        assert_true(recs[i].hlc > del_hlc);
        meta_event_fini(&recs[i]);
    }
    free(recs);

    /* A peer's delete heard after east's report of a push that followed it (east had the
     * delete, then the manifest again): the delete drops older reports only. */
    uint64_t report_hlc = newest_hlc(ms) + 1000000;
    apply_status(ms, 4, report_hlc, &m.digest);
    struct meta_event del = {.origin = "west", .origin_seq = 1, .hlc = report_hlc - 10,
                             .kind = "manifest_delete", .repo = "r", .digest = m.digest.str,
                             .payload = "{\"tags\":[]}"};
    bool is_new = false;
    bool is_gap = false;
    assert_int_equal(ms->ops->event_apply(ms, &del, &is_new, &is_gap, &e), 0);
    assert_true(is_new);
    assert_int_equal(ms->ops->manifest_get(ms, "r", m.digest.str, &(struct meta_manifest){0}, &e),
                     -1);
    assert_string_equal(east_state(ms, &m.digest, got, sizeof(got)), "Completed");
}

/* A region restored from an older copy: restored_contract.h, on SQLite. */
static void test_region_restored_from_an_older_copy(void **state)
{
    struct fixture *f = *state;
    restored_contract(f->ms, REGION);
}

/* Runs sql on the fixture's database with plain SQLite (the store closed). */
static void raw_exec(const struct fixture *f, const char *sql)
{
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK)
        fail_msg("%s: %s", sql, msg);
    sqlite3_close(db);
}

/* A database of the release that sealed header values only: its pass marked every event
 * sealed ('sealed_through_seq') with the webhook's uri, secrets and all, still in clear in
 * the object and in its event. This release seals the uri too: its first pass reads the
 * whole log (that mark does not say the uri is sealed), and hands the uri out in clear to
 * the worker and to peers. */
static void test_webhook_uri_sealed_over_a_mark_of_headers_only(void **state)
{
    struct fixture *f = *state;
    struct err e = {0};
    uint8_t key[32];
    memset(key, 7, sizeof(key));
    assert_int_equal(f->ms->ops->object_put(f->ms, "webhook", "hookone", HOOK_VALUE(CLEAR_TOKEN),
                                            &e), 0);
    f->ms->ops->close(f->ms);
    f->ms = NULL;
    raw_exec(f, "INSERT INTO auth_meta(k, v) VALUES ('sealed_through_seq',"
                " (SELECT max(seq) FROM events))");
    assert_true(db_files_contain(f, "url-secret-user"));

    reopen(f, key);
    f->ms->ops->close(f->ms);
    f->ms = NULL;
    assert_false(db_files_contain(f, "url-secret"));
    int64_t mark = 0, last = 0;
    seal_mark(f, &mark, &last);
    assert_int_equal(mark, last);
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_open_v2(f->path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, "SELECT count(*) FROM auth_meta WHERE k ="
                                            " 'sealed_through_seq'", -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int64(st, 0), 0); /* the old mark is gone */
    sqlite3_finalize(st);
    sqlite3_close(db);

    reopen(f, key);
    char *v = NULL;
    assert_int_equal(f->ms->ops->object_get(f->ms, "webhook", "hookone", &v, &e), 0);
    assert_non_null(strstr(v, HOOK_URI));
    free(v);
    json_t *ev = events_json(f->ms, 0);
    char *text = json_dumps(ev, 0);
    assert_non_null(strstr(text, "url-secret-user@127.0.0.1"));
    free(text);
    json_decref(ev);
}

/* How many times needle is in meta.db (closed: no WAL beside it). */
static size_t db_file_count(const struct fixture *f, const char *needle)
{
    FILE *fp = fopen(f->path, "rb");
    assert_non_null(fp);
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    char *data = xmalloc((size_t)n);
    assert_int_equal(fread(data, 1, (size_t)n, fp), (size_t)n);
    fclose(fp);
    size_t count = 0, len = strlen(needle);
    for (char *at = data; (at = memmem(at, (size_t)(data + n - at), needle, len)) != NULL; at++)
        count++;
    free(data);
    return count;
}

/* A database of a release before 5 December, whose receiver was unreachable: each retry
 * rewrote the delivery's stored error (the receiver's whole URL) without secure_delete,
 * while other deliveries split the pages, so stale copies of the URL sit in the free space
 * of pages beside the live row. The first start redacts the row and rebuilds the file: no
 * copy is left. Fails before 6 December's fix: the pass zeroed the live row's old bytes
 * only, and the stale copies stayed in meta.db. */
static void test_stale_copies_of_a_clear_url_gone_after_the_first_start(void **state)
{
    struct fixture *f = *state;
    struct err e = {0};
    uint8_t key[32];
    memset(key, 9, sizeof(key));
    f->ms->ops->close(f->ms);
    f->ms = NULL;
#define DELIVERY_COLUMNS                                                                   \
    "INSERT INTO webhook_deliveries(id, webhook, action, payload, state, attempts,"       \
    " status_code, latency_ms, response, created_ms, updated_ms, next_attempt_ms) "
#define PADDING(from, to)                                                                  \
    "WITH RECURSIVE n(i) AS (SELECT " #from " UNION ALL SELECT i + 1 FROM n WHERE i < " #to \
    ") " DELIVERY_COLUMNS "SELECT 'pad' || i, 'other', 'push', printf('%.600c', 'x'),"     \
    " 'delivered', 1, 200, 1, 'ok', i, i, i FROM n;"
#define RETRY(n)                                                                           \
    "UPDATE webhook_deliveries SET attempts = " #n ", updated_ms = " #n "0, response ="    \
    " 'cannot reach " HOOK_URI ": Couldn''t connect to server (" #n ")' WHERE id = 'old1';"
    raw_exec(f, "PRAGMA secure_delete = OFF;" DELIVERY_COLUMNS
                "VALUES ('old1', 'hookone', 'push', '{}', 'pending', 1, 0, 1, 'cannot reach "
                HOOK_URI ": Couldn''t connect to server (1)', 1, 1, 1);"
                PADDING(1, 20) RETRY(2) PADDING(21, 40) RETRY(3) PADDING(41, 60) RETRY(4)
                "DELETE FROM webhook_deliveries WHERE id LIKE 'pad%' AND created_ms % 3 = 0;"
                PADDING(61, 80) RETRY(5));
#undef RETRY
#undef PADDING
#undef DELIVERY_COLUMNS
    assert_true(db_file_count(f, "url-secret-user") > 1); /* the live row's, and stale ones */

    reopen(f, key);
    struct meta_delivery_list list;
    assert_int_equal(f->ms->ops->delivery_list(f->ms, "hookone", 10, &list, &e), 0);
    assert_int_equal(list.n, 1);
    assert_string_equal(list.items[0].response, "cannot reach http://***@127.0.0.1:9/h?token=***"
                                                ": Couldn't connect to server (5)");
    meta_delivery_list_fini(&list);
    assert_int_equal(f->ms->ops->delivery_list(f->ms, "other", 1000, &list, &e), 0);
    assert_int_equal(list.n, 80 - 20); /* the rest is kept */
    meta_delivery_list_fini(&list);
    f->ms->ops->close(f->ms);
    f->ms = NULL;
    assert_false(db_files_contain(f, "url-secret"));
}

/* A database sealed by the release of 5 December (its mark set: no clear row left for the
 * pass), whose older version had left stale copies of a webhook's URL in the free space of
 * pages, and with no delivery record to redact: the first start rebuilds it all the same,
 * once (before, the rebuild ran only when the pass changed a row, so those copies stayed;
 * and a rebuild that failed or was cut short by a crash was never tried again). */
static void test_stale_copies_gone_also_when_nothing_is_left_to_seal(void **state)
{
    struct fixture *f = *state;
    uint8_t key[32];
    memset(key, 9, sizeof(key));
    f->ms->ops->close(f->ms);
    f->ms = NULL;
    raw_exec(f, "PRAGMA secure_delete = OFF;"
                "CREATE TABLE old_copies(t TEXT);"
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 40)"
                " INSERT INTO old_copies SELECT printf('%.600c', 'x') || '" HOOK_URI "' FROM n;"
                "DROP TABLE old_copies;"
                "INSERT INTO objects(kind, key, value, hlc, origin, is_deleted)"
                " VALUES ('webhook', 'gone', NULL, 1, 'local', 1);"
                "INSERT INTO auth_meta(k, v) VALUES ('sealed_v2_through_seq', 0)"
                " ON CONFLICT(k) DO NOTHING;");
    assert_true(db_files_contain(f, "url-secret-user"));
    reopen(f, key);
    f->ms->ops->close(f->ms);
    f->ms = NULL;
    assert_false(db_files_contain(f, "url-secret"));
}

/* The pages the database keeps free, read with plain SQLite (the store closed). */
static int64_t free_pages(const struct fixture *f)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *s = NULL;
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA freelist_count", -1, &s, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    int64_t n = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    sqlite3_close(db);
    return n;
}

/* A database that never held a webhook (no definition, live or deleted, no delivery
 * record) has no stale copy of a URL: its first start does not rebuild it (a rebuild of a
 * large registry takes minutes and twice its size on disk), and marks it done. */
static void test_no_rebuild_of_a_database_that_never_held_a_webhook(void **state)
{
    struct fixture *f = *state;
    uint8_t key[32];
    memset(key, 9, sizeof(key));
    f->ms->ops->close(f->ms);
    f->ms = NULL;
    raw_exec(f, "CREATE TABLE filler(t TEXT);"
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 40)"
                " INSERT INTO filler SELECT printf('%.600c', 'x') FROM n;"
                "DROP TABLE filler;"
                "DELETE FROM auth_meta WHERE k = 'rebuilt_after_sealing';");
    int64_t before = free_pages(f);
    assert_true(before > 0);
    reopen(f, key);
    f->ms->ops->close(f->ms);
    f->ms = NULL;
    assert_int_equal(free_pages(f), before);
    /* With a webhook defined once, the same start rebuilds it. */
    raw_exec(f, "INSERT INTO objects(kind, key, value, hlc, origin, is_deleted)"
                " VALUES ('webhook', 'gone', NULL, 1, 'local', 1);"
                "DELETE FROM auth_meta WHERE k = 'rebuilt_after_sealing';");
    reopen(f, key);
    f->ms->ops->close(f->ms);
    f->ms = NULL;
    assert_int_equal(free_pages(f), 0);
}

/* A repository's removal marks the rebuild it needs in its own transaction: a server that
 * stopped between that commit and the rebuild's end rebuilds the file at its next open
 * (stale copies of the removed rows would otherwise stay), and clears the mark. */
static void test_rebuild_left_pending_is_done_at_open(void **state)
{
    struct fixture *f = *state;
    f->ms->ops->close(f->ms);
    f->ms = NULL;
    raw_exec(f, "CREATE TABLE filler(t TEXT);"
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 40)"
                " INSERT INTO filler SELECT printf('%.600c', 'x') FROM n;"
                "DROP TABLE filler;");
    assert_true(free_pages(f) > 0);
    reopen(f, NULL); /* nothing pending: the file is left as it is */
    f->ms->ops->close(f->ms);
    f->ms = NULL;
    assert_true(free_pages(f) > 0);
    raw_exec(f, "INSERT INTO auth_meta(k, v) VALUES ('rebuild_pending', 1);");
    reopen(f, NULL);
    f->ms->ops->close(f->ms);
    f->ms = NULL;
    assert_int_equal(free_pages(f), 0);
    sqlite3 *db = NULL;
    sqlite3_stmt *s = NULL;
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, "SELECT count(*) FROM auth_meta WHERE k = "
                                            "'rebuild_pending'", -1, &s, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int64(s, 0), 0);
    sqlite3_finalize(s);
    sqlite3_close(db);
    reopen(f, NULL);
}

int main(void)
{
    /* Expected failures are logged at error level; that is part of the behaviour. */
    log_setup(LOG_LEVEL_ERROR, "test");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_open_sets_up_schema, setup, teardown),
        cmocka_unit_test_setup_teardown(test_manifest_get_cached_until_a_commit, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_reopen_keeps_data_and_clock, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_failures, setup, teardown),
        cmocka_unit_test_setup_teardown(test_upload_sources_and_acked_size, setup, teardown),
        cmocka_unit_test_setup_teardown(test_schema_v1_events_numbered, setup, teardown),
        cmocka_unit_test_setup_teardown(test_schema_v2_database_migrates, setup, teardown),
        cmocka_unit_test_setup_teardown(test_schema_v9_tags_table_becomes_view, setup, teardown),
        cmocka_unit_test_setup_teardown(test_schema_v10_refs_by_seq, setup, teardown),
        cmocka_unit_test_setup_teardown(test_schema_branch_v6_compaction, setup, teardown),
        cmocka_unit_test_setup_teardown(test_schema_uploads_branch_v3, setup, teardown),
        cmocka_unit_test_setup_teardown(test_schema_uploads_branch_v3_single, setup, teardown),
        cmocka_unit_test_setup_teardown(test_schema_branch_v6_audit_region, setup, teardown),
        cmocka_unit_test_setup_teardown(test_schema_branch_v6_untagged, setup, teardown),
        cmocka_unit_test_setup_teardown(test_schema_branch_v6_untagged_gc, setup, teardown),
        cmocka_unit_test_setup_teardown(test_manifest_body_packed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_status_event_stored_short, setup, teardown),
        cmocka_unit_test_setup_teardown(test_damaged_short_status_is_not_passed_on, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_sqlite_error_is_generic_io, setup, teardown),
        cmocka_unit_test_setup_teardown(test_blob_link_get_find_unlink, setup, teardown),
        cmocka_unit_test_setup_teardown(test_blob_referenced_by_manifest_is_not_orphan, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_manifest_put_get, setup, teardown),
        cmocka_unit_test_setup_teardown(test_manifest_get_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_manifest_put_unknown_refs_change_nothing, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_manifest_put_does_not_link_other_repositories_blobs,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_manifest_put_checks_descriptor_sizes, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_manifest_delete_cascades, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tag_delete, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tag_list_pagination, setup, teardown),
        cmocka_unit_test_setup_teardown(test_schema_v13_tags_listed_case_insensitively, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_repo_list_pagination, setup, teardown),
        cmocka_unit_test_setup_teardown(test_referrers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_uploads, setup, teardown),
        cmocka_unit_test_setup_teardown(test_events_since, setup, teardown),
        cmocka_unit_test_setup_teardown(test_every_mutation_logs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_status_event_keeps_its_snapshot, setup, teardown),
        cmocka_unit_test_setup_teardown(test_manifest_put_event_payload_derived, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_superseded_put_is_a_noop_for_peers, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_filtered_read_waits_for_the_rows_it_skips, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_stored_payloads_served_as_stored, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_writers_one_winner, setup, teardown),
        cmocka_unit_test_setup_teardown(test_log_copier_copies_beside_the_writes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_log_compaction_is_not_refused_beside_the_copier,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_readers_not_blocked_by_writer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_upload_create_capped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_upload_caps_hold_under_concurrent_starts, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_autocommit_writes_hold_the_writer_mutex, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_object_create_refuses_an_existing_object, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_thread_release_closes_the_thread_connection, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_status_does_not_outlive_a_delete, setup, teardown),
        cmocka_unit_test_setup_teardown(test_v11_status_rows_get_a_clock, setup, teardown),
        cmocka_unit_test_setup_teardown(test_own_status_derived_from_the_manifest, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_put_again_announces_the_own_status_again, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_v12_stale_status_rows_dropped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_seal_pass_starts_after_the_mark_of_the_last_close,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_webhook_secrets_sealed_and_clear_rows_migrated, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_region_restored_from_an_older_copy, setup, teardown),
        cmocka_unit_test_setup_teardown(test_webhook_uri_sealed_over_a_mark_of_headers_only, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_stale_copies_of_a_clear_url_gone_after_the_first_start,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_rebuild_left_pending_is_done_at_open, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_no_rebuild_of_a_database_that_never_held_a_webhook,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_stale_copies_gone_also_when_nothing_is_left_to_seal,
                                        setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
