"""Manifests: every supported type, byte-exact storage, Accept negotiation, HEAD,
push by digest, size cap (413), invalid documents, missing references, digest
mismatch on PUT by digest."""

import json
import secrets

import pytest

from conftest import (EMPTY_JSON, EMPTY_JSON_DIGEST, MT_DOCKER_LIST, MT_DOCKER_MANIFEST,
                      MT_OCI_CONFIG, MT_OCI_EMPTY, MT_OCI_INDEX, MT_OCI_LAYER,
                      MT_OCI_MANIFEST, assert_error, canonical_json, digest_of, path_of,
                      all_at_once, buildkit_cache_index, random_bytes,
                      referrers_tag_index)


def check_put_created(oci, r, repo, body, media_type, digest=None):
    digest = digest or digest_of(body)
    assert r.status_code == 201, (r.status_code, r.text)
    assert r.headers.get("Docker-Content-Digest") == digest
    loc = r.headers.get("Location")
    assert loc, r.headers
    g = oci.get(loc, headers={"Accept": media_type})
    assert g.status_code == 200, (loc, g.status_code)
    assert g.content == body
    assert g.headers["Content-Type"] == media_type


def check_served(oci, repo, ref, body, media_type):
    for method in ("GET", "HEAD"):
        r = oci.get_manifest(repo, ref, accept=media_type, method=method)
        assert r.status_code == 200, (method, ref, r.status_code, r.text[:200])
        assert r.headers["Content-Type"] == media_type
        assert int(r.headers["Content-Length"]) == len(body)
        assert r.headers.get("Docker-Content-Digest") == digest_of(body)
        assert r.content == (body if method == "GET" else b"")


def image_parts(oci, repo, n_layers=1, docker=False):
    cfg = canonical_json({"architecture": "amd64", "os": "linux", "id": secrets.token_hex(8),
                          "rootfs": {"type": "layers", "diff_ids": []}})
    layers = [random_bytes(512) for _ in range(n_layers)]
    oci.push_blob(repo, cfg)
    for b in layers:
        oci.push_blob(repo, b)
    cmt = "application/vnd.docker.container.image.v1+json" if docker else MT_OCI_CONFIG
    lmt = "application/vnd.docker.image.rootfs.diff.tar.gzip" if docker else MT_OCI_LAYER
    return ({"mediaType": cmt, "digest": digest_of(cfg), "size": len(cfg)},
            [{"mediaType": lmt, "digest": digest_of(b), "size": len(b)} for b in layers])


# -- every manifest type

def test_oci_image_manifest_by_tag(oci, repo):
    config, layers = image_parts(oci, repo, 2)
    body = canonical_json({"schemaVersion": 2, "mediaType": MT_OCI_MANIFEST,
                           "config": config, "layers": layers})
    r = oci.put_manifest(repo, "v1", body, MT_OCI_MANIFEST)
    check_put_created(oci, r, repo, body, MT_OCI_MANIFEST)
    check_served(oci, repo, "v1", body, MT_OCI_MANIFEST)
    check_served(oci, repo, digest_of(body), body, MT_OCI_MANIFEST)


def test_oci_image_manifest_by_digest(oci, repo):
    config, layers = image_parts(oci, repo, 1)
    body = canonical_json({"schemaVersion": 2, "mediaType": MT_OCI_MANIFEST,
                           "config": config, "layers": layers})
    r = oci.put_manifest(repo, digest_of(body), body, MT_OCI_MANIFEST)
    check_put_created(oci, r, repo, body, MT_OCI_MANIFEST)
    check_served(oci, repo, digest_of(body), body, MT_OCI_MANIFEST)
    # pushing by digest creates no tag
    assert oci.tag_list(repo) == []


def test_oci_image_manifest_without_layers(oci, repo):
    config, _ = image_parts(oci, repo, 0)
    body = canonical_json({"schemaVersion": 2, "mediaType": MT_OCI_MANIFEST,
                           "config": config, "layers": []})
    r = oci.put_manifest(repo, "nolayers", body, MT_OCI_MANIFEST)
    check_put_created(oci, r, repo, body, MT_OCI_MANIFEST)


def test_manifest_without_media_type_field_uses_content_type(oci, repo):
    # as the conformance suite's empty-layer manifest: no "mediaType" in the body
    config, layers = image_parts(oci, repo, 1)
    body = json.dumps({"schemaVersion": 2, "config": config, "layers": layers},
                      indent="\t").encode()
    r = oci.put_manifest(repo, "nomt", body, MT_OCI_MANIFEST)
    check_put_created(oci, r, repo, body, MT_OCI_MANIFEST)
    check_served(oci, repo, "nomt", body, MT_OCI_MANIFEST)


def test_oci_index(oci, repo):
    a = oci.push_image(repo, layers=1)
    b = oci.push_image(repo, layers=1)
    idx = oci.push_index(repo, [a, b], tag="multi")
    check_served(oci, repo, "multi", idx.body, MT_OCI_INDEX)
    check_served(oci, repo, idx.digest, idx.body, MT_OCI_INDEX)
    # children stay pullable by digest
    for c in (a, b):
        check_served(oci, repo, c.digest, c.body, MT_OCI_MANIFEST)


def test_nested_index(oci, repo):
    a = oci.push_image(repo, layers=1)
    b = oci.push_image(repo, layers=1)
    i1 = oci.push_index(repo, [a, b])
    i2 = oci.push_index(repo, [b, a])
    top = oci.push_index(repo, [i1, i2], tag="index-of-index", platforms=False)
    check_served(oci, repo, "index-of-index", top.body, MT_OCI_INDEX)


def test_empty_index(oci, repo):
    idx = oci.push_index(repo, [], tag="empty")
    check_served(oci, repo, "empty", idx.body, MT_OCI_INDEX)


def test_artifact_with_empty_config_and_artifact_type(oci, repo):
    payload = b"an sbom, perhaps"
    art = oci.push_artifact(repo, "application/vnd.example.sbom.v1+json", tag="sbom",
                            payload=payload)
    check_served(oci, repo, "sbom", art.body, MT_OCI_MANIFEST)
    assert oci.get_blob(repo, EMPTY_JSON_DIGEST) == EMPTY_JSON
    assert oci.get_blob(repo, digest_of(payload)) == payload


def test_artifact_whose_only_layer_is_the_empty_descriptor(oci, repo):
    art = oci.push_artifact(repo, "application/vnd.example.thing", tag="bare")
    check_served(oci, repo, "bare", art.body, MT_OCI_MANIFEST)


def test_artifact_index(oci, repo):
    a = oci.push_artifact(repo, "application/vnd.example.a")
    b = oci.push_artifact(repo, "application/vnd.example.a")
    idx = oci.push_index(repo, [a, b], tag="art-index", artifact_type="application/vnd.example.a")
    check_served(oci, repo, "art-index", idx.body, MT_OCI_INDEX)


def test_docker_schema2_manifest(oci, repo):
    config, layers = image_parts(oci, repo, 2, docker=True)
    body = canonical_json({"schemaVersion": 2, "mediaType": MT_DOCKER_MANIFEST,
                           "config": config, "layers": layers})
    r = oci.put_manifest(repo, "docker", body, MT_DOCKER_MANIFEST)
    check_put_created(oci, r, repo, body, MT_DOCKER_MANIFEST)
    check_served(oci, repo, "docker", body, MT_DOCKER_MANIFEST)


def test_docker_manifest_list(oci, repo):
    a = oci.push_image(repo, layers=1, media_type=MT_DOCKER_MANIFEST)
    b = oci.push_image(repo, layers=1, media_type=MT_DOCKER_MANIFEST)
    lst = oci.push_index(repo, [a, b], tag="fat", media_type=MT_DOCKER_LIST)
    check_served(oci, repo, "fat", lst.body, MT_DOCKER_LIST)


def test_index_may_mix_oci_and_docker_children(oci, repo):
    a = oci.push_image(repo, layers=1, media_type=MT_DOCKER_MANIFEST)
    b = oci.push_image(repo, layers=1)
    idx = oci.push_index(repo, [a, b], tag="mixed")
    check_served(oci, repo, "mixed", idx.body, MT_OCI_INDEX)


# -- exact bytes

def test_manifest_is_stored_byte_for_byte(oci, repo):
    config, layers = image_parts(oci, repo, 1)
    # odd but valid JSON: key order, whitespace, escapes, unicode, unknown fields,
    # a descriptor "data" field, CRLF line ends and a trailing newline
    text = (
        '{\r\n  "layers" : [ %s ],\r\n'
        '  "config":%s ,\r\n'
        '  "schemaVersion":2,  "mediaType" :"application\\/vnd.oci.image.manifest.v1+json",\r\n'
        '  "annotations": {"org.example.note": "caf\\u00e9 \u2603 \\"quoted\\""},\r\n'
        '  "x-unknown-field": {"nested": [1, 2.50, true, null]}\r\n}\n'
    ) % (json.dumps(layers[0], indent=4),
         json.dumps(dict(config, data="e30=", **{"x-extra": "kept"})))
    body = text.encode("utf-8")
    r = oci.put_manifest(repo, "odd", body, MT_OCI_MANIFEST)
    check_put_created(oci, r, repo, body, MT_OCI_MANIFEST)
    check_served(oci, repo, "odd", body, MT_OCI_MANIFEST)


def test_large_manifest_under_the_cap(oci, repo):
    # like the conformance "large manifest": ~3.9 MB of annotations
    config, layers = image_parts(oci, repo, 1)
    ann = {"large-annotation-%d" % i: "A" * 10000 for i in range(390)}
    body = canonical_json({"schemaVersion": 2, "mediaType": MT_OCI_MANIFEST,
                           "config": config, "layers": layers, "annotations": ann})
    assert 3_800_000 < len(body) < 4 * 1024 * 1024
    r = oci.put_manifest(repo, "large", body, MT_OCI_MANIFEST)
    check_put_created(oci, r, repo, body, MT_OCI_MANIFEST)


def test_manifest_over_4mib_is_413_and_stores_nothing(oci, repo):
    config, layers = image_parts(oci, repo, 1)
    old = oci.push_image(repo, tag="big", layers=1)
    m = {"schemaVersion": 2, "mediaType": MT_OCI_MANIFEST, "config": config,
         "layers": layers, "annotations": {"pad": ""}}
    base = len(canonical_json(m))
    m["annotations"]["pad"] = "x" * (4 * 1024 * 1024 + 1 - base)
    body = canonical_json(m)
    assert len(body) == 4 * 1024 * 1024 + 1
    r = oci.put_manifest(repo, "big", body, MT_OCI_MANIFEST)
    assert r.status_code == 413, (r.status_code, r.text[:300])
    assert oci.get_manifest(repo, "big").content == old.body
    assert oci.get_manifest(repo, digest_of(body)).status_code == 404


def test_manifest_of_exactly_4mib_is_accepted(oci, repo):
    config, layers = image_parts(oci, repo, 1)
    m = {"schemaVersion": 2, "mediaType": MT_OCI_MANIFEST, "config": config,
         "layers": layers, "annotations": {"pad": ""}}
    base = len(canonical_json(m))
    m["annotations"]["pad"] = "x" * (4 * 1024 * 1024 - base)
    body = canonical_json(m)
    assert len(body) == 4 * 1024 * 1024
    r = oci.put_manifest(repo, "exact", body, MT_OCI_MANIFEST)
    check_put_created(oci, r, repo, body, MT_OCI_MANIFEST)


# -- Accept negotiation

@pytest.fixture
def tagged(oci, repo):
    return oci.push_image(repo, tag="neg", layers=1)


@pytest.mark.parametrize("accept", [
    None,
    "*/*",
    MT_OCI_MANIFEST,
    "%s, %s" % (MT_OCI_INDEX, MT_OCI_MANIFEST),
    "%s;q=0.5, %s" % (MT_DOCKER_MANIFEST, MT_OCI_MANIFEST),
    "%s;q=0.9" % MT_OCI_MANIFEST,
    "application/json, */*;q=0.1",
])
def test_accept_that_admits_the_stored_type(oci, tagged, accept):
    r = oci.get_manifest(tagged.repo, "neg", accept=accept)
    assert r.status_code == 200, (accept, r.status_code, r.text)
    assert r.content == tagged.body
    assert r.headers["Content-Type"] == MT_OCI_MANIFEST


def test_accept_as_repeated_header_lines(oci, tagged):
    # Go clients send one Accept line per type
    status, headers, body = oci.raw("GET", "/v2/%s/manifests/neg" % tagged.repo,
                                    headers=[("Accept", MT_OCI_INDEX),
                                             ("Accept", MT_OCI_MANIFEST)])
    assert status == 200
    assert body == tagged.body
    assert dict((k.lower(), v) for k, v in headers)["content-type"] == MT_OCI_MANIFEST


@pytest.mark.parametrize("accept", [
    MT_OCI_INDEX,
    MT_DOCKER_MANIFEST,
    "%s, %s" % (MT_DOCKER_LIST, MT_OCI_INDEX),
])
def test_accept_without_the_stored_type_by_tag_is_404(oci, tagged, accept):
    for method in ("GET", "HEAD"):
        r = oci.get_manifest(tagged.repo, "neg", accept=accept, method=method)
        if method == "GET":
            assert_error(r, 404, "MANIFEST_UNKNOWN")
        else:
            assert r.status_code == 404


def test_accept_without_the_stored_type_by_digest_is_still_served(oci, tagged):
    r = oci.get_manifest(tagged.repo, tagged.digest, accept=MT_OCI_INDEX)
    assert r.status_code == 200
    assert r.content == tagged.body
    assert r.headers["Content-Type"] == MT_OCI_MANIFEST


def test_content_type_parameters_are_ignored(oci, repo):
    config, layers = image_parts(oci, repo, 1)
    body = canonical_json({"schemaVersion": 2, "mediaType": MT_OCI_MANIFEST,
                           "config": config, "layers": layers})
    r = oci.put_manifest(repo, "params", body, MT_OCI_MANIFEST + "; charset=utf-8")
    check_put_created(oci, r, repo, body, MT_OCI_MANIFEST)
    # served without parameters
    assert oci.get_manifest(repo, "params").headers["Content-Type"] == MT_OCI_MANIFEST


# -- pushes that must be refused, and change nothing

def test_invalid_json_is_manifest_invalid(oci, repo):
    old = oci.push_image(repo, tag="keep", layers=1)
    for body in (b"blablabla", b"{", b"", b"[]", b"null", b'{"schemaVersion": 2,}'):
        r = oci.put_manifest(repo, "keep", body, MT_OCI_MANIFEST)
        assert_error(r, 400, "MANIFEST_INVALID")
        r = oci.put_manifest(repo, "fresh", body, MT_OCI_MANIFEST)
        assert_error(r, 400, "MANIFEST_INVALID")
    assert oci.get_manifest(repo, "keep").content == old.body
    assert oci.get_manifest(repo, "fresh").status_code == 404
    assert oci.tag_list(repo) == ["keep"]


@pytest.mark.parametrize("mutate", [
    "schema1", "schema3", "no-schema", "schema-string", "no-config", "config-not-object",
    "layers-not-array", "config-bad-digest", "layer-bad-digest", "layer-no-digest",
    "layer-negative-size", "layer-size-string", "index-manifests-not-array",
    "index-child-bad-digest", "mediatype-mismatch", "unknown-mediatype",
])
def test_structurally_invalid_manifest(oci, repo, mutate):
    config, layers = image_parts(oci, repo, 1)
    child = oci.push_image(repo, layers=1)
    mt = MT_OCI_MANIFEST
    m = {"schemaVersion": 2, "mediaType": MT_OCI_MANIFEST, "config": config,
         "layers": layers}
    if mutate == "schema1":
        m["schemaVersion"] = 1
    elif mutate == "schema3":
        m["schemaVersion"] = 3
    elif mutate == "no-schema":
        del m["schemaVersion"]
    elif mutate == "schema-string":
        m["schemaVersion"] = "2"
    elif mutate == "no-config":
        del m["config"]
    elif mutate == "config-not-object":
        m["config"] = "sha256:" + "0" * 64
    elif mutate == "layers-not-array":
        m["layers"] = layers[0]
    elif mutate == "config-bad-digest":
        m["config"] = dict(config, digest="sha256:nothex")
    elif mutate == "layer-bad-digest":
        m["layers"] = [dict(layers[0], digest="sha256:" + "g" * 64)]
    elif mutate == "layer-no-digest":
        m["layers"] = [{"mediaType": MT_OCI_LAYER, "size": 1}]
    elif mutate == "layer-negative-size":
        m["layers"] = [dict(layers[0], size=-1)]
    elif mutate == "layer-size-string":
        m["layers"] = [dict(layers[0], size="512")]
    elif mutate == "index-manifests-not-array":
        mt = MT_OCI_INDEX
        m = {"schemaVersion": 2, "mediaType": MT_OCI_INDEX, "manifests": child.descriptor()}
    elif mutate == "index-child-bad-digest":
        mt = MT_OCI_INDEX
        m = {"schemaVersion": 2, "mediaType": MT_OCI_INDEX,
             "manifests": [dict(child.descriptor(), digest="sha256:xyz")]}
    elif mutate == "mediatype-mismatch":
        mt = MT_OCI_INDEX  # body says image manifest, header says index
    elif mutate == "unknown-mediatype":
        m["mediaType"] = mt = "application/vnd.example.not-a-manifest+json"
    body = canonical_json(m)
    r = oci.put_manifest(repo, "bad", body, mt)
    assert_error(r, 400, codes=("MANIFEST_INVALID", "DIGEST_INVALID"))
    assert oci.get_manifest(repo, "bad").status_code == 404
    assert oci.get_manifest(repo, digest_of(body)).status_code == 404


@pytest.mark.parametrize("missing", ["config", "layer"])
def test_missing_blob_is_manifest_blob_unknown(oci, repo, missing):
    config, layers = image_parts(oci, repo, 2)
    ghost = random_bytes(100)
    gdesc = {"digest": digest_of(ghost), "size": len(ghost)}
    if missing == "config":
        config = dict(config, **gdesc)
    else:
        layers = [layers[0], dict(layers[1], **gdesc)]
    body = canonical_json({"schemaVersion": 2, "mediaType": MT_OCI_MANIFEST,
                           "config": config, "layers": layers})
    r = oci.put_manifest(repo, "ghost", body, MT_OCI_MANIFEST)
    assert_error(r, 400, "MANIFEST_BLOB_UNKNOWN")
    assert oci.get_manifest(repo, "ghost").status_code == 404
    assert oci.get_manifest(repo, digest_of(body)).status_code == 404
    # once the blob is pushed, the same bytes are accepted
    oci.push_blob(repo, ghost)
    r = oci.put_manifest(repo, "ghost", body, MT_OCI_MANIFEST)
    check_put_created(oci, r, repo, body, MT_OCI_MANIFEST)


FOREIGN = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
NONDIST = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"


@pytest.mark.parametrize("layer_type,docker", [(FOREIGN, True), (NONDIST, False)])
def test_external_layer_with_urls_need_not_be_pushed(oci, repo, layer_type, docker):
    """A foreign (Docker) or non-distributable (OCI) layer with urls is fetched by clients
    from those urls: containers/image and crane copy such images without its bytes, so the
    manifest is accepted without them and served as pushed; the other blobs are still
    required, and the same layer without urls is not accepted without its bytes."""
    config, layers = image_parts(oci, repo, 1, docker=docker)
    ghost = random_bytes(300)
    external = {"mediaType": layer_type, "digest": digest_of(ghost), "size": len(ghost),
                "urls": ["https://example.invalid/layer.tar.gz"]}
    mt = MT_DOCKER_MANIFEST if docker else MT_OCI_MANIFEST
    body = canonical_json({"schemaVersion": 2, "mediaType": mt, "config": config,
                           "layers": [external] + layers})
    r = oci.put_manifest(repo, "win", body, mt)
    check_put_created(oci, r, repo, body, mt)
    check_served(oci, repo, "win", body, mt)
    assert not oci.blob_exists(repo, digest_of(ghost))
    # a url that is no http(s) place to fetch from gives no exemption
    local = dict(external, urls=["file:///var/lib/layer.tar.gz"])
    body4 = canonical_json({"schemaVersion": 2, "mediaType": mt, "config": config,
                            "layers": [local] + layers})
    assert_error(oci.put_manifest(repo, "local", body4, mt), 400, "MANIFEST_BLOB_UNKNOWN")
    # without urls there is nowhere else to fetch it from
    bare = {k: v for k, v in external.items() if k != "urls"}
    body2 = canonical_json({"schemaVersion": 2, "mediaType": mt, "config": config,
                            "layers": [bare] + layers})
    assert_error(oci.put_manifest(repo, "bare", body2, mt), 400, "MANIFEST_BLOB_UNKNOWN")
    # the rest of the image is checked as always
    missing = random_bytes(200)
    body3 = canonical_json({"schemaVersion": 2, "mediaType": mt, "config": config,
                            "layers": [external, {"mediaType": layers[0]["mediaType"],
                                                  "digest": digest_of(missing),
                                                  "size": len(missing)}]})
    assert_error(oci.put_manifest(repo, "half", body3, mt), 400, "MANIFEST_BLOB_UNKNOWN")


def test_external_layer_pushed_is_held_like_any_other(oci, repo):
    """Pushed anyway (docker with allow-nondistributable-artifacts), an external layer is a
    reference like any other: its size is checked, and its bytes stay while the manifest does."""
    config, layers = image_parts(oci, repo, 1, docker=True)
    data = random_bytes(400)
    oci.push_blob(repo, data)
    external = {"mediaType": FOREIGN, "digest": digest_of(data), "size": len(data) + 1,
                "urls": ["https://example.invalid/l.tar.gz"]}
    body = canonical_json({"schemaVersion": 2, "mediaType": MT_DOCKER_MANIFEST,
                           "config": config, "layers": [external] + layers})
    assert_error(oci.put_manifest(repo, "sized", body, MT_DOCKER_MANIFEST), 400,
                 "MANIFEST_INVALID")
    external["size"] = len(data)
    body = canonical_json({"schemaVersion": 2, "mediaType": MT_DOCKER_MANIFEST,
                           "config": config, "layers": [external] + layers})
    r = oci.put_manifest(repo, "held", body, MT_DOCKER_MANIFEST)
    check_put_created(oci, r, repo, body, MT_DOCKER_MANIFEST)
    # referenced: deleting the blob is refused while the manifest names it
    r = oci.delete("/v2/%s/blobs/%s" % (repo, digest_of(data)))
    assert r.status_code == 405 and "referenced" in r.text, (r.status_code, r.text)
    assert r.headers.get("Allow") == "GET, HEAD", r.headers  # what it takes while referenced
    assert oci.get_blob(repo, digest_of(data)) == data


def test_index_with_missing_child_is_manifest_blob_unknown(oci, repo):
    a = oci.push_image(repo, layers=1)
    ghost = {"mediaType": MT_OCI_MANIFEST, "digest": digest_of(b"no such manifest"),
             "size": 16}
    body = canonical_json({"schemaVersion": 2, "mediaType": MT_OCI_INDEX,
                           "manifests": [a.descriptor(), ghost]})
    r = oci.put_manifest(repo, "ghost-index", body, MT_OCI_INDEX)
    assert_error(r, 400, "MANIFEST_BLOB_UNKNOWN")
    assert oci.get_manifest(repo, "ghost-index").status_code == 404


def test_index_child_in_another_repository_is_manifest_blob_unknown(oci, repo):
    a = oci.push_image(repo + "/elsewhere", layers=1)
    body = canonical_json({"schemaVersion": 2, "mediaType": MT_OCI_INDEX,
                           "manifests": [a.descriptor()]})
    r = oci.put_manifest(repo, "x", body, MT_OCI_INDEX)
    assert_error(r, 400, "MANIFEST_BLOB_UNKNOWN")


def test_blob_held_only_by_another_repository_is_manifest_blob_unknown(oci, repo):
    """A blob is usable in a repository only once pushed or mounted there (issue 9; more in
    test_blob_links.py): a manifest naming another repository's blobs is refused."""
    src = oci.push_image(repo + "/src", layers=2)
    r = oci.put_manifest(repo + "/dst", "linked", src.body, MT_OCI_MANIFEST)
    assert_error(r, 400, "MANIFEST_BLOB_UNKNOWN")
    for d in src.blobs:
        assert not oci.blob_exists(repo + "/dst", d)


def test_put_by_digest_that_does_not_match_the_body(oci, repo):
    config, layers = image_parts(oci, repo, 1)
    body = canonical_json({"schemaVersion": 2, "mediaType": MT_OCI_MANIFEST,
                           "config": config, "layers": layers})
    wrong = digest_of(body + b" ")
    r = oci.put_manifest(repo, wrong, body, MT_OCI_MANIFEST)
    assert_error(r, 400, "DIGEST_INVALID")
    assert oci.get_manifest(repo, wrong).status_code == 404
    assert oci.get_manifest(repo, digest_of(body)).status_code == 404


def test_put_by_malformed_digest(oci, repo):
    config, layers = image_parts(oci, repo, 1)
    body = canonical_json({"schemaVersion": 2, "mediaType": MT_OCI_MANIFEST,
                           "config": config, "layers": layers})
    for ref in ("sha256:baddigeststring", "sha256:totallywrong"):
        r = oci.put_manifest(repo, ref, body, MT_OCI_MANIFEST)
        assert_error(r, 400, codes=("DIGEST_INVALID", "MANIFEST_INVALID", "TAG_INVALID"))
        r = oci.get_manifest(repo, ref)
        assert r.status_code in (400, 404)
    assert oci.get_manifest(repo, digest_of(body)).status_code == 404


def test_put_by_sha512_digest(oci, repo):
    config, layers = image_parts(oci, repo, 1)
    body = canonical_json({"schemaVersion": 2, "mediaType": MT_OCI_MANIFEST,
                           "config": config, "layers": layers})
    d512 = digest_of(body, "sha512")
    r = oci.put_manifest(repo, d512, body, MT_OCI_MANIFEST)
    assert r.status_code == 201, (r.status_code, r.text)
    # "MUST be equal to the client provided digest"
    assert r.headers.get("Docker-Content-Digest") == d512
    g = oci.get_manifest(repo, d512)
    assert g.status_code == 200 and g.content == body
    assert g.headers.get("Docker-Content-Digest") == d512
    # the sha512 digest also works with a mismatch check
    wrong = digest_of(body + b"\n", "sha512")
    assert_error(oci.put_manifest(repo, wrong, body, MT_OCI_MANIFEST), 400, "DIGEST_INVALID")


def test_repushing_the_same_manifest_is_idempotent(oci, repo):
    img = oci.push_image(repo, tag="same", layers=1)
    for _ in range(3):
        r = oci.put_manifest(repo, "same", img.body, MT_OCI_MANIFEST)
        check_put_created(oci, r, repo, img.body, MT_OCI_MANIFEST)
        r = oci.put_manifest(repo, img.digest, img.body, MT_OCI_MANIFEST)
        check_put_created(oci, r, repo, img.body, MT_OCI_MANIFEST)
    assert oci.tag_list(repo) == ["same"]


def test_one_manifest_many_tags(oci, repo):
    img = oci.push_image(repo, tag="a", layers=1)
    for t in ("b", "c", "latest"):
        assert oci.put_manifest(repo, t, img.body, MT_OCI_MANIFEST).status_code == 201
    for t in ("a", "b", "c", "latest"):
        assert oci.get_manifest(repo, t).content == img.body
    assert oci.tag_list(repo) == ["a", "b", "c", "latest"]


def test_descriptor_media_types_unknown_to_the_registry_are_accepted(oci, repo):
    cfg = b'{"whatever": true}'
    layer = random_bytes(64)
    oci.push_blob(repo, cfg)
    oci.push_blob(repo, layer)
    body = canonical_json({
        "schemaVersion": 2, "mediaType": MT_OCI_MANIFEST,
        "artifactType": "application/vnd.example.unknown+type",
        "config": {"mediaType": "application/vnd.example.config.v1+json",
                   "digest": digest_of(cfg), "size": len(cfg)},
        "layers": [{"mediaType": "application/vnd.example.data.v1.tar+zstd",
                    "digest": digest_of(layer), "size": len(layer),
                    "annotations": {"org.opencontainers.image.title": "data.bin"}}]})
    r = oci.put_manifest(repo, "unknown-types", body, MT_OCI_MANIFEST)
    check_put_created(oci, r, repo, body, MT_OCI_MANIFEST)


def pushed_cache_index(oci, repo, push=True):
    """BuildKit's registry cache index and its blobs, the blobs pushed into repo first."""
    body, blobs = buildkit_cache_index([random_bytes(300 + i) for i in range(2)])
    for b in blobs.values() if push else ():
        oci.push_blob(repo, b)
    return body, blobs


def test_index_whose_children_are_blobs_is_accepted(oci, repo):
    """BuildKit's registry cache: every child of the index is a blob of the repository."""
    body, blobs = pushed_cache_index(oci, repo)
    r = oci.put_manifest(repo, "buildcache", body, MT_OCI_INDEX)
    check_put_created(oci, r, repo, body, MT_OCI_INDEX)
    g = oci.get_manifest(repo, "buildcache")
    assert g.status_code == 200 and g.content == body
    for d, b in blobs.items():
        assert oci.get_blob(repo, d) == b
    # the blobs it names are held by it: a delete leaves the index pullable (or goes)
    victim = next(iter(blobs))
    r = oci.delete(oci.blob_path(repo, victim))
    if oci.get_manifest(repo, "buildcache").status_code == 200:
        assert oci.get_blob(repo, victim) == blobs[victim], r.status_code


def test_index_naming_a_blob_not_in_the_repository_is_manifest_blob_unknown(oci, repo):
    body, blobs = pushed_cache_index(oci, repo, push=False)
    r = oci.put_manifest(repo, "buildcache", body, MT_OCI_INDEX)
    assert_error(r, 400, "MANIFEST_BLOB_UNKNOWN")
    assert "blob" in r.text
    assert not oci.manifest_exists(repo, "buildcache")
    # a child declared as a manifest must be one: a blob of that digest does not do
    layer = random_bytes(100)
    oci.push_blob(repo, layer)
    fake = canonical_json({"schemaVersion": 2, "mediaType": MT_OCI_INDEX, "manifests": [
        {"mediaType": MT_OCI_MANIFEST, "digest": digest_of(layer), "size": len(layer)}]})
    assert_error(oci.put_manifest(repo, "fake", fake, MT_OCI_INDEX), 400,
                 "MANIFEST_BLOB_UNKNOWN")


def test_manifest_location_is_under_its_repository(oci, repo):
    img = oci.push_image(repo, layers=1)
    r = oci.put_manifest(repo, "loc", img.body, MT_OCI_MANIFEST)
    assert r.status_code == 201
    assert path_of(r.headers["Location"]).startswith("/v2/%s/manifests/" % repo)


def test_empty_config_blob_media_type_descriptor(oci, repo):
    # an image manifest whose config is the empty descriptor needs an artifactType;
    # with it, the registry accepts it and serves it unchanged
    oci.push_blob(repo, EMPTY_JSON)
    body = canonical_json({
        "schemaVersion": 2, "mediaType": MT_OCI_MANIFEST, "artifactType": "application/x.t",
        "config": {"mediaType": MT_OCI_EMPTY, "digest": EMPTY_JSON_DIGEST, "size": 2},
        "layers": []})
    r = oci.put_manifest(repo, "emptycfg", body, MT_OCI_MANIFEST)
    check_put_created(oci, r, repo, body, MT_OCI_MANIFEST)


def test_sha512_throughout(oci, repo):
    """Blobs, image manifests and an index all addressed by sha512 (conformance
    "Digest Algorithm sha512": pushed and pulled by digest)."""
    children = []
    for arch in ("amd64", "arm64"):
        cfg = canonical_json({"architecture": arch, "os": "linux", "n": secrets.token_hex(4)})
        layer = random_bytes(700)
        dc = oci.push_blob(repo, cfg, alg="sha512")
        dl = oci.push_blob(repo, layer, alg="sha512")
        body = canonical_json({
            "schemaVersion": 2, "mediaType": MT_OCI_MANIFEST,
            "config": {"mediaType": MT_OCI_CONFIG, "digest": dc, "size": len(cfg)},
            "layers": [{"mediaType": MT_OCI_LAYER, "digest": dl, "size": len(layer)}]})
        d = digest_of(body, "sha512")
        r = oci.put_manifest(repo, d, body, MT_OCI_MANIFEST)
        assert r.status_code == 201, (r.status_code, r.text)
        children.append({"mediaType": MT_OCI_MANIFEST, "digest": d, "size": len(body),
                         "platform": {"architecture": arch, "os": "linux"}})
    idx = canonical_json({"schemaVersion": 2, "mediaType": MT_OCI_INDEX,
                          "manifests": children})
    d = digest_of(idx, "sha512")
    r = oci.put_manifest(repo, d, idx, MT_OCI_INDEX)
    assert r.status_code == 201, (r.status_code, r.text)
    assert r.headers.get("Docker-Content-Digest") == d
    g = oci.get_manifest(repo, d)
    assert g.status_code == 200 and g.content == idx
    assert g.headers["Content-Type"] == MT_OCI_INDEX
    # a sha512 child that does not exist is still refused
    ghost = dict(children[0], digest=digest_of(b"ghost", "sha512"))
    bad = canonical_json({"schemaVersion": 2, "mediaType": MT_OCI_INDEX, "manifests": [ghost]})
    assert_error(oci.put_manifest(repo, digest_of(bad, "sha512"), bad, MT_OCI_INDEX), 400,
                 "MANIFEST_BLOB_UNKNOWN")


# -- conditional writes (RFC 9110 13.1.1, 13.1.2)

def test_put_with_if_match_needs_the_current_etag(oci, repo):
    """A client updating the referrers tag schema index sends If-Match with the ETag its
    GET gave (distribution-spec "Pushing Manifests with Subject"): a stale one is 412 and
    the update a concurrent writer made survives."""
    tag = "sha256-" + "a" * 64
    v1, v2, v3 = (referrers_tag_index(n) for n in (1, 2, 3))
    assert oci.put_manifest(repo, tag, v1, MT_OCI_INDEX).status_code == 201
    etag = oci.get_manifest(repo, tag).headers["ETag"]
    assert etag == '"%s"' % digest_of(v1)
    # another writer moves the tag on
    assert oci.put_manifest(repo, tag, v2, MT_OCI_INDEX,
                            headers={"If-Match": etag}).status_code == 201
    r = oci.put_manifest(repo, tag, v3, MT_OCI_INDEX, headers={"If-Match": etag})
    assert_error(r, 412)
    assert oci.get_manifest(repo, tag).content == v2
    assert not oci.manifest_exists(repo, digest_of(v3))
    # a weak tag never matches (strong comparison), "*" matches whatever is there
    cur = '"%s"' % digest_of(v2)
    assert_error(oci.put_manifest(repo, tag, v3, MT_OCI_INDEX, headers={"If-Match": "W/" + cur}),
                 412)
    assert oci.put_manifest(repo, tag, v3, MT_OCI_INDEX,
                            headers={"If-Match": '"x", ' + cur}).status_code == 201
    # If-Match on a tag that does not exist: nothing to match, nothing created
    assert_error(oci.put_manifest(repo, "absent", v1, MT_OCI_INDEX, headers={"If-Match": "*"}),
                 412)
    assert not oci.manifest_exists(repo, "absent")


def race_conditional_puts(oci, repo, tag, headers, race, n=12):
    """n writers PUT distinct indexes to tag with the same condition at once; the
    statuses and the bodies, in the writers' order."""
    bodies = [referrers_tag_index(1000 * (race + 1) + i) for i in range(n)]
    statuses = all_at_once(bodies, lambda body: oci.put_manifest(
        repo, tag, body, MT_OCI_INDEX, headers=headers).status_code)
    return statuses, bodies


@pytest.mark.parametrize("condition", ["If-Match", "If-None-Match"])
def test_concurrent_conditional_puts_let_one_writer_win(oci, repo, condition):
    """Writers racing on one condition (If-Match with the ETag they all read, or
    If-None-Match: * to create): the check is made in the write's transaction, so exactly
    one succeeds, the tag names its manifest, and no loser's manifest is stored."""
    for race in range(8):  # the window without the check in the transaction is narrow
        tag = "sha256-%064x" % race
        if condition == "If-Match":
            first = referrers_tag_index(-1 - race)
            assert oci.put_manifest(repo, tag, first, MT_OCI_INDEX).status_code == 201
            headers = {"If-Match": oci.get_manifest(repo, tag).headers["ETag"]}
        else:
            headers = {"If-None-Match": "*"}
        statuses, bodies = race_conditional_puts(oci, repo, tag, headers, race)
        assert sorted(set(statuses)) == [201, 412] and statuses.count(201) == 1, statuses
        winner = bodies[statuses.index(201)]
        assert oci.get_manifest(repo, tag).content == winner
        for body, status in zip(bodies, statuses):
            if status == 412:
                assert not oci.manifest_exists(repo, digest_of(body))


def test_concurrent_conditional_deletes_and_puts_let_one_writer_win(oci, repo):
    """Deletes and updates of a tag racing on the ETag they all read: exactly one of them
    takes effect (a delete that lost finds the tag moved or gone: 412 or 404)."""
    for race in range(8):
        tag = "t%d" % race
        assert oci.put_manifest(repo, tag, referrers_tag_index(-1 - race),
                                MT_OCI_INDEX).status_code == 201
        headers = {"If-Match": oci.get_manifest(repo, tag).headers["ETag"]}
        bodies = [referrers_tag_index(1000 * (race + 1) + i) for i in range(6)]

        def write(i):
            if i < 6:
                return oci.put_manifest(repo, tag, bodies[i], MT_OCI_INDEX,
                                        headers=headers).status_code
            return oci.delete(oci.manifest_path(repo, tag), headers=headers).status_code

        statuses = all_at_once(range(12), write)
        won = [i for i, st in enumerate(statuses) if st in (201, 202)]
        assert len(won) == 1, statuses
        assert all(st in (412, 404) for i, st in enumerate(statuses) if i != won[0]), statuses
        r = oci.get_manifest(repo, tag)
        if won[0] < 6:
            assert r.content == bodies[won[0]]
        else:
            assert r.status_code == 404


def test_put_with_if_none_match_star_only_creates(oci, repo):
    v1, v2 = referrers_tag_index(1), referrers_tag_index(2)
    assert oci.put_manifest(repo, "new", v1, MT_OCI_INDEX,
                            headers={"If-None-Match": "*"}).status_code == 201
    assert_error(oci.put_manifest(repo, "new", v2, MT_OCI_INDEX, headers={"If-None-Match": "*"}),
                 412)
    assert oci.get_manifest(repo, "new").content == v1
    assert_error(oci.put_manifest(repo, "new", v2, MT_OCI_INDEX,
                                  headers={"If-None-Match": '"%s"' % digest_of(v1)}), 412)
    assert oci.put_manifest(repo, "new", v2, MT_OCI_INDEX,
                            headers={"If-None-Match": '"%s"' % digest_of(v2)}).status_code == 201


def test_delete_with_a_stale_if_match_changes_nothing(oci, repo):
    v1, v2 = referrers_tag_index(1), referrers_tag_index(2)
    assert oci.put_manifest(repo, "t", v1, MT_OCI_INDEX).status_code == 201
    stale = oci.get_manifest(repo, "t").headers["ETag"]
    assert oci.put_manifest(repo, "t", v2, MT_OCI_INDEX).status_code == 201
    for ref in ("t", digest_of(v1)):
        assert_error(oci.delete(oci.manifest_path(repo, ref),
                                headers={"If-Match": '"%s"' % digest_of(v2)} if ref != "t"
                                else {"If-Match": stale}), 412)
    assert oci.get_manifest(repo, "t").content == v2
    assert oci.manifest_exists(repo, digest_of(v1))
    assert oci.delete(oci.manifest_path(repo, "t"),
                      headers={"If-Match": '"%s"' % digest_of(v2)}).status_code == 202
    assert not oci.manifest_exists(repo, "t")
