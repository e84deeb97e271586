/* Manifest parsing and validation: OCI image manifest, OCI image index (with
 * artifact manifests expressed through artifactType / empty config), Docker v2
 * schema 2 manifest and manifest list. Pure: no I/O; the caller checks that
 * referenced blobs and child manifests exist. jansson is used here. */
#ifndef MERIDIAN_MANIFEST_H
#define MERIDIAN_MANIFEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "digest.h"
#include "err.h"

#define MANIFEST_MAX_BYTES (4 * 1024 * 1024)

#define MT_OCI_MANIFEST "application/vnd.oci.image.manifest.v1+json"
#define MT_OCI_INDEX "application/vnd.oci.image.index.v1+json"
#define MT_DOCKER_MANIFEST "application/vnd.docker.distribution.manifest.v2+json"
#define MT_DOCKER_LIST "application/vnd.docker.distribution.manifest.list.v2+json"
#define MT_OCI_EMPTY "application/vnd.oci.empty.v1+json"

enum manifest_kind { MANIFEST_KIND_IMAGE = 1, MANIFEST_KIND_INDEX = 2 };

struct manifest_desc {
    char *media_type; /* never NULL: image-spec makes it REQUIRED in every descriptor */
    struct digest digest;
    int64_t size;
    char *artifact_type; /* descriptor's artifactType or NULL (absent or "") */
    bool has_urls; /* urls: at least one, each an http(s) URL without a fragment */
};

struct manifest {
    enum manifest_kind kind;
    char *media_type;             /* the effective media type (see manifest_parse) */
    char *artifact_type;          /* manifest.artifactType, else config.mediaType for images
                                     (per referrers API rules), else NULL */
    char *annotations_json;       /* compact, key-sorted JSON object of annotations; NULL when
                                     absent or empty */
    struct manifest_desc config;  /* images only */
    struct manifest_desc *layers; /* images: layers; indexes: NULL */
    size_t n_layers;
    struct manifest_desc *children; /* indexes: manifests[]; images: NULL */
    size_t n_children;
    bool has_subject;
    struct manifest_desc subject;
};

/* Is mt one of the four manifest media types above? */
bool manifest_is_known_media_type(const char *mt);

/* Is d a layer its pusher need not upload: a Docker foreign layer or an OCI
 * non-distributable one (deprecated by image-spec 1.1, still in older Windows images),
 * with urls to fetch it from? Clients that copy such images (containers/image, crane by
 * default) skip the bytes and push the manifest as it is; Docker Hub and the other large
 * registries accept it. */
bool manifest_desc_is_external(const struct manifest_desc *d);
/* The same for a descriptor as stored JSON (a manifest body read back). */
struct json_t;
bool manifest_json_desc_is_external(const struct json_t *desc);

/* Parses body (len bytes). content_type is the request's Content-Type (may be NULL
 * or carry parameters). The effective media type is the body's mediaType field if
 * present (it must then agree with content_type when that is a manifest type),
 * else content_type. Errors: ERR_MANIFEST_INVALID with a message naming the
 * problem (bad JSON, missing or malformed field, bad digest, unknown media type,
 * schemaVersion != 2, duplicate keys, an index with config/layers or an image with
 * manifests); ERR_MANIFEST_TOO_LARGE when len > MANIFEST_MAX_BYTES. Without a known
 * type from either, a body with "manifests" is an OCI index and one with "config" an
 * OCI image manifest. On success the caller owns *out (release with manifest_fini).
 * On failure *out is zeroed and holds nothing to free. */
int manifest_parse(const char *body, size_t len, const char *content_type, struct manifest *out,
                   struct err *e);
/* Frees what *m owns and zeroes it; m may be NULL, and fini twice is harmless. */
void manifest_fini(struct manifest *m);

/* Checks whether an Accept header value (comma-separated list, may hold q= params,
 * may be NULL) admits media type mt: NULL/empty, "* / *" or "type/ *" wildcards, or an
 * exact match (case-insensitive; parameters ignored, except that q=0 refuses). */
bool manifest_accept_allows(const char *accept, const char *mt);

#endif
