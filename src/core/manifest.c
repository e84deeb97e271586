/* Manifest parsing and validation (jansson lives here): OCI image manifest and
 * index, Docker schema 2 manifest and manifest list. Pure: no I/O, so it can be
 * fuzzed; whether referenced blobs exist is the caller's business. Invariant: a
 * struct manifest that parsed successfully has a known media type and only
 * canonical digests, non-NULL descriptor media types and non-negative sizes. */
#include "manifest.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "util.h"

/* Longest descriptor path we name in messages, e.g. "manifests[123456].artifactType". */
#define WHERE_MAX 48

static const char *const known_types[] = {
    MT_OCI_MANIFEST,
    MT_OCI_INDEX,
    MT_DOCKER_MANIFEST,
    MT_DOCKER_LIST,
};

/* A place a client can fetch content from: an http(s) URL without a fragment (as
 * distribution asks of a foreign layer's urls). */
static bool is_fetch_url(const char *u)
{
    size_t n = strlen(u);
    bool is_http = (n > 7 && strncasecmp(u, "http://", 7) == 0) ||
                   (n > 8 && strncasecmp(u, "https://", 8) == 0);
    return is_http && strchr(u, '#') == NULL;
}

/* A descriptor's urls: at least one, each a string is_fetch_url accepts. */
static bool has_fetch_urls(const json_t *urls)
{
    if (!json_is_array(urls) || json_array_size(urls) == 0)
        return false;
    for (size_t i = 0; i < json_array_size(urls); i++) {
        const char *u = json_string_value(json_array_get(urls, i));
        if (u == NULL || !is_fetch_url(u))
            return false;
    }
    return true;
}

bool manifest_json_desc_is_external(const json_t *desc)
{
    struct manifest_desc d = {
        .media_type = (char *)json_string_value(json_object_get(desc, "mediaType")),
        .has_urls = has_fetch_urls(json_object_get(desc, "urls")),
    };
    return manifest_desc_is_external(&d);
}

bool manifest_desc_is_external(const struct manifest_desc *d)
{
    static const char *const types[] = {
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
        "application/vnd.docker.image.rootfs.foreign.diff.tar",
        "application/vnd.oci.image.layer.nondistributable.v1.tar",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
    };
    if (!d->has_urls || d->media_type == NULL)
        return false;
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
        if (strcmp(d->media_type, types[i]) == 0)
            return true;
    }
    return false;
}

bool manifest_is_known_media_type(const char *mt)
{
    if (mt == NULL)
        return false;
    for (size_t i = 0; i < sizeof(known_types) / sizeof(known_types[0]); i++) {
        if (strcmp(mt, known_types[i]) == 0)
            return true;
    }
    return false;
}

static bool is_ows(char c)
{
    return c == ' ' || c == '\t';
}

static void trim_ows(const char **s, size_t *len)
{
    while (*len > 0 && is_ows((*s)[0])) {
        (*s)++;
        (*len)--;
    }
    while (*len > 0 && is_ows((*s)[*len - 1]))
        (*len)--;
}

/* The known manifest type a Content-Type value names (parameters and case
 * ignored, distribution-spec "Pushing manifests": the registry SHOULD ignore
 * parameters), as one of our constants; NULL for anything else. */
static const char *known_type_of_header(const char *content_type)
{
    if (content_type == NULL)
        return NULL;
    const char *s = content_type;
    const char *semi = strchr(s, ';');
    size_t len = semi ? (size_t)(semi - s) : strlen(s);
    trim_ows(&s, &len);
    for (size_t i = 0; i < sizeof(known_types) / sizeof(known_types[0]); i++) {
        if (strlen(known_types[i]) == len && strncasecmp(s, known_types[i], len) == 0)
            return known_types[i];
    }
    return NULL;
}

static bool is_restricted_name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c != '\0' && strchr("!#$&-^_.+", c) != NULL);
}

/* RFC 6838 4.2 restricted-name: first char alnum, then up to 126 restricted chars. */
static size_t restricted_name_len(const char *s)
{
    size_t i = 0;
    if (!is_restricted_name_char(s[0]) || strchr("!#$&-^_.+", s[0]) != NULL)
        return 0;
    while (is_restricted_name_char(s[i]))
        i++;
    return i <= 127 ? i : 0;
}

/* image-spec descriptor: mediaType and artifactType "MUST comply with RFC 6838,
 * including the naming requirements in its section 4.2": type "/" subtype. Checking
 * this keeps control characters and quotes out of values we later echo in headers
 * and JSON. */
static bool is_valid_media_type(const char *s)
{
    size_t n = restricted_name_len(s);
    if (n == 0 || s[n] != '/')
        return false;
    s += n + 1;
    n = restricted_name_len(s);
    return n > 0 && s[n] == '\0';
}

/* Checks an annotations value: a JSON object whose values are all strings
 * (image-spec annotations "Rules"). */
static int check_annotations(const json_t *j, const char *where, struct err *e)
{
    if (!json_is_object(j))
        return err_set(e, ERR_MANIFEST_INVALID, "%s: must be an object", where);
    for (void *it = json_object_iter((json_t *)j); it != NULL;
         it = json_object_iter_next((json_t *)j, it)) {
        if (!json_is_string(json_object_iter_value(it)))
            return err_set(e, ERR_MANIFEST_INVALID, "%s: value of every key must be a string",
                           where);
    }
    return 0;
}

/* Reads optional media-type member `key` (artifactType) of obj into *out: a copy,
 * or NULL when absent or empty. A non-empty value must be an RFC 6838 media type. */
static int get_opt_type_string(const json_t *obj, const char *key, const char *where, char **out,
                               struct err *e)
{
    *out = NULL;
    const json_t *j = json_object_get(obj, key);
    if (j == NULL)
        return 0;
    if (!json_is_string(j))
        return err_set(e, ERR_MANIFEST_INVALID, "%s%s%s: must be a string", where,
                       where[0] ? "." : "", key);
    const char *s = json_string_value(j);
    /* distribution-spec referrers: "If the artifactType is empty or missing" treats
     * the two alike, so an empty value is recorded as absent. */
    if (s[0] == '\0')
        return 0;
    if (!is_valid_media_type(s))
        return err_set(e, ERR_MANIFEST_INVALID, "%s%s%s: invalid media type", where,
                       where[0] ? "." : "", key);
    *out = xstrdup(s);
    return 0;
}

static void desc_fini(struct manifest_desc *d)
{
    FREE_AND_NULL(d->media_type);
    FREE_AND_NULL(d->artifact_type);
}

/* Parses the descriptor j named `where` (e.g. "layers[2]") into *out. image-spec
 * descriptor "Properties": mediaType, digest and size are REQUIRED. On failure *out
 * holds nothing to free. */
static int parse_desc(const json_t *j, const char *where, struct manifest_desc *out, struct err *e)
{
    struct err derr;
    memset(out, 0, sizeof(*out));
    if (!json_is_object(j))
        return err_set(e, ERR_MANIFEST_INVALID, "%s: must be an object", where);

    const json_t *mt = json_object_get(j, "mediaType");
    if (mt == NULL)
        return err_set(e, ERR_MANIFEST_INVALID, "%s.mediaType: required", where);
    if (!json_is_string(mt))
        return err_set(e, ERR_MANIFEST_INVALID, "%s.mediaType: must be a string", where);
    if (!is_valid_media_type(json_string_value(mt)))
        return err_set(e, ERR_MANIFEST_INVALID, "%s.mediaType: invalid media type", where);

    const json_t *dg = json_object_get(j, "digest");
    if (dg == NULL)
        return err_set(e, ERR_MANIFEST_INVALID, "%s.digest: required", where);
    if (!json_is_string(dg))
        return err_set(e, ERR_MANIFEST_INVALID, "%s.digest: must be a string", where);
    if (digest_parse(json_string_value(dg), json_string_length(dg), &out->digest, &derr) != 0)
        return err_set(e, ERR_MANIFEST_INVALID, "%s.digest: %s", where, err_message(&derr));

    const json_t *sz = json_object_get(j, "size");
    if (sz == NULL)
        return err_set(e, ERR_MANIFEST_INVALID, "%s.size: required", where);
    if (!json_is_integer(sz) || json_integer_value(sz) < 0)
        return err_set(e, ERR_MANIFEST_INVALID, "%s.size: must be a non-negative integer", where);
    out->size = (int64_t)json_integer_value(sz);

    /* Optional members are only type-checked: their content is the client's. */
    const json_t *ann = json_object_get(j, "annotations");
    char sub[WHERE_MAX + 16];
    if (ann != NULL) {
        snprintf(sub, sizeof(sub), "%s.annotations", where);
        if (check_annotations(ann, sub, e) != 0)
            return -1;
    }
    const json_t *urls = json_object_get(j, "urls");
    if (urls != NULL) {
        if (!json_is_array(urls))
            return err_set(e, ERR_MANIFEST_INVALID, "%s.urls: must be an array", where);
        for (size_t i = 0; i < json_array_size(urls); i++) {
            if (!json_is_string(json_array_get(urls, i)))
                return err_set(e, ERR_MANIFEST_INVALID, "%s.urls[%zu]: must be a string", where, i);
        }
        out->has_urls = has_fetch_urls(urls);
    }
    const json_t *data = json_object_get(j, "data");
    if (data != NULL && !json_is_string(data))
        return err_set(e, ERR_MANIFEST_INVALID, "%s.data: must be a string", where);

    if (get_opt_type_string(j, "artifactType", where, &out->artifact_type, e) != 0)
        return -1;
    out->media_type = xstrdup(json_string_value(mt));
    return 0;
}

/* Parses the array member `key` of root into a new descriptor array. */
static int parse_desc_array(const json_t *root, const char *key, struct manifest_desc **out,
                            size_t *n_out, struct err *e)
{
    char where[WHERE_MAX];
    const json_t *arr = json_object_get(root, key);
    *out = NULL;
    *n_out = 0;
    if (arr == NULL)
        return err_set(e, ERR_MANIFEST_INVALID, "%s: required", key);
    if (!json_is_array(arr))
        return err_set(e, ERR_MANIFEST_INVALID, "%s: must be an array", key);
    size_t n = json_array_size(arr);
    /* n is bounded by the body cap: each element takes at least two bytes. */
    struct manifest_desc *descs = xcalloc(n, sizeof(*descs));
    for (size_t i = 0; i < n; i++) {
        snprintf(where, sizeof(where), "%s[%zu]", key, i);
        if (parse_desc(json_array_get(arr, i), where, &descs[i], e) != 0) {
            for (size_t k = 0; k < i; k++)
                desc_fini(&descs[k]);
            free(descs);
            return -1;
        }
    }
    *out = descs;
    *n_out = n;
    return 0;
}

/* Decides the effective media type: the body's mediaType if present (agreeing with
 * a manifest Content-Type), else a manifest Content-Type, else the body's shape. */
static int resolve_media_type(const json_t *root, const char *content_type, const char **out,
                              struct err *e)
{
    const char *header_mt = known_type_of_header(content_type);
    const json_t *mt = json_object_get(root, "mediaType");
    *out = NULL;
    if (mt != NULL) {
        if (!json_is_string(mt))
            return err_set(e, ERR_MANIFEST_INVALID, "mediaType: must be a string");
        const char *body_mt = json_string_value(mt);
        for (size_t i = 0; i < sizeof(known_types) / sizeof(known_types[0]); i++) {
            if (strcmp(body_mt, known_types[i]) == 0)
                *out = known_types[i];
        }
        if (*out == NULL)
            return err_set(e, ERR_MANIFEST_INVALID, "mediaType: unsupported manifest media type");
        /* distribution-spec "Pushing manifests": if a manifest includes a mediaType
         * field, clients MUST set the Content-Type header to it. */
        if (header_mt != NULL && header_mt != *out)
            return err_set(e, ERR_MANIFEST_INVALID,
                           "mediaType does not match the Content-Type header");
        return 0;
    }
    if (header_mt != NULL) {
        /* Docker schema 2 requires the field; only OCI made it optional. */
        if (strcmp(header_mt, MT_DOCKER_MANIFEST) == 0 || strcmp(header_mt, MT_DOCKER_LIST) == 0)
            return err_set(e, ERR_MANIFEST_INVALID, "mediaType: required for Docker manifests");
        *out = header_mt;
        return 0;
    }
    /* No declared type: OCI lets mediaType be absent, so fall back to the shape.
     * Both shapes at once is rejected below, so the order here does not matter. */
    if (json_object_get(root, "manifests") != NULL)
        *out = MT_OCI_INDEX;
    else if (json_object_get(root, "config") != NULL)
        *out = MT_OCI_MANIFEST;
    else
        return err_set(e, ERR_MANIFEST_INVALID,
                       "cannot tell the manifest type: no mediaType, config or manifests");
    return 0;
}

static int parse_root(const json_t *root, const char *content_type, struct manifest *m,
                      struct err *e)
{
    const char *mt;

    if (!json_is_object(root))
        return err_set(e, ERR_MANIFEST_INVALID, "manifest must be a JSON object");
    const json_t *sv = json_object_get(root, "schemaVersion");
    if (sv == NULL)
        return err_set(e, ERR_MANIFEST_INVALID, "schemaVersion: required");
    if (!json_is_integer(sv) || json_integer_value(sv) != 2)
        return err_set(e, ERR_MANIFEST_INVALID, "schemaVersion: must be 2");
    if (resolve_media_type(root, content_type, &mt, e) != 0)
        return -1;
    m->media_type = xstrdup(mt);

    bool is_index = strcmp(mt, MT_OCI_INDEX) == 0 || strcmp(mt, MT_DOCKER_LIST) == 0;
    /* CVE-2021-41190 (ambiguous manifests): a body that parses as both an image
     * and an index could be read differently by different clients, so each kind
     * must not carry the other's fields, whatever its declared type. */
    if (is_index) {
        if (json_object_get(root, "config") != NULL || json_object_get(root, "layers") != NULL)
            return err_set(e, ERR_MANIFEST_INVALID, "an index must not contain config or layers");
        m->kind = MANIFEST_KIND_INDEX;
        if (parse_desc_array(root, "manifests", &m->children, &m->n_children, e) != 0)
            return -1;
    } else {
        if (json_object_get(root, "manifests") != NULL)
            return err_set(e, ERR_MANIFEST_INVALID, "an image manifest must not contain manifests");
        m->kind = MANIFEST_KIND_IMAGE;
        const json_t *config = json_object_get(root, "config");
        if (config == NULL)
            return err_set(e, ERR_MANIFEST_INVALID, "config: required");
        if (parse_desc(config, "config", &m->config, e) != 0)
            return -1;
        /* image-spec: layers SHOULD have at least one entry; artifacts may have none. */
        if (parse_desc_array(root, "layers", &m->layers, &m->n_layers, e) != 0)
            return -1;
    }

    const json_t *subject = json_object_get(root, "subject");
    if (subject != NULL) {
        if (parse_desc(subject, "subject", &m->subject, e) != 0)
            return -1;
        m->has_subject = true;
    }

    const json_t *ann = json_object_get(root, "annotations");
    if (ann != NULL) {
        if (check_annotations(ann, "annotations", e) != 0)
            return -1;
        /* image-spec annotations: an empty map means the same as none. */
        if (json_object_size(ann) > 0) {
            m->annotations_json = json_dumps(ann, JSON_COMPACT | JSON_SORT_KEYS);
            AN(m->annotations_json);
        }
    }

    if (get_opt_type_string(root, "artifactType", "", &m->artifact_type, e) != 0)
        return -1;
    /* distribution-spec referrers: "If the artifactType is empty or missing in the
     * image manifest, the value of artifactType MUST be set to the config descriptor
     * mediaType value"; for an index it is omitted. We do not insist on artifactType
     * when config is the empty descriptor (image-spec MUST) because registries that
     * store and copy manifests must not reject what clients already push. */
    if (m->artifact_type == NULL && m->kind == MANIFEST_KIND_IMAGE)
        m->artifact_type = xstrdup(m->config.media_type);
    return 0;
}

int manifest_parse(const char *body, size_t len, const char *content_type, struct manifest *out,
                   struct err *e)
{
    json_error_t jerr;
    int rc = -1;

    memset(out, 0, sizeof(*out));
    if (len > MANIFEST_MAX_BYTES)
        return err_set(e, ERR_MANIFEST_TOO_LARGE, "manifest exceeds %d bytes", MANIFEST_MAX_BYTES);
    if (body == NULL || len == 0)
        return err_set(e, ERR_MANIFEST_INVALID, "manifest is empty");

    /* Duplicate keys are another way to make two parsers see two manifests.
     * JSON_DECODE_ANY only so that a scalar body gets the clearer message below. */
    json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
    if (root == NULL) {
        /* jerr.text may quote raw client bytes (not necessarily UTF-8), so only
         * the position goes into the client-facing message. */
        if (json_error_code(&jerr) == json_error_duplicate_key)
            return err_set(e, ERR_MANIFEST_INVALID,
                           "manifest has a duplicate key (line %d, column %d)", jerr.line,
                           jerr.column);
        return err_set(e, ERR_MANIFEST_INVALID, "manifest is not valid JSON (line %d, column %d)",
                       jerr.line, jerr.column);
    }
    rc = parse_root(root, content_type, out, e);
    json_decref(root);
    if (rc != 0)
        manifest_fini(out);
    return rc;
}

void manifest_fini(struct manifest *m)
{
    if (m == NULL)
        return;
    FREE_AND_NULL(m->media_type);
    FREE_AND_NULL(m->artifact_type);
    FREE_AND_NULL(m->annotations_json);
    desc_fini(&m->config);
    for (size_t i = 0; i < m->n_layers; i++)
        desc_fini(&m->layers[i]);
    FREE_AND_NULL(m->layers);
    for (size_t i = 0; i < m->n_children; i++)
        desc_fini(&m->children[i]);
    FREE_AND_NULL(m->children);
    desc_fini(&m->subject);
    /* Zeroed so that a second fini, or reading a failed parse, is harmless. */
    memset(m, 0, sizeof(*m));
}

/* The first c in [p, end) outside a quoted-string (RFC 9110 5.6.4: '"' ... '"', with
 * '\\' escaping the next character), or NULL: a parameter value such as
 * profile="a,b;c" must not split the list. A '"' never closed is an ordinary character
 * (the first c after it counts), so one stray quote cannot hide the rest of the header. */
static const char *find_unquoted(const char *p, const char *end, char c)
{
    bool is_quoted = false;
    const char *in_quotes = NULL; /* the first c inside the open quoted-string */
    for (; p < end; p++) {
        if (is_quoted && *p == '\\' && p + 1 < end) {
            p++;
        } else if (*p == '"') {
            is_quoted = !is_quoted;
            in_quotes = NULL;
        } else if (*p == c) {
            if (!is_quoted)
                return p;
            if (in_quotes == NULL)
                in_quotes = p;
        }
    }
    return is_quoted ? in_quotes : NULL;
}

/* Is the parameter list [p, end) (starting after the first ';') one with q=0?
 * RFC 9110 12.4.2: a weight of 0 means "not acceptable". */
static bool params_have_zero_q(const char *p, const char *end)
{
    while (p < end) {
        const char *semi = find_unquoted(p, end, ';');
        const char *stop = semi ? semi : end;
        const char *s = p;
        size_t len = (size_t)(stop - p);
        trim_ows(&s, &len);
        if (len >= 2 && (s[0] == 'q' || s[0] == 'Q') && s[1] == '=') {
            /* qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] ) */
            bool is_zero = len >= 3 && s[2] == '0';
            for (size_t i = 3; is_zero && i < len; i++) {
                if (!(i == 3 && s[i] == '.') && s[i] != '0')
                    is_zero = false;
            }
            return is_zero;
        }
        p = semi ? semi + 1 : end;
    }
    return false;
}

static bool media_range_matches(const char *r, size_t r_len, const char *mt)
{
    size_t mt_len = strlen(mt);
    if (r_len == 3 && memcmp(r, "*/*", 3) == 0)
        return true;
    /* A "<type>/" range ending in '*' admits everything under that top-level type. */
    if (r_len >= 2 && r[r_len - 2] == '/' && r[r_len - 1] == '*')
        return mt_len > r_len - 1 && strncasecmp(r, mt, r_len - 1) == 0;
    return r_len == mt_len && strncasecmp(r, mt, r_len) == 0;
}

bool manifest_accept_allows(const char *accept, const char *mt)
{
    if (accept == NULL)
        return true;
    if (mt == NULL)
        return false;
    bool saw_range = false;
    const char *p = accept;
    const char *end_all = accept + strlen(accept);
    while (p < end_all) {
        const char *comma = find_unquoted(p, end_all, ',');
        const char *end = comma ? comma : end_all;
        const char *semi = find_unquoted(p, end, ';');
        const char *r = p;
        size_t r_len = (size_t)((semi ? semi : end) - p);
        trim_ows(&r, &r_len);
        if (r_len > 0) {
            saw_range = true;
            bool is_refused = semi != NULL && params_have_zero_q(semi + 1, end);
            if (!is_refused && media_range_matches(r, r_len, mt))
                return true;
        }
        p = comma ? comma + 1 : end_all;
    }
    /* An Accept with no media range at all says nothing, like no Accept. */
    return !saw_range;
}
