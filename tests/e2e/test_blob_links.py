"""Blob links (issue 9, item 1): a blob is usable in a repository only if it was pushed there
or mounted there by someone allowed to pull the source.

A manifest PUT naming blobs that only other repositories hold is refused with
MANIFEST_BLOB_UNKNOWN (OCI distribution-spec "Push": a registry MAY reject; Distribution
does) and changes nothing, so it can neither read another repository's bytes nor tell whether
the registry holds a digest. Each descriptor's size must be the stored blob's (or child
manifest's) length: MANIFEST_INVALID otherwise. Blob GET/HEAD/DELETE act on the repository's
own link only. Mounts need pull on `from` (else a plain upload session, 202). A push that
splits across regions still works: the manifest's region resolves the blob from a peer that
links it in the same repository, never from a copy it holds for another one.

Raw requests on the conftest fixtures (auth off), AuthServer (auth on) for mounts, and the geo
harness (regions.py) for the split push.
"""

import secrets

import pytest
import requests

from auth_helpers import ADMIN_PASSWORD, server_pool  # noqa: F401 - fixture
from conftest import (EMPTY_JSON, MT_OCI_CONFIG, MT_OCI_INDEX, MT_OCI_LAYER, MT_OCI_MANIFEST,
                      assert_error, canonical_json, digest_of, random_bytes)
from regions import manifest_digest, unique_repo, wait_for

pytest_plugins = ["geo_plugin"]

OCTET = {"Content-Type": "application/octet-stream"}
ADMIN = ("admin", ADMIN_PASSWORD)


def image_body(config, layers, sizes=None):
    """An OCI image manifest naming config and layers (bytes); sizes overrides the
    declared sizes ({digest: size})."""
    sizes = sizes or {}

    def desc(mt, b):
        d = digest_of(b)
        return {"mediaType": mt, "digest": d, "size": sizes.get(d, len(b))}

    return canonical_json({"schemaVersion": 2, "mediaType": MT_OCI_MANIFEST,
                           "config": desc(MT_OCI_CONFIG, config),
                           "layers": [desc(MT_OCI_LAYER, b) for b in layers]})


def new_config():
    return canonical_json({"architecture": "amd64", "os": "linux", "author": secrets.token_hex(8),
                           "rootfs": {"type": "layers", "diff_ids": []}})


def assert_not_in(oci, repo, digests, tag=None, manifest=None):
    """Nothing of the refused push is visible in repo: no blob (GET and HEAD), no tag, no
    manifest."""
    for d in digests:
        assert_error(oci.get(oci.blob_path(repo, d)), 404, "BLOB_UNKNOWN")
        assert oci.head(oci.blob_path(repo, d)).status_code == 404
    if tag is not None:
        assert oci.get_manifest(repo, tag).status_code == 404
        r = oci.tags(repo)
        assert r.status_code == 404 or tag not in (r.json().get("tags") or []), r.text
    if manifest is not None:
        assert oci.get_manifest(repo, manifest).status_code == 404


# -- manifest PUT across repositories -------------------------------------------------------

def test_manifest_naming_another_repositorys_blobs_is_refused(oci, repo):
    """team-b's image PUT into team-a/loot: before, 201 and then team-a/loot served team-b's
    bytes. Now MANIFEST_BLOB_UNKNOWN naming the blob, and nothing changes."""
    victim, loot = repo + "/team-b/app", repo + "/team-a/loot"
    img = oci.push_image(victim, "v1", layers=2)
    assert_not_in(oci, loot, img.blobs)  # held elsewhere, not here
    r = oci.put_manifest(loot, "stolen", img.body, MT_OCI_MANIFEST)
    assert_error(r, 400, "MANIFEST_BLOB_UNKNOWN")
    assert any(d in r.text for d in img.blobs), r.text
    assert_not_in(oci, loot, img.blobs, tag="stolen", manifest=img.digest)
    assert loot not in (oci.catalog().json().get("repositories") or [])
    # by digest too
    assert_error(oci.put_manifest(loot, img.digest, img.body, MT_OCI_MANIFEST), 400,
                 "MANIFEST_BLOB_UNKNOWN")
    assert_not_in(oci, loot, img.blobs, manifest=img.digest)
    # the owner still has everything
    for d, b in img.blobs.items():
        assert oci.get_blob(victim, d) == b


def test_partly_linked_manifest_is_refused_and_links_nothing(oci, repo):
    """team-a/loot holds the config itself; the layer it names is only in team-b: refused, and
    the config's link stays the only one."""
    victim, loot = repo + "/team-b/app", repo + "/team-a/loot"
    config, layer = new_config(), random_bytes(777)
    oci.push_blob(victim, layer)
    oci.push_blob(loot, config)
    r = oci.put_manifest(loot, "v1", image_body(config, [layer]), MT_OCI_MANIFEST)
    assert_error(r, 400, "MANIFEST_BLOB_UNKNOWN")
    assert digest_of(layer) in r.text, r.text
    assert_not_in(oci, loot, [digest_of(layer)], tag="v1")
    assert oci.get_blob(loot, digest_of(config)) == config


def test_refusal_does_not_tell_whether_the_registry_holds_a_blob(oci, repo):
    """The answer for a blob held by another repository is the answer for one held nowhere:
    a manifest PUT is no registry-wide existence oracle."""
    config = new_config()
    oci.push_blob(repo + "/mine", config)
    held, absent = random_bytes(300), random_bytes(300)
    oci.push_blob(repo + "/elsewhere", held)
    answers = []
    for layer in (held, absent):
        r = oci.put_manifest(repo + "/mine", "probe", image_body(config, [layer]),
                             MT_OCI_MANIFEST)
        answers.append((r.status_code, [e["code"] for e in r.json()["errors"]],
                        r.text.replace(digest_of(layer), "<d>")))
    assert answers[0] == answers[1], answers
    assert answers[0][0] == 400 and answers[0][1][0] == "MANIFEST_BLOB_UNKNOWN", answers


# -- descriptor sizes -------------------------------------------------------------------------

def test_descriptor_size_must_match_the_blob(oci, repo):
    """size 999999 for a 10-byte blob (and one byte short) is MANIFEST_INVALID: the manifest
    is what is wrong (SIZE_INVALID is the blob-upload length check in the spec)."""
    config, layer = new_config(), b"0123456789"
    oci.push_blob(repo, config)
    oci.push_blob(repo, layer)
    for wrong in (999999, 9, 0):
        body = image_body(config, [layer], sizes={digest_of(layer): wrong})
        r = oci.put_manifest(repo, "v1", body, MT_OCI_MANIFEST)
        assert_error(r, 400, "MANIFEST_INVALID")
        assert digest_of(layer) in r.text, r.text
        assert oci.get_manifest(repo, digest_of(body)).status_code == 404
    wrong_config = image_body(config, [layer], sizes={digest_of(config): len(config) + 1})
    assert_error(oci.put_manifest(repo, "v1", wrong_config, MT_OCI_MANIFEST), 400,
                 "MANIFEST_INVALID")
    assert oci.get_manifest(repo, "v1").status_code == 404
    # with the true sizes it goes in
    oci.push_manifest(repo, "v1", image_body(config, [layer]))


def test_index_child_size_must_match(oci, repo):
    child = oci.push_image(repo, layers=1)
    for wrong in (child.size + 1, child.size - 1):
        body = canonical_json({"schemaVersion": 2, "mediaType": MT_OCI_INDEX,
                               "manifests": [child.descriptor(size=wrong)]})
        assert_error(oci.put_manifest(repo, "multi", body, MT_OCI_INDEX), 400,
                     "MANIFEST_INVALID")
    assert oci.get_manifest(repo, "multi").status_code == 404
    oci.push_index(repo, [child], tag="multi")


# -- blob links per repository ----------------------------------------------------------------

@pytest.mark.parametrize("how", ["post", "post_put", "stream", "chunked"])
def test_same_digest_in_two_repositories_deleted_from_one(oci, repo, how):
    """Every upload path links the blob into its repository, also when the registry holds the
    digest already; a delete unlinks it from that repository only: the other still serves it,
    the first neither serves it nor accepts a manifest naming it."""
    config, layer = new_config(), random_bytes(5000)
    first, second = repo + "/one", repo + "/two"
    for r_ in (first, second):
        oci.push_blob(r_, config)
        assert oci.push_blob(r_, layer, how=how) == digest_of(layer)
        assert oci.get_blob(r_, digest_of(layer)) == layer
    assert oci.delete(oci.blob_path(first, digest_of(layer))).status_code == 202
    assert_not_in(oci, first, [digest_of(layer)])
    assert oci.get_blob(second, digest_of(layer)) == layer
    assert_error(oci.put_manifest(first, "v1", image_body(config, [layer]), MT_OCI_MANIFEST),
                 400, "MANIFEST_BLOB_UNKNOWN")
    oci.push_manifest(second, "v1", image_body(config, [layer]))
    # pushed again, it is usable again
    oci.push_blob(first, layer, how=how)
    oci.push_manifest(first, "v1", image_body(config, [layer]))
    assert oci.get_blob(first, digest_of(layer)) == layer


def test_mount_links_only_from_a_repository_holding_the_blob(oci, repo):
    """With access control off everyone may pull everything: a mount works (201) and the
    manifest goes in; a mount naming a repository that does not hold the blob falls back."""
    img = oci.push_image(repo + "/src", "v1", layers=1)
    for d in img.blobs:
        r = oci.post("/v2/%s/blobs/uploads/" % (repo + "/nowhere-dst"),
                     params={"mount": d, "from": repo + "/nowhere"})
        assert r.status_code == 202, (r.status_code, r.text)
        r = oci.post("/v2/%s/blobs/uploads/" % (repo + "/dst"),
                     params={"mount": d, "from": repo + "/src"})
        assert r.status_code == 201, (r.status_code, r.text)
    assert_error(oci.put_manifest(repo + "/nowhere-dst", "v1", img.body, MT_OCI_MANIFEST), 400,
                 "MANIFEST_BLOB_UNKNOWN")
    oci.push_manifest(repo + "/dst", "v1", img.body)
    for d, b in img.blobs.items():
        assert oci.get_blob(repo + "/dst", d) == b


# -- with access control: mounts need pull on the source --------------------------------------

def test_mount_needs_pull_on_the_source(server_pool):  # noqa: F811
    srv = server_pool()
    adm = srv.admin()
    victim = "team-b/app-" + secrets.token_hex(3)
    a_only = adm.user("apub", role="publisher", pattern="team-a/*")
    both = adm.user("bothpub", role="publisher", pattern="team-a/*")
    adm.assign("bothpub", "consumer", "team-b/*")

    config, layer = new_config(), random_bytes(900)
    for b in (config, layer):
        r = srv.request("POST", "/v2/%s/blobs/uploads/" % victim, auth=ADMIN,
                        params={"digest": digest_of(b)}, data=b, headers=OCTET)
        assert r.status_code == 201, r.text
    body = image_body(config, [layer])
    r = srv.request("PUT", "/v2/%s/manifests/v1" % victim, auth=ADMIN, data=body,
                    headers={"Content-Type": MT_OCI_MANIFEST})
    assert r.status_code == 201, r.text

    def mount(who, target, d):
        return srv.request("POST", "/v2/%s/blobs/uploads/" % target, auth=who,
                           params={"mount": d, "from": victim}, data=b"")

    def head(target, d):
        return srv.request("HEAD", "/v2/%s/blobs/%s" % (target, d), auth=ADMIN).status_code

    # a publisher of team-a who may not pull team-b: upload sessions, nothing linked, and the
    # manifest naming team-b's blobs is refused
    loot = "team-a/loot-" + secrets.token_hex(3)
    for b in (config, layer):
        r = mount(a_only, loot, digest_of(b))
        assert r.status_code == 202, (r.status_code, r.text)
        assert "/blobs/uploads/" in r.headers.get("Location", ""), r.headers
        assert head(loot, digest_of(b)) == 404
    r = srv.request("PUT", "/v2/%s/manifests/v1" % loot, auth=a_only, data=body,
                    headers={"Content-Type": MT_OCI_MANIFEST})
    assert r.status_code == 400 and r.json()["errors"][0]["code"] == "MANIFEST_BLOB_UNKNOWN", \
        (r.status_code, r.text)
    for who in (a_only, ADMIN):
        r = srv.request("GET", "/v2/%s/blobs/%s" % (loot, digest_of(layer)), auth=who)
        assert r.status_code == 404 and r.json()["errors"][0]["code"] == "BLOB_UNKNOWN", r.text
    assert srv.request("GET", "/v2/%s/manifests/v1" % loot, auth=ADMIN).status_code == 404

    # one who may pull team-b mounts (201) and then pushes the manifest
    copy = "team-a/copy-" + secrets.token_hex(3)
    for b in (config, layer):
        r = mount(both, copy, digest_of(b))
        assert r.status_code == 201, (r.status_code, r.text)
        assert r.headers.get("Docker-Content-Digest") == digest_of(b)
    r = srv.request("PUT", "/v2/%s/manifests/v1" % copy, auth=both, data=body,
                    headers={"Content-Type": MT_OCI_MANIFEST})
    assert r.status_code == 201, (r.status_code, r.text)
    r = srv.request("GET", "/v2/%s/blobs/%s" % (copy, digest_of(layer)), auth=both)
    assert r.status_code == 200 and r.content == layer


# -- geo: the split push, and only the repository's own links ---------------------------------

def push_blobs(region, repo, blobs):
    for b in blobs:
        r = requests.post("%s/v2/%s/blobs/uploads/" % (region.url, repo),
                          params={"digest": digest_of(b)}, data=b, headers=OCTET, timeout=30)
        assert r.status_code == 201, (region.name, r.status_code, r.text)


def put_manifest(region, repo, ref, body):
    return requests.put("%s/v2/%s/manifests/%s" % (region.url, repo, ref), data=body,
                        headers={"Content-Type": MT_OCI_MANIFEST}, timeout=60)


def blob_status(region, repo, d):
    return requests.head("%s/v2/%s/blobs/%s" % (region.url, repo, d), timeout=30).status_code


def test_split_push_blobs_in_one_region_manifest_in_another(geo):
    """DESIGN invariant 6: blobs uploaded to r1, the manifest to r2 (same repository): 201,
    r2 fetched them from r1 for that repository and serves them."""
    a, b = geo(2)
    repo = unique_repo("split")
    config, layer = new_config(), random_bytes(40_000)
    push_blobs(a, repo, [config, layer])
    body = image_body(config, [layer])
    r = put_manifest(b, repo, "v1", body)
    assert r.status_code == 201, (r.status_code, r.text)
    got = requests.get("%s/v2/%s/blobs/%s" % (b.url, repo, digest_of(layer)), timeout=30)
    assert got.status_code == 200 and got.content == layer
    wait_for(lambda: manifest_digest(a, repo, "v1") == digest_of(body), 60,
             "the manifest pushed to r2 to be served by r1")


def test_split_push_of_an_index_whose_children_are_in_another_region(geo):
    """DESIGN invariant 6 for an index: its child image (blobs and manifest) pushed to r1, the
    index to r2 before replication brought the child there (r1 is 150 ms away from r2): r2
    brings the child from r1 as a pull would, and accepts the index (it used to answer
    MANIFEST_BLOB_UNKNOWN)."""
    a, b = geo(2)
    repo = unique_repo("split-index")
    config, layer = new_config(), random_bytes(20_000)
    push_blobs(a, repo, [config, layer])
    child = image_body(config, [layer])
    a.proxy.latency(150, src=b.host)  # r2's replication and lookups at r1 are slow
    try:
        r = put_manifest(a, repo, digest_of(child), child)
        assert r.status_code == 201, (r.status_code, r.text)
        index = canonical_json({"schemaVersion": 2, "mediaType": MT_OCI_INDEX, "manifests": [
            {"mediaType": MT_OCI_MANIFEST, "digest": digest_of(child), "size": len(child),
             "platform": {"architecture": "amd64", "os": "linux"}}]})
        r = requests.put("%s/v2/%s/manifests/multi" % (b.url, repo), data=index,
                         headers={"Content-Type": MT_OCI_INDEX}, timeout=60)
        assert r.status_code == 201, (r.status_code, r.text)
    finally:
        a.proxy.latency(0, src=b.host)
    got = requests.get("%s/v2/%s/manifests/%s" % (b.url, repo, digest_of(child)),
                       headers={"Accept": MT_OCI_MANIFEST}, timeout=30)
    assert got.status_code == 200 and got.content == child
    got = requests.get("%s/v2/%s/blobs/%s" % (b.url, repo, digest_of(layer)), timeout=30)
    assert got.status_code == 200 and got.content == layer
    wait_for(lambda: manifest_digest(a, repo, "multi") == digest_of(index), 60,
             "the index pushed to r2 to be served by r1")


def test_split_push_uses_only_the_repositorys_links(geo):
    """r2 holds the bytes of team-b's image (replicated). A manifest naming them PUT into
    team-a/loot on r2 (or r1) is refused: a copy held for another repository proves nothing.
    Once the blobs are pushed into team-a/loot on r1, the same PUT on r2 is accepted: r2 links
    its own copy after r1 confirms that team-a/loot holds the blob."""
    a, b = geo(2)
    victim, loot = unique_repo("team-b"), unique_repo("team-a-loot")
    config, layer = new_config(), random_bytes(30_000)
    push_blobs(a, victim, [config, layer])
    body = image_body(config, [layer])
    assert put_manifest(a, victim, "v1", body).status_code == 201
    wait_for(lambda: manifest_digest(b, victim, "v1") == digest_of(body), 60,
             "team-b's image to reach r2")
    # replicated for team-b, linked in team-b only
    assert blob_status(b, victim, digest_of(layer)) == 200
    assert blob_status(b, loot, digest_of(layer)) == 404

    for region in (b, a):
        r = put_manifest(region, loot, "stolen", body)
        assert r.status_code == 400, (region.name, r.status_code, r.text)
        assert r.json()["errors"][0]["code"] == "MANIFEST_BLOB_UNKNOWN", r.text
        for d in (digest_of(config), digest_of(layer)):
            assert blob_status(region, loot, d) == 404, region.name
        assert manifest_digest(region, loot, "stolen") is None

    push_blobs(a, loot, [config, layer])
    r = put_manifest(b, loot, "v1", body)
    assert r.status_code == 201, (r.status_code, r.text)
    got = requests.get("%s/v2/%s/blobs/%s" % (b.url, loot, digest_of(layer)), timeout=30)
    assert got.status_code == 200 and got.content == layer
    # and still nothing for a repository nobody pushed them into
    assert blob_status(b, unique_repo("nobody"), digest_of(layer)) == 404


def test_empty_json_blob_is_not_shared_across_repositories(oci, repo):
    """Even the well-known empty config ({}) must be pushed into each repository: it is a blob
    like any other (clients push it; oras and the conformance suite do)."""
    oci.push_blob(repo + "/a", EMPTY_JSON)
    layer = random_bytes(64)
    oci.push_blob(repo + "/b", layer)
    body = canonical_json({"schemaVersion": 2, "mediaType": MT_OCI_MANIFEST,
                           "artifactType": "application/vnd.example",
                           "config": {"mediaType": "application/vnd.oci.empty.v1+json",
                                      "digest": digest_of(EMPTY_JSON), "size": 2},
                           "layers": [{"mediaType": MT_OCI_LAYER, "digest": digest_of(layer),
                                       "size": len(layer)}]})
    assert_error(oci.put_manifest(repo + "/b", "v1", body, MT_OCI_MANIFEST), 400,
                 "MANIFEST_BLOB_UNKNOWN")
    oci.push_blob(repo + "/b", EMPTY_JSON)
    oci.push_manifest(repo + "/b", "v1", body)
