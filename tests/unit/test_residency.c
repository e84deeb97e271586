/* Unit tests for residency.c (the rule: which regions may hold a repository; policy
 * validation; which events concern a repository) and meta_residency.c (holdings, and the
 * removal of everything a region keeps of a repository: rows, records, event contents, blob
 * rows nothing else needs). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>
#include <sqlite3.h>

#include "body_pack.h"
#include "digest.h"
#include "metastore.h"
#include "residency.h"
#include "util.h"

static json_t *policies_of(const char *text)
{
    json_error_t je;
    json_t *p = json_loads(text, 0, &je);
    assert_non_null(p);
    return p;
}

static void test_the_rule(void **state)
{
    (void)state;
    json_t *ps = policies_of(
        "[{\"name\":\"eu\",\"repositories\":\"eu/*\",\"allowedRegions\":[\"eu-1\",\"eu-2\"],"
        "\"deniedRegions\":[]},"
        "{\"name\":\"no-us\",\"repositories\":\"*\",\"allowedRegions\":[],"
        "\"deniedRegions\":[\"us-1\"]}]");
    static const struct {
        const char *repo, *region, *forbidding;
    } cases[] = {
        {"eu/app", "eu-1", NULL},       {"eu/app", "eu-2", NULL},
        {"eu/app", "ap-1", "eu"},       {"eu/app", "us-1", "eu"}, /* first match names it */
        {"eu/team/app", "ap-1", "eu"},  {"other/app", "ap-1", NULL},
        {"other/app", "us-1", "no-us"}, {"euro/app", "ap-1", NULL}, /* not eu/ */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const json_t *p = residency_forbidding(ps, cases[i].repo, cases[i].region);
        if (cases[i].forbidding == NULL) {
            assert_null(p);
            assert_true(residency_allows(ps, cases[i].repo, cases[i].region));
        } else {
            assert_non_null(p);
            assert_string_equal(json_string_value(json_object_get(p, "name")), cases[i].forbidding);
            assert_false(residency_allows(ps, cases[i].repo, cases[i].region));
        }
    }
    const char *world[] = {"ap-1", "eu-1", "eu-2", "us-1", NULL};
    json_t *allowed = residency_allowed_json(ps, "eu/app", world);
    char *text = json_dumps(allowed, JSON_COMPACT);
    assert_string_equal(text, "[\"eu-1\",\"eu-2\"]");
    free(text);
    json_decref(allowed);
    allowed = residency_allowed_json(ps, "other/app", world);
    text = json_dumps(allowed, JSON_COMPACT);
    assert_string_equal(text, "[\"ap-1\",\"eu-1\",\"eu-2\"]");
    free(text);
    json_decref(allowed);
    json_decref(ps);
    /* no policy: every region */
    json_t *none = json_array();
    assert_true(residency_allows(none, "eu/app", "ap-1"));
    json_decref(none);
}

static bool any_pattern(const char *s)
{
    return s[0] != '\0' && strchr(s, ' ') == NULL;
}

static bool simple_region(const char *s)
{
    return s[0] != '\0' && strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789-") == strlen(s);
}

/* Every bad policy is refused with a message; a good one is normalised. */
static void test_policy_validation(void **state)
{
    (void)state;
    static const struct {
        const char *name, *body, *message_part;
    } bad[] = {
        {"eu", "{\"allowedRegions\":[\"eu-1\"]}", "repositories"},
        {"eu", "{\"repositories\":\"a b\",\"allowedRegions\":[\"eu-1\"]}", "repositories"},
        {"eu", "{\"repositories\":\"eu/*\"}", "allowedRegions or deniedRegions"},
        {"eu", "{\"repositories\":\"eu/*\",\"allowedRegions\":[]}", "allowedRegions or"},
        {"eu", "{\"repositories\":\"eu/*\",\"allowedRegions\":\"eu-1\"}", "list"},
        {"eu", "{\"repositories\":\"eu/*\",\"allowedRegions\":[\"EU 1\"]}", "not a region"},
        {"eu", "{\"repositories\":\"eu/*\",\"allowedRegions\":[7]}", "not a region"},
        {"eu", "{\"repositories\":\"eu/*\",\"allowedRegions\":[\"a\",\"a\"]}", "twice"},
        {"eu", "{\"repositories\":\"eu/*\",\"allowedRegions\":[\"a\"],\"deniedRegions\":[\"a\"]}",
         "both allowed and denied"},
        {"eu", "{\"repositories\":\"eu/*\",\"allowedRegions\":[\"a\"],\"extra\":1}", "extra"},
        {"eu", "{\"repositories\":\"eu/*\",\"allowedRegions\":[\"a\"],\"enforce\":1}",
         "enforce: expected true or false"},
        {"EU!", "{\"repositories\":\"eu/*\",\"allowedRegions\":[\"a\"]}", "name"},
        {"", "{\"repositories\":\"eu/*\",\"allowedRegions\":[\"a\"]}", "name"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        json_t *body = policies_of(bad[i].body);
        struct err e = {0};
        json_t *p = residency_policy_new(bad[i].name, body, any_pattern, simple_region, 5, &e);
        if (p != NULL)
            fail_msg("case %zu accepted", i);
        assert_int_equal(e.code, ERR_BAD_REQUEST);
        if (strstr(err_message(&e), bad[i].message_part) == NULL)
            fail_msg("case %zu: \"%s\" lacks \"%s\"", i, err_message(&e), bad[i].message_part);
        json_decref(body);
    }
    json_t *body = policies_of("{\"repositories\":\"eu/*\",\"deniedRegions\":[\"us-1\"]}");
    struct err e = {0};
    json_t *p = residency_policy_new("eu", body, any_pattern, simple_region, 5, &e);
    assert_non_null(p);
    char *text = json_dumps(p, JSON_COMPACT | JSON_SORT_KEYS);
    assert_string_equal(text, "{\"allowedRegions\":[],\"deniedRegions\":[\"us-1\"],"
                              "\"enforce\":false,\"name\":\"eu\","
                              "\"repositories\":\"eu/*\",\"updatedMs\":5}");
    free(text);
    json_decref(p);
    json_decref(body);
}

/* Issue 13 item 1: only an enforced policy (or one from before the flag) removes existing
 * copies; an unenforced one still forbids (pushes, replication), and reports. */
static void test_only_enforced_policies_remove(void **state)
{
    (void)state;
    json_t *ps = policies_of(
        "[{\"name\":\"report\",\"repositories\":\"eu/*\",\"allowedRegions\":[\"eu-1\"],"
        "\"deniedRegions\":[],\"enforce\":false},"
        "{\"name\":\"remove\",\"repositories\":\"eu/*\",\"allowedRegions\":[],"
        "\"deniedRegions\":[\"us-1\"],\"enforce\":true},"
        "{\"name\":\"old\",\"repositories\":\"ap/*\",\"allowedRegions\":[\"ap-1\"],"
        "\"deniedRegions\":[]}]");
    /* forbidden in ap-1 by "report" only: forbidden, not removed */
    assert_string_equal(json_string_value(json_object_get(
                            residency_forbidding(ps, "eu/app", "ap-1"), "name")), "report");
    assert_null(residency_forbidding_enforced(ps, "eu/app", "ap-1"));
    /* in us-1 "report" matches first, "remove" asks for removal */
    assert_string_equal(json_string_value(json_object_get(
                            residency_forbidding_enforced(ps, "eu/app", "us-1"), "name")),
                        "remove");
    /* a policy written before the flag keeps removing */
    assert_string_equal(json_string_value(json_object_get(
                            residency_forbidding_enforced(ps, "ap/app", "eu-1"), "name")),
                        "old");
    assert_null(residency_forbidding_enforced(ps, "eu/app", "eu-1"));
    json_decref(ps);
}

static void test_event_repo_and_redact(void **state)
{
    (void)state;
    static const struct {
        const char *kind, *repo, *name, *payload, *about;
    } cases[] = {
        {"manifest_put", "eu/app", NULL, NULL, "eu/app"},
        {"status", "eu/app", NULL, "{}", "eu/app"},
        {"object_put", NULL, "eu/app:1.0.0", "{\"kind\":\"image_version\",\"value\":{}}", "eu/app"},
        {"object_put", NULL, "eu/app", "{\"kind\":\"image_definition\",\"value\":{}}", "eu/app"},
        {"object_delete", NULL, "eu/app@sha256:00", "{\"kind\":\"repository_lock\"}", "eu/app"},
        {"object_put", NULL, "eu/app", "{\"kind\":\"quota\",\"value\":{}}", NULL},
        {"object_put", NULL, "alice", "{\"kind\":\"identity\",\"value\":{}}", NULL},
        {"object_put", NULL, "eu", "{\"kind\":\"residency_policy\",\"value\":{}}", NULL},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct meta_event ev = {.kind = (char *)cases[i].kind,
                                .repo = (char *)cases[i].repo,
                                .name = (char *)cases[i].name,
                                .payload = (char *)cases[i].payload};
        char about[256] = "";
        bool is_about = residency_event_repo(&ev, about, sizeof(about));
        assert_int_equal(is_about, cases[i].about != NULL);
        if (is_about)
            assert_string_equal(about, cases[i].about);
    }
    struct meta_event ev = {.seq = 4,
                            .origin = xstrdup("eu-1"),
                            .origin_seq = 3,
                            .hlc = 99,
                            .kind = xstrdup("manifest_put"),
                            .repo = xstrdup("eu/app"),
                            .name = xstrdup("v1"),
                            .digest = xstrdup("sha256:00"),
                            .payload = xstrdup("{\"body\":\"secret\"}")};
    residency_redact(&ev);
    assert_string_equal(ev.kind, RESIDENCY_REDACTED_KIND);
    assert_null(ev.repo);
    assert_null(ev.name);
    assert_null(ev.digest);
    assert_null(ev.payload);
    assert_string_equal(ev.origin, "eu-1");
    assert_int_equal(ev.origin_seq, 3);
    assert_int_equal(ev.hlc, 99);
    meta_event_fini(&ev);
}

/* Metastore: holdings and purge ------------------------------------------------------ */

static char tmpdir[] = "/tmp/meridian-residency-XXXXXX";

static void put_image(struct metastore *ms, const char *repo, const char *tag,
                      const char *const *blobs, size_t n, const char *marker, struct digest *out)
{
    struct meta_ref refs[4];
    char body[256];
    size_t len = (size_t)snprintf(body, sizeof(body), "{\"schemaVersion\":2,\"m\":\"%s\"}", marker);
    struct err e = {0};
    for (size_t i = 0; i < n; i++) {
        memset(&refs[i], 0, sizeof(refs[i]));
        digest_of_buffer(DIGEST_SHA256, blobs[i], strlen(blobs[i]), &refs[i].digest);
        refs[i].size = (int64_t)strlen(blobs[i]);
        assert_int_equal(ms->ops->blob_link(ms, repo, &refs[i].digest, strlen(blobs[i]), &e), 0);
    }
    struct meta_manifest m = {
        .media_type = "application/vnd.oci.image.manifest.v1+json", .body = body, .body_len = len};
    digest_of_buffer(DIGEST_SHA256, body, len, &m.digest);
    assert_int_equal(ms->ops->manifest_put(ms, repo, &m, refs, n, NULL, tag, &e), 0);
    *out = m.digest;
}

static int64_t count(const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    int64_t n = -1;
    if (sqlite3_open(path, &db) == SQLITE_OK &&
        sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
        n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return n;
}

/* Does the file (database or its log) hold the bytes? */
static bool file_holds_bytes(const char *path, const void *needle, size_t len);

/* Whether the file holds the document put_image made of marker, in the form the store
 * keeps it (packed: body_pack.c). */
static bool file_holds_document(const char *path, const char *marker)
{
    char body[256];
    size_t len = (size_t)snprintf(body, sizeof(body), "{\"schemaVersion\":2,\"m\":\"%s\"}", marker);
    unsigned char *packed;
    size_t stored_len;
    const void *stored = body_stored(body, len, &packed, &stored_len);
    bool found = file_holds_bytes(path, stored, stored_len);
    free(packed);
    return found;
}

static bool file_holds_bytes(const char *path, const void *needle, size_t len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return false;
    size_t cap = 1 << 24, n = 0;
    char *data = xmalloc(cap);
    n = fread(data, 1, cap, f);
    fclose(f);
    bool found = memmem(data, n, needle, len) != NULL;
    free(data);
    return found;
}

static void test_purge_removes_all_of_a_repository(void **state)
{
    (void)state;
    char path[256];
    snprintf(path, sizeof(path), "%s/meta.db", tmpdir);
    struct err e = {0};
    struct metastore *ms = metastore_sqlite_open(path, "ap-1", &e);
    assert_non_null(ms);
    static const char *const eu_blobs[] = {"eu-config", "shared-layer", "eu-layer"};
    static const char *const other_blobs[] = {"other-config", "shared-layer"};
    struct digest eu1, eu2, other;
    put_image(ms, "eu/app", "v1", eu_blobs, 3, "EU-DOCUMENT-ONE", &eu1);
    put_image(ms, "eu/app", "v2", eu_blobs, 2, "EU-DOCUMENT-TWO", &eu2);
    put_image(ms, "other/app", "v1", other_blobs, 2, "OTHER-DOCUMENT", &other);
    assert_int_equal(ms->ops->object_put(ms, "image_version", "eu/app:1.0.0", "{\"v\":1}", &e), 0);
    assert_int_equal(ms->ops->object_put(ms, "quota", "eu/app", "{\"bytes\":1}", &e), 0);
    assert_int_equal(ms->ops->upload_create(ms, "up1", "eu/app", 99999999999, NULL, false, &e), 0);

    struct meta_holding_list h;
    assert_int_equal(ms->ops->holdings(ms, &h, &e), 0);
    assert_int_equal(h.n, 2);
    assert_string_equal(h.items[0].repo, "eu/app");
    assert_int_equal(h.items[0].n_manifests, 2);
    assert_int_equal(h.items[0].n_blobs, 3);
    assert_string_equal(h.items[1].repo, "other/app");
    meta_holding_list_fini(&h);

    struct meta_name_list orphans;
    int64_t n_manifests = 0;
    assert_int_equal(ms->ops->repo_purge(ms, "eu/app", &orphans, &n_manifests, &e), 0);
    assert_int_equal(n_manifests, 2);
    /* shared-layer stays (other/app links it); the two only eu/app had go */
    assert_int_equal(orphans.n, 2);
    struct digest c, l;
    digest_of_buffer(DIGEST_SHA256, "eu-config", 9, &c);
    digest_of_buffer(DIGEST_SHA256, "eu-layer", 8, &l);
    bool has_c = false, has_l = false;
    for (size_t i = 0; i < orphans.n; i++) {
        has_c |= strcmp(orphans.names[i], c.str) == 0;
        has_l |= strcmp(orphans.names[i], l.str) == 0;
    }
    assert_true(has_c && has_l);
    meta_name_list_fini(&orphans);

    assert_int_equal(ms->ops->holdings(ms, &h, &e), 0);
    assert_int_equal(h.n, 1);
    assert_string_equal(h.items[0].repo, "other/app");
    meta_holding_list_fini(&h);
    ms->ops->close(ms);

    static const char *const none[] = {
        "SELECT count(*) FROM repos WHERE name = 'eu/app'",
        "SELECT count(*) FROM tag_regs WHERE repo = 'eu/app'",
        "SELECT count(*) FROM uploads WHERE repo = 'eu/app'",
        "SELECT count(*) FROM events WHERE repo = 'eu/app'",
        "SELECT count(*) FROM events WHERE name LIKE 'eu/app%' AND kind LIKE 'object%'"
        " AND payload LIKE '%image_version%'",
        "SELECT count(*) FROM objects WHERE kind = 'image_version'",
    };
    for (size_t i = 0; i < sizeof(none) / sizeof(none[0]); i++) {
        if (count(path, none[i]) != 0)
            fail_msg("left behind: %s", none[i]);
    }
    char sql[400];
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM blobs WHERE digest IN ('%s', '%s')", c.str,
             l.str);
    assert_int_equal(count(path, sql), 0);
    assert_int_equal(count(path, "SELECT count(*) FROM blobs"), 2); /* shared, other-config */
    /* the rest is intact: other/app, the quota (not bound to the repository), the log's
     * numbering (redacted stand-ins keep their place) */
    assert_int_equal(count(path, "SELECT count(*) FROM manifests"), 1);
    assert_int_equal(count(path, "SELECT count(*) FROM objects WHERE kind = 'quota'"), 1);
    assert_true(count(path, "SELECT count(*) FROM events WHERE kind = 'redacted'") >= 3);
    assert_int_equal(count(path, "SELECT count(*) FROM events WHERE kind = 'redacted' AND"
                                 " (repo IS NOT NULL OR payload IS NOT NULL)"),
                     0);
    char wal[300];
    snprintf(wal, sizeof(wal), "%s-wal", path);
    assert_false(file_holds_document(path, "EU-DOCUMENT-ONE"));
    assert_false(file_holds_document(wal, "EU-DOCUMENT-ONE"));
    assert_false(file_holds_document(path, "EU-DOCUMENT-TWO"));
    assert_false(file_holds_document(wal, "EU-DOCUMENT-TWO"));
    assert_true(file_holds_document(path, "OTHER-DOCUMENT") ||
                file_holds_document(wal, "OTHER-DOCUMENT"));

    /* purging what is not kept is a no-op */
    ms = metastore_sqlite_open(path, "ap-1", &e);
    assert_non_null(ms);
    assert_int_equal(ms->ops->repo_purge(ms, "eu/app", &orphans, &n_manifests, &e), 0);
    assert_int_equal(n_manifests, 0);
    assert_int_equal(orphans.n, 0);
    ms->ops->close(ms);
}


/* A manifest of repo whose annotation and body hold marker: the annotation is kept verbatim
 * (the manifests row's annotations column), the body packed (body_pack.c). */
static void put_marked(struct metastore *ms, const char *repo, const char *tag, const char *marker,
                       size_t pad, struct digest *out)
{
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    char annotations[128], body[2048], filler[1024];
    snprintf(annotations, sizeof(annotations), "{\"org.example.marker\":\"%s\"}", marker);
    /* filler that packing cannot shrink much, drawn from the marker: rows of many sizes */
    uint32_t x = 2166136261u;
    for (const char *p = marker; *p != '\0'; p++)
        x = (x ^ (unsigned char)*p) * 16777619u;
    for (size_t i = 0; i < pad && i + 1 < sizeof(filler); i++) {
        x = x * 1103515245u + 12345u;
        filler[i] = alphabet[(x >> 16) % 64];
    }
    filler[pad < sizeof(filler) ? pad : sizeof(filler) - 1] = '\0';
    size_t len = (size_t)snprintf(body, sizeof(body),
                                  "{\"schemaVersion\":2,\"annotations\":%s,\"pad\":\"%s\"}",
                                  annotations, filler);
    struct meta_manifest m = {.media_type = "application/vnd.oci.image.manifest.v1+json",
                              .annotations_json = annotations,
                              .body = body,
                              .body_len = len};
    digest_of_buffer(DIGEST_SHA256, body, len, &m.digest);
    struct err e = {0};
    assert_int_equal(ms->ops->manifest_put(ms, repo, &m, NULL, 0, NULL, tag, &e), 0);
    *out = m.digest;
}

/* How many times the file holds the bytes (0 when it does not exist). */
static size_t file_count_bytes(const char *path, const char *needle)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return 0;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *data = xmalloc((size_t)n + 1);
    assert_int_equal(fread(data, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    size_t count = 0, len = strlen(needle);
    for (char *at = data; (at = memmem(at, (size_t)(data + n - at), needle, len)) != NULL; at++)
        count++;
    free(data);
    return count;
}

static size_t files_count_bytes(const char *db_path, const char *needle)
{
    char side[300];
    size_t n = file_count_bytes(db_path, needle);
    snprintf(side, sizeof(side), "%s-wal", db_path);
    n += file_count_bytes(side, needle);
    snprintf(side, sizeof(side), "%s-shm", db_path);
    return n + file_count_bytes(side, needle);
}

/* The promise of an enforced policy (docs/governance.md, "Residency"): no copy of a manifest
 * document of the repository is left in meta.db or its WAL after the removal. Manifests of
 * eu/app pushed among other repositories' manifests share their leaf pages; the deletes of
 * others that follow make SQLite move cells between sibling leaves, which may leave the old
 * bytes of a moved row in the unused space of the page it left, secure_delete on or off
 * (Debian's SQLite has it on by default): the purge's secure_delete zeroes only the cells
 * it frees. Fails before 6 December: meta.db kept a whole stale row of eu/app (digest,
 * annotations, packed document) after the removal. */
static void test_purge_leaves_no_copy_moved_by_earlier_writes(void **state)
{
    (void)state;
    char path[256];
    snprintf(path, sizeof(path), "%s/moved.db", tmpdir);
    struct err e = {0};
    struct metastore *ms = metastore_sqlite_open(path, "ap-1", &e);
    assert_non_null(ms);
    enum { N_ROUNDS = 10000, EVERY = 25 };
    static struct digest others[N_ROUNDS];
    static char other_repos[N_ROUNDS][32];
    size_t n_others = 0;
    uint32_t rnd = 12345; /* a fixed sequence: the same pages split and merge each run */
    struct digest d;
    char tag[64], marker[64];
    for (unsigned i = 0; i < N_ROUNDS; i++) {
        snprintf(other_repos[n_others], sizeof(other_repos[0]), "other/app-%u", i % 7);
        snprintf(tag, sizeof(tag), "t%u", i % 50);
        snprintf(marker, sizeof(marker), "OTHER-%u", i);
        rnd = rnd * 1103515245u + 12345u;
        put_marked(ms, other_repos[n_others], tag, marker, 100 + (rnd >> 16) % 200,
                   &others[n_others]);
        n_others++;
        if (i % EVERY == 0) {
            snprintf(marker, sizeof(marker), "RES15-SECRET-%u", i / EVERY);
            snprintf(tag, sizeof(tag), "v%u", i / EVERY);
            put_marked(ms, "eu/app", tag, marker, 50 + i % 200, &d);
        }
        /* deletes of others here and there: cells move between sibling leaves */
        for (int k = 0; i % 10 == 9 && k < 5 && n_others > 0; k++) {
            rnd = rnd * 1103515245u + 12345u;
            size_t at = (rnd >> 8) % n_others;
            assert_int_equal(ms->ops->manifest_delete(ms, other_repos[at], &others[at], &e), 0);
            n_others--;
            others[at] = others[n_others];
            memcpy(other_repos[at], other_repos[n_others], sizeof(other_repos[0]));
        }
    }
    /* The setup's check: with the log copied home, meta.db holds more copies of eu/app's
     * rows than it has rows (stale ones, where cells moved from). */
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "PRAGMA wal_checkpoint(TRUNCATE)", NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(db);
    size_t before = file_count_bytes(path, "RES15-SECRET-");
    if (before <= N_ROUNDS / EVERY)
        fail_msg("no stale copy to remove: %zu copies of %d rows", before, N_ROUNDS / EVERY);

    struct meta_name_list orphans;
    int64_t n_manifests = 0;
    assert_int_equal(ms->ops->repo_purge(ms, "eu/app", &orphans, &n_manifests, &e), 0);
    assert_int_equal(n_manifests, N_ROUNDS / EVERY);
    meta_name_list_fini(&orphans);
    size_t open_after = files_count_bytes(path, "RES15-SECRET-");
    ms->ops->close(ms);
    size_t closed_after = files_count_bytes(path, "RES15-SECRET-");
    if (open_after != 0 || closed_after != 0)
        fail_msg("%zu copies of eu/app's annotations before the purge, %zu after it (open), %zu "
                 "after closing",
                 before, open_after, closed_after);
    assert_int_equal(count(path, "SELECT count(*) FROM manifests WHERE annotations LIKE "
                                 "'%RES15-SECRET-%'"),
                     0);
    /* done: nothing left for the next open to rebuild */
    assert_int_equal(count(path, "SELECT count(*) FROM auth_meta WHERE k = 'rebuild_pending'"),
                     0);
}

/* After a purge (which turns secure_delete on for its transaction) the writer connection is
 * back to the library's default, not off: Debian builds libsqlite3 with
 * SQLITE_SECURE_DELETE, so a manifest deleted later is zeroed where it lay (until 6 December
 * the purge left the writer with secure_delete off for the rest of the process). */
static void test_secure_delete_back_to_the_default_after_a_purge(void **state)
{
    (void)state;
    if (!sqlite3_compileoption_used("SECURE_DELETE"))
        skip(); /* a library whose default is off: nothing to keep */
    char path[256];
    snprintf(path, sizeof(path), "%s/default.db", tmpdir);
    struct err e = {0};
    struct metastore *ms = metastore_sqlite_open(path, "ap-1", &e);
    assert_non_null(ms);
    struct digest d;
    put_marked(ms, "eu/app", "v1", "PURGED-FIRST", 100, &d);
    struct meta_name_list orphans;
    int64_t n_manifests = 0;
    assert_int_equal(ms->ops->repo_purge(ms, "eu/app", &orphans, &n_manifests, &e), 0);
    meta_name_list_fini(&orphans);
    put_marked(ms, "other/app", "v1", "DELETED-LATER", 300, &d);
    assert_int_equal(ms->ops->manifest_delete(ms, "other/app", &d, &e), 0);
    ms->ops->close(ms);
    assert_int_equal(file_count_bytes(path, "DELETED-LATER"), 0);
}

int main(void)
{
    if (mkdtemp(tmpdir) == NULL)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_the_rule),
        cmocka_unit_test(test_policy_validation),
        cmocka_unit_test(test_only_enforced_policies_remove),
        cmocka_unit_test(test_event_repo_and_redact),
        cmocka_unit_test(test_purge_removes_all_of_a_repository),
        cmocka_unit_test(test_purge_leaves_no_copy_moved_by_earlier_writes),
        cmocka_unit_test(test_secure_delete_back_to_the_default_after_a_purge),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
    if (system(cmd) != 0)
        rc = rc ? rc : 1;
    return rc;
}
