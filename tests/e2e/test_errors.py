"""Bad input gets the right status and OCI error code, and changes nothing: every
test checks the registry's state after the refused request."""

import secrets

import pytest

from conftest import (MT_OCI_MANIFEST, SPEC_ERROR_CODES, assert_error, canonical_json,
                      digest_of, error_codes, random_bytes)

INVALID_NAMES = [
    "Upper",
    "e2e/Upper",
    "-lead",
    "trail-",
    "a..b",
    "a___b",
    "a.-b",
    "a//b",
    "_under",
    "e2e/x_",
    "a%20b",
    "a" * 256,
    "/".join(["abcdefghij"] * 25) + "/toolong",
]

INVALID_DIGESTS = [
    "sha256:xyz",
    "sha256:" + "A" * 64,
    "sha256:" + "0" * 63,
    "sha256:" + "0" * 65,
    "sha512:" + "0" * 64,
    "sha256:",
]


@pytest.fixture
def state(oci, repo):
    """A repository with one tagged image, and a way to check nothing changed."""
    img = oci.push_image(repo, tag="stable", layers=1)

    def unchanged():
        assert oci.tag_list(repo) == ["stable"]
        r = oci.get_manifest(repo, "stable")
        assert r.status_code == 200 and r.content == img.body
        for d, b in img.blobs.items():
            assert oci.get_blob(repo, d) == b
    return repo, img, unchanged


def catalog(oci):
    r = oci.catalog()
    assert r.status_code == 200
    return r.json().get("repositories") or []


@pytest.mark.parametrize("name", INVALID_NAMES)
def test_invalid_repository_name(oci, name):
    before = catalog(oci)
    data = b"data for an invalid name"
    cases = [
        ("GET", "/v2/%s/tags/list" % name, {}),
        ("GET", "/v2/%s/manifests/latest" % name, {}),
        ("PUT", "/v2/%s/manifests/latest" % name,
         {"data": canonical_json({"schemaVersion": 2}),
          "headers": {"Content-Type": MT_OCI_MANIFEST}}),
        ("GET", "/v2/%s/blobs/%s" % (name, digest_of(data)), {}),
        ("POST", "/v2/%s/blobs/uploads/" % name, {"data": b""}),
        ("POST", "/v2/%s/blobs/uploads/" % name,
         {"params": {"digest": digest_of(data)}, "data": data}),
        ("DELETE", "/v2/%s/manifests/latest" % name, {}),
        ("GET", "/v2/%s/referrers/%s" % (name, digest_of(data)), {}),
    ]
    for method, path, kw in cases:
        r = oci.request(method, path, **kw)
        assert_error(r, 400, "NAME_INVALID")
    assert catalog(oci) == before


@pytest.mark.parametrize("tag", [".dot", "-dash", "x" * 129, "tag!", "a+b", "ta g", "ü"])
def test_invalid_tag_on_put(oci, state, tag):
    repo, img, unchanged = state
    r = oci.put_manifest(repo, tag, img.body, MT_OCI_MANIFEST)
    assert_error(r, 400, codes=("TAG_INVALID", "MANIFEST_INVALID"))
    unchanged()


@pytest.mark.parametrize("bad", INVALID_DIGESTS)
def test_invalid_blob_digest(oci, state, bad):
    repo, _img, unchanged = state
    assert_error(oci.get(oci.blob_path(repo, bad)), 400, "DIGEST_INVALID")
    assert oci.head(oci.blob_path(repo, bad)).status_code == 400
    assert_error(oci.delete(oci.blob_path(repo, bad)), 400, "DIGEST_INVALID")
    unchanged()


@pytest.mark.parametrize("bad", ["md5:d41d8cd98f00b204e9800998ecf8427e",
                                 "sha384:" + "0" * 96, "foo+bar:abc"])
def test_unsupported_algorithm_on_pull(oci, state, bad):
    # grammar-valid digests of algorithms the registry does not hold: never served
    repo, _img, unchanged = state
    r = oci.get(oci.blob_path(repo, bad))
    assert r.status_code in (400, 404), r.status_code
    assert error_codes(r)[:1] in (["DIGEST_INVALID"], ["BLOB_UNKNOWN"], ["UNSUPPORTED"])
    unchanged()


@pytest.mark.parametrize("bad", INVALID_DIGESTS)
def test_invalid_manifest_digest_on_delete(oci, state, bad):
    repo, _img, unchanged = state
    r = oci.delete(oci.manifest_path(repo, bad))
    assert_error(r, 400, codes=("DIGEST_INVALID", "TAG_INVALID", "MANIFEST_INVALID"))
    unchanged()


@pytest.mark.parametrize("bad", INVALID_DIGESTS)
def test_invalid_manifest_digest_on_put(oci, state, bad):
    repo, img, unchanged = state
    r = oci.put_manifest(repo, bad, img.body, MT_OCI_MANIFEST)
    assert_error(r, 400, codes=("DIGEST_INVALID", "TAG_INVALID", "MANIFEST_INVALID"))
    unchanged()


def test_manifest_digest_mismatch_changes_nothing(oci, state):
    repo, img, unchanged = state
    other = oci.push_image(repo, layers=1)
    r = oci.put_manifest(repo, img.digest, other.body, MT_OCI_MANIFEST)
    assert_error(r, 400, "DIGEST_INVALID")
    assert oci.get_manifest(repo, img.digest).content == img.body
    unchanged()


def test_invalid_manifest_on_existing_tag_changes_nothing(oci, state):
    repo, img, unchanged = state
    ghost = {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
             "digest": digest_of(b"ghost"), "size": 5}
    cfg = next(d for d in img.blobs)
    bodies = [
        (b"{not json", "MANIFEST_INVALID"),
        (canonical_json({"schemaVersion": 2, "mediaType": MT_OCI_MANIFEST,
                         "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                    "digest": cfg, "size": len(img.blobs[cfg])},
                         "layers": [ghost]}), "MANIFEST_BLOB_UNKNOWN"),
    ]
    for body, code in bodies:
        r = oci.put_manifest(repo, "stable", body, MT_OCI_MANIFEST)
        assert_error(r, 400, code)
    unchanged()


def test_oversized_manifest_on_existing_tag_changes_nothing(oci, state):
    repo, _img, unchanged = state
    body = b'{"schemaVersion":2,"pad":"' + b"x" * (4 * 1024 * 1024) + b'"}'
    r = oci.put_manifest(repo, "stable", body, MT_OCI_MANIFEST)
    assert r.status_code == 413, r.status_code
    codes = error_codes(r)
    assert not codes or codes[0] in SPEC_ERROR_CODES, codes
    unchanged()


def test_bad_upload_requests_change_nothing(registry, oci, state):
    repo, _img, unchanged = state
    data = random_bytes(3000)
    loc = oci.start_upload(repo).headers["Location"]
    r = oci.patch(loc, data=data[:1000], headers={"Content-Range": "0-999"})
    assert r.status_code == 202
    loc = r.headers["Location"]
    bad_requests = [
        ("PATCH", {"data": data[1000:2000], "headers": {"Content-Range": "1001-2000"}}, 416),
        ("PATCH", {"data": data[:1000], "headers": {"Content-Range": "0-999"}}, 416),
        ("PATCH", {"data": data[1000:2000], "headers": {"Content-Range": "1000-2999"}},
         (400, 416)),
        ("PATCH", {"data": data[1000:2000], "headers": {"Content-Range": "garbage"}},
         (400, 416)),
        ("PUT", {"params": {"digest": digest_of(data)}, "data": data[1000:],
                 "headers": {"Content-Range": "999-2998"}}, 416),
        ("PUT", {"params": {"digest": "sha256:bad"}, "data": b""}, 400),
    ]
    for method, kw, status in bad_requests:
        r = oci.request(method, loc, **kw)
        assert r.status_code in (status if isinstance(status, tuple) else (status,)), \
            (method, kw.get("headers"), r.status_code, r.text)
        g = oci.get(loc)
        assert g.status_code == 204, (method, kw.get("headers"), g.status_code)
        assert g.headers.get("Range") == "0-999", (method, kw.get("headers"), g.headers)
        loc = g.headers["Location"]
    assert not oci.blob_exists(repo, digest_of(data))
    # and the session still completes
    r = oci.put(loc, params={"digest": digest_of(data)}, data=data[1000:],
                headers={"Content-Range": "1000-2999"})
    assert r.status_code == 201, r.text
    assert oci.get_blob(repo, digest_of(data)) == data
    unchanged()


@pytest.mark.parametrize("uid", ["not-a-uuid", "0" * 32 + "0", "ABCDEF0123456789ABCDEF0123456789",
                                 "..%2F..%2Fmeta.db", "%2e%2e"])
def test_malformed_upload_ids(oci, state, uid):
    repo, _img, unchanged = state
    loc = "/v2/%s/blobs/uploads/%s" % (repo, uid)
    for method, kw in (("GET", {}), ("PATCH", {"data": b"xx"}),
                       ("PUT", {"params": {"digest": digest_of(b"xx")}, "data": b"xx"}),
                       ("DELETE", {})):
        r = oci.request(method, loc, **kw)
        assert r.status_code in (400, 404), (method, uid, r.status_code, r.text)
    assert not oci.blob_exists(repo, digest_of(b"xx"))
    unchanged()


def test_error_codes_are_from_the_spec(oci, state):
    """Every 4xx JSON error body uses a code the distribution-spec defines."""
    repo, img, _unchanged = state
    probes = [
        oci.get(oci.manifest_path(repo, "missing")),
        oci.get(oci.blob_path(repo, digest_of(b"missing"))),
        oci.put_manifest(repo, "x", b"{", MT_OCI_MANIFEST),
        oci.get("/v2/%s/blobs/uploads/%s" % (repo, secrets.token_hex(16))),
        oci.get(oci.blob_path(repo, "sha256:zz")),
        oci.get("/v2/Bad/tags/list"),
        oci.tags("e2e/none/such"),
        oci.put_manifest(repo, digest_of(b"x"), img.body, MT_OCI_MANIFEST),
        oci.delete(oci.manifest_path(repo, digest_of(b"gone"))),
    ]
    for r in probes:
        assert 400 <= r.status_code < 500, (r.request.url, r.status_code)
        codes = error_codes(r)
        assert codes, (r.request.url, r.text)
        for c in codes:
            assert c in SPEC_ERROR_CODES, (r.request.method, r.request.url, c)


def test_wrong_methods_are_refused(oci, state):
    repo, img, unchanged = state
    probes = [
        ("PUT", "/v2/", {}),
        ("DELETE", "/v2/", {}),
        ("POST", oci.manifest_path(repo, "stable"), {"data": img.body}),
        ("PATCH", oci.manifest_path(repo, "stable"), {"data": img.body}),
        ("PUT", oci.blob_path(repo, img.digest), {"data": b"x"}),
        ("POST", "/v2/%s/tags/list" % repo, {"data": b""}),
        ("DELETE", "/v2/%s/tags/list" % repo, {}),
        ("PUT", "/v2/_catalog", {"data": b""}),
    ]
    for method, path, kw in probes:
        r = oci.request(method, path, **kw)
        assert r.status_code in (404, 405), (method, path, r.status_code)
        # a 405 names the methods the target takes, and never the refused one
        allow = r.headers.get("Allow")
        if r.status_code == 405:
            assert allow and method not in allow.split(", "), (method, path, r.headers)
        else:
            assert allow is None, (method, path, r.headers)
        codes = error_codes(r)
        assert not codes or codes[0] in SPEC_ERROR_CODES, (method, path, codes)
    unchanged()


def test_unknown_route_error_body_uses_spec_codes(oci):
    """A 4xx body may be in any format, but if it is JSON its codes MUST be from the
    spec's table (distribution-spec "Error Codes")."""
    for method, path in (("GET", "/v2/a/b/unknown-thing"), ("GET", "/v2/a/blobs/"),
                         ("POST", "/v2/a/manifests/")):
        r = oci.request(method, path, data=b"" if method == "POST" else None)
        assert 400 <= r.status_code < 500, (method, path, r.status_code)
        for c in error_codes(r):
            assert c in SPEC_ERROR_CODES, (method, path, c)


def test_error_replies_carry_the_api_version(oci):
    """Distribution sends Docker-Distribution-API-Version on every /v2/ reply, errors
    included; the error replies dropped it with the other headers set before them."""
    for method, path in (("GET", "/v2/no/such/manifests/latest"),
                         ("GET", "/v2/no/such/blobs/sha256:" + "0" * 64),
                         ("GET", "/v2/no/such/blobs/uploads/" + "0" * 32),
                         ("PUT", "/v2/Bad/Name/manifests/x"),
                         ("GET", "/v2/x/tags/list?n=abc")):
        r = oci.request(method, path)
        assert r.status_code >= 400, (path, r.status_code)
        assert r.headers.get("Docker-Distribution-API-Version") == "registry/2.0", (path, r.headers)
