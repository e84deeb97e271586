/* The merge rules, written once whatever database is below: last-writer-wins registers
 * for tags, manifest tombstones, and the apply path of events from peers. Local writes
 * (meta_manifests.c) and events applied from peers go through the same functions here, so
 * every region reaches the same state whatever order the events arrive in. */
#include "metastore.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "base64.h"
#include "body_pack.h"
#include "hlc.h"
#include "image_catalog.h"
#include "image_version.h"
#include "log.h"
#include "metastore_sqlite_int.h"
#include "util.h"

/* Last-writer-wins state ------------------------------------------------------
 * Local writes and events applied from peers go through the same merge functions, so
 * that every region reaches the same state whatever order the events arrive in:
 *   tag register (repo, name) -> digest | deleted, ordered by (hlc, origin)
 *   manifest (repo, digest): present since its put clock, or a tombstone with its own;
 *     the later of the two wins, and a tombstone also deletes older tag registers
 *     naming the manifest. */

/* `tags` is a view of the registers that name a manifest this region has a record of
 * (schema v10_tags_view): a register write is the whole tag write. */

/* Immutable versions (docs/image-versions.md) ---------------------------------
 * In an image definition a version is written once: when puts name different digests (two
 * regions accepted the same new version before hearing of each other), the EARLIER put
 * wins -- first writer wins, the opposite of the tag rule -- while deletes stay
 * last-writer-wins so that a version can be deleted (and, where allowed, pushed again).
 * The register of such a tag is derived from a state every region builds the same from
 * the same writes, whatever their order (a join of a max and a set):
 *   IMAGE_VERSION_WRITES_KIND, key REPO:VERSION (registry object, no event):
 *     {"deleted":{"hlc","origin"} (the latest delete, absent if none),
 *      "puts":[{"digest","hlc","origin"}] (every put later than it, earliest first)}
 *   winner = the earliest put; none: deleted.
 * With two digests or more among the puts, every region derives the same conflict record
 * (IMAGE_VERSION_CONFLICT_KIND, same key; removed when fewer remain):
 *   {"repository","version","winner":{"digest","region"},"losers":[{"digest","region"}]}
 * (losers sorted by digest, each with the region of its earliest put). */

static bool is_image_definition(struct sq_conn *c, const char *repo)
{
    struct sql_stmt *s;
    struct err ignore = {0};
    int rc = sq_query(c, SQ_OBJ_GET, &s, &ignore, "tt", IMAGE_DEFINITION_KIND, repo);
    if (rc < 0)
        return false;
    bool is_def = rc == SQL_ROW && sql_col_int64(s, 3) == 0;
    sq_stmt_done(s);
    return is_def;
}

static int64_t clock_hlc(const json_t *w)
{
    return (int64_t)json_integer_value(json_object_get(w, "hlc"));
}

static const char *clock_origin(const json_t *w)
{
    const char *o = json_string_value(json_object_get(w, "origin"));
    return o ? o : "";
}

/* Is write a later than write b by (hlc, origin)? */
static bool is_later(const json_t *a, const json_t *b)
{
    return hlc_lww_wins((uint64_t)clock_hlc(a), clock_origin(a), (uint64_t)clock_hlc(b),
                        clock_origin(b));
}

static int by_clock(const void *a, const void *b)
{
    const json_t *x = *(json_t *const *)a, *y = *(json_t *const *)b;
    return is_later(x, y) ? 1 : is_later(y, x) ? -1 : 0;
}

static int by_digest(const void *a, const void *b)
{
    return strcmp(json_string_value(json_object_get(*(json_t *const *)a, "digest")),
                  json_string_value(json_object_get(*(json_t *const *)b, "digest")));
}

/* Sorts a JSON array in place. */
static void array_sort(json_t *arr, int (*cmp)(const void *, const void *))
{
    size_t n = json_array_size(arr);
    json_t **items = xcalloc(n + 1, sizeof(*items));
    for (size_t i = 0; i < n; i++)
        items[i] = json_incref(json_array_get(arr, i));
    qsort(items, n, sizeof(*items), cmp);
    json_array_clear(arr);
    for (size_t i = 0; i < n; i++)
        json_array_append_new(arr, items[i]);
    free(items);
}

/* The state of repo:name, or a new one made from the register (tags written before). */
static json_t *version_state_load(struct sq_conn *c, const char *repo, const char *name,
                                  const char *key, struct err *e)
{
    struct sql_stmt *s;
    json_t *state = NULL;
    int rc = sq_query(c, SQ_OBJ_GET, &s, e, "tt", IMAGE_VERSION_WRITES_KIND, key);
    if (rc < 0)
        return NULL;
    if (rc == SQL_ROW && sql_col_int64(s, 3) == 0 && sql_col_text(s, 0) != NULL) {
        json_error_t je;
        state = json_loads(sql_col_text(s, 0), 0, &je);
    }
    sq_stmt_done(s);
    if (json_is_object(state))
        return state;
    json_decref(state);
    state = json_pack("{s:[]}", "puts");
    rc = sq_query(c, SQ_TREG_GET, &s, e, "tt", repo, name);
    if (rc < 0) {
        json_decref(state);
        return NULL;
    }
    if (rc == SQL_ROW) {
        json_t *w = json_pack("{s:I, s:s}", "hlc", (json_int_t)sql_col_int64(s, 1), "origin",
                              sql_col_text(s, 2) ? sql_col_text(s, 2) : "");
        if (sql_col_is_null(s, 0)) {
            json_object_set_new(state, "deleted", w);
        } else {
            json_object_set_new(w, "digest", json_string(sql_col_text(s, 0)));
            json_array_append_new(json_object_get(state, "puts"), w);
        }
    }
    sq_stmt_done(s);
    return state;
}

/* Adds write (digest NULL: a delete) to state: puts not later than the latest delete go. */
static void version_state_add(json_t *state, const char *digest, int64_t hlc,
                              const char *origin)
{
    json_t *w = json_pack("{s:I, s:s}", "hlc", (json_int_t)hlc, "origin", origin);
    json_t *deleted = json_object_get(state, "deleted");
    json_t *puts = json_object_get(state, "puts");
    if (digest == NULL) {
        if (deleted == NULL || is_later(w, deleted))
            json_object_set(state, "deleted", w);
    } else {
        json_object_set_new(w, "digest", json_string(digest));
        bool is_known = false;
        size_t i;
        json_t *p;
        json_array_foreach(puts, i, p) is_known |=
            json_equal(p, w) != 0;
        if (!is_known)
            json_array_append(puts, w);
    }
    json_decref(w);
    deleted = json_object_get(state, "deleted");
    json_t *kept = json_array();
    size_t i;
    json_t *p;
    json_array_foreach(puts, i, p)
    {
        if (deleted == NULL || is_later(p, deleted))
            json_array_append(kept, p);
    }
    array_sort(kept, by_clock);
    json_object_set_new(state, "puts", kept);
}

/* The conflict record of state, or NULL when its puts name fewer than two digests. */
static json_t *version_conflict_of(const json_t *state, const char *repo, const char *name)
{
    const json_t *puts = json_object_get(state, "puts");
    const json_t *winner = json_array_get(puts, 0);
    const char *won = json_string_value(json_object_get(winner, "digest"));
    json_t *losers = json_array();
    size_t i;
    json_t *p;
    json_array_foreach(puts, i, p) /* earliest first: the first put of each digest */
    {
        const char *d = json_string_value(json_object_get(p, "digest"));
        bool is_listed = strcmp(d, won) == 0;
        size_t j;
        json_t *l;
        json_array_foreach(losers, j, l) is_listed |=
            strcmp(json_string_value(json_object_get(l, "digest")), d) == 0;
        if (!is_listed)
            json_array_append_new(losers, json_pack("{s:s, s:s}", "digest", d, "region",
                                                    clock_origin(p)));
    }
    if (json_array_size(losers) == 0) {
        json_decref(losers);
        return NULL;
    }
    array_sort(losers, by_digest);
    return json_pack("{s:s, s:s, s:{s:s, s:s}, s:o}", "repository", repo, "version", name,
                     "winner", "digest", won, "region", clock_origin(winner), "losers", losers);
}

/* Stores a derived object of key, or deletes it (v NULL), with the state's latest clock. */
static int derived_set(struct sq_conn *c, const char *kind, const char *key, const json_t *v,
                       int64_t hlc, const char *origin, struct err *e)
{
    char *text = v ? json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    sq_note_object(c->store, kind);
    int rc = sq_exec(c, SQ_OBJ_SET, e, "tttiti", kind, key, text, hlc, origin,
                     (int64_t)(v == NULL));
    free(text);
    return rc;
}

/* sq_tag_merge for a version of an image definition (the rule above). */
static int version_merge(struct sq_conn *c, int64_t repo_id, const char *repo, const char *name,
                         const char *digest, int64_t hlc, const char *origin, bool *is_applied,
                         struct err *e)
{
    char key[1024];
    snprintf(key, sizeof(key), "%s:%s", repo, name);
    json_t *state = version_state_load(c, repo, name, key, e);
    if (state == NULL)
        return -1;
    version_state_add(state, digest, hlc, origin);
    const json_t *winner = json_array_get(json_object_get(state, "puts"), 0);
    const json_t *deleted = json_object_get(state, "deleted");
    const json_t *reg = winner ? winner : deleted;
    /* The latest write the state holds: the clock of the derived rows. */
    const json_t *latest = deleted;
    size_t i;
    json_t *p;
    json_array_foreach(json_object_get(state, "puts"), i, p)
    {
        if (latest == NULL || is_later(p, latest))
            latest = p;
    }
    const char *won = winner ? json_string_value(json_object_get(winner, "digest")) : NULL;
    *is_applied = clock_hlc(reg) == hlc && strcmp(clock_origin(reg), origin) == 0 &&
                  ((won == NULL) == (digest == NULL));
    json_t *conflict = winner ? version_conflict_of(state, repo, name) : NULL;
    int rc = derived_set(c, IMAGE_VERSION_WRITES_KIND, key, state, clock_hlc(latest),
                         clock_origin(latest), e);
    if (rc == 0) {
        struct sql_stmt *s;
        int q = sq_query(c, SQ_OBJ_GET, &s, e, "tt", IMAGE_VERSION_CONFLICT_KIND, key);
        bool had = q == SQL_ROW && sql_col_int64(s, 3) == 0;
        if (q >= 0)
            sq_stmt_done(s);
        rc = q < 0 ? -1
             : conflict != NULL || had
                 ? derived_set(c, IMAGE_VERSION_CONFLICT_KIND, key, conflict, clock_hlc(latest),
                               clock_origin(latest), e)
                 : 0;
    }
    if (rc == 0)
        rc = sq_exec(c, SQ_TREG_SET, e, "tttit", repo, name, won, clock_hlc(reg),
                     clock_origin(reg));
    json_decref(conflict);
    json_decref(state);
    return rc;
}

/* Merges a write of tag register (repo, name) := digest (NULL: delete) at (hlc, origin).
 * *is_applied tells whether it won. */
int sq_tag_merge(struct sq_conn *c, int64_t repo_id, const char *repo, const char *name,
                 const char *digest, int64_t hlc, const char *origin, bool *is_applied,
                 struct err *e)
{
    /* versions of a definition are immutable (first writer wins); its other tags, such
     * as signature tags a signer re-pushes, stay last-writer-wins registers */
    if (is_image_definition(c, repo) && iv_version_parse(name, NULL) == 0)
        return version_merge(c, repo_id, repo, name, digest, hlc, origin, is_applied, e);
    struct sql_stmt *s;
    *is_applied = false;
    int rc = sq_query(c, SQ_TREG_GET, &s, e, "tt", repo, name);
    if (rc < 0)
        return -1;
    bool wins = true;
    if (rc == SQL_ROW) {
        int64_t cur_hlc = sql_col_int64(s, 1);
        const char *cur_origin = sql_col_text(s, 2);
        wins = hlc_lww_wins((uint64_t)hlc, origin, (uint64_t)cur_hlc, cur_origin ? cur_origin : "");
    }
    sq_stmt_done(s);
    if (!wins)
        return 0;
    /* A peer's tag of a manifest deleted after it (a tombstone newer than the tag: the
     * region that deleted it had not seen the tag) is a tag of nothing: kept as deleted, so
     * that a later push of the same manifest does not bring it back. sq_tomb_merge does the
     * same for a tag that came first, so the order of arrival does not matter. A tag written
     * here is newer than any tombstone here. */
    if (digest != NULL && strcmp(origin, c->store->region) != 0) {
        /* A collector's tombstone is left out: a tag concurrent with it keeps the
         * manifest instead (sq_untagged_tomb_merge). */
        rc = sq_query(c, SQ_TOMB_GET, &s, e, "tt", repo, digest);
        if (rc < 0)
            return -1;
        bool is_dead = rc == SQL_ROW && sql_col_int64(s, 2) == 0 && sql_col_int64(s, 0) > hlc;
        sq_stmt_done(s);
        if (is_dead)
            digest = NULL;
    }
    if (sq_exec(c, SQ_TREG_SET, e, "tttit", repo, name, digest, hlc, origin) != 0)
        return -1;
    *is_applied = true;
    return 0;
}

/* A peer's delete of a manifest at hlc ends the tags of it older than the delete that
 * this region has and the deleting region had not seen (a tag written meanwhile in a third
 * region, or here during a partition): they named what was deleted after them, and a later
 * push of the same manifest must not bring them back. sq_tag_merge does the same for such
 * a tag arriving after the delete, so the order of arrival does not matter. */
static int dead_tags_drop(struct sq_conn *c, const char *repo, const char *digest, int64_t hlc,
                          struct err *e)
{
    if (!is_image_definition(c, repo))
        return sq_run_exec(c, "UPDATE tag_regs SET digest = NULL"
                              " WHERE repo = ?1 AND digest = ?2 AND hlc < ?3",
                           e, "tti", repo, digest, hlc);
    /* A definition's versions are left out: a version's register is derived from its
     * puts and deletes alone (version_merge, to which sq_tag_merge leaves it too); ended
     * here, it was ended or not by the order of arrival, and regions differed. */
    struct meta_name_list names = {0};
    struct sql_stmt *s;
    int rc = sq_run(c, "SELECT name FROM tag_regs WHERE repo = ?1 AND digest = ?2 AND hlc < ?3",
                    &s, e, "tti", repo, digest, hlc);
    if (rc < 0)
        return -1;
    rc = sq_collect_names(c, s, rc, -1, &names, e);
    sql_finalize(s);
    for (size_t i = 0; rc == 0 && i < names.n; i++)
        if (iv_version_parse(names.names[i], NULL) != 0)
            rc = sq_run_exec(c, "UPDATE tag_regs SET digest = NULL WHERE repo = ?1 AND name = ?2",
                             e, "tt", repo, names.names[i]);
    meta_name_list_fini(&names);
    return rc;
}

/* Merges a manifest tombstone at (hlc, origin): deletes the manifest when its put is
 * older. Tag registers are not touched here; the region where the delete happens writes a
 * tag_delete for each tag naming it, and a peer's delete also ends the tags it had not
 * seen (merge_event, dead_tags_drop). */
int sq_tomb_merge(struct sq_conn *c, int64_t repo_id, const char *repo, const char *digest,
                  int64_t hlc, const char *origin, struct err *e)
{
    struct sql_stmt *s;
    int rc = sq_query(c, SQ_TOMB_GET, &s, e, "tt", repo, digest);
    if (rc < 0)
        return -1;
    bool wins = true;
    if (rc == SQL_ROW)
        wins =
            hlc_lww_wins((uint64_t)hlc, origin, (uint64_t)sql_col_int64(s, 0), sql_col_text(s, 1));
    sq_stmt_done(s);
    if (!wins)
        return 0;
    if (sq_exec(c, SQ_TOMB_SET, e, "ttit", repo, digest, hlc, origin) != 0)
        return -1;
    rc = sq_query(c, SQ_MANIFEST_CLOCK, &s, e, "it", repo_id, digest);
    if (rc < 0)
        return -1;
    bool is_here = rc == SQL_ROW;
    bool is_older =
        is_here &&
        hlc_lww_wins((uint64_t)hlc, origin, (uint64_t)sql_col_int64(s, 0), sql_col_text(s, 1));
    sq_stmt_done(s);
    if (is_older) {
        if (sq_exec(c, SQ_REFS_DELETE, e, "it", repo_id, digest) != 0 ||
            sq_exec(c, SQ_MANIFEST_DELETE, e, "it", repo_id, digest) != 0)
            return -1;
    }
    /* Every region's report of the manifest older than the delete described a copy the
     * delete ends: a push of it again starts from none (merge_status keeps such reports
     * out when they arrive later). One written after it (it arrived first) stays. A row
     * of a release before the clock (0) is dropped only where the manifest goes. */
    if (sq_exec(c, SQ_STATUS_DROP, e, "ttii", repo, digest, hlc, (int64_t)(is_older || !is_here)) !=
        0)
        return -1;
    return 0;
}

/* Names of the tag registers of repo that name digest (read in full first: the caller
 * then writes to the same table). */
static int tag_names_of(struct sq_conn *c, const char *repo, const char *digest,
                        struct meta_name_list *out, struct err *e)
{
    memset(out, 0, sizeof(*out));
    struct sql_stmt *s;
    int rc = sq_query(c, SQ_TREG_OF_DIGEST, &s, e, "tt", repo, digest);
    if (rc < 0)
        return -1;
    for (int row = rc == SQL_ROW; row == 1; row = sq_next_row(c, s, e)) {
        out->names = xrealloc(out->names, (out->n + 1) * sizeof(char *));
        out->names[out->n++] = sq_col_strdup(s, 0);
    }
    sq_stmt_done(s);
    return 0;
}

/* Local delete of a manifest: a tag_delete event for every tag register naming it. */
int sq_delete_tags_of(struct sq_conn *c, int64_t repo_id, const char *repo, const char *digest,
                      struct err *e)
{
    struct meta_name_list tags;
    if (tag_names_of(c, repo, digest, &tags, e) != 0)
        return -1;
    size_t n = tags.n;
    char **names = tags.names;
    int result = 0;
    for (size_t i = 0; i < n; i++) {
        int64_t hlc = sq_hlc_next(c);
        bool applied;
        if (result == 0 &&
            (sq_tag_merge(c, repo_id, repo, names[i], NULL, hlc, c->store->region, &applied, e) !=
                 0 ||
             sq_event_append_clock(c, "tag_delete", repo, names[i], digest, NULL, hlc, e) != 0))
            result = -1;
        free(names[i]);
    }
    free(names);
    return result;
}

/* Is a manifest put at (hlc, origin) superseded by a tombstone? */
static int tomb_covers(struct sq_conn *c, const char *repo, const char *digest, int64_t hlc,
                       const char *origin, bool *covered, struct err *e)
{
    struct sql_stmt *s;
    int rc = sq_query(c, SQ_TOMB_GET, &s, e, "tt", repo, digest);
    if (rc < 0)
        return -1;
    *covered = rc == SQL_ROW && hlc_lww_wins((uint64_t)sql_col_int64(s, 0), sql_col_text(s, 1),
                                             (uint64_t)hlc, origin);
    sq_stmt_done(s);
    return 0;
}

/* manifest_put payload: verifies the body against the digest, then records the
 * manifest, not visible until its content is here. */
static int merge_manifest_put(struct sq_conn *c, const struct meta_event *ev, struct err *e)
{
    json_error_t je;
    json_t *p = ev->payload ? json_loads(ev->payload, 0, &je) : NULL;
    const char *body64 = json_string_value(json_object_get(p, "body"));
    const char *media_type = json_string_value(json_object_get(p, "mediaType"));
    struct digest d;
    size_t body_len = 0;
    char *body = NULL;
    int result = -1;
    /* Relayed by a region that does not hold it: no body, its size (placement). */
    json_int_t bodyless_size = json_integer_value(json_object_get(p, "size"));
    if (ev->repo == NULL || ev->digest == NULL || media_type == NULL ||
        (body64 == NULL && bodyless_size <= 0) ||
        digest_parse(ev->digest, strlen(ev->digest), &d, e) != 0) {
        err_set(e, ERR_BAD_REQUEST, "manifest_put event without repo, digest or body");
        goto out;
    }
    body = body64 ? base64_decode(body64, strlen(body64), &body_len) : xstrdup("");
    struct digest got;
    if (body == NULL)
        goto bad;
    digest_of_buffer(d.alg, body, body_len, &got);
    if (body64 != NULL && !digest_equal(&got, &d)) {
        log_warn("metastore", "manifest %s from %s does not match its digest", d.str, ev->origin);
        goto bad;
    }
    bool covered;
    if (tomb_covers(c, ev->repo, d.str, (int64_t)ev->hlc, ev->origin, &covered, e) != 0)
        goto out;
    if (covered) {
        result = 0; /* deleted later than it was put */
        goto out;
    }
    int64_t repo_id;
    if (sq_repo_ensure(c, ev->repo, &repo_id, e) != 0)
        goto out;
    json_t *annotations = json_object_get(p, "annotations");
    /* Filtered replication: only the regions that hold it keep its document (placement). */
    int64_t size = body64 ? (int64_t)body_len : (int64_t)bodyless_size;
    bool is_definition;
    if (sq_repo_is_definition(c, ev->repo, &is_definition, e) != 0)
        goto out;
    if (is_definition)
        body_len = 0;
    /* Stored packed (body_pack.h); size stays the document's. */
    unsigned char *packed;
    size_t stored_len;
    const void *stored = body_stored(body, body_len, &packed, &stored_len);
    int insert_rc = sq_exec(c, SQ_MANIFEST_INSERT_REMOTE, e, "itttttibiit", repo_id, d.str,
                            media_type, json_string_value(json_object_get(p, "artifactType")),
                            json_is_string(annotations) ? json_string_value(annotations) : NULL,
                            json_string_value(json_object_get(p, "subject")), size, stored,
                            stored_len, util_now_ms(), (int64_t)ev->hlc, ev->origin);
    free(packed);
    if (insert_rc != 0)
        goto out;
    if (sql_changes(c->db) > 0) {
        json_t *refs = json_object_get(p, "refs");
        for (size_t i = 0; i < json_array_size(refs); i++) {
            json_t *r = json_array_get(refs, i);
            const char *rd = json_string_value(json_object_get(r, "digest"));
            struct digest rdig;
            struct err ignore = {0};
            if (rd == NULL || digest_parse(rd, strlen(rd), &rdig, &ignore) != 0)
                goto bad;
            if (sq_exec(c, SQ_REF_INSERT_SIZED, e, "ittii", repo_id, d.str, rdig.str,
                        (int64_t)json_is_true(json_object_get(r, "isManifest")),
                        (int64_t)json_integer_value(json_object_get(r, "size"))) != 0)
                goto out;
        }
    } else {
        /* Already here: the put clock is a last-writer-wins register too, so that a
         * tombstone orders against the latest put whatever the arrival order. */
        struct sql_stmt *s;
        int rc = sq_query(c, SQ_MANIFEST_CLOCK, &s, e, "it", repo_id, d.str);
        if (rc < 0)
            goto out;
        bool is_later =
            rc == SQL_ROW &&
            hlc_lww_wins(ev->hlc, ev->origin, (uint64_t)sql_col_int64(s, 0), sql_col_text(s, 1));
        sq_stmt_done(s);
        if (is_later && sq_exec(c, SQ_MANIFEST_SET_CLOCK, e, "itit", repo_id, d.str,
                                (int64_t)ev->hlc, ev->origin) != 0)
            goto out;
    }
    result = 0;
    goto out;
bad:
    err_set(e, ERR_BAD_REQUEST, "malformed manifest_put event");
out:
    free(body);
    json_decref(p);
    return result;
}

static int merge_object(struct sq_conn *c, const struct meta_event *ev, bool is_delete,
                        struct err *e)
{
    json_error_t je;
    json_t *p = ev->payload ? json_loads(ev->payload, 0, &je) : NULL;
    const char *kind = json_string_value(json_object_get(p, "kind"));
    if (kind == NULL || ev->name == NULL) {
        json_decref(p);
        return err_set(e, ERR_BAD_REQUEST, "object event without kind or key");
    }
    struct sql_stmt *s;
    int rc = sq_query(c, SQ_OBJ_GET, &s, e, "tt", kind, ev->name);
    if (rc < 0) {
        json_decref(p);
        return -1;
    }
    bool wins = rc != SQL_ROW || hlc_lww_wins(ev->hlc, ev->origin, (uint64_t)sql_col_int64(s, 1),
                                              sql_col_text(s, 2));
    /* A restored region's marker keeps the latest reopening, whichever region wrote it
     * last: the highest clock is the cut in every region, whatever the order. */
    if (rc == SQL_ROW && !is_delete && strcmp(kind, RESTORED_KIND) == 0) {
        char *value = json_dumps(json_object_get(p, "value"), JSON_COMPACT);
        int64_t in = sq_restored_opened(value),
                have = sq_restored_opened((const char *)sql_col_text(s, 0));
        wins = in > have || (in == have && wins);
        free(value);
    }
    sq_stmt_done(s);
    rc = 0;
    if (wins) {
        char *value = is_delete ? NULL : json_dumps(json_object_get(p, "value"), JSON_COMPACT);
        char *sealed = value ? sq_seal_value(c->store, kind, value, true) : NULL;
        sq_note_object(c->store, kind);
        rc = sq_exec(c, SQ_OBJ_SET, e, "tttiti", kind, ev->name, sealed ? sealed : value,
                     (int64_t)ev->hlc, ev->origin, (int64_t)is_delete);
        if (rc == 0) /* identities and role bindings: their tables follow the winner */
            rc = sq_access_on_object(c, kind, ev->name, value, ev->origin, e);
        if (rc == 0)
            rc = sq_access_on_policy_write(c, kind, e);
        if (rc == 0 && !is_delete)
            rc = sq_restored_on_put(c, kind, ev->name, value, true, e);
        free(sealed);
        free(value);
    }
    json_decref(p);
    return rc;
}

/* Was a region's status, written at hlc, about a copy that a delete of the manifest ended
 * (a delete here is later than it)? Such a report heard after the delete (the deleting
 * region had not heard it) would show the region Completed for a push of the same manifest
 * again, which it does not hold. hlc 0: a state record of a release before this check,
 * which does not say; taken. */
static int status_is_stale(struct sq_conn *c, const char *repo, const char *digest, int64_t hlc,
                           bool *is_stale, struct err *e)
{
    *is_stale = false;
    if (hlc <= 0)
        return 0;
    struct sql_stmt *s;
    int rc = sq_query(c, SQ_TOMB_GET, &s, e, "tt", repo, digest);
    if (rc < 0)
        return -1;
    *is_stale = rc == SQL_ROW && sql_col_int64(s, 0) > hlc;
    sq_stmt_done(s);
    return 0;
}

static int merge_status(struct sq_conn *c, const struct meta_event *ev, struct err *e)
{
    json_error_t je;
    json_t *p = ev->payload ? json_loads(ev->payload, 0, &je) : NULL;
    struct meta_status st = {
        .region = (char *)json_string_value(json_object_get(p, "region")),
        .state = (char *)json_string_value(json_object_get(p, "state")),
        .bytes_done = json_integer_value(json_object_get(p, "bytesDone")),
        .bytes_total = json_integer_value(json_object_get(p, "bytesTotal")),
        .updated_ms = json_integer_value(json_object_get(p, "updatedMs")),
        .details = (char *)json_string_value(json_object_get(p, "details")),
        .has_copies = json_is_integer(json_object_get(p, "copies")),
        .copies = json_integer_value(json_object_get(p, "copies")),
    };
    int rc = 0;
    /* A region is the authority on its own status: others' reports of it are ignored. A
     * report older than a restore of the region it describes is void (meta_restored.c). */
    bool is_stale = false, is_void = false;
    if (st.region && st.state && ev->repo && ev->digest &&
        strcmp(st.region, c->store->region) != 0 &&
        (rc = status_is_stale(c, ev->repo, ev->digest, (int64_t)ev->hlc, &is_stale, e)) == 0 &&
        !is_stale &&
        (rc = sq_restored_voids(c, st.region, (int64_t)ev->hlc, &is_void, e)) == 0 &&
        !is_void) {
        struct sql_stmt *s;
        rc = sq_query(c, SQ_STATUS_GET, &s, e, "ttt", ev->repo, ev->digest, st.region);
        if (rc >= 0) {
            bool is_newer = rc != SQL_ROW || sql_col_int64(s, 0) <= st.updated_ms;
            sq_stmt_done(s);
            rc = is_newer ? sq_status_write_peer(c, ev->repo, ev->digest, &st,
                                                 (int64_t)ev->hlc, e)
                          : 0;
        }
    }
    json_decref(p);
    return rc < 0 ? -1 : 0;
}

/* Merges one event into state (no log, no version vector). */
static int merge_event(struct sq_conn *c, const struct meta_event *ev, struct err *e)
{
    sq_hlc_seen(c->store, ev->hlc);
    const char *k = ev->kind;
    int64_t repo_id;
    bool applied;
    if (strcmp(k, "manifest_put") == 0)
        return merge_manifest_put(c, ev, e);
    if (strcmp(k, "object_put") == 0 || strcmp(k, "object_delete") == 0)
        return merge_object(c, ev, k[7] == 'd', e);
    if (strcmp(k, "status") == 0)
        return merge_status(c, ev, e);
    bool is_tag = strcmp(k, "tag_set") == 0 || strcmp(k, "tag_delete") == 0;
    bool is_tomb = strcmp(k, "manifest_delete") == 0;
    if (!is_tag && !is_tomb)
        return 0; /* region-local bookkeeping (blob links): nothing to merge */
    if (ev->repo == NULL || (is_tag && ev->name == NULL) || (is_tomb && ev->digest == NULL))
        return err_set(e, ERR_BAD_REQUEST, "%s event without its fields", k);
    if (sq_repo_ensure(c, ev->repo, &repo_id, e) != 0)
        return -1;
    if (is_tomb && sq_is_gc_tomb(ev->payload)) /* a collector's: kept if something keeps it here */
        return sq_untagged_tomb_merge(c, repo_id, ev->repo, ev->digest, (int64_t)ev->hlc,
                                      ev->origin, e);
    if (is_tomb)
        return sq_tomb_merge(c, repo_id, ev->repo, ev->digest, (int64_t)ev->hlc, ev->origin,
                             e) != 0
                   ? -1
                   : dead_tags_drop(c, ev->repo, ev->digest, (int64_t)ev->hlc, e);
    const char *digest = strcmp(k, "tag_set") == 0 ? ev->digest : NULL;
    if (digest == NULL && strcmp(k, "tag_set") == 0)
        return err_set(e, ERR_BAD_REQUEST, "tag_set event without digest");
    if (sq_tag_merge(c, repo_id, ev->repo, ev->name, digest, (int64_t)ev->hlc, ev->origin,
                     &applied, e) != 0)
        return -1;
    /* Filtered replication: a manifest that arrived before its tag belonged with nothing
     * known and was recorded as not held (2, meta_versions.c). The tag may make it a
     * version this region holds: back to pending, so the fetch workers place it again
     * (placement_admit_pending) instead of it waiting for a profile change for ever.
     * Only a write that took effect: a repair re-merging known tags moves nothing. */
    if (digest != NULL && applied &&
        sq_run_exec(c, "UPDATE manifests SET is_visible = 0 WHERE repo_id = ?1 AND digest = ?2"
                       " AND is_visible = 2",
                    e, "it", repo_id, digest) != 0)
        return -1;
    return 0;
}

/* A peer holds events of this region's own name that its log does not: its metadata was
 * restored from an older copy, or it is a new region under the name of a removed one.
 * The next of them is applied like any peer's event (so this region's numbering goes on
 * above what the peers have seen, and what was written under the name is here again);
 * one past a gap is skipped rather than waited for (it may never come: the peer may have
 * compacted the ones between). Said once per process. */
void sq_note_own_history(int64_t have, int64_t seq)
{
    static atomic_bool is_said;
    if (atomic_exchange(&is_said, true))
        return;
    log_error("metastore",
              "a peer holds events of this region's name beyond its own log (#%" PRId64
              ", this log ends at #%" PRId64 "): restored from an older copy, or a new region "
              "under a removed one's name. They are applied in order; writes made here "
              "before they are may not replicate as events (docs/operations.md, \"Restoring "
              "a region\")",
              seq, have);
}

int sq_event_apply(struct metastore *ms, const struct meta_event *ev, bool *is_new, bool *is_gap,
                   struct err *e)
{
    *is_new = false;
    *is_gap = false;
    struct sq_conn *c = sq_conn_of(ms, e);
    if (c == NULL)
        return -1;
    if (sq_tx_begin(c, true, e) != 0)
        return -1;
    int64_t have;
    if (sq_vv_read(c, ev->origin, &have, e) != 0)
        goto fail;
    bool is_own = strcmp(ev->origin, c->store->region) == 0;
    if (is_own && ev->origin_seq > have)
        sq_note_own_history(have, ev->origin_seq);
    if (ev->origin_seq <= have || (is_own && ev->origin_seq > have + 1)) {
        sq_tx_rollback(c);
        return 0; /* seen already (our own events come back through relays too) */
    }
    if (ev->origin_seq > have + 1) {
        *is_gap = true;
        sq_tx_rollback(c);
        return 0;
    }
    if (merge_event(c, ev, e) != 0)
        goto fail;
    /* Relayed as written locally: without the payload the tables already hold, and with
     * secrets sealed under this region's key. */
    const char *stored =
        sq_is_payload_derivable(ev->kind, ev->origin, ev->payload) ? NULL : ev->payload;
    char *sealed = sq_seal_payload(c->store, ev->kind, stored, true);
    int irc = sq_event_insert(c, ev->origin, ev->origin_seq, (int64_t)ev->hlc, ev->kind, ev->repo,
                              ev->name, ev->digest, sealed ? sealed : stored, e);
    free(sealed);
    if (irc != 0)
        goto fail;
    if (sq_tx_commit_unsynced(c, e) != 0)
        return -1;
    *is_new = true;
    return 0;
fail:
    sq_tx_rollback(c);
    return -1;
}

/* Would compaction remove this tombstone record (as sq_tombs_expire decides): older than
 * before_hlc and at or below the horizon of its origin? Then it expired here, or is due
 * to: a peer that keeps tombstones longer must not bring it back. */
static int is_expired_tomb(struct sq_conn *c, const struct meta_event *ev, int64_t before_hlc,
                           bool *is_expired, struct err *e)
{
    *is_expired = false;
    if (before_hlc <= 0 || ev->origin == NULL || (int64_t)ev->hlc >= before_hlc ||
        (strcmp(ev->kind, "manifest_delete") != 0 && strcmp(ev->kind, "tag_delete") != 0))
        return 0;
    struct sql_stmt *s;
    int rc = sq_query(c, SQ_HORIZON_GET, &s, e, "t", ev->origin);
    if (rc < 0)
        return -1;
    *is_expired = rc == SQL_ROW && (int64_t)ev->hlc <= sql_col_int64(s, 1);
    sq_stmt_done(s);
    return 0;
}

int sq_state_merge(struct metastore *ms, const struct meta_event *ev, int64_t tombs_before_hlc,
                   struct err *e)
{
    struct sq_conn *c = sq_conn_of(ms, e);
    if (c == NULL)
        return -1;
    /* The check and the merge share the write transaction, which excludes the one of
     * sq_tombs_expire: a tombstone is either merged before it expires, or seen expired. */
    if (sq_tx_begin(c, true, e) != 0)
        return -1;
    bool is_expired;
    if (is_expired_tomb(c, ev, tombs_before_hlc, &is_expired, e) != 0 ||
        (!is_expired && merge_event(c, ev, e) != 0)) {
        sq_tx_rollback(c);
        return -1;
    }
    return sq_tx_commit(c, e);
}
