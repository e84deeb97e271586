/* Query plans of the SQLite metastore (issue 21): every statement it prepares -- the
 * SQ_STATEMENTS list and the statements prepared per call, observed while a workload runs --
 * is planned with EXPLAIN QUERY PLAN on a database seeded with one large repository and many
 * small ones, once without statistics (a fresh database) and once after ANALYZE (what PRAGMA
 * optimize leaves), and must bound its work by what it returns:
 *   - no full SCAN of a table or index, no automatic index;
 *   - no prefix-only SEARCH: a SEARCH binds as many equality columns as the best index of
 *     the table could, unless it is a point lookup on a unique key;
 *   - no sort of every match before a LIMIT (USE TEMP B-TREE in a statement with LIMIT);
 *   - every foreign key has an index on its child columns (deletes check them).
 * Statements that legitimately walk a whole table are in an allow-list with the reason.
 * The test opens its own raw SQLite connection on the store's file to seed and to plan. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <ctype.h>
#include <ftw.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "metastore.h"
#include "util.h"

#define REGION "westeurope"
#define MT_MANIFEST "application/vnd.oci.image.manifest.v1+json"
#define BIG_TAGS 20000
#define SMALL_REPOS 2000

/* Statements that walk one table on purpose, matched by a substring of their SQL: a full scan
 * of that table (and only that one) passes; every other line of the plan is checked. */
static const struct {
    const char *sql_part;
    const char *table;
    const char *reason;
} allowed[] = {
    {"SELECT id, name FROM repos ORDER BY name", "repos",
     "anti-entropy summary: one state digest per repository, so it visits every repository"},
    {"SELECT digest FROM blobs ORDER BY digest", "blobs", "blob scrub: lists every blob"},
    {"SELECT r.name FROM repos r WHERE r.name <> ?2 AND EXISTS", "repos",
     "manifest_holder: one primary-key probe of manifests per repository (repositories are "
     "few next to manifests), only for a referrer pushed into an image definition whose "
     "subject is not a manifest of it"},
    {"SELECT origin, seq FROM vv ORDER BY origin", "vv", "version vector: one row per region"},
    {"FROM sqlite_schema WHERE", "sqlite_schema", "schema lookups at open: a few dozen rows"},
    {"FROM vv", "vv", "one row per region (the clock seed looks up each one's last event)"},
    {"FROM identities ORDER BY name", "identities",
     "authz snapshot: loads every identity into memory when the generation changes"},
    {"FROM role_bindings ORDER BY", "role_bindings", "authz snapshot: loads every binding"},
    {"SELECT name FROM identities WHERE NOT EXISTS", "identities",
     "at open: publishes the identities from before registry-wide identities (once)"},
    {"FROM role_bindings WHERE NOT EXISTS", "role_bindings",
     "at open: publishes the bindings from before registry-wide identities (once)"},
    {"FROM audit_log WHERE (?1 = 0 OR id < ?1)", "audit_log",
     "admin audit listing: walks newest first and stops at the page (LIMIT)"},
    {"DELETE FROM upload_owners WHERE id NOT IN (SELECT id FROM uploads)", "upload_owners",
     "upload_owners holds only live sessions (this statement prunes it on every insert)"},
    {"FROM peer_acks ORDER BY peer", "peer_acks", "compaction: one row per peer region"},
    {"FROM log_horizon", "log_horizon", "compaction: one row per origin region"},
    {"FROM objects ORDER BY kind, key", "objects",
     "snapshot for a region below the log horizon: every replicated object, once per catch-up"},
    {"SELECT count(*) FROM events", "events", "compaction status (admin API): rows in the log"},
    {"SELECT count(*) FROM manifest_tombs", "manifest_tombs",
     "compaction status (admin API): tombstones held"},
    {"SELECT id, response FROM webhook_deliveries WHERE status_code = 0", "webhook_deliveries",
     "at open, once per store: redacts the receiver URL of delivery records written before it "
     "was redacted (at most 1000 finished ones per webhook)"},
};

/* The table the statement may scan (allow-list), or NULL. */
static const char *allowed_table(const char *sql)
{
    for (size_t i = 0; i < sizeof(allowed) / sizeof(allowed[0]); i++) {
        if (strstr(sql, allowed[i].sql_part) != NULL)
            return allowed[i].table;
    }
    return NULL;
}

struct observed {
    pthread_mutex_t mu;
    char **sql;
    size_t n;
};

static struct observed seen = {.mu = PTHREAD_MUTEX_INITIALIZER};

static void on_statement(void *arg, const char *sql)
{
    (void)arg;
    AZ(pthread_mutex_lock(&seen.mu));
    bool is_known = false;
    for (size_t i = 0; i < seen.n && !is_known; i++)
        is_known = strcmp(seen.sql[i], sql) == 0;
    if (!is_known) {
        seen.sql = xrealloc(seen.sql, (seen.n + 1) * sizeof(char *));
        seen.sql[seen.n++] = xstrdup(sql);
    }
    AZ(pthread_mutex_unlock(&seen.mu));
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static struct digest dg(unsigned seed)
{
    struct digest d = {.alg = DIGEST_SHA256};
    int n = snprintf(d.str, sizeof(d.str), "sha256:");
    for (unsigned i = 0; i < 8; i++)
        n += snprintf(d.str + n, sizeof(d.str) - (size_t)n, "%08x", seed * 2654435761u + i);
    return d;
}

/* Runs every op of the store once or more, so that each statement it prepares per call is
 * observed (the SQ_STATEMENTS list is enumerated directly). */
static void workload(struct metastore *ms)
{
    struct err e = {0};
    const struct metastore_ops *o = ms->ops;
    struct digest layer = dg(1), cfg = dg(2);
    assert_int_equal(o->blob_link(ms, "w/app", &layer, 10, &e), 0);
    assert_int_equal(o->blob_link(ms, "w/app", &cfg, 10, &e), 0);
    struct meta_ref refs[2] = {{.digest = layer, .size = 10}, {.digest = cfg, .size = 10}};
    char body[64];
    int n = snprintf(body, sizeof(body), "{\"schemaVersion\":2}");
    struct meta_manifest m = {.digest = dg(3), .media_type = (char *)MT_MANIFEST, .body = body,
                              .body_len = (size_t)n};
    assert_int_equal(o->manifest_put(ms, "w/app", &m, refs, 2, NULL, "v1", &e), 0);
    /* At every start: the pass that seals webhook secrets left in clear. */
    static const uint8_t seal_key[32] = {1};
    assert_int_equal(metastore_sqlite_set_sealing_key(ms, seal_key, &e), 0);
    struct meta_manifest got;
    assert_int_equal(o->manifest_get(ms, "w/app", "v1", &got, &e), 0);
    meta_manifest_fini(&got);
    struct meta_name_list names;
    assert_int_equal(o->tag_list(ms, "w/app", NULL, 10, &names, &e), 0);
    meta_name_list_fini(&names);

    struct meta_delivery d = {.id = "d-1", .webhook = (char *)"hook", .action = (char *)"push",
                              .payload = (char *)"{}", .state = META_DELIVERY_PENDING};
    assert_int_equal(o->delivery_add(ms, &d, 1, &e), 0);
    struct meta_delivery_list dl;
    int64_t next;
    assert_int_equal(o->delivery_due(ms, util_now_ms(), 0, 1, NULL, 0, &dl, &next, &e), 0);
    meta_delivery_list_fini(&dl);
    assert_int_equal(o->delivery_due(ms, util_now_ms(), 0, 10, NULL, 0, &dl, &next, &e), 0);
    meta_delivery_list_fini(&dl);
    d.state = META_DELIVERY_DELIVERED;
    assert_int_equal(o->delivery_update(ms, &d, &e), 0);
    assert_int_equal(o->delivery_list(ms, "hook", 10, &dl, &e), 0);
    meta_delivery_list_fini(&dl);
    assert_int_equal(o->delivery_prune(ms, "hook", 10, NULL, &e), 0);

    struct meta_identity id = {.name = (char *)"ci", .kind = (char *)"robot",
                               .secret_hash = (char *)"h"};
    assert_int_equal(o->identity_put(ms, &id, true, &e), 0);
    assert_int_equal(o->identity_put(ms, &id, false, &e), 0);
    struct meta_binding b = {.subject = (char *)"ci", .role = (char *)"push",
                             .pattern = (char *)"w/*"};
    bool is_changed;
    assert_int_equal(o->role_set(ms, &b, true, &is_changed, &e), 0);
    assert_int_equal(o->role_set(ms, &b, false, &is_changed, &e), 0);
    struct meta_auth_state as;
    assert_int_equal(o->auth_load(ms, &as, &e), 0);
    meta_auth_state_fini(&as);
    int64_t gen;
    assert_int_equal(o->auth_generation(ms, &gen, &e), 0);
    assert_int_equal(o->identity_delete(ms, "ci", "robot", &e), 0);
    struct meta_audit a = {.time_ms = 1, .actor = (char *)"ci", .action = (char *)"push",
                           .status = 201};
    int64_t audit_id;
    assert_int_equal(o->audit_append(ms, &a, 1000, &audit_id, &e), 0);
    assert_int_equal(o->audit_set_count(ms, audit_id, 3, 2, &e), 0);
    struct meta_audit_query q = {.limit = 10, .actor = "ci"};
    struct meta_audit *al;
    size_t an;
    assert_int_equal(o->audit_list(ms, &q, &al, &an, &e), 0);
    meta_audit_free(al, an);
    assert_int_equal(o->upload_create(ms, "u-1", "w/app", util_now_s() + 60, "192.0.2.1",
                                      false, &e), 0);
    int64_t acked;
    assert_int_equal(o->upload_get(ms, "u-1", "w/app", &acked, &e), 0);
    assert_int_equal(o->upload_set_acked(ms, "u-1", 5, &e), 0);
    int64_t from_source;
    assert_int_equal(o->upload_count_from(ms, "192.0.2.1", util_now_s(), &from_source, &e), 0);
    struct meta_name_list singles;
    assert_int_equal(o->upload_list_single(ms, &singles, &e), 0);
    meta_name_list_fini(&singles);
    assert_int_equal(o->upload_set_owner(ms, "u-1", "ci", &e), 0);
    int64_t owned;
    assert_int_equal(o->upload_count_owned(ms, "ci", util_now_s(), &owned, &e), 0);
}

/* One large repository ("big", BIG_TAGS tags, each manifest referencing one shared config
 * blob and one layer of its own), SMALL_REPOS repositories of 5 tags, and the side tables
 * filled in proportion: enough rows for ANALYZE to tell a selective index from a prefix. */
static const char seed_sql[] =
    "BEGIN;"
    "CREATE TEMP TABLE n(i INTEGER PRIMARY KEY);"
    "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < 20000)"
    "  INSERT INTO n SELECT i FROM c;"
    "INSERT INTO repos(name) VALUES ('big');"
    "INSERT INTO repos(name) SELECT printf('small/%04d', i) FROM n WHERE i <= 2000;"
    "INSERT INTO blobs(digest, size) VALUES ('sha256:shared', 1);"
    "INSERT INTO blobs(digest, size) SELECT printf('sha256:l%064d', i), i FROM n;"
    "INSERT INTO repo_blobs(repo_id, digest) SELECT r.id, 'sha256:shared' FROM repos r;"
    "INSERT INTO repo_blobs(repo_id, digest)"
    "  SELECT (SELECT id FROM repos WHERE name = 'big'), printf('sha256:l%064d', i) FROM n;"
    "INSERT INTO manifests(repo_id, digest, media_type, size, body, created_ms, is_visible,"
    "  hlc, origin, subject)"
    "  SELECT r.id, printf('sha256:m%d-%064d', r.id, n.i), 'application/json', 2, x'7b7d',"
    "    n.i, n.i % 50 != 0, n.i, 'westeurope',"
    "    CASE WHEN n.i % 100 = 0 THEN printf('sha256:m%d-%064d', r.id, n.i - 1) END"
    "  FROM repos r JOIN n ON n.i <= CASE WHEN r.name = 'big' THEN 20000 ELSE 5 END;"
    "INSERT INTO manifest_ref_seqs(manifest_seq, ref_digest, is_manifest, size)"
    "  SELECT seq, 'sha256:shared', 0, 1 FROM manifests;"
    "INSERT INTO manifest_ref_seqs(manifest_seq, ref_digest, is_manifest, size)"
    "  SELECT seq, printf('sha256:l%064d', seq % 20000 + 1), 0, 1 FROM manifests;"
    "INSERT INTO tag_regs(repo, name, digest, hlc, origin)"
    "  SELECT r.name, printf('t%06d', m.rowid), m.digest, 1, 'westeurope' FROM manifests m"
    "  JOIN repos r ON r.id = m.repo_id;"
    "INSERT INTO manifest_tombs(repo, digest, hlc, origin)"
    "  SELECT 'big', printf('sha256:gone%064d', i), i, 'eastus' FROM n WHERE i <= 5000;"
    "INSERT INTO repl_status(repo, digest, region, state, bytes_done, bytes_total, updated_ms)"
    "  SELECT r.name, m.digest, g.region, 'Completed', 1, 1, 1 FROM manifests m"
    "  JOIN repos r ON r.id = m.repo_id"
    "  JOIN (SELECT 'westeurope' AS region UNION ALL SELECT 'eastus') g WHERE r.name != 'w/app';"
    "INSERT INTO events(origin, hlc, kind, repo, name, digest, payload, origin_seq)"
    "  SELECT CASE i % 3 WHEN 0 THEN 'brazilsouth' WHEN 1 THEN 'eastus' ELSE 'japaneast' END,"
    "    i, 'tag_set', 'big', printf('t%06d', i), 'sha256:x', NULL, (i + 2) / 3 FROM n;"
    "INSERT OR REPLACE INTO vv(origin, seq)"
    "  SELECT origin, max(origin_seq) FROM events GROUP BY origin;"
    "INSERT INTO uploads(id, repo, created_s, expires_s)"
    "  SELECT printf('up-%06d', i), 'big', i, i FROM n WHERE i <= 5000;"
    "INSERT INTO objects(kind, key, value, hlc, origin, is_deleted)"
    "  SELECT CASE WHEN i % 2 THEN 'webhook' ELSE 'replication' END, printf('k%d', i), '{}',"
    "    i, 'westeurope', 0 FROM n WHERE i <= 200;"
    "INSERT INTO webhook_deliveries(id, webhook, action, payload, state, attempts, status_code,"
    "  latency_ms, created_ms, updated_ms, next_attempt_ms)"
    "  SELECT printf('dl-%06d', i), printf('hook%d', i % 20), 'push', '{}',"
    "    CASE WHEN i % 100 = 0 THEN 'pending' ELSE 'delivered' END, 1, 200, 1, i, i, i FROM n;"
    "INSERT INTO identities(name, kind, secret_hash, created_ms)"
    "  SELECT printf('id%05d', i), 'robot', 'h', i FROM n WHERE i <= 1000;"
    "INSERT INTO role_bindings(subject, role, pattern, created_ms)"
    "  SELECT printf('id%05d', i), 'pull', '*', i FROM n WHERE i <= 1000;"
    "INSERT INTO audit_log(time_ms, actor, action, status)"
    "  SELECT i, printf('id%05d', i % 1000), 'push', 201 FROM n;"
    "INSERT OR IGNORE INTO upload_owners(id, owner)"
    "  SELECT id, printf('id%05d', created_s % 1000) FROM uploads;"
    "DROP TABLE n;"
    "COMMIT;";

/* A column bound by equality in a statement: qualifier ("" if none) and column name. */
struct eq_col {
    char qual[64];
    char col[64];
    char other[64]; /* join equality a.x = b.y: the qualifier of the other side, else "" */
};

/* The FROM/JOIN names of a statement: alias (or the table name itself) -> table. */
struct alias {
    char alias[64];
    char table[64];
};

struct parsed {
    struct eq_col eq[64];
    size_t n_eq;
    struct alias al[16];
    size_t n_al;
    bool has_limit;
    bool is_merge_side; /* the plan lines read so far are in a side of a merge */
    char outer[16][64]; /* names planned so far, outermost first (check_statement) */
    size_t n_outer;
};

static bool is_keyword(const char *w)
{
    static const char *const kw[] = {"SELECT", "FROM", "WHERE", "JOIN", "ON", "AND", "OR",
                                     "ORDER", "BY", "LIMIT", "GROUP", "SET", "NOT", "IN",
                                     "EXISTS", "IS", "NULL", "AS", "DO", "UPDATE", "VALUES",
                                     "INTO", "INSERT", "DELETE", "CONFLICT", "COLLATE",
                                     "BINARY", "DESC", "ASC", "CASE", "WHEN", "THEN", "END",
                                     "LEFT", "INNER", "INDEXED", "UNION", "ALL", "WITH",
                                     "OR", "IGNORE", "REPLACE", "excluded", NULL};
    for (size_t i = 0; kw[i] != NULL; i++) {
        if (strcasecmp(w, kw[i]) == 0)
            return true;
    }
    return false;
}

/* Splits sql into tokens: identifiers (with dots), ?N, numbers, 'strings', operators. */
static size_t tokenize(const char *sql, char tok[][80], size_t max)
{
    size_t n = 0;
    const char *p = sql;
    while (*p != '\0' && n < max) {
        if (isspace((unsigned char)*p)) {
            p++;
            continue;
        }
        const char *start = p;
        if (isalnum((unsigned char)*p) || *p == '_' || *p == '?') {
            p++;
            while (isalnum((unsigned char)*p) || *p == '_' || *p == '.')
                p++;
        } else if (*p == '\'') {
            p++;
            while (*p != '\0' && *p != '\'')
                p++;
            if (*p == '\'')
                p++;
        } else if ((*p == '<' || *p == '>' || *p == '!') && p[1] == '=') {
            p += 2;
        } else {
            p++;
        }
        size_t len = (size_t)(p - start) < 79 ? (size_t)(p - start) : 79;
        memcpy(tok[n], start, len);
        tok[n][len] = '\0';
        n++;
    }
    return n;
}

static bool is_column_ref(const char *t)
{
    return (isalpha((unsigned char)t[0]) || t[0] == '_') && !is_keyword(t);
}

static void add_eq(struct parsed *ps, const char *ref, const char *other)
{
    if (ps->n_eq == sizeof(ps->eq) / sizeof(ps->eq[0]))
        return;
    struct eq_col *c = &ps->eq[ps->n_eq++];
    const char *dot = strchr(ref, '.');
    if (dot != NULL) {
        snprintf(c->qual, sizeof(c->qual), "%.*s", (int)(dot - ref), ref);
        snprintf(c->col, sizeof(c->col), "%s", dot + 1);
    } else {
        c->qual[0] = '\0';
        snprintf(c->col, sizeof(c->col), "%s", ref);
    }
    const char *odot = other != NULL ? strchr(other, '.') : NULL;
    snprintf(c->other, sizeof(c->other), "%.*s", odot ? (int)(odot - other) : 0,
             odot ? other : "");
}

static void parse_sql(const char *sql, struct parsed *ps)
{
    static char tok[1024][80];
    memset(ps, 0, sizeof(*ps));
    size_t n = tokenize(sql, tok, 1024);
    bool is_where = false;
    for (size_t i = 0; i < n; i++) {
        const char *t = tok[i];
        if (strcasecmp(t, "LIMIT") == 0)
            ps->has_limit = true;
        if ((strcasecmp(t, "FROM") == 0 || strcasecmp(t, "JOIN") == 0 ||
             strcasecmp(t, "UPDATE") == 0 || strcasecmp(t, "INTO") == 0) &&
            i + 1 < n && is_column_ref(tok[i + 1]) && ps->n_al < 16) {
            struct alias *a = &ps->al[ps->n_al++];
            snprintf(a->table, sizeof(a->table), "%s", tok[i + 1]);
            bool has_alias = i + 2 < n && is_column_ref(tok[i + 2]);
            snprintf(a->alias, sizeof(a->alias), "%s", has_alias ? tok[i + 2] : tok[i + 1]);
        }
        if (strcasecmp(t, "WHERE") == 0)
            is_where = true;
        else if (strcasecmp(t, "ON") == 0)
            is_where = !(i + 1 < n && strcasecmp(tok[i + 1], "CONFLICT") == 0);
        else if (strcasecmp(t, "SET") == 0 || strcasecmp(t, "ORDER") == 0)
            is_where = false;
        if (!is_where || strcmp(t, "=") != 0 || i == 0 || i + 1 >= n)
            continue;
        /* "(?1 IS NULL OR col = ?1)": an optional filter, no index can use it. */
        if (i >= 2 && strcasecmp(tok[i - 2], "OR") == 0)
            continue;
        /* "col = f(col)": a filter on the row, not a value to seek. */
        if (i + 3 < n && strcmp(tok[i + 2], "(") == 0 && strcmp(tok[i + 3], tok[i - 1]) == 0)
            continue;
        bool is_join = is_column_ref(tok[i - 1]) && is_column_ref(tok[i + 1]);
        if (is_column_ref(tok[i - 1]))
            add_eq(ps, tok[i - 1], is_join ? tok[i + 1] : NULL);
        if (is_column_ref(tok[i + 1]))
            add_eq(ps, tok[i + 1], is_join ? tok[i - 1] : NULL);
    }
}

static const char *table_of(const struct parsed *ps, const char *name)
{
    for (size_t i = 0; i < ps->n_al; i++) {
        if (strcmp(ps->al[i].alias, name) == 0)
            return ps->al[i].table;
    }
    for (size_t i = 0; i < ps->n_al; i++) {
        if (strcmp(ps->al[i].table, name) == 0)
            return ps->al[i].table;
    }
    return name;
}

static bool table_has_column(sqlite3 *db, const char *table, const char *col)
{
    char sql[256];
    snprintf(sql, sizeof(sql), "SELECT 1 FROM pragma_table_info('%s') WHERE name = '%s'", table,
             col);
    sqlite3_stmt *s;
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &s, NULL), SQLITE_OK);
    bool has = sqlite3_step(s) == SQLITE_ROW;
    sqlite3_finalize(s);
    return has;
}

/* Is column col of the table known as `name` in the statement bound by equality? */
static bool is_bound(sqlite3 *db, const struct parsed *ps, const char *name, const char *col)
{
    const char *table = table_of(ps, name);
    for (size_t i = 0; i < ps->n_eq; i++) {
        const struct eq_col *c = &ps->eq[i];
        if (strcmp(c->col, col) != 0)
            continue;
        /* A join equality binds the inner side only: the other table must come first. */
        if (c->other[0] != '\0') {
            bool is_outer_known = false;
            for (size_t j = 0; j < ps->n_outer && !is_outer_known; j++)
                is_outer_known = strcmp(ps->outer[j], c->other) == 0 ||
                                 strcmp(table_of(ps, ps->outer[j]), c->other) == 0;
            if (!is_outer_known)
                continue;
        }
        if (c->qual[0] != '\0') {
            if (strcmp(c->qual, name) == 0 || strcmp(c->qual, table) == 0)
                return true;
        } else if (table_has_column(db, table, col)) {
            return true;
        }
    }
    return false;
}

/* Can the statement use partial index idx? Yes when the index's WHERE is "col IS NOT NULL"
 * with col bound by equality, or appears word for word in the statement. */
static bool is_partial_usable(sqlite3 *db, const struct parsed *ps, const char *name,
                              const char *stmt_sql, const char *idx)
{
    char sql[256];
    snprintf(sql, sizeof(sql), "SELECT sql FROM sqlite_schema WHERE name = '%s'", idx);
    sqlite3_stmt *s;
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &s, NULL), SQLITE_OK);
    bool is_usable = false;
    const char *where = NULL;
    if (sqlite3_step(s) == SQLITE_ROW)
        where = strstr((const char *)sqlite3_column_text(s, 0), " WHERE ");
    if (where != NULL) {
        where += 7;
        char col[64];
        size_t col_len = strspn(where, "abcdefghijklmnopqrstuvwxyz_");
        snprintf(col, sizeof(col), "%.*s", (int)col_len, where);
        if (col_len > 0 && strcmp(where + col_len, " IS NOT NULL") == 0)
            is_usable = is_bound(db, ps, name, col);
        else
            is_usable = strstr(stmt_sql, where) != NULL;
    }
    sqlite3_finalize(s);
    return is_usable;
}

/* The best equality prefix any index of the table usable by the statement offers. */
static int best_prefix(sqlite3 *db, const struct parsed *ps, const char *name,
                       const char *stmt_sql, char *best_idx, size_t best_idx_len)
{
    const char *table = table_of(ps, name);
    int best = 0;
    char sql[256];
    snprintf(sql, sizeof(sql), "SELECT name, partial FROM pragma_index_list('%s')", table);
    sqlite3_stmt *s;
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &s, NULL), SQLITE_OK);
    while (sqlite3_step(s) == SQLITE_ROW) {
        const char *idx = (const char *)sqlite3_column_text(s, 0);
        if (sqlite3_column_int(s, 1) != 0 && !is_partial_usable(db, ps, name, stmt_sql, idx))
            continue;
        snprintf(sql, sizeof(sql), "SELECT name FROM pragma_index_info('%s') ORDER BY seqno",
                 idx);
        sqlite3_stmt *c;
        assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &c, NULL), SQLITE_OK);
        int k = 0;
        /* An expression column (no name) ends the prefix this checker can judge. */
        while (sqlite3_step(c) == SQLITE_ROW && sqlite3_column_text(c, 0) != NULL &&
               is_bound(db, ps, name, (const char *)sqlite3_column_text(c, 0)))
            k++;
        sqlite3_finalize(c);
        if (k > best) {
            best = k;
            snprintf(best_idx, best_idx_len, "%s", idx);
        }
    }
    sqlite3_finalize(s);
    /* A rowid alias (INTEGER PRIMARY KEY of a rowid table) is a unique key of one column. */
    snprintf(sql, sizeof(sql),
             "SELECT name FROM pragma_table_info('%s') WHERE pk = 1 AND type = 'INTEGER'"
             " AND (SELECT count(*) FROM pragma_table_info('%s') WHERE pk > 0) = 1",
             table, table);
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &s, NULL), SQLITE_OK);
    if (sqlite3_step(s) == SQLITE_ROW &&
        is_bound(db, ps, name, (const char *)sqlite3_column_text(s, 0)) && best < 1) {
        best = 1;
        snprintf(best_idx, best_idx_len, "rowid");
    }
    sqlite3_finalize(s);
    return best;
}

/* Is the argument of the statement's min() or max() the rowid alias or the first column of
 * an index of the table known as name? */
static bool is_minmax_indexed(sqlite3 *db, const struct parsed *ps, const char *sql,
                              const char *name)
{
    const char *p = strstr(sql, "max(");
    if (p == NULL)
        p = strstr(sql, "min(");
    if (p == NULL)
        return false;
    p += 4;
    const char *dot = p + strcspn(p, ".)");
    if (*dot == '.')
        p = dot + 1;
    char col[64];
    snprintf(col, sizeof(col), "%.*s", (int)strcspn(p, ")"), p);
    const char *table = table_of(ps, name);
    char q[512];
    snprintf(q, sizeof(q),
             "SELECT 1 FROM pragma_table_info('%s') WHERE name = '%s' AND pk = 1 AND type ="
             " 'INTEGER' UNION ALL SELECT 1 FROM pragma_index_list('%s') l WHERE l.partial = 0"
             " AND (SELECT name FROM pragma_index_info(l.name) WHERE seqno = 0) = '%s'",
             table, col, table, col);
    sqlite3_stmt *s;
    assert_int_equal(sqlite3_prepare_v2(db, q, -1, &s, NULL), SQLITE_OK);
    bool is_indexed = sqlite3_step(s) == SQLITE_ROW;
    sqlite3_finalize(s);
    return is_indexed;
}

/* Unique index name of table with exactly k key columns? ("" = the primary key) */
static bool is_unique_point(sqlite3 *db, const char *table, const char *idx, int k)
{
    char sql[512];
    if (idx[0] == '\0')
        snprintf(sql, sizeof(sql),
                 "SELECT (SELECT count(*) FROM pragma_index_info(l.name)) FROM"
                 " pragma_index_list('%s') l WHERE l.origin = 'pk'",
                 table);
    else
        snprintf(sql, sizeof(sql),
                 "SELECT (SELECT count(*) FROM pragma_index_info(l.name)) FROM"
                 " pragma_index_list('%s') l WHERE l.name = '%s' AND l.[unique] = 1",
                 table, idx);
    sqlite3_stmt *s;
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &s, NULL), SQLITE_OK);
    bool is_point = sqlite3_step(s) == SQLITE_ROW && sqlite3_column_int(s, 0) == k;
    sqlite3_finalize(s);
    return is_point;
}

static int count_eq(const char *cons)
{
    int k = 0;
    for (const char *p = strstr(cons, "=?"); p != NULL; p = strstr(p + 2, "=?")) {
        if (p > cons && (p[-1] == '<' || p[-1] == '>'))
            continue;
        k++;
    }
    return k;
}

/* Is the index a SCAN line walks a partial one? SQLite uses a partial index only when the
 * statement's WHERE implies the index's, so walking it visits only rows the statement wants
 * (uploads_single: the sessions of monolithic POSTs, nothing else). */
static bool scans_partial_index(sqlite3 *db, const char *table, const char *detail)
{
    const char *at = strstr(detail, " INDEX ");
    if (at == NULL)
        return false;
    char idx[64];
    snprintf(idx, sizeof(idx), "%.*s", (int)strcspn(at + 7, " "), at + 7);
    char sql[256];
    snprintf(sql, sizeof(sql),
             "SELECT 1 FROM pragma_index_list('%s') WHERE name = '%s' AND partial = 1", table,
             idx);
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(db, sql, -1, &s, NULL) != SQLITE_OK)
        return false;
    bool is_partial = sqlite3_step(s) == SQLITE_ROW;
    sqlite3_finalize(s);
    return is_partial;
}

/* During the "one repository" pass: the table that holds one row, so a scan of it is one
 * row (what such a plan costs besides, a sort of every match, is still caught), and its
 * alias inside the tags view. */
static const char *one_row_table;
static const char *one_row_view_alias;

/* Checks one EXPLAIN QUERY PLAN line; on a violation writes why into why. */
static bool line_ok(sqlite3 *db, struct parsed *ps, const char *sql, const char *detail,
                    char *why, size_t why_len)
{
    if (strncmp(detail, "SCAN ", 5) == 0) {
        if (strcmp(detail, "SCAN CONSTANT ROW") == 0 || detail[5] == '(')
            return true;
        char name[64];
        snprintf(name, sizeof(name), "%.*s", (int)strcspn(detail + 5, " "), detail + 5);
        const char *ok_table = allowed_table(sql);
        if ((ok_table != NULL && strcmp(table_of(ps, name), ok_table) == 0) ||
            (one_row_table != NULL && (strcmp(table_of(ps, name), one_row_table) == 0 ||
                                       strcmp(name, one_row_view_alias) == 0))) {
            if (ps->n_outer < 16)
                snprintf(ps->outer[ps->n_outer++], sizeof(ps->outer[0]), "%s", name);
            return true;
        }
        if (scans_partial_index(db, table_of(ps, name), detail))
            return true;
        snprintf(why, why_len, "full scan: %s", detail);
        return false;
    }
    if (strstr(detail, "AUTOMATIC") != NULL) {
        snprintf(why, why_len, "automatic index: %s", detail);
        return false;
    }
    /* A side of a compound select's merge sorts only the ties of its leading sort term
     * ("RIGHT PART"): its rows come in that term's order, and the LIMIT ends the merge.
     * Elsewhere a right-part sort may cover every match (a leading term fixed by an
     * equality). */
    if (strncmp(detail, "USE TEMP B-TREE", 15) == 0 && ps->has_limit &&
        !(ps->is_merge_side && strstr(detail, "RIGHT PART OF ORDER BY") != NULL)) {
        snprintf(why, why_len, "sorts every match before its LIMIT: %s", detail);
        return false;
    }
    if (strncmp(detail, "SEARCH ", 7) != 0)
        return true;
    char name[64] = "", idx[128] = "";
    const char *p = detail + 7;
    size_t nl = strcspn(p, " ");
    snprintf(name, sizeof(name), "%.*s", (int)nl, p);
    /* A bare "SEARCH t" is the min()/max() shortcut: one seek only if the column leads an
     * index (or is the rowid); otherwise SQLite reads the whole table. */
    if (strstr(detail, " USING ") == NULL) {
        if (!is_minmax_indexed(db, ps, sql, name)) {
            snprintf(why, why_len, "min()/max() of an unindexed column reads every row: %s",
                     detail);
            return false;
        }
        return true;
    }
    const char *cons = strchr(detail, '(');
    cons = cons != NULL ? cons : "";
    int k = count_eq(cons);
    const char *use = strstr(detail, " INDEX ");
    bool is_rowid = strstr(detail, "INTEGER PRIMARY KEY") != NULL;
    if (use != NULL) {
        use += 7;
        snprintf(idx, sizeof(idx), "%.*s", (int)strcspn(use, " "), use);
    }
    const char *table = table_of(ps, name);
    bool ok = true;
    if ((is_rowid && k == 1) || (!is_rowid && is_unique_point(db, table, idx, k)))
        goto out;
    char best_idx[128] = "";
    int best = best_prefix(db, ps, name, sql, best_idx, sizeof(best_idx));
    if (k < best) {
        snprintf(why, why_len, "prefix-only search: %s binds %d column(s), %s would bind %d",
                 detail, k, best_idx, best);
        ok = false;
    }
out:
    if (ps->n_outer < 16)
        snprintf(ps->outer[ps->n_outer++], sizeof(ps->outer[0]), "%s", name);
    return ok;
}


static bool is_planned(const char *sql)
{
    while (isspace((unsigned char)*sql))
        sql++;
    return strncasecmp(sql, "SELECT", 6) == 0 || strncasecmp(sql, "INSERT", 6) == 0 ||
           strncasecmp(sql, "UPDATE", 6) == 0 || strncasecmp(sql, "DELETE", 6) == 0 ||
           strncasecmp(sql, "WITH", 4) == 0;
}

/* Plans sql; returns the number of violations (printed). */
static int check_statement(sqlite3 *db, const char *label, const char *sql, const char *state)
{
    if (!is_planned(sql))
        return 0;
    char *eqp = sqlite3_mprintf("EXPLAIN QUERY PLAN %s", sql);
    sqlite3_stmt *s;
    int rc = sqlite3_prepare_v2(db, eqp, -1, &s, NULL);
    sqlite3_free(eqp);
    if (rc != SQLITE_OK) {
        print_error("%s: cannot plan (%s): %s\n", label, sqlite3_errmsg(db), sql);
        return 1;
    }
    struct parsed ps;
    parse_sql(sql, &ps);
    int bad = 0;
    while (sqlite3_step(s) == SQLITE_ROW) {
        const char *detail = (const char *)sqlite3_column_text(s, 3);
        /* Each side of a compound select joins its own tables, from none. */
        if (strcmp(detail, "LEFT") == 0 || strcmp(detail, "RIGHT") == 0 ||
            strcmp(detail, "LEFT-MOST SUBQUERY") == 0 || strncmp(detail, "UNION", 5) == 0)
            ps.n_outer = 0;
        if (strcmp(detail, "LEFT") == 0 || strcmp(detail, "RIGHT") == 0)
            ps.is_merge_side = true; /* "MERGE (UNION ALL)" names its sides so */
        if (getenv("QUERY_PLANS_PRINT") != NULL)
            print_message("%s (%s): %s\n", label, state, detail);
        char why[512];
        if (!line_ok(db, &ps, sql, detail, why, sizeof(why))) {
            print_error("%s (%s): %s\n    %s\n", label, state, why, sql);
            bad++;
        }
    }
    sqlite3_finalize(s);
    return bad;
}

/* A page of the tag list starts where its `last` is, in the list's case-insensitive order,
 * on both sides of its merge (a range after the repository), not at the repository's first
 * tag: the checker above counts only equalities, which the repository alone satisfies. */
static bool tag_page_seeks(sqlite3 *db)
{
    const char *id;
    const char *sql = NULL;
    for (size_t i = 0; (sql = metastore_sqlite_statement(i, &id)) != NULL; i++) {
        if (strcmp(id, "TAG_LIST") == 0)
            break;
    }
    assert_non_null(sql);
    char *eqp = sqlite3_mprintf("EXPLAIN QUERY PLAN %s", sql);
    sqlite3_stmt *s;
    assert_int_equal(sqlite3_prepare_v2(db, eqp, -1, &s, NULL), SQLITE_OK);
    sqlite3_free(eqp);
    bool is_merged = false, seeks_key = false, seeks_cased = false;
    while (sqlite3_step(s) == SQLITE_ROW) {
        const char *detail = (const char *)sqlite3_column_text(s, 3);
        is_merged |= strcmp(detail, "MERGE (UNION ALL)") == 0;
        seeks_key |= strstr(detail, "USING INDEX tag_regs_lower (repo=? AND name>?)") != NULL;
        seeks_cased |= strstr(detail, "USING INDEX tag_regs_cased (repo=? AND <expr>>?)") != NULL;
    }
    sqlite3_finalize(s);
    return is_merged && seeks_key && seeks_cased;
}

/* Every statement, in the current statistics state of db. */
static int check_all(sqlite3 *db, const char *state)
{
    int bad = 0;
    const char *id;
    const char *sql;
    for (size_t i = 0; (sql = metastore_sqlite_statement(i, &id)) != NULL; i++)
        bad += check_statement(db, id, sql, state);
    for (size_t i = 0; i < seen.n; i++)
        bad += check_statement(db, "per-call", seen.sql[i], state);
    return bad;
}

struct fixture {
    char dir[64];
    char path[96];
    struct metastore *ms;
    sqlite3 *db;
};

static int setup(void **state)
{
    struct fixture *f = xcalloc(1, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "/tmp/meridian-qp-XXXXXX");
    if (mkdtemp(f->dir) == NULL)
        return -1;
    snprintf(f->path, sizeof(f->path), "%s/meta.db", f->dir);
    /* The schema is made first, untraced: migration steps run once per database, and a
     * step's statements may name tables that a later step renames. */
    struct err e = {0};
    f->ms = metastore_sqlite_open(f->path, REGION, &e);
    if (f->ms == NULL)
        return -1;
    f->ms->ops->close(f->ms);
    metastore_sqlite_trace(on_statement, NULL);
    f->ms = metastore_sqlite_open(f->path, REGION, &e);
    if (f->ms == NULL)
        return -1;
    if (sqlite3_open(f->path, &f->db) != SQLITE_OK)
        return -1;
    sqlite3_busy_timeout(f->db, 10000);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    metastore_sqlite_trace(NULL, NULL);
    sqlite3_close(f->db);
    f->ms->ops->close(f->ms);
    nftw(f->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    for (size_t i = 0; i < seen.n; i++)
        free(seen.sql[i]);
    FREE_AND_NULL(seen.sql);
    seen.n = 0;
    free(f);
    return 0;
}

static void test_every_statement_is_bounded(void **state)
{
    struct fixture *f = *state;
    workload(f->ms);
    assert_true(seen.n > 20); /* the observer saw the per-call statements */
    char *err = NULL;
    int rc = sqlite3_exec(f->db, seed_sql, NULL, NULL, &err);
    if (rc != SQLITE_OK)
        print_error("seed: %s\n", err);
    sqlite3_free(err);
    assert_int_equal(rc, SQLITE_OK);

    /* A fresh database has no statistics: the plans must be right without them. */
    sqlite3_exec(f->db, "DROP TABLE IF EXISTS sqlite_stat1", NULL, NULL, NULL);
    int bad_fresh = check_all(f->db, "no statistics");
    assert_true(tag_page_seeks(f->db));
    /* ... and once ANALYZE has run as the store runs it (at open, then PRAGMA optimize). */
    assert_int_equal(sqlite3_exec(f->db, "PRAGMA analysis_limit = 400; ANALYZE", NULL, NULL,
                                  NULL),
                     SQLITE_OK);
    int bad_analyzed = check_all(f->db, "analyzed");
    assert_true(tag_page_seeks(f->db));
    /* ... and in a registry of one repository, whose statistics (PRAGMA optimize) say so:
     * a scan of that one row must not cost a sort of the repository's whole tag list
     * before each page. */
    assert_int_equal(sqlite3_exec(f->db,
                                  "DELETE FROM sqlite_stat1 WHERE tbl = 'repos';"
                                  " INSERT INTO sqlite_stat1 VALUES"
                                  " ('repos', 'sqlite_autoindex_repos_1', '1 1');"
                                  " ANALYZE sqlite_schema",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    one_row_table = "repos";
    one_row_view_alias = "r";
    int bad_one_repo = check_all(f->db, "one repository");
    assert_true(tag_page_seeks(f->db));
    one_row_table = NULL;
    assert_int_equal(bad_fresh, 0);
    assert_int_equal(bad_analyzed, 0);
    assert_int_equal(bad_one_repo, 0);
}

/* The checker itself: the statement of issue 21, with the plan it had, is caught. */
static void test_checker_catches_prefix_only_search(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(sqlite3_exec(f->db, seed_sql, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_exec(f->db, "DROP TABLE IF EXISTS sqlite_stat1", NULL, NULL, NULL);
    const char *issue21 = "SELECT name, hlc, origin FROM tag_regs WHERE repo = ?1 AND digest = ?2";
    assert_int_equal(check_statement(f->db, "issue 21", issue21, "no statistics"), 1);
    assert_int_equal(check_statement(f->db, "scan", "SELECT name FROM tags WHERE digest = ?1",
                                     "no statistics"),
                     1);
    assert_int_equal(check_statement(f->db, "sort before limit",
                                     "SELECT name FROM tag_regs WHERE repo = ?1"
                                     " ORDER BY hlc LIMIT 10",
                                     "no statistics"),
                     1);
    assert_int_equal(check_statement(f->db, "log scan", "SELECT max(hlc) FROM events",
                                     "no statistics"),
                     1);
    assert_int_equal(check_statement(f->db, "clock seed as first written",
                                     "SELECT max(e.hlc) FROM vv JOIN events e"
                                     " ON e.origin = vv.origin AND e.origin_seq = vv.seq",
                                     "no statistics"),
                     1);
    assert_int_equal(check_statement(f->db, "log head", "SELECT max(seq) FROM events",
                                     "no statistics"),
                     0);
    assert_int_equal(check_statement(f->db, "point", "SELECT digest FROM tags"
                                     " WHERE repo_id = ?1 AND name = ?2", "no statistics"),
                     0);
}

/* A delete of a parent row looks up its children by the foreign key's columns: each foreign
 * key needs an index that starts with them, or the delete scans the child table. */
static void test_foreign_keys_are_indexed(void **state)
{
    struct fixture *f = *state;
    sqlite3_stmt *t;
    assert_int_equal(sqlite3_prepare_v2(f->db, "SELECT name FROM sqlite_schema WHERE type ="
                                               " 'table' AND name NOT LIKE 'sqlite_%'",
                                        -1, &t, NULL),
                     SQLITE_OK);
    int bad = 0;
    while (sqlite3_step(t) == SQLITE_ROW) {
        const char *table = (const char *)sqlite3_column_text(t, 0);
        char sql[512];
        /* One row per foreign key: its child columns in order, comma-separated. */
        snprintf(sql, sizeof(sql),
                 "SELECT group_concat(\"from\", ',') FROM (SELECT id, \"from\" FROM"
                 " pragma_foreign_key_list('%s') ORDER BY id, seq) GROUP BY id",
                 table);
        sqlite3_stmt *fk;
        assert_int_equal(sqlite3_prepare_v2(f->db, sql, -1, &fk, NULL), SQLITE_OK);
        while (sqlite3_step(fk) == SQLITE_ROW) {
            const char *cols = (const char *)sqlite3_column_text(fk, 0);
            snprintf(sql, sizeof(sql),
                     "SELECT 1 FROM pragma_index_list('%s') l WHERE l.partial = 0 AND"
                     " substr((SELECT group_concat(name, ',') FROM (SELECT name FROM"
                     " pragma_index_info(l.name) ORDER BY seqno)) || ',', 1, length('%s') + 1)"
                     " = '%s,'",
                     table, cols, cols);
            sqlite3_stmt *ix;
            assert_int_equal(sqlite3_prepare_v2(f->db, sql, -1, &ix, NULL), SQLITE_OK);
            if (sqlite3_step(ix) != SQLITE_ROW) {
                print_error("foreign key %s(%s) has no index\n", table, cols);
                bad++;
            }
            sqlite3_finalize(ix);
        }
        sqlite3_finalize(fk);
    }
    sqlite3_finalize(t);
    assert_int_equal(bad, 0);
}

int main(void)
{
    log_setup(LOG_LEVEL_ERROR, REGION);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_every_statement_is_bounded, setup, teardown),
        cmocka_unit_test_setup_teardown(test_checker_catches_prefix_only_search, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_foreign_keys_are_indexed, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
