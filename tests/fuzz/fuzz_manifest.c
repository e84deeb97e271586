/* libFuzzer target for manifest.c. Input: the first byte picks the Content-Type
 * (none, one of the four manifest types, a foreign type, one with parameters),
 * the rest is the body. Checks the invariants manifest.h promises: an accepted
 * manifest has a known type matching its kind, canonical digests, media types and
 * non-negative sizes, valid annotations JSON; a rejected one names the problem in
 * printable ASCII and leaves nothing behind. The body is also tried as an Accept
 * header value. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "manifest.h"
#include "util.h"

static const char *const content_types[] = {
    NULL,
    MT_OCI_MANIFEST,
    MT_OCI_INDEX,
    MT_DOCKER_MANIFEST,
    MT_DOCKER_LIST,
    "application/json",
    MT_OCI_MANIFEST "; charset=utf-8",
    "",
};

static void check_desc(const struct manifest_desc *d)
{
    AN(d->media_type);
    ASSERT(strchr(d->media_type, '/') != NULL);
    ASSERT(d->size >= 0);
    struct digest again;
    ASSERT(digest_parse(d->digest.str, strlen(d->digest.str), &again, NULL) == 0);
    ASSERT(digest_equal(&d->digest, &again));
    if (d->artifact_type != NULL)
        ASSERT(d->artifact_type[0] != '\0');
}

static void check_manifest(const struct manifest *m)
{
    AN(m->media_type);
    ASSERT(manifest_is_known_media_type(m->media_type));
    bool is_index_type =
        strcmp(m->media_type, MT_OCI_INDEX) == 0 || strcmp(m->media_type, MT_DOCKER_LIST) == 0;
    if (m->kind == MANIFEST_KIND_IMAGE) {
        ASSERT(!is_index_type);
        check_desc(&m->config);
        ASSERT(m->n_layers == 0 || m->layers != NULL);
        for (size_t i = 0; i < m->n_layers; i++)
            check_desc(&m->layers[i]);
        ASSERT(m->children == NULL && m->n_children == 0);
        AN(m->artifact_type);
    } else {
        ASSERT(m->kind == MANIFEST_KIND_INDEX);
        ASSERT(is_index_type);
        ASSERT(m->n_children == 0 || m->children != NULL);
        for (size_t i = 0; i < m->n_children; i++)
            check_desc(&m->children[i]);
        ASSERT(m->layers == NULL && m->n_layers == 0);
        ASSERT(m->config.media_type == NULL);
    }
    if (m->has_subject)
        check_desc(&m->subject);
    if (m->annotations_json != NULL) {
        json_t *j = json_loads(m->annotations_json, 0, NULL);
        AN(j);
        ASSERT(json_is_object(j) && json_object_size(j) > 0);
        json_decref(j);
    }
}

int fuzz_manifest_one(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const char *ct = content_types[data[0] % (sizeof(content_types) / sizeof(content_types[0]))];
    const char *body = (const char *)data + 1;
    size_t body_len = size - 1;

    struct manifest m;
    struct err e = {0};
    if (manifest_parse(body, body_len, ct, &m, &e) == 0) {
        check_manifest(&m);
        manifest_fini(&m);
    } else {
        ASSERT(e.code == ERR_MANIFEST_INVALID || e.code == ERR_MANIFEST_TOO_LARGE);
        ASSERT(e.msg[0] != '\0');
        /* Client-facing: never raw input bytes. */
        for (const char *p = e.msg; *p; p++)
            ASSERT(*p >= 0x20 && *p <= 0x7e);
        static const struct manifest zero;
        ASSERT(memcmp(&m, &zero, sizeof(zero)) == 0);
    }

    char *accept = xstrndup(body, body_len);
    for (size_t i = 1; i <= 4; i++)
        (void)manifest_accept_allows(accept, content_types[i]);
    /* Whatever follows it, an Accept list that starts with mt admits mt. The copy
     * stops at the first NUL, as a header value would. */
    static const char lead[] = MT_OCI_INDEX ",";
    size_t tail_len = strlen(accept);
    char *list = xmalloc(sizeof(lead) + tail_len);
    memcpy(list, lead, sizeof(lead) - 1);
    memcpy(list + sizeof(lead) - 1, accept, tail_len + 1);
    ASSERT(manifest_accept_allows(list, MT_OCI_INDEX));
    free(list);
    free(accept);
    return 0;
}

#ifndef FUZZ_REPLAY
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return fuzz_manifest_one(data, size);
}
#endif
