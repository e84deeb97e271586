"""Placement of whole versions under filtered replication (docs/image-versions.md, "Placement"),
on three regions: an index version carries its child manifests and their blobs, and its
referrers (manifests with a subject, cosign-scheme sha256-<hex>.sig/.att/.sbom tags) follow it,
to exactly its target regions (nothing of it reaches the others, not even the manifest
documents), in a region added later too, and leave a region removed from it; a referrer pushed
to a region that does not hold its subject reaches the regions that do. A Shallow version's
target region holds its metadata and fetches its blobs on first pull, verified and kept, and
stays Completed.

Harness: regions.py (three `meridian serve` processes, r1..r3).
"""

import os

from conftest import EMPTY_JSON, EMPTY_JSON_DIGEST, digest_of
from regions import unique_repo, wait_for
from test_image_versions import (assert_no_trace, blob_files, db_rows, definition,
                                 manifest_body, version)

pytest_plugins = ["geo_plugin"]

AT_SIG = "application/vnd.dev.cosign.simplesigning.v1+json"
AT_SBOM = "application/spdx+json"


def state(region, repo, digest):
    """is_visible of repo@digest in region (0 pending, 1 visible, 2 not held) or None."""
    rows = db_rows(region, "SELECT m.is_visible FROM manifests m JOIN repos r ON r.id ="
                   " m.repo_id WHERE r.name = ? AND m.digest = ?", repo, digest)
    return rows[0][0] if rows else None


def referrer_digests(region, repo, digest):
    r = region.oci().referrers(repo, digest)
    assert r.status_code == 200, (region.name, r.status_code, r.text)
    return sorted(m["digest"] for m in r.json()["manifests"])


def pullable(region, repo, manifests, blobs):
    """Every manifest (by digest) and blob is served by region with the pushed bytes."""
    oci = region.oci()
    for m in manifests:
        r = oci.get_manifest(repo, m.digest)
        assert r.status_code == 200 and r.content == m.body, (region.name, m.digest, r.text)
    for d, data in blobs.items():
        r = oci.get("/v2/%s/blobs/%s" % (repo, d))
        assert r.status_code == 200 and r.content == data, (region.name, d, r.status_code)


def test_a_signed_index_travels_whole_to_its_target_regions(geo):
    cluster = geo(3)
    r1, r2, r3 = cluster
    repo = unique_repo("golden")
    definition(r1, repo, defaultTargetRegions=["r1", "r2"])
    oci = r1.oci()
    # two platforms by digest, the index as 1.0.0, then its signature and SBOM (referrers by
    # subject) and a cosign-scheme signature (a tag naming the subject)
    amd = oci.push_image(repo, layers=2, layer_size=16 * 1024)
    arm = oci.push_image(repo, layers=2, layer_size=16 * 1024)
    index = oci.push_index(repo, [amd, arm], tag="1.0.0")
    payloads = [os.urandom(n) for n in (300, 900, 200)]
    sig = oci.push_artifact(repo, AT_SIG, subject=index, payload=payloads[0])
    sbom = oci.push_artifact(repo, AT_SBOM, subject=index, payload=payloads[1])
    cosign_tag = "sha256-%s.sig" % index.digest.split(":", 1)[1]
    cosign = oci.push_artifact(repo, AT_SIG, tag=cosign_tag, payload=payloads[2])
    manifests = [index, amd, arm, sig, sbom, cosign]
    blobs = {EMPTY_JSON_DIGEST: EMPTY_JSON}
    blobs.update({digest_of(p): p for p in payloads})
    for m in (amd, arm):
        blobs.update(m.blobs)
    r1.cli("image-version", "wait", "%s:1.0.0" % repo, "--replicated", "--timeout", "2m",
           timeout_s=150)
    # Completed in r2 means all of it is pullable there, referrers API as in r1
    pullable(r2, repo, manifests, blobs)
    assert referrer_digests(r2, repo, index.digest) == \
        referrer_digests(r1, repo, index.digest) == sorted([sig.digest, sbom.digest])
    assert r2.oci().get_manifest(repo, cosign_tag).content == cosign.body

    # r3 records all of it (it knows the version) and holds none of it
    wait_for(lambda: all(state(r3, repo, m.digest) == 2 for m in manifests), 30,
             "r3 records every manifest, not held")
    for m in manifests:
        assert manifest_body(r3, repo, m.digest) == b"", m.digest
        assert_no_trace(r3, m.body)
        assert r3.oci().get_manifest(repo, m.digest).status_code == 404
    assert [d for d in blobs if blob_files(r3, d)] == [], "blobs of 1.0.0 in r3"
    assert db_rows(r3, "SELECT digest FROM blobs") == []
    # a pull by digest there does not take them in from a peer either
    for d in blobs:
        r = r3.oci().get("/v2/%s/blobs/%s" % (repo, d))
        assert r.status_code == 404 and r.json()["errors"][0]["code"] == "BLOB_UNKNOWN", d
    assert [d for d in blobs if blob_files(r3, d)] == []

    # a referrer pushed to r3, which does not hold its subject, reaches the regions that do
    att_payload = os.urandom(400)
    att = r3.oci().push_artifact(repo, "application/vnd.in-toto+json", subject=index,
                                 payload=att_payload)
    for region in (r1, r2):
        wait_for(lambda: att.digest in referrer_digests(region, repo, index.digest), 30,
                 "the attestation pushed to r3 reaches %s" % region.name)
        pullable(region, repo, [att], {digest_of(att_payload): att_payload})

    # adding r3 brings the whole version, referrers included, by the time it is Completed
    r1.cli("image-version", "update", "%s:1.0.0" % repo, "--add-region", "r3")
    r1.cli("image-version", "wait", "%s:1.0.0" % repo, "--replicated", "--regions", "r3",
           "--timeout", "2m", timeout_s=150)
    pullable(r3, repo, manifests, blobs)
    assert referrer_digests(r3, repo, index.digest) == referrer_digests(r1, repo, index.digest)
    assert r3.oci().get_manifest(repo, cosign_tag).content == cosign.body

    # removing r3 again: all of it leaves r3 (the attestation pushed there included)
    r1.cli("image-version", "update", "%s:1.0.0" % repo, "--remove-region", "r3",
           "--allow-deletion-of-replicated-locations")
    wait_for(lambda: all(state(r3, repo, m.digest) == 2 for m in manifests + [att]), 60,
             "r3 releases 1.0.0 with its children and referrers")
    wait_for(lambda: [d for d in blobs if blob_files(r3, d)] == [], 30, "r3 deletes the blobs")
    for m in manifests:
        assert manifest_body(r3, repo, m.digest) == b"", m.digest
    # r1 and r2 keep everything
    for region in (r1, r2):
        pullable(region, repo, manifests, blobs)


def test_a_shallow_version_is_fetched_on_first_pull(geo):
    cluster = geo(3)
    r1, r2, r3 = cluster
    repo = unique_repo("golden")
    definition(r1, repo, defaultTargetRegions=["r1", "r2"])
    r = r1.api("POST", "image-versions", params={"repository": repo, "reference": "1.0.0"},
               json={"targetRegions": ["r1", "r2"], "replicationMode": "Shallow"})
    assert r.status_code == 201, r.text
    img = r1.oci().push_image(repo, "1.0.0", layers=2, layer_size=128 * 1024)
    r1.cli("image-version", "wait", "%s:1.0.0" % repo, "--replicated", "--timeout", "2m",
           timeout_s=150)
    doc = version(r1, repo, "1.0.0")
    by_region = {e["region"]: e for e in doc["replicationStatus"]["summary"]}
    assert by_region["r2"]["state"] == "Completed" and "Shallow" in by_region["r2"]["details"]
    def completed_everywhere():
        for region in cluster:
            doc = version(region, repo, "1.0.0")
            states = {e["region"]: e["state"] for e in doc["replicationStatus"]["summary"]}
            if states != {"r1": "Completed", "r2": "Completed"}:
                return False
        return True
    wait_for(completed_everywhere, 30, "every region sees 1.0.0 Completed")
    # r2 holds the metadata (the manifest, visible) and none of the blobs yet
    assert state(r2, repo, img.digest) == 1
    assert manifest_body(r2, repo, img.digest) == img.body
    assert [d for d in img.blobs if blob_files(r2, d)] == [], "r2 copied ahead"
    # the first pull fetches them from a holder, verified, and keeps them
    r = r2.oci().get_manifest(repo, "1.0.0")
    assert r.status_code == 200 and r.content == img.body
    for d, data in img.blobs.items():
        got = r2.oci().get("/v2/%s/blobs/%s" % (repo, d))
        assert got.status_code == 200 and got.content == data, (d, got.status_code)
        assert blob_files(r2, d), "r2 did not keep %s" % d
    pulls = r2.log_text().count("from a peer for a pull")
    assert pulls == len(img.blobs), pulls
    for d in img.blobs:  # the second pull is served from r2's own copy
        assert r2.oci().get("/v2/%s/blobs/%s" % (repo, d)).status_code == 200
    assert r2.log_text().count("from a peer for a pull") == pulls
    # and the status stays Completed, in every region
    assert completed_everywhere()
    # r3 is no target: nothing of it there
    assert state(r3, repo, img.digest) == 2 and manifest_body(r3, repo, img.digest) == b""
    assert [d for d in img.blobs if blob_files(r3, d)] == []


def test_a_pull_through_reply_carries_the_version_record(geo):
    """A region pulling a version through (replication/state?reference=TAG) merges the
    definition and the version record with the tag, so it decides whether it holds the
    version from its profile, not as a tag from before the definition."""
    r1, _ = geo(2)
    repo = unique_repo("golden")
    definition(r1, repo, defaultTargetRegions=["r1"])
    oci = r1.oci()
    oci.push_image(repo, "1.0.0", layers=1, layer_size=1024)
    oci.push_image(repo, "1.0.1", layers=1, layer_size=1024)
    r = r1.api("GET", "replication/state", params={"repository": repo, "reference": "1.0.0"},
               auth=("peer", r1.cluster.secret))
    assert r.status_code == 200, r.text
    objects = {(ev["kind"], ev["name"]): ev["payload"] for ev in r.json()["state"]
               if ev["kind"].startswith("object_")}
    assert sorted(objects) == [("object_put", repo), ("object_put", repo + ":1.0.0")], objects
    assert objects[("object_put", repo)]["kind"] == "image_definition"
    record = objects[("object_put", repo + ":1.0.0")]
    assert record["kind"] == "image_version"
    assert record["value"]["version"] == "1.0.0"
