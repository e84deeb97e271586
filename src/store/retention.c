/* Retention rules per repository pattern (retention.h): encoding and selection. */
#include "retention.h"

#include <fnmatch.h>
#include <stdlib.h>
#include <string.h>

#include "hlc.h"
#include "name.h"
#include "util.h"

static void rule_fini(struct retention_rule *r)
{
    free(r->pattern);
    free(r->tags);
    memset(r, 0, sizeof(*r));
}

void retention_rules_fini(struct retention_rules *r)
{
    if (r == NULL)
        return;
    for (size_t i = 0; i < r->n; i++)
        rule_fini(&r->items[i]);
    free(r->items);
    memset(r, 0, sizeof(*r));
}

/* -1 when absent; -2 when present but not an integer >= 0. */
static int64_t opt_count(const json_t *o, const char *key)
{
    const json_t *v = json_object_get(o, key);
    if (v == NULL || json_is_null(v))
        return -1;
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return -2;
    return (int64_t)json_integer_value(v);
}

/* A duration in seconds, as opt_count, and -2 past RETENTION_DURATION_MAX_S: callers turn
 * it into milliseconds before now, where 2^63 - 1 would wrap round and select every tag. */
static int64_t opt_duration(const json_t *o, const char *key)
{
    int64_t s = opt_count(o, key);
    return s > RETENTION_DURATION_MAX_S ? -2 : s;
}

/* A tag glob: printable ASCII without space (tags are [A-Za-z0-9_.-], plus glob bytes). */
static bool is_tag_glob(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7f)
            return false;
    }
    return len > 0;
}

int retention_rule_parse(const char *pattern, const char *value, struct retention_rule *out)
{
    memset(out, 0, sizeof(*out));
    json_t *v = json_loads(value, 0, NULL);
    const char *tags = json_string_value(json_object_get(v, "tags"));
    out->keep_newest = opt_count(v, "keepNewest");
    out->older_than_s = opt_duration(v, "olderThanS");
    out->untagged_after_s = opt_duration(v, "untaggedAfterS");
    out->pulled_within_s = opt_duration(v, "pulledWithinS");
    bool is_ok = json_is_object(v) && out->keep_newest >= -1 && out->older_than_s >= -1 &&
                 out->untagged_after_s >= -1 && out->pulled_within_s >= -1;
    if (!is_ok) {
        json_decref(v);
        memset(out, 0, sizeof(*out));
        return -1;
    }
    out->pattern = xstrdup(pattern);
    out->tags = xstrdup(tags != NULL ? tags : "*");
    json_decref(v);
    return 0;
}

int retention_rules_load(struct metastore *ms, struct retention_rules *out, struct err *e)
{
    memset(out, 0, sizeof(*out));
    struct meta_name_list keys = {0}, values = {0};
    if (ms->ops->object_list(ms, RETENTION_KIND, &keys, &values, e) != 0)
        return -1;
    out->items = xcalloc(keys.n + 1, sizeof(out->items[0]));
    for (size_t i = 0; i < keys.n; i++)
        if (retention_rule_parse(keys.names[i], values.names[i], &out->items[out->n]) == 0)
            out->n++;
    meta_name_list_fini(&keys);
    meta_name_list_fini(&values);
    return 0;
}

char *retention_rule_value(const json_t *body, const char **pattern, struct err *e)
{
    *pattern = json_string_value(json_object_get(body, "pattern"));
    const json_t *tags = json_object_get(body, "tags");
    int64_t keep = opt_count(body, "keepNewest"), older = opt_duration(body, "olderThanS"),
            untagged = opt_duration(body, "untaggedAfterS"),
            pulled = opt_duration(body, "pulledWithinS");
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)body, key, v)
    {
        if (strcmp(key, "pattern") != 0 && strcmp(key, "tags") != 0 &&
            strcmp(key, "keepNewest") != 0 && strcmp(key, "olderThanS") != 0 &&
            strcmp(key, "untaggedAfterS") != 0 && strcmp(key, "pulledWithinS") != 0) {
            err_set(e, ERR_BAD_REQUEST, "unknown member %s", key);
            return NULL;
        }
    }
    if (*pattern == NULL || **pattern == '\0' || strlen(*pattern) > 255) {
        err_set(e, ERR_BAD_REQUEST, "pattern: expected a repository pattern");
        return NULL;
    }
    if (tags != NULL && (!json_is_string(tags) || json_string_length(tags) > 128 ||
                         !is_tag_glob(json_string_value(tags), json_string_length(tags)))) {
        err_set(e, ERR_BAD_REQUEST,
                "tags: expected a tag glob of 1 to 128 printable ASCII characters");
        return NULL;
    }
    if (keep < -1 || older < -1 || untagged < -1 || pulled < -1) {
        err_set(e, ERR_BAD_REQUEST,
                "keepNewest, olderThanS, untaggedAfterS, pulledWithinS: expected integers >= 0 "
                "(durations at most %lld s)",
                (long long)RETENTION_DURATION_MAX_S);
        return NULL;
    }
    if (keep < 0 && older < 0 && untagged < 0 && pulled < 0) {
        err_set(e, ERR_BAD_REQUEST,
                "expected at least one of keepNewest, olderThanS, "
                "untaggedAfterS, pulledWithinS");
        return NULL;
    }
    json_t *out = json_pack("{s:s}", "tags", tags != NULL ? json_string_value(tags) : "*");
    if (keep >= 0)
        json_object_set_new(out, "keepNewest", json_integer(keep));
    if (older >= 0)
        json_object_set_new(out, "olderThanS", json_integer(older));
    if (untagged >= 0)
        json_object_set_new(out, "untaggedAfterS", json_integer(untagged));
    if (pulled >= 0)
        json_object_set_new(out, "pulledWithinS", json_integer(pulled));
    char *text = json_dumps(out, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(out);
    return text;
}

json_t *retention_rule_to_json(const struct retention_rule *r)
{
    json_t *o = json_pack("{s:s,s:s}", "pattern", r->pattern, "tags", r->tags);
    if (r->keep_newest >= 0)
        json_object_set_new(o, "keepNewest", json_integer(r->keep_newest));
    if (r->older_than_s >= 0)
        json_object_set_new(o, "olderThanS", json_integer(r->older_than_s));
    if (r->untagged_after_s >= 0)
        json_object_set_new(o, "untaggedAfterS", json_integer(r->untagged_after_s));
    if (r->pulled_within_s >= 0)
        json_object_set_new(o, "pulledWithinS", json_integer(r->pulled_within_s));
    return o;
}

int64_t retention_untagged_after_s(const struct retention_rules *r, const char *repo,
                                   int64_t default_s)
{
    int64_t grace = -1;
    for (size_t i = 0; i < r->n; i++) {
        int64_t u = r->items[i].untagged_after_s;
        if (u < 0 || !name_matches_pattern(r->items[i].pattern, repo))
            continue;
        if (u == 0)
            return 0; /* one rule says keep: the safe side wins */
        if (u > grace)
            grace = u;
    }
    return grace >= 0 ? grace : default_s;
}

int64_t retention_untagged_min_s(const struct retention_rules *r, int64_t default_s)
{
    int64_t least = default_s > 0 ? default_s : 0;
    for (size_t i = 0; i < r->n; i++) {
        int64_t u = r->items[i].untagged_after_s;
        if (u > 0 && (least == 0 || u < least))
            least = u;
    }
    return least;
}

/* Newest first by (hlc, origin): the order of last-writer-wins, the same everywhere. */
static int newest_first(const void *a, const void *b)
{
    const struct retention_tag *x = a, *y = b;
    if (hlc_lww_wins((uint64_t)x->hlc, x->origin, (uint64_t)y->hlc, y->origin))
        return -1;
    if (hlc_lww_wins((uint64_t)y->hlc, y->origin, (uint64_t)x->hlc, x->origin))
        return 1;
    return strcmp(x->name, y->name);
}

void retention_select(const struct retention_rule *rule, struct retention_tag *tags, size_t n,
                      int64_t now_ms)
{
    if (n > 0)
        qsort(tags, n, sizeof(tags[0]), newest_first);
    int64_t kept = 0;
    for (size_t i = 0; i < n; i++) {
        tags[i].is_selected = false;
        tags[i].is_kept_by_pull = false;
        if (rule->keep_newest < 0 && rule->older_than_s < 0 && rule->pulled_within_s < 0)
            continue; /* an untagged-only rule */
        if (fnmatch(rule->tags, tags[i].name, 0) != 0)
            continue;
        if (rule->keep_newest >= 0 && kept < rule->keep_newest) {
            kept++;
            continue;
        }
        /* Only P: a tag pushed within P has not had its chance to be pulled yet. */
        int64_t age_s = rule->older_than_s >= 0 ? rule->older_than_s
                        : rule->keep_newest < 0 ? rule->pulled_within_s
                                                : -1;
        bool is_old = age_s < 0 || hlc_wall_ms((uint64_t)tags[i].hlc) < now_ms - age_s * 1000;
        /* Pull times are replicated records, the same in every region once converged;
         * they lag the real pull by under the precision, which counts on the keeping side. */
        int64_t pulled_since = now_ms - rule->pulled_within_s * 1000 - PULL_RECORD_PRECISION_MS;
        bool is_pulled = rule->pulled_within_s >= 0 && tags[i].pulled_ms > 0 &&
                         tags[i].pulled_ms >= pulled_since;
        tags[i].is_selected = is_old && !is_pulled;
        tags[i].is_kept_by_pull = is_old && is_pulled;
    }
}
