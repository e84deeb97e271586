/* JSON for events and the compact version-vector form used in query strings. */
#include "repl_codec.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "digest.h"
#include "hlc.h"
#include "name.h"
#include "util.h"

bool repl_codec_is_valid_region(const char *s)
{
    return s != NULL && config_is_valid_region(s);
}

static void field(struct buf *out, const char *name, const char *v)
{
    if (v == NULL)
        return;
    buf_printf(out, ",\"%s\":", name);
    buf_append_json_string(out, v);
}

void repl_codec_event_to_json(const struct meta_event *ev, struct buf *out)
{
    buf_printf(out, "{\"seq\":%" PRId64 ",\"originSeq\":%" PRId64 ",\"hlc\":%" PRIu64,
               ev->seq, ev->origin_seq, ev->hlc);
    field(out, "origin", ev->origin);
    field(out, "kind", ev->kind);
    field(out, "repo", ev->repo);
    field(out, "name", ev->name);
    field(out, "digest", ev->digest);
    if (ev->payload) {
        buf_appends(out, ",\"payload\":");
        buf_appends(out, ev->payload);
    }
    buf_append(out, "}", 1);
}

static char *opt_string(json_t *obj, const char *key, bool *is_bad)
{
    json_t *v = json_object_get(obj, key);
    if (v == NULL || json_is_null(v))
        return NULL;
    if (!json_is_string(v)) {
        *is_bad = true;
        return NULL;
    }
    return xstrdup(json_string_value(v));
}

int repl_codec_event_from_json(json_t *obj, struct meta_event *out, struct err *e)
{
    memset(out, 0, sizeof(*out));
    if (!json_is_object(obj))
        return err_set(e, ERR_BAD_REQUEST, "event is not an object");
    json_t *seq = json_object_get(obj, "seq"), *oseq = json_object_get(obj, "originSeq"),
           *hlc = json_object_get(obj, "hlc");
    if (!json_is_integer(seq) || !json_is_integer(oseq) || !json_is_integer(hlc) ||
        json_integer_value(oseq) < 1 || json_integer_value(seq) < 0 ||
        json_integer_value(hlc) < 0 || (uint64_t)json_integer_value(hlc) >= HLC_MAX_VALID)
        return err_set(e, ERR_BAD_REQUEST,
                       "event: seq, originSeq and hlc must be integers in range");
    out->seq = json_integer_value(seq);
    out->origin_seq = json_integer_value(oseq);
    out->hlc = (uint64_t)json_integer_value(hlc);
    bool is_bad = false;
    out->origin = opt_string(obj, "origin", &is_bad);
    out->kind = opt_string(obj, "kind", &is_bad);
    out->repo = opt_string(obj, "repo", &is_bad);
    out->name = opt_string(obj, "name", &is_bad);
    out->digest = opt_string(obj, "digest", &is_bad);
    json_t *payload = json_object_get(obj, "payload");
    if (payload && !json_is_null(payload)) {
        if (!json_is_object(payload))
            is_bad = true;
        else
            out->payload = json_dumps(payload, JSON_COMPACT);
    }
    if (is_bad || out->kind == NULL || !repl_codec_is_valid_region(out->origin)) {
        meta_event_fini(out);
        return err_set(e, ERR_BAD_REQUEST, "event: bad origin, kind or field type");
    }
    /* Names a client could never have pushed would be served to every region's clients
     * (and could not be deleted through /v2/): the same grammar as there. */
    bool is_tag = strcmp(out->kind, "tag_set") == 0 || strcmp(out->kind, "tag_delete") == 0;
    struct digest d;
    struct err de = {0};
    if ((out->repo != NULL && !name_is_valid_repo(out->repo, strlen(out->repo))) ||
        (is_tag && (out->name == NULL || !name_is_valid_tag(out->name, strlen(out->name)))) ||
        (out->digest != NULL && digest_parse(out->digest, strlen(out->digest), &d, &de) != 0)) {
        meta_event_fini(out);
        return err_set(e, ERR_BAD_REQUEST, "event: bad repository, tag or digest");
    }
    return 0;
}

void repl_codec_vv_to_string(const struct meta_vv *vv, struct buf *out)
{
    for (size_t i = 0; i < vv->n; i++)
        buf_printf(out, "%s%s:%" PRId64, i ? "," : "", vv->origins[i], vv->seqs[i]);
}

static bool has_origin(const struct meta_vv *vv, const char *name)
{
    for (size_t i = 0; i < vv->n; i++) {
        if (strcmp(vv->origins[i], name) == 0)
            return true;
    }
    return false;
}

int repl_codec_vv_parse(const char *s, struct meta_vv *out, struct err *e)
{
    memset(out, 0, sizeof(*out));
    if (s == NULL || *s == '\0')
        return 0;
    const char *p = s;
    while (*p) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        const char *colon = memchr(p, ':', len);
        uint64_t seq;
        if (colon == NULL || out->n >= 1024)
            goto bad;
        char *name = xstrndup(p, (size_t)(colon - p));
        if (!repl_codec_is_valid_region(name) || has_origin(out, name) ||
            util_parse_u64(colon + 1, len - (size_t)(colon - p) - 1, &seq) != 0 ||
            seq > INT64_MAX) {
            free(name);
            goto bad;
        }
        out->origins = xrealloc(out->origins, (out->n + 1) * sizeof(char *));
        out->seqs = xrealloc(out->seqs, (out->n + 1) * sizeof(int64_t));
        out->origins[out->n] = name;
        out->seqs[out->n++] = (int64_t)seq;
        if (comma == NULL)
            break;
        p = comma + 1;
    }
    return 0;
bad:
    meta_vv_fini(out);
    return err_set(e, ERR_BAD_REQUEST, "bad version vector");
}
