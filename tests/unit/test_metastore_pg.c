/* The PostgreSQL metastore (metastore_pg.c) on the server named by env MERIDIAN_TEST_PG
 * (skipped with a message without one; scripts/test.sh starts one). Each test gets its own
 * schema (search_path in the connection string). Nodes starting at once on a fresh
 * database: one creates the schema under the migration lock, the others find it. Every
 * statement of the table prepares in PostgreSQL's spelling against that schema. A push
 * (blobs, manifest, tag) reads back through the same calls as on SQLite, and its event
 * lands in the log. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "digest.h"
#include "metastore.h"
#include "metastore_sqlite_int.h"
#include "util.h"

static char target[1024];

/* A fresh schema of its own for the test, and the target that selects it. */
static int setup(void **state)
{
    (void)state;
    const char *base = getenv("MERIDIAN_TEST_PG");
    struct sql_db *db = NULL;
    struct err e = {0};
    if (sql_pg_driver.open(base, &db, &e) != 0)
        return -1;
    int rc = sql_pg_driver.exec(db, "DROP SCHEMA IF EXISTS unit_pg CASCADE; CREATE SCHEMA unit_pg");
    sql_pg_driver.close(db);
    snprintf(target, sizeof(target), "%s%soptions=-csearch_path%%3Dunit_pg", base,
             strchr(base, '?') != NULL ? "&" : "?");
    return rc == SQL_OK ? 0 : -1;
}

static void *open_one(void *arg)
{
    struct err e = {0};
    struct metastore *ms = metastore_pg_open(target, "r1", &e);
    *(bool *)arg = ms != NULL;
    if (ms != NULL)
        ms->ops->close(ms);
    return NULL;
}

static void test_nodes_start_at_once(void **state)
{
    (void)state;
    enum { N = 4 };
    pthread_t t[N];
    bool ok[N] = {false};
    for (int i = 0; i < N; i++)
        AZ(pthread_create(&t[i], NULL, open_one, &ok[i]));
    for (int i = 0; i < N; i++) {
        AZ(pthread_join(t[i], NULL));
        assert_true(ok[i]);
    }
    struct err e = {0};
    struct metastore *ms = metastore_pg_open(target, "r1", &e);
    assert_non_null(ms);
    assert_string_equal(ms->ops->name, "postgres");
    struct sq_conn *c = sq_conn_of(ms, &e);
    struct sql_stmt *s = NULL;
    assert_int_equal(sq_run(c, "SELECT count(*), max(version) FROM meridian_schema", &s, &e, ""),
                     SQL_ROW);
    assert_int_equal(sql_col_int64(s, 0), 1);
    assert_int_equal(sql_col_int64(s, 1), 3); /* schema version 3: untagged manifests */
    sql_finalize(s);
    ms->ops->close(ms);
}

static void test_every_statement_prepares(void **state)
{
    (void)state;
    struct err e = {0};
    struct metastore *ms = metastore_pg_open(target, "r1", &e);
    assert_non_null(ms);
    struct sq_conn *c = sq_conn_of(ms, &e);
    int failed = 0;
    for (int i = 0; i < SQ_STMT_COUNT_; i++) {
        const char *sql = sq_statement_text(SQL_DIALECT_POSTGRES, (enum sq_stmt)i);
        struct sql_stmt *s = NULL;
        int rc = c->db->drv->prepare(c->db, sql, false, &s);
        if (rc != SQL_OK) {
            struct err pe = {0};
            sq_db_fail(c, rc, sq_statement_name((enum sq_stmt)i), sql, &pe);
            failed++;
        }
        sql_finalize(s);
    }
    assert_int_equal(failed, 0);
    ms->ops->close(ms);
}

static void test_push_reads_back(void **state)
{
    (void)state;
    struct err e = {0};
    struct metastore *ms = metastore_pg_open(target, "r1", &e);
    assert_non_null(ms);
    const char *layer = "layer bytes";
    struct meta_ref ref = {0};
    digest_of_buffer(DIGEST_SHA256, layer, strlen(layer), &ref.digest);
    ref.size = (int64_t)strlen(layer);
    assert_int_equal(ms->ops->blob_link(ms, "lib/app", &ref.digest, ref.size, &e), 0);
    char body[] = "{\"schemaVersion\":2,\"x\":\"\\u0000\"}";
    struct meta_manifest m = {.media_type = "application/vnd.oci.image.manifest.v1+json",
                              .body = body, .body_len = sizeof(body) - 1};
    digest_of_buffer(DIGEST_SHA256, body, m.body_len, &m.digest);
    assert_int_equal(ms->ops->manifest_put(ms, "lib/app", &m, &ref, 1, NULL, "v1", &e), 0);

    struct meta_manifest got = {0};
    assert_int_equal(ms->ops->manifest_get(ms, "lib/app", "v1", &got, &e), 0);
    assert_int_equal(got.body_len, m.body_len);
    assert_memory_equal(got.body, body, m.body_len);
    assert_string_equal(got.digest.str, m.digest.str);
    meta_manifest_fini(&got);

    struct meta_name_list tags = {0};
    assert_int_equal(ms->ops->tag_list(ms, "lib/app", NULL, -1, &tags, &e), 0);
    assert_int_equal(tags.n, 1);
    assert_string_equal(tags.names[0], "v1");
    meta_name_list_fini(&tags);
    struct meta_name_list repos = {0};
    assert_int_equal(ms->ops->repo_list(ms, NULL, -1, &repos, &e), 0);
    assert_int_equal(repos.n, 1);
    meta_name_list_fini(&repos);

    struct buf out;
    buf_init(&out, 1 << 20);
    int64_t last = 0;
    assert_int_equal(ms->ops->events_since(ms, 0, 100, &out, &last, &e), 0);
    assert_true(last >= 1);
    assert_non_null(memmem(out.data, out.len, "manifest_put", 12));
    buf_fini(&out);
    ms->ops->close(ms);
}

int main(void)
{
    const char *uri = getenv("MERIDIAN_TEST_PG");
    if (uri == NULL || uri[0] == '\0') {
        printf("[  SKIPPED ] PostgreSQL metastore: MERIDIAN_TEST_PG is not set\n");
        return 0;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_nodes_start_at_once, setup),
        cmocka_unit_test_setup(test_every_statement_prepares, setup),
        cmocka_unit_test_setup(test_push_reads_back, setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
