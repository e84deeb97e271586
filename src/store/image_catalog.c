/* Image definitions and version records over the metastore's replicated objects
 * (image_catalog.h). */
#include "image_catalog.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "name.h"
#include "util.h"

/* A region that advertises no volumes (the default store, or an older release) holds
 * one copy of what it holds. */
#define IMAGE_CATALOG_VOLUMES_PER_REGION 1

int image_catalog_world(struct metastore *ms, const char *self_region, struct iv_world *w,
                        struct err *e)
{
    struct meta_name_list keys, values;
    memset(w, 0, sizeof(*w));
    if (ms->ops->object_list(ms, "replication", &keys, &values, e) != 0)
        return -1;
    bool has_self = false;
    for (size_t i = 0; i < keys.n; i++)
        has_self |= strcmp(keys.names[i], self_region) == 0;
    size_t n = keys.n + (has_self ? 0 : 1);
    struct iv_region *r = xcalloc(n, sizeof(*r));
    for (size_t i = 0; i < keys.n; i++) {
        r[i].name = keys.names[i]; /* owned: freed by world_fini */
        r[i].volumes = IMAGE_CATALOG_VOLUMES_PER_REGION;
        json_error_t je;
        json_t *rec = json_loads(values.names[i], 0, &je);
        json_t *classes = json_object_get(rec, "volumes");
        if (json_is_object(classes) && json_object_size(classes) > 0)
            r[i].classes = json_incref(classes);
        json_decref(rec);
    }
    meta_name_list_fini(&values);
    if (!has_self) {
        r[keys.n].name = xstrdup(self_region);
        r[keys.n].volumes = IMAGE_CATALOG_VOLUMES_PER_REGION;
    }
    free(keys.names);
    w->regions = r;
    w->n_regions = n;
    w->now_ms = util_now_ms();
    return 0;
}

void image_catalog_world_fini(struct iv_world *w)
{
    for (size_t i = 0; i < w->n_regions; i++) {
        free((char *)w->regions[i].name);
        json_decref(w->regions[i].classes);
    }
    free((void *)w->regions);
    memset(w, 0, sizeof(*w));
}

static json_t *get_object(struct metastore *ms, const char *kind, const char *key, struct err *e)
{
    char *text = NULL;
    if (ms->ops->object_get(ms, kind, key, &text, e) != 0)
        return NULL;
    json_error_t je;
    json_t *v = json_loads(text, 0, &je);
    free(text);
    if (!json_is_object(v)) {
        json_decref(v);
        err_set(e, ERR_INTERNAL, "stored %s record is not an object", kind);
        return NULL;
    }
    return v;
}

/* Writes v as the object (kind, key) with write: the store's object_put or object_create. */
static int write_object(struct metastore *ms, ms_object_put_f *write, const char *kind,
                        const char *key, const json_t *v, struct err *e)
{
    char *text = json_dumps(v, JSON_COMPACT);
    int rc = write(ms, kind, key, text, e);
    free(text);
    return rc;
}

json_t *image_catalog_definition(struct metastore *ms, const char *repo, struct err *e)
{
    json_t *d = get_object(ms, IMAGE_DEFINITION_KIND, repo, e);
    if (d == NULL && e->code == ERR_NOT_FOUND)
        err_set(e, ERR_NOT_FOUND, "%s is not an image definition", repo);
    return d;
}

bool image_catalog_is_definition(struct metastore *ms, const char *repo)
{
    struct err e = {0};
    json_t *d = get_object(ms, IMAGE_DEFINITION_KIND, repo, &e);
    json_decref(d);
    return d != NULL;
}

json_t *image_catalog_definitions(struct metastore *ms, struct err *e)
{
    struct meta_name_list keys, values;
    if (ms->ops->object_list(ms, IMAGE_DEFINITION_KIND, &keys, &values, e) != 0)
        return NULL;
    json_t *out = json_array();
    json_error_t je;
    for (size_t i = 0; i < values.n; i++) {
        json_t *v = json_loads(values.names[i], 0, &je);
        if (json_is_object(v))
            json_array_append(out, v);
        json_decref(v);
    }
    meta_name_list_fini(&keys);
    meta_name_list_fini(&values);
    return out;
}

int image_catalog_put_definition(struct metastore *ms, const json_t *def, struct err *e)
{
    return write_object(ms, ms->ops->object_put, IMAGE_DEFINITION_KIND,
                        json_string_value(json_object_get(def, "repository")), def, e);
}

int image_catalog_create_definition(struct metastore *ms, const json_t *def, struct err *e)
{
    const char *repo = json_string_value(json_object_get(def, "repository"));
    if (write_object(ms, ms->ops->object_create, IMAGE_DEFINITION_KIND, repo, def, e) != 0)
        return e->code == ERR_CONFLICT
                   ? err_set(e, ERR_CONFLICT, "%s is already an image definition", repo)
                   : -1;
    return 0;
}

int image_catalog_delete_definition(struct metastore *ms, const char *repo, struct err *e)
{
    return ms->ops->object_delete(ms, IMAGE_DEFINITION_KIND, repo, e);
}

static void version_key(const char *repo, const char *version, char *out, size_t out_len)
{
    snprintf(out, out_len, "%s:%s", repo, version); /* ':' never occurs in a name */
}

json_t *image_catalog_version(struct metastore *ms, const char *repo, const char *version,
                              struct err *e)
{
    char key[NAME_MAX_BYTES + TAG_MAX_BYTES + 2];
    version_key(repo, version, key, sizeof(key));
    json_t *v = get_object(ms, IMAGE_VERSION_KIND, key, e);
    if (v == NULL && e->code == ERR_NOT_FOUND)
        err_set(e, ERR_NOT_FOUND, "no version %s in %s", version, repo);
    return v;
}

static int by_version(const void *a, const void *b)
{
    const char *va = json_string_value(json_object_get(*(json_t *const *)a, "version"));
    const char *vb = json_string_value(json_object_get(*(json_t *const *)b, "version"));
    struct iv_version x = {0}, y = {0};
    iv_version_parse(va, &x);
    iv_version_parse(vb, &y);
    return iv_version_cmp(&x, &y);
}

json_t *image_catalog_versions(struct metastore *ms, const char *repo, struct err *e)
{
    struct meta_name_list keys, values;
    if (ms->ops->object_list(ms, IMAGE_VERSION_KIND, &keys, &values, e) != 0)
        return NULL;
    size_t prefix_len = strlen(repo);
    json_t **items = xcalloc(values.n + 1, sizeof(*items));
    size_t n = 0;
    json_error_t je;
    for (size_t i = 0; i < keys.n; i++) {
        if (strncmp(keys.names[i], repo, prefix_len) != 0 || keys.names[i][prefix_len] != ':')
            continue;
        json_t *v = json_loads(values.names[i], 0, &je);
        if (json_is_object(v))
            items[n++] = v;
        else
            json_decref(v);
    }
    qsort(items, n, sizeof(*items), by_version);
    json_t *out = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(out, items[i]);
    free(items);
    meta_name_list_fini(&keys);
    meta_name_list_fini(&values);
    return out;
}

int image_catalog_put_version(struct metastore *ms, const json_t *record, struct err *e)
{
    char key[NAME_MAX_BYTES + TAG_MAX_BYTES + 2];
    version_key(json_string_value(json_object_get(record, "repository")),
                json_string_value(json_object_get(record, "version")), key, sizeof(key));
    return write_object(ms, ms->ops->object_put, IMAGE_VERSION_KIND, key, record, e);
}

int image_catalog_create_version(struct metastore *ms, const json_t *record, struct err *e)
{
    const char *repo = json_string_value(json_object_get(record, "repository"));
    const char *version = json_string_value(json_object_get(record, "version"));
    char key[NAME_MAX_BYTES + TAG_MAX_BYTES + 2];
    version_key(repo, version, key, sizeof(key));
    if (write_object(ms, ms->ops->object_create, IMAGE_VERSION_KIND, key, record, e) != 0)
        return e->code == ERR_CONFLICT
                   ? err_set(e, ERR_CONFLICT, "version %s of %s exists: update it", version, repo)
                   : -1;
    return 0;
}

static int check_one_subject(struct metastore *ms, const char *repo,
                             const struct digest *subject, image_catalog_may_name_fn may_name,
                             void *arg, struct err *e);

int image_catalog_check_subject(struct metastore *ms, const char *repo, const char *tag,
                                const struct digest *subject, image_catalog_may_name_fn may_name,
                                void *arg, struct err *e)
{
    if ((subject == NULL && tag == NULL) || !image_catalog_is_definition(ms, repo))
        return 0;
    if (subject != NULL && check_one_subject(ms, repo, subject, may_name, arg, e) != 0)
        return -1;
    char named[DIGEST_STR_MAX];
    struct digest d;
    struct err pe = {0};
    if (tag != NULL && iv_referrer_tag(tag, named) &&
        digest_parse(named, strlen(named), &d, &pe) == 0)
        return check_one_subject(ms, repo, &d, may_name, arg, e);
    return 0;
}

static int check_one_subject(struct metastore *ms, const char *repo,
                             const struct digest *subject, image_catalog_may_name_fn may_name,
                             void *arg, struct err *e)
{
    struct digest have;
    char *media_type = NULL;
    int64_t size, recorded_ms;
    bool is_visible;
    struct err le = {0};
    if (ms->ops->manifest_lookup(ms, repo, subject->str, &have, &media_type, &size,
                                 &is_visible, &recorded_ms, &le) == 0) {
        free(media_type);
        return 0;
    }
    if (le.code != ERR_MANIFEST_UNKNOWN && le.code != ERR_NAME_UNKNOWN)
        return err_set(e, le.code, "%s", le.msg);
    char *holder = NULL;
    struct err he = {0};
    if (ms->ops->manifest_holder(ms, subject, repo, &holder, &he) != 0)
        return he.code == ERR_MANIFEST_UNKNOWN ? 0 : err_set(e, he.code, "%s", he.msg);
    /* Naming a repository the pusher may not read would tell it that it exists. */
    bool is_named = may_name == NULL || may_name(arg, holder);
    err_set(e, ERR_MANIFEST_INVALID,
            "subject %s is a manifest of another repository%s%s%s, not of image definition %s: "
            "a referrer must be pushed to its subject's repository",
            subject->str, is_named ? " (" : "", is_named ? holder : "", is_named ? ")" : "",
            repo);
    free(holder);
    return -1;
}

/* Immutable versions: a version that names a manifest keeps it; one that was deleted
 * is not pushed again unless the definition allows version reuse. */
static int check_immutable(struct metastore *ms, const json_t *def, const char *repo,
                           const char *tag, const struct digest *d, bool *is_unchanged,
                           struct err *e)
{
    struct digest have;
    char *media_type = NULL;
    int64_t size, recorded_ms;
    bool is_visible;
    struct err le = {0};
    if (ms->ops->manifest_lookup(ms, repo, tag, &have, &media_type, &size, &is_visible,
                                 &recorded_ms, &le) == 0) {
        free(media_type);
        if (digest_equal(&have, d)) {
            *is_unchanged = true;
            return 0;
        }
        return err_set(e, ERR_DENIED,
                       "version %s of %s exists and is immutable (it is %s, not %s)", tag, repo,
                       have.str, d->str);
    }
    if (le.code != ERR_MANIFEST_UNKNOWN && le.code != ERR_NAME_UNKNOWN)
        return err_set(e, le.code, "%s", le.msg);
    char key[NAME_MAX_BYTES + TAG_MAX_BYTES + 2];
    version_key(repo, tag, key, sizeof(key));
    struct err re = {0};
    json_t *retired = get_object(ms, IMAGE_VERSION_RETIRED_KIND, key, &re);
    if (retired == NULL)
        return re.code == ERR_NOT_FOUND ? 0 : err_set(e, re.code, "%s", re.msg);
    json_decref(retired);
    if (json_is_true(json_object_get(def, "allowVersionReuse")))
        return 0;
    return err_set(e, ERR_DENIED,
                   "version %s of %s was deleted and versions are immutable: it cannot be "
                   "pushed again unless the definition allows version reuse",
                   tag, repo);
}

int image_catalog_check_push(struct metastore *ms, const char *repo, const char *tag,
                             const struct digest *d, bool *is_unchanged, struct err *e)
{
    *is_unchanged = false;
    struct err de = {0};
    json_t *def = get_object(ms, IMAGE_DEFINITION_KIND, repo, &de);
    if (def == NULL)
        return de.code == ERR_NOT_FOUND ? 0 : err_set(e, de.code, "%s", de.msg);
    int rc = 0;
    if (strcmp(tag, IV_LATEST) == 0)
        rc = err_set(e, ERR_TAG_INVALID,
                     "%s is an image definition: latest is resolved in each region and "
                     "cannot be pushed",
                     repo);
    else if (iv_referrer_tag(tag, NULL))
        rc = 0; /* signature tags (sha256-<hex>.sig/.att/.sbom) follow their subject: not versions */
    else if (iv_version_parse(tag, NULL) != 0)
        rc = err_set(e, ERR_TAG_INVALID,
                     "%s is an image definition: tags are versions MAJOR.MINOR.PATCH, "
                     "not \"%s\"",
                     repo, tag);
    else
        rc = check_immutable(ms, def, repo, tag, d, is_unchanged, e);
    json_decref(def);
    return rc;
}

json_t *image_catalog_conflict(struct metastore *ms, const char *repo, const char *version,
                               struct err *e)
{
    char key[NAME_MAX_BYTES + TAG_MAX_BYTES + 2];
    version_key(repo, version, key, sizeof(key));
    return get_object(ms, IMAGE_VERSION_CONFLICT_KIND, key, e);
}

int image_catalog_record_push(struct metastore *ms, const char *self_region, const char *repo,
                              const char *tag, bool *is_created, struct err *e)
{
    *is_created = false;
    struct err de = {0};
    json_t *def = get_object(ms, IMAGE_DEFINITION_KIND, repo, &de);
    if (def == NULL)
        return de.code == ERR_NOT_FOUND ? 0 : err_set(e, de.code, "%s", de.msg);
    if (iv_referrer_tag(tag, NULL)) {
        json_decref(def);
        return 0; /* a signature's tag: it follows its subject (placement), no profile */
    }
    struct err ve = {0};
    json_t *have = image_catalog_version(ms, repo, tag, &ve);
    int rc = 0;
    if (have == NULL && ve.code != ERR_NOT_FOUND) {
        rc = err_set(e, ve.code, "%s", ve.msg);
    } else if (have == NULL) {
        struct iv_world w;
        rc = image_catalog_world(ms, self_region, &w, e);
        if (rc == 0) {
            json_t *rec = iv_profile_new(repo, tag, self_region, def, NULL, &w, e);
            rc = rec ? image_catalog_put_version(ms, rec, e) : -1;
            *is_created = rc == 0;
            json_decref(rec);
            image_catalog_world_fini(&w);
        }
    }
    json_decref(have);
    json_decref(def);
    return rc;
}

void image_catalog_unrecord_push(struct metastore *ms, const char *repo, const char *tag)
{
    char key[NAME_MAX_BYTES + TAG_MAX_BYTES + 2];
    version_key(repo, tag, key, sizeof(key));
    struct err e = {0};
    if (ms->ops->object_delete(ms, IMAGE_VERSION_KIND, key, &e) != 0 && e.code != ERR_NOT_FOUND)
        log_warn("versions", "failed to delete the record of refused push %s: %s", key,
                 err_message(&e));
}

char *image_catalog_latest(struct metastore *ms, const char *repo, const char *region,
                           struct err *e)
{
    json_t *records =
        image_catalog_is_definition(ms, repo) ? image_catalog_versions(ms, repo, e) : NULL;
    if (records == NULL) {
        if (e->code == 0 || e->code == ERR_NOT_FOUND)
            err_set(e, ERR_MANIFEST_UNKNOWN, "no manifest with that reference");
        return NULL;
    }
    size_t n = json_array_size(records);
    struct iv_candidate *c = xcalloc(n + 1, sizeof(*c));
    for (size_t i = 0; i < n; i++) {
        c[i].record = json_array_get(records, i);
        c[i].version = json_string_value(json_object_get(c[i].record, "version"));
        struct digest d;
        char *media_type = NULL;
        int64_t size, recorded_ms;
        struct err le = {0};
        if (ms->ops->manifest_lookup(ms, repo, c[i].version, &d, &media_type, &size,
                                     &c[i].is_completed, &recorded_ms, &le) != 0)
            c[i].is_completed = false;
        free(media_type);
    }
    long best = iv_latest(c, n, region, util_now_ms());
    char *out = best >= 0 ? xstrdup(c[best].version) : NULL;
    free(c);
    json_decref(records);
    if (out == NULL)
        err_set(e, ERR_MANIFEST_UNKNOWN, "no version of %s is latest in %s", repo, region);
    return out;
}

static bool blocks_deletion(const json_t *rec, int64_t now_ms)
{
    return rec != NULL &&
           json_is_true(json_object_get(json_object_get(rec, "safetyProfile"),
                                        "blockDeletionBeforeEndOfLife")) &&
           !iv_is_end_of_life(rec, now_ms);
}

int image_catalog_check_delete(struct metastore *ms, const char *repo, const char *tag,
                               const struct digest *d, struct err *e)
{
    if (!image_catalog_is_definition(ms, repo))
        return 0;
    struct meta_name_list tags = {0};
    if (tag != NULL) {
        tags.names = xcalloc(1, sizeof(char *));
        tags.names[0] = xstrdup(tag);
        tags.n = 1;
    } else {
        struct err te = {0};
        if (ms->ops->manifest_tags(ms, repo, d, &tags, &te) != 0)
            return 0; /* unknown: the delete itself answers */
    }
    int rc = 0;
    int64_t now = util_now_ms();
    for (size_t i = 0; i < tags.n && rc == 0; i++) {
        struct err ve = {0};
        json_t *rec = image_catalog_version(ms, repo, tags.names[i], &ve);
        if (blocks_deletion(rec, now))
            rc = err_set(e, ERR_DENIED,
                         "version %s of %s may not be deleted before its end of life (%s)",
                         tags.names[i], repo,
                         json_is_string(json_object_get(json_object_get(rec, "publishingProfile"),
                                                        "endOfLifeDate"))
                             ? json_string_value(json_object_get(
                                   json_object_get(rec, "publishingProfile"), "endOfLifeDate"))
                             : "none set");
        json_decref(rec);
    }
    meta_name_list_fini(&tags);
    return rc;
}

int image_catalog_versions_of(struct metastore *ms, const char *repo, const char *tag,
                              const struct digest *d, struct meta_name_list *out, struct err *e)
{
    memset(out, 0, sizeof(*out));
    if (!image_catalog_is_definition(ms, repo))
        return 0;
    if (tag != NULL) {
        if (iv_version_parse(tag, NULL) == 0) {
            out->names = xcalloc(1, sizeof(char *));
            out->names[out->n++] = xstrdup(tag);
        }
        return 0;
    }
    struct err te = {0};
    if (ms->ops->manifest_tags(ms, repo, d, out, &te) != 0 && te.code != ERR_MANIFEST_UNKNOWN &&
        te.code != ERR_NAME_UNKNOWN)
        return err_set(e, te.code, "%s", te.msg);
    return 0;
}

int image_catalog_retire(struct metastore *ms, const char *repo, const struct meta_name_list *v,
                         struct err *e)
{
    for (size_t i = 0; i < v->n; i++) {
        char key[NAME_MAX_BYTES + TAG_MAX_BYTES + 2];
        version_key(repo, v->names[i], key, sizeof(key));
        json_t *retired = json_pack("{s:s, s:s, s:I}", "repository", repo, "version",
                                    v->names[i], "deletedMs", (json_int_t)util_now_ms());
        int rc =
            write_object(ms, ms->ops->object_put, IMAGE_VERSION_RETIRED_KIND, key, retired, e);
        json_decref(retired);
        if (rc != 0)
            return -1;
    }
    return 0;
}

void image_catalog_forget(struct metastore *ms, const char *repo, const struct meta_name_list *v)
{
    for (size_t i = 0; i < v->n; i++) {
        char key[NAME_MAX_BYTES + TAG_MAX_BYTES + 2];
        version_key(repo, v->names[i], key, sizeof(key));
        struct err e = {0};
        ms->ops->object_delete(ms, IMAGE_VERSION_KIND, key, &e); /* ERR_NOT_FOUND: none */
    }
}
