/* Unit tests for manifest.c: every accepted manifest type (OCI image, artifact,
 * index, Docker schema 2 manifest and list), media-type resolution against
 * Content-Type, a table of invalid bodies with the message each must name, and
 * Accept matching. Bodies are built from small macros so each case shows only what
 * differs from a valid manifest. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

/* cmocka.h needs the four headers above first. */
#include <cmocka.h>

#include <jansson.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "manifest.h"

#define H16_0 "0123456789abcdef"
#define H16_1 "1111111111111111"
#define H16_2 "2222222222222222"
#define H16_3 "3333333333333333"
#define DG_CFG "sha256:" H16_0 H16_0 H16_0 H16_0
#define DG_L1 "sha256:" H16_1 H16_1 H16_1 H16_1
#define DG_L2 "sha256:" H16_2 H16_2 H16_2 H16_2
#define DG_SUBJ "sha256:" H16_3 H16_3 H16_3 H16_3
#define DG_512 "sha512:" H16_1 H16_2 H16_3 H16_0 H16_1 H16_2 H16_3 H16_0
#define DG_EMPTY "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"

#define MT_CFG "application/vnd.oci.image.config.v1+json"
#define MT_LAYER "application/vnd.oci.image.layer.v1.tar+gzip"
#define MT_DOCKER_CFG "application/vnd.docker.container.image.v1+json"
#define MT_DOCKER_LAYER "application/vnd.docker.image.rootfs.diff.tar.gzip"
#define MT_SBOM "application/vnd.example.sbom.v1"

#define DESC(mt, dg, size) "{\"mediaType\":\"" mt "\",\"digest\":\"" dg "\",\"size\":" size "}"
#define MTF(mt) "\"mediaType\":\"" mt "\","
#define CONFIG DESC(MT_CFG, DG_CFG, "7023")
#define LAYER1 DESC(MT_LAYER, DG_L1, "32654")
#define LAYER2 DESC(MT_LAYER, DG_L2, "16724")
#define LAYERS "[" LAYER1 "," LAYER2 "]"
#define SUBJECT DESC(MT_OCI_MANIFEST, DG_SUBJ, "1234")
/* An image manifest: optional mediaType field, config, layers, extra members. */
#define IMAGE(mtf, config, layers, extra)                                                          \
    "{\"schemaVersion\":2," mtf "\"config\":" config ",\"layers\":" layers extra "}"
#define OCI_IMAGE(extra) IMAGE(MTF(MT_OCI_MANIFEST), CONFIG, LAYERS, extra)
#define INDEX(mtf, children, extra) "{\"schemaVersion\":2," mtf "\"manifests\":" children extra "}"
#define CHILD1 DESC(MT_OCI_MANIFEST, DG_L1, "500")
#define CHILD2 DESC(MT_OCI_INDEX, DG_L2, "600")
#define OCI_INDEX(extra) INDEX(MTF(MT_OCI_INDEX), "[" CHILD1 "," CHILD2 "]", extra)

static int parse(const char *body, const char *ct, struct manifest *m, struct err *e)
{
    return manifest_parse(body, strlen(body), ct, m, e);
}

static void assert_zeroed(const struct manifest *m)
{
    static const struct manifest zero;
    assert_memory_equal(m, &zero, sizeof(zero));
}

static void test_oci_image(void **state)
{
    struct manifest m;
    struct err e = {0};
    const char *body = OCI_IMAGE(",\"annotations\":{\"b\":\"2\",\"a\":\"1\"}");
    (void)state;
    assert_int_equal(parse(body, MT_OCI_MANIFEST, &m, &e), 0);
    assert_int_equal(m.kind, MANIFEST_KIND_IMAGE);
    assert_string_equal(m.media_type, MT_OCI_MANIFEST);
    assert_string_equal(m.config.media_type, MT_CFG);
    assert_string_equal(m.config.digest.str, DG_CFG);
    assert_int_equal(m.config.digest.alg, DIGEST_SHA256);
    assert_int_equal(m.config.size, 7023);
    assert_null(m.config.artifact_type);
    assert_int_equal(m.n_layers, 2);
    assert_non_null(m.layers);
    assert_string_equal(m.layers[0].media_type, MT_LAYER);
    assert_string_equal(m.layers[0].digest.str, DG_L1);
    assert_int_equal(m.layers[0].size, 32654);
    assert_string_equal(m.layers[1].digest.str, DG_L2);
    assert_int_equal(m.layers[1].size, 16724);
    assert_null(m.children);
    assert_int_equal(m.n_children, 0);
    assert_false(m.has_subject);
    /* Referrers rule: no artifactType, so the config media type stands in. */
    assert_string_equal(m.artifact_type, MT_CFG);
    /* Compact and key-sorted. */
    assert_string_equal(m.annotations_json, "{\"a\":\"1\",\"b\":\"2\"}");
    manifest_fini(&m);
    assert_zeroed(&m);
    /* A second fini is harmless. */
    manifest_fini(&m);
    manifest_fini(NULL);
}

static void test_oci_image_media_type_sources(void **state)
{
    static const struct {
        const char *body;
        const char *ct;
    } cases[] = {
        /* body mediaType, no Content-Type */
        {OCI_IMAGE(""), NULL},
        /* body mediaType, unrelated Content-Type */
        {OCI_IMAGE(""), "application/json"},
        {OCI_IMAGE(""), "application/octet-stream"},
        /* body mediaType and a matching Content-Type with parameters / odd case */
        {OCI_IMAGE(""), MT_OCI_MANIFEST "; charset=utf-8"},
        {OCI_IMAGE(""), " APPLICATION/vnd.oci.image.manifest.v1+JSON "},
        /* odd but valid JSON: escaped '/', CRLF, spaces, unknown members */
        {"{\r\n \"layers\" : " LAYERS " ,\r\n \"config\":" CONFIG
         ",\"schemaVersion\":2, \"mediaType\" :"
         "\"application\\/vnd.oci.image.manifest.v1+json\",\r\n"
         " \"x-unknown\": {\"n\": [1, 2.50, true, null]}\r\n}\n",
         MT_OCI_MANIFEST},
        /* no body mediaType: Content-Type decides */
        {IMAGE("", CONFIG, LAYERS, ""), MT_OCI_MANIFEST},
        /* no body mediaType, no Content-Type: the "config" member decides */
        {IMAGE("", CONFIG, LAYERS, ""), NULL},
        {IMAGE("", CONFIG, LAYERS, ""), "application/json"},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct manifest m;
        struct err e = {0};
        if (parse(cases[i].body, cases[i].ct, &m, &e) != 0)
            fail_msg("case %zu rejected: %s", i, err_message(&e));
        assert_int_equal(m.kind, MANIFEST_KIND_IMAGE);
        assert_string_equal(m.media_type, MT_OCI_MANIFEST);
        assert_int_equal(m.n_layers, 2);
        manifest_fini(&m);
    }
}

static void test_artifact_empty_config_with_subject(void **state)
{
    struct manifest m;
    struct err e = {0};
    const char *body =
        IMAGE(MTF(MT_OCI_MANIFEST), DESC(MT_OCI_EMPTY, DG_EMPTY, "2"), "[]",
              ",\"artifactType\":\"" MT_SBOM "\",\"subject\":" SUBJECT
              ",\"annotations\":{\"org.opencontainers.image.created\":\"2024-01-01T00:00:00Z\"}");
    (void)state;
    assert_int_equal(parse(body, MT_OCI_MANIFEST, &m, &e), 0);
    assert_int_equal(m.kind, MANIFEST_KIND_IMAGE);
    assert_string_equal(m.config.media_type, MT_OCI_EMPTY);
    assert_int_equal(m.config.size, 2);
    assert_int_equal(m.n_layers, 0);
    assert_string_equal(m.artifact_type, MT_SBOM);
    assert_true(m.has_subject);
    assert_string_equal(m.subject.media_type, MT_OCI_MANIFEST);
    assert_string_equal(m.subject.digest.str, DG_SUBJ);
    assert_int_equal(m.subject.size, 1234);
    assert_string_equal(m.annotations_json,
                        "{\"org.opencontainers.image.created\":\"2024-01-01T00:00:00Z\"}");
    manifest_fini(&m);
}

static void test_artifact_type_fallbacks(void **state)
{
    struct manifest m;
    struct err e = {0};
    (void)state;
    /* Empty config without artifactType is tolerated; config type stands in. */
    assert_int_equal(
        parse(IMAGE(MTF(MT_OCI_MANIFEST), DESC(MT_OCI_EMPTY, DG_EMPTY, "2"), "[" LAYER1 "]", ""),
              NULL, &m, &e),
        0);
    assert_string_equal(m.artifact_type, MT_OCI_EMPTY);
    manifest_fini(&m);
    /* An empty artifactType counts as missing. */
    assert_int_equal(parse(OCI_IMAGE(",\"artifactType\":\"\""), NULL, &m, &e), 0);
    assert_string_equal(m.artifact_type, MT_CFG);
    manifest_fini(&m);
    /* Empty annotations are recorded as none. */
    assert_int_equal(parse(OCI_IMAGE(",\"annotations\":{}"), NULL, &m, &e), 0);
    assert_null(m.annotations_json);
    manifest_fini(&m);
}

static void test_descriptor_extras(void **state)
{
    struct manifest m;
    struct err e = {0};
    const char *layer = "{\"mediaType\":\"" MT_LAYER "\",\"digest\":\"" DG_512 "\","
                        "\"size\":0,\"urls\":[\"https://example.com/l\"],"
                        "\"annotations\":{\"k\":\"v\"},\"data\":\"\",\"artifactType\":\"" MT_SBOM
                        "\",\"unknownField\":[1,{\"x\":null}]}";
    const char *big = DESC(MT_LAYER, DG_L2, "9007199254740993");
    char body[4096];
    (void)state;
    snprintf(body, sizeof(body), "%s",
             IMAGE(MTF(MT_OCI_MANIFEST), CONFIG, "[" LAYER1 "]", ",\"somethingElse\":true"));
    assert_int_equal(parse(body, NULL, &m, &e), 0);
    manifest_fini(&m);

    snprintf(body, sizeof(body),
             "{\"schemaVersion\":2,\"mediaType\":\"%s\",\"config\":%s,\"layers\":[%s,%s]}",
             MT_OCI_MANIFEST, CONFIG, layer, big);
    assert_int_equal(parse(body, NULL, &m, &e), 0);
    assert_int_equal(m.n_layers, 2);
    assert_int_equal(m.layers[0].digest.alg, DIGEST_SHA512);
    assert_string_equal(m.layers[0].digest.str, DG_512);
    assert_int_equal(m.layers[0].size, 0);
    assert_string_equal(m.layers[0].artifact_type, MT_SBOM);
    assert_true(m.layers[1].size == 9007199254740993LL);
    assert_null(m.layers[1].artifact_type);
    manifest_fini(&m);
}

/* Layers clients fetch from their urls: Docker foreign and OCI non-distributable types,
 * with at least one url; anything else (no urls, an ordinary layer with urls) is not. */
static void test_external_layers(void **state)
{
    static const struct {
        const char *media_type;
        const char *urls;
        bool want;
    } cases[] = {
        {"application/vnd.docker.image.rootfs.foreign.diff.tar.gzip", "[\"https://x/l\"]", true},
        {"application/vnd.docker.image.rootfs.foreign.diff.tar", "[\"https://x/l\"]", true},
        {"application/vnd.oci.image.layer.nondistributable.v1.tar", "[\"https://x/l\"]", true},
        {"application/vnd.oci.image.layer.nondistributable.v1.tar+gzip", "[\"https://x/l\"]",
         true},
        {"application/vnd.oci.image.layer.nondistributable.v1.tar+zstd", "[\"https://x/l\"]",
         true},
        {"application/vnd.docker.image.rootfs.foreign.diff.tar.gzip", "[]", false},
        {"application/vnd.docker.image.rootfs.foreign.diff.tar.gzip", NULL, false},
        {"application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
         "[\"https://x/l\",\"http://y/l\"]", true},
        {"application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
         "[\"https://x/l\",\"file:///etc/passwd\"]", false},
        {"application/vnd.docker.image.rootfs.foreign.diff.tar.gzip", "[\"https://x/l#f\"]",
         false},
        {"application/vnd.docker.image.rootfs.foreign.diff.tar.gzip", "[\"\"]", false},
        {MT_LAYER, "[\"https://x/l\"]", false},
        {"application/vnd.docker.image.rootfs.diff.tar.gzip", "[\"https://x/l\"]", false},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char layer[512], body[2048];
        snprintf(layer, sizeof(layer),
                 "{\"mediaType\":\"%s\",\"digest\":\"" DG_L1 "\",\"size\":5%s%s}",
                 cases[i].media_type, cases[i].urls ? ",\"urls\":" : "",
                 cases[i].urls ? cases[i].urls : "");
        snprintf(body, sizeof(body),
                 "{\"schemaVersion\":2,\"mediaType\":\"%s\",\"config\":%s,\"layers\":[%s]}",
                 MT_OCI_MANIFEST, CONFIG, layer);
        struct manifest m;
        struct err e = {0};
        assert_int_equal(parse(body, NULL, &m, &e), 0);
        assert_int_equal(manifest_desc_is_external(&m.layers[0]), cases[i].want);
        /* The same judgement on the stored JSON (copies.c reads bodies back). */
        json_t *j = json_loads(layer, 0, NULL);
        assert_non_null(j);
        assert_int_equal(manifest_json_desc_is_external(j), cases[i].want);
        json_decref(j);
        assert_false(manifest_desc_is_external(&m.config));
        manifest_fini(&m);
    }
}

static void test_oci_index(void **state)
{
    struct manifest m;
    struct err e = {0};
    const char *body =
        INDEX(MTF(MT_OCI_INDEX),
              "[{\"mediaType\":\"" MT_OCI_MANIFEST "\",\"digest\":\"" DG_L1 "\",\"size\":500,"
              "\"platform\":{\"architecture\":\"amd64\",\"os\":\"linux\"},"
              "\"artifactType\":\"" MT_SBOM "\"}," CHILD2 "]",
              ",\"artifactType\":\"application/vnd.example.bundle\",\"subject\":" SUBJECT
              ",\"annotations\":{\"x\":\"y\"}");
    (void)state;
    assert_int_equal(parse(body, MT_OCI_INDEX, &m, &e), 0);
    assert_int_equal(m.kind, MANIFEST_KIND_INDEX);
    assert_string_equal(m.media_type, MT_OCI_INDEX);
    assert_int_equal(m.n_children, 2);
    assert_string_equal(m.children[0].media_type, MT_OCI_MANIFEST);
    assert_string_equal(m.children[0].digest.str, DG_L1);
    assert_int_equal(m.children[0].size, 500);
    assert_string_equal(m.children[0].artifact_type, MT_SBOM);
    assert_string_equal(m.children[1].media_type, MT_OCI_INDEX);
    assert_null(m.layers);
    assert_int_equal(m.n_layers, 0);
    assert_null(m.config.media_type);
    assert_true(m.has_subject);
    assert_string_equal(m.subject.digest.str, DG_SUBJ);
    assert_string_equal(m.artifact_type, "application/vnd.example.bundle");
    assert_string_equal(m.annotations_json, "{\"x\":\"y\"}");
    manifest_fini(&m);
}

static void test_oci_index_variants(void **state)
{
    struct manifest m;
    struct err e = {0};
    (void)state;
    /* No artifactType on an index: omitted, no config fallback. */
    assert_int_equal(parse(OCI_INDEX(""), NULL, &m, &e), 0);
    assert_null(m.artifact_type);
    assert_null(m.annotations_json);
    manifest_fini(&m);
    /* Empty manifests list is an index still. */
    assert_int_equal(parse(INDEX(MTF(MT_OCI_INDEX), "[]", ""), NULL, &m, &e), 0);
    assert_int_equal(m.n_children, 0);
    manifest_fini(&m);
    /* No mediaType anywhere: the "manifests" member decides. */
    assert_int_equal(parse(INDEX("", "[" CHILD1 "]", ""), NULL, &m, &e), 0);
    assert_int_equal(m.kind, MANIFEST_KIND_INDEX);
    assert_string_equal(m.media_type, MT_OCI_INDEX);
    manifest_fini(&m);
    /* No body mediaType, Content-Type decides. */
    assert_int_equal(parse(INDEX("", "[" CHILD1 "]", ""), MT_OCI_INDEX, &m, &e), 0);
    assert_string_equal(m.media_type, MT_OCI_INDEX);
    manifest_fini(&m);
    /* Children with media types unknown to us are accepted (image-spec index). */
    assert_int_equal(
        parse(INDEX(MTF(MT_OCI_INDEX),
                    "[" DESC("application/vnd.example.thing.v9+json", DG_L1, "1") "]", ""),
              NULL, &m, &e),
        0);
    manifest_fini(&m);
}

static void test_docker_manifest(void **state)
{
    struct manifest m;
    struct err e = {0};
    const char *body = IMAGE(MTF(MT_DOCKER_MANIFEST), DESC(MT_DOCKER_CFG, DG_CFG, "1469"),
                             "[" DESC(MT_DOCKER_LAYER, DG_L1, "2479") "]", "");
    (void)state;
    assert_int_equal(parse(body, MT_DOCKER_MANIFEST, &m, &e), 0);
    assert_int_equal(m.kind, MANIFEST_KIND_IMAGE);
    assert_string_equal(m.media_type, MT_DOCKER_MANIFEST);
    assert_string_equal(m.config.media_type, MT_DOCKER_CFG);
    assert_string_equal(m.artifact_type, MT_DOCKER_CFG);
    assert_int_equal(m.n_layers, 1);
    assert_string_equal(m.layers[0].media_type, MT_DOCKER_LAYER);
    manifest_fini(&m);
    /* Without a Content-Type the body's mediaType is enough. */
    assert_int_equal(parse(body, NULL, &m, &e), 0);
    assert_string_equal(m.media_type, MT_DOCKER_MANIFEST);
    manifest_fini(&m);
}

static void test_docker_list(void **state)
{
    struct manifest m;
    struct err e = {0};
    const char *body =
        INDEX(MTF(MT_DOCKER_LIST),
              "[{\"mediaType\":\"" MT_DOCKER_MANIFEST "\",\"digest\":\"" DG_L1 "\",\"size\":7143,"
              "\"platform\":{\"architecture\":\"ppc64le\",\"os\":\"linux\"}},"
              "{\"mediaType\":\"" MT_DOCKER_MANIFEST "\",\"digest\":\"" DG_L2 "\",\"size\":7682,"
              "\"platform\":{\"architecture\":\"amd64\",\"os\":\"linux\","
              "\"features\":[\"sse4\"]}}]",
              "");
    (void)state;
    assert_int_equal(parse(body, MT_DOCKER_LIST, &m, &e), 0);
    assert_int_equal(m.kind, MANIFEST_KIND_INDEX);
    assert_string_equal(m.media_type, MT_DOCKER_LIST);
    assert_int_equal(m.n_children, 2);
    assert_string_equal(m.children[1].digest.str, DG_L2);
    assert_int_equal(m.children[1].size, 7682);
    assert_null(m.artifact_type);
    manifest_fini(&m);
}

struct bad_case {
    const char *body;
    const char *ct;
    const char *want_msg; /* substring the client-facing message must contain */
};

static const struct bad_case bad_cases[] = {
    /* not a JSON object */
    {"{", NULL, "not valid JSON"},
    {"{} x", NULL, "not valid JSON"},
    {"", NULL, "empty"},
    {"[]", NULL, "JSON object"},
    {"\"x\"", NULL, "JSON object"},
    {"2", NULL, "JSON object"},
    {"null", NULL, "JSON object"},
    {"{\"schemaVersion\":2,\"schemaVersion\":2,\"config\":" CONFIG ",\"layers\":[]}", NULL,
     "duplicate key"},
    {"{\"schemaVersion\":2,\"config\":" CONFIG ",\"layers\":[],\"x\":\"\\u0000\"}", NULL,
     "not valid JSON"},
    /* schemaVersion */
    {"{\"config\":" CONFIG ",\"layers\":[]}", NULL, "schemaVersion: required"},
    {"{\"schemaVersion\":1,\"config\":" CONFIG ",\"layers\":[]}", NULL, "schemaVersion: must be 2"},
    {"{\"schemaVersion\":3,\"config\":" CONFIG ",\"layers\":[]}", NULL, "schemaVersion: must be 2"},
    {"{\"schemaVersion\":\"2\",\"config\":" CONFIG ",\"layers\":[]}", NULL,
     "schemaVersion: must be 2"},
    {"{\"schemaVersion\":2.0,\"config\":" CONFIG ",\"layers\":[]}", NULL,
     "schemaVersion: must be 2"},
    /* media type resolution */
    {IMAGE(MTF("application/vnd.docker.distribution.manifest.v1+prettyjws"), CONFIG, LAYERS, ""),
     NULL, "mediaType: unsupported"},
    {IMAGE(MTF("application/json"), CONFIG, LAYERS, ""), NULL, "mediaType: unsupported"},
    {IMAGE("\"mediaType\":5,", CONFIG, LAYERS, ""), NULL, "mediaType: must be a string"},
    {IMAGE("\"mediaType\":null,", CONFIG, LAYERS, ""), NULL, "mediaType: must be a string"},
    {OCI_IMAGE(""), MT_DOCKER_MANIFEST, "does not match the Content-Type"},
    {OCI_IMAGE(""), MT_OCI_INDEX, "does not match the Content-Type"},
    {OCI_INDEX(""), MT_OCI_MANIFEST, "does not match the Content-Type"},
    {IMAGE("", CONFIG, LAYERS, ""), MT_DOCKER_MANIFEST, "mediaType: required for Docker"},
    {INDEX("", "[" CHILD1 "]", ""), MT_DOCKER_LIST, "mediaType: required for Docker"},
    {"{\"schemaVersion\":2,\"layers\":[]}", NULL, "cannot tell the manifest type"},
    {"{\"schemaVersion\":2}", "application/json", "cannot tell the manifest type"},
    /* Content-Type says image, body shape is an index */
    {INDEX("", "[" CHILD1 "]", ""), MT_OCI_MANIFEST, "must not contain manifests"},
    /* ambiguous bodies (CVE-2021-41190) */
    {OCI_IMAGE(",\"manifests\":[]"), NULL, "must not contain manifests"},
    {IMAGE("", CONFIG, LAYERS, ",\"manifests\":[]"), NULL, "must not contain"},
    {OCI_INDEX(",\"layers\":[]"), NULL, "must not contain config or layers"},
    {OCI_INDEX(",\"config\":" CONFIG), NULL, "must not contain config or layers"},
    {INDEX(MTF(MT_DOCKER_LIST), "[]", ",\"layers\":[]"), NULL, "must not contain config"},
    /* config */
    {"{\"schemaVersion\":2," MTF(MT_OCI_MANIFEST) "\"layers\":[]}", NULL, "config: required"},
    {IMAGE(MTF(MT_OCI_MANIFEST), "[]", LAYERS, ""), NULL, "config: must be an object"},
    {IMAGE(MTF(MT_OCI_MANIFEST), "null", LAYERS, ""), NULL, "config: must be an object"},
    {IMAGE(MTF(MT_OCI_MANIFEST), "{\"digest\":\"" DG_CFG "\",\"size\":1}", LAYERS, ""), NULL,
     "config.mediaType: required"},
    {IMAGE(MTF(MT_OCI_MANIFEST), "{\"mediaType\":1,\"digest\":\"" DG_CFG "\",\"size\":1}", LAYERS,
           ""),
     NULL, "config.mediaType: must be a string"},
    {IMAGE(MTF(MT_OCI_MANIFEST), DESC("noslash", DG_CFG, "1"), LAYERS, ""), NULL,
     "config.mediaType: invalid media type"},
    {IMAGE(MTF(MT_OCI_MANIFEST), DESC("", DG_CFG, "1"), LAYERS, ""), NULL,
     "config.mediaType: invalid media type"},
    {IMAGE(MTF(MT_OCI_MANIFEST), DESC("a/b c", DG_CFG, "1"), LAYERS, ""), NULL,
     "config.mediaType: invalid media type"},
    {IMAGE(MTF(MT_OCI_MANIFEST), DESC("a/b/c", DG_CFG, "1"), LAYERS, ""), NULL,
     "config.mediaType: invalid media type"},
    {IMAGE(MTF(MT_OCI_MANIFEST), DESC("/b", DG_CFG, "1"), LAYERS, ""), NULL,
     "config.mediaType: invalid media type"},
    {IMAGE(MTF(MT_OCI_MANIFEST), DESC("a/", DG_CFG, "1"), LAYERS, ""), NULL,
     "config.mediaType: invalid media type"},
    {IMAGE(MTF(MT_OCI_MANIFEST), DESC(".a/b", DG_CFG, "1"), LAYERS, ""), NULL,
     "config.mediaType: invalid media type"},
    {IMAGE(MTF(MT_OCI_MANIFEST), DESC("a/b;x=y", DG_CFG, "1"), LAYERS, ""), NULL,
     "config.mediaType: invalid media type"},
    {IMAGE(MTF(MT_OCI_MANIFEST), DESC("a/b\\n", DG_CFG, "1"), LAYERS, ""), NULL,
     "config.mediaType: invalid media type"},
    {IMAGE(MTF(MT_OCI_MANIFEST), "{\"mediaType\":\"" MT_CFG "\",\"size\":1}", LAYERS, ""), NULL,
     "config.digest: required"},
    {IMAGE(MTF(MT_OCI_MANIFEST), "{\"mediaType\":\"" MT_CFG "\",\"digest\":7,\"size\":1}", LAYERS,
           ""),
     NULL, "config.digest: must be a string"},
    {IMAGE(MTF(MT_OCI_MANIFEST), DESC(MT_CFG, "sha256:xyz", "1"), LAYERS, ""), NULL,
     "config.digest: invalid digest"},
    {IMAGE(MTF(MT_OCI_MANIFEST), DESC(MT_CFG, "md5:" H16_0 H16_0, "1"), LAYERS, ""), NULL,
     "config.digest: invalid digest"},
    {IMAGE(MTF(MT_OCI_MANIFEST), DESC(MT_CFG, "sha256:" H16_0 H16_0 H16_0 "0123456789ABCDEF", "1"),
           LAYERS, ""),
     NULL, "config.digest: invalid digest"},
    {IMAGE(MTF(MT_OCI_MANIFEST), "{\"mediaType\":\"" MT_CFG "\",\"digest\":\"" DG_CFG "\"}", LAYERS,
           ""),
     NULL, "config.size: required"},
    {IMAGE(MTF(MT_OCI_MANIFEST), DESC(MT_CFG, DG_CFG, "-1"), LAYERS, ""), NULL,
     "config.size: must be a non-negative integer"},
    {IMAGE(MTF(MT_OCI_MANIFEST), DESC(MT_CFG, DG_CFG, "1.5"), LAYERS, ""), NULL,
     "config.size: must be a non-negative integer"},
    {IMAGE(MTF(MT_OCI_MANIFEST), DESC(MT_CFG, DG_CFG, "\"10\""), LAYERS, ""), NULL,
     "config.size: must be a non-negative integer"},
    {IMAGE(MTF(MT_OCI_MANIFEST), DESC(MT_CFG, DG_CFG, "99999999999999999999"), LAYERS, ""), NULL,
     "not valid JSON"},
    /* layers */
    {"{\"schemaVersion\":2," MTF(MT_OCI_MANIFEST) "\"config\":" CONFIG "}", NULL,
     "layers: required"},
    {IMAGE(MTF(MT_OCI_MANIFEST), CONFIG, "{}", ""), NULL, "layers: must be an array"},
    {IMAGE(MTF(MT_OCI_MANIFEST), CONFIG, "null", ""), NULL, "layers: must be an array"},
    {IMAGE(MTF(MT_OCI_MANIFEST), CONFIG, "[" LAYER1 ",\"x\"]", ""), NULL,
     "layers[1]: must be an object"},
    {IMAGE(MTF(MT_OCI_MANIFEST), CONFIG,
           "[" LAYER1 "," LAYER2 "," DESC(MT_LAYER, "sha256:abc", "5") "]", ""),
     NULL, "layers[2].digest: invalid digest"},
    {IMAGE(MTF(MT_OCI_MANIFEST), CONFIG, "[{\"digest\":\"" DG_L1 "\",\"size\":1}]", ""), NULL,
     "layers[0].mediaType: required"},
    {IMAGE(MTF(MT_OCI_MANIFEST), CONFIG, "[" DESC(MT_LAYER, DG_L1, "-5") "]", ""), NULL,
     "layers[0].size: must be a non-negative integer"},
    {IMAGE(MTF(MT_OCI_MANIFEST), CONFIG,
           "[{\"mediaType\":\"" MT_LAYER "\",\"digest\":\"" DG_L1
           "\",\"size\":1,\"annotations\":{\"k\":1}}]",
           ""),
     NULL, "layers[0].annotations: value of every key must be a string"},
    {IMAGE(MTF(MT_OCI_MANIFEST), CONFIG,
           "[{\"mediaType\":\"" MT_LAYER "\",\"digest\":\"" DG_L1
           "\",\"size\":1,\"annotations\":[]}]",
           ""),
     NULL, "layers[0].annotations: must be an object"},
    {IMAGE(MTF(MT_OCI_MANIFEST), CONFIG,
           "[{\"mediaType\":\"" MT_LAYER "\",\"digest\":\"" DG_L1 "\",\"size\":1,\"urls\":\"x\"}]",
           ""),
     NULL, "layers[0].urls: must be an array"},
    {IMAGE(MTF(MT_OCI_MANIFEST), CONFIG,
           "[{\"mediaType\":\"" MT_LAYER "\",\"digest\":\"" DG_L1 "\",\"size\":1,\"urls\":[1]}]",
           ""),
     NULL, "layers[0].urls[0]: must be a string"},
    {IMAGE(MTF(MT_OCI_MANIFEST), CONFIG,
           "[{\"mediaType\":\"" MT_LAYER "\",\"digest\":\"" DG_L1 "\",\"size\":1,\"data\":1}]", ""),
     NULL, "layers[0].data: must be a string"},
    {IMAGE(MTF(MT_OCI_MANIFEST), CONFIG,
           "[{\"mediaType\":\"" MT_LAYER "\",\"digest\":\"" DG_L1
           "\",\"size\":1,\"artifactType\":3}]",
           ""),
     NULL, "layers[0].artifactType: must be a string"},
    {IMAGE(MTF(MT_OCI_MANIFEST), CONFIG,
           "[{\"mediaType\":\"" MT_LAYER "\",\"digest\":\"" DG_L1
           "\",\"size\":1,\"artifactType\":\"bad type\"}]",
           ""),
     NULL, "layers[0].artifactType: invalid media type"},
    /* index */
    {"{\"schemaVersion\":2," MTF(MT_OCI_INDEX) "\"annotations\":{}}", NULL, "manifests: required"},
    {INDEX(MTF(MT_OCI_INDEX), "{}", ""), NULL, "manifests: must be an array"},
    {INDEX(MTF(MT_OCI_INDEX), "[" CHILD1 ",{\"digest\":\"" DG_L2 "\",\"size\":3}]", ""), NULL,
     "manifests[1].mediaType: required"},
    {INDEX(MTF(MT_OCI_INDEX), "[" DESC(MT_OCI_MANIFEST, "sha256:", "3") "]", ""), NULL,
     "manifests[0].digest: invalid digest"},
    /* subject */
    {OCI_IMAGE(",\"subject\":null"), NULL, "subject: must be an object"},
    {OCI_IMAGE(",\"subject\":\"" DG_SUBJ "\""), NULL, "subject: must be an object"},
    {OCI_IMAGE(",\"subject\":{\"mediaType\":\"" MT_OCI_MANIFEST "\",\"size\":3}"), NULL,
     "subject.digest: required"},
    {OCI_INDEX(",\"subject\":{\"mediaType\":\"" MT_OCI_MANIFEST "\",\"digest\":\"" DG_SUBJ "\"}"),
     NULL, "subject.size: required"},
    /* annotations and artifactType */
    {OCI_IMAGE(",\"annotations\":[]"), NULL, "annotations: must be an object"},
    {OCI_IMAGE(",\"annotations\":null"), NULL, "annotations: must be an object"},
    {OCI_IMAGE(",\"annotations\":{\"a\":\"b\",\"c\":null}"), NULL,
     "annotations: value of every key must be a string"},
    {OCI_INDEX(",\"annotations\":{\"a\":{}}"), NULL, "annotations: value of every key"},
    {OCI_IMAGE(",\"artifactType\":7"), NULL, "artifactType: must be a string"},
    {OCI_IMAGE(",\"artifactType\":\"sbom\""), NULL, "artifactType: invalid media type"},
    {OCI_INDEX(",\"artifactType\":\"a/b\\\"c\""), NULL, "artifactType: invalid media type"},
};

static void test_invalid_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
        struct manifest m;
        struct err e = {0};
        memset(&m, 0x5a, sizeof(m));
        int rc = parse(bad_cases[i].body, bad_cases[i].ct, &m, &e);
        if (rc != -1) {
            manifest_fini(&m);
            fail_msg("case %zu accepted: %s", i, bad_cases[i].body);
        }
        if (e.code != ERR_MANIFEST_INVALID)
            fail_msg("case %zu: code %d, want MANIFEST_INVALID", i, e.code);
        if (strstr(e.msg, bad_cases[i].want_msg) == NULL)
            fail_msg("case %zu: message \"%s\" lacks \"%s\"", i, e.msg, bad_cases[i].want_msg);
        assert_zeroed(&m);
    }
}

static void test_embedded_nul_and_length(void **state)
{
    struct manifest m;
    struct err e = {0};
    static const char body[] = OCI_IMAGE("");
    char with_nul[sizeof(body) + 1];
    (void)state;
    /* A NUL byte inside len is not JSON. */
    memcpy(with_nul, body, sizeof(body));
    with_nul[10] = '\0';
    assert_int_equal(manifest_parse(with_nul, sizeof(body) - 1, NULL, &m, &e), -1);
    assert_int_equal(e.code, ERR_MANIFEST_INVALID);
    /* Only len bytes are read: a truncated length is truncated JSON. */
    assert_int_equal(manifest_parse(body, sizeof(body) - 2, NULL, &m, &e), -1);
    assert_int_equal(manifest_parse(NULL, 0, NULL, &m, &e), -1);
    /* A NULL err is allowed. */
    assert_int_equal(manifest_parse("{", 1, NULL, &m, NULL), -1);
    assert_zeroed(&m);
}

static void test_too_large(void **state)
{
    struct manifest m;
    struct err e = {0};
    size_t n = MANIFEST_MAX_BYTES + 1;
    char *body = malloc(n);
    (void)state;
    assert_non_null(body);
    memset(body, ' ', n);
    body[0] = '{';
    body[n - 1] = '}';
    assert_int_equal(manifest_parse(body, n, NULL, &m, &e), -1);
    assert_int_equal(e.code, ERR_MANIFEST_TOO_LARGE);
    assert_zeroed(&m);
    /* Exactly at the cap is parsed (and then fails on content, not size). */
    assert_int_equal(manifest_parse(body, n - 1, NULL, &m, &e), -1);
    assert_int_equal(e.code, ERR_MANIFEST_INVALID);
    free(body);
}

static void test_known_media_types(void **state)
{
    (void)state;
    assert_true(manifest_is_known_media_type(MT_OCI_MANIFEST));
    assert_true(manifest_is_known_media_type(MT_OCI_INDEX));
    assert_true(manifest_is_known_media_type(MT_DOCKER_MANIFEST));
    assert_true(manifest_is_known_media_type(MT_DOCKER_LIST));
    assert_false(manifest_is_known_media_type(MT_OCI_EMPTY));
    assert_false(manifest_is_known_media_type("application/json"));
    assert_false(manifest_is_known_media_type(MT_OCI_MANIFEST " "));
    assert_false(manifest_is_known_media_type(""));
    assert_false(manifest_is_known_media_type(NULL));
}

static void test_accept_table(void **state)
{
    static const struct {
        const char *accept;
        const char *mt;
        bool is_allowed;
    } cases[] = {
        {NULL, MT_OCI_MANIFEST, true},
        {"", MT_OCI_MANIFEST, true},
        {" , ,", MT_OCI_MANIFEST, true},
        {MT_OCI_MANIFEST, MT_OCI_MANIFEST, true},
        {MT_OCI_MANIFEST, MT_OCI_INDEX, false},
        {MT_DOCKER_MANIFEST ", " MT_OCI_INDEX, MT_OCI_INDEX, true},
        {MT_DOCKER_MANIFEST ", " MT_OCI_INDEX, MT_OCI_MANIFEST, false},
        {MT_DOCKER_MANIFEST "," MT_OCI_MANIFEST ";q=0.5", MT_OCI_MANIFEST, true},
        {"  " MT_OCI_MANIFEST "  ", MT_OCI_MANIFEST, true},
        {MT_OCI_MANIFEST "; charset=utf-8", MT_OCI_MANIFEST, true},
        {"APPLICATION/VND.OCI.IMAGE.MANIFEST.V1+JSON", MT_OCI_MANIFEST, true},
        {"*/*", MT_DOCKER_LIST, true},
        {"text/html, */*;q=0.8", MT_DOCKER_LIST, true},
        {"application/*", MT_OCI_INDEX, true},
        {"text/*", MT_OCI_INDEX, false},
        {"text/html", MT_OCI_INDEX, false},
        {MT_OCI_MANIFEST "x", MT_OCI_MANIFEST, false},
        {"application/vnd.oci.image.manifest", MT_OCI_MANIFEST, false},
        /* q=0 means "not acceptable" (RFC 9110 12.4.2) */
        {MT_OCI_MANIFEST ";q=0", MT_OCI_MANIFEST, false},
        {MT_OCI_MANIFEST "; q=0.000", MT_OCI_MANIFEST, false},
        {MT_OCI_MANIFEST ";Q=0.0", MT_OCI_MANIFEST, false},
        {MT_OCI_MANIFEST ";q=0.001", MT_OCI_MANIFEST, true},
        {MT_OCI_MANIFEST ";q=1", MT_OCI_MANIFEST, true},
        {"*/*;q=0, " MT_OCI_MANIFEST, MT_OCI_MANIFEST, true},
        {"*/*;q=0", MT_OCI_MANIFEST, false},
        {";q=1", MT_OCI_MANIFEST, true},
        {"text/plain", NULL, false},
        /* A quoted parameter value may hold ',' and ';' (RFC 9110 5.6.4): one range each */
        {"text/html;profile=\"a," MT_OCI_MANIFEST "\"", MT_OCI_MANIFEST, false},
        {"text/html;profile=\"x;q=1, */*\", " MT_OCI_MANIFEST, MT_OCI_MANIFEST, true},
        {"text/html;profile=\"x;q=1, */*\", " MT_OCI_MANIFEST, MT_OCI_INDEX, false},
        {MT_OCI_MANIFEST ";profile=\"a;q=0\"", MT_OCI_MANIFEST, true},
        {MT_OCI_MANIFEST ";profile=\"a;q=0;b\"", MT_OCI_MANIFEST, true},
        {"text/html;profile=\"a, */*;b=\"", MT_OCI_INDEX, false},
        /* A quote never closed is an ordinary character: the ranges after it still count */
        {MT_OCI_MANIFEST ", text/html;x=\"a, " MT_OCI_INDEX, MT_OCI_INDEX, true},
        {"text/html;x=\"a;q=0, " MT_OCI_INDEX ";q=0", MT_OCI_INDEX, false},
        {"text/html;x=\"a\\\", " MT_OCI_INDEX, MT_OCI_INDEX, true},
        {MT_OCI_MANIFEST ";profile=\"a\\\";b\";q=0", MT_OCI_MANIFEST, false},
        {MT_OCI_MANIFEST ";profile=\"a\\\", */*\"", MT_OCI_INDEX, false},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        bool got = manifest_accept_allows(cases[i].accept, cases[i].mt);
        if (got != cases[i].is_allowed)
            fail_msg("manifest_accept_allows(\"%s\", \"%s\") = %d, want %d",
                     cases[i].accept ? cases[i].accept : "(null)",
                     cases[i].mt ? cases[i].mt : "(null)", got, cases[i].is_allowed);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_oci_image),
        cmocka_unit_test(test_external_layers),
        cmocka_unit_test(test_oci_image_media_type_sources),
        cmocka_unit_test(test_artifact_empty_config_with_subject),
        cmocka_unit_test(test_artifact_type_fallbacks),
        cmocka_unit_test(test_descriptor_extras),
        cmocka_unit_test(test_oci_index),
        cmocka_unit_test(test_oci_index_variants),
        cmocka_unit_test(test_docker_manifest),
        cmocka_unit_test(test_docker_list),
        cmocka_unit_test(test_invalid_table),
        cmocka_unit_test(test_embedded_nul_and_length),
        cmocka_unit_test(test_too_large),
        cmocka_unit_test(test_known_media_types),
        cmocka_unit_test(test_accept_table),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
