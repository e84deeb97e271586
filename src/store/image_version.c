/* Image definitions and versions: the rules (see image_version.h). Pure functions over
 * JSON records; every refusal leaves its input untouched (updates work on a copy). */
#include "image_version.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util.h"

#define IV_DEFAULT_STORAGE_CLASS "standard"
#define IV_TEXT_MAX 256

/* Versions ------------------------------------------------------------------------ */

static int parse_part(const char **p, uint32_t *out)
{
    const char *s = *p;
    if (*s < '0' || *s > '9')
        return -1;
    if (*s == '0' && s[1] >= '0' && s[1] <= '9')
        return -1; /* no leading zeros: 1.02.3 and 1.2.3 would be two names of one order */
    uint64_t v = 0;
    while (*s >= '0' && *s <= '9') {
        v = v * 10 + (uint64_t)(*s - '0');
        if (v > INT32_MAX)
            return -1;
        s++;
    }
    *out = (uint32_t)v;
    *p = s;
    return 0;
}

int iv_version_parse(const char *s, struct iv_version *out)
{
    struct iv_version v;
    if (s == NULL || parse_part(&s, &v.major) != 0 || *s++ != '.' ||
        parse_part(&s, &v.minor) != 0 || *s++ != '.' || parse_part(&s, &v.patch) != 0 || *s != '\0')
        return -1;
    if (out)
        *out = v;
    return 0;
}

int iv_version_cmp(const struct iv_version *a, const struct iv_version *b)
{
    if (a->major != b->major)
        return a->major < b->major ? -1 : 1;
    if (a->minor != b->minor)
        return a->minor < b->minor ? -1 : 1;
    if (a->patch != b->patch)
        return a->patch < b->patch ? -1 : 1;
    return 0;
}

/* Dates -------------------------------------------------------------------------- */

static bool digits(const char *s, size_t n, int *out)
{
    int v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return true;
}

int iv_date_parse(const char *s, int64_t *ms)
{
    int y, mo, d, h = 0, mi = 0, sec = 0, frac = 0;
    if (s == NULL || strlen(s) < 10 || !digits(s, 4, &y) || s[4] != '-' || !digits(s + 5, 2, &mo) ||
        s[7] != '-' || !digits(s + 8, 2, &d))
        return -1;
    const char *t = s + 10;
    if (*t != '\0') {
        if (*t != 'T' || strlen(t) < 10 || !digits(t + 1, 2, &h) || t[3] != ':' ||
            !digits(t + 4, 2, &mi) || t[6] != ':' || !digits(t + 7, 2, &sec))
            return -1;
        t += 9;
        if (*t == '.') {
            if (!digits(t + 1, 3, &frac))
                return -1;
            t += 4;
        }
        if (strcmp(t, "Z") != 0)
            return -1;
    }
    static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool is_leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    if (y < 1970 || mo < 1 || mo > 12 || d < 1 ||
        d > mdays[mo - 1] + (mo == 2 && is_leap ? 1 : 0) || h > 23 || mi > 59 || sec > 59)
        return -1;
    struct tm tm = {.tm_year = y - 1900,
                    .tm_mon = mo - 1,
                    .tm_mday = d,
                    .tm_hour = h,
                    .tm_min = mi,
                    .tm_sec = sec};
    *ms = (int64_t)timegm(&tm) * 1000 + frac;
    return 0;
}

void iv_iso_time(int64_t ms, char *out, size_t out_len)
{
    time_t s = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&s, &tm);
    snprintf(out, out_len, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ms % 1000));
}

/* Field checks --------------------------------------------------------------------- */

static const struct iv_region *region_of(const struct iv_world *w, const char *name)
{
    for (size_t i = 0; name && i < w->n_regions; i++) {
        if (strcmp(w->regions[i].name, name) == 0)
            return &w->regions[i];
    }
    return NULL;
}

/* A storage class names a kind of volume: a short lower-case word. */
static bool is_class_name(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > 32)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_'))
            return false;
    }
    return true;
}

/* Free text (a description): no control bytes but tab and newline, which would forge
 * lines or drive a terminal where the CLI prints it. */
static bool is_text(const json_t *v)
{
    if (!json_is_string(v) || json_string_length(v) > IV_TEXT_MAX)
        return false;
    const unsigned char *s = (const unsigned char *)json_string_value(v);
    for (size_t i = 0; i < json_string_length(v); i++) {
        if ((s[i] < 0x20 && s[i] != '\t' && s[i] != '\n') || s[i] == 0x7f)
            return false;
    }
    return true;
}

/* A word (os, arch): printable ASCII, no space. */
static bool is_word(const json_t *v)
{
    if (!is_text(v))
        return false;
    const unsigned char *s = (const unsigned char *)json_string_value(v);
    for (size_t i = 0; i < json_string_length(v); i++) {
        if (s[i] <= 0x20 || s[i] >= 0x7f)
            return false;
    }
    return true;
}

/* Volumes: a count must fit the region's volumes of the class (what its record
 * advertises; a region that advertises none has one volume, of any class). */
static int check_count(const struct iv_world *w, const char *region, json_int_t n,
                       const char *klass, struct err *e)
{
    const struct iv_region *r = region_of(w, region);
    if (n < 1)
        return err_set(e, ERR_BAD_REQUEST, "regionalReplicaCount of %s must be at least 1", region);
    int have = r->volumes;
    if (r->classes != NULL)
        have = (int)json_integer_value(json_object_get(r->classes, klass ? klass : ""));
    if (n > have)
        return err_set(e, ERR_BAD_REQUEST,
                       "regionalReplicaCount of %s is %lld but the region has %d volume%s of "
                       "class %s", region, (long long)n, have, have == 1 ? "" : "s",
                       klass ? klass : "(none)");
    return 0;
}

/* One target region from {"name",...} or "name[=count[=class]]" into a full TR object
 * (count and class default to dflt_count and dflt_class). */
static json_t *target_parse(const json_t *v, const struct iv_world *w, json_int_t dflt_count,
                            const char *dflt_class, struct err *e)
{
    char name[256] = "";
    json_int_t count = dflt_count;
    const char *klass = dflt_class;
    bool is_excluded = false;
    char buf[256];
    if (json_is_string(v)) {
        snprintf(buf, sizeof(buf), "%s", json_string_value(v));
        char *eq = strchr(buf, '=');
        if (eq) {
            *eq++ = '\0';
            char *eq2 = strchr(eq, '=');
            if (eq2) {
                *eq2++ = '\0';
                klass = eq2;
            }
            char *end;
            count = strtoll(eq, &end, 10);
            if (end == eq || *end != '\0') {
                err_set(e, ERR_BAD_REQUEST, "bad replica count in target region \"%s\"",
                        json_string_value(v));
                return NULL;
            }
        }
        snprintf(name, sizeof(name), "%s", buf);
    } else if (json_is_object(v)) {
        const char *key;
        json_t *f;
        json_object_foreach((json_t *)v, key, f)
        {
            if (strcmp(key, "name") == 0 && is_text(f)) {
                snprintf(name, sizeof(name), "%s", json_string_value(f));
            } else if (strcmp(key, "regionalReplicaCount") == 0 && json_is_integer(f)) {
                count = json_integer_value(f);
            } else if (strcmp(key, "storageClass") == 0 && json_is_string(f)) {
                klass = json_string_value(f);
            } else if (strcmp(key, "excludeFromLatest") == 0 && json_is_boolean(f)) {
                is_excluded = json_is_true(f);
            } else {
                err_set(e, ERR_BAD_REQUEST, "target region: bad or unknown field \"%s\"", key);
                return NULL;
            }
        }
    } else {
        err_set(e, ERR_BAD_REQUEST, "a target region is a name or an object");
        return NULL;
    }
    if (region_of(w, name) == NULL) {
        err_set(e, ERR_BAD_REQUEST, "unknown region \"%s\" (see `meridian replication list`)",
                name);
        return NULL;
    }
    if (!is_class_name(klass)) {
        err_set(e, ERR_BAD_REQUEST, "bad storage class for %s", name);
        return NULL;
    }
    if (check_count(w, name, count, klass, e) != 0)
        return NULL;
    return json_pack("{s:s, s:I, s:s, s:b}", "name", name, "regionalReplicaCount", count,
                     "storageClass", klass, "excludeFromLatest", is_excluded);
}

static json_t *find_target(json_t *list, const char *name)
{
    size_t i;
    json_t *t;
    json_array_foreach(list, i, t)
    {
        if (strcmp(json_string_value(json_object_get(t, "name")), name) == 0)
            return t;
    }
    return NULL;
}

/* Parses a whole target list into out (appending; a region named twice is refused). */
static int targets_parse(const json_t *v, const char *field, const struct iv_world *w,
                         json_int_t dflt_count, const char *dflt_class, json_t *out, struct err *e)
{
    if (!json_is_array(v))
        return err_set(e, ERR_BAD_REQUEST, "%s must be a list", field);
    size_t i;
    json_t *item;
    json_array_foreach(v, i, item)
    {
        json_t *t = target_parse(item, w, dflt_count, dflt_class, e);
        if (t == NULL)
            return -1;
        const char *name = json_string_value(json_object_get(t, "name"));
        if (find_target(out, name) != NULL) {
            err_set(e, ERR_BAD_REQUEST, "%s names region %s twice", field, name);
            json_decref(t); /* after the message: name is t's */
            return -1;
        }
        json_array_append_new(out, t);
    }
    return 0;
}

/* Definitions ------------------------------------------------------------------------ */

/* {"keepEverywhere":N>=1,"rollbackRegions":[names],"rollbackDays":D>=0}, all required. */
static json_t *retention_parse(const json_t *v, const struct iv_world *w, struct err *e)
{
    json_t *keep = json_object_get(v, "keepEverywhere");
    json_t *regions = json_object_get(v, "rollbackRegions");
    json_t *days = json_object_get(v, "rollbackDays");
    if (!json_is_object(v) || json_object_size(v) != 3 || !json_is_integer(keep) ||
        json_integer_value(keep) < 1 || !json_is_array(regions) || !json_is_integer(days) ||
        json_integer_value(days) < 0 || json_integer_value(days) > 36500) {
        err_set(e, ERR_BAD_REQUEST,
                "retention is {keepEverywhere >= 1, rollbackRegions [...], rollbackDays >= 0}");
        return NULL;
    }
    size_t i;
    json_t *n;
    json_array_foreach(regions, i, n)
    {
        if (region_of(w, json_string_value(n)) == NULL) {
            err_set(e, ERR_BAD_REQUEST, "retention: unknown region \"%s\"",
                    json_is_string(n) ? json_string_value(n) : "(not a name)");
            return NULL;
        }
    }
    return json_deep_copy(v);
}

json_t *iv_definition_new(const char *repo, const json_t *body, const struct iv_world *w,
                          struct err *e)
{
    json_t *d =
        json_pack("{s:s, s:s, s:s, s:s, s:[], s:i, s:s, s:b}", "repository", repo, "description",
                  "", "os", "", "arch", "", "defaultTargetRegions", "defaultReplicaCount", 1,
                  "defaultStorageClass", IV_DEFAULT_STORAGE_CLASS, "excludeFromLatest", 0);
    const char *key;
    json_t *f;
    /* Scalars first: the default count and class apply to the targets named after. */
    json_object_foreach((json_t *)body, key, f)
    {
        if (strcmp(key, "description") == 0 || strcmp(key, "os") == 0 || strcmp(key, "arch") == 0) {
            bool is_ok = strcmp(key, "description") == 0 ? is_text(f)
                         : json_string_length(f) == 0     ? json_is_string(f)
                                                          : is_word(f);
            if (!is_ok) {
                err_set(e, ERR_BAD_REQUEST,
                        "%s must be a string of at most %d bytes without control characters "
                        "(os, arch: printable ASCII, no space)",
                        key, IV_TEXT_MAX);
                goto fail;
            }
            json_object_set(d, key, f);
        } else if (strcmp(key, "defaultReplicaCount") == 0) {
            if (!json_is_integer(f) || json_integer_value(f) < 1) {
                err_set(e, ERR_BAD_REQUEST, "defaultReplicaCount must be at least 1");
                goto fail;
            }
            json_object_set(d, key, f);
        } else if (strcmp(key, "defaultStorageClass") == 0) {
            if (!is_class_name(json_string_value(f))) {
                err_set(e, ERR_BAD_REQUEST, "bad defaultStorageClass");
                goto fail;
            }
            json_object_set(d, key, f);
        } else if (strcmp(key, "excludeFromLatest") == 0) {
            if (!json_is_boolean(f)) {
                err_set(e, ERR_BAD_REQUEST, "excludeFromLatest must be true or false");
                goto fail;
            }
            json_object_set(d, key, f);
        } else if (strcmp(key, "allowVersionReuse") == 0) {
            if (!json_is_boolean(f)) {
                err_set(e, ERR_BAD_REQUEST, "allowVersionReuse must be true or false");
                goto fail;
            }
            json_object_set(d, key, f);
        } else if (strcmp(key, "retention") == 0) {
            json_t *r = retention_parse(f, w, e);
            if (r == NULL)
                goto fail;
            json_object_set_new(d, key, r);
        } else if (strcmp(key, "defaultTargetRegions") != 0) {
            err_set(e, ERR_BAD_REQUEST, "unknown field \"%s\"", key);
            goto fail;
        }
    }
    json_int_t count = json_integer_value(json_object_get(d, "defaultReplicaCount"));
    const char *klass = json_string_value(json_object_get(d, "defaultStorageClass"));
    const json_t *targets = json_object_get(body, "defaultTargetRegions");
    if (targets && targets_parse(targets, "defaultTargetRegions", w, count, klass,
                                 json_object_get(d, "defaultTargetRegions"), e) != 0)
        goto fail;
    /* With no list, every region is a target: the count must fit each of them. */
    for (size_t i = 0; !targets && i < w->n_regions; i++) {
        if (check_count(w, w->regions[i].name, count, klass, e) != 0)
            goto fail;
    }
    char now[40];
    iv_iso_time(w->now_ms, now, sizeof(now));
    json_object_set_new(d, "createdAt", json_string(now));
    return d;
fail:
    json_decref(d);
    return NULL;
}

/* Versions' profiles ------------------------------------------------------------------ */

/* The fields of an update body, flattened (ACG nests them in two objects). */
static json_t *flatten(const json_t *body, struct err *e)
{
    json_t *flat = json_object();
    const char *key;
    json_t *f;
    json_object_foreach((json_t *)body, key, f)
    {
        if (strcmp(key, "publishingProfile") == 0 || strcmp(key, "safetyProfile") == 0) {
            if (!json_is_object(f)) {
                json_decref(flat);
                err_set(e, ERR_BAD_REQUEST, "%s must be an object", key);
                return NULL;
            }
            json_object_update(flat, f);
        } else {
            json_object_set(flat, key, f);
        }
    }
    return flat;
}

static bool has_source(const json_t *pp, const char *source)
{
    return find_target(json_object_get(pp, "targetRegions"), source) != NULL;
}

/* rec's targets changed from old_targets at now_ms: a region that left is Removing from
 * then on (until it reports Removed), one that is a target again is not. */
static void note_removals(json_t *rec, const json_t *old_targets, int64_t now_ms)
{
    json_t *targets = json_object_get(json_object_get(rec, "publishingProfile"), "targetRegions");
    json_t *removing = json_object_get(rec, "removingRegions");
    json_t *kept = json_array();
    size_t i;
    json_t *r;
    json_array_foreach(removing, i, r)
    {
        if (find_target(targets, json_string_value(json_object_get(r, "name"))) == NULL)
            json_array_append(kept, r);
    }
    json_array_foreach(old_targets, i, r)
    {
        const char *name = json_string_value(json_object_get(r, "name"));
        if (find_target(targets, name) != NULL)
            continue;
        for (size_t j = 0; j < json_array_size(kept); j++) {
            if (strcmp(json_string_value(json_object_get(json_array_get(kept, j), "name")), name) ==
                0)
                json_array_remove(kept, j--);
        }
        json_array_append_new(kept,
                              json_pack("{s:s, s:I}", "name", name, "sinceMs", (json_int_t)now_ms));
    }
    if (json_array_size(kept) > 0)
        json_object_set_new(rec, "removingRegions", kept);
    else {
        json_object_del(rec, "removingRegions");
        json_decref(kept);
    }
}

/* Applies flat fields to rec (a private copy). is_new: addRegions/removeRegions are
 * not accepted, and the source region is added rather than required. */
static int apply(json_t *rec, const json_t *flat, bool is_new, const struct iv_world *w,
                 struct err *e)
{
    json_t *pp = json_object_get(rec, "publishingProfile");
    json_t *sp = json_object_get(rec, "safetyProfile");
    const char *source = json_string_value(json_object_get(rec, "sourceRegion"));
    const char *key;
    json_t *f;
    json_object_foreach((json_t *)flat, key, f)
    {
        if (strcmp(key, "replicaCount") == 0) {
            if (!json_is_integer(f))
                return err_set(e, ERR_BAD_REQUEST, "replicaCount must be a number");
            json_object_set(pp, key, f);
        } else if (strcmp(key, "storageClass") == 0) {
            if (!is_class_name(json_string_value(f)))
                return err_set(e, ERR_BAD_REQUEST, "bad storageClass");
            json_object_set(pp, key, f);
        } else if (strcmp(key, "excludeFromLatest") == 0) {
            if (!json_is_boolean(f))
                return err_set(e, ERR_BAD_REQUEST, "excludeFromLatest must be true or false");
            json_object_set(pp, key, f);
        } else if (strcmp(key, "endOfLifeDate") == 0) {
            int64_t ms;
            if (json_is_null(f)) {
                json_object_set_new(pp, key, json_null());
                continue;
            }
            if (iv_date_parse(json_string_value(f), &ms) != 0)
                return err_set(e, ERR_BAD_REQUEST,
                               "endOfLifeDate must be YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ");
            char iso[40];
            iv_iso_time(ms, iso, sizeof(iso));
            json_object_set_new(pp, key, json_string(iso));
        } else if (strcmp(key, "replicationMode") == 0) {
            const char *m = json_string_value(f);
            if (m == NULL || (strcmp(m, "Full") != 0 && strcmp(m, "Shallow") != 0))
                return err_set(e, ERR_BAD_REQUEST, "replicationMode is Full or Shallow");
            json_object_set(pp, key, f);
        } else if (strcmp(key, "allowDeletionOfReplicatedLocations") == 0 ||
                   strcmp(key, "blockDeletionBeforeEndOfLife") == 0) {
            if (!json_is_boolean(f))
                return err_set(e, ERR_BAD_REQUEST, "%s must be true or false", key);
            json_object_set(sp, key, f);
        } else if (strcmp(key, "targetRegions") == 0 ||
                   (!is_new &&
                    (strcmp(key, "addRegions") == 0 || strcmp(key, "removeRegions") == 0))) {
            continue; /* below, once counts and classes are known */
        } else {
            return err_set(e, ERR_BAD_REQUEST, "unknown field \"%s\"", key);
        }
    }
    json_int_t count = json_integer_value(json_object_get(pp, "replicaCount"));
    const char *klass = json_string_value(json_object_get(pp, "storageClass"));
    json_t *old = json_deep_copy(json_object_get(pp, "targetRegions"));
    const json_t *targets = json_object_get(flat, "targetRegions");
    if (targets) {
        json_t *list = json_array();
        json_object_set_new(pp, "targetRegions", list);
        if (targets_parse(targets, "targetRegions", w, count, klass, list, e) != 0)
            goto fail;
    }
    const json_t *add = json_object_get(flat, "addRegions");
    if (add) {
        json_t *more = json_array();
        if (targets_parse(add, "addRegions", w, count, klass, more, e) != 0) {
            json_decref(more);
            goto fail;
        }
        size_t i;
        json_t *t;
        json_array_foreach(more, i, t)
        {
            json_t *list = json_object_get(pp, "targetRegions");
            json_t *have = find_target(list, json_string_value(json_object_get(t, "name")));
            if (have)
                json_object_update(have, t); /* adding a target again changes its count */
            else
                json_array_append(list, t);
        }
        json_decref(more);
    }
    const json_t *drop = json_object_get(flat, "removeRegions");
    if (drop) {
        if (!json_is_array(drop)) {
            err_set(e, ERR_BAD_REQUEST, "removeRegions must be a list of names");
            goto fail;
        }
        size_t i;
        json_t *n;
        json_array_foreach(drop, i, n)
        {
            const char *name = json_string_value(n);
            json_t *list = json_object_get(pp, "targetRegions");
            if (name == NULL || find_target(list, name) == NULL) {
                err_set(e, ERR_BAD_REQUEST, "%s is not a target region of this version",
                        name ? name : "(not a name)");
                goto fail;
            }
            for (size_t j = 0; j < json_array_size(list); j++) {
                if (strcmp(json_string_value(json_object_get(json_array_get(list, j), "name")),
                           name) == 0)
                    json_array_remove(list, j);
            }
        }
    }
    /* Per-target counts that were not named keep their own; every one must fit. */
    size_t i;
    json_t *t;
    json_array_foreach(json_object_get(pp, "targetRegions"), i, t)
    {
        const char *name = json_string_value(json_object_get(t, "name"));
        if (check_count(w, name, json_integer_value(json_object_get(t, "regionalReplicaCount")),
                        json_string_value(json_object_get(t, "storageClass")), e) != 0)
            goto fail;
    }
    if (count < 1) {
        err_set(e, ERR_BAD_REQUEST, "replicaCount must be at least 1");
        goto fail;
    }
    if (!has_source(pp, source)) {
        if (!is_new) {
            err_set(e, ERR_BAD_REQUEST,
                    "%s is the source region of this version and always a target", source);
            goto fail;
        }
        if (check_count(w, source, count, klass, e) != 0)
            goto fail;
        json_t *src = json_pack("{s:s, s:I, s:s, s:b}", "name", source, "regionalReplicaCount",
                                count, "storageClass", klass, "excludeFromLatest", 0);
        json_array_insert_new(json_object_get(pp, "targetRegions"), 0, src);
    }
    /* Removing a region deletes its copies there: only when the profile allows it. */
    json_array_foreach(old, i, t)
    {
        const char *name = json_string_value(json_object_get(t, "name"));
        if (!is_new && find_target(json_object_get(pp, "targetRegions"), name) == NULL &&
            !json_is_true(json_object_get(sp, "allowDeletionOfReplicatedLocations"))) {
            err_set(e, ERR_CONFLICT,
                    "removing %s deletes its copies: set allowDeletionOfReplicatedLocations", name);
            goto fail;
        }
    }
    if (!is_new)
        note_removals(rec, old, w->now_ms);
    json_decref(old);
    return 0;
fail:
    json_decref(old);
    return -1;
}

json_t *iv_profile_new(const char *repo, const char *version, const char *source_region,
                       const json_t *definition, const json_t *body, const struct iv_world *w,
                       struct err *e)
{
    if (iv_version_parse(version, NULL) != 0) {
        err_set(e, ERR_BAD_REQUEST, "version \"%s\" is not MAJOR.MINOR.PATCH", version);
        return NULL;
    }
    if (region_of(w, source_region) == NULL) {
        err_set(e, ERR_BAD_REQUEST, "unknown source region %s", source_region);
        return NULL;
    }
    json_t *dflt = json_object_get(definition, "defaultReplicaCount");
    json_t *klass = json_object_get(definition, "defaultStorageClass");
    char now[40];
    iv_iso_time(w->now_ms, now, sizeof(now));
    json_t *pp =
        json_pack("{s:[], s:I, s:s, s:b, s:n, s:s, s:s}", "targetRegions", "replicaCount",
                  dflt ? json_integer_value(dflt) : (json_int_t)1, "storageClass",
                  klass ? json_string_value(klass) : IV_DEFAULT_STORAGE_CLASS, "excludeFromLatest",
                  json_is_true(json_object_get(definition, "excludeFromLatest")), "endOfLifeDate",
                  "replicationMode", "Full", "publishedDate", now);
    json_t *rec =
        json_pack("{s:s, s:s, s:s, s:o, s:{s:b, s:b}}", "repository", repo, "version", version,
                  "sourceRegion", source_region, "publishingProfile", pp, "safetyProfile",
                  "allowDeletionOfReplicatedLocations", 0, "blockDeletionBeforeEndOfLife", 0);
    json_t *flat = body ? flatten(body, e) : json_object();
    if (flat == NULL)
        goto fail;
    if (json_object_get(flat, "targetRegions") == NULL) {
        /* The definition's defaults, else every region. */
        json_t *d = json_object_get(definition, "defaultTargetRegions");
        json_t *list = json_array();
        if (json_array_size(d) > 0) {
            json_array_extend(list, d);
        } else {
            for (size_t i = 0; i < w->n_regions; i++)
                json_array_append_new(list, json_string(w->regions[i].name));
        }
        json_object_set_new(flat, "targetRegions", list);
    }
    if (apply(rec, flat, true, w, e) != 0)
        goto fail;
    json_decref(flat);
    return rec;
fail:
    json_decref(flat);
    json_decref(rec);
    return NULL;
}

json_t *iv_profile_update(const json_t *record, const json_t *body, const struct iv_world *w,
                          struct err *e)
{
    json_t *rec = json_deep_copy(record);
    json_t *flat = flatten(body, e);
    if (flat == NULL || apply(rec, flat, false, w, e) != 0) {
        json_decref(flat);
        json_decref(rec);
        return NULL;
    }
    json_decref(flat);
    return rec;
}

/* Placement and latest --------------------------------------------------------------- */

static json_t *target_of(const json_t *record, const char *region)
{
    return find_target(
        json_object_get(json_object_get(record, "publishingProfile"), "targetRegions"), region);
}

bool iv_holds(const json_t *record, const char *region)
{
    return target_of(record, region) != NULL;
}

bool iv_is_shallow_here(const json_t *record, const char *region)
{
    const char *mode = json_string_value(
        json_object_get(json_object_get(record, "publishingProfile"), "replicationMode"));
    const char *source = json_string_value(json_object_get(record, "sourceRegion"));
    return iv_holds(record, region) && mode != NULL && strcmp(mode, "Shallow") == 0 &&
           (source == NULL || strcmp(source, region) != 0);
}

bool iv_referrer_tag(const char *tag, char subject[DIGEST_STR_MAX])
{
    static const char *const kinds[] = {".sig", ".att", ".sbom"};
    if (strncmp(tag, "sha256-", 7) != 0 || strlen(tag) < 7 + 64)
        return false;
    for (size_t i = 7; i < 7 + 64; i++) {
        if (!((tag[i] >= '0' && tag[i] <= '9') || (tag[i] >= 'a' && tag[i] <= 'f')))
            return false;
    }
    for (size_t k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++) {
        if (strcmp(tag + 7 + 64, kinds[k]) == 0) {
            if (subject != NULL)
                snprintf(subject, DIGEST_STR_MAX, "sha256:%.64s", tag + 7);
            return true;
        }
    }
    return false;
}

const char **iv_targets(const json_t *record)
{
    json_t *list = json_object_get(json_object_get(record, "publishingProfile"), "targetRegions");
    const char **out = xcalloc(json_array_size(list) + 1, sizeof(*out));
    for (size_t i = 0; i < json_array_size(list); i++)
        out[i] = json_string_value(json_object_get(json_array_get(list, i), "name"));
    return out;
}

bool iv_is_excluded(const json_t *record, const char *region)
{
    json_t *pp = json_object_get(record, "publishingProfile");
    if (json_is_true(json_object_get(pp, "excludeFromLatest")))
        return true;
    json_t *t = target_of(record, region);
    return t != NULL && json_is_true(json_object_get(t, "excludeFromLatest"));
}

bool iv_is_end_of_life(const json_t *record, int64_t now_ms)
{
    const char *eol = json_string_value(
        json_object_get(json_object_get(record, "publishingProfile"), "endOfLifeDate"));
    int64_t ms;
    return eol != NULL && iv_date_parse(eol, &ms) == 0 && now_ms >= ms;
}

long iv_latest(const struct iv_candidate *c, size_t n, const char *region, int64_t now_ms)
{
    long best = -1;
    struct iv_version best_v = {0};
    for (size_t i = 0; i < n; i++) {
        struct iv_version v;
        if (iv_version_parse(c[i].version, &v) != 0 || !c[i].is_completed ||
            !iv_holds(c[i].record, region) || iv_is_excluded(c[i].record, region) ||
            iv_is_end_of_life(c[i].record, now_ms))
            continue;
        if (best < 0 || iv_version_cmp(&v, &best_v) > 0) {
            best = (long)i;
            best_v = v;
        }
    }
    return best;
}

const char *iv_aggregate(const char *const *states, size_t n)
{
    size_t completed = 0, started = 0;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(states[i], "Failed") == 0)
            return "Failed";
        completed += strcmp(states[i], "Completed") == 0;
        started += strcmp(states[i], "InProgress") == 0;
    }
    if (n > 0 && completed == n)
        return "Completed";
    return started + completed > 0 ? "InProgress" : "Pending";
}

/* Retention -------------------------------------------------------------------------------- */

static bool is_named(const json_t *names, const char *name)
{
    size_t i;
    json_t *n;
    json_array_foreach(names, i, n)
    {
        if (json_is_string(n) && strcmp(json_string_value(n), name) == 0)
            return true;
    }
    return false;
}

json_t *iv_retention_apply(const json_t *definition, const json_t *records, size_t i,
                           int64_t now_ms)
{
    json_t *ret = json_object_get(definition, "retention");
    size_t n = json_array_size(records);
    if (ret == NULL || i >= n)
        return NULL;
    size_t keep = (size_t)json_integer_value(json_object_get(ret, "keepEverywhere"));
    if (i + keep >= n)
        return NULL; /* among the newest keep */
    /* It left the newest `keep` when the version `keep` places above it was published. */
    const char *since = json_string_value(json_object_get(
        json_object_get(json_array_get(records, i + keep), "publishingProfile"), "publishedDate"));
    int64_t since_ms;
    if (since == NULL || iv_date_parse(since, &since_ms) != 0)
        return NULL;
    int64_t days = json_integer_value(json_object_get(ret, "rollbackDays"));
    if (now_ms < since_ms + days * 86400000)
        return NULL;
    const json_t *rec = json_array_get(records, i);
    const char *source = json_string_value(json_object_get(rec, "sourceRegion"));
    json_t *keep_in = json_object_get(ret, "rollbackRegions");
    json_t *out = json_deep_copy(rec);
    json_t *list = json_object_get(json_object_get(out, "publishingProfile"), "targetRegions");
    bool is_changed = false;
    for (size_t j = json_array_size(list); j-- > 0;) {
        const char *name = json_string_value(json_object_get(json_array_get(list, j), "name"));
        if (strcmp(name, source) != 0 && !is_named(keep_in, name)) {
            json_array_remove(list, j);
            is_changed = true;
        }
    }
    if (!is_changed) {
        json_decref(out);
        return NULL;
    }
    note_removals(out, json_object_get(json_object_get(rec, "publishingProfile"), "targetRegions"),
                  now_ms);
    return out;
}
