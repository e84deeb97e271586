/* SQL metastore (backend-neutral): access control (authz.c): identities, role bindings, the audit log
 * and upload-session owners. Region-local rows, no event rows. */

#include <inttypes.h>
#include <jansson.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "log.h"
#include "metastore_sqlite_int.h"
#include "residency.h"
#include "util.h"

/* ==========================================================================
 * Access control (authz.c): identities, role bindings, the audit log and upload
 * session owners. Identities and bindings replicate (see "Registry-wide identities"
 * below); the audit log and upload owners are region-local. Like the webhook deliveries
 * (meta_webhooks.c), the tables are created idempotently at open (metastore_sqlite.c) and
 * the statements prepared per call, but for the two whose spelling differs per dialect
 * (SQ_ROLE_BIND, SQ_UPLOAD_OWNER_SET) (none of them is on the hot path: authz.c keeps a snapshot of
 * identities and bindings in memory and polls the generation).
 * XXX: fold into the next schema migration and SQ_STATEMENTS when the schema settles.
 *
 *   identities:     name | kind user/robot | secret_hash | description | created_ms
 *                   | expires_s (0 = never)
 *   role_bindings:  (subject, role, pattern) | created_ms
 *   auth_meta:      k = 'generation' -> v, bumped by every identity, binding or residency
 *                   policy change
 *   audit_log:      id (increasing) | time_ms | actor | action | target | status
 *                   | remote | detail | count | last_ms (count, last_ms: schema v3; the
 *                   table itself is created by schema_v3_audit, so that its columns are
 *                   defined in one place)
 *   upload_owners:  upload id -> owner; rows whose session is gone are not counted and
 *                   are pruned when a new owner row is written
 * ========================================================================== */

static int bump_generation(struct sq_conn *c, struct err *e)
{
    return sq_run_exec(c, "UPDATE auth_meta SET v = v + 1 WHERE k = 'generation'", e, "");
}

int sq_access_on_policy_write(struct sq_conn *c, const char *kind, struct err *e)
{
    return strcmp(kind, RESIDENCY_KIND) == 0 ? bump_generation(c, e) : 0;
}

/* Registry-wide identities ------------------------------------------------------
 *
 * Identities and role bindings replicate like the other replicated objects: every change
 * here also writes the object row (kind "identity", key name; kind "role_binding", key
 * "subject role pattern") and its object_put / object_delete event in the same
 * transaction, and a peer's event that wins the object's last-writer-wins register
 * (meta_merge.c) is applied back to these tables by sq_access_on_object. The tables stay
 * what authz.c reads; the objects are what crosses a link. An identity's object carries
 * the Argon2id hash of its secret, never the secret.
 *
 * The bootstrap admin and the identities that existed before this (published at open by
 * sq_access_publish_local) are written at the lowest clock (SQ_ACCESS_LOW_HLC): any
 * deliberate write anywhere wins over them, so a new region joining a registry never
 * replaces the registry's admin with its own bootstrap one. */

static int publish_object(struct sq_conn *c, const char *kind, const char *key, json_t *value,
                          int64_t hlc, struct err *e)
{
    json_t *p = json_pack("{s:s}", "kind", kind);
    if (value != NULL)
        json_object_set(p, "value", value);
    char *payload = json_dumps(p, JSON_COMPACT);
    char *value_json = value != NULL ? json_dumps(value, JSON_COMPACT) : NULL;
    json_decref(p);
    int rc = sq_exec(c, SQ_OBJ_SET, e, "tttiti", kind, key, value_json, hlc, c->store->region,
                     (int64_t)(value == NULL));
    if (rc == 0)
        rc = sq_event_append_clock(c, value != NULL ? "object_put" : "object_delete", NULL, key,
                                   NULL, payload, hlc, e);
    free(payload);
    free(value_json);
    return rc;
}

/* Publishes identity name as it now is in the table (a tombstone when absent). */
static int publish_identity(struct sq_conn *c, const char *name, int64_t hlc, struct err *e)
{
    struct sql_stmt *s;
    int rc = sq_run(c,
                    "SELECT kind, secret_hash, description, created_ms, expires_s"
                    " FROM identities WHERE name = ?1",
                    &s, e, "t", name);
    if (rc < 0)
        return -1;
    json_t *v = NULL;
    if (rc == SQL_ROW) {
        v = json_pack("{s:s,s:s,s:I,s:I}", "kind", (const char *)sql_col_text(s, 0), "secretHash",
                      (const char *)sql_col_text(s, 1), "createdMs",
                      (json_int_t)sql_col_int64(s, 3), "expiresS", (json_int_t)sql_col_int64(s, 4));
        if (sql_col_text(s, 2) != NULL)
            json_object_set_new(v, "description", json_string((const char *)sql_col_text(s, 2)));
    }
    sql_finalize(s);
    rc = publish_object(c, SQ_ACCESS_IDENTITY_KIND, name, v, hlc, e);
    json_decref(v);
    return rc;
}

static void binding_key(const char *subject, const char *role, const char *pattern, struct buf *b)
{
    buf_printf(b, "%s %s %s", subject, role, pattern); /* no name or pattern has a space */
}

static int publish_binding(struct sq_conn *c, const char *subject, const char *role,
                           const char *pattern, bool is_bound, int64_t hlc, struct err *e)
{
    struct buf k;
    buf_init(&k, 4096);
    binding_key(subject, role, pattern, &k);
    json_t *v = is_bound ? json_pack("{s:s,s:s,s:s,s:I}", "subject", subject, "role", role,
                                     "pattern", pattern, "createdMs", (json_int_t)util_now_ms())
                         : NULL;
    int rc = publish_object(c, SQ_ACCESS_BINDING_KIND, k.data, v, hlc, e);
    json_decref(v);
    buf_fini(&k);
    return rc;
}

/* Applies the winning value of a replicated identity or binding to the tables (called
 * by merge_object inside its transaction). Other kinds: nothing. */
int sq_access_on_object(struct sq_conn *c, const char *kind, const char *key,
                        const char *value_json, const char *origin, struct err *e)
{
    bool is_identity = strcmp(kind, SQ_ACCESS_IDENTITY_KIND) == 0;
    if (!is_identity && strcmp(kind, SQ_ACCESS_BINDING_KIND) != 0)
        return 0;
    json_error_t je;
    json_t *v = value_json != NULL ? json_loads(value_json, 0, &je) : NULL;
    int rc = -1;
    if (is_identity) {
        const char *ik = json_string_value(json_object_get(v, "kind"));
        const char *hash = json_string_value(json_object_get(v, "secretHash"));
        if (v != NULL &&
            (ik == NULL || hash == NULL || (strcmp(ik, "user") != 0 && strcmp(ik, "robot") != 0))) {
            err_set(e, ERR_BAD_REQUEST, "malformed identity object %s", key);
            goto out;
        }
        if (sq_run_exec(c, "DELETE FROM identities WHERE name = ?1", e, "t", key) != 0)
            goto out;
        if (v != NULL &&
            sq_run_exec(c,
                        "INSERT INTO identities(name, kind, secret_hash, description,"
                        " created_ms, expires_s) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                        e, "ttttii", key, ik, hash,
                        json_string_value(json_object_get(v, "description")),
                        (int64_t)json_integer_value(json_object_get(v, "createdMs")),
                        (int64_t)json_integer_value(json_object_get(v, "expiresS"))) != 0)
            goto out;
    } else {
        char subject[512], role[64], pattern[1024];
        if (strlen(key) >= sizeof(pattern) ||
            sscanf(key, "%511s %63s %1023s", subject, role, pattern) != 3) {
            err_set(e, ERR_BAD_REQUEST, "malformed role binding key %s", key);
            goto out;
        }
        if (sq_run_exec(c,
                        "DELETE FROM role_bindings WHERE subject = ?1 AND role = ?2"
                        " AND pattern = ?3",
                        e, "ttt", subject, role, pattern) != 0)
            goto out;
        if (v != NULL &&
            sq_run_exec(c,
                        "INSERT INTO role_bindings(subject, role, pattern,"
                        " created_ms) VALUES (?1, ?2, ?3, ?4)",
                        e, "ttti", subject, role, pattern,
                        (int64_t)json_integer_value(json_object_get(v, "createdMs"))) != 0)
            goto out;
    }
    rc = bump_generation(c, e);
    /* Audited where it lands too, naming the region it was made in. */
    if (rc == 0) {
        char detail[128];
        snprintf(detail, sizeof(detail), "origin=%s %s", origin, v != NULL ? "put" : "delete");
        rc = sq_run_exec(c,
                         "INSERT INTO audit_log(time_ms, actor, action, target, status, remote,"
                         " detail, count, last_ms, region) VALUES (?1, 'peer', ?2, ?3, 200, ?4,"
                         " ?5, 1, ?1, ?4)",
                         e, "itttt", util_now_ms(),
                         is_identity ? "identity.replicated" : "role.replicated", key, origin,
                         detail);
    }
out:
    json_decref(v);
    return rc;
}

/* Publishes, at the lowest clock, every identity and binding that has no object yet: the
 * rows of a store from before registry-wide identities. Idempotent; run at open. */
int sq_access_publish_local(struct sq_conn *c, struct err *e)
{
    struct meta_name_list names = {0}, bindings = {0};
    if (sq_tx_begin(c, true, e) != 0)
        return -1;
    struct sql_stmt *s;
    int rc = sq_run(c,
                    "SELECT name FROM identities WHERE NOT EXISTS (SELECT 1 FROM objects"
                    " WHERE objects.kind = ?1 AND objects.key = identities.name)",
                    &s, e, "t", SQ_ACCESS_IDENTITY_KIND);
    if (rc >= 0) {
        rc = sq_collect_columns(c, s, rc, 1, &names, e);
        sql_finalize(s);
    }
    if (rc >= 0)
        rc = sq_run(c,
                    "SELECT subject, role, pattern FROM role_bindings WHERE NOT EXISTS"
                    " (SELECT 1 FROM objects WHERE objects.kind = ?1 AND objects.key ="
                    " role_bindings.subject || ' ' || role_bindings.role || ' ' ||"
                    " role_bindings.pattern)",
                    &s, e, "t", SQ_ACCESS_BINDING_KIND);
    if (rc >= 0) {
        rc = sq_collect_columns(c, s, rc, 3, &bindings, e);
        sql_finalize(s);
    }
    for (size_t i = 0; rc >= 0 && i < names.n; i++)
        rc = publish_identity(c, names.names[i], SQ_ACCESS_LOW_HLC, e);
    for (size_t i = 0; rc >= 0 && i + 2 < bindings.n; i += 3)
        rc = publish_binding(c, bindings.names[i], bindings.names[i + 1], bindings.names[i + 2],
                             true, SQ_ACCESS_LOW_HLC, e);
    size_t n_published = names.n + bindings.n / 3;
    meta_name_list_fini(&names);
    meta_name_list_fini(&bindings);
    if (rc < 0) {
        sq_tx_rollback(c);
        return -1;
    }
    if (sq_tx_commit(c, e) != 0)
        return -1;
    if (n_published > 0)
        log_info("metastore", "published %zu local identities and role bindings to the registry",
                 n_published);
    return 0;
}

int sq_identity_put(struct metastore *ms, const struct meta_identity *id,
                    bool is_create, struct err *e)
{
    static const char insert[] =
        "INSERT INTO identities(name, kind, secret_hash, description, created_ms, expires_s)"
        " VALUES (?1, ?2, ?3, ?4, ?5, ?6)";
    static const char update[] =
        "UPDATE identities SET secret_hash = ?3, description = coalesce(?4, description),"
        " expires_s = ?5 WHERE name = ?1 AND kind = ?2";
    struct sq_conn *c = sq_conn_of(ms, e);
    if (c == NULL)
        return -1;
    if (sq_tx_begin(c, true, e) != 0)
        return -1;
    if (is_create) {
        struct sql_stmt *s;
        int rc = sq_run(c, "SELECT 1 FROM identities WHERE name = ?1", &s, e, "t", id->name);
        if (rc < 0)
            goto fail;
        sql_finalize(s);
        if (rc == SQL_ROW) {
            err_set(e, ERR_CONFLICT, "an identity named %s exists", id->name);
            goto fail;
        }
        if (sq_run_exec(c, insert, e, "ttttii", id->name, id->kind, id->secret_hash,
                        id->description, util_now_ms(), id->expires_s) != 0)
            goto fail;
    } else {
        if (sq_run_exec(c, update, e, "tttti", id->name, id->kind, id->secret_hash,
                        id->description, id->expires_s) != 0)
            goto fail;
        if (sql_changes(c->db) == 0) {
            err_set(e, ERR_NOT_FOUND, "no %s named %s", id->kind, id->name);
            goto fail;
        }
    }
    int64_t hlc = id->is_bootstrap ? SQ_ACCESS_LOW_HLC : sq_hlc_next(c);
    if (publish_identity(c, id->name, hlc, e) != 0 || bump_generation(c, e) != 0)
        goto fail;
    return sq_tx_commit(c, e);
fail:
    sq_tx_rollback(c);
    return -1;
}

int sq_identity_delete(struct metastore *ms, const char *name, const char *kind,
                       struct err *e)
{
    struct sq_conn *c = sq_conn_of(ms, e);
    if (c == NULL)
        return -1;
    if (sq_tx_begin(c, true, e) != 0)
        return -1;
    if (sq_run_exec(c,
                    "DELETE FROM identities WHERE name = ?1"
                    " AND (CAST(?2 AS TEXT) IS NULL OR kind = ?2)",
                    e, "tt", name, kind) != 0)
        goto fail;
    if (sql_changes(c->db) == 0) {
        err_set(e, ERR_NOT_FOUND, "no %s named %s", kind != NULL ? kind : "identity", name);
        goto fail;
    }
    /* The bindings go with the identity, each as its own tombstone. */
    struct meta_name_list doomed = {0};
    struct sql_stmt *s;
    int rc =
        sq_run(c, "SELECT role, pattern FROM role_bindings WHERE subject = ?1", &s, e, "t", name);
    if (rc >= 0) {
        rc = sq_collect_columns(c, s, rc, 2, &doomed, e);
        sql_finalize(s);
    }
    int64_t hlc = sq_hlc_next(c);
    for (size_t i = 0; rc >= 0 && i + 1 < doomed.n; i += 2)
        rc = publish_binding(c, name, doomed.names[i], doomed.names[i + 1], false, hlc, e);
    meta_name_list_fini(&doomed);
    if (rc < 0 || publish_identity(c, name, hlc, e) != 0 ||
        sq_run_exec(c, "DELETE FROM role_bindings WHERE subject = ?1", e, "t", name) != 0 ||
        bump_generation(c, e) != 0)
        goto fail;
    return sq_tx_commit(c, e);
fail:
    sq_tx_rollback(c);
    return -1;
}

int sq_role_set(struct metastore *ms, const struct meta_binding *b, bool is_bound,
                bool *is_changed, struct err *e)
{
    struct sq_conn *c = sq_conn_of(ms, e);
    if (c == NULL)
        return -1;
    *is_changed = false;
    if (sq_tx_begin(c, true, e) != 0)
        return -1;
    int rc = is_bound ? sq_exec(c, SQ_ROLE_BIND, e, "ttti", b->subject, b->role, b->pattern,
                                util_now_ms())
                      : sq_run_exec(c, "DELETE FROM role_bindings WHERE subject = ?1 AND role = ?2"
                                       " AND pattern = ?3",
                                    e, "ttt", b->subject, b->role, b->pattern);
    if (rc != 0)
        goto fail;
    *is_changed = sql_changes(c->db) > 0;
    if (!is_bound && !*is_changed) {
        err_set(e, ERR_NOT_FOUND, "no such role binding");
        goto fail;
    }
    if (*is_changed &&
        (publish_binding(c, b->subject, b->role, b->pattern, is_bound,
                         b->is_bootstrap ? SQ_ACCESS_LOW_HLC : sq_hlc_next(c), e) != 0 ||
         bump_generation(c, e) != 0))
        goto fail;
    return sq_tx_commit(c, e);
fail:
    sq_tx_rollback(c);
    return -1;
}

static int read_generation(struct sq_conn *c, int64_t *out, struct err *e)
{
    struct sql_stmt *s;
    int rc = sq_run(c, "SELECT v FROM auth_meta WHERE k = 'generation'", &s, e, "");
    if (rc < 0)
        return -1;
    *out = rc == SQL_ROW ? sql_col_int64(s, 0) : 0;
    sql_finalize(s);
    return 0;
}

int sq_auth_generation(struct metastore *ms, int64_t *out, struct err *e)
{
    struct sq_conn *c = sq_conn_of(ms, e);
    if (c == NULL)
        return -1;
    return read_generation(c, out, e);
}

static void identity_read(struct sql_stmt *s, void *elem)
{
    struct meta_identity *id = elem;
    id->name = sq_col_strdup(s, 0);
    id->kind = sq_col_strdup(s, 1);
    id->secret_hash = sq_col_strdup(s, 2);
    id->description = sq_col_strdup(s, 3);
    id->created_ms = sql_col_int64(s, 4);
    id->expires_s = sql_col_int64(s, 5);
}

static void binding_read(struct sql_stmt *s, void *elem)
{
    struct meta_binding *b = elem;
    b->subject = sq_col_strdup(s, 0);
    b->role = sq_col_strdup(s, 1);
    b->pattern = sq_col_strdup(s, 2);
    b->created_ms = sql_col_int64(s, 3);
}

int sq_auth_load(struct metastore *ms, struct meta_auth_state *out, struct err *e)
{
    memset(out, 0, sizeof(*out));
    struct sq_conn *c = sq_conn_of(ms, e);
    if (c == NULL)
        return -1;
    struct sql_stmt *s = NULL;
    void *items;
    if (sq_tx_begin(c, false, e) != 0)
        return -1;
    if (read_generation(c, &out->generation, e) != 0)
        goto fail;
    int rc = sq_run(c, "SELECT name, kind, secret_hash, description, created_ms, expires_s"
                       " FROM identities ORDER BY name",
                    &s, e, "");
    if (rc < 0)
        goto fail;
    rc = sq_collect_rows(c, s, rc, sizeof(*out->identities), identity_read, &items,
                         &out->n_identities, e);
    out->identities = items;
    sql_finalize(s);
    if (rc < 0)
        goto fail;
    rc = sq_run(c, "SELECT subject, role, pattern, created_ms FROM role_bindings"
                   " ORDER BY subject, pattern, role",
                &s, e, "");
    if (rc < 0)
        goto fail;
    rc = sq_collect_rows(c, s, rc, sizeof(*out->bindings), binding_read, &items,
                         &out->n_bindings, e);
    out->bindings = items;
    sql_finalize(s);
    if (rc < 0)
        goto fail;
    sq_tx_rollback(c); /* read-only */
    return 0;
fail:
    sq_tx_rollback(c);
    meta_auth_state_fini(out);
    return -1;
}

int sq_audit_append(struct metastore *ms, const struct meta_audit *a, uint64_t max_rows,
                    int64_t *id_out, struct err *e)
{
    struct sq_conn *c = sq_conn_of(ms, e);
    if (c == NULL)
        return -1;
    if (sq_tx_begin(c, true, e) != 0)
        return -1;
    if (sq_run_exec(c, "INSERT INTO audit_log(time_ms, actor, action, target, status, remote,"
                       " detail, count, last_ms, region) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 1,"
                       " ?1, ?8)",
                    e, "itttittt", a->time_ms, a->actor, a->action, a->target, (int64_t)a->status,
                    a->remote, a->detail, a->region ? a->region : c->store->region) != 0)
        goto fail;
    int64_t id = sql_last_insert_id(c->db);
    /* Ids only grow (AUTOINCREMENT), so the newest max_rows are those above id - max_rows. */
    if (max_rows > 0 && (uint64_t)id > max_rows &&
        sq_run_exec(c, "DELETE FROM audit_log WHERE id IN (SELECT id FROM audit_log WHERE id <= ?1"
                       " ORDER BY id LIMIT 100)",
                    e, "i", id - (int64_t)max_rows) != 0)
        goto fail;
    if (sq_tx_commit(c, e) != 0)
        return -1;
    if (id_out != NULL)
        *id_out = id;
    return 0;
fail:
    sq_tx_rollback(c);
    return -1;
}

int sq_audit_set_count(struct metastore *ms, int64_t id, int64_t count, int64_t last_ms,
                       struct err *e)
{
    struct sq_conn *c = sq_conn_of(ms, e);
    if (c == NULL)
        return -1;
    if (sq_tx_begin(c, true, e) != 0)
        return -1;
    if (sq_exec(c, SQ_AUDIT_SET_COUNT, e, "iii", id, count, last_ms) != 0) {
        sq_tx_rollback(c);
        return -1;
    }
    return sq_tx_commit(c, e);
}

static void audit_read(struct sql_stmt *s, void *elem)
{
    struct meta_audit *a = elem;
    a->id = sql_col_int64(s, 0);
    a->time_ms = sql_col_int64(s, 1);
    a->actor = sq_col_strdup(s, 2);
    a->action = sq_col_strdup(s, 3);
    a->target = sq_col_strdup(s, 4);
    a->status = (int)sql_col_int64(s, 5);
    a->remote = sq_col_strdup(s, 6);
    a->detail = sq_col_strdup(s, 7);
    a->count = sql_col_int64(s, 8);
    a->last_ms = sql_col_int64(s, 9);
    a->region = sq_col_strdup(s, 10);
}

int sq_audit_list(struct metastore *ms, const struct meta_audit_query *q,
                  struct meta_audit **out, size_t *n_out, struct err *e)
{
    *out = NULL;
    *n_out = 0;
    struct sq_conn *c = sq_conn_of(ms, e);
    if (c == NULL)
        return -1;
    int64_t limit = q->limit > 10000 ? 10000 : (int64_t)q->limit;
    struct sql_stmt *s;
    /* region NULL: an entry from before the column, decided here (v6_audit_region.sql) */
    int rc = sq_run(c, "SELECT id, time_ms, actor, action, target, status, remote, detail,"
                       " count, coalesce(last_ms, time_ms), coalesce(region, ?5)"
                       " FROM audit_log WHERE (?1 = 0 OR id < ?1)"
                       " AND (CAST(?2 AS TEXT) IS NULL OR actor = ?2)"
                       " AND (CAST(?3 AS TEXT) IS NULL OR substr(action, 1, length(?3)) = ?3)"
                       " AND (CAST(?6 AS TEXT) IS NULL OR coalesce(region, ?5) = ?6)"
                       " AND (CAST(?7 AS BIGINT) = 0 OR time_ms >= ?7)"
                       " AND (CAST(?8 AS BIGINT) = 0 OR time_ms <= ?8)"
                       /* the repository, or it before '@' or ':' (not a longer name) */
                       " AND (CAST(?9 AS TEXT) IS NULL OR target = ?9"
                       " OR substr(target, 1, length(?9) + 1) IN (?9 || '@', ?9 || ':'))"
                       " ORDER BY id DESC LIMIT ?4",
                    &s, e, "ittittiit", q->before_id, q->actor, q->action, limit,
                    c->store->region, q->region, q->since_ms, q->until_ms, q->repository);
    if (rc < 0)
        return -1;
    void *items;
    rc = sq_collect_rows(c, s, rc, sizeof(**out), audit_read, &items, n_out, e);
    *out = items;
    sql_finalize(s);
    if (rc < 0) {
        meta_audit_free(*out, *n_out);
        *out = NULL;
        *n_out = 0;
        return -1;
    }
    return 0;
}

/* In the caller's write transaction. */
int sq_upload_owner_write(struct sq_conn *c, const char *id, const char *owner, struct err *e)
{
    if (sq_run_exec(c, "DELETE FROM upload_owners WHERE id NOT IN (SELECT id FROM uploads)", e,
                    "") != 0)
        return -1;
    return sq_exec(c, SQ_UPLOAD_OWNER_SET, e, "tt", id, owner);
}

int sq_upload_set_owner(struct metastore *ms, const char *id, const char *owner,
                        struct err *e)
{
    struct sq_conn *c = sq_conn_of(ms, e);
    if (c == NULL)
        return -1;
    if (sq_tx_begin(c, true, e) != 0)
        return -1;
    if (sq_upload_owner_write(c, id, owner, e) != 0) {
        sq_tx_rollback(c);
        return -1;
    }
    return sq_tx_commit(c, e);
}

int sq_upload_owner(struct metastore *ms, const char *id, char **owner, struct err *e)
{
    *owner = NULL;
    struct sq_conn *c = sq_conn_of(ms, e);
    if (c == NULL)
        return -1;
    struct sql_stmt *s;
    int rc = sq_run(c, "SELECT owner FROM upload_owners WHERE id = ?1", &s, e, "t", id);
    if (rc < 0)
        return -1;
    if (rc == SQL_ROW)
        *owner = sq_col_strdup(s, 0);
    sql_finalize(s);
    return 0;
}

int sq_upload_count_owned(struct metastore *ms, const char *owner, int64_t now_s,
                          int64_t *n, struct err *e)
{
    struct sq_conn *c = sq_conn_of(ms, e);
    if (c == NULL)
        return -1;
    return sq_upload_owned_in(c, owner, now_s, n, e);
}

/* On c as it stands: in a write transaction, the count its caller's insert is sure of. */
int sq_upload_owned_in(struct sq_conn *c, const char *owner, int64_t now_s, int64_t *n,
                       struct err *e)
{
    struct sql_stmt *s;
    int rc = sq_run(c, "SELECT count(*) FROM upload_owners o JOIN uploads u ON u.id = o.id"
                       " WHERE o.owner = ?1 AND u.expires_s >= ?2",
                    &s, e, "ti", owner, now_s);
    if (rc < 0)
        return -1;
    *n = rc == SQL_ROW ? sql_col_int64(s, 0) : 0;
    sql_finalize(s);
    return 0;
}

