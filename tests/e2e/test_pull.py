"""Pull workflow (distribution-spec "Pull"): manifests and blobs by tag and digest,
HEAD existence checks, 404s, Range requests, repository isolation, sha512."""

import hashlib

import pytest

from conftest import (MT_OCI_INDEX, MT_OCI_MANIFEST, assert_error, digest_of, random_bytes)


@pytest.fixture
def image(oci, repo):
    return oci.push_image(repo, tag="latest", layers=2, layer_size=4096)


def test_get_manifest_by_tag(oci, image):
    r = oci.get_manifest(image.repo, "latest", accept=MT_OCI_MANIFEST)
    assert r.status_code == 200
    assert r.content == image.body
    assert r.headers["Content-Type"] == MT_OCI_MANIFEST
    assert r.headers.get("Docker-Content-Digest") == image.digest
    assert int(r.headers["Content-Length"]) == image.size


def test_get_manifest_by_digest(oci, image):
    r = oci.get_manifest(image.repo, image.digest, accept=MT_OCI_MANIFEST)
    assert r.status_code == 200
    assert r.content == image.body
    assert digest_of(r.content) == image.digest
    assert r.headers["Content-Type"] == MT_OCI_MANIFEST
    assert r.headers.get("Docker-Content-Digest") == image.digest


@pytest.mark.parametrize("by", ["tag", "digest"])
def test_head_manifest(oci, image, by):
    ref = "latest" if by == "tag" else image.digest
    r = oci.get_manifest(image.repo, ref, accept=[MT_OCI_MANIFEST, MT_OCI_INDEX], method="HEAD")
    assert r.status_code == 200
    assert r.content == b""
    assert int(r.headers["Content-Length"]) == image.size
    assert r.headers.get("Docker-Content-Digest") == image.digest
    assert r.headers["Content-Type"] == MT_OCI_MANIFEST


def test_manifest_unknown_tag_and_digest(oci, image):
    r = oci.get_manifest(image.repo, "no-such-tag")
    assert_error(r, 404, "MANIFEST_UNKNOWN")
    r = oci.get_manifest(image.repo, digest_of(b"no such manifest"))
    assert_error(r, 404, "MANIFEST_UNKNOWN")
    r = oci.get_manifest(image.repo, "no-such-tag", method="HEAD")
    assert r.status_code == 404
    assert r.content == b""


def test_manifest_in_unknown_repository_is_404(oci):
    r = oci.get_manifest("e2e/never/pushed/here", "latest")
    assert_error(r, 404, codes=("NAME_UNKNOWN", "MANIFEST_UNKNOWN"))
    r = oci.get_manifest("e2e/never/pushed/here", "latest", method="HEAD")
    assert r.status_code == 404


def test_manifest_reference_that_is_not_a_valid_tag_is_404_on_pull(oci, image):
    # The official conformance suite pulls ".INVALID_MANIFEST_NAME" and expects 404
    # (end-3 lists only 404 as the failure for GET/HEAD).
    for method in ("GET", "HEAD"):
        r = oci.get_manifest(image.repo, ".INVALID_MANIFEST_NAME", method=method)
        assert r.status_code == 404, (method, r.status_code, r.text)


def test_get_and_head_blob(oci, image):
    for d, data in image.blobs.items():
        r = oci.get(oci.blob_path(image.repo, d))
        assert r.status_code == 200
        assert r.content == data
        assert r.headers.get("Docker-Content-Digest") == d
        assert int(r.headers["Content-Length"]) == len(data)
        r = oci.head(oci.blob_path(image.repo, d))
        assert r.status_code == 200
        assert r.content == b""
        assert int(r.headers["Content-Length"]) == len(data)
        assert r.headers.get("Docker-Content-Digest") == d


def test_blob_unknown(oci, image):
    d = digest_of(b"not in the registry")
    assert_error(oci.get(oci.blob_path(image.repo, d)), 404, "BLOB_UNKNOWN")
    r = oci.head(oci.blob_path(image.repo, d))
    assert r.status_code == 404
    assert r.content == b""


def test_blob_of_another_repository_is_not_served(oci, repo):
    data = random_bytes(1000)
    d = oci.push_blob(repo + "/a", data)
    assert oci.get_blob(repo + "/a", d) == data
    assert_error(oci.get(oci.blob_path(repo + "/b", d)), 404, "BLOB_UNKNOWN")
    assert oci.head(oci.blob_path(repo + "/b", d)).status_code == 404


def test_manifest_of_another_repository_is_not_served(oci, repo, image):
    r = oci.get_manifest(repo + "/other", image.digest)
    assert r.status_code == 404


def test_empty_blob(oci, repo):
    d = oci.push_blob(repo, b"")
    assert d == "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    r = oci.get(oci.blob_path(repo, d))
    assert r.status_code == 200
    assert r.content == b""
    assert r.headers.get("Content-Length") == "0"
    assert r.headers.get("Docker-Content-Digest") == d


def test_empty_json_blob(oci, repo):
    d = oci.push_blob(repo, b"{}")
    assert oci.get_blob(repo, d) == b"{}"


def test_large_blob_streams_back_intact(oci, repo):
    data = random_bytes(6 * 1024 * 1024 + 123)
    d = oci.push_blob(repo, data, how="chunked", chunk_size=1024 * 1024)
    r = oci.get(oci.blob_path(repo, d), stream=True)
    assert r.status_code == 200
    h = hashlib.sha256()
    n = 0
    for piece in r.iter_content(256 * 1024):
        h.update(piece)
        n += len(piece)
    assert n == len(data)
    assert "sha256:" + h.hexdigest() == d


@pytest.fixture
def blob2k(oci, repo):
    data = random_bytes(2048)
    return data, oci.push_blob(repo, data)


@pytest.mark.parametrize("spec,start,end", [
    ("bytes=500-1499", 500, 1499),
    ("bytes=500-", 500, 2047),
    ("bytes=-500", 1548, 2047),
    ("bytes=2000-5000", 2000, 2047),
    ("bytes=0-0", 0, 0),
    ("bytes=2047-2047", 2047, 2047),
])
def test_blob_range_request(oci, repo, blob2k, spec, start, end):
    data, d = blob2k
    r = oci.get(oci.blob_path(repo, d), headers={"Range": spec})
    assert r.status_code == 206, (r.status_code, r.headers)
    assert r.content == data[start:end + 1]
    assert int(r.headers["Content-Length"]) == end - start + 1
    assert r.headers["Content-Range"] in ("bytes %d-%d/2048" % (start, end),
                                          "bytes %d-%d/*" % (start, end))


@pytest.mark.parametrize("spec", ["bytes=5000-10000", "bytes=2048-", "bytes=500-0"])
def test_blob_range_not_satisfiable(oci, repo, blob2k, spec):
    _data, d = blob2k
    r = oci.get(oci.blob_path(repo, d), headers={"Range": spec})
    assert r.status_code == 416, (spec, r.status_code)


@pytest.mark.parametrize("spec", ["bytes=0-99", "bytes=-1", "bytes=5000-10000"])
def test_head_blob_ignores_range(oci, repo, blob2k, spec):
    """RFC 9110 14.2: Range is defined for GET only, and distribution-spec: a HEAD of an
    existing blob MUST be 200 with the blob's size (the whole blob's headers, no 206 or
    416 for a range a HEAD never transfers)."""
    data, d = blob2k
    get = oci.get(oci.blob_path(repo, d))
    r = oci.head(oci.blob_path(repo, d), headers={"Range": spec})
    assert r.status_code == 200, (spec, r.status_code, r.headers)
    assert r.content == b""
    assert r.headers["Content-Length"] == str(len(data)) == get.headers["Content-Length"]
    assert "Content-Range" not in r.headers
    for h in ("Docker-Content-Digest", "Content-Type", "ETag", "Accept-Ranges"):
        assert r.headers.get(h) == get.headers.get(h), h


@pytest.mark.parametrize("spec", ["items=0-10", "bytes=abc", "bytes=0-1,5-6"])
def test_blob_unusable_range_serves_whole_blob(oci, repo, blob2k, spec):
    # RFC 9110 14.2: a server may ignore a Range it does not support; it must not
    # serve a wrong slice. Multi-range may also be answered as multipart 206.
    data, d = blob2k
    r = oci.get(oci.blob_path(repo, d), headers={"Range": spec})
    if r.status_code == 206:
        assert spec == "bytes=0-1,5-6"
        assert r.headers["Content-Type"].startswith("multipart/byteranges")
    else:
        assert r.status_code == 200, (spec, r.status_code)
        assert r.content == data


def test_if_range_matching_etag_serves_the_range(oci, repo, blob2k):
    data, d = blob2k
    r = oci.get(oci.blob_path(repo, d), headers={"Range": "bytes=100-199",
                                                 "If-Range": '"%s"' % d})
    assert r.status_code == 206, (r.status_code, r.headers)
    assert r.content == data[100:200]


@pytest.mark.parametrize("inm,want", [
    ('"{d}"', 304), ('W/"{d}"', 304), ("*", 304), ('"x", "{d}"', 304),
    ('"sha256:%s"' % ("0" * 64), 200),
])
def test_blob_if_none_match(oci, repo, blob2k, inm, want):
    """RFC 9110 13.1.2: a GET or HEAD whose If-None-Match names the blob's entity tag gets
    304 without a body (before any Range); another tag gets the blob (a GET its range, a
    HEAD, for which Range is not defined, the whole blob's 200)."""
    data, d = blob2k
    for method, ranged in (("GET", 206), ("HEAD", 200)):
        r = oci.request(method, oci.blob_path(repo, d),
                        headers={"If-None-Match": inm.format(d=d), "Range": "bytes=0-9"})
        assert r.status_code == (want if want == 304 else ranged), (method, inm, r.status_code)
        assert r.headers["ETag"] == '"%s"' % d
        if want == 304:
            assert r.content == b"" and r.headers["Docker-Content-Digest"] == d


def test_manifest_if_none_match(oci, repo):
    """The same for a manifest, by tag and by digest: 304 without a body when the client
    names its entity tag, the manifest otherwise."""
    img = oci.push_image(repo, "v1", layers=1)
    for ref in ("v1", img.digest):
        for method in ("GET", "HEAD"):
            r = oci.request(method, oci.manifest_path(repo, ref),
                            headers={"If-None-Match": '"%s"' % img.digest})
            assert r.status_code == 304, (ref, method, r.status_code, r.text[:200])
            assert r.content == b"" and r.headers["ETag"] == '"%s"' % img.digest
            r = oci.request(method, oci.manifest_path(repo, ref),
                            headers={"If-None-Match": '"sha256:%s"' % ("1" * 64)})
            assert r.status_code == 200, (ref, method, r.status_code)


@pytest.mark.parametrize("if_range", [
    '"sha256:%s"' % ("0" * 64),           # another representation's tag
    'W/"{d}"',                            # weak: never matches by strong comparison
    "Sun, 06 Nov 1994 08:49:37 GMT",      # a date: no Last-Modified is sent, never matches
    "Tue, 01 Dec 2099 10:00:00 GMT",
])
def test_if_range_not_matching_serves_whole_blob(oci, repo, blob2k, if_range):
    # issue 9 item 17, RFC 9110 13.1.5: a validator that does not match means the Range is
    # ignored: 200 with the whole body (also for a range that would be unsatisfiable)
    data, d = blob2k
    for spec in ("bytes=100-199", "bytes=5000-"):
        r = oci.get(oci.blob_path(repo, d), headers={"Range": spec,
                                                     "If-Range": if_range.format(d=d)})
        assert r.status_code == 200, (spec, if_range, r.status_code, r.headers)
        assert r.content == data
        assert "Content-Range" not in r.headers


def test_resumable_pull_with_range(oci, repo):
    data = random_bytes(300 * 1024 + 7)
    d = oci.push_blob(repo, data)
    first = oci.get(oci.blob_path(repo, d), headers={"Range": "bytes=0-99999"})
    assert first.status_code == 206
    rest = oci.get(oci.blob_path(repo, d), headers={"Range": "bytes=%d-" % len(first.content)})
    assert rest.status_code == 206
    assert digest_of(first.content + rest.content) == d


def test_sha512_blob(oci, repo):
    data = random_bytes(5000)
    d = oci.push_blob(repo, data, alg="sha512")
    assert d.startswith("sha512:") and len(d) == 7 + 128
    r = oci.get(oci.blob_path(repo, d))
    assert r.status_code == 200
    assert r.content == data
    assert r.headers.get("Docker-Content-Digest") == d
    r = oci.head(oci.blob_path(repo, d))
    assert r.status_code == 200
    assert int(r.headers["Content-Length"]) == len(data)


@pytest.mark.parametrize("name", [
    "a",
    "x/manifests",
    "x/blobs/uploads",
    "tags/list",
    "x/referrers/y",
    "a.b_c__d-e---f/g0/h1",
])
def test_repository_names_that_look_like_api_paths(oci, name):
    repo = "e2e/routes/" + name
    img = oci.push_image(repo, tag="v1", layers=1, layer_size=100)
    r = oci.get_manifest(repo, "v1")
    assert r.status_code == 200 and r.content == img.body
    for d, b in img.blobs.items():
        assert oci.get_blob(repo, d) == b
    assert oci.tag_list(repo) == ["v1"]


def test_long_repository_name(oci):
    # a name of 200 characters in 4 components is within every client's limit
    comp = "c" * 49
    repo = "/".join([comp] * 4)
    assert len(repo) == 199
    img = oci.push_image(repo, tag="t", layers=1, layer_size=10)
    assert oci.get_manifest(repo, "t").content == img.body
