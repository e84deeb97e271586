#include "repo_locks.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "name.h"
#include "util.h"

static const char *const attrs[] = {"writeEnabled", "deleteEnabled", "readEnabled",
                                    "listEnabled"};
#define N_ATTRS (sizeof(attrs) / sizeof(attrs[0]))

static bool *attr_of(struct repo_lock *l, size_t i)
{
    bool *fields[] = {&l->write_enabled, &l->delete_enabled, &l->read_enabled,
                      &l->list_enabled};
    return fields[i];
}

static void lock_key(const char *repo, const char *tag, const struct digest *d, char *out,
                     size_t n)
{
    if (tag != NULL)
        snprintf(out, n, "%s:%s", repo, tag);
    else if (d != NULL)
        snprintf(out, n, "%s@%s", repo, d->str);
    else
        snprintf(out, n, "%s", repo);
}

int repo_lock_get(struct metastore *ms, const char *repo, const char *tag,
                  const struct digest *d, struct repo_lock *out, struct err *e)
{
    *out = (struct repo_lock){true, true, true, true, false};
    char key[NAME_MAX_BYTES + DIGEST_STR_MAX + 2];
    lock_key(repo, tag, d, key, sizeof(key));
    char *text = NULL;
    struct err ge = {0};
    if (ms->ops->object_get(ms, REPO_LOCK_KIND, key, &text, &ge) != 0)
        return ge.code == ERR_NOT_FOUND ? 0 : err_set(e, ge.code, "%s", ge.msg);
    json_error_t je;
    json_t *v = json_loads(text, 0, &je);
    free(text);
    for (size_t i = 0; i < N_ATTRS; i++) {
        json_t *b = json_object_get(v, attrs[i]);
        if (json_is_boolean(b))
            *attr_of(out, i) = json_is_true(b);
    }
    json_decref(v);
    return 0;
}

int repo_lock_put(struct metastore *ms, const char *repo, const char *tag,
                  const struct digest *d, const struct repo_lock *l, struct err *e)
{
    char key[NAME_MAX_BYTES + DIGEST_STR_MAX + 2];
    lock_key(repo, tag, d, key, sizeof(key));
    json_t *v = repo_lock_to_json(l);
    char *text = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(v);
    int rc = ms->ops->object_put(ms, REPO_LOCK_KIND, key, text, e);
    free(text);
    return rc;
}

void repo_lock_effective(struct metastore *ms, const char *repo, const char *tag,
                         const struct digest *d, struct repo_lock *out)
{
    *out = (struct repo_lock){true, true, true, true, false};
    if (!ms->ops->object_kind_may_exist(ms, REPO_LOCK_KIND))
        return; /* no lock anywhere in the registry: nothing to look up */
    const char *tags[] = {NULL, tag, NULL};
    const struct digest *digests[] = {NULL, NULL, d};
    for (size_t k = 0; k < 3; k++) {
        if (k > 0 && tags[k] == NULL && digests[k] == NULL)
            continue;
        struct repo_lock one;
        struct err e = {0};
        if (repo_lock_get(ms, repo, tags[k], digests[k], &one, &e) != 0) {
            one = (struct repo_lock){false, false, true, true, false}; /* fail closed for changes */
            out->is_unknown = true;
        }
        for (size_t i = 0; i < N_ATTRS; i++)
            *attr_of(out, i) = *attr_of(out, i) && *attr_of(&one, i);
    }
}

int repo_lock_update(struct repo_lock *l, const json_t *body, struct err *e)
{
    if (!json_is_object(body))
        return err_set(e, ERR_BAD_REQUEST, "the body must be a JSON object");
    struct repo_lock next = *l;
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)body, key, v)
    {
        size_t i = 0;
        while (i < N_ATTRS && strcmp(attrs[i], key) != 0)
            i++;
        if (i == N_ATTRS)
            return err_set(e, ERR_BAD_REQUEST,
                           "unknown field \"%.60s\" (writeEnabled, deleteEnabled, readEnabled, "
                           "listEnabled)",
                           key);
        if (!json_is_boolean(v))
            return err_set(e, ERR_BAD_REQUEST, "%s must be true or false", key);
        *attr_of(&next, i) = json_is_true(v);
    }
    *l = next;
    return 0;
}

json_t *repo_lock_to_json(const struct repo_lock *l)
{
    return json_pack("{s:b, s:b, s:b, s:b}", "writeEnabled", l->write_enabled, "deleteEnabled",
                     l->delete_enabled, "readEnabled", l->read_enabled, "listEnabled",
                     l->list_enabled);
}

static void name_list_add(struct meta_name_list *l, const char *s)
{
    l->names = xrealloc(l->names, (l->n + 1) * sizeof(char *));
    l->names[l->n++] = xstrdup(s);
}

int repo_lock_unlisted(struct metastore *ms, const char *repo, struct meta_name_list *tags,
                       struct meta_name_list *digests, struct err *e)
{
    memset(tags, 0, sizeof(*tags));
    memset(digests, 0, sizeof(*digests));
    struct meta_name_list keys, values;
    if (ms->ops->object_list(ms, REPO_LOCK_KIND, &keys, &values, e) != 0)
        return -1;
    size_t len = strlen(repo);
    for (size_t i = 0; i < keys.n; i++) {
        const char *k = keys.names[i];
        if (strncmp(k, repo, len) != 0 || (k[len] != ':' && k[len] != '@'))
            continue;
        json_error_t je;
        json_t *v = json_loads(values.names[i], 0, &je);
        if (json_is_false(json_object_get(v, "listEnabled")))
            name_list_add(k[len] == ':' ? tags : digests, k + len + 1);
        json_decref(v);
    }
    meta_name_list_fini(&keys);
    meta_name_list_fini(&values);
    return 0;
}
