"""Content management (distribution-spec "Content Management"): deleting tags,
manifests and blobs; 404s for unknown content; a --no-delete server refuses with
405 UNSUPPORTED and changes nothing."""

import pytest

from conftest import (MT_OCI_MANIFEST, SPEC_ERROR_CODES, assert_error, digest_of,
                      error_codes, random_bytes)


def test_delete_manifest_by_digest_removes_it_and_its_tags(oci, repo):
    img = oci.push_image(repo, tag="one", layers=1)
    assert oci.put_manifest(repo, "two", img.body, MT_OCI_MANIFEST).status_code == 201
    other = oci.push_image(repo, tag="other", layers=1)
    r = oci.delete(oci.manifest_path(repo, img.digest))
    assert r.status_code == 202, (r.status_code, r.text)
    assert_error(oci.get_manifest(repo, img.digest), 404, "MANIFEST_UNKNOWN")
    assert oci.get_manifest(repo, img.digest, method="HEAD").status_code == 404
    for t in ("one", "two"):
        assert_error(oci.get_manifest(repo, t), 404, "MANIFEST_UNKNOWN")
    assert oci.tag_list(repo) == ["other"]
    assert oci.get_manifest(repo, "other").content == other.body


def test_delete_by_tag_removes_only_the_tag(oci, repo):
    img = oci.push_image(repo, tag="doomed", layers=1)
    assert oci.put_manifest(repo, "kept", img.body, MT_OCI_MANIFEST).status_code == 201
    r = oci.delete(oci.manifest_path(repo, "doomed"))
    assert r.status_code == 202, (r.status_code, r.text)
    assert_error(oci.get_manifest(repo, "doomed"), 404, "MANIFEST_UNKNOWN")
    assert oci.get_manifest(repo, "doomed", method="HEAD").status_code == 404
    assert oci.get_manifest(repo, img.digest).content == img.body
    assert oci.get_manifest(repo, "kept").content == img.body
    assert oci.tag_list(repo) == ["kept"]


def test_delete_unknown_manifest_or_tag_is_404(oci, repo):
    oci.push_image(repo, tag="exists", layers=1)
    assert_error(oci.delete(oci.manifest_path(repo, digest_of(b"nope"))), 404, "MANIFEST_UNKNOWN")
    assert_error(oci.delete(oci.manifest_path(repo, "no-such-tag")), 404, "MANIFEST_UNKNOWN")
    assert oci.tag_list(repo) == ["exists"]


def test_delete_in_unknown_repository_is_404(oci):
    r = oci.delete(oci.manifest_path("e2e/delete/never", digest_of(b"x")))
    assert_error(r, 404, codes=("NAME_UNKNOWN", "MANIFEST_UNKNOWN"))
    r = oci.delete(oci.blob_path("e2e/delete/never", digest_of(b"x")))
    assert_error(r, 404, codes=("NAME_UNKNOWN", "BLOB_UNKNOWN"))


def test_delete_twice(oci, repo):
    img = oci.push_image(repo, tag="t", layers=1)
    assert oci.delete(oci.manifest_path(repo, img.digest)).status_code == 202
    assert_error(oci.delete(oci.manifest_path(repo, img.digest)), 404, "MANIFEST_UNKNOWN")


def test_repush_after_delete(oci, repo):
    img = oci.push_image(repo, tag="back", layers=1)
    assert oci.delete(oci.manifest_path(repo, img.digest)).status_code == 202
    r = oci.put_manifest(repo, "back", img.body, MT_OCI_MANIFEST)
    assert r.status_code == 201, r.text
    assert oci.get_manifest(repo, "back").content == img.body
    assert oci.tag_list(repo) == ["back"]


def test_delete_index_keeps_children(oci, repo):
    a = oci.push_image(repo, layers=1)
    b = oci.push_image(repo, layers=1)
    idx = oci.push_index(repo, [a, b], tag="multi")
    assert oci.delete(oci.manifest_path(repo, idx.digest)).status_code == 202
    assert oci.get_manifest(repo, "multi").status_code == 404
    for c in (a, b):
        assert oci.get_manifest(repo, c.digest).content == c.body


def test_delete_blob(oci, repo):
    data = random_bytes(1234)
    d = oci.push_blob(repo, data)
    r = oci.delete(oci.blob_path(repo, d))
    assert r.status_code == 202, (r.status_code, r.text)
    assert_error(oci.get(oci.blob_path(repo, d)), 404, "BLOB_UNKNOWN")
    assert oci.head(oci.blob_path(repo, d)).status_code == 404
    assert_error(oci.delete(oci.blob_path(repo, d)), 404, "BLOB_UNKNOWN")


def test_delete_unknown_blob_is_404(oci, repo):
    oci.push_blob(repo, b"something")
    assert_error(oci.delete(oci.blob_path(repo, digest_of(b"else"))), 404, "BLOB_UNKNOWN")


def test_delete_blob_in_one_repository_keeps_it_in_another(oci, repo):
    data = random_bytes(2222)
    d = oci.push_blob(repo + "/a", data)
    r = oci.post("/v2/%s/blobs/uploads/" % (repo + "/b"), params={"mount": d, "from": repo + "/a"})
    assert r.status_code == 201
    assert oci.delete(oci.blob_path(repo + "/a", d)).status_code == 202
    assert not oci.blob_exists(repo + "/a", d)
    assert oci.get_blob(repo + "/b", d) == data


def test_blob_can_be_pushed_again_after_delete(oci, repo):
    data = random_bytes(999)
    d = oci.push_blob(repo, data)
    assert oci.delete(oci.blob_path(repo, d)).status_code == 202
    assert oci.push_blob(repo, data, how="chunked") == d
    assert oci.get_blob(repo, d) == data


def test_delete_blobs_after_their_manifest(oci, repo):
    # the order the conformance suite cleans up in
    img = oci.push_image(repo, tag="t", layers=2)
    assert oci.delete(oci.manifest_path(repo, img.digest)).status_code == 202
    for d in img.blobs:
        assert oci.delete(oci.blob_path(repo, d)).status_code == 202
        assert not oci.blob_exists(repo, d)


def test_delete_sha512_blob(oci, repo):
    data = random_bytes(321)
    d = oci.push_blob(repo, data, alg="sha512")
    assert oci.delete(oci.blob_path(repo, d)).status_code == 202
    assert not oci.blob_exists(repo, d)


# -- a server started with --no-delete

@pytest.fixture(scope="module")
def nodelete(module_server_factory):
    return module_server_factory("--no-delete")


def test_no_delete_refuses_every_delete_and_changes_nothing(nodelete):
    oci = nodelete.oci()
    repo = "nodelete/app"
    img = oci.push_image(repo, tag="v1", layers=2)
    # a 405 names what the target still takes (RFC 9110 15.5.6)
    for path, code, allow in ((oci.manifest_path(repo, img.digest), "UNSUPPORTED",
                               "GET, HEAD, PUT"),
                              (oci.manifest_path(repo, "v1"), "UNSUPPORTED", "GET, HEAD, PUT"),
                              (oci.blob_path(repo, next(iter(img.blobs))), "UNSUPPORTED",
                               "GET, HEAD")):
        r = oci.delete(path)
        assert_error(r, 405, code)
        assert r.headers.get("Allow") == allow, (path, r.headers)
    # so does a method the target never takes
    for method, path, allow in (("POST", oci.manifest_path(repo, "v1"), "GET, HEAD, PUT"),
                                ("PUT", oci.blob_path(repo, next(iter(img.blobs))),
                                 "GET, HEAD")):
        r = oci.request(method, path, data=b"{}")
        assert_error(r, 405, "UNSUPPORTED")
        assert r.headers.get("Allow") == allow, (method, path, r.headers)
    assert oci.get_manifest(repo, "v1").content == img.body
    assert oci.get_manifest(repo, img.digest).content == img.body
    for d, b in img.blobs.items():
        assert oci.get_blob(repo, d) == b
    assert oci.tag_list(repo) == ["v1"]


def test_no_delete_still_pushes_and_pulls(nodelete):
    oci = nodelete.oci()
    repo = "nodelete/push"
    img = oci.push_image(repo, tag="v1", layers=1)
    img2 = oci.push_image(repo, tag="v1", layers=1)  # tags still move
    assert oci.get_manifest(repo, "v1").content == img2.body
    assert oci.get_manifest(repo, img.digest).content == img.body


# -- DESIGN invariant 1, "visible means pullable", under deletes

def test_deleting_a_referenced_blob_never_leaves_a_visible_manifest_unpullable(oci, repo):
    img = oci.push_image(repo, tag="v1", layers=2)
    layer = [d for d in img.blobs][1]
    r = oci.delete(oci.blob_path(repo, layer))
    assert r.status_code in (202, 400, 405, 409), (r.status_code, r.text)
    if r.status_code != 202:
        assert error_codes(r) and error_codes(r)[0] in SPEC_ERROR_CODES, r.text
    if r.status_code == 405:  # RFC 9110 15.5.6: a 405 says what the target takes
        assert r.headers.get("Allow") == "GET, HEAD", r.headers
    if oci.get_manifest(repo, "v1").status_code == 200:
        for d, b in img.blobs.items():
            g = oci.get(oci.blob_path(repo, d))
            assert g.status_code == 200 and g.content == b, \
                "manifest still visible but its blob %s answers %s" % (d, g.status_code)


def test_deleting_an_index_child_never_leaves_a_visible_index_unpullable(oci, repo):
    a = oci.push_image(repo, layers=1)
    b = oci.push_image(repo, layers=1)
    idx = oci.push_index(repo, [a, b], tag="multi")
    r = oci.delete(oci.manifest_path(repo, a.digest))
    assert r.status_code in (202, 400, 405, 409), (r.status_code, r.text)
    if r.status_code == 405:
        assert r.headers.get("Allow") == "GET, HEAD, PUT", r.headers
    if oci.get_manifest(repo, "multi").status_code == 200:
        for c in (a, b):
            g = oci.get_manifest(repo, c.digest)
            assert g.status_code == 200 and g.content == c.body, \
                "index %s still visible but child %s answers %s" % (idx.digest, c.digest,
                                                                  g.status_code)
