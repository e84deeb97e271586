/* Unit tests for the access-control ops of the SQLite metastore: identities (create,
 * conflict, update, delete cascading to bindings), role bindings (idempotent add,
 * remove, not found), the generation that moves with every change and survives a
 * reopen, the audit log (order, filters, paging, aggregated counts, the row cap, the
 * upgrade of a version-2 database) and upload-session owners. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

/* cmocka.h needs the four headers above first. */
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

#include "schema_back_to_v2.h"
#include "metastore.h"
#include "util.h"

struct fixture {
    char dir[64];
    char path[96];
    struct metastore *ms;
};

static int setup(void **state)
{
    struct fixture *f = xcalloc(1, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "/tmp/meridian-msauth-XXXXXX");
    if (mkdtemp(f->dir) == NULL)
        return -1;
    snprintf(f->path, sizeof(f->path), "%s/meta.db", f->dir);
    struct err e = {0};
    f->ms = metastore_sqlite_open(f->path, "local", &e);
    *state = f;
    return f->ms != NULL ? 0 : -1;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    if (f->ms != NULL)
        f->ms->ops->close(f->ms);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
    if (system(cmd) != 0)
        return -1;
    free(f);
    return 0;
}

static int64_t generation(struct metastore *ms)
{
    int64_t g = -1;
    struct err e = {0};
    assert_int_equal(ms->ops->auth_generation(ms, &g, &e), 0);
    return g;
}

static void test_identities(void **state)
{
    struct fixture *f = *state;
    struct metastore *ms = f->ms;
    struct err e = {0};
    int64_t g0 = generation(ms);
    struct meta_identity alice = {.name = "alice", .kind = "user", .secret_hash = "h1"};
    struct meta_identity bot = {.name = "ci",
                                .kind = "robot",
                                .secret_hash = "h2",
                                .description = "pipeline",
                                .expires_s = 4000000000};
    assert_int_equal(ms->ops->identity_put(ms, &alice, true, &e), 0);
    assert_int_equal(ms->ops->identity_put(ms, &bot, true, &e), 0);
    assert_true(generation(ms) > g0);
    /* the name space is shared by users and robots */
    struct meta_identity clash = {.name = "ci", .kind = "user", .secret_hash = "x"};
    assert_int_equal(ms->ops->identity_put(ms, &clash, true, &e), -1);
    assert_int_equal(e.code, ERR_CONFLICT);
    /* update needs the same kind */
    assert_int_equal(ms->ops->identity_put(ms, &clash, false, &e), -1);
    assert_int_equal(e.code, ERR_NOT_FOUND);
    alice.secret_hash = "h1b";
    int64_t g1 = generation(ms);
    assert_int_equal(ms->ops->identity_put(ms, &alice, false, &e), 0);
    assert_true(generation(ms) > g1);

    struct meta_auth_state st;
    assert_int_equal(ms->ops->auth_load(ms, &st, &e), 0);
    assert_int_equal(st.n_identities, 2);
    assert_string_equal(st.identities[0].name, "alice"); /* by name */
    assert_string_equal(st.identities[0].secret_hash, "h1b");
    assert_string_equal(st.identities[1].kind, "robot");
    assert_string_equal(st.identities[1].description, "pipeline");
    assert_int_equal(st.identities[1].expires_s, 4000000000);
    assert_true(st.identities[1].created_ms > 0);
    assert_int_equal(st.generation, generation(ms));
    meta_auth_state_fini(&st);

    /* delete by kind */
    assert_int_equal(ms->ops->identity_delete(ms, "ci", "user", &e), -1);
    assert_int_equal(e.code, ERR_NOT_FOUND);
    assert_int_equal(ms->ops->identity_delete(ms, "ci", "robot", &e), 0);
    assert_int_equal(ms->ops->identity_delete(ms, "ci", NULL, &e), -1);
}

static void test_bindings(void **state)
{
    struct fixture *f = *state;
    struct metastore *ms = f->ms;
    struct err e = {0};
    struct meta_identity bob = {.name = "bob", .kind = "user", .secret_hash = "h"};
    assert_int_equal(ms->ops->identity_put(ms, &bob, true, &e), 0);
    struct meta_binding b = {.subject = "bob", .role = "publisher", .pattern = "golden/*"};
    struct meta_binding anon = {.subject = "anonymous", .role = "consumer", .pattern = "pub/*"};
    bool is_changed = false;
    int64_t g = generation(ms);
    assert_int_equal(ms->ops->role_set(ms, &b, true, &is_changed, &e), 0);
    assert_true(is_changed);
    assert_true(generation(ms) > g);
    g = generation(ms);
    assert_int_equal(ms->ops->role_set(ms, &b, true, &is_changed, &e), 0);
    assert_false(is_changed);
    assert_int_equal(generation(ms), g); /* nothing changed */
    assert_int_equal(ms->ops->role_set(ms, &anon, true, &is_changed, &e), 0);

    struct meta_auth_state st;
    assert_int_equal(ms->ops->auth_load(ms, &st, &e), 0);
    assert_int_equal(st.n_bindings, 2);
    meta_auth_state_fini(&st);

    /* deleting an identity deletes its bindings, not others' */
    assert_int_equal(ms->ops->identity_delete(ms, "bob", NULL, &e), 0);
    assert_int_equal(ms->ops->auth_load(ms, &st, &e), 0);
    assert_int_equal(st.n_bindings, 1);
    assert_string_equal(st.bindings[0].subject, "anonymous");
    assert_string_equal(st.bindings[0].pattern, "pub/*");
    meta_auth_state_fini(&st);

    assert_int_equal(ms->ops->role_set(ms, &anon, false, &is_changed, &e), 0);
    assert_true(is_changed);
    assert_int_equal(ms->ops->role_set(ms, &anon, false, &is_changed, &e), -1);
    assert_int_equal(e.code, ERR_NOT_FOUND);
}

/* Residency policies ride in authz.c's snapshot: every write of one moves the generation
 * (put, delete, and a peer's that is applied), other objects do not. */
static void test_residency_policy_writes_move_the_generation(void **state)
{
    struct fixture *f = *state;
    struct metastore *ms = f->ms;
    struct err e = {0};
    const char *policy = "{\"name\":\"eu\",\"repositories\":\"eu/*\",\"allowedRegions\":[\"local\"]}";
    int64_t g = generation(ms);
    assert_int_equal(ms->ops->object_put(ms, "webhook", "w", "{\"url\":\"http://x\"}", &e), 0);
    assert_int_equal(generation(ms), g);
    assert_int_equal(ms->ops->object_put(ms, "residency_policy", "eu", policy, &e), 0);
    assert_true(generation(ms) > g);
    g = generation(ms);
    assert_int_equal(ms->ops->object_delete(ms, "residency_policy", "eu", &e), 0);
    assert_true(generation(ms) > g);

    /* The same two events applied at a peer region. */
    struct meta_event *evs = NULL;
    size_t n = 0;
    int64_t last = 0;
    assert_int_equal(ms->ops->events_read(ms, 0, NULL, 100, &evs, &n, &last, &e), 0);
    char peer_path[128];
    snprintf(peer_path, sizeof(peer_path), "%s/peer.db", f->dir);
    struct metastore *peer = metastore_sqlite_open(peer_path, "peer", &e);
    assert_non_null(peer);
    size_t n_policy_events = 0;
    for (size_t i = 0; i < n; i++) {
        bool is_policy = evs[i].payload != NULL && strstr(evs[i].payload, "residency_policy");
        int64_t before = generation(peer);
        bool is_new = false, is_gap = false;
        assert_int_equal(peer->ops->event_apply(peer, &evs[i], &is_new, &is_gap, &e), 0);
        assert_true(is_new);
        if (is_policy) {
            assert_true(generation(peer) > before);
            n_policy_events++;
        } else {
            assert_int_equal(generation(peer), before);
        }
        meta_event_fini(&evs[i]);
    }
    free(evs);
    assert_int_equal(n_policy_events, 2);
    peer->ops->close(peer);
}

static void test_generation_survives_reopen(void **state)
{
    struct fixture *f = *state;
    struct err e = {0};
    struct meta_identity u = {.name = "u", .kind = "user", .secret_hash = "h"};
    assert_int_equal(f->ms->ops->identity_put(f->ms, &u, true, &e), 0);
    int64_t g = generation(f->ms);
    f->ms->ops->close(f->ms);
    f->ms = metastore_sqlite_open(f->path, "local", &e);
    assert_non_null(f->ms);
    assert_int_equal(generation(f->ms), g);
    struct meta_auth_state st;
    assert_int_equal(f->ms->ops->auth_load(f->ms, &st, &e), 0);
    assert_int_equal(st.n_identities, 1);
    meta_auth_state_fini(&st);
}

static void test_audit(void **state)
{
    struct fixture *f = *state;
    struct metastore *ms = f->ms;
    struct err e = {0};
    static const char *const actors[] = {"alice", "bob", "alice", "peer", "alice"};
    static const char *const actions[] = {"manifest.put", "role.assign", "blob.push",
                                          "manifest.put", "manifest.delete"};
    for (int i = 0; i < 5; i++) {
        struct meta_audit a = {.time_ms = 1000 + i,
                               .actor = (char *)actors[i],
                               .action = (char *)actions[i],
                               .target = "r@v1",
                               .status = 201,
                               .remote = "127.0.0.1",
                               .detail = i == 1 ? NULL : "PUT"};
        int64_t id = 0;
        assert_int_equal(ms->ops->audit_append(ms, &a, 0, &id, &e), 0);
        assert_true(id > 0);
    }
    struct meta_audit *list = NULL;
    size_t n = 0;
    struct meta_audit_query q = {.limit = 100};
    assert_int_equal(ms->ops->audit_list(ms, &q, &list, &n, &e), 0);
    assert_int_equal(n, 5);
    assert_string_equal(list[0].action, "manifest.delete"); /* newest first */
    assert_true(list[0].id > list[1].id);
    assert_int_equal(list[0].time_ms, 1004);
    assert_string_equal(list[0].remote, "127.0.0.1");
    assert_null(list[3].detail);
    assert_int_equal(list[0].count, 1);
    assert_int_equal(list[0].last_ms, 1004);
    int64_t second_id = list[1].id;
    meta_audit_free(list, n);

    q = (struct meta_audit_query){.limit = 100, .actor = "alice"};
    assert_int_equal(ms->ops->audit_list(ms, &q, &list, &n, &e), 0);
    assert_int_equal(n, 3);
    meta_audit_free(list, n);
    q = (struct meta_audit_query){.limit = 100, .action = "manifest."};
    assert_int_equal(ms->ops->audit_list(ms, &q, &list, &n, &e), 0);
    assert_int_equal(n, 3);
    meta_audit_free(list, n);
    q = (struct meta_audit_query){.limit = 2, .before_id = second_id};
    assert_int_equal(ms->ops->audit_list(ms, &q, &list, &n, &e), 0);
    assert_int_equal(n, 2);
    assert_true(list[0].id < second_id);
    assert_string_equal(list[0].action, "blob.push");
    meta_audit_free(list, n);
}

static int64_t audit_rows(struct metastore *ms, int64_t *oldest, int64_t *newest)
{
    struct meta_audit *list = NULL;
    size_t n = 0;
    struct err e = {0};
    struct meta_audit_query q = {.limit = 10000};
    assert_int_equal(ms->ops->audit_list(ms, &q, &list, &n, &e), 0);
    if (n > 0) {
        *newest = list[0].id;
        *oldest = list[n - 1].id;
    }
    meta_audit_free(list, n);
    return (int64_t)n;
}

static int64_t append_one(struct metastore *ms, uint64_t max_rows, int64_t time_ms)
{
    struct meta_audit a = {.time_ms = time_ms,
                           .actor = "alice",
                           .action = "manifest.put",
                           .target = "r@v1",
                           .status = 201,
                           .remote = "127.0.0.1"};
    struct err e = {0};
    int64_t id = 0;
    assert_int_equal(ms->ops->audit_append(ms, &a, max_rows, &id, &e), 0);
    return id;
}

/* The cap holds: the newest max_rows stay, the oldest go. */
static void test_audit_cap(void **state)
{
    struct fixture *f = *state;
    int64_t last = 0, oldest = 0, newest = 0;
    for (int i = 0; i < 200; i++)
        last = append_one(f->ms, 50, 1000 + i);
    assert_int_equal(audit_rows(f->ms, &oldest, &newest), 50);
    assert_int_equal(newest, last);
    assert_int_equal(oldest, last - 49);
    /* a lowered cap shrinks the table over the next appends (100 per append at most) */
    for (int i = 0; i < 3; i++)
        last = append_one(f->ms, 10, 2000 + i);
    assert_int_equal(audit_rows(f->ms, &oldest, &newest), 10);
    assert_int_equal(oldest, last - 9);
    /* 0: no cap */
    for (int i = 0; i < 20; i++)
        append_one(f->ms, 0, 3000 + i);
    assert_int_equal(audit_rows(f->ms, &oldest, &newest), 30);
}

/* Aggregated counts only grow; an entry rotated out is no error. */
static void test_audit_set_count(void **state)
{
    struct fixture *f = *state;
    struct metastore *ms = f->ms;
    struct err e = {0};
    int64_t id = append_one(ms, 0, 5000);
    assert_int_equal(ms->ops->audit_set_count(ms, id, 7, 5900, &e), 0);
    assert_int_equal(ms->ops->audit_set_count(ms, id, 3, 5100, &e), 0); /* late, older */
    assert_int_equal(ms->ops->audit_set_count(ms, id + 1000, 3, 5100, &e), 0);
    struct meta_audit *list = NULL;
    size_t n = 0;
    struct meta_audit_query q = {.limit = 1};
    assert_int_equal(ms->ops->audit_list(ms, &q, &list, &n, &e), 0);
    assert_int_equal(n, 1);
    assert_int_equal(list[0].count, 7);
    assert_int_equal(list[0].time_ms, 5000);
    assert_int_equal(list[0].last_ms, 5900);
    meta_audit_free(list, n);
}

static void exec_sql(const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    char *msg = NULL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
    if (rc != SQLITE_OK)
        fprintf(stderr, "sql failed: %s\n", msg ? msg : "?");
    sqlite3_free(msg);
    assert_int_equal(rc, SQLITE_OK);
    sqlite3_close(db);
}

/* A database of schema version 2 (the audit log without count and last_ms, with entries;
 * and one from before access control, without the table) opens and upgrades. */
static void test_audit_upgrade_from_v2(void **state)
{
    struct fixture *f = *state;
    struct err e = {0};
    append_one(f->ms, 0, 1000);
    f->ms->ops->close(f->ms);
    f->ms = NULL;
    /* Back to what version 2 made: the v2 columns only, and an entry written by v2. */
    exec_sql(f->path, SQL_SCHEMA_BACK_TO_V2
                      "INSERT INTO audit_log(time_ms, actor, action, target, status, remote,"
                      " detail) VALUES (2000, 'bob', 'role.assign', 'roles', 201, '::1', 'x');");
    f->ms = metastore_sqlite_open(f->path, "local", &e);
    assert_non_null(f->ms);
    struct meta_audit *list = NULL;
    size_t n = 0;
    struct meta_audit_query q = {.limit = 10};
    assert_int_equal(f->ms->ops->audit_list(f->ms, &q, &list, &n, &e), 0);
    assert_int_equal(n, 2);
    assert_string_equal(list[0].actor, "bob");
    assert_int_equal(list[0].count, 1);
    assert_int_equal(list[0].last_ms, 2000);
    int64_t bob = list[0].id;
    meta_audit_free(list, n);
    assert_int_equal(f->ms->ops->audit_set_count(f->ms, bob, 4, 2500, &e), 0);
    assert_true(append_one(f->ms, 0, 3000) > bob);
    f->ms->ops->close(f->ms);
    f->ms = NULL;

    /* A version-2 database of a node that never had access control: no audit_log. */
    exec_sql(f->path, SQL_SCHEMA_BACK_TO_V2 "DROP TABLE audit_log;");
    f->ms = metastore_sqlite_open(f->path, "local", &e);
    assert_non_null(f->ms);
    int64_t oldest = 0, newest = 0;
    assert_int_equal(audit_rows(f->ms, &oldest, &newest), 0);
    append_one(f->ms, 0, 4000);
    assert_int_equal(audit_rows(f->ms, &oldest, &newest), 1);
}

/* Identities and bindings from before registry-wide identities (rows only, no object, no
 * event, as a version-2 store wrote them) are published at open: each gets its object
 * at the lowest clock (so that any deliberate write elsewhere wins) and an event peers
 * pull; the hash goes, the rows stay; a second open publishes nothing again. */
static int64_t count_sql(const char *path, const char *sql)
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

static void test_identities_published_on_upgrade(void **state)
{
    struct fixture *f = *state;
    struct err e = {0};
    f->ms->ops->close(f->ms);
    f->ms = NULL;
    exec_sql(f->path, SQL_SCHEMA_BACK_TO_V2
             "DELETE FROM objects; DELETE FROM events;"
             "INSERT INTO identities(name, kind, secret_hash, description, created_ms,"
             " expires_s) VALUES ('olduser', 'user', '$argon2id$v=19$m=1,t=1,p=1$x$y',"
             " NULL, 1000, 0);"
             "INSERT INTO role_bindings(subject, role, pattern, created_ms) VALUES"
             " ('olduser', 'consumer', 'team/*', 1000);");
    f->ms = metastore_sqlite_open(f->path, "local", &e);
    assert_non_null(f->ms);
    assert_int_equal(count_sql(f->path, "SELECT count(*) FROM objects WHERE kind = 'identity'"
                                        " AND key = 'olduser' AND hlc = 1 AND is_deleted = 0"
                                        " AND value LIKE '%\"secretHash\":\"$argon2id$%'"),
                     1);
    assert_int_equal(count_sql(f->path, "SELECT count(*) FROM objects WHERE kind ="
                                        " 'role_binding' AND key = 'olduser consumer team/*'"),
                     1);
    assert_int_equal(count_sql(f->path, "SELECT count(*) FROM events WHERE kind = 'object_put'"),
                     2);
    struct meta_auth_state st;
    assert_int_equal(f->ms->ops->auth_load(f->ms, &st, &e), 0);
    assert_int_equal(st.n_identities, 1);
    assert_int_equal(st.n_bindings, 1);
    meta_auth_state_fini(&st);
    f->ms->ops->close(f->ms);
    f->ms = metastore_sqlite_open(f->path, "local", &e);
    assert_non_null(f->ms);
    assert_int_equal(count_sql(f->path, "SELECT count(*) FROM events"), 2);
}

/* Ids of the entries a query lists, newest first, as "3,1". */
static void listed(struct metastore *ms, const struct meta_audit_query *q, char *out, size_t len)
{
    struct meta_audit *list = NULL;
    size_t n = 0;
    struct err e = {0};
    assert_int_equal(ms->ops->audit_list(ms, q, &list, &n, &e), 0);
    size_t k = 0;
    out[0] = '\0';
    for (size_t i = 0; i < n; i++)
        k += (size_t)snprintf(out + k, len - k, "%s%s@%s", i ? "," : "", list[i].actor,
                              list[i].region);
    meta_audit_free(list, n);
}

/* Issue 13: the audit listing by the region a change was decided in and by time range
 * (both bounds inclusive); a replicated change names its origin. */
static void test_audit_filter_region_and_time(void **state)
{
    struct fixture *f = *state;
    struct metastore *ms = f->ms;
    struct err e = {0};
    struct meta_audit a = {.time_ms = 1000, .actor = "alice", .action = "manifest.put",
                           .status = 201, .remote = "::1"};
    assert_int_equal(ms->ops->audit_append(ms, &a, 0, NULL, &e), 0);
    a.time_ms = 2000, a.actor = "bob", a.region = "eu-1";
    assert_int_equal(ms->ops->audit_append(ms, &a, 0, NULL, &e), 0);
    a.time_ms = 3000, a.actor = "carol", a.region = NULL;
    assert_int_equal(ms->ops->audit_append(ms, &a, 0, NULL, &e), 0);
    char got[256];
    struct meta_audit_query q = {.limit = 10};
    listed(ms, &q, got, sizeof(got));
    assert_string_equal(got, "carol@local,bob@eu-1,alice@local");
    q.region = "local";
    listed(ms, &q, got, sizeof(got));
    assert_string_equal(got, "carol@local,alice@local");
    q.region = "eu-1";
    listed(ms, &q, got, sizeof(got));
    assert_string_equal(got, "bob@eu-1");
    q.region = "nowhere";
    listed(ms, &q, got, sizeof(got));
    assert_string_equal(got, "");
    q = (struct meta_audit_query){.limit = 10, .since_ms = 2000, .until_ms = 3000};
    listed(ms, &q, got, sizeof(got));
    assert_string_equal(got, "carol@local,bob@eu-1");
    q = (struct meta_audit_query){.limit = 10, .until_ms = 1999};
    listed(ms, &q, got, sizeof(got));
    assert_string_equal(got, "alice@local");
    q = (struct meta_audit_query){.limit = 10, .since_ms = 1500, .region = "local"};
    listed(ms, &q, got, sizeof(got));
    assert_string_equal(got, "carol@local");
}

/* Issue 13 item 5: the audit by repository: entries whose target is the repository, or
 * names it before "@" or ":" (a manifest, a blob, a version); never another repository
 * whose name starts the same. */
static void test_audit_filter_repository(void **state)
{
    struct fixture *f = *state;
    struct metastore *ms = f->ms;
    struct err e = {0};
    static const struct {
        const char *actor, *target;
    } rows[] = {{"a", "eu/app"},          {"b", "eu/app@sha256:00"}, {"c", "eu/app:1.0.0"},
                {"d", "eu/app2"},         {"e", "eu/app2@latest"},   {"f", "eu"},
                {"g", "policies/residency/x"}};
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        struct meta_audit a = {.time_ms = 1000 + (int64_t)i, .actor = (char *)rows[i].actor,
                               .action = "manifest.put", .target = (char *)rows[i].target,
                               .status = 201, .remote = "::1"};
        assert_int_equal(ms->ops->audit_append(ms, &a, 0, NULL, &e), 0);
    }
    char got[256];
    struct meta_audit_query q = {.limit = 10, .repository = "eu/app"};
    listed(ms, &q, got, sizeof(got));
    assert_string_equal(got, "c@local,b@local,a@local");
    q.repository = "eu/app2";
    listed(ms, &q, got, sizeof(got));
    assert_string_equal(got, "e@local,d@local");
    q.repository = "eu/ap";
    listed(ms, &q, got, sizeof(got));
    assert_string_equal(got, "");
    q = (struct meta_audit_query){.limit = 10, .repository = "eu/app", .since_ms = 1001};
    listed(ms, &q, got, sizeof(got));
    assert_string_equal(got, "c@local,b@local");
}

/* A database of schema version 2 with a local entry and a replicated one: after the upgrade
 * the local one is this region's, the replicated one its origin's. */
static void test_audit_region_upgrade_from_v2(void **state)
{
    struct fixture *f = *state;
    struct err e = {0};
    f->ms->ops->close(f->ms);
    f->ms = NULL;
    exec_sql(f->path, SQL_SCHEMA_BACK_TO_V2
             "INSERT INTO audit_log(time_ms, actor, action, target, status, remote, detail)"
             " VALUES (1000, 'alice', 'user.create', 'users', 201, '::1', 'x'),"
             " (2000, 'peer', 'identity.replicated', 'bob', 200, 'eu-2', 'origin=eu-2 put');");
    f->ms = metastore_sqlite_open(f->path, "local", &e);
    assert_non_null(f->ms);
    char got[256];
    struct meta_audit_query q = {.limit = 10};
    listed(f->ms, &q, got, sizeof(got));
    assert_string_equal(got, "peer@eu-2,alice@local");
    q.region = "eu-2";
    listed(f->ms, &q, got, sizeof(got));
    assert_string_equal(got, "peer@eu-2");
    q.region = "local";
    listed(f->ms, &q, got, sizeof(got));
    assert_string_equal(got, "alice@local");
}

static void test_upload_owners(void **state)
{
    struct fixture *f = *state;
    struct metastore *ms = f->ms;
    struct err e = {0};
    int64_t n = -1;
    assert_int_equal(ms->ops->upload_create(ms, "u1", "r", 2000, NULL, false, &e), 0);
    assert_int_equal(ms->ops->upload_create(ms, "u2", "r", 2000, NULL, false, &e), 0);
    assert_int_equal(ms->ops->upload_create(ms, "u3", "r", 500, NULL, false, &e), 0);
    assert_int_equal(ms->ops->upload_set_owner(ms, "u1", "alice", &e), 0);
    assert_int_equal(ms->ops->upload_set_owner(ms, "u2", "alice", &e), 0);
    assert_int_equal(ms->ops->upload_set_owner(ms, "u3", "alice", &e), 0);
    assert_int_equal(ms->ops->upload_count_owned(ms, "alice", 1000, &n, &e), 0);
    assert_int_equal(n, 2); /* u3 expired */
    assert_int_equal(ms->ops->upload_count_owned(ms, "bob", 1000, &n, &e), 0);
    assert_int_equal(n, 0);
    /* a finished session no longer counts */
    assert_int_equal(ms->ops->upload_delete(ms, "u1", &e), 0);
    assert_int_equal(ms->ops->upload_count_owned(ms, "alice", 1000, &n, &e), 0);
    assert_int_equal(n, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_identities, setup, teardown),
        cmocka_unit_test_setup_teardown(test_audit_filter_region_and_time, setup, teardown),
        cmocka_unit_test_setup_teardown(test_audit_region_upgrade_from_v2, setup, teardown),
        cmocka_unit_test_setup_teardown(test_audit_filter_repository, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bindings, setup, teardown),
        cmocka_unit_test_setup_teardown(test_generation_survives_reopen, setup, teardown),
        cmocka_unit_test_setup_teardown(test_residency_policy_writes_move_the_generation, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_audit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_audit_cap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_audit_set_count, setup, teardown),
        cmocka_unit_test_setup_teardown(test_audit_upgrade_from_v2, setup, teardown),
        cmocka_unit_test_setup_teardown(test_identities_published_on_upgrade, setup, teardown),
        cmocka_unit_test_setup_teardown(test_upload_owners, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
