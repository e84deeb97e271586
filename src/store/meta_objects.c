/* Replicated objects (webhook definitions and the like), backend-neutral: put, delete,
 * get, list as last-writer-wins objects with events, and the sealing of webhook secrets
 * (header values, uri) at rest. */
#include "metastore.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "log.h"
#include "metastore_sqlite_int.h"
#include "repo_locks.h"
#include "secret.h"
#include "util.h"

#define SQ_SEALED_KIND "webhook"

#define SQ_SEALED_MEMBER "customHeaders"
#define SQ_SEALED_URI "uri"
/* The mark of the last event known sealed. Events before the mark of a release that sealed
 * the headers only ('sealed_through_seq') may hold a uri in clear: that mark is not trusted,
 * and the first pass of this one reads the whole log once. */
#define SQ_SEAL_MARK "sealed_v2_through_seq"
#define SQ_SEAL_MARK_OLD "sealed_through_seq"
/* The file was rebuilt once after the pass: no stale clear copy of an older version left. */
#define SQ_REBUILT_MARK "rebuilt_after_sealing"

/* Webhook secrets at rest -------------------------------------------------------
 *
 * The values of a webhook's customHeaders often are credentials (Authorization: Bearer
 * ...), and so may its uri be (https://user:password@host/, ?token=...). With a sealing
 * key they are stored sealed (secret_seal: "enc:v1:...") in objects.value and in the
 * payload of object_put events, and opened on the way out. The rest of the definition
 * stays readable (names, region, actions, scope).
 *
 *   write: object_put, merge_object (from a peer), event_apply   -> seal
 *   read:  object_get, object_list, events_read, events_since     -> open
 *
 * A value that does not open under the key is left as it is: a row still in clear (read
 * as written until the migration seals it), or one sealed under another key (logged). */

/* Seals (is_seal) or opens the string val (what: how the log names it) in place. True if
 * it changed. A value is sealed unless it already opens under the key, so a clear value
 * that merely starts like a sealed one is sealed too. */
static bool seal_string(const struct sq_store *st, json_t *val, bool is_seal, const char *what)
{
    const char *text = json_string_value(val);
    if (text == NULL)
        return false;
    char *opened = secret_is_sealed(text) ? secret_open(st->seal_key, text) : NULL;
    char *out = NULL;
    if (is_seal && opened == NULL)
        out = secret_seal(st->seal_key, text);
    else if (!is_seal && opened != NULL)
        out = opened, opened = NULL;
    else if (!is_seal && secret_is_sealed(text))
        log_error("metastore",
                  "failed to open %s of a webhook: sealed under another key than this "
                  "region's secrets.key",
                  what);
    if (opened != NULL) {
        secret_wipe(opened, strlen(opened));
        free(opened);
    }
    if (out == NULL)
        return false;
    AZ(json_string_set(val, out));
    secret_wipe(out, strlen(out));
    free(out);
    return true;
}

/* Seals (is_seal) or opens the secrets of webhook value v in place: its customHeaders
 * values and its uri. True if any changed. */
static bool seal_headers(const struct sq_store *st, json_t *v, bool is_seal)
{
    json_t *headers = json_object_get(v, SQ_SEALED_MEMBER);
    const char *name;
    json_t *val;
    bool is_changed = false;
    char what[160];
    json_object_foreach(headers, name, val)
    {
        snprintf(what, sizeof(what), "header %s", name);
        is_changed |= seal_string(st, val, is_seal, what);
    }
    is_changed |= seal_string(st, json_object_get(v, SQ_SEALED_URI), is_seal, "the uri");
    return is_changed;
}

/* value_json of an object of kind as it is stored (is_seal) or handed out: a heap string,
 * or NULL when it is the same (no key, another kind, nothing to change). */
char *sq_seal_value(const struct sq_store *st, const char *kind, const char *value_json,
                    bool is_seal)
{
    if (!st->has_seal_key || kind == NULL || strcmp(kind, SQ_SEALED_KIND) != 0 ||
        value_json == NULL)
        return NULL;
    json_error_t je;
    json_t *v = json_loads(value_json, 0, &je);
    char *out = NULL;
    if (v != NULL && seal_headers(st, v, is_seal))
        out = json_dumps(v, JSON_COMPACT);
    json_decref(v);
    return out;
}

/* The same for an event payload: object_put events carry {"kind":K,"value":V}. */
char *sq_seal_payload(const struct sq_store *st, const char *event_kind, const char *payload,
                      bool is_seal)
{
    if (!st->has_seal_key || event_kind == NULL || strcmp(event_kind, "object_put") != 0 ||
        payload == NULL)
        return NULL;
    json_error_t je;
    json_t *p = json_loads(payload, 0, &je);
    const char *kind = json_string_value(json_object_get(p, "kind"));
    char *out = NULL;
    if (kind != NULL && strcmp(kind, SQ_SEALED_KIND) == 0 &&
        seal_headers(st, json_object_get(p, "value"), is_seal))
        out = json_dumps(p, JSON_COMPACT);
    json_decref(p);
    return out;
}

/* One table's rows to seal: (row key, new text), collected before any update. */
struct seal_row {
    char *k1;
    char *k2;
    int64_t seq;
    char *text;
};

/* Every event so far is sealed (or holds no secret): the next pass starts after them. */
static int mark_sealed(struct sq_conn *c, struct err *e)
{
    if (sq_run_exec(c, "DELETE FROM auth_meta WHERE k = '" SQ_SEAL_MARK_OLD "'", e, "") != 0)
        return -1;
    return sq_run_exec(c,
                       "INSERT INTO auth_meta(k, v) VALUES ('" SQ_SEAL_MARK "',"
                       " (SELECT coalesce(max(seq), 0) FROM events))"
                       " ON CONFLICT(k) DO UPDATE SET v = excluded.v",
                       e, "");
}

/* At a clean close: every event this process wrote or applied was sealed as it was
 * stored, so the pass at the next start reads only what a version before sealing may
 * have written since (after a crash it reads from the last mark). */
void sq_seal_mark_at_close(struct sq_store *st)
{
    /* Only after this process's pass committed: a failed pass must be run again. */
    if (!st->has_seal_key || !st->is_seal_pass_done)
        return;
    struct err e = {0};
    struct sq_conn *c = sq_conn_of(&st->base, &e);
    if (c == NULL || sq_tx_begin(c, true, &e) != 0)
        return;
    if (mark_sealed(c, &e) != 0)
        sq_tx_rollback(c);
    else
        (void)sq_tx_commit(c, &e);
}

/* Seals the clear rows of objects (kind webhook) and events (object_put). Events are
 * sealed as they are written or applied once a key is set, so only those written since
 * the last mark can be in clear (by a version before sealing): the mark (auth_meta
 * SQ_SEAL_MARK, set by this pass and at each clean close) is the last event known
 * sealed, and the pass starts after it (from the start when there is none: a first start
 * with a key, or one after a release that sealed the headers only). Reading the whole log
 * at every start took 2-8 s to ready at a million tags. */
static int seal_clear_rows(struct sq_conn *c, size_t *n_sealed, struct err *e)
{
    struct seal_row *rows = NULL;
    size_t n = 0;
    struct sql_stmt *s = NULL;
    int64_t sealed_through = 0;
    int rc = sq_run(c, "SELECT v FROM auth_meta WHERE k = '" SQ_SEAL_MARK "'", &s, e, "");
    if (rc == SQL_ROW)
        sealed_through = sql_col_int64(s, 0);
    if (rc >= 0)
        sql_finalize(s);
    if (rc >= 0)
        rc = sq_run(c,
                    "SELECT kind, key, value FROM objects WHERE kind = ?1"
                    " AND value IS NOT NULL",
                    &s, e, "t", SQ_SEALED_KIND);
    for (int row = rc == SQL_ROW; rc >= 0 && row == 1; row = sq_next_row(c, s, e)) {
        char *text = sq_seal_value(c->store, sql_col_text(s, 0), sql_col_text(s, 2), true);
        if (text == NULL)
            continue;
        rows = xrealloc(rows, (n + 1) * sizeof(*rows));
        rows[n++] = (struct seal_row){sq_col_strdup(s, 0), sq_col_strdup(s, 1), 0, text};
    }
    if (rc >= 0)
        sql_finalize(s);
    size_t n_objects = n;
    if (rc >= 0)
        rc = sq_run(c, "SELECT seq, payload FROM events WHERE seq > ?1 AND kind = 'object_put'",
                    &s, e, "i", sealed_through);
    for (int row = rc == SQL_ROW; rc >= 0 && row == 1; row = sq_next_row(c, s, e)) {
        char *text = sq_seal_payload(c->store, "object_put", sql_col_text(s, 1), true);
        if (text == NULL)
            continue;
        rows = xrealloc(rows, (n + 1) * sizeof(*rows));
        rows[n++] = (struct seal_row){NULL, NULL, sql_col_int64(s, 0), text};
    }
    if (rc >= 0)
        sql_finalize(s);
    for (size_t i = 0; i < n && rc >= 0; i++) {
        if (i < n_objects)
            rc = sq_run(c, "UPDATE objects SET value = ?1 WHERE kind = ?2 AND key = ?3", &s, e,
                        "ttt", rows[i].text, rows[i].k1, rows[i].k2);
        else
            rc = sq_run(c, "UPDATE events SET payload = ?1 WHERE seq = ?2", &s, e, "ti",
                        rows[i].text, rows[i].seq);
        if (rc >= 0)
            sql_finalize(s);
    }
    if (rc >= 0)
        rc = mark_sealed(c, e);
    for (size_t i = 0; i < n; i++) {
        free(rows[i].k1);
        free(rows[i].k2);
        free(rows[i].text);
    }
    free(rows);
    *n_sealed = n;
    return rc < 0 ? -1 : 0;
}

int metastore_sqlite_set_sealing_key(struct metastore *ms, const uint8_t key[32], struct err *e)
{
    struct sq_store *st = (struct sq_store *)ms;
    ASSERT(st->magic == SQ_STORE_MAGIC);
    memcpy(st->seal_key, key, SECRET_BOX_KEY_BYTES);
    st->has_seal_key = true;
    struct sq_conn *c = sq_conn_of(ms, e);
    if (c == NULL)
        return -1;
    /* secure_delete: the clear bytes an update leaves behind on the page or the freelist
     * are zeroed, not merely marked free. */
    size_t n_sealed = 0, n_redacted = 0;
    int rc = sq_tx_begin(c, true, e);
    if (rc == 0 && (sq_tx_secure_delete(c, e) != 0 || seal_clear_rows(c, &n_sealed, e) != 0 ||
                    sq_delivery_redact_old(c, &n_redacted, e) != 0)) {
        sq_tx_rollback(c);
        rc = -1;
    } else if (rc == 0) {
        rc = sq_tx_commit(c, e);
    }
    st->is_seal_pass_done = rc == 0;
    if (rc != 0)
        return rc;
    /* Done once, also when the pass changed nothing: a release of 5 December sealed the
     * rows but left the copies below; and until the mark is written (a rebuild that failed,
     * or a crash before it) it is tried again at the next start. */
    struct sql_stmt *s;
    int mark = sq_run(c, "SELECT 1 FROM auth_meta WHERE k = '" SQ_REBUILT_MARK "'", &s, e, "");
    if (mark >= 0)
        sql_finalize(s);
    if (n_sealed + n_redacted == 0 && mark != SQL_DONE)
        return 0;
    /* A database that never held a webhook has no such copy: rebuilding it (a big one
     * takes minutes and twice its size on disk) would only slow its first start. */
    int ever = sq_run(c, "SELECT 1 WHERE EXISTS (SELECT 1 FROM objects WHERE kind = '"
                         SQ_SEALED_KIND "') OR EXISTS (SELECT 1 FROM webhook_deliveries WHERE seq > 0)",
                      &s, e, "");
    if (ever >= 0)
        sql_finalize(s);
    bool is_needed = n_sealed + n_redacted > 0 || ever != SQL_DONE;
    /* The version that wrote the clear rows freed and moved their cells without
     * secure_delete (page splits, each retry's rewrite of a delivery): stale copies sit in
     * the free space of pages this pass never touched. Then the old page images are still
     * in the WAL: copy the new ones home and empty it. */
    if (is_needed && sq_rebuild(c) != SQL_OK)
        log_warn("metastore", "failed to rebuild the database after sealing webhook secrets");
    else if (sq_tx_begin(c, true, e) != 0 ||
             sq_run_exec(c, "INSERT INTO auth_meta(k, v) VALUES ('" SQ_REBUILT_MARK "', 1)"
                            " ON CONFLICT(k) DO NOTHING", e, "") != 0)
        sq_tx_rollback(c);
    else if (sq_tx_commit(c, e) != 0)
        log_warn("metastore", "failed to record the rebuild: %s", err_message(e));
    if (sq_compact_log(c) != SQL_OK)
        log_warn("metastore", "failed to checkpoint after sealing webhook secrets");
    if (n_sealed > 0)
        log_info("metastore", "sealed %zu stored webhook definitions that held secrets "
                 "(headers, uri) in clear", n_sealed);
    if (n_redacted > 0)
        log_info("metastore", "redacted the receiver URL in %zu webhook delivery records "
                 "written before URLs were redacted", n_redacted);
    return 0;
}

/* Replicated objects ------------------------------------------------------------ */

/* Whether a live object of (kind, key) exists, in the open write transaction: 1, 0 or -1. */
static int object_is_live(struct sq_conn *c, const char *kind, const char *key, struct err *e)
{
    struct sql_stmt *s;
    int rc = sq_query(c, SQ_OBJ_GET, &s, e, "tt", kind, key);
    if (rc < 0)
        return -1;
    int is_live = rc == SQL_ROW && sql_col_int64(s, 3) == 0;
    sq_stmt_done(s);
    return is_live;
}

/* The row and its event, in the open write transaction. */
static int object_set(struct sq_conn *c, const char *kind, const char *key,
                      const char *value_json, const char *payload, struct err *e)
{
    bool is_kept;
    if (sq_restored_is_kept(c, kind, key, value_json, &is_kept, e) != 0)
        return -1;
    if (is_kept)
        return 0; /* a restored region's marker keeps its highest reopening */
    int64_t hlc = sq_hlc_next(c);
    sq_note_object(c->store, kind);
    if (sq_exec(c, SQ_OBJ_SET, e, "tttiti", kind, key, value_json, hlc, c->store->region,
                (int64_t)0) != 0 ||
        sq_access_on_policy_write(c, kind, e) != 0 ||
        sq_restored_on_put(c, kind, key, value_json, false, e) != 0)
        return -1;
    return sq_event_append_clock(c, "object_put", NULL, key, NULL, payload, hlc, e);
}

/* A put, or (is_create) a create that refuses an object already there: the check and the
 * write are one transaction, so of two creates of one key racing in this region one wins
 * and the other gets ERR_CONFLICT. (Regions still merge by clock: a create in each region
 * at once ends as the later one everywhere.) */
static int object_write(struct metastore *ms, const char *kind, const char *key,
                        const char *value_json, bool is_create, struct err *e)
{
    struct sq_conn *c = sq_conn_of(ms, e);
    if (c == NULL)
        return -1;
    char *sealed = sq_seal_value(c->store, kind, value_json, true);
    if (sealed != NULL)
        value_json = sealed;
    struct buf p;
    buf_init(&p, SQ_PAYLOAD_MAX_BYTES);
    buf_appends(&p, "{\"kind\":");
    buf_append_json_string(&p, kind);
    buf_appends(&p, ",\"value\":");
    buf_appends(&p, value_json);
    buf_appends(&p, "}");
    if (sq_payload_check(&p, e) != 0 || sq_tx_begin(c, true, e) != 0) {
        buf_fini(&p);
        free(sealed);
        return -1;
    }
    int is_live = is_create ? object_is_live(c, kind, key, e) : 0;
    if (is_live > 0)
        err_set(e, ERR_CONFLICT, "%s %s already exists", kind, key);
    if (is_live != 0 || object_set(c, kind, key, value_json, p.data, e) != 0) {
        sq_tx_rollback(c);
        buf_fini(&p);
        free(sealed);
        return -1;
    }
    buf_fini(&p);
    free(sealed);
    return sq_tx_commit(c, e);
}

int sq_object_put(struct metastore *ms, const char *kind, const char *key, const char *value_json,
                  struct err *e)
{
    return object_write(ms, kind, key, value_json, false, e);
}

int sq_object_create(struct metastore *ms, const char *kind, const char *key,
                     const char *value_json, struct err *e)
{
    return object_write(ms, kind, key, value_json, true, e);
}

int sq_object_delete(struct metastore *ms, const char *kind, const char *key, struct err *e)
{
    struct sq_conn *c = sq_conn_of(ms, e);
    if (c == NULL)
        return -1;
    if (sq_tx_begin(c, true, e) != 0)
        return -1;
    struct sql_stmt *s;
    int rc = sq_query(c, SQ_OBJ_GET, &s, e, "tt", kind, key);
    if (rc < 0)
        goto fail;
    bool exists = rc == SQL_ROW && sql_col_int64(s, 3) == 0;
    sq_stmt_done(s);
    if (!exists) {
        err_set(e, ERR_NOT_FOUND, "no %s named %s", kind, key);
        goto fail;
    }
    int64_t hlc = sq_hlc_next(c);
    struct buf p;
    buf_init(&p, 4096);
    buf_appends(&p, "{\"kind\":");
    buf_append_json_string(&p, kind);
    buf_appends(&p, "}");
    sq_note_object(c->store, kind);
    rc = sq_exec(c, SQ_OBJ_SET, e, "tttiti", kind, key, NULL, hlc, c->store->region, (int64_t)1);
    if (rc == 0)
        rc = sq_access_on_policy_write(c, kind, e);
    if (rc == 0)
        rc = sq_event_append_clock(c, "object_delete", NULL, key, NULL, p.data, hlc, e);
    buf_fini(&p);
    if (rc != 0)
        goto fail;
    return sq_tx_commit(c, e);
fail:
    sq_tx_rollback(c);
    return -1;
}

int sq_object_get(struct metastore *ms, const char *kind, const char *key, char **value_json,
                  struct err *e)
{
    *value_json = NULL;
    struct sq_conn *c = sq_conn_of(ms, e);
    if (c == NULL)
        return -1;
    struct sql_stmt *s;
    int rc = sq_query(c, SQ_OBJ_GET, &s, e, "tt", kind, key);
    if (rc < 0)
        return -1;
    if (rc == SQL_ROW && sql_col_int64(s, 3) == 0)
        *value_json = sq_col_strdup(s, 0);
    sq_stmt_done(s);
    if (*value_json == NULL)
        return err_set(e, ERR_NOT_FOUND, "no %s named %s", kind, key);
    char *clear = sq_seal_value(c->store, kind, *value_json, false);
    if (clear != NULL) {
        free(*value_json);
        *value_json = clear;
    }
    return 0;
}

int sq_object_exists(struct metastore *ms, const char *kind, const char *key, bool *is_live,
                     bool *is_deleted, struct err *e)
{
    *is_live = *is_deleted = false;
    struct sq_conn *c = sq_conn_of(ms, e);
    if (c == NULL)
        return -1;
    struct sql_stmt *s;
    int rc = sq_query(c, SQ_OBJ_GET, &s, e, "tt", kind, key);
    if (rc < 0)
        return -1;
    if (rc == SQL_ROW) {
        *is_deleted = sql_col_int64(s, 3) != 0;
        *is_live = !*is_deleted;
    }
    sq_stmt_done(s);
    return 0;
}

void sq_note_object(struct sq_store *st, const char *kind)
{
    if (strcmp(kind, REPO_LOCK_KIND) == 0)
        atomic_store(&st->lock_objects, 2);
    /* Not known until read again after this write (webhooks_may_exist reads under wmu,
     * which this write holds from here to its commit). */
    if (strcmp(kind, META_WEBHOOK_KIND) == 0)
        atomic_store(&st->webhook_objects, 0);
}

/* Whether a live webhook definition exists: known without a read on SQLite once read
 * (sq_store.webhook_objects). A read that fails says "some" (then look). */
static bool webhooks_may_exist(struct sq_store *st)
{
    bool is_kept = st->drv->dialect == SQL_DIALECT_SQLITE;
    int state = is_kept ? atomic_load(&st->webhook_objects) : 0;
    if (state != 0)
        return state == 2;
    struct err e = {0};
    struct sq_conn *c = sq_conn_of(&st->base, &e);
    if (c == NULL)
        return true;
    /* Under wmu on SQLite: no write of a definition is between its note (sq_note_object)
     * and its commit, so what is read here is not older than the last note. */
    bool is_locked = is_kept && !c->has_wmu;
    if (is_locked)
        sq_autocommit_lock(c);
    struct sql_stmt *s;
    int rc = sq_run(c, "SELECT 1 FROM objects WHERE kind = ?1 AND is_deleted = 0 LIMIT 1", &s,
                    &e, "t", META_WEBHOOK_KIND);
    if (rc >= 0)
        sql_finalize(s);
    if (rc >= 0 && is_kept) /* still under wmu: no write noted since the read */
        atomic_store(&st->webhook_objects, rc == SQL_ROW ? 2 : 1);
    if (is_locked)
        sq_autocommit_unlock(c);
    return rc < 0 || rc == SQL_ROW;
}

bool sq_object_kind_may_exist(struct metastore *ms, const char *kind)
{
    struct sq_store *st = (struct sq_store *)ms;
    if (strcmp(kind, META_WEBHOOK_KIND) == 0)
        return webhooks_may_exist(st);
    if (strcmp(kind, REPO_LOCK_KIND) != 0)
        return true;
    int state = atomic_load(&st->lock_objects);
    if (state != 0)
        return state == 2;
    struct err e = {0};
    struct sq_conn *c = sq_conn_of(ms, &e);
    struct sql_stmt *s;
    int rc = c ? sq_run(c, "SELECT 1 FROM objects WHERE kind = ?1 LIMIT 1", &s, &e, "t", kind)
               : -1;
    if (rc < 0)
        return true; /* not known: look */
    sql_finalize(s);
    int unknown = 0; /* a write noted meanwhile wins */
    atomic_compare_exchange_strong(&st->lock_objects, &unknown, rc == SQL_ROW ? 2 : 1);
    return atomic_load(&st->lock_objects) == 2;
}

int sq_object_list(struct metastore *ms, const char *kind, struct meta_name_list *keys,
                   struct meta_name_list *values, struct err *e)
{
    memset(keys, 0, sizeof(*keys));
    memset(values, 0, sizeof(*values));
    struct sq_conn *c = sq_conn_of(ms, e);
    if (c == NULL)
        return -1;
    struct sql_stmt *s;
    int rc = sq_query(c, SQ_OBJ_LIST, &s, e, "t", kind);
    if (rc < 0)
        return -1;
    for (int row = rc == SQL_ROW; row == 1; row = sq_next_row(c, s, e)) {
        keys->names = xrealloc(keys->names, (keys->n + 1) * sizeof(char *));
        values->names = xrealloc(values->names, (values->n + 1) * sizeof(char *));
        keys->names[keys->n++] = sq_col_strdup(s, 0);
        char *v = sq_col_strdup(s, 1);
        char *clear = v ? sq_seal_value(c->store, kind, v, false) : NULL;
        if (clear != NULL) {
            free(v);
            v = clear;
        }
        values->names[values->n++] = v ? v : xstrdup("{}");
    }
    sq_stmt_done(s);
    return 0;
}
